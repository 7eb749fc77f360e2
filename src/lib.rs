//! qga: a QEMU guest agent for minimal Linux guests, wire-compatible with
//! qemu-ga. See docs/design.md for the map. The protocol layers (`json`,
//! `protocol`) are the crate qga-protocol: pure, bytes in, values out, no
//! libc (re-exported here for the tests). The OS layer is the crate
//! qga-sys: every libc call and `unsafe` (this crate forbids `unsafe`).
//! Everything else is private to the crate: `agent` is the
//! single-threaded mio event loop over the channel, the process table
//! (`exec`) and the signal pipe; `commands` the handler table on a narrow
//! context; `init` PID 1 mode; `startup` the one start-up path.
#![forbid(unsafe_code)]

mod agent;
mod audit;
mod channel;
mod commands;
pub mod config;
mod exec;
mod init;
mod log;
mod policy;
mod signals;
mod startup;

// The layers below, under the names the agent's modules use.
pub use qga_protocol::{json, protocol};
use qga_sys as sys;

/// Runs the agent with the process's command line (the `qga` binary).
pub fn main() -> i32 {
    startup::main()
}
