//! The reply sequencer: replies leave in the order their requests came,
//! whatever finishes first. qemu-ga gets this for free by answering each
//! request before reading the next; qga answers a `wait` status or a
//! helper-backed command later, so every reply has a slot in one ordered
//! queue:
//!
//! * `Ready` — encoded bytes, sent as soon as every earlier slot is sent;
//! * `Deferred` — a reply not ready yet (the dispatcher's one deferred
//!   type: a guest-exec-status held by `wait`, or a reply waiting for a
//!   helper program). One that [`Deferral::blocks_requests`] (a helper:
//!   qemu-ga runs them synchronously) keeps later requests from even being
//!   read.
//!
//! The sequencer is pure (no descriptors, no clock, no meaning of what a
//! deferred reply waits for): the caller resolves deferred slots with
//! [`Sequencer::resolve`] and drains bytes with [`Sequencer::drain_ready`]. The 0xFF of guest-sync-delimited is part of
//! its reply's bytes, so it can never overtake an earlier reply.

use std::collections::VecDeque;

use crate::json::Segments;

/// One reply, in request order.
#[derive(Debug)]
pub enum Slot<D> {
    Ready(Segments),
    Deferred(D),
}

/// What the sequencer needs to know of a deferred reply.
pub trait Deferral {
    /// No later request may be read while this reply is pending.
    fn blocks_requests(&self) -> bool;
}

/// Replies of one connection, in request order.
#[derive(Debug)]
pub struct Sequencer<D> {
    slots: VecDeque<Slot<D>>,
}

impl<D> Default for Sequencer<D> {
    fn default() -> Self {
        Sequencer { slots: VecDeque::new() }
    }
}

impl<D: Deferral> Sequencer<D> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends the slot of the newest request.
    pub fn push(&mut self, slot: Slot<D>) {
        if matches!(&slot, Slot::Ready(b) if b.is_empty()) {
            // No reply at all (a success-response: false command).
            return;
        }
        self.slots.push_back(slot);
    }

    /// False while a reply that blocks requests is pending: the next
    /// request is not read until it is answered (qemu-ga's synchronous
    /// helpers).
    pub fn accepts_requests(&self) -> bool {
        !self.slots.iter().any(|s| matches!(s, Slot::Deferred(d) if d.blocks_requests()))
    }

    /// Whether any reply is still pending (not yet ready).
    pub fn has_pending(&self) -> bool {
        self.slots.iter().any(|s| !matches!(s, Slot::Ready(_)))
    }

    /// True when nothing at all is queued.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Bytes of memory held by replies that are ready but not yet drained
    /// (queued behind a pending one).
    pub fn held(&self) -> usize {
        self.slots
            .iter()
            .map(|s| match s {
                Slot::Ready(b) => b.held(),
                _ => 0,
            })
            .sum()
    }

    /// The deferred replies.
    pub fn deferred(&self) -> impl Iterator<Item = &D> {
        self.slots.iter().filter_map(|s| match s {
            Slot::Deferred(d) => Some(d),
            Slot::Ready(_) => None,
        })
    }

    /// Offers every deferred reply, oldest first, to `f`, which returns the
    /// slot that takes its place: `Ready` when it could be answered, or a
    /// deferred one to keep waiting (the same, or a helper whose
    /// continuation starts another helper). Order never changes.
    pub fn resolve(&mut self, mut f: impl FnMut(D) -> Slot<D>) {
        for i in 0..self.slots.len() {
            if matches!(self.slots[i], Slot::Ready(_)) {
                continue;
            }
            let placeholder = Slot::Ready(Segments::new());
            let Some(slot) = self.slots.get_mut(i) else { break };
            if let Slot::Deferred(d) = std::mem::replace(slot, placeholder) {
                *slot = f(d);
            }
        }
        // A slot resolved to "no reply" leaves no gap.
        self.slots.retain(|s| !matches!(s, Slot::Ready(b) if b.is_empty()));
    }

    /// Moves the replies that may be sent now (the ready head of the
    /// queue) to `out`, in order.
    pub fn drain_ready(&mut self, out: &mut Segments) {
        while let Some(Slot::Ready(_)) = self.slots.front() {
            if let Some(Slot::Ready(reply)) = self.slots.pop_front() {
                if out.is_empty() {
                    *out = reply;
                } else {
                    out.append(reply);
                }
            }
        }
    }

    /// Drops every queued reply (the peer of a device channel changed).
    pub fn clear(&mut self) {
        self.slots.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deferred reply of the tests: its name; names starting with `h`
    /// block requests (helpers).
    #[derive(Debug, PartialEq)]
    struct D(&'static str);

    impl Deferral for D {
        fn blocks_requests(&self) -> bool {
            self.0.starts_with('h')
        }
    }

    type Seq = Sequencer<D>;

    fn drained(s: &mut Seq) -> String {
        let mut out = Segments::new();
        s.drain_ready(&mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    fn ready(b: &[u8]) -> Slot<D> {
        Slot::Ready(Segments::from_bytes(b))
    }

    #[test]
    fn replies_leave_in_request_order() {
        let mut s = Seq::new();
        s.push(ready(b"1"));
        s.push(Slot::Deferred(D("w2")));
        s.push(ready(b"3"));
        // The ready reply behind a deferred one waits for it.
        assert_eq!(drained(&mut s), "1");
        assert_eq!(drained(&mut s), "");
        s.resolve(|d| match d {
            D("w2") => ready(b"2"),
            other => Slot::Deferred(other),
        });
        assert_eq!(drained(&mut s), "23");
        assert!(s.is_empty());
    }

    #[test]
    fn a_held_wait_does_not_block_reading() {
        let mut s = Seq::new();
        s.push(Slot::Deferred(D("status")));
        assert!(s.accepts_requests(), "a held wait does not block reading");
        assert_eq!(s.deferred().count(), 1);
        // The next request arrives: the caller answers the wait first.
        s.resolve(|d| Slot::Ready(Segments::from_bytes(format!("[{}]", d.0).as_bytes())));
        s.push(ready(b"ping"));
        assert_eq!(drained(&mut s), "[status]ping");
    }

    #[test]
    fn a_pending_helper_stops_reading_and_keeps_later_replies_back() {
        let mut s = Seq::new();
        s.push(Slot::Deferred(D("hwclock")));
        assert!(!s.accepts_requests());
        assert!(s.has_pending());
        // Unresolved: stays where it is.
        s.resolve(Slot::Deferred);
        assert_eq!(drained(&mut s), "");
        // The continuation starts a second helper in the same slot.
        s.resolve(|d| match d {
            D("hwclock") => Slot::Deferred(D("hook")),
            other => Slot::Deferred(other),
        });
        assert!(!s.accepts_requests());
        s.resolve(|_| ready(b"{}"));
        assert!(s.accepts_requests());
        assert_eq!(drained(&mut s), "{}");
    }

    #[test]
    fn the_sync_delimiter_never_overtakes_an_earlier_reply() {
        let mut s = Seq::new();
        s.push(Slot::Deferred(D("status")));
        // guest-sync-delimited: 0xFF is the first byte of its reply.
        s.resolve(|_| Slot::Ready(Segments::from_bytes(b"S")));
        s.push(ready(b"\xff{\"return\": 1}"));
        let mut out = Segments::new();
        s.drain_ready(&mut out);
        assert_eq!(out.to_vec(), b"S\xff{\"return\": 1}");
    }

    #[test]
    fn silent_replies_leave_no_gap() {
        let mut s = Seq::new();
        s.push(ready(b""));
        assert!(s.is_empty());
        s.push(Slot::Deferred(D("hshutdown")));
        s.push(ready(b"x"));
        s.resolve(|_| ready(b""));
        assert_eq!(drained(&mut s), "x");
    }

    #[test]
    fn ready_replies_behind_a_deferred_one_count_as_held() {
        let mut s = Seq::new();
        s.push(Slot::Deferred(D("w")));
        s.push(ready(b"12345"));
        assert_eq!(s.held(), 5);
    }
}
