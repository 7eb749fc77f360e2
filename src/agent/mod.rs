//! The event loop: one mio `Poll` multiplexing the channel, every child's
//! pipes and the signal self-pipe. The loop only dispatches tokens; each
//! source (the channel in `conn`, the process table in `exec`, the signal
//! pipe in `signals`) owns its descriptors and does a bounded amount of
//! work per pass, so none can starve the others. Handlers get a narrow
//! [`Ctx`]; replies are ordered by the per-connection [`sequencer`].

mod conn;
mod dispatch;
pub mod sequencer;

use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};

use crate::audit::{AuditLog, ClientInfo};
use crate::channel::Endpoint;
use crate::commands::{Ctx, GuestState};
use crate::config::Config;
use crate::exec::ProcessTable;
use crate::log;
use crate::signals::SignalPipe;
use conn::Channel;

const SIGNALS: Token = Token(1);

pub struct Agent {
    poll: Poll,
    cfg: Config,
    guest: GuestState,
    procs: ProcessTable,
    channel: Channel,
    signals: SignalPipe,
    /// The audit trail, written in bounded steps after the channel's pass.
    audit: AuditLog,
    stop: bool,
}

impl Agent {
    pub fn new(cfg: Config, endpoint: Endpoint, guest: GuestState, mut signals: SignalPipe) -> std::io::Result<Agent> {
        let poll = Poll::new()?;
        signals.register(poll.registry(), SIGNALS)?;
        let channel = Channel::new(endpoint, &cfg, poll.registry())?;
        let procs = ProcessTable::new(cfg.max_output());
        let audit = AuditLog::new(&cfg);
        Ok(Agent { poll, cfg, guest, procs, channel, signals, audit, stop: false })
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
                    SIGNALS => signalled = true,
                    t if Channel::owns(t) => self.channel.on_event(t, ev.is_write_closed()),
                    t => self.procs.on_event(t),
                }
            }
            if signalled {
                self.on_signals();
            }
            self.procs.service(self.poll.registry());
            self.procs.enforce_deadlines(Instant::now());
            let Agent { poll, cfg, guest, procs, channel, audit, .. } = self;
            let client = ClientInfo::default();
            let mut ctx = Ctx { cfg, guest, procs, registry: poll.registry(), audit, client };
            channel.service(&mut ctx);
            for rec in self.procs.take_audit() {
                self.audit.record(rec);
            }
            self.audit.flush(self.guest.frozen);
        }
        // What can be written now is, before the agent ends.
        self.audit.flush_all(self.guest.frozen);
        0
    }

    /// The signal pipe back, for the next agent (PID 1 mode serves again
    /// when the machine could not be ended).
    pub fn into_signals(self) -> SignalPipe {
        self.signals
    }

    fn on_signals(&mut self) {
        let p = self.signals.drain();
        if p.child {
            self.procs.reap();
        }
        if p.io {
            self.channel.mark_readable();
        }
        if p.terminate {
            if self.guest.frozen {
                // As qemu-ga: exiting now would leave file systems frozen.
                log::warning("ignoring termination signal while file systems are frozen");
            } else {
                log::info("received termination signal, exiting");
                self.stop = true;
            }
        }
    }

    /// How long poll may sleep: 0 with work pending, else until the next
    /// deadline, else forever.
    fn next_timeout(&self) -> Option<Duration> {
        if self.procs.has_ready_work() || self.channel.busy() || self.audit.ready(self.guest.frozen) {
            return Some(Duration::ZERO);
        }
        [self.channel.next_deadline(), self.procs.next_deadline(), self.audit.next_deadline()]
            .into_iter()
            .flatten()
            .min()
            .map(|t| t.saturating_duration_since(Instant::now()))
    }
}
