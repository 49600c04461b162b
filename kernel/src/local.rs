//! Local processes: kernel processes for callers in this host process,
//! whose "user memory" is this process's own. Tests and embedders use the
//! typed methods, which pass pointers to Rust slices; [`LocalProc::syscall`]
//! takes raw argument slots like a real system call.

use std::ffi::CString;
use std::sync::Arc;

use netbsd_abi::dirent::Dirent;
use netbsd_abi::errno::*;
use netbsd_abi::stat::{Stat, STAT_SIZE};
use netbsd_abi::syscall::*;
use netbsd_abi::Errno;

use crate::copy::Lend;
use crate::proc::{curlwp_raw, set_curlwp_raw, Lwp, Proc};
use crate::Kernel;

mod ext;
pub use ext::TimeArg;

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

/// A path as the kernel takes it: any bytes but NUL (names need not be
/// UTF-8).
fn cstr(s: &[u8]) -> Result<CString, Errno> {
    CString::new(s).map_err(|_| Errno(EINVAL))
}

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

    /// Run a call whose arguments hold no address.
    fn call(&self, num: i32, args: &[u64]) -> Result<[i64; 2], Errno> {
        self.call_lent(&Lend::new(), num, args)
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

    /// `getpid(2)`: (pid, parent pid).
    pub fn getpid(&self) -> Result<(i32, i32), Errno> {
        let r = self.call(SYS_GETPID, &[])?;
        Ok((r[0] as i32, r[1] as i32))
    }

    /// `open(2)`; the new descriptor.
    pub fn open(&self, path: impl AsRef<[u8]>, flags: i32, mode: u32) -> Result<i32, Errno> {
        let l = Lend::new();
        let p = cstr(path.as_ref())?;
        Ok(self.call_lent(
            &l,
            SYS_OPEN,
            &[l.cstr(&p), flags as u32 as u64, mode as u64],
        )?[0] as i32)
    }

    /// `close(2)`.
    pub fn close(&self, fd: i32) -> Result<(), Errno> {
        self.call(SYS_CLOSE, &[fd as u32 as u64]).map(|_| ())
    }

    /// `read(2)` at the descriptor's offset; 0 at end of file.
    pub fn read(&self, fd: i32, buf: &mut [u8]) -> Result<usize, Errno> {
        let l = Lend::new();
        let buf_len = buf.len() as u64;
        Ok(self.call_lent(
            &l,
            SYS_READ,
            &[fd as u32 as u64, l.buf_mut(&mut buf[..]), buf_len],
        )?[0] as usize)
    }

    /// `write(2)` at the descriptor's offset (at the end with `O_APPEND`).
    pub fn write(&self, fd: i32, buf: &[u8]) -> Result<usize, Errno> {
        let l = Lend::new();
        Ok(self.call_lent(
            &l,
            SYS_WRITE,
            &[fd as u32 as u64, l.buf(buf), buf.len() as u64],
        )?[0] as usize)
    }

    /// `pread(2)`: read at `off`, leaving the offset alone.
    pub fn pread(&self, fd: i32, buf: &mut [u8], off: i64) -> Result<usize, Errno> {
        let l = Lend::new();
        let buf_len = buf.len() as u64;
        Ok(self.call_lent(
            &l,
            SYS_PREAD,
            &[
                fd as u32 as u64,
                l.buf_mut(&mut buf[..]),
                buf_len,
                0,
                off as u64,
            ],
        )?[0] as usize)
    }

    /// `pwrite(2)`: write at `off`, leaving the offset alone.
    pub fn pwrite(&self, fd: i32, buf: &[u8], off: i64) -> Result<usize, Errno> {
        let l = Lend::new();
        Ok(self.call_lent(
            &l,
            SYS_PWRITE,
            &[
                fd as u32 as u64,
                l.buf(buf),
                buf.len() as u64,
                0,
                off as u64,
            ],
        )?[0] as usize)
    }

    /// `lseek(2)`; the new offset.
    pub fn lseek(&self, fd: i32, off: i64, whence: i32) -> Result<i64, Errno> {
        Ok(self.call(
            SYS_LSEEK,
            &[fd as u32 as u64, 0, off as u64, whence as u32 as u64],
        )?[0])
    }

    /// `ftruncate(2)`.
    pub fn ftruncate(&self, fd: i32, len: i64) -> Result<(), Errno> {
        self.call(SYS_FTRUNCATE, &[fd as u32 as u64, 0, len as u64])
            .map(|_| ())
    }

    /// `fsync(2)`: the file's data and metadata made durable.
    pub fn fsync(&self, fd: i32) -> Result<(), Errno> {
        self.call(SYS_FSYNC, &[fd as u32 as u64]).map(|_| ())
    }

    /// `fdatasync(2)`: the file's data made durable.
    pub fn fdatasync(&self, fd: i32) -> Result<(), Errno> {
        self.call(SYS_FDATASYNC, &[fd as u32 as u64]).map(|_| ())
    }

    /// `sync(2)`: every file system flushed.
    pub fn sync(&self) -> Result<(), Errno> {
        self.call(SYS_SYNC, &[]).map(|_| ())
    }

    /// stat/lstat of `path`, or fstat of `fd` when `path` is `None`.
    fn stat_call(&self, num: i32, path: Option<&std::ffi::CStr>, fd: i32) -> Result<Stat, Errno> {
        let l = Lend::new();
        let mut b = [0u8; STAT_SIZE];
        let a0 = match path {
            Some(p) => l.cstr(p),
            None => fd as u32 as u64,
        };
        self.call_lent(&l, num, &[a0, l.buf_mut(&mut b[..])])?;
        Stat::decode(&b).ok_or(Errno(EFAULT))
    }

    /// `stat(2)`, following a final symbolic link.
    pub fn stat(&self, path: impl AsRef<[u8]>) -> Result<Stat, Errno> {
        let p = cstr(path.as_ref())?;
        self.stat_call(SYS_STAT, Some(&p), 0)
    }

    /// `lstat(2)`, not following a final symbolic link.
    pub fn lstat(&self, path: impl AsRef<[u8]>) -> Result<Stat, Errno> {
        let p = cstr(path.as_ref())?;
        self.stat_call(SYS_LSTAT, Some(&p), 0)
    }

    /// `fstat(2)`.
    pub fn fstat(&self, fd: i32) -> Result<Stat, Errno> {
        self.stat_call(SYS_FSTAT, None, fd)
    }

    /// `mkdir(2)` (the umask applies).
    pub fn mkdir(&self, path: impl AsRef<[u8]>, mode: u32) -> Result<(), Errno> {
        let l = Lend::new();
        let p = cstr(path.as_ref())?;
        self.call_lent(&l, SYS_MKDIR, &[l.cstr(&p), mode as u64])
            .map(|_| ())
    }

    /// `rmdir(2)`.
    pub fn rmdir(&self, path: impl AsRef<[u8]>) -> Result<(), Errno> {
        let l = Lend::new();
        let p = cstr(path.as_ref())?;
        self.call_lent(&l, SYS_RMDIR, &[l.cstr(&p)]).map(|_| ())
    }

    /// `unlink(2)`.
    pub fn unlink(&self, path: impl AsRef<[u8]>) -> Result<(), Errno> {
        let l = Lend::new();
        let p = cstr(path.as_ref())?;
        self.call_lent(&l, SYS_UNLINK, &[l.cstr(&p)]).map(|_| ())
    }

    /// `rename(2)`.
    pub fn rename(&self, from: impl AsRef<[u8]>, to: impl AsRef<[u8]>) -> Result<(), Errno> {
        let l = Lend::new();
        let (f, t) = (cstr(from.as_ref())?, cstr(to.as_ref())?);
        self.call_lent(&l, SYS_RENAME, &[l.cstr(&f), l.cstr(&t)])
            .map(|_| ())
    }

    /// `link(2)`: a new name `to` for `from`.
    pub fn link(&self, from: impl AsRef<[u8]>, to: impl AsRef<[u8]>) -> Result<(), Errno> {
        let l = Lend::new();
        let (f, t) = (cstr(from.as_ref())?, cstr(to.as_ref())?);
        self.call_lent(&l, SYS_LINK, &[l.cstr(&f), l.cstr(&t)])
            .map(|_| ())
    }

    /// `symlink(2)`: a link at `path` pointing to `target`.
    pub fn symlink(&self, target: impl AsRef<[u8]>, path: impl AsRef<[u8]>) -> Result<(), Errno> {
        let l = Lend::new();
        let (t, p) = (cstr(target.as_ref())?, cstr(path.as_ref())?);
        self.call_lent(&l, SYS_SYMLINK, &[l.cstr(&t), l.cstr(&p)])
            .map(|_| ())
    }

    /// `readlink(2)`: the link's target.
    pub fn readlink(&self, path: impl AsRef<[u8]>) -> Result<Vec<u8>, Errno> {
        let l = Lend::new();
        let p = cstr(path.as_ref())?;
        let mut buf = vec![0u8; crate::namei::MAXPATHLEN];
        let buf_len = buf.len() as u64;
        let n = self.call_lent(
            &l,
            SYS_READLINK,
            &[l.cstr(&p), l.buf_mut(&mut buf[..]), buf_len],
        )?[0] as usize;
        buf.truncate(n);
        Ok(buf)
    }

    /// `chmod(2)`.
    pub fn chmod(&self, path: impl AsRef<[u8]>, mode: u32) -> Result<(), Errno> {
        let l = Lend::new();
        let p = cstr(path.as_ref())?;
        self.call_lent(&l, SYS_CHMOD, &[l.cstr(&p), mode as u64])
            .map(|_| ())
    }

    /// `fchmod(2)`.
    pub fn fchmod(&self, fd: i32, mode: u32) -> Result<(), Errno> {
        self.call(SYS_FCHMOD, &[fd as u32 as u64, mode as u64])
            .map(|_| ())
    }

    /// `chdir(2)`.
    pub fn chdir(&self, path: impl AsRef<[u8]>) -> Result<(), Errno> {
        let l = Lend::new();
        let p = cstr(path.as_ref())?;
        self.call_lent(&l, SYS_CHDIR, &[l.cstr(&p)]).map(|_| ())
    }

    /// `fchdir(2)`.
    pub fn fchdir(&self, fd: i32) -> Result<(), Errno> {
        self.call(SYS_FCHDIR, &[fd as u32 as u64]).map(|_| ())
    }

    /// `__getcwd(2)`: the current directory's path.
    pub fn getcwd(&self) -> Result<String, Errno> {
        let l = Lend::new();
        let mut buf = vec![0u8; crate::namei::MAXPATHLEN * 4];
        let buf_len = buf.len() as u64;
        let n = self.call_lent(&l, SYS___GETCWD, &[l.buf_mut(&mut buf[..]), buf_len])?[0] as usize;
        let n = n.saturating_sub(1).min(buf.len());
        buf.truncate(n);
        String::from_utf8(buf).map_err(|_| Errno(EILSEQ))
    }

    /// One `getdents` call into `buf`; returns the bytes filled.
    pub fn getdents_raw(&self, fd: i32, buf: &mut [u8]) -> Result<usize, Errno> {
        let l = Lend::new();
        let buf_len = buf.len() as u64;
        Ok(self.call_lent(
            &l,
            SYS_GETDENTS,
            &[fd as u32 as u64, l.buf_mut(&mut buf[..]), buf_len],
        )?[0] as usize)
    }

    /// Every entry of directory `fd` from its current offset on.
    pub fn getdents(&self, fd: i32) -> Result<Vec<Dirent>, Errno> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 8192];
        loop {
            let n = self.getdents_raw(fd, &mut buf)?;
            if n == 0 {
                return Ok(out);
            }
            out.extend(Dirent::decode_all(&buf[..n]));
        }
    }

    /// The names in directory `path` ("." and ".." included).
    pub fn list_dir(&self, path: impl AsRef<[u8]>) -> Result<Vec<String>, Errno> {
        let fd = self.open(
            path,
            netbsd_abi::fcntl::O_RDONLY | netbsd_abi::fcntl::O_DIRECTORY,
            0,
        )?;
        let r = self.getdents(fd);
        let _ = self.close(fd);
        Ok(r?
            .into_iter()
            .map(|d| String::from_utf8_lossy(&d.name).into_owned())
            .collect())
    }

    /// `mount("ext2fs", dir, flags, &ufs_args{fspec})`.
    pub fn mount(&self, fstype: &str, dir: &str, flags: i32, fspec: &str) -> Result<(), Errno> {
        let l = Lend::new();
        let (t, d, s) = (
            cstr(fstype.as_bytes())?,
            cstr(dir.as_bytes())?,
            cstr(fspec.as_bytes())?,
        );
        let args: [u64; 1] = [l.cstr(&s)];
        self.call_lent(
            &l,
            SYS_MOUNT,
            &[
                l.cstr(&t),
                l.cstr(&d),
                flags as u32 as u64,
                l.buf(&args[..]),
                8,
            ],
        )
        .map(|_| ())
    }

    /// `mount(2)` of type `ext2fs` from the drive at `fspec` on `dir` (read-only if asked).
    pub fn mount_ext2(&self, fspec: &str, dir: &str, read_only: bool) -> Result<(), Errno> {
        let flags = if read_only {
            netbsd_abi::fcntl::MNT_RDONLY
        } else {
            0
        };
        self.mount(netbsd_abi::fcntl::MOUNT_EXT2FS, dir, flags, fspec)
    }

    /// `unmount(2)`: flush and detach the file system mounted on `dir`.
    pub fn unmount(&self, dir: &str, flags: i32) -> Result<(), Errno> {
        let l = Lend::new();
        let d = cstr(dir.as_bytes())?;
        self.call_lent(&l, SYS_UNMOUNT, &[l.cstr(&d), flags as u32 as u64])
            .map(|_| ())
    }

    /// `reboot(2)` with `RB_*` `flags`: the halt (without `RB_HALT` the host process exits).
    pub fn reboot(&self, flags: i32) -> Result<(), Errno> {
        self.call(SYS_REBOOT, &[flags as u32 as u64, 0]).map(|_| ())
    }

    /// `__sysctl(name, oldv)`: read a node into a buffer of `cap` bytes.
    pub fn sysctl(&self, name: &[i32], cap: usize) -> Result<Vec<u8>, Errno> {
        let l = Lend::new();
        let mut buf = vec![0u8; cap];
        let mut len: u64 = cap as u64;
        self.call_lent(
            &l,
            SYS___SYSCTL,
            &[
                l.buf(name),
                name.len() as u64,
                l.buf_mut(&mut buf[..]),
                l.buf_mut(std::slice::from_mut(&mut len)),
                0,
                0,
            ],
        )?;
        buf.truncate(len as usize);
        Ok(buf)
    }

    /// `__sysctl` writing `new` to a node.
    pub fn sysctl_set(&self, name: &[i32], new: &[u8]) -> Result<(), Errno> {
        let l = Lend::new();
        self.call_lent(
            &l,
            SYS___SYSCTL,
            &[
                l.buf(name),
                name.len() as u64,
                0,
                0,
                l.buf(new),
                new.len() as u64,
            ],
        )
        .map(|_| ())
    }

    /// Read a whole file.
    pub fn read_file(&self, path: impl AsRef<[u8]>) -> Result<Vec<u8>, Errno> {
        let fd = self.open(path, netbsd_abi::fcntl::O_RDONLY, 0)?;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65536];
        let r = loop {
            match self.read(fd, &mut buf) {
                Ok(0) => break Ok(out),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => break Err(e),
            }
        };
        let _ = self.close(fd);
        r
    }

    /// Create or replace a file with `data`.
    pub fn write_file(&self, path: impl AsRef<[u8]>, data: &[u8]) -> Result<(), Errno> {
        use netbsd_abi::fcntl::*;
        let fd = self.open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)?;
        let r = self.write(fd, data);
        let c = self.close(fd);
        match r {
            Ok(n) if n == data.len() => c,
            Ok(_) => Err(Errno(EIO)),
            Err(e) => Err(e),
        }
    }
}

impl Drop for LocalProc {
    fn drop(&mut self) {
        // SAFETY: `main` is ours, never current on any thread.
        unsafe { (*self.main).rele() };
        self.kernel.free_lwp(self.main);
    }
}
