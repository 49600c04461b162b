//! etfs: host files as kernel drives (`rump_server -d`).
//!
//! `key=K,hostpath=P,size=S|host[,offset=O][,type=blk|chr|reg]`:
//! * `blk` (the default): a block device node at `K`, read and written
//!   through the buffer cache (write-back; sync flushes);
//! * `chr`: a character device node at `K`, read and written directly on
//!   the host file;
//! * `reg`: a regular file at `K` whose data is the host file's.
//!
//! The drive is bytes `[O, O+S)` of the host file. A missing host file is
//! created (mode 0644) and a short one extended to `O+S`; `size=host`
//! takes the host file's size less `O` and needs the file to exist.

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
}

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
}

/// Parse a `dd`-style size: a decimal number with an optional suffix `b`
/// (512), `k` (1024), `m` (1024²), `g` (1024³), `t` (1024⁴) or `w` (4),
/// either case; products with `x` (`2x512k`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    if s.is_empty() {
        return Err("empty size".into());
    }
    if s.starts_with('x') || s.ends_with('x') || s.contains("xx") {
        return Err(format!(
            "bad size \"{s}\": \"x\" multiplies two sizes, as in 2x512k"
        ));
    }
    let mut total: u64 = 1;
    for part in s.split('x') {
        let v = parse_one_size(part).map_err(|e| format!("bad size \"{s}\": {e}"))?;
        total = total
            .checked_mul(v)
            .ok_or_else(|| format!("bad size \"{s}\": too large"))?;
    }
    if total > i64::MAX as u64 {
        return Err(format!("bad size \"{s}\": too large"));
    }
    Ok(total)
}

fn parse_one_size(p: &str) -> Result<u64, String> {
    if p.is_empty() {
        return Err("missing number".into());
    }
    let digits = p.bytes().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return Err(format!("\"{p}\" does not start with a number"));
    }
    let (num, suf) = p.split_at(digits);
    let n: u64 = num.parse().map_err(|_| "number too large".to_string())?;
    let mult: u64 = match suf {
        "" => 1,
        "b" | "B" => 512,
        "k" | "K" => 1 << 10,
        "m" | "M" => 1 << 20,
        "g" | "G" => 1 << 30,
        "t" | "T" => 1 << 40,
        "w" | "W" => 4,
        _ => return Err(format!("unknown suffix \"{suf}\" (use b, k, m, g, t or w)")),
    };
    n.checked_mul(mult).ok_or_else(|| "too large".to_string())
}

impl DriveSpec {
    /// Parse `key=K,hostpath=P,size=S|host[,offset=O][,type=blk|chr|reg]`.
    pub fn parse(spec: &str) -> Result<DriveSpec, String> {
        let mut key = None;
        let mut hostpath = None;
        let mut size = None;
        let mut offset = None;
        let mut kind = None;
        if spec.trim().is_empty() {
            return Err("empty drive spec (expected key=K,hostpath=P,size=S|host[,offset=O][,type=blk|chr|reg])".into());
        }
        for item in spec.split(',') {
            let (k, v) = item
                .split_once('=')
                .ok_or_else(|| format!("drive spec \"{spec}\": \"{item}\" is not name=value"))?;
            let dup = |what: &str| format!("drive spec \"{spec}\": {what} given twice");
            match k {
                "key" => {
                    if key.replace(v.to_string()).is_some() {
                        return Err(dup("key"));
                    }
                }
                "hostpath" => {
                    if hostpath.replace(v.to_string()).is_some() {
                        return Err(dup("hostpath"));
                    }
                }
                "size" => {
                    let s = if v == "host" {
                        DriveSize::Host
                    } else {
                        DriveSize::Bytes(parse_size(v).map_err(|e| format!("drive spec \"{spec}\": {e}"))?)
                    };
                    if size.replace(s).is_some() {
                        return Err(dup("size"));
                    }
                }
                "offset" => {
                    let o = parse_size(v).map_err(|e| format!("drive spec \"{spec}\": offset: {e}"))?;
                    if offset.replace(o).is_some() {
                        return Err(dup("offset"));
                    }
                }
                "type" => {
                    let t = match v {
                        "blk" => DriveType::Blk,
                        "chr" => DriveType::Chr,
                        "reg" => DriveType::Reg,
                        _ => {
                            return Err(format!(
                                "drive spec \"{spec}\": unknown type \"{v}\" (expected blk, chr or reg)"
                            ))
                        }
                    };
                    if kind.replace(t).is_some() {
                        return Err(dup("type"));
                    }
                }
                _ => {
                    return Err(format!(
                        "drive spec \"{spec}\": unknown option \"{k}\" (expected key, hostpath, size, offset, type)"
                    ))
                }
            }
        }
        let key = key.ok_or_else(|| format!("drive spec \"{spec}\": key missing"))?;
        let hostpath =
            hostpath.ok_or_else(|| format!("drive spec \"{spec}\": hostpath missing"))?;
        let size = size
            .ok_or_else(|| format!("drive spec \"{spec}\": size missing (a size, or size=host)"))?;
        if !key.starts_with('/') || key.len() < 2 {
            return Err(format!(
                "drive spec \"{spec}\": key \"{key}\" must be an absolute path like /dk"
            ));
        }
        if key.len() >= crate::namei::MAXPATHLEN || key.split('/').any(|c| c == "." || c == "..") {
            return Err(format!("drive spec \"{spec}\": bad key \"{key}\""));
        }
        if hostpath.is_empty() {
            return Err(format!("drive spec \"{spec}\": empty hostpath"));
        }
        if size == DriveSize::Bytes(0) {
            return Err(format!("drive spec \"{spec}\": size must be more than 0"));
        }
        Ok(DriveSpec {
            key,
            hostpath,
            size,
            offset: offset.unwrap_or(0),
            kind: kind.unwrap_or(DriveType::Blk),
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
    ) -> Result<(), String> {
        let _g = self.mount_lock.lock();
        self.add_drive_locked(spec, fault)
    }

    fn add_drive_locked(
        &self,
        spec: &DriveSpec,
        fault: Option<Arc<FaultControl>>,
    ) -> Result<(), String> {
        use rumpuser::file::FileType;
        let path = &spec.hostpath;
        let key = &spec.key;
        if self.drives.read().iter().any(|d| &d.key == key) {
            return Err(format!("drive {key}: key already in use"));
        }
        if fault.is_some() && spec.kind != DriveType::Blk {
            return Err(format!("drive {key}: fault injection needs a blk drive"));
        }
        let info = rumpuser::file::getfileinfo(path);
        // One server per image: lock the image (an OFD lock, as qemu does)
        // before touching it. Another drive of ours on the same file is
        // covered by that drive's lock.
        let lock = |host: &HostDrive| -> Result<(), String> {
            let id = host.id().map_err(|e| format!("{path}: {e}"))?;
            if self
                .drives
                .read()
                .iter()
                .any(|d| d.host.id().ok() == Some(id))
            {
                return Ok(());
            }
            host.lock(true)
                .map_err(|_| format!("drive {key}: {path}: {}", vfs_cache::host::ImageLocked))
        };
        let direct = spec.kind == DriveType::Blk;
        let (host, size) = match spec.size {
            DriveSize::Host => {
                let (hsize, ft) = info
                    .map_err(|e| format!("{path}: size=host needs an existing host file: {e}"))?;
                if ft == FileType::Dir {
                    return Err(format!("{path}: is a directory"));
                }
                // The host file is opened once, here, for everything the
                // drive does: the cache's I/O and flush (`blk`), direct I/O
                // (`chr`, `reg`), the lock.
                let host = Arc::new(
                    HostDrive::open_with(path, Some(hsize), false, direct)
                        .map_err(|e| format!("{path}: {e}"))?,
                );
                lock(&host)?;
                if spec.offset >= hsize {
                    return Err(format!(
                        "{path}: offset {} is not inside the file ({} bytes)",
                        spec.offset, hsize
                    ));
                }
                (host, hsize - spec.offset)
            }
            DriveSize::Bytes(s) => {
                if let Ok((_, FileType::Dir)) = info {
                    return Err(format!("{path}: is a directory"));
                }
                let need = spec
                    .offset
                    .checked_add(s)
                    .filter(|&e| e <= i64::MAX as u64)
                    .ok_or_else(|| format!("drive {key}: offset + size too large"))?;
                let host = Arc::new(
                    HostDrive::open_with(path, Some(need), true, direct)
                        .map_err(|e| format!("{path}: {e}"))?,
                );
                lock(&host)?;
                let cur = host.file_size().map_err(|e| format!("{path}: {e}"))?;
                if cur < need {
                    if host.is_regular() {
                        host.set_len(need)
                            .map_err(|e| format!("{path}: cannot extend to {need} bytes: {e}"))?;
                    } else {
                        return Err(format!(
                            "{path}: device has {cur} bytes, drive needs {need}"
                        ));
                    }
                }
                (host, s)
            }
        };
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
                    off: spec.offset,
                    size,
                });
                Some(self.cache.attach(dev, 0))
            }
            _ => None,
        };
        // The node in rumpfs, with any missing parent directories.
        let fs = &self.rootfs;
        let comps: Vec<&str> = key.split('/').filter(|c| !c.is_empty()).collect();
        let (last, dirs) = comps
            .split_last()
            .ok_or_else(|| format!("drive {key}: bad key"))?;
        let mut dir = fs.root();
        for c in dirs {
            dir = match fs.lookup(dir, c.as_bytes()) {
                Ok(i) => i,
                Err(_) => fs
                    .create(dir, c.as_bytes(), FileKind::Dir, 0o755, Default::default())
                    .map_err(|e| format!("drive {key}: cannot make directory {c}: {e}"))?,
            };
        }
        let made = match spec.kind {
            DriveType::Blk => fs.mknod(dir, last.as_bytes(), FileKind::Blk, rdev, size),
            DriveType::Chr => fs.mknod(dir, last.as_bytes(), FileKind::Chr, rdev, size),
            DriveType::Reg => fs.host_file(dir, last.as_bytes(), host.clone(), spec.offset, size),
        };
        if let Err(e) = made {
            if let Some(c) = &cached {
                let _ = c.detach();
            }
            return Err(format!("drive {key}: {e}"));
        }
        if self.cfg.verbose {
            tracing::info!(
                "rumpkern: drive {key} ({}) = {path} offset {} size {size}",
                spec.kind.as_str(),
                spec.offset
            );
        }
        self.drives.write().push(Arc::new(Drive {
            index,
            key: key.clone(),
            hostpath: path.clone(),
            kind: spec.kind,
            offset: spec.offset,
            size,
            rdev,
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
