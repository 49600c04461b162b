//! Typed wrappers for the calls real programs need beyond the first
//! table: credentials, attributes, descriptors, vectored I/O, `*at`.

use netbsd_abi::errno::*;
use netbsd_abi::fcntl::AT_FDCWD;
use netbsd_abi::stat::{Stat, Timespec, STAT_SIZE, UTIME_NOW, UTIME_OMIT};
use netbsd_abi::statvfs::{Statvfs, STATVFS_SIZE};
use netbsd_abi::syscall::*;
use netbsd_abi::Errno;

use super::{cstr, LocalProc};
use crate::copy::Lend;

/// A time for [`LocalProc::utimens`]: `None` leaves it, `Some(None)` is now.
pub type TimeArg = Option<Option<Timespec>>;

fn times(t: [TimeArg; 2]) -> [u8; 32] {
    let mut b = [0u8; 32];
    for (i, x) in t.iter().enumerate() {
        let ts = match x {
            None => Timespec {
                sec: 0,
                nsec: UTIME_OMIT,
            },
            Some(None) => Timespec {
                sec: 0,
                nsec: UTIME_NOW,
            },
            Some(Some(ts)) => *ts,
        };
        b[i * 16..i * 16 + 16].copy_from_slice(&ts.encode());
    }
    b
}

impl LocalProc {
    fn at(&self, num: i32, args: &[u64]) -> Result<i64, Errno> {
        self.at_lent(&Lend::new(), num, args)
    }

    fn at_lent(&self, l: &Lend<'_>, num: i32, args: &[u64]) -> Result<i64, Errno> {
        Ok(self.call_lent(l, num, args)?[0])
    }

    /// The real user id.
    pub fn getuid(&self) -> Result<u32, Errno> {
        Ok(self.at(SYS_GETUID, &[])? as u32)
    }

    /// The real group id.
    pub fn getgid(&self) -> Result<u32, Errno> {
        Ok(self.at(SYS_GETGID, &[])? as u32)
    }

    /// `getgroups`: the supplementary groups.
    pub fn getgroups(&self) -> Result<Vec<u32>, Errno> {
        let n = self.at(SYS_GETGROUPS, &[0, 0])? as usize;
        let mut b = vec![0u8; n * 4];
        let l = Lend::new();
        let len = n as u64;
        let got = self.call_lent(&l, SYS_GETGROUPS, &[len, l.buf_mut(&mut b[..])])?[0] as usize;
        Ok(b.chunks_exact(4)
            .take(got)
            .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    /// `umask(mask)`: the previous mask.
    pub fn umask(&self, mask: u32) -> Result<u32, Errno> {
        Ok(self.at(SYS_UMASK, &[mask as u64])? as u32)
    }

    /// `access(2)`: may the process access `path` as `amode` asks?
    pub fn access(&self, path: impl AsRef<[u8]>, amode: i32) -> Result<(), Errno> {
        let l = Lend::new();
        let p = cstr(path.as_ref())?;
        self.at_lent(&l, SYS_ACCESS, &[l.cstr(&p), amode as u32 as u64])
            .map(|_| ())
    }

    /// chown (`follow`) or lchown; `u32::MAX` leaves a field alone.
    pub fn chown(
        &self,
        path: impl AsRef<[u8]>,
        uid: u32,
        gid: u32,
        follow: bool,
    ) -> Result<(), Errno> {
        let l = Lend::new();
        let p = cstr(path.as_ref())?;
        let num = if follow { SYS_CHOWN } else { SYS_LCHOWN };
        self.at_lent(&l, num, &[l.cstr(&p), uid as u64, gid as u64])
            .map(|_| ())
    }

    /// `fchown(2)` (`u32::MAX` leaves that id alone).
    pub fn fchown(&self, fd: i32, uid: u32, gid: u32) -> Result<(), Errno> {
        self.at(SYS_FCHOWN, &[fd as u32 as u64, uid as u64, gid as u64])
            .map(|_| ())
    }

    /// `lchmod(2)`: the mode of a symbolic link itself.
    pub fn lchmod(&self, path: impl AsRef<[u8]>, mode: u32) -> Result<(), Errno> {
        let l = Lend::new();
        let p = cstr(path.as_ref())?;
        self.at_lent(&l, SYS_LCHMOD, &[l.cstr(&p), mode as u64])
            .map(|_| ())
    }

    /// `utimensat(AT_FDCWD, path, [atime, mtime], follow ? 0 : NOFOLLOW)`.
    pub fn utimens(
        &self,
        path: impl AsRef<[u8]>,
        t: [TimeArg; 2],
        follow: bool,
    ) -> Result<(), Errno> {
        let l = Lend::new();
        let p = cstr(path.as_ref())?;
        let b = times(t);
        let flag = if follow {
            0
        } else {
            netbsd_abi::fcntl::AT_SYMLINK_NOFOLLOW
        };
        self.at_lent(
            &l,
            SYS_UTIMENSAT,
            &[
                AT_FDCWD as u32 as u64,
                l.cstr(&p),
                l.buf(&b[..]),
                flag as u64,
            ],
        )
        .map(|_| ())
    }

    /// `futimens(2)`: access and modification times of an open file.
    pub fn futimens(&self, fd: i32, t: [TimeArg; 2]) -> Result<(), Errno> {
        let l = Lend::new();
        let b = times(t);
        self.at_lent(&l, SYS_FUTIMENS, &[fd as u32 as u64, l.buf(&b[..])])
            .map(|_| ())
    }

    /// `__utimes50(path, tv)`; `None` is now.
    pub fn utimes(&self, path: impl AsRef<[u8]>, tv: Option<[Timespec; 2]>) -> Result<(), Errno> {
        let l = Lend::new();
        let p = cstr(path.as_ref())?;
        let mut b = [0u8; 32];
        if let Some(tv) = tv {
            b[..16].copy_from_slice(&tv[0].encode_timeval());
            b[16..].copy_from_slice(&tv[1].encode_timeval());
        }
        let tp = if tv.is_some() { l.buf(&b[..]) } else { 0 };
        self.at_lent(&l, SYS_UTIMES, &[l.cstr(&p), tp]).map(|_| ())
    }

    /// `truncate(2)`.
    pub fn truncate(&self, path: impl AsRef<[u8]>, len: i64) -> Result<(), Errno> {
        let l = Lend::new();
        let p = cstr(path.as_ref())?;
        self.at_lent(&l, SYS_TRUNCATE, &[l.cstr(&p), 0, len as u64])
            .map(|_| ())
    }

    /// `statvfs1(2)` of the file system holding `path`.
    pub fn statvfs(&self, path: impl AsRef<[u8]>) -> Result<Statvfs, Errno> {
        let l = Lend::new();
        let p = cstr(path.as_ref())?;
        let mut b = vec![0u8; STATVFS_SIZE];
        self.at_lent(
            &l,
            SYS_STATVFS1,
            &[
                l.cstr(&p),
                l.buf_mut(&mut b[..]),
                netbsd_abi::fcntl::ST_WAIT as u64,
            ],
        )?;
        Statvfs::decode(&b).ok_or(Errno(EFAULT))
    }

    /// `fstatvfs1(2)`.
    pub fn fstatvfs(&self, fd: i32) -> Result<Statvfs, Errno> {
        let l = Lend::new();
        let mut b = vec![0u8; STATVFS_SIZE];
        self.at_lent(
            &l,
            SYS_FSTATVFS1,
            &[
                fd as u32 as u64,
                l.buf_mut(&mut b[..]),
                netbsd_abi::fcntl::ST_WAIT as u64,
            ],
        )?;
        Statvfs::decode(&b).ok_or(Errno(EFAULT))
    }

    /// `dup(2)`: the lowest free descriptor for `fd`'s file.
    pub fn dup(&self, fd: i32) -> Result<i32, Errno> {
        Ok(self.at(SYS_DUP, &[fd as u32 as u64])? as i32)
    }

    /// `dup2(2)`: `to` made to refer to `from`'s file.
    pub fn dup2(&self, from: i32, to: i32) -> Result<i32, Errno> {
        Ok(self.at(SYS_DUP2, &[from as u32 as u64, to as u32 as u64])? as i32)
    }

    /// `dup3(2)`: [`LocalProc::dup2`] with `O_CLOEXEC` allowed in `flags`.
    pub fn dup3(&self, from: i32, to: i32, flags: i32) -> Result<i32, Errno> {
        Ok(self.at(
            SYS_DUP3,
            &[from as u32 as u64, to as u32 as u64, flags as u32 as u64],
        )? as i32)
    }

    /// `fcntl(2)` with an integer argument.
    pub fn fcntl(&self, fd: i32, cmd: i32, arg: i64) -> Result<i64, Errno> {
        self.at(
            SYS_FCNTL,
            &[fd as u32 as u64, cmd as u32 as u64, arg as u64],
        )
    }

    /// `fsync_range(2)`.
    pub fn fsync_range(&self, fd: i32, flags: i32, start: i64, len: i64) -> Result<(), Errno> {
        self.at(
            SYS_FSYNC_RANGE,
            &[
                fd as u32 as u64,
                flags as u32 as u64,
                start as u64,
                len as u64,
            ],
        )
        .map(|_| ())
    }

    /// `mknod(path, mode, dev)`.
    pub fn mknod(&self, path: impl AsRef<[u8]>, mode: u32, dev: u64) -> Result<(), Errno> {
        let l = Lend::new();
        let p = cstr(path.as_ref())?;
        self.at_lent(&l, SYS_MKNOD, &[l.cstr(&p), mode as u64, dev])
            .map(|_| ())
    }

    /// `mkfifo(2)`.
    pub fn mkfifo(&self, path: impl AsRef<[u8]>, mode: u32) -> Result<(), Errno> {
        let l = Lend::new();
        let p = cstr(path.as_ref())?;
        self.at_lent(&l, SYS_MKFIFO, &[l.cstr(&p), mode as u64])
            .map(|_| ())
    }

    /// `preadv(fd, bufs, off)`.
    pub fn preadv(&self, fd: i32, bufs: &mut [&mut [u8]], off: i64) -> Result<usize, Errno> {
        let l = Lend::new();
        let nbufs = bufs.len() as u64;
        let iov: Vec<u64> = bufs
            .iter_mut()
            .flat_map(|b| {
                let n = b.len() as u64;
                [l.buf_mut(b), n]
            })
            .collect();
        Ok(self.at_lent(
            &l,
            SYS_PREADV,
            &[fd as u32 as u64, l.buf(&iov[..]), nbufs, 0, off as u64],
        )? as usize)
    }

    /// `writev(fd, bufs)`.
    pub fn writev(&self, fd: i32, bufs: &[&[u8]]) -> Result<usize, Errno> {
        let l = Lend::new();
        let iov: Vec<u64> = bufs
            .iter()
            .flat_map(|b| [l.buf(b), b.len() as u64])
            .collect();
        Ok(self.at_lent(
            &l,
            SYS_WRITEV,
            &[fd as u32 as u64, l.buf(&iov[..]), bufs.len() as u64],
        )? as usize)
    }

    /// `openat(2)`: [`LocalProc::open`] relative to `dirfd`.
    pub fn openat(
        &self,
        dirfd: i32,
        path: impl AsRef<[u8]>,
        flags: i32,
        mode: u32,
    ) -> Result<i32, Errno> {
        let l = Lend::new();
        let p = cstr(path.as_ref())?;
        Ok(self.at_lent(
            &l,
            SYS_OPENAT,
            &[
                dirfd as u32 as u64,
                l.cstr(&p),
                flags as u32 as u64,
                mode as u64,
            ],
        )? as i32)
    }

    /// `mkdirat(2)`.
    pub fn mkdirat(&self, dirfd: i32, path: impl AsRef<[u8]>, mode: u32) -> Result<(), Errno> {
        let l = Lend::new();
        let p = cstr(path.as_ref())?;
        self.at_lent(
            &l,
            SYS_MKDIRAT,
            &[dirfd as u32 as u64, l.cstr(&p), mode as u64],
        )
        .map(|_| ())
    }

    /// `unlinkat(2)` (`AT_REMOVEDIR` in `flag`: as `rmdir`).
    pub fn unlinkat(&self, dirfd: i32, path: impl AsRef<[u8]>, flag: i32) -> Result<(), Errno> {
        let l = Lend::new();
        let p = cstr(path.as_ref())?;
        self.at_lent(
            &l,
            SYS_UNLINKAT,
            &[dirfd as u32 as u64, l.cstr(&p), flag as u32 as u64],
        )
        .map(|_| ())
    }

    /// `renameat(2)`.
    pub fn renameat(
        &self,
        fromfd: i32,
        from: impl AsRef<[u8]>,
        tofd: i32,
        to: impl AsRef<[u8]>,
    ) -> Result<(), Errno> {
        let l = Lend::new();
        let (f, t) = (cstr(from.as_ref())?, cstr(to.as_ref())?);
        self.at_lent(
            &l,
            SYS_RENAMEAT,
            &[
                fromfd as u32 as u64,
                l.cstr(&f),
                tofd as u32 as u64,
                l.cstr(&t),
            ],
        )
        .map(|_| ())
    }

    /// `linkat(2)`.
    pub fn linkat(
        &self,
        fd1: i32,
        from: impl AsRef<[u8]>,
        fd2: i32,
        to: impl AsRef<[u8]>,
        flags: i32,
    ) -> Result<(), Errno> {
        let l = Lend::new();
        let (f, t) = (cstr(from.as_ref())?, cstr(to.as_ref())?);
        self.at_lent(
            &l,
            SYS_LINKAT,
            &[
                fd1 as u32 as u64,
                l.cstr(&f),
                fd2 as u32 as u64,
                l.cstr(&t),
                flags as u32 as u64,
            ],
        )
        .map(|_| ())
    }

    /// `symlinkat(2)`.
    pub fn symlinkat(
        &self,
        target: impl AsRef<[u8]>,
        dirfd: i32,
        path: impl AsRef<[u8]>,
    ) -> Result<(), Errno> {
        let l = Lend::new();
        let (t, p) = (cstr(target.as_ref())?, cstr(path.as_ref())?);
        self.at_lent(
            &l,
            SYS_SYMLINKAT,
            &[l.cstr(&t), dirfd as u32 as u64, l.cstr(&p)],
        )
        .map(|_| ())
    }

    /// `readlinkat(2)`.
    pub fn readlinkat(&self, dirfd: i32, path: impl AsRef<[u8]>) -> Result<Vec<u8>, Errno> {
        let l = Lend::new();
        let p = cstr(path.as_ref())?;
        let mut buf = vec![0u8; crate::namei::MAXPATHLEN];
        let buf_len = buf.len() as u64;
        let n = self.at_lent(
            &l,
            SYS_READLINKAT,
            &[
                dirfd as u32 as u64,
                l.cstr(&p),
                l.buf_mut(&mut buf[..]),
                buf_len,
            ],
        )?;
        buf.truncate(n as usize);
        Ok(buf)
    }

    /// `fchmodat(2)`.
    pub fn fchmodat(
        &self,
        dirfd: i32,
        path: impl AsRef<[u8]>,
        mode: u32,
        flag: i32,
    ) -> Result<(), Errno> {
        let l = Lend::new();
        let p = cstr(path.as_ref())?;
        self.at_lent(
            &l,
            SYS_FCHMODAT,
            &[
                dirfd as u32 as u64,
                l.cstr(&p),
                mode as u64,
                flag as u32 as u64,
            ],
        )
        .map(|_| ())
    }

    /// `fchownat(2)`.
    pub fn fchownat(
        &self,
        dirfd: i32,
        path: impl AsRef<[u8]>,
        uid: u32,
        gid: u32,
        flag: i32,
    ) -> Result<(), Errno> {
        let l = Lend::new();
        let p = cstr(path.as_ref())?;
        self.at_lent(
            &l,
            SYS_FCHOWNAT,
            &[
                dirfd as u32 as u64,
                l.cstr(&p),
                uid as u64,
                gid as u64,
                flag as u32 as u64,
            ],
        )
        .map(|_| ())
    }

    /// `fstatat(2)`.
    pub fn fstatat(&self, dirfd: i32, path: impl AsRef<[u8]>, flag: i32) -> Result<Stat, Errno> {
        let l = Lend::new();
        let p = cstr(path.as_ref())?;
        let mut b = [0u8; STAT_SIZE];
        self.at_lent(
            &l,
            SYS_FSTATAT,
            &[
                dirfd as u32 as u64,
                l.cstr(&p),
                l.buf_mut(&mut b[..]),
                flag as u32 as u64,
            ],
        )?;
        Stat::decode(&b).ok_or(Errno(EFAULT))
    }

    /// `faccessat(2)`.
    pub fn faccessat(
        &self,
        dirfd: i32,
        path: impl AsRef<[u8]>,
        amode: i32,
        flag: i32,
    ) -> Result<(), Errno> {
        let l = Lend::new();
        let p = cstr(path.as_ref())?;
        self.at_lent(
            &l,
            SYS_FACCESSAT,
            &[
                dirfd as u32 as u64,
                l.cstr(&p),
                amode as u32 as u64,
                flag as u32 as u64,
            ],
        )
        .map(|_| ())
    }
}
