//! Virtual CPUs.
//!
//! A host thread runs kernel code only while it holds one of the kernel's
//! `ncpu` virtual CPUs. `schedule` takes one, `unschedule` gives it back;
//! a blocking hypercall gives it up with `backend_unschedule` and takes one
//! again (perhaps another) with `backend_schedule`.
//!
//! The uncontended path is one compare-and-swap on the CPU the thread used
//! last (cache warm, as NetBSD's "previous lwp" fast path), and one swap to
//! release. Only when every CPU is busy does a thread sleep, on a host
//! mutex and condition variable that never involve the scheduler itself
//! (the `_nowrap` discipline).
//!
//! The thread's scheduling state is thread-local and holds a reference
//! to the `Sched` it belongs to, so any kernel instance's
//! `backend_unschedule` releases the CPU the thread actually holds, and a
//! `Sched` (or the kernel around it) dropped while a thread still holds
//! one of its CPUs stays allocated until that thread lets go.
//!
//! A panic that unwinds out of [`blocking`] takes the CPU back on its way
//! (a drop guard), so the syscall boundary that catches it finds the
//! thread's accounting as it left it.

use std::cell::Cell;
use std::sync::atomic::{
    fence, AtomicBool, AtomicI32, AtomicIsize, AtomicU64, AtomicUsize, Ordering,
};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

/// One virtual CPU, alone on its cache line.
#[repr(align(128))]
pub(crate) struct Cpu {
    busy: AtomicBool,
    /// Syscalls entered (+1) and left (-1) while on this CPU. A syscall may
    /// leave on another CPU than it entered on; only the sum over all CPUs
    /// means anything.
    pub(crate) inflight: AtomicIsize,
    /// The host thread holding this CPU (0: none) and since when, for the
    /// stall detector ([`crate::lockdebug`]).
    pub(crate) holder: AtomicI32,
    pub(crate) since_ns: AtomicU64,
}

impl Cpu {
    #[inline]
    fn taken(&self) {
        self.holder.store(host_tid(), Ordering::Relaxed);
        self.since_ns
            .store(crate::lockdebug::now_ns(), Ordering::Relaxed);
    }
}

thread_local! {
    static TID: Cell<i32> = const { Cell::new(0) };
}

/// The calling host thread's id, cached.
#[inline]
fn host_tid() -> i32 {
    TID.with(|t| {
        let v = t.get();
        if v != 0 {
            return v;
        }
        let id = nix::unistd::gettid().as_raw();
        t.set(id);
        id
    })
}

/// The virtual CPUs of one kernel: a thread runs kernel code only while it holds one, and gives it up whenever it blocks (docs/design.md, "The blocking discipline").
pub(crate) struct Sched {
    cpus: Box<[Cpu]>,
    /// The stall detector watches this kernel: record who holds each CPU
    /// (two relaxed stores per schedule; skipped when nobody looks).
    pub(crate) watched: AtomicBool,
    waiters: AtomicUsize,
    lock: Mutex<()>,
    cv: Condvar,
    next: AtomicUsize,
}

/// The CPU a thread holds: a strong reference, so the `Sched` outlives
/// the hold whatever happens to the kernel that made it.
struct Held {
    sched: Arc<Sched>,
    cpu: usize,
}

thread_local! {
    /// The CPU this thread holds, if any.
    static HELD: Cell<Option<Held>> = const { Cell::new(None) };
    /// Nesting of `schedule` calls on this thread.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    /// Nesting of `backend_unschedule` calls; the CPU is retaken when the
    /// outermost one is matched.
    static BLOCK_LEVEL: Cell<u32> = const { Cell::new(0) };
    /// What the outermost `backend_unschedule` released, and the
    /// `schedule` nesting to restore with it.
    static RELEASED: Cell<Option<(Arc<Sched>, u32)>> = const { Cell::new(None) };
    /// The CPU this thread used last, per thread (affinity).
    static LAST: Cell<usize> = const { Cell::new(usize::MAX) };
}

impl Sched {
    /// `ncpu` CPUs (at least 1, at most 256).
    pub(crate) fn new(ncpu: usize) -> Sched {
        let n = ncpu.clamp(1, 256);
        let cpus = (0..n)
            .map(|_| Cpu {
                busy: AtomicBool::new(false),
                inflight: AtomicIsize::new(0),
                holder: AtomicI32::new(0),
                since_ns: AtomicU64::new(0),
            })
            .collect::<Vec<_>>()
            .into_boxed_slice();
        Sched {
            cpus,
            watched: AtomicBool::new(false),
            waiters: AtomicUsize::new(0),
            lock: Mutex::new(()),
            cv: Condvar::new(),
            next: AtomicUsize::new(0),
        }
    }

    /// The number of CPUs.
    pub(crate) fn ncpu(&self) -> usize {
        self.cpus.len()
    }

    #[inline]
    fn try_take(&self, i: usize) -> bool {
        let c = &self.cpus[i];
        !c.busy.load(Ordering::Relaxed)
            && c.busy
                .compare_exchange(false, true, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
    }

    /// Try every CPU once, starting at `first`.
    fn try_any(&self, first: usize) -> Option<usize> {
        let n = self.cpus.len();
        (0..n).map(|k| (first + k) % n).find(|&i| self.try_take(i))
    }

    /// Take a CPU for the calling thread, waiting if all are busy.
    fn acquire(&self) -> usize {
        let n = self.cpus.len();
        let last = LAST.with(|l| l.get());
        if last < n && self.try_take(last) {
            return last;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        if let Some(i) = self.try_any(start) {
            LAST.with(|l| l.set(i));
            return i;
        }
        // Slow path: announce ourselves, then retry under the lock. A
        // releaser either sees `waiters` (and signals under the lock) or
        // freed its CPU before our retry (which then succeeds).
        let mut g = self.lock.lock();
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let got = loop {
            if let Some(i) = self.try_any(start) {
                break i;
            }
            self.cv.wait(&mut g);
        };
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        drop(g);
        LAST.with(|l| l.set(got));
        got
    }

    fn release_cpu(&self, i: usize) {
        if self.watched.load(Ordering::Relaxed) {
            self.cpus[i].holder.store(0, Ordering::Relaxed);
        }
        self.cpus[i].busy.store(false, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if self.waiters.load(Ordering::SeqCst) > 0 {
            let _g = self.lock.lock();
            self.cv.notify_one();
        }
    }

    /// `hyp_schedule`: take a CPU (nested calls on a thread that already
    /// holds one only count).
    pub(crate) fn schedule(self: &Arc<Self>) {
        if with_held(|h| h.is_some()) {
            DEPTH.with(|x| x.set(x.get() + 1));
            return;
        }
        let cpu = self.acquire();
        if self.watched.load(Ordering::Relaxed) {
            self.cpus[cpu].taken();
        }
        HELD.with(|h| {
            h.set(Some(Held {
                sched: self.clone(),
                cpu,
            }))
        });
        DEPTH.with(|x| x.set(1));
    }

    /// `hyp_unschedule`: give the CPU back (at the outermost level).
    pub(crate) fn unschedule(&self) {
        let d = DEPTH.with(|d| d.get());
        if d > 1 {
            DEPTH.with(|x| x.set(d - 1));
            return;
        }
        DEPTH.with(|x| x.set(0));
        if let Some(h) = HELD.with(|h| h.take()) {
            release_held(h);
        }
    }

    /// Whether the calling thread holds a CPU of this kernel.
    pub(crate) fn holding(&self) -> bool {
        with_held(|h| h.is_some_and(|h| std::ptr::eq(&*h.sched, self)))
    }

    /// The index of the CPU the calling thread holds.
    pub(crate) fn current_cpu(&self) -> Option<usize> {
        with_held(|h| h.filter(|h| std::ptr::eq(&*h.sched, self)).map(|h| h.cpu))
    }

    pub(crate) fn cpu(&self, i: usize) -> &Cpu {
        &self.cpus[i % self.cpus.len()]
    }

    pub(crate) fn cpus(&self) -> &[Cpu] {
        &self.cpus
    }
}

/// Look at the calling thread's hold without taking it.
fn with_held<R>(f: impl FnOnce(Option<&Held>) -> R) -> R {
    HELD.with(|c| {
        let h = c.take();
        let r = f(h.as_ref());
        c.set(h);
        r
    })
}

fn release_held(h: Held) {
    h.sched.release_cpu(h.cpu);
}

/// `hyp_backend_unschedule`: before a blocking host operation, give up the
/// CPU this thread holds (of whichever kernel). Nested calls (a blocking
/// operation inside another) release nothing more. The `interlock`
/// argument matters in NetBSD only when it is the CPU's own scheduler
/// mutex, which this kernel never hands to the hypercall layer; it is
/// ignored. Returns the number of big-kernel-lock holds released: always 0.
pub(crate) fn backend_unschedule() -> i32 {
    let lvl = BLOCK_LEVEL.with(|l| l.get());
    BLOCK_LEVEL.with(|l| l.set(lvl + 1));
    if lvl == 0 {
        if let Some(h) = HELD.with(|h| h.take()) {
            let depth = DEPTH.with(|d| d.replace(0));
            h.sched.release_cpu(h.cpu);
            RELEASED.with(|r| r.set(Some((h.sched, depth))));
        }
    }
    0
}

/// `hyp_backend_schedule`: after the blocking operation, take a CPU again
/// if the matching `backend_unschedule` released one.
pub(crate) fn backend_schedule() {
    let lvl = BLOCK_LEVEL.with(|l| l.get());
    let lvl = lvl.saturating_sub(1);
    BLOCK_LEVEL.with(|l| l.set(lvl));
    if lvl == 0 {
        if let Some((sched, depth)) = RELEASED.with(|r| r.take()) {
            if let Some(h) = HELD.with(|h| h.take()) {
                // Someone entered the kernel inside the blocking section
                // and left without unscheduling: give that CPU back.
                release_held(h);
            }
            let cpu = sched.acquire();
            if sched.watched.load(Ordering::Relaxed) {
                sched.cpus[cpu].taken();
            }
            HELD.with(|h| h.set(Some(Held { sched, cpu })));
            DEPTH.with(|d| d.set(depth));
        }
    }
}

/// Run `f` with the calling thread's CPU released (if it holds one). The
/// CPU is taken back also when `f` panics.
pub(crate) fn blocking<R>(f: impl FnOnce() -> R) -> R {
    /// Retakes the CPU when dropped: at the end of `blocking`, or while a
    /// panic unwinds out of `f`.
    struct Retake;
    impl Drop for Retake {
        fn drop(&mut self) {
            backend_schedule();
        }
    }
    backend_unschedule();
    let _retake = Retake;
    f()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn one_cpu_is_exclusive() {
        let s = Arc::new(Sched::new(1));
        let inside = Arc::new(AtomicUsize::new(0));
        let mut th = Vec::new();
        for _ in 0..4 {
            let s = s.clone();
            let inside = inside.clone();
            th.push(std::thread::spawn(move || {
                for _ in 0..2000 {
                    s.schedule();
                    assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0);
                    inside.fetch_sub(1, Ordering::SeqCst);
                    s.unschedule();
                }
            }));
        }
        for t in th {
            t.join().unwrap();
        }
    }

    #[test]
    fn blocking_releases_the_cpu() {
        let s = Arc::new(Sched::new(1));
        s.schedule();
        assert!(s.holding());
        let s2 = s.clone();
        // Another thread can run while we block.
        blocking(|| {
            std::thread::spawn(move || {
                s2.schedule();
                s2.unschedule();
            })
            .join()
            .unwrap();
        });
        assert!(s.holding());
        s.unschedule();
        assert!(!s.holding());
    }

    #[test]
    fn a_dropped_sched_outlives_the_hold() {
        // The thread holds a CPU of a `Sched` whose last other reference
        // goes away: releasing it later touches live memory (the hold
        // keeps it), and the thread can schedule elsewhere afterwards.
        let s = Arc::new(Sched::new(1));
        s.schedule();
        let weak = Arc::downgrade(&s);
        drop(s);
        assert!(weak.upgrade().is_some(), "the hold keeps the Sched");
        blocking(|| ());
        backend_unschedule();
        backend_schedule();
        let s2 = Arc::new(Sched::new(1));
        s2.unschedule();
        assert!(weak.upgrade().is_none(), "released with the CPU");
        s2.schedule();
        assert!(s2.holding());
        s2.unschedule();
        assert!(!s2.holding());
    }

    #[test]
    fn a_panic_in_blocking_takes_the_cpu_back() {
        let s = Arc::new(Sched::new(1));
        s.schedule();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            blocking(|| -> () { panic!("boom") })
        }));
        assert!(r.is_err());
        assert!(s.holding(), "the CPU is held again after the unwind");
        assert_eq!(BLOCK_LEVEL.with(|l| l.get()), 0);
        // The next blocking section really releases it.
        let s2 = s.clone();
        blocking(|| {
            std::thread::spawn(move || {
                s2.schedule();
                s2.unschedule();
            })
            .join()
            .unwrap();
        });
        s.unschedule();
        assert!(!s.holding());
    }
}
