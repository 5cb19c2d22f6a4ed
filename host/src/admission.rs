//! Admission: how many requests the host serves at once, across every component it runs.
//!
//! One limit per host, not per component: each request in flight holds one pooled instance of
//! the one engine, so `--max-concurrency` bounds the memory the whole process may use, whatever
//! the number of components in the app. A request beyond the limit waits a moment for a slot
//! (`--queue-timeout`), then is refused with 503 and `Retry-After`: overload costs a quick
//! answer, not memory.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The host's request slots.
#[derive(Debug, Clone)]
pub struct Admission {
    slots: Arc<Semaphore>,
    capacity: usize,
    queue_timeout: Duration,
}

/// One request's slot: held until the instance is dropped.
pub type Slot = OwnedSemaphorePermit;

impl Admission {
    /// `capacity` slots; a request waits up to `queue_timeout` for one.
    pub fn new(capacity: usize, queue_timeout: Duration) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(capacity)),
            capacity,
            queue_timeout,
        }
    }

    /// How many requests may be served at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// A slot at once, or after waiting up to the queue timeout; `None`: the host is full.
    pub async fn admit(&self) -> Option<Slot> {
        if let Ok(slot) = self.slots.clone().try_acquire_owned() {
            return Some(slot);
        }
        tokio::time::timeout(self.queue_timeout, self.slots.clone().acquire_owned())
            .await
            .ok()?
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_host_refuses_after_the_queue_timeout_and_admits_once_a_slot_frees() {
        let admission = Admission::new(1, Duration::from_millis(20));
        let held = admission.admit().await.expect("the first slot is free");
        assert!(admission.admit().await.is_none(), "no second slot");
        drop(held);
        assert!(admission.admit().await.is_some(), "the slot came back");
    }
}
