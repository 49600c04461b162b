//! Latency bounds that follow the machine. A test that asserts "this took
//! less than N seconds" passes or fails with the load on a shared
//! builder; instead it measures a baseline — the same kind of work on a
//! healthy path, in the same test, moments before — and bounds the
//! operation under test by a multiple of it.

use std::time::{Duration, Instant};

/// Run `f`; its result and how long it took.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let r = f();
    (r, t.elapsed())
}

/// The bound for an operation that should cost about what `baseline`
/// cost: `factor` times it, and never less than `floor` (so a baseline
/// that happened to be very fast does not make the bound a coin toss).
/// On a loaded machine the baseline grows and the bound with it.
pub fn bound(baseline: Duration, factor: u32, floor: Duration) -> Duration {
    (baseline * factor).max(floor)
}

/// Assert that `took` is within [`bound`]`(baseline, factor, floor)`,
/// saying what took how long against which baseline.
pub fn assert_within(what: &str, took: Duration, baseline: Duration, factor: u32, floor: Duration) {
    let b = bound(baseline, factor, floor);
    assert!(
        took <= b,
        "{what} took {took:?}: more than {b:?} ({factor} × the baseline {baseline:?}, at least {floor:?})"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_scales_with_the_baseline() {
        let ms = Duration::from_millis;
        assert_eq!(bound(ms(1), 10, ms(100)), ms(100));
        assert_eq!(bound(ms(50), 10, ms(100)), ms(500));
        assert_within("fast", ms(400), ms(50), 10, ms(100));
        let e = std::panic::catch_unwind(|| assert_within("slow", ms(600), ms(50), 10, ms(100)));
        assert!(e.is_err(), "600 ms is over 10 × 50 ms");
        // Not synchronization: a known duration for timed() to measure.
        let ((), t) = timed(|| std::thread::sleep(ms(5)));
        assert!(t >= ms(5));
    }
}
