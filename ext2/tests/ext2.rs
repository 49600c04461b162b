//! ext2 component tests against e2fsprogs: images made by mke2fs read back
//! byte-exact; trees written through the FileSystem trait pass `e2fsck -fn`
//! and read back through debugfs; feature refusals; ENOSPC; a property test
//! against an in-memory model.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use ext2::{Compat, Ext2Fs, FeatureError, MountError, MountOptions};
use netbsd_abi::errno::*;
use netbsd_abi::Errno;
use vfs::{FileKind, FileSystem, SetAttr};

/// A host tree exercising every block-map level of a 1 KiB image, long and
/// short symlinks, empty files and directories, a multi-block directory.
fn make_host_tree(root: &Path, rng: &mut Rng) {
    std::fs::create_dir_all(root.join("sub/deeper/deepest")).unwrap();
    std::fs::create_dir_all(root.join("empty")).unwrap();
    std::fs::create_dir_all(root.join("many")).unwrap();
    let sizes = [
        0usize,
        1,
        59,
        60,
        1023,
        1024,
        1025,
        4095,
        4096,
        4097,
        12 * 1024,
        12 * 1024 + 1,
        100_000,
        268 * 1024,
        268 * 1024 + 1,
        700_000,
        3 << 20,
    ];
    for (k, &s) in sizes.iter().enumerate() {
        std::fs::write(root.join(format!("f{k}_{s}")), rng.bytes(s)).unwrap();
    }
    std::fs::write(root.join("sub/deeper/deepest/leaf.txt"), b"leaf\n").unwrap();
    std::fs::write(root.join("sub/mid.bin"), rng.bytes(50_000)).unwrap();
    for k in 0..300 {
        let n = rng.below(3000) as usize;
        std::fs::write(
            root.join(format!("many/file-with-a-longish-name-{k:04}")),
            rng.bytes(n),
        )
        .unwrap();
    }
    std::os::unix::fs::symlink("f1_1", root.join("short-link")).unwrap();
    let long: String = "x/".repeat(100) + "target";
    std::os::unix::fs::symlink(&long, root.join("long-link")).unwrap();
}

#[test]
fn mke2fs_d_images_read_back() {
    require_e2fsprogs();
    let t = TempDir::new("mkd");
    let host = t.path("host");
    make_host_tree(&host, &mut Rng(0x1234_5678_9abc));
    for (bs, extra) in [
        ("1024", &[][..]),
        ("2048", &[][..]),
        ("4096", &[][..]),
        ("1024", &["-r", "0"][..]),
    ] {
        let img = t.path(&format!("img-{bs}-{}.img", extra.len()));
        let mut args = vec!["-t", "ext2", "-b", bs, "-d", host.to_str().unwrap()];
        args.extend_from_slice(extra);
        mkfs(&img, 16 * 1024, &args);
        let fs = mount(&img);
        assert_eq!(fs.type_name(), "ext2fs");
        assert_eq!(fs.block_size().to_string(), bs);
        let n = compare_tree(&*fs, fs.root(), &host);
        assert!(n > 320, "{n} entries compared");
        // stat of a known file: size, blocks (i_blocks counts indirect blocks)
        let ino = walk(&*fs, "/f14_274433").unwrap();
        let a = fs.getattr(ino).unwrap();
        assert_eq!(a.size, 274433);
        let data_blocks = 274433u64.div_ceil(a.blksize as u64);
        assert!(a.blocks >= data_blocks * (a.blksize as u64 / 512));
        let dbg = String::from_utf8_lossy(&debugfs(&img, &format!("stat <{ino}>"))).into_owned();
        assert!(dbg.contains(&format!("Blockcount: {}", a.blocks)), "{dbg}");
        fs.unmount().unwrap();
        fsck_clean(&img);
        let h = dumpe2fs_h(&img);
        assert!(h.contains("Filesystem state:         clean"), "{h}");
        assert!(h.contains("Mount count:              1"), "{h}");
    }
}

#[test]
fn debugfs_populated_images_read_back() {
    require_e2fsprogs();
    let t = TempDir::new("dbg");
    let mut rng = Rng(77);
    let a = rng.bytes(300_000);
    let b = rng.bytes(5000);
    std::fs::write(t.path("a"), &a).unwrap();
    std::fs::write(t.path("b"), &b).unwrap();
    for bs in ["1024", "4096"] {
        let img = t.path(&format!("d{bs}.img"));
        mkfs(&img, 8192, &["-t", "ext2", "-b", bs]);
        let cmds = format!(
            "mkdir /d1\nmkdir /d1/d2\ncd /d1/d2\nwrite {} a\ncd /\nwrite {} b\nsymlink /sl /d1/d2/a\n",
            t.path("a").display(),
            t.path("b").display()
        );
        std::fs::write(t.path("cmds"), cmds).unwrap();
        let out = run(
            "debugfs",
            &[
                "-w",
                "-f",
                t.path("cmds").to_str().unwrap(),
                img.to_str().unwrap(),
            ],
        );
        assert!(out.status.success());
        let fs = mount(&img);
        assert_eq!(read_all(&*fs, walk(&*fs, "/d1/d2/a").unwrap()), a);
        assert_eq!(read_all(&*fs, walk(&*fs, "/b").unwrap()), b);
        assert_eq!(
            fs.readlink(walk(&*fs, "/sl").unwrap()).unwrap(),
            b"/d1/d2/a"
        );
        let root = list(&*fs, fs.root());
        let names: Vec<&[u8]> = root.iter().map(|e| &e.0[..]).collect();
        assert_eq!(names[..2], [&b"."[..], &b".."[..]]);
        assert!(names.contains(&&b"lost+found"[..]));
        fs.unmount().unwrap();
        fsck_clean(&img);
    }
}

/// Expected contents of a tree written through the impl.
#[derive(Default)]
struct Expect {
    files: BTreeMap<String, Vec<u8>>,
    links: BTreeMap<String, Vec<u8>>,
    dirs: Vec<String>,
}

fn check_expect(fs: &dyn FileSystem, e: &Expect) {
    for (p, data) in &e.files {
        let ino = walk(fs, p).unwrap_or_else(|er| panic!("{p}: {er:?}"));
        assert!(read_all(fs, ino) == *data, "contents of {p}");
    }
    for (p, tg) in &e.links {
        assert_eq!(&fs.readlink(walk(fs, p).unwrap()).unwrap(), tg, "{p}");
    }
    for d in &e.dirs {
        assert_eq!(
            fs.getattr(walk(fs, d).unwrap()).unwrap().kind,
            FileKind::Dir
        );
    }
}

fn write_tree(fs: &dyn FileSystem, rng: &mut Rng, e: &mut Expect) {
    // deep directories
    let mut p = String::new();
    for k in 0..24 {
        p.push_str(&format!("/deep{k}"));
        mkdir(fs, &p);
        e.dirs.push(p.clone());
    }
    let f = format!("{p}/bottom");
    create_file(fs, &f, b"at the bottom");
    e.files.insert(f, b"at the bottom".to_vec());
    // hundreds of files, sizes 0 .. 300 KiB, in a few directories
    for d in ["/a", "/b", "/c", "/a/x", "/a/x/y"] {
        mkdir(fs, d);
        e.dirs.push(d.to_string());
    }
    let dirs = ["/", "/a/", "/b/", "/c/", "/a/x/", "/a/x/y/"];
    for k in 0..400 {
        let d = dirs[k % dirs.len()];
        let size = match k % 7 {
            0 => 0,
            1 => rng.below(100) as usize,
            2 => rng.below(5000) as usize,
            3 => 12 * 1024 + rng.below(2048) as usize,
            4 => rng.below(300_000) as usize,
            _ => rng.below(20_000) as usize,
        };
        let data = rng.bytes(size);
        let path = format!("{d}file{k}");
        let ino = create_file(fs, &path, &[]);
        // write in uneven chunks
        let mut off = 0;
        while off < data.len() {
            let n = (1 + rng.below(70_000) as usize).min(data.len() - off);
            assert_eq!(fs.write(ino, off as u64, &data[off..off + n]).unwrap(), n);
            off += n;
        }
        e.files.insert(path, data);
    }
    // sparse files: holes, and one past the double-indirect limit of a
    // 1 KiB image (12 + 256 + 65536 blocks = 65804 KiB)
    let big = 64 * 1024 * 1024 + 268 * 1024 + 5000;
    let ino = create_file(fs, "/c/huge-sparse", &[]);
    let tail = rng.bytes(10_000);
    assert_eq!(fs.write(ino, big as u64, &tail).unwrap(), tail.len());
    assert_eq!(fs.write(ino, 5000, b"head").unwrap(), 4);
    assert_eq!(fs.write(ino, 13 * 1024 * 1024, b"middle").unwrap(), 6);
    let mut v = vec![0u8; big + tail.len()];
    v[big..].copy_from_slice(&tail);
    v[5000..5004].copy_from_slice(b"head");
    v[13 * 1024 * 1024..13 * 1024 * 1024 + 6].copy_from_slice(b"middle");
    let a = fs.getattr(ino).unwrap();
    assert_eq!(a.size, v.len() as u64);
    assert!(a.blocks < 200, "sparse file allocated {} sectors", a.blocks);
    e.files.insert("/c/huge-sparse".into(), v);
    let ino = create_file(fs, "/b/holes", &[]);
    let mut v = vec![0u8; 300_000];
    for off in [0usize, 20_000, 150_000, 299_000] {
        let d = rng.bytes(1000);
        fs.write(ino, off as u64, &d).unwrap();
        v[off..off + 1000].copy_from_slice(&d);
    }
    e.files.insert("/b/holes".into(), v);
    // truncate then extend: the tail must read as zeros
    let ino = create_file(fs, "/b/trunc", &rng.bytes(50_000));
    fs.setattr(
        ino,
        &SetAttr {
            size: Some(1500),
            ..Default::default()
        },
    )
    .unwrap();
    fs.setattr(
        ino,
        &SetAttr {
            size: Some(40_000),
            ..Default::default()
        },
    )
    .unwrap();
    fs.write(ino, 45_000, b"end").unwrap();
    let mut v = read_all(fs, ino);
    assert!(v[1500..45_000].iter().all(|&b| b == 0));
    v.truncate(45_003);
    e.files.insert("/b/trunc".into(), v);
    // symlinks
    let (d, _) = parent(fs, "/a/sl").unwrap();
    fs.symlink(d, b"sl", b"../b/holes", ROOT).unwrap();
    e.links.insert("/a/sl".into(), b"../b/holes".to_vec());
    let long = "y/".repeat(200).into_bytes();
    fs.symlink(d, b"sl-long", &long, ROOT).unwrap();
    e.links.insert("/a/sl-long".into(), long);
    // hard links
    let ino = walk(fs, "/file0").unwrap();
    fs.link(ino, walk(fs, "/c").unwrap(), b"hardlink").unwrap();
    e.files
        .insert("/c/hardlink".into(), e.files["/file0"].clone());
    assert_eq!(fs.getattr(ino).unwrap().nlink, 2);
    // renames: files within and across directories, replacing targets,
    // directories across directories
    let root = fs.root();
    let a = walk(fs, "/a").unwrap();
    let b = walk(fs, "/b").unwrap();
    let c = walk(fs, "/c").unwrap();
    fs.rename(root, b"file6", root, b"file6-renamed").unwrap();
    let v = e.files.remove("/file6").unwrap();
    e.files.insert("/file6-renamed".into(), v);
    fs.rename(a, b"file1", b, b"file1-moved").unwrap();
    let v = e.files.remove("/a/file1").unwrap();
    e.files.insert("/b/file1-moved".into(), v);
    fs.rename(b, b"file2", c, b"file3").unwrap(); // replaces /c/file3
    let v = e.files.remove("/b/file2").unwrap();
    e.files.insert("/c/file3".into(), v);
    let x = walk(fs, "/a/x").unwrap();
    let links_a = fs.getattr(a).unwrap().nlink;
    let links_c = fs.getattr(c).unwrap().nlink;
    fs.rename(a, b"x", c, b"x-moved").unwrap();
    assert_eq!(fs.getattr(a).unwrap().nlink, links_a - 1);
    assert_eq!(fs.getattr(c).unwrap().nlink, links_c + 1);
    assert_eq!(fs.lookup(x, b"..").unwrap(), c);
    let moved: Vec<(String, Vec<u8>)> = e
        .files
        .iter()
        .filter(|(p, _)| p.starts_with("/a/x/"))
        .map(|(p, v)| (p.clone(), v.clone()))
        .collect();
    for (p, v) in moved {
        e.files.remove(&p);
        e.files.insert(p.replacen("/a/x/", "/c/x-moved/", 1), v);
    }
    e.dirs.retain(|d| !d.starts_with("/a/x"));
    e.dirs.push("/c/x-moved".into());
    e.dirs.push("/c/x-moved/y".into());
    // a directory onto an empty directory
    mkdir(fs, "/b/emptytarget");
    fs.rename(c, b"x-moved", b, b"emptytarget").unwrap();
    let moved: Vec<(String, Vec<u8>)> = e
        .files
        .iter()
        .filter(|(p, _)| p.starts_with("/c/x-moved/"))
        .map(|(p, v)| (p.clone(), v.clone()))
        .collect();
    for (p, v) in moved {
        e.files.remove(&p);
        e.files
            .insert(p.replacen("/c/x-moved/", "/b/emptytarget/", 1), v);
    }
    e.dirs.retain(|d| !d.starts_with("/c/x-moved"));
    e.dirs.push("/b/emptytarget".into());
    e.dirs.push("/b/emptytarget/y".into());
    // errors
    assert_eq!(fs.rename(root, b"b", b, b"inside"), Err(Errno(EINVAL)));
    assert_eq!(fs.rename(root, b"a", root, b"b"), Err(Errno(ENOTEMPTY)));
    assert_eq!(fs.rename(root, b"file0", root, b"a"), Err(Errno(EISDIR)));
    assert_eq!(fs.rename(root, b"a", root, b"file0"), Err(Errno(ENOTDIR)));
    assert_eq!(fs.rmdir(root, b"a"), Err(Errno(ENOTEMPTY)));
    assert_eq!(fs.unlink(root, b"a"), Err(Errno(EPERM)));
    assert_eq!(fs.rmdir(root, b"file0"), Err(Errno(ENOTDIR)));
    assert_eq!(
        fs.create(root, b"file0", FileKind::Reg, 0o644, ROOT),
        Err(Errno(EEXIST))
    );
    assert_eq!(fs.lookup(root, b"nope"), Err(Errno(ENOENT)));
    assert_eq!(fs.lookup(root, &[b'n'; 256]), Err(Errno(ENAMETOOLONG)));
    // unlinks, rmdir
    let victims: Vec<String> = e
        .files
        .keys()
        .filter(|p| p.ends_with('5'))
        .cloned()
        .collect();
    for p in &victims {
        let (d, name) = parent(fs, p).unwrap();
        fs.unlink(d, name.as_bytes()).unwrap();
        e.files.remove(p);
    }
    mkdir(fs, "/c/gone");
    let nl = fs.getattr(c).unwrap().nlink;
    fs.rmdir(c, b"gone").unwrap();
    assert_eq!(fs.getattr(c).unwrap().nlink, nl - 1);
    // device nodes and fifos
    fs.create(root, b"fifo", FileKind::Fifo, 0o600, ROOT)
        .unwrap();
    fs.create(root, b"chr", FileKind::Chr, 0o600, ROOT).unwrap();
}

#[test]
fn tree_written_through_impl_passes_fsck_and_debugfs() {
    require_e2fsprogs();
    let t = TempDir::new("tree");
    for bs in ["1024", "4096"] {
        let img = t.path(&format!("tree{bs}.img"));
        mkfs(&img, 64 * 1024, &["-t", "ext2", "-b", bs]);
        let fs = mount(&img);
        let before = fs.statfs().unwrap();
        let root_blocks = fs.getattr(fs.root()).unwrap().blocks;
        let mut e = Expect::default();
        write_tree(&*fs, &mut Rng(0xfeed_beef), &mut e);
        check_expect(&*fs, &e);
        fs.sync().unwrap();
        fs.unmount().unwrap();
        fsck_clean(&img);
        for (p, data) in &e.files {
            assert!(debugfs_cat(&img, p) == *data, "debugfs cat {p} ({bs})");
        }
        let sl = String::from_utf8_lossy(&debugfs(&img, "stat /a/sl-long")).into_owned();
        assert!(sl.contains("Type: symlink"), "{sl}");
        let fs = mount(&img);
        check_expect(&*fs, &e);
        // free everything written: the counts come back exactly
        remove_all(&*fs, fs.root());
        let after = fs.statfs().unwrap();
        // directories never shrink: the root keeps the blocks it grew by
        let grown = (fs.getattr(fs.root()).unwrap().blocks - root_blocks)
            / (bs.parse::<u64>().unwrap() / 512);
        assert_eq!(
            after.blocks_free + grown,
            before.blocks_free,
            "blocks leaked ({bs})"
        );
        assert_eq!(after.files_free, before.files_free, "inodes leaked ({bs})");
        fs.unmount().unwrap();
        fsck_clean(&img);
    }
}

fn remove_all(fs: &dyn FileSystem, dir: vfs::Ino) {
    for (name, ino, kind) in list(fs, dir) {
        if name == b"." || name == b".." || name == b"lost+found" {
            continue;
        }
        if kind == FileKind::Dir {
            remove_all(fs, ino);
            fs.rmdir(dir, &name).unwrap();
        } else {
            fs.unlink(dir, &name).unwrap();
        }
    }
}

#[test]
fn revision0_write_and_fsck() {
    require_e2fsprogs();
    let t = TempDir::new("rev0");
    let img = t.path("r0.img");
    mkfs(&img, 16 * 1024, &["-t", "ext2", "-r", "0"]);
    let fs = mount(&img);
    let mut e = Expect::default();
    let mut rng = Rng(5);
    for d in ["/d", "/d/e"] {
        mkdir(&*fs, d);
        e.dirs.push(d.into());
    }
    for k in 0..60 {
        let p = format!("/d/e/f{k}");
        let n = rng.below(40_000) as usize;
        let data = rng.bytes(n);
        create_file(&*fs, &p, &data);
        e.files.insert(p, data);
    }
    let root = fs.root();
    let d = walk(&*fs, "/d").unwrap();
    fs.rename(walk(&*fs, "/d/e").unwrap(), b"f3", root, b"f3")
        .unwrap();
    let v = e.files.remove("/d/e/f3").unwrap();
    e.files.insert("/f3".into(), v);
    fs.rename(d, b"e", root, b"e").unwrap();
    let moved: Vec<_> = e
        .files
        .keys()
        .filter(|p| p.starts_with("/d/e/"))
        .cloned()
        .collect();
    for p in moved {
        let v = e.files.remove(&p).unwrap();
        e.files.insert(p.replacen("/d/e/", "/e/", 1), v);
    }
    e.dirs = vec!["/d".into(), "/e".into()];
    fs.symlink(root, b"l", b"e/f1", ROOT).unwrap();
    // rev 0 has no large_file: sizes stop below 2 GiB
    let f = create_file(&*fs, "/big", b"");
    assert_eq!(fs.write(f, 0x8000_0000, b"x"), Err(Errno(EFBIG)));
    // readdir kinds come from the inodes (no filetype feature)
    let kinds: BTreeMap<Vec<u8>, FileKind> =
        list(&*fs, root).into_iter().map(|e| (e.0, e.2)).collect();
    assert_eq!(kinds[&b"e"[..]], FileKind::Dir);
    assert_eq!(kinds[&b"l"[..]], FileKind::Lnk);
    assert_eq!(kinds[&b"f3"[..]], FileKind::Reg);
    check_expect(&*fs, &e);
    fs.unmount().unwrap();
    fsck_clean(&img);
    assert!(dumpe2fs_h(&img).contains("Filesystem revision #:    0"));
    for (p, data) in &e.files {
        assert!(debugfs_cat(&img, p) == *data, "{p}");
    }
}

#[test]
fn attributes_and_timestamps() {
    require_e2fsprogs();
    let t = TempDir::new("attr");
    let img = t.path("a.img");
    mkfs(&img, 4096, &["-t", "ext2", "-b", "1024"]);
    let fs = mount(&img);
    let root = fs.root();
    let cred = vfs::Cred { uid: 70000, gid: 5 };
    let f = fs.create(root, b"f", FileKind::Reg, 0o640, cred).unwrap();
    let a = fs.getattr(f).unwrap();
    assert_eq!(
        (a.kind, a.perm, a.nlink, a.uid, a.size, a.blocks),
        (FileKind::Reg, 0o640, 1, 70000, 0, 0)
    );
    assert_eq!(
        a.gid,
        fs.getattr(root).unwrap().gid,
        "BSD group inheritance"
    );
    let root_before = fs.getattr(root).unwrap();
    assert!(a.ctime.sec > 0 && a.mtime == a.ctime && a.birthtime == a.ctime);
    // The write's stamp must be later than the creation's: wait until the
    // host's clock has moved past it (no guessed sleep).
    let stamped =
        std::time::UNIX_EPOCH + std::time::Duration::new(a.mtime.sec as u64, a.mtime.nsec as u32);
    while std::time::SystemTime::now() <= stamped {
        std::thread::yield_now();
    }
    fs.write(f, 0, &[1u8; 3000]).unwrap();
    let b = fs.getattr(f).unwrap();
    assert!((b.mtime.sec, b.mtime.nsec) > (a.mtime.sec, a.mtime.nsec));
    assert_eq!(b.ctime, b.mtime);
    assert_eq!(b.blocks, 6);
    let c = fs
        .setattr(
            f,
            &SetAttr {
                perm: Some(0o4755),
                uid: Some(0x12345),
                gid: Some(0x23456),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!((c.perm, c.uid, c.gid), (0o4755, 0x12345, 0x23456));
    assert_eq!(c.mtime, b.mtime);
    let ts = netbsd_abi::stat::Timespec {
        sec: 1_000_000_000,
        nsec: 123_456_789,
    };
    let d = fs
        .setattr(
            f,
            &SetAttr {
                atime: Some(ts),
                mtime: Some(ts),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!((d.atime, d.mtime), (ts, ts));
    let r = fs.getattr(root).unwrap();
    assert!(r.mtime.sec >= root_before.mtime.sec);
    let dd = fs.create(root, b"dir", FileKind::Dir, 0o755, cred).unwrap();
    let da = fs.getattr(dd).unwrap();
    assert_eq!((da.nlink, da.size, da.blocks), (2, 1024, 2));
    assert_eq!(fs.getattr(root).unwrap().nlink, root_before.nlink + 1);
    assert_eq!(
        fs.setattr(
            dd,
            &SetAttr {
                size: Some(0),
                ..Default::default()
            }
        ),
        Err(Errno(EISDIR))
    );
    // readdir cookies resume exactly
    for k in 0..100 {
        fs.create(
            dd,
            format!("entry{k}").as_bytes(),
            FileKind::Reg,
            0o644,
            cred,
        )
        .unwrap();
    }
    let all = {
        let mut v = Vec::new();
        fs.readdir(dd, 0, &mut |e| {
            v.push(e);
            true
        })
        .unwrap();
        v
    };
    assert_eq!(all.len(), 102);
    let mut resumed = Vec::new();
    let mut cookie = 0;
    loop {
        let mut got = None;
        fs.readdir(dd, cookie, &mut |e| {
            got = Some(e);
            false
        })
        .unwrap();
        match got {
            Some(e) => {
                cookie = e.next;
                resumed.push(e);
            }
            None => break,
        }
    }
    assert_eq!(resumed, all);
    // stat matches debugfs after unmount
    fs.unmount().unwrap();
    fsck_clean(&img);
    let s = String::from_utf8_lossy(&debugfs(&img, "stat /f")).into_owned();
    assert!(
        s.contains("User: 74565") && s.contains("Group: 144470"),
        "{s}"
    );
    assert!(s.contains("Mode:  04755"), "{s}");
    assert!(s.contains("mtime: 0x3b9aca00:1d6f3454"), "{s}");
}

#[test]
fn unlinked_open_inode_freed_at_release() {
    require_e2fsprogs();
    let t = TempDir::new("orphan");
    let img = t.path("o.img");
    mkfs(&img, 4096, &["-t", "ext2", "-b", "1024"]);
    let fs = mount(&img);
    let root = fs.root();
    let before = fs.statfs().unwrap();
    let f = create_file(&*fs, "/f", &[7u8; 100_000]);
    fs.open(f);
    fs.unlink(root, b"f").unwrap();
    assert_eq!(fs.lookup(root, b"f"), Err(Errno(ENOENT)));
    let a = fs.getattr(f).unwrap();
    assert_eq!(a.nlink, 0);
    assert_eq!(read_all(&*fs, f), vec![7u8; 100_000]);
    fs.write(f, 100_000, b"more").unwrap();
    fs.sync().unwrap();
    assert!(
        dumpe2fs_h(&img).contains("not clean"),
        "an open unlinked inode is an orphan for fsck"
    );
    assert!(fs.statfs().unwrap().blocks_free < before.blocks_free);
    fs.release(f);
    assert_eq!(fs.getattr(f), Err(Errno(ENOENT)));
    fs.sync().unwrap();
    assert!(dumpe2fs_h(&img).contains("Filesystem state:         clean"));
    fsck_clean(&img);
    let after = fs.statfs().unwrap();
    assert_eq!(
        (after.blocks_free, after.files_free),
        (before.blocks_free, before.files_free)
    );
    // a directory removed while open, and one still open at unmount
    let d = mkdir(&*fs, "/d");
    fs.open(d);
    fs.rmdir(root, b"d").unwrap();
    assert_eq!(
        fs.create(d, b"x", FileKind::Reg, 0o644, ROOT),
        Err(Errno(ENOENT))
    );
    fs.release(d);
    let g = create_file(&*fs, "/g", &[1u8; 5000]);
    fs.open(g);
    fs.unlink(root, b"g").unwrap();
    fs.unmount().unwrap();
    fsck_clean(&img);
}

#[test]
fn enospc_blocks_and_inodes() {
    require_e2fsprogs();
    let t = TempDir::new("nospc");
    // blocks run out
    let img = t.path("b.img");
    mkfs(
        &img,
        2048,
        &["-t", "ext2", "-b", "1024", "-m", "0", "-N", "64"],
    );
    let fs = mount(&img);
    let root = fs.root();
    let keep = create_file(&*fs, "/keep", &[9u8; 10_000]);
    let free0 = fs.statfs().unwrap().blocks_free;
    let f = create_file(&*fs, "/fill", b"");
    let chunk = vec![0xabu8; 64 * 1024];
    let mut total = 0u64;
    loop {
        match fs.write(f, total, &chunk) {
            Ok(n) => {
                total += n as u64;
                if n < chunk.len() {
                    assert_eq!(fs.write(f, total, &chunk), Err(Errno(ENOSPC)));
                    break;
                }
            }
            Err(e) => {
                assert_eq!(e, Errno(ENOSPC));
                break;
            }
        }
    }
    // every free block went to data or to the indirect blocks it needs;
    // at most one is left, unusable without a second one for an indirect
    let st = fs.statfs().unwrap();
    let data_blocks = total.div_ceil(1024);
    let ind = if data_blocks > 12 {
        1 + (data_blocks - 12).saturating_sub(256).div_ceil(256) + u64::from(data_blocks > 268)
    } else {
        0
    };
    assert_eq!(data_blocks + ind + st.blocks_free, free0, "total {total}");
    assert!(
        st.blocks_free <= 1,
        "ENOSPC with {} blocks left",
        st.blocks_free
    );
    assert_eq!(fs.getattr(f).unwrap().size, total);
    assert_eq!(fs.getattr(f).unwrap().blocks, (data_blocks + ind) * 2);
    // the last block, if any, fits a direct block of another file
    let pad = create_file(&*fs, "/pad", b"");
    let n = st.blocks_free as usize * 1024;
    assert_eq!(
        fs.write(pad, 0, &vec![1u8; n + 1024]).map_err(|e| e.0),
        if n > 0 { Ok(n) } else { Err(ENOSPC) }
    );
    assert_eq!(fs.statfs().unwrap().blocks_free, 0);
    // a new empty file still fits in the root directory block, a directory does not
    fs.create(root, b"empty", FileKind::Reg, 0o644, ROOT)
        .unwrap();
    assert_eq!(
        fs.create(root, b"dir", FileKind::Dir, 0o755, ROOT),
        Err(Errno(ENOSPC))
    );
    let sl: Vec<u8> = "z".repeat(100).into_bytes();
    assert_eq!(fs.symlink(root, b"slow", &sl, ROOT), Err(Errno(ENOSPC)));
    fs.symlink(root, b"fast", b"short", ROOT).unwrap();
    assert_eq!(fs.write(keep, 10_240, &[1u8; 2000]), Err(Errno(ENOSPC)));
    assert_eq!(
        fs.write(keep, 9_000, &[9u8; 2000]).unwrap(),
        1240,
        "short write up to the allocated block"
    );
    assert_eq!(fs.getattr(keep).unwrap().size, 10_240);
    assert_eq!(fs.statfs().unwrap().blocks_free, 0);
    // free some room: writing works again
    fs.setattr(
        f,
        &SetAttr {
            size: Some(total - 100_000),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(fs.statfs().unwrap().blocks_free >= 97);
    assert_eq!(fs.write(keep, 10_000, &[1u8; 2000]).unwrap(), 2000);
    fs.unmount().unwrap();
    fsck_clean(&img);
    assert!(debugfs_cat(&img, "/fill") == vec![0xab; (total - 100_000) as usize]);
    let mut k = vec![9u8; 10_240];
    k[10_000..].fill(1);
    k.extend_from_slice(&[1u8; 12_000 - 10_240]);
    assert!(debugfs_cat(&img, "/keep") == k);

    // inodes run out
    let img = t.path("i.img");
    mkfs(&img, 4096, &["-t", "ext2", "-b", "1024", "-N", "32"]);
    let fs = mount(&img);
    let root = fs.root();
    let st = fs.statfs().unwrap();
    let mut made = 0;
    loop {
        match fs.create(
            root,
            format!("n{made}").as_bytes(),
            FileKind::Reg,
            0o644,
            ROOT,
        ) {
            Ok(_) => made += 1,
            Err(e) => {
                assert_eq!(e, Errno(ENOSPC));
                break;
            }
        }
    }
    assert_eq!(made, st.files_free);
    assert_eq!(fs.statfs().unwrap().files_free, 0);
    assert_eq!(
        fs.create(root, b"d", FileKind::Dir, 0o755, ROOT),
        Err(Errno(ENOSPC))
    );
    fs.unlink(root, b"n3").unwrap();
    fs.create(root, b"d", FileKind::Dir, 0o755, ROOT).unwrap();
    fs.unmount().unwrap();
    fsck_clean(&img);

    // a directory that must grow when no block is left
    let img = t.path("d.img");
    mkfs(
        &img,
        1024,
        &["-t", "ext2", "-b", "1024", "-m", "0", "-N", "128"],
    );
    let fs = mount(&img);
    let root = fs.root();
    let f = create_file(&*fs, "/fill", b"");
    let mut off = 0u64;
    while let Ok(n) = fs.write(f, off, &chunk) {
        off += n as u64;
    }
    let mut k = 0;
    let err = loop {
        match fs.create(
            root,
            format!("a-long-file-name-to-fill-the-directory-{k}").as_bytes(),
            FileKind::Reg,
            0o644,
            ROOT,
        ) {
            Ok(_) => k += 1,
            Err(e) => break e,
        }
    };
    assert_eq!(err, Errno(ENOSPC));
    assert!(k > 5);
    fs.unmount().unwrap();
    fsck_clean(&img);
}

#[test]
fn feature_refusals_and_read_only() {
    require_e2fsprogs();
    let t = TempDir::new("feat");
    // ext4: extents, 64bit, flex_bg, metadata_csum...
    let img = t.path("ext4.img");
    mkfs(&img, 8192, &["-t", "ext4"]);
    let e = Ext2Fs::mount_with(FileStore::open(&img), MountOptions::default())
        .err()
        .unwrap();
    assert_eq!(e.errno(), Errno(EFTYPE));
    assert!(
        matches!(e, MountError::Feature(FeatureError::Incompatible(_))),
        "{e:?}"
    );
    assert!(e.to_string().contains("extent"), "{e}");
    assert!(Ext2Fs::probe(&*FileStore::open(&img))
        .unwrap_err()
        .to_string()
        .contains("extent"));
    assert_eq!(
        Ext2Fs::mount(FileStore::open(&img), true).err(),
        Some(Errno(EFTYPE))
    );

    // ext3 whose journal needs recovery
    let img = t.path("ext3.img");
    mkfs(&img, 8192, &["-t", "ext3"]);
    debugfs_w(&img, "feature needs_recovery");
    let e = Ext2Fs::mount_with(FileStore::open(&img), MountOptions::default())
        .err()
        .unwrap();
    assert_eq!(e.errno(), Errno(EFTYPE));
    assert_eq!(e, MountError::Feature(FeatureError::NeedsRecovery));
    assert!(e.to_string().contains("needs_recovery"), "{e}");

    // ext3 with a clean journal: mounted as ext2, the journal left alone
    let img = t.path("ext3c.img");
    mkfs(&img, 8192, &["-t", "ext3"]);
    let fs = mount(&img);
    assert!(!fs.read_only());
    create_file(&*fs, "/in-ext3", b"hello ext3");
    fs.unmount().unwrap();
    fsck_clean(&img);
    assert_eq!(debugfs_cat(&img, "/in-ext3"), b"hello ext3");

    // read-only-compatible features force read-only
    let img = t.path("huge.img");
    mkfs(&img, 8192, &["-t", "ext2", "-O", "huge_file,dir_nlink"]);
    std::fs::write(t.path("hsrc"), b"some host data\n").unwrap();
    debugfs_w(&img, &format!("write {} h", t.path("hsrc").display()));
    let fs = Ext2Fs::mount(FileStore::open(&img), false).unwrap();
    assert!(fs.read_only());
    assert!(fs.read_only_reason().unwrap().contains("huge_file"));
    let root = fs.root();
    assert_eq!(
        fs.create(root, b"x", FileKind::Reg, 0o644, ROOT),
        Err(Errno(EROFS))
    );
    let h = walk(&*fs, "/h").unwrap();
    assert_eq!(read_all(&*fs, h), b"some host data\n");
    assert_eq!(fs.write(h, 0, b"x"), Err(Errno(EROFS)));
    fs.unmount().unwrap();
    fsck_clean(&img);
    match ext2::check_features(&std::fs::read(&img).unwrap()[1024..2048]) {
        Ok(Compat::ReadOnly(why)) => assert!(why.contains("dir_nlink"), "{why}"),
        other => panic!("{other:?}"),
    }

    // flex_bg alone is supported read-write
    let img = t.path("flex.img");
    mkfs(&img, 16384, &["-t", "ext2", "-O", "flex_bg", "-b", "1024"]);
    let fs = mount(&img);
    let mut e = Expect::default();
    let mut rng = Rng(99);
    for k in 0..50 {
        let n = rng.below(200_000) as usize;
        let d = rng.bytes(n);
        create_file(&*fs, &format!("/f{k}"), &d);
        e.files.insert(format!("/f{k}"), d);
    }
    fs.unmount().unwrap();
    fsck_clean(&img);
    let fs = mount(&img);
    check_expect(&*fs, &e);
    fs.unmount().unwrap();

    // a file system not cleanly unmounted: read-write refused unless forced
    let img = t.path("dirty.img");
    mkfs(&img, 4096, &["-t", "ext2"]);
    let fs = mount(&img);
    assert!(dumpe2fs_h(&img).contains("Filesystem state:         not clean"));
    let x = create_file(&*fs, "/x", b"x");
    // a full sync (what a halt does) leaves it clean...
    fs.sync().unwrap();
    assert!(dumpe2fs_h(&img).contains("Filesystem state:         clean"));
    fsck_clean(&img);
    let out = run("e2fsck", &["-n", img.to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("clean"),
        "e2fsck without -f skips a clean fs"
    );
    // ...until the next change, which marks it not clean first: in
    // memory at once, on the device before any other metadata of the
    // write-back that follows
    fs.write(x, 1, b"y").unwrap();
    fs.write_back().unwrap();
    assert!(dumpe2fs_h(&img).contains("Filesystem state:         not clean"));
    fs.sync().unwrap();
    assert!(dumpe2fs_h(&img).contains("Filesystem state:         clean"));
    // fsync of one file does not mark it clean
    fs.write(x, 2, b"z").unwrap();
    fs.fsync(x).unwrap();
    assert!(dumpe2fs_h(&img).contains("Filesystem state:         not clean"));
    // a crash now (no sync, no unmount): read-write mount refused
    std::mem::forget(fs);
    let e = Ext2Fs::mount_with(FileStore::open(&img), MountOptions::default())
        .err()
        .unwrap();
    assert_eq!(e.errno(), Errno(EPERM));
    assert_eq!(e, MountError::NotClean);
    assert!(e.to_string().contains("not clean"));
    let fs = Ext2Fs::mount(FileStore::open(&img), true).unwrap();
    assert_eq!(read_all(&*fs, walk(&*fs, "/x").unwrap()), b"xyz");
    fs.unmount().unwrap();
    let fs = Ext2Fs::mount_with(
        FileStore::open(&img),
        MountOptions {
            read_only: false,
            force: true,
        },
    )
    .unwrap();
    fs.unmount().unwrap();
    fsck_clean(&img);

    // garbage is not ext2
    let img = t.path("zero.img");
    std::fs::write(&img, vec![0u8; 1 << 20]).unwrap();
    assert_eq!(
        Ext2Fs::mount(FileStore::open(&img), true).err(),
        Some(Errno(EINVAL))
    );
}

#[test]
fn htree_directory_and_xattr_block() {
    require_e2fsprogs();
    let t = TempDir::new("htree");
    let host = t.path("host");
    std::fs::create_dir_all(host.join("big")).unwrap();
    for k in 0..600 {
        std::fs::write(host.join(format!("big/entry-{k:05}")), format!("{k}")).unwrap();
    }
    std::fs::write(host.join("withattr"), b"data").unwrap();
    let img = t.path("h.img");
    mkfs(
        &img,
        8192,
        &["-t", "ext2", "-b", "1024", "-d", host.to_str().unwrap()],
    );
    // index the directories, and give a file an xattr block
    let out = run("e2fsck", &["-fyD", img.to_str().unwrap()]);
    assert!(out.status.code().unwrap_or(8) < 4);
    let big = String::from_utf8_lossy(&debugfs(&img, "stat /big")).into_owned();
    assert!(big.contains("Flags: 0x1000"), "not indexed: {big}");
    let val = "v".repeat(600);
    debugfs_w(&img, &format!("ea_set /withattr user.big {val}"));
    let st = String::from_utf8_lossy(&debugfs(&img, "stat /withattr")).into_owned();
    assert!(!st.contains("File ACL: 0"), "no xattr block: {st}");
    fsck_clean(&img);

    let fs = mount(&img);
    let before = fs.statfs().unwrap();
    let bigd = walk(&*fs, "/big").unwrap();
    assert_eq!(list(&*fs, bigd).len(), 602);
    assert_eq!(
        read_all(&*fs, fs.lookup(bigd, b"entry-00321").unwrap()),
        b"321"
    );
    for k in (0..600).step_by(3) {
        fs.unlink(bigd, format!("entry-{k:05}").as_bytes()).unwrap();
    }
    for k in 0..100 {
        create_file(&*fs, &format!("/big/new-{k}"), b"n");
    }
    assert_eq!(list(&*fs, bigd).len(), 602 - 200 + 100);
    let w = walk(&*fs, "/withattr").unwrap();
    let blocks = fs.getattr(w).unwrap().blocks;
    assert_eq!(blocks, 4, "1 data + 1 xattr block");
    fs.unlink(fs.root(), b"withattr").unwrap();
    fs.unmount().unwrap();
    fsck_clean(&img);
    let fs = mount(&img);
    let after = fs.statfs().unwrap();
    assert_eq!(after.files_free, before.files_free + 200 - 100 + 1);
    fs.unmount().unwrap();
    let big = String::from_utf8_lossy(&debugfs(&img, "stat /big")).into_owned();
    assert!(!big.contains("Flags: 0x1000"), "{big}");
}

#[test]
fn sequential_write_is_contiguous_and_fast() {
    require_e2fsprogs();
    let t = TempDir::new("seq");
    let img = t.path("s.img");
    mkfs(&img, 96 * 1024, &["-t", "ext2", "-b", "4096"]);
    let fs = mount(&img);
    let f = create_file(&*fs, "/seq", b"");
    let chunk: Vec<u8> = (0..65536u32).map(|i| (i * 7 % 251) as u8).collect();
    let start = std::time::Instant::now();
    for k in 0..(48 * 16) {
        fs.write(f, k * 65536, &chunk).unwrap();
    }
    let wt = start.elapsed();
    let start = std::time::Instant::now();
    for k in 0..1000 {
        fs.create(
            fs.root(),
            format!("small{k}").as_bytes(),
            FileKind::Reg,
            0o644,
            ROOT,
        )
        .unwrap();
    }
    let ct = start.elapsed();
    eprintln!("48 MiB sequential write: {wt:?}; 1000 creates: {ct:?}");
    fs.unmount().unwrap();
    fsck_clean(&img);
    // contiguity: debugfs shows the data in few extents of blocks
    let s = String::from_utf8_lossy(&debugfs(&img, "stat /seq")).into_owned();
    let blocks_line = s.split("BLOCKS:").nth(1).unwrap();
    let runs = blocks_line.matches(", ").count() + 1;
    assert!(runs < 40, "fragmented into {runs} runs: {blocks_line}");
}

#[test]
fn over_the_vfs_cache() {
    require_e2fsprogs();
    let t = TempDir::new("cache");
    let img = t.path("c.img");
    mkfs(&img, 96 * 1024, &["-t", "ext2", "-b", "1024"]);
    // a small cache: eviction and throttled write-back happen mid-operation
    let cache = vfs_cache::Cache::new(4 << 20);
    let store = cache.attach(FileDev::open(&img), 4096);
    let fs = Ext2Fs::mount(store.clone(), false).unwrap();
    let mut e = Expect::default();
    write_tree(&*fs, &mut Rng(0xcafe), &mut e);
    check_expect(&*fs, &e);
    // hot paths: a big sequential write, many small files in one directory
    let f = create_file(&*fs, "/seq", b"");
    let chunk: Vec<u8> = (0..65536u32).map(|i| (i % 253) as u8).collect();
    let start = std::time::Instant::now();
    for k in 0..256u64 {
        fs.write(f, k * 65536, &chunk).unwrap();
    }
    let wt = start.elapsed();
    let d = mkdir(&*fs, "/many");
    let start = std::time::Instant::now();
    for k in 0..20000 {
        let ino = fs
            .create(
                d,
                format!("small-file-{k}").as_bytes(),
                FileKind::Reg,
                0o644,
                ROOT,
            )
            .unwrap();
        fs.write(ino, 0, b"tiny").unwrap();
    }
    let ct = start.elapsed();
    eprintln!(
        "over vfs-cache: 16 MiB sequential write {wt:?}; 20000 small files in one directory {ct:?}"
    );
    fs.unmount().unwrap();
    store.detach().unwrap();
    fsck_clean(&img);
    assert!(debugfs_cat(&img, "/many/small-file-19999") == b"tiny");
    let mut want = Vec::new();
    for _ in 0..256 {
        want.extend_from_slice(&chunk);
    }
    assert!(debugfs_cat(&img, "/seq") == want);
    let cache = vfs_cache::Cache::new(1 << 20);
    let fs = Ext2Fs::mount(cache.attach(FileDev::open(&img), 4096), true).unwrap();
    check_expect(&*fs, &e);
    assert_eq!(list(&*fs, walk(&*fs, "/many").unwrap()).len(), 20002);
}

#[test]
fn large_files_set_large_file_feature() {
    require_e2fsprogs();
    let t = TempDir::new("large");
    let img = t.path("l.img");
    mkfs(&img, 32 * 1024, &["-t", "ext2", "-b", "4096"]);
    debugfs_w(&img, "feature -large_file");
    assert!(!dumpe2fs_h(&img).contains("large_file"));
    let fs = mount(&img);
    let f = create_file(&*fs, "/big", b"start");
    // 4 KiB blocks: triple-indirect blocks start past 4 GiB + 4 MiB + 48 KiB
    let off = 5u64 << 30;
    fs.write(f, off, b"far away").unwrap();
    let a = fs.getattr(f).unwrap();
    assert_eq!(a.size, off + 8);
    let mut b = [0u8; 8];
    fs.read(f, off, &mut b).unwrap();
    assert_eq!(&b, b"far away");
    fs.read(f, 3 << 30, &mut b).unwrap();
    assert_eq!(b, [0u8; 8]);
    // truncating below 4 GiB frees the triple-indirect tree
    let before = fs.statfs().unwrap().blocks_free;
    fs.setattr(
        f,
        &SetAttr {
            size: Some(3 << 30),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        fs.statfs().unwrap().blocks_free,
        before + 4,
        "data + 3 indirect levels"
    );
    fs.write(f, (3 << 30) - 3, b"end").unwrap();
    fs.unmount().unwrap();
    fsck_clean(&img);
    assert!(dumpe2fs_h(&img).contains("large_file"));
    let st = String::from_utf8_lossy(&debugfs(&img, "stat /big")).into_owned();
    assert!(st.contains(&format!("Size: {}", 3u64 << 30)), "{st}");
    let fs = mount(&img);
    let f = walk(&*fs, "/big").unwrap();
    fs.read(f, (3 << 30) - 3, &mut b).unwrap();
    assert_eq!(&b[..3], b"end");
    fs.read(f, 0, &mut b).unwrap();
    assert_eq!(&b[..5], b"start");
    fs.unmount().unwrap();
}

#[test]
fn concurrent_operations() {
    require_e2fsprogs();
    let t = TempDir::new("conc");
    let img = t.path("c.img");
    mkfs(&img, 64 * 1024, &["-t", "ext2", "-b", "1024"]);
    let fs = mount(&img);
    let shared = mkdir(&*fs, "/shared");
    let handles: Vec<_> = (0..4)
        .map(|th| {
            let fs = fs.clone();
            std::thread::spawn(move || {
                let mut rng = Rng(1000 + th);
                let d = mkdir(&*fs, &format!("/t{th}"));
                let mut files = BTreeMap::new();
                for k in 0..150 {
                    let name = format!("f{k}");
                    let ino = fs
                        .create(d, name.as_bytes(), FileKind::Reg, 0o644, ROOT)
                        .unwrap();
                    let n = rng.below(40_000) as usize;
                    let data = rng.bytes(n);
                    let mut off = 0;
                    while off < data.len() {
                        let c = (1 + rng.below(9000) as usize).min(data.len() - off);
                        fs.write(ino, off as u64, &data[off..off + c]).unwrap();
                        off += c;
                    }
                    let sn = format!("s{th}-{k}");
                    fs.create(shared, sn.as_bytes(), FileKind::Reg, 0o644, ROOT)
                        .unwrap();
                    if k % 3 == 0 {
                        fs.unlink(shared, sn.as_bytes()).unwrap();
                    }
                    if k % 5 == 0 {
                        fs.rename(
                            d,
                            name.as_bytes(),
                            shared,
                            format!("moved{th}-{k}").as_bytes(),
                        )
                        .unwrap();
                        files.insert(format!("/shared/moved{th}-{k}"), data);
                    } else {
                        files.insert(format!("/t{th}/{name}"), data);
                    }
                }
                files
            })
        })
        .collect();
    let mut all = BTreeMap::new();
    for h in handles {
        all.extend(h.join().unwrap());
    }
    for (p, v) in &all {
        assert!(read_all(&*fs, walk(&*fs, p).unwrap()) == *v, "{p}");
    }
    fs.unmount().unwrap();
    fsck_clean(&img);
    for (p, v) in all.iter().step_by(7) {
        assert!(debugfs_cat(&img, p) == *v, "{p}");
    }
}

/// A store whose writes and syncs fail while `fail` is set.
struct Flaky {
    inner: std::sync::Arc<FileStore>,
    fail: std::sync::atomic::AtomicBool,
}

impl vfs_cache::Store for Flaky {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn read(&self, off: u64, buf: &mut [u8]) -> Result<(), Errno> {
        self.inner.read(off, buf)
    }
    fn write(&self, off: u64, buf: &[u8]) -> Result<(), Errno> {
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Errno(EIO));
        }
        self.inner.write(off, buf)
    }
    fn sync(&self) -> Result<(), Errno> {
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Errno(EIO));
        }
        self.inner.sync()
    }
}

#[test]
fn failed_sync_keeps_metadata_for_a_retry() {
    require_e2fsprogs();
    use std::sync::atomic::Ordering::SeqCst;
    let t = TempDir::new("flaky");
    let img = t.path("f.img");
    mkfs(&img, 8192, &["-t", "ext2", "-b", "1024"]);
    let store = std::sync::Arc::new(Flaky {
        inner: FileStore::open(&img),
        fail: false.into(),
    });
    let fs = Ext2Fs::mount(store.clone(), false).unwrap();
    let mut e = Expect::default();
    let mut rng = Rng(3);
    for k in 0..40 {
        let n = rng.below(100_000) as usize;
        let d = rng.bytes(n);
        create_file(&*fs, &format!("/f{k}"), &d);
        e.files.insert(format!("/f{k}"), d);
    }
    store.fail.store(true, SeqCst);
    assert_eq!(fs.sync(), Err(Errno(EIO)));
    assert_eq!(fs.unmount(), Err(Errno(EIO)));
    assert_eq!(fs.write_back(), Err(Errno(EIO)));
    let root = fs.root();
    // Metadata changes stay in memory until a write-back: they go on
    // while the device fails, and are written once it works again.
    fs.create(root, b"x", FileKind::Reg, 0o644, ROOT).unwrap();
    e.files.insert("/x".into(), Vec::new());
    fs.create(root, b"dx", FileKind::Dir, 0o755, ROOT).unwrap();
    let long = vec![b'l'; 100];
    fs.symlink(root, b"sx", &long, ROOT).unwrap();
    let f1 = e.files.remove("/f1").unwrap();
    fs.unlink(root, b"f1").unwrap();
    fs.rename(root, b"f2", root, b"f2-renamed").unwrap();
    let f2 = e.files.remove("/f2").unwrap();
    e.files.insert("/f2-renamed".into(), f2);
    // File data goes to the store at once: a failing device fails it,
    // and the file is unchanged.
    let f0 = walk(&*fs, "/f0").unwrap();
    let size0 = fs.getattr(f0).unwrap().size;
    assert_eq!(fs.write(f0, size0 + 5000, &[1u8; 300_000]), Err(Errno(EIO)));
    assert_eq!(fs.write(f0, 0, b"zz"), Err(Errno(EIO)));
    assert_eq!(fs.getattr(f0).unwrap().size, size0);
    let free = fs.statfs().unwrap();
    store.fail.store(false, SeqCst);
    fs.write_back().unwrap();
    let now = fs.statfs().unwrap();
    assert_eq!(
        (now.blocks_free, now.files_free),
        (free.blocks_free, free.files_free),
        "nothing leaked, {} freed bytes counted",
        f1.len()
    );
    fs.sync().unwrap();
    fs.unmount().unwrap();
    fsck_clean(&img);
    let fs = mount(&img);
    check_expect(&*fs, &e);
    fs.unmount().unwrap();
}

mod model {
    //! Random operation sequences against an in-memory model.
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, HashMap};

    #[derive(Clone, Debug, PartialEq)]
    enum Node {
        /// A regular file: its id in `Model::files` (hard links share it).
        File(usize),
        Dir,
        /// A symlink: its target and an identity (hard links share it).
        Link(Vec<u8>, usize),
    }

    #[derive(Clone, Debug)]
    enum Op {
        Create(String),
        Mkdir(String),
        Write(String, u64, u16, u8),
        Truncate(String, u64),
        Unlink(String),
        /// Unlink while held open: still readable until released.
        UnlinkOpen(String),
        Rmdir(String),
        Rename(String, String),
        Link(String, String),
        Symlink(String, u8),
    }

    fn path() -> impl Strategy<Value = String> {
        let name = prop::sample::select(vec!["a", "b", "c", "d"]);
        prop::collection::vec(name, 1..=3).prop_map(|v| format!("/{}", v.join("/")))
    }

    fn offset() -> impl Strategy<Value = u64> {
        prop_oneof![
            4 => 0u64..5000,
            3 => 0u64..300_000,
            // around the start of triple-indirect blocks with 1 KiB blocks
            1 => 67_300_000u64..67_450_000,
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => path().prop_map(Op::Create),
            2 => path().prop_map(Op::Mkdir),
            5 => (path(), offset(), any::<u16>(), any::<u8>()).prop_map(|(p, o, l, b)| Op::Write(p, o, l, b)),
            2 => (path(), offset()).prop_map(|(p, s)| Op::Truncate(p, s)),
            2 => path().prop_map(Op::Unlink),
            1 => path().prop_map(Op::UnlinkOpen),
            1 => path().prop_map(Op::Rmdir),
            3 => (path(), path()).prop_map(|(a, b)| Op::Rename(a, b)),
            1 => (path(), path()).prop_map(|(a, b)| Op::Link(a, b)),
            1 => (path(), 1u8..120).prop_map(|(p, n)| Op::Symlink(p, n)),
        ]
    }

    #[derive(Default)]
    struct Model {
        ns: BTreeMap<String, Node>,
        files: HashMap<usize, Vec<u8>>,
        next: usize,
    }

    fn parent_of(p: &str) -> &str {
        match p.rfind('/') {
            Some(0) | None => "/",
            Some(i) => &p[..i],
        }
    }

    fn link_target(p: &str, n: u8) -> Vec<u8> {
        let mut t = format!("target-of-{p}-").into_bytes();
        t.resize(n as usize, b'x');
        t
    }

    impl Model {
        fn parent_ok(&self, p: &str) -> Result<(), i32> {
            let par = parent_of(p);
            let mut cur = String::new();
            for c in par.split('/').filter(|c| !c.is_empty()) {
                cur.push('/');
                cur.push_str(c);
                match self.ns.get(&cur) {
                    None => return Err(ENOENT),
                    Some(Node::Dir) => {}
                    Some(_) => return Err(ENOTDIR),
                }
            }
            Ok(())
        }
        fn children(&self, p: &str) -> Vec<String> {
            let pre = format!("{p}/");
            self.ns
                .keys()
                .filter(|k| k.starts_with(&pre))
                .cloned()
                .collect()
        }
        fn nlink(&self, id: usize) -> usize {
            self.ns.values().filter(|n| **n == Node::File(id)).count()
        }
        fn gc(&mut self) {
            let live: Vec<usize> = self
                .ns
                .values()
                .filter_map(|n| {
                    if let Node::File(i) = n {
                        Some(*i)
                    } else {
                        None
                    }
                })
                .collect();
            self.files.retain(|id, _| live.contains(id));
        }
        fn file_mut(&mut self, p: &str) -> Result<&mut Vec<u8>, i32> {
            self.parent_ok(p)?;
            match self.ns.get(p) {
                None => Err(ENOENT),
                Some(Node::Dir) => Err(EISDIR),
                Some(Node::Link(..)) => Err(EINVAL),
                Some(Node::File(id)) => Ok(self.files.get_mut(id).unwrap()),
            }
        }
        fn apply(&mut self, op: &Op) -> Result<(), i32> {
            match op {
                Op::Create(p) | Op::Mkdir(p) | Op::Symlink(p, _) => {
                    self.parent_ok(p)?;
                    if self.ns.contains_key(p) {
                        return Err(EEXIST);
                    }
                    let n = match op {
                        Op::Mkdir(_) => Node::Dir,
                        Op::Symlink(_, n) => {
                            self.next += 1;
                            Node::Link(link_target(p, *n), self.next)
                        }
                        _ => {
                            self.next += 1;
                            self.files.insert(self.next, vec![]);
                            Node::File(self.next)
                        }
                    };
                    self.ns.insert(p.clone(), n);
                }
                Op::Write(p, off, len, b) => {
                    let v = self.file_mut(p)?;
                    let end = *off as usize + *len as usize;
                    if *len > 0 && v.len() < end {
                        v.resize(end, 0);
                    }
                    v[*off as usize..end].fill(*b);
                }
                Op::Truncate(p, s) => {
                    let v = self.file_mut(p)?;
                    v.resize(*s as usize, 0);
                }
                Op::Unlink(p) | Op::UnlinkOpen(p) => {
                    self.parent_ok(p)?;
                    match self.ns.get(p) {
                        None => return Err(ENOENT),
                        Some(Node::Dir) => return Err(EPERM),
                        Some(_) => {
                            self.ns.remove(p);
                            self.gc();
                        }
                    }
                }
                Op::Rmdir(p) => {
                    self.parent_ok(p)?;
                    match self.ns.get(p) {
                        None => return Err(ENOENT),
                        Some(Node::Dir) => {
                            if !self.children(p).is_empty() {
                                return Err(ENOTEMPTY);
                            }
                            self.ns.remove(p);
                        }
                        Some(_) => return Err(ENOTDIR),
                    }
                }
                Op::Link(a, b) => {
                    self.parent_ok(a)?;
                    let src = self.ns.get(a).cloned().ok_or(ENOENT)?;
                    self.parent_ok(b)?;
                    if src == Node::Dir {
                        return Err(EPERM);
                    }
                    if self.ns.contains_key(b) {
                        return Err(EEXIST);
                    }
                    self.ns.insert(b.clone(), src);
                }
                Op::Rename(a, b) => {
                    self.parent_ok(a)?;
                    self.parent_ok(b)?;
                    let src = self.ns.get(a).cloned().ok_or(ENOENT)?;
                    if a == b || self.ns.get(b) == Some(&src) && src != Node::Dir {
                        return Ok(()); // same name, or two links to one file
                    }
                    if src == Node::Dir && b.starts_with(&format!("{a}/")) {
                        return Err(EINVAL);
                    }
                    if let Some(t) = self.ns.get(b) {
                        match (&src, t) {
                            (Node::Dir, Node::Dir) if !self.children(b).is_empty() => {
                                return Err(ENOTEMPTY)
                            }
                            (Node::Dir, Node::Dir) => {}
                            (Node::Dir, _) => return Err(ENOTDIR),
                            (_, Node::Dir) => return Err(EISDIR),
                            _ => {}
                        }
                    }
                    let moved: Vec<(String, Node)> = self
                        .children(a)
                        .into_iter()
                        .map(|k| {
                            let n = self.ns.remove(&k).unwrap();
                            (format!("{b}{}", &k[a.len()..]), n)
                        })
                        .collect();
                    self.ns.remove(a);
                    self.ns.insert(b.clone(), src);
                    self.ns.extend(moved);
                    self.gc();
                }
            }
            Ok(())
        }
    }

    fn apply_fs(fs: &dyn FileSystem, op: &Op, m: &Model) -> Result<(), i32> {
        let e = |r: Errno| r.0;
        match op {
            Op::Create(p) | Op::Mkdir(p) => {
                let (d, n) = parent(fs, p).map_err(e)?;
                let k = if matches!(op, Op::Mkdir(_)) {
                    FileKind::Dir
                } else {
                    FileKind::Reg
                };
                fs.create(d, n.as_bytes(), k, 0o755, ROOT).map_err(e)?;
            }
            Op::Symlink(p, len) => {
                let (d, n) = parent(fs, p).map_err(e)?;
                fs.symlink(d, n.as_bytes(), &link_target(p, *len), ROOT)
                    .map_err(e)?;
            }
            Op::Write(p, off, len, b) => {
                let ino = walk(fs, p).map_err(e)?;
                let data = vec![*b; *len as usize];
                let n = fs.write(ino, *off, &data).map_err(e)?;
                assert_eq!(n, data.len());
            }
            Op::Truncate(p, s) => {
                let ino = walk(fs, p).map_err(e)?;
                fs.setattr(
                    ino,
                    &SetAttr {
                        size: Some(*s),
                        ..Default::default()
                    },
                )
                .map_err(e)?;
            }
            Op::Unlink(p) => {
                let (d, n) = parent(fs, p).map_err(e)?;
                fs.unlink(d, n.as_bytes()).map_err(e)?;
            }
            Op::UnlinkOpen(p) => {
                let (d, n) = parent(fs, p).map_err(e)?;
                let ino = fs.lookup(d, n.as_bytes()).map_err(e)?;
                fs.open(ino);
                let r = fs.unlink(d, n.as_bytes()).map_err(e);
                if r.is_ok() {
                    if let Some(Node::File(id)) = m.ns.get(p) {
                        let want = &m.files[id];
                        let a = fs.getattr(ino).unwrap();
                        assert_eq!(a.size, want.len() as u64);
                        assert_eq!(a.nlink as usize, m.nlink(*id) - 1);
                        if want.len() < 1 << 20 {
                            assert!(read_all(fs, ino) == *want);
                        }
                        if m.nlink(*id) == 1 {
                            fs.write(ino, 0, b"scribble").unwrap();
                        }
                    }
                }
                fs.release(ino);
                r?;
            }
            Op::Rmdir(p) => {
                let (d, n) = parent(fs, p).map_err(e)?;
                fs.rmdir(d, n.as_bytes()).map_err(e)?;
            }
            Op::Rename(a, b) => {
                let (da, na) = parent(fs, a).map_err(e)?;
                let (db, nb) = parent(fs, b).map_err(e)?;
                fs.rename(da, na.as_bytes(), db, nb.as_bytes()).map_err(e)?;
            }
            Op::Link(a, b) => {
                let (da, na) = parent(fs, a).map_err(e)?;
                let ino = fs.lookup(da, na.as_bytes()).map_err(e)?;
                let (db, nb) = parent(fs, b).map_err(e)?;
                fs.link(ino, db, nb.as_bytes()).map_err(e)?;
            }
        }
        Ok(())
    }

    fn check(fs: &dyn FileSystem, m: &Model) {
        for (p, n) in &m.ns {
            let ino = walk(fs, p).unwrap_or_else(|e| panic!("{p}: {e:?}"));
            let a = fs.getattr(ino).unwrap();
            match n {
                Node::Dir => {
                    assert_eq!(a.kind, FileKind::Dir, "{p}");
                    let subdirs = m
                        .children(p)
                        .iter()
                        .filter(|c| !c[p.len() + 1..].contains('/') && m.ns[*c] == Node::Dir)
                        .count();
                    assert_eq!(a.nlink as usize, 2 + subdirs, "links of {p}");
                }
                Node::Link(t, id) => {
                    let n =
                        m.ns.values()
                            .filter(|x| matches!(x, Node::Link(_, i) if i == id))
                            .count();
                    assert_eq!(a.nlink as usize, n, "links of {p}");
                    assert_eq!(a.kind, FileKind::Lnk, "{p}");
                    assert_eq!(a.size, t.len() as u64);
                    assert_eq!(&fs.readlink(ino).unwrap(), t, "{p}");
                }
                Node::File(id) => {
                    let v = &m.files[id];
                    assert_eq!(a.kind, FileKind::Reg, "{p}");
                    assert_eq!(a.nlink as usize, m.nlink(*id), "links of {p}");
                    assert_eq!(a.size, v.len() as u64, "{p}");
                    if v.len() < 1 << 20 {
                        assert!(read_all(fs, ino) == *v, "contents of {p}");
                    } else {
                        for off in (0..v.len()).step_by(4099).chain([v.len() - 1]) {
                            let mut b = [0u8; 1];
                            fs.read(ino, off as u64, &mut b).unwrap();
                            assert_eq!(b[0], v[off], "{p}@{off}");
                        }
                        let tail = v.len().saturating_sub(300_000);
                        let mut buf = vec![0u8; v.len() - tail];
                        assert_eq!(fs.read(ino, tail as u64, &mut buf).unwrap(), buf.len());
                        assert!(buf == v[tail..], "tail of {p}");
                    }
                }
            }
        }
        // nothing extra in any directory
        let mut dirs = vec!["".to_string()];
        dirs.extend(
            m.ns.iter()
                .filter(|(_, n)| **n == Node::Dir)
                .map(|(p, _)| p.clone()),
        );
        for d in dirs {
            let ino = walk(fs, &d).unwrap();
            let mut names: Vec<String> = list(fs, ino)
                .into_iter()
                .map(|e| String::from_utf8(e.0).unwrap())
                .filter(|n| n != "." && n != ".." && n != "lost+found")
                .collect();
            names.sort();
            let mut want: Vec<String> =
                m.ns.keys()
                    .filter(|k| k.starts_with(&format!("{d}/")) && !k[d.len() + 1..].contains('/'))
                    .map(|k| k[d.len() + 1..].to_string())
                    .collect();
            want.sort();
            assert_eq!(names, want, "listing of {d:?}");
        }
    }

    fn cases() -> u32 {
        std::env::var("EXT2_PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(24)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]
        #[test]
        fn random_ops_match_model_and_fsck(
            layout in prop::sample::select(vec![("1024", false), ("2048", false), ("4096", false), ("1024", true)]),
            ops in prop::collection::vec(op(), 1..80),
        ) {
            require_e2fsprogs();
            let t = TempDir::new("prop");
            let img = t.path("p.img");
            let mut args = vec!["-t", "ext2", "-b", layout.0];
            if layout.1 {
                args.extend_from_slice(&["-r", "0"]);
            }
            mkfs(&img, 12 * 1024, &args);
            let fs = mount(&img);
            let mut m = Model::default();
            for op in &ops {
                let got = apply_fs(&*fs, op, &m);
                let want = m.apply(op);
                prop_assert_eq!(got, want, "{:?}", op);
            }
            check(&*fs, &m);
            fs.unmount().unwrap();
            fsck_clean(&img);
            let fs = mount(&img);
            check(&*fs, &m);
            fs.unmount().unwrap();
        }
    }
}
