//! The worker pool: threads that read connections and run syscalls.
//!
//! Jobs never fail to be queued: if no thread can be started, the job
//! waits for a busy thread to come back.

use std::collections::VecDeque;
use std::sync::OnceLock;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

type Job = Box<dyn FnOnce() + Send + 'static>;

struct State {
    queue: VecDeque<Job>,
    /// Threads waiting for work.
    idle: usize,
    /// Wake-ups sent and not yet consumed.
    notified: usize,
    threads: usize,
}

pub(crate) struct Pool {
    st: Mutex<State>,
    cv: Condvar,
}

/// Idle threads kept beyond this many exit after [`IDLE_EXIT`].
const KEEP_IDLE: usize = 8;
const IDLE_EXIT: Duration = Duration::from_secs(20);
/// Stack for threads that run kernel code.
const STACK: usize = 2 << 20;

pub(crate) fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool {
        st: Mutex::new(State {
            queue: VecDeque::new(),
            idle: 0,
            notified: 0,
            threads: 0,
        }),
        cv: Condvar::new(),
    })
}

impl Pool {
    pub(crate) fn submit(&'static self, f: impl FnOnce() + Send + 'static) {
        let mut st = self.st.lock();
        st.queue.push_back(Box::new(f));
        if st.idle > st.notified {
            st.notified += 1;
            drop(st);
            self.cv.notify_one();
            return;
        }
        st.threads += 1;
        drop(st);
        let spawned = std::thread::Builder::new()
            .name("rumpsp".into())
            .stack_size(STACK)
            .spawn(move || self.work());
        if spawned.is_err() {
            // The job stays queued for a thread that finishes its work.
            self.st.lock().threads -= 1;
        }
    }

    fn work(&'static self) {
        loop {
            let job = {
                let mut st = self.st.lock();
                loop {
                    if let Some(j) = st.queue.pop_front() {
                        break j;
                    }
                    st.idle += 1;
                    let timed_out = self.cv.wait_for(&mut st, IDLE_EXIT).timed_out();
                    st.idle -= 1;
                    if st.notified > 0 {
                        st.notified -= 1;
                    }
                    if timed_out && st.queue.is_empty() && st.idle >= KEEP_IDLE {
                        st.threads -= 1;
                        return;
                    }
                }
            };
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                crate::cons::dprint("rump_sp: a sysproxy worker job panicked\n");
            }
        }
    }
}
