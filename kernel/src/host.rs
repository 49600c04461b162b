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

    /// Device and inode of the open file.
    pub fn id(&self) -> Result<(u64, u64), Errno> {
        // SAFETY: stat is plain old data; fstat fills it for a descriptor
        // we own.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above; `st` is a valid out-pointer.
        if unsafe { libc::fstat(self.f.fd(), &mut st) } != 0 {
            return Err(last_errno());
        }
        Ok((st.st_dev, st.st_ino))
    }

    /// Take an open-file-description lock on the whole file, as qemu does
    /// for disk images: exclusive (`write`) or shared. Never waits:
    /// `Err(EAGAIN)` when another open of the file (another process, or
    /// another open in this one) holds a conflicting lock. The lock lasts
    /// as long as this open file.
    pub fn lock(&self, write: bool) -> Result<(), Errno> {
        // SAFETY: flock is plain old data; all zeros is a valid value.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = if write { libc::F_WRLCK } else { libc::F_RDLCK } as libc::c_short;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        fl.l_start = 0;
        fl.l_len = 0;
        // SAFETY: fcntl(F_OFD_SETLK) with a valid pointer to a flock
        // (l_pid 0, as OFD locks require) on a descriptor we own.
        if unsafe { libc::fcntl(self.f.fd(), libc::F_OFD_SETLK, &fl) } != 0 {
            let e = last_errno();
            // Some file systems lock nothing: that is no reason to refuse
            // the drive.
            return match e.0 {
                x if x == netbsd_abi::errno::EAGAIN || x == netbsd_abi::errno::EACCES => Err(Errno(netbsd_abi::errno::EAGAIN)),
                _ => Ok(()),
            };
        }
        Ok(())
    }
}

/// The host's `errno` as a NetBSD errno.
fn last_errno() -> Errno {
    Errno::from(std::io::Error::last_os_error())
}
