//! Block maps: logical to physical blocks through an inode's direct
//! pointers and its tree of indirect blocks (kept in a cache of their
//! own, [`IndirectBlockCache`]), allocating holes on the way (undone on failure), allocation
//! goals, and freeing a tree from a logical block on (truncation).

use std::collections::HashSet;

use netbsd_abi::errno::*;

use crate::fail::{err, R};
use crate::fs::{Fs, IntMap};
use crate::inode::*;
use crate::meta::MetaIo;
use crate::order::Kind;
use crate::sb::Geometry;

/// Indirect blocks kept in memory at most (written back by sync, or all
/// at once when full).
pub(crate) const IND_CACHE_MAX: usize = 1024;

/// State of one truncation's walk over indirect blocks.
pub(crate) struct TruncWalk {
    pub(crate) seen: HashSet<u32>,
    /// Blocks (indirect and data) it may still visit.
    pub(crate) budget: u64,
}

/// One indirect block's pointers, and whether the store lacks them.
struct IndBlk {
    ptrs: Vec<u32>,
    dirty: bool,
}

/// Indirect blocks in memory: read on first use, changed here, handed to
/// the next write-back epoch by [`IndirectBlockCache::flush`] (or all at
/// once when the cache is full).
#[derive(Default)]
pub(crate) struct IndirectBlockCache {
    blocks: IntMap<IndBlk>,
    /// Blocks dirtied since the last flush (may repeat).
    dirty: Vec<u32>,
}

impl IndirectBlockCache {
    /// Indirect block `b`, read through `io` if not cached.
    fn load(&mut self, g: &Geometry, b: u32, io: &mut MetaIo) -> R<&mut IndBlk> {
        if b < g.first_data_block || b >= g.blocks_count {
            return err(EIO);
        }
        if !self.blocks.contains_key(&b) {
            if self.blocks.len() >= IND_CACHE_MAX {
                self.flush(g, io);
                self.blocks.clear();
            }
            let raw = io.read_blk(b)?;
            let ptrs = raw
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            self.blocks.insert(b, IndBlk { ptrs, dirty: false });
        }
        Ok(self.blocks.get_mut(&b).unwrap())
    }

    /// Pointer `i` of indirect block `b`.
    pub(crate) fn get(&mut self, g: &Geometry, b: u32, i: usize, io: &mut MetaIo) -> R<u32> {
        Ok(self.load(g, b, io)?.ptrs[i])
    }

    /// Every pointer of indirect block `b`.
    pub(crate) fn ptrs(&mut self, g: &Geometry, b: u32, io: &mut MetaIo) -> R<Vec<u32>> {
        Ok(self.load(g, b, io)?.ptrs.clone())
    }

    /// Set pointer `i` of indirect block `b` to `v`.
    pub(crate) fn set(&mut self, g: &Geometry, b: u32, i: usize, v: u32, io: &mut MetaIo) -> R<()> {
        let e = self.load(g, b, io)?;
        e.ptrs[i] = v;
        if !e.dirty {
            e.dirty = true;
            self.dirty.push(b);
        }
        Ok(())
    }

    /// A freshly allocated, all-zero indirect block `b`.
    pub(crate) fn add_new(&mut self, g: &Geometry, b: u32, io: &mut MetaIo) {
        if self.blocks.len() >= IND_CACHE_MAX {
            self.flush(g, io);
            self.blocks.clear();
        }
        let p = (g.bs / 4) as usize;
        self.blocks.insert(
            b,
            IndBlk {
                ptrs: vec![0; p],
                dirty: true,
            },
        );
        self.dirty.push(b);
    }

    /// Block `b` was freed: forget it.
    pub(crate) fn forget(&mut self, b: u32) {
        self.blocks.remove(&b);
    }

    /// Whether no change waits for [`IndirectBlockCache::flush`].
    pub(crate) fn is_clean(&self) -> bool {
        self.dirty.is_empty()
    }

    /// Every changed indirect block into the metadata buffers, for the
    /// next epoch.
    pub(crate) fn flush(&mut self, g: &Geometry, io: &mut MetaIo) {
        if self.dirty.is_empty() {
            return;
        }
        let bs = g.bs as u64;
        let mut list = std::mem::take(&mut self.dirty);
        list.sort_unstable();
        list.dedup();
        let mut raw = Vec::with_capacity(bs as usize);
        for &b in list.iter() {
            let Some(e) = self.blocks.get_mut(&b) else {
                continue;
            };
            if !e.dirty {
                continue;
            }
            raw.clear();
            for p in &e.ptrs {
                raw.extend_from_slice(&p.to_le_bytes());
            }
            e.dirty = false;
            io.bufs_mut().put(b as u64 * bs, &raw, Kind::Other);
        }
    }
}

/// Where a block pointer lives, for undoing an allocation.
pub(crate) enum PtrLoc {
    Inode(usize),
    Ind(u32, usize),
}

impl Fs {
    pub(crate) fn ptrs(&self) -> u64 {
        (self.g().bs / 4) as u64
    }

    /// The chain of indices leading to logical block `l`.
    pub(crate) fn path(&self, l: u64) -> R<([usize; 4], usize)> {
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
            return Ok((
                [
                    14,
                    (l / (p * p)) as usize,
                    ((l / p) % p) as usize,
                    (l % p) as usize,
                ],
                4,
            ));
        }
        err(EFBIG)
    }

    /// Physical block of logical block `l` (0 for a hole).
    pub(crate) fn bmap(&mut self, i: &Inode, l: u64) -> R<u32> {
        let (p, n) = self.path(l)?;
        let mut b = self.check_ptr(i.num, i.block(p[0]))?;
        for &idx in &p[1..n] {
            if b == 0 {
                return Ok(0);
            }
            let next = self.ind_get(b, idx)?;
            b = self.check_ptr(i.num, next)?;
        }
        Ok(b)
    }

    /// A block pointer read from the image (an inode's or an indirect
    /// block's) before it is followed, read or written: 0 (a hole) or a
    /// block of the file system's data area. Anything else is `EIO`, with
    /// a log line naming the inode: a corrupt image never makes us touch
    /// a byte outside the file system.
    pub(crate) fn check_ptr(&self, ino: u32, b: u32) -> R<u32> {
        if b != 0 && (b < self.g().first_data_block || b >= self.g().blocks_count) {
            tracing::warn!(
                "ext2fs: inode {ino}: block pointer {b} lies outside the file system \
                 (blocks {}..{}): EIO",
                self.g().first_data_block,
                self.g().blocks_count
            );
            return err(EIO);
        }
        Ok(b)
    }

    pub(crate) fn add_blocks(&self, i: &mut Inode) -> R<()> {
        let n = i.blocks512() as u64 + (self.g().bs / 512) as u64;
        if n > u32::MAX as u64 {
            return err(EFBIG);
        }
        i.set_blocks512(n as u32);
        Ok(())
    }

    pub(crate) fn sub_blocks(&self, i: &mut Inode) {
        i.set_blocks512(i.blocks512().saturating_sub(self.g().bs / 512));
    }

    /// Physical block of logical block `l`, allocating it (and any
    /// indirect blocks on the way) near `goal` if it is a hole. Returns
    /// whether the data block is new (its contents are garbage). On
    /// failure nothing stays allocated.
    /// `log` records every block allocated (for [`Fs::undo_allocs`]).
    pub(crate) fn bmap_alloc(
        &mut self,
        i: &mut Inode,
        l: u64,
        goal: u32,
        log: &mut Vec<(PtrLoc, u32)>,
    ) -> R<(u32, bool)> {
        let (p, n) = self.path(l)?;
        let start = log.len();
        let r = self.bmap_alloc_inner(i, &p[..n], goal, log);
        if r.is_err() {
            self.undo_allocs(i, log, start);
        }
        r
    }

    /// Unhook and free the blocks allocated in `log` from entry `from` on.
    pub(crate) fn undo_allocs(&mut self, i: &mut Inode, log: &mut Vec<(PtrLoc, u32)>, from: usize) {
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

    pub(crate) fn bmap_alloc_inner(
        &mut self,
        i: &mut Inode,
        p: &[usize],
        goal: u32,
        made: &mut Vec<(PtrLoc, u32)>,
    ) -> R<(u32, bool)> {
        let n = p.len();
        let mut b = self.check_ptr(i.num, i.block(p[0]))?;
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
            self.ind_new(b);
            goal = b.saturating_add(1);
        } else if n == 1 {
            return Ok((b, false));
        }
        let mut parent = b;
        for (level, &idx) in p.iter().enumerate().skip(1) {
            let last = level == n - 1;
            let c = self.ind_get(parent, idx)?;
            let c = self.check_ptr(i.num, c)?;
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
            self.ind_new(c);
            goal = c.saturating_add(1);
            parent = c;
        }
        unreachable!()
    }

    /// Free every block of logical index `keep` and beyond (and indirect
    /// blocks left covering nothing).
    pub(crate) fn truncate_blocks(&mut self, i: &mut Inode, keep: u64) -> R<()> {
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
        let mut walk = TruncWalk {
            seen: HashSet::new(),
            budget: i.blocks512() as u64 / (self.g().bs / 512) as u64 + 4,
        };
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
    pub(crate) fn trunc_ind(
        &mut self,
        i: &mut Inode,
        b: u32,
        level: u32,
        base: u64,
        keep: u64,
        walk: &mut TruncWalk,
    ) -> R<bool> {
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
        let ptrs = self.ind_ptrs(b)?;
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

    /// Allocation goal for logical block `lb`: after the previous block,
    /// else the start of the inode's group.
    pub(crate) fn goal_for(&mut self, i: &Inode, lb: u64) -> R<u32> {
        if lb > 0 {
            let prev = self.bmap(i, lb - 1)?;
            if prev != 0 {
                return Ok(prev + 1);
            }
        }
        Ok(self.g().group_start((i.num - 1) / self.g().ipg))
    }
}
