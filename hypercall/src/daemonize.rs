//! Interlocked daemonisation: `rumpuser_daemonize_begin` / `_done`.
//!
//! `begin` forks. The parent waits on a socket pair until the child calls
//! `done(error)` and then exits with `error` as its status (0: the server
//! is up), or `ESRCH` if the child died without reporting. The child starts
//! a new session and carries on; on success `done` points its stdio at
//! `/dev/null` (standard error only if it is not a regular file: a log
//! file stays). Call `begin` before any thread is started.

use std::ffi::c_int;
use std::os::fd::{IntoRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use nix::fcntl::OFlag;
use nix::sys::socket::{recv, send, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
use nix::sys::stat::Mode;
use nix::unistd::{close, dup2, fork, setsid, ForkResult};

use crate::errno::{Errno, EINPROGRESS, ENOENT, EPIPE, ESRCH};

// Process-wide: daemonizing forks the process itself, and
// `rumpuser_daemonize_begin`/`_done` pass no context to keep it in.
static DAEMONIZING: AtomicBool = AtomicBool::new(false);
static PIPE_CHILD: AtomicI32 = AtomicI32::new(-1);

/// Fork into the background. Returns in the child only; the parent exits
/// when the child reports through [`daemonize_done`].
///
/// # Safety
/// The calling process must have exactly one thread (no thread started by
/// this program or any library it uses, e.g. no kernel booted yet): the
/// child is a copy of the caller's thread alone, and a lock another thread
/// held at the fork (the allocator's, the hypercall layer's) would stay
/// held in it forever, or its data half-updated.
pub unsafe fn daemonize_begin() -> Result<(), Errno> {
    if DAEMONIZING.swap(true, Ordering::SeqCst) {
        return Err(Errno(EINPROGRESS));
    }
    let (parent, child) = match socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    ) {
        Ok(p) => p,
        Err(e) => {
            DAEMONIZING.store(false, Ordering::SeqCst);
            return Err(crate::errno::nix(e));
        }
    };
    // SAFETY: the caller guarantees that no other thread exists (this
    // function's contract); the parent only reads a socket and _exits.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            drop(parent);
            PIPE_CHILD.store(child.into_raw_fd(), Ordering::SeqCst);
            if let Err(e) = setsid() {
                let e = crate::errno::nix(e);
                let _ = daemonize_done(e.0);
                return Err(e);
            }
            Ok(())
        }
        Err(e) => {
            // The pair is closed as it drops.
            DAEMONIZING.store(false, Ordering::SeqCst);
            Err(crate::errno::nix(e))
        }
        Ok(ForkResult::Parent { .. }) => {
            drop(child);
            parent_wait(parent.into_raw_fd())
        }
    }
}

fn parent_wait(fd: RawFd) -> ! {
    let mut error = [0u8; std::mem::size_of::<c_int>()];
    let mut got = 0usize;
    let status = loop {
        match recv(fd, &mut error[got..], MsgFlags::MSG_NOSIGNAL) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => break crate::errno::nix(e).0,
            Ok(0) => break ESRCH,
            Ok(n) => {
                got += n;
                if got == error.len() {
                    break c_int::from_ne_bytes(error);
                }
            }
        }
    };
    // _exit without running the child's atexit handlers twice.
    crate::exit::exit_now(status)
}

/// Report from the daemon child: `error` 0 when the server is up (stdio
/// then goes to `/dev/null`), else the error the parent exits with.
pub fn daemonize_done(error: i32) -> Result<(), Errno> {
    if !DAEMONIZING.load(Ordering::SeqCst) {
        return Err(Errno(ENOENT));
    }
    let fd = PIPE_CHILD.load(Ordering::SeqCst);
    let mut error = error;
    if error == 0 {
        match nix::fcntl::open(c"/dev/null", OFlag::O_RDWR, Mode::empty()) {
            Err(e) => error = crate::errno::nix(e).0,
            Ok(null) => {
                // A log file given as standard error (`2>server.log`)
                // keeps the daemon's log; a terminal or a pipe does not
                // (a pipe held open would keep its reader waiting for the
                // end of the output as long as the server runs).
                let keep_stderr = nix::sys::stat::fstat(2)
                    .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFREG);
                for std in 0..=2 {
                    if std == 2 && keep_stderr {
                        continue;
                    }
                    let _ = dup2(null, std);
                }
                if null > 2 {
                    let _ = close(null);
                }
            }
        }
    }
    let bytes = error.to_ne_bytes();
    if send(fd, &bytes, MsgFlags::MSG_NOSIGNAL) != Ok(bytes.len()) {
        return Err(Errno(EPIPE));
    }
    let _ = close(fd);
    PIPE_CHILD.store(-1, Ordering::SeqCst);
    Ok(())
}

/// `rumpuser_daemonize_begin()`.
///
/// # Safety
/// As [`daemonize_begin`]: the calling process has one thread.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_daemonize_begin() -> c_int {
    trace_hit!(rumpuser_daemonize_begin);
    crate::guard("rumpuser_daemonize_begin", || {
        // SAFETY: this function's contract: the caller is alone.
        crate::errno::ret(unsafe { daemonize_begin() })
    })
}

/// `rumpuser_daemonize_done(error)`.
#[no_mangle]
pub extern "C" fn rumpuser_daemonize_done(error: c_int) -> c_int {
    trace_hit!(rumpuser_daemonize_done);
    crate::guard("rumpuser_daemonize_done", || {
        crate::errno::ret(daemonize_done(error))
    })
}

/// Short name for [`daemonize_begin`].
///
/// # Safety
/// As [`daemonize_begin`]: the calling process has one thread.
///
/// Forking is not safe code:
/// ```compile_fail,E0133
/// let _ = rumpuser::daemonize::begin();
/// ```
/// (The same call in an `unsafe` block compiles: the probe fails for the
/// missing `unsafe` alone.)
/// ```no_run
/// // SAFETY: the doctest's `main` runs before it starts any thread.
/// let _ = unsafe { rumpuser::daemonize::begin() };
/// ```
pub unsafe fn begin() -> Result<(), Errno> {
    // SAFETY: passed on to our caller.
    unsafe { daemonize_begin() }
}

/// Short name for [`daemonize_done`].
pub fn done(error: i32) -> Result<(), Errno> {
    daemonize_done(error)
}
