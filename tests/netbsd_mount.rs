//! `rumpctl mount -t TYPE [-o options] special dir` against `rump_server
//! -l` hosting NetBSD's file systems, `rumpctl mount` listing the mounts,
//! `rumpctl fuse` and `rump.halt` (docs/netbsd.md).
//!
//! Needs a buildrump.sh build of NetBSD's components named by
//! `RUMP_NETBSD_DIR`; `#[ignore = "needs RUMP_NETBSD_DIR"]` otherwise
//! (reported as ignored, never as passed). Needs `makefs`, `mkfs.vfat`
//! (`dosfstools`), `mtools`, `mkudffs` (`udftools`), and `/dev/fuse` for
//! `rumpctl fuse`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use testkit::netbsd::require_destdir;
use testkit::proc::{is_mounted, wait_gone};
use testkit::tools::{require_tool, run_ok};

const RUMP_SERVER: &str = env!("CARGO_BIN_EXE_rump_server");
const RUMP_HALT: &str = env!("CARGO_BIN_EXE_rump_halt");
const RUMPCTL: &str = env!("CARGO_BIN_EXE_rumpctl");

/// The file to load for component `name`: `lib/libNAME.so`, with the
/// small text files a copied destdir may hold instead of symlinks
/// followed.
fn component(nb: &Path, name: &str) -> PathBuf {
    let mut p = nb.join("lib").join(format!("lib{name}.so"));
    for _ in 0..4 {
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            break;
        };
        if !m.is_file() || m.len() > 255 {
            break;
        }
        let t = std::fs::read(&p).unwrap();
        if t.starts_with(b"\x7fELF") {
            break;
        }
        let t = String::from_utf8_lossy(&t).trim().to_string();
        p = p.with_file_name(t);
    }
    assert!(p.exists(), "{}: missing", p.display());
    p
}

/// The rump_server process serving `url` (its command line ends in it).
fn server_pid(url: &str) -> Option<i32> {
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let mut args = cmd.split(|&b| b == 0).filter(|a| !a.is_empty());
        if args.next().is_some_and(|a| a.ends_with(b"rump_server"))
            && args.any(|a| a == url.as_bytes())
        {
            return Some(pid);
        }
    }
    None
}

/// Kills the server and takes the FUSE mount away if a test fails.
struct Cleanup {
    url: String,
    mnt: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.mnt)
            .stderr(Stdio::null())
            .status();
        if let Some(pid) = server_pid(&self.url) {
            // SAFETY: kill has no memory preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// An FFS v2 image of `size` (makefs's syntax) holding `src`, in `dir`.
fn ffs_image(dir: &Path, src: &Path, size: &str) -> PathBuf {
    let ffs = dir.join("ffs.img");
    run_ok(
        Command::new(require_tool("makefs"))
            .args(["-t", "ffs", "-s", size, "-o", "version=2"])
            .arg(&ffs)
            .arg(src),
    );
    ffs
}

/// A server URL (a socket in `dir`) and a mount point, with the guard
/// that halts the server and unmounts when the test ends.
fn server_and_mount_point(dir: &Path) -> (String, PathBuf, Cleanup) {
    let url = format!("unix://{}", dir.join("sock").display());
    let mnt = dir.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let c = Cleanup {
        url: url.clone(),
        mnt: mnt.clone(),
    };
    (url, mnt, c)
}

#[test]
#[ignore = "needs RUMP_NETBSD_DIR"]
fn rumpctl_mount_ffs_msdos_udf_then_fuse_and_halt() {
    let nb = require_destdir("tests/netbsd_mount.rs");
    let d = testkit::tmp::tmpdir("netbsd_mount.");
    let dir = d.path();
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("Hello.txt"), b"hello from ffs\n").unwrap();
    std::fs::write(src.join("sub/Data.bin"), vec![7u8; 100_000]).unwrap();
    let ffs = ffs_image(dir, &src, "16m");
    let fat = dir.join("fat.img");
    run_ok(
        Command::new(require_tool("mkfs.vfat"))
            .args(["-C", "-F", "32"])
            .arg(&fat)
            .arg("65536"),
    );
    let udf = dir.join("udf.img");
    run_ok(Command::new("truncate").arg("-s").arg("32M").arg(&udf));
    run_ok(
        Command::new(require_tool("mkudffs"))
            .args(["-b", "512", "--media-type=hd"])
            .arg(&udf),
    );
    let four: Vec<u8> = (0..4u32 << 20).map(|i| (i % 253) as u8).collect();
    std::fs::write(dir.join("four.bin"), &four).unwrap();

    let (url, mnt, _c) = server_and_mount_point(dir);
    let mut server = Command::new(RUMP_SERVER);
    for c in [
        "rump",
        "rumpkern_sysproxy",
        "rumpvfs",
        "rumpdev",
        "rumpdev_disk",
        "rumpfs_ffs",
        "rumpfs_msdos",
        "rumpfs_udf",
    ] {
        server.arg("-l").arg(component(&nb, c));
    }
    server
        .arg("-d")
        .arg(format!("key=/dk,hostpath={},size=host", ffs.display()))
        .arg("-d")
        .arg(format!("key=/dk2,hostpath={},size=host", fat.display()))
        .arg("-d")
        .arg(format!("key=/dk3,hostpath={},size=host", udf.display()))
        .arg(&url);
    let st = server.status().unwrap();
    assert!(st.success(), "rump_server: {st}");
    let pid = server_pid(&url).expect("the rump_server process");

    let ctl = |args: &[&str]| -> Output {
        Command::new(RUMPCTL)
            .args(args)
            .env("RUMP_SERVER", &url)
            .output()
            .unwrap()
    };
    let ok = |args: &[&str]| -> String {
        let o = ctl(args);
        assert!(
            o.status.success(),
            "rumpctl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    ok(&["mkdir", "/ffs", "/fat", "/udf"]);
    ok(&["mount", "-t", "ffs", "-o", "noatime", "/dk", "/ffs"]);
    ok(&[
        "mount",
        "-t",
        "msdos",
        "-o",
        "uid=1000,mask=640",
        "/dk2",
        "/fat",
    ]);
    ok(&["mount", "-t", "udf", "/dk3", "/udf"]);
    ok(&[
        "put",
        dir.join("four.bin").to_str().unwrap(),
        "/udf/four.bin",
    ]);
    let list = ok(&["mount"]);
    assert!(
        list.contains("/dk on /ffs type ffs (noatime, local)"),
        "{list}"
    );
    assert!(list.contains("/dk2 on /fat type msdos (local)"), "{list}");
    let ls = ok(&["ls", "/ffs"]);
    assert!(ls.contains("Hello.txt") && ls.contains("sub"), "{ls}");
    ok(&[
        "put",
        src.join("Hello.txt").to_str().unwrap(),
        "/fat/Copied.txt",
    ]);
    let ls = ok(&["ls", "-l", "/fat"]);
    assert!(ls.contains("Copied.txt") && ls.contains("1000"), "{ls}");

    // Errors name the option or type.
    let o = ctl(&["mount", "-t", "msdos", "-o", "norrip", "/dk2", "/fat"]);
    assert!(!o.status.success());
    assert_eq!(
        String::from_utf8_lossy(&o.stderr).trim(),
        "rumpctl: mount /dk2 on /fat: norrip: unknown option for msdos"
    );
    let o = ctl(&["mount", "-t", "nonesuch", "/dk2", "/fat"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("nonesuch: unknown file system type"));

    // The whole tree on the host through FUSE.
    let st = Command::new(RUMPCTL)
        .args(["fuse"])
        .arg(&mnt)
        .env("RUMP_SERVER", &url)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    assert!(is_mounted(&mnt));
    assert_eq!(
        std::fs::read(mnt.join("ffs/Hello.txt")).unwrap(),
        b"hello from ffs\n"
    );
    run_ok(
        Command::new("diff")
            .arg("-r")
            .arg(src.join("sub"))
            .arg(mnt.join("ffs/sub")),
    );
    std::fs::write(
        mnt.join("fat/Through FUSE.txt"),
        b"fuse -> sysproxy -> msdosfs\n",
    )
    .unwrap();
    // 4 MiB to and from NetBSD's UDF through FUSE and sysproxy (rumpctl
    // fuse hands the server no read or write above NetBSD's MAXPHYS).
    assert!(std::fs::read(mnt.join("udf/four.bin")).unwrap() == four);
    run_ok(
        Command::new("dd")
            .arg(format!("if={}", dir.join("four.bin").display()))
            .arg(format!("of={}", mnt.join("udf/again.bin").display()))
            .args(["bs=1M", "conv=fsync", "status=none"]),
    );
    assert!(std::fs::read(mnt.join("udf/again.bin")).unwrap() == four);
    run_ok(Command::new("umount").arg(&mnt));

    // rump.halt: NetBSD's reboot path syncs and unmounts; the server ends.
    run_ok(Command::new(RUMP_HALT).env("RUMP_SERVER", &url));
    wait_gone("rump_server", pid, Duration::from_secs(60));
    let out = run_ok(
        Command::new(require_tool("mtype"))
            .arg("-i")
            .arg(&fat)
            .arg("::/Through FUSE.txt"),
    );
    assert_eq!(out.stdout, b"fuse -> sysproxy -> msdosfs\n");
    let out = run_ok(
        Command::new(require_tool("mtype"))
            .arg("-i")
            .arg(&fat)
            .arg("::/Copied.txt"),
    );
    assert_eq!(out.stdout, b"hello from ffs\n");
}

/// A NetBSD disklabel (sys/sys/disklabel.h, little-endian, as amd64
/// writes it) with `parts` as (offset, size) in 512-byte sectors: the
/// bytes to put at sector 1 of an image.
fn netbsd_label(parts: &[(u32, u32)]) -> Vec<u8> {
    const DISKMAGIC: u32 = 0x8256_4557;
    let mut b = vec![0u8; 148 + 16 * parts.len()];
    b[0..4].copy_from_slice(&DISKMAGIC.to_le_bytes()); // d_magic
    b[8..13].copy_from_slice(b"image"); // d_typename
    b[40..44].copy_from_slice(&512u32.to_le_bytes()); // d_secsize
    b[132..136].copy_from_slice(&DISKMAGIC.to_le_bytes()); // d_magic2
    b[138..140].copy_from_slice(&(parts.len() as u16).to_le_bytes()); // d_npartitions
    b[140..144].copy_from_slice(&8192u32.to_le_bytes()); // d_bbsize
    for (i, (off, size)) in parts.iter().enumerate() {
        let e = 148 + 16 * i;
        b[e..e + 4].copy_from_slice(&size.to_le_bytes()); // p_size
        b[e + 4..e + 8].copy_from_slice(&off.to_le_bytes()); // p_offset
        b[e + 12] = 7; // p_fstype: FS_BSDFFS
    }
    // d_checksum: the XOR of all 16-bit words through the partitions is 0.
    let sum = b
        .chunks(2)
        .fold(0u16, |s, w| s ^ u16::from_le_bytes([w[0], w[1]]));
    b[136..138].copy_from_slice(&sum.to_le_bytes());
    b
}

/// `rump_server -l` by component name (`rumpvfs`, `librumpdev.so`)
/// found under `RUMP_NETBSD_DIR/lib` with no `LD_LIBRARY_PATH`, and by
/// path; a drive given as partition `e` of a NetBSD disklabel; a UDF
/// image with 2048-byte sectors (`sectorsize=2048`) on a second server;
/// a missing library named in one line that says how to point at a
/// build.
#[test]
#[ignore = "needs RUMP_NETBSD_DIR"]
fn rump_server_finds_components_by_name_and_takes_disklabel_and_sectorsize() {
    let nb = require_destdir("tests/netbsd_mount.rs");
    let d = testkit::tmp::tmpdir("netbsd_mount.");
    let dir = d.path();
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("In-e.txt"), b"partition e\n").unwrap();
    let ffs = ffs_image(dir, &src, "8m");
    // A 24 MiB disk: the label in sector 1, partition a (unused) from
    // sector 64, partition e (the FFS image) from 8 MiB, c the whole disk.
    let disk = dir.join("disk.img");
    let mut img = vec![0u8; 24 << 20];
    let label = netbsd_label(&[(64, 4096), (0, 0), (0, 49152), (0, 0), (16384, 16384)]);
    img[512..512 + label.len()].copy_from_slice(&label);
    let f = std::fs::read(&ffs).unwrap();
    img[8 << 20..(8 << 20) + f.len()].copy_from_slice(&f);
    std::fs::write(&disk, &img).unwrap();

    let (url, mnt, _c) = server_and_mount_point(dir);
    let server = |args: &[&str]| {
        Command::new(RUMP_SERVER)
            .args(args)
            .env("RUMP_NETBSD_DIR", &nb)
            .env_remove("LD_LIBRARY_PATH")
            .output()
            .unwrap()
    };
    let ffs_lib = component(&nb, "rumpfs_ffs");
    let spec = format!("key=/dk,hostpath={},disklabel=e", disk.display());
    let o = server(&[
        "-l",
        "rumpvfs",
        "-l",
        "librumpdev.so",
        "-l",
        "rumpdev_disk",
        "-l",
        ffs_lib.to_str().unwrap(),
        "-d",
        &spec,
        &url,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ctl = |url: &str, args: &[&str]| -> String {
        let o = Command::new(RUMPCTL)
            .args(args)
            .env("RUMP_SERVER", url)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "rumpctl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    ctl(&url, &["mkdir", "/e"]);
    ctl(&url, &["mount", "-t", "ffs", "/dk", "/e"]);
    assert_eq!(ctl(&url, &["cat", "/e/In-e.txt"]), "partition e\n");
    ctl(&url, &["put", "/dev/null", "/e/Written"]);
    let pid = server_pid(&url).expect("the rump_server process");
    run_ok(Command::new(RUMP_HALT).env("RUMP_SERVER", &url));
    wait_gone("rump_server", pid, Duration::from_secs(60));
    // The write landed inside partition e, and the sectors before it
    // (the label, partition a) are as they were.
    let after = std::fs::read(&disk).unwrap();
    assert_eq!(after[..8 << 20], img[..8 << 20]);
    assert_ne!(after[8 << 20..16 << 20], img[8 << 20..16 << 20]);
    assert_eq!(after[16 << 20..], img[16 << 20..]);

    // UDF with 2048-byte sectors; every sectorsize= must agree.
    let udf = dir.join("udf.img");
    run_ok(Command::new("truncate").arg("-s").arg("32M").arg(&udf));
    run_ok(
        Command::new(require_tool("mkudffs"))
            .args(["-b", "2048", "--media-type=hd"])
            .arg(&udf),
    );
    let url2 = format!("unix://{}", dir.join("sock2").display());
    let _c2 = Cleanup {
        url: url2.clone(),
        mnt: mnt.clone(),
    };
    let udf_spec = format!(
        "key=/cd,hostpath={},size=host,sectorsize=2048",
        udf.display()
    );
    let other = format!(
        "key=/x,hostpath={},size=1m,sectorsize=512",
        dir.join("x").display()
    );
    let libs = [
        "-l",
        "rumpvfs",
        "-l",
        "rumpdev",
        "-l",
        "rumpdev_disk",
        "-l",
        "rumpfs_udf",
    ];
    let mut args: Vec<&str> = libs.to_vec();
    args.extend(["-d", &udf_spec, "-d", &other, &url2]);
    let o = server(&args);
    assert!(!o.status.success());
    assert_eq!(
        String::from_utf8_lossy(&o.stderr).trim(),
        "rump_server: drive /x: sectorsize=512, but the kernel's drives have 2048-byte sectors (one sector size for all drives)"
    );
    let mut args: Vec<&str> = libs.to_vec();
    args.extend(["-d", &udf_spec, &url2]);
    let o = server(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    ctl(&url2, &["mkdir", "/udf"]);
    ctl(&url2, &["mount", "-t", "udf", "/cd", "/udf"]);
    ctl(
        &url2,
        &[
            "put",
            src.join("In-e.txt").to_str().unwrap(),
            "/udf/copy.txt",
        ],
    );
    assert_eq!(ctl(&url2, &["cat", "/udf/copy.txt"]), "partition e\n");
    let pid2 = server_pid(&url2).expect("the second rump_server");
    run_ok(Command::new(RUMP_HALT).env("RUMP_SERVER", &url2));
    wait_gone("rump_server", pid2, Duration::from_secs(60));
    let info = run_ok(Command::new(require_tool("udfinfo")).arg(&udf));
    assert!(String::from_utf8_lossy(&info.stdout).contains("numfiles=1"));

    // A missing component: one line naming it, and how to point at a build.
    let o = server(&["-l", "rumpvfs", "-l", "rumpfs_nonesuch", &url2]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("rump_server: cannot load NetBSD component library: -l rumpfs_nonesuch: librumpfs_nonesuch.so: ")
            && err.contains(&format!("(not in {})", nb.join("lib").display()))
            && err.trim_end().ends_with("set RUMP_NETBSD_DIR to a buildrump.sh destdir (its lib/ holds librump*.so), or give the libraries' paths"),
        "{err}"
    );
}
