//! Opt-in hypercall counters: which `rumpuser_*` entry points a kernel
//! calls, and how often.
//!
//! `RUMPUSER_TRACE=1` (read once, at the first hypercall) counts every call
//! of every C entry point and prints the counts on stderr when the process
//! ends — at `rumpuser_exit` (before the exit or the abort) or, failing
//! that, from an `atexit` handler. `RUMPUSER_TRACE=/some/file` appends the
//! report to that file instead (a daemonized server's stderr is
//! `/dev/null`). Unset, `0` or empty: off, and each entry point pays one
//! relaxed atomic load.
//!
//! Each entry point carries one `trace_hit!(rumpuser_name);` line. The
//! variadic `rumpuser_dprintf` is a naked trampoline into C, so its C body
//! counts itself (`csrc/dprintf.c`).

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;

macro_rules! entry_points {
    ($($name:ident),* $(,)?) => {
        /// One index per C entry point of the hypercall interface.
        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(usize)]
        pub enum Ep { $(#[doc = concat!("`", stringify!($name), "`.")] $name),* }

        /// The entry points' symbol names, in [`Ep`] order.
        pub const NAMES: &[&str] = &[$(stringify!($name)),*];
    };
}

entry_points!(
    rumpuser_init,
    rumpuser_malloc,
    rumpuser_free,
    rumpuser_anonmmap,
    rumpuser_unmap,
    rumpuser_open,
    rumpuser_close,
    rumpuser_getfileinfo,
    rumpuser_bio,
    rumpuser_iovread,
    rumpuser_iovwrite,
    rumpuser_syncfd,
    rumpuser_clock_gettime,
    rumpuser_clock_sleep,
    rumpuser_getparam,
    rumpuser_seterrno,
    rumpuser_kill,
    rumpuser_exit,
    rumpuser_putchar,
    rumpuser_dprintf,
    rumpuser_getrandom,
    rumpuser_thread_create,
    rumpuser_thread_exit,
    rumpuser_thread_join,
    rumpuser_curlwpop,
    rumpuser_curlwp,
    rumpuser_mutex_init,
    rumpuser_mutex_enter,
    rumpuser_mutex_enter_nowrap,
    rumpuser_mutex_tryenter,
    rumpuser_mutex_exit,
    rumpuser_mutex_destroy,
    rumpuser_mutex_owner,
    rumpuser_rw_init,
    rumpuser_rw_enter,
    rumpuser_rw_tryenter,
    rumpuser_rw_tryupgrade,
    rumpuser_rw_downgrade,
    rumpuser_rw_exit,
    rumpuser_rw_destroy,
    rumpuser_rw_held,
    rumpuser_cv_init,
    rumpuser_cv_destroy,
    rumpuser_cv_wait,
    rumpuser_cv_wait_nowrap,
    rumpuser_cv_timedwait,
    rumpuser_cv_signal,
    rumpuser_cv_broadcast,
    rumpuser_cv_has_waiters,
    rumpuser_dl_bootstrap,
    rumpuser_daemonize_begin,
    rumpuser_daemonize_done,
    rumpuser_sp_init,
    rumpuser_sp_copyin,
    rumpuser_sp_copyinstr,
    rumpuser_sp_copyout,
    rumpuser_sp_copyoutstr,
    rumpuser_sp_anonmmap,
    rumpuser_sp_raise,
    rumpuser_sp_fini,
);

const N: usize = NAMES.len();

const UNCHECKED: u8 = 0;
const OFF: u8 = 1;
const ON: u8 = 2;

// Process-wide: the counted entry points are C functions with no context
// argument, and the report is the process's, printed at its exit.
static STATE: AtomicU8 = AtomicU8::new(UNCHECKED);
static COUNTS: [AtomicU64; N] = [const { AtomicU64::new(0) }; N];
static DUMPED: AtomicBool = AtomicBool::new(false);
static DEST: Mutex<Option<String>> = Mutex::new(None);

extern "C" {
    /// Set non-zero while tracing: the C body of `rumpuser_dprintf` then
    /// counts its calls in `rumpuser__dprintf_calls`.
    static rumpuser__trace_on: AtomicI32;
    static rumpuser__dprintf_calls: AtomicU64;
}

/// Count one call of entry point `ep` (when tracing).
///
/// Nothing here may unwind: an entry point such as
/// `rumpuser_thread_exit` leaves through `pthread_exit`, whose forced
/// unwind must not meet a Rust landing pad in its frame. So no indexing
/// that could panic, and the first call goes through a `nounwind`
/// `extern "C"` function.
#[inline(always)]
pub fn hit(ep: Ep) {
    match STATE.load(Ordering::Relaxed) {
        OFF => {}
        ON => count(ep),
        _ => first_hit(ep as usize),
    }
}

#[inline(always)]
fn count(ep: Ep) {
    if let Some(c) = COUNTS.get(ep as usize) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

#[cold]
#[inline(never)]
extern "C" fn first_hit(ep: usize) {
    if enabled() {
        if let Some(c) = COUNTS.get(ep) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Is tracing on? (Reads `RUMPUSER_TRACE` the first time.)
pub fn enabled() -> bool {
    match STATE.load(Ordering::Acquire) {
        ON => return true,
        OFF => return false,
        _ => {}
    }
    let mut dest = DEST.lock().unwrap_or_else(|e| e.into_inner());
    match STATE.load(Ordering::Acquire) {
        ON => return true,
        OFF => return false,
        _ => {}
    }
    let v = std::env::var("RUMPUSER_TRACE").unwrap_or_default();
    let on = !v.is_empty() && v != "0";
    if on {
        if v.contains('/') {
            *dest = Some(v);
        }
        // SAFETY: a plain store into the C flag; atexit with a valid
        // `extern "C" fn()`.
        unsafe {
            rumpuser__trace_on.store(1, Ordering::Relaxed);
            libc::atexit(dump_at_exit);
        }
    }
    STATE.store(if on { ON } else { OFF }, Ordering::Release);
    on
}

/// The counts so far, in [`NAMES`] order (all zero when tracing is off).
pub fn counts() -> Vec<(&'static str, u64)> {
    NAMES
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let c = if i == Ep::rumpuser_dprintf as usize {
                // SAFETY: an atomic load of the C counter.
                unsafe { rumpuser__dprintf_calls.load(Ordering::Relaxed) }
            } else {
                COUNTS[i].load(Ordering::Relaxed)
            };
            (n, c)
        })
        .collect()
}

/// The report: one line per entry point that was called, then the ones
/// that were not.
pub fn report() -> String {
    let c = counts();
    let mut s = format!(
        "rumpuser trace (pid {}): calls per hypercall\n",
        std::process::id()
    );
    for (n, k) in c.iter().filter(|(_, k)| *k > 0) {
        s.push_str(&format!("  {n:<28} {k}\n"));
    }
    let unused: Vec<&str> = c.iter().filter(|(_, k)| *k == 0).map(|(n, _)| *n).collect();
    s.push_str(&format!(
        "  not called ({}): {}\n",
        unused.len(),
        unused.join(" ")
    ));
    s
}

/// Print the report once (at exit). No-op when tracing is off.
pub fn dump() {
    if STATE.load(Ordering::Acquire) != ON || DUMPED.swap(true, Ordering::AcqRel) {
        return;
    }
    let text = report();
    let dest = DEST.try_lock().ok().and_then(|d| d.clone());
    match dest {
        Some(path) => {
            use std::io::Write;
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                let _ = f.write_all(text.as_bytes());
            }
        }
        // At exit: straight to stderr (the log queue may have drained
        // already), a failed write dropped.
        None => {
            use std::io::Write;
            let _ = std::io::stderr().write_all(text.as_bytes());
        }
    }
}

extern "C" fn dump_at_exit() {
    dump()
}
