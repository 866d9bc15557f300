//! Named points in the rotation where tests stop the operator, to prove that a crash at any
//! of them loses no value and rotates no window twice.
//!
//! They exist only with the `fail-points` feature, which `make test` enables; other builds
//! compile every call to nothing.

/// A point between two steps of a rotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Point {
    /// Values generated, Secret not written yet.
    BeforeSecretWrite,
    /// Secret written, consumers not restarted yet.
    AfterSecretWrite,
    /// A consumer restart written, status not written yet.
    AfterConsumerRestart,
}

#[cfg(feature = "fail-points")]
mod armed {
    use std::collections::HashSet;
    use std::sync::Mutex;

    use super::Point;

    static ARMED: Mutex<Option<HashSet<Point>>> = Mutex::new(None);
    static REACHED: Mutex<Option<HashSet<Point>>> = Mutex::new(None);

    /// Makes every reconcile that reaches `point` stop there for good, as a crash would.
    pub fn arm(point: Point) {
        let mut armed = ARMED
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        armed.get_or_insert_with(HashSet::new).insert(point);
    }

    /// Disarms every point and forgets which were reached.
    pub fn reset() {
        *ARMED
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
        *REACHED
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
    }

    /// Returns whether a reconcile has stopped at `point`.
    pub fn reached(point: Point) -> bool {
        REACHED
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .as_ref()
            .is_some_and(|reached| reached.contains(&point))
    }

    pub(crate) async fn hit(point: Point) {
        let armed = ARMED
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .as_ref()
            .is_some_and(|armed| armed.contains(&point));
        if armed {
            REACHED
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .get_or_insert_with(HashSet::new)
                .insert(point);
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(feature = "fail-points")]
pub use armed::{arm, reached, reset};

/// Stops here when a test armed `point`; does nothing otherwise.
pub(crate) async fn hit(point: Point) {
    #[cfg(feature = "fail-points")]
    armed::hit(point).await;
    #[cfg(not(feature = "fail-points"))]
    let _ = point;
}
