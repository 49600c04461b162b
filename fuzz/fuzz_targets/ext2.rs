//! Fuzz the ext2 component with untrusted images: mount a mutated small
//! image in memory and run lookups, listings, reads, stats, creates,
//! writes, links, renames, truncates, unlinks, sync and unmount. Nothing
//! may panic or hang (libFuzzer's -timeout catches work that is not
//! bounded by the image).
//!
//! Input: a first byte 0 or 1 picks the committed base image
//! (ext2/tests/data/rev1.img or rev0.img) and the rest is a list of
//! 5-byte edits (u32 little-endian offset, modulo the image size, then
//! the byte to store); any other first byte: the rest is a whole image.
#![no_main]

use libfuzzer_sys::fuzz_target;

use testkit::exercise;

const REV1: &[u8] = include_bytes!("../../ext2/tests/data/rev1.img");
const REV0: &[u8] = include_bytes!("../../ext2/tests/data/rev0.img");

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let img = match mode {
        0 | 1 => {
            let mut img = if mode == 0 { REV1.to_vec() } else { REV0.to_vec() };
            for e in rest.chunks_exact(5) {
                let off = u32::from_le_bytes([e[0], e[1], e[2], e[3]]) as usize % img.len();
                img[off] = e[4];
            }
            img
        }
        _ if rest.len() <= 4 << 20 => rest.to_vec(),
        _ => return,
    };
    let _ = exercise::exercise(&img);
});
