//! File data: a read mapped to runs of device bytes (read by the caller
//! outside the file system lock), and writes — blocks allocated as they
//! are reached, runs padded to the store's windows over free blocks, the
//! old tail zeroed when a file grows.

use netbsd_abi::errno::*;

use crate::fail::{err, R};
use crate::fs::{now, ts_le, Fs};
use crate::inode::*;

/// Longest data run handed to the store in one write.
pub(crate) const MAX_RUN: usize = 1 << 20;

/// The store's unit of caching (vfs-cache's block): a write covering a
/// whole window never makes the store read it first.
pub(crate) const WINDOW: u64 = vfs_cache::DEFAULT_BLOCK_SIZE as u64;

/// Bytes for one store write: `head` zeros, `data[src..src + dlen]`,
/// `tail` zeros, at disk offset `disk`.
pub(crate) struct Run {
    pub(crate) disk: u64,
    pub(crate) head: usize,
    pub(crate) src: usize,
    pub(crate) dlen: usize,
    pub(crate) tail: usize,
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

impl Fs {
    /// Write a run of file data. When the run starts or ends inside a
    /// cache window (`WINDOW` bytes, the store's unit) and the rest of
    /// that window is free blocks, the run is padded with zeros to the
    /// window's edge: the store then gets the whole window and need not
    /// read it from the device first. (Free blocks may hold anything.)
    pub(crate) fn write_run(&mut self, r: &Run, data: &[u8]) -> R<()> {
        let bs = self.g().bs as u64;
        let w = WINDOW.max(bs);
        let (mut pre, mut post) = (0usize, 0usize);
        let start = r.disk;
        let end = r.end();
        if start.is_multiple_of(bs) && !start.is_multiple_of(w) {
            let ws = start - start % w;
            if self.all_free((ws / bs) as u32, (start / bs) as u32)? {
                pre = (start - ws) as usize;
            }
        }
        if end.is_multiple_of(bs) && !end.is_multiple_of(w) {
            let we = end - end % w + w;
            if we <= self.device_size() && self.all_free((end / bs) as u32, (we / bs) as u32)? {
                post = (we - end) as usize;
            }
        }
        let src = &data[r.src..r.src + r.dlen];
        self.write_data(start - pre as u64, pre + r.head, src, r.tail + post)
    }

    /// Zero the bytes after `old_size` in its block (junk past the old end
    /// of file must read as zeros once the file grows).
    pub(crate) fn zero_tail(&mut self, i: &Inode, old_size: u64) -> R<()> {
        let bs = self.g().bs as u64;
        let start = old_size % bs;
        if start == 0 {
            return Ok(());
        }
        let phys = self.bmap(i, old_size / bs)?;
        if phys != 0 {
            let zeros = vec![0u8; (bs - start) as usize];
            self.write_data(phys as u64 * bs + start, 0, &zeros, 0)?;
        }
        Ok(())
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
        let bs = self.g().bs as u64;
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
                    Some(r)
                        if r.disk + r.len as u64 == disk
                            && r.at + r.len == done
                            && r.len < MAX_RUN =>
                    {
                        r.len += n
                    }
                    _ => runs.push(ReadRun {
                        disk,
                        at: done,
                        len: n,
                    }),
                }
            }
            pos += n as u64;
            done += n;
        }
        if !self.read_only() {
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
        let bs = self.g().bs as u64;
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
            goal = phys.saturating_add(1);
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
                run = Some(Run {
                    disk,
                    head,
                    src,
                    dlen: n,
                    tail,
                });
            }
            pos += n as u64;
        }
        if let Some(r) = run.take() {
            if failure.is_none_or(|e| e.is(ENOSPC)) {
                if let Err(e) = self.write_run(&r, data) {
                    failure = Some(e);
                }
            }
        }
        let mut written = pos - off;
        if failure.is_some_and(|e| !e.is(ENOSPC)) {
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
}
