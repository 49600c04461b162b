//! Fuzz the ext2 component with untrusted images (see
//! `sysproxy_fuzz::ext2` for the input format). libFuzzer's -timeout
//! catches work that is not bounded by the image.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sysproxy_fuzz::ext2(data);
});
