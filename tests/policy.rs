//! Issue 23: the guest owner's exec policy (`--exec-policy`) over a real
//! socket. Refused programs, arguments, users, directories, environment
//! variables, extensions and profiles never start, and the error names
//! the rule; allowed ones run as before; `files=false` disables the file
//! commands as `--block-rpcs` does (guest-info says so); a policy that
//! cannot be read or applied stops the daemon. Profiles are observed from
//! inside the child where this host can (rlimits, no_new_privs, seccomp);
//! Landlock and cgroups are checked in the VM suite (scripts/e2e/run.py,
//! the `confined` guest), whose kernels have them.

mod common;

use common::*;
use serde_json::{json, Value};

fn skip_on_reference() -> bool {
    if is_reference_agent() {
        skip::not_applicable("the exec policy is qga-only");
        return true;
    }
    false
}

/// A program's path as the policy resolves it (directory canonical).
fn resolved(name: &str) -> String {
    let path = std::env::var("PATH").unwrap_or_default();
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let p = std::path::Path::new(dir).join(name);
        if p.is_file() {
            let dir = std::path::Path::new(dir).canonicalize().unwrap();
            return dir.join(name).to_string_lossy().into_owned();
        }
    }
    panic!("{name} not found in PATH")
}

/// An agent with `policy` as its exec policy file.
fn agent_with(policy: &str) -> (Agent, Conn, TempDir) {
    let dir = TempDir::new("qga-policy");
    let file = dir.join("exec-policy.conf");
    std::fs::write(&file, policy).unwrap();
    let (agent, c) = AgentBuilder::new().arg("--exec-policy").arg(&file).start();
    (agent, c, dir)
}

fn refused(c: &mut Conn, args: Value, want: &str) {
    let (class, desc) = c.err("guest-exec", args.clone());
    assert_eq!(class, "GenericError", "{args}: {desc}");
    assert!(desc.starts_with("guest-exec refused: ") && desc.contains(want), "{args}: {desc}");
}

fn out_of(st: &Value) -> String {
    String::from_utf8_lossy(&data_of(st, "out-data")).into_owned() + &String::from_utf8_lossy(&data_of(st, "err-data"))
}

#[test]
fn refused_requests_never_start_and_name_the_rule() {
    if skip_on_reference() {
        return;
    }
    let tmp = TempDir::new("qga-policy-cwd");
    let cwd_ok = tmp.path().canonicalize().unwrap();
    let policy = format!(
        "[exec]\nallow={sh};{id}\nusers=root;nobody\ncwd={cwd}\nenv-deny=LD_*;BASH_ENV\nterminal=false\n\
         input-data=false\nstream=false\nprofiles=p\n\n[rule greet]\npath={echo}\nargs=hello;*\n\n[profile p]\nrlimit-core=0\n",
        sh = resolved("sh"),
        id = resolved("id"),
        echo = resolved("echo"),
        cwd = cwd_ok.display()
    );
    let (_agent, mut c, dir) = agent_with(&policy);
    let marker = dir.join("started");
    let touch = |extra: Value| {
        let mut a = json!({"path": "sh", "arg": ["-c", format!("touch {}", marker.display())]});
        for (k, v) in extra.as_object().unwrap() {
            a[k] = v.clone();
        }
        a
    };
    refused(
        &mut c,
        json!({"path": "touch", "arg": [marker]}),
        &format!("program '{}' is not allowed", resolved("touch")),
    );
    refused(&mut c, json!({"path": "echo", "arg": ["bye", "x"]}), "arguments of");
    refused(&mut c, json!({"path": "echo", "arg": ["hello"]}), "match no rule");
    refused(&mut c, touch(json!({"user": "daemon"})), "user 'daemon' is not allowed");
    refused(&mut c, touch(json!({"cwd": "/"})), "working directory '/' is not allowed");
    refused(&mut c, touch(json!({"env": ["A=1", "LD_PRELOAD=/x.so"]})), "'LD_PRELOAD' matches 'LD_*'");
    refused(&mut c, touch(json!({"env": ["BASH_ENV=/x"], "env-merge": true})), "'BASH_ENV' matches 'BASH_ENV'");
    refused(&mut c, touch(json!({"tty": true})), "terminals are not allowed");
    refused(&mut c, touch(json!({"input-data": "eA=="})), "input-data is not allowed");
    refused(&mut c, touch(json!({"capture-output": true, "stream": true})), "streaming is not allowed");
    refused(&mut c, touch(json!({"profile": "other"})), "profile 'other' may not be chosen");
    // A program by a path that resolves to an allowed one is allowed; a
    // symlink elsewhere to it is not (its own name in its own directory).
    let link = dir.join("sh");
    std::os::unix::fs::symlink(resolved("sh"), &link).unwrap();
    refused(&mut c, json!({"path": link, "arg": ["-c", format!("touch {}", marker.display())]}), "is not allowed");
    assert!(!marker.exists(), "a refused request started something");

    let st = c.exec_and_wait(json!({"path": "echo", "arg": ["hello", "world"], "capture-output": true}));
    assert_eq!(data_of(&st, "out-data"), b"hello world\n", "{st}");
    // argv[0] stays as the client gave it; the program is the resolved one.
    let st = c.exec_and_wait(json!({"path": "sh", "arg": ["-c", "echo $0; pwd"], "capture-output": true,
                                    "cwd": cwd_ok, "user": "nobody"}));
    assert_eq!(out_of(&st), format!("sh\n{}\n", cwd_ok.display()), "{st}");
    // A profile by request: its report is in the final status only.
    let st = c.exec_and_wait(json!({"path": "sh", "arg": ["-c", "ulimit -c"], "capture-output": true, "profile": "p"}));
    assert_eq!(out_of(&st), "0\n", "{st}");
    assert_eq!(st["confinement"]["profile"], json!("p"), "{st}");
    // Without a profile: qemu-ga's reply, no extension members.
    let st = c.exec_and_wait(json!({"path": "id", "arg": ["-u"], "capture-output": true}));
    assert!(st.get("confinement").is_none() && st.get("cgroup").is_none(), "{st}");
}

#[test]
fn files_false_disables_the_file_commands_and_guest_info_says_so() {
    if skip_on_reference() {
        return;
    }
    let (_agent, mut c, dir) = agent_with("[exec]\nfiles=false\n");
    let (class, desc) = c.err("guest-file-open", json!({"path": dir.join("x"), "mode": "w"}));
    assert_eq!(
        (class.as_str(), desc.as_str()),
        ("CommandNotFound", "Command guest-file-open has been disabled: the command is not allowed")
    );
    let info = c.ok("guest-info", json!({}));
    let enabled = |name: &str| {
        info["supported_commands"].as_array().unwrap().iter().find(|x| x["name"] == json!(name)).unwrap()["enabled"]
            .clone()
    };
    assert_eq!(enabled("guest-file-open"), json!(false));
    assert_eq!(enabled("guest-file-write"), json!(false));
    assert_eq!(enabled("guest-exec"), json!(true));
    // No allow list and no rules: any program.
    let st = c.exec_and_wait(json!({"path": "true"}));
    assert_eq!(st["exitcode"], json!(0), "{st}");
}

#[test]
fn a_policy_that_cannot_be_used_stops_the_daemon() {
    if skip_on_reference() {
        return;
    }
    let dir = TempDir::new("qga-policy-bad");
    for (text, want) in [
        ("[exec]\nallw=/bin/sh\n", "[exec]: unknown key 'allw'"),
        ("[profile p]\nseccomp-deny=no_such_call\n", "no_such_call"),
        ("[exec]\nprofiles=missing\n", "profile 'missing' is not defined"),
    ] {
        let file = dir.join("policy.conf");
        std::fs::write(&file, text).unwrap();
        let sock = dir.join("sock");
        let (st, _, err) = run_agent_cli(
            &[
                "-m",
                "unix-listen",
                "-p",
                sock.to_str().unwrap(),
                "-t",
                dir.path().to_str().unwrap(),
                "--exec-policy",
                file.to_str().unwrap(),
            ],
            &[],
        );
        assert_eq!(st.code(), Some(1), "{text}: {err}");
        assert!(err.contains(want) && err.contains("exec policy"), "{text}: {err}");
    }
    let (st, _, err) =
        run_agent_cli(&["-m", "unix-listen", "-p", "/nonexistent/s", "--exec-policy", "/nonexistent/policy"], &[]);
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(err.contains("cannot read exec policy /nonexistent/policy"), "{err}");
}

#[test]
fn profile_without_a_policy_is_an_error() {
    if skip_on_reference() {
        return;
    }
    let (_agent, mut c) = Agent::start();
    let (class, desc) = c.err("guest-exec", json!({"path": "true", "profile": "x"}));
    assert_eq!(class, "GenericError");
    assert_eq!(desc, "Parameter 'profile' requires an exec policy (--exec-policy)");
}

#[test]
fn profiles_are_observed_from_inside_the_child() {
    if skip_on_reference() {
        return;
    }
    let policy = "[exec]\nprofiles=limits;nnp;sc\n\n[profile limits]\nrlimit-nofile=64\nrlimit-fsize=1K:2K\n\n\
                  [profile nnp]\nno-new-privs=true\n\n[profile sc]\nseccomp=deny-dangerous\nseccomp-deny=chroot\n";
    let (_agent, mut c, dir) = agent_with(policy);
    let sh = |c: &mut Conn, script: &str, profile: Option<&str>| {
        let mut a = json!({"path": "sh", "arg": ["-c", script], "capture-output": true});
        if let Some(p) = profile {
            a["profile"] = json!(p);
        }
        c.exec_and_wait(a)
    };
    let st = sh(&mut c, "ulimit -n; ulimit -f", Some("limits"));
    // ulimit -f counts 512-byte blocks in POSIX shells, KiB in bash.
    let out = out_of(&st);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("64"), "{st}");
    assert!(matches!(lines.next(), Some("1" | "2")), "{out}");
    assert_eq!(st["confinement"], json!({"profile": "limits", "no-new-privs": false, "seccomp": false}), "{st}");
    let st = sh(&mut c, "grep NoNewPrivs /proc/self/status", Some("nnp"));
    assert!(out_of(&st).split_whitespace().eq(["NoNewPrivs:", "1"]), "{st}");
    let st = sh(&mut c, "grep NoNewPrivs /proc/self/status", None);
    assert!(out_of(&st).split_whitespace().eq(["NoNewPrivs:", "0"]), "{st}");
    // chroot(2) is refused by the filter (EPERM), where root may chroot.
    let jail = dir.join("jail");
    std::fs::create_dir(&jail).unwrap();
    let st = sh(&mut c, &format!("chroot {} /nonexistent 2>&1; echo rc=$?", jail.display()), Some("sc"));
    assert!(out_of(&st).contains("Operation not permitted"), "{st} {}", out_of(&st));
    assert_eq!(st["confinement"]["seccomp"], json!(true), "{st}");
    let st = sh(&mut c, &format!("chroot {} /nonexistent 2>&1; echo rc=$?", jail.display()), None);
    assert!(!out_of(&st).contains("Operation not permitted"), "root may chroot without the profile: {}", out_of(&st));
}
