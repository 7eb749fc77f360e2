//! Argument decoding with the QAPI input visitor's rules and texts
//! (`qapi/qobject-input-visitor.c`): members are visited in schema order,
//! so a missing or mistyped member is reported before an unexpected one.

use super::base64::Base64Arg;
use super::error::QgaError;
use super::ghash;
use crate::json::{qdict_order, Object, Value};

/// The `arguments` object of one request, consumed member by member.
#[derive(Debug)]
pub struct Args {
    rest: Object,
    /// Full name of the struct being visited (`vcpus[0]` for a list
    /// element), prepended to member names in errors as QEMU's
    /// `full_name()` does; empty for the top-level arguments.
    prefix: String,
    /// Members taken so far, in visiting order, with their position in
    /// the original object (to name the unexpected member as qemu-ga).
    taken: Vec<(String, usize)>,
    /// The original positions of `taken`, ascending.
    taken_sorted: Vec<usize>,
}

type R<T> = Result<T, QgaError>;

impl Args {
    pub fn new(arguments: Object) -> Self {
        Args { rest: arguments, prefix: String::new(), taken: Vec::new(), taken_sorted: Vec::new() }
    }

    /// The name QEMU reports for member `name` of this struct.
    pub fn full_name(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    /// Removes a member, remembering that it was visited; a string the
    /// framer decoded is its text again (only the base64 accessors take
    /// the bytes).
    fn take(&mut self, name: &str) -> Option<Value> {
        self.take_raw(name).map(Value::into_text)
    }

    fn take_raw(&mut self, name: &str) -> Option<Value> {
        let (current, value) = self.rest.take_indexed(name)?;
        // Position among the original members: skip the taken ones.
        let mut original = current;
        for &t in &self.taken_sorted {
            if t <= original {
                original += 1;
            } else {
                break;
            }
        }
        let at = self.taken_sorted.partition_point(|&t| t < original);
        self.taken_sorted.insert(at, original);
        self.taken.push((name.to_string(), original));
        Some(value)
    }

    /// Takes an optional member without checking its type.
    pub fn opt_value(&mut self, name: &str) -> Option<Value> {
        self.take(name)
    }

    /// Takes a mandatory member without checking its type (alternates).
    pub fn req_value(&mut self, name: &str) -> R<Value> {
        self.required(name)
    }

    fn required(&mut self, name: &str) -> R<Value> {
        match self.take(name) {
            Some(v) => Ok(v),
            None => Err(QgaError::missing(&self.full_name(name))),
        }
    }

    pub fn req_str(&mut self, name: &str) -> R<String> {
        let v = self.required(name)?;
        to_str(&self.full_name(name), v)
    }

    pub fn opt_str(&mut self, name: &str) -> R<Option<String>> {
        let full = self.full_name(name);
        self.take(name).map(|v| to_str(&full, v)).transpose()
    }

    /// An optional base64 string (its type checked now, its decoding done
    /// by [`Base64Arg::decode`] once the other arguments are checked, as
    /// qemu-ga orders the errors).
    pub fn opt_base64(&mut self, name: &str) -> R<Option<Base64Arg>> {
        let full = self.full_name(name);
        self.take_raw(name).map(|v| base64_arg(&full, v)).transpose()
    }

    pub fn req_base64(&mut self, name: &str) -> R<Base64Arg> {
        let full = self.full_name(name);
        match self.take_raw(name) {
            Some(v) => base64_arg(&full, v),
            None => Err(QgaError::missing(&full)),
        }
    }

    pub fn req_int(&mut self, name: &str) -> R<i64> {
        let v = self.required(name)?;
        to_int(&self.full_name(name), &v)
    }

    pub fn opt_int(&mut self, name: &str) -> R<Option<i64>> {
        let full = self.full_name(name);
        self.take(name).map(|v| to_int(&full, &v)).transpose()
    }

    /// A QAPI `uint64` (negative integers are accepted and wrap, as
    /// `qobject_input_type_uint64()` does for backward compatibility).
    pub fn req_uint64(&mut self, name: &str) -> R<u64> {
        let v = self.required(name)?;
        to_uint64(&self.full_name(name), &v)
    }

    pub fn opt_uint64(&mut self, name: &str) -> R<Option<u64>> {
        let full = self.full_name(name);
        self.take(name).map(|v| to_uint64(&full, &v)).transpose()
    }

    pub fn req_bool(&mut self, name: &str) -> R<bool> {
        match self.required(name)? {
            Value::Bool(b) => Ok(b),
            _ => Err(QgaError::invalid_type(&self.full_name(name), "boolean")),
        }
    }

    pub fn opt_bool(&mut self, name: &str) -> R<Option<bool>> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(_) => Err(QgaError::invalid_type(&self.full_name(name), "boolean")),
        }
    }

    /// A QAPI `number`: any JSON number.
    pub fn opt_number(&mut self, name: &str) -> R<Option<f64>> {
        match self.take(name) {
            None => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| QgaError::invalid_type(&self.full_name(name), "number")),
        }
    }

    /// A QAPI `['str']`; elements are named `name[i]` in errors.
    pub fn opt_str_list(&mut self, name: &str) -> R<Option<Vec<String>>> {
        match self.take(name) {
            None => Ok(None),
            Some(v) => self.str_list(name, v).map(Some),
        }
    }

    /// A mandatory QAPI `['str']`.
    pub fn req_str_list(&mut self, name: &str) -> R<Vec<String>> {
        let v = self.required(name)?;
        self.str_list(name, v)
    }

    fn str_list(&self, name: &str, v: Value) -> R<Vec<String>> {
        let full = self.full_name(name);
        match v {
            // The element's name is only built for an error.
            Value::List(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::Str(s) => Ok(s),
                    _ => Err(QgaError::invalid_type(&format!("{full}[{i}]"), "string")),
                })
                .collect::<R<Vec<_>>>(),
            _ => Err(QgaError::invalid_type(&full, "array")),
        }
    }

    /// A mandatory list of structs: each element is handed to `visit`
    /// as its own [`Args`] (named `name[i]`), visited and checked for
    /// unexpected members before the next element, in QAPI's order.
    pub fn req_struct_list<T>(&mut self, name: &str, mut visit: impl FnMut(&mut Args) -> R<T>) -> R<Vec<T>> {
        let full = self.full_name(name);
        let items = match self.required(name)? {
            Value::List(items) => items,
            _ => return Err(QgaError::invalid_type(&full, "array")),
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            let elem = format!("{full}[{i}]");
            let Value::Object(obj) = item else {
                return Err(QgaError::invalid_type(&elem, "object"));
            };
            let mut sub = Args { prefix: elem, ..Args::new(obj) };
            out.push(visit(&mut sub)?);
            sub.finish()?;
        }
        Ok(out)
    }

    /// `visit_check_struct()`: any member not visited is unexpected; with
    /// several, the one qemu-ga names (see [`ghash`](super::ghash)).
    pub fn finish(self) -> R<()> {
        match self.first_unexpected() {
            Some(k) => Err(QgaError::unexpected(&self.full_name(k))),
            None => Ok(()),
        }
    }

    fn first_unexpected(&self) -> Option<&str> {
        if self.rest.len() <= 1 {
            return self.rest.iter().next().map(|(k, _)| k);
        }
        // Rebuild the original member order: taken members at their
        // positions, the rest in between.
        let total = self.rest.len() + self.taken.len();
        let mut original: Vec<Option<&str>> = vec![None; total];
        for (k, at) in &self.taken {
            if let Some(slot) = original.get_mut(*at) {
                *slot = Some(k.as_str());
            }
        }
        let mut rest = self.rest.iter().map(|(k, _)| k);
        for slot in original.iter_mut().filter(|s| s.is_none()) {
            *slot = rest.next();
        }
        let original: Vec<&str> = original.into_iter().map(|k| k.unwrap_or_default()).collect();
        // QDict iteration order: buckets upwards, newest first in a bucket.
        let order = qdict_order(original.iter().copied());
        let mut qdict_pos = vec![0; total];
        for (pos, &i) in order.iter().enumerate() {
            qdict_pos[i] = pos;
        }
        let keys: Vec<&str> = order.iter().map(|&i| original[i]).collect();
        let visited: Vec<usize> = self.taken.iter().map(|(_, at)| qdict_pos[*at]).collect();
        ghash::first_unvisited(&keys, &visited).map(|pos| keys[pos])
    }
}

fn base64_arg(name: &str, v: Value) -> R<Base64Arg> {
    match v {
        Value::Base64(bytes) => Ok(Base64Arg::Bytes(std::rc::Rc::try_unwrap(bytes).unwrap_or_else(|b| (*b).clone()))),
        v => to_str(name, v).map(Base64Arg::Text),
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

fn to_uint64(name: &str, v: &Value) -> R<u64> {
    match *v {
        Value::UInt(u) => Ok(u),
        Value::Int(i) => Ok(i as u64),
        _ => Err(QgaError::invalid_value(name, "uint64")),
    }
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
        assert_eq!(a.opt_str_list("arg").unwrap_err().desc, "Invalid parameter type for 'arg[1]', expected: string");
        assert_eq!(a.req_int("pid").unwrap_err().desc, "Invalid parameter type for 'pid', expected: integer");
        assert_eq!(a.finish().unwrap_err().desc, "Parameter 'foo' is unexpected");
        let mut b = Args::new(Object::new().with("id", Value::UInt(u64::MAX)));
        assert!(b.req_int("id").is_err());
    }

    fn keys_object(keys: impl IntoIterator<Item = String>) -> Object {
        let mut obj = Object::new();
        for k in keys {
            obj.push(k, Value::Int(0));
        }
        obj
    }

    /// The names qemu-ga 10.0.2 (GLib 2.74) answered with, recorded from
    /// the real binary.
    #[test]
    fn unexpected_member_is_the_one_qemu_ga_names() {
        // guest-ping with k0..k79999: "Parameter 'k31356' is unexpected".
        let a = Args::new(keys_object((0..80_000).map(|i| format!("k{i}"))));
        assert_eq!(a.finish().unwrap_err().desc, "Parameter 'k31356' is unexpected");
    }

    /// Issue 12, defect 7: the 6.2 MB request with 524,000 keys (inside
    /// every limit) that blocked the agent for minutes. Checks the result
    /// of the whole path: framer, parser (duplicate check), envelope,
    /// visitor; the timing is in the note (0.3 s of CPU in release).
    #[test]
    fn request_with_524000_keys_is_answered() {
        use crate::json::{Frame, Framer};
        use crate::protocol::parse_request;
        let mut text = String::from(r#"{"execute":"guest-ping","arguments":{"#);
        for i in 0..524_000 {
            if i > 0 {
                text.push(',');
            }
            text.push_str(&format!("\"k{i}\":{}", i % 10));
        }
        text.push_str("}}");
        assert_eq!(text.len(), 6_176_928);
        let mut f = Framer::new();
        let (used, frame) = f.feed(text.as_bytes());
        assert_eq!(used, text.len());
        let Some(Frame::Message(msg)) = frame else { panic!("no message") };
        let req = parse_request(msg).unwrap();
        assert_eq!(req.arguments.len(), 524_000);
        let e = Args::new(req.arguments).finish().unwrap_err();
        // qga's GHashTable replay (the 80,000-key case above is checked
        // against qemu-ga itself; qemu-ga needs minutes for this one).
        assert_eq!(e.desc, "Parameter 'k515570' is unexpected");
    }

    #[test]
    fn struct_lists_and_uint64() {
        let elem = |o: Object| Value::Object(o);
        let obj = Object::new().with(
            "mem-blks",
            Value::List(vec![
                elem(Object::new().with("phys-index", Value::Int(-1)).with("online", Value::Bool(true))),
                elem(Object::new().with("phys-index", Value::Float(1.5))),
            ]),
        );
        let mut a = Args::new(obj);
        let e =
            a.req_struct_list("mem-blks", |e| Ok((e.req_uint64("phys-index")?, e.req_bool("online")?))).unwrap_err();
        assert_eq!(e.desc, "Parameter 'mem-blks[1].phys-index' expects uint64");
        let obj = Object::new().with(
            "vcpus",
            Value::List(vec![elem(Object::new().with("logical-id", Value::Int(0)).with("x", Value::Null))]),
        );
        let e = Args::new(obj).req_struct_list("vcpus", |e| e.req_bool("online")).unwrap_err();
        assert_eq!(e.desc, "Parameter 'vcpus[0].online' is missing");
        let obj = Object::new().with("vcpus", Value::List(vec![Value::Int(1)]));
        let e = Args::new(obj).req_struct_list("vcpus", |e| e.req_int("logical-id")).unwrap_err();
        assert_eq!(e.desc, "Invalid parameter type for 'vcpus[0]', expected: object");
        let obj = Object::new().with(
            "vcpus",
            Value::List(vec![elem(Object::new().with("logical-id", Value::Int(0)).with("x", Value::Null))]),
        );
        let e = Args::new(obj).req_struct_list("vcpus", |e| e.req_int("logical-id")).unwrap_err();
        assert_eq!(e.desc, "Parameter 'vcpus[0].x' is unexpected");
        let mut c = Args::new(Object::new().with("n", Value::Int(-1)));
        assert_eq!(c.req_uint64("n").unwrap(), u64::MAX);
    }
}
