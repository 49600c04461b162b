//! "A syscall path": the calls the FUSE adapter makes, implemented over the
//! in-process kernel ([`rumpkern::LocalProc`]) and over sysproxy
//! ([`rumpclient::Client`]). Errors are NetBSD errno values.

use std::collections::HashMap;
use std::sync::Arc;

use netbsd_abi::dirent::Dirent;
use netbsd_abi::fcntl::{O_DIRECTORY, O_RDONLY};
use netbsd_abi::stat::{Stat, Timespec};
use netbsd_abi::statvfs::Statvfs;
use netbsd_abi::Errno;
use parking_lot::RwLock;
use rumpclient::{Client, TimeSpec};
use rumpkern::vfs::Cred;
use rumpkern::{Kernel, LocalProc};

/// A system call's result: NetBSD errno values, as the kernel returns them.
pub type R<T> = Result<T, Errno>;

/// One process's system calls, by path or descriptor (paths are bytes,
/// absolute, without NUL).
pub trait Syscalls: Send + Sync {
    /// `lstat(2)`: the attributes of `path` itself.
    fn lstat(&self, path: &[u8]) -> R<Stat>;
    /// `fstat(2)`.
    fn fstat(&self, fd: i32) -> R<Stat>;
    /// `open(2)`; the new descriptor.
    fn open(&self, path: &[u8], flags: i32, mode: u32) -> R<i32>;
    /// `close(2)`.
    fn close(&self, fd: i32) -> R<()>;
    /// `pread(2)`: read at `off`; a short count only at end of file.
    fn pread(&self, fd: i32, buf: &mut [u8], off: i64) -> R<usize>;
    /// `pwrite(2)`: write at `off`.
    fn pwrite(&self, fd: i32, buf: &[u8], off: i64) -> R<usize>;
    /// Every entry of the directory at `path`.
    fn list_dir(&self, path: &[u8]) -> R<Vec<Dirent>>;
    /// `mkdir(2)`.
    fn mkdir(&self, path: &[u8], mode: u32) -> R<()>;
    /// `rmdir(2)`.
    fn rmdir(&self, path: &[u8]) -> R<()>;
    /// `unlink(2)`.
    fn unlink(&self, path: &[u8]) -> R<()>;
    /// `rename(2)`.
    fn rename(&self, from: &[u8], to: &[u8]) -> R<()>;
    /// `link(2)`: a new name `to` for `from`.
    fn link(&self, from: &[u8], to: &[u8]) -> R<()>;
    /// `symlink(2)`: a link at `path` pointing to `target`.
    fn symlink(&self, target: &[u8], path: &[u8]) -> R<()>;
    /// `readlink(2)`: the link's target.
    fn readlink(&self, path: &[u8]) -> R<Vec<u8>>;
    /// `mknod(2)`: a node of the type and permissions in `mode`, device number `dev`.
    fn mknod(&self, path: &[u8], mode: u32, dev: u64) -> R<()>;
    /// Make a FIFO: NetBSD's `mkfifo(2)` (its `mknod(2)` refuses FIFOs).
    /// By default through `mknod`, for a kernel that takes them there.
    fn mkfifo(&self, path: &[u8], mode: u32) -> R<()> {
        self.mknod(path, netbsd_abi::stat::S_IFIFO | (mode & 0o7777), 0)
    }
    /// `chmod(2)`.
    fn chmod(&self, path: &[u8], mode: u32) -> R<()>;
    /// `fchmod(2)`.
    fn fchmod(&self, fd: i32, mode: u32) -> R<()>;
    /// chown without following a final symbolic link.
    fn lchown(&self, path: &[u8], uid: u32, gid: u32) -> R<()>;
    /// `fchown(2)` (`u32::MAX` leaves that id alone).
    fn fchown(&self, fd: i32, uid: u32, gid: u32) -> R<()>;
    /// Set times without following a final symbolic link.
    fn utimens(&self, path: &[u8], t: [TimeSpec; 2]) -> R<()>;
    /// `futimens(2)`.
    fn futimens(&self, fd: i32, t: [TimeSpec; 2]) -> R<()>;
    /// `truncate(2)`.
    fn truncate(&self, path: &[u8], len: i64) -> R<()>;
    /// `ftruncate(2)`.
    fn ftruncate(&self, fd: i32, len: i64) -> R<()>;
    /// `fsync(2)`.
    fn fsync(&self, fd: i32) -> R<()>;
    /// `statvfs1(2)` of the file system holding `path`.
    fn statvfs(&self, path: &[u8]) -> R<Statvfs>;
    /// `access(2)`.
    fn access(&self, path: &[u8], amode: i32) -> R<()>;
}

/// Where the adapter gets the process for a request's caller.
pub trait Backend: Send + Sync + 'static {
    /// The process that acts for caller `uid`/`gid`, so that the kernel
    /// checks permissions as that user would be checked.
    fn caller(&self, uid: u32, gid: u32) -> R<Arc<dyn Syscalls>>;
    /// The same, with supplementary groups (a path that knows no groups
    /// has its plain caller).
    fn caller_in_groups(&self, uid: u32, gid: u32, _groups: &[u32]) -> R<Arc<dyn Syscalls>> {
        self.caller(uid, gid)
    }
}

// ----- the in-process kernel -----

/// A kernel process of this host process.
pub struct Local(pub LocalProc);

fn targ(t: TimeSpec) -> rumpkern::local::TimeArg {
    match t {
        TimeSpec::Omit => None,
        TimeSpec::Now => Some(None),
        TimeSpec::At(ts) => Some(Some(ts)),
    }
}

impl Syscalls for Local {
    fn lstat(&self, path: &[u8]) -> R<Stat> {
        self.0.lstat(path)
    }
    fn fstat(&self, fd: i32) -> R<Stat> {
        self.0.fstat(fd)
    }
    fn open(&self, path: &[u8], flags: i32, mode: u32) -> R<i32> {
        self.0.open(path, flags, mode)
    }
    fn close(&self, fd: i32) -> R<()> {
        self.0.close(fd)
    }
    fn pread(&self, fd: i32, buf: &mut [u8], off: i64) -> R<usize> {
        self.0.pread(fd, buf, off)
    }
    fn pwrite(&self, fd: i32, buf: &[u8], off: i64) -> R<usize> {
        self.0.pwrite(fd, buf, off)
    }
    fn list_dir(&self, path: &[u8]) -> R<Vec<Dirent>> {
        let fd = self.0.open(path, O_RDONLY | O_DIRECTORY, 0)?;
        let r = self.0.getdents(fd);
        let _ = self.0.close(fd);
        r
    }
    fn mkdir(&self, path: &[u8], mode: u32) -> R<()> {
        self.0.mkdir(path, mode)
    }
    fn rmdir(&self, path: &[u8]) -> R<()> {
        self.0.rmdir(path)
    }
    fn unlink(&self, path: &[u8]) -> R<()> {
        self.0.unlink(path)
    }
    fn rename(&self, from: &[u8], to: &[u8]) -> R<()> {
        self.0.rename(from, to)
    }
    fn link(&self, from: &[u8], to: &[u8]) -> R<()> {
        self.0.link(from, to)
    }
    fn symlink(&self, target: &[u8], path: &[u8]) -> R<()> {
        self.0.symlink(target, path)
    }
    fn readlink(&self, path: &[u8]) -> R<Vec<u8>> {
        self.0.readlink(path)
    }
    fn mknod(&self, path: &[u8], mode: u32, dev: u64) -> R<()> {
        self.0.mknod(path, mode, dev)
    }
    fn chmod(&self, path: &[u8], mode: u32) -> R<()> {
        self.0.chmod(path, mode)
    }
    fn fchmod(&self, fd: i32, mode: u32) -> R<()> {
        self.0.fchmod(fd, mode)
    }
    fn lchown(&self, path: &[u8], uid: u32, gid: u32) -> R<()> {
        self.0.chown(path, uid, gid, false)
    }
    fn fchown(&self, fd: i32, uid: u32, gid: u32) -> R<()> {
        self.0.fchown(fd, uid, gid)
    }
    fn utimens(&self, path: &[u8], t: [TimeSpec; 2]) -> R<()> {
        self.0.utimens(path, [targ(t[0]), targ(t[1])], false)
    }
    fn futimens(&self, fd: i32, t: [TimeSpec; 2]) -> R<()> {
        self.0.futimens(fd, [targ(t[0]), targ(t[1])])
    }
    fn truncate(&self, path: &[u8], len: i64) -> R<()> {
        self.0.truncate(path, len)
    }
    fn ftruncate(&self, fd: i32, len: i64) -> R<()> {
        self.0.ftruncate(fd, len)
    }
    fn fsync(&self, fd: i32) -> R<()> {
        self.0.fsync(fd)
    }
    fn statvfs(&self, path: &[u8]) -> R<Statvfs> {
        self.0.statvfs(path)
    }
    fn access(&self, path: &[u8], amode: i32) -> R<()> {
        self.0.access(path, amode)
    }
}

/// The in-process kernel: one kernel process per (uid, gid) that makes
/// requests, so the kernel checks each caller's own credentials.
pub struct LocalBackend {
    kernel: Arc<Kernel>,
    procs: RwLock<HashMap<CallerKey, Arc<Local>>>,
}

/// A caller: uid, gid and supplementary groups (sorted; empty: none known).
type CallerKey = (u32, u32, Vec<u32>);

/// Distinct callers kept; beyond, the table starts over (open files keep
/// their process alive through their handles).
const MAX_CALLERS: usize = 256;

impl LocalBackend {
    /// A backend whose processes live in `kernel`, in this host process.
    pub fn new(kernel: Arc<Kernel>) -> LocalBackend {
        LocalBackend {
            kernel,
            procs: RwLock::new(HashMap::new()),
        }
    }
}

impl Backend for LocalBackend {
    fn caller(&self, uid: u32, gid: u32) -> R<Arc<dyn Syscalls>> {
        self.caller_in_groups(uid, gid, &[])
    }

    fn caller_in_groups(&self, uid: u32, gid: u32, groups: &[u32]) -> R<Arc<dyn Syscalls>> {
        let mut groups = groups.to_vec();
        groups.sort_unstable();
        groups.dedup();
        groups.retain(|&g| g != gid);
        groups.truncate(rumpkern::NGROUPS_MAX);
        let key = (uid, gid, groups);
        if let Some(p) = self.procs.read().get(&key) {
            return Ok(p.clone());
        }
        let p = Arc::new(Local(
            self.kernel
                .local_process_in_groups(Cred { uid, gid }, &key.2)?,
        ));
        let mut t = self.procs.write();
        if t.len() >= MAX_CALLERS {
            t.clear();
        }
        Ok(t.entry(key).or_insert(p).clone())
    }
}

// ----- a running server, over sysproxy -----

/// A sysproxy connection: one kernel process, root's credentials as NetBSD
/// gives every sysproxy client.
pub struct Remote(pub Client);

fn e(r: Result<(), rumpclient::Error>) -> R<()> {
    r.map_err(|e| e.errno())
}

fn ev<T>(r: Result<T, rumpclient::Error>) -> R<T> {
    r.map_err(|e| e.errno())
}

impl Syscalls for Remote {
    fn lstat(&self, path: &[u8]) -> R<Stat> {
        ev(self.0.lstat(path))
    }
    fn fstat(&self, fd: i32) -> R<Stat> {
        ev(self.0.fstat(fd))
    }
    fn open(&self, path: &[u8], flags: i32, mode: u32) -> R<i32> {
        ev(self.0.open(path, flags, mode))
    }
    fn close(&self, fd: i32) -> R<()> {
        e(self.0.close(fd))
    }
    fn pread(&self, fd: i32, buf: &mut [u8], off: i64) -> R<usize> {
        ev(self.0.pread(fd, buf, off))
    }
    fn pwrite(&self, fd: i32, buf: &[u8], off: i64) -> R<usize> {
        ev(self.0.pwrite(fd, buf, off))
    }
    fn list_dir(&self, path: &[u8]) -> R<Vec<Dirent>> {
        ev(self.0.read_dir(path))
    }
    fn mkdir(&self, path: &[u8], mode: u32) -> R<()> {
        e(self.0.mkdir(path, mode))
    }
    fn rmdir(&self, path: &[u8]) -> R<()> {
        e(self.0.rmdir(path))
    }
    fn unlink(&self, path: &[u8]) -> R<()> {
        e(self.0.unlink(path))
    }
    fn rename(&self, from: &[u8], to: &[u8]) -> R<()> {
        e(self.0.rename(from, to))
    }
    fn link(&self, from: &[u8], to: &[u8]) -> R<()> {
        e(self.0.link(from, to))
    }
    fn symlink(&self, target: &[u8], path: &[u8]) -> R<()> {
        e(self.0.symlink(target, path))
    }
    fn readlink(&self, path: &[u8]) -> R<Vec<u8>> {
        ev(self.0.readlink(path))
    }
    fn mknod(&self, path: &[u8], mode: u32, dev: u64) -> R<()> {
        e(self.0.mknod(path, mode, dev))
    }
    fn mkfifo(&self, path: &[u8], mode: u32) -> R<()> {
        e(self.0.mkfifo(path, mode & 0o7777))
    }
    fn chmod(&self, path: &[u8], mode: u32) -> R<()> {
        e(self.0.chmod(path, mode))
    }
    fn fchmod(&self, fd: i32, mode: u32) -> R<()> {
        e(self.0.fchmod(fd, mode))
    }
    fn lchown(&self, path: &[u8], uid: u32, gid: u32) -> R<()> {
        e(self.0.lchown(path, uid, gid))
    }
    fn fchown(&self, fd: i32, uid: u32, gid: u32) -> R<()> {
        e(self.0.fchown(fd, uid, gid))
    }
    fn utimens(&self, path: &[u8], t: [TimeSpec; 2]) -> R<()> {
        e(self.0.utimens(path, t, false))
    }
    fn futimens(&self, fd: i32, t: [TimeSpec; 2]) -> R<()> {
        e(self.0.futimens(fd, t))
    }
    fn truncate(&self, path: &[u8], len: i64) -> R<()> {
        e(self.0.truncate(path, len))
    }
    fn ftruncate(&self, fd: i32, len: i64) -> R<()> {
        e(self.0.ftruncate(fd, len))
    }
    fn fsync(&self, fd: i32) -> R<()> {
        e(self.0.fsync(fd))
    }
    fn statvfs(&self, path: &[u8]) -> R<Statvfs> {
        ev(self.0.statvfs(path))
    }
    fn access(&self, path: &[u8], amode: i32) -> R<()> {
        e(self.0.access(path, amode))
    }
}

/// A running server: every request goes through the one connection.
pub struct RemoteBackend(pub Arc<Remote>);

impl Backend for RemoteBackend {
    fn caller(&self, _uid: u32, _gid: u32) -> R<Arc<dyn Syscalls>> {
        Ok(self.0.clone())
    }
}

/// Convert a kernel time to the host's.
pub fn systime(t: Timespec) -> std::time::SystemTime {
    use std::time::{Duration, UNIX_EPOCH};
    let ns = t.nsec.clamp(0, 999_999_999) as u32;
    if t.sec >= 0 {
        UNIX_EPOCH
            .checked_add(Duration::new(t.sec as u64, ns))
            .unwrap_or(UNIX_EPOCH)
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::new(t.sec.unsigned_abs(), 0))
            .unwrap_or(UNIX_EPOCH)
    }
}
