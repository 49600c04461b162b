//! Credentials and mode bits: getuid/geteuid/getgid/getegid, umask,
//! access, and the permission checks the other calls make. As on NetBSD,
//! uid 0 passes every check except execute permission on a file with no
//! execute bit at all. A process has one uid and one gid (real and
//! effective alike) and the supplementary groups it was made with.

use netbsd_abi::errno::*;
use netbsd_abi::fcntl::*;
use netbsd_abi::stat::S_ISVTX;
use netbsd_abi::Errno;

use super::{Args, Cx, SysResult};
use crate::vfs::{Attr, Cred, FileKind};
use crate::vnode::Vnode;

pub const PERM_R: u32 = 4;
pub const PERM_W: u32 = 2;
pub const PERM_X: u32 = 1;

pub fn is_root(cx: &Cx) -> bool {
    cx.p.cred.uid == 0
}

/// Whose permissions a check is about: the credentials and the
/// supplementary groups.
#[derive(Clone, Copy, Debug)]
pub struct Who<'a> {
    pub cred: Cred,
    pub groups: &'a [u32],
}

impl Who<'_> {
    /// Is `gid` the primary group or one of the supplementary ones?
    pub fn member(&self, gid: u32) -> bool {
        self.cred.gid == gid || self.groups.contains(&gid)
    }
}

/// The calling process as a [`Who`].
pub fn who<'a>(cx: &'a Cx) -> Who<'a> {
    Who {
        cred: cx.p.cred,
        groups: &cx.p.groups,
    }
}

/// Whether `who` may access a node with attributes `a` for `want`
/// (`PERM_*` bits): `EACCES` if not.
pub fn check(who: Who, a: &Attr, want: u32) -> SysResult {
    let cred = who.cred;
    if want == 0 {
        return Ok(());
    }
    if cred.uid == 0 {
        if want & PERM_X != 0 && a.kind != FileKind::Dir && a.perm & 0o111 == 0 {
            return Err(Errno(EACCES));
        }
        return Ok(());
    }
    let bits = if cred.uid == a.uid {
        (a.perm >> 6) & 7
    } else if who.member(a.gid) {
        (a.perm >> 3) & 7
    } else {
        a.perm & 7
    };
    if want & !bits != 0 {
        return Err(Errno(EACCES));
    }
    Ok(())
}

/// [`check`] for the calling process on `vn`.
pub fn vaccess(cx: &Cx, vn: &Vnode, want: u32) -> SysResult {
    if is_root(cx) {
        // Only execute needs the attributes for root.
        if want & PERM_X == 0 {
            return Ok(());
        }
    }
    check(who(cx), &vn.getattr()?, want)
}

/// May the caller add or remove names in directory `dir`?
pub fn dir_write(cx: &Cx, dir: &Vnode) -> SysResult {
    if is_root(cx) {
        return Ok(());
    }
    vaccess(cx, dir, PERM_W | PERM_X)
}

/// May the caller remove or rename `node` out of directory `dir`
/// (write permission there, and the sticky bit's owner rule)?
pub fn may_delete(cx: &Cx, dir: &Vnode, node: &Vnode) -> SysResult {
    if is_root(cx) {
        return Ok(());
    }
    let da = dir.getattr()?;
    check(who(cx), &da, PERM_W | PERM_X)?;
    if da.perm & S_ISVTX != 0 {
        let uid = cx.p.cred.uid;
        if uid != da.uid && uid != node.getattr()?.uid {
            return Err(Errno(EPERM));
        }
    }
    Ok(())
}

/// Is the caller the owner of `a` (or root)? `EPERM` otherwise.
pub fn owner(cx: &Cx, a: &Attr) -> SysResult {
    if is_root(cx) || cx.p.cred.uid == a.uid {
        Ok(())
    } else {
        Err(Errno(EPERM))
    }
}

/// The permission bits a new node of `mode` gets under the umask.
pub fn masked(cx: &Cx, mode: u32) -> u32 {
    mode & 0o7777 & !cx.p.umask.load(std::sync::atomic::Ordering::Relaxed)
}

pub fn getuid(cx: &Cx, rv: &mut [i64; 2]) -> SysResult {
    rv[0] = cx.p.cred.uid as i64;
    rv[1] = cx.p.cred.uid as i64;
    Ok(())
}

pub fn geteuid(cx: &Cx, rv: &mut [i64; 2]) -> SysResult {
    rv[0] = cx.p.cred.uid as i64;
    Ok(())
}

pub fn getgid(cx: &Cx, rv: &mut [i64; 2]) -> SysResult {
    rv[0] = cx.p.cred.gid as i64;
    rv[1] = cx.p.cred.gid as i64;
    Ok(())
}

/// `getgroups(gidsetsize, gidset)`: the supplementary groups; with a size
/// of 0 only their number, `EINVAL` if the set is too small for them.
pub fn getgroups(cx: &Cx, a: &Args, rv: &mut [i64; 2]) -> SysResult {
    let size = a.int(0);
    let groups = &cx.p.groups;
    if size < 0 || (size != 0 && (size as usize) < groups.len()) {
        return Err(Errno(EINVAL));
    }
    if size != 0 {
        let bytes: Vec<u8> = groups.iter().flat_map(|g| g.to_ne_bytes()).collect();
        cx.copyout(&bytes, a.u(1))?;
    }
    rv[0] = groups.len() as i64;
    Ok(())
}

pub fn getegid(cx: &Cx, rv: &mut [i64; 2]) -> SysResult {
    rv[0] = cx.p.cred.gid as i64;
    Ok(())
}

/// `umask(newmask)`: the old mask.
pub fn umask(cx: &Cx, a: &Args, rv: &mut [i64; 2]) -> SysResult {
    let old =
        cx.p.umask
            .swap(a.mode(0) & 0o777, std::sync::atomic::Ordering::Relaxed);
    rv[0] = old as i64;
    Ok(())
}

/// The `access`/`faccessat` check of `amode` on `path`.
pub fn access_path(cx: &Cx, path: &[u8], amode: i32, follow: bool) -> SysResult {
    if amode & !(R_OK | W_OK | X_OK) != 0 {
        return Err(Errno(EINVAL));
    }
    let vn = cx.namei(path, follow)?;
    let a = vn.getattr()?;
    let mut want = 0;
    if amode & R_OK != 0 {
        want |= PERM_R;
    }
    if amode & W_OK != 0 {
        // Write access to a read-only mount fails whoever asks.
        if a.kind != FileKind::Blk && a.kind != FileKind::Chr {
            vn.writable()?;
        }
        want |= PERM_W;
    }
    if amode & X_OK != 0 {
        want |= PERM_X;
    }
    check(who(cx), &a, want)
}

/// `access(path, amode)`.
pub fn access(cx: &Cx, a: &Args) -> SysResult {
    let path = cx.path(a.u(0))?;
    access_path(cx, &path, a.int(1), true)
}
