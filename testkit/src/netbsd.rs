//! NetBSD's prebuilt rump kernel (a `buildrump.sh` destdir named by
//! `RUMP_NETBSD_DIR`, see docs/netbsd.md) as tests and benchmarks use it:
//! the destdir made usable when its library symlinks were copied as text
//! files, and C programs of our own built against its `librumpclient`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The destdir `RUMP_NETBSD_DIR` names, as it is (not made usable: for
/// a test of a program that handles a copied destdir itself). A test
/// that calls this needs it: unset, or not a destdir, is a failure
/// naming `test` and the reason (such tests are `#[ignore]`d, so only an
/// explicit `--ignored` run gets here).
pub fn require_destdir(test: &str) -> PathBuf {
    let Some(d) = std::env::var_os("RUMP_NETBSD_DIR").filter(|d| !d.is_empty()) else {
        panic!(
            "{test}: RUMP_NETBSD_DIR is not set: this test needs a buildrump.sh destdir with lib/ \
             (see docs/netbsd.md)"
        );
    };
    let d = PathBuf::from(d);
    assert!(
        d.join("lib/librump.so").exists(),
        "{test}: RUMP_NETBSD_DIR={} has no lib/librump.so: not a buildrump.sh destdir",
        d.display()
    );
    d
}

/// [`require_destdir`] made usable (see [`usable_destdir`]), with a
/// shadow under `shadow_root` if need be.
pub fn require_usable_destdir(test: &str, shadow_root: &Path) -> PathBuf {
    usable_destdir(&require_destdir(test), shadow_root)
}

/// The destdir `RUMP_NETBSD_DIR` names, usable (see [`usable_destdir`]),
/// or `None` when unset or empty.
pub fn destdir(shadow_root: &Path) -> Option<PathBuf> {
    let d = std::env::var_os("RUMP_NETBSD_DIR").filter(|d| !d.is_empty())?;
    Some(usable_destdir(Path::new(&d), shadow_root))
}

/// The target a library "symlink" copied as a small text file names
/// (`librump.so` holding `librump.so.0.0`), if `p` is one.
fn stub_target(p: &Path) -> Option<String> {
    let m = std::fs::symlink_metadata(p).ok()?;
    if !m.is_file() || m.len() == 0 || m.len() > 255 {
        return None;
    }
    let t = std::fs::read_to_string(p).ok()?;
    let t = t.trim();
    (!t.contains('/') && !t.is_empty() && p.with_file_name(t).is_file()).then(|| t.to_string())
}

/// A copy of a destdir may hold its library symlinks as small text files
/// naming the target, which the dynamic loader and the linker cannot use.
/// Then build, once per process, a shadow destdir of real symlinks under
/// `shadow_root` (the original may be read-only) and return that;
/// otherwise `d` itself.
pub fn usable_destdir(d: &Path, shadow_root: &Path) -> PathBuf {
    static SHADOW: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    if stub_target(&d.join("lib/librump.so")).is_none() {
        return d.to_path_buf();
    }
    let r = SHADOW.get_or_init(|| {
        let name: String = d
            .display()
            .to_string()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let shadow = shadow_root.join(format!("netbsd-destdir{name}"));
        let tmp = shadow.with_extension(format!("tmp{}", std::process::id()));
        let build = || -> std::io::Result<()> {
            let _ = std::fs::remove_dir_all(&tmp);
            std::fs::create_dir_all(tmp.join("lib"))?;
            for e in std::fs::read_dir(d)? {
                let e = e?;
                if e.file_name() != "lib" {
                    std::os::unix::fs::symlink(e.path(), tmp.join(e.file_name()))?;
                }
            }
            for e in std::fs::read_dir(d.join("lib"))? {
                let e = e?;
                let to = tmp.join("lib").join(e.file_name());
                match stub_target(&e.path()) {
                    Some(target) => std::os::unix::fs::symlink(target, to)?,
                    None => std::os::unix::fs::symlink(e.path(), to)?,
                }
            }
            Ok(())
        };
        build().map_err(|e| format!("shadow destdir {}: {e}", tmp.display()))?;
        if std::fs::rename(&tmp, &shadow).is_err() {
            // Another process made it first (or a stale one is there).
            let _ = std::fs::remove_dir_all(&shadow);
            if std::fs::rename(&tmp, &shadow).is_err() {
                let _ = std::fs::remove_dir_all(&tmp);
            }
        }
        Ok(shadow)
    });
    match r {
        Ok(p) => p.clone(),
        Err(e) => panic!(
            "RUMP_NETBSD_DIR={}: its library symlinks are text files and {e}",
            d.display()
        ),
    }
}

/// Compile `source` (C, our own) as `dir/name` against the destdir's
/// headers and `librumpclient`, with the library directory as its
/// run path.
pub fn build_client(nb: &Path, dir: &Path, name: &str, source: &str) -> PathBuf {
    let src = dir.join(format!("{name}.c"));
    let exe = dir.join(name);
    std::fs::write(&src, source).unwrap();
    let lib = nb.join("lib");
    let o = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-Wall", "-O1", "-o"])
        .arg(&exe)
        .arg(&src)
        .arg(format!("-I{}", nb.join("include").display()))
        .arg(format!("-L{}", lib.display()))
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-lrumpclient")
        .output()
        .expect("a C compiler (cc)");
    assert!(
        o.status.success(),
        "cc {name}.c: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    exe
}
