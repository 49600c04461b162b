//! Fault injection for tests: [`FaultyDrive`] wraps any [`BlockDevice`] and
//! misbehaves as its [`FaultControl`] says. Off unless asked for.
//!
//! A control is switched at run time with [`FaultControl::set`], or driven
//! by a control file so that another process can switch it: with
//! [`FaultControl::from_spec`]`("write-error:/path/ctl")` the fault is
//! active exactly while `/path/ctl` exists (checked on every write and
//! flush). Spec format: `MODE[:CONTROLFILE]`, `MODE` one of `write-error`,
//! `write-hang`, `write-spin`, `flush-error` (and `none`). Without a control file the mode
//! is active from the start, until `set(FaultMode::None)`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use netbsd_abi::errno::EIO;
use netbsd_abi::Errno;
use parking_lot::{Condvar, Mutex};

use crate::BlockDevice;

/// How a [`FaultyDrive`] misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FaultMode {
    /// Pass everything through.
    #[default]
    None,
    /// Writes fail with `EIO` (reads and flushes work).
    WriteError,
    /// Writes, and flushes, block until the mode changes.
    WriteHang,
    /// Flushes fail with `EIO` (writes work).
    FlushError,
    /// Writes, and flushes, spin until the mode changes, keeping the
    /// virtual CPU (a driver stuck in a busy loop: what `rump.halt -n`
    /// must get past when every CPU is held).
    WriteSpin,
}

impl FaultMode {
    /// The mode's name, as a fault spec spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultMode::None => "none",
            FaultMode::WriteError => "write-error",
            FaultMode::WriteHang => "write-hang",
            FaultMode::FlushError => "flush-error",
            FaultMode::WriteSpin => "write-spin",
        }
    }
}

impl fmt::Display for FaultMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FaultMode {
    type Err = FaultSpecError;
    fn from_str(s: &str) -> Result<FaultMode, FaultSpecError> {
        match s {
            "none" => Ok(FaultMode::None),
            "write-error" => Ok(FaultMode::WriteError),
            "write-hang" => Ok(FaultMode::WriteHang),
            "flush-error" => Ok(FaultMode::FlushError),
            "write-spin" => Ok(FaultMode::WriteSpin),
            "" => Err(FaultSpecError::EmptyMode),
            _ => Err(FaultSpecError::UnknownMode(s.to_string())),
        }
    }
}

/// A fault spec that does not parse; the message says why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FaultSpecError {
    /// Nothing before the `:`.
    #[error("empty fault mode (expected write-error, write-hang, write-spin or flush-error)")]
    EmptyMode,
    #[error(
        "unknown fault mode \"{0}\" (expected write-error, write-hang, write-spin or flush-error)"
    )]
    /// A mode that is not one of the four.
    UnknownMode(String),
    /// An empty spec.
    #[error("empty fault spec (expected MODE[:CONTROLFILE], MODE one of write-error, write-hang, write-spin, flush-error)")]
    EmptySpec,
    /// The spec, and what is wrong with its mode.
    #[error("fault spec \"{spec}\": {mode}")]
    BadMode {
        /// The spec, as given.
        spec: String,
        /// What is wrong with its mode.
        mode: Box<FaultSpecError>,
    },
    /// A `:` with nothing after it.
    #[error("fault spec \"{0}\": empty control file path after ':'")]
    EmptyControlFile(String),
}

/// The switch behind one or more [`FaultyDrive`]s.
#[derive(Debug, Default)]
pub struct FaultControl {
    mode: Mutex<FaultMode>,
    changed: Condvar,
    /// Mode active while the file exists.
    file: Option<(PathBuf, FaultMode)>,
}

/// How often a hung write looks at its control file again.
const HANG_POLL: Duration = Duration::from_millis(10);

impl FaultControl {
    /// A control in `mode`, switchable with [`FaultControl::set`].
    pub fn new(mode: FaultMode) -> FaultControl {
        FaultControl {
            mode: Mutex::new(mode),
            changed: Condvar::new(),
            file: None,
        }
    }

    /// Parse `MODE[:CONTROLFILE]` (see the module documentation).
    pub fn from_spec(spec: &str) -> Result<FaultControl, FaultSpecError> {
        let (mode, file) = match spec.split_once(':') {
            Some((m, f)) => (m, Some(f)),
            None => (spec, None),
        };
        if spec.is_empty() {
            return Err(FaultSpecError::EmptySpec);
        }
        let mode: FaultMode =
            mode.parse()
                .map_err(|e: FaultSpecError| FaultSpecError::BadMode {
                    spec: spec.to_string(),
                    mode: Box::new(e),
                })?;
        match file {
            None => Ok(FaultControl::new(mode)),
            Some("") => Err(FaultSpecError::EmptyControlFile(spec.to_string())),
            Some(f) => Ok(FaultControl {
                mode: Mutex::new(FaultMode::None),
                changed: Condvar::new(),
                file: Some((PathBuf::from(f), mode)),
            }),
        }
    }

    /// Switch the run-time mode (wakes hung writers).
    pub fn set(&self, mode: FaultMode) {
        *self.mode.lock() = mode;
        self.changed.notify_all();
    }

    /// The mode in force now: the control file's mode while that file
    /// exists, else the run-time mode.
    pub fn mode(&self) -> FaultMode {
        if let Some((path, m)) = &self.file {
            if path.exists() {
                return *m;
            }
        }
        *self.mode.lock()
    }

    /// The control file, if the mode is switched by one (the fault is active while it exists).
    pub fn control_file(&self) -> Option<&Path> {
        self.file.as_ref().map(|(p, _)| p.as_path())
    }

    /// Say that a write or flush now `what`s (hangs, spins): a test
    /// waits for this line instead of guessing when the fault took hold.
    fn announce(&self, what: &str) {
        match self.control_file() {
            Some(f) => tracing::warn!(
                "fault injection: a drive write {what} while {} exists",
                f.display()
            ),
            None => tracing::warn!("fault injection: a drive write {what}"),
        }
    }

    /// Spin while the mode in force is `WriteSpin`, on purpose without
    /// releasing the virtual CPU (yielding the host CPU only).
    fn spin(&self) {
        self.announce("spins");
        while self.mode() == FaultMode::WriteSpin {
            std::thread::yield_now();
        }
    }

    /// Block while the mode in force is `WriteHang` (virtual CPU released).
    fn hang(&self) {
        self.announce("hangs");
        rumpuser::upcalls::blocking(std::ptr::null_mut(), || {
            while self.mode() == FaultMode::WriteHang {
                let mut g = self.mode.lock();
                if *g == FaultMode::WriteHang || self.file.is_some() {
                    self.changed.wait_for(&mut g, HANG_POLL);
                }
            }
        });
    }
}

/// A [`BlockDevice`] that injects the faults its control asks for.
pub struct FaultyDrive {
    inner: Arc<dyn BlockDevice>,
    ctl: Arc<FaultControl>,
}

impl FaultyDrive {
    /// `inner` with the faults `ctl` switches on.
    pub fn new(inner: Arc<dyn BlockDevice>, ctl: Arc<FaultControl>) -> FaultyDrive {
        FaultyDrive { inner, ctl }
    }

    /// The switch.
    pub fn control(&self) -> &Arc<FaultControl> {
        &self.ctl
    }

    /// The drive the faults are injected in front of.
    pub fn inner(&self) -> &Arc<dyn BlockDevice> {
        &self.inner
    }
}

impl BlockDevice for FaultyDrive {
    fn size(&self) -> u64 {
        self.inner.size()
    }

    fn read_at(&self, buf: &mut [u8], off: u64) -> Result<(), Errno> {
        self.inner.read_at(buf, off)
    }

    fn write_at(&self, buf: &[u8], off: u64) -> Result<(), Errno> {
        loop {
            match self.ctl.mode() {
                FaultMode::WriteError => return Err(Errno(EIO)),
                FaultMode::WriteHang => self.ctl.hang(),
                FaultMode::WriteSpin => self.ctl.spin(),
                FaultMode::None | FaultMode::FlushError => return self.inner.write_at(buf, off),
            }
        }
    }

    fn write_vectored_at(&self, bufs: &[&[u8]], off: u64) -> Result<(), Errno> {
        loop {
            match self.ctl.mode() {
                FaultMode::WriteError => return Err(Errno(EIO)),
                FaultMode::WriteHang => self.ctl.hang(),
                FaultMode::WriteSpin => self.ctl.spin(),
                FaultMode::None | FaultMode::FlushError => {
                    return self.inner.write_vectored_at(bufs, off)
                }
            }
        }
    }

    fn flush(&self) -> Result<(), Errno> {
        loop {
            match self.ctl.mode() {
                FaultMode::FlushError => return Err(Errno(EIO)),
                FaultMode::WriteHang => self.ctl.hang(),
                FaultMode::WriteSpin => self.ctl.spin(),
                FaultMode::None | FaultMode::WriteError => return self.inner.flush(),
            }
        }
    }
}
