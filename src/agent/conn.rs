//! The channel as an event source: the listening socket or the device,
//! the one connected client, its input framing, its reply sequencer and
//! its unsent output. Requests are handed to the dispatcher with the
//! handlers' narrow context; replies go through the [`Sequencer`] so they
//! leave in request order.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Instant;

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use super::dispatch::{self, Deferred, Nudge, ReplySlot};
use super::sequencer::{Sequencer, Slot};
use crate::audit::{ClientInfo, Record};
use crate::channel::{self, ClientCheck, Endpoint};
use crate::commands::Ctx;
use crate::config::Config;
use crate::json::{Frame, Framer, Segments};
use crate::log;
use crate::protocol::{encode_error, QgaError, DECODED_MEMBERS};
use crate::sys::libc;
use crate::sys::{fd, Errno, MapAhead};

pub const LISTENER: Token = Token(0);
/// Client `i` has token `CONN_BASE + i` (below the process table's).
const CONN_BASE: usize = 2;
/// Most clients served at once (`--max-clients`).
const MAX_CLIENTS: usize = crate::config::MAX_MAX_CLIENTS;

/// Bytes read from the channel per read() call.
const READ_CHUNK: usize = 64 << 10;
/// Bytes read from the channel per loop pass before other sources run.
const READ_BUDGET: usize = 1 << 20;
/// Stop taking new requests while this much reply data is unsent, so a
/// client that does not read cannot make the agent buffer without bound.
const OUTPUT_HIGH_WATER: usize = 1 << 20;
/// Partly received requests of all clients together, beyond each client's
/// own [`PARTIAL_PER_CLIENT`]: two requests of the largest size qemu-ga
/// accepts (`MAX_TOKEN_SIZE`, 64 MiB) fit at once. A request that would
/// take more is answered with an error and the rest of it dropped.
pub const MAX_PARTIAL_REQUESTS: usize = 128 << 20;
/// What each client's request in progress may hold without drawing on
/// [`MAX_PARTIAL_REQUESTS`]: small requests are never refused.
pub const PARTIAL_PER_CLIENT: usize = 1 << 20;

/// The conversation with the host: one accepted client, or the device.
struct Conn {
    fd: OwnedFd,
    /// Who it is (every audit record of its requests carries it).
    client: ClientInfo,
    framer: Framer,
    /// Maps a long string's buffer ahead of the bytes fed into it.
    map_ahead: MapAhead,
    input: Vec<u8>,
    in_start: usize,
    in_end: usize,
    replies: Sequencer<Deferred>,
    /// Replies ready to send, in order; large base64 strings are encoded
    /// while sending.
    output: Segments,
    /// Edge-triggered: the fd may still hold unread data.
    readable: bool,
    /// The client closed its sending side: what it sent is answered, then
    /// the connection is closed.
    peer_done: bool,
    /// The client is gone entirely (hang-up): nobody will read a reply, so
    /// a held `wait` is dropped instead of consuming the result it waits
    /// for (a later client can still collect it).
    hung_up: bool,
    writable_interest: bool,
    /// Its draw on [`MAX_PARTIAL_REQUESTS`].
    partial_charge: usize,
    /// Its queued reply bytes as last reported to the process table
    /// (part of `exec::MAX_OUTPUT_HELD`).
    reply_charge: usize,
}

impl Conn {
    fn new(fd: OwnedFd, client: ClientInfo) -> Self {
        Conn {
            fd,
            client,
            framer: Framer::new().decoding_members(DECODED_MEMBERS),
            map_ahead: MapAhead::default(),
            input: vec![0; READ_CHUNK],
            in_start: 0,
            in_end: 0,
            replies: Sequencer::new(),
            output: Segments::new(),
            readable: true,
            peer_done: false,
            hung_up: false,
            writable_interest: false,
            partial_charge: 0,
            reply_charge: 0,
        }
    }

    /// Reports the memory its queued replies hold to the output budget.
    fn charge_replies(&mut self, ctx: &mut Ctx<'_>) {
        let now = self.output.held() + self.replies.held();
        ctx.procs.replies_queued(self.reply_charge, now);
        self.reply_charge = now;
    }

    fn unsent(&self) -> usize {
        self.output.len()
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
        self.framer = Framer::new().decoding_members(DECODED_MEMBERS);
        self.in_start = 0;
        self.in_end = 0;
        self.replies.clear();
        self.output = Segments::new();
        self.peer_done = false;
        self.hung_up = false;
    }

    /// Everything read has been answered and sent.
    fn finished(&self) -> bool {
        !self.has_input() && self.replies.is_empty() && self.unsent() == 0
    }
}

/// What a pass over one connection decided.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Keep,
    /// The peer is gone (EOF on a device, an error, or a half-closed
    /// client that has been answered).
    Close,
}

/// The channel: a listener with up to `max_clients` clients (qemu-ga: one
/// at a time), or a device (one conversation forever). Each client has
/// its own framer, sequencer and output; the process table is shared, so
/// any client may collect any result, once.
pub struct Channel {
    listener: Option<OwnedFd>,
    is_device: bool,
    conns: Vec<Option<Conn>>,
    max_clients: usize,
    accept_ready: bool,
    /// Drawn on [`MAX_PARTIAL_REQUESTS`] by all clients.
    partial_pool: usize,
    /// Which clients a listener serves.
    check: ClientCheck,
}

impl Channel {
    pub fn new(endpoint: Endpoint, cfg: &Config, registry: &Registry) -> std::io::Result<Channel> {
        let (max_clients, check) = (cfg.max_clients(), ClientCheck::new(cfg));
        match endpoint {
            Endpoint::Listener(fd) => {
                registry.register(&mut SourceFd(&fd.as_raw_fd()), LISTENER, Interest::READABLE)?;
                let max_clients = max_clients.clamp(1, MAX_CLIENTS);
                Ok(Channel {
                    listener: Some(fd),
                    is_device: false,
                    conns: Vec::new(),
                    max_clients,
                    accept_ready: true,
                    partial_pool: 0,
                    check,
                })
            }
            Endpoint::Device(fd) => {
                registry.register(&mut SourceFd(&fd.as_raw_fd()), conn_token(0), Interest::READABLE)?;
                let client = match cfg.method.as_deref() {
                    Some("isa-serial") => ClientInfo::IsaSerial,
                    _ => ClientInfo::VirtioSerial,
                };
                let conns = vec![Some(Conn::new(fd, client))];
                Ok(Channel {
                    listener: None,
                    is_device: true,
                    conns,
                    max_clients: 1,
                    accept_ready: false,
                    partial_pool: 0,
                    check,
                })
            }
        }
    }

    /// Whether `token` is one of the channel's.
    pub fn owns(token: Token) -> bool {
        token == LISTENER || (CONN_BASE..CONN_BASE + MAX_CLIENTS).contains(&token.0)
    }

    /// A channel token fired; `hung_up`: the peer closed both directions.
    pub fn on_event(&mut self, token: Token, hung_up: bool) {
        if token == LISTENER {
            self.accept_ready = true;
        } else if let Some(Some(c)) = self.conns.get_mut(token.0 - CONN_BASE) {
            c.readable = true;
            // A device reports hang-up whenever the host side is closed;
            // only a socket's hang-up means the client is gone.
            c.hung_up |= hung_up && !self.is_device;
        }
    }

    /// The device may have something to read (SIGIO).
    pub fn mark_readable(&mut self) {
        for c in self.conns.iter_mut().flatten() {
            c.readable = true;
        }
    }

    fn clients(&self) -> usize {
        self.conns.iter().flatten().count()
    }

    fn may_accept(&self) -> bool {
        self.listener.is_some() && self.accept_ready && self.clients() < self.max_clients
    }

    /// Work is pending that the next poll must not sleep through.
    pub fn busy(&self) -> bool {
        self.may_accept()
            || self.conns.iter().flatten().any(|c| {
                c.can_take_request() && ((c.readable && !c.peer_done) || c.has_input())
                    || (c.unsent() > 0 && !c.writable_interest)
                    || (c.peer_done && c.finished())
            })
    }

    /// When the earliest held `wait` ends.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.conns.iter().flatten().flat_map(|c| c.replies.deferred().filter_map(Deferred::deadline)).min()
    }

    /// One pass: accept, then for each client answer what is ready, read
    /// and dispatch requests within the budgets, send.
    pub fn service(&mut self, ctx: &mut Ctx<'_>) {
        while self.may_accept() {
            self.accept(ctx);
        }
        for i in 0..self.conns.len() {
            let Some(Some(c)) = self.conns.get_mut(i) else { continue };
            let token = conn_token(i);
            ctx.client = c.client;
            let mut next = resolve_pending(c, ctx);
            if next == Next::Keep {
                next = flush(c, token, ctx.registry);
            }
            if next == Next::Keep {
                next = read_and_dispatch(c, ctx, self.is_device, &mut self.partial_pool);
            }
            if next == Next::Keep {
                next = flush(c, token, ctx.registry);
            }
            c.charge_replies(ctx);
            if next == Next::Keep && c.peer_done && c.finished() {
                next = Next::Close;
            }
            if next == Next::Close {
                self.disconnect(i, ctx);
            }
        }
    }

    fn accept(&mut self, ctx: &mut Ctx<'_>) {
        let Some(l) = self.listener.as_ref() else { return };
        let Some((fd, client)) = channel::socket::accept(l.as_raw_fd()) else {
            self.accept_ready = false;
            return;
        };
        if !self.check.allows(&client) {
            // Closed at once, nothing read or answered; others go on.
            log::warning(&format!("refused client {client:?}: not in allow-vsock-cids/allow-unix-uids"));
            if ctx.audit.enabled() {
                ctx.audit.record(Record::new("client-refused", "", &client));
            }
            return;
        }
        let registry = ctx.registry;
        let i = match self.conns.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                self.conns.push(None);
                self.conns.len() - 1
            }
        };
        if let Err(e) = registry.register(&mut SourceFd(&fd.as_raw_fd()), conn_token(i), Interest::READABLE) {
            log::error(&format!("cannot watch client: {e}"));
            return;
        }
        log::debug("client connected");
        self.conns[i] = Some(Conn::new(fd, client));
    }

    fn disconnect(&mut self, i: usize, ctx: &mut Ctx<'_>) {
        if let Some(Some(c)) = self.conns.get_mut(i) {
            // A helper's command that nobody will hear of is still audited.
            c.replies.resolve(|d| {
                d.abandon(ctx);
                Slot::Ready(Segments::new())
            });
        }
        if self.is_device {
            // Host side of the port went away: nothing to answer, nobody to
            // parse for. Wait for the next edge (host reconnect / data).
            if let Some(Some(c)) = self.conns.get_mut(i) {
                c.reset();
                c.readable = false;
                self.partial_pool = self.partial_pool.saturating_sub(std::mem::take(&mut c.partial_charge));
                c.charge_replies(ctx);
            }
            return;
        }
        if let Some(mut c) = self.conns.get_mut(i).and_then(Option::take) {
            let _ = ctx.registry.deregister(&mut SourceFd(&c.fd.as_raw_fd()));
            self.partial_pool = self.partial_pool.saturating_sub(c.partial_charge);
            c.output = Segments::new();
            c.replies.clear();
            c.charge_replies(ctx);
            log::debug("client disconnected");
        }
        // Another client may be waiting in the backlog.
        self.accept_ready = true;
    }
}

/// The poll token of client slot `i`.
fn conn_token(i: usize) -> Token {
    Token(CONN_BASE + i)
}

/// Completes held `wait` replies whose process finished or streamed or
/// whose deadline passed, and helper-backed replies whose helper ended.
fn resolve_pending(c: &mut Conn, ctx: &mut Ctx<'_>) -> Next {
    if !c.replies.has_pending() {
        return Next::Keep;
    }
    let now = Instant::now();
    let nudge = if c.hung_up { Nudge::Gone } else { Nudge::Pass };
    c.replies.resolve(|d| d.resolve(ctx, nudge, now));
    c.replies.drain_ready(&mut c.output);
    Next::Keep
}

fn read_and_dispatch(c: &mut Conn, ctx: &mut Ctx<'_>, is_device: bool, pool: &mut usize) -> Next {
    let mut budget = READ_BUDGET;
    loop {
        // Frames already buffered go first.
        while let Some(frame) = next_frame(c, pool) {
            // Another request (or 0xFF) arrived: held replies are
            // answered now so that replies stay in order (or dropped, if
            // nobody is left to read them).
            let nudge = if c.hung_up { Nudge::Gone } else { Nudge::Request };
            let now = Instant::now();
            c.replies.resolve(|d| d.resolve(ctx, nudge, now));
            let slot: ReplySlot = match frame {
                Frame::Error(desc) => {
                    let mut out = Segments::new();
                    encode_error(&mut out, &QgaError::generic(desc), None);
                    Slot::Ready(out)
                }
                Frame::Message(msg) => dispatch::dispatch(ctx, msg),
            };
            c.replies.push(slot);
            c.replies.drain_ready(&mut c.output);
            // The next request sees what this reply holds.
            c.charge_replies(ctx);
        }
        if c.has_input() || !c.can_take_request() || !c.readable || c.peer_done || budget == 0 {
            return Next::Keep;
        }
        c.in_start = 0;
        c.in_end = 0;
        match fd::read(c.fd.as_fd(), &mut c.input) {
            Ok(0) if is_device => return Next::Close,
            Ok(0) => {
                // Half-close: every request read is still answered.
                c.peer_done = true;
                return Next::Keep;
            }
            Ok(n) => {
                c.in_end = n;
                budget = budget.saturating_sub(n);
            }
            Err(Errno(libc::EAGAIN)) => {
                c.readable = false;
                return Next::Keep;
            }
            Err(e) => {
                log::warning(&format!("error reading channel: {e}"));
                return Next::Close;
            }
        }
    }
}

/// Writes unsent replies; writable interest only while some remain.
fn flush(c: &mut Conn, token: Token, registry: &Registry) -> Next {
    let mut next = Next::Keep;
    while let Some(bytes) = c.output.next_bytes() {
        match fd::write(c.fd.as_fd(), bytes) {
            Ok(n) => c.output.consume(n),
            Err(Errno(libc::EAGAIN)) => break,
            Err(e) => {
                log::warning(&format!("error sending response: {e}"));
                next = Next::Close;
                break;
            }
        }
    }
    let want_write = c.unsent() > 0;
    if want_write != c.writable_interest {
        let interest = if want_write { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
        let _ = registry.reregister(&mut SourceFd(&c.fd.as_raw_fd()), token, interest);
        c.writable_interest = want_write;
    }
    next
}

/// The next complete frame from buffered input, if a request may be
/// taken now. `pool`: what all clients draw on [`MAX_PARTIAL_REQUESTS`].
fn next_frame(c: &mut Conn, pool: &mut usize) -> Option<Frame> {
    while c.has_input() && c.can_take_request() {
        let chunk = c.in_end - c.in_start;
        // Would this chunk take the request in progress past what this
        // client may hold and what the pool has left?
        let draw = (c.framer.held() + chunk).saturating_sub(PARTIAL_PER_CLIENT);
        if draw > 0 && pool.saturating_sub(c.partial_charge) + draw > MAX_PARTIAL_REQUESTS {
            c.framer.abandon(&format!(
                "Not enough memory for this request: partly received requests hold {} MiB (limit {} MiB)",
                (*pool + c.framer.held()) >> 20,
                MAX_PARTIAL_REQUESTS >> 20
            ));
        }
        if let Some(body) = c.framer.long_string_room(chunk) {
            c.map_ahead.before_append(body, chunk);
        }
        let (n, frame) = c.framer.feed(&c.input[c.in_start..c.in_end]);
        c.in_start += n;
        let charge = c.framer.held().saturating_sub(PARTIAL_PER_CLIENT);
        *pool = pool.saturating_sub(c.partial_charge) + charge;
        c.partial_charge = charge;
        if frame.is_some() {
            return frame;
        }
    }
    None
}
