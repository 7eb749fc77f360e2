//! The event loop: one mio `Poll` multiplexing the channel, every child's
//! pipes and the signal self-pipe. The loop only dispatches tokens; each
//! source's work lives in its own module, and every pass does a bounded
//! amount of work per source so none can starve the others.

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::channel::{self, Endpoint, ReadResult, WriteResult};
use crate::commands::{self, Held, HelperResult, Outcome, Pending};
use crate::exec::spawn::{self, Redirect, SpawnSpec};
use crate::exec::{ExecOptions, NewProcess};
use crate::json::Value;
use crate::config::Config;
use crate::exec::ProcessTable;
use crate::json::{Frame, Framer};
use crate::log;
use crate::protocol::{encode_error, encode_reply, parse_request, Args, QgaError, SYNC_DELIMITER};
use crate::signals::{self, SignalPipe};

const LISTENER: Token = Token(0);
const CONN: Token = Token(1);
const SIGNALS: Token = Token(2);

/// Bytes read from the channel per read() call.
const READ_CHUNK: usize = 64 << 10;
/// Bytes read from the channel per loop pass before other sources run.
const READ_BUDGET: usize = 1 << 20;
/// Stop taking new requests while this much reply data is unsent, so a
/// client that does not read cannot make the agent buffer without bound.
const OUTPUT_HIGH_WATER: usize = 1 << 20;
/// A reply buffer bigger than this is released once it has been sent.
const OUTPUT_KEEP_CAPACITY: usize = 256 << 10;
/// Grace period between SIGTERM and SIGKILL for `timeout`.
const KILL_GRACE: Duration = Duration::from_secs(2);

/// Commands that still run while file systems are frozen.
pub const FROZEN_ALLOWED: &[&str] = &[
    "guest-ping",
    "guest-info",
    "guest-sync",
    "guest-sync-delimited",
    "guest-fsfreeze-status",
    "guest-fsfreeze-thaw",
];

/// The conversation with the host: one accepted client, or the device.
struct Conn {
    fd: OwnedFd,
    framer: Framer,
    input: Vec<u8>,
    in_start: usize,
    in_end: usize,
    output: Vec<u8>,
    out_pos: usize,
    /// Edge-triggered: the fd may still hold unread data.
    readable: bool,
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
            output: Vec::new(),
            out_pos: 0,
            readable: true,
            writable_interest: false,
        }
    }

    fn unsent(&self) -> usize {
        self.output.len() - self.out_pos
    }

    /// Forget partial input and unsent replies (new peer on a device).
    fn reset(&mut self) {
        self.framer = Framer::new();
        self.in_start = 0;
        self.in_end = 0;
        self.output = Vec::new();
        self.out_pos = 0;
    }
}

pub struct Agent {
    pub poll: Poll,
    pub procs: ProcessTable,
    pub cfg: Config,
    /// File systems frozen by guest-fsfreeze-freeze: only
    /// [`FROZEN_ALLOWED`] commands run.
    pub frozen: bool,
    listener: Option<OwnedFd>,
    /// Device channels keep one Conn forever; sockets one per client.
    is_device: bool,
    is_virtio: bool,
    conn: Option<Conn>,
    accept_ready: bool,
    signals: SignalPipe,
    held: Option<Held>,
    held_progress: u64,
    /// A reply waiting for a helper program; requests queue behind it.
    awaiting: Option<(Pending, Option<Value>)>,
    stop: bool,
}

impl Agent {
    pub fn new(cfg: Config, endpoint: Endpoint) -> std::io::Result<Agent> {
        let poll = Poll::new()?;
        let signals = SignalPipe::new(poll.registry(), SIGNALS)?;
        let mut agent = Agent {
            poll,
            procs: ProcessTable::new(),
            cfg,
            frozen: false,
            listener: None,
            is_device: false,
            is_virtio: false,
            conn: None,
            accept_ready: true,
            signals,
            held: None,
            held_progress: 0,
            awaiting: None,
            stop: false,
        };
        match endpoint {
            Endpoint::Listener(fd) => {
                agent.poll.registry().register(&mut SourceFd(&fd.as_raw_fd()), LISTENER, Interest::READABLE)?;
                agent.listener = Some(fd);
            }
            Endpoint::Device { fd, virtio } => {
                agent.poll.registry().register(&mut SourceFd(&fd.as_raw_fd()), CONN, Interest::READABLE)?;
                agent.is_device = true;
                agent.is_virtio = virtio;
                agent.conn = Some(Conn::new(fd));
            }
        }
        Ok(agent)
    }

    /// Whether `name` may run (block/allow lists and the frozen state,
    /// qemu-ga 9.1+ rules).
    pub fn is_enabled(&self, name: &str) -> bool {
        if self.frozen {
            return FROZEN_ALLOWED.contains(&name);
        }
        let listed = |l: &[String]| l.iter().any(|n| n == name);
        if self.cfg.has_allow_list && !listed(&self.cfg.allow_rpcs) {
            return false;
        }
        !listed(&self.cfg.block_rpcs)
    }

    /// Runs until SIGTERM/SIGINT. Returns the exit status.
    pub fn run(&mut self) -> i32 {
        let mut events = Events::with_capacity(256);
        while !self.stop {
            let timeout = self.next_timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    log::error(&format!("poll failed: {e}"));
                }
                continue;
            }
            let mut signalled = false;
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept_ready = true,
                    CONN => {
                        if let Some(c) = self.conn.as_mut() {
                            c.readable = true;
                        }
                    }
                    SIGNALS => signalled = true,
                    t => self.procs.on_event(t),
                }
            }
            if signalled {
                self.handle_signals();
            }
            self.procs.service(self.poll.registry());
            self.enforce_timeouts();
            self.check_awaiting();
            self.service_channel();
            self.check_held();
        }
        0
    }

    fn handle_signals(&mut self) {
        let p = self.signals.drain();
        if p.child {
            self.reap();
        }
        if p.io {
            if let Some(c) = self.conn.as_mut() {
                c.readable = true;
            }
        }
        if p.terminate {
            if self.frozen {
                // As qemu-ga: exiting now would leave file systems frozen.
                log::warning("ignoring termination signal while file systems are frozen");
            } else {
                log::info("received termination signal, exiting");
                self.stop = true;
            }
        }
    }

    fn reap(&mut self) {
        let procs = &mut self.procs;
        signals::reap_children(|pid, status| {
            procs.on_reaped(pid, status);
        });
    }

    /// Collects exits and drains ready pipes now (used before answering
    /// guest-exec-status, so a just-finished child is reported at once).
    pub fn refresh_processes(&mut self) {
        self.reap();
        self.procs.service(self.poll.registry());
    }

    /// How long poll may sleep: 0 with work pending, else until the next
    /// deadline, else forever.
    fn next_timeout(&self) -> Option<Duration> {
        let busy = self.procs.has_ready_work()
            || (self.listener.is_some() && self.conn.is_none() && self.accept_ready)
            || self.conn.as_ref().is_some_and(|c| {
                c.unsent() < OUTPUT_HIGH_WATER && self.awaiting.is_none() && (c.readable || c.in_start < c.in_end)
                    || (c.unsent() > 0 && !c.writable_interest)
            });
        if busy {
            return Some(Duration::ZERO);
        }
        let mut next: Option<Instant> = self.held.as_ref().map(|h| h.deadline);
        for p in self.procs.iter() {
            for t in [p.deadline, p.kill_at].into_iter().flatten() {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        }
        next.map(|t| t.saturating_duration_since(Instant::now()))
    }

    /// `timeout` extension: SIGTERM to the group at the deadline, SIGKILL
    /// after the grace period.
    fn enforce_timeouts(&mut self) {
        let now = Instant::now();
        for p in self.procs.iter_mut() {
            if p.deadline.is_some_and(|d| d <= now) {
                p.deadline = None;
                p.timed_out = true;
                p.kill_at = Some(now + KILL_GRACE);
                // SAFETY: signal the child's own process group.
                unsafe { libc::kill(-p.pid, libc::SIGTERM) };
            }
            if p.kill_at.is_some_and(|k| k <= now) {
                p.kill_at = None;
                // SAFETY: as above; the group outlives a reaped leader.
                unsafe { libc::kill(-p.pid, libc::SIGKILL) };
            }
        }
    }

    fn service_channel(&mut self) {
        if self.conn.is_none() && self.accept_ready {
            self.accept();
        }
        if self.conn.is_none() {
            return;
        }
        self.flush_output();
        self.read_and_dispatch();
        self.flush_output();
    }

    fn accept(&mut self) {
        let Some(l) = self.listener.as_ref() else { return };
        match channel::socket::accept(l.as_raw_fd()) {
            Some(fd) => {
                if let Err(e) = self.poll.registry().register(&mut SourceFd(&fd.as_raw_fd()), CONN, Interest::READABLE) {
                    log::error(&format!("cannot watch client: {e}"));
                    return;
                }
                log::debug("client connected");
                self.conn = Some(Conn::new(fd));
            }
            None => self.accept_ready = false,
        }
    }

    fn disconnect(&mut self) {
        if self.is_device {
            // Host side of the port went away: nothing to answer, nobody to
            // parse for. Wait for the next edge (host reconnect / data).
            if let Some(c) = self.conn.as_mut() {
                c.reset();
                c.readable = false;
            }
            self.held = None;
            return;
        }
        if let Some(c) = self.conn.take() {
            let _ = self.poll.registry().deregister(&mut SourceFd(&c.fd.as_raw_fd()));
            log::debug("client disconnected");
        }
        self.held = None;
        // Another client may be waiting in the backlog.
        self.accept_ready = true;
    }

    fn read_and_dispatch(&mut self) {
        let mut budget = READ_BUDGET;
        loop {
            // Frames already buffered go first.
            while let Some(frame) = self.next_frame() {
                if self.held.is_some() {
                    // Another request (or 0xFF) arrived: answer the held
                    // status now so replies stay in order.
                    self.complete_held();
                }
                self.handle_frame(frame);
            }
            let Some(c) = self.conn.as_mut() else { return };
            if c.in_start < c.in_end || c.unsent() >= OUTPUT_HIGH_WATER || !c.readable || budget == 0 || self.awaiting.is_some() {
                return;
            }
            c.in_start = 0;
            c.in_end = 0;
            match channel::read(c.fd.as_raw_fd(), &mut c.input) {
                ReadResult::Data(n) => {
                    c.in_end = n;
                    budget = budget.saturating_sub(n);
                }
                ReadResult::WouldBlock => {
                    c.readable = false;
                    return;
                }
                ReadResult::Eof => return self.disconnect(),
                ReadResult::Error(e) => {
                    log::warning(&format!("error reading channel: {}", crate::sys::strerror(e)));
                    return self.disconnect();
                }
            }
        }
    }

    /// The next complete frame from buffered input, if output has room
    /// and no reply is waiting for a helper program.
    fn next_frame(&mut self) -> Option<Frame> {
        if self.awaiting.is_some() {
            return None;
        }
        let c = self.conn.as_mut()?;
        while c.in_start < c.in_end && c.unsent() < OUTPUT_HIGH_WATER {
            let (n, frame) = c.framer.feed(&c.input[c.in_start..c.in_end]);
            c.in_start += n;
            if frame.is_some() {
                return frame;
            }
        }
        None
    }

    fn handle_frame(&mut self, frame: Frame) {
        let mut out = Vec::new();
        match frame {
            Frame::Error(desc) => encode_error(&mut out, &QgaError::generic(desc), None),
            Frame::Message(msg) => self.dispatch(msg, &mut out),
        }
        self.queue_output(out);
    }

    /// Encodes a handler's result (shared by direct and awaited replies).
    fn encode_outcome(&mut self, result: Result<Outcome, QgaError>, id: Option<Value>, out: &mut Vec<u8>) {
        match result {
            Ok(Outcome::Return(v)) => encode_reply(out, v, id),
            Ok(Outcome::Delimited(v)) => {
                out.push(SYNC_DELIMITER);
                encode_reply(out, v, id);
            }
            Ok(Outcome::Silent) => {}
            Ok(Outcome::Hold(mut h)) => {
                h.id = id;
                self.held_progress = self.procs.progress;
                self.held = Some(h);
            }
            Ok(Outcome::Await(p)) => self.awaiting = Some((p, id)),
            Err(e) => encode_error(out, &e, id),
        }
    }

    /// Starts a helper program (stdin `input` or /dev/null, stdout and stderr merged
    /// into one captured pipe, own session as qemu-ga's `ga_run_command`).
    /// Its result is delivered to a [`Pending`] returned by the handler.
    pub fn start_helper(&mut self, path: &str, args: &[&str], input: Option<Vec<u8>>) -> Result<libc::pid_t, QgaError> {
        let spec = SpawnSpec {
            path: path.to_string(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: None,
            stdin: if input.is_some() { Redirect::Pipe } else { Redirect::Null },
            stdout: Redirect::Pipe,
            stderr: Redirect::ToStdout,
            cwd: None,
            credentials: None,
        };
        self.procs.reserve_slot(self.poll.registry())?;
        let spawned = spawn::spawn(&spec).map_err(QgaError::generic)?;
        let opts = ExecOptions { internal: true, ..Default::default() };
        Ok(self.procs.insert(self.poll.registry(), NewProcess { spawned, input, opts }))
    }

    /// Delivers a finished helper's result to the reply waiting for it.
    fn check_awaiting(&mut self) {
        let Some((p, _)) = self.awaiting.as_ref() else { return };
        let pid = p.pid;
        let Some((status, output)) = self.procs.take_helper_result(self.poll.registry(), pid) else {
            if self.procs.get(pid).is_none() {
                // Evicted or never inserted: fail rather than wait forever.
                if let Some((_, id)) = self.awaiting.take() {
                    let mut out = Vec::new();
                    encode_error(&mut out, &QgaError::generic("helper process was lost"), id);
                    self.queue_output(out);
                }
            }
            return;
        };
        let Some((pending, id)) = self.awaiting.take() else { return };
        let result = (pending.finish)(self, HelperResult { status, output });
        let mut out = Vec::new();
        self.encode_outcome(result, id, &mut out);
        self.queue_output(out);
    }

    /// `qmp_dispatch()`: envelope, lookup, enabled check, handler, reply.
    fn dispatch(&mut self, msg: crate::json::Value, out: &mut Vec<u8>) {
        let req = match parse_request(msg) {
            Ok(r) => r,
            Err((e, id)) => return encode_error(out, &e, id),
        };
        let Some(spec) = commands::find(&req.command) else {
            return encode_error(out, &QgaError::command_not_found(&req.command), req.id);
        };
        if !self.is_enabled(spec.name) {
            let e = QgaError::command_disabled(spec.name, Some("the command is not allowed"));
            return encode_error(out, &e, req.id);
        }
        let result = (spec.handler)(self, Args::new(req.arguments));
        self.encode_outcome(result, req.id, out);
    }

    fn queue_output(&mut self, bytes: Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        if let Some(c) = self.conn.as_mut() {
            if c.unsent() == 0 {
                c.output = bytes;
                c.out_pos = 0;
            } else {
                c.output.extend_from_slice(&bytes);
            }
        }
    }

    /// Writes unsent replies; writable interest only while some remain.
    fn flush_output(&mut self) {
        let Some(c) = self.conn.as_mut() else { return };
        let mut failed = false;
        while c.unsent() > 0 {
            match channel::write(c.fd.as_raw_fd(), &c.output[c.out_pos..]) {
                WriteResult::Wrote(n) => c.out_pos += n,
                WriteResult::WouldBlock => break,
                WriteResult::Error(e) => {
                    log::warning(&format!("error sending response: {}", crate::sys::strerror(e)));
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
            let _ = self.poll.registry().reregister(&mut SourceFd(&c.fd.as_raw_fd()), CONN, interest);
            c.writable_interest = want_write;
        }
        if failed {
            self.disconnect();
        }
    }

    /// Completes a held status reply once its process finished, streamed
    /// output arrived, or its deadline passed.
    fn check_held(&mut self) {
        let Some(h) = self.held.as_ref() else { return };
        let due = Instant::now() >= h.deadline;
        let changed = self.procs.progress != self.held_progress;
        if !due && !changed {
            return;
        }
        self.held_progress = self.procs.progress;
        let ready = libc::pid_t::try_from(h.pid)
            .ok()
            .and_then(|p| self.procs.get(p))
            .is_none_or(|p| p.exited() || p.has_stream_data());
        if due || ready {
            self.complete_held();
            self.flush_output();
            // Requests that arrived while holding can go now.
            if self.conn.as_ref().is_some_and(|c| c.in_start < c.in_end) {
                self.read_and_dispatch();
                self.flush_output();
            }
        }
    }

    fn complete_held(&mut self) {
        let Some(h) = self.held.take() else { return };
        let mut out = Vec::new();
        match self.procs.status(self.poll.registry(), h.pid) {
            Ok(v) => encode_reply(&mut out, v, h.id),
            Err(e) => encode_error(&mut out, &e, h.id),
        }
        self.queue_output(out);
    }

}
