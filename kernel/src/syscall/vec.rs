//! Vectored I/O: readv, writev, preadv, pwritev. Each vector is moved in
//! turn with the plain read/write path; a short transfer ends the call.

use netbsd_abi::errno::*;
use netbsd_abi::fcntl::{IOVEC_SIZE, IOV_MAX, O_APPEND};
use netbsd_abi::Errno;

use super::file::{do_read, do_write, file_size, positional};
use super::{Args, Cx, SysResult};
use crate::proc::File;

/// Copy in `iovcnt` `struct iovec`s; `EINVAL` on a bad count or a total
/// beyond `SSIZE_MAX`.
fn iovecs(cx: &Cx, uaddr: u64, iovcnt: i32) -> Result<Vec<(u64, usize)>, Errno> {
    let n = usize::try_from(iovcnt).map_err(|_| Errno(EINVAL))?;
    if n > IOV_MAX {
        return Err(Errno(EINVAL));
    }
    let mut b = vec![0u8; n * IOVEC_SIZE];
    cx.copyin(uaddr, &mut b)?;
    let mut total: u64 = 0;
    let mut out = Vec::with_capacity(n);
    for c in b.chunks_exact(IOVEC_SIZE) {
        let base = u64::from_le_bytes(c[..8].try_into().map_err(|_| Errno(EFAULT))?);
        let len = u64::from_le_bytes(c[8..].try_into().map_err(|_| Errno(EFAULT))?);
        total = total
            .checked_add(len)
            .filter(|&t| t <= i64::MAX as u64)
            .ok_or(Errno(EINVAL))?;
        out.push((base, usize::try_from(len).map_err(|_| Errno(EINVAL))?));
    }
    Ok(out)
}

/// Move the segments `v` one after another from file offset `off` with
/// `io(offset, base, len)`: stop at a short count; an error after some
/// bytes ends the call with what was done, as NetBSD's `dofilereadv` does.
fn each_segment(
    off: u64,
    v: &[(u64, usize)],
    mut io: impl FnMut(u64, u64, usize) -> Result<usize, Errno>,
) -> Result<usize, Errno> {
    let mut done = 0usize;
    for &(base, len) in v {
        if len == 0 {
            continue;
        }
        let n = match io(off + done as u64, base, len) {
            Ok(n) => n,
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        };
        done += n;
        if n < len {
            break;
        }
    }
    Ok(done)
}

fn readv_at(cx: &Cx, f: &File, off: u64, v: &[(u64, usize)]) -> Result<usize, Errno> {
    each_segment(off, v, |o, base, len| do_read(cx, f, o, base, len))
}

fn writev_at(cx: &Cx, f: &File, off: u64, v: &[(u64, usize)]) -> Result<usize, Errno> {
    each_segment(off, v, |o, base, len| do_write(cx, f, o, base, len))
}

pub fn readv(cx: &Cx, a: &Args, rv: &mut [i64; 2]) -> SysResult {
    let f = cx.getf(a.int(0))?;
    let v = iovecs(cx, a.u(1), a.int(2))?;
    let mut off = f.offset.lock();
    let n = readv_at(cx, &f, *off, &v)?;
    *off += n as u64;
    rv[0] = n as i64;
    Ok(())
}

pub fn writev(cx: &Cx, a: &Args, rv: &mut [i64; 2]) -> SysResult {
    let f = cx.getf(a.int(0))?;
    let v = iovecs(cx, a.u(1), a.int(2))?;
    let mut off = f.offset.lock();
    if f.status_flags() & O_APPEND != 0 {
        *off = file_size(&f)?;
    }
    let n = writev_at(cx, &f, *off, &v)?;
    *off += n as u64;
    rv[0] = n as i64;
    Ok(())
}

pub fn preadv(cx: &Cx, a: &Args, rv: &mut [i64; 2]) -> SysResult {
    let f = cx.getf(a.int(0))?;
    let v = iovecs(cx, a.u(1), a.int(2))?;
    let off = positional(&f, a.off(4))?;
    rv[0] = readv_at(cx, &f, off, &v)? as i64;
    Ok(())
}

pub fn pwritev(cx: &Cx, a: &Args, rv: &mut [i64; 2]) -> SysResult {
    let f = cx.getf(a.int(0))?;
    let v = iovecs(cx, a.u(1), a.int(2))?;
    let off = positional(&f, a.off(4))?;
    rv[0] = writev_at(cx, &f, off, &v)? as i64;
    Ok(())
}
