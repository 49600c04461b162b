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
#![warn(missing_docs)]
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use netbsd_abi::stat::Timespec;
use netbsd_abi::Errno;

/// An inode number: names a file within one file system, stable while the file exists (an unlinked file keeps its number until released). The root's is [`FileSystem::root`].
pub type Ino = u64;

/// The type of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// A directory.
    Dir,
    /// A regular file.
    Reg,
    /// A symbolic link.
    Lnk,
    /// A block device node.
    Blk,
    /// A character device node.
    Chr,
    /// A named pipe.
    Fifo,
    /// A socket node.
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
    /// The inode number.
    pub ino: Ino,
    /// The file type (the `S_IF*` bits of `st_mode`).
    pub kind: FileKind,
    /// Permission bits only (07777).
    pub perm: u32,
    /// Number of names (hard links) the file has.
    pub nlink: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes (for a symbolic link, the target's length).
    pub size: u64,
    /// 512-byte blocks allocated.
    pub blocks: u64,
    /// Preferred I/O size.
    pub blksize: u32,
    /// For a device node: the device it stands for (NetBSD's `dev_t`); else 0.
    pub rdev: u64,
    /// Last access.
    pub atime: Timespec,
    /// Last change of the contents.
    pub mtime: Timespec,
    /// Last change of the inode.
    pub ctime: Timespec,
    /// Creation (zero where the file system does not record it).
    pub birthtime: Timespec,
}

/// Attribute changes; `None` leaves a field alone. `size` truncates or
/// extends (with a hole).
#[derive(Clone, Debug, Default)]
pub struct SetAttr {
    /// New permission bits (07777).
    pub perm: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New size.
    pub size: Option<u64>,
    /// New access time.
    pub atime: Option<Timespec>,
    /// New modification time.
    pub mtime: Option<Timespec>,
}

/// One directory entry from [`FileSystem::readdir`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// The entry's inode.
    pub ino: Ino,
    /// Its type (without a `getattr`).
    pub kind: FileKind,
    /// Its name.
    pub name: Vec<u8>,
    /// The cookie that resumes the listing just after this entry.
    pub next: u64,
}

/// `statvfs`-like totals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FsStat {
    /// Block size of the counts below, in bytes.
    pub block_size: u32,
    /// Blocks that can hold data: the file system's size less its own
    /// metadata (superblocks, group descriptors, bitmaps, inode tables),
    /// as NetBSD's and Linux's statvfs count it.
    pub blocks: u64,
    /// Free blocks.
    pub blocks_free: u64,
    /// Free blocks an unprivileged user may have: free less those reserved
    /// for root (ext2's `s_r_blocks_count`).
    pub blocks_avail: u64,
    /// Inodes in the file system.
    pub files: u64,
    /// Free inodes.
    pub files_free: u64,
}

/// Who is creating a node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cred {
    /// The new node's owner.
    pub uid: u32,
    /// The new node's group.
    pub gid: u32,
}

/// A file system component, as the kernel's VFS layer drives it.
///
/// Every call names files by inode number and may come from any thread at any time: the implementation does its own locking. Names are byte strings without '/' or NUL, never "." or ".." where a name is created or removed. Permission checks are the VFS's; a file system checks only what its format forbids (a read-only mount, a full disk, a name too long).
pub trait FileSystem: Send + Sync {
    /// The type name, as `mount(2)` spells it ("rumpfs", "ext2fs").
    fn type_name(&self) -> &'static str;
    /// The root directory's inode number.
    fn root(&self) -> Ino;
    /// Whether the file system is mounted read-only: the VFS then refuses changes with `EROFS`.
    fn read_only(&self) -> bool {
        false
    }
    /// The inode `name` names in directory `dir` (`ENOENT` if none; `ENOTDIR` if `dir` is not a directory).
    fn lookup(&self, dir: Ino, name: &[u8]) -> Result<Ino, Errno>;
    /// The attributes of `ino`.
    fn getattr(&self, ino: Ino) -> Result<Attr, Errno>;
    /// Change the attributes `set` names; the attributes after the change.
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
    /// A symbolic link `name` in `dir` whose target is `target` (stored as given, not resolved).
    fn symlink(&self, dir: Ino, name: &[u8], target: &[u8], cred: Cred) -> Result<Ino, Errno>;
    /// The target of symbolic link `ino` (`EINVAL` if it is not one).
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
    /// Totals for `statvfs(2)`.
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
