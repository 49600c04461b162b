//! Processes, lwps, file descriptor tables, open files.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;

use netbsd_abi::errno::*;
use netbsd_abi::fcntl::*;
use netbsd_abi::Errno;
use rumpuser::locks::Mutex;

use crate::copy::Memory;
use crate::etfs::Drive;
use crate::vfs::{Cred, FileKind};
use crate::vnode::{VnRef, Vnode};

/// Descriptors per process (`EMFILE` beyond).
pub const MAXFILES: usize = 4096;

/// A lock that may be held across blocking operations: when contended,
/// the waiter gives up its virtual CPU while it waits (every kernel lock
/// does; the name stays for readers coming from NetBSD's `kmutex_t`).
pub type KMutex<T> = Mutex<T>;

/// What an open file reads and writes.
pub enum Backend {
    /// The file system of its vnode.
    Fs,
    /// An etfs device (`blk` through the cache, `chr` direct).
    Dev(Arc<Drive>),
}

/// An open file: what a descriptor refers to (shared by descriptors duplicated from one open).
pub struct File {
    /// The vnode, held (its mount is busy while the file is open).
    pub vn: VnRef,
    /// Its type, fixed at open.
    pub kind: FileKind,
    /// What reads and writes go to.
    pub backend: Backend,
    /// `O_*` status flags (access mode, `O_APPEND`, …).
    pub flags: i32,
    /// The file offset (a readdir cookie for directories).
    pub offset: KMutex<u64>,
    /// The status flags `fcntl(F_SETFL)` may change (`O_APPEND`, …).
    pub status: AtomicI32,
}

impl File {
    /// Open `vn`: tells its file system that the inode is open.
    pub fn new(vn: Vnode, kind: FileKind, backend: Backend, flags: i32) -> File {
        vn.mnt.fs.open(vn.ino);
        File {
            vn: VnRef::new(vn),
            kind,
            backend,
            flags,
            offset: KMutex::new(0),
            status: AtomicI32::new(flags),
        }
    }

    /// The current status flags (access mode included).
    pub fn status_flags(&self) -> i32 {
        (self.status.load(Ordering::Relaxed) & !O_ACCMODE) | (self.flags & O_ACCMODE)
    }

    /// Whether it was opened for reading.
    pub fn readable(&self) -> bool {
        let a = self.flags & O_ACCMODE;
        a == O_RDONLY || a == O_RDWR
    }

    /// Whether it was opened for writing.
    pub fn writable(&self) -> bool {
        let a = self.flags & O_ACCMODE;
        a == O_WRONLY || a == O_RDWR
    }

    /// The vnode.
    pub fn vnode(&self) -> &Vnode {
        &self.vn.vn
    }
}

impl Drop for File {
    fn drop(&mut self) {
        let vn = &self.vn.vn;
        if !vn.mnt.is_dead() {
            vn.mnt.fs.release(vn.ino);
        }
    }
}

#[derive(Clone)]
struct Slot {
    file: Arc<File>,
    cloexec: bool,
}

/// A descriptor table (shared between processes forked with
/// `RUMP_RFFD_SHARE`).
#[derive(Default)]
pub struct FdTable {
    slots: Vec<Option<Slot>>,
}

impl FdTable {
    /// The file at descriptor `fd` (`EBADF` if none).
    pub fn get(&self, fd: i32) -> Result<Arc<File>, Errno> {
        if fd < 0 {
            return Err(Errno(EBADF));
        }
        match self.slots.get(fd as usize) {
            Some(Some(s)) => Ok(s.file.clone()),
            _ => Err(Errno(EBADF)),
        }
    }

    /// The lowest free descriptor for `file` (`EMFILE` at the per-process limit).
    pub fn alloc(&mut self, file: Arc<File>, cloexec: bool) -> Result<i32, Errno> {
        let slot = Slot { file, cloexec };
        if let Some(i) = self.slots.iter().position(|s| s.is_none()) {
            self.slots[i] = Some(slot);
            return Ok(i as i32);
        }
        if self.slots.len() >= MAXFILES {
            return Err(Errno(EMFILE));
        }
        self.slots.push(Some(slot));
        Ok(self.slots.len() as i32 - 1)
    }

    /// Take descriptor `fd` out; the file closes when its last reference goes.
    pub fn remove(&mut self, fd: i32) -> Result<Arc<File>, Errno> {
        if fd < 0 {
            return Err(Errno(EBADF));
        }
        let s = self
            .slots
            .get_mut(fd as usize)
            .and_then(|s| s.take())
            .ok_or(Errno(EBADF))?;
        while matches!(self.slots.last(), Some(None)) {
            self.slots.pop();
        }
        Ok(s.file)
    }

    /// Take the close-on-exec descriptors out (at exec).
    pub fn take_cloexec(&mut self) -> Vec<Arc<File>> {
        let mut out = Vec::new();
        for s in self.slots.iter_mut() {
            if s.as_ref().is_some_and(|x| x.cloexec) {
                out.push(s.take().map(|x| x.file));
            }
        }
        out.into_iter().flatten().collect()
    }

    /// Whether descriptor `fd` is close-on-exec.
    pub fn cloexec(&self, fd: i32) -> Result<bool, Errno> {
        match usize::try_from(fd).ok().and_then(|i| self.slots.get(i)) {
            Some(Some(s)) => Ok(s.cloexec),
            _ => Err(Errno(EBADF)),
        }
    }

    /// Set or clear close-on-exec on `fd`.
    pub fn set_cloexec(&mut self, fd: i32, on: bool) -> Result<(), Errno> {
        match usize::try_from(fd).ok().and_then(|i| self.slots.get_mut(i)) {
            Some(Some(s)) => {
                s.cloexec = on;
                Ok(())
            }
            _ => Err(Errno(EBADF)),
        }
    }

    /// The lowest free descriptor at or above `min` for `file` (`F_DUPFD`).
    pub fn alloc_from(&mut self, file: Arc<File>, min: i32, cloexec: bool) -> Result<i32, Errno> {
        let min = usize::try_from(min).map_err(|_| Errno(EINVAL))?;
        if min >= MAXFILES {
            return Err(Errno(EINVAL));
        }
        let slot = Slot { file, cloexec };
        if let Some(i) = (min..self.slots.len()).find(|&i| self.slots[i].is_none()) {
            self.slots[i] = Some(slot);
            return Ok(i as i32);
        }
        let i = self.slots.len().max(min);
        if i >= MAXFILES {
            return Err(Errno(EMFILE));
        }
        self.slots.resize(i + 1, None);
        self.slots[i] = Some(slot);
        Ok(i as i32)
    }

    /// Put `file` at descriptor `fd` (`dup2`); returns what was there (the
    /// caller drops it outside this table's lock).
    pub fn install(
        &mut self,
        fd: i32,
        file: Arc<File>,
        cloexec: bool,
    ) -> Result<Option<Arc<File>>, Errno> {
        let i = usize::try_from(fd)
            .ok()
            .filter(|&i| i < MAXFILES)
            .ok_or(Errno(EBADF))?;
        if self.slots.len() <= i {
            self.slots.resize(i + 1, None);
        }
        Ok(self.slots[i]
            .replace(Slot { file, cloexec })
            .map(|s| s.file))
    }

    fn copy(&self) -> FdTable {
        FdTable {
            slots: self.slots.clone(),
        }
    }
}

/// A kernel process: one per sysproxy client (and per local caller), with its credentials, descriptors and current directory.
pub struct Proc {
    /// Process id.
    pub pid: i32,
    /// Parent's process id (0 for none).
    pub ppid: i32,
    /// The program name (the client's, updated at exec).
    pub comm: Mutex<String>,
    /// User and group ids, fixed at creation.
    pub cred: Cred,
    /// Supplementary groups (at most `NGROUPS_MAX`), fixed at creation.
    pub groups: Vec<u32>,
    /// The file creation mask (`umask(2)`).
    pub umask: AtomicU32,
    /// Whose memory the process's addresses are: a sysproxy client's, or this host process's.
    pub mem: Memory,
    /// The descriptor table (an `Arc` because `rfork` may share it between processes).
    pub fds: Mutex<Arc<Mutex<FdTable>>>,
    /// The current directory, held; `None` once released.
    pub cwd: Mutex<Option<VnRef>>,
    /// Live lwps; the process is released when the count drops to zero.
    pub nlwps: AtomicUsize,
    /// `PS_RUMP_LWPEXIT`: the client is gone; no new lwps.
    pub exiting: AtomicBool,
    released: AtomicBool,
}

/// How `rfork` gives the child its descriptors (`RUMP_RFFD_*`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FdMode {
    /// The child shares the parent's table.
    Share,
    /// The child gets a copy.
    Copy,
    /// The child starts with an empty table.
    Clear,
}

impl Proc {
    /// A process `pid`, inheriting from `parent` (if any) its credentials, groups, umask and current directory, and its descriptors as `fdmode` says; without a parent its directory is `root`.
    pub fn new(
        pid: i32,
        parent: Option<&Proc>,
        mem: Memory,
        comm: &str,
        fdmode: FdMode,
        root: &Vnode,
    ) -> Proc {
        let fds = match (parent, fdmode) {
            (Some(p), FdMode::Share) => p.fds.lock().clone(),
            (Some(p), FdMode::Copy) => {
                let t = p.fds.lock().clone();
                let c = t.lock().copy();
                Arc::new(Mutex::new(c))
            }
            _ => Arc::new(Mutex::new(FdTable::default())),
        };
        let cwd = parent
            .and_then(|p| p.cwd.lock().clone())
            .unwrap_or_else(|| VnRef::new(root.clone()));
        Proc {
            pid,
            ppid: parent.map(|p| p.pid).unwrap_or(0),
            comm: Mutex::new(comm.to_string()),
            cred: parent.map(|p| p.cred).unwrap_or_default(),
            groups: parent.map(|p| p.groups.clone()).unwrap_or_default(),
            umask: AtomicU32::new(parent.map(|p| p.umask.load(Ordering::Relaxed)).unwrap_or(0)),
            mem,
            fds: Mutex::new(fds),
            cwd: Mutex::new(Some(cwd)),
            nlwps: AtomicUsize::new(0),
            exiting: AtomicBool::new(false),
            released: AtomicBool::new(false),
        }
    }

    /// The descriptor table (shared, if the process shares it).
    pub fn fdtable(&self) -> Arc<Mutex<FdTable>> {
        self.fds.lock().clone()
    }

    /// The file at descriptor `fd`.
    pub fn getf(&self, fd: i32) -> Result<Arc<File>, Errno> {
        self.fds.lock().lock().get(fd)
    }

    /// The current directory (`root` once released).
    pub fn cwd(&self, root: &Vnode) -> Vnode {
        match &*self.cwd.lock() {
            Some(c) => c.vn.clone(),
            None => root.clone(),
        }
    }

    /// Change the current directory.
    pub fn set_cwd(&self, vn: Vnode) {
        let new = VnRef::new(vn);
        let old = self.cwd.lock().replace(new);
        drop(old);
    }

    /// Close every descriptor and drop the current directory: the process
    /// is gone. Runs once.
    pub fn release(&self) {
        if self.released.swap(true, Ordering::SeqCst) {
            return;
        }
        // Drop this process's hold on its table: the files close when the
        // last process sharing it (RUMP_RFFD_SHARE) lets go.
        let t = std::mem::take(&mut *self.fds.lock());
        drop(t);
        let cwd = self.cwd.lock().take();
        drop(cwd);
    }

    /// `execnotify`: a new program image; close-on-exec descriptors go,
    /// and the process takes new lwps again (the exec drained the old ones
    /// with `lwpexit`).
    pub fn exec(&self, comm: &str) {
        *self.comm.lock() = comm.to_string();
        self.exiting.store(false, Ordering::SeqCst);
        let files = self.fdtable().lock().take_cloexec();
        drop(files);
    }
}

/// A kernel thread context (`struct lwp`). The pointer handed to the
/// hypercall layer is a `Box<Lwp>` turned raw; it is freed when the lwp
/// has been released and is switched away from (or its thread
/// unschedules), as in NetBSD.
pub struct Lwp {
    /// The process it runs for.
    pub proc: Arc<Proc>,
    /// References (the creator's); 0 = `LW_WEXIT`, free at the next switch.
    refcnt: AtomicU32,
    /// The kernel this lwp belongs to.
    pub kernel: usize,
    /// Who may release it: the upcall table that made it (its token,
    /// from 1), or [`PINNED`] for one a Rust handle ([`crate::LocalProc`])
    /// owns and frees itself, which a release, a switch away or an
    /// unschedule never frees.
    pub(crate) owner: u64,
}

/// The `owner` of an lwp only its Rust handle frees.
pub(crate) const PINNED: u64 = 0;

impl Lwp {
    pub(crate) fn new(proc: Arc<Proc>, kernel: usize, owner: u64) -> Box<Lwp> {
        proc.nlwps.fetch_add(1, Ordering::SeqCst);
        Box::new(Lwp {
            proc,
            refcnt: AtomicU32::new(1),
            kernel,
            owner,
        })
    }

    /// Whether switching away from this lwp (or unscheduling with it
    /// current) frees it: released, and not owned by a handle.
    pub(crate) fn reapable(&self) -> bool {
        self.exiting() && self.owner != PINNED
    }

    /// Whether its creator let go of it (it is freed at the next switch).
    pub fn exiting(&self) -> bool {
        self.refcnt.load(Ordering::Acquire) == 0
    }

    /// Drop the creator's reference: the lwp is freed at the next switch.
    pub fn rele(&self) {
        let _ = self
            .refcnt
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |r| r.checked_sub(1));
    }
}

thread_local! {
    static CURLWP: Cell<*mut Lwp> = const { Cell::new(std::ptr::null_mut()) };
}

/// The calling thread's current lwp (null if none).
#[inline]
pub fn curlwp_raw() -> *mut Lwp {
    CURLWP.with(|c| c.get())
}

/// Set the calling thread's current lwp (also for the hypercall layer).
#[inline]
///
/// # Safety
/// `l` is null or a live lwp (from `Kernel::make_lwp`, not yet freed) that
/// stays alive while it is current: the kernel dereferences it.
pub(crate) unsafe fn set_curlwp_raw(l: *mut Lwp) {
    CURLWP.with(|c| c.set(l));
    crate::hypercall_curlwp_set(l.cast());
}
