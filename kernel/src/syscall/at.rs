//! The `*at` family: each resolves a relative path from a directory
//! descriptor (or the current directory for `AT_FDCWD`) and then does
//! what its plain counterpart does.

use netbsd_abi::errno::*;
use netbsd_abi::fcntl::*;
use netbsd_abi::Errno;

use super::{attr, cred, path, Args, Cx, SysResult};
use crate::vfs::FileKind;

/// The context for paths relative to descriptor `fd`. As NetBSD does, a
/// descriptor other than `AT_FDCWD` must be an open directory even when
/// the path turns out absolute.
fn at<'a>(cx: &Cx<'a>, fd: i32) -> Result<Cx<'a>, Errno> {
    if fd == AT_FDCWD {
        return Ok(Cx {
            k: cx.k,
            p: cx.p,
            dir: None,
        });
    }
    let f = cx.getf(fd)?;
    if f.kind != FileKind::Dir {
        return Err(Errno(ENOTDIR));
    }
    let vn = f.vnode().clone();
    if vn.mnt.is_dead() {
        return Err(Errno(ENOENT));
    }
    Ok(Cx {
        k: cx.k,
        p: cx.p,
        dir: Some(vn),
    })
}

fn flags_only(flag: i32, allowed: i32) -> SysResult {
    if flag & !allowed != 0 {
        return Err(Errno(EINVAL));
    }
    Ok(())
}

fn follow(flag: i32) -> bool {
    flag & AT_SYMLINK_NOFOLLOW == 0
}

/// `openat(fd, path, oflags, mode)`.
pub fn openat(cx: &Cx, a: &Args, rv: &mut [i64; 2]) -> SysResult {
    path::open(&at(cx, a.int(0))?, &Args(&[a.u(1), a.u(2), a.u(3)]), rv)
}

/// `mkdirat(fd, path, mode)`.
pub fn mkdirat(cx: &Cx, a: &Args) -> SysResult {
    path::mkdir(&at(cx, a.int(0))?, &Args(&[a.u(1), a.u(2)]))
}

/// `mkfifoat(fd, path, mode)`.
pub fn mkfifoat(cx: &Cx, a: &Args) -> SysResult {
    attr::mkfifo(&at(cx, a.int(0))?, &Args(&[a.u(1), a.u(2)]))
}

/// `mknodat(fd, path, mode, PAD, dev)`.
pub fn mknodat(cx: &Cx, a: &Args) -> SysResult {
    attr::mknod(&at(cx, a.int(0))?, &Args(&[a.u(1), a.u(2), a.u(4)]))
}

/// `unlinkat(fd, path, flag)`: `AT_REMOVEDIR` makes it `rmdir`.
pub fn unlinkat(cx: &Cx, a: &Args) -> SysResult {
    let flag = a.int(2);
    flags_only(flag, AT_REMOVEDIR)?;
    let c = at(cx, a.int(0))?;
    let args = Args(&[a.u(1)]);
    if flag & AT_REMOVEDIR != 0 {
        path::rmdir(&c, &args)
    } else {
        path::unlink(&c, &args)
    }
}

/// `renameat(fromfd, from, tofd, to)`.
pub fn renameat(cx: &Cx, a: &Args) -> SysResult {
    let cf = at(cx, a.int(0))?;
    let ct = at(cx, a.int(2))?;
    let from = cf.path(a.u(1))?;
    let to = ct.path(a.u(3))?;
    path::rename_paths(&cf, &ct, &from, &to)
}

/// `linkat(fd1, name1, fd2, name2, flags)`: `AT_SYMLINK_FOLLOW` links
/// what a symbolic link `name1` points to.
pub fn linkat(cx: &Cx, a: &Args) -> SysResult {
    let flag = a.int(4);
    flags_only(flag, AT_SYMLINK_FOLLOW)?;
    let c1 = at(cx, a.int(0))?;
    let c2 = at(cx, a.int(2))?;
    let from = c1.path(a.u(1))?;
    let to = c2.path(a.u(3))?;
    path::link_paths(&c1, &c2, &from, &to, flag & AT_SYMLINK_FOLLOW != 0)
}

/// `symlinkat(path1, fd, path2)`.
pub fn symlinkat(cx: &Cx, a: &Args) -> SysResult {
    path::symlink(&at(cx, a.int(1))?, &Args(&[a.u(0), a.u(2)]))
}

/// `readlinkat(fd, path, buf, bufsize)`.
pub fn readlinkat(cx: &Cx, a: &Args, rv: &mut [i64; 2]) -> SysResult {
    path::readlink(&at(cx, a.int(0))?, &Args(&[a.u(1), a.u(2), a.u(3)]), rv)
}

/// `fchmodat(fd, path, mode, flag)`.
pub fn fchmodat(cx: &Cx, a: &Args) -> SysResult {
    let flag = a.int(3);
    flags_only(flag, AT_SYMLINK_NOFOLLOW)?;
    let c = at(cx, a.int(0))?;
    let p = c.path(a.u(1))?;
    let vn = c.namei(&p, follow(flag))?;
    attr::chmod_vn(&c, &vn, a.mode(2))
}

/// `fchownat(fd, path, owner, group, flag)`.
pub fn fchownat(cx: &Cx, a: &Args) -> SysResult {
    let flag = a.int(4);
    flags_only(flag, AT_SYMLINK_NOFOLLOW)?;
    let c = at(cx, a.int(0))?;
    let p = c.path(a.u(1))?;
    let vn = c.namei(&p, follow(flag))?;
    attr::chown_vn(&c, &vn, a.u(2) as u32, a.u(3) as u32)
}

/// `fstatat(fd, path, buf, flag)`.
pub fn fstatat(cx: &Cx, a: &Args) -> SysResult {
    let flag = a.int(3);
    flags_only(flag, AT_SYMLINK_NOFOLLOW)?;
    path::stat(&at(cx, a.int(0))?, &Args(&[a.u(1), a.u(2)]), follow(flag))
}

/// `utimensat(fd, path, tptr, flag)`.
pub fn utimensat(cx: &Cx, a: &Args) -> SysResult {
    let flag = a.int(3);
    flags_only(flag, AT_SYMLINK_NOFOLLOW)?;
    if a.u(1) == 0 {
        return Err(Errno(EFAULT));
    }
    let c = at(cx, a.int(0))?;
    let p = c.path(a.u(1))?;
    let t = attr::timespecs_in(&c, a.u(2))?;
    let vn = c.namei(&p, follow(flag))?;
    attr::set_times(&c, &vn, t)
}

/// `faccessat(fd, path, amode, flag)`: real and effective ids are one.
pub fn faccessat(cx: &Cx, a: &Args) -> SysResult {
    let flag = a.int(3);
    flags_only(flag, AT_EACCESS | AT_SYMLINK_NOFOLLOW)?;
    let c = at(cx, a.int(0))?;
    let p = c.path(a.u(1))?;
    cred::access_path(&c, &p, a.int(2), follow(flag))
}
