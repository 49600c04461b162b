//! Every fuzz target over its committed corpus (`fuzz/seeds/<target>/`),
//! on stable Rust and without libFuzzer: each file goes to the function
//! the target calls (`sysproxy_fuzz::frame`, `sysproxy_fuzz::ext2`). A
//! panic or an input that takes longer than `LIMIT` fails the test,
//! naming the file. New inputs a fuzzing run finds (`cargo fuzz run
//! <target> corpus/<target> seeds/<target>`: libFuzzer writes what it
//! finds to the first directory, which git ignores) are replayed here
//! once copied into `seeds/<target>` and committed.
//!
//! Run: `cargo test --manifest-path fuzz/Cargo.toml --no-default-features`.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

/// Longest time one input may take (libFuzzer's default `-timeout` is
/// 1200 s; an unoptimised build of the ext2 exercise takes well under a
/// second per image).
const LIMIT: Duration = Duration::from_secs(60);

fn inputs(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(target);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    assert!(!v.is_empty(), "{}: no corpus", dir.display());
    v
}

/// Replay `target`'s corpus; returns, per file name, what `run` returned.
fn replay<T: Send + 'static>(target: &str, run: fn(&[u8]) -> T) -> Vec<(String, T)> {
    let files = inputs(target);
    let mut out = Vec::new();
    for f in &files {
        let data = std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let (tx, rx) = mpsc::channel();
        let name = f.display().to_string();
        std::thread::spawn(move || {
            let r = std::panic::catch_unwind(|| run(&data));
            let _ = tx.send(r.ok());
        });
        match rx.recv_timeout(LIMIT) {
            Ok(Some(v)) => {
                let base = f.file_name().map(|n| n.to_string_lossy().into_owned());
                out.push((base.unwrap_or_default(), v));
            }
            Ok(None) => panic!("{target}: {name}: the target panicked"),
            Err(_) => panic!("{target}: {name}: still running after {LIMIT:?}"),
        }
    }
    eprintln!("{target}: {} inputs replayed", files.len());
    out
}

#[test]
fn frame_corpus() {
    let r = replay("frame", sysproxy_fuzz::frame);
    // The well-formed seeds come out as frames (the replay reaches the
    // reader's whole path, not only its first check).
    let frames = |name: &str| r.iter().find(|(n, _)| n == name).map(|(_, k)| *k);
    assert_eq!(frames("syscall_getpid"), Some(1));
    assert_eq!(frames("pipelined"), Some(3));
    assert_eq!(frames("too_short_len"), Some(0));
}

#[test]
fn ext2_corpus() {
    let r = replay("ext2", sysproxy_fuzz::ext2);
    // The unmodified base images mount and go through every operation.
    for plain in ["rev0_plain", "rev1_plain"] {
        assert!(
            r.iter().any(|(n, mounted)| n == plain && *mounted),
            "{plain} did not mount"
        );
    }
    let mounted = r.iter().filter(|(_, m)| *m).count();
    eprintln!("ext2: {mounted} of {} images mounted", r.len());
}
