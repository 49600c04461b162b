//! A file system whose operation panicked is not used for writing again.
//!
//! Every mounted file system sits behind a [`Guarded`]: each call into it
//! runs under `catch_unwind`. A panic fails that call with `EIO` and turns
//! the file system read-only for good, with one log line naming the mount,
//! the operation and the panic's message. The panic may have left the
//! file system's in-memory state half-updated (the kernel's locks do not
//! poison), so from then on nothing of it is written to its device:
//! changing operations fail with `EROFS`, `fsync` with `EIO` (what was
//! written cannot be made durable), `sync` and the syncer find nothing to
//! do, and unmount does not mark it clean (the next `e2fsck` looks at
//! it). Reads go on, answering from whatever state is
//! there: that is memory-safe, and lets a user copy data off.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use netbsd_abi::errno::{EIO, EROFS};
use netbsd_abi::Errno;

use crate::vfs::{Attr, Cred, DirEntry, FileKind, FileSystem, FsStat, Ino, SetAttr, SyncDelays};

pub(crate) struct Guarded {
    inner: Arc<dyn FileSystem>,
    /// Where it is mounted, for the log line.
    path: String,
    tainted: AtomicBool,
}

/// The text of a panic's payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

impl Guarded {
    pub(crate) fn new(inner: Arc<dyn FileSystem>, path: &str) -> Guarded {
        Guarded {
            inner,
            path: path.to_string(),
            tainted: AtomicBool::new(false),
        }
    }

    /// Whether an operation panicked.
    pub(crate) fn tainted(&self) -> bool {
        self.tainted.load(Ordering::Acquire)
    }

    fn taint(&self, op: &str, payload: &(dyn std::any::Any + Send)) {
        let msg = panic_message(payload);
        if !self.tainted.swap(true, Ordering::AcqRel) {
            tracing::error!(
                "rumpkern: {} on {}: panic in {op}: {msg}; the file system is read-only from now on \
                 and is not written again (not even marked clean at unmount)",
                self.inner.type_name(),
                self.path
            );
        } else {
            tracing::error!(
                "rumpkern: {} on {}: panic in {op}: {msg}",
                self.inner.type_name(),
                self.path
            );
        }
    }

    /// Run `f`; a panic taints the file system and gives `on_panic`.
    fn run<R>(&self, op: &str, on_panic: R, f: impl FnOnce() -> R) -> R {
        match catch_unwind(AssertUnwindSafe(f)) {
            Ok(r) => r,
            Err(p) => {
                self.taint(op, &*p);
                on_panic
            }
        }
    }

    /// A reading operation.
    fn read_op<T>(&self, op: &str, f: impl FnOnce() -> Result<T, Errno>) -> Result<T, Errno> {
        self.run(op, Err(Errno(EIO)), f)
    }

    /// A changing operation: `EROFS` once tainted.
    fn write_op<T>(&self, op: &str, f: impl FnOnce() -> Result<T, Errno>) -> Result<T, Errno> {
        if self.tainted() {
            return Err(Errno(EROFS));
        }
        self.run(op, Err(Errno(EIO)), f)
    }
}

impl FileSystem for Guarded {
    fn type_name(&self) -> &'static str {
        self.inner.type_name()
    }
    fn root(&self) -> Ino {
        self.inner.root()
    }
    fn read_only(&self) -> bool {
        self.tainted() || self.inner.read_only()
    }
    fn lookup(&self, dir: Ino, name: &[u8]) -> Result<Ino, Errno> {
        self.read_op("lookup", || self.inner.lookup(dir, name))
    }
    fn getattr(&self, ino: Ino) -> Result<Attr, Errno> {
        self.read_op("getattr", || self.inner.getattr(ino))
    }
    fn setattr(&self, ino: Ino, set: &SetAttr) -> Result<Attr, Errno> {
        self.write_op("setattr", || self.inner.setattr(ino, set))
    }
    fn create(
        &self,
        dir: Ino,
        name: &[u8],
        kind: FileKind,
        perm: u32,
        cred: Cred,
    ) -> Result<Ino, Errno> {
        self.write_op("create", || self.inner.create(dir, name, kind, perm, cred))
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
        self.write_op("mknod", || {
            self.inner.mknod(dir, name, kind, perm, rdev, cred)
        })
    }
    fn symlink(&self, dir: Ino, name: &[u8], target: &[u8], cred: Cred) -> Result<Ino, Errno> {
        self.write_op("symlink", || self.inner.symlink(dir, name, target, cred))
    }
    fn readlink(&self, ino: Ino) -> Result<Vec<u8>, Errno> {
        self.read_op("readlink", || self.inner.readlink(ino))
    }
    fn link(&self, ino: Ino, newdir: Ino, newname: &[u8]) -> Result<(), Errno> {
        self.write_op("link", || self.inner.link(ino, newdir, newname))
    }
    fn unlink(&self, dir: Ino, name: &[u8]) -> Result<(), Errno> {
        self.write_op("unlink", || self.inner.unlink(dir, name))
    }
    fn rmdir(&self, dir: Ino, name: &[u8]) -> Result<(), Errno> {
        self.write_op("rmdir", || self.inner.rmdir(dir, name))
    }
    fn rename(
        &self,
        fromdir: Ino,
        fromname: &[u8],
        todir: Ino,
        toname: &[u8],
    ) -> Result<(), Errno> {
        self.write_op("rename", || {
            self.inner.rename(fromdir, fromname, todir, toname)
        })
    }
    fn read(&self, ino: Ino, off: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        self.read_op("read", || self.inner.read(ino, off, buf))
    }
    fn write(&self, ino: Ino, off: u64, buf: &[u8]) -> Result<usize, Errno> {
        self.write_op("write", || self.inner.write(ino, off, buf))
    }
    fn readdir(
        &self,
        dir: Ino,
        cookie: u64,
        f: &mut dyn FnMut(DirEntry) -> bool,
    ) -> Result<(), Errno> {
        self.read_op("readdir", || self.inner.readdir(dir, cookie, f))
    }
    fn fsync(&self, ino: Ino) -> Result<(), Errno> {
        if self.tainted() {
            // What was written before the panic cannot be made durable.
            return Err(Errno(EIO));
        }
        self.run("fsync", Err(Errno(EIO)), || self.inner.fsync(ino))
    }
    fn sync(&self) -> Result<(), Errno> {
        if self.tainted() {
            // Nothing reaches the device any more (as for any read-only
            // file system, there is nothing to do): unmount goes on.
            return Ok(());
        }
        self.run("sync", Err(Errno(EIO)), || self.inner.sync())
    }
    fn unmount(&self) -> Result<(), Errno> {
        if self.tainted() {
            // Nothing more reaches the device, and the file system is not
            // marked clean.
            return Ok(());
        }
        self.run("unmount", Err(Errno(EIO)), || self.inner.unmount())
    }
    fn statfs(&self) -> Result<FsStat, Errno> {
        self.read_op("statfs", || self.inner.statfs())
    }
    fn open(&self, ino: Ino) {
        self.run("open", (), || self.inner.open(ino))
    }
    fn release(&self, ino: Ino) {
        if self.tainted() {
            // Freeing an unlinked inode writes.
            return;
        }
        self.run("release", (), || self.inner.release(ino))
    }
    fn writeback_due(&self, delays: &SyncDelays) -> Option<Instant> {
        if self.tainted() {
            return None;
        }
        self.run("writeback_due", None, || self.inner.writeback_due(delays))
    }
    fn write_back(&self) -> Result<(), Errno> {
        if self.tainted() {
            return Ok(());
        }
        self.run("write_back", Err(Errno(EIO)), || self.inner.write_back())
    }
    fn set_dirty_hook(&self, hook: Arc<dyn Fn() + Send + Sync>) {
        self.run("set_dirty_hook", (), || self.inner.set_dirty_hook(hook))
    }
}
