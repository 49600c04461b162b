//! The sysproxy server. This file holds its life cycle — a server's state
//! (`Srv`) and phases, start, stop for a halt, `fini`, the registry of
//! connections — and each concern beside it has a module of its own:
//! `limits` (caps and deadlines), `listen` (socket and accept loop),
//! `dispatch` (reading and dispatching requests, the watchdog),
//! `session` (handshakes, prepared forks, exec, teardown), `syscall`
//! (admission and running a call) and `copy` (requests to the client).
//! A connection (`super::conn`) reaches the server only through its
//! `Owner` trait.

use super::conn::{now_ns, send_all, Conn, Input, RState, ST_DYING, ST_NEW, ST_RUNNING};
use super::pool::pool;
use super::{ClientHandle, RUMP_RFCFDG, RUMP_RFFDG, RUMP_RFFD_SHARE};
use crate::upcalls::{self, LwpPtr, Upcalls};
use crate::Errno;
use netbsd_abi::errno::{EADDRINUSE, EBUSY, EFAULT, EINVAL, ENOMEM, ENOSYS, ENOTCONN, ESHUTDOWN};
use netbsd_abi::reboot::RB_NOSYNC;
use netbsd_abi::sp::{self as wire, Class, CopyData, Handshake, Header, ProtoError, Type, Url};
use netbsd_abi::syscall::{nargs, ARG_SLOT, SYS_REBOOT};
use parking_lot::{Condvar, Mutex, MutexGuard, RwLock};
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{c_int, c_long, c_void, CString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};

mod copy;
mod dispatch;
mod limits;
mod listen;
mod session;
mod syscall;

use copy::*;
use dispatch::*;
use limits::*;
use listen::*;
use session::*;
use syscall::*;

pub(crate) use copy::{anonmmap, copyin, copyinstr, copyout, raise};
pub use limits::{raise_nofile_limit, ConfigError, ServerConfig};
pub(crate) use limits::{Budget, ReqBuf, REQUEST_MAX};

/// Why a server did not start. Shown as one line naming the URL and the
/// reason (`unix://x.sock: Address already in use`).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// This server (or the process's default one) serves already.
    #[error("{url}: already serving")]
    AlreadyServing {
        /// The URL asked for.
        url: String,
    },
    /// The banner's names do not fit in a banner.
    #[error("banner too long")]
    Banner,
    /// The URL does not parse.
    #[error("{url}: {source}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        source: wire::UrlError,
    },
    /// Something is in the way of the `unix://` socket file.
    #[error("{url}: {source}")]
    SocketPath {
        /// The URL asked for.
        url: String,
        /// What is there.
        source: SocketPathError,
    },
    /// The socket could not be made, bound or listened on, or the accept
    /// thread not started.
    #[error("{url}: {}", .errno.description())]
    Bind {
        /// The URL asked for.
        url: String,
        /// The host's reason, as a NetBSD errno.
        errno: Errno,
    },
    /// A `RUMP_*` setting that does not parse (the C ABI's server reads
    /// its settings from the environment).
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl StartError {
    /// The NetBSD errno for callers that have only a number to give
    /// (`rumpuser_sp_init`).
    pub fn errno(&self) -> Errno {
        match self {
            StartError::AlreadyServing { .. } => Errno(EBUSY),
            StartError::Banner | StartError::Url { .. } | StartError::Config(_) => Errno(EINVAL),
            StartError::SocketPath { .. } => Errno(EADDRINUSE),
            StartError::Bind { errno, .. } => *errno,
        }
    }
}

/// What is in the way of a `unix://` socket file.
#[derive(Debug, thiserror::Error)]
pub enum SocketPathError {
    /// Something that is not a socket, which is never removed.
    #[error("the path is {0}, not a socket (refused; left as it is)")]
    NotASocket(&'static str),
    /// A socket that a server still accepts on.
    #[error("Address already in use (a server is accepting on it)")]
    InUse,
    /// A stale socket that could not be removed.
    #[error("stale socket not removed: {}", .0.description())]
    NotRemoved(Errno),
}

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
    /// This server's caps and deadlines.
    cfg: ServerConfig,
    /// The request bytes its clients' buffers hold (see [`ReqBuf`]).
    pub(crate) budget: Arc<Budget>,
    /// System calls running now, on every connection of this server.
    running: AtomicUsize,
    /// `fini` has done its work: the socket is gone, clients dropped.
    finished: AtomicBool,
}

impl Srv {
    fn new(up: Option<Arc<dyn Upcalls>>, cfg: ServerConfig) -> Arc<Srv> {
        Arc::new(Srv {
            phase: AtomicU8::new(PH_OFF),
            listener: Mutex::new(None),
            preforks: Mutex::new(Vec::new()),
            halt_hook: RwLock::new(None),
            up,
            budget: Budget::new(cfg.request_budget),
            cfg,
            running: AtomicUsize::new(0),
            finished: AtomicBool::new(false),
        })
    }

    /// A server that serves nothing (for connection unit tests).
    #[cfg(test)]
    pub(crate) fn detached() -> Arc<Srv> {
        Srv::new(None, ServerConfig::default())
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

/// The C ABI's server (`rumpuser_sp_init`), and the free functions'. A
/// global because the C ABI names no server: a process hosts at most one
/// NetBSD kernel, and that kernel has at most this one server.
static DEFAULT: Mutex<DefaultServer> = Mutex::new(DefaultServer {
    server: None,
    halted_without: false,
});

struct DefaultServer {
    server: Option<Server>,
    /// `rumpuser_sp_fini` ran with no server started: the kernel's halt
    /// got that far all the same (see [`is_finished`]).
    halted_without: bool,
}

/// Every connection of every server, by id (ids are unique in the
/// process, so a [`ClientHandle`] names one connection).
static REGISTRY: LazyLock<RwLock<HashMap<usize, Arc<Conn>>>> =
    LazyLock::new(|| RwLock::new(HashMap::new()));

static NEXT_ID: AtomicUsize = AtomicUsize::new(1);

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

/// Start serving on `url` (`unix://PATH` or `tcp://ADDR:PORT`). The banner
/// names `ostype`, `osrelease` and `machine`. `EBUSY` if already serving.
pub fn init(url: &str, ostype: &str, osrelease: &str, machine: &str) -> Result<(), Errno> {
    start(url, ostype, osrelease, machine).map_err(|e| {
        dprint(&format!("rump_sp: {e}\n"));
        e.errno()
    })
}

/// The default server, if started (and not finished).
fn default_srv() -> Option<Arc<Srv>> {
    DEFAULT.lock().server.as_ref().map(|s| s.0.clone())
}

/// [`init`] without the console message, for the caller to report in its
/// own name. The default server takes its settings from the environment
/// ([`ServerConfig::from_env`]): the C ABI has no other way to get them.
pub fn start(url: &str, ostype: &str, osrelease: &str, machine: &str) -> Result<(), StartError> {
    let mut d = DEFAULT.lock();
    if d.server.as_ref().is_some_and(|s| s.0.phase() != PH_FINI) {
        return Err(StartError::AlreadyServing { url: url.into() });
    }
    let cfg = ServerConfig::from_env()?;
    // A finished default server is replaced (dropping it shuts nothing
    // down twice: it is finished).
    d.server = Some(Server::start(url, ostype, osrelease, machine, None, cfg)?);
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
    /// (`unix://PATH` or `tcp://ADDR:PORT`) with the caps and deadlines of
    /// `cfg`; the banner names `ostype`, `osrelease` and `machine`.
    pub fn start(
        url: &str,
        ostype: &str,
        osrelease: &str,
        machine: &str,
        up: Option<Arc<dyn Upcalls>>,
        cfg: ServerConfig,
    ) -> Result<Server, StartError> {
        let srv = Srv::new(up, cfg);
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

    /// Whether the server is serving (started, not yet finished).
    pub fn is_serving(&self) -> bool {
        self.0.phase() == PH_RUN
    }

    /// This server's caps and deadlines.
    pub fn config(&self) -> &ServerConfig {
        &self.0.cfg
    }

    /// Whether the server has finished (`fini` ran): it serves nothing more.
    pub fn is_finished(&self) -> bool {
        self.0.finished.load(Ordering::Acquire)
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
) -> Result<(), StartError> {
    let banner = wire::format_banner(ostype, osrelease, machine).ok_or(StartError::Banner)?;
    let parsed = wire::parse_url(url, true).map_err(|source| StartError::Url {
        url: url.into(),
        source,
    })?;
    let bind_err = |e: std::io::Error| StartError::Bind {
        url: url.into(),
        errno: Errno::from(e),
    };
    let mut slot = srv.listener.lock();
    if slot.is_some() {
        return Err(StartError::AlreadyServing { url: url.into() });
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
            clear_stale_socket(&path).map_err(|source| StartError::SocketPath {
                url: url.into(),
                source,
            })?;
            let (fd, id) = bind_unix(&path, srv.cfg.socket_mode).map_err(bind_err)?;
            unix_id = Some(id);
            (fd, Some(path), false)
        }
        Url::Tcp(sa) => {
            let l = std::net::TcpListener::bind(sa).map_err(bind_err)?;
            l.set_nonblocking(true).map_err(bind_err)?;
            if !sa.ip().is_loopback() {
                // Once, when the server starts: the unix socket is 0600,
                // this is open to the network.
                dprint(&format!(
                    "rump_sp: warning: {url}: listening on {}: anyone who can reach it \
                     can read and write the kernel's files and halt it\n",
                    if sa.ip().is_unspecified() {
                        "every interface".to_string()
                    } else {
                        sa.ip().to_string()
                    }
                ));
            }
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
    if let Some(s) = DEFAULT.lock().server.as_ref() {
        s.set_halt_hook(h);
    }
}

/// True while the default server accepts connections and runs syscalls.
pub fn is_serving() -> bool {
    default_srv().is_some_and(|s| s.phase() == PH_RUN)
}

/// True once the C ABI's `rumpuser_sp_fini` ran for the default server:
/// sysproxy was shut down for a halt (with or without a server started).
/// A host whose kernel halts through its own path (NetBSD's `cpu_reboot`
/// with `RB_HALT` calls `rumpuser_sp_fini` and then never returns) learns
/// here that the halt got that far. A [`Server`] answers for itself
/// ([`Server::is_finished`]).
pub fn is_finished() -> bool {
    let d = DEFAULT.lock();
    d.halted_without || d.server.as_ref().is_some_and(|s| s.is_finished())
}

/// The absolute path of the default server's `unix://` socket.
pub fn socket_path() -> Option<PathBuf> {
    DEFAULT.lock().server.as_ref().and_then(|s| s.socket_path())
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
        None => DEFAULT.lock().halted_without = true,
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
    srv.finished.store(true, Ordering::Release);
}
