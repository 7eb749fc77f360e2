//! One test per defect that was found and fixed, named after it, so it
//! never comes back (rust-vmm's `regressions.rs`). Each asserts the
//! behaviour that was wrong and that the agent keeps serving after it.

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn qga_only() -> bool {
    if is_reference_agent() {
        skip::not_applicable("qga regression; not applicable to the reference agent");
        return false;
    }
    true
}

/// Waits (bounded, generous) until `cond` holds.
fn wait_for(what: &str, t: Duration, cond: impl FnMut() -> bool) {
    assert!(wait_until(t, cond), "timed out waiting for: {what}");
}

/// `printf '{"execute":"guest-ping"}\n' | socat - UNIX-CONNECT:...` printed
/// nothing: the client's EOF arrived in the same pass as its request and
/// the connection was dropped before the reply was written.
#[test]
fn replies_are_sent_after_the_client_half_closes() {
    let (agent, _first) = Agent::start();
    drop(_first);
    let mut s = UnixStream::connect(agent.sock_path()).expect("connect");
    s.write_all(b"{\"execute\":\"guest-ping\"}\n{\"execute\":\"guest-sync\",\"arguments\":{\"id\":7}}\n").unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).expect("the agent closes after answering");
    assert_eq!(out, "{\"return\": {}}\n{\"return\": 7}\n");
    // A held `wait` is answered too before the connection closes.
    if qga_only() {
        let mut c = agent.connect();
        let pid = c.exec(json!({"path": "sh", "arg": ["-c", "sleep 0.3; echo done"], "capture-output": true}));
        drop(c);
        let mut s = UnixStream::connect(agent.sock_path()).expect("connect");
        let req = format!("{{\"execute\":\"guest-exec-status\",\"arguments\":{{\"pid\":{pid},\"wait\":30}}}}\n");
        s.write_all(req.as_bytes()).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let v: Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["return"]["exited"], json!(true), "{out}");
        assert_eq!(v["return"]["out-data"], json!("ZG9uZQo="), "{out}");
    }
    let mut c = agent.connect();
    c.ping();
}

/// `"timeout": 1e20` aborted the agent in Duration::from_secs_f64, and
/// 1e19 overflowed the deadline after the child had started.
#[test]
fn huge_timeouts_are_refused_not_fatal() {
    if !qga_only() {
        return;
    }
    let (_agent, mut c) = Agent::start();
    for t in [json!(1e20), json!(1e19), json!(1e300), json!(31536000.5), json!(i64::MAX), json!(u64::MAX)] {
        let (class, desc) = c.err("guest-exec", json!({"path": "true", "timeout": t}));
        assert_eq!(class, "GenericError");
        assert_eq!(
            desc, "Parameter 'timeout' expects a number of seconds greater than 0 and at most 31536000",
            "for {t}"
        );
    }
    // The largest allowed value works and can still be ended early.
    let pid = c.exec(json!({"path": "sleep", "arg": ["30"], "timeout": 31536000}));
    c.ok("guest-exec-terminate", json!({"pid": pid}));
    let r = c.wait_exec(pid);
    assert_eq!(r["signal"], json!(9));
    assert_eq!(r["timed-out"], json!(false));
    for w in [json!(1e20), json!(600.5)] {
        let (_, desc) = c.err("guest-exec-status", json!({"pid": pid, "wait": w}));
        assert_eq!(desc, "Parameter 'wait' expects a number of seconds greater than 0 and at most 600");
    }
    c.ping();
}

/// Makes the next pid the kernel hands out be `pid` (root only), then
/// starts `sleep 30` leading its own process group. Returns it if it got
/// that pid.
fn spawn_with_pid(pid: i64) -> Option<std::process::Child> {
    for _ in 0..50 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).ok()?;
        let child = Command::new("sleep").arg("30").process_group(0).stdin(Stdio::null()).spawn().ok()?;
        if i64::from(child.id()) == pid {
            return Some(child);
        }
        let mut child = child;
        let _ = child.kill();
        let _ = child.wait();
    }
    None
}

/// After its leader was reaped, a process's group number could be reused
/// by the kernel; guest-exec-terminate and the timeout's signals then hit
/// an unrelated group (the victim died with -15 / -9).
#[test]
fn signals_never_reach_a_group_that_reused_the_pid() {
    if !qga_only() {
        return;
    }
    if !skip::is_root() {
        skip::missing("needs root to choose a pid (ns_last_pid)");
        return;
    }
    let (_agent, mut c) = Agent::start();
    // The leader exits at once; a grandchild in its own session keeps the
    // output pipe open, so the result stays incomplete and the timeout
    // stays armed while group <pid> is empty.
    let pid =
        c.exec(json!({"path": "sh", "arg": ["-c", "setsid sleep 6 & exit 0"], "capture-output": true, "timeout": 2}));
    // Wait until the leader is gone, then give its number to a stranger.
    let proc_dir = format!("/proc/{pid}");
    wait_for("the leader to be reaped", Duration::from_secs(30), || !std::path::Path::new(&proc_dir).exists());
    let Some(mut victim) = spawn_with_pid(pid) else {
        panic!("the kernel did not hand out pid {pid} in 50 tries (ns_last_pid)");
    };
    c.ok("guest-exec-terminate", json!({"pid": pid, "signal": "TERM"}));
    // The timeout (2 s) and its SIGKILL (2 s later) pass meanwhile. No
    // signal of the agent's ended anything (the group was gone, the
    // grandchild is in a session of its own): not timed out.
    let r = c.wait_exec_for(pid, Duration::from_secs(60));
    assert_eq!(r["exitcode"], json!(0));
    assert_eq!(r["timed-out"], json!(false));
    assert!(victim.try_wait().unwrap().is_none(), "the unrelated process group was signalled");
    victim.kill().unwrap();
    victim.wait().unwrap();
    c.ping();
}

/// A guest-exec that started nothing (bad path) evicted the oldest
/// uncollected result when the table was full.
#[test]
fn a_failed_exec_discards_no_stored_result() {
    if !qga_only() {
        return;
    }
    let (_agent, mut c) = Agent::start();
    let first = c.exec(json!({"path": "true"}));
    for _ in 1..1024 {
        c.exec(json!({"path": "true"}));
    }
    // All 1,024 entries finished: the table is full of results.
    let (_, desc) = c.err("guest-exec", json!({"path": "/nonexistent/prog"}));
    assert_eq!(desc, "Failed to execute child process \u{201C}/nonexistent/prog\u{201D} (No such file or directory)");
    let r = c.wait_exec(first);
    assert_eq!(r["exitcode"], json!(0), "the oldest result survived the failed exec");
    c.ping();
}

/// Streamed output was dropped (0 of 1,288,895 bytes delivered, clean
/// exit reported) while the global capture budget was used up.
#[test]
fn streamed_output_waits_for_room_instead_of_being_dropped() {
    if !qga_only() {
        return;
    }
    let (agent, mut c) = Agent::start();
    // 16 running processes with 16 MiB captured each hold the whole
    // 256 MiB budget (running results cannot be discarded).
    let mut held = Vec::new();
    for _ in 0..16 {
        held.push(c.exec(
            json!({"path": "sh", "arg": ["-c", "head -c 16777216 /dev/zero; exec sleep 600"], "capture-output": true}),
        ));
    }
    // Every `head` is done (its shell became `sleep`) and the agent has
    // drained the pipes: all 256 MiB are held.
    let comm = |p: i64| std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
    wait_for("every writer to finish", Duration::from_secs(120), || held.iter().all(|&p| comm(p).trim() == "sleep"));
    wait_idle(agent.pid());
    assert!(proc_status_kib(agent.pid(), "VmRSS:") > 256 * 1024);
    let pid = c.exec(json!({"path": "seq", "arg": ["1", "200000"], "capture-output": true, "stream": true}));
    let expected: Vec<u8> = (1..=200000).flat_map(|n: u32| format!("{n}\n").into_bytes()).collect();
    // No room: nothing flows, and nothing is dropped.
    let r = c.ok("guest-exec-status", json!({"pid": pid, "wait": 2}));
    assert_eq!(r, json!({"exited": false}), "no streamed data while the budget is used up");
    // Ending and collecting one holder makes room; the stream goes on.
    let first = held.remove(0);
    c.ok("guest-exec-terminate", json!({"pid": first}));
    let r = c.wait_exec(first);
    assert_eq!(b64decode(r["out-data"].as_str().unwrap()).len(), 16 << 20);
    assert_eq!(r["out-truncated"], json!(false));
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = c.ok("guest-exec-status", json!({"pid": pid, "wait": 5}));
        if let Some(d) = r["out-data"].as_str() {
            got.extend(b64decode(d));
        }
        if r["exited"] == json!(true) {
            assert_eq!(r["exitcode"], json!(0));
            break;
        }
        assert!(Instant::now() < deadline, "stream did not finish");
    }
    assert_eq!(got.len(), expected.len(), "every streamed byte arrives");
    assert!(got == expected, "streamed bytes in order");
    for p in held {
        c.ok("guest-exec-terminate", json!({"pid": p}));
        assert_eq!(c.wait_exec(p)["signal"], json!(9));
    }
}

/// Ten execs with 40 MiB of input-data each, to children that never read
/// stdin, held 403 MiB of agent memory.
#[test]
fn input_held_for_children_is_bounded() {
    if !qga_only() {
        return;
    }
    let (agent, mut c) = Agent::start();
    let chunk = b64encode(&vec![b'x'; 40 << 20]);
    let mut pids = Vec::new();
    for i in 0..7 {
        let r = c.execute("guest-exec", json!({"path": "sleep", "arg": ["600"], "input-data": chunk}));
        if i < 6 {
            pids.push(r["return"]["pid"].as_i64().unwrap_or_else(|| panic!("exec {i}: {r}")));
        } else {
            assert_eq!(
                r["error"]["desc"],
                json!("Too much input-data is waiting to be read by other processes (limit 256 MiB)"),
                "the 7th 40 MiB input exceeds 256 MiB"
            );
        }
    }
    let rss = proc_status_kib(agent.pid(), "VmRSS:");
    assert!(rss < 400 * 1024, "agent RSS {rss} KiB");
    for p in pids {
        c.ok("guest-exec-terminate", json!({"pid": p}));
        assert_eq!(c.wait_exec(p)["signal"], json!(9));
    }
    // Killing the readers freed the budget.
    let pid = c.exec(json!({"path": "wc", "arg": ["-c"], "input-data": chunk, "capture-output": true}));
    assert_eq!(b64decode(c.wait_exec(pid)["out-data"].as_str().unwrap()), format!("{}\n", 40 << 20).into_bytes());
}

/// Children inherited ignored signals 32 and 33 (`SigIgn 0000000180000000`
/// in their /proc/self/status): glibc's posix_spawn leaves the signals it
/// reserves ignored unless told otherwise.
#[test]
fn children_start_with_every_signal_at_its_default() {
    let (_agent, mut c) = Agent::start();
    let r = c.exec_and_wait(json!({"path": "grep", "arg": ["^Sig[IB]", "/proc/self/status"], "capture-output": true}));
    let text = String::from_utf8(b64decode(r["out-data"].as_str().unwrap())).unwrap();
    assert_eq!(text, "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");
}

/// In PID 1 mode a leftover `qga.state.isfrozen` turned logging off but
/// did not set the frozen state, so commands that must be refused while
/// frozen ran (the daemon and init built the agent differently).
#[test]
fn frozen_marker_freezes_in_pid1_mode_too() {
    if !qga_only() {
        return;
    }
    if !skip::can_unshare() {
        skip::missing("needs root and unshare for a pid namespace");
        return;
    }
    // Not under /tmp or /run (the checkout may be there): init mounts a
    // fresh tmpfs on those in its (private) mount namespace.
    let dir = std::path::PathBuf::from("/var/tmp").join(format!("qga-pid1-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("qga.state.isfrozen"), "").unwrap();
    let sock = dir.join("sock");
    let mut child = KillOnDrop(
        Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc", "--kill-child"])
            .arg(agent_bin())
            .args(["-m", "unix-listen", "-p"])
            .arg(&sock)
            .arg("-t")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("unshare"),
    );
    wait_for("the socket", Duration::from_secs(30), || UnixStream::connect(&sock).is_ok());
    let mut c = Conn::new(UnixStream::connect(&sock).unwrap());
    assert_eq!(c.ok("guest-fsfreeze-status", json!({})), json!("frozen"));
    let (class, desc) = c.err("guest-exec", json!({"path": "true"}));
    assert_eq!(
        (class.as_str(), desc.as_str()),
        ("CommandNotFound", "Command guest-exec has been disabled: the command is not allowed")
    );
    c.ping();
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// qga refused a NUL inside an exec argument or environment entry; qemu-ga
/// passes it on as the modified-UTF-8 pair C0 80. An empty `path` gave
/// `Permission denied` (a PATH directory was executed); GLib says ENOENT.
#[test]
fn exec_strings_reach_the_kernel_as_qemu_ga_passes_them() {
    let (_agent, mut c) = Agent::start();
    let r = c.exec_and_wait(json!({
        "path": "sh",
        "arg": ["-c", "printf %s \"$1$X\" | od -An -tx1", "sh", "a\u{0}b"],
        "env": ["X=c\u{0}", "PATH=/usr/bin:/bin"],
        "capture-output": true
    }));
    let out = String::from_utf8(b64decode(r["out-data"].as_str().unwrap())).unwrap();
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["61", "c0", "80", "62", "63", "c0", "80"]);
    let (_, desc) = c.err("guest-exec", json!({"path": ""}));
    assert_eq!(desc, "Failed to execute child process \u{201C}\u{201D} (No such file or directory)");
    c.ping();
}

/// A status call without `wait` for a running process is held briefly
/// (exec.rs POLL_HOLD); a request pipelined behind it releases it, and the
/// replies keep their order with qemu-ga's contents.
#[test]
fn held_status_is_released_by_the_next_request_in_order() {
    let (_agent, mut c) = Agent::start();
    let pid = c.exec(json!({"path": "sleep", "arg": ["30"]}));
    c.send_str(&format!(
        "{{\"execute\":\"guest-exec-status\",\"arguments\":{{\"pid\":{pid}}}}}\n{{\"execute\":\"guest-ping\",\"id\":7}}\n\
         {{\"execute\":\"guest-exec-status\",\"arguments\":{{\"pid\":{pid},\"wait\":0}}}}\n"
    ));
    assert_eq!(c.recv(), json!({"return": {"exited": false}}));
    assert_eq!(c.recv(), json!({"return": {}, "id": 7}));
    assert_eq!(c.recv(), json!({"return": {"exited": false}}));
    let _ = qga_sys::process::kill(pid as i32, qga_sys::signal::SIGKILL);
    assert_eq!(c.wait_exec(pid)["exited"], json!(true));
}

/// `env-merge` with 30,000 `env` entries took 12–18 s of agent CPU (a
/// retain over the whole list per entry), and every other client waited
/// as long. The merge is linear now; the child sees the entries, the last
/// one of a name winning over earlier ones and over the inherited value.
#[test]
fn env_merge_of_many_entries_is_linear() {
    if !qga_only() {
        return;
    }
    let (agent, mut c) = AgentBuilder::new()
        .args(["--max-clients", "2"])
        .env("QGA_REG_KEEP", "agent")
        .env("QGA_REG_OVER", "agent")
        .start();
    let mut env: Vec<String> = (0..30_000).map(|i| format!("K{i}=v{i}")).collect();
    env.extend(["QGA_REG_OVER=early".to_string(), "K5=five".to_string(), "QGA_REG_OVER=client".to_string()]);
    let req = json!({"execute": "guest-exec", "arguments": {
        "path": "sh",
        "arg": ["-c", "echo \"$K29999 $K5 $K0 $QGA_REG_OVER $QGA_REG_KEEP\""],
        "env": env,
        "env-merge": true,
        "capture-output": true
    }});
    let mut line = serde_json::to_vec(&req).unwrap();
    line.push(b'\n');
    // A generous guard: the merge took 13 s of CPU in a release build
    // (117 s in a debug one); it takes milliseconds now.
    let guard = Duration::from_secs(20);
    c.set_timeout(guard);
    c.send(&line);
    // Another client is served meanwhile.
    let mut other = agent.connect();
    other.set_timeout(guard);
    other.ping();
    let r = c.recv();
    let pid = r["return"]["pid"].as_i64().unwrap_or_else(|| panic!("guest-exec: {r}"));
    let st = c.wait_exec(pid);
    assert_eq!(st["exitcode"], json!(0), "{st}");
    assert_eq!(String::from_utf8(data_of(&st, "out-data")).unwrap(), "v29999 five v0 client agent\n");
    c.ping();
}

/// A `\u0000` in base64 text ended it: `"aGVsbG8=\u0000"` ran the child
/// with `hello`, `"aGVs\u0000bG8="` wrote 3 bytes. qemu-ga refuses both
/// (its JSON parser makes C0 80 of the NUL, which are not base64
/// characters), before anything is started or written.
#[test]
fn a_nul_in_base64_is_an_invalid_character() {
    let (agent, mut c) = Agent::start();
    let invalid = "Base64 data contains invalid characters";
    let marker = agent.dir().join("started");
    for data in ["aGVsbG8=\u{0}", "aGVs\u{0}bG8=", "\u{0}"] {
        let r = c.execute(
            "guest-exec",
            json!({
                "path": "sh",
                "arg": ["-c", "cat > \"$0\"", marker],
                "input-data": data,
                "capture-output": true
            }),
        );
        assert_generic_error(&r, invalid);
    }
    // A good request is served after them and did start (so the refused
    // ones would have left the marker too).
    let good = agent.dir().join("good");
    let r = c.exec_and_wait(json!({"path": "sh", "arg": ["-c", "cat > \"$0\"", good], "input-data": "aGVsbG8="}));
    assert_eq!(r["exitcode"], json!(0), "{r}");
    assert_eq!(std::fs::read(&good).unwrap(), b"hello");
    assert!(!marker.exists(), "a refused guest-exec started its child");

    let file = agent.dir().join("written");
    let path = file.to_str().unwrap();
    let h = c.ok("guest-file-open", json!({"path": path, "mode": "w"})).as_i64().unwrap();
    for data in ["aGVs\u{0}bG8=", "aGVsbG8=\u{0}", "\u{0}aGVsbG8="] {
        let r = c.execute("guest-file-write", json!({"handle": h, "buf-b64": data}));
        assert_generic_error(&r, invalid);
    }
    c.ok("guest-file-flush", json!({"handle": h}));
    assert_eq!(std::fs::read(&file).unwrap(), b"", "nothing was written");
    assert_eq!(c.ok("guest-file-write", json!({"handle": h, "buf-b64": "aGVsbG8="}))["count"], json!(5));
    c.ok("guest-file-close", json!({"handle": h}));
    assert_eq!(std::fs::read(&file).unwrap(), b"hello");
    c.ping();
}

/// A non-blocking connect to the unix socket, as a client that does not
/// wait for the agent: EAGAIN when the listener's backlog is full.
fn connect_nonblocking(path: &std::path::Path) -> std::io::Result<UnixStream> {
    use qga_sys::socket;
    use std::os::fd::AsFd;
    use std::os::unix::ffi::OsStrExt;
    let fd = socket::stream_socket(socket::Family::Unix).expect("socket");
    let bytes = path.as_os_str().as_bytes();
    assert!(bytes.len() < socket::unix_path_max(), "socket path too long");
    socket::connect_unix(fd.as_fd(), bytes)?;
    let s = UnixStream::from(fd);
    s.set_nonblocking(false)?;
    Ok(s)
}

/// Starts the agent, then makes 8 non-blocking connects back to back
/// while it is stopped: it accepts none, so each waits in the listener's
/// backlog or fails, deterministically.
fn connect_8_to_stopped(builder: AgentBuilder) -> (Agent, Vec<std::io::Result<UnixStream>>) {
    let (agent, mut first) = builder.start();
    first.ping();
    drop(first);
    agent.signal(qga_sys::signal::SIGSTOP);
    let results = (0..8).map(|_| connect_nonblocking(agent.sock_path())).collect();
    agent.signal(qga_sys::signal::SIGCONT);
    (agent, results)
}

/// With `--max-clients 8` the listener still had qemu-ga's backlog of 1:
/// of 8 non-blocking connects back to back, 3 to 6 failed with EAGAIN.
/// The backlog follows max-clients now (and stays 1 by default).
#[test]
fn listen_backlog_has_room_for_max_clients() {
    if !qga_only() {
        return;
    }
    let (_agent, results) = connect_8_to_stopped(AgentBuilder::new().args(["--max-clients", "8"]));
    let failed: Vec<_> = results.iter().enumerate().filter_map(|(i, r)| r.as_ref().err().map(|e| (i, e))).collect();
    assert!(failed.is_empty(), "connects that failed (a backlog too small gives EAGAIN): {failed:?}");
    let mut conns: Vec<Conn> = results.into_iter().map(|r| Conn::new(r.unwrap())).collect();
    for c in &mut conns {
        c.ping();
    }
    // The default (one client) keeps qemu-ga's listen(fd, 1): 8 connects
    // do not all fit.
    let (_agent, results) = connect_8_to_stopped(AgentBuilder::new());
    let eagain = results
        .iter()
        .filter(|r| r.as_ref().is_err_and(|e| e.raw_os_error() == Some(qga_sys::Errno::EAGAIN.raw())))
        .count();
    assert!(eagain > 0, "the default backlog grew: {results:?}");
}
