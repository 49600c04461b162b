//! The on-disk inode, as raw bytes with typed accessors.

use crate::sb::{le16, le32, put16, put32};
use netbsd_abi::errno::EINVAL;
use netbsd_abi::stat::Timespec;
use netbsd_abi::Errno;
use vfs::FileKind;

pub(crate) const I_MODE: usize = 0;
pub(crate) const I_UID: usize = 2;
pub(crate) const I_SIZE: usize = 4;
pub(crate) const I_DTIME: usize = 20;
pub(crate) const I_GID: usize = 24;
pub(crate) const I_LINKS: usize = 26;
pub(crate) const I_BLOCKS: usize = 28;
pub(crate) const I_FLAGS: usize = 32;
pub(crate) const I_BLOCK: usize = 40;
pub(crate) const I_GENERATION: usize = 100;
pub(crate) const I_FILE_ACL: usize = 104;
pub(crate) const I_SIZE_HIGH: usize = 108;
pub(crate) const I_BLOCKS_HI: usize = 116;
pub(crate) const I_UID_HIGH: usize = 120;
pub(crate) const I_GID_HIGH: usize = 122;
pub(crate) const I_EXTRA_ISIZE: usize = 128;

/// `i_flags`: hashed-index directory.
pub(crate) const INDEX_FL: u32 = 0x1000;
pub(crate) const HUGE_FILE_FL: u32 = 0x40000;
pub(crate) const EXTENTS_FL: u32 = 0x80000;

pub(crate) const S_IFMT: u16 = 0o170000;

#[derive(Clone, Copy)]
pub(crate) enum TimeField {
    Access,
    Modify,
    Change,
    Birth,
}

impl TimeField {
    /// (seconds offset, extra offset)
    fn offsets(self) -> (usize, usize) {
        match self {
            TimeField::Access => (8, 140),
            TimeField::Change => (12, 132),
            TimeField::Modify => (16, 136),
            TimeField::Birth => (144, 148),
        }
    }
}

#[derive(Clone)]
pub(crate) struct Inode {
    pub num: u32,
    pub raw: Vec<u8>,
}

pub(crate) fn kind_of_mode(mode: u16) -> Option<FileKind> {
    Some(match mode & S_IFMT {
        0o040000 => FileKind::Dir,
        0o100000 => FileKind::Reg,
        0o120000 => FileKind::Lnk,
        0o060000 => FileKind::Blk,
        0o020000 => FileKind::Chr,
        0o010000 => FileKind::Fifo,
        0o140000 => FileKind::Sock,
        _ => return None,
    })
}

/// Directory entry `file_type` for a kind.
pub(crate) fn dirent_ftype(kind: FileKind) -> u8 {
    match kind {
        FileKind::Reg => 1,
        FileKind::Dir => 2,
        FileKind::Chr => 3,
        FileKind::Blk => 4,
        FileKind::Fifo => 5,
        FileKind::Sock => 6,
        FileKind::Lnk => 7,
    }
}

pub(crate) fn kind_of_ftype(t: u8) -> Option<FileKind> {
    Some(match t {
        1 => FileKind::Reg,
        2 => FileKind::Dir,
        3 => FileKind::Chr,
        4 => FileKind::Blk,
        5 => FileKind::Fifo,
        6 => FileKind::Sock,
        7 => FileKind::Lnk,
        _ => return None,
    })
}

impl Inode {
    pub fn mode(&self) -> u16 {
        le16(&self.raw, I_MODE)
    }
    pub fn set_mode(&mut self, m: u16) {
        put16(&mut self.raw, I_MODE, m)
    }
    pub fn kind(&self) -> Option<FileKind> {
        kind_of_mode(self.mode())
    }
    pub fn is_dir(&self) -> bool {
        self.mode() & S_IFMT == 0o040000
    }
    pub fn is_reg(&self) -> bool {
        self.mode() & S_IFMT == 0o100000
    }
    pub fn is_lnk(&self) -> bool {
        self.mode() & S_IFMT == 0o120000
    }
    pub fn uid(&self) -> u32 {
        le16(&self.raw, I_UID) as u32 | (le16(&self.raw, I_UID_HIGH) as u32) << 16
    }
    pub fn set_uid(&mut self, v: u32) {
        put16(&mut self.raw, I_UID, v as u16);
        put16(&mut self.raw, I_UID_HIGH, (v >> 16) as u16);
    }
    pub fn gid(&self) -> u32 {
        le16(&self.raw, I_GID) as u32 | (le16(&self.raw, I_GID_HIGH) as u32) << 16
    }
    pub fn set_gid(&mut self, v: u32) {
        put16(&mut self.raw, I_GID, v as u16);
        put16(&mut self.raw, I_GID_HIGH, (v >> 16) as u16);
    }
    pub fn size(&self) -> u64 {
        le32(&self.raw, I_SIZE) as u64 | (le32(&self.raw, I_SIZE_HIGH) as u64) << 32
    }
    pub fn set_size(&mut self, s: u64) {
        put32(&mut self.raw, I_SIZE, s as u32);
        put32(&mut self.raw, I_SIZE_HIGH, (s >> 32) as u32);
    }
    pub fn links(&self) -> u16 {
        le16(&self.raw, I_LINKS)
    }
    pub fn set_links(&mut self, n: u16) {
        put16(&mut self.raw, I_LINKS, n)
    }
    /// i_blocks in 512-byte units (low 32 bits; huge_file handled by the caller).
    pub fn blocks512(&self) -> u32 {
        le32(&self.raw, I_BLOCKS)
    }
    pub fn set_blocks512(&mut self, n: u32) {
        put32(&mut self.raw, I_BLOCKS, n)
    }
    pub fn blocks_hi(&self) -> u16 {
        le16(&self.raw, I_BLOCKS_HI)
    }
    pub fn flags(&self) -> u32 {
        le32(&self.raw, I_FLAGS)
    }
    pub fn set_flags(&mut self, f: u32) {
        put32(&mut self.raw, I_FLAGS, f)
    }
    pub fn block(&self, i: usize) -> u32 {
        le32(&self.raw, I_BLOCK + 4 * i)
    }
    pub fn set_block(&mut self, i: usize, b: u32) {
        put32(&mut self.raw, I_BLOCK + 4 * i, b)
    }
    pub fn file_acl(&self) -> u32 {
        le32(&self.raw, I_FILE_ACL)
    }
    pub fn set_file_acl(&mut self, b: u32) {
        put32(&mut self.raw, I_FILE_ACL, b)
    }
    pub fn set_dtime(&mut self, t: u32) {
        put32(&mut self.raw, I_DTIME, t)
    }
    pub fn set_generation(&mut self, g: u32) {
        put32(&mut self.raw, I_GENERATION, g)
    }
    fn extra_isize(&self) -> usize {
        if self.raw.len() > 128 {
            le16(&self.raw, I_EXTRA_ISIZE) as usize
        } else {
            0
        }
    }
    pub fn set_extra_isize(&mut self, n: u16) {
        if self.raw.len() > 128 {
            put16(&mut self.raw, I_EXTRA_ISIZE, n)
        }
    }
    /// Whether the 4-byte field at `off` (>= 128) lies inside i_extra_isize.
    fn has_extra(&self, off: usize) -> bool {
        let e = self.extra_isize();
        self.raw.len() > 128 && off + 4 <= 128 + e && 128 + e <= self.raw.len()
    }

    pub fn time(&self, f: TimeField) -> Timespec {
        let (base, extra) = f.offsets();
        if base >= 128 && !self.has_extra(base) {
            return Timespec { sec: 0, nsec: 0 };
        }
        let lo = le32(&self.raw, base) as i32 as i64;
        if self.has_extra(extra) {
            let x = le32(&self.raw, extra);
            let epoch = (x & 3) as i64;
            Timespec {
                sec: lo + (epoch << 32),
                nsec: (x >> 2) as i64,
            }
        } else {
            Timespec { sec: lo, nsec: 0 }
        }
    }

    pub fn set_time(&mut self, f: TimeField, t: Timespec) {
        let (base, extra) = f.offsets();
        if base >= 128 && !self.has_extra(base) {
            return;
        }
        let lo = t.sec as u32;
        put32(&mut self.raw, base, lo);
        if self.has_extra(extra) {
            let epoch = ((t.sec - lo as i32 as i64) >> 32) as u32 & 3;
            let nsec = (t.nsec.clamp(0, 999_999_999) as u32) << 2;
            put32(&mut self.raw, extra, nsec | epoch);
        }
    }

    /// A fast symlink keeps its target in i_block (the kernel's test:
    /// no data blocks other than an extended-attribute block).
    pub fn is_fast_symlink(&self, bs: u32) -> bool {
        if !self.is_lnk() {
            return false;
        }
        let ea = if self.file_acl() != 0 { bs / 512 } else { 0 };
        self.blocks512() == ea
    }

    /// Whether i_block holds block pointers (not a symlink target or a
    /// device number).
    pub fn has_block_map(&self, bs: u32) -> bool {
        match self.mode() & S_IFMT {
            0o100000 | 0o040000 => true,
            0o120000 => !self.is_fast_symlink(bs),
            _ => false,
        }
    }

    /// Store device number `dev` (NetBSD's `dev_t`: major in bits 8-19,
    /// minor in bits 0-7 and 20-31) as Linux and e2fsprogs read it: the
    /// old 8+8-bit form in the first block slot when it fits (which
    /// NetBSD's ext2fs reads too), else the 32-bit form in the second.
    pub fn set_rdev(&mut self, dev: u64) -> Result<(), Errno> {
        let dev = u32::try_from(dev).map_err(|_| Errno(EINVAL))?;
        let major = (dev & 0x000f_ff00) >> 8;
        let minor = (dev & 0xff) | ((dev & 0xfff0_0000) >> 12);
        if major < 256 && minor < 256 {
            self.set_block(0, (major << 8) | minor);
            self.set_block(1, 0);
        } else {
            self.set_block(0, 0);
            self.set_block(1, (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12));
        }
        Ok(())
    }

    /// NetBSD dev_t of a device node.
    pub fn rdev(&self) -> u64 {
        let (major, minor) = if self.block(0) != 0 {
            let v = self.block(0);
            ((v >> 8) & 0xff, v & 0xff)
        } else {
            let v = self.block(1);
            ((v & 0xfff00) >> 8, (v & 0xff) | ((v >> 12) & 0xfff00))
        };
        (((major << 8) & 0x000f_ff00) | ((minor << 12) & 0xfff0_0000) | (minor & 0xff)) as u64
    }
}
