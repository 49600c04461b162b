//! The mounted file system: [`Fs`], the state all of its parts share, and
//! its life cycle — mount, sync, unmount, statfs, open/release counts —
//! with whole-block reads and writes of the store. The rest of `Fs` is
//! spread over [`crate::alloc`] (bitmaps, allocation), [`crate::bmap`]
//! (block maps), [`crate::icache`] (inodes in memory), [`crate::dir`]
//! (directory blocks), [`crate::readwrite`] (file data) and
//! [`crate::vnops`] (the operations). Everything runs under the mount's
//! lock.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::SystemTime;

use netbsd_abi::errno::*;
use netbsd_abi::stat::Timespec;
use netbsd_abi::Errno;
use vfs::FsStat;
use vfs_cache::Store;

use crate::alloc::Bitmap;
use crate::bmap::IndBlk;
use crate::dir::DirIdx;
use crate::icache::CachedInode;
use crate::order::{Epoch, Kind, MetaBufs};
use crate::sb::*;
use crate::{MountError, MountOptions};

pub(crate) const ROOT_INO: u32 = 2;

pub(crate) type R<T> = Result<T, Errno>;

/// Not an errno anyone sees: a read-only operation stopped at a metadata
/// block the cache does not hold, to be read without the file system lock
/// and the operation run again (see [`Fs::read_meta`]).
pub(crate) const EDEFER: i32 = -0x6465;

pub(crate) fn err<T>(e: i32) -> R<T> {
    Err(Errno(e))
}

pub(crate) fn ino32(ino: u64) -> R<u32> {
    if ino == 0 || ino > u32::MAX as u64 {
        err(ENOENT)
    } else {
        Ok(ino as u32)
    }
}

pub(crate) fn now() -> Timespec {
    let d = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    Timespec {
        sec: d.as_secs() as i64,
        nsec: d.subsec_nanos() as i64,
    }
}

pub(crate) fn ts_le(a: Timespec, b: Timespec) -> bool {
    (a.sec, a.nsec) <= (b.sec, b.nsec)
}

pub(crate) struct Gd {
    pub(crate) block_bitmap: u32,
    pub(crate) inode_bitmap: u32,
    pub(crate) inode_table: u32,
    pub(crate) free_blocks: u32,
    pub(crate) free_inodes: u32,
    pub(crate) used_dirs: u32,
}

pub(crate) type IntMap<V> = HashMap<u32, V, std::hash::BuildHasherDefault<vfs_cache::IntHasher>>;

pub(crate) struct Fs {
    pub(crate) store: Arc<dyn Store>,
    pub g: Geometry,
    pub ro: bool,
    pub(crate) was_clean: bool,
    pub(crate) sb: Vec<u8>,
    pub(crate) gdt_raw: Vec<u8>,
    pub(crate) gds: Vec<Gd>,
    pub(crate) gd_dirty: bool,
    pub(crate) bbm: Vec<Option<Bitmap>>,
    pub(crate) ibm: Vec<Option<Bitmap>>,
    pub(crate) free_blocks: u32,
    pub(crate) free_inodes: u32,
    pub(crate) open: HashMap<u32, u32>,
    pub(crate) orphans: HashSet<u32>,
    pub(crate) ind: IntMap<IndBlk>,
    /// Indirect blocks dirtied since the last write-back (may repeat).
    pub(crate) ind_dirty: Vec<u32>,
    pub(crate) icache: IntMap<CachedInode>,
    /// Inodes dirtied since the last write-back (may repeat).
    pub(crate) idirty: Vec<u32>,
    /// The superblock last written to the store says clean (see
    /// `begin_write`).
    pub(crate) sb_clean: bool,
    /// A metadata miss may end the running operation (see `read_meta`).
    pub(crate) may_defer: std::cell::Cell<bool>,
    /// The range that miss wanted.
    pub(crate) deferred: std::cell::Cell<Option<(u64, usize)>>,
    pub(crate) dcache: HashMap<u32, DirIdx>,
    pub(crate) next_gen: u32,
    pub(crate) dead: bool,
    /// A reusable buffer for padded data writes.
    pub(crate) scratch: Vec<u8>,
    /// Changed metadata blocks, until an epoch writes them (see
    /// [`crate::order`]).
    pub(crate) meta: MetaBufs,
    /// Wakes the kernel's syncer at the first change of an epoch.
    pub(crate) kick: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl Fs {
    pub fn mount(
        store: Arc<dyn Store>,
        opts: MountOptions,
    ) -> Result<(Fs, Option<String>), MountError> {
        let me = |e: i32, reason: String| MountError {
            errno: Errno(e),
            reason,
        };
        if store.size() < SUPERBLOCK_OFFSET + SUPERBLOCK_SIZE as u64 {
            return Err(me(
                EINVAL,
                "device too small for an ext2 file system".into(),
            ));
        }
        let mut sb = vec![0u8; SUPERBLOCK_SIZE];
        store
            .read(SUPERBLOCK_OFFSET, &mut sb)
            .map_err(|e| me(e.0, format!("cannot read the superblock: {e}")))?;
        if le16(&sb, S_MAGIC) != EXT2_MAGIC {
            return Err(me(
                EINVAL,
                format!(
                    "not an ext2 file system (magic 0x{:04x})",
                    le16(&sb, S_MAGIC)
                ),
            ));
        }
        let compat = check_features(&sb).map_err(|r| me(EFTYPE, r))?;
        let g = Geometry::parse(&sb).map_err(|r| me(EINVAL, r))?;
        let fs_bytes = g.blocks_count as u64 * g.bs as u64;
        if store.size() < fs_bytes {
            return Err(me(
                EINVAL,
                format!(
                    "device ({} bytes) smaller than the file system ({fs_bytes} bytes)",
                    store.size()
                ),
            ));
        }
        let (ro, ro_reason) = match compat {
            Compat::ReadWrite => (opts.read_only, None),
            Compat::ReadOnly(r) => (true, if opts.read_only { None } else { Some(r) }),
        };
        let state = le16(&sb, S_STATE);
        let was_clean = state & STATE_VALID != 0 && state & STATE_ERROR == 0;
        if !ro && !was_clean && !opts.force {
            return Err(me(
                EPERM,
                "read-write mount denied: the file system is not clean (run fsck, \
                 or mount read-only or forced)"
                    .into(),
            ));
        }
        let bs = g.bs as u64;
        let mut gdt_raw = vec![0u8; (g.gdt_blocks as u64 * bs) as usize];
        store
            .read(g.gdt_block as u64 * bs, &mut gdt_raw)
            .map_err(|e| me(e.0, format!("cannot read the group descriptors: {e}")))?;
        let itb = (g.ipg as u64 * g.inode_size as u64).div_ceil(bs);
        let mut gds = Vec::with_capacity(g.ngroups as usize);
        let (mut fb, mut fi) = (0u64, 0u64);
        for i in 0..g.ngroups as usize {
            let o = i * 32;
            let d = Gd {
                block_bitmap: le32(&gdt_raw, o),
                inode_bitmap: le32(&gdt_raw, o + 4),
                inode_table: le32(&gdt_raw, o + 8),
                free_blocks: le16(&gdt_raw, o + 12) as u32,
                free_inodes: le16(&gdt_raw, o + 14) as u32,
                used_dirs: le16(&gdt_raw, o + 16) as u32,
            };
            let inside = |b: u32| b >= g.first_data_block && b < g.blocks_count;
            if !inside(d.block_bitmap)
                || !inside(d.inode_bitmap)
                || !inside(d.inode_table)
                || d.inode_table as u64 + itb > g.blocks_count as u64
                || d.free_inodes > g.ipg
                || d.free_blocks > g.blocks_in_group(i as u32)
            {
                return Err(me(EINVAL, format!("corrupt group descriptor {i}")));
            }
            fb += d.free_blocks as u64;
            fi += d.free_inodes as u64;
            gds.push(d);
        }
        let n = g.ngroups as usize;
        let seed = now();
        let mut fs = Fs {
            store,
            ro,
            was_clean,
            sb,
            gdt_raw,
            gds,
            gd_dirty: false,
            bbm: (0..n).map(|_| None).collect(),
            ibm: (0..n).map(|_| None).collect(),
            free_blocks: fb as u32,
            free_inodes: fi as u32,
            open: HashMap::new(),
            orphans: HashSet::new(),
            ind: IntMap::default(),
            ind_dirty: Vec::new(),
            icache: IntMap::default(),
            idirty: Vec::new(),
            dcache: HashMap::new(),
            sb_clean: false,
            may_defer: std::cell::Cell::new(false),
            deferred: std::cell::Cell::new(None),
            next_gen: (seed.nsec as u32) ^ (seed.sec as u32).rotate_left(13),
            dead: false,
            scratch: Vec::new(),
            meta: MetaBufs::default(),
            kick: None,
            g,
        };
        if !ro {
            let t = now().sec as u32;
            let state = le16(&fs.sb, S_STATE) & !STATE_VALID;
            put16(&mut fs.sb, S_STATE, state);
            let mc = le16(&fs.sb, S_MNT_COUNT).wrapping_add(1);
            put16(&mut fs.sb, S_MNT_COUNT, mc);
            put32(&mut fs.sb, S_MTIME, t);
            fs.write_sb(false)
                .and_then(|_| fs.write_all_locked(false))
                .map_err(|e| me(e.0, format!("cannot write the superblock: {e}")))?;
        }
        Ok((fs, ro_reason))
    }

    /// Run one operation (refused after unmount). Changed inodes and
    /// indirect blocks stay in memory until `sync` (or until their caches
    /// fill up).
    pub fn op<T>(&mut self, f: impl FnOnce(&mut Fs) -> R<T>) -> R<T> {
        if self.dead {
            return err(EIO);
        }
        f(self)
    }

    pub(crate) fn check_rw(&self) -> R<()> {
        if self.ro {
            err(EROFS)
        } else {
            Ok(())
        }
    }

    /// Record the superblock (not clean) for the next epoch.
    pub(crate) fn write_sb(&mut self, clean: bool) -> R<bool> {
        let clean = self.fill_sb(clean);
        self.meta.put(SUPERBLOCK_OFFSET, &self.sb, Kind::Super);
        Ok(clean)
    }

    /// Bring the superblock's counts, write time and state up to date;
    /// `clean` marks it clean if that is true. Returns whether it did.
    fn fill_sb(&mut self, clean: bool) -> bool {
        put32(&mut self.sb, S_FREE_BLOCKS, self.free_blocks);
        put32(&mut self.sb, S_FREE_INODES, self.free_inodes);
        put32(&mut self.sb, S_WTIME, now().sec as u32);
        let mut state = le16(&self.sb, S_STATE);
        // Clean only if it was at mount, and no unlinked inode is still
        // held open (it would be an orphan for fsck).
        let clean = clean && self.was_clean && self.orphans.is_empty();
        if clean {
            state |= STATE_VALID;
        } else {
            state &= !STATE_VALID;
        }
        put16(&mut self.sb, S_STATE, state);
        clean
    }

    /// Before the first change after the superblock went out marked clean:
    /// mark it not clean, so a crash in what follows is detected. Only in
    /// memory, with no host I/O under the file system lock: an epoch
    /// writes the superblock before anything else (see [`crate::order`]).
    pub(crate) fn begin_write(&mut self) -> R<()> {
        // From the first change on, an operation must not be run twice.
        self.may_defer.set(false);
        self.check_rw()?;
        if self.meta.touch() {
            if let Some(k) = &self.kick {
                k();
            }
        }
        if self.sb_clean {
            self.write_sb(false)?;
            self.sb_clean = false;
        }
        Ok(())
    }

    /// Write everything (the metadata as an epoch, then the store's data
    /// and a device flush) with the file system lock held: for mount,
    /// unmount and a dropped file system, when nobody else runs. With
    /// `clean`, the superblock goes out marked clean last of all (until
    /// the next change: see `begin_write`).
    pub fn write_all_locked(&mut self, clean: bool) -> R<()> {
        if self.ro {
            return Ok(());
        }
        // Releasing an epoch's frees changes the bitmaps: a second epoch
        // writes them.
        for _ in 0..3 {
            let mut ep = self.take_epoch()?;
            let r = ep.write(&*self.store);
            self.finish_epoch(&mut ep, r.is_ok());
            r?;
            if self.all_written() {
                break;
            }
        }
        self.store.sync()?;
        if clean {
            self.write_clean_sb()?;
        }
        Ok(())
    }

    /// No metadata change is left in memory.
    pub(crate) fn all_written(&self) -> bool {
        self.meta.is_clean()
            && self.meta.pending() == (0, 0)
            && self.idirty.is_empty()
            && self.ind_dirty.is_empty()
            && !self.gd_dirty
            && !self.bbm.iter().chain(&self.ibm).flatten().any(|b| b.dirty)
    }

    /// If every change is written and flushed: the superblock marked
    /// clean, written and flushed, last of all.
    pub(crate) fn write_clean_sb(&mut self) -> R<()> {
        if let Some(sb) = self.clean_sb() {
            self.store.write_through(SUPERBLOCK_OFFSET, &sb)?;
            self.store.sync()?;
        }
        Ok(())
    }

    /// If every change is written: the superblock marked clean (as it
    /// may be: see `fill_sb`), for the caller to write and flush last.
    pub(crate) fn clean_sb(&mut self) -> Option<Vec<u8>> {
        if self.ro || !self.all_written() {
            return None;
        }
        self.sb_clean = self.fill_sb(true);
        Some(self.sb.clone())
    }

    /// The store, for a sync that runs without the file system lock.
    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// Everything changed so far, as an epoch to write (see
    /// [`crate::order`]); its blocks stay readable until
    /// [`Fs::finish_epoch`].
    pub(crate) fn take_epoch(&mut self) -> R<Epoch> {
        self.stage_meta()?;
        let (bs, isz) = (self.g.bs as u64, self.g.inode_size as usize);
        let gds = &self.gds;
        let g = &self.g;
        let inode_at = |ino: u32| -> Option<u64> {
            if ino == 0 || ino > g.inodes_count {
                return None;
            }
            let gi = ((ino - 1) / g.ipg) as usize;
            let idx = ((ino - 1) % g.ipg) as u64;
            Some(gds.get(gi)?.inode_table as u64 * bs + idx * isz as u64)
        };
        Ok(self.meta.take(bs, isz, inode_at))
    }

    /// An epoch was written (`ok`) or failed: release what it freed, or
    /// keep everything for the next one.
    pub(crate) fn finish_epoch(&mut self, ep: &mut Epoch, ok: bool) {
        self.meta.finish(ep, ok);
        if ok && (!ep.pending_blocks.is_empty() || !ep.pending_inodes.is_empty()) {
            // The bitmaps change: the next epoch writes them.
            self.meta.touch();
            for b in std::mem::take(&mut ep.pending_blocks) {
                let _ = self.clear_block_bit(b);
            }
            for (ino, dir) in std::mem::take(&mut ep.pending_inodes) {
                let _ = self.clear_inode_bit(ino, dir);
            }
        }
    }

    /// Every piece of metadata cached in its own structure (inodes,
    /// indirect blocks, bitmaps, descriptors, superblock) into the
    /// metadata buffers, for an epoch to take.
    pub(crate) fn stage_meta(&mut self) -> R<()> {
        if self.ro {
            return Ok(());
        }
        self.flush_ind()?;
        self.flush_inodes()?;
        let bs = self.g.bs as u64;
        for gi in 0..self.gds.len() {
            if let Some(b) = self.bbm[gi].as_mut().filter(|b| b.dirty) {
                self.meta.put(
                    self.gds[gi].block_bitmap as u64 * bs,
                    &b.data,
                    Kind::Summary,
                );
                b.dirty = false;
            }
            if let Some(b) = self.ibm[gi].as_mut().filter(|b| b.dirty) {
                self.meta.put(
                    self.gds[gi].inode_bitmap as u64 * bs,
                    &b.data,
                    Kind::Summary,
                );
                b.dirty = false;
            }
        }
        if self.gd_dirty {
            for (i, d) in self.gds.iter().enumerate() {
                let o = i * 32;
                put16(&mut self.gdt_raw, o + 12, d.free_blocks as u16);
                put16(&mut self.gdt_raw, o + 14, d.free_inodes as u16);
                put16(&mut self.gdt_raw, o + 16, d.used_dirs as u16);
            }
            self.meta
                .put(self.g.gdt_block as u64 * bs, &self.gdt_raw, Kind::Summary);
            self.gd_dirty = false;
        }
        if !self.meta.is_clean() {
            self.write_sb(false)?;
            self.sb_clean = false;
        }
        Ok(())
    }

    pub fn unmount(&mut self) -> R<()> {
        if self.dead {
            return err(EINVAL);
        }
        if !self.ro && !self.orphans.is_empty() {
            self.begin_write()?;
            let orphans: Vec<u32> = self.orphans.drain().collect();
            for ino in orphans {
                self.open.remove(&ino);
                self.free_inode(ino)?;
            }
        }
        self.flush_ind()?;
        self.write_all_locked(true)?;
        self.dead = true;
        Ok(())
    }

    pub fn is_dead(&self) -> bool {
        self.dead
    }

    pub fn statfs(&self) -> FsStat {
        FsStat {
            block_size: self.g.bs,
            blocks: (self.g.blocks_count as u64).saturating_sub(self.g.overhead()),
            // Freed but not yet reusable (see `crate::order`) counts as
            // free: it will be within one write-back.
            blocks_free: self.free_blocks as u64 + self.meta.pending().0 as u64,
            blocks_avail: (self.free_blocks as u64 + self.meta.pending().0 as u64)
                .saturating_sub(self.g.r_blocks_count as u64),
            files: self.g.inodes_count as u64,
            files_free: self.free_inodes as u64 + self.meta.pending().1 as u64,
        }
    }

    pub fn open_inode(&mut self, ino: u32) {
        *self.open.entry(ino).or_insert(0) += 1;
    }

    pub fn release_inode(&mut self, ino: u32) {
        let Some(c) = self.open.get_mut(&ino) else {
            return;
        };
        *c -= 1;
        if *c > 0 {
            return;
        }
        self.open.remove(&ino);
        if self.orphans.contains(&ino) && !self.ro && !self.dead && self.begin_write().is_ok() {
            self.orphans.remove(&ino);
            let _ = self.free_inode(ino);
            let _ = self.flush_ind();
        }
    }

    pub(crate) fn read_blk(&self, b: u32) -> R<Vec<u8>> {
        let mut v = vec![0u8; self.g.bs as usize];
        self.read_meta(b as u64 * self.g.bs as u64, &mut v)?;
        Ok(v)
    }

    /// Read metadata from the store. In an operation that has changed
    /// nothing yet (see [`Fs::defer_misses`]), a range the cache does not
    /// hold is not read here, under the file system lock: the operation
    /// fails with [`EDEFER`], and its caller reads the range without the
    /// lock and runs it again.
    pub(crate) fn read_meta(&self, off: u64, buf: &mut [u8]) -> R<()> {
        if self.meta.read(off, buf) {
            return Ok(());
        }
        if !self.may_defer.get() {
            return self.store.read(off, buf);
        }
        self.store.read_cached(off, buf).unwrap_or_else(|| {
            self.deferred.set(Some((off, buf.len())));
            err(EDEFER)
        })
    }

    /// Let (or stop letting) the next metadata miss end the operation with
    /// [`EDEFER`]; the range it wanted.
    pub(crate) fn defer_misses(&self, on: bool) -> Option<(u64, usize)> {
        self.may_defer.set(on);
        self.deferred.take()
    }

    /// A metadata block's new contents: kept until the next epoch.
    pub(crate) fn write_blk(&mut self, b: u32, data: &[u8], kind: Kind) -> R<()> {
        self.meta.put(b as u64 * self.g.bs as u64, data, kind);
        Ok(())
    }

    /// Some bytes of a metadata block (an inode in its table block).
    pub(crate) fn write_meta_part(&mut self, off: u64, bytes: &[u8], kind: Kind) -> R<()> {
        let bs = self.g.bs as u64;
        let blk_off = off - off % bs;
        if !self.meta.holds(blk_off) || !self.meta.patch(blk_off, (off - blk_off) as usize, bytes) {
            let mut blk = vec![0u8; bs as usize];
            self.read_meta(blk_off, &mut blk)?;
            let at = (off - blk_off) as usize;
            blk.get_mut(at..at + bytes.len())
                .ok_or(Errno(EIO))?
                .copy_from_slice(bytes);
            self.meta.put(blk_off, &blk, kind);
        }
        Ok(())
    }
}
