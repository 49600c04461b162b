//! ext2 (revision 0 and 1) on a vfs-cache store (docs/design.md, "ext2").
//!
//! [`Ext2Fs`] implements the kernel's inode-number based
//! [`FileSystem`](vfs::FileSystem) trait on any
//! [`Store`](vfs_cache::Store). Inode numbers are ext2's own (the root is 2);
//! `type_name()` is `"ext2fs"`.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use ext2::{Ext2Fs, MountOptions};
//! # fn demo(store: Arc<dyn vfs_cache::Store>) -> Result<(), netbsd_abi::Errno> {
//! let fs: Arc<Ext2Fs> = Ext2Fs::mount(store.clone(), /* read_only */ false)?;
//! # drop(fs);
//! // or, with the reason for a refusal:
//! let fs = Ext2Fs::mount_with(store, MountOptions { read_only: false, force: false })
//!     .map_err(|e| { eprintln!("ext2fs: {e}"); e.errno() })?;
//! # drop(fs);
//! # Ok(())
//! # }
//! ```
//!
//! # What is kept where
//!
//! In memory: the superblock, the group descriptors, the bitmaps (loaded
//! on first use), recently used inodes and indirect blocks, and a name
//! index of recently used directories. Changed inodes, indirect blocks,
//! bitmaps, descriptors and superblock are written back by `sync`, `fsync`
//! and `unmount` (and, best effort, when an `Ext2Fs` is dropped
//! unmounted); inodes and indirect blocks also when their caches fill up.
//! Directory blocks and file data go to the store as each operation
//! finishes (the store itself is a write-back cache). Data writes that
//! begin or end inside one of the store's 64 KiB blocks are padded with
//! zeros over neighbouring free blocks, so the store need not read the
//! block first. One lock serialises
//! the operations of a mount; `readdir` calls its callback without it.
//!
//! # On-disk format supported
//!
//! Block sizes 1, 2 and 4 KiB; revision 0 (128-byte inodes, no features)
//! and revision 1 with: `filetype`; `sparse_super`; `large_file` (set when
//! a file first exceeds 2 GiB); `resize_inode` (reserved GDT blocks and
//! inode 7 are never touched); `dir_index` (directories are read and
//! written linearly — valid for an indexed directory — and a directory this
//! component modifies loses its index flag so the index never goes stale);
//! `ext_attr` (xattr blocks and in-inode attributes are kept; freeing an
//! inode drops its reference to its xattr block, freeing the block with
//! the last one); `flex_bg` (locations come from the group descriptors);
//! `extra_isize` (new inodes get `s_want_extra_isize`; nanosecond times
//! and creation time are stored when the inode has room). An ext3 image
//! with a clean journal is mounted as ext2, as NetBSD does: the journal is
//! never written and stays clean. See [`check_features`] for what is
//! refused (`EFTYPE`) or forces read-only (writes then fail with `EROFS`).
//!
//! # Policies
//!
//! * Clean state: mount marks the superblock not clean and counts the
//!   mount; `unmount` writes everything, marks it clean and syncs the
//!   store. A full `sync()` (what a halt does) also leaves it marked clean;
//!   the next change first marks it not clean again, durably. `fsync` does
//!   not mark it clean. A read-write mount of a file system that is not
//!   clean, or has errors, is refused with `EPERM` as NetBSD does, unless
//!   [`MountOptions::force`] (NetBSD's `MNT_FORCE`); read-only is allowed.
//! * Allocation: data blocks go after the previous block of the file
//!   (sequential writes are contiguous, indirect blocks interleaved);
//!   directories are spread over groups, files stay in their directory's
//!   group. Reserved blocks (`s_r_blocks_count`) are not held back: the
//!   trait carries no credentials for writes, callers are treated as root.
//! * `ENOSPC` comes when no block or inode is left for what an operation
//!   needs; a write that fits partly returns the short count. Nothing
//!   half-allocated is left behind.
//! * New nodes: owner from the `Cred`, group from the parent directory
//!   (BSD semantics, as NetBSD's ext2fs). Device nodes made by `mknod`
//!   keep their device number (`rdev`) in the inode.
//! * POSIX errors as NetBSD's: `unlink` of a directory and `link` to one
//!   are `EPERM`; renaming a directory into itself is `EINVAL`; names longer
//!   than 255 bytes `ENAMETOOLONG`; symlink targets up to 1023 bytes (and
//!   under one block); link counts up to 32000 (`EMLINK`).
//! * Times: creation sets all four; write sets mtime and ctime; attribute
//!   changes set ctime; directory changes set the directory's mtime and
//!   ctime; atime is relaxed (updated on read only when older than mtime or
//!   ctime, or a day old).
//! * An unlinked inode still open (`open`/`release`) is freed at its last
//!   `release`, or at `unmount`.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod alloc;
mod bmap;
mod dir;
mod error;
mod fail;
mod fs;
mod icache;
mod inode;
mod meta;
mod order;
mod readwrite;
mod sb;
mod vnops;

use std::sync::Arc;

use netbsd_abi::Errno;
use std::collections::HashMap;

use fail::Fail;
use rumpuser::locks::{Mutex, RwLock};
use vfs::{Attr, Cred, DirEntry, FileKind, FileSystem, FsStat, Ino, SetAttr};
use vfs_cache::Store;
use vnops::NewNode;

pub use error::{FeatureError, GeometryError, MountError};
pub use sb::{check_features, features, Compat, EXT2_MAGIC, SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE};

/// How to mount.
#[derive(Clone, Copy, Debug, Default)]
pub struct MountOptions {
    /// Mount read-only: changes fail with `EROFS`.
    pub read_only: bool,
    /// Mount read-write even if the superblock says the file system was
    /// not cleanly unmounted or has errors (NetBSD's `MNT_FORCE`).
    /// Without it such a read-write mount fails with `EPERM`, as NetBSD's
    /// does.
    pub force: bool,
}

/// A mounted ext2 file system.
///
/// Locking: `inner` guards the file system's metadata (bitmaps, inode
/// and indirect-block caches, directories) and is never held across a
/// host I/O that the cache could make outside it: the data of a read is
/// copied from the store after it is dropped, a write first waits for
/// room in the cache without it, and fsync/sync flush the store without
/// it. A file's blocks stay its own meanwhile under that file's lock in
/// `ilocks` (shared for reads; exclusive for writes and truncation, the
/// only operations that free or replace an open file's blocks), taken
/// before `inner`. A reading operation (lookup, getattr, readlink, readdir,
/// a read's mapping) that needs a metadata block the cache lacks stops,
/// reads it without `inner`, and runs again (`Ext2Fs::read_op`); an
/// operation that changes the file system still reads missing metadata
/// under `inner`, once it has begun changing it.
pub struct Ext2Fs {
    inner: Mutex<fs::Fs>,
    /// Serialises write-back epochs (syncer, fsync, sync); held across
    /// their device writes, which `inner` never is.
    pass: Mutex<()>,
    store: Arc<dyn Store>,
    ilocks: Mutex<HashMap<u32, Arc<RwLock<()>>>>,
    read_only: bool,
    /// Why a read-write request became read-only, if it did.
    ro_reason: Option<String>,
}

impl Ext2Fs {
    /// Mount the file system on `store`. Errors: `EINVAL` (not ext2, bad
    /// geometry, device too small), `EFTYPE` (an incompatible feature this
    /// component lacks, e.g. extents or a journal needing recovery),
    /// `EPERM` (read-write mount of a file system that was not cleanly
    /// unmounted; see [`MountOptions::force`]). Use [`Ext2Fs::mount_with`]
    /// for the reason text.
    pub fn mount(store: Arc<dyn Store>, read_only: bool) -> Result<Arc<Ext2Fs>, Errno> {
        Self::mount_with(
            store,
            MountOptions {
                read_only,
                force: false,
            },
        )
        .map_err(|e| e.errno())
    }

    /// [`Ext2Fs::mount`] with options and a descriptive error.
    pub fn mount_with(
        store: Arc<dyn Store>,
        opts: MountOptions,
    ) -> Result<Arc<Ext2Fs>, MountError> {
        let (fs, ro_reason) = fs::Fs::mount(store, opts)?;
        let read_only = fs.read_only();
        let store = fs.store();
        Ok(Arc::new(Ext2Fs {
            inner: Mutex::new(fs),
            pass: Mutex::new(()),
            store,
            ilocks: Mutex::new(HashMap::new()),
            read_only,
            ro_reason,
        }))
    }

    /// Read the superblock from `store` and say whether it can be mounted
    /// (see [`check_features`]).
    pub fn probe(store: &dyn Store) -> Result<Compat, MountError> {
        let mut sb = vec![0u8; SUPERBLOCK_SIZE];
        if store.size() < SUPERBLOCK_OFFSET + SUPERBLOCK_SIZE as u64 {
            return Err(MountError::TooSmall);
        }
        store
            .read(SUPERBLOCK_OFFSET, &mut sb)
            .map_err(MountError::ReadSuperblock)?;
        Ok(check_features(&sb)?)
    }

    /// [`check_features`] on a 1024-byte superblock: `Err` says why it
    /// cannot be mounted, `Ok(Compat::ReadOnly(why))` why only read-only.
    pub fn check_features(sb: &[u8]) -> Result<Compat, FeatureError> {
        check_features(sb)
    }

    /// If a read-write mount was turned read-only by a read-only-compatible
    /// feature, the reason.
    pub fn read_only_reason(&self) -> Option<&str> {
        self.ro_reason.as_deref()
    }

    /// The lock of inode `ino`'s blocks; dropped from the table by
    /// [`Ext2Fs::ilock_done`] once nobody holds it.
    fn ilock(&self, ino: u32) -> Arc<RwLock<()>> {
        self.ilocks
            .lock()
            .entry(ino)
            .or_insert_with(|| Arc::new(RwLock::new(())))
            .clone()
    }

    fn ilock_done(&self, ino: u32, l: Arc<RwLock<()>>) {
        let mut t = self.ilocks.lock();
        // Ours and the table's: nobody else holds or waits for it.
        if Arc::strong_count(&l) == 2 {
            t.remove(&ino);
        }
    }

    /// Run an operation that reads (lookup, getattr, readdir, read
    /// mapping). A metadata block it needs that the cache lacks is read
    /// without the file system lock and the operation run again (a few
    /// times at most; then it reads under the lock), so that host I/O of
    /// one reader never stops the others.
    fn read_op<T>(&self, mut op: impl FnMut(&mut fs::Fs) -> fail::R<T>) -> Result<T, Errno> {
        const RETRIES: usize = 64;
        for _ in 0..RETRIES {
            let r = self.inner.lock().op_deferring(&mut op);
            // A miss deferred: run again once the block is in (the store
            // keeps it).
            let Err(Fail::Defer { off, len }) = r else {
                return r.map_err(Errno::from);
            };
            let mut scratch = vec![0u8; len];
            self.store.read(off, &mut scratch)?;
        }
        self.inner.lock().op(op)
    }

    /// The file system block size.
    pub fn block_size(&self) -> u32 {
        self.inner.lock().g().bs
    }

    /// One write-back epoch: the changed metadata taken under the file
    /// system lock, written in order without it (see [`order`]).
    fn epoch(&self) -> Result<(), Errno> {
        let (mut ep, store) = {
            let mut g = self.inner.lock();
            if g.is_dead() || g.read_only() {
                return Ok(());
            }
            (g.take_epoch()?, g.store())
        };
        let r = if ep.is_empty() {
            Ok(())
        } else {
            ep.write(&*store)
        };
        self.inner.lock().finish_epoch(&mut ep, r.is_ok());
        r
    }

    /// Write back every metadata change, including the bitmaps that
    /// releasing an epoch's frees changes (a second epoch).
    fn epochs(&self) -> Result<(), Errno> {
        for _ in 0..3 {
            self.epoch()?;
            if self.inner.lock().all_written() {
                break;
            }
        }
        Ok(())
    }

    /// Run a changing operation; if it found no room while freed blocks or
    /// inodes wait for a write-back to become reusable, write back and run
    /// it once more.
    fn retry_nospc<T>(&self, mut op: impl FnMut() -> Result<T, Errno>) -> Result<T, Errno> {
        match op() {
            Err(e) if e == Errno(netbsd_abi::errno::ENOSPC) && self.has_pending() => {
                let _p = self.pass.lock();
                self.epoch()?;
                drop(_p);
                op()
            }
            r => r,
        }
    }

    fn has_pending(&self) -> bool {
        self.inner.lock().has_pending()
    }
}

impl Drop for Ext2Fs {
    /// Dropped without `unmount`: write the cached metadata back (best
    /// effort; the file system stays marked not clean).
    fn drop(&mut self) {
        let f = self.inner.get_mut();
        if !f.is_dead() {
            let _ = f.write_all_locked(true);
        }
    }
}

impl FileSystem for Ext2Fs {
    fn type_name(&self) -> &'static str {
        "ext2fs"
    }
    fn root(&self) -> Ino {
        fs::ROOT_INO as Ino
    }
    fn read_only(&self) -> bool {
        self.read_only
    }
    fn lookup(&self, dir: Ino, name: &[u8]) -> Result<Ino, Errno> {
        self.read_op(|f| f.lookup(fs::ino32(dir)?, name))
            .map(|i| i as Ino)
    }
    fn getattr(&self, ino: Ino) -> Result<Attr, Errno> {
        self.read_op(|f| f.getattr(fs::ino32(ino)?))
    }
    fn setattr(&self, ino: Ino, set: &SetAttr) -> Result<Attr, Errno> {
        let i = fs::ino32(ino)?;
        if set.size.is_none() {
            return self.retry_nospc(|| self.inner.lock().op(|f| f.setattr(i, set)));
        }
        // Truncation frees blocks a reader may be copying from.
        let l = self.ilock(i);
        let r = {
            let _w = l.write();
            self.retry_nospc(|| self.inner.lock().op(|f| f.setattr(i, set)))
        };
        self.ilock_done(i, l);
        r
    }
    fn create(
        &self,
        dir: Ino,
        name: &[u8],
        kind: FileKind,
        perm: u32,
        cred: Cred,
    ) -> Result<Ino, Errno> {
        self.retry_nospc(|| {
            self.inner
                .lock()
                .op(|f| f.create(fs::ino32(dir)?, name, kind, perm, cred, NewNode::Empty))
        })
        .map(|i| i as Ino)
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
        let with = if rdev == 0 {
            NewNode::Empty
        } else {
            NewNode::Device(rdev)
        };
        self.retry_nospc(|| {
            self.inner
                .lock()
                .op(|f| f.create(fs::ino32(dir)?, name, kind, perm, cred, with))
        })
        .map(|i| i as Ino)
    }
    fn symlink(&self, dir: Ino, name: &[u8], target: &[u8], cred: Cred) -> Result<Ino, Errno> {
        self.retry_nospc(|| {
            self.inner.lock().op(|f| {
                f.create(
                    fs::ino32(dir)?,
                    name,
                    FileKind::Lnk,
                    0o777,
                    cred,
                    NewNode::Symlink(target),
                )
            })
        })
        .map(|i| i as Ino)
    }
    fn readlink(&self, ino: Ino) -> Result<Vec<u8>, Errno> {
        self.read_op(|f| f.readlink(fs::ino32(ino)?))
    }
    fn link(&self, ino: Ino, newdir: Ino, newname: &[u8]) -> Result<(), Errno> {
        self.retry_nospc(|| {
            self.inner
                .lock()
                .op(|f| f.link(fs::ino32(ino)?, fs::ino32(newdir)?, newname))
        })
    }
    fn unlink(&self, dir: Ino, name: &[u8]) -> Result<(), Errno> {
        self.inner
            .lock()
            .op(|f| f.remove(fs::ino32(dir)?, name, false))
    }
    fn rmdir(&self, dir: Ino, name: &[u8]) -> Result<(), Errno> {
        self.inner
            .lock()
            .op(|f| f.remove(fs::ino32(dir)?, name, true))
    }
    fn rename(
        &self,
        fromdir: Ino,
        fromname: &[u8],
        todir: Ino,
        toname: &[u8],
    ) -> Result<(), Errno> {
        self.retry_nospc(|| {
            self.inner
                .lock()
                .op(|f| f.rename(fs::ino32(fromdir)?, fromname, fs::ino32(todir)?, toname))
        })
    }
    fn read(&self, ino: Ino, off: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        let i = fs::ino32(ino)?;
        let l = self.ilock(i);
        let r = {
            let _r = l.read();
            // Map under the file system lock; copy the data without it.
            self.read_op(|f| f.read_map(i, off, buf))
                .and_then(|(len, runs)| {
                    for r in runs {
                        self.store
                            .read_stream(r.disk, &mut buf[r.at..r.at + r.len])?;
                    }
                    Ok(len)
                })
        };
        self.ilock_done(i, l);
        r
    }
    fn write(&self, ino: Ino, off: u64, buf: &[u8]) -> Result<usize, Errno> {
        let i = fs::ino32(ino)?;
        // A throttled writer writes back before it takes any lock.
        self.store.make_room(buf.len())?;
        let l = self.ilock(i);
        let r = {
            let _w = l.write();
            let mut done = self.retry_nospc(|| self.inner.lock().op(|f| f.write(i, off, buf)))?;
            if done < buf.len() && self.has_pending() {
                // Short for lack of room: freed blocks become reusable
                // once written back.
                let _p = self.pass.lock();
                self.epoch()?;
                drop(_p);
                let more = self
                    .inner
                    .lock()
                    .op(|f| f.write(i, off + done as u64, &buf[done..]))
                    .unwrap_or(0);
                done += more;
            }
            Ok(done)
        };
        self.ilock_done(i, l);
        r
    }
    fn readdir(
        &self,
        dir: Ino,
        cookie: u64,
        cb: &mut dyn FnMut(DirEntry) -> bool,
    ) -> Result<(), Errno> {
        // Entries are gathered in batches under the lock and handed to
        // `cb` without it, so the callback may call back into this file
        // system.
        let dir = fs::ino32(dir)?;
        let mut cookie = cookie;
        loop {
            let (batch, end) = self.read_op(|f| f.readdir_batch(dir, cookie, 64))?;
            for e in batch {
                cookie = e.next;
                if !cb(e) {
                    return Ok(());
                }
            }
            if end {
                return Ok(());
            }
        }
    }
    fn fsync(&self, ino: Ino) -> Result<(), Errno> {
        // The metadata as an epoch, then the data and a device flush; the
        // host I/O without the file system lock.
        fs::ino32(ino)?;
        let _p = self.pass.lock();
        self.epochs()?;
        self.store.sync()
    }
    fn sync(&self) -> Result<(), Errno> {
        // As fsync, then the superblock marked clean if nothing changed
        // meanwhile. It goes out after everything else is flushed; a change
        // made meanwhile unmarks it (`begin_write`), and the epoch that
        // writes that waits for `pass`.
        let _p = self.pass.lock();
        self.epochs()?;
        self.store.sync()?;
        let sb = {
            let mut g = self.inner.lock();
            if g.is_dead() {
                return Err(Errno(netbsd_abi::errno::EIO));
            }
            g.clean_sb()
        };
        if let Some(sb) = sb {
            self.store.write_through(SUPERBLOCK_OFFSET, &sb)?;
            self.store.sync()?;
        }
        Ok(())
    }
    fn unmount(&self) -> Result<(), Errno> {
        Ok(self.inner.lock().unmount()?)
    }
    fn statfs(&self) -> Result<FsStat, Errno> {
        self.inner.lock().op(|f| Ok(f.statfs()))
    }
    fn writeback_due(&self, delays: &vfs::SyncDelays) -> Option<std::time::Instant> {
        let g = self.inner.lock();
        if g.is_dead() || g.read_only() {
            return None;
        }
        let (since, dir_since) = g.since();
        let due = since.map(|t| t + delays.meta);
        let dir_due = dir_since.map(|t| t + delays.dir);
        match (due, dir_due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
    fn write_back(&self) -> Result<(), Errno> {
        let _p = self.pass.lock();
        self.epoch()
    }
    fn set_dirty_hook(&self, hook: Arc<dyn Fn() + Send + Sync>) {
        self.inner.lock().set_kick(hook);
    }
    fn open(&self, ino: Ino) {
        if let Ok(i) = fs::ino32(ino) {
            self.inner.lock().open_inode(i);
        }
    }
    fn release(&self, ino: Ino) {
        if let Ok(i) = fs::ino32(ino) {
            self.inner.lock().release_inode(i);
        }
    }
}
