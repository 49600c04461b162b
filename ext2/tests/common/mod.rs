//! Test helpers: a Store over a host file, temp dirs, e2fsprogs wrappers,
//! path walking through the FileSystem trait.
#![allow(dead_code)]

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use ext2::Ext2Fs;
use netbsd_abi::Errno;
use vfs::{Cred, FileKind, FileSystem, Ino};
use vfs_cache::Store;

pub struct FileStore {
    f: File,
}

impl FileStore {
    pub fn open(p: &Path) -> Arc<FileStore> {
        let f = OpenOptions::new().read(true).write(true).open(p).unwrap();
        Arc::new(FileStore { f })
    }
}

impl Store for FileStore {
    fn size(&self) -> u64 {
        self.f.metadata().unwrap().len()
    }
    fn read(&self, off: u64, buf: &mut [u8]) -> Result<(), Errno> {
        self.f.read_exact_at(buf, off).map_err(Errno::from)
    }
    fn write(&self, off: u64, buf: &[u8]) -> Result<(), Errno> {
        self.f.write_all_at(buf, off).map_err(Errno::from)
    }
    fn sync(&self) -> Result<(), Errno> {
        self.f.sync_data().map_err(Errno::from)
    }
}

/// A host file as a vfs-cache block device (for tests over the real cache).
pub struct FileDev {
    f: File,
    size: u64,
}

impl FileDev {
    pub fn open(p: &Path) -> Arc<FileDev> {
        let f = OpenOptions::new().read(true).write(true).open(p).unwrap();
        let size = f.metadata().unwrap().len();
        Arc::new(FileDev { f, size })
    }
}

impl vfs_cache::BlockDevice for FileDev {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_at(&self, buf: &mut [u8], off: u64) -> Result<(), Errno> {
        self.f.read_exact_at(buf, off).map_err(Errno::from)
    }
    fn write_at(&self, buf: &[u8], off: u64) -> Result<(), Errno> {
        self.f.write_all_at(buf, off).map_err(Errno::from)
    }
    fn flush(&self) -> Result<(), Errno> {
        self.f.sync_data().map_err(Errno::from)
    }
}

pub use testkit::data::Rng;
pub use testkit::tmp::TempDir;
pub use testkit::tools::require_e2fsprogs;

pub fn run(name: &str, args: &[&str]) -> std::process::Output {
    let out = Command::new(testkit::tools::require_tool(name))
        .args(args)
        .env("MKE2FS_CONFIG", "/etc/mke2fs.conf")
        .env("E2FSPROGS_FAKE_TIME", "")
        .env_remove("E2FSPROGS_FAKE_TIME")
        .output()
        .unwrap();
    out
}

/// Make an image of `size_kib` KiB with `mke2fs -q -F` and `args`.
pub fn mkfs(img: &Path, size_kib: u64, args: &[&str]) {
    let f = File::create(img).unwrap();
    f.set_len(size_kib * 1024).unwrap();
    drop(f);
    let mut a: Vec<&str> = vec!["-q", "-F"];
    a.extend_from_slice(args);
    let ip = img.to_str().unwrap().to_string();
    a.push(&ip);
    let out = run("mke2fs", &a);
    assert!(
        out.status.success(),
        "mke2fs {:?} failed: {}{}",
        a,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `e2fsck -fn`: panics with its output unless it reports no problem.
pub fn fsck_clean(img: &Path) {
    let out = run("e2fsck", &["-fn", img.to_str().unwrap()]);
    if !out.status.success() {
        panic!(
            "e2fsck -fn {} exit {:?}:\n{}{}",
            img.display(),
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

pub fn debugfs(img: &Path, req: &str) -> Vec<u8> {
    let out = run("debugfs", &["-R", req, img.to_str().unwrap()]);
    assert!(out.status.success(), "debugfs -R {req:?} failed");
    out.stdout
}

pub fn debugfs_w(img: &Path, req: &str) {
    let out = run("debugfs", &["-w", "-R", req, img.to_str().unwrap()]);
    assert!(out.status.success(), "debugfs -w -R {req:?} failed");
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.starts_with("debugfs ")).collect();
    assert!(lines.is_empty(), "debugfs -w -R {req:?}: {err}");
}

/// `debugfs -R 'cat /path'`.
pub fn debugfs_cat(img: &Path, path: &str) -> Vec<u8> {
    debugfs(img, &format!("cat \"{path}\""))
}

pub fn dumpe2fs_h(img: &Path) -> String {
    let out = run("dumpe2fs", &["-h", img.to_str().unwrap()]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn mount(img: &Path) -> Arc<Ext2Fs> {
    Ext2Fs::mount(FileStore::open(img), false).unwrap()
}

pub const ROOT: Cred = Cred { uid: 0, gid: 0 };

/// Resolve "/a/b/c" from the root.
pub fn walk(fs: &dyn FileSystem, path: &str) -> Result<Ino, Errno> {
    let mut ino = fs.root();
    for c in path.split('/').filter(|c| !c.is_empty()) {
        ino = fs.lookup(ino, c.as_bytes())?;
    }
    Ok(ino)
}

/// Parent inode and last name of a path.
pub fn parent<'a>(fs: &dyn FileSystem, path: &'a str) -> Result<(Ino, &'a str), Errno> {
    let (dir, name) = match path.rfind('/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("", path),
    };
    let d = walk(fs, dir)?;
    if fs.getattr(d)?.kind != FileKind::Dir {
        return Err(Errno(netbsd_abi::errno::ENOTDIR));
    }
    Ok((d, name))
}

pub fn read_all(fs: &dyn FileSystem, ino: Ino) -> Vec<u8> {
    let size = fs.getattr(ino).unwrap().size as usize;
    let mut v = vec![0u8; size];
    let mut off = 0;
    while off < size {
        let n = fs
            .read(ino, off as u64, &mut v[off..(off + (1 << 20)).min(size)])
            .unwrap();
        assert!(n > 0, "short read at {off} of {size}");
        off += n;
    }
    let mut extra = [0u8; 16];
    assert_eq!(fs.read(ino, size as u64, &mut extra).unwrap(), 0);
    v
}

pub fn list(fs: &dyn FileSystem, dir: Ino) -> Vec<(Vec<u8>, Ino, FileKind)> {
    let mut v = Vec::new();
    fs.readdir(dir, 0, &mut |e| {
        v.push((e.name, e.ino, e.kind));
        true
    })
    .unwrap();
    v
}

pub fn create_file(fs: &dyn FileSystem, path: &str, data: &[u8]) -> Ino {
    let (d, name) = parent(fs, path).unwrap();
    let ino = fs
        .create(d, name.as_bytes(), FileKind::Reg, 0o644, ROOT)
        .unwrap();
    if !data.is_empty() {
        assert_eq!(fs.write(ino, 0, data).unwrap(), data.len());
    }
    ino
}

pub fn mkdir(fs: &dyn FileSystem, path: &str) -> Ino {
    let (d, name) = parent(fs, path).unwrap();
    fs.create(d, name.as_bytes(), FileKind::Dir, 0o755, ROOT)
        .unwrap()
}

/// Compare a host tree with the file system, recursively: names, kinds,
/// file contents, symlink targets.
pub fn compare_tree(fs: &dyn FileSystem, ino: Ino, host: &Path) -> usize {
    let mut count = 0;
    let mut host_names: Vec<Vec<u8>> = std::fs::read_dir(host)
        .unwrap()
        .map(|e| {
            use std::os::unix::ffi::OsStrExt;
            e.unwrap().file_name().as_bytes().to_vec()
        })
        .collect();
    host_names.sort();
    let mut names: Vec<Vec<u8>> = list(fs, ino)
        .into_iter()
        .map(|e| e.0)
        .filter(|n| n != b"." && n != b".." && n != b"lost+found")
        .collect();
    names.sort();
    assert_eq!(
        names
            .iter()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect::<Vec<_>>(),
        host_names
            .iter()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect::<Vec<_>>(),
        "listing of {}",
        host.display()
    );
    for n in names {
        let s = String::from_utf8(n.clone()).unwrap();
        let hp = host.join(&s);
        let child = fs.lookup(ino, &n).unwrap();
        let a = fs.getattr(child).unwrap();
        let md = std::fs::symlink_metadata(&hp).unwrap();
        if md.file_type().is_symlink() {
            assert_eq!(a.kind, FileKind::Lnk);
            use std::os::unix::ffi::OsStrExt;
            assert_eq!(
                fs.readlink(child).unwrap(),
                std::fs::read_link(&hp).unwrap().as_os_str().as_bytes()
            );
        } else if md.is_dir() {
            assert_eq!(a.kind, FileKind::Dir);
            count += compare_tree(fs, child, &hp);
        } else {
            assert_eq!(a.kind, FileKind::Reg);
            let want = std::fs::read(&hp).unwrap();
            assert_eq!(a.size, want.len() as u64, "{}", hp.display());
            assert!(read_all(fs, child) == want, "contents of {}", hp.display());
        }
        count += 1;
    }
    count
}
