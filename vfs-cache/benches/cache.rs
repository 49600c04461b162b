//! Flush throughput: sequential 64 KiB writes of 256 MiB through a
//! CachedDev on a HostDrive, then sync — against the floor measured in the
//! same run on the same file system: plain 64 KiB `write()`s of the same
//! amount plus `fsync` (what `dd bs=64k conv=fsync` does).
//!
//! Env: `VFS_CACHE_BENCH_DIR` (default: the system temp dir),
//! `VFS_CACHE_BENCH_MB` (default 256), `VFS_CACHE_BENCH_RUNS` (default 3,
//! best run reported), `VFS_CACHE_BENCH_ONLY=N` (one configuration),
//! `VFS_CACHE_BENCH_VERBOSE=1` (write and sync phases apart).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vfs_cache::{Cache, HostDrive, Store};

const CHUNK: usize = 64 * 1024;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn prepare(path: &Path, size: u64) -> Result<(), String> {
    let _ = fs::remove_file(path);
    let f = File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    f.set_len(size)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.sync_all().map_err(|e| format!("{}: {e}", path.display()))
}

/// The floor: 64 KiB write()s, then fsync.
fn floor(path: &Path, total: u64, buf: &[u8]) -> Result<Duration, String> {
    prepare(path, total)?;
    let t = Instant::now();
    let mut f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| e.to_string())?;
    let mut done = 0u64;
    while done < total {
        f.write_all(buf).map_err(|e| e.to_string())?;
        done += buf.len() as u64;
    }
    let w = t.elapsed();
    f.sync_all().map_err(|e| e.to_string())?;
    if std::env::var_os("VFS_CACHE_BENCH_VERBOSE").is_some() {
        println!("    (floor: writes {:?}, fsync {:?})", w, t.elapsed() - w);
    }
    Ok(t.elapsed())
}

/// Ours: 64 KiB Store::write()s through the cache, then sync.
fn cached(
    path: &Path,
    total: u64,
    buf: &[u8],
    limit: u64,
    bs: usize,
) -> Result<(Duration, vfs_cache::Stats), String> {
    prepare(path, total)?;
    let t = Instant::now();
    let p = path.to_str().ok_or("non-UTF-8 bench path")?;
    let drive = HostDrive::open(p, None).map_err(|e| format!("{p}: {e}"))?;
    let cache = Cache::new(limit);
    let dev = cache.attach(Arc::new(drive), bs);
    let mut off = 0u64;
    while off < total {
        dev.write(off, buf)
            .map_err(|e| format!("write at {off}: {e}"))?;
        off += buf.len() as u64;
    }
    let w = t.elapsed();
    dev.sync().map_err(|e| format!("sync: {e}"))?;
    if std::env::var_os("VFS_CACHE_BENCH_VERBOSE").is_some() {
        println!(
            "    (limit {limit}, bs {bs}: writes {:?}, sync {:?})",
            w,
            t.elapsed() - w
        );
    }
    Ok((t.elapsed(), cache.stats()))
}

fn mibs(total: u64, d: Duration) -> f64 {
    total as f64 / (1024.0 * 1024.0) / d.as_secs_f64()
}

fn main() {
    if let Err(e) = run() {
        eprintln!("bench cache: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let base = std::env::var_os("VFS_CACHE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("vfs-cache-bench-{}", std::process::id()));
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let r = bench(&dir);
    let _ = fs::remove_dir_all(&dir);
    r
}

fn bench(dir: &Path) -> Result<(), String> {
    let total = env_num("VFS_CACHE_BENCH_MB", 256) << 20;
    let runs = env_num("VFS_CACHE_BENCH_RUNS", 3).max(1);
    // Run only configuration N (0-based), for profiling.
    let only = std::env::var("VFS_CACHE_BENCH_ONLY")
        .ok()
        .and_then(|v| v.parse::<usize>().ok());
    let buf: Vec<u8> = (0..CHUNK).map(|i| (i * 7 + 3) as u8).collect();
    let floor_path = dir.join("floor.img");
    let ours_path = dir.join("cached.img");
    println!(
        "vfs-cache flush throughput: {} MiB in 64 KiB writes, then sync; dir {}",
        total >> 20,
        dir.display()
    );

    // (label, memory limit, block size)
    let configs: [(&str, u64, usize); 3] = [
        ("limit 64 MiB (throttled)", 64 << 20, 64 * 1024),
        ("limit 1 GiB (all cached)", 1 << 30, 64 * 1024),
        ("limit 64 MiB, 4 KiB blocks", 64 << 20, 4096),
    ];
    let mut best_floor = Duration::MAX;
    let mut best: Vec<(Duration, Option<vfs_cache::Stats>)> =
        vec![(Duration::MAX, None); configs.len()];
    for _ in 0..runs {
        let f = floor(&floor_path, total, &buf)?;
        let _ = fs::remove_file(&floor_path);
        best_floor = best_floor.min(f);
        for (i, &(_, limit, bs)) in configs.iter().enumerate() {
            if only.is_some_and(|o| o != i) {
                continue;
            }
            let (d, st) = cached(&ours_path, total, &buf, limit, bs)?;
            let _ = fs::remove_file(&ours_path);
            if d < best[i].0 {
                best[i] = (d, Some(st));
            }
        }
    }
    let fl = mibs(total, best_floor);
    println!("  floor: write()+fsync             {fl:9.1} MiB/s");
    for (i, (label, _, _)) in configs.iter().enumerate() {
        if best[i].1.is_none() {
            continue;
        }
        let ours = mibs(total, best[i].0);
        println!(
            "  cache: {label:<26} {ours:9.1} MiB/s  ratio {:.2}",
            ours / fl
        );
        if let Some(s) = &best[i].1 {
            println!(
                "         writes {} ({} MiB), throttled {}, peak dirty {} MiB, peak cached {} MiB",
                s.flushes,
                s.flushed_bytes >> 20,
                s.throttled,
                s.peak_dirty_bytes >> 20,
                s.peak_cached_bytes >> 20
            );
        }
    }
    Ok(())
}
