//! The runtime: boots a rump kernel in this process and serves it.
//!
//! ```no_run
//! use rumprun::{Rump, Syscalls};
//! let mut rump = Rump::builder()
//!     .ncpu(2)
//!     .memlimit(64 << 20)
//!     .drive("key=/dk,hostpath=disk.img,size=16m,type=blk")
//!     .boot()?;
//! rump.serve("unix://rump.sock")?;          // remote clients, optional
//! let p = rump.process()?;                  // or call the kernel directly
//! let fd = p.open("/dk", netbsd_abi::fcntl::O_RDWR, 0)?;
//! p.pwrite(fd, b"hello", 0)?;
//! let report = rump.halt(netbsd_abi::reboot::RB_HALT)?; // flush, then quiesce
//! assert_eq!(report.flush, Some(Ok(())));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! `rump_server`, `rump.halt` and `rumpctl` are thin layers over this and
//! the client library.
#![warn(missing_docs)]

#[cfg(feature = "cli")]
pub mod getopt;
/// The log queue every tool and library writes through (see
/// [`rumpuser::log`]).
pub use rumpuser::log;
#[cfg(feature = "netbsd")]
pub mod netbsd;
#[cfg(feature = "cli")]
pub mod tool;

use std::sync::{Arc, Mutex};

pub use halt::{Caller, Halt, HaltReport, HaltTarget};
use netbsd_abi::Errno;
/// The typed system calls, the same on a [`LocalProc`] as on a remote
/// client: bring it into scope to call them.
pub use netbsd_abi::Syscalls;
pub use rumpkern::{parse_memlimit, ConfigError, Kernel, KernelConfig, LocalProc, LockDebug};

/// What went wrong, each in a form fit for a one-line Unix message.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A CPU count of 0 or above [`MAX_NCPU`].
    #[error("{0}: invalid CPU count (1 to {MAX_NCPU})")]
    Ncpu(usize),
    /// A `RUMP_*` variable whose value is refused, as its flag's would be
    /// (`RUMP_NCPU=x: invalid CPU count (1 to 256, or host)`).
    #[error(transparent)]
    Config(#[from] rumpkern::ConfigError),
    /// The kernel did not boot (say, a memory limit of 0).
    #[error("kernel boot: {0}")]
    Boot(Errno),
    /// A drive spec that does not parse (the message names the spec).
    #[error(transparent)]
    DriveSpec(#[from] rumpkern::DriveSpecError),
    /// A fault injection spec that does not parse.
    #[error("fault {spec}: {source}")]
    Fault {
        /// The spec, as given.
        spec: String,
        /// What is wrong with it.
        source: vfs_cache::FaultSpecError,
    },
    /// A drive that cannot be attached (the message names the drive).
    #[error(transparent)]
    Drive(#[from] rumpkern::DriveError),
    /// The sysproxy server could not start (`unix://x.sock: Address
    /// already in use`).
    #[error(transparent)]
    Serve(#[from] rumpuser::sp::StartError),
    /// Booting, serving or halting NetBSD's own components (see
    /// `netbsd`, feature `netbsd`).
    #[cfg(feature = "netbsd")]
    #[error(transparent)]
    Netbsd(#[from] netbsd::NetbsdError),
}

/// The most virtual CPUs a kernel has (`-c`, `RUMP_NCPU`).
pub use rumpkern::MAX_NCPU;

/// A CPU count [`parse_ncpu`] refuses: the text given.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}: invalid CPU count (1 to {MAX_NCPU})")]
pub struct NcpuError(pub String);

/// A CPU count as `-c` and `RUMP_NCPU` take it: 1 to [`MAX_NCPU`].
pub fn parse_ncpu(s: &str) -> Result<usize, NcpuError> {
    match s.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_NCPU).contains(&n) => Ok(n),
        _ => Err(NcpuError(s.to_string())),
    }
}

/// Builds a kernel: CPUs, memory limit, drives, faults. Its settings are
/// values: it reads nothing from the environment (a tool that honours the
/// `RUMP_*` variables passes [`KernelConfig::from_env`] to
/// [`Builder::config`]).
#[derive(Default)]
pub struct Builder {
    cfg: KernelConfig,
    drives: Vec<String>,
    faults: Vec<(String, String)>,
}

impl Builder {
    /// Every kernel setting at once (default: [`KernelConfig::default`]);
    /// the other setters change one of them.
    pub fn config(mut self, cfg: KernelConfig) -> Self {
        self.cfg = cfg;
        self
    }
    /// The syncer's delays (default: NetBSD's); `delay` 0 turns the
    /// syncer off.
    pub fn sync(mut self, s: rumpkern::syncer::SyncConfig) -> Self {
        self.cfg.sync = s;
        self
    }
    /// Virtual CPUs, 1 to [`MAX_NCPU`] (default: the host's CPU count).
    pub fn ncpu(mut self, n: usize) -> Self {
        self.cfg.ncpu = n;
        self
    }
    /// Memory limit in bytes for the file system cache (default: a
    /// quarter of host memory).
    pub fn memlimit(mut self, bytes: u64) -> Self {
        self.cfg.memlimit = bytes;
        self
    }
    /// A host drive, in `rump_server -d` syntax.
    pub fn drive(mut self, spec: &str) -> Self {
        self.drives.push(spec.to_string());
        self
    }
    /// Fault injection for tests: `spec` is `write-error|write-hang|
    /// flush-error[:CONTROLFILE]` for the drive at `key`.
    pub fn fault(mut self, key: &str, spec: &str) -> Self {
        self.faults.push((key.to_string(), spec.to_string()));
        self
    }
    /// Log the boot and the halt's steps at the log's info level rather
    /// than debug (default: off).
    pub fn verbose(mut self, v: bool) -> Self {
        self.cfg.verbose = v;
        self
    }
    /// The stall detector (default: off, so the process is never aborted
    /// unless asked to be; see [`rumpkern::lockdebug`]).
    pub fn lockdebug(mut self, m: rumpkern::LockDebug) -> Self {
        self.cfg.lockdebug = m;
        self
    }

    /// Boot the built-in kernel with these settings and install the halt.
    pub fn boot(self) -> Result<Rump, Error> {
        let cfg = self.cfg;
        if !(1..=MAX_NCPU).contains(&cfg.ncpu) {
            return Err(Error::Ncpu(cfg.ncpu));
        }
        let verbose = cfg.verbose;
        let kernel = Kernel::boot(cfg).map_err(Error::Boot)?;
        for spec in &self.drives {
            // The parser's messages name the spec (`drive spec "...": ...`).
            let d = rumpkern::DriveSpec::parse(spec)?;
            let fault = match self.faults.iter().find(|(k, _)| *k == d.key) {
                Some((_, f)) => Some(Arc::new(vfs_cache::FaultControl::from_spec(f).map_err(
                    |source| Error::Fault {
                        spec: f.clone(),
                        source,
                    },
                )?)),
                None => None,
            };
            // The error names the drive by its key (`drive /dk: ...`).
            kernel.add_drive(&d, fault)?;
        }
        let refusal: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
        let refusal2 = refusal.clone();
        kernel.register_fs_type(
            netbsd_abi::fcntl::MOUNT_EXT2FS,
            Box::new(move |store, ro| {
                // The client gets the errno; the server's log gets the reason.
                let fs = ext2::Ext2Fs::mount_with(
                    store,
                    ext2::MountOptions {
                        read_only: ro,
                        force: false,
                    },
                )
                .map_err(|e| {
                    tracing::warn!("mount ext2fs refused: {e}");
                    *refusal2.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                    e.errno()
                })?;
                Ok(fs as Arc<dyn rumpkern::vfs::FileSystem>)
            }),
        );
        let node = Arc::new(Node {
            kernel: kernel.clone(),
            server: Mutex::new(None),
            halt: Arc::new(Halt::new().verbose(verbose)),
            prelude: Mutex::new(None),
            refusal,
        });
        let weak = Arc::downgrade(&node);
        kernel.set_reboot_handler(Box::new(
            move |_k: &Kernel, call: rumpkern::RebootCall| match weak.upgrade() {
                Some(n) => n.halt(call.flags, Caller::Remote(call.client)),
                None => netbsd_abi::errno::ESHUTDOWN,
            },
        ));
        Ok(Rump {
            node,
            serving: None,
        })
    }
}

/// What [`Rump::on_halt_flags`] runs first in every halt.
type HaltHook = Arc<dyn Fn(i32) + Send + Sync>;

/// A kernel with its server and its halt state: what the halt sequence
/// works on.
struct Node {
    kernel: Arc<Kernel>,
    server: Mutex<Option<rumpuser::sp::Server>>,
    halt: Arc<Halt>,
    /// Run first by every halt (see [`Rump::on_halt`]).
    prelude: Mutex<Option<HaltHook>>,
    /// Why the last ext2 mount was refused (see [`Rump::take_mount_refusal`]).
    refusal: Arc<Mutex<Option<String>>>,
}

impl Node {
    /// A halt asked for by `reboot(2)`: its errno.
    fn halt(&self, flags: i32, caller: Caller) -> i32 {
        match self.run_halt(flags, caller) {
            Ok(report) => report.errno(),
            Err(e) => e.0,
        }
    }

    fn run_halt(&self, flags: i32, caller: Caller) -> Result<HaltReport, Errno> {
        let pre = self
            .prelude
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(f) = pre {
            f(flags);
        }
        self.halt.halt(self, flags, caller)
    }
}

impl HaltTarget for Node {
    fn stop_admitting(&self) {
        self.kernel.stop_admitting()
    }
    fn wait_idle(&self, timeout: std::time::Duration) -> usize {
        self.kernel.wait_idle(timeout)
    }
    fn sync_all(&self) -> Result<(), Errno> {
        self.kernel.sync_all()
    }
    fn quiesce(&self) {
        self.kernel.quiesce()
    }
    fn release_drives(&self) {
        self.kernel.release_drive_locks()
    }
    fn unflushed(&self) -> Vec<String> {
        self.kernel.unflushed()
    }
    fn stop_serving(&self) {
        if let Some(s) = self
            .server
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            s.stop_admitting();
        }
    }
    fn fini(&self, client: rumpuser::sp::ClientHandle, errno: i32) {
        if let Some(s) = self
            .server
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            s.fini(client, errno);
        }
    }
}

/// A booted kernel in this process. A process may boot several, each
/// with its own drives and URL, and halt each on its own; dropping one
/// that was not halted halts it (flush, then quiesce).
pub struct Rump {
    node: Arc<Node>,
    serving: Option<String>,
}

impl Rump {
    /// A [`Builder`] with every setting at its default.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// Serve the kernel to sysproxy clients on `url` (`unix://PATH`,
    /// `tcp://ADDR:PORT`) with the built-in caps and deadlines.
    pub fn serve(&mut self, url: &str) -> Result<(), Error> {
        self.serve_with(url, rumpuser::sp::ServerConfig::default())
    }

    /// [`Rump::serve`] with the caps, deadlines and socket mode of `cfg`
    /// (`rump_server` passes [`rumpuser::sp::ServerConfig::from_env`]).
    pub fn serve_with(&mut self, url: &str, cfg: rumpuser::sp::ServerConfig) -> Result<(), Error> {
        let k = &self.node.kernel;
        let c = k.config();
        let up: Arc<dyn rumpuser::Upcalls> = Arc::from(k.upcalls());
        let server =
            rumpuser::sp::Server::start(url, &c.ostype, &c.osrelease, &c.machine, Some(up), cfg)?;
        // reboot(2) from a client goes straight to the halt, with no
        // virtual CPU: it must work when every CPU is stuck.
        let weak = Arc::downgrade(&self.node);
        server.set_halt_hook(Box::new(move |flags, client| match weak.upgrade() {
            Some(n) => n.halt(flags, Caller::Remote(client)),
            None => netbsd_abi::errno::ESHUTDOWN,
        }));
        *self.node.server.lock().unwrap_or_else(|p| p.into_inner()) = Some(server);
        self.serving = Some(url.to_string());
        Ok(())
    }

    /// The URL being served, if any.
    pub fn url(&self) -> Option<&str> {
        self.serving.as_deref()
    }

    /// The kernel itself, for what [`Rump`] does not wrap.
    pub fn kernel(&self) -> &Arc<Kernel> {
        &self.node.kernel
    }

    /// A process in the kernel whose memory is this one's: call its
    /// syscalls directly.
    pub fn process(&self) -> Result<LocalProc, Errno> {
        self.node.kernel.local_process()
    }

    /// Halt with NetBSD `RB_*` flags. With `RB_HALT` this returns the
    /// report (did the flush succeed?) and every later call into the
    /// kernel fails with `ESHUTDOWN`; without it, the process exits after
    /// the flush (status 0, or 1 if the flush failed).
    pub fn halt(&self, flags: i32) -> Result<HaltReport, Errno> {
        self.node.run_halt(flags, Caller::Local)
    }

    /// This kernel's halt state (begun? quiesced? did the flush fail?).
    pub fn halt_state(&self) -> Arc<Halt> {
        self.node.halt.clone()
    }

    /// Run `f` at the start of every halt of this kernel, whoever asks
    /// for it (`rump.halt`, `reboot(2)`, a signal, [`Rump::halt`]): e.g. to
    /// take a host mount of its tree away first.
    pub fn on_halt(&self, f: Box<dyn Fn() + Send + Sync>) {
        self.on_halt_flags(Box::new(move |_| f()));
    }

    /// Why the kernel's ext2 refused the last mount that failed (`unsupported
    /// incompatible features: extent, 64bit`), once: the errno a mount
    /// returns says less. `None` when no ext2 mount was refused since the
    /// last call.
    pub fn take_mount_refusal(&self) -> Option<String> {
        self.node
            .refusal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// [`Rump::on_halt`], with the halt's `reboot(2)` flags (`RB_NOSYNC`,
    /// `RB_HALT`, `RB_DUMP`): e.g. to tell a service manager what the halt
    /// does. One function at a time: this replaces an earlier one.
    pub fn on_halt_flags(&self, f: Box<dyn Fn(i32) + Send + Sync>) {
        *self.node.prelude.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::from(f));
    }
}

impl Drop for Rump {
    /// Not halted: halt with a flush, keeping the process (`RB_HALT`).
    fn drop(&mut self) {
        if !self.node.halt.halting() {
            if let Err(e) = self.halt(netbsd_abi::reboot::RB_HALT) {
                tracing::warn!("halt of a dropped kernel: {e}");
            }
        }
        // The server (its threads hold the kernel) goes with the node.
        drop(
            self.node
                .server
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        );
    }
}
