//! `cargo xtask bench ext2`: 10,000 files of 4 KiB and one 256 MiB file
//! written into an ext2 image through rump_server, then rump.halt — beside
//! `dd conv=fsync` of the same bytes, and the host creating the same small
//! files then syncing, in the same run on the same file system.

use rumpclient::Syscalls as _;
use std::process::Command;
use std::time::{Duration, Instant};

use netbsd_abi::fcntl::{O_CREAT, O_WRONLY};
use testkit::bench::*;

/// `rump_halt`, as cargo built it for this benchmark.
const RUMP_HALT: &str = env!("CARGO_BIN_EXE_rump_halt");

fn main() {
    let nfiles: usize = std::env::var("BENCH_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let big = std::env::var("BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256usize)
        * MIB;
    let small = 4096;
    let total = nfiles * small + big;
    let d = tmpdir();

    // Floors: dd of the same bytes, and the host's own small-file creation.
    let floor_dd = dd_seconds(&d.path().join("floor"), 64 * 1024, total);
    let _ = std::fs::remove_file(d.path().join("floor"));
    let hostdir = d.path().join("hostfiles");
    std::fs::create_dir(&hostdir).expect("mkdir");
    let buf4k = vec![0x11u8; small];
    let t = Instant::now();
    for i in 0..nfiles {
        std::fs::write(hostdir.join(format!("f{i}")), &buf4k).expect("write");
    }
    let st = Command::new("sync").arg("-f").arg(&hostdir).status();
    let floor_files = t.elapsed().as_secs_f64();
    assert!(st.map(|s| s.success()).unwrap_or(false), "sync -f");
    let _ = std::fs::remove_dir_all(&hostdir);

    let img = d.path().join("img");
    let o = Command::new("mke2fs")
        .args([
            "-q",
            "-F",
            "-t",
            "ext2",
            "-b",
            "4096",
            "-N",
            &format!("{}", nfiles + 1024),
        ])
        .arg(&img)
        .arg(format!("{}M", total / MIB + 128))
        .output()
        .expect("mke2fs (e2fsprogs)");
    assert!(o.status.success(), "mke2fs failed");
    let mut b = Bench::start(
        d.path(),
        &[
            "-d".into(),
            format!("key=/dk,hostpath={},size=host", img.display()),
        ],
    );
    let c = rumpclient::Client::connect(&b.url).expect("connect");
    c.mkdir("/mnt", 0o755).expect("mkdir");
    c.mount_ext2("/mnt", 0, "/dk").expect("mount");
    c.mkdir("/mnt/small", 0o755).expect("mkdir");

    // Round trips of one create+write+close through our client (with our
    // inline extension), and over the plain protocol (NetBSD's wire).
    let rt_of = |c: &rumpclient::Client, name: &str| {
        let r0 = c.round_trips();
        let fd = c.open(name, O_WRONLY | O_CREAT, 0o644).expect("create");
        let r1 = c.round_trips();
        c.write(fd, &buf4k).expect("write");
        let r2 = c.round_trips();
        c.close(fd).expect("close");
        let r3 = c.round_trips();
        (r1 - r0, r2 - r1, r3 - r2)
    };
    let rt = rt_of(&c, "/mnt/rt-ext");
    let plain = rumpclient::Client::connect_plain(&b.url).expect("connect");
    let rt_plain = rt_of(&plain, "/mnt/rt-plain");
    drop(plain);

    let t0 = Instant::now();
    for i in 0..nfiles {
        let fd = c
            .open(format!("/mnt/small/f{i}"), O_WRONLY | O_CREAT, 0o644)
            .expect("create");
        c.write(fd, &buf4k).expect("write");
        c.close(fd).expect("close");
    }
    let t_files = t0.elapsed().as_secs_f64();
    let chunk = vec![0x22u8; 64 * 1024];
    let t1 = Instant::now();
    let fd = c
        .open("/mnt/big", O_WRONLY | O_CREAT, 0o644)
        .expect("create");
    for i in 0..big / chunk.len() {
        c.pwrite(fd, &chunk, (i * chunk.len()) as i64)
            .expect("pwrite");
    }
    c.close(fd).expect("close");
    let t_big = t1.elapsed().as_secs_f64();
    drop(c);
    let t2 = Instant::now();
    let o = Command::new(RUMP_HALT)
        .env("RUMP_SERVER", &b.url)
        .output()
        .expect("rump.halt");
    assert!(
        o.status.success(),
        "rump.halt: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    while b.child.try_wait().ok().flatten().is_none() {
        assert!(
            t2.elapsed() < Duration::from_secs(300),
            "server did not exit"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let t_halt = t2.elapsed().as_secs_f64();
    let all = t0.elapsed().as_secs_f64();

    let fsck = Command::new("e2fsck")
        .arg("-fn")
        .arg(&img)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    println!(
        "ext2: {nfiles} files of 4 KiB + one {} MiB file, through rump_server, then rump.halt",
        big / MIB
    );
    println!(
        "  host: create {nfiles} files + sync  {:8.1} ms ({:.1} us/file)",
        floor_files * 1e3,
        floor_files * 1e6 / nfiles as f64
    );
    println!(
        "  rump: create {nfiles} files         {:8.1} ms ({:.1} us/file)   {:.2}x the host",
        t_files * 1e3,
        t_files * 1e6 / nfiles as f64,
        t_files / floor_files
    );
    println!(
        "  round trips per file: open(O_CREAT) {} + write 4 KiB {} + close {} = {} (plain protocol, as NetBSD's client: {} + {} + {} = {})",
        rt.0,
        rt.1,
        rt.2,
        rt.0 + rt.1 + rt.2,
        rt_plain.0,
        rt_plain.1,
        rt_plain.2,
        rt_plain.0 + rt_plain.1 + rt_plain.2
    );
    println!(
        "  rump: write {} MiB file            {:8.1} ms ({:.1} MiB/s)",
        big / MIB,
        t_big * 1e3,
        mib_s(big, t_big)
    );
    println!(
        "  rump: halt (flush + exit)          {:8.1} ms",
        t_halt * 1e3
    );
    println!(
        "  rump: everything                   {:8.1} ms   dd conv=fsync of the same {} MiB {:.1} ms   ratio {:.2}x",
        all * 1e3,
        total / MIB,
        floor_dd * 1e3,
        all / floor_dd
    );
    println!(
        "  e2fsck -fn after the halt: {}",
        if fsck { "clean" } else { "PROBLEMS" }
    );
    concurrency(d.path());
    syncer(d.path());
}

/// The syncer's rows: a sustained writer with the syncer at NetBSD's delays
/// against the same with the syncer off (`vfs.sync.delay=0`); and a
/// client's `stat` latency while the syncer writes back 64 MiB of another
/// client's data (delays at 1 s), against its idle latency.
fn syncer(dir: &std::path::Path) {
    let secs: u64 = std::env::var("BENCH_SYNCER_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(14);
    let serve = |tag: &str, extra: &[&str]| -> (Bench, rumpclient::Client) {
        let img = dir.join(format!("{tag}.img"));
        let o = Command::new("mke2fs")
            .args(["-q", "-F", "-t", "ext2", "-b", "4096"])
            .arg(&img)
            .arg("4G")
            .output()
            .expect("mke2fs (e2fsprogs)");
        assert!(o.status.success(), "mke2fs failed");
        let sd = dir.join(tag);
        std::fs::create_dir_all(&sd).expect("mkdir");
        let mut args: Vec<String> = vec![
            "-r".into(),
            "256m".into(),
            "-d".into(),
            format!("key=/dk,hostpath={},size=host", img.display()),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let b = Bench::start(&sd, &args);
        let c = rumpclient::Client::connect(&b.url).expect("connect");
        c.mkdir("/mnt", 0o755).expect("mkdir");
        c.mount_ext2("/mnt", 0, "/dk").expect("mount");
        (b, c)
    };
    let halt = |mut b: Bench| {
        let o = Command::new(RUMP_HALT)
            .env("RUMP_SERVER", &b.url)
            .output()
            .expect("rump.halt");
        assert!(o.status.success(), "rump.halt");
        let _ = b.child.wait();
        let _ = std::fs::remove_file(b.dir.with_extension("img"));
    };
    // A writer that writes 1 MiB chunks for `secs` seconds: long enough
    // for metadata write-backs (10 s) and the cache's throttling.
    let sustained = |extra: &[&str], tag: &str| -> f64 {
        let (b, c) = serve(tag, extra);
        let fd = c
            .open("/mnt/stream", O_WRONLY | O_CREAT, 0o644)
            .expect("create");
        let chunk = vec![0x5au8; 1 << 20];
        let t = Instant::now();
        let mut n = 0usize;
        while t.elapsed() < Duration::from_secs(secs) {
            // Within the first 2 GiB, round and round.
            c.pwrite(fd, &chunk, ((n % 2048) * chunk.len()) as i64)
                .expect("pwrite");
            n += 1;
        }
        let rate = mib_s(n * chunk.len(), t.elapsed().as_secs_f64());
        c.close(fd).expect("close");
        drop(c);
        halt(b);
        rate
    };
    // Alternated (off, on, on, off): the host's own write-back of what an
    // earlier run wrote weighs on the next one, whichever it is.
    let mut ons = Vec::new();
    let mut offs = Vec::new();
    for round in 0..2 {
        if round == 0 {
            offs.push(sustained(&["-S", "vfs.sync.delay=0"], "sync-off"));
            ons.push(sustained(&[], "sync-on"));
        } else {
            ons.push(sustained(&[], "sync-on"));
            offs.push(sustained(&["-S", "vfs.sync.delay=0"], "sync-off"));
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (on, off) = (mean(&ons), mean(&offs));

    // stat beside a 64 MiB write-back by the syncer.
    let fast = [
        "-S",
        "vfs.sync.filedelay=1",
        "-S",
        "vfs.sync.metadelay=1",
        "-S",
        "vfs.sync.dirdelay=1",
    ];
    let (b, c) = serve("sync-stat", &fast);
    let fd = c
        .open("/mnt/target", O_WRONLY | O_CREAT, 0o644)
        .expect("create");
    c.close(fd).expect("close");
    let lat = |c: &rumpclient::Client, d: Duration| -> Vec<f64> {
        let t = Instant::now();
        let mut v = Vec::new();
        while t.elapsed() < d {
            let s = Instant::now();
            c.stat("/mnt/target").expect("stat");
            v.push(s.elapsed().as_secs_f64() * 1e6);
        }
        v.sort_by(|a, b| a.total_cmp(b));
        v
    };
    // Not synchronization: idle means the target's creation was written
    // back already (every syncer delay is 1 s here).
    std::thread::sleep(Duration::from_secs(2));
    let idle = lat(&c, Duration::from_secs(1));
    let w = rumpclient::Client::connect(&b.url).expect("connect");
    let fd = w
        .open("/mnt/dirty", O_WRONLY | O_CREAT, 0o644)
        .expect("create");
    let chunk = vec![0x6bu8; 1 << 20];
    for i in 0..64 {
        w.pwrite(fd, &chunk, (i * chunk.len()) as i64)
            .expect("pwrite");
    }
    w.close(fd).expect("close");
    // From the end of the writes until well past the 1 s delay: the
    // syncer's write-back of those 64 MiB falls inside.
    let during = lat(&c, Duration::from_millis(2500));
    drop((c, w));
    halt(b);
    let pct = |v: &[f64], p: f64| v[((v.len() - 1) as f64 * p) as usize];
    println!("ext2 and the syncer (a 4 GiB image, -r 256m)");
    println!(
        "  sustained writer, {secs} s of 1 MiB pwrites, syncer off   {off:8.1} MiB/s  (runs: {offs:.0?})"
    );
    println!(
        "  the same, syncer at NetBSD's delays         {on:8.1} MiB/s   {:.3}x off (target >= 0.95x)  (runs: {ons:.0?})",
        on / off
    );
    println!(
        "  stat idle: median {:.1} us, p99 {:.1} us ({} calls)",
        pct(&idle, 0.5),
        pct(&idle, 0.99),
        idle.len()
    );
    println!(
        "  stat while the syncer writes back 64 MiB: median {:.1} us, p99 {:.1} us ({} calls)   median {:.2}x idle (target <= 2x)",
        pct(&during, 0.5),
        pct(&during, 0.99),
        during.len(),
        pct(&during, 0.5) / pct(&idle, 0.5)
    );
}

/// The concurrency rows: clients on separate ext2 files at `-c 2`, each writing
/// 64 KiB then fsync; and `stat` latency beside an fsync loop.
fn concurrency(dir: &std::path::Path) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let iters: usize = std::env::var("BENCH_FSYNC_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150);
    let img = dir.join("conc.img");
    let o = Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext2", "-b", "4096"])
        .arg(&img)
        .arg("512M")
        .output()
        .expect("mke2fs (e2fsprogs)");
    assert!(o.status.success(), "mke2fs failed");
    let sd = dir.join("conc");
    std::fs::create_dir_all(&sd).expect("mkdir");
    let mut b = Bench::start(
        &sd,
        &[
            "-c".into(),
            "2".into(),
            "-d".into(),
            format!("key=/dk,hostpath={},size=host", img.display()),
        ],
    );
    let c = rumpclient::Client::connect(&b.url).expect("connect");
    c.mkdir("/mnt", 0o755).expect("mkdir");
    c.mount_ext2("/mnt", 0, "/dk").expect("mount");
    let run = |n: usize, tag: &str| -> f64 {
        let t = Instant::now();
        let th: Vec<_> = (0..n)
            .map(|k| {
                let url = b.url.clone();
                let path = format!("/mnt/{tag}{k}");
                std::thread::spawn(move || {
                    let c = rumpclient::Client::connect(&url).expect("connect");
                    let fd = c.open(&path, O_WRONLY | O_CREAT, 0o644).expect("create");
                    let chunk = vec![0x33u8; 64 * 1024];
                    for i in 0..iters {
                        c.pwrite(fd, &chunk, (i * chunk.len()) as i64)
                            .expect("pwrite");
                        c.fsync(fd).expect("fsync");
                    }
                })
            })
            .collect();
        for t in th {
            t.join().expect("writer");
        }
        mib_s(n * iters * 64 * 1024, t.elapsed().as_secs_f64())
    };
    let one = run(1, "one");
    let eight = run(8, "eight");
    // stat latency, idle and beside a write+fsync loop.
    let fd = c
        .open("/mnt/target", O_WRONLY | O_CREAT, 0o644)
        .expect("create");
    c.close(fd).expect("close");
    let stat_median = |c: &rumpclient::Client| -> f64 {
        let mut v: Vec<f64> = (0..2000)
            .map(|_| {
                let t = Instant::now();
                c.stat("/mnt/target").expect("stat");
                t.elapsed().as_secs_f64() * 1e6
            })
            .collect();
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let idle = stat_median(&c);
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let busy_th = {
        let (url, stop, rounds) = (b.url.clone(), stop.clone(), rounds.clone());
        std::thread::spawn(move || {
            let c = rumpclient::Client::connect(&url).expect("connect");
            let fd = c
                .open("/mnt/busy", O_WRONLY | O_CREAT, 0o644)
                .expect("create");
            let chunk = vec![0x44u8; 1 << 20];
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                c.pwrite(fd, &chunk, (i % 64 * chunk.len()) as i64)
                    .expect("pwrite");
                c.fsync(fd).expect("fsync");
                i += 1;
                rounds.store(i, Ordering::Relaxed);
            }
        })
    };
    // Measured once the fsync loop is going (a few rounds done).
    testkit::wait::wait_until(
        "the fsync loop is under way",
        Duration::from_secs(60),
        || rounds.load(Ordering::Relaxed) >= 2,
    );
    let busy = stat_median(&c);
    stop.store(true, Ordering::Relaxed);
    busy_th.join().expect("fsync loop");
    drop(c);
    let o = Command::new(RUMP_HALT)
        .env("RUMP_SERVER", &b.url)
        .output()
        .expect("rump.halt");
    assert!(
        o.status.success(),
        "rump.halt: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let _ = b.child.wait();
    println!(
        "ext2 concurrency at -c 2: 64 KiB pwrite + fsync, {iters} per client, each on its own file"
    );
    println!("  1 client                           {one:8.1} MiB/s");
    println!("  8 clients (aggregate)              {eight:8.1} MiB/s   {:.2}x one client (target >= 1.5x)", eight / one);
    println!("  stat median, idle                  {idle:8.1} us");
    println!(
        "  stat median, beside an fsync loop  {busy:8.1} us   {:.2}x idle (target <= 2x)",
        busy / idle
    );
}
