//! The FUSE adapter's processes ([`rumpfuse::Backend`]) in NetBSD's
//! kernel booted in this process: the typed calls of the one syscall
//! façade ([`Syscalls`]) over NetBSD's own syscall entry point
//! (`rump_syscall`, found with `dlsym`), called directly — one hop.
//!
//! All calls run in one NetBSD process, made at [`NetbsdSys::new`] with
//! `rump_pub_lwproc_rfork` (root's credentials, as every sysproxy client
//! of NetBSD's has: the host checks permissions, `default_permissions`).
//! Each host thread that calls in gets its own NetBSD thread (lwp) in that
//! process on its first call (`rump_pub_lwproc_newlwp`), so descriptors
//! are shared by all threads and no call pays for a temporary lwp.

use std::cell::Cell;
use std::ffi::{c_char, c_int, c_void, CString};
use std::sync::Arc;

use netbsd_abi::errno::{EFAULT, EINVAL, ENOSYS};
use netbsd_abi::syscall::{nargs, SYS_GETPID, SYS_MOUNT};
use netbsd_abi::{Errno, Region};
use rumpfuse::sys::R;
use rumpfuse::{Backend, Syscalls};

/// NetBSD's entry points, resolved once.
#[derive(Clone, Copy)]
struct Fns {
    /// `int rump_syscall(int num, void *data, size_t dlen, register_t *retval)`:
    /// the argument block is the slots, 8 bytes each; returns the errno.
    syscall: unsafe extern "C" fn(c_int, *mut c_void, usize, *mut i64) -> c_int,
    etfs_register: unsafe extern "C" fn(*const c_char, *const c_char, c_int, u64, u64) -> c_int,
    rfork: unsafe extern "C" fn(c_int) -> c_int,
    newlwp: unsafe extern "C" fn(c_int) -> c_int,
}

/// Why NetBSD's kernel cannot be called in process.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SysInitError {
    /// An entry point the loaded components do not have.
    #[error("{0}: not found in the loaded NetBSD components")]
    Missing(&'static str),
    /// A call that sets up the calling process failed.
    #[error("{0}: {}", .1.description())]
    Call(&'static str, Errno),
}

/// The function `name` of the loaded NetBSD components, as a `T`.
///
/// # Safety
/// `T` is a function pointer type matching NetBSD's prototype of `name`.
unsafe fn sym<T: Copy>(name: &'static str) -> Result<T, SysInitError> {
    assert_eq!(std::mem::size_of::<T>(), std::mem::size_of::<*mut c_void>());
    let p = rumprun::netbsd::symbol(name).ok_or(SysInitError::Missing(name))?;
    // SAFETY: `p` is the non-null address of `name`, whose type is `T`
    // per the caller; both are pointer sized (checked above).
    Ok(unsafe { std::mem::transmute_copy::<*mut c_void, T>(&p) })
}

/// Resolve one entry point as the type of its field.
macro_rules! entry {
    ($name:literal) => {{
        // SAFETY: the field's type is NetBSD's prototype of the entry
        // point (rump/rump.h, rump/rumpkern_if_pub.h; `register_t` i64).
        unsafe { sym($name)? }
    }};
}

impl Fns {
    fn resolve() -> Result<Fns, SysInitError> {
        Ok(Fns {
            syscall: entry!("rump_syscall"),
            etfs_register: entry!("rump_pub_etfs_register_withsize"),
            rfork: entry!("rump_pub_lwproc_rfork"),
            newlwp: entry!("rump_pub_lwproc_newlwp"),
        })
    }

    /// Run system call `num` with argument slots `args` on the calling
    /// thread's lwp.
    ///
    /// # Safety
    /// `num` is a NetBSD system call whose slots `args` holds, and every
    /// address among them is valid for the accesses the call makes.
    unsafe fn call(&self, num: i32, args: &[u64]) -> Result<[i64; 2], Errno> {
        let mut block = [0u64; 8];
        let n = args.len().min(block.len());
        block[..n].copy_from_slice(&args[..n]);
        let mut rv = [0i64; 2];
        // SAFETY: the block holds the call's slots (per the caller); its
        // addresses are valid (per the caller); `rv` is two register_t.
        let e = unsafe { (self.syscall)(num, block.as_mut_ptr().cast(), n * 8, rv.as_mut_ptr()) };
        if e == 0 {
            Ok(rv)
        } else {
            Err(Errno(e))
        }
    }
}

/// NetBSD's `RUMP_RFCFDG`: the new process starts with a clean
/// descriptor table.
const RUMP_RFCFDG: c_int = 0x02;

thread_local! {
    /// The NetBSD process this host thread has an lwp in (0: none yet).
    static BOUND: Cell<i32> = const { Cell::new(0) };
}

fn cpath(p: &[u8]) -> R<CString> {
    CString::new(p).map_err(|_| Errno(EINVAL))
}

/// NetBSD's in-process system calls, in a process of their own.
pub struct NetbsdSys {
    f: Fns,
    pid: i32,
    /// One call in NetBSD's kernel at a time. NetBSD's kernel (7.99, as
    /// buildrump.sh builds it) crashed in `uvm_page_unbusy` under
    /// `genfs_getpages` read-ahead when FUSE threads called in at once:
    /// 5 runs in 8 reading one file with 4 threads; with reads alone
    /// serialized, still about 1 in 5 runs of cp -a + read back of a
    /// 100 MiB tree. A sysproxy server, whose `rumpctl fuse` calls one at
    /// a time, did not crash.
    one: std::sync::Mutex<()>,
}

impl NetbsdSys {
    /// Resolve the entry points and make the process the calls run in;
    /// the calling thread joins it. After NetBSD's `rump_init`.
    pub fn new() -> Result<NetbsdSys, SysInitError> {
        let f = Fns::resolve()?;
        // SAFETY: NetBSD's entry points, after rump_init; rfork binds the
        // calling thread to a new process.
        let e = unsafe { (f.rfork)(RUMP_RFCFDG) };
        if e != 0 {
            return Err(SysInitError::Call("rump_lwproc_rfork", Errno(e)));
        }
        // SAFETY: getpid takes no argument and reaches no memory.
        let pid = unsafe { f.call(SYS_GETPID, &[]) }.map_err(|e| SysInitError::Call("getpid", e))?
            [0] as i32;
        BOUND.with(|b| b.set(pid));
        Ok(NetbsdSys {
            f,
            pid,
            one: std::sync::Mutex::new(()),
        })
    }

    /// Enter NetBSD's kernel: take the one-caller lock (see [`NetbsdSys`])
    /// and give this host thread an lwp in our process, once.
    fn enter(&self) -> std::sync::MutexGuard<'_, ()> {
        let g = self.one.lock().unwrap_or_else(|p| p.into_inner());
        BOUND.with(|b| {
            if b.get() != self.pid {
                // SAFETY: NetBSD's `int rump_pub_lwproc_newlwp(pid_t)`:
                // binds the calling host thread to a new lwp of `pid`.
                let e = unsafe { (self.f.newlwp)(self.pid) };
                // On failure calls still work, each on a temporary lwp of
                // NetBSD's choosing; do not retry on every call.
                let _ = e;
                b.set(self.pid);
            }
        });
        g
    }

    /// NetBSD's `mount(2)`: `fstype` at `dir` with `flags` and the
    /// argument structure `data` of `len` bytes.
    ///
    /// # Safety
    /// `data` points at `len` bytes, readable and writable, laid out as
    /// `fstype`'s argument structure, whose pointers point at live,
    /// NUL-terminated strings.
    pub unsafe fn mount(
        &self,
        fstype: &str,
        dir: &[u8],
        flags: i32,
        data: *mut u8,
        len: usize,
    ) -> R<()> {
        let t = cpath(fstype.as_bytes())?;
        let d = cpath(dir)?;
        let args = [
            t.as_ptr() as u64,
            d.as_ptr() as u64,
            flags as u32 as u64,
            data as u64,
            len as u64,
        ];
        let _k = self.enter();
        // SAFETY: valid strings; `data` per the caller.
        unsafe { self.f.call(SYS_MOUNT, &args) }.map(|_| ())
    }

    /// Register the host file `hostpath` (bytes `offset..offset+size`) as
    /// the block device `key`, opened by NetBSD's kernel itself (read-only
    /// when the host does not allow writing): for images this process may
    /// only read. Errors are NetBSD errno values.
    pub fn register_blk(&self, key: &str, hostpath: &str, offset: u64, size: u64) -> R<()> {
        let _k = self.enter();
        let k = cpath(key.as_bytes())?;
        let h = cpath(hostpath.as_bytes())?;
        // SAFETY: NUL-terminated strings valid for the call (the kernel
        // copies them); RUMP_ETFS_BLK is 1.
        let e = unsafe { (self.f.etfs_register)(k.as_ptr(), h.as_ptr(), 1, offset, size) };
        if e == 0 {
            Ok(())
        } else {
            Err(Errno(e))
        }
    }
}

/// Every typed call, straight into NetBSD's kernel.
impl Syscalls for NetbsdSys {
    type Error = Errno;

    unsafe fn call(
        &self,
        num: i32,
        args: &[u64],
        _mem: &mut [Region<'_>],
    ) -> Result<[i64; 2], Errno> {
        // NetBSD indexes its table by `num` and reads the slots its
        // table says, unchecked: only known calls, with all their slots.
        match nargs(num) {
            None => return Err(Errno(ENOSYS)),
            Some(n) if args.len() < n => return Err(Errno(EFAULT)),
            Some(_) => {}
        }
        let _k = self.enter();
        // SAFETY: a known call with its slots; its addresses lie in
        // `_mem` per the caller's guarantee, which NetBSD's kernel (whose
        // copyin here is a plain copy) relies on.
        unsafe { self.f.call(num, args) }
    }
}

/// Every FUSE caller is served by the one process (root's credentials;
/// the host checks permissions).
pub struct NetbsdBackend(pub Arc<NetbsdSys>);

impl Backend for NetbsdBackend {
    type Proc = NetbsdSys;
    fn caller(&self, _uid: u32, _gid: u32) -> R<Arc<NetbsdSys>> {
        Ok(self.0.clone())
    }
}
