//! qga: a QEMU guest agent for minimal Linux guests, wire-compatible with
//! qemu-ga. See docs/design.md for the map. The protocol layers (`json`,
//! `protocol`) are pure: bytes in, values out, no libc; they are public so
//! that the fuzz targets can drive them alone. Everything else is private
//! to the crate: `agent` is the single-threaded mio event loop over the
//! channel, the process table (`exec`) and the signal pipe; `commands` the
//! handler table on a narrow context; `init` PID 1 mode; `startup` the one
//! start-up path; `sys` the only module that calls libc or uses `unsafe`.
#![deny(unsafe_code)]

mod agent;
mod channel;
mod commands;
pub mod config;
mod exec;
mod init;
pub mod json;
mod log;
pub mod protocol;
mod signals;
mod startup;
mod sys;

/// Runs the agent with the process's command line (the `qga` binary).
pub fn main() -> i32 {
    startup::main()
}
