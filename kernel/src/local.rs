//! Local processes: kernel processes for callers in this host process,
//! whose "user memory" is this process's own. Tests and embedders use the
//! typed calls of [`Syscalls`] (in scope with `use rumpkern::Syscalls`),
//! which lend the kernel Rust slices; [`LocalProc::syscall`] takes raw
//! argument slots like a real system call.

use std::sync::Arc;

use netbsd_abi::errno::*;
use netbsd_abi::syscall::*;
use netbsd_abi::{Errno, Region, Syscalls};

use crate::copy::Lend;
use crate::proc::{curlwp_raw, set_curlwp_raw, Lwp, Proc};
use crate::Kernel;

/// A process of `kernel` for in-process callers. Each call runs on a fresh
/// lwp of the process, on a virtual CPU; the process (descriptors, current
/// directory) lives until the `LocalProc` is dropped.
pub struct LocalProc {
    kernel: Arc<Kernel>,
    proc: Arc<Proc>,
    /// The process's main lwp, which keeps it alive.
    main: *mut Lwp,
}

// SAFETY: `main` is owned by this handle and only freed in `drop`; every
// call makes its own lwp, so the handle may be used from any thread, also
// concurrently.
unsafe impl Send for LocalProc {}
// SAFETY: as above.
unsafe impl Sync for LocalProc {}

impl LocalProc {
    pub(crate) fn new(kernel: Arc<Kernel>, proc: Arc<Proc>) -> LocalProc {
        let main = kernel.make_pinned_lwp(proc.clone());
        LocalProc { kernel, proc, main }
    }

    /// The kernel the process lives in.
    pub fn kernel(&self) -> &Arc<Kernel> {
        &self.kernel
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.proc.pid
    }

    /// Run system call `num` with argument slots `args` (NetBSD numbers and
    /// layouts, one 8-byte slot per argument, `PAD` slots included).
    /// Fewer slots than the call takes: `EFAULT`. Unknown numbers: `ENOSYS`.
    ///
    /// # Safety
    /// Every pointer argument must be valid for the access the system call
    /// makes through it (reads of the lengths given, writes of the output
    /// sizes NetBSD documents), for the duration of the call.
    pub unsafe fn syscall(&self, num: i32, args: &[u64]) -> Result<[i64; 2], Errno> {
        if !self.kernel.is_admitting() {
            return Err(Errno(ESHUTDOWN));
        }
        let Some(n) = nargs(num) else {
            return Err(Errno(ENOSYS));
        };
        if args.len() < n {
            return Err(Errno(EFAULT));
        }
        // SAFETY: the caller vouches for every address among `args`.
        unsafe { crate::copy::unchecked(|| self.run(num, &args[..n])) }
    }

    /// Run a call whose address arguments the typed wrappers lent from
    /// borrowed slices: the kernel reaches those and nothing else.
    pub(crate) fn call_lent(
        &self,
        lend: &Lend<'_>,
        num: i32,
        args: &[u64],
    ) -> Result<[i64; 2], Errno> {
        lend.during(|| self.run(num, args))
    }

    /// Run one call on a fresh lwp that this function owns from start to
    /// end: it is pinned, so nothing the call does (a callback that
    /// releases the current lwp, switches to a new one or unschedules)
    /// frees it; only the end of this function does.
    fn run(&self, num: i32, args: &[u64]) -> Result<[i64; 2], Errno> {
        let k = &self.kernel;
        let l = k.make_pinned_lwp(self.proc.clone());
        let old = curlwp_raw();
        // SAFETY: `l` was just made and, pinned, lives until freed below.
        unsafe { set_curlwp_raw(l) };
        let mut rv = [0i64; 2];
        let e = k.run_syscall(&self.proc, num, args, &mut rv);
        // Back to the caller's lwp. The current one is `l`, or one a
        // callback switched to, which goes the usual way (freed if it was
        // released); `l`, pinned, stays.
        // SAFETY: `old` was current when this call began; the lwps that
        // can be freed meanwhile are those made during the call (pinned
        // ones outside it are freed only by their owner, which is still
        // running below us, and others only when switched away from,
        // which needs the unsafe `lwproc_switch`).
        unsafe { k.switch_to(old) };
        // SAFETY: `l` is pinned, so it is alive, and no longer current.
        unsafe { (*l).rele() };
        k.free_lwp(l);
        if e == 0 {
            Ok(rv)
        } else {
            Err(Errno(e))
        }
    }

    /// The names in directory `path` ("." and ".." included).
    pub fn list_dir(&self, path: impl AsRef<[u8]>) -> Result<Vec<String>, Errno> {
        Ok(self
            .read_dir(path)?
            .into_iter()
            .map(|d| String::from_utf8_lossy(&d.name).into_owned())
            .collect())
    }
}

/// The typed calls ([`Syscalls`]'s provided methods) over this process:
/// the kernel reaches the regions each call lends and nothing else.
impl Syscalls for LocalProc {
    type Error = Errno;

    unsafe fn call(
        &self,
        num: i32,
        args: &[u64],
        mem: &mut [Region<'_>],
    ) -> Result<[i64; 2], Errno> {
        if nargs(num).is_some_and(|n| args.len() < n) {
            return Err(Errno(EFAULT));
        }
        let l = Lend::new();
        for r in mem.iter_mut() {
            match r {
                Region::In(b) => l.buf(b),
                Region::Out(b) | Region::InOut(b) => l.buf_mut(b),
            };
        }
        self.call_lent(&l, num, args)
    }
}

impl Drop for LocalProc {
    fn drop(&mut self) {
        // SAFETY: `main` is ours, never current on any thread.
        unsafe { (*self.main).rele() };
        self.kernel.free_lwp(self.main);
    }
}
