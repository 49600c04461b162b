//! What the fuzz targets run, as plain functions: the libFuzzer targets
//! (`fuzz_targets/`, `cargo fuzz run <name>`) call them with libFuzzer's
//! inputs, and `tests/corpus.rs` calls them with every file of the
//! committed corpus (`seeds/<name>/`), on stable Rust, in CI.

#![forbid(unsafe_code)]

use netbsd_abi::sp;
use testkit::exercise;

/// The sysproxy frame reader that both the server and the client library
/// use (`netbsd_abi::sp::reader`): arbitrary byte streams never panic,
/// never read past their end, and frames come out whole; plus the payload
/// decoders and the banner parser. Returns the number of whole frames
/// read.
pub fn frame(data: &[u8]) -> usize {
    let (frames, _end) = sp::reader::read_all(data);
    let total: usize = frames.iter().map(|(_, n)| sp::HDRSZ + n).sum();
    assert!(total <= data.len());
    for (h, n) in &frames {
        assert!(h.len <= sp::MAX_FRAME);
        assert_eq!(h.payload_len(), *n);
    }
    let _ = sp::SysResp::decode(data);
    let _ = sp::CopyData::decode(data);
    let _ = sp::HandshakeFork::decode(data);
    let _ = sp::parse_banner(data);
    frames.len()
}

const REV1: &[u8] = include_bytes!("../../ext2/tests/data/rev1.img");
const REV0: &[u8] = include_bytes!("../../ext2/tests/data/rev0.img");

/// The ext2 component with an untrusted image: mount a mutated small
/// image in memory and run lookups, listings, reads, stats, creates,
/// writes, links, renames, truncates, unlinks, sync and unmount. Nothing
/// may panic or hang.
///
/// Input: a first byte 0 or 1 picks the committed base image
/// (ext2/tests/data/rev1.img or rev0.img) and the rest is a list of
/// 5-byte edits (u32 little-endian offset, modulo the image size, then
/// the byte to store); any other first byte: the rest is a whole image.
/// Returns whether the image mounted (and was exercised).
pub fn ext2(data: &[u8]) -> bool {
    let Some((&mode, rest)) = data.split_first() else {
        return false;
    };
    let img = match mode {
        0 | 1 => {
            let mut img = if mode == 0 {
                REV1.to_vec()
            } else {
                REV0.to_vec()
            };
            for e in rest.chunks_exact(5) {
                let off = u32::from_le_bytes([e[0], e[1], e[2], e[3]]) as usize % img.len();
                img[off] = e[4];
            }
            img
        }
        _ if rest.len() <= 4 << 20 => rest.to_vec(),
        _ => return false,
    };
    exercise::exercise(&img).mounted
}
