//! Shared by the integration tests: real `rump_server` processes on
//! sockets in a private temporary directory, killed when dropped.

#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

pub use rumpclient::Client;

pub const RUMP_SERVER: &str = env!("CARGO_BIN_EXE_rump_server");
pub const RUMP_HALT: &str = env!("CARGO_BIN_EXE_rump_halt");
pub const RUMPCTL: &str = env!("CARGO_BIN_EXE_rumpctl");

/// `rump.halt`, as installed: a symlink of that name to the `rump_halt`
/// binary cargo built (the program names itself after `argv[0]`).
pub fn rump_halt() -> PathBuf {
    static P: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    P.get_or_init(|| {
        let dir =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("bin.{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir for the rump.halt link");
        let link = dir.join("rump.halt");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(RUMP_HALT, &link).expect("symlink rump.halt");
        link
    })
    .clone()
}

/// A private directory for one test's sockets and images.
pub fn tmpdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("rump-test.")
        .tempdir()
        .expect("temporary directory")
}

/// A `rump_server -s` (foreground, so the test owns the process) with its
/// socket in `dir`.
pub struct Server {
    pub child: Option<Child>,
    pub url: String,
    pub sock: PathBuf,
    pub dir: PathBuf,
}

#[derive(Default)]
pub struct ServerOpts<'a> {
    pub args: Vec<String>,
    pub env: Vec<(&'a str, String)>,
    /// Allow core dumps (RLIMIT_CORE unlimited) for `-d` tests.
    pub cores: bool,
    /// The server's standard error (default: the test's).
    pub stderr: Option<Stdio>,
}

impl Server {
    pub fn start(dir: &Path, args: &[&str]) -> Server {
        Self::start_with(
            dir,
            ServerOpts {
                args: args.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            },
        )
    }

    pub fn start_with(dir: &Path, o: ServerOpts) -> Server {
        Self::start_logged(dir, o, None)
    }

    /// [`Server::start_with`], its stderr into `log` (when given).
    pub fn start_logged(dir: &Path, mut o: ServerOpts, log: Option<&Path>) -> Server {
        let sock = dir.join("sock");
        let url = format!("unix://{}", sock.display());
        let mut cmd = Command::new(RUMP_SERVER);
        cmd.arg("-s")
            .args(&o.args)
            .arg(&url)
            .current_dir(dir)
            .stdin(Stdio::null());
        if let Some(l) = log {
            cmd.stderr(std::fs::File::create(l).expect("server log file"));
        }
        if let Some(e) = o.stderr.take() {
            cmd.stderr(e);
        }
        for (k, v) in &o.env {
            cmd.env(k, v);
        }
        if o.cores {
            // SAFETY: setrlimit is async-signal-safe and touches only the
            // child between fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    use nix::sys::resource::{setrlimit, Resource, RLIM_INFINITY};
                    let _ = setrlimit(Resource::RLIMIT_CORE, RLIM_INFINITY, RLIM_INFINITY);
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().expect("spawn rump_server");
        let mut s = Server {
            child: Some(child),
            url,
            sock,
            dir: dir.to_path_buf(),
        };
        s.wait_ready();
        s
    }

    fn wait_ready(&mut self) {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(20) {
            if Client::connect(&self.url).is_ok() {
                return;
            }
            if let Some(st) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("rump_server exited during start-up: {st}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("rump_server did not come up on {}", self.url);
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.url).expect("connect to rump_server")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Wait for the server to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let t = Instant::now();
        loop {
            if let Some(st) = self.child.as_mut()?.try_wait().ok().flatten() {
                self.child = None;
                return Some(st);
            }
            if t.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.pid() as i32, sig);
        }
    }

    /// Run a tool against this server.
    pub fn tool(&self, exe: &str, args: &[&str]) -> Output {
        Command::new(exe)
            .args(args)
            .env("RUMP_SERVER", &self.url)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .expect("run tool")
    }

    pub fn halt(&self, args: &[&str]) -> Output {
        self.tool(rump_halt().to_str().expect("UTF-8 path"), args)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A deterministic pattern, different per seed.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub fn read_at(path: &Path, off: u64, len: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path).expect("open image");
    let mut b = vec![0u8; len];
    let n = f.read_at(&mut b, off).expect("read image");
    b.truncate(n);
    b
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A host program the tests need (`mke2fs`, `e2fsck`, `debugfs`, `gdb`,
/// ...): found in `PATH`, else in `/sbin` or `/usr/sbin` (where e2fsprogs
/// lives, often outside a user's `PATH`). A missing one fails the test
/// with a message naming the program and the package to install, never a
/// skip.
pub fn host_tool(name: &str) -> PathBuf {
    if let Some(p) = find_tool(name) {
        return p;
    }
    let pkg = match name {
        "mke2fs" | "mkfs.ext4" | "e2fsck" | "debugfs" | "tune2fs" | "dumpe2fs" => "e2fsprogs",
        "gdb" => "gdb",
        "nm" | "readelf" | "objcopy" | "strip" => "binutils",
        "cc" => "gcc",
        "man" => "man-db",
        "systemd-analyze" => "systemd",
        _ => name,
    };
    panic!("{name}: not found in PATH, /sbin or /usr/sbin: this test needs it (install {pkg}; .ci/run does)")
}

/// Host program `name` in PATH, /sbin or /usr/sbin, if it is there.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = std::env::split_paths(&path).chain(["/sbin", "/usr/sbin"].map(PathBuf::from));
    dirs.find_map(|d| Some(d.join(name)).filter(|p| p.is_file()))
}

/// `Command::new` for a [`host_tool`].
pub fn host_cmd(name: &str) -> Command {
    Command::new(host_tool(name))
}

/// `mke2fs -t ext2` an image of `size` (`16M`…) with extra arguments.
pub fn mke2fs(img: &Path, args: &[&str], size: &str) {
    let o = host_cmd("mke2fs")
        .args(["-q", "-F", "-t", "ext2"])
        .args(args)
        .arg(img)
        .arg(size)
        .env("MKE2FS_CONFIG", "/dev/null")
        .output()
        .expect("mke2fs");
    assert!(o.status.success(), "mke2fs: {}", stderr(&o));
}

/// `e2fsck -fn` finds no problem.
pub fn e2fsck_clean(img: &Path) {
    let o = host_cmd("e2fsck")
        .arg("-fn")
        .arg(img)
        .output()
        .expect("e2fsck");
    assert!(
        o.status.success(),
        "e2fsck -fn found problems ({:?}):\n{}{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
}

/// A file's bytes as `debugfs` reads them from the image.
pub fn debugfs_cat(img: &Path, path: &str) -> Vec<u8> {
    let o = host_cmd("debugfs")
        .arg("-R")
        .arg(format!("cat {path}"))
        .arg(img)
        .output()
        .expect("debugfs");
    assert!(o.status.success(), "debugfs: {}", stderr(&o));
    o.stdout
}

/// Whether process `pid` still runs. A zombie leader counts as gone only
/// once its other threads are: until the last one exits, the process
/// still holds its files (a FUSE daemon's image and its lock).
pub fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            let zombie = s
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z');
            let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
                .map(|d| d.count())
                .unwrap_or(0);
            !zombie || threads > 1
        }
        Err(_) => false,
    }
}
