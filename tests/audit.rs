//! The audit trail (`--audit-log`, docs/audit.md): records of
//! file-changing commands with their outcome and never a secret, JSON
//! Lines that parse, rotation within the size bound, the kernel log as
//! the destination, and nothing written while file systems are frozen
//! (a real freeze of a scratch ext4 in a private mount namespace: root,
//! loop mounts, mkfs.ext4).
//!
//! Exec records (`exec-start`, `exec-refused`, `exec-end`) are emitted by
//! the exec policy's code; [`assert_exec_records`] holds their checks and
//! runs once [`EXEC_RECORDS`] is true.

mod commands_common;

use commands_common::{is_reference, skip, Agent, Opts, TempDir};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

/// True once guest-exec writes its records (exec-start / exec-end).
const EXEC_RECORDS: bool = true;

/// A secret-looking argument that must never reach the audit file.
const SECRET: &str = "--password=hunter2-XYZZY";

fn start(args: &[&str]) -> Agent {
    Agent::start_with(Opts { args: args.iter().map(|s| s.to_string()).collect(), ..Default::default() })
}

/// The records written so far: a request answered after the ones that
/// produced them (so their loop pass, which writes them, has ended).
fn records(a: &mut Agent, path: &Path) -> (String, Vec<Value>) {
    a.ok("guest-ping", "{}");
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let v = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line is not JSON ({e}): {l}")))
        .collect();
    (text, v)
}

/// Common fields of every record.
fn check_common(r: &Value, seq: u64) {
    let t = r["time"].as_str().unwrap();
    // 2026-01-31T12:34:56.789Z
    assert!(t.len() == 24 && t.ends_with('Z') && t.as_bytes()[10] == b'T' && t.as_bytes()[19] == b'.', "{t}");
    assert_eq!(r["seq"], seq, "{r}");
    assert_eq!(r["client"]["transport"], "unix", "{r}");
    assert_eq!(r["client"]["uid"], qga_sys::process::geteuid(), "{r}");
    assert_eq!(r["client"]["pid"], std::process::id(), "{r}");
}

fn run_exec(a: &mut Agent, user_arg: &str) -> i64 {
    let args = json!({"path": "/bin/sh", "arg": ["-c", "exit 3", "sh", SECRET, user_arg], "capture-output": true});
    let pid = a.ok("guest-exec", &args.to_string())["pid"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st = a.ok("guest-exec-status", &json!({ "pid": pid }).to_string());
        if st["exited"] == true {
            assert_eq!(st["exitcode"], 3);
            return pid;
        }
        assert!(Instant::now() < deadline, "exec did not end");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn file_commands_and_exec_without_secrets() {
    if is_reference() {
        return skip::not_applicable("the audit trail is a qga extension");
    }
    let mut a = start(&["--audit-log=audit.log"]);
    let log = a.dir.join("audit.log");
    let target = a.dir.join("written");
    let p = target.to_str().unwrap();
    let h = a.ok("guest-file-open", &json!({"path": p, "mode": "w"}).to_string()).as_i64().unwrap();
    a.ok("guest-file-write", &json!({"handle": h, "buf-b64": "aGVsbG8="}).to_string()); // hello
    a.ok("guest-file-write", &json!({"handle": h, "buf-b64": "IHdvcmxk"}).to_string()); // " world"
    a.ok("guest-file-close", &json!({ "handle": h }).to_string());
    // Read-only: no record.
    let r = a.ok("guest-file-open", &json!({"path": p}).to_string()).as_i64().unwrap();
    a.ok("guest-file-close", &json!({ "handle": r }).to_string());
    // A failed open in a writing mode is audited with its error.
    let bad = a.dir.join("no/such/dir");
    a.err("guest-file-open", &json!({"path": bad, "mode": "a"}).to_string());
    // Secrets of the account commands never appear.
    a.err("guest-ssh-add-authorized-keys", r#"{"username":"qga-no-such-user","keys":["ssh-ed25519 KEYXYZZY"]}"#);
    a.err(
        "guest-set-user-password",
        r#"{"username":"qga-no-such-user","password":"aHVudGVyMi1YWVpaWQ==","crypted":false}"#,
    );
    a.ok("guest-fsfreeze-freeze-list", r#"{"mountpoints":["/qga-not-a-mountpoint"]}"#);
    a.ok("guest-fsfreeze-thaw", "{}");
    run_exec(&mut a, "plain");
    let (text, recs) = records(&mut a, &log);
    assert!(!text.contains("XYZZY") && !text.contains("hunter2"), "a secret reached the audit file:\n{text}");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&log).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let mine: Vec<&Value> = recs.iter().filter(|r| r["event"] == "command").collect();
    for (i, r) in recs.iter().enumerate() {
        check_common(r, i as u64 + 1);
    }
    let expect = [
        json!({"command": "guest-file-open", "path": p, "mode": "w", "handle": h, "outcome": "ok"}),
        json!({"command": "guest-file-close", "handle": h, "path": p, "bytes-written": 11, "outcome": "ok"}),
        json!({"command": "guest-file-open", "path": bad, "mode": "a"}),
        json!({"command": "guest-ssh-add-authorized-keys", "username": "qga-no-such-user", "keys": 1}),
        json!({"command": "guest-set-user-password", "username": "qga-no-such-user"}),
        json!({"command": "guest-fsfreeze-freeze-list", "mountpoints": ["/qga-not-a-mountpoint"], "outcome": "ok"}),
        json!({"command": "guest-fsfreeze-thaw", "outcome": "ok"}),
    ];
    assert_eq!(mine.len(), expect.len(), "{text}");
    for (r, e) in mine.iter().zip(&expect) {
        for (k, v) in e.as_object().unwrap() {
            assert_eq!(&r[k], v, "{k} of {r}");
        }
        if e.get("outcome").is_none() {
            let o = r["outcome"].as_str().unwrap();
            assert!(o != "ok" && !o.is_empty(), "{r}");
        }
    }
    // Only what is listed: no password, no key, no data.
    assert!(mine[4].get("password").is_none() && mine[3].as_object().unwrap().len() == 8, "{}", mine[3]);
    if EXEC_RECORDS {
        assert_exec_records(&recs, false);
    }
    a.stop();
}

#[test]
fn exec_argv_only_when_asked() {
    if is_reference() {
        return skip::not_applicable("the audit trail is a qga extension");
    }
    let mut a = start(&["--audit-log=audit.log", "--audit-argv"]);
    let log = a.dir.join("audit.log");
    run_exec(&mut a, "asked");
    let (text, recs) = records(&mut a, &log);
    if EXEC_RECORDS {
        assert!(text.contains("XYZZY"), "{text}");
        assert_exec_records(&recs, true);
    }
    a.stop();
}

/// The exec records of one `sh -c "exit 3" sh SECRET <arg>` run (to be
/// enabled with [`EXEC_RECORDS`]): exec-start with program, argc, user,
/// cwd, profile and pid; exec-end with the exit code, duration and byte
/// counts; argv (and env) only with `--audit-argv`.
fn assert_exec_records(recs: &[Value], argv: bool) {
    let start = recs.iter().find(|r| r["event"] == "exec-start").expect("an exec-start record");
    assert_eq!(start["command"], "guest-exec");
    assert_eq!(start["program"], "/bin/sh");
    // Whether argc counts argv[0] is the exec code's choice: 5 or 6 here.
    assert!(matches!(start["argc"].as_i64(), Some(5 | 6)), "{start}");
    for k in ["user", "cwd", "profile", "pid"] {
        assert!(start.get(k).is_some(), "exec-start lacks {k}: {start}");
    }
    let pid = &start["pid"];
    let end = recs.iter().find(|r| r["event"] == "exec-end" && &r["pid"] == pid).expect("an exec-end record");
    assert_eq!(end["exit-code"], 3);
    assert_eq!(end["timed-out"], false);
    for k in ["oom-kill", "duration-ms", "bytes-in", "bytes-out"] {
        assert!(end.get(k).is_some(), "exec-end lacks {k}: {end}");
    }
    assert_eq!(start.get("argv").is_some(), argv, "{start}");
}

#[test]
fn rotation_keeps_n_files_within_the_bound() {
    if is_reference() {
        return skip::not_applicable("the audit trail is a qga extension");
    }
    let mut a = start(&["--audit-log=audit.log", "--audit-log-size=1K", "--audit-log-keep=2"]);
    for _ in 0..40 {
        a.ok("guest-fsfreeze-thaw", "{}");
    }
    let log = a.dir.join("audit.log");
    let (_, last) = records(&mut a, &log);
    let mut seqs = Vec::new();
    for name in ["audit.log.2", "audit.log.1", "audit.log"] {
        let path = a.dir.join(name);
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        assert!(len > 0 && len <= 1024, "{name}: {len} bytes");
        let text = std::fs::read_to_string(&path).unwrap();
        seqs.extend(text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["seq"].as_u64().unwrap()));
    }
    assert!(!a.dir.join("audit.log.3").exists());
    // The newest records, in order, none lost between the files.
    assert_eq!(seqs.last().copied(), Some(40));
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    assert!(!last.is_empty());
    a.stop();
}

#[test]
fn kernel_log_destination() {
    if is_reference() {
        return skip::not_applicable("the audit trail is a qga extension");
    }
    let writable = std::fs::OpenOptions::new().write(true).open("/dev/kmsg").is_ok();
    let readable = std::fs::File::open("/dev/kmsg").is_ok();
    if !(writable && readable) {
        return skip::missing("a writable and readable /dev/kmsg (root)");
    }
    let mut a = start(&["--audit-log=kmsg"]);
    let user = format!("qga-kmsg-{}", std::process::id());
    a.err("guest-ssh-remove-authorized-keys", &json!({"username": user, "keys": ["k"]}).to_string());
    a.ok("guest-ping", "{}");
    // /dev/kmsg read without blocking: every record the kernel keeps.
    let out = std::process::Command::new("dd").args(["if=/dev/kmsg", "iflag=nonblock", "bs=8192"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().rev().find(|l| l.contains(&user)).unwrap_or_else(|| panic!("no record of {user}"));
    let rec = line.split_once("qga-audit: ").expect("the qga-audit: prefix").1;
    // /dev/kmsg escapes non-printing bytes; a record is plain ASCII.
    let rec: Value = serde_json::from_str(rec).unwrap_or_else(|e| panic!("{e}: {rec}"));
    assert_eq!(rec["command"], "guest-ssh-remove-authorized-keys");
    assert_eq!(rec["keys"], 1);
    a.stop();
}

/// A real freeze: the audit file lives on the frozen file system. Records
/// made while frozen wait (a write would block the agent: it still
/// answers), and are in the file after the thaw.
#[test]
fn nothing_written_while_frozen() {
    if is_reference() {
        return skip::not_applicable("the audit trail is a qga extension");
    }
    let t = TempDir::new("audit-freeze");
    let Some((prelude, mnt)) = commands_common::scratch_ext4(&t) else { return };
    let m = mnt.to_str().unwrap();
    let log = format!("{m}/audit.log");
    let opts = Opts { args: vec![format!("--audit-log={log}")], ..Default::default() };
    let Some(mut a) = Agent::start_in_ns(&prelude, opts) else { return };
    a.ok("guest-fsfreeze-thaw", "{}"); // record 1, written before the freeze
    a.ok("guest-ping", "{}");
    assert_eq!(a.ok("guest-fsfreeze-freeze-list", &json!({"mountpoints": [m]}).to_string()), 1);
    // Its record is queued; writing it would block the loop: pings prove
    // nothing blocks.
    let mut answered = 0;
    for _ in 0..5 {
        if a.line_within(Duration::ZERO).is_none() {
            a.send_raw("{\"execute\":\"guest-ping\"}\n");
            answered += a.line_within(Duration::from_secs(10)).is_some() as usize;
        }
    }
    if answered < 5 {
        // Blocked on the frozen file system: thaw it from outside, or the
        // agent could not even be killed.
        let pid = a.child.id().to_string();
        let _ = std::process::Command::new("nsenter").args(["-t", &pid, "-m", "fsfreeze", "-u", m]).status();
        panic!("the agent stopped answering while frozen");
    }
    let thawed = a.ok("guest-fsfreeze-thaw", "{}");
    assert_eq!(thawed, 1);
    // Read the file through the agent (it is in the agent's namespace).
    let h = a.ok("guest-file-open", &json!({ "path": log }).to_string()).as_i64().unwrap();
    let data = a.ok("guest-file-read", &json!({"handle": h, "count": 65536}).to_string());
    a.ok("guest-file-close", &json!({ "handle": h }).to_string());
    let text = String::from_utf8(b64(data["buf-b64"].as_str().unwrap())).unwrap();
    let recs: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let names: Vec<&str> = recs.iter().map(|r| r["command"].as_str().unwrap()).collect();
    assert_eq!(names, ["guest-fsfreeze-thaw", "guest-fsfreeze-freeze-list", "guest-fsfreeze-thaw"], "{text}");
    assert_eq!(recs[1]["outcome"], "ok");
    a.stop();
}

fn b64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let mut out = Vec::new();
    for chunk in s.trim_end_matches('=').as_bytes().chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= u32::from(val(c)) << (18 - 6 * i);
        }
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}
