//! getpid, reboot.

use netbsd_abi::errno::*;
use netbsd_abi::Errno;

use super::{Args, Cx, SysResult};
use crate::RebootCall;

/// `getpid_with_ppid`: retval[0] = pid, retval[1] = ppid.
pub fn getpid(cx: &Cx, rv: &mut [i64; 2]) -> SysResult {
    rv[0] = cx.p.pid as i64;
    rv[1] = cx.p.ppid as i64;
    Ok(())
}

/// `reboot(opt, bootstr)`: hand the halt to the installed handler; its
/// errno is the result. Without a handler: `EPERM`.
pub fn reboot(cx: &Cx, a: &Args) -> SysResult {
    let Some(h) = cx.k.reboot_handler() else {
        return Err(Errno(EPERM));
    };
    let call = RebootCall {
        flags: a.int(0),
        client: cx.p.mem.client(),
    };
    match h(cx.k, call) {
        0 => Ok(()),
        e => Err(Errno(e)),
    }
}
