//! `cargo xtask bench kernel`: 64 KiB sequential write (+sync) and read
//! of 256 MiB through rump_server to a blk drive, beside `dd bs=64k
//! conv=fsync` on the same file system; null-syscall latency beside a raw
//! unix-socket ping-pong of the same byte counts (24 bytes out, 48 back:
//! a getpid request frame and its response), measured in the same run.

#[path = "bench_common.rs"]
mod bench_common;

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use bench_common::*;
use netbsd_abi::fcntl::O_RDWR;
use netbsd_abi::sp::{HDRSZ, SYSRESP_LEN};

/// A raw server: read `req` bytes, answer `resp` bytes, until EOF.
fn raw_server(l: UnixListener, req: usize, resp: usize) {
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = l.accept() {
            let mut rb = vec![0u8; req];
            let wb = vec![0u8; resp];
            while s.read_exact(&mut rb).is_ok() {
                if s.write_all(&wb).is_err() {
                    return;
                }
            }
        }
    });
}

fn median_us(v: &mut [Duration]) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e6
}

fn main() {
    let total: usize = std::env::var("BENCH_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(256) * MIB;
    let chunk = 64 * 1024;
    let d = tmpdir();

    // dd's fsync time swings with the host disk: measure it before and
    // after the server run and keep the faster (the stricter floor).
    let dd = || {
        let t = dd_seconds(&d.path().join("floor"), chunk, total);
        let _ = std::fs::remove_file(d.path().join("floor"));
        t
    };
    let mut floor = dd();

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

    // The same writes again, over blocks now cached (clean): no fresh
    // memory to fault in, so this is the syscall path's own cost.
    let t = Instant::now();
    for i in 0..total / chunk {
        c.pwrite(fd, &buf, (i * chunk) as i64).expect("pwrite");
    }
    let rewrite = t.elapsed().as_secs_f64();

    let mut rbuf = vec![0u8; chunk];
    let t = Instant::now();
    for i in 0..total / chunk {
        c.pread(fd, &mut rbuf, (i * chunk) as i64).expect("pread");
    }
    let read = t.elapsed().as_secs_f64();

    // Null syscall against the floor: a raw unix-socket ping-pong with a
    // getpid's byte counts (request header; response header + SysResp).
    // Rounds alternate; the best round of each counts.
    let (req_len, resp_len) = (HDRSZ, HDRSZ + SYSRESP_LEN);
    let pp_path = d.path().join("pingpong.sock");
    raw_server(UnixListener::bind(&pp_path).expect("bind ping-pong"), req_len, resp_len);
    let mut pp = UnixStream::connect(&pp_path).expect("connect ping-pong");
    let req = vec![0u8; req_len];
    let mut resp = vec![0u8; resp_len];
    for _ in 0..2000 {
        c.getpid().expect("getpid");
        pp.write_all(&req).expect("ping");
        pp.read_exact(&mut resp).expect("pong");
    }
    let n = 5_000;
    let mut samples = vec![Duration::ZERO; n];
    let (mut floor_med, mut floor_mean, mut null_med, mut null_mean) = (f64::MAX, f64::MAX, f64::MAX, f64::MAX);
    for _ in 0..4 {
        let t0 = Instant::now();
        for s in samples.iter_mut() {
            let t = Instant::now();
            pp.write_all(&req).expect("ping");
            pp.read_exact(&mut resp).expect("pong");
            *s = t.elapsed();
        }
        floor_mean = floor_mean.min(t0.elapsed().as_secs_f64() * 1e6 / n as f64);
        floor_med = floor_med.min(median_us(&mut samples));
        let t0 = Instant::now();
        for s in samples.iter_mut() {
            let t = Instant::now();
            c.getpid().expect("getpid");
            *s = t.elapsed();
        }
        null_mean = null_mean.min(t0.elapsed().as_secs_f64() * 1e6 / n as f64);
        null_med = null_med.min(median_us(&mut samples));
    }
    drop(pp);
    floor = floor.min(dd());

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
    println!(
        "    rewrite of cached blocks    {:8.1} MiB/s ({:.1} us per 64 KiB; no new cache memory)",
        mib_s(total, rewrite),
        rewrite * 1e6 / (total / chunk) as f64
    );
    println!("  read via rump_server          {:8.1} MiB/s", mib_s(total, read));
    println!(
        "  floor: raw unix ping-pong {req_len}/{resp_len} B  {:8.2} us   (mean {:.2} us)",
        floor_med, floor_mean
    );
    println!(
        "  null syscall (getpid)         {:8.2} us   ratio {:.2}x the floor (target <= 2x; mean {:.2} us, {:.2}x)",
        null_med,
        null_med / floor_med,
        null_mean,
        null_mean / floor_mean
    );
}
