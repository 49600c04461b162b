//! NetBSD's `mount(2)` for the file systems a rump kernel can host: the
//! `MNT_*` flags, each type's argument structure and its options.
//!
//! The structure layouts are NetBSD's (amd64, LP64: pointers and `long`
//! 8 bytes, the old `struct export_args30` a 128-byte pad), written field
//! by field at their offsets.

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

/// The argument structure of NetBSD's type `fstype` (`ffs`, `msdos`,
/// ...), if one this module knows.
pub fn arg_kind(fstype: &str) -> Option<ArgKind> {
    Some(match fstype {
        "ffs" | "ext2fs" | "lfs" | "hfs" | "sysvbfs" => ArgKind::Ufs,
        "msdos" => ArgKind::Msdos,
        "cd9660" => ArgKind::Iso,
        "ntfs" => ArgKind::Ntfs,
        "udf" => ArgKind::Udf,
        "tmpfs" => ArgKind::Tmpfs,
        "efs" => ArgKind::Efs,
        "v7fs" => ArgKind::V7fs,
        _ => return None,
    })
}

/// NetBSD's name for a type, from the names users also know it by
/// (`ufs` is `ffs`, `ext2` is `ext2fs`, `vfat`/`fat` are `msdos`,
/// `iso9660` is `cd9660`).
pub fn canonical_name(name: &str) -> &str {
    match name {
        "ufs" => "ffs",
        "ext2" => "ext2fs",
        "vfat" | "fat" | "msdosfs" => "msdos",
        "iso9660" => "cd9660",
        other => other,
    }
}

/// The mount flag a generic option stands for (`ro`, `noatime`, `sync`,
/// `async`, `log`, `nosuid`, `nodev`, `noexec`).
pub fn flag_option(opt: &str) -> Option<i32> {
    Some(match opt {
        "ro" | "rdonly" => mnt::RDONLY,
        "noatime" => mnt::NOATIME,
        "sync" => mnt::SYNCHRONOUS,
        "async" => mnt::ASYNC,
        "log" => mnt::LOG,
        "nosuid" => mnt::NOSUID,
        "nodev" => mnt::NODEV,
        "noexec" => mnt::NOEXEC,
        _ => return None,
    })
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

/// A type-specific mount option [`TypeOpts::take`] refuses.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TypeOptError {
    /// `key` needs `=value`.
    #[error("{0}: needs a value")]
    NeedsValue(String),
    /// `key` is a flag but was given a value.
    #[error("{0}: takes no value")]
    TakesNoValue(String),
    /// `key=value` with a value of the wrong form.
    #[error("{key}={value}: {what}")]
    BadValue {
        /// The option.
        key: String,
        /// What was given.
        value: String,
        /// What is wrong with it.
        what: &'static str,
    },
}

impl TypeOpts {
    /// Take one `key[=value]` option if it is a type-specific one of
    /// `kind`'s. `Ok(false)`: not one of these; `Err`: a bad value.
    pub fn take(
        &mut self,
        kind: ArgKind,
        key: &str,
        val: Option<&str>,
    ) -> Result<bool, TypeOptError> {
        let needs = || TypeOptError::NeedsValue(key.to_string());
        let bad = |v: &str, what: &'static str| TypeOptError::BadValue {
            key: key.to_string(),
            value: v.to_string(),
            what,
        };
        let num = |v: Option<&str>, radix: u32| -> Result<u32, TypeOptError> {
            let v = v.ok_or_else(needs)?;
            u32::from_str_radix(v, radix).map_err(|_| bad(v, "not a number"))
        };
        let flag = |v: Option<&str>| -> Result<(), TypeOptError> {
            match v {
                None => Ok(()),
                Some(_) => Err(TypeOptError::TakesNoValue(key.to_string())),
            }
        };
        use ArgKind::*;
        match (kind, key) {
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
                let v = val.ok_or_else(needs)?;
                self.gmtoff = v.parse().map_err(|_| bad(v, "not a number"))?;
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
                let v = val.ok_or_else(needs)?;
                self.size = parse_size(v).ok_or_else(|| bad(v, "not a size"))?;
            }
            (Tmpfs, "nodes") => {
                let v = val.ok_or_else(needs)?;
                self.nodes = v.parse().map_err(|_| bad(v, "not a number"))?;
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

fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}
fn put64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

/// NetBSD's `nobody` (uid and gid 32767), udf's owner of files without one.
const NOBODY: u32 = 32767;

/// The argument structure of a `kind` file system, its `fspec` pointer
/// the address `p` (of the device name, NUL-terminated, in the memory the
/// kernel copies it from), with `uid`/`gid` the default owners.
pub fn build(kind: ArgKind, p: u64, o: &TypeOpts, uid: u32, gid: u32) -> Vec<u8> {
    let uid = o.uid.unwrap_or(uid);
    let gid = o.gid.unwrap_or(gid);
    match kind {
        ArgKind::Ufs => p.to_le_bytes().to_vec(),
        ArgKind::Efs | ArgKind::V7fs => {
            let mut b = vec![0u8; 16];
            put64(&mut b, 0, p);
            // efs: version 0 (EFS_MNT_VERSION); v7fs: the image's byte
            // order, little endian (1234) as made on this host.
            put32(&mut b, 8, if kind == ArgKind::V7fs { 1234 } else { 0 });
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_netbsds() {
        let o = TypeOpts::default();
        let size = |n: &str| build(arg_kind(n).unwrap(), 0x1000, &o, 0, 0).len();
        assert_eq!(size("ffs"), 8);
        assert_eq!(size("ext2fs"), 8);
        assert_eq!(size("msdos"), 168);
        assert_eq!(size("cd9660"), 144);
        assert_eq!(size("ntfs"), 160);
        assert_eq!(size("udf"), 80);
        assert_eq!(size("tmpfs"), 40);
    }

    #[test]
    fn msdos_fields() {
        let mut o = TypeOpts::default();
        let k = ArgKind::Msdos;
        assert!(o.take(k, "uid", Some("1000")).unwrap());
        assert!(o.take(k, "mask", Some("644")).unwrap());
        assert!(!o.take(k, "norrip", None).unwrap());
        assert!(o.take(k, "uid", Some("x")).is_err());
        let b = build(k, 0x1234, &o, 0, 0);
        assert_eq!(u64::from_le_bytes(b[0..8].try_into().unwrap()), 0x1234);
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
