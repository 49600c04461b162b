//! `cargo xtask bench kernel`: the remote data path beside the socket
//! floor, measured in the same run, twice: with this process (and the
//! rump_server and floor threads it starts) pinned to one CPU, and
//! unpinned.
//!
//! - null syscall (getpid) against a raw unix-socket ping-pong of the same
//!   byte counts (a 24-byte request frame out, 48 bytes back);
//! - 64 KiB pwrite to a `blk` drive (over cached blocks: the syscall
//!   path's own cost) against a raw 64 KiB + ack ping-pong (the bytes of
//!   our request frame out, 48 back);
//! - 64 KiB sequential write (+ sync) of fresh blocks beside `dd bs=64k
//!   conv=fsync` on the same file system, and reads.
//!
//! - with `RUMP_NETBSD_DIR` (and a C compiler): the exec handshake of
//!   NetBSD's own `librumpclient` (`rumpclient_exec`, a chain of images on
//!   one connection) against NetBSD's `rump_server` and against ours.
//!
//! Each figure is the median of several alternating rounds (floor, ours,
//! floor, ...), with the spread (min..max of the round medians); each
//! ratio is the median of the per-round ratios (a round's figure against
//! the floor measured right beside it), with their spread.

use rumpclient::Syscalls as _;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Instant;

use netbsd_abi::fcntl::O_RDWR;
use netbsd_abi::sp::{COPYDATA_LEN, HDRSZ, INLINE_HDR_LEN, SYSRESP_LEN};
use testkit::bench::*;

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

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Median, min and max of round figures.
struct Fig {
    med: f64,
    lo: f64,
    hi: f64,
}

fn fig(mut v: Vec<f64>) -> Fig {
    let m = median(&mut v);
    Fig {
        med: m,
        lo: v[0],
        hi: v[v.len() - 1],
    }
}

impl std::fmt::Display for Fig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:8.2} us ({:.2}..{:.2})", self.med, self.lo, self.hi)
    }
}

/// Per-operation median in µs of `n` timed calls of `op`.
fn per_op_us(n: usize, mut op: impl FnMut()) -> f64 {
    let mut s = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        op();
        s.push(t.elapsed().as_secs_f64() * 1e6);
    }
    median(&mut s)
}

/// Pin the calling thread (and what it starts from now on: threads and
/// child processes inherit its mask) to CPU 0, or let it run anywhere.
fn set_pinned(pinned: bool) {
    // SAFETY: cpu_set_t is plain data; zeroed is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let n = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .max(1);
    let ncpu = if pinned {
        1
    } else {
        (n * 4).min(libc::CPU_SETSIZE as usize)
    };
    for i in 0..ncpu {
        // SAFETY: i < CPU_SETSIZE; `set` is a valid cpu_set_t.
        unsafe { libc::CPU_SET(i, &mut set) };
    }
    // SAFETY: sched_setaffinity on this thread with a valid set.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    assert!(
        r == 0 || !pinned,
        "sched_setaffinity: {}",
        std::io::Error::last_os_error()
    );
}

struct Results {
    /// Per-round ratios (each round's figure against the floor measured
    /// right beside it): null/ping-pong, floor/pwrite, floor/plain pwrite.
    r_null: Fig,
    r_pw: Fig,
    r_plain: Fig,
    pp: Fig,
    null: Fig,
    bulk_floor: Fig,
    pwrite: Fig,
    pwrite_plain: Fig,
    write_mib_s: f64,
    write_sync_ratio: f64,
    read_mib_s: f64,
    rt_null: f64,
    rt_pwrite: f64,
    rt_pwrite_plain: f64,
}

fn run(pinned: bool, total: usize, rounds: usize) -> Results {
    set_pinned(pinned);
    let chunk = 64 * 1024;
    let d = tmpdir();
    let dd = || {
        let t = dd_seconds(&d.path().join("floor"), chunk, total);
        let _ = std::fs::remove_file(d.path().join("floor"));
        t
    };
    let mut floor_dd = dd();
    let img = d.path().join("img");
    let b = Bench::start(
        d.path(),
        &[
            "-r".into(),
            format!("{}", 2 * total),
            "-d".into(),
            format!("key=/dk,hostpath={},size={}", img.display(), total),
        ],
    );
    let c = rumpclient::Client::connect(&b.url).expect("connect");
    assert!(
        c.inline_granted(),
        "our server grants inline input to our client"
    );
    // The same kernel process over the plain protocol (NetBSD's wire:
    // a copyin round trip per write), for comparison.
    let plain = rumpclient::Client::connect_plain(&b.url).expect("connect");
    let fd = c.open("/dk", O_RDWR, 0).expect("open /dk");
    let pfd = plain.open("/dk", O_RDWR, 0).expect("open /dk");
    let buf = vec![0xa5u8; chunk];
    let nblk = total / chunk;

    // Fresh blocks, then sync, beside dd.
    let t = Instant::now();
    for i in 0..nblk {
        c.pwrite(fd, &buf, (i * chunk) as i64).expect("pwrite");
    }
    c.sync().expect("sync");
    let write = t.elapsed().as_secs_f64();
    let mut rbuf = vec![0u8; chunk];
    let t = Instant::now();
    for i in 0..nblk {
        c.pread(fd, &mut rbuf, (i * chunk) as i64).expect("pread");
    }
    let read = t.elapsed().as_secs_f64();

    // Floors: raw unix-socket ping-pongs of our frames' byte counts.
    let (req_len, resp_len) = (HDRSZ, HDRSZ + SYSRESP_LEN);
    let bulk_req = HDRSZ + INLINE_HDR_LEN + 5 * 8 + COPYDATA_LEN + chunk;
    let mk = |name: &str, req: usize, resp: usize| {
        let p = d.path().join(name);
        raw_server(UnixListener::bind(&p).expect("bind ping-pong"), req, resp);
        UnixStream::connect(&p).expect("connect ping-pong")
    };
    let mut pp = mk("pp.sock", req_len, resp_len);
    let mut bulk = mk("bulk.sock", bulk_req, resp_len);
    let req = vec![0u8; req_len];
    let breq = vec![0x5au8; bulk_req];
    let mut resp = vec![0u8; resp_len];

    let n = 3000;
    let nb = (nblk * 2).clamp(500, 4000);
    let (mut v_pp, mut v_null, mut v_bulk, mut v_pw, mut v_plain) =
        (vec![], vec![], vec![], vec![], vec![]);
    let mut blk = 0usize;
    let mut next_off = || {
        blk = (blk + 1) % nblk;
        (blk * chunk) as i64
    };
    // Warm up every path.
    for _ in 0..500 {
        c.getpid().expect("getpid");
        pp.write_all(&req).expect("ping");
        pp.read_exact(&mut resp).expect("pong");
        bulk.write_all(&breq).expect("ping");
        bulk.read_exact(&mut resp).expect("pong");
        c.pwrite(fd, &buf, next_off()).expect("pwrite");
    }
    // BENCH_PROFILE=pwrite|getpid|plain: only loop that call for 5 s (for
    // `perf record` / `strace -c` on the server: see docs/perf.md).
    if let Ok(what) = std::env::var("BENCH_PROFILE") {
        println!("profiling {what}: rump_server pid {}", b.child.id());
        let t = Instant::now();
        let mut k = 0u64;
        while t.elapsed().as_secs() < 5 {
            match what.as_str() {
                "getpid" => drop(c.getpid().expect("getpid")),
                "plain" => drop(plain.pwrite(pfd, &buf, next_off()).expect("pwrite")),
                _ => drop(c.pwrite(fd, &buf, next_off()).expect("pwrite")),
            }
            k += 1;
        }
        println!(
            "  {:.2} us per call",
            t.elapsed().as_secs_f64() * 1e6 / k as f64
        );
        std::process::exit(0);
    }
    let (mut rt_null, mut rt_pw, mut rt_plain) = (0.0, 0.0, 0.0);
    for _ in 0..rounds {
        v_pp.push(per_op_us(n, || {
            pp.write_all(&req).expect("ping");
            pp.read_exact(&mut resp).expect("pong");
        }));
        let r0 = c.round_trips();
        v_null.push(per_op_us(n, || {
            c.getpid().expect("getpid");
        }));
        rt_null = (c.round_trips() - r0) as f64 / n as f64;
        v_bulk.push(per_op_us(nb, || {
            bulk.write_all(&breq).expect("ping");
            bulk.read_exact(&mut resp).expect("pong");
        }));
        let r0 = c.round_trips();
        v_pw.push(per_op_us(nb, || {
            c.pwrite(fd, &buf, next_off()).expect("pwrite");
        }));
        rt_pw = (c.round_trips() - r0) as f64 / nb as f64;
        let r0 = plain.round_trips();
        v_plain.push(per_op_us(nb / 2, || {
            plain.pwrite(pfd, &buf, next_off()).expect("pwrite");
        }));
        rt_plain = (plain.round_trips() - r0) as f64 / (nb / 2) as f64;
    }
    drop((pp, bulk, plain, c));
    drop(b);
    floor_dd = floor_dd.min(dd());
    let ratios = |a: &[f64], b: &[f64]| fig(a.iter().zip(b).map(|(x, y)| x / y).collect());
    Results {
        r_null: ratios(&v_null, &v_pp),
        r_pw: ratios(&v_bulk, &v_pw),
        r_plain: ratios(&v_bulk, &v_plain),
        pp: fig(v_pp),
        null: fig(v_null),
        bulk_floor: fig(v_bulk),
        pwrite: fig(v_pw),
        pwrite_plain: fig(v_plain),
        write_mib_s: mib_s(total, write),
        write_sync_ratio: write / floor_dd,
        read_mib_s: mib_s(total, read),
        rt_null,
        rt_pwrite: rt_pw,
        rt_pwrite_plain: rt_plain,
    }
}

fn gib_s(bytes: usize, us: f64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64 / (us * 1e-6)
}

fn report(tag: &str, r: &Results, total: usize) {
    let chunk = 64 * 1024;
    println!("{tag}:");
    println!("  floor: raw unix ping-pong 24/48 B       {}", r.pp);
    println!(
        "  null syscall (getpid)                   {}   {:.2}x the floor ({:.2}..{:.2}; target <= 1.3x), {:.0} round trip(s)",
        r.null,
        r.r_null.med,
        r.r_null.lo,
        r.r_null.hi,
        r.rt_null
    );
    println!(
        "  floor: raw 64 KiB + 48 B ack ping-pong  {}   {:6.2} GiB/s",
        r.bulk_floor,
        gib_s(chunk, r.bulk_floor.med)
    );
    println!(
        "  64 KiB pwrite, blk drive (cached)       {}   {:6.2} GiB/s   {:.2}x the floor's rate ({:.2}..{:.2}; target >= 0.5x), {:.0} round trip(s)",
        r.pwrite,
        gib_s(chunk, r.pwrite.med),
        r.r_pw.med,
        r.r_pw.lo,
        r.r_pw.hi,
        r.rt_pwrite
    );
    println!(
        "    same over the plain protocol          {}   {:6.2} GiB/s   {:.2}x the floor's rate ({:.2}..{:.2}), {:.0} round trip(s) (copyin)",
        r.pwrite_plain,
        gib_s(chunk, r.pwrite_plain.med),
        r.r_plain.med,
        r.r_plain.lo,
        r.r_plain.hi,
        r.rt_pwrite_plain
    );
    println!(
        "  {} MiB fresh 64 KiB writes + sync    {:8.1} MiB/s   {:.2}x dd bs=64k conv=fsync's time (target <= 2x); reads {:.1} MiB/s",
        total / MIB,
        r.write_mib_s,
        r.write_sync_ratio,
        r.read_mib_s
    );
}

fn main() {
    let total: usize = std::env::var("BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
        * MIB;
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7)
        .max(1);
    let ncpu = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!("kernel: medians of {rounds} rounds (spread: min..max of the round medians; ratios: median of per-round ratios), {ncpu} CPUs");
    println!(
        "  Both pinned and unpinned figures are shown: pinned to one CPU, client and server hand off on that CPU \
         and the figures are the data path's own cost; unpinned, each hand-off may be a cross-CPU wake-up \
         (~60 us on an idle VM here), which swamps that cost unless someone spins: our client and server spin (bounded, adaptive; \
         never when pinned), the raw floors block, so unpinned ours can beat its floor."
    );
    let pinned = run(true, total, rounds);
    report(
        "pinned to CPU 0 (taskset -c 0 equivalent: this process, its threads and rump_server)",
        &pinned,
        total,
    );
    let unpinned = run(false, total, rounds);
    report("unpinned", &unpinned, total);
    let shadow = Path::new(env!("CARGO_TARGET_TMPDIR"));
    match testkit::netbsd::destdir(shadow) {
        Some(nb) => {
            for pinned in [true, false] {
                exec_chain(&nb, pinned, rounds);
            }
        }
        None => println!(
            "exec handshake: skipped (set RUMP_NETBSD_DIR to compare with NetBSD's server)"
        ),
    }
}

/// A chain of images on one sysproxy connection: each starts with
/// `rumpclient_init` (for all but the first, the exec handshake on the
/// inherited connection) and `rumpclient_exec`s the next; the last prints
/// the mean microseconds from one image's exec call to the next image's
/// `rumpclient_init` returning, and of that `rumpclient_init` alone (the
/// handshake). Our own source.
const EXEC_CHAIN_C: &str = r#"
#include <sys/types.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <rump/rumpclient.h>
#include <rump/rump_syscalls.h>

extern char **environ;

static double
now_us(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

int
main(int argc, char **argv)
{
	double entered = now_us();
	int left = argc > 1 ? atoi(argv[1]) : 0;
	double sum = argc > 2 ? atof(argv[2]) : 0, sent = argc > 3 ? atof(argv[3]) : 0;
	double hs = argc > 4 ? atof(argv[4]) : 0;
	int done = argc > 5 ? atoi(argv[5]) : 0;
	char a1[32], a2[64], a3[64], a4[64], a5[32];

	if (rumpclient_init() == -1)
		return 2;
	if (sent > 0) {
		double t = now_us();
		sum += t - sent;
		hs += t - entered;
		done++;
	}
	if (rump_sys_getpid() <= 0)
		return 3;
	if (left <= 0) {
		printf("%.1f %.1f\n", done ? sum / done : 0.0, done ? hs / done : 0.0);
		return 0;
	}
	snprintf(a1, sizeof(a1), "%d", left - 1);
	snprintf(a2, sizeof(a2), "%.3f", sum);
	snprintf(a4, sizeof(a4), "%.3f", hs);
	snprintf(a5, sizeof(a5), "%d", done);
	snprintf(a3, sizeof(a3), "%.3f", now_us());
	char *next[] = { argv[0], a1, a2, a3, a4, a5, NULL };
	rumpclient_exec(argv[0], next, environ);
	return 4;
}
"#;

/// Microseconds per exec (handshake included) of NetBSD's client against
/// NetBSD's `rump_server` and against ours (built-in kernel), in
/// alternating rounds, and our ratio to NetBSD's.
fn exec_chain(nb: &Path, pinned: bool, rounds: usize) {
    use std::process::{Command, Stdio};
    set_pinned(pinned);
    let d = tmpdir();
    let exe = testkit::netbsd::build_client(nb, d.path(), "exec_chain", EXEC_CHAIN_C);
    let lib = nb.join("lib");
    let start = |name: &str, prog: &Path, args: &[&str]| {
        let sock = d.path().join(format!("{name}.sock"));
        let child = Command::new(prog)
            .args(args)
            .arg(format!("unix://{}", sock.display()))
            .env("LD_LIBRARY_PATH", &lib)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start a server");
        testkit::wait::wait_until(
            &format!("{name} server's socket"),
            std::time::Duration::from_secs(30),
            || UnixStream::connect(&sock).is_ok(),
        );
        (child, format!("unix://{}", sock.display()))
    };
    let (mut theirs, theirs_url) =
        start("netbsd", &nb.join("bin/rump_server"), &["-s", "-lrumpvfs"]);
    let (mut ours, ours_url) = start("ours", &testkit::server::cargo_bin("rump_server"), &["-s"]);
    let chain = |url: &str| -> (f64, f64) {
        let o = Command::new(&exe)
            .arg("50")
            .env("RUMP_SERVER", url)
            .output()
            .expect("run the exec chain");
        assert!(
            o.status.success(),
            "exec chain against {url}: {:?}",
            o.status
        );
        let out = String::from_utf8_lossy(&o.stdout);
        let mut v = out
            .split_whitespace()
            .map(|x| x.parse::<f64>().expect("microseconds"));
        (v.next().unwrap_or(0.0), v.next().unwrap_or(0.0))
    };
    chain(&theirs_url);
    chain(&ours_url);
    let (mut v_theirs, mut v_ours, mut h_theirs, mut h_ours) = (vec![], vec![], vec![], vec![]);
    for _ in 0..rounds {
        let (t, h) = chain(&theirs_url);
        v_theirs.push(t);
        h_theirs.push(h);
        let (t, h) = chain(&ours_url);
        v_ours.push(t);
        h_ours.push(h);
    }
    let ratio = |a: &[f64], b: &[f64]| fig(a.iter().zip(b).map(|(x, y)| x / y).collect());
    let (r, rh) = (ratio(&v_ours, &v_theirs), ratio(&h_ours, &h_theirs));
    println!(
        "exec, NetBSD's librumpclient (rumpclient_exec to the next image's rumpclient_init returning; the handshake is that init), {}:",
        if pinned { "pinned to CPU 0" } else { "unpinned" }
    );
    println!("  exec, against NetBSD's rump_server     {}", fig(v_theirs));
    println!(
        "  exec, against ours                     {}   {:.2}x NetBSD's ({:.2}..{:.2}; target <= 1x)",
        fig(v_ours),
        r.med,
        r.lo,
        r.hi
    );
    println!("  handshake, against NetBSD's            {}", fig(h_theirs));
    println!(
        "  handshake, against ours                {}   {:.2}x NetBSD's ({:.2}..{:.2}; target <= 1x)",
        fig(h_ours),
        rh.med,
        rh.lo,
        rh.hi
    );
    let _ = theirs.kill();
    let _ = ours.kill();
    let _ = theirs.wait();
    let _ = ours.wait();
}
