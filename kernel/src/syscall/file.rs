//! Descriptor I/O: read, write, pread, pwrite, lseek, ftruncate, fsync,
//! fdatasync, fchmod, fstat, close.

use netbsd_abi::errno::*;
use netbsd_abi::fcntl::*;
use netbsd_abi::Errno;

use super::{stat_of, Args, Cx, SysResult};
use crate::proc::{Backend, File};
use crate::vfs::{FileKind, SetAttr};

/// Bytes moved per copy step: a large transfer is done in pieces of this
/// size, so memory use stays bounded whatever length a caller asks for.
pub const IO_CHUNK: usize = 1 << 20;
/// The largest transfer one call accepts (`SSIZE_MAX`).
const MAX_IO: u64 = i64::MAX as u64;

thread_local! {
    /// A transfer buffer kept per thread between calls, so a syscall does
    /// not allocate and zero a fresh one each time.
    static IOBUF: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Run `f` with a buffer of `n` bytes (contents unspecified: the caller
/// fills what it uses). Reentrant: a nested call gets its own buffer.
fn with_buf<R>(n: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
    let mut b = IOBUF.with(|c| c.take());
    if b.len() < n {
        b.resize(n, 0);
    }
    let r = f(&mut b[..n]);
    if b.len() <= IO_CHUNK {
        IOBUF.with(|c| c.set(b));
    }
    r
}

fn check_len(len: u64) -> Result<usize, Errno> {
    if len > MAX_IO {
        return Err(Errno(EINVAL));
    }
    Ok(len.min(usize::MAX as u64) as usize)
}

fn read_at(f: &File, off: u64, buf: &mut [u8]) -> Result<usize, Errno> {
    match &f.backend {
        Backend::Dev(d) => d.read(off, buf),
        Backend::Fs => {
            let vn = f.vnode();
            if vn.mnt.is_dead() {
                return Err(Errno(EBADF));
            }
            vn.mnt.fs.read(vn.ino, off, buf)
        }
    }
}

fn write_at(f: &File, off: u64, buf: &[u8]) -> Result<usize, Errno> {
    match &f.backend {
        Backend::Dev(d) => d.write(off, buf),
        Backend::Fs => {
            let vn = f.vnode();
            vn.writable()?;
            vn.mnt.fs.write(vn.ino, off, buf)
        }
    }
}

/// Read `len` bytes at `off` into user memory at `uaddr`, in chunks.
/// Returns the bytes moved; an error after some progress ends the
/// transfer short instead.
pub(super) fn do_read(cx: &Cx, f: &File, off: u64, uaddr: u64, len: usize) -> Result<usize, Errno> {
    if !f.readable() {
        return Err(Errno(EBADF));
    }
    if f.kind == FileKind::Dir {
        return Err(Errno(EISDIR));
    }
    if off > MAX_IO {
        return Err(Errno(EINVAL));
    }
    with_buf(len.min(IO_CHUNK), |buf| {
        read_chunks(cx, f, off, uaddr, len, buf)
    })
}

fn read_chunks(
    cx: &Cx,
    f: &File,
    off: u64,
    uaddr: u64,
    len: usize,
    buf: &mut [u8],
) -> Result<usize, Errno> {
    let mut done = 0usize;
    while done < len {
        let n = (len - done).min(IO_CHUNK);
        let pos = match off.checked_add(done as u64) {
            Some(p) if p <= MAX_IO => p,
            _ => break,
        };
        let got = match read_at(f, pos, &mut buf[..n]) {
            Ok(g) => g,
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        };
        if got == 0 {
            break;
        }
        if let Err(e) = cx.copyout(&buf[..got], uaddr + done as u64) {
            if done == 0 {
                return Err(e);
            }
            break;
        }
        done += got;
        if got < n {
            break;
        }
    }
    Ok(done)
}

/// Write `len` bytes from user memory at `uaddr` at `off`, in chunks.
#[allow(clippy::unnecessary_map_or)] // is_none_or is newer than the MSRV
pub(super) fn do_write(
    cx: &Cx,
    f: &File,
    off: u64,
    uaddr: u64,
    len: usize,
) -> Result<usize, Errno> {
    if !f.writable() {
        return Err(Errno(EBADF));
    }
    if f.kind == FileKind::Dir {
        return Err(Errno(EISDIR));
    }
    if len == 0 {
        return Ok(0);
    }
    if off.checked_add(len as u64).map_or(true, |e| e > MAX_IO) {
        return Err(Errno(EFBIG));
    }
    if let Backend::Dev(d) = &f.backend {
        if let Some(c) = d.cached.as_ref().filter(|c| c.is_whole_block(off, len)) {
            // One whole cached block: copy in straight into its memory.
            c.write_block_with(off, len, |dst| cx.copyin(uaddr, dst))?;
            return Ok(len);
        }
    }
    with_buf(len.min(IO_CHUNK), |buf| {
        write_chunks(cx, f, off, uaddr, len, buf)
    })
}

fn write_chunks(
    cx: &Cx,
    f: &File,
    off: u64,
    uaddr: u64,
    len: usize,
    buf: &mut [u8],
) -> Result<usize, Errno> {
    let mut done = 0usize;
    while done < len {
        let n = (len - done).min(IO_CHUNK);
        if let Err(e) = cx.copyin(uaddr + done as u64, &mut buf[..n]) {
            if done == 0 {
                return Err(e);
            }
            break;
        }
        let w = match write_at(f, off + done as u64, &buf[..n]) {
            Ok(w) => w,
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        };
        done += w;
        if w < n {
            break;
        }
    }
    Ok(done)
}

pub(super) fn file_size(f: &File) -> Result<u64, Errno> {
    match &f.backend {
        Backend::Dev(d) => Ok(d.size),
        Backend::Fs => Ok(f.vnode().getattr()?.size),
    }
}

pub fn read(cx: &Cx, a: &Args, rv: &mut [i64; 2]) -> SysResult {
    let f = cx.getf(a.int(0))?;
    let len = check_len(a.u(2))?;
    let mut off = f.offset.lock();
    let n = do_read(cx, &f, *off, a.u(1), len)?;
    *off += n as u64;
    rv[0] = n as i64;
    Ok(())
}

pub fn write(cx: &Cx, a: &Args, rv: &mut [i64; 2]) -> SysResult {
    let f = cx.getf(a.int(0))?;
    let len = check_len(a.u(2))?;
    let mut off = f.offset.lock();
    if f.status_flags() & O_APPEND != 0 {
        *off = file_size(&f)?;
    }
    let n = do_write(cx, &f, *off, a.u(1), len)?;
    *off += n as u64;
    rv[0] = n as i64;
    Ok(())
}

pub(super) fn positional(f: &File, off: i64) -> Result<u64, Errno> {
    if f.kind == FileKind::Fifo || f.kind == FileKind::Sock {
        return Err(Errno(ESPIPE));
    }
    if off < 0 {
        return Err(Errno(EINVAL));
    }
    Ok(off as u64)
}

pub fn pread(cx: &Cx, a: &Args, rv: &mut [i64; 2]) -> SysResult {
    let f = cx.getf(a.int(0))?;
    let len = check_len(a.u(2))?;
    let off = positional(&f, a.off(4))?;
    rv[0] = do_read(cx, &f, off, a.u(1), len)? as i64;
    Ok(())
}

pub fn pwrite(cx: &Cx, a: &Args, rv: &mut [i64; 2]) -> SysResult {
    let f = cx.getf(a.int(0))?;
    let len = check_len(a.u(2))?;
    let off = positional(&f, a.off(4))?;
    rv[0] = do_write(cx, &f, off, a.u(1), len)? as i64;
    Ok(())
}

pub fn lseek(cx: &Cx, a: &Args, rv: &mut [i64; 2]) -> SysResult {
    let f = cx.getf(a.int(0))?;
    let off = a.off(2);
    let whence = a.int(3);
    if f.kind == FileKind::Fifo || f.kind == FileKind::Sock {
        return Err(Errno(ESPIPE));
    }
    let mut cur = f.offset.lock();
    let base: i64 = match whence {
        SEEK_SET => 0,
        SEEK_CUR => *cur as i64,
        SEEK_END => file_size(&f)?.min(i64::MAX as u64) as i64,
        _ => return Err(Errno(EINVAL)),
    };
    let new = base.checked_add(off).ok_or(Errno(EOVERFLOW))?;
    if new < 0 {
        return Err(Errno(EINVAL));
    }
    *cur = new as u64;
    rv[0] = new;
    Ok(())
}

pub fn ftruncate(cx: &Cx, a: &Args) -> SysResult {
    let f = cx.getf(a.int(0))?;
    let len = a.off(2);
    if len < 0 {
        return Err(Errno(EINVAL));
    }
    if !f.writable() {
        return Err(Errno(EINVAL));
    }
    match (&f.backend, f.kind) {
        (Backend::Fs, FileKind::Reg) => {
            let vn = f.vnode();
            vn.writable()?;
            vn.mnt.fs.setattr(
                vn.ino,
                &SetAttr {
                    size: Some(len as u64),
                    ..Default::default()
                },
            )?;
            Ok(())
        }
        (_, FileKind::Dir) => Err(Errno(EISDIR)),
        _ => Err(Errno(EINVAL)),
    }
}

pub fn fsync(cx: &Cx, a: &Args) -> SysResult {
    let f = cx.getf(a.int(0))?;
    match &f.backend {
        Backend::Dev(d) => d.sync(),
        Backend::Fs => {
            let vn = f.vnode();
            if vn.mnt.is_dead() {
                return Err(Errno(EBADF));
            }
            vn.mnt.fs.fsync(vn.ino)
        }
    }
}

pub fn fchmod(cx: &Cx, a: &Args) -> SysResult {
    let f = cx.getf(a.int(0))?;
    super::attr::chmod_vn(cx, f.vnode(), a.mode(1))
}

pub fn fstat(cx: &Cx, a: &Args) -> SysResult {
    let f = cx.getf(a.int(0))?;
    let mut st = stat_of(f.vnode())?;
    if let Backend::Dev(d) = &f.backend {
        st.size = d.size as i64;
    }
    cx.copyout(&st.encode(), a.u(1))
}

pub fn close(cx: &Cx, a: &Args) -> SysResult {
    let f = cx.p.fdtable().lock().remove(a.int(0))?;
    drop(f);
    Ok(())
}
