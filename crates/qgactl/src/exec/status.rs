//! A guest-exec-status reply: its output to stdout/stderr, the
//! truncation warning, and the exit code qgactl ends with.

use std::io::{Stderr, Stdout, Write};

use base64::Engine;
use serde_json::Value;

/// qemu-ga's capture limit per stream (GUEST_EXEC_MAX_OUTPUT).
const QEMU_GA_CAPTURE: usize = 16 << 20;

pub(super) fn decode(v: &Value, key: &str) -> Vec<u8> {
    v.get(key)
        .and_then(Value::as_str)
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .unwrap_or_default()
}

/// Where program output goes (stdout and stderr); notices a closed stdout.
pub(super) struct Sink<O: Write = Stdout, E: Write = Stderr> {
    out: O,
    err: E,
    stdout_closed: bool,
}

impl Default for Sink {
    fn default() -> Self {
        Sink::new(std::io::stdout(), std::io::stderr())
    }
}

impl<O: Write, E: Write> Sink<O, E> {
    pub(super) fn new(out: O, err: E) -> Self {
        Sink { out, err, stdout_closed: false }
    }

    /// Writes a chunk; returns false when stdout just turned out closed.
    pub(super) fn write(&mut self, to_stderr: bool, data: &[u8]) -> bool {
        if data.is_empty() {
            return true;
        }
        if to_stderr {
            let _ = self.err.write_all(data);
            return true;
        }
        if self.stdout_closed {
            return true;
        }
        if self.out.write_all(data).and_then(|()| self.out.flush()).is_err() {
            self.stdout_closed = true;
            return false;
        }
        true
    }

    /// Writes the out/err data of a status reply; false if stdout closed.
    pub(super) fn write_status(&mut self, v: &Value) -> bool {
        let ok = self.write(false, &decode(v, "out-data"));
        self.write(true, &decode(v, "err-data"));
        ok
    }
}

#[derive(Default)]
pub(super) struct Final {
    pub(super) exited: bool,
    pub(super) exitcode: Option<i64>,
    pub(super) signal: Option<i64>,
    pub(super) timed_out: bool,
    /// Streamed stdin could not be read to its end.
    pub(super) input_error: Option<String>,
    /// `~.` ended the session.
    pub(super) escaped: bool,
}

impl Final {
    pub(super) fn from_status(v: &Value) -> Final {
        Final {
            exited: true,
            exitcode: v.get("exitcode").and_then(Value::as_i64),
            signal: v.get("signal").and_then(Value::as_i64),
            timed_out: v.get("timed-out").and_then(Value::as_bool).unwrap_or(false),
            input_error: None,
            escaped: false,
        }
    }
    /// qgactl's exit code for a program that ended (not timed out): 128+N
    /// for signal N, else its exit status (low 8 bits).
    pub(super) fn exit_code(&self) -> i32 {
        match (self.exitcode, self.signal) {
            (_, Some(s)) if (1..128).contains(&s) => 128 + s as i32,
            (Some(c), _) => (c & 0xff) as i32,
            _ => 0,
        }
    }
}

/// Whether the agent truncated the stream `data` (`flag`: its
/// *-truncated member). qemu-ga < 10.2 sends `false` exactly when it
/// truncated (qga-protocol.md §2.6), so a capture of exactly the cap
/// with the flag present counts as truncated too.
pub(super) fn truncated(v: &Value, flag: &str, data: &str) -> bool {
    match v.get(flag).and_then(Value::as_bool) {
        Some(true) => true,
        Some(false) => decode(v, data).len() == QEMU_GA_CAPTURE,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64(data: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(data)
    }

    /// stdout that the reader closed.
    struct Closed;

    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn status_output_goes_to_stdout_and_stderr() {
        let mut sink = Sink::new(Vec::new(), Vec::new());
        let v = json!({"exited": false, "out-data": b64(b"out\n\x00\xff"), "err-data": b64(b"err\n")});
        assert!(sink.write_status(&v));
        assert!(sink.write_status(&json!({"exited": false})));
        assert!(sink.write_status(&json!({"exited": true, "out-data": b64(b"more"), "err-data": "not base64!"})));
        assert_eq!(sink.out, b"out\n\x00\xffmore");
        assert_eq!(sink.err, b"err\n");
    }

    #[test]
    fn closed_stdout_is_reported_once() {
        let mut sink = Sink::new(Closed, Vec::new());
        let v = json!({"out-data": b64(b"x"), "err-data": b64(b"e")});
        assert!(!sink.write_status(&v), "the first failed write says so");
        assert!(sink.write_status(&v), "later output is dropped quietly");
        assert_eq!(sink.err, b"ee", "stderr is still written");
        // Nothing to write is never a failure.
        let mut sink = Sink::new(Closed, Vec::new());
        assert!(sink.write_status(&json!({"err-data": b64(b"e")})));
    }

    fn code(v: Value) -> i32 {
        Final::from_status(&v).exit_code()
    }

    #[test]
    fn exit_codes() {
        assert_eq!(code(json!({"exited": true, "exitcode": 0})), 0);
        assert_eq!(code(json!({"exited": true, "exitcode": 3})), 3);
        assert_eq!(code(json!({"exited": true, "exitcode": 255})), 255);
        // Only the low 8 bits of a status.
        assert_eq!(code(json!({"exited": true, "exitcode": 256 + 7})), 7);
        assert_eq!(code(json!({"exited": true, "exitcode": -1})), 255);
        assert_eq!(code(json!({"exited": true, "signal": 9})), 137);
        assert_eq!(code(json!({"exited": true, "signal": 15, "exitcode": 1})), 143);
        assert_eq!(code(json!({"exited": true, "signal": 13})), 141);
        // A signal number out of range: the exit status counts.
        assert_eq!(code(json!({"exited": true, "signal": 0, "exitcode": 4})), 4);
        assert_eq!(code(json!({"exited": true, "signal": 128, "exitcode": 5})), 5);
        assert_eq!(code(json!({"exited": true, "signal": 200})), 0);
        assert_eq!(code(json!({"exited": true})), 0);
        let f = Final::from_status(&json!({"exited": true, "exitcode": 0, "timed-out": true}));
        assert!(f.exited && f.timed_out && !f.escaped && f.input_error.is_none());
        assert!(!Final::from_status(&json!({"exited": true, "timed-out": "yes"})).timed_out);
    }

    #[test]
    fn truncation_flags() {
        let full = b64(&vec![b'x'; QEMU_GA_CAPTURE]);
        let short = b64(b"x");
        assert!(truncated(&json!({"out-truncated": true, "out-data": short}), "out-truncated", "out-data"));
        // qemu-ga < 10.2: `false` is sent exactly when it truncated, with the cap's worth of data.
        assert!(truncated(&json!({"err-truncated": false, "err-data": full}), "err-truncated", "err-data"));
        assert!(!truncated(&json!({"err-truncated": false, "err-data": short}), "err-truncated", "err-data"));
        assert!(!truncated(&json!({"out-data": full}), "out-truncated", "out-data"));
        assert!(!truncated(&json!({"out-truncated": true}), "err-truncated", "err-data"));
    }
}
