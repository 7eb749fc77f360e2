//! qemu-ga's wire protocol, pure: bytes in, values out. `json` is QEMU's
//! JSON dialect (the streaming framer with qemu-ga's limits and error
//! texts, the parser, the writer with QDict member order and `%.17g`,
//! base64); `protocol` the request/reply layer (envelope checks, the
//! argument visitor, qemu-ga's `{class, desc}` errors, `qbase64_decode`).
//! No libc, no I/O, no `unsafe`: the fuzz targets drive it alone, and the
//! compiler holds it to that (this crate has no dependencies).
#![forbid(unsafe_code)]

pub mod json;
pub mod protocol;
