//! Fuzz the sysproxy frame reader that both the server and the client
//! library use (`netbsd_abi::sp::reader`): arbitrary byte streams never
//! panic, never read past their end, and frames come out whole; plus the
//! payload decoders and the banner parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netbsd_abi::sp;

fuzz_target!(|data: &[u8]| {
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
});
