//! The channel as an event source: the listening socket or the device,
//! the one connected client, its input framing, its reply sequencer and
//! its unsent output. Requests are handed to the dispatcher with the
//! handlers' narrow context; replies go through the [`Sequencer`] so they
//! leave in request order.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Instant;

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use super::dispatch::{self, ReplySlot};
use super::sequencer::{Sequencer, Slot};
use crate::channel::{self, Endpoint};
use crate::commands::{Ctx, Held, Pending};
use crate::json::{Frame, Framer, Value};
use crate::log;
use crate::protocol::{encode_error, QgaError};
use crate::sys::{fd, Errno};

pub const LISTENER: Token = Token(0);
pub const CONN: Token = Token(1);

/// Bytes read from the channel per read() call.
const READ_CHUNK: usize = 64 << 10;
/// Bytes read from the channel per loop pass before other sources run.
const READ_BUDGET: usize = 1 << 20;
/// Stop taking new requests while this much reply data is unsent, so a
/// client that does not read cannot make the agent buffer without bound.
const OUTPUT_HIGH_WATER: usize = 1 << 20;
/// A reply buffer bigger than this is released once it has been sent.
const OUTPUT_KEEP_CAPACITY: usize = 256 << 10;

/// A reply waiting for a helper program, with its request's id.
#[derive(Debug)]
pub struct Waiting {
    pub pending: Pending,
    pub id: Option<Value>,
}

/// The conversation with the host: one accepted client, or the device.
struct Conn {
    fd: OwnedFd,
    framer: Framer,
    input: Vec<u8>,
    in_start: usize,
    in_end: usize,
    replies: Sequencer<Held, Waiting>,
    output: Vec<u8>,
    out_pos: usize,
    /// Edge-triggered: the fd may still hold unread data.
    readable: bool,
    /// The client closed its sending side: what it sent is answered, then
    /// the connection is closed.
    peer_done: bool,
    writable_interest: bool,
}

impl Conn {
    fn new(fd: OwnedFd) -> Self {
        Conn {
            fd,
            framer: Framer::new(),
            input: vec![0; READ_CHUNK],
            in_start: 0,
            in_end: 0,
            replies: Sequencer::new(),
            output: Vec::new(),
            out_pos: 0,
            readable: true,
            peer_done: false,
            writable_interest: false,
        }
    }

    fn unsent(&self) -> usize {
        self.output.len() - self.out_pos
    }

    fn has_input(&self) -> bool {
        self.in_start < self.in_end
    }

    /// May the next request be taken now?
    fn can_take_request(&self) -> bool {
        self.unsent() < OUTPUT_HIGH_WATER && self.replies.accepts_requests()
    }

    /// Forget partial input and unsent replies (new peer on a device).
    fn reset(&mut self) {
        self.framer = Framer::new();
        self.in_start = 0;
        self.in_end = 0;
        self.replies.clear();
        self.output = Vec::new();
        self.out_pos = 0;
        self.peer_done = false;
    }

    /// Everything read has been answered and sent.
    fn finished(&self) -> bool {
        !self.has_input() && self.replies.is_empty() && self.unsent() == 0
    }
}

/// The channel: a listener with at most one client, or a device.
pub struct Channel {
    listener: Option<OwnedFd>,
    /// Device channels keep one Conn forever; sockets one per client.
    is_device: bool,
    conn: Option<Conn>,
    accept_ready: bool,
}

impl Channel {
    pub fn new(endpoint: Endpoint, registry: &Registry) -> std::io::Result<Channel> {
        match endpoint {
            Endpoint::Listener(fd) => {
                registry.register(&mut SourceFd(&fd.as_raw_fd()), LISTENER, Interest::READABLE)?;
                Ok(Channel { listener: Some(fd), is_device: false, conn: None, accept_ready: true })
            }
            Endpoint::Device(fd) => {
                registry.register(&mut SourceFd(&fd.as_raw_fd()), CONN, Interest::READABLE)?;
                Ok(Channel { listener: None, is_device: true, conn: Some(Conn::new(fd)), accept_ready: false })
            }
        }
    }

    /// A channel token fired.
    pub fn on_event(&mut self, token: Token) {
        match token {
            LISTENER => self.accept_ready = true,
            _ => self.mark_readable(),
        }
    }

    /// The device may have something to read (SIGIO, an event).
    pub fn mark_readable(&mut self) {
        if let Some(c) = self.conn.as_mut() {
            c.readable = true;
        }
    }

    /// Work is pending that the next poll must not sleep through.
    pub fn busy(&self) -> bool {
        (self.listener.is_some() && self.conn.is_none() && self.accept_ready)
            || self.conn.as_ref().is_some_and(|c| {
                c.can_take_request() && ((c.readable && !c.peer_done) || c.has_input())
                    || (c.unsent() > 0 && !c.writable_interest)
                    || (c.peer_done && c.finished())
            })
    }

    /// When the earliest held `wait` ends.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.conn.as_ref().and_then(|c| c.replies.waits().map(|h| h.deadline).min())
    }

    /// One pass: accept, answer what is ready, read and dispatch requests
    /// within the budgets, send.
    pub fn service(&mut self, ctx: &mut Ctx<'_>) {
        if self.conn.is_none() && self.accept_ready {
            self.accept(ctx.registry);
        }
        if self.conn.is_none() {
            return;
        }
        self.resolve_pending(ctx);
        self.flush(ctx.registry);
        self.read_and_dispatch(ctx);
        self.flush(ctx.registry);
        if self.conn.as_ref().is_some_and(|c| c.peer_done && c.finished()) {
            self.disconnect(ctx.registry);
        }
    }

    fn accept(&mut self, registry: &Registry) {
        let Some(l) = self.listener.as_ref() else { return };
        match channel::socket::accept(l.as_raw_fd()) {
            Some(fd) => {
                if let Err(e) = registry.register(&mut SourceFd(&fd.as_raw_fd()), CONN, Interest::READABLE) {
                    log::error(&format!("cannot watch client: {e}"));
                    return;
                }
                log::debug("client connected");
                self.conn = Some(Conn::new(fd));
            }
            None => self.accept_ready = false,
        }
    }

    fn disconnect(&mut self, registry: &Registry) {
        if self.is_device {
            // Host side of the port went away: nothing to answer, nobody to
            // parse for. Wait for the next edge (host reconnect / data).
            if let Some(c) = self.conn.as_mut() {
                c.reset();
                c.readable = false;
            }
            return;
        }
        if let Some(c) = self.conn.take() {
            let _ = registry.deregister(&mut SourceFd(&c.fd.as_raw_fd()));
            log::debug("client disconnected");
        }
        // Another client may be waiting in the backlog.
        self.accept_ready = true;
    }

    /// Completes held `wait` replies whose process finished or streamed or
    /// whose deadline passed, and helper-backed replies whose helper ended.
    fn resolve_pending(&mut self, ctx: &mut Ctx<'_>) {
        let Some(c) = self.conn.as_mut() else { return };
        if !c.replies.has_pending() {
            return;
        }
        let now = Instant::now();
        c.replies.resolve(|slot| match slot {
            Slot::Wait(h) => {
                let ready = ctx.procs.find(h.pid).is_none_or(|p| p.exited() || p.has_stream_data());
                if ready || now >= h.deadline {
                    Slot::Ready(dispatch::status_reply(ctx, h))
                } else {
                    Slot::Wait(h)
                }
            }
            Slot::Helper(w) => dispatch::finish_helper(ctx, w),
            ready => ready,
        });
        c.replies.drain_ready(&mut c.output);
    }

    fn read_and_dispatch(&mut self, ctx: &mut Ctx<'_>) {
        let mut budget = READ_BUDGET;
        loop {
            let Some(c) = self.conn.as_mut() else { return };
            // Frames already buffered go first.
            while let Some(frame) = next_frame(c) {
                // Another request (or 0xFF) arrived: held replies are
                // answered now so that replies stay in order.
                c.replies.complete_waits(|h| dispatch::status_reply(ctx, h));
                let slot: ReplySlot = match frame {
                    Frame::Error(desc) => {
                        let mut out = Vec::new();
                        encode_error(&mut out, &QgaError::generic(desc), None);
                        Slot::Ready(out)
                    }
                    Frame::Message(msg) => dispatch::dispatch(ctx, msg),
                };
                c.replies.push(slot);
                c.replies.drain_ready(&mut c.output);
            }
            if c.has_input() || !c.can_take_request() || !c.readable || c.peer_done || budget == 0 {
                return;
            }
            c.in_start = 0;
            c.in_end = 0;
            match fd::read(c.fd.as_fd(), &mut c.input) {
                Ok(0) => {
                    if self.is_device {
                        return self.disconnect(ctx.registry);
                    }
                    // Half-close: every request read is still answered.
                    c.peer_done = true;
                    return;
                }
                Ok(n) => {
                    c.in_end = n;
                    budget = budget.saturating_sub(n);
                }
                Err(Errno(libc::EAGAIN)) => {
                    c.readable = false;
                    return;
                }
                Err(e) => {
                    log::warning(&format!("error reading channel: {e}"));
                    return self.disconnect(ctx.registry);
                }
            }
        }
    }

    /// Writes unsent replies; writable interest only while some remain.
    fn flush(&mut self, registry: &Registry) {
        let Some(c) = self.conn.as_mut() else { return };
        let mut failed = false;
        while c.unsent() > 0 {
            match fd::write(c.fd.as_fd(), &c.output[c.out_pos..]) {
                Ok(n) => c.out_pos += n,
                Err(Errno(libc::EAGAIN)) => break,
                Err(e) => {
                    log::warning(&format!("error sending response: {e}"));
                    failed = true;
                    break;
                }
            }
        }
        if c.unsent() == 0 {
            c.out_pos = 0;
            c.output.clear();
            if c.output.capacity() > OUTPUT_KEEP_CAPACITY {
                c.output = Vec::new();
            }
        }
        let want_write = c.unsent() > 0;
        if want_write != c.writable_interest {
            let interest = if want_write { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
            let _ = registry.reregister(&mut SourceFd(&c.fd.as_raw_fd()), CONN, interest);
            c.writable_interest = want_write;
        }
        if failed {
            self.disconnect(registry);
        }
    }
}

/// The next complete frame from buffered input, if a request may be
/// taken now.
fn next_frame(c: &mut Conn) -> Option<Frame> {
    while c.has_input() && c.can_take_request() {
        let (n, frame) = c.framer.feed(&c.input[c.in_start..c.in_end]);
        c.in_start += n;
        if frame.is_some() {
            return frame;
        }
    }
    None
}
