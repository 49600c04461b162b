//! System call requests: admission (the running-syscall caps), a halt that
//! needs no virtual CPU, and running a call on its lwp.

use super::*;

/// Whether one more syscall may start (the caps of the connection and of
/// the server), as a hint: [`admit_syscall`] decides.
pub(super) fn may_start_syscall(conn: &Conn) -> bool {
    // One activity is the connection itself; the rest run syscalls (or
    // an exec).
    conn.activities() <= conn.srv.cfg.max_inflight
        && conn.srv.running.load(Ordering::Relaxed) < conn.srv.cfg.max_threads
}

/// Admit one more syscall: its activity is counted here, in the same step
/// as the connection's cap is checked (the server-wide thread cap is a
/// looser bound, checked first).
fn admit_syscall(conn: &Conn) -> bool {
    conn.srv.running.load(Ordering::Relaxed) < conn.srv.cfg.max_threads
        && conn.try_enter(conn.srv.cfg.max_inflight)
}

/// Most inline bytes (records and their data) we accept in one request.
pub(super) const INLINE_MAX: usize = 256 << 10;

pub(super) fn syscall_request(conn: &Arc<Conn>, hdr: &Header, payload: &[u8]) -> Next {
    let mut num = hdr.arg as i32;
    let mut inline = None;
    let mut payload = payload;
    if hdr.arg & wire::SYSCALL_INLINE != 0 {
        let granted =
            wire::Features(conn.features.load(Ordering::Acquire)).has(wire::Features::INLINE);
        let layout = wire::InlineLayout::decode(payload).filter(|l| {
            granted
                && payload.len() - l.args.0 - l.args.1 <= INLINE_MAX + l.nrec * wire::COPYDATA_LEN
        });
        let Some(l) = layout else {
            let _ = conn.send_error(hdr.reqno, ProtoError::MalformedRequest);
            return Next::Close;
        };
        num = (hdr.arg & !wire::SYSCALL_INLINE) as i32;
        payload = l.args(payload);
        inline = Some(l);
    }
    if let Some(n) = nargs(num) {
        if payload.len() < n * ARG_SLOT {
            let _ = conn.send_error(hdr.reqno, ProtoError::MalformedRequest);
            return Next::Close;
        }
    }
    let phase = conn.srv.phase();
    if num == SYS_REBOOT {
        let flags = payload
            .get(..4)
            .map_or(0, |b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        if flags & RB_NOSYNC != 0 || phase == PH_STOPPED {
            let hook = conn.srv.halt_hook.read().clone();
            if let Some(hook) = hook {
                halt_without_cpu(conn, hdr.reqno, flags, &*hook);
                return Next::Continue;
            }
        }
    }
    if phase != PH_RUN {
        let _ = conn.send_sysresp(hdr.reqno, ESHUTDOWN, [0, 0]);
        return Next::Continue;
    }
    if !admit_syscall(conn) {
        let _ = conn.send_error(hdr.reqno, ProtoError::TryAgain);
        return Next::Continue;
    }
    // Admitted: the activity is counted; whoever runs the job leaves it.
    Next::Syscall(SyscallJob {
        reqno: hdr.reqno,
        num,
        args: Args::new(payload),
        inline: inline.map(|l| (l, ReqBuf::new(conn.srv.budget.clone()))),
    })
}

/// A `reboot(2)` handed to the [`HaltHook`] right on the reader's thread,
/// with no virtual CPU: bookkept like a running syscall, so that [`fini`]
/// answers it before the connections go.
pub(super) fn halt_without_cpu(conn: &Arc<Conn>, reqno: u64, flags: i32, hook: &HaltHook) {
    conn.running_add(reqno);
    CURRENT.with(|c| *c.borrow_mut() = Some((conn.clone(), reqno)));
    let rv = hook(flags, ClientHandle(conn.id));
    CURRENT.with(|c| *c.borrow_mut() = None);
    if conn.running_remove(reqno) {
        return;
    }
    let retval = if rv == 0 { [0, 0] } else { [-1, 0] };
    let _ = conn.send_sysresp(reqno, rv, retval);
}

/// Run one syscall and send its answer; gives back an inline request's
/// payload buffer, for reuse.
pub(super) fn run_syscall(conn: &Arc<Conn>, mut job: SyscallJob) -> Option<ReqBuf> {
    let Some(up) = conn.srv.up() else {
        let _ = conn.send_sysresp(job.reqno, ENOSYS, [-1, 0]);
        return None;
    };
    conn.srv.running.fetch_add(1, Ordering::Relaxed);
    // Counted down however the call ends (a panic in the kernel too).
    struct Running<'a>(&'a AtomicUsize);
    impl Drop for Running<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::Relaxed);
        }
    }
    let _running = Running(&conn.srv.running);
    conn.running_add(job.reqno);
    CURRENT.with(|c| *c.borrow_mut() = Some((conn.clone(), job.reqno)));
    if let Some((layout, data)) = job.inline.take() {
        INLINE.with(|i| {
            *i.borrow_mut() = Some(InlineNow {
                conn: conn.id,
                layout,
                data,
            })
        });
    }
    let mut retval: [c_long; 2] = [0, 0];
    up.schedule();
    let mut rv = up.lwproc_newlwp(conn.pid.load(Ordering::Acquire));
    if rv != 0 {
        retval[0] = -1;
    } else {
        // SAFETY: the current lwp is this client's, so every address among
        // the arguments is in its memory, reached by copy requests on its
        // connection and checked there.
        rv = unsafe { up.syscall(job.num as c_int, job.args.as_mut_slice(), &mut retval) };
        up.lwproc_release();
    }
    up.unschedule();
    CURRENT.with(|c| *c.borrow_mut() = None);
    if let Some(n) = INLINE.with(|i| i.borrow_mut().take()) {
        // Keep the payload's memory for the next request read here.
        job.inline = Some((n.layout, n.data));
    }
    if !conn.running_remove(job.reqno) {
        let _ = conn.send_sysresp(job.reqno, rv, [retval[0], retval[1]]);
    }
    job.inline.map(|(_, d)| d)
}
