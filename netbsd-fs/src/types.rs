//! The file system types NetBSD's components provide, the components each
//! needs, and each type's `mount(2)` argument structure.
//!
//! The structure layouts are NetBSD's (amd64, LP64: pointers and `long`
//! 8 bytes, the old `struct export_args30` a 128-byte pad), written here
//! field by field at their offsets.

use std::ffi::CString;

/// NetBSD `MNT_*` mount flags (`sys/fstypes.h`).
pub mod mnt {
    /// Read-only.
    pub const RDONLY: i32 = 0x0000_0001;
    /// Every write synchronous.
    pub const SYNCHRONOUS: i32 = 0x0000_0002;
    /// No execution of files.
    pub const NOEXEC: i32 = 0x0000_0004;
    /// No set-id bits honoured.
    pub const NOSUID: i32 = 0x0000_0008;
    /// No device special files.
    pub const NODEV: i32 = 0x0000_0010;
    /// Metadata written asynchronously.
    pub const ASYNC: i32 = 0x0000_0040;
    /// FFS: the WAPBL metadata journal.
    pub const LOG: i32 = 0x0200_0000;
    /// No access time updates.
    pub const NOATIME: i32 = 0x0400_0000;
}

/// Size of NetBSD's `struct export_args30` (unused by the file systems
/// here, but part of several argument structures).
const EXPORT_ARGS30: usize = 128;

/// How a type's `mount(2)` argument structure is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgKind {
    /// `struct ufs_args { char *fspec; }`: ffs, ext2fs, lfs; also the
    /// one-pointer `hfs_args` and `sysvbfs_args`.
    Ufs,
    /// `struct msdosfs_args` (168 bytes).
    Msdos,
    /// `struct iso_args` (144 bytes).
    Iso,
    /// `struct ntfs_args` (160 bytes).
    Ntfs,
    /// `struct udf_args` (80 bytes).
    Udf,
    /// `struct tmpfs_args` (40 bytes).
    Tmpfs,
    /// `struct efs_args { char *fspec; int version; }` (16 bytes).
    Efs,
    /// `struct v7fs_args { char *fspec; int endian; }` (16 bytes).
    V7fs,
}

/// One file system type.
#[derive(Clone, Copy, Debug)]
pub struct FsType {
    /// NetBSD's type name, as `mount(2)` takes it (`ffs`, `msdos`, ...).
    pub name: &'static str,
    /// The argument structure.
    pub args: ArgKind,
    /// Component libraries beyond the base kernel (`rump`,
    /// `rumpkern_sysproxy`), in an order that loads.
    pub libs: &'static [&'static str],
    /// Components used when present (FIFOs on disk file systems).
    pub optional: &'static [&'static str],
    /// Whether the type has a backing image (not tmpfs).
    pub has_image: bool,
}

const DISK: [&str; 3] = ["rumpvfs", "rumpdev", "rumpdev_disk"];

macro_rules! libs {
    ($($l:expr),*) => { &[DISK[0], DISK[1], DISK[2], $($l),*] };
}

/// Every type, by NetBSD's name.
pub const TYPES: &[FsType] = &[
    FsType {
        name: "ffs",
        args: ArgKind::Ufs,
        libs: libs!("rumpfs_ffs"),
        optional: &[],
        has_image: true,
    },
    FsType {
        name: "ext2fs",
        args: ArgKind::Ufs,
        libs: libs!("rumpfs_ffs", "rumpfs_ext2fs"),
        optional: &[],
        has_image: true,
    },
    FsType {
        name: "lfs",
        args: ArgKind::Ufs,
        libs: libs!("rumpfs_ffs", "rumpfs_lfs"),
        optional: &[],
        has_image: true,
    },
    FsType {
        name: "msdos",
        args: ArgKind::Msdos,
        libs: libs!("rumpfs_msdos"),
        optional: &[],
        has_image: true,
    },
    FsType {
        name: "cd9660",
        args: ArgKind::Iso,
        libs: libs!("rumpfs_cd9660"),
        optional: &[],
        has_image: true,
    },
    FsType {
        name: "udf",
        args: ArgKind::Udf,
        libs: libs!("rumpfs_udf"),
        optional: &[],
        has_image: true,
    },
    FsType {
        name: "ntfs",
        args: ArgKind::Ntfs,
        libs: libs!("rumpfs_ntfs"),
        optional: &[],
        has_image: true,
    },
    FsType {
        name: "v7fs",
        args: ArgKind::V7fs,
        libs: libs!("rumpfs_v7fs"),
        optional: &[],
        has_image: true,
    },
    FsType {
        name: "sysvbfs",
        args: ArgKind::Ufs,
        libs: libs!("rumpfs_sysvbfs"),
        optional: &[],
        has_image: true,
    },
    FsType {
        name: "efs",
        args: ArgKind::Efs,
        libs: libs!("rumpfs_efs"),
        optional: &[],
        has_image: true,
    },
    FsType {
        name: "hfs",
        args: ArgKind::Ufs,
        libs: libs!("rumpfs_hfs"),
        optional: &[],
        has_image: true,
    },
    FsType {
        name: "tmpfs",
        args: ArgKind::Tmpfs,
        libs: &["rumpvfs", "rumpfs_tmpfs"],
        optional: &[],
        has_image: false,
    },
];

/// The type named `name` (NetBSD's name; `ufs` is `ffs`, `ext2` is
/// `ext2fs`, `vfat`/`fat` are `msdos`, `iso9660` is `cd9660`).
pub fn by_name(name: &str) -> Option<&'static FsType> {
    let n = match name {
        "ufs" => "ffs",
        "ext2" => "ext2fs",
        "vfat" | "fat" | "msdosfs" => "msdos",
        "iso9660" => "cd9660",
        other => other,
    };
    TYPES.iter().find(|t| t.name == n)
}

/// The type a program name stands for: `rump_ffs` is ffs, `rump_mount`
/// (or any other name) none.
pub fn by_program(argv0: &str) -> Option<&'static FsType> {
    let base = argv0.rsplit('/').next().unwrap_or(argv0);
    let t = base.strip_prefix("rump_")?;
    if t == "mount" {
        return None;
    }
    by_name(t)
}

/// The program names installed as links to `rump_mount`.
pub fn program_names() -> impl Iterator<Item = String> {
    TYPES
        .iter()
        .filter(|t| t.name != "ext2fs")
        .map(|t| format!("rump_{}", t.name))
}

/// Settings of the type-specific options.
#[derive(Clone, Debug, Default)]
pub struct TypeOpts {
    /// Owner of every file (msdos, ntfs; udf's anonymous owner; tmpfs root).
    pub uid: Option<u32>,
    /// Group of every file.
    pub gid: Option<u32>,
    /// Permission mask (msdos files, ntfs, tmpfs root mode).
    pub mask: Option<u32>,
    /// msdos directory mask (default: `mask`).
    pub dirmask: Option<u32>,
    /// msdos: 8.3 names only.
    pub shortnames: bool,
    /// msdos: ignore Windows 95 long names entirely.
    pub nowin95: bool,
    /// cd9660: ignore Rock Ridge.
    pub norrip: bool,
    /// cd9660: ignore Joliet.
    pub nojoliet: bool,
    /// cd9660: keep ISO 9660 names' case and version suffix.
    pub nocasetrans: bool,
    /// Time zone offset of on-disk times in seconds (msdos, udf).
    pub gmtoff: i32,
    /// tmpfs: size limit in bytes (0: none).
    pub size: u64,
    /// tmpfs: node limit (0: none).
    pub nodes: u64,
}

impl TypeOpts {
    /// Take one `key[=value]` option if it is a type-specific one known
    /// to `t`. `Ok(false)`: not one of these; `Err`: a bad value.
    pub fn take(&mut self, t: &FsType, key: &str, val: Option<&str>) -> Result<bool, String> {
        let num = |v: Option<&str>, radix: u32| -> Result<u32, String> {
            let v = v.ok_or_else(|| format!("{key}: needs a value"))?;
            u32::from_str_radix(v, radix).map_err(|_| format!("{key}={v}: not a number"))
        };
        let flag = |v: Option<&str>| -> Result<(), String> {
            match v {
                None => Ok(()),
                Some(_) => Err(format!("{key}: takes no value")),
            }
        };
        use ArgKind::*;
        match (t.args, key) {
            (Msdos | Ntfs | Udf | Tmpfs, "uid") => self.uid = Some(num(val, 10)?),
            (Msdos | Ntfs | Udf | Tmpfs, "gid") => self.gid = Some(num(val, 10)?),
            (Msdos | Ntfs | Tmpfs, "mask" | "mode") => self.mask = Some(num(val, 8)? & 0o7777),
            (Msdos, "dirmask") => self.dirmask = Some(num(val, 8)? & 0o7777),
            (Msdos, "shortnames" | "shortname") => {
                flag(val)?;
                self.shortnames = true
            }
            (Msdos, "longnames" | "longname") => {
                flag(val)?;
                self.shortnames = false
            }
            (Msdos, "nowin95") => {
                flag(val)?;
                self.nowin95 = true
            }
            (Msdos | Udf, "gmtoff") => {
                let v = val.ok_or_else(|| format!("{key}: needs a value"))?;
                self.gmtoff = v.parse().map_err(|_| format!("{key}={v}: not a number"))?;
            }
            (Iso, "norrip") => {
                flag(val)?;
                self.norrip = true
            }
            (Iso, "nojoliet") => {
                flag(val)?;
                self.nojoliet = true
            }
            (Iso, "nocasetrans") => {
                flag(val)?;
                self.nocasetrans = true
            }
            (Tmpfs, "size") => {
                let v = val.ok_or_else(|| format!("{key}: needs a value"))?;
                self.size = parse_size(v).ok_or_else(|| format!("{key}={v}: not a size"))?;
            }
            (Tmpfs, "nodes") => {
                let v = val.ok_or_else(|| format!("{key}: needs a value"))?;
                self.nodes = v.parse().map_err(|_| format!("{key}={v}: not a number"))?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// A size with an optional k/m/g suffix (powers of 1024).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mul) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 1u64 << 10),
        b'm' | b'M' => (&s[..s.len() - 1], 1 << 20),
        b'g' | b'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mul)
}

/// A built `mount(2)` argument structure: the bytes, and the device name
/// string its `fspec` pointer points at (kept alive with it).
pub struct MountArgs {
    bytes: Vec<u8>,
    _fspec: CString,
}

impl MountArgs {
    /// The structure, for `mount(2)`'s `data` (the kernel reads it, and
    /// for udf writes the session number back).
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.bytes.as_mut_ptr()
    }
    /// Its size, `mount(2)`'s `data_len`.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }
    /// Whether it is empty (never: every structure has fields).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}
fn put64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

/// NetBSD's `nobody` (uid and gid 32767), udf's owner of files without one.
const NOBODY: u32 = 32767;

/// Build `t`'s argument structure for the device `fspec` (a drive key),
/// with `uid`/`gid` the defaults for owners.
pub fn build_args(
    t: &FsType,
    fspec: &str,
    o: &TypeOpts,
    uid: u32,
    gid: u32,
) -> Result<MountArgs, String> {
    let fspec = CString::new(fspec).map_err(|_| format!("{fspec}: NUL in device name"))?;
    let p = fspec.as_ptr() as usize as u64;
    let uid = o.uid.unwrap_or(uid);
    let gid = o.gid.unwrap_or(gid);
    let bytes = match t.args {
        ArgKind::Ufs => p.to_le_bytes().to_vec(),
        ArgKind::Efs | ArgKind::V7fs => {
            let mut b = vec![0u8; 16];
            put64(&mut b, 0, p);
            // efs: version 0 (EFS_MNT_VERSION); v7fs: the image's byte
            // order, little endian (1234) as made on this host.
            put32(&mut b, 8, if t.args == ArgKind::V7fs { 1234 } else { 0 });
            b
        }
        ArgKind::Msdos => {
            let mut b = vec![0u8; 168];
            put64(&mut b, 0, p);
            let at = 8 + EXPORT_ARGS30;
            let mask = o.mask.unwrap_or(0o755);
            // shortname 1, longname 2, nowin95 4, versioned 16.
            let mut flags = 16u32;
            if o.nowin95 {
                flags |= 4;
            } else if o.shortnames {
                flags |= 1;
            } else {
                flags |= 2;
            }
            put32(&mut b, at, uid);
            put32(&mut b, at + 4, gid);
            put32(&mut b, at + 8, mask);
            put32(&mut b, at + 12, flags);
            put32(&mut b, at + 16, 3); // MSDOSFSMNT_VERSION
            put32(&mut b, at + 20, o.dirmask.unwrap_or(mask));
            put32(&mut b, at + 24, o.gmtoff as u32);
            b
        }
        ArgKind::Iso => {
            let mut b = vec![0u8; 144];
            put64(&mut b, 0, p);
            // norrip 1, nojoliet 8, nocasetrans 16.
            let mut flags = 0u32;
            if o.norrip {
                flags |= 1;
            }
            if o.nojoliet {
                flags |= 8;
            }
            if o.nocasetrans {
                flags |= 16;
            }
            put32(&mut b, 8 + EXPORT_ARGS30, flags);
            b
        }
        ArgKind::Ntfs => {
            let mut b = vec![0u8; 160];
            put64(&mut b, 0, p);
            let at = 8 + EXPORT_ARGS30;
            put32(&mut b, at, uid);
            put32(&mut b, at + 4, gid);
            put32(&mut b, at + 8, o.mask.unwrap_or(0o755));
            // u_long flag at 152: no case folding, primary names only.
            put64(&mut b, 152, 0);
            b
        }
        ArgKind::Udf => {
            let mut b = vec![0u8; 80];
            put32(&mut b, 0, 1); // UDFMNT_VERSION
            put64(&mut b, 8, p);
            put32(&mut b, 16, 0); // session: 0 is the last
            put32(&mut b, 20, 0); // udfmflags
            put32(&mut b, 24, o.gmtoff as u32);
            put32(&mut b, 28, o.uid.unwrap_or(NOBODY));
            put32(&mut b, 32, o.gid.unwrap_or(NOBODY));
            put32(&mut b, 36, NOBODY);
            put32(&mut b, 40, NOBODY);
            put32(&mut b, 44, 0); // sector size: the device's
            b
        }
        ArgKind::Tmpfs => {
            let mut b = vec![0u8; 40];
            put32(&mut b, 0, 1); // TMPFS_ARGS_VERSION
            put64(&mut b, 8, o.nodes);
            put64(&mut b, 16, o.size);
            put32(&mut b, 24, uid);
            put32(&mut b, 28, gid);
            put32(&mut b, 32, o.mask.unwrap_or(0o1777));
            b
        }
    };
    Ok(MountArgs {
        bytes,
        _fspec: fspec,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_netbsds() {
        let o = TypeOpts::default();
        let size = |n: &str| {
            build_args(by_name(n).unwrap(), "/dk", &o, 0, 0)
                .unwrap()
                .len()
        };
        assert_eq!(size("ffs"), 8);
        assert_eq!(size("ext2fs"), 8);
        assert_eq!(size("msdos"), 168);
        assert_eq!(size("cd9660"), 144);
        assert_eq!(size("ntfs"), 160);
        assert_eq!(size("udf"), 80);
        assert_eq!(size("tmpfs"), 40);
    }

    #[test]
    fn program_names_give_types() {
        assert_eq!(by_program("/usr/bin/rump_ffs").unwrap().name, "ffs");
        assert_eq!(by_program("rump_msdos").unwrap().name, "msdos");
        assert!(by_program("rump_mount").is_none());
        assert!(by_program("rump_nonesuch").is_none());
        assert!(program_names().any(|n| n == "rump_cd9660"));
    }

    #[test]
    fn msdos_fields() {
        let mut o = TypeOpts::default();
        let t = by_name("msdos").unwrap();
        assert!(o.take(t, "uid", Some("1000")).unwrap());
        assert!(o.take(t, "mask", Some("644")).unwrap());
        assert!(!o.take(t, "norrip", None).unwrap());
        assert!(o.take(t, "uid", Some("x")).is_err());
        let a = build_args(t, "/dk", &o, 0, 0).unwrap();
        let b = a.bytes();
        let at = 136;
        assert_eq!(u32::from_le_bytes(b[at..at + 4].try_into().unwrap()), 1000);
        assert_eq!(
            u32::from_le_bytes(b[at + 8..at + 12].try_into().unwrap()),
            0o644
        );
        assert_eq!(
            u32::from_le_bytes(b[at + 12..at + 16].try_into().unwrap()),
            18
        );
    }
}
