//! NetBSD's own rump kernel components on this runtime (docs/design.md,
//! "Hosting NetBSD's own components"):
//! `rump_server -l` boots them on our hypercall layer; our client and
//! `rump.halt` against NetBSD's `rump_server`, NetBSD's `librumpclient`
//! against ours, NetBSD's `rump_server` on our `librumpuser.so`.
//!
//! Needs a `buildrump.sh` build of NetBSD's components, named by
//! `RUMP_NETBSD_DIR` (its destdir: `lib/`, `bin/`, `include/`; see
//! docs/netbsd.md). The tests that need NetBSD are
//! `#[ignore = "needs RUMP_NETBSD_DIR"]`: a plain `cargo test` reports them
//! as ignored, never as passed; `.ci/run` runs them (`-- --ignored`) when
//! it finds a build, and run by hand without `RUMP_NETBSD_DIR` they fail
//! saying so. Nothing from NetBSD is in this repository.

mod common;

use rumpclient::Syscalls as _;
use std::fs::File;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use common::{debugfs_cat, e2fsck_clean, pattern, tmpdir, wait_until, Client, RUMP_SERVER};
use netbsd_abi::fcntl::{O_CREAT, O_RDONLY, O_RDWR, O_TRUNC};

/// The components an ext2 image on a host drive needs: ext2fs uses
/// ffs/ufs code, which needs the disk framework.
const EXT2_LIBS: &[&str] = &[
    "rumpvfs",
    "rumpfs_ffs",
    "rumpfs_ext2fs",
    "rumpdev",
    "rumpdev_disk",
];

/// The buildrump.sh destdir named by `RUMP_NETBSD_DIR`, made usable
/// (see `testkit::netbsd`); unset is a failure naming `test`.
fn netbsd_dir(test: &str) -> PathBuf {
    testkit::netbsd::require_usable_destdir(test, Path::new(env!("CARGO_TARGET_TMPDIR")))
}

macro_rules! need_netbsd {
    ($name:expr) => {
        netbsd_dir($name)
    };
}

/// Which program serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Prog {
    /// Our rump_server -l, on our hypercall layer.
    Ours,
    /// NetBSD's rump_server with NetBSD's librumpuser.
    NetbsdServer,
    /// NetBSD's rump_server with our librumpuser.so first on the path.
    NetbsdServerOurHypercalls,
}

/// A foreground server process with its socket, output and trace in a
/// private directory; killed when dropped.
struct Srv {
    child: Option<Child>,
    url: String,
    sock: PathBuf,
    dir: PathBuf,
}

struct SrvOpts<'a> {
    prog: Prog,
    libs: &'a [&'a str],
    drives: Vec<String>,
    extra: Vec<String>,
    cores: bool,
}

impl Default for SrvOpts<'_> {
    fn default() -> Self {
        SrvOpts {
            prog: Prog::Ours,
            libs: &["rumpvfs"],
            drives: vec![],
            extra: vec![],
            cores: false,
        }
    }
}

/// Our librumpuser.so (the cdylib cargo built beside the binaries).
fn our_librumpuser() -> Option<PathBuf> {
    let bin = Path::new(RUMP_SERVER).parent()?;
    [bin.join("deps/librumpuser.so"), bin.join("librumpuser.so")]
        .into_iter()
        .find(|p| p.exists())
}

/// `LD_LIBRARY_PATH` for a program: NetBSD's libraries, with a directory
/// holding our librumpuser.so as `librumpuser.so.0` first if asked.
fn library_path(nb: &Path, dir: &Path, ours_first: bool) -> String {
    let lib = nb.join("lib").display().to_string();
    if !ours_first {
        return lib;
    }
    let so = our_librumpuser().expect("our librumpuser.so beside the test binaries");
    let d = dir.join("ourlib");
    std::fs::create_dir_all(&d).unwrap();
    let link = d.join("librumpuser.so.0");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&so, &link).unwrap();
    format!("{}:{lib}", d.display())
}

impl Srv {
    fn start(nb: &Path, dir: &Path, o: SrvOpts) -> Srv {
        let sock = dir.join("sock");
        let url = format!("unix://{}", sock.display());
        let exe = match o.prog {
            Prog::Ours => PathBuf::from(RUMP_SERVER),
            _ => nb.join("bin/rump_server"),
        };
        let mut cmd = Command::new(&exe);
        cmd.arg("-s");
        for l in o.libs {
            cmd.args(["-l", l]);
        }
        for d in &o.drives {
            cmd.args(["-d", d]);
        }
        cmd.args(&o.extra)
            .arg(&url)
            .current_dir(dir)
            .stdin(Stdio::null());
        cmd.stdout(File::create(dir.join("server.out")).unwrap());
        cmd.stderr(File::create(dir.join("server.err")).unwrap());
        cmd.env(
            "LD_LIBRARY_PATH",
            library_path(nb, dir, o.prog == Prog::NetbsdServerOurHypercalls),
        );
        cmd.env("RUMPUSER_TRACE", dir.join("trace.txt"));
        cmd.env_remove("RUMP_NCPU")
            .env_remove("RUMP_VERBOSE")
            .env_remove("RUMP_FAULT");
        if o.cores {
            // SAFETY: setrlimit only, between fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    use nix::sys::resource::{setrlimit, Resource, RLIM_INFINITY};
                    let _ = setrlimit(Resource::RLIMIT_CORE, RLIM_INFINITY, RLIM_INFINITY);
                    Ok(())
                });
            }
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", exe.display()));
        let mut s = Srv {
            child: Some(child),
            url,
            sock,
            dir: dir.to_path_buf(),
        };
        let t = Instant::now();
        loop {
            if Client::connect(&s.url).is_ok() {
                return s;
            }
            if let Some(st) = s.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                s.child = None;
                panic!(
                    "{} exited during start-up: {st}\n{}",
                    exe.display(),
                    s.output()
                );
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "server did not come up on {}\n{}",
                s.url,
                s.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn client(&self) -> Client {
        Client::connect(&self.url).expect("connect to the server")
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    fn output(&self) -> String {
        let r = |n: &str| std::fs::read_to_string(self.dir.join(n)).unwrap_or_default();
        format!(
            "--- server stdout:\n{}--- server stderr:\n{}",
            r("server.out"),
            r("server.err")
        )
    }

    /// The hypercall counts the server wrote at exit (RUMPUSER_TRACE).
    fn trace(&self) -> String {
        std::fs::read_to_string(self.dir.join("trace.txt")).unwrap_or_default()
    }

    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let st = testkit::proc::wait_child(self.child.as_mut()?, timeout)?;
        self.child = None;
        Some(st)
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.pid(), sig) };
    }

    fn halt(&self, args: &[&str]) -> Output {
        Command::new(common::rump_halt())
            .args(args)
            .env("RUMP_SERVER", &self.url)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

impl Drop for Srv {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The count for `name` in a RUMPUSER_TRACE report (0 if not called).
fn traced(report: &str, name: &str) -> u64 {
    report
        .lines()
        .find_map(|l| {
            let mut f = l.split_whitespace();
            (f.next() == Some(name))
                .then(|| f.next().and_then(|n| n.parse().ok()))
                .flatten()
        })
        .unwrap_or(0)
}

/// Print a server's hypercall counts into the test log (the issue's
/// "which hypercalls did NetBSD's kernel use").
fn show_trace(test: &str, s: &Srv) -> String {
    let t = s.trace();
    eprintln!("== {test}: {t}");
    t
}

fn mke2fs(img: &Path, size: &str) {
    let o = common::host_cmd("mke2fs")
        .args([
            "-q", "-F", "-t", "ext2", "-r", "1", "-b", "1024", "-O", "none",
        ])
        .arg(img)
        .arg(size)
        .output()
        .expect("mke2fs (e2fsprogs) is needed for these tests");
    assert!(o.status.success(), "mke2fs: {}", stderr(&o));
}

fn ext2_drive(dir: &Path) -> (PathBuf, String) {
    let img = dir.join("img");
    mke2fs(&img, "16M");
    (
        img.clone(),
        format!("key=/dk,hostpath={},size=host", img.display()),
    )
}

/// Plain byte counts: NetBSD's rump_server on Linux reads `16m` as 16.
fn ext2_drive_bytes(dir: &Path) -> (PathBuf, String) {
    let img = dir.join("img");
    mke2fs(&img, "16M");
    (
        img.clone(),
        format!("key=/dk,hostpath={},size={}", img.display(), 16 << 20),
    )
}

fn write_file(c: &Client, path: &str, data: &[u8]) {
    let fd = c
        .open(path, O_RDWR | O_CREAT | O_TRUNC, 0o644)
        .unwrap_or_else(|e| panic!("open {path}: {e}"));
    let mut off = 0;
    while off < data.len() {
        let n = c
            .write(fd, &data[off..(off + 65536).min(data.len())])
            .unwrap_or_else(|e| panic!("write {path}: {e}"));
        assert!(n > 0);
        off += n;
    }
    c.close(fd).unwrap();
}

fn read_file(c: &Client, path: &str) -> Vec<u8> {
    let fd = c
        .open(path, O_RDONLY, 0)
        .unwrap_or_else(|e| panic!("open {path}: {e}"));
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let n = c.read(fd, &mut buf).unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    c.close(fd).unwrap();
    out
}

/// Mount the ext2 image at /dk on /mnt and write a few files.
fn fill_ext2(c: &Client) -> Vec<(&'static str, Vec<u8>)> {
    c.mkdir("/mnt", 0o755).expect("mkdir /mnt");
    c.mount_ext2("/mnt", 0, "/dk")
        .expect("mount ext2fs /dk on /mnt");
    c.mkdir("/mnt/dir", 0o755).expect("mkdir /mnt/dir");
    let files = vec![
        ("/small.txt", b"hello from our client\n".to_vec()),
        ("/dir/big.bin", pattern(300_000, 7)),
        ("/dir/odd.bin", pattern(4097, 8)),
    ];
    for (p, d) in &files {
        write_file(c, &format!("/mnt{p}"), d);
    }
    for (p, d) in &files {
        assert_eq!(
            &read_file(c, &format!("/mnt{p}")),
            d,
            "read back {p} through the kernel"
        );
    }
    files
}

fn check_image(img: &Path, files: &[(&str, Vec<u8>)]) {
    e2fsck_clean(img);
    for (p, d) in files {
        assert_eq!(&debugfs_cat(img, p), d, "debugfs cat {p}");
    }
}

// ---------------------------------------------------------------------------
// Without NetBSD

#[test]
fn rump_server_exports_every_hypercall() {
    let o = Command::new("nm")
        .args(["-D", "--defined-only", RUMP_SERVER])
        .output()
        .expect("nm (binutils)");
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    let exported: Vec<&str> = text
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .nth(2)
                .filter(|_| l.split_whitespace().nth(1) == Some("T"))
        })
        .filter(|n| n.starts_with("rumpuser_"))
        .collect();
    let want: Vec<&str> = rumpuser::trace::NAMES.to_vec();
    let missing: Vec<&&str> = want.iter().filter(|n| !exported.contains(n)).collect();
    assert!(
        missing.is_empty(),
        "rump_server does not export {missing:?}"
    );
    assert_eq!(exported.len(), 60, "{exported:?}");
    // And it answers for NetBSD's librump.so's needed librumpuser.so.0.
    let o = Command::new("readelf")
        .args(["-d", RUMP_SERVER])
        .output()
        .expect("readelf (binutils)");
    assert!(String::from_utf8_lossy(&o.stdout).contains("Library soname: [librumpuser.so.0]"));
    // So does the library (installed as lib/librumpuser.so.0).
    let so = our_librumpuser().expect("librumpuser.so beside the test binaries");
    let o = Command::new("readelf")
        .arg("-d")
        .arg(&so)
        .output()
        .expect("readelf (binutils)");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("Library soname: [librumpuser.so.0]"),
        "{}",
        so.display()
    );
}

#[test]
fn missing_component_is_a_clear_error() {
    let d = tmpdir();
    let url = format!("unix://{}", d.path().join("sock").display());
    for fg in [true, false] {
        let mut cmd = Command::new(RUMP_SERVER);
        if fg {
            cmd.arg("-s");
        }
        let o = cmd
            .args(["-l", "rumpfs_nonexistent_xyz", &url])
            .env_remove("LD_LIBRARY_PATH")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "foreground {fg}: {o:?}");
        let e = stderr(&o);
        assert!(
            e.starts_with("rump_server: cannot load NetBSD component library: "),
            "{e}"
        );
        assert!(e.contains("-l rumpfs_nonexistent_xyz: librumpfs_nonexistent_xyz.so: cannot open shared object file"), "{e}");
        assert_eq!(e.lines().count(), 1, "one line: {e}");
    }
    let o = Command::new(RUMP_SERVER)
        .args(["-s", "-m", "/nonexistent.kmod", "-l", "rumpvfs", &url])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("-m /nonexistent.kmod: no such module file"),
        "{}",
        stderr(&o)
    );
    assert!(!d.path().join("sock").exists());
}

// ---------------------------------------------------------------------------
// With NetBSD's components

#[test]
#[ignore = "needs RUMP_NETBSD_DIR"]
fn rumpvfs_boots_and_answers_getpid() {
    let nb = need_netbsd!("rumpvfs_boots_and_answers_getpid");
    let d = tmpdir();
    let mut s = Srv::start(&nb, d.path(), SrvOpts::default());
    let c = s.client();
    let pid = c.getpid().expect("getpid");
    assert!(pid > 0, "pid {pid}");
    assert_ne!(pid as u32, s.pid() as u32, "a kernel pid, not the host's");
    // A file on NetBSD's in-memory root file system.
    let data = pattern(100_000, 1);
    write_file(&c, "/tmp/f", &data);
    assert_eq!(read_file(&c, "/tmp/f"), data);
    // NetBSD's own hypercall library was never loaded beside ours.
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", s.pid())).unwrap();
    assert!(maps.contains("librump.so"), "NetBSD's librump.so is loaded");
    assert!(
        !maps.contains("librumpuser"),
        "no NetBSD librumpuser.so in the process:\n{maps}"
    );
    drop(c);
    let o = s.halt(&[]);
    assert!(o.status.success(), "rump.halt: {}", stderr(&o));
    let st = s
        .wait_exit(Duration::from_secs(20))
        .expect("server exits after rump.halt");
    assert_eq!(st.code(), Some(0), "{}", s.output());
    assert!(!s.sock.exists(), "socket removed");
    let t = show_trace("rumpvfs_boots_and_answers_getpid", &s);
    // NetBSD's kernel booted on our layer and halted through it.
    for (f, n) in [
        ("rumpuser_init", 1),
        ("rumpuser_dl_bootstrap", 1),
        ("rumpuser_sp_init", 1),
        ("rumpuser_sp_fini", 1),
        ("rumpuser_exit", 1),
    ] {
        assert_eq!(traced(&t, f), n, "{f}:\n{t}");
    }
    assert!(
        traced(&t, "rumpuser_thread_create") > 0 && traced(&t, "rumpuser_mutex_enter") > 0,
        "{t}"
    );
    assert!(
        traced(&t, "rumpuser_sp_copyin") > 0 && traced(&t, "rumpuser_sp_copyout") > 0,
        "{t}"
    );
}

#[test]
#[ignore = "needs RUMP_NETBSD_DIR"]
fn ext2_written_through_netbsd_is_flushed_by_rump_halt() {
    let nb = need_netbsd!("ext2_written_through_netbsd_is_flushed_by_rump_halt");
    let d = tmpdir();
    let (img, drive) = ext2_drive(d.path());
    let mut s = Srv::start(
        &nb,
        d.path(),
        SrvOpts {
            libs: EXT2_LIBS,
            drives: vec![drive],
            ..Default::default()
        },
    );
    let c = s.client();
    let files = fill_ext2(&c);
    let o = s.halt(&[]);
    assert!(o.status.success(), "rump.halt: {}", stderr(&o));
    let st = s
        .wait_exit(Duration::from_secs(30))
        .expect("server exits after rump.halt");
    assert_eq!(st.code(), Some(0), "{}", s.output());
    assert!(
        s.output().contains("syncing disks"),
        "NetBSD's halt path: {}",
        s.output()
    );
    check_image(&img, &files);
    let t = show_trace("ext2_written_through_netbsd_is_flushed_by_rump_halt", &s);
    for f in [
        "rumpuser_open",
        "rumpuser_getfileinfo",
        "rumpuser_bio",
        "rumpuser_sp_fini",
        "rumpuser_exit",
    ] {
        assert!(traced(&t, f) > 0, "{f}:\n{t}");
    }
}

#[test]
#[ignore = "needs RUMP_NETBSD_DIR"]
fn sigterm_halts_like_rump_halt() {
    let nb = need_netbsd!("sigterm_halts_like_rump_halt");
    let d = tmpdir();
    let (img, drive) = ext2_drive(d.path());
    let mut s = Srv::start(
        &nb,
        d.path(),
        SrvOpts {
            libs: EXT2_LIBS,
            drives: vec![drive],
            ..Default::default()
        },
    );
    let files = fill_ext2(&s.client());
    s.signal(libc::SIGTERM);
    let st = s
        .wait_exit(Duration::from_secs(30))
        .expect("server exits on SIGTERM");
    assert_eq!(st.code(), Some(0), "{}", s.output());
    assert!(!s.sock.exists(), "socket removed");
    check_image(&img, &files);
    show_trace("sigterm_halts_like_rump_halt", &s);
}

#[test]
#[ignore = "needs RUMP_NETBSD_DIR"]
fn halt_h_flushes_and_keeps_the_process() {
    let nb = need_netbsd!("halt_h_flushes_and_keeps_the_process");
    let d = tmpdir();
    let (img, drive) = ext2_drive(d.path());
    let mut s = Srv::start(
        &nb,
        d.path(),
        SrvOpts {
            libs: EXT2_LIBS,
            drives: vec![drive],
            ..Default::default()
        },
    );
    let c = s.client();
    let files = fill_ext2(&c);
    let bystander = s.client();
    bystander.getpid().unwrap();
    let o = s.halt(&["-h"]);
    assert!(o.status.success(), "rump.halt -h: {}", stderr(&o));
    // NetBSD's halt goes on after it answered: wait for its last step,
    // our sysproxy layer's shutdown.
    let sock = s.sock.clone();
    wait_until(
        "the socket file is removed",
        Duration::from_secs(20),
        || !sock.exists(),
    );
    assert!(
        s.wait_exit(Duration::from_millis(500)).is_none(),
        "the host process stays up with -h\n{}",
        s.output()
    );
    assert!(
        s.output().contains("RB_HALT"),
        "NetBSD's RB_HALT path: {}",
        s.output()
    );
    // Our sysproxy layer stopped serving.
    assert!(!s.sock.exists(), "socket file removed");
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
    // The file systems were synced and unmounted.
    check_image(&img, &files);
    s.signal(libc::SIGTERM);
    let st = s
        .wait_exit(Duration::from_secs(10))
        .expect("SIGTERM ends a halted server");
    assert_eq!(st.code(), Some(0));
    show_trace("halt_h_flushes_and_keeps_the_process", &s);
}

#[test]
#[ignore = "needs RUMP_NETBSD_DIR"]
fn halt_d_dumps_core() {
    let nb = need_netbsd!("halt_d_dumps_core");
    let d = tmpdir();
    let (_img, drive) = ext2_drive(d.path());
    let mut s = Srv::start(
        &nb,
        d.path(),
        SrvOpts {
            libs: EXT2_LIBS,
            drives: vec![drive],
            cores: true,
            ..Default::default()
        },
    );
    fill_ext2(&s.client());
    let o = s.halt(&["-d"]);
    assert!(o.status.success(), "rump.halt -d: {}", stderr(&o));
    let st = s.wait_exit(Duration::from_secs(30)).expect("server dies");
    assert_eq!(
        st.signal(),
        Some(libc::SIGABRT),
        "killed by SIGABRT: {st:?}\n{}",
        s.output()
    );
    assert!(st.core_dumped(), "a core was dumped");
    let t = show_trace("halt_d_dumps_core", &s);
    assert_eq!(traced(&t, "rumpuser_exit"), 1, "{t}");
}

#[test]
#[ignore = "needs RUMP_NETBSD_DIR"]
fn halt_n_exits_without_sync() {
    let nb = need_netbsd!("halt_n_exits_without_sync");
    let d = tmpdir();
    let (_img, drive) = ext2_drive(d.path());
    let mut s = Srv::start(
        &nb,
        d.path(),
        SrvOpts {
            libs: EXT2_LIBS,
            drives: vec![drive],
            ..Default::default()
        },
    );
    fill_ext2(&s.client());
    let o = s.halt(&["-n"]);
    assert!(o.status.success(), "rump.halt -n: {}", stderr(&o));
    let st = s.wait_exit(Duration::from_secs(30)).expect("server exits");
    assert_eq!(st.code(), Some(0), "{}", s.output());
    assert!(
        !s.output().contains("syncing disks"),
        "no sync with -n: {}",
        s.output()
    );
    show_trace("halt_n_exits_without_sync", &s);
}

#[test]
#[ignore = "needs RUMP_NETBSD_DIR"]
fn module_load_goes_through_netbsd_modctl() {
    let nb = need_netbsd!("module_load_goes_through_netbsd_modctl");
    let d = tmpdir();
    // Not an ELF module: NetBSD's module loader refuses it; the error
    // comes back as one line and the server does not start.
    let bogus = d.path().join("bogus.kmod");
    std::fs::write(&bogus, b"not a kernel module").unwrap();
    let o = Command::new(RUMP_SERVER)
        .args(["-s", "-l", "rumpvfs", "-m"])
        .arg(&bogus)
        .arg(format!("unix://{}", d.path().join("sock").display()))
        .env("LD_LIBRARY_PATH", nb.join("lib"))
        .env("RUMPUSER_TRACE", d.path().join("trace.txt"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let e = stderr(&o);
    let last = e.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(&format!(
            "rump_server: -m {}: module load failed: ",
            bogus.display()
        )),
        "{e}"
    );
    // NetBSD's rump_sys_modctl reported its errno through our layer.
    let t = std::fs::read_to_string(d.path().join("trace.txt")).unwrap_or_default();
    eprintln!("== module_load_goes_through_netbsd_modctl: {t}");
    assert!(traced(&t, "rumpuser_seterrno") >= 1, "{t}");
    assert!(
        traced(&t, "rumpuser_open") >= 1,
        "the module file was read through etfs: {t}"
    );
}

/// Our client and our rump.halt against NetBSD's own rump_server (with
/// its own hypercall library, then with ours).
fn against_netbsd_server(prog: Prog) {
    let nb = need_netbsd!("against_netbsd_server");
    if prog == Prog::NetbsdServerOurHypercalls && our_librumpuser().is_none() {
        panic!("librumpuser.so was not built beside {RUMP_SERVER}");
    }
    let d = tmpdir();
    let (img, drive) = ext2_drive_bytes(d.path());
    let mut s = Srv::start(
        &nb,
        d.path(),
        SrvOpts {
            prog,
            libs: EXT2_LIBS,
            drives: vec![drive],
            ..Default::default()
        },
    );
    let c = s.client();
    assert!(c.getpid().expect("getpid") > 0);
    let data = pattern(70_000, 3);
    write_file(&c, "/tmp/f", &data);
    assert_eq!(read_file(&c, "/tmp/f"), data);
    let files = fill_ext2(&c);
    let o = s.halt(&[]);
    assert!(o.status.success(), "rump.halt: {}", stderr(&o));
    let st = s
        .wait_exit(Duration::from_secs(30))
        .expect("server exits after rump.halt");
    assert_eq!(st.code(), Some(0), "{}", s.output());
    check_image(&img, &files);
    let t = s.trace();
    if prog == Prog::NetbsdServerOurHypercalls {
        show_trace("netbsd_rump_server_on_our_librumpuser", &s);
        assert_eq!(
            traced(&t, "rumpuser_init"),
            1,
            "our librumpuser.so served NetBSD's rump_server:\n{t}"
        );
        assert!(traced(&t, "rumpuser_bio") > 0, "{t}");
    } else {
        assert!(t.is_empty(), "NetBSD's own librumpuser has no trace: {t}");
    }
}

#[test]
#[ignore = "needs RUMP_NETBSD_DIR"]
fn our_client_and_halt_against_netbsd_rump_server() {
    against_netbsd_server(Prog::NetbsdServer);
}

#[test]
#[ignore = "needs RUMP_NETBSD_DIR"]
fn netbsd_rump_server_on_our_librumpuser() {
    against_netbsd_server(Prog::NetbsdServerOurHypercalls);
}

#[test]
#[ignore = "needs RUMP_NETBSD_DIR"]
fn netbsd_rump_server_daemonizes_on_our_librumpuser() {
    let nb = need_netbsd!("netbsd_rump_server_daemonizes_on_our_librumpuser");
    let d = tmpdir();
    let sock = d.path().join("sock");
    let url = format!("unix://{}", sock.display());
    let run = |trace: &str| {
        Command::new(nb.join("bin/rump_server"))
            .args(["-l", "rumpvfs"])
            .arg(&url)
            .env("LD_LIBRARY_PATH", library_path(&nb, d.path(), true))
            .env("RUMPUSER_TRACE", d.path().join(trace))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let trace = |f: &str| std::fs::read_to_string(d.path().join(f)).unwrap_or_default();
    // Without -s: the command returns once the daemon serves...
    let o = run("trace1.txt");
    assert!(o.status.success(), "{o:?}");
    let c = Client::connect(&url).expect("the daemon serves when the command returns");
    assert!(c.getpid().unwrap() > 0);
    // ...and a second one on the same socket fails with the errno it got
    // through our rumpuser_daemonize_done (NetBSD EADDRINUSE, 48).
    let o2 = run("trace2.txt");
    assert_eq!(o2.status.code(), Some(48), "{o2:?}");
    drop(c);
    let o = Command::new(common::rump_halt())
        .env("RUMP_SERVER", &url)
        .output()
        .unwrap();
    assert!(o.status.success(), "rump.halt: {}", stderr(&o));
    wait_until(
        "the daemon halts (socket gone, rumpuser_sp_fini traced)",
        Duration::from_secs(20),
        || !sock.exists() && traced(&trace("trace1.txt"), "rumpuser_sp_fini") == 1,
    );
    for f in ["trace1.txt", "trace2.txt"] {
        let t = trace(f);
        eprintln!("== netbsd_rump_server_daemonizes_on_our_librumpuser ({f}): {t}");
        assert_eq!(traced(&t, "rumpuser_daemonize_begin"), 1, "{t}");
        assert_eq!(traced(&t, "rumpuser_daemonize_done"), 1, "{t}");
    }
}

/// A client on NetBSD's librumpclient (compiled here, our own source).
const NBCLIENT_C: &str = r#"
#include <sys/types.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rump/rumpclient.h>
#include <rump/rump_syscalls.h>
#include <rump/rumpdefs.h>

struct ext2_args { char *fspec; };

int
main(int argc, char **argv)
{
	const char *cmd = argc > 1 ? argv[1] : "";
	char buf[4096];
	ssize_t n;
	int fd;

	if (rumpclient_init() == -1) {
		fprintf(stderr, "rumpclient_init: %s\n", strerror(errno));
		return 2;
	}
	if (strcmp(cmd, "getpid") == 0) {
		printf("%d\n", (int)rump_sys_getpid());
		return 0;
	}
	if (strcmp(cmd, "mkdir") == 0 && argc == 3) {
		if (rump_sys_mkdir(argv[2], 0755) == -1)
			goto fail;
		return 0;
	}
	if (strcmp(cmd, "mount_ext2") == 0 && argc == 4) {
		struct ext2_args a = { argv[2] };
		if (rump_sys_mount(RUMP_MOUNT_EXT2FS, argv[3], 0, &a, sizeof(a)) == -1)
			goto fail;
		return 0;
	}
	if (strcmp(cmd, "write") == 0 && argc == 4) {
		fd = rump_sys_open(argv[2], RUMP_O_RDWR | RUMP_O_CREAT | RUMP_O_TRUNC, 0644);
		if (fd == -1)
			goto fail;
		if (rump_sys_write(fd, argv[3], strlen(argv[3])) != (ssize_t)strlen(argv[3]))
			goto fail;
		if (rump_sys_close(fd) == -1)
			goto fail;
		return 0;
	}
	if (strcmp(cmd, "read") == 0 && argc == 3) {
		fd = rump_sys_open(argv[2], RUMP_O_RDONLY);
		if (fd == -1)
			goto fail;
		while ((n = rump_sys_read(fd, buf, sizeof(buf))) > 0)
			fwrite(buf, 1, (size_t)n, stdout);
		if (n == -1)
			goto fail;
		rump_sys_close(fd);
		return 0;
	}
	if (strcmp(cmd, "reboot") == 0 && argc == 3) {
		if (rump_sys_reboot((int)strtol(argv[2], NULL, 0), NULL) == -1)
			goto fail;
		printf("reboot acknowledged\n");
		return 0;
	}
	fprintf(stderr, "usage: nbclient getpid|mkdir D|mount_ext2 SPEC D|write P TEXT|read P|reboot FLAGS\n");
	return 2;
fail:
	fprintf(stderr, "%s: %s\n", cmd, strerror(errno));
	return 1;
}
"#;

/// NetBSD's librumpclient against our rump_server: `libs` None is the
/// built-in kernel, else NetBSD's components (-l).
fn nbclient_against_our_server(test: &str, libs: &[&str]) {
    let nb = need_netbsd!(test);
    let d = tmpdir();
    let nbclient = testkit::netbsd::build_client(&nb, d.path(), "nbclient", NBCLIENT_C);
    let (img, drive) = ext2_drive(d.path());
    let mut s = Srv::start(
        &nb,
        d.path(),
        SrvOpts {
            libs,
            drives: vec![drive],
            ..Default::default()
        },
    );
    let run = |args: &[&str]| -> String {
        let o = Command::new(&nbclient)
            .args(args)
            .env("RUMP_SERVER", &s.url)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "nbclient {args:?}: {:?} {}",
            o.status,
            stderr(&o)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let pid: i32 = run(&["getpid"]).trim().parse().expect("a pid");
    assert!(pid > 0);
    run(&["write", "/x.txt", "in the kernel's memory"]);
    assert_eq!(run(&["read", "/x.txt"]), "in the kernel's memory");
    run(&["mkdir", "/mnt"]);
    run(&["mount_ext2", "/dk", "/mnt"]);
    run(&["write", "/mnt/from-c.txt", "written by librumpclient"]);
    assert_eq!(
        run(&["read", "/mnt/from-c.txt"]),
        "written by librumpclient"
    );
    assert_eq!(run(&["reboot", "0"]).trim(), "reboot acknowledged");
    let st = s
        .wait_exit(Duration::from_secs(30))
        .expect("server exits after reboot(2)");
    assert_eq!(st.code(), Some(0), "{}", s.output());
    assert!(!s.sock.exists(), "socket removed");
    check_image(
        &img,
        &[("/from-c.txt", b"written by librumpclient".to_vec())],
    );
    show_trace(test, &s);
}

#[test]
#[ignore = "needs RUMP_NETBSD_DIR"]
fn netbsd_librumpclient_against_our_server_netbsd_kernel() {
    nbclient_against_our_server(
        "netbsd_librumpclient_against_our_server_netbsd_kernel",
        EXT2_LIBS,
    );
}

#[test]
#[ignore = "needs RUMP_NETBSD_DIR"]
fn netbsd_librumpclient_against_our_server_builtin_kernel() {
    nbclient_against_our_server(
        "netbsd_librumpclient_against_our_server_builtin_kernel",
        &[],
    );
}

/// Helper-process entry for `embedding_api_boots_serves_and_halts`: this
/// test binary embeds a NetBSD kernel (a no-op in a normal test run).
#[test]
#[ignore = "helper process of embedding_api_boots_serves_and_halts"]
fn embed_child() {
    use rumprun::netbsd::NetbsdKernel;
    let Ok(dir) = std::env::var("NETBSD_EMBED_DIR") else {
        return;
    };
    let dir = PathBuf::from(dir);
    let url = format!("unix://{}", dir.join("sock").display());
    let mut b = NetbsdKernel::builder().ncpu(2);
    for l in EXT2_LIBS {
        b = b.lib(l);
    }
    let b = b.drive(&format!(
        "key=/dk,hostpath={},size=host",
        dir.join("img").display()
    ));
    // SAFETY: EXT2_LIBS are NetBSD's rump kernel components (v17) from the
    // NetBSD build the test was pointed at; this test process sets no
    // environment from other threads.
    let mut k = unsafe { b.boot() }.expect("boot");
    assert!(
        k.libraries()
            .iter()
            .any(|l| l.name == "rumpfs_ext2fs" && l.path.contains("/librumpfs_ext2fs.so")),
        "{:?}",
        k.libraries()
    );
    assert!(k.getpid().expect("in-process getpid") > 0);
    k.serve(&url).expect("serve");
    assert_eq!(k.url(), Some(url.as_str()));
    // Halt (RB_HALT) once the parent says so: NetBSD syncs, our sysproxy
    // stops, and control comes back here.
    wait_until("the parent says go", Duration::from_secs(60), || {
        dir.join("go").exists()
    });
    assert!(!k.halted());
    k.reboot(netbsd_abi::reboot::RB_HALT)
        .expect("reboot(RB_HALT)");
    assert!(k.halted());
    assert!(!dir.join("sock").exists(), "socket removed");
    assert!(k.reboot(0).is_err(), "one halt only");
    std::fs::write(dir.join("halted"), b"yes").unwrap();
    std::process::exit(0);
}

#[test]
#[ignore = "needs RUMP_NETBSD_DIR"]
fn embedding_api_boots_serves_and_halts() {
    let nb = need_netbsd!("embedding_api_boots_serves_and_halts");
    let d = tmpdir();
    let (img, _) = ext2_drive(d.path());
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "embed_child",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("NETBSD_EMBED_DIR", d.path())
        .env("LD_LIBRARY_PATH", nb.join("lib"))
        .env_remove("RUMPUSER_TRACE")
        .stdin(Stdio::null())
        .stdout(File::create(d.path().join("child.out")).unwrap())
        .stderr(File::create(d.path().join("child.err")).unwrap())
        .spawn()
        .unwrap();
    let url = format!("unix://{}", d.path().join("sock").display());
    let out = || std::fs::read_to_string(d.path().join("child.err")).unwrap_or_default();
    let t = Instant::now();
    let c = loop {
        if let Ok(c) = Client::connect(&url) {
            break c;
        }
        if let Some(st) = child.try_wait().unwrap() {
            panic!("embedding child exited: {st}\n{}", out());
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "embedding child did not serve\n{}",
            out()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let files = fill_ext2(&c);
    drop(c);
    std::fs::write(d.path().join("go"), b"").unwrap();
    let Some(st) = testkit::proc::wait_child(&mut child, Duration::from_secs(60)) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("embedding child did not finish\n{}", out());
    };
    assert!(st.success(), "embedding child: {st}\n{}", out());
    assert!(
        d.path().join("halted").exists(),
        "reboot(RB_HALT) returned to the embedder"
    );
    check_image(&img, &files);
}
