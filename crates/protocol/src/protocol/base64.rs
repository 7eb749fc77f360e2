//! QEMU's `qbase64_decode()`: a character check, then GLib's lenient
//! `g_base64_decode()` (padding mistakes are tolerated, a trailing partial
//! group is dropped, '=' counts as a zero digit). Canonical input, which
//! both decode alike, goes through the one-pass strict decoder first.

use super::error::QgaError;
use crate::json::base64::decode_strict_in_place;

const INVALID: u8 = 0xFF;

const fn rank_table() -> [u8; 256] {
    let mut t = [INVALID; 256];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut i = 0;
    while i < 64 {
        t[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    t[b'=' as usize] = 0;
    t
}

static RANK: [u8; 256] = rank_table();

/// The members whose long values the agent's framer decodes while they
/// arrive ([`Framer::decoding_members`](crate::json::Framer::decoding_members)):
/// guest-file-write's `buf-b64`, guest-exec's and guest-exec-input's
/// `input-data`. Their handlers take them with `Args::req_base64` /
/// `Args::opt_base64`.
pub const DECODED_MEMBERS: &[&str] = &["buf-b64", "input-data"];

/// A base64 string argument: its text, or the bytes the framer already
/// decoded from canonical text.
#[derive(Debug)]
pub enum Base64Arg {
    Text(String),
    Bytes(Vec<u8>),
}

impl Base64Arg {
    /// The bytes, as [`qbase64_decode`] gives them.
    pub fn decode(self) -> Result<Vec<u8>, QgaError> {
        match self {
            Base64Arg::Text(s) => qbase64_decode(s),
            Base64Arg::Bytes(b) => Ok(b),
        }
    }
}

/// Decodes `input` or returns QEMU's error (util/base64.c
/// `qbase64_decode()`, called with `in_len` -1). A NUL anywhere is an
/// invalid character: QEMU's JSON parser turns `\u0000` into the bytes
/// C0 80, which fail its `strspn()` check, so no NUL reaches the C string
/// to end it early. The bytes are decoded in place, into the text's own
/// buffer: a 5 MiB input-data costs no second buffer.
pub fn qbase64_decode(input: String) -> Result<Vec<u8>, QgaError> {
    let mut buf = input.into_bytes();
    // Canonical input (what clients send) in one pass. It decodes the same
    // under GLib's rules and the strict ones.
    let (read, written) = decode_strict_in_place(&mut buf);
    if read == buf.len() {
        buf.truncate(written);
        return Ok(buf);
    }
    // The decoded prefix was whole groups of alphabet characters (no NUL,
    // no '='), which GLib decodes alike and which carry no state into the
    // next group: the rest gets GLib's treatment from a fresh start.
    if buf[read..].iter().any(|&b| RANK[b as usize] == INVALID && b != b'\n') {
        return Err(QgaError::generic("Base64 data contains invalid characters"));
    }
    let text = read..buf.len();
    let end = glib_decode_in_place(&mut buf, text, written);
    buf.truncate(end);
    Ok(buf)
}

/// GLib's `g_base64_decode()` on `buf[text]`, already checked for invalid
/// characters, writing from `buf[out]` on (`out <= text.start`: every 3
/// bytes written follow 4 characters read, so the writes trail the reads).
/// Returns the end of the bytes written.
fn glib_decode_in_place(buf: &mut [u8], text: std::ops::Range<usize>, mut out: usize) -> usize {
    let (mut v, mut i) = (0u32, 0);
    let mut last0 = 0u8;
    for r in text {
        let c = buf[r];
        let rank = RANK[c as usize];
        if rank == INVALID {
            continue;
        }
        let last1 = last0;
        last0 = c;
        v = (v << 6) | rank as u32;
        i += 1;
        if i == 4 {
            buf[out] = (v >> 16) as u8;
            out += 1;
            if last1 != b'=' {
                buf[out] = (v >> 8) as u8;
                out += 1;
            }
            if last0 != b'=' {
                buf[out] = v as u8;
                out += 1;
            }
            i = 0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::base64::decode_strict;
    use crate::json::base64::tests::Rng;

    /// qbase64_decode before the one-pass fast path: four scans, then the
    /// base64 crate for canonical input, else GLib's decoder. (It also cut
    /// the text at a NUL; a NUL is an invalid character now in both.)
    fn old_qbase64_decode(input: &str) -> Result<Vec<u8>, QgaError> {
        let bytes = input.as_bytes();
        if bytes.iter().any(|&b| RANK[b as usize] == INVALID && b != b'\n') {
            return Err(QgaError::generic("Base64 data contains invalid characters"));
        }
        if let Some(fast) = old_decode_canonical(bytes) {
            return Ok(fast);
        }
        let mut buf = bytes.to_vec();
        let end = glib_decode_in_place(&mut buf, 0..bytes.len(), 0);
        buf.truncate(end);
        Ok(buf)
    }

    fn old_decode_canonical(bytes: &[u8]) -> Option<Vec<u8>> {
        use base64::Engine;
        if !bytes.len().is_multiple_of(4) || bytes.contains(&b'\n') {
            return None;
        }
        let body = bytes.strip_suffix(b"==").or_else(|| bytes.strip_suffix(b"=")).unwrap_or(bytes);
        if body.contains(&b'=') {
            return None;
        }
        base64::engine::general_purpose::STANDARD.decode(bytes).ok()
    }

    #[test]
    fn glib_semantics() {
        assert_eq!(qbase64_decode("aGVsbG8=".into()).unwrap(), b"hello");
        assert_eq!(decode_strict(b"aGVsbG8="), Some(b"hello".to_vec()));
        assert_eq!(decode_strict(b"QQ==QUJD"), None);
        // Non-zero trailing bits: strict decoding refuses, GLib's accepts.
        assert_eq!(decode_strict(b"QR=="), None);
        assert_eq!(qbase64_decode("QR==".into()).unwrap(), b"A");
        assert_eq!(qbase64_decode("aGVs\nbG8=".into()).unwrap(), b"hello");
        assert_eq!(qbase64_decode("aGVsbG8".into()).unwrap(), b"hel"); // partial group dropped
        assert_eq!(qbase64_decode("".into()).unwrap(), b"");
        assert_eq!(qbase64_decode("QQ==QUJD".into()).unwrap(), b"AABC");
        assert_eq!(qbase64_decode("!!!".into()).unwrap_err().desc, "Base64 data contains invalid characters");
    }

    /// A NUL (`\u0000` on the wire) is an invalid character wherever it
    /// is, as the C0 80 QEMU's parser makes of it; it used to end the text.
    #[test]
    fn a_nul_is_an_invalid_character() {
        let invalid = "Base64 data contains invalid characters";
        for text in
            ["aGVsbG8=\0", "aGVs\0bG8=", "\0", "\0aGVsbG8=", "aGVs\0!!", "aGVsbG8=\0QQ==", "aGVsbG8\0=", "QR==\0"]
        {
            assert_eq!(qbase64_decode(text.into()).unwrap_err().desc, invalid, "{text:?}");
        }
        // A canonical prefix as long as the fast path reads at a time.
        let long = format!("{}\0", "QUJD".repeat(1000));
        assert_eq!(qbase64_decode(long).unwrap_err().desc, invalid);
    }

    #[test]
    fn same_results_as_the_old_implementation() {
        use base64::Engine;
        let mut rng = Rng(0x51_7CC1_B727_220A);
        let odd = ["\n", "=", "==", "\0", "!", " ", "-", "_", "\u{e9}", "\r", "\0!"];
        for i in 0..5000 {
            let len = rng.below(if i % 100 == 0 { 5000 } else { 80 });
            let data = rng.bytes(len);
            let mut text = base64::engine::general_purpose::STANDARD.encode(&data);
            // Left canonical one time in four; otherwise one to three changes.
            if i % 4 != 0 {
                for _ in 0..1 + rng.below(3) {
                    let at = rng.below(text.len() + 1);
                    let at = (0..=at).rev().find(|&k| text.is_char_boundary(k)).unwrap_or(0);
                    match rng.below(5) {
                        0 => text.insert_str(at, odd[rng.below(odd.len())]),
                        1 if at < text.len() && text.is_char_boundary(at + 1) => {
                            let c = b"AQgw/+=\n\0!"[rng.below(10)] as char;
                            text.replace_range(at..at + 1, c.encode_utf8(&mut [0; 4]));
                        }
                        2 => text.truncate(at),
                        // Non-zero padding bits, when padded.
                        3 if text.ends_with('=') => {
                            if let Some((k, last)) = text.trim_end_matches('=').char_indices().last() {
                                let c =
                                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[rng.below(64)];
                                text.replace_range(k..k + last.len_utf8(), (c as char).encode_utf8(&mut [0; 4]));
                            }
                        }
                        _ => text.push_str(odd[rng.below(3)]),
                    }
                }
            }
            assert_eq!(qbase64_decode(text.clone()), old_qbase64_decode(&text), "{text:?}");
        }
    }
}
