//! [`HostDrive`]: a host file (disk image or block device) as a
//! [`BlockDevice`], through the hypercall layer: opened with
//! `RUMPUSER_OPEN_BIO`, read and written with `rumpuser_bio` (synchronous
//! form, the virtual CPU released while the host works), flushed with
//! `rumpuser_syncfd(SYNCFD_WRITE | SYNCFD_SYNC)`.

use netbsd_abi::errno::{EINVAL, EIO};
use netbsd_abi::Errno;
use rumpuser::bio;
use rumpuser::file::{HostFile, OPEN_BIO, OPEN_RDONLY, OPEN_RDWR, SYNCFD_SYNC, SYNCFD_WRITE};

use crate::BlockDevice;

/// A host file as a drive.
#[derive(Debug)]
pub struct HostDrive {
    file: HostFile,
    size: u64,
    path: String,
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
        Ok(HostDrive { file, size, path: path.to_string() })
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

    fn flush(&self) -> Result<(), Errno> {
        self.file.syncfd(SYNCFD_WRITE | SYNCFD_SYNC, 0, 0)
    }
}
