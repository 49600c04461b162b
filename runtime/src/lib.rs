//! The runtime: boots a rump kernel in this process and serves it.
//!
//! ```no_run
//! use rumprun::Rump;
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

pub mod getopt;
pub mod netbsd;
pub mod tool;

use std::sync::Arc;

pub use halt::{Caller, HaltReport};
use netbsd_abi::Errno;
pub use rumpkern::{parse_memlimit, Kernel, KernelConfig, LocalProc};

/// What went wrong, in a form fit for a one-line Unix message.
#[derive(Debug)]
pub struct Error(pub String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// Builds a kernel: CPUs, memory limit, drives, faults.
#[derive(Default)]
pub struct Builder {
    ncpu: Option<usize>,
    memlimit: Option<u64>,
    drives: Vec<String>,
    faults: Vec<(String, String)>,
    verbose: bool,
}

impl Builder {
    /// Virtual CPUs (default: `RUMP_NCPU`, else the host's CPU count).
    pub fn ncpu(mut self, n: usize) -> Self {
        self.ncpu = Some(n);
        self
    }
    /// Memory limit in bytes for the file system cache (default:
    /// `RUMP_MEMLIMIT`, else the kernel's default).
    pub fn memlimit(mut self, bytes: u64) -> Self {
        self.memlimit = Some(bytes);
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
    pub fn verbose(mut self, v: bool) -> Self {
        self.verbose = v;
        self
    }

    /// Boot the built-in kernel with these settings and install the halt.
    pub fn boot(self) -> Result<Rump, Error> {
        // Defaults come from RUMP_NCPU, RUMP_MEMLIMIT and RUMP_VERBOSE.
        let mut cfg = KernelConfig::default();
        if let Some(n) = self.ncpu {
            if n == 0 {
                return Err(Error("ncpu must be at least 1".into()));
            }
            cfg.ncpu = n;
        }
        if let Some(m) = self.memlimit {
            cfg.memlimit = m;
        }
        cfg.verbose |= self.verbose;
        let kernel = Kernel::boot(cfg).map_err(|e| Error(format!("kernel boot: {e}")))?;
        for spec in &self.drives {
            // The parser's messages name the spec already (`drive spec "...": ...`).
            let d = rumpkern::DriveSpec::parse(spec).map_err(Error)?;
            let fault = match self.faults.iter().find(|(k, _)| *k == d.key) {
                Some((_, f)) => Some(Arc::new(
                    vfs_cache::FaultControl::from_spec(f).map_err(|e| Error(format!("fault {f}: {e}")))?,
                )),
                None => None,
            };
            kernel.add_drive(&d, fault).map_err(|e| {
                // Name the drive once: by its key, unless the message does.
                if e.starts_with("drive ") {
                    Error(e)
                } else {
                    Error(format!("drive {}: {e}", d.key))
                }
            })?;
        }
        kernel.register_fs_type(
            netbsd_abi::fcntl::MOUNT_EXT2FS,
            Box::new(|store, ro| {
                // The client gets the errno; the server's log gets the reason.
                let fs = ext2::Ext2Fs::mount_with(store, ext2::MountOptions { read_only: ro, force: false })
                    .map_err(|e| {
                        tracing::warn!("mount ext2fs refused: {}", e.reason);
                        e.errno
                    })?;
                Ok(fs as Arc<dyn rumpkern::vfs::FileSystem>)
            }),
        );
        kernel.set_reboot_handler(Box::new(|k: &Kernel, call: rumpkern::RebootCall| {
            match halt::halt(k, call.flags, halt::Caller::Remote(call.client)) {
                Ok(report) => report.errno(),
                Err(e) => e.0,
            }
        }));
        Ok(Rump { kernel, serving: None })
    }
}

/// A booted kernel in this process.
pub struct Rump {
    kernel: Arc<Kernel>,
    serving: Option<String>,
}

impl Rump {
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// Serve the kernel to sysproxy clients on `url` (`unix://PATH`,
    /// `tcp://ADDR:PORT`).
    pub fn serve(&mut self, url: &str) -> Result<(), Error> {
        let c = self.kernel.config();
        rumpuser::sp::start(url, &c.ostype, &c.osrelease, &c.machine).map_err(|(_, msg)| Error(msg))?;
        // reboot(2) from a client goes straight to the halt, with no
        // virtual CPU: it must work when every CPU is stuck.
        let k = self.kernel.clone();
        rumpuser::sp::set_halt_hook(Box::new(move |flags, client| {
            match halt::halt(&*k, flags, Caller::Remote(client.as_ptr())) {
                Ok(report) => report.errno(),
                Err(e) => e.0,
            }
        }));
        self.serving = Some(url.to_string());
        Ok(())
    }

    /// The URL being served, if any.
    pub fn url(&self) -> Option<&str> {
        self.serving.as_deref()
    }

    pub fn kernel(&self) -> &Arc<Kernel> {
        &self.kernel
    }

    /// A process in the kernel whose memory is this one's: call its
    /// syscalls directly.
    pub fn process(&self) -> Result<LocalProc, Errno> {
        self.kernel.local_process()
    }

    /// Halt with NetBSD `RB_*` flags. With `RB_HALT` this returns the
    /// report (did the flush succeed?) and every later call into the
    /// kernel fails with `ESHUTDOWN`; without it, the process exits after
    /// the flush (status 0, or 1 if the flush failed).
    pub fn halt(&self, flags: i32) -> Result<HaltReport, Errno> {
        halt::halt(&*self.kernel, flags, Caller::Local)
    }
}
