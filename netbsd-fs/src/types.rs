//! The file system types NetBSD's components provide, and the components
//! each needs; the `mount(2)` argument structures are
//! [`netbsd_abi::mount`]'s.

use std::ffi::CString;

use netbsd_abi::mount;
pub use netbsd_abi::mount::{mnt, parse_size, ArgKind, TypeOpts};

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
    let n = mount::canonical_name(name);
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

/// Build `t`'s argument structure for the device `fspec` (a drive key),
/// with `uid`/`gid` the default owners.
pub fn build_args(
    t: &FsType,
    fspec: &str,
    o: &TypeOpts,
    uid: u32,
    gid: u32,
) -> Result<MountArgs, String> {
    let fspec = CString::new(fspec).map_err(|_| format!("{fspec}: NUL in device name"))?;
    let p = fspec.as_ptr() as usize as u64;
    Ok(MountArgs {
        bytes: mount::build(t.args, p, o, uid, gid),
        _fspec: fspec,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_names_give_types() {
        assert_eq!(by_program("/usr/bin/rump_ffs").unwrap().name, "ffs");
        assert_eq!(by_program("rump_msdos").unwrap().name, "msdos");
        assert!(by_program("rump_mount").is_none());
        assert!(by_program("rump_nonesuch").is_none());
        assert!(program_names().any(|n| n == "rump_cd9660"));
    }

    #[test]
    fn every_type_has_its_structure() {
        for t in TYPES {
            assert_eq!(mount::arg_kind(t.name), Some(t.args), "{}", t.name);
            let a = build_args(t, "/dk", &TypeOpts::default(), 0, 0).unwrap();
            assert!(!a.is_empty());
        }
    }
}
