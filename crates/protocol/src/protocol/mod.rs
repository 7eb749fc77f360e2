//! The qemu-ga protocol above JSON, still without I/O: request envelope
//! validation (`qapi/qmp-dispatch.c`), argument decoding with the QAPI
//! input visitor's error texts, and reply encoding.

mod args;
mod base64;
mod error;
pub mod ghash;
mod reply;
mod request;

pub use args::Args;
pub use base64::{qbase64_decode, Base64Arg, DECODED_MEMBERS};
pub use error::{ErrorClass, OsError, QgaError};
pub use reply::{encode_error, encode_reply, SYNC_DELIMITER};
pub use request::{parse_request, Request};
