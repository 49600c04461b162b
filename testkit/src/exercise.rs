//! Mount an (untrusted, possibly corrupt) ext2 image held in memory and
//! run every kind of operation on it. Shared by the corpus test
//! (ext2/tests/corrupt.rs) and the fuzz target (fuzz/fuzz_targets/ext2.rs):
//! neither may ever see a panic, a hang, or an operation whose cost is not
//! bounded by the image's size.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ext2::{Ext2Fs, MountOptions};
use netbsd_abi::errno::{EINVAL, EIO};
use netbsd_abi::Errno;
use vfs::{Cred, FileKind, FileSystem, Ino, SetAttr};
use vfs_cache::Store;

/// An image in memory as a store.
pub struct MemStore(pub Mutex<Vec<u8>>);

impl Store for MemStore {
    fn size(&self) -> u64 {
        self.0.lock().map(|v| v.len() as u64).unwrap_or(0)
    }
    fn read(&self, off: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let v = self.0.lock().map_err(|_| Errno(EIO))?;
        let o = usize::try_from(off).map_err(|_| Errno(EINVAL))?;
        let src = o
            .checked_add(buf.len())
            .and_then(|e| v.get(o..e))
            .ok_or(Errno(EIO))?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn write(&self, off: u64, buf: &[u8]) -> Result<(), Errno> {
        let mut v = self.0.lock().map_err(|_| Errno(EIO))?;
        let o = usize::try_from(off).map_err(|_| Errno(EINVAL))?;
        let dst = o
            .checked_add(buf.len())
            .and_then(|e| v.get_mut(o..e))
            .ok_or(Errno(EIO))?;
        dst.copy_from_slice(buf);
        Ok(())
    }
    fn sync(&self) -> Result<(), Errno> {
        Ok(())
    }
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Report {
    /// The image mounted (else nothing else ran).
    pub mounted: bool,
    /// Operations run.
    pub ops: usize,
    /// Operations that returned an error (as they may on a corrupt image).
    pub errors: usize,
    /// The slowest single operation, and what it was.
    pub slowest: Duration,
    /// The name of that slowest operation.
    pub slowest_op: String,
}

struct Run<'a> {
    fs: &'a Ext2Fs,
    r: Report,
}

impl Run<'_> {
    fn op<T>(
        &mut self,
        what: impl FnOnce() -> String,
        f: impl FnOnce(&Ext2Fs) -> Result<T, Errno>,
    ) -> Option<T> {
        let t = Instant::now();
        let res = f(self.fs);
        let took = t.elapsed();
        self.r.ops += 1;
        if took > self.r.slowest {
            self.r.slowest = took;
            self.r.slowest_op = what();
        }
        match res {
            Ok(v) => Some(v),
            Err(_) => {
                self.r.errors += 1;
                None
            }
        }
    }

    /// Up to `max` entries of `dir`.
    fn list(&mut self, dir: Ino, max: usize) -> Vec<(Vec<u8>, Ino, FileKind)> {
        let mut out = Vec::new();
        self.op(
            || format!("readdir {dir}"),
            |fs| {
                fs.readdir(dir, 0, &mut |e| {
                    out.push((e.name, e.ino, e.kind));
                    out.len() < max
                })
            },
        );
        out
    }

    /// Look at everything reachable (bounded), reading files and links.
    fn walk(&mut self, dir: Ino, depth: u32, budget: &mut usize) {
        for (name, ino, _) in self.list(dir, 64) {
            if *budget == 0 {
                return;
            }
            *budget -= 1;
            if name == b"." || name == b".." {
                continue;
            }
            let Some(found) = self.op(
                || format!("lookup {dir}/{}", String::from_utf8_lossy(&name)),
                |fs| fs.lookup(dir, &name),
            ) else {
                continue;
            };
            let _ = ino;
            let Some(a) = self.op(|| format!("getattr {found}"), |fs| fs.getattr(found)) else {
                continue;
            };
            match a.kind {
                FileKind::Dir if depth < 4 => self.walk(found, depth + 1, budget),
                FileKind::Reg => {
                    let mut buf = vec![0u8; 64 << 10];
                    self.op(
                        || format!("read {found} at 0"),
                        |fs| fs.read(found, 0, &mut buf),
                    );
                    let end = a.size.saturating_sub(10);
                    self.op(
                        || format!("read {found} at {end}"),
                        |fs| fs.read(found, end, &mut buf[..4096]),
                    );
                    self.op(
                        || format!("read {found} at 1 TiB"),
                        |fs| fs.read(found, 1 << 40, &mut buf[..4096]),
                    );
                }
                FileKind::Lnk => {
                    self.op(|| format!("readlink {found}"), |fs| fs.readlink(found));
                }
                _ => {}
            }
        }
    }
}

/// Mount `image` (read-write, forced: a corrupt image is at least not
/// clean) and run lookups, listings, reads, stats, then creates, writes,
/// links, renames, truncates, unlinks, syncs and the unmount.
pub fn exercise(image: &[u8]) -> Report {
    let store = Arc::new(MemStore(Mutex::new(image.to_vec())));
    let fs = match Ext2Fs::mount_with(
        store,
        MountOptions {
            read_only: false,
            force: true,
        },
    ) {
        Ok(fs) => fs,
        Err(_) => return Report::default(),
    };
    let mut run = Run {
        fs: &fs,
        r: Report {
            mounted: true,
            ..Default::default()
        },
    };
    let root = fs.root();
    let mut budget = 200;
    run.walk(root, 0, &mut budget);
    let cred = Cred::default();

    // Changes, each on whatever the image has.
    let f = run.op(
        || "create /fz".into(),
        |fs| fs.create(root, b"fz", FileKind::Reg, 0o644, cred),
    );
    if let Some(f) = f {
        let data: Vec<u8> = (0..20_000u32).map(|i| i as u8).collect();
        run.op(|| "write /fz".into(), |fs| fs.write(f, 0, &data));
        run.op(
            || "write /fz at 5 MiB".into(),
            |fs| fs.write(f, 5 << 20, &data[..100]),
        );
        run.op(|| "link /fz /fz2".into(), |fs| fs.link(f, root, b"fz2"));
        run.op(
            || "truncate /fz".into(),
            |fs| {
                fs.setattr(
                    f,
                    &SetAttr {
                        size: Some(3000),
                        ..Default::default()
                    },
                )
            },
        );
        run.op(|| "fsync /fz".into(), |fs| fs.fsync(f));
    }
    let d = run.op(
        || "mkdir /dz".into(),
        |fs| fs.create(root, b"dz", FileKind::Dir, 0o755, cred),
    );
    if let Some(d) = d {
        run.op(
            || "symlink /dz/l".into(),
            |fs| fs.symlink(d, b"l", &[b'y'; 300], cred),
        );
        run.op(
            || "rename /fz2 /dz/fz3".into(),
            |fs| fs.rename(root, b"fz2", d, b"fz3"),
        );
        run.list(d, 64);
    }
    // Move a new directory into the image's directories and back (the
    // move walks up their ".." entries).
    if d.is_some() {
        for (name, ino, kind) in run.list(root, 64) {
            if kind != FileKind::Dir || name == b"." || name == b".." {
                continue;
            }
            if run
                .op(
                    || "rename /dz into a directory".into(),
                    |fs| fs.rename(root, b"dz", ino, b"dz"),
                )
                .is_some()
            {
                run.op(
                    || "rename /dz back".into(),
                    |fs| fs.rename(ino, b"dz", root, b"dz"),
                );
            }
        }
    }
    // What the image brought: change and remove some of it.
    let mut n = 0;
    for (name, _, kind) in run.list(root, 64) {
        if name == b"." || name == b".." || n >= 8 {
            continue;
        }
        n += 1;
        let Some(ino) = run.op(|| "lookup".into(), |fs| fs.lookup(root, &name)) else {
            continue;
        };
        if kind == FileKind::Dir {
            for (sub, _, _) in run.list(ino, 16) {
                if sub != b"." && sub != b".." {
                    run.op(
                        || "unlink in subdirectory".into(),
                        |fs| fs.unlink(ino, &sub),
                    );
                }
            }
            run.op(
                || "create in subdirectory".into(),
                |fs| fs.create(ino, b"new", FileKind::Reg, 0o600, cred),
            );
            run.op(|| "rmdir".into(), |fs| fs.rmdir(root, &name));
        } else {
            run.op(
                || "write to a file of the image".into(),
                |fs| fs.write(ino, 100, b"overwritten"),
            );
            run.op(
                || "truncate a file of the image".into(),
                |fs| {
                    fs.setattr(
                        ino,
                        &SetAttr {
                            size: Some(1),
                            ..Default::default()
                        },
                    )
                },
            );
            run.op(
                || "rename a file of the image".into(),
                |fs| fs.rename(root, &name, root, b"renamed"),
            );
            run.op(
                || "unlink a file of the image".into(),
                |fs| fs.unlink(root, b"renamed"),
            );
        }
    }
    run.op(|| "statfs".into(), |fs| fs.statfs());
    run.op(|| "sync".into(), |fs| fs.sync());
    run.op(|| "unmount".into(), |fs| fs.unmount());
    run.r
}
