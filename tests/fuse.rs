//! rump_ext2fs and `rumpctl fuse` (docs/design.md, "Host access through
//! FUSE"): ext2 images and
//! running servers' trees on the host through FUSE, used by real programs
//! (cp, tar, find, diff, git), then halted and checked by e2fsprogs.
//!
//! These tests need /dev/fuse and fail without it, unless
//! RUMP_TESTS_NO_FUSE=1 says to skip them.

mod common;

use rumpclient::Syscalls as _;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;

const RUMP_EXT2FS: &str = env!("CARGO_BIN_EXE_rump_ext2fs");

fn fuse_ok() -> bool {
    if Path::new("/dev/fuse").exists() {
        return true;
    }
    if std::env::var("RUMP_TESTS_NO_FUSE").is_ok_and(|v| v == "1") {
        eprintln!("/dev/fuse missing and RUMP_TESTS_NO_FUSE=1: skipping");
        return false;
    }
    panic!("/dev/fuse is missing: FUSE tests cannot run (set RUMP_TESTS_NO_FUSE=1 to skip them)");
}

fn run(cmd: &mut Command) -> Output {
    let o = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    o
}

fn ok(cmd: &mut Command) -> Output {
    let o = run(cmd);
    assert!(
        o.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
    o
}

/// Pids of processes whose command line mentions `needle`.
fn pids_with(needle: &str) -> Vec<i32> {
    let mut out = vec![];
    let me = std::process::id() as i32;
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
            let s = String::from_utf8_lossy(&c).replace('\0', " ");
            if s.contains(needle) && (s.contains("rump_ext2fs") || s.contains("rumpctl")) {
                out.push(pid);
            }
        }
    }
    out
}

/// Cleans up whatever a test started: unmounts (lazily) and kills.
#[derive(Default)]
struct Guard {
    mounts: Vec<PathBuf>,
    needles: Vec<String>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        for m in &self.mounts {
            if is_mounted(m) {
                let _ = Command::new("umount")
                    .arg("-l")
                    .arg(m)
                    .stderr(Stdio::null())
                    .status();
            }
        }
        for n in &self.needles {
            for p in pids_with(n) {
                // SAFETY: kill(2) on a process this test started.
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
        }
    }
}

/// `rump_ext2fs [args] img mnt`; returns the daemon's pid.
fn mount_ext2fs(g: &mut Guard, img: &Path, mnt: &Path, args: &[&str]) -> i32 {
    mount_ext2fs_with(g, img, mnt, args, &[])
}

/// `rump_ext2fs [before] img mnt [after]`; returns the daemon's pid.
fn mount_ext2fs_with(
    g: &mut Guard,
    img: &Path,
    mnt: &Path,
    before: &[&str],
    after: &[&str],
) -> i32 {
    std::fs::create_dir_all(mnt).unwrap();
    g.mounts.push(mnt.to_path_buf());
    g.needles.push(img.display().to_string());
    ok(Command::new(RUMP_EXT2FS)
        .args(before)
        .arg(img)
        .arg(mnt)
        .args(after));
    assert!(
        is_mounted(mnt),
        "rump_ext2fs returned before {} was mounted",
        mnt.display()
    );
    let p = pids_with(&img.display().to_string());
    assert_eq!(p.len(), 1, "one rump_ext2fs process for {}", img.display());
    p[0]
}

fn umount_and_wait(mnt: &Path, pid: i32) {
    // "target is busy" while a program started in the tree is still
    // going away: try again for a few seconds.
    let mut tries = 0;
    loop {
        let o = run(Command::new("umount").arg(mnt));
        if o.status.success() {
            break;
        }
        tries += 1;
        assert!(
            tries < 50 && stderr(&o).contains("busy"),
            "umount {}: {}",
            mnt.display(),
            stderr(&o)
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    wait_gone("rump_ext2fs after umount", pid, Duration::from_secs(20));
}

/// A real-looking tree: nested directories of small files, symbolic
/// links, a hard link, an empty file, one 64 MiB file.
fn make_tree(root: &Path) {
    let mut seed = 7u64;
    for d in 0..40 {
        let dir = root.join(format!("dir{d}")).join(format!("sub{}", d % 4));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..60 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let len = (seed >> 33) as usize % 6000;
            std::fs::write(dir.join(format!("file{f}.dat")), pattern(len, seed)).unwrap();
        }
        std::os::unix::fs::symlink(
            format!("sub{}/file1.dat", d % 4),
            root.join(format!("dir{d}/link")),
        )
        .unwrap();
        std::os::unix::fs::symlink("/nonexistent/target", root.join(format!("dir{d}/dangling")))
            .unwrap();
    }
    std::fs::write(root.join("empty"), b"").unwrap();
    let mut f = std::fs::File::create(root.join("big")).unwrap();
    for i in 0..64 {
        f.write_all(&pattern(1 << 20, 1000 + i)).unwrap();
    }
    drop(f);
    std::fs::hard_link(root.join("dir0/sub0/file2.dat"), root.join("hardlink")).unwrap();
    std::fs::set_permissions(root.join("dir1"), std::fs::Permissions::from_mode(0o750)).unwrap();
    // Names are bytes, not UTF-8: a Latin-1 name, in a Latin-1 directory,
    // and a link to it.
    use std::os::unix::ffi::OsStrExt;
    let latin = root.join(std::ffi::OsStr::from_bytes(b"caf\xe9"));
    std::fs::create_dir(&latin).unwrap();
    std::fs::write(
        latin.join(std::ffi::OsStr::from_bytes(b"na\xefve \xff.txt")),
        b"latin-1\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(
        std::ffi::OsStr::from_bytes(b"caf\xe9/na\xefve \xff.txt"),
        root.join("latin-link"),
    )
    .unwrap();
}

fn diff_r(a: &Path, b: &Path) {
    ok(Command::new("diff")
        .arg("-r")
        .arg("--no-dereference")
        .arg(a)
        .arg(b));
}

fn count(root: &Path) -> usize {
    let o = ok(Command::new("find").arg(root));
    o.stdout
        .split(|&c| c == b'\n')
        .filter(|l| !l.is_empty())
        .count()
}

/// The main job: a real tree in and out of an image through the mount,
/// real tools in it, then umount, e2fsck and debugfs.
#[test]
fn real_tree_through_rump_ext2fs() {
    if !fuse_ok() {
        return;
    }
    let d = tmpdir();
    let mut g = Guard::default();
    let src = d.path().join("src");
    make_tree(&src);
    let img = d.path().join("disk.img");
    mke2fs(&img, &["-b", "4096"], "400M");
    let mnt = d.path().join("mnt");
    let pid = mount_ext2fs(&mut g, &img, &mnt, &[]);
    // As root, the mount reads ahead 1 MiB, not the host's 128 KiB.
    let dev = std::fs::metadata(&mnt).unwrap().dev();
    let ra = std::fs::read_to_string(format!(
        "/sys/class/bdi/{}:{}/read_ahead_kb",
        libc::major(dev),
        libc::minor(dev)
    ));
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        assert_eq!(ra.unwrap().trim(), "1024");
    }

    // cp -a in, then compare.
    let t = mnt.join("tree");
    ok(Command::new("cp").arg("-a").arg(&src).arg(&t));
    diff_r(&src, &t);
    assert_eq!(count(&src), count(&t));
    assert_eq!(std::fs::metadata(t.join("hardlink")).unwrap().nlink(), 2);
    assert_eq!(
        std::fs::metadata(t.join("dir1"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o750
    );
    assert_eq!(
        std::fs::read_link(t.join("dir3/link")).unwrap(),
        Path::new("sub3/file1.dat")
    );

    // tar both ways.
    let tarball = d.path().join("t.tar");
    ok(Command::new("tar")
        .arg("cf")
        .arg(&tarball)
        .arg("-C")
        .arg(&src)
        .arg("."));
    std::fs::create_dir(mnt.join("untar")).unwrap();
    ok(Command::new("tar")
        .arg("xf")
        .arg(&tarball)
        .arg("-C")
        .arg(mnt.join("untar")));
    diff_r(&src, &mnt.join("untar"));
    let back = d.path().join("back");
    std::fs::create_dir(&back).unwrap();
    ok(Command::new("sh").arg("-c").arg(format!(
        "tar cf - -C '{}' . | tar xf - -C '{}'",
        t.display(),
        back.display()
    )));
    diff_r(&src, &back);
    let ls = ok(Command::new("find").arg(&t).arg("-ls"));
    assert!(ls.stdout.len() > 1000);

    // chmod, chown, touch, mv across directories.
    let f = t.join("dir2/sub2/file3.dat");
    ok(Command::new("chmod").arg("640").arg(&f));
    ok(Command::new("chown").arg("1234:5678").arg(&f));
    ok(Command::new("touch")
        .arg("-d")
        .arg("2001-02-03 04:05:06 UTC")
        .arg(&f));
    let md = std::fs::metadata(&f).unwrap();
    assert_eq!(
        (md.mode() & 0o7777, md.uid(), md.gid(), md.mtime()),
        (0o640, 1234, 5678, 981173106)
    );
    ok(Command::new("mv").arg(&f).arg(t.join("dir5/moved.dat")));
    ok(Command::new("mv")
        .arg(t.join("dir6"))
        .arg(t.join("dir7/dir6moved")));
    assert!(!f.exists());
    assert!(t.join("dir7/dir6moved/sub2/file0.dat").exists());

    // Mode bits hold for other users (checked by the kernel alone, with
    // the caller's credentials: the mount has no default_permissions);
    // root bypasses them.
    std::fs::write(mnt.join("secret"), b"s").unwrap();
    ok(Command::new("chmod").arg("600").arg(mnt.join("secret")));
    let as_nobody = |cmd: &str| {
        run(Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "sh",
                "-c",
            ])
            .arg(cmd))
    };
    let o = as_nobody(&format!("cat '{}'", mnt.join("secret").display()));
    assert!(
        !o.status.success() && stderr(&o).contains("Permission denied"),
        "nobody read a 0600 file: {}",
        stderr(&o)
    );
    let o = as_nobody(&format!(
        "touch '{}'",
        mnt.join("nobody-was-here").display()
    ));
    assert!(
        !o.status.success(),
        "nobody created a file in a 0755 root directory"
    );
    std::fs::create_dir(mnt.join("pub")).unwrap();
    ok(Command::new("chmod").arg("1777").arg(mnt.join("pub")));
    let o = as_nobody(&format!(
        "echo hi > '{0}/n' && cat '{0}/n'",
        mnt.join("pub").display()
    ));
    assert!(
        o.status.success(),
        "nobody in a 1777 directory: {}",
        stderr(&o)
    );
    assert_eq!(std::fs::metadata(mnt.join("pub/n")).unwrap().uid(), 65534);
    // The sticky bit keeps others' files; chmod is the owner's.
    let o = as_nobody(&format!("rm -f '{}'", mnt.join("pub/n2").display()));
    assert!(o.status.success());
    std::fs::write(mnt.join("pub/roots"), b"r").unwrap();
    let o = as_nobody(&format!("rm -f '{}'", mnt.join("pub/roots").display()));
    assert!(
        !o.status.success() && mnt.join("pub/roots").exists(),
        "nobody removed root's file from a sticky directory"
    );
    let o = as_nobody(&format!("chmod 666 '{}'", mnt.join("secret").display()));
    assert!(
        !o.status.success() && stderr(&o).contains("Operation not permitted"),
        "{}",
        stderr(&o)
    );
    // A directory without search permission hides what is under it, even
    // a file anybody may read.
    std::fs::create_dir_all(mnt.join("closed/in")).unwrap();
    std::fs::write(mnt.join("closed/in/readable"), b"r").unwrap();
    ok(Command::new("chmod")
        .arg("644")
        .arg(mnt.join("closed/in/readable")));
    let readable = format!("cat '{}'", mnt.join("closed/in/readable").display());
    assert!(as_nobody(&readable).status.success());
    ok(Command::new("chmod").arg("744").arg(mnt.join("closed")));
    let o = as_nobody(&readable);
    assert!(
        !o.status.success() && stderr(&o).contains("Permission denied"),
        "searched a 0744 directory: {}",
        stderr(&o)
    );
    let o = as_nobody(&format!("cd '{}'", mnt.join("closed").display()));
    assert!(!o.status.success(), "nobody entered a 0744 directory");
    assert_eq!(std::fs::read(mnt.join("closed/in/readable")).unwrap(), b"r");
    // Supplementary groups: FUSE does not pass them, the adapter reads
    // them from the host when the kernel would refuse the primary group.
    std::fs::create_dir(mnt.join("staff")).unwrap();
    std::fs::write(mnt.join("staff/doc"), b"for staff").unwrap();
    ok(Command::new("chown")
        .arg("-R")
        .arg("0:4242")
        .arg(mnt.join("staff")));
    ok(Command::new("chmod").arg("750").arg(mnt.join("staff")));
    ok(Command::new("chmod").arg("640").arg(mnt.join("staff/doc")));
    let doc = format!("cat '{}'", mnt.join("staff/doc").display());
    let o = as_nobody(&doc);
    assert!(
        !o.status.success(),
        "nobody outside group 4242 read the staff file"
    );
    let o = run(Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--groups=4242",
            "sh",
            "-c",
        ])
        .arg(&doc));
    assert!(
        o.status.success() && o.stdout == b"for staff",
        "a member of 4242 as a supplementary group: {}",
        stderr(&o)
    );

    // git: init, add, commit, log, in the mounted tree.
    let repo = mnt.join("repo");
    std::fs::create_dir(&repo).unwrap();
    std::fs::write(repo.join("README"), b"hello from rump\n").unwrap();
    let git = |args: &[&str]| {
        ok(Command::new("git")
            .args(args)
            .current_dir(&repo)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.org")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.org")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            // No detached gc or maintenance left running in the mount.
            .env("GIT_CONFIG_COUNT", "2")
            .env("GIT_CONFIG_KEY_0", "gc.auto")
            .env("GIT_CONFIG_VALUE_0", "0")
            .env("GIT_CONFIG_KEY_1", "maintenance.auto")
            .env("GIT_CONFIG_VALUE_1", "false")
            .env("HOME", d.path()))
    };
    git(&["init", "-q"]);
    git(&["add", "README"]);
    git(&["commit", "-q", "-m", "first"]);
    let log = git(&["log", "--oneline"]);
    assert!(String::from_utf8_lossy(&log.stdout).contains("first"));
    git(&["fsck", "--no-progress"]);

    // Device nodes keep their numbers, in both of ext2's encodings (a
    // small pair in the old 8+8-bit form, a large one in the 32-bit one).
    ok(Command::new("mknod")
        .arg(mnt.join("tty"))
        .args(["c", "4", "64"]));
    ok(Command::new("mknod")
        .arg(mnt.join("bigdev"))
        .args(["b", "300", "70000"]));
    ok(Command::new("mkfifo").arg(mnt.join("fifo")));
    use std::os::unix::fs::FileTypeExt;
    let tty = std::fs::symlink_metadata(mnt.join("tty")).unwrap();
    assert!(tty.file_type().is_char_device());
    assert_eq!((libc::major(tty.rdev()), libc::minor(tty.rdev())), (4, 64));
    let big = std::fs::symlink_metadata(mnt.join("bigdev")).unwrap();
    assert!(big.file_type().is_block_device());
    assert_eq!(
        (libc::major(big.rdev()), libc::minor(big.rdev())),
        (300, 70000)
    );
    assert!(std::fs::symlink_metadata(mnt.join("fifo"))
        .unwrap()
        .file_type()
        .is_fifo());

    // Unmount: the process halts, the image is clean and holds the tree.
    umount_and_wait(&mnt, pid);
    e2fsck_clean(&img);
    let tty = debugfs_out(&img, "stat /tty");
    assert!(
        tty.contains("Type: character special") && tty.contains("Device major/minor number: 04:64"),
        "{tty}"
    );
    let big = debugfs_out(&img, "stat /bigdev");
    assert!(
        big.contains("Type: block special") && big.contains("Device major/minor number: 300:70000"),
        "{big}"
    );
    let out = d.path().join("out");
    std::fs::create_dir(&out).unwrap();
    ok(host_cmd("debugfs")
        .arg("-R")
        .arg(format!("rdump /untar {}", out.display()))
        .arg(&img));
    diff_r(&src, &out.join("untar"));

    // The same tree through a running server's FUSE mount.
    let srv = Server::start(
        d.path(),
        &[
            "-d",
            &format!("key=/dk,hostpath={},size=host", img.display()),
        ],
    );
    let c = srv.client();
    c.mkdir("/mnt", 0o755).unwrap();
    c.mount_ext2("/mnt", 0, "/dk").unwrap();
    let m2 = d.path().join("m2");
    std::fs::create_dir(&m2).unwrap();
    g.mounts.push(m2.clone());
    g.needles.push(m2.display().to_string());
    ok(Command::new(RUMPCTL)
        .args(["fuse", "/mnt"])
        .arg(&m2)
        .env("RUMP_SERVER", &srv.url));
    assert!(is_mounted(&m2));
    diff_r(&src, &m2.join("untar"));
    std::fs::write(m2.join("via-rumpctl"), b"written through rumpctl fuse\n").unwrap();
    // chown, utimensat, truncate and statvfs1 over sysproxy.
    let v = m2.join("via-rumpctl");
    ok(Command::new("chown").arg("42:43").arg(&v));
    ok(Command::new("touch")
        .arg("-h")
        .arg("-d")
        .arg("2010-01-02 03:04:05 UTC")
        .arg(&v));
    ok(Command::new("df").arg(&m2));
    let st = c.stat("/mnt/via-rumpctl").unwrap();
    assert_eq!((st.uid, st.gid, st.mtime.sec), (42, 43, 1262401445));
    let sv = c.statvfs("/mnt").unwrap();
    assert_eq!(sv.fstypename, b"ext2fs");
    assert_eq!(sv.mntonname, b"/mnt");
    c.truncate("/mnt/via-rumpctl", 7).unwrap();
    assert_eq!(std::fs::read(&v).unwrap_or_default().len(), 7);
    std::fs::write(&v, b"written through rumpctl fuse\n").unwrap();
    let st = std::fs::metadata(m2.join("tree/big")).unwrap();
    assert_eq!(st.len(), 64 << 20);
    let p = pids_with(&m2.display().to_string());
    ok(Command::new("umount").arg(&m2));
    for p in p {
        wait_gone("rumpctl fuse after umount", p, Duration::from_secs(10));
    }
    let h = srv.halt(&[]);
    assert!(h.status.success(), "rump.halt: {}", stderr(&h));
    drop(srv);
    e2fsck_clean(&img);
    let o = ok(host_cmd("debugfs")
        .arg("-R")
        .arg("cat /via-rumpctl")
        .arg(&img));
    assert_eq!(o.stdout, b"written through rumpctl fuse\n");
}

/// Unix-style errors, exit 1.
#[test]
fn errors_in_unix_style() {
    if !fuse_ok() {
        return;
    }
    let d = tmpdir();
    let mut g = Guard::default();
    let img = d.path().join("x.img");
    let mnt = d.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let expect = |args: &[&Path], msg: &str| {
        let o = run(Command::new(RUMP_EXT2FS).args(args));
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let e = stderr(&o);
        assert!(
            e.starts_with("rump_ext2fs: ") && e.contains(msg),
            "{args:?}: {e}"
        );
    };
    expect(
        &[&img, &mnt],
        &format!("{}: No such file or directory", img.display()),
    );
    mke2fs(&img, &["-b", "4096"], "16M");
    let missing = d.path().join("nowhere");
    expect(
        &[&img, &missing],
        &format!("{}: No such file or directory", missing.display()),
    );
    // Busy: something is already mounted there.
    let pid = mount_ext2fs(&mut g, &img, &mnt, &[]);
    let img2 = d.path().join("y.img");
    mke2fs(&img2, &["-b", "4096"], "16M");
    expect(
        &[&img2, &mnt],
        &format!("{}: Device or resource busy", mnt.display()),
    );
    umount_and_wait(&mnt, pid);
    // Refused features: an ext4 image with extents and 64bit.
    let ext4 = d.path().join("e4.img");
    mke2fs(&ext4, &["-b", "4096", "-O", "extent,64bit"], "32M");
    expect(&[&ext4, &mnt], &format!("{}: ", ext4.display()));
    assert!(!is_mounted(&mnt));
    assert!(pids_with(&ext4.display().to_string()).is_empty());
}

/// SIGTERM halts like an unmount; -o rumpserver serves sysproxy and
/// rump.halt takes the host mount away; -o ro refuses writes.
#[test]
fn sigterm_rumpserver_and_read_only() {
    if !fuse_ok() {
        return;
    }
    let d = tmpdir();
    let mut g = Guard::default();
    let img = d.path().join("s.img");
    mke2fs(&img, &["-b", "4096"], "64M");
    let mnt = d.path().join("mnt");

    // SIGTERM, in the foreground (-f): exit status 0, clean image.
    std::fs::create_dir(&mnt).unwrap();
    g.mounts.push(mnt.clone());
    g.needles.push(img.display().to_string());
    let mut child = Command::new(RUMP_EXT2FS)
        .arg("-f")
        .arg(&img)
        .arg(&mnt)
        .spawn()
        .unwrap();
    wait_until(
        "rump_ext2fs -f has mounted",
        Duration::from_secs(20),
        || is_mounted(&mnt),
    );
    std::fs::write(mnt.join("kept"), pattern(300_000, 3)).unwrap();
    // SAFETY: kill(2) on our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let st = child.wait().unwrap();
    assert!(st.success(), "rump_ext2fs after SIGTERM: {st}");
    assert!(!is_mounted(&mnt));
    e2fsck_clean(&img);
    let o = ok(host_cmd("debugfs").arg("-R").arg("cat /kept").arg(&img));
    assert_eq!(o.stdout, pattern(300_000, 3));

    // -o rumpserver=URL: rumpctl sees the tree; rump.halt unmounts.
    let sock = d.path().join("k.sock");
    let url = format!("unix://{}", sock.display());
    let pid = mount_ext2fs(&mut g, &img, &mnt, &["-o", &format!("rumpserver={url}")]);
    std::fs::write(mnt.join("from-host"), b"fuse\n").unwrap();
    let o = ok(Command::new(RUMPCTL)
        .args(["cat", "/mnt/from-host"])
        .env("RUMP_SERVER", &url));
    assert_eq!(o.stdout, b"fuse\n");
    ok(Command::new(RUMPCTL)
        .args(["mkdir", "/mnt/from-rumpctl"])
        .env("RUMP_SERVER", &url));
    wait_until(
        "rumpctl's directory is seen through FUSE",
        Duration::from_secs(20),
        || mnt.join("from-rumpctl").exists(),
    );
    ok(Command::new(RUMP_HALT).env("RUMP_SERVER", &url));
    wait_gone("rump_ext2fs after rump.halt", pid, Duration::from_secs(20));
    assert!(!is_mounted(&mnt), "rump.halt left the FUSE mount");
    e2fsck_clean(&img);

    // -o ro, after the operands as fuse2fs takes it: reads work, writes
    // fail with EROFS.
    let pid = mount_ext2fs_with(&mut g, &img, &mnt, &[], &["-o", "ro"]);
    assert_eq!(std::fs::read(mnt.join("from-host")).unwrap(), b"fuse\n");
    let e = std::fs::write(mnt.join("nope"), b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS));
    umount_and_wait(&mnt, pid);
    e2fsck_clean(&img);
}

/// Offsets of an inode table and of a directory's block, from debugfs.
fn debugfs_out(img: &Path, req: &str) -> String {
    String::from_utf8_lossy(&ok(host_cmd("debugfs").arg("-R").arg(req).arg(img)).stdout)
        .into_owned()
}

/// A corrupt image: errors, never a hang; the host mount stays usable.
#[test]
fn corrupt_image_gives_errors_not_hangs() {
    if !fuse_ok() {
        return;
    }
    let d = tmpdir();
    let mut g = Guard::default();
    let img = d.path().join("bad.img");
    mke2fs(&img, &["-b", "4096", "-N", "512"], "32M");
    // Fill it through the mount, so the layout is ours.
    let mnt = d.path().join("mnt");
    let pid = mount_ext2fs(&mut g, &img, &mnt, &[]);
    for i in 0..20 {
        let dir = mnt.join(format!("d{i}"));
        std::fs::create_dir(&dir).unwrap();
        for j in 0..20 {
            std::fs::write(dir.join(format!("f{j}")), pattern(5000 + j * 100, i as u64)).unwrap();
        }
    }
    umount_and_wait(&mnt, pid);
    e2fsck_clean(&img);

    // Smash the first inode table block past the root's inodes, and a
    // directory's data block.
    let stats = debugfs_out(&img, "stats");
    let itab: u64 = stats
        .lines()
        .find_map(|l| {
            let i = l.to_ascii_lowercase().find("inode table at ")?;
            let r = &l[i + "inode table at ".len()..];
            r.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
        })
        .expect("inode table location");
    let blocks = debugfs_out(&img, "blocks /d3");
    let dblk: u64 = blocks
        .split_whitespace()
        .next()
        .and_then(|b| b.parse().ok())
        .expect("directory block");
    let mut f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
    use std::io::{Seek, SeekFrom};
    // Noise, not a pattern: nothing in it may look like valid metadata.
    let mut junk = vec![0u8; 4096 * 2];
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for b in junk.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = (x >> 24) as u8;
    }
    f.seek(SeekFrom::Start(itab * 4096 + 4096)).unwrap();
    f.write_all(&junk).unwrap();
    f.seek(SeekFrom::Start(dblk * 4096)).unwrap();
    f.write_all(&junk[..4096]).unwrap();
    drop(f);

    let pid = mount_ext2fs(&mut g, &img, &mnt, &["-o", "ro"]);
    // Walk and read everything under a time limit: errors are expected and
    // must be clear; a hang is a failure.
    let walk = |cmd: String| {
        let o = run(Command::new("timeout")
            .arg("30")
            .arg("sh")
            .arg("-c")
            .arg(&cmd));
        assert_ne!(
            o.status.code(),
            Some(124),
            "{cmd}: hung on the corrupt image"
        );
        o
    };
    let m = mnt.display();
    let ls = walk(format!("ls -lR '{m}' >/dev/null"));
    let cat = walk(format!("find '{m}' -type f -exec cat {{}} + >/dev/null"));
    let errs = format!("{}{}", stderr(&ls), stderr(&cat));
    eprintln!("errors reported on the corrupt image:\n{errs}");
    assert!(
        !ls.status.success() || !cat.status.success(),
        "no error at all from a corrupt image"
    );
    assert!(
        errs.contains("Input/output error")
            || errs.contains("Structure needs cleaning")
            || errs.contains("Inappropriate file type")
            || errs.contains("No such file"),
        "errors should name the reason: {errs}"
    );
    // The host mount still answers.
    assert!(std::fs::metadata(&mnt).unwrap().is_dir());
    assert!(std::fs::read_dir(&mnt).unwrap().count() > 0);
    assert!(process_alive(pid));
    umount_and_wait(&mnt, pid);
}
