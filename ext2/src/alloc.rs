//! Allocation: [`Groups`], the group descriptors with the groups' block
//! and inode bitmaps (loaded on first use, written back by an epoch) and
//! the free counts; allocating and freeing blocks and inodes, and where a
//! new directory goes.

use netbsd_abi::errno::*;

use crate::error::MountError;
use crate::fail::{err, R};
use crate::fs::ROOT_INO;
use crate::meta::MetaIo;
use crate::order::Kind;
use crate::sb::{le16, le32, put16, Geometry};

fn find_zero(d: &[u8], start: u32, n: u32) -> Option<u32> {
    let mut i = start;
    while i < n {
        let byte = d[(i / 8) as usize];
        if i.is_multiple_of(8) && byte == 0xff {
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

/// One group's block or inode bitmap.
struct Bitmap {
    data: Vec<u8>,
    dirty: bool,
    /// No bit below this one is free (a search starts here).
    hint: u32,
}

impl Bitmap {
    fn new(data: Vec<u8>) -> Bitmap {
        Bitmap {
            data,
            dirty: false,
            hint: 0,
        }
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

/// One group descriptor, as far as this component reads and keeps it.
struct Gd {
    block_bitmap: u32,
    inode_bitmap: u32,
    inode_table: u32,
    free_blocks: u32,
    free_inodes: u32,
    used_dirs: u32,
}

/// The block groups: their descriptors (as read, and parsed), bitmaps and
/// free counts. Every change of a bitmap or count stays here until
/// [`Groups::stage`] hands it to the next write-back epoch.
pub(crate) struct Groups {
    /// The descriptor table as read (the counts are written into it).
    raw: Vec<u8>,
    gds: Vec<Gd>,
    /// A descriptor's counts changed since the last [`Groups::stage`].
    dirty: bool,
    bbm: Vec<Option<Bitmap>>,
    ibm: Vec<Option<Bitmap>>,
    free_blocks: u32,
    free_inodes: u32,
}

impl Groups {
    /// Parse and check the descriptor table `raw` of a file system of
    /// geometry `g`.
    pub(crate) fn load(g: &Geometry, raw: Vec<u8>) -> Result<Groups, MountError> {
        let bs = g.bs as u64;
        let itb = (g.ipg as u64 * g.inode_size as u64).div_ceil(bs);
        let mut gds = Vec::with_capacity(g.ngroups as usize);
        let (mut fb, mut fi) = (0u64, 0u64);
        for i in 0..g.ngroups as usize {
            let o = i * 32;
            let d = Gd {
                block_bitmap: le32(&raw, o),
                inode_bitmap: le32(&raw, o + 4),
                inode_table: le32(&raw, o + 8),
                free_blocks: le16(&raw, o + 12) as u32,
                free_inodes: le16(&raw, o + 14) as u32,
                used_dirs: le16(&raw, o + 16) as u32,
            };
            let inside = |b: u32| b >= g.first_data_block && b < g.blocks_count;
            if !inside(d.block_bitmap)
                || !inside(d.inode_bitmap)
                || !inside(d.inode_table)
                || d.inode_table as u64 + itb > g.blocks_count as u64
                || d.free_inodes > g.ipg
                || d.free_blocks > g.blocks_in_group(i as u32)
            {
                return Err(MountError::CorruptGroupDescriptor(i));
            }
            fb += d.free_blocks as u64;
            fi += d.free_inodes as u64;
            gds.push(d);
        }
        let n = g.ngroups as usize;
        Ok(Groups {
            raw,
            gds,
            dirty: false,
            bbm: (0..n).map(|_| None).collect(),
            ibm: (0..n).map(|_| None).collect(),
            free_blocks: fb as u32,
            free_inodes: fi as u32,
        })
    }

    /// Free blocks (those freed in the current epoch not counted yet).
    pub(crate) fn free_blocks(&self) -> u32 {
        self.free_blocks
    }

    /// Free inodes (as [`Groups::free_blocks`]).
    pub(crate) fn free_inodes(&self) -> u32 {
        self.free_inodes
    }

    /// Byte offset of inode `ino` in its group's inode table; `None` for
    /// a number the file system does not have.
    pub(crate) fn inode_at(&self, g: &Geometry, ino: u32) -> Option<u64> {
        if ino == 0 || ino > g.inodes_count {
            return None;
        }
        let gi = ((ino - 1) / g.ipg) as usize;
        let idx = ((ino - 1) % g.ipg) as u64;
        Some(self.gds.get(gi)?.inode_table as u64 * g.bs as u64 + idx * g.inode_size as u64)
    }

    fn bbm(&mut self, gi: usize, io: &MetaIo) -> R<&mut Bitmap> {
        if self.bbm[gi].is_none() {
            let data = io.read_blk(self.gds[gi].block_bitmap)?;
            self.bbm[gi] = Some(Bitmap::new(data));
        }
        Ok(self.bbm[gi].as_mut().unwrap())
    }

    fn ibm(&mut self, gi: usize, io: &MetaIo) -> R<&mut Bitmap> {
        if self.ibm[gi].is_none() {
            let data = io.read_blk(self.gds[gi].inode_bitmap)?;
            self.ibm[gi] = Some(Bitmap::new(data));
        }
        Ok(self.ibm[gi].as_mut().unwrap())
    }

    /// Allocate one block, the first free one at or after `goal`.
    pub(crate) fn alloc_block(&mut self, g: &Geometry, goal: u32, io: &mut MetaIo) -> R<u32> {
        if self.free_blocks == 0 {
            return err(ENOSPC);
        }
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
            let n = g.blocks_in_group(gi);
            let bm = self.bbm(gi as usize, io)?;
            if let Some(bit) = bm.find_free(start, n) {
                bm.set(bit);
                self.gds[gi as usize].free_blocks -= 1;
                self.free_blocks -= 1;
                self.dirty = true;
                let b = g.group_start(gi) + bit;
                io.bufs_mut().allocated_block(b);
                return Ok(b);
            }
        }
        err(ENOSPC)
    }

    /// Free block `b`: at once if it was allocated during this epoch,
    /// else once the epoch is written (see [`crate::order`]).
    pub(crate) fn free_block(&mut self, g: &Geometry, b: u32, io: &mut MetaIo) -> R<()> {
        if b < g.first_data_block || b >= g.blocks_count {
            return err(EIO);
        }
        io.bufs_mut().forget(b as u64 * g.bs as u64);
        if !io.bufs_mut().free_block(b) {
            // On the device something may still point to it: reusable
            // once this epoch is written (`Fs::finish_epoch`).
            return Ok(());
        }
        self.clear_block_bit(g, b, io)
    }

    /// Mark block `b` free in its bitmap and the counts.
    pub(crate) fn clear_block_bit(&mut self, g: &Geometry, b: u32, io: &MetaIo) -> R<()> {
        if b < g.first_data_block || b >= g.blocks_count {
            return err(EIO);
        }
        let rel = b - g.first_data_block;
        let gi = (rel / g.bpg) as usize;
        let bit = rel % g.bpg;
        if self.bbm(gi, io)?.clear(bit) {
            self.gds[gi].free_blocks += 1;
            self.free_blocks += 1;
            self.dirty = true;
        }
        Ok(())
    }

    fn pick_dir_group(&self, g: &Geometry, parent: u32) -> u32 {
        let ng = g.ngroups;
        let pg = (parent - 1) / g.ipg;
        let avg_fi = self.free_inodes / ng;
        let avg_fb = self.free_blocks / ng;
        let p = &self.gds[pg as usize];
        if parent != ROOT_INO
            && p.free_inodes > 0
            && p.free_inodes >= avg_fi / 2
            && p.free_blocks >= avg_fb / 2
        {
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

    /// Allocate an inode for a new node in directory `parent`: a
    /// directory (`dir`) in a group [`Groups::pick_dir_group`] chooses,
    /// anything else in its parent's group if it can.
    pub(crate) fn alloc_inode(
        &mut self,
        g: &Geometry,
        parent: u32,
        dir: bool,
        io: &mut MetaIo,
    ) -> R<u32> {
        if self.free_inodes == 0 {
            return err(ENOSPC);
        }
        let ng = g.ngroups;
        let ipg = g.ipg;
        let start = if dir {
            self.pick_dir_group(g, parent)
        } else {
            (parent - 1) / ipg
        };
        for i in 0..ng {
            let gi = (start + i) % ng;
            if self.gds[gi as usize].free_inodes == 0 {
                continue;
            }
            let first = (g.first_ino - 1).saturating_sub(gi * ipg);
            let bm = self.ibm(gi as usize, io)?;
            if let Some(bit) = bm.find_free(first, ipg) {
                bm.set(bit);
                let d = &mut self.gds[gi as usize];
                d.free_inodes -= 1;
                if dir {
                    d.used_dirs += 1;
                }
                self.free_inodes -= 1;
                self.dirty = true;
                let ino = gi * ipg + bit + 1;
                io.bufs_mut().allocated_inode(ino);
                return Ok(ino);
            }
        }
        err(ENOSPC)
    }

    /// Free inode `ino`'s bit (`dir`: it was a directory), as
    /// [`Groups::free_block`] frees a block.
    pub(crate) fn free_inode_bit(
        &mut self,
        g: &Geometry,
        ino: u32,
        dir: bool,
        io: &mut MetaIo,
    ) -> R<()> {
        if !io.bufs_mut().free_inode(ino, dir) {
            // As `free_block`: reusable once this epoch is written.
            return Ok(());
        }
        self.clear_inode_bit(g, ino, dir, io)
    }

    /// Mark inode `ino` free in its bitmap and the counts.
    pub(crate) fn clear_inode_bit(
        &mut self,
        g: &Geometry,
        ino: u32,
        dir: bool,
        io: &MetaIo,
    ) -> R<()> {
        let gi = ((ino - 1) / g.ipg) as usize;
        let bit = (ino - 1) % g.ipg;
        if self.ibm(gi, io)?.clear(bit) {
            let d = &mut self.gds[gi];
            d.free_inodes += 1;
            if dir {
                d.used_dirs = d.used_dirs.saturating_sub(1);
            }
            self.free_inodes += 1;
            self.dirty = true;
        }
        Ok(())
    }

    /// Whether every block in `[from, to)` is a free data block (free in
    /// its group's bitmap, inside the file system).
    pub(crate) fn all_free(&mut self, g: &Geometry, from: u32, to: u32, io: &MetaIo) -> R<bool> {
        if from < g.first_data_block || to > g.blocks_count {
            return Ok(false);
        }
        for b in from..to {
            let rel = b - g.first_data_block;
            let gi = (rel / g.bpg) as usize;
            let bit = rel % g.bpg;
            if self.gds[gi].free_blocks == 0 {
                return Ok(false);
            }
            let bm = self.bbm(gi, io)?;
            if bm.data[(bit / 8) as usize] & (1 << (bit % 8)) != 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// No bitmap or descriptor change is waiting for [`Groups::stage`].
    pub(crate) fn is_clean(&self) -> bool {
        !self.dirty && !self.bbm.iter().chain(&self.ibm).flatten().any(|b| b.dirty)
    }

    /// The changed bitmaps and descriptor table into the metadata buffers,
    /// for an epoch to take.
    pub(crate) fn stage(&mut self, g: &Geometry, io: &mut MetaIo) {
        let bs = g.bs as u64;
        for gi in 0..self.gds.len() {
            if let Some(b) = self.bbm[gi].as_mut().filter(|b| b.dirty) {
                io.bufs_mut().put(
                    self.gds[gi].block_bitmap as u64 * bs,
                    &b.data,
                    Kind::Summary,
                );
                b.dirty = false;
            }
            if let Some(b) = self.ibm[gi].as_mut().filter(|b| b.dirty) {
                io.bufs_mut().put(
                    self.gds[gi].inode_bitmap as u64 * bs,
                    &b.data,
                    Kind::Summary,
                );
                b.dirty = false;
            }
        }
        if self.dirty {
            for (i, d) in self.gds.iter().enumerate() {
                let o = i * 32;
                put16(&mut self.raw, o + 12, d.free_blocks as u16);
                put16(&mut self.raw, o + 14, d.free_inodes as u16);
                put16(&mut self.raw, o + 16, d.used_dirs as u16);
            }
            io.bufs_mut()
                .put(g.gdt_block as u64 * bs, &self.raw, Kind::Summary);
            self.dirty = false;
        }
    }
}
