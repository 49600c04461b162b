//! Waiting for a condition, instead of sleeping for a time that is
//! usually enough: the test goes on as soon as the condition holds, and
//! fails, saying what it waited for, only after a generous deadline.

use std::time::{Duration, Instant};

/// How often a condition is polled.
const POLL: Duration = Duration::from_millis(2);

/// Poll `cond` until it holds, for at most `timeout`; whether it held.
pub fn poll_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// Wait until `cond` holds; panics naming `what` if it does not within
/// `timeout` (a deadline for a hang, not a latency bound: pick it
/// generous).
pub fn wait_until(what: &str, timeout: Duration, cond: impl FnMut() -> bool) {
    assert!(
        poll_until(timeout, cond),
        "timed out after {timeout:?} waiting until {what}"
    );
}

/// Wait until `f` returns `Some`, and return that; panics naming `what`
/// after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let mut got = None;
    wait_until(what, timeout, || {
        got = f();
        got.is_some()
    });
    got.expect("wait_until returned, so f gave a value")
}

/// Wait until file `path` (a log) holds `needle`, and return its text;
/// panics naming both, and showing the text, after `timeout`.
pub fn wait_for_text(path: &std::path::Path, needle: &str, timeout: Duration) -> String {
    let mut text = String::new();
    if !poll_until(timeout, || {
        text = std::fs::read_to_string(path).unwrap_or_default();
        text.contains(needle)
    }) {
        panic!(
            "timed out after {timeout:?} waiting until {} says {needle:?}; it has:\n{text}",
            path.display()
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[test]
    fn waits_for_another_thread() {
        let flag = Arc::new(AtomicBool::new(false));
        let f2 = flag.clone();
        let t = std::thread::spawn(move || f2.store(true, Ordering::SeqCst));
        wait_until("the flag is set", Duration::from_secs(20), || {
            flag.load(Ordering::SeqCst)
        });
        t.join().expect("setter");
        assert!(!poll_until(Duration::from_millis(10), || false));
        assert_eq!(wait_for("a value", Duration::from_secs(1), || Some(3)), 3);
        let d = crate::tmp::tmpdir("wait-text.");
        let log = d.path().join("log");
        let l2 = log.clone();
        let t = std::thread::spawn(move || std::fs::write(l2, "a\nready\n").expect("write"));
        assert!(wait_for_text(&log, "ready", Duration::from_secs(20)).contains("a\n"));
        t.join().expect("writer");
    }

    #[test]
    #[should_panic(expected = "waiting until never")]
    fn a_timeout_names_the_condition() {
        wait_until("never", Duration::from_millis(10), || false);
    }
}
