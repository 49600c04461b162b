//! `cargo xtask bench fuse` (second part): what FUSE itself costs and what
//! NetBSD's FFS adds, in one run on the same tree (~4000 files, ~100 MiB,
//! as the first part's): cp -a of the tree plus umount, and reading it
//! back (tar c | wc -c) after the caches were dropped.
//!
//! - floor: `fuse_floor`, a minimal fuser daemon answering from a hash map
//!   in memory, with rump_mount's mount options and threads;
//! - rump_ext2fs: the built-in kernel's ext2 in process (a 1 GiB image);
//! - rump_ffs: NetBSD's FFS in process (a 256 MiB `makefs` image);
//! - sysproxy: the same FFS image in `rump_server -l`, mounted with
//!   `rumpctl mount -t ffs` and served by `rumpctl fuse` (two hops);
//! - kernel ext2: the host kernel's own ext2 on a loop mount of the same
//!   kind of image (root only): no FUSE at all, so its read-back is what
//!   the disk allows a file system that, unlike the floor, reads the tree
//!   from the image.
//!
//! BENCH_FFS_OPTS (e.g. `log` or `async`) mounts both FFS rows with those
//! NetBSD mount options: without them NetBSD's FFS writes metadata
//! synchronously, each such write an `fdatasync` of the image, which both
//! FFS rows pay alike.
//!
//! Prints the median of BENCH_RUNS runs (default 3) of each row and the
//! ratios the targets are about: rump_ext2fs/floor (target at most 1.5),
//! rump_ffs/floor (at most 2), rump_ffs/sysproxy (at most 0.5). The
//! NetBSD rows need RUMP_NETBSD_DIR; rump_ext2fs, rump_server and rumpctl
//! are taken from beside rump_mount (`cargo xtask bench fuse` builds them
//! first).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use testkit::fusebench::{drop_caches, make_tree, median, mounted, sh, time};

const RUMP_MOUNT: &str = env!("CARGO_BIN_EXE_rump_mount");
const FLOOR: &str = env!("CARGO_BIN_EXE_fuse_floor");
const MIB: usize = 1 << 20;

/// Pids of processes whose command line contains `needle`.
fn pids_with(needle: &str) -> Vec<i32> {
    let mut v = vec![];
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == std::process::id() as i32 {
            continue;
        }
        if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
            if String::from_utf8_lossy(&c)
                .replace('\0', " ")
                .contains(needle)
            {
                v.push(pid);
            }
        }
    }
    v
}

fn wait_gone(pids: &[i32]) {
    let t = Instant::now();
    while pids
        .iter()
        .any(|p| Path::new(&format!("/proc/{p}")).exists())
    {
        if t.elapsed() > Duration::from_secs(300) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A sibling program of rump_mount (built by `cargo xtask bench fuse`).
fn sibling(name: &str) -> Option<PathBuf> {
    let p = Path::new(RUMP_MOUNT).parent()?.join(name);
    p.exists().then_some(p)
}

/// `-o OPTS` from BENCH_FFS_OPTS, or nothing.
fn ffs_opts() -> String {
    match std::env::var("BENCH_FFS_OPTS") {
        Ok(o) if !o.is_empty() => format!("-o '{o}'"),
        _ => String::new(),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Floor,
    Ext2,
    Ffs,
    Sysproxy,
    Kernel,
}

const KINDS: [Kind; 5] = [
    Kind::Floor,
    Kind::Ext2,
    Kind::Ffs,
    Kind::Sysproxy,
    Kind::Kernel,
];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Floor => "floor",
            Kind::Ext2 => "rump_ext2fs",
            Kind::Ffs => "rump_ffs",
            Kind::Sysproxy => "sysproxy",
            Kind::Kernel => "kernel_ext2",
        }
    }
}

struct Ctx {
    base: PathBuf,
    nb: Option<PathBuf>,
}

impl Ctx {
    fn img(&self, k: Kind) -> PathBuf {
        self.base.join(format!("{}.img", k.name()))
    }
    fn sock(&self) -> String {
        format!("unix://{}", self.base.join("sock").display())
    }

    /// A fresh, empty file system for `k`.
    fn make(&self, k: Kind) -> Result<(), String> {
        let img = self.img(k);
        let _ = std::fs::remove_file(&img);
        match k {
            Kind::Floor => Ok(()),
            Kind::Ext2 | Kind::Kernel => {
                std::fs::File::create(&img)
                    .and_then(|f| f.set_len(1 << 30))
                    .map_err(|e| e.to_string())?;
                sh(&format!("mke2fs -q -F -t ext2 -b 4096 '{}'", img.display()))
            }
            Kind::Ffs | Kind::Sysproxy => {
                let empty = self.base.join("empty");
                std::fs::create_dir_all(&empty).map_err(|e| e.to_string())?;
                sh(&format!(
                    "makefs -t ffs -s 256m -f 20000 -o version=2 '{}' '{}' >/dev/null",
                    img.display(),
                    empty.display()
                ))
            }
        }
    }

    fn mount(&self, k: Kind, mnt: &Path) -> Result<(), String> {
        let (i, m) = (self.img(k), mnt.display());
        let i = i.display();
        match k {
            Kind::Floor => sh(&format!("'{FLOOR}' '{m}'")),
            Kind::Kernel => sh(&format!("mount -t ext2 -o loop '{i}' '{m}'")),
            Kind::Ext2 => {
                let p = sibling("rump_ext2fs").ok_or("rump_ext2fs not built")?;
                sh(&format!("'{}' '{i}' '{m}'", p.display()))
            }
            Kind::Ffs => {
                let nb = self.nb.as_ref().ok_or("RUMP_NETBSD_DIR not set")?;
                sh(&format!(
                    "RUMP_NETBSD_DIR='{}' '{RUMP_MOUNT}' -t ffs {} '{i}' '{m}' >/dev/null",
                    nb.display(),
                    ffs_opts()
                ))
            }
            Kind::Sysproxy => {
                let nb = self.nb.as_ref().ok_or("RUMP_NETBSD_DIR not set")?;
                let server = sibling("rump_server").ok_or("rump_server not built")?;
                let ctl = sibling("rumpctl").ok_or("rumpctl not built")?;
                // Components by name, found under RUMP_NETBSD_DIR/lib.
                let url = self.sock();
                sh(&format!(
                    "RUMP_NETBSD_DIR='{}' '{}' -l rumpvfs -l rumpdev -l rumpdev_disk \
                     -l rumpfs_ffs -d 'key=/dk,hostpath={i},size=host' '{url}'",
                    nb.display(),
                    server.display(),
                ))?;
                let c = ctl.display();
                sh(&format!(
                    "export RUMP_SERVER='{url}'; '{c}' mkdir /mnt && '{c}' mount -t ffs {} /dk /mnt \
                     && '{c}' fuse /mnt '{m}'",
                    ffs_opts()
                ))
            }
        }
    }

    /// Unmount; wait until the image is complete (the daemons are gone).
    fn umount(&self, k: Kind, mnt: &Path) -> Result<(), String> {
        let needle = match k {
            Kind::Floor => mnt.display().to_string(),
            Kind::Sysproxy => self.sock(),
            _ => self.img(k).display().to_string(),
        };
        let pids = pids_with(&needle);
        sh(&format!("umount '{}'", mnt.display()))?;
        if k == Kind::Sysproxy {
            let halt = sibling("rump_halt").ok_or("rump_halt not built")?;
            sh(&format!(
                "RUMP_SERVER='{}' '{}'",
                self.sock(),
                halt.display()
            ))?;
        }
        wait_gone(&pids);
        Ok(())
    }
}

const ROWS: [&str; 2] = ["cp -a tree + umount", "read back (tar c | wc -c)"];

/// Seconds per row and kind; None where a step failed.
type Table = Vec<Vec<Option<f64>>>;

fn pass(cx: &Ctx, src: &Path) -> Table {
    let mut res: Table = vec![vec![None; KINDS.len()]; ROWS.len()];
    for (k, kind) in KINDS.iter().enumerate() {
        let mnt = cx.base.join(format!("mnt{k}"));
        std::fs::create_dir_all(&mnt).unwrap();
        let r = (|| -> Result<(), String> {
            cx.make(*kind)?;
            cx.mount(*kind, &mnt)?;
            sh(&format!(
                "tar cf - -C '{}' . | cat >/dev/null",
                src.display()
            ))?;
            let t = Instant::now();
            sh(&format!(
                "cp -a '{}' '{}/tree'",
                src.display(),
                mnt.display()
            ))?;
            cx.umount(*kind, &mnt)?;
            res[0][k] = Some(t.elapsed().as_secs_f64());
            if *kind == Kind::Floor {
                // In memory: fill a new one, then drop the host's caches.
                cx.mount(*kind, &mnt)?;
                sh(&format!(
                    "cp -a '{}' '{}/tree'",
                    src.display(),
                    mnt.display()
                ))?;
            } else {
                drop_caches();
                cx.mount(*kind, &mnt)?;
            }
            drop_caches();
            res[1][k] = Some(time(&format!(
                "tar cf - -C '{}/tree' . | wc -c >/dev/null",
                mnt.display()
            ))?);
            cx.umount(*kind, &mnt)?;
            Ok(())
        })();
        if let Err(e) = r {
            println!("{}: {e}", kind.name());
            if mounted(&mnt) {
                let _ = sh(&format!("umount -l '{}'", mnt.display()));
            }
            for p in pids_with(&cx.sock()) {
                // SAFETY: kill has no memory preconditions.
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
        }
        let _ = std::fs::remove_file(cx.img(*kind));
    }
    res
}

fn main() {
    let base = std::env::temp_dir().join(format!("rump-bench-netbsd-fuse.{}", std::process::id()));
    std::fs::create_dir_all(&base).unwrap();
    let src = base.join("src");
    let (n, bytes) = make_tree(&src);
    let nb = std::env::var_os("RUMP_NETBSD_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from);
    println!(
        "tree: {n} files, {} MiB; floor, rump_ext2fs, rump_ffs (NetBSD's FFS in process), \
         sysproxy (rump_server -l + rumpctl fuse, same FFS), kernel ext2 (loop mount, no FUSE)",
        bytes / MIB
    );
    if !ffs_opts().is_empty() {
        println!("FFS mounted with {}", ffs_opts());
    }
    if nb.is_none() {
        println!("RUMP_NETBSD_DIR not set: the rump_ffs and sysproxy rows are n/a");
    }
    let runs = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(3)
        .max(1);
    let cx = Ctx {
        base: base.clone(),
        nb,
    };
    let all: Vec<Table> = (0..runs).map(|_| pass(&cx, &src)).collect();
    println!("median of {runs}");
    println!(
        "{:<28} {:>9} {:>12} {:>9} {:>9} {:>12} {:>11} {:>11} {:>12} {:>12}",
        "row (seconds)",
        "floor",
        "rump_ext2fs",
        "rump_ffs",
        "sysproxy",
        "kernel ext2",
        "ext2/floor",
        "ffs/floor",
        "ffs/sysproxy",
        "kernel/floor"
    );
    let f = |v: Option<f64>| v.map(|x| format!("{x:.3}")).unwrap_or_else(|| "n/a".into());
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "n/a".into(),
    };
    for (i, row) in ROWS.iter().enumerate() {
        let m: Vec<Option<f64>> = (0..KINDS.len())
            .map(|k| median(all.iter().filter_map(|t| t[i][k]).collect()))
            .collect();
        println!(
            "{:<28} {:>9} {:>12} {:>9} {:>9} {:>12} {:>11} {:>11} {:>12} {:>12}",
            row,
            f(m[0]),
            f(m[1]),
            f(m[2]),
            f(m[3]),
            f(m[4]),
            ratio(m[1], m[0]),
            ratio(m[2], m[0]),
            ratio(m[2], m[3]),
            ratio(m[4], m[0])
        );
    }
    let _ = std::fs::remove_dir_all(&base);
}
