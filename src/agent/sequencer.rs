//! The reply sequencer: replies leave in the order their requests came,
//! whatever finishes first. qemu-ga gets this for free by answering each
//! request before reading the next; qga answers a `wait` status or a
//! helper-backed command later, so every reply has a slot in one ordered
//! queue:
//!
//! * `Ready` — encoded bytes, sent as soon as every earlier slot is sent;
//! * `Wait` — a guest-exec-status held by `wait`, completed when its
//!   process ends or streams, at its deadline, or at once when the next
//!   request (or a 0xFF) arrives;
//! * `Helper` — a reply waiting for a helper program (hwclock, shutdown,
//!   the freeze hook...). Like qemu-ga, which runs them synchronously, no
//!   later request is even read while one is pending.
//!
//! The sequencer is pure (no descriptors, no clock): the caller resolves
//! pending slots with [`Sequencer::resolve`] and drains bytes with
//! [`Sequencer::drain_ready`]. The 0xFF of guest-sync-delimited is part of
//! its reply's bytes, so it can never overtake an earlier reply.

use std::collections::VecDeque;

use crate::json::Segments;

/// One reply, in request order.
#[derive(Debug)]
pub enum Slot<W, H> {
    Ready(Segments),
    Wait(W),
    Helper(H),
}

/// Replies of one connection, in request order.
#[derive(Debug)]
pub struct Sequencer<W, H> {
    slots: VecDeque<Slot<W, H>>,
}

impl<W, H> Default for Sequencer<W, H> {
    fn default() -> Self {
        Sequencer { slots: VecDeque::new() }
    }
}

impl<W, H> Sequencer<W, H> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends the slot of the newest request.
    pub fn push(&mut self, slot: Slot<W, H>) {
        if matches!(&slot, Slot::Ready(b) if b.is_empty()) {
            // No reply at all (a success-response: false command).
            return;
        }
        self.slots.push_back(slot);
    }

    /// False while a helper-backed reply is pending: the next request is
    /// not read until it is answered (qemu-ga's synchronous helpers).
    pub fn accepts_requests(&self) -> bool {
        !self.slots.iter().any(|s| matches!(s, Slot::Helper(_)))
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

    /// The held `wait` replies.
    pub fn waits(&self) -> impl Iterator<Item = &W> {
        self.slots.iter().filter_map(|s| match s {
            Slot::Wait(w) => Some(w),
            _ => None,
        })
    }

    /// Offers every pending slot, oldest first, to `f`, which returns the
    /// slot that takes its place: `Ready` when it could be answered, the
    /// same kind to keep waiting, or a new pending slot (a helper whose
    /// continuation starts another helper). Order never changes.
    pub fn resolve(&mut self, mut f: impl FnMut(Slot<W, H>) -> Slot<W, H>) {
        for i in 0..self.slots.len() {
            if matches!(self.slots[i], Slot::Ready(_)) {
                continue;
            }
            let placeholder = Slot::Ready(Segments::new());
            let Some(slot) = self.slots.get_mut(i) else { break };
            let pending = std::mem::replace(slot, placeholder);
            *slot = f(pending);
        }
        // A slot resolved to "no reply" leaves no gap.
        self.slots.retain(|s| !matches!(s, Slot::Ready(b) if b.is_empty()));
    }

    /// A request (or 0xFF) arrived: every held `wait` is answered now, so
    /// that its reply still comes before the new request's.
    pub fn complete_waits(&mut self, mut complete: impl FnMut(W) -> Segments) {
        self.resolve(|s| match s {
            Slot::Wait(w) => Slot::Ready(complete(w)),
            other => other,
        });
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

    type Seq = Sequencer<&'static str, &'static str>;

    fn drained(s: &mut Seq) -> String {
        let mut out = Segments::new();
        s.drain_ready(&mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    fn ready(b: &[u8]) -> Slot<&'static str, &'static str> {
        Slot::Ready(Segments::from_bytes(b))
    }

    #[test]
    fn replies_leave_in_request_order() {
        let mut s = Seq::new();
        s.push(ready(b"1"));
        s.push(Slot::Wait("w2"));
        s.push(ready(b"3"));
        // The ready reply behind a held one waits for it.
        assert_eq!(drained(&mut s), "1");
        assert_eq!(drained(&mut s), "");
        s.resolve(|slot| match slot {
            Slot::Wait("w2") => ready(b"2"),
            other => other,
        });
        assert_eq!(drained(&mut s), "23");
        assert!(s.is_empty());
    }

    #[test]
    fn a_new_request_completes_a_held_wait_at_once() {
        let mut s = Seq::new();
        s.push(Slot::Wait("status"));
        assert!(s.accepts_requests(), "a held wait does not block reading");
        assert_eq!(s.waits().count(), 1);
        // The next request arrives: the wait is answered first.
        s.complete_waits(|w| Segments::from_bytes(format!("[{w}]").as_bytes()));
        s.push(ready(b"ping"));
        assert_eq!(drained(&mut s), "[status]ping");
    }

    #[test]
    fn a_pending_helper_stops_reading_and_keeps_later_replies_back() {
        let mut s = Seq::new();
        s.push(Slot::Helper("hwclock"));
        assert!(!s.accepts_requests());
        assert!(s.has_pending());
        // Unresolved: stays where it is.
        s.resolve(|slot| slot);
        assert_eq!(drained(&mut s), "");
        // The continuation starts a second helper in the same slot.
        s.resolve(|slot| match slot {
            Slot::Helper("hwclock") => Slot::Helper("hook"),
            other => other,
        });
        assert!(!s.accepts_requests());
        s.resolve(|_| ready(b"{}"));
        assert!(s.accepts_requests());
        assert_eq!(drained(&mut s), "{}");
    }

    #[test]
    fn the_sync_delimiter_never_overtakes_an_earlier_reply() {
        let mut s = Seq::new();
        s.push(Slot::Wait("status"));
        // guest-sync-delimited: 0xFF is the first byte of its reply.
        s.complete_waits(|_| Segments::from_bytes(b"S"));
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
        s.push(Slot::Helper("shutdown"));
        s.push(ready(b"x"));
        s.resolve(|slot| match slot {
            Slot::Helper(_) => ready(b""),
            other => other,
        });
        assert_eq!(drained(&mut s), "x");
    }
}
