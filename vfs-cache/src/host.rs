//! [`HostDrive`]: a host file (disk image or block device) as a
//! [`BlockDevice`], through the hypercall layer: opened with
//! `RUMPUSER_OPEN_BIO`, read and written with `rumpuser_bio` (synchronous
//! form, the virtual CPU released while the host works), flushed with
//! `rumpuser_syncfd(SYNCFD_WRITE | SYNCFD_SYNC)`.
//!
//! It is also the kernel's one handle on a drive's host file, whatever the
//! drive's type: opened (and created) once, locked against other servers
//! ([`HostDrive::lock`]), read and written directly by `chr` and `reg`
//! drives ([`HostDrive::pread`], [`HostDrive::pwrite`]), and flushed once
//! per sync — by the cache for a `blk` drive, by [`HostDrive::sync`]
//! otherwise.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use netbsd_abi::errno::{EACCES, EAGAIN, EINVAL, EIO};
use netbsd_abi::Errno;
use rumpuser::bio;
use rumpuser::file::{
    self, FileType, HostFile, RumpuserIovec, OPEN_ACCMODE, OPEN_BIO, OPEN_CREATE, OPEN_RDONLY,
    OPEN_RDWR, SYNCFD_SYNC, SYNCFD_WRITE,
};

use crate::BlockDevice;

/// Iovecs per gathering write (well under the host's `IOV_MAX`).
const MAX_IOV: usize = 512;

/// Alignment of buffers, offsets and lengths for direct I/O (any host
/// logical block size up to a page).
const DIRECT_ALIGN: usize = 4096;

/// A drive image that another process (or another open in this one)
/// holds a conflicting lock on: one server per image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("locked by another process (in use by another server?)")]
pub struct ImageLocked;

/// Set an open-file-description lock of type `ty` (`F_WRLCK`, `F_RDLCK`,
/// `F_UNLCK`) on the whole file `fd`, never waiting.
fn ofd_setlk(fd: BorrowedFd<'_>, ty: libc::c_int) -> Result<(), Errno> {
    // SAFETY: flock is plain old data; all zeros is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = ty as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = 0;
    fl.l_len = 0;
    // SAFETY: fcntl(F_OFD_SETLK) with a valid pointer to a flock (l_pid
    // 0, as OFD locks require) on a descriptor borrowed for the call.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_SETLK, &fl) } != 0 {
        return Err(last_errno());
    }
    Ok(())
}

/// Lock a drive image as qemu does: an open-file-description lock on the
/// whole file, exclusive (`write`) or shared, held while `fd`'s open file
/// lives. Never waits: [`ImageLocked`] when another open of the file (in
/// another process, or another in this one) holds a conflicting lock.
/// File systems that lock nothing pass: that is no reason to refuse the
/// image.
pub fn lock_image(fd: BorrowedFd<'_>, write: bool) -> Result<(), ImageLocked> {
    match ofd_setlk(fd, if write { libc::F_WRLCK } else { libc::F_RDLCK }) {
        Err(e) if e.0 == EAGAIN || e.0 == EACCES => Err(ImageLocked),
        _ => Ok(()),
    }
}

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
        HostDrive::open_flags(path, size, OPEN_RDWR, true)
    }

    /// As [`HostDrive::open`], read-only: writes fail (`EBADF`).
    pub fn open_readonly(path: &str, size: Option<u64>) -> Result<HostDrive, Errno> {
        HostDrive::open_flags(path, size, OPEN_RDONLY, false)
    }

    /// Open `path` read-write for a kernel drive: with `create`, a missing
    /// file is created (mode 0644 less the host's umask, as
    /// `rumpuser_open` does); `direct` adds the `O_DIRECT` descriptor for
    /// the cache's aligned writes (only a cached drive wants it). `size` as
    /// for [`HostDrive::open`]; growing the file to it is the caller's
    /// business ([`HostDrive::set_len`]).
    pub fn open_with(
        path: &str,
        size: Option<u64>,
        create: bool,
        direct: bool,
    ) -> Result<HostDrive, Errno> {
        let create = if create { OPEN_CREATE } else { 0 };
        HostDrive::open_flags(path, size, OPEN_RDWR | create, direct)
    }

    fn open_flags(
        path: &str,
        size: Option<u64>,
        mode: i32,
        direct: bool,
    ) -> Result<HostDrive, Errno> {
        let file = HostFile::open(path, mode | OPEN_BIO)?;
        let size = match size {
            Some(s) => s,
            None => file.size()?,
        };
        if i64::try_from(size).is_err() {
            return Err(Errno(EINVAL));
        }
        let direct = if direct && mode & OPEN_ACCMODE == OPEN_RDWR {
            open_direct(path)
        } else {
            None
        };
        Ok(HostDrive {
            file,
            size,
            path: path.to_string(),
            direct,
            direct_ok: AtomicBool::new(true),
        })
    }

    /// The host path, as given.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The host descriptor, borrowed.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.fd()
    }

    /// Read up to `buf.len()` bytes at file offset `off`, straight from
    /// the host file (no cache, no bounds but the file's end); short only
    /// at the end of the file.
    pub fn pread(&self, buf: &mut [u8], off: u64) -> Result<usize, Errno> {
        self.file.read_at(buf, off)
    }

    /// Write all of `buf` at file offset `off`, straight to the host file.
    pub fn pwrite(&self, buf: &[u8], off: u64) -> Result<usize, Errno> {
        let n = self.file.write_at(buf, off)?;
        if n != buf.len() {
            return Err(Errno(EIO));
        }
        Ok(n)
    }

    /// `rumpuser_syncfd`: make the data written so far durable (the same
    /// flush as [`BlockDevice::flush`]).
    pub fn sync(&self) -> Result<(), Errno> {
        self.file.syncfd(SYNCFD_WRITE | SYNCFD_SYNC, 0, 0)
    }

    /// The host file's size now (a block device's size for a block
    /// device), not the drive's.
    pub fn file_size(&self) -> Result<u64, Errno> {
        self.file.size()
    }

    /// Whether the host file is a regular file (not a block device).
    pub fn is_regular(&self) -> bool {
        matches!(self.file.file_type(), Ok(FileType::Reg))
    }

    /// Set the host file's length (to extend an image).
    pub fn set_len(&self, size: u64) -> Result<(), Errno> {
        self.file.set_len(size)
    }

    /// Device and inode of the open file.
    pub fn id(&self) -> Result<(u64, u64), Errno> {
        // SAFETY: stat is plain old data; fstat fills it for a descriptor
        // we own.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above; `st` is a valid out-pointer.
        if unsafe { libc::fstat(self.file.fd().as_raw_fd(), &mut st) } != 0 {
            return Err(last_errno());
        }
        Ok((st.st_dev, st.st_ino))
    }

    /// Take an open-file-description lock on the whole file, as qemu does
    /// for disk images: exclusive (`write`) or shared. Never waits:
    /// `Err(EAGAIN)` when another open of the file (another process, or
    /// another open in this one) holds a conflicting lock. The lock lasts
    /// as long as this drive.
    pub fn lock(&self, write: bool) -> Result<(), Errno> {
        lock_image(self.file.fd(), write).map_err(|_| Errno(EAGAIN))
    }

    /// Give up the lock [`HostDrive::lock`] took (a halted kernel whose
    /// flush completed leaves its images to others). Nothing to undo is
    /// no error.
    pub fn unlock(&self) {
        let _ = ofd_setlk(self.file.fd(), libc::F_UNLCK);
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
                && bufs
                    .iter()
                    .all(|b| b.as_ptr() as usize & mask == 0 && b.len() & mask == 0);
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
        self.sync()
    }
}

/// The host's `errno` as a NetBSD errno.
fn last_errno() -> Errno {
    Errno::from(std::io::Error::last_os_error())
}

/// Open `path` again for writing and switch the descriptor to `O_DIRECT`;
/// `None` where the host does not support that (tmpfs, some network file
/// systems). The file is opened through the hypercall layer; only the
/// status flag is set here.
fn open_direct(path: &str) -> Option<HostFile> {
    let f = HostFile::open(path, OPEN_RDWR | OPEN_BIO).ok()?;
    // SAFETY: fcntl(F_GETFL) on a descriptor we own; no memory involved.
    let fl = unsafe { libc::fcntl(f.fd().as_raw_fd(), libc::F_GETFL) };
    if fl < 0 {
        return None;
    }
    // SAFETY: fcntl(F_SETFL) on a descriptor we own; no memory involved.
    if unsafe { libc::fcntl(f.fd().as_raw_fd(), libc::F_SETFL, fl | libc::O_DIRECT) } != 0 {
        return None;
    }
    Some(f)
}

/// Write all of `bufs`, gathered, at `off` on `fd`.
fn write_gather(fd: BorrowedFd<'_>, bufs: &[&[u8]], off: u64) -> Result<(), Errno> {
    let mut iov: Vec<RumpuserIovec> = bufs
        .iter()
        .filter(|b| !b.is_empty())
        .map(|b| RumpuserIovec {
            iov_base: b.as_ptr() as *mut std::ffi::c_void,
            iov_len: b.len(),
        })
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
