//! Inodes in memory: the inode cache, [`InodeCache`] (changed inodes reach
//! the store at the next write-back epoch, or when the cache fills),
//! live-inode lookup, new inodes, freeing
//! an inode with its blocks and extended-attribute block, and an inode's
//! attributes as the VFS sees them.

use netbsd_abi::errno::*;
use vfs::{Attr, FileKind};

use crate::fail::{err, R};
use crate::fs::{now, Fs, IntMap};
use crate::inode::*;
use crate::meta::MetaIo;
use crate::order::Kind;
use crate::sb::*;

/// Bytes of inodes kept in memory at most.
pub(crate) const ICACHE_BYTES: usize = 8 << 20;

pub(crate) const XATTR_MAGIC: u32 = 0xEA02_0000;

/// An inode as last read or written, and whether the store lacks it.
struct CachedInode {
    raw: Vec<u8>,
    dirty: bool,
}

/// Inodes in memory: as last read or written, the changed ones until
/// [`InodeCache::flush`] hands them to the next write-back epoch; and the
/// generation counter new inodes take their `i_generation` from.
pub(crate) struct InodeCache {
    inodes: IntMap<CachedInode>,
    /// Inodes dirtied since the last flush (may repeat).
    dirty: Vec<u32>,
    /// The last generation number handed out.
    next_gen: u32,
    /// Inodes kept at most.
    max: usize,
}

impl InodeCache {
    /// An empty cache for inodes of `inode_size` bytes; generations start
    /// from `seed`.
    pub(crate) fn new(inode_size: u32, seed: u32) -> InodeCache {
        InodeCache {
            inodes: IntMap::default(),
            dirty: Vec::new(),
            next_gen: seed,
            max: (ICACHE_BYTES / inode_size as usize).max(64),
        }
    }

    /// Inode `ino` (at byte `off` of the device), from the cache or read
    /// through `io` (and then kept, if there is room).
    pub(crate) fn read(
        &mut self,
        ino: u32,
        off: u64,
        size: usize,
        io: &mut MetaIo,
        at: impl Fn(u32) -> R<u64>,
    ) -> R<Inode> {
        if let Some(e) = self.inodes.get(&ino) {
            return Ok(Inode {
                num: ino,
                raw: e.raw.clone(),
            });
        }
        let mut raw = vec![0u8; size];
        io.read(off, &mut raw)?;
        // (A cache that cannot make room just does not keep this one; a
        // deferred miss while making room ends the operation all the same.)
        match self.make_room(io, at) {
            Ok(()) => {
                self.inodes.insert(
                    ino,
                    CachedInode {
                        raw: raw.clone(),
                        dirty: false,
                    },
                );
            }
            Err(f) if f.is_defer() => return Err(f),
            Err(_) => {}
        }
        Ok(Inode { num: ino, raw })
    }

    /// Record changed inode `i` (at byte `off` of the device). It reaches
    /// the metadata buffers at the next flush (or when the cache is full).
    pub(crate) fn write(
        &mut self,
        i: &Inode,
        off: u64,
        io: &mut MetaIo,
        at: impl Fn(u32) -> R<u64>,
    ) -> R<()> {
        if let Some(e) = self.inodes.get_mut(&i.num) {
            e.raw.copy_from_slice(&i.raw);
            if !e.dirty {
                e.dirty = true;
                self.dirty.push(i.num);
            }
            return Ok(());
        }
        if let Err(f) = self.make_room(io, at) {
            if f.is_defer() {
                return Err(f);
            }
            // Full of inodes that cannot be written: write this one through.
            return io.put_part(off, &i.raw, Kind::Itable);
        }
        self.inodes.insert(
            i.num,
            CachedInode {
                raw: i.raw.clone(),
                dirty: true,
            },
        );
        self.dirty.push(i.num);
        Ok(())
    }

    /// Make room for one more cached inode: when full, flush the dirty
    /// ones and forget every clean one.
    fn make_room(&mut self, io: &mut MetaIo, at: impl Fn(u32) -> R<u64>) -> R<()> {
        if self.inodes.len() < self.max {
            return Ok(());
        }
        self.flush(io, at)?;
        self.inodes.retain(|_, e| e.dirty);
        Ok(())
    }

    /// Every dirty cached inode into the metadata buffers (in inode
    /// order; `at` gives an inode's byte offset). One that cannot be
    /// written stays dirty.
    pub(crate) fn flush(&mut self, io: &mut MetaIo, at: impl Fn(u32) -> R<u64>) -> R<()> {
        if self.dirty.is_empty() {
            return Ok(());
        }
        let mut list = std::mem::take(&mut self.dirty);
        list.sort_unstable();
        list.dedup();
        for (k, &ino) in list.iter().enumerate() {
            let Some(e) = self.inodes.get(&ino) else {
                continue;
            };
            if !e.dirty {
                continue;
            }
            let off = at(ino)?;
            if let Err(err) = io.put_part(off, &e.raw, Kind::Itable) {
                self.dirty = list[k..].to_vec();
                return Err(err);
            }
            if let Some(e) = self.inodes.get_mut(&ino) {
                e.dirty = false;
            }
        }
        Ok(())
    }

    /// Whether no change waits for [`InodeCache::flush`].
    pub(crate) fn is_clean(&self) -> bool {
        self.dirty.is_empty()
    }

    /// The generation number for a new inode.
    pub(crate) fn next_generation(&mut self) -> u32 {
        self.next_gen = self
            .next_gen
            .wrapping_mul(1_103_515_245)
            .wrapping_add(12345);
        self.next_gen
    }
}

impl Fs {
    /// A live inode (allocated, linked or held open).
    pub(crate) fn get(&mut self, ino: u32) -> R<Inode> {
        let i = self.read_inode(ino)?;
        if i.mode() == 0 || (i.links() == 0 && !self.is_open(ino)) {
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
            raw: vec![0u8; self.g().inode_size as usize],
        };
        i.set_extra_isize(self.g().new_extra_isize);
        let gen = self.next_generation();
        i.set_generation(gen);
        i
    }

    /// Free an inode with no links: its blocks, its xattr block, its bit.
    pub(crate) fn free_inode(&mut self, ino: u32) -> R<()> {
        let mut i = self.read_inode(ino)?;
        if i.mode() == 0 {
            return Ok(());
        }
        let dir = i.is_dir();
        self.dirs().forget(ino);
        if i.has_block_map(self.g().bs) {
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
        if b < self.g().first_data_block || b >= self.g().blocks_count {
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
        if self.is_open(ino) {
            self.add_orphan(ino);
            Ok(())
        } else {
            self.free_inode(ino)
        }
    }

    pub(crate) fn attr(&self, i: &Inode) -> Attr {
        let kind = i.kind().unwrap_or(FileKind::Reg);
        let mut blocks = i.blocks512() as u64;
        if self.g().huge_file {
            blocks |= (i.blocks_hi() as u64) << 32;
            if i.flags() & HUGE_FILE_FL != 0 {
                blocks *= (self.g().bs / 512) as u64;
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
                i.size().min(self.dir_nblocks(i) * self.g().bs as u64)
            } else {
                i.size()
            },
            blocks,
            blksize: self.g().bs,
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
        if self.g().rev == 0 {
            return 0x7fff_ffff;
        }
        let p = self.ptrs();
        let blocks = 12 + p + p * p + p * p * p;
        (blocks * self.g().bs as u64).min((1u64 << 41) - (1u64 << 34))
    }

    /// Record a size; sets the large_file feature when first needed.
    pub(crate) fn set_file_size(&mut self, i: &mut Inode, size: u64) {
        i.set_size(size);
        if size > 0x7fff_ffff && self.g().rev >= 1 {
            self.set_ro_compat(features::RO_COMPAT_LARGE_FILE);
        }
    }
}
