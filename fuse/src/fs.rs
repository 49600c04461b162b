//! The FUSE file system: host requests (by FUSE node number) turned into
//! path and descriptor calls on a [`Backend`]. Node numbers are handed out
//! per kernel (st_dev, st_ino); each node remembers the directory and name
//! it was last found under, so its path can be rebuilt.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, Errno as FErrno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, InitFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen,
    ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};
use netbsd_abi::errno::*;
use netbsd_abi::fcntl as nb;
use netbsd_abi::stat::*;
use netbsd_abi::Errno;
use parking_lot::{Mutex, RwLock};

use crate::host;
use crate::sys::{systime, Backend, Syscalls, R};

/// The read-ahead asked for at INIT, and set on the mount
/// ([`host::set_readahead`]): the largest READ the host then sends.
pub const MAX_READAHEAD: u32 = 1 << 20;

/// How the adapter serves.
#[derive(Clone, Debug)]
pub struct Options {
    /// Refuse every change with `EROFS`.
    pub read_only: bool,
    /// Attribute and entry timeout.
    pub ttl: Duration,
    /// Let the host cache writes (`FUSE_WRITEBACK_CACHE`) and keep file
    /// pages across opens: right only when this mount is the tree's only
    /// writer.
    pub writeback: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            read_only: false,
            ttl: Duration::from_secs(1),
            writeback: false,
        }
    }
}

struct Node {
    /// The (directory, name) pairs it is known under, the most recent
    /// first; empty once every one is unlinked or replaced.
    names: Vec<(u64, Vec<u8>)>,
    key: (u64, u64),
    nlookup: u64,
    nlink: u32,
}

struct Nodes {
    by_ino: HashMap<u64, Node>,
    by_key: HashMap<(u64, u64), u64>,
    by_name: HashMap<(u64, Vec<u8>), u64>,
    next: u64,
}

impl Nodes {
    /// Record `name` in `parent` as naming node `ino`.
    fn add_name(&mut self, ino: u64, parent: u64, name: &[u8]) {
        let k = (parent, name.to_vec());
        if let Some(old) = self.by_name.insert(k.clone(), ino) {
            if old != ino {
                if let Some(n) = self.by_ino.get_mut(&old) {
                    n.names.retain(|x| *x != k);
                }
            }
        }
        if let Some(n) = self.by_ino.get_mut(&ino) {
            n.names.retain(|x| *x != k);
            n.names.insert(0, k);
            // Bounded: a file with thousands of links keeps the latest.
            n.names.truncate(16);
        }
    }

    /// `name` in `parent` no longer exists.
    fn drop_name(&mut self, parent: u64, name: &[u8]) {
        let k = (parent, name.to_vec());
        let Some(ino) = self.by_name.remove(&k) else {
            return;
        };
        let mut drop_key = None;
        if let Some(n) = self.by_ino.get_mut(&ino) {
            n.names.retain(|x| *x != k);
            if n.names.is_empty() && n.nlink <= 1 && ino != ROOT {
                // Its inode number may come back for a new file: that one
                // gets a fresh node.
                drop_key = Some(n.key);
            }
        }
        if let Some(key) = drop_key {
            if self.by_key.get(&key) == Some(&ino) {
                self.by_key.remove(&key);
            }
        }
    }
}

enum Handle<P> {
    File {
        sys: Arc<P>,
        fd: i32,
    },
    /// A directory's entries as read at open, and the process that read
    /// them (readdirplus looks the entries up as it).
    Dir {
        entries: Vec<(Vec<u8>, u64, FileType)>,
        sys: Arc<P>,
    },
}

/// The adapter.
pub struct RumpFuse<B: Backend> {
    backend: B,
    /// The served tree's path in the kernel ("/" or a subtree).
    base: Vec<u8>,
    opts: Options,
    nodes: RwLock<Nodes>,
    handles: Mutex<HashMap<u64, Arc<Handle<B::Proc>>>>,
    next_fh: AtomicU64,
    /// The largest single read or write handed to the kernel.
    max_io: usize,
}

const ROOT: u64 = 1;

fn fe(e: Errno) -> FErrno {
    FErrno::from_i32(e.to_host())
}

fn kind_of(mode: u32) -> FileType {
    match mode & S_IFMT {
        S_IFDIR => FileType::Directory,
        S_IFLNK => FileType::Symlink,
        S_IFBLK => FileType::BlockDevice,
        S_IFCHR => FileType::CharDevice,
        S_IFIFO => FileType::NamedPipe,
        S_IFSOCK => FileType::Socket,
        _ => FileType::RegularFile,
    }
}

fn dt_kind(t: u8) -> FileType {
    use netbsd_abi::dirent::*;
    match t {
        DT_DIR => FileType::Directory,
        DT_LNK => FileType::Symlink,
        DT_BLK => FileType::BlockDevice,
        DT_CHR => FileType::CharDevice,
        DT_FIFO => FileType::NamedPipe,
        DT_SOCK => FileType::Socket,
        _ => FileType::RegularFile,
    }
}

fn attr_of(ino: u64, st: &Stat) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size: st.size.max(0) as u64,
        blocks: st.blocks.max(0) as u64,
        atime: systime(st.atime),
        mtime: systime(st.mtime),
        ctime: systime(st.ctime),
        crtime: systime(st.birthtime),
        kind: kind_of(st.mode),
        perm: (st.mode & 0o7777) as u16,
        nlink: st.nlink,
        uid: st.uid,
        gid: st.gid,
        rdev: st.rdev as u32,
        blksize: if st.blksize > 0 {
            st.blksize as u32
        } else {
            4096
        },
        flags: 0,
    }
}

/// Host `open(2)` flags to NetBSD's.
fn open_flags(host: i32) -> i32 {
    let mut f = host & libc::O_ACCMODE;
    let map = [
        (libc::O_CREAT, nb::O_CREAT),
        (libc::O_EXCL, nb::O_EXCL),
        (libc::O_TRUNC, nb::O_TRUNC),
        (libc::O_APPEND, nb::O_APPEND),
        (libc::O_NONBLOCK, nb::O_NONBLOCK),
        (libc::O_DIRECTORY, nb::O_DIRECTORY),
        (libc::O_NOFOLLOW, nb::O_NOFOLLOW),
        (libc::O_DSYNC, nb::O_DSYNC),
    ];
    for (h, n) in map {
        if host & h == h {
            f |= n;
        }
    }
    if host & libc::O_SYNC == libc::O_SYNC {
        f |= nb::O_SYNC;
    }
    f
}

fn time_set(t: Option<TimeOrNow>) -> Timespec {
    match t {
        None => Timespec::OMIT,
        Some(TimeOrNow::Now) => Timespec::NOW,
        Some(TimeOrNow::SpecificTime(st)) => {
            let (sec, nsec) = match st.duration_since(std::time::UNIX_EPOCH) {
                Ok(d) => (d.as_secs() as i64, d.subsec_nanos() as i64),
                Err(e) => (-(e.duration().as_secs() as i64), 0),
            };
            Timespec { sec, nsec }
        }
    }
}

impl<B: Backend> RumpFuse<B> {
    /// Serve the kernel tree at `base` ("/" for all of it).
    pub fn new(backend: B, base: &[u8], opts: Options) -> R<RumpFuse<B>> {
        let mut base = base.to_vec();
        while base.len() > 1 && base.ends_with(b"/") {
            base.pop();
        }
        if base.first() != Some(&b'/') {
            return Err(Errno(EINVAL));
        }
        let root = backend.caller(0, 0)?;
        let st = root.lstat(&base)?;
        if !st.is_dir() {
            return Err(Errno(ENOTDIR));
        }
        let mut by_ino = HashMap::new();
        let mut by_key = HashMap::new();
        let key = (st.dev, st.ino);
        by_ino.insert(
            ROOT,
            Node {
                names: Vec::new(),
                key,
                nlookup: 1,
                nlink: st.nlink,
            },
        );
        by_key.insert(key, ROOT);
        Ok(RumpFuse {
            backend,
            base,
            opts,
            nodes: RwLock::new(Nodes {
                by_ino,
                by_key,
                by_name: HashMap::new(),
                next: ROOT + 1,
            }),
            handles: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            max_io: usize::MAX,
        })
    }

    /// Hand the kernel no single read or write larger than `bytes` (its
    /// `MAXPHYS`: 64 KiB for NetBSD's, whose UDF asserts on larger
    /// transfers): a larger FUSE request becomes several calls.
    pub fn max_io(mut self, bytes: usize) -> Self {
        self.max_io = bytes.max(512);
        self
    }

    /// Run `f` as the request's caller: a kernel process with its uid and
    /// gid. FUSE tells neither the supplementary groups; when the kernel
    /// refuses (`EACCES`, `EPERM`) a caller that has some, `f` runs again
    /// in a process that has them too (they are read from the host only
    /// then, as libfuse's getgroups does). A refused call has changed
    /// nothing, or only what running it again does anyway (the attributes
    /// a SETATTR set before the refused one).
    fn as_caller<T>(&self, req: &Request, f: impl Fn(Arc<B::Proc>) -> R<T>) -> R<T> {
        let (uid, gid) = (req.uid(), req.gid());
        let r = f(self.backend.caller(uid, gid)?);
        match r {
            Err(e) if (e.0 == EACCES || e.0 == EPERM) && uid != 0 => {
                match host::groups_of(req.pid()).filter(|g| g.iter().any(|&x| x != gid)) {
                    Some(groups) => f(self.backend.caller_in_groups(uid, gid, &groups)?),
                    None => Err(e),
                }
            }
            r => r,
        }
    }

    fn rw(&self) -> R<()> {
        if self.opts.read_only {
            Err(Errno(EROFS))
        } else {
            Ok(())
        }
    }

    /// The kernel path of node `ino`.
    fn path(&self, ino: u64) -> R<Vec<u8>> {
        let t = self.nodes.read();
        let mut parts: Vec<&[u8]> = Vec::new();
        let mut cur = ino;
        let mut depth = 0;
        while cur != ROOT {
            let n = t.by_ino.get(&cur).ok_or(Errno(ENOENT))?;
            let (parent, name) = n.names.first().ok_or(Errno(ENOENT))?;
            parts.push(name);
            cur = *parent;
            depth += 1;
            if depth > 4096 {
                // A cycle can only come from a bug; never loop forever.
                return Err(Errno(ELOOP));
            }
        }
        let mut p = self.base.clone();
        for c in parts.iter().rev() {
            if p.last() != Some(&b'/') {
                p.push(b'/');
            }
            p.extend_from_slice(c);
        }
        Ok(p)
    }

    fn child(&self, parent: u64, name: &OsStr) -> R<Vec<u8>> {
        let mut p = self.path(parent)?;
        if p.last() != Some(&b'/') {
            p.push(b'/');
        }
        p.extend_from_slice(name.as_bytes());
        Ok(p)
    }

    /// Record that `st` was found as `name` in `parent`; returns its node
    /// number. `lookups` is added to its lookup count.
    fn remember(&self, parent: u64, name: &[u8], st: &Stat, lookups: u64) -> u64 {
        let key = (st.dev, st.ino);
        let mut t = self.nodes.write();
        if let Some(&ino) = t.by_key.get(&key) {
            if let Some(n) = t.by_ino.get_mut(&ino) {
                n.nlookup += lookups;
                n.nlink = st.nlink;
                if ino != ROOT {
                    t.add_name(ino, parent, name);
                }
                return ino;
            }
        }
        let ino = t.next;
        t.next += 1;
        t.by_ino.insert(
            ino,
            Node {
                names: Vec::new(),
                key,
                nlookup: lookups,
                nlink: st.nlink,
            },
        );
        t.by_key.insert(key, ino);
        t.add_name(ino, parent, name);
        ino
    }

    /// The name `name` in `parent` is gone (unlink, rmdir, replaced).
    fn forget_name(&self, parent: u64, name: &[u8]) {
        self.nodes.write().drop_name(parent, name);
    }

    fn entry_for(&self, sys: &B::Proc, parent: u64, name: &OsStr, path: &[u8]) -> R<FileAttr> {
        let st = sys.lstat(path)?;
        let ino = self.remember(parent, name.as_bytes(), &st, 1);
        Ok(attr_of(ino, &st))
    }

    fn add_handle(&self, h: Handle<B::Proc>) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles.lock().insert(fh, Arc::new(h));
        fh
    }

    fn handle(&self, fh: FileHandle) -> R<Arc<Handle<B::Proc>>> {
        self.handles.lock().get(&fh.0).cloned().ok_or(Errno(EBADF))
    }

    fn file(&self, fh: FileHandle) -> R<(Arc<B::Proc>, i32)> {
        match &*self.handle(fh)? {
            Handle::File { sys, fd } => Ok((sys.clone(), *fd)),
            Handle::Dir { .. } => Err(Errno(EISDIR)),
        }
    }

    fn stat_ino(&self, sys: &B::Proc, ino: u64, fh: Option<FileHandle>) -> R<FileAttr> {
        if let Some(fh) = fh {
            if let Ok((fsys, fd)) = self.file(fh) {
                return Ok(attr_of(ino, &fsys.fstat(fd)?));
            }
        }
        let p = self.path(ino)?;
        let st = sys.lstat(&p)?;
        if let Some(n) = self.nodes.write().by_ino.get_mut(&ino) {
            n.nlink = st.nlink;
        }
        Ok(attr_of(ino, &st))
    }

    /// Flags for a kernel open: with the write-back cache the host may read
    /// through a write-only open, and does appends itself.
    fn kernel_open_flags(&self, host: i32) -> i32 {
        let mut f = open_flags(host);
        if self.opts.writeback {
            if f & nb::O_ACCMODE == nb::O_WRONLY {
                f = (f & !nb::O_ACCMODE) | nb::O_RDWR;
            }
            f &= !nb::O_APPEND;
        }
        f
    }

    fn fopen_flags(&self) -> FopenFlags {
        if self.opts.writeback {
            FopenFlags::FOPEN_KEEP_CACHE
        } else {
            FopenFlags::empty()
        }
    }

    #[allow(clippy::too_many_arguments)] // the FUSE request's own fields
    fn do_setattr(
        &self,
        req: &Request,
        ino: u64,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        fh: Option<FileHandle>,
    ) -> R<FileAttr> {
        self.as_caller(req, |sys| {
            let file = fh.and_then(|h| self.file(h).ok());
            let need_path = || self.path(ino);
            if mode.is_some()
                || uid.is_some()
                || gid.is_some()
                || size.is_some()
                || atime.is_some()
                || mtime.is_some()
            {
                self.rw()?;
            }
            if let Some(m) = mode {
                match &file {
                    Some((s, fd)) => s.fchmod(*fd, m & 0o7777)?,
                    None => sys.chmod(&need_path()?, m & 0o7777)?,
                }
            }
            if uid.is_some() || gid.is_some() {
                let (u, g) = (uid.unwrap_or(u32::MAX), gid.unwrap_or(u32::MAX));
                match &file {
                    Some((s, fd)) => s.fchown(*fd, u, g)?,
                    None => sys.lchown(&need_path()?, u, g)?,
                }
            }
            if let Some(sz) = size {
                let sz = i64::try_from(sz).map_err(|_| Errno(EFBIG))?;
                match &file {
                    Some((s, fd)) => s.ftruncate(*fd, sz)?,
                    None => sys.truncate(&need_path()?, sz)?,
                }
            }
            if atime.is_some() || mtime.is_some() {
                let t = [time_set(atime), time_set(mtime)];
                match &file {
                    Some((s, fd)) => s.futimens(*fd, t)?,
                    None => sys.utimens(&need_path()?, t, false)?,
                }
            }
            self.stat_ino(&*sys, ino, fh)
        })
    }

    fn do_readdir(
        &self,
        fh: FileHandle,
        offset: u64,
        mut add: impl FnMut(u64, &[u8], u64, FileType) -> bool,
    ) -> R<()> {
        let h = self.handle(fh)?;
        let Handle::Dir { entries, .. } = &*h else {
            return Err(Errno(ENOTDIR));
        };
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        for (i, (name, kino, kind)) in entries.iter().enumerate().skip(start) {
            if add(*kino, name, i as u64 + 1, *kind) {
                break;
            }
        }
        Ok(())
    }
}

macro_rules! tryr {
    ($reply:ident, $e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return $reply.error(fe(e)),
        }
    };
}

impl<B: Backend> Filesystem for RumpFuse<B> {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let mut want = InitFlags::FUSE_DO_READDIRPLUS | InitFlags::FUSE_PARALLEL_DIROPS;
        if self.opts.writeback {
            want |= InitFlags::FUSE_WRITEBACK_CACHE;
        }
        let _ = config.add_capabilities(want);
        let _ = config.set_max_write(1 << 20);
        let _ = config.set_max_readahead(MAX_READAHEAD);
        let _ = config.set_max_background(64);
        Ok(())
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let r = self.as_caller(req, |sys| {
            let p = self.child(parent.0, name)?;
            self.entry_for(&*sys, parent.0, name, &p)
        });
        let a = match r {
            Ok(a) => a,
            Err(e) if e.0 == ENOENT && self.opts.writeback => {
                // The only writer: the host may remember that the name is
                // absent (node 0), until it creates it itself.
                return reply.entry(
                    &self.opts.ttl,
                    &FileAttr {
                        ino: INodeNo(0),
                        ..empty_attr()
                    },
                    Generation(0),
                );
            }
            Err(e) => return reply.error(fe(e)),
        };
        reply.entry(&self.opts.ttl, &a, Generation(0));
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        if ino.0 == ROOT {
            return;
        }
        let mut t = self.nodes.write();
        let gone = match t.by_ino.get_mut(&ino.0) {
            Some(n) => {
                n.nlookup = n.nlookup.saturating_sub(nlookup);
                n.nlookup == 0
            }
            None => false,
        };
        if gone {
            if let Some(n) = t.by_ino.remove(&ino.0) {
                if t.by_key.get(&n.key) == Some(&ino.0) {
                    t.by_key.remove(&n.key);
                }
                for k in n.names {
                    if t.by_name.get(&k) == Some(&ino.0) {
                        t.by_name.remove(&k);
                    }
                }
            }
        }
    }

    fn getattr(&self, req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let r = self.as_caller(req, |sys| self.stat_ino(&*sys, ino.0, fh));
        let a = tryr!(reply, r);
        reply.attr(&self.opts.ttl, &a);
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut r = self.do_setattr(req, ino.0, mode, uid, gid, size, atime, mtime, fh);
        if let Err(e) = r {
            // Only the host's write-back cache sends a ctime, with the
            // times of a write it flushed: a file system that keeps its
            // own times and cannot set them (NetBSD's NTFS) has still
            // taken the write.
            let cache_times = ctime.is_some()
                && mode.is_none()
                && uid.is_none()
                && gid.is_none()
                && size.is_none();
            if cache_times && (e.0 == EOPNOTSUPP || e.0 == EINVAL) {
                r = self.as_caller(req, |sys| self.stat_ino(&*sys, ino.0, fh));
            }
        }
        let a = tryr!(reply, r);
        reply.attr(&self.opts.ttl, &a);
    }

    fn readlink(&self, req: &Request, ino: INodeNo, reply: ReplyData) {
        let r = self.as_caller(req, |sys| sys.readlink(&self.path(ino.0)?));
        let t = tryr!(reply, r);
        reply.data(&t);
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let r = self.as_caller(req, |sys| {
            self.rw()?;
            let p = self.child(parent.0, name)?;
            if mode & S_IFMT == S_IFIFO {
                sys.mkfifo(&p, mode & 0o7777)?;
            } else {
                sys.mknod(&p, mode, rdev as u64)?;
            }
            self.entry_for(&*sys, parent.0, name, &p)
        });
        let a = tryr!(reply, r);
        reply.entry(&self.opts.ttl, &a, Generation(0));
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let r = self.as_caller(req, |sys| {
            self.rw()?;
            let p = self.child(parent.0, name)?;
            sys.mkdir(&p, mode & 0o7777)?;
            self.entry_for(&*sys, parent.0, name, &p)
        });
        let a = tryr!(reply, r);
        reply.entry(&self.opts.ttl, &a, Generation(0));
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let r = self.as_caller(req, |sys| {
            self.rw()?;
            let p = self.child(parent.0, name)?;
            sys.unlink(&p)?;
            self.forget_name(parent.0, name.as_bytes());
            Ok(())
        });
        tryr!(reply, r);
        reply.ok();
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let r = self.as_caller(req, |sys| {
            self.rw()?;
            let p = self.child(parent.0, name)?;
            sys.rmdir(&p)?;
            self.forget_name(parent.0, name.as_bytes());
            Ok(())
        });
        tryr!(reply, r);
        reply.ok();
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &std::path::Path,
        reply: ReplyEntry,
    ) {
        let r = self.as_caller(req, |sys| {
            self.rw()?;
            let p = self.child(parent.0, link_name)?;
            sys.symlink(target.as_os_str().as_bytes(), &p)?;
            self.entry_for(&*sys, parent.0, link_name, &p)
        });
        let a = tryr!(reply, r);
        reply.entry(&self.opts.ttl, &a, Generation(0));
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let r = self.as_caller(req, |sys| {
            self.rw()?;
            let from = self.child(parent.0, name)?;
            let to = self.child(newparent.0, newname)?;
            if flags.contains(RenameFlags::RENAME_EXCHANGE)
                || flags.contains(RenameFlags::RENAME_WHITEOUT)
            {
                return Err(Errno(EINVAL));
            }
            if flags.contains(RenameFlags::RENAME_NOREPLACE) && sys.lstat(&to).is_ok() {
                return Err(Errno(EEXIST));
            }
            let src = sys.lstat(&from)?;
            sys.rename(&from, &to)?;
            self.forget_name(newparent.0, newname.as_bytes());
            // The moved node now lives under its new name.
            let mut t = self.nodes.write();
            let key = (src.dev, src.ino);
            let ino = t.by_key.get(&key).copied();
            t.drop_name(parent.0, name.as_bytes());
            if let Some(ino) = ino {
                // Dropping its only name may have let go of its key.
                t.by_key.insert(key, ino);
                t.add_name(ino, newparent.0, newname.as_bytes());
            }
            Ok(())
        });
        tryr!(reply, r);
        reply.ok();
    }

    fn link(
        &self,
        req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let r = self.as_caller(req, |sys| {
            self.rw()?;
            let from = self.path(ino.0)?;
            let to = self.child(newparent.0, newname)?;
            sys.link(&from, &to)?;
            let st = sys.lstat(&to)?;
            // Both names now reach the node.
            let n = self.remember(newparent.0, newname.as_bytes(), &st, 1);
            Ok(attr_of(n, &st))
        });
        let a = tryr!(reply, r);
        reply.entry(&self.opts.ttl, &a, Generation(0));
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let r = self.as_caller(req, |sys| {
            let f = self.kernel_open_flags(flags.0);
            if f & nb::O_ACCMODE != nb::O_RDONLY || f & nb::O_TRUNC != 0 {
                self.rw()?;
            }
            let path = self.path(ino.0)?;
            let f = f & !(nb::O_CREAT | nb::O_EXCL);
            let fd = match sys.open(&path, f, 0) {
                // A write-only file widened for the write-back cache: the
                // caller may not read it; open it as asked.
                Err(e)
                    if e.0 == EACCES
                        && f & nb::O_ACCMODE != open_flags(flags.0) & nb::O_ACCMODE =>
                {
                    sys.open(
                        &path,
                        (f & !nb::O_ACCMODE) | (open_flags(flags.0) & nb::O_ACCMODE),
                        0,
                    )?
                }
                r => r?,
            };
            Ok(self.add_handle(Handle::File { sys, fd }))
        });
        let fh = tryr!(reply, r);
        reply.opened(FileHandle(fh), self.fopen_flags());
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let r = (|| {
            let (sys, fd) = self.file(fh)?;
            let off = i64::try_from(offset).map_err(|_| Errno(EINVAL))?;
            let mut buf = vec![0u8; size as usize];
            let mut done = 0;
            while done < buf.len() {
                let end = buf.len().min(done.saturating_add(self.max_io));
                let n = sys.pread(fd, &mut buf[done..end], off + done as i64)?;
                if n == 0 {
                    break;
                }
                done += n;
            }
            buf.truncate(done);
            Ok(buf)
        })();
        let b = tryr!(reply, r);
        reply.data(&b);
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _wf: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let r = (|| {
            self.rw()?;
            let (sys, fd) = self.file(fh)?;
            let off = i64::try_from(offset).map_err(|_| Errno(EINVAL))?;
            let mut done = 0;
            while done < data.len() {
                let end = data.len().min(done.saturating_add(self.max_io));
                let n = sys.pwrite(fd, &data[done..end], off + done as i64)?;
                if n == 0 {
                    return Err(Errno(EIO));
                }
                done += n;
            }
            Ok(done)
        })();
        let n = tryr!(reply, r);
        reply.written(n as u32);
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Nothing to do at close: ENOSYS makes the host stop sending FLUSH,
        // one round trip less per file (dirty pages are still written).
        reply.error(FErrno::ENOSYS);
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let h = self.handles.lock().remove(&fh.0);
        if let Some(h) = h {
            if let Handle::File { sys, fd } = &*h {
                let _ = sys.close(*fd);
            }
        }
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let r = (|| {
            let (sys, fd) = self.file(fh)?;
            sys.fsync(fd)
        })();
        tryr!(reply, r);
        reply.ok();
    }

    fn opendir(&self, req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let r = self.as_caller(req, |sys| {
            let ents = sys.read_dir(&self.path(ino.0)?)?;
            // Inode 0 marks an empty or deleted slot (NetBSD's libc skips
            // them too): never a file.
            let entries = ents
                .into_iter()
                .filter(|d| d.fileno != 0)
                .map(|d| (d.name, d.fileno, dt_kind(d.kind)))
                .collect();
            Ok(self.add_handle(Handle::Dir { entries, sys }))
        });
        let fh = tryr!(reply, r);
        reply.opened(FileHandle(fh), FopenFlags::empty());
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let r = self.do_readdir(fh, offset, |kino, name, next, kind| {
            reply.add(INodeNo(kino.max(1)), next, kind, OsStr::from_bytes(name))
        });
        tryr!(reply, r);
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let r = (|| {
            let sys = match &*self.handle(fh)? {
                Handle::Dir { sys, .. } => sys.clone(),
                Handle::File { .. } => return Err(Errno(ENOTDIR)),
            };
            let dir = self.path(ino.0)?;
            let ttl = self.opts.ttl;
            self.do_readdir(fh, offset, |_kino, name, next, _kind| {
                if name == b"." || name == b".." {
                    // The host does not count lookups of these: report
                    // them without attributes it would cache.
                    let a = FileAttr {
                        ino: INodeNo(if name == b"." { ino.0 } else { ROOT }),
                        ..empty_attr()
                    };
                    return reply.add(
                        a.ino,
                        next,
                        OsStr::from_bytes(name),
                        &Duration::ZERO,
                        &a,
                        Generation(0),
                    );
                }
                let mut p = dir.clone();
                if p.last() != Some(&b'/') {
                    p.push(b'/');
                }
                p.extend_from_slice(name);
                let Ok(st) = sys.lstat(&p) else { return false };
                let n = self.remember(ino.0, name, &st, 0);
                let a = attr_of(n, &st);
                let full = reply.add(
                    INodeNo(n),
                    next,
                    OsStr::from_bytes(name),
                    &ttl,
                    &a,
                    Generation(0),
                );
                if !full {
                    if let Some(node) = self.nodes.write().by_ino.get_mut(&n) {
                        node.nlookup += 1;
                    }
                }
                full
            })
        })();
        tryr!(reply, r);
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.handles.lock().remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn statfs(&self, req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let r = self.as_caller(req, |sys| sys.statvfs(&self.base));
        let s = tryr!(reply, r);
        let bs = s.bsize.min(u32::MAX as u64) as u32;
        reply.statfs(
            s.blocks,
            s.bfree,
            s.bavail,
            s.files,
            s.ffree,
            bs,
            s.namemax as u32,
            s.frsize as u32,
        );
    }

    fn access(&self, req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        let r = self.as_caller(req, |sys| {
            let mut amode = 0;
            if mask.contains(AccessFlags::R_OK) {
                amode |= nb::R_OK;
            }
            if mask.contains(AccessFlags::W_OK) {
                amode |= nb::W_OK;
            }
            if mask.contains(AccessFlags::X_OK) {
                amode |= nb::X_OK;
            }
            if amode & nb::W_OK != 0 {
                self.rw()?;
            }
            sys.access(&self.path(ino.0)?, amode)
        });
        tryr!(reply, r);
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let r = self.as_caller(req, |sys| {
            self.rw()?;
            let p = self.child(parent.0, name)?;
            let f = self.kernel_open_flags(flags) | nb::O_CREAT;
            let fd = sys.open(&p, f, mode & 0o7777)?;
            let st = match sys.fstat(fd) {
                Ok(st) => st,
                Err(e) => {
                    let _ = sys.close(fd);
                    return Err(e);
                }
            };
            let ino = self.remember(parent.0, name.as_bytes(), &st, 1);
            let fh = self.add_handle(Handle::File { sys, fd });
            Ok((attr_of(ino, &st), fh))
        });
        let (a, fh) = tryr!(reply, r);
        reply.created(
            &self.opts.ttl,
            &a,
            Generation(0),
            FileHandle(fh),
            self.fopen_flags(),
        );
    }
}

fn empty_attr() -> FileAttr {
    FileAttr {
        ino: INodeNo(ROOT),
        size: 0,
        blocks: 0,
        atime: SystemTime::UNIX_EPOCH,
        mtime: SystemTime::UNIX_EPOCH,
        ctime: SystemTime::UNIX_EPOCH,
        crtime: SystemTime::UNIX_EPOCH,
        kind: FileType::Directory,
        perm: 0o755,
        nlink: 2,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}
