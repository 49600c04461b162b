//! Untrusted images (docs/design.md, "ext2"): a corpus of corrupt ext2
//! images — targeted damage (size words, loops of indirect blocks, absurd
//! counts, broken directory records) and deterministic random mutations
//! of two small committed images — each mounted and exercised in memory.
//! No case may panic, hang, or take more than a bounded time per
//! operation. The same exerciser backs the fuzz target `fuzz/ext2`.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ext2::{Ext2Fs, MountOptions};
use testkit::exercise::{exercise, MemStore, Report};
use vfs::FileSystem;

const REV0: &[u8] = include_bytes!("data/rev0.img");
const REV1: &[u8] = include_bytes!("data/rev1.img");

/// No single operation on a 160 KiB image may take longer (debug build,
/// a loaded 2-core machine).
const OP_LIMIT: Duration = Duration::from_millis(500);

fn le16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn put32(b: &mut [u8], o: usize, v: u32) {
    b[o..o + 4].copy_from_slice(&v.to_le_bytes());
}
fn put16(b: &mut [u8], o: usize, v: u16) {
    b[o..o + 2].copy_from_slice(&v.to_le_bytes());
}

/// Geometry of a sane image, for aiming damage.
struct Geo {
    bs: usize,
    ipg: u32,
    isz: usize,
    itab: Vec<u32>,
}

fn geo(img: &[u8]) -> Geo {
    let sb = &img[1024..2048];
    let bs = 1024usize << le32(sb, 24);
    let ipg = le32(sb, 40);
    let isz = if le32(sb, 76) == 0 {
        128
    } else {
        le16(sb, 88) as usize
    };
    let first = le32(sb, 20) as usize;
    let ngroups = (le32(sb, 4) as usize - first).div_ceil(le32(sb, 32) as usize);
    let gdt = (first + 1) * bs;
    let itab = (0..ngroups).map(|g| le32(img, gdt + g * 32 + 8)).collect();
    Geo { bs, ipg, isz, itab }
}

impl Geo {
    fn inode(&self, ino: u32) -> usize {
        let g = ((ino - 1) / self.ipg) as usize;
        self.itab[g] as usize * self.bs + ((ino - 1) % self.ipg) as usize * self.isz
    }
}

/// The inode number of `/name` in a sane image.
fn ino_of(img: &[u8], path: &[&str]) -> u32 {
    let fs = Ext2Fs::mount_with(
        Arc::new(MemStore(Mutex::new(img.to_vec()))),
        MountOptions {
            read_only: true,
            force: false,
        },
    )
    .expect("mount the base image");
    let mut ino = fs.root();
    for c in path {
        ino = fs
            .lookup(ino, c.as_bytes())
            .unwrap_or_else(|e| panic!("lookup {c}: {e}"));
    }
    ino as u32
}

/// Targeted damage: (what, image).
fn targeted(base: &[u8]) -> Vec<(String, Vec<u8>)> {
    let g = geo(base);
    let mut out = Vec::new();
    let mut case = |what: &str, f: &dyn Fn(&mut Vec<u8>)| {
        let mut v = base.to_vec();
        f(&mut v);
        out.push((what.to_string(), v));
    };
    let root = g.inode(2);
    let sub = g.inode(ino_of(base, &["sub"]));
    let big = g.inode(ino_of(base, &["big"]));
    let slow = g.inode(ino_of(base, &["slowlink"]));
    let bs = g.bs;
    // Size words of directories.
    for (name, at) in [("root", root), ("sub", sub)] {
        case(&format!("{name}: size high word 0x100"), &|v| {
            put32(v, at + 108, 0x100)
        });
        case(&format!("{name}: size high word all ones"), &|v| {
            put32(v, at + 108, u32::MAX)
        });
        case(&format!("{name}: size 4 GiB - 1"), &|v| {
            put32(v, at + 4, u32::MAX)
        });
        case(&format!("{name}: size and i_blocks all ones"), &|v| {
            put32(v, at + 4, u32::MAX);
            put32(v, at + 108, u32::MAX);
            put32(v, at + 28, u32::MAX);
        });
        case(&format!("{name}: size 0"), &|v| put32(v, at + 4, 0));
        case(&format!("{name}: links 0"), &|v| put16(v, at + 26, 0));
        case(&format!("{name}: links 65535"), &|v| {
            put16(v, at + 26, u16::MAX)
        });
        case(&format!("{name}: mode 0"), &|v| put16(v, at, 0));
        case(&format!("{name}: made a regular file"), &|v| {
            put16(v, at, 0o100644)
        });
        case(&format!("{name}: first block 0"), &|v| put32(v, at + 40, 0));
        case(&format!("{name}: first block past the end"), &|v| {
            put32(v, at + 40, 1 << 30)
        });
        case(&format!("{name}: first block is the superblock"), &|v| {
            put32(v, at + 40, 1)
        });
        case(&format!("{name}: extents flag"), &|v| {
            put32(v, at + 32, 0x80000)
        });
        // Directory records.
        let blk = le32(base, at + 40) as usize * bs;
        case(&format!("{name}: rec_len 0"), &|v| put16(v, blk + 4, 0));
        case(&format!("{name}: rec_len 4"), &|v| put16(v, blk + 4, 4));
        case(&format!("{name}: rec_len past the block"), &|v| {
            put16(v, blk + 12 + 4, 0xfff0)
        });
        case(&format!("{name}: name_len 255"), &|v| v[blk + 12 + 6] = 255);
        case(&format!("{name}: entry inode past the table"), &|v| {
            put32(v, blk + 24, u32::MAX)
        });
        case(&format!("{name}: entry inode 0 first"), &|v| {
            put32(v, blk, 0)
        });
        case(&format!("{name}: '..' points at itself"), &|v| {
            let me = le32(v, blk);
            put32(v, blk + 12, me)
        });
        case(&format!("{name}: all records zero"), &|v| {
            v[blk..blk + bs].fill(0)
        });
        case(&format!("{name}: all records 0xff"), &|v| {
            v[blk..blk + bs].fill(0xff)
        });
    }
    // A loop of ".." entries: /sub's ".." is /sub/deeper, whose ".." is /sub.
    let sub_ino = ino_of(base, &["sub"]);
    let deeper_ino = ino_of(base, &["sub", "deeper"]);
    let deeper = g.inode(deeper_ino);
    let sub_blk = le32(base, sub + 40) as usize * bs;
    let deeper_blk = le32(base, deeper + 40) as usize * bs;
    case("'..' loop between /sub and /sub/deeper", &|v| {
        put32(v, sub_blk + 12, deeper_ino);
        put32(v, deeper_blk + 12, sub_ino);
    });
    // Indirect blocks of a file: loops and absurd pointers.
    let ind = le32(base, big + 40 + 12 * 4);
    assert_ne!(ind, 0, "base image: /big has an indirect block");
    let indo = ind as usize * bs;
    case("big: indirect block points at itself", &|v| {
        put32(v, indo, ind)
    });
    case(
        "big: double indirect is the indirect block (which points at itself)",
        &|v| {
            v[indo..indo + bs]
                .chunks_exact_mut(4)
                .for_each(|c| c.copy_from_slice(&ind.to_le_bytes()));
            put32(v, big + 40 + 13 * 4, ind);
            put32(v, big + 40 + 14 * 4, ind);
            put32(v, big + 4, u32::MAX);
            put32(v, big + 108, 0xff);
        },
    );
    case("big: every pointer the indirect block", &|v| {
        for k in 0..15 {
            put32(v, big + 40 + k * 4, ind);
        }
    });
    case("big: indirect pointers all ones", &|v| {
        v[indo..indo + bs].fill(0xff)
    });
    case("big: size 1 TiB, i_blocks all ones", &|v| {
        put32(v, big + 108, 0x100);
        put32(v, big + 28, u32::MAX);
    });
    case("big: links 0", &|v| put16(v, big + 26, 0));
    case("big: a directory now", &|v| put16(v, big, 0o40755));
    case("slowlink: size 1 MiB", &|v| put32(v, slow + 4, 1 << 20));
    case("slowlink: size 0, no blocks", &|v| {
        put32(v, slow + 4, 0);
        put32(v, slow + 28, 0)
    });
    case("slowlink: block past the end", &|v| {
        put32(v, slow + 40, u32::MAX)
    });
    // Superblock and group descriptors.
    let sb = 1024;
    for (what, off, val) in [
        ("inodes count huge", 0, u32::MAX),
        ("blocks count huge", 4, u32::MAX),
        ("blocks count 1", 4, 1),
        ("free blocks huge", 12, u32::MAX),
        ("free inodes huge", 16, u32::MAX),
        ("first data block 7", 20, 7),
        ("block size 2^30", 24, 20),
        ("blocks per group 1", 32, 1),
        ("blocks per group huge", 32, u32::MAX),
        ("inodes per group 1", 40, 1),
        ("inodes per group huge", 40, u32::MAX),
        ("revision 7", 76, 7),
        ("first inode huge", 84, u32::MAX),
        ("incompat all ones", 96, u32::MAX),
        ("ro_compat all ones", 100, u32::MAX),
    ] {
        case(&format!("superblock: {what}"), &|v| put32(v, sb + off, val));
    }
    case("superblock: inode size 0", &|v| put16(v, sb + 88, 0));
    case("superblock: inode size 65535", &|v| {
        put16(v, sb + 88, u16::MAX)
    });
    let gdt = 2 * bs.max(1024);
    for (what, off) in [("block bitmap", 0), ("inode bitmap", 4), ("inode table", 8)] {
        case(&format!("group 0: {what} 0"), &|v| put32(v, gdt + off, 0));
        case(&format!("group 0: {what} past the end"), &|v| {
            put32(v, gdt + off, u32::MAX)
        });
        case(&format!("group 0: {what} is the superblock"), &|v| {
            put32(v, gdt + off, 1)
        });
    }
    case("group 0: free counts huge", &|v| {
        put32(v, gdt + 12, u32::MAX)
    });
    case("group 0: bitmaps all free", &|v| {
        let bb = le32(v, gdt) as usize * bs;
        let ib = le32(v, gdt + 4) as usize * bs;
        v[bb..bb + bs].fill(0);
        v[ib..ib + bs].fill(0);
    });
    case("group 0: bitmaps all used", &|v| {
        let bb = le32(v, gdt) as usize * bs;
        let ib = le32(v, gdt + 4) as usize * bs;
        v[bb..bb + bs].fill(0xff);
        v[ib..ib + bs].fill(0xff);
    });
    case("truncated image", &|v| v.truncate(v.len() / 3));
    case("image of 2 KiB", &|v| v.truncate(2048));
    out
}

/// A small deterministic generator (xorshift).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Deterministic random damage to the image's metadata and directory
/// blocks (the blocks that are not all zero).
fn mutations(base: &[u8], seed: u64, n: usize) -> Vec<(String, Vec<u8>)> {
    let g = geo(base);
    let live: Vec<usize> = (1..base.len() / g.bs)
        .filter(|&b| base[b * g.bs..(b + 1) * g.bs].iter().any(|&x| x != 0))
        .collect();
    let mut rng = Rng(seed);
    (0..n)
        .map(|k| {
            let mut v = base.to_vec();
            let edits = 1 + rng.below(6);
            for _ in 0..edits {
                // Mostly the first blocks (superblock, descriptors, bitmaps,
                // inode table), else any block holding data.
                let blk = if rng.below(3) > 0 {
                    1 + rng.below(live.len().min(8))
                } else {
                    live[rng.below(live.len())]
                };
                let at = (blk * g.bs + rng.below(g.bs)) & !3;
                if at + 4 > v.len() {
                    continue;
                }
                let val = match rng.below(6) {
                    0 => 0,
                    1 => u32::MAX,
                    2 => 1 << rng.below(32),
                    3 => rng.below(base.len() / g.bs) as u32,
                    4 => (rng.next() as u32) & 0xff,
                    _ => rng.next() as u32,
                };
                put32(&mut v, at, val);
            }
            (format!("random mutation {k} (seed {seed})"), v)
        })
        .collect()
}

/// Run every case on a worker thread: a panic fails the case, a hang
/// (no answer in 60 s) fails the test.
fn run_all(cases: Vec<(String, Vec<u8>)>) -> Vec<(String, Report)> {
    let n = cases.len();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for (what, img) in cases {
            let r = std::panic::catch_unwind(|| exercise(&img));
            if tx.send((what, r.map_err(|p| format!("{p:?}")))).is_err() {
                return;
            }
        }
    });
    let mut out = Vec::new();
    let mut failures = Vec::new();
    let mut last = String::from("(the first case)");
    for _ in 0..n {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok((what, Ok(r))) => {
                if r.slowest > OP_LIMIT {
                    failures.push(format!("{what}: {} took {:?}", r.slowest_op, r.slowest));
                }
                last = what.clone();
                out.push((what, r));
            }
            Ok((what, Err(p))) => {
                failures.push(format!("{what}: panicked: {p}"));
                last = what;
            }
            Err(_) => panic!("hang: no answer within 60 s after {last}"),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {n} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    out
}

#[test]
fn base_images_mount_and_work() {
    for (name, img) in [("rev0", REV0), ("rev1", REV1)] {
        let r = exercise(img);
        assert!(r.mounted, "{name} does not mount");
        assert!(r.ops > 50, "{name}: only {} operations", r.ops);
        eprintln!(
            "{name}: {} operations, {} errors, slowest {:?} ({})",
            r.ops, r.errors, r.slowest, r.slowest_op
        );
    }
}

#[test]
fn targeted_damage_is_survived() {
    let t = Instant::now();
    let mut cases = targeted(REV1);
    cases.extend(
        targeted(REV0)
            .into_iter()
            .map(|(w, v)| (format!("rev0 {w}"), v)),
    );
    let n = cases.len();
    let out = run_all(cases);
    let mounted = out.iter().filter(|(_, r)| r.mounted).count();
    let slowest = out
        .iter()
        .max_by_key(|(_, r)| r.slowest)
        .map(|(w, r)| format!("{w}: {} {:?}", r.slowest_op, r.slowest));
    eprintln!(
        "{n} targeted cases ({mounted} mounted) in {:?}; slowest: {slowest:?}",
        t.elapsed()
    );
}

#[test]
fn random_mutations_are_survived() {
    let t = Instant::now();
    let mut cases = mutations(REV1, 0x5eed_0001, 1500);
    cases.extend(mutations(REV0, 0x5eed_0002, 1500));
    let n = cases.len();
    let out = run_all(cases);
    let mounted = out.iter().filter(|(_, r)| r.mounted).count();
    eprintln!(
        "{n} mutated images ({mounted} mounted) in {:?}",
        t.elapsed()
    );
    assert!(
        mounted > n / 4,
        "too few mutated images mount ({mounted} of {n}) to test much"
    );
}

/// The image from the issue: a directory whose size's high word claims
/// terabytes. Listing and looking up in it return promptly.
#[test]
fn directory_claiming_terabytes_is_listed_promptly() {
    for base in [REV0, REV1] {
        let g = geo(base);
        let sub = ino_of(base, &["sub"]);
        // The baseline: the same listing and lookup on the sound image.
        let sound = Ext2Fs::mount_with(
            Arc::new(MemStore(Mutex::new(base.to_vec()))),
            MountOptions {
                read_only: false,
                force: true,
            },
        )
        .expect("mount the sound image");
        let (_, base_list) = testkit::timing::timed(|| {
            sound
                .readdir(sub as u64, 0, &mut |_| true)
                .expect("readdir")
        });
        let (_, base_look) = testkit::timing::timed(|| sound.lookup(sub as u64, b"no-such-name"));
        drop(sound);
        let mut img = base.to_vec();
        put32(&mut img, g.inode(sub) + 108, 0x100);
        put32(&mut img, g.inode(2) + 108, 0xffff);
        let fs = Ext2Fs::mount_with(
            Arc::new(MemStore(Mutex::new(img))),
            MountOptions {
                read_only: false,
                force: true,
            },
        )
        .expect("mount");
        let t = Instant::now();
        let mut names = 0;
        let r = fs.readdir(sub as u64, 0, &mut |_| {
            names += 1;
            true
        });
        let list = t.elapsed();
        let t = Instant::now();
        let l = fs.lookup(sub as u64, b"no-such-name");
        let look = t.elapsed();
        let root_l = fs.lookup(fs.root(), b"sub");
        eprintln!("listing: {r:?}, {names} names in {list:?}; lookup: {l:?} in {look:?}; /sub: {root_l:?}");
        let floor = Duration::from_secs(1);
        testkit::timing::assert_within("the listing", list, base_list, 100, floor);
        testkit::timing::assert_within("the lookup", look, base_look, 100, floor);
        // The real entries are all there.
        assert!(r.is_err() || names >= 22, "{names} names");
        // And the directory still works.
        let f = fs.create(
            sub as u64,
            b"new",
            vfs::FileKind::Reg,
            0o644,
            Default::default(),
        );
        assert!(f.is_ok(), "{f:?}");
        fs.unmount().unwrap();
    }
}

/// Each reason a mount is refused is its own `MountError` variant, with
/// the errno `mount(2)` returns and the message the log shows.
#[test]
fn mount_refusals_are_typed() {
    use ext2::{FeatureError, GeometryError, MountError};
    use netbsd_abi::errno::{EFTYPE, EINVAL, EPERM};
    use netbsd_abi::Errno;

    let refuse = |img: Vec<u8>, read_only: bool| -> MountError {
        match Ext2Fs::mount_with(
            Arc::new(MemStore(Mutex::new(img))),
            MountOptions {
                read_only,
                force: false,
            },
        ) {
            Ok(_) => panic!("mounted"),
            Err(e) => e,
        }
    };
    let sb = 1024;
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut v = REV1.to_vec();
        f(&mut v);
        v
    };

    let e = refuse(vec![0; 1500], true);
    assert_eq!(
        (e.clone(), e.errno()),
        (MountError::TooSmall, Errno(EINVAL))
    );
    assert_eq!(e.to_string(), "device too small for an ext2 file system");

    let e = refuse(vec![0; 65536], true);
    assert_eq!(
        (e.clone(), e.errno()),
        (MountError::BadMagic(0), Errno(EINVAL))
    );
    assert_eq!(e.to_string(), "not an ext2 file system (magic 0x0000)");

    // extents (0x40) among the incompatible features
    let e = refuse(
        with(&|v| {
            let f = le32(v, sb + 96);
            put32(v, sb + 96, f | 0x40);
        }),
        true,
    );
    assert_eq!(
        (e.clone(), e.errno()),
        (
            MountError::Feature(FeatureError::Incompatible(0x40)),
            Errno(EFTYPE)
        )
    );
    assert!(
        e.to_string()
            .starts_with("unsupported incompatible features: extent ("),
        "{e}"
    );

    let e = refuse(with(&|v| put32(v, sb + 32, 0)), true);
    assert!(
        matches!(
            e,
            MountError::Geometry(GeometryError::Groups { blocks: 0, .. })
        ),
        "{e:?}"
    );
    assert_eq!(e.errno(), Errno(EINVAL));
    assert!(
        e.to_string().starts_with("bad group geometry (0 blocks, "),
        "{e}"
    );

    let half = REV1[..REV1.len() / 2].to_vec();
    let e = refuse(half, true);
    assert!(matches!(e, MountError::DeviceTooSmall { .. }), "{e:?}");
    assert_eq!(e.errno(), Errno(EINVAL));

    // group 0's inode table beyond the last block
    let g = geo(REV1);
    let gdt0 = (le32(REV1, sb + 20) as usize + 1) * g.bs;
    let e = refuse(with(&|v| put32(v, gdt0 + 8, u32::MAX)), true);
    assert_eq!(
        (e.clone(), e.errno()),
        (MountError::CorruptGroupDescriptor(0), Errno(EINVAL))
    );
    assert_eq!(e.to_string(), "corrupt group descriptor 0");

    // not cleanly unmounted: read-write refused, read-only allowed
    let dirty = with(&|v| {
        let s = le16(v, sb + 58);
        put16(v, sb + 58, s & !1);
    });
    let e = refuse(dirty.clone(), false);
    assert_eq!((e.clone(), e.errno()), (MountError::NotClean, Errno(EPERM)));
    assert!(e.to_string().contains("not clean"), "{e}");
    let fs = Ext2Fs::mount_with(
        Arc::new(MemStore(Mutex::new(dirty))),
        MountOptions {
            read_only: true,
            force: false,
        },
    )
    .expect("read-only mount of a file system not clean");
    fs.unmount().unwrap();
}
