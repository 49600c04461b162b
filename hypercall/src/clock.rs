//! Clocks and sleeping: `rumpuser_clock_gettime`, `rumpuser_clock_sleep`.

use std::ffi::{c_int, c_long};

use crate::errno::{Errno, EFAULT, EINVAL};

/// `RUMPUSER_CLOCK_RELWALL`: wall-clock time; sleeps are relative.
pub const CLOCK_RELWALL: c_int = 0;
/// `RUMPUSER_CLOCK_ABSMONO`: monotonic time; sleeps are until a deadline.
pub const CLOCK_ABSMONO: c_int = 1;

fn host_clock(clock: i32) -> Result<libc::clockid_t, Errno> {
    match clock {
        CLOCK_RELWALL => Ok(libc::CLOCK_REALTIME),
        CLOCK_ABSMONO => Ok(libc::CLOCK_MONOTONIC),
        _ => Err(Errno(EINVAL)),
    }
}

/// The time on `clock` as (seconds, nanoseconds).
pub fn gettime(clock: i32) -> Result<(i64, i64), Errno> {
    let id = host_clock(clock)?;
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out-parameter.
    if unsafe { libc::clock_gettime(id, &mut ts) } != 0 {
        return Err(crate::errno::last());
    }
    Ok((ts.tv_sec, ts.tv_nsec))
}

/// Sleep with the virtual CPU released: for `CLOCK_RELWALL`, for
/// (`sec`, `nsec`); for `CLOCK_ABSMONO`, until that monotonic time.
/// Interrupted sleeps are resumed.
pub fn sleep(clock: i32, sec: i64, nsec: i64) -> Result<(), Errno> {
    host_clock(clock)?;
    if !(0..1_000_000_000).contains(&nsec) {
        return Err(Errno(EINVAL));
    }
    // A negative time is already past: no sleep.
    let ts = if sec < 0 {
        libc::timespec { tv_sec: 0, tv_nsec: 0 }
    } else {
        libc::timespec { tv_sec: sec as libc::time_t, tv_nsec: nsec as c_long }
    };
    let rv = crate::upcalls::blocking(std::ptr::null_mut(), || match clock {
        CLOCK_RELWALL => {
            let mut req = ts;
            loop {
                let mut rem = libc::timespec { tv_sec: 0, tv_nsec: 0 };
                // SAFETY: valid timespec pointers.
                let r = unsafe {
                    libc::clock_nanosleep(libc::CLOCK_MONOTONIC, 0, &req, &mut rem)
                };
                if r == libc::EINTR {
                    req = rem;
                    continue;
                }
                break r;
            }
        }
        _ => loop {
            // SAFETY: valid timespec pointer; no remainder for TIMER_ABSTIME.
            let r = unsafe {
                libc::clock_nanosleep(
                    libc::CLOCK_MONOTONIC,
                    libc::TIMER_ABSTIME,
                    &ts,
                    std::ptr::null_mut(),
                )
            };
            if r != libc::EINTR {
                break r;
            }
        },
    });
    if rv != 0 {
        return Err(crate::errno::host(rv));
    }
    Ok(())
}

/// `rumpuser_clock_gettime(clock, &sec, &nsec)`.
///
/// # Safety
/// `sec` and `nsec` are valid for writes.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_clock_gettime(clock: c_int, sec: *mut i64, nsec: *mut c_long) -> c_int {
    trace_hit!(rumpuser_clock_gettime);
    if sec.is_null() || nsec.is_null() {
        return EFAULT;
    }
    match gettime(clock) {
        Ok((s, n)) => {
            // SAFETY: checked non-null; the caller promises validity.
            unsafe { *sec = s };
            // SAFETY: as above, for `nsec`.
            unsafe { *nsec = n as c_long };
            0
        }
        Err(e) => e.0,
    }
}

/// `rumpuser_clock_sleep(clock, sec, nsec)`.
#[no_mangle]
pub extern "C" fn rumpuser_clock_sleep(clock: c_int, sec: i64, nsec: c_long) -> c_int {
    trace_hit!(rumpuser_clock_sleep);
    crate::guard("rumpuser_clock_sleep", || crate::errno::ret(sleep(clock, sec, nsec)))
}
