//! The JSON value model shared by requests and replies.

/// An object keeps members in insertion order; the writer derives QEMU's
/// QDict iteration order from it (see `writer.rs`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Object {
    members: Vec<(String, Value)>,
}

/// A JSON value as QEMU's QObject model sees it: integers keep their
/// int64/uint64 nature (QNum), and two reply-only variants avoid copies of
/// large payloads.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    /// Raw bytes whose text is their standard base64 string. In replies:
    /// shared, so that a reply's output can hold the raw bytes and encode
    /// them while sending (captured output can be 16 MiB). In requests: a
    /// long member value that the framer decoded while it arrived
    /// ([`Framer::decoding_members`](super::Framer::decoding_members)); its
    /// text was the canonical encoding of these bytes.
    Base64(std::rc::Rc<Vec<u8>>),
    List(Vec<Value>),
    Object(Object),
}

impl Value {
    /// Raw bytes sent as a base64 string.
    pub fn base64(bytes: Vec<u8>) -> Value {
        Value::Base64(std::rc::Rc::new(bytes))
    }

    /// The value as the text of the message gave it: a decoded string is
    /// a string again, with the text it came as.
    pub fn into_text(self) -> Value {
        match self {
            Value::Base64(bytes) => {
                let mut text = Vec::new();
                super::base64::encode_append(&mut text, &bytes);
                Value::Str(String::from_utf8(text).unwrap_or_default())
            }
            v => v,
        }
    }
}

impl Object {
    pub fn new() -> Self {
        Object { members: Vec::new() }
    }

    pub fn with_capacity(n: usize) -> Self {
        Object { members: Vec::with_capacity(n) }
    }

    /// Appends a member (the caller guarantees the key is new, as QAPI
    /// output visitors do; the parser checks duplicates itself).
    pub fn push(&mut self, key: impl Into<String>, value: Value) {
        self.members.push((key.into(), value));
    }

    /// Builder form of [`Object::push`].
    pub fn with(mut self, key: impl Into<String>, value: Value) -> Self {
        self.push(key, value);
        self
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.members.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub fn take(&mut self, key: &str) -> Option<Value> {
        self.take_indexed(key).map(|(_, v)| v)
    }

    /// Removes a member and returns it with the position it had among the
    /// remaining members (insertion order).
    pub fn take_indexed(&mut self, key: &str) -> Option<(usize, Value)> {
        let i = self.members.iter().position(|(k, _)| k == key)?;
        Some((i, self.members.remove(i).1))
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Members in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.members.iter().map(|(k, v)| (k.as_str(), v))
    }
}

impl Value {
    pub fn as_object(&self) -> Option<&Object> {
        match self {
            Value::Object(o) => Some(o),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// QEMU's `qnum_get_try_int`: only values representable as int64.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::Int(i) => Some(i),
            Value::UInt(u) => i64::try_from(u).ok(),
            _ => None,
        }
    }

    /// QEMU's `qnum_get_double`: any number.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::Int(i) => Some(i as f64),
            Value::UInt(u) => Some(u as f64),
            Value::Float(f) => Some(f),
            _ => None,
        }
    }

    pub fn str(s: impl Into<String>) -> Value {
        Value::Str(s.into())
    }

    pub fn empty_object() -> Value {
        Value::Object(Object::new())
    }
}
