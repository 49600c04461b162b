//! An event count: "wait until something changed", without holding any
//! cache lock while waiting, and with the virtual CPU released
//! (`rumpuser::upcalls::blocking`) so a waiting kernel thread never keeps a
//! CPU the thread it waits for needs.
//!
//! Protocol: `let t = ev.prepare()`, re-check the condition, then either
//! `ev.cancel()` or `ev.wait(t)`. Notifiers change the condition first,
//! then call `notify()`. No wakeup is lost: a notify after `prepare` either
//! makes the re-check see the change or bumps the epoch the waiter sleeps on.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};

use parking_lot::{Condvar, Mutex};

#[derive(Default)]
pub(crate) struct EventCount {
    epoch: AtomicU64,
    waiters: AtomicUsize,
    lock: Mutex<()>,
    cv: Condvar,
}

impl EventCount {
    /// Register as a waiter; returns the epoch to wait past.
    pub(crate) fn prepare(&self) -> u64 {
        self.waiters.fetch_add(1, SeqCst);
        self.epoch.load(SeqCst)
    }

    /// The condition held after all: unregister.
    pub(crate) fn cancel(&self) {
        self.waiters.fetch_sub(1, SeqCst);
    }

    /// Sleep until a `notify` after `prepare` returned `t`.
    pub(crate) fn wait(&self, t: u64) {
        rumpuser::upcalls::blocking(std::ptr::null_mut(), || {
            let mut g = self.lock.lock();
            while self.epoch.load(SeqCst) == t {
                self.cv.wait(&mut g);
            }
        });
        self.waiters.fetch_sub(1, SeqCst);
    }

    /// Something changed: wake every waiter. Cheap when nobody waits.
    pub(crate) fn notify(&self) {
        self.epoch.fetch_add(1, SeqCst);
        if self.waiters.load(SeqCst) > 0 {
            let _g = self.lock.lock();
            self.cv.notify_all();
        }
    }
}
