//! The operations behind the `FileSystem` trait, on inode numbers: lookup,
//! getattr, setattr (truncation included), create (symlinks too),
//! readlink, link, remove, rename and readdir. Reads and writes are in
//! [`crate::readwrite`], sync and unmount in [`crate::fs`].

use std::collections::HashSet;

use netbsd_abi::errno::*;
use netbsd_abi::Errno;
use vfs::{Attr, Cred, DirEntry, FileKind, SetAttr};

use crate::dir::{check_name, Slot};
use crate::fail::{err, Fail, R};
use crate::fs::{now, Fs, ROOT_INO};
use crate::inode::*;
use crate::order::Kind;

/// Most links an inode may have (EXT2_LINK_MAX).
pub(crate) const LINK_MAX: u16 = 32000;

/// What a new node holds besides its attributes.
#[derive(Clone, Copy, Debug)]
pub enum NewNode<'a> {
    /// Nothing yet: a file, directory, FIFO or socket.
    Empty,
    /// A symbolic link's target.
    Symlink(&'a [u8]),
    /// A device node's number (NetBSD's `dev_t`).
    Device(u64),
}

impl Fs {
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
        if s.perm.is_none()
            && s.uid.is_none()
            && s.gid.is_none()
            && s.size.is_none()
            && s.atime.is_none()
            && s.mtime.is_none()
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
                let keep = size.div_ceil(self.g().bs as u64);
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
        with: NewNode,
    ) -> R<u32> {
        let target = match with {
            NewNode::Symlink(t) => Some(t),
            _ => None,
        };
        self.begin_write()?;
        check_name(name)?;
        if let Some(t) = target {
            if t.is_empty() {
                return err(ENOENT);
            }
            if t.len() >= (self.g().bs as usize).min(1024) {
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
                if d.size() != size0 || e.is(ENOSPC) {
                    self.write_inode(&d)?;
                }
                return Err(e);
            }
        };
        let r = self.create_in(&mut d, slot, name, kind, perm, cred, with);
        self.write_inode(&d)?;
        r
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn create_in(
        &mut self,
        d: &mut Inode,
        mut slot: Slot,
        name: &[u8],
        kind: FileKind,
        perm: u32,
        cred: Cred,
        with: NewNode,
    ) -> R<u32> {
        let is_dir = kind == FileKind::Dir;
        let (target, rdev) = match with {
            NewNode::Empty => (None, 0),
            NewNode::Symlink(t) => (Some(t), 0),
            NewNode::Device(_) if !matches!(kind, FileKind::Blk | FileKind::Chr) => {
                return err(EINVAL)
            }
            NewNode::Device(dev) => (None, dev),
        };
        let ino = self.alloc_inode(d.num, is_dir)?;
        let t = now();
        let bs = self.g().bs;
        let mut n = self.new_inode(ino);
        n.set_mode(kind.mode_bits() as u16 | (perm & 0o7777) as u16);
        n.set_uid(cred.uid);
        // BSD semantics, as NetBSD's ext2fs: the group of the directory.
        n.set_gid(d.gid());
        n.set_links(if is_dir { 2 } else { 1 });
        for f in [
            TimeField::Access,
            TimeField::Modify,
            TimeField::Change,
            TimeField::Birth,
        ] {
            n.set_time(f, t);
        }
        let goal = self.g().group_start((ino - 1) / self.g().ipg);
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
                self.write_blk(b, &blk, if is_dir { Kind::Dir } else { Kind::Other })?;
                n.set_block(0, b);
                n.set_blocks512(bs / 512);
            } else if let Some(tg) = target {
                n.raw[I_BLOCK..I_BLOCK + tg.len()].copy_from_slice(tg);
                n.set_size(tg.len() as u64);
            } else if rdev != 0 {
                n.set_rdev(rdev)?;
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
        if i.is_fast_symlink(self.g().bs) {
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
                if d.size() != size0 || e.is(ENOSPC) {
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
                        if tdi.size() != size0 || e.is(ENOSPC) {
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

    /// Entries from `cookie` on, at least `want` of them unless the
    /// directory ends first. Returns the entries and whether it ended.
    pub fn readdir_batch(
        &mut self,
        dir: u32,
        cookie: u64,
        want: usize,
    ) -> R<(Vec<DirEntry>, bool)> {
        let d = self.get_dir(dir)?;
        let bs = self.g().bs as u64;
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
                        Some(k) if self.g().filetype => k,
                        // An entry naming an unreadable inode is listed as
                        // a file; a deferred miss still ends the batch.
                        _ => match self.read_inode(e.ino) {
                            Ok(i) => i.kind().unwrap_or(FileKind::Reg),
                            Err(f @ Fail::Defer { .. }) => return Err(f),
                            Err(_) => FileKind::Reg,
                        },
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
