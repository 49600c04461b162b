//! The stall detector: the blocking discipline (docs/design.md), checked at run
//! time. A thread must never block while it holds a virtual CPU; if one
//! does, every other thread that needs that CPU waits behind it, and with
//! all CPUs so held the kernel is wedged.
//!
//! A watcher thread samples each busy CPU every 100 ms: which host thread
//! holds it and since when, and that thread's state in
//! `/proc/self/task/TID/stat`. A thread that holds one CPU continuously
//! and is seen asleep (`S` or `D`) in every sample for a second is
//! blocked with its CPU: the detector names it, the CPU and the kernel
//! function it sleeps in (`wchan`), and (by default in debug builds, so the
//! test suite finds regressions) aborts the process. A thread that spins
//! (`R`), however long, is busy rather than blocked, and is left alone.
//!
//! The mode is [`crate::KernelConfig::lockdebug`]: off by default, so an
//! embedder's process is never aborted unless it asks; the tools take it
//! from `RUMP_LOCKDEBUG` (`0` off, `warn` report only, `abort` report and
//! abort), else [`LockDebug::tool_default`]: `abort` in debug builds, off
//! in release builds.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::Kernel;

/// How long a thread may be seen asleep with a CPU before it is reported.
const LIMIT: Duration = Duration::from_secs(1);
const TICK: Duration = Duration::from_millis(100);

/// What the stall detector does (`RUMP_LOCKDEBUG`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum LockDebug {
    /// Nothing: the detector does not run (the default).
    #[default]
    Off,
    /// Report a stalled thread on the log and go on.
    Warn,
    /// Report, then abort the process (for a core to look at).
    Abort,
}

impl LockDebug {
    /// The tools' mode when `RUMP_LOCKDEBUG` is unset: abort in debug
    /// builds (so the test suite, which runs them, finds a regression of
    /// the blocking discipline), off in release builds.
    pub fn tool_default() -> LockDebug {
        if cfg!(debug_assertions) {
            LockDebug::Abort
        } else {
            LockDebug::Off
        }
    }
}

/// Monotonic nanoseconds.
pub(crate) fn now_ns() -> u64 {
    // Process-wide: one origin for every kernel's CPU timestamps, which
    // are compared only with each other.
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_nanos() as u64
}

/// Stalls reported so far in this process: process-wide because an
/// abort ends the whole process, whichever kernel stalled.
static REPORTS: AtomicUsize = AtomicUsize::new(0);

/// How many stalls the detector has reported in this process.
pub fn reports() -> usize {
    REPORTS.load(Ordering::Relaxed)
}

/// Start watching `k` (until it is dropped), in the mode its
/// configuration says.
pub(crate) fn start(k: &Arc<Kernel>) {
    start_with(k, k.config().lockdebug)
}

/// Start watching `k` in mode `m`.
pub fn start_with(k: &Arc<Kernel>, m: LockDebug) {
    if m == LockDebug::Off {
        return;
    }
    k.sched.watched.store(true, Ordering::Relaxed);
    let w = Arc::downgrade(k);
    let _ = std::thread::Builder::new()
        .name("rumpkern-lockdebug".into())
        .spawn(move || watch(w, m));
}

/// A thread's scheduling state letter and wait channel.
fn thread_state(tid: i32) -> Option<(char, String)> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    // "tid (comm) S ...": the comm may hold anything but not a ')' last.
    let st = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
    let wchan = std::fs::read_to_string(format!("/proc/self/task/{tid}/wchan")).unwrap_or_default();
    Some((st, wchan))
}

fn thread_name(tid: i32) -> String {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn watch(k: Weak<Kernel>, m: LockDebug) {
    // Per CPU: (holder, since) seen asleep, and from when.
    let mut asleep: Vec<Option<(i32, u64, u64)>> = Vec::new();
    loop {
        std::thread::sleep(TICK);
        let Some(k) = k.upgrade() else { return };
        if k.is_quiesced() {
            return;
        }
        let cpus = k.sched.cpus();
        asleep.resize(cpus.len(), None);
        let now = now_ns();
        for (i, c) in cpus.iter().enumerate() {
            let tid = c.holder.load(Ordering::Relaxed);
            let since = c.since_ns.load(Ordering::Relaxed);
            let sleeping = tid != 0
                && now.saturating_sub(since) > TICK.as_nanos() as u64
                && thread_state(tid).is_some_and(|(s, _)| s == 'S' || s == 'D');
            if !sleeping {
                asleep[i] = None;
                continue;
            }
            match asleep[i] {
                Some((t, s, from)) if t == tid && s == since => {
                    if now.saturating_sub(from) >= LIMIT.as_nanos() as u64 {
                        report(&k, i, tid, now.saturating_sub(since), m);
                        asleep[i] = None;
                    }
                }
                _ => asleep[i] = Some((tid, since, now)),
            }
        }
    }
}

fn report(k: &Kernel, cpu: usize, tid: i32, held_ns: u64, m: LockDebug) {
    let wchan = thread_state(tid).map(|(_, w)| w).unwrap_or_default();
    let msg = format!(
        "rumpkern: lockdebug: thread {tid} ({}) is blocked (in {}) while holding virtual CPU {cpu} of {} \
         for {:.1} s: a kernel thread must give up its CPU before it blocks",
        thread_name(tid),
        if wchan.is_empty() || wchan == "0" { "the host kernel" } else { &wchan },
        k.sched.ncpu(),
        held_ns as f64 / 1e9
    );
    REPORTS.fetch_add(1, Ordering::Relaxed);
    if m != LockDebug::Abort {
        tracing::warn!("{msg}");
        return;
    }
    // About to abort: written straight to standard error from this
    // watcher thread (it holds no virtual CPU), since a queued log line,
    // or one given to a subscriber the process may not have, would be
    // lost. A line that cannot be written is dropped, never a panic.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "{msg}\nrumpkern: lockdebug: aborting (RUMP_LOCKDEBUG=warn only reports)"
    );
    std::process::abort();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KernelConfig;
    use std::time::Instant;

    /// A thread that sleeps with a CPU is reported; one that spins is not.
    #[test]
    fn blocking_with_a_cpu_is_reported_and_spinning_is_not() {
        let k = Kernel::boot(KernelConfig {
            ncpu: 1,
            lockdebug: LockDebug::Warn,
            ..KernelConfig::default()
        })
        .unwrap();
        let before = reports();
        let k2 = k.clone();
        std::thread::spawn(move || {
            k2.sched.schedule();
            let t = Instant::now();
            while t.elapsed() < Duration::from_millis(1600) {
                std::hint::spin_loop();
            }
            k2.sched.unschedule();
        })
        .join()
        .unwrap();
        assert_eq!(reports(), before, "a spinning thread is busy, not blocked");
        let k3 = k.clone();
        std::thread::spawn(move || {
            k3.sched.schedule();
            std::thread::sleep(Duration::from_millis(1600));
            k3.sched.unschedule();
        })
        .join()
        .unwrap();
        assert!(
            reports() > before,
            "a thread asleep with a CPU for 1.6 s is reported"
        );
    }

    /// By construction: kernel code (the kernel, ext2, vfs-cache, halt)
    /// takes no plain host lock and sleeps on nothing but through
    /// `blocking`. Each exception is a host wait entered with the CPU
    /// already given up, or the scheduler's own lock.
    #[test]
    fn kernel_code_uses_only_cpu_releasing_locks() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let allowed = [
            "kernel/src/sched.rs",     // the CPUs' own wait (nowrap, as NetBSD's)
            "kernel/src/lockdebug.rs", // a watcher thread, not kernel code
            "kernel/src/syncer.rs",    // a host thread with no CPU; callers wait inside `blocking`
            "vfs-cache/src/event.rs",  // waits inside `blocking`
            "vfs-cache/src/fault.rs",  // a hung drive waits inside `blocking`
        ];
        let banned = [
            "parking_lot::",
            "std::sync::Mutex",
            "std::sync::RwLock",
            "std::sync::Condvar",
            "thread::sleep",
            "thread::park",
        ];
        let mut bad = Vec::new();
        for dir in ["kernel/src", "ext2/src", "vfs-cache/src", "halt/src"] {
            let mut stack = vec![root.join(dir)];
            while let Some(d) = stack.pop() {
                for e in std::fs::read_dir(&d).unwrap().flatten() {
                    let p = e.path();
                    if p.is_dir() {
                        stack.push(p);
                        continue;
                    }
                    let rel = p
                        .strip_prefix(&root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned();
                    if p.extension().is_none_or(|x| x != "rs")
                        || allowed.contains(&rel.as_str())
                        || rel.ends_with("tests.rs")
                    {
                        continue;
                    }
                    let text = std::fs::read_to_string(&p).unwrap();
                    let mut in_tests = false;
                    for (n, line) in text.lines().enumerate() {
                        in_tests |= line.trim_start().starts_with("#[cfg(test)]");
                        let code = line.split("//").next().unwrap_or("");
                        if !in_tests
                            && !code.contains("blocking")
                            && banned.iter().any(|b| code.contains(b))
                        {
                            bad.push(format!("{rel}:{}: {}", n + 1, line.trim()));
                        }
                    }
                }
            }
        }
        assert!(
            bad.is_empty(),
            "plain host waits in kernel code:\n{}",
            bad.join("\n")
        );
    }
}
