//! Locks: mutexes, reader/writer locks and condition variables, as the C
//! ABI (`rumpuser_mutex_*`, `rumpuser_rw_*`, `rumpuser_cv_*`) and as Rust
//! types ([`Mutex`], [`RwLock`], [`Condvar`]) with the same behaviour.
//!
//! The rule every blocking path follows: try the lock first, with no
//! upcall; only when the thread would block does it give up its virtual CPU
//! (`backend_unschedule(0, &nlocks, interlock)`), block on the host, and
//! take a CPU back (`backend_schedule(nlocks, interlock)`). Spin mutexes and
//! the `_nowrap` calls never unschedule.

mod cv;
mod mutex;
mod rwlock;

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// A number for the calling host thread, never 0 and never reused: what
/// the locks record as their holder, to catch a thread that would
/// deadlock on a lock it holds itself.
pub(crate) fn thread_id() -> u64 {
    // Process-wide: a thread may hold locks of any kernel.
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static ID: Cell<u64> = const { Cell::new(0) };
    }
    ID.with(|id| {
        if id.get() == 0 {
            id.set(NEXT.fetch_add(1, Ordering::Relaxed));
        }
        id.get()
    })
}

/// A lock used in a way that can only deadlock or corrupt: say which lock
/// and what happened, then abort, as NetBSD's hypercall layer does with
/// its error-checking locks. The message is written straight to standard
/// error (the process is about to end: a queued log line would be lost).
#[cold]
#[inline(never)]
pub(crate) fn misuse(kind: &str, addr: *const (), what: &str) -> ! {
    use std::io::Write;
    crate::log::drain(std::time::Duration::from_millis(100));
    let _ = writeln!(
        std::io::stderr(),
        "rumpuser: {kind} {addr:p}: {what}; aborting"
    );
    std::process::abort()
}

pub use cv::{
    rumpuser_cv_broadcast, rumpuser_cv_destroy, rumpuser_cv_has_waiters, rumpuser_cv_init,
    rumpuser_cv_signal, rumpuser_cv_timedwait, rumpuser_cv_wait, rumpuser_cv_wait_nowrap, Condvar,
    RawCondvar, RumpuserCv,
};
pub use mutex::{
    rumpuser_mutex_destroy, rumpuser_mutex_enter, rumpuser_mutex_enter_nowrap, rumpuser_mutex_exit,
    rumpuser_mutex_init, rumpuser_mutex_owner, rumpuser_mutex_tryenter, Mutex, MutexGuard,
    RawMutex, RumpuserMtx, MTX_KMUTEX, MTX_SPIN,
};
pub use rwlock::{
    rumpuser_rw_destroy, rumpuser_rw_downgrade, rumpuser_rw_enter, rumpuser_rw_exit,
    rumpuser_rw_held, rumpuser_rw_init, rumpuser_rw_tryenter, rumpuser_rw_tryupgrade, RawRwLock,
    RumpuserRw, RwLock, RwLockReadGuard, RwLockWriteGuard, RW_READER, RW_WRITER,
};
