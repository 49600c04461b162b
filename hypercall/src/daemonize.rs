//! Interlocked daemonisation: `rumpuser_daemonize_begin` / `_done`.
//!
//! `begin` forks. The parent waits on a socket pair until the child calls
//! `done(error)` and then exits with `error` as its status (0: the server
//! is up), or `ESRCH` if the child died without reporting. The child starts
//! a new session and carries on; on success `done` points its stdio at
//! `/dev/null`. Call `begin` before any thread is started.

use std::ffi::c_int;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use crate::errno::{Errno, EINPROGRESS, ENOENT, EPIPE, ESRCH};

static DAEMONIZING: AtomicBool = AtomicBool::new(false);
static PIPE_PARENT: AtomicI32 = AtomicI32::new(-1);
static PIPE_CHILD: AtomicI32 = AtomicI32::new(-1);

/// Fork into the background. Returns in the child only; the parent exits
/// when the child reports through [`daemonize_done`].
pub fn daemonize_begin() -> Result<(), Errno> {
    if DAEMONIZING.swap(true, Ordering::SeqCst) {
        return Err(Errno(EINPROGRESS));
    }
    let mut sv = [-1 as c_int; 2];
    // SAFETY: `sv` has room for the two descriptors.
    if unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0, sv.as_mut_ptr()) } != 0 {
        DAEMONIZING.store(false, Ordering::SeqCst);
        return Err(crate::errno::last());
    }
    PIPE_PARENT.store(sv[0], Ordering::SeqCst);
    PIPE_CHILD.store(sv[1], Ordering::SeqCst);
    // SAFETY: fork before any other thread exists (the caller's contract);
    // the parent only reads a socket and _exits.
    match unsafe { libc::fork() } {
        0 => {
            // SAFETY: plain calls in the child.
            unsafe { libc::close(sv[0]) };
            // SAFETY: as above.
            if unsafe { libc::setsid() } == -1 {
                let e = crate::errno::last();
                let _ = daemonize_done(e.0);
                return Err(e);
            }
            Ok(())
        }
        -1 => {
            let e = crate::errno::last();
            // SAFETY: closing the pair we made.
            unsafe {
                libc::close(sv[0]);
                libc::close(sv[1]);
            }
            DAEMONIZING.store(false, Ordering::SeqCst);
            Err(e)
        }
        _ => parent_wait(sv),
    }
}

fn parent_wait(sv: [c_int; 2]) -> ! {
    // SAFETY: plain descriptor calls; the parent then exits.
    unsafe { libc::close(sv[1]) };
    let mut error: c_int = 0;
    let mut got = 0usize;
    let status = loop {
        let want = std::mem::size_of::<c_int>() - got;
        // SAFETY: reading into the remaining bytes of `error`.
        let n = unsafe {
            libc::recv(sv[0], (&mut error as *mut c_int).cast::<u8>().add(got).cast(), want, libc::MSG_NOSIGNAL)
        };
        if n < 0 {
            let e = crate::errno::last();
            if e.0 == crate::errno::EINTR {
                continue;
            }
            break e.0;
        }
        if n == 0 {
            break ESRCH;
        }
        got += n as usize;
        if got == std::mem::size_of::<c_int>() {
            break error;
        }
    };
    // SAFETY: _exit without running the child's atexit handlers twice.
    unsafe { libc::_exit(status) }
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
        // SAFETY: opening /dev/null and duplicating it onto stdio.
        unsafe {
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
            if null < 0 {
                error = crate::errno::last().0;
            } else {
                libc::dup2(null, 0);
                libc::dup2(null, 1);
                libc::dup2(null, 2);
                if null > 2 {
                    libc::close(null);
                }
            }
        }
    }
    let bytes = error.to_ne_bytes();
    // SAFETY: sending from a local buffer.
    let n = unsafe { libc::send(fd, bytes.as_ptr().cast(), bytes.len(), libc::MSG_NOSIGNAL) };
    if n != bytes.len() as isize {
        return Err(Errno(EPIPE));
    }
    // SAFETY: closing our end, once.
    unsafe { libc::close(fd) };
    PIPE_CHILD.store(-1, Ordering::SeqCst);
    Ok(())
}

/// `rumpuser_daemonize_begin()`.
#[no_mangle]
pub extern "C" fn rumpuser_daemonize_begin() -> c_int {
    trace_hit!(rumpuser_daemonize_begin);
    crate::guard("rumpuser_daemonize_begin", || crate::errno::ret(daemonize_begin()))
}

/// `rumpuser_daemonize_done(error)`.
#[no_mangle]
pub extern "C" fn rumpuser_daemonize_done(error: c_int) -> c_int {
    trace_hit!(rumpuser_daemonize_done);
    crate::guard("rumpuser_daemonize_done", || crate::errno::ret(daemonize_done(error)))
}

/// Short name for [`daemonize_begin`].
pub fn begin() -> Result<(), Errno> {
    daemonize_begin()
}

/// Short name for [`daemonize_done`].
pub fn done(error: i32) -> Result<(), Errno> {
    daemonize_done(error)
}
