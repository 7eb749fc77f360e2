//! QEMU's "modified UTF-8" rules (`util/unicode.c`): which byte sequences
//! and code points its JSON parser and writer accept.

/// QEMU's `is_valid_codepoint`: in range, not a surrogate, not a noncharacter.
pub fn is_valid_codepoint(cp: u32) -> bool {
    cp <= 0x10FFFF && !(0xFDD0..=0xFDEF).contains(&cp) && (cp & 0xFFFE) != 0xFFFE && !(0xD800..=0xDFFF).contains(&cp)
}

/// QEMU's `mod_utf8_codepoint`: decodes one sequence at the start of `s`
/// (which must be non-empty). Returns the code point (or `None` for an
/// invalid sequence) and the number of bytes consumed. `C0 80` decodes to
/// U+0000, as in Java's modified UTF-8.
pub fn decode(s: &[u8]) -> (Option<u32>, usize) {
    const MIN_CP: [u32; 5] = [0x80, 0x800, 0x10000, 0x200000, 0x4000000];
    let byte = s[0] as u32;
    if byte < 0x80 {
        return (Some(byte), 1);
    }
    if byte >= 0xFE || byte & 0x40 == 0 {
        return (None, 1);
    }
    let len = (byte as u8).leading_ones() as usize;
    let mut cp = byte & ((0x80u32 >> len) - 1);
    for i in 1..len {
        match s.get(i) {
            Some(&b) if b & 0xC0 == 0x80 => cp = (cp << 6) | (b as u32 & 0x3F),
            _ => return (None, i),
        }
    }
    let overlong = cp < MIN_CP[len - 2] && !(cp == 0 && len == 2);
    if cp > 0x10FFFF || !is_valid_codepoint(cp) || overlong {
        return (None, len);
    }
    (Some(cp), len)
}

/// The bytes QEMU holds for a string it parsed: its JSON parser stores
/// U+0000 (`\u0000`) as the modified-UTF-8 pair `C0 80`, so the C string
/// is never cut there. Every other character is plain UTF-8.
pub fn mod_utf8_bytes(s: &str) -> impl Iterator<Item = u8> + '_ {
    s.bytes().flat_map(|b| {
        let pair = if b == 0 { [0xC0, 0x80] } else { [b, 0] };
        pair.into_iter().take(if b == 0 { 2 } else { 1 })
    })
}

/// [`mod_utf8_bytes`] collected: what QEMU passes to C functions (execve
/// arguments, paths, environment entries) for this string.
pub fn to_mod_utf8(s: &str) -> Vec<u8> {
    if !s.as_bytes().contains(&0) {
        return s.as_bytes().to_vec();
    }
    mod_utf8_bytes(s).collect()
}

/// [`to_mod_utf8`] as a C string: what qemu-ga passes to `execve()`,
/// `open()` and `setenv()` for a protocol string. Never fails (the
/// modified-UTF-8 form has no NUL byte).
pub fn to_c_string(s: &str) -> std::ffi::CString {
    let bytes = to_mod_utf8(s);
    std::ffi::CString::new(bytes).unwrap_or_default()
}

/// Turns bytes that QEMU would print with `%s` into the text its JSON
/// writer would show: stops at a NUL byte (C string) and maps every invalid
/// sequence to U+FFFD.
pub fn lossy_c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let bytes = &bytes[..end];
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let (cp, n) = decode(&bytes[i..]);
        out.push(cp.and_then(char::from_u32).unwrap_or('\u{FFFD}'));
        i += n;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_like_qemu() {
        assert_eq!(decode(b"a"), (Some(0x61), 1));
        assert_eq!(decode("é".as_bytes()), (Some(0xE9), 2));
        assert_eq!(decode("😀".as_bytes()), (Some(0x1F600), 4));
        assert_eq!(decode(b"\xC0\x80"), (Some(0), 2));
        assert_eq!(decode(b"\xC1\x81"), (None, 2)); // overlong
        assert_eq!(decode(b"\xFF"), (None, 1));
        assert_eq!(decode(b"\x80"), (None, 1));
        assert_eq!(decode(b"\xE2\x82"), (None, 2)); // truncated
        assert_eq!(decode(b"\xED\xA0\x80"), (None, 3)); // surrogate
        assert_eq!(decode(b"\xEF\xBF\xBF"), (None, 3)); // U+FFFF
    }

    #[test]
    fn nul_is_c0_80_as_in_qemu_strings() {
        assert_eq!(to_mod_utf8("a\0b"), b"a\xC0\x80b");
        assert_eq!(to_mod_utf8("plain é"), "plain é".as_bytes());
        assert_eq!(mod_utf8_bytes("\0\0").collect::<Vec<_>>(), [0xC0, 0x80, 0xC0, 0x80]);
        // and it decodes back to U+0000, as QEMU's writer sees it
        assert_eq!(decode(&to_mod_utf8("\0")), (Some(0), 2));
        assert_eq!(to_c_string("a\0b").as_bytes(), b"a\xC0\x80b");
        assert_eq!(to_c_string("").as_bytes(), b"");
    }

    #[test]
    fn lossy_stops_at_nul_and_replaces() {
        assert_eq!(lossy_c_string(b"\"gue\xFF"), "\"gue\u{FFFD}");
        assert_eq!(lossy_c_string(b"ab\0cd"), "ab");
    }
}
