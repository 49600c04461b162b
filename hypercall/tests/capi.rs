//! The C ABI of librumpuser.so, checked from C: a pretend kernel
//! (`tests/c/hypertest.c`) with counting upcalls drives every family of
//! hypercalls, one check per process. Plus the exported symbol list and
//! the errno translation.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Every function of rumpuser.h, interface version 17, but the sysproxy
/// ones (`V17_SP`).
const V17: &[&str] = &[
    "rumpuser_init",
    "rumpuser_malloc",
    "rumpuser_free",
    "rumpuser_anonmmap",
    "rumpuser_unmap",
    "rumpuser_open",
    "rumpuser_close",
    "rumpuser_getfileinfo",
    "rumpuser_bio",
    "rumpuser_iovread",
    "rumpuser_iovwrite",
    "rumpuser_syncfd",
    "rumpuser_clock_gettime",
    "rumpuser_clock_sleep",
    "rumpuser_getparam",
    "rumpuser_seterrno",
    "rumpuser_kill",
    "rumpuser_exit",
    "rumpuser_putchar",
    "rumpuser_dprintf",
    "rumpuser_getrandom",
    "rumpuser_thread_create",
    "rumpuser_thread_exit",
    "rumpuser_thread_join",
    "rumpuser_curlwpop",
    "rumpuser_curlwp",
    "rumpuser_mutex_init",
    "rumpuser_mutex_enter",
    "rumpuser_mutex_enter_nowrap",
    "rumpuser_mutex_tryenter",
    "rumpuser_mutex_exit",
    "rumpuser_mutex_destroy",
    "rumpuser_mutex_owner",
    "rumpuser_rw_init",
    "rumpuser_rw_enter",
    "rumpuser_rw_tryenter",
    "rumpuser_rw_tryupgrade",
    "rumpuser_rw_downgrade",
    "rumpuser_rw_exit",
    "rumpuser_rw_destroy",
    "rumpuser_rw_held",
    "rumpuser_cv_init",
    "rumpuser_cv_destroy",
    "rumpuser_cv_wait",
    "rumpuser_cv_wait_nowrap",
    "rumpuser_cv_timedwait",
    "rumpuser_cv_signal",
    "rumpuser_cv_broadcast",
    "rumpuser_cv_has_waiters",
    "rumpuser_dl_bootstrap",
    "rumpuser_daemonize_begin",
    "rumpuser_daemonize_done",
];

const V17_SP: &[&str] = &[
    "rumpuser_sp_init",
    "rumpuser_sp_copyin",
    "rumpuser_sp_copyinstr",
    "rumpuser_sp_copyout",
    "rumpuser_sp_copyoutstr",
    "rumpuser_sp_anonmmap",
    "rumpuser_sp_raise",
    "rumpuser_sp_fini",
];

/// The librumpuser.so cargo built alongside this test. `cargo test` builds
/// the library with all its crate types into target/<profile>/deps, beside
/// the test executable (it copies the cdylib up to target/<profile> only for
/// `cargo build`).
fn librumpuser() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("deps dir");
    let candidates = [
        deps.join("librumpuser.so"),
        deps.parent().expect("profile dir").join("librumpuser.so"),
    ];
    for so in &candidates {
        if so.exists() {
            return so.clone();
        }
    }
    panic!("librumpuser.so not found in {candidates:?}")
}

struct Built {
    hypertest: PathBuf,
    dltest: PathBuf,
}

fn run_cc(args: &[&str]) {
    let out = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(args)
        .output()
        .expect("run the C compiler (cc)");
    assert!(
        out.status.success(),
        "cc {:?} failed:\n{}{}",
        args,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn built() -> &'static Built {
    static B: OnceLock<Built> = OnceLock::new();
    B.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c");
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("hypercall-capi");
        std::fs::create_dir_all(&out).expect("create test output dir");
        let so = librumpuser();
        // The library's soname is librumpuser.so.0 (as NetBSD's): the
        // program records that name, so give the fresh library both names
        // in a directory of this test's own.
        let lib = out.join("lib");
        std::fs::create_dir_all(&lib).expect("create test lib dir");
        for name in ["librumpuser.so", "librumpuser.so.0"] {
            let l = lib.join(name);
            let _ = std::fs::remove_file(&l);
            std::os::unix::fs::symlink(&so, &l).expect("symlink librumpuser");
        }
        let libdir = lib.to_str().expect("utf-8 path").to_string();
        let hypertest = out.join("hypertest");
        let dltest = out.join("librumpdltest.so");
        run_cc(&[
            "-std=gnu11",
            "-Wall",
            "-O1",
            "-g",
            "-pthread",
            src.join("hypertest.c").to_str().expect("utf-8 path"),
            "-o",
            hypertest.to_str().expect("utf-8 path"),
            &format!("-L{libdir}"),
            // DT_RPATH (not RUNPATH) is searched before LD_LIBRARY_PATH, so a
            // stale librumpuser.so that cargo's path points at cannot shadow
            // the one this test run built.
            "-Wl,--disable-new-dtags",
            &format!("-Wl,-rpath,{libdir}"),
            "-lrumpuser",
            "-ldl",
        ]);
        run_cc(&[
            "-std=gnu11",
            "-Wall",
            "-O1",
            "-shared",
            "-fPIC",
            src.join("dltest.c").to_str().expect("utf-8 path"),
            "-o",
            dltest.to_str().expect("utf-8 path"),
        ]);
        Built { hypertest, dltest }
    })
}

/// Run one check of the pretend kernel; returns its stdout and stderr.
fn hypertest(name: &str, extra: &[&str]) -> (String, String) {
    let b = built();
    let out = Command::new(&b.hypertest)
        .arg(name)
        .args(extra)
        .env_remove("RUMP_NCPU")
        .output()
        .expect("run hypertest");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success() && stdout.contains(&format!("PASS {name}")),
        "hypertest {name}: {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    (stdout, stderr)
}

#[test]
fn exports_every_v17_function() {
    let so = librumpuser();
    let out = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(&so)
        .output()
        .expect("run nm");
    assert!(
        out.status.success(),
        "nm failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let defined: Vec<&str> = text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 3 && f[1] == "T").then_some(f[2])
        })
        .collect();
    let mut missing: Vec<&str> = V17
        .iter()
        .copied()
        .filter(|s| !defined.contains(s))
        .collect();
    // The sysproxy entry points (rumpuser_sp_*) are part of v17 too.
    missing.extend(V17_SP.iter().copied().filter(|s| !defined.contains(s)));
    assert!(missing.is_empty(), "librumpuser.so lacks {missing:?}");
}

#[test]
fn init_checks_the_version() {
    hypertest("init", &[]);
}

#[test]
fn mutex_uncontended_makes_no_upcall() {
    hypertest("mutex_uncontended", &[]);
}

/// Lock misuse that can only deadlock or corrupt aborts with a message
/// naming the lock, as NetBSD's error-checking locks do, instead of
/// hanging: a mutex entered again by its holder, destroyed while held; an
/// rwlock write-locked twice, or read-locked by its writer.
#[test]
fn lock_misuse_aborts_with_a_message() {
    use std::os::unix::process::ExitStatusExt;
    let b = built();
    for (name, what) in [
        ("misuse_mutex_reenter", "mutex 0x"),
        ("misuse_mutex_destroy_held", "destroyed while held"),
        ("misuse_rw_write_twice", "write-locked again"),
        (
            "misuse_rw_write_then_read",
            "read-locked by the thread that holds it for writing",
        ),
    ] {
        let mut child = Command::new(&b.hypertest)
            .arg(name)
            .env_remove("RUMP_NCPU")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run hypertest");
        // A hang is the bug this guards against: give it 10 s.
        let t = std::time::Instant::now();
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if t.elapsed() > std::time::Duration::from_secs(10) {
                let _ = child.kill();
                panic!("{name}: hung instead of aborting");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            status.signal(),
            Some(libc::SIGABRT),
            "{name}: {status:?}\n{err}"
        );
        assert!(
            err.contains("rumpuser: ") && err.contains(what) && err.contains("aborting"),
            "{name}: the message names the lock and the misuse:\n{err}"
        );
    }
}

#[test]
fn mutex_contended_unschedules_once() {
    hypertest("mutex_contended", &[]);
}

#[test]
fn mutex_spin_and_nowrap_never_unschedule() {
    hypertest("mutex_spin", &[]);
}

#[test]
fn kmutex_records_owner() {
    hypertest("kmutex_owner", &[]);
}

#[test]
fn rwlock_exclusion_upgrade_downgrade_held() {
    hypertest("rwlock", &[]);
}

#[test]
fn cv_wait_orders_and_timedwait_times_out() {
    hypertest("cv", &[]);
    hypertest("cv_timedwait_signalled", &[]);
}

#[test]
fn threads_are_named_and_joined() {
    hypertest("threads", &[]);
}

#[test]
fn curlwp_is_per_thread() {
    hypertest("curlwp", &[]);
}

#[test]
fn clocks_and_sleeps() {
    hypertest("clock", &[]);
}

#[test]
fn getparam_ncpu_hostname_env() {
    hypertest("getparam", &[]);
}

#[test]
fn open_flags_and_errors() {
    hypertest("open", &[]);
}

#[test]
fn getfileinfo_types_and_sizes() {
    hypertest("getfileinfo", &[]);
}

#[test]
fn iovread_iovwrite_and_syncfd() {
    hypertest("iov", &[]);
}

#[test]
fn bio_completes_exactly_once() {
    hypertest("bio", &[]);
    hypertest("bio_many", &[]);
}

#[test]
fn memory() {
    hypertest("mem", &[]);
}

#[test]
fn random() {
    hypertest("random", &[]);
}

#[test]
fn seterrno_and_kill() {
    hypertest("errno_kill", &[]);
}

#[test]
fn console_putchar_and_variadic_dprintf() {
    let (stdout, stderr) = hypertest("console", &[]);
    assert!(stdout.contains("K\n"), "putchar output missing: {stdout:?}");
    assert!(
        stderr.contains("dprintf str 42 1234567890123 z|1 2 3 4 5 6 7|\n"),
        "dprintf output wrong: {stderr:?}"
    );
}

#[test]
fn exit_panic_aborts_and_exit_status() {
    hypertest("exit", &[]);
}

#[test]
fn daemonize_parent_waits_for_child() {
    hypertest("daemonize", &[]);
}

#[test]
fn dl_bootstrap_finds_link_sets() {
    let so = built().dltest.to_str().expect("utf-8 path").to_string();
    hypertest("dl", &[&so]);
}

#[test]
fn errno_translation_covers_every_host_errno() {
    use rumpuser::errno::{host_to_netbsd, name, Errno};
    for h in 1..=133 {
        let nb = Errno::from_host(h);
        assert!(
            name(nb.0).is_some(),
            "host errno {h} -> {nb:?} is not a NetBSD errno"
        );
        assert_eq!(nb.0, host_to_netbsd(h));
    }
    assert_eq!(Errno::from_host(libc::EAGAIN).0, 35);
    assert_eq!(Errno::from_host(libc::ENOSYS).0, 78);
    assert_eq!(Errno::from_host(libc::ENOTEMPTY).0, 66);
    assert_eq!(Errno::from_host(libc::ETIMEDOUT).0, 60);
    assert_eq!(Errno::from_host(libc::ENOENT).0, 2);
    assert_eq!(Errno::from_host(0).0, 0);
}

/// `hypertest name` with extra environment; returns (status ok, stdout, stderr).
fn hypertest_env(name: &str, env: &[(&str, &str)]) -> (String, String) {
    let b = built();
    let mut cmd = Command::new(&b.hypertest);
    cmd.arg(name)
        .env_remove("RUMP_NCPU")
        .env_remove("RUMPUSER_TRACE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run hypertest");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "hypertest {name}: {:?}\n{stdout}\n{stderr}",
        out.status
    );
    (stdout, stderr)
}

/// The count the trace report gives `name` (None: not listed as called).
fn traced(report: &str, name: &str) -> Option<u64> {
    report.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        (f.next() == Some(name))
            .then(|| f.next().and_then(|n| n.parse().ok()))
            .flatten()
    })
}

#[test]
fn trace_counts_each_entry_point_when_asked() {
    // Off by default: no report.
    let (_, err) = hypertest_env("mem", &[]);
    assert!(!err.contains("rumpuser trace"), "{err}");
    // On: counts at exit, on stderr.
    let (_, err) = hypertest_env("mem", &[("RUMPUSER_TRACE", "1")]);
    assert!(err.contains("rumpuser trace"), "{err}");
    assert_eq!(traced(&err, "rumpuser_malloc"), Some(4), "{err}");
    assert_eq!(traced(&err, "rumpuser_free"), Some(3), "{err}");
    assert_eq!(traced(&err, "rumpuser_anonmmap"), Some(5), "{err}");
    assert_eq!(traced(&err, "rumpuser_unmap"), Some(5), "{err}");
    assert_eq!(traced(&err, "rumpuser_bio"), None, "{err}");
    // The variadic dprintf counts itself in C; a file destination.
    let d =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("trace-{}", std::process::id()));
    let _ = std::fs::remove_file(&d);
    let (_, err) = hypertest_env("console", &[("RUMPUSER_TRACE", d.to_str().unwrap())]);
    assert!(
        !err.contains("rumpuser trace"),
        "report goes to the file: {err}"
    );
    let report = std::fs::read_to_string(&d).expect("trace file");
    assert_eq!(traced(&report, "rumpuser_putchar"), Some(2), "{report}");
    assert!(
        traced(&report, "rumpuser_dprintf").is_some_and(|n| n >= 1),
        "{report}"
    );
    let _ = std::fs::remove_file(&d);
}
