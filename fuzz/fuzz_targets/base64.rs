//! qemu-ga's base64 decoding (character check, GLib's lenient decoder,
//! the strict fast path): never panics, never grows past 3/4 of the
//! input, and canonical input round-trips through a standard encoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qga_protocol::protocol::qbase64_decode;

fn encode(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(bytes) = qbase64_decode(text.to_string()) {
        assert!(bytes.len() <= text.len() / 4 * 3 + 3);
        let canonical = encode(&bytes);
        if canonical == text {
            assert_eq!(qbase64_decode(canonical.clone()).ok().as_deref(), Some(&bytes[..]));
        }
    }
    // Any byte string, encoded, decodes back to itself.
    let enc = encode(data);
    assert_eq!(qbase64_decode(enc).ok().as_deref(), Some(data));
});
