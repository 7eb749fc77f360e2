//! Standard base64 ('=' padded): encoding byte-identical to the `base64`
//! crate's `STANDARD` engine, and strict decoding that accepts exactly what
//! that engine accepts. It exists for TCG guests, where base64 of captured
//! output and of `input-data`/file data is the agent's biggest user-space
//! cost and every guest memory access costs many host instructions: both
//! directions are written for the fewest loads and stores per byte (wide
//! loads and stores, two characters per table lookup when encoding, the
//! validity check folded into the decoding lookups), not for the fewest
//! instructions. Plain scalar code: emulated SIMD is slow.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// The encoding table (8 KiB): the two characters of every 12-bit value,
/// the first in the low byte. Built on first use rather than stored in the
/// binary (the static musl build has a size budget; building takes
/// microseconds).
fn pairs() -> &'static [u16; 4096] {
    static PAIRS: std::sync::OnceLock<Box<[u16; 4096]>> = std::sync::OnceLock::new();
    PAIRS.get_or_init(|| Box::new(std::array::from_fn(|i| ALPHABET[i >> 6] as u16 | (ALPHABET[i & 63] as u16) << 8)))
}

/// Set in a decoded group when one of its characters is not in the alphabet.
const BAD: u32 = 0xFF00_0000;

/// The decoding tables (4 KiB, built on the first decode): per position in
/// a 4-character group, the character's 6 bits already shifted and
/// byte-swapped so that OR-ing the four entries gives the 3 bytes in
/// order (bits 0..24), or [`BAD`] bits. One page: a 128 KiB table of
/// character pairs (half the lookups) was faster under qemu-user but not
/// in a TCG guest (perf of a push: 18.7 % of the agent's CPU in decoding
/// with it, 17.6 % with these), where every system call flushes the
/// emulated TLB and the decoding runs after each 4 KiB read.
fn decode_tables() -> &'static [[u32; 256]; 4] {
    static DECODE: std::sync::OnceLock<Box<[[u32; 256]; 4]>> = std::sync::OnceLock::new();
    DECODE.get_or_init(|| {
        // Invalid characters: all ones, BAD bits included.
        let mut t = Box::new([[u32::MAX; 256]; 4]);
        for (i, &c) in ALPHABET.iter().enumerate() {
            for (k, row) in t.iter_mut().enumerate() {
                row[c as usize] = (((i as u32) << (18 - 6 * k)) << 8).swap_bytes();
            }
        }
        t
    })
}

type Tables = [[u32; 256]; 4];

/// The 3 bytes of 4 characters (a little-endian word of them) in the low
/// 24 bits, in order, or None if one is not in the alphabet.
#[inline(always)]
fn decode4(t: &Tables, x: u32) -> Option<u32> {
    let g = t[0][(x & 0xFF) as usize]
        | t[1][(x >> 8 & 0xFF) as usize]
        | t[2][(x >> 16 & 0xFF) as usize]
        | t[3][(x >> 24) as usize];
    (g & BAD == 0).then_some(g)
}

/// The 6 bytes of 8 characters (a little-endian word of them) in the low
/// 48 bits, in order, or None if one is not in the alphabet.
#[inline(always)]
fn decode8(t: &Tables, x: u64) -> Option<u64> {
    let g = |x: u64| {
        (t[0][(x & 0xFF) as usize]
            | t[1][(x >> 8 & 0xFF) as usize]
            | t[2][(x >> 16 & 0xFF) as usize]
            | t[3][(x >> 24 & 0xFF) as usize]) as u64
    };
    let (lo, hi) = (g(x), g(x >> 32));
    ((lo | hi) & BAD as u64 == 0).then_some(lo | hi << 24)
}

/// Length of the encoding of `n` bytes, padding included.
pub const fn encoded_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// The 8 characters of 48 bits, as a little-endian word.
#[inline(always)]
fn chars8(pairs: &[u16; 4096], g: u64) -> u64 {
    let pair = |shift: u32| pairs[((g >> shift) & 0xFFF) as usize] as u64;
    pair(36) | pair(24) << 16 | pair(12) << 32 | pair(0) << 48
}

#[inline(always)]
fn be64(b: &[u8]) -> u64 {
    u64::from_be_bytes(b[..8].try_into().unwrap_or([0; 8]))
}

#[inline(always)]
fn le64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[..8].try_into().unwrap_or([0; 8]))
}

#[inline(always)]
fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes(b[..4].try_into().unwrap_or([0; 4]))
}

/// Encodes `src` into the start of `out` and returns the length written,
/// [`encoded_len`]`(src.len())`. Panics if `out` is shorter than that.
pub fn encode_into(src: &[u8], out: &mut [u8]) -> usize {
    let n = encoded_len(src.len());
    let pairs = pairs();
    let blocks = src.len() / 24;
    let (src_main, src_tail) = src.split_at(blocks * 24);
    let (out_main, out_tail) = out[..n].split_at_mut(blocks * 32);
    // 24 bytes per step: three loads, 16 lookups, four stores.
    for (s, d) in src_main.chunks_exact(24).zip(out_main.chunks_exact_mut(32)) {
        let (a, b, c) = (be64(&s[0..8]), be64(&s[8..16]), be64(&s[16..24]));
        let g = [a >> 16, (a << 32 | b >> 32) & 0xFFFF_FFFF_FFFF, (b << 16 | c >> 48) & 0xFFFF_FFFF_FFFF, c];
        for (g, d) in g.into_iter().zip(d.chunks_exact_mut(8)) {
            d.copy_from_slice(&chars8(pairs, g).to_le_bytes());
        }
    }
    let groups = src_tail.chunks_exact(3);
    let last = groups.remainder();
    let mut outs = out_tail.chunks_exact_mut(4);
    for (s, d) in groups.zip(outs.by_ref()) {
        let g = (s[0] as usize) << 16 | (s[1] as usize) << 8 | s[2] as usize;
        let w = pairs[(g >> 12) & 0xFFF] as u32 | (pairs[g & 0xFFF] as u32) << 16;
        d.copy_from_slice(&w.to_le_bytes());
    }
    if let Some(d) = outs.next() {
        let g = match *last {
            [x] => (x as usize) << 16,
            [x, y] => (x as usize) << 16 | (y as usize) << 8,
            _ => 0,
        };
        let third = if last.len() == 2 { ALPHABET[(g >> 6) & 63] } else { b'=' };
        let [c0, c1] = pairs[(g >> 12) & 0xFFF].to_le_bytes();
        d.copy_from_slice(&[c0, c1, third, b'=']);
    }
    n
}

/// Appends `src` as base64 text to `out`.
pub fn encode_append(out: &mut Vec<u8>, src: &[u8]) {
    let start = out.len();
    out.resize(start + encoded_len(src.len()), 0);
    encode_into(src, &mut out[start..]);
}

/// Decodes canonical base64 (the `base64` crate's `STANDARD` engine rules:
/// length a multiple of 4, alphabet characters only, '=' only as the last
/// one or two characters, zero padding bits) in place: the bytes are
/// written over the text they come from, never ahead of the text still to
/// be read. It stops before the first group that breaks the rules.
///
/// Returns (characters read, bytes written): `read == buf.len()` means all
/// of it was canonical. Otherwise `buf[..written]` holds the bytes of the
/// canonical groups `read` covered (whole groups, no '=') and
/// `buf[read..]` is still the original text.
pub fn decode_strict_in_place(buf: &mut [u8]) -> (usize, usize) {
    let len = buf.len();
    if len == 0 {
        return (0, 0);
    }
    // Every group but the last one, which may be padded.
    let body_len = (len / 4).saturating_sub(1) * 4;
    let t = decode_tables();
    let (mut r, mut w) = (0, 0);
    // 16 characters per step: two loads, 16 lookups, a check, two stores.
    // Longer steps measured slower in a TCG guest: the loop no longer fits
    // in registers, and every spill is one more emulated memory access.
    while r + 16 <= body_len {
        let (Some(x), Some(y)) = (decode8(t, le64(&buf[r..r + 8])), decode8(t, le64(&buf[r + 8..r + 16]))) else {
            break;
        };
        // w + 12 <= r + 12: the text at r + 16 and on is untouched.
        buf[w..w + 8].copy_from_slice(&(x | y << 48).to_le_bytes());
        buf[w + 8..w + 12].copy_from_slice(&((y >> 16) as u32).to_le_bytes());
        r += 16;
        w += 12;
    }
    while r + 4 <= body_len {
        let Some(g) = decode4(t, le32(&buf[r..r + 4])) else {
            return (r, w);
        };
        buf[w..w + 3].copy_from_slice(&g.to_le_bytes()[..3]);
        r += 4;
        w += 3;
    }
    if r < body_len || !len.is_multiple_of(4) {
        return (r, w);
    }
    // The last group.
    match decode_last(t, [buf[r], buf[r + 1], buf[r + 2], buf[r + 3]]) {
        Some((g, n)) => {
            buf[w..w + n].copy_from_slice(&g[..n]);
            (len, w + n)
        }
        None => (r, w),
    }
}

/// A string's last group: 1 to 3 bytes, or None if it is not canonical
/// (a character outside the alphabet, '=' elsewhere than the last one or
/// two places, non-zero bits under the padding). '=' decodes as BAD unless
/// replaced by 'A' (zero) where padding is allowed.
fn decode_last(t: &Tables, last: [u8; 4]) -> Option<([u8; 4], usize)> {
    let (n, pad_mask, word) = match last {
        [a, b, b'=', b'='] => (1, 0x00FF_FF00, [a, b, b'A', b'A']),
        [a, b, c, b'='] => (2, 0x00FF_0000, [a, b, c, b'A']),
        _ => (3, 0, last),
    };
    let g = decode4(t, u32::from_le_bytes(word))?;
    (g & pad_mask == 0).then_some((g.to_le_bytes(), n))
}

/// Decodes whole groups of alphabet characters from the start of `src`
/// (no padding) and appends their bytes to `dst`; stops before the first
/// group with another character, or with fewer than 4 characters left.
/// Returns the characters read (a multiple of 4). A long base64 string is
/// decoded this way while it arrives: one pass, no copy of its text.
pub fn decode_groups_append(src: &[u8], dst: &mut Vec<u8>) -> usize {
    let t = decode_tables();
    dst.reserve(src.len() / 4 * 3);
    let mut r = 0;
    while r + 16 <= src.len() {
        let (Some(x), Some(y)) = (decode8(t, le64(&src[r..r + 8])), decode8(t, le64(&src[r + 8..r + 16]))) else {
            break;
        };
        let mut out = [0u8; 12];
        out[..8].copy_from_slice(&(x | y << 48).to_le_bytes());
        out[8..].copy_from_slice(&((y >> 16) as u32).to_le_bytes());
        dst.extend_from_slice(&out);
        r += 16;
    }
    while r + 4 <= src.len() {
        let Some(g) = decode4(t, le32(&src[r..r + 4])) else {
            break;
        };
        dst.extend_from_slice(&g.to_le_bytes()[..3]);
        r += 4;
    }
    r
}

/// The bytes of a string's last group (1 to 3 of the 4), or None if it is
/// not canonical; see [`decode_strict_in_place`].
pub fn decode_last_group(last: [u8; 4]) -> Option<([u8; 4], usize)> {
    decode_last(decode_tables(), last)
}

/// [`decode_strict_in_place`] on a copy: the bytes, or None if `src` is
/// not canonical (the tests' view of the decoder).
#[cfg(test)]
pub(crate) fn decode_strict(src: &[u8]) -> Option<Vec<u8>> {
    let mut buf = src.to_vec();
    let (read, written) = decode_strict_in_place(&mut buf);
    (read == buf.len()).then(|| {
        buf.truncate(written);
        buf
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use base64::Engine;

    const STD: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

    /// xorshift64*, seeded: reproducible "random" test data.
    pub(crate) struct Rng(pub u64);
    impl Rng {
        pub fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        pub fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        pub fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    fn check_encode(data: &[u8]) {
        let want = STD.encode(data);
        let mut got = b"prefix".to_vec();
        encode_append(&mut got, data);
        assert_eq!(&got[..6], b"prefix");
        assert_eq!(String::from_utf8_lossy(&got[6..]), want, "len {}", data.len());
        // Writes exactly its length into a larger buffer.
        let mut out = vec![b'#'; want.len() + 9];
        assert_eq!(encode_into(data, &mut out), want.len());
        assert_eq!(&out[..want.len()], want.as_bytes());
        assert!(out[want.len()..].iter().all(|&b| b == b'#'));
    }

    #[test]
    fn encode_matches_the_crate() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for len in 0..=64 {
            check_encode(&rng.bytes(len));
            check_encode(&vec![0xFF; len]);
            check_encode(&vec![0; len]);
        }
        for _ in 0..200 {
            let len = rng.below(100_001);
            check_encode(&rng.bytes(len));
        }
        let all: Vec<u8> = (0..=255).collect();
        check_encode(&all);
    }

    fn check_decode(text: &[u8]) {
        assert_eq!(decode_strict(text), STD.decode(text).ok(), "{:?}", String::from_utf8_lossy(text));
    }

    #[test]
    fn decode_matches_the_crate_on_valid_input() {
        let mut rng = Rng(42);
        for len in 0..=200 {
            let data = rng.bytes(len);
            let text = STD.encode(&data);
            assert_eq!(decode_strict(text.as_bytes()).as_deref(), Some(&data[..]), "len {len}");
        }
        for _ in 0..200 {
            let len = rng.below(100_001);
            let data = rng.bytes(len);
            assert_eq!(decode_strict(STD.encode(&data).as_bytes()), Some(data));
        }
        // Every character at every position of a block and of the tail.
        let text: Vec<u8> = (0..40 * 4).map(|i| ALPHABET[(i * 7 + i / 64) % 64]).collect();
        for (i, _) in text.iter().enumerate() {
            for &c in ALPHABET {
                let mut t = text.clone();
                t[i] = c;
                check_decode(&t);
            }
        }
    }

    #[test]
    fn decode_refuses_what_the_crate_refuses() {
        for bad in
            [&b"Q"[..], b"QQ", b"QQ=", b"QQQ", b"QQQQQ", b"QQ==QUJD", b"Q===", b"====", b"QR==", b"QUI=", b"QUJ="]
        {
            check_decode(bad);
        }
        assert_eq!(decode_strict(b"QR=="), None);
        assert_eq!(decode_strict(b"QUJ="), None);
        assert_eq!(decode_strict(b"QUI="), Some(b"AB".to_vec()));
        assert_eq!(decode_strict(b"aGVs\0G8="), None);
        assert_eq!(decode_strict(b"aGVsbG8=\0\0\0\0"), None);
        // Every byte outside the alphabet, at positions in a 16-character
        // block, in a 4-character group after the blocks and in the last group.
        let text = STD.encode(vec![0x5A; 30]).into_bytes(); // 40 characters, no padding
        for b in 0..=255u8 {
            if ALPHABET.contains(&b) {
                continue;
            }
            for i in [0, 1, 5, 7, 8, 15, 16, 24, 31, 32, 33, 34, 35, 36, 37, 38, 39] {
                let mut t = text.clone();
                t[i] = b;
                assert_eq!(decode_strict(&t), None, "byte {b} at {i}");
                if b == b'=' {
                    check_decode(&t);
                }
            }
        }
        // Padding forms and '=' placements over all short strings of a few characters.
        for (chars, max) in [(&b"AQgw/+=\0"[..], 6), (b"AQ=\0", 8)] {
            for len in 0..=max {
                for mut k in 0..chars.len().pow(len as u32) {
                    let t: Vec<u8> = (0..len)
                        .map(|_| {
                            let c = chars[k % chars.len()];
                            k /= chars.len();
                            c
                        })
                        .collect();
                    check_decode(&t);
                }
            }
        }
    }

    #[test]
    fn decode_never_panics_and_agrees_on_random_bytes() {
        let mut rng = Rng(7);
        let mut from = |n: usize, set: &[u8]| -> Vec<u8> { (0..n).map(|_| set[rng.below(set.len())]).collect() };
        let mut set: Vec<u8> = ALPHABET.to_vec();
        set.extend_from_slice(b"==");
        for n in 0..3000 {
            let raw: Vec<u8> = from(n % 97, &(0..=255).collect::<Vec<u8>>());
            check_decode(&raw);
            let mut t = from(n % 150, &set);
            check_decode(&t);
            t.truncate(t.len() / 4 * 4);
            check_decode(&t);
        }
    }
}
