//! Mutexes.

use std::cell::UnsafeCell;
use std::ffi::{c_int, c_void};
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

use parking_lot::lock_api::RawMutex as _;

use crate::curlwp::curlwp;
use crate::errno::EBUSY;
use crate::upcalls::LwpPtr;

/// `RUMPUSER_MTX_SPIN`: never give up the virtual CPU while acquiring.
pub const MTX_SPIN: c_int = 0x01;
/// `RUMPUSER_MTX_KMUTEX`: a kernel mutex; record its owner lwp.
pub const MTX_KMUTEX: c_int = 0x02;

/// The mutex behind both faces: a parking_lot lock, the owner lwp (for
/// `KMUTEX`), and the flags.
pub struct RawMutex {
    lock: parking_lot::RawMutex,
    owner: AtomicPtr<c_void>,
    /// The host thread holding it ([`super::thread_id`]; 0: none): a
    /// thread entering a mutex it holds is caught instead of hanging.
    holder: AtomicU64,
    pub(super) flags: c_int,
}

impl RawMutex {
    /// A mutex with `MTX_*` flags.
    pub const fn new(flags: c_int) -> RawMutex {
        RawMutex {
            lock: parking_lot::RawMutex::INIT,
            owner: AtomicPtr::new(std::ptr::null_mut()),
            holder: AtomicU64::new(0),
            flags,
        }
    }

    #[inline(always)]
    fn raw(&self) -> &parking_lot::RawMutex {
        &self.lock
    }

    #[inline(always)]
    pub(super) fn set_owner(&self) {
        if self.flags & MTX_KMUTEX != 0 {
            self.owner.store(curlwp(), Ordering::Relaxed);
        }
    }

    #[inline(always)]
    pub(super) fn clear_owner(&self) {
        if self.flags & MTX_KMUTEX != 0 {
            self.owner.store(std::ptr::null_mut(), Ordering::Relaxed);
        }
    }

    /// `rumpuser_mutex_enter`: spin mutexes as `enter_nowrap`; others try
    /// first, and only when that fails unschedule around the blocking lock.
    #[inline]
    pub fn enter(&self) {
        if self.flags & MTX_SPIN != 0 {
            return self.enter_nowrap();
        }
        let me = self.not_mine();
        if !self.raw().try_lock() {
            self.enter_slow();
        }
        self.holder.store(me, Ordering::Relaxed);
        self.set_owner();
    }

    /// The calling thread's id, after making sure it does not hold this
    /// mutex already (it would wait for itself forever).
    #[inline(always)]
    fn not_mine(&self) -> u64 {
        let me = super::thread_id();
        if self.holder.load(Ordering::Relaxed) == me {
            super::misuse(
                "mutex",
                self as *const Self as *const (),
                "entered again by the thread that holds it (a deadlock)",
            );
        }
        me
    }

    /// Called before the mutex is freed: destroying a held mutex is a bug
    /// of its user.
    pub(super) fn check_destroy(&self) {
        if self.is_locked() {
            super::misuse(
                "mutex",
                self as *const Self as *const (),
                "destroyed while held",
            );
        }
    }

    #[cold]
    #[inline(never)]
    fn enter_slow(&self) {
        crate::guard("rumpuser_mutex_enter", || {
            crate::upcalls::blocking(std::ptr::null_mut(), || self.raw().lock())
        })
    }

    /// `rumpuser_mutex_enter_nowrap`: block, if need be, keeping the CPU.
    #[inline]
    pub fn enter_nowrap(&self) {
        let me = self.not_mine();
        self.raw().lock();
        self.holder.store(me, Ordering::Relaxed);
        self.set_owner();
    }

    /// The raw lock, without owner bookkeeping (cv wake-up path).
    #[inline]
    pub(super) fn lock_raw(&self) {
        self.raw().lock();
        self.holder.store(super::thread_id(), Ordering::Relaxed);
    }

    /// Release the raw lock, without owner bookkeeping (cv wait path).
    ///
    /// # Safety
    /// The caller holds the lock.
    #[inline]
    pub(super) unsafe fn unlock_raw(&self) {
        self.holder.store(0, Ordering::Relaxed);
        // SAFETY: per the caller.
        unsafe { self.raw().unlock() }
    }

    /// `rumpuser_mutex_tryenter`: true if the lock was taken.
    #[inline]
    pub fn try_enter(&self) -> bool {
        if self.raw().try_lock() {
            self.holder.store(super::thread_id(), Ordering::Relaxed);
            self.set_owner();
            true
        } else {
            false
        }
    }

    /// `rumpuser_mutex_exit`.
    ///
    /// # Safety
    /// The caller holds the mutex.
    #[inline]
    pub unsafe fn exit(&self) {
        self.clear_owner();
        self.holder.store(0, Ordering::Relaxed);
        // SAFETY: the caller holds the lock.
        unsafe { self.raw().unlock() }
    }

    /// The owner lwp of a `KMUTEX` mutex (null if not held, or not a
    /// `KMUTEX`).
    #[inline]
    pub fn owner(&self) -> LwpPtr {
        self.owner.load(Ordering::Relaxed)
    }

    /// Whether the lock is held by anyone.
    pub fn is_locked(&self) -> bool {
        self.raw().is_locked()
    }

    /// The `RUMPUSER_MTX_*` flags the mutex was made with.
    pub fn flags(&self) -> c_int {
        self.flags
    }
}

/// `struct rumpuser_mtx`: a [`RawMutex`] on its own cache line.
#[repr(C, align(64))]
pub struct RumpuserMtx(pub RawMutex);

/// `rumpuser_mutex_init(&mtx, flags)`.
///
/// # Safety
/// `mtxp` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_mutex_init(mtxp: *mut *mut RumpuserMtx, flags: c_int) {
    trace_hit!(rumpuser_mutex_init);
    crate::guard("rumpuser_mutex_init", || {
        if mtxp.is_null() {
            return;
        }
        let m = Box::into_raw(Box::new(RumpuserMtx(RawMutex::new(flags))));
        // SAFETY: checked non-null; the caller promises validity.
        unsafe { *mtxp = m };
    })
}

/// `rumpuser_mutex_enter(mtx)`.
///
/// # Safety
/// `mtx` came from `rumpuser_mutex_init` and is not destroyed.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_mutex_enter(mtx: *mut RumpuserMtx) {
    trace_hit!(rumpuser_mutex_enter);
    // SAFETY: a live mutex per the caller's contract.
    unsafe { (*mtx).0.enter() }
}

/// `rumpuser_mutex_enter_nowrap(mtx)`.
///
/// # Safety
/// As for `rumpuser_mutex_enter`.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_mutex_enter_nowrap(mtx: *mut RumpuserMtx) {
    trace_hit!(rumpuser_mutex_enter_nowrap);
    // SAFETY: a live mutex per the caller's contract.
    unsafe { (*mtx).0.enter_nowrap() }
}

/// `rumpuser_mutex_tryenter(mtx)`: 0, or NetBSD `EBUSY`.
///
/// # Safety
/// As for `rumpuser_mutex_enter`.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_mutex_tryenter(mtx: *mut RumpuserMtx) -> c_int {
    trace_hit!(rumpuser_mutex_tryenter);
    // SAFETY: a live mutex per the caller's contract.
    if unsafe { (*mtx).0.try_enter() } {
        0
    } else {
        EBUSY
    }
}

/// `rumpuser_mutex_exit(mtx)`.
///
/// # Safety
/// `mtx` is live and held by the caller.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_mutex_exit(mtx: *mut RumpuserMtx) {
    trace_hit!(rumpuser_mutex_exit);
    // SAFETY: a live mutex per the caller's contract.
    let m = unsafe { &*mtx };
    // SAFETY: the caller holds it.
    unsafe { m.0.exit() }
}

/// `rumpuser_mutex_destroy(mtx)`.
///
/// # Safety
/// `mtx` came from `rumpuser_mutex_init`, is unlocked, and is not used
/// afterwards.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_mutex_destroy(mtx: *mut RumpuserMtx) {
    trace_hit!(rumpuser_mutex_destroy);
    if !mtx.is_null() {
        // SAFETY: the box made by rumpuser_mutex_init, freed once.
        let m = unsafe { Box::from_raw(mtx) };
        m.0.check_destroy();
        drop(m);
    }
}

/// `rumpuser_mutex_owner(mtx, &l)`: the owner lwp of a `KMUTEX` mutex.
///
/// # Safety
/// `mtx` is live; `lp` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_mutex_owner(mtx: *mut RumpuserMtx, lp: *mut LwpPtr) {
    trace_hit!(rumpuser_mutex_owner);
    if lp.is_null() {
        return;
    }
    // SAFETY: a live mutex per the caller's contract.
    let owner = unsafe { &*mtx }.0.owner();
    // SAFETY: `lp` is writable per the caller's contract.
    unsafe { *lp = owner }
}

/// A kernel mutex protecting a `T`, for the Rust kernel.
///
/// `lock` tries first and gives up the virtual CPU only when it must block
/// (unless made with [`Mutex::new_spin`]); the owner lwp is recorded.
pub struct Mutex<T: ?Sized> {
    pub(super) raw: RawMutex,
    data: UnsafeCell<T>,
}

// SAFETY: the lock serialises all access to `data`.
unsafe impl<T: ?Sized + Send> Send for Mutex<T> {}
// SAFETY: as above.
unsafe impl<T: ?Sized + Send> Sync for Mutex<T> {}

impl<T> Mutex<T> {
    /// An adaptive kernel mutex (unschedules when blocking).
    pub const fn new(value: T) -> Mutex<T> {
        Mutex {
            raw: RawMutex::new(MTX_KMUTEX),
            data: UnsafeCell::new(value),
        }
    }

    /// A spin kernel mutex: acquiring never gives up the virtual CPU.
    pub const fn new_spin(value: T) -> Mutex<T> {
        Mutex {
            raw: RawMutex::new(MTX_KMUTEX | MTX_SPIN),
            data: UnsafeCell::new(value),
        }
    }

    /// The protected value, the mutex consumed.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: Default> Default for Mutex<T> {
    fn default() -> Self {
        Mutex::new(T::default())
    }
}

impl<T: ?Sized + std::fmt::Debug> std::fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.try_lock() {
            Some(g) => f.debug_struct("Mutex").field("data", &&*g).finish(),
            None => f.debug_struct("Mutex").field("data", &"<locked>").finish(),
        }
    }
}

impl<T: ?Sized> Mutex<T> {
    /// Acquire (unscheduling only if the lock is contended and this is not
    /// a spin mutex).
    #[inline]
    pub fn lock(&self) -> MutexGuard<'_, T> {
        self.raw.enter();
        MutexGuard {
            mutex: self,
            _not_send: PhantomData,
        }
    }

    /// Acquire without ever giving up the virtual CPU.
    #[inline]
    pub fn lock_nowrap(&self) -> MutexGuard<'_, T> {
        self.raw.enter_nowrap();
        MutexGuard {
            mutex: self,
            _not_send: PhantomData,
        }
    }

    /// Lock without waiting (and without giving up the virtual CPU); `None` if it is held.
    #[inline]
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        if self.raw.try_enter() {
            Some(MutexGuard {
                mutex: self,
                _not_send: PhantomData,
            })
        } else {
            None
        }
    }

    /// The protected value through `&mut` (no locking needed).
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    /// The lwp holding the lock (null if free or held outside any lwp).
    pub fn owner(&self) -> LwpPtr {
        self.raw.owner()
    }

    /// True if the calling thread's lwp holds the lock (`mutex_owned`).
    /// Meaningful only on threads with a current lwp.
    pub fn owned(&self) -> bool {
        self.raw.is_locked() && self.raw.owner() == curlwp()
    }

    /// Whether the lock is held by anyone.
    pub fn is_locked(&self) -> bool {
        self.raw.is_locked()
    }

    /// The value passed as `interlock` to the backend upcalls when a
    /// [`super::Condvar`] waits on this mutex.
    pub fn as_interlock(&self) -> *mut c_void {
        &self.raw as *const RawMutex as *mut c_void
    }
}

/// Holds a [`Mutex`] until dropped.
#[must_use = "the lock is released when the guard is dropped"]
pub struct MutexGuard<'a, T: ?Sized> {
    pub(super) mutex: &'a Mutex<T>,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: sharing a guard only shares `&T`.
unsafe impl<T: ?Sized + Sync> Sync for MutexGuard<'_, T> {}

impl<T: ?Sized> MutexGuard<'_, T> {
    /// The mutex this guard holds.
    pub fn mutex(&self) -> &Mutex<T> {
        self.mutex
    }
}

impl<T: ?Sized> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock.
        unsafe { &*self.mutex.data.get() }
    }
}

impl<T: ?Sized> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds the lock, uniquely borrowed.
        unsafe { &mut *self.mutex.data.get() }
    }
}

impl<T: ?Sized> Drop for MutexGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: the guard holds the lock.
        unsafe { self.mutex.raw.exit() }
    }
}
