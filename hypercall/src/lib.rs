//! The rumpuser(3) hypercall layer, interface version 17.
//!
//! Two faces over one implementation: the C ABI (`rumpuser_*`, exported from
//! `librumpuser.so`) for NetBSD's kernel, and a safe Rust API for the
//! built-in kernel. One module per hypercall family.
//!
//! Every `int`-returning C entry point returns 0 or a **NetBSD** errno; host
//! errno values are translated in one place (`netbsd_abi::errno`). No Rust
//! panic crosses the C ABI: entry points that could panic run inside
//! [`guard`], which reports and takes the `RUMPUSER_PANIC` exit.
#![warn(missing_docs)]

/// Count a call of a C entry point (see [`trace`]): one relaxed atomic
/// load when tracing is off.
macro_rules! trace_hit {
    ($name:ident) => {
        $crate::trace::hit($crate::trace::Ep::$name)
    };
}

pub mod upcalls;

pub mod bio;
pub mod clock;
pub mod cons;
pub mod curlwp;
pub mod daemonize;
pub mod dl;
pub mod errno;
pub mod exit;
pub mod exports;
pub mod file;
pub mod locks;
pub mod log;
pub mod mem;
pub mod param;
pub mod random;
pub mod sp;
pub mod thread;
pub mod trace;

mod guard;
#[cfg(test)]
mod tests;

use std::ffi::c_int;

pub use errno::Errno;
pub use upcalls::{LwpPtr, RumpuserHyperup, Upcalls, RUMPUSER_VERSION};

pub(crate) use guard::guard;

/// `rumpuser_init(version, hyperup)`: check the interface version and store
/// the kernel's upcall table. Returns 0, or NetBSD `EINVAL` for a version
/// other than 17 or a null table.
///
/// # Safety
/// `hyp` is null or points at a valid `struct rumpuser_hyperup` whose
/// entries meet [`upcalls::init_c`]'s contract.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_init(version: c_int, hyp: *const RumpuserHyperup) -> c_int {
    trace_hit!(rumpuser_init);
    guard("rumpuser_init", || {
        if version != RUMPUSER_VERSION {
            tracing::error!(
                "rumpuser: interface version mismatch: kernel {version}, hypervisor {RUMPUSER_VERSION}"
            );
            return errno::EINVAL;
        }
        // SAFETY: the caller passes null or a valid table; we copy it.
        match unsafe { hyp.as_ref() } {
            None => errno::EINVAL,
            // SAFETY: the table comes from the kernel calling
            // `rumpuser_init`, whose entries are its own upcalls (the C
            // interface's contract).
            Some(table) => errno::ret(unsafe { upcalls::init_c(version, table) }),
        }
    })
}
