//! The current kernel lwp of each host thread (`rumpuser_curlwp`).
//!
//! A plain thread-local: read in the kernel's hot paths, never locked.

use std::cell::Cell;
use std::ffi::c_int;

pub use crate::upcalls::LwpPtr;

/// `enum rumplwpop`.
pub const LWP_CREATE: c_int = 0;
/// `RUMPUSER_LWP_DESTROY`: the lwp goes away.
pub const LWP_DESTROY: c_int = 1;
/// `RUMPUSER_LWP_SET`: make the lwp the calling thread's current one.
pub const LWP_SET: c_int = 2;
/// `RUMPUSER_LWP_CLEAR`: the calling thread has no current lwp any more.
pub const LWP_CLEAR: c_int = 3;

thread_local! {
    static CURLWP: Cell<LwpPtr> = const { Cell::new(std::ptr::null_mut()) };
}

/// The lwp the kernel set for the calling thread, or null.
#[inline]
pub fn curlwp() -> LwpPtr {
    // A const-initialised Cell of a raw pointer has no destructor, so
    // access never fails, even during thread teardown.
    CURLWP.with(|c| c.get())
}

/// Set (or, with null, clear) the calling thread's current lwp.
#[inline]
pub fn set_curlwp(l: LwpPtr) {
    CURLWP.with(|c| c.set(l))
}

/// `rumpuser_curlwpop(op, l)`: `CREATE`/`DESTROY` need no bookkeeping here,
/// `SET` makes `l` current for this thread, `CLEAR` forgets it.
#[no_mangle]
pub extern "C" fn rumpuser_curlwpop(op: c_int, l: LwpPtr) {
    trace_hit!(rumpuser_curlwpop);
    match op {
        LWP_SET => set_curlwp(l),
        LWP_CLEAR => set_curlwp(std::ptr::null_mut()),
        _ => {}
    }
}

/// `rumpuser_curlwp()`.
#[no_mangle]
pub extern "C" fn rumpuser_curlwp() -> LwpPtr {
    trace_hit!(rumpuser_curlwp);
    curlwp()
}
