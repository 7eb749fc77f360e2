//! Decoding a reply line: `return` or qemu-ga's `{class, desc}` error.

use serde_json::Value;

use crate::fail::{Failure, Result};

/// A decoded reply.
pub enum Reply {
    Return(Value),
    Error { class: String, desc: String },
}

/// Decodes a reply line.
pub fn parse_reply(line: &[u8]) -> Result<Reply> {
    let bad = || {
        let text = String::from_utf8_lossy(line);
        let short: String = text.chars().take(200).collect();
        Failure::Connection(format!("unexpected reply from the agent: {short}"))
    };
    let v: Value = serde_json::from_slice(line).map_err(|_| bad())?;
    if let Some(r) = v.get("return") {
        return Ok(Reply::Return(r.clone()));
    }
    if let Some(e) = v.get("error") {
        let class = e.get("class").and_then(Value::as_str).unwrap_or("GenericError").to_string();
        let desc = e.get("desc").and_then(Value::as_str).unwrap_or("(no description)").to_string();
        return Ok(Reply::Error { class, desc });
    }
    Err(bad())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fail::{EXIT_AGENT, EXIT_CONNECTION};

    fn ret(line: &str) -> Value {
        match parse_reply(line.as_bytes()) {
            Ok(Reply::Return(v)) => v,
            Ok(Reply::Error { class, desc }) => panic!("error {class}: {desc}"),
            Err(f) => panic!("{f}"),
        }
    }

    fn err(line: &str) -> (String, String) {
        match parse_reply(line.as_bytes()) {
            Ok(Reply::Error { class, desc }) => (class, desc),
            Ok(Reply::Return(v)) => panic!("return {v}"),
            Err(f) => panic!("{f}"),
        }
    }

    fn bad(line: &[u8]) -> String {
        match parse_reply(line) {
            Err(f @ Failure::Connection(_)) => {
                assert_eq!(f.exit_code(), EXIT_CONNECTION);
                f.to_string()
            }
            Err(f) => panic!("{f:?}"),
            Ok(_) => panic!("parsed"),
        }
    }

    #[test]
    fn returns() {
        assert_eq!(ret(r#"{"return": {"pid": 12}}"#), serde_json::json!({"pid": 12}));
        assert_eq!(ret(r#"{"return": 5, "id": "x"}"#), serde_json::json!(5));
        assert_eq!(ret(r#"{"return": null}"#), Value::Null);
        // A return wins over an error member.
        assert_eq!(ret(r#"{"error": {}, "return": []}"#), serde_json::json!([]));
    }

    #[test]
    fn errors_and_their_messages() {
        let (class, desc) =
            err(r#"{"error": {"class": "CommandNotFound", "desc": "The command x has not been found"}}"#);
        assert_eq!((class.as_str(), desc.as_str()), ("CommandNotFound", "The command x has not been found"));
        let f = Failure::agent("x", &class, &desc);
        assert_eq!(f.exit_code(), EXIT_AGENT);
        assert_eq!(f.to_string(), "x: The command x has not been found (CommandNotFound)");
        let (class, desc) = err(
            r#"{"error": {"desc": "Guest agent command failed, error was 'Failed to execute child process \u201cnope\u201d'\n"}}"#,
        );
        assert_eq!(class, "GenericError");
        // GenericError is not named; the message stays on one line.
        assert_eq!(
            Failure::agent("guest-exec", &class, &desc).to_string(),
            "guest-exec: Guest agent command failed, error was 'Failed to execute child process \u{201c}nope\u{201d}'"
        );
        assert_eq!(err(r#"{"error": {"class": 7}}"#), ("GenericError".to_string(), "(no description)".to_string()));
        assert_eq!(err(r#"{"error": "odd"}"#), ("GenericError".to_string(), "(no description)".to_string()));
    }

    #[test]
    fn malformed_replies() {
        assert_eq!(bad(b"{\"return\": 1"), "unexpected reply from the agent: {\"return\": 1");
        assert_eq!(bad(b"{\"event\": \"X\"}"), "unexpected reply from the agent: {\"event\": \"X\"}");
        assert_eq!(bad(b"[1]"), "unexpected reply from the agent: [1]");
        assert_eq!(bad(b"\xff\xfe"), "unexpected reply from the agent: \u{fffd}\u{fffd}");
        // Long garbage is cut to 200 characters, and kept on one line.
        let long = format!("{}\nmore", "é".repeat(300));
        assert_eq!(bad(long.as_bytes()), format!("unexpected reply from the agent: {}", "é".repeat(200)));
        let two = "ab\ncd".to_string();
        assert_eq!(bad(two.as_bytes()), "unexpected reply from the agent: ab cd");
    }
}
