//! Splits a byte stream into JSON messages the way QEMU's
//! `json-lexer.c` + `json-streamer.c` do, incrementally: every byte is
//! looked at once, so a 60 MiB request arriving in 4 KiB reads costs the
//! same as one arriving in a single read.
//!
//! Differences from qemu-ga, all deliberate:
//! * After a limit error (size, token count, nesting) the rest of that
//!   message is discarded while its brackets are still counted, instead of
//!   being re-parsed as new messages. qemu-ga answers a 10,000-deep
//!   `[[[...]]]` line with 9,236 errors; this answers it with one.
//! * At most [`MAX_ERRORS_PER_LINE`] framing errors are reported between
//!   two newlines (or two good messages); further ones are counted but not
//!   answered, so one hostile line cannot make thousands of replies.
//! * A 0xFF byte is a lexical error exactly as in qemu-ga: it discards the
//!   partial message and *is* answered with qemu-ga's
//!   `JSON parse error, stray '\uFFFD'` reply. QEMU's own test suite and
//!   every client we know tolerate that reply (they skip to the 0xFF that
//!   precedes the guest-sync-delimited answer), and sending it keeps the
//!   reply stream byte-identical to qemu-ga's.

use super::base64;
use super::parser::{self, Token, TokenKind};
use super::utf8;
use super::value::Value;

/// `MAX_TOKEN_SIZE` of json-streamer.c: bytes of all tokens of one message.
pub const MAX_TOKEN_SIZE: usize = 64 << 20;
/// `MAX_TOKEN_COUNT` of json-streamer.c: tokens of one message.
pub const MAX_TOKEN_COUNT: usize = 2 << 20;
/// `MAX_NESTING` of json-streamer.c: open braces plus brackets.
pub const MAX_NESTING: i64 = 1 << 10;
/// Framing errors answered per input line before the rest are dropped.
pub const MAX_ERRORS_PER_LINE: u32 = 4;
/// A string token this long is moved out of the message text as it grows,
/// so the parser can hand its bytes to the [`Value`] without a copy (an
/// input-data of 5 MiB becomes its `String` in place).
const BIG_STRING: usize = 256 << 10;
/// Buffers this big are mappings of their own whose untouched pages cost
/// nothing: [`Framer::held`] counts their length, not their capacity.
const HELD_BY_LENGTH: usize = 1 << 20;
/// The capacity a long string's buffer starts with when it moves out of
/// the message text: a 4 MiB chunk's base64 (5.6 MB) and then some.
const BIG_STRING_ROOM: usize = 8 << 20;

/// What the framer produced: a parsed message, or the `desc` of a
/// GenericError reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Message(Value),
    Error(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    Start,
    Recovery,
    DqString,
    DqEscape,
    SqString,
    SqEscape,
    Zero,
    Sign,
    Digits,
    Mantissa,
    MantissaDigits,
    ExpE,
    ExpSign,
    ExpDigits,
    Keyword,
}

/// What one lexer step did with the byte.
enum Step {
    /// The byte belongs to the current token (or was skipped).
    Consumed,
    /// A token ended before this byte; look at it again from `Start`.
    Lookahead,
}

#[derive(Debug)]
pub struct Framer {
    state: Lex,
    /// Text of the literal tokens of the current message; the token being
    /// lexed is its tail from `token_start` (kept in place, never copied).
    text: Vec<u8>,
    token_start: usize,
    tokens: Vec<Token>,
    /// Sum of all token lengths of the current message (QEMU's token_size).
    token_size: usize,
    brace: i64,
    bracket: i64,
    /// After a limit error: the rest of the message is lexed but dropped.
    discarding: bool,
    errors_this_line: u32,
    /// The frame produced by the last step, handed out by `feed`.
    ready: Option<Frame>,
    /// The body (no quotes) of the message's first string token that grew
    /// past [`BIG_STRING`]; its token keeps only the opening quote in `text`.
    big: BigString,
    /// Object members whose long string values are decoded as base64 while
    /// they arrive ([`Framer::decoding_members`]).
    decode_members: &'static [&'static str],
}

#[derive(Debug, Default)]
struct BigString {
    body: Vec<u8>,
    /// The token being lexed is this one.
    growing: bool,
    /// Its index in `tokens`, once finished.
    token: Option<usize>,
    /// A backslash was seen: the parser must unescape it.
    escaped: bool,
    /// `body` holds what the text decodes to as base64, not the text: the
    /// string is the value of a member named in `decode_members`, and all
    /// of it so far is canonical base64 (whole groups of the alphabet,
    /// then at most a padded last group). The first character that breaks
    /// that turns the body back into the text ([`BigString::fall_back`]).
    decoded: bool,
    /// Decoded: the characters of a group not yet complete (4 only for a
    /// padded group, which must be the last).
    carry: [u8; 4],
    carry_len: usize,
    /// Decoded: the closing quote was seen and the last group decoded.
    closed: bool,
}

fn is_base64_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'+' || c == b'/'
}

/// Whether `chars` can begin a string's last base64 group: at most 4,
/// alphabet characters, then '=' only at the third and fourth places.
fn may_start_last_group(chars: &[u8]) -> bool {
    let k = chars.iter().position(|&c| c == b'=').unwrap_or(chars.len());
    chars.len() <= 4
        && chars[..k].iter().all(|&c| is_base64_char(c))
        && chars[k..].iter().all(|&c| c == b'=')
        && (k == chars.len() || k >= 2)
}

impl BigString {
    /// Length of the string's text so far (the closing quote included
    /// once seen).
    fn text_len(&self) -> usize {
        if self.decoded {
            // Whole groups, then a last group of 1 or 2 bytes once closed.
            self.body.len().div_ceil(3) * 4 + self.carry_len + self.closed as usize
        } else {
            self.body.len()
        }
    }

    /// Appends the string's text so far to `out`.
    fn text_into(&self, out: &mut Vec<u8>) {
        if self.decoded {
            base64::encode_append(out, &self.body);
            out.extend_from_slice(&self.carry[..self.carry_len]);
        } else {
            out.extend_from_slice(&self.body);
        }
    }

    /// Not base64 after all: the body becomes the text again (once per
    /// string at most; canonical base64 encodes back to itself).
    #[cold]
    fn fall_back(&mut self) {
        let mut text = Vec::with_capacity(BIG_STRING_ROOM.max(self.text_len() + 64));
        self.text_into(&mut text);
        self.body = text;
        self.decoded = false;
        self.carry_len = 0;
    }

    /// Decoded: takes whole groups of alphabet characters from the start
    /// of `input` (the carry's group first), as many as there are; returns
    /// how many characters it took.
    fn take_groups(&mut self, input: &[u8]) -> usize {
        let mut i = 0;
        if self.carry_len > 0 {
            let need = 4 - self.carry_len;
            if input.len() < need {
                return 0;
            }
            self.carry[self.carry_len..].copy_from_slice(&input[..need]);
            if base64::decode_groups_append(&self.carry, &mut self.body) == 0 {
                return 0;
            }
            self.carry_len = 0;
            i = need;
        }
        i + base64::decode_groups_append(&input[i..], &mut self.body)
    }

    /// Decoded: takes a run of plain string characters.
    fn append_decoded(&mut self, bytes: &[u8]) {
        let mut i = 0;
        while self.carry_len > 0 && self.carry_len < 4 && i < bytes.len() {
            self.carry[self.carry_len] = bytes[i];
            self.carry_len += 1;
            i += 1;
        }
        if self.carry_len == 4 && base64::decode_groups_append(&self.carry, &mut self.body) == 4 {
            self.carry_len = 0;
        }
        if self.carry_len == 0 {
            i += base64::decode_groups_append(&bytes[i..], &mut self.body);
        }
        let rest = &bytes[i..];
        if rest.is_empty() && may_start_last_group(&self.carry[..self.carry_len]) {
            return;
        }
        if self.carry_len == 0 && may_start_last_group(rest) {
            self.carry[..rest.len()].copy_from_slice(rest);
            self.carry_len = rest.len();
            return;
        }
        self.fall_back();
        // Plain runs never hold a backslash; step() appends it alone (and
        // it may have gone to the carry, now text).
        self.escaped |= bytes == b"\\";
        self.body.extend_from_slice(rest);
    }

    /// Decoded: the closing quote. The last group decodes, or the body
    /// falls back to the text, closing quote included as in a text body.
    fn close_decoded(&mut self, quote: u8) {
        let last = match self.carry_len {
            0 => Some(([0; 4], 0)),
            4 => base64::decode_last_group(self.carry),
            _ => None,
        };
        match last {
            Some((bytes, n)) => {
                self.body.extend_from_slice(&bytes[..n]);
                self.carry_len = 0;
                self.closed = true;
            }
            None => {
                self.fall_back();
                self.body.push(quote);
            }
        }
    }
}

impl Default for Framer {
    fn default() -> Self {
        Self::new()
    }
}

fn is_structural(b: u8) -> bool {
    matches!(b, b'[' | b']' | b'{' | b'}' | b':' | b',')
}

impl Framer {
    pub fn new() -> Self {
        Framer {
            state: Lex::Start,
            text: Vec::new(),
            token_start: 0,
            tokens: Vec::new(),
            token_size: 0,
            brace: 0,
            bracket: 0,
            discarding: false,
            errors_this_line: 0,
            ready: None,
            big: BigString::default(),
            decode_members: &[],
        }
    }

    /// Long string values (past [`BIG_STRING`]) of object members with
    /// these names are decoded as base64 while they arrive, when they are
    /// canonical base64 (what clients send): the parser gives them as
    /// [`Value::Base64`](crate::json::Value::Base64), whose text is the
    /// string's. One pass over the text instead of a copy, a UTF-8 check
    /// and a decoding pass; a string that is not canonical base64 is kept
    /// as text, as any other.
    pub fn decoding_members(mut self, names: &'static [&'static str]) -> Self {
        self.decode_members = names;
        self
    }

    /// Consumes bytes from `input` up to and including the first one that
    /// completes a frame. Returns how many bytes were consumed and the frame,
    /// if any; call again with the rest.
    pub fn feed(&mut self, input: &[u8]) -> (usize, Option<Frame>) {
        let mut i = 0;
        while i < input.len() {
            if matches!(self.state, Lex::DqString | Lex::SqString) {
                if self.big.growing && self.big.decoded {
                    // Whole groups straight from the input into the bytes.
                    let n = self.big.take_groups(&input[i..]);
                    if n > 0 {
                        i += n;
                        self.check_big_size();
                        if let Some(frame) = self.ready.take() {
                            return (i, Some(frame));
                        }
                        continue;
                    }
                }
                let run = self.plain_string_run(&input[i..]);
                if run > 0 {
                    self.append_token_bytes(&input[i..i + run]);
                    if run >= 64 {
                        self.maybe_move_big_string();
                    }
                    i += run;
                    if let Some(frame) = self.ready.take() {
                        return (i, Some(frame));
                    }
                    continue;
                }
            }
            let step = self.step(input[i]);
            if let Step::Consumed = step {
                i += 1;
            }
            if let Some(frame) = self.ready.take() {
                return (i, Some(frame));
            }
        }
        (i, None)
    }

    /// Inside a long string: makes room for `n` more of its bytes and
    /// returns its buffer, so the caller may map that room at once
    /// (`sys::mem::MapAhead`) before feeding them. None otherwise.
    pub fn long_string_room(&mut self, n: usize) -> Option<&mut Vec<u8>> {
        if !self.big.growing || self.discarding {
            return None;
        }
        self.big.body.reserve(n);
        Some(&mut self.big.body)
    }

    /// Bytes of memory the message in progress holds: buffers at their
    /// allocated size, except big ones (mappings of their own, filled as
    /// they grow), which count what they hold.
    pub fn held(&self) -> usize {
        let resident = |cap: usize, len: usize| if cap < HELD_BY_LENGTH { cap } else { len };
        resident(self.text.capacity(), self.text.len())
            + resident(self.big.body.capacity(), self.big.body.len())
            + resident(self.tokens.capacity(), self.tokens.len()) * std::mem::size_of::<Token>()
    }

    /// Whether a message is partly received (bytes of it were taken).
    fn in_message(&self) -> bool {
        !self.discarding && (self.state != Lex::Start || !self.tokens.is_empty() || self.token_size > 0)
    }

    /// Gives up the message in progress with the error `desc` (answered
    /// like a size-limit error); the rest of it is read and dropped.
    pub fn abandon(&mut self, desc: &str) {
        if self.in_message() {
            self.limit_error(desc);
        }
    }

    /// Length of the run of ordinary string bytes at the start of `input`.
    fn plain_string_run(&self, input: &[u8]) -> usize {
        let quote = if self.state == Lex::DqString { b'"' } else { b'\'' };
        // Eight bytes at a time first: any byte < 0x20, >= 0xFE, the quote
        // or a backslash stops the word loop (exact "has any" tests).
        const LO: u64 = 0x0101_0101_0101_0101;
        const HI: u64 = 0x8080_8080_8080_8080;
        let zero = |v: u64| v.wrapping_sub(LO) & !v & HI;
        let mut i = 0;
        while i + 8 <= input.len() {
            let x = u64::from_le_bytes(input[i..i + 8].try_into().unwrap());
            let special = (x.wrapping_sub(LO * 0x20) & !x & HI)
                | ((!x).wrapping_sub(LO * 2) & x & HI)
                | zero(x ^ (LO * quote as u64))
                | zero(x ^ (LO * b'\\' as u64));
            if special != 0 {
                break;
            }
            i += 8;
        }
        i + input[i..]
            .iter()
            .position(|&b| !(0x20..0xFE).contains(&b) || b == quote || b == b'\\')
            .unwrap_or(input.len() - i)
    }

    #[inline]
    fn append_token_bytes(&mut self, bytes: &[u8]) {
        if self.discarding {
            return;
        }
        if self.big.growing {
            return self.append_big(bytes);
        }
        self.text.extend_from_slice(bytes);
        if self.token_size + (self.text.len() - self.token_start) + 1 > MAX_TOKEN_SIZE {
            // Checked while the token grows so memory stays bounded.
            self.limit_error("JSON token size limit exceeded");
        }
    }

    #[inline(never)]
    fn append_big(&mut self, bytes: &[u8]) {
        if self.big.decoded {
            // Plain runs never hold the string's quote: this is its end.
            let quote = if self.state == Lex::DqString { b'"' } else { b'\'' };
            if bytes == [quote] {
                self.big.close_decoded(quote);
            } else {
                self.big.append_decoded(bytes);
            }
        } else {
            // Plain runs never hold a backslash; step() appends it alone.
            self.big.escaped |= bytes == b"\\";
            self.big.body.extend_from_slice(bytes);
        }
        self.check_big_size();
    }

    fn check_big_size(&mut self) {
        if self.token_size + self.token_len() + 1 > MAX_TOKEN_SIZE {
            self.limit_error("JSON token size limit exceeded");
        }
    }

    /// Whether the string being lexed is the value of a member named in
    /// `decode_members`: the tokens before it are the key and a colon.
    fn is_decoding_member(&self) -> bool {
        let [.., key, colon] = self.tokens[..] else { return false };
        if colon.kind != TokenKind::Colon || key.kind != TokenKind::String {
            return false;
        }
        let key = &self.text[key.start as usize..key.end as usize];
        key.len() >= 2 && self.decode_members.iter().any(|m| m.as_bytes() == &key[1..key.len() - 1])
    }

    /// After a plain run of a string (the only way a string grows fast):
    /// past [`BIG_STRING`], the first such token of the message moves
    /// everything after its opening quote out of `text`, once.
    fn maybe_move_big_string(&mut self) {
        if self.big.growing || self.big.token.is_some() || self.discarding {
            return;
        }
        if self.text.len() - self.token_start > BIG_STRING {
            self.big.escaped = self.text[self.token_start..].contains(&b'\\');
            // Room for a whole chunk of base64 at once (guest-file-write,
            // input-data): one big block, which the global allocator cuts
            // from the last big block freed (the previous string's pages)
            // instead of the string growing by doubling into fresh pages
            // that the kernel must zero-fill. Untouched pages cost nothing.
            let mut body = Vec::with_capacity(BIG_STRING_ROOM);
            let text = &self.text[self.token_start + 1..];
            let n = if self.big.escaped || !self.is_decoding_member() {
                0
            } else {
                base64::decode_groups_append(text, &mut body)
            };
            if n > 0 && may_start_last_group(&text[n..]) {
                self.big.decoded = true;
                self.big.carry_len = text.len() - n;
                self.big.carry[..self.big.carry_len].copy_from_slice(&text[n..]);
            } else {
                body.clear();
                body.extend_from_slice(text);
            }
            self.text.truncate(self.token_start + 1);
            self.big.body = body;
            self.big.growing = true;
        }
    }

    /// Bytes of the token being lexed so far.
    fn token_len(&self) -> usize {
        let big = if self.big.growing { self.big.text_len() } else { 0 };
        self.text.len() - self.token_start + big
    }

    fn step(&mut self, b: u8) -> Step {
        use Lex::*;
        let digit = b.is_ascii_digit();
        match self.state {
            Start => {
                match b {
                    b' ' | b'\t' | b'\r' => {}
                    b'\n' => self.errors_this_line = 0,
                    b'"' => self.begin(DqString, b),
                    b'\'' => self.begin(SqString, b),
                    b'0' => self.begin(Zero, b),
                    b'1'..=b'9' => self.begin(Digits, b),
                    b'-' => self.begin(Sign, b),
                    b'a'..=b'z' => self.begin(Keyword, b),
                    b'{' => self.token_done(TokenKind::LCurly),
                    b'}' => self.token_done(TokenKind::RCurly),
                    b'[' => self.token_done(TokenKind::LSquare),
                    b']' => self.token_done(TokenKind::RSquare),
                    b',' => self.token_done(TokenKind::Comma),
                    b':' => self.token_done(TokenKind::Colon),
                    _ => self.lexical_error(b),
                }
                Step::Consumed
            }
            Recovery => {
                if (b < 0x20 && b != b'\t') || b >= 0xFE || is_structural(b) {
                    self.state = Start;
                    Step::Lookahead
                } else {
                    Step::Consumed
                }
            }
            DqString | SqString => {
                let quote = if self.state == DqString { b'"' } else { b'\'' };
                if !(0x20..=0xFD).contains(&b) {
                    self.lexical_error(b);
                } else if b == b'\\' {
                    self.append_token_bytes(&[b]);
                    self.state = if self.state == DqString { DqEscape } else { SqEscape };
                } else {
                    self.append_token_bytes(&[b]);
                    if b == quote {
                        self.token_done(TokenKind::String);
                    }
                }
                Step::Consumed
            }
            DqEscape | SqEscape => {
                if (0x20..=0xFD).contains(&b) {
                    self.append_token_bytes(&[b]);
                    self.state = if self.state == DqEscape { DqString } else { SqString };
                } else {
                    self.lexical_error(b);
                }
                Step::Consumed
            }
            Zero => match b {
                b'.' => self.grow(Mantissa, b),
                _ if digit => self.consume_error(b),
                _ => self.terminal(TokenKind::Integer),
            },
            Sign => match b {
                b'0' => self.grow(Zero, b),
                b'1'..=b'9' => self.grow(Digits, b),
                _ => self.consume_error(b),
            },
            Digits => match b {
                _ if digit => self.grow(Digits, b),
                b'e' | b'E' => self.grow(ExpE, b),
                b'.' => self.grow(Mantissa, b),
                _ => self.terminal(TokenKind::Integer),
            },
            Mantissa => match b {
                _ if digit => self.grow(MantissaDigits, b),
                _ => self.consume_error(b),
            },
            MantissaDigits => match b {
                _ if digit => self.grow(MantissaDigits, b),
                b'e' | b'E' => self.grow(ExpE, b),
                _ => self.terminal(TokenKind::Float),
            },
            ExpE => match b {
                b'-' | b'+' => self.grow(ExpSign, b),
                _ if digit => self.grow(ExpDigits, b),
                _ => self.consume_error(b),
            },
            ExpSign => match b {
                _ if digit => self.grow(ExpDigits, b),
                _ => self.consume_error(b),
            },
            ExpDigits => match b {
                _ if digit => self.grow(ExpDigits, b),
                _ => self.terminal(TokenKind::Float),
            },
            Keyword => match b {
                b'a'..=b'z' => self.grow(Keyword, b),
                _ => self.terminal(TokenKind::Keyword),
            },
        }
    }

    fn begin(&mut self, state: Lex, b: u8) {
        self.state = state;
        self.append_token_bytes(&[b]);
    }

    fn grow(&mut self, state: Lex, b: u8) -> Step {
        self.state = state;
        self.append_token_bytes(&[b]);
        Step::Consumed
    }

    fn terminal(&mut self, kind: TokenKind) -> Step {
        self.token_done(kind);
        Step::Lookahead
    }

    fn consume_error(&mut self, b: u8) -> Step {
        self.lexical_error(b);
        Step::Consumed
    }

    /// JSON_ERROR: reply `stray '<token + byte>'`, drop the message, and
    /// skip input until a structural or control character.
    fn lexical_error(&mut self, b: u8) {
        let mut stray = self.text.split_off(self.token_start.min(self.text.len()));
        if self.big.growing {
            self.big.text_into(&mut stray);
        }
        stray.push(b);
        let desc = format!("JSON parse error, stray '{}'", utf8::lossy_c_string(&stray));
        self.discarding = false;
        self.reset_message();
        self.state = Lex::Recovery;
        self.emit_error(desc);
    }

    fn limit_error(&mut self, desc: &str) {
        // Keep counting brackets until this message would have ended.
        self.discarding = true;
        self.tokens.clear();
        self.text = Vec::new();
        self.big = BigString::default();
        self.token_start = 0;
        self.token_size = 0;
        self.emit_error(desc.to_string());
    }

    fn emit_error(&mut self, desc: String) {
        self.errors_this_line = self.errors_this_line.saturating_add(1);
        if self.errors_this_line <= MAX_ERRORS_PER_LINE {
            self.ready = Some(Frame::Error(desc));
        }
    }

    fn reset_message(&mut self) {
        self.tokens.clear();
        self.text.clear();
        if self.big.growing || self.big.token.is_some() || self.big.body.capacity() > 0 {
            self.big = BigString::default();
        }
        if self.text.capacity() > (1 << 20) {
            self.text = Vec::new();
            self.tokens = Vec::new();
        }
        self.token_start = 0;
        self.token_size = 0;
        self.brace = 0;
        self.bracket = 0;
    }

    /// A token is complete: QEMU's `json_message_process_token()`.
    fn token_done(&mut self, kind: TokenKind) {
        self.state = Lex::Start;
        match kind {
            TokenKind::LCurly => self.brace += 1,
            TokenKind::RCurly => self.brace -= 1,
            TokenKind::LSquare => self.bracket += 1,
            TokenKind::RSquare => self.bracket -= 1,
            _ => {}
        }
        let open = (self.brace > 0 || self.bracket > 0) && self.brace >= 0 && self.bracket >= 0;
        if self.discarding {
            if !open {
                self.discarding = false;
                self.reset_message();
            }
            return;
        }
        // Literal tokens are already in `text`; structural ones count as 1.
        let len = self.token_len().max(1);
        if self.big.growing {
            // The closing quote went to a text body; the token ends here.
            if !self.big.decoded {
                self.big.body.pop();
            }
            self.big.growing = false;
            self.big.token = Some(self.tokens.len());
        }
        if self.token_size + len + 1 > MAX_TOKEN_SIZE {
            return self.limit_or_end("JSON token size limit exceeded", open);
        }
        if self.tokens.len() + 1 > MAX_TOKEN_COUNT {
            return self.limit_or_end("JSON token count limit exceeded", open);
        }
        if self.brace + self.bracket > MAX_NESTING {
            return self.limit_or_end("JSON nesting depth limit exceeded", open);
        }
        let start = self.token_start as u32;
        self.token_start = self.text.len();
        self.tokens.push(Token { kind, start, end: self.text.len() as u32 });
        self.token_size += len;
        if open {
            return;
        }
        let big = self.big.token.map(|i| parser::Big {
            token: i,
            body: std::mem::take(&mut self.big.body),
            escaped: self.big.escaped,
            decoded: self.big.decoded,
        });
        let frame = match parser::parse(&self.tokens, &self.text, big) {
            Ok(v) => {
                self.errors_this_line = 0;
                Some(Frame::Message(v))
            }
            Err(desc) => {
                self.errors_this_line = self.errors_this_line.saturating_add(1);
                (self.errors_this_line <= MAX_ERRORS_PER_LINE).then_some(Frame::Error(desc))
            }
        };
        self.reset_message();
        self.ready = frame;
    }

    fn limit_or_end(&mut self, desc: &str, open: bool) {
        self.limit_error(desc);
        if !open {
            self.discarding = false;
            self.reset_message();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::write_value;

    /// Feeds `input` in pieces of `chunk` bytes and renders every frame.
    fn frames(input: &[u8], chunk: usize) -> Vec<String> {
        frames_by(&mut Framer::new(), input, chunk)
    }

    fn frames_by(f: &mut Framer, input: &[u8], chunk: usize) -> Vec<String> {
        let mut out = Vec::new();
        for piece in input.chunks(chunk.max(1)) {
            let mut rest = piece;
            loop {
                let (n, frame) = f.feed(rest);
                rest = &rest[n..];
                match frame {
                    Some(Frame::Message(v)) => {
                        let mut s = Vec::new();
                        write_value(&mut s, &v);
                        out.push(String::from_utf8(s).unwrap());
                    }
                    Some(Frame::Error(e)) => out.push(format!("ERR {e}")),
                    None => break,
                }
                if rest.is_empty() && n == 0 {
                    break;
                }
            }
        }
        out
    }

    fn all(input: &[u8]) -> Vec<String> {
        frames(input, usize::MAX)
    }

    /// Whether a frame holds a string the framer decoded.
    fn has_decoded(v: &Value) -> bool {
        match v {
            Value::Base64(_) => true,
            Value::Object(o) => o.iter().any(|(_, v)| has_decoded(v)),
            Value::List(l) => l.iter().any(has_decoded),
            _ => false,
        }
    }

    /// A framer that decodes `buf-b64` and `input-data` gives the frames a
    /// plain one gives (rendered: a decoded string renders as its text),
    /// counts every token's length alike at every point, and decodes
    /// exactly the canonical base64 values of those members.
    #[test]
    fn decoded_members_give_the_frames_of_text() {
        use crate::json::base64::tests::Rng;
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        // (where, what): a change at a character position of the string.
        let edits: [&[u8]; 14] = [
            b"=",
            b"==",
            b"\\n",
            b"\\u0041",
            b"\\\"",
            b"\xc3\xa9",
            b"\x01",
            b"\n",
            b"!",
            b" ",
            b"'",
            b"\"",
            b"A",
            b"QR==",
        ];
        // Every edit at each kind of place, then canonical strings and
        // truncated ones; short strings mostly (a debug build is slow).
        let places = 5;
        for case in 0..edits.len() * places + 24 {
            let len = BIG_STRING * 3 / 4 + rng.below(if case % 7 == 0 { 300_000 } else { 600 });
            let data = rng.bytes(len);
            let mut text = Vec::new();
            base64::encode_append(&mut text, &data);
            let canonical = case >= edits.len() * places && case % 2 == 0;
            if case < edits.len() * places {
                let at = match case % places {
                    0 => rng.below(64),                 // before the move
                    1 => text.len() - rng.below(8),     // in the last groups
                    2 => BIG_STRING + 1 - rng.below(8), // at the move
                    3 => text.len() - 4 - rng.below(4000),
                    _ => rng.below(text.len()),
                };
                let e = edits[case / places];
                text.splice(at..at, e.iter().copied());
            } else if !canonical {
                text.truncate(text.len() - rng.below(text.len() - BIG_STRING - 5));
            }
            let key = ["buf-b64", "input-data", "buf-b64", "other"][case % 4];
            let (open, close) = if rng.below(4) == 0 { ("'", "'") } else { ("\"", "\"") };
            let mut msg =
                format!(r#"{{"execute":"guest-file-write","arguments":{{"handle":1,"{key}":{open}"#).into_bytes();
            msg.extend_from_slice(&text);
            msg.extend_from_slice(format!(r#"{close},"count":5}}}}{{"execute":"guest-ping"}}"#).as_bytes());
            let tiny = if case % 5 == 0 { 1 + rng.below(7) } else { 4093 };
            // 0: in two pieces, the first ending with the string's closing quote.
            for chunk in [usize::MAX, 4096, 1 + rng.below(9000), tiny, 0] {
                let (mut plain, mut dec) = (Framer::new(), Framer::new().decoding_members(&["buf-b64", "input-data"]));
                let (mut want, mut got, mut decoded) = (Vec::new(), Vec::new(), 0);
                let quote_at = msg.len() - r#","count":5}}{"execute":"guest-ping"}"#.len();
                let pieces: Vec<&[u8]> = match chunk {
                    0 => vec![&msg[..quote_at], &msg[quote_at..]],
                    n => msg.chunks(n).collect(),
                };
                for piece in pieces {
                    for (f, out, is_dec) in [(&mut plain, &mut want, false), (&mut dec, &mut got, true)] {
                        let mut rest = piece;
                        while !rest.is_empty() {
                            let (n, frame) = f.feed(rest);
                            rest = &rest[n..];
                            match frame {
                                Some(Frame::Message(v)) => {
                                    decoded += (is_dec && has_decoded(&v)) as usize;
                                    let mut s = Vec::new();
                                    write_value(&mut s, &v);
                                    out.push(String::from_utf8(s).unwrap());
                                }
                                Some(Frame::Error(e)) => out.push(format!("ERR {e}")),
                                None => {}
                            }
                        }
                    }
                    assert_eq!(dec.token_len(), plain.token_len(), "case {case}, chunk {chunk}");
                    assert_eq!(dec.token_size, plain.token_size, "case {case}, chunk {chunk}");
                }
                if got != want {
                    let (g, w) = (got.concat(), want.concat());
                    let at = g.bytes().zip(w.bytes()).position(|(a, b)| a != b).unwrap_or(g.len().min(w.len()));
                    let near = |s: &str| s.get(at.saturating_sub(40)..(at + 40).min(s.len())).unwrap_or("").to_string();
                    panic!("case {case}, chunk {chunk}: at {at}: {:?} vs {:?}", near(&g), near(&w));
                }
                // (A string moves out of the text, and may be decoded,
                // only after a long run: not when fed a few bytes at a time.)
                let canonical = base64::decode_strict(&text).is_some();
                let decodable = canonical && key != "other" && (chunk >= 128 || chunk == 0);
                assert_eq!(decoded, decodable as usize, "case {case}, chunk {chunk}");
            }
        }
    }

    #[test]
    fn word_at_a_time_string_scan_finds_every_stop_byte() {
        let mut f = Framer::new();
        f.state = Lex::DqString;
        let stops: Vec<u8> = (0u8..0x20).chain([0xFE, 0xFF, b'"', b'\\']).collect();
        for &stop in &stops {
            for pos in 0..24 {
                let mut buf = vec![b'a'; 24];
                buf[pos] = stop;
                assert_eq!(f.plain_string_run(&buf), pos, "byte {stop:#x} at {pos}");
            }
        }
        // Bytes that do not stop a double-quoted string.
        let plain: Vec<u8> = (0x20u8..0xFE).filter(|b| *b != b'"' && *b != b'\\').collect();
        assert_eq!(f.plain_string_run(&plain), plain.len());
        f.state = Lex::SqString;
        assert_eq!(f.plain_string_run(b"abcdefgh\"ij"), 11);
        assert_eq!(f.plain_string_run(b"abcdefghi'j"), 9);
    }

    #[test]
    fn several_messages_and_splits() {
        let input = b"{\"execute\": \"guest-ping\"}{'execute':'x', \"id\": [1, 2.5, -0, true, null]}\n42\n";
        let whole = all(input);
        assert_eq!(whole, [r#"{"execute": "guest-ping"}"#, r#"{"execute": "x", "id": [1, 2.5, 0, true, null]}"#, "42"]);
        for chunk in 1..input.len() {
            assert_eq!(frames(input, chunk), whole, "chunk {chunk}");
        }
    }

    #[test]
    fn every_split_point_gives_the_same_frames() {
        let input: &[u8] =
            b"{\"a\":\"x\\u00e9\\\"y\"}\xff{\"execute\":\"gue\xff[1,\n{}]\n garbage\n-p 01 {\"b\":1e5}'s\\'q'";
        let whole = all(input);
        for cut in 0..=input.len() {
            let mut f = Framer::new();
            let mut got = Vec::new();
            for part in [&input[..cut], &input[cut..]] {
                let mut rest = part;
                while !rest.is_empty() {
                    let (n, frame) = f.feed(rest);
                    rest = &rest[n..];
                    if let Some(fr) = frame {
                        got.push(match fr {
                            Frame::Message(v) => {
                                let mut s = Vec::new();
                                write_value(&mut s, &v);
                                String::from_utf8(s).unwrap()
                            }
                            Frame::Error(e) => format!("ERR {e}"),
                        });
                    }
                }
            }
            assert_eq!(got, whole, "cut at {cut}");
        }
    }

    #[test]
    fn lexical_errors_and_recovery() {
        assert_eq!(all(b"\xff"), ["ERR JSON parse error, stray '\u{FFFD}'"]);
        assert_eq!(
            all(b"{\"execute\":\"gue\xff{\"execute\":\"guest-ping\"}"),
            ["ERR JSON parse error, stray '\"gue\u{FFFD}'", r#"{"execute": "guest-ping"}"#]
        );
        // Recovery skips ordinary bytes silently until a structural char.
        assert_eq!(all(b"-p garbage {}"), ["ERR JSON parse error, stray '-p'", "{}"]);
        assert_eq!(all(b"01 "), ["ERR JSON parse error, stray '01'"]);
        assert_eq!(all(b"\x01"), ["ERR JSON parse error, stray '\u{1}'"]);
        assert_eq!(all(b"\"a\x01\""), ["ERR JSON parse error, stray '\"a\u{1}'"]);
        // A 0xFF during recovery is examined again and reported.
        assert_eq!(
            all(b"\x01abc\xff"),
            ["ERR JSON parse error, stray '\u{1}'", "ERR JSON parse error, stray '\u{FFFD}'"]
        );
    }

    #[test]
    fn syntax_errors() {
        let e = |s: &[u8]| all(s).into_iter().next().unwrap();
        assert_eq!(e(b"garbage\n"), "ERR JSON parse error, invalid keyword 'garbage'");
        assert_eq!(e(b"}"), "ERR JSON parse error, expecting value");
        assert_eq!(e(b"{\"a\" 1}"), "ERR JSON parse error, missing : in object pair");
        assert_eq!(e(b"{1:2}"), "ERR JSON parse error, key is not a string in object");
        assert_eq!(e(b"{\"a\":1 \"b\":2}"), "ERR JSON parse error, expected separator in dict");
        assert_eq!(e(b"[1 2]"), "ERR JSON parse error, expected separator in list");
        assert_eq!(e(b"{\"a\":}"), "ERR JSON parse error, expecting value");
        assert_eq!(e(b"{\"a\":1,}"), "ERR JSON parse error, expecting value");
        assert_eq!(e(b"{\"a\":1,\"a\":2}"), "ERR JSON parse error, duplicate key");
        assert_eq!(e(b"{\"a\":1]"), "ERR JSON parse error, expected separator in dict");
        assert_eq!(e(b"[\"\\x\"]"), "ERR JSON parse error, invalid escape sequence in string");
    }

    #[test]
    fn scalars_end_on_lookahead() {
        let mut f = Framer::new();
        assert_eq!(f.feed(b"42"), (2, None));
        assert_eq!(f.feed(b"\n").1, Some(Frame::Message(Value::Int(42))));
        assert_eq!(all(b"\"s\""), ["\"s\""]);
    }

    #[test]
    fn nesting_limit_is_1024_and_hostile_depth_gives_one_error() {
        let ok = format!("{}{}", "[".repeat(1024), "]".repeat(1024));
        assert_eq!(all(ok.as_bytes()).len(), 1);
        assert!(!all(ok.as_bytes())[0].starts_with("ERR"));
        let bad = format!("{}{}", "[".repeat(1025), "]".repeat(1025));
        assert_eq!(all(bad.as_bytes()), ["ERR JSON nesting depth limit exceeded"]);
        let hostile = format!("{}{}\n{{}}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(all(hostile.as_bytes()), ["ERR JSON nesting depth limit exceeded", "{}"]);
    }

    #[test]
    fn many_errors_on_one_line_are_capped() {
        let line = "}".repeat(10_000) + "\n{}";
        let got = all(line.as_bytes());
        assert_eq!(got.len(), MAX_ERRORS_PER_LINE as usize + 1);
        assert_eq!(got.last().unwrap(), "{}");
    }

    #[test]
    fn token_count_limit() {
        let mut msg = String::from("[");
        for _ in 0..(MAX_TOKEN_COUNT / 2) {
            msg.push_str("1,");
        }
        msg.push_str("1]\n{}");
        assert_eq!(all(msg.as_bytes()), ["ERR JSON token count limit exceeded", "{}"]);
    }

    #[test]
    fn size_limit_once_then_recovery() {
        let mut msg = Vec::from(&b"{\"execute\":\"guest-exec\",\"arguments\":{\"input-data\":\""[..]);
        msg.resize(msg.len() + MAX_TOKEN_SIZE, b'A');
        msg.extend_from_slice(b"\"}}{\"execute\":\"guest-ping\"}");
        assert_eq!(frames(&msg, 4096), ["ERR JSON token size limit exceeded", r#"{"execute": "guest-ping"}"#]);
    }

    /// Strings longer than BIG_STRING take the moved-body path: every kind
    /// of content gives what the in-text path gives for a short string
    /// (escapes unescaped, bad UTF-8 and stray bytes with the same errors),
    /// whichever way the input is split.
    #[test]
    fn big_strings_parse_like_short_ones() {
        let pad = |s: &str| format!("{}{s}", "A".repeat(BIG_STRING + 10));
        let cases: Vec<(Vec<u8>, Vec<String>)> = vec![
            (
                format!(r#"{{"a":"{}","b":"x"}}"#, pad("")).into_bytes(),
                vec![format!(r#"{{"a": "{}", "b": "x"}}"#, pad(""))],
            ),
            (format!(r#"{{"a":'{}"q'}}"#, pad("")).into_bytes(), vec![format!(r#"{{"a": "{}\"q"}}"#, pad(""))]),
            (
                format!(r#"{{"a":"{}"}}"#, pad(r#"\n\u00e9\"end"#)).into_bytes(),
                vec![format!(r#"{{"a": "{}"}}"#, pad(r#"\n\u00E9\"end"#))],
            ),
            (format!(r#"{{"{}":1}}"#, pad("k")).into_bytes(), vec![format!(r#"{{"{}": 1}}"#, pad("k"))]),
            // Two big strings: only the first is moved.
            (
                format!(r#"["{}","{}"]"#, pad("1"), pad("2")).into_bytes(),
                vec![format!(r#"["{}", "{}"]"#, pad("1"), pad("2"))],
            ),
        ];
        for (input, want) in cases {
            for chunk in [usize::MAX, 4096, 4093] {
                let got = frames(&input, chunk);
                let tail =
                    |v: &[String]| v.iter().map(|s| s[s.len().saturating_sub(60)..].to_string()).collect::<Vec<_>>();
                assert_eq!(got, want, "chunk {chunk}: {:?} vs {:?}", tail(&got), tail(&want));
            }
        }
        let mut bad_utf8 = format!(r#"{{"a":"{}"#, pad("")).into_bytes();
        bad_utf8.extend_from_slice(b"\xC3(\"}");
        assert_eq!(all(&bad_utf8), ["ERR JSON parse error, invalid UTF-8 sequence in string"]);
        // A control byte inside: the stray text is the whole token so far.
        let mut stray = format!(r#"{{"a":"{}"#, pad("z")).into_bytes();
        stray.extend_from_slice(b"\x01\"}{\"execute\":\"x\"}");
        let got = all(&stray);
        let short = all(b"{\"a\":\"z\x01\"}{\"execute\":\"x\"}");
        assert_eq!(got.len(), short.len());
        assert_eq!(got[0], format!("ERR JSON parse error, stray '\"{}\u{1}'", pad("z")));
        assert_eq!(short[0], "ERR JSON parse error, stray '\"z\u{1}'");
        assert_eq!(got[1..], short[1..]);
        assert_eq!(got.last().map(String::as_str), Some(r#"{"execute": "x"}"#));
    }

    #[test]
    fn large_message_parses() {
        let mut msg = Vec::from(&b"{\"d\":\""[..]);
        msg.resize(msg.len() + (60 << 20), b'A');
        msg.extend_from_slice(b"\"}");
        let mut f = Framer::new();
        let mut got = None;
        for piece in msg.chunks(4096) {
            let (n, fr) = f.feed(piece);
            assert_eq!(n, piece.len());
            if fr.is_some() {
                got = fr;
            }
        }
        match got {
            Some(Frame::Message(Value::Object(o))) => {
                assert_eq!(o.get("d").and_then(|v| v.as_str()).map(|s| s.len()), Some(60 << 20))
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
