//! The file system interface: what a file system component (rumpfs, ext2)
//! gives the kernel's VFS layer. Inode-number based, like NetBSD's vnode
//! operations reduced to what the syscall table needs; the VFS does path
//! walking, descriptors, offsets and permissions above it.
//!
//! Implementations do their own locking: the kernel calls these from many
//! threads at once. Names are byte strings without '/' or NUL, never "." or
//! ".." for create/unlink/rename (the VFS resolves those).
//!
//! A crate of its own so that file system components depend on it and not
//! on the kernel: the kernel re-exports it as `rumpkern::vfs`. The byte
//! store a file system reads and writes (`vfs_cache::Store`) stays with the
//! buffer cache.

#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use netbsd_abi::stat::Timespec;
use netbsd_abi::Errno;

pub type Ino = u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileKind {
    Dir,
    Reg,
    Lnk,
    Blk,
    Chr,
    Fifo,
    Sock,
}

impl FileKind {
    /// The `S_IF*` bits of this kind.
    pub fn mode_bits(self) -> u32 {
        use netbsd_abi::stat::*;
        match self {
            FileKind::Dir => S_IFDIR,
            FileKind::Reg => S_IFREG,
            FileKind::Lnk => S_IFLNK,
            FileKind::Blk => S_IFBLK,
            FileKind::Chr => S_IFCHR,
            FileKind::Fifo => S_IFIFO,
            FileKind::Sock => S_IFSOCK,
        }
    }

    /// The `DT_*` value of this kind.
    pub fn dirent_type(self) -> u8 {
        use netbsd_abi::dirent::*;
        match self {
            FileKind::Dir => DT_DIR,
            FileKind::Reg => DT_REG,
            FileKind::Lnk => DT_LNK,
            FileKind::Blk => DT_BLK,
            FileKind::Chr => DT_CHR,
            FileKind::Fifo => DT_FIFO,
            FileKind::Sock => DT_SOCK,
        }
    }
}

/// What `stat(2)` reports, before the VFS adds `st_dev`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ino: Ino,
    pub kind: FileKind,
    /// Permission bits only (07777).
    pub perm: u32,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// 512-byte blocks allocated.
    pub blocks: u64,
    pub blksize: u32,
    pub rdev: u64,
    pub atime: Timespec,
    pub mtime: Timespec,
    pub ctime: Timespec,
    pub birthtime: Timespec,
}

/// Attribute changes; `None` leaves a field alone. `size` truncates or
/// extends (with a hole).
#[derive(Clone, Debug, Default)]
pub struct SetAttr {
    pub perm: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<Timespec>,
    pub mtime: Option<Timespec>,
}

/// One directory entry from [`FileSystem::readdir`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: Ino,
    pub kind: FileKind,
    pub name: Vec<u8>,
    /// The cookie that resumes the listing just after this entry.
    pub next: u64,
}

/// `statvfs`-like totals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FsStat {
    pub block_size: u32,
    pub blocks: u64,
    pub blocks_free: u64,
    pub files: u64,
    pub files_free: u64,
}

/// Who is creating a node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cred {
    pub uid: u32,
    pub gid: u32,
}

pub trait FileSystem: Send + Sync {
    /// The type name, as `mount(2)` spells it ("rumpfs", "ext2fs").
    fn type_name(&self) -> &'static str;
    fn root(&self) -> Ino;
    fn read_only(&self) -> bool {
        false
    }
    fn lookup(&self, dir: Ino, name: &[u8]) -> Result<Ino, Errno>;
    fn getattr(&self, ino: Ino) -> Result<Attr, Errno>;
    fn setattr(&self, ino: Ino, set: &SetAttr) -> Result<Attr, Errno>;
    /// Create a regular file, directory, or device/fifo node. `EEXIST` if
    /// the name is taken.
    fn create(
        &self,
        dir: Ino,
        name: &[u8],
        kind: FileKind,
        perm: u32,
        cred: Cred,
    ) -> Result<Ino, Errno>;
    /// A device node (or FIFO, socket, file) `name` in `dir` with device
    /// number `rdev` (NetBSD's `dev_t`). A file system that keeps no
    /// device numbers refuses any but 0 rather than make a node that lies.
    fn mknod(
        &self,
        dir: Ino,
        name: &[u8],
        kind: FileKind,
        perm: u32,
        rdev: u64,
        cred: Cred,
    ) -> Result<Ino, Errno> {
        if rdev != 0 {
            return Err(Errno(netbsd_abi::errno::EOPNOTSUPP));
        }
        self.create(dir, name, kind, perm, cred)
    }
    fn symlink(&self, dir: Ino, name: &[u8], target: &[u8], cred: Cred) -> Result<Ino, Errno>;
    fn readlink(&self, ino: Ino) -> Result<Vec<u8>, Errno>;
    /// A new name `newname` in `newdir` for `ino` (not a directory).
    fn link(&self, ino: Ino, newdir: Ino, newname: &[u8]) -> Result<(), Errno>;
    /// Remove a non-directory name.
    fn unlink(&self, dir: Ino, name: &[u8]) -> Result<(), Errno>;
    /// Remove an empty directory (`ENOTEMPTY` otherwise).
    fn rmdir(&self, dir: Ino, name: &[u8]) -> Result<(), Errno>;
    /// POSIX rename, replacing a compatible target.
    fn rename(&self, fromdir: Ino, fromname: &[u8], todir: Ino, toname: &[u8])
        -> Result<(), Errno>;
    /// Read at `off`; a short count only at end of file.
    fn read(&self, ino: Ino, off: u64, buf: &mut [u8]) -> Result<usize, Errno>;
    /// Write at `off`, extending the file (holes read as zeros).
    fn write(&self, ino: Ino, off: u64, buf: &[u8]) -> Result<usize, Errno>;
    /// Call `f` for each entry from `cookie` on (0 = start, "." and ".."
    /// included) until it returns false.
    fn readdir(
        &self,
        dir: Ino,
        cookie: u64,
        f: &mut dyn FnMut(DirEntry) -> bool,
    ) -> Result<(), Errno>;
    /// Make one file's data and metadata durable.
    fn fsync(&self, ino: Ino) -> Result<(), Errno>;
    /// Write every dirty piece of this file system to its device and flush
    /// the device. An error is reported, and the dirty data kept.
    fn sync(&self) -> Result<(), Errno>;
    /// Final sync and clean-state marking; no call follows a successful one.
    fn unmount(&self) -> Result<(), Errno>;
    fn statfs(&self) -> Result<FsStat, Errno>;
    /// The VFS holds `ino` open (a descriptor refers to it).
    fn open(&self, _ino: Ino) {}
    /// The last descriptor on `ino` closed: an unlinked inode may go now.
    fn release(&self, _ino: Ino) {}
    /// When this file system's changed metadata must next be written back
    /// under `delays` (`None`: nothing waits). The kernel's syncer asks.
    fn writeback_due(&self, _delays: &SyncDelays) -> Option<Instant> {
        None
    }
    /// Write back changed metadata now, in the order the file system
    /// needs to stay repairable after a crash; no device flush. The
    /// syncer's pass; file data is the cache's business.
    fn write_back(&self) -> Result<(), Errno> {
        Ok(())
    }
    /// What to call at the first change after a write-back (so a syncer
    /// sleeping with nothing to do learns of work).
    fn set_dirty_hook(&self, _hook: Arc<dyn Fn() + Send + Sync>) {}
}

/// How long changes may stay in memory before the syncer writes them:
/// NetBSD's `vfs.sync.filedelay`, `dirdelay` and `metadelay`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncDelays {
    /// File data.
    pub file: Duration,
    /// Directory blocks.
    pub dir: Duration,
    /// Other metadata (inodes, indirect blocks, bitmaps, superblock).
    pub meta: Duration,
}

impl Default for SyncDelays {
    /// NetBSD's defaults: 30, 15 and 10 seconds.
    fn default() -> SyncDelays {
        SyncDelays {
            file: Duration::from_secs(30),
            dir: Duration::from_secs(15),
            meta: Duration::from_secs(10),
        }
    }
}
