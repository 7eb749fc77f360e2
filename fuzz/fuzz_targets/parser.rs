//! One input as one stream: every frame parsed, every message written
//! back out, and every written message parsed again (the writer's output
//! is JSON the parser accepts, except the `inf` QEMU prints for
//! out-of-range doubles).
#![no_main]

use libfuzzer_sys::fuzz_target;
use qga_protocol::json::{write_value, Frame, Framer, Value};

fn frames(stream: &[u8]) -> Vec<Frame> {
    let mut framer = Framer::new();
    let mut out = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        let (used, frame) = framer.feed(rest);
        rest = &rest[used..];
        match frame {
            Some(f) => out.push(f),
            None => break,
        }
    }
    out
}

fn has_unreadable_double(v: &Value) -> bool {
    match v {
        // QEMU prints `inf` (not JSON) and `-0` (read back as the integer 0).
        Value::Float(f) => !f.is_finite() || (*f == 0.0 && f.is_sign_negative()),
        Value::List(items) => items.iter().any(has_unreadable_double),
        Value::Object(o) => o.iter().any(|(_, v)| has_unreadable_double(v)),
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut stream = data.to_vec();
    stream.push(b'\n');
    for frame in frames(&stream) {
        let Frame::Message(v) = frame else { continue };
        let mut text = Vec::new();
        write_value(&mut text, &v);
        if has_unreadable_double(&v) {
            continue;
        }
        text.push(b'\n');
        let again = frames(&text);
        assert_eq!(again.len(), 1, "written {:?} parsed as {again:?}", String::from_utf8_lossy(&text));
        match &again[0] {
            Frame::Message(w) => {
                // Member order may change (QDict order), values may not.
                let mut a = Vec::new();
                let mut b = Vec::new();
                write_value(&mut a, &canonical(&v));
                write_value(&mut b, &canonical(w));
                assert_eq!(a, b);
            }
            Frame::Error(e) => panic!("written message does not parse: {e}"),
        }
    }
});

/// The value with every object's members sorted by key, so that two
/// objects with the same members compare equal whatever their order.
fn canonical(v: &Value) -> Value {
    match v {
        Value::List(items) => Value::List(items.iter().map(canonical).collect()),
        Value::Object(o) => {
            let mut members: Vec<(&str, Value)> = o.iter().map(|(k, v)| (k, canonical(v))).collect();
            members.sort_by(|a, b| a.0.cmp(b.0));
            let mut out = qga_protocol::json::Object::with_capacity(members.len());
            for (k, v) in members {
                out.push(k, v);
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}
