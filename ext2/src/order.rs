//! Metadata write-back in an order that a crash cannot make fatal.
//!
//! Changed metadata blocks (directories, indirect blocks, inode table
//! blocks, bitmaps, group descriptors, the superblock) stay here, in
//! memory, until a write-back *epoch* takes them all at once under the
//! file system lock and writes them to the device without it, in phases
//! (see `docs/syncer.md` for why each step comes where it does):
//!
//! 0. the superblock (it says "not clean" before anything else changes);
//! 1. blocks allocated during the epoch (new directory, indirect, symlink
//!    and xattr blocks): nothing on the device points to them yet;
//! 2. inode table blocks as they are *without* the inodes allocated
//!    during the epoch, and the existing indirect and xattr blocks: an
//!    unlinked inode is freed before its name goes;
//! 3. directory blocks that only gained entries, then 4. the other
//!    directory blocks: a renamed file is found under its new name before
//!    the old one goes, and a new name may point to an inode not yet
//!    written (e2fsck clears such a name without asking);
//! 5. the inode table blocks again, with the new inodes;
//! 6. bitmaps and group descriptors (e2fsck recomputes them).
//!
//! Every intermediate state is one `e2fsck -p` repairs on its own, with
//! one rule more: a block or inode freed during an epoch is not reused
//! until that epoch is on the device (a freed block reused at once could
//! end up claimed by two inodes on the device). File data does not go
//! through here: it is written back by the cache, and at worst a crash
//! leaves a recently written file with old bytes.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use vfs_cache::Store;

use netbsd_abi::Errno;

/// What a metadata block holds: decides its phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The primary superblock (1024 bytes at byte 1024).
    Super,
    /// A directory block.
    Dir,
    /// An indirect block, a symlink's target block, an xattr block.
    Other,
    /// An inode table block.
    Itable,
    /// A block or inode bitmap, or the group descriptor table.
    Summary,
}

struct Buf {
    kind: Kind,
    data: Arc<Vec<u8>>,
}

/// The metadata changed since the last epoch, and what the epoch must
/// know about it.
#[derive(Default)]
pub(crate) struct MetaBufs {
    /// Changed blocks by byte offset.
    dirty: BTreeMap<u64, Buf>,
    /// Blocks an epoch in progress is writing: still read from here, so
    /// that a reader never sees the device's older bytes meanwhile.
    writing: BTreeMap<u64, Arc<Vec<u8>>>,
    /// Blocks and inodes allocated during this epoch.
    new_blocks: HashSet<u32>,
    new_inodes: HashSet<u32>,
    /// Directory blocks that gained, or lost, an entry during this epoch.
    gained: HashSet<u32>,
    lost: HashSet<u32>,
    /// Blocks and inodes (with "was a directory") freed during this epoch,
    /// still marked in use in the bitmaps until it is written.
    pending_blocks: Vec<u32>,
    pending_inodes: Vec<(u32, bool)>,
    /// The first change of this epoch, and the first directory change.
    since: Option<Instant>,
    dir_since: Option<Instant>,
}

/// One epoch's blocks, in phase order, and what to release once written.
pub(crate) struct Epoch {
    phases: [Vec<(u64, Arc<Vec<u8>>)>; 7],
    pending_blocks: Vec<u32>,
    pending_inodes: Vec<(u32, bool)>,
    new_blocks: HashSet<u32>,
    new_inodes: HashSet<u32>,
    kinds: Vec<(u64, Kind)>,
}

impl MetaBufs {
    /// Copy the bytes at `off` from a changed block that holds all of
    /// them; false if none does.
    pub(crate) fn read(&self, off: u64, buf: &mut [u8]) -> bool {
        let end = off + buf.len() as u64;
        let mut hit = |k: u64, d: &[u8]| -> bool {
            if k <= off && end <= k + d.len() as u64 {
                let at = (off - k) as usize;
                buf.copy_from_slice(&d[at..at + buf.len()]);
                true
            } else {
                false
            }
        };
        if let Some((&k, b)) = self.dirty.range(..=off).next_back() {
            if hit(k, &b.data) {
                return true;
            }
        }
        if let Some((&k, d)) = self.writing.range(..=off).next_back() {
            if hit(k, d) {
                return true;
            }
        }
        false
    }

    /// Whether the block at `off` is held here (changed, or being written).
    pub(crate) fn holds(&self, off: u64) -> bool {
        self.dirty.contains_key(&off) || self.writing.contains_key(&off)
    }

    /// Record the new contents of the block at `off`.
    pub(crate) fn put(&mut self, off: u64, data: &[u8], kind: Kind) {
        match self.dirty.get_mut(&off) {
            Some(b) => {
                let d = Arc::make_mut(&mut b.data);
                d.clear();
                d.extend_from_slice(data);
                b.kind = kind;
            }
            None => {
                self.dirty.insert(
                    off,
                    Buf {
                        kind,
                        data: Arc::new(data.to_vec()),
                    },
                );
            }
        }
        self.touch();
    }

    /// Change `bytes` at `at` inside the block at `off`, which is held
    /// here already (see [`MetaBufs::holds`] and [`MetaBufs::put`]).
    pub(crate) fn patch(&mut self, off: u64, at: usize, bytes: &[u8]) -> bool {
        let Some(b) = self.dirty.get_mut(&off) else {
            return false;
        };
        let d = Arc::make_mut(&mut b.data);
        match d.get_mut(at..at + bytes.len()) {
            Some(dst) => {
                dst.copy_from_slice(bytes);
                true
            }
            None => false,
        }
    }

    /// The block at `off` was freed: its last contents need not be
    /// written.
    pub(crate) fn forget(&mut self, off: u64) {
        self.dirty.remove(&off);
    }

    /// A change began: start the epoch's clock.
    pub(crate) fn touch(&mut self) -> bool {
        let first = self.since.is_none();
        if first {
            self.since = Some(Instant::now());
        }
        first
    }

    pub(crate) fn touch_dir(&mut self, blk: u32, gained: bool) {
        if gained {
            self.gained.insert(blk);
        } else {
            self.lost.insert(blk);
        }
        if self.dir_since.is_none() {
            self.dir_since = Some(Instant::now());
        }
        self.touch();
    }

    /// When the epoch's first change, and its first directory change,
    /// were made (`None`: nothing to write).
    pub(crate) fn since(&self) -> (Option<Instant>, Option<Instant>) {
        (self.since, self.dir_since)
    }

    pub(crate) fn allocated_block(&mut self, b: u32) {
        self.new_blocks.insert(b);
    }

    pub(crate) fn allocated_inode(&mut self, ino: u32) {
        self.new_inodes.insert(ino);
    }

    /// A block is being freed: true if it may be reused at once (it was
    /// allocated during this epoch, so nothing on the device points to
    /// it); otherwise it waits for the end of the epoch.
    pub(crate) fn free_block(&mut self, b: u32) -> bool {
        if self.new_blocks.remove(&b) {
            return true;
        }
        self.pending_blocks.push(b);
        self.touch();
        false
    }

    /// [`MetaBufs::free_block`] for an inode.
    pub(crate) fn free_inode(&mut self, ino: u32, dir: bool) -> bool {
        if self.new_inodes.remove(&ino) {
            return true;
        }
        self.pending_inodes.push((ino, dir));
        self.touch();
        false
    }

    /// Blocks and inodes freed but not yet reusable.
    pub(crate) fn pending(&self) -> (usize, usize) {
        (self.pending_blocks.len(), self.pending_inodes.len())
    }

    /// Nothing changed since the last epoch.
    pub(crate) fn is_clean(&self) -> bool {
        self.since.is_none() && self.dirty.is_empty()
    }

    /// Take everything changed so far as an epoch. `block_size`,
    /// `inode_size` and `inode_at` (an inode's byte offset) place the new
    /// inodes in their inode table blocks.
    pub(crate) fn take(
        &mut self,
        block_size: u64,
        inode_size: usize,
        inode_at: impl Fn(u32) -> Option<u64>,
    ) -> Epoch {
        let dirty = std::mem::take(&mut self.dirty);
        let mut phases: [Vec<(u64, Arc<Vec<u8>>)>; 7] = Default::default();
        // Inode slots (block offset → byte ranges in it) of new inodes.
        let mut new_slots: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        for &ino in &self.new_inodes {
            if let Some(at) = inode_at(ino) {
                let blk_off = at - at % block_size;
                new_slots
                    .entry(blk_off)
                    .or_default()
                    .push((at - blk_off) as usize);
            }
        }
        let mut kinds = Vec::with_capacity(dirty.len());
        for (&off, b) in &dirty {
            kinds.push((off, b.kind));
            let blk = (off / block_size) as u32;
            let new = self.new_blocks.contains(&blk);
            let phase = match b.kind {
                Kind::Super => 0,
                Kind::Dir if new => 1,
                Kind::Dir if self.gained.contains(&blk) && !self.lost.contains(&blk) => 3,
                Kind::Dir => 4,
                Kind::Other if new => 1,
                Kind::Other => 2,
                Kind::Summary => 6,
                Kind::Itable => match new_slots.get(&off) {
                    None => 2,
                    Some(slots) => {
                        // Without the new inodes first (zeros: an unused
                        // inode), then whole.
                        let mut pre = (*b.data).clone();
                        for &at in slots {
                            if let Some(s) = pre.get_mut(at..at + inode_size) {
                                s.fill(0);
                            }
                        }
                        phases[2].push((off, Arc::new(pre)));
                        5
                    }
                },
            };
            phases[phase].push((off, b.data.clone()));
        }
        for (off, b) in dirty {
            self.writing.insert(off, b.data);
        }
        for p in phases.iter_mut() {
            p.sort_by_key(|(off, _)| *off);
        }
        self.gained.clear();
        self.lost.clear();
        self.since = None;
        self.dir_since = None;
        Epoch {
            phases,
            pending_blocks: std::mem::take(&mut self.pending_blocks),
            pending_inodes: std::mem::take(&mut self.pending_inodes),
            new_blocks: std::mem::take(&mut self.new_blocks),
            new_inodes: std::mem::take(&mut self.new_inodes),
            kinds,
        }
    }

    /// The epoch is on the device (`ok`) or failed: stop reading its
    /// blocks from here. A failed epoch's blocks are changed again (unless
    /// changed since) and its frees and allocations belong to the next.
    pub(crate) fn finish(&mut self, ep: &mut Epoch, ok: bool) {
        for (off, kind) in &ep.kinds {
            let Some(data) = self.writing.remove(off) else {
                continue;
            };
            if !ok {
                self.dirty.entry(*off).or_insert(Buf { kind: *kind, data });
            }
        }
        if !ok {
            self.pending_blocks.append(&mut ep.pending_blocks);
            self.pending_inodes.append(&mut ep.pending_inodes);
            self.new_blocks.extend(ep.new_blocks.drain());
            self.new_inodes.extend(ep.new_inodes.drain());
            self.touch();
        }
    }
}

impl Epoch {
    /// Write the epoch's blocks in phase order, each one to the device
    /// before the next; stops at the first error.
    pub(crate) fn write(&self, store: &dyn Store) -> Result<(), Errno> {
        for phase in &self.phases {
            for (off, data) in phase {
                store.write_through(*off, data)?;
            }
        }
        Ok(())
    }

    /// Once written: the blocks and inodes (with "was a directory") it
    /// freed, reusable now.
    pub(crate) fn take_freed(&mut self) -> (Vec<u32>, Vec<(u32, bool)>) {
        (
            std::mem::take(&mut self.pending_blocks),
            std::mem::take(&mut self.pending_inodes),
        )
    }

    /// Whether there is nothing to write.
    pub(crate) fn is_empty(&self) -> bool {
        self.phases.iter().all(Vec::is_empty)
    }
}
