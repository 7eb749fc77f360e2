//! QEMU's `qbase64_decode()`: a character check, then GLib's lenient
//! `g_base64_decode()` (padding mistakes are tolerated, a trailing partial
//! group is dropped, '=' counts as a zero digit).

use super::error::QgaError;

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

/// Decodes `input` (cut at a NUL, as a C string) or returns QEMU's error.
pub fn qbase64_decode(input: &str) -> Result<Vec<u8>, QgaError> {
    let bytes = input.as_bytes();
    let bytes = &bytes[..bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len())];
    if bytes.iter().any(|&b| RANK[b as usize] == INVALID && b != b'\n') {
        return Err(QgaError::generic("Base64 data contains invalid characters"));
    }
    if let Some(fast) = decode_canonical(bytes) {
        return Ok(fast);
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3 + 3);
    let (mut v, mut i) = (0u32, 0);
    let mut last0 = 0u8;
    for &c in bytes {
        let r = RANK[c as usize];
        if r == INVALID {
            continue;
        }
        let last1 = last0;
        last0 = c;
        v = (v << 6) | r as u32;
        i += 1;
        if i == 4 {
            out.push((v >> 16) as u8);
            if last1 != b'=' {
                out.push((v >> 8) as u8);
            }
            if last0 != b'=' {
                out.push(v as u8);
            }
            i = 0;
        }
    }
    Ok(out)
}

/// Canonical input (whole groups, padding only at the end, no newlines,
/// zero trailing bits) decodes the same under GLib's rules and the
/// base64 crate's strict ones, and the latter is several times faster.
fn decode_canonical(bytes: &[u8]) -> Option<Vec<u8>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glib_semantics() {
        assert_eq!(qbase64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(decode_canonical(b"aGVsbG8="), Some(b"hello".to_vec()));
        assert_eq!(decode_canonical(b"QQ==QUJD"), None);
        // Non-zero trailing bits: strict decoding refuses, GLib's accepts.
        assert_eq!(decode_canonical(b"QR=="), None);
        assert_eq!(qbase64_decode("QR==").unwrap(), b"A");
        assert_eq!(qbase64_decode("aGVs\nbG8=").unwrap(), b"hello");
        assert_eq!(qbase64_decode("aGVsbG8").unwrap(), b"hel"); // partial group dropped
        assert_eq!(qbase64_decode("").unwrap(), b"");
        assert_eq!(qbase64_decode("QQ==QUJD").unwrap(), b"AABC");
        assert_eq!(qbase64_decode("!!!").unwrap_err().desc, "Base64 data contains invalid characters");
        assert_eq!(qbase64_decode("aGVs\0!!").unwrap(), b"hel");
    }
}
