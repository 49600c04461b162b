//! `cargo xtask <chore>`: the project's chores in one place.
//!
//! build              cargo build --workspace --release
//! test               the README's test command
//! bench [PART]       benchmarks: hypercall, sysproxy, cache, kernel, halt, ext2, fuse (default: all)
//! demo               the README's main job: serve an image, write, halt, check
//! install [--prefix DIR]   rump_server, rump.halt (and rump_halt), rumpctl, rump_ext2fs,
//!                    rump_mount and its names (rump_ffs, rump_msdos, ...),
//!                    lib/librumpuser.so.0 and the manual pages (man1, man8);
//!                    stripped, debug info in lib/debug

use std::path::{Path, PathBuf};
use std::process::{exit, Command};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let chore = args.first().map(String::as_str).unwrap_or("help");
    let rest = &args[args.len().min(1)..];
    let r = match chore {
        "build" => cargo(&["build", "--workspace", "--release"]),
        "test" => cargo(&["test", "--workspace"]),
        "bench" => bench(rest),
        "demo" => demo(),
        "install" => install(rest),
        _ => {
            eprintln!("usage: cargo xtask build|test|bench [hypercall|sysproxy|cache|kernel|halt|ext2|fuse]|demo|install [--prefix DIR]");
            exit(1)
        }
    };
    if let Err(e) = r {
        eprintln!("xtask {chore}: {e}");
        exit(1);
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn cargo(args: &[&str]) -> Result<(), String> {
    run(Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())).args(args))
}

fn run(cmd: &mut Command) -> Result<(), String> {
    cmd.current_dir(root());
    let st = cmd.status().map_err(|e| format!("{cmd:?}: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?}: {st}"))
    }
}

/// Each benchmark is a harness=false bench binary of its crate; it prints
/// its own ratios against a floor measured in the same run (docs/design.md,
/// "Measuring").
const BENCHES: &[(&str, &str, &str)] = &[
    ("hypercall", "rumpuser", "hypercall"),
    ("sysproxy", "rumpclient", "sysproxy"),
    ("cache", "vfs-cache", "cache"),
    ("kernel", "rumprun", "kernel"),
    ("halt", "rumprun", "halt"),
    ("ext2", "rumprun", "ext2"),
    ("fuse", "rumprun", "fuse"),
    // The floor, rump_ext2fs, NetBSD's FFS in process and through
    // sysproxy (needs RUMP_NETBSD_DIR for the NetBSD rows).
    ("fuse", "netbsd-fs", "fuse"),
];

fn bench(rest: &[String]) -> Result<(), String> {
    let want = rest.first().map(String::as_str);
    let mut ran = false;
    for (name, pkg, bench) in BENCHES {
        if want.is_some_and(|w| w != *name) {
            continue;
        }
        ran = true;
        println!("== bench {name}");
        cargo(&["bench", "-p", pkg, "--bench", bench])?;
    }
    if !ran {
        return Err(format!("unknown benchmark {:?}", want.unwrap_or("")));
    }
    Ok(())
}

fn demo() -> Result<(), String> {
    cargo(&["build", "--release", "-p", "rumprun"])?;
    run(Command::new("bash")
        .arg(root().join("scripts/demo.sh"))
        .env("BIN", root().join("target/release")))
}

fn install(rest: &[String]) -> Result<(), String> {
    let prefix = match rest {
        [] => PathBuf::from("/usr/local"),
        [flag, dir] if flag == "--prefix" => PathBuf::from(dir),
        _ => return Err("usage: cargo xtask install [--prefix DIR]".into()),
    };
    // An absolute prefix: the symlinks and messages name real places.
    let prefix = if prefix.is_absolute() {
        prefix
    } else {
        std::env::current_dir()
            .map_err(|e| format!("current directory: {e}"))?
            .join(prefix)
    };
    cargo(&[
        "build",
        "--release",
        "-p",
        "rumprun",
        "-p",
        "rumpuser",
        "-p",
        "netbsd-fs",
    ])?;
    let bin = prefix.join("bin");
    let lib = prefix.join("lib");
    let debug = lib.join("debug");
    let man1 = prefix.join("share/man/man1");
    let man8 = prefix.join("share/man/man8");
    for d in [&bin, &lib, &debug, &man1] {
        std::fs::create_dir_all(d).map_err(|e| format!("mkdir {}: {e}", d.display()))?;
    }
    let rel = root().join("target/release");
    // Programs and the library: stripped, their debug info kept apart
    // under lib/debug (gdb: set debug-file-directory PREFIX/lib/debug).
    for name in [
        "rump_server",
        "rump_halt",
        "rumpctl",
        "rump_ext2fs",
        "rump_mount",
    ] {
        install_stripped(&rel.join(name), &bin.join(name), &debug, 0o755)?;
    }
    install_stripped(
        &rel.join("librumpuser.so"),
        &lib.join("librumpuser.so.0"),
        &debug,
        0o755,
    )?;
    // Cargo cannot name a binary "rump.halt": the link gives it that name
    // (the program names itself after argv[0]).
    symlink("rump_halt", &bin.join("rump.halt"))?;
    symlink("librumpuser.so.0", &lib.join("librumpuser.so"))?;
    // rump_mount takes the file system type from its name, as NetBSD's
    // rump_ffs, rump_msdos, ... are named.
    for name in RUMP_MOUNT_NAMES {
        symlink("rump_mount", &bin.join(name))?;
    }
    // Manual pages.
    let man = root().join("runtime/man");
    for page in ["rump_server.1", "rumpctl.1", "rump.halt.1"] {
        copy(&man.join(page), &man1.join(page), 0o644)?;
    }
    symlink("rump.halt.1", &man1.join("rump_halt.1"))?;
    let ext2fs = man.join("rump_ext2fs.8");
    if ext2fs.exists() {
        std::fs::create_dir_all(&man8).map_err(|e| format!("mkdir {}: {e}", man8.display()))?;
        copy(&ext2fs, &man8.join("rump_ext2fs.8"), 0o644)?;
    }
    std::fs::create_dir_all(&man8).map_err(|e| format!("mkdir {}: {e}", man8.display()))?;
    copy(&man.join("rump_mount.8"), &man8.join("rump_mount.8"), 0o644)?;
    for name in RUMP_MOUNT_NAMES {
        symlink("rump_mount.8", &man8.join(format!("{name}.8")))?;
    }
    Ok(())
}

/// NetBSD's names for rump_mount, one per file system type.
const RUMP_MOUNT_NAMES: [&str; 11] = [
    "rump_ffs",
    "rump_lfs",
    "rump_msdos",
    "rump_cd9660",
    "rump_udf",
    "rump_ntfs",
    "rump_v7fs",
    "rump_sysvbfs",
    "rump_efs",
    "rump_hfs",
    "rump_tmpfs",
];

/// Replace `to` (a file or link, perhaps a running program) with a copy of
/// `from` with mode `mode`.
fn copy(from: &Path, to: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let tmp = to.with_extension("xtask-new");
    let _ = std::fs::remove_file(&tmp);
    std::fs::copy(from, &tmp)
        .map_err(|e| format!("install {} {}: {e}", from.display(), to.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, to)
        .map_err(|e| format!("rename {} {}: {e}", tmp.display(), to.display()))?;
    println!("installed {}", to.display());
    Ok(())
}

fn symlink(target: &str, link: &Path) -> Result<(), String> {
    let _ = std::fs::remove_file(link);
    std::os::unix::fs::symlink(target, link)
        .map_err(|e| format!("ln -s {target} {}: {e}", link.display()))?;
    println!("installed {} -> {target}", link.display());
    Ok(())
}

/// The GNU build id of an ELF file, as hex (from `readelf -n`).
fn build_id(file: &Path) -> Option<String> {
    let o = Command::new("readelf").arg("-n").arg(file).output().ok()?;
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    text.lines().find_map(|l| {
        l.trim()
            .strip_prefix("Build ID: ")
            .map(|s| s.trim().to_string())
    })
}

/// Install `from` as `to`, stripped; its debug information goes to
/// `debug/.build-id/xx/rest.debug` (found by gdb through the build id)
/// with a `.gnu_debuglink` to it.
fn install_stripped(from: &Path, to: &Path, debug: &Path, mode: u32) -> Result<(), String> {
    let tool = |name: &str, args: &[&std::ffi::OsStr]| -> Result<(), String> {
        let o = Command::new(name)
            .args(args)
            .output()
            .map_err(|e| format!("{name}: {e} (install binutils)"))?;
        if o.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{name} {args:?}: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ))
        }
    };
    let name = to
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let work = to.with_extension("xtask-strip");
    let dbg_tmp = to.with_extension("xtask-debug");
    let _ = std::fs::remove_file(&work);
    std::fs::copy(from, &work)
        .map_err(|e| format!("install {} {}: {e}", from.display(), to.display()))?;
    tool(
        "objcopy",
        &[
            "--only-keep-debug".as_ref(),
            work.as_os_str(),
            dbg_tmp.as_os_str(),
        ],
    )?;
    let dbg = match build_id(&work) {
        Some(id) if id.len() > 2 => {
            let d = debug.join(".build-id").join(&id[..2]);
            std::fs::create_dir_all(&d).map_err(|e| format!("mkdir {}: {e}", d.display()))?;
            d.join(format!("{}.debug", &id[2..]))
        }
        _ => debug.join(format!("{name}.debug")),
    };
    std::fs::rename(&dbg_tmp, &dbg)
        .map_err(|e| format!("rename {} {}: {e}", dbg_tmp.display(), dbg.display()))?;
    // Strip the debug sections and the static symbol table; the dynamic
    // symbols (rump_server's exported hypercalls, the library's entry
    // points) stay.
    tool("strip", &["--strip-all".as_ref(), work.as_os_str()])?;
    let link = format!("--add-gnu-debuglink={}", dbg.display());
    tool("objcopy", &[link.as_ref(), work.as_os_str()])?;
    copy(&work, to, mode)?;
    let _ = std::fs::remove_file(&work);
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    println!(
        "  {} bytes (was {}); debug info: {}",
        size(to),
        size(from),
        dbg.display()
    );
    Ok(())
}
