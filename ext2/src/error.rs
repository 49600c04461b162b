//! Why an image cannot be mounted: [`MountError`] (with the errno the
//! `mount(2)` call returns), [`FeatureError`] (what
//! [`check_features`](crate::check_features) refuses) and
//! [`GeometryError`] (a superblock whose shape makes no sense). Each
//! prints the reason alone, for the caller to prefix with the program and
//! the object (docs/design.md, "ext2").

use netbsd_abi::errno::{EFTYPE, EINVAL, EPERM};
use netbsd_abi::Errno;

use crate::sb::{feature_names, features};

/// Why a mount failed. [`MountError::errno`] is the errno for the system
/// call; the message (`Display`) is for the log and the user.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MountError {
    /// The device cannot even hold a superblock (`EINVAL`).
    #[error("device too small for an ext2 file system")]
    TooSmall,
    /// Reading the superblock failed (its errno).
    #[error("cannot read the superblock: {0}")]
    ReadSuperblock(Errno),
    /// `s_magic` is not ext2's (`EINVAL`).
    #[error("not an ext2 file system (magic 0x{0:04x})")]
    BadMagic(u16),
    /// A revision or an incompatible feature this component lacks
    /// (`EFTYPE`).
    #[error(transparent)]
    Feature(#[from] FeatureError),
    /// The superblock's geometry is impossible (`EINVAL`).
    #[error(transparent)]
    Geometry(#[from] GeometryError),
    /// The device is shorter than the file system says it is (`EINVAL`).
    #[error("device ({device} bytes) smaller than the file system ({fs} bytes)")]
    DeviceTooSmall {
        /// The device's size in bytes.
        device: u64,
        /// The file system's size in bytes.
        fs: u64,
    },
    /// A read-write mount of a file system not cleanly unmounted, or with
    /// errors, without [`MountOptions::force`](crate::MountOptions)
    /// (`EPERM`, as NetBSD).
    #[error(
        "read-write mount denied: the file system is not clean (run fsck, \
         or mount read-only or forced)"
    )]
    NotClean,
    /// Reading the group descriptors failed (its errno).
    #[error("cannot read the group descriptors: {0}")]
    ReadGroupDescriptors(Errno),
    /// Group descriptor `n` points outside the file system or counts more
    /// than its group holds (`EINVAL`).
    #[error("corrupt group descriptor {0}")]
    CorruptGroupDescriptor(usize),
    /// Marking the superblock not clean on the device failed (its errno).
    #[error("cannot write the superblock: {0}")]
    WriteSuperblock(Errno),
}

impl MountError {
    /// The errno the `mount(2)` call returns.
    pub fn errno(&self) -> Errno {
        match self {
            MountError::TooSmall
            | MountError::BadMagic(_)
            | MountError::Geometry(_)
            | MountError::DeviceTooSmall { .. }
            | MountError::CorruptGroupDescriptor(_) => Errno(EINVAL),
            MountError::Feature(_) => Errno(EFTYPE),
            MountError::NotClean => Errno(EPERM),
            MountError::ReadSuperblock(e)
            | MountError::ReadGroupDescriptors(e)
            | MountError::WriteSuperblock(e) => *e,
        }
    }
}

/// Why [`check_features`](crate::check_features) refuses a superblock.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FeatureError {
    /// Fewer than 1024 bytes were given.
    #[error("superblock too short")]
    ShortSuperblock,
    /// `s_magic` is not ext2's.
    #[error("not an ext2 file system (magic 0x{0:04x}, expected 0xef53)")]
    BadMagic(u16),
    /// A revision other than 0 and 1.
    #[error("unsupported ext2 revision {0} (only 0 and 1 are known)")]
    Revision(u32),
    /// The journal of an ext3/ext4 image must be replayed first.
    #[error(
        "the ext3/ext4 journal needs recovery (feature needs_recovery); \
         replay it with e2fsck first"
    )]
    NeedsRecovery,
    /// Incompatible features this component does not read (the bits of
    /// `s_feature_incompat`; the message names them).
    #[error(
        "unsupported incompatible features: {} (this ext2 implementation supports \
         filetype and flex_bg only; ext4 images cannot be mounted)",
        feature_names(*.0, features::INCOMPAT_NAMES)
    )]
    Incompatible(u32),
}

/// A superblock whose geometry is impossible.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GeometryError {
    /// `s_log_block_size` gives a block size other than 1, 2 or 4 KiB.
    #[error("unsupported block size {0} (1, 2 and 4 KiB are supported)")]
    BlockSize(u64),
    /// Blocks or inodes per group are zero or more than a bitmap holds.
    #[error("bad group geometry ({blocks} blocks, {inodes} inodes per group)")]
    Groups {
        /// `s_blocks_per_group`.
        blocks: u32,
        /// `s_inodes_per_group`.
        inodes: u32,
    },
    /// The block count leaves no data blocks, or the first data block is
    /// neither 0 nor 1.
    #[error("bad block count {blocks} / first data block {first}")]
    BlockCount {
        /// `s_blocks_count`.
        blocks: u32,
        /// `s_first_data_block`.
        first: u32,
    },
    /// `s_inodes_count` is not groups × inodes per group.
    #[error("inode count {inodes} is not {groups} groups x {per_group} inodes")]
    InodeCount {
        /// `s_inodes_count`.
        inodes: u32,
        /// Number of groups.
        groups: u32,
        /// `s_inodes_per_group`.
        per_group: u32,
    },
    /// The inode size is not a power of two between 128 and the block
    /// size.
    #[error("bad inode size {0}")]
    InodeSize(u32),
    /// The first non-reserved inode is below 3 or beyond the last inode.
    #[error("bad first inode {0}")]
    FirstInode(u32),
}
