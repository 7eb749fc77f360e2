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
    let mut pids = Vec::new();
    for i in 0..LIMIT + 40 {
        pids.push(c.exec(json!({"path": "true"})));
        if i == 0 {
            // Make sure the first one has finished (and so can be evicted).
            assert!(wait_until(Duration::from_secs(10), || !proc_exists(pids[0] as u32)));
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // The first results were discarded to make room, the newest are kept.
    let (_, desc) = c.err("guest-exec-status", json!({"pid": pids[0]}));
    assert_eq!(desc, format!("PID {} does not exist", pids[0]));
    let last = *pids.last().unwrap();
    let st = c.wait_exec(last);
    assert_eq!(st, json!({"exitcode": 0, "exited": true}));
    assert!(zombies_of(agent.pid()).is_empty() || wait_until(Duration::from_secs(5), || zombies_of(agent.pid()).is_empty()));
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
    eprintln!("agent CPU for a 53 MiB request in 4 KiB writes: {} ticks; VmHWM {} KiB", cpu, proc_status_kib(agent.pid(), "VmHWM:"));
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
    // 200,000 pipelined guest-info requests (≈5 KB of reply each) in the
    // background while this side reads nothing for a while.
    let one = b"{\"execute\":\"guest-info\"}";
    let mut flood = Vec::with_capacity(one.len() * 200_000);
    for _ in 0..200_000 {
        flood.extend_from_slice(one);
    }
    let writer = c.send_in_background(flood);
    std::thread::sleep(Duration::from_secs(2));
    let rss = proc_status_kib(agent.pid(), "VmRSS:");
    eprintln!("agent VmRSS with an unread reply backlog: {rss} KiB");
    assert!(rss < 32 * 1024, "unsent replies are bounded (VmRSS {rss} KiB)");
    // The client gives up: closing both directions ends the writer too.
    let _ = c.stream.shutdown(std::net::Shutdown::Both);
    drop(c);
    let _ = writer.join();
    let mut c2 = agent.connect();
    c2.ping();
}
