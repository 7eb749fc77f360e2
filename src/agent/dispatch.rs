//! `qmp_dispatch()`: a parsed message becomes a reply slot. Envelope
//! checks, command lookup, the enabled check (frozen state, allow and
//! block lists), the handler, and the encoding of its outcome. The
//! dispatcher owns the one type of reply that is not ready yet,
//! [`Deferred`]: handlers return outcomes without ids, and the request's
//! id is attached here. It also writes the audit trail's records of
//! file-changing commands (docs/audit.md), in one place: what the request
//! asked is noted before the handler runs ([`audit_request`]), the
//! outcome when its reply is known ([`audit_result`]), even when a helper
//! program decides it.

use std::time::Instant;

use super::sequencer::{Deferral, Slot};
use crate::audit::Record;
use crate::commands::{self, Ctx, HelperResult, Outcome, Pending};
use crate::json::{Object, Segments, Value};
use crate::protocol::{encode_error, encode_reply, parse_request, Args, QgaError, SYNC_DELIMITER};

/// A reply in the sequencer: bytes, or a deferred reply.
pub type ReplySlot = Slot<Deferred>;

/// A reply that is not ready yet, with its request's id.
#[derive(Debug)]
pub struct Deferred {
    id: Option<Value>,
    until: Until,
    /// The audit record that waits for the same outcome.
    audit: Option<Box<Audit>>,
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
        let Deferred { id, until, audit } = self;
        match until {
            Until::Status { .. } if nudge == Nudge::Gone => Slot::Ready(Segments::new()),
            Until::Status { pid, deadline } => {
                let ready = ctx.procs.find(pid).is_none_or(|p| p.exited() || p.has_stream_data());
                if ready || now >= deadline || nudge == Nudge::Request {
                    slot_for(commands::collect_status(ctx, pid).map(Outcome::Return), id, None)
                } else {
                    Slot::Deferred(Deferred { id, until: Until::Status { pid, deadline }, audit })
                }
            }
            Until::Helper(pending) => {
                let pid = pending.pid;
                let result = match ctx.procs.take_helper_result(ctx.registry, pid) {
                    Some((status, output)) => (pending.then)(ctx, HelperResult { status, output }),
                    // Evicted or never inserted: fail rather than wait forever.
                    None if ctx.procs.get(pid).is_none() => Err(QgaError::generic("helper process was lost")),
                    None => return Slot::Deferred(Deferred { id, until: Until::Helper(pending), audit }),
                };
                let audit = audit.filter(|_| cfg!(feature = "controls")).and_then(|a| audit_result(ctx, a, &result));
                slot_for(result, id, audit)
            }
        }
    }

    /// The connection is gone: nobody reads the reply, but a command that
    /// may have changed something is still audited.
    #[inline(never)]
    pub fn abandon(self, ctx: &mut Ctx<'_>) {
        if let Some(a) = self.audit.filter(|_| cfg!(feature = "controls")) {
            let err = Some("unknown: the client left before the command ended");
            match *a {
                Audit::Command(r) | Audit::Failure(r) | Audit::Open(r, _) | Audit::Close(r, _) => {
                    ctx.audit.record(r.outcome(err))
                }
                Audit::Write(_) => {}
            }
        }
    }
}

/// What the dispatcher noted of a file-changing command before it ran.
#[derive(Debug)]
pub enum Audit {
    /// A record to complete with the outcome.
    Command(Record),
    /// guest-shutdown: audited before it runs (the machine may end before
    /// a reply); this record is written only if it fails.
    Failure(Record),
    /// guest-file-open in a writing mode, of this path.
    Open(Record, String),
    /// guest-file-write on this handle: counted, not recorded.
    Write(i64),
    /// guest-file-close of a handle opened for writing.
    Close(Record, i64),
}

/// The audit record a request will get, from its arguments (None: not a
/// file-changing command). Never a password, a key, data or contents.
/// Out of line, as [`audit_result`]: the dispatch path stays as it was.
#[inline(never)]
fn audit_request(ctx: &mut Ctx<'_>, name: &str, args: &Object) -> Option<Box<Audit>> {
    let client = ctx.client;
    let rec = || Record::new("command", name, &client);
    let s = |k: &str| args.get(k).and_then(Value::as_str);
    let count = |k: &str| args.get(k).map_or(0, |v| if let Value::List(l) = v { l.len() as i64 } else { 0 });
    let handle = args.get("handle").and_then(Value::as_i64);
    let a = match name {
        "guest-file-open" => {
            let (path, mode) = (s("path")?, s("mode").unwrap_or("r"));
            if !mode.contains(['w', 'a', '+']) {
                return None;
            }
            Audit::Open(rec().str("path", path).str("mode", mode), path.to_string())
        }
        "guest-file-write" => Audit::Write(handle?),
        "guest-file-close" => {
            let h = handle?;
            let (path, n) = ctx.audit.file_info(h)?;
            Audit::Close(rec().int("handle", h).str("path", path).int("bytes-written", n as i64), h)
        }
        "guest-shutdown" => {
            let mode = s("mode").unwrap_or("powerdown");
            ctx.audit.record(rec().str("mode", mode).str("outcome", "requested"));
            ctx.audit.flush_all(ctx.guest.frozen);
            Audit::Failure(rec().str("mode", mode))
        }
        _ => Audit::Command(match name {
            "guest-set-user-password" => rec().str("username", s("username").unwrap_or("")),
            "guest-ssh-add-authorized-keys" | "guest-ssh-remove-authorized-keys" => {
                rec().str("username", s("username").unwrap_or("")).int("keys", count("keys"))
            }
            "guest-fsfreeze-freeze" | "guest-fsfreeze-thaw" => rec(),
            "guest-fsfreeze-freeze-list" => match args.get("mountpoints") {
                Some(m) => rec().value("mountpoints", m.clone()),
                None => rec(),
            },
            "guest-set-time" => match args.get("time").and_then(Value::as_i64) {
                Some(t) => rec().int("time", t),
                None => rec(),
            },
            "guest-set-vcpus" => rec().int("vcpus", count("vcpus")),
            "guest-set-memory-blocks" => rec().int("memory-blocks", count("mem-blks")),
            _ => return None,
        }),
    };
    Some(Box::new(a))
}

/// Writes the audit record once the outcome is known; returns it back
/// while the reply still waits for a helper.
#[inline(never)]
fn audit_result(ctx: &mut Ctx<'_>, a: Box<Audit>, result: &Result<Outcome, QgaError>) -> Option<Box<Audit>> {
    if matches!(result, Ok(Outcome::Await(_))) {
        return Some(a);
    }
    let err = result.as_ref().err().map(|e| e.desc.as_str());
    let rec = match *a {
        Audit::Command(r) => r,
        Audit::Failure(r) if err.is_some() => r,
        Audit::Failure(_) => return None,
        Audit::Open(r, path) => match result {
            Ok(Outcome::Return(v)) => match v.as_i64() {
                Some(h) => {
                    ctx.audit.file_opened(h, &path);
                    r.int("handle", h)
                }
                None => r,
            },
            _ => r,
        },
        Audit::Write(h) => {
            if let Ok(Outcome::Return(Value::Object(o))) = result {
                let n = o.get("count").and_then(Value::as_i64).unwrap_or(0);
                ctx.audit.file_written(h, n.max(0) as u64);
            }
            return None;
        }
        Audit::Close(r, h) => {
            // The handle is gone when closed, even if fclose() failed.
            if err.is_none_or(|e| e.starts_with("failed to close")) {
                ctx.audit.file_closed(h);
            }
            r
        }
    };
    ctx.audit.record(rec.outcome(err));
    None
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
    let audit = if ctx.audit.enabled() { audit_request(ctx, spec.name, &req.arguments) } else { None };
    let result = (spec.handler)(ctx, Args::new(req.arguments));
    let audit = audit.filter(|_| cfg!(feature = "controls")).and_then(|a| audit_result(ctx, a, &result));
    slot_for(result, req.id, audit)
}

/// Encodes a handler's result (direct and continued replies alike).
fn slot_for(result: Result<Outcome, QgaError>, id: Option<Value>, audit: Option<Box<Audit>>) -> ReplySlot {
    let mut out = Segments::new();
    match result {
        Ok(Outcome::Return(v)) => encode_reply(&mut out, v, id),
        Ok(Outcome::Delimited(v)) => {
            out.push(SYNC_DELIMITER);
            encode_reply(&mut out, v, id);
        }
        Ok(Outcome::Silent) => {}
        Ok(Outcome::Hold { pid, deadline }) => {
            return Slot::Deferred(Deferred { id, until: Until::Status { pid, deadline }, audit })
        }
        Ok(Outcome::Await(pending)) => return Slot::Deferred(Deferred { id, until: Until::Helper(pending), audit }),
        Err(e) => encode_error(&mut out, &e, id),
    }
    Slot::Ready(out)
}
