//! What the FUSE benchmarks share (`cargo xtask bench fuse`: the
//! `rumprun` one and `netbsd-fs`'s): shell steps timed as whole commands,
//! cold caches, the mount table, medians, and the ~100 MiB tree they copy.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

/// One mebibyte.
const MIB: usize = 1 << 20;

/// Run `cmd` with `sh -c`; `Err` names the command and how it ended.
pub fn sh(cmd: &str) -> Result<(), String> {
    let st = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| e.to_string())?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("{cmd}: {st}"))
    }
}

/// [`sh`], timed: seconds.
pub fn time(cmd: &str) -> Result<f64, String> {
    let t = Instant::now();
    sh(cmd)?;
    Ok(t.elapsed().as_secs_f64())
}

/// Drop the host's page cache (as root; otherwise nothing happens).
pub fn drop_caches() {
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
}

/// Whether something is mounted on `dir` (read from the mount table, so
/// a FUSE daemon is not asked).
pub fn mounted(dir: &Path) -> bool {
    let want = dir.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(&want))
}

/// The median of the runs that gave a time.
pub fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

/// The benchmark tree at `root`: 50 directories of 78 files of up to
/// 20 KB and a symbolic link each, then 8 MiB files up to ~100 MiB in all.
/// Returns (entries, bytes). The same every time (a fixed seed).
pub fn make_tree(root: &Path) -> (usize, usize) {
    let mut n = 0;
    let mut bytes = 0;
    let mut seed = 1u64;
    for d in 0..50 {
        let dir = root.join(format!("d{d}/s{}", d % 7));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..78 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let len = (seed >> 35) as usize % 20_000;
            let data: Vec<u8> = (0..len).map(|i| (i as u64 ^ seed) as u8).collect();
            std::fs::write(dir.join(format!("f{f}")), &data).unwrap();
            n += 1;
            bytes += len;
        }
        std::os::unix::fs::symlink(format!("s{}/f1", d % 7), root.join(format!("d{d}/l"))).unwrap();
        n += 1;
    }
    let mut i = 0;
    while bytes < 100 * MIB {
        let data = vec![(i * 7) as u8; 8 * MIB];
        std::fs::write(root.join(format!("large{i}")), &data).unwrap();
        bytes += data.len();
        n += 1;
        i += 1;
    }
    (n, bytes)
}
