//! Drive the agent with a client library not written here: the `qapi`
//! crate's synchronous QGA client (qapi 0.15 + qapi-qga 0.13, the Rust
//! client used by e.g. vmtest). It writes compact JSON lines and parses
//! each reply line with serde_json.
#[macro_use]
mod common;

use common::*;
use qapi::qga;
use qapi::{ErrorClass, ExecuteError, Qga};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

fn client(agent: &Agent) -> Qga<qapi::Stream<std::io::BufReader<UnixStream>, UnixStream>> {
    let conn = agent.connect();
    let s = conn.stream;
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let r = s.try_clone().unwrap();
    Qga::new(qapi::Stream::new(std::io::BufReader::new(r), s))
}

#[test]
fn sync_info_ping() {
    let agent = AgentBuilder::new().spawn();
    let mut qga = client(&agent);
    qga.guest_sync(0x1234_5678).expect("guest-sync handshake");
    qga.guest_sync(-7).expect("guest-sync with a negative id");
    qga.execute(&qga::guest_ping {}).expect("guest-ping");
    let info = qga.execute(&qga::guest_info {}).expect("guest-info");
    if is_reference_agent() {
        assert!(info.version.starts_with("10."), "{}", info.version);
    } else {
        assert_eq!(info.version, QGA_VERSION);
    }
    let names: Vec<&str> = info.supported_commands.iter().map(|c| c.name.as_str()).collect();
    for n in ["guest-exec", "guest-exec-status", "guest-sync", "guest-ping", "guest-info"] {
        assert!(names.contains(&n), "{} missing", n);
    }
    assert!(info.supported_commands.iter().all(|c| c.enabled));
}

#[test]
fn exec_round_trip() {
    let agent = AgentBuilder::new().spawn();
    let mut qga = client(&agent);
    qga.guest_sync(42).unwrap();
    let r = qga
        .execute(&qga::guest_exec {
            path: "sh".into(),
            arg: Some(vec!["-c".into(), "cat; echo err >&2; exit 5".into()]),
            env: None,
            input_data: Some(b"from stdin\n".to_vec()),
            capture_output: Some(qga::GuestExecCaptureOutput::mode(qga::GuestExecCaptureOutputMode::separated)),
        })
        .expect("guest-exec");
    assert!(r.pid > 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    let st = loop {
        let st = qga.execute(&qga::guest_exec_status { pid: r.pid }).expect("guest-exec-status");
        if st.exited {
            break st;
        }
        assert!(Instant::now() < deadline, "did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(st.exitcode, Some(5));
    assert_eq!(st.signal, None);
    assert_eq!(st.out_data.as_deref(), Some(&b"from stdin\n"[..]));
    assert_eq!(st.err_data.as_deref(), Some(&b"err\n"[..]));
    if !is_reference_agent() {
        assert_eq!(st.out_truncated, Some(false));
        assert_eq!(st.err_truncated, Some(false));
    }

    // bool flag form and merged mode
    let r = qga
        .execute(&qga::guest_exec {
            path: "sh".into(),
            arg: Some(vec!["-c".into(), "echo a; echo b >&2".into()]),
            env: Some(vec![]),
            input_data: None,
            capture_output: Some(qga::GuestExecCaptureOutput::mode(qga::GuestExecCaptureOutputMode::merged)),
        })
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let st = loop {
        let st = qga.execute(&qga::guest_exec_status { pid: r.pid }).unwrap();
        if st.exited {
            break st;
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(st.out_data.as_deref(), Some(&b"a\nb\n"[..]));
    assert!(st.err_data.is_none());

    // the result was consumed: a typed error comes back
    match qga.execute(&qga::guest_exec_status { pid: r.pid }) {
        Err(ExecuteError::Qapi(e)) => {
            assert!(matches!(e.class, ErrorClass::GenericError));
            assert!(e.desc.contains("does not exist"), "{}", e.desc);
        }
        other => panic!("expected an error, got {:?}", other.map(|s| s.exited)),
    }
    // a spawn failure is a typed error too
    match qga.execute(&qga::guest_exec {
        path: "/bin/invalid-cmd42".into(),
        arg: None,
        env: None,
        input_data: None,
        capture_output: Some(qga::GuestExecCaptureOutput::flag(true)),
    }) {
        Err(ExecuteError::Qapi(e)) => {
            assert!(matches!(e.class, ErrorClass::GenericError));
            assert_eq!(
                e.desc,
                "Failed to execute child process \u{201c}/bin/invalid-cmd42\u{201d} (No such file or directory)"
            );
        }
        other => panic!("expected an error, got {:?}", other.map(|r| r.pid)),
    }
    qga.guest_sync(43).unwrap();
}

#[test]
fn disabled_command_is_command_not_found() {
    let agent = AgentBuilder::new().args(["-b", "guest-exec"]).spawn();
    let mut qga = client(&agent);
    qga.guest_sync(1).unwrap();
    match qga.execute(&qga::guest_exec {
        path: "true".into(),
        arg: None,
        env: None,
        input_data: None,
        capture_output: None,
    }) {
        Err(ExecuteError::Qapi(e)) => {
            assert!(matches!(e.class, ErrorClass::CommandNotFound));
            assert_eq!(e.desc, "Command guest-exec has been disabled: the command is not allowed");
        }
        other => panic!("expected an error, got {:?}", other.map(|r| r.pid)),
    }
    let info = qga.execute(&qga::guest_info {}).unwrap();
    let e = info.supported_commands.iter().find(|c| c.name == "guest-exec").unwrap();
    assert!(!e.enabled);
    assert!(e.success_response);
}
