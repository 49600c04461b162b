//! getdents: directory listings as NetBSD `struct dirent` records.

use netbsd_abi::dirent::{reclen, Dirent};
use netbsd_abi::errno::*;
use netbsd_abi::Errno;

use super::{Args, Cx, SysResult};
use crate::vfs::FileKind;

/// Largest buffer filled by one call.
const MAX_GETDENTS: usize = 1 << 20;

pub fn getdents(cx: &Cx, a: &Args, rv: &mut [i64; 2]) -> SysResult {
    let f = cx.getf(a.int(0))?;
    if !f.readable() {
        return Err(Errno(EBADF));
    }
    if f.kind != FileKind::Dir {
        return Err(Errno(ENOTDIR));
    }
    let count = a.u(2).min(MAX_GETDENTS as u64) as usize;
    if count < reclen(1) {
        return Err(Errno(EINVAL));
    }
    let vn = f.vnode();
    if vn.mnt.is_dead() {
        return Err(Errno(EBADF));
    }
    let mut cookie = f.offset.lock();
    let mut out = Vec::with_capacity(count.min(65536));
    let mut next = *cookie;
    let mut full = false;
    vn.mnt.fs.readdir(vn.ino, *cookie, &mut |e| {
        if out.len() + reclen(e.name.len()) > count {
            full = true;
            return false;
        }
        Dirent {
            fileno: e.ino,
            kind: e.kind.dirent_type(),
            name: e.name,
        }
        .encode_into(&mut out);
        next = e.next;
        true
    })?;
    if out.is_empty() && full {
        // Not even one entry fits.
        return Err(Errno(EINVAL));
    }
    cx.copyout(&out, a.u(1))?;
    *cookie = next;
    rv[0] = out.len() as i64;
    Ok(())
}
