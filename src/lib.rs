//! qga: a QEMU guest agent for minimal Linux guests, wire-compatible with
//! qemu-ga. The protocol layers (`json`, `protocol`) are pure: bytes in,
//! values out. `agent` is the single-threaded mio event loop that drives
//! the channel, the process table (`exec`) and the signal pipe.

pub mod agent;
pub mod alloc_cache;
pub mod channel;
pub mod commands;
pub mod config;
pub mod exec;
pub mod json;
pub mod log;
pub mod pid1;
pub mod protocol;
pub mod signals;
pub mod startup;
