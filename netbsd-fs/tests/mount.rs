//! rump_mount and its names against images made by the host's own tools:
//! NetBSD's file system code (a buildrump.sh build named by
//! `RUMP_NETBSD_DIR`) in process, the tree served through FUSE.
//!
//! The tests that need NetBSD's build are `#[ignore = "needs
//! RUMP_NETBSD_DIR"]`: a plain `cargo test` reports them as ignored, never
//! as passed; run them with `-- --ignored` (`.ci/run` does when it finds a
//! build). Run by hand without `RUMP_NETBSD_DIR` they fail saying so. They
//! need the image tools (`makefs`, `dosfstools`, `mtools`, `xorriso`,
//! `udftools`, `ntfs-3g`), root or `fusermount3`, and `/dev/fuse`.

use rumpclient::Syscalls as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use testkit::netbsd::require_destdir;
use testkit::proc::{is_mounted, wait_gone};
use testkit::tools::{require_tool, run_ok};
use testkit::wait::wait_until;

const RUMP_MOUNT: &str = env!("CARGO_BIN_EXE_rump_mount");

/// A private directory, removed when dropped.
fn tmpdir() -> tempfile::TempDir {
    testkit::tmp::tmpdir("rump_mount-test")
}

/// The program under NetBSD's name `rump_TYPE`: a link to rump_mount in
/// `dir`.
fn prog(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    if !p.exists() {
        std::os::unix::fs::symlink(RUMP_MOUNT, &p).unwrap();
    }
    p
}

/// A foreground mount process (`-f`); unmounted and killed when dropped.
struct Mount {
    child: Option<Child>,
    mnt: PathBuf,
}

impl Mount {
    /// Start `prog -f args... image mnt` and wait until the mount is live.
    fn start(prog: &Path, args: &[&str], image: &Path, mnt: &Path) -> Mount {
        Mount::start_with(prog, args, image, mnt, &[])
    }

    /// Start `prog -f args... image mnt after...` and wait until the
    /// mount is live.
    fn start_with(prog: &Path, args: &[&str], image: &Path, mnt: &Path, after: &[&str]) -> Mount {
        std::fs::create_dir_all(mnt).unwrap();
        let mut cmd = Command::new(prog);
        cmd.arg("-f")
            .args(args)
            .arg(image)
            .arg(mnt)
            .args(after)
            .env("RUMP_NETBSD_DIR", require_destdir("netbsd-fs mount tests"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let child = cmd.spawn().unwrap();
        let mut m = Mount {
            child: Some(child),
            mnt: mnt.to_path_buf(),
        };
        let t0 = Instant::now();
        while !is_mounted(mnt) {
            if let Some(st) = m.child.as_mut().unwrap().try_wait().unwrap() {
                let out = m.child.take().unwrap().wait_with_output().unwrap();
                panic!(
                    "{} {args:?} {}: exited {st} before mounting: {}",
                    prog.display(),
                    image.display(),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "{}: not mounted after 60 s",
                mnt.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        m
    }

    /// `umount`, then the process must end by itself with status 0.
    fn umount(mut self) {
        run_ok(Command::new("umount").arg(&self.mnt));
        let mut child = self.child.take().unwrap();
        let t0 = Instant::now();
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                assert!(st.success(), "exit {st} after umount: {err}");
                return;
            }
            if t0.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                panic!("still running 60 s after umount");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `diff -r a b` must find no difference.
fn same_tree(a: &Path, b: &Path) {
    same_tree_but(a, b, &[])
}

/// `diff -r a b`, leaving out names matching the `exclude` patterns.
fn same_tree_but(a: &Path, b: &Path, exclude: &[&str]) {
    let out = Command::new("diff")
        .arg("-r")
        .arg("--no-dereference")
        .args(exclude.iter().flat_map(|x| ["-x", x]))
        .arg(a)
        .arg(b)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "diff -r {} {}:\n{}{}",
        a.display(),
        b.display(),
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .take(20)
            .collect::<Vec<_>>()
            .join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A real tree of about a thousand files (the host's time zone data,
/// else its documentation), copied into `dir/tree`; with `symlinks`
/// false, symbolic links are left out (for FAT).
fn real_tree(dir: &Path, symlinks: bool) -> PathBuf {
    let src = ["/usr/share/zoneinfo", "/usr/share/doc"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.is_dir())
        .expect("a host tree to copy (/usr/share/zoneinfo or /usr/share/doc)");
    let t = dir.join("tree");
    run_ok(Command::new("cp").arg("-a").arg(src).arg(&t));
    if !symlinks {
        run_ok(Command::new("find").arg(&t).args(["-type", "l", "-delete"]));
    }
    let n = walk_count(&t);
    assert!(n >= 500, "{}: only {n} entries", src.display());
    t
}

fn walk_count(p: &Path) -> usize {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            n += 1;
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                n += walk_count(&e.path());
            }
        }
    }
    n
}

/// A small tree of files, a subdirectory, an empty file and (with
/// `symlinks`) a symbolic link. The names are not all-lowercase 8.3
/// names, which FAT stores upper case (NetBSD's msdosfs shows them so;
/// Linux's vfat applies a case flag NetBSD does not know).
fn small_tree(dir: &Path, symlinks: bool) -> PathBuf {
    let t = dir.join("small");
    std::fs::create_dir_all(t.join("Sub/Deeper")).unwrap();
    std::fs::write(t.join("Hello.txt"), b"hello, world\n").unwrap();
    std::fs::write(t.join("Empty"), b"").unwrap();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(t.join("Sub/Pattern.bin"), &big).unwrap();
    std::fs::write(t.join("Sub/Deeper/Mixed Case Name.txt"), b"x\n").unwrap();
    if symlinks {
        std::os::unix::fs::symlink("Hello.txt", t.join("Link")).unwrap();
    }
    t
}

/// An 8 MiB file of varied bytes.
fn big_file(dir: &Path) -> PathBuf {
    let p = dir.join("big.bin");
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let data: Vec<u8> = (0..8 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(&p, data).unwrap();
    p
}

/// Copy a real tree and an 8 MiB file in with `cp -a`, unmount (the
/// process must end with 0), then `check` the image, re-mount read-only
/// and compare.
fn write_round_trip(
    dir: &Path,
    prog: &Path,
    args: &[&str],
    image: &Path,
    symlinks: bool,
    check: impl Fn(&Path),
) {
    let tree = real_tree(dir, symlinks);
    let big = big_file(dir);
    let mnt = dir.join("mnt");
    let m = Mount::start(prog, args, image, &mnt);
    run_ok(
        Command::new("cp")
            .arg("-a")
            .arg(&tree)
            .arg(mnt.join("tree")),
    );
    run_ok(
        Command::new("cp")
            .arg("-a")
            .arg(&big)
            .arg(mnt.join("big.bin")),
    );
    same_tree(&tree, &mnt.join("tree"));
    m.umount();
    check(image);
    let mut ro: Vec<&str> = args.to_vec();
    ro.extend(["-o", "ro"]);
    let m = Mount::start(prog, &ro, image, &mnt);
    same_tree(&tree, &mnt.join("tree"));
    run_ok(Command::new("cmp").arg(&big).arg(mnt.join("big.bin")));
    m.umount();
}

fn ffs_round_trip(version: &str) {
    let d = tmpdir();
    let src = small_tree(d.path(), true);
    let img = d.path().join("ffs.img");
    run_ok(
        Command::new(require_tool("makefs"))
            .args(["-t", "ffs", "-s", "64m", "-f", "8000", "-o"])
            .arg(format!("version={version}"))
            .arg(&img)
            .arg(&src),
    );
    let p = prog(d.path(), "rump_ffs");
    let mnt = d.path().join("mnt");
    let m = Mount::start(&p, &[], &img, &mnt);
    same_tree(&src, &mnt);
    m.umount();
    write_round_trip(d.path(), &p, &[], &img, true, |_| {});
}

#[test]
#[ignore = "needs RUMP_NETBSD_DIR"]
fn ffs_v1_read_and_write() {
    ffs_round_trip("1");
}

#[test]
#[ignore = "needs RUMP_NETBSD_DIR"]
fn ffs_v2_read_and_write() {
    ffs_round_trip("2");
}

/// `fsck.vfat -n` finds nothing wrong. One finding is allowed on FAT32:
/// the FSInfo sector's free-cluster count, a hint NetBSD's msdosfs (7.99)
/// leaves as it found it (Linux's vfat recounts it at mount too); every
/// other finding fails.
fn fsck_vfat_clean(img: &Path) {
    let out = Command::new(require_tool("fsck.vfat"))
        .arg("-n")
        .arg(img)
        .output()
        .unwrap();
    if out.status.success() {
        return;
    }
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let hint_only = text.lines().all(|l| {
        let l = l.trim();
        l.is_empty()
            || l.starts_with("fsck.fat ")
            || l.starts_with("Free cluster summary wrong (")
            || l == "Auto-correcting."
            || l == "Leaving filesystem unchanged."
            || l.starts_with(&format!("{}: ", img.display()))
    });
    assert!(
        hint_only && text.contains("Free cluster summary wrong"),
        "fsck.vfat -n {}: {}\n{text}",
        img.display(),
        out.status
    );
}

fn fat_round_trip(bits: &str) {
    let d = tmpdir();
    let src = small_tree(d.path(), false);
    let img = d.path().join("fat.img");
    run_ok(
        Command::new(require_tool("mkfs.vfat"))
            .args(["-C", "-F", bits, "-n", "RUMPTEST"])
            .arg(&img)
            .arg("65536"),
    );
    // The image's tree, put there by mtools.
    run_ok(
        Command::new(require_tool("mcopy"))
            .arg("-s")
            .arg("-i")
            .arg(&img)
            .args(std::fs::read_dir(&src).unwrap().map(|e| e.unwrap().path()))
            .arg("::/"),
    );
    let p = prog(d.path(), "rump_msdos");
    let mnt = d.path().join("mnt");
    let m = Mount::start(&p, &[], &img, &mnt);
    same_tree(&src, &mnt);
    m.umount();
    fsck_vfat_clean(&img);
    write_round_trip(d.path(), &p, &[], &img, false, fsck_vfat_clean);
}

#[test]
#[ignore = "needs RUMP_NETBSD_DIR"]
fn fat16_read_and_write() {
    fat_round_trip("16");
}

#[test]
#[ignore = "needs RUMP_NETBSD_DIR"]
fn fat32_read_and_write() {
    fat_round_trip("32");
}

#[test]
#[ignore = "needs RUMP_NETBSD_DIR"]
fn iso9660_rock_ridge_and_joliet() {
    let d = tmpdir();
    let src = d.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let small = small_tree(d.path(), true);
    run_ok(
        Command::new("cp")
            .arg("-a")
            .arg(&small)
            .arg(src.join("small")),
    );
    let tree = real_tree(d.path(), true);
    run_ok(
        Command::new("cp")
            .arg("-a")
            .arg(&tree)
            .arg(src.join("tree")),
    );
    let img = d.path().join("cd.iso");
    run_ok(
        Command::new(require_tool("xorriso"))
            .args(["-as", "mkisofs", "-R", "-J", "-quiet", "-o"])
            .arg(&img)
            .arg(&src),
    );
    let p = prog(d.path(), "rump_cd9660");
    let mnt = d.path().join("mnt");
    let m = Mount::start(&p, &[], &img, &mnt);
    same_tree(&src, &mnt);
    // Read-only, whatever was asked.
    let e = std::fs::write(mnt.join("new"), b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");
    m.umount();
    // Without Rock Ridge the Joliet names are still there.
    let m = Mount::start(&p, &["-o", "norrip"], &img, &mnt);
    assert!(mnt.join("small/Hello.txt").exists());
    m.umount();
}

/// Run `prog args...` expecting failure: its exit status and stderr.
fn fails(prog: &Path, args: &[&str], env: &[(&str, &Path)]) -> (i32, String) {
    let mut cmd = Command::new(prog);
    cmd.args(args).env_remove("RUMP_NETBSD_DIR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let t0 = Instant::now();
    let out = cmd.output().unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(60),
        "{prog:?} {args:?} hangs instead of failing (a liveness deadline)"
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Needs no NetBSD build: without one, one line names the missing
/// library and how to point at a build.
#[test]
fn missing_components_are_named() {
    let d = tmpdir();
    let img = d.path().join("x.img");
    std::fs::write(&img, vec![0u8; 1 << 20]).unwrap();
    let mnt = d.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let p = prog(d.path(), "rump_ffs");
    let (st, err) = fails(
        &p,
        &[img.to_str().unwrap(), mnt.to_str().unwrap()],
        &[("RUMP_NETBSD_DIR", &d.path().join("nonesuch"))],
    );
    assert_eq!(st, 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("rump_ffs: librump.so: not found in "),
        "{err}"
    );
    assert!(err.contains("RUMP_NETBSD_DIR"), "{err}");

    // A build without the type's component: that one is named.
    let dest = d.path().join("dest");
    std::fs::create_dir_all(dest.join("lib")).unwrap();
    for l in [
        "librump.so",
        "librumpkern_sysproxy.so",
        "librumpvfs.so",
        "librumpdev.so",
        "librumpdev_disk.so",
    ] {
        std::fs::write(dest.join("lib").join(l), b"\x7fELF").unwrap();
    }
    let p = prog(d.path(), "rump_udf");
    let (st, err) = fails(
        &p,
        &[
            "-o",
            &format!("netbsd={}", dest.display()),
            img.to_str().unwrap(),
            mnt.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(st, 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("rump_udf: librumpfs_udf.so: not found in "),
        "{err}"
    );
    assert!(!is_mounted(&mnt));
}

/// Needs no NetBSD build: usage errors and bad options are one line.
#[test]
fn bad_arguments_are_one_line() {
    let d = tmpdir();
    let p = prog(d.path(), "rump_msdos");
    let (st, err) = fails(&p, &["only-one"], &[]);
    assert_eq!(st, 1);
    assert!(err.starts_with("usage: rump_msdos "), "{err}");
    let out = Command::new(&p).arg("--help").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("usage: rump_msdos [-fr] [-o "));
    let out = Command::new(RUMP_MOUNT).arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("usage: rump_mount [-t type|auto] "));
    let img = d.path().join("x.img");
    std::fs::write(&img, b"").unwrap();
    let (st, err) = fails(
        &p,
        &[
            "-o",
            "norrip",
            img.to_str().unwrap(),
            d.path().to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(st, 1);
    assert_eq!(err.trim(), "rump_msdos: norrip: unknown option for msdos");
    let (st, err) = fails(
        &p,
        &["/nonexistent/disk.img", d.path().to_str().unwrap()],
        &[],
    );
    assert_eq!(st, 1);
    assert_eq!(
        err.trim(),
        "rump_msdos: /nonexistent/disk.img: No such file or directory"
    );
}

/// Needs no NetBSD build: arguments are bytes, and one that is not UTF-8
/// is one line and exit 1, never a panic. Host paths are named with `\x`
/// escapes; an image path NetBSD's drive spec cannot carry, an option or
/// a type that must be text is refused in words, before anything starts.
/// Options may follow the operands.
#[test]
fn arguments_that_are_not_utf8_are_one_line() {
    use std::ffi::{OsStr, OsString};
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let d = tmpdir();
    let os = |b: &[u8]| OsString::from_vec(b.to_vec());
    let run = |prog: &Path, args: &[&OsStr]| {
        let o = Command::new(prog)
            .args(args)
            .current_dir(d.path())
            .env("RUMP_NETBSD_DIR", d.path().join("nonesuch"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let fails = |prog: &Path, args: &[&OsStr]| {
        let (st, _, err) = run(prog, args);
        assert_eq!(st, Some(1), "{args:?}: {err}");
        assert!(!err.contains('\u{fffd}'), "{err}");
        err
    };
    let e = OsStr::new;
    let mnt = d.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mp = |p: &Path| OsString::from(p);
    let rm = Path::new(RUMP_MOUNT);

    // A missing image whose name is not UTF-8: named as it is.
    let err = fails(rm, &[&os(b"\xff"), &mp(&mnt)]);
    assert_eq!(err, "rump_mount: \\xff: No such file or directory\n");
    // One that is there: NetBSD's drive spec is text, so it is refused,
    // before the components are looked for.
    let odd = d.path().join(OsStr::from_bytes(b"\xfe.img"));
    std::fs::write(&odd, vec![0u8; 1 << 16]).unwrap();
    let err = fails(rm, &[e("-t"), e("ffs"), &mp(&odd), &mp(&mnt)]);
    assert_eq!(
        err,
        format!(
            "rump_mount: {}/\\xfe.img: not valid UTF-8\n",
            std::fs::canonicalize(d.path()).unwrap().display()
        )
    );
    // A mount point is a host path: any bytes.
    let img = d.path().join("x.img");
    std::fs::write(&img, vec![0u8; 1 << 16]).unwrap();
    let missing = |name: &str| {
        if Path::new("/dev/fuse").exists() {
            format!("rump_mount: {name}: No such file or directory\n")
        } else {
            "rump_mount: /dev/fuse: No such file or directory\n".to_string()
        }
    };
    let err = fails(rm, &[&mp(&img), &os(b"m\xff"), e("-t"), e("ffs")]);
    assert_eq!(err, missing("m\\xff"));
    // Options and types are text; after the operands too.
    let err = fails(rm, &[&mp(&img), &mp(&mnt), e("-o"), &os(b"ro,\xff")]);
    assert_eq!(err, "rump_mount: -o ro,\\xff: not valid UTF-8\n");
    let err = fails(rm, &[e("-t"), &os(b"ff\xff"), &mp(&img), &mp(&mnt)]);
    assert_eq!(err, "rump_mount: -t ff\\xff: not valid UTF-8\n");
    let p = prog(d.path(), "rump_msdos");
    let err = fails(&p, &[&mp(&img), &mp(&mnt), e("-o"), e("norrip")]);
    assert_eq!(err, "rump_msdos: norrip: unknown option for msdos\n");
    // The NetBSD names take no -t; an unknown option is getopt's message
    // and the usage.
    let err = fails(&p, &[&mp(&img), &mp(&mnt), e("-t"), e("ffs")]);
    assert!(
        err.starts_with("rump_msdos: unknown option -- t\nusage: rump_msdos [-fr] "),
        "{err}"
    );
    let err = fails(rm, &[&os(b"-\xff"), &mp(&img), &mp(&mnt)]);
    assert!(
        err.starts_with("rump_mount: unknown option -- \u{ff}\nusage: rump_mount "),
        "{err}"
    );
    // `--` ends the options: `-f` is then the mount point.
    let err = fails(rm, &[e("-t"), e("ffs"), e("--"), &mp(&img), e("-f")]);
    assert_eq!(err, missing("-f"));
    // -h and --version: standard output, exit 0.
    let (st, out, err) = run(&p, &[e("-h")]);
    assert_eq!(st, Some(0), "{err}");
    assert!(out.starts_with("usage: rump_msdos [-fr] [-o "), "{out}");
    let (st, out, _) = run(rm, &[e("--version")]);
    assert_eq!(st, Some(0));
    assert!(out.starts_with("rump_mount "), "{out}");
}

/// A corrupt image is an error naming it, never a hang or a mount; for
/// every type with an image, so each one's components load and NetBSD's
/// mount(2) gets to judge it.
#[test]
#[ignore = "needs RUMP_NETBSD_DIR"]
fn corrupt_images_are_errors() {
    let d = tmpdir();
    let img = d.path().join("junk.img");
    let mut x: u32 = 12345;
    let junk: Vec<u8> = (0..4 << 20)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (x >> 16) as u8
        })
        .collect();
    std::fs::write(&img, junk).unwrap();
    let mnt = d.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let nb = require_destdir("netbsd-fs mount tests");
    for name in [
        "rump_ffs",
        "rump_msdos",
        "rump_cd9660",
        "rump_ntfs",
        "rump_udf",
        "rump_lfs",
        "rump_v7fs",
        "rump_sysvbfs",
        "rump_efs",
        "rump_hfs",
    ] {
        let p = prog(d.path(), name);
        let (st, err) = fails(
            &p,
            &[img.to_str().unwrap(), mnt.to_str().unwrap()],
            &[("RUMP_NETBSD_DIR", &nb)],
        );
        assert_eq!(st, 1, "{name}: {err}");
        let last = err.lines().last().unwrap_or("");
        assert!(
            last.starts_with(&format!("{name}: {}: cannot mount as ", img.display())),
            "{name}: {err}"
        );
        assert!(!is_mounted(&mnt), "{name}");
    }
}

/// The daemon (no `-f`) returns once the mount is live; SIGTERM halts it
/// through NetBSD's reboot path, leaving a clean image.
#[test]
#[ignore = "needs RUMP_NETBSD_DIR"]
fn background_mount_and_sigterm() {
    let d = tmpdir();
    let img = d.path().join("fat.img");
    run_ok(
        Command::new(require_tool("mkfs.vfat"))
            .args(["-C", "-F", "32"])
            .arg(&img)
            .arg("65536"),
    );
    let p = prog(d.path(), "rump_msdos");
    let mnt = d.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    run_ok(
        Command::new(&p)
            .arg(&img)
            .arg(&mnt)
            .env("RUMP_NETBSD_DIR", require_destdir("netbsd-fs mount tests")),
    );
    assert!(is_mounted(&mnt));
    std::fs::write(mnt.join("note.txt"), b"written through FUSE\n").unwrap();
    // The daemon: the process whose command line names our mount point.
    let pid = pid_of(&mnt, "rump_msdos").expect("the rump_msdos process");
    let _bg = Bg {
        pid,
        mnt: mnt.clone(),
    };
    // SAFETY: kill has no memory preconditions.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    wait_gone("the mount daemon", pid, Duration::from_secs(60));
    assert!(!is_mounted(&mnt));
    fsck_vfat_clean(&img);
    let out = run_ok(
        Command::new(require_tool("mtype"))
            .arg("-i")
            .arg(&img)
            .arg("::/note.txt"),
    );
    assert_eq!(out.stdout, b"written through FUSE\n");
}

/// The process whose program name ends in `name` and whose command line
/// names `mnt`.
fn pid_of(mnt: &Path, name: &str) -> Option<i32> {
    let want = mnt.to_str()?.as_bytes();
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        if cmd.split(|&b| b == 0).any(|a| a == want)
            && cmd
                .split(|&b| b == 0)
                .next()
                .is_some_and(|a| a.ends_with(name.as_bytes()))
        {
            return Some(pid);
        }
    }
    None
}

/// FIFOs (NetBSD's mkfifo(2), which its mknod(2) refuses for them) and
/// device nodes with their numbers, on FFS through FUSE, kept across a
/// re-mount.
#[test]
#[ignore = "needs RUMP_NETBSD_DIR"]
fn ffs_fifos_and_device_nodes() {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let d = tmpdir();
    let src = small_tree(d.path(), true);
    let img = d.path().join("ffs.img");
    run_ok(
        Command::new(require_tool("makefs"))
            .args(["-t", "ffs", "-s", "16m", "-o", "version=2"])
            .arg(&img)
            .arg(&src),
    );
    let p = prog(d.path(), "rump_ffs");
    let mnt = d.path().join("mnt");
    let m = Mount::start(&p, &[], &img, &mnt);
    run_ok(Command::new("mkfifo").arg(mnt.join("fifo")));
    run_ok(
        Command::new("mknod")
            .arg(mnt.join("null"))
            .args(["c", "1", "3"]),
    );
    run_ok(
        Command::new("mknod")
            .arg(mnt.join("disk"))
            .args(["b", "8", "300"]),
    );
    // A second read-write server on the same image is refused.
    let mnt2 = d.path().join("mnt2");
    std::fs::create_dir(&mnt2).unwrap();
    let (st, err) = fails(
        &p,
        &[img.to_str().unwrap(), mnt2.to_str().unwrap()],
        &[("RUMP_NETBSD_DIR", &require_destdir("netbsd-fs mount tests"))],
    );
    assert_eq!(st, 1, "{err}");
    assert!(
        err.trim()
            .ends_with("locked by another process (in use by another server?)"),
        "{err}"
    );
    assert!(!is_mounted(&mnt2));
    m.umount();
    // Options after the operands, as the FUSE mount tools take them.
    let m = Mount::start_with(&p, &[], &img, &mnt, &["-o", "ro"]);
    assert!(std::fs::write(mnt.join("nope"), b"x").is_err());
    let f = std::fs::symlink_metadata(mnt.join("fifo")).unwrap();
    assert!(f.file_type().is_fifo());
    let c = std::fs::symlink_metadata(mnt.join("null")).unwrap();
    assert!(c.file_type().is_char_device());
    assert_eq!((libc::major(c.rdev()), libc::minor(c.rdev())), (1, 3));
    let b = std::fs::symlink_metadata(mnt.join("disk")).unwrap();
    assert!(b.file_type().is_block_device());
    assert_eq!((libc::major(b.rdev()), libc::minor(b.rdev())), (8, 300));
    m.umount();
}

/// NetBSD's ext2fs returns empty directory slots (inode 0) from
/// getdents; they are not files: `lost+found` lists without an error.
#[test]
#[ignore = "needs RUMP_NETBSD_DIR"]
fn ext2fs_lost_found_lists() {
    let d = tmpdir();
    let img = d.path().join("ext2.img");
    run_ok(
        Command::new(require_tool("mke2fs"))
            .args([
                "-q", "-F", "-t", "ext2", "-r", "1", "-b", "1024", "-O", "none",
            ])
            .arg(&img)
            .arg("16M"),
    );
    let mnt = d.path().join("mnt");
    let m = Mount::start(Path::new(RUMP_MOUNT), &["-t", "ext2fs"], &img, &mnt);
    let out = run_ok(
        Command::new("ls")
            .arg("-la")
            .arg(&mnt)
            .arg(mnt.join("lost+found")),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("lost+found"), "{text}");
    let names: Vec<_> = std::fs::read_dir(mnt.join("lost+found"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(names.is_empty(), "{names:?}");
    std::fs::write(mnt.join("note"), b"ext2 through NetBSD\n").unwrap();
    m.umount();
    let out = Command::new(require_tool("e2fsck"))
        .arg("-fn")
        .arg(&img)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "e2fsck -fn: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A daemon started by [`mount_bg`]: unmounted and killed when dropped
/// (a failed test leaves nothing running).
struct Bg {
    pid: i32,
    mnt: PathBuf,
}

impl Drop for Bg {
    fn drop(&mut self) {
        if Path::new(&format!("/proc/{}", self.pid)).exists() {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
            // SAFETY: kill has no memory preconditions.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
        }
    }
}

/// Mount in the background (no `-f`), as a user would: returns the
/// program's standard output once the mount is live, and the daemon.
fn mount_bg(prog: &Path, args: &[&str], image: &Path, mnt: &Path) -> (String, Bg) {
    std::fs::create_dir_all(mnt).unwrap();
    let out = run_ok(
        Command::new(prog)
            .args(args)
            .arg(image)
            .arg(mnt)
            .env("RUMP_NETBSD_DIR", require_destdir("netbsd-fs mount tests")),
    );
    assert!(is_mounted(mnt));
    let name = prog.file_name().unwrap().to_str().unwrap().to_string();
    let pid = pid_of(mnt, &name).expect("the daemon");
    let bg = Bg {
        pid,
        mnt: mnt.to_path_buf(),
    };
    (String::from_utf8_lossy(&out.stdout).into_owned(), bg)
}

/// What the tool said first. NetBSD's kernel may add console lines after
/// it, such as its entropy pool's occasional statistical-test warning.
fn first_line(out: &str) -> &str {
    out.lines().next().unwrap_or("")
}

/// `umount`, then wait until the daemon is gone.
fn umount_bg(bg: Bg) {
    run_ok(Command::new("umount").arg(&bg.mnt));
    let pid = bg.pid;
    wait_gone("the mount daemon", pid, Duration::from_secs(60));
}

fn mkudf(img: &Path) {
    run_ok(Command::new("truncate").arg("-s").arg("64M").arg(img));
    run_ok(
        Command::new(require_tool("mkudffs"))
            .args(["-b", "512", "--media-type=hd", "-l", "RUMPTEST"])
            .arg(img),
    );
}

/// ntfs-3g (the host's own NTFS driver) puts `src`'s files in.
fn mkntfs_with(img: &Path, src: &Path, mnt: &Path) {
    run_ok(Command::new("truncate").arg("-s").arg("64M").arg(img));
    run_ok(
        Command::new(require_tool("mkntfs"))
            .args(["-F", "-q", "-f", "-L", "RUMPTEST"])
            .arg(img),
    );
    std::fs::create_dir_all(mnt).unwrap();
    run_ok(Command::new(require_tool("ntfs-3g")).arg(img).arg(mnt));
    let copied = Command::new("cp")
        .arg("-r")
        .args(std::fs::read_dir(src).unwrap().map(|e| e.unwrap().path()))
        .arg(mnt)
        .status()
        .unwrap();
    run_ok(Command::new("umount").arg(mnt));
    assert!(copied.success());
}

/// Without `-t`, each image's type is recognized and said.
#[test]
#[ignore = "needs RUMP_NETBSD_DIR"]
fn auto_detects_each_type() {
    let d = tmpdir();
    let src = small_tree(d.path(), false);
    let mut images: Vec<(PathBuf, &str)> = Vec::new();
    for v in ["1", "2"] {
        let img = d.path().join(format!("ffs{v}.img"));
        run_ok(
            Command::new(require_tool("makefs"))
                .args(["-t", "ffs", "-s", "16m", "-o"])
                .arg(format!("version={v}"))
                .arg(&img)
                .arg(&src),
        );
        images.push((
            img,
            if v == "1" {
                "FFS v1 (-t ffs)"
            } else {
                "FFS v2 (-t ffs)"
            },
        ));
    }
    for (bits, kib, what) in [
        ("12", "4096", "FAT12 (-t msdos)"),
        ("16", "65536", "FAT16 (-t msdos)"),
        ("32", "65536", "FAT32 (-t msdos)"),
    ] {
        let img = d.path().join(format!("fat{bits}.img"));
        run_ok(
            Command::new(require_tool("mkfs.vfat"))
                .args(["-C", "-F", bits])
                .arg(&img)
                .arg(kib),
        );
        run_ok(
            Command::new(require_tool("mcopy"))
                .arg("-s")
                .arg("-i")
                .arg(&img)
                .args(std::fs::read_dir(&src).unwrap().map(|e| e.unwrap().path()))
                .arg("::/"),
        );
        images.push((img, what));
    }
    let iso = d.path().join("cd.iso");
    run_ok(
        Command::new(require_tool("xorriso"))
            .args(["-as", "mkisofs", "-R", "-J", "-quiet", "-o"])
            .arg(&iso)
            .arg(&src),
    );
    images.push((iso, "ISO 9660 (-t cd9660)"));
    let udf = d.path().join("udf.img");
    mkudf(&udf);
    images.push((udf, "UDF (-t udf)"));
    let ntfs = d.path().join("ntfs.img");
    mkntfs_with(&ntfs, &src, &d.path().join("ntfs-3g"));
    images.push((ntfs, "NTFS (-t ntfs)"));
    let ext2 = d.path().join("ext2.img");
    run_ok(
        Command::new(require_tool("mke2fs"))
            .args([
                "-q", "-F", "-t", "ext2", "-r", "1", "-b", "1024", "-O", "none", "-d",
            ])
            .arg(&src)
            .arg(&ext2)
            .arg("16M"),
    );
    images.push((ext2, "ext2 (-t ext2fs)"));

    let mnt = d.path().join("mnt");
    for (img, what) in &images {
        let (out, bg) = mount_bg(Path::new(RUMP_MOUNT), &[], img, &mnt);
        assert_eq!(
            first_line(&out),
            format!("rump_mount: {}: {what}", img.display()),
            "{}",
            img.display()
        );
        if img.ends_with("ntfs.img") {
            // NetBSD's NTFS shows the metadata files ($MFT, ...).
            same_tree_but(&src, &mnt, &["$*"]);
        } else if img.ends_with("ext2.img") {
            same_tree_but(&src, &mnt, &["lost+found"]);
        } else if !img.ends_with("udf.img") {
            same_tree(&src, &mnt);
        }
        umount_bg(bg);
    }

    // Nothing known: one line, no mount.
    let junk = d.path().join("zeros.img");
    std::fs::write(&junk, vec![0u8; 1 << 20]).unwrap();
    let (st, err) = fails(
        Path::new(RUMP_MOUNT),
        &[junk.to_str().unwrap(), mnt.to_str().unwrap()],
        &[],
    );
    assert_eq!(st, 1);
    assert_eq!(
        err.trim(),
        format!(
            "rump_mount: {}: no file system recognized (FFS, ext2, FAT, ISO 9660, UDF, NTFS): give -t TYPE",
            junk.display()
        )
    );
}

/// UDF with 512-byte blocks: read and write through rump_udf; the 8 MiB
/// file is read back in FUSE requests of up to 1 MiB, each handed to
/// NetBSD's UDF in pieces of at most its MAXPHYS (a larger one trips an
/// assertion in NetBSD's UDF).
#[test]
#[ignore = "needs RUMP_NETBSD_DIR"]
fn udf_read_and_write() {
    let d = tmpdir();
    let img = d.path().join("udf.img");
    mkudf(&img);
    let p = prog(d.path(), "rump_udf");
    write_round_trip(d.path(), &p, &[], &img, true, |img| {
        let out = Command::new(require_tool("udfinfo"))
            .arg(img)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "udfinfo: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// UDF with 2048-byte sectors (`mkudffs -b 2048`, as on optical media):
/// rump_udf reads the sector size from the image's anchor and boots
/// NetBSD's drive layer with it; a tree and an 8 MiB file go in and read
/// back after a read-only re-mount, and udfinfo reads the image. Told
/// 512-byte sectors instead, NetBSD's UDF refuses the image.
#[test]
#[ignore = "needs RUMP_NETBSD_DIR"]
fn udf_2048_byte_sectors() {
    let d = tmpdir();
    let img = d.path().join("udf2k.img");
    run_ok(Command::new("truncate").arg("-s").arg("64M").arg(&img));
    run_ok(
        Command::new(require_tool("mkudffs"))
            .args(["-b", "2048", "--media-type=hd", "-l", "RUMP2K"])
            .arg(&img),
    );
    let mnt = d.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let p = prog(d.path(), "rump_udf");
    let (st, err) = fails(
        &p,
        &[
            "-o",
            "sectorsize=512",
            img.to_str().unwrap(),
            mnt.to_str().unwrap(),
        ],
        &[("RUMP_NETBSD_DIR", &require_destdir("netbsd-fs mount tests"))],
    );
    assert_eq!(st, 1, "{err}");
    assert!(
        err.lines().any(|l| l
            == format!(
                "rump_udf: {}: cannot mount as udf: Invalid argument",
                img.display()
            )),
        "{err}"
    );
    let (out, bg) = mount_bg(Path::new(RUMP_MOUNT), &[], &img, &mnt);
    assert_eq!(
        first_line(&out),
        format!("rump_mount: {}: UDF (-t udf)", img.display())
    );
    let df = run_ok(Command::new("stat").args(["-f", "-c", "%S"]).arg(&mnt));
    assert_eq!(String::from_utf8_lossy(&df.stdout).trim(), "2048");
    umount_bg(bg);
    write_round_trip(d.path(), &p, &[], &img, true, |img| {
        let out = run_ok(Command::new(require_tool("udfinfo")).arg(img));
        let info = String::from_utf8_lossy(&out.stdout);
        assert!(info.contains("blocksize=2048"), "{info}");
    });
}

/// NTFS made and filled by the host's tools: read back with rump_ntfs,
/// then written in place (NetBSD's NTFS rewrites existing data only);
/// ntfs-3g reads the change and ntfsfix finds nothing to fix.
#[test]
#[ignore = "needs RUMP_NETBSD_DIR"]
fn ntfs_read_and_in_place_write() {
    let d = tmpdir();
    let src = small_tree(d.path(), false);
    let tree = real_tree(d.path(), false);
    run_ok(
        Command::new("cp")
            .arg("-a")
            .arg(&tree)
            .arg(src.join("tree")),
    );
    let img = d.path().join("ntfs.img");
    let host_mnt = d.path().join("ntfs-3g");
    mkntfs_with(&img, &src, &host_mnt);
    let p = prog(d.path(), "rump_ntfs");
    let mnt = d.path().join("mnt");
    let m = Mount::start(&p, &[], &img, &mnt);
    // NetBSD's NTFS shows the metadata files ($MFT, ...) too.
    same_tree_but(&src, &mnt, &["$*"]);
    run_ok(
        Command::new("dd")
            .args(["conv=notrunc", "status=none", "bs=1", "seek=1000"])
            .arg(format!("of={}", mnt.join("Sub/Pattern.bin").display()))
            .arg(format!("if={}", d.path().join("patch").display()))
            .stdin(Stdio::null())
            .env("X", {
                std::fs::write(d.path().join("patch"), b"NETBSD WAS HERE").unwrap();
                "1"
            }),
    );
    m.umount();
    let out = Command::new(require_tool("ntfsfix"))
        .arg("-n")
        .arg(&img)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ntfsfix -n: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    run_ok(
        Command::new(require_tool("ntfs-3g"))
            .args(["-o", "ro"])
            .arg(&img)
            .arg(&host_mnt),
    );
    let got = std::fs::read(host_mnt.join("Sub/Pattern.bin"));
    run_ok(Command::new("umount").arg(&host_mnt));
    let mut want = std::fs::read(src.join("Sub/Pattern.bin")).unwrap();
    want[1000..1015].copy_from_slice(b"NETBSD WAS HERE");
    assert!(
        got.unwrap() == want,
        "the in-place write did not reach the image"
    );
}

/// `-o part=N` of a GPT image (sfdisk) with FAT16 in partition 1 and FFS
/// in partition 2; the type is recognized in the partition.
#[test]
#[ignore = "needs RUMP_NETBSD_DIR"]
fn gpt_partitions() {
    let d = tmpdir();
    let src = small_tree(d.path(), false);
    let img = d.path().join("gpt.img");
    partition_table(&img, "80M", b"label: gpt\n,32M\n,40M\n");
    // Partition 1 from sector 2048, partition 2 from 67584 (sfdisk's
    // alignment: 1 MiB, then right after the 32 MiB).
    put_fat16(&img, &src, 2048, 32768);
    put_ffs(d.path(), &img, &src, "40m", 67584);
    two_partitions(&img, &src, &d.path().join("mnt"), [2, 1, 3], "GPT");
}

/// `-o part=N` of an MBR image with logical partitions in an extended
/// one (made by sfdisk): FFS in logical partition 5, FAT in logical 6,
/// each found by following the chain of extended boot records.
#[test]
#[ignore = "needs RUMP_NETBSD_DIR"]
fn mbr_logical_partitions() {
    let d = tmpdir();
    let src = small_tree(d.path(), false);
    let img = d.path().join("mbr.img");
    partition_table(&img, "64M", b"label: dos\n,8M\n,,E\n,16M\n,20M\n");
    // Where sfdisk put partitions 5 and 6 (`sfdisk -d`: "IMG5 : start=
    // S, size= N, ...").
    let dump = run_ok(Command::new(require_tool("sfdisk")).arg("-d").arg(&img));
    let dump = String::from_utf8_lossy(&dump.stdout).into_owned();
    let start = |n: u32| -> u64 {
        let line = dump
            .lines()
            .find(|l| l.starts_with(&format!("{}{n} ", img.display())))
            .unwrap_or_else(|| panic!("partition {n} in {dump}"));
        let v = line
            .split("start=")
            .nth(1)
            .unwrap()
            .split(',')
            .next()
            .unwrap();
        v.trim().parse().unwrap()
    };
    let (s5, s6) = (start(5), start(6));
    put_ffs(d.path(), &img, &src, "16m", s5);
    put_fat16(&img, &src, s6, 20480);
    two_partitions(&img, &src, &d.path().join("mnt"), [5, 6, 7], "MBR");
}

/// A sparse image of `size` (truncate's syntax) with the partition table
/// sfdisk makes from `script`.
fn partition_table(img: &Path, size: &str, script: &[u8]) {
    run_ok(Command::new("truncate").arg("-s").arg(size).arg(img));
    let mut c = Command::new(require_tool("sfdisk"));
    c.arg("-q")
        .arg(img)
        .stdin(Stdio::piped())
        .stdout(Stdio::null());
    let mut child = c.spawn().unwrap();
    {
        use std::io::Write;
        let mut i = child.stdin.take().unwrap();
        i.write_all(script).unwrap();
    }
    assert!(child.wait().unwrap().success());
}

/// A FAT16 file system of `blocks` KiB holding `src`, made in place in
/// `img` from 512-byte sector `sector`.
fn put_fat16(img: &Path, src: &Path, sector: u64, blocks: u64) {
    run_ok(
        Command::new(require_tool("mkfs.vfat"))
            .args(["-F", "16", "--offset"])
            .arg(sector.to_string())
            .arg(img)
            .arg(blocks.to_string()),
    );
    run_ok(
        Command::new(require_tool("mcopy"))
            .arg("-s")
            .arg("-i")
            .arg(format!("{}@@{}", img.display(), sector * 512))
            .args(std::fs::read_dir(src).unwrap().map(|e| e.unwrap().path()))
            .arg("::/"),
    );
}

/// An FFS v2 image of `size` (makefs's syntax) holding `src`, made in
/// `dir` and copied into `img` from 512-byte sector `sector`.
fn put_ffs(dir: &Path, img: &Path, src: &Path, size: &str, sector: u64) {
    let ffs = dir.join("ffs.img");
    run_ok(
        Command::new(require_tool("makefs"))
            .args(["-t", "ffs", "-s", size, "-o", "version=2"])
            .arg(&ffs)
            .arg(src),
    );
    run_ok(
        Command::new("dd")
            .arg(format!("if={}", ffs.display()))
            .arg(format!("of={}", img.display()))
            .arg(format!("seek={sector}"))
            .args(["bs=512", "conv=notrunc", "status=none"]),
    );
}

/// FFS with NetBSD's WAPBL journal (`-o log`) survives `kill -9` in the
/// middle of a copy: the next mount replays the log (and is not refused
/// as unclean), every fsync'd file is intact, every file reads, and after
/// a clean unmount a mount without the log finds the file system clean.
#[test]
#[ignore = "needs RUMP_NETBSD_DIR"]
fn ffs_log_survives_kill_9() {
    use std::io::Read;
    let d = tmpdir();
    let src = small_tree(d.path(), true);
    let tree = real_tree(d.path(), true);
    let img = d.path().join("ffs.img");
    run_ok(
        Command::new(require_tool("makefs"))
            .args(["-t", "ffs", "-s", "64m", "-f", "8000", "-o", "version=2"])
            .arg(&img)
            .arg(&src),
    );
    let p = prog(d.path(), "rump_ffs");
    let mnt = d.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let start = |opts: &str| -> Child {
        let c = Command::new(&p)
            .args(["-f", "-o", opts])
            .arg(&img)
            .arg(&mnt)
            .env("RUMP_NETBSD_DIR", require_destdir("netbsd-fs mount tests"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_until(
            "the file system is mounted",
            Duration::from_secs(60),
            || is_mounted(&mnt),
        );
        c
    };
    let output = |mut c: Child| -> String {
        let mut s = String::new();
        let _ = c.stdout.take().unwrap().read_to_string(&mut s);
        let _ = c.stderr.take().unwrap().read_to_string(&mut s);
        let _ = c.wait();
        s
    };
    let mut fs = start("log");
    let _g1 = Bg {
        pid: fs.id() as i32,
        mnt: mnt.clone(),
    };
    // Files written and fsync'd before the crash.
    let big = big_file(d.path());
    let mut synced = Vec::new();
    for i in 0..3 {
        let name = mnt.join(format!("synced-{i}.bin"));
        let data = std::fs::read(&big).unwrap()[i << 20..(i + 2) << 20].to_vec();
        let mut f = std::fs::File::create(&name).unwrap();
        use std::io::Write;
        f.write_all(&data).unwrap();
        f.sync_all().unwrap();
        synced.push((format!("synced-{i}.bin"), data));
    }
    // A copy under way when the process dies.
    let mut cp = Command::new("cp")
        .arg("-a")
        .arg(&tree)
        .arg(mnt.join("tree"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Killed once the copy has written into the mount (not at a guessed
    // moment): the tree is there and holds its first entries.
    wait_until(
        "cp has begun copying the tree",
        Duration::from_secs(60),
        || std::fs::read_dir(mnt.join("tree")).is_ok_and(|mut d| d.next().is_some()),
    );
    fs.kill().unwrap();
    let first = output(fs);
    let _ = run_ok(Command::new("umount").arg("-l").arg(&mnt));
    let _ = cp.kill();
    let _ = cp.wait();
    assert!(!first.contains("not clean"), "{first}");

    // The next mount replays the journal.
    let fs = start("log");
    let _g2 = Bg {
        pid: fs.id() as i32,
        mnt: mnt.clone(),
    };
    for (name, data) in &synced {
        let got = std::fs::read(mnt.join(name)).unwrap();
        assert!(&got == data, "{name}: fsync'd data lost after kill -9");
    }
    // Every file there reads to its end.
    run_ok(
        Command::new("find")
            .arg(&mnt)
            .args(["-type", "f", "-exec", "cat", "{}", "+"])
            .stdout(Stdio::null()),
    );
    run_ok(Command::new("umount").arg(&mnt));
    let second = output(fs);
    assert!(second.contains("replaying log"), "no log replay: {second}");
    assert!(!second.contains("not clean"), "{second}");

    // Clean now, without the journal too.
    let fs = start("ro");
    let _g3 = Bg {
        pid: fs.id() as i32,
        mnt: mnt.clone(),
    };
    run_ok(Command::new("umount").arg(&mnt));
    let third = output(fs);
    assert!(!third.contains("not clean"), "{third}");
}

/// `-o rumpserver=URL` also serves the kernel over sysproxy: a client
/// sees the image at /mnt, and its reboot(2) (what `rump.halt` sends)
/// halts through NetBSD's reboot path, which ends the process and takes
/// the host mount with it; the data written through FUSE is on the image.
#[test]
#[ignore = "needs RUMP_NETBSD_DIR"]
fn rumpserver_and_halt_over_sysproxy() {
    let d = tmpdir();
    let src = small_tree(d.path(), true);
    let img = d.path().join("ffs.img");
    run_ok(
        Command::new(require_tool("makefs"))
            .args(["-t", "ffs", "-s", "16m", "-o", "version=2"])
            .arg(&img)
            .arg(&src),
    );
    let p = prog(d.path(), "rump_ffs");
    let mnt = d.path().join("mnt");
    let url = format!("unix://{}", d.path().join("sock").display());
    let (_, bg) = mount_bg(&p, &["-o", &format!("rumpserver={url}")], &img, &mnt);
    std::fs::write(mnt.join("via-fuse.txt"), b"written on the host\n").unwrap();
    let c = rumpclient::Client::connect(&url).unwrap();
    let names: Vec<Vec<u8>> = c
        .read_dir("/mnt")
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert!(names.iter().any(|n| n == b"Hello.txt"), "{names:?}");
    let _ = c.reboot(0);
    wait_gone("the mount daemon", bg.pid, Duration::from_secs(60));
    wait_until("the host mount is gone", Duration::from_secs(10), || {
        !is_mounted(&mnt)
    });
    let m = Mount::start(&p, &["-o", "ro"], &img, &mnt);
    assert_eq!(
        std::fs::read(mnt.join("via-fuse.txt")).unwrap(),
        b"written on the host\n"
    );
    m.umount();
}

/// An image this process may not write (immutable, `chattr +i`, which
/// stops root too) is served read-only, NetBSD's kernel opening it
/// itself; so is every image with `-o ro`.
#[test]
#[ignore = "needs RUMP_NETBSD_DIR"]
fn unwritable_images_are_served_read_only() {
    /// Lifts the immutable flag again, so the directory can go.
    struct Mutable(PathBuf);
    impl Drop for Mutable {
        fn drop(&mut self) {
            let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
        }
    }
    let d = tmpdir();
    let src = small_tree(d.path(), true);
    let img = d.path().join("ffs.img");
    run_ok(
        Command::new(require_tool("makefs"))
            .args(["-t", "ffs", "-s", "16m", "-o", "version=2"])
            .arg(&img)
            .arg(&src),
    );
    let before = std::fs::read(&img).unwrap();
    run_ok(Command::new(require_tool("chattr")).arg("+i").arg(&img));
    let _m = Mutable(img.clone());
    assert!(std::fs::OpenOptions::new().write(true).open(&img).is_err());
    let p = prog(d.path(), "rump_ffs");
    let mnt = d.path().join("mnt");
    let m = Mount::start(&p, &[], &img, &mnt);
    same_tree(&src, &mnt);
    let e = std::fs::write(mnt.join("new"), b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");
    m.umount();
    assert!(std::fs::read(&img).unwrap() == before, "the image changed");
}

/// rump_tmpfs: NetBSD's tmpfs, no image (the first argument is a name).
#[test]
#[ignore = "needs RUMP_NETBSD_DIR"]
fn tmpfs_in_memory() {
    let d = tmpdir();
    let src = small_tree(d.path(), true);
    let p = prog(d.path(), "rump_tmpfs");
    let mnt = d.path().join("mnt");
    let m = Mount::start(&p, &["-o", "size=32m"], Path::new("tmpfs"), &mnt);
    run_ok(Command::new("cp").arg("-a").arg(&src).arg(mnt.join("copy")));
    same_tree(&src, &mnt.join("copy"));
    run_ok(Command::new("mkfifo").arg(mnt.join("fifo")));
    m.umount();
}

/// What a partitioned image holding `src` gets checked for, with partition
/// numbers `[ffs, fat, none]`: the FFS and the FAT partition each mount
/// (recognized as such) with the tree; a write into the FFS one stays there
/// (the FAT one still holds its tree after it); partition `none` is refused,
/// naming the `table` (GPT or MBR).
fn two_partitions(img: &Path, src: &Path, mnt: &Path, [ffs, fat, none]: [u32; 3], table: &str) {
    let (out, bg) = mount_bg(
        Path::new(RUMP_MOUNT),
        &["-o", &format!("part={ffs}")],
        img,
        mnt,
    );
    assert_eq!(
        first_line(&out),
        format!("rump_mount: {}: FFS v2 (-t ffs)", img.display())
    );
    same_tree(src, mnt);
    let mark = format!("in-part-{ffs}");
    std::fs::write(mnt.join(&mark), b"ffs\n").unwrap();
    umount_bg(bg);
    let (out, bg) = mount_bg(
        Path::new(RUMP_MOUNT),
        &["-o", &format!("part={fat}")],
        img,
        mnt,
    );
    assert_eq!(
        first_line(&out),
        format!("rump_mount: {}: FAT16 (-t msdos)", img.display())
    );
    same_tree(src, mnt);
    umount_bg(bg);
    let (_, bg) = mount_bg(
        Path::new(RUMP_MOUNT),
        &["-o", &format!("part={ffs},ro")],
        img,
        mnt,
    );
    assert_eq!(std::fs::read(mnt.join(&mark)).unwrap(), b"ffs\n");
    umount_bg(bg);
    let (st, err) = fails(
        Path::new(RUMP_MOUNT),
        &[
            "-o",
            &format!("part={none}"),
            img.to_str().unwrap(),
            mnt.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(st, 1);
    assert_eq!(
        err.trim(),
        format!(
            "rump_mount: {}: part={none}: no such partition in the {table}",
            img.display()
        )
    );
}
