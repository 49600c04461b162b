//! etfs: host files as kernel drives (`rump_server -d`).
//!
//! `key=K,hostpath=P,size=S|host|disklabel=P[,offset=O][,type=blk|chr|reg]
//! [,sectorsize=N]`:
//! * `blk` (the default): a block device node at `K`, read and written
//!   through the buffer cache (write-back; sync flushes);
//! * `chr`: a character device node at `K`, read and written directly on
//!   the host file;
//! * `reg`: a regular file at `K` whose data is the host file's.
//!
//! The drive is bytes `[O, O+S)` of the host file. A missing host file is
//! created (mode 0644) and a short one extended to `O+S`; `size=host`
//! takes the host file's size less `O` and needs the file to exist.
//! `disklabel=P` (NetBSD's key) takes `O` and `S` from partition `P` of
//! the NetBSD disklabel in the host file ([`crate::disklabel`]).
//! `sectorsize=N` is the sector size the drive declares (512 unless
//! given): the built-in kernel records it ([`DriveInfo::sector_size`]);
//! NetBSD's drive layer, hosted, takes one for all its drives.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use netbsd_abi::errno::*;
use netbsd_abi::Errno;
use vfs_cache::{BlockDevice, CachedDev, FaultControl, FaultyDrive, HostDrive, Store};

use crate::vfs::{FileKind, FileSystem};
use crate::Kernel;

/// The major number of etfs device nodes.
pub const ETFS_MAJOR: u64 = 197;

/// How a drive shows in the kernel (`type=` of a drive spec).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriveType {
    /// A block device, read and written through the buffer cache.
    Blk,
    /// A character device: reads and writes go straight to the host file.
    Chr,
    /// A regular file backed by the host file, never growing past the drive's size.
    Reg,
}

impl DriveType {
    /// The type's name in a drive spec.
    pub fn as_str(self) -> &'static str {
        match self {
            DriveType::Blk => "blk",
            DriveType::Chr => "chr",
            DriveType::Reg => "reg",
        }
    }
}

/// A drive's size, as the spec gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriveSize {
    /// `size=S`: this many bytes (a missing or shorter host file is extended to it).
    Bytes(u64),
    /// `size=host`: the host file's size (less the offset).
    Host,
    /// `disklabel=P`: partition `P` (`a` to `z`) of the NetBSD disklabel
    /// in the host file gives the offset and size (see
    /// [`crate::disklabel`]); [`DriveSpec::resolved`] reads it.
    Disklabel(char),
}

/// The syntax of a drive spec, for messages.
pub const DRIVE_SYNTAX: &str =
    "key=K,hostpath=P,size=S|host|disklabel=P[,offset=O][,type=blk|chr|reg][,sectorsize=N]";

/// The sector size a drive has unless its spec says otherwise.
pub const DEFAULT_SECTOR_SIZE: u32 = 512;
/// The largest `sectorsize=` (NetBSD's `MAXPHYS`: one sector is one
/// transfer at most).
pub const MAX_SECTOR_SIZE: u32 = 64 << 10;

/// A parsed `-d` drive specification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriveSpec {
    /// Where the drive appears in the kernel's name space (`/dk`).
    pub key: String,
    /// The host file behind it.
    pub hostpath: String,
    /// Its size.
    pub size: DriveSize,
    /// Where the drive starts in the host file, in bytes.
    pub offset: u64,
    /// How it shows in the kernel.
    pub kind: DriveType,
    /// `sectorsize=N`: the sector size the drive declares (a power of two,
    /// 512 to [`MAX_SECTOR_SIZE`]); `None` for the kernel's default
    /// ([`DEFAULT_SECTOR_SIZE`] for the built-in kernel; NetBSD's drive
    /// layer has one sector size for all its drives).
    pub sector_size: Option<u32>,
}

/// A `dd`-style size that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// Nothing given.
    #[error("empty size")]
    Empty,
    /// The size, and what is wrong with it.
    #[error("bad size \"{size}\": {why}")]
    Bad {
        /// The size, as given.
        size: String,
        /// What is wrong with it.
        why: SizeFault,
    },
}

/// What is wrong with a size ([`SizeError::Bad`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SizeFault {
    /// An `x` at either end or doubled.
    #[error("\"x\" multiplies two sizes, as in 2x512k")]
    MisplacedX,
    /// A factor with no digits at all.
    #[error("missing number")]
    MissingNumber,
    /// A factor that does not start with a digit.
    #[error("\"{0}\" does not start with a number")]
    NoNumber(String),
    /// Digits that do not fit in 64 bits.
    #[error("number too large")]
    NumberTooLarge,
    /// A suffix other than b, k, m, g, t, w.
    #[error("unknown suffix \"{0}\" (use b, k, m, g, t or w)")]
    Suffix(String),
    /// A product above `i64::MAX`.
    #[error("too large")]
    TooLarge,
}

/// A drive spec that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DriveSpecError {
    /// An empty spec.
    #[error("empty drive spec (expected key=K,hostpath=P,size=S|host|disklabel=P[,offset=O][,type=blk|chr|reg][,sectorsize=N])")]
    Empty,
    /// The spec, and what is wrong with it.
    #[error("drive spec \"{spec}\": {why}")]
    Bad {
        /// The spec, as given.
        spec: String,
        /// What is wrong with it.
        why: SpecFault,
    },
}

/// What is wrong with a drive spec ([`DriveSpecError::Bad`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpecFault {
    /// An item without `=`.
    #[error("\"{0}\" is not name=value")]
    NotNameValue(String),
    /// A key given twice.
    #[error("{0} given twice")]
    Twice(&'static str),
    /// A bad `size=`.
    #[error("{0}")]
    Size(SizeError),
    /// A bad `offset=`.
    #[error("offset: {0}")]
    Offset(SizeError),
    /// A `type=` other than blk, chr, reg.
    #[error("unknown type \"{0}\" (expected blk, chr or reg)")]
    Type(String),
    /// An unknown key.
    #[error("unknown option \"{0}\" (expected key, hostpath, size, offset, type, sectorsize, disklabel)")]
    Unknown(String),
    /// `key=` or `hostpath=` missing.
    #[error("{0} missing")]
    Missing(&'static str),
    /// Neither `size=` nor `disklabel=`.
    #[error("size missing (a size, or size=host, or disklabel=P)")]
    SizeMissing,
    /// A key that is not an absolute path.
    #[error("key \"{0}\" must be an absolute path like /dk")]
    KeyNotAbsolute(String),
    /// A key too long or with `.` or `..` in it.
    #[error("bad key \"{0}\"")]
    BadKey(String),
    /// `hostpath=` with nothing after it.
    #[error("empty hostpath")]
    EmptyHostpath,
    /// `size=0`.
    #[error("size must be more than 0")]
    ZeroSize,
    /// A `sectorsize=` that is not a power of two from 512 to 64k.
    #[error("sectorsize={0}: expected a power of two from 512 to 65536")]
    SectorSize(String),
    /// A size that is not a whole number of sectors.
    #[error("size {size} is not a multiple of the sector size {sector}")]
    PartialSector {
        /// The size in bytes.
        size: u64,
        /// The sector size.
        sector: u32,
    },
    /// A bad `disklabel=` letter.
    #[error("{0}")]
    Disklabel(crate::disklabel::LabelError),
    /// `disklabel=` with `size=` or `offset=`.
    #[error("disklabel gives the offset and size: not with size= or offset=")]
    DisklabelAlone,
}

/// A drive that cannot be attached: its key and why.
#[derive(Debug, thiserror::Error)]
#[error("drive {key}: {fault}")]
pub struct DriveError {
    /// The drive's key.
    pub key: String,
    /// Why it cannot be attached.
    pub fault: DriveFault,
}

impl DriveError {
    /// Drive `key` cannot be attached because of `fault`.
    pub fn new(key: &str, fault: DriveFault) -> DriveError {
        DriveError {
            key: key.to_string(),
            fault,
        }
    }
}

/// Why a drive cannot be attached ([`DriveError`]).
#[derive(Debug, thiserror::Error)]
pub enum DriveFault {
    /// Another drive has the key.
    #[error("key already in use")]
    KeyInUse,
    /// Fault injection on a `chr` or `reg` drive.
    #[error("fault injection needs a blk drive")]
    FaultNeedsBlk,
    /// `size=host` on a host file that cannot be looked at.
    #[error("{path}: size=host needs an existing host file: {errno}")]
    HostNeeded {
        /// The host file.
        path: String,
        /// Why it cannot be looked at.
        errno: Errno,
    },
    /// The host path is a directory.
    #[error("{path}: is a directory")]
    IsDir {
        /// The host path.
        path: String,
    },
    /// The host file cannot be opened, measured or read.
    #[error("{path}: {errno}")]
    Host {
        /// The host file.
        path: String,
        /// Why.
        errno: Errno,
    },
    /// Another process holds the image's lock.
    #[error("{path}: {}", vfs_cache::host::ImageLocked)]
    Locked {
        /// The host file.
        path: String,
    },
    /// `offset=` at or past the host file's end (`size=host`).
    #[error("{path}: offset {offset} is not inside the file ({len} bytes)")]
    OffsetOutside {
        /// The host file.
        path: String,
        /// The offset given.
        offset: u64,
        /// The file's size.
        len: u64,
    },
    /// `offset + size` overflows.
    #[error("offset + size too large")]
    TooLarge,
    /// A short host file could not be extended.
    #[error("{path}: cannot extend to {need} bytes: {errno}")]
    Extend {
        /// The host file.
        path: String,
        /// The size it needs.
        need: u64,
        /// Why not.
        errno: Errno,
    },
    /// A host device smaller than the drive.
    #[error("{path}: device has {have} bytes, drive needs {need}")]
    DeviceSmall {
        /// The host device.
        path: String,
        /// Its size.
        have: u64,
        /// The drive's end.
        need: u64,
    },
    /// `disklabel=`: no such partition in the host file's label.
    #[error("{path}: {why}")]
    Disklabel {
        /// The host file.
        path: String,
        /// What is wrong.
        why: crate::disklabel::LabelError,
    },
    /// A key the kernel's name space cannot hold.
    #[error("bad key")]
    BadKey,
    /// A missing parent directory of the key could not be made.
    #[error("cannot make directory {dir}: {errno}")]
    MakeDir {
        /// The directory.
        dir: String,
        /// Why not.
        errno: Errno,
    },
    /// The device node could not be made.
    #[error("{0}")]
    Node(Errno),
    /// The drive's sector size differs from another drive's, and the
    /// kernel has one sector size for all (NetBSD's drive layer).
    #[error("sectorsize={want}, but the kernel's drives have {have}-byte sectors (one sector size for all drives)")]
    SectorSize {
        /// What this drive asks for.
        want: u32,
        /// What the kernel has.
        have: u32,
    },
    /// The kernel refused to register the drive.
    #[error("{call}: {errno}")]
    Register {
        /// The call that failed.
        call: &'static str,
        /// Its error.
        errno: Errno,
    },
}

/// Parse a `dd`-style size: a decimal number with an optional suffix `b`
/// (512), `k` (1024), `m` (1024²), `g` (1024³), `t` (1024⁴) or `w` (4),
/// either case; products with `x` (`2x512k`).
pub fn parse_size(s: &str) -> Result<u64, SizeError> {
    if s.is_empty() {
        return Err(SizeError::Empty);
    }
    let bad = |why| SizeError::Bad {
        size: s.to_string(),
        why,
    };
    if s.starts_with('x') || s.ends_with('x') || s.contains("xx") {
        return Err(bad(SizeFault::MisplacedX));
    }
    let mut total: u64 = 1;
    for part in s.split('x') {
        let v = parse_one_size(part).map_err(bad)?;
        total = total.checked_mul(v).ok_or(bad(SizeFault::TooLarge))?;
    }
    if total > i64::MAX as u64 {
        return Err(bad(SizeFault::TooLarge));
    }
    Ok(total)
}

fn parse_one_size(p: &str) -> Result<u64, SizeFault> {
    if p.is_empty() {
        return Err(SizeFault::MissingNumber);
    }
    let digits = p.bytes().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return Err(SizeFault::NoNumber(p.to_string()));
    }
    let (num, suf) = p.split_at(digits);
    let n: u64 = num.parse().map_err(|_| SizeFault::NumberTooLarge)?;
    let mult: u64 = match suf {
        "" => 1,
        "b" | "B" => 512,
        "k" | "K" => 1 << 10,
        "m" | "M" => 1 << 20,
        "g" | "G" => 1 << 30,
        "t" | "T" => 1 << 40,
        "w" | "W" => 4,
        _ => return Err(SizeFault::Suffix(suf.to_string())),
    };
    n.checked_mul(mult).ok_or(SizeFault::TooLarge)
}

impl DriveSpec {
    /// Parse `key=K,hostpath=P,size=S|host|disklabel=P[,offset=O]
    /// [,type=blk|chr|reg][,sectorsize=N]` ([`DRIVE_SYNTAX`]).
    pub fn parse(spec: &str) -> Result<DriveSpec, DriveSpecError> {
        let mut key = None;
        let mut hostpath = None;
        let mut size = None;
        let mut offset = None;
        let mut kind = None;
        let mut sector = None;
        let mut label = None;
        if spec.trim().is_empty() {
            return Err(DriveSpecError::Empty);
        }
        let bad = |why| DriveSpecError::Bad {
            spec: spec.to_string(),
            why,
        };
        for item in spec.split(',') {
            let (k, v) = item
                .split_once('=')
                .ok_or_else(|| bad(SpecFault::NotNameValue(item.to_string())))?;
            // The option's name when it was given before.
            let twice: Option<&'static str> = match k {
                "key" => key.replace(v.to_string()).map(|_| "key"),
                "hostpath" => hostpath.replace(v.to_string()).map(|_| "hostpath"),
                "size" => {
                    let s = if v == "host" {
                        DriveSize::Host
                    } else {
                        DriveSize::Bytes(parse_size(v).map_err(|e| bad(SpecFault::Size(e)))?)
                    };
                    size.replace(s).map(|_| "size")
                }
                "offset" => {
                    let o = parse_size(v).map_err(|e| bad(SpecFault::Offset(e)))?;
                    offset.replace(o).map(|_| "offset")
                }
                "type" => {
                    let t = match v {
                        "blk" => DriveType::Blk,
                        "chr" => DriveType::Chr,
                        "reg" => DriveType::Reg,
                        _ => return Err(bad(SpecFault::Type(v.to_string()))),
                    };
                    kind.replace(t).map(|_| "type")
                }
                "sectorsize" => {
                    let n = parse_size(v)
                        .ok()
                        .and_then(|n| u32::try_from(n).ok())
                        .filter(|n| {
                            n.is_power_of_two()
                                && (DEFAULT_SECTOR_SIZE..=MAX_SECTOR_SIZE).contains(n)
                        })
                        .ok_or_else(|| bad(SpecFault::SectorSize(v.to_string())))?;
                    sector.replace(n).map(|_| "sectorsize")
                }
                "disklabel" => {
                    let p =
                        crate::disklabel::letter(v).map_err(|e| bad(SpecFault::Disklabel(e)))?;
                    label.replace(p).map(|_| "disklabel")
                }
                _ => return Err(bad(SpecFault::Unknown(k.to_string()))),
            };
            if let Some(name) = twice {
                return Err(bad(SpecFault::Twice(name)));
            }
        }
        let key = key.ok_or_else(|| bad(SpecFault::Missing("key")))?;
        let hostpath = hostpath.ok_or_else(|| bad(SpecFault::Missing("hostpath")))?;
        let size = match (label, size) {
            (Some(p), None) if offset.is_none() => DriveSize::Disklabel(p),
            (Some(_), _) => return Err(bad(SpecFault::DisklabelAlone)),
            (None, Some(s)) => s,
            (None, None) => return Err(bad(SpecFault::SizeMissing)),
        };
        if !key.starts_with('/') || key.len() < 2 {
            return Err(bad(SpecFault::KeyNotAbsolute(key)));
        }
        if key.len() >= crate::namei::MAXPATHLEN || key.split('/').any(|c| c == "." || c == "..") {
            return Err(bad(SpecFault::BadKey(key)));
        }
        if hostpath.is_empty() {
            return Err(bad(SpecFault::EmptyHostpath));
        }
        if size == DriveSize::Bytes(0) {
            return Err(bad(SpecFault::ZeroSize));
        }
        if let (DriveSize::Bytes(n), Some(s)) = (size, sector) {
            if n % s as u64 != 0 {
                return Err(bad(SpecFault::PartialSector { size: n, sector: s }));
            }
        }
        Ok(DriveSpec {
            key,
            hostpath,
            size,
            offset: offset.unwrap_or(0),
            kind: kind.unwrap_or(DriveType::Blk),
            sector_size: sector,
        })
    }

    /// The spec with a `disklabel=` partition looked up in the host file:
    /// its offset and size in bytes. Any other spec as it is.
    pub fn resolved(&self) -> Result<DriveSpec, DriveError> {
        let DriveSize::Disklabel(p) = self.size else {
            return Ok(self.clone());
        };
        let (offset, size) = crate::disklabel::find(&self.hostpath, p).map_err(|why| {
            DriveError::new(
                &self.key,
                DriveFault::Disklabel {
                    path: self.hostpath.clone(),
                    why,
                },
            )
        })?;
        Ok(DriveSpec {
            offset,
            size: DriveSize::Bytes(size),
            ..self.clone()
        })
    }
}

/// Bytes `[off, off+size)` of another device.
pub(crate) struct OffsetDev {
    pub inner: Arc<dyn BlockDevice>,
    pub off: u64,
    pub size: u64,
}

impl BlockDevice for OffsetDev {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_at(&self, buf: &mut [u8], off: u64) -> Result<(), Errno> {
        self.inner
            .read_at(buf, off.checked_add(self.off).ok_or(Errno(EINVAL))?)
    }
    fn write_at(&self, buf: &[u8], off: u64) -> Result<(), Errno> {
        self.inner
            .write_at(buf, off.checked_add(self.off).ok_or(Errno(EINVAL))?)
    }
    fn write_vectored_at(&self, bufs: &[&[u8]], off: u64) -> Result<(), Errno> {
        self.inner
            .write_vectored_at(bufs, off.checked_add(self.off).ok_or(Errno(EINVAL))?)
    }
    fn flush(&self) -> Result<(), Errno> {
        self.inner.flush()
    }
}

/// A drive the kernel serves.
pub struct Drive {
    /// Its position among the kernel's drives.
    pub index: usize,
    /// Where it appears in the kernel's name space.
    pub key: String,
    /// The host file behind it.
    pub hostpath: String,
    /// How it shows in the kernel.
    pub kind: DriveType,
    /// Where it starts in the host file.
    pub offset: u64,
    /// Its size in bytes, fixed at attach time.
    pub size: u64,
    /// The device number of its node (`ETFS_MAJOR`, index).
    pub rdev: u64,
    /// The sector size it declares (`sectorsize=`, else 512).
    pub sector_size: u32,
    /// The host file, opened once for all the drive does: the cache's
    /// device (`blk`), direct reads and writes (`chr`, `reg`), the lock.
    pub host: Arc<HostDrive>,
    /// The cached device (`blk` drives).
    pub cached: Option<Arc<CachedDev>>,
    /// A file system is mounted from this drive.
    pub mounted: AtomicBool,
}

/// What [`crate::Kernel::drives`] reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriveInfo {
    /// Where it appears in the kernel's name space.
    pub key: String,
    /// The host file behind it.
    pub hostpath: String,
    /// How it shows in the kernel.
    pub kind: DriveType,
    /// Where it starts in the host file.
    pub offset: u64,
    /// Its size in bytes.
    pub size: u64,
    /// The sector size it declares.
    pub sector_size: u32,
}

impl Drive {
    /// What [`crate::Kernel::drives`] reports of this drive.
    pub fn info(&self) -> DriveInfo {
        DriveInfo {
            key: self.key.clone(),
            hostpath: self.hostpath.clone(),
            kind: self.kind,
            offset: self.offset,
            size: self.size,
            sector_size: self.sector_size,
        }
    }

    /// Whether a file system is mounted from it.
    pub fn is_mounted(&self) -> bool {
        self.mounted.load(Ordering::SeqCst)
    }

    /// Read at device offset `off`; short at the end of the device.
    pub fn read(&self, off: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        if off >= self.size {
            return Ok(0);
        }
        let n = ((self.size - off).min(buf.len() as u64)) as usize;
        let buf = &mut buf[..n];
        match &self.cached {
            Some(c) => c.read(off, buf)?,
            None => {
                let got = self.host.pread(buf, self.offset + off)?;
                buf[got..].fill(0);
            }
        }
        Ok(n)
    }

    /// Write at device offset `off`; short at the end of the device,
    /// `ENOSPC` at or past it.
    pub fn write(&self, off: u64, buf: &[u8]) -> Result<usize, Errno> {
        if buf.is_empty() {
            return Ok(0);
        }
        if off >= self.size {
            return Err(Errno(ENOSPC));
        }
        let n = ((self.size - off).min(buf.len() as u64)) as usize;
        let buf = &buf[..n];
        match &self.cached {
            Some(c) => c.write(off, buf)?,
            None => {
                self.host.pwrite(buf, self.offset + off)?;
            }
        }
        Ok(n)
    }

    /// Write back this drive's dirty blocks (if cached) and flush the host
    /// file, once: a cached drive's sync ends in the device's flush, which
    /// is the host file's.
    pub fn sync(&self) -> Result<(), Errno> {
        match &self.cached {
            Some(c) => c.sync(),
            None => self.host.sync(),
        }
    }
}

impl Kernel {
    /// Attach a host drive (see [`crate::etfs`]).
    /// `fault` (tests) wraps a `blk` drive's host device in a fault
    /// injector.
    pub fn add_drive(
        &self,
        spec: &DriveSpec,
        fault: Option<Arc<FaultControl>>,
    ) -> Result<(), DriveError> {
        let _g = self.mount_lock.lock();
        self.add_drive_locked(spec, fault)
    }

    fn add_drive_locked(
        &self,
        spec: &DriveSpec,
        fault: Option<Arc<FaultControl>>,
    ) -> Result<(), DriveError> {
        use rumpuser::file::FileType;
        let key = &spec.key;
        let err = |fault| DriveError::new(key, fault);
        if self.drives.read().iter().any(|d| &d.key == key) {
            return Err(err(DriveFault::KeyInUse));
        }
        if fault.is_some() && spec.kind != DriveType::Blk {
            return Err(err(DriveFault::FaultNeedsBlk));
        }
        let path = &spec.hostpath;
        // Where the drive lies in the host file, and its size unless
        // `size=host`: a disklabel partition's from the label.
        let (offset, bytes) = match spec.size {
            DriveSize::Host => (spec.offset, None),
            DriveSize::Bytes(s) => (spec.offset, Some(s)),
            DriveSize::Disklabel(p) => {
                let (o, s) = crate::disklabel::find(path, p).map_err(|why| {
                    err(DriveFault::Disklabel {
                        path: path.clone(),
                        why,
                    })
                })?;
                (o, Some(s))
            }
        };
        let host_err = |errno| {
            err(DriveFault::Host {
                path: path.clone(),
                errno,
            })
        };
        let info = rumpuser::file::getfileinfo(path);
        // One server per image: lock the image (an OFD lock, as qemu does)
        // before touching it. Another drive of ours on the same file is
        // covered by that drive's lock.
        let lock = |host: &HostDrive| -> Result<(), DriveError> {
            let id = host.id().map_err(host_err)?;
            if self
                .drives
                .read()
                .iter()
                .any(|d| d.host.id().ok() == Some(id))
            {
                return Ok(());
            }
            host.lock(true)
                .map_err(|_| err(DriveFault::Locked { path: path.clone() }))
        };
        let direct = spec.kind == DriveType::Blk;
        let (host, size) = match bytes {
            None => {
                let (hsize, ft) = info.map_err(|errno| {
                    err(DriveFault::HostNeeded {
                        path: path.clone(),
                        errno,
                    })
                })?;
                if ft == FileType::Dir {
                    return Err(err(DriveFault::IsDir { path: path.clone() }));
                }
                // The host file is opened once, here, for everything the
                // drive does: the cache's I/O and flush (`blk`), direct I/O
                // (`chr`, `reg`), the lock.
                let host = Arc::new(
                    HostDrive::open_with(path, Some(hsize), false, direct).map_err(host_err)?,
                );
                lock(&host)?;
                if offset >= hsize {
                    return Err(err(DriveFault::OffsetOutside {
                        path: path.clone(),
                        offset,
                        len: hsize,
                    }));
                }
                (host, hsize - offset)
            }
            Some(s) => {
                if let Ok((_, FileType::Dir)) = info {
                    return Err(err(DriveFault::IsDir { path: path.clone() }));
                }
                let need = offset
                    .checked_add(s)
                    .filter(|&e| e <= i64::MAX as u64)
                    .ok_or(err(DriveFault::TooLarge))?;
                let host = Arc::new(
                    HostDrive::open_with(path, Some(need), true, direct).map_err(host_err)?,
                );
                lock(&host)?;
                let cur = host.file_size().map_err(host_err)?;
                if cur < need {
                    if host.is_regular() {
                        host.set_len(need).map_err(|errno| {
                            err(DriveFault::Extend {
                                path: path.clone(),
                                need,
                                errno,
                            })
                        })?;
                    } else {
                        return Err(err(DriveFault::DeviceSmall {
                            path: path.clone(),
                            have: cur,
                            need,
                        }));
                    }
                }
                (host, s)
            }
        };
        let sector_size = spec.sector_size.unwrap_or(DEFAULT_SECTOR_SIZE);
        let index = self.drives.read().len();
        let rdev = ((ETFS_MAJOR << 8) & 0x000f_ff00)
            | (index as u64 & 0xff)
            | (((index as u64) << 12) & 0xfff0_0000);
        let cached = match spec.kind {
            DriveType::Blk => {
                let mut dev: Arc<dyn BlockDevice> = host.clone();
                if let Some(ctl) = fault {
                    dev = Arc::new(FaultyDrive::new(dev, ctl));
                }
                let dev: Arc<dyn BlockDevice> = Arc::new(OffsetDev {
                    inner: dev,
                    off: offset,
                    size,
                });
                Some(self.cache.attach(dev, 0))
            }
            _ => None,
        };
        // The node in rumpfs, with any missing parent directories.
        let fs = &self.rootfs;
        let comps: Vec<&str> = key.split('/').filter(|c| !c.is_empty()).collect();
        let (last, dirs) = comps.split_last().ok_or(err(DriveFault::BadKey))?;
        let mut dir = fs.root();
        for c in dirs {
            dir = match fs.lookup(dir, c.as_bytes()) {
                Ok(i) => i,
                Err(_) => fs
                    .create(dir, c.as_bytes(), FileKind::Dir, 0o755, Default::default())
                    .map_err(|errno| {
                        err(DriveFault::MakeDir {
                            dir: c.to_string(),
                            errno,
                        })
                    })?,
            };
        }
        let made = match spec.kind {
            DriveType::Blk => fs.mknod(dir, last.as_bytes(), FileKind::Blk, rdev, size),
            DriveType::Chr => fs.mknod(dir, last.as_bytes(), FileKind::Chr, rdev, size),
            DriveType::Reg => fs.host_file(dir, last.as_bytes(), host.clone(), offset, size),
        };
        if let Err(e) = made {
            if let Some(c) = &cached {
                let _ = c.detach();
            }
            return Err(err(DriveFault::Node(e)));
        }
        if self.cfg.verbose {
            tracing::info!(
                "rumpkern: drive {key} ({}) = {path} offset {} size {size} sector size {}",
                spec.kind.as_str(),
                offset,
                sector_size
            );
        }
        self.drives.write().push(Arc::new(Drive {
            index,
            key: key.clone(),
            hostpath: path.clone(),
            kind: spec.kind,
            offset,
            size,
            rdev,
            sector_size,
            host,
            cached,
            mounted: AtomicBool::new(false),
        }));
        Ok(())
    }

    pub(crate) fn drive_by_rdev(&self, rdev: u64) -> Option<Arc<Drive>> {
        self.drives
            .read()
            .iter()
            .find(|d| d.rdev == rdev && d.kind != DriveType::Reg)
            .cloned()
    }

    pub(crate) fn drive_by_index(&self, i: usize) -> Option<Arc<Drive>> {
        self.drives.read().get(i).cloned()
    }

    /// The drives attached, in order.
    pub fn drives(&self) -> Vec<DriveInfo> {
        self.drives.read().iter().map(|d| d.info()).collect()
    }
}
