//! `rumpctl fuse [-f] [-o ro] [path] mountpoint`: a running server's tree
//! (or subtree) on the host; `umount mountpoint` ends it.
//!
//! rumpctl parses the command line (with the other tools' getopt) into a
//! [`FuseArgs`]; this crate only mounts and serves.

/// A message on standard error that cannot panic (`eprintln!` does when
/// standard error is closed or full): a line that cannot be written is
/// dropped.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fuser::{Config, MountOption, SessionACL};

use crate::host;
use crate::sys::RemoteBackend;
use crate::{Options, RumpFuse};

/// What `rumpctl fuse` mounts, and how: its command line, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FuseArgs {
    /// The kernel path whose tree is mounted (`/` for the whole tree), as
    /// bytes: kernel names are any bytes but NUL, and go to the server as
    /// they are.
    pub path: Vec<u8>,
    /// The host directory to mount it on.
    pub mountpoint: PathBuf,
    /// Refuse writes (`-r`, `-o ro`).
    pub read_only: bool,
    /// Serve in this process rather than in a child that outlives the
    /// command once the mount is live (`-f`).
    pub foreground: bool,
}

/// Mount `args.path` of the server `RUMP_SERVER` names on
/// `args.mountpoint` and serve it until it is unmounted (in the
/// background unless `args.foreground`); returns the exit status.
/// Messages start with `prog`.
pub fn rumpctl_fuse(prog: &str, args: &FuseArgs) -> i32 {
    let (ro, fg) = (args.read_only, args.foreground);
    let kpath = &args.path;
    let mnt_path = args.mountpoint.as_path();
    // Names for messages and the mount table.
    let path = host::show(kpath);
    let mnt = host::show(mnt_path.as_os_str().as_bytes());
    let mnt_abs = match host::check_mountpoint(mnt_path) {
        Ok(p) => p,
        Err(m) => {
            say!("{prog}: {m}");
            return 1;
        }
    };
    // SAFETY: no thread exists yet: nothing above starts one (argument
    // parsing and the mount point check), and the kernel boots below.
    let ready = match unsafe { host::background(fg) } {
        Ok(r) => r,
        Err(e) => {
            say!("{prog}: fork: {e}");
            return 1;
        }
    };
    let set = host::block_signals();
    let client = match rumpclient::Client::from_env() {
        Ok(c) => c,
        Err(e) => {
            say!("{prog}: {e}");
            return 1;
        }
    };
    // Without a reconnect policy the mount ends with its server: a second
    // connection that only waits sees the server go (a halt closes every
    // connection) and unmounts. With one (RUMPCLIENT_RETRYCONNECT), the
    // mount stays and its requests reconnect once a server is back.
    let watcher = if client.conn_retry() == rumpclient::ConnRetry::Never {
        match rumpclient::Client::from_env() {
            Ok(w) => Some(w),
            Err(e) => {
                say!("{prog}: {e}");
                return 1;
            }
        }
    } else {
        None
    };
    let url = client.url().to_string();
    let backend = RemoteBackend(Arc::new(netbsd_abi::AsErrno(client)));
    // Other clients may change the tree: short timeouts, no write-back.
    let o = Options {
        read_only: ro,
        ttl: Duration::from_secs(1),
        writeback: false,
    };
    // The server may be NetBSD's kernel (rump_server -l): no single read
    // or write above its MAXPHYS (64 KiB; its UDF asserts on more).
    let fs = match RumpFuse::new(backend, kpath, o) {
        Ok(f) => f.max_io(64 << 10),
        Err(e) => {
            say!("{prog}: {path}: {}", e.description());
            return 1;
        }
    };
    let mut cfg = Config::default();
    cfg.mount_options = vec![
        MountOption::FSName(format!("rump:{path}")),
        MountOption::Subtype("rump".into()),
        MountOption::DefaultPermissions,
        if ro { MountOption::RO } else { MountOption::RW },
    ];
    // SAFETY: geteuid has no preconditions.
    cfg.acl = if unsafe { libc::geteuid() } == 0 {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    cfg.n_threads = Some(1);
    let session = match fuser::Session::new(fs, &mnt_abs, &cfg) {
        Ok(s) => s,
        Err(e) => {
            say!("{prog}: {mnt}: {}", e);
            return 1;
        }
    };
    // As rump_ext2fs does: READs of 1 MiB, not the host's 128 KiB.
    let _ = host::set_readahead(&mnt_abs);
    let m2 = mnt_abs.clone();
    std::thread::spawn(move || {
        host::wait_signal(&set);
        let _ = host::unmount(&m2);
    });
    if let Some(w) = watcher {
        let m3 = mnt_abs.clone();
        let prog = prog.to_string();
        std::thread::spawn(move || {
            w.wait_lost();
            say!(
                "{prog}: {url}: the server went away: unmounting {}",
                host::show(m3.as_os_str().as_bytes())
            );
            if let Err(e) = host::unmount(&m3) {
                say!("{prog}: {e}");
            }
        });
    }
    ready.ok();
    match session.run() {
        Ok(()) => 0,
        Err(e) => {
            say!("{prog}: {mnt}: {e}");
            1
        }
    }
}
