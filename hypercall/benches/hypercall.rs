//! Hypercall-layer benchmarks, each against a plain pthread baseline
//! measured in the same run:
//!
//!   cargo bench -p rumpuser --bench hypercall
//!
//! The C ABI entry points are called as a C kernel would, with a no-op
//! upcall table installed (so the blocking paths do make their upcalls).
//! Each figure is the best of several rounds; the ratio is ours / pthread
//! (lower is better; the target for the uncontended mutex is <= 1.2).

// Tests and benches drive raw interfaces in bulk (a C ABI, unchecked
// syscall blocks): each block's SAFETY line covers all it does.
#![allow(clippy::multiple_unsafe_ops_per_block)]

use std::ffi::{c_int, c_void};
use std::hint::black_box;
use std::ptr::null_mut;
use std::sync::Arc;
use std::time::Instant;

use rumpuser::locks::{
    rumpuser_cv_init, rumpuser_cv_signal, rumpuser_cv_wait, rumpuser_mutex_enter,
    rumpuser_mutex_exit, rumpuser_mutex_init, Mutex, RumpuserCv, RumpuserMtx, MTX_KMUTEX,
};
use rumpuser::thread::{rumpuser_thread_create, rumpuser_thread_join};
use rumpuser::RumpuserHyperup;

unsafe extern "C" fn nop() {}
unsafe extern "C" fn nop_unsched(_n: c_int, count: *mut c_int, _il: *mut c_void) {
    // SAFETY: the layer passes a valid out-parameter.
    unsafe { *count = 0 }
}
unsafe extern "C" fn nop_sched(_n: c_int, _il: *mut c_void) {}

fn install_upcalls() {
    let hyp = RumpuserHyperup {
        hyp_schedule: Some(nop),
        hyp_unschedule: Some(nop),
        hyp_backend_unschedule: Some(nop_unsched),
        hyp_backend_schedule: Some(nop_sched),
        hyp_lwproc_switch: None,
        hyp_lwproc_release: None,
        hyp_lwproc_rfork: None,
        hyp_lwproc_newlwp: None,
        hyp_lwproc_curlwp: None,
        hyp_syscall: None,
        hyp_lwpexit: None,
        hyp_execnotify: None,
        hyp_getpid: None,
        hyp_extra: [null_mut(); 8],
    };
    // SAFETY: a complete table that outlives the call (it is copied).
    let rv = unsafe { rumpuser::rumpuser_init(17, &hyp) };
    assert_eq!(rv, 0, "rumpuser_init");
}

/// Best (lowest) nanoseconds per operation over `rounds` runs of `f`,
/// which performs `ops` operations.
fn best(rounds: usize, ops: u64, mut f: impl FnMut()) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..rounds {
        let t0 = Instant::now();
        f();
        let ns = t0.elapsed().as_nanos() as f64 / ops as f64;
        best = best.min(ns);
    }
    best
}

fn report(name: &str, ours: f64, base: f64, unit: &str) {
    let (o, b) = if unit == "us" {
        (ours / 1000.0, base / 1000.0)
    } else {
        (ours, base)
    };
    println!(
        "{name:<34} ours {o:>9.2} {unit}/op   pthread {b:>9.2} {unit}/op   ratio {:>5.2}",
        ours / base
    );
}

struct SendPtr<T>(*mut T);
// SAFETY: the benchmark shares lock objects between its threads on purpose.
unsafe impl<T> Send for SendPtr<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for SendPtr<T> {}

fn new_pthread_mutex() -> Box<libc::pthread_mutex_t> {
    Box::new(libc::PTHREAD_MUTEX_INITIALIZER)
}

fn new_rump_mutex() -> *mut RumpuserMtx {
    let mut m: *mut RumpuserMtx = null_mut();
    // SAFETY: valid out-parameter.
    unsafe { rumpuser_mutex_init(&mut m, MTX_KMUTEX) };
    m
}

fn uncontended() {
    const N: u64 = 5_000_000;
    // A kernel process always has other threads; with none, glibc takes a
    // single-threaded shortcut (no atomic instructions) that no rump kernel
    // ever sees. Keep one idle thread alive for a fair baseline.
    let idle = Arc::new(std::sync::Barrier::new(2));
    let idle2 = idle.clone();
    let idler = std::thread::spawn(move || {
        idle2.wait();
    });
    let mut pm = new_pthread_mutex();
    let pmp: *mut libc::pthread_mutex_t = &mut *pm;
    let base = best(7, N, || {
        for _ in 0..N {
            // SAFETY: an initialised mutex, locked and unlocked by us.
            unsafe {
                libc::pthread_mutex_lock(black_box(pmp));
                libc::pthread_mutex_unlock(black_box(pmp));
            }
        }
    });
    let rm = new_rump_mutex();
    let ours = best(7, N, || {
        for _ in 0..N {
            // SAFETY: a live mutex, entered and exited by us.
            unsafe {
                rumpuser_mutex_enter(black_box(rm));
                rumpuser_mutex_exit(black_box(rm));
            }
        }
    });
    report("mutex enter/exit, uncontended (C)", ours, base, "ns");
    let m = Mutex::new(0u64);
    let rust = best(7, N, || {
        for _ in 0..N {
            *black_box(&m).lock() += 1;
        }
    });
    report("Mutex<T> lock/unlock, uncontended", rust, base, "ns");
    idle.wait();
    idler.join().expect("idle thread");
}

/// Two threads each take the lock `n` times, incrementing a counter.
fn contended() {
    const N: u64 = 500_000;
    let pm = SendPtr(Box::into_raw(new_pthread_mutex()));
    let pm = Arc::new(pm);
    let base = best(3, 2 * N, || {
        let ts: Vec<_> = (0..2)
            .map(|_| {
                let pm = pm.clone();
                std::thread::spawn(move || {
                    for _ in 0..N {
                        // SAFETY: a shared initialised mutex.
                        unsafe {
                            libc::pthread_mutex_lock(pm.0);
                            black_box(());
                            libc::pthread_mutex_unlock(pm.0);
                        }
                    }
                })
            })
            .collect();
        for t in ts {
            t.join().expect("thread");
        }
    });
    let rm = Arc::new(SendPtr(new_rump_mutex()));
    let ours = best(3, 2 * N, || {
        let ts: Vec<_> = (0..2)
            .map(|_| {
                let rm = rm.clone();
                std::thread::spawn(move || {
                    for _ in 0..N {
                        // SAFETY: a shared live mutex.
                        unsafe {
                            rumpuser_mutex_enter(rm.0);
                            black_box(());
                            rumpuser_mutex_exit(rm.0);
                        }
                    }
                })
            })
            .collect();
        for t in ts {
            t.join().expect("thread");
        }
    });
    report("mutex, two threads contending", ours, base, "ns");
}

/// Two threads take turns through a mutex and condition variable.
fn pingpong() {
    const N: u64 = 50_000;
    struct P {
        m: libc::pthread_mutex_t,
        cv: libc::pthread_cond_t,
        turn: u64,
    }
    let p = Arc::new(SendPtr(Box::into_raw(Box::new(P {
        m: libc::PTHREAD_MUTEX_INITIALIZER,
        cv: libc::PTHREAD_COND_INITIALIZER,
        turn: 0,
    }))));
    let base = best(3, N, || {
        // SAFETY: single-threaded reset between rounds.
        unsafe { (*p.0).turn = 0 };
        let ts: Vec<_> = (0..2u64)
            .map(|me| {
                let p = p.clone();
                std::thread::spawn(move || {
                    let p = p.0;
                    // SAFETY: shared pthread objects used per their protocol.
                    unsafe {
                        libc::pthread_mutex_lock(&mut (*p).m);
                        for _ in 0..N / 2 {
                            while std::ptr::read_volatile(&(*p).turn) % 2 != me {
                                libc::pthread_cond_wait(&mut (*p).cv, &mut (*p).m);
                            }
                            (*p).turn += 1;
                            libc::pthread_cond_signal(&mut (*p).cv);
                        }
                        libc::pthread_mutex_unlock(&mut (*p).m);
                    }
                })
            })
            .collect();
        for t in ts {
            t.join().expect("thread");
        }
    });
    struct R {
        m: *mut RumpuserMtx,
        cv: *mut RumpuserCv,
        turn: u64,
    }
    let mut cv: *mut RumpuserCv = null_mut();
    // SAFETY: valid out-parameter.
    unsafe { rumpuser_cv_init(&mut cv) };
    let r = Arc::new(SendPtr(Box::into_raw(Box::new(R {
        m: new_rump_mutex(),
        cv,
        turn: 0,
    }))));
    let ours = best(3, N, || {
        // SAFETY: single-threaded reset between rounds.
        unsafe { (*r.0).turn = 0 };
        let ts: Vec<_> = (0..2u64)
            .map(|me| {
                let r = r.clone();
                std::thread::spawn(move || {
                    let r = r.0;
                    // SAFETY: shared hypercall objects used per their protocol.
                    unsafe {
                        rumpuser_mutex_enter((*r).m);
                        for _ in 0..N / 2 {
                            while std::ptr::read_volatile(&(*r).turn) % 2 != me {
                                rumpuser_cv_wait((*r).cv, (*r).m);
                            }
                            (*r).turn += 1;
                            rumpuser_cv_signal((*r).cv);
                        }
                        rumpuser_mutex_exit((*r).m);
                    }
                })
            })
            .collect();
        for t in ts {
            t.join().expect("thread");
        }
    });
    report("condvar ping-pong (one handoff)", ours, base, "ns");
}

extern "C" fn thread_body(arg: *mut c_void) -> *mut c_void {
    arg
}

fn create_join() {
    const N: u64 = 2_000;
    let base = best(3, N, || {
        for _ in 0..N {
            // SAFETY: zeroed pthread_t as an out-parameter; joined below.
            unsafe {
                let mut t: libc::pthread_t = std::mem::zeroed();
                assert_eq!(
                    libc::pthread_create(&mut t, std::ptr::null(), thread_body, null_mut()),
                    0
                );
                libc::pthread_join(t, null_mut());
            }
        }
    });
    let ours = best(3, N, || {
        for _ in 0..N {
            let mut cookie: *mut c_void = null_mut();
            // SAFETY: a valid thread function, name and cookie pointer.
            unsafe {
                let rv = rumpuser_thread_create(
                    Some(thread_body),
                    null_mut(),
                    c"benchthread".as_ptr(),
                    1,
                    0,
                    -1,
                    &mut cookie,
                );
                assert_eq!(rv, 0);
                assert_eq!(rumpuser_thread_join(cookie), 0);
            }
        }
    });
    report("thread create+join", ours, base, "us");
}

fn main() {
    install_upcalls();
    // Optional filter words select benchmarks (`cargo bench ... -- mutex`).
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let want = |name: &str| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()));
    println!("hypercall layer vs pthread (best of several rounds; ratio = ours / pthread)");
    if want("mutex") {
        uncontended();
        contended();
    }
    if want("condvar") {
        pingpong();
    }
    if want("thread") {
        create_join();
    }
}
