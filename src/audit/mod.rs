//! The audit trail (`--audit-log`, docs/audit.md): one JSON object per
//! line for every guest-exec (started, refused, ended), every
//! file-changing command and every refused client. A [`Record`] is built
//! where the event happens; the [`AuditLog`] queues it (bounded) and the
//! loop writes the queue in bounded steps, never while file systems are
//! frozen. qemu-ga has no audit trail (its closest is the unreleased
//! `-A/--audit`, which logs command names at info level).

mod sink;

use std::time::{SystemTime, UNIX_EPOCH};

use crate::json::{write_value, Segments, Value};
pub use sink::AuditLog;

/// Who sent the request: the identity of a connection, taken when it was
/// accepted (the same for every request on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientInfo {
    /// A unix-socket client: its `SO_PEERCRED` (uid `u32::MAX`, pid 0 if
    /// the kernel did not say).
    Unix { uid: u32, pid: i32 },
    /// A vsock client: the CID and port it connected from.
    Vsock { cid: u32, port: u32 },
    /// The virtio-serial port: the host, with no identity of its own.
    #[default]
    VirtioSerial,
    /// The isa-serial line: likewise.
    IsaSerial,
}

/// The largest record: a field that would take a record past it is
/// written as `null` and the record gets `"truncated": true`.
const MAX_RECORD: usize = 64 << 10;

/// One audit record being built: `Record::new(event, command, client)`,
/// then fields in the order they are to appear, then
/// [`AuditLog::record`]. `time` is when it was built; `seq` (and
/// `dropped`) are added by the log.
#[derive(Debug)]
pub struct Record {
    millis: u64,
    /// `"event":…,"client":{…},"command":…` and every field after it.
    body: Vec<u8>,
    truncated: bool,
}

/// Appends a value as the agent writes replies (through `Segments`, the
/// writer's one instance in the binary).
fn push_value(out: &mut Vec<u8>, v: &Value) {
    let mut s = Segments::new();
    write_value(&mut s, v);
    out.extend_from_slice(&s.to_vec());
}

fn push_str(out: &mut Vec<u8>, s: &str) {
    push_value(out, &Value::Str(s.to_string()));
}

impl Record {
    /// A record of `event` about `command` (empty: `null`) for `client`.
    pub fn new(event: &str, command: &str, client: &ClientInfo) -> Record {
        let millis = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let mut body = Vec::with_capacity(256);
        body.extend_from_slice(b"\"event\":");
        push_str(&mut body, event);
        let (transport, ids) = match *client {
            ClientInfo::Unix { uid, pid } => ("unix", Some(("uid", i64::from(uid), "pid", i64::from(pid)))),
            ClientInfo::Vsock { cid, port } => ("vsock", Some(("cid", i64::from(cid), "port", i64::from(port)))),
            ClientInfo::VirtioSerial => ("virtio-serial", None),
            ClientInfo::IsaSerial => ("isa-serial", None),
        };
        body.extend_from_slice(b",\"client\":{\"transport\":\"");
        body.extend_from_slice(transport.as_bytes());
        body.push(b'"');
        if let Some((k1, v1, k2, v2)) = ids {
            body.extend_from_slice(format!(",\"{k1}\":{v1},\"{k2}\":{v2}").as_bytes());
        }
        body.extend_from_slice(b"},\"command\":");
        if command.is_empty() {
            body.extend_from_slice(b"null");
        } else {
            push_str(&mut body, command);
        }
        Record { millis, body, truncated: false }
    }

    /// Appends `"key":` and what `write` writes, unless that takes the
    /// record past [`MAX_RECORD`] (then `"key":null`).
    fn field(mut self, key: &str, write: impl FnOnce(&mut Vec<u8>)) -> Record {
        let start = self.body.len();
        self.body.push(b',');
        push_str(&mut self.body, key);
        self.body.push(b':');
        let value_at = self.body.len();
        write(&mut self.body);
        if self.body.len() > MAX_RECORD {
            self.body.truncate(value_at);
            self.body.extend_from_slice(b"null");
            self.truncated = true;
            if self.body.len() > MAX_RECORD {
                self.body.truncate(start);
            }
        }
        self
    }

    pub fn str(self, key: &str, v: &str) -> Record {
        self.field(key, |b| push_str(b, v))
    }

    pub fn int(self, key: &str, v: i64) -> Record {
        self.field(key, |b| b.extend_from_slice(v.to_string().as_bytes()))
    }

    pub fn bool(self, key: &str, v: bool) -> Record {
        self.field(key, |b| b.extend_from_slice(if v { b"true" } else { b"false" }))
    }

    /// Any JSON value (an object's members in QEMU's QDict order, as
    /// replies are written).
    pub fn value(self, key: &str, v: Value) -> Record {
        self.field(key, |b| push_value(b, &v))
    }

    /// `"outcome"`: "ok", or the error's description.
    pub fn outcome(self, err: Option<&str>) -> Record {
        self.str("outcome", err.unwrap_or("ok"))
    }

    /// The record as one line, with its sequence number and the count of
    /// records dropped before it.
    fn line(&self, seq: u64, dropped: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 64);
        out.extend_from_slice(b"{\"time\":\"");
        out.extend_from_slice(rfc3339_millis(self.millis).as_bytes());
        out.extend_from_slice(format!("\",\"seq\":{seq},").as_bytes());
        if dropped > 0 {
            out.extend_from_slice(format!("\"dropped\":{dropped},").as_bytes());
        }
        out.extend_from_slice(&self.body);
        if self.truncated {
            out.extend_from_slice(b",\"truncated\":true");
        }
        out.extend_from_slice(b"}\n");
        out
    }
}

/// UTC time as RFC 3339 with milliseconds (`2026-01-31T12:34:56.789Z`);
/// the calendar from days since the epoch (Howard Hinnant's
/// `civil_from_days`), so no time zone or libc is involved.
fn rfc3339_millis(millis: u64) -> String {
    let secs = millis / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        millis % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_format() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_millis(951_782_400_001), "2000-02-29T00:00:00.001Z");
        assert_eq!(rfc3339_millis(1_767_225_599_999), "2025-12-31T23:59:59.999Z");
        assert_eq!(rfc3339_millis(4_102_444_800_000), "2100-01-01T00:00:00.000Z");
    }

    #[test]
    fn record_line() {
        let c = ClientInfo::Unix { uid: 1000, pid: 42 };
        let r = Record::new("command", "guest-file-open", &c).str("path", "/a\"b").int("handle", 7).bool("x", true);
        let line = String::from_utf8(r.line(3, 0)).unwrap();
        assert!(line.ends_with(
            r#""seq":3,"event":"command","client":{"transport":"unix","uid":1000,"pid":42},"command":"guest-file-open","path":"/a\"b","handle":7,"x":true}
"#
        ));
        assert!(line.starts_with("{\"time\":\"") && line.contains("Z\",\"seq\""));
        let v = Record::new("e", "c", &ClientInfo::Vsock { cid: 3, port: 1024 }).line(1, 5);
        let v = String::from_utf8(v).unwrap();
        assert!(v.contains(r#""seq":1,"dropped":5,"event":"e","client":{"transport":"vsock","cid":3,"port":1024},"#));
        let big = "x".repeat(MAX_RECORD);
        let t = Record::new("e", "c", &ClientInfo::IsaSerial).str("argv", &big).int("argc", 1);
        let t = String::from_utf8(t.line(2, 0)).unwrap();
        assert!(t.ends_with(
            r#""command":"c","argv":null,"argc":1,"truncated":true}
"#
        ));
    }
}
