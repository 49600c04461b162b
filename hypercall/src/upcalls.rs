//! The upcall table: how the hypercall layer calls back into the kernel.
//!
//! A C kernel hands us `struct rumpuser_hyperup` through `rumpuser_init`;
//! a Rust kernel implements [`Upcalls`] and calls [`init`]. Either way the
//! rest of the layer sees one `&'static dyn Upcalls`.

use std::ffi::{c_char, c_int, c_long, c_void, CStr};
use std::sync::atomic::{AtomicPtr, Ordering};

use netbsd_abi::errno::{Errno, EINVAL};

use crate::sp::ClientHandle;

/// The interface version this layer implements.
pub const RUMPUSER_VERSION: c_int = 17;

/// `struct lwp *`: opaque to the hypercall layer.
pub type LwpPtr = *mut c_void;

/// The kernel's side of the hypercall interface (`struct rumpuser_hyperup`).
///
/// Pointers stay raw where the C interface passes kernel-owned memory the
/// hypercall layer never dereferences (`lwp`, `interlock`, syscall args).
pub trait Upcalls: Send + Sync {
    /// Take a virtual CPU for the calling host thread.
    fn schedule(&self);
    /// Release the calling thread's virtual CPU.
    fn unschedule(&self);
    /// Release the virtual CPU before a blocking host operation. Returns the
    /// number of kernel big locks that were held (to hand back to
    /// [`Upcalls::backend_schedule`]). `interlock` is the hypercall mutex
    /// being waited on, if any, else null.
    fn backend_unschedule(&self, nlocks: c_int, interlock: *mut c_void) -> c_int;
    /// Take a virtual CPU back after a blocking host operation.
    fn backend_schedule(&self, nlocks: c_int, interlock: *mut c_void);
    /// Make `l` the calling thread's current lwp (null: none).
    ///
    /// # Safety
    /// `l` is null or an lwp this kernel handed out (`lwproc_curlwp`) and
    /// has not released: the kernel dereferences it.
    unsafe fn lwproc_switch(&self, l: LwpPtr);
    /// The current lwp is done: release it (and its process with its last lwp).
    fn lwproc_release(&self);
    /// Create a new process for a sysproxy client; `client` is the handle
    /// the kernel passes back to `rumpuser_sp_copyin` and friends (null:
    /// a process of the host). On success the new process's lwp is
    /// current. Returns an errno.
    ///
    /// `comm` names the new process; `None` (NetBSD's NULL) keeps the
    /// parent's name, as a fork does.
    fn lwproc_rfork(&self, client: ClientHandle, flags: c_int, comm: Option<&CStr>) -> c_int;
    /// Make a new lwp in process `pid` current. Returns an errno.
    fn lwproc_newlwp(&self, pid: libc::pid_t) -> c_int;
    /// The calling thread's current lwp (null: none).
    fn lwproc_curlwp(&self) -> LwpPtr;
    /// Run system call `num` with NetBSD's argument block `args` (one
    /// 8-byte slot per argument, zero-padded to at least eight slots, so
    /// that a kernel reading a known call's whole block stays inside it);
    /// results in `retval`. Returns a NetBSD errno.
    ///
    /// # Safety
    /// Every address among the arguments must be valid for the accesses
    /// the call makes, in the memory of the current lwp's process: a
    /// sysproxy client's memory is reached through its connection and
    /// checked there, but a process of the host (a kernel's local
    /// process) is this process's own memory.
    unsafe fn syscall(&self, num: c_int, args: &mut [u64], retval: &mut [c_long; 2]) -> c_int;
    /// The client's process is exiting: its lwps end, no new ones are made.
    fn lwpexit(&self);
    /// The client exec'd a new program named `comm`.
    fn execnotify(&self, comm: &CStr);
    /// The current process's pid.
    fn getpid(&self) -> libc::pid_t;
    /// Whether the process bookkeeping of a sysproxy handshake
    /// (`lwproc_rfork`, `lwproc_curlwp`, `getpid`, `lwproc_switch`) must
    /// run on a virtual CPU. NetBSD's kernel says yes; a kernel that can do
    /// it without one lets clients (`rump.halt -n`) in while every CPU is
    /// stuck.
    fn lwproc_needs_cpu(&self) -> bool {
        true
    }
}

/// `struct rumpuser_hyperup`, exactly as in `rumpuser.h` (v17).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RumpuserHyperup {
    /// Take a virtual CPU.
    pub hyp_schedule: Option<unsafe extern "C" fn()>,
    /// Give the virtual CPU back.
    pub hyp_unschedule: Option<unsafe extern "C" fn()>,
    /// Give the CPU up before blocking: (0, out: locks held, interlock).
    pub hyp_backend_unschedule: Option<unsafe extern "C" fn(c_int, *mut c_int, *mut c_void)>,
    /// Take a CPU back after blocking: (locks to retake, interlock).
    pub hyp_backend_schedule: Option<unsafe extern "C" fn(c_int, *mut c_void)>,
    /// Make an lwp current.
    pub hyp_lwproc_switch: Option<unsafe extern "C" fn(LwpPtr)>,
    /// Release the current lwp.
    pub hyp_lwproc_release: Option<unsafe extern "C" fn()>,
    /// A new process for a client: (client, flags, program name); an errno.
    pub hyp_lwproc_rfork: Option<unsafe extern "C" fn(*mut c_void, c_int, *const c_char) -> c_int>,
    /// A new lwp in a process; an errno.
    pub hyp_lwproc_newlwp: Option<unsafe extern "C" fn(libc::pid_t) -> c_int>,
    /// The current lwp.
    pub hyp_lwproc_curlwp: Option<unsafe extern "C" fn() -> LwpPtr>,
    /// A system call: (number, argument block, retval); an errno.
    pub hyp_syscall: Option<unsafe extern "C" fn(c_int, *mut c_void, *mut c_long) -> c_int>,
    /// The client's process is exiting.
    pub hyp_lwpexit: Option<unsafe extern "C" fn()>,
    /// The client exec'd a program.
    pub hyp_execnotify: Option<unsafe extern "C" fn(*const c_char)>,
    /// The current process's pid.
    pub hyp_getpid: Option<unsafe extern "C" fn() -> libc::pid_t>,
    /// Reserved (`hyp_extra`): null.
    pub hyp_extra: [*mut c_void; 8],
}

/// A C kernel's upcall table behind the Rust trait. A missing entry is a
/// no-op (or `ENOSYS` where a value is expected), never a null call.
struct CUpcalls(RumpuserHyperup);

// SAFETY: the table holds plain function pointers into the kernel, which
// the kernel promises are callable from any host thread.
unsafe impl Send for CUpcalls {}
// SAFETY: as above; the table is never mutated after init.
unsafe impl Sync for CUpcalls {}

const ENOSYS_NB: c_int = netbsd_abi::errno::ENOSYS;

impl Upcalls for CUpcalls {
    fn schedule(&self) {
        if let Some(f) = self.0.hyp_schedule {
            // SAFETY: kernel-provided upcall with the v17 signature.
            unsafe { f() }
        }
    }
    fn unschedule(&self) {
        if let Some(f) = self.0.hyp_unschedule {
            // SAFETY: kernel-provided upcall with the v17 signature.
            unsafe { f() }
        }
    }
    fn backend_unschedule(&self, nlocks: c_int, interlock: *mut c_void) -> c_int {
        let mut held: c_int = 0;
        if let Some(f) = self.0.hyp_backend_unschedule {
            // SAFETY: `held` outlives the call; interlock is passed through.
            unsafe { f(nlocks, &mut held, interlock) }
        }
        held
    }
    fn backend_schedule(&self, nlocks: c_int, interlock: *mut c_void) {
        if let Some(f) = self.0.hyp_backend_schedule {
            // SAFETY: kernel-provided upcall with the v17 signature.
            unsafe { f(nlocks, interlock) }
        }
    }
    unsafe fn lwproc_switch(&self, l: LwpPtr) {
        if let Some(f) = self.0.hyp_lwproc_switch {
            // SAFETY: per this function's contract, `l` came from the
            // kernel (or is null).
            unsafe { f(l) }
        }
    }
    fn lwproc_release(&self) {
        if let Some(f) = self.0.hyp_lwproc_release {
            // SAFETY: kernel-provided upcall with the v17 signature.
            unsafe { f() }
        }
    }
    fn lwproc_rfork(&self, client: ClientHandle, flags: c_int, comm: Option<&CStr>) -> c_int {
        let comm = comm.map_or(std::ptr::null(), CStr::as_ptr);
        match self.0.hyp_lwproc_rfork {
            // SAFETY: `comm` is null or a valid NUL-terminated string for
            // the call; the handle is an opaque token the kernel only
            // hands back.
            Some(f) => unsafe { f(client.as_ptr(), flags, comm) },
            None => ENOSYS_NB,
        }
    }
    fn lwproc_newlwp(&self, pid: libc::pid_t) -> c_int {
        match self.0.hyp_lwproc_newlwp {
            // SAFETY: kernel-provided upcall with the v17 signature.
            Some(f) => unsafe { f(pid) },
            None => ENOSYS_NB,
        }
    }
    fn lwproc_curlwp(&self) -> LwpPtr {
        match self.0.hyp_lwproc_curlwp {
            // SAFETY: kernel-provided upcall with the v17 signature.
            Some(f) => unsafe { f() },
            None => std::ptr::null_mut(),
        }
    }
    unsafe fn syscall(&self, num: c_int, args: &mut [u64], retval: &mut [c_long; 2]) -> c_int {
        // NetBSD's kernel reads the whole argument block of the call: no
        // call has more than eight slots, so pad a shorter block.
        let mut padded = [0u64; 8];
        let block: &mut [u64] = if args.len() >= padded.len() {
            args
        } else {
            padded[..args.len()].copy_from_slice(args);
            &mut padded
        };
        match self.0.hyp_syscall {
            // SAFETY: `retval` points at two longs and `block` at least
            // eight slots, as the kernel expects; the addresses among the
            // arguments are valid per this function's contract.
            Some(f) => unsafe { f(num, block.as_mut_ptr().cast(), retval.as_mut_ptr()) },
            None => ENOSYS_NB,
        }
    }
    fn lwpexit(&self) {
        if let Some(f) = self.0.hyp_lwpexit {
            // SAFETY: kernel-provided upcall with the v17 signature.
            unsafe { f() }
        }
    }
    fn execnotify(&self, comm: &CStr) {
        if let Some(f) = self.0.hyp_execnotify {
            // SAFETY: `comm` is a valid NUL-terminated string for the call.
            unsafe { f(comm.as_ptr()) }
        }
    }
    fn getpid(&self) -> libc::pid_t {
        match self.0.hyp_getpid {
            // SAFETY: kernel-provided upcall with the v17 signature.
            Some(f) => unsafe { f() },
            None => -1,
        }
    }
}

/// The installed table. Set once per kernel boot; a replaced table is leaked
/// on purpose, since other threads may still hold a reference to it.
/// Process-wide because the C interface is: `rumpuser_init` installs one
/// table, and the hypercalls that use it take no context.
static UPCALLS: AtomicPtr<Box<dyn Upcalls>> = AtomicPtr::new(std::ptr::null_mut());

/// Install a Rust kernel's upcalls (the Rust side of `rumpuser_init`).
pub fn init(version: c_int, up: Box<dyn Upcalls>) -> Result<(), Errno> {
    if version != RUMPUSER_VERSION {
        return Err(Errno(EINVAL));
    }
    let p = Box::into_raw(Box::new(up));
    UPCALLS.store(p, Ordering::Release);
    Ok(())
}

/// Install a C kernel's upcall table.
///
/// # Safety
/// Every non-null entry of `table` must be a function of the kernel with
/// the signature and behaviour `rumpuser.h` (v17) gives it, callable from
/// any host thread for the rest of the process's life: the layer calls
/// them with the arguments the interface defines (an `lwp` pointer that
/// `hyp_lwproc_curlwp` returned, a `retval` of two longs, ...) and trusts
/// what they do. `hyp_extra` is not used.
///
/// A safe caller cannot install one:
/// ```compile_fail,E0133
/// use rumpuser::upcalls::{init_c, RumpuserHyperup, RUMPUSER_VERSION};
/// let t = RumpuserHyperup {
///     hyp_schedule: None, hyp_unschedule: None,
///     hyp_backend_unschedule: None, hyp_backend_schedule: None,
///     hyp_lwproc_switch: None, hyp_lwproc_release: None,
///     hyp_lwproc_rfork: None, hyp_lwproc_newlwp: None,
///     hyp_lwproc_curlwp: None, hyp_syscall: None, hyp_lwpexit: None,
///     hyp_execnotify: None, hyp_getpid: None,
///     hyp_extra: [std::ptr::null_mut(); 8],
/// };
/// let _ = init_c(RUMPUSER_VERSION, &t);
/// ```
///
/// The same call in an `unsafe` block compiles (the probe above fails
/// for the missing `unsafe` alone):
/// ```no_run
/// use rumpuser::upcalls::{init_c, RumpuserHyperup, RUMPUSER_VERSION};
/// let t = RumpuserHyperup {
///     hyp_schedule: None, hyp_unschedule: None,
///     hyp_backend_unschedule: None, hyp_backend_schedule: None,
///     hyp_lwproc_switch: None, hyp_lwproc_release: None,
///     hyp_lwproc_rfork: None, hyp_lwproc_newlwp: None,
///     hyp_lwproc_curlwp: None, hyp_syscall: None, hyp_lwpexit: None,
///     hyp_execnotify: None, hyp_getpid: None,
///     hyp_extra: [std::ptr::null_mut(); 8],
/// };
/// // SAFETY: an empty table: every entry is a no-op.
/// let _ = unsafe { init_c(RUMPUSER_VERSION, &t) };
/// ```
pub unsafe fn init_c(version: c_int, table: &RumpuserHyperup) -> Result<(), Errno> {
    init(version, Box::new(CUpcalls(*table)))
}

/// The installed upcalls, if a kernel has called init.
#[inline]
pub fn get() -> Option<&'static dyn Upcalls> {
    let p = UPCALLS.load(Ordering::Acquire);
    if p.is_null() {
        None
    } else {
        // SAFETY: non-null values were leaked by `init` and are never freed.
        Some(unsafe { &**p })
    }
}

/// Give up the virtual CPU around a blocking host operation `f`: the
/// pattern every blocking hypercall follows.
/// The CPU is taken back also when `f` panics.
#[inline]
pub fn blocking<R>(interlock: *mut c_void, f: impl FnOnce() -> R) -> R {
    /// Takes the CPU back when dropped: after `f`, or while a panic
    /// unwinds out of it.
    struct Retake {
        up: &'static dyn Upcalls,
        n: c_int,
        interlock: *mut c_void,
    }
    impl Drop for Retake {
        fn drop(&mut self) {
            self.up.backend_schedule(self.n, self.interlock);
        }
    }
    match get() {
        Some(up) => {
            let n = up.backend_unschedule(0, interlock);
            let _retake = Retake { up, n, interlock };
            f()
        }
        None => f(),
    }
}
