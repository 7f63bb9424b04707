//! Held long-polls: a FIFO of waiters woken one per available task, and a
//! per-device cap on concurrent polls.
//!
//! Waking every held poll for each new task (a broadcast) makes each of them
//! run a claim through the single writer: with a fleet of agents one job
//! costs as many writer ops as there are polls. Here the writer counts the
//! tasks a commit made available and wakes that many waiters, oldest first
//! ([`Waiters::wake`]), so the work per job stays constant.
//!
//! No wake-up is lost:
//! - a poll registers *before* its claim, so a task committed during the
//!   claim wakes it (and it claims again);
//! - a waiter that was woken and ends without a claim that ran after its
//!   wake (it disconnected, its deadline passed, its claim failed, or it
//!   returned tasks from an earlier claim) passes the wake on to the next
//!   waiter when it drops;
//! - a woken waiter whose claim finds nothing does *not* pass it on: the task
//!   it was woken for was taken by someone else.
//!
//! The writer also wakes one more waiter when a claim filled its capacity
//! and left tasks queued, so tasks never sit behind a wake that was used up.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

/// Most polls one device may have in flight at once (protocol.md §4.2).
pub const MAX_POLLS_PER_DEVICE: usize = 4;

/// The relay's held polls; shared by the store, its writer and the handlers.
#[derive(Default)]
pub struct Waiters {
    state: Mutex<State>,
    /// Polls parked in [`Waiter::woken`] right now.
    parked: AtomicUsize,
}

#[derive(Default)]
struct State {
    /// Registered waiters by registration order: the first is the oldest.
    queue: BTreeMap<u64, Arc<Slot>>,
    next_id: u64,
    /// Polls in flight per device (only devices with at least one).
    per_device: HashMap<String, usize>,
}

#[derive(Default)]
struct Slot {
    /// `notify_one` stores a permit, so a wake that arrives before the
    /// waiter parks is not lost.
    notify: Notify,
    /// Set by the poll once a claim that started after the wake has run.
    used: AtomicBool,
}

impl Waiters {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the maps inconsistent
        // in a way that matters more than refusing every poll would.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Lets one more poll of `device_id` in, or `None` when it already has
    /// [`MAX_POLLS_PER_DEVICE`] in flight.
    pub fn admit(self: &Arc<Self>, device_id: &str) -> Option<PollPermit> {
        let mut state = self.lock();
        let held = state.per_device.entry(device_id.to_owned()).or_insert(0);
        if *held >= MAX_POLLS_PER_DEVICE {
            return None;
        }
        *held += 1;
        Some(PollPermit {
            waiters: self.clone(),
            device_id: device_id.to_owned(),
        })
    }

    /// Wakes up to `n` waiters, oldest first. Wakes beyond the waiters there
    /// are do not matter: a poll that arrives later claims before it waits.
    pub fn wake(&self, n: usize) {
        if n > 0 {
            wake_locked(&mut self.lock(), n);
        }
    }

    /// Polls waiting for a task right now (parked, not claiming).
    pub fn parked(&self) -> usize {
        self.parked.load(Ordering::Relaxed)
    }

    pub(super) fn register(self: &Arc<Self>) -> Waiter {
        let slot = Arc::new(Slot::default());
        let mut state = self.lock();
        let id = state.next_id;
        state.next_id += 1;
        state.queue.insert(id, slot.clone());
        Waiter {
            waiters: self.clone(),
            id,
            slot,
        }
    }
}

fn wake_locked(state: &mut State, n: usize) {
    for _ in 0..n {
        match state.queue.pop_first() {
            Some((_, slot)) => slot.notify.notify_one(),
            None => break,
        }
    }
}

/// One admitted poll of a device; dropping it frees the device's slot.
pub struct PollPermit {
    waiters: Arc<Waiters>,
    device_id: String,
}

impl PollPermit {
    /// Joins the queue of waiters. Call before each claim attempt of a poll
    /// that may wait.
    pub fn register(&self) -> Waiter {
        self.waiters.register()
    }
}

impl Drop for PollPermit {
    fn drop(&mut self) {
        let mut state = self.waiters.lock();
        if let Some(held) = state.per_device.get_mut(&self.device_id) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                state.per_device.remove(&self.device_id);
            }
        }
    }
}

/// A place in the queue of waiters, for one claim attempt and the wait after it.
pub struct Waiter {
    waiters: Arc<Waiters>,
    id: u64,
    slot: Arc<Slot>,
}

impl Waiter {
    /// Resolves once this waiter is woken (at once if it already was).
    pub async fn woken(&self) {
        self.waiters.parked.fetch_add(1, Ordering::Relaxed);
        let _parked = Parked(&self.waiters.parked);
        self.slot.notify.notified().await;
    }

    /// Records that a claim which started after this waiter's wake has run:
    /// the wake did its job and is not passed on.
    pub fn used(&self) {
        self.slot.used.store(true, Ordering::Relaxed);
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let mut state = self.waiters.lock();
        let still_queued = state.queue.remove(&self.id).is_some();
        if !still_queued && !self.slot.used.load(Ordering::Relaxed) {
            // Woken, but no claim ran for that wake: the next waiter gets it.
            wake_locked(&mut state, 1);
        }
    }
}

/// Counts a parked waiter until dropped (also when its future is cancelled).
struct Parked<'a>(&'a AtomicUsize);

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn woken_now(w: &Waiter) -> bool {
        futures_util::FutureExt::now_or_never(w.woken()).is_some()
    }

    #[test]
    fn a_device_is_admitted_up_to_the_cap_and_again_once_a_poll_ends() {
        let waiters = Arc::new(Waiters::default());
        let permits: Vec<_> = (0..MAX_POLLS_PER_DEVICE)
            .map(|_| waiters.admit("dev_a").unwrap())
            .collect();
        assert!(waiters.admit("dev_a").is_none());
        assert!(waiters.admit("dev_b").is_some(), "per device");
        drop(permits);
        assert!(waiters.admit("dev_a").is_some());
        assert!(
            waiters.lock().per_device.is_empty(),
            "no entry outlives its polls"
        );
    }

    #[test]
    fn wake_n_wakes_the_n_oldest_waiters() {
        let waiters = Arc::new(Waiters::default());
        let ws: Vec<_> = (0..4).map(|_| waiters.register()).collect();
        waiters.wake(2);
        let woken: Vec<bool> = ws.iter().map(woken_now).collect();
        assert_eq!(woken, [true, true, false, false]);
    }

    #[test]
    fn a_wake_before_the_wait_is_kept() {
        let waiters = Arc::new(Waiters::default());
        let w = waiters.register();
        waiters.wake(1);
        assert!(woken_now(&w));
    }

    #[test]
    fn a_woken_waiter_that_leaves_unused_passes_the_wake_on() {
        let waiters = Arc::new(Waiters::default());
        let first = waiters.register();
        let second = waiters.register();
        let third = waiters.register();
        waiters.wake(1);
        drop(first);
        assert!(woken_now(&second), "the wake moved on");
        second.used();
        drop(second);
        assert!(!woken_now(&third), "a used wake is not passed on");
    }

    #[test]
    fn a_waiter_that_leaves_unwoken_takes_nothing_with_it() {
        let waiters = Arc::new(Waiters::default());
        let first = waiters.register();
        let second = waiters.register();
        drop(first);
        waiters.wake(1);
        assert!(woken_now(&second));
        assert!(waiters.lock().queue.is_empty());
    }

    #[tokio::test]
    async fn parked_counts_only_waiters_inside_woken() {
        let waiters = Arc::new(Waiters::default());
        let w = waiters.register();
        assert_eq!(waiters.parked(), 0);
        let wait = tokio::spawn({
            let waiters = waiters.clone();
            async move {
                let w = w;
                w.woken().await;
                w.used();
                drop(w);
                waiters.parked()
            }
        });
        while waiters.parked() == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        waiters.wake(1);
        assert_eq!(wait.await.unwrap(), 0);
    }
}
