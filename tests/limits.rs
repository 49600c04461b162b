//! Limits and exposure (docs/design.md): one local user must not be
//! able to wedge the server or hurt other users. Real `rump_server`
//! processes on private sockets.

mod common;

use rumpclient::Syscalls as _;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use netbsd_abi::errno::{EFBIG, ENOSPC};
use netbsd_abi::fcntl::{O_CREAT, O_RDWR, O_WRONLY};

fn raise_nofile() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, max)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, max, max);
    }
}

fn nofile() -> u64 {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(0, |(cur, _)| cur)
}

fn server_env(d: &Path, args: &[&str], env: &[(&'static str, &str)]) -> Server {
    Server::start_with(
        d,
        ServerOpts {
            args: args.iter().map(|s| s.to_string()).collect(),
            env: env.iter().map(|(k, v)| (*k, v.to_string())).collect(),
            ..Default::default()
        },
    )
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Read from a raw connection until EOF; how long it took (None: no EOF
/// within `limit`).
fn time_to_eof(s: &mut UnixStream, limit: Duration) -> Option<Duration> {
    let t = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut b = [0u8; 256];
    while t.elapsed() < limit {
        match s.read(&mut b) {
            Ok(0) => return Some(t.elapsed()),
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return Some(t.elapsed()),
        }
    }
    None
}

#[test]
fn idle_connections_never_lock_out_a_client() {
    raise_nofile();
    let want = 2000usize;
    assert!(
        nofile() >= want as u64 + 100,
        "RLIMIT_NOFILE (hard limit) {} is too small for {want} connections: raise it to run this test",
        nofile()
    );
    let d = tmpdir();
    let s = Server::start(d.path(), &[]);
    // The baseline: a new client's first call before any idle connection.
    let ((), baseline) = timed(|| {
        s.client().getpid().expect("getpid");
    });
    let t = Instant::now();
    let mut idle = Vec::with_capacity(want);
    for i in 0..want {
        match UnixStream::connect(&s.sock) {
            Ok(c) => idle.push(c),
            Err(e) => panic!("idle connection {i}: {e}"),
        }
    }
    eprintln!(
        "{want} idle connections in {:?}; server RSS {} KiB",
        t.elapsed(),
        rss_kib(s.pid())
    );
    let (pid, took) = timed(|| s.client().getpid().expect("getpid"));
    eprintln!("a real client after {want} idle connections: pid {pid} in {took:?} (before them: {baseline:?})");
    assert_within(
        "a new client's first call beside the idle connections",
        took,
        baseline,
        50,
        Duration::from_secs(3),
    );
    // The oldest idle connections were closed to make room.
    let mut closed = 0;
    for c in idle.iter_mut().take(50) {
        if time_to_eof(c, Duration::from_millis(200)).is_some() {
            closed += 1;
        }
    }
    assert!(closed > 0, "no idle connection was closed at the cap");
    drop(idle);
    let o = s.halt(&[]);
    assert!(o.status.success(), "halt: {}", stderr(&o));
}

#[test]
fn connection_cap_refuses_clearly_when_everyone_handshook() {
    let d = tmpdir();
    let s = server_env(d.path(), &[], &[("RUMP_MAX_CLIENTS", "2")]);
    // The readiness probe's connection holds a slot until the server
    // sees it close: take the two slots as they come free.
    let take = || {
        wait_for("a slot under the cap", Duration::from_secs(20), || {
            Client::connect(&s.url).ok()
        })
    };
    let a = take();
    // The baseline: what a connection that is let in costs.
    let (b, baseline) = timed(take);
    a.getpid().unwrap();
    b.getpid().unwrap();
    let (e, took) = timed(|| {
        Client::connect(&s.url)
            .err()
            .expect("a third client at a cap of 2 is refused")
    });
    eprintln!("third client: {e} after {took:?} (a connection let in: {baseline:?})");
    assert!(
        matches!(e, rumpclient::Error::Refused { .. }),
        "not a clear refusal: {e}"
    );
    // Refused at once, not left waiting for a slot.
    assert_within(
        "the refusal at the cap",
        took,
        baseline,
        20,
        Duration::from_secs(2),
    );
    drop(a);
    // The slot frees when a client leaves.
    let c = take();
    c.getpid().unwrap();
}

#[test]
fn handshake_deadline_closes_an_idle_connection() {
    let d = tmpdir();
    let s = server_env(d.path(), &[], &[("RUMP_HANDSHAKE_TIMEOUT", "1")]);
    let mut raw = UnixStream::connect(&s.sock).unwrap();
    let took =
        time_to_eof(&mut raw, Duration::from_secs(10)).expect("idle connection never closed");
    eprintln!("idle connection closed after {took:?}");
    // Not before the 1 s deadline (time_to_eof's 10 s is for liveness).
    assert!(
        took >= Duration::from_millis(800),
        "closed after {took:?}, before the deadline"
    );
    // A client that handshakes stays, however long it then idles.
    let c = s.client();
    // Not synchronization: the idle time past the deadline is the scenario.
    std::thread::sleep(Duration::from_millis(1600));
    c.getpid()
        .expect("a handshaken client is not subject to the deadline");
}

/// Prepared forks are bounded per user, and outlive the connection that
/// prepared them (NetBSD's `rumpclient_daemon()` exits the parent before
/// the child claims its fork) until the prefork deadline
/// (`RUMP_PREFORK_TIMEOUT`, 1 s here).
#[test]
fn prefork_cookies_are_bounded_per_user_and_outlive_their_preparer() {
    let d = tmpdir();
    // At -vv the server logs each connection it closes.
    let log = d.path().join("server.log");
    let s = Server::start_logged(
        d.path(),
        ServerOpts {
            args: vec!["-v".into(), "-v".into()],
            env: vec![("RUMP_PREFORK_TIMEOUT", "1".into())],
            ..Default::default()
        },
        Some(&log),
    );
    let c = s.client();
    let mut cookies = vec![];
    let err = loop {
        match c.prefork() {
            Ok(k) => cookies.push(k),
            Err(e) => break e,
        }
        assert!(cookies.len() <= 1000, "prefork is unbounded");
    };
    eprintln!("prefork refused after {}: {err}", cookies.len());
    assert!(!cookies.is_empty() && cookies.len() <= 64);
    // The refusal is not fatal: the client goes on, and a fork handshake
    // frees a slot.
    c.getpid().expect("client after refused prefork");
    let child = Client::connect_fork(&s.url, &cookies.pop().unwrap()).expect("fork handshake");
    child.getpid().unwrap();
    cookies.push(
        c.prefork()
            .expect("prefork after a fork handshake took one"),
    );
    // Per user: another connection of the same user finds no room.
    let c2 = s.client();
    assert!(c2.prefork().is_err(), "the bound is per user");
    drop(c2);
    // The preparer goes, and once the server has closed its connection
    // its child claims the fork.
    let parent_pid = c.getpid().unwrap();
    drop(c);
    wait_for_text(
        &log,
        &format!("(pid {parent_pid}) closed"),
        Duration::from_secs(20),
    );
    let late =
        Client::connect_fork(&s.url, &cookies[0]).expect("a fork claimed after its preparer left");
    let pid = late.getpid().unwrap();
    assert_ne!(pid, parent_pid, "the child has a process of its own");
    // Past the deadline the rest are released: their cookies are void.
    // Not synchronization: a delay the 1 s deadline must outlast.
    std::thread::sleep(Duration::from_millis(2500));
    let e = Client::connect_fork(&s.url, &cookies[1])
        .err()
        .expect("a fork unclaimed past the deadline is still valid");
    eprintln!("fork handshake past the deadline: {e}");
    // Memory comes back: many rounds of fill-up-and-leave do not grow.
    let round = |n: usize| {
        for _ in 0..n {
            let c = s.client();
            while c.prefork().is_ok() {}
            drop(c);
        }
        // Not synchronization: past the 1 s deadline the slots are
        // released, before RSS is read.
        std::thread::sleep(Duration::from_millis(2200));
    };
    round(2);
    let before = rss_kib(s.pid());
    round(10);
    let after = rss_kib(s.pid());
    eprintln!(
        "server RSS {before} KiB before 10 rounds of filled prefork slots, {after} KiB after"
    );
    assert!(
        after < before + 4096,
        "RSS grew from {before} to {after} KiB"
    );
    drop((child, late));
}

#[test]
fn rumpfs_metadata_counts_against_the_memory_limit() {
    let d = tmpdir();
    let s = Server::start(d.path(), &["-r", "2m"]);
    let c = s.client();
    c.mkdir("/many", 0o755).unwrap();
    let t = Instant::now();
    let mut n = 0;
    let err = loop {
        match c.open(
            format!("/many/an-empty-file-{n:07}"),
            O_WRONLY | O_CREAT,
            0o644,
        ) {
            Ok(fd) => {
                c.close(fd).unwrap();
                n += 1;
            }
            Err(e) => break e,
        }
        assert!(n < 100_000, "2 MiB held {n} empty files");
    };
    eprintln!(
        "{n} empty files under -r 2m, then: {err} ({:?})",
        t.elapsed()
    );
    assert!(err.is_errno(ENOSPC), "{err}");
    assert!(n > 1000);
    // Names and link targets count too; removing files gives room back.
    assert!(c.symlink(vec![b'x'; 900], "/many/l").is_err());
    for i in 0..10 {
        c.unlink(format!("/many/an-empty-file-{i:07}")).unwrap();
    }
    c.symlink(vec![b'x'; 900], "/many/l")
        .expect("symlink after unlinking");
}

#[test]
fn reg_drive_never_grows_past_its_size() {
    let d = tmpdir();
    let img = d.path().join("reg.img");
    let s = Server::start(
        d.path(),
        &[
            "-d",
            &format!("key=/r,hostpath={},size=1m,type=reg", img.display()),
        ],
    );
    let c = s.client();
    let fd = c.open("/r", O_RDWR, 0).unwrap();
    let m = 1u64 << 20;
    assert_eq!(
        c.pwrite(fd, &[7u8; 100], m as i64 - 10)
            .expect("write at the end"),
        10
    );
    let e = c.pwrite(fd, b"x", m as i64).unwrap_err();
    assert!(e.is_errno(EFBIG), "{e}");
    let e = c.pwrite(fd, b"x", 1 << 40).unwrap_err();
    assert!(e.is_errno(EFBIG), "{e}");
    let e = c.ftruncate(fd, 1 << 40).unwrap_err();
    assert!(e.is_errno(EFBIG), "{e}");
    c.ftruncate(fd, 4096).expect("shrink");
    c.ftruncate(fd, m as i64).expect("grow back to the size");
    assert_eq!(std::fs::metadata(&img).unwrap().len(), m);
}

#[test]
fn halt_removes_only_its_own_socket() {
    let d = tmpdir();
    let mut s = Server::start(d.path(), &[]);
    // Someone replaces the socket path with a file of their own.
    std::fs::remove_file(&s.sock).unwrap();
    std::fs::write(&s.sock, b"not yours").unwrap();
    s.signal(libc::SIGTERM);
    let st = s
        .wait_exit(Duration::from_secs(10))
        .expect("server exits on SIGTERM");
    assert!(st.success(), "{st}");
    assert_eq!(
        std::fs::read(&s.sock).expect("the other file survives halt"),
        b"not yours"
    );
    // Its own socket it does remove.
    let d2 = tmpdir();
    let s2 = Server::start(d2.path(), &[]);
    let o = s2.halt(&[]);
    assert!(o.status.success(), "{}", stderr(&o));
    wait_until(
        "the halted server's socket is removed",
        Duration::from_secs(20),
        || !s2.sock.exists(),
    );
}

/// Start `rump_server -s` under umask 022 with `env`; the socket's mode,
/// or the server's exit status and stderr if it did not start.
fn socket_mode_with(env: &[(&str, &str)]) -> Result<u32, (i32, String)> {
    let d = tmpdir();
    let sock = d.path().join("sock");
    let mut cmd = Command::new(RUMP_SERVER);
    cmd.arg("-s")
        .arg(format!("unix://{}", sock.display()))
        .stdin(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    // SAFETY: umask(2) is async-signal-safe and touches only the child.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let t = Instant::now();
    let r = loop {
        if let Some(st) = child.try_wait().unwrap() {
            let mut e = String::new();
            child.stderr.take().unwrap().read_to_string(&mut e).unwrap();
            break Err((st.code().unwrap_or(-1), e));
        }
        if UnixStream::connect(&sock).is_ok() {
            break Ok(std::fs::symlink_metadata(&sock).unwrap().mode() & 0o7777);
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "server did not come up"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = child.kill();
    let _ = child.wait();
    r
}

#[test]
fn socket_is_owner_only_unless_widened() {
    assert_eq!(
        socket_mode_with(&[]),
        Ok(0o600),
        "default socket mode under umask 022"
    );
    assert_eq!(socket_mode_with(&[("RUMP_SOCKET_MODE", "0660")]), Ok(0o660));
    let (code, msg) =
        socket_mode_with(&[("RUMP_SOCKET_MODE", "rw")]).expect_err("a bad mode is refused");
    eprintln!("bad RUMP_SOCKET_MODE: {msg}");
    assert_eq!(code, 1);
    assert!(msg.contains("RUMP_SOCKET_MODE"), "{msg}");
}

#[test]
fn second_server_on_a_served_image_is_refused() {
    let d = tmpdir();
    let img = d.path().join("disk.img");
    let spec = format!("key=/dk,hostpath={},size=4m", img.display());
    let s = Server::start(d.path(), &["-d", &spec]);
    let c = s.client();
    c.getpid().unwrap();
    let d2 = tmpdir();
    let o = Command::new(RUMP_SERVER)
        .args(["-s", "-d", &spec])
        .arg(format!("unix://{}", d2.path().join("sock").display()))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let msg = stderr(&o);
    eprintln!("second server: {msg}");
    assert_eq!(o.status.code(), Some(1), "{msg}");
    assert_eq!(
        msg.trim_end(),
        format!(
            "rump_server: drive /dk: {}: locked by another process (in use by another server?)",
            img.display()
        )
    );
    // Halting the first frees the image.
    let o = s.halt(&[]);
    assert!(o.status.success(), "{}", stderr(&o));
    drop(s);
    let s3 = Server::start(d2.path(), &["-d", &spec]);
    s3.client().getpid().unwrap();
}

/// Byte offset of `path`'s inode in a 1 KiB-block image (debugfs imap).
fn inode_offset(img: &Path, path: &str) -> u64 {
    let o = host_cmd("debugfs")
        .arg("-R")
        .arg(format!("imap {path}"))
        .arg(img)
        .output()
        .expect("debugfs");
    let out = String::from_utf8_lossy(&o.stdout);
    let words: Vec<&str> = out
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty())
        .collect();
    let after = |w: &str| {
        words
            .iter()
            .rposition(|x| *x == w)
            .and_then(|i| words.get(i + 1))
            .copied()
    };
    let block: u64 = after("block")
        .and_then(|b| b.parse().ok())
        .unwrap_or_else(|| panic!("imap {path}: {out}"));
    let off = after("offset")
        .and_then(|x| u64::from_str_radix(x.trim_start_matches("0x"), 16).ok())
        .expect("offset");
    block * 1024 + off
}

/// A hostile image: a directory whose size's high word claims
/// terabytes. Listing it through the server returns promptly, and other
/// clients and rump.halt are not held up meanwhile.
#[test]
fn directory_claiming_terabytes_does_not_wedge_the_server() {
    use std::os::unix::fs::FileExt;
    let d = tmpdir();
    let img = d.path().join("disk.img");
    mke2fs(&img, &["-b", "1024"], "8M");
    let o = host_cmd("debugfs")
        .args(["-w", "-R", "mkdir /d"])
        .arg(&img)
        .output()
        .unwrap();
    assert!(o.status.success());
    let at = inode_offset(&img, "/d") + 108;
    let f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
    f.write_all_at(&0x100u32.to_le_bytes(), at).unwrap();
    drop(f);
    let s = Server::start(
        d.path(),
        &[
            "-d",
            &format!("key=/dk,hostpath={},size=host", img.display()),
        ],
    );
    let c = s.client();
    c.mkdir("/mnt", 0o755).unwrap();
    c.mount_ext2("/mnt", 0, "/dk").expect("mount");
    // Baselines, before the lister starts: the same calls on a healthy
    // directory, and the other client's work alone.
    let ((), base_list) = timed(|| {
        c.read_dir("/mnt").expect("list /mnt");
        let _ = c.stat("/mnt/nothing-here");
    });
    let ((), base_other) = timed(|| {
        for _ in 0..50 {
            c.getpid().unwrap();
            c.stat("/mnt").unwrap();
        }
    });
    let lister = {
        let url = s.url.clone();
        std::thread::spawn(move || {
            let c = Client::connect(&url).unwrap();
            let mut worst = Duration::ZERO;
            for _ in 0..20 {
                let t = Instant::now();
                let r = c.read_dir("/mnt/d");
                let _ = c.stat("/mnt/d/nothing-here");
                worst = worst.max(t.elapsed());
                if let Ok(v) = &r {
                    assert!(v.len() <= 2, "{} entries in an empty directory", v.len());
                }
            }
            worst
        })
    };
    let t = Instant::now();
    for _ in 0..50 {
        c.getpid().unwrap();
        c.stat("/mnt").unwrap();
    }
    let other = t.elapsed();
    let worst = lister.join().unwrap();
    eprintln!("listing + lookup in the terabyte directory: worst {worst:?}; another client's 50 getpid+stat: {other:?}");
    assert_within(
        "listing + lookup in the terabyte directory",
        worst,
        base_list,
        100,
        Duration::from_secs(1),
    );
    assert_within(
        "another client's 50 getpid+stat",
        other,
        base_other,
        20,
        Duration::from_secs(2),
    );
    // The baseline: a tool run (start, connect, one call, exit); the halt
    // is that plus flushing an 8 MiB image, and must not walk terabytes.
    let (o, base_tool) = timed(|| s.tool(RUMPCTL, &["stat", "/mnt"]));
    assert!(o.status.success(), "rumpctl stat: {}", stderr(&o));
    let (o, took) = timed(|| s.halt(&[]));
    assert!(o.status.success(), "halt: {}", stderr(&o));
    assert_within(
        "rump.halt beside the terabyte directory",
        took,
        base_tool,
        50,
        Duration::from_secs(5),
    );
}

/// 40 connections that each send a header claiming a 64 MiB request and
/// nothing more: a claim commits no memory (no request is that large, so
/// the server answers `MALFORMED` and closes each at once, having read
/// nothing of it), and a fresh client is served.
#[test]
fn frame_length_claims_commit_no_memory() {
    use netbsd_abi::sp::{Class, RawHeader, Type, MAX_FRAME};
    use std::io::Write;
    let d = tmpdir();
    let s = server_env(d.path(), &[], &[]);
    // Warm up: one client served, so what follows measures only the
    // claims; its cost is the baseline for the fresh client after them.
    let ((), baseline) = timed(|| {
        s.client().getpid().unwrap();
    });
    let before = rss_kib(s.pid());
    let mut conns: Vec<UnixStream> = (0..40)
        .map(|i| {
            let mut u = UnixStream::connect(&s.sock).expect("connect");
            let h = RawHeader {
                len: MAX_FRAME,
                reqno: i,
                class: Class::Req as u16,
                ty: Type::Handshake as u16,
                arg: 0,
            };
            u.write_all(&h.encode()).expect("send header");
            u
        })
        .collect();
    // Each claim is answered and its connection closed: the server has
    // read every header.
    for u in &mut conns {
        assert!(
            time_to_eof(u, Duration::from_secs(30)).is_some(),
            "a 64 MiB claim is refused and closed"
        );
    }
    let after = rss_kib(s.pid());
    let ((), served) = timed(|| {
        s.client().getpid().expect("a fresh client is served");
    });
    eprintln!(
        "RSS {before} KiB -> {after} KiB with 40 claims of {MAX_FRAME} bytes; fresh client in {served:?}"
    );
    assert!(
        after.saturating_sub(before) <= 32 << 10,
        "RSS grew by {} KiB for 40 header-only frames",
        after - before
    );
    assert_within(
        "a fresh client after the claims",
        served,
        baseline,
        20,
        Duration::from_secs(2),
    );
}

/// A raw sysproxy connection past the banner, and its frame reader.
struct Raw {
    u: UnixStream,
    r: netbsd_abi::sp::reader::FrameReader,
}

impl Raw {
    fn connect(sock: &Path) -> Raw {
        use netbsd_abi::sp::reader::{Fd, FrameReader};
        use std::os::fd::AsFd;
        let u = UnixStream::connect(sock).expect("connect");
        let mut r = FrameReader::new();
        while r.byte(&mut Fd(u.as_fd())).expect("banner") != b'\n' {}
        Raw { u, r }
    }

    /// Connect and handshake as a guest named `name`.
    fn guest(sock: &Path, name: &str) -> Raw {
        use netbsd_abi::sp::{encode_frame, Class, Handshake, Type};
        let mut raw = Raw::connect(sock);
        let name = format!("{name}\0");
        raw.send(&encode_frame(
            Class::Req,
            Type::Handshake,
            1,
            Handshake::Guest as u32,
            &[name.as_bytes()],
        ));
        let (h, _) = raw.frame().expect("handshake answer");
        assert_eq!(h.class, Class::Resp, "handshake accepted");
        raw
    }

    fn send(&mut self, bytes: &[u8]) {
        use std::io::Write;
        (&self.u).write_all(bytes).expect("send");
    }

    /// The next frame and its payload (None: the connection ended).
    fn frame(&mut self) -> Option<(netbsd_abi::sp::Header, Vec<u8>)> {
        use netbsd_abi::sp::reader::Fd;
        use std::os::fd::AsFd;
        let h = self.r.header(&mut Fd(self.u.as_fd())).ok()?;
        let p = self
            .r
            .read_vec(&mut Fd(self.u.as_fd()), h.payload_len())
            .ok()?;
        Some((h, p))
    }
}

/// The request budget is server-wide (`RUMP_REQUEST_BUDGET`, 4 MiB here):
/// 40 connections that each send most of a 448 KiB request and stall hold
/// at most the budget (plus a small free part each); the requests beyond
/// it are answered `NOMEM` once their bytes are in, their connections
/// stay usable, and a fresh client is served, inline writes included
/// (our client sends them again as small requests).
#[test]
fn request_bytes_have_a_server_wide_budget() {
    use netbsd_abi::sp::{Class, ProtoError, RawHeader, Type, HDRSZ};
    const CLAIM: usize = 448 << 10;
    let d = tmpdir();
    let s = server_env(d.path(), &[], &[("RUMP_REQUEST_BUDGET", "4m")]);
    // A fresh client's file work, with the budget free: the baseline.
    let fresh_client = |name: &str| {
        let c = s.client();
        let data = pattern(200 << 10, 7);
        let fd = c.open(name, O_CREAT | O_RDWR, 0o644).expect("open");
        assert_eq!(c.pwrite(fd, &data, 0).expect("write"), data.len());
        let mut back = vec![0u8; data.len()];
        assert_eq!(c.pread(fd, &mut back, 0).expect("read"), data.len());
        assert!(back == data, "the file reads back");
    };
    let ((), baseline) = timed(|| fresh_client("/baseline.bin"));
    let before = rss_kib(s.pid());
    let body = vec![0x5au8; CLAIM];
    let mut conns: Vec<Raw> = (0..40)
        .map(|i| {
            let mut raw = Raw::connect(&s.sock);
            let h = RawHeader {
                len: (HDRSZ + CLAIM) as u64,
                reqno: 1000 + i,
                class: Class::Req as u16,
                ty: Type::Handshake as u16,
                arg: 0,
            };
            raw.send(&h.encode());
            // All but the last byte: the request stays incomplete.
            raw.send(&body[..CLAIM - 1]);
            raw
        })
        .collect();
    let held = rss_kib(s.pid());
    // A fresh client while the budget is spent: a 200 KiB file goes in
    // (its inline write refused, sent again without) and reads back.
    let ((), served) = timed(|| fresh_client("/budget.bin"));
    // Now complete every request: those beyond the budget get NOMEM.
    let mut nomem = 0;
    for raw in &mut conns {
        raw.send(&body[..1]);
        // A request that fit is a (bad) handshake: whatever its answer,
        // it is not NOMEM.
        if let Some((h, _)) = raw.frame() {
            if h.class == Class::Error && h.arg == ProtoError::NoMem as u32 {
                nomem += 1;
            }
        }
    }
    eprintln!(
        "RSS {before} KiB -> {held} KiB holding 40 x {CLAIM} request bytes; {nomem} refused NOMEM; fresh client in {served:?}"
    );
    // The budget (4 MiB), 64 KiB free per request, slack for the rest.
    assert!(
        held.saturating_sub(before) <= 16 << 10,
        "RSS grew by {} KiB",
        held - before
    );
    // At 192 KiB charged at least per request that fits, at most 21 fit.
    assert!(nomem >= 19, "only {nomem} requests were refused");
    assert_within(
        "a fresh client's file work with the budget spent",
        served,
        baseline,
        20,
        Duration::from_secs(2),
    );
}

/// Two kernels in one process, each serving with its own limits: one
/// connection's syscalls stuck in unanswered copy requests run at most
/// `max_inflight` at once on each, 2 on one and 5 on the other, and the
/// rest are answered `TRYAGAIN`.
#[test]
fn two_kernels_in_one_process_enforce_their_own_limits() {
    use netbsd_abi::sp::{encode_frame, Class, ProtoError, Type};
    use rumpuser::sp::ServerConfig;
    let d = tmpdir();
    let mut servers = Vec::new();
    for (name, inflight) in [("a", 2usize), ("b", 5)] {
        let mut k = rumprun::Rump::builder()
            .ncpu(1)
            .boot()
            .expect("boot an embedded kernel");
        let sock = d.path().join(format!("{name}.sock"));
        let cfg = ServerConfig {
            max_inflight: inflight,
            ..ServerConfig::default()
        };
        k.serve_with(&format!("unix://{}", sock.display()), cfg)
            .expect("serve");
        servers.push((k, sock, inflight));
    }
    for (_k, sock, inflight) in &servers {
        let mut raw = Raw::guest(sock, "stuck");
        // mkdir(path, 0755) with a path only the client has: a
        // copyinstr request the client never answers.
        let mut args = [0u8; 16];
        args[..8].copy_from_slice(&0x7000_0000u64.to_le_bytes());
        args[8..].copy_from_slice(&0o755u64.to_le_bytes());
        const N: usize = 12;
        let mut all = Vec::new();
        for i in 0..N {
            all.extend_from_slice(&encode_frame(
                Class::Req,
                Type::Syscall,
                100 + i as u64,
                136,
                &[&args],
            ));
        }
        raw.send(&all);
        let (mut copies, mut again) = (0, 0);
        while copies + again < N {
            match raw.frame().expect("an answer") {
                (h, _) if h.class == Class::Req && h.ty == Type::Copyinstr => copies += 1,
                (h, _) if h.class == Class::Error => {
                    assert_eq!(h.arg, ProtoError::TryAgain as u32);
                    again += 1;
                }
                (h, _) => panic!("unexpected frame {h:?}"),
            }
        }
        assert_eq!(
            copies,
            *inflight,
            "{}: syscalls running at once",
            sock.display()
        );
    }
}

/// A file whose block pointers (direct and indirect) point past the end of
/// the file system, into the rest of the drive: reads and writes of it
/// fail with EIO, the server goes on, and no byte outside the file system
/// changes.
#[test]
fn block_pointers_outside_the_file_system_give_eio_and_touch_nothing() {
    use netbsd_abi::errno::EIO;
    use std::os::unix::fs::FileExt;
    let d = tmpdir();
    let img = d.path().join("disk.img");
    // An 8 MiB file system at the start of a 16 MiB drive.
    std::fs::File::create(&img)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    mke2fs(&img, &["-b", "1024"], "8M");
    let data = d.path().join("data");
    std::fs::write(&data, pattern(20 << 10, 1)).unwrap();
    let dbg = |cmd: &str| {
        let o = host_cmd("debugfs")
            .args(["-w", "-R", cmd])
            .arg(&img)
            .output()
            .unwrap();
        assert!(o.status.success(), "debugfs {cmd}: {}", stderr(&o));
    };
    dbg(&format!("write {} f", data.display()));
    dbg(&format!("write {} g", data.display()));
    // f: a direct pointer past the file system; g: its indirect block.
    dbg("set_inode_field f block[0] 12000");
    dbg("set_inode_field g block[IND] 12500");
    let outside = read_at(&img, 8 << 20, 8 << 20);
    let s = Server::start(
        d.path(),
        &[
            "-d",
            &format!("key=/dk,hostpath={},size=host", img.display()),
        ],
    );
    let c = s.client();
    c.mkdir("/mnt", 0o755).unwrap();
    c.mount_ext2("/mnt", 0, "/dk").expect("mount");
    let mut buf = vec![0u8; 4096];
    for (path, at) in [("/mnt/f", 0i64), ("/mnt/g", 13 << 10)] {
        let fd = c.open(path, O_RDWR, 0).unwrap();
        let r = c.pread(fd, &mut buf, at);
        assert!(
            matches!(r, Err(rumpclient::Error::Errno(e)) if e.0 == EIO),
            "read {path} at {at}: {r:?}"
        );
        let w = c.pwrite(fd, b"must not land", at);
        assert!(
            matches!(w, Err(rumpclient::Error::Errno(e)) if e.0 == EIO),
            "write {path} at {at}: {w:?}"
        );
        c.close(fd).unwrap();
    }
    // The server serves on; a sync and a halt write nothing outside.
    c.getpid().unwrap();
    c.sync().unwrap();
    drop(c);
    let o = s.halt(&[]);
    assert!(o.status.success(), "rump.halt: {}", stderr(&o));
    let now = read_at(&img, 8 << 20, 8 << 20);
    assert!(now == outside, "bytes outside the file system changed");
    let f = std::fs::File::open(&img).unwrap();
    let mut probe = [0u8; 13];
    f.read_exact_at(&mut probe, 12000 << 10).unwrap();
    assert_ne!(&probe, b"must not land");
}

/// One client with 1000 syscalls whose copy requests it never answers:
/// at most `RUMP_MAX_INFLIGHT` (64) run at once, the rest are answered
/// `TRYAGAIN`; the server stays under 256 threads, a fresh client is
/// served at once, and the stuck syscalls fail with `EFAULT` once the copy
/// deadline (`RUMP_COPY_TIMEOUT`, 6 s here) passes.
#[test]
fn unanswered_copy_requests_are_capped_and_time_out() {
    use netbsd_abi::errno::EFAULT;
    use netbsd_abi::sp::reader::{Fd, FrameReader};
    use netbsd_abi::sp::{encode_frame, Class, Handshake, ProtoError, SysResp, Type};
    use std::io::Write;
    use std::os::fd::AsFd;
    let d = tmpdir();
    // A copy deadline well above a loaded machine's hiccups: a fresh
    // client served only once the stuck calls fail would take that long.
    let s = server_env(d.path(), &[], &[("RUMP_COPY_TIMEOUT", "6")]);
    // The baseline: a fresh client before anything is stuck.
    let ((), baseline) = timed(|| {
        s.client().getpid().expect("getpid");
    });
    let u = UnixStream::connect(&s.sock).expect("connect");
    let mut r = FrameReader::new();
    let fd = Fd(u.as_fd());
    loop {
        if r.byte(&mut Fd(u.as_fd())).expect("banner") == b'\n' {
            break;
        }
    }
    (&u).write_all(&encode_frame(
        Class::Req,
        Type::Handshake,
        1,
        Handshake::Guest as u32,
        &[b"stuck\0"],
    ))
    .unwrap();
    let h = r.header(&mut Fd(u.as_fd())).expect("handshake answer");
    r.skip(&mut Fd(u.as_fd()), h.payload_len()).unwrap();
    // mkdir(path, 0755) with a path only the client has: a copyinstr
    // request the client never answers.
    let mut args = [0u8; 16];
    args[..8].copy_from_slice(&0x7000_0000u64.to_le_bytes());
    args[8..].copy_from_slice(&0o755u64.to_le_bytes());
    const N: u64 = 1000;
    let mut all = Vec::new();
    for i in 0..N {
        all.extend_from_slice(&encode_frame(
            Class::Req,
            Type::Syscall,
            100 + i,
            136,
            &[&args],
        ));
    }
    (&u).write_all(&all).unwrap();
    // Read what comes back, answering nothing.
    let (mut copies, mut again, mut efault) = (0u64, 0u64, 0u64);
    let t0 = Instant::now();
    let mut threads_max = 0u64;
    let mut fresh: Option<Duration> = None;
    u.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    while t0.elapsed() < Duration::from_secs(20) && efault < copies.max(1) {
        let threads = std::fs::read_to_string(format!("/proc/{}/status", s.pid()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        threads_max = threads_max.max(threads);
        if fresh.is_none() && copies >= 64 {
            let t = Instant::now();
            let c = s.client();
            c.getpid().expect("a fresh client is served");
            fresh = Some(t.elapsed());
        }
        let h = match r.header(&mut fd.clone()) {
            Ok(h) => h,
            Err(_) => continue,
        };
        let p = r.read_vec(&mut fd.clone(), h.payload_len()).unwrap();
        match (h.class, h.ty) {
            (Class::Req, Type::Copyinstr) => copies += 1,
            (Class::Error, _) => {
                assert_eq!(h.arg, ProtoError::TryAgain as u32, "error frame");
                again += 1;
            }
            (Class::Resp, Type::Syscall) => {
                let sr = SysResp::decode(&p).expect("syscall response");
                assert_eq!(sr.error, EFAULT, "a stuck mkdir fails with EFAULT");
                efault += 1;
            }
            other => panic!("unexpected frame {other:?}"),
        }
    }
    eprintln!(
        "{copies} copy requests, {again} TRYAGAIN, {efault} EFAULT after {:?}; at most {threads_max} threads; fresh client in {fresh:?}",
        t0.elapsed()
    );
    assert!(copies > 0 && copies <= 64, "{copies} syscalls ran at once");
    assert_eq!(copies + again, N, "every request answered or running");
    assert_eq!(
        efault, copies,
        "every stuck syscall failed after the deadline"
    );
    assert!(threads_max <= 256, "{threads_max} server threads");
    let fresh = fresh.expect("a fresh client was tried");
    // Served beside the stuck calls, not after their 6 s copy deadline
    // (the floor is half of it).
    assert_within(
        "a fresh client beside 64 stuck syscalls",
        fresh,
        baseline,
        20,
        Duration::from_secs(3),
    );
}
