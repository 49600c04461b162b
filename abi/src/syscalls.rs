//! The typed system calls, written once for every way into a kernel.
//!
//! A way in (the built-in kernel's in-process processes, a sysproxy
//! connection, NetBSD's own kernel loaded in this process) implements one
//! method, [`Syscalls::call`]: run system call `num` with its argument
//! slots, letting the kernel reach the caller's memory listed as
//! [`Region`]s. Every typed call (`open`, `pread`, `fstat`, `utimensat`,
//! ...) is a provided method that lays out NetBSD's arguments over it, so
//! the layouts live in one place. Values are NetBSD's: flags, modes,
//! [`Errno`], [`Stat`], [`Timespec`] (where `utimensat(2)` takes
//! `UTIME_NOW`/`UTIME_OMIT`, [`Timespec::NOW`]/[`Timespec::OMIT`]).
//!
//! Paths are any bytes but NUL (`&str`, `String`, `&[u8]`, ...); a path
//! holding a NUL fails with `EINVAL` before any call is made.

use std::fmt;

use crate::dirent::Dirent;
use crate::errno::{Errno, EFAULT, EINVAL, EIO, ENOMEM};
use crate::fcntl::{
    AT_FDCWD, AT_SYMLINK_NOFOLLOW, MOUNT_EXT2FS, O_CREAT, O_DIRECTORY, O_RDONLY, O_TRUNC, O_WRONLY,
    ST_WAIT,
};
use crate::stat::{encode_times, encode_timevals, Stat, Timespec, STAT_SIZE};
use crate::statvfs::{Statvfs, STATVFS_SIZE};
use crate::syscall::*;

/// A piece of the caller's memory that a system call may touch. The
/// kernel is given addresses (the caller puts [`Region::addr`] values in
/// the argument slots); what it may reach through them is the regions
/// listed for the call and nothing else.
#[derive(Debug)]
pub enum Region<'a> {
    /// The kernel may read it (copyin, copyinstr).
    In(&'a [u8]),
    /// The kernel may write it (copyout, copyoutstr).
    Out(&'a mut [u8]),
    /// Both.
    InOut(&'a mut [u8]),
}

impl Region<'_> {
    /// The address to pass in an argument slot.
    pub fn addr(&self) -> u64 {
        match self {
            Region::In(b) => b.as_ptr() as u64,
            Region::Out(b) | Region::InOut(b) => b.as_ptr() as u64,
        }
    }

    /// Bytes in the region.
    pub fn len(&self) -> usize {
        match self {
            Region::In(b) => b.len(),
            Region::Out(b) | Region::InOut(b) => b.len(),
        }
    }

    /// Whether the region is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes the kernel may read (`None` for an `Out` region).
    pub fn readable(&self) -> Option<&[u8]> {
        match self {
            Region::In(b) => Some(b),
            Region::InOut(b) => Some(b),
            Region::Out(_) => None,
        }
    }

    /// The bytes the kernel may write (`None` for an `In` region).
    pub fn writable(&mut self) -> Option<&mut [u8]> {
        match self {
            Region::In(_) => None,
            Region::Out(b) | Region::InOut(b) => Some(b),
        }
    }
}

/// What a failed call of a way in reports: at least a NetBSD errno (a
/// sysproxy connection adds why the server could not be reached).
pub trait SysError: From<Errno> + fmt::Debug + fmt::Display {
    /// The NetBSD errno that best describes the failure.
    fn errno(&self) -> Errno;
}

impl SysError for Errno {
    fn errno(&self) -> Errno {
        *self
    }
}

/// The address of a buffer, for an argument slot.
fn a(b: &[u8]) -> u64 {
    b.as_ptr() as u64
}

/// A path as the kernel reads it: its bytes and a NUL.
fn cpath(p: &[u8]) -> Result<Vec<u8>, Errno> {
    if p.contains(&0) {
        return Err(Errno(EINVAL));
    }
    let mut v = Vec::with_capacity(p.len() + 1);
    v.extend_from_slice(p);
    v.push(0);
    Ok(v)
}

/// A descriptor or other `int` in its slot (sign bits not carried over,
/// as NetBSD reads the low 32 bits).
fn int(x: i32) -> u64 {
    x as u32 as u64
}

/// Up to 8 slots: the address of `first` and then `rest`.
fn slots(first: u64, rest: &[u64]) -> ([u64; 8], usize) {
    let mut s = [0u64; 8];
    s[0] = first;
    let n = rest.len().min(7);
    s[1..=n].copy_from_slice(&rest[..n]);
    (s, n + 1)
}

/// `struct iovec[]` for `bufs` at the addresses they have: (base, len)
/// pairs, 16 bytes each.
fn iovecs<'b>(bufs: impl Iterator<Item = &'b [u8]>) -> Vec<u8> {
    bufs.flat_map(|b| [a(b).to_le_bytes(), (b.len() as u64).to_le_bytes()])
        .flatten()
        .collect()
}

/// `MAXPATHLEN`: the longest path a kernel returns, with its NUL.
const MAXPATHLEN: usize = 1024;

/// One process's system calls in a kernel (see the module documentation).
///
/// Implementers: the built-in kernel's `rumpkern::LocalProc`, a sysproxy
/// connection (`rumpclient::Client`) and NetBSD's in-process kernel
/// (`netbsd_fs::sys::NetbsdSys`).
pub trait Syscalls {
    /// What a failed call reports.
    type Error: SysError;

    /// Run NetBSD system call `num` with argument slots `args` (one 8-byte
    /// slot per argument, `PAD` slots included; addresses are
    /// [`Region::addr`] values). Returns `retval[0..2]`.
    ///
    /// # Safety
    /// Every address the call reaches through `args` lies inside one of
    /// `mem`, for the access the region allows (`In`: reads, `Out`:
    /// writes, `InOut`: both), and `args` holds every slot the call reads.
    /// A way in that checks each access against `mem` (the built-in
    /// kernel, sysproxy) fails the call with `EFAULT` otherwise; one that
    /// cannot (NetBSD's kernel in this process reaches memory directly)
    /// relies on this contract.
    unsafe fn call(
        &self,
        num: i32,
        args: &[u64],
        mem: &mut [Region<'_>],
    ) -> Result<[i64; 2], Self::Error>;

    /// A call whose arguments hold no address.
    fn call_plain(&self, num: i32, args: &[u64]) -> Result<[i64; 2], Self::Error> {
        // SAFETY: no slot holds an address, so the kernel reaches nothing.
        unsafe { self.call(num, args, &mut []) }
    }

    /// A call whose first argument is `path` and the rest `rest`.
    fn call_path(&self, num: i32, path: &[u8], rest: &[u64]) -> Result<[i64; 2], Self::Error> {
        let p = cpath(path)?;
        let (s, n) = slots(a(&p), rest);
        // SAFETY: the one address is `p`'s, lent for reading (the kernel
        // reads the string up to its NUL).
        unsafe { self.call(num, &s[..n], &mut [Region::In(&p)]) }
    }

    /// A call `(dirfd, path, rest...)`.
    fn call_at(
        &self,
        num: i32,
        dirfd: i32,
        path: &[u8],
        rest: &[u64],
    ) -> Result<[i64; 2], Self::Error> {
        let p = cpath(path)?;
        let mut s = [0u64; 8];
        s[0] = int(dirfd);
        s[1] = a(&p);
        let n = rest.len().min(6);
        s[2..2 + n].copy_from_slice(&rest[..n]);
        // SAFETY: the one address is `p`'s, lent for reading.
        unsafe { self.call(num, &s[..n + 2], &mut [Region::In(&p)]) }
    }

    /// A call `(path1, path2)`.
    fn call_two_paths(&self, num: i32, p1: &[u8], p2: &[u8]) -> Result<(), Self::Error> {
        let (x, y) = (cpath(p1)?, cpath(p2)?);
        // SAFETY: the two addresses are the strings', lent for reading.
        unsafe { self.call(num, &[a(&x), a(&y)], &mut [Region::In(&x), Region::In(&y)]) }?;
        Ok(())
    }

    // ----- processes and credentials -----

    /// `getpid(2)`.
    fn getpid(&self) -> Result<i32, Self::Error> {
        Ok(self.call_plain(SYS_GETPID, &[])?[0] as i32)
    }

    /// The parent's pid (`getpid_with_ppid`'s second value).
    fn getppid(&self) -> Result<i32, Self::Error> {
        Ok(self.call_plain(SYS_GETPID, &[])?[1] as i32)
    }

    /// `getuid_with_euid`: (real, effective) user id.
    fn getuid(&self) -> Result<(u32, u32), Self::Error> {
        let r = self.call_plain(SYS_GETUID, &[])?;
        Ok((r[0] as u32, r[1] as u32))
    }

    /// `getgid_with_egid`: (real, effective) group id.
    fn getgid(&self) -> Result<(u32, u32), Self::Error> {
        let r = self.call_plain(SYS_GETGID, &[])?;
        Ok((r[0] as u32, r[1] as u32))
    }

    /// `getgroups(2)`: the supplementary groups.
    fn getgroups(&self) -> Result<Vec<u32>, Self::Error> {
        let n = (self.call_plain(SYS_GETGROUPS, &[0, 0])?[0] as usize).min(65536);
        let mut b = vec![0u8; n * 4];
        let args = [n as u64, a(&b)];
        // SAFETY: the kernel writes at most `n` gids, the buffer's size.
        let got = unsafe { self.call(SYS_GETGROUPS, &args, &mut [Region::Out(&mut b)]) }?[0];
        Ok(b.chunks_exact(4)
            .take(got as usize)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    /// `umask(2)`: the previous mask.
    fn umask(&self, mask: u32) -> Result<u32, Self::Error> {
        Ok(self.call_plain(SYS_UMASK, &[mask as u64])?[0] as u32)
    }

    /// `reboot(2)` with NetBSD `RB_*` flags.
    fn reboot(&self, flags: i32) -> Result<(), Self::Error> {
        self.call_plain(SYS_REBOOT, &[int(flags), 0]).map(|_| ())
    }

    // ----- descriptors and I/O -----

    /// `open(2)` with NetBSD `O_*` flags; the new descriptor.
    fn open(&self, path: impl AsRef<[u8]>, flags: i32, mode: u32) -> Result<i32, Self::Error> {
        Ok(self.call_path(SYS_OPEN, path.as_ref(), &[int(flags), mode as u64])?[0] as i32)
    }

    /// `close(2)`.
    fn close(&self, fd: i32) -> Result<(), Self::Error> {
        self.call_plain(SYS_CLOSE, &[int(fd)]).map(|_| ())
    }

    /// `read(2)` at the descriptor's offset; 0 at end of file.
    fn read(&self, fd: i32, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let args = [int(fd), a(buf), buf.len() as u64];
        // SAFETY: the kernel writes at most `buf.len()` bytes at `buf`.
        Ok(unsafe { self.call(SYS_READ, &args, &mut [Region::Out(buf)]) }?[0] as usize)
    }

    /// `write(2)` at the descriptor's offset (at the end with `O_APPEND`).
    fn write(&self, fd: i32, buf: &[u8]) -> Result<usize, Self::Error> {
        let args = [int(fd), a(buf), buf.len() as u64];
        // SAFETY: the kernel reads at most `buf.len()` bytes at `buf`.
        Ok(unsafe { self.call(SYS_WRITE, &args, &mut [Region::In(buf)]) }?[0] as usize)
    }

    /// `pread(2)`: read at `off`, leaving the offset alone; short only at
    /// end of file.
    fn pread(&self, fd: i32, buf: &mut [u8], off: i64) -> Result<usize, Self::Error> {
        let args = [int(fd), a(buf), buf.len() as u64, 0, off as u64];
        // SAFETY: the kernel writes at most `buf.len()` bytes at `buf`.
        Ok(unsafe { self.call(SYS_PREAD, &args, &mut [Region::Out(buf)]) }?[0] as usize)
    }

    /// `pwrite(2)`: write at `off`, leaving the offset alone.
    fn pwrite(&self, fd: i32, buf: &[u8], off: i64) -> Result<usize, Self::Error> {
        let args = [int(fd), a(buf), buf.len() as u64, 0, off as u64];
        // SAFETY: the kernel reads at most `buf.len()` bytes at `buf`.
        Ok(unsafe { self.call(SYS_PWRITE, &args, &mut [Region::In(buf)]) }?[0] as usize)
    }

    /// `preadv(2)`: read at `off` into `bufs` in turn.
    fn preadv(&self, fd: i32, bufs: &mut [&mut [u8]], off: i64) -> Result<usize, Self::Error> {
        let iov = iovecs(bufs.iter().map(|b| &**b));
        let args = [int(fd), a(&iov), bufs.len() as u64, 0, off as u64];
        let mut mem = Vec::with_capacity(bufs.len() + 1);
        mem.push(Region::In(&iov));
        mem.extend(bufs.iter_mut().map(|b| Region::Out(b)));
        // SAFETY: the kernel reads the iovec array and writes each buffer
        // it names, for its length; all are lent.
        Ok(unsafe { self.call(SYS_PREADV, &args, &mut mem) }?[0] as usize)
    }

    /// `writev(2)`: write `bufs` in turn at the descriptor's offset.
    fn writev(&self, fd: i32, bufs: &[&[u8]]) -> Result<usize, Self::Error> {
        let iov = iovecs(bufs.iter().copied());
        let args = [int(fd), a(&iov), bufs.len() as u64];
        let mut mem = Vec::with_capacity(bufs.len() + 1);
        mem.push(Region::In(&iov));
        mem.extend(bufs.iter().map(|b| Region::In(b)));
        // SAFETY: the kernel reads the iovec array and each buffer it
        // names, for its length; all are lent.
        Ok(unsafe { self.call(SYS_WRITEV, &args, &mut mem) }?[0] as usize)
    }

    /// `lseek(2)` with NetBSD `SEEK_*`; the new offset.
    fn lseek(&self, fd: i32, off: i64, whence: i32) -> Result<i64, Self::Error> {
        Ok(self.call_plain(SYS_LSEEK, &[int(fd), 0, off as u64, int(whence)])?[0])
    }

    /// `ftruncate(2)`: set the size (extending with a hole).
    fn ftruncate(&self, fd: i32, len: i64) -> Result<(), Self::Error> {
        self.call_plain(SYS_FTRUNCATE, &[int(fd), 0, len as u64])
            .map(|_| ())
    }

    /// `fsync(2)`: the file's data and metadata made durable.
    fn fsync(&self, fd: i32) -> Result<(), Self::Error> {
        self.call_plain(SYS_FSYNC, &[int(fd)]).map(|_| ())
    }

    /// `fdatasync(2)`: the file's data made durable.
    fn fdatasync(&self, fd: i32) -> Result<(), Self::Error> {
        self.call_plain(SYS_FDATASYNC, &[int(fd)]).map(|_| ())
    }

    /// `fsync_range(2)`: `len` bytes from `start` made durable; `flags`
    /// holds `FDATASYNC` or `FFILESYNC` (and may add `FDISKSYNC`).
    fn fsync_range(&self, fd: i32, flags: i32, start: i64, len: i64) -> Result<(), Self::Error> {
        let args = [int(fd), int(flags), start as u64, len as u64];
        self.call_plain(SYS_FSYNC_RANGE, &args).map(|_| ())
    }

    /// `sync(2)`: every file system flushed.
    fn sync(&self) -> Result<(), Self::Error> {
        self.call_plain(SYS_SYNC, &[]).map(|_| ())
    }

    /// `dup(2)`: the lowest free descriptor for `fd`'s file.
    fn dup(&self, fd: i32) -> Result<i32, Self::Error> {
        Ok(self.call_plain(SYS_DUP, &[int(fd)])?[0] as i32)
    }

    /// `dup2(2)`: `to` made to refer to `from`'s file; returns `to`.
    fn dup2(&self, from: i32, to: i32) -> Result<i32, Self::Error> {
        Ok(self.call_plain(SYS_DUP2, &[int(from), int(to)])?[0] as i32)
    }

    /// `dup3(2)`: [`Syscalls::dup2`] with `O_CLOEXEC` allowed in `flags`.
    fn dup3(&self, from: i32, to: i32, flags: i32) -> Result<i32, Self::Error> {
        Ok(self.call_plain(SYS_DUP3, &[int(from), int(to), int(flags)])?[0] as i32)
    }

    /// `fcntl(2)` for the integer commands (`F_DUPFD`, `F_GETFD`/`F_SETFD`,
    /// `F_GETFL`/`F_SETFL`).
    fn fcntl(&self, fd: i32, cmd: i32, arg: i64) -> Result<i64, Self::Error> {
        Ok(self.call_plain(SYS_FCNTL, &[int(fd), int(cmd), arg as u64])?[0])
    }

    // ----- attributes -----

    /// `stat(2)`, following a final symbolic link.
    fn stat(&self, path: impl AsRef<[u8]>) -> Result<Stat, Self::Error> {
        stat_path(self, SYS_STAT, path.as_ref())
    }

    /// `lstat(2)`: the attributes of `path` itself.
    fn lstat(&self, path: impl AsRef<[u8]>) -> Result<Stat, Self::Error> {
        stat_path(self, SYS_LSTAT, path.as_ref())
    }

    /// `fstat(2)`.
    fn fstat(&self, fd: i32) -> Result<Stat, Self::Error> {
        let mut b = [0u8; STAT_SIZE];
        let args = [int(fd), a(&b)];
        // SAFETY: the kernel writes one `struct stat`, the buffer's size.
        unsafe { self.call(SYS_FSTAT, &args, &mut [Region::Out(&mut b)]) }?;
        Ok(Stat::decode(&b).ok_or(Errno(EFAULT))?)
    }

    /// `fstatat(2)`: [`Syscalls::stat`] relative to `dirfd`;
    /// `AT_SYMLINK_NOFOLLOW` in `flag` gives [`Syscalls::lstat`]'s answer.
    fn fstatat(&self, dirfd: i32, path: impl AsRef<[u8]>, flag: i32) -> Result<Stat, Self::Error> {
        let p = cpath(path.as_ref())?;
        let mut b = [0u8; STAT_SIZE];
        let args = [int(dirfd), a(&p), a(&b), int(flag)];
        // SAFETY: the kernel reads the path and writes one `struct stat`.
        unsafe {
            self.call(
                SYS_FSTATAT,
                &args,
                &mut [Region::In(&p), Region::Out(&mut b)],
            )
        }?;
        Ok(Stat::decode(&b).ok_or(Errno(EFAULT))?)
    }

    /// `access(2)`: may the process access `path` as `amode` asks
    /// (`R_OK`, `W_OK`, `X_OK`; `F_OK` for existence)?
    fn access(&self, path: impl AsRef<[u8]>, amode: i32) -> Result<(), Self::Error> {
        self.call_path(SYS_ACCESS, path.as_ref(), &[int(amode)])
            .map(|_| ())
    }

    /// `faccessat(2)`; `AT_EACCESS` in `flag` checks the effective ids.
    fn faccessat(
        &self,
        dirfd: i32,
        path: impl AsRef<[u8]>,
        amode: i32,
        flag: i32,
    ) -> Result<(), Self::Error> {
        self.call_at(
            SYS_FACCESSAT,
            dirfd,
            path.as_ref(),
            &[int(amode), int(flag)],
        )
        .map(|_| ())
    }

    /// `chmod(2)`, following a final symbolic link.
    fn chmod(&self, path: impl AsRef<[u8]>, mode: u32) -> Result<(), Self::Error> {
        self.call_path(SYS_CHMOD, path.as_ref(), &[mode as u64])
            .map(|_| ())
    }

    /// `lchmod(2)`: the mode of a symbolic link itself.
    fn lchmod(&self, path: impl AsRef<[u8]>, mode: u32) -> Result<(), Self::Error> {
        self.call_path(SYS_LCHMOD, path.as_ref(), &[mode as u64])
            .map(|_| ())
    }

    /// `fchmod(2)`.
    fn fchmod(&self, fd: i32, mode: u32) -> Result<(), Self::Error> {
        self.call_plain(SYS_FCHMOD, &[int(fd), mode as u64])
            .map(|_| ())
    }

    /// `fchmodat(2)`; `AT_SYMLINK_NOFOLLOW` in `flag` acts on a link itself.
    fn fchmodat(
        &self,
        dirfd: i32,
        path: impl AsRef<[u8]>,
        mode: u32,
        flag: i32,
    ) -> Result<(), Self::Error> {
        self.call_at(
            SYS_FCHMODAT,
            dirfd,
            path.as_ref(),
            &[mode as u64, int(flag)],
        )
        .map(|_| ())
    }

    /// `chown(2)`, following a final symbolic link; `u32::MAX` leaves that
    /// id alone.
    fn chown(&self, path: impl AsRef<[u8]>, uid: u32, gid: u32) -> Result<(), Self::Error> {
        self.call_path(SYS_CHOWN, path.as_ref(), &[uid as u64, gid as u64])
            .map(|_| ())
    }

    /// `lchown(2)`: a symbolic link itself.
    fn lchown(&self, path: impl AsRef<[u8]>, uid: u32, gid: u32) -> Result<(), Self::Error> {
        self.call_path(SYS_LCHOWN, path.as_ref(), &[uid as u64, gid as u64])
            .map(|_| ())
    }

    /// `fchown(2)` (`u32::MAX` leaves that id alone).
    fn fchown(&self, fd: i32, uid: u32, gid: u32) -> Result<(), Self::Error> {
        self.call_plain(SYS_FCHOWN, &[int(fd), uid as u64, gid as u64])
            .map(|_| ())
    }

    /// `fchownat(2)`; `AT_SYMLINK_NOFOLLOW` in `flag` acts on a link itself.
    fn fchownat(
        &self,
        dirfd: i32,
        path: impl AsRef<[u8]>,
        uid: u32,
        gid: u32,
        flag: i32,
    ) -> Result<(), Self::Error> {
        self.call_at(
            SYS_FCHOWNAT,
            dirfd,
            path.as_ref(),
            &[uid as u64, gid as u64, int(flag)],
        )
        .map(|_| ())
    }

    /// `utimensat(AT_FDCWD, path, [atime, mtime], flag)`: each time a
    /// value, [`Timespec::NOW`] or [`Timespec::OMIT`]; `follow` false sets
    /// a symbolic link's own times.
    fn utimens(
        &self,
        path: impl AsRef<[u8]>,
        t: [Timespec; 2],
        follow: bool,
    ) -> Result<(), Self::Error> {
        let p = cpath(path.as_ref())?;
        let b = encode_times(t);
        let flag = if follow { 0 } else { AT_SYMLINK_NOFOLLOW };
        let args = [int(AT_FDCWD), a(&p), a(&b), int(flag)];
        // SAFETY: the kernel reads the path and the two timespecs.
        unsafe { self.call(SYS_UTIMENSAT, &args, &mut [Region::In(&p), Region::In(&b)]) }?;
        Ok(())
    }

    /// `futimens(2)`: [`Syscalls::utimens`] of an open file.
    fn futimens(&self, fd: i32, t: [Timespec; 2]) -> Result<(), Self::Error> {
        let b = encode_times(t);
        // SAFETY: the kernel reads the two timespecs.
        unsafe { self.call(SYS_FUTIMENS, &[int(fd), a(&b)], &mut [Region::In(&b)]) }?;
        Ok(())
    }

    /// `__utimes50(path, tv)`: access and modification times (to the
    /// microsecond); `None` sets both to now.
    fn utimes(&self, path: impl AsRef<[u8]>, tv: Option<[Timespec; 2]>) -> Result<(), Self::Error> {
        let p = cpath(path.as_ref())?;
        match tv {
            // SAFETY: the kernel reads the path only.
            None => unsafe { self.call(SYS_UTIMES, &[a(&p), 0], &mut [Region::In(&p)]) }?,
            Some(tv) => {
                let b = encode_timevals(tv);
                // SAFETY: the kernel reads the path and the two timevals.
                unsafe {
                    self.call(
                        SYS_UTIMES,
                        &[a(&p), a(&b)],
                        &mut [Region::In(&p), Region::In(&b)],
                    )
                }?
            }
        };
        Ok(())
    }

    /// `truncate(2)`: set the size of `path` (extending with a hole).
    fn truncate(&self, path: impl AsRef<[u8]>, len: i64) -> Result<(), Self::Error> {
        self.call_path(SYS_TRUNCATE, path.as_ref(), &[0, len as u64])
            .map(|_| ())
    }

    /// `statvfs1(path, buf, ST_WAIT)`: totals of the file system holding
    /// `path`.
    fn statvfs(&self, path: impl AsRef<[u8]>) -> Result<Statvfs, Self::Error> {
        let p = cpath(path.as_ref())?;
        let mut b = vec![0u8; STATVFS_SIZE];
        let args = [a(&p), a(&b), int(ST_WAIT)];
        // SAFETY: the kernel reads the path and writes one `struct
        // statvfs`, the buffer's size.
        unsafe {
            self.call(
                SYS_STATVFS1,
                &args,
                &mut [Region::In(&p), Region::Out(&mut b)],
            )
        }?;
        Ok(Statvfs::decode(&b).ok_or(Errno(EFAULT))?)
    }

    /// `fstatvfs1(2)`: [`Syscalls::statvfs`] of an open file's file system.
    fn fstatvfs(&self, fd: i32) -> Result<Statvfs, Self::Error> {
        let mut b = vec![0u8; STATVFS_SIZE];
        let args = [int(fd), a(&b), int(ST_WAIT)];
        // SAFETY: the kernel writes one `struct statvfs`.
        unsafe { self.call(SYS_FSTATVFS1, &args, &mut [Region::Out(&mut b)]) }?;
        Ok(Statvfs::decode(&b).ok_or(Errno(EFAULT))?)
    }

    // ----- names -----

    /// `mkdir(2)` (the umask applies).
    fn mkdir(&self, path: impl AsRef<[u8]>, mode: u32) -> Result<(), Self::Error> {
        self.call_path(SYS_MKDIR, path.as_ref(), &[mode as u64])
            .map(|_| ())
    }

    /// `mkdirat(2)`.
    fn mkdirat(&self, dirfd: i32, path: impl AsRef<[u8]>, mode: u32) -> Result<(), Self::Error> {
        self.call_at(SYS_MKDIRAT, dirfd, path.as_ref(), &[mode as u64])
            .map(|_| ())
    }

    /// `rmdir(2)`: remove an empty directory.
    fn rmdir(&self, path: impl AsRef<[u8]>) -> Result<(), Self::Error> {
        self.call_path(SYS_RMDIR, path.as_ref(), &[]).map(|_| ())
    }

    /// `unlink(2)`: remove a name (not a directory).
    fn unlink(&self, path: impl AsRef<[u8]>) -> Result<(), Self::Error> {
        self.call_path(SYS_UNLINK, path.as_ref(), &[]).map(|_| ())
    }

    /// `unlinkat(2)` (`AT_REMOVEDIR` in `flag`: as `rmdir`).
    fn unlinkat(&self, dirfd: i32, path: impl AsRef<[u8]>, flag: i32) -> Result<(), Self::Error> {
        self.call_at(SYS_UNLINKAT, dirfd, path.as_ref(), &[int(flag)])
            .map(|_| ())
    }

    /// `rename(2)` `from` to `to`, replacing a compatible `to`.
    fn rename(&self, from: impl AsRef<[u8]>, to: impl AsRef<[u8]>) -> Result<(), Self::Error> {
        self.call_two_paths(SYS_RENAME, from.as_ref(), to.as_ref())
    }

    /// `renameat(2)`: each path relative to its directory descriptor.
    fn renameat(
        &self,
        fromfd: i32,
        from: impl AsRef<[u8]>,
        tofd: i32,
        to: impl AsRef<[u8]>,
    ) -> Result<(), Self::Error> {
        let (f, t) = (cpath(from.as_ref())?, cpath(to.as_ref())?);
        let args = [int(fromfd), a(&f), int(tofd), a(&t)];
        // SAFETY: the kernel reads the two paths.
        unsafe { self.call(SYS_RENAMEAT, &args, &mut [Region::In(&f), Region::In(&t)]) }?;
        Ok(())
    }

    /// `link(2)`: a new name `to` for `from`.
    fn link(&self, from: impl AsRef<[u8]>, to: impl AsRef<[u8]>) -> Result<(), Self::Error> {
        self.call_two_paths(SYS_LINK, from.as_ref(), to.as_ref())
    }

    /// `linkat(2)`: `AT_SYMLINK_FOLLOW` in `flags` follows a symbolic
    /// link `from`.
    fn linkat(
        &self,
        fd1: i32,
        from: impl AsRef<[u8]>,
        fd2: i32,
        to: impl AsRef<[u8]>,
        flags: i32,
    ) -> Result<(), Self::Error> {
        let (f, t) = (cpath(from.as_ref())?, cpath(to.as_ref())?);
        let args = [int(fd1), a(&f), int(fd2), a(&t), int(flags)];
        // SAFETY: the kernel reads the two paths.
        unsafe { self.call(SYS_LINKAT, &args, &mut [Region::In(&f), Region::In(&t)]) }?;
        Ok(())
    }

    /// `symlink(2)`: a link at `path` pointing to `target`.
    fn symlink(&self, target: impl AsRef<[u8]>, path: impl AsRef<[u8]>) -> Result<(), Self::Error> {
        self.call_two_paths(SYS_SYMLINK, target.as_ref(), path.as_ref())
    }

    /// `symlinkat(2)`: a link at `path` (relative to `dirfd`) to `target`.
    fn symlinkat(
        &self,
        target: impl AsRef<[u8]>,
        dirfd: i32,
        path: impl AsRef<[u8]>,
    ) -> Result<(), Self::Error> {
        let (t, p) = (cpath(target.as_ref())?, cpath(path.as_ref())?);
        let args = [a(&t), int(dirfd), a(&p)];
        // SAFETY: the kernel reads the two paths.
        unsafe { self.call(SYS_SYMLINKAT, &args, &mut [Region::In(&t), Region::In(&p)]) }?;
        Ok(())
    }

    /// `readlink(2)`: the link's target.
    fn readlink(&self, path: impl AsRef<[u8]>) -> Result<Vec<u8>, Self::Error> {
        let p = cpath(path.as_ref())?;
        let mut buf = vec![0u8; MAXPATHLEN];
        let args = [a(&p), a(&buf), buf.len() as u64];
        // SAFETY: the kernel reads the path and writes at most the
        // buffer's length.
        let n = unsafe {
            self.call(
                SYS_READLINK,
                &args,
                &mut [Region::In(&p), Region::Out(&mut buf)],
            )
        }?[0] as usize;
        buf.truncate(n.min(MAXPATHLEN));
        Ok(buf)
    }

    /// `readlinkat(2)`.
    fn readlinkat(&self, dirfd: i32, path: impl AsRef<[u8]>) -> Result<Vec<u8>, Self::Error> {
        let p = cpath(path.as_ref())?;
        let mut buf = vec![0u8; MAXPATHLEN];
        let args = [int(dirfd), a(&p), a(&buf), buf.len() as u64];
        // SAFETY: the kernel reads the path and writes at most the
        // buffer's length.
        let n = unsafe {
            self.call(
                SYS_READLINKAT,
                &args,
                &mut [Region::In(&p), Region::Out(&mut buf)],
            )
        }?[0] as usize;
        buf.truncate(n.min(MAXPATHLEN));
        Ok(buf)
    }

    /// `mknod(2)`: a node of the type and permissions in `mode`, device
    /// number `dev` (NetBSD's refuses FIFOs: [`Syscalls::mkfifo`]).
    fn mknod(&self, path: impl AsRef<[u8]>, mode: u32, dev: u64) -> Result<(), Self::Error> {
        self.call_path(SYS_MKNOD, path.as_ref(), &[mode as u64, dev])
            .map(|_| ())
    }

    /// `mkfifo(2)`: a named pipe at `path`.
    fn mkfifo(&self, path: impl AsRef<[u8]>, mode: u32) -> Result<(), Self::Error> {
        self.call_path(SYS_MKFIFO, path.as_ref(), &[mode as u64])
            .map(|_| ())
    }

    // ----- directories -----

    /// `chdir(2)`.
    fn chdir(&self, path: impl AsRef<[u8]>) -> Result<(), Self::Error> {
        self.call_path(SYS_CHDIR, path.as_ref(), &[]).map(|_| ())
    }

    /// `fchdir(2)`.
    fn fchdir(&self, fd: i32) -> Result<(), Self::Error> {
        self.call_plain(SYS_FCHDIR, &[int(fd)]).map(|_| ())
    }

    /// `__getcwd(2)`: the current directory's path.
    fn getcwd(&self) -> Result<Vec<u8>, Self::Error> {
        let mut buf = vec![0u8; MAXPATHLEN * 4];
        let args = [a(&buf), buf.len() as u64];
        // SAFETY: the kernel writes at most the buffer's length.
        unsafe { self.call(SYS___GETCWD, &args, &mut [Region::Out(&mut buf)]) }?;
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        buf.truncate(end);
        Ok(buf)
    }

    /// One `getdents(2)` into `buf`: the bytes filled (0 at the end).
    fn getdents_raw(&self, fd: i32, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let args = [int(fd), a(buf), buf.len() as u64];
        // SAFETY: the kernel writes at most `buf.len()` bytes at `buf`.
        let n = unsafe { self.call(SYS_GETDENTS, &args, &mut [Region::Out(buf)]) }?[0];
        Ok((n as usize).min(buf.len()))
    }

    /// One `getdents(2)` of up to `bufsize` bytes: the entries it returned
    /// (none at the end of the directory).
    fn getdents(&self, fd: i32, bufsize: usize) -> Result<Vec<Dirent>, Self::Error> {
        let mut buf = vec![0u8; bufsize.max(512)];
        let n = self.getdents_raw(fd, &mut buf)?;
        Ok(Dirent::decode_all(&buf[..n]))
    }

    /// Every entry of directory `path` ("." and ".." included): open,
    /// `getdents` to the end, close.
    fn read_dir(&self, path: impl AsRef<[u8]>) -> Result<Vec<Dirent>, Self::Error> {
        let fd = self.open(path, O_RDONLY | O_DIRECTORY, 0)?;
        let mut all = Vec::new();
        let mut buf = vec![0u8; 64 << 10];
        let r = loop {
            match self.getdents_raw(fd, &mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => all.extend(Dirent::decode_all(&buf[..n])),
                Err(e) => break Err(e),
            }
        };
        let c = self.close(fd);
        r?;
        c?;
        Ok(all)
    }

    // ----- the *at family -----

    /// `openat(2)`: [`Syscalls::open`] relative to `dirfd` (or `AT_FDCWD`).
    fn openat(
        &self,
        dirfd: i32,
        path: impl AsRef<[u8]>,
        flags: i32,
        mode: u32,
    ) -> Result<i32, Self::Error> {
        Ok(self.call_at(SYS_OPENAT, dirfd, path.as_ref(), &[int(flags), mode as u64])?[0] as i32)
    }

    // ----- file systems -----

    /// `mount(2)` of a file system whose argument structure is NetBSD's
    /// `struct ufs_args { char *fspec; }` (ext2fs, ffs, lfs): the device
    /// `fspec` (a drive key) on `dir`.
    fn mount_ufs(
        &self,
        fstype: &str,
        dir: impl AsRef<[u8]>,
        flags: i32,
        fspec: impl AsRef<[u8]>,
    ) -> Result<(), Self::Error> {
        let t = cpath(fstype.as_bytes())?;
        let d = cpath(dir.as_ref())?;
        let spec = cpath(fspec.as_ref())?;
        let ufs_args = a(&spec).to_le_bytes();
        let args = [a(&t), a(&d), int(flags), a(&ufs_args), 8];
        // SAFETY: the kernel reads the type and the directory, the 8-byte
        // argument structure and the string its one pointer points at.
        unsafe {
            self.call(
                SYS_MOUNT,
                &args,
                &mut [
                    Region::In(&t),
                    Region::In(&d),
                    Region::In(&ufs_args),
                    Region::In(&spec),
                ],
            )
        }?;
        Ok(())
    }

    /// Mount the ext2 file system on the drive `fspec` at `dir`
    /// ([`Syscalls::mount_ufs`] of type `ext2fs`).
    fn mount_ext2(
        &self,
        dir: impl AsRef<[u8]>,
        flags: i32,
        fspec: impl AsRef<[u8]>,
    ) -> Result<(), Self::Error> {
        self.mount_ufs(MOUNT_EXT2FS, dir, flags, fspec)
    }

    /// `unmount(2)`: flush and detach the file system mounted on `dir`
    /// (`MNT_FORCE` in `flags`: even when busy).
    fn unmount(&self, dir: impl AsRef<[u8]>, flags: i32) -> Result<(), Self::Error> {
        self.call_path(SYS_UNMOUNT, dir.as_ref(), &[int(flags)])
            .map(|_| ())
    }

    // ----- sysctl -----

    /// `__sysctl(name)`: the node's value (sized by asking first, and
    /// asked again if it grew meanwhile).
    fn sysctl(&self, name: &[i32]) -> Result<Vec<u8>, Self::Error> {
        let nb: Vec<u8> = name.iter().flat_map(|x| x.to_le_bytes()).collect();
        let mut lenb = 0u64.to_le_bytes();
        let args = [a(&nb), name.len() as u64, 0, a(&lenb), 0, 0];
        // SAFETY: the kernel reads the name and reads and writes the
        // 8-byte length.
        let size = match unsafe {
            self.call(
                SYS___SYSCTL,
                &args,
                &mut [Region::In(&nb), Region::InOut(&mut lenb)],
            )
        } {
            Ok(_) => u64::from_le_bytes(lenb) as usize,
            Err(_) => 1024,
        };
        let mut want = size.clamp(16, 1 << 24);
        for _ in 0..4 {
            match self.sysctl_sized(name, want) {
                Err(e) if e.errno() == Errno(ENOMEM) => want *= 4,
                r => return r,
            }
        }
        Err(Errno(ENOMEM).into())
    }

    /// `__sysctl(name)` into a buffer of `cap` bytes: the value, or
    /// `ENOMEM` when it does not fit.
    fn sysctl_sized(&self, name: &[i32], cap: usize) -> Result<Vec<u8>, Self::Error> {
        let nb: Vec<u8> = name.iter().flat_map(|x| x.to_le_bytes()).collect();
        let mut buf = vec![0u8; cap];
        let mut lenb = (cap as u64).to_le_bytes();
        let args = [a(&nb), name.len() as u64, a(&buf), a(&lenb), 0, 0];
        // SAFETY: the kernel reads the name, reads and writes the 8-byte
        // length and writes at most the length it was given, the buffer's.
        unsafe {
            self.call(
                SYS___SYSCTL,
                &args,
                &mut [
                    Region::In(&nb),
                    Region::Out(&mut buf),
                    Region::InOut(&mut lenb),
                ],
            )
        }?;
        let n = u64::from_le_bytes(lenb) as usize;
        buf.truncate(n.min(cap));
        Ok(buf)
    }

    /// `__sysctl(name, NULL, NULL, new)`: set a node's value (an `int`
    /// node takes 4 bytes, a string its bytes).
    fn sysctl_write(&self, name: &[i32], new: &[u8]) -> Result<(), Self::Error> {
        let nb: Vec<u8> = name.iter().flat_map(|x| x.to_le_bytes()).collect();
        let args = [a(&nb), name.len() as u64, 0, 0, a(new), new.len() as u64];
        // SAFETY: the kernel reads the name and the new value.
        unsafe { self.call(SYS___SYSCTL, &args, &mut [Region::In(&nb), Region::In(new)]) }?;
        Ok(())
    }

    // ----- conveniences -----

    /// Read a whole file.
    fn read_file(&self, path: impl AsRef<[u8]>) -> Result<Vec<u8>, Self::Error> {
        let fd = self.open(path, O_RDONLY, 0)?;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65536];
        let r = loop {
            match self.read(fd, &mut buf) {
                Ok(0) => break Ok(out),
                Ok(n) => out.extend_from_slice(&buf[..n.min(buf.len())]),
                Err(e) => break Err(e),
            }
        };
        let _ = self.close(fd);
        r
    }

    /// Create or replace a file (mode 0644 less the umask) with `data`.
    fn write_file(&self, path: impl AsRef<[u8]>, data: &[u8]) -> Result<(), Self::Error> {
        let fd = self.open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)?;
        let r = self.write(fd, data);
        let c = self.close(fd);
        match r {
            Ok(n) if n == data.len() => c,
            Ok(_) => Err(Errno(EIO).into()),
            Err(e) => Err(e),
        }
    }
}

/// `stat`/`lstat` of `path`.
fn stat_path<S: Syscalls + ?Sized>(s: &S, num: i32, path: &[u8]) -> Result<Stat, S::Error> {
    let p = cpath(path)?;
    let mut b = [0u8; STAT_SIZE];
    let args = [a(&p), a(&b)];
    // SAFETY: the kernel reads the path and writes one `struct stat`, the
    // buffer's size.
    unsafe { s.call(num, &args, &mut [Region::In(&p), Region::Out(&mut b)]) }?;
    Ok(Stat::decode(&b).ok_or(Errno(EFAULT))?)
}

/// A way in whose failures are told as NetBSD errno values only (what a
/// caller that answers with an errno, as the FUSE adapter does, needs):
/// every typed call of `S`, each error reduced to [`SysError::errno`].
#[derive(Debug)]
pub struct AsErrno<S>(pub S);

impl<S: Syscalls> Syscalls for AsErrno<S> {
    type Error = Errno;

    unsafe fn call(
        &self,
        num: i32,
        args: &[u64],
        mem: &mut [Region<'_>],
    ) -> Result<[i64; 2], Errno> {
        // SAFETY: the caller's guarantee, passed on unchanged.
        unsafe { self.0.call(num, args, mem) }.map_err(|e| e.errno())
    }
}
