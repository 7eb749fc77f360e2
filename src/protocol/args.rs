//! Argument decoding with the QAPI input visitor's rules and texts
//! (`qapi/qobject-input-visitor.c`): members are visited in schema order,
//! so a missing or mistyped member is reported before an unexpected one.

use super::error::QgaError;
use crate::json::{Object, Value};

/// The `arguments` object of one request, consumed member by member.
pub struct Args {
    rest: Object,
}

type R<T> = Result<T, QgaError>;

impl Args {
    pub fn new(arguments: Object) -> Self {
        Args { rest: arguments }
    }

    /// Takes an optional member without checking its type.
    pub fn opt_value(&mut self, name: &str) -> Option<Value> {
        self.rest.take(name)
    }

    fn required(&mut self, name: &str) -> R<Value> {
        self.rest.take(name).ok_or_else(|| QgaError::missing(name))
    }

    pub fn req_str(&mut self, name: &str) -> R<String> {
        let v = self.required(name)?;
        to_str(name, v)
    }

    pub fn opt_str(&mut self, name: &str) -> R<Option<String>> {
        self.rest.take(name).map(|v| to_str(name, v)).transpose()
    }

    pub fn req_int(&mut self, name: &str) -> R<i64> {
        let v = self.required(name)?;
        to_int(name, &v)
    }

    pub fn opt_int(&mut self, name: &str) -> R<Option<i64>> {
        self.rest.take(name).map(|v| to_int(name, &v)).transpose()
    }

    pub fn opt_bool(&mut self, name: &str) -> R<Option<bool>> {
        match self.rest.take(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(_) => Err(QgaError::invalid_type(name, "boolean")),
        }
    }

    /// A QAPI `number`: any JSON number.
    pub fn opt_number(&mut self, name: &str) -> R<Option<f64>> {
        match self.rest.take(name) {
            None => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| QgaError::invalid_type(name, "number")),
        }
    }

    /// A QAPI `['str']`; elements are named `name[i]` in errors.
    pub fn opt_str_list(&mut self, name: &str) -> R<Option<Vec<String>>> {
        match self.rest.take(name) {
            None => Ok(None),
            Some(Value::List(items)) => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| to_str(&format!("{name}[{i}]"), v))
                .collect::<R<Vec<_>>>()
                .map(Some),
            Some(_) => Err(QgaError::invalid_type(name, "array")),
        }
    }

    /// `visit_check_struct()`: any member not visited is unexpected.
    pub fn finish(self) -> R<()> {
        match self.rest.iter().next() {
            Some((k, _)) => Err(QgaError::unexpected(k)),
            None => Ok(()),
        }
    }
}

fn to_str(name: &str, v: Value) -> R<String> {
    match v {
        Value::Str(s) => Ok(s),
        _ => Err(QgaError::invalid_type(name, "string")),
    }
}

fn to_int(name: &str, v: &Value) -> R<i64> {
    v.as_i64().ok_or_else(|| QgaError::invalid_type(name, "integer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visitor_texts() {
        let obj = Object::new()
            .with("arg", Value::List(vec![Value::str("a"), Value::Int(1)]))
            .with("pid", Value::Float(1.5))
            .with("foo", Value::Null);
        let mut a = Args::new(obj.clone());
        assert_eq!(a.req_str("path").unwrap_err().desc, "Parameter 'path' is missing");
        assert_eq!(
            a.opt_str_list("arg").unwrap_err().desc,
            "Invalid parameter type for 'arg[1]', expected: string"
        );
        assert_eq!(a.req_int("pid").unwrap_err().desc, "Invalid parameter type for 'pid', expected: integer");
        assert_eq!(a.finish().unwrap_err().desc, "Parameter 'foo' is unexpected");
        let mut b = Args::new(Object::new().with("id", Value::UInt(u64::MAX)));
        assert!(b.req_int("id").is_err());
    }
}
