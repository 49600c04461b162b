//! Reader/writer locks.
//!
//! One atomic word: a writer bit, a "someone is parked" bit, and the
//! reader count. Readers are preferred (as with the host's default pthread
//! rwlock), so a reader may re-enter while a writer waits. Unlike a
//! pthread rwlock this one supports `tryupgrade` (succeeds when the caller
//! is the only reader) and an atomic `downgrade` (no other writer can get
//! in between).

use std::cell::UnsafeCell;
use std::ffi::{c_int, c_void};
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use crate::curlwp::curlwp;
use crate::errno::{EBUSY, EINVAL};
use crate::upcalls::LwpPtr;

/// `RUMPUSER_RW_READER`.
pub const RW_READER: c_int = 0;
/// `RUMPUSER_RW_WRITER`.
pub const RW_WRITER: c_int = 1;

const WRITER: usize = 1;
const PARKED: usize = 2;
const ONE_READER: usize = 4;

/// The reader/writer lock behind both faces.
pub struct RawRwLock {
    state: AtomicUsize,
    writer: AtomicPtr<c_void>,
    /// The host thread holding the write hold ([`super::thread_id`]; 0:
    /// none): that thread asking for the lock again would wait for itself.
    wthread: AtomicU64,
}

impl Default for RawRwLock {
    fn default() -> Self {
        RawRwLock::new()
    }
}

impl RawRwLock {
    /// An unlocked lock.
    pub const fn new() -> RawRwLock {
        RawRwLock {
            state: AtomicUsize::new(0),
            writer: AtomicPtr::new(std::ptr::null_mut()),
            wthread: AtomicU64::new(0),
        }
    }

    fn key(&self) -> usize {
        self as *const RawRwLock as usize
    }

    /// Take a read hold if no writer has the lock.
    #[inline]
    pub fn try_read(&self) -> bool {
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            if s & WRITER != 0 {
                return false;
            }
            let Some(n) = s.checked_add(ONE_READER) else {
                return false;
            };
            match self
                .state
                .compare_exchange_weak(s, n, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(x) => s = x,
            }
        }
    }

    /// Take the write hold if nobody holds the lock.
    #[inline]
    pub fn try_write(&self) -> bool {
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            if s & !PARKED != 0 {
                return false;
            }
            match self.state.compare_exchange_weak(
                s,
                s | WRITER,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.writer.store(curlwp(), Ordering::Relaxed);
                    self.wthread.store(super::thread_id(), Ordering::Relaxed);
                    return true;
                }
                Err(x) => s = x,
            }
        }
    }

    /// Sleep until `must_wait(state)` may have become false.
    fn park(&self, must_wait: impl Fn(usize) -> bool) {
        let validate = || {
            let mut s = self.state.load(Ordering::Relaxed);
            loop {
                if !must_wait(s) {
                    return false;
                }
                if s & PARKED != 0 {
                    return true;
                }
                match self.state.compare_exchange_weak(
                    s,
                    s | PARKED,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return true,
                    Err(x) => s = x,
                }
            }
        };
        // SAFETY: the key is this lock's address, live while we park;
        // validate and the callbacks do not park or panic.
        unsafe {
            parking_lot_core::park(
                self.key(),
                validate,
                || {},
                |_, _| {},
                parking_lot_core::DEFAULT_PARK_TOKEN,
                None,
            );
        }
    }

    fn wake_all(&self) {
        // SAFETY: unparking by this lock's address.
        unsafe { parking_lot_core::unpark_all(self.key(), parking_lot_core::DEFAULT_UNPARK_TOKEN) };
    }

    /// Block for a read hold (no unscheduling here).
    pub fn read_blocking(&self) {
        while !self.try_read() {
            self.park(|s| s & WRITER != 0);
        }
    }

    /// Block for the write hold (no unscheduling here).
    pub fn write_blocking(&self) {
        while !self.try_write() {
            self.park(|s| s & !PARKED != 0);
        }
    }

    /// `rumpuser_rw_enter(READER)`: try, else unschedule and block.
    #[inline]
    pub fn enter_read(&self) {
        self.not_writing("read-locked by the thread that holds it for writing (a deadlock)");
        if !self.try_read() {
            self.enter_slow(false);
        }
    }

    /// `rumpuser_rw_enter(WRITER)`: try, else unschedule and block.
    #[inline]
    pub fn enter_write(&self) {
        self.not_writing("write-locked again by the thread that holds it (a deadlock)");
        if !self.try_write() {
            self.enter_slow(true);
        }
    }

    /// Abort with `what` if the calling thread holds the write hold.
    #[inline(always)]
    fn not_writing(&self, what: &str) {
        if self.wthread.load(Ordering::Relaxed) == super::thread_id() {
            super::misuse("rwlock", self as *const Self as *const (), what);
        }
    }

    /// Called before the lock is freed: destroying a held lock is a bug
    /// of its user.
    pub(super) fn check_destroy(&self) {
        if self.state.load(Ordering::Relaxed) & !PARKED != 0 {
            super::misuse(
                "rwlock",
                self as *const Self as *const (),
                "destroyed while held",
            );
        }
    }

    #[cold]
    #[inline(never)]
    fn enter_slow(&self, write: bool) {
        crate::guard("rumpuser_rw_enter", || {
            crate::upcalls::blocking(std::ptr::null_mut(), || {
                if write {
                    self.write_blocking()
                } else {
                    self.read_blocking()
                }
            })
        })
    }

    /// Release a read hold.
    ///
    /// # Safety
    /// The caller holds a read hold.
    #[inline]
    pub unsafe fn unlock_read(&self) {
        let old = self.state.fetch_sub(ONE_READER, Ordering::Release);
        if old == ONE_READER | PARKED
            && self
                .state
                .compare_exchange(PARKED, 0, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.wake_all();
        }
    }

    /// Release the write hold.
    ///
    /// # Safety
    /// The caller holds the write hold.
    #[inline]
    pub unsafe fn unlock_write(&self) {
        self.writer.store(std::ptr::null_mut(), Ordering::Relaxed);
        self.wthread.store(0, Ordering::Relaxed);
        let old = self.state.swap(0, Ordering::Release);
        if old & PARKED != 0 {
            self.wake_all();
        }
    }

    /// `rumpuser_rw_exit`: release whichever hold the caller has.
    ///
    /// # Safety
    /// The caller holds the lock.
    #[inline]
    pub unsafe fn exit(&self) {
        if self.state.load(Ordering::Relaxed) & WRITER != 0 {
            // SAFETY: a writer holds it, and the caller holds it: the caller.
            unsafe { self.unlock_write() }
        } else {
            // SAFETY: the caller holds a read hold.
            unsafe { self.unlock_read() }
        }
    }

    /// Turn the caller's write hold into a read hold, letting no writer in
    /// between.
    ///
    /// # Safety
    /// The caller holds the write hold.
    pub unsafe fn downgrade(&self) {
        self.writer.store(std::ptr::null_mut(), Ordering::Relaxed);
        self.wthread.store(0, Ordering::Relaxed);
        let old = self.state.swap(ONE_READER, Ordering::AcqRel);
        if old & PARKED != 0 {
            self.wake_all();
        }
    }

    /// Turn the caller's read hold into the write hold if it is the only
    /// reader.
    ///
    /// # Safety
    /// The caller holds a read hold.
    pub unsafe fn try_upgrade(&self) -> bool {
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            if s & !PARKED != ONE_READER {
                return false;
            }
            match self.state.compare_exchange_weak(
                s,
                (s & PARKED) | WRITER,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.writer.store(curlwp(), Ordering::Relaxed);
                    self.wthread.store(super::thread_id(), Ordering::Relaxed);
                    return true;
                }
                Err(x) => s = x,
            }
        }
    }

    /// True if the calling lwp holds the write hold.
    pub fn write_held(&self) -> bool {
        self.state.load(Ordering::Relaxed) & WRITER != 0
            && self.writer.load(Ordering::Relaxed) == curlwp()
    }

    /// The number of read holds.
    pub fn readers(&self) -> usize {
        self.state.load(Ordering::Relaxed) / ONE_READER
    }

    /// The lwp holding the write hold, if any.
    pub fn writer(&self) -> LwpPtr {
        if self.state.load(Ordering::Relaxed) & WRITER != 0 {
            self.writer.load(Ordering::Relaxed)
        } else {
            std::ptr::null_mut()
        }
    }
}

/// `struct rumpuser_rw`.
#[repr(C, align(64))]
pub struct RumpuserRw(pub RawRwLock);

/// `rumpuser_rw_init(&rw)`.
///
/// # Safety
/// `rwp` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_rw_init(rwp: *mut *mut RumpuserRw) {
    trace_hit!(rumpuser_rw_init);
    crate::guard("rumpuser_rw_init", || {
        if rwp.is_null() {
            return;
        }
        let rw = Box::into_raw(Box::new(RumpuserRw(RawRwLock::new())));
        // SAFETY: checked non-null; the caller promises validity.
        unsafe { *rwp = rw };
    })
}

/// `rumpuser_rw_enter(lk, rw)`.
///
/// # Safety
/// `rw` came from `rumpuser_rw_init` and is live.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_rw_enter(lk: c_int, rw: *mut RumpuserRw) {
    trace_hit!(rumpuser_rw_enter);
    // SAFETY: a live lock per the caller's contract.
    let rw = unsafe { &(*rw).0 };
    match lk {
        RW_WRITER => rw.enter_write(),
        RW_READER => rw.enter_read(),
        _ => {} // not a lock type: nothing to take (as NetBSD)
    }
}

/// `rumpuser_rw_tryenter(lk, rw)`: 0, NetBSD `EBUSY`, or `EINVAL` for an
/// unknown lock type.
///
/// # Safety
/// As for `rumpuser_rw_enter`.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_rw_tryenter(lk: c_int, rw: *mut RumpuserRw) -> c_int {
    trace_hit!(rumpuser_rw_tryenter);
    // SAFETY: a live lock per the caller's contract.
    let rw = unsafe { &(*rw).0 };
    let ok = match lk {
        RW_WRITER => rw.try_write(),
        RW_READER => rw.try_read(),
        _ => return EINVAL,
    };
    if ok {
        0
    } else {
        EBUSY
    }
}

/// `rumpuser_rw_tryupgrade(rw)`: 0 if the caller was the only reader and
/// now holds the write hold, else NetBSD `EBUSY` (still a reader).
///
/// # Safety
/// `rw` is live and the caller holds a read hold.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_rw_tryupgrade(rw: *mut RumpuserRw) -> c_int {
    trace_hit!(rumpuser_rw_tryupgrade);
    // SAFETY: a live lock per the caller's contract.
    let l = unsafe { &*rw };
    // SAFETY: the caller holds it for reading.
    if unsafe { l.0.try_upgrade() } {
        0
    } else {
        EBUSY
    }
}

/// `rumpuser_rw_downgrade(rw)`.
///
/// # Safety
/// `rw` is live and the caller holds the write hold.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_rw_downgrade(rw: *mut RumpuserRw) {
    trace_hit!(rumpuser_rw_downgrade);
    // SAFETY: a live lock per the caller's contract.
    let l = unsafe { &*rw };
    // SAFETY: the caller holds it for writing.
    unsafe { l.0.downgrade() }
}

/// `rumpuser_rw_exit(rw)`.
///
/// # Safety
/// `rw` is live and held by the caller.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_rw_exit(rw: *mut RumpuserRw) {
    trace_hit!(rumpuser_rw_exit);
    // SAFETY: a live lock per the caller's contract.
    let l = unsafe { &*rw };
    // SAFETY: the caller holds it.
    unsafe { l.0.exit() }
}

/// `rumpuser_rw_destroy(rw)`.
///
/// # Safety
/// `rw` came from `rumpuser_rw_init`, is free, and is not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_rw_destroy(rw: *mut RumpuserRw) {
    trace_hit!(rumpuser_rw_destroy);
    if !rw.is_null() {
        // SAFETY: the box made by rumpuser_rw_init, freed once.
        let l = unsafe { Box::from_raw(rw) };
        l.0.check_destroy();
        drop(l);
    }
}

/// `rumpuser_rw_held(lk, rw, &rv)`: for `WRITER`, whether the calling lwp
/// holds the write hold; for `READER`, the number of read holds.
///
/// # Safety
/// `rw` is live; `rv` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_rw_held(lk: c_int, rw: *mut RumpuserRw, rv: *mut c_int) {
    trace_hit!(rumpuser_rw_held);
    if rv.is_null() {
        return;
    }
    // SAFETY: a live lock per the caller's contract.
    let rw = unsafe { &(*rw).0 };
    let v = match lk {
        RW_WRITER => rw.write_held() as c_int,
        _ => rw.readers().min(c_int::MAX as usize) as c_int,
    };
    // SAFETY: checked non-null; the caller promises validity.
    unsafe { *rv = v }
}

/// A kernel reader/writer lock protecting a `T`, for the Rust kernel.
pub struct RwLock<T: ?Sized> {
    raw: RawRwLock,
    data: UnsafeCell<T>,
}

// SAFETY: the lock serialises writers and shares only `&T` among readers.
unsafe impl<T: ?Sized + Send> Send for RwLock<T> {}
// SAFETY: as above; readers on several threads need `T: Sync`.
unsafe impl<T: ?Sized + Send + Sync> Sync for RwLock<T> {}

impl<T: Default> Default for RwLock<T> {
    fn default() -> Self {
        RwLock::new(T::default())
    }
}

impl<T> RwLock<T> {
    /// An unlocked lock protecting `value`.
    pub const fn new(value: T) -> RwLock<T> {
        RwLock {
            raw: RawRwLock::new(),
            data: UnsafeCell::new(value),
        }
    }

    /// The protected value, the lock consumed.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: ?Sized> RwLock<T> {
    /// A read hold (unscheduling only if a writer holds the lock).
    #[inline]
    pub fn read(&self) -> RwLockReadGuard<'_, T> {
        self.raw.enter_read();
        RwLockReadGuard {
            lock: self,
            _not_send: PhantomData,
        }
    }

    /// The write hold (unscheduling only if the lock is held).
    #[inline]
    pub fn write(&self) -> RwLockWriteGuard<'_, T> {
        self.raw.enter_write();
        RwLockWriteGuard {
            lock: self,
            _not_send: PhantomData,
        }
    }

    /// Share the lock without waiting; `None` if a writer holds it.
    pub fn try_read(&self) -> Option<RwLockReadGuard<'_, T>> {
        if self.raw.try_read() {
            Some(RwLockReadGuard {
                lock: self,
                _not_send: PhantomData,
            })
        } else {
            None
        }
    }

    /// Take the lock exclusively without waiting; `None` if anyone holds it.
    pub fn try_write(&self) -> Option<RwLockWriteGuard<'_, T>> {
        if self.raw.try_write() {
            Some(RwLockWriteGuard {
                lock: self,
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

    /// True if the calling lwp holds the write hold.
    pub fn write_held(&self) -> bool {
        self.raw.write_held()
    }

    /// The number of read holds.
    pub fn readers(&self) -> usize {
        self.raw.readers()
    }
}

/// A read hold on a [`RwLock`].
#[must_use = "the lock is released when the guard is dropped"]
pub struct RwLockReadGuard<'a, T: ?Sized> {
    lock: &'a RwLock<T>,
    _not_send: PhantomData<*const ()>,
}

/// The write hold on a [`RwLock`].
#[must_use = "the lock is released when the guard is dropped"]
pub struct RwLockWriteGuard<'a, T: ?Sized> {
    lock: &'a RwLock<T>,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: sharing a guard only shares `&T`.
unsafe impl<T: ?Sized + Sync> Sync for RwLockReadGuard<'_, T> {}
// SAFETY: as above.
unsafe impl<T: ?Sized + Sync> Sync for RwLockWriteGuard<'_, T> {}

impl<'a, T: ?Sized> RwLockReadGuard<'a, T> {
    /// Become the writer if this is the only read hold; otherwise get the
    /// read guard back.
    pub fn try_upgrade(this: Self) -> Result<RwLockWriteGuard<'a, T>, Self> {
        // SAFETY: `this` holds a read hold.
        if unsafe { this.lock.raw.try_upgrade() } {
            let this = ManuallyDrop::new(this);
            Ok(RwLockWriteGuard {
                lock: this.lock,
                _not_send: PhantomData,
            })
        } else {
            Err(this)
        }
    }
}

impl<'a, T: ?Sized> RwLockWriteGuard<'a, T> {
    /// Turn the write hold into a read hold atomically.
    pub fn downgrade(this: Self) -> RwLockReadGuard<'a, T> {
        let this = ManuallyDrop::new(this);
        // SAFETY: `this` holds the write hold, which is handed over.
        unsafe { this.lock.raw.downgrade() };
        RwLockReadGuard {
            lock: this.lock,
            _not_send: PhantomData,
        }
    }
}

impl<T: ?Sized> Deref for RwLockReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: a read hold excludes writers.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> Deref for RwLockWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the write hold is exclusive.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> DerefMut for RwLockWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the write hold is exclusive, uniquely borrowed.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for RwLockReadGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: the guard holds a read hold.
        unsafe { self.lock.raw.unlock_read() }
    }
}

impl<T: ?Sized> Drop for RwLockWriteGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: the guard holds the write hold.
        unsafe { self.lock.raw.unlock_write() }
    }
}
