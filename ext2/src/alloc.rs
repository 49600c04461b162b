//! Allocation: the groups' block and inode bitmaps (loaded on first use,
//! written back by sync), allocating and freeing blocks and inodes, and
//! where a new directory goes.

use netbsd_abi::errno::*;

use crate::fs::{err, Fs, R, ROOT_INO};

pub(crate) fn find_zero(d: &[u8], start: u32, n: u32) -> Option<u32> {
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

pub(crate) struct Bitmap {
    pub(crate) data: Vec<u8>,
    pub(crate) dirty: bool,
    /// No bit below this one is free (a search starts here).
    pub(crate) hint: u32,
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

impl Fs {
    pub(crate) fn bbm(&mut self, gi: usize) -> R<&mut Bitmap> {
        if self.bbm[gi].is_none() {
            let data = self.read_blk(self.gds[gi].block_bitmap)?;
            self.bbm[gi] = Some(Bitmap::new(data));
        }
        Ok(self.bbm[gi].as_mut().unwrap())
    }

    pub(crate) fn ibm(&mut self, gi: usize) -> R<&mut Bitmap> {
        if self.ibm[gi].is_none() {
            let data = self.read_blk(self.gds[gi].inode_bitmap)?;
            self.ibm[gi] = Some(Bitmap::new(data));
        }
        Ok(self.ibm[gi].as_mut().unwrap())
    }

    /// Allocate one block, the first free one at or after `goal`.
    pub(crate) fn alloc_block(&mut self, goal: u32) -> R<u32> {
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
                let b = self.g.group_start(gi) + bit;
                self.meta.allocated_block(b);
                return Ok(b);
            }
        }
        err(ENOSPC)
    }

    pub(crate) fn free_block(&mut self, b: u32) -> R<()> {
        self.ind.remove(&b);
        if b < self.g.first_data_block || b >= self.g.blocks_count {
            return err(EIO);
        }
        self.meta.forget(b as u64 * self.g.bs as u64);
        if !self.meta.free_block(b) {
            // On the device something may still point to it: reusable
            // once this epoch is written (`finish_epoch`).
            return Ok(());
        }
        self.clear_block_bit(b)
    }

    /// Mark block `b` free in its bitmap and the counts.
    pub(crate) fn clear_block_bit(&mut self, b: u32) -> R<()> {
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

    pub(crate) fn pick_dir_group(&self, parent: u32) -> u32 {
        let ng = self.g.ngroups;
        let pg = (parent - 1) / self.g.ipg;
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

    pub(crate) fn alloc_inode(&mut self, parent: u32, dir: bool) -> R<u32> {
        if self.free_inodes == 0 {
            return err(ENOSPC);
        }
        let ng = self.g.ngroups;
        let ipg = self.g.ipg;
        let start = if dir {
            self.pick_dir_group(parent)
        } else {
            (parent - 1) / ipg
        };
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
                let ino = gi * ipg + bit + 1;
                self.meta.allocated_inode(ino);
                return Ok(ino);
            }
        }
        err(ENOSPC)
    }

    pub(crate) fn free_inode_bit(&mut self, ino: u32, dir: bool) -> R<()> {
        if !self.meta.free_inode(ino, dir) {
            // As `free_block`: reusable once this epoch is written.
            return Ok(());
        }
        self.clear_inode_bit(ino, dir)
    }

    /// Mark inode `ino` free in its bitmap and the counts.
    pub(crate) fn clear_inode_bit(&mut self, ino: u32, dir: bool) -> R<()> {
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

    /// Whether every block in `[from, to)` is a free data block (free in
    /// its group's bitmap, inside the file system).
    pub(crate) fn all_free(&mut self, from: u32, to: u32) -> R<bool> {
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
}
