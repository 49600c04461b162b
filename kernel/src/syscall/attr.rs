//! Attribute calls: chown/fchown/lchown, lchmod, utimes/futimes/lutimes/
//! futimens, truncate, statvfs1/fstatvfs1, mknod/mkfifo; and the helpers
//! the `*at` family shares with them.

use netbsd_abi::errno::*;
use netbsd_abi::fcntl::*;
use netbsd_abi::stat::*;
use netbsd_abi::statvfs::Statvfs;
use netbsd_abi::Errno;

use super::cred::{self, PERM_W};
use super::{Args, Cx, SysResult};
use crate::vfs::{FileKind, SetAttr};
use crate::vnode::Vnode;

/// `(uid_t)-1`: leave the owner (or group) as it is.
const NO_ID: u32 = u32::MAX;

/// chmod of `vn` to `mode`, with NetBSD's rules for who may.
pub fn chmod_vn(cx: &Cx, vn: &Vnode, mode: u32) -> SysResult {
    vn.writable()?;
    let a = vn.getattr()?;
    cred::owner(cx, &a)?;
    let mode = mode & 0o7777;
    if !cred::is_root(cx) {
        // Only root sets the sticky bit on a file, and set-group-id needs
        // membership of the file's group.
        if a.kind != FileKind::Dir && mode & S_ISVTX != 0 {
            return Err(Errno(EFTYPE));
        }
        if mode & S_ISGID != 0 && !cred::who(cx).member(a.gid) {
            return Err(Errno(EPERM));
        }
    }
    vn.mnt.fs.setattr(
        vn.ino,
        &SetAttr {
            perm: Some(mode),
            ..Default::default()
        },
    )?;
    Ok(())
}

/// chown of `vn`; `u32::MAX` leaves a field alone. Root may do anything;
/// an owner may only change the group, to its own.
pub fn chown_vn(cx: &Cx, vn: &Vnode, uid: u32, gid: u32) -> SysResult {
    vn.writable()?;
    let a = vn.getattr()?;
    let nuid = if uid == NO_ID { a.uid } else { uid };
    let ngid = if gid == NO_ID { a.gid } else { gid };
    let root = cred::is_root(cx);
    if !root
        && (cx.p.cred.uid != a.uid
            || nuid != a.uid
            || (ngid != a.gid && !cred::who(cx).member(ngid)))
    {
        return Err(Errno(EPERM));
    }
    let mut set = SetAttr::default();
    if nuid != a.uid {
        set.uid = Some(nuid);
    }
    if ngid != a.gid {
        set.gid = Some(ngid);
    }
    // A change of owner by anyone but root drops set-id bits.
    if !root && (set.uid.is_some() || set.gid.is_some()) && a.perm & (S_ISUID | S_ISGID) != 0 {
        set.perm = Some(a.perm & !(S_ISUID | S_ISGID));
    }
    if set.uid.is_none() && set.gid.is_none() && set.perm.is_none() {
        // Nothing changes, but ctime does as NetBSD's VOP_SETATTR would.
        set.uid = Some(a.uid);
    }
    vn.mnt.fs.setattr(vn.ino, &set)?;
    Ok(())
}

/// One time as given to utimensat: a value, now, or leave.
#[derive(Clone, Copy, Debug)]
pub enum TimeSet {
    Now,
    Omit,
    At(Timespec),
}

/// Set `vn`'s access and modification times. Explicit times need the
/// owner (or root); "now" for both also lets anyone with write access.
pub fn set_times(cx: &Cx, vn: &Vnode, t: [TimeSet; 2]) -> SysResult {
    if matches!(t, [TimeSet::Omit, TimeSet::Omit]) {
        return Ok(());
    }
    vn.writable()?;
    let a = vn.getattr()?;
    let explicit = t.iter().any(|x| matches!(x, TimeSet::At(_)));
    if !cred::is_root(cx) && cx.p.cred.uid != a.uid {
        if explicit {
            return Err(Errno(EPERM));
        }
        cred::check(cred::who(cx), &a, PERM_W)?;
    }
    let now = crate::host::now();
    let pick = |x: TimeSet| match x {
        TimeSet::Now => Some(now),
        TimeSet::Omit => None,
        TimeSet::At(ts) => Some(ts),
    };
    vn.mnt.fs.setattr(
        vn.ino,
        &SetAttr {
            atime: pick(t[0]),
            mtime: pick(t[1]),
            ..Default::default()
        },
    )?;
    Ok(())
}

/// Read a `struct timespec [2]` (NULL: both now).
pub fn timespecs_in(cx: &Cx, uaddr: u64) -> Result<[TimeSet; 2], Errno> {
    if uaddr == 0 {
        return Ok([TimeSet::Now, TimeSet::Now]);
    }
    let mut b = [0u8; 2 * TIMESPEC_SIZE];
    cx.copyin(uaddr, &mut b)?;
    let one = |s: &[u8]| -> Result<TimeSet, Errno> {
        let ts = Timespec::decode(s).ok_or(Errno(EFAULT))?;
        match ts.nsec {
            UTIME_NOW => Ok(TimeSet::Now),
            UTIME_OMIT => Ok(TimeSet::Omit),
            n if (0..1_000_000_000).contains(&n) => Ok(TimeSet::At(ts)),
            _ => Err(Errno(EINVAL)),
        }
    };
    Ok([one(&b[..TIMESPEC_SIZE])?, one(&b[TIMESPEC_SIZE..])?])
}

/// Read a `struct timeval [2]` (NULL: both now).
fn timevals_in(cx: &Cx, uaddr: u64) -> Result<[TimeSet; 2], Errno> {
    if uaddr == 0 {
        return Ok([TimeSet::Now, TimeSet::Now]);
    }
    let mut b = [0u8; 2 * TIMEVAL_SIZE];
    cx.copyin(uaddr, &mut b)?;
    let one = |s: &[u8]| -> Result<TimeSet, Errno> {
        let (sec, usec) = Timespec::decode_timeval(s).ok_or(Errno(EFAULT))?;
        if !(0..1_000_000).contains(&usec) {
            return Err(Errno(EINVAL));
        }
        Ok(TimeSet::At(Timespec {
            sec,
            nsec: usec * 1000,
        }))
    };
    Ok([one(&b[..TIMEVAL_SIZE])?, one(&b[TIMEVAL_SIZE..])?])
}

pub fn chown(cx: &Cx, a: &Args, follow: bool) -> SysResult {
    let path = cx.path(a.u(0))?;
    let vn = cx.namei(&path, follow)?;
    chown_vn(cx, &vn, a.u(1) as u32, a.u(2) as u32)
}

pub fn fchown(cx: &Cx, a: &Args) -> SysResult {
    let f = cx.getf(a.int(0))?;
    chown_vn(cx, f.vnode(), a.u(1) as u32, a.u(2) as u32)
}

pub fn lchmod(cx: &Cx, a: &Args) -> SysResult {
    let path = cx.path(a.u(0))?;
    let vn = cx.namei(&path, false)?;
    chmod_vn(cx, &vn, a.mode(1))
}

pub fn utimes(cx: &Cx, a: &Args, follow: bool) -> SysResult {
    let path = cx.path(a.u(0))?;
    let t = timevals_in(cx, a.u(1))?;
    let vn = cx.namei(&path, follow)?;
    set_times(cx, &vn, t)
}

pub fn futimes(cx: &Cx, a: &Args) -> SysResult {
    let f = cx.getf(a.int(0))?;
    let t = timevals_in(cx, a.u(1))?;
    set_times(cx, f.vnode(), t)
}

pub fn futimens(cx: &Cx, a: &Args) -> SysResult {
    let f = cx.getf(a.int(0))?;
    let t = timespecs_in(cx, a.u(1))?;
    set_times(cx, f.vnode(), t)
}

/// `truncate(path, PAD, length)`.
pub fn truncate(cx: &Cx, a: &Args) -> SysResult {
    let path = cx.path(a.u(0))?;
    let len = a.off(2);
    if len < 0 {
        return Err(Errno(EINVAL));
    }
    let vn = cx.namei(&path, true)?;
    let attr = vn.getattr()?;
    match attr.kind {
        FileKind::Dir => return Err(Errno(EISDIR)),
        FileKind::Reg => {}
        _ => return Err(Errno(EINVAL)),
    }
    vn.writable()?;
    cred::check(cred::who(cx), &attr, PERM_W)?;
    vn.mnt.fs.setattr(
        vn.ino,
        &SetAttr {
            size: Some(len as u64),
            ..Default::default()
        },
    )?;
    Ok(())
}

/// The `statvfs` of the file system `vn` is on.
pub fn statvfs_of(cx: &Cx, vn: &Vnode) -> Result<Statvfs, Errno> {
    let m = &vn.mnt;
    if m.is_dead() {
        return Err(Errno(EBADF));
    }
    let st = m.fs.statfs()?;
    let mut flag = MNT_LOCAL as u64;
    if m.read_only || m.fs.read_only() {
        flag |= MNT_RDONLY as u64;
    }
    let from = m
        .drive
        .and_then(|i| cx.k.drive_by_index(i))
        .map(|d| d.key.clone().into_bytes())
        .unwrap_or_else(|| m.fs.type_name().as_bytes().to_vec());
    let bs = st.block_size.max(1) as u64;
    Ok(Statvfs {
        flag,
        bsize: bs,
        frsize: bs,
        iosize: bs.max(65536),
        blocks: st.blocks,
        bfree: st.blocks_free,
        bavail: st.blocks_avail.min(st.blocks_free),
        bresvd: st.blocks_free.saturating_sub(st.blocks_avail),
        files: st.files,
        ffree: st.files_free,
        favail: st.files_free,
        fresvd: 0,
        fsidx: [m.dev as i32, (m.dev >> 32) as i32],
        fsid: m.dev,
        namemax: crate::namei::NAME_MAX as u64,
        owner: 0,
        fstypename: m.fs.type_name().as_bytes().to_vec(),
        mntonname: m.path.clone().into_bytes(),
        mntfromname: from,
    })
}

fn check_statvfs_flags(flags: i32) -> SysResult {
    if flags & !(ST_WAIT | ST_NOWAIT) != 0 {
        return Err(Errno(EINVAL));
    }
    Ok(())
}

/// `statvfs1(path, buf, flags)`.
pub fn statvfs1(cx: &Cx, a: &Args) -> SysResult {
    check_statvfs_flags(a.int(2))?;
    let path = cx.path(a.u(0))?;
    let vn = cx.namei(&path, true)?;
    let s = statvfs_of(cx, &vn)?;
    cx.copyout(&s.encode(), a.u(1))
}

/// `fstatvfs1(fd, buf, flags)`.
pub fn fstatvfs1(cx: &Cx, a: &Args) -> SysResult {
    check_statvfs_flags(a.int(2))?;
    let f = cx.getf(a.int(0))?;
    let s = statvfs_of(cx, f.vnode())?;
    cx.copyout(&s.encode(), a.u(1))
}

/// Make a node `path` of `mode` (type bits included) and device `dev`
/// (a file system that keeps no device numbers refuses `dev` other than
/// 0 with `EOPNOTSUPP`).
pub fn mknod_path(cx: &Cx, path: &[u8], mode: u32, dev: u64) -> SysResult {
    let kind = match mode & S_IFMT {
        S_IFIFO => FileKind::Fifo,
        S_IFCHR => FileKind::Chr,
        S_IFBLK => FileKind::Blk,
        S_IFREG | 0 => FileKind::Reg,
        _ => return Err(Errno(EINVAL)),
    };
    let device = matches!(kind, FileKind::Chr | FileKind::Blk);
    if device && !cred::is_root(cx) {
        return Err(Errno(EPERM));
    }
    let dev = if device { dev } else { 0 };
    let par = cx.namei_new(path, false)?;
    par.dir.writable()?;
    cred::dir_write(cx, &par.dir)?;
    par.dir.mnt.fs.mknod(
        par.dir.ino,
        &par.name,
        kind,
        cred::masked(cx, mode),
        dev,
        cx.p.cred,
    )?;
    Ok(())
}

/// `mknod(path, mode, dev)` (`__mknod50`: 64-bit `dev_t`).
pub fn mknod(cx: &Cx, a: &Args) -> SysResult {
    let path = cx.path(a.u(0))?;
    mknod_path(cx, &path, a.mode(1), a.u(2))
}

/// `mkfifo(path, mode)`.
pub fn mkfifo(cx: &Cx, a: &Args) -> SysResult {
    let path = cx.path(a.u(0))?;
    mknod_path(cx, &path, S_IFIFO | (a.mode(1) & 0o7777), 0)
}
