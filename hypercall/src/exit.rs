//! Termination: `rumpuser_exit`, `rumpuser_kill`.

use std::ffi::c_int;

use crate::errno::{Errno, EINVAL};

/// `RUMPUSER_PANIC`: the exit value that means "abort".
pub const RUMPUSER_PANIC: c_int = -1;
/// `RUMPUSER_PID_SELF`.
pub const RUMPUSER_PID_SELF: i64 = -1;

/// Exit the host process with `code` (stdio flushed, atexit handlers run).
pub fn exit(code: i32) -> ! {
    std::process::exit(code)
}

/// End the process at once, with no exit handlers: for a halt rescue,
/// where threads stuck on a drive may hold anything an exit handler
/// would wait for. The one thing done first is the [`set_last_words`]
/// hook (a log queue given a bounded moment to drain).
pub fn exit_now(code: i32) -> ! {
    if let Some(f) = LAST_WORDS.get() {
        // Nothing may unwind past here.
        let _ = std::panic::catch_unwind(f);
    }
    // SAFETY: _exit(2) has no preconditions and never returns (nix 0.29
    // has no wrapper).
    unsafe { libc::_exit(code) }
}

/// Process-wide: run by `exit_now`, which ends the whole process.
static LAST_WORDS: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// What [`exit_now`] runs before it ends the process: a function that
/// takes a bounded time and waits on nothing a stuck thread may hold
/// (e.g. the runtime's log writer draining its queue). Set once.
pub fn set_last_words(f: fn()) {
    let _ = LAST_WORDS.set(f);
}

/// The `RUMPUSER_PANIC` exit: `abort()` with `SIGABRT` at its default
/// action, so a core is written by the host's rules.
pub fn panic_abort() -> ! {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: installing the default action runs no handler code of ours;
    // it makes sure abort() ends in a core dump.
    let _ = unsafe { sigaction(Signal::SIGABRT, &dfl) };
    let mut set = SigSet::empty();
    set.add(Signal::SIGABRT);
    let _ = set.thread_unblock();
    std::process::abort()
}

/// NetBSD signal number → host signal number (`None` where the host has no
/// such signal: `SIGEMT` 7, `SIGINFO` 29, or out of range).
pub fn sig_to_host(nb: i32) -> Option<i32> {
    Some(match nb {
        1 => libc::SIGHUP,
        2 => libc::SIGINT,
        3 => libc::SIGQUIT,
        4 => libc::SIGILL,
        5 => libc::SIGTRAP,
        6 => libc::SIGABRT,
        8 => libc::SIGFPE,
        9 => libc::SIGKILL,
        10 => libc::SIGBUS,
        11 => libc::SIGSEGV,
        12 => libc::SIGSYS,
        13 => libc::SIGPIPE,
        14 => libc::SIGALRM,
        15 => libc::SIGTERM,
        16 => libc::SIGURG,
        17 => libc::SIGSTOP,
        18 => libc::SIGTSTP,
        19 => libc::SIGCONT,
        20 => libc::SIGCHLD,
        21 => libc::SIGTTIN,
        22 => libc::SIGTTOU,
        23 => libc::SIGIO,
        24 => libc::SIGXCPU,
        25 => libc::SIGXFSZ,
        26 => libc::SIGVTALRM,
        27 => libc::SIGPROF,
        28 => libc::SIGWINCH,
        30 => libc::SIGUSR1,
        31 => libc::SIGUSR2,
        32 => libc::SIGPWR,
        _ => return None,
    })
}

/// Deliver NetBSD signal `sig` to the process hosting the kernel.
///
/// `pid` is a kernel process id (`RUMPUSER_PID_SELF` for "this one");
/// kernel pids are not host pids, and every local kernel process lives in
/// this host process, so the signal is raised here whatever `pid` says
/// (as NetBSD's own hypercall layer does). Signal 0 only checks.
pub fn kill(pid: i64, sig: i32) -> Result<(), Errno> {
    let _ = pid;
    if sig == 0 {
        return Ok(());
    }
    let host = sig_to_host(sig).ok_or(Errno(EINVAL))?;
    let host = nix::sys::signal::Signal::try_from(host).map_err(crate::errno::nix)?;
    nix::sys::signal::raise(host).map_err(crate::errno::nix)
}

/// `rumpuser_kill(pid, sig)`.
#[no_mangle]
pub extern "C" fn rumpuser_kill(pid: i64, sig: c_int) -> c_int {
    trace_hit!(rumpuser_kill);
    crate::guard("rumpuser_kill", || crate::errno::ret(kill(pid, sig)))
}

/// `rumpuser_exit(rv)`: `RUMPUSER_PANIC` aborts, anything else exits with
/// that status.
#[no_mangle]
pub extern "C" fn rumpuser_exit(rv: c_int) -> ! {
    trace_hit!(rumpuser_exit);
    crate::trace::dump();
    if rv == RUMPUSER_PANIC {
        panic_abort()
    }
    crate::guard("rumpuser_exit", || exit(rv))
}
