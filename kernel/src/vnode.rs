//! Mounts and vnodes: a vnode is (mount, inode number); the mount table
//! maps covered directories to the file systems mounted on them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use netbsd_abi::errno::*;
use netbsd_abi::Errno;
use rumpuser::locks::RwLock;

use crate::vfs::{Attr, FileKind, FileSystem, Ino};

/// One mounted file system.
pub struct Mount {
    /// `st_dev` of every file on this mount.
    pub dev: u64,
    /// The file system.
    pub fs: Arc<dyn FileSystem>,
    /// The directory this mount covers (`None` for the root).
    pub covered: Option<Vnode>,
    /// Mounted read-only (`MNT_RDONLY`).
    pub read_only: bool,
    /// Open files and current directories on this mount.
    pub busy: AtomicUsize,
    /// Set once unmounted: operations on its vnodes fail.
    pub dead: AtomicBool,
    /// The drive it was mounted from, if any.
    pub drive: Option<usize>,
    /// Where it is mounted, for messages.
    pub path: String,
}

impl Mount {
    /// Whether it has been unmounted (or the kernel quiesced).
    pub fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Acquire)
    }
}

/// A file as the VFS names it: a mount and an inode number on it. Holds no reference of its own: a [`VnRef`] keeps the mount busy.
#[derive(Clone)]
pub struct Vnode {
    /// The mount the file is on.
    pub mnt: Arc<Mount>,
    /// Its inode number there.
    pub ino: Ino,
}

impl Vnode {
    /// The file's attributes (`EBADF` once its mount is gone).
    pub fn getattr(&self) -> Result<Attr, Errno> {
        if self.mnt.is_dead() {
            return Err(Errno(EBADF));
        }
        self.mnt.fs.getattr(self.ino)
    }

    /// The file's type.
    pub fn kind(&self) -> Result<FileKind, Errno> {
        Ok(self.getattr()?.kind)
    }

    /// Whether `o` names the same file.
    pub fn same(&self, o: &Vnode) -> bool {
        Arc::ptr_eq(&self.mnt, &o.mnt) && self.ino == o.ino
    }

    /// Whether this is the root of its mount.
    pub fn is_mount_root(&self) -> bool {
        self.ino == self.mnt.fs.root()
    }

    /// Fail with `EROFS` on a read-only mount.
    pub fn writable(&self) -> Result<(), Errno> {
        if self.mnt.read_only || self.mnt.fs.read_only() {
            Err(Errno(EROFS))
        } else if self.mnt.is_dead() {
            Err(Errno(EBADF))
        } else {
            Ok(())
        }
    }
}

/// A counted hold on a vnode (an open file or a current directory): the
/// mount is busy while one exists.
pub struct VnRef {
    /// The vnode held.
    pub vn: Vnode,
}

impl VnRef {
    /// Hold `vn` (its mount counts one more user).
    pub fn new(vn: Vnode) -> VnRef {
        vn.mnt.busy.fetch_add(1, Ordering::SeqCst);
        VnRef { vn }
    }
}

impl Clone for VnRef {
    fn clone(&self) -> VnRef {
        VnRef::new(self.vn.clone())
    }
}

impl Drop for VnRef {
    fn drop(&mut self) {
        self.vn.mnt.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The mount table.
pub struct Mounts {
    /// The root file system's mount.
    pub root: Arc<Mount>,
    /// (dev of the covered directory's mount, its inode) → mount on it.
    covering: RwLock<HashMap<(u64, Ino), Arc<Mount>>>,
    any: AtomicBool,
    next_dev: AtomicU64,
}

impl Mounts {
    /// A table with `rootfs` mounted at `/`.
    pub fn new(rootfs: Arc<dyn FileSystem>) -> Mounts {
        let root = Arc::new(Mount {
            dev: 0x1_0000,
            fs: Arc::new(crate::fsguard::Guarded::new(rootfs, "/")),
            covered: None,
            read_only: false,
            busy: AtomicUsize::new(0),
            dead: AtomicBool::new(false),
            drive: None,
            path: "/".into(),
        });
        Mounts {
            root,
            covering: RwLock::new(HashMap::new()),
            any: AtomicBool::new(false),
            next_dev: AtomicU64::new(0x1_0001),
        }
    }

    /// The root directory.
    pub fn root_vnode(&self) -> Vnode {
        Vnode {
            mnt: self.root.clone(),
            ino: self.root.fs.root(),
        }
    }

    /// A new `st_dev` for a mount.
    pub fn alloc_dev(&self) -> u64 {
        self.next_dev.fetch_add(1, Ordering::Relaxed)
    }

    /// If a file system is mounted on `vn`, its root (repeatedly).
    #[inline]
    pub fn cross_down(&self, mut vn: Vnode) -> Vnode {
        if !self.any.load(Ordering::Acquire) {
            return vn;
        }
        let t = self.covering.read();
        while let Some(m) = t.get(&(vn.mnt.dev, vn.ino)) {
            vn = Vnode {
                mnt: m.clone(),
                ino: m.fs.root(),
            };
        }
        vn
    }

    /// The mount covering `vn`, if any.
    pub fn mounted_on(&self, vn: &Vnode) -> Option<Arc<Mount>> {
        self.covering.read().get(&(vn.mnt.dev, vn.ino)).cloned()
    }

    /// Add a mount on its covered directory (`EBUSY` if that directory is already covered).
    pub fn insert(&self, m: Arc<Mount>) -> Result<(), Errno> {
        let cov = m.covered.as_ref().ok_or(Errno(EINVAL))?;
        let mut t = self.covering.write();
        let key = (cov.mnt.dev, cov.ino);
        if t.contains_key(&key) {
            return Err(Errno(EBUSY));
        }
        t.insert(key, m);
        self.any.store(true, Ordering::Release);
        Ok(())
    }

    /// Take mount `m` out of the table.
    pub fn remove(&self, m: &Arc<Mount>) {
        if let Some(cov) = &m.covered {
            let mut t = self.covering.write();
            t.remove(&(cov.mnt.dev, cov.ino));
            if t.is_empty() {
                self.any.store(false, Ordering::Release);
            }
        }
    }

    /// Every mount other than the root, children after parents.
    pub fn list(&self) -> Vec<Arc<Mount>> {
        let t = self.covering.read();
        let mut v: Vec<Arc<Mount>> = t.values().cloned().collect();
        v.sort_by_key(|m| m.dev);
        v
    }
}
