//! Descriptor calls: dup, dup2, dup3, fcntl (F_DUPFD, F_DUPFD_CLOEXEC,
//! F_GETFD/F_SETFD, F_GETFL/F_SETFL), fsync_range.

use std::sync::atomic::Ordering;

use netbsd_abi::errno::*;
use netbsd_abi::fcntl::*;
use netbsd_abi::Errno;

use super::{Args, Cx, SysResult};

pub fn dup(cx: &Cx, a: &Args, rv: &mut [i64; 2]) -> SysResult {
    let t = cx.p.fdtable();
    let mut t = t.lock();
    let f = t.get(a.int(0))?;
    rv[0] = t.alloc(f, false)? as i64;
    Ok(())
}

fn dup_to(cx: &Cx, from: i32, to: i32, cloexec: bool) -> Result<i32, Errno> {
    let t = cx.p.fdtable();
    let old = {
        let mut t = t.lock();
        let f = t.get(from)?;
        t.install(to, f, cloexec)?
    };
    // The replaced file closes here, outside the table's lock.
    drop(old);
    Ok(to)
}

pub fn dup2(cx: &Cx, a: &Args, rv: &mut [i64; 2]) -> SysResult {
    let (from, to) = (a.int(0), a.int(1));
    if from == to {
        cx.getf(from)?;
        rv[0] = to as i64;
        return Ok(());
    }
    rv[0] = dup_to(cx, from, to, false)? as i64;
    Ok(())
}

pub fn dup3(cx: &Cx, a: &Args, rv: &mut [i64; 2]) -> SysResult {
    let (from, to, flags) = (a.int(0), a.int(1), a.int(2));
    if flags & !(O_CLOEXEC | O_NOSIGPIPE) != 0 || from == to {
        return Err(Errno(EINVAL));
    }
    rv[0] = dup_to(cx, from, to, flags & O_CLOEXEC != 0)? as i64;
    Ok(())
}

pub fn fcntl(cx: &Cx, a: &Args, rv: &mut [i64; 2]) -> SysResult {
    let fd = a.int(0);
    let cmd = a.int(1);
    let arg = a.u(2);
    let t = cx.p.fdtable();
    match cmd {
        F_DUPFD | F_DUPFD_CLOEXEC => {
            let min = arg as i64;
            if min < 0 || min > i32::MAX as i64 {
                return Err(Errno(EINVAL));
            }
            let mut t = t.lock();
            let f = t.get(fd)?;
            rv[0] = t.alloc_from(f, min as i32, cmd == F_DUPFD_CLOEXEC)? as i64;
        }
        F_GETFD => {
            rv[0] = if t.lock().cloexec(fd)? {
                FD_CLOEXEC as i64
            } else {
                0
            };
        }
        F_SETFD => {
            t.lock().set_cloexec(fd, arg as i32 & FD_CLOEXEC != 0)?;
        }
        F_GETFL => {
            rv[0] = t.lock().get(fd)?.status_flags() as i64;
        }
        F_SETFL => {
            let f = t.lock().get(fd)?;
            let new = arg as i32 & FCNTL_SETFL_MASK;
            let _ = f
                .status
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                    Some((old & !FCNTL_SETFL_MASK) | new)
                });
        }
        _ => return Err(Errno(EINVAL)),
    }
    Ok(())
}

/// `fsync_range(fd, flags, start, length)`: the whole file is made
/// durable (a superset of the range).
pub fn fsync_range(cx: &Cx, a: &Args) -> SysResult {
    let flags = a.int(1);
    if flags & (FDATASYNC | FFILESYNC) == 0 || flags & !(FDATASYNC | FFILESYNC | FDISKSYNC) != 0 {
        return Err(Errno(EINVAL));
    }
    if a.off(2) < 0 || a.off(3) < 0 {
        return Err(Errno(EINVAL));
    }
    let f = cx.getf(a.int(0))?;
    if !f.writable() {
        return Err(Errno(EBADF));
    }
    super::file::fsync(cx, &Args(&[a.u(0)]))
}
