//! `qgactl exec`: guest-exec, then either streaming with qga's extensions
//! (guest-exec-status `wait` long-poll, `stream`: only new bytes per reply;
//! stdin fed in chunks with guest-exec-input while output is collected)
//! or polling with backoff against stock qemu-ga (output at exit, stdin in
//! the guest-exec request or staged in a guest file).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use crate::cli::{ExecArgs, StdinSource};
use crate::conn::{parse_reply, random_hex, secs, Event, Reply, Session};
use crate::fail::{one_line, Failure, Result, EXIT_TIMEOUT};
use crate::files::{strip_os_error, upload};
use crate::input::{Pump, Take};
use crate::progress::Progress;
use crate::signals;
use crate::terminal;

/// Largest stdin carried in the guest-exec request itself: base64 of it
/// (4/3) plus the rest of the request must stay under QEMU's 64 MiB
/// per-message limit (MAX_TOKEN_SIZE); 64 KiB are left for the rest.
pub const INPUT_LIMIT: usize = 48 * 1024 * 1024 - 64 * 1024;
/// Seconds one streamed guest-exec-status may be held by the agent.
const STATUS_WAIT: u64 = 30;
/// After a forwarded signal, SIGKILL follows this much later.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// qemu-ga's capture limit per stream (GUEST_EXEC_MAX_OUTPUT).
const QEMU_GA_CAPTURE: usize = 16 << 20;
/// Polling backoff against stock qemu-ga.
const POLL_FIRST: Duration = Duration::from_millis(1);
const POLL_MAX: Duration = Duration::from_millis(200);
/// Streamed stdin: raw bytes offered per guest-exec-input (qga holds at
/// most 4 MiB unwritten per process).
const INPUT_CHUNK: usize = 1 << 20;
/// Streamed stdin: when the agent took nothing, offer again after this
/// much, doubling up to INPUT_RETRY_MAX.
const INPUT_RETRY_FIRST: Duration = Duration::from_millis(1);
const INPUT_RETRY_MAX: Duration = Duration::from_millis(50);

/// Runs the staged stdin file as the program's stdin: opens it, removes
/// it (and its private directory) and execs the program, so the exit
/// status is the program's own.
const STAGE_SCRIPT: &str = r#"exec <"$0" || exit 125; rm -f "$0" 2>/dev/null; rmdir "${0%/*}" 2>/dev/null; exec "$@""#;

/// `qgactl shell`: the login shell of the uid it runs as (the shell field
/// of /etc/passwd when executable, else /bin/sh), started with -l in that
/// user's home directory with HOME, USER, LOGNAME and SHELL set.
const SHELL_SCRIPT: &str = r#"u=$(id -u 2>/dev/null) || u=0
sh=/bin/sh
if [ -r /etc/passwd ]; then
  while IFS=: read -r name pw uid gid gecos home shell; do
    if [ "$uid" = "$u" ]; then
      if [ -n "$shell" ] && [ -x "$shell" ]; then sh=$shell; fi
      export USER="$name" LOGNAME="$name"
      if [ -n "$home" ] && cd "$home" 2>/dev/null; then export HOME="$home"; fi
      break
    fi
  done </etc/passwd
fi
export SHELL="$sh"
exec "$sh" -l"#;

struct Caps {
    /// guest-exec-terminate listed and enabled: stream/wait/timeout/cwd/user.
    ext: bool,
    /// guest-file-open/write/close usable (for staging large stdin).
    files: bool,
    /// guest-exec-input listed and enabled: streamed stdin.
    input: bool,
    /// guest-exec-resize listed and enabled: `tty`.
    tty: bool,
}

fn query_caps(sess: &mut Session) -> Result<Caps> {
    let v = sess.call("guest-info", None)?;
    let cmds = v.get("supported_commands").and_then(Value::as_array).cloned().unwrap_or_default();
    let enabled = |n: &str| {
        cmds.iter().any(|c| {
            c.get("name").and_then(Value::as_str) == Some(n) && c.get("enabled").and_then(Value::as_bool) != Some(false)
        })
    };
    Ok(Caps {
        ext: enabled("guest-exec-terminate"),
        files: enabled("guest-file-open") && enabled("guest-file-write") && enabled("guest-file-close"),
        input: enabled("guest-exec-input"),
        tty: enabled("guest-exec-resize"),
    })
}

enum Input {
    None,
    Data(Vec<u8>),
    /// Uploaded to `file` inside the private directory `dir`.
    Staged {
        dir: String,
        file: String,
    },
    /// Read while the program runs and fed with guest-exec-input.
    Stream(Pump),
}

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
    }
    // The local terminal goes raw for the session; the guard restores it
    // on every way out of this function (errors included); SIGTERM and
    // SIGHUP are forwarded to the program, which ends the session too.
    let _raw = if a.tty && a.stdin.is_some() { terminal::RawMode::enter(0) } else { None };
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

fn prepare_input(sess: &mut Session, a: &ExecArgs, caps: &Caps) -> Result<Input> {
    let Some(src) = &a.stdin else { return Ok(Input::None) };
    if caps.ext && caps.input && !a.poll {
        let source: Box<dyn Read + Send> = match src {
            // Keystrokes: ssh's `~.` escape applies.
            StdinSource::Stdin if a.tty && crate::sys::isatty(0) => Box::new(terminal::Escape::new(std::io::stdin())),
            StdinSource::Stdin => Box::new(std::io::stdin()),
            StdinSource::File(p) => Box::new(
                File::open(p)
                    .map_err(|e| Failure::Local(format!("cannot open {}: {}", p.display(), strip_os_error(&e))))?,
            ),
        };
        let pump =
            Pump::start(source).map_err(|e| Failure::Local(format!("cannot read stdin: {}", strip_os_error(&e))))?;
        return Ok(Input::Stream(pump));
    }
    let too_big = || {
        Failure::Local(format!(
            "stdin is larger than {INPUT_LIMIT} bytes (48 MiB - 64 KiB), the most one guest-exec request can carry, and the agent has no usable guest-file-open/write/close to stage it in the guest"
        ))
    };
    let (mut reader, size): (Box<dyn Read>, Option<u64>) = match src {
        StdinSource::Stdin => (Box::new(std::io::stdin().lock()), None),
        StdinSource::File(p) => {
            let f = File::open(p)
                .map_err(|e| Failure::Local(format!("cannot open {}: {}", p.display(), strip_os_error(&e))))?;
            let size = f.metadata().ok().filter(|m| m.is_file()).map(|m| m.len());
            (Box::new(f), size)
        }
    };
    if size.is_some_and(|s| s > INPUT_LIMIT as u64) && !caps.files {
        return Err(too_big());
    }
    let mut head = Vec::new();
    if size.is_none_or(|s| s <= INPUT_LIMIT as u64) {
        reader
            .by_ref()
            .take(INPUT_LIMIT as u64 + 1)
            .read_to_end(&mut head)
            .map_err(|e| Failure::Local(format!("cannot read stdin: {}", strip_os_error(&e))))?;
        if head.len() <= INPUT_LIMIT {
            return Ok(Input::Data(head));
        }
        if !caps.files {
            return Err(too_big());
        }
    }
    // Stage it: a private directory (0711, random name, mkdir fails if it
    // exists), the data via guest-file-write in chunks.
    let dir = format!("/tmp/qgactl-{}", random_hex(16));
    let (code, err) = run_helper(sess, "mkdir", &["-m", "0711", &dir])?;
    if code != 0 {
        return Err(Failure::agent(
            "guest-exec",
            "GenericError",
            &format!("cannot create {dir} in the guest to stage stdin: {}", one_line(&err)),
        ));
    }
    let file = format!("{dir}/stdin");
    let mut prog = Progress::new("stdin", size, None);
    match upload(sess, &head, &mut reader, &file, &mut prog) {
        Ok(_) => prog.finish(),
        Err(f) => {
            prog.abandon();
            if !matches!(f, Failure::Connection(_)) {
                let _ = run_helper(sess, "rm", &["-rf", &dir]);
            }
            return Err(f);
        }
    }
    Ok(Input::Staged { dir, file })
}

/// Runs a short helper in the guest, collecting (exit code, stderr).
fn run_helper(sess: &mut Session, path: &str, args: &[&str]) -> Result<(i64, String)> {
    let v = sess.call("guest-exec", Some(json!({"path": path, "arg": args, "capture-output": true})))?;
    let pid = pid_of(&v)?;
    let deadline = Instant::now() + sess.reply_timeout;
    let mut delay = POLL_FIRST;
    loop {
        let s = sess.call("guest-exec-status", Some(json!({"pid": pid})))?;
        if s.get("exited").and_then(Value::as_bool) == Some(true) {
            let code = s.get("exitcode").and_then(Value::as_i64).unwrap_or(-1);
            let err = decode(&s, "err-data");
            return Ok((code, String::from_utf8_lossy(&err).into_owned()));
        }
        if Instant::now() >= deadline {
            return Err(Failure::Connection(format!(
                "guest-exec {path}: did not finish within {}",
                secs(sess.reply_timeout)
            )));
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(POLL_MAX);
    }
}

fn pid_of(v: &Value) -> Result<i64> {
    v.get("pid").and_then(Value::as_i64).ok_or_else(|| Failure::Connection(format!("guest-exec: unexpected reply {v}")))
}

fn decode(v: &Value, key: &str) -> Vec<u8> {
    v.get(key)
        .and_then(Value::as_str)
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .unwrap_or_default()
}

/// Forwarding of Ctrl-C & co., escalation to SIGKILL, giving up.
struct Terminator {
    pid: i64,
    forwarded: u32,
    kill_at: Option<Instant>,
    give_up_at: Option<Instant>,
    /// Stock qemu-ga: pids of the `kill` helpers (collected at the end).
    helpers: Vec<i64>,
    gave_up: bool,
}

enum Act {
    Send(i32),
    GiveUp,
}

impl Terminator {
    fn new(pid: i64) -> Self {
        Terminator { pid, forwarded: 0, kill_at: None, give_up_at: None, helpers: Vec::new(), gave_up: false }
    }

    /// A signal for the program: the first is forwarded as is, the second
    /// becomes SIGKILL, the third gives up.
    fn on_signal(&mut self, sig: i32) -> Act {
        self.forwarded += 1;
        match self.forwarded {
            1 => {
                self.kill_at = Some(Instant::now() + KILL_GRACE);
                Act::Send(sig)
            }
            2 => self.kill(),
            _ => Act::GiveUp,
        }
    }

    fn kill(&mut self) -> Act {
        self.kill_at = None;
        self.forwarded = self.forwarded.max(2);
        self.give_up_at = Some(Instant::now() + KILL_GRACE);
        Act::Send(crate::sys::SIGKILL)
    }

    /// Escalation timers.
    fn due(&mut self) -> Option<Act> {
        let now = Instant::now();
        if self.kill_at.is_some_and(|t| now >= t) {
            return Some(self.kill());
        }
        if self.give_up_at.is_some_and(|t| now >= t) {
            self.give_up_at = None;
            return Some(Act::GiveUp);
        }
        None
    }

    fn wake(&self) -> Option<Instant> {
        match (self.kill_at, self.give_up_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn terminate_args(&self, sig: i32) -> Value {
        if sig == crate::sys::SIGKILL {
            json!({"pid": self.pid})
        } else {
            json!({"pid": self.pid, "signal": sig})
        }
    }

    /// Stock qemu-ga: deliver `sig` with `kill` run through guest-exec
    /// (reaches the program only, not what it forked).
    fn kill_via_exec(&mut self, sess: &mut Session, sig: i32) -> Result<()> {
        let script = format!("kill -s {} {}", signals::name(sig), self.pid);
        match sess.call("guest-exec", Some(json!({"path": "/bin/sh", "arg": ["-c", script]}))) {
            Ok(v) => {
                if let Ok(p) = pid_of(&v) {
                    self.helpers.push(p);
                }
                Ok(())
            }
            Err(f @ Failure::Agent { .. }) => {
                eprintln!("qgactl: cannot signal the guest process: {f}");
                Ok(())
            }
            Err(f) => Err(f),
        }
    }

    /// Collects the helpers' results so the agent does not keep them.
    fn reap_helpers(&mut self, sess: &mut Session) {
        let deadline = Instant::now() + Duration::from_secs(1);
        for pid in std::mem::take(&mut self.helpers) {
            while Instant::now() < deadline {
                match sess.call("guest-exec-status", Some(json!({"pid": pid}))) {
                    Ok(v) if v.get("exited").and_then(Value::as_bool) == Some(false) => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    _ => break,
                }
            }
        }
    }
}

/// Where program output goes; notices a closed stdout.
#[derive(Default)]
struct Sink {
    stdout_closed: bool,
}

impl Sink {
    /// Writes a chunk; returns false when stdout just turned out closed.
    fn write(&mut self, to_stderr: bool, data: &[u8]) -> bool {
        if data.is_empty() {
            return true;
        }
        if to_stderr {
            let _ = std::io::stderr().lock().write_all(data);
            return true;
        }
        if self.stdout_closed {
            return true;
        }
        let mut o = std::io::stdout().lock();
        if o.write_all(data).and_then(|()| o.flush()).is_err() {
            self.stdout_closed = true;
            return false;
        }
        true
    }

    /// Writes the out/err data of a status reply; false if stdout closed.
    fn write_status(&mut self, v: &Value) -> bool {
        let ok = self.write(false, &decode(v, "out-data"));
        self.write(true, &decode(v, "err-data"));
        ok
    }
}

fn run_program(sess: &mut Session, a: &ExecArgs, caps: &Caps, input: &Input) -> Result<i32> {
    let streaming = caps.ext && !a.poll;
    let mut argv: Vec<String> = Vec::new();
    let path = match input {
        Input::Staged { file, .. } => {
            argv.extend(["-c".to_string(), STAGE_SCRIPT.to_string(), file.clone(), a.program.clone()]);
            "/bin/sh".to_string()
        }
        _ if a.shell => {
            argv.extend(["-c".to_string(), SHELL_SCRIPT.to_string(), "qgactl-shell".to_string()]);
            "/bin/sh".to_string()
        }
        _ => a.program.clone(),
    };
    argv.extend(a.args.iter().cloned());
    let mut req = json!({"path": path});
    if !argv.is_empty() {
        req["arg"] = json!(argv);
    }
    if !a.env.is_empty() {
        req["env"] = json!(a.env);
    }
    if a.tty {
        // A terminal is captured, streamed and fed by itself.
        req["tty"] = json!(true);
        if let Some((rows, cols)) = terminal::local_size() {
            req["rows"] = json!(rows);
            req["cols"] = json!(cols);
        }
    } else {
        // `true` rather than "separated": understood by every qemu-ga since 2.5.
        req["capture-output"] = if a.merge { json!("merged") } else { json!(true) };
    }
    if caps.ext {
        if streaming && !a.tty {
            req["stream"] = json!(true);
        }
        if matches!(input, Input::Stream(_)) && !a.tty {
            req["input-stream"] = json!(true);
        }
        if let Some(t) = a.timeout {
            req["timeout"] = json!(t);
        }
        if let Some(d) = &a.cwd {
            req["cwd"] = json!(d);
        }
        if let Some(u) = &a.user {
            req["user"] = json!(u);
        }
    }
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
    Ok(match (fin.exitcode, fin.signal) {
        (_, Some(s)) if (1..128).contains(&s) => 128 + s as i32,
        (Some(c), _) => (c & 0xff) as i32,
        _ => 0,
    })
}

#[derive(Default)]
struct Final {
    exited: bool,
    exitcode: Option<i64>,
    signal: Option<i64>,
    timed_out: bool,
    /// Streamed stdin could not be read to its end.
    input_error: Option<String>,
    /// `~.` ended the session.
    escaped: bool,
}

impl Final {
    fn from_status(v: &Value) -> Final {
        Final {
            exited: true,
            exitcode: v.get("exitcode").and_then(Value::as_i64),
            signal: v.get("signal").and_then(Value::as_i64),
            timed_out: v.get("timed-out").and_then(Value::as_bool).unwrap_or(false),
            input_error: None,
            escaped: false,
        }
    }
}

enum Expect {
    Status,
    Terminate,
    Resize,
    /// guest-exec-input offering `sent` bytes, with `eof` or not.
    Input {
        sent: usize,
        eof: bool,
    },
}

/// Streamed stdin. At most one guest-exec-input is in flight: the agent
/// may take only part of an offer, and the rest must go before anything
/// that follows it.
struct Feeder<'a> {
    pump: &'a Pump,
    /// Taken from the pump and not yet accepted by the agent.
    offer: Vec<u8>,
    in_flight: bool,
    /// The agent's window was full: offer again at this time.
    retry_at: Option<Instant>,
    delay: Duration,
    /// stdin is closed (eof accepted, or the agent closed it).
    done: bool,
    read_error: Option<String>,
}

impl<'a> Feeder<'a> {
    fn new(pump: &'a Pump) -> Self {
        Feeder {
            pump,
            offer: Vec::new(),
            in_flight: false,
            retry_at: None,
            delay: INPUT_RETRY_FIRST,
            done: false,
            read_error: None,
        }
    }

    /// Whether a guest-exec-input should go out now, and with `eof`.
    fn ready(&mut self) -> Option<bool> {
        if self.done || self.in_flight || self.retry_at.is_some_and(|t| Instant::now() < t) {
            return None;
        }
        self.retry_at = None;
        if self.offer.len() < INPUT_CHUNK {
            match self.pump.take(INPUT_CHUNK - self.offer.len()) {
                Take::Data(d) if self.offer.is_empty() => self.offer = d,
                Take::Data(d) => self.offer.extend_from_slice(&d),
                Take::Error(e) => self.read_error = Some(e),
                Take::Empty | Take::Eof => {}
            }
        }
        let eof = match self.pump.finished() {
            None => false,
            Some(None) => true,
            Some(Some(e)) => {
                self.read_error.get_or_insert(e);
                true
            }
        };
        (eof || !self.offer.is_empty()).then_some(eof)
    }

    /// The descriptor to wait on: only while waiting for local data.
    fn watch(&self) -> Option<RawFd> {
        (!self.done && !self.in_flight && self.retry_at.is_none()).then(|| self.pump.fd())
    }

    fn accepted(&mut self, sent: usize, eof: bool, count: usize) {
        self.in_flight = false;
        let n = count.min(sent).min(self.offer.len());
        self.offer.drain(..n);
        if n == sent {
            self.delay = INPUT_RETRY_FIRST;
            self.done = eof;
        } else if n > 0 {
            // Partly taken: the child is reading; try again soon.
            self.delay = INPUT_RETRY_FIRST;
            self.retry_at = Some(Instant::now() + INPUT_RETRY_FIRST);
        } else {
            self.retry_at = Some(Instant::now() + self.delay);
            self.delay = (self.delay * 2).min(INPUT_RETRY_MAX);
        }
    }

    /// The agent refused the input: the program closed its stdin or is
    /// gone (it decides how much input it reads), or something odd.
    fn refused(&mut self, desc: &str) {
        self.in_flight = false;
        self.done = true;
        self.offer = Vec::new();
        if !(desc.contains("is closed") || desc.contains("does not exist")) {
            terminal::note(&format!("guest-exec-input: {}", one_line(desc)));
        }
    }
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
fn stream_loop(sess: &mut Session, term: &mut Terminator, mut feeder: Option<Feeder>) -> Result<Final> {
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
            sess.send("guest-exec-terminate", Some(json!({"pid": pid, "signal": crate::sys::SIGHUP})))?;
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
                                acts.push(term.on_signal(crate::sys::SIGPIPE));
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
                    if s != crate::sys::SIGWINCH {
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

fn ctx(f: Failure, command: &str) -> Failure {
    match f {
        Failure::Connection(m) => Failure::Connection(format!("{command}: {m}")),
        other => other,
    }
}

/// Stock qemu-ga (or --poll): guest-exec-status with backoff; output
/// arrives with the final status.
fn poll_loop(sess: &mut Session, a: &ExecArgs, caps: &Caps, term: &mut Terminator, start: Instant) -> Result<Final> {
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
                // qemu-ga < 10.2 sends `false` exactly when it truncated
                // (qga-protocol.md §2.6), so a capture of exactly the cap
                // with the flag present counts as truncated too.
                let truncated = match v.get(flag).and_then(Value::as_bool) {
                    Some(true) => true,
                    Some(false) => decode(&v, data).len() == QEMU_GA_CAPTURE,
                    None => false,
                };
                if truncated {
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
            acts.push(term.on_signal(crate::sys::SIGTERM));
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
