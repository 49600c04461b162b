//! Shared by the server benchmarks: a foreground rump_server in a temp
//! dir, and the host floors (dd) measured in the same run.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const RUMP_SERVER: &str = env!("CARGO_BIN_EXE_rump_server");
pub const RUMP_HALT: &str = env!("CARGO_BIN_EXE_rump_halt");
pub const MIB: usize = 1 << 20;

pub struct Bench {
    pub child: Child,
    pub url: String,
    pub dir: PathBuf,
}

impl Bench {
    pub fn start(dir: &Path, args: &[String]) -> Bench {
        let url = format!("unix://{}", dir.join("sock").display());
        let child = Command::new(RUMP_SERVER)
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

pub fn mib_s(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / MIB as f64 / secs
}

pub fn tmpdir() -> tempfile::TempDir {
    // Same file system as the tests' images: the floor must share it.
    tempfile::Builder::new()
        .prefix("rump-bench.")
        .tempdir()
        .expect("tempdir")
}
