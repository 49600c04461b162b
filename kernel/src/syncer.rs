//! The syncer: changes written back on their own, after NetBSD's delays.
//!
//! One host thread per kernel. File data that has been dirty in the cache
//! for `vfs.sync.filedelay` seconds is written to its drive; a mounted
//! file system's metadata once its oldest change is `metadelay` old (or its
//! oldest directory change `dirdelay` old), through the file system's own
//! ordered write-back ([`vfs::FileSystem::write_back`]). `vfs.sync.delay`
//! set to 0 turns the syncer off. See `docs/syncer.md`.
//!
//! The blocking discipline: the syncer holds no virtual CPU (as the halt's
//! flush, it needs none) and no file-system-wide lock across host I/O
//! (the file system takes its changes under its lock and writes them
//! without it). With nothing dirty it sleeps until a change wakes it: an
//! idle kernel costs no wake-ups. A halt stops it, waiting for a pass in
//! progress ([`Syncer::stop`]); `rump.halt -n` stops it without waiting.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use vfs::SyncDelays;

use crate::Kernel;

/// The syncer's settings: NetBSD's `vfs.sync.*` nodes, in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncConfig {
    /// `vfs.sync.delay`: 0 turns the syncer off; otherwise the longest a
    /// change may wait for write-back, whatever the delays below say.
    pub delay: u32,
    /// `vfs.sync.filedelay`: file data.
    pub filedelay: u32,
    /// `vfs.sync.dirdelay`: directories.
    pub dirdelay: u32,
    /// `vfs.sync.metadelay`: other metadata.
    pub metadelay: u32,
}

impl Default for SyncConfig {
    /// NetBSD's defaults: 30, 30, 15 and 10 seconds.
    fn default() -> SyncConfig {
        SyncConfig {
            delay: 30,
            filedelay: 30,
            dirdelay: 15,
            metadelay: 10,
        }
    }
}

/// The `vfs.sync` node names, as `sysctl` spells them, in node order.
pub const NODES: [&str; 4] = ["delay", "filedelay", "dirdelay", "metadelay"];

/// Most seconds a delay may be set to (a day).
pub const MAX_DELAY: u32 = 86_400;

/// A `vfs.sync.*` setting [`SyncConfig::set`] refuses.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SyncNodeError {
    /// A delay longer than [`MAX_DELAY`].
    #[error("vfs.sync.{node}: {secs}: more than {MAX_DELAY} seconds")]
    TooLong {
        /// The node.
        node: String,
        /// The seconds asked for.
        secs: u32,
    },
    /// Not one of [`NODES`].
    #[error("vfs.sync.{0}: no such node")]
    NoSuchNode(String),
}

impl SyncConfig {
    /// The value of node `name` (one of [`NODES`]).
    pub fn get(&self, name: &str) -> Option<u32> {
        Some(match name {
            "delay" => self.delay,
            "filedelay" => self.filedelay,
            "dirdelay" => self.dirdelay,
            "metadelay" => self.metadelay,
            _ => return None,
        })
    }

    /// Set node `name`; `Err` names what is wrong.
    pub fn set(&mut self, name: &str, v: u32) -> Result<(), SyncNodeError> {
        if v > MAX_DELAY {
            return Err(SyncNodeError::TooLong {
                node: name.to_string(),
                secs: v,
            });
        }
        match name {
            "delay" => self.delay = v,
            "filedelay" => self.filedelay = v,
            "dirdelay" => self.dirdelay = v,
            "metadelay" => self.metadelay = v,
            _ => return Err(SyncNodeError::NoSuchNode(name.to_string())),
        }
        Ok(())
    }

    fn delays(&self) -> SyncDelays {
        let cap = |s: u32| Duration::from_secs(s.min(self.delay) as u64);
        SyncDelays {
            file: cap(self.filedelay),
            dir: cap(self.dirdelay),
            meta: cap(self.metadelay),
        }
    }
}

/// The live settings: read by the syncer at every pass, written by
/// `sysctl(2)`.
#[derive(Debug)]
struct Settings([AtomicU32; 4]);

impl Settings {
    fn load(&self) -> SyncConfig {
        let v = |i: usize| self.0[i].load(Ordering::Relaxed);
        SyncConfig {
            delay: v(0),
            filedelay: v(1),
            dirdelay: v(2),
            metadelay: v(3),
        }
    }

    fn store(&self, c: &SyncConfig) {
        for (i, n) in NODES.iter().enumerate() {
            self.0[i].store(c.get(n).unwrap_or(0), Ordering::Relaxed);
        }
    }
}

#[derive(Default)]
struct Wake {
    /// Something changed (a new dirty block, a new epoch, a setting).
    kicked: bool,
    stop: bool,
}

/// A kernel's syncer.
pub struct Syncer {
    settings: Settings,
    wake: Mutex<Wake>,
    cv: Condvar,
    /// Held for the whole of a pass: [`Syncer::stop`] waits on it.
    pass: Mutex<()>,
    stopped: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Syncer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Syncer")
            .field("settings", &self.settings.load())
            .finish()
    }
}

impl Syncer {
    pub(crate) fn new(cfg: &SyncConfig) -> Arc<Syncer> {
        let s = Arc::new(Syncer {
            settings: Settings(Default::default()),
            wake: Mutex::new(Wake::default()),
            cv: Condvar::new(),
            pass: Mutex::new(()),
            stopped: AtomicBool::new(false),
            thread: Mutex::new(None),
        });
        s.settings.store(cfg);
        s
    }

    /// Start the thread for kernel `k` (once).
    pub(crate) fn start(self: &Arc<Self>, k: &Arc<Kernel>) {
        let weak = Arc::downgrade(k);
        let me = self.clone();
        let h = std::thread::Builder::new()
            .name("rump-syncer".into())
            .spawn(move || me.run(weak));
        match h {
            Ok(h) => *self.thread.lock() = Some(h),
            Err(e) => tracing::error!("rumpkern: cannot start the syncer: {e}"),
        }
    }

    /// A hook that wakes the syncer (for the cache and file systems).
    pub(crate) fn kicker(self: &Arc<Self>) -> Arc<dyn Fn() + Send + Sync> {
        let w = Arc::downgrade(self);
        Arc::new(move || {
            if let Some(s) = w.upgrade() {
                s.kick();
            }
        })
    }

    fn kick(&self) {
        let mut w = self.wake.lock();
        if !w.kicked {
            w.kicked = true;
            self.cv.notify_one();
        }
    }

    /// The settings now.
    pub fn config(&self) -> SyncConfig {
        self.settings.load()
    }

    /// Change the settings; the syncer takes them at once.
    pub fn set_config(&self, c: &SyncConfig) {
        self.settings.store(c);
        self.kick();
    }

    /// Stop for good. With `wait`, a pass in progress ends first (the halt
    /// then writes the rest); without, nothing more starts, and a pass in
    /// progress is left to the rescue.
    pub fn stop(&self, wait: bool) {
        self.stopped.store(true, Ordering::SeqCst);
        {
            let mut w = self.wake.lock();
            w.stop = true;
            self.cv.notify_all();
        }
        if wait {
            self.drain();
        }
    }

    /// Wait for a pass in progress to end (a flush that must not write
    /// the same buffers at the same time, e.g. `sync(2)`), with the
    /// caller's virtual CPU, if it holds one, given up meanwhile.
    pub fn drain(&self) {
        rumpuser::upcalls::blocking(std::ptr::null_mut(), || drop(self.pass.lock()));
    }

    fn run(self: Arc<Self>, k: Weak<Kernel>) {
        let mut last_err: Option<Instant> = None;
        loop {
            let next = {
                let Some(k) = k.upgrade() else { return };
                if self.stopped.load(Ordering::SeqCst) || !k.is_admitting() {
                    return;
                }
                let pass = self.pass.lock();
                let next = self.pass_once(&k, &mut last_err);
                drop(pass);
                // Nothing dirty: sleep until a block is dirtied (the
                // cache's hook) or a file system changes (its own).
                if next.is_none() && k.cache.arm_dirty_hook() {
                    Some(Instant::now() + Duration::from_secs(1))
                } else {
                    next
                }
            };
            let mut w = self.wake.lock();
            if w.stop {
                return;
            }
            if !w.kicked {
                match next {
                    Some(t) => {
                        self.cv.wait_until(&mut w, t);
                    }
                    None => self.cv.wait(&mut w),
                }
            }
            w.kicked = false;
        }
    }

    /// Write back what is due; return when the next thing falls due.
    fn pass_once(&self, k: &Kernel, last_err: &mut Option<Instant>) -> Option<Instant> {
        let cfg = self.settings.load();
        if cfg.delay == 0 {
            return None;
        }
        let d = cfg.delays();
        let now = Instant::now();
        // After a failed write, at most one try a second.
        let retry_at = last_err.map(|t| t + Duration::from_secs(1));
        let may_write = retry_at.is_none_or(|t| t <= now);
        let mut next: Option<Instant> = retry_at.filter(|t| *t > now);
        let mut soonest = |t: Instant| {
            next = Some(next.map_or(t, |n| n.min(t)));
        };
        for m in k.mounts.list() {
            if m.is_dead() || m.read_only {
                continue;
            }
            let Some(due) = m.fs.writeback_due(&d) else {
                continue;
            };
            if due > now || !may_write {
                soonest(due.max(now));
                continue;
            }
            match m.fs.write_back() {
                Ok(()) => tracing::debug!(
                    "rumpkern: syncer: wrote back the metadata of {} on {}",
                    m.fs.type_name(),
                    m.path
                ),
                Err(e) => {
                    tracing::warn!(
                        "rumpkern: syncer: write-back of {} file system on {} failed: {e}",
                        m.fs.type_name(),
                        m.path
                    );
                    *last_err = Some(Instant::now());
                }
            }
            if let Some(due) = m.fs.writeback_due(&d) {
                soonest(due.max(Instant::now() + Duration::from_millis(100)));
            }
        }
        for dr in k.drives.read().clone() {
            let Some(c) = &dr.cached else { continue };
            let Some(age) = c.oldest_dirty_age() else {
                continue;
            };
            if age < d.file || !may_write {
                soonest(now + d.file.saturating_sub(age));
                continue;
            }
            match c.write_back_older(d.file) {
                Ok(n) => tracing::debug!(
                    "rumpkern: syncer: wrote back {n} bytes of drive {} ({})",
                    dr.key,
                    dr.hostpath
                ),
                Err(e) => {
                    tracing::warn!(
                        "rumpkern: syncer: write-back of drive {} ({}) failed: {e}",
                        dr.key,
                        dr.hostpath
                    );
                    *last_err = Some(Instant::now());
                }
            }
            if let Some(age) = c.oldest_dirty_age() {
                soonest(
                    Instant::now() + d.file.saturating_sub(age).max(Duration::from_millis(100)),
                );
            }
        }
        next
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::SeqCst);
    }
}
