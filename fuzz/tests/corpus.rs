//! Every fuzz target over its committed corpus (`fuzz/corpus/<target>/`),
//! on stable Rust and without libFuzzer: each file goes to the function
//! the target calls (`sysproxy_fuzz::frame`, `sysproxy_fuzz::ext2`). A
//! panic or an input that takes longer than `LIMIT` fails the test,
//! naming the file. New inputs a fuzzing run finds (`cargo fuzz run
//! <target> corpus/<target>`) are replayed here once committed.
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
        .join("corpus")
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

fn replay(target: &str, run: fn(&[u8])) {
    let files = inputs(target);
    for f in &files {
        let data = std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let (tx, rx) = mpsc::channel();
        let name = f.display().to_string();
        std::thread::spawn(move || {
            let r = std::panic::catch_unwind(|| run(&data));
            let _ = tx.send(r.is_ok());
        });
        match rx.recv_timeout(LIMIT) {
            Ok(true) => {}
            Ok(false) => panic!("{target}: {name}: the target panicked"),
            Err(_) => panic!("{target}: {name}: still running after {LIMIT:?}"),
        }
    }
    eprintln!("{target}: {} inputs replayed", files.len());
}

#[test]
fn frame_corpus() {
    replay("frame", sysproxy_fuzz::frame);
}

#[test]
fn ext2_corpus() {
    replay("ext2", sysproxy_fuzz::ext2);
}
