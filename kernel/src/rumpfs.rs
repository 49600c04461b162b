//! rumpfs: the in-memory root file system.
//!
//! Directories, regular files (sparse, in 4 KiB pages, counted against a
//! byte budget), symbolic links, device nodes (the `blk`/`chr` etfs keys)
//! and host-backed regular files (the `reg` etfs keys).
//!
//! Locking: one namespace mutex serialises every change of names (create,
//! link, unlink, rename); lookups and data I/O take only per-node locks.
//! No lock here is held across a blocking hypercall except a host-backed
//! file's I/O, which holds none.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use netbsd_abi::errno::*;
use netbsd_abi::stat::Timespec;
use netbsd_abi::Errno;
use rumpuser::locks::{Mutex, RwLock};
use vfs_cache::HostDrive;

use crate::host::now;
use crate::vfs::*;

const PAGE: usize = 4096;
/// The largest file rumpfs keeps (sparse files cost only their pages).
pub const MAX_FILE_SIZE: u64 = 1 << 50;
const ROOT_INO: Ino = 2;

struct Meta {
    perm: u32,
    uid: u32,
    gid: u32,
    nlink: u32,
    atime: Timespec,
    mtime: Timespec,
    ctime: Timespec,
    birthtime: Timespec,
}

struct Dir {
    parent: Ino,
    by_name: HashMap<Vec<u8>, (u64, Ino)>,
    by_seq: BTreeMap<u64, Vec<u8>>,
    next_seq: u64,
}

impl Dir {
    fn new(parent: Ino) -> Dir {
        Dir {
            parent,
            by_name: HashMap::new(),
            by_seq: BTreeMap::new(),
            next_seq: 0,
        }
    }
    fn insert(&mut self, name: &[u8], ino: Ino) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.by_name.insert(name.to_vec(), (seq, ino));
        self.by_seq.insert(seq, name.to_vec());
    }
    fn remove(&mut self, name: &[u8]) -> Option<Ino> {
        let (seq, ino) = self.by_name.remove(name)?;
        self.by_seq.remove(&seq);
        Some(ino)
    }
    fn get(&self, name: &[u8]) -> Option<Ino> {
        self.by_name.get(name).map(|e| e.1)
    }
}

#[derive(Default)]
struct Data {
    size: u64,
    pages: BTreeMap<u64, Box<[u8]>>,
}

/// A host file (or a window of one) exposed as a regular file.
pub struct HostBacked {
    /// The host file.
    pub file: Arc<HostDrive>,
    /// Where the file's bytes start in it.
    pub offset: u64,
    size: AtomicU64,
    /// The drive's size: the file never grows past it (`EFBIG`).
    max: u64,
}

enum Body {
    Dir(RwLock<Dir>),
    Reg(RwLock<Data>),
    Host(HostBacked),
    Link(Vec<u8>),
    Dev { rdev: u64, size: u64 },
}

struct Node {
    ino: Ino,
    kind: FileKind,
    meta: Mutex<Meta>,
    body: Body,
    opens: AtomicU32,
}

/// The in-memory root file system (NetBSD's rumpfs): directories, files, symbolic links and device nodes in memory, counted against the kernel's memory limit; etfs host files appear in it as regular files or device nodes.
pub struct RumpFs {
    nodes: RwLock<HashMap<Ino, Arc<Node>>>,
    ns: Mutex<()>,
    next_ino: AtomicU64,
    used: AtomicU64,
    limit: u64,
}

/// What metadata costs against the memory limit (about what it takes in
/// memory): each node, each directory entry plus twice its name (kept in
/// two indexes), and a symbolic link's target.
const NODE_COST: u64 = 320;
const ENTRY_COST: u64 = 128;

fn entry_cost(name: &[u8]) -> u64 {
    ENTRY_COST + 2 * name.len() as u64
}

fn node_cost(n: &Node) -> u64 {
    NODE_COST
        + match &n.body {
            Body::Link(t) => t.len() as u64,
            _ => 0,
        }
}

fn name_ok(name: &[u8]) -> Result<(), Errno> {
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0)
    {
        return Err(Errno(EINVAL));
    }
    if name.len() > netbsd_abi::dirent::MAXNAMLEN {
        return Err(Errno(ENAMETOOLONG));
    }
    Ok(())
}

impl RumpFs {
    /// A file system with an empty root directory; regular file data and
    /// metadata (nodes, names, link targets) are limited to `limit` bytes
    /// in total (`ENOSPC` beyond).
    pub fn new(limit: u64) -> Arc<RumpFs> {
        let fs = RumpFs {
            nodes: RwLock::new(HashMap::new()),
            ns: Mutex::new(()),
            next_ino: AtomicU64::new(ROOT_INO + 1),
            used: AtomicU64::new(0),
            limit,
        };
        let root = fs.new_node(
            ROOT_INO,
            FileKind::Dir,
            0o755,
            Cred::default(),
            Body::Dir(RwLock::new(Dir::new(ROOT_INO))),
        );
        root.meta.lock().nlink = 2;
        fs.nodes.write().insert(ROOT_INO, root);
        Arc::new(fs)
    }

    fn new_node(&self, ino: Ino, kind: FileKind, perm: u32, cred: Cred, body: Body) -> Arc<Node> {
        let t = now();
        Arc::new(Node {
            ino,
            kind,
            meta: Mutex::new(Meta {
                perm: perm & 0o7777,
                uid: cred.uid,
                gid: cred.gid,
                nlink: 1,
                atime: t,
                mtime: t,
                ctime: t,
                birthtime: t,
            }),
            body,
            opens: AtomicU32::new(0),
        })
    }

    /// Count `bytes` more against the limit, or refuse with `ENOSPC`.
    fn charge(&self, bytes: u64) -> Result<(), Errno> {
        let prev = self.used.fetch_add(bytes, Ordering::Relaxed);
        if prev.saturating_add(bytes) > self.limit {
            self.used.fetch_sub(bytes, Ordering::Relaxed);
            return Err(Errno(ENOSPC));
        }
        Ok(())
    }

    fn uncharge(&self, bytes: u64) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
    }

    fn node(&self, ino: Ino) -> Result<Arc<Node>, Errno> {
        self.nodes.read().get(&ino).cloned().ok_or(Errno(ENOENT))
    }

    fn dir_body(n: &Node) -> Result<&RwLock<Dir>, Errno> {
        match &n.body {
            Body::Dir(d) => Ok(d),
            _ => Err(Errno(ENOTDIR)),
        }
    }

    fn touch_dir(n: &Node) {
        let t = now();
        let mut m = n.meta.lock();
        m.mtime = t;
        m.ctime = t;
    }

    /// Drop an inode whose last name and last open are gone.
    fn maybe_reap(&self, n: &Arc<Node>) {
        let gone = n.meta.lock().nlink == 0 && n.opens.load(Ordering::SeqCst) == 0;
        if gone {
            if let Some(old) = self.nodes.write().remove(&n.ino) {
                if let Body::Reg(d) = &old.body {
                    let d = d.read();
                    self.used
                        .fetch_sub((d.pages.len() * PAGE) as u64, Ordering::Relaxed);
                }
                self.uncharge(node_cost(&old));
            }
        }
    }

    /// Insert a prepared node under `dir`/`name`.
    fn link_new(&self, dir: Ino, name: &[u8], node: Arc<Node>) -> Result<Ino, Errno> {
        name_ok(name)?;
        let _ns = self.ns.lock();
        let d = self.node(dir)?;
        let db = Self::dir_body(&d)?;
        if d.meta.lock().nlink == 0 {
            return Err(Errno(ENOENT));
        }
        let mut dl = db.write();
        if dl.get(name).is_some() {
            return Err(Errno(EEXIST));
        }
        self.charge(node_cost(&node) + entry_cost(name))?;
        let ino = node.ino;
        let is_dir = node.kind == FileKind::Dir;
        self.nodes.write().insert(ino, node);
        dl.insert(name, ino);
        drop(dl);
        if is_dir {
            d.meta.lock().nlink += 1;
        }
        Self::touch_dir(&d);
        Ok(ino)
    }

    fn alloc_ino(&self) -> Ino {
        self.next_ino.fetch_add(1, Ordering::Relaxed)
    }

    /// Make a device node (an etfs `blk`/`chr` key) at `dir`/`name`.
    pub fn mknod(
        &self,
        dir: Ino,
        name: &[u8],
        kind: FileKind,
        rdev: u64,
        size: u64,
    ) -> Result<Ino, Errno> {
        let ino = self.alloc_ino();
        let n = self.new_node(ino, kind, 0o600, Cred::default(), Body::Dev { rdev, size });
        self.link_new(dir, name, n)
    }

    /// Expose a window of a host file as a regular file at `dir`/`name`.
    pub fn host_file(
        &self,
        dir: Ino,
        name: &[u8],
        file: Arc<HostDrive>,
        offset: u64,
        size: u64,
    ) -> Result<Ino, Errno> {
        let ino = self.alloc_ino();
        let body = Body::Host(HostBacked {
            file,
            offset,
            size: AtomicU64::new(size),
            max: size,
        });
        let n = self.new_node(ino, FileKind::Reg, 0o644, Cred::default(), body);
        self.link_new(dir, name, n)
    }

    /// The host file behind `ino`, if it is a host-backed file.
    pub fn host_of(&self, ino: Ino) -> Option<Arc<HostDrive>> {
        match &self.node(ino).ok()?.body {
            Body::Host(h) => Some(h.file.clone()),
            _ => None,
        }
    }

    /// Bytes counted against the limit: regular-file data and metadata.
    pub fn bytes_used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    fn reg_read(d: &Data, off: u64, buf: &mut [u8]) -> usize {
        if off >= d.size {
            return 0;
        }
        let n = ((d.size - off).min(buf.len() as u64)) as usize;
        let mut done = 0;
        while done < n {
            let pos = off + done as u64;
            let pg = pos / PAGE as u64;
            let po = (pos % PAGE as u64) as usize;
            let k = (PAGE - po).min(n - done);
            match d.pages.get(&pg) {
                Some(p) => buf[done..done + k].copy_from_slice(&p[po..po + k]),
                None => buf[done..done + k].fill(0),
            }
            done += k;
        }
        n
    }

    fn reg_write(&self, d: &mut Data, off: u64, buf: &[u8]) -> Result<usize, Errno> {
        let end = off.checked_add(buf.len() as u64).ok_or(Errno(EFBIG))?;
        if end > MAX_FILE_SIZE {
            return Err(Errno(EFBIG));
        }
        // Count the pages this write adds, and refuse it whole past the limit.
        let mut new_pages = 0u64;
        if !buf.is_empty() {
            let first = off / PAGE as u64;
            let last = (end - 1) / PAGE as u64;
            if last - first < 1 << 20 {
                for pg in first..=last {
                    if !d.pages.contains_key(&pg) {
                        new_pages += 1;
                    }
                }
            } else {
                new_pages = last - first + 1;
            }
        }
        let add = new_pages * PAGE as u64;
        if add > 0 {
            let prev = self.used.fetch_add(add, Ordering::Relaxed);
            if prev + add > self.limit {
                self.used.fetch_sub(add, Ordering::Relaxed);
                return Err(Errno(ENOSPC));
            }
        }
        let mut done = 0;
        while done < buf.len() {
            let pos = off + done as u64;
            let pg = pos / PAGE as u64;
            let po = (pos % PAGE as u64) as usize;
            let k = (PAGE - po).min(buf.len() - done);
            let p = d
                .pages
                .entry(pg)
                .or_insert_with(|| vec![0u8; PAGE].into_boxed_slice());
            p[po..po + k].copy_from_slice(&buf[done..done + k]);
            done += k;
        }
        if end > d.size {
            d.size = end;
        }
        Ok(buf.len())
    }

    #[allow(clippy::manual_is_multiple_of)] // is_multiple_of is newer than the MSRV
    fn reg_truncate(&self, d: &mut Data, size: u64) -> Result<(), Errno> {
        if size > MAX_FILE_SIZE {
            return Err(Errno(EFBIG));
        }
        if size < d.size {
            let keep = size.div_ceil(PAGE as u64);
            let gone: Vec<u64> = d.pages.range(keep..).map(|(k, _)| *k).collect();
            for k in &gone {
                d.pages.remove(k);
            }
            self.used
                .fetch_sub((gone.len() * PAGE) as u64, Ordering::Relaxed);
            // Zero the tail of the last kept page.
            if size % PAGE as u64 != 0 {
                if let Some(p) = d.pages.get_mut(&(size / PAGE as u64)) {
                    p[(size % PAGE as u64) as usize..].fill(0);
                }
            }
        }
        d.size = size;
        Ok(())
    }

    fn is_ancestor(&self, anc: Ino, mut ino: Ino) -> Result<bool, Errno> {
        // Walk up from `ino` to the root.
        for _ in 0..100_000 {
            if ino == anc {
                return Ok(true);
            }
            if ino == ROOT_INO {
                return Ok(false);
            }
            let n = self.node(ino)?;
            ino = Self::dir_body(&n)?.read().parent;
        }
        Err(Errno(ELOOP))
    }
}

impl FileSystem for RumpFs {
    fn type_name(&self) -> &'static str {
        "rumpfs"
    }

    fn root(&self) -> Ino {
        ROOT_INO
    }

    fn lookup(&self, dir: Ino, name: &[u8]) -> Result<Ino, Errno> {
        let d = self.node(dir)?;
        let db = Self::dir_body(&d)?;
        let dl = db.read();
        match name {
            b"." => Ok(dir),
            b".." => Ok(dl.parent),
            _ => dl.get(name).ok_or(Errno(ENOENT)),
        }
    }

    fn getattr(&self, ino: Ino) -> Result<Attr, Errno> {
        let n = self.node(ino)?;
        let (size, rdev, blocks) = match &n.body {
            Body::Dir(d) => {
                let d = d.read();
                (((d.by_name.len() + 2) * 32) as u64, 0, 1)
            }
            Body::Reg(d) => {
                let d = d.read();
                (d.size, 0, (d.pages.len() * PAGE / 512) as u64)
            }
            Body::Host(h) => {
                let s = h.size.load(Ordering::Relaxed);
                (s, 0, s.div_ceil(512))
            }
            Body::Link(t) => (t.len() as u64, 0, 0),
            Body::Dev { rdev, size } => (*size, *rdev, 0),
        };
        let m = n.meta.lock();
        Ok(Attr {
            ino,
            kind: n.kind,
            perm: m.perm,
            nlink: m.nlink,
            uid: m.uid,
            gid: m.gid,
            size,
            blocks,
            blksize: PAGE as u32,
            rdev,
            atime: m.atime,
            mtime: m.mtime,
            ctime: m.ctime,
            birthtime: m.birthtime,
        })
    }

    fn setattr(&self, ino: Ino, set: &SetAttr) -> Result<Attr, Errno> {
        let n = self.node(ino)?;
        if let Some(size) = set.size {
            match &n.body {
                Body::Reg(d) => self.reg_truncate(&mut d.write(), size)?,
                Body::Host(h) => {
                    if size > h.max {
                        return Err(Errno(EFBIG));
                    }
                    let end = h.offset.checked_add(size).ok_or(Errno(EFBIG))?;
                    h.file.set_len(end)?;
                    h.size.store(size, Ordering::Relaxed);
                }
                Body::Dir(_) => return Err(Errno(EISDIR)),
                _ => return Err(Errno(EINVAL)),
            }
            let t = now();
            let mut m = n.meta.lock();
            m.mtime = t;
            m.ctime = t;
        }
        {
            let mut m = n.meta.lock();
            let t = now();
            if let Some(p) = set.perm {
                m.perm = p & 0o7777;
                m.ctime = t;
            }
            if let Some(u) = set.uid {
                m.uid = u;
                m.ctime = t;
            }
            if let Some(g) = set.gid {
                m.gid = g;
                m.ctime = t;
            }
            if let Some(a) = set.atime {
                m.atime = a;
            }
            if let Some(mt) = set.mtime {
                m.mtime = mt;
            }
        }
        self.getattr(ino)
    }

    fn create(
        &self,
        dir: Ino,
        name: &[u8],
        kind: FileKind,
        perm: u32,
        cred: Cred,
    ) -> Result<Ino, Errno> {
        FileSystem::mknod(self, dir, name, kind, perm, 0, cred)
    }

    fn mknod(
        &self,
        dir: Ino,
        name: &[u8],
        kind: FileKind,
        perm: u32,
        rdev: u64,
        cred: Cred,
    ) -> Result<Ino, Errno> {
        let ino = self.alloc_ino();
        let body = match kind {
            FileKind::Dir => Body::Dir(RwLock::new(Dir::new(dir))),
            FileKind::Reg => Body::Reg(RwLock::new(Data::default())),
            FileKind::Blk | FileKind::Chr => Body::Dev { rdev, size: 0 },
            FileKind::Fifo | FileKind::Sock => Body::Dev { rdev: 0, size: 0 },
            FileKind::Lnk => return Err(Errno(EINVAL)),
        };
        let n = self.new_node(ino, kind, perm, cred, body);
        if kind == FileKind::Dir {
            n.meta.lock().nlink = 2;
        }
        self.link_new(dir, name, n)
    }

    fn symlink(&self, dir: Ino, name: &[u8], target: &[u8], cred: Cred) -> Result<Ino, Errno> {
        let ino = self.alloc_ino();
        let n = self.new_node(ino, FileKind::Lnk, 0o755, cred, Body::Link(target.to_vec()));
        self.link_new(dir, name, n)
    }

    fn readlink(&self, ino: Ino) -> Result<Vec<u8>, Errno> {
        match &self.node(ino)?.body {
            Body::Link(t) => Ok(t.clone()),
            _ => Err(Errno(EINVAL)),
        }
    }

    fn link(&self, ino: Ino, newdir: Ino, newname: &[u8]) -> Result<(), Errno> {
        name_ok(newname)?;
        let _ns = self.ns.lock();
        let n = self.node(ino)?;
        if n.kind == FileKind::Dir {
            return Err(Errno(EPERM));
        }
        if n.meta.lock().nlink == 0 {
            return Err(Errno(ENOENT));
        }
        let d = self.node(newdir)?;
        let mut dl = Self::dir_body(&d)?.write();
        if dl.get(newname).is_some() {
            return Err(Errno(EEXIST));
        }
        self.charge(entry_cost(newname))?;
        dl.insert(newname, ino);
        drop(dl);
        {
            let mut m = n.meta.lock();
            m.nlink += 1;
            m.ctime = now();
        }
        Self::touch_dir(&d);
        Ok(())
    }

    fn unlink(&self, dir: Ino, name: &[u8]) -> Result<(), Errno> {
        name_ok(name)?;
        let _ns = self.ns.lock();
        let d = self.node(dir)?;
        let mut dl = Self::dir_body(&d)?.write();
        let ino = dl.get(name).ok_or(Errno(ENOENT))?;
        let n = self.node(ino)?;
        if n.kind == FileKind::Dir {
            return Err(Errno(EPERM));
        }
        dl.remove(name);
        drop(dl);
        self.uncharge(entry_cost(name));
        {
            let mut m = n.meta.lock();
            m.nlink = m.nlink.saturating_sub(1);
            m.ctime = now();
        }
        Self::touch_dir(&d);
        self.maybe_reap(&n);
        Ok(())
    }

    fn rmdir(&self, dir: Ino, name: &[u8]) -> Result<(), Errno> {
        name_ok(name)?;
        let _ns = self.ns.lock();
        let d = self.node(dir)?;
        let mut dl = Self::dir_body(&d)?.write();
        let ino = dl.get(name).ok_or(Errno(ENOENT))?;
        let n = self.node(ino)?;
        let nb = Self::dir_body(&n)?;
        if !nb.read().by_name.is_empty() {
            return Err(Errno(ENOTEMPTY));
        }
        dl.remove(name);
        drop(dl);
        self.uncharge(entry_cost(name));
        n.meta.lock().nlink = 0;
        {
            let mut m = d.meta.lock();
            m.nlink = m.nlink.saturating_sub(1);
        }
        Self::touch_dir(&d);
        self.maybe_reap(&n);
        Ok(())
    }

    fn rename(
        &self,
        fromdir: Ino,
        fromname: &[u8],
        todir: Ino,
        toname: &[u8],
    ) -> Result<(), Errno> {
        name_ok(fromname)?;
        name_ok(toname)?;
        let _ns = self.ns.lock();
        let fd = self.node(fromdir)?;
        let td = self.node(todir)?;
        let fdb = Self::dir_body(&fd)?;
        let tdb = Self::dir_body(&td)?;
        let src_ino = fdb.read().get(fromname).ok_or(Errno(ENOENT))?;
        let src = self.node(src_ino)?;
        let dst_ino = tdb.read().get(toname);
        if dst_ino == Some(src_ino) {
            return Ok(());
        }
        let src_is_dir = src.kind == FileKind::Dir;
        if src_is_dir && fromdir != todir && self.is_ancestor(src_ino, todir)? {
            return Err(Errno(EINVAL));
        }
        let mut victim = None;
        if let Some(di) = dst_ino {
            let dst = self.node(di)?;
            let dst_is_dir = dst.kind == FileKind::Dir;
            if src_is_dir && !dst_is_dir {
                return Err(Errno(ENOTDIR));
            }
            if !src_is_dir && dst_is_dir {
                return Err(Errno(EISDIR));
            }
            if dst_is_dir && !Self::dir_body(&dst)?.read().by_name.is_empty() {
                return Err(Errno(ENOTEMPTY));
            }
            victim = Some(dst);
        }
        // The names change: charge a longer name first, credit after.
        let add = entry_cost(toname);
        let sub = entry_cost(fromname)
            + if victim.is_some() {
                entry_cost(toname)
            } else {
                0
            };
        if add > sub {
            self.charge(add - sub)?;
        }
        // Apply: remove the target, move the name.
        if let Some(v) = &victim {
            tdb.write().remove(toname);
            let mut m = v.meta.lock();
            if v.kind == FileKind::Dir {
                m.nlink = 0;
                drop(m);
                let mut tm = td.meta.lock();
                tm.nlink = tm.nlink.saturating_sub(1);
            } else {
                m.nlink = m.nlink.saturating_sub(1);
                m.ctime = now();
            }
        }
        if fromdir == todir {
            let mut dl = fdb.write();
            dl.remove(fromname);
            dl.insert(toname, src_ino);
        } else {
            fdb.write().remove(fromname);
            tdb.write().insert(toname, src_ino);
            if src_is_dir {
                Self::dir_body(&src)?.write().parent = todir;
                let mut fm = fd.meta.lock();
                fm.nlink = fm.nlink.saturating_sub(1);
                drop(fm);
                td.meta.lock().nlink += 1;
            }
        }
        if sub > add {
            self.uncharge(sub - add);
        }
        src.meta.lock().ctime = now();
        Self::touch_dir(&fd);
        Self::touch_dir(&td);
        if let Some(v) = victim {
            self.maybe_reap(&v);
        }
        Ok(())
    }

    fn read(&self, ino: Ino, off: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        let n = self.node(ino)?;
        match &n.body {
            Body::Reg(d) => Ok(Self::reg_read(&d.read(), off, buf)),
            Body::Host(h) => {
                let size = h.size.load(Ordering::Relaxed);
                if off >= size {
                    return Ok(0);
                }
                let k = ((size - off).min(buf.len() as u64)) as usize;
                let hoff = h.offset.checked_add(off).ok_or(Errno(EINVAL))?;
                let got = h.file.pread(&mut buf[..k], hoff)?;
                // A host file shorter than its drive reads as zeros.
                buf[got..k].fill(0);
                Ok(k)
            }
            Body::Dir(_) => Err(Errno(EISDIR)),
            _ => Err(Errno(EINVAL)),
        }
    }

    fn write(&self, ino: Ino, off: u64, buf: &[u8]) -> Result<usize, Errno> {
        let n = self.node(ino)?;
        let r = match &n.body {
            Body::Reg(d) => self.reg_write(&mut d.write(), off, buf)?,
            Body::Host(h) => {
                // Never past the drive's size: a short write up to it,
                // `EFBIG` at or beyond it.
                if buf.is_empty() {
                    return Ok(0);
                }
                if off >= h.max {
                    return Err(Errno(EFBIG));
                }
                let buf = &buf[..(h.max - off).min(buf.len() as u64) as usize];
                let end = off.checked_add(buf.len() as u64).ok_or(Errno(EFBIG))?;
                let hoff = h.offset.checked_add(off).ok_or(Errno(EFBIG))?;
                hoff.checked_add(buf.len() as u64).ok_or(Errno(EFBIG))?;
                let w = h.file.pwrite(buf, hoff)?;
                h.size.fetch_max(end, Ordering::Relaxed);
                w
            }
            Body::Dir(_) => return Err(Errno(EISDIR)),
            _ => return Err(Errno(EINVAL)),
        };
        let t = now();
        let mut m = n.meta.lock();
        m.mtime = t;
        m.ctime = t;
        Ok(r)
    }

    fn readdir(
        &self,
        dir: Ino,
        cookie: u64,
        f: &mut dyn FnMut(DirEntry) -> bool,
    ) -> Result<(), Errno> {
        let d = self.node(dir)?;
        let db = Self::dir_body(&d)?;
        // Collect under the lock, call out without it.
        let mut out = Vec::new();
        {
            let dl = db.read();
            if cookie == 0 {
                out.push(DirEntry {
                    ino: dir,
                    kind: FileKind::Dir,
                    name: b".".to_vec(),
                    next: 1,
                });
            }
            if cookie <= 1 {
                out.push(DirEntry {
                    ino: dl.parent,
                    kind: FileKind::Dir,
                    name: b"..".to_vec(),
                    next: 2,
                });
            }
            let from = cookie.saturating_sub(2);
            let nodes = self.nodes.read();
            for (seq, name) in dl.by_seq.range(from..) {
                let Some(&(_, ino)) = dl.by_name.get(name) else {
                    continue;
                };
                let kind = nodes.get(&ino).map(|n| n.kind).unwrap_or(FileKind::Reg);
                out.push(DirEntry {
                    ino,
                    kind,
                    name: name.clone(),
                    next: seq + 3,
                });
                if out.len() >= 4096 {
                    break;
                }
            }
        }
        for e in out {
            if !f(e) {
                break;
            }
        }
        Ok(())
    }

    fn fsync(&self, ino: Ino) -> Result<(), Errno> {
        match &self.node(ino)?.body {
            Body::Host(h) => h.file.sync(),
            _ => Ok(()),
        }
    }

    fn sync(&self) -> Result<(), Errno> {
        // Host-backed files are synced by the drive layer.
        Ok(())
    }

    fn unmount(&self) -> Result<(), Errno> {
        Ok(())
    }

    fn statfs(&self) -> Result<FsStat, Errno> {
        let used = self.bytes_used() / PAGE as u64;
        let total = self.limit / PAGE as u64;
        Ok(FsStat {
            block_size: PAGE as u32,
            blocks: total,
            blocks_free: total.saturating_sub(used),
            files: self.nodes.read().len() as u64,
            files_free: u64::MAX / 2,
        })
    }

    fn open(&self, ino: Ino) {
        if let Ok(n) = self.node(ino) {
            n.opens.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn release(&self, ino: Ino) {
        if let Ok(n) = self.node(ino) {
            n.opens.fetch_sub(1, Ordering::SeqCst);
            self.maybe_reap(&n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_and_truncate() {
        let fs = RumpFs::new(1 << 30);
        let f = fs
            .create(ROOT_INO, b"f", FileKind::Reg, 0o644, Cred::default())
            .unwrap();
        fs.write(f, 10_000, b"xyz").unwrap();
        assert_eq!(fs.getattr(f).unwrap().size, 10_003);
        let mut b = vec![1u8; 10_003];
        assert_eq!(fs.read(f, 0, &mut b).unwrap(), 10_003);
        assert!(b[..10_000].iter().all(|&x| x == 0));
        assert_eq!(&b[10_000..], b"xyz");
        fs.setattr(
            f,
            &SetAttr {
                size: Some(10_001),
                ..Default::default()
            },
        )
        .unwrap();
        fs.setattr(
            f,
            &SetAttr {
                size: Some(20_000),
                ..Default::default()
            },
        )
        .unwrap();
        let mut b = vec![1u8; 4];
        fs.read(f, 10_000, &mut b).unwrap();
        assert_eq!(&b, b"x\0\0\0");
    }

    #[test]
    fn budget_is_enforced() {
        // Room for two pages of data and the file's metadata.
        let fs = RumpFs::new(8192 + NODE_COST + entry_cost(b"f"));
        let f = fs
            .create(ROOT_INO, b"f", FileKind::Reg, 0o644, Cred::default())
            .unwrap();
        fs.write(f, 0, &[1u8; 8192]).unwrap();
        assert_eq!(fs.write(f, 8192, &[1u8; 1]), Err(Errno(ENOSPC)));
        fs.unlink(ROOT_INO, b"f").unwrap();
        assert_eq!(fs.bytes_used(), 0);
    }

    #[test]
    fn metadata_is_counted() {
        let fs = RumpFs::new(64 << 10);
        let mut made = 0;
        let err = loop {
            match fs.create(
                ROOT_INO,
                format!("file-{made:06}").as_bytes(),
                FileKind::Reg,
                0o644,
                Cred::default(),
            ) {
                Ok(_) => made += 1,
                Err(e) => break e,
            }
            assert!(made < 10_000, "64 KiB took {made} empty files");
        };
        assert_eq!(err, Errno(ENOSPC));
        assert!(made > 50, "only {made} files fit");
        assert_eq!(
            fs.symlink(ROOT_INO, b"l", &[b'x'; 1000], Cred::default()),
            Err(Errno(ENOSPC))
        );
        for i in 0..made {
            fs.unlink(ROOT_INO, format!("file-{i:06}").as_bytes())
                .unwrap();
        }
        assert_eq!(fs.bytes_used(), 0);
        fs.symlink(ROOT_INO, b"l", &[b'x'; 1000], Cred::default())
            .unwrap();
        fs.rename(ROOT_INO, b"l", ROOT_INO, b"a-longer-name")
            .unwrap();
        fs.unlink(ROOT_INO, b"a-longer-name").unwrap();
        assert_eq!(fs.bytes_used(), 0);
    }

    #[test]
    fn rename_rules() {
        let fs = RumpFs::new(1 << 20);
        let a = fs
            .create(ROOT_INO, b"a", FileKind::Dir, 0o755, Cred::default())
            .unwrap();
        let _b = fs
            .create(a, b"b", FileKind::Dir, 0o755, Cred::default())
            .unwrap();
        let b = fs.lookup(a, b"b").unwrap();
        assert_eq!(fs.rename(ROOT_INO, b"a", b, b"x"), Err(Errno(EINVAL)));
        fs.create(ROOT_INO, b"f", FileKind::Reg, 0o644, Cred::default())
            .unwrap();
        assert_eq!(
            fs.rename(ROOT_INO, b"f", ROOT_INO, b"a"),
            Err(Errno(EISDIR))
        );
        assert_eq!(
            fs.rename(ROOT_INO, b"a", ROOT_INO, b"f"),
            Err(Errno(ENOTDIR))
        );
        fs.rename(a, b"b", ROOT_INO, b"c").unwrap();
        assert_eq!(
            fs.lookup(fs.lookup(ROOT_INO, b"c").unwrap(), b"..")
                .unwrap(),
            ROOT_INO
        );
        assert_eq!(fs.getattr(a).unwrap().nlink, 2);
        assert_eq!(fs.getattr(ROOT_INO).unwrap().nlink, 4);
    }
}
