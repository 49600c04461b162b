//! What one peer may cost the server: the caps and deadlines, their
//! defaults and the environment variables that change them (rump_server(1)
//! LIMITS).

use super::*;

/// Most simultaneous connections (`RUMP_MAX_CLIENTS` overrides). At the
/// cap, the oldest connection that has not handshaken yet is closed to
/// admit a new one; only when every connection has handshaken is a new
/// one refused (banner, then a `TRYAGAIN` error frame, then close).
pub(super) const MAXCLI: usize = 1024;

/// A connection that has not completed its handshake this long after
/// accept is closed (`RUMP_HANDSHAKE_TIMEOUT`, in seconds, overrides).
pub(super) const HANDSHAKE_TIMEOUT_NS: u64 = 10_000_000_000;

/// PREFORK processes waiting for their fork handshake: at most this many
/// per user (the peer's uid; all TCP peers count as one), and in all. A
/// prepared fork outlives the connection that made it, as NetBSD's does
/// (`rumpclient_daemon()` exits the parent before the child claims it),
/// until claimed or until it has been without its preparer for
/// `RUMP_PREFORK_TIMEOUT` seconds.
pub(super) const PREFORK_PER_USER: usize = 32;

pub(super) const PREFORK_MAX: usize = 1024;

pub(super) const PREFORK_TIMEOUT_NS: u64 = 30_000_000_000;

/// Mode of a `unix://` socket file (`RUMP_SOCKET_MODE`, octal, overrides):
/// only the owner may connect.
pub(super) const SOCKET_MODE: u32 = 0o600;

/// System calls one connection may have running at once
/// (`RUMP_MAX_INFLIGHT` overrides). One more is answered `TRYAGAIN`, which
/// NetBSD's client (and ours) retry: a well-formed client waits, and one
/// client cannot pin the server's threads.
pub(super) const MAX_INFLIGHT: usize = 64;

/// System calls running at once in the whole server at most
/// (`RUMP_MAX_THREADS` overrides): each holds a worker thread, so this
/// bounds the threads that run kernel code; one more is answered
/// `TRYAGAIN` and retried by the client. (Threads waiting for a
/// connection's next request are bounded by the connection cap.)
pub(crate) const MAX_THREADS: usize = 240;

/// A copy request the client has not answered this long after it was
/// sent fails its system call with `EFAULT` (`RUMP_COPY_TIMEOUT`, in
/// seconds, overrides).
pub(super) const COPY_TIMEOUT_NS: u64 = 30_000_000_000;

pub(crate) struct Limits {
    pub(super) maxcli: usize,
    pub(super) handshake_ns: u64,
    pub(super) max_inflight: usize,
    pub(super) max_threads: usize,
    pub(crate) copy_timeout_ns: u64,
    pub(super) prefork_timeout_ns: u64,
}

pub(crate) fn limits() -> &'static Limits {
    static L: std::sync::OnceLock<Limits> = std::sync::OnceLock::new();
    L.get_or_init(|| {
        let count = |var: &str, default: usize| {
            std::env::var(var)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .filter(|&n| n > 0)
                .unwrap_or(default)
        };
        let secs = |var: &str, default: u64| {
            std::env::var(var)
                .ok()
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|t| t.is_finite() && *t > 0.0 && *t < 1e9)
                .map(|t| (t * 1e9) as u64)
                .unwrap_or(default)
        };
        Limits {
            maxcli: count("RUMP_MAX_CLIENTS", MAXCLI),
            handshake_ns: secs("RUMP_HANDSHAKE_TIMEOUT", HANDSHAKE_TIMEOUT_NS),
            max_inflight: count("RUMP_MAX_INFLIGHT", MAX_INFLIGHT),
            max_threads: count("RUMP_MAX_THREADS", MAX_THREADS),
            copy_timeout_ns: secs("RUMP_COPY_TIMEOUT", COPY_TIMEOUT_NS),
            prefork_timeout_ns: secs("RUMP_PREFORK_TIMEOUT", PREFORK_TIMEOUT_NS),
        }
    })
}

/// Raise the soft limit on open descriptors to the hard limit (at most
/// 65536), so that the connection cap, not the descriptor limit, is what
/// bounds clients. For servers (`rump_server`): it is process-wide.
pub fn raise_nofile_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((cur, max)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if cur < max {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, max.min(65536).max(cur), max);
        }
    }
}

/// The socket file mode from `RUMP_SOCKET_MODE` (octal, e.g. `0660`).
pub(super) fn socket_mode() -> Result<u32, String> {
    match std::env::var("RUMP_SOCKET_MODE") {
        Err(_) => Ok(SOCKET_MODE),
        Ok(v) => match u32::from_str_radix(v.trim(), 8) {
            Ok(m) if m <= 0o777 => Ok(m),
            _ => Err(format!(
                "RUMP_SOCKET_MODE={v}: not an octal file mode (like 0660)"
            )),
        },
    }
}

/// Print at most one message a second for each kind of event that a
/// flood of connections could repeat.
pub(super) fn log_limited(last: &AtomicU64, msg: impl FnOnce() -> String) {
    let now = now_ns();
    let prev = last.load(Ordering::Relaxed);
    if (prev == 0 || now.saturating_sub(prev) >= 1_000_000_000)
        && last
            .compare_exchange(prev, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        dprint(&msg());
    }
}
