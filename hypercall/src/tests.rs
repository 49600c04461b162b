//! Unit tests of the Rust API, with a counting kernel installed.

use std::cell::Cell;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use crate::errno::{EBADF, EINVAL, ENOENT};
use crate::locks::{Condvar, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use crate::upcalls::{self, LwpPtr, Upcalls};

/// getpid() of the test kernel: tells our upcalls from anyone else's.
const MARK: libc::pid_t = 0x7e57;

thread_local! {
    static UNSCHED: Cell<u32> = const { Cell::new(0) };
    static SCHED: Cell<u32> = const { Cell::new(0) };
}

/// The threads unscheduled now (between `backend_unschedule` and
/// `backend_schedule`): a test waits for a thread to be blocked in a
/// lock through this, instead of sleeping and assuming it is.
static UNSCHEDULED: std::sync::Mutex<Vec<std::thread::ThreadId>> =
    std::sync::Mutex::new(Vec::new());

/// Wait until thread `t` is unscheduled (blocked in a hypercall).
fn wait_unscheduled(t: std::thread::ThreadId) {
    let end = Instant::now() + Duration::from_secs(20);
    while !UNSCHEDULED.lock().expect("unscheduled set").contains(&t) {
        assert!(Instant::now() < end, "thread {t:?} never blocked");
        std::thread::yield_now();
    }
}

/// Wait until host thread `tid` (of this process) sleeps in the host
/// kernel (`State:` S or D in /proc): blocked on a lock, since the tests
/// that ask have it do nothing else that sleeps.
fn wait_host_blocked(tid: libc::pid_t) {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let st =
            std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).unwrap_or_default();
        let state = st.lines().find_map(|l| l.strip_prefix("State:"));
        if state.is_some_and(|s| matches!(s.trim().chars().next(), Some('S' | 'D'))) {
            return;
        }
        assert!(
            Instant::now() < end,
            "thread {tid} never blocked: {state:?}"
        );
        std::thread::yield_now();
    }
}

struct Counting;

impl Upcalls for Counting {
    fn schedule(&self) {}
    fn unschedule(&self) {}
    fn backend_unschedule(&self, _nlocks: i32, _interlock: *mut std::ffi::c_void) -> i32 {
        UNSCHED.with(|c| c.set(c.get() + 1));
        UNSCHEDULED
            .lock()
            .expect("unscheduled set")
            .push(std::thread::current().id());
        2
    }
    fn backend_schedule(&self, nlocks: i32, _interlock: *mut std::ffi::c_void) {
        // 2 as handed out above; 0 from I/O threads completing a bio
        assert!(nlocks == 2 || nlocks == 0, "nlocks {nlocks}");
        SCHED.with(|c| c.set(c.get() + 1));
        let me = std::thread::current().id();
        let mut v = UNSCHEDULED.lock().expect("unscheduled set");
        if let Some(i) = v.iter().position(|t| *t == me) {
            v.swap_remove(i);
        }
    }
    unsafe fn lwproc_switch(&self, _l: LwpPtr) {}
    fn lwproc_release(&self) {}
    fn lwproc_rfork(
        &self,
        _c: crate::sp::ClientHandle,
        _f: i32,
        _comm: Option<&std::ffi::CStr>,
    ) -> i32 {
        0
    }
    fn lwproc_newlwp(&self, _pid: libc::pid_t) -> i32 {
        0
    }
    fn lwproc_curlwp(&self) -> LwpPtr {
        std::ptr::null_mut()
    }
    unsafe fn syscall(&self, _n: i32, _a: &mut [u64], _r: &mut [libc::c_long; 2]) -> i32 {
        78
    }
    fn lwpexit(&self) {}
    fn execnotify(&self, _comm: &std::ffi::CStr) {}
    fn getpid(&self) -> libc::pid_t {
        MARK
    }
}

/// Install the counting kernel. It is the only upcall table this test
/// binary ever installs (nothing else in the crate's unit tests calls
/// `upcalls::init` with a supported version), so the counts below always
/// come from it.
fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        upcalls::init(17, Box::new(Counting)).expect("install test upcalls");
    });
}

/// (unschedules, schedules) made by this thread so far. Panics unless the
/// counting kernel is the one installed: a count from another table would
/// make the assertions on it meaningless.
fn counts() -> (u32, u32) {
    let up = upcalls::get().expect("install() ran: the counting upcalls are installed");
    assert_eq!(
        up.getpid(),
        MARK,
        "the installed upcalls are the counting kernel"
    );
    (UNSCHED.with(|c| c.get()), SCHED.with(|c| c.get()))
}

fn delta(before: (u32, u32)) -> (u32, u32) {
    let (u0, s0) = before;
    let (u1, s1) = counts();
    (u1 - u0, s1 - s0)
}

/// A fresh directory for one test. Not testkit's: testkit depends on
/// this crate, and linking it into this crate's own unit tests would
/// link a second copy of every exported `rumpuser_*` symbol.
fn tmpdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("rumpuser-unit-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create temp dir");
    d
}

#[test]
fn init_rejects_other_versions() {
    assert_eq!(
        upcalls::init(16, Box::new(Counting)).err().map(|e| e.0),
        Some(EINVAL)
    );
}

#[test]
fn mutex_uncontended_makes_no_upcall() {
    install();
    let m = Mutex::new(0u64);
    let c0 = counts();
    for _ in 0..10_000 {
        *m.lock() += 1;
    }
    assert_eq!(*m.lock(), 10_000);
    let d = delta(c0);
    assert_eq!(d, (0, 0));
}

#[test]
fn mutex_contended_unschedules_once() {
    install();
    let m = Arc::new(Mutex::new(0u32));
    let held = Arc::new(AtomicBool::new(false));
    let (m2, h2) = (m.clone(), held.clone());
    let me = std::thread::current().id();
    let t = std::thread::spawn(move || {
        let mut g = m2.lock();
        h2.store(true, Ordering::SeqCst);
        // Released once the other thread blocks on it.
        wait_unscheduled(me);
        *g += 1;
    });
    while !held.load(Ordering::SeqCst) {
        std::thread::yield_now();
    }
    let c0 = counts();
    assert_eq!(*m.lock(), 1);
    let d = delta(c0);
    assert_eq!(d, (1, 1));
    t.join().expect("holder thread");
}

#[test]
fn spin_mutex_and_nowrap_never_unschedule() {
    install();
    for spin in [true, false] {
        let m = Arc::new(if spin {
            Mutex::new_spin(0u32)
        } else {
            Mutex::new(0u32)
        });
        let held = Arc::new(AtomicBool::new(false));
        let (m2, h2) = (m.clone(), held.clone());
        // SAFETY: gettid has no preconditions.
        let me = unsafe { libc::gettid() };
        let t = std::thread::spawn(move || {
            let _g = m2.lock_nowrap();
            h2.store(true, Ordering::SeqCst);
            // Released once the other thread blocks on it (keeping its
            // CPU: it never unschedules, so look at the host's view).
            wait_host_blocked(me);
        });
        while !held.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        let c0 = counts();
        if spin {
            drop(m.lock());
        } else {
            drop(m.lock_nowrap());
        }
        let d = delta(c0);
        assert_eq!(d, (0, 0), "spin={spin}");
        t.join().expect("holder thread");
    }
}

#[test]
fn mutex_records_owner() {
    install();
    let lwp = 0x4000 as LwpPtr;
    crate::curlwp::set_curlwp(lwp);
    let m = Mutex::new(());
    assert!(m.owner().is_null());
    {
        let _g = m.lock();
        assert_eq!(m.owner(), lwp);
        assert!(m.owned());
        assert!(m.try_lock().is_none());
    }
    assert!(m.owner().is_null());
    assert!(!m.owned());
    crate::curlwp::set_curlwp(std::ptr::null_mut());
}

#[test]
fn mutex_excludes_under_load() {
    install();
    let m = Arc::new(Mutex::new((0u64, 0u64)));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let m = m.clone();
            std::thread::spawn(move || {
                for _ in 0..20_000 {
                    let mut g = m.lock();
                    g.0 += 1;
                    g.1 += 2;
                    assert_eq!(g.1, 2 * g.0);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("worker");
    }
    assert_eq!(m.lock().0, 80_000);
}

#[test]
fn condvar_wait_notify_and_timeout() {
    install();
    let pair = Arc::new((Mutex::new(false), Condvar::new()));
    let p2 = pair.clone();
    let t = std::thread::spawn(move || {
        let (m, cv) = &*p2;
        let c0 = counts();
        let mut g = m.lock();
        while !*g {
            cv.wait(&mut g);
        }
        drop(g);
        delta(c0)
    });
    let (m, cv) = &*pair;
    while !cv.has_waiters() {
        std::thread::sleep(Duration::from_millis(1));
    }
    *m.lock() = true;
    cv.notify_one();
    let (u, s) = t.join().expect("waiter");
    assert!(u >= 1 && u == s, "unsched {u} sched {s}");
    assert_eq!(cv.waiters(), 0);

    let mut g = m.lock();
    let t0 = Instant::now();
    assert!(cv.wait_timeout(&mut g, Duration::from_millis(80)));
    assert!(t0.elapsed() >= Duration::from_millis(79));
    // still held after the wait
    assert!(m.try_lock().is_none());
    drop(g);

    // wait_while
    let pair = Arc::new((Mutex::new(0u32), Condvar::new()));
    let p2 = pair.clone();
    let t = std::thread::spawn(move || {
        for _ in 0..5 {
            // Not synchronization: spaced notifications, so that
            // wait_while wakes and checks again several times.
            std::thread::sleep(Duration::from_millis(5));
            *p2.0.lock() += 1;
            p2.1.notify_all();
        }
    });
    let mut g = pair.0.lock();
    pair.1.wait_while(&mut g, |n| *n < 5);
    assert_eq!(*g, 5);
    drop(g);
    t.join().expect("notifier");
}

#[test]
fn rwlock_shares_excludes_upgrades_downgrades() {
    install();
    crate::curlwp::set_curlwp(0x5000 as LwpPtr);
    let rw = Arc::new(RwLock::new(1u32));
    let r1 = rw.read();
    let r2 = rw.read();
    assert_eq!(rw.readers(), 2);
    assert!(rw.try_write().is_none());
    // no upgrade while another reader holds it
    let r1 = match RwLockReadGuard::try_upgrade(r1) {
        Ok(_) => panic!("upgraded past another reader"),
        Err(r) => r,
    };
    drop(r2);
    drop(r1);
    sole_reader_upgrades(&rw);
    let mut w = rw.write();
    *w = 2;
    assert!(rw.write_held());
    assert!(rw.try_read().is_none());
    let rw2 = rw.clone();
    assert!(std::thread::spawn(move || rw2.try_read().is_none())
        .join()
        .expect("other thread"));
    let r = RwLockWriteGuard::downgrade(w);
    assert_eq!(*r, 2);
    assert!(!rw.write_held());
    assert_eq!(rw.readers(), 1);
    assert!(rw.try_read().is_some());
    assert!(rw.try_write().is_none());

    // a writer blocked behind our read hold unschedules once
    let rw2 = rw.clone();
    let t = std::thread::spawn(move || {
        let c0 = counts();
        *rw2.write() = 3;
        delta(c0)
    });
    wait_unscheduled(t.thread().id());
    assert_eq!(*r, 2);
    drop(r);
    let d = t.join().expect("writer");
    assert_eq!(d, (1, 1));
    assert_eq!(*rw.read(), 3);
    crate::curlwp::set_curlwp(std::ptr::null_mut());
}

fn sole_reader_upgrades(rw: &RwLock<u32>) {
    let r = rw.read();
    match RwLockReadGuard::try_upgrade(r) {
        Ok(mut w) => {
            *w += 0;
            assert!(rw.write_held());
        }
        Err(_) => panic!("sole reader could not upgrade"),
    }
    assert!(!rw.write_held());
}

#[test]
fn rwlock_under_load() {
    install();
    let rw = Arc::new(RwLock::new((0u64, 0u64)));
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let mut ts = Vec::new();
    for _ in 0..2 {
        let (rw, stop, reads) = (rw.clone(), stop.clone(), reads.clone());
        ts.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let g = rw.read();
                assert_eq!(g.1, 3 * g.0);
                reads.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let writers: Vec<_> = (0..2)
        .map(|_| {
            let rw = rw.clone();
            std::thread::spawn(move || {
                for _ in 0..5_000 {
                    let mut g = rw.write();
                    g.0 += 1;
                    g.1 += 3;
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer");
    }
    stop.store(true, Ordering::Relaxed);
    for t in ts {
        t.join().expect("reader");
    }
    assert_eq!(rw.read().0, 10_000);
}

#[test]
fn host_file_read_write_sync_size() {
    install();
    use crate::file::*;
    let d = tmpdir("hostfile");
    let p = d.join("img");
    let ps = p.to_str().expect("utf-8");
    assert_eq!(
        HostFile::open(ps, OPEN_RDONLY).err().map(|e| e.0),
        Some(ENOENT)
    );
    assert_eq!(HostFile::open(ps, 0x80).err().map(|e| e.0), Some(EINVAL));
    assert_eq!(
        HostFile::open(ps, OPEN_ACCMODE).err().map(|e| e.0),
        Some(EINVAL)
    );
    let f = HostFile::open(ps, OPEN_RDWR | OPEN_CREATE | OPEN_BIO).expect("create");
    assert!(f.fd().as_raw_fd() >= 0);
    let c0 = counts();
    assert_eq!(f.write_at(b"0123456789", 4096).expect("write"), 10);
    let (u, s) = delta(c0);
    assert!(u == 1 && s == 1);
    let mut buf = [0u8; 10];
    assert_eq!(f.read_at(&mut buf, 4096).expect("read"), 10);
    assert_eq!(&buf, b"0123456789");
    let mut big = [0u8; 100];
    assert_eq!(f.read_at(&mut big, 4100).expect("short read"), 6);
    assert_eq!(f.size().expect("size"), 4106);
    assert_eq!(f.file_type().expect("type"), FileType::Reg);
    f.syncfd(SYNCFD_WRITE | SYNCFD_SYNC, 0, 0).expect("sync");
    f.syncfd(SYNCFD_WRITE | SYNCFD_BARRIER, 0, 4106)
        .expect("barrier");
    assert_eq!(
        f.syncfd(0x100 | SYNCFD_WRITE, 0, 0).err().map(|e| e.0),
        Some(EINVAL)
    );
    f.set_len(8192).expect("extend");
    assert_eq!(getfileinfo(ps).expect("info"), (8192, FileType::Reg));
    assert_eq!(
        getfileinfo(d.to_str().expect("utf-8")).expect("dir").1,
        FileType::Dir
    );
    assert_eq!(getfileinfo("/dev/null").expect("null").1, FileType::Chr);
    assert_eq!(
        getfileinfo("/nonexistent/x").err().map(|e| e.0),
        Some(ENOENT)
    );
    f.close().expect("close");
    assert_eq!(
        HostFile::open(ps, OPEN_RDWR | OPEN_CREATE | OPEN_EXCL)
            .err()
            .map(|e| e.0),
        Some(17)
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn bio_wait_and_submit() {
    install();
    use crate::bio::*;
    use crate::file::*;
    let d = tmpdir("bio");
    let p = d.join("disk");
    let f = HostFile::open(
        p.to_str().expect("utf-8"),
        OPEN_RDWR | OPEN_CREATE | OPEN_BIO,
    )
    .expect("create");
    let mut data = vec![0xa5u8; 65536];
    let c0 = counts();
    assert_eq!(
        // SAFETY: the buffer outlives the synchronous call.
        unsafe {
            bio_wait(
                f.fd().as_raw_fd(),
                BIO_WRITE | BIO_SYNC,
                data.as_mut_ptr(),
                data.len(),
                0,
            )
        }
        .expect("write"),
        65536
    );
    let sched = delta(c0);
    assert_eq!(sched, (1, 1));
    // visible through a separate descriptor
    let back = std::fs::read(&p).expect("read back");
    assert_eq!(back.len(), 65536);
    assert!(back.iter().all(|&b| b == 0xa5));
    let mut rbuf = vec![0u8; 70000];
    assert_eq!(
        // SAFETY: the buffer outlives the synchronous call.
        unsafe {
            bio_wait(
                f.fd().as_raw_fd(),
                BIO_READ,
                rbuf.as_mut_ptr(),
                rbuf.len(),
                0,
            )
        }
        .expect("short"),
        65536
    );
    assert_eq!(
        // SAFETY: the buffer outlives the synchronous call.
        unsafe { bio_wait(-1, BIO_READ, rbuf.as_mut_ptr(), 16, 0).err() }.map(|e| e.0),
        Some(EBADF)
    );
    assert_eq!(
        // SAFETY: the buffer outlives the synchronous call.
        unsafe { bio_wait(f.fd().as_raw_fd(), 0, rbuf.as_mut_ptr(), 16, 0).err() }.map(|e| e.0),
        Some(EINVAL)
    );
    assert_eq!(write_at(f.fd(), b"abc", 10, true).expect("write_at"), 3);
    let mut three = [0u8; 3];
    assert_eq!(read_at(f.fd(), &mut three, 10).expect("read_at"), 3);
    assert_eq!(&three, b"abc");

    // asynchronous: each completion exactly once
    let (tx, rx) = std::sync::mpsc::channel();
    let mut bufs: Vec<Vec<u8>> = (0..32).map(|i| vec![i as u8; 4096]).collect();
    for (i, b) in bufs.iter_mut().enumerate() {
        let tx = tx.clone();
        // SAFETY: `bufs` and `f` outlive every completion, awaited below.
        unsafe {
            bio_submit(
                f.fd().as_raw_fd(),
                BIO_WRITE,
                b.as_mut_ptr(),
                b.len(),
                (i * 4096) as i64,
                Box::new(move |n, e| {
                    let name = std::thread::current().name().unwrap_or("").to_string();
                    let _ = tx.send((i, n, e, name));
                }),
            )
        };
    }
    let mut seen = [0; 32];
    for _ in 0..32 {
        let (i, n, e, name) = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("completion");
        assert_eq!((n, e), (4096, 0));
        assert!(name.starts_with("rumpuser_bio"), "completed on {name:?}");
        seen[i] += 1;
    }
    drop(tx);
    assert!(rx.recv_timeout(Duration::from_millis(50)).is_err());
    assert!(seen.iter().all(|&n| n == 1));
    drop(bufs);
    let mut b = [0u8; 1];
    assert_eq!(f.read_at(&mut b, 31 * 4096).expect("read"), 1);
    assert_eq!(b[0], 31);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn threads_named_and_joined() {
    install();
    let go = Arc::new(AtomicBool::new(false));
    let g2 = go.clone();
    let h = crate::thread::spawn("unit_test_kthread_name", true, move || {
        while !g2.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
    })
    .expect("spawn")
    .expect("joinable");
    assert_eq!(h.thread().name(), Some("unit_test_kthre"));
    let mut found = false;
    for _ in 0..500 {
        found = std::fs::read_dir("/proc/self/task")
            .expect("tasks")
            .flatten()
            .any(|e| {
                std::fs::read_to_string(e.path().join("comm"))
                    .map(|c| c.trim_end() == "unit_test_kthre")
                    .unwrap_or(false)
            });
        if found {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(found, "thread name not visible in /proc");
    go.store(true, Ordering::SeqCst);
    h.join().expect("join");
    let none = crate::thread::spawn("detached", false, || {}).expect("spawn");
    assert!(none.is_none());
    assert_eq!(crate::thread::host_name("a\0b"), "a");
    assert_eq!(crate::thread::host_name("ééééééééé"), "ééééééé");
}

#[test]
fn clocks_and_sleep() {
    install();
    use crate::clock::*;
    let (s, n) = gettime(CLOCK_RELWALL).expect("wall");
    assert!(s > 1_600_000_000 && (0..1_000_000_000).contains(&n));
    let (s0, n0) = gettime(CLOCK_ABSMONO).expect("mono");
    let c0 = counts();
    let t0 = Instant::now();
    // Not synchronization: the hypercall's sleep is what is tested here.
    sleep(CLOCK_RELWALL, 0, 30_000_000).expect("sleep");
    assert!(t0.elapsed() >= Duration::from_millis(29));
    let d = delta(c0);
    assert_eq!(d, (1, 1));
    let deadline = s0 * 1_000_000_000 + n0 + 60_000_000;
    sleep(
        CLOCK_ABSMONO,
        deadline / 1_000_000_000,
        deadline % 1_000_000_000,
    )
    .expect("abs");
    let (s1, n1) = gettime(CLOCK_ABSMONO).expect("mono");
    assert!(s1 * 1_000_000_000 + n1 >= deadline);
    assert_eq!(gettime(5).err().map(|e| e.0), Some(EINVAL));
    assert_eq!(
        sleep(CLOCK_RELWALL, 0, 2_000_000_000).err().map(|e| e.0),
        Some(EINVAL)
    );
}

#[test]
fn params() {
    use crate::param::*;
    let host = host_ncpu();
    assert!(host >= 1);
    assert!(ncpu() >= 1);
    assert!(getparam(PARAM_HOSTNAME)
        .expect("hostname")
        .starts_with("rump-"));
    assert_eq!(
        getparam("RUMPUSER_UNIT_TEST_SURELY_UNSET")
            .err()
            .map(|e| e.0),
        Some(ENOENT)
    );
    assert_eq!(getparam("_RESERVED").err().map(|e| e.0), Some(EINVAL));
    assert_eq!(getparam("PATH").ok(), std::env::var("PATH").ok());
}

#[test]
fn memory_and_random() {
    let p = crate::mem::malloc(100, 256).expect("malloc");
    assert_eq!(p.as_ptr() as usize % 256, 0);
    // SAFETY: from malloc above, freed once.
    unsafe { crate::mem::free(p.as_ptr()) };
    assert_eq!(crate::mem::malloc(8, 12).err().map(|e| e.0), Some(EINVAL));
    let mut m = crate::mem::AnonMap::new(10000).expect("map");
    assert!(m.as_slice().iter().all(|&b| b == 0));
    m.as_mut_slice()[9999] = 1;
    let mut a = [0u8; 100];
    assert_eq!(
        crate::random::getrandom(&mut a, crate::random::RANDOM_HARD).expect("random"),
        100
    );
    assert!(a.iter().any(|&b| b != 0));
    assert_eq!(
        crate::random::getrandom(&mut a, 0x10).err().map(|e| e.0),
        Some(EINVAL)
    );
}

#[test]
fn dl_walks_loaded_objects() {
    let objs = crate::dl::objects();
    assert!(objs.len() >= 2);
    assert!(objs[0].is_main);
    // the GNU-hash symbol count is right: libc's malloc is found where the
    // loader says it is
    let libc_obj = objs
        .iter()
        .find(|o| o.name.contains("libc.so"))
        .expect("libc loaded");
    let addr = libc_obj.lookup("malloc").expect("malloc in libc's dynsym");
    // SAFETY: dlsym with a NUL-terminated name.
    let want = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"malloc".as_ptr()) } as usize;
    assert_eq!(addr, want);
    // nothing in this test program defines the link sets
    assert!(crate::dl::link_set_entries("link_set_modules").is_empty());
    let (syms, strs) = crate::dl::kernel_symbols();
    assert_eq!(syms.len() % std::mem::size_of::<crate::dl::ElfSym>(), 0);
    assert!(strs.len() >= syms.len() / std::mem::size_of::<crate::dl::ElfSym>());
}

#[test]
fn curlwp_is_thread_local() {
    crate::curlwp::set_curlwp(0x9000 as LwpPtr);
    let other = std::thread::spawn(|| crate::curlwp::curlwp() as usize)
        .join()
        .expect("thread");
    assert_eq!(other, 0);
    assert_eq!(crate::curlwp::curlwp() as usize, 0x9000);
    crate::curlwp::set_curlwp(std::ptr::null_mut());
}

#[test]
fn one_condvar_serves_two_mutexes() {
    install();
    // pthread allows it, and so must we (no panic, no lost wake-up).
    let cv = Arc::new(Condvar::new());
    let flags = Arc::new((Mutex::new(false), Mutex::new(false)));
    let ts: Vec<_> = (0..2)
        .map(|i| {
            let (cv, flags) = (cv.clone(), flags.clone());
            std::thread::spawn(move || {
                let m = if i == 0 { &flags.0 } else { &flags.1 };
                let mut g = m.lock();
                while !*g {
                    cv.wait(&mut g);
                }
            })
        })
        .collect();
    while cv.waiters() < 2 {
        std::thread::sleep(Duration::from_millis(1));
    }
    *flags.0.lock() = true;
    *flags.1.lock() = true;
    cv.notify_all();
    for t in ts {
        t.join().expect("waiter");
    }
}

/// The export table and the trace list name every C entry point the
/// sources define, once, in the same order.
#[test]
fn export_table_and_trace_list_cover_every_entry_point() {
    use crate::exports::ENTRY_POINTS;
    use crate::trace::NAMES;
    let names: Vec<&str> = ENTRY_POINTS.iter().map(|e| e.name).collect();
    assert_eq!(names, NAMES, "exports and trace lists agree");
    let mut defined = Vec::new();
    fn walk(dir: &std::path::Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).expect("read src").flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).expect("read source");
                for l in text.lines() {
                    if let Some(rest) = l.split("extern \"C\" fn ").nth(1) {
                        let name: String = rest
                            .chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect();
                        if name.starts_with("rumpuser_") && l.trim_start().starts_with("pub ") {
                            out.push(name);
                        }
                    }
                }
            }
        }
    }
    walk(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut defined,
    );
    defined.sort();
    let mut listed: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(
        defined, listed,
        "every pub extern \"C\" fn rumpuser_* is in the table"
    );
    assert_eq!(listed.len(), 60);
    for e in ENTRY_POINTS.iter() {
        assert!(!e.addr.is_null(), "{}", e.name);
    }
}

/// A synchronous write or a read through `rumpuser_bio` is done on the
/// calling thread with its virtual CPU given up, and completed before the
/// call returns (the kernel waits for it anyway).
#[test]
fn rumpuser_bio_reads_and_sync_writes_complete_on_the_caller() {
    use crate::bio::*;
    use crate::file::*;
    use std::ffi::c_void;
    static DONE_ON: std::sync::Mutex<Option<(std::thread::ThreadId, usize, i32)>> =
        std::sync::Mutex::new(None);
    unsafe extern "C" fn record(_arg: *mut c_void, n: usize, e: i32) {
        *DONE_ON.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((std::thread::current().id(), n, e));
    }
    install();
    let d = tmpdir("bio-sync");
    let f = HostFile::open(
        d.join("disk").to_str().expect("utf-8"),
        OPEN_RDWR | OPEN_CREATE | OPEN_BIO,
    )
    .expect("create");
    let buf = vec![9u8; 4096];
    let c0 = counts();
    // SAFETY: `buf` outlives the call, which completes before returning
    // (asserted below); `record` matches rump_biodone_fn.
    unsafe {
        rumpuser_bio(
            f.fd().as_raw_fd(),
            BIO_WRITE | BIO_SYNC,
            buf.as_ptr() as *mut c_void,
            buf.len(),
            8192,
            Some(record),
            std::ptr::null_mut(),
        )
    };
    let done = DONE_ON.lock().unwrap_or_else(|p| p.into_inner()).take();
    assert_eq!(done, Some((std::thread::current().id(), 4096, 0)));
    assert_eq!(
        delta(c0),
        (1, 1),
        "the CPU given up for the I/O, then taken back"
    );
    let mut b = vec![0u8; 4096];
    let c0 = counts();
    // SAFETY: `b` outlives the call, which completes before returning.
    unsafe {
        rumpuser_bio(
            f.fd().as_raw_fd(),
            BIO_READ,
            b.as_mut_ptr().cast(),
            b.len(),
            8192,
            Some(record),
            std::ptr::null_mut(),
        )
    };
    let done = DONE_ON.lock().unwrap_or_else(|p| p.into_inner()).take();
    assert_eq!(done, Some((std::thread::current().id(), 4096, 0)));
    assert_eq!(delta(c0), (1, 1));
    assert!(b.iter().all(|&x| x == 9), "the bytes written, read back");
    let _ = std::fs::remove_dir_all(&d);
}

/// `rumpuser_bio` keeps at most `MAX_OUTSTANDING` requests in flight: the
/// kernel thread submitting more waits, unscheduled, for a completion.
#[test]
fn rumpuser_bio_bounds_outstanding_requests() {
    use crate::bio::*;
    use crate::file::*;
    use std::ffi::c_void;
    static GATE: AtomicBool = AtomicBool::new(false);
    static DONE: AtomicUsize = AtomicUsize::new(0);
    unsafe extern "C" fn gated(_arg: *mut c_void, n: usize, e: i32) {
        assert_eq!((n, e), (512, 0));
        while !GATE.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(1));
        }
        DONE.fetch_add(1, Ordering::AcqRel);
    }
    install();
    let d = tmpdir("bio-bound");
    let p = d.join("disk");
    let f = HostFile::open(
        p.to_str().expect("utf-8"),
        OPEN_RDWR | OPEN_CREATE | OPEN_BIO,
    )
    .expect("create");
    let fd = f.fd().as_raw_fd();
    const N: usize = MAX_OUTSTANDING + 72;
    let submitted = Arc::new(AtomicUsize::new(0));
    let s2 = submitted.clone();
    let submitter = std::thread::spawn(move || {
        let c0 = counts();
        let buf = vec![7u8; 512];
        for i in 0..N {
            // SAFETY: `buf` outlives every request (the thread joins below
            // only after all completions); `gated` matches rump_biodone_fn.
            unsafe {
                rumpuser_bio(
                    fd,
                    BIO_WRITE,
                    buf.as_ptr() as *mut c_void,
                    512,
                    (i * 512) as i64,
                    Some(gated),
                    std::ptr::null_mut(),
                )
            };
            s2.fetch_add(1, Ordering::AcqRel);
        }
        while DONE.load(Ordering::Acquire) < N {
            std::thread::sleep(Duration::from_millis(1));
        }
        delta(c0)
    });
    let t = Instant::now();
    while outstanding() < MAX_OUTSTANDING {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "outstanding {}",
            outstanding()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    // The submitter, at the bound, waits unscheduled for a completion.
    wait_unscheduled(submitter.thread().id());
    assert_eq!(outstanding(), MAX_OUTSTANDING);
    assert_eq!(
        submitted.load(Ordering::Acquire),
        MAX_OUTSTANDING,
        "the submitter waits at the bound"
    );
    GATE.store(true, Ordering::Release);
    let d2 = submitter.join().expect("submitter");
    assert_eq!(DONE.load(Ordering::Acquire), N);
    assert_eq!(outstanding(), 0);
    let (unsched, sched) = d2;
    assert!(
        unsched >= 1 && unsched == sched,
        "waited unscheduled: {unsched} {sched}"
    );
    let _ = std::fs::remove_dir_all(&d);
}
