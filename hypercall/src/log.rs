//! Log lines to standard error without ever blocking or failing the
//! caller.
//!
//! A kernel thread that logs may hold a virtual CPU, and standard error
//! may be a pipe nobody reads, a reader that went away, or `/dev/full`.
//! So a line goes into a bounded queue (`try_send`: never waits) and one
//! writer thread of its own writes it; a line the queue has no room for
//! is dropped and counted (the writer says how many, once it can write
//! again), and a line that cannot be written is dropped too. At exit the
//! queue is given half a second to drain, so the last words of a tool
//! are not lost.
//!
//! Written here rather than with `tracing-appender`'s non-blocking
//! writer: that one reports its own failures on standard error and
//! standard output (the very streams that fail), and its worker does not
//! survive the `fork` of a daemonizing server; this queue starts its
//! writer lazily, again in a forked child.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crossbeam::channel::{bounded, Sender, TrySendError};
use parking_lot::{Condvar, Mutex};

/// Lines waiting at most; more are dropped.
const QUEUE_LINES: usize = 4096;
/// How long exit waits for the queue to drain.
const EXIT_DRAIN: Duration = Duration::from_millis(500);

struct Writer {
    /// The process the writer thread runs in (a forked child starts its
    /// own).
    pid: u32,
    tx: Sender<Vec<u8>>,
}

// Process-wide: there is one standard error, and one writer thread in
// each process owns it.
static WRITER: Mutex<Option<Writer>> = Mutex::new(None);
static QUEUED: AtomicUsize = AtomicUsize::new(0);
static DROPPED: AtomicU64 = AtomicU64::new(0);
static DRAINED: Condvar = Condvar::new();
static DRAIN_LOCK: Mutex<()> = Mutex::new(());
static PROG: OnceLock<String> = OnceLock::new();

/// Name the program for the "lines dropped" note (once).
pub fn set_progname(prog: &str) {
    let _ = PROG.set(prog.to_string());
}

/// Queue one line (it should end in a newline). Never blocks, never
/// fails: a line that does not fit is dropped and counted.
pub fn push(line: Vec<u8>) {
    let pid = std::process::id();
    let mut g = WRITER.lock();
    if g.as_ref().is_none_or(|w| w.pid != pid) {
        *g = start(pid);
    }
    let Some(w) = g.as_ref() else {
        DROPPED.fetch_add(1, Ordering::Relaxed);
        return;
    };
    QUEUED.fetch_add(1, Ordering::SeqCst);
    match w.tx.try_send(line) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
            QUEUED.fetch_sub(1, Ordering::SeqCst);
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Start the writer thread of this process.
fn start(pid: u32) -> Option<Writer> {
    // Whatever a parent had queued is not ours to wait for.
    QUEUED.store(0, Ordering::SeqCst);
    let (tx, rx) = bounded::<Vec<u8>>(QUEUE_LINES);
    let spawned = std::thread::Builder::new()
        .name("rump-log".into())
        .spawn(move || {
            let mut err = io::stderr();
            for line in rx {
                let lost = DROPPED.swap(0, Ordering::Relaxed);
                if lost > 0 {
                    let prog = PROG.get().map_or("rump", String::as_str);
                    let _ = writeln!(err, "{prog}: {lost} log line(s) dropped");
                }
                // A line that cannot be written is dropped.
                let _ = err.write_all(&line);
                if QUEUED.fetch_sub(1, Ordering::SeqCst) == 1 {
                    let _g = DRAIN_LOCK.lock();
                    DRAINED.notify_all();
                }
            }
        });
    match spawned {
        Ok(_) => {
            register_exit_drain();
            crate::exit::set_last_words(|| drain(EXIT_DRAIN));
            Some(Writer { pid, tx })
        }
        Err(_) => None,
    }
}

/// Wait until every queued line is written, or `timeout` passed.
pub fn drain(timeout: Duration) {
    let end = Instant::now() + timeout;
    let mut g = DRAIN_LOCK.lock();
    while QUEUED.load(Ordering::SeqCst) > 0 {
        if DRAINED.wait_until(&mut g, end).timed_out() {
            return;
        }
    }
}

extern "C" fn drain_at_exit() {
    // Nothing may unwind out of an exit handler.
    let _ = std::panic::catch_unwind(|| drain(EXIT_DRAIN));
}

fn register_exit_drain() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: `drain_at_exit` is a plain function that stays valid for
        // the life of the process and catches every panic.
        unsafe {
            libc::atexit(drain_at_exit);
        }
    });
}

/// A `tracing` writer: gathers one event, queues it as one line when
/// dropped.
#[derive(Default)]
pub struct LineWriter {
    buf: Vec<u8>,
}

impl Write for LineWriter {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            push(std::mem::take(&mut self.buf));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_written_and_the_queue_drains() {
        push(b"log test line\n".to_vec());
        drain(Duration::from_secs(5));
        assert_eq!(QUEUED.load(Ordering::SeqCst), 0);
    }
}
