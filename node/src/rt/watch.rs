//! A single-value broadcast channel that replays identically under the simulator.
//!
//! tokio's `watch` picks which of several waiting receivers to wake from a thread-local RNG that
//! madsim's seed does not control, so two runs of one seed in one process diverge. This channel
//! wakes receivers through one `Notify`, whose wake order is the order receivers began waiting.

use std::fmt;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

use tokio::sync::Notify;

/// Creates a channel holding `init`.
pub fn channel<T>(init: T) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        value: RwLock::new(init),
        version: AtomicU64::new(0),
        senders: AtomicUsize::new(1),
        receivers: AtomicUsize::new(1),
        notify: Notify::new(),
    });
    let receiver = Receiver { shared: shared.clone(), seen: 0 };
    (Sender { shared }, receiver)
}

struct Shared<T> {
    /// The current value; writers hold the lock only to swap or edit it, never across an await.
    value: RwLock<T>,
    /// Bumped on every change; a receiver compares it with the version it last saw.
    version: AtomicU64,
    senders: AtomicUsize,
    receivers: AtomicUsize,
    notify: Notify,
}

impl<T> Shared<T> {
    fn read(&self) -> RwLockReadGuard<'_, T> {
        self.value.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn publish(&self) {
        self.version.fetch_add(1, Ordering::AcqRel);
        self.notify.notify_waiters();
    }
}

/// A borrowed view of the current value.
pub struct Ref<'a, T>(RwLockReadGuard<'a, T>);

impl<T> Deref for Ref<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// The value could not be sent because every receiver is gone; it is handed back.
#[derive(Debug, PartialEq, Eq)]
pub struct SendError<T>(pub T);

/// Every sender is gone and the receiver has seen the last value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvError;

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("watch channel closed")
    }
}

impl std::error::Error for RecvError {}

/// The writing half; cloneable.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Sender<T> {
    /// Replaces the value and wakes every receiver; fails, keeping nothing, if none is left.
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        if self.shared.receivers.load(Ordering::Acquire) == 0 {
            return Err(SendError(value));
        }
        *self.shared.value.write().unwrap_or_else(PoisonError::into_inner) = value;
        self.shared.publish();
        Ok(())
    }

    /// Lets `modify` edit the value in place; receivers are woken only if it returns true.
    pub fn send_if_modified(&self, modify: impl FnOnce(&mut T) -> bool) -> bool {
        let modified = {
            let mut value = self.shared.value.write().unwrap_or_else(PoisonError::into_inner);
            modify(&mut value)
        };
        if modified {
            self.shared.publish();
        }
        modified
    }

    pub fn borrow(&self) -> Ref<'_, T> {
        Ref(self.shared.read())
    }

    /// A new receiver that has already seen the current value.
    pub fn subscribe(&self) -> Receiver<T> {
        self.shared.receivers.fetch_add(1, Ordering::AcqRel);
        let seen = self.shared.version.load(Ordering::Acquire);
        Receiver { shared: self.shared.clone(), seen }
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, Ordering::AcqRel);
        Sender { shared: self.shared.clone() }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.notify.notify_waiters();
        }
    }
}

/// The reading half; cloneable, each clone tracking what it has seen.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
    seen: u64,
}

impl<T> Receiver<T> {
    /// Waits until the value changes after what this receiver last saw, then marks it seen.
    pub async fn changed(&mut self) -> Result<(), RecvError> {
        loop {
            let notified = self.shared.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let version = self.shared.version.load(Ordering::Acquire);
            if version != self.seen {
                self.seen = version;
                return Ok(());
            }
            if self.shared.senders.load(Ordering::Acquire) == 0 {
                return Err(RecvError);
            }
            notified.await;
        }
    }

    pub fn borrow(&self) -> Ref<'_, T> {
        Ref(self.shared.read())
    }

    pub fn borrow_and_update(&mut self) -> Ref<'_, T> {
        self.seen = self.shared.version.load(Ordering::Acquire);
        Ref(self.shared.read())
    }

    /// Waits until `condition` holds for the current value and returns a copy of it.
    pub async fn wait_for(&mut self, condition: impl Fn(&T) -> bool) -> Result<T, RecvError>
    where
        T: Clone,
    {
        loop {
            {
                let value = self.borrow_and_update();
                if condition(&value) {
                    return Ok(value.clone());
                }
            }
            self.changed().await?;
        }
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        self.shared.receivers.fetch_add(1, Ordering::AcqRel);
        Receiver { shared: self.shared.clone(), seen: self.seen }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.shared.receivers.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn receiver_sees_each_change_once() {
        let (tx, mut rx) = channel(0);
        tx.send(1).unwrap();
        rx.changed().await.unwrap();
        assert_eq!(*rx.borrow(), 1);
        let waiter = tokio::spawn(async move {
            rx.changed().await.unwrap();
            *rx.borrow()
        });
        tokio::task::yield_now().await;
        tx.send(2).unwrap();
        assert_eq!(waiter.await.unwrap(), 2);
    }

    #[tokio::test]
    async fn changed_fails_once_every_sender_is_gone() {
        let (tx, mut rx) = channel(0);
        tx.send(7).unwrap();
        drop(tx);
        rx.changed().await.expect("the unseen value is still delivered");
        assert_eq!(rx.changed().await, Err(RecvError));
    }

    #[test]
    fn send_fails_without_receivers() {
        let (tx, rx) = channel(0);
        drop(rx);
        assert_eq!(tx.send(5), Err(SendError(5)));
        let _rx = tx.subscribe();
        assert_eq!(tx.send(6), Ok(()));
    }

    #[test]
    fn send_if_modified_publishes_only_changes() {
        let (tx, rx) = channel(1);
        assert!(!tx.send_if_modified(|_| false));
        assert!(tx.send_if_modified(|v| {
            *v = 3;
            true
        }));
        assert_eq!(*rx.borrow(), 3);
    }
}
