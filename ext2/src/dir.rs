//! Directories: parsing and writing directory blocks, the in-memory name
//! index of recently used directories ([`DirCache`]), and finding, inserting, removing
//! and retargeting entries.

use std::collections::HashMap;

use netbsd_abi::errno::*;
use netbsd_abi::stat::Timespec;
use netbsd_abi::Errno;

use crate::fail::{err, R};
use crate::fs::Fs;
use crate::inode::*;
use crate::order::Kind;
use crate::sb::*;

/// Directories indexed in memory at most, and names in all of them.
pub(crate) const DCACHE_MAX_DIRS: usize = 64;

pub(crate) const DCACHE_MAX_ENTRIES: usize = 1 << 20;

pub(crate) fn rec_size(name_len: usize) -> usize {
    (8 + name_len + 3) & !3
}

pub(crate) fn check_name(name: &[u8]) -> R<()> {
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

/// One parsed directory entry.
pub(crate) struct Ent {
    pub(crate) off: usize,
    pub(crate) ino: u32,
    pub(crate) rec_len: usize,
    pub(crate) name_len: usize,
    pub(crate) ftype: u8,
}

/// A name found in a directory.
pub(crate) struct Found {
    pub(crate) dir: u32,
    pub(crate) lb: u32,
    pub(crate) phys: u32,
    pub(crate) off: usize,
    pub(crate) ino: u32,
}

/// Where a new entry will go: the entry at `off` of block `phys`, whose
/// record is `rec_len` long and whose own name takes `used` bytes (0 if it
/// is an empty slot).
pub(crate) struct Slot {
    pub(crate) dir: u32,
    pub(crate) lb: u32,
    pub(crate) phys: u32,
    pub(crate) off: usize,
    pub(crate) rec_len: usize,
    pub(crate) used: usize,
    /// The block as read (taken by `dir_insert`), and the largest record
    /// that fits in its other entries.
    pub(crate) blk: Option<Vec<u8>>,
    pub(crate) other_space: usize,
}

/// The in-memory index of a directory: every name with its logical
/// block, offset and inode; per block, the largest record that fits.
#[derive(Default)]
pub(crate) struct DirIdx {
    names: HashMap<Vec<u8>, (u32, u16, u32)>,
    space: Vec<u16>,
}

/// The name index of recently used directories ([`DirIdx`] each), kept
/// in step with every change a directory block gets; forgotten (to be
/// rebuilt from the blocks) whenever the two may disagree.
#[derive(Default)]
pub(crate) struct DirCache {
    dirs: HashMap<u32, DirIdx>,
}

impl DirCache {
    /// Whether directory `d` is indexed.
    pub(crate) fn contains(&self, d: u32) -> bool {
        self.dirs.contains_key(&d)
    }

    /// Before indexing one more directory: when too many directories or
    /// names are indexed, forget about half of them (arbitrary ones).
    pub(crate) fn make_room(&mut self) {
        let total: usize = self.dirs.values().map(|x| x.names.len()).sum();
        if self.dirs.len() >= DCACHE_MAX_DIRS || total > DCACHE_MAX_ENTRIES {
            let victims: Vec<u32> = self.dirs.keys().copied().step_by(2).collect();
            for v in victims {
                self.dirs.remove(&v);
            }
        }
    }

    /// Keep `idx` as directory `d`'s index.
    pub(crate) fn insert(&mut self, d: u32, idx: DirIdx) {
        self.dirs.insert(d, idx);
    }

    /// Forget directory `d`'s index.
    pub(crate) fn forget(&mut self, d: u32) {
        self.dirs.remove(&d);
    }

    /// `name` in directory `d`: its logical block, offset and inode.
    pub(crate) fn lookup(&self, d: u32, name: &[u8]) -> Option<(u32, u16, u32)> {
        self.dirs.get(&d)?.names.get(name).copied()
    }

    /// Whether directory `d` has `name`.
    pub(crate) fn has_name(&self, d: u32, name: &[u8]) -> bool {
        self.dirs
            .get(&d)
            .is_some_and(|i| i.names.contains_key(name))
    }

    /// The first logical block of directory `d` with room for a record of
    /// `need` bytes.
    pub(crate) fn block_with_room(&self, d: u32, need: usize) -> Option<usize> {
        self.dirs
            .get(&d)?
            .space
            .iter()
            .position(|&s| s as usize >= need)
    }

    /// Directory `d` grew by a block with room for `space` bytes.
    pub(crate) fn grew(&mut self, d: u32, space: u16) {
        if let Some(idx) = self.dirs.get_mut(&d) {
            idx.space.push(space);
        }
    }

    /// `name` was added to directory `d` at `off` in logical block `lb`,
    /// naming `ino`; the block has room for `space` bytes now.
    pub(crate) fn added(&mut self, d: u32, name: &[u8], lb: u32, off: u16, ino: u32, space: u16) {
        if let Some(idx) = self.dirs.get_mut(&d) {
            idx.names.insert(name.to_vec(), (lb, off, ino));
            idx.space[lb as usize] = space;
        }
    }

    /// `name` was removed from logical block `lb` of directory `d`, which
    /// has room for `space` bytes now.
    pub(crate) fn removed(&mut self, d: u32, name: &[u8], lb: u32, space: u16) {
        if let Some(idx) = self.dirs.get_mut(&d) {
            idx.names.remove(name);
            idx.space[lb as usize] = space;
        }
    }

    /// `name` in directory `d` names `ino` now.
    pub(crate) fn retargeted(&mut self, d: u32, name: &[u8], ino: u32) {
        if let Some(v) = self
            .dirs
            .get_mut(&d)
            .and_then(|idx| idx.names.get_mut(name))
        {
            v.2 = ino;
        }
    }

    /// Whether directory `d` (indexed) has no name but "." and "..".
    pub(crate) fn only_dots(&self, d: u32) -> bool {
        self.dirs
            .get(&d)
            .is_none_or(|i| i.names.keys().all(|n| n == b"." || n == b".."))
    }
}

impl Fs {
    pub(crate) fn parse_dir(&self, blk: &[u8]) -> R<Vec<Ent>> {
        let bs = blk.len();
        let mut v = Vec::new();
        let mut off = 0;
        while off < bs {
            if off + 8 > bs {
                return err(EIO);
            }
            let ino = le32(blk, off);
            let rec_len = le16(blk, off + 4) as usize;
            let (name_len, ftype) = if self.g().filetype {
                (blk[off + 6] as usize, blk[off + 7])
            } else {
                (le16(blk, off + 6) as usize, 0)
            };
            if rec_len < 8 || !rec_len.is_multiple_of(4) || off + rec_len > bs {
                return err(EIO);
            }
            if ino != 0 && (8 + name_len > rec_len || ino > self.g().inodes_count) {
                return err(EIO);
            }
            v.push(Ent {
                off,
                ino,
                rec_len,
                name_len,
                ftype,
            });
            off += rec_len;
        }
        Ok(v)
    }

    pub(crate) fn write_entry(
        &self,
        blk: &mut [u8],
        off: usize,
        ino: u32,
        rec_len: usize,
        name: &[u8],
        ftype: u8,
    ) {
        put32(blk, off, ino);
        put16(blk, off + 4, rec_len as u16);
        if self.g().filetype {
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
    pub(crate) fn dir_nblocks(&self, d: &Inode) -> u64 {
        let bs = self.g().bs as u64;
        let claimed = (d.size() & 0xffff_ffff).div_ceil(bs);
        let held = d.blocks512() as u64 / (bs / 512);
        claimed.min(held).min(self.g().blocks_count as u64)
    }

    /// Largest record that fits in a directory block.
    pub(crate) fn block_space(ents: &[Ent]) -> u16 {
        ents.iter()
            .map(|e| {
                if e.ino == 0 {
                    e.rec_len
                } else {
                    e.rec_len - rec_size(e.name_len)
                }
            })
            .max()
            .unwrap_or(0) as u16
    }

    /// Make sure the in-memory index of directory `d` exists.
    pub(crate) fn dir_idx(&mut self, d: &Inode) -> R<()> {
        if self.dirs().contains(d.num) {
            return Ok(());
        }
        self.dirs().make_room();
        let mut idx = DirIdx::default();
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
        self.dirs().insert(d.num, idx);
        Ok(())
    }

    pub(crate) fn dir_find(&mut self, d: &Inode, name: &[u8]) -> R<Option<Found>> {
        self.dir_idx(d)?;
        let Some((lb, off, ino)) = self.dirs().lookup(d.num, name) else {
            return Ok(None);
        };
        let phys = self.bmap(d, lb as u64)?;
        if phys == 0 {
            self.dirs().forget(d.num);
            return err(EIO);
        }
        Ok(Some(Found {
            dir: d.num,
            lb,
            phys,
            off: off as usize,
            ino,
        }))
    }

    /// Check `name` is free in `d` and find room for it, growing the
    /// directory by a block if needed (the caller writes `d` back).
    pub(crate) fn dir_find_slot(&mut self, d: &mut Inode, name: &[u8]) -> R<Slot> {
        self.dir_idx(d)?;
        let need = rec_size(name.len());
        if self.dirs().has_name(d.num, name) {
            return err(EEXIST);
        }
        if let Some(lb) = self.dirs().block_with_room(d.num, need) {
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
                            .map(|(_, e)| {
                                if e.ino == 0 {
                                    e.rec_len
                                } else {
                                    e.rec_len - rec_size(e.name_len)
                                }
                            })
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
            self.dirs().forget(d.num);
            return err(EIO);
        }
        let nblocks = self.dir_nblocks(d);
        let bs = self.g().bs as usize;
        let goal = self.goal_for(d, nblocks)?;
        let mut log = Vec::new();
        let (phys, _) = self.bmap_alloc(d, nblocks, goal, &mut log)?;
        let mut blk = vec![0u8; bs];
        put16(&mut blk, 4, bs as u16);
        if let Err(e) = self.write_blk(phys, &blk, Kind::Dir) {
            self.undo_allocs(d, &mut log, 0);
            return Err(e);
        }
        d.set_size((nblocks + 1) * bs as u64);
        self.dirs().grew(d.num, bs as u16);
        Ok(Slot {
            dir: d.num,
            lb: nblocks as u32,
            phys,
            off: 0,
            rec_len: bs,
            used: 0,
            blk: Some(blk),
            other_space: 0,
        })
    }

    pub(crate) fn dir_insert(&mut self, s: &mut Slot, name: &[u8], ino: u32, ftype: u8) -> R<()> {
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
            self.write_blk(s.phys, &blk, Kind::Dir)?;
            self.dir_block_changed(s.phys, true);
            let space = s.other_space.max(rec - rec_size(name.len())) as u16;
            self.dirs().added(s.dir, name, s.lb, off as u16, ino, space);
            Ok(())
        })();
        if r.is_err() {
            self.dirs().forget(s.dir);
        }
        r
    }

    /// Remove the entry `f`.
    pub(crate) fn dir_remove_at(&mut self, f: &Found) -> R<()> {
        let r = (|| {
            let mut blk = self.read_blk(f.phys)?;
            let ents = self.parse_dir(&blk)?;
            let k = ents.iter().position(|e| e.off == f.off).ok_or(Errno(EIO))?;
            let name = blk[f.off + 8..f.off + 8 + ents[k].name_len].to_vec();
            if k == 0 {
                put32(&mut blk, f.off, 0);
            } else {
                let prev = &ents[k - 1];
                put16(
                    &mut blk,
                    prev.off + 4,
                    (prev.rec_len + ents[k].rec_len) as u16,
                );
            }
            self.write_blk(f.phys, &blk, Kind::Dir)?;
            self.dir_block_changed(f.phys, false);
            let space = Self::block_space(&self.parse_dir(&blk)?);
            self.dirs().removed(f.dir, &name, f.lb, space);
            Ok(())
        })();
        if r.is_err() {
            self.dirs().forget(f.dir);
        }
        r
    }

    /// Point the entry `f` to another inode.
    pub(crate) fn dir_set(&mut self, f: &Found, ino: u32, ftype: u8) -> R<()> {
        let r = (|| {
            let mut blk = self.read_blk(f.phys)?;
            put32(&mut blk, f.off, ino);
            if self.g().filetype {
                blk[f.off + 7] = ftype;
            }
            self.write_blk(f.phys, &blk, Kind::Dir)?;
            // An entry now names another inode: as a loss and a gain.
            self.dir_block_changed(f.phys, false);
            self.dir_block_changed(f.phys, true);
            let name_len = if self.g().filetype {
                blk[f.off + 6] as usize
            } else {
                le16(&blk, f.off + 6) as usize
            };
            let name = &blk[f.off + 8..(f.off + 8 + name_len).min(blk.len())];
            self.dirs().retargeted(f.dir, name, ino);
            Ok(())
        })();
        if r.is_err() {
            self.dirs().forget(f.dir);
        }
        r
    }

    /// The ".." entry of directory `d` (the second entry of its first block).
    pub(crate) fn dotdot(&mut self, d: &Inode) -> R<Found> {
        let phys = self.bmap(d, 0)?;
        if phys == 0 {
            return err(EIO);
        }
        let blk = self.read_blk(phys)?;
        let ents = self.parse_dir(&blk)?;
        match ents.get(1) {
            Some(e) if e.ino != 0 && &blk[e.off + 8..e.off + 8 + e.name_len] == b".." => {
                Ok(Found {
                    dir: d.num,
                    lb: 0,
                    phys,
                    off: e.off,
                    ino: e.ino,
                })
            }
            _ => err(EIO),
        }
    }

    pub(crate) fn dir_is_empty(&mut self, d: &Inode) -> R<bool> {
        self.dir_idx(d)?;
        Ok(self.dirs().only_dots(d.num))
    }

    pub(crate) fn touch_dir(d: &mut Inode, t: Timespec) {
        d.set_flags(d.flags() & !INDEX_FL);
        d.set_time(TimeField::Modify, t);
        d.set_time(TimeField::Change, t);
    }
}
