//! Host programs the tests run. A test that needs one calls
//! [`require_tool`] (or [`require_e2fsprogs`]): when the program is missing
//! the test fails with a message naming it and the package that provides
//! it. There is deliberately no `have_*() -> bool`: a test that quietly
//! returns early when its tool is absent would count as passed.

use std::path::PathBuf;
use std::process::{Command, Output};

/// Host program `name` in `PATH`, `/sbin` or `/usr/sbin` (where e2fsprogs
/// lives, often outside a user's `PATH`), if it is there. For callers that
/// choose between tools (a benchmark that also runs a peer when
/// installed); a test that needs the program uses [`require_tool`].
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = std::env::split_paths(&path).chain(["/sbin", "/usr/sbin"].map(PathBuf::from));
    dirs.find_map(|d| Some(d.join(name)).filter(|p| p.is_file()))
}

/// The Debian package that provides host program `name` (the name itself
/// when we do not know better).
pub fn package_of(name: &str) -> &str {
    match name {
        "mke2fs" | "mkfs.ext4" | "e2fsck" | "debugfs" | "tune2fs" | "dumpe2fs" => "e2fsprogs",
        "systemd-analyze" => "systemd",
        "gdb" => "gdb",
        "nm" | "readelf" | "objcopy" | "strip" => "binutils",
        "cc" => "gcc",
        "man" => "man-db",
        "fusermount3" => "fuse3",
        "mkfs.vfat" | "fsck.vfat" => "dosfstools",
        "mtype" | "mcopy" => "mtools",
        "mkudffs" | "udfinfo" => "udftools",
        "mkntfs" | "ntfsfix" => "ntfs-3g",
        "sfdisk" => "fdisk",
        "chattr" => "e2fsprogs",
        _ => name,
    }
}

/// Host program `name`, which this test needs. Panics when it is missing,
/// naming the program and the package to install (`.ci/run` installs
/// them all).
pub fn require_tool(name: &str) -> PathBuf {
    find_tool(name).unwrap_or_else(|| {
        panic!(
            "{name}: not found in PATH, /sbin or /usr/sbin: this test needs it (install {}; .ci/run does)",
            package_of(name)
        )
    })
}

/// `mke2fs`, `e2fsck` and `debugfs`, which this test needs: panics naming
/// the missing ones and e2fsprogs.
pub fn require_e2fsprogs() {
    let missing: Vec<&str> = ["mke2fs", "e2fsck", "debugfs"]
        .into_iter()
        .filter(|t| find_tool(t).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "{} not found in PATH, /sbin or /usr/sbin: this test needs them (install e2fsprogs; .ci/run does)",
        missing.join(", ")
    );
}

/// Run `cmd` to completion; its output. Panics, showing the command, its
/// status and both outputs, unless it exited with status 0.
pub fn run_ok(cmd: &mut Command) -> Output {
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

/// `Command::new` for a [`require_tool`].
pub fn host_cmd(name: &str) -> Command {
    Command::new(require_tool(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tool_fails_naming_program_and_package() {
        let e = std::panic::catch_unwind(|| require_tool("no-such-tool-here.x"))
            .expect_err("a missing tool must fail the test");
        let msg = e
            .downcast_ref::<String>()
            .expect("panic message is a String");
        assert!(msg.contains("no-such-tool-here.x"), "{msg}");
        assert!(msg.contains("install no-such-tool-here.x"), "{msg}");
        assert_eq!(package_of("debugfs"), "e2fsprogs");
        assert_eq!(package_of("mkudffs"), "udftools");
    }

    #[test]
    fn sh_is_found() {
        assert!(require_tool("sh").is_file());
    }

    #[test]
    fn run_ok_fails_on_a_nonzero_status() {
        assert!(run_ok(host_cmd("sh").args(["-c", "echo hi"])).stdout == b"hi\n");
        let e =
            std::panic::catch_unwind(|| run_ok(host_cmd("sh").args(["-c", "echo no >&2; exit 3"])))
                .expect_err("exit 3 must fail");
        let msg = e
            .downcast_ref::<String>()
            .expect("panic message is a String");
        assert!(msg.contains("stderr: no"), "{msg}");
    }
}
