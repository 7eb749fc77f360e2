//! Shared helpers for qga's black-box integration tests.
//!
//! Every test starts the agent binary the way QEMU's own test fixture
//! (tests/unit/test-qga.c) does:
//!
//! ```text
//! BIN -m unix-listen -p DIR/sock -t DIR -f DIR/pid      (cwd = DIR)
//! ```
//!
//! with a fresh temporary directory per agent, connects to the unix socket
//! (retrying for up to 60 s) and on teardown sends SIGTERM and asserts exit
//! status 0 (SIGKILL afterwards if the agent does not stop, so nothing leaks).
//!
//! Environment variables:
//! * `QGA_TEST_BIN`: agent binary to test instead of `target/*/qga`
//!   (e.g. `target/ref/qemu-ga-10/usr/sbin/qemu-ga` to validate the tests).
//! * `QGA_TEST_REFERENCE=1`: the binary is the reference qemu-ga; tests of
//!   qga's deliberate deviations are skipped (with a printed note) and a few
//!   expectations switch to qemu-ga's documented behaviour.
//!
//! Only std, serde_json and libc are used (libc is a normal dependency of the
//! crate).
#![allow(dead_code)]

pub mod procfs;
pub mod skip;
pub mod tempdir;
pub mod under_test;
pub use procfs::*;
pub use tempdir::TempDir;
pub use under_test::{agent_bin, is_reference_agent};

use serde_json::{json, Value};
use std::ffi::OsString;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Default bound for waiting on one reply line.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound for polling guest-exec-status until `exited: true`.
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound for the agent to exit after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// Which binary, which expectations
// ---------------------------------------------------------------------------

/// Skip the current test (return early) when running against the reference
/// agent, printing why. Use for qga's deliberate deviations from qemu-ga.
#[macro_export]
macro_rules! skip_on_reference {
    ($why:expr) => {
        if $crate::common::is_reference_agent() {
            $crate::common::skip::not_applicable(&format!("reference agent: {}", $why));
            return;
        }
    };
}

/// All commands of the current schema, in schema order (reference §3.1).
pub const SCHEMA_ORDER: &[&str] = &[
    "guest-sync-delimited",
    "guest-sync",
    "guest-ping",
    "guest-get-time",
    "guest-set-time",
    "guest-info",
    "guest-shutdown",
    "guest-file-open",
    "guest-file-close",
    "guest-file-read",
    "guest-file-write",
    "guest-file-seek",
    "guest-file-flush",
    "guest-fsfreeze-status",
    "guest-fsfreeze-freeze",
    "guest-fsfreeze-freeze-list",
    "guest-fsfreeze-thaw",
    "guest-fstrim",
    "guest-suspend-disk",
    "guest-suspend-ram",
    "guest-suspend-hybrid",
    "guest-network-get-interfaces",
    "guest-get-vcpus",
    "guest-set-vcpus",
    "guest-get-disks",
    "guest-get-fsinfo",
    "guest-set-user-password",
    "guest-get-memory-blocks",
    "guest-set-memory-blocks",
    "guest-get-memory-block-info",
    "guest-exec-status",
    "guest-exec",
    "guest-get-host-name",
    "guest-get-users",
    "guest-get-timezone",
    "guest-get-osinfo",
    "guest-get-devices",
    "guest-ssh-get-authorized-keys",
    "guest-ssh-add-authorized-keys",
    "guest-ssh-remove-authorized-keys",
    "guest-get-diskstats",
    "guest-get-cpustats",
    "guest-get-load",
    "guest-network-get-route",
];

/// Commands qga adds beyond QEMU's schema (issue 3 extensions).
pub const KNOWN_EXTENSIONS: &[&str] = &["guest-exec-terminate", "guest-exec-input", "guest-exec-resize"];

/// The guest-info `version` qga reports (the qemu-ga release it matches).
pub const QGA_VERSION: &str = "10.2.0";

// ---------------------------------------------------------------------------
// Starting and stopping the agent
// ---------------------------------------------------------------------------

/// How to start an agent. `AgentBuilder::new().arg("-b").arg("guest-ping").start()`.
#[derive(Default, Clone)]
pub struct AgentBuilder {
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    env_clear: bool,
    no_channel_args: bool,
    arg0: Option<OsString>,
    exact_env: Option<Vec<(OsString, OsString)>>,
}

impl AgentBuilder {
    pub fn new() -> Self {
        Self::default()
    }
    /// Extra command-line argument (after the fixture's own).
    pub fn arg<S: Into<OsString>>(mut self, a: S) -> Self {
        self.args.push(a.into());
        self
    }
    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, it: I) -> Self {
        for a in it {
            self.args.push(a.into());
        }
        self
    }
    /// Set an environment variable for the agent.
    pub fn env<K: Into<OsString>, V: Into<OsString>>(mut self, k: K, v: V) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }
    /// Start from an empty environment (as test-qga's custom envp does);
    /// variables given with `env` are still set.
    pub fn env_clear(mut self) -> Self {
        self.env_clear = true;
        self
    }
    /// Run the agent with exactly this environment, in this order (through
    /// `env -i`, because std's Command sorts variables). Overrides `env`.
    pub fn exact_env(mut self, vars: &[(&str, &str)]) -> Self {
        self.exact_env = Some(vars.iter().map(|(k, v)| (k.into(), v.into())).collect());
        self
    }
    /// argv[0] for the agent (default: the binary's path).
    pub fn arg0<S: Into<OsString>>(mut self, a: S) -> Self {
        self.arg0 = Some(a.into());
        self
    }
    /// Do not pass `-m unix-listen -p DIR/sock -t DIR -f DIR/pid`.
    pub fn no_channel_args(mut self) -> Self {
        self.no_channel_args = true;
        self
    }

    fn command(&self, dir: &TempDir) -> Command {
        let mut c = match &self.exact_env {
            None => Command::new(agent_bin()),
            Some(vars) => {
                let mut c = Command::new("env");
                c.arg("-i");
                for (k, v) in vars {
                    let mut kv = k.clone();
                    kv.push("=");
                    kv.push(v);
                    c.arg(kv);
                }
                c.arg(agent_bin());
                c
            }
        };
        if let Some(a) = &self.arg0 {
            assert!(self.exact_env.is_none(), "arg0 and exact_env cannot be combined");
            use std::os::unix::process::CommandExt;
            c.arg0(a);
        }
        if !self.no_channel_args {
            c.arg("-m")
                .arg("unix-listen")
                .arg("-p")
                .arg(dir.join("sock"))
                .arg("-t")
                .arg(dir.path())
                .arg("-f")
                .arg(dir.join("pid"));
        }
        c.args(&self.args);
        if self.env_clear {
            c.env_clear();
        }
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c.current_dir(dir.path());
        c
    }

    /// Start the agent (does not connect).
    pub fn spawn(self) -> Agent {
        let dir = TempDir::new("qga-test");
        let log = std::fs::File::create(dir.join("agent.stderr")).expect("create agent.stderr");
        let mut c = self.command(&dir);
        c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
        let child = c.spawn().unwrap_or_else(|e| panic!("cannot start agent {}: {}", agent_bin().display(), e));
        Agent { child: Some(child), dir, sock: PathBuf::new(), stop_checked: false }.with_sock()
    }

    /// Start the agent and wait until its socket accepts a connection; the
    /// first connection is returned with the agent.
    pub fn start(self) -> (Agent, Conn) {
        let agent = self.spawn();
        let conn = agent.connect();
        (agent, conn)
    }
}

/// A running agent. Dropping it stops it (SIGTERM, exit status 0 asserted
/// unless the test is already panicking; SIGKILL if it does not stop).
pub struct Agent {
    child: Option<Child>,
    dir: TempDir,
    sock: PathBuf,
    stop_checked: bool,
}

impl Agent {
    fn with_sock(mut self) -> Self {
        self.sock = self.dir.join("sock");
        self
    }

    /// Start an agent with the fixture's arguments and connect once.
    pub fn start() -> (Agent, Conn) {
        AgentBuilder::new().start()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("agent already stopped").id()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn sock_path(&self) -> &Path {
        &self.sock
    }

    /// The agent's stderr so far (its log, unless `-l` was given).
    pub fn stderr_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.stderr")).unwrap_or_default()
    }

    /// Connect to the agent's unix socket, retrying for up to 60 s.
    pub fn connect(&self) -> Conn {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match UnixStream::connect(&self.sock) {
                Ok(s) => return Conn::new(s),
                Err(e) => {
                    if Instant::now() > deadline {
                        panic!(
                            "cannot connect to {}: {}\nagent stderr:\n{}",
                            self.sock.display(),
                            e,
                            self.stderr_log()
                        );
                    }
                    if let Some(c) = self.child.as_ref() {
                        let _ = c; // still running is checked below
                    }
                    thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }

    /// Has the agent exited already? (non-blocking)
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// Send a signal to the agent.
    pub fn signal(&self, sig: i32) {
        let pid = self.pid() as i32;
        let _ = qga_sys::process::kill(pid, sig);
    }

    /// SIGTERM, then wait up to `STOP_TIMEOUT` for exit. Returns the status
    /// (None if it had to be killed).
    pub fn terminate(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st); // already exited (and reaped): never signal a stale pid
        }
        let _ = qga_sys::process::kill(child.id() as i32, qga_sys::signal::SIGTERM);
        match wait_timeout(&mut child, STOP_TIMEOUT) {
            Some(st) => Some(st),
            None => {
                eprintln!("agent pid {} did not exit after SIGTERM: {}", child.id(), describe_hang(child.id()));
                let _ = child.kill();
                let _ = child.wait();
                None
            }
        }
    }

    /// Stop the agent and assert it exited with status 0 after SIGTERM.
    pub fn stop(mut self) {
        self.stop_checked = true;
        let st = self.terminate();
        let log = self.stderr_log();
        match st {
            Some(st) => assert!(
                st.code() == Some(0),
                "agent did not exit with status 0 after SIGTERM: {:?} (signal {:?})\nstderr:\n{}",
                st,
                st.signal(),
                log
            ),
            None if is_reference_agent() => eprintln!("{}", REFERENCE_STOP_HANG_NOTE),
            None => panic!("agent did not exit within {:?} after SIGTERM\nstderr:\n{}", STOP_TIMEOUT, log),
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.child.is_none() {
            return;
        }
        let st = self.terminate();
        if thread::panicking() {
            eprintln!("agent stderr:\n{}", self.stderr_log());
            return;
        }
        if !self.stop_checked {
            match st {
                Some(st) if st.code() == Some(0) => {}
                None if is_reference_agent() => eprintln!("{}", REFERENCE_STOP_HANG_NOTE),
                other => panic!(
                    "agent teardown: expected exit status 0 after SIGTERM, got {:?}\nstderr:\n{}",
                    other,
                    self.stderr_log()
                ),
            }
        }
    }
}

/// Diagnostics for an agent that does not stop: per-thread state and wchan,
/// and a backtrace if gdb is installed (QGA_TEST_GDB=1).
fn describe_hang(pid: u32) -> String {
    let mut out = String::new();
    if let Ok(rd) = std::fs::read_dir(format!("/proc/{}/task", pid)) {
        for t in rd.flatten() {
            let tid = t.file_name().to_string_lossy().into_owned();
            let st = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
            let wchan = std::fs::read_to_string(t.path().join("wchan")).unwrap_or_default();
            let state = st.rsplit(')').next().unwrap_or("").split_whitespace().next().unwrap_or("?").to_string();
            out.push_str(&format!("[task {} state {} wchan {}] ", tid, state, wchan));
        }
    }
    if std::env::var("QGA_TEST_GDB").as_deref() == Ok("1") {
        if let Ok(o) = Command::new("gdb")
            .args(["-p", &pid.to_string(), "-batch", "-ex", "thread apply all bt"])
            .stdin(Stdio::null())
            .output()
        {
            out.push_str(&String::from_utf8_lossy(&o.stdout));
        }
    }
    out
}

/// qemu-ga (7.2 and 10.0.2 alike) sometimes deadlocks on SIGTERM: its signal
/// handler calls g_main_loop_quit() (not async-signal-safe) and can block on
/// the main-context lock the interrupted main loop holds. qga must not; for
/// the reference agent a hang at teardown is only reported.
pub const REFERENCE_STOP_HANG_NOTE: &str = "NOTE (reference agent): qemu-ga did not exit after SIGTERM \
     (known deadlock: g_main_loop_quit() called from its signal handler); killed";

/// Run the agent binary to completion (for CLI tests): returns
/// (exit status, stdout, stderr). Killed (a failure) after 60 s.
pub fn run_agent_cli(args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String, String) {
    let dir = TempDir::new("qga-cli");
    let mut c = Command::new(agent_bin());
    c.args(args).current_dir(dir.path());
    for (k, v) in env {
        c.env(k, v);
    }
    c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = c.spawn().expect("spawn agent");
    let (st, o, e) = collect_output(child, None, Duration::from_secs(60))
        .unwrap_or_else(|| panic!("agent {:?} did not exit within 60 s", args));
    (st, String::from_utf8_lossy(&o).into_owned(), String::from_utf8_lossy(&e).into_owned())
}

// ---------------------------------------------------------------------------
// A client connection
// ---------------------------------------------------------------------------

/// One client connection to the agent's socket.
pub struct Conn {
    pub stream: UnixStream,
    buf: Vec<u8>,
    timeout: Duration,
}

impl Conn {
    pub fn new(stream: UnixStream) -> Conn {
        Conn { stream, buf: Vec::new(), timeout: REPLY_TIMEOUT }
    }

    /// Change the bound for waiting on one reply line.
    pub fn set_timeout(&mut self, t: Duration) {
        self.timeout = t;
    }

    /// Send raw bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to agent socket");
    }

    pub fn send_str(&mut self, s: &str) {
        self.send(s.as_bytes())
    }

    /// Send a large buffer from a helper thread (so the test can read replies
    /// concurrently). Join the handle to know it was all written.
    pub fn send_in_background(&self, bytes: Vec<u8>) -> thread::JoinHandle<std::io::Result<()>> {
        let mut s = self.stream.try_clone().expect("clone socket");
        thread::spawn(move || s.write_all(&bytes))
    }

    /// Send bytes one at a time, pausing briefly between them so the agent
    /// sees many separate reads.
    pub fn send_bytewise(&mut self, bytes: &[u8]) {
        for (i, b) in bytes.iter().enumerate() {
            self.send(std::slice::from_ref(b));
            if i % 4 == 0 {
                thread::sleep(Duration::from_millis(1));
            }
        }
    }

    /// Read more bytes into the buffer, up to `deadline`. Ok(false) = EOF.
    fn fill(&mut self, deadline: Instant) -> Result<bool, String> {
        let now = Instant::now();
        if now >= deadline {
            return Err("timed out".into());
        }
        self.stream.set_read_timeout(Some(deadline - now)).expect("set_read_timeout");
        let mut tmp = vec![0u8; 1 << 16];
        loop {
            match self.stream.read(&mut tmp) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.buf.extend_from_slice(&tmp[..n]);
                    return Ok(true);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                    return Err("timed out".into())
                }
                Err(e) => return Err(format!("read error: {}", e)),
            }
        }
    }

    /// Read one raw reply line including its trailing `\n` (and a leading
    /// 0xFF if the agent sent one), waiting at most `t`. None on timeout.
    /// Panics on EOF.
    pub fn try_read_line_raw(&mut self, t: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + t;
        let mut scanned = 0;
        loop {
            if let Some(pos) = self.buf[scanned..].iter().position(|&b| b == b'\n') {
                let end = scanned + pos + 1;
                let line: Vec<u8> = self.buf.drain(..end).collect();
                return Some(line);
            }
            scanned = self.buf.len();
            match self.fill(deadline) {
                Ok(true) => {}
                Ok(false) => {
                    panic!("agent closed the connection (pending bytes: {:?})", String::from_utf8_lossy(&self.buf))
                }
                Err(ref e) if e == "timed out" => return None,
                Err(e) => panic!("{}", e),
            }
        }
    }

    /// Read one raw reply line (with `\n`), panicking after the timeout.
    pub fn read_line_raw(&mut self) -> Vec<u8> {
        let t = self.timeout;
        match self.try_read_line_raw(t) {
            Some(l) => l,
            None => panic!(
                "no reply line within {:?} (partial: {:?})",
                t,
                String::from_utf8_lossy(&self.buf[..self.buf.len().min(300)])
            ),
        }
    }

    /// Read one reply line as a String without the `\n`; a single leading
    /// 0xFF (guest-sync-delimited) is stripped. Asserts the line is ASCII.
    pub fn read_line(&mut self) -> String {
        let mut l = self.read_line_raw();
        assert_eq!(l.pop(), Some(b'\n'));
        if l.first() == Some(&0xFF) {
            l.remove(0);
        }
        assert!(
            l.iter().all(|&b| b.is_ascii() && b != b'\r'),
            "reply is not pure ASCII / contains CR: {:?}",
            String::from_utf8_lossy(&l)
        );
        String::from_utf8(l).unwrap()
    }

    /// Read and parse one reply.
    pub fn recv(&mut self) -> Value {
        let l = self.read_line();
        serde_json::from_str(&l).unwrap_or_else(|e| panic!("reply is not JSON ({}): {:?}", e, trunc(&l)))
    }

    /// Assert that no reply comes: once the agent `pid` has gone idle (see
    /// [`wait_idle`]), nothing may be waiting on this connection.
    pub fn expect_silence_once_idle(&mut self, pid: u32) {
        wait_idle(pid);
        self.expect_silence(Duration::from_millis(20));
    }

    /// Assert that nothing more is answered for what was sent so far: a
    /// guest-ping with a unique id sent now must get the next reply (replies
    /// come in request order), with no waiting window to tune.
    pub fn expect_no_more_replies(&mut self) {
        let tag = unique("no-more");
        self.send(format!("{{\"execute\":\"guest-ping\",\"id\":\"{tag}\"}}").as_bytes());
        let l = self.read_line();
        assert_eq!(l, format!("{{\"return\": {{}}, \"id\": \"{tag}\"}}"), "a reply came before the ping's");
    }

    /// Assert that no reply arrives within `t` (negative check).
    pub fn expect_silence(&mut self, t: Duration) {
        if let Some(l) = self.try_read_line_raw(t) {
            panic!("unexpected reply: {:?}", String::from_utf8_lossy(&l));
        }
        assert!(self.buf.is_empty(), "unexpected partial reply: {:?}", String::from_utf8_lossy(&self.buf));
    }

    /// Send a JSON request (compact, with a trailing newline) and read the reply.
    pub fn cmd(&mut self, req: &Value) -> Value {
        let mut b = serde_json::to_vec(req).unwrap();
        b.push(b'\n');
        self.send(&b);
        self.recv()
    }

    /// Send raw request text and read one reply, returned as the raw line
    /// (with `\n`).
    pub fn cmd_raw(&mut self, req: &str) -> String {
        self.send_str(req);
        String::from_utf8(self.read_line_raw()).expect("reply is not UTF-8")
    }

    /// `{"execute": name, "arguments": args}` → the whole reply.
    pub fn execute(&mut self, name: &str, args: Value) -> Value {
        if args.is_null() {
            self.cmd(&json!({ "execute": name }))
        } else {
            self.cmd(&json!({ "execute": name, "arguments": args }))
        }
    }

    /// Execute and return `return`, panicking on an error reply.
    pub fn ok(&mut self, name: &str, args: Value) -> Value {
        let r = self.execute(name, args);
        match r.get("return") {
            Some(v) => v.clone(),
            None => panic!("{} failed: {}", name, r),
        }
    }

    /// Execute and return (class, desc) of the error, panicking on success.
    pub fn err(&mut self, name: &str, args: Value) -> (String, String) {
        let r = self.execute(name, args);
        error_of(&r).unwrap_or_else(|| panic!("{} unexpectedly succeeded: {}", name, r))
    }

    /// guest-ping must work (liveness check).
    pub fn ping(&mut self) {
        let r = self.cmd(&json!({"execute": "guest-ping"}));
        assert_eq!(r, json!({"return": {}}), "guest-ping failed");
    }

    /// Names listed by guest-info.
    pub fn supported_commands(&mut self) -> Vec<String> {
        self.ok("guest-info", Value::Null)["supported_commands"]
            .as_array()
            .expect("supported_commands")
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_string())
            .collect()
    }

    /// Send guest-ping with a unique id and read replies until its reply;
    /// returns the replies that came before it.
    pub fn sync_with_ping(&mut self, tag: &str) -> Vec<Value> {
        self.send(format!("{{\"execute\":\"guest-ping\",\"id\":\"{}\"}}\n", tag).as_bytes());
        let mut before = Vec::new();
        loop {
            let v = self.recv();
            if v.get("id") == Some(&Value::String(tag.to_string())) {
                assert_eq!(v.get("return"), Some(&json!({})), "ping failed: {}", v);
                return before;
            }
            before.push(v);
            assert!(before.len() < 1_000_000, "too many replies");
        }
    }

    /// guest-exec → pid.
    pub fn exec(&mut self, args: Value) -> i64 {
        let r = self.ok("guest-exec", args);
        r["pid"].as_i64().unwrap_or_else(|| panic!("no pid in {}", r))
    }

    /// guest-exec-status → the whole reply.
    pub fn exec_status(&mut self, pid: i64) -> Value {
        self.execute("guest-exec-status", json!({ "pid": pid }))
    }

    /// Poll guest-exec-status until `exited: true` (bounded by EXEC_TIMEOUT);
    /// returns the `return` object.
    pub fn wait_exec(&mut self, pid: i64) -> Value {
        self.wait_exec_for(pid, EXEC_TIMEOUT)
    }

    pub fn wait_exec_for(&mut self, pid: i64, t: Duration) -> Value {
        let deadline = Instant::now() + t;
        let mut delay = Duration::from_millis(2);
        loop {
            let r = self.exec_status(pid);
            let ret = r.get("return").unwrap_or_else(|| panic!("guest-exec-status {} failed: {}", pid, r));
            if ret["exited"] == json!(true) {
                return ret.clone();
            }
            assert_eq!(ret, &json!({"exited": false}), "a running process reports only exited:false");
            if Instant::now() > deadline {
                panic!("pid {} did not exit within {:?}", pid, t);
            }
            thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(50));
        }
    }

    /// Poll guest-exec-status until exited; returns the final reply as raw
    /// text (with `\n`) for byte-exact comparisons.
    pub fn wait_exec_raw(&mut self, pid: i64) -> String {
        let deadline = Instant::now() + EXEC_TIMEOUT;
        loop {
            let raw = self.cmd_raw(&format!("{{\"execute\":\"guest-exec-status\",\"arguments\":{{\"pid\":{}}}}}", pid));
            if raw != "{\"return\": {\"exited\": false}}\n" {
                return raw;
            }
            if Instant::now() > deadline {
                panic!("pid {} did not exit within {:?}", pid, EXEC_TIMEOUT);
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// guest-exec + poll status until exited; returns the final status object.
    pub fn exec_and_wait(&mut self, args: Value) -> Value {
        let pid = self.exec(args);
        self.wait_exec(pid)
    }
}

/// (class, desc) of an error reply.
pub fn error_of(r: &Value) -> Option<(String, String)> {
    let e = r.get("error")?;
    Some((
        e["class"].as_str().unwrap_or("<no class>").to_string(),
        e["desc"].as_str().unwrap_or("<no desc>").to_string(),
    ))
}

/// Assert that `r` is a GenericError with exactly `desc`.
#[track_caller]
pub fn assert_generic_error(r: &Value, desc: &str) {
    assert_eq!(error_of(r), Some(("GenericError".to_string(), desc.to_string())), "reply: {}", r);
}

fn trunc(s: &str) -> String {
    if s.len() > 400 {
        format!("{}...({} bytes)", &s[..400], s.len())
    } else {
        s.to_string()
    }
}

/// Decode a base64 `*-data` member of a status object ("" if absent).
pub fn data_of(status: &Value, key: &str) -> Vec<u8> {
    match status.get(key) {
        None => Vec::new(),
        Some(v) => b64decode(v.as_str().expect("base64 string")),
    }
}

// ---------------------------------------------------------------------------
// base64 (standard alphabet, with padding), hand-written to stay independent
// of the implementation's own dependency
// ---------------------------------------------------------------------------

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub fn b64encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = ((b[0] as u32) << 16) | ((b[1] as u32) << 8) | b[2] as u32;
        out.push(B64[(n >> 18) as usize & 63] as char);
        out.push(B64[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 { B64[(n >> 6) as usize & 63] as char } else { '=' });
        out.push(if chunk.len() > 2 { B64[n as usize & 63] as char } else { '=' });
    }
    out
}

/// Strict decoder for agent output (must be canonical, padded, no newlines).
pub fn b64decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    assert!(bytes.len().is_multiple_of(4), "base64 length not a multiple of 4: {}", bytes.len());
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("invalid base64 character {:?}", c as char),
        }
    };
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for (i, q) in bytes.chunks(4).enumerate() {
        let last = i == bytes.len() / 4 - 1;
        let pad = q.iter().rev().take_while(|&&c| c == b'=').count();
        assert!(pad <= 2 && (pad == 0 || last), "bad base64 padding");
        let mut n = 0u32;
        for (j, &c) in q.iter().enumerate() {
            n = (n << 6) | if j >= 4 - pad { 0 } else { val(c) };
        }
        out.push((n >> 16) as u8);
        if pad < 2 {
            out.push((n >> 8) as u8);
        }
        if pad < 1 {
            out.push(n as u8);
        }
    }
    out
}

/// Create a FIFO (named pipe) at `path`.
pub fn mkfifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    if let Err(e) = qga_sys::fs::mkfifo(&c, 0o600) {
        panic!("mkfifo {}: {e}", path.display());
    }
}

/// Open a FIFO for writing (blocks until a reader has it open, bounded by
/// polling with O_NONBLOCK for up to 60 s), write `data`, close it.
pub fn release_fifo(path: &Path, data: &[u8]) {
    use std::os::unix::fs::OpenOptionsExt;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut f = loop {
        match std::fs::OpenOptions::new().write(true).custom_flags(qga_sys::fs::oflag::O_NONBLOCK).open(path) {
            Ok(f) => break f,
            Err(e) if e.raw_os_error() == Some(qga_sys::Errno::ENXIO.raw()) && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("open fifo {} for writing: {}", path.display(), e),
        }
    };
    f.write_all(data).expect("write fifo");
}

/// A unique tag for ids.
pub fn unique(tag: &str) -> String {
    static UNIQUE: AtomicUsize = AtomicUsize::new(0);
    format!("{}-{}", tag, UNIQUE.fetch_add(1, Ordering::SeqCst))
}

/// Small deterministic PRNG (xorshift64*, seeded: the same cases every
/// run), shared by the suites that generate inputs.
#[allow(dead_code)]
pub struct Rng(pub u64);

#[allow(dead_code)]
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}
