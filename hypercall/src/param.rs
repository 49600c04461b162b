//! Host parameters: `rumpuser_getparam`.
//!
//! `_RUMPUSER_NCPU` comes from `RUMP_NCPU` (a number, or `host`), defaulting
//! to the host's CPU count for the built-in kernel ([`getparam`], [`ncpu`])
//! and to 2 for a kernel asking through the C ABI (`rumpuser_getparam`), as
//! NetBSD's hypercall layer reports to its kernels; `_RUMPUSER_HOSTNAME` is the kernel's host name,
//! `rump-<pid>.<host name>` as NetBSD's hypercall layer makes it; any other
//! name is looked up in the environment (`RUMP_MEMLIMIT`, `RUMP_VERBOSE`,
//! `RUMP_THREADS`…), `ENOENT` when unset. Other names beginning with `_`
//! are reserved: `EINVAL`.

use std::ffi::{c_char, c_int, c_void, CStr};

use crate::errno::{Errno, EFAULT, EINVAL, ENOENT, ERANGE};

/// `rumpuser_getparam` name: the number of virtual CPUs (`RUMP_NCPU`).
pub const PARAM_NCPU: &str = "_RUMPUSER_NCPU";
/// `rumpuser_getparam` name: the host name the kernel starts with.
pub const PARAM_HOSTNAME: &str = "_RUMPUSER_HOSTNAME";

/// The host's online CPU count (at least 1).
pub fn host_ncpu() -> usize {
    use nix::unistd::{sysconf, SysconfVar};
    match sysconf(SysconfVar::_NPROCESSORS_ONLN) {
        Ok(Some(n)) if n >= 1 => n as usize,
        _ => 1,
    }
}

fn ncpu_string() -> String {
    match std::env::var("RUMP_NCPU") {
        Ok(v) if v == "host" => host_ncpu().to_string(),
        Ok(v) => v,
        Err(_) => host_ncpu().to_string(),
    }
}

/// The number of virtual CPUs the kernel should have: `RUMP_NCPU` if it is
/// a positive number (or `host`), else the host's CPU count.
pub fn ncpu() -> usize {
    match ncpu_string().trim().parse::<usize>() {
        Ok(n) if n >= 1 => n,
        _ => host_ncpu(),
    }
}

/// The host's name (`gethostname`).
pub fn host_name() -> Option<String> {
    nix::unistd::gethostname()
        .ok()
        .map(|h| h.to_string_lossy().into_owned())
}

/// The kernel's host name: `rump-<pid>.<host name>`.
pub fn hostname() -> String {
    let pid = std::process::id();
    match host_name() {
        Some(h) => format!("rump-{pid:05}.{h}"),
        None => format!("rump-{pid:05}"),
    }
}

/// What NetBSD's hypercall layer reports for `_RUMPUSER_NCPU` when
/// `RUMP_NCPU` is unset: a fixed 2, not the host's count.
pub const C_ABI_DEFAULT_NCPU: &str = "2";

/// The value of parameter `name` as the C ABI reports it to a hosted
/// (NetBSD) kernel: as [`getparam`], except that an unset `RUMP_NCPU`
/// gives [`C_ABI_DEFAULT_NCPU`].
pub fn getparam_c(name: &str) -> Result<String, Errno> {
    if name == PARAM_NCPU && std::env::var_os("RUMP_NCPU").is_none() {
        return Ok(C_ABI_DEFAULT_NCPU.to_string());
    }
    getparam(name)
}

/// The value of parameter `name`.
pub fn getparam(name: &str) -> Result<String, Errno> {
    if name == PARAM_NCPU {
        return Ok(ncpu_string());
    }
    if name == PARAM_HOSTNAME {
        return Ok(hostname());
    }
    if name.is_empty() || name.starts_with('_') || name.contains('=') || name.contains('\0') {
        return Err(Errno(EINVAL));
    }
    match std::env::var_os(name) {
        Some(v) => Ok(v.to_string_lossy().into_owned()),
        None => Err(Errno(ENOENT)),
    }
}

/// `rumpuser_getparam(name, buf, buflen)`: the value, NUL-terminated, in
/// `buf`. A value that does not fit is `ERANGE`, except the host name,
/// which is truncated.
///
/// # Safety
/// `name` is a NUL-terminated string; `buf` points at `buflen` writable
/// bytes.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_getparam(
    name: *const c_char,
    buf: *mut c_void,
    buflen: usize,
) -> c_int {
    trace_hit!(rumpuser_getparam);
    crate::guard("rumpuser_getparam", || {
        if name.is_null() || buf.is_null() {
            return EFAULT;
        }
        // SAFETY: the caller passes a NUL-terminated string.
        let name = unsafe { CStr::from_ptr(name) };
        let Ok(name) = name.to_str() else {
            return EINVAL;
        };
        let value = match getparam_c(name) {
            Ok(v) => v,
            Err(e) => return e.0,
        };
        let bytes = value.as_bytes();
        let n = if bytes.len() < buflen {
            bytes.len()
        } else if name == PARAM_HOSTNAME && buflen > 0 {
            buflen - 1
        } else {
            return ERANGE;
        };
        // SAFETY: n + 1 <= buflen bytes are writable at `buf`.
        let dst = unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), n + 1) };
        dst[..n].copy_from_slice(&bytes[..n]);
        dst[n] = 0;
        0
    })
}
