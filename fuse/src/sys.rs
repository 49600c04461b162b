//! Where the FUSE adapter's calls go: a [`Backend`] hands out, per caller,
//! a process whose typed calls are the one [`Syscalls`] façade: the
//! in-process kernel ([`rumpkern::LocalProc`], a process per caller) or
//! sysproxy ([`rumpclient::Client`]). Errors are NetBSD errno values.

use std::collections::HashMap;
use std::sync::Arc;

use netbsd_abi::stat::Timespec;
pub use netbsd_abi::Syscalls;
use netbsd_abi::{AsErrno, Errno};
use parking_lot::RwLock;
use rumpclient::Client;
use rumpkern::vfs::Cred;
use rumpkern::{Kernel, LocalProc};

/// A system call's result: NetBSD errno values, as the kernel returns them.
pub type R<T> = Result<T, Errno>;

/// Where the adapter gets the process for a request's caller.
pub trait Backend: Send + Sync + 'static {
    /// One process's system calls, answered with NetBSD errno values
    /// (paths are bytes, absolute, without NUL). Named statically, so the
    /// hot calls (read, write) are direct calls.
    type Proc: Syscalls<Error = Errno> + Send + Sync + 'static;
    /// The process that acts for caller `uid`/`gid`, so that the kernel
    /// checks permissions as that user would be checked.
    fn caller(&self, uid: u32, gid: u32) -> R<Arc<Self::Proc>>;
    /// The same, with supplementary groups (a path that knows no groups
    /// has its plain caller).
    fn caller_in_groups(&self, uid: u32, gid: u32, _groups: &[u32]) -> R<Arc<Self::Proc>> {
        self.caller(uid, gid)
    }
}

// ----- the in-process kernel -----

/// The in-process kernel: one kernel process per (uid, gid) that makes
/// requests, so the kernel checks each caller's own credentials.
pub struct LocalBackend {
    kernel: Arc<Kernel>,
    procs: RwLock<HashMap<CallerKey, Arc<LocalProc>>>,
}

/// A caller: uid, gid and supplementary groups (sorted; empty: none known).
type CallerKey = (u32, u32, Vec<u32>);

/// Distinct callers kept; beyond, the table starts over (open files keep
/// their process alive through their handles).
const MAX_CALLERS: usize = 256;

impl LocalBackend {
    /// A backend whose processes live in `kernel`, in this host process.
    pub fn new(kernel: Arc<Kernel>) -> LocalBackend {
        LocalBackend {
            kernel,
            procs: RwLock::new(HashMap::new()),
        }
    }
}

impl Backend for LocalBackend {
    type Proc = LocalProc;
    fn caller(&self, uid: u32, gid: u32) -> R<Arc<LocalProc>> {
        self.caller_in_groups(uid, gid, &[])
    }

    fn caller_in_groups(&self, uid: u32, gid: u32, groups: &[u32]) -> R<Arc<LocalProc>> {
        let mut groups = groups.to_vec();
        groups.sort_unstable();
        groups.dedup();
        groups.retain(|&g| g != gid);
        groups.truncate(rumpkern::NGROUPS_MAX);
        let key = (uid, gid, groups);
        if let Some(p) = self.procs.read().get(&key) {
            return Ok(p.clone());
        }
        let p = Arc::new(
            self.kernel
                .local_process_in_groups(Cred { uid, gid }, &key.2)?,
        );
        let mut t = self.procs.write();
        if t.len() >= MAX_CALLERS {
            t.clear();
        }
        Ok(t.entry(key).or_insert(p).clone())
    }
}

// ----- a running server, over sysproxy -----

/// A sysproxy connection: one kernel process, root's credentials as NetBSD
/// gives every sysproxy client; a lost connection answers `ENOTCONN`.
pub type Remote = AsErrno<Client>;

/// A running server: every request goes through the one connection.
pub struct RemoteBackend(pub Arc<Remote>);

impl Backend for RemoteBackend {
    type Proc = Remote;
    fn caller(&self, _uid: u32, _gid: u32) -> R<Arc<Remote>> {
        Ok(self.0.clone())
    }
}

/// Convert a kernel time to the host's.
pub fn systime(t: Timespec) -> std::time::SystemTime {
    use std::time::{Duration, UNIX_EPOCH};
    let ns = t.nsec.clamp(0, 999_999_999) as u32;
    if t.sec >= 0 {
        UNIX_EPOCH
            .checked_add(Duration::new(t.sec as u64, ns))
            .unwrap_or(UNIX_EPOCH)
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::new(t.sec.unsigned_abs(), 0))
            .unwrap_or(UNIX_EPOCH)
    }
}
