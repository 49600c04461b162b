//! The kernel's few direct needs of the host, all through the hypercall
//! layer: the clock, and host files for drives. Every blocking operation
//! releases the virtual CPU around it (the hypercall layer does that).

use std::sync::Arc;

use netbsd_abi::errno::EIO;
use netbsd_abi::stat::Timespec;
use netbsd_abi::Errno;
use rumpuser::file::{self as hf, FileType};

/// Wall-clock time now.
pub fn now() -> Timespec {
    match rumpuser::clock::gettime(rumpuser::clock::CLOCK_RELWALL) {
        Ok((sec, nsec)) => Timespec { sec, nsec },
        Err(_) => Timespec::default(),
    }
}

/// A host file opened for a drive: positional I/O and flush.
pub struct HostFile {
    f: hf::HostFile,
    path: String,
}

impl HostFile {
    /// Open `path` read-write; with `create`, create it if missing (mode
    /// 0644 less the host's umask, as `rumpuser_open` does).
    pub fn open(path: &str, create: bool) -> Result<Arc<HostFile>, Errno> {
        let mut flags = hf::OPEN_RDWR;
        if create {
            flags |= hf::OPEN_CREATE;
        }
        let f = hf::HostFile::open(path, flags)?;
        Ok(Arc::new(HostFile { f, path: path.to_string() }))
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// Read up to `buf.len()` bytes at `off`; short only at end of file.
    pub fn pread(&self, buf: &mut [u8], off: u64) -> Result<usize, Errno> {
        self.f.read_at(buf, off)
    }

    /// Write all of `buf` at `off`.
    pub fn pwrite(&self, buf: &[u8], off: u64) -> Result<usize, Errno> {
        let n = self.f.write_at(buf, off)?;
        if n != buf.len() {
            return Err(Errno(EIO));
        }
        Ok(n)
    }

    /// `rumpuser_syncfd`: make the data written so far durable.
    pub fn sync(&self) -> Result<(), Errno> {
        self.f.syncfd(hf::SYNCFD_WRITE | hf::SYNCFD_SYNC, 0, 0)
    }

    /// The file's size (a block device's size for a block device).
    pub fn size(&self) -> Result<u64, Errno> {
        self.f.size()
    }

    pub fn is_regular(&self) -> bool {
        matches!(self.f.file_type(), Ok(FileType::Reg))
    }

    pub fn set_size(&self, size: u64) -> Result<(), Errno> {
        self.f.set_len(size)
    }
}
