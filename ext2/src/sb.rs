//! On-disk superblock layout, feature flags and the mount-time checks.

use crate::error::{FeatureError, GeometryError};

pub(crate) fn le16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
pub(crate) fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
pub(crate) fn put16(b: &mut [u8], o: usize, v: u16) {
    b[o..o + 2].copy_from_slice(&v.to_le_bytes());
}
pub(crate) fn put32(b: &mut [u8], o: usize, v: u32) {
    b[o..o + 4].copy_from_slice(&v.to_le_bytes());
}

/// Byte offset of the primary superblock on the device.
pub const SUPERBLOCK_OFFSET: u64 = 1024;
/// Size of the superblock.
pub const SUPERBLOCK_SIZE: usize = 1024;
/// `s_magic` of every ext2 (and ext3/ext4) superblock.
pub const EXT2_MAGIC: u16 = 0xEF53;

// Superblock field offsets.
pub(crate) const S_INODES_COUNT: usize = 0;
pub(crate) const S_BLOCKS_COUNT: usize = 4;
pub(crate) const S_R_BLOCKS_COUNT: usize = 8;
pub(crate) const S_FREE_BLOCKS: usize = 12;
pub(crate) const S_FREE_INODES: usize = 16;
pub(crate) const S_FIRST_DATA_BLOCK: usize = 20;
pub(crate) const S_LOG_BLOCK_SIZE: usize = 24;
pub(crate) const S_BLOCKS_PER_GROUP: usize = 32;
pub(crate) const S_INODES_PER_GROUP: usize = 40;
pub(crate) const S_MTIME: usize = 44;
pub(crate) const S_WTIME: usize = 48;
pub(crate) const S_MNT_COUNT: usize = 52;
pub(crate) const S_MAGIC: usize = 56;
pub(crate) const S_STATE: usize = 58;
pub(crate) const S_REV_LEVEL: usize = 76;
pub(crate) const S_FIRST_INO: usize = 84;
pub(crate) const S_INODE_SIZE: usize = 88;
pub(crate) const S_FEATURE_COMPAT: usize = 92;
pub(crate) const S_FEATURE_INCOMPAT: usize = 96;
pub(crate) const S_FEATURE_RO_COMPAT: usize = 100;
pub(crate) const S_RESERVED_GDT_BLOCKS: usize = 206;
pub(crate) const S_MIN_EXTRA_ISIZE: usize = 348;
pub(crate) const S_WANT_EXTRA_ISIZE: usize = 350;

/// `s_state` bits.
pub const STATE_VALID: u16 = 1;
pub const STATE_ERROR: u16 = 2;

/// Feature flags (`s_feature_compat`, `_incompat`, `_ro_compat`).
pub mod features {
    /// `dir_prealloc`: directories preallocate blocks (compatible: ignored, the mount is read-write).
    pub const COMPAT_DIR_PREALLOC: u32 = 0x0001;
    /// `imagic_inodes`: inodes of an AFS server (compatible: ignored, the mount is read-write).
    pub const COMPAT_IMAGIC_INODES: u32 = 0x0002;
    /// `has_journal`: an ext3 journal is present (compatible: ignored, the mount is read-write).
    pub const COMPAT_HAS_JOURNAL: u32 = 0x0004;
    /// `ext_attr`: extended attributes (compatible: ignored, the mount is read-write).
    pub const COMPAT_EXT_ATTR: u32 = 0x0008;
    /// `resize_inode`: blocks reserved to grow the group descriptor table (compatible: ignored, the mount is read-write).
    pub const COMPAT_RESIZE_INODE: u32 = 0x0010;
    /// `dir_index`: hashed directory indexes (compatible: ignored, the mount is read-write).
    pub const COMPAT_DIR_INDEX: u32 = 0x0020;
    /// `sparse_super2`: at most two backup superblocks (compatible: ignored, the mount is read-write).
    pub const COMPAT_SPARSE_SUPER2: u32 = 0x0200;

    /// `compression`: compressed files (not implemented: the mount is refused).
    pub const INCOMPAT_COMPRESSION: u32 = 0x0001;
    /// `filetype`: directory entries carry the file type (implemented).
    pub const INCOMPAT_FILETYPE: u32 = 0x0002;
    /// `needs_recovery`: the journal must be replayed first (not implemented: the mount is refused).
    pub const INCOMPAT_RECOVER: u32 = 0x0004;
    /// `journal_dev`: the device is an external journal, not a file system (not implemented: the mount is refused).
    pub const INCOMPAT_JOURNAL_DEV: u32 = 0x0008;
    /// `meta_bg`: group descriptors spread over meta block groups (not implemented: the mount is refused).
    pub const INCOMPAT_META_BG: u32 = 0x0010;
    /// `extent`: files mapped by extents (ext4) (not implemented: the mount is refused).
    pub const INCOMPAT_EXTENTS: u32 = 0x0040;
    /// `64bit`: block numbers wider than 32 bits (not implemented: the mount is refused).
    pub const INCOMPAT_64BIT: u32 = 0x0080;
    /// `mmp`: multiple-mount protection (not implemented: the mount is refused).
    pub const INCOMPAT_MMP: u32 = 0x0100;
    /// `flex_bg`: bitmaps and inode tables of several groups packed together (implemented).
    pub const INCOMPAT_FLEX_BG: u32 = 0x0200;
    /// `ea_inode`: large extended attributes kept in inodes (not implemented: the mount is refused).
    pub const INCOMPAT_EA_INODE: u32 = 0x0400;
    /// `dirdata`: data in directory entries (not implemented: the mount is refused).
    pub const INCOMPAT_DIRDATA: u32 = 0x1000;
    /// `metadata_csum_seed`: the checksum seed kept in the superblock (not implemented: the mount is refused).
    pub const INCOMPAT_CSUM_SEED: u32 = 0x2000;
    /// `large_dir`: directories beyond 2 GiB or three index levels (not implemented: the mount is refused).
    pub const INCOMPAT_LARGEDIR: u32 = 0x4000;
    /// `inline_data`: small files' data kept in the inode (not implemented: the mount is refused).
    pub const INCOMPAT_INLINE_DATA: u32 = 0x8000;
    /// `encrypt`: encrypted files (not implemented: the mount is refused).
    pub const INCOMPAT_ENCRYPT: u32 = 0x10000;
    /// `casefold`: case-insensitive names (not implemented: the mount is refused).
    pub const INCOMPAT_CASEFOLD: u32 = 0x20000;

    /// `sparse_super`: backup superblocks in some groups only (kept intact when writing).
    pub const RO_COMPAT_SPARSE_SUPER: u32 = 0x0001;
    /// `large_file`: files of 2 GiB and more (kept intact when writing).
    pub const RO_COMPAT_LARGE_FILE: u32 = 0x0002;
    /// `btree_dir`: directory B-trees (never used by Linux) (not kept up to date by this component: forces a read-only mount).
    pub const RO_COMPAT_BTREE_DIR: u32 = 0x0004;
    /// `huge_file`: file sizes counted in file system blocks (not kept up to date by this component: forces a read-only mount).
    pub const RO_COMPAT_HUGE_FILE: u32 = 0x0008;
    /// `uninit_bg`: group descriptor checksums, uninitialised groups (not kept up to date by this component: forces a read-only mount).
    pub const RO_COMPAT_GDT_CSUM: u32 = 0x0010;
    /// `dir_nlink`: more than 65000 subdirectories (not kept up to date by this component: forces a read-only mount).
    pub const RO_COMPAT_DIR_NLINK: u32 = 0x0020;
    /// `extra_isize`: large inodes reserve room for extra fields (kept intact when writing).
    pub const RO_COMPAT_EXTRA_ISIZE: u32 = 0x0040;
    /// `quota`: quota inodes (not kept up to date by this component: forces a read-only mount).
    pub const RO_COMPAT_QUOTA: u32 = 0x0100;
    /// `bigalloc`: allocation in clusters of blocks (not kept up to date by this component: forces a read-only mount).
    pub const RO_COMPAT_BIGALLOC: u32 = 0x0200;
    /// `metadata_csum`: metadata checksums (not kept up to date by this component: forces a read-only mount).
    pub const RO_COMPAT_METADATA_CSUM: u32 = 0x0400;
    /// `read-only`: the file system is marked read-only (not kept up to date by this component: forces a read-only mount).
    pub const RO_COMPAT_READONLY: u32 = 0x1000;
    /// `project`: project quotas (not kept up to date by this component: forces a read-only mount).
    pub const RO_COMPAT_PROJECT: u32 = 0x2000;
    /// `verity`: verity-protected files (not kept up to date by this component: forces a read-only mount).
    pub const RO_COMPAT_VERITY: u32 = 0x8000;
    /// `orphan_present`: an orphan file with entries (not kept up to date by this component: forces a read-only mount).
    pub const RO_COMPAT_ORPHAN_PRESENT: u32 = 0x10000;

    /// Incompatible features this component implements. `flex_bg` only
    /// moves bitmaps and inode tables; every location is read from the
    /// group descriptors, so it costs nothing.
    pub const SUPPORTED_INCOMPAT: u32 = INCOMPAT_FILETYPE | INCOMPAT_FLEX_BG;
    /// Read-only-compatible features this component keeps intact when
    /// writing. Any other forces a read-only mount.
    pub const SUPPORTED_RO_COMPAT: u32 =
        RO_COMPAT_SPARSE_SUPER | RO_COMPAT_LARGE_FILE | RO_COMPAT_EXTRA_ISIZE;

    pub(crate) const INCOMPAT_NAMES: &[(u32, &str)] = &[
        (INCOMPAT_COMPRESSION, "compression"),
        (INCOMPAT_FILETYPE, "filetype"),
        (INCOMPAT_RECOVER, "needs_recovery"),
        (INCOMPAT_JOURNAL_DEV, "journal_dev"),
        (INCOMPAT_META_BG, "meta_bg"),
        (INCOMPAT_EXTENTS, "extent"),
        (INCOMPAT_64BIT, "64bit"),
        (INCOMPAT_MMP, "mmp"),
        (INCOMPAT_FLEX_BG, "flex_bg"),
        (INCOMPAT_EA_INODE, "ea_inode"),
        (INCOMPAT_DIRDATA, "dirdata"),
        (INCOMPAT_CSUM_SEED, "metadata_csum_seed"),
        (INCOMPAT_LARGEDIR, "large_dir"),
        (INCOMPAT_INLINE_DATA, "inline_data"),
        (INCOMPAT_ENCRYPT, "encrypt"),
        (INCOMPAT_CASEFOLD, "casefold"),
    ];
    pub(crate) const RO_COMPAT_NAMES: &[(u32, &str)] = &[
        (RO_COMPAT_SPARSE_SUPER, "sparse_super"),
        (RO_COMPAT_LARGE_FILE, "large_file"),
        (RO_COMPAT_BTREE_DIR, "btree_dir"),
        (RO_COMPAT_HUGE_FILE, "huge_file"),
        (RO_COMPAT_GDT_CSUM, "uninit_bg"),
        (RO_COMPAT_DIR_NLINK, "dir_nlink"),
        (RO_COMPAT_EXTRA_ISIZE, "extra_isize"),
        (RO_COMPAT_QUOTA, "quota"),
        (RO_COMPAT_BIGALLOC, "bigalloc"),
        (RO_COMPAT_METADATA_CSUM, "metadata_csum"),
        (RO_COMPAT_READONLY, "read-only"),
        (RO_COMPAT_PROJECT, "project"),
        (RO_COMPAT_VERITY, "verity"),
        (RO_COMPAT_ORPHAN_PRESENT, "orphan_present"),
    ];
}

/// The names of feature `bits` from `table` (unknown bits in hex), for a
/// message.
pub(crate) fn feature_names(bits: u32, table: &[(u32, &str)]) -> String {
    let mut out = Vec::new();
    let mut rest = bits;
    for &(bit, name) in table {
        if bits & bit != 0 {
            out.push(name.to_string());
            rest &= !bit;
        }
    }
    for i in 0..32 {
        if rest & (1 << i) != 0 {
            out.push(format!("0x{:x}", 1u32 << i));
        }
    }
    out.join(", ")
}

/// What the feature flags of a superblock allow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Compat {
    /// Mountable read-write.
    ReadWrite,
    /// Mountable read-only only; the text says why.
    ReadOnly(String),
}

/// Checks the 1024-byte superblock `sb` (as found at byte 1024 of the
/// device): magic, revision and feature flags. `Err` says why the image
/// cannot be mounted at all.
///
/// Policy: incompatible features other than `filetype` and `flex_bg` are
/// refused (`needs_recovery`: a journal must be replayed first, with
/// e2fsck or a Linux mount; `extent`, `64bit`, `meta_bg`, `inline_data`...:
/// ext4 layouts this component does not read). An ext3 image with a clean
/// journal (`has_journal` without `needs_recovery`) is accepted like NetBSD
/// does: the journal inode is left alone and never written, so it stays
/// clean and empty. Read-only-compatible features other than
/// `sparse_super`, `large_file` and `extra_isize` force read-only.
pub fn check_features(sb: &[u8]) -> Result<Compat, FeatureError> {
    use features::*;
    if sb.len() < SUPERBLOCK_SIZE {
        return Err(FeatureError::ShortSuperblock);
    }
    let magic = le16(sb, S_MAGIC);
    if magic != EXT2_MAGIC {
        return Err(FeatureError::BadMagic(magic));
    }
    let rev = le32(sb, S_REV_LEVEL);
    if rev > 1 {
        return Err(FeatureError::Revision(rev));
    }
    if rev == 0 {
        return Ok(Compat::ReadWrite);
    }
    let incompat = le32(sb, S_FEATURE_INCOMPAT);
    if incompat & INCOMPAT_RECOVER != 0 {
        return Err(FeatureError::NeedsRecovery);
    }
    let bad = incompat & !SUPPORTED_INCOMPAT;
    if bad != 0 {
        return Err(FeatureError::Incompatible(bad));
    }
    let ro = le32(sb, S_FEATURE_RO_COMPAT) & !SUPPORTED_RO_COMPAT;
    if ro != 0 {
        return Ok(Compat::ReadOnly(format!(
            "read-only-compatible features not implemented for writing: {}; mounting read-only",
            feature_names(ro, RO_COMPAT_NAMES)
        )));
    }
    Ok(Compat::ReadWrite)
}

/// The fixed shape of a file system, from its superblock.
#[derive(Clone, Debug)]
pub(crate) struct Geometry {
    pub bs: u32,
    pub blocks_count: u32,
    pub inodes_count: u32,
    pub first_data_block: u32,
    pub bpg: u32,
    pub ipg: u32,
    pub ngroups: u32,
    pub inode_size: u32,
    pub first_ino: u32,
    pub rev: u32,
    pub filetype: bool,
    pub huge_file: bool,
    /// i_extra_isize for new inodes (0 with 128-byte inodes).
    pub new_extra_isize: u16,
    /// Block number of the first group descriptor block.
    pub gdt_block: u32,
    pub gdt_blocks: u32,
    /// Blocks reserved for root (`s_r_blocks_count`).
    pub r_blocks_count: u32,
    /// Descriptor blocks reserved for growth after each descriptor copy
    /// (`s_reserved_gdt_blocks`, with `resize_inode`; else 0).
    pub reserved_gdt_blocks: u32,
    /// Superblock and descriptor copies only in groups 0, 1 and powers
    /// of 3, 5 and 7.
    pub sparse_super: bool,
}

impl Geometry {
    pub fn parse(sb: &[u8]) -> Result<Geometry, GeometryError> {
        let log = le32(sb, S_LOG_BLOCK_SIZE);
        if log > 2 {
            return Err(GeometryError::BlockSize(1024u64 << log.min(20)));
        }
        let bs = 1024u32 << log;
        let blocks_count = le32(sb, S_BLOCKS_COUNT);
        let inodes_count = le32(sb, S_INODES_COUNT);
        let first_data_block = le32(sb, S_FIRST_DATA_BLOCK);
        let bpg = le32(sb, S_BLOCKS_PER_GROUP);
        let ipg = le32(sb, S_INODES_PER_GROUP);
        if bpg == 0 || bpg > 8 * bs || ipg == 0 || ipg > 8 * bs {
            return Err(GeometryError::Groups {
                blocks: bpg,
                inodes: ipg,
            });
        }
        if first_data_block > 1 || blocks_count <= first_data_block {
            return Err(GeometryError::BlockCount {
                blocks: blocks_count,
                first: first_data_block,
            });
        }
        let ngroups = (blocks_count - first_data_block).div_ceil(bpg);
        if (ngroups as u64) * (ipg as u64) != inodes_count as u64 {
            return Err(GeometryError::InodeCount {
                inodes: inodes_count,
                groups: ngroups,
                per_group: ipg,
            });
        }
        let rev = le32(sb, S_REV_LEVEL);
        let (inode_size, first_ino, incompat, ro) = if rev == 0 {
            (128, 11, 0, 0)
        } else {
            (
                le16(sb, S_INODE_SIZE) as u32,
                le32(sb, S_FIRST_INO),
                le32(sb, S_FEATURE_INCOMPAT),
                le32(sb, S_FEATURE_RO_COMPAT),
            )
        };
        if inode_size < 128 || !inode_size.is_power_of_two() || inode_size > bs {
            return Err(GeometryError::InodeSize(inode_size));
        }
        if first_ino < 3 || first_ino > inodes_count {
            return Err(GeometryError::FirstInode(first_ino));
        }
        let new_extra_isize = if inode_size > 128 {
            let want = le16(sb, S_WANT_EXTRA_ISIZE).max(le16(sb, S_MIN_EXTRA_ISIZE));
            let want = if want == 0 { 32 } else { want };
            (want.min((inode_size - 128) as u16)) & !3
        } else {
            0
        };
        let gdt_blocks = (ngroups * 32).div_ceil(bs);
        Ok(Geometry {
            bs,
            blocks_count,
            inodes_count,
            first_data_block,
            bpg,
            ipg,
            ngroups,
            inode_size,
            first_ino,
            rev,
            filetype: incompat & features::INCOMPAT_FILETYPE != 0,
            huge_file: ro & features::RO_COMPAT_HUGE_FILE != 0,
            new_extra_isize,
            gdt_block: first_data_block + 1,
            gdt_blocks,
            r_blocks_count: le32(sb, S_R_BLOCKS_COUNT),
            reserved_gdt_blocks: if rev >= 1
                && le32(sb, S_FEATURE_COMPAT) & features::COMPAT_RESIZE_INODE != 0
            {
                le16(sb, S_RESERVED_GDT_BLOCKS) as u32
            } else {
                0
            },
            sparse_super: ro & features::RO_COMPAT_SPARSE_SUPER != 0,
        })
    }

    /// Number of blocks in group `g` (the last one may be short).
    pub fn blocks_in_group(&self, g: u32) -> u32 {
        let start = self.first_data_block as u64 + g as u64 * self.bpg as u64;
        (self.blocks_count as u64 - start).min(self.bpg as u64) as u32
    }

    pub fn group_start(&self, g: u32) -> u32 {
        self.first_data_block + g * self.bpg
    }

    /// Whether group `g` holds a copy of the superblock and descriptors.
    pub fn group_has_super(&self, g: u32) -> bool {
        if !self.sparse_super || g <= 1 {
            return true;
        }
        let power_of = |b: u32| {
            let mut n = b;
            while n < g {
                n = n.saturating_mul(b);
            }
            n == g
        };
        power_of(3) || power_of(5) || power_of(7)
    }

    /// Blocks the file system's own structures take, which statvfs leaves
    /// out of its size (as NetBSD and Linux do): the blocks before the
    /// first group, each superblock copy with its descriptor blocks (and
    /// the descriptor blocks reserved for growth), and every group's two
    /// bitmaps and inode table.
    pub fn overhead(&self) -> u64 {
        let itb = (self.ipg as u64 * self.inode_size as u64).div_ceil(self.bs as u64);
        let copies = (0..self.ngroups)
            .filter(|&g| self.group_has_super(g))
            .count() as u64;
        self.first_data_block as u64
            + copies * (1 + self.gdt_blocks as u64 + self.reserved_gdt_blocks as u64)
            + self.ngroups as u64 * (2 + itb)
    }
}
