//! [`Tally`]: a value every handler updates (the counters, the bill),
//! behind a lock whose poisoning is ignored.
//!
//! Each holder of one of the mock's locks makes a handful of changes that
//! cannot leave the value inconsistent in a way that matters to a mock, so
//! a lock poisoned by a panicking holder is simply taken over ([`lock`]).

use std::sync::{Mutex, MutexGuard, PoisonError};

/// A shared value, read as snapshots.
#[derive(Debug, Default)]
pub(crate) struct Tally<T> {
    inner: Mutex<T>,
}

impl<T: Clone + Default> Tally<T> {
    /// Changes the value in place.
    pub(crate) fn update<R>(&self, change: impl FnOnce(&mut T) -> R) -> R {
        change(&mut lock(&self.inner))
    }

    pub(crate) fn snapshot(&self) -> T {
        lock(&self.inner).clone()
    }

    /// Back to the default (zero) value.
    pub(crate) fn reset(&self) {
        *lock(&self.inner) = T::default();
    }
}

/// Locks `mutex`, taking it over if a holder panicked (see the module
/// documentation).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
