//! Condition types, reasons and the rule for `lastTransitionTime`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// Summary of every other condition.
pub const READY: &str = "Ready";
/// The generated NetworkPolicies match the spec.
pub const NETWORK_READY: &str = "NetworkReady";
/// The CA and the service certificates are issued and valid.
pub const CERTIFICATES_READY: &str = "CertificatesReady";
/// The selected workloads are hardened and the namespaces carry their Pod Security labels.
pub const WORKLOADS_READY: &str = "WorkloadsReady";

/// Reasons, in CamelCase as the API conventions ask.
pub mod reason {
    /// Everything generated matches the spec.
    pub const RECONCILED: &str = "Reconciled";
    /// Audit mode: the generated objects were computed and not written.
    pub const AUDITED: &str = "Audited";
    /// Audit mode found differences that Enforce would write.
    pub const CHANGES_PENDING: &str = "ChangesPending";
    /// The spec has a problem that admission could not catch.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// Writing a generated object failed.
    pub const APPLY_FAILED: &str = "ApplyFailed";
    /// The target Secret has another type than the spec asks for.
    pub const TYPE_MISMATCH: &str = "TypeMismatch";
    /// The CA Secret is missing or unusable.
    pub const INVALID_CA: &str = "InvalidCA";
    /// A certificate could not be issued.
    pub const ISSUE_FAILED: &str = "IssueFailed";
    /// An object of another client has a generated name.
    pub const NAME_CONFLICT: &str = "NameConflict";
    /// The section is not set, so there is nothing to do.
    pub const DISABLED: &str = "Disabled";
    /// A workload's hardened fields are owned by another field manager.
    pub const CONFLICT: &str = "Conflict";
    /// Hardening waits for earlier rollouts to finish.
    pub const ROLLOUT_PENDING: &str = "RolloutPending";
    /// Jobs or bare Pods break the hardening and cannot be changed.
    pub const VIOLATIONS: &str = "Violations";
}

/// Status of a condition, as the API spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl ConditionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }
}

/// A condition to record, without its transition time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionUpdate {
    pub type_: &'static str,
    pub status: ConditionStatus,
    pub reason: &'static str,
    pub message: String,
}

impl ConditionUpdate {
    pub fn new(
        type_: &'static str,
        status: ConditionStatus,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }
}

/// Builds the condition list from `updates`, keeping each condition's `lastTransitionTime`
/// from `previous` unless its status flipped, and keeping conditions of other types as they were.
pub fn merge_conditions(
    previous: &[Condition],
    updates: &[ConditionUpdate],
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    let mut merged: Vec<Condition> = previous
        .iter()
        .filter(|old| !updates.iter().any(|update| update.type_ == old.type_))
        .cloned()
        .collect();

    for update in updates {
        let old = previous.iter().find(|old| old.type_ == update.type_);
        let last_transition_time = match old {
            Some(old) if old.status == update.status.as_str() => old.last_transition_time.clone(),
            _ => Time(now),
        };
        merged.push(Condition {
            type_: update.type_.to_string(),
            status: update.status.as_str().to_string(),
            reason: update.reason.to_string(),
            message: truncate(&update.message, 1024),
            last_transition_time,
            observed_generation: generation,
        });
    }

    merged.sort_by_key(|condition| condition_rank(&condition.type_));
    merged
}

/// Orders Ready first, then the rest by name, so status diffs stay stable.
fn condition_rank(type_: &str) -> (u8, String) {
    if type_ == READY {
        (0, String::new())
    } else {
        (1, type_.to_string())
    }
}

/// Shortens `text` to at most `max` bytes on a character boundary, marking the cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub(3);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// Finds the condition of `type_`.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|condition| condition.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap()
    }

    #[test]
    fn transition_time_kept_without_flip() {
        let first = merge_conditions(
            &[],
            &[ConditionUpdate::new(
                READY,
                ConditionStatus::True,
                reason::RECONCILED,
                "ok",
            )],
            Some(1),
            at(100),
        );
        let second = merge_conditions(
            &first,
            &[ConditionUpdate::new(
                READY,
                ConditionStatus::True,
                reason::RECONCILED,
                "still ok",
            )],
            Some(2),
            at(200),
        );
        assert_eq!(second[0].last_transition_time, Time(at(100)));
        assert_eq!(second[0].message, "still ok");
        assert_eq!(second[0].observed_generation, Some(2));
    }

    #[test]
    fn transition_time_changes_on_flip() {
        let first = merge_conditions(
            &[],
            &[ConditionUpdate::new(
                READY,
                ConditionStatus::True,
                reason::RECONCILED,
                "ok",
            )],
            Some(1),
            at(100),
        );
        let second = merge_conditions(
            &first,
            &[ConditionUpdate::new(
                READY,
                ConditionStatus::False,
                reason::INVALID_SPEC,
                "bad",
            )],
            Some(2),
            at(200),
        );
        assert_eq!(second[0].last_transition_time, Time(at(200)));
        assert_eq!(second[0].status, "False");
    }

    #[test]
    fn other_types_kept_and_ready_first() {
        let first = merge_conditions(
            &[],
            &[ConditionUpdate::new(
                NETWORK_READY,
                ConditionStatus::True,
                reason::RECONCILED,
                "",
            )],
            Some(1),
            at(100),
        );
        let second = merge_conditions(
            &first,
            &[ConditionUpdate::new(
                READY,
                ConditionStatus::True,
                reason::RECONCILED,
                "",
            )],
            Some(1),
            at(200),
        );
        let types: Vec<&str> = second.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, [READY, NETWORK_READY]);
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("abc", 10), "abc");
        assert_eq!(truncate("abcdefghij", 6), "abc...");
        let cut = truncate("ééééé", 6);
        assert!(cut.ends_with("..."));
        assert!(cut.len() <= 6);
    }
}
