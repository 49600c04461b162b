//! `cargo xtask bench kernel`: 64 KiB sequential write (+sync) and read
//! of 256 MiB through rump_server to a blk drive, beside `dd bs=64k
//! conv=fsync` on the same file system; null-syscall latency.

#[path = "bench_common.rs"]
mod bench_common;

use std::time::Instant;

use bench_common::*;
use netbsd_abi::fcntl::O_RDWR;

fn main() {
    let total: usize = std::env::var("BENCH_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(256) * MIB;
    let chunk = 64 * 1024;
    let d = tmpdir();

    let floor = dd_seconds(&d.path().join("floor"), chunk, total);
    let _ = std::fs::remove_file(d.path().join("floor"));

    let img = d.path().join("img");
    let b = Bench::start(
        d.path(),
        &["-r".into(), format!("{}", 2 * total), "-d".into(), format!("key=/dk,hostpath={},size={}", img.display(), total)],
    );
    let c = rumpclient::Client::connect(&b.url).expect("connect");
    let fd = c.open("/dk", O_RDWR, 0).expect("open /dk");
    let buf = vec![0xa5u8; chunk];
    let t = Instant::now();
    for i in 0..total / chunk {
        c.pwrite(fd, &buf, (i * chunk) as i64).expect("pwrite");
    }
    let writes_only = t.elapsed().as_secs_f64();
    c.sync().expect("sync");
    let write = t.elapsed().as_secs_f64();

    let mut rbuf = vec![0u8; chunk];
    let t = Instant::now();
    for i in 0..total / chunk {
        c.pread(fd, &mut rbuf, (i * chunk) as i64).expect("pread");
    }
    let read = t.elapsed().as_secs_f64();

    let n = 20_000;
    let t = Instant::now();
    for _ in 0..n {
        c.getpid().expect("getpid");
    }
    let null_us = t.elapsed().as_secs_f64() * 1e6 / n as f64;

    println!("kernel: {} MiB in 64 KiB chunks to a blk drive", total / MIB);
    println!("  dd bs=64k conv=fsync (floor)  {:8.1} MiB/s", mib_s(total, floor));
    println!(
        "  write + sync via rump_server  {:8.1} MiB/s   time ratio {:.2}x the floor (target <= 2x)",
        mib_s(total, write),
        write / floor
    );
    println!(
        "    of which pwrite calls       {:8.1} MiB/s ({:.1} us per 64 KiB), sync {:.1} ms",
        mib_s(total, writes_only),
        writes_only * 1e6 / (total / chunk) as f64,
        (write - writes_only) * 1e3
    );
    println!("  read via rump_server          {:8.1} MiB/s", mib_s(total, read));
    println!("  null syscall (getpid)         {:8.2} us", null_us);
}
