//! guest-file-* over a real socket: QEMU's test-qga.c file-ops and
//! file-write-read cases, qemu-ga's argument checks and error texts,
//! handle persistence, modes, FIFOs and the open-handle limit.

mod commands_common;

use commands_common::{Agent, Opts, TempDir};
use std::os::unix::fs::PermissionsExt;

const HELLO_B64: &str = "SGVsbG8gV29ybGQhCgA="; // "Hello World!\n\0"

fn open(a: &mut Agent, path: &str, mode: &str) -> i64 {
    a.ok("guest-file-open", &format!("{{\"path\":\"{path}\",\"mode\":\"{mode}\"}}")).as_i64().unwrap()
}

#[test]
fn test_qga_file_ops() {
    let mut a = Agent::start();
    let h = open(&mut a, "foo", "w+");
    assert_eq!(h, 1000, "first handle on a fresh state dir");
    assert_eq!(
        a.raw(&format!(
            "{{\"execute\":\"guest-file-write\",\"arguments\":{{\"handle\":{h},\"buf-b64\":\"{HELLO_B64}\"}}}}"
        )),
        r#"{"return": {"count": 14, "eof": false}}"#
    );
    assert_eq!(a.ok("guest-file-flush", &format!("{{\"handle\":{h}}}")), serde_json::json!({}));
    assert_eq!(a.ok("guest-file-close", &format!("{{\"handle\":{h}}}")), serde_json::json!({}));
    let on_disk = std::fs::read(a.dir.join("foo")).unwrap();
    assert_eq!(on_disk, b"Hello World!\n\0");
    // New files are 0666 whatever the umask.
    let mode = std::fs::metadata(a.dir.join("foo")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o666);

    let h = open(&mut a, "foo", "r");
    assert_eq!(h, 1001);
    let read = |a: &mut Agent| a.raw(&format!("{{\"execute\":\"guest-file-read\",\"arguments\":{{\"handle\":{h}}}}}"));
    assert_eq!(read(&mut a), format!(r#"{{"return": {{"count": 14, "buf-b64": "{HELLO_B64}", "eof": true}}}}"#));
    assert_eq!(read(&mut a), r#"{"return": {"count": 0, "buf-b64": "", "eof": true}}"#);
    assert_eq!(
        a.raw(&format!(
            "{{\"execute\":\"guest-file-seek\",\"arguments\":{{\"handle\":{h},\"offset\":6,\"whence\":\"set\"}}}}"
        )),
        r#"{"return": {"eof": false, "position": 6}}"#
    );
    let r = a.ok("guest-file-read", &format!("{{\"handle\":{h}}}"));
    assert_eq!(r["count"], 8);
    assert_eq!(r["eof"], true);
    assert_eq!(r["buf-b64"], "V29ybGQhCgA=");
    a.ok("guest-file-close", &format!("{{\"handle\":{h}}}"));
    a.stop();
}

#[test]
fn test_qga_file_write_read() {
    let mut a = Agent::start();
    let h = open(&mut a, "foo", "w+");
    let w = a.ok("guest-file-write", &format!("{{\"handle\":{h},\"buf-b64\":\"{HELLO_B64}\"}}"));
    assert_eq!(w, serde_json::json!({"count": 14, "eof": false}));
    // Read right after the write: implicit flush, position at the end.
    let r = a.ok("guest-file-read", &format!("{{\"handle\":{h}}}"));
    assert_eq!(r, serde_json::json!({"count": 0, "buf-b64": "", "eof": true}));
    let s = a.ok("guest-file-seek", &format!("{{\"handle\":{h},\"offset\":0,\"whence\":\"set\"}}"));
    assert_eq!(s, serde_json::json!({"position": 0, "eof": false}));
    let r = a.ok("guest-file-read", &format!("{{\"handle\":{h}}}"));
    assert_eq!(r, serde_json::json!({"count": 14, "buf-b64": HELLO_B64, "eof": true}));
    a.ok("guest-file-close", &format!("{{\"handle\":{h}}}"));
    a.stop();
}

#[test]
fn read_write_switching_and_whence_forms() {
    let mut a = Agent::start();
    std::fs::write(a.dir.join("data"), b"0123456789").unwrap();
    let h = open(&mut a, "data", "r+");
    let args = |rest: &str| format!("{{\"handle\":{h}{rest}}}");
    assert_eq!(a.ok("guest-file-read", &args(",\"count\":4"))["buf-b64"], "MDEyMw==");
    // Write after read: implicit fseek(0, SEEK_CUR), so it lands at offset 4.
    assert_eq!(a.ok("guest-file-write", &args(",\"buf-b64\":\"QUJD\"")), serde_json::json!({"count": 3, "eof": false}));
    assert_eq!(a.ok("guest-file-seek", &args(",\"offset\":0,\"whence\":1"))["position"], 7);
    assert_eq!(a.ok("guest-file-seek", &args(",\"offset\":-2,\"whence\":2"))["position"], 8);
    assert_eq!(a.ok("guest-file-seek", &args(",\"offset\":1,\"whence\":\"cur\""))["position"], 9);
    assert_eq!(a.ok("guest-file-seek", &args(",\"offset\":0,\"whence\":\"end\""))["position"], 10);
    // count 0 reads nothing and is not EOF; count limits the write.
    assert_eq!(
        a.ok("guest-file-read", &args(",\"count\":0")),
        serde_json::json!({"count": 0, "buf-b64": "", "eof": false})
    );
    assert_eq!(a.ok("guest-file-write", &args(",\"buf-b64\":\"WFla\",\"count\":1"))["count"], 1);
    a.ok("guest-file-close", &args(""));
    assert_eq!(std::fs::read(a.dir.join("data")).unwrap(), b"0123ABC789X");
    a.stop();
}

#[test]
fn argument_checks_and_error_texts() {
    let mut a = Agent::start();
    let cases: &[(&str, &str, &str)] = &[
        ("guest-file-open", "{}", "Parameter 'path' is missing"),
        ("guest-file-open", r#"{"path":1}"#, "Invalid parameter type for 'path', expected: string"),
        ("guest-file-open", r#"{"path":"foo","mode":null}"#, "Invalid parameter type for 'mode', expected: string"),
        ("guest-file-open", r#"{"path":"foo","mode":"rw"}"#, "invalid file open mode 'rw'"),
        ("guest-file-open", r#"{"path":"foo","x":1}"#, "Parameter 'x' is unexpected"),
        (
            "guest-file-open",
            r#"{"path":"/nonexistent/foo"}"#,
            "failed to open file '/nonexistent/foo' (mode: 'r'): No such file or directory",
        ),
        ("guest-file-open", r#"{"path":".","mode":"w"}"#, "failed to open file '.' (mode: 'w'): Is a directory"),
        ("guest-file-read", r#"{"handle":5}"#, "handle '5' has not been found"),
        ("guest-file-read", r#"{"handle":"5"}"#, "Invalid parameter type for 'handle', expected: integer"),
        ("guest-file-read", r#"{"handle":5,"count":1.5}"#, "Invalid parameter type for 'count', expected: integer"),
        ("guest-file-close", r#"{"handle":5}"#, "handle '5' has not been found"),
        ("guest-file-flush", r#"{}"#, "Parameter 'handle' is missing"),
        ("guest-file-write", r#"{"handle":5}"#, "Parameter 'buf-b64' is missing"),
        ("guest-file-write", r#"{"handle":5,"buf-b64":"QUJD"}"#, "handle '5' has not been found"),
        ("guest-file-seek", r#"{"handle":5,"offset":0}"#, "Parameter 'whence' is missing"),
        (
            "guest-file-seek",
            r#"{"handle":5,"offset":0,"whence":"bad"}"#,
            "Parameter 'whence' does not accept value 'bad'",
        ),
        (
            "guest-file-seek",
            r#"{"handle":5,"offset":0,"whence":1.5}"#,
            "Invalid parameter type for 'whence', expected: integer",
        ),
        (
            "guest-file-seek",
            r#"{"handle":5,"offset":0,"whence":true}"#,
            "Invalid parameter type for 'whence', expected: GuestFileWhence",
        ),
        ("guest-file-seek", r#"{"handle":5,"offset":0,"whence":7}"#, "handle '5' has not been found"),
    ];
    for (cmd, args, want) in cases {
        assert_eq!(a.desc(cmd, args), *want, "{cmd} {args}");
    }
    let h = open(&mut a, "foo", "w+");
    let cases = [
        (format!(r#"{{"handle":{h},"count":-1}}"#), "guest-file-read", "value '-1' is invalid for argument count"),
        (
            format!(r#"{{"handle":{h},"count":50331649}}"#),
            "guest-file-read",
            "value '50331649' is invalid for argument count",
        ),
        (
            format!(r#"{{"handle":{h},"buf-b64":"QUJD","count":4}}"#),
            "guest-file-write",
            "value '4' is invalid for argument count",
        ),
        (
            format!(r#"{{"handle":{h},"buf-b64":"QUJD","count":-1}}"#),
            "guest-file-write",
            "value '-1' is invalid for argument count",
        ),
        (
            format!(r#"{{"handle":{h},"buf-b64":"QU*J"}}"#),
            "guest-file-write",
            "Base64 data contains invalid characters",
        ),
        (format!(r#"{{"handle":{h},"offset":0,"whence":3}}"#), "guest-file-seek", "invalid whence code 3"),
        (
            format!(r#"{{"handle":{h},"offset":-100,"whence":1}}"#),
            "guest-file-seek",
            "failed to seek file: Invalid argument",
        ),
    ];
    for (args, cmd, want) in &cases {
        assert_eq!(a.desc(cmd, args), *want, "{cmd} {args}");
    }
    // The maximum count is accepted.
    let r = a.ok("guest-file-read", &format!(r#"{{"handle":{h},"count":50331648}}"#));
    assert_eq!(r["count"], 0);
    a.ok("guest-file-close", &format!(r#"{{"handle":{h}}}"#));
    assert_eq!(a.desc("guest-file-close", &format!(r#"{{"handle":{h}}}"#)), format!("handle '{h}' has not been found"));
    // Reading a write-only stream / a directory.
    let w = open(&mut a, "wo", "w");
    assert_eq!(a.desc("guest-file-read", &format!(r#"{{"handle":{w}}}"#)), "failed to read file: Bad file descriptor");
    let d = open(&mut a, ".", "r");
    assert_eq!(a.desc("guest-file-read", &format!(r#"{{"handle":{d}}}"#)), "failed to read file: Is a directory");
    a.stop();
}

#[test]
fn fifo_never_blocks_the_loop() {
    let mut a = Agent::start();
    let fifo = a.dir.join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(qga_sys::fs::mkfifo(&c, 0o600), Ok(()));
    // Opening a FIFO for reading with no writer does not block (O_NONBLOCK).
    let h = open(&mut a, "fifo", "r");
    assert_eq!(
        a.ok("guest-file-read", &format!(r#"{{"handle":{h}}}"#)),
        serde_json::json!({"count": 0, "buf-b64": "", "eof": true})
    );
    assert_eq!(
        a.desc("guest-file-seek", &format!(r#"{{"handle":{h},"offset":0,"whence":0}}"#)),
        "failed to seek file: Illegal seek"
    );
    // A writer end while the reader is open; data then arrives.
    let w = open(&mut a, "fifo", "w");
    a.ok("guest-file-write", &format!(r#"{{"handle":{w},"buf-b64":"QUJD"}}"#));
    a.ok("guest-file-flush", &format!(r#"{{"handle":{w}}}"#));
    // Exactly what is there: fread() stops without another read().
    let r = a.ok("guest-file-read", &format!(r#"{{"handle":{h},"count":3}}"#));
    assert_eq!(r["buf-b64"], "QUJD");
    // Empty FIFO with a writer: EAGAIN, reported at once (as qemu-ga, a
    // read asking for more than is buffered fails the same way).
    assert_eq!(
        a.desc("guest-file-read", &format!(r#"{{"handle":{h}}}"#)),
        "failed to read file: Resource temporarily unavailable"
    );
    a.ok("guest-ping", "{}");
    a.stop();
}

#[test]
fn handles_persist_across_restarts() {
    let dir = TempDir::new("persist");
    let keep = dir.path().to_path_buf();
    std::fs::write(keep.join("qga.state"), "[global]\nfd_counter=4242\n").unwrap();
    let mut a = Agent::start_with(Opts { dir: Some(dir), ..Default::default() });
    assert_eq!(open(&mut a, "x", "w"), 4242);
    assert_eq!(std::fs::read_to_string(keep.join("qga.state")).unwrap(), "[global]\nfd_counter=4243\n");
    assert_eq!(open(&mut a, "x", "a"), 4243);
    let dir = a.stop_keep_dir();
    let mut b = Agent::start_with(Opts { dir: Some(dir), ..Default::default() });
    assert_eq!(open(&mut b, "x", "r"), 4244, "never reused after a restart");
    // Handles of the previous instance are gone.
    assert_eq!(b.desc("guest-file-read", r#"{"handle":4242}"#), "handle '4242' has not been found");
    b.stop();
}

#[test]
fn open_handle_limit() {
    if commands_common::is_reference() {
        return commands_common::skip::not_applicable("reference agent: the handle limit is qga's");
    }
    let mut a = Agent::start();
    std::fs::write(a.dir.join("f"), b"x").unwrap();
    let mut opened = Vec::new();
    let mut failure = None;
    for _ in 0..1100 {
        let r = a.cmd(r#"{"execute":"guest-file-open","arguments":{"path":"f"}}"#);
        match r.get("return") {
            Some(h) => opened.push(h.as_i64().unwrap()),
            None => {
                failure = Some(r["error"]["desc"].as_str().unwrap().to_string());
                break;
            }
        }
    }
    // Exactly at the boundary: 1024 open, the 1025th refused.
    assert_eq!(opened.len(), 1024, "1024 handles open at once, then the limit");
    assert_eq!(failure.as_deref(), Some("failed to open file 'f' (mode: 'r'): Too many open files"));
    // An invalid mode is still reported as such at the limit.
    assert_eq!(a.desc("guest-file-open", r#"{"path":"f","mode":"z"}"#), "invalid file open mode 'z'");
    a.ok("guest-file-close", &format!(r#"{{"handle":{}}}"#, opened[0]));
    let h = open(&mut a, "f", "r");
    assert!(h > *opened.last().unwrap());
    a.stop();
}

#[test]
fn append_and_plus_modes() {
    let mut a = Agent::start();
    std::fs::write(a.dir.join("log"), b"abc").unwrap();
    let h = open(&mut a, "log", "a+");
    a.ok("guest-file-write", &format!(r#"{{"handle":{h},"buf-b64":"WFla"}}"#));
    a.ok("guest-file-seek", &format!(r#"{{"handle":{h},"offset":0,"whence":"set"}}"#));
    let r = a.ok("guest-file-read", &format!(r#"{{"handle":{h}}}"#));
    assert_eq!(r["buf-b64"], "YWJjWFla");
    // Existing files keep their mode; "w" truncates.
    std::fs::set_permissions(a.dir.join("log"), std::fs::Permissions::from_mode(0o600)).unwrap();
    for m in ["wb", "w+b", "ab", "ab+", "a+b", "rb", "rb+", "r+b"] {
        let h = open(&mut a, "log", m);
        a.ok("guest-file-close", &format!(r#"{{"handle":{h}}}"#));
    }
    assert_eq!(std::fs::metadata(a.dir.join("log")).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read(a.dir.join("log")).unwrap(), b"");
    a.stop();
}
