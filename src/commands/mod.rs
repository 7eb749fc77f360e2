//! The command table: one handler per command, in qemu-ga schema order
//! (`qga/qapi-schema.json`), which is the order `-b help` prints and the
//! reverse of the order guest-info lists.

mod exec;
mod info;

use crate::agent::Agent;
use crate::json::Value;
use crate::protocol::{Args, QgaError};

pub use exec::Held;

/// What a handler produced.
pub enum Outcome {
    /// `{"return": value}`.
    Return(Value),
    /// `{"return": value}` preceded by the 0xFF sync delimiter.
    Delimited(Value),
    /// No reply at all (success of a `success-response: false` command).
    Silent,
    /// The reply is held until a condition or a deadline (status `wait`).
    Hold(Held),
    /// The reply comes when a helper program (hwclock, shutdown, a hook...)
    /// started with [`crate::agent::Agent::start_helper`] has exited; later
    /// requests wait behind it, as with qemu-ga's synchronous helpers.
    Await(Pending),
}

/// Output and wait status of a finished helper program.
#[derive(Debug)]
pub struct HelperResult {
    /// Raw wait status.
    pub status: i32,
    /// stdout and stderr, merged.
    pub output: Vec<u8>,
}

/// Turns a finished helper into the command's outcome.
pub type Finish = Box<dyn FnOnce(&mut Agent, HelperResult) -> Result<Outcome, QgaError>>;

/// A reply waiting for a helper program.
pub struct Pending {
    pub pid: libc::pid_t,
    pub finish: Finish,
}

pub type Handler = fn(&mut Agent, Args) -> Result<Outcome, QgaError>;

pub struct CommandSpec {
    pub name: &'static str,
    pub handler: Handler,
    pub success_response: bool,
}

const fn cmd(name: &'static str, handler: Handler) -> CommandSpec {
    CommandSpec { name, handler, success_response: true }
}

/// Registered commands, schema order; extensions last.
pub static COMMANDS: &[CommandSpec] = &[
    cmd("guest-sync-delimited", info::sync_delimited),
    cmd("guest-sync", info::sync),
    cmd("guest-ping", info::ping),
    cmd("guest-info", info::info),
    cmd("guest-exec-status", exec::status),
    cmd("guest-exec", exec::exec),
    cmd("guest-exec-terminate", exec::terminate),
];

pub fn find(name: &str) -> Option<&'static CommandSpec> {
    COMMANDS.iter().find(|c| c.name == name)
}

pub fn names() -> Vec<&'static str> {
    COMMANDS.iter().map(|c| c.name).collect()
}
