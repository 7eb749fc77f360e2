//! QEMU's JSON dialect, without I/O: a streaming framer (lexer + message
//! splitter with qemu-ga's limits), a parser from tokens to [`Value`], and a
//! writer that emits byte-for-byte what QEMU's `json-writer.c` emits
//! (compact `", "`/`": "` separators, ASCII-only strings, QDict member order).

pub mod base64;
mod framer;
mod parser;
mod segments;
pub mod utf8;
mod value;
pub(crate) mod writer;

pub use framer::{Frame, Framer, MAX_NESTING, MAX_TOKEN_COUNT, MAX_TOKEN_SIZE};
pub use segments::Segments;
pub use value::{Object, Value};
pub use writer::{format_g17, qdict_bucket, qdict_order, write_value, Sink};
