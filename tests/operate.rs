//! Operating the tools (docs/tools.md), names as bytes, not strings:
//! real `rump_server`, `rumpctl` and `rump.halt` processes in private
//! temporary directories.

mod common;

use rumpclient::Syscalls as _;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::*;

/// `rumpctl` against `s` with arguments that may be any bytes.
fn rumpctl(s: &Server, args: &[&OsStr]) -> Output {
    Command::new(RUMPCTL)
        .args(args)
        .env("RUMP_SERVER", &s.url)
        .current_dir(&s.dir)
        .stdin(Stdio::null())
        .output()
        .expect("run rumpctl")
}

fn ok(s: &Server, args: &[&OsStr]) -> Vec<u8> {
    let o = rumpctl(s, args);
    assert!(
        o.status.success(),
        "rumpctl {args:?}: {:?} {}",
        o.status,
        stderr(&o)
    );
    o.stdout
}

fn os(b: &[u8]) -> OsString {
    OsString::from_vec(b.to_vec())
}

/// An ext2 image mounted on /mnt of a fresh server.
fn ext2_server(d: &Path) -> Server {
    let img = d.join("img");
    mke2fs(&img, &[], "16M");
    let s = Server::start(
        d,
        &[
            "-d",
            &format!("key=/dk,hostpath={},size=host", img.display()),
        ],
    );
    ok(&s, &[OsStr::new("mkdir"), OsStr::new("/mnt")]);
    ok(
        &s,
        &[OsStr::new("mount"), OsStr::new("/dk"), OsStr::new("/mnt")],
    );
    s
}

/// A name with bytes 0xff 0xfe goes through `put`, `ls`, `get` and
/// `cp -R` both ways unchanged: kernel names are bytes, not strings.
#[test]
fn names_that_are_not_utf8_pass_byte_exact() {
    let d = tmpdir();
    let s = ext2_server(d.path());
    let odd: &[u8] = b"\xff\xfe";
    let host_dir = d.path().join("tree");
    std::fs::create_dir(&host_dir).unwrap();
    let host_file = host_dir.join(OsStr::from_bytes(odd));
    std::fs::write(&host_file, b"odd bytes\n").unwrap();
    std::fs::create_dir(host_dir.join(OsStr::from_bytes(b"sub\xe9"))).unwrap();
    std::fs::write(
        host_dir.join(OsStr::from_bytes(b"sub\xe9/in\x80side")),
        b"deeper\n",
    )
    .unwrap();

    // put: a host name that is not UTF-8 to a kernel name that is not.
    let kname = os(b"/mnt/x\xff\xfe");
    ok(
        &s,
        &[OsStr::new("put"), host_file.as_os_str(), kname.as_os_str()],
    );
    // ls shows the name's bytes, not U+FFFD.
    let listing = ok(&s, &[OsStr::new("ls"), OsStr::new("/mnt")]);
    assert!(
        listing.split(|&b| b == b'\n').any(|l| l == b"x\xff\xfe"),
        "ls /mnt: {:?}",
        String::from_utf8_lossy(&listing)
    );
    let long = ok(
        &s,
        &[OsStr::new("ls"), OsStr::new("-l"), OsStr::new("/mnt")],
    );
    assert!(long.windows(4).any(|w| w == b"x\xff\xfe\n"), "{long:?}");
    // get: back to a host name that is not UTF-8.
    let back = d.path().join(OsStr::from_bytes(b"back\xfe\xff"));
    ok(
        &s,
        &[OsStr::new("get"), kname.as_os_str(), back.as_os_str()],
    );
    assert_eq!(std::fs::read(&back).unwrap(), b"odd bytes\n");

    // cp -R into the kernel and out again: the same names, the same bytes.
    let mut colon = b":/mnt".to_vec();
    ok(
        &s,
        &[
            OsStr::new("cp"),
            OsStr::new("-R"),
            host_dir.as_os_str(),
            OsStr::from_bytes(&colon),
        ],
    );
    let inner = ok(&s, &[OsStr::new("ls"), OsStr::new("/mnt/tree")]);
    // In byte order, as ls(1) in the C locale.
    assert_eq!(inner, b"sub\xe9\n\xff\xfe\n", "{inner:?}");
    let out = d.path().join("out");
    colon.extend_from_slice(b"/tree");
    ok(
        &s,
        &[
            OsStr::new("cp"),
            OsStr::new("-R"),
            OsStr::from_bytes(&colon),
            out.as_os_str(),
        ],
    );
    assert_eq!(
        std::fs::read(out.join(OsStr::from_bytes(odd))).unwrap(),
        b"odd bytes\n"
    );
    assert_eq!(
        std::fs::read(out.join(OsStr::from_bytes(b"sub\xe9/in\x80side"))).unwrap(),
        b"deeper\n"
    );
    let mut names: Vec<Vec<u8>> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_vec())
        .collect();
    names.sort();
    assert_eq!(names, vec![b"sub\xe9".to_vec(), b"\xff\xfe".to_vec()]);
}

/// Arguments that are not UTF-8 never panic a tool: where text is needed
/// (a URL, a mode), the message says so, exit 1.
#[test]
fn arguments_that_are_not_utf8_are_refused_in_words() {
    let d = tmpdir();
    let sock = os(b"unix://\xff.sock");
    let o = Command::new(RUMP_SERVER)
        .args([OsStr::new("-s"), sock.as_os_str()])
        .current_dir(d.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("not valid UTF-8"), "{}", stderr(&o));
    assert!(stderr(&o).contains("unix://PATH"), "{}", stderr(&o));
    assert!(!stderr(&o).contains('\u{fffd}'), "{}", stderr(&o));

    let s = Server::start(d.path(), &[]);
    let o = rumpctl(&s, &[OsStr::new("chmod"), &os(b"7\xff"), OsStr::new("/x")]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("not valid UTF-8"), "{}", stderr(&o));
    // A missing host file named in bytes: named with \x escapes.
    let o = rumpctl(
        &s,
        &[OsStr::new("put"), &os(b"dir/\xff\xfe"), OsStr::new("/x")],
    );
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o).trim_end(),
        "rumpctl: dir/\\xff\\xfe: No such file or directory"
    );
    let o = Command::new(rump_halt())
        .arg(os(b"-\xff"))
        .env("RUMP_SERVER", &s.url)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
}

/// The FUSE mount tools (rump_ext2fs, `rumpctl fuse`) take options after
/// their operands, as fuse2fs does, and `--` ends them; an argument that
/// is not UTF-8 is never a panic: a host path is named with `\x` escapes,
/// and where text is needed the message says so, exit 1.
#[test]
fn mount_tools_take_options_anywhere_and_any_bytes() {
    let d = tmpdir();
    let img = d.path().join("img");
    mke2fs(&img, &[], "8M");
    let run = |exe: &str, args: &[&OsStr]| {
        let o = Command::new(exe)
            .args(args)
            .current_dir(d.path())
            .env("RUMP_SERVER", "unix:///nonexistent/sock")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        // Nothing may mount: every case here is refused.
        assert_eq!(o.status.code(), Some(1), "{exe} {args:?}: {}", stderr(&o));
        assert!(!stderr(&o).contains('\u{fffd}'), "{}", stderr(&o));
        stderr(&o)
    };
    let (img, odd) = (img.as_os_str(), os(b"m\xff"));
    // Where /dev/fuse is missing, the mount point is not looked at.
    let no_fuse = !Path::new("/dev/fuse").exists();
    let mnt_missing = |prog: &str, name: &str| {
        if no_fuse {
            format!("{prog}: /dev/fuse: No such file or directory")
        } else {
            format!("{prog}: {name}: No such file or directory")
        }
    };
    let e = OsStr::new;

    // rump_ext2fs: the image goes into a drive spec, which is text.
    let err = run(RUMP_EXT2FS, &[&os(b"\xff.img"), e("mnt")]);
    assert_eq!(err, "rump_ext2fs: image \\xff.img: not valid UTF-8\n");
    // A mount point is a host path: any bytes, named as they are.
    let err = run(RUMP_EXT2FS, &[img, &odd]);
    assert_eq!(err.trim_end(), mnt_missing("rump_ext2fs", "m\\xff"));
    // An option after the operands, and its value checked as text.
    let err = run(RUMP_EXT2FS, &[img, e("mnt"), e("-o"), &os(b"r\xff")]);
    assert_eq!(err, "rump_ext2fs: -o r\\xff: not valid UTF-8\n");
    let err = run(RUMP_EXT2FS, &[img, e("mnt"), e("-o"), e("nonesuch")]);
    assert_eq!(err, "rump_ext2fs: nonesuch: unknown mount option\n");
    let err = run(RUMP_EXT2FS, &[img, e("mnt"), e("-x")]);
    let mut lines = err.lines();
    assert_eq!(lines.next(), Some("rump_ext2fs: unknown option -- x"));
    assert!(lines
        .next()
        .unwrap_or("")
        .starts_with("usage: rump_ext2fs "));
    let err = run(RUMP_EXT2FS, &[img, e("mnt"), e("-o")]);
    assert!(err.starts_with("rump_ext2fs: option requires an argument -- o\nusage: "));
    // `--`: what follows is an operand, a leading '-' and all.
    let err = run(RUMP_EXT2FS, &[e("--"), img, e("-f")]);
    assert_eq!(err.trim_end(), mnt_missing("rump_ext2fs", "-f"));
    assert!(run(RUMP_EXT2FS, &[img]).starts_with("usage: rump_ext2fs "));

    // rumpctl fuse: a kernel path and a mount point are bytes.
    let err = run(RUMPCTL, &[e("fuse"), &os(b"/k\xff"), &odd, e("-f")]);
    assert_eq!(err.trim_end(), mnt_missing("rumpctl", "m\\xff"));
    let err = run(RUMPCTL, &[e("fuse"), &odd, e("-o"), &os(b"\xfe")]);
    assert!(
        err.starts_with("rumpctl: fuse: -o \\xfe: not valid UTF-8\nusage: rumpctl fuse "),
        "{err}"
    );
    let err = run(RUMPCTL, &[e("fuse"), &odd, e("-o"), e("rw,bogus")]);
    assert!(
        err.starts_with("rumpctl: fuse: unknown option bogus\n"),
        "{err}"
    );
    let err = run(RUMPCTL, &[e("fuse"), e("/"), e("mnt"), e("extra")]);
    assert!(
        err.starts_with("rumpctl: fuse: expected [path] mountpoint\n"),
        "{err}"
    );
}

/// A socket left by a `kill -9` is replaced by the next server; a regular
/// file at that path is refused, named, and left unchanged; a socket a
/// server still accepts on is refused and that server keeps serving.
#[test]
fn stale_sockets_are_replaced_and_other_files_left_alone() {
    let d = tmpdir();
    let mut s = Server::start(d.path(), &[]);
    s.signal(libc::SIGKILL);
    assert!(s.wait_exit(std::time::Duration::from_secs(10)).is_some());
    assert!(s.sock.exists(), "kill -9 leaves the socket");
    let s2 = Server::start(d.path(), &[]);
    assert!(s2.client().getpid().is_ok(), "the new server serves");

    // A second server on a socket that is in use: refused, the first
    // keeps serving.
    let o = Command::new(RUMP_SERVER)
        .args(["-s", &s2.url])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("Address already in use"),
        "{}",
        stderr(&o)
    );
    assert!(s2.client().getpid().is_ok());
    drop(s2);

    // A regular file where the socket would go.
    let file = d.path().join("notasocket");
    std::fs::write(&file, b"precious\n").unwrap();
    let url = format!("unix://{}", file.display());
    let o = Command::new(RUMP_SERVER)
        .args(["-s", &url])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(
        stderr(&o).trim_end(),
        format!(
            "rump_server: {url}: the path is a regular file, not a socket (refused; left as it is)"
        )
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"precious\n");
    // Daemonizing (no -s) says the same.
    let o = Command::new(RUMP_SERVER).arg(&url).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("regular file"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&file).unwrap(), b"precious\n");
    // A directory likewise.
    let o = Command::new(RUMP_SERVER)
        .args(["-s", &format!("unix://{}", d.path().display())])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("a directory"), "{}", stderr(&o));
}

/// A free TCP port on the loopback interface (for a moment).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `rump_server -s url` with its stderr in `log`; returns once a client
/// reaches it at `client_url`.
fn spawn_tcp(d: &Path, url: &str, client_url: &str, log: &Path) -> std::process::Child {
    let mut child = Command::new(RUMP_SERVER)
        .args(["-s", url])
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .current_dir(d)
        .spawn()
        .unwrap();
    let t = std::time::Instant::now();
    while rumpclient::Client::connect(client_url).is_err() {
        if let Some(st) = child.try_wait().unwrap() {
            panic!(
                "rump_server {url} exited: {st}: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(20),
            "{url} not up"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child
}

/// `tcp://localhost:N` and `tcp://[::1]:N` are accepted; a wildcard
/// address is served with one warning; bad URLs say what is expected.
#[test]
fn tcp_urls_take_host_names_and_warn_when_exposed() {
    let d = tmpdir();
    let log = d.path().join("log");
    let port = free_port();
    let url = format!("tcp://localhost:{port}");
    let mut child = spawn_tcp(d.path(), &url, &url, &log);
    let c = rumpclient::Client::connect(&url).unwrap();
    assert!(c.getpid().is_ok());
    // rumpctl and rump.halt take the same URL.
    let o = Command::new(RUMPCTL)
        .args(["ls", "/"])
        .env("RUMP_SERVER", &url)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        !std::fs::read_to_string(&log).unwrap().contains("warning"),
        "loopback: no warning"
    );

    if std::net::TcpListener::bind("[::1]:0").is_ok() {
        let port = free_port();
        let url = format!("tcp://[::1]:{port}");
        let mut child = spawn_tcp(d.path(), &url, &url, &log);
        let _ = child.kill();
        let _ = child.wait();
    }

    let port = free_port();
    let mut child = spawn_tcp(
        d.path(),
        &format!("tcp://0:{port}"),
        &format!("tcp://127.0.0.1:{port}"),
        &log,
    );
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        text.matches("anyone who can reach it").count(),
        1,
        "one warning: {text}"
    );
    assert!(text.contains("every interface"), "{text}");

    for (bad, want) in [
        ("rump.sock", "expected unix://PATH or tcp://HOST:PORT"),
        ("http://x", "expected unix://PATH or tcp://HOST:PORT"),
        ("tcp://localhost", "expected tcp://HOST:PORT"),
        ("tcp://no-such-host.invalid:5", "no-such-host.invalid"),
    ] {
        let o = Command::new(RUMP_SERVER)
            .args(["-s", bad])
            .current_dir(d.path())
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "{bad}: {}", stderr(&o));
        assert!(stderr(&o).contains(want), "{bad}: {}", stderr(&o));
        assert!(
            stderr(&o).starts_with(&format!("rump_server: {bad}: ")),
            "{bad}: {}",
            stderr(&o)
        );
        assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    }
    let o = Command::new(RUMPCTL)
        .args(["ls", "/"])
        .env("RUMP_SERVER", "rump.sock")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("expected unix://PATH or tcp://HOST:PORT"),
        "{}",
        stderr(&o)
    );
}

/// Datagrams on a `NOTIFY_SOCKET`, as systemd reads them, until what
/// came holds every line of `want` (or 20 s pass: a liveness deadline).
fn notifications(sock: &std::os::unix::net::UnixDatagram, want: &[&str]) -> String {
    let mut all = String::new();
    let t = std::time::Instant::now();
    let mut buf = [0u8; 4096];
    while !want.iter().all(|w| all.lines().any(|l| l == *w))
        && t.elapsed() < std::time::Duration::from_secs(20)
    {
        sock.set_read_timeout(Some(std::time::Duration::from_millis(200)))
            .unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            all.push_str(&String::from_utf8_lossy(&buf[..n]));
            all.push('\n');
        }
    }
    all
}

/// sd_notify: `READY=1` with `MAINPID` once serving, `STOPPING=1` and a
/// `STATUS=` when a halt begins, by `rump.halt` or by SIGTERM.
#[test]
fn sd_notify_tells_ready_and_stopping() {
    let d = tmpdir();
    let nsock = d.path().join("notify");
    let rx = std::os::unix::net::UnixDatagram::bind(&nsock).unwrap();
    for by_signal in [false, true] {
        let mut s = Server::start_with(
            d.path(),
            ServerOpts {
                env: vec![("NOTIFY_SOCKET", nsock.display().to_string())],
                ..Default::default()
            },
        );
        let mainpid = format!("MAINPID={}", s.pid());
        let got = notifications(&rx, &["READY=1", &mainpid]);
        assert!(got.lines().any(|l| l == "READY=1"), "{got}");
        assert!(
            got.lines().any(|l| l == format!("MAINPID={}", s.pid())),
            "{got}"
        );
        assert!(!got.contains("STOPPING=1"), "{got}");
        if by_signal {
            s.signal(libc::SIGTERM);
        } else {
            let o = s.halt(&[]);
            assert!(o.status.success(), "{}", stderr(&o));
        }
        let st = s.wait_exit(std::time::Duration::from_secs(20));
        assert_eq!(st.and_then(|s| s.code()), Some(0));
        let got = notifications(&rx, &["STOPPING=1"]);
        assert!(got.lines().any(|l| l == "STOPPING=1"), "{got}");
        assert!(got.contains("STATUS=halting: flushing"), "{got}");
    }
}

/// The systemd template: `Type=notify`, SIGTERM (the halt) to the server
/// alone, a stop timeout with room for the flush; `systemd-analyze verify`
/// finds nothing to say about an instance of it.
#[test]
fn systemd_template_verifies() {
    let tmpl = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/rump_server@.service");
    let text = std::fs::read_to_string(&tmpl).unwrap();
    for line in [
        "Type=notify",
        "KillSignal=SIGTERM",
        "KillMode=mixed",
        "TimeoutStopSec=5min",
        "ExecStart=@PREFIX@/bin/rump_server -s $RUMP_SERVER_ARGS unix:///run/rump/%i/sock",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing");
    }
    let d = tmpdir();
    std::fs::write(
        d.path().join("rump_server@.service"),
        text.replace("@PREFIX@/bin/rump_server", RUMP_SERVER),
    )
    .unwrap();
    let o = host_cmd("systemd-analyze")
        .args(["verify", "--man=no", "./rump_server@test.service"])
        .current_dir(d.path())
        .output()
        .unwrap();
    assert!(
        o.status.success() && o.stderr.is_empty() && o.stdout.is_empty(),
        "systemd-analyze verify: {}{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
}

/// (size, available) in 1K blocks from the last line of a df listing.
fn df_numbers(text: &str) -> (u64, u64) {
    let line = text.lines().last().expect("a df line");
    let f: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    // Filesystem 1K-blocks Used Avail ...
    (f[0], f[2])
}

/// `rumpctl df` of an ext2 image agrees with the Linux kernel's
/// loop-mounted `df` within 1 % (size without ext2's own metadata,
/// available = free − reserved), for several shapes of image.
#[test]
fn df_agrees_with_the_host_kernel() {
    let d = tmpdir();
    let img = d.path().join("img");
    let lm = d.path().join("lm");
    std::fs::create_dir(&lm).unwrap();
    for (args, size) in [
        (&[][..], "64M"),
        (&["-b", "1024"][..], "64M"),
        (
            &["-O", "^sparse_super,^resize_inode", "-m", "10"][..],
            "20M",
        ),
    ] {
        let _ = std::fs::remove_file(&img);
        mke2fs(&img, args, size);
        let mut s = Server::start(
            d.path(),
            &[
                "-d",
                &format!("key=/dk,hostpath={},size=host", img.display()),
            ],
        );
        ok(&s, &[OsStr::new("mkdir"), OsStr::new("/mnt")]);
        ok(
            &s,
            &[OsStr::new("mount"), OsStr::new("/dk"), OsStr::new("/mnt")],
        );
        let data = d.path().join("data");
        std::fs::write(&data, pattern(3 << 20, 1)).unwrap();
        ok(
            &s,
            &[OsStr::new("put"), data.as_os_str(), OsStr::new("/mnt/f")],
        );
        let ours = df_numbers(
            &String::from_utf8(ok(&s, &[OsStr::new("df"), OsStr::new("/mnt")])).unwrap(),
        );
        let o = s.halt(&[]);
        assert!(o.status.success(), "{}", stderr(&o));
        s.wait_exit(std::time::Duration::from_secs(20));
        let m = host_cmd("mount")
            .args(["-o", "loop,ro"])
            .arg(&img)
            .arg(&lm)
            .output()
            .unwrap();
        assert!(m.status.success(), "mount -o loop: {}", stderr(&m));
        let df = host_cmd("df").arg("-k").arg(&lm).output().unwrap();
        let _ = host_cmd("umount").arg(&lm).status();
        let theirs = df_numbers(&String::from_utf8(df.stdout).unwrap());
        let close = |a: u64, b: u64| a.abs_diff(b) * 100 <= b;
        assert!(
            close(ours.0, theirs.0) && close(ours.1, theirs.1),
            "mke2fs {args:?} {size}: rumpctl df (size, avail) {ours:?}, Linux {theirs:?}"
        );
    }
}

const RUMP_EXT2FS: &str = env!("CARGO_BIN_EXE_rump_ext2fs");

/// `--help` (usage on standard output, exit 0, no connection) and
/// `--version` on every tool, rump_ext2fs included; its page documents
/// every option in its usage.
#[test]
fn every_tool_knows_help_and_version() {
    for exe in [
        RUMP_SERVER,
        RUMPCTL,
        RUMP_EXT2FS,
        rump_halt().to_str().unwrap(),
    ] {
        let name = Path::new(exe).file_name().unwrap().to_str().unwrap();
        for (flag, want) in [
            ("--help", format!("usage: {name} ")),
            ("--version", format!("{name} {}", env!("CARGO_PKG_VERSION"))),
        ] {
            let o = Command::new(exe)
                .arg(flag)
                .env("RUMP_SERVER", "unix:///nonexistent/sock")
                .stdin(Stdio::null())
                .output()
                .unwrap();
            assert_eq!(o.status.code(), Some(0), "{name} {flag}: {}", stderr(&o));
            assert!(o.stderr.is_empty(), "{name} {flag}: {}", stderr(&o));
            let out = String::from_utf8(o.stdout).unwrap();
            assert!(out.starts_with(&want), "{name} {flag}: {out}");
        }
    }
    let page =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("man/rump_ext2fs.8"))
            .unwrap();
    for f in ["f", "r", "v", "o"] {
        assert!(
            page.contains(&format!(".It Fl {f}")),
            "rump_ext2fs.8 documents -{f}"
        );
    }
    assert!(page.contains(".It Fl Fl version") && page.contains(".It Fl Fl help"));
}

/// Manual pages render every word: an example message with "No" in it is
/// not eaten as mdoc's `No` macro.
#[test]
fn manual_pages_keep_every_word_of_their_examples() {
    let man = Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    for page in ["rump_server.1", "rump.halt.1", "rumpctl.1", "rump_ext2fs.8"] {
        let src = std::fs::read_to_string(man.join(page)).unwrap();
        let o = host_cmd("man")
            .arg("-l")
            .arg(man.join(page))
            .env("MANWIDTH", "200")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout)
            .replace("‘", "")
            .replace("’", "");
        let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
        // Every literal example line without other macros in it (an
        // example message): all its words, in the output.
        for line in src
            .lines()
            .filter(|l| l.starts_with(".Dl ") || l.starts_with(".Ql "))
        {
            let text = line[4..].split(" )").next().unwrap();
            if text
                .split_whitespace()
                .any(|w| matches!(w, "Ns" | "Ar" | "Fl" | "Cm" | "Li" | "Pa" | "Ic" | "Ev"))
            {
                continue;
            }
            let want = text.replace("\\&", "");
            // mdoc's closing punctuation (` .`, ` ,`) follows the word.
            let want = want
                .split_whitespace()
                .filter(|w| !matches!(*w, "." | "," | ";" | ":"))
                .collect::<Vec<_>>()
                .join(" ");
            if want.split(' ').count() < 3 {
                continue; // punctuation, not a message
            }
            assert!(
                flat.contains(&want),
                "{page}: {want:?} (from {line:?}) not rendered: {flat}"
            );
        }
    }
}

/// rump_ext2fs passes on the kernel's reason for refusing an image: an
/// ext4 image names the features it lacks; a file that is not ext2 says
/// so; an unclean one says what to do.
#[test]
fn rump_ext2fs_says_why_an_image_is_refused() {
    let d = tmpdir();
    let mnt = d.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let run = |img: &Path| {
        // Without -f: a mount that wrongly succeeds returns too (and is
        // unmounted below) instead of hanging the test.
        let o = Command::new(RUMP_EXT2FS)
            .arg(img)
            .arg(&mnt)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        if o.status.success() {
            let _ = Command::new("umount").arg(&mnt).status();
        }
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
        stderr(&o)
    };
    let e4 = d.path().join("e4.img");
    // ext4's own features, whatever mke2fs.conf says.
    let o = host_cmd("mkfs.ext4")
        .args(["-q", "-F", "-O", "extent,64bit,^has_journal"])
        .arg(&e4)
        .arg("16M")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let msg = run(&e4);
    assert!(
        msg.starts_with(&format!(
            "rump_ext2fs: {}: unsupported incompatible features: ",
            e4.display()
        )) && msg.contains("extent"),
        "{msg}"
    );
    let junk = d.path().join("junk.img");
    std::fs::write(&junk, vec![0u8; 1 << 20]).unwrap();
    assert_eq!(
        run(&junk).trim_end(),
        format!(
            "rump_ext2fs: {}: not an ext2 file system (magic 0x0000)",
            junk.display()
        )
    );
    let unclean = d.path().join("unclean.img");
    mke2fs(&unclean, &[], "8M");
    let o = host_cmd("debugfs")
        .args(["-w", "-R", "ssv state 0"])
        .arg(&unclean)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        run(&unclean).trim_end(),
        format!(
            "rump_ext2fs: {}: file system not clean: run fsck, or mount read-only (-o ro)",
            unclean.display()
        )
    );
}

/// `rump_server -s` on `dir/sock` with core limits (soft, hard) and its
/// stderr in `log`; returns the child once it serves.
fn server_with_core_limit(
    dir: &Path,
    soft: u64,
    hard: u64,
    log: &Path,
) -> (std::process::Child, String) {
    use std::os::unix::process::CommandExt;
    let url = format!("unix://{}", dir.join("sock").display());
    let mut cmd = Command::new(RUMP_SERVER);
    cmd.args(["-s", &url])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    // SAFETY: setrlimit is async-signal-safe and touches only the child
    // between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            use nix::sys::resource::{setrlimit, Resource};
            setrlimit(Resource::RLIMIT_CORE, soft, hard).map_err(std::io::Error::from)
        });
    }
    let mut child = cmd.spawn().unwrap();
    let t = std::time::Instant::now();
    while rumpclient::Client::connect(&url).is_err() {
        assert!(child.try_wait().unwrap().is_none(), "server exited");
        assert!(t.elapsed() < std::time::Duration::from_secs(20));
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    (child, url)
}

/// `rump.halt -d` writes a core although the soft core limit is 0 (it is
/// raised to the hard limit); with a hard limit of 0 the server says why
/// no core was written.
#[test]
fn halt_dump_raises_the_core_limit_or_says_why_not() {
    use std::os::unix::process::ExitStatusExt;
    let d = tmpdir();
    let log = d.path().join("log");
    let (mut child, url) = server_with_core_limit(d.path(), 0, libc::RLIM_INFINITY, &log);
    let o = Command::new(rump_halt())
        .arg("-d")
        .env("RUMP_SERVER", &url)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let st = child.wait().unwrap();
    assert_eq!(st.signal(), Some(libc::SIGABRT), "{st:?}");
    assert!(st.core_dumped(), "a core, the soft limit raised");
    for e in std::fs::read_dir(d.path()).unwrap() {
        let p = e.unwrap().path();
        if p.file_name().unwrap().to_string_lossy().starts_with("core") {
            let _ = std::fs::remove_file(p);
        }
    }

    let (mut child, url) = server_with_core_limit(d.path(), 0, 0, &log);
    let o = Command::new(rump_halt())
        .arg("-d")
        .env("RUMP_SERVER", &url)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let st = child.wait().unwrap();
    assert!(!st.core_dumped());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("no core written: the core size limit is 0 and so is its hard limit"),
        "{text}"
    );
}

/// The built-in kernel's boot line says what it is: not "NetBSD 7.99.34",
/// but a Rust kernel with NetBSD's interfaces.
#[test]
fn the_boot_line_names_the_kernel_honestly() {
    let d = tmpdir();
    let log = d.path().join("log");
    let s = Server::start_logged(
        d.path(),
        ServerOpts {
            args: vec!["-v".into()],
            ..Default::default()
        },
        Some(&log),
    );
    drop(s);
    let text = std::fs::read_to_string(&log).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("booted"))
        .unwrap_or_else(|| panic!("no boot line: {text}"));
    assert!(line.contains("built-in rump kernel"), "{line}");
    assert!(!line.contains("booted NetBSD"), "{line}");
}

// ---------------------------------------------------------------------------
// rumpctl against coreutils: the same commands on a host directory and on
// a kernel directory, the same outcome.

/// One entry of a tree: path below the root, type letter, permission
/// bits, size of a regular file, link count.
type Entry = (Vec<u8>, char, u32, u64, u64);

fn host_tree(root: &Path) -> Vec<Entry> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    fn walk(root: &Path, rel: &[u8], out: &mut Vec<Entry>) {
        let dir = root.join(OsStr::from_bytes(rel));
        let mut names: Vec<Vec<u8>> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_vec())
            .collect();
        names.sort();
        for n in names {
            let r = if rel.is_empty() {
                n.clone()
            } else {
                [rel, b"/", &n].concat()
            };
            let m = std::fs::symlink_metadata(root.join(OsStr::from_bytes(&r))).unwrap();
            let ft = m.file_type();
            let t = if ft.is_dir() {
                'd'
            } else if ft.is_symlink() {
                'l'
            } else if ft.is_fifo() {
                'p'
            } else if ft.is_char_device() {
                'c'
            } else {
                '-'
            };
            let size = if t == '-' { m.size() } else { 0 };
            let perm = if t == 'l' { 0 } else { m.mode() & 0o7777 };
            out.push((
                r.clone(),
                t,
                perm,
                size,
                if t == 'd' { 0 } else { m.nlink() },
            ));
            if t == 'd' {
                walk(root, &r, out);
            }
        }
    }
    let mut v = Vec::new();
    walk(root, b"", &mut v);
    v
}

fn kernel_tree(c: &rumpclient::Client, root: &[u8]) -> Vec<Entry> {
    use netbsd_abi::stat::*;
    fn walk(c: &rumpclient::Client, root: &[u8], rel: &[u8], out: &mut Vec<Entry>) {
        let dir = if rel.is_empty() {
            root.to_vec()
        } else {
            [root, b"/", rel].concat()
        };
        let mut names: Vec<Vec<u8>> = c
            .read_dir(&dir)
            .unwrap()
            .into_iter()
            .map(|d| d.name)
            .filter(|n| n != b"." && n != b"..")
            .collect();
        names.sort();
        for n in names {
            let r = if rel.is_empty() {
                n.clone()
            } else {
                [rel, b"/", &n].concat()
            };
            let st = c.lstat([root, b"/", &r].concat()).unwrap();
            let t = match st.mode & S_IFMT {
                S_IFDIR => 'd',
                S_IFLNK => 'l',
                S_IFIFO => 'p',
                S_IFCHR => 'c',
                _ => '-',
            };
            let size = if t == '-' { st.size as u64 } else { 0 };
            let perm = if t == 'l' { 0 } else { st.mode & 0o7777 };
            out.push((
                r.clone(),
                t,
                perm,
                size,
                if t == 'd' { 0 } else { st.nlink as u64 },
            ));
            if t == 'd' {
                walk(c, root, &r, out);
            }
        }
    }
    let mut v = Vec::new();
    walk(c, root, b"", &mut v);
    v
}

/// A coreutils command in `dir` (C locale): status and stderr.
fn gnu(dir: &Path, cmd: &[&str]) -> Output {
    Command::new(cmd[0])
        .args(&cmd[1..])
        .current_dir(dir)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The reason at the end of a one-line message (`...: Is a directory`).
fn reason(o: &Output) -> String {
    let e = stderr(o);
    e.trim_end().rsplit(": ").next().unwrap_or("").to_string()
}

/// Each rumpctl behaviour, on a host directory with coreutils
/// and in the kernel with rumpctl: the same status, the same reason, the
/// same tree after.
#[test]
fn rumpctl_acts_like_coreutils() {
    let d = tmpdir();
    let s = Server::start(d.path(), &[]);
    let c = s.client();
    let h = d.path().join("h");
    std::fs::create_dir(&h).unwrap();
    let k = "/k";
    ok(&s, &[OsStr::new("mkdir"), OsStr::new(k)]);
    let kp = |p: &str| format!("{k}/{p}");
    let r = |args: &[&str]| {
        let a: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        rumpctl(&s, &a)
    };
    let same = |what: &str| {
        assert_eq!(
            host_tree(&h),
            kernel_tree(&c, k.as_bytes()),
            "trees differ after {what}"
        );
    };
    let both = |what: &str, g: Output, ours: Output| {
        assert_eq!(
            g.status.success(),
            ours.status.success(),
            "{what}: coreutils {:?} {}, rumpctl {:?} {}",
            g.status,
            stderr(&g),
            ours.status,
            stderr(&ours)
        );
        assert_eq!(
            reason(&g),
            reason(&ours),
            "{what}: {} / {}",
            stderr(&g),
            stderr(&ours)
        );
    };
    // A tree: files with modes, a directory, a dot file. The kernel's
    // comes in through put, which keeps modes.
    let hf = d.path().join("src.sh");
    std::fs::write(&hf, b"#!/bin/sh\necho hi\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hf, std::fs::Permissions::from_mode(0o755)).unwrap();
    for name in ["f", "g", ".hidden"] {
        assert!(gnu(&h, &["cp", hf.to_str().unwrap(), name])
            .status
            .success());
        ok(
            &s,
            &[OsStr::new("put"), hf.as_os_str(), OsStr::new(&kp(name))],
        );
    }
    std::fs::create_dir(h.join("dir")).unwrap();
    ok(&s, &[OsStr::new("mkdir"), OsStr::new(&kp("dir"))]);
    same("put keeps the mode (0755)");

    // get keeps the mode too.
    let back = d.path().join("back.sh");
    ok(
        &s,
        &[OsStr::new("get"), OsStr::new(&kp("f")), back.as_os_str()],
    );
    assert_eq!(
        std::fs::metadata(&back).unwrap().permissions().mode() & 0o777,
        0o755
    );

    // mv file dir, mv file dir/: into the directory.
    both(
        "mv f dir",
        gnu(&h, &["mv", "f", "dir"]),
        r(&["mv", &kp("f"), &kp("dir")]),
    );
    both(
        "mv g dir/",
        gnu(&h, &["mv", "g", "dir/"]),
        r(&["mv", &kp("g"), &kp("dir/")]),
    );
    same("mv into a directory");

    // Mistakes, and the reasons given for them.
    both(
        "cp to nonexist/",
        gnu(&h, &["cp", ".hidden", "nonexist/"]),
        r(&[
            "cp",
            &format!(":{}", kp(".hidden")),
            &format!(":{}", kp("nonexist/")),
        ]),
    );
    both("rm dir", gnu(&h, &["rm", "dir"]), r(&["rm", &kp("dir")]));
    both(
        "rm nonexist",
        gnu(&h, &["rm", "nonexist"]),
        r(&["rm", &kp("nonexist")]),
    );
    both(
        "rm -f nonexist",
        gnu(&h, &["rm", "-f", "nonexist"]),
        r(&["rm", "-f", &kp("nonexist")]),
    );
    same("the mistakes");

    // get of a directory leaves no host file.
    let nofile = d.path().join("nofile");
    let o = r(&["get", &kp("dir"), nofile.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(reason(&o), "Is a directory");
    assert!(!nofile.exists(), "get of a directory left a host file");

    // ls hides dot files without -a; two file operands, no blank line.
    let g = gnu(&h, &["ls"]);
    assert_eq!(r(&["ls", k]).stdout, g.stdout, "ls without -a");
    let g = gnu(&h, &["ls", "-a"]);
    let mine = r(&["ls", "-a", k]).stdout;
    let strip_dots = |b: &[u8]| -> Vec<u8> {
        b.split(|&x| x == b'\n')
            .filter(|l| *l != b"." && *l != b"..")
            .flat_map(|l| [l, b"\n"].concat())
            .collect()
    };
    assert_eq!(strip_dots(&mine), strip_dots(&g.stdout), "ls -a");
    let g = gnu(&h, &["ls", "dir/g", "dir/f"]);
    let mine = r(&["ls", &kp("dir/g"), &kp("dir/f")]).stdout;
    assert_eq!(
        String::from_utf8_lossy(&mine).replace(&kp(""), ""),
        String::from_utf8_lossy(&g.stdout)
    );

    // Hard links, FIFOs, device nodes; ls -l shows major, minor.
    both(
        "ln",
        gnu(&h, &["ln", ".hidden", "hard"]),
        r(&["ln", &kp(".hidden"), &kp("hard")]),
    );
    both(
        "mkfifo",
        gnu(&h, &["mkfifo", "fifo"]),
        r(&["mkfifo", &kp("fifo")]),
    );
    both(
        "mknod",
        gnu(&h, &["mknod", "dev", "c", "5", "7"]),
        r(&["mknod", &kp("dev"), "c", "5", "7"]),
    );
    let gl = String::from_utf8(gnu(&h, &["ls", "-l", "dev"]).stdout).unwrap();
    let ml = String::from_utf8(r(&["ls", "-l", &kp("dev")]).stdout).unwrap();
    assert!(gl.contains("5, 7") && ml.contains("5, 7"), "{gl} / {ml}");
    same("ln, mkfifo, mknod");

    // chmod with symbolic modes, recursively; chown -R.
    both(
        "chmod -R",
        gnu(&h, &["chmod", "-R", "u-x,go-rx,o+w", "dir"]),
        r(&["chmod", "-R", "u-x,go-rx,o+w", &kp("dir")]),
    );
    both(
        "chmod +x",
        gnu(&h, &["chmod", "+X", "dir/f"]),
        r(&["chmod", "+X", &kp("dir/f")]),
    );
    both(
        "chmod =",
        gnu(&h, &["chmod", "a=r,u+w", ".hidden"]),
        r(&["chmod", "a=r,u+w", &kp(".hidden")]),
    );
    same("chmod");
    both(
        "chown -R",
        gnu(&h, &["chown", "-R", "5:7", "dir"]),
        r(&["chown", "-R", "5:7", &kp("dir")]),
    );
    for n in ["dir", "dir/f", "dir/g"] {
        let st = c.lstat(kp(n)).unwrap();
        assert_eq!((st.uid, st.gid), (5, 7), "{n}");
    }

    // cp -R twice, with a symbolic link in the tree; rm -r.
    std::os::unix::fs::symlink("f", h.join("dir/link")).unwrap();
    c.symlink("f", kp("dir/link")).unwrap();
    let out = d.path().join("out");
    let tree = d.path().join("tree");
    assert!(gnu(
        d.path(),
        &[
            "cp",
            "-R",
            h.join("dir").to_str().unwrap(),
            tree.to_str().unwrap()
        ]
    )
    .status
    .success());
    // The third time into out/dir, where the link already is.
    for _ in 0..3 {
        let g = gnu(
            d.path(),
            &[
                "cp",
                "-R",
                h.join("dir").to_str().unwrap(),
                tree.to_str().unwrap(),
            ],
        );
        let o = r(&[
            "cp",
            "-R",
            &format!(":{}", kp("dir")),
            out.to_str().unwrap(),
        ]);
        both("cp -R twice", g, o);
    }
    both(
        "rm -r",
        gnu(&h, &["rm", "-r", "dir"]),
        r(&["rm", "-r", &kp("dir")]),
    );
    same("rm -r");

    // cp -p keeps times, both ways.
    let old = d.path().join("old");
    std::fs::write(&old, b"old").unwrap();
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_times(std::fs::FileTimes::new().set_modified(t).set_accessed(t))
        .unwrap();
    ok(
        &s,
        &[
            OsStr::new("cp"),
            OsStr::new("-p"),
            old.as_os_str(),
            OsStr::new(&format!(":{}", kp("old"))),
        ],
    );
    assert_eq!(c.stat(kp("old")).unwrap().mtime.sec, 1_000_000_000);
    let old2 = d.path().join("old2");
    ok(
        &s,
        &[
            OsStr::new("cp"),
            OsStr::new("-p"),
            OsStr::new(&format!(":{}", kp("old"))),
            old2.as_os_str(),
        ],
    );
    assert_eq!(std::fs::metadata(&old2).unwrap().modified().unwrap(), t);

    // df -h: sizes with units.
    let df = String::from_utf8(r(&["df", "-h", "/"]).stdout).unwrap();
    let line = df.lines().nth(1).unwrap();
    let size = line.split_whitespace().nth(1).unwrap();
    assert!(size.ends_with(['K', 'M', 'G', 'T']), "{df}");
    assert!(df.starts_with("Filesystem") && df.contains("Size"), "{df}");
}

/// `rumpctl sysctl` reads and sets kernel variables by name, as
/// sysctl(8): the syncer's delays among them.
#[test]
fn rumpctl_sysctl_by_name() {
    let d = tmpdir();
    let s = Server::start(d.path(), &[]);
    let run = |a: &[&str]| {
        let a: Vec<&OsStr> = a.iter().map(OsStr::new).collect();
        String::from_utf8(ok(&s, &a)).unwrap()
    };
    assert_eq!(
        run(&["sysctl", "vfs.sync.filedelay"]),
        "vfs.sync.filedelay = 30\n"
    );
    assert_eq!(
        run(&["sysctl", "vfs.sync.filedelay=7"]),
        "vfs.sync.filedelay: 30 -> 7\n"
    );
    assert_eq!(
        run(&["sysctl", "-w", "vfs.sync.dirdelay=3"]),
        "vfs.sync.dirdelay: 15 -> 3\n"
    );
    let all = run(&["sysctl", "vfs.sync"]);
    assert!(
        all.contains("vfs.sync.filedelay = 7\n") && all.contains("vfs.sync.dirdelay = 3\n"),
        "{all}"
    );
    let everything = run(&["sysctl", "-a"]);
    assert!(
        everything.contains("kern.ostype = NetBSD\n") && everything.contains("hw.ncpu = "),
        "{everything}"
    );
    let o = rumpctl(&s, &[OsStr::new("sysctl"), OsStr::new("vfs.sync.nope")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("vfs.sync.nope: no such node"),
        "{}",
        stderr(&o)
    );
    let o = rumpctl(&s, &[OsStr::new("sysctl"), OsStr::new("vfs.sync.delay=x")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("invalid number"), "{}", stderr(&o));
}

/// A `rumpctl fuse kpath mnt -f` child and its mount point: unmounted (lazily) and
/// killed when dropped, whatever the test did.
struct FuseMount {
    child: std::process::Child,
    mnt: std::path::PathBuf,
}

impl FuseMount {
    fn start(s_url: &str, dir: &Path, kpath: &str, retry: Option<&str>) -> FuseMount {
        let mnt = dir.join("fusemnt");
        std::fs::create_dir_all(&mnt).unwrap();
        let mut cmd = Command::new(RUMPCTL);
        // -f after the operands: options stand anywhere.
        cmd.args(["fuse", kpath])
            .arg(&mnt)
            .arg("-f")
            .env("RUMP_SERVER", s_url)
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(dir.join("fuse.log")).unwrap());
        if let Some(r) = retry {
            cmd.env("RUMPCLIENT_RETRYCONNECT", r);
        }
        let child = cmd.spawn().unwrap();
        let m = FuseMount { child, mnt };
        let t = std::time::Instant::now();
        while !m.mounted() {
            assert!(
                t.elapsed() < std::time::Duration::from_secs(20),
                "fuse mount not live"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        m
    }

    fn mounted(&self) -> bool {
        testkit::proc::is_mounted(&self.mnt)
    }
}

impl Drop for FuseMount {
    fn drop(&mut self) {
        if self.mounted() {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Without a reconnect policy, `rumpctl fuse` unmounts itself and exits
/// within 5 s of its server's halt.
#[test]
fn fuse_mount_ends_with_its_server() {
    let d = tmpdir();
    let mut s = Server::start(d.path(), &[]);
    let f = d.path().join("f");
    std::fs::write(&f, b"through fuse\n").unwrap();
    ok(&s, &[OsStr::new("put"), f.as_os_str(), OsStr::new("/f")]);
    let mut m = FuseMount::start(&s.url, d.path(), "/", None);
    assert_eq!(std::fs::read(m.mnt.join("f")).unwrap(), b"through fuse\n");
    let o = s.halt(&[]);
    assert!(o.status.success(), "{}", stderr(&o));
    s.wait_exit(std::time::Duration::from_secs(20));
    let st = testkit::proc::wait_child(&mut m.child, std::time::Duration::from_secs(20))
        .expect("rumpctl fuse still running 20 s after the halt");
    assert!(st.success(), "{st:?}");
    assert!(!m.mounted(), "the mount outlived its server");
    let log = std::fs::read_to_string(d.path().join("fuse.log")).unwrap();
    assert!(log.contains("the server went away: unmounting"), "{log}");
}

/// With `RUMPCLIENT_RETRYCONNECT=inftime`, the mount stays when its server
/// goes, and `ls` and `cat` through it work again once a server is back
/// on the same image and URL.
#[test]
fn fuse_mount_with_retry_serves_again() {
    let d = tmpdir();
    let img = d.path().join("img");
    mke2fs(&img, &[], "16M");
    let start = || {
        let s = Server::start(
            d.path(),
            &[
                "-d",
                &format!("key=/dk,hostpath={},size=host", img.display()),
            ],
        );
        ok(&s, &[OsStr::new("mkdir"), OsStr::new("/mnt")]);
        ok(
            &s,
            &[OsStr::new("mount"), OsStr::new("/dk"), OsStr::new("/mnt")],
        );
        s
    };
    let mut s = start();
    let f = d.path().join("f");
    std::fs::write(&f, b"still here\n").unwrap();
    ok(
        &s,
        &[OsStr::new("put"), f.as_os_str(), OsStr::new("/mnt/f")],
    );
    let mut m = FuseMount::start(&s.url, d.path(), "/mnt", Some("inftime"));
    assert_eq!(std::fs::read(m.mnt.join("f")).unwrap(), b"still here\n");
    let o = s.halt(&[]);
    assert!(o.status.success(), "{}", stderr(&o));
    s.wait_exit(std::time::Duration::from_secs(20));
    drop(s);
    // Not synchronization: "the mount stays" needs the time in which one
    // without retry notices its server gone and unmounts.
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert!(m.mounted(), "with retry the mount stays");
    assert!(
        m.child.try_wait().unwrap().is_none(),
        "with retry the process stays"
    );
    let s2 = start();
    let t = std::time::Instant::now();
    loop {
        let names: Option<Vec<_>> = std::fs::read_dir(&m.mnt)
            .ok()
            .map(|r| r.filter_map(|e| e.ok()).map(|e| e.file_name()).collect());
        let data = std::fs::read(m.mnt.join("f")).ok();
        if names.is_some_and(|n| n.iter().any(|x| x == "f"))
            && data.as_deref() == Some(b"still here\n")
        {
            break;
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(10),
            "ls and cat through the mount did not work again within 10 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    drop(m);
    drop(s2);
}

/// The client library's reconnect policy, with NetBSD's
/// `rumpclient_setconnretry` semantics: never (the default: the call
/// fails with the lost connection), for ever (the call goes through once
/// a server is back, on a new kernel process), once, or for N seconds.
#[test]
fn client_reconnects_as_its_policy_says() {
    use rumpclient::{ConnRetry, Error};
    use std::time::{Duration, Instant};
    let d = tmpdir();
    let mut s = Server::start(d.path(), &[]);
    let never = s.client();
    let forever = s.client();
    forever.set_conn_retry(ConnRetry::Forever);
    let once = s.client();
    once.set_conn_retry(ConnRetry::Once);
    let limited = s.client();
    limited.set_conn_retry(ConnRetry::For(Duration::from_secs(1)));
    let fd = forever.open("/", netbsd_abi::fcntl::O_RDONLY, 0).unwrap();
    s.signal(libc::SIGKILL);
    s.wait_exit(Duration::from_secs(10));
    drop(s);
    // No server: once gives up after its one attempt, N seconds after N.
    let t = Instant::now();
    assert!(matches!(once.getpid(), Err(Error::Lost { .. })));
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "one attempt took {:?}: it retried (a liveness deadline)",
        t.elapsed()
    );
    let t = Instant::now();
    assert!(matches!(limited.getpid(), Err(Error::Lost { .. })));
    assert!(
        t.elapsed() >= Duration::from_secs(1) && t.elapsed() < Duration::from_secs(15),
        "{:?}",
        t.elapsed()
    );
    // A server back on the URL: for ever goes through, never does not.
    let s2 = Server::start(d.path(), &[]);
    assert!(forever.getpid().is_ok(), "reconnected");
    assert_eq!(
        forever.close(fd).unwrap_err().errno().0,
        netbsd_abi::errno::EBADF,
        "a new kernel process: the old descriptor is gone"
    );
    assert!(matches!(never.getpid(), Err(Error::Lost { .. })));
    // The environment's spelling, and a bad value refused in words.
    assert_eq!(ConnRetry::parse("inftime"), Some(ConnRetry::Forever));
    assert_eq!(ConnRetry::parse("once"), Some(ConnRetry::Once));
    assert_eq!(ConnRetry::parse("die"), Some(ConnRetry::Die));
    assert_eq!(ConnRetry::parse("0"), Some(ConnRetry::Never));
    assert_eq!(
        ConnRetry::parse("30"),
        Some(ConnRetry::For(Duration::from_secs(30)))
    );
    assert_eq!(ConnRetry::parse("soon"), None);
    let o = Command::new(RUMPCTL)
        .args(["ls", "/"])
        .env("RUMP_SERVER", &s2.url)
        .env("RUMPCLIENT_RETRYCONNECT", "soon")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o).trim_end(),
        "rumpctl: RUMPCLIENT_RETRYCONNECT=soon: expected inftime, once, die or a number of seconds"
    );
}

/// `df` (statfs) of a `rump_ext2fs` mount shows what the host kernel's
/// own ext2 shows for the same image, within 1 %.
#[test]
fn rump_ext2fs_df_agrees_with_the_host_kernel() {
    let d = tmpdir();
    let img = d.path().join("img");
    mke2fs(&img, &[], "64M");
    let (fm, lm) = (d.path().join("fm"), d.path().join("lm"));
    std::fs::create_dir(&fm).unwrap();
    std::fs::create_dir(&lm).unwrap();
    let o = Command::new(RUMP_EXT2FS)
        .arg(&img)
        .arg(&fm)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let ours = host_cmd("df").arg("-k").arg(&fm).output().unwrap();
    let _ = host_cmd("umount").arg(&fm).status();
    // The image is flushed and unlocked once rump_ext2fs has gone.
    let t = std::time::Instant::now();
    let theirs = loop {
        let m = host_cmd("mount")
            .args(["-o", "loop,ro"])
            .arg(&img)
            .arg(&lm)
            .output()
            .unwrap();
        if m.status.success() {
            let df = host_cmd("df").arg("-k").arg(&lm).output().unwrap();
            let _ = host_cmd("umount").arg(&lm).status();
            break df;
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(20),
            "mount -o loop: {}",
            stderr(&m)
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let ours = df_numbers(&String::from_utf8(ours.stdout).unwrap());
    let theirs = df_numbers(&String::from_utf8(theirs.stdout).unwrap());
    let close = |a: u64, b: u64| a.abs_diff(b) * 100 <= b;
    assert!(
        close(ours.0, theirs.0) && close(ours.1, theirs.1),
        "rump_ext2fs df (size, avail) {ours:?}, Linux {theirs:?}"
    );
}

/// The image lock goes with a `-h` halt that flushed: the halted process
/// stays, and another server may take the image.
#[test]
fn a_flushed_h_halt_releases_the_image() {
    let d = tmpdir();
    let img = d.path().join("img");
    let drive = format!("key=/dk,hostpath={},size=4m", img.display());
    let mut a = Server::start(d.path(), &["-d", &drive]);
    let d2 = tmpdir();
    let o = Command::new(RUMP_SERVER)
        .args(["-s", "-d", &drive])
        .arg(format!("unix://{}", d2.path().join("sock").display()))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("locked by another process"),
        "{}",
        stderr(&o)
    );
    let o = a.halt(&["-h"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(a.alive(), "-h keeps the process");
    let b = Server::start(d2.path(), &["-d", &drive]);
    assert!(
        b.client().getpid().is_ok(),
        "the image is free for another server"
    );
}
