//! Streamed stdin: offering the pump's bytes with guest-exec-input.

use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use crate::fail::one_line;
use crate::input::{Pump, Take};
use crate::terminal;

/// Streamed stdin: raw bytes offered per guest-exec-input (qga holds at
/// most 4 MiB unwritten per process).
const INPUT_CHUNK: usize = 1 << 20;
/// Streamed stdin: when the agent took nothing, offer again after this
/// much, doubling up to INPUT_RETRY_MAX.
const INPUT_RETRY_FIRST: Duration = Duration::from_millis(1);
const INPUT_RETRY_MAX: Duration = Duration::from_millis(50);

/// Streamed stdin. At most one guest-exec-input is in flight: the agent
/// may take only part of an offer, and the rest must go before anything
/// that follows it.
pub(super) struct Feeder<'a> {
    pub(super) pump: &'a Pump,
    /// Taken from the pump and not yet accepted by the agent.
    pub(super) offer: Vec<u8>,
    pub(super) in_flight: bool,
    /// The agent's window was full: offer again at this time.
    pub(super) retry_at: Option<Instant>,
    pub(super) delay: Duration,
    /// stdin is closed (eof accepted, or the agent closed it).
    pub(super) done: bool,
    pub(super) read_error: Option<String>,
}

impl<'a> Feeder<'a> {
    pub(super) fn new(pump: &'a Pump) -> Self {
        Feeder {
            pump,
            offer: Vec::new(),
            in_flight: false,
            retry_at: None,
            delay: INPUT_RETRY_FIRST,
            done: false,
            read_error: None,
        }
    }

    /// Whether a guest-exec-input should go out now, and with `eof`.
    pub(super) fn ready(&mut self) -> Option<bool> {
        if self.done || self.in_flight || self.retry_at.is_some_and(|t| Instant::now() < t) {
            return None;
        }
        self.retry_at = None;
        if self.offer.len() < INPUT_CHUNK {
            match self.pump.take(INPUT_CHUNK - self.offer.len()) {
                Take::Data(d) if self.offer.is_empty() => self.offer = d,
                Take::Data(d) => self.offer.extend_from_slice(&d),
                Take::Error(e) => self.read_error = Some(e),
                Take::Empty | Take::Eof => {}
            }
        }
        let eof = match self.pump.finished() {
            None => false,
            Some(None) => true,
            Some(Some(e)) => {
                self.read_error.get_or_insert(e);
                true
            }
        };
        (eof || !self.offer.is_empty()).then_some(eof)
    }

    /// The descriptor to wait on: only while waiting for local data.
    pub(super) fn watch(&self) -> Option<RawFd> {
        (!self.done && !self.in_flight && self.retry_at.is_none()).then(|| self.pump.fd())
    }

    pub(super) fn accepted(&mut self, sent: usize, eof: bool, count: usize) {
        self.in_flight = false;
        let n = count.min(sent).min(self.offer.len());
        self.offer.drain(..n);
        if n == sent {
            self.delay = INPUT_RETRY_FIRST;
            self.done = eof;
        } else if n > 0 {
            // Partly taken: the child is reading; try again soon.
            self.delay = INPUT_RETRY_FIRST;
            self.retry_at = Some(Instant::now() + INPUT_RETRY_FIRST);
        } else {
            self.retry_at = Some(Instant::now() + self.delay);
            self.delay = (self.delay * 2).min(INPUT_RETRY_MAX);
        }
    }

    /// The agent refused the input: the program closed its stdin or is
    /// gone (it decides how much input it reads), or something odd.
    pub(super) fn refused(&mut self, desc: &str) {
        self.in_flight = false;
        self.done = true;
        self.offer = Vec::new();
        if !(desc.contains("is closed") || desc.contains("does not exist")) {
            terminal::note(&format!("guest-exec-input: {}", one_line(desc)));
        }
    }
}
