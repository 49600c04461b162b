//! Typed wrappers for the calls real programs need beyond the first
//! table: credentials, attributes, descriptors, vectored I/O, `*at`.

use netbsd_abi::errno::*;
use netbsd_abi::fcntl::AT_FDCWD;
use netbsd_abi::stat::{Stat, Timespec, STAT_SIZE, UTIME_NOW, UTIME_OMIT};
use netbsd_abi::statvfs::{Statvfs, STATVFS_SIZE};
use netbsd_abi::syscall::*;
use netbsd_abi::Errno;

use super::{cstr, ptr, LocalProc};

/// A time for [`LocalProc::utimens`]: `None` leaves it, `Some(None)` is now.
pub type TimeArg = Option<Option<Timespec>>;

fn times(t: [TimeArg; 2]) -> [u8; 32] {
    let mut b = [0u8; 32];
    for (i, x) in t.iter().enumerate() {
        let ts = match x {
            None => Timespec { sec: 0, nsec: UTIME_OMIT },
            Some(None) => Timespec { sec: 0, nsec: UTIME_NOW },
            Some(Some(ts)) => *ts,
        };
        b[i * 16..i * 16 + 16].copy_from_slice(&ts.encode());
    }
    b
}

impl LocalProc {
    fn at(&self, num: i32, args: &[u64]) -> Result<i64, Errno> {
        Ok(self.call(num, args)?[0])
    }

    pub fn getuid(&self) -> Result<u32, Errno> {
        Ok(self.at(SYS_GETUID, &[])? as u32)
    }

    pub fn getgid(&self) -> Result<u32, Errno> {
        Ok(self.at(SYS_GETGID, &[])? as u32)
    }

    /// `umask(mask)`: the previous mask.
    pub fn umask(&self, mask: u32) -> Result<u32, Errno> {
        Ok(self.at(SYS_UMASK, &[mask as u64])? as u32)
    }

    pub fn access(&self, path: &str, amode: i32) -> Result<(), Errno> {
        let p = cstr(path)?;
        self.at(SYS_ACCESS, &[ptr(p.as_ptr()), amode as u32 as u64]).map(|_| ())
    }

    /// chown (`follow`) or lchown; `u32::MAX` leaves a field alone.
    pub fn chown(&self, path: &str, uid: u32, gid: u32, follow: bool) -> Result<(), Errno> {
        let p = cstr(path)?;
        let num = if follow { SYS_CHOWN } else { SYS_LCHOWN };
        self.at(num, &[ptr(p.as_ptr()), uid as u64, gid as u64]).map(|_| ())
    }

    pub fn fchown(&self, fd: i32, uid: u32, gid: u32) -> Result<(), Errno> {
        self.at(SYS_FCHOWN, &[fd as u32 as u64, uid as u64, gid as u64]).map(|_| ())
    }

    pub fn lchmod(&self, path: &str, mode: u32) -> Result<(), Errno> {
        let p = cstr(path)?;
        self.at(SYS_LCHMOD, &[ptr(p.as_ptr()), mode as u64]).map(|_| ())
    }

    /// `utimensat(AT_FDCWD, path, [atime, mtime], follow ? 0 : NOFOLLOW)`.
    pub fn utimens(&self, path: &str, t: [TimeArg; 2], follow: bool) -> Result<(), Errno> {
        let p = cstr(path)?;
        let b = times(t);
        let flag = if follow { 0 } else { netbsd_abi::fcntl::AT_SYMLINK_NOFOLLOW };
        self.at(SYS_UTIMENSAT, &[AT_FDCWD as u32 as u64, ptr(p.as_ptr()), ptr(b.as_ptr()), flag as u64]).map(|_| ())
    }

    pub fn futimens(&self, fd: i32, t: [TimeArg; 2]) -> Result<(), Errno> {
        let b = times(t);
        self.at(SYS_FUTIMENS, &[fd as u32 as u64, ptr(b.as_ptr())]).map(|_| ())
    }

    /// `__utimes50(path, tv)`; `None` is now.
    pub fn utimes(&self, path: &str, tv: Option<[Timespec; 2]>) -> Result<(), Errno> {
        let p = cstr(path)?;
        let mut b = [0u8; 32];
        if let Some(tv) = tv {
            b[..16].copy_from_slice(&tv[0].encode_timeval());
            b[16..].copy_from_slice(&tv[1].encode_timeval());
        }
        let tp = if tv.is_some() { ptr(b.as_ptr()) } else { 0 };
        self.at(SYS_UTIMES, &[ptr(p.as_ptr()), tp]).map(|_| ())
    }

    pub fn truncate(&self, path: &str, len: i64) -> Result<(), Errno> {
        let p = cstr(path)?;
        self.at(SYS_TRUNCATE, &[ptr(p.as_ptr()), 0, len as u64]).map(|_| ())
    }

    pub fn statvfs(&self, path: &str) -> Result<Statvfs, Errno> {
        let p = cstr(path)?;
        let mut b = vec![0u8; STATVFS_SIZE];
        self.at(SYS_STATVFS1, &[ptr(p.as_ptr()), ptr(b.as_mut_ptr()), netbsd_abi::fcntl::ST_WAIT as u64])?;
        Statvfs::decode(&b).ok_or(Errno(EFAULT))
    }

    pub fn fstatvfs(&self, fd: i32) -> Result<Statvfs, Errno> {
        let mut b = vec![0u8; STATVFS_SIZE];
        self.at(SYS_FSTATVFS1, &[fd as u32 as u64, ptr(b.as_mut_ptr()), netbsd_abi::fcntl::ST_WAIT as u64])?;
        Statvfs::decode(&b).ok_or(Errno(EFAULT))
    }

    pub fn dup(&self, fd: i32) -> Result<i32, Errno> {
        Ok(self.at(SYS_DUP, &[fd as u32 as u64])? as i32)
    }

    pub fn dup2(&self, from: i32, to: i32) -> Result<i32, Errno> {
        Ok(self.at(SYS_DUP2, &[from as u32 as u64, to as u32 as u64])? as i32)
    }

    pub fn dup3(&self, from: i32, to: i32, flags: i32) -> Result<i32, Errno> {
        Ok(self.at(SYS_DUP3, &[from as u32 as u64, to as u32 as u64, flags as u32 as u64])? as i32)
    }

    pub fn fcntl(&self, fd: i32, cmd: i32, arg: i64) -> Result<i64, Errno> {
        self.at(SYS_FCNTL, &[fd as u32 as u64, cmd as u32 as u64, arg as u64])
    }

    pub fn fsync_range(&self, fd: i32, flags: i32, start: i64, len: i64) -> Result<(), Errno> {
        self.at(SYS_FSYNC_RANGE, &[fd as u32 as u64, flags as u32 as u64, start as u64, len as u64]).map(|_| ())
    }

    /// `mknod(path, mode, dev)`.
    pub fn mknod(&self, path: &str, mode: u32, dev: u64) -> Result<(), Errno> {
        let p = cstr(path)?;
        self.at(SYS_MKNOD, &[ptr(p.as_ptr()), mode as u64, dev]).map(|_| ())
    }

    pub fn mkfifo(&self, path: &str, mode: u32) -> Result<(), Errno> {
        let p = cstr(path)?;
        self.at(SYS_MKFIFO, &[ptr(p.as_ptr()), mode as u64]).map(|_| ())
    }

    /// `preadv(fd, bufs, off)`.
    pub fn preadv(&self, fd: i32, bufs: &mut [&mut [u8]], off: i64) -> Result<usize, Errno> {
        let iov: Vec<u64> = bufs.iter_mut().flat_map(|b| [ptr(b.as_mut_ptr()), b.len() as u64]).collect();
        Ok(self.at(SYS_PREADV, &[fd as u32 as u64, ptr(iov.as_ptr()), bufs.len() as u64, 0, off as u64])? as usize)
    }

    /// `writev(fd, bufs)`.
    pub fn writev(&self, fd: i32, bufs: &[&[u8]]) -> Result<usize, Errno> {
        let iov: Vec<u64> = bufs.iter().flat_map(|b| [ptr(b.as_ptr()), b.len() as u64]).collect();
        Ok(self.at(SYS_WRITEV, &[fd as u32 as u64, ptr(iov.as_ptr()), bufs.len() as u64])? as usize)
    }

    pub fn openat(&self, dirfd: i32, path: &str, flags: i32, mode: u32) -> Result<i32, Errno> {
        let p = cstr(path)?;
        Ok(self.at(SYS_OPENAT, &[dirfd as u32 as u64, ptr(p.as_ptr()), flags as u32 as u64, mode as u64])? as i32)
    }

    pub fn mkdirat(&self, dirfd: i32, path: &str, mode: u32) -> Result<(), Errno> {
        let p = cstr(path)?;
        self.at(SYS_MKDIRAT, &[dirfd as u32 as u64, ptr(p.as_ptr()), mode as u64]).map(|_| ())
    }

    pub fn unlinkat(&self, dirfd: i32, path: &str, flag: i32) -> Result<(), Errno> {
        let p = cstr(path)?;
        self.at(SYS_UNLINKAT, &[dirfd as u32 as u64, ptr(p.as_ptr()), flag as u32 as u64]).map(|_| ())
    }

    pub fn renameat(&self, fromfd: i32, from: &str, tofd: i32, to: &str) -> Result<(), Errno> {
        let (f, t) = (cstr(from)?, cstr(to)?);
        self.at(SYS_RENAMEAT, &[fromfd as u32 as u64, ptr(f.as_ptr()), tofd as u32 as u64, ptr(t.as_ptr())]).map(|_| ())
    }

    pub fn linkat(&self, fd1: i32, from: &str, fd2: i32, to: &str, flags: i32) -> Result<(), Errno> {
        let (f, t) = (cstr(from)?, cstr(to)?);
        self.at(SYS_LINKAT, &[fd1 as u32 as u64, ptr(f.as_ptr()), fd2 as u32 as u64, ptr(t.as_ptr()), flags as u32 as u64])
            .map(|_| ())
    }

    pub fn symlinkat(&self, target: &str, dirfd: i32, path: &str) -> Result<(), Errno> {
        let (t, p) = (cstr(target)?, cstr(path)?);
        self.at(SYS_SYMLINKAT, &[ptr(t.as_ptr()), dirfd as u32 as u64, ptr(p.as_ptr())]).map(|_| ())
    }

    pub fn readlinkat(&self, dirfd: i32, path: &str) -> Result<Vec<u8>, Errno> {
        let p = cstr(path)?;
        let mut buf = vec![0u8; crate::namei::MAXPATHLEN];
        let n = self.at(SYS_READLINKAT, &[dirfd as u32 as u64, ptr(p.as_ptr()), ptr(buf.as_mut_ptr()), buf.len() as u64])?;
        buf.truncate(n as usize);
        Ok(buf)
    }

    pub fn fchmodat(&self, dirfd: i32, path: &str, mode: u32, flag: i32) -> Result<(), Errno> {
        let p = cstr(path)?;
        self.at(SYS_FCHMODAT, &[dirfd as u32 as u64, ptr(p.as_ptr()), mode as u64, flag as u32 as u64]).map(|_| ())
    }

    pub fn fchownat(&self, dirfd: i32, path: &str, uid: u32, gid: u32, flag: i32) -> Result<(), Errno> {
        let p = cstr(path)?;
        self.at(SYS_FCHOWNAT, &[dirfd as u32 as u64, ptr(p.as_ptr()), uid as u64, gid as u64, flag as u32 as u64])
            .map(|_| ())
    }

    pub fn fstatat(&self, dirfd: i32, path: &str, flag: i32) -> Result<Stat, Errno> {
        let p = cstr(path)?;
        let mut b = [0u8; STAT_SIZE];
        self.at(SYS_FSTATAT, &[dirfd as u32 as u64, ptr(p.as_ptr()), ptr(b.as_mut_ptr()), flag as u32 as u64])?;
        Stat::decode(&b).ok_or(Errno(EFAULT))
    }

    pub fn faccessat(&self, dirfd: i32, path: &str, amode: i32, flag: i32) -> Result<(), Errno> {
        let p = cstr(path)?;
        self.at(SYS_FACCESSAT, &[dirfd as u32 as u64, ptr(p.as_ptr()), amode as u32 as u64, flag as u32 as u64])
            .map(|_| ())
    }
}
