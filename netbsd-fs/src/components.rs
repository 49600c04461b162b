//! Finding NetBSD's component libraries: a buildrump.sh destdir (`lib/`)
//! named by `-o netbsd=DIR` or `RUMP_NETBSD_DIR`, else the install
//! prefix of this program (`PREFIX/bin/rump_mount`, `PREFIX/lib/`).

use std::path::{Path, PathBuf};

/// How to point at a build, for error messages.
pub const HOW: &str = "set RUMP_NETBSD_DIR or -o netbsd=DIR to a buildrump.sh destdir \
                       (see rump_mount(8) and docs/netbsd.md)";

/// Where the components were looked for, and why there.
#[derive(Clone, Debug)]
pub struct Destdir {
    /// The directory holding `lib/`.
    pub dir: PathBuf,
    /// How it was chosen (`-o netbsd`, `RUMP_NETBSD_DIR`, install prefix).
    pub from: &'static str,
}

/// Components that cannot be found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ComponentError {
    /// No destdir named and none beside the program.
    #[error("librump.so: NetBSD's rump kernel components not found: {HOW}")]
    NoDestdir,
    /// The destdir lacks a component.
    #[error("lib{name}.so: not found in {} (from {from}): {HOW}", .lib.display())]
    Missing {
        /// The component (`rumpfs_ffs`).
        name: String,
        /// The directory searched.
        lib: PathBuf,
        /// How the destdir was chosen.
        from: &'static str,
    },
}

/// Choose the destdir: `opt` (from `-o netbsd=DIR`), then the
/// environment's `RUMP_NETBSD_DIR`, then the install prefix of the
/// running executable when its `lib/` holds `librump.so`.
pub fn destdir(opt: Option<&Path>) -> Result<Destdir, ComponentError> {
    if let Some(d) = opt {
        return Ok(Destdir {
            dir: d.to_path_buf(),
            from: "-o netbsd",
        });
    }
    if let Some(d) = std::env::var_os("RUMP_NETBSD_DIR").filter(|d| !d.is_empty()) {
        return Ok(Destdir {
            dir: PathBuf::from(d),
            from: "RUMP_NETBSD_DIR",
        });
    }
    if let Some(prefix) = std::env::current_exe()
        .ok()
        .and_then(|e| std::fs::canonicalize(e).ok())
        .and_then(|e| e.parent()?.parent().map(Path::to_path_buf))
    {
        if prefix.join("lib/librump.so").exists() || prefix.join("lib/librump.so.0").exists() {
            return Ok(Destdir {
                dir: prefix,
                from: "install prefix",
            });
        }
    }
    Err(ComponentError::NoDestdir)
}

/// The file to load for component `name` (`rumpfs_ffs`): `lib/libNAME.so`
/// under the destdir, with text-file stubs followed (a few hops).
pub fn resolve(d: &Destdir, name: &str) -> Result<PathBuf, ComponentError> {
    let lib = d.dir.join("lib");
    let p = rumprun::netbsd::follow_stubs(&lib.join(format!("lib{name}.so")));
    if !p.exists() {
        return Err(ComponentError::Missing {
            name: name.to_string(),
            lib,
            from: d.from,
        });
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stubs_are_followed_and_missing_named() {
        let t = tempfile::tempdir().unwrap();
        let lib = t.path().join("lib");
        std::fs::create_dir(&lib).unwrap();
        std::fs::write(lib.join("librumpx.so.0.0"), b"\x7fELF....").unwrap();
        std::fs::write(lib.join("librumpx.so"), b"librumpx.so.0\n").unwrap();
        std::fs::write(lib.join("librumpx.so.0"), b"librumpx.so.0.0").unwrap();
        let d = Destdir {
            dir: t.path().to_path_buf(),
            from: "test",
        };
        assert_eq!(resolve(&d, "rumpx").unwrap(), lib.join("librumpx.so.0.0"));
        let e = resolve(&d, "rumpfs_none").unwrap_err();
        assert!(
            matches!(&e, ComponentError::Missing { name, from: "test", .. } if name == "rumpfs_none")
        );
        let e = e.to_string();
        assert!(e.starts_with("librumpfs_none.so: not found in "), "{e}");
        assert!(e.contains("RUMP_NETBSD_DIR"), "{e}");
    }
}
