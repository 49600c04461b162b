//! The C face of sysproxy: `rumpuser_sp_*` with their exact v17
//! signatures. Each returns 0 or a NetBSD errno.

use std::ffi::{c_char, c_int, c_void, CStr};

use netbsd_abi::errno::{EFAULT, EINVAL};

use super::ClientHandle;
use crate::guard;

fn ret<T>(r: Result<T, crate::Errno>) -> c_int {
    match r {
        Ok(_) => 0,
        Err(e) => e.0,
    }
}

/// # Safety
/// Each argument is null or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_sp_init(
    url: *const c_char,
    ostype: *const c_char,
    osrelease: *const c_char,
    machine: *const c_char,
) -> c_int {
    trace_hit!(rumpuser_sp_init);
    guard("rumpuser_sp_init", || {
        let s = |p: *const c_char| {
            if p.is_null() {
                None
            } else {
                // SAFETY: the caller passes NUL-terminated strings.
                unsafe { CStr::from_ptr(p) }.to_str().ok()
            }
        };
        match (s(url), s(ostype), s(osrelease), s(machine)) {
            (Some(u), Some(o), Some(r), Some(m)) => ret(super::init(u, o, r, m)),
            _ => EINVAL,
        }
    })
}

/// # Safety
/// `laddr` is valid for writes of `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_sp_copyin(
    arg: *mut c_void,
    raddr: *const c_void,
    laddr: *mut c_void,
    len: usize,
) -> c_int {
    trace_hit!(rumpuser_sp_copyin);
    guard("rumpuser_sp_copyin", || {
        if len == 0 {
            return 0;
        }
        if laddr.is_null() {
            return EFAULT;
        }
        // SAFETY: the kernel's buffer, valid for `len` bytes.
        let dst = unsafe { std::slice::from_raw_parts_mut(laddr as *mut u8, len) };
        ret(super::copyin(ClientHandle::from(arg), raddr as u64, dst))
    })
}

/// # Safety
/// `lenp` points at the size of `laddr`, valid for writes of that many
/// bytes; on success it is set to the number of bytes received.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_sp_copyinstr(
    arg: *mut c_void,
    raddr: *const c_void,
    laddr: *mut c_void,
    lenp: *mut usize,
) -> c_int {
    trace_hit!(rumpuser_sp_copyinstr);
    guard("rumpuser_sp_copyinstr", || {
        if lenp.is_null() {
            return EFAULT;
        }
        // SAFETY: the kernel passes a valid size_t pointer.
        let len = unsafe { *lenp };
        if len == 0 {
            return 0;
        }
        if laddr.is_null() {
            return EFAULT;
        }
        // SAFETY: the kernel's buffer, valid for `len` bytes.
        let dst = unsafe { std::slice::from_raw_parts_mut(laddr as *mut u8, len) };
        match super::copyinstr(ClientHandle::from(arg), raddr as u64, dst) {
            Ok(n) => {
                // SAFETY: as above.
                unsafe { *lenp = n };
                0
            }
            Err(e) => e.0,
        }
    })
}

/// # Safety
/// `laddr` is valid for reads of `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_sp_copyout(
    arg: *mut c_void,
    laddr: *const c_void,
    raddr: *mut c_void,
    len: usize,
) -> c_int {
    trace_hit!(rumpuser_sp_copyout);
    guard("rumpuser_sp_copyout", || {
        if len == 0 {
            return 0;
        }
        if laddr.is_null() {
            return EFAULT;
        }
        // SAFETY: the kernel's buffer, valid for `len` bytes.
        let src = unsafe { std::slice::from_raw_parts(laddr as *const u8, len) };
        ret(super::copyout(ClientHandle::from(arg), src, raddr as u64))
    })
}

/// # Safety
/// `lenp` points at the string's length (NUL included); `laddr` is valid
/// for reads of that many bytes.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_sp_copyoutstr(
    arg: *mut c_void,
    laddr: *const c_void,
    raddr: *mut c_void,
    lenp: *mut usize,
) -> c_int {
    trace_hit!(rumpuser_sp_copyoutstr);
    guard("rumpuser_sp_copyoutstr", || {
        if lenp.is_null() {
            return EFAULT;
        }
        // SAFETY: the kernel passes a valid size_t pointer.
        let len = unsafe { *lenp };
        if len == 0 {
            return 0;
        }
        if laddr.is_null() {
            return EFAULT;
        }
        // SAFETY: the kernel's buffer, valid for `len` bytes.
        let src = unsafe { std::slice::from_raw_parts(laddr as *const u8, len) };
        ret(super::copyoutstr(
            ClientHandle::from(arg),
            src,
            raddr as u64,
        ))
    })
}

/// # Safety
/// `addr` is valid for a pointer-sized write.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_sp_anonmmap(
    arg: *mut c_void,
    howmuch: usize,
    addr: *mut *mut c_void,
) -> c_int {
    trace_hit!(rumpuser_sp_anonmmap);
    guard("rumpuser_sp_anonmmap", || {
        match super::anonmmap(ClientHandle::from(arg), howmuch) {
            Ok(a) => {
                if !addr.is_null() {
                    // SAFETY: the kernel passes a valid out pointer.
                    unsafe { *addr = a as usize as *mut c_void };
                }
                0
            }
            Err(e) => e.0,
        }
    })
}

#[no_mangle]
pub extern "C" fn rumpuser_sp_raise(arg: *mut c_void, signo: c_int) -> c_int {
    trace_hit!(rumpuser_sp_raise);
    guard("rumpuser_sp_raise", || {
        ret(super::raise(ClientHandle::from(arg), signo))
    })
}

#[no_mangle]
pub extern "C" fn rumpuser_sp_fini(arg: *mut c_void) {
    trace_hit!(rumpuser_sp_fini);
    guard("rumpuser_sp_fini", || {
        super::fini(ClientHandle::from(arg), 0)
    })
}
