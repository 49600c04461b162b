//! The upcalls: how the hypercall layer (and its sysproxy server) drives
//! the kernel. Semantics follow NetBSD's rump kernel:
//!
//! * A thread with no current lwp that schedules runs as an implicit,
//!   already-released lwp of process 1: `lwproc_curlwp` reports null, and
//!   `rfork` forks from process 1.
//! * `rfork(client, flags, comm)` makes a process whose memory is the
//!   sysproxy client and switches the thread to its first lwp.
//! * `newlwp(pid)` makes (and switches to) a new lwp in process `pid`
//!   (`ESRCH` if none, `EBUSY` if it is exiting).
//! * `release` drops the creator's reference to the current lwp: it is
//!   freed when the thread switches away from it or unschedules; the
//!   process goes with its last lwp (descriptors closed).
//! * `switch(l)` makes `l` current (null: none); `lwpexit` marks the
//!   current process as exiting; `execnotify` renames it and closes its
//!   close-on-exec descriptors; `getpid` is the current process's pid.

use std::ffi::{c_int, c_long, c_void, CStr};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use netbsd_abi::errno::*;
use rumpuser::sp::ClientHandle;
use rumpuser::upcalls::{LwpPtr, Upcalls};

use crate::copy::Memory;
use crate::proc::{curlwp_raw, set_curlwp_raw, FdMode, Lwp, Proc};
use crate::{sched, Kernel};

/// `RUMP_RFFDG`: copy the parent's descriptors.
pub const RUMP_RFFDG: c_int = 0x01;
/// `RUMP_RFCFDG`: start with no descriptors.
pub const RUMP_RFCFDG: c_int = 0x02;

/// One upcall table of a kernel. Its `token` marks the lwps it makes: its
/// `lwproc_release` releases only those, so that code holding another
/// table (an embedder's callback, a file system calling
/// `Kernel::upcalls()`) cannot free an lwp whose pointer this table's
/// user keeps (a sysproxy connection's main lwp).
pub(crate) struct KernelUpcalls {
    pub(crate) k: Arc<Kernel>,
    token: u64,
}

impl KernelUpcalls {
    pub(crate) fn new(k: Arc<Kernel>) -> KernelUpcalls {
        // Process-wide: tokens tell apart the tables of every kernel.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        KernelUpcalls {
            k,
            token: NEXT.fetch_add(1, Ordering::Relaxed),
        }
    }
}

/// The process-wide upcall table of built-in kernels: what the hypercall
/// layer's locks, condition variables and I/O need, which is the calling
/// thread's CPU (whichever kernel it belongs to: see [`sched`]). Each
/// kernel's own table goes to its sysproxy server instead, so no kernel
/// is kept alive by a process-global.
pub(crate) struct SchedUpcalls;

impl Upcalls for SchedUpcalls {
    fn schedule(&self) {}
    fn unschedule(&self) {}
    fn backend_unschedule(&self, _nlocks: c_int, _interlock: *mut c_void) -> c_int {
        sched::backend_unschedule()
    }
    fn backend_schedule(&self, _nlocks: c_int, _interlock: *mut c_void) {
        sched::backend_schedule()
    }
    unsafe fn lwproc_switch(&self, _l: LwpPtr) {}
    fn lwproc_release(&self) {}
    fn lwproc_rfork(&self, _client: ClientHandle, _flags: c_int, _comm: Option<&CStr>) -> c_int {
        ENOSYS
    }
    fn lwproc_newlwp(&self, _pid: libc::pid_t) -> c_int {
        // The hypercall layer's I/O threads ask for one; they need none.
        0
    }
    fn lwproc_curlwp(&self) -> LwpPtr {
        std::ptr::null_mut()
    }
    unsafe fn syscall(&self, _num: c_int, _args: &mut [u64], _retval: &mut [c_long; 2]) -> c_int {
        ENOSYS
    }
    fn lwpexit(&self) {}
    fn execnotify(&self, _comm: &CStr) {}
    fn getpid(&self) -> libc::pid_t {
        -1
    }
}

impl Kernel {
    /// The current lwp if it belongs to this kernel.
    fn cur(&self) -> Option<&Lwp> {
        let l = curlwp_raw();
        if l.is_null() {
            return None;
        }
        // SAFETY: a non-null current lwp is a live `Box<Lwp>` this thread
        // was switched to; it is freed only by this thread (switch away /
        // unschedule), so it outlives this borrow.
        let l = unsafe { &*l };
        (l.kernel == self.id()).then_some(l)
    }

    /// The process the calling thread runs as.
    pub(crate) fn curproc(&self) -> Arc<Proc> {
        match self.cur() {
            Some(l) => l.proc.clone(),
            None => self.init_proc().clone(),
        }
    }

    /// Free an lwp that has been released; its process goes with its
    /// last lwp.
    pub(crate) fn free_lwp(&self, l: *mut Lwp) {
        // SAFETY: `l` came from `Box::into_raw` in `make_lwp`, is no
        // longer current on any thread, and is freed exactly once (the
        // caller just took it off this thread).
        let b = unsafe { Box::from_raw(l) };
        let p = b.proc.clone();
        drop(b);
        if p.nlwps.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.proc_exit(&p);
        }
    }

    /// Switch the calling thread to `new` (null: no lwp), freeing the old
    /// one if it was released.
    ///
    /// # Safety
    /// `new` is null or a live lwp of this kernel that stays alive while
    /// it is current.
    pub(crate) unsafe fn switch_to(&self, new: *mut Lwp) {
        let old = curlwp_raw();
        if old == new {
            return;
        }
        // SAFETY: `switch_to`'s contract: `new` is null or a live lwp.
        unsafe { set_curlwp_raw(new) };
        if !old.is_null() {
            // SAFETY: `old` was this thread's current lwp, alive until we
            // free it here.
            let o = unsafe { &*old };
            let (reapable, ours) = (o.reapable(), o.kernel == self.id());
            if reapable && ours {
                self.free_lwp(old);
            }
        }
    }

    /// An lwp that the upcall table with `token` made (and may release).
    pub(crate) fn make_lwp(&self, p: Arc<Proc>, token: u64) -> *mut Lwp {
        Box::into_raw(Lwp::new(p, self.id(), token))
    }

    /// An lwp that only its maker frees (with [`Kernel::free_lwp`]): what
    /// a release, a switch or an unschedule does to it never does.
    pub(crate) fn make_pinned_lwp(&self, p: Arc<Proc>) -> *mut Lwp {
        Box::into_raw(Lwp::new(p, self.id(), crate::proc::PINNED))
    }

    pub(crate) fn up_rfork(
        &self,
        token: u64,
        client: ClientHandle,
        flags: c_int,
        comm: Option<&str>,
    ) -> c_int {
        if self.is_quiesced() || !self.is_admitting() {
            return ESHUTDOWN;
        }
        if flags & !(RUMP_RFFDG | RUMP_RFCFDG) != 0 || flags == RUMP_RFFDG | RUMP_RFCFDG {
            return EINVAL;
        }
        let mode = match flags {
            RUMP_RFFDG => FdMode::Copy,
            RUMP_RFCFDG => FdMode::Clear,
            _ => FdMode::Share,
        };
        let parent = self.curproc();
        let mem = if client.is_null() {
            Memory::Local
        } else {
            Memory::Remote(client)
        };
        let p = match self.new_proc(&parent, mem, comm, mode) {
            Ok(p) => p,
            Err(e) => return e.0,
        };
        let l = self.make_lwp(p, token);
        // SAFETY: `l` was just made; it lives until released and freed.
        unsafe { self.switch_to(l) };
        0
    }

    pub(crate) fn up_newlwp(&self, token: u64, pid: i32) -> c_int {
        if self.is_quiesced() {
            return ESHUTDOWN;
        }
        let Some(p) = self.find_proc(pid) else {
            return ESRCH;
        };
        if p.exiting.load(Ordering::SeqCst) {
            return EBUSY;
        }
        let l = self.make_lwp(p, token);
        // SAFETY: `l` was just made; it lives until released and freed.
        unsafe { self.switch_to(l) };
        0
    }

    /// Release the current lwp if the table with `token` made it.
    pub(crate) fn up_release(&self, token: u64) {
        if let Some(l) = self.cur() {
            if l.owner == token {
                l.rele();
            }
        }
    }

    /// At unschedule: a released current lwp is freed and the thread has
    /// no lwp any more.
    fn reap_current(&self) {
        let l = curlwp_raw();
        if l.is_null() {
            return;
        }
        // SAFETY: this thread's live current lwp.
        let cur = unsafe { &*l };
        let (reapable, ours) = (cur.reapable(), cur.kernel == self.id());
        if reapable && ours {
            // SAFETY: null is always a valid current lwp.
            unsafe { set_curlwp_raw(std::ptr::null_mut()) };
            self.free_lwp(l);
        }
    }
}

impl Upcalls for KernelUpcalls {
    fn schedule(&self) {
        self.k.sched.schedule();
    }

    fn unschedule(&self) {
        self.k.reap_current();
        self.k.sched.unschedule();
    }

    fn backend_unschedule(&self, _nlocks: c_int, _interlock: *mut c_void) -> c_int {
        sched::backend_unschedule()
    }

    fn backend_schedule(&self, _nlocks: c_int, _interlock: *mut c_void) {
        sched::backend_schedule()
    }

    unsafe fn lwproc_switch(&self, l: LwpPtr) {
        // SAFETY: the trait's contract: `l` is null or an lwp we handed out
        // and that was not released.
        unsafe { self.k.switch_to(l.cast()) }
    }

    fn lwproc_release(&self) {
        self.k.up_release(self.token);
    }

    fn lwproc_rfork(&self, client: ClientHandle, flags: c_int, comm: Option<&CStr>) -> c_int {
        let c = comm.map(CStr::to_string_lossy);
        self.k.up_rfork(self.token, client, flags, c.as_deref())
    }

    fn lwproc_newlwp(&self, pid: libc::pid_t) -> c_int {
        self.k.up_newlwp(self.token, pid)
    }

    fn lwproc_curlwp(&self) -> LwpPtr {
        match self.k.cur() {
            Some(l) if !l.exiting() => (l as *const Lwp).cast_mut().cast(),
            _ => std::ptr::null_mut(),
        }
    }

    unsafe fn syscall(&self, num: c_int, args: &mut [u64], retval: &mut [c_long; 2]) -> c_int {
        let k = &self.k;
        if !k.is_admitting() {
            return ESHUTDOWN;
        }
        let Some(n) = netbsd_abi::syscall::nargs(num) else {
            return ENOSYS;
        };
        if args.len() < n {
            return EFAULT;
        }
        let mut a = [0u64; 8];
        for (slot, v) in a.iter_mut().zip(args.iter()).take(n) {
            *slot = u64::from_le(*v);
        }
        let p = k.curproc();
        let mut rv = [0i64; 2];
        let mut run = || k.run_syscall(&p, num, &a[..n], &mut rv);
        let e = match p.mem {
            // SAFETY: the trait's contract: the caller vouches for every
            // address among the arguments of a process of the host.
            Memory::Local => unsafe { crate::copy::unchecked(&mut run) },
            Memory::Remote(_) => run(),
        };
        retval[0] = rv[0] as c_long;
        retval[1] = rv[1] as c_long;
        e
    }

    fn lwpexit(&self) {
        if let Some(l) = self.k.cur() {
            l.proc.exiting.store(true, Ordering::SeqCst);
        }
    }

    fn execnotify(&self, comm: &CStr) {
        if let Some(l) = self.k.cur() {
            l.proc.exec(&comm.to_string_lossy());
        }
    }

    fn getpid(&self) -> libc::pid_t {
        self.k.curproc().pid
    }

    /// Making a process is a table insert under kernel locks, which give
    /// up nothing when no CPU is held: no CPU needed.
    fn lwproc_needs_cpu(&self) -> bool {
        false
    }
}
