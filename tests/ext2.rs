//! ext2 images served by rump_server (docs/design.md, "ext2"): made by mke2fs,
//! written through the server, halted, then checked by e2fsprogs.

mod common;

use rumpclient::Syscalls as _;
use std::path::Path;
use std::time::Duration;

use common::*;
use netbsd_abi::errno::{EFTYPE, ENOSPC};
use netbsd_abi::fcntl::{O_CREAT, O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY};
use rumpclient::Error;

fn serve(d: &Path, img: &Path) -> Server {
    Server::start(
        d,
        &[
            "-d",
            &format!("key=/dk,hostpath={},size=host", img.display()),
        ],
    )
}

fn mount(c: &Client) {
    c.mkdir("/mnt", 0o755).expect("mkdir /mnt");
    c.mount_ext2("/mnt", 0, "/dk").expect("mount ext2fs");
}

fn put(c: &Client, path: &str, data: &[u8]) {
    let fd = c
        .open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        .unwrap_or_else(|e| panic!("create {path}: {e}"));
    let mut done = 0;
    while done < data.len() {
        let end = (done + (1 << 20)).min(data.len());
        done += c
            .write(fd, &data[done..end])
            .unwrap_or_else(|e| panic!("write {path}: {e}"));
    }
    c.close(fd).unwrap();
}

fn get(c: &Client, path: &str) -> Vec<u8> {
    let fd = c
        .open(path, O_RDONLY, 0)
        .unwrap_or_else(|e| panic!("open {path}: {e}"));
    let mut out = vec![];
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = c.read(fd, &mut buf).unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    c.close(fd).unwrap();
    out
}

fn halt(s: &mut Server) {
    let o = s.halt(&[]);
    assert!(o.status.success(), "rump.halt: {}", stderr(&o));
    assert_eq!(
        s.wait_exit(Duration::from_secs(30))
            .and_then(|st| st.code()),
        Some(0)
    );
}

#[test]
fn images_from_mke2fs_read_back_byte_exact() {
    require_e2fsprogs();
    let d = tmpdir();
    // A host tree for `mke2fs -d`.
    let tree = d.path().join("tree");
    std::fs::create_dir_all(tree.join("sub/deeper")).unwrap();
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("small.txt", b"hello, ext2\n".to_vec()),
        ("sub/medium", pattern(70_000, 1)),
        ("sub/deeper/big", pattern(3_000_000, 2)),
    ];
    for (p, data) in &files {
        std::fs::write(tree.join(p), data).unwrap();
    }
    for (name, args) in [
        ("1k", vec!["-b", "1024"]),
        ("4k", vec!["-b", "4096"]),
        ("rev0", vec!["-b", "1024", "-r", "0"]),
    ] {
        let img = d.path().join(format!("{name}.img"));
        let mut a = args.clone();
        let treearg = tree.to_str().unwrap().to_string();
        if name != "rev0" {
            a.extend(["-d", &treearg]);
        }
        mke2fs(&img, &a, "16M");
        if name == "rev0" {
            // Revision 0 has no -d: write the files with debugfs.
            for (p, _) in &files {
                let dir = Path::new(p).parent().unwrap();
                let mut acc = String::new();
                for comp in dir.components() {
                    acc.push('/');
                    acc.push_str(comp.as_os_str().to_str().unwrap());
                    let _ = common::host_cmd("debugfs")
                        .args(["-w", "-R", &format!("mkdir {acc}")])
                        .arg(&img)
                        .output();
                }
                let o = common::host_cmd("debugfs")
                    .args([
                        "-w",
                        "-R",
                        &format!("write {} /{p}", tree.join(p).display()),
                    ])
                    .arg(&img)
                    .output()
                    .unwrap();
                assert!(o.status.success());
            }
        }
        let sd = d.path().join(format!("srv-{name}"));
        std::fs::create_dir(&sd).unwrap();
        let mut s = serve(&sd, &img);
        let c = s.client();
        mount(&c);
        for (p, data) in &files {
            assert_eq!(&get(&c, &format!("/mnt/{p}")), data, "{name}: /{p}");
        }
        drop(c);
        halt(&mut s);
        e2fsck_clean(&img);
    }
}

#[test]
fn a_tree_written_through_the_server_checks_clean_and_reads_back() {
    require_e2fsprogs();
    let d = tmpdir();
    let img = d.path().join("img");
    mke2fs(&img, &["-b", "1024"], "96M");
    let mut expect: Vec<(String, Vec<u8>)> = vec![];
    {
        let mut s = serve(d.path(), &img);
        let c = s.client();
        mount(&c);
        // Hundreds of files of many sizes in nested directories.
        for dir in 0..6 {
            let dpath = format!("/mnt/d{dir}/e{dir}/f{dir}");
            let mut acc = String::new();
            for part in dpath.trim_start_matches('/').split('/') {
                acc.push('/');
                acc.push_str(part);
                if acc != "/mnt" {
                    c.mkdir(&acc, 0o755).unwrap();
                }
            }
            for i in 0..40 {
                let size = [0, 1, 511, 1024, 4097, 12 * 1024 + 3, 70_000, 300_000][i % 8];
                let data = pattern(size, (dir * 1000 + i) as u64);
                let p = format!("{dpath}/file{i}");
                put(&c, &p, &data);
                expect.push((p, data));
            }
        }
        // Past the double-indirect limit of 1 KiB blocks (12 + 256 + 65536
        // blocks): a sparse file with data at 65 MiB.
        let fd = c.open("/mnt/sparse", O_RDWR | O_CREAT, 0o600).unwrap();
        let tail = pattern(5000, 77);
        let off = 65 * 1024 * 1024 + 333;
        c.pwrite(fd, &tail, off as i64).unwrap();
        c.pwrite(fd, b"head", 0).unwrap();
        c.close(fd).unwrap();
        let mut sparse = vec![0u8; off + tail.len()];
        sparse[..4].copy_from_slice(b"head");
        sparse[off..].copy_from_slice(&tail);
        expect.push(("/mnt/sparse".into(), sparse));
        // Renames and unlinks.
        c.rename("/mnt/d0/e0/f0/file1", "/mnt/d1/renamed").unwrap();
        let moved = expect
            .iter()
            .position(|(p, _)| p == "/mnt/d0/e0/f0/file1")
            .unwrap();
        expect[moved].0 = "/mnt/d1/renamed".into();
        c.rename("/mnt/d2", "/mnt/d1/d2moved").unwrap();
        for e in expect.iter_mut() {
            if let Some(rest) = e.0.strip_prefix("/mnt/d2/") {
                e.0 = format!("/mnt/d1/d2moved/{rest}");
            }
        }
        for i in (0..40).step_by(3) {
            let p = format!("/mnt/d3/e3/f3/file{i}");
            c.unlink(&p).unwrap();
            expect.retain(|(q, _)| *q != p);
        }
        drop(c);
        halt(&mut s);
    }
    e2fsck_clean(&img);
    for (p, data) in expect.iter().filter(|(p, _)| p != "/mnt/sparse").take(60) {
        assert_eq!(
            &debugfs_cat(&img, p.trim_start_matches("/mnt")),
            data,
            "debugfs cat {p}"
        );
    }
    // A fresh server reads everything back.
    let d2 = d.path().join("again");
    std::fs::create_dir(&d2).unwrap();
    let mut s = serve(&d2, &img);
    let c = s.client();
    mount(&c);
    for (p, data) in &expect {
        assert_eq!(&get(&c, p), data, "{p} after a fresh mount");
    }
    drop(c);
    halt(&mut s);
    e2fsck_clean(&img);
}

#[test]
fn a_full_file_system_says_enospc_and_stays_consistent() {
    require_e2fsprogs();
    let d = tmpdir();
    let img = d.path().join("img");
    mke2fs(&img, &["-b", "1024", "-m", "0"], "2M");
    let mut s = serve(d.path(), &img);
    let c = s.client();
    mount(&c);
    let fd = c.open("/mnt/fill", O_WRONLY | O_CREAT, 0o644).unwrap();
    let chunk = pattern(64 * 1024, 5);
    let mut written = 0usize;
    let err = loop {
        match c.write(fd, &chunk) {
            Ok(n) => written += n,
            Err(e) => break e,
        }
        assert!(
            written < 4 << 20,
            "a 2 MiB file system took more than 4 MiB"
        );
    };
    assert!(matches!(err, Error::Errno(e) if e.0 == ENOSPC), "{err:?}");
    c.close(fd).unwrap();
    assert_eq!(c.stat("/mnt/fill").unwrap().size as usize, written);
    drop(c);
    halt(&mut s);
    e2fsck_clean(&img);
}

#[test]
fn incompatible_images_are_refused_and_the_server_stays_up() {
    require_e2fsprogs();
    let d = tmpdir();
    let ext4 = d.path().join("ext4.img");
    let o = common::host_cmd("mke2fs")
        .args(["-q", "-F", "-t", "ext4"])
        .arg(&ext4)
        .arg("8M")
        .output()
        .unwrap();
    assert!(o.status.success());
    let ext3 = d.path().join("ext3.img");
    let o = common::host_cmd("mke2fs")
        .args(["-q", "-F", "-t", "ext3"])
        .arg(&ext3)
        .arg("8M")
        .output()
        .unwrap();
    assert!(o.status.success());
    let o = common::host_cmd("debugfs")
        .args(["-w", "-R", "feature needs_recovery"])
        .arg(&ext3)
        .output()
        .unwrap();
    assert!(o.status.success());

    let s = Server::start(
        d.path(),
        &[
            "-d",
            &format!("key=/ext4,hostpath={},size=host", ext4.display()),
            "-d",
            &format!("key=/ext3,hostpath={},size=host", ext3.display()),
        ],
    );
    let c = s.client();
    c.mkdir("/mnt", 0o755).unwrap();
    for dev in ["/ext4", "/ext3"] {
        match c.mount_ext2("/mnt", 0, dev) {
            Err(Error::Errno(e)) => assert_eq!(e.0, EFTYPE, "{dev}"),
            other => panic!("{dev}: mount must be refused, got {other:?}"),
        }
        let o = s.tool(RUMPCTL, &["mount", dev, "/mnt"]);
        assert_eq!(o.status.code(), Some(1));
        assert_eq!(
            stderr(&o).trim(),
            format!("rumpctl: mount {dev} on /mnt: Inappropriate file type or format (an ext2 feature this kernel lacks)")
        );
    }
    c.getpid().expect("the server stays up");
}

/// A host tree: nested directories, files of awkward sizes (empty, one
/// byte, around the 64 KiB copy chunk, large), a private mode, a
/// symbolic link.
fn make_tree(root: &Path) {
    std::fs::create_dir_all(root.join("sub/deeper/deepest")).unwrap();
    std::fs::create_dir_all(root.join("empty-dir")).unwrap();
    for (p, len, seed) in [
        ("empty", 0, 1),
        ("one", 1, 2),
        ("sub/chunk", 65536, 3),
        ("sub/chunk+1", 65537, 4),
        ("sub/deeper/big.bin", 1_300_001, 5),
        ("sub/deeper/deepest/x", 4095, 6),
    ] {
        std::fs::write(root.join(p), pattern(len, seed)).unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(root.join("one"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink("deeper/big.bin", root.join("sub/link")).unwrap();
}

/// Every entry under `a` and `b`: same names, kinds, permission bits,
/// bytes and link targets.
fn same_tree(a: &Path, b: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let names = |d: &Path| {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        names(a),
        names(b),
        "entries of {} and {}",
        a.display(),
        b.display()
    );
    for n in names(a) {
        let (x, y) = (a.join(&n), b.join(&n));
        let (mx, my) = (
            std::fs::symlink_metadata(&x).unwrap(),
            std::fs::symlink_metadata(&y).unwrap(),
        );
        assert_eq!(mx.file_type(), my.file_type(), "{}", y.display());
        if mx.file_type().is_symlink() {
            assert_eq!(
                std::fs::read_link(&x).unwrap(),
                std::fs::read_link(&y).unwrap(),
                "{}",
                y.display()
            );
            continue;
        }
        assert_eq!(
            mx.permissions().mode() & 0o7777,
            my.permissions().mode() & 0o7777,
            "mode of {}",
            y.display()
        );
        if mx.is_dir() {
            same_tree(&x, &y);
        } else {
            assert!(
                std::fs::read(&x).unwrap() == std::fs::read(&y).unwrap(),
                "bytes of {}",
                y.display()
            );
        }
    }
}

/// `rumpctl cp -R` into an ext2 drive and back out is byte-exact, and the
/// image holds the same bytes for e2fsprogs after the halt.
#[test]
fn rumpctl_cp_r_in_and_out_is_byte_exact() {
    require_e2fsprogs();
    let d = tmpdir();
    let img = d.path().join("img");
    mke2fs(&img, &[], "16M");
    let tree = d.path().join("tree");
    make_tree(&tree);
    let mut s = serve(d.path(), &img);
    let ok = |args: &[&str]| {
        let o = s.tool(RUMPCTL, args);
        assert!(o.status.success(), "rumpctl {args:?}: {}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    ok(&["mkdir", "/mnt"]);
    ok(&["mount", "/dk", "/mnt"]);
    // Into an existing directory: the tree goes inside under its name.
    ok(&["cp", "-R", tree.to_str().unwrap(), ":/mnt"]);
    let listing = ok(&["ls", "-l", "/mnt/tree/sub"]);
    assert!(listing.contains("link -> deeper/big.bin"), "{listing}");
    assert!(
        ok(&["ls", "-l", "/mnt/tree"]).contains("-rw-------"),
        "mode kept"
    );
    // Out to a new name.
    let back = d.path().join("back");
    ok(&["cp", "-R", ":/mnt/tree", back.to_str().unwrap()]);
    same_tree(&tree, &back);
    // Within the kernel, then out again.
    ok(&["cp", "-R", ":/mnt/tree", ":/mnt/copy"]);
    let back2 = d.path().join("back2");
    ok(&["cp", "-R", ":/mnt/copy", back2.to_str().unwrap()]);
    same_tree(&tree, &back2);
    // A directory without -R is refused, naming it.
    let o = s.tool(RUMPCTL, &["cp", tree.to_str().unwrap(), ":/mnt/x"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("is a directory") && stderr(&o).contains("-R"),
        "{}",
        stderr(&o)
    );
    halt(&mut s);
    e2fsck_clean(&img);
    assert_eq!(
        debugfs_cat(&img, "/tree/sub/deeper/big.bin"),
        pattern(1_300_001, 5)
    );
}

/// `rump.halt -n` leaves a mounted ext2 file system marked not clean; the
/// next read-write mount is refused with a message that says so and what
/// to do, a read-only one works, and a missing special or mount point is
/// named as the culprit.
#[test]
fn unclean_image_is_refused_with_a_message_that_says_why() {
    require_e2fsprogs();
    let d = tmpdir();
    let img = d.path().join("img");
    mke2fs(&img, &[], "8M");
    let mut s = serve(d.path(), &img);
    let run = |s: &Server, args: &[&str]| s.tool(RUMPCTL, args);
    assert!(run(&s, &["mkdir", "/mnt"]).status.success());
    assert!(run(&s, &["mount", "/dk", "/mnt"]).status.success());
    assert!(run(&s, &["mkdir", "/mnt/d"]).status.success());
    let o = s.halt(&["-n"]);
    assert!(o.status.success(), "rump.halt -n: {}", stderr(&o));
    s.wait_exit(Duration::from_secs(30))
        .expect("server exits after rump.halt -n");
    drop(s);

    let mut s = serve(d.path(), &img);
    assert!(run(&s, &["mkdir", "/mnt"]).status.success());
    let o = run(&s, &["mount", "/dk", "/mnt"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o).trim(),
        "rumpctl: mount /dk on /mnt: file system not clean: run fsck, or mount read-only (mount -r)"
    );
    let o = run(&s, &["mount", "-r", "/dk", "/mnt"]);
    assert!(
        o.status.success(),
        "read-only mount of the unclean image: {}",
        stderr(&o)
    );
    // Which operand is missing.
    let o = run(&s, &["mount", "/nonexist", "/mnt2"]);
    assert_eq!(
        stderr(&o).trim(),
        "rumpctl: mount /nonexist on /mnt2: /nonexist: No such file or directory"
    );
    let o = run(&s, &["mount", "/dk", "/mnt2"]);
    assert_eq!(
        stderr(&o).trim(),
        "rumpctl: mount /dk on /mnt2: /mnt2: No such file or directory"
    );
    halt(&mut s);
}
