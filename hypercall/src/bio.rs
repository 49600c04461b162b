//! Block I/O: `rumpuser_bio`, asynchronous writes on a small pool of named
//! I/O threads (reads and synchronous writes on the caller's thread, its
//! virtual CPU given up), and the Rust API [`bio_submit`] / [`bio_wait`].
//!
//! Every request is completed exactly once with (bytes done, NetBSD errno):
//! a read that meets end of file reports the bytes it got and no error; an
//! error after some bytes reports those bytes and the error. A
//! `BIO_WRITE | BIO_SYNC` request is on stable storage (`fdatasync`) before
//! it completes. As in NetBSD, an I/O thread gets its own kernel lwp
//! (`hyp_lwproc_newlwp(0)`) and runs the completion with a virtual CPU
//! (`backend_schedule` … `backend_unschedule`).

use std::cell::Cell;
use std::ffi::{c_int, c_void};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::OnceLock;

use crossbeam::channel::{bounded, unbounded, Receiver, Sender, TrySendError};

use crate::errno::{Errno, EINVAL};
use crate::file::{pread_full, pwrite_full};

/// `RUMPUSER_BIO_READ`: read from the file into the buffer.
pub const BIO_READ: i32 = 0x01;
/// `RUMPUSER_BIO_WRITE`: write the buffer to the file.
pub const BIO_WRITE: i32 = 0x02;
/// `RUMPUSER_BIO_SYNC`: the write is durable before the request completes.
pub const BIO_SYNC: i32 = 0x04;

/// How many I/O threads serve asynchronous requests.
pub const IO_THREADS: usize = 4;

/// `rump_biodone_fn`.
pub type BiodoneFn = unsafe extern "C" fn(*mut c_void, usize, c_int);

struct Job {
    fd: c_int,
    op: c_int,
    buf: *mut u8,
    len: usize,
    off: i64,
    done: Box<dyn FnOnce(usize, i32) + Send>,
}

// SAFETY: the submitter promises the buffer stays valid and untouched until
// completion, whichever thread performs the I/O.
unsafe impl Send for Job {}

/// The queue the I/O threads take requests from; its sender lives for
/// the life of the process, so they never stop. Process-wide because
/// `rumpuser_bio` takes no context to find a per-kernel pool in.
static POOL: OnceLock<Sender<Job>> = OnceLock::new();

fn pool() -> &'static Sender<Job> {
    POOL.get_or_init(|| {
        let (tx, rx) = unbounded();
        for i in 0..IO_THREADS {
            let rx = rx.clone();
            let r = std::thread::Builder::new()
                .name(format!("rumpuser_bio{i}"))
                .spawn(move || io_thread(rx));
            if let Err(e) = r {
                tracing::error!("rumpuser: cannot start I/O thread {i}: {e}");
            }
        }
        tx
    })
}

thread_local! {
    static HAS_LWP: Cell<bool> = const { Cell::new(false) };
}

/// Give this I/O thread a kernel lwp, once a kernel is there.
fn ensure_lwp() {
    if HAS_LWP.with(|c| c.get()) {
        return;
    }
    if let Some(up) = crate::upcalls::get() {
        up.schedule();
        let rv = up.lwproc_newlwp(0);
        up.unschedule();
        if rv != 0 {
            tracing::error!("rumpuser: I/O thread lwp creation failed: {rv}");
        }
        HAS_LWP.with(|c| c.set(true));
    }
}

fn io_thread(jobs: Receiver<Job>) {
    for job in jobs.iter() {
        ensure_lwp();
        // SAFETY: the submitter of `job` vouched for its buffer and
        // descriptor until `done` runs (see `bio_submit`).
        let (n, err) = unsafe { do_io(job.fd, job.op, job.buf, job.len, job.off) };
        let done = job.done;
        crate::guard("biodone", || match crate::upcalls::get() {
            Some(up) => {
                up.backend_schedule(0, std::ptr::null_mut());
                done(n, err.map_or(0, |e| e.0));
                let _ = up.backend_unschedule(0, std::ptr::null_mut());
            }
            None => done(n, err.map_or(0, |e| e.0)),
        });
    }
}

/// Perform one request on the calling thread (no unscheduling here).
///
/// # Safety
/// `buf` is valid for `len` bytes (writable for a read) and not otherwise
/// accessed during the call; `fd` stays open during the call.
unsafe fn do_io(
    fd: c_int,
    op: c_int,
    buf: *mut u8,
    len: usize,
    off: i64,
) -> (usize, Option<Errno>) {
    if off < 0 || (len > 0 && buf.is_null()) || op & (BIO_READ | BIO_WRITE) == 0 {
        return (0, Some(Errno(EINVAL)));
    }
    if fd < 0 {
        // What the host calls would say: nothing to do for an empty
        // transfer (but a sync), else a bad descriptor.
        let touches = len > 0 || (op & BIO_READ == 0 && op & BIO_SYNC != 0);
        return (0, touches.then_some(Errno(crate::errno::EBADF)));
    }
    // SAFETY: the caller keeps `fd` open during the call.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    if op & BIO_READ != 0 {
        let buf: &mut [u8] = if len == 0 {
            &mut []
        } else {
            // SAFETY: per the caller, `len` writable bytes at `buf`, ours
            // for the call.
            unsafe { std::slice::from_raw_parts_mut(buf, len) }
        };
        pread_full(fd, buf, off)
    } else {
        let buf: &[u8] = if len == 0 {
            &[]
        } else {
            // SAFETY: per the caller, `len` readable bytes at `buf`,
            // unchanged during the call.
            unsafe { std::slice::from_raw_parts(buf, len) }
        };
        let (n, err) = pwrite_full(fd, buf, off);
        if err.is_none() && op & BIO_SYNC != 0 {
            if let Err(e) = nix::unistd::fdatasync(std::os::fd::AsRawFd::as_raw_fd(&fd)) {
                return (n, Some(crate::errno::nix(e)));
            }
        }
        (n, err)
    }
}

/// Queue a request for an I/O thread; `done(bytes, netbsd_errno)` runs
/// exactly once, on an I/O thread, with a virtual CPU if a kernel is
/// installed.
///
/// # Safety
/// `buf` stays valid (and, for a write, unchanged; for a read, unread)
/// for `len` bytes, and `fd` (negative, or a descriptor the caller may
/// use) stays open, until `done` runs.
pub unsafe fn bio_submit(
    fd: i32,
    op: i32,
    buf: *mut u8,
    len: usize,
    off: i64,
    done: Box<dyn FnOnce(usize, i32) + Send>,
) {
    let job = Job {
        fd,
        op,
        buf,
        len,
        off,
        done,
    };
    // The receivers live as long as the sender: a send cannot fail, and
    // `done` still runs if it did.
    if let Err(e) = pool().send(job) {
        let job = e.into_inner();
        (job.done)(0, crate::errno::EIO);
    }
}

/// Perform a request synchronously on the calling thread, with the virtual
/// CPU released while the host works. Returns the bytes done (fewer than
/// `len` only for a read at end of file); a `BIO_SYNC` write is durable on
/// return. It takes a raw buffer, so it is `unsafe` (safe code uses
/// [`read_at`] and [`write_at`]): a call outside `unsafe` does not compile
/// (E0133, "call to unsafe function")...
///
/// ```compile_fail,E0133
/// let mut buf = vec![0u8; 8];
/// let _ = rumpuser::bio::bio_wait(0, rumpuser::bio::BIO_READ, buf.as_mut_ptr(), 8, 0);
/// ```
///
/// ...while the same call inside `unsafe` does, so the missing `unsafe` is
/// the only reason the first example fails (stable rustdoc does not check
/// the error code):
///
/// ```no_run
/// let mut buf = vec![0u8; 8];
/// // SAFETY: `buf` is writable for 8 bytes during the call.
/// let _ = unsafe { rumpuser::bio::bio_wait(0, rumpuser::bio::BIO_READ, buf.as_mut_ptr(), 8, 0) };
/// ```
///
/// # Safety
/// `buf` is valid for `len` bytes (writable for a read) during the call;
/// `fd` is negative or an open descriptor the caller may use, open during
/// the call.
pub unsafe fn bio_wait(
    fd: i32,
    op: i32,
    buf: *mut u8,
    len: usize,
    off: i64,
) -> Result<usize, Errno> {
    // SAFETY: per the caller.
    let (n, err) = crate::upcalls::blocking(std::ptr::null_mut(), || unsafe {
        do_io(fd, op, buf, len, off)
    });
    match err {
        Some(e) => Err(e),
        None => Ok(n),
    }
}

/// Read into `buf` at `off` (synchronously, unscheduled).
pub fn read_at(fd: impl AsFd, buf: &mut [u8], off: i64) -> Result<usize, Errno> {
    let fd = fd.as_fd().as_raw_fd();
    // SAFETY: `buf` is borrowed mutably for the call; `fd` is borrowed
    // for it too.
    unsafe { bio_wait(fd, BIO_READ, buf.as_mut_ptr(), buf.len(), off) }
}

/// Write `buf` at `off` (synchronously, unscheduled); durable on return if
/// `sync`.
pub fn write_at(fd: impl AsFd, buf: &[u8], off: i64, sync: bool) -> Result<usize, Errno> {
    let fd = fd.as_fd().as_raw_fd();
    let op = if sync {
        BIO_WRITE | BIO_SYNC
    } else {
        BIO_WRITE
    };
    // SAFETY: `buf` is borrowed for the call, and only read for a write;
    // `fd` is borrowed for the call.
    unsafe { bio_wait(fd, op, buf.as_ptr() as *mut u8, buf.len(), off) }
}

/// At most this many `rumpuser_bio` requests are outstanding at once; a
/// kernel submitting more waits, with its virtual CPU given up, until one
/// completes — as NetBSD's own hypercall layer does (its queue holds 127).
/// Without that back-pressure NetBSD's page daemon can queue writes
/// without bound under memory pressure, and NetBSD's kernel (7.99) then
/// loses file data (pages of zeros in ext2 files): a latent race in the
/// kernel that a bounded queue makes rare. (The Rust API is not bounded.)
pub const MAX_OUTSTANDING: usize = 128;

/// The request slots: a slot is taken by sending a token, given back by
/// receiving one, so the channel's length is the number in flight.
fn slots() -> &'static (Sender<()>, Receiver<()>) {
    // Process-wide with the pool it bounds (see `POOL`).
    static SLOTS: OnceLock<(Sender<()>, Receiver<()>)> = OnceLock::new();
    SLOTS.get_or_init(|| bounded(MAX_OUTSTANDING))
}

/// Take one of the [`MAX_OUTSTANDING`] request slots, waiting unscheduled
/// if none is free.
fn outstanding_acquire() {
    let (tx, _) = slots();
    if let Err(TrySendError::Full(())) = tx.try_send(()) {
        // The receiver lives in the same static: send cannot fail.
        let _ = crate::upcalls::blocking(std::ptr::null_mut(), || tx.send(()));
    }
}

fn outstanding_release() {
    let _ = slots().1.try_recv();
}

/// How many `rumpuser_bio` requests are outstanding now.
pub fn outstanding() -> usize {
    slots().0.len()
}

struct DoneArg(*mut c_void);
// SAFETY: the kernel's biodone argument is meant to be handed to the
// completing thread.
unsafe impl Send for DoneArg {}

/// `rumpuser_bio(fd, op, data, len, off, biodone, arg)`: start the request
/// and return (first waiting, unscheduled, while [`MAX_OUTSTANDING`]
/// requests are in flight); `biodone(arg, bytes, error)` is called exactly
/// once from an I/O thread. A read or a `BIO_WRITE | BIO_SYNC` request,
/// which the kernel waits for, is done and completed before this returns.
///
/// # Safety
/// `data` is valid for `len` bytes until `biodone` runs; `biodone` is a
/// valid completion function for `arg`.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_bio(
    fd: c_int,
    op: c_int,
    data: *mut c_void,
    len: usize,
    off: i64,
    biodone: Option<BiodoneFn>,
    arg: *mut c_void,
) {
    trace_hit!(rumpuser_bio);
    crate::guard("rumpuser_bio", || {
        let Some(biodone) = biodone else {
            tracing::error!("rumpuser_bio: no biodone function, request dropped");
            return;
        };
        if op & BIO_READ != 0 || op & BIO_SYNC != 0 {
            // A read or a synchronous write: done here, with the virtual
            // CPU given up, and completed on this thread before returning,
            // as NetBSD's own layer does when it runs without I/O threads.
            // The kernel waits for these right after this returns (but for
            // read-ahead), so this saves two hand-offs between threads
            // per request. And no page stays busy under a read in flight
            // once the call returns: NetBSD 7.99's read-ahead, finding the
            // first page of its range busy that way, trips an assertion
            // (uvm_page_unbusy of a NULL page; docs/netbsd.md). Only
            // asynchronous writes (write-back) go to the I/O threads.
            // SAFETY: per this function's contract, `data` is valid and
            // `fd` open until `biodone` runs, which is below.
            let (n, err) = crate::upcalls::blocking(std::ptr::null_mut(), || unsafe {
                do_io(fd, op, data.cast(), len, off)
            });
            // SAFETY: the kernel's completion function with its argument,
            // called once, with the caller's virtual CPU held again.
            unsafe { biodone(arg, n, err.map_or(0, |e| e.0)) };
            return;
        }
        outstanding_acquire();
        let arg = DoneArg(arg);
        let done = Box::new(move |n: usize, e: i32| {
            let arg = arg;
            // SAFETY: the kernel's completion function with its argument.
            unsafe { biodone(arg.0, n, e) };
            outstanding_release();
        });
        // SAFETY: the kernel keeps `data` valid and `fd` open until
        // `biodone` runs (this function's contract).
        unsafe { bio_submit(fd, op, data.cast(), len, off, done) };
    })
}
