//! Issue 3: guest-exec extensions over a real socket — streaming with
//! backpressure, long-poll `wait`, guest-exec-terminate, timeouts, cwd,
//! run-as-user — and the rule that standard replies stay unchanged.

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn skip_on_reference() -> bool {
    if is_reference_agent() {
        skip::not_applicable("extensions are qga-only");
        return true;
    }
    false
}

#[test]
fn stream_100_mib_arrives_complete_in_order_with_bounded_rss() {
    if skip_on_reference() {
        return;
    }
    let (agent, mut c) = Agent::start();
    // `seq` prints ~103 MB: every line must arrive once and in order.
    const LAST: u64 = 14_000_000;
    let pid = c.exec(json!({"path": "seq", "arg": ["1", LAST.to_string()], "capture-output": true, "stream": true}));
    let mut next: u64 = 1;
    let mut partial = Vec::new();
    let mut total = 0usize;
    let mut peak_rss = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(Instant::now() < deadline, "stream did not finish");
        let st = c.ok("guest-exec-status", json!({"pid": pid, "wait": 10}));
        let chunk = data_of(&st, "out-data");
        assert!(st.get("out-truncated").is_none(), "streamed output is never truncated: {st}");
        assert!(chunk.len() <= 1 << 20, "chunk larger than the stream window: {}", chunk.len());
        total += chunk.len();
        partial.extend_from_slice(&chunk);
        let cut = partial.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        for line in partial[..cut].split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let n: u64 = std::str::from_utf8(line).unwrap().parse().unwrap();
            assert_eq!(n, next, "line out of order");
            next += 1;
        }
        partial.drain(..cut);
        peak_rss = peak_rss.max(proc_status_kib(agent.pid(), "VmRSS:"));
        if st["exited"] == json!(true) {
            assert_eq!(st["exitcode"], json!(0));
            break;
        }
    }
    assert!(partial.is_empty());
    assert_eq!(next, LAST + 1, "all lines arrived");
    assert!(total > 100 << 20, "about 100 MiB streamed, got {total}");
    let hwm = proc_status_kib(agent.pid(), "VmHWM:");
    eprintln!("streamed {total} bytes; agent VmRSS peak seen {peak_rss} KiB, VmHWM {hwm} KiB");
    assert!(hwm < 64 * 1024, "agent memory must stay bounded while streaming 100 MiB (VmHWM {hwm} KiB)");
    // The result was consumed by the final status.
    let (_, desc) = c.err("guest-exec-status", json!({"pid": pid}));
    assert_eq!(desc, format!("PID {pid} does not exist"));
}

#[test]
fn stream_backpressure_blocks_the_child_instead_of_dropping() {
    if skip_on_reference() {
        return;
    }
    let (_agent, mut c) = Agent::start();
    // 8 MiB produced, nobody collects: the child must end up blocked in a
    // pipe write (still running), then every byte arrives. Event-driven:
    // wait until it is blocked or gone.
    let pid = c.exec(
        json!({"path": "head", "arg": ["-c", "8388608", "/dev/zero"], "capture-output": "stdout", "stream": true}),
    );
    let wchan = || std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
    let blocked = || proc_state(pid as u32) == Some('S') && wchan().ends_with("pipe_write"); // anon_pipe_write on newer kernels
    assert!(
        wait_until(Duration::from_secs(120), || blocked()
            || !proc_exists(pid as u32)
            || proc_state(pid as u32) == Some('Z')),
        "the writer neither blocked nor ended"
    );
    assert!(
        blocked(),
        "the writer should be blocked by backpressure, not finished (state {:?}, wchan {:?})",
        proc_state(pid as u32),
        wchan()
    );
    // Still blocked once the agent is idle: nothing drains the pipe.
    wait_idle(_agent.pid());
    assert!(blocked(), "the agent kept reading without a client collecting");
    let mut got = 0;
    loop {
        let st = c.ok("guest-exec-status", json!({"pid": pid, "wait": 10}));
        got += data_of(&st, "out-data").len();
        if st["exited"] == json!(true) {
            break;
        }
    }
    assert_eq!(got, 8 << 20);
}

#[test]
fn wait_returns_when_the_child_exits() {
    if skip_on_reference() {
        return;
    }
    let (agent, mut c) = Agent::start();
    // Gated: the child ends only when the test opens the gate, after the
    // long-poll is known to be held (no reply once the agent is idle).
    let gate = agent.dir().join("gate");
    let script = format!("while [ ! -e {} ]; do sleep 0.02; done; echo done", gate.display());
    let pid = c.exec(json!({"path": "sh", "arg": ["-c", script], "capture-output": true}));
    c.send_str(&format!("{{\"execute\":\"guest-exec-status\",\"arguments\":{{\"pid\":{pid},\"wait\":600}}}}"));
    c.expect_silence_once_idle(agent.pid());
    std::fs::write(&gate, b"").unwrap();
    // Ends with the child, long before the 600 s wait.
    let st = c.recv()["return"].clone();
    assert_eq!(st["exited"], json!(true), "{st}");
    assert_eq!(data_of(&st, "out-data"), b"done\n");
}

#[test]
fn wait_returns_when_streamed_output_arrives() {
    if skip_on_reference() {
        return;
    }
    let (agent, mut c) = Agent::start();
    // A streamed child prints `a` once gate 1 opens and ends once gate 2
    // does: the held long-poll must return with `a` while it still runs.
    let d = agent.dir().display().to_string();
    let script =
        format!("while [ ! -e {d}/gate1 ]; do sleep 0.02; done; echo a; while [ ! -e {d}/gate2 ]; do sleep 0.02; done");
    let pid = c.exec(json!({"path": "sh", "arg": ["-c", script], "capture-output": true, "stream": true}));
    c.send_str(&format!("{{\"execute\":\"guest-exec-status\",\"arguments\":{{\"pid\":{pid},\"wait\":600}}}}"));
    c.expect_silence_once_idle(agent.pid());
    std::fs::write(agent.dir().join("gate1"), b"").unwrap();
    let st = c.recv()["return"].clone();
    assert_eq!(st["exited"], json!(false), "new output ends the wait: {st}");
    assert_eq!(data_of(&st, "out-data"), b"a\n");
    std::fs::write(agent.dir().join("gate2"), b"").unwrap();
    let st = c.wait_exec(pid);
    assert_eq!(st["exitcode"], json!(0), "{st}");
}

#[test]
fn wait_ends_at_once_when_another_request_arrives() {
    if skip_on_reference() {
        return;
    }
    let (agent, mut c) = Agent::start();
    let pid = c.exec(json!({"path": "sleep", "arg": ["1000"]}));
    let t = Instant::now();
    c.send_str(&format!(
        "{{\"execute\":\"guest-exec-status\",\"arguments\":{{\"pid\":{pid},\"wait\":600}},\"id\":\"w\"}}\n"
    ));
    c.expect_silence_once_idle(agent.pid());
    c.send_str("{\"execute\":\"guest-ping\",\"id\":\"p\"}\n");
    let first = c.recv();
    assert_eq!(first, json!({"return": {"exited": false}, "id": "w"}), "held status answered first");
    assert_eq!(c.recv(), json!({"return": {}, "id": "p"}));
    assert!(t.elapsed() < Duration::from_secs(300), "released by the ping, not by the 600 s wait");
    // A 0xFF also releases a held status (then its own stray error follows).
    c.send_str(&format!("{{\"execute\":\"guest-exec-status\",\"arguments\":{{\"pid\":{pid},\"wait\":600}}}}\n"));
    c.expect_silence_once_idle(agent.pid());
    c.send(b"\xff");
    assert_eq!(c.recv(), json!({"return": {"exited": false}}));
    let stray = c.recv();
    assert_eq!(error_of(&stray).unwrap().1, "JSON parse error, stray '\u{FFFD}'");
    c.ok("guest-exec-terminate", json!({"pid": pid}));
}

#[test]
fn wait_times_out_with_exited_false() {
    if skip_on_reference() {
        return;
    }
    let (_agent, mut c) = Agent::start();
    let pid = c.exec(json!({"path": "sleep", "arg": ["30"]}));
    let st = c.ok("guest-exec-status", json!({"pid": pid, "wait": 0.3}));
    assert_eq!(st, json!({"exited": false}));
    c.ok("guest-exec-terminate", json!({"pid": pid, "signal": "TERM"}));
    let st = c.wait_exec(pid);
    assert_eq!(st["signal"], json!(qga_sys::signal::SIGTERM));
}

/// Processes whose process group is `pgid`.
fn group_members(pgid: i64) -> Vec<u32> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r.to_string()) else { continue };
        let f: Vec<&str> = rest.split_whitespace().collect();
        // fields after comm: state ppid pgrp
        if f.get(2).and_then(|g| g.parse::<i64>().ok()) == Some(pgid) && f[0] != "Z" {
            v.push(pid);
        }
    }
    v
}

#[test]
fn terminate_kills_the_whole_process_tree() {
    if skip_on_reference() {
        return;
    }
    let (_agent, mut c) = Agent::start();
    // A daemonized grandchild keeps the pipe open: without terminate,
    // `exited` would stay false for 1000 s.
    let pid =
        c.exec(json!({"path": "sh", "arg": ["-c", "sleep 1000 & sleep 1000 & echo up; wait"], "capture-output": true}));
    assert!(wait_until(Duration::from_secs(60), || group_members(pid).len() >= 3), "tree started");
    c.ok("guest-exec-terminate", json!({"pid": pid}));
    let st = c.wait_exec(pid);
    assert_eq!(st["signal"], json!(9), "{st}");
    assert_eq!(data_of(&st, "out-data"), b"up\n");
    assert!(wait_until(Duration::from_secs(60), || group_members(pid).is_empty()), "every member is gone");
}

#[test]
fn terminate_errors() {
    if skip_on_reference() {
        return;
    }
    let (_agent, mut c) = Agent::start();
    let (class, desc) = c.err("guest-exec-terminate", json!({"pid": 999999999}));
    assert_eq!((class.as_str(), desc.as_str()), ("GenericError", "PID 999999999 does not exist"));
    assert_eq!(c.err("guest-exec-terminate", json!({})).1, "Parameter 'pid' is missing");
    let pid = c.exec(json!({"path": "sleep", "arg": ["30"]}));
    assert_eq!(
        c.err("guest-exec-terminate", json!({"pid": pid, "signal": "BOGUS"})).1,
        "Parameter 'signal' does not accept value 'BOGUS'"
    );
    assert_eq!(
        c.err("guest-exec-terminate", json!({"pid": pid, "signal": true})).1,
        "Invalid parameter type for 'signal', expected: integer or signal name"
    );
    assert_eq!(c.err("guest-exec-terminate", json!({"pid": pid, "x": 1})).1, "Parameter 'x' is unexpected");
    c.ok("guest-exec-terminate", json!({"pid": pid, "signal": 15}));
    assert_eq!(c.wait_exec(pid)["signal"], json!(15));
}

#[test]
fn timeout_kills_a_child_that_ignores_sigterm() {
    if skip_on_reference() {
        return;
    }
    let (_agent, mut c) = Agent::start();
    let pid = c.exec(json!({"path": "sh", "arg": ["-c", "trap '' TERM; echo started; sleep 1000"], "capture-output": true, "timeout": 0.5}));
    let st = c.wait_exec_for(pid, Duration::from_secs(30));
    assert_eq!(st["timed-out"], json!(true), "{st}");
    assert_eq!(st["signal"], json!(9), "SIGTERM ignored, so SIGKILL after the grace period: {st}");
    assert_eq!(data_of(&st, "out-data"), b"started\n");
    // The leader dies of SIGTERM but a grandchild that ignores it holds
    // the pipe: the group still gets SIGKILL after the grace period.
    let pid = c.exec(json!({"path": "sh", "arg": ["-c", "(trap '' TERM; sleep 1000) & sleep 1000"], "capture-output": true, "timeout": 0.5}));
    let st = c.wait_exec_for(pid, Duration::from_secs(30));
    assert_eq!(st["timed-out"], json!(true), "{st}");
    assert_eq!(st["signal"], json!(15), "{st}");
    // A child that ends in time reports timed-out false.
    let st = c.exec_and_wait(json!({"path": "true", "timeout": 30}));
    assert_eq!(st, json!({"exitcode": 0, "timed-out": false, "exited": true}));
}

#[test]
fn timeout_sends_sigterm_to_the_whole_group() {
    if skip_on_reference() {
        return;
    }
    let (agent, mut c) = Agent::start();
    let d = agent.dir().display().to_string();
    // The leader starts a member (default SIGTERM), then ignores SIGTERM
    // itself, says `ready`, and reports how the member ended. SIGTERM to the
    // group at the deadline ends the member (status 143) and the leader
    // exits 0. Were SIGTERM sent to the leader only, nothing would happen
    // until the group's SIGKILL two seconds later (signal 9, no report).
    // Event-driven: if the deadline came before the leader was ready (a
    // loaded machine), the round does not count and the timeout doubles.
    let mut timeout = 0.5;
    loop {
        let _ = std::fs::remove_file(agent.dir().join("ready"));
        let script = format!("sleep 1000 & trap '' TERM; : > {d}/ready; wait $!; echo $? > {d}/member");
        let pid = c.exec(json!({"path": "sh", "arg": ["-c", script], "timeout": timeout}));
        let st = c.wait_exec_for(pid, Duration::from_secs(120));
        if !agent.dir().join("ready").exists() {
            eprintln!("deadline of {timeout} s came before the leader was ready: {st}; again");
            timeout *= 2.0;
            assert!(timeout < 100.0, "the leader never got ready in time");
            continue;
        }
        assert_eq!(st, json!({"exitcode": 0, "timed-out": true, "exited": true}), "SIGTERM reached the whole group");
        assert_eq!(std::fs::read_to_string(agent.dir().join("member")).unwrap(), "143\n");
        break;
    }
}

#[test]
fn cwd_takes_effect_and_bad_cwd_is_refused_before_spawning() {
    if skip_on_reference() {
        return;
    }
    let (agent, mut c) = Agent::start();
    let st = c.exec_and_wait(json!({"path": "pwd", "capture-output": true, "cwd": "/usr"}));
    assert_eq!(data_of(&st, "out-data"), b"/usr\n");
    let (class, desc) = c.err("guest-exec", json!({"path": "pwd", "cwd": "/nonexistent-dir"}));
    assert_eq!(class, "GenericError");
    assert_eq!(desc, "Cannot use '/nonexistent-dir' as working directory: No such file or directory");
    let file = agent.dir().join("plainfile");
    std::fs::write(&file, b"x").unwrap();
    let (_, desc) = c.err("guest-exec", json!({"path": "pwd", "cwd": file.to_str().unwrap()}));
    assert_eq!(desc, format!("Cannot use '{}' as working directory: Not a directory", file.display()));
}

#[test]
fn user_takes_effect() {
    if skip_on_reference() {
        return;
    }
    if qga_sys::process::geteuid() != 0 {
        return skip::missing("root: run-as-user (`user`) needs it");
    }
    let (_agent, mut c) = Agent::start();
    let st = c.exec_and_wait(json!({"path": "sh", "arg": ["-c", "id -u; id -g; echo $USER $LOGNAME $HOME"], "capture-output": true, "user": "nobody"}));
    let out = String::from_utf8(data_of(&st, "out-data")).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "65534", "{out}");
    assert_eq!(lines[1], "65534", "{out}");
    assert!(lines[2].starts_with("nobody nobody "), "{out}");
    let st = c.exec_and_wait(json!({"path": "id", "arg": ["-u"], "capture-output": true, "user": "65534"}));
    assert_eq!(data_of(&st, "out-data"), b"65534\n");
    // env given: HOME/USER are not added.
    let st = c.exec_and_wait(json!({"path": "env", "capture-output": true, "user": "nobody", "env": ["A=1"]}));
    assert_eq!(data_of(&st, "out-data"), b"A=1\n");
    let (_, desc) = c.err("guest-exec", json!({"path": "id", "user": "no-such-user-qga"}));
    assert_eq!(desc, "User 'no-such-user-qga' does not exist");
}

#[test]
fn bad_extension_values_get_exact_errors() {
    if skip_on_reference() {
        return;
    }
    let (_agent, mut c) = Agent::start();
    let e = |c: &mut Conn, args: Value| c.err("guest-exec", args).1;
    assert_eq!(
        e(&mut c, json!({"path": "true", "timeout": 0})),
        "Parameter 'timeout' expects a number of seconds greater than 0 and at most 31536000"
    );
    assert_eq!(
        e(&mut c, json!({"path": "true", "timeout": -1})),
        "Parameter 'timeout' expects a number of seconds greater than 0 and at most 31536000"
    );
    assert_eq!(
        e(&mut c, json!({"path": "true", "timeout": "5"})),
        "Invalid parameter type for 'timeout', expected: number"
    );
    assert_eq!(
        e(&mut c, json!({"path": "true", "stream": 1})),
        "Invalid parameter type for 'stream', expected: boolean"
    );
    assert_eq!(e(&mut c, json!({"path": "true", "stream": true})), "Parameter 'stream' requires 'capture-output'");
    assert_eq!(e(&mut c, json!({"path": "true", "cwd": 5})), "Invalid parameter type for 'cwd', expected: string");
    assert_eq!(e(&mut c, json!({"path": "true", "user": []})), "Invalid parameter type for 'user', expected: string");
    let pid = c.exec(json!({"path": "sleep", "arg": ["30"]}));
    assert_eq!(
        c.err("guest-exec-status", json!({"pid": pid, "wait": 601})).1,
        "Parameter 'wait' expects a number of seconds greater than 0 and at most 600"
    );
    // 600 itself is accepted (held; a request right behind releases it).
    c.send_str(&format!(
        "{{\"execute\":\"guest-exec-status\",\"arguments\":{{\"pid\":{pid},\"wait\":600}},\"id\":\"w600\"}}"
    ));
    c.send_str("{\"execute\":\"guest-ping\",\"id\":\"p600\"}");
    assert_eq!(c.recv(), json!({"return": {"exited": false}, "id": "w600"}));
    assert_eq!(c.recv(), json!({"return": {}, "id": "p600"}));
    assert_eq!(
        c.err("guest-exec-status", json!({"pid": pid, "wait": "1"})).1,
        "Invalid parameter type for 'wait', expected: number"
    );
    c.ok("guest-exec-terminate", json!({"pid": pid}));
}

#[test]
fn standard_replies_are_unchanged_and_extensions_are_advertised() {
    if skip_on_reference() {
        return;
    }
    let (_agent, mut c) = Agent::start();
    let st = c.exec_and_wait(json!({"path": "sh", "arg": ["-c", "echo x"], "capture-output": true}));
    assert_eq!(st, json!({"exitcode": 0, "out-data": "eAo=", "out-truncated": false, "exited": true}));
    let info = c.ok("guest-info", json!(null));
    let cmds = info["supported_commands"].as_array().unwrap();
    assert!(cmds.contains(&json!({"enabled": true, "name": "guest-exec-terminate", "success-response": true})));
    drop(c);
    let (_agent2, mut c2) = AgentBuilder::new().args(["-b", "guest-exec-terminate"]).start();
    let (class, desc) = c2.err("guest-exec-terminate", json!({"pid": 1}));
    assert_eq!(class, "CommandNotFound");
    assert_eq!(desc, "Command guest-exec-terminate has been disabled: the command is not allowed");
}

#[test]
fn streamed_stdin_with_guest_exec_input() {
    if skip_on_reference() {
        return;
    }
    let (_agent, mut c) = Agent::start();
    let pid = c.exec(json!({"path": "sha256sum", "capture-output": true, "input-stream": true}));
    let mut expected = Vec::new();
    let mut offered = 0usize;
    // 24 MiB in 3 MiB pieces; every refused byte is offered again.
    for i in 0..8u8 {
        let piece: Vec<u8> = (0..3 << 20).map(|j: usize| (j as u8) ^ i).collect();
        expected.extend_from_slice(&piece);
        let mut off = 0;
        while off < piece.len() {
            let r = c.ok("guest-exec-input", json!({"pid": pid, "input-data": b64encode(&piece[off..])}));
            let n = r["count"].as_u64().unwrap() as usize;
            off += n;
            offered += n;
            if n == 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
    assert_eq!(c.ok("guest-exec-input", json!({"pid": pid, "eof": true})), json!({"count": 0}));
    let st = c.wait_exec_for(pid, Duration::from_secs(60));
    assert_eq!(offered, 24 << 20);
    let out = String::from_utf8(data_of(&st, "out-data")).unwrap();
    let digest = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut ch| {
            use std::io::Write;
            ch.stdin.take().unwrap().write_all(&expected)?;
            ch.wait_with_output()
        })
        .unwrap();
    assert_eq!(out, String::from_utf8(digest.stdout).unwrap(), "every byte arrived, in order");
}

#[test]
fn guest_exec_input_window_and_errors() {
    if skip_on_reference() {
        return;
    }
    let (agent, mut c) = Agent::start();
    // A reader that does not read: the window (4 MiB) takes what fits.
    let pid = c.exec(json!({"path": "sleep", "arg": ["30"], "input-stream": true}));
    let big = vec![b'a'; 5 << 20];
    let r = c.ok("guest-exec-input", json!({"pid": pid, "input-data": b64encode(&big)}));
    assert_eq!(r, json!({"count": 4 << 20}));
    // Once the agent has filled the pipe (idle), what the pipe took is room
    // in the window again: the next offer is taken up to that much.
    wait_idle(agent.pid());
    let r = c.ok("guest-exec-input", json!({"pid": pid, "input-data": b64encode(&big)}));
    let n = r["count"].as_u64().unwrap();
    assert!(n > 0 && n <= 1 << 20, "bytes in the pipe are room in the window again: {r}");
    // A process started without input-stream has no open input.
    let other = c.exec(json!({"path": "sleep", "arg": ["30"]}));
    let (_, desc) = c.err("guest-exec-input", json!({"pid": other, "input-data": "eA=="}));
    assert_eq!(desc, format!("Input of PID {other} is closed"));
    let (_, desc) = c.err("guest-exec-input", json!({"pid": 999999999, "input-data": "eA=="}));
    assert_eq!(desc, "PID 999999999 does not exist");
    assert_eq!(
        c.err("guest-exec-input", json!({"pid": pid, "input-data": "!!"})).1,
        "Base64 data contains invalid characters"
    );
    assert_eq!(
        c.err("guest-exec-input", json!({"pid": pid, "eof": 1})).1,
        "Invalid parameter type for 'eof', expected: boolean"
    );
    assert_eq!(
        c.err("guest-exec", json!({"path": "true", "input-stream": "yes"})).1,
        "Invalid parameter type for 'input-stream', expected: boolean"
    );
    for p in [pid, other] {
        c.ok("guest-exec-terminate", json!({"pid": p}));
    }
    // After eof the input is closed.
    let pid = c.exec(json!({"path": "cat", "capture-output": true, "input-stream": true, "input-data": "aGk="}));
    c.ok("guest-exec-input", json!({"pid": pid, "input-data": "IQ==", "eof": true}));
    let st = c.wait_exec(pid);
    assert_eq!(data_of(&st, "out-data"), b"hi!");
}
