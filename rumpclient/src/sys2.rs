//! Typed wrappers for the attribute, credential, descriptor, vectored-I/O
//! and `*at` calls (NetBSD numbers and layouts, amd64).

use netbsd_abi::errno::{Errno, EFAULT};
use netbsd_abi::fcntl::{AT_FDCWD, AT_SYMLINK_NOFOLLOW, ST_WAIT};
use netbsd_abi::stat::{Stat, Timespec, STAT_SIZE, UTIME_NOW, UTIME_OMIT};
use netbsd_abi::statvfs::{Statvfs, STATVFS_SIZE};
use netbsd_abi::syscall::*;

use crate::client::{Client, Region};
use crate::error::Error;
use crate::sys::{a, cpath};

/// One time for [`Client::utimens`]: leave it, set it to now, or a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeSpec {
    /// Leave this time as it is (`UTIME_OMIT`).
    Omit,
    /// Set it to the kernel's current time (`UTIME_NOW`).
    Now,
    /// Set it to this time.
    At(Timespec),
}

fn times(t: [TimeSpec; 2]) -> [u8; 32] {
    let mut b = [0u8; 32];
    for (i, x) in t.iter().enumerate() {
        let ts = match x {
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

impl Client {
    fn p1(&self, num: i32, path: &[u8], rest: &[u64]) -> Result<[i64; 2], Error> {
        let p = cpath(path)?;
        let mut args = vec![a(&p)];
        args.extend_from_slice(rest);
        self.syscall(num, &args, &mut [Region::In(&p)])
    }

    /// `dirfd, path, rest...` calls.
    fn at1(&self, num: i32, dirfd: i32, path: &[u8], rest: &[u64]) -> Result<[i64; 2], Error> {
        let p = cpath(path)?;
        let mut args = vec![dirfd as u32 as u64, a(&p)];
        args.extend_from_slice(rest);
        self.syscall(num, &args, &mut [Region::In(&p)])
    }

    /// `getuid_with_euid`: (uid, euid).
    pub fn getuid(&self) -> Result<(u32, u32), Error> {
        let r = self.syscall(SYS_GETUID, &[], &mut [])?;
        Ok((r[0] as u32, r[1] as u32))
    }

    /// `getgid_with_egid`: (gid, egid).
    pub fn getgid(&self) -> Result<(u32, u32), Error> {
        let r = self.syscall(SYS_GETGID, &[], &mut [])?;
        Ok((r[0] as u32, r[1] as u32))
    }

    /// `umask(mask)`: the previous mask.
    pub fn umask(&self, mask: u32) -> Result<u32, Error> {
        Ok(self.syscall(SYS_UMASK, &[mask as u64], &mut [])?[0] as u32)
    }

    /// `access(path, amode)` with `R_OK`/`W_OK`/`X_OK`/`F_OK`.
    pub fn access(&self, path: impl AsRef<[u8]>, amode: i32) -> Result<(), Error> {
        self.p1(SYS_ACCESS, path.as_ref(), &[amode as u32 as u64])
            .map(|_| ())
    }

    /// `chown(path, uid, gid)`; `u32::MAX` leaves a field alone.
    pub fn chown(&self, path: impl AsRef<[u8]>, uid: u32, gid: u32) -> Result<(), Error> {
        self.p1(SYS_CHOWN, path.as_ref(), &[uid as u64, gid as u64])
            .map(|_| ())
    }

    /// `lchown(path, uid, gid)`: a symbolic link itself.
    pub fn lchown(&self, path: impl AsRef<[u8]>, uid: u32, gid: u32) -> Result<(), Error> {
        self.p1(SYS_LCHOWN, path.as_ref(), &[uid as u64, gid as u64])
            .map(|_| ())
    }

    /// `fchown(2)`: change the owner and group of the file open as `fd` (`u32::MAX` leaves one alone).
    pub fn fchown(&self, fd: i32, uid: u32, gid: u32) -> Result<(), Error> {
        self.syscall(
            SYS_FCHOWN,
            &[fd as u32 as u64, uid as u64, gid as u64],
            &mut [],
        )
        .map(|_| ())
    }

    /// `lchmod(2)`: set the permission bits of `path` itself, not following a symbolic link.
    pub fn lchmod(&self, path: impl AsRef<[u8]>, mode: u32) -> Result<(), Error> {
        self.p1(SYS_LCHMOD, path.as_ref(), &[mode as u64])
            .map(|_| ())
    }

    /// `__utimes50(path, tv)`: access and modification times (microseconds
    /// kept); `None` sets both to now.
    pub fn utimes(&self, path: impl AsRef<[u8]>, tv: Option<[Timespec; 2]>) -> Result<(), Error> {
        let p = cpath(path.as_ref())?;
        match tv {
            None => self
                .syscall(SYS_UTIMES, &[a(&p), 0], &mut [Region::In(&p)])
                .map(|_| ()),
            Some(tv) => {
                let mut b = [0u8; 32];
                b[..16].copy_from_slice(&tv[0].encode_timeval());
                b[16..].copy_from_slice(&tv[1].encode_timeval());
                self.syscall(
                    SYS_UTIMES,
                    &[a(&p), a(&b)],
                    &mut [Region::In(&p), Region::In(&b)],
                )
                .map(|_| ())
            }
        }
    }

    /// `utimensat(AT_FDCWD, path, [atime, mtime], flag)`; `follow` false
    /// sets a symbolic link's own times.
    pub fn utimens(
        &self,
        path: impl AsRef<[u8]>,
        t: [TimeSpec; 2],
        follow: bool,
    ) -> Result<(), Error> {
        let p = cpath(path.as_ref())?;
        let b = times(t);
        let flag = if follow {
            0
        } else {
            AT_SYMLINK_NOFOLLOW as u64
        };
        let args = [AT_FDCWD as u32 as u64, a(&p), a(&b), flag];
        self.syscall(SYS_UTIMENSAT, &args, &mut [Region::In(&p), Region::In(&b)])
            .map(|_| ())
    }

    /// `futimens(2)`: set the access and modification times of the file open as `fd`.
    pub fn futimens(&self, fd: i32, t: [TimeSpec; 2]) -> Result<(), Error> {
        let b = times(t);
        self.syscall(
            SYS_FUTIMENS,
            &[fd as u32 as u64, a(&b)],
            &mut [Region::In(&b)],
        )
        .map(|_| ())
    }

    /// `truncate(2)`: set the size of `path` (extending with a hole).
    pub fn truncate(&self, path: impl AsRef<[u8]>, len: i64) -> Result<(), Error> {
        self.p1(SYS_TRUNCATE, path.as_ref(), &[0, len as u64])
            .map(|_| ())
    }

    /// `statvfs1(path, buf, ST_WAIT)`.
    pub fn statvfs(&self, path: impl AsRef<[u8]>) -> Result<Statvfs, Error> {
        let p = cpath(path.as_ref())?;
        let mut b = vec![0u8; STATVFS_SIZE];
        let args = [a(&p), a(&b), ST_WAIT as u64];
        self.syscall(
            SYS_STATVFS1,
            &args,
            &mut [Region::In(&p), Region::Out(&mut b)],
        )?;
        Statvfs::decode(&b).ok_or(Error::Errno(Errno(EFAULT)))
    }

    /// `fstatvfs1(2)`: totals of the file system holding the file open as `fd`.
    pub fn fstatvfs(&self, fd: i32) -> Result<Statvfs, Error> {
        let mut b = vec![0u8; STATVFS_SIZE];
        let args = [fd as u32 as u64, a(&b), ST_WAIT as u64];
        self.syscall(SYS_FSTATVFS1, &args, &mut [Region::Out(&mut b)])?;
        Statvfs::decode(&b).ok_or(Error::Errno(Errno(EFAULT)))
    }

    /// `dup(2)`: a new descriptor (the lowest free) for the file open as `fd`.
    pub fn dup(&self, fd: i32) -> Result<i32, Error> {
        Ok(self.syscall(SYS_DUP, &[fd as u32 as u64], &mut [])?[0] as i32)
    }

    /// `dup2(2)`: make descriptor `to` refer to `from`'s file (closing what `to` held); returns `to`.
    pub fn dup2(&self, from: i32, to: i32) -> Result<i32, Error> {
        Ok(self.syscall(SYS_DUP2, &[from as u32 as u64, to as u32 as u64], &mut [])?[0] as i32)
    }

    /// `fcntl(fd, cmd, arg)` for the integer commands (`F_DUPFD`,
    /// `F_GETFD`/`F_SETFD`, `F_GETFL`/`F_SETFL`).
    pub fn fcntl(&self, fd: i32, cmd: i32, arg: i64) -> Result<i64, Error> {
        Ok(self.syscall(
            SYS_FCNTL,
            &[fd as u32 as u64, cmd as u32 as u64, arg as u64],
            &mut [],
        )?[0])
    }

    /// `fsync_range(2)`: make `len` bytes from `start` durable; `flags` holds `FDATASYNC` or `FFILESYNC` (and may add `FDISKSYNC`).
    pub fn fsync_range(&self, fd: i32, flags: i32, start: i64, len: i64) -> Result<(), Error> {
        let args = [
            fd as u32 as u64,
            flags as u32 as u64,
            start as u64,
            len as u64,
        ];
        self.syscall(SYS_FSYNC_RANGE, &args, &mut []).map(|_| ())
    }

    /// `mknod(path, mode, dev)` (type bits in `mode`).
    pub fn mknod(&self, path: impl AsRef<[u8]>, mode: u32, dev: u64) -> Result<(), Error> {
        self.p1(SYS_MKNOD, path.as_ref(), &[mode as u64, dev])
            .map(|_| ())
    }

    /// `mkfifo(2)`: a named pipe at `path`.
    pub fn mkfifo(&self, path: impl AsRef<[u8]>, mode: u32) -> Result<(), Error> {
        self.p1(SYS_MKFIFO, path.as_ref(), &[mode as u64])
            .map(|_| ())
    }

    /// `writev(fd, bufs)`.
    pub fn writev(&self, fd: i32, bufs: &[&[u8]]) -> Result<usize, Error> {
        let iov: Vec<u8> = bufs
            .iter()
            .flat_map(|b| [a(b).to_le_bytes(), (b.len() as u64).to_le_bytes()])
            .flatten()
            .collect();
        let mut regions = vec![Region::In(&iov)];
        regions.extend(bufs.iter().map(|b| Region::In(b)));
        Ok(self.syscall(
            SYS_WRITEV,
            &[fd as u32 as u64, a(&iov), bufs.len() as u64],
            &mut regions,
        )?[0] as usize)
    }

    /// `preadv(fd, bufs, off)`.
    pub fn preadv(&self, fd: i32, bufs: &mut [&mut [u8]], off: i64) -> Result<usize, Error> {
        let iov: Vec<u8> = bufs
            .iter()
            .flat_map(|b| [a(b).to_le_bytes(), (b.len() as u64).to_le_bytes()])
            .flatten()
            .collect();
        let n = bufs.len() as u64;
        let mut regions = vec![Region::In(&iov)];
        regions.extend(bufs.iter_mut().map(|b| Region::Out(b)));
        Ok(self.syscall(
            SYS_PREADV,
            &[fd as u32 as u64, a(&iov), n, 0, off as u64],
            &mut regions,
        )?[0] as usize)
    }

    /// `openat(2)`: [`Client::open`] with a relative `path` taken from directory `dirfd` (or `AT_FDCWD`).
    pub fn openat(
        &self,
        dirfd: i32,
        path: impl AsRef<[u8]>,
        flags: i32,
        mode: u32,
    ) -> Result<i32, Error> {
        Ok(self.at1(
            SYS_OPENAT,
            dirfd,
            path.as_ref(),
            &[flags as u32 as u64, mode as u64],
        )?[0] as i32)
    }

    /// `mkdirat(2)`: [`Client::mkdir`] relative to `dirfd`.
    pub fn mkdirat(&self, dirfd: i32, path: impl AsRef<[u8]>, mode: u32) -> Result<(), Error> {
        self.at1(SYS_MKDIRAT, dirfd, path.as_ref(), &[mode as u64])
            .map(|_| ())
    }

    /// `unlinkat(dirfd, path, flag)`; `AT_REMOVEDIR` removes a directory.
    pub fn unlinkat(&self, dirfd: i32, path: impl AsRef<[u8]>, flag: i32) -> Result<(), Error> {
        self.at1(SYS_UNLINKAT, dirfd, path.as_ref(), &[flag as u32 as u64])
            .map(|_| ())
    }

    /// `renameat(2)`: [`Client::rename`] with each path relative to its directory descriptor.
    pub fn renameat(
        &self,
        fromfd: i32,
        from: impl AsRef<[u8]>,
        tofd: i32,
        to: impl AsRef<[u8]>,
    ) -> Result<(), Error> {
        let (f, t) = (cpath(from.as_ref())?, cpath(to.as_ref())?);
        let args = [fromfd as u32 as u64, a(&f), tofd as u32 as u64, a(&t)];
        self.syscall(SYS_RENAMEAT, &args, &mut [Region::In(&f), Region::In(&t)])
            .map(|_| ())
    }

    /// `linkat(2)`: a new name `to` (relative to `fd2`) for `from` (relative to `fd1`); `AT_SYMLINK_FOLLOW` in `flags` follows a symbolic link `from`.
    pub fn linkat(
        &self,
        fd1: i32,
        from: impl AsRef<[u8]>,
        fd2: i32,
        to: impl AsRef<[u8]>,
        flags: i32,
    ) -> Result<(), Error> {
        let (f, t) = (cpath(from.as_ref())?, cpath(to.as_ref())?);
        let args = [
            fd1 as u32 as u64,
            a(&f),
            fd2 as u32 as u64,
            a(&t),
            flags as u32 as u64,
        ];
        self.syscall(SYS_LINKAT, &args, &mut [Region::In(&f), Region::In(&t)])
            .map(|_| ())
    }

    /// `symlinkat(2)`: a symbolic link at `path` (relative to `dirfd`) pointing to `target`.
    pub fn symlinkat(
        &self,
        target: impl AsRef<[u8]>,
        dirfd: i32,
        path: impl AsRef<[u8]>,
    ) -> Result<(), Error> {
        let (t, p) = (cpath(target.as_ref())?, cpath(path.as_ref())?);
        let args = [a(&t), dirfd as u32 as u64, a(&p)];
        self.syscall(SYS_SYMLINKAT, &args, &mut [Region::In(&t), Region::In(&p)])
            .map(|_| ())
    }

    /// `readlinkat(2)`: the target of the symbolic link at `path` relative to `dirfd`.
    pub fn readlinkat(&self, dirfd: i32, path: impl AsRef<[u8]>) -> Result<Vec<u8>, Error> {
        let p = cpath(path.as_ref())?;
        let mut buf = vec![0u8; 1024];
        let args = [dirfd as u32 as u64, a(&p), a(&buf), buf.len() as u64];
        let n = self.syscall(
            SYS_READLINKAT,
            &args,
            &mut [Region::In(&p), Region::Out(&mut buf)],
        )?[0] as usize;
        buf.truncate(n);
        Ok(buf)
    }

    /// `fchmodat(2)`: [`Client::chmod`] relative to `dirfd`; `AT_SYMLINK_NOFOLLOW` in `flag` acts on a link itself.
    pub fn fchmodat(
        &self,
        dirfd: i32,
        path: impl AsRef<[u8]>,
        mode: u32,
        flag: i32,
    ) -> Result<(), Error> {
        self.at1(
            SYS_FCHMODAT,
            dirfd,
            path.as_ref(),
            &[mode as u64, flag as u32 as u64],
        )
        .map(|_| ())
    }

    /// `fchownat(2)`: change owner and group relative to `dirfd`; `AT_SYMLINK_NOFOLLOW` in `flag` acts on a link itself.
    pub fn fchownat(
        &self,
        dirfd: i32,
        path: impl AsRef<[u8]>,
        uid: u32,
        gid: u32,
        flag: i32,
    ) -> Result<(), Error> {
        self.at1(
            SYS_FCHOWNAT,
            dirfd,
            path.as_ref(),
            &[uid as u64, gid as u64, flag as u32 as u64],
        )
        .map(|_| ())
    }

    /// `fstatat(2)`: [`Client::stat`] relative to `dirfd`; `AT_SYMLINK_NOFOLLOW` in `flag` gives [`Client::lstat`]'s answer.
    pub fn fstatat(&self, dirfd: i32, path: impl AsRef<[u8]>, flag: i32) -> Result<Stat, Error> {
        let p = cpath(path.as_ref())?;
        let mut sb = [0u8; STAT_SIZE];
        let args = [dirfd as u32 as u64, a(&p), a(&sb), flag as u32 as u64];
        self.syscall(
            SYS_FSTATAT,
            &args,
            &mut [Region::In(&p), Region::Out(&mut sb)],
        )?;
        Stat::decode(&sb).ok_or(Error::Errno(Errno(EFAULT)))
    }

    /// `faccessat(2)`: may the caller access `path` (relative to `dirfd`) as `amode` asks (`R_OK`, `W_OK`, `X_OK`; 0 for existence)? `AT_EACCESS` in `flag` checks with the effective ids.
    pub fn faccessat(
        &self,
        dirfd: i32,
        path: impl AsRef<[u8]>,
        amode: i32,
        flag: i32,
    ) -> Result<(), Error> {
        self.at1(
            SYS_FACCESSAT,
            dirfd,
            path.as_ref(),
            &[amode as u32 as u64, flag as u32 as u64],
        )
        .map(|_| ())
    }
}
