//! Sysproxy benchmark (`cargo xtask bench sysproxy`, i.e.
//! `cargo bench -p rumpclient --bench sysproxy`).
//!
//! The server runs in this process with a stand-in kernel; the client is
//! `rumpclient` over `unix://`. Each figure sits beside a floor measured in
//! the same run over the same kind of socket:
//!
//! * null syscall (`getpid`: 24 bytes out, 48 back) against a raw
//!   unix-socket ping-pong of the same byte counts — target ≤ 2×;
//! * 64 KiB copyin throughput (a write-like syscall whose server side
//!   copies in 64 KiB) against a raw transfer of 64 KiB answered by a
//!   small ack — target ≥ 0.5×.
//!
//! Rounds alternate between the floor and the real thing; the best round
//! of each counts (the machine is shared).
//!
//! Environment: `SP_BENCH_ITERS` (null-syscall iterations per round,
//! default 20000), `SP_BENCH_ROUNDS` (default 5).

use rumpclient::Syscalls as _;
use testkit::standin;

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use rumpclient::{addr_of, Client, Region};

fn env(name: &str, d: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// A raw server: read `req` bytes, answer `resp` bytes, forever.
fn raw_server(l: UnixListener, req: usize, resp: usize) {
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut rb = vec![0u8; req];
                let wb = vec![0u8; resp];
                while s.read_exact(&mut rb).is_ok() {
                    if s.write_all(&wb).is_err() {
                        return;
                    }
                }
            });
        }
    });
}

fn main() {
    // `cargo bench` passes --bench; any other filter argument that does
    // not name us means "not this one".
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if !args.is_empty() && !args.iter().any(|a| "sysproxy".contains(a.as_str())) {
        return;
    }
    let iters = env("SP_BENCH_ITERS", 20000);
    let rounds = env("SP_BENCH_ROUNDS", 5);
    let dir = std::env::temp_dir().join(format!("sysproxy-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();

    standin::install();
    let sock = dir.join("sp.sock");
    let url = format!("unix://{}", sock.display());
    rumpuser::sp::init(&url, "NetBSD", "7.99.34", "amd64").expect("sp::init");
    let c = Client::connect(&url).expect("connect");

    // Floors.
    let p1 = dir.join("pingpong.sock");
    raw_server(UnixListener::bind(&p1).unwrap(), 24, 48);
    let mut pp = UnixStream::connect(&p1).unwrap();
    const BULK: usize = 64 * 1024;
    let p2 = dir.join("bulk.sock");
    raw_server(UnixListener::bind(&p2).unwrap(), BULK, 8);
    let mut bulk = UnixStream::connect(&p2).unwrap();

    let req = [0u8; 24];
    let mut resp = [0u8; 48];
    let data: Vec<u8> = (0..BULK).map(|i| i as u8).collect();
    let mut ack = [0u8; 8];
    let bulk_iters = (iters / 10).max(200);

    // Warm up everything.
    for _ in 0..2000 {
        c.getpid().unwrap();
        pp.write_all(&req).unwrap();
        pp.read_exact(&mut resp).unwrap();
    }
    for _ in 0..200 {
        c.syscall(
            standin::SYS_SINK,
            &[addr_of(&data), BULK as u64],
            &mut [Region::In(&data)],
        )
        .unwrap();
        bulk.write_all(&data).unwrap();
        bulk.read_exact(&mut ack).unwrap();
    }

    let (mut best_floor, mut best_null) = (Duration::MAX, Duration::MAX);
    let (mut best_floor_mean, mut best_null_mean) = (f64::MAX, f64::MAX);
    let (mut best_bulk_floor, mut best_bulk) = (0f64, 0f64);
    let mut samples = vec![Duration::ZERO; iters];
    for _ in 0..rounds {
        let t0 = Instant::now();
        for s in samples.iter_mut() {
            let t = Instant::now();
            pp.write_all(&req).unwrap();
            pp.read_exact(&mut resp).unwrap();
            *s = t.elapsed();
        }
        best_floor_mean = best_floor_mean.min(us(t0.elapsed()) / iters as f64);
        best_floor = best_floor.min(median(&mut samples));

        let t0 = Instant::now();
        for s in samples.iter_mut() {
            let t = Instant::now();
            c.getpid().unwrap();
            *s = t.elapsed();
        }
        best_null_mean = best_null_mean.min(us(t0.elapsed()) / iters as f64);
        best_null = best_null.min(median(&mut samples));

        let t0 = Instant::now();
        for _ in 0..bulk_iters {
            bulk.write_all(&data).unwrap();
            bulk.read_exact(&mut ack).unwrap();
        }
        let mibs = (bulk_iters * BULK) as f64 / (1 << 20) as f64 / t0.elapsed().as_secs_f64();
        best_bulk_floor = best_bulk_floor.max(mibs);

        let t0 = Instant::now();
        for _ in 0..bulk_iters {
            let r = c
                .syscall(
                    standin::SYS_SINK,
                    &[addr_of(&data), BULK as u64],
                    &mut [Region::In(&data)],
                )
                .unwrap();
            assert_eq!(r[0] as usize, BULK);
        }
        let mibs = (bulk_iters * BULK) as f64 / (1 << 20) as f64 / t0.elapsed().as_secs_f64();
        best_bulk = best_bulk.max(mibs);
    }

    println!("sysproxy bench ({rounds} rounds, best of each; {iters} null calls, {bulk_iters} x 64 KiB per round)");
    println!(
        "  floor: raw unix ping-pong 24/48 B      median {:7.2} us  mean {:7.2} us",
        us(best_floor),
        best_floor_mean
    );
    println!(
        "  null syscall (getpid) over unix://     median {:7.2} us  mean {:7.2} us",
        us(best_null),
        best_null_mean
    );
    println!(
        "  null syscall ratio                     median {:.2}x  mean {:.2}x  (target <= 2x)",
        us(best_null) / us(best_floor),
        best_null_mean / best_floor_mean
    );
    println!(
        "  floor: raw unix 64 KiB + ack           {:8.1} MiB/s",
        best_bulk_floor
    );
    println!(
        "  64 KiB copyin syscall                  {:8.1} MiB/s",
        best_bulk
    );
    println!(
        "  copyin throughput ratio                {:.2}x  (target >= 0.5x)",
        best_bulk / best_bulk_floor
    );
    drop(c);
    let _ = std::fs::remove_dir_all(&dir);
}
