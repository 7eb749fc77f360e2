//! The receive buffer and its framing: reply lines end in a newline
//! (an optional \r before it is dropped), 0xFF bytes are removed; before
//! the sync reply everything up to a 0xFF is discarded.

/// Received bytes not yet returned as lines.
#[derive(Debug, Default)]
pub(super) struct LineBuf {
    pub(super) buf: Vec<u8>,
    /// Start of unconsumed bytes in `buf`.
    pos: usize,
    /// Bytes before this index (from `pos`) hold no newline.
    scanned: usize,
}

impl LineBuf {
    /// Compacts the buffer when that is cheap or overdue, then makes room
    /// for `more` bytes at its end.
    pub(super) fn make_room(&mut self, more: usize) {
        if self.pos > 0 && (self.pos == self.buf.len() || self.pos > (1 << 20)) {
            self.buf.drain(..self.pos);
            self.scanned = self.scanned.saturating_sub(self.pos);
            self.pos = 0;
        }
        self.buf.reserve(more);
    }

    /// Discards everything up to and including the first 0xFF: true if
    /// there was one (else everything is discarded).
    pub(super) fn skip_past_ff(&mut self) -> bool {
        match self.buf[self.pos..].iter().position(|&b| b == 0xFF) {
            Some(i) => {
                self.pos += i + 1;
                self.scanned = self.pos;
                true
            }
            None => {
                self.pos = self.buf.len();
                self.scanned = self.pos;
                false
            }
        }
    }

    /// The next complete line in the buffer, if any (0xFF bytes removed).
    pub(super) fn take_line(&mut self) -> Option<Vec<u8>> {
        let from = self.scanned.max(self.pos);
        match self.buf[from..].iter().position(|&b| b == b'\n') {
            Some(i) => {
                let end = from + i;
                let mut line: Vec<u8> = self.buf[self.pos..end].to_vec();
                line.retain(|&b| b != 0xFF);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                self.pos = end + 1;
                self.scanned = self.pos;
                Some(line)
            }
            None => {
                self.scanned = self.buf.len();
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What one read(2) would add.
    fn feed(b: &mut LineBuf, bytes: &[u8]) {
        b.make_room(bytes.len());
        b.buf.extend_from_slice(bytes);
    }

    fn lines(b: &mut LineBuf) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| b.take_line()).collect()
    }

    #[test]
    fn several_replies_in_one_read() {
        let mut b = LineBuf::default();
        feed(&mut b, b"{\"return\": {}}\n{\"return\": 1}\r\n\n{\"error\": {}}\n{\"ret");
        assert_eq!(lines(&mut b), [&b"{\"return\": {}}"[..], b"{\"return\": 1}", b"", b"{\"error\": {}}"]);
        // The partial line stays until its newline arrives.
        feed(&mut b, b"urn\": 2}");
        assert_eq!(b.take_line(), None);
        feed(&mut b, b"\n");
        assert_eq!(lines(&mut b), [b"{\"return\": 2}"]);
    }

    #[test]
    fn a_line_over_many_reads() {
        let mut b = LineBuf::default();
        let line: Vec<u8> = (0..5000).map(|i| b'a' + (i % 26) as u8).collect();
        for c in line.chunks(7) {
            feed(&mut b, c);
            assert_eq!(b.take_line(), None);
        }
        feed(&mut b, b"\r\nx");
        assert_eq!(b.take_line(), Some(line));
        assert_eq!(b.take_line(), None);
        feed(&mut b, b"\n");
        assert_eq!(b.take_line(), Some(b"x".to_vec()));
    }

    #[test]
    fn ff_bytes_are_removed_and_only_one_cr_before_the_newline() {
        let mut b = LineBuf::default();
        feed(&mut b, b"\xff{\"return\": \xff3}\n\xff\n\r\r\n a\rb \n");
        assert_eq!(lines(&mut b), [&b"{\"return\": 3}"[..], b"", b"\r", b" a\rb "]);
    }

    #[test]
    fn sync_discards_up_to_the_ff() {
        let mut b = LineBuf::default();
        feed(&mut b, b"{\"return\": 7}\n{\"error\": {\"desc\": \"parse\"}}\n\xff{\"return\": 42}\n");
        assert!(b.skip_past_ff());
        assert_eq!(lines(&mut b), [b"{\"return\": 42}"]);
        // Without a 0xFF everything goes, also what arrives half.
        feed(&mut b, b"stale\n{\"ret");
        assert!(!b.skip_past_ff());
        assert_eq!(b.take_line(), None);
        feed(&mut b, b"urn\": 1}\n\xffgood\n");
        assert!(b.skip_past_ff());
        assert_eq!(lines(&mut b), [b"good"]);
    }

    #[test]
    fn compaction_keeps_the_unread_bytes() {
        let mut b = LineBuf::default();
        // Over 1 MiB of consumed lines, then a partial one.
        let long = vec![b'x'; 700_000];
        for _ in 0..2 {
            feed(&mut b, &long);
            feed(&mut b, b"\n");
        }
        feed(&mut b, b"tail");
        assert_eq!(lines(&mut b).len(), 2);
        assert_eq!(b.take_line(), None);
        feed(&mut b, b"-end\n");
        assert!(b.buf.len() < 20, "compacted: {} bytes held", b.buf.len());
        assert_eq!(b.take_line(), Some(b"tail-end".to_vec()));
        // Everything consumed: the next read starts at 0.
        feed(&mut b, b"n");
        assert_eq!(b.buf, b"n");
    }
}
