//! `qmp_dispatch()`: a parsed message becomes a reply slot. Envelope
//! checks, command lookup, the enabled check (frozen state, allow and
//! block lists), the handler, and the encoding of its outcome.

use super::conn::Waiting;
use super::sequencer::Slot;
use crate::commands::{self, Ctx, Held, HelperResult, Outcome};
use crate::json::{Segments, Value};
use crate::protocol::{encode_error, encode_reply, parse_request, Args, QgaError, SYNC_DELIMITER};

/// A reply in the sequencer: bytes, a held status, or a helper's wait.
pub type ReplySlot = Slot<Held, Waiting>;

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
        Ok(Outcome::Hold(mut h)) => {
            h.id = id;
            return Slot::Wait(h);
        }
        Ok(Outcome::Await(pending)) => return Slot::Helper(Waiting { pending, id }),
        Err(e) => encode_error(&mut out, &e, id),
    }
    Slot::Ready(out)
}

/// The reply to a held guest-exec-status, now.
pub fn status_reply(ctx: &mut Ctx<'_>, h: Held) -> Segments {
    let mut out = Segments::new();
    match ctx.procs.status(ctx.registry, h.pid) {
        Ok(v) => encode_reply(&mut out, v, h.id),
        Err(e) => encode_error(&mut out, &e, h.id),
    }
    out
}

/// A helper-backed reply: its continuation runs once the helper ended.
pub fn finish_helper(ctx: &mut Ctx<'_>, w: Waiting) -> ReplySlot {
    let pid = w.pending.pid;
    match ctx.procs.take_helper_result(ctx.registry, pid) {
        Some((status, output)) => {
            let result = (w.pending.then)(ctx, HelperResult { status, output });
            slot_for(result, w.id)
        }
        // Evicted or never inserted: fail rather than wait forever.
        None if ctx.procs.get(pid).is_none() => error_slot(&QgaError::generic("helper process was lost"), w.id),
        None => Slot::Helper(w),
    }
}
