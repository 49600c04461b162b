//! Fuzz the sysproxy frame decoder: arbitrary bytes never panic, and any
//! frame accepted re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netbsd_abi::sp;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok((f, used)) = sp::decode_frame(rest) {
        assert!(used >= sp::HDRSZ && used <= rest.len());
        assert!(f.hdr.len <= sp::MAX_FRAME);
        let again = sp::encode_frame(f.hdr.class, f.hdr.ty, f.hdr.reqno, f.hdr.arg, &[f.payload]);
        if f.hdr.class != sp::Class::Error {
            assert_eq!(&again[..], &rest[..used]);
        }
        let _ = sp::SysResp::decode(f.payload);
        let _ = sp::CopyData::decode(f.payload);
        let _ = sp::HandshakeFork::decode(f.payload);
        rest = &rest[used..];
    }
    let _ = sp::parse_banner(data);
});
