//! `cargo xtask bench fuse`: the same tree and files through rump_ext2fs,
//! through fuse2fs, and through the host kernel's own ext2 on a loop
//! device, each on a fresh image of the same size, in one run: cp -a of a
//! ~4000-file, ~100 MiB tree plus umount; reading it back (tar c | wc -c);
//! find -ls; a 256 MiB sequential write (conv=fsync) and read. Prints the
//! median of BENCH_RUNS runs (default 3) of each row, and the ratio
//! rump_ext2fs / fuse2fs of the medians (target: at most 0.5).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use testkit::fusebench::{drop_caches, make_tree, median, mounted, sh, time};

const RUMP_EXT2FS: &str = env!("CARGO_BIN_EXE_rump_ext2fs");
const MIB: usize = 1 << 20;

/// "taskset -c 0 " in the pinned pass: every command and daemon on one CPU.
static PIN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn pin() -> &'static str {
    if PIN.load(std::sync::atomic::Ordering::Relaxed) {
        "taskset -c 0 "
    } else {
        ""
    }
}

/// Pids of processes serving `img` (the FUSE daemons).
fn daemons(img: &Path) -> Vec<i32> {
    let needle = img.display().to_string();
    let mut v = vec![];
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
            if String::from_utf8_lossy(&c)
                .replace('\0', " ")
                .contains(&needle)
            {
                v.push(pid);
            }
        }
    }
    v
}

fn wait_gone(pids: &[i32]) {
    let t = Instant::now();
    while pids.iter().any(|&p| testkit::proc::process_alive(p)) {
        if t.elapsed() > Duration::from_secs(300) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Rump,
    Fuse2fs,
    Kernel,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Rump => "rump_ext2fs",
            Kind::Fuse2fs => "fuse2fs",
            Kind::Kernel => "kernel ext2",
        }
    }

    fn mount(self, img: &Path, mnt: &Path) -> Result<(), String> {
        let (i, m) = (img.display(), mnt.display());
        match self {
            // BENCH_RUMP_OPTS: extra rump_ext2fs options (e.g. -o threads=1).
            Kind::Rump => sh(&format!(
                "{}'{RUMP_EXT2FS}' {} '{i}' '{m}'",
                pin(),
                std::env::var("BENCH_RUMP_OPTS").unwrap_or_default()
            )),
            Kind::Fuse2fs => {
                let f = testkit::tools::find_tool("fuse2fs").ok_or("fuse2fs not installed")?;
                sh(&format!(
                    "{}'{}' '{i}' '{m}' -o rw,allow_other >/dev/null",
                    pin(),
                    f.display()
                ))?;
                // fuse2fs returns before the mount is always visible.
                let t = Instant::now();
                while !mounted(mnt) && t.elapsed() < Duration::from_secs(10) {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Ok(())
            }
            Kind::Kernel => sh(&format!("mount -t ext2 -o loop '{i}' '{m}'")),
        }
    }

    /// Unmount and wait until the image is complete (the daemon is gone).
    fn umount(self, img: &Path, mnt: &Path) -> Result<(), String> {
        let pids = if self == Kind::Kernel {
            vec![]
        } else {
            daemons(img)
        };
        sh(&format!("umount '{}'", mnt.display()))?;
        wait_gone(&pids);
        Ok(())
    }
}

fn main() {
    let base = tempfile_dir();
    let src = base.join("src");
    let (n, bytes) = make_tree(&src);
    println!(
        "tree: {n} files, {} MiB; images 1 GiB (4 KiB blocks)",
        bytes / MIB
    );
    let runs = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(3)
        .max(1);
    for pinned in [false, true] {
        PIN.store(pinned, std::sync::atomic::Ordering::Relaxed);
        println!(
            "\n{}, median of {runs}",
            if pinned {
                "pinned: everything on CPU 0"
            } else {
                "unpinned"
            }
        );
        let all: Vec<Table> = (0..runs).map(|_| pass(&base, &src)).collect();
        print_table(&all);
    }
    let _ = std::fs::remove_dir_all(&base);
}

const KINDS: [Kind; 3] = [Kind::Rump, Kind::Fuse2fs, Kind::Kernel];
const ROWS: [&str; 5] = [
    "cp -a tree + umount",
    "read back (tar c | wc -c)",
    "find -ls",
    "256 MiB write (fsync)",
    "256 MiB read",
];

/// Seconds per row and kind; None where a step failed.
type Table = Vec<Vec<Option<f64>>>;

fn pass(base: &Path, src: &Path) -> Table {
    let kinds = KINDS;
    let mut res: Table = vec![vec![None; kinds.len()]; ROWS.len()];
    for (k, kind) in kinds.iter().enumerate() {
        let img = base.join(format!("img{k}"));
        let mnt = base.join(format!("mnt{k}"));
        std::fs::create_dir_all(&mnt).unwrap();
        let r = (|| -> Result<(), String> {
            // An existing file of the size: mke2fs says nothing.
            std::fs::File::create(&img)
                .and_then(|f| f.set_len(1 << 30))
                .map_err(|e| format!("{}: {e}", img.display()))?;
            sh(&format!("mke2fs -q -F -t ext2 -b 4096 '{}'", img.display()))?;
            kind.mount(&img, &mnt)?;
            // The source in the page cache for every kind alike (the
            // rows before dropped it): the row times the target, not the
            // source disk.
            sh(&format!(
                "tar cf - -C '{}' . | cat >/dev/null",
                src.display()
            ))?;
            let t = Instant::now();
            sh(&format!(
                "{}cp -a '{}' '{}/tree'",
                pin(),
                src.display(),
                mnt.display()
            ))?;
            kind.umount(&img, &mnt)?;
            res[0][k] = Some(t.elapsed().as_secs_f64());
            drop_caches();
            kind.mount(&img, &mnt)?;
            res[1][k] = Some(time(&format!(
                "{0}tar cf - -C '{1}/tree' . | {0}wc -c >/dev/null",
                pin(),
                mnt.display()
            ))?);
            kind.umount(&img, &mnt)?;
            drop_caches();
            kind.mount(&img, &mnt)?;
            res[2][k] = Some(time(&format!(
                "{}find '{}/tree' -ls >/dev/null",
                pin(),
                mnt.display()
            ))?);
            res[3][k] = Some(time(&format!(
                "{}dd if=/dev/zero of='{}/seq' bs=1M count=256 conv=fsync status=none",
                pin(),
                mnt.display()
            ))?);
            kind.umount(&img, &mnt)?;
            drop_caches();
            kind.mount(&img, &mnt)?;
            res[4][k] = Some(time(&format!(
                "{}dd if='{}/seq' of=/dev/null bs=1M status=none",
                pin(),
                mnt.display()
            ))?);
            kind.umount(&img, &mnt)?;
            Ok(())
        })();
        if let Err(e) = r {
            println!("{}: {e}", kind.name());
            if mounted(&mnt) {
                let _ = sh(&format!("umount -l '{}'", mnt.display()));
            }
        }
        let _ = std::fs::remove_file(&img);
    }
    res
}

fn print_table(all: &[Table]) {
    println!(
        "{:<28} {:>12} {:>12} {:>12} {:>10}",
        "row (seconds)", "rump_ext2fs", "fuse2fs", "kernel ext2", "rump/f2fs"
    );
    let f = |v: Option<f64>| v.map(|x| format!("{x:.3}")).unwrap_or_else(|| "n/a".into());
    for (i, row) in ROWS.iter().enumerate() {
        let m: Vec<Option<f64>> = (0..KINDS.len())
            .map(|k| median(all.iter().filter_map(|t| t[i][k]).collect()))
            .collect();
        let ratio = match (m[0], m[1]) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
            _ => "n/a".into(),
        };
        println!(
            "{:<28} {:>12} {:>12} {:>12} {:>10}",
            row,
            f(m[0]),
            f(m[1]),
            f(m[2]),
            ratio
        );
    }
}

fn tempfile_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("rump-bench-fuse.{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
