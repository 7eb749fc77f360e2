//! qga's streaming loop.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::feeder::Feeder;
use super::status::{Final, Sink};
use super::terminator::{Act, Terminator};
use crate::conn::{parse_reply, Event, Reply, Session};
use crate::fail::{one_line, Failure, Result};
use crate::signals;
use crate::terminal;

/// Seconds one streamed guest-exec-status may be held by the agent.
const STATUS_WAIT: u64 = 30;

pub(super) enum Expect {
    Status,
    Terminate,
    Resize,
    /// guest-exec-input offering `sent` bytes, with `eof` or not.
    Input {
        sent: usize,
        eof: bool,
    },
}

/// qga: streamed output via long-polled guest-exec-status; signals go out
/// as guest-exec-terminate right away (the agent then answers the held
/// status first, so replies stay in order).
///
/// With streamed stdin, a status request is outstanding all the time too:
/// each guest-exec-input makes the agent answer the held status first, so
/// output keeps being collected while input goes out, and the program can
/// never block on a full output window while qgactl waits for it to take
/// input. When the agent's input window is full (it took less than
/// offered), the rest is offered again after 1 ms, doubling up to 50 ms
/// while it takes nothing.
pub(super) fn stream_loop(sess: &mut Session, term: &mut Terminator, mut feeder: Option<Feeder>) -> Result<Final> {
    let pid = term.pid;
    let mut sink = Sink::default();
    let mut queue: VecDeque<Expect> = VecDeque::new();
    let mut status_out = false;
    let mut deadline = Instant::now();
    let input_error = |f: &Option<Feeder>| f.as_ref().and_then(|f| f.read_error.clone());
    loop {
        if let Some(f) = feeder.as_mut() {
            if let Some(eof) = f.ready() {
                let mut args = json!({"pid": pid});
                if eof {
                    args["eof"] = json!(true);
                }
                if f.offer.is_empty() {
                    sess.send("guest-exec-input", Some(args))?;
                } else {
                    sess.send_with_base64("guest-exec-input", args, "input-data", &f.offer)?;
                }
                queue.push_back(Expect::Input { sent: f.offer.len(), eof });
                f.in_flight = true;
                deadline = deadline.max(Instant::now() + sess.reply_timeout);
            }
        }
        if terminal::escaped() {
            // As when ssh's connection goes: the terminal hangs up.
            sess.send("guest-exec-terminate", Some(json!({"pid": pid, "signal": qga_sys::signal::SIGHUP})))?;
            return Ok(Final { escaped: true, ..Final::default() });
        }
        if !status_out {
            sess.send("guest-exec-status", Some(json!({"pid": pid, "wait": STATUS_WAIT})))?;
            queue.push_back(Expect::Status);
            status_out = true;
            deadline = deadline.max(Instant::now() + Duration::from_secs(STATUS_WAIT) + sess.reply_timeout);
        }
        let mut acts = Vec::new();
        let wake = match (term.wake(), feeder.as_ref().and_then(|f| f.retry_at)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let watch = feeder.as_ref().and_then(Feeder::watch);
        let what = match queue.front() {
            Some(Expect::Input { .. }) => "guest-exec-input",
            Some(Expect::Terminate) => "guest-exec-terminate",
            Some(Expect::Resize) => "guest-exec-resize",
            _ => "guest-exec-status",
        };
        match sess.next_event(&mut deadline, wake, true, watch).map_err(|f| ctx(f, what))? {
            Event::Line(line) => match queue.pop_front() {
                Some(Expect::Status) => {
                    status_out = false;
                    match parse_reply(&line)? {
                        Reply::Return(v) => {
                            if !sink.write_status(&v) {
                                acts.push(term.on_signal(qga_sys::signal::SIGPIPE));
                            }
                            if v.get("exited").and_then(Value::as_bool) == Some(true) {
                                let mut fin = Final::from_status(&v);
                                fin.input_error = input_error(&feeder);
                                return Ok(fin);
                            }
                        }
                        Reply::Error { class, desc } => return Err(Failure::agent("guest-exec-status", &class, &desc)),
                    }
                }
                Some(Expect::Input { sent, eof }) => {
                    let f = feeder
                        .as_mut()
                        .ok_or_else(|| Failure::Connection("unexpected reply to guest-exec-input".to_string()))?;
                    match parse_reply(&line)? {
                        Reply::Return(v) => match v.get("count").and_then(Value::as_u64) {
                            Some(n) => f.accepted(sent, eof, n as usize),
                            None => return Err(Failure::Connection(format!("guest-exec-input: unexpected reply {v}"))),
                        },
                        Reply::Error { desc, .. } => f.refused(&desc),
                    }
                }
                Some(Expect::Resize) => {
                    if let Reply::Error { desc, .. } = parse_reply(&line)? {
                        if !desc.contains("does not exist") {
                            terminal::note(&format!("guest-exec-resize: {}", one_line(&desc)));
                        }
                    }
                }
                Some(Expect::Terminate) => {
                    if let Reply::Error { desc, .. } = parse_reply(&line)? {
                        // Typically the process ended meanwhile.
                        terminal::note(&format!("guest-exec-terminate: {}", one_line(&desc)));
                    }
                }
                None => {
                    return Err(Failure::Connection(format!(
                        "unexpected reply from the agent: {}",
                        String::from_utf8_lossy(&line)
                    )))
                }
            },
            Event::Signal => {
                for s in signals::take() {
                    if s != qga_sys::signal::SIGWINCH {
                        acts.push(term.on_signal(s));
                    } else if let Some((rows, cols)) = terminal::local_size() {
                        sess.send("guest-exec-resize", Some(json!({"pid": pid, "rows": rows, "cols": cols})))?;
                        queue.push_back(Expect::Resize);
                    }
                }
            }
            Event::Wake => acts.extend(term.due()),
            // Local stdin has news: the top of the loop takes it.
            Event::Watch => {}
        }
        for act in acts {
            match act {
                Act::Send(sig) => {
                    sess.send("guest-exec-terminate", Some(term.terminate_args(sig)))?;
                    queue.push_back(Expect::Terminate);
                }
                Act::GiveUp => {
                    term.gave_up = true;
                    return Ok(Final::default());
                }
            }
        }
    }
}

pub(super) fn ctx(f: Failure, command: &str) -> Failure {
    match f {
        Failure::Connection(m) => Failure::Connection(format!("{command}: {m}")),
        other => other,
    }
}
