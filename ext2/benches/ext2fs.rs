//! In-process benchmark of the ext2 component over the real vfs-cache on a
//! host image (no sysproxy): the FileSystem calls the kernel makes for
//! `open(O_CREAT) + write 4 KiB + close` of many small files, then 64 KiB
//! writes of one big file, then `sync`, then `unmount`; `e2fsck -fn` after.
//!
//! `cargo bench -p ext2 --bench ext2fs` (`BENCH_FILES`, `BENCH_MIB`).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use ext2::Ext2Fs;
use netbsd_abi::Errno;
use vfs::{Cred, FileKind, FileSystem};

struct FileDev {
    f: File,
    size: u64,
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

fn main() {
    let nfiles: usize = std::env::var("BENCH_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let big_mib: usize = std::env::var("BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let big = big_mib << 20;
    let dir = std::env::temp_dir().join(format!("ext2-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let img = dir.join("img");
    let total = nfiles * 4096 + big;
    let o = Command::new("mke2fs")
        .args([
            "-q",
            "-F",
            "-t",
            "ext2",
            "-b",
            "4096",
            "-N",
            &format!("{}", nfiles + 1024),
        ])
        .arg(&img)
        .arg(format!("{}M", (total >> 20) + 128))
        .output()
        .expect("mke2fs");
    assert!(o.status.success());
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&img)
        .unwrap();
    let size = f.metadata().unwrap().len();
    let cache = vfs_cache::Cache::new(1 << 30);
    let dev = cache.attach(Arc::new(FileDev { f, size }), vfs_cache::DEFAULT_BLOCK_SIZE);
    let fs = Ext2Fs::mount(dev.clone(), false).unwrap();
    let cred = Cred::default();
    let root = fs.root();
    let small = fs
        .create(root, b"small", FileKind::Dir, 0o755, cred)
        .unwrap();
    let buf4k = vec![0x11u8; 4096];

    let t0 = Instant::now();
    for i in 0..nfiles {
        let name = format!("f{i}");
        let d = fs.lookup(root, b"small").unwrap();
        assert!(fs.lookup(d, name.as_bytes()).is_err());
        let ino = fs
            .create(d, name.as_bytes(), FileKind::Reg, 0o644, cred)
            .unwrap();
        fs.getattr(ino).unwrap();
        fs.open(ino);
        assert_eq!(fs.write(ino, 0, &buf4k).unwrap(), 4096);
        fs.release(ino);
    }
    let t_files = t0.elapsed().as_secs_f64();
    let _ = small;

    let chunk = vec![0x22u8; 64 * 1024];
    let t1 = Instant::now();
    let ino = fs.create(root, b"big", FileKind::Reg, 0o644, cred).unwrap();
    fs.open(ino);
    for i in 0..big / chunk.len() {
        assert_eq!(
            fs.write(ino, (i * chunk.len()) as u64, &chunk).unwrap(),
            chunk.len()
        );
    }
    fs.release(ino);
    let t_big = t1.elapsed().as_secs_f64();
    let t2 = Instant::now();
    fs.sync().unwrap();
    let t_sync = t2.elapsed().as_secs_f64();
    let st = dev.stats();
    fs.unmount().unwrap();
    drop(fs);
    dev.sync().unwrap();

    let fsck = Command::new("e2fsck")
        .arg("-fn")
        .arg(&img)
        .output()
        .unwrap();
    println!("ext2 in process: {nfiles} files of 4 KiB, one {big_mib} MiB file, sync");
    if nfiles > 0 {
        println!(
            "  create+write+close  {:8.1} ms  ({:.2} us/file)",
            t_files * 1e3,
            t_files * 1e6 / nfiles as f64
        );
    }
    if big > 0 {
        println!(
            "  big file writes     {:8.1} ms  ({:.0} MiB/s)",
            t_big * 1e3,
            big_mib as f64 / t_big
        );
    }
    println!("  sync                {:8.1} ms", t_sync * 1e3);
    println!(
        "  cache: hits {} misses {} flushes {} flushed {} MiB",
        st.hits,
        st.misses,
        st.flushes,
        st.flushed_bytes >> 20
    );
    println!(
        "  e2fsck -fn: {}",
        if fsck.status.success() {
            "clean".to_string()
        } else {
            String::from_utf8_lossy(&fsck.stdout).into_owned()
        }
    );
    let _ = std::fs::remove_dir_all(&dir);
}
