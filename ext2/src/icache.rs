//! Inodes in memory: the inode cache (changed inodes reach the store at
//! sync, or when the cache fills), live-inode lookup, new inodes, freeing
//! an inode with its blocks and extended-attribute block, and an inode's
//! attributes as the VFS sees them.

use netbsd_abi::errno::*;
use vfs::{Attr, FileKind};

use crate::fs::{err, now, Fs, R};
use crate::inode::*;
use crate::order::Kind;
use crate::sb::*;

/// Bytes of inodes kept in memory at most.
pub(crate) const ICACHE_BYTES: usize = 8 << 20;

pub(crate) const XATTR_MAGIC: u32 = 0xEA02_0000;

/// An inode as last read or written, and whether the store lacks it.
pub(crate) struct CachedInode {
    pub(crate) raw: Vec<u8>,
    pub(crate) dirty: bool,
}

impl Fs {
    pub(crate) fn inode_off(&self, ino: u32) -> R<u64> {
        if ino == 0 || ino > self.g.inodes_count {
            return err(ENOENT);
        }
        let gi = ((ino - 1) / self.g.ipg) as usize;
        let idx = ((ino - 1) % self.g.ipg) as u64;
        Ok(self.gds[gi].inode_table as u64 * self.g.bs as u64 + idx * self.g.inode_size as u64)
    }

    pub(crate) fn read_inode(&mut self, ino: u32) -> R<Inode> {
        if let Some(e) = self.icache.get(&ino) {
            return Ok(Inode {
                num: ino,
                raw: e.raw.clone(),
            });
        }
        let off = self.inode_off(ino)?;
        let mut raw = vec![0u8; self.g.inode_size as usize];
        self.read_meta(off, &mut raw)?;
        // (A cache that cannot make room just does not keep this one.)
        if self.icache_room().is_ok() {
            self.icache.insert(
                ino,
                CachedInode {
                    raw: raw.clone(),
                    dirty: false,
                },
            );
        }
        Ok(Inode { num: ino, raw })
    }

    /// Record a changed inode. It reaches the store at the next sync (or
    /// when the cache of inodes is full).
    pub(crate) fn write_inode(&mut self, i: &Inode) -> R<()> {
        self.inode_off(i.num)?;
        if let Some(e) = self.icache.get_mut(&i.num) {
            e.raw.copy_from_slice(&i.raw);
            if !e.dirty {
                e.dirty = true;
                self.idirty.push(i.num);
            }
            return Ok(());
        }
        if self.icache_room().is_err() {
            // Full of inodes that cannot be written: write this one through.
            let off = self.inode_off(i.num)?;
            return self.write_meta_part(off, &i.raw, Kind::Itable);
        }
        self.icache.insert(
            i.num,
            CachedInode {
                raw: i.raw.clone(),
                dirty: true,
            },
        );
        self.idirty.push(i.num);
        Ok(())
    }

    /// Make room for one more cached inode: when full, write the dirty
    /// ones and forget every clean one.
    pub(crate) fn icache_room(&mut self) -> R<()> {
        let max = (ICACHE_BYTES / self.g.inode_size as usize).max(64);
        if self.icache.len() < max {
            return Ok(());
        }
        self.flush_inodes()?;
        self.icache.retain(|_, e| e.dirty);
        Ok(())
    }

    /// Write every dirty cached inode to the store (in inode order). One
    /// that cannot be written stays dirty.
    pub(crate) fn flush_inodes(&mut self) -> R<()> {
        if self.idirty.is_empty() {
            return Ok(());
        }
        let mut list = std::mem::take(&mut self.idirty);
        list.sort_unstable();
        list.dedup();
        for (k, &ino) in list.iter().enumerate() {
            let Some(e) = self.icache.get(&ino) else {
                continue;
            };
            if !e.dirty {
                continue;
            }
            let off = self.inode_off(ino)?;
            let raw = e.raw.clone();
            if let Err(err) = self.write_meta_part(off, &raw, Kind::Itable) {
                self.idirty = list[k..].to_vec();
                return Err(err);
            }
            self.icache.get_mut(&ino).unwrap().dirty = false;
        }
        Ok(())
    }

    /// A live inode (allocated, linked or held open).
    pub(crate) fn get(&mut self, ino: u32) -> R<Inode> {
        let i = self.read_inode(ino)?;
        if i.mode() == 0 || (i.links() == 0 && !self.open.contains_key(&ino)) {
            return err(ENOENT);
        }
        if i.flags() & EXTENTS_FL != 0 {
            return err(EFTYPE);
        }
        Ok(i)
    }

    pub(crate) fn get_dir(&mut self, ino: u32) -> R<Inode> {
        let i = self.get(ino)?;
        if !i.is_dir() {
            return err(ENOTDIR);
        }
        Ok(i)
    }

    pub(crate) fn update(&mut self, ino: u32, f: impl FnOnce(&mut Inode)) -> R<()> {
        let mut i = self.read_inode(ino)?;
        f(&mut i);
        self.write_inode(&i)
    }

    pub(crate) fn new_inode(&mut self, ino: u32) -> Inode {
        let mut i = Inode {
            num: ino,
            raw: vec![0u8; self.g.inode_size as usize],
        };
        i.set_extra_isize(self.g.new_extra_isize);
        self.next_gen = self
            .next_gen
            .wrapping_mul(1_103_515_245)
            .wrapping_add(12345);
        i.set_generation(self.next_gen);
        i
    }

    /// Free an inode with no links: its blocks, its xattr block, its bit.
    pub(crate) fn free_inode(&mut self, ino: u32) -> R<()> {
        let mut i = self.read_inode(ino)?;
        if i.mode() == 0 {
            return Ok(());
        }
        let dir = i.is_dir();
        self.dcache.remove(&ino);
        if i.has_block_map(self.g.bs) {
            self.truncate_blocks(&mut i, 0)?;
        }
        let acl = i.file_acl();
        if acl != 0 {
            self.release_xattr(acl)?;
            i.set_file_acl(0);
            self.sub_blocks(&mut i);
        }
        i.set_links(0);
        i.set_size(0);
        i.set_dtime(now().sec as u32);
        self.write_inode(&i)?;
        self.free_inode_bit(ino, dir)
    }

    pub(crate) fn release_xattr(&mut self, b: u32) -> R<()> {
        if b < self.g.first_data_block || b >= self.g.blocks_count {
            return Ok(());
        }
        let mut blk = self.read_blk(b)?;
        if le32(&blk, 0) == XATTR_MAGIC {
            let rc = le32(&blk, 4);
            if rc > 1 {
                put32(&mut blk, 4, rc - 1);
                return self.write_blk(b, &blk, Kind::Other);
            }
        }
        self.free_block(b)
    }

    /// The last link went: free now, or at the last release if open.
    pub(crate) fn drop_inode(&mut self, ino: u32) -> R<()> {
        if self.open.get(&ino).copied().unwrap_or(0) > 0 {
            self.orphans.insert(ino);
            Ok(())
        } else {
            self.free_inode(ino)
        }
    }

    pub(crate) fn attr(&self, i: &Inode) -> Attr {
        let kind = i.kind().unwrap_or(FileKind::Reg);
        let mut blocks = i.blocks512() as u64;
        if self.g.huge_file {
            blocks |= (i.blocks_hi() as u64) << 32;
            if i.flags() & HUGE_FILE_FL != 0 {
                blocks *= (self.g.bs / 512) as u64;
            }
        }
        Attr {
            ino: i.num as u64,
            kind,
            perm: (i.mode() & 0o7777) as u32,
            nlink: i.links() as u32,
            uid: i.uid(),
            gid: i.gid(),
            size: if i.is_dir() {
                i.size().min(self.dir_nblocks(i) * self.g.bs as u64)
            } else {
                i.size()
            },
            blocks,
            blksize: self.g.bs,
            rdev: if matches!(kind, FileKind::Blk | FileKind::Chr) {
                i.rdev()
            } else {
                0
            },
            atime: i.time(TimeField::Access),
            mtime: i.time(TimeField::Modify),
            ctime: i.time(TimeField::Change),
            birthtime: i.time(TimeField::Birth),
        }
    }

    pub(crate) fn max_file_size(&self) -> u64 {
        if self.g.rev == 0 {
            return 0x7fff_ffff;
        }
        let p = self.ptrs();
        let blocks = 12 + p + p * p + p * p * p;
        (blocks * self.g.bs as u64).min((1u64 << 41) - (1u64 << 34))
    }

    /// Record a size; sets the large_file feature when first needed.
    pub(crate) fn set_file_size(&mut self, i: &mut Inode, size: u64) {
        i.set_size(size);
        if size > 0x7fff_ffff && self.g.rev >= 1 {
            let ro = le32(&self.sb, S_FEATURE_RO_COMPAT);
            if ro & features::RO_COMPAT_LARGE_FILE == 0 {
                put32(
                    &mut self.sb,
                    S_FEATURE_RO_COMPAT,
                    ro | features::RO_COMPAT_LARGE_FILE,
                );
            }
        }
    }
}
