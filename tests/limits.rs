//! Bounds on what clients can make the agent hold: unclaimed results
//! (count), huge requests (linear framing, memory), hostile pipelining.

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;

#[test]
fn unclaimed_results_are_bounded_oldest_finished_first() {
    if is_reference_agent() {
        return skip::not_applicable("reference agent: qemu-ga keeps every result forever");
    }
    let (agent, mut c) = Agent::start();
    const LIMIT: usize = 1024;
    // Exactly at the boundary: 1024 finished, unclaimed results are all
    // kept; the 1025th guest-exec discards the oldest finished one only.
    let mut pids = vec![c.exec(json!({"path": "true"}))];
    // The first one finishes first (and so is the oldest finished).
    assert!(wait_until(Duration::from_secs(60), || !proc_exists(pids[0] as u32)));
    for _ in 1..LIMIT {
        pids.push(c.exec(json!({"path": "true"})));
    }
    // Every child reaped by the agent (without capture: finished).
    assert!(
        wait_until(Duration::from_secs(300), || pids.iter().all(|&p| !proc_exists(p as u32))),
        "1024 `true` children did not finish"
    );
    let newest = c.exec(json!({"path": "true"}));
    let (_, desc) = c.err("guest-exec-status", json!({"pid": pids[0]}));
    assert_eq!(desc, format!("PID {} does not exist", pids[0]), "the oldest finished result made room");
    for &p in &pids[1..] {
        let r = c.execute("guest-exec-status", json!({"pid": p}));
        assert_eq!(r, json!({"return": {"exitcode": 0, "exited": true}}), "result of pid {p} kept (one of 1024)");
    }
    let st = c.wait_exec(newest);
    assert_eq!(st, json!({"exitcode": 0, "exited": true}));
    assert!(wait_until(Duration::from_secs(60), || zombies_of(agent.pid()).is_empty()));
    c.ping();
}

#[test]
fn huge_input_data_in_small_writes_is_parsed_once() {
    if is_reference_agent() {
        return skip::not_applicable("reference agent: slow on the reference agent");
    }
    let (agent, mut c) = Agent::start();
    // 40 MiB of input (≈53 MiB of base64) arriving in 4 KiB writes.
    let data = vec![b'x'; 40 << 20];
    let req = format!(
        "{{\"execute\":\"guest-exec\",\"arguments\":{{\"path\":\"wc\",\"arg\":[\"-c\"],\"capture-output\":true,\"input-data\":\"{}\"}}}}\n",
        b64encode(&data)
    );
    let t0 = cpu_ticks(agent.pid());
    for chunk in req.as_bytes().chunks(4096) {
        c.send(chunk);
    }
    let r = c.recv();
    let pid = r["return"]["pid"].as_i64().unwrap_or_else(|| panic!("{r}"));
    let st = c.wait_exec_for(pid, Duration::from_secs(60));
    assert_eq!(data_of(&st, "out-data"), format!("{}\n", 40 << 20).as_bytes());
    let cpu = cpu_ticks(agent.pid()) - t0;
    eprintln!(
        "agent CPU for a 53 MiB request in 4 KiB writes: {} ticks; VmHWM {} KiB",
        cpu,
        proc_status_kib(agent.pid(), "VmHWM:")
    );
    // Re-parsing from the start on every 4 KiB read would be quadratic
    // (hours); linear parsing is a few seconds even unoptimised.
    assert!(cpu < 60 * ticks_per_sec(), "framing cost must be linear in the message size");
}

#[test]
fn a_client_that_never_reads_cannot_grow_the_agent() {
    if is_reference_agent() {
        return skip::not_applicable("reference agent: the bound on unsent replies is qga's");
    }
    let (agent, c) = Agent::start();
    let rss0 = proc_status_kib(agent.pid(), "VmRSS:");
    // 200,000 pipelined guest-info requests (≈5 KB of reply each, ≈1 GB in
    // all) written from a thread while this side reads nothing. A bounded
    // agent stops taking requests once its unsent replies reach the bound:
    // the writer then blocks for good. Event-driven: wait (generously) until
    // the writer has made no progress while the agent sat idle, or until
    // the agent has taken every request / grown past the bound (failures).
    let one = b"{\"execute\":\"guest-info\"}";
    let mut flood = Vec::with_capacity(one.len() * 200_000);
    for _ in 0..200_000 {
        flood.extend_from_slice(one);
    }
    let total = flood.len();
    let written = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut s = c.stream.try_clone().unwrap();
    let w = written.clone();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        for chunk in flood.chunks(16 << 10) {
            if s.write_all(chunk).is_err() {
                return;
            }
            w.fetch_add(chunk.len(), std::sync::atomic::Ordering::SeqCst);
        }
    });
    const BOUND_KIB: u64 = 16 * 1024; // growth allowed over the idle agent
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let sample = || (written.load(std::sync::atomic::Ordering::SeqCst), cpu_ticks(agent.pid()));
    let mut last = sample();
    let mut still = 0;
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let rss = proc_status_kib(agent.pid(), "VmRSS:");
        let now = sample();
        assert!(
            rss < rss0 + BOUND_KIB,
            "unsent replies are bounded: VmRSS {rss} KiB (idle {rss0} KiB), {} of {total} request bytes taken",
            now.0
        );
        assert!(now.0 < total, "the agent took all {total} request bytes while the client read no reply");
        // Idle: no request bytes taken, no CPU used, agent asleep — for 1 s.
        let idle = now == last && proc_state(agent.pid()) == Some('S');
        still = if idle { still + 1 } else { 0 };
        if still >= 10 {
            eprintln!("writer blocked after {} of {total} bytes; agent VmRSS {rss} KiB (idle {rss0} KiB)", now.0);
            break;
        }
        last = now;
        assert!(std::time::Instant::now() < deadline, "no steady state within 120 s ({} bytes written)", now.0);
    }
    // The client gives up: closing both directions ends the writer too.
    let _ = c.stream.shutdown(std::net::Shutdown::Both);
    drop(c);
    let _ = writer.join();
    let mut c2 = agent.connect();
    c2.ping();
}

/// Kills (SIGKILL) guest-exec children this test started, by pid.
fn kill_all(pids: &[i64]) {
    for &p in pids {
        let _ = qga_sys::process::kill(p as i32, qga_sys::signal::SIGKILL);
    }
}

#[test]
fn running_processes_are_limited_to_1024() {
    if is_reference_agent() {
        return skip::not_applicable("reference agent: qemu-ga has no process limit");
    }
    let (_agent, mut c) = Agent::start();
    let mut pids = Vec::new();
    // Exactly at the boundary: 1024 running children are accepted...
    for i in 0..1024 {
        let r = c.execute("guest-exec", json!({"path": "sleep", "arg": ["1000"]}));
        match r["return"]["pid"].as_i64() {
            Some(p) => pids.push(p),
            None => {
                kill_all(&pids);
                panic!("guest-exec #{} of 1024 refused: {r}", i + 1);
            }
        }
    }
    // ...the 1025th is refused with qga's text, and nothing was started.
    let r = c.execute("guest-exec", json!({"path": "sleep", "arg": ["1000"]}));
    let refused = error_of(&r);
    // Room for exactly one more once one result is collected.
    kill_all(&pids[..1]);
    let st = c.wait_exec(pids[0]);
    let r2 = c.execute("guest-exec", json!({"path": "sleep", "arg": ["1000"]}));
    let r3 = c.execute("guest-exec", json!({"path": "sleep", "arg": ["1000"]}));
    for r in [&r, &r2, &r3] {
        if let Some(p) = r["return"]["pid"].as_i64() {
            pids.push(p);
        }
    }
    kill_all(&pids);
    assert_eq!(
        refused,
        Some(("GenericError".into(), "Too many guest-exec processes are running (limit 1024)".into())),
        "reply to guest-exec #1025: {r}"
    );
    assert_eq!(st, json!({"signal": 9, "exited": true}));
    assert!(r2["return"]["pid"].is_i64(), "a slot was freed: {r2}");
    assert_generic_error(&r3, "Too many guest-exec processes are running (limit 1024)");
    for &p in &pids[1..] {
        assert_eq!(c.wait_exec(p)["signal"], json!(9));
    }
}

#[test]
fn captured_output_held_in_all_is_capped_at_256_mib() {
    if is_reference_agent() {
        return skip::not_applicable("reference agent: qemu-ga keeps 16 MiB per stream, unbounded in all");
    }
    const MIB: usize = 1 << 20;
    let (agent, mut c) = Agent::start();
    let d = agent.dir().display().to_string();
    // 17 children each write 16 MiB (the per-stream cap) and then stay
    // running until the gate file appears: 272 MiB offered, all at once.
    let mut pids = Vec::new();
    for i in 0..17 {
        let script =
            format!("head -c {} /dev/zero; : > {d}/done.{i}; while [ ! -e {d}/gate ]; do sleep 0.05; done", 16 * MIB);
        pids.push(c.exec(json!({"path": "sh", "arg": ["-c", script], "capture-output": true})));
    }
    let all_done =
        wait_until(Duration::from_secs(300), || (0..17).all(|i| agent.dir().join(format!("done.{i}")).exists()));
    std::fs::write(agent.dir().join("gate"), b"").unwrap();
    assert!(all_done, "the 17 writers did not finish within 300 s");
    let mut held = 0usize;
    for &p in &pids {
        // Raw reply lines (16 MiB of output is a 21 MiB line: not parsed
        // as a whole in a debug build).
        let line = loop {
            let l = c.cmd_raw(&format!("{{\"execute\":\"guest-exec-status\",\"arguments\":{{\"pid\":{p}}}}}"));
            if l != "{\"return\": {\"exited\": false}}\n" {
                break l;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // No result is discarded for bytes (only the entry limit evicts).
        assert!(!line.starts_with("{\"error\""), "{p} was discarded: {line}");
        let field = |name: &str| -> Option<&str> {
            let key = format!("\"{name}\": ");
            let at = line.find(&key)? + key.len();
            let rest = &line[at..];
            Some(&rest[..rest.find([',', '}'])?])
        };
        assert_eq!(field("exitcode"), Some("0"), "{p}");
        assert_eq!(field("exited"), Some("true"), "{p}");
        // Zero bytes only: base64 `A`s (and padding); its length gives the
        // byte count without decoding.
        let b64 = field("out-data").unwrap_or("").trim_matches('"');
        let pad = b64.bytes().rev().take_while(|&b| b == b'=').count();
        assert!(
            b64.len() % 4 == 0 && pad <= 2 && b64.bytes().take(b64.len() - pad).all(|b| b == b'A'),
            "{p}: not all zero bytes"
        );
        let len = (b64.len() / 4 * 3).saturating_sub(pad);
        match field("out-truncated") {
            Some("false") => assert_eq!(len, 16 * MIB, "untruncated output is complete"),
            t => {
                // Also when nothing was kept: the loss is flagged.
                assert_eq!(t, Some("true"), "{p}: {len} bytes without a flag");
                assert!(len < 16 * MIB);
            }
        }
        held += len;
    }
    eprintln!("captured output held: {held} bytes in 17 results");
    assert!(held <= 256 * MIB, "at most 256 MiB of captured output in all, held {held}");
    assert!(held >= 240 * MIB, "the budget is used, not wasted: held {held}");
}
