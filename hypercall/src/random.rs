//! The host's random pool: `rumpuser_getrandom`, via getrandom(2).

use std::ffi::{c_int, c_void};

use crate::errno::{Errno, EAGAIN, EFAULT, EINVAL};

/// `RUMPUSER_RANDOM_HARD`: the caller wants entropy, not just pseudo-random bytes.
pub const RANDOM_HARD: c_int = 0x01;
/// `RUMPUSER_RANDOM_NOWAIT`: return what is available now rather than wait.
pub const RANDOM_NOWAIT: c_int = 0x02;

/// Fill `buf` from the host's random pool. Without `RANDOM_NOWAIT` this
/// always fills the whole buffer (waiting, with the virtual CPU released,
/// only while the host pool is not yet initialised). With `RANDOM_NOWAIT`
/// it may return fewer bytes, or `EAGAIN` for none.
pub fn getrandom(buf: &mut [u8], flags: i32) -> Result<usize, Errno> {
    if flags & !(RANDOM_HARD | RANDOM_NOWAIT) != 0 {
        return Err(Errno(EINVAL));
    }
    let nowait = flags & RANDOM_NOWAIT != 0;
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: `rest` is a valid writable buffer of rest.len() bytes.
        let n =
            unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), libc::GRND_NONBLOCK) };
        if n >= 0 {
            done += n as usize;
            continue;
        }
        let e = std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO);
        match e {
            libc::EINTR => continue,
            libc::EAGAIN if nowait => {
                return if done > 0 {
                    Ok(done)
                } else {
                    Err(Errno(EAGAIN))
                };
            }
            libc::EAGAIN => {
                // The pool is not initialised yet: wait for it unscheduled.
                let r = crate::upcalls::blocking(std::ptr::null_mut(), || {
                    // SAFETY: as above.
                    unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) }
                });
                if r < 0 {
                    let e = crate::errno::last();
                    if e.0 == crate::errno::EINTR {
                        continue;
                    }
                    return Err(e);
                }
                done += r as usize;
            }
            _ => return Err(Errno::from_host(e)),
        }
    }
    Ok(done)
}

/// `rumpuser_getrandom(buf, buflen, flags, &retlen)`.
///
/// # Safety
/// `buf` points at `buflen` writable bytes; `retp` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_getrandom(
    buf: *mut c_void,
    buflen: usize,
    flags: c_int,
    retp: *mut usize,
) -> c_int {
    trace_hit!(rumpuser_getrandom);
    crate::guard("rumpuser_getrandom", || {
        if retp.is_null() || (buf.is_null() && buflen > 0) {
            return EFAULT;
        }
        let slice: &mut [u8] = if buflen == 0 {
            &mut []
        } else {
            // SAFETY: the caller promises `buflen` writable bytes at `buf`.
            unsafe { std::slice::from_raw_parts_mut(buf.cast(), buflen) }
        };
        match getrandom(slice, flags) {
            Ok(n) => {
                // SAFETY: checked non-null; the caller promises validity.
                unsafe { *retp = n };
                0
            }
            Err(e) => e.0,
        }
    })
}
