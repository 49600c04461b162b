//! Never wedged (docs/design.md, "The blocking discipline" and "The halt
//! contract"): more ext2 system calls in flight
//! than virtual CPUs, from many clients or pipelined on one connection,
//! never freeze the kernel; halts complete and can be overtaken.

mod common;

use rumpclient::Syscalls as _;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use netbsd_abi::fcntl::{O_CREAT, O_RDWR};
use netbsd_abi::sp::{self as wire, Class, Handshake, Header, Type, HDRSZ};

/// A server on a fresh ext2 image (`/dk`, mounted at /mnt) and a raw
/// drive (`/raw`), with extra arguments.
fn ext2_server(d: &Path, extra: &[&str], env: Vec<(&'static str, String)>) -> Server {
    let img = d.join("img");
    mke2fs(&img, &["-b", "4096"], "64M");
    let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    args.extend([
        "-d".into(),
        format!("key=/dk,hostpath={},size=host", img.display()),
    ]);
    args.extend([
        "-d".into(),
        format!("key=/raw,hostpath={},size=16m", d.join("raw").display()),
    ]);
    let s = Server::start_with(
        d,
        ServerOpts {
            args,
            env,
            cores: false,
            stderr: None,
        },
    );
    let c = s.client();
    c.mkdir("/mnt", 0o755).expect("mkdir /mnt");
    c.mount_ext2("/mnt", 0, "/dk").expect("mount ext2fs");
    s
}

/// Run `f` on a thread; its result, or `None` if it took longer than `t`.
fn within<T: Send + 'static>(t: Duration, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(t).ok()
}

/// A fresh client is served at all (connect, stat the mount, getpid)
/// while the kernel is loaded. Its deadline is for liveness, far above
/// what a call costs on a loaded machine: it fails only when the kernel
/// is wedged, and says nothing about latency.
const LIVENESS: Duration = Duration::from_secs(20);

fn fresh_client_served(url: &str) {
    let url = url.to_string();
    let r = within(LIVENESS, move || {
        let c = Client::connect(&url).map_err(|e| e.to_string())?;
        c.stat("/mnt").map_err(|e| e.to_string())?;
        c.getpid().map_err(|e| e.to_string())
    });
    match r {
        Some(Ok(_)) => {}
        Some(Err(e)) => panic!("fresh client failed: {e}"),
        None => panic!("fresh client not served within {LIVENESS:?} (a liveness deadline): the kernel is wedged"),
    }
}

/// What one writer saw acknowledged: (path, offset, data) per write.
type Acked = Arc<Mutex<Vec<(String, u64, Vec<u8>)>>>;

/// Writers on their own ext2 files (`fsync_every` > 0: fsync after that
/// many writes), until `stop`. Each records the writes acknowledged.
fn ext2_writers(
    url: &str,
    n: usize,
    fsync_every: usize,
    stop: &Arc<AtomicBool>,
    acked: &Acked,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..n)
        .map(|k| {
            let (url, stop, acked) = (url.to_string(), stop.clone(), acked.clone());
            std::thread::spawn(move || {
                let Ok(c) = Client::connect(&url) else {
                    // Scheduled after the halt began: nothing to write.
                    assert!(stop.load(Ordering::Relaxed) || Client::connect(&url).is_err());
                    return;
                };
                let path = format!("/mnt/w{k}");
                // A writer scheduled late may find the halt under way
                // already: it ends, as the others do, with an error.
                let fd = match c.open(&path, O_RDWR | O_CREAT, 0o644) {
                    Ok(fd) => fd,
                    Err(e) if stop.load(Ordering::Relaxed) || c.getpid().is_err() => {
                        eprintln!("writer {k}: create {path}: {e} (the halt came first)");
                        return;
                    }
                    Err(e) => panic!("create {path}: {e}"),
                };
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) && i < 600 {
                    let data = pattern(8192 + (i as usize % 5) * 1000, k as u64 * 100_000 + i);
                    let off = i * 16384;
                    if let Err(e) = c.pwrite(fd, &data, off as i64) {
                        eprintln!("writer {k}: pwrite #{i}: {e}");
                        return;
                    }
                    acked.lock().unwrap().push((path.clone(), off, data));
                    i += 1;
                    if fsync_every > 0 && i.is_multiple_of(fsync_every as u64) {
                        if let Err(e) = c.fsync(fd) {
                            eprintln!("writer {k}: fsync: {e}");
                            return;
                        }
                    }
                }
            })
        })
        .collect()
}

fn halt_within(s: &mut Server, args: &[&str], t: Duration) {
    let url = s.url.clone();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let o = within(t, move || {
        Command::new(RUMP_HALT)
            .args(&args)
            .env("RUMP_SERVER", &url)
            .output()
            .expect("run rump.halt")
    })
    .unwrap_or_else(|| {
        panic!(
            "rump.halt {args:?} did not complete within {t:?}",
            args = args_str(&s.url)
        )
    });
    assert!(o.status.success(), "rump.halt: {}", stderr(&o));
    assert!(
        s.wait_exit(Duration::from_secs(10)).is_some(),
        "server still running after rump.halt"
    );
}

fn args_str(u: &str) -> String {
    u.to_string()
}

/// Every acknowledged write is in the image (later writes to the same
/// bytes never overlap: offsets are distinct per writer).
fn check_acked(img: &Path, acked: &Acked) {
    let acked = acked.lock().unwrap();
    let mut files: std::collections::BTreeMap<&str, Vec<u8>> = Default::default();
    let mut lost = 0;
    for (p, off, data) in acked.iter() {
        let f = files
            .entry(p)
            .or_insert_with(|| debugfs_cat(img, p.trim_start_matches("/mnt")));
        let off = *off as usize;
        if f.len() < off + data.len() || &f[off..off + data.len()] != data.as_slice() {
            lost += 1;
        }
    }
    assert_eq!(
        lost,
        0,
        "{lost} of {} acknowledged writes missing from the image",
        acked.len()
    );
}

fn run_writers_then_halt(extra: &[&str], writers: usize, fsync_every: usize) {
    let d = tmpdir();
    let mut s = ext2_server(d.path(), extra, vec![]);
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Acked = Default::default();
    let th = ext2_writers(&s.url, writers, fsync_every, &stop, &acked);
    // Let them run until each has had writes acknowledged; meanwhile a
    // fresh client must be served each time it asks.
    let progressed = || {
        let a = acked.lock().unwrap();
        (0..writers).all(|k| {
            let p = format!("/mnt/w{k}");
            a.iter().filter(|(q, _, _)| *q == p).count() >= 2 * fsync_every.max(1)
        })
    };
    let mut probes = 0;
    wait_until(
        "every writer has writes acknowledged (fresh clients served meanwhile)",
        Duration::from_secs(120),
        || {
            fresh_client_served(&s.url);
            probes += 1;
            probes >= 5 && progressed()
        },
    );
    // Halt while they write: every write acknowledged before must be kept.
    halt_within(&mut s, &[], Duration::from_secs(20));
    stop.store(true, Ordering::Relaxed);
    for t in th {
        t.join().unwrap();
    }
    let img = d.path().join("img");
    e2fsck_clean(&img);
    check_acked(&img, &acked);
}

#[test]
fn one_cpu_four_ext2_writers_with_fsync() {
    run_writers_then_halt(&["-c", "1"], 4, 3);
}

#[test]
fn two_cpus_three_writers_under_a_small_memory_limit() {
    run_writers_then_halt(&["-c", "2", "-r", "4m"], 3, 0);
}

// ---------------------------------------------------------------------------
// One connection that keeps ncpu+1 requests in flight (the protocol allows
// it; NetBSD's librumpclient never does, ours neither, so speak it raw).

struct RawClient {
    s: UnixStream,
    next: u64,
    /// Fake client memory: address -> bytes.
    mem: Vec<(u64, Vec<u8>)>,
}

const PATH_ADDR: u64 = 0x1000;
const DATA_ADDR: u64 = 0x10_0000;

impl RawClient {
    fn connect(url: &str, path: &str, data: Vec<u8>) -> RawClient {
        let p = url.strip_prefix("unix://").expect("unix url");
        let mut s = UnixStream::connect(p).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut b = [0u8; 1];
        loop {
            s.read_exact(&mut b).expect("banner");
            if b[0] == b'\n' {
                break;
            }
        }
        let mut path = path.as_bytes().to_vec();
        path.push(0);
        let mut c = RawClient {
            s,
            next: 1,
            mem: vec![(PATH_ADDR, path), (DATA_ADDR, data)],
        };
        c.send(
            Class::Req,
            Type::Handshake,
            0,
            Handshake::Guest as u32,
            b"pipeline\0",
        );
        let (h, p) = c.frame();
        assert_eq!(
            (h.class, h.ty),
            (Class::Resp, Type::Handshake),
            "handshake answer"
        );
        assert_eq!(wire::i32_at(&p), Some(0), "handshake refused");
        c
    }

    fn send(&mut self, class: Class, ty: Type, reqno: u64, arg: u32, payload: &[u8]) {
        let h = Header::new(class, ty, reqno, arg, payload.len()).encode();
        self.s.write_all(&h).expect("send");
        self.s.write_all(payload).expect("send");
    }

    fn frame(&mut self) -> (Header, Vec<u8>) {
        let mut h = [0u8; HDRSZ];
        self.s
            .read_exact(&mut h)
            .expect("frame header (server hung or gone)");
        let h = Header::decode(&h).expect("valid header");
        let mut p = vec![0u8; h.payload_len()];
        self.s.read_exact(&mut p).expect("frame payload");
        (h, p)
    }

    /// Send syscall `num` with 8-byte argument slots; its request number.
    fn syscall(&mut self, num: i32, args: &[u64]) -> u64 {
        let r = self.next;
        self.next += 1;
        let b: Vec<u8> = args.iter().flat_map(|a| a.to_le_bytes()).collect();
        self.send(Class::Req, Type::Syscall, r, num as u32, &b);
        r
    }

    /// Read frames, answering the server's copy requests from `mem`, until
    /// a syscall answer: (reqno, error, retval0).
    fn answer(&mut self) -> (u64, i32, i64) {
        loop {
            let (h, p) = self.frame();
            match (h.class, h.ty) {
                (Class::Resp, Type::Syscall) => {
                    let r = wire::SysResp::decode(&p).expect("syscall response");
                    return (h.reqno, r.error, r.retval[0]);
                }
                (Class::Req, Type::Copyin) | (Class::Req, Type::Copyinstr) => {
                    let cd = wire::CopyData::decode(&p).expect("copy request");
                    let (base, m) = self
                        .mem
                        .iter()
                        .find(|(a, m)| cd.addr >= *a && cd.addr < a + m.len() as u64)
                        .expect("copy from a known region");
                    let start = (cd.addr - base) as usize;
                    let end = (start + cd.len as usize).min(m.len());
                    let bytes = m[start..end].to_vec();
                    self.send(Class::Resp, h.ty, h.reqno, 0, &bytes);
                }
                (Class::Req, _) => {} // copyout, raise: nothing to keep
                other => panic!("unexpected frame {other:?}"),
            }
        }
    }
}

#[test]
fn one_connection_pipelining_more_requests_than_cpus() {
    use netbsd_abi::syscall::{SYS_FSYNC, SYS_OPEN, SYS_PWRITE};
    let ncpu = 2;
    let d = tmpdir();
    let mut s = ext2_server(d.path(), &["-c", "2"], vec![]);
    let data = pattern(65536, 9);
    let mut c = RawClient::connect(&s.url, "/mnt/pipelined", data.clone());
    let r = c.syscall(SYS_OPEN, &[PATH_ADDR, (O_RDWR | O_CREAT) as u64, 0o644]);
    let (rr, e, fd) = c.answer();
    assert_eq!((rr, e), (r, 0), "open");
    let url = s.url.clone();
    let pipeline = std::thread::spawn(move || {
        // ncpu+1 in flight, alternating pwrite and fsync, 300 in all.
        let mut inflight = std::collections::HashMap::new();
        let mut sent = 0u64;
        let mut done = 0;
        while done < 300 {
            while inflight.len() < ncpu + 1 && sent < 300 {
                let r = if sent.is_multiple_of(2) {
                    c.syscall(
                        SYS_PWRITE,
                        &[fd as u64, DATA_ADDR, 65536, 0, (sent / 2) * 65536],
                    )
                } else {
                    c.syscall(SYS_FSYNC, &[fd as u64])
                };
                inflight.insert(r, sent);
                sent += 1;
            }
            let (r, e, _) = c.answer();
            assert_eq!(e, 0, "pipelined request {r} failed");
            assert!(
                inflight.remove(&r).is_some(),
                "answer to an unknown request {r}"
            );
            done += 1;
        }
    });
    wait_until(
        "the pipelined requests finish (fresh clients served meanwhile)",
        Duration::from_secs(120),
        || {
            fresh_client_served(&url);
            pipeline.is_finished()
        },
    );
    pipeline.join().expect("pipelined requests");
    halt_within(&mut s, &[], Duration::from_secs(20));
    let img = d.path().join("img");
    e2fsck_clean(&img);
    let got = debugfs_cat(&img, "/pipelined");
    assert_eq!(got.len(), 150 * 65536);
    assert!(
        got.chunks(65536).all(|c| c == data.as_slice()),
        "pipelined writes on the image"
    );
}

// ---------------------------------------------------------------------------
// Halts mid-run under 8 writers at the default ncpu.

/// Raw writers on their own regions of /raw; acknowledged writes recorded
/// as (offset, data).
fn raw_writers(
    url: &str,
    n: usize,
    stop: &Arc<AtomicBool>,
    acked: &Acked,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..n)
        .map(|k| {
            let (url, stop, acked) = (url.to_string(), stop.clone(), acked.clone());
            std::thread::spawn(move || {
                let Ok(c) = Client::connect(&url) else {
                    // Scheduled after the halt began: nothing to write.
                    assert!(stop.load(Ordering::Relaxed) || Client::connect(&url).is_err());
                    return;
                };
                // A writer scheduled late may find the halt under way
                // already: it ends, as the others do, with an error.
                let fd = match c.open("/raw", O_RDWR, 0) {
                    Ok(fd) => fd,
                    Err(e) if stop.load(Ordering::Relaxed) || c.getpid().is_err() => {
                        eprintln!("raw writer {k}: open /raw: {e} (the halt came first)");
                        return;
                    }
                    Err(e) => panic!("open /raw: {e}"),
                };
                for i in 0..900u64 {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let data = pattern(4096, 7_000_000 + k as u64 * 10_000 + i);
                    let off = k as u64 * (4 << 20) + i * 4096;
                    if c.pwrite(fd, &data, off as i64).is_err() {
                        return;
                    }
                    acked.lock().unwrap().push(("/raw".into(), off, data));
                }
            })
        })
        .collect()
}

fn eight_writers_then(how: &str) {
    let d = tmpdir();
    let mut s = ext2_server(d.path(), &[], vec![]);
    let stop = Arc::new(AtomicBool::new(false));
    let (ea, ra): (Acked, Acked) = Default::default();
    let mut th = ext2_writers(&s.url, 4, 3, &stop, &ea);
    th.extend(raw_writers(&s.url, 4, &stop, &ra));
    // Both kinds of writer under way before the kernel is pressed.
    wait_until(
        "ext2 and raw writers have writes acknowledged",
        Duration::from_secs(30),
        || !ea.lock().unwrap().is_empty() && !ra.lock().unwrap().is_empty(),
    );
    fresh_client_served(&s.url);
    match how {
        "rump.halt" => halt_within(&mut s, &[], Duration::from_secs(20)),
        sig => {
            s.signal(if sig == "SIGTERM" {
                libc::SIGTERM
            } else {
                libc::SIGINT
            });
            assert!(
                s.wait_exit(Duration::from_secs(20)).is_some(),
                "server still running after {sig}"
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    // No client hangs: each returns (with an error) once the server is gone.
    wait_until(
        &format!("every client returns after the halt ({how}), none hangs"),
        LIVENESS,
        || th.iter().all(|w| w.is_finished()),
    );
    for w in th {
        w.join().unwrap();
    }
    let img = d.path().join("img");
    e2fsck_clean(&img);
    check_acked(&img, &ea);
    let raw = std::fs::read(d.path().join("raw")).expect("raw image");
    let ra = ra.lock().unwrap();
    assert!(
        !ra.is_empty() && !ea.lock().unwrap().is_empty(),
        "writers made progress"
    );
    let lost = ra
        .iter()
        .filter(|(_, off, data)| {
            raw.get(*off as usize..*off as usize + data.len()) != Some(data.as_slice())
        })
        .count();
    assert_eq!(
        lost,
        0,
        "{lost} of {} acknowledged raw writes missing after {how}",
        ra.len()
    );
}

#[test]
fn eight_writers_halted_by_rump_halt() {
    eight_writers_then("rump.halt");
}

#[test]
fn eight_writers_halted_by_sigterm() {
    eight_writers_then("SIGTERM");
}

#[test]
fn eight_writers_halted_by_sigint() {
    eight_writers_then("SIGINT");
}

// ---------------------------------------------------------------------------
// Rescue: a halt stuck on a drive is overtaken.

/// A server whose /raw drive misbehaves (`mode`) while `ctl` exists, with
/// 1 MiB of dirty data on it; its log in `log`.
fn faulty_server(d: &Path, mode: &str, extra: &[&str]) -> (Server, PathBuf, PathBuf) {
    let ctl = d.join("fault-on");
    let log = d.join("server.log");
    let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    args.extend([
        "-d".into(),
        format!("key=/raw,hostpath={},size=16m", d.join("raw").display()),
    ]);
    let env = vec![("RUMP_FAULT", format!("/raw={mode}:{}", ctl.display()))];
    let s = Server::start_logged(
        d,
        ServerOpts {
            args,
            env,
            cores: false,
            stderr: None,
        },
        Some(&log),
    );
    let c = s.client();
    let fd = c.open("/raw", O_RDWR, 0).expect("open /raw");
    c.pwrite(fd, &pattern(1 << 20, 5), 0).expect("pwrite");
    std::fs::write(&ctl, b"").unwrap();
    (s, ctl, log)
}

/// What one tool run against the healthy server costs (start a process,
/// connect, one call, exit): the baseline for `rump.halt -n`, which does
/// the same plus a halt that must not wait for anything.
fn tool_run_baseline(s: &Server) -> Duration {
    let (o, took) = timed(|| s.tool(RUMPCTL, &["stat", "/"]));
    assert!(o.status.success(), "rumpctl stat /: {}", stderr(&o));
    took
}

/// A plain `rump.halt` under way, its standard error read line by line.
struct PlainHalt {
    child: std::process::Child,
    stderr: Arc<Mutex<String>>,
    reader: std::thread::JoinHandle<()>,
}

fn plain_halt_in_background(url: &str) -> PlainHalt {
    let mut child = Command::new(RUMP_HALT)
        .env("RUMP_SERVER", url)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("rump.halt");
    let mut pipe = child.stderr.take().expect("piped stderr");
    let stderr = Arc::new(Mutex::new(String::new()));
    let e2 = stderr.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            e2.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    PlainHalt {
        child,
        stderr,
        reader,
    }
}

/// The server exits after `what`: a liveness deadline (a hang fails it),
/// not a latency bound.
fn gone_after(s: &mut Server, what: &str) {
    let start = Instant::now();
    assert!(
        s.wait_exit(LIVENESS).is_some(),
        "server still running {LIVENESS:?} after {what} (a liveness deadline): it hangs"
    );
    eprintln!("{what}: server gone after {:?}", start.elapsed());
}

/// Wait until `log` says a drive write hangs (or spins) in the fault
/// injection: the fault has taken hold, no guessing when.
fn fault_took_hold(log: &Path, what: &str) {
    wait_for_text(
        log,
        &format!("fault injection: a drive write {what}"),
        LIVENESS,
    );
}

#[test]
fn a_stuck_plain_halt_is_overtaken_by_rump_halt_n() {
    let d = tmpdir();
    let (mut s, _ctl, log) = faulty_server(d.path(), "write-hang", &[]);
    let baseline = tool_run_baseline(&s);
    let mut first = plain_halt_in_background(&s.url);
    // The halt's flush reached the hung drive, and rump.halt, blocked on
    // it, says what it waits for.
    fault_took_hold(&log, "hangs");
    wait_until(
        "the plain rump.halt says it waits for the flush",
        LIVENESS,
        || first.stderr.lock().unwrap().contains("waiting"),
    );
    assert!(s.alive(), "the plain halt waits for the hung drive");
    let (o, took) = timed(|| s.halt(&["-n"]));
    assert!(
        o.status.success(),
        "rump.halt -n during a stuck halt: {}",
        stderr(&o)
    );
    assert_within("rump.halt -n", took, baseline, 20, Duration::from_secs(1));
    gone_after(&mut s, "rump.halt -n");
    let st = first.child.wait().unwrap();
    first.reader.join().unwrap();
    assert!(
        !st.success(),
        "the overtaken halt reports that its flush did not complete"
    );
    let e = first.stderr.lock().unwrap().clone();
    assert!(
        e.contains("waiting") && e.contains("-n"),
        "the plain rump.halt said what it waited for:\n{e}"
    );
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(
        log.contains("not flushed: drive /raw"),
        "the server said what was not flushed:\n{log}"
    );
}

#[test]
fn a_stuck_sigterm_halt_is_overtaken_by_a_second_sigterm() {
    let d = tmpdir();
    let (mut s, _ctl, log) = faulty_server(d.path(), "write-hang", &["-v"]);
    s.signal(libc::SIGTERM);
    // The halt began (the server logs it at -v) and its flush reached
    // the hung drive.
    fault_took_hold(&log, "hangs");
    wait_for_text(&log, "SIGTERM: halting", LIVENESS);
    assert!(s.alive(), "the SIGTERM halt waits for the hung drive");
    s.signal(libc::SIGTERM);
    gone_after(&mut s, "a second SIGTERM");
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(
        log.contains("not flushed: drive /raw"),
        "the server said what was not flushed:\n{log}"
    );
}

#[test]
fn rump_halt_n_with_every_cpu_spinning() {
    let d = tmpdir();
    let (mut s, _ctl, log) = faulty_server(d.path(), "write-spin", &["-c", "1"]);
    let baseline = tool_run_baseline(&s);
    // A client's fsync spins in the drive, on the only CPU, for good.
    let c = s.client();
    let spinner = std::thread::spawn(move || {
        let fd = c.open("/raw", O_RDWR, 0).expect("open /raw");
        let _ = c.fsync(fd);
    });
    fault_took_hold(&log, "spins");
    let (o, took) = timed(|| s.halt(&["-n"]));
    assert!(
        o.status.success(),
        "rump.halt -n with the only CPU spinning: {}",
        stderr(&o)
    );
    assert_within("rump.halt -n", took, baseline, 20, Duration::from_secs(2));
    gone_after(&mut s, "rump.halt -n");
    wait_until(
        "the spinning client's connection is dropped",
        LIVENESS,
        || spinner.is_finished(),
    );
}

// ---------------------------------------------------------------------------
// ext2 concurrency: an fsync stuck in host I/O holds no file-system lock.

#[test]
fn an_fsync_stuck_on_the_drive_does_not_stop_other_files() {
    use netbsd_abi::fcntl::O_RDONLY;
    let d = tmpdir();
    let img = d.path().join("img");
    mke2fs(&img, &["-b", "4096"], "32M");
    let ctl = d.path().join("hang");
    let args = vec![
        "-d".into(),
        format!("key=/dk,hostpath={},size=host", img.display()),
    ];
    let env = vec![("RUMP_FAULT", format!("/dk=write-hang:{}", ctl.display()))];
    let log = d.path().join("server.log");
    let mut s = Server::start_logged(
        d.path(),
        ServerOpts {
            args,
            env,
            cores: false,
            stderr: None,
        },
        Some(&log),
    );
    let c = s.client();
    c.mkdir("/mnt", 0o755).unwrap();
    c.mount_ext2("/mnt", 0, "/dk").unwrap();
    for f in ["a", "b"] {
        let fd = c
            .open(format!("/mnt/{f}"), O_RDWR | O_CREAT, 0o644)
            .unwrap();
        c.pwrite(fd, &pattern(100_000, 1), 0).unwrap();
        c.close(fd).unwrap();
    }
    c.sync().unwrap();
    std::fs::write(&ctl, b"").unwrap();
    // Client 1: fsync of a, which hangs in the drive.
    let url = s.url.clone();
    let stuck = std::thread::spawn(move || {
        let c = Client::connect(&url).unwrap();
        let fd = c.open("/mnt/a", O_RDWR, 0).unwrap();
        c.pwrite(fd, b"dirty", 0).unwrap();
        let _ = c.fsync(fd);
    });
    fault_took_hold(&log, "hangs");
    assert!(!stuck.is_finished(), "the fsync waits for the hung drive");
    // Client 2: lookups, stats, reads and writes of other files go on.
    let url = s.url.clone();
    let r = within(LIVENESS, move || -> Result<(), String> {
        let c = Client::connect(&url).map_err(|e| e.to_string())?;
        c.stat("/mnt/b").map_err(|e| format!("stat: {e}"))?;
        let fd = c
            .open("/mnt/b", O_RDONLY, 0)
            .map_err(|e| format!("open: {e}"))?;
        let mut buf = vec![0u8; 100_000];
        c.pread(fd, &mut buf, 0).map_err(|e| format!("read: {e}"))?;
        if buf != pattern(100_000, 1) {
            return Err("read back wrong data".into());
        }
        c.close(fd).map_err(|e| e.to_string())?;
        let fd = c
            .open("/mnt/c", O_RDWR | O_CREAT, 0o644)
            .map_err(|e| format!("create: {e}"))?;
        c.pwrite(fd, b"other file", 0)
            .map_err(|e| format!("write: {e}"))?;
        c.read_dir("/mnt").map_err(|e| format!("readdir: {e}"))?;
        Ok(())
    });
    match r {
        Some(Ok(())) => {}
        Some(Err(e)) => panic!("beside a stuck fsync: {e}"),
        None => panic!(
            "an fsync stuck in host I/O stopped the other files of its file system \
             (nothing done within {LIVENESS:?}, a liveness deadline)"
        ),
    }
    let o = s.halt(&["-n"]);
    assert!(o.status.success(), "rump.halt -n: {}", stderr(&o));
    gone_after(&mut s, "rump.halt -n");
    let _ = stuck.join();
}
