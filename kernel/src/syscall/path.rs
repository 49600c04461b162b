//! System calls on path names: open, link, unlink, chdir, fchdir, chmod,
//! symlink, readlink, rename, mkdir, rmdir, stat, lstat, __getcwd.

use std::sync::Arc;

use netbsd_abi::errno::*;
use netbsd_abi::fcntl::*;
use netbsd_abi::Errno;

use super::cred::{self, PERM_R, PERM_W};
use super::{attr, stat_of, Args, Cx, SysResult};
use crate::namei::{self, MAXPATHLEN};
use crate::proc::{Backend, File};
use crate::vfs::{FileKind, SetAttr};
use crate::vnode::Vnode;

/// Flags `open(2)` accepts (others are `EINVAL`).
const OPEN_FLAGS: i32 = O_ACCMODE
    | O_NONBLOCK
    | O_APPEND
    | O_SHLOCK
    | O_EXLOCK
    | O_ASYNC
    | O_SYNC
    | O_NOFOLLOW
    | O_CREAT
    | O_TRUNC
    | O_EXCL
    | O_NOCTTY
    | O_DSYNC
    | O_RSYNC
    | O_DIRECT
    | O_DIRECTORY
    | O_CLOEXEC
    | O_SEARCH
    | O_NOSIGPIPE;

pub fn open(cx: &Cx, a: &Args, rv: &mut [i64; 2]) -> SysResult {
    let path = cx.path(a.u(0))?;
    let flags = a.int(1);
    let mode = cred::masked(cx, a.mode(2));
    if flags & !OPEN_FLAGS != 0 || flags & O_ACCMODE == O_ACCMODE {
        return Err(Errno(EINVAL));
    }
    let acc = flags & O_ACCMODE;
    let wants_write = acc == O_WRONLY || acc == O_RDWR;
    let follow = flags & O_NOFOLLOW == 0;
    let mut created = false;
    let vn: Vnode = if flags & O_CREAT != 0 {
        let excl = flags & O_EXCL != 0;
        // With O_EXCL a symbolic link is never followed: it exists.
        let par = cx.namei_parent(&path, follow && !excl)?;
        match par.node {
            Some(n) => {
                if excl {
                    return Err(Errno(EEXIST));
                }
                cx.k.mounts.cross_down(n)
            }
            None if par.name == b"." || par.name == b".." => {
                if excl {
                    return Err(Errno(EEXIST));
                }
                // "dir/." or "dir/..": an existing directory.
                return Err(Errno(EISDIR));
            }
            None => {
                if par.trailing_slash {
                    return Err(Errno(EISDIR));
                }
                par.dir.writable()?;
                cred::dir_write(cx, &par.dir)?;
                match par
                    .dir
                    .mnt
                    .fs
                    .create(par.dir.ino, &par.name, FileKind::Reg, mode, cx.p.cred)
                {
                    Ok(ino) => {
                        created = true;
                        Vnode {
                            mnt: par.dir.mnt.clone(),
                            ino,
                        }
                    }
                    Err(e) if e.0 == EEXIST && !excl => {
                        // Lost a race with another creator: open theirs.
                        let ino = par.dir.mnt.fs.lookup(par.dir.ino, &par.name)?;
                        Vnode {
                            mnt: par.dir.mnt.clone(),
                            ino,
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    } else {
        cx.namei(&path, follow)?
    };
    let attr = vn.getattr()?;
    match attr.kind {
        FileKind::Lnk => return Err(Errno(EFTYPE)),
        FileKind::Dir if wants_write => return Err(Errno(EISDIR)),
        FileKind::Dir => {}
        _ if flags & O_DIRECTORY != 0 => return Err(Errno(ENOTDIR)),
        _ => {}
    }
    if flags & O_DIRECTORY != 0 && attr.kind != FileKind::Dir {
        return Err(Errno(ENOTDIR));
    }
    if !created {
        // A file the caller just created opens whatever its mode says.
        let mut want = 0;
        if acc == O_RDONLY || acc == O_RDWR {
            want |= PERM_R;
        }
        if wants_write || flags & O_TRUNC != 0 {
            want |= PERM_W;
        }
        cred::check(cred::who(cx), &attr, want)?;
    }
    let backend = match attr.kind {
        FileKind::Blk | FileKind::Chr => {
            let d = cx.k.drive_by_rdev(attr.rdev).ok_or(Errno(ENXIO))?;
            if wants_write && d.is_mounted() {
                return Err(Errno(EBUSY));
            }
            Backend::Dev(d)
        }
        FileKind::Reg | FileKind::Dir => Backend::Fs,
        _ => return Err(Errno(EOPNOTSUPP)),
    };
    if wants_write && matches!(backend, Backend::Fs) {
        vn.writable()?;
    }
    if flags & O_TRUNC != 0
        && wants_write
        && attr.kind == FileKind::Reg
        && !created
        && attr.size != 0
    {
        vn.mnt.fs.setattr(
            vn.ino,
            &SetAttr {
                size: Some(0),
                ..Default::default()
            },
        )?;
    }
    let keep = flags
        & (O_ACCMODE | O_APPEND | O_NONBLOCK | O_SYNC | O_DSYNC | O_RSYNC | O_DIRECT | O_ASYNC);
    let file = Arc::new(File::new(vn, attr.kind, backend, keep));
    let fd = cx.p.fdtable().lock().alloc(file, flags & O_CLOEXEC != 0)?;
    rv[0] = fd as i64;
    Ok(())
}

pub fn link(cx: &Cx, a: &Args) -> SysResult {
    let from = cx.path(a.u(0))?;
    let to = cx.path(a.u(1))?;
    link_paths(cx, cx, &from, &to, false)
}

/// link(2) with `from` resolved in `cf` and `to` in `ct` (linkat).
pub fn link_paths(cf: &Cx, ct: &Cx, from: &[u8], to: &[u8], follow: bool) -> SysResult {
    let cx = ct;
    let src = cf.namei(from, follow)?;
    if src.kind()? == FileKind::Dir {
        return Err(Errno(EPERM));
    }
    let par = cx.namei_new(to, false)?;
    if !Arc::ptr_eq(&src.mnt, &par.dir.mnt) {
        return Err(Errno(EXDEV));
    }
    par.dir.writable()?;
    cred::dir_write(cx, &par.dir)?;
    par.dir.mnt.fs.link(src.ino, par.dir.ino, &par.name)
}

/// Whether `vn` is in use as a mount point or a mount's root.
fn busy_mount(cx: &Cx, vn: &Vnode) -> bool {
    (vn.is_mount_root() && vn.mnt.covered.is_some()) || cx.k.mounts.mounted_on(vn).is_some()
}

pub fn unlink(cx: &Cx, a: &Args) -> SysResult {
    let path = cx.path(a.u(0))?;
    let par = cx.namei_parent(&path, false)?;
    if par.name == b"." || par.name == b".." {
        return Err(Errno(EISDIR));
    }
    let node = par.node.ok_or(Errno(ENOENT))?;
    if node.kind()? == FileKind::Dir {
        return Err(Errno(EPERM));
    }
    if busy_mount(cx, &node) {
        return Err(Errno(EBUSY));
    }
    par.dir.writable()?;
    cred::may_delete(cx, &par.dir, &node)?;
    par.dir.mnt.fs.unlink(par.dir.ino, &par.name)
}

pub fn rmdir(cx: &Cx, a: &Args) -> SysResult {
    let path = cx.path(a.u(0))?;
    let par = cx.namei_parent(&path, false)?;
    if par.name == b"." {
        return Err(Errno(EINVAL));
    }
    if par.name == b".." {
        return Err(Errno(ENOTEMPTY));
    }
    let node = par.node.ok_or(Errno(ENOENT))?;
    if node.kind()? != FileKind::Dir {
        return Err(Errno(ENOTDIR));
    }
    if busy_mount(cx, &node) || node.same(&cx.root()) {
        return Err(Errno(EBUSY));
    }
    par.dir.writable()?;
    cred::may_delete(cx, &par.dir, &node)?;
    par.dir.mnt.fs.rmdir(par.dir.ino, &par.name)
}

pub fn mkdir(cx: &Cx, a: &Args) -> SysResult {
    let path = cx.path(a.u(0))?;
    let mode = cred::masked(cx, a.mode(1));
    let par = cx.namei_new(&path, true)?;
    par.dir.writable()?;
    cred::dir_write(cx, &par.dir)?;
    par.dir
        .mnt
        .fs
        .create(par.dir.ino, &par.name, FileKind::Dir, mode, cx.p.cred)?;
    Ok(())
}

pub fn symlink(cx: &Cx, a: &Args) -> SysResult {
    let target = cx.p.mem.copyinstr(a.u(0), MAXPATHLEN)?;
    let path = cx.path(a.u(1))?;
    let par = cx.namei_new(&path, false)?;
    par.dir.writable()?;
    cred::dir_write(cx, &par.dir)?;
    par.dir
        .mnt
        .fs
        .symlink(par.dir.ino, &par.name, &target, cx.p.cred)?;
    Ok(())
}

pub fn readlink(cx: &Cx, a: &Args, rv: &mut [i64; 2]) -> SysResult {
    let path = cx.path(a.u(0))?;
    let vn = cx.namei(&path, false)?;
    if vn.kind()? != FileKind::Lnk {
        return Err(Errno(EINVAL));
    }
    let t = vn.mnt.fs.readlink(vn.ino)?;
    let n = t.len().min(a.u(2).min(usize::MAX as u64) as usize);
    cx.copyout(&t[..n], a.u(1))?;
    rv[0] = n as i64;
    Ok(())
}

pub fn rename(cx: &Cx, a: &Args) -> SysResult {
    let from = cx.path(a.u(0))?;
    let to = cx.path(a.u(1))?;
    rename_paths(cx, cx, &from, &to)
}

/// rename(2) with `from` resolved in `cf` and `to` in `ct` (renameat).
pub fn rename_paths(cf: &Cx, ct: &Cx, from: &[u8], to: &[u8]) -> SysResult {
    let cx = cf;
    let fp = cf.namei_parent(from, false)?;
    let tp = ct.namei_parent(to, false)?;
    if fp.name == b"." || fp.name == b".." || tp.name == b"." || tp.name == b".." {
        return Err(Errno(EINVAL));
    }
    let src = fp.node.ok_or(Errno(ENOENT))?;
    if !Arc::ptr_eq(&fp.dir.mnt, &tp.dir.mnt) {
        return Err(Errno(EXDEV));
    }
    if busy_mount(cx, &src) {
        return Err(Errno(EBUSY));
    }
    let src_dir = src.kind()? == FileKind::Dir;
    if (fp.trailing_slash || tp.trailing_slash) && !src_dir {
        return Err(Errno(ENOTDIR));
    }
    if let Some(t) = &tp.node {
        if busy_mount(cx, t) {
            return Err(Errno(EBUSY));
        }
        cred::may_delete(cx, &tp.dir, t)?;
    }
    fp.dir.writable()?;
    cred::may_delete(cx, &fp.dir, &src)?;
    cred::dir_write(cx, &tp.dir)?;
    fp.dir
        .mnt
        .fs
        .rename(fp.dir.ino, &fp.name, tp.dir.ino, &tp.name)
}

pub fn chmod(cx: &Cx, a: &Args) -> SysResult {
    let path = cx.path(a.u(0))?;
    let vn = cx.namei(&path, true)?;
    attr::chmod_vn(cx, &vn, a.mode(1))
}

pub fn chdir(cx: &Cx, a: &Args) -> SysResult {
    let path = cx.path(a.u(0))?;
    let vn = cx.namei(&path, true)?;
    if vn.kind()? != FileKind::Dir {
        return Err(Errno(ENOTDIR));
    }
    cred::vaccess(cx, &vn, cred::PERM_X)?;
    cx.p.set_cwd(vn);
    Ok(())
}

pub fn fchdir(cx: &Cx, a: &Args) -> SysResult {
    let f = cx.getf(a.int(0))?;
    if f.kind != FileKind::Dir {
        return Err(Errno(ENOTDIR));
    }
    let vn = f.vnode().clone();
    if vn.mnt.is_dead() {
        return Err(Errno(ENOENT));
    }
    cred::vaccess(cx, &vn, cred::PERM_X)?;
    cx.p.set_cwd(vn);
    Ok(())
}

pub fn stat(cx: &Cx, a: &Args, follow: bool) -> SysResult {
    let path = cx.path(a.u(0))?;
    let vn = cx.namei(&path, follow)?;
    let st = stat_of(&vn)?;
    cx.copyout(&st.encode(), a.u(1))
}

pub fn getcwd(cx: &Cx, a: &Args, rv: &mut [i64; 2]) -> SysResult {
    let len = a.u(1);
    if len < 2 {
        return Err(Errno(ERANGE));
    }
    let cwd = cx.cwd();
    if cwd.mnt.is_dead() {
        return Err(Errno(ENOENT));
    }
    let mut p = namei::getcwd(&cx.k.mounts, &cx.root(), &cwd)?;
    p.push(0);
    if p.len() as u64 > len {
        return Err(Errno(ERANGE));
    }
    cx.copyout(&p, a.u(0))?;
    rv[0] = p.len() as i64;
    Ok(())
}
