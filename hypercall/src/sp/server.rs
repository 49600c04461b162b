//! The sysproxy server: listener, handshakes, request dispatch, syscall
//! execution, copy requests, and shutdown for halt.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{c_int, c_long, c_void, CString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};

use parking_lot::{Condvar, Mutex, MutexGuard, RwLock};

use netbsd_abi::errno::{EBUSY, EFAULT, EINVAL, ENOMEM, ENOSYS, ENOTCONN, ESHUTDOWN};
use netbsd_abi::reboot::RB_NOSYNC;
use netbsd_abi::sp::{self as wire, Class, CopyData, Handshake, Header, ProtoError, Type, Url};
use netbsd_abi::syscall::{nargs, ARG_SLOT, SYS_REBOOT};

use super::conn::{now_ns, send_all, Conn, Input, RState, ST_DYING, ST_NEW, ST_RUNNING};
use super::pool::pool;
use super::{ClientHandle, RUMP_RFCFDG, RUMP_RFFDG, RUMP_RFFD_SHARE};
use crate::upcalls::{self, LwpPtr, Upcalls};
use crate::Errno;

const PH_OFF: u8 = 0;
const PH_RUN: u8 = 1;
const PH_STOPPED: u8 = 2;
const PH_FINI: u8 = 3;

/// One sysproxy server: its phase, listener, preforked processes, halt
/// hook and kernel. Connections point at theirs; a process may run as
/// many as it likes (the C ABI keeps one, for NetBSD's kernel).
pub(crate) struct Srv {
    /// Where the server is in its life: not started, serving, no longer
    /// admitting (halt step 1), finished (halt step 3).
    phase: AtomicU8,
    listener: Mutex<Option<Arc<Listener>>>,
    /// Processes forked off by PREFORK, waiting for a fork handshake.
    preforks: Mutex<Vec<Prefork>>,
    halt_hook: RwLock<Option<Arc<HaltHook>>>,
    /// The kernel served; `None`: the process's installed upcall table
    /// (the C ABI's server, for a kernel that called `rumpuser_init`).
    up: Option<Arc<dyn Upcalls>>,
}

impl Srv {
    fn new(up: Option<Arc<dyn Upcalls>>) -> Arc<Srv> {
        Arc::new(Srv {
            phase: AtomicU8::new(PH_OFF),
            listener: Mutex::new(None),
            preforks: Mutex::new(Vec::new()),
            halt_hook: RwLock::new(None),
            up,
        })
    }

    /// A server that serves nothing (for connection unit tests).
    #[cfg(test)]
    pub(crate) fn detached() -> Arc<Srv> {
        Srv::new(None)
    }

    fn up(&self) -> Option<&dyn Upcalls> {
        match &self.up {
            Some(u) => Some(&**u),
            None => upcalls::get(),
        }
    }

    fn phase(&self) -> u8 {
        self.phase.load(Ordering::Acquire)
    }

    /// Serving (and stopped: see [`Server::stop_admitting`]) accepts
    /// connections.
    fn accepting(&self) -> bool {
        matches!(self.phase(), PH_RUN | PH_STOPPED)
    }
}

/// Most simultaneous connections (`RUMP_MAX_CLIENTS` overrides). At the
/// cap, the oldest connection that has not handshaken yet is closed to
/// admit a new one; only when every connection has handshaken is a new
/// one refused (banner, then a `TRYAGAIN` error frame, then close).
const MAXCLI: usize = 1024;

/// A connection that has not completed its handshake this long after
/// accept is closed (`RUMP_HANDSHAKE_TIMEOUT`, in seconds, overrides).
const HANDSHAKE_TIMEOUT_NS: u64 = 10_000_000_000;

/// PREFORK processes waiting for their fork handshake: at most this many
/// per user (the peer's uid; all TCP peers count as one), and in all. A
/// prepared fork outlives the connection that made it, as NetBSD's does
/// (`rumpclient_daemon()` exits the parent before the child claims it),
/// until claimed or until it has been without its preparer for
/// `RUMP_PREFORK_TIMEOUT` seconds.
const PREFORK_PER_USER: usize = 32;
const PREFORK_MAX: usize = 1024;
const PREFORK_TIMEOUT_NS: u64 = 30_000_000_000;

/// Mode of a `unix://` socket file (`RUMP_SOCKET_MODE`, octal, overrides):
/// only the owner may connect.
const SOCKET_MODE: u32 = 0o600;

/// System calls one connection may have running at once
/// (`RUMP_MAX_INFLIGHT` overrides). One more is answered `TRYAGAIN`, which
/// NetBSD's client (and ours) retry: a well-formed client waits, and one
/// client cannot pin the server's threads.
const MAX_INFLIGHT: usize = 64;

/// System calls running at once in the whole server at most
/// (`RUMP_MAX_THREADS` overrides): each holds a worker thread, so this
/// bounds the threads that run kernel code; one more is answered
/// `TRYAGAIN` and retried by the client. (Threads waiting for a
/// connection's next request are bounded by the connection cap.)
pub(crate) const MAX_THREADS: usize = 240;

/// System calls running now, in every connection of every server.
static RUNNING_SYSCALLS: AtomicUsize = AtomicUsize::new(0);

/// Whether one more syscall may start (the caps of the connection and of
/// the server).
fn may_start_syscall(conn: &Conn) -> bool {
    // One activity is the connection itself; the rest run syscalls (or
    // an exec).
    conn.activities() <= limits().max_inflight
        && RUNNING_SYSCALLS.load(Ordering::Relaxed) < limits().max_threads
}

/// A copy request the client has not answered this long after it was
/// sent fails its system call with `EFAULT` (`RUMP_COPY_TIMEOUT`, in
/// seconds, overrides).
const COPY_TIMEOUT_NS: u64 = 30_000_000_000;

pub(crate) struct Limits {
    maxcli: usize,
    handshake_ns: u64,
    max_inflight: usize,
    max_threads: usize,
    pub(crate) copy_timeout_ns: u64,
    prefork_timeout_ns: u64,
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
fn socket_mode() -> Result<u32, String> {
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
fn log_limited(last: &AtomicU64, msg: impl FnOnce() -> String) {
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

struct Listener {
    fd: Mutex<Option<OwnedFd>>,
    wake_r: OwnedFd,
    wake_w: OwnedFd,
    unix_path: Option<PathBuf>,
    /// Device and inode of the socket file we bound: halt removes the
    /// path only if it is still that file.
    unix_id: Option<(u64, u64)>,
    banner: Vec<u8>,
    is_tcp: bool,
}

impl Listener {
    /// Close the listening socket (new connects are refused from now on)
    /// and wake the acceptor so it exits.
    fn close(&self) {
        drop(self.fd.lock().take());
        // SAFETY: one byte from a live local into our own pipe.
        unsafe { libc::write(self.wake_w.as_raw_fd(), b"x".as_ptr() as *const c_void, 1) };
    }
}

/// The C ABI's server (`rumpuser_sp_init`), and the free functions'.
static DEFAULT: Mutex<Option<Server>> = Mutex::new(None);

/// Every connection of every server, by id (ids are unique in the
/// process, so a [`ClientHandle`] names one connection).
static REGISTRY: LazyLock<RwLock<HashMap<usize, Arc<Conn>>>> =
    LazyLock::new(|| RwLock::new(HashMap::new()));
static NEXT_ID: AtomicUsize = AtomicUsize::new(1);

/// A process forked off by PREFORK, waiting for a fork handshake.
struct Prefork {
    cookie: wire::Cookie,
    lwp: usize,
    /// The connection that asked for it.
    owner: usize,
    /// Its peer's user id (see [`Conn::peer_uid`]).
    uid: u32,
    /// When that connection went away ([`now_ns`]; 0 while it is there).
    orphaned: u64,
}

thread_local! {
    /// The connection and request whose syscall this thread is running.
    static CURRENT: RefCell<Option<(Arc<Conn>, u64)>> = const { RefCell::new(None) };
}

fn lookup(h: ClientHandle) -> Option<Arc<Conn>> {
    if h.is_null() {
        return None;
    }
    let cur = CURRENT.with(|c| {
        c.borrow()
            .as_ref()
            .filter(|(c, _)| c.id == h.0)
            .map(|(c, _)| c.clone())
    });
    cur.or_else(|| REGISTRY.read().get(&h.0).cloned())
}

/// Run one upcall with a virtual CPU held, as NetBSD's server does for
/// each of its kernel entries outside syscalls.
fn sched<R>(up: &dyn Upcalls, f: impl FnOnce(&dyn Upcalls) -> R) -> R {
    up.schedule();
    let r = f(up);
    up.unschedule();
    r
}

/// [`sched`], for the process bookkeeping of a guest handshake: a kernel
/// that can do it without a virtual CPU ([`Upcalls::lwproc_needs_cpu`])
/// lets a client in while every CPU is stuck, so `rump.halt -n` still
/// works then.
fn lwp_sched<R>(up: &dyn Upcalls, f: impl FnOnce(&dyn Upcalls) -> R) -> R {
    if up.lwproc_needs_cpu() {
        sched(up, f)
    } else {
        f(up)
    }
}

/// Make `l` current: an lwp this server got from `lwproc_curlwp` (a
/// connection's main lwp, a prefork's) or null.
fn switch_lwp(up: &dyn Upcalls, l: LwpPtr) {
    // SAFETY: every lwp the server switches to is one the kernel handed it
    // and that it has not released: the connection's main lwp (until its
    // final release) or a prefork's (until taken or cancelled), or null.
    unsafe { up.lwproc_switch(l) }
}

fn dprint(s: &str) {
    crate::cons::dprint(s);
}

// ---------------------------------------------------------------------------
// Start-up and shutdown

/// Start serving on `url` (`unix://PATH` or `tcp://ADDR:PORT`). The banner
/// names `ostype`, `osrelease` and `machine`. `EBUSY` if already serving.
pub fn init(url: &str, ostype: &str, osrelease: &str, machine: &str) -> Result<(), Errno> {
    start(url, ostype, osrelease, machine).map_err(|(e, msg)| {
        dprint(&format!("rump_sp: {msg}\n"));
        e
    })
}

/// The default server, if started (and not finished).
fn default_srv() -> Option<Arc<Srv>> {
    DEFAULT.lock().as_ref().map(|s| s.0.clone())
}

/// [`init`] without the console message: the error comes back with a
/// one-line reason ("unix://x.sock: Address already in use") for the
/// caller to report in its own name.
pub fn start(
    url: &str,
    ostype: &str,
    osrelease: &str,
    machine: &str,
) -> Result<(), (Errno, String)> {
    let mut d = DEFAULT.lock();
    if d.as_ref().is_some_and(|s| s.0.phase() != PH_FINI) {
        return Err((Errno(EBUSY), format!("{url}: already serving")));
    }
    // A finished default server is replaced (dropping it shuts nothing
    // down twice: it is finished).
    *d = Some(Server::start(url, ostype, osrelease, machine, None)?);
    Ok(())
}

/// A running sysproxy server. Dropped while still serving, it shuts down
/// as [`Server::fini`] would (clients see EOF, the socket file goes).
pub struct Server(Arc<Srv>);

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("socket", &self.socket_path())
            .field("connections", &self.connections())
            .finish()
    }
}

impl Server {
    /// Serve `up`'s kernel (`None`: the installed upcall table) on `url`
    /// (`unix://PATH` or `tcp://ADDR:PORT`); the banner names `ostype`,
    /// `osrelease` and `machine`. Errors come with a one-line reason
    /// ("unix://x.sock: Address already in use").
    pub fn start(
        url: &str,
        ostype: &str,
        osrelease: &str,
        machine: &str,
        up: Option<Arc<dyn Upcalls>>,
    ) -> Result<Server, (Errno, String)> {
        let srv = Srv::new(up);
        start_srv(&srv, url, ostype, osrelease, machine)?;
        Ok(Server(srv))
    }

    /// Halt step 1 for this server: see [`stop_admitting`].
    pub fn stop_admitting(&self) {
        stop_srv(&self.0)
    }

    /// Install this server's [`HaltHook`].
    pub fn set_halt_hook(&self, h: Box<HaltHook>) {
        *self.0.halt_hook.write() = Some(Arc::from(h));
    }

    pub fn is_serving(&self) -> bool {
        self.0.phase() == PH_RUN
    }

    pub fn is_finished(&self) -> bool {
        self.0.phase() == PH_FINI
    }

    /// The absolute path of the `unix://` socket, if serving on one.
    pub fn socket_path(&self) -> Option<PathBuf> {
        self.0
            .listener
            .lock()
            .as_ref()
            .and_then(|l| l.unix_path.clone())
    }

    /// Live client connections of this server.
    pub fn connections(&self) -> usize {
        REGISTRY
            .read()
            .values()
            .filter(|c| Arc::ptr_eq(&c.srv, &self.0))
            .count()
    }

    /// Halt step 3: answer `client`'s pending `reboot(2)` with `error`,
    /// close the listener, remove the socket file, drop every client.
    pub fn fini(&self, client: ClientHandle, error: i32) {
        fini_srv(&self.0, client, error)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.0.phase(), PH_RUN | PH_STOPPED) {
            fini_srv(&self.0, ClientHandle::NULL, 0);
        }
    }
}

fn start_srv(
    srv: &Arc<Srv>,
    url: &str,
    ostype: &str,
    osrelease: &str,
    machine: &str,
) -> Result<(), (Errno, String)> {
    let banner = wire::format_banner(ostype, osrelease, machine)
        .ok_or_else(|| (Errno(EINVAL), "banner too long".to_string()))?;
    let parsed = wire::parse_url(url, true).map_err(|e| (Errno(EINVAL), format!("{url}: {e}")))?;
    let bind_err = |e: std::io::Error| {
        let errno = Errno::from(e);
        (errno, format!("{url}: {}", errno.description()))
    };
    let mut slot = srv.listener.lock();
    if slot.is_some() {
        return Err((Errno(EBUSY), format!("{url}: already serving")));
    }
    let mut unix_id = None;
    let (fd, unix_path, is_tcp): (OwnedFd, Option<PathBuf>, bool) = match parsed {
        Url::Unix(p) => {
            let mut path = PathBuf::from(&p);
            if path.is_relative() {
                // Keep the absolute path for removal, whatever the
                // process's working directory is by then.
                if let Ok(cwd) = std::env::current_dir() {
                    path = cwd.join(path);
                }
            }
            let mode = socket_mode().map_err(|m| (Errno(EINVAL), m))?;
            let (fd, id) = bind_unix(&path, mode).map_err(bind_err)?;
            unix_id = Some(id);
            (fd, Some(path), false)
        }
        Url::Tcp(sa) => {
            let l = std::net::TcpListener::bind(sa).map_err(bind_err)?;
            l.set_nonblocking(true).map_err(bind_err)?;
            (l.into(), None, true)
        }
    };
    let (wake_r, wake_w) =
        match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK) {
            Ok(p) => p,
            Err(e) => {
                if let Some(path) = &unix_path {
                    remove_socket(path, unix_id);
                }
                return Err(bind_err(std::io::Error::from(e)));
            }
        };
    let l = Arc::new(Listener {
        fd: Mutex::new(Some(fd)),
        wake_r,
        wake_w,
        unix_path,
        unix_id,
        banner: banner.into_bytes(),
        is_tcp,
    });
    srv.phase.store(PH_RUN, Ordering::Release);
    watchdog_start();
    let l2 = l.clone();
    let srv2 = srv.clone();
    let spawned = std::thread::Builder::new()
        .name("rumpsp-accept".into())
        .spawn(move || accept_loop(srv2, l2));
    if let Err(e) = spawned {
        srv.phase.store(PH_OFF, Ordering::Release);
        if let Some(path) = &l.unix_path {
            remove_socket(path, l.unix_id);
        }
        return Err(bind_err(e));
    }
    *slot = Some(l);
    Ok(())
}

/// Bind a listening unix socket at `path` whose file has `mode` whatever
/// the umask: bound, then chmod'ed, then (only then) listening, so nobody
/// connects through a wider mode. Returns the socket and the file's
/// device and inode.
fn bind_unix(path: &std::path::Path, mode: u32) -> std::io::Result<(OwnedFd, (u64, u64))> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: sockaddr_un is plain old data; all zeros is a valid value.
    let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.len() >= sa.sun_path.len() || bytes.contains(&0) {
        return Err(std::io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in sa.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: socket(2) with constant arguments.
    let raw = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: socket(2) just returned this descriptor; nobody else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let salen = (std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1) as libc::socklen_t;
    // SAFETY: `sa` is a valid sockaddr_un of at least `salen` bytes.
    if unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &sa as *const libc::sockaddr_un as *const libc::sockaddr,
            salen,
        )
    } != 0
    {
        return Err(std::io::Error::last_os_error());
    }
    let id = (|| {
        let m = std::fs::symlink_metadata(path)?;
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        let m2 = std::fs::symlink_metadata(path)?;
        if (m.dev(), m.ino()) != (m2.dev(), m2.ino()) || m2.mode() & 0o777 != mode {
            // Replaced under us (only someone who may write the directory).
            return Err(std::io::Error::from_raw_os_error(libc::EEXIST));
        }
        Ok((m.dev(), m.ino()))
    })();
    let id = match id {
        Ok(id) => id,
        Err(e) => {
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
    };
    // SAFETY: listen(2) on the socket we own.
    if unsafe { libc::listen(fd.as_raw_fd(), 4096) } != 0 {
        let e = std::io::Error::last_os_error();
        remove_socket(path, Some(id));
        return Err(e);
    }
    Ok((fd, id))
}

/// Remove the socket file at `path` if it is still the one we bound
/// (same device and inode): never a file someone else put there.
fn remove_socket(path: &std::path::Path, id: Option<(u64, u64)>) {
    use std::os::unix::fs::MetadataExt;
    let Some(id) = id else { return };
    match std::fs::symlink_metadata(path) {
        Ok(m) if (m.dev(), m.ino()) == id => {
            let _ = std::fs::remove_file(path);
        }
        Ok(_) => dprint(&format!(
            "rump_sp: {}: not removed: no longer the socket this server created\n",
            path.display()
        )),
        Err(_) => {}
    }
}

/// Halt step 1: answer every new syscall request with `ESHUTDOWN` (running
/// ones continue). The listener stays open until [`fini`]: a halt that
/// hangs while flushing must still let `rump.halt -n` in to rescue it. A
/// connection made from now on gets no kernel process (that would need a
/// virtual CPU, and every CPU may be stuck); only `reboot(2)` reaches the
/// halt hook from it.
///
/// Without a halt hook (NetBSD's kernel, which halts itself) there is no
/// rescue to let in: the listener closes now, and new connects are
/// refused.
pub fn stop_admitting() {
    if let Some(srv) = default_srv() {
        stop_srv(&srv);
    }
}

fn stop_srv(srv: &Srv) {
    // Without a hook, close the listener *before* new syscalls start to
    // fail: a client that saw ESHUTDOWN must find connects refused, not
    // queued on a socket about to close (reset).
    if srv.halt_hook.read().is_none() && srv.phase() == PH_RUN {
        if let Some(l) = srv.listener.lock().clone() {
            l.close();
        }
    }
    let _ = srv
        .phase
        .compare_exchange(PH_RUN, PH_STOPPED, Ordering::AcqRel, Ordering::Acquire);
}

/// What the server calls, on the connection's own thread and without a
/// virtual CPU, for a `reboot(2)` that must not wait for one: one with
/// `RB_NOSYNC`, or any once the server stopped admitting (a halt is under
/// way). Arguments: the `RB_*` flags and the caller's handle (for
/// [`fini`]); returns the syscall's errno. Without a hook such requests
/// take the ordinary path (NetBSD's kernel halts itself).
pub type HaltHook = dyn Fn(i32, ClientHandle) -> i32 + Send + Sync;

/// Install the default server's [`HaltHook`].
pub fn set_halt_hook(h: Box<HaltHook>) {
    if let Some(s) = DEFAULT.lock().as_ref() {
        s.set_halt_hook(h);
    }
}

/// True while the default server accepts connections and runs syscalls.
pub fn is_serving() -> bool {
    default_srv().is_some_and(|s| s.phase() == PH_RUN)
}

/// True once [`fini`] ran: sysproxy was shut down for a halt (with or
/// without a server started). A host whose kernel halts through its own
/// path (NetBSD's `cpu_reboot` with `RB_HALT` calls `rumpuser_sp_fini`
/// and then never returns) learns here that the halt got that far.
pub fn is_finished() -> bool {
    FINISHED.load(Ordering::Acquire)
}

/// Some server of this process ran [`fini`] (see [`is_finished`]).
static FINISHED: AtomicBool = AtomicBool::new(false);

/// The absolute path of the default server's `unix://` socket.
pub fn socket_path() -> Option<PathBuf> {
    DEFAULT.lock().as_ref().and_then(|s| s.socket_path())
}

/// Number of live client connections, of every server.
pub fn connections() -> usize {
    REGISTRY.read().len()
}

/// `rumpuser_sp_fini`: halt step 3 for the server of `h` (the halting
/// caller), or the default server.
pub(crate) fn fini(h: ClientHandle, error: i32) {
    let srv = lookup(h).map(|c| c.srv.clone()).or_else(default_srv);
    match srv {
        Some(srv) => fini_srv(&srv, h, error),
        None => FINISHED.store(true, Ordering::Release),
    }
}

fn fini_srv(srv: &Arc<Srv>, h: ClientHandle, error: i32) {
    srv.phase.store(PH_FINI, Ordering::Release);
    // 1. Answer the halting caller, fully, before anything is closed.
    if let Some(conn) = lookup(h) {
        let cur = CURRENT.with(|c| {
            c.borrow()
                .as_ref()
                .filter(|(c, _)| c.id == h.0)
                .map(|(_, r)| *r)
        });
        if let Some(r) = conn.running_claim(cur) {
            let retval = if error == 0 { [0, 0] } else { [-1, 0] };
            let _ = conn.send_sysresp(r, error, retval);
        }
    }
    // 2. Close the listener and remove the socket file.
    if let Some(l) = srv.listener.lock().clone() {
        l.close();
        if let Some(p) = &l.unix_path {
            remove_socket(p, l.unix_id);
        }
    }
    // 3. Drop every client: they see EOF; kernel threads waiting for a
    //    copy answer fail with EFAULT.
    let conns: Vec<Arc<Conn>> = REGISTRY
        .read()
        .values()
        .filter(|c| Arc::ptr_eq(&c.srv, srv))
        .cloned()
        .collect();
    for c in conns {
        c.shutdown();
        c.kill_waiters();
    }
    // Only now: whoever waits for `is_finished` finds the socket gone.
    FINISHED.store(true, Ordering::Release);
}

// ---------------------------------------------------------------------------
// Accepting

fn accept_loop(srv: Arc<Srv>, l: Arc<Listener>) {
    // Refused connections stay open a moment (then close), so the client
    // can send its handshake and read why, rather than find a broken pipe.
    let mut lingering: std::collections::VecDeque<(OwnedFd, u64)> =
        std::collections::VecDeque::new();
    loop {
        let now = now_ns();
        while lingering
            .front()
            .is_some_and(|(_, t)| now.saturating_sub(*t) > 1_000_000_000)
        {
            lingering.pop_front();
        }
        if !srv.accepting() {
            return;
        }
        let lfd = match l.fd.lock().as_ref() {
            Some(f) => f.as_raw_fd(),
            None => return,
        };
        let mut pfd = [
            libc::pollfd {
                fd: lfd,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: l.wake_r.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // Wake up now and then to close connections past their
        // handshake deadline.
        let tick = (limits().handshake_ns / 4_000_000).clamp(10, 1000) as c_int;
        // SAFETY: `pfd` is a valid array of two pollfds.
        let n = unsafe { libc::poll(pfd.as_mut_ptr(), 2, tick) };
        if pfd[1].revents != 0 || !srv.accepting() {
            return;
        }
        sweep_handshakes(&srv);
        if has_stale_preforks(&srv) {
            // Releasing runs kernel code: on a worker, not here.
            let s = srv.clone();
            pool().submit(move || release_stale_preforks(&s));
        }
        if n <= 0 || pfd[0].revents == 0 {
            continue;
        }
        let nfd = {
            let g = l.fd.lock();
            let Some(f) = g.as_ref() else { return };
            // SAFETY: accept4 on our listening socket; peer address unused.
            unsafe {
                libc::accept4(
                    f.as_raw_fd(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_CLOEXEC,
                )
            }
        };
        if nfd < 0 {
            let e = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
            if e == libc::EMFILE || e == libc::ENFILE || e == libc::ENOBUFS || e == libc::ENOMEM {
                // Out of descriptors: make room by closing the oldest
                // connection that has not handshaken, so a client that
                // does is never locked out.
                static LOGGED: AtomicU64 = AtomicU64::new(0);
                let evicted = evict_oldest_new(&srv);
                log_limited(&LOGGED, || {
                    format!(
                        "rump_sp: accept: {}{}\n",
                        std::io::Error::from_raw_os_error(e),
                        if evicted {
                            "; closed the oldest connection not yet handshaken"
                        } else {
                            ""
                        }
                    )
                });
                std::thread::sleep(std::time::Duration::from_millis(if evicted {
                    1
                } else {
                    10
                }));
            }
            continue;
        }
        // SAFETY: accept4 returned a new descriptor that we now own.
        let fd = unsafe { OwnedFd::from_raw_fd(nfd) };
        if let Some(refused) = new_connection(&srv, fd, &l) {
            if lingering.len() >= 64 {
                lingering.pop_front();
            }
            lingering.push_back((refused, now_ns()));
        }
    }
}

/// Close every connection whose handshake deadline has passed.
fn sweep_handshakes(srv: &Arc<Srv>) {
    let now = now_ns();
    let limit = limits().handshake_ns;
    let late: Vec<Arc<Conn>> = REGISTRY
        .read()
        .values()
        .filter(|c| {
            Arc::ptr_eq(&c.srv, srv)
                && c.state.load(Ordering::Acquire) == ST_NEW
                && !c.evicted.load(Ordering::Acquire)
                && now.saturating_sub(c.accepted) > limit
        })
        .cloned()
        .collect();
    if late.is_empty() {
        return;
    }
    static LOGGED: AtomicU64 = AtomicU64::new(0);
    let n = late.iter().filter(|c| c.evict()).count();
    log_limited(&LOGGED, || {
        format!(
            "rump_sp: closed {n} connection(s) that did not handshake within {:.1} s\n",
            limit as f64 / 1e9
        )
    });
}

/// Close the oldest connection that has not handshaken yet; false if
/// there is none.
fn evict_oldest_new(srv: &Arc<Srv>) -> bool {
    let victim = REGISTRY
        .read()
        .values()
        .filter(|c| {
            Arc::ptr_eq(&c.srv, srv)
                && c.state.load(Ordering::Acquire) == ST_NEW
                && !c.evicted.load(Ordering::Acquire)
        })
        .min_by_key(|c| c.id)
        .cloned();
    match victim {
        Some(c) => {
            c.evict();
            true
        }
        None => false,
    }
}

/// Admit a new connection; a refused one comes back, told why, to be
/// closed a moment later.
fn new_connection(srv: &Arc<Srv>, fd: OwnedFd, l: &Listener) -> Option<OwnedFd> {
    let live = REGISTRY
        .read()
        .values()
        .filter(|c| Arc::ptr_eq(&c.srv, srv) && !c.evicted.load(Ordering::Acquire))
        .count();
    if live >= limits().maxcli && !evict_oldest_new(srv) {
        // Every slot holds a client that handshook: refuse this one
        // clearly, without waiting for it.
        static LOGGED: AtomicU64 = AtomicU64::new(0);
        log_limited(&LOGGED, || {
            format!("rump_sp: refused a connection: {live} clients connected (the most)\n")
        });
        let h = Header::new(
            Class::Error,
            Type::Handshake,
            0,
            ProtoError::TryAgain as u32,
            0,
        );
        let _ = send_all(std::os::fd::AsFd::as_fd(&fd), &[&l.banner, &h.encode()]);
        // SAFETY: shutdown(2) on the descriptor we own: no more from us.
        unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_WR) };
        return Some(fd);
    }
    if l.is_tcp {
        let one: c_int = 1;
        // SAFETY: setsockopt with a valid pointer to an int.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                &one as *const c_int as *const c_void,
                std::mem::size_of::<c_int>() as libc::socklen_t,
            )
        };
    }
    if send_all(std::os::fd::AsFd::as_fd(&fd), &[&l.banner]).is_err() {
        return None;
    }
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let conn = Arc::new(Conn::new(id, fd, srv.clone()));
    REGISTRY.write().insert(id, conn.clone());
    pool().submit(move || reader_job(conn));
    None
}

// ---------------------------------------------------------------------------
// Reading and dispatching

/// A syscall's argument block, 8-byte aligned and zero-padded to at least
/// eight slots so that a kernel reading a few slots past a short block for
/// a syscall we do not know never reads outside it.
enum Args {
    Inline([u64; 8]),
    Heap(Vec<u64>),
}

impl Args {
    fn new(p: &[u8]) -> Args {
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

    fn as_mut_slice(&mut self) -> &mut [u64] {
        match self {
            Args::Inline(a) => a,
            Args::Heap(v) => v,
        }
    }
}

struct SyscallJob {
    reqno: u64,
    num: i32,
    args: Args,
    /// An inline request's records and the payload holding them (the
    /// reader's buffer, moved here by whoever runs the job).
    inline: Option<(wire::InlineLayout, Vec<u8>)>,
}

impl SyscallJob {
    /// Give the job the request's payload if it needs it (inline data);
    /// otherwise `payload` stays with the caller.
    fn take_payload(&mut self, payload: &mut Vec<u8>) {
        if let Some((_, p)) = self.inline.as_mut() {
            *p = std::mem::take(payload);
        }
    }
}

/// What copyin/copyinstr may take without a round trip: the inline
/// records of the syscall this thread runs for connection `conn`.
struct InlineNow {
    conn: usize,
    layout: wire::InlineLayout,
    data: Vec<u8>,
}

thread_local! {
    static INLINE: RefCell<Option<InlineNow>> = const { RefCell::new(None) };
}

/// Serve a copyin from the running syscall's inline records: `Some(n)`
/// bytes copied into `dst` (for a string: through its NUL, or all of
/// `dst`), `Some(usize::MAX)` (a fault) once the connection is closed,
/// or `None` when they are not there.
fn copy_inline(h: ClientHandle, raddr: u64, dst: &mut [u8], string: bool) -> Option<usize> {
    INLINE.with(|i| {
        let g = i.borrow();
        let now = g.as_ref().filter(|n| n.conn == h.0)?;
        // A client that went away fails copies as on the wire (a syscall
        // may poll copyin to notice that).
        if CURRENT.with(|c| {
            c.borrow()
                .as_ref()
                .is_some_and(|(c, _)| c.closed.load(Ordering::Acquire))
        }) {
            return Some(usize::MAX);
        }
        let src = now.layout.find(&now.data, raddr, dst.len(), string)?;
        dst[..src.len()].copy_from_slice(src);
        Some(src.len())
    })
}

// A `Syscall` carries an inline request's record table (a few hundred
// bytes): moved once per request, never stored, so not boxed.
#[allow(clippy::large_enum_variant)]
enum Next {
    Continue,
    Close,
    Syscall(SyscallJob),
    Exec(u64, CString),
}

/// A pool job: take the reader role (waiting for it if need be) and serve.
fn reader_job(conn: Arc<Conn>) {
    let g = conn.rd.lock();
    conn.reader_queued.store(false, Ordering::Release);
    serve(&conn, g);
}

/// Hold the reader role: read and handle requests. A syscall runs right
/// here, with the role left free (a copyin waiter or the watchdog may take
/// it); afterwards this thread goes on reading if the role is still free.
fn serve<'a>(conn: &'a Arc<Conn>, mut g: MutexGuard<'a, RState>) {
    loop {
        conn.free_since.store(0, Ordering::Release);
        let input = g.next(conn, &|| false).unwrap_or(Input::Closed);
        let hdr = match input {
            Input::Request(hdr) => hdr,
            Input::Closed | Input::Bad(_) => {
                if let Input::Bad(Some(r)) = input {
                    let _ = conn.send_error(r, ProtoError::MalformedRequest);
                }
                drop(g);
                close_conn(conn);
                return;
            }
        };
        let mut payload = std::mem::take(&mut g.pending);
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
                conn.enter();
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
pub(crate) fn dispatch_async(conn: Arc<Conn>, hdr: Header, mut payload: Vec<u8>) {
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
                conn.enter();
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

fn close_conn(conn: &Arc<Conn>) {
    if !conn.closed.swap(true, Ordering::AcqRel) {
        disconnect(conn);
    }
}

// --- the watchdog: a reader for connections whose syscall runs long ---------

static WD_SLEEPING: AtomicBool = AtomicBool::new(false);
static WD_MX: Mutex<()> = Mutex::new(());
static WD_CV: Condvar = Condvar::new();
/// A connection left without a reader this long gets one.
const WD_AFTER_NS: u64 = 1_000_000;
/// Rounds (about WD_AFTER_NS each) with nothing to watch before the
/// watchdog sleeps until kicked.
const WD_IDLE_ROUNDS: u32 = 20;

fn watchdog_kick() {
    if WD_SLEEPING.load(Ordering::Relaxed) {
        let _g = WD_MX.lock();
        WD_CV.notify_one();
    }
}

fn watchdog_start() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = std::thread::Builder::new()
            .name("rumpsp-watch".into())
            .spawn(watchdog);
    });
}

fn watchdog() {
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

fn handle_request(conn: &Arc<Conn>, hdr: &Header, payload: &[u8]) -> Next {
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

/// A process name from a handshake payload: up to the first NUL.
fn comm_of(payload: &[u8]) -> CString {
    let end = payload
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(payload.len());
    CString::new(&payload[..end.min(255)]).unwrap_or_default()
}

fn handshake(conn: &Arc<Conn>, hdr: &Header, payload: &[u8]) -> Next {
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
    Next::Continue
}

/// Most inline bytes (records and their data) we accept in one request.
const INLINE_MAX: usize = 256 << 10;

fn syscall_request(conn: &Arc<Conn>, hdr: &Header, payload: &[u8]) -> Next {
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
    if !may_start_syscall(conn) {
        let _ = conn.send_error(hdr.reqno, ProtoError::TryAgain);
        return Next::Continue;
    }
    Next::Syscall(SyscallJob {
        reqno: hdr.reqno,
        num,
        args: Args::new(payload),
        inline: inline.map(|l| (l, Vec::new())),
    })
}

/// A `reboot(2)` handed to the [`HaltHook`] right on the reader's thread,
/// with no virtual CPU: bookkept like a running syscall, so that [`fini`]
/// answers it before the connections go.
fn halt_without_cpu(conn: &Arc<Conn>, reqno: u64, flags: i32, hook: &HaltHook) {
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
fn run_syscall(conn: &Arc<Conn>, mut job: SyscallJob) -> Option<Vec<u8>> {
    let Some(up) = conn.srv.up() else {
        let _ = conn.send_sysresp(job.reqno, ENOSYS, [-1, 0]);
        return None;
    };
    RUNNING_SYSCALLS.fetch_add(1, Ordering::Relaxed);
    // Counted down however the call ends (a panic in the kernel too).
    struct Running;
    impl Drop for Running {
        fn drop(&mut self) {
            RUNNING_SYSCALLS.fetch_sub(1, Ordering::Relaxed);
        }
    }
    let _running = Running;
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

fn prefork(conn: &Arc<Conn>, reqno: u64) -> Next {
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
        if mine >= PREFORK_PER_USER || v.len() >= PREFORK_MAX {
            drop(v);
            static LOGGED: AtomicU64 = AtomicU64::new(0);
            log_limited(&LOGGED, || {
                format!(
                    "rump_sp: pid {}: prefork refused: uid {uid} has {} waiting for a fork handshake (at most {PREFORK_PER_USER} per user, {PREFORK_MAX} in all)\n",
                    conn.pid.load(Ordering::Acquire),
                    mine
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

fn random_cookie() -> wire::Cookie {
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

fn exec_request(conn: &Arc<Conn>, reqno: u64, payload: &[u8]) -> Next {
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

fn exec_job(conn: Arc<Conn>, reqno: u64, comm: CString) {
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
fn disconnect(conn: &Arc<Conn>) {
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

fn has_stale_preforks(srv: &Srv) -> bool {
    let now = now_ns();
    let limit = limits().prefork_timeout_ns;
    srv.preforks
        .lock()
        .iter()
        .any(|p| p.orphaned != 0 && now.saturating_sub(p.orphaned) > limit)
}

/// Release the prepared forks whose preparer has been gone longer than
/// the prefork deadline.
fn release_stale_preforks(srv: &Arc<Srv>) {
    let now = now_ns();
    let limit = limits().prefork_timeout_ns;
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
fn final_release(conn: &Conn) {
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

// ---------------------------------------------------------------------------
// Requests to the client, made by the kernel during a syscall

pub(crate) fn copyin(h: ClientHandle, raddr: u64, dst: &mut [u8]) -> Result<(), Errno> {
    if dst.is_empty() {
        return Ok(());
    }
    if let Some(n) = copy_inline(h, raddr, dst, false) {
        return if n == dst.len() {
            Ok(())
        } else {
            Err(Errno(EFAULT))
        };
    }
    let conn = lookup(h).ok_or(Errno(EFAULT))?;
    let cd = CopyData {
        len: dst.len() as u64,
        addr: raddr,
    }
    .encode();
    let want = dst.len();
    match upcalls::blocking(std::ptr::null_mut(), || {
        conn.request(Type::Copyin, &cd, dst)
    }) {
        Ok(n) if n == want => Ok(()),
        _ => Err(Errno(EFAULT)),
    }
}

pub(crate) fn copyinstr(h: ClientHandle, raddr: u64, dst: &mut [u8]) -> Result<usize, Errno> {
    if dst.is_empty() {
        return Ok(0);
    }
    if let Some(n) = copy_inline(h, raddr, dst, true) {
        return if n <= dst.len() {
            Ok(n)
        } else {
            Err(Errno(EFAULT))
        };
    }
    let conn = lookup(h).ok_or(Errno(EFAULT))?;
    let cd = CopyData {
        len: dst.len() as u64,
        addr: raddr,
    }
    .encode();
    upcalls::blocking(std::ptr::null_mut(), || {
        conn.request(Type::Copyinstr, &cd, dst)
    })
    .map_err(|_| Errno(EFAULT))
}

pub(crate) fn copyout(h: ClientHandle, src: &[u8], raddr: u64, ty: Type) -> Result<(), Errno> {
    if src.is_empty() {
        return Ok(());
    }
    let conn = lookup(h).ok_or(Errno(EFAULT))?;
    forget_inline_over(h, raddr, src.len());
    upcalls::blocking(std::ptr::null_mut(), || conn.copyout(ty, src, raddr))
        .map_err(|_| Errno(EFAULT))
}

/// A copyout over memory the running syscall got inline makes that copy
/// stale: from now on its copyins go over the wire (and see what the
/// client's memory holds then).
fn forget_inline_over(h: ClientHandle, raddr: u64, len: usize) {
    INLINE.with(|i| {
        let mut g = i.borrow_mut();
        if let Some(now) = g.as_mut().filter(|n| n.conn == h.0) {
            let end = raddr.saturating_add(len as u64);
            let l = &mut now.layout;
            for r in l.recs[..l.nrec].iter_mut() {
                if raddr < r.addr.saturating_add(r.len as u64) && r.addr < end {
                    r.len = 0;
                }
            }
        }
    });
}

pub(crate) fn anonmmap(h: ClientHandle, len: usize) -> Result<u64, Errno> {
    let conn = lookup(h).ok_or(Errno(EFAULT))?;
    let mut out = [0u8; 8];
    let req = (len as u64).to_le_bytes();
    match upcalls::blocking(std::ptr::null_mut(), || {
        conn.request(Type::Anonmmap, &req, &mut out)
    }) {
        Ok(8) => match u64::from_le_bytes(out) {
            0 => Err(Errno(ENOMEM)),
            a => Ok(a),
        },
        _ => Err(Errno(EFAULT)),
    }
}

pub(crate) fn raise(h: ClientHandle, signo: i32) -> Result<(), Errno> {
    let conn = lookup(h).ok_or(Errno(ENOTCONN))?;
    upcalls::blocking(std::ptr::null_mut(), || {
        conn.notify(Type::Raise, signo as u32, &[])
    })
    .map_err(|_| Errno(ENOTCONN))
}

#[cfg(test)]
mod inline_tests {
    use super::*;

    /// Inline records serve copyins on the syscall's own thread and
    /// connection only, and a copyout over one makes it stale.
    #[test]
    fn inline_copies_and_staleness() {
        let data = [5u8; 64];
        let mut p = wire::InlineHdr { arglen: 0, nrec: 1 }.encode().to_vec();
        p.extend(
            CopyData {
                len: 64,
                addr: 0x1000,
            }
            .encode(),
        );
        p.extend(data);
        let layout = wire::InlineLayout::decode(&p).unwrap();
        INLINE.with(|i| {
            *i.borrow_mut() = Some(InlineNow {
                conn: 7,
                layout,
                data: p,
            })
        });
        let mut dst = [0u8; 16];
        assert_eq!(
            copy_inline(ClientHandle(7), 0x1010, &mut dst, false),
            Some(16)
        );
        assert_eq!(dst, [5u8; 16]);
        assert_eq!(
            copy_inline(ClientHandle(8), 0x1010, &mut dst, false),
            None,
            "another connection's"
        );
        assert_eq!(
            copy_inline(ClientHandle(7), 0x1038, &mut dst, false),
            None,
            "runs past the record"
        );
        forget_inline_over(ClientHandle(7), 0x103f, 1);
        assert_eq!(
            copy_inline(ClientHandle(7), 0x1000, &mut dst, false),
            None,
            "stale after a copyout over it"
        );
        INLINE.with(|i| *i.borrow_mut() = None);
    }
}
