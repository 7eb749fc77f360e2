//! `qgactl exec`: guest-exec, then either streaming with qga's extensions
//! (guest-exec-status `wait` long-poll, `stream`: only new bytes per reply;
//! stdin fed in chunks with guest-exec-input while output is collected)
//! or polling with backoff against stock qemu-ga (output at exit, stdin in
//! the guest-exec request or staged in a guest file).
//!
//! `caps.rs`: what the agent can do; `stdin.rs`: preparing the program's
//! stdin; `request.rs`: the guest-exec request; `stream.rs` / `poll.rs`:
//! collecting output and status (qga / stock qemu-ga); `feeder.rs`:
//! streamed stdin; `terminator.rs`: signals for the program; `status.rs`:
//! output, truncation and the exit code.

mod caps;
mod feeder;
mod poll;
mod request;
mod status;
mod stdin;
mod stream;
mod terminator;

use std::time::Instant;

use crate::cli::ExecArgs;
use crate::conn::Session;
use crate::fail::{Failure, Result, EXIT_TIMEOUT};
use crate::signals;
use crate::terminal;
use caps::{query_caps, Caps};
use feeder::Feeder;
use poll::poll_loop;
use request::exec_request;
use stdin::{pid_of, prepare_input, run_helper, Input};
use stream::stream_loop;
use terminator::Terminator;

fn needs_ext(opt: &str) -> Failure {
    Failure::agent(
        "guest-exec",
        "GenericError",
        &format!("{opt} needs qga's exec extensions (the agent does not list guest-exec-terminate)"),
    )
}

pub fn run(sess: &mut Session, a: ExecArgs) -> Result<i32> {
    let caps = query_caps(sess)?;
    if a.tty && !(caps.tty && caps.ext && caps.input) {
        let what = if a.shell { "qgactl shell" } else { "exec --tty" };
        return Err(Failure::agent(
            "guest-exec",
            "GenericError",
            &format!(
                "the agent has no terminal support ({what} needs qga; guest-info does not list guest-exec-resize)"
            ),
        ));
    }
    if !caps.ext {
        if a.cwd.is_some() {
            return Err(needs_ext("--cwd"));
        }
        if a.user.is_some() {
            return Err(needs_ext("--user"));
        }
        if a.profile.is_some() {
            return Err(needs_ext("--profile"));
        }
    }
    // The local terminal goes raw for the session; the guard restores it
    // on every way out of this function (errors included); SIGTERM and
    // SIGHUP are forwarded to the program, which ends the session too.
    let _raw = if a.tty && a.stdin.is_some() { terminal::RawMode::enter(qga_sys::fd::stdin()) } else { None };
    let input = prepare_input(sess, &a, &caps)?;
    let r = run_program(sess, &a, &caps, &input);
    if let Input::Staged { dir, .. } = &input {
        // The wrapper removes the file itself when it can; this covers
        // --user (no permission) and failures before the program ran.
        if !matches!(r, Err(Failure::Connection(_))) {
            let _ = run_helper(sess, "rm", &["-rf", dir]);
        }
    }
    r
}

fn run_program(sess: &mut Session, a: &ExecArgs, caps: &Caps, input: &Input) -> Result<i32> {
    let streaming = caps.ext && !a.poll;
    let req = exec_request(a, caps, input, streaming, if a.tty { terminal::local_size() } else { None });
    // From here on Ctrl-C is for the guest program.
    signals::install();
    if a.tty {
        signals::install_winch();
    }
    match input {
        Input::Data(d) => sess.send_with_base64("guest-exec", req, "input-data", d)?,
        _ => sess.send("guest-exec", Some(req))?,
    }
    let v = sess.reply("guest-exec")?;
    let pid = pid_of(&v)?;
    let mut term = Terminator::new(pid);
    let start = Instant::now();
    let result = if streaming {
        let feeder = match input {
            Input::Stream(pump) => Some(Feeder::new(pump)),
            _ => None,
        };
        stream_loop(sess, &mut term, feeder)
    } else {
        poll_loop(sess, a, caps, &mut term, start)
    };
    if !term.helpers.is_empty() && !matches!(result, Err(Failure::Connection(_))) {
        term.reap_helpers(sess);
    }
    let fin = result?;
    if fin.escaped {
        return Err(Failure::Connection(format!("session closed (~.); guest process {pid} was sent SIGHUP")));
    }
    if term.gave_up {
        return Err(Failure::Interrupted(format!("gave up waiting; guest process {pid} may still be running")));
    }
    if let Some(e) = fin.input_error {
        // The program got a truncated stdin (closed at the failure).
        return Err(Failure::Local(e));
    }
    if fin.timed_out {
        let t = a.timeout.unwrap_or(0.0);
        eprintln!(
            "qgactl: {}: timed out after {} s{}",
            a.program,
            t,
            if fin.exited { "" } else { "; it may still be running" }
        );
        return Ok(EXIT_TIMEOUT);
    }
    Ok(fin.exit_code())
}
