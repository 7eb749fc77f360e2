//! Command line and configuration (reference §4). Byte-exact comparisons
//! with qemu-ga's recorded output are in golden_replay.rs; these tests check
//! the behaviour that matters, with qemu-ga's texts.
#[macro_use]
mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;

fn bin_str() -> String {
    agent_bin().to_string_lossy().into_owned()
}

#[test]
fn version() {
    for flag in ["-V", "--version"] {
        let (st, out, err) = run_agent_cli(&[flag], &[]);
        assert_eq!(st.code(), Some(0), "{}", flag);
        assert_eq!(err, "", "{}", flag);
        if is_reference_agent() {
            assert!(out.starts_with("QEMU Guest Agent 10."), "{:?}", out);
            assert!(out.ends_with('\n') && out.lines().count() == 1, "{:?}", out);
        } else {
            assert_eq!(out, format!("QEMU Guest Agent {}\n", QGA_VERSION));
        }
    }
}

#[test]
fn help() {
    for flag in ["-h", "--help"] {
        let (st, out, err) = run_agent_cli(&[flag], &[]);
        assert_eq!(st.code(), Some(0), "{}", flag);
        assert_eq!(err, "", "{}", flag);
        assert!(
            out.starts_with(&format!("Usage: {} [-m <method> -p <path>] [<options>]\n", bin_str())),
            "{:?}",
            &out[..out.len().min(200)]
        );
        for opt in [
            "-c, --config",
            "-m, --method",
            "-p, --path",
            "-l, --logfile",
            "-f, --pidfile",
            "-F, --fsfreeze-hook",
            "-t, --statedir",
            "-v, --verbose",
            "-V, --version",
            "-d, --daemonize",
            "-b, --block-rpcs",
            "-a, --allow-rpcs",
            "-D, --dump-conf",
            "-r, --retry-path",
            "-h, --help",
        ] {
            assert!(out.contains(opt), "{} not in help", opt);
        }
    }
}

#[test]
fn unknown_option() {
    let expected_out = format!("Unknown option, try '{} --help' for more information.\n", bin_str());
    for (args, getopt_msg) in [
        (vec!["--bogus"], "unrecognized option '--bogus'"),
        (vec!["-x"], "invalid option -- 'x'"),
        (vec!["-m"], "option requires an argument -- 'm'"),
    ] {
        let (st, out, err) = run_agent_cli(&args, &[]);
        assert_eq!(st.code(), Some(1), "{:?}", args);
        assert_eq!(out, expected_out, "{:?}", args);
        assert!(err.contains(getopt_msg), "{:?}: stderr {:?}", args, err);
    }
}

#[test]
fn bad_method_and_missing_path() {
    // (-t keeps qemu-ga from creating /var/run/qga.state before it fails)
    let dir = TempDir::new("qga-cli-state");
    let t = dir.path().to_str().unwrap();
    let (st, _out, err) = run_agent_cli(&["-t", t, "-m", "bogus", "-p", "/nonexistent/x"], &[]);
    assert_eq!(st.code(), Some(1));
    assert!(err.contains("unsupported channel method/type: bogus"), "{:?}", err);
    for m in ["unix-listen", "vsock-listen"] {
        let (st, _out, err) = run_agent_cli(&["-t", t, "-m", m], &[]);
        assert_eq!(st.code(), Some(1), "{}", m);
        assert!(err.contains("must specify a path for this channel"), "{}: {:?}", m, err);
    }
    let (st, _out, err) = run_agent_cli(&["-t", t, "-m", "vsock-listen", "-p", "bogus"], &[]);
    assert_eq!(st.code(), Some(1));
    assert!(err.contains("error parsing address 'bogus'"), "{:?}", err);
    let (st, _out, err) = run_agent_cli(&["-t", t, "-m", "virtio-serial", "-p", "/nonexistent/port"], &[]);
    assert_eq!(st.code(), Some(1));
    assert!(err.contains("error opening channel '/nonexistent/port': No such file or directory"), "{:?}", err);
}

/// guest-info names from a default agent.
fn info_names(c: &mut Conn) -> Vec<String> {
    c.ok("guest-info", Value::Null)["supported_commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn block_and_allow_help_list_commands() {
    let (agent, mut c) = Agent::start();
    let mut names = info_names(&mut c);
    drop(c);
    agent.stop();
    names.reverse(); // schema order
    let expected: String = names.iter().map(|n| format!("{}\n", n)).collect();
    for args in [["-b", "help"], ["-b", "?"], ["-a", "help"], ["-a", "?"]] {
        let (st, out, err) = run_agent_cli(&args, &[]);
        assert_eq!(st.code(), Some(0), "{:?}", args);
        assert_eq!(err, "", "{:?}", args);
        assert_eq!(out, expected, "{:?}: one name per line, schema order", args);
    }
}

fn disabled_desc(cmd: &str) -> String {
    format!("Command {} has been disabled: the command is not allowed", cmd)
}

fn enabled_map(c: &mut Conn) -> Vec<(String, bool)> {
    c.ok("guest-info", Value::Null)["supported_commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_string(), e["enabled"].as_bool().unwrap()))
        .collect()
}

#[test]
fn block_rpcs() {
    let (_agent, mut c) = AgentBuilder::new().args(["-b", "guest-ping,guest-no-such-command"]).start();
    assert_eq!(
        c.cmd_raw("{\"execute\":\"guest-ping\"}"),
        format!("{{\"error\": {{\"class\": \"CommandNotFound\", \"desc\": \"{}\"}}}}\n", disabled_desc("guest-ping"))
    );
    assert_eq!(
        c.cmd_raw("{\"execute\":\"guest-ping\",\"id\":3}"),
        format!(
            "{{\"id\": 3, \"error\": {{\"class\": \"CommandNotFound\", \"desc\": \"{}\"}}}}\n",
            disabled_desc("guest-ping")
        )
    );
    // disabled is checked before the arguments
    let r = c.execute("guest-ping", json!({"bogus": 1}));
    assert_eq!(error_of(&r), Some(("CommandNotFound".into(), disabled_desc("guest-ping"))));
    for (name, enabled) in enabled_map(&mut c) {
        assert_eq!(enabled, name != "guest-ping", "{}", name);
    }
    // other commands work
    assert_eq!(c.ok("guest-sync", json!({"id": 1})), json!(1));
    let st = c.exec_and_wait(json!({"path": "true"}));
    assert_eq!(st["exitcode"], json!(0));
}

#[test]
fn block_rpcs_guest_exec() {
    let (_agent, mut c) = AgentBuilder::new().args(["-b", "guest-exec"]).args(["-b", "guest-exec-status"]).start();
    let r = c.execute("guest-exec", json!({"path": "true"}));
    assert_eq!(error_of(&r), Some(("CommandNotFound".into(), disabled_desc("guest-exec"))));
    let r = c.execute("guest-exec-status", json!({"pid": 1}));
    assert_eq!(error_of(&r), Some(("CommandNotFound".into(), disabled_desc("guest-exec-status"))));
    c.ping();
}

#[test]
fn allow_rpcs() {
    let (_agent, mut c) = AgentBuilder::new().args(["-a", "guest-ping,guest-get-time,guest-exec"]).start();
    c.ping();
    for cmd in ["guest-info", "guest-sync", "guest-exec-status", "guest-sync-delimited"] {
        let r = c.execute(cmd, Value::Null);
        assert_eq!(error_of(&r), Some(("CommandNotFound".into(), disabled_desc(cmd))), "{}", cmd);
    }
    // unknown commands are still "not found"
    let r = c.execute("guest-nope", Value::Null);
    assert_eq!(error_of(&r).unwrap().1, "The command guest-nope has not been found");
    let pid = c.exec(json!({"path": "true"}));
    assert!(pid > 0);
}

#[test]
fn block_wins_over_allow() {
    let (_agent, mut c) = AgentBuilder::new().args(["-a", "guest-ping,guest-info", "-b", "guest-ping"]).start();
    let r = c.execute("guest-ping", Value::Null);
    assert_eq!(error_of(&r), Some(("CommandNotFound".into(), disabled_desc("guest-ping"))));
    for (name, enabled) in enabled_map(&mut c) {
        assert_eq!(enabled, name == "guest-info", "{}", name);
    }
}

#[test]
fn config_file_block_rpcs_apply() {
    let dir = TempDir::new("qga-conf");
    let conf = dir.join("qemu-ga.conf");
    std::fs::write(&conf, "[general]\nblock-rpcs=guest-sync,guest-info\n").unwrap();
    let (_agent, mut c) =
        AgentBuilder::new().env("QGA_CONF", conf.to_str().unwrap()).args(["-b", "guest-get-time"]).start();
    c.ping();
    for cmd in ["guest-sync", "guest-info"] {
        let r = c.execute(cmd, json!({"id": 1}));
        assert_eq!(error_of(&r).unwrap().0, "CommandNotFound", "{}: {}", cmd, r);
    }
    // -c works the same
    let (_agent2, mut c2) = AgentBuilder::new().arg("-c").arg(&conf).start();
    let r = c2.execute("guest-sync", json!({"id": 1}));
    assert_eq!(error_of(&r), Some(("CommandNotFound".into(), disabled_desc("guest-sync"))));
    c2.ping();
}

#[test]
fn dump_conf_defaults_and_options() {
    let (st, out, err) = run_agent_cli(&["-D"], &[("QGA_CONF", "/nonexistent/qemu-ga.conf")]);
    assert_eq!((st.code(), err.as_str()), (Some(0), ""));
    assert_eq!(
        out,
        "[general]\ndaemon=false\nmethod=virtio-serial\npath=/dev/virtio-ports/org.qemu.guest_agent.0\n\
         pidfile=/var/run/qemu-ga.pid\nstatedir=/var/run\nverbose=false\nretry-path=false\nblock-rpcs=\nallow-rpcs=\n"
    );
    let (st, out, err) = run_agent_cli(
        &[
            "-D",
            "-m",
            "unix-listen",
            "-p",
            "/tmp/s",
            "-t",
            "/tmp/st",
            "-v",
            "-b",
            "guest-ping,guest-exec",
            "-a",
            "guest-info",
        ],
        &[("QGA_CONF", "/nonexistent/qemu-ga.conf")],
    );
    assert_eq!((st.code(), err.as_str()), (Some(0), ""));
    assert_eq!(
        out,
        "[general]\ndaemon=false\nmethod=unix-listen\npath=/tmp/s\npidfile=/var/run/qemu-ga.pid\n\
         statedir=/tmp/st\nverbose=true\nretry-path=false\nblock-rpcs=guest-exec,guest-ping\nallow-rpcs=guest-info\n"
    );
}

#[test]
fn config_errors() {
    let (st, out, err) = run_agent_cli(&["-c", "/nonexistent/qga.conf", "-D"], &[]);
    assert_eq!(st.code(), Some(1));
    assert_eq!(out, "");
    assert!(
        err.contains("error loading configuration from path: /nonexistent/qga.conf, No such file or directory"),
        "{:?}",
        err
    );
    let dir = TempDir::new("qga-conf");
    let conf = dir.join("bad.conf");
    std::fs::write(&conf, "[general]\nverbose=maybe\n").unwrap();
    let (st, out, err) = run_agent_cli(&["-D"], &[("QGA_CONF", conf.to_str().unwrap())]);
    assert_eq!(st.code(), Some(1));
    assert_eq!(out, "");
    assert!(err.contains(&format!("error loading configuration from path: {}, ", conf.display())), "{:?}", err);
}

#[test]
fn daemonize_pidfile_and_logfile() {
    let dir = TempDir::new("qga-daemon");
    let sock = dir.join("sock");
    let pidfile = dir.join("pid");
    let log = dir.join("log");
    let (st, _out, _err) = run_agent_cli(
        &[
            "-d",
            "-m",
            "unix-listen",
            "-p",
            sock.to_str().unwrap(),
            "-t",
            dir.path().to_str().unwrap(),
            "-f",
            pidfile.to_str().unwrap(),
            "-l",
            log.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(st.code(), Some(0), "the foreground process exits 0");
    assert!(wait_until(Duration::from_secs(60), || std::fs::read_to_string(&pidfile)
        .map(|s| !s.trim().is_empty())
        .unwrap_or(false)));
    let pid: u32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().expect("pid in pidfile");
    let gone = || matches!(proc_state(pid), None | Some('Z'));
    // make sure the daemon is stopped whatever happens below
    struct Kill(u32);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = qga_sys::process::kill(self.0 as i32, qga_sys::signal::SIGKILL);
        }
    }
    let _guard = Kill(pid);
    assert!(!gone(), "daemon {} not running", pid);
    assert_eq!(std::fs::read_link(format!("/proc/{}/cwd", pid)).unwrap(), std::path::Path::new("/"));
    let mut c = Conn::new(std::os::unix::net::UnixStream::connect(&sock).expect("connect to daemon"));
    c.ping();
    let st = c.exec_and_wait(json!({"path": "pwd", "capture-output": true}));
    assert_eq!(data_of(&st, "out-data"), b"/\n".to_vec(), "children run in /");
    drop(c);
    assert!(log.exists(), "logfile created");
    let _ = qga_sys::process::kill(pid as i32, qga_sys::signal::SIGTERM);
    assert!(wait_until(Duration::from_secs(60), gone), "daemon did not stop");
    assert!(wait_until(Duration::from_secs(60), || !pidfile.exists()), "pidfile removed on exit");
}
