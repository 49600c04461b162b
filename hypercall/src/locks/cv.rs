//! Condition variables.
//!
//! The wait follows NetBSD's order exactly, which the kernel's scheduler
//! relies on (the scheduler waits on its own CPU mutex as the interlock, a
//! mutex that `backend_unschedule` takes and `backend_schedule` releases):
//!
//! 1. count the waiter;
//! 2. `backend_unschedule(0, &n, mtx)` with the mutex as interlock;
//! 3. forget the owner (`KMUTEX`);
//! 4. wait: release the mutex, sleep, re-take the mutex;
//! 5. for a `SPIN|KMUTEX` mutex: `backend_schedule(n, mtx)` first and only
//!    then re-take the mutex, without unscheduling (so a spin mutex is
//!    never held while waiting for a CPU); otherwise re-take the mutex,
//!    record the owner, and `backend_schedule(n, mtx)` with it held;
//! 6. uncount the waiter.

use std::ffi::c_int;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot_core::ParkResult;

use super::mutex::{MutexGuard, RawMutex, RumpuserMtx, MTX_KMUTEX, MTX_SPIN};
use crate::errno::ETIMEDOUT;

/// The condition variable behind both faces: a wake-up sequence number
/// that waiters sleep on (by its address, in parking_lot's table), so one
/// condition variable may serve several mutexes, as a pthread one may.
/// Wake-ups may be spurious; callers re-check their condition.
pub struct RawCondvar {
    seq: AtomicU32,
    nwaiters: AtomicUsize,
}

impl Default for RawCondvar {
    fn default() -> Self {
        RawCondvar::new()
    }
}

impl RawCondvar {
    /// A condition variable nobody waits on.
    pub const fn new() -> RawCondvar {
        RawCondvar {
            seq: AtomicU32::new(0),
            nwaiters: AtomicUsize::new(0),
        }
    }

    fn key(&self) -> usize {
        self as *const RawCondvar as usize
    }

    /// Wait on this condition with `m` as interlock. `wrap`: give up the
    /// virtual CPU while waiting. Returns true if `timeout` expired.
    ///
    /// # Safety
    /// Unless `wrap` is set and `m` is the kernel scheduler's interlock
    /// (which `backend_unschedule` takes), the caller holds `m`.
    pub unsafe fn wait(&self, m: &RawMutex, timeout: Option<Duration>, wrap: bool) -> bool {
        let deadline = timeout.and_then(|d| Instant::now().checked_add(d));
        self.nwaiters.fetch_add(1, Ordering::Relaxed);
        let interlock = m as *const RawMutex as *mut std::ffi::c_void;
        let up = if wrap { crate::upcalls::get() } else { None };
        let nlocks = match up {
            Some(up) => up.backend_unschedule(0, interlock),
            None => 0,
        };
        m.clear_owner();
        // Read the sequence while the mutex is held: a notifier changes the
        // condition under the mutex and only then bumps the sequence, so
        // its wake-up cannot fall between our unlock and our sleep.
        let seq = self.seq.load(Ordering::Relaxed);
        // SAFETY: the mutex is held here (by the caller or, for the
        // scheduler interlock, taken by backend_unschedule).
        unsafe { m.unlock_raw() };
        // SAFETY: the key is this condvar's address, live while we sleep;
        // the validate callback neither parks nor panics.
        let r = unsafe {
            parking_lot_core::park(
                self.key(),
                || self.seq.load(Ordering::Relaxed) == seq,
                || {},
                |_, _| {},
                parking_lot_core::DEFAULT_PARK_TOKEN,
                deadline,
            )
        };
        let timed_out = matches!(r, ParkResult::TimedOut);
        match up {
            Some(up) if m.flags & (MTX_SPIN | MTX_KMUTEX) == (MTX_SPIN | MTX_KMUTEX) => {
                // A spin mutex is never held while waiting for a CPU.
                up.backend_schedule(nlocks, interlock);
                m.lock_raw();
                m.set_owner();
            }
            Some(up) => {
                m.lock_raw();
                m.set_owner();
                up.backend_schedule(nlocks, interlock);
            }
            None => {
                m.lock_raw();
                m.set_owner();
            }
        }
        self.nwaiters.fetch_sub(1, Ordering::Relaxed);
        timed_out
    }

    /// Wake one waiter (perhaps more).
    pub fn signal(&self) {
        self.seq.fetch_add(1, Ordering::Relaxed);
        // SAFETY: unparking by this condvar's address.
        unsafe {
            parking_lot_core::unpark_one(self.key(), |_| parking_lot_core::DEFAULT_UNPARK_TOKEN)
        };
    }

    /// Wake every waiter.
    pub fn broadcast(&self) {
        self.seq.fetch_add(1, Ordering::Relaxed);
        // SAFETY: unparking by this condvar's address.
        unsafe { parking_lot_core::unpark_all(self.key(), parking_lot_core::DEFAULT_UNPARK_TOKEN) };
    }

    /// How many threads are waiting.
    pub fn waiters(&self) -> usize {
        self.nwaiters.load(Ordering::Relaxed)
    }
}

/// `struct rumpuser_cv`.
#[repr(C, align(64))]
pub struct RumpuserCv(pub RawCondvar);

/// A relative timeout from (sec, nsec); negative parts count as zero.
fn rel_timeout(sec: i64, nsec: i64) -> Duration {
    let sec = sec.max(0) as u64;
    let nsec = nsec.max(0) as u64;
    Duration::from_secs(sec).saturating_add(Duration::from_nanos(nsec))
}

/// `rumpuser_cv_init(&cv)`.
///
/// # Safety
/// `cvp` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_cv_init(cvp: *mut *mut RumpuserCv) {
    trace_hit!(rumpuser_cv_init);
    crate::guard("rumpuser_cv_init", || {
        if cvp.is_null() {
            return;
        }
        let cv = Box::into_raw(Box::new(RumpuserCv(RawCondvar::new())));
        // SAFETY: checked non-null; the caller promises validity.
        unsafe { *cvp = cv };
    })
}

/// `rumpuser_cv_destroy(cv)`.
///
/// # Safety
/// `cv` came from `rumpuser_cv_init`, has no waiters, and is not used
/// afterwards.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_cv_destroy(cv: *mut RumpuserCv) {
    trace_hit!(rumpuser_cv_destroy);
    if !cv.is_null() {
        // SAFETY: the box made by rumpuser_cv_init, freed once.
        drop(unsafe { Box::from_raw(cv) });
    }
}

/// `rumpuser_cv_wait(cv, mtx)`.
///
/// # Safety
/// `cv` and `mtx` are live; the caller holds `mtx` (or `mtx` is the
/// scheduler interlock, see [`RawCondvar::wait`]).
#[no_mangle]
pub unsafe extern "C" fn rumpuser_cv_wait(cv: *mut RumpuserCv, mtx: *mut RumpuserMtx) {
    trace_hit!(rumpuser_cv_wait);
    crate::guard("rumpuser_cv_wait", || {
        // SAFETY: live objects per the caller's contract.
        let cv = unsafe { &*cv };
        // SAFETY: as above.
        let mtx = unsafe { &*mtx };
        // SAFETY: the caller holds `mtx`.
        unsafe { cv.0.wait(&mtx.0, None, true) };
    })
}

/// `rumpuser_cv_wait_nowrap(cv, mtx)`: wait keeping the virtual CPU.
///
/// # Safety
/// `cv` and `mtx` are live; the caller holds `mtx`.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_cv_wait_nowrap(cv: *mut RumpuserCv, mtx: *mut RumpuserMtx) {
    trace_hit!(rumpuser_cv_wait_nowrap);
    crate::guard("rumpuser_cv_wait_nowrap", || {
        // SAFETY: live objects per the caller's contract.
        let cv = unsafe { &*cv };
        // SAFETY: as above.
        let mtx = unsafe { &*mtx };
        // SAFETY: the caller holds `mtx`.
        unsafe { cv.0.wait(&mtx.0, None, false) };
    })
}

/// `rumpuser_cv_timedwait(cv, mtx, sec, nsec)`: wait at most the relative
/// time (sec, nsec). Returns 0, or NetBSD `ETIMEDOUT` (60).
///
/// # Safety
/// As for `rumpuser_cv_wait`.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_cv_timedwait(
    cv: *mut RumpuserCv,
    mtx: *mut RumpuserMtx,
    sec: i64,
    nsec: i64,
) -> c_int {
    trace_hit!(rumpuser_cv_timedwait);
    crate::guard("rumpuser_cv_timedwait", || {
        // SAFETY: live objects per the caller's contract.
        let cv = unsafe { &*cv };
        // SAFETY: as above.
        let mtx = unsafe { &*mtx };
        // SAFETY: the caller holds `mtx`.
        let timed_out = unsafe { cv.0.wait(&mtx.0, Some(rel_timeout(sec, nsec)), true) };
        if timed_out {
            ETIMEDOUT
        } else {
            0
        }
    })
}

/// `rumpuser_cv_signal(cv)`.
///
/// # Safety
/// `cv` is live.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_cv_signal(cv: *mut RumpuserCv) {
    trace_hit!(rumpuser_cv_signal);
    // SAFETY: a live cv per the caller's contract.
    unsafe { (*cv).0.signal() }
}

/// `rumpuser_cv_broadcast(cv)`.
///
/// # Safety
/// `cv` is live.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_cv_broadcast(cv: *mut RumpuserCv) {
    trace_hit!(rumpuser_cv_broadcast);
    // SAFETY: a live cv per the caller's contract.
    unsafe { (*cv).0.broadcast() }
}

/// `rumpuser_cv_has_waiters(cv, &n)`: the number of waiters.
///
/// # Safety
/// `cv` is live; `n` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_cv_has_waiters(cv: *mut RumpuserCv, n: *mut c_int) {
    trace_hit!(rumpuser_cv_has_waiters);
    if n.is_null() {
        return;
    }
    // SAFETY: a live cv per the caller's contract.
    let w = unsafe { &*cv }.0.waiters().min(c_int::MAX as usize) as c_int;
    // SAFETY: `n` is writable per the caller's contract.
    unsafe { *n = w }
}

/// A condition variable for the Rust kernel's [`super::Mutex`].
///
/// Waiting gives up the virtual CPU, in the same order as
/// `rumpuser_cv_wait` (the mutex's [`super::Mutex::as_interlock`] address
/// is the interlock passed to the backend upcalls).
#[derive(Default)]
pub struct Condvar {
    raw: RawCondvar,
}

impl Condvar {
    /// A condition variable nobody waits on.
    pub const fn new() -> Condvar {
        Condvar {
            raw: RawCondvar::new(),
        }
    }

    /// Release the guard's mutex, sleep (unscheduled) until notified, and
    /// re-acquire the mutex.
    pub fn wait<T: ?Sized>(&self, guard: &mut MutexGuard<'_, T>) {
        // SAFETY: the guard holds the mutex.
        unsafe { self.raw.wait(&guard.mutex.raw, None, true) };
    }

    /// As [`Condvar::wait`], for at most `timeout`. Returns true if the
    /// time ran out.
    pub fn wait_timeout<T: ?Sized>(
        &self,
        guard: &mut MutexGuard<'_, T>,
        timeout: Duration,
    ) -> bool {
        // SAFETY: the guard holds the mutex.
        unsafe { self.raw.wait(&guard.mutex.raw, Some(timeout), true) }
    }

    /// Wait keeping the virtual CPU (`rumpuser_cv_wait_nowrap`).
    pub fn wait_nowrap<T: ?Sized>(&self, guard: &mut MutexGuard<'_, T>) {
        // SAFETY: the guard holds the mutex.
        unsafe { self.raw.wait(&guard.mutex.raw, None, false) };
    }

    /// Wait until `cond` is false of the protected value.
    pub fn wait_while<T: ?Sized>(
        &self,
        guard: &mut MutexGuard<'_, T>,
        mut cond: impl FnMut(&mut T) -> bool,
    ) {
        while cond(&mut **guard) {
            self.wait(guard);
        }
    }

    /// Wake one waiter, if any.
    pub fn notify_one(&self) {
        self.raw.signal()
    }

    /// Wake every waiter.
    pub fn notify_all(&self) {
        self.raw.broadcast()
    }

    /// How many threads are waiting.
    pub fn waiters(&self) -> usize {
        self.raw.waiters()
    }

    /// Whether any thread is waiting.
    pub fn has_waiters(&self) -> bool {
        self.raw.waiters() > 0
    }
}
