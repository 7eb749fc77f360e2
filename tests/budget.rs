//! Nothing lost, nothing stalls: the one memory budget (docs/design.md,
//! "Memory model"). Every status that was produced can be collected,
//! every dropped byte is flagged, the agent's memory stays under the
//! budgets whatever clients and children do, and one client's heavy work
//! does not hold up another's pings.

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::Write;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;
/// `exec::MAX_OUTPUT_HELD`, `exec::MAX_PENDING_INPUT`,
/// `conn::MAX_PARTIAL_REQUESTS` (README's memory table).
const OUTPUT_HELD: u64 = 256 * MIB;
const PENDING_INPUT: u64 = 256 * MIB;
const PARTIAL_REQUESTS: u64 = 128 * MIB;
/// What the agent may hold beyond the budget a case fills: its own code,
/// buffers of fixed size, one request being decoded (debug build).
const SLACK: u64 = 48 * MIB;

fn hwm(agent: &Agent) -> u64 {
    proc_status_kib(agent.pid(), "VmHWM:") * 1024
}

fn rss(agent: &Agent) -> u64 {
    proc_status_kib(agent.pid(), "VmRSS:") * 1024
}

/// The raw status line of `pid` once `exited: true` (replies of many MiB
/// are not parsed as a whole: their fields are read off the text).
fn final_status_line(c: &mut Conn, pid: i64) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let l = c.cmd_raw(&format!("{{\"execute\":\"guest-exec-status\",\"arguments\":{{\"pid\":{pid}}}}}"));
        if !l.contains("\"exited\": false") {
            return l;
        }
        assert!(Instant::now() < deadline, "pid {pid} did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A member of a raw reply line: `"name": value` up to the next , or }.
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("\"{name}\": ");
    let at = line.find(&key)? + key.len();
    let rest = &line[at..];
    Some(&rest[..rest.find([',', '}'])?])
}

/// Decoded length of a base64 field made of `A`s only (zero bytes).
fn zero_len(line: &str, name: &str) -> u64 {
    let Some(b64) = field(line, name) else { return 0 };
    let b64 = b64.trim_matches('"');
    let pad = b64.bytes().rev().take_while(|&b| b == b'=').count();
    (b64.len() / 4 * 3 - pad) as u64
}

fn exec_pid(c: &mut Conn, args: Value) -> i64 {
    let r = c.cmd(&json!({"execute": "guest-exec", "arguments": args}));
    r["return"]["pid"].as_i64().unwrap_or_else(|| panic!("guest-exec failed: {r}"))
}

#[test]
fn a_full_output_budget_never_discards_a_status_and_flags_what_it_drops() {
    skip_on_reference!("the output budget is qga's");
    let (agent, mut c) = AgentBuilder::new().arg("--max-output").arg("128M").start();
    // Two endless writers fill the whole budget (2 x 128 MiB).
    let yes: Vec<i64> = (0..2).map(|_| exec_pid(&mut c, json!({"path": "yes", "capture-output": true}))).collect();
    let full = wait_until(Duration::from_secs(120), || rss(&agent) >= OUTPUT_HELD - 8 * MIB);
    assert!(full, "the writers did not fill the budget (VmRSS {} MiB)", rss(&agent) / MIB);
    // Unrelated jobs after that: their statuses survive, and the dropped
    // output is flagged, not reported as "printed nothing".
    let quiet: Vec<i64> = (0..10)
        .map(|i| exec_pid(&mut c, json!({"path": "sh", "arg": ["-c", format!("exit {i}")], "capture-output": true})))
        .collect();
    let hello = exec_pid(&mut c, json!({"path": "echo", "arg": ["hello"], "capture-output": true}));
    std::thread::sleep(Duration::from_millis(500));
    for (i, &p) in quiet.iter().enumerate() {
        let st = c.wait_exec(p);
        assert_eq!(st["exitcode"], json!(i), "pid {p}: {st}");
        assert!(st.get("out-data").is_none(), "{st}");
    }
    let st = c.wait_exec(hello);
    assert_eq!(st["exitcode"], json!(0), "{st}");
    match st.get("out-data") {
        Some(_) => assert_eq!(data_of(&st, "out-data"), b"hello\n", "{st}"),
        None => assert_eq!(st["out-truncated"], json!(true), "bytes dropped must be flagged: {st}"),
    }
    for &p in &yes {
        c.ok("guest-exec-terminate", json!({"pid": p}));
    }
    let mut kept = 0;
    for &p in &yes {
        let line = final_status_line(&mut c, p);
        assert!(field(&line, "signal").is_some(), "{}", &line[..line.len().min(200)]);
        assert_eq!(field(&line, "out-truncated"), Some("true"));
        let b64 = field(&line, "out-data").unwrap_or("").trim_matches('"');
        kept += (b64.len() / 4 * 3 - b64.bytes().rev().take_while(|&b| b == b'=').count()) as u64;
    }
    assert!(kept <= OUTPUT_HELD, "kept {kept} bytes");
    let peak = hwm(&agent);
    eprintln!("kept {} MiB of `yes`; VmHWM {} MiB", kept / MIB, peak / MIB);
    assert!(peak <= OUTPUT_HELD + SLACK, "VmHWM {} MiB", peak / MIB);
}

#[test]
fn many_children_over_the_budget_each_keep_their_status_and_flag_their_loss() {
    skip_on_reference!("the output budget is qga's");
    let (agent, mut c) = Agent::start();
    // 600 x 512 KiB = 300 MiB offered against a 256 MiB budget.
    let pids: Vec<i64> = (0..600)
        .map(|_| {
            exec_pid(&mut c, json!({"path": "head", "arg": ["-c", "524288", "/dev/zero"], "capture-output": true}))
        })
        .collect();
    // All finished before any is collected (collecting frees room).
    assert!(wait_until(Duration::from_secs(300), || children_of(agent.pid()).is_empty()));
    let (mut whole, mut cut, mut total) = (0, 0, 0u64);
    for &p in &pids {
        let line = final_status_line(&mut c, p);
        assert_eq!(field(&line, "exitcode"), Some("0"), "pid {p}: {}", &line[..line.len().min(200)]);
        let len = zero_len(&line, "out-data");
        total += len;
        match field(&line, "out-truncated") {
            Some("false") => {
                assert_eq!(len, 512 << 10);
                whole += 1;
            }
            Some("true") => {
                assert!(len < 512 << 10);
                cut += 1;
            }
            other => panic!("pid {p}: out-truncated {other:?}: no data and no flag ({len} bytes)"),
        }
    }
    let peak = hwm(&agent);
    eprintln!("{whole} whole, {cut} truncated, {} MiB kept; VmHWM {} MiB", total / MIB, peak / MIB);
    assert!(cut > 0, "300 MiB cannot fit a 256 MiB budget");
    assert!(total <= OUTPUT_HELD);
    assert!(peak <= OUTPUT_HELD + SLACK, "VmHWM {} MiB", peak / MIB);
}

#[test]
fn replies_a_client_does_not_read_stay_inside_the_output_budget() {
    skip_on_reference!("the output budget is qga's");
    let (agent, mut c) = AgentBuilder::new().arg("--max-clients").arg("8").start();
    let d = agent.dir().display().to_string();
    let job = |i: usize| format!("head -c 16777216 /dev/zero; head -c 16777216 /dev/zero >&2; : > {d}/done.{i}");
    // Seven clients ask for a finished 2 x 16 MiB result each and never
    // read the reply.
    let mut idle = Vec::new();
    for i in 0..7 {
        let p = exec_pid(&mut c, json!({"path": "sh", "arg": ["-c", job(i)], "capture-output": true}));
        let done = agent.dir().join(format!("done.{i}"));
        assert!(wait_until(Duration::from_secs(60), || done.exists() && children_of(agent.pid()).is_empty()));
        c.ping();
        let mut w = agent.connect();
        w.send_str(&format!("{{\"execute\":\"guest-exec-status\",\"arguments\":{{\"pid\":{p},\"wait\":60}}}}\n"));
        idle.push(w);
    }
    // Let the agent take the seven requests (their results move to the
    // replies, which stay counted until sent).
    std::thread::sleep(Duration::from_secs(1));
    c.ping();
    // Seven more jobs of the same size, collected by the reading client.
    let more: Vec<i64> = (7..14)
        .map(|i| exec_pid(&mut c, json!({"path": "sh", "arg": ["-c", job(i)], "capture-output": true})))
        .collect();
    for &p in &more {
        let line = final_status_line(&mut c, p);
        assert_eq!(field(&line, "exitcode"), Some("0"));
        for (data, flag) in [("out-data", "out-truncated"), ("err-data", "err-truncated")] {
            let len = zero_len(&line, data);
            assert!(len == 16 * MIB || field(&line, flag) == Some("true"), "{len} bytes of {data} without a flag");
        }
    }
    let peak = hwm(&agent);
    eprintln!("VmHWM {} MiB with 7 unread 32 MiB replies", peak / MIB);
    assert!(peak <= OUTPUT_HELD + SLACK, "VmHWM {} MiB", peak / MIB);
    // The idle clients still get their whole replies when they read.
    for mut w in idle {
        w.set_timeout(Duration::from_secs(120));
        let line = w.read_line();
        assert_eq!(zero_len(&line, "out-data"), 16 * MIB);
        assert_eq!(zero_len(&line, "err-data"), 16 * MIB);
    }
    c.ping();
}

#[test]
fn unfinished_requests_of_many_clients_share_one_bound() {
    skip_on_reference!("the bound on partly received requests is qga's");
    let (agent, mut c) = AgentBuilder::new().arg("--max-clients").arg("8").start();
    // Seven clients each send 48 MiB of an unterminated input-data and stop.
    let body = vec![b'A'; 48 << 20];
    let mut senders = Vec::new();
    for _ in 0..7 {
        let mut w = agent.connect();
        w.send_str(r#"{"execute":"guest-exec","arguments":{"path":"cat","input-data":""#);
        let mut s = w.stream.try_clone().unwrap();
        let b = body.clone();
        senders.push((w, std::thread::spawn(move || s.write_all(&b))));
    }
    // Each sender finishes (its bytes were taken, kept or dropped).
    let mut conns = Vec::new();
    for (w, t) in senders {
        t.join().unwrap().unwrap();
        conns.push(w);
    }
    // Another client is served meanwhile.
    c.ping();
    let peak = hwm(&agent);
    eprintln!("VmHWM {} MiB with 7 x 48 MiB unfinished requests", peak / MIB);
    assert!(peak <= PARTIAL_REQUESTS + SLACK, "VmHWM {} MiB", peak / MIB);
    // The clients past the bound were told so.
    let mut refused = 0;
    for w in conns.iter_mut() {
        if let Some(line) = w.try_read_line_raw(Duration::from_millis(200)) {
            let line = String::from_utf8_lossy(&line).into_owned();
            assert!(line.contains("Not enough memory for this request"), "{line}");
            refused += 1;
        }
    }
    // The agent holds such input-data decoded as it arrives (36 MiB each):
    // three fit in 128 MiB (a text body of 48 MiB: two).
    assert!(refused >= 4, "only 3 requests of 36 MiB fit in 128 MiB; {refused} refused");
}

#[test]
fn stdin_is_counted_at_the_size_really_held() {
    skip_on_reference!("the stdin budget is qga's");
    let (agent, mut c) = Agent::start();
    // 40 MiB of input each for children that never read it.
    let input = b64encode(&vec![7u8; 40 << 20]);
    let mut accepted = 0;
    let mut pids = Vec::new();
    for _ in 0..8 {
        let r = c.cmd(&json!({"execute": "guest-exec",
            "arguments": {"path": "sleep", "arg": ["600"], "input-data": input}}));
        match r["return"]["pid"].as_i64() {
            Some(p) => {
                pids.push(p);
                accepted += 1;
            }
            None => assert!(error_of(&r).unwrap().1.starts_with("Too much input-data"), "{r}"),
        }
    }
    let peak = hwm(&agent);
    eprintln!("{accepted} x 40 MiB accepted; VmHWM {} MiB", peak / MIB);
    assert_eq!(accepted, 6, "six of 40 MiB fit in 256 MiB");
    // One request's base64 text (53 MiB) is held while it is decoded.
    assert!(peak <= PENDING_INPUT + 54 * MIB + SLACK, "VmHWM {} MiB", peak / MIB);
    for p in pids {
        c.ok("guest-exec-terminate", json!({"pid": p, "signal": 9}));
        assert_eq!(c.wait_exec(p)["signal"], json!(9));
    }
}

#[test]
fn a_terminal_session_reports_its_exit_while_a_daemon_holds_the_terminal() {
    skip_on_reference!("terminals are a qga extension");
    let (agent, mut c) = Agent::start();
    let d = agent.dir().display().to_string();
    let script = format!("setsid sleep 600 & echo $! > {d}/daemon; echo bye; sleep 0.3; exit 3");
    let p = exec_pid(&mut c, json!({"path": "sh", "arg": ["-c", script], "tty": true, "capture-output": true}));
    // A terminal's output is delivered as it comes (like `stream`).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut out = Vec::new();
    let st = loop {
        let st = c.ok("guest-exec-status", json!({"pid": p}));
        if st.get("out-data").is_some() {
            out.extend(data_of(&st, "out-data"));
        }
        if st["exited"] == json!(true) || Instant::now() > deadline {
            break st;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let daemon: i32 = std::fs::read_to_string(agent.dir().join("daemon")).unwrap().trim().parse().unwrap();
    let _ = qga_sys::process::kill(daemon, qga_sys::signal::SIGKILL);
    assert_eq!(st["exited"], json!(true), "the session's end was not reported: {st}");
    assert_eq!(st["exitcode"], json!(3), "{st}");
    assert!(String::from_utf8_lossy(&out).contains("bye"), "{}", String::from_utf8_lossy(&out));
}

#[test]
fn timed_out_only_when_the_agents_signal_ended_the_process() {
    skip_on_reference!("timeout is a qga extension");
    let (_agent, mut c) = Agent::start();
    // Processes that end by themselves right at their deadline.
    let pids: Vec<i64> = (0..60)
        .map(|_| exec_pid(&mut c, json!({"path": "sleep", "arg": ["1"], "timeout": 1, "capture-output": true})))
        .collect();
    let mut timed_out = 0;
    for p in pids {
        let st = c.wait_exec(p);
        if st["timed-out"] == json!(true) {
            timed_out += 1;
            assert!(st.get("signal").is_some(), "timed-out with an exit code: {st}");
        } else {
            assert_eq!(st["exitcode"], json!(0), "{st}");
        }
    }
    eprintln!("{timed_out} of 60 ended by the timeout");
}

#[test]
fn reaping_leaders_that_leave_members_behind_does_not_stall_other_clients() {
    skip_on_reference!("measures qga's reaping");
    let (agent, mut c) = AgentBuilder::new().arg("--max-clients").arg("2").start();
    let mut other = agent.connect();
    let t0 = cpu_ticks(agent.pid());
    let pids: Vec<i64> = (0..400)
        .map(|_| exec_pid(&mut c, json!({"path": "sh", "arg": ["-c", "sleep 3 & sleep 1"], "capture-output": true})))
        .collect();
    // Pings keep being answered while the leaders are reaped.
    let start = Instant::now();
    let mut slowest = Duration::ZERO;
    while start.elapsed() < Duration::from_secs(4) {
        let t = Instant::now();
        other.ping();
        slowest = slowest.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(20));
    }
    for p in pids {
        assert_eq!(c.wait_exec(p)["exitcode"], json!(0));
    }
    let cpu = cpu_ticks(agent.pid()) - t0;
    eprintln!("400 leaders leaving members: agent CPU {cpu} ticks, slowest ping {slowest:?}");
    // A /proc walk per reap cost 3-4 s of CPU (release build); the bound
    // is generous for a debug build on a loaded machine.
    assert!(cpu < 2 * ticks_per_sec(), "agent CPU {cpu} ticks");
}

#[test]
fn members_left_by_a_reaped_leader_are_still_reached_by_terminate() {
    skip_on_reference!("terminate is a qga extension");
    let (agent, mut c) = Agent::start();
    // The leader exits at once; its two background members keep the output
    // pipe (and the group) alive. No /proc walk was made at the reap: the
    // walk at terminate finds members born by then, and none with the
    // leader's pid.
    let d = agent.dir().display().to_string();
    let script = format!("sleep 1000 & sleep 1000 & : > {d}/up; exit 0");
    let pid = exec_pid(&mut c, json!({"path": "sh", "arg": ["-c", script], "capture-output": true}));
    assert!(wait_until(Duration::from_secs(30), || agent.dir().join("up").exists()
        && !std::path::Path::new(&format!("/proc/{pid}")).exists()));
    assert_eq!(c.ok("guest-exec-status", json!({"pid": pid})), json!({"exited": false}));
    c.ok("guest-exec-terminate", json!({"pid": pid}));
    let st = c.wait_exec_for(pid, Duration::from_secs(30));
    assert_eq!(st["exitcode"], json!(0), "{st}");
}

#[test]
fn another_client_keeps_being_answered_while_one_does_every_heavy_thing() {
    skip_on_reference!("measures qga's loop");
    let (agent, mut c) = AgentBuilder::new().arg("--max-clients").arg("4").start();
    let mut pinger = agent.connect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    // Client B pings all along; every ping must be answered (the reply
    // timeout is the liveness bound); the slowest is printed, not judged.
    let pings = std::thread::spawn(move || {
        let (mut n, mut slowest) = (0u32, Duration::ZERO);
        while !flag.load(std::sync::atomic::Ordering::SeqCst) {
            let t = Instant::now();
            pinger.ping();
            slowest = slowest.max(t.elapsed());
            n += 1;
            std::thread::sleep(Duration::from_millis(10));
        }
        (n, slowest)
    });
    // Client C leaves a 48 MiB request unfinished.
    let mut partial = agent.connect();
    partial.send_str(r#"{"execute":"guest-exec","arguments":{"path":"cat","input-data":""#);
    partial.send(&vec![b'A'; 48 << 20]);
    // Client A: big outputs past the budget, a huge env-merge, leaders that
    // leave members behind, children that never read their stdin.
    let mut pids: Vec<i64> = (0..300)
        .map(|_| {
            exec_pid(&mut c, json!({"path": "head", "arg": ["-c", "1048576", "/dev/zero"], "capture-output": true}))
        })
        .collect();
    let env: Vec<String> = (0..30_000).map(|i| format!("K{i}=v")).collect();
    pids.push(exec_pid(&mut c, json!({"path": "true", "env": env, "env-merge": true})));
    pids.extend((0..200).map(|_| {
        exec_pid(&mut c, json!({"path": "sh", "arg": ["-c", "sleep 2 & sleep 0.5"], "capture-output": true}))
    }));
    let input = b64encode(&vec![1u8; 8 << 20]);
    pids.extend((0..4).map(|_| exec_pid(&mut c, json!({"path": "sh", "arg": ["-c", "sleep 1"], "input-data": input}))));
    for p in pids {
        let line = final_status_line(&mut c, p);
        assert!(line.contains("\"exitcode\": 0"), "{}", &line[..line.len().min(200)]);
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (n, slowest) = pings.join().unwrap();
    eprintln!(
        "{n} pings of another client answered meanwhile, the slowest in {slowest:?}; VmHWM {} MiB",
        hwm(&agent) / MIB
    );
    assert!(n > 0);
    assert!(hwm(&agent) <= OUTPUT_HELD + PENDING_INPUT + PARTIAL_REQUESTS + SLACK);
}
