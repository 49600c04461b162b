//! `cargo xtask <chore>`: the project's chores in one place.
//!
//! build              cargo build --workspace --release
//! test               the README's test command
//! bench [PART]       benchmarks: hypercall, sysproxy, cache, kernel, halt, ext2, fuse (default: all)
//! demo               the README's main job: serve an image, write, halt, check
//! install [--prefix DIR]   rump_server, rump.halt (and rump_halt), rumpctl

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
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
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
/// its own ratios against a floor measured in the same run (SPEC §11).
const BENCHES: &[(&str, &str, &str)] = &[
    ("hypercall", "hypercall", "hypercall"),
    ("sysproxy", "rumpclient", "sysproxy"),
    ("cache", "vfs-cache", "cache"),
    ("kernel", "runtime", "kernel"),
    ("halt", "runtime", "halt"),
    ("ext2", "runtime", "ext2"),
    ("fuse", "runtime", "fuse"),
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
    cargo(&["build", "--release", "-p", "runtime"])?;
    run(Command::new("bash").arg(root().join("scripts/demo.sh")).env("BIN", root().join("target/release")))
}

fn install(rest: &[String]) -> Result<(), String> {
    let prefix = match rest {
        [] => PathBuf::from("/usr/local"),
        [flag, dir] if flag == "--prefix" => PathBuf::from(dir),
        _ => return Err("usage: cargo xtask install [--prefix DIR]".into()),
    };
    cargo(&["build", "--release", "-p", "runtime", "-p", "hypercall"])?;
    let bin = prefix.join("bin");
    let lib = prefix.join("lib");
    for d in [&bin, &lib] {
        std::fs::create_dir_all(d).map_err(|e| format!("mkdir {}: {e}", d.display()))?;
    }
    let rel = root().join("target/release");
    // Cargo cannot name a binary "rump.halt": install rump_halt under both names.
    let copies: &[(&str, &Path, &str)] = &[
        ("rump_server", &bin, "rump_server"),
        ("rump_halt", &bin, "rump_halt"),
        ("rump_halt", &bin, "rump.halt"),
        ("rumpctl", &bin, "rumpctl"),
        ("rump_ext2fs", &bin, "rump_ext2fs"),
        ("librumpuser.so", &lib, "librumpuser.so"),
    ];
    for (src, dir, name) in copies {
        let from = rel.join(src);
        let to = dir.join(name);
        std::fs::copy(&from, &to).map_err(|e| format!("install {} {}: {e}", from.display(), to.display()))?;
        println!("installed {}", to.display());
    }
    Ok(())
}
