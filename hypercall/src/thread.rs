//! Host threads for kernel threads: `rumpuser_thread_create`/`exit`/`join`.
//!
//! Each host thread carries the kernel thread's name (truncated to the
//! host's 15-byte limit), so `top -H`, gdb and `/proc/*/task/*/comm` show
//! which kernel thread is which.

use std::ffi::{c_char, c_int, c_void, CStr};

use crate::errno::{Errno, EFAULT, EINVAL};

/// The host's thread-name limit, without the terminating NUL.
pub const NAME_MAX: usize = 15;

/// `name` cut at its first NUL and to the host limit (on a UTF-8
/// character boundary).
pub fn host_name(name: &str) -> String {
    let name = name.split('\0').next().unwrap_or("");
    let mut end = name.len().min(NAME_MAX);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_string()
}

/// A joinable kernel thread started with [`spawn`].
#[derive(Debug)]
pub struct JoinHandle {
    inner: std::thread::JoinHandle<()>,
}

impl JoinHandle {
    /// Wait for the thread to finish, with the virtual CPU released.
    pub fn join(self) -> Result<(), Errno> {
        crate::upcalls::blocking(std::ptr::null_mut(), || self.inner.join())
            .map_err(|_| Errno(crate::errno::EINVAL))
    }

    /// The underlying std handle.
    pub fn thread(&self) -> &std::thread::Thread {
        self.inner.thread()
    }
}

/// Start a kernel thread named `name` running `f`. Returns a handle only
/// when `mustjoin`; otherwise the thread is detached.
///
/// A panic in a kernel thread is a kernel panic: it is reported and the
/// process takes the `RUMPUSER_PANIC` exit.
pub fn spawn(
    name: &str,
    mustjoin: bool,
    f: impl FnOnce() + Send + 'static,
) -> Result<Option<JoinHandle>, Errno> {
    let hname = host_name(name);
    // Kept outside the closure so a failed spawn (which drops its closure)
    // can be retried.
    let slot = std::sync::Arc::new(std::sync::Mutex::new(Some(f)));
    let mut tries = 0;
    let handle = loop {
        let b = std::thread::Builder::new().name(hname.clone());
        let what = format!("kernel thread {hname}");
        let slot = slot.clone();
        let body = move || {
            let f = slot.lock().ok().and_then(|mut g| g.take());
            if let Some(f) = f {
                crate::guard(&what, f)
            }
        };
        match b.spawn(body) {
            Ok(h) => break h,
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) && tries < 10 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => return Err(Errno::from(e)),
        }
    };
    Ok(if mustjoin {
        Some(JoinHandle { inner: handle })
    } else {
        None
    })
}

/// The thread entry point `void *(*)(void *)`.
type ThreadFn = extern "C" fn(*mut c_void) -> *mut c_void;

/// What `csrc/thread.c`'s trampoline needs: the function, its argument, and
/// the host thread name (NUL-terminated, at most 15 bytes).
#[repr(C)]
struct ThrStart {
    f: ThreadFn,
    arg: *mut c_void,
    name: [u8; NAME_MAX + 1],
}

extern "C" {
    /// Names the calling thread, frees its argument, runs `f(arg)`.
    fn rumpuser__thread_start(start: *mut c_void) -> *mut c_void;
}

/// `rumpuser_thread_create(fn, arg, name, mustjoin, priority, cpuidx,
/// &cookie)`: a host thread running `fn(arg)`, named `name`. Priority and
/// CPU index are hints this host does not use. For a joinable thread the
/// cookie for `rumpuser_thread_join` is stored in `*cookie`.
///
/// # Safety
/// `f` is a valid thread function for `arg`; `name` is null or a
/// NUL-terminated string; `cookie` is valid for a write when `mustjoin`.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_thread_create(
    f: Option<ThreadFn>,
    arg: *mut c_void,
    name: *const c_char,
    mustjoin: c_int,
    _priority: c_int,
    _cpuidx: c_int,
    cookie: *mut *mut c_void,
) -> c_int {
    trace_hit!(rumpuser_thread_create);
    crate::guard("rumpuser_thread_create", || {
        let Some(f) = f else { return EINVAL };
        if mustjoin != 0 && cookie.is_null() {
            return EFAULT;
        }
        // SAFETY: zeroed pthread_attr_t is immediately initialised.
        let mut attr: libc::pthread_attr_t = unsafe { std::mem::zeroed() };
        // SAFETY: `attr` is a valid attribute object to initialise.
        let rv = unsafe { libc::pthread_attr_init(&mut attr) };
        if rv != 0 {
            return crate::errno::host(rv).0;
        }
        let detach = if mustjoin != 0 {
            libc::PTHREAD_CREATE_JOINABLE
        } else {
            libc::PTHREAD_CREATE_DETACHED
        };
        // SAFETY: `attr` was initialised above.
        unsafe { libc::pthread_attr_setdetachstate(&mut attr, detach) };
        // The start record, malloc'ed: the trampoline frees it in C.
        // SAFETY: malloc of the record's size; checked for null.
        let start = unsafe { libc::malloc(std::mem::size_of::<ThrStart>()) }.cast::<ThrStart>();
        if start.is_null() {
            // SAFETY: `attr` was initialised above.
            unsafe { libc::pthread_attr_destroy(&mut attr) };
            return crate::errno::ENOMEM;
        }
        let mut rec = ThrStart {
            f,
            arg,
            name: [0; NAME_MAX + 1],
        };
        if !name.is_null() {
            // SAFETY: non-null `name` is NUL-terminated per the contract.
            let bytes = unsafe { CStr::from_ptr(name) }.to_bytes();
            let n = bytes.len().min(NAME_MAX);
            rec.name[..n].copy_from_slice(&bytes[..n]);
        }
        // SAFETY: `start` is a fresh allocation of the record's size.
        unsafe { start.write(rec) };
        // SAFETY: a zeroed pthread_t is a valid out-parameter.
        let mut tid: libc::pthread_t = unsafe { std::mem::zeroed() };
        let mut rv = 0;
        for _ in 0..10 {
            // SAFETY: the trampoline has the thread-entry signature (it is
            // declared unsafe only because it reads its argument); `attr`
            // is initialised; `tid` is a valid out-parameter.
            let entry: ThreadFn = unsafe {
                std::mem::transmute::<unsafe extern "C" fn(*mut c_void) -> *mut c_void, ThreadFn>(
                    rumpuser__thread_start,
                )
            };
            // SAFETY: as above: a valid entry, attributes and out-parameter.
            rv = unsafe { libc::pthread_create(&mut tid, &attr, entry, start.cast()) };
            if rv != libc::EAGAIN {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        // SAFETY: `attr` was initialised above.
        unsafe { libc::pthread_attr_destroy(&mut attr) };
        if rv != 0 {
            // SAFETY: no thread took the record.
            unsafe { libc::free(start.cast()) };
            return crate::errno::host(rv).0;
        }
        if mustjoin != 0 {
            let boxed = Box::into_raw(Box::new(tid));
            // SAFETY: `cookie` checked non-null above.
            unsafe { *cookie = boxed.cast() };
        }
        0
    })
}

/// `rumpuser_thread_exit()`: end the calling host thread.
///
/// # Safety
/// The calling thread was started by `rumpuser_thread_create` and has only
/// C frames (or frames that tolerate a forced unwind) above this call:
/// `pthread_exit` must not unwind through Rust code that expects to run.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_thread_exit() -> ! {
    trace_hit!(rumpuser_thread_exit);
    // No guard here: pthread_exit unwinds the thread by force, which must
    // not meet a catch_unwind.
    // SAFETY: ends the calling thread, which was started by
    // rumpuser_thread_create (C frames only above us).
    unsafe { libc::pthread_exit(std::ptr::null_mut()) }
}

/// `rumpuser_thread_join(cookie)`: wait (unscheduled) for a joinable
/// thread; the cookie is consumed on success.
///
/// # Safety
/// `cookie` came from `rumpuser_thread_create` with `mustjoin` and was not
/// joined before.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_thread_join(cookie: *mut c_void) -> c_int {
    trace_hit!(rumpuser_thread_join);
    crate::guard("rumpuser_thread_join", || {
        if cookie.is_null() {
            return EINVAL;
        }
        let tidp = cookie.cast::<libc::pthread_t>();
        // SAFETY: the cookie is the boxed pthread_t made by thread_create.
        let tid = unsafe { *tidp };
        let rv = crate::upcalls::blocking(std::ptr::null_mut(), || {
            // SAFETY: `tid` is a joinable thread not yet joined.
            unsafe { libc::pthread_join(tid, std::ptr::null_mut()) }
        });
        if rv != 0 {
            return crate::errno::host(rv).0;
        }
        // SAFETY: the box was made by thread_create and is freed once.
        drop(unsafe { Box::from_raw(tidp) });
        0
    })
}
