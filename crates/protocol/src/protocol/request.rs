//! Envelope validation, as `qmp_dispatch()` + `qmp_dispatch_check_obj()`.

use super::error::QgaError;
use crate::json::{qdict_order, Object, Value};

/// A validated request envelope.
#[derive(Debug)]
pub struct Request {
    pub command: String,
    pub arguments: Object,
    /// Echoed verbatim in the reply when present.
    pub id: Option<Value>,
}

/// Validates the envelope. On error returns it with the `id` to echo
/// (absent when the message was not an object).
pub fn parse_request(msg: Value) -> Result<Request, (QgaError, Option<Value>)> {
    let Value::Object(mut dict) = msg else {
        return Err((QgaError::generic("QMP input must be a JSON object"), None));
    };
    let id = dict.take("id");
    // Members are checked in QDict iteration order, so with several faults
    // the one reported is the one qemu-ga reports.
    let members: Vec<(&str, &Value)> = dict.iter().collect();
    let mut fault = None;
    for i in qdict_order(members.iter().map(|m| m.0)) {
        let (key, value) = members[i];
        match key {
            "execute" if !matches!(value, Value::Str(_)) => {
                fault = Some(QgaError::generic("QMP input member 'execute' must be a string"));
            }
            "execute" => {}
            "arguments" if !matches!(value, Value::Object(_)) => {
                fault = Some(QgaError::generic("QMP input member 'arguments' must be an object"));
            }
            "arguments" => {}
            other => {
                fault = Some(QgaError::generic(format!("QMP input member '{other}' is unexpected")));
            }
        }
        if fault.is_some() {
            break;
        }
    }
    if let Some(e) = fault {
        return Err((e, id));
    }
    let command = match dict.take("execute") {
        Some(Value::Str(s)) => s,
        _ => return Err((QgaError::generic("QMP input lacks member 'execute'"), id)),
    };
    let arguments = match dict.take("arguments") {
        Some(Value::Object(o)) => o,
        _ => Object::new(),
    };
    Ok(Request { command, arguments, id })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::{Frame, Framer};

    fn req(s: &str) -> Result<Request, (QgaError, Option<Value>)> {
        let mut f = Framer::new();
        match f.feed(s.as_bytes()).1 {
            Some(Frame::Message(v)) => parse_request(v),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn envelope_errors() {
        let desc = |s: &str| req(s).unwrap_err().0.desc;
        assert_eq!(desc("[]"), "QMP input must be a JSON object");
        assert_eq!(desc("{}"), "QMP input lacks member 'execute'");
        assert_eq!(desc(r#"{"execute":1}"#), "QMP input member 'execute' must be a string");
        assert_eq!(desc(r#"{"execute":"x","arguments":[]}"#), "QMP input member 'arguments' must be an object");
        assert_eq!(desc(r#"{"exec-oob":"guest-ping"}"#), "QMP input member 'exec-oob' is unexpected");
        assert_eq!(desc(r#"{"execute":"guest-ping","foo":1}"#), "QMP input member 'foo' is unexpected");
        let (_, id) = req(r#"{"execute":1,"id":7}"#).unwrap_err();
        assert_eq!(id, Some(Value::Int(7)));
        let ok = req(r#"{"execute":"guest-ping","id":"a"}"#).unwrap();
        assert_eq!(ok.command, "guest-ping");
        assert!(ok.arguments.is_empty());
    }
}
