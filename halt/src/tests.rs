//! The halt sequence against a mock kernel: the order of the steps, what
//! each flag changes, a failed flush, and a halt during a halt. The ways a
//! halt leaves the process (exit, exit at once, abort for a core) unwind
//! here instead, carrying which one it was.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};

use netbsd_abi::errno::EIO;

use super::*;

/// A kernel that records what the halt asks of it.
#[derive(Default)]
struct Mock {
    calls: Mutex<Vec<String>>,
    /// What `sync_all` returns.
    flush_error: Option<Errno>,
    /// What `wait_idle` reports as still running.
    cut_off: usize,
    /// When set, `sync_all` says it started, then waits to be let go.
    started: Mutex<Option<Sender<()>>>,
    release: Mutex<Option<Receiver<()>>>,
}

impl Mock {
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
    fn record(&self, c: String) {
        self.calls.lock().unwrap().push(c);
    }
}

impl HaltTarget for Mock {
    fn stop_admitting(&self) {
        self.record("stop_admitting".into());
    }
    fn wait_idle(&self, timeout: Duration) -> usize {
        self.record(format!("wait_idle {timeout:?}"));
        self.cut_off
    }
    fn sync_all(&self) -> Result<(), Errno> {
        self.record("sync_all".into());
        if let Some(tx) = self.started.lock().unwrap().take() {
            tx.send(()).unwrap();
            let rx = self.release.lock().unwrap().take().expect("release");
            rx.recv().unwrap();
        }
        self.flush_error.map_or(Ok(()), Err)
    }
    fn quiesce(&self) {
        self.record("quiesce".into());
    }
    fn unflushed(&self) -> Vec<String> {
        self.record("unflushed".into());
        vec!["/dk: 3 dirty blocks".into()]
    }
    fn stop_serving(&self) {
        self.record("stop_serving".into());
    }
    fn fini(&self, client: ClientHandle, errno: i32) {
        self.record(format!("fini client {} errno {errno}", client.0));
    }
}

/// How the halt left the "process".
#[derive(Debug, PartialEq)]
enum End {
    Exit(i32),
    ExitNow(i32),
    Core,
}

fn exit(code: i32) -> ! {
    std::panic::panic_any(End::Exit(code))
}
fn exit_now(code: i32) -> ! {
    std::panic::panic_any(End::ExitNow(code))
}
fn core() -> ! {
    std::panic::panic_any(End::Core)
}
fn core_in_child() -> bool {
    true
}

const TEST_ENDS: Ends = Ends {
    exit,
    exit_now,
    dump_core: core,
    dump_core_in_child: core_in_child,
};

const CLIENT: Caller = Caller::Remote(ClientHandle(3));

/// Run a halt that must end the process; how it did.
fn ends(h: &Halt, k: &Mock, flags: i32, caller: Caller) -> End {
    match std::panic::catch_unwind(AssertUnwindSafe(|| {
        h.halt_with(k, flags, caller, &TEST_ENDS)
    })) {
        Ok(r) => panic!("flags {flags:#x}: the halt returned {r:?} instead of ending"),
        Err(p) => *p
            .downcast::<End>()
            .unwrap_or_else(|_| panic!("flags {flags:#x}: the halt panicked")),
    }
}

fn steps(drain: Duration, flush: bool, errno: i32) -> Vec<String> {
    let mut v = vec![
        "stop_admitting".to_string(),
        "stop_serving".into(),
        format!("wait_idle {drain:?}"),
    ];
    if flush {
        v.push("sync_all".into());
    } else {
        // -n says what it throws away.
        v.push("unflushed".into());
    }
    v.push(format!("fini client 3 errno {errno}"));
    v
}

#[test]
fn a_plain_halt_drains_flushes_answers_then_exits_0() {
    let (h, k) = (Halt::new(), Mock::default());
    assert!(!h.halting());
    assert_eq!(ends(&h, &k, 0, CLIENT), End::Exit(0));
    assert_eq!(k.calls(), steps(DRAIN_TIMEOUT, true, 0));
    assert!(h.halting() && !h.flush_failed() && !h.quiesced());
}

#[test]
fn a_failed_flush_reaches_the_caller_and_the_exit_status() {
    let k = Mock {
        flush_error: Some(Errno(EIO)),
        ..Mock::default()
    };
    let h = Halt::new();
    assert_eq!(ends(&h, &k, 0, CLIENT), End::Exit(1));
    assert_eq!(k.calls(), steps(DRAIN_TIMEOUT, true, EIO));
    assert!(h.flush_failed());

    // With -h the halt returns, and reboot(2) returns the flush error.
    let (h, k) = (
        Halt::new(),
        Mock {
            flush_error: Some(Errno(EIO)),
            ..Mock::default()
        },
    );
    let r = h
        .halt_with(&k, RB_HALT, CLIENT, &TEST_ENDS)
        .expect("-h returns");
    assert_eq!(r.flush, Some(Err(Errno(EIO))));
    assert_eq!(r.errno(), EIO);
    let mut want = steps(DRAIN_TIMEOUT, true, EIO);
    want.push("quiesce".into());
    assert_eq!(k.calls(), want);
    assert!(h.flush_failed() && h.quiesced());
}

#[test]
fn dash_n_skips_the_flush_and_drains_briefly() {
    let (h, k) = (Halt::new(), Mock::default());
    assert_eq!(ends(&h, &k, RB_NOSYNC, CLIENT), End::Exit(0));
    assert_eq!(k.calls(), steps(DRAIN_TIMEOUT_NOSYNC, false, 0));
    assert!(!h.flush_failed(), "a skipped flush is not a failed one");
}

#[test]
fn dash_d_dumps_core_after_answering() {
    let (h, k) = (Halt::new(), Mock::default());
    assert_eq!(ends(&h, &k, RB_DUMP, CLIENT), End::Core);
    assert_eq!(k.calls(), steps(DRAIN_TIMEOUT, true, 0));

    // -d -h: a child writes the core; this process quiesces and stays.
    let (h, k) = (Halt::new(), Mock::default());
    let r = h
        .halt_with(&k, RB_DUMP | RB_HALT, CLIENT, &TEST_ENDS)
        .expect("-d -h returns");
    assert_eq!(r.core_dumped, Some(true));
    assert!(h.quiesced());
    assert_eq!(k.calls().last().map(String::as_str), Some("quiesce"));
}

#[test]
fn dash_h_quiesces_and_returns_a_report() {
    let k = Mock {
        cut_off: 2,
        ..Mock::default()
    };
    let h = Halt::new();
    let r = h
        .halt_with(&k, RB_HALT, Caller::Local, &TEST_ENDS)
        .expect("-h returns");
    assert_eq!(r.flags, RB_HALT);
    assert_eq!(r.flush, Some(Ok(())));
    assert_eq!(r.cut_off, 2, "the syscalls the drain gave up on");
    assert_eq!(r.core_dumped, None);
    assert_eq!(r.errno(), 0);
    assert!(h.quiesced() && h.halting() && !h.flush_failed());
    let calls = k.calls();
    assert_eq!(
        calls[3..],
        ["sync_all", "fini client 0 errno 0", "quiesce"],
        "the host process's halt answers no client"
    );
}

#[test]
fn a_second_halt_after_the_first_gets_ebusy_and_does_nothing() {
    let (h, k) = (Halt::new(), Mock::default());
    h.halt_with(&k, RB_HALT, CLIENT, &TEST_ENDS).expect("-h");
    let before = k.calls().len();
    for flags in [0, RB_HALT, RB_NOSYNC, RB_NOSYNC | RB_HALT] {
        assert_eq!(
            h.halt_with(&k, flags, CLIENT, &TEST_ENDS).err(),
            Some(Errno(EBUSY)),
            "flags {flags:#x}"
        );
    }
    assert_eq!(k.calls().len(), before);
}

/// The first halt, on its own thread.
type FirstHalt = std::thread::JoinHandle<Result<HaltReport, Errno>>;

/// A halt held in its flush, on another thread: the halt state, the mock,
/// that thread, and the sender that lets the flush return.
fn halt_stuck_in_flush() -> (Arc<Halt>, Arc<Mock>, FirstHalt, Sender<()>) {
    let (started_tx, started_rx) = channel();
    let (release_tx, release_rx) = channel();
    let k = Arc::new(Mock {
        started: Mutex::new(Some(started_tx)),
        release: Mutex::new(Some(release_rx)),
        ..Mock::default()
    });
    let h = Arc::new(Halt::new());
    let first = {
        let (h, k) = (h.clone(), k.clone());
        std::thread::spawn(move || h.halt_with(&*k, RB_HALT, CLIENT, &TEST_ENDS))
    };
    started_rx.recv().expect("the first halt reaches its flush");
    (h, k, first, release_tx)
}

#[test]
fn a_halt_during_a_flush_gets_ebusy_and_dash_n_rescues() {
    let (h, k, first, release) = halt_stuck_in_flush();
    // Another ordinary halt waits its turn: EBUSY, nothing done.
    assert_eq!(
        h.halt_with(&*k, 0, CLIENT, &TEST_ENDS).err(),
        Some(Errno(EBUSY))
    );
    let before = k.calls().len();
    // -n overtakes it: says what was not flushed, answers its caller and
    // ends the process at once, with status 1 (the flush was skipped).
    let rescuer = Caller::Remote(ClientHandle(9));
    assert_eq!(ends(&h, &k, RB_NOSYNC, rescuer), End::ExitNow(1));
    assert_eq!(
        k.calls()[before..],
        ["unflushed", "stop_admitting", "fini client 9 errno 0"]
    );
    assert!(h.flush_failed());
    // Should the stuck flush ever return, the overtaken halt stops there.
    release.send(()).unwrap();
    assert_eq!(first.join().unwrap().err(), Some(Errno(EINTR)));
    assert!(
        !k.calls()
            .iter()
            .any(|c| c == "quiesce" || c.contains("client 3")),
        "the overtaken halt neither answers nor quiesces: {:?}",
        k.calls()
    );
}

#[test]
fn dash_n_dash_h_rescue_quiesces_and_returns() {
    let (h, k, first, release) = halt_stuck_in_flush();
    let r = h
        .halt_with(&*k, RB_NOSYNC | RB_HALT, Caller::Local, &TEST_ENDS)
        .expect("-n -h rescue returns");
    assert_eq!(r.flush, None);
    assert!(h.quiesced() && h.flush_failed());
    release.send(()).unwrap();
    assert_eq!(first.join().unwrap().err(), Some(Errno(EINTR)));
}

/// The events logged on this thread while `f` runs: level and message.
fn logged<R>(f: impl FnOnce() -> R) -> (R, Vec<(tracing::Level, String)>) {
    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata};

    struct Message(String);
    impl Visit for Message {
        fn record_debug(&mut self, f: &Field, v: &dyn std::fmt::Debug) {
            if f.name() == "message" {
                self.0 = format!("{v:?}");
            }
        }
    }
    struct Capture(Arc<Mutex<Vec<(tracing::Level, String)>>>);
    impl tracing::Subscriber for Capture {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, e: &Event<'_>) {
            let mut m = Message(String::new());
            e.record(&mut m);
            self.0.lock().unwrap().push((*e.metadata().level(), m.0));
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }
    let events = Arc::new(Mutex::new(Vec::new()));
    let r = tracing::subscriber::with_default(Capture(events.clone()), f);
    let v = events.lock().unwrap().clone();
    (r, v)
}

/// The verbosity is the halt's own value: its steps are info when
/// verbose and debug when not, and a failed flush is a warning either way.
#[test]
fn verbosity_is_a_value_that_sets_the_level_of_the_steps() {
    let failing = || Mock {
        flush_error: Some(Errno(EIO)),
        ..Mock::default()
    };
    for verbose in [false, true] {
        let (h, k) = (Halt::new().verbose(verbose), failing());
        let (r, events) = logged(|| h.halt_with(&k, RB_HALT, Caller::Local, &TEST_ENDS));
        assert_eq!(r.expect("-h returns").errno(), EIO);
        let at = |l: tracing::Level| -> Vec<&str> {
            events
                .iter()
                .filter(|(lv, _)| *lv == l)
                .map(|(_, m)| m.as_str())
                .collect()
        };
        let steps = [
            "halt: RB_HALT by the host process",
            "halt: kernel halted, host process stays up",
        ];
        let (shown, hidden) = if verbose {
            (tracing::Level::INFO, tracing::Level::DEBUG)
        } else {
            (tracing::Level::DEBUG, tracing::Level::INFO)
        };
        assert_eq!(at(shown), steps, "verbose {verbose}: {events:?}");
        assert!(at(hidden).is_empty(), "verbose {verbose}: {events:?}");
        assert_eq!(
            at(tracing::Level::WARN),
            ["halt: file system flush failed: Input/output error"],
            "verbose {verbose}"
        );
    }
}
