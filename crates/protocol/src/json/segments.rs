//! Reply bytes that are partly still to be produced: large base64 strings
//! (captured output, file data) are kept as their raw bytes and encoded
//! block by block while the reply is sent, so a reply never exists twice
//! in memory (raw and encoded) and no big encoded buffer is ever
//! allocated. Text between them is plain bytes.

use std::collections::VecDeque;
use std::rc::Rc;

use super::base64::{encode_append, encode_into, encoded_len};

/// Raw bytes encoded per block while sending (a multiple of 3, so only the
/// last block of a string can carry padding): 64 KiB of base64 text.
const BLOCK: usize = 48 << 10;
/// Smaller base64 strings are encoded at once, inline.
pub const DEFER_MIN: usize = 64 << 10;

#[derive(Debug)]
enum Chunk {
    Text(Vec<u8>),
    Base64(Rc<Vec<u8>>),
}

/// An ordered queue of reply bytes, some of them deferred base64.
#[derive(Debug, Default)]
pub struct Segments {
    chunks: VecDeque<Chunk>,
    /// Bytes of the front text chunk sent, or raw bytes of the front
    /// base64 chunk already encoded into `staged`.
    front_pos: usize,
    /// Encoded text of the current base64 block, `staged_pos..staged_end`
    /// unsent. Sized once and reused, not zero-filled again per block.
    staged: Vec<u8>,
    staged_pos: usize,
    staged_end: usize,
    /// Bytes still to send, encoded sizes included.
    unsent: usize,
    /// Bytes held by the chunks not yet sent off (raw sizes of deferred
    /// base64 strings): what the queue costs in memory.
    held: usize,
}

impl Segments {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes still to send.
    pub fn len(&self) -> usize {
        self.unsent
    }

    pub fn is_empty(&self) -> bool {
        self.unsent == 0
    }

    /// Bytes of memory the queued chunks hold (raw sizes of deferred base64
    /// strings, plus the staging buffer).
    pub fn held(&self) -> usize {
        self.held + self.staged.capacity()
    }

    /// Appends plain bytes.
    pub fn extend_from_slice(&mut self, b: &[u8]) {
        if b.is_empty() {
            return;
        }
        self.unsent += b.len();
        self.held += b.len();
        match self.chunks.back_mut() {
            Some(Chunk::Text(t)) => t.extend_from_slice(b),
            _ => self.chunks.push_back(Chunk::Text(b.to_vec())),
        }
    }

    pub fn push(&mut self, b: u8) {
        self.extend_from_slice(&[b]);
    }

    /// Appends `data` as base64 text (without quotes), deferred when large.
    pub fn base64(&mut self, data: &Rc<Vec<u8>>) {
        if data.len() >= DEFER_MIN {
            self.unsent += encoded_len(data.len());
            self.held += data.capacity();
            self.chunks.push_back(Chunk::Base64(Rc::clone(data)));
        } else if !data.is_empty() {
            // Encoded straight into the text chunk, without a String between.
            let n = encoded_len(data.len());
            self.unsent += n;
            self.held += n;
            if !matches!(self.chunks.back(), Some(Chunk::Text(_))) {
                self.chunks.push_back(Chunk::Text(Vec::with_capacity(n)));
            }
            if let Some(Chunk::Text(t)) = self.chunks.back_mut() {
                encode_append(t, data);
            }
        }
    }

    /// Appends everything of `other`, which must have nothing sent yet.
    pub fn append(&mut self, mut other: Segments) {
        for c in other.chunks.drain(..) {
            match c {
                Chunk::Text(t) => self.extend_from_slice(&t),
                Chunk::Base64(d) => {
                    self.unsent += encoded_len(d.len());
                    self.held += d.capacity();
                    self.chunks.push_back(Chunk::Base64(d));
                }
            }
        }
    }

    /// The next bytes to send (encoding the next base64 block if needed);
    /// None when everything was sent.
    pub fn next_bytes(&mut self) -> Option<&[u8]> {
        loop {
            if self.staged_pos < self.staged_end {
                return Some(&self.staged[self.staged_pos..self.staged_end]);
            }
            let front = self.chunks.front()?;
            match front {
                Chunk::Text(t) if self.front_pos < t.len() => {
                    let Some(Chunk::Text(t)) = self.chunks.front() else { return None };
                    return Some(&t[self.front_pos..]);
                }
                Chunk::Base64(d) if self.front_pos < d.len() => {
                    let end = (self.front_pos + BLOCK).min(d.len());
                    let need = encoded_len(end - self.front_pos);
                    if self.staged.len() < need {
                        self.staged.resize(need, 0);
                    }
                    self.staged_end = encode_into(&d[self.front_pos..end], &mut self.staged);
                    self.staged_pos = 0;
                    self.front_pos = end;
                }
                _ => {
                    // The front chunk is done.
                    let size = match self.chunks.pop_front() {
                        Some(Chunk::Text(t)) => t.len(),
                        Some(Chunk::Base64(d)) => d.capacity(),
                        None => 0,
                    };
                    self.held = self.held.saturating_sub(size);
                    self.front_pos = 0;
                }
            }
        }
    }

    /// `n` bytes of what [`Segments::next_bytes`] returned were sent.
    pub fn consume(&mut self, n: usize) {
        self.unsent = self.unsent.saturating_sub(n);
        if self.staged_pos < self.staged_end {
            self.staged_pos += n;
            if self.staged_pos >= self.staged_end {
                self.staged_pos = 0;
                self.staged_end = 0;
            }
        } else {
            self.front_pos += n;
        }
    }

    /// Plain bytes.
    pub fn from_bytes(b: &[u8]) -> Segments {
        let mut s = Segments::new();
        s.extend_from_slice(b);
        s
    }

    /// Everything as one contiguous buffer (tests, small replies).
    pub fn to_vec(mut self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.unsent);
        while let Some(b) = self.next_bytes() {
            let n = b.len();
            out.extend_from_slice(b);
            self.consume(n);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    #[test]
    fn deferred_base64_is_sent_exactly_as_inline_would_be() {
        for len in [0usize, 1, 2, 3, DEFER_MIN - 1, DEFER_MIN, DEFER_MIN + 1, BLOCK * 3 + 2, 1 << 20] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
            let mut s = Segments::new();
            s.extend_from_slice(b"{\"out-data\": \"");
            s.base64(&Rc::new(data.clone()));
            s.extend_from_slice(b"\"}\n");
            let want = format!("{{\"out-data\": \"{}\"}}\n", base64::engine::general_purpose::STANDARD.encode(&data));
            assert_eq!(s.len(), want.len(), "len {len}");
            // Sent in odd pieces, as a socket might take them.
            let mut got = Vec::new();
            let mut piece = 1;
            while let Some(b) = s.next_bytes() {
                let n = b.len().min(piece);
                got.extend_from_slice(&b[..n]);
                s.consume(n);
                piece = piece * 3 + 1;
            }
            assert!(s.is_empty());
            assert_eq!(got, want.as_bytes(), "len {len}");
        }
    }

    #[test]
    fn appended_replies_keep_their_order() {
        let mut a = Segments::new();
        a.extend_from_slice(b"one\n");
        let mut b = Segments::new();
        b.base64(&Rc::new(vec![0u8; DEFER_MIN]));
        b.push(b'\n');
        a.append(b);
        a.extend_from_slice(b"three\n");
        let v = a.to_vec();
        assert!(v.starts_with(b"one\nAAAA"));
        assert!(v.ends_with(b"AAA=\nthree\n") || v.ends_with(b"AA==\nthree\n") || v.ends_with(b"AAAA\nthree\n"));
        assert_eq!(v.len(), 4 + encoded_len(DEFER_MIN) + 1 + 6);
    }
}
