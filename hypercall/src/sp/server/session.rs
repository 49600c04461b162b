//! A connection's process, from handshake to release: the guest, fork and
//! exec handshakes, prepared forks (PREFORK) and their deadline, the
//! teardown, and the release of the main lwp. Everything that uses the
//! main lwp does so under the connection's `ctl` lock.

use super::*;

/// A process forked off by PREFORK, waiting for a fork handshake.
pub(super) struct Prefork {
    pub(super) cookie: wire::Cookie,
    pub(super) lwp: usize,
    /// The connection that asked for it.
    pub(super) owner: usize,
    /// Its peer's user id (see [`Conn::peer_uid`]).
    pub(super) uid: u32,
    /// When that connection went away ([`now_ns`]; 0 while it is there).
    pub(super) orphaned: u64,
}

/// A process name from a handshake payload: up to the first NUL.
pub(super) fn comm_of(payload: &[u8]) -> CString {
    let end = payload
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(payload.len());
    CString::new(&payload[..end.min(255)]).unwrap_or_default()
}

pub(super) fn handshake(conn: &Arc<Conn>, hdr: &Header, payload: &[u8]) -> Next {
    let reqno = hdr.reqno;
    if hdr.ty != Type::Handshake {
        let _ = conn.send_error(reqno, ProtoError::Auth);
        return Next::Close;
    }
    let kind = Handshake::from_u32(hdr.arg);
    if !matches!(kind, Some(Handshake::Guest) | Some(Handshake::Fork)) {
        let _ = conn.send_error(reqno, ProtoError::Auth);
        return Next::Close;
    }
    let srv = &conn.srv;
    match srv.phase() {
        PH_RUN => {}
        PH_STOPPED if kind == Some(Handshake::Guest) && srv.halt_hook.read().is_some() => {
            // Halting: a guest gets in without a kernel process, for
            // `reboot(2)` only (every other syscall gets ESHUTDOWN).
            let _ = conn.send_handshake_resp(reqno, 0);
            conn.state.store(ST_RUNNING, Ordering::Release);
            return Next::Continue;
        }
        _ => {
            let _ = conn.send_error(reqno, ProtoError::TryAgain);
            return Next::Close;
        }
    }
    let Some(up) = conn.srv.up() else {
        let _ = conn.send_error(reqno, ProtoError::RforkFailed);
        return Next::Close;
    };
    let me = ClientHandle(conn.id);
    if kind == Some(Handshake::Guest) {
        let comm = comm_of(payload);
        let err = lwp_sched(up, |u| u.lwproc_rfork(me, RUMP_RFCFDG, Some(&comm)));
        if err != 0 {
            let _ = conn.send_error(reqno, ProtoError::RforkFailed);
            return Next::Close;
        }
        conn.mainlwp
            .store(lwp_sched(up, |u| u.lwproc_curlwp()), Ordering::Release);
    } else {
        let Some(hf) = wire::HandshakeFork::decode(payload) else {
            let _ = conn.send_error(reqno, ProtoError::MalformedRequest);
            return Next::Close;
        };
        let pf = {
            let mut v = conn.srv.preforks.lock();
            v.iter()
                .position(|p| p.cookie == hf.cookie)
                .map(|i| v.swap_remove(i))
        };
        let Some(pf) = pf else {
            let _ = conn.send_error(reqno, ProtoError::InvalidPrefork);
            return Next::Close;
        };
        let tmp = pf.lwp as *mut c_void;
        sched(up, |u| switch_lwp(u, tmp));
        if hf.cancel {
            sched(up, |u| u.lwproc_release());
            return Next::Close;
        }
        // The prefork process has the forking client's handle; fork once
        // more so the process the client keeps has this connection's.
        let err = sched(up, |u| u.lwproc_rfork(me, RUMP_RFFD_SHARE, None));
        if err != 0 {
            let _ = conn.send_error(reqno, ProtoError::RforkFailed);
            sched(up, |u| u.lwproc_release());
            return Next::Close;
        }
        let main = sched(up, |u| u.lwproc_curlwp());
        conn.mainlwp.store(main, Ordering::Release);
        sched(up, |u| switch_lwp(u, tmp));
        sched(up, |u| u.lwproc_release());
        sched(up, |u| switch_lwp(u, main));
    }
    // Our own client asks for extensions after its name's NUL (NetBSD's
    // never does, and gets the plain response).
    match wire::parse_ext_request(payload).filter(|_| kind == Some(Handshake::Guest)) {
        Some(want) => {
            let granted = wire::Features(want.0 & wire::Features::INLINE.0);
            conn.features.store(granted.0, Ordering::Release);
            let g = wire::ExtGrant {
                features: granted,
                inline_max: INLINE_MAX as u32,
            };
            let _ = conn.send_handshake_ext_resp(reqno, 0, g);
        }
        None => {
            let _ = conn.send_handshake_resp(reqno, 0);
        }
    }
    conn.pid
        .store(lwp_sched(up, |u| u.getpid()), Ordering::Release);
    lwp_sched(up, |u| switch_lwp(u, std::ptr::null_mut()));
    conn.state.store(ST_RUNNING, Ordering::Release);
    tracing::debug!(
        "rump_sp: connection {}: {} handshake, pid {}",
        conn.id,
        if kind == Some(Handshake::Guest) {
            "guest"
        } else {
            "fork"
        },
        conn.pid.load(Ordering::Acquire)
    );
    Next::Continue
}

pub(super) fn prefork(conn: &Arc<Conn>, reqno: u64) -> Next {
    if conn.inexec.load(Ordering::Acquire) {
        let _ = conn.send_error(reqno, ProtoError::InExec);
        return Next::Close;
    }
    let Some(up) = conn.srv.up() else {
        let _ = conn.send_error(reqno, ProtoError::RforkFailed);
        return Next::Continue;
    };
    release_stale_preforks(&conn.srv);
    let uid = conn.peer_uid();
    {
        let v = conn.srv.preforks.lock();
        let mine = v.iter().filter(|p| p.uid == uid).count();
        if mine >= conn.srv.cfg.prefork_per_user || v.len() >= PREFORK_MAX {
            drop(v);
            static LOGGED: AtomicU64 = AtomicU64::new(0);
            log_limited(&LOGGED, || {
                format!(
                    "rump_sp: pid {}: prefork refused: uid {uid} has {} waiting for a fork handshake (at most {} per user, {PREFORK_MAX} in all)\n",
                    conn.pid.load(Ordering::Acquire),
                    mine,
                    conn.srv.cfg.prefork_per_user
                )
            });
            let _ = conn.send_error(reqno, ProtoError::NoMem);
            return Next::Continue;
        }
    }
    let me = ClientHandle(conn.id);
    let main = conn.mainlwp.load(Ordering::Acquire);
    sched(up, |u| switch_lwp(u, main));
    let err = sched(up, |u| u.lwproc_rfork(me, RUMP_RFFDG, None));
    if err != 0 {
        let _ = conn.send_error(reqno, ProtoError::RforkFailed);
        sched(up, |u| switch_lwp(u, std::ptr::null_mut()));
        return Next::Continue;
    }
    let cookie = random_cookie();
    let lwp = sched(up, |u| u.lwproc_curlwp());
    sched(up, |u| switch_lwp(u, std::ptr::null_mut()));
    conn.srv.preforks.lock().push(Prefork {
        cookie,
        lwp: lwp as usize,
        owner: conn.id,
        uid,
        orphaned: 0,
    });
    let h = Header::new(Class::Resp, Type::Prefork, reqno, 0, wire::COOKIE_LEN);
    let _ = conn.send(&[&h.encode(), &cookie.0]);
    Next::Continue
}

pub(super) fn random_cookie() -> wire::Cookie {
    let mut c = [0u8; wire::COOKIE_LEN];
    let mut got = 0;
    while got < c.len() {
        // SAFETY: getrandom writes at most the given length into `c`.
        let n = unsafe { libc::getrandom(c[got..].as_mut_ptr() as *mut c_void, c.len() - got, 0) };
        if n <= 0 {
            // No kernel randomness: fall back to a hashed clock and counter.
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_nanos(),
            );
            let a = h.finish();
            h.write_u64(a);
            let b = h.finish();
            c[..8].copy_from_slice(&a.to_le_bytes());
            c[8..].copy_from_slice(&b.to_le_bytes());
            break;
        }
        got += n as usize;
    }
    wire::Cookie(c)
}

pub(super) fn exec_request(conn: &Arc<Conn>, reqno: u64, payload: &[u8]) -> Next {
    if conn.inexec.swap(true, Ordering::AcqRel) {
        let _ = conn.send_error(reqno, ProtoError::InExec);
        return Next::Close;
    }
    if let Some(up) = conn.srv.up() {
        // Start draining the process's lwps; the exec job waits for them.
        let main = conn.mainlwp.load(Ordering::Acquire);
        sched(up, |u| switch_lwp(u, main));
        sched(up, |u| u.lwpexit());
        sched(up, |u| switch_lwp(u, std::ptr::null_mut()));
    }
    Next::Exec(reqno, comm_of(payload))
}

pub(super) fn exec_job(conn: Arc<Conn>, reqno: u64, comm: CString) {
    // One activity for the reader, one for us: every syscall has drained.
    conn.wait_active_at_most(2);
    let ctl = conn.ctl.lock();
    if let Some(up) = conn.srv.up() {
        if conn.srv.phase() != PH_FINI {
            let main = conn.mainlwp.load(Ordering::Acquire);
            sched(up, |u| switch_lwp(u, main));
            sched(up, |u| u.execnotify(&comm));
            sched(up, |u| switch_lwp(u, std::ptr::null_mut()));
        }
    }
    drop(ctl);
    conn.inexec.store(false, Ordering::Release);
    let _ = conn.send_handshake_resp(reqno, 0);
    if conn.leave() {
        final_release(&conn);
    }
}

/// The reader found the connection closed (or broke it off): wake waiters,
/// start the process's exit, and drop the reader's activity.
pub(super) fn disconnect(conn: &Arc<Conn>) {
    tracing::debug!(
        "rump_sp: connection {} (pid {}) closed",
        conn.id,
        conn.pid.load(Ordering::Acquire)
    );
    let ctl = conn.ctl.lock();
    conn.state.store(ST_DYING, Ordering::Release);
    conn.kill_waiters();
    conn.shutdown();
    REGISTRY.write().remove(&conn.id);
    // Forks this client prepared wait for their child without it (a
    // daemonizing parent exits before its child claims the fork), until
    // the prefork deadline.
    let now = now_ns();
    for p in conn.srv.preforks.lock().iter_mut() {
        if p.owner == conn.id {
            p.orphaned = now;
        }
    }
    release_stale_preforks(&conn.srv);
    let main = conn.mainlwp.load(Ordering::Acquire);
    if conn.srv.phase() != PH_FINI && !conn.inexec.load(Ordering::Acquire) && !main.is_null() {
        if let Some(up) = conn.srv.up() {
            sched(up, |u| switch_lwp(u, main));
            sched(up, |u| u.lwpexit());
            sched(up, |u| switch_lwp(u, std::ptr::null_mut()));
        }
    }
    drop(ctl);
    if conn.leave() {
        final_release(conn);
    }
}

pub(super) fn has_stale_preforks(srv: &Srv) -> bool {
    let now = now_ns();
    let limit = ns(srv.cfg.prefork_timeout);
    srv.preforks
        .lock()
        .iter()
        .any(|p| p.orphaned != 0 && now.saturating_sub(p.orphaned) > limit)
}

/// Release the prepared forks whose preparer has been gone longer than
/// the prefork deadline.
pub(super) fn release_stale_preforks(srv: &Arc<Srv>) {
    let now = now_ns();
    let limit = ns(srv.cfg.prefork_timeout);
    let stale: Vec<Prefork> = {
        let mut v = srv.preforks.lock();
        let mut out = Vec::new();
        let mut i = 0;
        while i < v.len() {
            if v[i].orphaned != 0 && now.saturating_sub(v[i].orphaned) > limit {
                out.push(v.swap_remove(i));
            } else {
                i += 1;
            }
        }
        out
    };
    if stale.is_empty() || srv.phase() == PH_FINI {
        return;
    }
    if let Some(up) = srv.up() {
        for pf in &stale {
            let lwp = pf.lwp as *mut c_void;
            sched(up, |u| switch_lwp(u, lwp));
            sched(up, |u| u.lwproc_release());
        }
    }
}

/// Last activity of a dead connection gone: release its process.
pub(super) fn final_release(conn: &Conn) {
    debug_assert_eq!(conn.state.load(Ordering::Acquire), ST_DYING);
    // Under `ctl`, as every other user of the main lwp (handshake,
    // prefork, exec, disconnect): it is released exactly once, and never
    // while one of them has it.
    let _ctl = conn.ctl.lock();
    let main = conn.mainlwp.swap(std::ptr::null_mut(), Ordering::AcqRel);
    if main.is_null() || conn.srv.phase() == PH_FINI {
        return;
    }
    if let Some(up) = conn.srv.up() {
        sched(up, |u| switch_lwp(u, main));
        sched(up, |u| u.lwproc_release());
    }
}
