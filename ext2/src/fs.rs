//! The mounted file system: allocation, block maps, directories, and the
//! operations behind the `FileSystem` trait. Everything here runs under
//! the mount's lock.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::SystemTime;

use netbsd_abi::errno::*;
use netbsd_abi::stat::Timespec;
use netbsd_abi::Errno;
use rumpkern::vfs::{Attr, Cred, DirEntry, FileKind, FsStat, SetAttr};
use vfs_cache::Store;

use crate::inode::*;
use crate::sb::*;
use crate::{MountError, MountOptions};

pub(crate) const ROOT_INO: u32 = 2;
/// Most links an inode may have (EXT2_LINK_MAX).
const LINK_MAX: u16 = 32000;
/// Indirect blocks kept in memory at most (written back by sync, or all
/// at once when full).
const IND_CACHE_MAX: usize = 1024;
/// Bytes of inodes kept in memory at most.
const ICACHE_BYTES: usize = 8 << 20;
/// Longest data run handed to the store in one write.
const MAX_RUN: usize = 1 << 20;
/// The store's unit of caching (vfs-cache's block): a write covering a
/// whole window never makes the store read it first.
const WINDOW: u64 = vfs_cache::DEFAULT_BLOCK_SIZE as u64;
const XATTR_MAGIC: u32 = 0xEA02_0000;
/// Directories indexed in memory at most, and names in all of them.
const DCACHE_MAX_DIRS: usize = 64;
const DCACHE_MAX_ENTRIES: usize = 1 << 20;

type R<T> = Result<T, Errno>;

fn err<T>(e: i32) -> R<T> {
    Err(Errno(e))
}

pub(crate) fn ino32(ino: u64) -> R<u32> {
    if ino == 0 || ino > u32::MAX as u64 {
        err(ENOENT)
    } else {
        Ok(ino as u32)
    }
}

fn now() -> Timespec {
    let d = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    Timespec { sec: d.as_secs() as i64, nsec: d.subsec_nanos() as i64 }
}

fn ts_le(a: Timespec, b: Timespec) -> bool {
    (a.sec, a.nsec) <= (b.sec, b.nsec)
}

fn rec_size(name_len: usize) -> usize {
    (8 + name_len + 3) & !3
}

fn check_name(name: &[u8]) -> R<()> {
    if name.is_empty() {
        return err(ENOENT);
    }
    if name.len() > 255 {
        return err(ENAMETOOLONG);
    }
    if name == b"." || name == b".." || name.iter().any(|&c| c == b'/' || c == 0) {
        return err(EINVAL);
    }
    Ok(())
}

fn find_zero(d: &[u8], start: u32, n: u32) -> Option<u32> {
    let mut i = start;
    while i < n {
        let byte = d[(i / 8) as usize];
        if i % 8 == 0 && byte == 0xff {
            i += 8;
            continue;
        }
        if byte & (1 << (i % 8)) == 0 {
            return Some(i);
        }
        i += 1;
    }
    None
}

struct Gd {
    block_bitmap: u32,
    inode_bitmap: u32,
    inode_table: u32,
    free_blocks: u32,
    free_inodes: u32,
    used_dirs: u32,
}

struct Bitmap {
    data: Vec<u8>,
    dirty: bool,
    /// No bit below this one is free (a search starts here).
    hint: u32,
}

impl Bitmap {
    fn new(data: Vec<u8>) -> Bitmap {
        Bitmap { data, dirty: false, hint: 0 }
    }
    /// First free bit in `[start, n)`.
    fn find_free(&self, start: u32, n: u32) -> Option<u32> {
        find_zero(&self.data, start.max(self.hint), n)
    }
    fn set(&mut self, bit: u32) {
        self.data[(bit / 8) as usize] |= 1 << (bit % 8);
        self.dirty = true;
        if bit == self.hint {
            self.hint = bit + 1;
        }
    }
    /// Clear `bit`; false if it was already clear.
    fn clear(&mut self, bit: u32) -> bool {
        let mask = 1u8 << (bit % 8);
        if self.data[(bit / 8) as usize] & mask == 0 {
            return false;
        }
        self.data[(bit / 8) as usize] &= !mask;
        self.dirty = true;
        self.hint = self.hint.min(bit);
        true
    }
}

/// State of one truncation's walk over indirect blocks.
struct TruncWalk {
    seen: HashSet<u32>,
    /// Blocks (indirect and data) it may still visit.
    budget: u64,
}

struct IndBlk {
    ptrs: Vec<u32>,
    dirty: bool,
}

/// An inode as last read or written, and whether the store lacks it.
struct CachedInode {
    raw: Vec<u8>,
    dirty: bool,
}

type IntMap<V> = HashMap<u32, V, std::hash::BuildHasherDefault<vfs_cache::IntHasher>>;

/// One parsed directory entry.
struct Ent {
    off: usize,
    ino: u32,
    rec_len: usize,
    name_len: usize,
    ftype: u8,
}

/// A name found in a directory.
struct Found {
    dir: u32,
    lb: u32,
    phys: u32,
    off: usize,
    ino: u32,
}

/// Where a new entry will go: the entry at `off` of block `phys`, whose
/// record is `rec_len` long and whose own name takes `used` bytes (0 if it
/// is an empty slot).
struct Slot {
    dir: u32,
    lb: u32,
    phys: u32,
    off: usize,
    rec_len: usize,
    used: usize,
    /// The block as read (taken by `dir_insert`), and the largest record
    /// that fits in its other entries.
    blk: Option<Vec<u8>>,
    other_space: usize,
}

/// The in-memory index of a directory: every name with its logical
/// block, offset and inode; per block, the largest record that fits.
struct DirIdx {
    names: HashMap<Vec<u8>, (u32, u16, u32)>,
    space: Vec<u16>,
}

/// Bytes for one store write: `head` zeros, `data[src..src + dlen]`,
/// `tail` zeros, at disk offset `disk`.
struct Run {
    disk: u64,
    head: usize,
    src: usize,
    dlen: usize,
    tail: usize,
}

impl Run {
    fn len(&self) -> usize {
        self.head + self.dlen + self.tail
    }
    fn end(&self) -> u64 {
        self.disk + self.len() as u64
    }
}

/// Device bytes `disk..disk + len` go to `buf[at..at + len]` of a read.
pub(crate) struct ReadRun {
    pub disk: u64,
    pub at: usize,
    pub len: usize,
}

/// Where a block pointer lives, for undoing an allocation.
enum PtrLoc {
    Inode(usize),
    Ind(u32, usize),
}

pub(crate) struct Fs {
    store: Arc<dyn Store>,
    pub g: Geometry,
    pub ro: bool,
    was_clean: bool,
    sb: Vec<u8>,
    gdt_raw: Vec<u8>,
    gds: Vec<Gd>,
    gd_dirty: bool,
    bbm: Vec<Option<Bitmap>>,
    ibm: Vec<Option<Bitmap>>,
    free_blocks: u32,
    free_inodes: u32,
    open: HashMap<u32, u32>,
    orphans: HashSet<u32>,
    ind: IntMap<IndBlk>,
    /// Indirect blocks dirtied since the last write-back (may repeat).
    ind_dirty: Vec<u32>,
    icache: IntMap<CachedInode>,
    /// Inodes dirtied since the last write-back (may repeat).
    idirty: Vec<u32>,
    /// The superblock last written to the store says clean (see
    /// `begin_write`).
    sb_clean: bool,
    dcache: HashMap<u32, DirIdx>,
    next_gen: u32,
    dead: bool,
    /// A reusable buffer for padded data writes.
    scratch: Vec<u8>,
}

impl Fs {
    // ----------------------------------------------------------------
    // Mount, sync, unmount

    pub fn mount(store: Arc<dyn Store>, opts: MountOptions) -> Result<(Fs, Option<String>), MountError> {
        let me = |e: i32, reason: String| MountError { errno: Errno(e), reason };
        if store.size() < SUPERBLOCK_OFFSET + SUPERBLOCK_SIZE as u64 {
            return Err(me(EINVAL, "device too small for an ext2 file system".into()));
        }
        let mut sb = vec![0u8; SUPERBLOCK_SIZE];
        store
            .read(SUPERBLOCK_OFFSET, &mut sb)
            .map_err(|e| me(e.0, format!("cannot read the superblock: {e}")))?;
        if le16(&sb, S_MAGIC) != EXT2_MAGIC {
            return Err(me(
                EINVAL,
                format!("not an ext2 file system (magic 0x{:04x})", le16(&sb, S_MAGIC)),
            ));
        }
        let compat = check_features(&sb).map_err(|r| me(EFTYPE, r))?;
        let g = Geometry::parse(&sb).map_err(|r| me(EINVAL, r))?;
        let fs_bytes = g.blocks_count as u64 * g.bs as u64;
        if store.size() < fs_bytes {
            return Err(me(
                EINVAL,
                format!("device ({} bytes) smaller than the file system ({fs_bytes} bytes)", store.size()),
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
            next_gen: (seed.nsec as u32) ^ (seed.sec as u32).rotate_left(13),
            dead: false,
            scratch: Vec::new(),
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
                .and_then(|_| fs.store.sync())
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

    fn check_rw(&self) -> R<()> {
        if self.ro {
            err(EROFS)
        } else {
            Ok(())
        }
    }

    /// Write the superblock; `clean` marks it clean if that is true.
    /// Returns whether it was marked clean.
    fn write_sb(&mut self, clean: bool) -> R<bool> {
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
        self.store.write(SUPERBLOCK_OFFSET, &self.sb)?;
        Ok(clean)
    }

    /// Before the first change after the superblock went out marked clean:
    /// mark it not clean, so a crash in what follows is detected. Only into
    /// the cache, with no host I/O under the file system lock: every
    /// write-back goes in ascending order, oldest first, so the superblock
    /// (byte 1024, dirtied before anything this change touches) reaches
    /// the device before the blocks that follow it.
    fn begin_write(&mut self) -> R<()> {
        self.check_rw()?;
        if self.sb_clean {
            self.write_sb(false)?;
            self.sb_clean = false;
        }
        Ok(())
    }

    /// Write every cached piece of metadata and flush the store. With
    /// `clean`, the superblock is left marked clean (until the next change:
    /// see `begin_write`), so a file system synced by a halt is clean.
    pub fn sync(&mut self, clean: bool) -> R<()> {
        self.sync_meta(clean)?;
        self.store.sync()
    }

    /// The store, for a sync that runs without the file system lock.
    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// [`Fs::sync`] without the final `store.sync()`: every piece of cached
    /// metadata into the store (the buffer cache, in memory), the caller
    /// then flushes the store — without the file system lock, so that host
    /// I/O never stops other operations on this file system.
    pub fn sync_meta(&mut self, clean: bool) -> R<()> {
        if self.ro {
            return Ok(());
        }
        self.flush_ind()?;
        self.flush_inodes()?;
        let bs = self.g.bs as u64;
        for gi in 0..self.gds.len() {
            if let Some(b) = &self.bbm[gi] {
                if b.dirty {
                    self.store.write(self.gds[gi].block_bitmap as u64 * bs, &b.data)?;
                    self.bbm[gi].as_mut().unwrap().dirty = false;
                }
            }
            if let Some(b) = &self.ibm[gi] {
                if b.dirty {
                    self.store.write(self.gds[gi].inode_bitmap as u64 * bs, &b.data)?;
                    self.ibm[gi].as_mut().unwrap().dirty = false;
                }
            }
        }
        if self.gd_dirty {
            for (i, d) in self.gds.iter().enumerate() {
                let o = i * 32;
                put16(&mut self.gdt_raw, o + 12, d.free_blocks as u16);
                put16(&mut self.gdt_raw, o + 14, d.free_inodes as u16);
                put16(&mut self.gdt_raw, o + 16, d.used_dirs as u16);
            }
            self.store.write(self.g.gdt_block as u64 * bs, &self.gdt_raw)?;
            self.gd_dirty = false;
        }
        self.sb_clean = self.write_sb(clean)?;
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
        self.sync(true)?;
        self.dead = true;
        Ok(())
    }

    pub fn is_dead(&self) -> bool {
        self.dead
    }

    pub fn statfs(&self) -> FsStat {
        FsStat {
            block_size: self.g.bs,
            blocks: self.g.blocks_count as u64,
            blocks_free: self.free_blocks as u64,
            files: self.g.inodes_count as u64,
            files_free: self.free_inodes as u64,
        }
    }

    pub fn open_inode(&mut self, ino: u32) {
        *self.open.entry(ino).or_insert(0) += 1;
    }

    pub fn release_inode(&mut self, ino: u32) {
        let Some(c) = self.open.get_mut(&ino) else { return };
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

    // ----------------------------------------------------------------
    // Blocks, bitmaps, allocation

    fn read_blk(&self, b: u32) -> R<Vec<u8>> {
        let mut v = vec![0u8; self.g.bs as usize];
        self.store.read(b as u64 * self.g.bs as u64, &mut v)?;
        Ok(v)
    }

    fn write_blk(&self, b: u32, data: &[u8]) -> R<()> {
        self.store.write(b as u64 * self.g.bs as u64, data)
    }

    fn bbm(&mut self, gi: usize) -> R<&mut Bitmap> {
        if self.bbm[gi].is_none() {
            let data = self.read_blk(self.gds[gi].block_bitmap)?;
            self.bbm[gi] = Some(Bitmap::new(data));
        }
        Ok(self.bbm[gi].as_mut().unwrap())
    }

    fn ibm(&mut self, gi: usize) -> R<&mut Bitmap> {
        if self.ibm[gi].is_none() {
            let data = self.read_blk(self.gds[gi].inode_bitmap)?;
            self.ibm[gi] = Some(Bitmap::new(data));
        }
        Ok(self.ibm[gi].as_mut().unwrap())
    }

    /// Allocate one block, the first free one at or after `goal`.
    fn alloc_block(&mut self, goal: u32) -> R<u32> {
        if self.free_blocks == 0 {
            return err(ENOSPC);
        }
        let g = &self.g;
        let goal = if goal >= g.first_data_block && goal < g.blocks_count {
            goal
        } else {
            g.first_data_block
        };
        let ng = g.ngroups;
        let g0 = (goal - g.first_data_block) / g.bpg;
        let bit0 = (goal - g.first_data_block) % g.bpg;
        for i in 0..=ng {
            let gi = (g0 + i) % ng;
            if self.gds[gi as usize].free_blocks == 0 {
                continue;
            }
            let start = if i == 0 { bit0 } else { 0 };
            let n = self.g.blocks_in_group(gi);
            let bm = self.bbm(gi as usize)?;
            if let Some(bit) = bm.find_free(start, n) {
                bm.set(bit);
                self.gds[gi as usize].free_blocks -= 1;
                self.free_blocks -= 1;
                self.gd_dirty = true;
                return Ok(self.g.group_start(gi) + bit);
            }
        }
        err(ENOSPC)
    }

    fn free_block(&mut self, b: u32) -> R<()> {
        self.ind.remove(&b);
        if b < self.g.first_data_block || b >= self.g.blocks_count {
            return err(EIO);
        }
        let rel = b - self.g.first_data_block;
        let gi = (rel / self.g.bpg) as usize;
        let bit = rel % self.g.bpg;
        if self.bbm(gi)?.clear(bit) {
            self.gds[gi].free_blocks += 1;
            self.free_blocks += 1;
            self.gd_dirty = true;
        }
        Ok(())
    }

    fn pick_dir_group(&self, parent: u32) -> u32 {
        let ng = self.g.ngroups;
        let pg = (parent - 1) / self.g.ipg;
        let avg_fi = self.free_inodes / ng;
        let avg_fb = self.free_blocks / ng;
        let p = &self.gds[pg as usize];
        if parent != ROOT_INO && p.free_inodes > 0 && p.free_inodes >= avg_fi / 2 && p.free_blocks >= avg_fb / 2 {
            return pg;
        }
        let mut best: Option<(u32, u32)> = None;
        for i in 0..ng {
            let gi = (pg + i) % ng;
            let d = &self.gds[gi as usize];
            if d.free_inodes == 0 || d.free_inodes < avg_fi || d.free_blocks < avg_fb {
                continue;
            }
            if !matches!(best, Some((_, dirs)) if d.used_dirs >= dirs) {
                best = Some((gi, d.used_dirs));
            }
        }
        best.map(|b| b.0).unwrap_or(pg)
    }

    fn alloc_inode(&mut self, parent: u32, dir: bool) -> R<u32> {
        if self.free_inodes == 0 {
            return err(ENOSPC);
        }
        let ng = self.g.ngroups;
        let ipg = self.g.ipg;
        let start = if dir { self.pick_dir_group(parent) } else { (parent - 1) / ipg };
        for i in 0..ng {
            let gi = (start + i) % ng;
            if self.gds[gi as usize].free_inodes == 0 {
                continue;
            }
            let first = (self.g.first_ino - 1).saturating_sub(gi * ipg);
            let bm = self.ibm(gi as usize)?;
            if let Some(bit) = bm.find_free(first, ipg) {
                bm.set(bit);
                let d = &mut self.gds[gi as usize];
                d.free_inodes -= 1;
                if dir {
                    d.used_dirs += 1;
                }
                self.free_inodes -= 1;
                self.gd_dirty = true;
                return Ok(gi * ipg + bit + 1);
            }
        }
        err(ENOSPC)
    }

    fn free_inode_bit(&mut self, ino: u32, dir: bool) -> R<()> {
        let gi = ((ino - 1) / self.g.ipg) as usize;
        let bit = (ino - 1) % self.g.ipg;
        if self.ibm(gi)?.clear(bit) {
            let d = &mut self.gds[gi];
            d.free_inodes += 1;
            if dir {
                d.used_dirs = d.used_dirs.saturating_sub(1);
            }
            self.free_inodes += 1;
            self.gd_dirty = true;
        }
        Ok(())
    }

    // ----------------------------------------------------------------
    // Indirect blocks

    fn ind_load(&mut self, b: u32) -> R<&mut IndBlk> {
        if b < self.g.first_data_block || b >= self.g.blocks_count {
            return err(EIO);
        }
        if !self.ind.contains_key(&b) {
            if self.ind.len() >= IND_CACHE_MAX {
                self.flush_ind()?;
                self.ind.clear();
            }
            let raw = self.read_blk(b)?;
            let ptrs = raw.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            self.ind.insert(b, IndBlk { ptrs, dirty: false });
        }
        Ok(self.ind.get_mut(&b).unwrap())
    }

    fn ind_get(&mut self, b: u32, i: usize) -> R<u32> {
        Ok(self.ind_load(b)?.ptrs[i])
    }

    fn ind_set(&mut self, b: u32, i: usize, v: u32) -> R<()> {
        let e = self.ind_load(b)?;
        e.ptrs[i] = v;
        if !e.dirty {
            e.dirty = true;
            self.ind_dirty.push(b);
        }
        Ok(())
    }

    /// A freshly allocated, all-zero indirect block.
    fn ind_new(&mut self, b: u32) -> R<()> {
        if self.ind.len() >= IND_CACHE_MAX {
            self.flush_ind()?;
            self.ind.clear();
        }
        let p = (self.g.bs / 4) as usize;
        self.ind.insert(b, IndBlk { ptrs: vec![0; p], dirty: true });
        self.ind_dirty.push(b);
        Ok(())
    }

    fn flush_ind(&mut self) -> R<()> {
        if self.ind_dirty.is_empty() {
            return Ok(());
        }
        let bs = self.g.bs as u64;
        let mut list = std::mem::take(&mut self.ind_dirty);
        list.sort_unstable();
        list.dedup();
        let mut raw = Vec::with_capacity(bs as usize);
        for (k, &b) in list.iter().enumerate() {
            let Some(e) = self.ind.get_mut(&b) else { continue };
            if !e.dirty {
                continue;
            }
            raw.clear();
            for p in &e.ptrs {
                raw.extend_from_slice(&p.to_le_bytes());
            }
            if let Err(err) = self.store.write(b as u64 * bs, &raw) {
                self.ind_dirty = list[k..].to_vec();
                return Err(err);
            }
            e.dirty = false;
        }
        Ok(())
    }

    // ----------------------------------------------------------------
    // Block maps

    fn ptrs(&self) -> u64 {
        (self.g.bs / 4) as u64
    }

    /// The chain of indices leading to logical block `l`.
    fn path(&self, l: u64) -> R<([usize; 4], usize)> {
        let p = self.ptrs();
        if l < 12 {
            return Ok(([l as usize, 0, 0, 0], 1));
        }
        let l = l - 12;
        if l < p {
            return Ok(([12, l as usize, 0, 0], 2));
        }
        let l = l - p;
        if l < p * p {
            return Ok(([13, (l / p) as usize, (l % p) as usize, 0], 3));
        }
        let l = l - p * p;
        if l < p * p * p {
            return Ok(([14, (l / (p * p)) as usize, ((l / p) % p) as usize, (l % p) as usize], 4));
        }
        err(EFBIG)
    }

    /// Physical block of logical block `l` (0 for a hole).
    fn bmap(&mut self, i: &Inode, l: u64) -> R<u32> {
        let (p, n) = self.path(l)?;
        let mut b = i.block(p[0]);
        for &idx in &p[1..n] {
            if b == 0 {
                return Ok(0);
            }
            b = self.ind_get(b, idx)?;
        }
        if b != 0 && (b < self.g.first_data_block || b >= self.g.blocks_count) {
            return err(EIO);
        }
        Ok(b)
    }

    fn add_blocks(&self, i: &mut Inode) -> R<()> {
        let n = i.blocks512() as u64 + (self.g.bs / 512) as u64;
        if n > u32::MAX as u64 {
            return err(EFBIG);
        }
        i.set_blocks512(n as u32);
        Ok(())
    }

    fn sub_blocks(&self, i: &mut Inode) {
        i.set_blocks512(i.blocks512().saturating_sub(self.g.bs / 512));
    }

    /// Physical block of logical block `l`, allocating it (and any
    /// indirect blocks on the way) near `goal` if it is a hole. Returns
    /// whether the data block is new (its contents are garbage). On
    /// failure nothing stays allocated.
    /// `log` records every block allocated (for [`Fs::undo_allocs`]).
    fn bmap_alloc(&mut self, i: &mut Inode, l: u64, goal: u32, log: &mut Vec<(PtrLoc, u32)>) -> R<(u32, bool)> {
        let (p, n) = self.path(l)?;
        let start = log.len();
        let r = self.bmap_alloc_inner(i, &p[..n], goal, log);
        if r.is_err() {
            self.undo_allocs(i, log, start);
        }
        r
    }

    /// Unhook and free the blocks allocated in `log` from entry `from` on.
    fn undo_allocs(&mut self, i: &mut Inode, log: &mut Vec<(PtrLoc, u32)>, from: usize) {
        while log.len() > from {
            let (loc, b) = log.pop().unwrap();
            match loc {
                PtrLoc::Inode(k) => i.set_block(k, 0),
                PtrLoc::Ind(ib, k) => {
                    let _ = self.ind_set(ib, k, 0);
                }
            }
            let _ = self.free_block(b);
            self.sub_blocks(i);
        }
    }

    fn bmap_alloc_inner(
        &mut self,
        i: &mut Inode,
        p: &[usize],
        goal: u32,
        made: &mut Vec<(PtrLoc, u32)>,
    ) -> R<(u32, bool)> {
        let n = p.len();
        let mut b = i.block(p[0]);
        let mut goal = goal;
        if b == 0 {
            self.add_blocks(i)?;
            b = match self.alloc_block(goal) {
                Ok(b) => b,
                Err(e) => {
                    self.sub_blocks(i);
                    return Err(e);
                }
            };
            i.set_block(p[0], b);
            made.push((PtrLoc::Inode(p[0]), b));
            if n == 1 {
                return Ok((b, true));
            }
            self.ind_new(b)?;
            goal = b + 1;
        } else if n == 1 {
            return Ok((b, false));
        }
        let mut parent = b;
        for (level, &idx) in p.iter().enumerate().skip(1) {
            let last = level == n - 1;
            let c = self.ind_get(parent, idx)?;
            if c != 0 {
                if last {
                    return Ok((c, false));
                }
                parent = c;
                continue;
            }
            self.add_blocks(i)?;
            let c = match self.alloc_block(goal) {
                Ok(c) => c,
                Err(e) => {
                    self.sub_blocks(i);
                    return Err(e);
                }
            };
            self.ind_set(parent, idx, c)?;
            made.push((PtrLoc::Ind(parent, idx), c));
            if last {
                return Ok((c, true));
            }
            self.ind_new(c)?;
            goal = c + 1;
            parent = c;
        }
        unreachable!()
    }

    /// Free every block of logical index `keep` and beyond (and indirect
    /// blocks left covering nothing).
    fn truncate_blocks(&mut self, i: &mut Inode, keep: u64) -> R<()> {
        for k in 0..12usize {
            if (k as u64) >= keep {
                let b = i.block(k);
                if b != 0 {
                    self.free_block(b)?;
                    i.set_block(k, 0);
                    self.sub_blocks(i);
                }
            }
        }
        let p = self.ptrs();
        let mut base = 12u64;
        let mut span = p;
        // A corrupt tree may share or loop indirect blocks: visit each
        // once, and no more blocks than the inode accounts for.
        let mut walk = TruncWalk { seen: HashSet::new(), budget: i.blocks512() as u64 / (self.g.bs / 512) as u64 + 4 };
        for lvl in 1..=3u32 {
            let b = i.block(11 + lvl as usize);
            if b != 0 && self.trunc_ind(i, b, lvl, base, keep, &mut walk)? {
                i.set_block(11 + lvl as usize, 0);
            }
            base += span;
            span *= p;
        }
        Ok(())
    }

    /// Trim the tree under indirect block `b` (depth `level`, first
    /// logical block `base`). Returns whether `b` itself was freed.
    fn trunc_ind(&mut self, i: &mut Inode, b: u32, level: u32, base: u64, keep: u64, walk: &mut TruncWalk) -> R<bool> {
        let p = self.ptrs();
        let child_span = p.pow(level - 1);
        if keep >= base + child_span * p {
            return Ok(false);
        }
        if walk.budget == 0 || !walk.seen.insert(b) {
            // Seen already (a loop, or shared with another pointer), or
            // more blocks than the inode has: corrupt; leave it be.
            return Ok(false);
        }
        walk.budget -= 1;
        let ptrs = self.ind_load(b)?.ptrs.clone();
        for (j, &c) in ptrs.iter().enumerate() {
            if c == 0 {
                continue;
            }
            let cbase = base + j as u64 * child_span;
            if cbase + child_span <= keep {
                continue;
            }
            let freed = if level == 1 {
                if walk.budget == 0 {
                    continue;
                }
                walk.budget -= 1;
                self.free_block(c)?;
                self.sub_blocks(i);
                true
            } else {
                self.trunc_ind(i, c, level - 1, cbase, keep, walk)?
            };
            if freed && keep > base {
                self.ind_set(b, j, 0)?;
            }
        }
        if keep <= base {
            self.free_block(b)?;
            self.sub_blocks(i);
            return Ok(true);
        }
        Ok(false)
    }

    // ----------------------------------------------------------------
    // Inodes

    fn inode_off(&self, ino: u32) -> R<u64> {
        if ino == 0 || ino > self.g.inodes_count {
            return err(ENOENT);
        }
        let gi = ((ino - 1) / self.g.ipg) as usize;
        let idx = ((ino - 1) % self.g.ipg) as u64;
        Ok(self.gds[gi].inode_table as u64 * self.g.bs as u64 + idx * self.g.inode_size as u64)
    }

    fn read_inode(&mut self, ino: u32) -> R<Inode> {
        if let Some(e) = self.icache.get(&ino) {
            return Ok(Inode { num: ino, raw: e.raw.clone() });
        }
        let off = self.inode_off(ino)?;
        let mut raw = vec![0u8; self.g.inode_size as usize];
        self.store.read(off, &mut raw)?;
        // (A cache that cannot make room just does not keep this one.)
        if self.icache_room().is_ok() {
            self.icache.insert(ino, CachedInode { raw: raw.clone(), dirty: false });
        }
        Ok(Inode { num: ino, raw })
    }

    /// Record a changed inode. It reaches the store at the next sync (or
    /// when the cache of inodes is full).
    fn write_inode(&mut self, i: &Inode) -> R<()> {
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
            return self.store.write(off, &i.raw);
        }
        self.icache.insert(i.num, CachedInode { raw: i.raw.clone(), dirty: true });
        self.idirty.push(i.num);
        Ok(())
    }

    /// Make room for one more cached inode: when full, write the dirty
    /// ones and forget every clean one.
    fn icache_room(&mut self) -> R<()> {
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
    fn flush_inodes(&mut self) -> R<()> {
        if self.idirty.is_empty() {
            return Ok(());
        }
        let mut list = std::mem::take(&mut self.idirty);
        list.sort_unstable();
        list.dedup();
        for (k, &ino) in list.iter().enumerate() {
            let Some(e) = self.icache.get(&ino) else { continue };
            if !e.dirty {
                continue;
            }
            let off = self.inode_off(ino)?;
            if let Err(err) = self.store.write(off, &e.raw) {
                self.idirty = list[k..].to_vec();
                return Err(err);
            }
            self.icache.get_mut(&ino).unwrap().dirty = false;
        }
        Ok(())
    }

    /// A live inode (allocated, linked or held open).
    fn get(&mut self, ino: u32) -> R<Inode> {
        let i = self.read_inode(ino)?;
        if i.mode() == 0 || (i.links() == 0 && !self.open.contains_key(&ino)) {
            return err(ENOENT);
        }
        if i.flags() & EXTENTS_FL != 0 {
            return err(EFTYPE);
        }
        Ok(i)
    }

    fn get_dir(&mut self, ino: u32) -> R<Inode> {
        let i = self.get(ino)?;
        if !i.is_dir() {
            return err(ENOTDIR);
        }
        Ok(i)
    }

    fn update(&mut self, ino: u32, f: impl FnOnce(&mut Inode)) -> R<()> {
        let mut i = self.read_inode(ino)?;
        f(&mut i);
        self.write_inode(&i)
    }

    fn new_inode(&mut self, ino: u32) -> Inode {
        let mut i = Inode { num: ino, raw: vec![0u8; self.g.inode_size as usize] };
        i.set_extra_isize(self.g.new_extra_isize);
        self.next_gen = self.next_gen.wrapping_mul(1_103_515_245).wrapping_add(12345);
        i.set_generation(self.next_gen);
        i
    }

    /// Free an inode with no links: its blocks, its xattr block, its bit.
    fn free_inode(&mut self, ino: u32) -> R<()> {
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

    fn release_xattr(&mut self, b: u32) -> R<()> {
        if b < self.g.first_data_block || b >= self.g.blocks_count {
            return Ok(());
        }
        let mut blk = self.read_blk(b)?;
        if le32(&blk, 0) == XATTR_MAGIC {
            let rc = le32(&blk, 4);
            if rc > 1 {
                put32(&mut blk, 4, rc - 1);
                return self.write_blk(b, &blk);
            }
        }
        self.free_block(b)
    }

    /// The last link went: free now, or at the last release if open.
    fn drop_inode(&mut self, ino: u32) -> R<()> {
        if self.open.get(&ino).copied().unwrap_or(0) > 0 {
            self.orphans.insert(ino);
            Ok(())
        } else {
            self.free_inode(ino)
        }
    }

    fn attr(&self, i: &Inode) -> Attr {
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
            size: if i.is_dir() { i.size().min(self.dir_nblocks(i) * self.g.bs as u64) } else { i.size() },
            blocks,
            blksize: self.g.bs,
            rdev: if matches!(kind, FileKind::Blk | FileKind::Chr) { i.rdev() } else { 0 },
            atime: i.time(TimeField::Access),
            mtime: i.time(TimeField::Modify),
            ctime: i.time(TimeField::Change),
            birthtime: i.time(TimeField::Birth),
        }
    }

    fn max_file_size(&self) -> u64 {
        if self.g.rev == 0 {
            return 0x7fff_ffff;
        }
        let p = self.ptrs();
        let blocks = 12 + p + p * p + p * p * p;
        (blocks * self.g.bs as u64).min((1u64 << 41) - (1u64 << 34))
    }

    /// Record a size; sets the large_file feature when first needed.
    fn set_file_size(&mut self, i: &mut Inode, size: u64) {
        i.set_size(size);
        if size > 0x7fff_ffff && self.g.rev >= 1 {
            let ro = le32(&self.sb, S_FEATURE_RO_COMPAT);
            if ro & features::RO_COMPAT_LARGE_FILE == 0 {
                put32(&mut self.sb, S_FEATURE_RO_COMPAT, ro | features::RO_COMPAT_LARGE_FILE);
            }
        }
    }

    /// Whether every block in `[from, to)` is a free data block (free in
    /// its group's bitmap, inside the file system).
    fn all_free(&mut self, from: u32, to: u32) -> R<bool> {
        if from < self.g.first_data_block || to > self.g.blocks_count {
            return Ok(false);
        }
        for b in from..to {
            let rel = b - self.g.first_data_block;
            let gi = (rel / self.g.bpg) as usize;
            let bit = rel % self.g.bpg;
            if self.gds[gi].free_blocks == 0 {
                return Ok(false);
            }
            let bm = self.bbm(gi)?;
            if bm.data[(bit / 8) as usize] & (1 << (bit % 8)) != 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Write a run of file data. When the run starts or ends inside a
    /// cache window (`WINDOW` bytes, the store's unit) and the rest of
    /// that window is free blocks, the run is padded with zeros to the
    /// window's edge: the store then gets the whole window and need not
    /// read it from the device first. (Free blocks may hold anything.)
    fn write_run(&mut self, r: &Run, data: &[u8]) -> R<()> {
        let bs = self.g.bs as u64;
        let w = WINDOW.max(bs);
        let (mut pre, mut post) = (0usize, 0usize);
        let start = r.disk;
        let end = r.end();
        if start % bs == 0 && start % w != 0 {
            let ws = start - start % w;
            if self.all_free((ws / bs) as u32, (start / bs) as u32)? {
                pre = (start - ws) as usize;
            }
        }
        if end % bs == 0 && end % w != 0 {
            let we = end - end % w + w;
            if we <= self.store.size() && self.all_free((end / bs) as u32, (we / bs) as u32)? {
                post = (we - end) as usize;
            }
        }
        let src = &data[r.src..r.src + r.dlen];
        if pre + r.head + r.tail + post == 0 {
            return self.store.write(start, src);
        }
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        buf.resize(pre + r.head, 0);
        buf.extend_from_slice(src);
        buf.resize(buf.len() + r.tail + post, 0);
        let res = self.store.write(start - pre as u64, &buf);
        self.scratch = buf;
        res
    }

    /// Zero the bytes after `old_size` in its block (junk past the old end
    /// of file must read as zeros once the file grows).
    fn zero_tail(&mut self, i: &Inode, old_size: u64) -> R<()> {
        let bs = self.g.bs as u64;
        let start = old_size % bs;
        if start == 0 {
            return Ok(());
        }
        let phys = self.bmap(i, old_size / bs)?;
        if phys != 0 {
            let zeros = vec![0u8; (bs - start) as usize];
            self.store.write(phys as u64 * bs + start, &zeros)?;
        }
        Ok(())
    }

    /// Allocation goal for logical block `lb`: after the previous block,
    /// else the start of the inode's group.
    fn goal_for(&mut self, i: &Inode, lb: u64) -> R<u32> {
        if lb > 0 {
            let prev = self.bmap(i, lb - 1)?;
            if prev != 0 {
                return Ok(prev + 1);
            }
        }
        Ok(self.g.group_start((i.num - 1) / self.g.ipg))
    }

    // ----------------------------------------------------------------
    // Directories

    fn parse_dir(&self, blk: &[u8]) -> R<Vec<Ent>> {
        let bs = blk.len();
        let mut v = Vec::new();
        let mut off = 0;
        while off < bs {
            if off + 8 > bs {
                return err(EIO);
            }
            let ino = le32(blk, off);
            let rec_len = le16(blk, off + 4) as usize;
            let (name_len, ftype) = if self.g.filetype {
                (blk[off + 6] as usize, blk[off + 7])
            } else {
                (le16(blk, off + 6) as usize, 0)
            };
            if rec_len < 8 || rec_len % 4 != 0 || off + rec_len > bs {
                return err(EIO);
            }
            if ino != 0 && (8 + name_len > rec_len || ino > self.g.inodes_count) {
                return err(EIO);
            }
            v.push(Ent { off, ino, rec_len, name_len, ftype });
            off += rec_len;
        }
        Ok(v)
    }

    fn write_entry(&self, blk: &mut [u8], off: usize, ino: u32, rec_len: usize, name: &[u8], ftype: u8) {
        put32(blk, off, ino);
        put16(blk, off + 4, rec_len as u16);
        if self.g.filetype {
            blk[off + 6] = name.len() as u8;
            blk[off + 7] = ftype;
        } else {
            put16(blk, off + 6, name.len() as u16);
        }
        blk[off + 8..off + 8 + name.len()].copy_from_slice(name);
    }

    /// Blocks of directory `d`, bounded by what the inode really holds,
    /// never by what a (possibly corrupt) size field claims: only the
    /// size's low word counts (for a directory the high word is no size —
    /// revision 0 calls it `i_dir_acl` — and e2fsck rejects directories
    /// of 4 GiB), and never more blocks than `i_blocks` accounts for (data
    /// and indirect blocks) or the file system has. So listing or
    /// searching a directory costs at most the blocks it has allocated.
    fn dir_nblocks(&self, d: &Inode) -> u64 {
        let bs = self.g.bs as u64;
        let claimed = (d.size() & 0xffff_ffff).div_ceil(bs);
        let held = d.blocks512() as u64 / (bs / 512);
        claimed.min(held).min(self.g.blocks_count as u64)
    }

    /// Largest record that fits in a directory block.
    fn block_space(ents: &[Ent]) -> u16 {
        ents.iter()
            .map(|e| if e.ino == 0 { e.rec_len } else { e.rec_len - rec_size(e.name_len) })
            .max()
            .unwrap_or(0) as u16
    }

    /// Make sure the in-memory index of directory `d` exists.
    fn dir_idx(&mut self, d: &Inode) -> R<()> {
        if self.dcache.contains_key(&d.num) {
            return Ok(());
        }
        let total: usize = self.dcache.values().map(|x| x.names.len()).sum();
        if self.dcache.len() >= DCACHE_MAX_DIRS || total > DCACHE_MAX_ENTRIES {
            // Forget about half of them (arbitrary ones).
            let victims: Vec<u32> = self.dcache.keys().copied().step_by(2).collect();
            for v in victims {
                self.dcache.remove(&v);
            }
        }
        let mut idx = DirIdx { names: HashMap::new(), space: Vec::new() };
        for lb in 0..self.dir_nblocks(d) {
            let phys = self.bmap(d, lb)?;
            if phys == 0 {
                idx.space.push(0);
                continue;
            }
            let blk = self.read_blk(phys)?;
            let ents = self.parse_dir(&blk)?;
            for e in &ents {
                if e.ino != 0 {
                    let name = blk[e.off + 8..e.off + 8 + e.name_len].to_vec();
                    idx.names.insert(name, (lb as u32, e.off as u16, e.ino));
                }
            }
            idx.space.push(Self::block_space(&ents));
        }
        self.dcache.insert(d.num, idx);
        Ok(())
    }

    fn dir_find(&mut self, d: &Inode, name: &[u8]) -> R<Option<Found>> {
        self.dir_idx(d)?;
        let Some(&(lb, off, ino)) = self.dcache[&d.num].names.get(name) else {
            return Ok(None);
        };
        let phys = self.bmap(d, lb as u64)?;
        if phys == 0 {
            self.dcache.remove(&d.num);
            return err(EIO);
        }
        Ok(Some(Found { dir: d.num, lb, phys, off: off as usize, ino }))
    }

    /// Check `name` is free in `d` and find room for it, growing the
    /// directory by a block if needed (the caller writes `d` back).
    fn dir_find_slot(&mut self, d: &mut Inode, name: &[u8]) -> R<Slot> {
        self.dir_idx(d)?;
        let need = rec_size(name.len());
        let idx = &self.dcache[&d.num];
        if idx.names.contains_key(name) {
            return err(EEXIST);
        }
        if let Some(lb) = idx.space.iter().position(|&s| s as usize >= need) {
            let phys = self.bmap(d, lb as u64)?;
            if phys != 0 {
                let blk = self.read_blk(phys)?;
                let ents = self.parse_dir(&blk)?;
                for (k, e) in ents.iter().enumerate() {
                    let used = if e.ino == 0 { 0 } else { rec_size(e.name_len) };
                    if e.rec_len - used >= need {
                        // The largest room left in the other entries.
                        let other = ents
                            .iter()
                            .enumerate()
                            .filter(|&(j, _)| j != k)
                            .map(|(_, e)| if e.ino == 0 { e.rec_len } else { e.rec_len - rec_size(e.name_len) })
                            .max()
                            .unwrap_or(0);
                        return Ok(Slot {
                            dir: d.num,
                            lb: lb as u32,
                            phys,
                            off: e.off,
                            rec_len: e.rec_len,
                            used,
                            blk: Some(blk),
                            other_space: other,
                        });
                    }
                }
            }
            // The index disagrees with the disk: rebuild it next time.
            self.dcache.remove(&d.num);
            return err(EIO);
        }
        let nblocks = self.dir_nblocks(d);
        let bs = self.g.bs as usize;
        let goal = self.goal_for(d, nblocks)?;
        let mut log = Vec::new();
        let (phys, _) = self.bmap_alloc(d, nblocks, goal, &mut log)?;
        let mut blk = vec![0u8; bs];
        put16(&mut blk, 4, bs as u16);
        if let Err(e) = self.write_blk(phys, &blk) {
            self.undo_allocs(d, &mut log, 0);
            return Err(e);
        }
        d.set_size((nblocks + 1) * bs as u64);
        if let Some(idx) = self.dcache.get_mut(&d.num) {
            idx.space.push(bs as u16);
        }
        Ok(Slot { dir: d.num, lb: nblocks as u32, phys, off: 0, rec_len: bs, used: 0, blk: Some(blk), other_space: 0 })
    }

    fn dir_insert(&mut self, s: &mut Slot, name: &[u8], ino: u32, ftype: u8) -> R<()> {
        let r = (|| {
            let mut blk = match s.blk.take() {
                Some(b) => b,
                None => self.read_blk(s.phys)?,
            };
            let (off, rec) = if s.used == 0 {
                (s.off, s.rec_len)
            } else {
                put16(&mut blk, s.off + 4, s.used as u16);
                (s.off + s.used, s.rec_len - s.used)
            };
            self.write_entry(&mut blk, off, ino, rec, name, ftype);
            // Only the bytes that changed go to the store.
            let changed = &blk[s.off..off + 8 + name.len()];
            self.store.write(s.phys as u64 * self.g.bs as u64 + s.off as u64, changed)?;
            let space = s.other_space.max(rec - rec_size(name.len())) as u16;
            if let Some(idx) = self.dcache.get_mut(&s.dir) {
                idx.names.insert(name.to_vec(), (s.lb, off as u16, ino));
                idx.space[s.lb as usize] = space;
            }
            Ok(())
        })();
        if r.is_err() {
            self.dcache.remove(&s.dir);
        }
        r
    }

    /// Remove the entry `f`.
    fn dir_remove_at(&mut self, f: &Found) -> R<()> {
        let r = (|| {
            let mut blk = self.read_blk(f.phys)?;
            let ents = self.parse_dir(&blk)?;
            let k = ents.iter().position(|e| e.off == f.off).ok_or(Errno(EIO))?;
            let name = blk[f.off + 8..f.off + 8 + ents[k].name_len].to_vec();
            if k == 0 {
                put32(&mut blk, f.off, 0);
            } else {
                let prev = &ents[k - 1];
                put16(&mut blk, prev.off + 4, (prev.rec_len + ents[k].rec_len) as u16);
            }
            self.write_blk(f.phys, &blk)?;
            let space = Self::block_space(&self.parse_dir(&blk)?);
            if let Some(idx) = self.dcache.get_mut(&f.dir) {
                idx.names.remove(&name);
                idx.space[f.lb as usize] = space;
            }
            Ok(())
        })();
        if r.is_err() {
            self.dcache.remove(&f.dir);
        }
        r
    }

    /// Point the entry `f` to another inode.
    fn dir_set(&mut self, f: &Found, ino: u32, ftype: u8) -> R<()> {
        let r = (|| {
            let mut blk = self.read_blk(f.phys)?;
            put32(&mut blk, f.off, ino);
            if self.g.filetype {
                blk[f.off + 7] = ftype;
            }
            self.write_blk(f.phys, &blk)?;
            let name_len = if self.g.filetype { blk[f.off + 6] as usize } else { le16(&blk, f.off + 6) as usize };
            let name = &blk[f.off + 8..(f.off + 8 + name_len).min(blk.len())];
            if let Some(v) = self.dcache.get_mut(&f.dir).and_then(|idx| idx.names.get_mut(name)) {
                v.2 = ino;
            }
            Ok(())
        })();
        if r.is_err() {
            self.dcache.remove(&f.dir);
        }
        r
    }

    /// The ".." entry of directory `d` (the second entry of its first block).
    fn dotdot(&mut self, d: &Inode) -> R<Found> {
        let phys = self.bmap(d, 0)?;
        if phys == 0 {
            return err(EIO);
        }
        let blk = self.read_blk(phys)?;
        let ents = self.parse_dir(&blk)?;
        match ents.get(1) {
            Some(e) if e.ino != 0 && &blk[e.off + 8..e.off + 8 + e.name_len] == b".." => {
                Ok(Found { dir: d.num, lb: 0, phys, off: e.off, ino: e.ino })
            }
            _ => err(EIO),
        }
    }

    fn dir_is_empty(&mut self, d: &Inode) -> R<bool> {
        self.dir_idx(d)?;
        Ok(self.dcache[&d.num].names.keys().all(|n| n == b"." || n == b".."))
    }

    fn touch_dir(d: &mut Inode, t: Timespec) {
        d.set_flags(d.flags() & !INDEX_FL);
        d.set_time(TimeField::Modify, t);
        d.set_time(TimeField::Change, t);
    }

    // ----------------------------------------------------------------
    // Operations

    pub fn lookup(&mut self, dir: u32, name: &[u8]) -> R<u32> {
        let d = self.get_dir(dir)?;
        if name.is_empty() {
            return err(ENOENT);
        }
        if name.len() > 255 {
            return err(ENAMETOOLONG);
        }
        match self.dir_find(&d, name)? {
            Some(f) => Ok(f.ino),
            None => err(ENOENT),
        }
    }

    pub fn getattr(&mut self, ino: u32) -> R<Attr> {
        let i = self.get(ino)?;
        Ok(self.attr(&i))
    }

    pub fn setattr(&mut self, ino: u32, s: &SetAttr) -> R<Attr> {
        let mut i = self.get(ino)?;
        if s.perm.is_none() && s.uid.is_none() && s.gid.is_none() && s.size.is_none()
            && s.atime.is_none() && s.mtime.is_none()
        {
            return Ok(self.attr(&i));
        }
        self.begin_write()?;
        let t = now();
        let mut result = Ok(());
        if let Some(size) = s.size {
            if i.is_dir() {
                return err(EISDIR);
            }
            if !i.is_reg() {
                return err(EINVAL);
            }
            if size > self.max_file_size() {
                return err(EFBIG);
            }
            let old = i.size();
            if size < old {
                let keep = size.div_ceil(self.g.bs as u64);
                result = self.truncate_blocks(&mut i, keep);
                self.set_file_size(&mut i, size);
            } else if size > old {
                result = self.zero_tail(&i, old);
                self.set_file_size(&mut i, size);
            }
            i.set_time(TimeField::Modify, t);
        }
        if let Some(p) = s.perm {
            i.set_mode((i.mode() & S_IFMT) | (p & 0o7777) as u16);
        }
        if let Some(u) = s.uid {
            i.set_uid(u);
        }
        if let Some(g) = s.gid {
            i.set_gid(g);
        }
        if let Some(a) = s.atime {
            i.set_time(TimeField::Access, a);
        }
        if let Some(m) = s.mtime {
            i.set_time(TimeField::Modify, m);
        }
        i.set_time(TimeField::Change, t);
        self.write_inode(&i)?;
        result?;
        Ok(self.attr(&i))
    }

    pub fn create(
        &mut self,
        dir: u32,
        name: &[u8],
        kind: FileKind,
        perm: u32,
        cred: Cred,
        target: Option<&[u8]>,
    ) -> R<u32> {
        self.begin_write()?;
        check_name(name)?;
        if let Some(t) = target {
            if t.is_empty() {
                return err(ENOENT);
            }
            if t.len() >= (self.g.bs as usize).min(1024) {
                return err(ENAMETOOLONG);
            }
        }
        let mut d = self.get_dir(dir)?;
        if d.links() == 0 {
            return err(ENOENT);
        }
        if kind == FileKind::Dir && d.links() >= LINK_MAX {
            return err(EMLINK);
        }
        let size0 = d.size();
        let slot = match self.dir_find_slot(&mut d, name) {
            Ok(s) => s,
            Err(e) => {
                if d.size() != size0 || e.0 == ENOSPC {
                    self.write_inode(&d)?;
                }
                return Err(e);
            }
        };
        let r = self.create_in(&mut d, slot, name, kind, perm, cred, target);
        self.write_inode(&d)?;
        r
    }

    #[allow(clippy::too_many_arguments)]
    fn create_in(
        &mut self,
        d: &mut Inode,
        mut slot: Slot,
        name: &[u8],
        kind: FileKind,
        perm: u32,
        cred: Cred,
        target: Option<&[u8]>,
    ) -> R<u32> {
        let is_dir = kind == FileKind::Dir;
        let ino = self.alloc_inode(d.num, is_dir)?;
        let t = now();
        let bs = self.g.bs;
        let mut n = self.new_inode(ino);
        n.set_mode(kind.mode_bits() as u16 | (perm & 0o7777) as u16);
        n.set_uid(cred.uid);
        // BSD semantics, as NetBSD's ext2fs: the group of the directory.
        n.set_gid(d.gid());
        n.set_links(if is_dir { 2 } else { 1 });
        for f in [TimeField::Access, TimeField::Modify, TimeField::Change, TimeField::Birth] {
            n.set_time(f, t);
        }
        let goal = self.g.group_start((ino - 1) / self.g.ipg);
        let mut data_block = None;
        let r = (|| {
            if is_dir || target.is_some_and(|t| t.len() >= 60) {
                let b = self.alloc_block(goal)?;
                data_block = Some(b);
                let mut blk = vec![0u8; bs as usize];
                if is_dir {
                    self.write_entry(&mut blk, 0, ino, 12, b".", 2);
                    self.write_entry(&mut blk, 12, d.num, bs as usize - 12, b"..", 2);
                    n.set_size(bs as u64);
                } else {
                    let tg = target.unwrap();
                    blk[..tg.len()].copy_from_slice(tg);
                    n.set_size(tg.len() as u64);
                }
                self.write_blk(b, &blk)?;
                n.set_block(0, b);
                n.set_blocks512(bs / 512);
            } else if let Some(tg) = target {
                n.raw[I_BLOCK..I_BLOCK + tg.len()].copy_from_slice(tg);
                n.set_size(tg.len() as u64);
            }
            self.write_inode(&n)?;
            self.dir_insert(&mut slot, name, ino, dirent_ftype(kind))
        })();
        if let Err(e) = r {
            // Undo: nothing may stay allocated without a name.
            if let Some(b) = data_block {
                let _ = self.free_block(b);
            }
            let _ = self.free_inode_bit(ino, is_dir);
            let mut z = self.new_inode(ino);
            z.set_dtime(t.sec as u32);
            let _ = self.write_inode(&z);
            return Err(e);
        }
        if is_dir {
            d.set_links(d.links() + 1);
        }
        Self::touch_dir(d, t);
        Ok(ino)
    }

    pub fn readlink(&mut self, ino: u32) -> R<Vec<u8>> {
        let i = self.get(ino)?;
        if !i.is_lnk() {
            return err(EINVAL);
        }
        let size = i.size() as usize;
        if i.is_fast_symlink(self.g.bs) {
            return Ok(i.raw[I_BLOCK..I_BLOCK + size.min(60)].to_vec());
        }
        let phys = self.bmap(&i, 0)?;
        if phys == 0 {
            return err(EIO);
        }
        let blk = self.read_blk(phys)?;
        Ok(blk[..size.min(blk.len())].to_vec())
    }

    pub fn link(&mut self, ino: u32, newdir: u32, name: &[u8]) -> R<()> {
        self.begin_write()?;
        check_name(name)?;
        let i = self.get(ino)?;
        if i.is_dir() {
            return err(EPERM);
        }
        if i.links() == 0 {
            return err(ENOENT);
        }
        if i.links() >= LINK_MAX {
            return err(EMLINK);
        }
        let mut d = self.get_dir(newdir)?;
        if d.links() == 0 {
            return err(ENOENT);
        }
        let size0 = d.size();
        let mut slot = match self.dir_find_slot(&mut d, name) {
            Ok(s) => s,
            Err(e) => {
                if d.size() != size0 || e.0 == ENOSPC {
                    self.write_inode(&d)?;
                }
                return Err(e);
            }
        };
        let t = now();
        let ftype = dirent_ftype(i.kind().unwrap_or(FileKind::Reg));
        let r = self.dir_insert(&mut slot, name, ino, ftype);
        Self::touch_dir(&mut d, t);
        self.write_inode(&d)?;
        r?;
        self.update(ino, |i| {
            i.set_links(i.links() + 1);
            i.set_time(TimeField::Change, t);
        })
    }

    /// unlink (`rmdir` false) or rmdir (`rmdir` true).
    pub fn remove(&mut self, dir: u32, name: &[u8], rmdir: bool) -> R<()> {
        self.begin_write()?;
        check_name(name)?;
        let mut d = self.get_dir(dir)?;
        let f = self.dir_find(&d, name)?.ok_or(Errno(ENOENT))?;
        let mut v = self.get(f.ino)?;
        if rmdir {
            if !v.is_dir() {
                return err(ENOTDIR);
            }
            if f.ino == ROOT_INO {
                return err(EBUSY);
            }
            if !self.dir_is_empty(&v)? {
                return err(ENOTEMPTY);
            }
        } else if v.is_dir() {
            return err(EPERM);
        }
        let t = now();
        self.dir_remove_at(&f)?;
        Self::touch_dir(&mut d, t);
        if rmdir {
            d.set_links(d.links().saturating_sub(1));
        }
        self.write_inode(&d)?;
        if rmdir {
            v.set_links(0);
        } else {
            v.set_links(v.links().saturating_sub(1));
        }
        v.set_time(TimeField::Change, t);
        self.write_inode(&v)?;
        if v.links() == 0 {
            self.drop_inode(f.ino)?;
        }
        Ok(())
    }

    pub fn rename(&mut self, fd: u32, fname: &[u8], td: u32, tname: &[u8]) -> R<()> {
        self.begin_write()?;
        check_name(fname)?;
        check_name(tname)?;
        let fdir = self.get_dir(fd)?;
        let tdir = self.get_dir(td)?;
        if tdir.links() == 0 {
            return err(ENOENT);
        }
        let sino = self.dir_find(&fdir, fname)?.ok_or(Errno(ENOENT))?.ino;
        let src = self.get(sino)?;
        let sdir = src.is_dir();
        let tf = self.dir_find(&tdir, tname)?;
        if let Some(t) = &tf {
            if t.ino == sino {
                return Ok(());
            }
        }
        if sdir && fd != td {
            // The target directory must not be the source or inside it.
            let mut cur = td;
            // A corrupt image may loop its ".." entries: each directory
            // once, or it is corrupt.
            let mut seen = HashSet::new();
            loop {
                if cur == sino {
                    return err(EINVAL);
                }
                if cur == ROOT_INO {
                    break;
                }
                if !seen.insert(cur) {
                    return err(EIO);
                }
                let c = self.get_dir(cur)?;
                let up = self.dotdot(&c)?.ino;
                if up == cur {
                    break;
                }
                cur = up;
            }
            if tf.is_none() && tdir.links() >= LINK_MAX {
                return err(EMLINK);
            }
        }
        let t = now();
        let sftype = dirent_ftype(src.kind().unwrap_or(FileKind::Reg));
        let mut td_delta: i32 = 0;
        match tf {
            Some(tfnd) => {
                let mut victim = self.get(tfnd.ino)?;
                if sdir {
                    if !victim.is_dir() {
                        return err(ENOTDIR);
                    }
                    if !self.dir_is_empty(&victim)? {
                        return err(ENOTEMPTY);
                    }
                } else if victim.is_dir() {
                    return err(EISDIR);
                }
                self.dir_set(&tfnd, sino, sftype)?;
                if victim.is_dir() {
                    victim.set_links(0);
                    td_delta -= 1;
                } else {
                    victim.set_links(victim.links().saturating_sub(1));
                }
                victim.set_time(TimeField::Change, t);
                self.write_inode(&victim)?;
                if victim.links() == 0 {
                    self.drop_inode(tfnd.ino)?;
                }
            }
            None => {
                let mut tdi = self.get(td)?;
                let size0 = tdi.size();
                let mut slot = match self.dir_find_slot(&mut tdi, tname) {
                    Ok(s) => s,
                    Err(e) => {
                        if tdi.size() != size0 || e.0 == ENOSPC {
                            self.write_inode(&tdi)?;
                        }
                        return Err(e);
                    }
                };
                let r = self.dir_insert(&mut slot, tname, sino, sftype);
                tdi.set_flags(tdi.flags() & !INDEX_FL);
                self.write_inode(&tdi)?;
                r?;
            }
        }
        let fdi = self.get(fd)?;
        let sf = self.dir_find(&fdi, fname)?.ok_or(Errno(EIO))?;
        self.dir_remove_at(&sf)?;
        let moved_dir = sdir && fd != td;
        if moved_dir {
            let s = self.get(sino)?;
            let dd = self.dotdot(&s)?;
            self.dir_set(&dd, td, 2)?;
            td_delta += 1;
        }
        self.update(fd, |d| {
            Self::touch_dir(d, t);
            if moved_dir {
                d.set_links(d.links().saturating_sub(1));
            }
        })?;
        self.update(td, |d| {
            Self::touch_dir(d, t);
            d.set_links((d.links() as i32 + td_delta).max(0) as u16);
        })?;
        self.update(sino, |i| i.set_time(TimeField::Change, t))
    }

    /// The first half of a read: the byte count, holes zero-filled in
    /// `buf`, and the runs of device bytes that fill the rest — for the
    /// caller to read from the store after it drops the file system lock
    /// (holding the inode's own lock, so the blocks stay this file's).
    pub fn read_map(&mut self, ino: u32, off: u64, buf: &mut [u8]) -> R<(usize, Vec<ReadRun>)> {
        let mut i = self.get(ino)?;
        if i.is_dir() {
            return err(EISDIR);
        }
        if !i.is_reg() {
            return err(EINVAL);
        }
        let size = i.size();
        if off >= size || buf.is_empty() {
            return Ok((0, Vec::new()));
        }
        let len = (buf.len() as u64).min(size - off) as usize;
        let bs = self.g.bs as u64;
        let mut pos = off;
        let mut done = 0usize;
        let mut runs: Vec<ReadRun> = Vec::new();
        while done < len {
            let lb = pos / bs;
            let boff = pos % bs;
            let n = ((bs - boff) as usize).min(len - done);
            let phys = self.bmap(&i, lb)?;
            if phys == 0 {
                buf[done..done + n].fill(0);
            } else {
                let disk = phys as u64 * bs + boff;
                match runs.last_mut() {
                    Some(r) if r.disk + r.len as u64 == disk && r.at + r.len == done && r.len < MAX_RUN => r.len += n,
                    _ => runs.push(ReadRun { disk, at: done, len: n }),
                }
            }
            pos += n as u64;
            done += n;
        }
        if !self.ro {
            // Relaxed atime: only when older than mtime/ctime or a day.
            let t = now();
            let a = i.time(TimeField::Access);
            if (ts_le(a, i.time(TimeField::Modify))
                || ts_le(a, i.time(TimeField::Change))
                || t.sec - a.sec >= 86400)
                && self.begin_write().is_ok()
            {
                i.set_time(TimeField::Access, t);
                self.write_inode(&i)?;
            }
        }
        Ok((len, runs))
    }

    pub fn write(&mut self, ino: u32, off: u64, data: &[u8]) -> R<usize> {
        self.begin_write()?;
        let mut i = self.get(ino)?;
        if i.is_dir() {
            return err(EISDIR);
        }
        if !i.is_reg() {
            return err(EINVAL);
        }
        if data.is_empty() {
            return Ok(0);
        }
        let max = self.max_file_size();
        if off >= max {
            return err(EFBIG);
        }
        let len = (data.len() as u64).min(max - off) as usize;
        let end = off + len as u64;
        let bs = self.g.bs as u64;
        let old = i.size();
        if end > old && old % bs != 0 && off / bs > old / bs {
            self.zero_tail(&i, old)?;
        }
        let mut goal = self.goal_for(&i, off / bs)?;
        let mut pos = off;
        let mut failure = None;
        let mut log = Vec::new();
        // The pending run of contiguous disk bytes: `head` zeros, then
        // data[src..src + dlen], then `tail` zeros, from disk offset `disk`.
        let mut run: Option<Run> = None;
        while pos < end {
            let lb = pos / bs;
            let boff = (pos % bs) as usize;
            let n = ((bs as usize) - boff).min((end - pos) as usize);
            let (phys, new) = match self.bmap_alloc(&mut i, lb, goal, &mut log) {
                Ok(v) => v,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            };
            goal = phys + 1;
            let src = (pos - off) as usize;
            let base = phys as u64 * bs;
            let (disk, head, tail) = if new && n < bs as usize {
                (base, boff, bs as usize - boff - n)
            } else if !new && lb == old / bs && old % bs != 0 && boff as u64 > old % bs {
                let start = (old % bs) as usize;
                (base + start as u64, boff - start, 0)
            } else {
                (base + boff as u64, 0, 0)
            };
            let joined = match &mut run {
                Some(r) if r.tail == 0 && head == 0 && r.end() == disk && r.len() < MAX_RUN => {
                    r.dlen += n;
                    r.tail = tail;
                    true
                }
                _ => false,
            };
            if !joined {
                if let Some(r) = run.take() {
                    if let Err(e) = self.write_run(&r, data) {
                        failure = Some(e);
                        break;
                    }
                }
                run = Some(Run { disk, head, src, dlen: n, tail });
            }
            pos += n as u64;
        }
        if let Some(r) = run.take() {
            if failure.is_none_or(|e| e.0 == ENOSPC) {
                if let Err(e) = self.write_run(&r, data) {
                    failure = Some(e);
                }
            }
        }
        let mut written = pos - off;
        if failure.is_some_and(|e| e.0 != ENOSPC) {
            // An I/O error: report it, and keep nothing this write allocated
            // (an allocated block must hold what was meant for it).
            self.undo_allocs(&mut i, &mut log, 0);
            written = 0;
        } else if written == 0 {
            self.undo_allocs(&mut i, &mut log, 0);
        }
        let pos = off + written;
        if pos > old {
            self.set_file_size(&mut i, pos);
        }
        if written > 0 {
            let t = now();
            i.set_time(TimeField::Modify, t);
            i.set_time(TimeField::Change, t);
        }
        if let Err(e) = self.write_inode(&i) {
            // The inode on the device does not know the new blocks.
            self.undo_allocs(&mut i, &mut log, 0);
            return Err(e);
        }
        match failure {
            Some(e) if written == 0 => Err(e),
            _ => Ok(written as usize),
        }
    }

    /// Entries from `cookie` on, at least `want` of them unless the
    /// directory ends first. Returns the entries and whether it ended.
    pub fn readdir_batch(&mut self, dir: u32, cookie: u64, want: usize) -> R<(Vec<DirEntry>, bool)> {
        let d = self.get_dir(dir)?;
        let bs = self.g.bs as u64;
        let nblocks = self.dir_nblocks(&d);
        let mut lb = cookie / bs;
        let mut skip_below = (cookie % bs) as usize;
        let mut out = Vec::new();
        while lb < nblocks {
            let phys = self.bmap(&d, lb)?;
            if phys != 0 {
                let blk = self.read_blk(phys)?;
                for e in self.parse_dir(&blk)? {
                    if e.off < skip_below || e.ino == 0 {
                        continue;
                    }
                    let kind = match kind_of_ftype(e.ftype) {
                        Some(k) if self.g.filetype => k,
                        _ => self
                            .read_inode(e.ino)
                            .ok()
                            .and_then(|i| i.kind())
                            .unwrap_or(FileKind::Reg),
                    };
                    out.push(DirEntry {
                        ino: e.ino as u64,
                        kind,
                        name: blk[e.off + 8..e.off + 8 + e.name_len].to_vec(),
                        next: lb * bs + (e.off + e.rec_len) as u64,
                    });
                }
            }
            lb += 1;
            skip_below = 0;
            if out.len() >= want {
                return Ok((out, lb >= nblocks));
            }
        }
        Ok((out, true))
    }
}
