//! Helpers for tests/qgactl.rs: start qga or Debian's qemu-ga on a unix
//! socket in a fresh directory (as QEMU's test fixture does:
//! `BIN -m unix-listen -p DIR/sock -t DIR -f DIR/pid`, cwd = DIR) and run
//! qgactl against it with a time limit.
#![allow(dead_code)]

#[path = "../common/procfs.rs"]
pub mod procfs;
#[path = "../common/skip.rs"]
pub mod skip;
#[path = "../common/tempdir.rs"]
pub mod tempdir;
pub use tempdir::TempDir;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

pub const QGA: &str = env!("CARGO_BIN_EXE_qga");

/// qgactl, built by `cargo build` (it is the workspace's crates/qgactl,
/// whose binary cargo hands only to that crate's own tests) beside qga in
/// the same target directory: `make test` builds it first.
pub fn qgactl() -> &'static str {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        // qgactl keeps a signal ignored at its start ignored (as ssh does),
        // and a test run started in the background of a non-interactive
        // shell (`make test &`) inherits SIGINT and SIGQUIT ignored: the
        // signal-forwarding tests need the defaults in qgactl.
        use qga_sys::signal::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
        qga_sys::signal::set_default(&[SIGINT, SIGQUIT, SIGHUP, SIGTERM]);
        let p = Path::new(QGA).with_file_name("qgactl");
        assert!(p.exists(), "{} is not built: run `cargo build -p qgactl` (make test does)", p.display());
        p.display().to_string()
    })
}

/// Debian's qemu-ga, fetched by scripts/fetch-qemu-ga.sh (see
/// [`skip::reference_qemu_ga`]).
pub fn qemu_ga_bin() -> Option<PathBuf> {
    skip::reference_qemu_ga()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Qga,
    QemuGa,
}

pub struct Agent {
    pub kind: Kind,
    child: Option<Child>,
    pub dir: TempDir,
    pub sock: PathBuf,
}

impl Agent {
    pub fn start(kind: Kind) -> Agent {
        Agent::start_with(kind, &[])
    }

    /// Starts the agent with extra command-line arguments.
    pub fn start_with(kind: Kind, extra: &[&str]) -> Agent {
        let bin = match kind {
            Kind::Qga => PathBuf::from(QGA),
            Kind::QemuGa => qemu_ga_bin().expect("qemu-ga not available"),
        };
        let dir = TempDir::new(match kind {
            Kind::Qga => "qgactl-qga",
            Kind::QemuGa => "qgactl-qemuga",
        });
        let sock = dir.join("sock");
        let log = std::fs::File::create(dir.join("agent.log")).unwrap();
        let child = Command::new(&bin)
            .args(["-m", "unix-listen", "-p"])
            .arg(&sock)
            .arg("-t")
            .arg(dir.path())
            .arg("-f")
            .arg(dir.join("pid"))
            .args(extra)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let deadline = Instant::now() + Duration::from_secs(60);
        while !sock.exists() {
            assert!(Instant::now() < deadline, "agent {:?} did not create {}", kind, sock.display());
            thread::sleep(Duration::from_millis(10));
        }
        Agent { kind, child: Some(child), dir, sock }
    }

    /// The agent's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("agent running").id()
    }

    pub fn name(&self) -> &'static str {
        match self.kind {
            Kind::Qga => "qga",
            Kind::QemuGa => "qemu-ga",
        }
    }

    /// Runs qgactl --socket SOCK ARGS.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, None, Duration::from_secs(40))
    }

    pub fn run_with(&self, args: &[&str], stdin: Option<Vec<u8>>, limit: Duration) -> Run {
        let mut full: Vec<String> = vec!["--socket".into(), self.sock.display().to_string()];
        full.extend(args.iter().map(|s| s.to_string()));
        run_qgactl(&full, stdin, limit, &[])
    }

    /// qgactl started with piped stdout/stderr, for tests that signal it.
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.spawn_with_stdin(args, Stdio::null())
    }

    /// Like [`Agent::spawn`], with the given stdin (e.g. another process's
    /// stdout, for live pipes).
    pub fn spawn_with_stdin(&self, args: &[&str], stdin: Stdio) -> Child {
        Command::new(qgactl())
            .arg("--socket")
            .arg(&self.sock)
            .args(args)
            .env_remove("QGA_SOCKET")
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn qgactl")
    }

    /// Whether guest-info lists `command`.
    pub fn has(&self, command: &str) -> bool {
        let r = self.run(&["info", "--json"]);
        assert_eq!(r.code, Some(0), "info --json failed: {}", r.stderr);
        let v: serde_json::Value = serde_json::from_slice(&r.stdout).expect("info --json is JSON");
        v["return"]["supported_commands"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == command && c["enabled"] == true)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = qga_sys::process::kill(c.id() as i32, qga_sys::signal::SIGTERM);
            if wait_timeout(&mut c, Duration::from_secs(30)).is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// Agents without streamed stdin: qga with guest-exec-input blocked, and
/// Debian's qemu-ga when it was fetched (else a skip note).
pub fn agents_without_input_stream() -> Vec<Agent> {
    let mut v = vec![Agent::start_with(Kind::Qga, &["-b", "guest-exec-input"])];
    match qemu_ga_bin() {
        Some(_) => v.push(Agent::start(Kind::QemuGa)),
        None => skip::missing(
            "target/ref/qemu-ga-10/usr/sbin/qemu-ga is absent (run scripts/fetch-qemu-ga.sh); the qemu-ga half is not run",
        ),
    }
    v
}

/// qga always; Debian's qemu-ga when it was fetched (else a skip note).
pub fn agents() -> Vec<Agent> {
    let mut v = vec![Agent::start(Kind::Qga)];
    match qemu_ga_bin() {
        Some(_) => v.push(Agent::start(Kind::QemuGa)),
        None => skip::missing(
            "target/ref/qemu-ga-10/usr/sbin/qemu-ga is absent (run scripts/fetch-qemu-ga.sh); the qemu-ga half is not run",
        ),
    }
    v
}

#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    pub fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

pub use procfs::wait_timeout;

/// Collects a child's output; kills it (and fails) after `limit`.
pub fn finish(c: Child, stdin: Option<Vec<u8>>, limit: Duration, start: Instant) -> Run {
    let (st, stdout, stderr) =
        procfs::collect_output(c, stdin, limit).unwrap_or_else(|| panic!("qgactl did not finish within {limit:?}"));
    Run { code: st.code(), stdout, stderr: String::from_utf8_lossy(&stderr).into_owned(), elapsed: start.elapsed() }
}

pub fn run_qgactl(args: &[String], stdin: Option<Vec<u8>>, limit: Duration, env: &[(&str, &str)]) -> Run {
    let start = Instant::now();
    let mut cmd = Command::new(qgactl());
    cmd.args(args).env_remove("QGA_SOCKET");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let c = cmd.spawn().expect("spawn qgactl");
    finish(c, stdin, limit, start)
}

/// Waits until `path` holds a pid; returns it.
pub fn wait_pidfile(path: &Path, limit: Duration) -> i32 {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            if let Ok(p) = s.trim().parse() {
                return p;
            }
        }
        assert!(Instant::now() < deadline, "{} did not appear", path.display());
        thread::sleep(Duration::from_millis(10));
    }
}

/// True once `pid` is gone (or a zombie), waiting up to `limit`.
pub fn process_gone(pid: i32, limit: Duration) -> bool {
    procfs::wait_until(limit, || matches!(procfs::proc_state(pid as u32), None | Some('Z') | Some('X')))
}

/// sha256sum of a local file, through the host's coreutils.
pub fn sha256_file(path: &Path) -> String {
    let o = Command::new("sha256sum").arg(path).output().expect("sha256sum");
    String::from_utf8_lossy(&o.stdout).split_whitespace().next().unwrap_or("").to_string()
}

/// Deterministic pseudo-random bytes (xorshift), every byte value present.
/// Long inputs repeat a block of an odd size (1,000,003 bytes), so that
/// misplaced or repeated 4 MiB chunks still change the data.
pub fn test_bytes(len: usize, seed: u64) -> Vec<u8> {
    const BLOCK: usize = 1_000_003;
    let mut v: Vec<u8> = (0..=255u8).cycle().take(len.min(512)).collect();
    let mut x = seed | 1;
    while v.len() < len.min(BLOCK) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes()[..(len.min(BLOCK) - v.len()).min(8)]);
    }
    while v.len() < len {
        let n = (len - v.len()).min(BLOCK);
        v.extend_from_within(..n);
    }
    v
}

/// One line on stderr, starting with "qgactl: ".
pub fn assert_one_line_error(stderr: &str, what: &str) {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{what}: expected one stderr line, got {stderr:?}");
    assert!(lines[0].starts_with("qgactl: "), "{what}: {stderr:?}");
}
