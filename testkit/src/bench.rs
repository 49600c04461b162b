//! Shared by the server benchmarks (the `rumprun` package's): a
//! foreground `rump_server` in a temporary directory, and the host floors
//! (dd) measured in the same run, so each figure sits beside what the
//! host itself does on the same machine at the same moment.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::server::cargo_bin;

/// One mebibyte.
pub const MIB: usize = 1 << 20;

/// A `rump_server -s` under measurement, killed when dropped.
pub struct Bench {
    /// The server process.
    pub child: Child,
    /// Its sysproxy URL.
    pub url: String,
    /// The directory it runs in.
    pub dir: PathBuf,
}

impl Bench {
    /// Start `rump_server -s ARGS unix://DIR/sock` and wait until it
    /// accepts a client.
    pub fn start(dir: &Path, args: &[String]) -> Bench {
        let url = format!("unix://{}", dir.join("sock").display());
        let child = Command::new(cargo_bin("rump_server"))
            .arg("-s")
            .args(args)
            .arg(&url)
            .current_dir(dir)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn rump_server");
        let t = Instant::now();
        while rumpclient::Client::connect(&url).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "rump_server did not come up"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Bench {
            child,
            url,
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `dd if=/dev/zero of=FILE bs=BS count=N conv=fsync`: the host floor.
pub fn dd_seconds(file: &Path, bs: usize, bytes: usize) -> f64 {
    let t = Instant::now();
    let st = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", file.display()))
        .arg(format!("bs={bs}"))
        .arg(format!("count={}", bytes / bs))
        .arg("conv=fsync")
        .stderr(Stdio::null())
        .status()
        .expect("dd");
    assert!(st.success(), "dd failed");
    t.elapsed().as_secs_f64()
}

/// Throughput in MiB/s.
pub fn mib_s(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / MIB as f64 / secs
}

/// A private directory for a benchmark's socket and images.
pub fn tmpdir() -> tempfile::TempDir {
    // Same file system as the tests' images: the floor must share it.
    tempfile::Builder::new()
        .prefix("rump-bench.")
        .tempdir()
        .expect("tempdir")
}
