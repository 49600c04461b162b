//! fuse_floor: the benchmark floor of `cargo xtask bench fuse`, not an
//! installed tool. A minimal FUSE file system written with `fuser` that
//! answers every request from a hash map in memory, mounted with the same
//! options and threads as `rump_mount`: what FUSE itself costs on this
//! host, which every FUSE file system here pays.
//!
//!     fuse_floor [-o threads=N] mountpoint
//!
//! Returns once the mount is live; `umount mountpoint` ends it.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::exit;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    InitFlags, KernelConfig, LockOwner, MountOption, OpenFlags, RenameFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs,
    ReplyWrite, Request, SessionACL, TimeOrNow, WriteFlags,
};
use parking_lot::RwLock;
use rumpfuse::host;
use rumprun::getopt::{getopt_with, text, Order};

const TTL: Duration = Duration::from_secs(60);

struct Node {
    attr: FileAttr,
    data: Vec<u8>,
    children: BTreeMap<Vec<u8>, u64>,
}

struct Floor {
    nodes: RwLock<HashMap<u64, Node>>,
    next: AtomicU64,
}

fn now_attr(ino: u64, kind: FileType, perm: u16, uid: u32, gid: u32) -> FileAttr {
    let t = SystemTime::now();
    FileAttr {
        ino: INodeNo(ino),
        size: 0,
        blocks: 0,
        atime: t,
        mtime: t,
        ctime: t,
        crtime: t,
        kind,
        perm,
        nlink: if kind == FileType::Directory { 2 } else { 1 },
        uid,
        gid,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

fn time_of(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::Now => SystemTime::now(),
        TimeOrNow::SpecificTime(t) => t,
    }
}

impl Floor {
    fn new() -> Floor {
        let mut nodes = HashMap::new();
        let (uid, gid) = (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        );
        nodes.insert(
            1,
            Node {
                attr: now_attr(1, FileType::Directory, 0o755, uid, gid),
                data: Vec::new(),
                children: BTreeMap::new(),
            },
        );
        Floor {
            nodes: RwLock::new(nodes),
            next: AtomicU64::new(2),
        }
    }

    /// Make a node `name` in `parent`.
    fn make(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        kind: FileType,
        mode: u32,
        data: Vec<u8>,
    ) -> Result<FileAttr, Errno> {
        let mut t = self.nodes.write();
        let p = t.get(&parent.0).ok_or(Errno::ENOENT)?;
        if p.children.contains_key(name.as_bytes()) {
            return Err(Errno::EEXIST);
        }
        let ino = self.next.fetch_add(1, Ordering::Relaxed);
        let mut attr = now_attr(ino, kind, (mode & 0o7777) as u16, req.uid(), req.gid());
        attr.size = data.len() as u64;
        t.insert(
            ino,
            Node {
                attr,
                data,
                children: BTreeMap::new(),
            },
        );
        let p = t.get_mut(&parent.0).ok_or(Errno::ENOENT)?;
        p.children.insert(name.as_bytes().to_vec(), ino);
        if kind == FileType::Directory {
            p.attr.nlink += 1;
        }
        Ok(attr)
    }
}

impl Filesystem for Floor {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config
            .add_capabilities(InitFlags::FUSE_WRITEBACK_CACHE | InitFlags::FUSE_PARALLEL_DIROPS);
        let _ = config.set_max_write(1 << 20);
        let _ = config.set_max_readahead(1 << 20);
        let _ = config.set_max_background(64);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let t = self.nodes.read();
        let found = t
            .get(&parent.0)
            .and_then(|p| p.children.get(name.as_bytes()))
            .and_then(|i| t.get(i));
        match found {
            Some(n) => reply.entry(&TTL, &n.attr, Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.nodes.read().get(&ino.0) {
            Some(n) => reply.attr(&TTL, &n.attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut t = self.nodes.write();
        let Some(n) = t.get_mut(&ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        if let Some(m) = mode {
            n.attr.perm = (m & 0o7777) as u16;
        }
        if let Some(u) = uid {
            n.attr.uid = u;
        }
        if let Some(g) = gid {
            n.attr.gid = g;
        }
        if let Some(s) = size {
            n.data.resize(s as usize, 0);
            n.attr.size = s;
        }
        if let Some(a) = atime {
            n.attr.atime = time_of(a);
        }
        if let Some(m) = mtime {
            n.attr.mtime = time_of(m);
        }
        reply.attr(&TTL, &n.attr);
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.nodes.read().get(&ino.0) {
            Some(n) => reply.data(&n.data),
            None => reply.error(Errno::ENOENT),
        }
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
        match self.make(req, parent, name, FileType::Directory, mode, Vec::new()) {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let data = target.as_os_str().as_bytes().to_vec();
        match self.make(req, parent, link_name, FileType::Symlink, 0o777, data) {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut t = self.nodes.write();
        let ino = t
            .get_mut(&parent.0)
            .and_then(|p| p.children.remove(name.as_bytes()));
        match ino {
            Some(i) => {
                t.remove(&i);
                reply.ok()
            }
            None => reply.error(Errno::ENOENT),
        }
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.unlink(req, parent, name, reply)
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let mut t = self.nodes.write();
        let Some(ino) = t
            .get_mut(&parent.0)
            .and_then(|p| p.children.remove(name.as_bytes()))
        else {
            return reply.error(Errno::ENOENT);
        };
        match t.get_mut(&newparent.0) {
            Some(p) => {
                p.children.insert(newname.as_bytes().to_vec(), ino);
                reply.ok()
            }
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE);
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let t = self.nodes.read();
        let Some(n) = t.get(&ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        let start = (offset as usize).min(n.data.len());
        let end = start.saturating_add(size as usize).min(n.data.len());
        reply.data(&n.data[start..end]);
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _wf: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut t = self.nodes.write();
        let Some(n) = t.get_mut(&ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        let off = offset as usize;
        if n.data.len() < off + data.len() {
            n.data.resize(off + data.len(), 0);
        }
        n.data[off..off + data.len()].copy_from_slice(data);
        n.attr.size = n.data.len() as u64;
        n.attr.blocks = n.attr.size.div_ceil(512);
        reply.written(data.len() as u32);
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let t = self.nodes.read();
        let Some(n) = t.get(&ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        let dots = [
            (ino.0, FileType::Directory, &b"."[..]),
            (1, FileType::Directory, &b".."[..]),
        ];
        let kids = n.children.iter().map(|(name, i)| {
            let kind = t.get(i).map_or(FileType::RegularFile, |c| c.attr.kind);
            (*i, kind, name.as_slice())
        });
        for (k, (i, kind, name)) in dots
            .into_iter()
            .chain(kids)
            .enumerate()
            .skip(offset as usize)
        {
            if reply.add(INodeNo(i), k as u64 + 1, kind, OsStr::from_bytes(name)) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply.statfs(1 << 24, 1 << 23, 1 << 23, 1 << 20, 1 << 19, 4096, 255, 4096);
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        match self.make(req, parent, name, FileType::RegularFile, mode, Vec::new()) {
            Ok(a) => reply.created(
                &TTL,
                &a,
                Generation(0),
                FileHandle(0),
                FopenFlags::FOPEN_KEEP_CACHE,
            ),
            Err(e) => reply.error(e),
        }
    }
}

fn die(msg: impl std::fmt::Display) -> ! {
    eprintln!("fuse_floor: {msg}");
    exit(1)
}

fn main() {
    // The mount point may have any name: bytes, not `String`s.
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let usage = || -> ! {
        eprintln!("usage: fuse_floor [-o threads=N] mountpoint");
        exit(1)
    };
    let p = getopt_with(&args, "o:", Order::Permute).unwrap_or_else(|e| {
        eprintln!("fuse_floor: {e}");
        usage()
    });
    let mut threads = 4;
    for (_, v) in &p.opts {
        let v = v.as_deref().unwrap_or_default();
        for o in text("-o ", v).unwrap_or_else(|e| die(e)).split(',') {
            match o.strip_prefix("threads=").map(str::parse::<usize>) {
                Some(Ok(n)) if n >= 1 => threads = n,
                _ if o.is_empty() => {}
                _ => die(format!("{o}: unknown option")),
            }
        }
    }
    let [mnt] = p.operands.as_slice() else {
        usage()
    };
    let mnt = host::check_mountpoint(Path::new(mnt)).unwrap_or_else(|e| die(e));
    // SAFETY: no thread exists yet: nothing above starts one (argument
    // parsing and the mount point check).
    let ready = unsafe { host::background(false) }.unwrap_or_else(|e| die(format!("fork: {e}")));
    let mut cfg = Config::default();
    cfg.mount_options = vec![
        MountOption::FSName("floor".into()),
        MountOption::Subtype("fuse_floor".into()),
        MountOption::RW,
        MountOption::DefaultPermissions,
    ];
    cfg.acl = SessionACL::All;
    cfg.n_threads = Some(threads);
    cfg.clone_fd = true;
    let session = fuser::Session::new(Floor::new(), &mnt, &cfg)
        .unwrap_or_else(|e| die(format!("{}: {e}", mnt.display())));
    let _ = host::set_readahead(&mnt);
    ready.ok();
    let _ = session.run();
}
