//! What one peer may cost a server: [`ServerConfig`], its caps and
//! deadlines, their defaults and the environment variables that change
//! them (rump_server(1) LIMITS). Each server keeps its own: two kernels in
//! one process may serve with different limits.

use super::*;
use std::time::Duration;

/// Most simultaneous connections, by default. At the cap, the oldest
/// connection that has not handshaken yet is closed to admit a new one;
/// only when every connection has handshaken is a new one refused
/// (banner, then a `TRYAGAIN` error frame, then close).
pub const MAX_CLIENTS: usize = 1024;

/// A connection that has not completed its handshake this long after
/// accept is closed, by default.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Prepared forks (PREFORK) waiting for their fork handshake, per user by
/// default (the peer's uid; all TCP peers count as one). A prepared fork
/// outlives the connection that made it, as NetBSD's does
/// (`rumpclient_daemon()` exits the parent before the child claims it),
/// until claimed or until it has been without its preparer for the
/// prefork deadline.
pub const PREFORK_PER_USER: usize = 32;

/// Prepared forks waiting in all, whatever the user.
pub(super) const PREFORK_MAX: usize = 1024;

/// How long a prepared fork outlives its preparer, by default.
pub const PREFORK_TIMEOUT: Duration = Duration::from_secs(30);

/// Mode of a `unix://` socket file, by default: only the owner may
/// connect.
pub const SOCKET_MODE: u32 = 0o600;

/// System calls one connection may have running at once, by default. One
/// more is answered `TRYAGAIN`, which NetBSD's client (and ours) retry: a
/// well-formed client waits, and one client cannot pin the server's
/// threads.
pub const MAX_INFLIGHT: usize = 64;

/// System calls running at once in the whole server, by default: each
/// holds a worker thread, so this bounds the threads that run kernel
/// code; one more is answered `TRYAGAIN` and retried by the client.
/// (Threads waiting for a connection's next request are bounded by the
/// connection cap.)
pub const MAX_THREADS: usize = 240;

/// A copy request the client has not answered this long after it was sent
/// fails its system call with `EFAULT`, by default.
pub const COPY_TIMEOUT: Duration = Duration::from_secs(30);

/// Request bytes the server holds for all its clients at once, by
/// default: payloads being read, queued or run, beyond the first
/// [`REQUEST_FREE`] of each. A request that would go over is answered
/// `ENOMEM` (protocol error `NOMEM`) and its bytes are read and dropped.
pub const REQUEST_BUDGET: usize = 64 << 20;

/// The part of each request buffer that is not charged to the budget:
/// every request a well-formed client sends without inline data (argument
/// blocks, handshakes) fits, so the budget never refuses those.
pub const REQUEST_FREE: usize = 64 << 10;

/// The largest request payload anyone may send: a syscall with the most
/// inline data we grant, its records and arguments, with room to spare.
/// A larger one is malformed: its bytes are read and dropped and the
/// connection closed, without ever being held.
pub(crate) const REQUEST_MAX: usize = 2 * INLINE_MAX;

/// A server's caps, deadlines and socket mode. [`Default`] is the built-in
/// values; [`ServerConfig::from_env`] starts from them and applies the
/// `RUMP_*` variables, as `rump_server` does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// Most simultaneous connections (`RUMP_MAX_CLIENTS`).
    pub max_clients: usize,
    /// Deadline for a new connection's handshake
    /// (`RUMP_HANDSHAKE_TIMEOUT`, seconds).
    pub handshake_timeout: Duration,
    /// System calls one connection may run at once (`RUMP_MAX_INFLIGHT`).
    pub max_inflight: usize,
    /// System calls the server runs at once (`RUMP_MAX_THREADS`).
    pub max_threads: usize,
    /// Deadline for the client's answer to a copy request
    /// (`RUMP_COPY_TIMEOUT`, seconds).
    pub copy_timeout: Duration,
    /// How long a prepared fork outlives its preparer
    /// (`RUMP_PREFORK_TIMEOUT`, seconds).
    pub prefork_timeout: Duration,
    /// Prepared forks waiting per user (`RUMP_MAX_PREFORKS`).
    pub prefork_per_user: usize,
    /// Request bytes held for all clients at once (`RUMP_REQUEST_BUDGET`,
    /// bytes, or with a `k`, `m` or `g` suffix); see [`REQUEST_BUDGET`].
    pub request_budget: usize,
    /// Mode of a `unix://` socket file (`RUMP_SOCKET_MODE`, octal).
    pub socket_mode: u32,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            max_clients: MAX_CLIENTS,
            handshake_timeout: HANDSHAKE_TIMEOUT,
            max_inflight: MAX_INFLIGHT,
            max_threads: MAX_THREADS,
            copy_timeout: COPY_TIMEOUT,
            prefork_timeout: PREFORK_TIMEOUT,
            prefork_per_user: PREFORK_PER_USER,
            request_budget: REQUEST_BUDGET,
            socket_mode: SOCKET_MODE,
        }
    }
}

/// A `RUMP_*` setting that does not parse: the variable, its value and
/// what it should be. Shown as `RUMP_MAX_THREADS=x: not a count above 0`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var}={value}: {want}")]
pub struct ConfigError {
    /// The variable.
    pub var: &'static str,
    /// Its value, as given.
    pub value: String,
    /// What it should be.
    pub want: &'static str,
}

impl ServerConfig {
    /// The built-in values, then every `RUMP_*` variable of the process's
    /// environment that sets one (rump_server(1) LIMITS). A value that
    /// does not parse is an error naming it, not ignored.
    pub fn from_env() -> Result<ServerConfig, ConfigError> {
        ServerConfig::default().with_env(|v| std::env::var(v).ok())
    }

    /// These values, then each variable `get` knows (for tests and
    /// embedders that keep their settings elsewhere).
    pub fn with_env(
        mut self,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<ServerConfig, ConfigError> {
        let bad = |var: &'static str, value: &str, want: &'static str| ConfigError {
            var,
            value: value.to_string(),
            want,
        };
        let count = |var: &'static str, into: &mut usize| -> Result<(), ConfigError> {
            if let Some(v) = get(var) {
                *into = v
                    .trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| bad(var, &v, "not a count above 0"))?;
            }
            Ok(())
        };
        let secs = |var: &'static str, into: &mut Duration| -> Result<(), ConfigError> {
            if let Some(v) = get(var) {
                *into = v
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|t| t.is_finite() && *t > 0.0 && *t < 1e9)
                    .map(Duration::from_secs_f64)
                    .ok_or_else(|| bad(var, &v, "not a number of seconds above 0"))?;
            }
            Ok(())
        };
        count("RUMP_MAX_CLIENTS", &mut self.max_clients)?;
        secs("RUMP_HANDSHAKE_TIMEOUT", &mut self.handshake_timeout)?;
        count("RUMP_MAX_INFLIGHT", &mut self.max_inflight)?;
        count("RUMP_MAX_THREADS", &mut self.max_threads)?;
        secs("RUMP_COPY_TIMEOUT", &mut self.copy_timeout)?;
        secs("RUMP_PREFORK_TIMEOUT", &mut self.prefork_timeout)?;
        count("RUMP_MAX_PREFORKS", &mut self.prefork_per_user)?;
        if let Some(v) = get("RUMP_REQUEST_BUDGET") {
            self.request_budget = parse_bytes(&v)
                .ok_or_else(|| bad("RUMP_REQUEST_BUDGET", &v, "not a size (like 64m)"))?;
        }
        if let Some(v) = get("RUMP_SOCKET_MODE") {
            self.socket_mode = u32::from_str_radix(v.trim(), 8)
                .ok()
                .filter(|&m| m <= 0o777)
                .ok_or_else(|| bad("RUMP_SOCKET_MODE", &v, "not an octal file mode (like 0660)"))?;
        }
        Ok(self)
    }
}

/// A deadline in the nanoseconds of [`now_ns`].
pub(super) fn ns(d: Duration) -> u64 {
    d.as_nanos().min(u64::MAX as u128) as u64
}

/// `N`, `Nk`, `Nm` or `Ng` bytes.
fn parse_bytes(s: &str) -> Option<usize> {
    let s = s.trim();
    let (num, shift) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 10),
        b'm' | b'M' => (&s[..s.len() - 1], 20),
        b'g' | b'G' => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    num.parse::<usize>().ok()?.checked_mul(1 << shift)
}

/// The server-wide account of request bytes (see
/// [`ServerConfig::request_budget`]): charges are taken before a buffer
/// grows and given back when it shrinks or is dropped ([`Charge`]).
pub(crate) struct Budget {
    limit: usize,
    used: AtomicUsize,
}

impl Budget {
    pub(crate) fn new(limit: usize) -> Arc<Budget> {
        Arc::new(Budget {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    /// A budget that never refuses (for connection unit tests).
    #[cfg(test)]
    pub(crate) fn unlimited() -> Arc<Budget> {
        Budget::new(usize::MAX)
    }

    fn take(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(n).filter(|&t| t <= self.limit)
            })
            .is_ok()
    }

    fn give(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }

    /// Bytes charged now.
    #[cfg(test)]
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

/// A request buffer whose capacity beyond [`REQUEST_FREE`] is charged to
/// its server's [`Budget`] for as long as it lives, wherever it travels
/// (the reader's buffer, a syscall's inline data).
pub(crate) struct ReqBuf {
    bytes: Vec<u8>,
    charged: usize,
    budget: Arc<Budget>,
}

/// The budget had no room for a request.
#[derive(Debug)]
pub(crate) struct OverBudget;

impl ReqBuf {
    pub(crate) fn new(budget: Arc<Budget>) -> ReqBuf {
        ReqBuf {
            bytes: Vec::new(),
            charged: 0,
            budget,
        }
    }

    /// An empty buffer on the same account.
    pub(crate) fn sibling(&self) -> ReqBuf {
        ReqBuf::new(self.budget.clone())
    }

    /// Make the length `len`, charging any growth of the capacity beyond
    /// [`REQUEST_FREE`] first; the new bytes are zero. On refusal nothing
    /// changes.
    pub(crate) fn resize(&mut self, len: usize) -> Result<(), OverBudget> {
        if len > self.bytes.capacity() {
            let want = len.saturating_sub(REQUEST_FREE);
            if want > self.charged {
                if !self.budget.take(want - self.charged) {
                    return Err(OverBudget);
                }
                self.charged = want;
            }
            self.bytes.reserve_exact(len - self.bytes.len());
        }
        self.bytes.resize(len, 0);
        Ok(())
    }

    /// Empty it, keeping the capacity (and its charge).
    pub(crate) fn clear(&mut self) {
        self.bytes.clear()
    }

    /// Give back the memory (and its charge) when the buffer holds more
    /// than `keep` bytes of capacity.
    pub(crate) fn shrink_above(&mut self, keep: usize) {
        if self.bytes.capacity() > keep {
            self.bytes = Vec::new();
            self.budget.give(std::mem::take(&mut self.charged));
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }

    pub(crate) fn capacity(&self) -> usize {
        self.bytes.capacity()
    }
}

impl std::ops::Deref for ReqBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

impl std::ops::DerefMut for ReqBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.bytes
    }
}

impl Drop for ReqBuf {
    fn drop(&mut self) {
        if self.charged > 0 {
            self.budget.give(self.charged);
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_values_are_parsed_or_refused_in_words() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |v: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == v)
                    .map(|(_, x)| x.to_string())
            }
        };
        let c = ServerConfig::default()
            .with_env(env(&[
                ("RUMP_MAX_THREADS", "8"),
                ("RUMP_COPY_TIMEOUT", "0.5"),
                ("RUMP_REQUEST_BUDGET", "2m"),
                ("RUMP_SOCKET_MODE", "0660"),
            ]))
            .unwrap();
        assert_eq!(c.max_threads, 8);
        assert_eq!(c.copy_timeout, Duration::from_millis(500));
        assert_eq!(c.request_budget, 2 << 20);
        assert_eq!(c.socket_mode, 0o660);
        assert_eq!(c.max_inflight, MAX_INFLIGHT);
        let e = ServerConfig::default()
            .with_env(env(&[("RUMP_MAX_THREADS", "0")]))
            .unwrap_err();
        assert_eq!(e.to_string(), "RUMP_MAX_THREADS=0: not a count above 0");
        let e = ServerConfig::default()
            .with_env(env(&[("RUMP_SOCKET_MODE", "rw")]))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "RUMP_SOCKET_MODE=rw: not an octal file mode (like 0660)"
        );
    }

    #[test]
    fn request_buffers_are_charged_beyond_the_free_part_until_dropped() {
        let b = Budget::new(1000);
        let mut r = ReqBuf::new(b.clone());
        r.resize(REQUEST_FREE).unwrap();
        assert_eq!(b.used(), 0);
        r.resize(REQUEST_FREE + 1000).unwrap();
        assert_eq!(b.used(), 1000);
        let mut r2 = r.sibling();
        assert!(r2.resize(REQUEST_FREE + 1).is_err(), "over the budget");
        assert_eq!(r2.len(), 0);
        r.clear();
        r.resize(10).unwrap();
        assert_eq!(b.used(), 1000, "the capacity stays charged");
        r.shrink_above(REQUEST_FREE);
        assert_eq!(b.used(), 0);
        r2.resize(REQUEST_FREE + 1).unwrap();
        drop(r2);
        assert_eq!(b.used(), 0);
    }
}
