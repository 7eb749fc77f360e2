//! The polling loop for stock qemu-ga (and --poll).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::caps::Caps;
use super::status::{truncated, Final, Sink};
use super::terminator::{Act, Terminator};
use crate::cli::ExecArgs;
use crate::conn::Session;
use crate::fail::{Failure, Result};
use crate::signals;

/// Polling backoff against stock qemu-ga.
pub(super) const POLL_FIRST: Duration = Duration::from_millis(1);
pub(super) const POLL_MAX: Duration = Duration::from_millis(200);

/// Stock qemu-ga (or --poll): guest-exec-status with backoff; output
/// arrives with the final status.
pub(super) fn poll_loop(
    sess: &mut Session,
    a: &ExecArgs,
    caps: &Caps,
    term: &mut Terminator,
    start: Instant,
) -> Result<Final> {
    let pid = term.pid;
    // qga enforces --timeout itself; with stock qemu-ga qgactl does.
    let client_deadline = if caps.ext { None } else { a.timeout.map(|t| start + Duration::from_secs_f64(t)) };
    let mut timed_out = false;
    let mut delay = POLL_FIRST;
    loop {
        let v = sess.call("guest-exec-status", Some(json!({"pid": pid})))?;
        if v.get("exited").and_then(Value::as_bool) == Some(true) {
            let mut sink = Sink::default();
            sink.write_status(&v);
            for (flag, data, stream) in
                [("out-truncated", "out-data", "stdout"), ("err-truncated", "err-data", "stderr")]
            {
                if truncated(&v, flag, data) {
                    eprintln!("qgactl: warning: the agent kept only the first 16 MiB of the program's {stream} (output truncated)");
                }
            }
            let mut fin = Final::from_status(&v);
            fin.timed_out |= timed_out;
            return Ok(fin);
        }
        let mut wake = Instant::now() + delay;
        if let Some(t) = term.wake() {
            wake = wake.min(t);
        }
        if let Some(t) = client_deadline.filter(|_| !timed_out) {
            wake = wake.min(t);
        }
        let mut acts = Vec::new();
        if signals::sleep_until(wake) {
            acts.extend(signals::take().into_iter().map(|s| term.on_signal(s)));
        }
        acts.extend(term.due());
        if client_deadline.is_some_and(|t| !timed_out && Instant::now() >= t) {
            timed_out = true;
            acts.push(term.on_signal(qga_sys::signal::SIGTERM));
        }
        for act in acts {
            match act {
                Act::Send(sig) if caps.ext => match sess.call("guest-exec-terminate", Some(term.terminate_args(sig))) {
                    Ok(_) => {}
                    Err(f @ Failure::Agent { .. }) => eprintln!("qgactl: {f}"),
                    Err(f) => return Err(f),
                },
                Act::Send(sig) => term.kill_via_exec(sess, sig)?,
                Act::GiveUp => {
                    if timed_out {
                        return Ok(Final { timed_out: true, ..Final::default() });
                    }
                    term.gave_up = true;
                    return Ok(Final::default());
                }
            }
        }
        delay = (delay * 2).min(POLL_MAX);
    }
}
