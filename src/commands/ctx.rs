//! What a handler may touch: the narrow context of a command.

use mio::Registry;

use crate::audit::{AuditLog, ClientInfo};
use crate::config::Config;
use crate::exec::{ExecOptions, NewProcess, ProcessTable};
use crate::json::utf8::to_c_string;
use crate::protocol::QgaError;
use crate::sys::process::Pid;
use crate::sys::spawn::{Redirect, SpawnSpec};

/// State of the guest that commands change and later commands see.
#[derive(Debug, Default)]
pub struct GuestState {
    /// File systems frozen by guest-fsfreeze-freeze (or by a previous
    /// instance, per the marker file): only `frozen_ok` commands run.
    pub frozen: bool,
    /// qga is the guest's init (PID 1 mode): power commands call
    /// reboot(2) themselves.
    pub init_mode: bool,
    /// Open guest-file handles.
    pub files: super::files::Files,
    /// The guest owner's exec policy and its compiled profiles, fixed at
    /// start-up (`--exec-policy`); None: guest-exec as qemu-ga's.
    pub exec_policy: Option<std::rc::Rc<crate::policy::ExecPolicy>>,
}

/// A handler's capabilities: configuration, guest state, the process
/// table and the registry its pipes are watched through, the audit trail
/// and who sent the request.
pub struct Ctx<'a> {
    pub cfg: &'a Config,
    pub guest: &'a mut GuestState,
    pub procs: &'a mut ProcessTable,
    pub registry: &'a Registry,
    /// The audit trail (`--audit-log`; without it, records are dropped at
    /// once): `ctx.audit.record(Record::new(event, command, &ctx.client)…)`.
    pub audit: &'a mut AuditLog,
    /// The connection whose request (or deferred reply) is being handled.
    pub client: ClientInfo,
}

impl Ctx<'_> {
    /// Starts a helper program: stdin `input` or /dev/null, stdout and
    /// stderr merged into one captured pipe, own process group (qemu-ga's
    /// `ga_run_command()`). Its result goes to a [`super::Pending`].
    pub fn start_helper(&mut self, argv: &[&str], input: Option<Vec<u8>>) -> Result<Pid, QgaError> {
        let (path, args) = argv.split_first().ok_or_else(|| QgaError::generic("no helper program"))?;
        let spec = SpawnSpec {
            path: to_c_string(path),
            argv0: None,
            args: args.iter().map(|a| to_c_string(a)).collect(),
            env: None,
            stdin: if input.is_some() { Redirect::Pipe } else { Redirect::Null },
            stdout: Redirect::Pipe,
            stderr: Redirect::ToStdout,
            cwd: None,
            credentials: None,
            tty: None,
            confine: None,
            cgroup_procs: None,
        };
        let opts = ExecOptions { internal: true, ..Default::default() };
        self.procs.start(self.registry, &spec, NewProcess { input, opts, confined: None, audit: None })
    }

    /// Collects exits and drains ready pipes now (before answering
    /// guest-exec-status, so that a just-finished child is reported).
    pub fn refresh_processes(&mut self) {
        self.procs.reap();
        self.procs.service(self.registry);
    }
}
