//! `qmp_dispatch()`: a parsed message becomes a reply slot. Envelope
//! checks, command lookup, the enabled check (frozen state, allow and
//! block lists), the handler, and the encoding of its outcome. The
//! dispatcher owns the one type of reply that is not ready yet,
//! [`Deferred`]: handlers return outcomes without ids, and the request's
//! id is attached here.

use std::time::Instant;

use super::sequencer::{Deferral, Slot};
use crate::commands::{self, Ctx, HelperResult, Outcome, Pending};
use crate::json::{Segments, Value};
use crate::protocol::{encode_error, encode_reply, parse_request, Args, QgaError, SYNC_DELIMITER};

/// A reply in the sequencer: bytes, or a deferred reply.
pub type ReplySlot = Slot<Deferred>;

/// A reply that is not ready yet, with its request's id.
#[derive(Debug)]
pub struct Deferred {
    id: Option<Value>,
    until: Until,
}

/// What a deferred reply waits for.
#[derive(Debug)]
enum Until {
    /// guest-exec-status with `wait`: the process finishing or streaming,
    /// the deadline, or the next request on the connection.
    Status { pid: i64, deadline: Instant },
    /// A helper program's end (hwclock, shutdown, the freeze hook...).
    Helper(Pending),
}

impl Deferral for Deferred {
    fn blocks_requests(&self) -> bool {
        matches!(self.until, Until::Helper(_))
    }
}

/// Why a deferred reply is offered a chance to complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nudge {
    /// A loop pass: complete what is ready.
    Pass,
    /// A new request (or 0xFF) arrived: a held status is answered now, so
    /// that its reply still comes before the new request's.
    Request,
    /// Nobody is left to read: a held status is dropped without taking
    /// the result it waits for (a later client can still collect it).
    Gone,
}

impl Deferred {
    /// When a held status ends at the latest.
    pub fn deadline(&self) -> Option<Instant> {
        match self.until {
            Until::Status { deadline, .. } => Some(deadline),
            Until::Helper(_) => None,
        }
    }

    /// The slot that takes this reply's place now: the reply, or the
    /// same (or a next) deferred reply.
    pub fn resolve(self, ctx: &mut Ctx<'_>, nudge: Nudge, now: Instant) -> ReplySlot {
        let Deferred { id, until } = self;
        match until {
            Until::Status { .. } if nudge == Nudge::Gone => Slot::Ready(Segments::new()),
            Until::Status { pid, deadline } => {
                let ready = ctx.procs.find(pid).is_none_or(|p| p.exited() || p.has_stream_data());
                if ready || now >= deadline || nudge == Nudge::Request {
                    slot_for(commands::collect_status(ctx, pid).map(Outcome::Return), id)
                } else {
                    Slot::Deferred(Deferred { id, until: Until::Status { pid, deadline } })
                }
            }
            Until::Helper(pending) => {
                let pid = pending.pid;
                match ctx.procs.take_helper_result(ctx.registry, pid) {
                    Some((status, output)) => slot_for((pending.then)(ctx, HelperResult { status, output }), id),
                    // Evicted or never inserted: fail rather than wait forever.
                    None if ctx.procs.get(pid).is_none() => {
                        error_slot(&QgaError::generic("helper process was lost"), id)
                    }
                    None => Slot::Deferred(Deferred { id, until: Until::Helper(pending) }),
                }
            }
        }
    }
}

fn error_slot(e: &QgaError, id: Option<Value>) -> ReplySlot {
    let mut out = Segments::new();
    encode_error(&mut out, e, id);
    Slot::Ready(out)
}

/// Runs one request.
pub fn dispatch(ctx: &mut Ctx<'_>, msg: Value) -> ReplySlot {
    let req = match parse_request(msg) {
        Ok(r) => r,
        Err((e, id)) => return error_slot(&e, id),
    };
    let Some(spec) = commands::find(&req.command) else {
        return error_slot(&QgaError::command_not_found(&req.command), req.id);
    };
    if !commands::is_enabled(spec, ctx.cfg, ctx.guest) {
        let e = QgaError::command_disabled(spec.name, Some("the command is not allowed"));
        return error_slot(&e, req.id);
    }
    let result = (spec.handler)(ctx, Args::new(req.arguments));
    slot_for(result, req.id)
}

/// Encodes a handler's result (direct and continued replies alike).
fn slot_for(result: Result<Outcome, QgaError>, id: Option<Value>) -> ReplySlot {
    let mut out = Segments::new();
    match result {
        Ok(Outcome::Return(v)) => encode_reply(&mut out, v, id),
        Ok(Outcome::Delimited(v)) => {
            out.push(SYNC_DELIMITER);
            encode_reply(&mut out, v, id);
        }
        Ok(Outcome::Silent) => {}
        Ok(Outcome::Hold { pid, deadline }) => {
            return Slot::Deferred(Deferred { id, until: Until::Status { pid, deadline } })
        }
        Ok(Outcome::Await(pending)) => return Slot::Deferred(Deferred { id, until: Until::Helper(pending) }),
        Err(e) => encode_error(&mut out, &e, id),
    }
    Slot::Ready(out)
}
