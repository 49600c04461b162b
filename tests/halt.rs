//! The halt subsystem end to end (docs/design.md, "The halt contract"): real rump_server
//! processes, real rump.halt, real host images.

mod common;

use rumpclient::Syscalls as _;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use netbsd_abi::fcntl::O_RDWR;

const MIB: usize = 1 << 20;

fn drive_arg(dir: &std::path::Path) -> String {
    format!("key=/dk,hostpath={},size=16m", dir.join("img").display())
}

/// Write `data` at `off` of /dk through the server, unsynced.
fn write_dk(s: &Server, data: &[u8], off: i64) {
    let c = s.client();
    let fd = c.open("/dk", O_RDWR, 0).expect("open /dk");
    assert_eq!(c.pwrite(fd, data, off).expect("pwrite"), data.len());
    c.close(fd).expect("close");
}

fn image_has(dir: &std::path::Path, data: &[u8], off: u64) -> bool {
    read_at(&dir.join("img"), off, data.len()) == data
}

#[test]
fn halt_flushes_exits_and_removes_socket() {
    let d = tmpdir();
    let mut s = Server::start(d.path(), &["-d", &drive_arg(d.path())]);
    let data = pattern(3 * MIB + 123, 1);
    write_dk(&s, &data, 4096);
    assert!(
        !image_has(d.path(), &data, 4096),
        "write-back: nothing on the image before the halt"
    );

    let o = s.halt(&[]);
    assert!(o.status.success(), "rump.halt: {}", stderr(&o));
    let st = s
        .wait_exit(Duration::from_secs(10))
        .expect("server exits after rump.halt");
    assert_eq!(st.code(), Some(0), "server exit status");
    assert!(
        image_has(d.path(), &data, 4096),
        "every acknowledged write is in the image"
    );
    assert!(!s.sock.exists(), "socket file removed");

    let o = s.halt(&[]);
    assert_eq!(o.status.code(), Some(1));
    let msg = stderr(&o);
    assert!(msg.starts_with("rump.halt: "), "{msg}");
    assert!(msg.contains(&s.url), "names the URL: {msg}");
    assert!(
        msg.contains("No such file or directory") || msg.contains("Connection refused"),
        "{msg}"
    );
}

#[test]
fn nosync_leaves_the_image_alone() {
    let d = tmpdir();
    let mut s = Server::start(d.path(), &["-d", &drive_arg(d.path())]);
    let data = pattern(MIB, 2);
    write_dk(&s, &data, 0);
    let o = s.halt(&["-n"]);
    assert!(o.status.success(), "rump.halt -n: {}", stderr(&o));
    assert_eq!(
        s.wait_exit(Duration::from_secs(10)).and_then(|s| s.code()),
        Some(0)
    );
    assert!(
        !image_has(d.path(), &data, 0),
        "-n must not write the cache back"
    );
}

#[test]
fn nosync_completes_while_the_drive_hangs() {
    let d = tmpdir();
    let fault = "/dk=write-hang".to_string();
    let opts = || ServerOpts {
        args: vec!["-d".into(), drive_arg(d.path())],
        env: vec![("RUMP_FAULT", fault.clone())],
        cores: false,
        stderr: None,
    };
    // A plain halt blocks on the hanging drive...
    let log = d.path().join("server.log");
    let mut s = Server::start_logged(d.path(), opts(), Some(&log));
    write_dk(&s, &pattern(MIB, 3), 0);
    let url = s.url.clone();
    let halter = std::thread::spawn(move || {
        std::process::Command::new(common::rump_halt())
            .env("RUMP_SERVER", url)
            .output()
            .expect("rump.halt")
    });
    // Its flush reached the drive, which now hangs.
    wait_for_text(
        &log,
        "fault injection: a drive write hangs",
        Duration::from_secs(20),
    );
    assert!(s.alive(), "a flushing halt waits for the hanging drive");
    drop(s);
    let _ = halter.join();

    // ...while `-n` touches no drive and completes.
    let d2 = tmpdir();
    let log = d2.path().join("server.log");
    let mut s = Server::start_logged(
        d2.path(),
        ServerOpts {
            args: vec!["-d".into(), drive_arg(d2.path())],
            env: vec![("RUMP_FAULT", "/dk=write-hang".into())],
            cores: false,
            stderr: None,
        },
        Some(&log),
    );
    write_dk(&s, &pattern(MIB, 3), 0);
    // A client stuck in fsync on the hung drive: the drain gives up on it.
    let stuck = {
        let c = s.client();
        std::thread::spawn(move || {
            let fd = c.open("/dk", O_RDWR, 0).expect("open");
            c.fsync(fd).is_err()
        })
    };
    wait_for_text(
        &log,
        "fault injection: a drive write hangs",
        Duration::from_secs(20),
    );
    let t = Instant::now();
    let o = s.halt(&["-n"]);
    assert!(o.status.success(), "rump.halt -n: {}", stderr(&o));
    assert!(
        s.wait_exit(Duration::from_secs(20)).is_some(),
        "server still running 20 s after rump.halt -n (a liveness deadline): it hangs"
    );
    eprintln!("rump.halt -n with a hanging drive took {:?}", t.elapsed());
    assert!(
        stuck.join().expect("the stuck client returns"),
        "its fsync fails rather than hangs"
    );
}

fn core_pattern_is_plain_file() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/core_pattern")
        .map(|p| !p.starts_with('|') && !p.trim().contains('/'))
        .unwrap_or(false)
}

/// The core file the host wrote into `dir` ("core" or "core.PID").
fn find_core(dir: &std::path::Path) -> Option<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n == "core" || n.starts_with("core."))
        })
}

#[test]
fn dump_flushes_then_aborts_with_a_core() {
    use std::os::unix::process::ExitStatusExt;
    let d = tmpdir();
    let mut s = Server::start_with(
        d.path(),
        ServerOpts {
            args: vec!["-d".into(), drive_arg(d.path())],
            cores: true,
            ..Default::default()
        },
    );
    let data = pattern(MIB, 4);
    write_dk(&s, &data, 0);
    let o = s.halt(&["-d"]);
    assert!(o.status.success(), "rump.halt -d: {}", stderr(&o));
    let st = s.wait_exit(Duration::from_secs(30)).expect("server dies");
    assert_eq!(
        st.signal(),
        Some(libc::SIGABRT),
        "killed by SIGABRT: {st:?}"
    );
    assert!(st.core_dumped(), "a core was dumped");
    assert!(image_has(d.path(), &data, 0), "flushed before the dump");

    if !core_pattern_is_plain_file() {
        eprintln!("core_pattern does not name a plain file here; skipping the gdb check");
        return;
    }
    let core = find_core(d.path()).expect("core file in the server's directory");
    let gdb = common::host_cmd("gdb")
        .args(["-batch", "-nx", "-ex", "bt"])
        .arg(RUMP_SERVER)
        .arg(&core)
        .output();
    match gdb {
        Ok(o) => {
            let out = String::from_utf8_lossy(&o.stdout);
            assert!(
                out.contains("halt::dump_core"),
                "gdb backtrace shows the halt code:\n{out}"
            );
        }
        Err(e) => panic!("gdb is needed for this test (.ci/run installs it): {e}"),
    }
}

#[test]
fn dump_nosync_does_not_flush() {
    use std::os::unix::process::ExitStatusExt;
    let d = tmpdir();
    let mut s = Server::start_with(
        d.path(),
        ServerOpts {
            args: vec!["-d".into(), drive_arg(d.path())],
            cores: true,
            ..Default::default()
        },
    );
    let data = pattern(MIB, 5);
    write_dk(&s, &data, 0);
    let o = s.halt(&["-dn"]);
    assert!(o.status.success(), "rump.halt -dn: {}", stderr(&o));
    let st = s.wait_exit(Duration::from_secs(30)).expect("server dies");
    assert_eq!(st.signal(), Some(libc::SIGABRT));
    assert!(!image_has(d.path(), &data, 0), "-dn must not flush");
}

#[test]
fn halt_h_quiesces_but_keeps_the_process() {
    let d = tmpdir();
    let mut s = Server::start(d.path(), &["-d", &drive_arg(d.path())]);
    let data = pattern(MIB, 6);
    write_dk(&s, &data, 0);
    let bystander = s.client();
    bystander.getpid().expect("bystander works before the halt");

    let o = s.halt(&["-h"]);
    assert!(o.status.success(), "rump.halt -h: {}", stderr(&o));
    // The halt answers before it shuts the listener: wait for that.
    let sock = s.sock.clone();
    wait_until("the socket file is gone", Duration::from_secs(20), || {
        !sock.exists()
    });
    assert!(
        s.wait_exit(Duration::from_millis(500)).is_none(),
        "the host process stays up with -h"
    );
    assert!(image_has(d.path(), &data, 0), "flushed");
    assert!(Client::connect(&s.url).is_err(), "new connections refused");
    let t = Instant::now();
    assert!(
        bystander.getpid().is_err(),
        "an existing client's next call fails"
    );
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "...without hanging (a liveness deadline)"
    );

    s.signal(libc::SIGTERM);
    let st = s
        .wait_exit(Duration::from_secs(10))
        .expect("SIGTERM ends a halted server");
    assert_eq!(st.code(), Some(0));
}

#[test]
fn halt_dh_dumps_from_a_child_and_stays_up() {
    let d = tmpdir();
    let mut s = Server::start_with(
        d.path(),
        ServerOpts {
            args: vec!["-d".into(), drive_arg(d.path())],
            cores: true,
            ..Default::default()
        },
    );
    let o = s.halt(&["-dh"]);
    assert!(o.status.success(), "rump.halt -dh: {}", stderr(&o));
    // The child dumps after the halt answered.
    if core_pattern_is_plain_file() {
        wait_until(
            "the forked child wrote a core",
            Duration::from_secs(20),
            || find_core(d.path()).is_some(),
        );
    }
    assert!(
        s.wait_exit(Duration::from_millis(500)).is_none(),
        "-dh leaves the server up"
    );
    s.signal(libc::SIGTERM);
    assert_eq!(
        s.wait_exit(Duration::from_secs(10)).and_then(|s| s.code()),
        Some(0)
    );
}

#[test]
fn acknowledged_writes_survive_a_halt_under_load() {
    const WRITERS: usize = 8;
    const REC: usize = 4096;
    let d = tmpdir();
    let mut s = Server::start(d.path(), &["-d", &drive_arg(d.path())]);
    let stop = Arc::new(AtomicBool::new(false));
    let halt_started: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    // Writes acknowledged so far, by every writer.
    let acks = Arc::new(AtomicUsize::new(0));
    let mut threads = vec![];
    for w in 0..WRITERS {
        let url = s.url.clone();
        let stop = stop.clone();
        let acks = acks.clone();
        threads.push(std::thread::spawn(move || {
            // Records acknowledged, with the time each ack arrived.
            let mut acked: Vec<(u64, Instant)> = vec![];
            let Ok(c) = Client::connect(&url) else {
                return acked;
            };
            let Ok(fd) = c.open("/dk", O_RDWR, 0) else {
                return acked;
            };
            let base = (w * 2 * MIB) as u64;
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) && (i as usize + 1) * REC <= 2 * MIB {
                let rec = pattern(REC, (w as u64) << 32 | i);
                match c.pwrite(fd, &rec, (base + i * REC as u64) as i64) {
                    Ok(_) => {
                        acked.push((i, Instant::now()));
                        acks.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => break,
                }
                i += 1;
            }
            acked
        }));
    }
    // The halt comes under load: once the writers are well under way.
    wait_until(
        "the writers have writes acknowledged",
        Duration::from_secs(30),
        || acks.load(Ordering::Relaxed) >= 4 * WRITERS,
    );
    *halt_started.lock().unwrap() = Some(Instant::now());
    let o = s.halt(&[]);
    assert!(o.status.success(), "rump.halt: {}", stderr(&o));
    stop.store(true, Ordering::Relaxed);
    let t0 = halt_started.lock().unwrap().expect("set");
    let mut checked = 0;
    for (w, t) in threads.into_iter().enumerate() {
        let acked = t.join().expect("writer finished (no hang)");
        for (i, at) in acked {
            if at < t0 {
                let rec = pattern(REC, (w as u64) << 32 | i);
                let off = (w * 2 * MIB) as u64 + i * REC as u64;
                assert!(
                    image_has(d.path(), &rec, off),
                    "writer {w} record {i} acknowledged before the halt is in the image"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 0, "some writes were acknowledged before the halt");
    assert_eq!(
        s.wait_exit(Duration::from_secs(10)).and_then(|s| s.code()),
        Some(0)
    );
}

#[test]
fn sigterm_and_sigint_halt_like_rump_halt() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let d = tmpdir();
        let mut s = Server::start(d.path(), &["-d", &drive_arg(d.path())]);
        let data = pattern(MIB, sig as u64);
        write_dk(&s, &data, 8192);
        s.signal(sig);
        let st = s
            .wait_exit(Duration::from_secs(10))
            .expect("server exits on the signal");
        assert_eq!(st.code(), Some(0), "signal {sig}");
        assert!(image_has(d.path(), &data, 8192), "signal {sig} flushed");
        assert!(!s.sock.exists(), "signal {sig} removed the socket");
    }
}

#[test]
fn a_failed_flush_is_reported_and_the_server_still_halts() {
    let d = tmpdir();
    let mut s = Server::start_with(
        d.path(),
        ServerOpts {
            args: vec!["-d".into(), drive_arg(d.path())],
            env: vec![("RUMP_FAULT", "/dk=write-error".into())],
            cores: false,
            stderr: None,
        },
    );
    write_dk(&s, &pattern(MIB, 7), 0);
    let o = s.halt(&[]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "rump.halt reports the failed flush"
    );
    let msg = stderr(&o);
    assert!(
        msg.contains("flush") && msg.contains("Input/output error"),
        "{msg}"
    );
    let st = s
        .wait_exit(Duration::from_secs(10))
        .expect("the server still halts");
    assert_ne!(
        st.code(),
        Some(0),
        "a server whose flush failed does not exit 0"
    );
}

/// After `rump.halt -h` whose flush failed, the quiesced server's exit on
/// SIGTERM says so (status 1); after a good flush it exits 0.
#[test]
fn after_h_the_exit_status_reflects_the_flush() {
    for (fault, want) in [(Some("/dk=write-error"), 1), (None, 0)] {
        let d = tmpdir();
        let env = fault
            .map(|f| vec![("RUMP_FAULT", f.to_string())])
            .unwrap_or_default();
        let mut s = Server::start_with(
            d.path(),
            ServerOpts {
                args: vec!["-d".into(), drive_arg(d.path())],
                env,
                cores: false,
                stderr: None,
            },
        );
        write_dk(&s, &pattern(MIB, 8), 0);
        let o = s.halt(&["-h"]);
        assert_eq!(o.status.code(), Some(want), "rump.halt -h: {}", stderr(&o));
        // Not synchronization: "keeps the process" is a claim about time
        // passing, so give a server that wrongly exits after -h the time.
        std::thread::sleep(Duration::from_millis(200));
        assert!(s.alive(), "-h keeps the process");
        s.signal(libc::SIGTERM);
        let st = s
            .wait_exit(Duration::from_secs(10))
            .expect("SIGTERM ends the quiesced server");
        assert_eq!(
            st.code(),
            Some(want),
            "exit status after -h with fault {fault:?}"
        );
    }
}

#[test]
fn usage_and_environment_errors() {
    let run = |args: &[&str], env: Option<&str>| {
        let mut c = std::process::Command::new(common::rump_halt());
        c.args(args).env_remove("RUMP_SERVER");
        if let Some(e) = env {
            c.env("RUMP_SERVER", e);
        }
        c.output().expect("rump.halt")
    };
    for args in [&["-x"][..], &["extra"], &["-d", "extra"]] {
        let o = run(args, Some("unix:///nonexistent"));
        assert_eq!(o.status.code(), Some(1));
        assert!(
            stderr(&o).contains("usage: rump.halt [-dhn]"),
            "{}",
            stderr(&o)
        );
    }
    let o = run(&[], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("RUMP_SERVER"), "{}", stderr(&o));
    let o = run(&[], Some("unix:///nonexistent/x.sock"));
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o).trim(),
        "rump.halt: connect unix:///nonexistent/x.sock: No such file or directory"
    );
    let o = run(&[], Some(""));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with("rump.halt: RUMP_SERVER is empty"),
        "{}",
        stderr(&o)
    );
    // The name in messages is the one the user typed.
    let o = std::process::Command::new(RUMP_HALT)
        .arg("-x")
        .env_remove("RUMP_SERVER")
        .output()
        .unwrap();
    assert!(
        stderr(&o).contains("usage: rump_halt [-dhn]"),
        "{}",
        stderr(&o)
    );
    // --help: usage on standard output, status 0, no connection tried.
    for exe in [common::rump_halt(), RUMP_HALT.into()] {
        let o = std::process::Command::new(&exe)
            .arg("--help")
            .env("RUMP_SERVER", "unix:///nonexistent/x.sock")
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{exe:?} --help");
        let name = exe.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            String::from_utf8_lossy(&o.stdout).starts_with(&format!("usage: {name} [-dhn]")),
            "{o:?}"
        );
        assert!(o.stderr.is_empty(), "{o:?}");
    }
}

/// The embedding API: a kernel in this very process, halted with
/// `RB_HALT`: the call returns, says the flush succeeded, and every later
/// call into that kernel fails with a clear error.
#[test]
fn embedded_halt_returns_and_the_kernel_refuses_calls() {
    use netbsd_abi::errno::ESHUTDOWN;
    use netbsd_abi::reboot::RB_HALT;
    let d = tmpdir();
    let img = d.path().join("img");
    let mut rump = rumprun::Rump::builder()
        .lockdebug(rumprun::LockDebug::Abort)
        .ncpu(2)
        .memlimit(32 << 20)
        .drive(&format!("key=/dk,hostpath={},size=4m", img.display()))
        .boot()
        .expect("boot an embedded kernel");
    let url = format!("unix://{}", d.path().join("embed.sock").display());
    rump.serve(&url).expect("serve");
    let remote = Client::connect(&url).expect("a remote client of the embedded kernel");
    let p = rump.process().expect("a local process");
    let fd = p.open("/dk", O_RDWR, 0).expect("open /dk");
    let data = pattern(MIB, 21);
    assert_eq!(p.pwrite(fd, &data, 0).expect("pwrite"), MIB);
    assert!(!image_has(d.path(), &data, 0), "write-back");

    let report = rump.halt(RB_HALT).expect("halt returns with RB_HALT");
    assert_eq!(report.flush, Some(Ok(())), "the flush succeeded");
    assert_eq!(report.cut_off, 0);
    assert!(image_has(d.path(), &data, 0), "flushed");
    assert_eq!(
        p.getpid().map(|_| ()),
        Err(netbsd_abi::Errno(ESHUTDOWN)),
        "later local calls fail"
    );
    assert!(remote.getpid().is_err(), "remote clients are dropped");
    assert!(Client::connect(&url).is_err(), "no more connections");
    assert!(rump.halt(RB_HALT).is_err(), "a second halt is refused");
}

/// Without `RB_HALT` the embedding process exits 0 after the flush. The
/// embedder is this test binary, re-run as a child.
#[test]
fn embedded_halt_without_rb_halt_exits_the_process() {
    if let Ok(img) = std::env::var("RUMP_EMBED_CHILD_IMG") {
        let rump = rumprun::Rump::builder()
            .lockdebug(rumprun::LockDebug::Abort)
            .drive(&format!("key=/dk,hostpath={img},size=4m"))
            .boot()
            .expect("boot");
        let p = rump.process().expect("process");
        let fd = p.open("/dk", O_RDWR, 0).expect("open");
        p.pwrite(fd, &pattern(MIB, 22), MIB as i64).expect("pwrite");
        let _ = rump.halt(0);
        unreachable!("halt without RB_HALT exits the process");
    }
    let d = tmpdir();
    let img = d.path().join("img");
    let st = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "embedded_halt_without_rb_halt_exits_the_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("RUMP_EMBED_CHILD_IMG", &img)
        .status()
        .expect("run the embedding child");
    assert_eq!(st.code(), Some(0), "the embedder exited 0 after the flush");
    assert!(
        image_has(d.path(), &pattern(MIB, 22), MIB as u64),
        "flushed before the exit"
    );
}

/// Kernels and servers are values: four kernels booted from
/// four threads of one process, each serving its own URL to a client and
/// writing its own image, halted in random order with `RB_HALT` (each
/// report checked, the others still serving), then a fifth boots after
/// them; and a kernel dropped without a halt is halted with a flush.
#[test]
fn four_kernels_in_one_process_halt_each_on_its_own() {
    use netbsd_abi::reboot::RB_HALT;
    let d = tmpdir();
    let dir = d.path().to_path_buf();
    let boot = |i: usize| {
        let dir = dir.clone();
        std::thread::spawn(move || {
            let img = dir.join(format!("img{i}"));
            let mut rump = rumprun::Rump::builder()
                .lockdebug(rumprun::LockDebug::Abort)
                .ncpu(1 + i % 2)
                .memlimit(16 << 20)
                .drive(&format!("key=/dk,hostpath={},size=2m", img.display()))
                .boot()
                .expect("boot");
            let url = format!("unix://{}", dir.join(format!("k{i}.sock")).display());
            rump.serve(&url).expect("serve");
            let c = Client::connect(&url).expect("client");
            let fd = c.open("/dk", O_RDWR, 0).expect("open /dk");
            let data = pattern(256 << 10, 100 + i as u64);
            assert_eq!(c.pwrite(fd, &data, 0).expect("pwrite"), data.len());
            (rump, url, c, img, data)
        })
    };
    let mut kernels: Vec<_> = (0..4)
        .map(boot)
        .map(|t| t.join().expect("boot thread"))
        .collect();
    // Halt in an order that is not boot order, pseudo-randomly.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as usize;
    let mut order: Vec<usize> = (0..4).collect();
    for i in (1..4).rev() {
        order.swap(i, (seed >> (i * 3)) % (i + 1));
    }
    eprintln!("halt order {order:?}");
    let mut halted = [false; 4];
    for &i in &order {
        let (rump, url, c, img, data) = &kernels[i];
        let report = rump.halt(RB_HALT).expect("RB_HALT returns its report");
        assert_eq!(report.flush, Some(Ok(())), "kernel {i}: flushed");
        assert_eq!(report.cut_off, 0);
        let on_disk = std::fs::read(img).expect("image");
        assert_eq!(
            &on_disk[..data.len()],
            &data[..],
            "kernel {i}: image holds its data"
        );
        assert!(c.getpid().is_err(), "kernel {i}: its client is dropped");
        assert!(
            Client::connect(url).is_err(),
            "kernel {i}: no more connections"
        );
        halted[i] = true;
        for (j, (_, _, cj, _, _)) in kernels.iter().enumerate() {
            if !halted[j] {
                assert!(
                    cj.getpid().is_ok(),
                    "kernel {j} still serves after kernel {i} halted"
                );
            }
        }
    }
    kernels.clear();
    // A fifth, after all of them; dropped without a halt: it flushes.
    let (rump, _url, c, img, data) = boot(4).join().expect("boot the fifth");
    drop(c);
    drop(rump);
    let on_disk = std::fs::read(&img).expect("image");
    assert_eq!(
        &on_disk[..data.len()],
        &data[..],
        "a dropped kernel flushed its drive"
    );
}

/// A fork prepared by a client that then disconnects (NetBSD's
/// `rumpclient_daemon()` order) is claimed once the parent's process is
/// gone: the child gets its own process, named as its parent was.
#[test]
fn a_prepared_fork_outlives_its_parent_and_keeps_the_name() {
    let d = tmpdir();
    let mut rump = rumprun::Rump::builder()
        .lockdebug(rumprun::LockDebug::Abort)
        .ncpu(2)
        .memlimit(32 << 20)
        .boot()
        .expect("boot");
    let url = format!("unix://{}", d.path().join("fork.sock").display());
    rump.serve(&url).expect("serve");
    let parent = rumpclient::Client::connect_as(&url, "daemonizer").expect("connect");
    let ppid = parent.getpid().unwrap();
    assert_eq!(
        rump.kernel().process_name(ppid).as_deref(),
        Some("daemonizer")
    );
    let cookie = parent.prefork().expect("prefork");
    drop(parent);
    wait_until(
        "the parent's connection is gone and its process released",
        Duration::from_secs(20),
        || rump.kernel().process_name(ppid).is_none(),
    );
    let child = rumpclient::Client::connect_fork(&url, &cookie).expect("claim the fork");
    let cpid = child.getpid().unwrap();
    assert_ne!(cpid, ppid);
    assert_eq!(
        rump.kernel().process_name(cpid).as_deref(),
        Some("daemonizer"),
        "the forked process keeps its parent's name"
    );
    drop(child);
    rump.halt(netbsd_abi::reboot::RB_HALT).expect("halt");
}
