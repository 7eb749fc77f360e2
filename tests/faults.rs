//! Faults injected around a running agent (issue 12): resource limits,
//! signals, a full file system, and clients that go away. Each case checks
//! the failure is reported in qemu-ga's form, the agent keeps serving, and
//! no collectable result is lost.

// Two support modules share files (skip, tempdir): each is self-contained.
#![allow(clippy::duplicate_mod)]

mod commands_common;
mod common;

use common::*;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::Duration;

fn prlimit(pid: u32, limit: &str) {
    let st = Command::new("prlimit").arg(format!("--pid={pid}")).arg(limit).status().expect("prlimit");
    assert!(st.success(), "prlimit {limit}");
}

/// EMFILE: with 32 descriptors the agent cannot make the pipes of more
/// children; guest-exec says so, nothing else breaks, and once results are
/// collected it works again.
#[test]
fn out_of_descriptors() {
    let (agent, mut c) = Agent::start();
    prlimit(agent.pid(), "--nofile=32:32");
    let mut pids = Vec::new();
    let desc = loop {
        let r = c.execute("guest-exec", json!({"path": "sleep", "arg": ["600"], "capture-output": true}));
        match r["return"]["pid"].as_i64() {
            Some(pid) => pids.push(pid),
            None => break r["error"]["desc"].as_str().unwrap_or_default().to_string(),
        }
        assert!(pids.len() < 32, "32 descriptors cannot hold {} children's pipes", pids.len());
    };
    assert!(desc.ends_with("(Too many open files)"), "{desc}");
    c.ping();
    for p in &pids {
        c.ok("guest-exec-terminate", json!({"pid": p}));
        assert_eq!(c.wait_exec(*p)["signal"], json!(9), "every started child's result is kept");
    }
    let r = c.exec_and_wait(json!({"path": "echo", "arg": ["again"], "capture-output": true}));
    assert_eq!(b64decode(r["out-data"].as_str().unwrap()), b"again\n");
}

/// Fork failure: an unprivileged agent under RLIMIT_NPROC (root is exempt
/// from it) reports EAGAIN in GLib's words and keeps serving.
#[test]
fn out_of_processes() {
    if !skip::is_root() {
        skip::missing("needs root to run the agent as another user");
        return;
    }
    let dir = TempDir::new("qga-nproc");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let sock = dir.join("sock");
    // The user may own a few processes elsewhere; allow a handful more.
    let mut child = KillOnDrop(
        Command::new("prlimit")
            .args(["--nproc=8:8", "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(agent_bin())
            .args(["-m", "unix-listen", "-p"])
            .arg(&sock)
            .arg("-t")
            .arg(dir.path())
            .env("QGA_CONF", "/nonexistent")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("setpriv"),
    );
    assert!(wait_until(Duration::from_secs(30), || UnixStream::connect(&sock).is_ok()), "agent did not come up");
    let mut c = Conn::new(UnixStream::connect(&sock).unwrap());
    let mut pids = Vec::new();
    let desc = loop {
        let r = c.execute("guest-exec", json!({"path": "sleep", "arg": ["600"]}));
        match r["return"]["pid"].as_i64() {
            Some(pid) => pids.push(pid),
            None => break r["error"]["desc"].as_str().unwrap_or_default().to_string(),
        }
        assert!(pids.len() <= 8, "RLIMIT_NPROC 8 let {} children start", pids.len());
    };
    assert_eq!(desc, "Failed to execute child process \u{201C}sleep\u{201D} (Resource temporarily unavailable)");
    c.ping();
    for p in &pids {
        c.ok("guest-exec-terminate", json!({"pid": p}));
        assert_eq!(c.wait_exec(*p)["signal"], json!(9));
    }
    assert_eq!(c.exec_and_wait(json!({"path": "true"}))["exitcode"], json!(0));
    child.0.kill().unwrap();
    child.0.wait().unwrap();
}

/// SIGSTOP in the middle of a stream, SIGCONT later: every byte arrives.
#[test]
fn stopped_and_continued_mid_stream() {
    if is_reference_agent() {
        skip::not_applicable("streaming is a qga extension");
        return;
    }
    let (agent, mut c) = Agent::start();
    let pid = c.exec(json!({"path": "seq", "arg": ["1", "300000"], "capture-output": true, "stream": true}));
    let mut got = Vec::new();
    let mut stopped = false;
    loop {
        let r = c.ok("guest-exec-status", json!({"pid": pid, "wait": 10}));
        if let Some(d) = r["out-data"].as_str() {
            got.extend(b64decode(d));
        }
        if r["exited"] == json!(true) {
            break;
        }
        if !stopped && !got.is_empty() {
            agent.signal(qga_sys::signal::SIGSTOP);
            assert!(wait_until(Duration::from_secs(30), || proc_state(agent.pid()) == Some('T')));
            agent.signal(qga_sys::signal::SIGCONT);
            stopped = true;
        }
    }
    assert!(stopped);
    let expected: Vec<u8> = (1..=300000).flat_map(|n: u32| format!("{n}\n").into_bytes()).collect();
    assert!(got == expected, "stream complete and in order ({} of {} bytes)", got.len(), expected.len());
}

/// A full file system: guest-file-write reports ENOSPC in qemu-ga's words
/// and the agent keeps serving.
#[test]
fn disk_full() {
    let Some(mut a) = commands_common::Agent::start_in_ns(
        "mkdir -p small && mount -t tmpfs -o size=64k tmpfs small",
        commands_common::Opts::default(),
    ) else {
        return;
    };
    let path = a.dir.join("small/f");
    let h = a.ok("guest-file-open", &format!("{{\"path\":\"{}\",\"mode\":\"w\"}}", path.display()));
    let chunk = b64encode(&vec![b'x'; 48 << 10]);
    let mut failure = None;
    for _ in 0..4 {
        let r = a.cmd(&format!(
            "{{\"execute\":\"guest-file-write\",\"arguments\":{{\"handle\":{h},\"buf-b64\":\"{chunk}\"}}}}"
        ));
        if let Some(e) = r.get("error") {
            failure = Some(e["desc"].as_str().unwrap_or_default().to_string());
            break;
        }
        let r = a.cmd(&format!("{{\"execute\":\"guest-file-flush\",\"arguments\":{{\"handle\":{h}}}}}"));
        if let Some(e) = r.get("error") {
            failure = Some(e["desc"].as_str().unwrap_or_default().to_string());
            break;
        }
    }
    let failure = failure.expect("writing 192 KiB to a 64 KiB file system must fail");
    assert!(
        failure == "failed to write to file: No space left on device"
            || failure == "failed to flush file: No space left on device",
        "{failure}"
    );
    a.ok("guest-file-close", &format!("{{\"handle\":{h}}}"));
    assert_eq!(a.ok("guest-ping", "{}"), json!({}));
}
