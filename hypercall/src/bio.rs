//! Block I/O: `rumpuser_bio`, asynchronous on a small pool of named I/O
//! threads, and the Rust API [`bio_submit`] / [`bio_wait`].
//!
//! Every request is completed exactly once with (bytes done, NetBSD errno):
//! a read that meets end of file reports the bytes it got and no error; an
//! error after some bytes reports those bytes and the error. A
//! `BIO_WRITE | BIO_SYNC` request is on stable storage (`fdatasync`) before
//! it completes. As in NetBSD, an I/O thread gets its own kernel lwp
//! (`hyp_lwproc_newlwp(0)`) and runs the completion with a virtual CPU
//! (`backend_schedule` … `backend_unschedule`).

use std::cell::Cell;
use std::collections::VecDeque;
use std::ffi::{c_int, c_void};
use std::sync::{Condvar, Mutex, OnceLock};

use crate::errno::{Errno, EINVAL};
use crate::file::{pread_full, pwrite_full};

pub const BIO_READ: i32 = 0x01;
pub const BIO_WRITE: i32 = 0x02;
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

struct Pool {
    queue: Mutex<VecDeque<Job>>,
    ready: Condvar,
}

static POOL: OnceLock<Pool> = OnceLock::new();

fn pool() -> &'static Pool {
    POOL.get_or_init(|| {
        for i in 0..IO_THREADS {
            let r = std::thread::Builder::new().name(format!("rumpuser_bio{i}")).spawn(io_thread);
            if let Err(e) = r {
                crate::cons::dprint(&format!("rumpuser: cannot start I/O thread {i}: {e}\n"));
            }
        }
        Pool { queue: Mutex::new(VecDeque::new()), ready: Condvar::new() }
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
            crate::cons::dprint(&format!("rumpuser: I/O thread lwp creation failed: {rv}\n"));
        }
        HAS_LWP.with(|c| c.set(true));
    }
}

fn io_thread() {
    // The pool is initialised before any thread can find work; wait for it.
    let pool = loop {
        if let Some(p) = POOL.get() {
            break p;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    };
    loop {
        let job = {
            let mut q = match pool.queue.lock() {
                Ok(q) => q,
                Err(p) => p.into_inner(),
            };
            loop {
                if let Some(j) = q.pop_front() {
                    break j;
                }
                q = match pool.ready.wait(q) {
                    Ok(q) => q,
                    Err(p) => p.into_inner(),
                };
            }
        };
        ensure_lwp();
        // SAFETY: `bio_submit`'s caller keeps the buffer valid until `done` runs,
        // which is after this.
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
/// As [`bio_wait`]: `buf` valid for `len` bytes (writable for a read).
unsafe fn do_io(fd: c_int, op: c_int, buf: *mut u8, len: usize, off: i64) -> (usize, Option<Errno>) {
    if off < 0 || (len > 0 && buf.is_null()) {
        return (0, Some(Errno(EINVAL)));
    }
    if op & BIO_READ != 0 {
        // SAFETY: the caller's promise about `buf`.
        unsafe { pread_full(fd, buf, len, off) }
    } else if op & BIO_WRITE != 0 {
        // SAFETY: the caller's promise about `buf`.
        let (n, err) = unsafe { pwrite_full(fd, buf, len, off) };
        if err.is_none() && op & BIO_SYNC != 0 {
            // SAFETY: fdatasync has no memory-safety preconditions.
            if unsafe { libc::fdatasync(fd) } != 0 {
                return (n, Some(crate::errno::last()));
            }
        }
        (n, err)
    } else {
        (0, Some(Errno(EINVAL)))
    }
}

/// Queue a request for an I/O thread; `done(bytes, netbsd_errno)` runs
/// exactly once, on an I/O thread, with a virtual CPU if a kernel is
/// installed.
///
/// # Safety
/// `buf` must stay valid (and, for a write, unchanged; for a read, unread
/// and not otherwise borrowed) for `len` bytes until `done` runs.
pub unsafe fn bio_submit(fd: i32, op: i32, buf: *mut u8, len: usize, off: i64, done: Box<dyn FnOnce(usize, i32) + Send>) {
    let pool = pool();
    let job = Job { fd, op, buf, len, off, done };
    let mut q = match pool.queue.lock() {
        Ok(q) => q,
        Err(p) => p.into_inner(),
    };
    q.push_back(job);
    drop(q);
    pool.ready.notify_one();
}

/// Perform a request synchronously on the calling thread, with the virtual
/// CPU released while the host works. It takes a raw buffer, so it is
/// `unsafe` (safe code uses [`read_at`] and [`write_at`]):
///
/// ```compile_fail,E0133
/// #![forbid(unsafe_code)]
/// let s = String::from("immutable");
/// let _ = rumpuser::bio::bio_wait(0, rumpuser::bio::BIO_READ, s.as_ptr() as *mut u8, 8, 0);
/// ``` Returns the bytes done (fewer than
/// `len` only for a read at end of file); a `BIO_SYNC` write is durable on
/// return.
///
/// # Safety
/// `buf` must be valid for `len` bytes (writable and not otherwise
/// borrowed for a read) for the duration of the call.
pub unsafe fn bio_wait(fd: i32, op: i32, buf: *mut u8, len: usize, off: i64) -> Result<usize, Errno> {
    // SAFETY: the caller's promise about `buf`, passed on.
    let (n, err) = crate::upcalls::blocking(std::ptr::null_mut(), || unsafe { do_io(fd, op, buf, len, off) });
    match err {
        Some(e) => Err(e),
        None => Ok(n),
    }
}

/// Read into `buf` at `off` (synchronously, unscheduled).
pub fn read_at(fd: i32, buf: &mut [u8], off: i64) -> Result<usize, Errno> {
    // SAFETY: an exclusive borrow of `buf.len()` writable bytes, for the call.
    unsafe { bio_wait(fd, BIO_READ, buf.as_mut_ptr(), buf.len(), off) }
}

/// Write `buf` at `off` (synchronously, unscheduled); durable on return if
/// `sync`.
pub fn write_at(fd: i32, buf: &[u8], off: i64, sync: bool) -> Result<usize, Errno> {
    let op = if sync { BIO_WRITE | BIO_SYNC } else { BIO_WRITE };
    // SAFETY: a write only reads the buffer, borrowed for the call.
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

static OUTSTANDING: Mutex<usize> = Mutex::new(0);
static OUTSTANDING_CV: Condvar = Condvar::new();

/// Take one of the [`MAX_OUTSTANDING`] request slots, waiting unscheduled
/// if none is free.
fn outstanding_acquire() {
    let mut n = OUTSTANDING.lock().unwrap_or_else(|p| p.into_inner());
    if *n < MAX_OUTSTANDING {
        *n += 1;
        return;
    }
    drop(n);
    crate::upcalls::blocking(std::ptr::null_mut(), || {
        let mut n = OUTSTANDING.lock().unwrap_or_else(|p| p.into_inner());
        while *n >= MAX_OUTSTANDING {
            n = OUTSTANDING_CV.wait(n).unwrap_or_else(|p| p.into_inner());
        }
        *n += 1;
    })
}

fn outstanding_release() {
    let mut n = OUTSTANDING.lock().unwrap_or_else(|p| p.into_inner());
    *n = n.saturating_sub(1);
    drop(n);
    OUTSTANDING_CV.notify_one();
}

/// How many `rumpuser_bio` requests are outstanding now.
pub fn outstanding() -> usize {
    *OUTSTANDING.lock().unwrap_or_else(|p| p.into_inner())
}

struct DoneArg(*mut c_void);
// SAFETY: the kernel's biodone argument is meant to be handed to the
// completing thread.
unsafe impl Send for DoneArg {}

/// `rumpuser_bio(fd, op, data, len, off, biodone, arg)`: start the request
/// and return (first waiting, unscheduled, while [`MAX_OUTSTANDING`]
/// requests are in flight); `biodone(arg, bytes, error)` is called exactly
/// once from an I/O thread.
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
            crate::cons::dprint("rumpuser_bio: no biodone function, request dropped\n");
            return;
        };
        outstanding_acquire();
        let arg = DoneArg(arg);
        let done = Box::new(move |n: usize, e: i32| {
            let arg = arg;
            // SAFETY: the kernel's completion function with its argument.
            unsafe { biodone(arg.0, n, e) };
            outstanding_release();
        });
        // SAFETY: rumpuser_bio's contract: the kernel keeps `data` valid
        // for `len` bytes until its biodone runs.
        unsafe { bio_submit(fd, op, data.cast(), len, off, done) };
    })
}
