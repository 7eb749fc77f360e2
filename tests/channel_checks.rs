//! The channel checks (`--allow-unix-uids`, `--allow-vsock-cids`): a
//! client outside the lists is closed at once, without a reply, logged and
//! audited (`client-refused`); the clients inside are served as before.
//!
//! The refused unix client connects from a process of another user: this
//! test binary started again (`connect_as_other_user`) with the uid of
//! `nobody` (std's `Command::uid`; needs root). vsock needs a loopback
//! transport (`vsock_loopback`) to connect to the agent from the same
//! machine; without one the test is recorded as a skip and the decision
//! is covered by the unit test `channel::tests::client_checks`.

mod common;

use common::{skip, AgentBuilder};
use qga_sys::poll::{poll, PollFd, POLLIN, POLLOUT};
use serde_json::Value;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::{Duration, Instant};

const NOBODY: u32 = 65534;
const CHILD_ENV: &str = "QGA_TEST_CONNECT_AS_CHILD";

/// Not a test of its own: the client that `unix_uid_checks` starts as
/// another user. It waits for the agent to close the connection (refused)
/// or, if nothing comes, sends guest-ping and prints the reply (served).
#[test]
fn connect_as_other_user() {
    let Some(sock) = std::env::var_os(CHILD_ENV) else { return };
    let mut s = match UnixStream::connect(&sock) {
        Ok(s) => s,
        Err(e) => return println!("RESULT connect failed: {e}"),
    };
    s.set_read_timeout(Some(Duration::from_millis(1500))).unwrap();
    let mut buf = [0u8; 256];
    match s.read(&mut buf) {
        Ok(0) => return println!("RESULT closed"),
        Ok(n) => return println!("RESULT unasked data: {}", String::from_utf8_lossy(&buf[..n])),
        Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {}
        Err(e) => return println!("RESULT error {:?}", e.kind()),
    }
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"{\"execute\":\"guest-ping\"}\n").unwrap();
    let n = s.read(&mut buf).unwrap_or(0);
    println!("RESULT served {}", String::from_utf8_lossy(&buf[..n]).trim());
}

/// Runs [`connect_as_other_user`] as `uid` against `sock`: its RESULT line.
fn connect_as(uid: u32, sock: &Path) -> String {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "connect_as_other_user", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, sock)
        .uid(uid)
        .gid(uid)
        .output()
        .expect("start the client as another user");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find_map(|l| l.split_once("RESULT ").map(|(_, r)| r.to_string()))
        .unwrap_or_else(|| panic!("no result from the client: {text}\n{}", String::from_utf8_lossy(&out.stderr)))
}

/// Lets another user reach the agent's socket.
fn open_up(dir: &Path, sock: &Path) {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(sock, std::fs::Permissions::from_mode(0o777)).unwrap();
}

fn audit_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line is not JSON ({e}): {l}")))
        .collect()
}

/// Waits (bounded) for the audit file to hold `n` records.
fn wait_records(path: &Path, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = audit_lines(path);
        if v.len() >= n || Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn unix_uid_checks() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    if common::is_reference_agent() {
        return skip::not_applicable("channel checks are a qga extension");
    }
    if !skip::is_root() {
        return skip::missing("root (to connect as another user)");
    }
    let (agent, mut allowed) =
        AgentBuilder::new().args(["--allow-unix-uids=root", "--audit-log=audit.log", "--max-clients=4"]).start();
    allowed.ping();
    open_up(agent.dir(), agent.sock_path());
    // nobody is refused: closed without a reply, nothing read from it.
    assert_eq!(connect_as(NOBODY, agent.sock_path()), "closed");
    // The allowed client is still served, on its old connection and a new one.
    allowed.ping();
    agent.connect().ping();
    let records = wait_records(&agent.dir().join("audit.log"), 1);
    assert_eq!(records.len(), 1, "{records:?}");
    let r = &records[0];
    assert_eq!(r["event"], "client-refused");
    assert_eq!(r["command"], Value::Null);
    assert_eq!(r["client"]["transport"], "unix");
    assert_eq!(r["client"]["uid"], NOBODY);
    assert!(r["client"]["pid"].as_i64().unwrap() > 0);
    assert_eq!(r["seq"], 1);
    assert!(agent.stderr_log().contains("refused client"), "{}", agent.stderr_log());
    drop(allowed);
    agent.stop();

    // Listed by number, nobody is served (and root, unlisted, is refused).
    let agent = AgentBuilder::new().arg(format!("--allow-unix-uids={NOBODY}")).spawn();
    // The socket appears before it may be opened up.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !agent.sock_path().exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    open_up(agent.dir(), agent.sock_path());
    assert_eq!(connect_as(NOBODY, agent.sock_path()), r#"served {"return": {}}"#);
    let mut root = UnixStream::connect(agent.sock_path()).unwrap();
    root.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut buf = Vec::new();
    assert_eq!(root.read_to_end(&mut buf).unwrap(), 0);
    agent.stop();
}

/// A vsock client from CID 1 (the local machine, through vsock_loopback):
/// refused when only the host (2) is allowed, served when 1 is listed.
#[test]
fn vsock_cid_checks() {
    if common::is_reference_agent() {
        return skip::not_applicable("channel checks are a qga extension");
    }
    let port = 20000 + std::process::id() % 20000;
    let start = |allow: &str| {
        let dir = common::TempDir::new("vsock");
        let agent = AgentBuilder::new()
            .no_channel_args()
            .args(["-m", "vsock-listen", "-p", &format!("4294967295:{port}"), "-t"])
            .arg(dir.path())
            .arg("-f")
            .arg(dir.join("pid"))
            .arg(format!("--allow-vsock-cids={allow}"))
            .spawn();
        (agent, dir)
    };
    let (agent, _dir) = start("2");
    let Some(c) = vsock_connect(1, port) else {
        agent.stop();
        return skip::not_applicable(
            "no vsock loopback here (vsock_loopback): the CID decision is unit-tested \
             (channel::tests::client_checks)",
        );
    };
    assert_eq!(read_reply(&c), (Vec::new(), true), "refused: closed without a reply");
    agent.stop();
    let (agent, _dir) = start("1,2");
    let c = vsock_connect(1, port).expect("vsock loopback worked a moment ago");
    qga_sys::socket::send(c.as_fd(), b"{\"execute\":\"guest-ping\"}\n").unwrap();
    assert_eq!(read_reply(&c).0, b"{\"return\": {}}\n");
    agent.stop();
}

/// What a (non-blocking) socket receives within 10 s, up to a line or
/// end of file; true at end of file.
fn read_reply(fd: &OwnedFd) -> (Vec<u8>, bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut out = Vec::new();
    let mut buf = [0u8; 256];
    while Instant::now() < deadline && !out.ends_with(b"\n") {
        let mut p = [PollFd::new(fd.as_raw_fd(), POLLIN)];
        let _ = poll(&mut p, 100);
        match qga_sys::fd::read(fd.as_fd(), &mut buf) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.0 == libc::EAGAIN => {}
            Err(e) if e.0 == libc::ECONNRESET => return (out, true),
            Err(e) => panic!("read: {e}"),
        }
    }
    (out, false)
}

/// A vsock connection to CID:PORT, retried while the agent starts (None
/// when vsock cannot connect locally at all).
fn vsock_connect(cid: u32, port: u32) -> Option<OwnedFd> {
    use qga_sys::socket::{connect_vsock, stream_socket, take_error, Family};
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let fd = stream_socket(Family::Vsock).ok()?;
        let r = match connect_vsock(fd.as_fd(), cid, port) {
            Err(e) if e.0 == libc::EINPROGRESS || e.0 == libc::EINTR => {
                let mut p = [PollFd::new(fd.as_raw_fd(), POLLOUT)];
                match poll(&mut p, 2000) {
                    Ok(1) => take_error(fd.as_fd()),
                    _ => return None,
                }
            }
            other => other,
        };
        match r {
            Ok(()) => return Some(fd),
            Err(e) if (e.0 == libc::ECONNRESET || e.0 == libc::ECONNREFUSED) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(_) => return None,
        }
    }
}
