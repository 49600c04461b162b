//! `rumpctl mount -t TYPE [-o options] special dir` against `rump_server
//! -l` hosting NetBSD's file systems, `rumpctl mount` listing the mounts,
//! `rumpctl fuse` and `rump.halt` (issue 21).
//!
//! Needs a buildrump.sh build of NetBSD's components named by
//! `RUMP_NETBSD_DIR`; `#[ignore = "needs RUMP_NETBSD_DIR"]` otherwise
//! (reported as ignored, never as passed). Needs `makefs`, `mkfs.vfat`
//! (`dosfstools`), `mtools`, `mkudffs` (`udftools`), and `/dev/fuse` for
//! `rumpctl fuse`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const RUMP_SERVER: &str = env!("CARGO_BIN_EXE_rump_server");
const RUMP_HALT: &str = env!("CARGO_BIN_EXE_rump_halt");
const RUMPCTL: &str = env!("CARGO_BIN_EXE_rumpctl");

fn netbsd_dir() -> PathBuf {
    let d = std::env::var_os("RUMP_NETBSD_DIR")
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| {
            panic!(
                "RUMP_NETBSD_DIR is not set: this test needs a buildrump.sh destdir \
                 (see docs/netbsd.md)"
            )
        });
    PathBuf::from(d)
}

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

fn tool(name: &str, package: &str) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    for d in path.split(':').chain(["/usr/sbin", "/sbin"]) {
        let p = Path::new(d).join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("{name}: not found: install the {package} package");
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn is_mounted(mnt: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == mnt.to_str())
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
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        if let Some(pid) = server_pid(&self.url) {
            // SAFETY: kill has no memory preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

#[test]
#[ignore = "needs RUMP_NETBSD_DIR"]
fn rumpctl_mount_ffs_msdos_udf_then_fuse_and_halt() {
    let nb = netbsd_dir();
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("Hello.txt"), b"hello from ffs\n").unwrap();
    std::fs::write(src.join("sub/Data.bin"), vec![7u8; 100_000]).unwrap();
    let ffs = dir.join("ffs.img");
    run(Command::new(tool("makefs", "makefs"))
        .args(["-t", "ffs", "-s", "16m", "-o", "version=2"])
        .arg(&ffs)
        .arg(&src));
    let fat = dir.join("fat.img");
    run(Command::new(tool("mkfs.vfat", "dosfstools"))
        .args(["-C", "-F", "32"])
        .arg(&fat)
        .arg("65536"));
    let udf = dir.join("udf.img");
    run(Command::new("truncate").arg("-s").arg("32M").arg(&udf));
    run(Command::new(tool("mkudffs", "udftools"))
        .args(["-b", "512", "--media-type=hd"])
        .arg(&udf));
    let four: Vec<u8> = (0..4u32 << 20).map(|i| (i % 253) as u8).collect();
    std::fs::write(dir.join("four.bin"), &four).unwrap();

    let sock = dir.join("sock");
    let url = format!("unix://{}", sock.display());
    let mnt = dir.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let _c = Cleanup {
        url: url.clone(),
        mnt: mnt.clone(),
    };
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
    run(Command::new("diff")
        .arg("-r")
        .arg(src.join("sub"))
        .arg(mnt.join("ffs/sub")));
    std::fs::write(
        mnt.join("fat/Through FUSE.txt"),
        b"fuse -> sysproxy -> msdosfs\n",
    )
    .unwrap();
    // 4 MiB to and from NetBSD's UDF through FUSE and sysproxy (rumpctl
    // fuse hands the server no read or write above NetBSD's MAXPHYS).
    assert!(std::fs::read(mnt.join("udf/four.bin")).unwrap() == four);
    run(Command::new("dd")
        .arg(format!("if={}", dir.join("four.bin").display()))
        .arg(format!("of={}", mnt.join("udf/again.bin").display()))
        .args(["bs=1M", "conv=fsync", "status=none"]));
    assert!(std::fs::read(mnt.join("udf/again.bin")).unwrap() == four);
    run(Command::new("umount").arg(&mnt));

    // rump.halt: NetBSD's reboot path syncs and unmounts; the server ends.
    run(Command::new(RUMP_HALT).env("RUMP_SERVER", &url));
    let t0 = Instant::now();
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(t0.elapsed() < Duration::from_secs(60), "server still up");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = run(Command::new(tool("mtype", "mtools"))
        .arg("-i")
        .arg(&fat)
        .arg("::/Through FUSE.txt"));
    assert_eq!(out.stdout, b"fuse -> sysproxy -> msdosfs\n");
    let out = run(Command::new(tool("mtype", "mtools"))
        .arg("-i")
        .arg(&fat)
        .arg("::/Copied.txt"));
    assert_eq!(out.stdout, b"hello from ffs\n");
}
