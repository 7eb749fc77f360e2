//! Hostile input (issue 12): what an attacker or a careless client sends,
//! each case asserting that the agent answers correctly or refuses with
//! qemu-ga's error, keeps serving, and loses no collectable result. The
//! protocol-level limits (64 MiB messages, nesting, tokens, stray bytes)
//! are in protocol.rs; the fixed defects in regressions.rs.

mod common;

use common::*;
use serde_json::{json, Value};

fn qga_only() -> bool {
    if is_reference_agent() {
        skip::not_applicable("qga-only behaviour");
        return false;
    }
    true
}

/// A result that must survive everything a test throws at the agent.
fn park_result(c: &mut Conn) -> i64 {
    c.exec(json!({"path": "echo", "arg": ["survivor"], "capture-output": true}))
}

fn collect_parked(c: &mut Conn, pid: i64) {
    let r = c.wait_exec(pid);
    assert_eq!(b64decode(r["out-data"].as_str().unwrap()), b"survivor\n", "the parked result survived");
}

#[test]
fn a_million_deep_nesting_gets_one_error() {
    let (_agent, mut c) = Agent::start();
    let parked = park_result(&mut c);
    let mut line = vec![b'['; 1_000_000];
    line.extend(vec![b']'; 1_000_000]);
    line.push(b'\n');
    // One error reply at most per few kilobytes: the write cannot block on
    // unread replies, so it completes before the ping is sent.
    c.send_in_background(line).join().unwrap().unwrap();
    let rest = c.sync_with_ping("after-million");
    assert!((1..=8).contains(&rest.len()), "{} error replies", rest.len());
    assert_eq!(rest[0]["error"]["desc"], json!("JSON nesting depth limit exceeded"));
    collect_parked(&mut c, parked);
}

#[test]
fn an_ff_storm_is_answered_and_then_nothing_is_lost() {
    if !qga_only() {
        return;
    }
    let (agent, mut c) = Agent::start();
    let parked = park_result(&mut c);
    // 100,000 bytes of 0xFF: each starts a new message, the agent answers
    // each with qemu-ga's stray-byte error and stays responsive.
    let tag = unique("after-ff");
    let mut storm = vec![0xFF; 100_000];
    storm.extend_from_slice(format!("{{\"execute\":\"guest-ping\",\"id\":\"{tag}\"}}\n").as_bytes());
    // Replies are read while the storm is written (the agent stops
    // reading while too much output is unsent).
    let writer = c.send_in_background(storm);
    let mut errors = 0;
    loop {
        let r = c.recv();
        if r["id"] == json!(tag) {
            break;
        }
        assert_eq!(r["error"]["class"], json!("GenericError"), "{r}");
        errors += 1;
    }
    writer.join().unwrap().unwrap();
    assert!(errors <= 100_000, "{errors} stray-byte errors");
    assert!(proc_status_kib(agent.pid(), "VmRSS:") < 64 * 1024);
    collect_parked(&mut c, parked);
}

#[test]
fn two_hundred_thousand_pipelined_pings_all_answered_in_order() {
    let (_agent, mut c) = Agent::start();
    let mut all = Vec::new();
    for i in 0..200_000u32 {
        all.extend_from_slice(format!("{{\"execute\":\"guest-sync\",\"arguments\":{{\"id\":{i}}}}}\n").as_bytes());
    }
    let writer = c.send_in_background(all);
    for i in 0..200_000u32 {
        let line = c.read_line();
        assert_eq!(line, format!("{{\"return\": {i}}}"));
    }
    writer.join().unwrap().unwrap();
}

/// Objects with hundreds of thousands of members, inside every limit: one
/// answered correctly, and the agent stays responsive (it blocked for
/// minutes when duplicate keys were found by scanning).
#[test]
fn huge_objects_are_handled_in_one_pass() {
    let (agent, mut c) = Agent::start();
    for (n, dup) in [(524_000usize, false), (200_000, true)] {
        let mut s = String::from("{\"execute\":\"guest-ping\",\"arguments\":{");
        for i in 0..n {
            if i > 0 {
                s.push(',');
            }
            s.push_str(&format!("\"k{}\":{}", if dup && i == n - 1 { 0 } else { i }, i));
        }
        s.push_str("}}\n");
        c.send_in_background(s.into_bytes()).join().unwrap().unwrap();
        let r = c.recv();
        let desc = r["error"]["desc"].as_str().unwrap_or_default().to_string();
        if dup {
            assert_eq!(desc, "JSON parse error, duplicate key", "{r}");
        } else {
            assert!(desc.starts_with("Parameter 'k") && desc.ends_with("' is unexpected"), "{r}");
        }
        wait_idle(agent.pid());
        c.ping();
    }
}

/// Every number the protocol can carry, in every numeric argument of the
/// exec family: refused with qemu-ga's error form or handled, never fatal.
#[test]
fn extreme_numbers_in_numeric_arguments() {
    if !qga_only() {
        return;
    }
    let (_agent, mut c) = Agent::start();
    let parked = park_result(&mut c);
    let sleeper = c.exec(json!({"path": "sleep", "arg": ["600"]}));
    let numbers = [
        json!(0),
        json!(-1),
        json!(1e308),
        json!(-1e308),
        json!(i64::MAX),
        json!(i64::MIN),
        json!(u64::MAX),
        json!(0.5),
    ];
    type MakeArgs = Box<dyn Fn(&Value) -> Value>;
    let cases: Vec<(&str, MakeArgs)> = vec![
        ("guest-exec-status", Box::new(|n| json!({"pid": n}))),
        ("guest-exec-status", Box::new(move |n| json!({"pid": sleeper, "wait": n}))),
        ("guest-exec", Box::new(|n| json!({"path": "true", "timeout": n}))),
        ("guest-exec", Box::new(|n| json!({"path": "true", "tty": true, "rows": n}))),
        ("guest-exec-terminate", Box::new(|n| json!({"pid": n}))),
        ("guest-exec-terminate", Box::new(move |n| json!({"pid": sleeper, "signal": n}))),
        ("guest-exec-input", Box::new(|n| json!({"pid": n, "input-data": ""}))),
        ("guest-exec-resize", Box::new(|n| json!({"pid": n, "rows": 1, "cols": 1}))),
        ("guest-file-read", Box::new(|n| json!({"handle": n, "count": n}))),
        ("guest-file-seek", Box::new(|n| json!({"handle": n, "offset": n, "whence": n}))),
    ];
    for (name, args) in &cases {
        for n in &numbers {
            let r = c.execute(name, args(n));
            if let Some(ret) = r.get("return").filter(|_| *name == "guest-exec-status") {
                // A wait that ended: the sleeper is still running.
                assert_eq!(ret, &json!({"exited": false}), "{name} {n}: {r}");
            } else if let Some(e) = r.get("error") {
                assert_eq!(e["class"], json!("GenericError"), "{name} {n}: {r}");
                assert!(!e["desc"].as_str().unwrap_or_default().is_empty());
            } else if let Some(pid) = r["return"]["pid"].as_i64() {
                c.wait_exec(pid);
            }
        }
    }
    c.ok("guest-exec-terminate", json!({"pid": sleeper}));
    assert_eq!(c.wait_exec(sleeper)["signal"], json!(9));
    collect_parked(&mut c, parked);
}

/// A client that stops reading in the middle of a big reply, or vanishes
/// mid-request or mid-reply, costs nothing: the next client is served and
/// results survive.
#[test]
fn clients_vanishing_mid_request_and_mid_reply() {
    let (agent, mut c) = Agent::start();
    let parked = park_result(&mut c);
    let big = c.exec(json!({"path": "head", "arg": ["-c", "8000000", "/dev/zero"], "capture-output": true}));
    // Wait until it is complete, without collecting it.
    c.ok("guest-exec-status", json!({"pid": parked})); // parked is consumed here...
    drop(c);
    // Mid-request: half a message, then gone.
    let mut m = agent.connect();
    m.send(b"{\"execute\":\"guest-exec-status\",\"arguments\":{\"pi");
    drop(m);
    // Mid-reply: ask for the 8 MB result and vanish without reading.
    let mut r = agent.connect();
    r.send(format!("{{\"execute\":\"guest-exec-status\",\"arguments\":{{\"pid\":{big}}}}}\n").as_bytes());
    wait_idle(agent.pid());
    drop(r);
    let mut c = agent.connect();
    c.ping();
    let parked = park_result(&mut c);
    collect_parked(&mut c, parked);
}
