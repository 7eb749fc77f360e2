//! Requests: encoding and sending them, and reading a command's reply.

use std::time::Instant;

use serde_json::{json, Value};

use super::reply::{parse_reply, Reply};
use super::Session;
use crate::fail::{Failure, Result};

impl Session {
    /// Sends one request (compact JSON + "\n").
    pub fn send(&mut self, command: &str, args: Option<Value>) -> Result<()> {
        let mut req = json!({"execute": command});
        if let Some(a) = args {
            req["arguments"] = a;
        }
        let mut bytes = serde_json::to_vec(&req).unwrap_or_default();
        bytes.push(b'\n');
        let deadline = Instant::now() + self.reply_timeout;
        self.write_all(&bytes, deadline)
    }

    /// Sends a request whose arguments are `args` plus `key` = base64 of
    /// `data`, encoded straight into the request buffer.
    pub fn send_with_base64(&mut self, command: &str, args: Value, key: &str, data: &[u8]) -> Result<()> {
        use base64::Engine;
        let mut bytes = Vec::with_capacity(data.len() / 3 * 4 + 256);
        bytes.extend_from_slice(b"{\"execute\":");
        bytes.extend(serde_json::to_vec(command).unwrap_or_default());
        bytes.extend_from_slice(b",\"arguments\":");
        let obj = serde_json::to_vec(&args).unwrap_or_default();
        // `args` is a non-empty object: reopen it to append one member.
        bytes.extend_from_slice(&obj[..obj.len() - 1]);
        if obj.len() > 2 {
            bytes.push(b',');
        }
        bytes.extend(serde_json::to_vec(key).unwrap_or_default());
        bytes.extend_from_slice(b":\"");
        let start = bytes.len();
        bytes.resize(start + base64::encoded_len(data.len(), true).unwrap_or(0), 0);
        let n = base64::engine::general_purpose::STANDARD.encode_slice(data, &mut bytes[start..]).unwrap_or(0);
        bytes.truncate(start + n);
        bytes.extend_from_slice(b"\"}}\n");
        let deadline = Instant::now() + self.reply_timeout;
        self.write_all(&bytes, deadline)
    }

    /// Sends a request and returns its `return` value.
    pub fn call(&mut self, command: &str, args: Option<Value>) -> Result<Value> {
        self.send(command, args)?;
        self.reply(command)
    }

    /// Reads the reply to an already sent `command`.
    pub fn reply(&mut self, command: &str) -> Result<Value> {
        let line = self.read_line(self.reply_timeout).map_err(|f| context(f, command))?;
        match parse_reply(&line)? {
            Reply::Return(v) => Ok(v),
            Reply::Error { class, desc } => Err(Failure::agent(command, &class, &desc)),
        }
    }
}

fn context(f: Failure, command: &str) -> Failure {
    match f {
        Failure::Connection(m) => Failure::Connection(format!("{command}: {m}")),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::time::Duration;

    use super::super::test_pair;
    use super::*;

    fn sent(agent: &mut std::os::unix::net::UnixStream) -> String {
        let mut buf = vec![0u8; 1 << 16];
        let n = agent.read(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn requests_are_compact_json_lines() {
        let (mut s, mut agent) = test_pair(Duration::from_secs(5));
        s.send("guest-ping", None).unwrap();
        assert_eq!(sent(&mut agent), "{\"execute\":\"guest-ping\"}\n");
        s.send("guest-exec-status", Some(json!({"pid": 7, "wait": 30}))).unwrap();
        assert_eq!(sent(&mut agent), "{\"arguments\":{\"pid\":7,\"wait\":30},\"execute\":\"guest-exec-status\"}\n");
        s.send_with_base64("guest-exec-input", json!({"pid": 7, "eof": true}), "input-data", b"hi\n\xff").unwrap();
        assert_eq!(
            sent(&mut agent),
            "{\"execute\":\"guest-exec-input\",\"arguments\":{\"eof\":true,\"pid\":7,\"input-data\":\"aGkK/w==\"}}\n"
        );
        // Empty arguments: the one member is all there is.
        s.send_with_base64("guest-file-write", json!({}), "buf-b64", b"").unwrap();
        assert_eq!(sent(&mut agent), "{\"execute\":\"guest-file-write\",\"arguments\":{\"buf-b64\":\"\"}}\n");
    }

    #[test]
    fn call_returns_the_value_or_the_agents_error() {
        let (mut s, mut agent) = test_pair(Duration::from_secs(5));
        agent
            .write_all(
                b"{\"return\": {\"pid\": 3}}\n{\"error\": {\"class\": \"GenericError\", \"desc\": \"no\\nway\"}}\n",
            )
            .unwrap();
        assert_eq!(s.call("guest-exec", None).unwrap(), json!({"pid": 3}));
        let f = s.call("guest-exec-status", None).unwrap_err();
        assert!(matches!(&f, Failure::Agent { class, .. } if class == "GenericError"));
        assert_eq!((f.to_string().as_str(), f.exit_code()), ("guest-exec-status: no way", 125));
        // A malformed reply, then the agent goes away.
        agent.write_all(b"oops\n").unwrap();
        drop(agent);
        let f = s.reply("guest-ping").unwrap_err();
        assert_eq!((f.to_string().as_str(), f.exit_code()), ("unexpected reply from the agent: oops", 255));
        let f = s.reply("guest-ping").unwrap_err();
        assert_eq!(f.to_string(), "guest-ping: /test.sock: connection closed by the agent");
    }

    #[test]
    fn no_reply_within_the_reply_timeout() {
        let (mut s, mut agent) = test_pair(Duration::from_millis(50));
        agent.write_all(b"{\"return\": {}").unwrap();
        let f = s.reply("guest-info").unwrap_err();
        assert_eq!(
            (f.to_string().as_str(), f.exit_code()),
            ("guest-info: /test.sock: the agent did not reply within 0.05 s", 255)
        );
    }
}
