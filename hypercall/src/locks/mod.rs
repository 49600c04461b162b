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
