//! Reading and dispatching requests: the reader role's serve loop, requests
//! read by copy waiters, and the watchdog that starts a reader when a
//! connection's role is left free while its syscalls run.

use super::*;

/// A syscall's argument block, 8-byte aligned and zero-padded to at least
/// eight slots so that a kernel reading a few slots past a short block for
/// a syscall we do not know never reads outside it.
pub(super) enum Args {
    Inline([u64; 8]),
    Heap(Vec<u64>),
}

impl Args {
    pub(super) fn new(p: &[u8]) -> Args {
        let fill = |dst: &mut [u64]| {
            for (d, c) in dst.iter_mut().zip(p.chunks(ARG_SLOT)) {
                let mut b = [0u8; 8];
                b[..c.len()].copy_from_slice(c);
                *d = u64::from_le_bytes(b);
            }
        };
        if p.len() <= 64 {
            let mut a = [0u64; 8];
            fill(&mut a);
            Args::Inline(a)
        } else {
            let mut v = vec![0u64; p.len().div_ceil(ARG_SLOT) + 8];
            fill(&mut v);
            Args::Heap(v)
        }
    }

    pub(super) fn as_mut_slice(&mut self) -> &mut [u64] {
        match self {
            Args::Inline(a) => a,
            Args::Heap(v) => v,
        }
    }
}

pub(super) struct SyscallJob {
    pub(super) reqno: u64,
    pub(super) num: i32,
    pub(super) args: Args,
    /// An inline request's records and the payload holding them (the
    /// reader's buffer, moved here by whoever runs the job).
    pub(super) inline: Option<(wire::InlineLayout, ReqBuf)>,
}

impl SyscallJob {
    /// Give the job the request's payload if it needs it (inline data);
    /// otherwise `payload` stays with the caller.
    pub(super) fn take_payload(&mut self, payload: &mut ReqBuf) {
        if let Some((_, p)) = self.inline.as_mut() {
            let empty = payload.sibling();
            *p = std::mem::replace(payload, empty);
        }
    }
}

// A `Syscall` carries an inline request's record table (a few hundred
// bytes): moved once per request, never stored, so not boxed.
#[allow(clippy::large_enum_variant)]
pub(super) enum Next {
    Continue,
    Close,
    /// A syscall admitted, its activity already counted (see
    /// `admit_syscall`): the one who runs it leaves that activity.
    Syscall(SyscallJob),
    Exec(u64, CString),
}

/// A pool job: take the reader role (waiting for it if need be) and serve.
pub(super) fn reader_job(conn: Arc<Conn>) {
    let g = conn.rd.lock();
    conn.reader_queued.store(false, Ordering::Release);
    serve(&conn, g);
}

/// Hold the reader role: read and handle requests. A syscall runs right
/// here, with the role left free (a copyin waiter or the watchdog may take
/// it); afterwards this thread goes on reading if the role is still free.
pub(super) fn serve<'a>(conn: &'a Arc<Conn>, mut g: MutexGuard<'a, RState>) {
    loop {
        conn.free_since.store(0, Ordering::Release);
        let input = g.next(conn, &|| false).unwrap_or(Input::Closed);
        let hdr = match input {
            Input::Request(hdr) => hdr,
            Input::Refused(r) => {
                let _ = conn.send_error(r, ProtoError::NoMem);
                continue;
            }
            Input::Closed | Input::Bad(_) => {
                if let Input::Bad(Some(r)) = input {
                    let _ = conn.send_error(r, ProtoError::MalformedRequest);
                }
                drop(g);
                close_conn(conn);
                return;
            }
        };
        let empty = g.pending.sibling();
        let mut payload = std::mem::replace(&mut g.pending, empty);
        let mut next = handle_request(conn, &hdr, &payload);
        if let Next::Syscall(job) = &mut next {
            job.take_payload(&mut payload);
        }
        g.pending = payload;
        match next {
            Next::Continue => {}
            Next::Close => {
                drop(g);
                close_conn(conn);
                return;
            }
            Next::Syscall(job) => {
                // Its activity was counted when it was admitted.
                conn.free_since.store(now_ns(), Ordering::Release);
                drop(g);
                // A copyin waiter parked while we read may take over now.
                conn.wake_waiters();
                watchdog_kick();
                let buf = run_syscall(conn, job);
                if conn.leave() {
                    final_release(conn);
                    return;
                }
                match conn.rd.try_lock() {
                    Some(g2) => g = g2,
                    None => return,
                }
                if let Some(b) = buf.filter(|b| b.capacity() > g.pending.capacity()) {
                    g.pending = b;
                }
            }
            Next::Exec(reqno, comm) => {
                conn.enter();
                let c = conn.clone();
                pool().submit(move || exec_job(c, reqno, comm));
            }
        }
    }
}

/// A request read by a copyin waiter (a thread inside the kernel): handle
/// it on a pool thread.
pub(crate) fn dispatch_async(conn: Arc<Conn>, hdr: Header, mut payload: ReqBuf) {
    // A syscall beyond the connection's cap is refused right here: no
    // thread is started just to say so.
    if hdr.ty == Type::Syscall
        && conn.state.load(Ordering::Acquire) != ST_NEW
        && !may_start_syscall(&conn)
    {
        let _ = conn.send_error(hdr.reqno, ProtoError::TryAgain);
        return;
    }
    pool().submit(move || {
        let mut next = handle_request(&conn, &hdr, &payload);
        if let Next::Syscall(job) = &mut next {
            job.take_payload(&mut payload);
        }
        match next {
            Next::Continue => {}
            Next::Close => {
                conn.kill_waiters();
                close_conn(&conn);
                return;
            }
            Next::Syscall(job) => {
                // Its activity was counted when it was admitted.
                let _ = run_syscall(&conn, job);
                if conn.leave() {
                    final_release(&conn);
                    return;
                }
            }
            Next::Exec(reqno, comm) => {
                conn.enter();
                exec_job(conn.clone(), reqno, comm);
            }
        }
        if let Some(g) = conn.rd.try_lock() {
            serve(&conn, g);
        }
    });
}

/// A copyin waiter found the connection closed: disconnect on a pool
/// thread (the waiter is inside the kernel).
pub(crate) fn close_async(conn: Arc<Conn>) {
    if !conn.closed.swap(true, Ordering::AcqRel) {
        pool().submit(move || disconnect(&conn));
    }
}

pub(super) fn close_conn(conn: &Arc<Conn>) {
    if !conn.closed.swap(true, Ordering::AcqRel) {
        disconnect(conn);
    }
}

pub(super) static WD_SLEEPING: AtomicBool = AtomicBool::new(false);

pub(super) static WD_MX: Mutex<()> = Mutex::new(());

pub(super) static WD_CV: Condvar = Condvar::new();

/// A connection left without a reader this long gets one.
pub(super) const WD_AFTER_NS: u64 = 1_000_000;

/// Rounds (about WD_AFTER_NS each) with nothing to watch before the
/// watchdog sleeps until kicked.
pub(super) const WD_IDLE_ROUNDS: u32 = 20;

pub(super) fn watchdog_kick() {
    if WD_SLEEPING.load(Ordering::Relaxed) {
        let _g = WD_MX.lock();
        WD_CV.notify_one();
    }
}

pub(super) fn watchdog_start() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = std::thread::Builder::new()
            .name("rumpsp-watch".into())
            .spawn(watchdog);
    });
}

pub(super) fn watchdog() {
    let mut idle = 0u32;
    loop {
        let now = now_ns();
        let mut any = false;
        // The earliest moment a connection now without a reader becomes
        // due: sleep until then, not a fixed tick (a stream of short
        // syscalls, each leaving the role free a moment, then wakes this
        // thread about once per WD_AFTER_NS instead of twice).
        let mut due = now + WD_AFTER_NS;
        for c in REGISTRY.read().values() {
            let t = c.free_since.load(Ordering::Acquire);
            if t == 0 || c.closed.load(Ordering::Acquire) {
                continue;
            }
            any = true;
            due = due.min(t + WD_AFTER_NS);
            if now.saturating_sub(t) > WD_AFTER_NS
                && !c.rd.is_locked()
                && !c.reader_queued.swap(true, Ordering::AcqRel)
            {
                let c = c.clone();
                pool().submit(move || reader_job(c));
            }
        }
        if any {
            idle = 0;
        } else {
            idle += 1;
        }
        if idle > WD_IDLE_ROUNDS {
            let mut g = WD_MX.lock();
            WD_SLEEPING.store(true, Ordering::Release);
            WD_CV.wait_for(&mut g, std::time::Duration::from_secs(1));
            WD_SLEEPING.store(false, Ordering::Release);
            // Woken by a kick or the timeout: look once; with nothing
            // to watch, sleep again right away (an idle server costs
            // one wake-up a second here, not a burst of polling).
            idle = WD_IDLE_ROUNDS;
        } else {
            let wait = due.saturating_sub(now_ns()).clamp(200_000, WD_AFTER_NS);
            std::thread::sleep(std::time::Duration::from_nanos(wait));
        }
    }
}

pub(super) fn handle_request(conn: &Arc<Conn>, hdr: &Header, payload: &[u8]) -> Next {
    debug_assert_eq!(hdr.class, Class::Req);
    // Torn down (a copy waiter may have read this request just before):
    // nothing more is handled.
    if conn.closed.load(Ordering::Acquire) || conn.state.load(Ordering::Acquire) == ST_DYING {
        return Next::Close;
    }
    if hdr.ty == Type::Syscall && conn.state.load(Ordering::Acquire) != ST_NEW {
        return syscall_request(conn, hdr, payload);
    }
    let _ctl = conn.ctl.lock();
    if conn.state.load(Ordering::Acquire) == ST_DYING {
        return Next::Close;
    }
    if conn.state.load(Ordering::Acquire) == ST_NEW {
        return handshake(conn, hdr, payload);
    }
    match hdr.ty {
        Type::Prefork => prefork(conn, hdr.reqno),
        Type::Handshake if hdr.arg == Handshake::Exec as u32 => {
            exec_request(conn, hdr.reqno, payload)
        }
        _ => {
            let _ = conn.send_error(hdr.reqno, ProtoError::MalformedRequest);
            Next::Close
        }
    }
}

impl super::super::conn::Owner for Srv {
    fn dispatch(&self, conn: Arc<Conn>, hdr: Header, payload: ReqBuf) {
        dispatch_async(conn, hdr, payload)
    }
    fn broken(&self, conn: Arc<Conn>) {
        close_async(conn)
    }
    fn copy_timeout_ns(&self) -> u64 {
        ns(self.cfg.copy_timeout)
    }
}
