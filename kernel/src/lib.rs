//! The built-in rump kernel (docs/design.md; its rules: "The blocking
//! discipline").
//!
//! A [`Kernel`] has virtual CPUs (`sched`), processes with descriptor
//! tables and current directories (`proc`), a NetBSD-numbered syscall
//! table (`syscall`), a VFS ([`vfs`], `vnode`, `namei`) over an
//! in-memory root file system ([`rumpfs`]), host drives ([`etfs`]) through
//! the buffer cache (`vfs-cache`), and mountable file system types
//! registered at run time ([`Kernel::register_fs_type`], for ext2).
//!
//! It serves sysproxy clients through the upcalls it installs at boot
//! ([`rumpuser::upcalls`]), and in-process callers through
//! [`Kernel::local_process`].
//!
//! Halt primitives ([`Kernel::stop_admitting`], [`Kernel::wait_idle`],
//! [`Kernel::sync_all`], [`Kernel::quiesce`], [`Kernel::set_reboot_handler`])
//! are what the halt subsystem builds its sequence on.
//!
//! # Soundness
//!
//! No safe use of this crate can make the kernel touch freed memory. The
//! kernel's internals (virtual CPUs, processes and lwps, vnodes, name
//! lookup, the syscall table) are private; embedders get handles that
//! cannot dangle ([`Kernel`] behind an `Arc`, [`LocalProc`], which owns
//! the lwp of each call it runs for the whole call, and the upcall table,
//! which holds its kernel and releases only the lwps it made itself, so
//! that a callback holding another table cannot free an lwp whose pointer
//! a sysproxy server keeps). A thread's hold on a virtual CPU holds its
//! scheduler too, so dropping a kernel (or its upcall table) while a thread
//! still runs on one of its CPUs leaves that thread's later `unschedule`
//! or blocking call on live memory.
//!
//! The probes below do not compile. `compile_fail` error codes are checked
//! on nightly only, so where a probe fails for a missing `unsafe`, a twin
//! that differs only by the `unsafe` block compiles.
//!
//! A scheduler cannot be made, held and dropped from outside:
//! ```compile_fail,E0603
//! let s = rumpkern::sched::Sched::new(1);
//! ```
//! Nor an lwp reached, freed or made current behind the kernel's back:
//! ```compile_fail,E0603
//! let l = rumpkern::proc::curlwp_raw();
//! ```
//! ```compile_fail,E0603
//! use rumpkern::proc::Lwp;
//! ```
//! Switching a thread to an lwp named by pointer is `unsafe` (the pointer
//! must be one the kernel handed out and did not free):
//! ```compile_fail,E0133
//! let k = rumpkern::Kernel::boot(rumpkern::KernelConfig::default()).unwrap();
//! let up = k.upcalls();
//! let l = up.lwproc_curlwp();
//! up.lwproc_switch(l);
//! ```
//! ```no_run
//! let k = rumpkern::Kernel::boot(rumpkern::KernelConfig::default()).unwrap();
//! let up = k.upcalls();
//! let l = up.lwproc_curlwp();
//! // SAFETY: null, or this thread's current lwp, which is alive.
//! unsafe { up.lwproc_switch(l) };
//! ```
//! The syscall table is not callable directly (only through a process,
//! which checks its arguments):
//! ```compile_fail,E0603
//! use rumpkern::syscall::dispatch;
//! ```
#![warn(missing_docs)]

pub mod config;
pub mod copy;
pub mod disklabel;
pub mod error;
pub mod etfs;
mod fsguard;
pub mod host;
pub mod local;
pub mod lockdebug;
mod lwproc;
pub(crate) mod namei;
pub(crate) mod proc;
pub mod rumpfs;
pub(crate) mod sched;
pub mod syncer;
pub(crate) mod syscall;
pub(crate) mod vnode;

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use netbsd_abi::errno::*;
use netbsd_abi::Errno;
use rumpuser::locks::RwLock;

pub use config::{parse_memlimit, ConfigError, KernelConfig, MAX_NCPU};
pub use error::MemlimitError;
pub use etfs::{
    DriveError, DriveFault, DriveInfo, DriveSize, DriveSpec, DriveSpecError, DriveType, SizeError,
};
pub use local::LocalProc;
pub use lockdebug::LockDebug;
pub use netbsd_abi;
pub use netbsd_abi::{Region, Syscalls};
/// The file system interface ([`vfs::FileSystem`] and its types), a crate
/// of its own so that file system components need not depend on the kernel.
pub use vfs;
pub use vfs_cache::{FaultControl, Stats as CacheStats};

use copy::Memory;
use etfs::Drive;
use proc::{FdMode, Proc};
use rumpfs::RumpFs;
use sched::Sched;
use vfs::FileSystem;
use vnode::{Mounts, Vnode};

/// The `kern.ostype` the kernel reports (and the sysproxy banner shows).
pub const OSTYPE: &str = "NetBSD";
/// The `kern.osrelease`: the NetBSD development release whose rump kernel
/// interfaces (rumpuser v17, sysproxy 0.4, `__stat50`/`__getdents30`/
/// `__mount50` syscalls) this kernel follows.
pub const OSRELEASE: &str = "7.99.34";
/// The `hw.machine`.
pub const MACHINE: &str = "amd64";
/// Most supplementary groups a process has (NetBSD's `NGROUPS_MAX`).
pub const NGROUPS_MAX: usize = 16;

/// A `reboot(2)` as the reboot handler sees it.
#[derive(Clone, Copy, Debug)]
pub struct RebootCall {
    /// `RB_*` flags.
    pub flags: i32,
    /// The calling process's sysproxy client (for `rumpuser_sp_fini`),
    /// null for a local process.
    pub client: rumpuser::sp::ClientHandle,
}

/// What `reboot(2)` runs: gets the kernel and the call, returns the errno the call returns (0 on success).
pub type RebootHandler = dyn Fn(&Kernel, RebootCall) -> i32 + Send + Sync;
/// Makes a file system from a drive's cached store (read-only or not).
pub type FsFactory =
    dyn Fn(Arc<dyn vfs_cache::Store>, bool) -> Result<Arc<dyn FileSystem>, Errno> + Send + Sync;

/// Process-wide so that kernel ids, which tag each lwp with its kernel,
/// are unique among every kernel the process boots.
static NEXT_KERNEL_ID: AtomicUsize = AtomicUsize::new(1);

/// One built-in rump kernel: its virtual CPUs, processes, mount table, drives and cache. Kernels are values: several may live in one process, each with its own upcall table ([`Kernel::upcalls`]).
pub struct Kernel {
    id: usize,
    cfg: KernelConfig,
    hostname: RwLock<Vec<u8>>,
    pub(crate) sched: Arc<Sched>,
    procs: RwLock<HashMap<i32, Arc<Proc>>>,
    next_pid: AtomicI32,
    init: Arc<Proc>,
    rootfs: Arc<RumpFs>,
    pub(crate) mounts: Mounts,
    drives: RwLock<Vec<Arc<Drive>>>,
    cache: Arc<vfs_cache::Cache>,
    fs_types: RwLock<HashMap<String, Arc<FsFactory>>>,
    reboot: RwLock<Option<Arc<RebootHandler>>>,
    stopped: AtomicBool,
    quiesced: AtomicBool,
    /// Serialises mount, unmount and drive changes.
    pub(crate) mount_lock: proc::KMutex<()>,
    /// Writes changes back on its own (`vfs.sync.*`).
    pub(crate) syncer: Arc<syncer::Syncer>,
}

impl std::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernel")
            .field("id", &self.id)
            .field("ncpu", &self.sched.ncpu())
            .finish()
    }
}

/// Forward the current lwp to the hypercall layer's `rumpuser_curlwp`.
#[inline]
pub(crate) fn hypercall_curlwp_set(l: *mut c_void) {
    rumpuser::curlwp::set_curlwp(l);
}

impl Kernel {
    /// Boot a kernel: the one way to make one. Installs the scheduler
    /// upcalls every built-in kernel's locks use (once per process, unless
    /// another upcall table is installed already), then starts the
    /// syncer and, if [`KernelConfig::lockdebug`] asks, the stall
    /// detector. `EINVAL` for a memory limit of 0 or a CPU count outside 1
    /// to [`MAX_NCPU`]. Several kernels may be booted in one process.
    pub fn boot(cfg: KernelConfig) -> Result<Arc<Kernel>, Errno> {
        // The locks' upcalls, once for all built-in kernels (each kernel's
        // own table goes to its server: see `Kernel::upcalls`), before the
        // kernel's first thread (the syncer) starts. Process-wide because
        // the hypercall layer's table is: one `rumpuser_init` per process.
        static ONCE: std::sync::Once = std::sync::Once::new();
        let mut r = Ok(());
        ONCE.call_once(|| {
            if rumpuser::upcalls::get().is_none() {
                r = rumpuser::upcalls::init(
                    rumpuser::RUMPUSER_VERSION,
                    Box::new(lwproc::SchedUpcalls),
                );
            }
        });
        r?;
        let k = Kernel::new(cfg)?;
        lockdebug::start(&k);
        if k.cfg.verbose {
            tracing::info!(
                "rumpkern: booted the built-in rump kernel {} (a Rust kernel with {} {}'s \
                 system call interfaces, {}) with {} cpu(s), memory limit {} bytes",
                env!("CARGO_PKG_VERSION"),
                k.cfg.ostype,
                k.cfg.osrelease,
                k.cfg.machine,
                k.sched.ncpu(),
                k.cfg.memlimit
            );
        }
        Ok(k)
    }

    /// This kernel's upcall table as a Rust object (what its sysproxy
    /// server calls), for embedders that serve it themselves and for
    /// tests. Its calls that take addresses are `unsafe`:
    ///
    /// ```compile_fail,E0133
    /// #![forbid(unsafe_code)]
    /// let k = rumpkern::Kernel::boot(rumpkern::KernelConfig::default()).unwrap();
    /// let mut rv = [0; 2];
    /// k.upcalls().syscall(4, &mut [1, 0x10, 4], &mut rv);
    /// ```
    ///
    /// The same call inside `unsafe` compiles, so the missing `unsafe`
    /// (E0133) is the only reason the example above fails (stable rustdoc
    /// does not check the error code):
    ///
    /// ```no_run
    /// let k = rumpkern::Kernel::boot(rumpkern::KernelConfig::default()).unwrap();
    /// let mut rv = [0; 2];
    /// let buf = [0u8; 4];
    /// // SAFETY: the one address passed (`buf`) is valid for the 4 bytes
    /// // write(2) reads.
    /// unsafe { k.upcalls().syscall(4, &mut [1, buf.as_ptr() as u64, 4], &mut rv) };
    /// ```
    pub fn upcalls(self: &Arc<Self>) -> Box<dyn rumpuser::Upcalls> {
        Box::new(lwproc::KernelUpcalls::new(self.clone()))
    }

    /// Build a kernel: [`Kernel::boot`]'s first step, private so that no
    /// kernel runs without the scheduler upcalls its locks need to give up
    /// their virtual CPU while they wait.
    fn new(cfg: KernelConfig) -> Result<Arc<Kernel>, Errno> {
        if cfg.memlimit == 0 || !(1..=MAX_NCPU).contains(&cfg.ncpu) {
            return Err(Errno(EINVAL));
        }
        let rootfs = RumpFs::new(cfg.memlimit);
        let mounts = Mounts::new(rootfs.clone());
        let init = Arc::new(Proc::new(
            1,
            None,
            Memory::Local,
            "init",
            FdMode::Clear,
            &mounts.root_vnode(),
        ));
        init.nlwps.fetch_add(1, Ordering::SeqCst); // never released
        let mut procs = HashMap::new();
        procs.insert(1, init.clone());
        let syncer = syncer::Syncer::new(&cfg.sync);
        let cache = vfs_cache::Cache::new(cfg.memlimit);
        cache.set_dirty_hook(syncer.kicker());
        let k = Arc::new(Kernel {
            id: NEXT_KERNEL_ID.fetch_add(1, Ordering::Relaxed),
            hostname: RwLock::new(cfg.hostname.as_bytes().to_vec()),
            sched: Arc::new(Sched::new(cfg.ncpu)),
            procs: RwLock::new(procs),
            next_pid: AtomicI32::new(2),
            init,
            rootfs,
            mounts,
            drives: RwLock::new(Vec::new()),
            cache,
            fs_types: RwLock::new(HashMap::new()),
            reboot: RwLock::new(None),
            stopped: AtomicBool::new(false),
            quiesced: AtomicBool::new(false),
            mount_lock: proc::KMutex::new(()),
            syncer,
            cfg,
        });
        k.syncer.start(&k);
        Ok(k)
    }

    /// The configuration the kernel booted with.
    pub fn config(&self) -> &KernelConfig {
        &self.cfg
    }

    /// The number of virtual CPUs.
    pub fn ncpu(&self) -> usize {
        self.sched.ncpu()
    }

    /// `kern.hostname` now (a process may set it).
    pub fn hostname(&self) -> String {
        String::from_utf8_lossy(&self.hostname.read()).into_owned()
    }

    pub(crate) fn hostname_bytes(&self) -> Vec<u8> {
        self.hostname.read().clone()
    }

    pub(crate) fn set_hostname(&self, h: &[u8]) {
        *self.hostname.write() = h.to_vec();
    }

    /// The sysproxy banner's `<ostype>-<osrelease>/<machine>` parts.
    pub fn banner_parts(&self) -> (&str, &str, &str) {
        (&self.cfg.ostype, &self.cfg.osrelease, &self.cfg.machine)
    }

    pub(crate) fn id(&self) -> usize {
        self.id
    }

    pub(crate) fn root_vnode(&self) -> Vnode {
        self.mounts.root_vnode()
    }

    /// The absolute path of directory `vn`, or "" if it has none.
    pub(crate) fn mounts_path_of(&self, vn: &Vnode) -> String {
        match namei::getcwd(&self.mounts, &self.root_vnode(), vn) {
            Ok(p) => String::from_utf8_lossy(&p).into_owned(),
            Err(_) => String::new(),
        }
    }

    /// The in-memory root file system.
    pub fn rootfs(&self) -> &Arc<RumpFs> {
        &self.rootfs
    }

    pub(crate) fn init_proc(&self) -> &Arc<Proc> {
        &self.init
    }

    // ----- processes -----

    pub(crate) fn new_proc(
        &self,
        parent: &Arc<Proc>,
        mem: Memory,
        comm: Option<&str>,
        fdmode: FdMode,
    ) -> Result<Arc<Proc>, Errno> {
        self.new_proc_as(parent, mem, comm, fdmode, None)
    }

    /// [`Kernel::new_proc`] with credentials other than the parent's.
    pub(crate) fn new_proc_as(
        &self,
        parent: &Arc<Proc>,
        mem: Memory,
        comm: Option<&str>,
        fdmode: FdMode,
        cred: Option<(vfs::Cred, &[u32])>,
    ) -> Result<Arc<Proc>, Errno> {
        let mut procs = self.procs.write();
        if procs.len() >= 30_000 {
            return Err(Errno(EAGAIN));
        }
        let pid = loop {
            let mut p = self.next_pid.fetch_add(1, Ordering::Relaxed);
            if !(2..30_000).contains(&p) {
                self.next_pid.store(3, Ordering::Relaxed);
                p = 2;
            }
            if !procs.contains_key(&p) {
                break p;
            }
        };
        let pcomm = parent.comm.lock().clone();
        let comm = match comm {
            Some(c) if !c.is_empty() => c.to_string(),
            _ if !pcomm.is_empty() && parent.pid != 1 => pcomm,
            _ => "rumproc".to_string(),
        };
        let mut p = Proc::new(pid, Some(parent), mem, &comm, fdmode, &self.root_vnode());
        if let Some((c, groups)) = cred {
            p.cred = c;
            p.groups = groups
                .iter()
                .copied()
                .filter(|&g| g != c.gid)
                .take(NGROUPS_MAX)
                .collect();
        }
        let p = Arc::new(p);
        procs.insert(pid, p.clone());
        Ok(p)
    }

    pub(crate) fn find_proc(&self, pid: i32) -> Option<Arc<Proc>> {
        self.procs.read().get(&pid).cloned()
    }

    /// The process's last lwp is gone: close its files, forget it.
    pub(crate) fn proc_exit(&self, p: &Arc<Proc>) {
        if p.pid == 1 {
            return;
        }
        self.procs.write().remove(&p.pid);
        p.release();
    }

    /// The command name of process `pid` (what `ps` shows), if it lives.
    pub fn process_name(&self, pid: i32) -> Option<String> {
        self.find_proc(pid).map(|p| p.comm.lock().clone())
    }

    /// Number of live processes (init included).
    pub fn nprocs(&self) -> usize {
        self.procs.read().len()
    }

    /// A process whose memory is this host process's own, for in-process
    /// callers (see [`LocalProc`]).
    pub fn local_process(self: &Arc<Self>) -> Result<LocalProc, Errno> {
        if self.quiesced.load(Ordering::SeqCst) {
            return Err(Errno(ESHUTDOWN));
        }
        let p = self.new_proc(&self.init, Memory::Local, Some("local"), FdMode::Clear)?;
        Ok(LocalProc::new(self.clone(), p))
    }

    /// A local process with credentials `cred` (mode bits are checked
    /// against them; uid 0 bypasses them as on NetBSD).
    pub fn local_process_as(self: &Arc<Self>, cred: vfs::Cred) -> Result<LocalProc, Errno> {
        self.local_process_in_groups(cred, &[])
    }

    /// [`Kernel::local_process_as`] with supplementary groups (the first
    /// [`NGROUPS_MAX`] of them).
    pub fn local_process_in_groups(
        self: &Arc<Self>,
        cred: vfs::Cred,
        groups: &[u32],
    ) -> Result<LocalProc, Errno> {
        if self.quiesced.load(Ordering::SeqCst) {
            return Err(Errno(ESHUTDOWN));
        }
        let p = self.new_proc_as(
            &self.init,
            Memory::Local,
            Some("local"),
            FdMode::Clear,
            Some((cred, groups)),
        )?;
        Ok(LocalProc::new(self.clone(), p))
    }

    // ----- system call admission -----

    /// Run a system call for process `p`: admission, accounting, the
    /// table, panics caught. Returns a NetBSD errno.
    pub(crate) fn run_syscall(
        &self,
        p: &Arc<Proc>,
        num: i32,
        args: &[u64],
        rv: &mut [i64; 2],
    ) -> i32 {
        if self.stopped.load(Ordering::SeqCst) {
            return ESHUTDOWN;
        }
        let scheduled_here = !self.sched.holding();
        if scheduled_here {
            self.sched.schedule();
        }
        let cpu = self.sched.current_cpu().unwrap_or(0);
        self.sched.cpu(cpu).inflight.fetch_add(1, Ordering::SeqCst);
        let r = if self.stopped.load(Ordering::SeqCst) {
            ESHUTDOWN
        } else {
            let prev = SYSDEPTH.with(|d| d.replace((self.id, 0)));
            let depth = if prev.0 == self.id { prev.1 } else { 0 };
            SYSDEPTH.with(|d| d.set((self.id, depth + 1)));
            let cx = syscall::Cx {
                k: self,
                p,
                dir: None,
            };
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                syscall::dispatch(&cx, num, args, rv)
            }));
            SYSDEPTH.with(|d| d.set(prev));
            match r {
                Ok(Ok(())) => 0,
                Ok(Err(e)) => e.0,
                Err(payload) => {
                    let msg = fsguard::panic_message(&*payload);
                    tracing::error!(
                        "rumpkern: panic in syscall {num} (pid {}): {msg}; returning EIO",
                        p.pid
                    );
                    EIO
                }
            }
        };
        let cpu = self.sched.current_cpu().unwrap_or(0);
        self.sched.cpu(cpu).inflight.fetch_sub(1, Ordering::SeqCst);
        if scheduled_here {
            self.sched.unschedule();
        }
        r
    }

    /// From now on every new system call (remote or local) fails with
    /// `ESHUTDOWN` at once; calls already running go on.
    pub fn stop_admitting(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        // No new write-back pass either; one in progress goes on (a halt
        // that flushes waits for it in `sync_all`).
        self.syncer.stop(false);
    }

    /// The syncer (its settings: `vfs.sync.*`).
    pub fn syncer(&self) -> &syncer::Syncer {
        &self.syncer
    }

    /// Whether [`Kernel::stop_admitting`] was called.
    pub fn is_admitting(&self) -> bool {
        !self.stopped.load(Ordering::SeqCst)
    }

    /// System calls running now, the calling thread's own excluded.
    pub fn running_syscalls(&self) -> usize {
        let total: isize = self
            .sched
            .cpus()
            .iter()
            .map(|c| c.inflight.load(Ordering::SeqCst))
            .sum();
        let own = SYSDEPTH.with(|d| d.get());
        let own = if own.0 == self.id { own.1 as isize } else { 0 };
        (total - own).max(0) as usize
    }

    /// Wait until no system call runs but the caller's own (if it is inside
    /// one); the virtual CPU is released while waiting. Returns how many
    /// were still running when `timeout` passed (0: idle).
    pub fn wait_idle(&self, timeout: Duration) -> usize {
        let start = Instant::now();
        let mut pause = Duration::from_micros(100);
        loop {
            let n = self.running_syscalls();
            if n == 0 {
                return 0;
            }
            let elapsed = start.elapsed();
            if elapsed >= timeout {
                return n;
            }
            let d = pause.min(timeout - elapsed);
            sched::blocking(|| std::thread::sleep(d));
            pause = (pause * 2).min(Duration::from_millis(10));
        }
    }

    /// After this no kernel code runs for anyone: every system call and
    /// every new process or lwp fails with `ESHUTDOWN`. The kernel object
    /// stays valid (its drives are not closed).
    pub fn quiesce(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.syncer.stop(false);
        self.quiesced.store(true, Ordering::SeqCst);
        // Files closed from now on (a dropped process) must not reach a
        // mounted file system or its drive.
        for m in self.mounts.list() {
            m.dead.store(true, Ordering::Release);
        }
    }

    /// Release the drives' image locks: for a halted kernel whose flush
    /// completed, so another server may take its images while this
    /// process stays (`rump.halt -h`).
    pub fn release_drive_locks(&self) {
        for d in self.drives.read().iter() {
            d.host.unlock();
        }
    }

    /// Whether the kernel has been quiesced (an `RB_HALT` halt ended): it serves nothing more.
    pub fn is_quiesced(&self) -> bool {
        self.quiesced.load(Ordering::SeqCst)
    }

    /// Install what `reboot(2)` calls; it returns an errno (0 = success)
    /// that becomes the syscall's result. Without a handler, `reboot` is
    /// `EPERM`.
    pub fn set_reboot_handler(&self, h: Box<RebootHandler>) {
        *self.reboot.write() = Some(Arc::from(h));
    }

    pub(crate) fn reboot_handler(&self) -> Option<Arc<RebootHandler>> {
        self.reboot.read().clone()
    }

    // ----- file systems and drives -----

    /// Make `mount(2)` of type `name` call `factory` with the drive's
    /// cached store and whether the mount is read-only.
    pub fn register_fs_type(&self, name: &str, factory: Box<FsFactory>) {
        self.fs_types
            .write()
            .insert(name.to_string(), Arc::from(factory));
    }

    pub(crate) fn fs_type(&self, name: &str) -> Option<Arc<FsFactory>> {
        self.fs_types.read().get(name).cloned()
    }

    /// The buffer cache's counters.
    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    /// Mounted file systems other than the root: (mount point, type).
    pub fn mounts(&self) -> Vec<(String, String)> {
        self.mounts
            .list()
            .iter()
            .map(|m| (m.path.clone(), m.fs.type_name().to_string()))
            .collect()
    }

    /// Flush everything: every mounted file system's `sync` (its dirty
    /// metadata and data into the cache), then every `blk` drive's cache
    /// (merged writes, then `rumpuser_syncfd`), then a `rumpuser_syncfd` on
    /// the host file of every other drive: each host file once. Goes on past errors, logs each on stderr,
    /// and returns the first.
    ///
    /// It takes no virtual CPU: a halt must flush even when every CPU is
    /// held by a stuck thread. Kernel locks give up nothing and wait all
    /// the same when the waiter holds no CPU, so the code below is safe to
    /// run from any thread.
    pub fn sync_all(&self) -> Result<(), Errno> {
        self.sync_all_locked()
    }

    /// What a flush would still write: a line per drive with dirty
    /// blocks and per mounted file system (its cached metadata).
    pub fn unflushed(&self) -> Vec<String> {
        let mut v = Vec::new();
        for m in self.mounts.list() {
            if !m.is_dead() && !m.fs.read_only() {
                v.push(format!(
                    "{} file system on {}: metadata cached in memory",
                    m.fs.type_name(),
                    m.path
                ));
            }
        }
        for d in self.drives.read().iter() {
            if let Some(c) = &d.cached {
                let st = c.stats();
                if st.dirty_bytes > 0 {
                    v.push(format!(
                        "drive {} ({}): {} dirty bytes ({} KiB)",
                        d.key,
                        d.hostpath,
                        st.dirty_bytes,
                        st.dirty_bytes.div_ceil(1024)
                    ));
                }
            }
        }
        v
    }

    fn sync_all_locked(&self) -> Result<(), Errno> {
        // A syncer pass in progress ends first: the two never write the
        // same buffers at once.
        self.syncer.drain();
        let mut first: Option<Errno> = None;
        // What each drive wrote counts from here: the file systems' own
        // syncs write metadata through to the drives too.
        let start: Vec<(usize, vfs_cache::Stats, Instant)> = self
            .drives
            .read()
            .iter()
            .filter_map(|d| {
                d.cached
                    .as_ref()
                    .map(|c| (d.index, c.stats(), Instant::now()))
            })
            .collect();
        for m in self.mounts.list() {
            if m.is_dead() {
                continue;
            }
            if let Err(e) = m.fs.sync() {
                tracing::error!(
                    "rumpkern: sync of {} file system on {} failed: {e}",
                    m.fs.type_name(),
                    m.path
                );
                first.get_or_insert(e);
            }
        }
        // One flush per drive's host file: a cached drive's sync ends in
        // its device's flush; the others are flushed here.
        let drives: Vec<Arc<Drive>> = self.drives.read().clone();
        for d in &drives {
            if let Some(c) = &d.cached {
                let (before, t) = start
                    .iter()
                    .find(|(i, _, _)| *i == d.index)
                    .map(|(_, s, t)| (s.clone(), *t))
                    .unwrap_or_else(|| (c.stats(), Instant::now()));
                match c.sync() {
                    Err(e) => {
                        tracing::error!(
                            "rumpkern: sync of drive {} ({}) failed: {e}",
                            d.key,
                            d.hostpath
                        );
                        first.get_or_insert(e);
                    }
                    Ok(()) if self.cfg.verbose => {
                        let after = c.stats();
                        tracing::info!(
                            "rumpkern: flushed drive {} ({}): {} bytes in {} write(s), {:.1} ms",
                            d.key,
                            d.hostpath,
                            after.flushed_bytes.saturating_sub(before.flushed_bytes),
                            after.flushes.saturating_sub(before.flushes),
                            t.elapsed().as_secs_f64() * 1e3
                        );
                    }
                    Ok(()) => {}
                }
            }
        }
        for d in drives.iter().filter(|d| d.cached.is_none()) {
            if let Err(e) = d.host.sync() {
                tracing::error!(
                    "rumpkern: syncfd of drive {} ({}) failed: {e}",
                    d.key,
                    d.hostpath
                );
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

impl Drop for Kernel {
    fn drop(&mut self) {
        // Its thread holds only a weak reference: let it go.
        self.syncer.stop(false);
    }
}

thread_local! {
    /// (kernel id, nesting) of system calls the calling thread is inside.
    static SYSDEPTH: std::cell::Cell<(usize, u32)> = const { std::cell::Cell::new((0, 0)) };
}
