//! Durable without a halt: the syncer writes changes back on its own, a
//! `kill -9` at any moment leaves an ext2 image `e2fsck -p` repairs by
//! itself with every file older than the sync delay intact, SIGHUP halts
//! with a flush, and a log that cannot be written never hurts the server.
//! Real `rump_server` processes, real images, e2fsprogs to judge them.

mod common;

use rumpclient::Syscalls as _;
use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use netbsd_abi::fcntl::{O_CREAT, O_RDONLY, O_TRUNC, O_WRONLY};

/// Every delay at one second (`-S vfs.sync.*=1`).
const FAST: [&str; 6] = [
    "-S",
    "vfs.sync.filedelay=1",
    "-S",
    "vfs.sync.dirdelay=1",
    "-S",
    "vfs.sync.metadelay=1",
];

fn drive(img: &Path) -> String {
    format!("key=/dk,hostpath={},size=host", img.display())
}

fn start(d: &Path, img: &Path, extra: &[&str]) -> Server {
    let mut args = vec!["-d".to_string(), drive(img)];
    args.extend(extra.iter().map(|s| s.to_string()));
    Server::start_with(
        d,
        ServerOpts {
            args,
            ..Default::default()
        },
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
        done += c
            .write(fd, &data[done..])
            .unwrap_or_else(|e| panic!("write {path}: {e}"));
    }
    c.close(fd).unwrap();
}

/// `debugfs -R 'cat PATH'`, or `None` when the image does not have it
/// (yet).
fn image_file(img: &Path, path: &str) -> Option<Vec<u8>> {
    let o = host_cmd("debugfs")
        .arg("-R")
        .arg(format!("cat {path}"))
        .arg(img)
        .output()
        .expect("debugfs");
    let err = String::from_utf8_lossy(&o.stderr);
    if !o.status.success() || err.contains("not found") || err.contains("File not found") {
        return None;
    }
    Some(o.stdout)
}

/// `e2fsck -p` as a boot script runs it: its exit status (0 clean, 1
/// repaired; 4 and more: a person is needed) and what it said.
fn e2fsck_preen(img: &Path) -> (i32, String) {
    let o = host_cmd("e2fsck")
        .arg("-p")
        .arg(img)
        .output()
        .expect("e2fsck");
    (
        o.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

/// The image's whole tree, dumped by `debugfs rdump` into `into`: one
/// run of debugfs for a round's thousands of files.
fn dump_tree(img: &Path, into: &Path) {
    std::fs::create_dir_all(into).expect("dump directory");
    let o = host_cmd("debugfs")
        .arg("-R")
        .arg(format!("rdump / {}", into.display()))
        .arg(img)
        .output()
        .expect("debugfs");
    assert!(o.status.success(), "debugfs rdump: {}", stderr(&o));
}

fn kill9(s: &mut Server) {
    s.signal(libc::SIGKILL);
    s.wait_exit(Duration::from_secs(10))
        .expect("rump_server gone after SIGKILL");
}

/// Wait for the image to hold `want` at `path`; how long it took.
fn wait_in_image(img: &Path, path: &str, want: &[u8], limit: Duration) -> Duration {
    let t = Instant::now();
    loop {
        if image_file(img, path).as_deref() == Some(want) {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < limit,
            "{path} not in the image {limit:?} after it was written"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_write_reaches_the_image_without_fsync_then_survives_kill_9() {
    let d = tmpdir();
    let img = d.path().join("disk.img");
    mke2fs(&img, &["-b", "1024"], "16M");
    let mut s = start(d.path(), &img, &FAST);
    let c = s.client();
    mount(&c);
    let data = pattern(100_000, 7);
    put(&c, "/mnt/notes", &data);
    // Delays of 1 s: the file is there within 3 s, without fsync.
    let took = wait_in_image(&img, "/notes", &data, Duration::from_secs(3));
    eprintln!("in the image after {took:?}");
    kill9(&mut s);
    let (st, out) = e2fsck_preen(&img);
    assert!(st <= 1, "e2fsck -p needs a person (exit {st}):\n{out}");
    assert_eq!(image_file(&img, "/notes").as_deref(), Some(&data[..]));
}

#[test]
fn the_default_delays_write_back_within_35_seconds() {
    let d = tmpdir();
    let img = d.path().join("disk.img");
    mke2fs(&img, &["-b", "1024"], "16M");
    let mut s = start(d.path(), &img, &[]);
    let c = s.client();
    mount(&c);
    let data = pattern(100_000, 8);
    put(&c, "/mnt/late", &data);
    let took = wait_in_image(&img, "/late", &data, Duration::from_secs(35));
    eprintln!("in the image after {took:?} (filedelay 30 s)");
    kill9(&mut s);
    let (st, out) = e2fsck_preen(&img);
    assert!(st <= 1, "e2fsck -p needs a person (exit {st}):\n{out}");
}

/// What the workload believes each file holds, and when it last changed
/// it (a change whose answer never came counts as made at the kill).
#[derive(Default)]
struct Model {
    files: BTreeMap<String, (Vec<u8>, Instant)>,
    /// What was done to each name, for a person reading a failure.
    hist: BTreeMap<String, Vec<String>>,
}

fn note(m: &Mutex<Model>, p: &str, what: String) {
    m.lock()
        .unwrap()
        .hist
        .entry(p.to_string())
        .or_default()
        .push(what);
}

/// One client's share of a mixed workload, in its own two directories:
/// creates, appends, overwrites, renames between them, unlinks, mkdir and
/// rmdir. Runs until the server dies.
fn workload(url: String, id: usize, model: Arc<Mutex<Model>>, stop: Arc<AtomicBool>) {
    let Ok(c) = Client::connect(&url) else { return };
    let dirs = [format!("/mnt/c{id}a"), format!("/mnt/c{id}b")];
    for dir in &dirs {
        if c.mkdir(dir.as_str(), 0o755).is_err() {
            return;
        }
    }
    let mut rng = (id as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D);
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let mut k = 0u64;
    while !stop.load(Ordering::Relaxed) {
        k += 1;
        let dir = &dirs[next(2) as usize];
        // A window of names that slides on: older names are left alone
        // (so some files are old when the kill comes), newer ones churn.
        let window = k / 25;
        let name = format!("{dir}/f{}", window + next(4));
        let op = next(10);
        // Mark the change as under way before it is made: if the server
        // dies meanwhile, the file's state is unknown (not checked).
        let unknown = |m: &Mutex<Model>, p: &str| {
            if let Some(e) = m.lock().unwrap().files.get_mut(p) {
                e.1 = Instant::now() + Duration::from_secs(3600);
            }
        };
        // A change made on top of a state that is unknown (an earlier
        // change failed half way) leaves it unknown.
        let known = |m: &Mutex<Model>, p: &str| {
            m.lock()
                .unwrap()
                .files
                .get(p)
                .is_some_and(|e| e.1 <= Instant::now())
        };
        let done_on = |m: &Mutex<Model>, p: &str, data: Vec<u8>, base_known: bool| {
            let when = if base_known {
                Instant::now()
            } else {
                Instant::now() + Duration::from_secs(3600)
            };
            m.lock().unwrap().files.insert(p.to_string(), (data, when));
        };
        let done = |m: &Mutex<Model>, p: &str, data: Option<Vec<u8>>| {
            let mut g = m.lock().unwrap();
            match data {
                Some(d) => {
                    g.files.insert(p.to_string(), (d, Instant::now()));
                }
                None => {
                    g.files.remove(p);
                }
            }
        };
        let ok = match op {
            // create or overwrite with new contents
            0..=3 => {
                let data = pattern(next(40_000) as usize + 1, k * 31 + id as u64);
                unknown(&model, &name);
                model
                    .lock()
                    .unwrap()
                    .files
                    .entry(name.clone())
                    .or_insert((Vec::new(), Instant::now() + Duration::from_secs(3600)));
                let r = c
                    .open(name.as_str(), O_WRONLY | O_CREAT | O_TRUNC, 0o644)
                    .and_then(|fd| {
                        let mut off = 0;
                        while off < data.len() {
                            off += c.write(fd, &data[off..])?;
                        }
                        c.close(fd)
                    });
                note(
                    &model,
                    &name,
                    format!("create {} bytes: {:?}", data.len(), r.as_ref().err()),
                );
                r.map(|_| done(&model, &name, Some(data))).is_ok()
            }
            // append
            4 | 5 => {
                let Some(old) = model.lock().unwrap().files.get(&name).map(|e| e.0.clone()) else {
                    continue;
                };
                let more = pattern(next(8_000) as usize + 1, k * 17 + id as u64);
                let base = known(&model, &name);
                unknown(&model, &name);
                let r = c.open(name.as_str(), O_WRONLY, 0).and_then(|fd| {
                    let mut off = 0;
                    while off < more.len() {
                        off += c.pwrite(fd, &more[off..], (old.len() + off) as i64)?;
                    }
                    c.close(fd)
                });
                note(
                    &model,
                    &name,
                    format!(
                        "append {} to {}: {:?}",
                        more.len(),
                        old.len(),
                        r.as_ref().err()
                    ),
                );
                let mut new = old;
                new.extend_from_slice(&more);
                r.map(|_| done_on(&model, &name, new, base)).is_ok()
            }
            // rename into the other directory (replacing what is there)
            6 => {
                let Some(data) = model.lock().unwrap().files.get(&name).map(|e| e.0.clone()) else {
                    continue;
                };
                let other = &dirs[(dir == &dirs[0]) as usize];
                let to = format!("{other}/f{}", window + next(4));
                let base = known(&model, &name);
                unknown(&model, &name);
                unknown(&model, &to);
                let r = c.rename(name.as_str(), to.as_str());
                note(
                    &model,
                    &name,
                    format!("renamed to {to}: {:?}", r.as_ref().err()),
                );
                note(
                    &model,
                    &to,
                    format!(
                        "renamed from {name} ({} bytes): {:?}",
                        data.len(),
                        r.as_ref().err()
                    ),
                );
                if r.is_ok() {
                    done(&model, &name, None);
                    done_on(&model, &to, data, base);
                }
                r.is_ok()
            }
            // unlink
            7 => {
                if !model.lock().unwrap().files.contains_key(&name) {
                    continue;
                }
                unknown(&model, &name);
                let r = c.unlink(name.as_str());
                note(&model, &name, format!("unlink: {:?}", r.as_ref().err()));
                if r.is_ok() {
                    done(&model, &name, None);
                }
                r.is_ok()
            }
            // a directory made and removed
            _ => {
                let sub = format!("{dir}/d{}", next(4));
                let r = c.mkdir(sub.as_str(), 0o755).and_then(|_| {
                    if next(2) == 0 {
                        c.rmdir(sub.as_str())
                    } else {
                        Ok(())
                    }
                });
                r.is_ok() || c.rmdir(sub.as_str()).is_ok()
            }
        };
        if !ok && Client::connect(&url).is_err() {
            return; // the server is gone
        }
    }
}

/// `kill -9` at 20 random moments of a mixed workload (four clients on
/// two virtual CPUs, delays at 1 s): `e2fsck -p` never needs a person,
/// and every file last changed more than 3 s before the kill is
/// byte-exact.
#[test]
fn kill_9_at_random_moments_leaves_an_image_e2fsck_preens() {
    let mut seed = 0x5eed_u64;
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut checked = 0;
    for round in 0..20 {
        let d = tmpdir();
        let img = d.path().join("disk.img");
        mke2fs(&img, &["-b", "1024", "-N", "2048"], "32M");
        let mut args: Vec<&str> = vec!["-c", "2"];
        args.extend_from_slice(&FAST);
        let mut s = start(d.path(), &img, &args);
        mount(&s.client());
        let model = Arc::new(Mutex::new(Model::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..4)
            .map(|id| {
                let (url, m, st) = (s.url.clone(), model.clone(), stop.clone());
                std::thread::spawn(move || workload(url, id, m, st))
            })
            .collect();
        let at = Duration::from_millis(4000 + rand(3000));
        // Not synchronization: the kill lands at a random moment of the
        // workload, which is the scenario.
        std::thread::sleep(at);
        kill9(&mut s);
        let killed = Instant::now();
        for w in workers {
            let _ = w.join();
        }
        let (st, out) = e2fsck_preen(&img);
        assert!(
            st <= 1,
            "round {round}: killed after {at:?}: e2fsck -p needs a person (exit {st}):\n{out}"
        );
        let m = model.lock().unwrap();
        let tree = d.path().join("tree");
        dump_tree(&img, &tree);
        for (path, (data, changed)) in &m.files {
            if *changed + Duration::from_secs(3) > killed {
                continue;
            }
            let p = path.trim_start_matches("/mnt/");
            let got = std::fs::read(tree.join(p)).ok();
            if got.as_deref() != Some(&data[..]) {
                // Keep the evidence for a person to look at.
                let keep = std::env::temp_dir().join(format!("durability-round{round}.img"));
                let _ = std::fs::copy(&img, &keep);
                eprintln!("image kept as {}", keep.display());
            }
            assert!(
                got.as_deref() == Some(&data[..]),
                "round {round}: {path} ({} bytes, last changed {:?} before the kill) is {}",
                data.len(),
                killed - *changed,
                match &got {
                    None => "missing".to_string(),
                    Some(g) => format!("{} bytes, not the same", g.len()),
                }
            );
            checked += 1;
        }
    }
    eprintln!("{checked} files checked byte for byte");
    assert!(checked > 0, "no file was old enough to check");
}

#[test]
fn sighup_halts_with_a_flush() {
    let d = tmpdir();
    let img = d.path().join("disk.img");
    mke2fs(&img, &["-b", "1024"], "16M");
    let mut s = start(d.path(), &img, &[]);
    let c = s.client();
    mount(&c);
    let data = pattern(300_000, 9);
    put(&c, "/mnt/hup", &data);
    drop(c);
    s.signal(libc::SIGHUP);
    let st = s
        .wait_exit(Duration::from_secs(30))
        .expect("rump_server exits on SIGHUP");
    assert_eq!(st.code(), Some(0), "exit status after SIGHUP");
    e2fsck_clean(&img);
    assert_eq!(debugfs_cat(&img, "/hup"), data);
}

/// A server whose standard error cannot take its log: `/dev/full`, a
/// pipe whose reader has gone, a pipe nobody reads. With `-vvv` it logs
/// on every request; it must serve a mount, writes and a halt all the
/// same, and leave a clean image.
#[test]
fn a_log_that_cannot_be_written_never_hurts_the_server() {
    /// Standard error for the server, and a pipe's read end to keep open.
    type MakeStderr = fn() -> (Stdio, Option<OwnedFd>);
    let cases: [(&str, MakeStderr); 3] = [
        ("/dev/full", || {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .expect("/dev/full");
            (Stdio::from(f), None)
        }),
        ("a pipe whose reader has gone", || {
            let (r, w) = nix::unistd::pipe().expect("pipe");
            drop(r);
            (Stdio::from(w), None)
        }),
        ("a pipe nobody reads", || {
            let (r, w) = nix::unistd::pipe().expect("pipe");
            (Stdio::from(w), Some(r))
        }),
    ];
    for (what, make) in cases {
        let d = tmpdir();
        let img = d.path().join("disk.img");
        mke2fs(&img, &["-b", "1024"], "16M");
        let (errout, _keep_reader) = make();
        let mut s = Server::start_with(
            d.path(),
            ServerOpts {
                args: vec!["-vvv".into(), "-d".into(), drive(&img)],
                stderr: Some(errout),
                ..Default::default()
            },
        );
        let c = s.client();
        mount(&c);
        // Enough requests to fill a pipe's 64 KiB with log lines.
        for i in 0..300 {
            put(&c, &format!("/mnt/f{i}"), &pattern(2000, i));
        }
        drop(c);
        let o = s.halt(&[]);
        assert!(o.status.success(), "{what}: rump.halt: {}", stderr(&o));
        let st = s
            .wait_exit(Duration::from_secs(30))
            .unwrap_or_else(|| panic!("{what}: rump_server still runs after the halt"));
        assert_eq!(st.code(), Some(0), "{what}: exit status");
        e2fsck_clean(&img);
        assert_eq!(debugfs_cat(&img, "/f299"), pattern(2000, 299), "{what}");
    }
}

/// The syncer holds no virtual CPU and no file system lock across its
/// writes: a `stat` from another client goes on while it writes back
/// 64 MiB, with more writers than CPUs.
#[test]
fn stat_goes_on_while_the_syncer_writes_back() {
    let d = tmpdir();
    let img = d.path().join("disk.img");
    mke2fs(&img, &["-b", "4096"], "256M");
    let mut args: Vec<&str> = vec!["-c", "1"];
    args.extend_from_slice(&FAST);
    let s = start(d.path(), &img, &args);
    let c = s.client();
    mount(&c);
    put(&c, "/mnt/small", b"x");
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let url = s.url.clone();
            std::thread::spawn(move || {
                let c = Client::connect(&url).unwrap();
                put(&c, &format!("/mnt/big{w}"), &pattern(24 << 20, w));
            })
        })
        .collect();
    let c2 = s.client();
    let mut stats = 0;
    let t = Instant::now();
    while writers.iter().any(|w| !w.is_finished()) || t.elapsed() < Duration::from_secs(3) {
        c2.stat("/mnt/small").expect("stat during write-back");
        stats += 1;
        assert!(t.elapsed() < Duration::from_secs(120), "writers stuck");
    }
    for w in writers {
        w.join().unwrap();
    }
    assert!(stats > 0);
    let fd = c.open("/mnt/big0", O_RDONLY, 0).unwrap();
    let mut buf = vec![0u8; 4096];
    assert_eq!(c.pread(fd, &mut buf, 0).unwrap(), 4096);
    assert_eq!(buf, pattern(24 << 20, 0)[..4096]);
}

/// Without a kill: after the workload stops, every file reaches the image
/// within a few seconds (a lost update would show here).
#[test]
fn after_the_workload_every_file_reaches_the_image() {
    let d = tmpdir();
    let img = d.path().join("disk.img");
    mke2fs(&img, &["-b", "1024", "-N", "16384"], "64M");
    let mut args: Vec<&str> = vec!["-c", "2"];
    args.extend_from_slice(&FAST);
    let s = start(d.path(), &img, &args);
    mount(&s.client());
    let model = Arc::new(Mutex::new(Model::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|id| {
            let (url, m, st) = (s.url.clone(), model.clone(), stop.clone());
            std::thread::spawn(move || workload(url, id, m, st))
        })
        .collect();
    // Not synchronization: the workload's run time is the load under test.
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let m = model.lock().unwrap();
    let now = Instant::now();
    let tree = d.path().join("tree");
    // The files that differ on the image from what was acknowledged.
    let differ = || {
        let _ = std::fs::remove_dir_all(&tree);
        std::fs::create_dir_all(&tree).expect("dump directory");
        let o = host_cmd("debugfs")
            .arg("-R")
            .arg(format!("rdump / {}", tree.display()))
            .arg(&img)
            .output()
            .expect("debugfs");
        let mut bad = Vec::new();
        if !o.status.success() {
            // The image is being written under debugfs: look again.
            bad.push(format!("debugfs rdump: {}", stderr(&o)));
            return bad;
        }
        for (path, (data, changed)) in &m.files {
            if *changed > now {
                continue; // a change that failed: unknown
            }
            let p = path.trim_start_matches("/mnt/");
            let got = std::fs::read(tree.join(p)).ok();
            if got.as_deref() != Some(&data[..]) {
                bad.push(format!(
                    "{path}: want {} bytes, image has {:?}; history: {:?}",
                    data.len(),
                    got.map(|g| g.len()),
                    m.hist.get(path)
                ));
            }
        }
        bad
    };
    // The syncer writes everything back by itself (no sync asked for):
    // look until the image has it all. The deadline is for a lost update,
    // which never arrives, far above the syncer's delays.
    let mut bad = Vec::new();
    poll_until(Duration::from_secs(60), || {
        bad = differ();
        bad.is_empty()
    });
    if !bad.is_empty() {
        let keep = std::env::temp_dir().join("durability-live.img");
        let _ = std::fs::copy(&img, &keep);
    }
    assert!(
        bad.is_empty(),
        "{} of {} files differ:\n{}",
        bad.len(),
        m.files.len(),
        bad.join("\n")
    );
}

/// A daemonized server given a log file as its standard error keeps
/// writing to it after it detaches: its mount and its halt are there.
#[test]
fn a_daemon_keeps_a_log_file_given_as_stderr() {
    let d = tmpdir();
    let img = d.path().join("disk.img");
    mke2fs(&img, &["-b", "1024"], "8M");
    let log = d.path().join("server.log");
    let sock = d.path().join("daemon.sock");
    let url = format!("unix://{}", sock.display());
    let st = std::process::Command::new(RUMP_SERVER)
        .args(["-v", "-d", &drive(&img), &url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .status()
        .expect("rump_server");
    assert!(st.success(), "rump_server daemonizes: {st}");
    let c = Client::connect(&url).expect("connect to the daemon");
    let pid = c.getpid().map(|_| ()).ok();
    assert!(pid.is_some());
    mount(&c);
    drop(c);
    let o = std::process::Command::new(rump_halt())
        .env("RUMP_SERVER", &url)
        .output()
        .expect("rump.halt");
    assert!(o.status.success(), "rump.halt: {}", stderr(&o));
    // The daemon exits after answering: wait for its last words.
    let mut text = String::new();
    poll_until(Duration::from_secs(20), || {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        text.contains("halt") && !sock.exists()
    });
    assert!(
        text.contains("mounted ext2fs /dk on /mnt"),
        "the log has the mount:\n{text}"
    );
    assert!(text.contains("halt"), "the log has the halt:\n{text}");
}
