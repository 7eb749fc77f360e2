//! Reply encoding: one JSON object per line, as qemu-ga's `send_response()`.

use super::error::QgaError;
use crate::json::{write_value, Object, Sink, Value};

/// Sent right before the reply to guest-sync-delimited.
pub const SYNC_DELIMITER: u8 = 0xFF;

/// `{"return": value}` (+ `"id"`), newline-terminated, appended to `out`.
pub fn encode_reply<S: Sink + ?Sized>(out: &mut S, value: Value, id: Option<Value>) {
    let mut rsp = Object::with_capacity(2);
    rsp.push("return", value);
    if let Some(id) = id {
        rsp.push("id", id);
    }
    write_value(out, &Value::Object(rsp));
    out.push(b'\n');
}

/// `{"error": {"class", "desc"}}` (+ `"id"`), newline-terminated.
pub fn encode_error<S: Sink + ?Sized>(out: &mut S, err: &QgaError, id: Option<Value>) {
    let body = Object::with_capacity(2)
        .with("class", Value::str(err.class.as_str()))
        .with("desc", Value::str(err.desc.clone()));
    let mut rsp = Object::with_capacity(2);
    rsp.push("error", Value::Object(body));
    if let Some(id) = id {
        rsp.push("id", id);
    }
    write_value(out, &Value::Object(rsp));
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let mut out = Vec::new();
        encode_reply(&mut out, Value::empty_object(), Some(Value::Int(1)));
        encode_error(&mut out, &QgaError::unexpected("foo"), Some(Value::str("x")));
        encode_error(&mut out, &QgaError::generic("QMP input must be a JSON object"), None);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"return\": {}, \"id\": 1}\n\
             {\"id\": \"x\", \"error\": {\"class\": \"GenericError\", \"desc\": \"Parameter 'foo' is unexpected\"}}\n\
             {\"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input must be a JSON object\"}}\n"
        );
    }
}
