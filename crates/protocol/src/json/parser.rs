//! Turns the tokens of one complete message into a [`Value`], with the
//! error texts of QEMU's recursive-descent `qobject/json-parser.c` (the
//! first error found wins, as in `parse_error()`).

use super::utf8;
use super::value::{Object, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    LCurly,
    RCurly,
    LSquare,
    RSquare,
    Comma,
    Colon,
    Integer,
    Float,
    Keyword,
    String,
}

/// A token of the current message; its text is `text[start..end]` of the
/// framer's message buffer (kept only for literals).
#[derive(Debug, Clone, Copy)]
pub struct Token {
    pub kind: TokenKind,
    pub start: u32,
    pub end: u32,
}

type Parsed<T> = Result<T, String>;

/// QEMU formats the detail with `vsnprintf()` into a 1024-byte buffer, so
/// it is cut at 1,023 bytes (before the `JSON parse error, ` prefix).
const MAX_DETAIL: usize = 1023;

fn parse_error(detail: impl AsRef<str>) -> String {
    parse_error_bytes(detail.as_ref().as_bytes())
}

/// The error text for a detail given as the raw bytes QEMU would print
/// (cut at 1,023 bytes, then shown as its JSON writer would).
fn parse_error_bytes(detail: &[u8]) -> String {
    let cut = &detail[..detail.len().min(MAX_DETAIL)];
    format!("JSON parse error, {}", utf8::lossy_c_string(cut))
}

/// Objects up to this many members look for duplicate keys pairwise;
/// larger ones sort their keys (O(n log n), no hashing, no copies).
const LINEAR_DUP_SCAN: usize = 16;

struct Parser<'a> {
    tokens: &'a [Token],
    text: &'a [u8],
    pos: usize,
    big: Option<Big>,
}

/// A long string token whose body the framer kept apart from `text` (the
/// token's own text there is only its opening quote).
#[derive(Debug)]
pub struct Big {
    pub token: usize,
    pub body: Vec<u8>,
    /// It holds a backslash.
    pub escaped: bool,
    /// `body` is what the string's text decodes to as base64: the text is
    /// canonical base64 ([`Framer::decoding_members`](super::Framer::decoding_members)).
    pub decoded: bool,
}

/// Parses one message. `tokens` is non-empty and balanced (or ends at the
/// first unbalanced closer), as the framer guarantees.
pub fn parse(tokens: &[Token], text: &[u8], big: Option<Big>) -> Result<Value, String> {
    let mut p = Parser { tokens, text, pos: 0, big };
    p.value()
}

/// True if two members of `obj` have the same key.
///
/// QEMU checks each key right after parsing its value and stops at the
/// first duplicate. Checking once when the object ends (or fails) gives
/// the same first error: a duplicate among the members parsed before a
/// syntax error would have stopped QEMU before that error, and one found
/// later cannot exist. (A scan of all earlier keys per member made an
/// 80,000-key request take 12 s and a 524,000-key one minutes.)
fn has_duplicate_key(obj: &Object) -> bool {
    if obj.len() <= LINEAR_DUP_SCAN {
        let keys: Vec<&str> = obj.iter().map(|(k, _)| k).collect();
        return keys.iter().enumerate().any(|(i, k)| keys[..i].contains(k));
    }
    let mut keys: Vec<&str> = obj.iter().map(|(k, _)| k).collect();
    keys.sort_unstable();
    keys.windows(2).any(|w| w[0] == w[1])
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<Token> {
        self.tokens.get(self.pos).copied()
    }

    fn pop(&mut self) -> Option<Token> {
        let t = self.peek();
        if t.is_some() {
            self.pos += 1;
        }
        t
    }

    fn text_of(&self, t: Token) -> &'a [u8] {
        &self.text[t.start as usize..t.end as usize]
    }

    fn value(&mut self) -> Parsed<Value> {
        let Some(t) = self.peek() else {
            return Err(parse_error("premature EOI"));
        };
        match t.kind {
            TokenKind::LCurly => self.object(),
            TokenKind::LSquare => self.array(),
            TokenKind::Integer | TokenKind::Float | TokenKind::String => self.literal(),
            TokenKind::Keyword => self.keyword(),
            _ => Err(parse_error("expecting value")),
        }
    }

    fn object(&mut self) -> Parsed<Value> {
        self.pop(); // '{'
        let mut obj = Object::new();
        match self.peek() {
            None => return Err(parse_error("premature EOI")),
            Some(t) if t.kind == TokenKind::RCurly => {
                self.pop();
                return Ok(Value::Object(obj));
            }
            Some(_) => {}
        }
        let end = self.members(&mut obj);
        if has_duplicate_key(&obj) {
            return Err(parse_error("duplicate key"));
        }
        end.map(|()| Value::Object(obj))
    }

    /// The members up to the closing brace, pushed without the duplicate
    /// check (see [`has_duplicate_key`]); the first syntax error ends it.
    fn members(&mut self, obj: &mut Object) -> Parsed<()> {
        loop {
            self.pair(obj)?;
            let Some(t) = self.pop() else {
                return Err(parse_error("premature EOI"));
            };
            match t.kind {
                TokenKind::RCurly => return Ok(()),
                TokenKind::Comma => {}
                _ => return Err(parse_error("expected separator in dict")),
            }
        }
    }

    fn pair(&mut self, obj: &mut Object) -> Parsed<()> {
        if self.peek().is_none() {
            return Err(parse_error("premature EOI"));
        }
        let key = match self.value()? {
            Value::Str(s) => s,
            _ => return Err(parse_error("key is not a string in object")),
        };
        let Some(colon) = self.pop() else {
            return Err(parse_error("premature EOI"));
        };
        if colon.kind != TokenKind::Colon {
            return Err(parse_error("missing : in object pair"));
        }
        let value = self.value()?;
        obj.push(key, value);
        Ok(())
    }

    fn array(&mut self) -> Parsed<Value> {
        self.pop(); // '['
        let mut list = Vec::new();
        match self.peek() {
            None => return Err(parse_error("premature EOI")),
            Some(t) if t.kind == TokenKind::RSquare => {
                self.pop();
                return Ok(Value::List(list));
            }
            Some(_) => {}
        }
        loop {
            list.push(self.value()?);
            let Some(t) = self.pop() else {
                return Err(parse_error("premature EOI"));
            };
            match t.kind {
                TokenKind::RSquare => return Ok(Value::List(list)),
                TokenKind::Comma => {}
                _ => return Err(parse_error("expected separator in list")),
            }
        }
    }

    fn keyword(&mut self) -> Parsed<Value> {
        let t = self.pop().ok_or_else(|| parse_error("premature EOI"))?;
        match self.text_of(t) {
            b"true" => Ok(Value::Bool(true)),
            b"false" => Ok(Value::Bool(false)),
            b"null" => Ok(Value::Null),
            other => {
                let mut detail = Vec::with_capacity(other.len().min(MAX_DETAIL) + 20);
                detail.extend_from_slice(b"invalid keyword '");
                detail.extend_from_slice(&other[..other.len().min(MAX_DETAIL)]);
                detail.push(b'\'');
                Err(parse_error_bytes(&detail))
            }
        }
    }

    fn literal(&mut self) -> Parsed<Value> {
        let is_big = self.big.as_ref().is_some_and(|b| b.token == self.pos);
        let t = self.pop().ok_or_else(|| parse_error("premature EOI"))?;
        let rebuilt;
        let big = if is_big { self.big.take() } else { None };
        let text = match big {
            Some(big) if big.decoded => return Ok(Value::base64(big.body)),
            Some(big) => match big_string(self.text_of(t), big) {
                Ok(s) => return Ok(Value::Str(s)),
                Err(token) => {
                    rebuilt = token;
                    &rebuilt[..]
                }
            },
            None => self.text_of(t),
        };
        match t.kind {
            TokenKind::String => parse_string(text).map(Value::Str),
            TokenKind::Integer => Ok(parse_integer(text)),
            _ => Ok(Value::Float(parse_float(text))),
        }
    }
}

/// JSON_INTEGER becomes int64 if it fits, else uint64 (non-negative), else
/// a double, as in QEMU's `parse_literal()`.
fn parse_integer(text: &[u8]) -> Value {
    let s = std::str::from_utf8(text).unwrap_or("0");
    if let Ok(i) = s.parse::<i64>() {
        return Value::Int(i);
    }
    if !s.starts_with('-') {
        if let Ok(u) = s.parse::<u64>() {
            return Value::UInt(u);
        }
    }
    Value::Float(parse_float(text))
}

fn parse_float(text: &[u8]) -> f64 {
    std::str::from_utf8(text).ok().and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0)
}

fn hex4(bytes: &[u8]) -> Option<u32> {
    if bytes.len() < 4 {
        return None;
    }
    let mut cp = 0u32;
    for &b in &bytes[..4] {
        cp = (cp << 4) | (b as char).to_digit(16)?;
    }
    Some(cp)
}

/// Length of the leading run of ASCII bytes other than '\\'.
fn ascii_run(b: &[u8]) -> usize {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let mut i = 0;
    while i + 8 <= b.len() {
        let x = u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
        let y = x ^ (LO * b'\\' as u64);
        if (x & HI) | (y.wrapping_sub(LO) & !y & HI) != 0 {
            break;
        }
        i += 8;
    }
    i + b[i..].iter().position(|&c| c >= 0x80 || c == b'\\').unwrap_or(b.len() - i)
}

/// A big string token: its body becomes the `String` without a copy when
/// there is nothing to unescape; otherwise the whole token, rebuilt, for
/// [`parse_string`] (same result, same errors; one call site keeps that
/// inlined on the hot path).
#[cold]
fn big_string(open_quote: &[u8], big: Big) -> Result<String, Vec<u8>> {
    if !big.escaped {
        return String::from_utf8(big.body).map_err(|e| quoted(open_quote, e.as_bytes()));
    }
    Err(quoted(open_quote, &big.body))
}

fn quoted(open_quote: &[u8], body: &[u8]) -> Vec<u8> {
    let mut token = Vec::with_capacity(body.len() + 2);
    token.extend_from_slice(open_quote);
    token.extend_from_slice(body);
    token.extend_from_slice(open_quote);
    token
}

/// QEMU's `parse_string()`: unescapes a single- or double-quoted token.
fn parse_string(token: &[u8]) -> Parsed<String> {
    let body = &token[1..token.len().saturating_sub(1).max(1)];
    let mut out = String::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        if b != b'\\' {
            // Fast path for runs of ASCII.
            if b < 0x80 {
                let run = ascii_run(&body[i..]);
                // SAFETY-free: ASCII is valid UTF-8.
                out.push_str(std::str::from_utf8(&body[i..i + run]).unwrap_or_default());
                i += run;
                continue;
            }
            match utf8::decode(&body[i..]) {
                (Some(cp), n) => {
                    out.push(char::from_u32(cp).unwrap_or('\u{FFFD}'));
                    i += n;
                }
                (None, _) => return Err(parse_error("invalid UTF-8 sequence in string")),
            }
            continue;
        }
        let beg = i;
        let Some(&esc) = body.get(i + 1) else {
            return Err(parse_error("invalid escape sequence in string"));
        };
        i += 2;
        let c = match esc {
            b'"' => '"',
            b'\'' => '\'',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let mut cp = hex4(&body[i..]);
                // QEMU advances past four bytes whether or not they were
                // hex digits (so the text of `"\u12"` includes the quote).
                i += 4;
                if let Some(lead) = cp.filter(|c| (0xD800..=0xDBFF).contains(c)) {
                    if body[i..].starts_with(b"\\u") {
                        if let Some(trail) = hex4(&body[i + 2..]).filter(|c| (0xDC00..=0xDFFF).contains(c)) {
                            cp = Some(0x10000 + (((lead & 0x3FF) << 10) | (trail & 0x3FF)));
                            i += 6;
                        } else {
                            cp = None;
                        }
                    }
                }
                match cp.filter(|&c| c == 0 || utf8::is_valid_codepoint(c)).and_then(char::from_u32) {
                    Some(c) => c,
                    None => {
                        // `%.*s` from the backslash: at most up to the end
                        // of the token text (the closing quote included).
                        let text = &token[(beg + 1)..(i + 1).min(token.len())];
                        let mut detail = text.to_vec();
                        detail.extend_from_slice(b" is not a valid Unicode character");
                        return Err(parse_error_bytes(&detail));
                    }
                }
            }
            _ => return Err(parse_error("invalid escape sequence in string")),
        };
        out.push(c);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings() {
        assert_eq!(parse_string(br#""a\"b\u00e9\ud83d\ude00""#).unwrap(), "a\"bé😀");
        assert_eq!(parse_string(br#"'it\'s "x"'"#).unwrap(), "it's \"x\"");
        assert_eq!(parse_string(br#""\u0000""#).unwrap(), "\0");
        assert_eq!(
            parse_string(br#""\ud800x""#).unwrap_err(),
            "JSON parse error, \\ud800 is not a valid Unicode character"
        );
        assert_eq!(
            parse_string(br#""\uFFFF""#).unwrap_err(),
            "JSON parse error, \\uFFFF is not a valid Unicode character"
        );
        assert_eq!(parse_string(br#""\q""#).unwrap_err(), "JSON parse error, invalid escape sequence in string");
        assert_eq!(parse_string(b"\"\xC3\"").unwrap_err(), "JSON parse error, invalid UTF-8 sequence in string");
    }

    /// qemu-ga prints `%.*s` from the backslash over the four bytes after
    /// `\u`, whatever they are, up to the end of the token.
    #[test]
    fn short_unicode_escape_quotes_like_qemu() {
        let err = |t: &[u8]| parse_string(t).unwrap_err();
        assert_eq!(err(br#""\u12""#), "JSON parse error, \\u12\" is not a valid Unicode character");
        assert_eq!(err(br#"'\u1'"#), "JSON parse error, \\u1' is not a valid Unicode character");
        assert_eq!(err(br#""\u""#), "JSON parse error, \\u\" is not a valid Unicode character");
        assert_eq!(err(br#""\u12xyz""#), "JSON parse error, \\u12xy is not a valid Unicode character");
        assert_eq!(err(b"\"a\\u12\xC3\xA9\""), "JSON parse error, \\u12é is not a valid Unicode character");
        // A lone high surrogate stops after its own escape.
        assert_eq!(err(br#""\ud800\u0041""#), "JSON parse error, \\ud800 is not a valid Unicode character");
    }

    #[test]
    fn parse_error_detail_is_cut_at_1023_bytes() {
        let long = "x".repeat(5000);
        let e = parse_error(&long);
        assert_eq!(e.len(), "JSON parse error, ".len() + 1023);
        assert_eq!(parse_error("short"), "JSON parse error, short");
    }

    #[test]
    fn many_keys_parse_and_duplicates_are_found_at_any_size() {
        use crate::json::{Frame, Framer};
        let parse = |text: &str| {
            let mut f = Framer::new();
            match f.feed(text.as_bytes()).1 {
                Some(frame) => frame,
                None => panic!("no frame"),
            }
        };
        let n = 50_000;
        let body: Vec<String> = (0..n).map(|i| format!("\"k{i}\":{i}")).collect();
        match parse(&format!("{{{}}}", body.join(","))) {
            Frame::Message(Value::Object(o)) => {
                assert_eq!(o.len(), n);
                assert_eq!(o.get("k49999"), Some(&Value::Int(49_999)));
                assert_eq!(o.iter().nth(1234).map(|(k, _)| k), Some("k1234"));
            }
            other => panic!("{other:?}"),
        }
        for dup_at in [1, 15, 16, 17, n - 1] {
            let mut members = body.clone();
            members.push(format!("\"k{}\":0", dup_at - 1));
            members.push("\"later\":tru".to_string()); // a later error is not reached
            assert_eq!(
                parse(&format!("{{{}}}", members.join(","))),
                Frame::Error("JSON parse error, duplicate key".into()),
                "duplicate of member {dup_at}"
            );
        }
        // Same key text in different objects is no duplicate.
        assert!(matches!(parse(r#"{"a":{"a":1},"b":{"a":2}}"#), Frame::Message(_)));
    }

    #[test]
    fn ascii_run_stops_at_backslash_and_non_ascii() {
        for pos in 0..20 {
            for stop in [b'\\', 0x80, 0xC3, 0xFF] {
                let mut buf = vec![b'x'; 20];
                buf[pos] = stop;
                assert_eq!(ascii_run(&buf), pos);
            }
        }
        assert_eq!(ascii_run(b"plain ascii text!"), 17);
    }

    #[test]
    fn integers() {
        assert_eq!(parse_integer(b"-9223372036854775808"), Value::Int(i64::MIN));
        assert_eq!(parse_integer(b"18446744073709551615"), Value::UInt(u64::MAX));
        assert_eq!(parse_integer(b"18446744073709551616"), Value::Float(18446744073709551616.0));
        assert_eq!(parse_integer(b"-9223372036854775809"), Value::Float(-9223372036854775809.0));
    }
}
