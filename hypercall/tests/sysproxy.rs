//! Sysproxy end to end: the server (`rumpuser::sp`) driven by a stand-in
//! kernel, talked to by `rumpclient` and by raw sockets.
//!
//! Most tests share one in-process server. Tests that end a server (halt)
//! run it in a child process (this binary re-run with `SP_CHILD` set), and
//! the killed-client test runs its client in a child process.

use rumpclient::Syscalls as _;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use netbsd_abi::errno;
use netbsd_abi::sp::{self as wire, Class, Handshake, Header, ProtoError, SysResp, Type, HDRSZ};
use rumpclient::{addr_of, Client, Error, Region};
use rumpuser::sp;
use testkit::standin::*;

const OSTYPE: &str = "NetBSD";
const OSRELEASE: &str = "7.99.34";
const MACHINE: &str = "amd64";

/// A private directory, removed when dropped.
fn tmpdir(tag: &str) -> testkit::tmp::TempDir {
    testkit::tmp::TempDir::new(&format!("sysproxy-{tag}"))
}

struct Shared {
    url: String,
    path: PathBuf,
    /// Holds the socket's directory for the life of the test process.
    _dir: testkit::tmp::TempDir,
}

/// The in-process server most tests share.
fn server() -> &'static Shared {
    static S: OnceLock<Shared> = OnceLock::new();
    S.get_or_init(|| {
        install();
        let dir = tmpdir("main");
        let path = dir.path("sp.sock");
        let url = format!("unix://{}", path.display());
        sp::init(&url, OSTYPE, OSRELEASE, MACHINE).expect("sp::init");
        Shared {
            url,
            path,
            _dir: dir,
        }
    })
}

fn client() -> Client {
    Client::connect(&server().url).expect("connect")
}

// --- raw socket helpers -------------------------------------------------------

struct Raw {
    s: UnixStream,
}

impl Raw {
    fn connect(path: &std::path::Path) -> Raw {
        let s = UnixStream::connect(path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Raw { s }
    }

    fn banner(&mut self) -> Vec<u8> {
        let mut v = Vec::new();
        let mut b = [0u8; 1];
        while !v.ends_with(b"\n") {
            self.s.read_exact(&mut b).unwrap();
            v.push(b[0]);
        }
        v
    }

    fn send(&mut self, b: &[u8]) {
        self.s.write_all(b).unwrap();
    }

    fn frame(&mut self, class: Class, ty: Type, reqno: u64, arg: u32, payload: &[u8]) {
        self.send(&wire::encode_frame(class, ty, reqno, arg, &[payload]));
    }

    /// Read one frame; `None` at EOF.
    fn recv(&mut self) -> Option<(Header, Vec<u8>)> {
        let mut h = [0u8; HDRSZ];
        match self.s.read_exact(&mut h) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return None,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
            Err(e) => panic!("raw recv: {e}"),
        }
        let hdr = Header::decode(&h).expect("server frame decodes");
        let mut p = vec![0u8; hdr.payload_len()];
        self.s.read_exact(&mut p).unwrap();
        Some((hdr, p))
    }

    fn expect_eof(&mut self) {
        let mut b = [0u8; 1];
        match self.s.read(&mut b) {
            Ok(0) => {}
            Ok(_) => panic!("expected EOF, got data"),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("expected EOF, got {e}"),
        }
    }

    /// Banner + guest handshake; returns the pid.
    fn guest(path: &std::path::Path) -> (Raw, i32) {
        let mut r = Raw::connect(path);
        r.banner();
        r.frame(
            Class::Req,
            Type::Handshake,
            1,
            Handshake::Guest as u32,
            b"raw\0",
        );
        let (h, p) = r.recv().unwrap();
        assert_eq!((h.class, h.ty, h.reqno), (Class::Resp, Type::Handshake, 1));
        assert_eq!(wire::i32_at(&p), Some(0));
        r.frame(Class::Req, Type::Syscall, 2, 20, &[]);
        let (h, p) = r.recv().unwrap();
        assert_eq!((h.class, h.ty, h.reqno), (Class::Resp, Type::Syscall, 2));
        let resp = SysResp::decode(&p).unwrap();
        assert_eq!(resp.error, 0);
        (r, resp.retval[0] as i32)
    }

    /// Expect an ERROR frame with `err`, then EOF.
    fn expect_error_then_eof(&mut self, err: ProtoError) {
        let (h, _) = self.recv().expect("an error frame before EOF");
        assert_eq!(h.class, Class::Error, "{h:?}");
        assert_eq!(ProtoError::from_u32(h.arg), Some(err), "{h:?}");
        self.expect_eof();
    }
}

fn still_serving() {
    let c = client();
    let pid = c.getpid().unwrap();
    assert!(pid > 1);
    let data = b"still here".to_vec();
    let mut out = vec![0u8; data.len()];
    let args = [addr_of(&data), data.len() as u64, addr_of(&out)];
    c.syscall(
        SYS_ECHO,
        &args,
        &mut [Region::In(&data), Region::Out(&mut out)],
    )
    .unwrap();
    assert_eq!(out, data);
}

// --- tests ---------------------------------------------------------------------

#[test]
fn banner_and_pids() {
    let s = server();
    let mut r = Raw::connect(&s.path);
    assert_eq!(r.banner(), b"RUMPSP-0.4-NetBSD-7.99.34/amd64\n");
    let a = client();
    let b = client();
    let (pa, pb) = (a.getpid().unwrap(), b.getpid().unwrap());
    assert!(pa > 1 && pb > 1);
    assert_ne!(pa, pb);
    assert_eq!(a.getpid().unwrap(), pa);
    // Relative unix URLs and missing servers give Unix-style messages.
    let e = Client::connect("unix:///nonexistent/x.sock").err().unwrap();
    assert_eq!(
        e.to_string(),
        "connect unix:///nonexistent/x.sock: No such file or directory"
    );
    assert!(matches!(Client::connect("bogus"), Err(Error::Url { .. })));
}

#[test]
fn copy_one_mib_round_trip() {
    let c = client();
    let data: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let mut out = vec![0u8; data.len()];
    let args = [addr_of(&data), data.len() as u64, addr_of(&out)];
    let r = c
        .syscall(
            SYS_ECHO,
            &args,
            &mut [Region::In(&data), Region::Out(&mut out)],
        )
        .unwrap();
    assert_eq!(r[0], 1 << 20);
    assert!(out == data, "1 MiB echo differs");

    // Memory the caller did not register is refused: copyin → EFAULT.
    let mut out2 = vec![0u8; 16];
    let args = [addr_of(&data), 16, addr_of(&out2)];
    let e = c
        .syscall(SYS_ECHO, &args, &mut [Region::Out(&mut out2)])
        .unwrap_err();
    assert!(e.is_errno(errno::EFAULT), "{e:?}");
    // ...and so is a copyout outside the regions.
    let args = [addr_of(&data), 16, addr_of(&data) + 64];
    let e = c
        .syscall(SYS_ECHO, &args, &mut [Region::In(&data[..16])])
        .unwrap_err();
    assert!(e.is_errno(errno::EFAULT), "{e:?}");
    // The connection is still fine.
    assert!(c.getpid().unwrap() > 1);
}

#[test]
fn copyinstr_bounded() {
    let c = client();
    let s = b"hello, world\0and more after the NUL";
    let mut out = [0xffu8; 64];
    let args = [addr_of(s), 5, addr_of(&out)];
    let r = c
        .syscall(
            SYS_INSTR,
            &args,
            &mut [Region::In(s), Region::Out(&mut out)],
        )
        .unwrap();
    assert_eq!(r[0], 5);
    assert_eq!(&out[..5], b"hello");
    assert_eq!(out[5], 0xff);
    let args = [addr_of(s), 100, addr_of(&out)];
    let r = c
        .syscall(
            SYS_INSTR,
            &args,
            &mut [Region::In(s), Region::Out(&mut out)],
        )
        .unwrap();
    assert_eq!(r[0], 13);
    assert_eq!(&out[..13], b"hello, world\0");
    // A string that runs off its region without a NUL is a fault.
    let unterminated = b"abc";
    let args = [addr_of(unterminated), 100, addr_of(&out)];
    let e = c
        .syscall(
            SYS_INSTR,
            &args,
            &mut [Region::In(unterminated), Region::Out(&mut out)],
        )
        .unwrap_err();
    assert!(e.is_errno(errno::EFAULT), "{e:?}");
}

#[test]
fn concurrent_64_clients_1000_syscalls() {
    let url = server().url.clone();
    let threads: Vec<_> = (0..64)
        .map(|t| {
            let url = url.clone();
            std::thread::spawn(move || {
                let c = Client::connect(&url).unwrap();
                let pid = c.getpid().unwrap();
                for i in 0..1000u32 {
                    if i % 2 == 0 {
                        assert_eq!(c.getpid().unwrap(), pid);
                    } else {
                        let data = [(t as u8) ^ (i as u8); 24];
                        let mut out = [0u8; 24];
                        let args = [addr_of(&data), 24, addr_of(&out)];
                        let r = c
                            .syscall(
                                SYS_ECHO,
                                &args,
                                &mut [Region::In(&data), Region::Out(&mut out)],
                            )
                            .unwrap();
                        assert_eq!(r[0], 24);
                        assert_eq!(out, data);
                    }
                }
                pid
            })
        })
        .collect();
    let mut pids: Vec<i32> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    pids.sort();
    pids.dedup();
    assert_eq!(pids.len(), 64, "every client has its own process");
}

/// Run this test binary as a helper process (see `child_entry`).
fn spawn_child(mode: &str, url: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_entry",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SP_CHILD", mode)
        .env("SP_URL", url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

/// Kills and reaps a child on every path out of a test.
struct Reap(Child);
impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Helper-process entry: a client stuck in a syscall (`waitdeath`), or a
/// server of its own (`server`). Not a test: ignored in a normal run (so
/// it is never counted as one that passed); [`spawn_child`] runs it with
/// `--ignored` and `SP_CHILD` set.
#[test]
#[ignore = "helper process entry, run by spawn_child with SP_CHILD set"]
fn child_entry() {
    let mode = std::env::var("SP_CHILD")
        .expect("child_entry is a helper process entry, run by spawn_child (SP_CHILD unset)");
    let url = std::env::var("SP_URL").unwrap();
    match mode.as_str() {
        "waitdeath" => {
            let c = Client::connect(&url).unwrap();
            let b = [1u8; 1];
            let _ = c.syscall(SYS_WAITDEATH, &[addr_of(&b)], &mut [Region::In(&b)]);
            std::process::exit(3);
        }
        "server" => {
            install();
            sp::init(&url, OSTYPE, OSRELEASE, MACHINE).unwrap();
            // Not synchronization: serve until the parent halts or kills
            // us, and never outlive a stuck test.
            std::thread::sleep(Duration::from_secs(120));
            std::process::exit(4);
        }
        "finished" => {
            // is_finished: false while serving, true after fini, and the
            // halting host can see it from any thread.
            install();
            assert!(!sp::is_finished());
            sp::init(&url, OSTYPE, OSRELEASE, MACHINE).unwrap();
            assert!(sp::is_serving() && !sp::is_finished());
            std::thread::spawn(|| sp::fini(sp::ClientHandle::NULL, 0))
                .join()
                .unwrap();
            assert!(sp::is_finished() && !sp::is_serving());
            std::process::exit(0);
        }
        m => panic!("unknown child mode {m}"),
    }
}

#[test]
fn killed_client_is_released() {
    let s = server();
    let st = install();
    let before: Vec<i32> = st.waiting.lock().unwrap().clone();
    let child = Reap(spawn_child("waitdeath", &s.url));
    let mut pid = None;
    assert!(st.wait_for(Duration::from_secs(20), |st| {
        pid = st
            .waiting
            .lock()
            .unwrap()
            .iter()
            .copied()
            .find(|p| !before.contains(p));
        pid.is_some()
    }));
    let pid = pid.unwrap();
    assert!(st.is_live(pid));
    // Kill it mid-syscall.
    let mut child = child;
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    assert!(
        st.wait_for(Duration::from_secs(20), |st| st.was_released(pid)),
        "process {pid} released"
    );
    assert!(!st.is_live(pid));
    still_serving();
}

#[test]
fn malformed_input_closes_only_that_connection() {
    let s = server();
    let st = install();
    let keep = client();
    let kpid = keep.getpid().unwrap();

    let bad = |name: &str, f: &dyn Fn(&mut Raw), expect: Option<ProtoError>| {
        let (mut r, pid) = Raw::guest(&s.path);
        f(&mut r);
        match expect {
            Some(e) => r.expect_error_then_eof(e),
            None => r.expect_eof(),
        }
        assert!(
            st.wait_for(Duration::from_secs(10), |st| st.was_released(pid)),
            "{name}: process released"
        );
        assert_eq!(
            keep.getpid().unwrap(),
            kpid,
            "{name}: other client unaffected"
        );
    };
    let hdr = |len: u64, class: u16, ty: u16, arg: u32| {
        wire::RawHeader {
            len,
            reqno: 77,
            class,
            ty,
            arg,
        }
        .encode()
    };
    bad(
        "short frame",
        &|r| r.send(&hdr(10, 0, 1, 20)),
        Some(ProtoError::MalformedRequest),
    );
    bad(
        "past the cap",
        &|r| r.send(&hdr(wire::MAX_FRAME + 1, 0, 1, 20)),
        Some(ProtoError::MalformedRequest),
    );
    bad(
        "unknown class",
        &|r| r.send(&hdr(24, 3, 1, 20)),
        Some(ProtoError::MalformedRequest),
    );
    bad(
        "unknown type",
        &|r| r.send(&hdr(24, 0, 9, 0)),
        Some(ProtoError::MalformedRequest),
    );
    bad(
        "client sends a copyin request",
        &|r| r.send(&hdr(24, 0, 2, 0)),
        Some(ProtoError::MalformedRequest),
    );
    bad(
        "short argument block",
        &|r| {
            r.frame(
                Class::Req,
                Type::Syscall,
                5,
                netbsd_abi::syscall::SYS_READ as u32,
                &[0u8; 8],
            )
        },
        Some(ProtoError::MalformedRequest),
    );
    bad(
        "truncated frame then close",
        &|r| {
            let mut f = hdr(100, 0, 1, 20).to_vec();
            f.extend_from_slice(&[0u8; 10]);
            r.send(&f);
            r.s.shutdown(std::net::Shutdown::Write).unwrap();
        },
        None,
    );

    // Before the handshake: garbage, and a valid frame that is not one.
    let mut r = Raw::connect(&s.path);
    r.banner();
    r.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    r.expect_error_then_eof(ProtoError::MalformedRequest);
    let mut r = Raw::connect(&s.path);
    r.banner();
    r.frame(Class::Req, Type::Syscall, 1, 20, &[]);
    r.expect_error_then_eof(ProtoError::Auth);
    let mut r = Raw::connect(&s.path);
    r.banner();
    r.frame(Class::Req, Type::Handshake, 1, 42, &[]);
    r.expect_error_then_eof(ProtoError::Auth);
    let mut r = Raw::connect(&s.path);
    r.banner();
    r.frame(
        Class::Req,
        Type::Handshake,
        1,
        Handshake::Fork as u32,
        &[0u8; 7],
    );
    r.expect_error_then_eof(ProtoError::MalformedRequest);
    still_serving();
}

#[test]
fn concurrent_requests_on_one_connection() {
    // A multithreaded NetBSD client may have several syscalls in flight on
    // one connection; one blocked in the kernel must not stall the others.
    let s = server();
    let st = install();
    let (mut r, pid) = Raw::guest(&s.path);
    r.frame(Class::Req, Type::Syscall, 10, SYS_GATE as u32, &[]);
    r.frame(Class::Req, Type::Syscall, 11, 20, &[]);
    // The order of the answers is the proof, with no clock: the gate
    // opens only after getpid's answer arrives, so had getpid waited for
    // the blocked call, the gate's own 10 s timeout would answer 10 first.
    let (h, p) = r.recv().unwrap();
    assert_eq!(
        (h.class, h.reqno),
        (Class::Resp, 11),
        "getpid answered while the gate syscall blocks"
    );
    assert_eq!(SysResp::decode(&p).unwrap().retval[0], pid as i64);
    st.gate.store(true, std::sync::atomic::Ordering::SeqCst);
    let (h, p) = r.recv().unwrap();
    assert_eq!((h.class, h.reqno), (Class::Resp, 10));
    assert_eq!(SysResp::decode(&p).unwrap().retval[0], 5);
}

#[test]
fn fork_and_exec_handshakes() {
    let s = server();
    let st = install();
    let parent = client();
    let ppid = parent.getpid().unwrap();
    parent.syscall(SYS_SETTOKEN, &[42], &mut []).unwrap();
    let cookie = parent.prefork().unwrap();

    // The fork child keeps the prefork process's descriptor table (token
    // 42), in a process of its own.
    let child = Client::connect_fork(&s.url, &cookie).unwrap();
    assert_eq!(child.syscall(SYS_GETTOKEN, &[], &mut []).unwrap()[0], 42);
    let cpid = child.getpid().unwrap();
    assert_ne!(cpid, ppid);
    child.syscall(SYS_SETTOKEN, &[43], &mut []).unwrap();
    assert_eq!(
        parent.syscall(SYS_GETTOKEN, &[], &mut []).unwrap()[0],
        42,
        "prefork copied the table"
    );
    // The same cookie twice, and a wrong cookie, are refused.
    match Client::connect_fork(&s.url, &cookie) {
        Err(Error::Refused {
            error: ProtoError::InvalidPrefork,
            ..
        }) => {}
        other => panic!("cookie reuse: {:?}", other.err()),
    }
    let wrong = rumpclient::ForkCookie(wire::Cookie([0x5a; 16]));
    match Client::connect_fork(&s.url, &wrong) {
        Err(
            e @ Error::Refused {
                error: ProtoError::InvalidPrefork,
                ..
            },
        ) => {
            assert_eq!(e.errno(), rumpclient::Errno(errno::ESRCH))
        }
        other => panic!("wrong cookie: {:?}", other.err()),
    }
    // A cancelled fork releases the prefork process.
    let cookie2 = parent.prefork().unwrap();
    let nrel = st.released.lock().unwrap().len();
    Client::cancel_fork(&s.url, &cookie2).unwrap();
    assert!(st.wait_for(Duration::from_secs(10), |st| st
        .released
        .lock()
        .unwrap()
        .len()
        > nrel));

    // Exec keeps the process and its table.
    parent.exec_handshake("newimage").unwrap();
    assert_eq!(parent.getpid().unwrap(), ppid);
    assert_eq!(parent.syscall(SYS_GETTOKEN, &[], &mut []).unwrap()[0], 42);
}

#[test]
fn anonmmap_and_raise() {
    use std::sync::atomic::{AtomicBool, Ordering};
    static GOT: AtomicBool = AtomicBool::new(false);
    extern "C" fn on_usr2(_: libc::c_int) {
        GOT.store(true, Ordering::SeqCst);
    }
    let c = client();
    let r = c.syscall(SYS_ANON, &[8192], &mut []).unwrap();
    assert_ne!(r[0], 0);
    // SAFETY: installs an async-signal-safe handler for SIGUSR2.
    unsafe {
        libc::signal(
            libc::SIGUSR2,
            on_usr2 as extern "C" fn(libc::c_int) as libc::sighandler_t,
        )
    };
    c.syscall(SYS_RAISE, &[31 /* NetBSD SIGUSR2 */], &mut [])
        .unwrap();
    assert!(
        GOT.load(Ordering::SeqCst),
        "SIGUSR2 delivered after the syscall"
    );
}

fn wait_connectable(url: &str) -> Client {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        match Client::connect(url) {
            Ok(c) => return c,
            Err(e) if Instant::now() < end => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("server never came up: {e}"),
        }
    }
}

#[test]
fn stop_admitting_then_fini_and_exit() {
    let dir = tmpdir("halt-exit");
    let path = dir.dir().join("s.sock");
    let url = format!("unix://{}", path.display());
    let mut child = Reap(spawn_child("server", &url));
    let a = wait_connectable(&url);
    let b = Client::connect(&url).unwrap();
    let bystander = Client::connect(&url).unwrap();

    // B runs a syscall across the halt's stop_admitting; it must finish
    // normally.
    let slow = std::thread::spawn(move || b.syscall(SYS_SLOW, &[], &mut []));
    let end = Instant::now() + Duration::from_secs(20);
    while a.syscall(SYS_SLOWCOUNT, &[], &mut []).unwrap()[0] == 0 {
        assert!(Instant::now() < end, "slow syscall never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    // A halts: stop admitting, wait for our go, fini, exit(0).
    let go = dir.dir().join("go");
    let gos = format!("{}\0", go.display()).into_bytes();
    let halt = std::thread::spawn(move || {
        a.syscall(SYS_HALT, &[1, 1, addr_of(&gos), 0], &mut [Region::In(&gos)])
    });
    assert_eq!(
        slow.join().unwrap().unwrap()[0],
        7,
        "running syscall finished"
    );
    // New syscalls: ESHUTDOWN. New connections: refused.
    let e = bystander.getpid().unwrap_err();
    assert!(e.is_errno(errno::ESHUTDOWN), "{e:?}");
    assert_eq!(
        e.to_string(),
        "Cannot send after transport endpoint shutdown"
    );
    match Client::connect(&url) {
        Err(Error::Connect { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::ConnectionRefused)
        }
        other => panic!("connect after stop_admitting: {:?}", other.err()),
    }
    assert!(path.exists(), "socket file stays until fini");
    std::fs::write(&go, b"").unwrap();

    // The halting call: fini answers it, then the process exits at once.
    let r = halt.join().unwrap().unwrap();
    assert_eq!(r, [0, 0]);
    let status = child.0.wait().unwrap();
    assert!(
        status.success(),
        "server exited 0 right after fini: {status:?}"
    );
    assert!(!path.exists(), "socket file removed");
    match Client::connect(&url) {
        Err(Error::Connect { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound)
        }
        other => panic!("connect after fini: {:?}", other.err()),
    }
    assert!(bystander.getpid().unwrap_err().is_disconnect());
}

#[test]
fn is_finished_after_fini() {
    let dir = tmpdir("finished");
    let url = format!("unix://{}", dir.dir().join("s.sock").display());
    let mut child = Reap(spawn_child("finished", &url));
    let st = child.0.wait().unwrap();
    assert!(st.success(), "child checks is_finished: {st:?}");
}

#[test]
fn fini_without_exit_drops_everyone() {
    let dir = tmpdir("halt-stay");
    let path = dir.dir().join("s.sock");
    let url = format!("unix://{}", path.display());
    let _child = Reap(spawn_child("server", &url));
    let a = wait_connectable(&url);
    let other = Client::connect(&url).unwrap();
    let mut raw = Raw::guest(&path).0;
    // fini answers the caller (here with the error a failed flush would
    // give); the syscall's own later return (99) is never sent.
    let e = a
        .syscall(SYS_HALT, &[0, 0, 0, errno::EIO as u64], &mut [])
        .unwrap_err();
    assert!(e.is_errno(errno::EIO), "{e:?}");
    // (The answer comes first; the rest of fini follows at once.) The
    // deadlines below are for liveness: they fail only on a hang.
    let end = Instant::now() + Duration::from_secs(20);
    while path.exists() {
        assert!(Instant::now() < end, "socket file not removed after fini");
        std::thread::sleep(Duration::from_millis(2));
    }
    // Everybody else sees the connection end, not a hang (a request that
    // slipped in before the shutdown gets ESHUTDOWN).
    for c in [&other, &a] {
        let e = loop {
            match c.getpid() {
                Err(e) if e.is_errno(errno::ESHUTDOWN) => {
                    assert!(Instant::now() < end, "still ESHUTDOWN, never disconnected");
                    std::thread::sleep(Duration::from_millis(2))
                }
                r => break r.unwrap_err(),
            }
        };
        assert!(e.is_disconnect(), "{e:?}");
    }
    // (Its read timeout is the liveness deadline.)
    raw.expect_eof();
    match Client::connect(&url) {
        Err(Error::Connect { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound)
        }
        other => panic!("connect after fini: {:?}", other.err()),
    }
}

#[test]
fn tcp_url() {
    // A server of its own on loopback, in a child (the shared one is unix).
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("tcp://127.0.0.1:{port}");
    let _child = Reap(spawn_child("server", &url));
    let c = wait_connectable(&url);
    assert!(c.getpid().unwrap() > 1);
    let data = vec![9u8; 100_000];
    let mut out = vec![0u8; data.len()];
    let args = [addr_of(&data), data.len() as u64, addr_of(&out)];
    c.syscall(
        SYS_ECHO,
        &args,
        &mut [Region::In(&data), Region::Out(&mut out)],
    )
    .unwrap();
    assert!(out == data);
}
