//! `cargo xtask bench halt`: time from `rump.halt` to the server's exit
//! with 16, 64 and 256 MiB dirty in the cache, beside `dd bs=1M
//! conv=fsync` of the same bytes on the same file system.

use rumpclient::Syscalls as _;
use std::process::Command;
use std::time::{Duration, Instant};

use netbsd_abi::fcntl::O_RDWR;
use testkit::bench::*;

/// `rump_halt`, as cargo built it for this benchmark.
const RUMP_HALT: &str = env!("CARGO_BIN_EXE_rump_halt");

fn main() {
    let sizes: Vec<usize> = std::env::var("BENCH_HALT_MIB")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.parse().ok()).collect())
        .unwrap_or_else(|| vec![16, 64, 256]);
    println!("halt: rump.halt -> server exit, with N MiB dirty");
    for mib in sizes {
        let bytes = mib * MIB;
        let d = tmpdir();
        let floor = dd_seconds(&d.path().join("floor"), MIB, bytes);
        let _ = std::fs::remove_file(d.path().join("floor"));

        let img = d.path().join("img");
        let mut b = Bench::start(
            d.path(),
            &[
                "-r".into(),
                format!("{}", 2 * bytes + (64 << 20)),
                "-d".into(),
                format!("key=/dk,hostpath={},size={}", img.display(), bytes),
            ],
        );
        {
            let c = rumpclient::Client::connect(&b.url).expect("connect");
            let fd = c.open("/dk", O_RDWR, 0).expect("open");
            let buf = vec![0x5au8; MIB];
            for i in 0..mib {
                c.pwrite(fd, &buf, (i * MIB) as i64).expect("pwrite");
            }
        }
        let t = Instant::now();
        let o = Command::new(RUMP_HALT)
            .env("RUMP_SERVER", &b.url)
            .output()
            .expect("rump.halt");
        assert!(
            o.status.success(),
            "rump.halt: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        loop {
            if b.child.try_wait().ok().flatten().is_some() {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(300),
                "server did not exit"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let halt = t.elapsed().as_secs_f64();
        println!(
            "  {mib:4} MiB: halt {:7.1} ms   dd {:7.1} ms   ratio {:.2}x   (target <= 1.2x dd + 50 ms = {:.1} ms)",
            halt * 1e3,
            floor * 1e3,
            halt / floor,
            (1.2 * floor + 0.05) * 1e3
        );
    }
}
