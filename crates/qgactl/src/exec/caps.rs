//! What the agent can do, from guest-info.

use serde_json::Value;

use crate::conn::Session;
use crate::fail::Result;

#[derive(Debug, PartialEq)]
pub(super) struct Caps {
    /// guest-exec-terminate listed and enabled: stream/wait/timeout/cwd/user.
    pub(super) ext: bool,
    /// guest-file-open/write/close usable (for staging large stdin).
    pub(super) files: bool,
    /// guest-exec-input listed and enabled: streamed stdin.
    pub(super) input: bool,
    /// guest-exec-resize listed and enabled: `tty`.
    pub(super) tty: bool,
}

pub(super) fn query_caps(sess: &mut Session) -> Result<Caps> {
    Ok(Caps::from_info(&sess.call("guest-info", None)?))
}

impl Caps {
    /// From guest-info's return value: a command counts when it is listed
    /// and not disabled.
    fn from_info(v: &Value) -> Caps {
        let cmds = v.get("supported_commands").and_then(Value::as_array).cloned().unwrap_or_default();
        let enabled = |n: &str| {
            cmds.iter().any(|c| {
                c.get("name").and_then(Value::as_str) == Some(n)
                    && c.get("enabled").and_then(Value::as_bool) != Some(false)
            })
        };
        Caps {
            ext: enabled("guest-exec-terminate"),
            files: enabled("guest-file-open") && enabled("guest-file-write") && enabled("guest-file-close"),
            input: enabled("guest-exec-input"),
            tty: enabled("guest-exec-resize"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn caps(cmds: Value) -> Caps {
        Caps::from_info(&json!({"version": "1", "supported_commands": cmds}))
    }

    #[test]
    fn listed_and_not_disabled() {
        let all = json!([
            {"name": "guest-exec-terminate", "enabled": true},
            {"name": "guest-file-open", "enabled": true},
            {"name": "guest-file-write"},
            {"name": "guest-file-close", "enabled": true},
            {"name": "guest-exec-input", "enabled": true},
            {"name": "guest-exec-resize", "enabled": true},
        ]);
        assert_eq!(caps(all), Caps { ext: true, files: true, input: true, tty: true });
        // qemu-ga: none of the extensions; one guest-file-* disabled (-b) spoils staging.
        let stock = json!([
            {"name": "guest-exec", "enabled": true},
            {"name": "guest-file-open", "enabled": true},
            {"name": "guest-file-write", "enabled": false},
            {"name": "guest-file-close", "enabled": true},
        ]);
        assert_eq!(caps(stock), Caps { ext: false, files: false, input: false, tty: false });
        let blocked = json!([{"name": "guest-exec-terminate"}, {"name": "guest-exec-input", "enabled": false}]);
        assert_eq!(caps(blocked), Caps { ext: true, files: false, input: false, tty: false });
        assert_eq!(Caps::from_info(&json!({})), Caps { ext: false, files: false, input: false, tty: false });
    }
}
