//! A small self-contained client for the tests/commands_*.rs suites: starts
//! the real binary as `qga -m unix-listen -p DIR/sock -t DIR -f DIR/pid`
//! (cwd = DIR, a fresh temp dir), optionally through a wrapper command
//! (e.g. `unshare -m sh -c ...` for the privileged cases), and talks to it
//! over the unix socket one line per reply.
#![allow(dead_code)]

#[path = "../common/skip.rs"]
pub mod skip;
#[path = "../common/tempdir.rs"]
pub mod tempdir;
#[path = "../common/under_test.rs"]
pub mod under_test;
#[allow(unused_imports)]
pub use skip::{can_unshare, is_root};
pub use tempdir::TempDir;

use serde_json::Value;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The agent under test, as a string for the command line.
pub fn bin() -> String {
    under_test::agent_bin().to_string_lossy().into_owned()
}

/// True when the suite runs against the reference qemu-ga
/// (`QGA_TEST_REFERENCE=1`).
pub fn is_reference() -> bool {
    under_test::is_reference_agent()
}

pub struct Agent {
    pub child: Child,
    pub conn: UnixStream,
    pub dir: TempDir,
    buf: Vec<u8>,
}

#[derive(Default)]
pub struct Opts {
    /// Extra agent arguments.
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Run as `sh -c "<prelude> && exec qga ..."` inside `unshare -m`.
    pub ns_prelude: Option<String>,
    /// Use this directory instead of a fresh one (it is not removed).
    pub dir: Option<TempDir>,
}

impl Agent {
    pub fn start() -> Agent {
        Agent::start_with(Opts::default())
    }

    /// Starts an agent in a private mount namespace after `prelude` (shell
    /// text, e.g. bind mounts). The prelude is tried on its own first: if it
    /// fails, the prerequisite is missing ([`skip::missing`], a failure under
    /// CI) and None is returned; an agent that then does not come up is a
    /// test failure (panic with its stderr), never a skip.
    pub fn start_in_ns(prelude: &str, mut o: Opts) -> Option<Agent> {
        if !skip::have_mount_ns() {
            return None;
        }
        if let Err(e) = skip::prelude_works(prelude) {
            skip::missing(&e);
            return None;
        }
        o.ns_prelude = Some(prelude.to_string());
        Some(Agent::start_with(o))
    }

    /// Starts an agent and connects; panics (with the agent's stderr) if it
    /// does not come up.
    pub fn start_with(o: Opts) -> Agent {
        let dir = o.dir.unwrap_or_else(|| TempDir::new("agent"));
        let d = dir.path().to_str().unwrap().to_string();
        let sock = format!("{d}/sock");
        let mut argv: Vec<String> = vec![
            "-m".into(),
            "unix-listen".into(),
            "-p".into(),
            sock.clone(),
            "-t".into(),
            d.clone(),
            "-f".into(),
            format!("{d}/pid"),
        ];
        argv.extend(o.args);
        let mut cmd = match &o.ns_prelude {
            None => {
                let mut c = Command::new(bin());
                c.args(&argv);
                c
            }
            Some(prelude) => {
                let mut c = Command::new("unshare");
                c.arg("-m").arg("sh").arg("-c").arg(format!("{prelude} && exec \"$0\" \"$@\"")).arg(bin()).args(&argv);
                c
            }
        };
        cmd.current_dir(dir.path())
            .env("QGA_CONF", "/nonexistent/qga-test.conf")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(dir.join("stderr")).unwrap()));
        for (k, v) in &o.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", bin()));
        // Generous: a loaded machine only makes this slower.
        let deadline = Instant::now() + Duration::from_secs(30);
        let conn = loop {
            if let Ok(c) = UnixStream::connect(&sock) {
                break c;
            }
            let exited = child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "agent did not come up ({}); stderr:\n{}",
                    match exited {
                        Some(st) => format!("exited: {st}"),
                        None => "no socket within 30 s".to_string(),
                    },
                    std::fs::read_to_string(dir.join("stderr")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        conn.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        Agent { child, conn, dir, buf: Vec::new() }
    }

    pub fn send_raw(&mut self, text: &str) {
        self.conn.write_all(text.as_bytes()).unwrap();
    }

    /// The next reply line, or None if nothing arrives within `wait`.
    pub fn line_within(&mut self, wait: Duration) -> Option<String> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return Some(String::from_utf8_lossy(&line[..line.len() - 1]).into_owned());
            }
            if Instant::now() > deadline {
                return None;
            }
            let mut chunk = [0u8; 65536];
            match self.conn.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    pub fn line(&mut self) -> String {
        self.line_within(Duration::from_secs(30)).expect("a reply line")
    }

    /// Sends one request (JSON text) and returns the raw reply line.
    pub fn raw(&mut self, req: &str) -> String {
        self.send_raw(req);
        self.line()
    }

    /// Sends one request and returns the parsed reply.
    pub fn cmd(&mut self, req: &str) -> Value {
        let l = self.raw(req);
        serde_json::from_str(&l).unwrap_or_else(|e| panic!("bad reply {l:?}: {e}"))
    }

    /// `execute` with `arguments` (a JSON object text), expecting success.
    pub fn ok(&mut self, name: &str, args: &str) -> Value {
        let r = self.cmd(&format!("{{\"execute\":\"{name}\",\"arguments\":{args}}}"));
        match r.get("return") {
            Some(v) => v.clone(),
            None => panic!("{name} {args} failed: {r}"),
        }
    }

    /// `execute` with `arguments`, expecting an error: returns (class, desc).
    pub fn err(&mut self, name: &str, args: &str) -> (String, String) {
        let r = self.cmd(&format!("{{\"execute\":\"{name}\",\"arguments\":{args}}}"));
        let e = r.get("error").unwrap_or_else(|| panic!("{name} {args} succeeded: {r}"));
        (e["class"].as_str().unwrap().to_string(), e["desc"].as_str().unwrap().to_string())
    }

    /// The GenericError text of `name` with `args`.
    pub fn desc(&mut self, name: &str, args: &str) -> String {
        let (class, desc) = self.err(name, args);
        assert_eq!(class, "GenericError", "{name} {args}: {desc}");
        desc
    }

    /// Stops the agent (SIGTERM, clean exit) and keeps its directory.
    pub fn stop_keep_dir(mut self) -> TempDir {
        self.terminate();
        std::mem::replace(&mut self.dir, TempDir::none())
    }

    /// Sends SIGTERM and checks a clean exit.
    pub fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        let _ = qga_sys::process::kill(self.child.id() as i32, qga_sys::signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                assert!(st.success(), "agent exit status {st:?}");
                return;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("agent did not stop on SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A scratch 32 MiB ext4 image in `t` and the prelude that loop-mounts it
/// on `t/mnt` (for [`Agent::start_in_ns`]); None, with the skip recorded,
/// when mkfs.ext4 cannot make it.
pub fn scratch_ext4(t: &TempDir) -> Option<(String, std::path::PathBuf)> {
    let img = t.join("fs.img");
    let mnt = t.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    std::fs::File::create(&img).unwrap().set_len(32 << 20).unwrap();
    let mkfs = Command::new("mkfs.ext4")
        .args(["-q", "-F", img.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !mkfs.is_ok_and(|s| s.success()) {
        skip::missing("mkfs.ext4 (e2fsprogs) could not make a scratch file system");
        return None;
    }
    Some((format!("mount -o loop {} {}", img.display(), mnt.display()), mnt))
}

/// Writes an executable shell script.
pub fn script(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}
