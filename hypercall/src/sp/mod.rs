//! Sysproxy: the server side of NetBSD's remote-syscall protocol
//! (`rumpuser_sp_*`), wire-compatible with NetBSD's `rumpclient`.
//!
//! # Design
//!
//! * One acceptor thread polls the listening socket; on accept it sends the
//!   banner and hands the connection to the worker pool.
//! * Each connection has one *reader role* (its receive buffer behind a
//!   mutex): whoever holds it reads frames, routes answers (copyin data,
//!   anonmmap addresses) straight into the memory of the kernel thread
//!   waiting for them, and handles handshakes and prefork.
//! * A syscall request runs on the thread that read it, with the role left
//!   free (`schedule` → `lwproc_newlwp(pid)` → `syscall` → `lwproc_release`
//!   → `unschedule`); the thread writes its own answer and, if the role is
//!   still free, goes back to reading. The null syscall costs one `read`
//!   and one `sendmsg` and no thread hand-off.
//! * A kernel thread that waits for a copy answer reads it itself when the
//!   role is free (no hand-off either); otherwise the holder routes it and
//!   unparks it. Requests it reads on the way go to the pool.
//! * A watchdog gives a connection a pool reader when its role has been
//!   free for over a millisecond while a syscall runs (a syscall blocked in
//!   the kernel), so other syscalls of a multithreaded client, and its
//!   disconnection, are still served.
//! * Every frame goes out in a single `sendmsg` (header and payload in one
//!   iovec array) under the connection's send lock.
//! * Copy requests made by the kernel during a syscall ([`copyin`] & co.)
//!   give up the virtual CPU while they wait (`upcalls::blocking`).
//!
//! The client argument the kernel gets from `hyp_lwproc_rfork` and passes
//! back to [`copyin`] & co. is an opaque [`ClientHandle`]: a connection id,
//! never a pointer, so a stale handle can only ever fail with `EFAULT`.

pub(crate) mod c_abi;
mod conn;
mod pool;
mod server;

use std::ffi::c_void;

use crate::Errno;

pub use netbsd_abi::sp as wire;
pub use server::{
    connections, init, is_finished, is_serving, raise_nofile_limit, set_halt_hook, socket_path,
    start, stop_admitting, ConfigError, HaltHook, Server, ServerConfig, SocketPathError,
    StartError,
};

/// `RUMP_RFFDG`: the new process gets a copy of the parent's descriptors.
pub const RUMP_RFFDG: i32 = 0x01;
/// `RUMP_RFCFDG`: the new process gets an empty descriptor table.
pub const RUMP_RFCFDG: i32 = 0x02;
/// `RUMP_RFFD_SHARE`: the new process shares the parent's table.
pub const RUMP_RFFD_SHARE: i32 = 0x00;

/// The opaque per-client argument: what the server passes as `client` to
/// `hyp_lwproc_rfork`, and what the kernel hands back to [`copyin`] and
/// friends (as `void *` in C). Null means "no client".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientHandle(pub usize);

impl ClientHandle {
    /// No client: a process of the host itself.
    pub const NULL: ClientHandle = ClientHandle(0);

    /// The handle as the `void *` C sees.
    pub fn as_ptr(self) -> *mut c_void {
        self.0 as *mut c_void
    }

    /// Whether this is [`ClientHandle::NULL`].
    pub fn is_null(self) -> bool {
        self.0 == 0
    }
}

impl From<*mut c_void> for ClientHandle {
    fn from(p: *mut c_void) -> ClientHandle {
        ClientHandle(p as usize)
    }
}

impl From<*const c_void> for ClientHandle {
    fn from(p: *const c_void) -> ClientHandle {
        ClientHandle(p as usize)
    }
}

/// Copy `dst.len()` bytes from the client's address `raddr` into `dst`
/// (a COPYIN request). Gives up the virtual CPU while waiting. Any failure
/// (client gone, address refused by the client, short answer) is `EFAULT`.
pub fn copyin(client: impl Into<ClientHandle>, raddr: u64, dst: &mut [u8]) -> Result<(), Errno> {
    server::copyin(client.into(), raddr, dst)
}

/// Copy a string of at most `dst.len()` bytes from the client (COPYINSTR).
/// Returns how many bytes the client sent (its NUL included when it fit);
/// finding the NUL is the caller's business, as in NetBSD's `copyinstr`.
pub fn copyinstr(
    client: impl Into<ClientHandle>,
    raddr: u64,
    dst: &mut [u8],
) -> Result<usize, Errno> {
    server::copyinstr(client.into(), raddr, dst)
}

/// Copy `src` to the client's address `raddr` (COPYOUT; the client sends no
/// answer, so only a broken connection is reported, as `EFAULT`).
pub fn copyout(client: impl Into<ClientHandle>, src: &[u8], raddr: u64) -> Result<(), Errno> {
    server::copyout(client.into(), src, raddr, wire::Type::Copyout)
}

/// Copy a string (`src`, its NUL included) to the client (COPYOUTSTR).
pub fn copyoutstr(client: impl Into<ClientHandle>, src: &[u8], raddr: u64) -> Result<(), Errno> {
    server::copyout(client.into(), src, raddr, wire::Type::Copyoutstr)
}

/// Ask the client to map `len` bytes of anonymous memory; returns the
/// address in the client (`ENOMEM` when it could not).
pub fn anonmmap(client: impl Into<ClientHandle>, len: usize) -> Result<u64, Errno> {
    server::anonmmap(client.into(), len)
}

/// Ask the client to raise NetBSD signal `signo` in itself.
pub fn raise(client: impl Into<ClientHandle>, signo: i32) -> Result<(), Errno> {
    server::raise(client.into(), signo)
}

/// Shut sysproxy down for a halt. If `client` is not null, the syscall it
/// is running (the halting `reboot`) is answered now — with success when
/// `error` is 0 (retval `{0, 0}`), else with NetBSD errno `error` (e.g. a
/// failed flush) — and its later real return is not sent. Then the
/// listener is closed, a `unix://` socket file removed, every connection
/// shut down (clients see EOF), and everything refused afterwards. When
/// this returns, the answer is in the socket: the process may `exit()` at
/// once. (`rumpuser_sp_fini(arg)` is `fini(arg, 0)`.)
pub fn fini(client: impl Into<ClientHandle>, error: i32) {
    server::fini(client.into(), error)
}
