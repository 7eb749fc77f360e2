//! Ports of QEMU's tests/unit/test-qga.c (reference §5), one Rust test per
//! upstream test path. Cases for commands the agent under test does not
//! implement (absent from guest-info) are recorded skips for the reference
//! agent and failures for qga.
#[macro_use]
mod common;

use common::*;
use serde_json::{json, Value};
use std::sync::OnceLock;

/// Command names the agent under test lists in guest-info (queried once,
/// from an agent of its own).
fn supported() -> &'static Vec<String> {
    static S: OnceLock<Vec<String>> = OnceLock::new();
    S.get_or_init(|| {
        let (agent, mut c) = Agent::start();
        let info = c.ok("guest-info", Value::Null);
        drop(c);
        agent.stop();
        info["supported_commands"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap().to_string()).collect()
    })
}

/// Return early (skip) when `cmd` is not implemented by the agent.
macro_rules! require {
    ($($cmd:expr),+) => {
        $(
            if !supported().iter().any(|n| n == $cmd) {
                // qga implements every Linux command: only the reference
                // agent may lack one.
                assert!(is_reference_agent(), "{} is missing from qga's guest-info", $cmd);
                skip::not_applicable(&format!("{} is not implemented by this agent (not in guest-info)", $cmd));
                return;
            }
        )+
    };
}

fn random_u32() -> u32 {
    // std-only pseudo random: time and pid mixed
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let x = t ^ ((std::process::id() as u64) << 32) ^ 0x9E37_79B9_7F4A_7C15;
    (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as u32
}

// /qga/sync-delimited
#[test]
fn qga_sync_delimited() {
    let (_agent, mut c) = Agent::start();
    let r = random_u32();
    c.send(b"\xff");
    c.send(format!("{{'execute': 'guest-sync-delimited', 'arguments': {{'id': {}}}}}\n", r).as_bytes());
    // Read and ignore bytes until the 0xFF sentinel (this tolerates the
    // error reply the client's own 0xFF provokes), then one JSON object.
    let mut skipped = 0;
    loop {
        let line = c.read_line_raw();
        if let Some(pos) = line.iter().position(|&b| b == 0xFF) {
            let rest = &line[pos + 1..];
            let v: Value = serde_json::from_slice(rest).expect("JSON after 0xFF");
            assert!(v.get("error").is_none(), "{}", v);
            assert_eq!(v["return"], json!(r));
            break;
        }
        skipped += 1;
        assert!(skipped < 10, "no 0xFF sentinel");
    }
}

// /qga/sync
#[test]
fn qga_sync() {
    let (_agent, mut c) = Agent::start();
    let r = random_u32();
    let v = c.cmd(&json!({"execute": "guest-sync", "arguments": {"id": r}}));
    assert!(v.get("error").is_none(), "{}", v);
    assert_eq!(v["return"], json!(r));
}

// /qga/ping
#[test]
fn qga_ping() {
    let (_agent, mut c) = Agent::start();
    let v = c.cmd(&json!({"execute": "guest-ping"}));
    assert!(v.get("error").is_none(), "{}", v);
}

// /qga/info
#[test]
fn qga_info() {
    let (_agent, mut c) = Agent::start();
    let v = c.cmd(&json!({"execute": "guest-info"}));
    assert!(v.get("error").is_none(), "{}", v);
    let version = v["return"]["version"].as_str().unwrap();
    if is_reference_agent() {
        assert!(version.starts_with("10."), "{}", version);
    } else {
        assert_eq!(version, QGA_VERSION);
    }
}

// /qga/network-get-interfaces
#[test]
fn qga_network_get_interfaces() {
    require!("guest-network-get-interfaces");
    let (_agent, mut c) = Agent::start();
    let v = c.ok("guest-network-get-interfaces", Value::Null);
    let first = &v.as_array().expect("list")[0];
    assert!(first.get("name").is_some(), "{}", first);
}

// /qga/get-vcpus
#[test]
fn qga_get_vcpus() {
    if !std::path::Path::new("/sys/devices/system/cpu/cpu0").exists() {
        return skip::missing("/sys/devices/system/cpu/cpu0");
    }
    require!("guest-get-vcpus");
    let (_agent, mut c) = Agent::start();
    let v = c.ok("guest-get-vcpus", Value::Null);
    let first = &v.as_array().expect("list")[0];
    assert!(first.get("online").is_some() && first.get("logical-id").is_some(), "{}", first);
}

// /qga/get-fsinfo
#[test]
fn qga_get_fsinfo() {
    require!("guest-get-fsinfo");
    let (_agent, mut c) = Agent::start();
    let v = c.ok("guest-get-fsinfo", Value::Null);
    if let Some(first) = v.as_array().expect("list").first() {
        for k in ["name", "mountpoint", "type", "disk"] {
            assert!(first.get(k).is_some(), "{} missing: {}", k, first);
        }
    }
}

// /qga/get-load
#[test]
fn qga_get_load() {
    require!("guest-get-load");
    let (_agent, mut c) = Agent::start();
    let v = c.ok("guest-get-load", Value::Null);
    for k in ["load1m", "load5m", "load15m"] {
        assert!(v.get(k).map(|x| x.is_number()) == Some(true), "{} missing: {}", k, v);
    }
}

// /qga/get-memory-block-info
#[test]
fn qga_get_memory_block_info() {
    require!("guest-get-memory-block-info");
    let (_agent, mut c) = Agent::start();
    let v = c.execute("guest-get-memory-block-info", Value::Null);
    // Upstream checks `size > 0` if no error; here the error is allowed only
    // where sysfs has no memory blocks, and the size is sysfs' own (hex).
    match std::fs::read_to_string("/sys/devices/system/memory/block_size_bytes") {
        Ok(t) => {
            let size = u64::from_str_radix(t.trim(), 16).expect("block_size_bytes is hex");
            assert!(size > 0);
            assert_eq!(v, json!({"return": {"size": size}}));
        }
        Err(_) => assert!(v.get("error").is_some(), "{}", v),
    }
}

// /qga/get-memory-blocks
#[test]
fn qga_get_memory_blocks() {
    require!("guest-get-memory-blocks");
    let (_agent, mut c) = Agent::start();
    let v = c.execute("guest-get-memory-blocks", Value::Null);
    if let Some(first) = v.get("return").and_then(|r| r.as_array()).and_then(|a| a.first()) {
        assert!(first.get("phys-index").is_some() && first.get("online").is_some(), "{}", first);
    }
}

const HELLO: &[u8] = b"Hello World!\n\0";

// /qga/file-ops
#[test]
fn qga_file_ops() {
    require!(
        "guest-file-open",
        "guest-file-write",
        "guest-file-read",
        "guest-file-seek",
        "guest-file-flush",
        "guest-file-close"
    );
    let (agent, mut c) = Agent::start();
    let enc = b64encode(HELLO);
    // open 'foo' (relative to the agent's cwd) for writing
    let h = c.ok("guest-file-open", json!({"path": "foo", "mode": "w+"}));
    assert!(h.as_i64().unwrap() > 0);
    let w = c.ok("guest-file-write", json!({"handle": h, "buf-b64": enc}));
    assert_eq!(w, json!({"count": 14, "eof": false}));
    assert_eq!(c.ok("guest-file-flush", json!({"handle": h})), json!({}));
    assert_eq!(c.ok("guest-file-close", json!({"handle": h})), json!({}));
    // the file content on disk
    assert_eq!(std::fs::read(agent.dir().join("foo")).unwrap(), HELLO);
    // read it back
    let h = c.ok("guest-file-open", json!({"path": "foo", "mode": "r"}));
    let r = c.ok("guest-file-read", json!({"handle": h}));
    assert_eq!(r, json!({"count": 14, "eof": true, "buf-b64": enc}));
    let r = c.ok("guest-file-read", json!({"handle": h}));
    assert_eq!(r, json!({"count": 0, "eof": true, "buf-b64": ""}));
    let s = c.ok("guest-file-seek", json!({"handle": h, "offset": 6, "whence": "set"}));
    assert_eq!(s, json!({"position": 6, "eof": false}));
    let r = c.ok("guest-file-read", json!({"handle": h}));
    assert_eq!(r["count"], json!(8));
    assert_eq!(r["eof"], json!(true));
    assert_eq!(data_of(&r, "buf-b64"), HELLO[6..].to_vec());
    assert_eq!(c.ok("guest-file-close", json!({"handle": h})), json!({}));
}

// /qga/file-write-read
#[test]
fn qga_file_write_read() {
    require!("guest-file-open", "guest-file-write", "guest-file-read", "guest-file-seek", "guest-file-close");
    let (_agent, mut c) = Agent::start();
    let enc = b64encode(HELLO);
    let h = c.ok("guest-file-open", json!({"path": "foo", "mode": "w+"}));
    let w = c.ok("guest-file-write", json!({"handle": h, "buf-b64": enc}));
    assert_eq!(w, json!({"count": 14, "eof": false}));
    // read without seek: implicit flush, position at the end
    let r = c.ok("guest-file-read", json!({"handle": h}));
    assert_eq!(r, json!({"count": 0, "eof": true, "buf-b64": ""}));
    let s = c.ok("guest-file-seek", json!({"handle": h, "offset": 0, "whence": "set"}));
    assert_eq!(s, json!({"position": 0, "eof": false}));
    let r = c.ok("guest-file-read", json!({"handle": h}));
    assert_eq!(r, json!({"count": 14, "eof": true, "buf-b64": enc}));
    assert_eq!(c.ok("guest-file-close", json!({"handle": h})), json!({}));
}

// /qga/get-time
#[test]
fn qga_get_time() {
    require!("guest-get-time");
    let (_agent, mut c) = Agent::start();
    let v = c.ok("guest-get-time", Value::Null);
    assert!(v.as_i64().unwrap() > 0, "{}", v);
}

// /qga/id
#[test]
fn qga_id() {
    let (_agent, mut c) = Agent::start();
    c.send_str("{'execute': 'guest-ping', 'id': 1}");
    let v = c.recv();
    assert!(v.get("error").is_none(), "{}", v);
    assert_eq!(v["id"], json!(1));
}

// /qga/invalid-oob
#[test]
fn qga_invalid_oob() {
    let (_agent, mut c) = Agent::start();
    c.send_str("{'exec-oob': 'guest-ping'}");
    let v = c.recv();
    assert_eq!(v["error"]["class"], json!("GenericError"), "{}", v);
}

// /qga/invalid-cmd
#[test]
fn qga_invalid_cmd() {
    let (_agent, mut c) = Agent::start();
    let (class, desc) = c.err("guest-invalid-cmd", Value::Null);
    assert_eq!(class, "CommandNotFound");
    assert!(!desc.is_empty());
}

// /qga/invalid-args
#[test]
fn qga_invalid_args() {
    let (_agent, mut c) = Agent::start();
    let (class, desc) = c.err("guest-ping", json!({"foo": 42}));
    assert_eq!(class, "GenericError");
    assert_eq!(desc, "Parameter 'foo' is unexpected");
}

// /qga/fsfreeze-status
#[test]
fn qga_fsfreeze_status() {
    require!("guest-fsfreeze-status");
    let (_agent, mut c) = Agent::start();
    assert_eq!(c.ok("guest-fsfreeze-status", Value::Null), json!("thawed"));
}

fn assert_disabled(c: &mut Conn, cmd: &str) {
    let (class, desc) = c.err(cmd, Value::Null);
    assert_eq!(class, "CommandNotFound", "{}", cmd);
    assert!(desc.contains("has been disabled"), "{}: {}", cmd, desc);
}

// /qga/blockedrpcs
#[test]
fn qga_blockedrpcs() {
    let (_agent, mut c) = AgentBuilder::new().arg("-b").arg("guest-ping,guest-get-time").start();
    assert_disabled(&mut c, "guest-ping");
    if supported().iter().any(|n| n == "guest-get-time") {
        assert_disabled(&mut c, "guest-get-time");
    }
    // a command not on the list still works
    let other = if supported().iter().any(|n| n == "guest-get-fsinfo") { "guest-get-fsinfo" } else { "guest-info" };
    let v = c.execute(other, Value::Null);
    assert!(v.get("error").is_none(), "{}: {}", other, v);
}

// /qga/allowedrpcs
#[test]
fn qga_allowedrpcs() {
    let (_agent, mut c) = AgentBuilder::new().arg("-a").arg("guest-ping,guest-get-time").start();
    c.ping();
    if supported().iter().any(|n| n == "guest-get-time") {
        c.ok("guest-get-time", Value::Null);
    }
    let other = if supported().iter().any(|n| n == "guest-get-fsinfo") { "guest-get-fsinfo" } else { "guest-info" };
    assert_disabled(&mut c, other);
}

// /qga/config
#[test]
fn qga_config() {
    let dir = TempDir::new("qga-config");
    let conf = dir.join("test-qga-config");
    std::fs::write(
        &conf,
        "[general]\ndaemon=false\nmethod=virtio-serial\npath=/path/to/org.qemu.guest_agent.0\n\
         pidfile=/var/foo/qemu-ga.pid\nstatedir=/var/state\nverbose=true\n\
         block-rpcs=guest-ping;guest-get-time\n",
    )
    .unwrap();
    let (st, out, err) = run_agent_cli(&["-D"], &[("QGA_CONF", conf.to_str().unwrap())]);
    assert_eq!(err, "", "stderr must be empty");
    assert_eq!(st.code(), Some(0));
    // parse the keyfile
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("[general]"), "start group: {}", out);
    let get = |k: &str| -> Option<String> {
        out.lines().find_map(|l| l.strip_prefix(&format!("{}=", k)).map(|v| v.to_string()))
    };
    assert_eq!(get("daemon").as_deref(), Some("false"));
    assert_eq!(get("method").as_deref(), Some("virtio-serial"));
    assert_eq!(get("path").as_deref(), Some("/path/to/org.qemu.guest_agent.0"));
    assert_eq!(get("pidfile").as_deref(), Some("/var/foo/qemu-ga.pid"));
    assert_eq!(get("statedir").as_deref(), Some("/var/state"));
    assert_eq!(get("verbose").as_deref(), Some("true"));
    // read as a `;`-separated string list: exactly the two names
    let list = get("block-rpcs").expect("block-rpcs");
    let items: Vec<&str> = list.split(';').filter(|s| !s.is_empty()).collect();
    assert_eq!(items, ["guest-ping", "guest-get-time"]);
}

fn exec_wait(c: &mut Conn, args: Value) -> Value {
    let pid = c.exec(args);
    assert!(pid > 0);
    c.wait_exec_for(pid, std::time::Duration::from_secs(60))
}

// /qga/guest-exec
#[test]
fn qga_guest_exec() {
    let (_agent, mut c) = Agent::start();
    let st = exec_wait(&mut c, json!({"path": "echo", "arg": ["-n", "\" test_str \""], "capture-output": true}));
    assert_eq!(st["exitcode"], json!(0));
    let out = data_of(&st, "out-data");
    assert_eq!(out, b"\" test_str \"".to_vec());
    assert_eq!(out.len(), 12);
}

const SEPARATED_SCRIPT: &str =
    "for i in $(seq 4); do if (( $i % 2 )); then echo stdout; else echo stderr 1>&2; fi; done;";

// /qga/guest-exec-separated
#[test]
fn qga_guest_exec_separated() {
    let (_agent, mut c) = Agent::start();
    let st = exec_wait(&mut c, json!({"path": "bash", "arg": ["-c", SEPARATED_SCRIPT], "capture-output": "separated"}));
    assert_eq!(st["exitcode"], json!(0));
    assert_eq!(data_of(&st, "out-data"), b"stdout\nstdout\n".to_vec());
    assert_eq!(data_of(&st, "err-data"), b"stderr\nstderr\n".to_vec());
}

// /qga/guest-exec-merged
#[test]
fn qga_guest_exec_merged() {
    let (_agent, mut c) = Agent::start();
    let st = exec_wait(&mut c, json!({"path": "bash", "arg": ["-c", SEPARATED_SCRIPT], "capture-output": "merged"}));
    assert_eq!(st["exitcode"], json!(0));
    let out = data_of(&st, "out-data");
    assert_eq!(out, b"stdout\nstderr\nstdout\nstderr\n".to_vec());
    assert_eq!(out.len(), 28);
    assert!(st.get("err-data").is_none(), "{}", st);
}

// /qga/guest-exec-invalid
#[test]
fn qga_guest_exec_invalid() {
    let (_agent, mut c) = Agent::start();
    let (class, desc) = c.err("guest-exec", json!({"path": "/bin/invalid-cmd42"}));
    assert_eq!(class, "GenericError");
    assert!(!desc.is_empty());
    let (class, desc) = c.err("guest-exec-status", json!({"pid": 0}));
    assert_eq!(class, "GenericError");
    assert!(!desc.is_empty());
}

// /qga/guest-get-osinfo
#[test]
fn qga_guest_get_osinfo() {
    require!("guest-get-osinfo");
    let dir = TempDir::new("qga-osrel");
    let f = dir.join("test-qga-os-release");
    std::fs::write(
        &f,
        "ID=qemu-ga-test\nNAME=QEMU-GA\nPRETTY_NAME=\"QEMU Guest Agent test\"\nVERSION=\"Test 1\"\n\
         VERSION_ID=1\nVARIANT=\"Unit test \\\"\\'\\$\\`\\\\ and \\\\\\\\ etc.\"\nVARIANT_ID=unit-test\n",
    )
    .unwrap();
    let (_agent, mut c) = AgentBuilder::new().env("QGA_OS_RELEASE", f.to_str().unwrap()).start();
    let v = c.ok("guest-get-osinfo", Value::Null);
    assert_eq!(v["id"], json!("qemu-ga-test"));
    assert_eq!(v["name"], json!("QEMU-GA"));
    assert_eq!(v["pretty-name"], json!("QEMU Guest Agent test"));
    assert_eq!(v["version"], json!("Test 1"));
    assert_eq!(v["version-id"], json!("1"));
    assert_eq!(v["variant"], json!("Unit test \"'$`\\ and \\\\ etc."));
    assert_eq!(v["variant-id"], json!("unit-test"));
}

// /qga/guest-get-host-name
#[test]
fn qga_guest_get_host_name() {
    require!("guest-get-host-name");
    let (_agent, mut c) = Agent::start();
    let v = c.ok("guest-get-host-name", Value::Null);
    assert!(v.get("host-name").is_some(), "{}", v);
}

// /qga/guest-get-timezone
#[test]
fn qga_guest_get_timezone() {
    require!("guest-get-timezone");
    let (_agent, mut c) = Agent::start();
    let v = c.ok("guest-get-timezone", Value::Null);
    assert!(v.get("offset").is_some(), "{}", v);
}

// /qga/guest-get-users
#[test]
fn qga_guest_get_users() {
    require!("guest-get-users");
    let (_agent, mut c) = Agent::start();
    let v = c.ok("guest-get-users", Value::Null);
    assert!(v.is_array(), "{}", v);
}
