//! Never wedged (SPEC §5, §8; issue 10): more ext2 system calls in flight
//! than virtual CPUs, from many clients or pipelined on one connection,
//! never freeze the kernel; halts complete and can be overtaken.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use netbsd_abi::fcntl::{O_CREAT, O_RDWR};
use netbsd_abi::sp::{self as wire, Class, Handshake, Header, Type, HDRSZ};

/// e2fsprogs live in /sbin or /usr/sbin, off a non-root PATH.
fn e2tool(name: &str) -> PathBuf {
    for d in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        let p = Path::new(d).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("{name} not found in /usr/sbin, /sbin or PATH: install e2fsprogs (.ci/run does)");
}

fn mke2fs(img: &Path, size: &str) {
    let o = Command::new(e2tool("mke2fs"))
        .args(["-q", "-F", "-t", "ext2", "-b", "4096"])
        .arg(img)
        .arg(size)
        .env("MKE2FS_CONFIG", "/dev/null")
        .output()
        .expect("mke2fs");
    assert!(o.status.success(), "mke2fs: {}", stderr(&o));
}

fn e2fsck_clean(img: &Path) {
    let o = Command::new(e2tool("e2fsck")).arg("-fn").arg(img).output().expect("e2fsck");
    assert!(
        o.status.success(),
        "e2fsck -fn found problems:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
}

fn debugfs_cat(img: &Path, path: &str) -> Vec<u8> {
    Command::new(e2tool("debugfs")).arg("-R").arg(format!("cat {path}")).arg(img).output().expect("debugfs").stdout
}

/// A server on a fresh ext2 image (`/dk`, mounted at /mnt) and a raw
/// drive (`/raw`), with extra arguments.
fn ext2_server(d: &Path, extra: &[&str], env: Vec<(&'static str, String)>) -> Server {
    let img = d.join("img");
    mke2fs(&img, "64M");
    let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    args.extend(["-d".into(), format!("key=/dk,hostpath={},size=host", img.display())]);
    args.extend(["-d".into(), format!("key=/raw,hostpath={},size=16m", d.join("raw").display())]);
    let s = Server::start_with(d, ServerOpts { args, env, cores: false });
    let c = s.client();
    c.mkdir("/mnt", 0o755).expect("mkdir /mnt");
    c.mount_ext2("/mnt", 0, "/dk").expect("mount ext2fs");
    s
}

/// Run `f` on a thread; its result, or `None` if it took longer than `t`.
fn within<T: Send + 'static>(t: Duration, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(t).ok()
}

/// A fresh client is served promptly: connect, stat the mount, getpid.
fn fresh_client_served(url: &str) {
    let url = url.to_string();
    let r = within(Duration::from_secs(2), move || {
        let c = Client::connect(&url).map_err(|e| e.to_string())?;
        c.stat("/mnt").map_err(|e| e.to_string())?;
        c.getpid().map_err(|e| e.to_string())
    });
    match r {
        Some(Ok(_)) => {}
        Some(Err(e)) => panic!("fresh client failed: {e}"),
        None => panic!("fresh client not served within 2 s: the kernel is wedged"),
    }
}

/// What one writer saw acknowledged: (path, offset, data) per write.
type Acked = Arc<Mutex<Vec<(String, u64, Vec<u8>)>>>;

/// Writers on their own ext2 files (`fsync_every` > 0: fsync after that
/// many writes), until `stop`. Each records the writes acknowledged.
fn ext2_writers(url: &str, n: usize, fsync_every: usize, stop: &Arc<AtomicBool>, acked: &Acked) -> Vec<std::thread::JoinHandle<()>> {
    (0..n)
        .map(|k| {
            let (url, stop, acked) = (url.to_string(), stop.clone(), acked.clone());
            std::thread::spawn(move || {
                let c = Client::connect(&url).expect("writer connect");
                let path = format!("/mnt/w{k}");
                let fd = c.open(&path, O_RDWR | O_CREAT, 0o644).unwrap_or_else(|e| panic!("create {path}: {e}"));
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) && i < 600 {
                    let data = pattern(8192 + (i as usize % 5) * 1000, k as u64 * 100_000 + i);
                    let off = i * 16384;
                    if let Err(e) = c.pwrite(fd, &data, off as i64) {
                        eprintln!("writer {k}: pwrite #{i}: {e}");
                        return;
                    }
                    acked.lock().unwrap().push((path.clone(), off, data));
                    i += 1;
                    if fsync_every > 0 && i % fsync_every as u64 == 0 {
                        if let Err(e) = c.fsync(fd) {
                            eprintln!("writer {k}: fsync: {e}");
                            return;
                        }
                    }
                }
            })
        })
        .collect()
}

fn halt_within(s: &mut Server, args: &[&str], t: Duration) {
    let url = s.url.clone();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let o = within(t, move || {
        Command::new(RUMP_HALT).args(&args).env("RUMP_SERVER", &url).output().expect("run rump.halt")
    })
    .unwrap_or_else(|| panic!("rump.halt {args:?} did not complete within {t:?}", args = args_str(&s.url)));
    assert!(o.status.success(), "rump.halt: {}", stderr(&o));
    assert!(s.wait_exit(Duration::from_secs(10)).is_some(), "server still running after rump.halt");
}

fn args_str(u: &str) -> String {
    u.to_string()
}

/// Every acknowledged write is in the image (later writes to the same
/// bytes never overlap: offsets are distinct per writer).
fn check_acked(img: &Path, acked: &Acked) {
    let acked = acked.lock().unwrap();
    let mut files: std::collections::BTreeMap<&str, Vec<u8>> = Default::default();
    let mut lost = 0;
    for (p, off, data) in acked.iter() {
        let f = files.entry(p).or_insert_with(|| debugfs_cat(img, p.trim_start_matches("/mnt")));
        let off = *off as usize;
        if f.len() < off + data.len() || &f[off..off + data.len()] != data.as_slice() {
            lost += 1;
        }
    }
    assert_eq!(lost, 0, "{lost} of {} acknowledged writes missing from the image", acked.len());
}

fn run_writers_then_halt(extra: &[&str], writers: usize, fsync_every: usize) {
    let d = tmpdir();
    let mut s = ext2_server(d.path(), extra, vec![]);
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Acked = Default::default();
    let th = ext2_writers(&s.url, writers, fsync_every, &stop, &acked);
    let t = Instant::now();
    // Let them run; meanwhile a fresh client must be served each time.
    while t.elapsed() < Duration::from_secs(2) {
        fresh_client_served(&s.url);
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!acked.lock().unwrap().is_empty(), "writers made no progress: the kernel is wedged");
    // Halt while they write: every write acknowledged before must be kept.
    halt_within(&mut s, &[], Duration::from_secs(20));
    stop.store(true, Ordering::Relaxed);
    for t in th {
        t.join().unwrap();
    }
    let img = d.path().join("img");
    e2fsck_clean(&img);
    check_acked(&img, &acked);
}

#[test]
fn one_cpu_four_ext2_writers_with_fsync() {
    run_writers_then_halt(&["-c", "1"], 4, 3);
}

#[test]
fn two_cpus_three_writers_under_a_small_memory_limit() {
    run_writers_then_halt(&["-c", "2", "-r", "4m"], 3, 0);
}
