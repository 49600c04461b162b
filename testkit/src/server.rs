//! Real `rump_server` processes for the `rumprun` package's integration
//! tests and benchmarks: each on a socket in a private directory, in the
//! foreground (the test owns the process), killed when dropped.
//!
//! The programs are the ones cargo built for the test run: they sit in the
//! target directory above the test executable (`target/debug/deps/..`),
//! where cargo puts a package's binaries before it runs that package's
//! integration tests. Only that package's tests may use this module.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

pub use rumpclient::Client;

/// Program `name` that cargo built beside this test executable. Panics
/// when it is not there (the caller is not one of its package's tests).
pub fn cargo_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let mut dir = exe
        .parent()
        .expect("the test executable's directory")
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let p = dir.join(name);
    assert!(
        p.is_file(),
        "{}: not built (only the tests and benchmarks of the package that has this program can start it)",
        p.display()
    );
    p
}

/// `rump.halt`, as installed: a symlink of that name to the `rump_halt`
/// binary cargo built (the program names itself after `argv[0]`).
pub fn rump_halt() -> PathBuf {
    static P: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    P.get_or_init(|| {
        let bin = cargo_bin("rump_halt");
        let dir = bin
            .parent()
            .expect("target directory")
            .join("tmp")
            .join(format!("bin.{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir for the rump.halt link");
        let link = dir.join("rump.halt");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(bin, &link).expect("symlink rump.halt");
        link
    })
    .clone()
}

/// A private directory for one test's sockets and images.
pub fn tmpdir() -> tempfile::TempDir {
    crate::tmp::tmpdir("rump-test.")
}

/// A `rump_server -s` (foreground, so the test owns the process) with its
/// socket in `dir`.
pub struct Server {
    /// The server process; `None` once it has been reaped.
    pub child: Option<Child>,
    /// Its sysproxy URL (`unix://` + [`Server::sock`]).
    pub url: String,
    /// Its socket file.
    pub sock: PathBuf,
    /// The directory it runs in (its working directory).
    pub dir: PathBuf,
}

/// How to start a [`Server`].
#[derive(Default)]
pub struct ServerOpts<'a> {
    /// Options before the URL.
    pub args: Vec<String>,
    /// Environment variables to add.
    pub env: Vec<(&'a str, String)>,
    /// Allow core dumps (RLIMIT_CORE unlimited) for `-d` tests.
    pub cores: bool,
    /// The server's standard error (default: the test's).
    pub stderr: Option<Stdio>,
}

impl Server {
    /// Start `rump_server -s ARGS unix://DIR/sock` and wait until it
    /// accepts a client.
    pub fn start(dir: &Path, args: &[&str]) -> Server {
        Self::start_with(
            dir,
            ServerOpts {
                args: args.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            },
        )
    }

    /// [`Server::start`] with environment and core-dump options.
    pub fn start_with(dir: &Path, o: ServerOpts) -> Server {
        Self::start_logged(dir, o, None)
    }

    /// [`Server::start_with`], its stderr into `log` (when given).
    pub fn start_logged(dir: &Path, mut o: ServerOpts, log: Option<&Path>) -> Server {
        let sock = dir.join("sock");
        let url = format!("unix://{}", sock.display());
        let mut cmd = Command::new(cargo_bin("rump_server"));
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

    /// A new client connection.
    pub fn client(&self) -> Client {
        Client::connect(&self.url).expect("connect to rump_server")
    }

    /// The server's pid (0 once reaped).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Wait for the server to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let st = crate::proc::wait_child(self.child.as_mut()?, timeout)?;
        self.child = None;
        Some(st)
    }

    /// Whether the server process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Send host signal `sig` to the server.
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

    /// Run `rump.halt ARGS` against this server.
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

/// Up to `len` bytes of the file at `path` from offset `off`.
pub fn read_at(path: &Path, off: u64, len: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path).expect("open image");
    let mut b = vec![0u8; len];
    let n = f.read_at(&mut b, off).expect("read image");
    b.truncate(n);
    b
}

/// A program's standard error, as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `mke2fs -t ext2` an image of `size` (`16M`…) with extra arguments.
pub fn mke2fs(img: &Path, args: &[&str], size: &str) {
    let o = crate::tools::host_cmd("mke2fs")
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
    let o = crate::tools::host_cmd("e2fsck")
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
    let o = crate::tools::host_cmd("debugfs")
        .arg("-R")
        .arg(format!("cat {path}"))
        .arg(img)
        .output()
        .expect("debugfs");
    assert!(o.status.success(), "debugfs: {}", stderr(&o));
    o.stdout
}
