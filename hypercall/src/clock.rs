//! Clocks and sleeping: `rumpuser_clock_gettime`, `rumpuser_clock_sleep`.

use std::ffi::{c_int, c_long};

use nix::sys::time::TimeSpec;
use nix::time::{clock_gettime, clock_nanosleep, ClockId, ClockNanosleepFlags};

use crate::errno::{Errno, EFAULT, EINVAL};

/// `RUMPUSER_CLOCK_RELWALL`: wall-clock time; sleeps are relative.
pub const CLOCK_RELWALL: c_int = 0;
/// `RUMPUSER_CLOCK_ABSMONO`: monotonic time; sleeps are until a deadline.
pub const CLOCK_ABSMONO: c_int = 1;

fn host_clock(clock: i32) -> Result<ClockId, Errno> {
    match clock {
        CLOCK_RELWALL => Ok(ClockId::CLOCK_REALTIME),
        CLOCK_ABSMONO => Ok(ClockId::CLOCK_MONOTONIC),
        _ => Err(Errno(EINVAL)),
    }
}

/// The time on `clock` as (seconds, nanoseconds).
pub fn gettime(clock: i32) -> Result<(i64, i64), Errno> {
    let ts = clock_gettime(host_clock(clock)?).map_err(crate::errno::nix)?;
    Ok((ts.tv_sec(), ts.tv_nsec()))
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
        TimeSpec::new(0, 0)
    } else {
        TimeSpec::new(sec as _, nsec as c_long)
    };
    let rv = crate::upcalls::blocking(std::ptr::null_mut(), || {
        // A relative sleep is a sleep until a monotonic deadline, which
        // an interrupted sleep resumes without drift.
        let deadline = match clock {
            CLOCK_RELWALL => clock_gettime(ClockId::CLOCK_MONOTONIC)? + ts,
            _ => ts,
        };
        loop {
            match clock_nanosleep(
                ClockId::CLOCK_MONOTONIC,
                ClockNanosleepFlags::TIMER_ABSTIME,
                &deadline,
            ) {
                Err(nix::errno::Errno::EINTR) => continue,
                r => return r.map(drop),
            }
        }
    });
    rv.map_err(crate::errno::nix)
}

/// `rumpuser_clock_gettime(clock, &sec, &nsec)`.
///
/// # Safety
/// `sec` and `nsec` are valid for writes.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_clock_gettime(
    clock: c_int,
    sec: *mut i64,
    nsec: *mut c_long,
) -> c_int {
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
    crate::guard("rumpuser_clock_sleep", || {
        crate::errno::ret(sleep(clock, sec, nsec))
    })
}
