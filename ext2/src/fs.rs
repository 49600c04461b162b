//! The mounted file system: [`Fs`], which composes the parts a mount is
//! made of — metadata I/O with the write-back buffers and the deferral of
//! misses ([`MetaIo`]), the block groups' descriptors, bitmaps and counts
//! ([`Groups`], in [`crate::alloc`]), the inode cache ([`InodeCache`], in
//! [`crate::icache`]), the indirect-block cache ([`IndirectBlockCache`],
//! in [`crate::bmap`]) and the directory index ([`DirCache`], in
//! [`crate::dir`]) — and its life cycle: mount, write-back epochs, sync,
//! unmount, statfs, open/release counts. Each part keeps its state to
//! itself; the methods here hand each the others it needs. What is built
//! on them is spread over [`crate::bmap`] (block maps), [`crate::icache`]
//! (inodes), [`crate::dir`] (directory blocks), [`crate::readwrite`] (file
//! data) and [`crate::vnops`] (the operations). Everything runs under the
//! mount's lock.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use netbsd_abi::errno::*;
use netbsd_abi::stat::Timespec;
use netbsd_abi::Errno;
use vfs::FsStat;
use vfs_cache::Store;

use crate::alloc::Groups;
use crate::bmap::IndirectBlockCache;
use crate::dir::DirCache;
use crate::error::MountError;
use crate::fail::{err, R};
use crate::icache::InodeCache;
use crate::inode::Inode;
use crate::meta::MetaIo;
use crate::order::{Epoch, Kind};
use crate::sb::*;
use crate::MountOptions;

pub(crate) const ROOT_INO: u32 = 2;

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

pub(crate) type IntMap<V> = HashMap<u32, V, std::hash::BuildHasherDefault<vfs_cache::IntHasher>>;

/// One mounted file system's state (under the mount's lock).
pub(crate) struct Fs {
    g: Geometry,
    ro: bool,
    /// The superblock said clean at mount.
    was_clean: bool,
    /// The superblock as last read or changed.
    sb: Vec<u8>,
    /// The superblock last written to the store says clean (see
    /// `begin_write`).
    sb_clean: bool,
    /// The store, the changed metadata blocks until an epoch writes them
    /// (see [`crate::order`]), and whether a miss may be deferred.
    io: MetaIo,
    groups: Groups,
    inodes: InodeCache,
    ind: IndirectBlockCache,
    dirs: DirCache,
    /// Open counts (`open`/`release`) of inodes held open.
    open: HashMap<u32, u32>,
    /// Unlinked inodes still open: freed at their last release.
    orphans: HashSet<u32>,
    /// Unmounted: every operation fails.
    dead: bool,
    /// A reusable buffer for padded data writes.
    scratch: Vec<u8>,
    /// Wakes the kernel's syncer at the first change of an epoch.
    kick: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl Fs {
    pub fn mount(
        store: Arc<dyn Store>,
        opts: MountOptions,
    ) -> Result<(Fs, Option<String>), MountError> {
        if store.size() < SUPERBLOCK_OFFSET + SUPERBLOCK_SIZE as u64 {
            return Err(MountError::TooSmall);
        }
        let mut sb = vec![0u8; SUPERBLOCK_SIZE];
        store
            .read(SUPERBLOCK_OFFSET, &mut sb)
            .map_err(MountError::ReadSuperblock)?;
        if le16(&sb, S_MAGIC) != EXT2_MAGIC {
            return Err(MountError::BadMagic(le16(&sb, S_MAGIC)));
        }
        let compat = check_features(&sb)?;
        let g = Geometry::parse(&sb)?;
        let fs_bytes = g.blocks_count as u64 * g.bs as u64;
        if store.size() < fs_bytes {
            return Err(MountError::DeviceTooSmall {
                device: store.size(),
                fs: fs_bytes,
            });
        }
        let (ro, ro_reason) = match compat {
            Compat::ReadWrite => (opts.read_only, None),
            Compat::ReadOnly(r) => (true, if opts.read_only { None } else { Some(r) }),
        };
        let state = le16(&sb, S_STATE);
        let was_clean = state & STATE_VALID != 0 && state & STATE_ERROR == 0;
        if !ro && !was_clean && !opts.force {
            return Err(MountError::NotClean);
        }
        let bs = g.bs as u64;
        let mut gdt_raw = vec![0u8; (g.gdt_blocks as u64 * bs) as usize];
        store
            .read(g.gdt_block as u64 * bs, &mut gdt_raw)
            .map_err(MountError::ReadGroupDescriptors)?;
        let groups = Groups::load(&g, gdt_raw)?;
        let seed = now();
        let mut fs = Fs {
            io: MetaIo::new(store, g.bs),
            ro,
            was_clean,
            sb,
            sb_clean: false,
            groups,
            inodes: InodeCache::new(
                g.inode_size,
                (seed.nsec as u32) ^ (seed.sec as u32).rotate_left(13),
            ),
            ind: IndirectBlockCache::default(),
            dirs: DirCache::default(),
            open: HashMap::new(),
            orphans: HashSet::new(),
            dead: false,
            scratch: Vec::new(),
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
            fs.write_sb(false);
            fs.write_all_locked(false)
                .map_err(|e| MountError::WriteSuperblock(e.into()))?;
        }
        Ok((fs, ro_reason))
    }

    /// Run one operation (refused after unmount), at the crate boundary:
    /// its failure as the errno the caller sees. Metadata misses are read
    /// where they happen. Changed inodes and indirect blocks stay in
    /// memory until a write-back (or until their caches fill up).
    pub fn op<T>(&mut self, f: impl FnOnce(&mut Fs) -> R<T>) -> Result<T, Errno> {
        if self.dead {
            return Err(Errno(EIO));
        }
        Ok(f(self)?)
    }

    /// Run one reading operation whose first metadata miss may end it
    /// with [`crate::fail::Fail::Defer`] (until it changes something: see
    /// [`Fs::begin_write`]); `Ext2Fs::read_op` reads the range without the
    /// lock and runs it again.
    pub(crate) fn op_deferring<T>(&mut self, f: impl FnOnce(&mut Fs) -> R<T>) -> R<T> {
        if self.dead {
            return err(EIO);
        }
        self.io.allow_defer();
        let r = f(self);
        self.io.forbid_defer();
        r
    }

    /// The file system's geometry.
    pub(crate) fn g(&self) -> &Geometry {
        &self.g
    }

    /// Mounted read-only.
    pub(crate) fn read_only(&self) -> bool {
        self.ro
    }

    pub(crate) fn check_rw(&self) -> R<()> {
        if self.ro {
            err(EROFS)
        } else {
            Ok(())
        }
    }
    /// Record the superblock for the next epoch (marked clean if `clean`
    /// and it may be: see `fill_sb`); returns whether it is.
    pub(crate) fn write_sb(&mut self, clean: bool) -> bool {
        let clean = self.fill_sb(clean);
        self.io
            .bufs_mut()
            .put(SUPERBLOCK_OFFSET, &self.sb, Kind::Super);
        clean
    }

    /// Bring the superblock's counts, write time and state up to date;
    /// `clean` marks it clean if that is true. Returns whether it did.
    fn fill_sb(&mut self, clean: bool) -> bool {
        put32(&mut self.sb, S_FREE_BLOCKS, self.groups.free_blocks());
        put32(&mut self.sb, S_FREE_INODES, self.groups.free_inodes());
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

    /// Set read-only-compatible feature `bit` in the superblock (it goes
    /// out with the next epoch).
    pub(crate) fn set_ro_compat(&mut self, bit: u32) {
        let ro = le32(&self.sb, S_FEATURE_RO_COMPAT);
        if ro & bit == 0 {
            put32(&mut self.sb, S_FEATURE_RO_COMPAT, ro | bit);
        }
    }

    /// Before the first change after the superblock went out marked clean:
    /// mark it not clean, so a crash in what follows is detected. Only in
    /// memory, with no host I/O under the file system lock: an epoch
    /// writes the superblock before anything else (see [`crate::order`]).
    pub(crate) fn begin_write(&mut self) -> R<()> {
        // From the first change on, an operation must not be run twice.
        self.io.forbid_defer();
        self.check_rw()?;
        if self.io.bufs_mut().touch() {
            if let Some(k) = &self.kick {
                k();
            }
        }
        if self.sb_clean {
            self.write_sb(false);
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
            let r = ep.write(&**self.io.store());
            self.finish_epoch(&mut ep, r.is_ok());
            r?;
            if self.all_written() {
                break;
            }
        }
        self.io.store().sync()?;
        if clean {
            self.write_clean_sb()?;
        }
        Ok(())
    }

    /// No metadata change is left in memory.
    pub(crate) fn all_written(&self) -> bool {
        self.io.bufs().is_clean()
            && self.io.bufs().pending() == (0, 0)
            && self.inodes.is_clean()
            && self.ind.is_clean()
            && self.groups.is_clean()
    }

    /// If every change is written and flushed: the superblock marked
    /// clean, written and flushed, last of all.
    pub(crate) fn write_clean_sb(&mut self) -> R<()> {
        if let Some(sb) = self.clean_sb() {
            self.io.store().write_through(SUPERBLOCK_OFFSET, &sb)?;
            self.io.store().sync()?;
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
        self.io.store().clone()
    }

    /// Everything changed so far, as an epoch to write (see
    /// [`crate::order`]); its blocks stay readable until
    /// [`Fs::finish_epoch`].
    pub(crate) fn take_epoch(&mut self) -> R<Epoch> {
        self.stage_meta()?;
        let (bs, isz) = (self.g.bs as u64, self.g.inode_size as usize);
        let (groups, g) = (&self.groups, &self.g);
        Ok(self
            .io
            .bufs_mut()
            .take(bs, isz, |ino| groups.inode_at(g, ino)))
    }

    /// An epoch was written (`ok`) or failed: release what it freed, or
    /// keep everything for the next one.
    pub(crate) fn finish_epoch(&mut self, ep: &mut Epoch, ok: bool) {
        self.io.bufs_mut().finish(ep, ok);
        if ok {
            let (blocks, inodes) = ep.take_freed();
            if blocks.is_empty() && inodes.is_empty() {
                return;
            }
            // The bitmaps change: the next epoch writes them.
            self.io.bufs_mut().touch();
            for b in blocks {
                let _ = self.groups.clear_block_bit(&self.g, b, &self.io);
            }
            for (ino, dir) in inodes {
                let _ = self.groups.clear_inode_bit(&self.g, ino, dir, &self.io);
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
        self.flush_ind();
        self.flush_inodes()?;
        self.groups.stage(&self.g, &mut self.io);
        if !self.io.bufs().is_clean() {
            self.write_sb(false);
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
        self.flush_ind();
        self.write_all_locked(true)?;
        self.dead = true;
        Ok(())
    }

    pub fn is_dead(&self) -> bool {
        self.dead
    }

    pub fn statfs(&self) -> FsStat {
        let (pb, pi) = self.io.bufs().pending();
        FsStat {
            block_size: self.g.bs,
            blocks: (self.g.blocks_count as u64).saturating_sub(self.g.overhead()),
            // Freed but not yet reusable (see `crate::order`) counts as
            // free: it will be within one write-back.
            blocks_free: self.groups.free_blocks() as u64 + pb as u64,
            blocks_avail: (self.groups.free_blocks() as u64 + pb as u64)
                .saturating_sub(self.g.r_blocks_count as u64),
            files: self.g.inodes_count as u64,
            files_free: self.groups.free_inodes() as u64 + pi as u64,
        }
    }

    /// Blocks or inodes freed wait for a write-back to become reusable.
    pub(crate) fn has_pending(&self) -> bool {
        self.io.bufs().pending() != (0, 0)
    }

    /// When the current epoch's first change, and its first directory
    /// change, were made (see [`crate::order::MetaBufs::since`]).
    pub(crate) fn since(&self) -> (Option<Instant>, Option<Instant>) {
        self.io.bufs().since()
    }

    /// What wakes the kernel's syncer at the first change of an epoch.
    pub(crate) fn set_kick(&mut self, hook: Arc<dyn Fn() + Send + Sync>) {
        self.kick = Some(hook);
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
            self.flush_ind();
        }
    }

    /// Whether inode `ino` is held open.
    pub(crate) fn is_open(&self, ino: u32) -> bool {
        self.open.get(&ino).copied().unwrap_or(0) > 0
    }

    /// Unlinked inode `ino` is still open: free it at its last release.
    pub(crate) fn add_orphan(&mut self, ino: u32) {
        self.orphans.insert(ino);
    }

    /// The directory index.
    pub(crate) fn dirs(&mut self) -> &mut DirCache {
        &mut self.dirs
    }

    /// Directory block `phys` gained (`gained`) or lost an entry: decides
    /// its phase in the epoch (see [`crate::order`]).
    pub(crate) fn dir_block_changed(&mut self, phys: u32, gained: bool) {
        self.io.bufs_mut().touch_dir(phys, gained);
    }

    /// The generation number for a new inode.
    pub(crate) fn next_generation(&mut self) -> u32 {
        self.inodes.next_generation()
    }

    // Metadata blocks.

    /// Metadata block `b` (see [`MetaIo::read`]: in a reading operation a
    /// miss may end it with a deferral).
    pub(crate) fn read_blk(&self, b: u32) -> R<Vec<u8>> {
        self.io.read_blk(b)
    }

    /// A metadata block's new contents: kept until the next epoch.
    pub(crate) fn write_blk(&mut self, b: u32, data: &[u8], kind: Kind) -> R<()> {
        self.io.put_blk(b, data, kind);
        Ok(())
    }

    // File data, straight to the store.

    /// The device's size in bytes.
    pub(crate) fn device_size(&self) -> u64 {
        self.io.store().size()
    }

    /// Write `head` zeros, `data`, then `tail` zeros at device offset
    /// `off` (file data: through the store's cache, not an epoch).
    pub(crate) fn write_data(&mut self, off: u64, head: usize, data: &[u8], tail: usize) -> R<()> {
        if head + tail == 0 {
            return Ok(self.io.store().write(off, data)?);
        }
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        buf.resize(head, 0);
        buf.extend_from_slice(data);
        buf.resize(buf.len() + tail, 0);
        let res = self.io.store().write(off, &buf);
        self.scratch = buf;
        Ok(res?)
    }

    // Inodes (the cache: `crate::icache`).

    /// Byte offset of inode `ino` on the device.
    pub(crate) fn inode_off(&self, ino: u32) -> R<u64> {
        match self.groups.inode_at(&self.g, ino) {
            Some(off) => Ok(off),
            None => err(ENOENT),
        }
    }

    /// Inode `ino` as cached, or read.
    pub(crate) fn read_inode(&mut self, ino: u32) -> R<Inode> {
        let off = self.inode_off(ino)?;
        let (groups, g) = (&self.groups, &self.g);
        self.inodes
            .read(ino, off, g.inode_size as usize, &mut self.io, |i| {
                groups.inode_at(g, i).ok_or(Errno(ENOENT).into())
            })
    }

    /// Record a changed inode. It reaches the metadata buffers at the next
    /// epoch (or when the inode cache is full).
    pub(crate) fn write_inode(&mut self, i: &Inode) -> R<()> {
        let off = self.inode_off(i.num)?;
        let (groups, g) = (&self.groups, &self.g);
        self.inodes.write(i, off, &mut self.io, |i| {
            groups.inode_at(g, i).ok_or(Errno(ENOENT).into())
        })
    }

    /// Every changed cached inode into the metadata buffers.
    pub(crate) fn flush_inodes(&mut self) -> R<()> {
        let (groups, g) = (&self.groups, &self.g);
        self.inodes.flush(&mut self.io, |i| {
            groups.inode_at(g, i).ok_or(Errno(ENOENT).into())
        })
    }

    // Allocation (the groups: `crate::alloc`).

    /// Allocate one block, the first free one at or after `goal`.
    pub(crate) fn alloc_block(&mut self, goal: u32) -> R<u32> {
        self.groups.alloc_block(&self.g, goal, &mut self.io)
    }

    /// Free block `b` (reusable once the current epoch is written, unless
    /// allocated during it).
    pub(crate) fn free_block(&mut self, b: u32) -> R<()> {
        self.ind.forget(b);
        self.groups.free_block(&self.g, b, &mut self.io)
    }

    /// Allocate an inode for a new node (a directory if `dir`) in
    /// directory `parent`.
    pub(crate) fn alloc_inode(&mut self, parent: u32, dir: bool) -> R<u32> {
        self.groups.alloc_inode(&self.g, parent, dir, &mut self.io)
    }

    /// Free inode `ino`'s bit (as [`Fs::free_block`]).
    pub(crate) fn free_inode_bit(&mut self, ino: u32, dir: bool) -> R<()> {
        self.groups.free_inode_bit(&self.g, ino, dir, &mut self.io)
    }

    /// Whether every block in `[from, to)` is a free data block.
    pub(crate) fn all_free(&mut self, from: u32, to: u32) -> R<bool> {
        self.groups.all_free(&self.g, from, to, &self.io)
    }

    // Indirect blocks (the cache: `crate::bmap`).

    /// Pointer `i` of indirect block `b`.
    pub(crate) fn ind_get(&mut self, b: u32, i: usize) -> R<u32> {
        self.ind.get(&self.g, b, i, &mut self.io)
    }

    /// Every pointer of indirect block `b`.
    pub(crate) fn ind_ptrs(&mut self, b: u32) -> R<Vec<u32>> {
        self.ind.ptrs(&self.g, b, &mut self.io)
    }

    /// Set pointer `i` of indirect block `b` to `v`.
    pub(crate) fn ind_set(&mut self, b: u32, i: usize, v: u32) -> R<()> {
        self.ind.set(&self.g, b, i, v, &mut self.io)
    }

    /// A freshly allocated, all-zero indirect block.
    pub(crate) fn ind_new(&mut self, b: u32) {
        self.ind.add_new(&self.g, b, &mut self.io)
    }

    /// Every changed indirect block into the metadata buffers.
    pub(crate) fn flush_ind(&mut self) {
        self.ind.flush(&self.g, &mut self.io)
    }
}
