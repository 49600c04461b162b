//! The built-in kernel through its local processes: POSIX file semantics on
//! rumpfs, processes, drives, mounts, halt primitives.

// Tests and benches drive raw interfaces in bulk (a C ABI, unchecked
// syscall blocks): each block's SAFETY line covers all it does.
#![allow(clippy::multiple_unsafe_ops_per_block)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use netbsd_abi::errno::*;
use netbsd_abi::fcntl::*;
use netbsd_abi::reboot::*;
use netbsd_abi::stat::*;
use netbsd_abi::syscall::*;
use netbsd_abi::Errno;
use rumpkern::rumpfs::RumpFs;
use rumpkern::vfs::FileSystem;
use rumpkern::*;
use vfs_cache::{FaultMode, Store};

fn kernel_n(ncpu: usize) -> Arc<Kernel> {
    let cfg = KernelConfig {
        ncpu,
        memlimit: 64 << 20,
        hostname: "testhost".into(),
        ostype: OSTYPE.into(),
        osrelease: OSRELEASE.into(),
        machine: MACHINE.into(),
        verbose: false,
        sync: syncer::SyncConfig::default(),
        // A thread blocked while holding a CPU fails the run.
        lockdebug: LockDebug::Abort,
    };
    Kernel::boot(cfg).expect("boot")
}

fn kernel() -> Arc<Kernel> {
    kernel_n(2)
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "rumpkern-test-{}-{}-{}",
            std::process::id(),
            tag,
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn e(n: i32) -> Errno {
    Errno(n)
}

#[test]
fn files_and_directories() {
    let k = kernel();
    let p = k.local_process().unwrap();
    p.mkdir("/d", 0o750).unwrap();
    assert_eq!(p.mkdir("/d", 0o750), Err(e(EEXIST)));
    let st = p.stat("/d").unwrap();
    assert!(st.is_dir());
    assert_eq!(st.mode & 0o7777, 0o750);
    assert_eq!(st.nlink, 2);

    let fd = p.open("/d/f", O_RDWR | O_CREAT | O_EXCL, 0o640).unwrap();
    assert_eq!(
        p.open("/d/f", O_RDWR | O_CREAT | O_EXCL, 0o640),
        Err(e(EEXIST))
    );
    assert_eq!(p.write(fd, b"hello, world").unwrap(), 12);
    let st = p.fstat(fd).unwrap();
    assert!(st.is_reg());
    assert_eq!(st.size, 12);
    assert_eq!(st.mode, S_IFREG | 0o640);
    assert_eq!(p.lseek(fd, 0, SEEK_SET).unwrap(), 0);
    let mut b = [0u8; 64];
    assert_eq!(p.read(fd, &mut b).unwrap(), 12);
    assert_eq!(&b[..12], b"hello, world");
    assert_eq!(p.read(fd, &mut b).unwrap(), 0);
    assert_eq!(p.pread(fd, &mut b[..5], 7).unwrap(), 5);
    assert_eq!(&b[..5], b"world");
    assert_eq!(p.pwrite(fd, b"XY", 20).unwrap(), 2);
    assert_eq!(p.fstat(fd).unwrap().size, 22);
    assert_eq!(p.pread(fd, &mut b[..10], 12).unwrap(), 10);
    assert_eq!(&b[..10], b"\0\0\0\0\0\0\0\0XY");
    assert_eq!(p.lseek(fd, -2, SEEK_END).unwrap(), 20);
    assert_eq!(p.lseek(fd, -30, SEEK_CUR), Err(e(EINVAL)));
    p.ftruncate(fd, 5).unwrap();
    assert_eq!(p.stat("/d/f").unwrap().size, 5);
    p.fchmod(fd, 0o600).unwrap();
    assert_eq!(p.stat("/d/f").unwrap().mode & 0o777, 0o600);
    p.fsync(fd).unwrap();
    p.close(fd).unwrap();
    assert_eq!(p.close(fd), Err(e(EBADF)));

    // O_APPEND, O_TRUNC.
    let fd = p.open("/d/f", O_WRONLY | O_APPEND, 0).unwrap();
    p.write(fd, b"++").unwrap();
    p.close(fd).unwrap();
    assert_eq!(p.read_file("/d/f").unwrap(), b"hello++");
    let fd = p.open("/d/f", O_WRONLY | O_TRUNC, 0).unwrap();
    p.close(fd).unwrap();
    assert_eq!(p.stat("/d/f").unwrap().size, 0);
    // Access modes.
    let fd = p.open("/d/f", O_RDONLY, 0).unwrap();
    assert_eq!(p.write(fd, b"x"), Err(e(EBADF)));
    p.close(fd).unwrap();
    let fd = p.open("/d/f", O_WRONLY, 0).unwrap();
    assert_eq!(p.read(fd, &mut b), Err(e(EBADF)));
    p.close(fd).unwrap();
    assert_eq!(p.open("/d", O_WRONLY, 0), Err(e(EISDIR)));
    assert_eq!(p.open("/d/f", O_RDONLY | O_DIRECTORY, 0), Err(e(ENOTDIR)));
    assert_eq!(p.open("/nope", O_RDONLY, 0), Err(e(ENOENT)));
    assert_eq!(p.open("/d/f/x", O_RDONLY, 0), Err(e(ENOTDIR)));
    assert_eq!(p.open("/d/f", 3, 0), Err(e(EINVAL)));

    // Listing.
    p.write_file("/d/g", b"g").unwrap();
    p.mkdir("/d/sub", 0o755).unwrap();
    let mut names = p.list_dir("/d").unwrap();
    names.sort();
    assert_eq!(names, [".", "..", "f", "g", "sub"]);
    assert_eq!(p.stat("/d").unwrap().nlink, 3);

    // Rename, unlink, rmdir.
    p.rename("/d/g", "/d/sub/h").unwrap();
    assert_eq!(p.read_file("/d/sub/h").unwrap(), b"g");
    assert_eq!(p.stat("/d/g"), Err(e(ENOENT)));
    p.rename("/d/f", "/d/sub/h").unwrap(); // replaces
    assert_eq!(p.stat("/d/sub/h").unwrap().size, 0);
    assert_eq!(p.rmdir("/d/sub"), Err(e(ENOTEMPTY)));
    assert_eq!(p.rmdir("/d"), Err(e(ENOTEMPTY)));
    assert_eq!(p.unlink("/d/sub"), Err(e(EPERM)));
    assert_eq!(p.rmdir("/d/sub/h"), Err(e(ENOTDIR)));
    assert_eq!(p.rename("/d", "/d/sub/x"), Err(e(EINVAL)));
    p.unlink("/d/sub/h").unwrap();
    assert_eq!(p.unlink("/d/sub/h"), Err(e(ENOENT)));
    p.rmdir("/d/sub").unwrap();
    assert_eq!(p.stat("/d").unwrap().nlink, 2);
    // Hard links.
    p.write_file("/d/a", b"aaa").unwrap();
    p.link("/d/a", "/d/b").unwrap();
    assert_eq!(p.stat("/d/a").unwrap().nlink, 2);
    assert_eq!(p.link("/d", "/d/c"), Err(e(EPERM)));
    p.unlink("/d/a").unwrap();
    assert_eq!(p.read_file("/d/b").unwrap(), b"aaa");
    assert_eq!(p.stat("/d/b").unwrap().nlink, 1);
    // An open, unlinked file stays readable.
    let fd = p.open("/d/b", O_RDONLY, 0).unwrap();
    p.unlink("/d/b").unwrap();
    assert_eq!(p.pread(fd, &mut b[..3], 0).unwrap(), 3);
    p.close(fd).unwrap();
    p.chmod("/d", 0o700).unwrap();
    assert_eq!(p.stat("/d").unwrap().mode, S_IFDIR | 0o700);
}

#[test]
fn relative_paths_and_cwd() {
    let k = kernel();
    let p = k.local_process().unwrap();
    assert_eq!(p.getcwd().unwrap(), b"/");
    p.mkdir("/a", 0o755).unwrap();
    p.mkdir("/a/b", 0o755).unwrap();
    p.chdir("/a/b").unwrap();
    assert_eq!(p.getcwd().unwrap(), b"/a/b");
    p.write_file("f", b"x").unwrap();
    assert!(p.stat("/a/b/f").is_ok());
    assert!(p.stat("./f").is_ok());
    assert!(p.stat("../b/./f").is_ok());
    assert!(p.stat("../../a/b/f").is_ok());
    assert!(p.stat("/../../a").is_ok());
    p.chdir("..").unwrap();
    assert_eq!(p.getcwd().unwrap(), b"/a");
    p.chdir("../..").unwrap();
    assert_eq!(p.getcwd().unwrap(), b"/");
    assert_eq!(p.chdir("/a/b/f"), Err(e(ENOTDIR)));
    assert_eq!(p.chdir("/zzz"), Err(e(ENOENT)));
    let fd = p.open("/a", O_RDONLY, 0).unwrap();
    p.fchdir(fd).unwrap();
    p.close(fd).unwrap();
    assert_eq!(p.getcwd().unwrap(), b"/a");
    // The cwd follows a rename.
    p.rename("/a", "/z").unwrap();
    assert_eq!(p.getcwd().unwrap(), b"/z");
    assert!(p.stat("b/f").is_ok());
    // Name limits and trailing slashes.
    let long = "x".repeat(512);
    assert_eq!(p.stat(format!("/{long}")), Err(e(ENAMETOOLONG)));
    let deep = "/y".repeat(600);
    assert_eq!(p.stat(&deep), Err(e(ENAMETOOLONG)));
    assert_eq!(p.stat(""), Err(e(ENOENT)));
    assert_eq!(p.stat("/z/b/f/"), Err(e(ENOTDIR)));
    assert!(p.stat("/z/b/").is_ok());
    p.mkdir("/z/c/", 0o755).unwrap();
    assert_eq!(p.mkdir("/", 0o755), Err(e(EEXIST)));
    assert_eq!(p.rmdir("/z/c/."), Err(e(EINVAL)));
    // A small getcwd buffer.
    let mut small = [0u8; 2];
    // SAFETY: `small` is writable for its length.
    let r = unsafe {
        p.syscall(
            SYS___GETCWD,
            &[small.as_mut_ptr() as u64, small.len() as u64],
        )
    };
    assert_eq!(r, Err(e(ERANGE)));
}

#[test]
fn symlinks() {
    let k = kernel();
    let p = k.local_process().unwrap();
    p.mkdir("/dir", 0o755).unwrap();
    p.write_file("/dir/file", b"data").unwrap();
    p.symlink("/dir/file", "/abs").unwrap();
    p.symlink("dir/file", "/rel").unwrap();
    p.symlink("dir", "/dl").unwrap();
    p.symlink("../file", "/dir/up").unwrap();
    assert_eq!(p.read_file("/abs").unwrap(), b"data");
    assert_eq!(p.read_file("/rel").unwrap(), b"data");
    assert_eq!(p.read_file("/dl/file").unwrap(), b"data");
    assert_eq!(p.readlink("/rel").unwrap(), b"dir/file");
    assert!(p.lstat("/rel").unwrap().is_lnk());
    assert_eq!(p.lstat("/rel").unwrap().size, 8);
    assert!(p.stat("/rel").unwrap().is_reg());
    assert_eq!(p.readlink("/dir/file"), Err(e(EINVAL)));
    assert_eq!(p.stat("/dir/up"), Err(e(ENOENT)));
    assert_eq!(p.open("/abs", O_RDONLY | O_NOFOLLOW, 0), Err(e(EFTYPE)));
    // Loops.
    p.symlink("/loop2", "/loop1").unwrap();
    p.symlink("/loop1", "/loop2").unwrap();
    assert_eq!(p.stat("/loop1"), Err(e(ELOOP)));
    assert!(p.lstat("/loop1").is_ok());
    // O_CREAT through a dangling link creates its target.
    p.symlink("/dir/new", "/dangling").unwrap();
    let fd = p.open("/dangling", O_WRONLY | O_CREAT, 0o644).unwrap();
    p.write(fd, b"n").unwrap();
    p.close(fd).unwrap();
    assert_eq!(p.read_file("/dir/new").unwrap(), b"n");
    assert_eq!(
        p.open("/abs", O_WRONLY | O_CREAT | O_EXCL, 0o644),
        Err(e(EEXIST))
    );
    // Unlinking a link leaves its target; chdir through one.
    p.unlink("/abs").unwrap();
    assert!(p.stat("/dir/file").is_ok());
    p.chdir("/dl").unwrap();
    assert_eq!(p.getcwd().unwrap(), b"/dir");
    assert_eq!(p.symlink("x", "/rel"), Err(e(EEXIST)));
}

#[test]
fn processes_are_apart() {
    let k = kernel();
    let a = k.local_process().unwrap();
    let b = k.local_process().unwrap();
    assert_ne!(a.pid(), b.pid());
    let (pid, ppid) = (a.getpid().unwrap(), a.getppid().unwrap());
    assert_eq!(pid, a.pid());
    assert_eq!(ppid, 1);
    a.mkdir("/x", 0o755).unwrap();
    a.chdir("/x").unwrap();
    assert_eq!(b.getcwd().unwrap(), b"/");
    let fa = a.open("f", O_RDWR | O_CREAT, 0o644).unwrap();
    // The same number in b is not open.
    assert_eq!(b.write(fa, b"x"), Err(e(EBADF)));
    let fb = b.open("/x/f", O_RDWR, 0).unwrap();
    assert_eq!(fa, fb);
    a.write(fa, b"aaaa").unwrap();
    // Offsets are per open file.
    let mut buf = [0u8; 4];
    assert_eq!(b.read(fb, &mut buf).unwrap(), 4);
    assert_eq!(a.lseek(fa, 0, SEEK_CUR).unwrap(), 4);
    let n = k.nprocs();
    drop(b);
    assert_eq!(k.nprocs(), n - 1);
    // A dropped process's files are closed: a's still works.
    a.pwrite(fa, b"z", 0).unwrap();
}

#[test]
fn bad_calls_never_crash() {
    let k = kernel();
    let p = k.local_process().unwrap();
    // SAFETY: no pointer arguments are dereferenced in these calls (unknown
    // numbers, short blocks, bad descriptors, null pointers).
    unsafe {
        assert_eq!(p.syscall(9999, &[]), Err(e(ENOSYS)));
        assert_eq!(p.syscall(1000, &[1, 2, 3]), Err(e(ENOSYS)));
        assert_eq!(p.syscall(-5, &[]), Err(e(ENOSYS)));
        assert_eq!(p.syscall(SYS_EXIT, &[0]), Err(e(ENOSYS)));
        assert_eq!(p.syscall(SYS_PWRITE, &[0, 0]), Err(e(EFAULT)));
        assert_eq!(p.syscall(SYS_OPEN, &[]), Err(e(EFAULT)));
        assert_eq!(p.syscall(SYS_OPEN, &[0, 0, 0]), Err(e(EFAULT)));
        assert_eq!(p.syscall(SYS_READ, &[77, 0, 10]), Err(e(EBADF)));
        assert_eq!(p.syscall(SYS_CLOSE, &[u64::MAX]), Err(e(EBADF)));
        assert_eq!(
            p.syscall(SYS___SYSCTL, &[0, 100, 0, 0, 0, 0]),
            Err(e(EINVAL))
        );
        assert_eq!(p.syscall(SYS_GETPID, &[]).map(|r| r[0]), Ok(p.pid() as i64));
    }
    p.write_file("/f", b"abc").unwrap();
    let fd = p.open("/f", O_RDWR, 0).unwrap();
    let mut b = [0u8; 4];
    assert_eq!(p.pread(fd, &mut b, -1), Err(e(EINVAL)));
    assert_eq!(p.pwrite(fd, b"x", -1), Err(e(EINVAL)));
    assert_eq!(p.pwrite(fd, b"x", i64::MAX), Err(e(EFBIG)));
    assert_eq!(p.pread(fd, &mut b, i64::MAX).unwrap(), 0);
    assert_eq!(p.ftruncate(fd, -1), Err(e(EINVAL)));
    assert_eq!(p.lseek(fd, 0, 17), Err(e(EINVAL)));
    // SAFETY: a null buffer with a huge length: the kernel must refuse it.
    unsafe {
        assert_eq!(
            p.syscall(SYS_READ, &[fd as u64, 0, u64::MAX]),
            Err(e(EINVAL))
        );
        assert_eq!(
            p.syscall(SYS_READ, &[fd as u64, 0, 1 << 40]).err(),
            Some(e(EFAULT))
        );
        assert_eq!(
            p.syscall(SYS_WRITE, &[fd as u64, 0, 1 << 40]).err(),
            Some(e(EFAULT))
        );
    }
    // A huge sparse write offset is fine in rumpfs (holes cost nothing).
    assert_eq!(p.pwrite(fd, b"far", 1 << 40).unwrap(), 3);
    assert_eq!(p.fstat(fd).unwrap().size, (1 << 40) + 3);
    p.close(fd).unwrap();
}

#[test]
fn sysctl_and_getpid_and_reboot() {
    let k = kernel_n(3);
    let p = k.local_process().unwrap();
    assert_eq!(p.sysctl(&[CTL_KERN, KERN_OSTYPE]).unwrap(), b"NetBSD\0");
    assert_eq!(
        p.sysctl(&[CTL_KERN, KERN_OSRELEASE]).unwrap(),
        format!("{OSRELEASE}\0").as_bytes()
    );
    assert_eq!(p.sysctl(&[CTL_KERN, KERN_HOSTNAME]).unwrap(), b"testhost\0");
    assert_eq!(p.sysctl(&[CTL_HW, HW_NCPU]).unwrap(), 3i32.to_le_bytes());
    assert_eq!(
        p.sysctl(&[CTL_HW, HW_PHYSMEM64]).unwrap(),
        (64i64 << 20).to_le_bytes()
    );
    assert_eq!(
        p.sysctl(&[CTL_HW, HW_PAGESIZE]).unwrap(),
        4096i32.to_le_bytes()
    );
    assert_eq!(p.sysctl(&[CTL_HW, HW_MACHINE]).unwrap(), b"amd64\0");
    assert_eq!(p.sysctl_sized(&[CTL_KERN, KERN_OSTYPE], 3), Err(e(ENOMEM)));
    assert_eq!(p.sysctl(&[99, 1]), Err(e(ENOENT)));
    p.sysctl_write(&[CTL_KERN, KERN_HOSTNAME], b"newname")
        .unwrap();
    assert_eq!(k.hostname(), "newname");
    assert_eq!(
        p.sysctl_write(&[CTL_HW, HW_NCPU], &5i32.to_le_bytes()),
        Err(e(EPERM))
    );

    assert_eq!(p.reboot(RB_HALT), Err(e(EPERM)));
    let seen = Arc::new(AtomicUsize::new(0));
    let s2 = seen.clone();
    k.set_reboot_handler(Box::new(move |_k, call| {
        assert!(call.client.is_null());
        s2.store(call.flags as usize, Ordering::SeqCst);
        if call.flags & RB_DUMP != 0 {
            EIO
        } else {
            0
        }
    }));
    p.reboot(RB_HALT | RB_NOSYNC).unwrap();
    assert_eq!(seen.load(Ordering::SeqCst), (RB_HALT | RB_NOSYNC) as usize);
    assert_eq!(p.reboot(RB_DUMP), Err(e(EIO)));
}

#[test]
fn drive_specs() {
    let d = DriveSpec::parse("key=/dk,hostpath=/tmp/img,size=1m").unwrap();
    assert_eq!(d.key, "/dk");
    assert_eq!(d.hostpath, "/tmp/img");
    assert_eq!(d.size, DriveSize::Bytes(1 << 20));
    assert_eq!(d.offset, 0);
    assert_eq!(d.kind, DriveType::Blk);
    let d = DriveSpec::parse("key=/dev/x,hostpath=img,size=host,offset=2b,type=chr").unwrap();
    assert_eq!(d.size, DriveSize::Host);
    assert_eq!(d.offset, 1024);
    assert_eq!(d.kind, DriveType::Chr);
    let d = DriveSpec::parse("type=reg,size=3x2k,hostpath=h,key=/r").unwrap();
    assert_eq!(d.size, DriveSize::Bytes(6144));
    assert_eq!(d.kind, DriveType::Reg);
    assert_eq!(etfs::parse_size("12345").unwrap(), 12345);
    assert_eq!(etfs::parse_size("2g").unwrap(), 2 << 30);
    assert_eq!(etfs::parse_size("1T").unwrap(), 1 << 40);
    assert_eq!(etfs::parse_size("2w").unwrap(), 8);
    for bad in [
        "",
        "key=/dk",
        "key=/dk,hostpath=x",
        "hostpath=x,size=1m",
        "key=dk,hostpath=x,size=1m",
        "key=/dk,hostpath=x,size=1q",
        "key=/dk,hostpath=x,size=0",
        "key=/dk,hostpath=x,size=-1",
        "key=/dk,hostpath=x,size=99999999999999999999",
        "key=/dk,hostpath=x,size=1m,type=tape",
        "key=/dk,hostpath=x,size=1m,colour=red",
        "key=/dk,hostpath=x,size=1m,key=/e",
        "key=/dk,hostpath=,size=1m",
        "key=/dk,hostpath=x,size=1m,offset=",
        "key=/dk,hostpath=x,size=1m,,",
        "key=/dk/../x,hostpath=x,size=1m",
    ] {
        let r = DriveSpec::parse(bad);
        assert!(r.is_err(), "{bad:?} parsed: {r:?}");
        assert!(!r.unwrap_err().to_string().is_empty());
    }
    assert!(DriveSpec::parse("key=/dk,hostpath=x,size=1q")
        .unwrap_err()
        .to_string()
        .contains("suffix"));
    assert!(DriveSpec::parse("key=/dk,hostpath=x")
        .unwrap_err()
        .to_string()
        .contains("size"));
}

#[test]
fn drive_specs_sectorsize_and_disklabel() {
    let d = DriveSpec::parse("key=/dk,hostpath=x,size=4m,sectorsize=2048").unwrap();
    assert_eq!(d.sector_size, Some(2048));
    let d = DriveSpec::parse("key=/dk,hostpath=x,size=host").unwrap();
    assert_eq!(d.sector_size, None);
    let d = DriveSpec::parse("key=/dk,hostpath=x,disklabel=e,type=chr").unwrap();
    assert_eq!(d.size, DriveSize::Disklabel('e'));
    let fault = |spec: &str| match DriveSpec::parse(spec) {
        Err(DriveSpecError::Bad { why, .. }) => why,
        r => panic!("{spec}: {r:?}"),
    };
    for bad in ["1000", "256", "4k1", "128k", "x"] {
        let spec = format!("key=/dk,hostpath=x,size=4m,sectorsize={bad}");
        assert_eq!(
            fault(&spec),
            etfs::SpecFault::SectorSize(bad.into()),
            "{bad}"
        );
    }
    assert!(matches!(
        fault("key=/dk,hostpath=x,size=3k,sectorsize=2k"),
        etfs::SpecFault::PartialSector {
            size: 3072,
            sector: 2048
        }
    ));
    assert!(matches!(
        fault("key=/dk,hostpath=x,disklabel=A"),
        etfs::SpecFault::Disklabel(_)
    ));
    assert_eq!(
        fault("key=/dk,hostpath=x,disklabel=a,size=1m"),
        etfs::SpecFault::DisklabelAlone
    );
    assert_eq!(
        fault("key=/dk,hostpath=x,disklabel=a,offset=1m"),
        etfs::SpecFault::DisklabelAlone
    );
    assert_eq!(
        fault("key=/dk,hostpath=x,disklabel=a,disklabel=b"),
        etfs::SpecFault::Twice("disklabel")
    );
    // The message as rump_server prints it.
    assert_eq!(
        DriveSpec::parse("key=/dk,hostpath=x,size=1m,sectorsize=3")
            .unwrap_err()
            .to_string(),
        "drive spec \"key=/dk,hostpath=x,size=1m,sectorsize=3\": sectorsize=3: expected a power of two from 512 to 65536"
    );
}

#[test]
fn disklabel_partition_is_the_drive() {
    let t = TempDir::new("label");
    let img = t.path("disk.img");
    // Partition a: sectors 64..64+256; b: past the image's end.
    let mut b = vec![0u8; 1 << 20];
    let label = disklabel::build(&[(64 * 512, 256 * 512), (1 << 20, 1 << 20)]);
    b[512..512 + label.len()].copy_from_slice(&label);
    b[64 * 512..64 * 512 + 6].copy_from_slice(b"part a");
    std::fs::write(&img, &b).unwrap();
    let k = kernel();
    k.add_drive(
        &DriveSpec::parse(&format!("key=/dk,hostpath={img},disklabel=a,type=chr")).unwrap(),
        None,
    )
    .unwrap();
    let info = &k.drives()[0];
    assert_eq!((info.offset, info.size), (64 * 512, 256 * 512));
    let p = k.local_process().unwrap();
    let fd = p.open("/dk", O_RDONLY, 0).unwrap();
    let mut got = [0u8; 6];
    assert_eq!(p.pread(fd, &mut got, 0).unwrap(), 6);
    assert_eq!(&got, b"part a");
    p.close(fd).unwrap();
    let err = k
        .add_drive(
            &DriveSpec::parse(&format!("key=/b,hostpath={img},disklabel=b")).unwrap(),
            None,
        )
        .unwrap_err();
    assert!(
        matches!(
            err.fault,
            DriveFault::Disklabel {
                why: disklabel::LabelError::Beyond { .. },
                ..
            }
        ),
        "{err}"
    );
    let err = k
        .add_drive(
            &DriveSpec::parse(&format!("key=/c,hostpath={img},disklabel=c")).unwrap(),
            None,
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("drive /c: {img}: disklabel=c: the disklabel has 2 partitions (a to b)")
    );
    // No label at all.
    let plain = t.path("plain.img");
    std::fs::write(&plain, vec![0u8; 65536]).unwrap();
    let err = k
        .add_drive(
            &DriveSpec::parse(&format!("key=/p,hostpath={plain},disklabel=a")).unwrap(),
            None,
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("drive /p: {plain}: no NetBSD disklabel in the first 64 KiB")
    );
}

#[test]
fn blk_drive_is_write_back() {
    let t = TempDir::new("blk");
    let img = t.path("disk.img");
    let k = kernel();
    k.add_drive(
        &DriveSpec::parse(&format!("key=/dk,hostpath={img},size=4m")).unwrap(),
        None,
    )
    .unwrap();
    // Created, 0644, extended.
    let md = std::fs::metadata(&img).unwrap();
    assert_eq!(md.len(), 4 << 20);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(md.permissions().mode() & 0o777 & !0o022, 0o644 & !0o022);
    assert_eq!(k.drives()[0].key, "/dk");
    assert_eq!(k.drives()[0].hostpath, img);
    let p = k.local_process().unwrap();
    let st = p.stat("/dk").unwrap();
    assert_eq!(st.mode & S_IFMT, S_IFBLK);
    let fd = p.open("/dk", O_RDWR, 0).unwrap();
    let data: Vec<u8> = (0..65536u32).map(|i| (i * 7 + 3) as u8).collect();
    assert_eq!(p.pwrite(fd, &data, 1 << 20).unwrap(), data.len());
    let mut back = vec![0u8; data.len()];
    assert_eq!(p.pread(fd, &mut back, 1 << 20).unwrap(), data.len());
    assert_eq!(back, data);
    let host = std::fs::read(&img).unwrap();
    assert!(
        host[1 << 20..(1 << 20) + 65536].iter().all(|&b| b == 0),
        "written through before sync"
    );
    assert!(k.cache_stats().dirty_bytes >= 65536);
    p.sync().unwrap();
    let host = std::fs::read(&img).unwrap();
    assert_eq!(&host[1 << 20..(1 << 20) + 65536], &data[..]);
    assert_eq!(k.cache_stats().dirty_bytes, 0);
    // fsync on the device flushes too; the end of the device is honoured.
    assert_eq!(p.pwrite(fd, b"tail", (4 << 20) - 2).unwrap(), 2);
    assert_eq!(p.pwrite(fd, b"x", 4 << 20), Err(e(ENOSPC)));
    assert_eq!(p.pread(fd, &mut back, 4 << 20).unwrap(), 0);
    assert_eq!(p.lseek(fd, 0, SEEK_END).unwrap(), 4 << 20);
    p.fsync(fd).unwrap();
    let host = std::fs::read(&img).unwrap();
    assert_eq!(&host[(4 << 20) - 2..], b"ta");
    p.close(fd).unwrap();
    k.sync_all().unwrap();
}

/// The syncer writes a drive's dirty blocks back on its own after
/// `vfs.sync.filedelay`; its delays are NetBSD's `vfs.sync.*` nodes, found
/// by `CTL_QUERY` as `sysctlbyname(3)` finds them, and set by root only;
/// `vfs.sync.delay` 0 turns it off.
#[test]
fn syncer_writes_back_on_its_own_and_sysctl_sets_its_delays() {
    let t = TempDir::new("syncer");
    let img = t.path("disk.img");
    let k = Kernel::boot(KernelConfig {
        ncpu: 2,
        memlimit: 64 << 20,
        sync: syncer::SyncConfig {
            filedelay: 1,
            ..Default::default()
        },
        lockdebug: LockDebug::Abort,
        ..KernelConfig::default()
    })
    .unwrap();
    k.add_drive(
        &DriveSpec::parse(&format!("key=/dk,hostpath={img},size=4m")).unwrap(),
        None,
    )
    .unwrap();
    let p = k.local_process().unwrap();

    // Node names, as a client finds them.
    let names = |path: &[i32]| -> Vec<(String, i32, u32)> {
        let mut q = path.to_vec();
        q.push(CTL_QUERY);
        let raw = p.sysctl(&q).unwrap();
        raw.chunks_exact(SYSCTLNODE_SIZE)
            .map(|n| {
                let flags = u32::from_le_bytes(n[0..4].try_into().unwrap());
                let num = i32::from_le_bytes(n[4..8].try_into().unwrap());
                let name = &n[8..8 + SYSCTL_NAMELEN];
                let end = name.iter().position(|&b| b == 0).unwrap();
                (
                    String::from_utf8_lossy(&name[..end]).into_owned(),
                    num,
                    flags,
                )
            })
            .collect()
    };
    let top = names(&[]);
    let vfs = top.iter().find(|n| n.0 == "vfs").expect("vfs node").1;
    assert_eq!(vfs, CTL_VFS);
    let sync = names(&[vfs]);
    let sync = sync
        .iter()
        .find(|n| n.0 == "sync")
        .expect("vfs.sync")
        .clone();
    assert_eq!(sync.2 & 0xf, CTLTYPE_NODE);
    let nodes = names(&[vfs, sync.1]);
    let num = |n: &str| nodes.iter().find(|x| x.0 == n).unwrap().1;
    let get = |n: &str| {
        let v = p.sysctl(&[vfs, sync.1, num(n)]).unwrap();
        i32::from_le_bytes(v.try_into().unwrap())
    };
    assert_eq!(
        nodes.iter().map(|n| n.0.as_str()).collect::<Vec<_>>(),
        ["delay", "filedelay", "dirdelay", "metadelay"]
    );
    assert!(nodes
        .iter()
        .all(|n| n.2 & 0xf == CTLTYPE_INT && n.2 & CTLFLAG_READWRITE == CTLFLAG_READWRITE));
    assert_eq!(
        (
            get("delay"),
            get("filedelay"),
            get("dirdelay"),
            get("metadelay")
        ),
        (30, 1, 15, 10)
    );

    // Dirty blocks reach the host file without a sync.
    let fd = p.open("/dk", O_RDWR, 0).unwrap();
    let data: Vec<u8> = (0..65536u32).map(|i| (i * 13 + 5) as u8).collect();
    p.pwrite(fd, &data, 1 << 20).unwrap();
    let on_host = |off: usize, want: &[u8]| {
        let host = std::fs::read(&img).unwrap();
        &host[off..off + want.len()] == want
    };
    let t0 = std::time::Instant::now();
    while !on_host(1 << 20, &data) {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the syncer did not write the block back"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(k.cache_stats().dirty_bytes, 0);

    // Set by root; refused to others and out of range.
    p.sysctl_write(&[vfs, sync.1, num("filedelay")], &2i32.to_le_bytes())
        .unwrap();
    assert_eq!(get("filedelay"), 2);
    assert_eq!(k.syncer().config().filedelay, 2);
    let user = k
        .local_process_as(vfs::Cred {
            uid: 1000,
            gid: 1000,
        })
        .unwrap();
    assert_eq!(
        user.sysctl_write(&[vfs, sync.1, num("filedelay")], &5i32.to_le_bytes()),
        Err(e(EPERM))
    );
    assert_eq!(
        p.sysctl_write(&[vfs, sync.1, num("metadelay")], &(-1i32).to_le_bytes()),
        Err(e(EINVAL))
    );

    // delay 0: off. Nothing is written until a sync.
    p.sysctl_write(&[vfs, sync.1, num("delay")], &0i32.to_le_bytes())
        .unwrap();
    p.pwrite(fd, b"later", 2 << 20).unwrap();
    // Not synchronization: "nothing is written" needs the time in which
    // a running syncer (filedelay 2 s, a pass each second) would have.
    std::thread::sleep(Duration::from_millis(3500));
    assert!(!on_host(2 << 20, b"later"), "written with the syncer off");
    p.fsync(fd).unwrap();
    assert!(on_host(2 << 20, b"later"));
    p.close(fd).unwrap();
}

#[test]
fn chr_and_reg_drives_and_offsets() {
    let t = TempDir::new("chr");
    let chr = t.path("chr.img");
    let reg = t.path("reg.img");
    std::fs::write(&reg, vec![b'.'; 8192]).unwrap();
    let k = kernel();
    k.add_drive(
        &DriveSpec::parse(&format!(
            "key=/dev/c0,hostpath={chr},size=64k,offset=4k,type=chr"
        ))
        .unwrap(),
        None,
    )
    .unwrap();
    k.add_drive(
        &DriveSpec::parse(&format!(
            "key=/r,hostpath={reg},size=host,offset=1k,type=reg"
        ))
        .unwrap(),
        None,
    )
    .unwrap();
    assert_eq!(std::fs::metadata(&chr).unwrap().len(), 68 << 10);
    let p = k.local_process().unwrap();
    assert_eq!(p.stat("/dev/c0").unwrap().mode & S_IFMT, S_IFCHR);
    let fd = p.open("/dev/c0", O_RDWR, 0).unwrap();
    p.pwrite(fd, b"direct", 10).unwrap();
    // No sync: chr goes straight to the host file, at the offset.
    let host = std::fs::read(&chr).unwrap();
    assert_eq!(&host[4096 + 10..4096 + 16], b"direct");
    assert_eq!(k.cache_stats().dirty_bytes, 0);
    p.close(fd).unwrap();

    let st = p.stat("/r").unwrap();
    assert!(st.is_reg());
    assert_eq!(st.size, 8192 - 1024);
    let fd = p.open("/r", O_RDWR, 0).unwrap();
    let mut b = [0u8; 4];
    assert_eq!(p.read(fd, &mut b).unwrap(), 4);
    assert_eq!(&b, b"....");
    p.pwrite(fd, b"REG!", 0).unwrap();
    let host = std::fs::read(&reg).unwrap();
    assert_eq!(&host[1024..1028], b"REG!");
    assert_eq!(&host[..4], b"....");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&reg)
        .and_then(|f| {
            use std::os::unix::fs::FileExt;
            f.write_at(b"host", 1028)
        })
        .unwrap();
    assert_eq!(p.pread(fd, &mut b, 4).unwrap(), 4);
    assert_eq!(&b, b"host");
    p.fsync(fd).unwrap();
    p.close(fd).unwrap();

    // size=host needs the file; errors name the path.
    let missing = t.path("missing.img");
    let err = k
        .add_drive(
            &DriveSpec::parse(&format!("key=/m,hostpath={missing},size=host")).unwrap(),
            None,
        )
        .unwrap_err();
    assert!(
        matches!(&err.fault, DriveFault::HostNeeded { path, .. } if *path == missing),
        "{err}"
    );
    let err = err.to_string();
    assert!(
        err.starts_with("drive /m: ") && err.contains(&missing) && err.contains("No such file"),
        "{err}"
    );
    let err = k
        .add_drive(
            &DriveSpec::parse(&format!("key=/r,hostpath={reg},size=1k")).unwrap(),
            None,
        )
        .unwrap_err();
    assert!(matches!(err.fault, DriveFault::KeyInUse), "{err}");
    assert_eq!(err.to_string(), "drive /r: key already in use");
    let err = k
        .add_drive(
            &DriveSpec::parse(&format!("key=/q,hostpath={},size=1k", t.path("nodir/x"))).unwrap(),
            None,
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("nodir"), "{err}");
    k.sync_all().unwrap();
}

#[test]
fn fault_injected_write_error_is_reported_and_kept() {
    let t = TempDir::new("fault");
    let img = t.path("f.img");
    let k = kernel();
    let ctl = Arc::new(FaultControl::new(FaultMode::None));
    k.add_drive(
        &DriveSpec::parse(&format!("key=/dk,hostpath={img},size=1m")).unwrap(),
        Some(ctl.clone()),
    )
    .unwrap();
    let p = k.local_process().unwrap();
    let fd = p.open("/dk", O_RDWR, 0).unwrap();
    let data = vec![0x5au8; 65536];
    p.pwrite(fd, &data, 0).unwrap();
    ctl.set(FaultMode::WriteError);
    assert_eq!(p.fsync(fd), Err(e(EIO)));
    assert_eq!(p.sync(), Err(e(EIO)));
    assert_eq!(k.sync_all(), Err(e(EIO)));
    assert!(k.cache_stats().dirty_bytes >= 65536);
    assert!(k.cache_stats().write_errors >= 1);
    assert!(std::fs::read(&img).unwrap()[..65536]
        .iter()
        .all(|&b| b == 0));
    ctl.set(FaultMode::None);
    p.fsync(fd).unwrap();
    assert_eq!(k.cache_stats().dirty_bytes, 0);
    assert_eq!(&std::fs::read(&img).unwrap()[..65536], &data[..]);
    p.close(fd).unwrap();
    // Fault injection is for blk drives only.
    let err = k
        .add_drive(
            &DriveSpec::parse(&format!("key=/c,hostpath={},size=1m,type=chr", t.path("c")))
                .unwrap(),
            Some(ctl),
        )
        .unwrap_err();
    assert!(matches!(err.fault, DriveFault::FaultNeedsBlk), "{err}");
    assert!(err.to_string().contains("blk"), "{err}");
}

#[test]
fn stop_admitting_and_wait_idle() {
    let t = TempDir::new("idle");
    let img = t.path("h.img");
    let k = kernel_n(1);
    let ctl = Arc::new(FaultControl::new(FaultMode::None));
    k.add_drive(
        &DriveSpec::parse(&format!("key=/dk,hostpath={img},size=1m")).unwrap(),
        Some(ctl.clone()),
    )
    .unwrap();
    let p = Arc::new(k.local_process().unwrap());
    assert_eq!(k.wait_idle(Duration::from_millis(10)), 0);
    let fd = p.open("/dk", O_RDWR, 0).unwrap();
    p.pwrite(fd, b"hang", 0).unwrap();
    ctl.set(FaultMode::WriteHang);
    let p2 = p.clone();
    let th = std::thread::spawn(move || p2.fsync(fd));
    // The hung fsync runs (without its CPU: other calls still work on 1 cpu).
    let t0 = std::time::Instant::now();
    while k.running_syscalls() == 0 {
        assert!(t0.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(p.getpid().unwrap(), p.pid());
    assert_eq!(k.wait_idle(Duration::from_millis(50)), 1);
    k.stop_admitting();
    assert!(!k.is_admitting());
    assert_eq!(p.getpid(), Err(e(ESHUTDOWN)));
    assert_eq!(p.stat("/"), Err(e(ESHUTDOWN)));
    ctl.set(FaultMode::None);
    assert_eq!(k.wait_idle(Duration::from_secs(10)), 0);
    assert_eq!(th.join().unwrap(), Ok(()));
    // Drives are still synced after admission stops (the halt's step 2).
    k.sync_all().unwrap();
    assert_eq!(&std::fs::read(&img).unwrap()[..4], b"hang");
    k.quiesce();
    assert!(k.is_quiesced());
    assert_eq!(p.getpid(), Err(e(ESHUTDOWN)));
    assert!(k.local_process().is_err());
}

#[test]
fn wait_idle_excludes_the_caller() {
    let k = kernel_n(1);
    let p = k.local_process().unwrap();
    let seen = Arc::new(AtomicUsize::new(99));
    let s2 = seen.clone();
    k.set_reboot_handler(Box::new(move |k, _call| {
        k.stop_admitting();
        s2.store(k.wait_idle(Duration::from_secs(5)), Ordering::SeqCst);
        match k.sync_all() {
            Ok(()) => 0,
            Err(e) => e.0,
        }
    }));
    p.reboot(0).unwrap();
    assert_eq!(seen.load(Ordering::SeqCst), 0);
    assert_eq!(p.getpid(), Err(e(ESHUTDOWN)));
}

/// A file system that wraps rumpfs and writes a marker to its store on
/// sync, standing in for ext2.
struct MarkerFs {
    inner: Arc<RumpFs>,
    store: Arc<dyn Store>,
    syncs: AtomicUsize,
}

impl FileSystem for MarkerFs {
    fn type_name(&self) -> &'static str {
        "ext2fs"
    }
    fn root(&self) -> u64 {
        self.inner.root()
    }
    fn lookup(&self, d: u64, n: &[u8]) -> Result<u64, Errno> {
        self.inner.lookup(d, n)
    }
    fn getattr(&self, i: u64) -> Result<rumpkern::vfs::Attr, Errno> {
        self.inner.getattr(i)
    }
    fn setattr(&self, i: u64, s: &rumpkern::vfs::SetAttr) -> Result<rumpkern::vfs::Attr, Errno> {
        self.inner.setattr(i, s)
    }
    fn create(
        &self,
        d: u64,
        n: &[u8],
        k: rumpkern::vfs::FileKind,
        p: u32,
        c: rumpkern::vfs::Cred,
    ) -> Result<u64, Errno> {
        self.inner.create(d, n, k, p, c)
    }
    fn symlink(&self, d: u64, n: &[u8], t: &[u8], c: rumpkern::vfs::Cred) -> Result<u64, Errno> {
        self.inner.symlink(d, n, t, c)
    }
    fn readlink(&self, i: u64) -> Result<Vec<u8>, Errno> {
        self.inner.readlink(i)
    }
    fn link(&self, i: u64, d: u64, n: &[u8]) -> Result<(), Errno> {
        self.inner.link(i, d, n)
    }
    fn unlink(&self, d: u64, n: &[u8]) -> Result<(), Errno> {
        self.inner.unlink(d, n)
    }
    fn rmdir(&self, d: u64, n: &[u8]) -> Result<(), Errno> {
        self.inner.rmdir(d, n)
    }
    fn rename(&self, a: u64, b: &[u8], c: u64, d: &[u8]) -> Result<(), Errno> {
        self.inner.rename(a, b, c, d)
    }
    fn read(&self, i: u64, o: u64, b: &mut [u8]) -> Result<usize, Errno> {
        self.inner.read(i, o, b)
    }
    fn write(&self, i: u64, o: u64, b: &[u8]) -> Result<usize, Errno> {
        // A bug in a file system, triggered by its input.
        assert!(!b.starts_with(b"PANIC"), "MarkerFs: a bad block");
        self.inner.write(i, o, b)
    }
    fn readdir(
        &self,
        d: u64,
        c: u64,
        f: &mut dyn FnMut(rumpkern::vfs::DirEntry) -> bool,
    ) -> Result<(), Errno> {
        self.inner.readdir(d, c, f)
    }
    fn fsync(&self, _i: u64) -> Result<(), Errno> {
        self.sync()
    }
    fn sync(&self) -> Result<(), Errno> {
        self.syncs.fetch_add(1, Ordering::SeqCst);
        self.store.write(0, b"MARKER")
    }
    fn unmount(&self) -> Result<(), Errno> {
        self.sync()?;
        self.store.write(8, b"CLEAN")
    }
    fn statfs(&self) -> Result<rumpkern::vfs::FsStat, Errno> {
        self.inner.statfs()
    }
    fn open(&self, i: u64) {
        self.inner.open(i)
    }
    fn release(&self, i: u64) {
        self.inner.release(i)
    }
}

#[test]
fn mount_and_unmount() {
    let t = TempDir::new("mnt");
    let img = t.path("m.img");
    let img2 = t.path("m2.img");
    let k = kernel();
    k.add_drive(
        &DriveSpec::parse(&format!("key=/dk,hostpath={img},size=1m")).unwrap(),
        None,
    )
    .unwrap();
    k.add_drive(
        &DriveSpec::parse(&format!("key=/dc,hostpath={img2},size=1m,type=chr")).unwrap(),
        None,
    )
    .unwrap();
    let p = k.local_process().unwrap();
    p.mkdir("/mnt", 0o755).unwrap();
    assert_eq!(p.mount_ext2("/mnt", 0, "/dk"), Err(e(ENODEV)));
    let ro_seen = Arc::new(AtomicUsize::new(0));
    let r2 = ro_seen.clone();
    k.register_fs_type(
        "ext2fs",
        Box::new(move |store, ro| {
            if ro {
                r2.fetch_add(1, Ordering::SeqCst);
            }
            assert_eq!(store.size(), 1 << 20);
            Ok(Arc::new(MarkerFs {
                inner: RumpFs::new(1 << 20),
                store,
                syncs: AtomicUsize::new(0),
            }) as Arc<dyn FileSystem>)
        }),
    );
    assert_eq!(p.mount_ufs("nosuchfs", "/mnt", 0, "/dk"), Err(e(ENODEV)));
    assert_eq!(p.mount_ext2("/mnt", 0, "/dc"), Err(e(ENOTBLK)));
    assert_eq!(p.mount_ext2("/mnt", 0, "/nodev"), Err(e(ENOENT)));
    p.write_file("/plain", b"").unwrap();
    assert_eq!(p.mount_ext2("/plain", 0, "/dk"), Err(e(ENOTDIR)));
    p.write_file("/mnt/hidden", b"under").unwrap();
    p.mount_ext2("/mnt", 0, "/dk").unwrap();
    assert_eq!(k.mounts(), vec![("/mnt".to_string(), "ext2fs".to_string())]);
    p.mkdir("/other", 0o755).unwrap();
    assert_eq!(p.mount_ext2("/other", 0, "/dk"), Err(e(EBUSY)));
    // Crossing down and up.
    assert_eq!(p.stat("/mnt/hidden"), Err(e(ENOENT)));
    p.write_file("/mnt/inner", b"in").unwrap();
    assert_ne!(p.stat("/mnt").unwrap().dev, p.stat("/").unwrap().dev);
    assert_eq!(
        p.stat("/mnt/inner").unwrap().dev,
        p.stat("/mnt").unwrap().dev
    );
    p.chdir("/mnt").unwrap();
    assert_eq!(p.getcwd().unwrap(), b"/mnt");
    assert!(p.stat("../plain").is_ok());
    assert!(p.stat("./../mnt/inner").is_ok());
    assert_eq!(p.rename("/mnt/inner", "/x"), Err(e(EXDEV)));
    assert_eq!(p.link("/mnt/inner", "/x"), Err(e(EXDEV)));
    assert_eq!(p.rmdir("/mnt"), Err(e(EBUSY)));
    // Busy: the cwd is on it, then an open file.
    assert_eq!(p.unmount("/mnt", 0), Err(e(EBUSY)));
    p.chdir("/").unwrap();
    let fd = p.open("/mnt/inner", O_RDONLY, 0).unwrap();
    assert_eq!(p.unmount("/mnt", 0), Err(e(EBUSY)));
    p.close(fd).unwrap();
    // A blk drive in use by a mount cannot be opened for writing.
    assert_eq!(p.open("/dk", O_RDWR, 0), Err(e(EBUSY)));
    assert_eq!(p.unmount("/plain", 0), Err(e(EINVAL)));
    assert_eq!(p.unmount("/", 0), Err(e(EBUSY)));
    p.unmount("/mnt", 0).unwrap();
    assert!(k.mounts().is_empty());
    assert_eq!(p.read_file("/mnt/hidden").unwrap(), b"under");
    // The unmount synced the store to the host.
    let host = std::fs::read(&img).unwrap();
    assert_eq!(&host[..6], b"MARKER");
    assert_eq!(&host[8..13], b"CLEAN");
    // Read-only, and remount after unmount.
    p.mount_ext2("/other", netbsd_abi::fcntl::MNT_RDONLY, "/dk")
        .unwrap();
    assert_eq!(ro_seen.load(Ordering::SeqCst), 1);
    assert_eq!(p.write_file("/other/x", b""), Err(e(EROFS)));
    assert_eq!(p.mkdir("/other/d", 0o755), Err(e(EROFS)));
    // Forced unmount with an open file.
    let fd = p.open("/other", O_RDONLY, 0).unwrap();
    assert_eq!(p.unmount("/other", 0), Err(e(EBUSY)));
    p.unmount("/other", MNT_FORCE).unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(p.getdents_raw(fd, &mut buf), Err(e(EBADF)));
    p.close(fd).unwrap();
    k.sync_all().unwrap();
}

#[test]
fn many_threads_on_one_cpu() {
    let k = kernel_n(1);
    let p = Arc::new(k.local_process().unwrap());
    p.mkdir("/t", 0o755).unwrap();
    let mut th = Vec::new();
    for i in 0..6 {
        let p = p.clone();
        th.push(std::thread::spawn(move || {
            let path = format!("/t/f{i}");
            let fd = p.open(&path, O_RDWR | O_CREAT, 0o644).unwrap();
            for j in 0..300u32 {
                let v = j.to_le_bytes();
                p.pwrite(fd, &v, (j * 4) as i64).unwrap();
                p.getpid().unwrap();
            }
            p.close(fd).unwrap();
            let d = p.read_file(&path).unwrap();
            assert_eq!(d.len(), 1200);
            assert_eq!(&d[1196..], &299u32.to_le_bytes());
        }));
    }
    for t in th {
        t.join().unwrap();
    }
    assert_eq!(p.list_dir("/t").unwrap().len(), 8);
    assert_eq!(k.running_syscalls(), 0);
}

#[test]
fn upcall_lwproc_protocol() {
    // The sequence rumpuser_sp.c drives: handshake, syscalls, disconnect.
    let k = kernel();
    let up = k.upcalls();
    let n0 = k.nprocs();
    // Handshake: rfork from no lwp, read back the lwp and pid, switch away.
    up.schedule();
    assert!(up.lwproc_curlwp().is_null());
    assert_eq!(up.getpid(), 1);
    up.unschedule();
    up.schedule();
    assert_eq!(
        up.lwproc_rfork(rumpuser::sp::ClientHandle::NULL, 0x02, Some(c"client")),
        0
    );
    up.unschedule();
    up.schedule();
    let main = up.lwproc_curlwp();
    up.unschedule();
    assert!(!main.is_null());
    up.schedule();
    let pid = up.getpid();
    up.unschedule();
    assert!(pid > 1);
    up.schedule();
    // SAFETY: null is always a valid lwp to switch to.
    unsafe { up.lwproc_switch(std::ptr::null_mut()) };
    up.unschedule();
    assert_eq!(k.nprocs(), n0 + 1);
    // Bad rfork flags.
    up.schedule();
    assert_eq!(
        up.lwproc_rfork(rumpuser::sp::ClientHandle::NULL, 0x03, Some(c"x")),
        EINVAL
    );
    assert_eq!(up.lwproc_newlwp(99999), ESRCH);
    up.unschedule();

    // A syscall: newlwp, syscall, release.
    for _ in 0..3 {
        up.schedule();
        assert_eq!(up.lwproc_newlwp(pid), 0);
        up.unschedule();
        let mut rv = [0 as std::ffi::c_long; 2];
        up.schedule();
        // SAFETY: no address among the arguments.
        assert_eq!(unsafe { up.syscall(SYS_GETPID, &mut [], &mut rv) }, 0);
        up.unschedule();
        assert_eq!(rv, [pid as std::ffi::c_long, 1]);
        let mut rv = [0 as std::ffi::c_long; 2];
        up.schedule();
        // SAFETY: no address among the arguments.
        assert_eq!(unsafe { up.syscall(4242, &mut [], &mut rv) }, ENOSYS);
        // SAFETY: no address among the arguments.
        assert_eq!(unsafe { up.syscall(SYS_CLOSE, &mut [], &mut rv) }, EFAULT);
        let mut args: [u64; 1] = [7];
        // SAFETY: no address among the arguments.
        assert_eq!(unsafe { up.syscall(SYS_CLOSE, &mut args, &mut rv) }, EBADF);
        up.unschedule();
        up.schedule();
        up.lwproc_release();
        up.unschedule();
    }
    assert_eq!(k.nprocs(), n0 + 1);
    // Disconnect: lwpexit on the main lwp, then release it.
    up.schedule();
    // SAFETY: `main` is the lwp the kernel handed out above, not released.
    unsafe { up.lwproc_switch(main) };
    up.lwpexit();
    // SAFETY: null is always valid.
    unsafe { up.lwproc_switch(std::ptr::null_mut()) };
    up.unschedule();
    up.schedule();
    assert_eq!(up.lwproc_newlwp(pid), EBUSY);
    up.unschedule();
    up.schedule();
    // SAFETY: an lwp the kernel handed out and not released, or null.
    unsafe { up.lwproc_switch(main) };
    up.lwproc_release();
    up.unschedule();
    assert_eq!(k.nprocs(), n0);
    up.schedule();
    assert_eq!(up.lwproc_newlwp(pid), ESRCH);
    up.unschedule();
}

#[test]
fn upcall_fork_and_exec_flows() {
    // What rumpuser_sp does for PREFORK + a fork handshake, and for exec.
    let k = kernel();
    let up = k.upcalls();
    let sched = |f: &dyn Fn()| {
        up.schedule();
        f();
        up.unschedule();
    };
    let n0 = k.nprocs();
    sched(&|| {
        assert_eq!(
            up.lwproc_rfork(rumpuser::sp::ClientHandle::NULL, 0x02, Some(c"parent")),
            0
        )
    });
    let main = {
        up.schedule();
        let l = up.lwproc_curlwp();
        up.unschedule();
        l
    };
    // SAFETY: an lwp the kernel handed out and not released, or null.
    sched(&|| unsafe { up.lwproc_switch(std::ptr::null_mut()) });
    // A syscall in the parent: open a file (local memory: null client).
    let path = c"/forked";
    let open_args: [u64; 3] = [path.as_ptr() as u64, (O_RDWR | O_CREAT) as u64, 0o644];
    let run = |args: &[u64], num: i32, rv: &mut [std::ffi::c_long; 2]| -> i32 {
        up.schedule();
        let mut a = args.to_vec();
        // SAFETY: the test's arguments point at live locals.
        let e = unsafe { up.syscall(num, &mut a, rv) };
        up.unschedule();
        e
    };
    let pid_of = |l: *mut std::ffi::c_void| -> i32 {
        up.schedule();
        // SAFETY: an lwp the kernel handed out and not released, or null.
        unsafe { up.lwproc_switch(l) };
        let p = up.getpid();
        // SAFETY: an lwp the kernel handed out and not released, or null.
        unsafe { up.lwproc_switch(std::ptr::null_mut()) };
        up.unschedule();
        p
    };
    let parent_pid = pid_of(main);
    sched(&|| assert_eq!(up.lwproc_newlwp(parent_pid), 0));
    let mut rv = [0; 2];
    assert_eq!(run(&open_args, SYS_OPEN, &mut rv), 0);
    let fd = rv[0] as u64;
    sched(&|| up.lwproc_release());
    // Prefork: fork off the main lwp, copying descriptors.
    // SAFETY: an lwp the kernel handed out and not released, or null.
    sched(&|| unsafe { up.lwproc_switch(main) });
    sched(&|| {
        assert_eq!(
            up.lwproc_rfork(rumpuser::sp::ClientHandle::NULL, 0x01, Some(c"")),
            0
        )
    });
    let tmp = {
        up.schedule();
        let l = up.lwproc_curlwp();
        up.unschedule();
        l
    };
    // SAFETY: an lwp the kernel handed out and not released, or null.
    sched(&|| unsafe { up.lwproc_switch(std::ptr::null_mut()) });
    assert_eq!(k.nprocs(), n0 + 2);
    // Fork handshake: fork again from tmp, sharing its table; drop tmp.
    // SAFETY: an lwp the kernel handed out and not released, or null.
    sched(&|| unsafe { up.lwproc_switch(tmp) });
    sched(&|| {
        assert_eq!(
            up.lwproc_rfork(rumpuser::sp::ClientHandle::NULL, 0, Some(c"")),
            0
        )
    });
    let child = {
        up.schedule();
        let l = up.lwproc_curlwp();
        up.unschedule();
        l
    };
    // SAFETY: an lwp the kernel handed out and not released, or null.
    sched(&|| unsafe { up.lwproc_switch(tmp) });
    sched(&|| up.lwproc_release());
    // SAFETY: an lwp the kernel handed out and not released, or null.
    sched(&|| unsafe { up.lwproc_switch(child) });
    // SAFETY: an lwp the kernel handed out and not released, or null.
    sched(&|| unsafe { up.lwproc_switch(std::ptr::null_mut()) });
    assert_eq!(k.nprocs(), n0 + 2, "tmp process released");
    let child_pid = pid_of(child);
    assert_ne!(child_pid, parent_pid);
    // The child has the descriptor (shared from tmp, copied from parent).
    let mut st = [0u8; STAT_SIZE];
    let fstat_args: [u64; 2] = [fd, st.as_mut_ptr() as u64];
    sched(&|| assert_eq!(up.lwproc_newlwp(child_pid), 0));
    assert_eq!(run(&fstat_args, SYS_FSTAT, &mut rv), 0);
    sched(&|| up.lwproc_release());
    // Exec in the child: drain with lwpexit, then execnotify; it goes on.
    // SAFETY: an lwp the kernel handed out and not released, or null.
    sched(&|| unsafe { up.lwproc_switch(child) });
    sched(&|| up.lwpexit());
    // SAFETY: an lwp the kernel handed out and not released, or null.
    sched(&|| unsafe { up.lwproc_switch(std::ptr::null_mut()) });
    sched(&|| assert_eq!(up.lwproc_newlwp(child_pid), EBUSY));
    // SAFETY: an lwp the kernel handed out and not released, or null.
    sched(&|| unsafe { up.lwproc_switch(child) });
    sched(&|| up.execnotify(c"newprog"));
    // SAFETY: an lwp the kernel handed out and not released, or null.
    sched(&|| unsafe { up.lwproc_switch(std::ptr::null_mut()) });
    sched(&|| assert_eq!(up.lwproc_newlwp(child_pid), 0));
    assert_eq!(run(&fstat_args, SYS_FSTAT, &mut rv), 0);
    sched(&|| up.lwproc_release());
    // Disconnect both.
    for l in [main, child] {
        // SAFETY: an lwp the kernel handed out and not released, or null.
        sched(&|| unsafe { up.lwproc_switch(l) });
        sched(&|| up.lwpexit());
        // SAFETY: an lwp the kernel handed out and not released, or null.
        sched(&|| unsafe { up.lwproc_switch(std::ptr::null_mut()) });
        // SAFETY: an lwp the kernel handed out and not released, or null.
        sched(&|| unsafe { up.lwproc_switch(l) });
        sched(&|| up.lwproc_release());
    }
    assert_eq!(k.nprocs(), n0);
}

/// Rough timings of the hot paths (run with `--ignored --nocapture`).
#[test]
#[ignore]
fn timing_hot_paths() {
    let t = TempDir::new("perf");
    let img = t.path("p.img");
    let k = kernel_n(2);
    k.add_drive(
        &DriveSpec::parse(&format!("key=/dk,hostpath={img},size=256m")).unwrap(),
        None,
    )
    .unwrap();
    let p = k.local_process().unwrap();
    let n = 200_000;
    let t0 = std::time::Instant::now();
    for _ in 0..n {
        p.getpid().unwrap();
    }
    println!(
        "local getpid: {:.3} us",
        t0.elapsed().as_secs_f64() * 1e6 / n as f64
    );
    let up = k.upcalls();
    let pid = p.pid();
    let t0 = std::time::Instant::now();
    for _ in 0..n {
        let mut rv = [0; 2];
        up.schedule();
        up.lwproc_newlwp(pid);
        // SAFETY: no address among the arguments.
        unsafe { up.syscall(SYS_GETPID, &mut [], &mut rv) };
        up.lwproc_release();
        up.unschedule();
    }
    println!(
        "upcall getpid sequence: {:.3} us",
        t0.elapsed().as_secs_f64() * 1e6 / n as f64
    );
    let fd = p.open("/dk", O_RDWR, 0).unwrap();
    let buf = vec![0xa5u8; 65536];
    let total: usize = std::env::var("PERF_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32)
        << 20;
    let t0 = std::time::Instant::now();
    for i in 0..total / 65536 {
        p.pwrite(fd, &buf, (i * 65536) as i64).unwrap();
    }
    let w = t0.elapsed().as_secs_f64();
    let t1 = std::time::Instant::now();
    p.sync().unwrap();
    let s = t1.elapsed().as_secs_f64();
    let mib = (total >> 20) as f64;
    println!(
        "64k pwrite: {:.1} MiB/s in memory, {:.1} MiB/s with sync",
        mib / w,
        mib / (w + s)
    );
    let mut rb = vec![0u8; 65536];
    let t0 = std::time::Instant::now();
    for i in 0..total / 65536 {
        p.pread(fd, &mut rb, (i * 65536) as i64).unwrap();
    }
    println!("64k pread: {:.1} MiB/s", mib / t0.elapsed().as_secs_f64());
}

/// Every directory a path walks through must grant search permission to
/// the walker (root aside), as on NetBSD: a private directory hides what
/// is under it even from a name that would otherwise be readable.
#[test]
fn path_walks_need_search_permission() {
    use rumpkern::vfs::Cred;
    let k = kernel();
    let root = k.local_process().unwrap();
    let user = k
        .local_process_as(Cred {
            uid: 1000,
            gid: 100,
        })
        .unwrap();
    root.mkdir("/priv", 0o755).unwrap();
    root.mkdir("/priv/inner", 0o755).unwrap();
    root.write_file("/priv/inner/open", b"o").unwrap();
    assert_eq!(user.read_file("/priv/inner/open").unwrap(), b"o");
    // Readable but not searchable: names listed, nothing reached.
    root.chmod("/priv", 0o644).unwrap();
    assert_eq!(user.stat("/priv/inner/open").err(), Some(Errno(EACCES)));
    assert_eq!(
        user.open("/priv/inner/open", O_RDONLY, 0).err(),
        Some(Errno(EACCES))
    );
    assert_eq!(
        user.open("/priv/new", O_WRONLY | O_CREAT, 0o644).err(),
        Some(Errno(EACCES))
    );
    assert_eq!(
        user.mkdir("/priv/inner/d", 0o755).err(),
        Some(Errno(EACCES))
    );
    assert_eq!(user.stat("/priv/../priv/inner").err(), Some(Errno(EACCES)));
    // The directory itself is still there to stat.
    assert!(user.stat("/priv").unwrap().is_dir());
    // Root searches anything; the owner's own bits count for the owner.
    assert_eq!(root.read_file("/priv/inner/open").unwrap(), b"o");
    root.chown("/priv", 1000, 0).unwrap();
    root.chmod("/priv", 0o100).unwrap();
    assert_eq!(user.read_file("/priv/inner/open").unwrap(), b"o");
    root.chmod("/priv", 0o677).unwrap();
    assert_eq!(user.stat("/priv/inner").err(), Some(Errno(EACCES)));
    // Group bits for a member of the group, and a relative walk from a
    // directory descriptor checks that directory.
    root.chown("/priv", 0, 100).unwrap();
    root.chmod("/priv", 0o710).unwrap();
    assert!(user.stat("/priv/inner").unwrap().is_dir());
    let dfd = root.open("/priv", O_RDONLY | O_DIRECTORY, 0).unwrap();
    root.chmod("/priv", 0o700).unwrap();
    assert!(root.fstatat(dfd, "inner", 0).unwrap().is_dir());
    root.close(dfd).unwrap();
}

/// Supplementary groups count wherever the primary one does: group
/// permission bits, search, set-group-id and a chown to one's own group.
#[test]
fn supplementary_groups() {
    use rumpkern::vfs::Cred;
    let k = kernel();
    let root = k.local_process().unwrap();
    let plain = k
        .local_process_as(Cred {
            uid: 1000,
            gid: 100,
        })
        .unwrap();
    let member = k
        .local_process_in_groups(
            Cred {
                uid: 1000,
                gid: 100,
            },
            &[7, 100, 42],
        )
        .unwrap();
    assert_eq!(plain.getgroups().unwrap(), Vec::<u32>::new());
    assert_eq!(member.getgroups().unwrap(), vec![7, 42]);
    root.mkdir("/staff", 0o750).unwrap();
    root.chown("/staff", 0, 42).unwrap();
    root.write_file("/staff/doc", b"d").unwrap();
    root.chown("/staff/doc", 0, 42).unwrap();
    root.chmod("/staff/doc", 0o640).unwrap();
    assert_eq!(plain.read_file("/staff/doc").err(), Some(Errno(EACCES)));
    assert_eq!(member.read_file("/staff/doc").unwrap(), b"d");
    assert_eq!(
        member.open("/staff/doc", O_WRONLY, 0).err(),
        Some(Errno(EACCES))
    );
    // The owner may give a file to any group it is in, and set-group-id
    // on it only for such a group.
    root.chmod("/staff", 0o777).unwrap();
    member.write_file("/staff/mine", b"m").unwrap();
    member.chown("/staff/mine", u32::MAX, 7).unwrap();
    assert_eq!(root.stat("/staff/mine").unwrap().gid, 7);
    member.chmod("/staff/mine", 0o2755).unwrap();
    assert_eq!(
        plain.chown("/staff/mine", u32::MAX, 42).err(),
        Some(Errno(EPERM))
    );
    assert_eq!(
        member.chown("/staff/mine", u32::MAX, 43).err(),
        Some(Errno(EPERM))
    );
}

/// The calls real programs need: credentials and mode bits, chown,
/// times, statvfs1, descriptors, vectored I/O, the *at family.
#[test]
fn posix_calls_and_credentials() {
    use rumpkern::vfs::Cred;
    let k = kernel();
    let root = k.local_process().unwrap();
    let user = k
        .local_process_as(Cred {
            uid: 1000,
            gid: 100,
        })
        .unwrap();
    assert_eq!(user.getuid().map(|x| x.0), Ok(1000));
    assert_eq!(user.getgid().map(|x| x.0), Ok(100));
    assert_eq!(root.getuid().map(|x| x.0), Ok(0));

    root.mkdir("/d", 0o755).unwrap();
    root.write_file("/d/secret", b"s").unwrap();
    root.chmod("/d/secret", 0o600).unwrap();
    assert_eq!(user.open("/d/secret", O_RDONLY, 0), Err(Errno(EACCES)));
    assert_eq!(user.access("/d/secret", R_OK), Err(Errno(EACCES)));
    assert_eq!(root.access("/d/secret", R_OK | W_OK), Ok(()));
    assert_eq!(root.access("/d/secret", X_OK), Err(Errno(EACCES)));
    assert_eq!(
        user.open("/d/new", O_WRONLY | O_CREAT, 0o644),
        Err(Errno(EACCES))
    );
    assert_eq!(user.unlink("/d/secret"), Err(Errno(EACCES)));
    assert_eq!(user.chmod("/d/secret", 0o644), Err(Errno(EPERM)));
    assert_eq!(user.chown("/d/secret", 1000, 100), Err(Errno(EPERM)));
    // Give the file away; the owner may then read it and change its group
    // to its own, but not give it on.
    root.chown("/d/secret", 1000, 0).unwrap();
    let st = root.stat("/d/secret").unwrap();
    assert_eq!((st.uid, st.gid), (1000, 0));
    assert_eq!(user.read_file("/d/secret").unwrap(), b"s");
    user.chown("/d/secret", u32::MAX, 100).unwrap();
    assert_eq!(user.chown("/d/secret", 0, u32::MAX), Err(Errno(EPERM)));
    // A user's new file belongs to it.
    root.chown("/d", 1000, 100).unwrap();
    user.write_file("/d/mine", b"m").unwrap();
    assert_eq!(root.stat("/d/mine").unwrap().uid, 1000);

    // Times: explicit, omitted, now.
    let t = Timespec {
        sec: 1_000_000,
        nsec: 5,
    };
    root.utimens("/d/mine", [t, Timespec::OMIT], true).unwrap();
    let st = root.stat("/d/mine").unwrap();
    assert_eq!(st.atime, t);
    root.utimes("/d/mine", Some([t, t])).unwrap();
    assert_eq!(
        root.stat("/d/mine").unwrap().mtime,
        Timespec {
            sec: 1_000_000,
            nsec: 0
        }
    );

    // truncate, statvfs1.
    root.truncate("/d/mine", 10).unwrap();
    assert_eq!(root.stat("/d/mine").unwrap().size, 10);
    let sv = root.statvfs("/d").unwrap();
    assert_eq!(sv.fstypename, b"rumpfs");
    assert_eq!(sv.mntonname, b"/");
    assert!(sv.bsize > 0 && sv.blocks > 0);

    // Descriptors.
    let fd = root.open("/d/mine", O_RDWR, 0).unwrap();
    let d = root.dup(fd).unwrap();
    assert!(d > fd);
    assert_eq!(root.dup2(fd, 40), Ok(40));
    assert_eq!(root.fcntl(40, F_GETFD, 0), Ok(0));
    root.fcntl(40, F_SETFD, FD_CLOEXEC as i64).unwrap();
    assert_eq!(root.fcntl(40, F_GETFD, 0), Ok(FD_CLOEXEC as i64));
    assert_eq!(root.fcntl(fd, F_DUPFD, 50), Ok(50));
    assert_eq!(root.fcntl(fd, F_GETFL, 0), Ok(O_RDWR as i64));
    root.fcntl(fd, F_SETFL, O_APPEND as i64).unwrap();
    assert_eq!(root.fcntl(fd, F_GETFL, 0), Ok((O_RDWR | O_APPEND) as i64));
    assert_eq!(root.writev(fd, &[b"ab", b"cd"]), Ok(4));
    let (mut a, mut b) = ([0u8; 3], [0u8; 3]);
    assert_eq!(root.preadv(d, &mut [&mut a, &mut b], 9), Ok(5));
    assert_eq!((&a, &b[..2]), (&[0, b'a', b'b'], &b"cd"[..]));
    assert_eq!(root.fsync_range(fd, FDATASYNC, 0, 0), Ok(()));
    assert_eq!(root.fsync_range(fd, 0, 0, 0), Err(Errno(EINVAL)));
    assert_eq!(root.fcntl(fd, 99, 0), Err(Errno(EINVAL)));
    for f in [fd, d, 40, 50] {
        root.close(f).unwrap();
    }

    // The *at family, relative to a directory descriptor.
    let dfd = root.open("/d", O_RDONLY | O_DIRECTORY, 0).unwrap();
    root.mkdirat(dfd, "sub", 0o700).unwrap();
    let f = root
        .openat(dfd, "sub/x", O_WRONLY | O_CREAT, 0o640)
        .unwrap();
    root.close(f).unwrap();
    root.symlinkat("sub/x", dfd, "lnk").unwrap();
    assert_eq!(root.readlinkat(dfd, "lnk").unwrap(), b"sub/x");
    assert!(root
        .fstatat(dfd, "lnk", AT_SYMLINK_NOFOLLOW)
        .unwrap()
        .is_lnk());
    assert!(root.fstatat(dfd, "lnk", 0).unwrap().is_reg());
    root.linkat(dfd, "sub/x", dfd, "hard", 0).unwrap();
    root.renameat(dfd, "hard", AT_FDCWD, "/d/sub/y").unwrap();
    root.fchmodat(dfd, "sub/y", 0o600, 0).unwrap();
    root.fchownat(dfd, "sub/y", 7, 8, 0).unwrap();
    let st = root.stat("/d/sub/x").unwrap();
    assert_eq!(
        (st.mode & 0o7777, st.uid, st.gid, st.nlink),
        (0o600, 7, 8, 2)
    );
    root.faccessat(dfd, "sub/y", R_OK, 0).unwrap();
    root.unlinkat(dfd, "sub/y", 0).unwrap();
    assert_eq!(
        root.unlinkat(dfd, "sub", AT_REMOVEDIR),
        Err(Errno(ENOTEMPTY))
    );
    root.unlinkat(dfd, "sub/x", 0).unwrap();
    root.unlinkat(dfd, "sub", AT_REMOVEDIR).unwrap();
    assert_eq!(root.openat(f, "x", O_RDONLY, 0), Err(Errno(EBADF)));
    root.close(dfd).unwrap();

    // umask applies to new nodes; mkfifo and mknod.
    assert_eq!(root.umask(0o077), Ok(0));
    root.mkdir("/d/m", 0o777).unwrap();
    assert_eq!(root.stat("/d/m").unwrap().mode & 0o777, 0o700);
    root.mkfifo("/d/fifo", 0o666).unwrap();
    assert_eq!(root.stat("/d/fifo").unwrap().mode & S_IFMT, S_IFIFO);
    assert_eq!(user.mknod("/d/dev", S_IFCHR | 0o600, 0), Err(Errno(EPERM)));
    root.mknod("/d/dev", S_IFCHR | 0o600, 0x0102).unwrap();
    let st = root.stat("/d/dev").unwrap();
    assert_eq!((st.mode & S_IFMT, st.rdev), (S_IFCHR, 0x0102));
}

/// A reboot handler that, through the safe upcall table, releases the lwp
/// its local call runs on, makes new lwps, switches and unschedules: the
/// call's lwp stays alive (the local process owns it for the whole call),
/// so the call returns normally and the process keeps working.
#[test]
fn a_callback_cannot_free_the_lwp_of_a_local_call() {
    let k = kernel();
    let n0 = k.nprocs();
    let p = k.local_process().unwrap();
    let pid = p.pid();
    let weak = Arc::downgrade(&k);
    k.set_reboot_handler(Box::new(move |_k, _call| {
        let up = weak.upgrade().expect("kernel alive").upcalls();
        up.lwproc_release();
        assert_eq!(up.lwproc_newlwp(1), 0);
        up.lwproc_release();
        assert_eq!(up.lwproc_newlwp(pid), 0);
        up.lwproc_release();
        up.unschedule();
        up.schedule();
        0
    }));
    for _ in 0..3 {
        p.reboot(RB_HALT | RB_NOSYNC).unwrap();
        assert_eq!(p.getpid().unwrap(), pid);
    }
    assert_eq!(k.nprocs(), n0 + 1);
    drop(p);
    // The process went with its handle: its lwps were all freed.
    assert_eq!(k.nprocs(), n0);
}

/// Scheduling through a kernel's safe upcall table and then dropping the
/// table and the kernel leaves the thread holding a CPU of a `Sched` that
/// the hold keeps alive: unscheduling (and blocking) later, through
/// another kernel, touch live memory (valgrind and ASan find nothing).
#[test]
fn dropping_a_kernel_whose_cpu_a_thread_holds_is_harmless() {
    std::thread::spawn(|| {
        let k = kernel_n(1);
        let up = k.upcalls();
        up.schedule();
        drop(up);
        drop(k);
        let k2 = kernel_n(1);
        let up2 = k2.upcalls();
        // A blocking hypercall gives back the CPU of the dropped kernel's
        // scheduler and takes it again.
        let n = up2.backend_unschedule(0, std::ptr::null_mut());
        up2.backend_schedule(n, std::ptr::null_mut());
        up2.unschedule();
        // The thread is free: the second kernel serves it.
        let p = k2.local_process().unwrap();
        assert!(p.getpid().is_ok());
    })
    .join()
    .unwrap();
}

/// A file system whose operation panics: that call fails with `EIO`, the
/// file system turns read-only for good (it is not written again, not
/// even marked clean at unmount), reads go on, and the rest of the kernel
/// is unaffected.
#[test]
fn a_file_system_whose_operation_panicked_goes_read_only() {
    let t = TempDir::new("fspanic");
    let img = t.path("p.img");
    let k = kernel();
    k.add_drive(
        &DriveSpec::parse(&format!("key=/dk,hostpath={img},size=1m")).unwrap(),
        None,
    )
    .unwrap();
    k.register_fs_type(
        "ext2fs",
        Box::new(|store, _ro| {
            Ok(Arc::new(MarkerFs {
                inner: RumpFs::new(1 << 20),
                store,
                syncs: AtomicUsize::new(0),
            }) as Arc<dyn FileSystem>)
        }),
    );
    let p = k.local_process().unwrap();
    p.mkdir("/mnt", 0o755).unwrap();
    p.mount_ext2("/mnt", 0, "/dk").unwrap();
    p.write_file("/mnt/a", b"kept").unwrap();
    p.mkdir("/mnt/dir", 0o755).unwrap();
    let fd = p.open("/mnt/a", O_RDWR, 0).unwrap();
    assert_eq!(p.pwrite(fd, b"PANIC", 0), Err(e(EIO)));
    // Read-only from now on: no change goes through.
    assert_eq!(p.pwrite(fd, b"more", 0), Err(e(EROFS)));
    assert_eq!(p.write_file("/mnt/c", b"x"), Err(e(EROFS)));
    assert_eq!(p.mkdir("/mnt/d", 0o755), Err(e(EROFS)));
    assert_eq!(p.rmdir("/mnt/dir"), Err(e(EROFS)));
    assert_eq!(p.unlink("/mnt/a"), Err(e(EROFS)));
    assert_eq!(p.fsync(fd), Err(e(EIO)));
    // Reads go on.
    assert_eq!(p.read_file("/mnt/a").unwrap(), b"kept");
    assert!(p.stat("/mnt/dir").is_ok());
    p.close(fd).unwrap();
    // The rest of the kernel is unaffected.
    p.write_file("/elsewhere", b"fine").unwrap();
    assert_eq!(p.read_file("/elsewhere").unwrap(), b"fine");
    k.sync_all().unwrap();
    // Unmount works, without marking the file system clean.
    p.unmount("/mnt", 0).unwrap();
    let host = std::fs::read(&img).unwrap();
    assert_ne!(&host[8..13], b"CLEAN");
    assert_eq!(k.running_syscalls(), 0);
}

/// An lwp is released only through the upcall table that made it: code
/// holding another table (a callback, a file system calling
/// `Kernel::upcalls()`) cannot free a sysproxy connection's main lwp,
/// whose pointer the server keeps and switches back to.
#[test]
fn only_the_table_that_made_an_lwp_releases_it() {
    std::thread::spawn(|| {
        let k = kernel();
        let server = k.upcalls();
        let other = k.upcalls();
        let n0 = k.nprocs();
        server.schedule();
        assert_eq!(
            server.lwproc_rfork(rumpuser::sp::ClientHandle::NULL, 0x02, Some(c"conn")),
            0
        );
        let main = server.lwproc_curlwp();
        assert!(!main.is_null());
        let pid = server.getpid();
        // Another table's release and unschedule leave it alone.
        other.lwproc_release();
        other.unschedule();
        other.schedule();
        assert_eq!(other.lwproc_curlwp(), main);
        // SAFETY: `main` was made by `server` and not released by it.
        unsafe { server.lwproc_switch(std::ptr::null_mut()) };
        server.unschedule();
        server.schedule();
        // SAFETY: as above: still alive.
        unsafe { server.lwproc_switch(main) };
        assert_eq!(server.getpid(), pid);
        assert_eq!(k.nprocs(), n0 + 1);
        // Its maker releases it: freed at the unschedule, with its process.
        server.lwproc_release();
        server.unschedule();
        assert_eq!(k.nprocs(), n0);
    })
    .join()
    .unwrap();
}
