//! The panic fence around C entry points.

use std::any::Any;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Run `f`; if it panics, report the panic on stderr and take the
/// `RUMPUSER_PANIC` exit (abort), so that no unwind crosses the C ABI.
#[inline]
pub(crate) fn guard<R>(what: &str, f: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => died(what, payload),
    }
}

#[cold]
#[inline(never)]
fn died(what: &str, payload: Box<dyn Any + Send>) -> ! {
    let msg = if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    };
    // Straight to standard error, not through `tracing`: the process
    // aborts next, and a queued line (or one for a subscriber the process
    // may not have) would be lost.
    let _ = writeln!(std::io::stderr(), "panic: rumpuser: {what}: {msg}");
    crate::exit::panic_abort()
}
