//! The halt subsystem (docs/design.md, "The halt contract"): what
//! `rump.halt`, a client's `reboot(2)`,
//! `SIGTERM`/`SIGINT` and an embedder's halt call all end in.
//!
//! 1. stop admitting new connections and syscalls; drain running ones
//!    (bounded);
//! 2. unless `RB_NOSYNC`, flush every file system and drive;
//! 3. answer the halting caller, shut the listener, drop every client;
//! 4. `RB_DUMP`: abort for a core (from a forked child with `RB_HALT`);
//!    `RB_HALT`: quiesce and return; otherwise exit the host process.
//!
//! The kernel is reached through [`HaltTarget`], so the sequence does not
//! care which kernel it stops and can be tested on its own.
#![warn(missing_docs)]

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use netbsd_abi::errno::{Errno, EBUSY, EINTR};
use netbsd_abi::reboot::{RB_DUMP, RB_HALT, RB_NOSYNC};
use rumpuser::sp::ClientHandle;

/// How long running syscalls get to finish before the halt goes on
/// without them (they are reported, not waited for forever).
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// With `RB_NOSYNC` something may be on fire: a syscall stuck on a hung
/// drive must not hold the halt up for long.
pub const DRAIN_TIMEOUT_NOSYNC: Duration = Duration::from_millis(500);

/// What the halt sequence needs from a kernel and its server.
pub trait HaltTarget: Send + Sync {
    /// Refuse every new syscall from now on.
    fn stop_admitting(&self);
    /// Wait for running syscalls (other than the caller's); how many are
    /// still running at `timeout`.
    fn wait_idle(&self, timeout: Duration) -> usize;
    /// Flush every file system and drive to stable storage.
    fn sync_all(&self) -> Result<(), Errno>;
    /// Stop all kernel activity; the host process stays.
    fn quiesce(&self);
    /// What a flush would still have to write, one line per item (for
    /// the message of a rescue that skips it).
    fn unflushed(&self) -> Vec<String> {
        Vec::new()
    }
    /// Halt step 1 for the kernel's sysproxy server, if it has one.
    fn stop_serving(&self) {}
    /// Halt step 3: answer `client`'s `reboot(2)` with `errno`, shut the
    /// listener, drop every client.
    fn fini(&self, _client: ClientHandle, _errno: i32) {}
    /// After an `RB_HALT` halt whose flush completed: let go of the drives
    /// (their image locks), which are now clean. By default nothing.
    fn release_drives(&self) {}
}

/// What a halt that returned did (only `RB_HALT` halts return). Its
/// `Display` is one line for a log (`halt RB_HALT: flushed in 12.1ms`);
/// `Debug` spells the flags out too.
#[derive(Clone, PartialEq, Eq)]
pub struct HaltReport {
    /// The `reboot(2)` flags the halt ran with (`RB_*`).
    pub flags: i32,
    /// `None` with `RB_NOSYNC`; else the flush result.
    pub flush: Option<Result<(), Errno>>,
    /// Syscalls still running when the drain gave up.
    pub cut_off: usize,
    /// With `RB_DUMP | RB_HALT`: whether the forked child wrote a core.
    pub core_dumped: Option<bool>,
    /// How long the halt took, to its end (the quiesce included).
    pub elapsed: Duration,
}

impl std::fmt::Display for HaltReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "halt {}: ", netbsd_abi::reboot::RbFlags(self.flags))?;
        match &self.flush {
            None => f.write_str("not flushed (RB_NOSYNC)")?,
            Some(Ok(())) => f.write_str("flushed")?,
            Some(Err(e)) => write!(f, "flush failed: {}", e.description())?,
        }
        write!(f, " in {:.1?}", self.elapsed)?;
        if self.cut_off > 0 {
            write!(
                f,
                ", {} system call(s) still running were cut off",
                self.cut_off
            )?;
        }
        match self.core_dumped {
            Some(true) => f.write_str(", core dumped")?,
            Some(false) => f.write_str(", no core written")?,
            None => {}
        }
        Ok(())
    }
}

impl std::fmt::Debug for HaltReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HaltReport")
            .field(
                "flags",
                &format_args!("{}", netbsd_abi::reboot::RbFlags(self.flags)),
            )
            .field("flush", &self.flush)
            .field("cut_off", &self.cut_off)
            .field("core_dumped", &self.core_dumped)
            .field("elapsed", &self.elapsed)
            .finish()
    }
}

impl HaltReport {
    /// The errno a halting `reboot(2)` returns: 0, or the flush error.
    pub fn errno(&self) -> i32 {
        match self.flush {
            Some(Err(e)) => e.0,
            _ => 0,
        }
    }
}

/// Who asked for the halt.
#[derive(Clone, Copy, Debug)]
pub enum Caller {
    /// A sysproxy client inside `reboot(2)`: its handle, to answer it
    /// before the listener goes.
    Remote(ClientHandle),
    /// The host process itself (embedder, signal).
    Local,
}

impl Caller {
    fn client(self) -> ClientHandle {
        match self {
            Caller::Remote(c) => c,
            Caller::Local => ClientHandle::NULL,
        }
    }
}

impl std::fmt::Display for Caller {
    /// `client 3` (the sysproxy connection's id, which is what the handle
    /// holds) or `the host process`, never a pointer.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Caller::Remote(c) => write!(f, "client {}", c.0),
            Caller::Local => f.write_str("the host process"),
        }
    }
}

/// How a halt leaves the process. The host's are [`HOST_ENDS`]; the unit
/// tests put in ones that unwind instead, so that every path of the
/// sequence runs in the test process.
struct Ends {
    /// End the process normally (exit handlers run).
    exit: fn(i32) -> !,
    /// End it at once: a rescue's threads stuck on a drive may hold what
    /// exit handlers wait for.
    exit_now: fn(i32) -> !,
    /// Abort for a core (`RB_DUMP` without `RB_HALT`).
    dump_core: fn() -> !,
    /// `RB_DUMP | RB_HALT`: a child writes the core; whether it did.
    dump_core_in_child: fn() -> bool,
}

const HOST_ENDS: Ends = Ends {
    exit: rumpuser::exit::exit,
    exit_now: rumpuser::exit::exit_now,
    dump_core,
    dump_core_in_child,
};

const ST_IDLE: u8 = 0;
const ST_FLUSHING: u8 = 1;
const ST_FINISHING: u8 = 2;
const ST_RESCUED: u8 = 3;

/// The halt state of one kernel: it belongs with the kernel it halts, so
/// a process may halt several kernels, each once.
#[derive(Debug, Default)]
pub struct Halt {
    /// None yet; draining or flushing (what a rescue may cut short); past
    /// its flush; taken over by a rescue (the halt it overtook must not go
    /// on if its flush ever returns).
    state: AtomicU8,
    quiesced: AtomicBool,
    /// The flush failed, or a rescue skipped it.
    flush_failed: AtomicBool,
    /// Whether the steps are logged at info level (else debug).
    verbose: bool,
}

impl Halt {
    /// A kernel's halt state before any halt, quiet: the steps are
    /// logged at debug level, failures at warning level.
    pub fn new() -> Halt {
        Halt::default()
    }

    /// Log the steps (what is halted, by whom, how long the flush took)
    /// at info level, as `-v` asks, rather than debug. Failures are
    /// warnings either way.
    pub fn verbose(mut self, v: bool) -> Halt {
        self.verbose = v;
        self
    }

    /// Whether a halt has begun.
    pub fn halting(&self) -> bool {
        self.state.load(Ordering::Acquire) != ST_IDLE
    }

    /// Whether the halt's flush failed (or a rescue skipped it): a
    /// quiesced server told to exit reports that in its exit status.
    pub fn flush_failed(&self) -> bool {
        self.flush_failed.load(Ordering::Acquire)
    }

    /// Whether an `RB_HALT` halt has finished: the kernel is quiesced and
    /// the host process stays until told to exit.
    pub fn quiesced(&self) -> bool {
        self.quiesced.load(Ordering::Acquire)
    }

    /// Run the halt sequence on `k`. Returns only with `RB_HALT` (or when
    /// another halt of this kernel is already under way: `EBUSY`);
    /// otherwise the process ends here.
    ///
    /// A halt with `RB_NOSYNC` that arrives while another is still draining
    /// or flushing is a rescue ("virtually on fire"): it skips the rest of
    /// that flush, says what was not flushed, answers its caller and ends
    /// the process at once (status 1), or with `RB_HALT` quiesces. Any
    /// other halt during a halt gets `EBUSY`.
    pub fn halt(
        &self,
        k: &dyn HaltTarget,
        flags: i32,
        caller: Caller,
    ) -> Result<HaltReport, Errno> {
        self.halt_with(k, flags, caller, &HOST_ENDS)
    }

    fn halt_with(
        &self,
        k: &dyn HaltTarget,
        flags: i32,
        caller: Caller,
        ends: &Ends,
    ) -> Result<HaltReport, Errno> {
        if self
            .state
            .compare_exchange(ST_IDLE, ST_FLUSHING, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            if flags & RB_NOSYNC != 0
                && self
                    .state
                    .compare_exchange(ST_FLUSHING, ST_RESCUED, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                return self.rescue(k, flags, caller, ends);
            }
            return Err(Errno(EBUSY));
        }
        let start = Instant::now();
        self.note(&format!(
            "halt: {} by {caller}",
            netbsd_abi::reboot::RbFlags(flags)
        ));

        // 1. Stop admitting; let running syscalls finish, within bounds.
        k.stop_admitting();
        k.stop_serving();
        let drain = if flags & RB_NOSYNC != 0 {
            DRAIN_TIMEOUT_NOSYNC
        } else {
            DRAIN_TIMEOUT
        };
        let cut_off = k.wait_idle(drain);
        if cut_off > 0 {
            log(&format!(
                "halt: {cut_off} system call(s) still running after {drain:?}, cut off"
            ));
        }

        // 2. Flush, unless told the disks are on fire.
        let flush = if flags & RB_NOSYNC == 0 {
            let r = k.sync_all();
            if let Err(e) = r {
                log(&format!("halt: file system flush failed: {e}"));
            } else {
                self.note(&format!("halt: flushed in {:?}", start.elapsed()));
            }
            Some(r)
        } else {
            // Say what is thrown away, drive by drive: it never reaches
            // the images.
            for l in k.unflushed() {
                log(&format!("halt: not flushed (RB_NOSYNC): {l}"));
            }
            None
        };
        let errno = match flush {
            Some(Err(e)) => e.0,
            _ => 0,
        };
        if errno != 0 {
            self.flush_failed.store(true, Ordering::Release);
        }
        // A rescue overtook this halt while it flushed: it owns the end now.
        if self
            .state
            .compare_exchange(
                ST_FLUSHING,
                ST_FINISHING,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_err()
        {
            return Err(Errno(EINTR));
        }

        // 3. Answer the caller, then shut the listener and drop every client.
        k.fini(caller.client(), errno);

        // 4. Core, quiesce, or exit.
        let report = HaltReport {
            flags,
            flush,
            cut_off,
            core_dumped: None,
            elapsed: start.elapsed(),
        };
        self.end(k, report, start, ends, ends.exit)
    }

    /// Step 4, for a halt and a rescue alike: a core if asked for, then
    /// quiesce and return (`RB_HALT`) or end the process with `exit`
    /// (status 0, or 1 after a failed or skipped flush).
    fn end(
        &self,
        k: &dyn HaltTarget,
        mut report: HaltReport,
        start: Instant,
        ends: &Ends,
        exit: fn(i32) -> !,
    ) -> Result<HaltReport, Errno> {
        let flags = report.flags;
        if flags & RB_DUMP != 0 {
            if flags & RB_HALT != 0 {
                report.core_dumped = Some((ends.dump_core_in_child)());
            } else {
                // Said before the abort (dump_core drains the log).
                match raise_core_limit() {
                    Ok(()) => log("halt: dumping core"),
                    Err(why) => log(&format!("halt: no core written: {why}")),
                }
                (ends.dump_core)();
            }
        }
        if flags & RB_HALT != 0 {
            k.quiesce();
            if report.flush == Some(Ok(())) {
                k.release_drives();
            }
            self.quiesced.store(true, Ordering::Release);
            self.note("halt: kernel halted, host process stays up");
            report.elapsed = start.elapsed();
            return Ok(report);
        }
        self.note(&format!("halt: exiting after {:?}", start.elapsed()));
        exit(if self.flush_failed() { 1 } else { 0 })
    }

    /// What the halt is doing: the log's info level when verbose (`-v`),
    /// else debug.
    fn note(&self, msg: &str) {
        if self.verbose {
            tracing::info!("{msg}");
        } else {
            tracing::debug!("{msg}");
        }
    }

    /// The rescue (see [`Halt::halt`]): no drain, no flush, no CPU.
    fn rescue(
        &self,
        k: &dyn HaltTarget,
        flags: i32,
        caller: Caller,
        ends: &Ends,
    ) -> Result<HaltReport, Errno> {
        let start = Instant::now();
        self.flush_failed.store(true, Ordering::Release);
        log(&format!(
            "halt: {} during a halt: skipping the rest of the flush",
            netbsd_abi::reboot::RbFlags(flags)
        ));
        let left = k.unflushed();
        if left.is_empty() {
            log("halt: nothing was left to flush");
        }
        for l in &left {
            log(&format!("halt: not flushed: {l}"));
        }
        k.stop_admitting();
        k.fini(caller.client(), 0);
        let report = HaltReport {
            flags,
            flush: None,
            cut_off: 0,
            core_dumped: None,
            elapsed: start.elapsed(),
        };
        // Threads stuck on a drive may hold what exit handlers wait for.
        self.end(k, report, start, ends, ends.exit_now)
    }
}

/// What the halt says on the console whatever the verbosity (a flush
/// that failed, what a rescue left unwritten): a warning in the log,
/// never a write that could block or fail the halt.
fn log(msg: &str) {
    tracing::warn!("{msg}");
}

/// Why no core can be written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CoreLimitError {
    /// The limit could not be read.
    #[error("getrlimit: {0}")]
    Get(nix::Error),
    /// The soft limit is below the hard one and could not be raised.
    #[error("the core size limit is {soft} bytes and cannot be raised to {hard}: {errno}")]
    Raise {
        /// The soft limit.
        soft: u64,
        /// The hard limit.
        hard: u64,
        /// Why setrlimit failed.
        errno: nix::Error,
    },
    /// The hard limit is 0: only root (or the service manager) can raise it.
    #[error(
        "the core size limit is 0 and so is its hard limit (raise it: ulimit -c unlimited as \
         root, or LimitCORE= in a systemd unit)"
    )]
    HardZero,
}

/// Raise the core size limit to its hard limit, so `RB_DUMP` writes a
/// core even where shells start with `ulimit -c 0`; `Err` says why no core
/// can be written (a hard limit of 0).
pub fn raise_core_limit() -> Result<(), CoreLimitError> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_CORE).map_err(CoreLimitError::Get)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_CORE, hard, hard).map_err(|errno| CoreLimitError::Raise {
            soft,
            hard,
            errno,
        })?;
    }
    if hard == 0 {
        return Err(CoreLimitError::HardZero);
    }
    Ok(())
}

/// Abort with `SIGABRT` at its default action, so the host writes a core
/// by its own rules. Kept out of line so a debugger shows this frame.
#[inline(never)]
pub fn dump_core() -> ! {
    // The log's last lines first (the halt said why it dumps, or why no
    // core will be written): abort() runs no exit handler.
    rumpuser::log::drain(std::time::Duration::from_millis(200));
    // SIGABRT at its default action and unblocked, then abort(): the
    // host writes a core by its own rules.
    rumpuser::exit::panic_abort()
}

/// `RB_DUMP | RB_HALT`: a forked child aborts to write the core; this
/// process stays. Returns whether the child's core was written.
#[inline(never)]
fn dump_core_in_child() -> bool {
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, ForkResult};
    if let Err(why) = raise_core_limit() {
        log(&format!("halt: no core written: {why}"));
        return false;
    }
    // SAFETY: the child only calls async-signal-safe functions
    // (sigaction, pthread_sigmask, abort) before it dies; the parent just
    // waits for it.
    match unsafe { fork() } {
        Err(e) => {
            log(&format!(
                "halt: fork for core dump: {}",
                std::io::Error::from(e)
            ));
            false
        }
        Ok(ForkResult::Child) => rumpuser::exit::panic_abort(),
        Ok(ForkResult::Parent { child }) => loop {
            match waitpid(child, None) {
                Ok(WaitStatus::Signaled(_, _, core)) => break core,
                Err(nix::errno::Errno::EINTR) => continue,
                Ok(_) | Err(_) => break false,
            }
        },
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod report_tests {
    use super::*;

    #[test]
    fn reports_name_their_flags() {
        let r = HaltReport {
            flags: netbsd_abi::reboot::RB_HALT,
            flush: Some(Ok(())),
            cut_off: 0,
            core_dumped: None,
            elapsed: Duration::from_millis(12),
        };
        assert_eq!(r.to_string(), "halt RB_HALT: flushed in 12.0ms");
        assert!(format!("{r:?}").contains("flags: RB_HALT,"), "{r:?}");
        let r = HaltReport {
            flags: netbsd_abi::reboot::RB_HALT | netbsd_abi::reboot::RB_NOSYNC,
            flush: None,
            cut_off: 2,
            core_dumped: Some(false),
            elapsed: Duration::from_secs(1),
        };
        assert_eq!(
            r.to_string(),
            "halt RB_NOSYNC|RB_HALT: not flushed (RB_NOSYNC) in 1.0s, 2 system call(s) still running were cut off, no core written"
        );
    }
}
