//! rump_server with the built-in kernel, end to end: real processes, real
//! sockets, real host images.

mod common;

use rumpclient::Syscalls as _;
use std::process::Command;
use std::time::Duration;

use common::*;
use netbsd_abi::errno::{EEXIST, EIO, ENOENT, ENOSYS, ENOTEMPTY};
use netbsd_abi::fcntl::{O_CREAT, O_RDONLY, O_RDWR, O_WRONLY};
use rumpclient::Error;

const MIB: usize = 1 << 20;

fn errno(r: Result<impl std::fmt::Debug, Error>) -> i32 {
    match r {
        Err(Error::Errno(e)) => e.0,
        other => panic!("expected a NetBSD errno, got {other:?}"),
    }
}

#[test]
fn drive_created_written_back_and_synced() {
    let d = tmpdir();
    let img = d.path().join("img");
    let s = Server::start(
        d.path(),
        &[
            "-d",
            &format!("key=/dk,hostpath={},size=16m", img.display()),
        ],
    );
    assert_eq!(
        std::fs::metadata(&img).expect("image created").len(),
        16 * MIB as u64
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&img).unwrap().permissions().mode() & 0o777,
        0o644
    );

    let c = s.client();
    let fd = c.open("/dk", O_RDWR, 0).expect("open /dk");
    let data = pattern(2 * MIB + 517, 11);
    assert_eq!(
        c.pwrite(fd, &data, 3 * MIB as i64 + 9).expect("pwrite"),
        data.len()
    );
    assert_ne!(
        read_at(&img, 3 * MIB as u64 + 9, data.len()),
        data,
        "write-back: not on the host before sync"
    );
    let mut back = vec![0u8; data.len()];
    assert_eq!(
        c.pread(fd, &mut back, 3 * MIB as i64 + 9).expect("pread"),
        data.len()
    );
    assert_eq!(back, data, "read back through the server");
    c.sync().expect("sync");
    assert_eq!(
        read_at(&img, 3 * MIB as u64 + 9, data.len()),
        data,
        "on the host after sync"
    );
    c.close(fd).expect("close");
}

#[test]
fn size_host_uses_an_existing_image() {
    let d = tmpdir();
    let img = d.path().join("img");
    let data = pattern(MIB, 12);
    std::fs::write(&img, &data).unwrap();
    let s = Server::start(
        d.path(),
        &[
            "-d",
            &format!("key=/dk,hostpath={},size=host", img.display()),
        ],
    );
    let c = s.client();
    let fd = c.open("/dk", O_RDONLY, 0).expect("open /dk");
    let mut back = vec![0u8; MIB];
    assert_eq!(c.pread(fd, &mut back, 0).expect("pread"), MIB);
    assert_eq!(back, data);
    assert_eq!(c.fstat(fd).expect("fstat").size, MIB as i64);
}

#[test]
fn start_up_failures_are_one_clear_line() {
    let d = tmpdir();
    let url = format!("unix://{}", d.path().join("sock").display());
    let run = |args: &[&str]| {
        Command::new(RUMP_SERVER)
            .args(args)
            .current_dir(d.path())
            .output()
            .expect("rump_server")
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["-d".into(), "key=/dk,size=16m".into(), url.clone()],
            "hostpath",
        ),
        (
            vec![
                "-d".into(),
                "key=/dk,hostpath=x,size=12q".into(),
                url.clone(),
            ],
            "12q",
        ),
        (
            vec![
                "-d".into(),
                format!("key=/dk,hostpath={}/missing,size=host", d.path().display()),
                url.clone(),
            ],
            "missing",
        ),
        (vec!["bogus://where".into()], "bogus://where"),
        (vec!["-c".into(), "zero".into(), url.clone()], "usage"),
    ];
    for (args, needle) in cases {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = run(&a);
        assert!(!o.status.success(), "{a:?} must fail");
        let msg = stderr(&o);
        assert!(
            msg.starts_with("rump_server: ") || msg.starts_with("usage:"),
            "{a:?}: {msg}"
        );
        assert!(
            msg.contains(needle),
            "{a:?}: message names {needle:?}: {msg}"
        );
    }
    // A URL already in use.
    let s = Server::start(d.path(), &[]);
    let o = run(&[&s.url]);
    assert!(
        !o.status.success(),
        "a second server on the same socket must fail"
    );
    assert!(stderr(&o).contains("in use"), "{}", stderr(&o));
}

#[test]
fn daemonized_server_is_up_when_the_command_returns() {
    let d = tmpdir();
    let url = format!("unix://{}", d.path().join("sock").display());
    let o = Command::new(RUMP_SERVER)
        .arg(&url)
        .current_dir(d.path())
        .output()
        .expect("rump_server");
    assert!(o.status.success(), "{}", stderr(&o));
    let c = Client::connect(&url).expect("accepting connections as soon as rump_server returned");
    c.getpid().expect("getpid");
    drop(c);
    let o = Command::new(common::rump_halt())
        .env("RUMP_SERVER", &url)
        .output()
        .expect("rump.halt");
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn rumpfs_files_and_directories_behave_as_posix_says() {
    let d = tmpdir();
    let s = Server::start(d.path(), &[]);
    let c = s.client();
    c.mkdir("/a", 0o755).expect("mkdir");
    assert_eq!(errno(c.mkdir("/a", 0o755)), EEXIST);
    let fd = c.open("/a/f", O_WRONLY | O_CREAT, 0o640).expect("create");
    assert_eq!(c.write(fd, b"hello, world").expect("write"), 12);
    c.close(fd).unwrap();
    let st = c.stat("/a/f").expect("stat");
    assert_eq!(st.size, 12);
    assert_eq!(st.mode & 0o7777, 0o640);
    assert!(st.is_reg());
    assert!(c.stat("/a").unwrap().is_dir());
    let fd = c.open("/a/f", O_RDONLY, 0).unwrap();
    let mut b = [0u8; 64];
    assert_eq!(c.read(fd, &mut b).unwrap(), 12);
    assert_eq!(&b[..12], b"hello, world");
    c.close(fd).unwrap();

    c.rename("/a/f", "/a/g").expect("rename");
    assert_eq!(errno(c.stat("/a/f")), ENOENT);
    let fd = c.open("/a", O_RDONLY, 0).unwrap();
    let mut names: Vec<String> = c
        .getdents(fd, 4096)
        .unwrap()
        .into_iter()
        .map(|e| String::from_utf8_lossy(&e.name).into_owned())
        .collect();
    names.sort();
    assert_eq!(names, [".", "..", "g"]);
    c.close(fd).unwrap();
    assert_eq!(errno(c.rmdir("/a")), ENOTEMPTY);
    c.unlink("/a/g").expect("unlink");
    c.rmdir("/a").expect("rmdir of an empty directory");
    assert_eq!(errno(c.stat("/a")), ENOENT);
}

#[test]
fn unknown_syscall_is_enosys_and_the_server_stays_up() {
    let d = tmpdir();
    let s = Server::start(d.path(), &[]);
    let c = s.client();
    assert_eq!(errno(c.syscall(499, &[0; 8], &mut [])), ENOSYS);
    assert_eq!(errno(c.syscall(9999, &[], &mut [])), ENOSYS);
    c.getpid().expect("still serving");
    s.client().getpid().expect("still accepting");
}

#[test]
fn many_clients_keep_their_descriptors_and_directories_apart() {
    let d = tmpdir();
    let s = Server::start(d.path(), &[]);
    let threads: Vec<_> = (0..32)
        .map(|i| {
            let url = s.url.clone();
            std::thread::spawn(move || {
                let c = Client::connect(&url).expect("connect");
                let dir = format!("/c{i}");
                c.mkdir(&dir, 0o755).unwrap();
                c.chdir(&dir).unwrap();
                for round in 0..20 {
                    let name = format!("f{round}");
                    let fd = c.open(&name, O_RDWR | O_CREAT, 0o644).unwrap();
                    let data = pattern(1000 + round * 37, (i * 100 + round) as u64);
                    c.write(fd, &data).unwrap();
                    let mut back = vec![0u8; data.len()];
                    c.pread(fd, &mut back, 0).unwrap();
                    assert_eq!(back, data);
                    c.close(fd).unwrap();
                    assert_eq!(c.getcwd().unwrap(), dir.as_bytes(), "cwd is per client");
                }
                c.getpid().unwrap()
            })
        })
        .collect();
    let mut pids: Vec<i32> = threads
        .into_iter()
        .map(|t| t.join().expect("client thread"))
        .collect();
    pids.sort();
    pids.dedup();
    assert_eq!(pids.len(), 32, "each client is its own process");
}

/// Resident set size of a process, from /proc.
fn rss_bytes(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/statm")).unwrap_or_default();
    s.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        * 4096
}

#[test]
fn writing_four_times_the_memory_limit_stays_within_it() {
    const LIMIT: usize = 16 * MIB;
    let d = tmpdir();
    let img = d.path().join("img");
    let s = Server::start(
        d.path(),
        &[
            "-r",
            "16m",
            "-d",
            &format!("key=/dk,hostpath={},size=72m", img.display()),
        ],
    );
    let base_rss = rss_bytes(s.pid());
    let c = s.client();
    let fd = c.open("/dk", O_RDWR, 0).unwrap();
    let chunk = 256 * 1024;
    let mut peak = 0;
    for i in 0..(4 * LIMIT / chunk) {
        let data = pattern(chunk, i as u64);
        assert_eq!(c.pwrite(fd, &data, (i * chunk) as i64).unwrap(), chunk);
        peak = peak.max(rss_bytes(s.pid()));
    }
    c.sync().unwrap();
    let margin = 24 * MIB as u64;
    assert!(
        peak <= base_rss + LIMIT as u64 + margin,
        "resident memory {} MiB over start {} MiB + limit 16 MiB + margin",
        peak >> 20,
        base_rss >> 20
    );
    for i in 0..(4 * LIMIT / chunk) {
        assert_eq!(
            read_at(&img, (i * chunk) as u64, chunk),
            pattern(chunk, i as u64),
            "chunk {i}"
        );
    }
}

#[test]
fn a_host_write_error_is_reported_and_the_data_kept() {
    let d = tmpdir();
    let img = d.path().join("img");
    let ctl = d.path().join("fault-on");
    std::fs::write(&ctl, b"").unwrap();
    let s = Server::start_with(
        d.path(),
        ServerOpts {
            args: vec![
                "-d".into(),
                format!("key=/dk,hostpath={},size=8m", img.display()),
            ],
            env: vec![("RUMP_FAULT", format!("/dk=write-error:{}", ctl.display()))],
            cores: false,
            stderr: None,
        },
    );
    let c = s.client();
    let fd = c.open("/dk", O_RDWR, 0).unwrap();
    let data = pattern(MIB, 13);
    c.pwrite(fd, &data, 0).unwrap();
    assert_eq!(
        errno(c.fsync(fd)),
        EIO,
        "fsync reports the host write error"
    );
    assert_eq!(errno(c.sync()), EIO, "sync reports it too");
    std::fs::remove_file(&ctl).unwrap();
    c.fsync(fd)
        .expect("the fault is gone: the kept data is written");
    assert_eq!(read_at(&img, 0, MIB), data, "nothing was dropped");
}

#[test]
fn rumpctl_moves_files_in_and_out() {
    let d = tmpdir();
    let s = Server::start(d.path(), &[]);
    let host = d.path().join("in.bin");
    let data = pattern(300_000, 14);
    std::fs::write(&host, &data).unwrap();
    let ok = |args: &[&str]| {
        let o = s.tool(RUMPCTL, args);
        assert!(o.status.success(), "rumpctl {args:?}: {}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    ok(&["mkdir", "-p", "/x/y"]);
    ok(&["put", host.to_str().unwrap(), "/x/y/data"]);
    let out = d.path().join("out.bin");
    ok(&["get", "/x/y/data", out.to_str().unwrap()]);
    assert_eq!(std::fs::read(&out).unwrap(), data);
    ok(&["mv", "/x/y/data", "/x/moved"]);
    assert_eq!(ok(&["ls", "/x"]), "moved\ny\n");
    assert!(ok(&["stat", "/x/moved"]).contains("size 300000"));
    ok(&["rm", "/x/moved"]);
    let o = s.tool(RUMPCTL, &["cat", "/x/moved"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o).trim(),
        "rumpctl: /x/moved: No such file or directory"
    );
    ok(&["sync"]);
    let o = s.tool(RUMPCTL, &["frobnicate"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("usage:"));
    let _ = Duration::from_secs(0);
}

/// `--help` on every tool: the usage on standard output, status 0, no
/// connection tried (RUMP_SERVER points nowhere).
fn help_of(exe: &str) -> String {
    let o = Command::new(exe)
        .arg("--help")
        .env("RUMP_SERVER", "unix:///nonexistent/sock")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run --help");
    assert_eq!(o.status.code(), Some(0), "{exe} --help: {}", stderr(&o));
    assert!(
        o.stderr.is_empty(),
        "{exe} --help wrote on stderr: {}",
        stderr(&o)
    );
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let name = std::path::Path::new(exe)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        out.starts_with(&format!("usage: {name} ")),
        "{exe} --help: {out}"
    );
    out
}

/// The options (`-x` letters) and, for rumpctl, the command names in a
/// usage text: `[-sv]`, `[-c ncpu]`, `ls [-l]`, `ln -s`, `cp [-R]`.
fn usage_items(usage: &str) -> (Vec<char>, Vec<String>) {
    let mut flags = vec![];
    let mut cmds = vec![];
    for line in usage.lines().take_while(|l| !l.trim().is_empty()) {
        let words: Vec<&str> = line.split_whitespace().collect();
        // "usage: prog ..." or "       prog cmd ...": the word after prog.
        let rest = if words.first() == Some(&"usage:") {
            &words[2..]
        } else {
            &words[1..]
        };
        if let Some(w) = rest
            .first()
            .filter(|w| w.chars().all(|c| c.is_ascii_lowercase()))
        {
            cmds.push(w.to_string());
        }
        for w in rest {
            let w = w.trim_start_matches('[');
            if let Some(f) = w.strip_prefix('-').filter(|f| !f.starts_with('-')) {
                flags.extend(f.chars().take_while(|c| c.is_ascii_alphabetic()));
            }
        }
    }
    flags.sort();
    flags.dedup();
    (flags, cmds)
}

/// `docs/tools.md` (where the README sends readers for each tool) shows
/// every tool's usage exactly as the tool prints it.
#[test]
fn the_tools_page_shows_each_usage_as_the_tool_prints_it() {
    let page = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/tools.md");
    let text = std::fs::read_to_string(&page).expect("docs/tools.md");
    let norm = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let doc: Vec<String> = text.lines().map(norm).collect();
    let halt = rump_halt();
    for exe in [RUMP_SERVER, halt.to_str().unwrap(), RUMPCTL] {
        let help = help_of(exe);
        let prog = help
            .split_whitespace()
            .nth(1)
            .expect("usage: prog ...")
            .to_string();
        // The usage: its first line, and the lines that go on with the
        // program's name.
        let usage = help
            .lines()
            .take_while(|l| l.starts_with("usage:") || l.trim_start().starts_with(&prog));
        for line in usage {
            let want = norm(line.trim_start().trim_start_matches("usage:"));
            assert!(
                doc.contains(&want),
                "docs/tools.md lacks the usage line `{want}` of {exe}"
            );
        }
    }
}

/// Every option in each tool's usage appears in its manual page (as
/// `Fl x` in mdoc), rumpctl's commands too (`Cm name`), and every page
/// renders with `man -l`.
#[test]
fn manual_pages_document_every_option_and_render() {
    let man = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    for (exe, page) in [
        (RUMP_SERVER, "rump_server.1"),
        (RUMP_HALT, "rump.halt.1"),
        (RUMPCTL, "rumpctl.1"),
    ] {
        let text =
            std::fs::read_to_string(man.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        let (flags, cmds) = usage_items(&help_of(exe));
        assert!(!flags.is_empty(), "{exe}: no options found in its usage");
        for f in flags {
            let documented = text.lines().any(|l| {
                l.split("Fl ").skip(1).any(|after| {
                    after.starts_with(f)
                        || after.split_whitespace().next().is_some_and(|w| {
                            w.contains(f) && w.chars().all(|c| c.is_ascii_alphabetic())
                        })
                })
            });
            assert!(
                documented,
                "{page} does not document -{f} from {exe}'s usage"
            );
        }
        if exe == RUMPCTL {
            assert!(cmds.len() >= 15, "{cmds:?}");
            for c in cmds {
                assert!(
                    text.contains(&format!(".It Cm {c}")),
                    "{page} does not document the command {c}"
                );
            }
        }
        assert!(text.contains(".Fl Fl help"), "{page} documents --help");
    }
    // rump.halt's name is the one it was called by; its help says so.
    help_of(rump_halt().to_str().unwrap());
    let pages = std::fs::read_dir(&man)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "1" || x == "8"));
    for p in pages {
        let o = host_cmd("man")
            .arg("-l")
            .arg(&p)
            .env("MANWIDTH", "80")
            .env("MAN_KEEP_STDERR", "1")
            .output()
            .unwrap();
        assert!(
            o.status.success() && o.stdout.len() > 500,
            "man -l {}: {}",
            p.display(),
            stderr(&o)
        );
    }
}

/// One context per message: the spec once, a size error that says what
/// is wrong, an empty RUMP_SERVER named as such.
#[test]
fn messages_name_the_object_once_and_say_why() {
    let d = tmpdir();
    let url = format!("unix://{}", d.path().join("sock").display());
    let run = |exe: &str, args: &[&str]| {
        Command::new(exe)
            .args(args)
            .current_dir(d.path())
            .output()
            .unwrap()
    };
    let o = run(
        RUMP_SERVER,
        &["-s", "-d", "key=/dk,hostpath=x,size=12q", &url],
    );
    let e = stderr(&o);
    assert_eq!(
        e.matches("12q").count(),
        2,
        "the spec once, then the bad size: {e}"
    );
    assert_eq!(e.matches("drive").count(), 1, "{e}");
    let o = run(RUMP_SERVER, &["-s", "-r", "1x", &url]);
    let e = stderr(&o);
    assert!(
        e.starts_with("rump_server: -r 1x: ") && !e.contains("missing number"),
        "{e}"
    );
    let o = Command::new(RUMPCTL)
        .args(["ls", "/"])
        .env("RUMP_SERVER", "")
        .output()
        .unwrap();
    assert_eq!(
        stderr(&o).lines().next(),
        Some("rumpctl: RUMP_SERVER is empty (expected unix://PATH or tcp://ADDR:PORT)")
    );
    // Arguments are checked before connecting: no server is needed to be told.
    let o = Command::new(RUMPCTL)
        .args(["chmod", "9z", "/x"])
        .env("RUMP_SERVER", "unix:///nonexistent")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with("rumpctl: chmod: 9z: invalid file mode"),
        "{}",
        stderr(&o)
    );
}

/// `rumpctl cat big | head -c1`: rumpctl stops quietly (no "Broken pipe",
/// no failure status) when its reader goes away.
#[test]
fn rumpctl_is_quiet_when_its_reader_goes() {
    use std::io::Read;
    let d = tmpdir();
    let s = Server::start(d.path(), &[]);
    let host = d.path().join("big");
    std::fs::write(&host, pattern(4 * MIB, 3)).unwrap();
    let o = s.tool(RUMPCTL, &["put", host.to_str().unwrap(), "/big"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut child = Command::new(RUMPCTL)
        .args(["cat", "/big"])
        .env("RUMP_SERVER", &s.url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut one = [0u8; 1];
    child.stdout.take().unwrap().read_exact(&mut one).unwrap();
    // The pipe's read end is closed here.
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(o.stderr.is_empty(), "no message: {}", stderr(&o));
}

/// rumpctl's chmod, chown, touch, df and ls -l times on the in-memory root.
#[test]
fn rumpctl_chmod_chown_touch_df() {
    let d = tmpdir();
    let s = Server::start(d.path(), &[]);
    let ok = |args: &[&str]| {
        let o = s.tool(RUMPCTL, args);
        assert!(o.status.success(), "rumpctl {args:?}: {}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    ok(&["touch", "/f"]);
    ok(&["chmod", "4750", "/f"]);
    ok(&["chown", "12:34", "/f"]);
    let l = ok(&["ls", "-l", "/"]);
    let line = l
        .lines()
        .find(|l| l.ends_with(" f"))
        .unwrap_or_else(|| panic!("{l}"));
    let w: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        (w[0], w[2], w[3], w[4]),
        ("-rwsr-x---", "12", "34", "0"),
        "{line}"
    );
    // A time: "Mon dd hh:mm".
    assert!(w[7].contains(':') && w[5].len() == 3, "{line}");
    let df = ok(&["df"]);
    assert!(
        df.lines().count() == 2 && df.lines().nth(1).unwrap().ends_with(" /"),
        "{df}"
    );
    let o = s.tool(RUMPCTL, &["chown", "1", "/nonexistent"]);
    assert_eq!(
        stderr(&o).trim(),
        "rumpctl: /nonexistent: No such file or directory"
    );
}

/// Our client and server negotiate inline syscall input (no
/// copyin round trip); without it (`RUMPCLIENT_NO_EXT`, or NetBSD's
/// client) the plain protocol gives the same results.
#[test]
fn inline_input_is_negotiated_and_matches_the_plain_protocol() {
    let d = tmpdir();
    let img = d.path().join("img");
    let s = Server::start(
        d.path(),
        &["-d", &format!("key=/dk,hostpath={},size=4m", img.display())],
    );
    let c = s.client();
    assert!(c.inline_granted());
    let plain = rumpclient::Client::connect_plain(&s.url).expect("connect");
    assert!(!plain.inline_granted());
    for (k, cl) in [(0u64, &c), (1, &plain)] {
        let data = pattern(64 * 1024, 40 + k);
        let fd = cl.open("/dk", O_RDWR, 0).expect("open /dk");
        let r0 = cl.round_trips();
        assert_eq!(
            cl.pwrite(fd, &data, (k * 64 * 1024) as i64)
                .expect("pwrite"),
            data.len()
        );
        assert_eq!(
            cl.round_trips() - r0,
            1 + k,
            "inline: one round trip; plain: request + copyin"
        );
        // A partial block and a write spanning blocks (not the whole-block path).
        let odd = pattern(70_001, 50 + k);
        cl.pwrite(fd, &odd, 1_000_000 + k as i64 * 100_000)
            .expect("pwrite");
        let mut back = vec![0u8; data.len()];
        cl.pread(fd, &mut back, (k * 64 * 1024) as i64)
            .expect("pread");
        assert_eq!(back, data);
        let mut back = vec![0u8; odd.len()];
        cl.pread(fd, &mut back, 1_000_000 + k as i64 * 100_000)
            .expect("pread");
        assert_eq!(back, odd);
        cl.close(fd).expect("close");
        // Paths go inline too: create, stat, a missing one, a long one.
        let name = format!("/f{k}");
        let r0 = cl.round_trips();
        let fd = cl.open(&name, O_WRONLY | O_CREAT, 0o644).expect("create");
        assert_eq!(cl.round_trips() - r0, 1 + k);
        assert_eq!(cl.write(fd, b"hello").expect("write"), 5);
        cl.close(fd).expect("close");
        assert_eq!(cl.stat(&name).expect("stat").size, 5);
        assert_eq!(errno(cl.stat("/nonexistent")), ENOENT);
        assert_eq!(
            errno(cl.stat(format!("/{}", "x".repeat(2000)))),
            netbsd_abi::errno::ENAMETOOLONG
        );
    }
}

/// A SYSCALL request with the inline flag on a connection that was not
/// granted the extension is malformed: error frame, connection closed,
/// server up.
#[test]
fn inline_request_without_the_grant_is_refused() {
    use netbsd_abi::sp::{self as wire, Class, Header, Type};
    use std::io::{Read, Write};
    let d = tmpdir();
    let s = Server::start(d.path(), &[]);
    let path = s.url.strip_prefix("unix://").expect("unix url");
    let mut sock = std::os::unix::net::UnixStream::connect(path).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut banner = [0u8; 1];
    while sock.read(&mut banner).expect("banner") == 1 && banner[0] != b'\n' {}
    // A plain guest handshake (NetBSD's: no extension asked for).
    let name = b"raw\0";
    let h = Header::new(Class::Req, Type::Handshake, 0, 0, name.len());
    sock.write_all(&[&h.encode()[..], name].concat()).unwrap();
    let mut resp = [0u8; wire::HDRSZ + wire::HANDSHAKE_RESP_LEN];
    sock.read_exact(&mut resp).expect("handshake response");
    assert_eq!(
        Header::decode(&resp).unwrap().payload_len(),
        wire::HANDSHAKE_RESP_LEN,
        "no grant for a plain handshake"
    );
    let body = [wire::InlineHdr { arglen: 0, nrec: 0 }.encode()].concat();
    let h = Header::new(
        Class::Req,
        Type::Syscall,
        1,
        20 | wire::SYSCALL_INLINE,
        body.len(),
    );
    sock.write_all(&[&h.encode()[..], &body].concat()).unwrap();
    let mut eh = [0u8; wire::HDRSZ];
    sock.read_exact(&mut eh).expect("error frame");
    let eh = Header::decode(&eh).unwrap();
    assert_eq!(
        (eh.class, eh.arg),
        (Class::Error, wire::ProtoError::MalformedRequest as u32)
    );
    let mut rest = Vec::new();
    assert_eq!(
        sock.read_to_end(&mut rest).expect("closed"),
        0,
        "connection closed"
    );
    assert_eq!(
        s.client().getpid().map(|p| p > 0).ok(),
        Some(true),
        "server still up"
    );
}

/// `rump_server` reads the kernel's `RUMP_*` variables
/// (`KernelConfig::from_env`): a value its flag would refuse is refused,
/// naming the variable, before anything is served; a good one is taken.
#[test]
fn a_bad_rump_variable_is_refused_naming_it() {
    let d = tmpdir();
    let url = format!("unix://{}", d.path().join("s.sock").display());
    for (var, val, msg) in [
        (
            "RUMP_NCPU",
            "0",
            "RUMP_NCPU=0: invalid CPU count (1 to 256, or host)",
        ),
        (
            "RUMP_MEMLIMIT",
            "0",
            "RUMP_MEMLIMIT=0: bad memory limit: must be more than 0",
        ),
        (
            "RUMP_FILEDELAY",
            "soon",
            "RUMP_FILEDELAY=soon: not a number of seconds",
        ),
        (
            "RUMP_LOCKDEBUG",
            "yes",
            "RUMP_LOCKDEBUG=yes: expected 0, warn or abort",
        ),
    ] {
        let o = Command::new(RUMP_SERVER)
            .args(["-s", &url])
            .env(var, val)
            .output()
            .expect("rump_server");
        assert_eq!(o.status.code(), Some(1), "{var}={val}");
        assert_eq!(stderr(&o).trim_end(), format!("rump_server: {msg}"));
        assert!(
            !d.path().join("s.sock").exists(),
            "{var}={val}: nothing served"
        );
    }
    // A good value is taken: the kernel has the CPUs RUMP_NCPU names.
    let s = Server::start_with(
        d.path(),
        ServerOpts {
            env: vec![("RUMP_NCPU", "3".into())],
            ..Default::default()
        },
    );
    use netbsd_abi::reboot::{CTL_HW, HW_NCPU};
    let v = s.client().sysctl(&[CTL_HW, HW_NCPU]).expect("hw.ncpu");
    assert_eq!(v, 3i32.to_ne_bytes(), "hw.ncpu");
}
