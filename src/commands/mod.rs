//! The command table: one handler per command, in qemu-ga schema order
//! (`qga/qapi-schema.json`), which is the order `-b help` prints and the
//! reverse of the order guest-info lists.
//!
//! Handlers are `fn(&mut Ctx, Args)`: they see the configuration, the
//! guest state, the process table and the poll registry (for the pipes
//! of what they start), nothing of the channel or the loop.

mod accounts;
mod blockdev;
mod cpu_mem;
mod ctx;
mod disks;
mod exec;
pub(crate) mod files;
mod freeze;
mod fsinfo;
mod helper;
mod hostinfo;
mod info;
mod mounts;
mod network;
mod power;
mod reply;
mod scan;
mod time;

use std::time::Instant;

use crate::json::Value;
use crate::protocol::{Args, QgaError};

pub use ctx::{Ctx, GuestState};
pub use exec::collect_status;
pub use freeze::marker_path as frozen_marker_path;

/// What a handler produced.
pub enum Outcome {
    /// `{"return": value}`.
    Return(Value),
    /// `{"return": value}` preceded by the 0xFF sync delimiter.
    Delimited(Value),
    /// No reply at all (success of a `success-response: false` command).
    Silent,
    /// guest-exec-status of `pid` is answered once the process finishes
    /// or streams, at `deadline`, or when the next request arrives
    /// (status `wait`).
    Hold { pid: i64, deadline: Instant },
    /// The reply comes when a helper program (hwclock, shutdown, a hook...)
    /// started with [`Ctx::start_helper`] has exited; later requests wait
    /// behind it, as with qemu-ga's synchronous helpers.
    Await(Pending),
}

/// Output and wait status of a finished helper program.
#[derive(Debug)]
pub struct HelperResult {
    /// Raw wait status.
    pub status: crate::sys::process::WaitStatus,
    /// stdout and stderr, merged.
    pub output: Vec<u8>,
}

/// What to do with a finished helper: the one continuation type of
/// replies that wait for a helper program.
pub type Continuation = Box<dyn FnOnce(&mut Ctx<'_>, HelperResult) -> Result<Outcome, QgaError>>;

/// A reply waiting for a helper program.
pub struct Pending {
    pub pid: crate::sys::process::Pid,
    pub then: Continuation,
}

impl Pending {
    /// Waits for `pid`, then runs `then` with its result.
    pub fn new(
        pid: crate::sys::process::Pid,
        then: impl FnOnce(&mut Ctx<'_>, HelperResult) -> Result<Outcome, QgaError> + 'static,
    ) -> Self {
        Pending { pid, then: Box::new(then) }
    }
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").field("pid", &self.pid).finish_non_exhaustive()
    }
}

pub type Handler = fn(&mut Ctx<'_>, Args) -> Result<Outcome, QgaError>;

/// One row of the command table.
pub struct CommandSpec {
    pub name: &'static str,
    pub handler: Handler,
    /// False for `'success-response': false` commands (no reply on success).
    pub success_response: bool,
    /// Still runs while file systems are frozen (qemu-ga's fsfreeze-safe list).
    pub frozen_ok: bool,
}

const fn cmd(name: &'static str, handler: Handler) -> CommandSpec {
    CommandSpec { name, handler, success_response: true, frozen_ok: false }
}

/// A `'success-response': false` command: no reply on success.
const fn silent(name: &'static str, handler: Handler) -> CommandSpec {
    CommandSpec { name, handler, success_response: false, frozen_ok: false }
}

/// A command that runs while file systems are frozen.
const fn frozen_ok(name: &'static str, handler: Handler) -> CommandSpec {
    CommandSpec { name, handler, success_response: true, frozen_ok: true }
}

/// Registered commands, schema order; extensions last.
pub static COMMANDS: &[CommandSpec] = &[
    frozen_ok("guest-sync-delimited", info::sync_delimited),
    frozen_ok("guest-sync", info::sync),
    frozen_ok("guest-ping", info::ping),
    cmd("guest-get-time", time::get_time),
    cmd("guest-set-time", time::set_time),
    frozen_ok("guest-info", info::info),
    silent("guest-shutdown", power::shutdown),
    cmd("guest-file-open", files::open),
    cmd("guest-file-close", files::close),
    cmd("guest-file-read", files::read),
    cmd("guest-file-write", files::write),
    cmd("guest-file-seek", files::seek),
    cmd("guest-file-flush", files::flush),
    frozen_ok("guest-fsfreeze-status", freeze::status),
    cmd("guest-fsfreeze-freeze", freeze::freeze),
    cmd("guest-fsfreeze-freeze-list", freeze::freeze_list),
    frozen_ok("guest-fsfreeze-thaw", freeze::thaw),
    cmd("guest-fstrim", fsinfo::fstrim),
    silent("guest-suspend-disk", power::suspend_disk),
    silent("guest-suspend-ram", power::suspend_ram),
    silent("guest-suspend-hybrid", power::suspend_hybrid),
    cmd("guest-network-get-interfaces", network::network_get_interfaces),
    cmd("guest-get-vcpus", cpu_mem::get_vcpus),
    cmd("guest-set-vcpus", cpu_mem::set_vcpus),
    cmd("guest-get-disks", disks::get_disks),
    cmd("guest-get-fsinfo", fsinfo::get_fsinfo),
    cmd("guest-set-user-password", accounts::set_user_password),
    cmd("guest-get-memory-blocks", cpu_mem::get_memory_blocks),
    cmd("guest-set-memory-blocks", cpu_mem::set_memory_blocks),
    cmd("guest-get-memory-block-info", cpu_mem::get_memory_block_info),
    cmd("guest-exec-status", exec::status),
    cmd("guest-exec", exec::exec),
    cmd("guest-get-host-name", hostinfo::get_host_name),
    cmd("guest-get-users", hostinfo::get_users),
    cmd("guest-get-timezone", time::get_timezone),
    cmd("guest-get-osinfo", hostinfo::get_osinfo),
    cmd("guest-ssh-get-authorized-keys", accounts::ssh_get),
    cmd("guest-ssh-add-authorized-keys", accounts::ssh_add),
    cmd("guest-ssh-remove-authorized-keys", accounts::ssh_remove),
    cmd("guest-get-diskstats", cpu_mem::get_diskstats),
    cmd("guest-get-cpustats", cpu_mem::get_cpustats),
    cmd("guest-get-load", hostinfo::get_load),
    cmd("guest-network-get-route", network::network_get_route),
    cmd("guest-exec-terminate", exec::terminate),
    cmd("guest-exec-input", exec::input),
    cmd("guest-exec-resize", exec::resize),
];

pub fn find(name: &str) -> Option<&'static CommandSpec> {
    COMMANDS.iter().find(|c| c.name == name)
}

pub fn names() -> Vec<&'static str> {
    COMMANDS.iter().map(|c| c.name).collect()
}

/// Whether `spec` may run: the frozen state first, then the allow and
/// block lists (qemu-ga 9.1+ rules).
pub fn is_enabled(spec: &CommandSpec, cfg: &crate::config::Config, guest: &GuestState) -> bool {
    if guest.frozen {
        return spec.frozen_ok;
    }
    let listed = |l: &[String]| l.iter().any(|n| n == spec.name);
    if cfg.has_allow_list && !listed(&cfg.allow_rpcs) {
        return false;
    }
    !listed(&cfg.block_rpcs)
}
