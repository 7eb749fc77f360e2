//! Small builders for handler results.

use super::Outcome;
use crate::json::{Object, Value};
use crate::protocol::QgaError;

/// A handler's result.
pub(super) type R = Result<Outcome, QgaError>;

/// `{"return": v}`.
pub(super) fn ok(v: Value) -> R {
    Ok(Outcome::Return(v))
}

/// An object with these members, in this order.
pub(super) fn obj(members: Vec<(&str, Value)>) -> Value {
    let mut o = Object::with_capacity(members.len());
    for (k, v) in members {
        o.push(k, v);
    }
    Value::Object(o)
}
