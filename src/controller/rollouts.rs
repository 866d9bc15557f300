//! Pacing of the rollouts that hardening starts.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::policy::hardening::WorkloadId;

/// Workloads whose hardening rollout is under way, by policy.
#[derive(Debug, Default)]
pub struct RolloutLimiter {
    in_flight: Mutex<HashMap<WorkloadId, InFlight>>,
}

#[derive(Debug)]
struct InFlight {
    policy: String,
    started: Instant,
    timeout: Duration,
    /// Generation written by the hardening; `None` until the write returns.
    generation: Option<i64>,
}

impl RolloutLimiter {
    /// Reserves a rollout slot for `id` under `policy`, which allows `limit` at a time.
    ///
    /// Rollouts that `rolled_out` reports finished (given the workload and the generation the
    /// hardening wrote), or whose timeout has passed, free their slot first. Returns the time
    /// until the earliest slot frees up by timeout when none is free.
    pub fn try_start(
        &self,
        policy: &str,
        id: &WorkloadId,
        limit: usize,
        timeout: Duration,
        rolled_out: impl Fn(&WorkloadId, i64) -> bool,
    ) -> Result<(), Duration> {
        let mut in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        in_flight.retain(|other, entry| {
            let finished = entry
                .generation
                .is_some_and(|generation| rolled_out(other, generation));
            !finished && entry.started.elapsed() < entry.timeout
        });
        if in_flight.contains_key(id) {
            return Ok(());
        }

        let busy: Vec<&InFlight> = in_flight
            .values()
            .filter(|entry| entry.policy == policy)
            .collect();
        if busy.len() >= limit {
            let wait = busy
                .iter()
                .map(|entry| entry.timeout.saturating_sub(entry.started.elapsed()))
                .min()
                .unwrap_or(timeout);
            // Rollouts usually finish before their timeout; look again soon.
            return Err(wait
                .min(Duration::from_secs(5))
                .max(Duration::from_millis(200)));
        }
        in_flight.insert(
            id.clone(),
            InFlight {
                policy: policy.to_string(),
                started: Instant::now(),
                timeout,
                generation: None,
            },
        );
        Ok(())
    }

    /// Records the generation the hardening wrote, from which the rollout is judged.
    pub fn started(&self, id: &WorkloadId, generation: i64) {
        let mut in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(entry) = in_flight.get_mut(id) {
            entry.generation = Some(generation);
        }
    }

    /// Frees the slot of `id`, for a hardening that was not written.
    pub fn finish(&self, id: &WorkloadId) {
        let mut in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        in_flight.remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::workloads::WorkloadKind;

    fn id(name: &str) -> WorkloadId {
        WorkloadId {
            kind: WorkloadKind::Deployment,
            namespace: "ns".into(),
            name: name.into(),
        }
    }

    #[test]
    fn limit_holds_until_rolled_out() {
        let limiter = RolloutLimiter::default();
        let long = Duration::from_secs(60);
        assert!(
            limiter
                .try_start("p", &id("a"), 1, long, |_, _| false)
                .is_ok()
        );
        limiter.started(&id("a"), 2);
        assert!(
            limiter
                .try_start("p", &id("b"), 1, long, |_, _| false)
                .is_err()
        );
        // Another policy has its own slots.
        assert!(
            limiter
                .try_start("q", &id("c"), 1, long, |_, _| false)
                .is_ok()
        );
        // Rolled out at the generation written: the slot frees up.
        assert!(
            limiter
                .try_start("p", &id("b"), 1, long, |_, generation| generation >= 2)
                .is_ok()
        );
    }

    #[test]
    fn unwritten_rollout_not_judged_finished() {
        let limiter = RolloutLimiter::default();
        let long = Duration::from_secs(60);
        assert!(
            limiter
                .try_start("p", &id("a"), 1, long, |_, _| true)
                .is_ok()
        );
        // No generation recorded yet, so "rolled out" cannot free the slot.
        assert!(
            limiter
                .try_start("p", &id("b"), 1, long, |_, _| true)
                .is_err()
        );
    }

    #[test]
    fn timeout_frees_slot() {
        let limiter = RolloutLimiter::default();
        assert!(
            limiter
                .try_start("p", &id("a"), 1, Duration::from_millis(1), |_, _| false)
                .is_ok()
        );
        std::thread::sleep(Duration::from_millis(5));
        assert!(
            limiter
                .try_start("p", &id("b"), 1, Duration::from_secs(60), |_, _| false)
                .is_ok()
        );
    }

    #[test]
    fn finish_frees_slot() {
        let limiter = RolloutLimiter::default();
        let long = Duration::from_secs(60);
        assert!(
            limiter
                .try_start("p", &id("a"), 1, long, |_, _| false)
                .is_ok()
        );
        limiter.finish(&id("a"));
        assert!(
            limiter
                .try_start("p", &id("b"), 1, long, |_, _| false)
                .is_ok()
        );
    }
}
