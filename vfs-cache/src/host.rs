//! [`HostDrive`]: a host file (disk image or block device) as a
//! [`BlockDevice`], through the hypercall layer: opened with
//! `RUMPUSER_OPEN_BIO`, read and written with `rumpuser_bio` (synchronous
//! form, the virtual CPU released while the host works), flushed with
//! `rumpuser_syncfd(SYNCFD_WRITE | SYNCFD_SYNC)`.

use std::sync::atomic::{AtomicBool, Ordering};

use netbsd_abi::errno::{EINVAL, EIO};
use netbsd_abi::Errno;
use rumpuser::bio;
use rumpuser::file::{self, HostFile, RumpuserIovec, OPEN_BIO, OPEN_RDONLY, OPEN_RDWR, SYNCFD_SYNC, SYNCFD_WRITE};

use crate::BlockDevice;

/// Iovecs per gathering write (well under the host's `IOV_MAX`).
const MAX_IOV: usize = 512;

/// Alignment of buffers, offsets and lengths for direct I/O (any host
/// logical block size up to a page).
const DIRECT_ALIGN: usize = 4096;

/// A host file as a drive.
#[derive(Debug)]
pub struct HostDrive {
    file: HostFile,
    size: u64,
    path: String,
    /// A second descriptor of the same file with `O_DIRECT` (writable
    /// drives, where the host allows it): page-aligned gathered writes go
    /// through it, straight from the cache's memory to the host disk,
    /// skipping the host page cache (a copy of every byte, and fresh
    /// page-cache memory to fault in). Everything else uses `file`.
    direct: Option<HostFile>,
    /// Cleared if the host refuses a direct write that we thought aligned.
    direct_ok: AtomicBool,
}

impl HostDrive {
    /// Open the existing host file or block device at `path` for reading and
    /// writing. The drive's size is `size` if given, else the file's size
    /// (a block device's size for a block device). Nothing is created or
    /// extended here: the caller prepares the image first. If `size` is
    /// larger than the file, reads of the part past the file's end return
    /// zeros and writes there extend the file.
    pub fn open(path: &str, size: Option<u64>) -> Result<HostDrive, Errno> {
        HostDrive::open_flags(path, size, OPEN_RDWR)
    }

    /// As [`HostDrive::open`], read-only: writes fail (`EBADF`).
    pub fn open_readonly(path: &str, size: Option<u64>) -> Result<HostDrive, Errno> {
        HostDrive::open_flags(path, size, OPEN_RDONLY)
    }

    fn open_flags(path: &str, size: Option<u64>, mode: i32) -> Result<HostDrive, Errno> {
        let file = HostFile::open(path, mode | OPEN_BIO)?;
        let size = match size {
            Some(s) => s,
            None => file.size()?,
        };
        if i64::try_from(size).is_err() {
            return Err(Errno(EINVAL));
        }
        let direct = if mode == OPEN_RDWR { open_direct(path) } else { None };
        Ok(HostDrive { file, size, path: path.to_string(), direct, direct_ok: AtomicBool::new(true) })
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// The host descriptor.
    pub fn fd(&self) -> i32 {
        self.file.fd()
    }

    fn check(&self, off: u64, len: usize) -> Result<i64, Errno> {
        match off.checked_add(len as u64) {
            Some(end) if end <= self.size => i64::try_from(off).map_err(|_| Errno(EINVAL)),
            _ => Err(Errno(EINVAL)),
        }
    }
}

impl BlockDevice for HostDrive {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, buf: &mut [u8], off: u64) -> Result<(), Errno> {
        let off = self.check(off, buf.len())?;
        let n = bio::read_at(self.file.fd(), buf, off)?;
        // Short only at the end of the file: the rest of the drive reads
        // as zeros.
        buf[n..].fill(0);
        Ok(())
    }

    fn write_at(&self, buf: &[u8], off: u64) -> Result<(), Errno> {
        let off = self.check(off, buf.len())?;
        let n = bio::write_at(self.file.fd(), buf, off, false)?;
        if n != buf.len() {
            return Err(Errno(EIO));
        }
        Ok(())
    }

    /// One gathering `pwritev` (through `rumpuser_iovwrite`) for all of
    /// `bufs`, continued after a short write; with direct I/O when every
    /// buffer, length and the offset are page-aligned.
    fn write_vectored_at(&self, bufs: &[&[u8]], off: u64) -> Result<(), Errno> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        self.check(off, total)?;
        if let Some(d) = &self.direct {
            let mask = DIRECT_ALIGN - 1;
            let aligned = off & mask as u64 == 0
                && bufs.iter().all(|b| b.as_ptr() as usize & mask == 0 && b.len() & mask == 0);
            if aligned && self.direct_ok.load(Ordering::Relaxed) {
                match write_gather(d.fd(), bufs, off) {
                    Err(Errno(EINVAL)) => {
                        // The host wants other alignment: stop trying.
                        self.direct_ok.store(false, Ordering::Relaxed);
                    }
                    r => return r,
                }
            }
        }
        write_gather(self.file.fd(), bufs, off)
    }

    fn flush(&self) -> Result<(), Errno> {
        self.file.syncfd(SYNCFD_WRITE | SYNCFD_SYNC, 0, 0)
    }
}

/// Open `path` again for writing and switch the descriptor to `O_DIRECT`;
/// `None` where the host does not support that (tmpfs, some network file
/// systems). The file is opened through the hypercall layer; only the
/// status flag is set here.
fn open_direct(path: &str) -> Option<HostFile> {
    let f = HostFile::open(path, OPEN_RDWR | OPEN_BIO).ok()?;
    // SAFETY: fcntl(F_GETFL) on a descriptor we own; no memory involved.
    let fl = unsafe { libc::fcntl(f.fd(), libc::F_GETFL) };
    if fl < 0 {
        return None;
    }
    // SAFETY: fcntl(F_SETFL) on a descriptor we own; no memory involved.
    if unsafe { libc::fcntl(f.fd(), libc::F_SETFL, fl | libc::O_DIRECT) } != 0 {
        return None;
    }
    Some(f)
}

/// Write all of `bufs`, gathered, at `off` on `fd`.
fn write_gather(fd: i32, bufs: &[&[u8]], off: u64) -> Result<(), Errno> {
    let mut iov: Vec<RumpuserIovec> = bufs
        .iter()
        .filter(|b| !b.is_empty())
        .map(|b| RumpuserIovec { iov_base: b.as_ptr() as *mut std::ffi::c_void, iov_len: b.len() })
        .collect();
    let mut first = 0;
    let mut pos = off;
    while first < iov.len() {
        let end = iov.len().min(first + MAX_IOV);
        let at = i64::try_from(pos).map_err(|_| Errno(EINVAL))?;
        // SAFETY: every iovec names (the unwritten rest of) one of the
        // borrowed `bufs`, readable for its length during this call.
        let n = unsafe { file::iovwrite(fd, &iov[first..end], at)? };
        if n == 0 {
            return Err(Errno(EIO));
        }
        pos += n as u64;
        let mut n = n;
        while first < end && n >= iov[first].iov_len {
            n -= iov[first].iov_len;
            first += 1;
        }
        if n > 0 {
            let v = &mut iov[first];
            // SAFETY: n < iov_len, so the advanced pointer stays inside
            // the same buffer.
            v.iov_base = unsafe { (v.iov_base as *mut u8).add(n) } as *mut std::ffi::c_void;
            v.iov_len -= n;
        }
    }
    Ok(())
}
