//! Host files: `rumpuser_open`/`close`, `rumpuser_getfileinfo`,
//! `rumpuser_iovread`/`iovwrite`, `rumpuser_syncfd`; and [`HostFile`].
//!
//! Open flags are `RUMPUSER_OPEN_*`, never host `O_*`. Every host call that
//! may block runs with the virtual CPU released ([`crate::upcalls::blocking`]).

use std::ffi::{c_char, c_int, CStr, CString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

use nix::fcntl::OFlag;
use nix::sys::stat::{FileStat, Mode};
use nix::unistd::Whence;

use crate::errno::{Errno, EFAULT, EINVAL};
use crate::upcalls::blocking;

/// `RUMPUSER_OPEN_RDONLY`: open for reading.
pub const OPEN_RDONLY: i32 = 0x0000;
/// `RUMPUSER_OPEN_WRONLY`: open for writing.
pub const OPEN_WRONLY: i32 = 0x0001;
/// `RUMPUSER_OPEN_RDWR`: open for reading and writing.
pub const OPEN_RDWR: i32 = 0x0002;
/// Mask of the access mode in the open flags.
pub const OPEN_ACCMODE: i32 = 0x0003;
/// Create the file if it does not exist (mode 0644).
pub const OPEN_CREATE: i32 = 0x0004;
/// With `OPEN_CREATE`: fail if it exists.
pub const OPEN_EXCL: i32 = 0x0008;
/// The file is used for block I/O (`rumpuser_bio`).
pub const OPEN_BIO: i32 = 0x0010;
const OPEN_ALL: i32 = OPEN_ACCMODE | OPEN_CREATE | OPEN_EXCL | OPEN_BIO;

/// `RUMPUSER_FT_OTHER`: neither directory, regular file nor device.
pub const FT_OTHER: i32 = 0;
/// `RUMPUSER_FT_DIR`: a directory.
pub const FT_DIR: i32 = 1;
/// `RUMPUSER_FT_REG`: a regular file.
pub const FT_REG: i32 = 2;
/// `RUMPUSER_FT_BLK`: a block device (its size is the device's).
pub const FT_BLK: i32 = 3;
/// `RUMPUSER_FT_CHR`: a character device.
pub const FT_CHR: i32 = 4;

/// `rumpuser_syncfd`: the sync concerns reads.
pub const SYNCFD_READ: i32 = 0x01;
/// `rumpuser_syncfd`: the sync concerns writes.
pub const SYNCFD_WRITE: i32 = 0x02;
/// `rumpuser_syncfd`: reads and writes.
pub const SYNCFD_BOTH: i32 = SYNCFD_READ | SYNCFD_WRITE;
/// Order: writes before this are stable before writes after it.
pub const SYNCFD_BARRIER: i32 = 0x04;
/// Durability: everything written is on stable storage.
pub const SYNCFD_SYNC: i32 = 0x08;
const SYNCFD_ALL: i32 = SYNCFD_BOTH | SYNCFD_BARRIER | SYNCFD_SYNC;

/// `RUMPUSER_IOV_NOSEEK`: read or write at the file's current position.
pub const IOV_NOSEEK: i64 = -1;

/// Linux `BLKGETSIZE64`: `_IOR(0x12, 114, size_t)`.
const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;

/// `RUMPUSER_FT_*` as a type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum FileType {
    /// [`FT_OTHER`].
    Other = FT_OTHER,
    /// [`FT_DIR`].
    Dir = FT_DIR,
    /// [`FT_REG`].
    Reg = FT_REG,
    /// [`FT_BLK`].
    Blk = FT_BLK,
    /// [`FT_CHR`].
    Chr = FT_CHR,
}

impl FileType {
    fn from_mode(mode: libc::mode_t) -> FileType {
        match mode & libc::S_IFMT {
            libc::S_IFDIR => FileType::Dir,
            libc::S_IFREG => FileType::Reg,
            libc::S_IFBLK => FileType::Blk,
            libc::S_IFCHR => FileType::Chr,
            _ => FileType::Other,
        }
    }

    /// The `RUMPUSER_FT_*` value.
    pub fn as_raw(self) -> i32 {
        self as i32
    }
}

/// `RUMPUSER_OPEN_*` → host `open(2)` flags; `EINVAL` for unknown bits or
/// access mode 3.
pub fn host_open_flags(flags: i32) -> Result<c_int, Errno> {
    if flags & !OPEN_ALL != 0 {
        return Err(Errno(EINVAL));
    }
    let mut h = match flags & OPEN_ACCMODE {
        OPEN_RDONLY => libc::O_RDONLY,
        OPEN_WRONLY => libc::O_WRONLY,
        OPEN_RDWR => libc::O_RDWR,
        _ => return Err(Errno(EINVAL)),
    };
    if flags & OPEN_CREATE != 0 {
        h |= libc::O_CREAT;
    }
    if flags & OPEN_EXCL != 0 {
        h |= libc::O_EXCL;
    }
    Ok(h | libc::O_CLOEXEC)
}

fn open_cstr(path: &CStr, flags: i32) -> Result<c_int, Errno> {
    let hflags = host_open_flags(flags)?;
    // The mode is used only with O_CREAT.
    let (flags, mode) = (
        OFlag::from_bits_retain(hflags),
        Mode::from_bits_truncate(0o644),
    );
    blocking(std::ptr::null_mut(), || {
        nix::fcntl::open(path, flags, mode).map_err(crate::errno::nix)
    })
}

fn to_cstring(path: &str) -> Result<CString, Errno> {
    CString::new(path).map_err(|_| Errno(EINVAL))
}

fn fstat(fd: BorrowedFd<'_>) -> Result<FileStat, Errno> {
    nix::sys::stat::fstat(fd.as_raw_fd()).map_err(crate::errno::nix)
}

/// The size of the device open on `fd`: `BLKGETSIZE64`, else the end
/// offset.
fn device_size(fd: BorrowedFd<'_>) -> Result<u64, Errno> {
    let mut size: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 to `size`; `fd` is open.
    if unsafe { libc::ioctl(fd.as_raw_fd(), BLKGETSIZE64 as _, &mut size as *mut u64) } == 0 {
        return Ok(size);
    }
    let end = nix::unistd::lseek(fd.as_raw_fd(), 0, Whence::SeekEnd).map_err(crate::errno::nix)?;
    Ok(end as u64)
}

fn getfileinfo_cstr(path: &CStr) -> Result<(u64, FileType), Errno> {
    blocking(std::ptr::null_mut(), || {
        let st = nix::sys::stat::stat(path).map_err(crate::errno::nix)?;
        let ft = FileType::from_mode(st.st_mode);
        let size = match ft {
            FileType::Blk | FileType::Chr => {
                // Devices: ask the device. A block device must answer; a
                // character device that cannot say has size 0.
                let oflags = OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
                match nix::fcntl::open(path, oflags, Mode::empty()) {
                    Err(e) if ft == FileType::Blk => return Err(crate::errno::nix(e)),
                    Err(_) => 0,
                    Ok(fd) => {
                        // SAFETY: `fd` was just opened and is owned (and
                        // closed) only here.
                        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                        match device_size(fd.as_fd()) {
                            Ok(n) => n,
                            Err(e) if ft == FileType::Blk => return Err(e),
                            Err(_) => 0,
                        }
                    }
                }
            }
            _ => st.st_size as u64,
        };
        Ok((size, ft))
    })
}

/// The size and type of the host file at `path`. Block devices report the
/// device's size.
pub fn getfileinfo(path: &str) -> Result<(u64, FileType), Errno> {
    getfileinfo_cstr(&to_cstring(path)?)
}

/// Flush `fd` per `RUMPUSER_SYNCFD_*` `flags`: `SYNC` makes everything
/// durable (`fsync`); a plain `WRITE` or a `BARRIER` makes written data
/// durable (`fdatasync`), which also orders it before later writes.
/// Read-only syncing needs nothing. Unknown flags, or neither `READ` nor
/// `WRITE`, are `EINVAL`. (`start`/`len` name the range; the whole file is
/// flushed.)
pub fn syncfd(fd: impl AsFd, flags: i32, start: u64, len: u64) -> Result<(), Errno> {
    let _ = (start, len);
    let fd = fd.as_fd().as_raw_fd();
    if flags & !SYNCFD_ALL != 0 || flags & SYNCFD_BOTH == 0 {
        return Err(Errno(EINVAL));
    }
    if flags & SYNCFD_WRITE == 0 {
        return Ok(());
    }
    blocking(std::ptr::null_mut(), || {
        let r = if flags & SYNCFD_SYNC != 0 {
            nix::unistd::fsync(fd)
        } else {
            nix::unistd::fdatasync(fd)
        };
        r.map_err(crate::errno::nix)
    })
}

/// Read into `buf` at `off` until it is full, end of file, or an error
/// (after some bytes: the count so far). No unscheduling here.
pub(crate) fn pread_full(fd: BorrowedFd<'_>, buf: &mut [u8], off: i64) -> (usize, Option<Errno>) {
    let mut done = 0usize;
    while done < buf.len() {
        match nix::sys::uio::pread(fd, &mut buf[done..], off.saturating_add(done as i64)) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return (done, Some(crate::errno::nix(e))),
        }
    }
    (done, None)
}

/// Write `buf` at `off` completely, or until an error (reporting the count
/// written before it). No unscheduling here.
pub(crate) fn pwrite_full(fd: BorrowedFd<'_>, buf: &[u8], off: i64) -> (usize, Option<Errno>) {
    let mut done = 0usize;
    while done < buf.len() {
        match nix::sys::uio::pwrite(fd, &buf[done..], off.saturating_add(done as i64)) {
            Ok(0) => return (done, Some(Errno(crate::errno::EIO))),
            Ok(n) => done += n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return (done, Some(crate::errno::nix(e))),
        }
    }
    (done, None)
}

fn check_off(off: u64) -> Result<i64, Errno> {
    i64::try_from(off).map_err(|_| Errno(EINVAL))
}

/// A host file opened for the kernel; the descriptor is closed on drop.
#[derive(Debug)]
pub struct HostFile {
    fd: OwnedFd,
}

impl AsFd for HostFile {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl HostFile {
    /// Open `path` with `RUMPUSER_OPEN_*` `flags`.
    pub fn open(path: &str, flags: i32) -> Result<HostFile, Errno> {
        let c = to_cstring(path)?;
        let fd = open_cstr(&c, flags)?;
        // SAFETY: `fd` was just opened and has no other owner.
        Ok(unsafe { HostFile::from_raw_fd(fd) })
    }

    /// Take ownership of an open descriptor.
    ///
    /// # Safety
    /// `fd` is open and owned by nobody else.
    pub unsafe fn from_raw_fd(fd: i32) -> HostFile {
        HostFile {
            // SAFETY: per the caller.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        }
    }

    /// Give up ownership of the descriptor (it is not closed).
    pub fn into_raw_fd(self) -> i32 {
        self.fd.into_raw_fd()
    }

    /// The host descriptor, borrowed (for [`crate::bio`]).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Read at `off` until `buf` is full or end of file; returns the count.
    pub fn read_at(&self, buf: &mut [u8], off: u64) -> Result<usize, Errno> {
        let off = check_off(off)?;
        let (n, err) = blocking(std::ptr::null_mut(), || {
            pread_full(self.fd.as_fd(), buf, off)
        });
        match err {
            Some(e) if n == 0 => Err(e),
            _ => Ok(n),
        }
    }

    /// Write all of `buf` at `off`; returns the count (short only if an
    /// error stopped it after some bytes).
    pub fn write_at(&self, buf: &[u8], off: u64) -> Result<usize, Errno> {
        let off = check_off(off)?;
        let (n, err) = blocking(std::ptr::null_mut(), || {
            pwrite_full(self.fd.as_fd(), buf, off)
        });
        match err {
            Some(e) if n == 0 => Err(e),
            _ => Ok(n),
        }
    }

    /// `rumpuser_syncfd` on this file (see [`syncfd`]).
    pub fn syncfd(&self, flags: i32, start: u64, len: u64) -> Result<(), Errno> {
        syncfd(self, flags, start, len)
    }

    /// The file's size; for a block device, the device's size.
    pub fn size(&self) -> Result<u64, Errno> {
        let st = fstat(self.fd.as_fd())?;
        match FileType::from_mode(st.st_mode) {
            FileType::Blk => device_size(self.fd.as_fd()),
            _ => Ok(st.st_size as u64),
        }
    }

    /// The file's `RUMPUSER_FT_*` type.
    pub fn file_type(&self) -> Result<FileType, Errno> {
        Ok(FileType::from_mode(fstat(self.fd.as_fd())?.st_mode))
    }

    /// Truncate or extend a regular file to `len` bytes.
    pub fn set_len(&self, len: u64) -> Result<(), Errno> {
        let len = check_off(len)?;
        blocking(std::ptr::null_mut(), || {
            nix::unistd::ftruncate(&self.fd, len).map_err(crate::errno::nix)
        })
    }

    /// Flush (`fsync`) and close, reporting errors that drop would ignore.
    pub fn close(self) -> Result<(), Errno> {
        let fd: RawFd = self.into_raw_fd();
        blocking(std::ptr::null_mut(), || {
            let se = nix::unistd::fsync(fd).err().map(crate::errno::nix);
            // We own `fd` and close it once.
            let ce = nix::unistd::close(fd).err().map(crate::errno::nix);
            // fsync on a pipe or terminal is EINVAL: not a failure to close.
            match (se, ce) {
                (_, Some(e)) => Err(e),
                (Some(e), None) if e.0 != EINVAL => Err(e),
                _ => Ok(()),
            }
        })
    }
}

/// `struct rumpuser_iovec` (the same layout as the host's `struct iovec`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RumpuserIovec {
    /// Start of the buffer.
    pub iov_base: *mut std::ffi::c_void,
    /// Its length in bytes.
    pub iov_len: usize,
}

/// Scatter read: at `off`, or at the current position for `IOV_NOSEEK`.
///
/// # Safety
/// Each iovec names writable memory of its length.
pub unsafe fn iovread(fd: BorrowedFd<'_>, iov: &[RumpuserIovec], off: i64) -> Result<usize, Errno> {
    let cnt = c_int::try_from(iov.len()).map_err(|_| Errno(EINVAL))?;
    if off < 0 && off != IOV_NOSEEK {
        return Err(Errno(EINVAL));
    }
    let iovp = iov.as_ptr().cast::<libc::iovec>();
    blocking(std::ptr::null_mut(), || loop {
        let n = if off == IOV_NOSEEK {
            // SAFETY: RumpuserIovec has iovec's layout; the caller vouches
            // for the buffers.
            unsafe { libc::readv(fd.as_raw_fd(), iovp, cnt) }
        } else {
            // SAFETY: as above.
            unsafe { libc::preadv(fd.as_raw_fd(), iovp, cnt, off) }
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = crate::errno::last();
        if e.0 != crate::errno::EINTR {
            return Err(e);
        }
    })
}

/// Gather write: at `off`, or at the current position for `IOV_NOSEEK`.
///
/// # Safety
/// Each iovec names readable memory of its length.
pub unsafe fn iovwrite(
    fd: BorrowedFd<'_>,
    iov: &[RumpuserIovec],
    off: i64,
) -> Result<usize, Errno> {
    let cnt = c_int::try_from(iov.len()).map_err(|_| Errno(EINVAL))?;
    if off < 0 && off != IOV_NOSEEK {
        return Err(Errno(EINVAL));
    }
    let iovp = iov.as_ptr().cast::<libc::iovec>();
    blocking(std::ptr::null_mut(), || loop {
        let n = if off == IOV_NOSEEK {
            // SAFETY: RumpuserIovec has iovec's layout; the caller vouches
            // for the buffers.
            unsafe { libc::writev(fd.as_raw_fd(), iovp, cnt) }
        } else {
            // SAFETY: as above.
            unsafe { libc::pwritev(fd.as_raw_fd(), iovp, cnt, off) }
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = crate::errno::last();
        if e.0 != crate::errno::EINTR {
            return Err(e);
        }
    })
}

/// `rumpuser_open(path, flags, &fd)`.
///
/// # Safety
/// `path` is a NUL-terminated string; `fdp` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_open(
    path: *const c_char,
    flags: c_int,
    fdp: *mut c_int,
) -> c_int {
    trace_hit!(rumpuser_open);
    crate::guard("rumpuser_open", || {
        if path.is_null() || fdp.is_null() {
            return EFAULT;
        }
        // SAFETY: NUL-terminated per the caller's contract.
        let path = unsafe { CStr::from_ptr(path) };
        match open_cstr(path, flags) {
            Ok(fd) => {
                // SAFETY: checked non-null; the caller promises validity.
                unsafe { *fdp = fd };
                0
            }
            Err(e) => e.0,
        }
    })
}

/// `rumpuser_close(fd)`: flush and close.
///
/// # Safety
/// `fd` is the caller's to close: a descriptor it got from
/// `rumpuser_open` (or otherwise owns) and uses no more.
///
/// Closing a descriptor is not safe code, since another owner may still
/// use it (a `File` of the program):
/// ```compile_fail,E0133
/// let f = std::fs::File::open("/dev/null").unwrap();
/// let _ = rumpuser::file::rumpuser_close(std::os::fd::AsRawFd::as_raw_fd(&f));
/// ```
/// Given away first, the descriptor is the caller's to close (this twin
/// compiles, so the probe fails for the missing `unsafe` alone):
/// ```
/// let f = std::fs::File::open("/dev/null").unwrap();
/// let fd = std::os::fd::IntoRawFd::into_raw_fd(f);
/// // SAFETY: `fd` was just given up by its only owner.
/// assert_eq!(unsafe { rumpuser::file::rumpuser_close(fd) }, 0);
/// ```
#[no_mangle]
pub unsafe extern "C" fn rumpuser_close(fd: c_int) -> c_int {
    trace_hit!(rumpuser_close);
    crate::guard("rumpuser_close", || {
        if fd < 0 {
            return crate::errno::EBADF;
        }
        // SAFETY: this function's contract: the caller hands over a
        // descriptor it owns and will not use again.
        let f = unsafe { HostFile::from_raw_fd(fd) };
        match f.close() {
            Ok(()) => 0,
            Err(e) => e.0,
        }
    })
}

/// `rumpuser_getfileinfo(path, &size, &type)`.
///
/// # Safety
/// `path` is a NUL-terminated string; `sizep` and `ftp` are null or valid
/// for a write.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_getfileinfo(
    path: *const c_char,
    sizep: *mut u64,
    ftp: *mut c_int,
) -> c_int {
    trace_hit!(rumpuser_getfileinfo);
    crate::guard("rumpuser_getfileinfo", || {
        if path.is_null() {
            return EFAULT;
        }
        // SAFETY: NUL-terminated per the caller's contract.
        let path = unsafe { CStr::from_ptr(path) };
        match getfileinfo_cstr(path) {
            Ok((size, ft)) => {
                if !sizep.is_null() {
                    // SAFETY: non-null, so writable per the caller's contract.
                    unsafe { *sizep = size };
                }
                if !ftp.is_null() {
                    // SAFETY: as above.
                    unsafe { *ftp = ft.as_raw() };
                }
                0
            }
            Err(e) => e.0,
        }
    })
}

/// `rumpuser_iovread(fd, iov, iovlen, off, &ret)`.
///
/// # Safety
/// `ruiov` points at `iovlen` iovecs naming writable memory; `retp` is
/// valid for a write; `fd` is negative or an open descriptor the caller
/// may use, open during the call.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_iovread(
    fd: c_int,
    ruiov: *mut RumpuserIovec,
    iovlen: usize,
    off: i64,
    retp: *mut usize,
) -> c_int {
    trace_hit!(rumpuser_iovread);
    crate::guard("rumpuser_iovread", || {
        if retp.is_null() || (ruiov.is_null() && iovlen > 0) {
            return EFAULT;
        }
        let iov: &[RumpuserIovec] = if iovlen == 0 {
            &[]
        } else {
            // SAFETY: `iovlen` iovecs at `ruiov` per the caller's contract.
            unsafe { std::slice::from_raw_parts(ruiov, iovlen) }
        };
        if fd < 0 {
            return crate::errno::EBADF;
        }
        // SAFETY: the caller keeps `fd` open during the call.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        // SAFETY: the caller vouches for the buffers.
        match unsafe { iovread(fd, iov, off) } {
            Ok(n) => {
                // SAFETY: checked non-null.
                unsafe { *retp = n };
                0
            }
            Err(e) => e.0,
        }
    })
}

/// `rumpuser_iovwrite(fd, iov, iovlen, off, &ret)`.
///
/// # Safety
/// `ruiov` points at `iovlen` iovecs naming readable memory; `retp` is
/// valid for a write; `fd` is negative or an open descriptor the caller
/// may use, open during the call.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_iovwrite(
    fd: c_int,
    ruiov: *const RumpuserIovec,
    iovlen: usize,
    off: i64,
    retp: *mut usize,
) -> c_int {
    trace_hit!(rumpuser_iovwrite);
    crate::guard("rumpuser_iovwrite", || {
        if retp.is_null() || (ruiov.is_null() && iovlen > 0) {
            return EFAULT;
        }
        let iov: &[RumpuserIovec] = if iovlen == 0 {
            &[]
        } else {
            // SAFETY: `iovlen` iovecs at `ruiov` per the caller's contract.
            unsafe { std::slice::from_raw_parts(ruiov, iovlen) }
        };
        if fd < 0 {
            return crate::errno::EBADF;
        }
        // SAFETY: the caller keeps `fd` open during the call.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        // SAFETY: the caller vouches for the buffers.
        match unsafe { iovwrite(fd, iov, off) } {
            Ok(n) => {
                // SAFETY: checked non-null.
                unsafe { *retp = n };
                0
            }
            Err(e) => e.0,
        }
    })
}

/// `rumpuser_syncfd(fd, flags, start, len)`.
///
/// # Safety
/// `fd` is an open descriptor the caller may use (one it got from
/// `rumpuser_open`), open for the duration of the call.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_syncfd(fd: c_int, flags: c_int, start: u64, len: u64) -> c_int {
    trace_hit!(rumpuser_syncfd);
    crate::guard("rumpuser_syncfd", || {
        if fd < 0 {
            return crate::errno::EBADF;
        }
        // SAFETY: this function's contract: `fd` is open and the caller's
        // for the call.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        crate::errno::ret(syncfd(fd, flags, start, len))
    })
}
