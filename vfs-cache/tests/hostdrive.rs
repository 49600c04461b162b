//! HostDrive on real temporary files, and file-driven fault injection.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use netbsd_abi::errno::{EINVAL, EIO, ENOENT};
use netbsd_abi::Errno;
use vfs_cache::{BlockDevice, Cache, FaultControl, FaultyDrive, HostDrive, Store};

/// A private directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("vfs-cache-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
    fn file(&self, name: &str, size: u64) -> PathBuf {
        let p = self.0.join(name);
        let f = fs::File::create(&p).expect("create image");
        f.set_len(size).expect("size image");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

#[test]
fn host_drive_write_back_reaches_the_file_only_on_sync() {
    let dir = TempDir::new("wb");
    let img = dir.file("disk.img", 8 << 20);
    let drive = HostDrive::open(s(&img), None).unwrap();
    assert_eq!(drive.size(), 8 << 20);
    let cache = Cache::new(64 << 20);
    let dev = cache.attach(Arc::new(drive), 64 * 1024);
    let data = pattern(3 << 20, 7);
    dev.write(1000, &data).unwrap();
    let before = fs::read(&img).unwrap();
    assert!(
        before.iter().all(|&b| b == 0),
        "nothing on the file before sync"
    );
    dev.sync().unwrap();
    let after = fs::read(&img).unwrap();
    assert_eq!(after.len(), 8 << 20);
    assert_eq!(&after[1000..1000 + data.len()], &data[..]);
    assert!(after[..1000].iter().all(|&b| b == 0));
    assert!(after[1000 + data.len()..].iter().all(|&b| b == 0));
    let st = cache.stats();
    assert_eq!(st.dirty_bytes, 0);
    // 3 MiB + a bit, merged in 1 MiB writes: 4 writes.
    assert_eq!(st.flushes, 4, "{st:?}");

    // Read back through a fresh cache: from the file.
    let cache2 = Cache::new(1 << 20);
    let dev2 = cache2.attach(Arc::new(HostDrive::open(s(&img), None).unwrap()), 64 * 1024);
    let mut back = vec![0u8; data.len()];
    dev2.read(1000, &mut back).unwrap();
    assert_eq!(back, data);
    assert!(cache2.stats().peak_cached_bytes <= (1 << 20) + 64 * 1024);
}

#[test]
fn host_drive_open_semantics() {
    let dir = TempDir::new("open");
    assert_eq!(
        HostDrive::open(s(&dir.0.join("missing")), None).err(),
        Some(Errno(ENOENT))
    );
    let img = dir.file("small.img", 4096);
    // A given size larger than the file: the rest reads as zeros, writes
    // extend the file.
    let d = HostDrive::open(s(&img), Some(1 << 20)).unwrap();
    assert_eq!(d.size(), 1 << 20);
    let mut b = vec![1u8; 8192];
    d.read_at(&mut b, 0).unwrap();
    assert!(b.iter().all(|&x| x == 0));
    assert_eq!(d.read_at(&mut b, (1 << 20) - 10), Err(Errno(EINVAL)));
    d.write_at(b"tail", (1 << 20) - 4).unwrap();
    d.flush().unwrap();
    assert_eq!(fs::metadata(&img).unwrap().len(), 1 << 20);
    let ro = HostDrive::open_readonly(s(&img), None).unwrap();
    assert!(ro.write_at(b"x", 0).is_err());
    let mut t = [0u8; 4];
    ro.read_at(&mut t, (1 << 20) - 4).unwrap();
    assert_eq!(&t, b"tail");
}

#[test]
fn control_file_switches_faults() {
    let dir = TempDir::new("fault");
    let img = dir.file("disk.img", 1 << 20);
    let ctl_path = dir.0.join("ctl");
    let ctl = Arc::new(FaultControl::from_spec(&format!("write-error:{}", s(&ctl_path))).unwrap());
    let drive = FaultyDrive::new(
        Arc::new(HostDrive::open(s(&img), None).unwrap()),
        ctl.clone(),
    );
    let cache = Cache::new(16 << 20);
    let dev = cache.attach(Arc::new(drive), 64 * 1024);
    let data = pattern(200_000, 3);
    dev.write(0, &data).unwrap();
    // Another process would create the file: the fault is on.
    fs::write(&ctl_path, b"").unwrap();
    assert_eq!(dev.sync(), Err(Errno(EIO)));
    assert!(fs::read(&img).unwrap().iter().all(|&b| b == 0));
    assert_eq!(cache.stats().dirty_bytes, 4 * 64 * 1024);
    // Removed: the fault is off and the kept data goes out.
    fs::remove_file(&ctl_path).unwrap();
    dev.sync().unwrap();
    assert_eq!(&fs::read(&img).unwrap()[..data.len()], &data[..]);

    // flush-error through a control file.
    let ctl2 = Arc::new(FaultControl::from_spec(&format!("flush-error:{}", s(&ctl_path))).unwrap());
    let dev2 = cache.attach(
        Arc::new(FaultyDrive::new(
            Arc::new(HostDrive::open(s(&img), None).unwrap()),
            ctl2,
        )),
        4096,
    );
    dev2.write(0, b"zz").unwrap();
    fs::write(&ctl_path, b"").unwrap();
    assert_eq!(dev2.sync(), Err(Errno(EIO)));
    fs::remove_file(&ctl_path).unwrap();
    dev2.sync().unwrap();
    assert_eq!(&fs::read(&img).unwrap()[..2], b"zz");
}

#[test]
fn write_hang_control_file_blocks_until_removed() {
    let dir = TempDir::new("hang");
    let img = dir.file("disk.img", 1 << 20);
    let ctl_path = dir.0.join("hang");
    fs::write(&ctl_path, b"").unwrap();
    let ctl = Arc::new(FaultControl::from_spec(&format!("write-hang:{}", s(&ctl_path))).unwrap());
    let drive = FaultyDrive::new(Arc::new(HostDrive::open(s(&img), None).unwrap()), ctl);
    let cache = Cache::new(16 << 20);
    let dev = cache.attach(Arc::new(drive), 64 * 1024);
    dev.write(0, b"hello").unwrap();
    let d2 = dev.clone();
    let t = std::thread::spawn(move || d2.sync());
    std::thread::sleep(std::time::Duration::from_millis(150));
    assert!(!t.is_finished(), "sync hangs while the control file exists");
    fs::remove_file(&ctl_path).unwrap();
    assert_eq!(t.join().unwrap(), Ok(()));
    assert_eq!(&fs::read(&img).unwrap()[..5], b"hello");
}

#[test]
fn host_drive_for_a_kernel_drive_creates_locks_and_reads_directly() {
    let dir = TempDir::new("kdrive");
    let img = dir.0.join("new.img");
    // Without `create` a missing file is refused; with it, made empty.
    assert_eq!(
        HostDrive::open_with(s(&img), Some(4096), false, false).err(),
        Some(Errno(ENOENT))
    );
    let d = HostDrive::open_with(s(&img), Some(8192), true, true).unwrap();
    assert!(d.is_regular());
    assert_eq!(d.file_size().unwrap(), 0);
    assert_eq!(d.size(), 8192);
    d.set_len(8192).unwrap();
    assert_eq!(fs::metadata(&img).unwrap().len(), 8192);
    // Direct I/O on the host file: short only at its end.
    assert_eq!(d.pwrite(b"hello", 8190).unwrap(), 5);
    let mut buf = [0u8; 16];
    assert_eq!(d.pread(&mut buf, 8190).unwrap(), 5);
    assert_eq!(&buf[..5], b"hello");
    d.sync().unwrap();
    // The image lock: a second open of the file (here, in this very
    // process) cannot take it while the first holds it, and can once the
    // first is closed.
    d.lock(true).unwrap();
    let other = HostDrive::open_with(s(&img), None, false, false).unwrap();
    assert_eq!(other.id().unwrap(), d.id().unwrap());
    assert_eq!(other.lock(true), Err(Errno(netbsd_abi::errno::EAGAIN)));
    drop(d);
    other.lock(true).unwrap();
}
