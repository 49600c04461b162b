//! Reading operations on a cold cache: a metadata block the store's cache
//! lacks stops the operation, is read without the file system lock, and
//! the operation runs again (the locking notes on `Ext2Fs`). Whatever the
//! cache holds, a reader sees the same tree.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use ext2::{Ext2Fs, MountOptions};
use netbsd_abi::errno::EIO;
use netbsd_abi::Errno;
use testkit::exercise::MemStore;
use vfs::{FileKind, FileSystem, Ino};
use vfs_cache::Store;

const REV1: &[u8] = include_bytes!("data/rev1.img");

/// The store's unit of caching, as far as this test is concerned.
const PAGE: u64 = 4096;

/// An image in memory whose "cache" holds only the pages read so far:
/// `read_cached` answers `None` for the others, as vfs-cache does for
/// blocks it lacks.
struct ColdStore {
    img: MemStore,
    warm: Mutex<HashSet<u64>>,
    /// `read_cached` calls that found a page missing.
    misses: AtomicUsize,
}

impl ColdStore {
    fn pages(off: u64, len: usize) -> std::ops::Range<u64> {
        off / PAGE..(off + len as u64).div_ceil(PAGE)
    }
}

impl Store for ColdStore {
    fn size(&self) -> u64 {
        self.img.size()
    }
    fn read(&self, off: u64, buf: &mut [u8]) -> Result<(), Errno> {
        self.img.read(off, buf)?;
        let mut w = self.warm.lock().map_err(|_| Errno(EIO))?;
        w.extend(Self::pages(off, buf.len()));
        Ok(())
    }
    fn write(&self, off: u64, buf: &[u8]) -> Result<(), Errno> {
        self.img.write(off, buf)
    }
    fn sync(&self) -> Result<(), Errno> {
        Ok(())
    }
    fn read_cached(&self, off: u64, buf: &mut [u8]) -> Option<Result<(), Errno>> {
        let warm = {
            let w = self.warm.lock().ok()?;
            Self::pages(off, buf.len()).all(|p| w.contains(&p))
        };
        if !warm {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.img.read(off, buf))
    }
}

/// Everything a reader sees under `dir`: each entry, its attributes, and
/// a file's bytes or a link's target.
fn tree(fs: &dyn FileSystem, dir: Ino, depth: usize, out: &mut Vec<String>) {
    let mut ents = Vec::new();
    fs.readdir(dir, 0, &mut |e| {
        ents.push(e);
        true
    })
    .unwrap();
    for e in ents {
        if e.name == b"." || e.name == b".." {
            continue;
        }
        let ino = fs.lookup(dir, &e.name).unwrap();
        assert_eq!(ino, e.ino);
        let a = fs.getattr(ino).unwrap();
        out.push(format!("{e:?} {a:?}"));
        match a.kind {
            FileKind::Dir if depth < 8 => tree(fs, ino, depth + 1, out),
            FileKind::Reg => {
                let mut buf = vec![0u8; a.size.min(1 << 22) as usize];
                let n = fs.read(ino, 0, &mut buf).unwrap();
                out.push(format!("{n} bytes, sum {}", checksum(&buf[..n])));
            }
            FileKind::Lnk => out.push(format!("-> {:?}", fs.readlink(ino).unwrap())),
            _ => {}
        }
    }
}

fn checksum(b: &[u8]) -> u64 {
    b.iter()
        .fold(0u64, |h, &x| h.wrapping_mul(31).wrapping_add(x as u64))
}

fn mount(store: Arc<dyn Store>) -> Arc<Ext2Fs> {
    Ext2Fs::mount_with(
        store,
        MountOptions {
            read_only: true,
            force: false,
        },
    )
    .expect("mount rev1.img")
}

#[test]
fn cold_metadata_is_deferred_read_and_the_operation_run_again() {
    let warm = mount(Arc::new(MemStore(Mutex::new(REV1.to_vec()))));
    let mut want = Vec::new();
    tree(&*warm, warm.root(), 0, &mut want);
    warm.unmount().unwrap();
    assert!(want.len() > 3, "{want:?}");

    let cold = Arc::new(ColdStore {
        img: MemStore(Mutex::new(REV1.to_vec())),
        warm: Mutex::new(HashSet::new()),
        misses: AtomicUsize::new(0),
    });
    let fs = mount(cold.clone());
    let mut got = Vec::new();
    tree(&*fs, fs.root(), 0, &mut got);
    assert_eq!(got, want);
    // The walk met blocks the cache lacked: operations stopped and ran
    // again, and none of them failed for it.
    assert!(cold.misses.load(Ordering::Relaxed) > 0);
    // Once warm, nothing is deferred any more.
    let before = cold.misses.load(Ordering::Relaxed);
    let mut again = Vec::new();
    tree(&*fs, fs.root(), 0, &mut again);
    assert_eq!(again, want);
    assert_eq!(cold.misses.load(Ordering::Relaxed), before);
    fs.unmount().unwrap();
}
