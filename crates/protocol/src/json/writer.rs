//! Serialisation exactly as QEMU's `qobject/json-writer.c` (non-pretty):
//! `", "` between members, `": "` after keys, strings escaped to ASCII with
//! upper-case `\uXXXX`, doubles as `%.17g`, and object members in QDict
//! iteration order so replies can be diffed byte for byte with qemu-ga's.

use super::base64::encode_append;
use super::segments::Segments;
use super::utf8::{is_valid_codepoint, mod_utf8_bytes};
use super::value::{Object, Value};
use std::rc::Rc;

/// Number of hash buckets of QEMU's QDict (`QDICT_BUCKET_MAX`).
const QDICT_BUCKETS: u32 = 512;

/// QEMU's `tdb_hash` modulo the bucket count: the bucket a key lands in.
/// The key is hashed as QEMU holds it: modified UTF-8 (U+0000 as `C0 80`).
pub fn qdict_bucket(key: &str) -> u32 {
    fn tdb_hash(len: usize, bytes: impl Iterator<Item = u8>) -> u32 {
        let mut value: u32 = 0x238F13AFu32.wrapping_mul(len as u32);
        for (i, b) in bytes.enumerate() {
            value = value.wrapping_add((b as u32) << ((i * 5) % 24));
        }
        1103515243u32.wrapping_mul(value).wrapping_add(12345) % QDICT_BUCKETS
    }
    let nuls = key.bytes().filter(|&b| b == 0).count();
    if nuls == 0 {
        tdb_hash(key.len(), key.bytes())
    } else {
        tdb_hash(key.len() + nuls, mod_utf8_bytes(key))
    }
}

/// The positions of `keys` (in insertion order) in QDict iteration order
/// (`qdict_first()`/`qdict_next()`): buckets upwards, and inside a bucket
/// the newest entry first (QDict inserts at the head of a bucket's
/// list). The one ordering the writer, the envelope check and the argument
/// visitor share; (bucket, position from the end) packed in one `u64`.
pub fn qdict_order<'k>(keys: impl Iterator<Item = &'k str>) -> Vec<usize> {
    let mut packed: Vec<u64> =
        keys.enumerate().map(|(i, k)| (u64::from(qdict_bucket(k)) << 32) | u64::from(u32::MAX - i as u32)).collect();
    packed.sort_unstable();
    packed.into_iter().map(|p| (u32::MAX - p as u32) as usize).collect()
}

/// Where serialised bytes go: a plain buffer, or [`Segments`] that keep
/// large base64 strings raw until they are sent.
pub trait Sink {
    fn push(&mut self, b: u8);
    fn extend_from_slice(&mut self, b: &[u8]);
    /// A base64 string, quotes included.
    fn base64_string(&mut self, data: &Rc<Vec<u8>>);
}

impl Sink for Vec<u8> {
    fn push(&mut self, b: u8) {
        Vec::push(self, b);
    }
    fn extend_from_slice(&mut self, b: &[u8]) {
        Vec::extend_from_slice(self, b);
    }
    fn base64_string(&mut self, data: &Rc<Vec<u8>>) {
        write_base64(self, data);
    }
}

impl Sink for Segments {
    fn push(&mut self, b: u8) {
        Segments::push(self, b);
    }
    fn extend_from_slice(&mut self, b: &[u8]) {
        Segments::extend_from_slice(self, b);
    }
    fn base64_string(&mut self, data: &Rc<Vec<u8>>) {
        Segments::push(self, b'"');
        self.base64(data);
        Segments::push(self, b'"');
    }
}

/// Appends the serialisation of `value` to `out`.
pub fn write_value<S: Sink + ?Sized>(out: &mut S, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Int(i) => out.extend_from_slice(i.to_string().as_bytes()),
        Value::UInt(u) => out.extend_from_slice(u.to_string().as_bytes()),
        Value::Float(f) => write_double(out, *f),
        Value::Str(s) => write_str(out, s),
        Value::Base64(bytes) => out.base64_string(bytes),
        Value::List(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.extend_from_slice(b", ");
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(obj) => write_object(out, obj),
    }
}

fn write_object<S: Sink + ?Sized>(out: &mut S, obj: &Object) {
    let members: Vec<(&str, &Value)> = obj.iter().collect();
    out.push(b'{');
    for (n, i) in qdict_order(members.iter().map(|m| m.0)).into_iter().enumerate() {
        if n > 0 {
            out.extend_from_slice(b", ");
        }
        let (key, value) = members[i];
        write_str(out, key);
        out.extend_from_slice(b": ");
        write_value(out, value);
    }
    out.push(b'}');
}

fn write_double<S: Sink + ?Sized>(out: &mut S, f: f64) {
    out.extend_from_slice(format_g17(f).as_bytes());
}

/// C's `printf("%.17g", f)` (QEMU's `qobject_to_json()` for doubles),
/// without libc: 17 significant digits, the shorter of fixed and
/// exponent notation by C's rule, trailing zeros removed.
pub fn format_g17(f: f64) -> String {
    const P: i32 = 17;
    if f.is_nan() {
        return if f.is_sign_negative() { "-nan" } else { "nan" }.to_string();
    }
    if f.is_infinite() {
        return if f < 0.0 { "-inf" } else { "inf" }.to_string();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    // Rounded to P significant digits: "d.dddde<X>".
    let sci = format!("{:.*e}", (P - 1) as usize, f);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let x: i32 = exp.parse().unwrap_or(0);
    let trim = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.to_string()
        }
    };
    if !(-4..P).contains(&x) {
        let sign = if x < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mantissa), x.unsigned_abs())
    } else {
        trim(&format!("{:.*}", (P - 1 - x) as usize, f))
    }
}

fn write_base64(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    encode_append(out, bytes);
    out.push(b'"');
}

fn write_str<S: Sink + ?Sized>(out: &mut S, s: &str) {
    out.push(b'"');
    let mut plain_from = 0;
    for (i, c) in s.char_indices() {
        let cp = c as u32;
        if (0x20..0x7F).contains(&cp) && c != '"' && c != '\\' {
            continue;
        }
        out.extend_from_slice(&s.as_bytes()[plain_from..i]);
        plain_from = i + c.len_utf8();
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            _ => {
                // QEMU re-validates every code point; noncharacters become U+FFFD.
                let cp = if cp == 0 || is_valid_codepoint(cp) { cp } else { 0xFFFD };
                if cp > 0xFFFF {
                    let v = cp - 0x10000;
                    push_u_escape(out, 0xD800 + (v >> 10));
                    push_u_escape(out, 0xDC00 + (v & 0x3FF));
                } else {
                    push_u_escape(out, cp);
                }
            }
        }
    }
    out.extend_from_slice(&s.as_bytes()[plain_from..]);
    out.push(b'"');
}

fn push_u_escape<S: Sink + ?Sized>(out: &mut S, unit: u32) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.extend_from_slice(b"\\u");
    for shift in [12, 8, 4, 0] {
        out.push(HEX[((unit >> shift) & 0xF) as usize]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(v: &Value) -> String {
        let mut out = Vec::new();
        write_value(&mut out, v);
        String::from_utf8(out).unwrap()
    }

    fn keys_in_qdict_order(keys: &[&str]) -> Vec<String> {
        let mut obj = Object::new();
        for k in keys {
            obj.push(*k, Value::Null);
        }
        let s = w(&Value::Object(obj));
        s.trim_matches(|c| c == '{' || c == '}')
            .split(", ")
            .map(|m| m.split(": ").next().unwrap().trim_matches('"').to_string())
            .collect()
    }

    #[test]
    fn member_orders_match_qemu() {
        assert_eq!(keys_in_qdict_order(&["return", "id"]), ["return", "id"]);
        assert_eq!(keys_in_qdict_order(&["error", "id"]), ["id", "error"]);
        assert_eq!(keys_in_qdict_order(&["class", "desc"]), ["class", "desc"]);
        assert_eq!(
            keys_in_qdict_order(&[
                "exited",
                "exitcode",
                "signal",
                "out-data",
                "err-data",
                "out-truncated",
                "err-truncated"
            ]),
            ["exitcode", "err-data", "out-data", "err-truncated", "signal", "out-truncated", "exited"]
        );
        assert_eq!(keys_in_qdict_order(&["version", "supported_commands"]), ["version", "supported_commands"]);
        assert_eq!(
            keys_in_qdict_order(&["name", "enabled", "success-response"]),
            ["enabled", "name", "success-response"]
        );
        assert_eq!(
            keys_in_qdict_order(&["logical-id", "online", "can-offline"]),
            ["online", "can-offline", "logical-id"]
        );
        assert_eq!(keys_in_qdict_order(&["count", "eof", "buf-b64"]), ["count", "buf-b64", "eof"]);
    }

    #[test]
    fn strings_are_ascii_with_upper_hex() {
        assert_eq!(w(&Value::str("a\"b\\c/\n\t\u{1}")), r#""a\"b\\c/\n\t\u0001""#);
        assert_eq!(w(&Value::str("é€😀")), r#""\u00E9\u20AC\uD83D\uDE00""#);
        assert_eq!(w(&Value::str("\u{7f}\u{fffe}")), r#""\u007F\uFFFD""#);
    }

    #[test]
    fn numbers_like_qemu() {
        assert_eq!(w(&Value::Float(1.0)), "1");
        assert_eq!(w(&Value::Float(0.08)), "0.080000000000000002");
        assert_eq!(w(&Value::Int(-5)), "-5");
        assert_eq!(w(&Value::UInt(u64::MAX)), "18446744073709551615");
    }

    #[test]
    fn base64_and_lists() {
        let v = Value::List(vec![Value::base64(b"foo\n".to_vec()), Value::Null, Value::Bool(true)]);
        assert_eq!(w(&v), r#"["Zm9vCg==", null, true]"#);
        assert_eq!(w(&Value::empty_object()), "{}");
    }
}
