//! Issue 13: what libvirt and KubeVirt depend on — a capture cap that fits
//! the client (`--max-output`), several clients on one socket
//! (`--max-clients`, default qemu-ga's one at a time), and the command
//! names KubeVirt's probe looks for.

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;

fn qga_only() -> bool {
    if is_reference_agent() {
        skip::not_applicable("qga extension option");
        return false;
    }
    true
}

#[test]
fn max_output_caps_each_captured_stream() {
    if !qga_only() {
        return;
    }
    let (_agent, mut c) = AgentBuilder::new().args(["--max-output", "1000"]).start();
    let r = c.exec_and_wait(json!({"path": "sh", "arg": ["-c", "head -c 5000 /dev/zero; head -c 999 /dev/zero >&2"], "capture-output": true}));
    assert_eq!(b64decode(r["out-data"].as_str().unwrap()).len(), 1000);
    assert_eq!(r["out-truncated"], json!(true));
    assert_eq!(b64decode(r["err-data"].as_str().unwrap()).len(), 999);
    assert_eq!(r["err-truncated"], json!(false));
    // Streaming is the way to get more: it is not capped.
    let pid =
        c.exec(json!({"path": "head", "arg": ["-c", "300000", "/dev/zero"], "capture-output": true, "stream": true}));
    let mut got = 0;
    loop {
        let r = c.ok("guest-exec-status", json!({"pid": pid, "wait": 10}));
        got += r["out-data"].as_str().map_or(0, |d| b64decode(d).len());
        if r["exited"] == json!(true) {
            break;
        }
    }
    assert_eq!(got, 300000);
}

#[test]
fn max_output_from_the_config_file_with_a_suffix() {
    if !qga_only() {
        return;
    }
    let dir = TempDir::new("qga-conf");
    let conf = dir.join("qga.conf");
    std::fs::write(&conf, "[general]\nmax-output=2K\nmax-clients=3\n").unwrap();
    let (st, out, _) = run_agent_cli(&["-c", conf.to_str().unwrap(), "-D"], &[]);
    assert!(st.success());
    assert!(out.ends_with("max-output=2048\nmax-clients=3\n"), "{out}");
    let (_agent, mut c) = AgentBuilder::new().args(["-c", conf.to_str().unwrap()]).start();
    let r = c.exec_and_wait(json!({"path": "head", "arg": ["-c", "4096", "/dev/zero"], "capture-output": true}));
    assert_eq!(b64decode(r["out-data"].as_str().unwrap()).len(), 2048);
    assert_eq!(r["out-truncated"], json!(true));
}

#[test]
fn bad_option_values_are_refused() {
    if !qga_only() {
        return;
    }
    for (opt, v, msg) in [
        ("--max-output", "0", "invalid max-output '0': expected a number of bytes from 1 to 256M (suffixes K, M)"),
        (
            "--max-output",
            "257M",
            "invalid max-output '257M': expected a number of bytes from 1 to 256M (suffixes K, M)",
        ),
        ("--max-output", "x", "invalid max-output 'x': expected a number of bytes from 1 to 256M (suffixes K, M)"),
        ("--max-clients", "0", "invalid max-clients '0': expected a number from 1 to 64"),
        ("--max-clients", "65", "invalid max-clients '65': expected a number from 1 to 64"),
    ] {
        let (st, _, err) = run_agent_cli(&[opt, v, "-m", "unix-listen", "-p", "/nonexistent/sock"], &[]);
        assert_eq!(st.code(), Some(1), "{opt} {v}");
        assert!(err.ends_with(&format!(": {msg}\n")), "{opt} {v}: {err}");
    }
}

#[test]
fn one_client_at_a_time_by_default() {
    let (agent, mut a) = Agent::start();
    let mut b = agent.connect();
    b.send_str("{\"execute\":\"guest-sync\",\"arguments\":{\"id\":2}}\n");
    // A is served; B waits in the backlog until A leaves.
    assert_eq!(a.ok("guest-sync", json!({"id": 1})), json!(1));
    b.expect_silence_once_idle(agent.pid());
    drop(a);
    assert_eq!(b.recv()["return"], json!(2));
}

#[test]
fn several_clients_are_served_at_once_and_share_results() {
    if !qga_only() {
        return;
    }
    let (agent, mut a) = AgentBuilder::new().args(["--max-clients", "3"]).start();
    let mut b = agent.connect();
    let mut c = agent.connect();
    let slow =
        a.exec(json!({"path": "sh", "arg": ["-c", "read x; echo $x"], "input-stream": true, "capture-output": true}));
    // A holds a long `wait`; B and C are answered meanwhile.
    a.send_str(&format!("{{\"execute\":\"guest-exec-status\",\"arguments\":{{\"pid\":{slow},\"wait\":60}}}}\n"));
    assert_eq!(b.ok("guest-sync", json!({"id": 5})), json!(5));
    let quick = c.exec(json!({"path": "echo", "arg": ["from c"], "capture-output": true}));
    // Any client may collect any result, once.
    let r = b.wait_exec(quick);
    assert_eq!(b64decode(r["out-data"].as_str().unwrap()), b"from c\n");
    let (_, desc) = c.err("guest-exec-status", json!({"pid": quick}));
    assert_eq!(desc, format!("PID {quick} does not exist"));
    // C feeds A's process; A's held reply then completes.
    c.ok("guest-exec-input", json!({"pid": slow, "input-data": b64encode(b"hello\n"), "eof": true}));
    let r = a.recv();
    assert_eq!(r["return"]["exited"], json!(true), "{r}");
    assert_eq!(b64decode(r["return"]["out-data"].as_str().unwrap()), b"hello\n");
    // A fourth client waits until one of the three leaves.
    let mut d = agent.connect();
    d.send_str("{\"execute\":\"guest-ping\"}\n");
    d.expect_silence_once_idle(agent.pid());
    drop(c);
    assert_eq!(d.recv(), json!({"return": {}}));
    a.ping();
    b.ping();
}

/// KubeVirt decides what the agent supports from these names in
/// guest-info; all must be listed and enabled.
#[test]
fn guest_info_lists_what_kubevirt_probes() {
    let (_agent, mut c) = Agent::start();
    let info = c.ok("guest-info", json!({}));
    let cmds = info["supported_commands"].as_array().unwrap();
    for name in [
        "guest-ping",
        "guest-get-time",
        "guest-info",
        "guest-shutdown",
        "guest-network-get-interfaces",
        "guest-get-fsinfo",
        "guest-get-host-name",
        "guest-get-users",
        "guest-get-timezone",
        "guest-get-osinfo",
        "guest-exec",
        "guest-exec-status",
    ] {
        let entry = cmds.iter().find(|c| c["name"] == json!(name)).unwrap_or_else(|| panic!("{name} not listed"));
        assert_eq!(entry["enabled"], json!(true), "{name}");
    }
}

#[test]
fn a_client_leaving_mid_wait_loses_nothing() {
    if !qga_only() {
        return;
    }
    let (agent, mut a) = AgentBuilder::new().args(["--max-clients", "2"]).start();
    let pid = a.exec(json!({"path": "sh", "arg": ["-c", "sleep 0.5; echo done"], "capture-output": true}));
    a.send_str(&format!("{{\"execute\":\"guest-exec-status\",\"arguments\":{{\"pid\":{pid},\"wait\":60}}}}\n"));
    drop(a);
    let mut b = agent.connect();
    let r = b.wait_exec_for(pid, Duration::from_secs(60));
    assert_eq!(b64decode(r["out-data"].as_str().unwrap()), b"done\n");
}
