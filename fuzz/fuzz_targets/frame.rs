//! Fuzz the sysproxy frame reader (see `sysproxy_fuzz::frame`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sysproxy_fuzz::frame(data);
});
