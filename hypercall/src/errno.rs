//! NetBSD errno values (re-exported from `netbsd_abi::errno`, the one place
//! host errno is translated) and `rumpuser_seterrno`.

use std::ffi::c_int;

pub use netbsd_abi::errno::*;

/// Set the calling thread's host-visible `errno` to `error` (verbatim, as
/// the kernel hands it over).
#[inline]
pub fn seterrno(error: i32) {
    nix::errno::Errno::set_raw(error)
}

/// `rumpuser_seterrno(int)`.
#[no_mangle]
pub extern "C" fn rumpuser_seterrno(error: c_int) {
    trace_hit!(rumpuser_seterrno);
    seterrno(error)
}

/// A C return value from a `Result`: 0 or the NetBSD errno.
#[inline]
pub(crate) fn ret(r: Result<(), Errno>) -> c_int {
    match r {
        Ok(()) => 0,
        Err(e) => e.0,
    }
}

/// A host error from `nix` as a NetBSD errno.
#[inline]
pub(crate) fn nix(e: nix::errno::Errno) -> Errno {
    Errno::from_host(e as i32)
}

/// The calling thread's last host error, translated to NetBSD.
#[inline]
pub(crate) fn last() -> Errno {
    Errno::last_host()
}

/// Host errno value `rv` (as returned by pthread functions), translated.
#[inline]
pub(crate) fn host(rv: i32) -> Errno {
    Errno::from_host(rv)
}
