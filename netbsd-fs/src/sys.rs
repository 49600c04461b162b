//! The FUSE adapter's syscall path ([`rumpfuse::Syscalls`]) over NetBSD's
//! kernel booted in this process: NetBSD's own `rump_sys_*` entry points
//! (`rump___sysimpl_*`), found with `dlsym`, called directly — one hop.
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

use netbsd_abi::dirent::Dirent;
use netbsd_abi::errno::{EINVAL, ENAMETOOLONG, ENOSYS};
use netbsd_abi::fcntl::{AT_FDCWD, AT_SYMLINK_NOFOLLOW, O_DIRECTORY, O_RDONLY};
use netbsd_abi::stat::{Stat, Timespec, STAT_SIZE, UTIME_NOW, UTIME_OMIT};
use netbsd_abi::statvfs::{Statvfs, STATVFS_SIZE};
use netbsd_abi::Errno;
use rumpclient::TimeSpec;
use rumpfuse::sys::R;
use rumpfuse::{Backend, Syscalls};

type PathFn = unsafe extern "C" fn(*const c_char) -> c_int;
type PathModeFn = unsafe extern "C" fn(*const c_char, u32) -> c_int;
type TwoPathFn = unsafe extern "C" fn(*const c_char, *const c_char) -> c_int;
type FdFn = unsafe extern "C" fn(c_int) -> c_int;

/// NetBSD's entry points, resolved once.
#[derive(Clone, Copy)]
struct Fns {
    open: unsafe extern "C" fn(*const c_char, c_int, ...) -> c_int,
    close: FdFn,
    pread: unsafe extern "C" fn(c_int, *mut c_void, usize, i64) -> isize,
    pwrite: unsafe extern "C" fn(c_int, *const c_void, usize, i64) -> isize,
    lstat: unsafe extern "C" fn(*const c_char, *mut u8) -> c_int,
    fstat: unsafe extern "C" fn(c_int, *mut u8) -> c_int,
    getdents: unsafe extern "C" fn(c_int, *mut c_char, usize) -> c_int,
    mkdir: PathModeFn,
    rmdir: PathFn,
    unlink: PathFn,
    rename: TwoPathFn,
    link: TwoPathFn,
    symlink: TwoPathFn,
    readlink: unsafe extern "C" fn(*const c_char, *mut c_char, usize) -> isize,
    mknod: unsafe extern "C" fn(*const c_char, u32, u64) -> c_int,
    mkfifo: PathModeFn,
    chmod: PathModeFn,
    fchmod: unsafe extern "C" fn(c_int, u32) -> c_int,
    lchown: unsafe extern "C" fn(*const c_char, u32, u32) -> c_int,
    fchown: unsafe extern "C" fn(c_int, u32, u32) -> c_int,
    utimensat: unsafe extern "C" fn(c_int, *const c_char, *const u8, c_int) -> c_int,
    futimens: unsafe extern "C" fn(c_int, *const u8) -> c_int,
    truncate: unsafe extern "C" fn(*const c_char, i64) -> c_int,
    ftruncate: unsafe extern "C" fn(c_int, i64) -> c_int,
    fsync: FdFn,
    statvfs1: unsafe extern "C" fn(*const c_char, *mut u8, c_int) -> c_int,
    access: unsafe extern "C" fn(*const c_char, c_int) -> c_int,
    mount: unsafe extern "C" fn(*const c_char, *const c_char, c_int, *mut c_void, usize) -> c_int,
    unmount: unsafe extern "C" fn(*const c_char, c_int) -> c_int,
    sync: unsafe extern "C" fn(),
    etfs_register: unsafe extern "C" fn(*const c_char, *const c_char, c_int, u64, u64) -> c_int,
    rfork: unsafe extern "C" fn(c_int) -> c_int,
    newlwp: unsafe extern "C" fn(c_int) -> c_int,
    getpid: unsafe extern "C" fn() -> c_int,
}

/// The function `name` of the loaded NetBSD components, as a `T`.
///
/// # Safety
/// `T` is a function pointer type matching NetBSD's prototype of `name`.
unsafe fn sym<T: Copy>(name: &str) -> Result<T, String> {
    assert_eq!(std::mem::size_of::<T>(), std::mem::size_of::<*mut c_void>());
    let p = rumprun::netbsd::symbol(name)
        .ok_or_else(|| format!("{name}: not found in the loaded NetBSD components"))?;
    // SAFETY: `p` is the non-null address of `name`, whose type is `T`
    // per the caller; both are pointer sized (checked above).
    Ok(unsafe { std::mem::transmute_copy::<*mut c_void, T>(&p) })
}

/// Resolve one entry point as the type of its field.
macro_rules! entry {
    ($name:literal) => {{
        // SAFETY: the field's type is NetBSD's prototype of the entry
        // point (rump/rump_syscalls.h, rump/rumpkern_if_pub.h; `struct
        // stat` and `struct statvfs` passed as byte buffers of their
        // size, `mode_t` u32, `dev_t` u64, `off_t` i64).
        unsafe { sym($name)? }
    }};
}

impl Fns {
    fn resolve() -> Result<Fns, String> {
        Ok(Fns {
            open: entry!("rump___sysimpl_open"),
            close: entry!("rump___sysimpl_close"),
            pread: entry!("rump___sysimpl_pread"),
            pwrite: entry!("rump___sysimpl_pwrite"),
            lstat: entry!("rump___sysimpl_lstat50"),
            fstat: entry!("rump___sysimpl_fstat50"),
            getdents: entry!("rump___sysimpl_getdents30"),
            mkdir: entry!("rump___sysimpl_mkdir"),
            rmdir: entry!("rump___sysimpl_rmdir"),
            unlink: entry!("rump___sysimpl_unlink"),
            rename: entry!("rump___sysimpl_rename"),
            link: entry!("rump___sysimpl_link"),
            symlink: entry!("rump___sysimpl_symlink"),
            readlink: entry!("rump___sysimpl_readlink"),
            mknod: entry!("rump___sysimpl_mknod50"),
            mkfifo: entry!("rump___sysimpl_mkfifo"),
            chmod: entry!("rump___sysimpl_chmod"),
            fchmod: entry!("rump___sysimpl_fchmod"),
            lchown: entry!("rump___sysimpl_lchown"),
            fchown: entry!("rump___sysimpl_fchown"),
            utimensat: entry!("rump___sysimpl_utimensat"),
            futimens: entry!("rump___sysimpl_futimens"),
            truncate: entry!("rump___sysimpl_truncate"),
            ftruncate: entry!("rump___sysimpl_ftruncate"),
            fsync: entry!("rump___sysimpl_fsync"),
            statvfs1: entry!("rump___sysimpl_statvfs1"),
            access: entry!("rump___sysimpl_access"),
            mount: entry!("rump___sysimpl_mount50"),
            unmount: entry!("rump___sysimpl_unmount"),
            sync: entry!("rump___sysimpl_sync"),
            etfs_register: entry!("rump_pub_etfs_register_withsize"),
            rfork: entry!("rump_pub_lwproc_rfork"),
            newlwp: entry!("rump_pub_lwproc_newlwp"),
            getpid: entry!("rump___sysimpl_getpid"),
        })
    }
}

/// NetBSD's `RUMP_RFCFDG`: the new process starts with a clean
/// descriptor table.
const RUMP_RFCFDG: c_int = 0x02;
/// `statvfs1`'s `ST_WAIT`.
const ST_WAIT: c_int = 1;

thread_local! {
    /// The NetBSD process this host thread has an lwp in (0: none yet).
    static BOUND: Cell<i32> = const { Cell::new(0) };
}

/// The thread's errno after a failed call: NetBSD's kernel sets it
/// through our `rumpuser_seterrno`, as a NetBSD value.
fn errno() -> Errno {
    Errno(nix::errno::Errno::last_raw())
}

fn cpath(p: &[u8]) -> R<CString> {
    if p.len() >= 1024 {
        return Err(Errno(ENAMETOOLONG));
    }
    CString::new(p).map_err(|_| Errno(EINVAL))
}

fn ok(rv: c_int) -> R<()> {
    if rv == -1 {
        Err(errno())
    } else {
        Ok(())
    }
}

fn ts_bytes(t: [TimeSpec; 2]) -> [u8; 32] {
    let mut b = [0u8; 32];
    for (i, t) in t.iter().enumerate() {
        let ts = match t {
            TimeSpec::Omit => Timespec {
                sec: 0,
                nsec: UTIME_OMIT,
            },
            TimeSpec::Now => Timespec {
                sec: 0,
                nsec: UTIME_NOW,
            },
            TimeSpec::At(ts) => *ts,
        };
        b[i * 16..i * 16 + 16].copy_from_slice(&ts.encode());
    }
    b
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
    pub fn new() -> Result<NetbsdSys, String> {
        let f = Fns::resolve()?;
        // SAFETY: NetBSD's entry points, after rump_init; rfork binds the
        // calling thread to a new process.
        let e = unsafe { (f.rfork)(RUMP_RFCFDG) };
        if e != 0 {
            return Err(format!("rump_lwproc_rfork: {}", Errno(e).description()));
        }
        // SAFETY: as above.
        let pid = unsafe { (f.getpid)() };
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
        let _k = self.enter();
        let t = cpath(fstype.as_bytes())?;
        let d = cpath(dir)?;
        // SAFETY: valid strings; `data` per the caller.
        ok(unsafe { (self.f.mount)(t.as_ptr(), d.as_ptr(), flags, data.cast(), len) })
    }

    /// NetBSD's `unmount(2)`.
    pub fn unmount(&self, dir: &[u8], flags: i32) -> R<()> {
        let _k = self.enter();
        let d = cpath(dir)?;
        // SAFETY: a valid string for the call.
        ok(unsafe { (self.f.unmount)(d.as_ptr(), flags) })
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

    /// NetBSD's `sync(2)`: every file system's dirty data written out.
    pub fn sync(&self) {
        let _k = self.enter();
        // SAFETY: no arguments.
        unsafe { (self.f.sync)() };
    }

    fn path_call(&self, p: &[u8], f: PathFn) -> R<()> {
        let _k = self.enter();
        let c = cpath(p)?;
        // SAFETY: `f` takes one NUL-terminated path, valid for the call.
        ok(unsafe { f(c.as_ptr()) })
    }

    fn path_mode(&self, p: &[u8], mode: u32, f: PathModeFn) -> R<()> {
        let _k = self.enter();
        let c = cpath(p)?;
        // SAFETY: a valid path and a mode.
        ok(unsafe { f(c.as_ptr(), mode) })
    }

    fn two_paths(&self, a: &[u8], b: &[u8], f: TwoPathFn) -> R<()> {
        let _k = self.enter();
        let (a, b) = (cpath(a)?, cpath(b)?);
        // SAFETY: two valid paths.
        ok(unsafe { f(a.as_ptr(), b.as_ptr()) })
    }
}

impl Syscalls for NetbsdSys {
    fn lstat(&self, path: &[u8]) -> R<Stat> {
        let _k = self.enter();
        let c = cpath(path)?;
        let mut b = [0u8; STAT_SIZE];
        // SAFETY: a valid path and a buffer the size of NetBSD's stat.
        ok(unsafe { (self.f.lstat)(c.as_ptr(), b.as_mut_ptr()) })?;
        Stat::decode(&b).ok_or(Errno(EINVAL))
    }
    fn fstat(&self, fd: i32) -> R<Stat> {
        let _k = self.enter();
        let mut b = [0u8; STAT_SIZE];
        // SAFETY: a buffer the size of NetBSD's stat.
        ok(unsafe { (self.f.fstat)(fd, b.as_mut_ptr()) })?;
        Stat::decode(&b).ok_or(Errno(EINVAL))
    }
    fn open(&self, path: &[u8], flags: i32, mode: u32) -> R<i32> {
        let _k = self.enter();
        let c = cpath(path)?;
        // SAFETY: a valid path; the mode as open's variadic argument.
        let fd = unsafe { (self.f.open)(c.as_ptr(), flags, mode) };
        if fd < 0 {
            Err(errno())
        } else {
            Ok(fd)
        }
    }
    fn close(&self, fd: i32) -> R<()> {
        let _k = self.enter();
        // SAFETY: a plain descriptor number.
        ok(unsafe { (self.f.close)(fd) })
    }
    fn pread(&self, fd: i32, buf: &mut [u8], off: i64) -> R<usize> {
        let _k = self.enter();
        // SAFETY: `buf` is writable for its length.
        let n = unsafe { (self.f.pread)(fd, buf.as_mut_ptr().cast(), buf.len(), off) };
        usize::try_from(n).map_err(|_| errno())
    }
    fn pwrite(&self, fd: i32, buf: &[u8], off: i64) -> R<usize> {
        let _k = self.enter();
        // SAFETY: `buf` is readable for its length.
        let n = unsafe { (self.f.pwrite)(fd, buf.as_ptr().cast(), buf.len(), off) };
        usize::try_from(n).map_err(|_| errno())
    }
    fn list_dir(&self, path: &[u8]) -> R<Vec<Dirent>> {
        let fd = self.open(path, O_RDONLY | O_DIRECTORY, 0)?;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 << 10];
        let r = loop {
            let k = self.enter();
            // SAFETY: `buf` is writable for its length.
            let n = unsafe { (self.f.getdents)(fd, buf.as_mut_ptr().cast(), buf.len()) };
            let n = usize::try_from(n).map_err(|_| errno());
            drop(k);
            match n {
                Err(e) => break Err(e),
                Ok(0) => break Ok(()),
                Ok(n) => out.extend(Dirent::decode_all(&buf[..n.min(buf.len())])),
            }
            // A directory that never ends (a corrupt image) is cut off.
            if out.len() > 10_000_000 {
                break Ok(());
            }
        };
        let _ = self.close(fd);
        r.map(|_| out)
    }
    fn mkdir(&self, path: &[u8], mode: u32) -> R<()> {
        self.path_mode(path, mode, self.f.mkdir)
    }
    fn rmdir(&self, path: &[u8]) -> R<()> {
        self.path_call(path, self.f.rmdir)
    }
    fn unlink(&self, path: &[u8]) -> R<()> {
        self.path_call(path, self.f.unlink)
    }
    fn rename(&self, from: &[u8], to: &[u8]) -> R<()> {
        self.two_paths(from, to, self.f.rename)
    }
    fn link(&self, from: &[u8], to: &[u8]) -> R<()> {
        self.two_paths(from, to, self.f.link)
    }
    fn symlink(&self, target: &[u8], path: &[u8]) -> R<()> {
        self.two_paths(target, path, self.f.symlink)
    }
    fn readlink(&self, path: &[u8]) -> R<Vec<u8>> {
        let _k = self.enter();
        let c = cpath(path)?;
        let mut b = vec![0u8; 1024];
        // SAFETY: a valid path and a writable buffer of its length.
        let n = unsafe { (self.f.readlink)(c.as_ptr(), b.as_mut_ptr().cast(), b.len()) };
        let n = usize::try_from(n).map_err(|_| errno())?;
        b.truncate(n.min(1024));
        Ok(b)
    }
    fn mknod(&self, path: &[u8], mode: u32, dev: u64) -> R<()> {
        let _k = self.enter();
        let c = cpath(path)?;
        // SAFETY: a valid path.
        ok(unsafe { (self.f.mknod)(c.as_ptr(), mode, dev) })
    }
    fn mkfifo(&self, path: &[u8], mode: u32) -> R<()> {
        self.path_mode(path, mode & 0o7777, self.f.mkfifo)
    }
    fn chmod(&self, path: &[u8], mode: u32) -> R<()> {
        self.path_mode(path, mode, self.f.chmod)
    }
    fn fchmod(&self, fd: i32, mode: u32) -> R<()> {
        let _k = self.enter();
        // SAFETY: plain numbers.
        ok(unsafe { (self.f.fchmod)(fd, mode) })
    }
    fn lchown(&self, path: &[u8], uid: u32, gid: u32) -> R<()> {
        let _k = self.enter();
        let c = cpath(path)?;
        // SAFETY: a valid path.
        ok(unsafe { (self.f.lchown)(c.as_ptr(), uid, gid) })
    }
    fn fchown(&self, fd: i32, uid: u32, gid: u32) -> R<()> {
        let _k = self.enter();
        // SAFETY: plain numbers.
        ok(unsafe { (self.f.fchown)(fd, uid, gid) })
    }
    fn utimens(&self, path: &[u8], t: [TimeSpec; 2]) -> R<()> {
        let _k = self.enter();
        let c = cpath(path)?;
        let ts = ts_bytes(t);
        // SAFETY: a valid path and two NetBSD timespecs.
        ok(unsafe { (self.f.utimensat)(AT_FDCWD, c.as_ptr(), ts.as_ptr(), AT_SYMLINK_NOFOLLOW) })
    }
    fn futimens(&self, fd: i32, t: [TimeSpec; 2]) -> R<()> {
        let _k = self.enter();
        let ts = ts_bytes(t);
        // SAFETY: two NetBSD timespecs.
        ok(unsafe { (self.f.futimens)(fd, ts.as_ptr()) })
    }
    fn truncate(&self, path: &[u8], len: i64) -> R<()> {
        let _k = self.enter();
        let c = cpath(path)?;
        // SAFETY: a valid path.
        ok(unsafe { (self.f.truncate)(c.as_ptr(), len) })
    }
    fn ftruncate(&self, fd: i32, len: i64) -> R<()> {
        let _k = self.enter();
        // SAFETY: plain numbers.
        ok(unsafe { (self.f.ftruncate)(fd, len) })
    }
    fn fsync(&self, fd: i32) -> R<()> {
        let _k = self.enter();
        // SAFETY: a plain descriptor number.
        ok(unsafe { (self.f.fsync)(fd) })
    }
    fn statvfs(&self, path: &[u8]) -> R<Statvfs> {
        let _k = self.enter();
        let c = cpath(path)?;
        let mut b = vec![0u8; STATVFS_SIZE];
        // SAFETY: a valid path and a buffer the size of NetBSD's statvfs.
        ok(unsafe { (self.f.statvfs1)(c.as_ptr(), b.as_mut_ptr(), ST_WAIT) })?;
        Statvfs::decode(&b).ok_or(Errno(ENOSYS))
    }
    fn access(&self, path: &[u8], amode: i32) -> R<()> {
        let _k = self.enter();
        let c = cpath(path)?;
        // SAFETY: a valid path.
        ok(unsafe { (self.f.access)(c.as_ptr(), amode) })
    }
}

/// Every FUSE caller is served by the one process (root's credentials;
/// the host checks permissions).
pub struct NetbsdBackend(pub Arc<NetbsdSys>);

impl Backend for NetbsdBackend {
    fn caller(&self, _uid: u32, _gid: u32) -> R<Arc<dyn Syscalls>> {
        Ok(self.0.clone())
    }
}
