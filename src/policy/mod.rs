//! The guest owner's exec policy (`--exec-policy FILE`): which programs
//! guest-exec may run, with which arguments, as which users, in which
//! directories, with which environment, with which extensions, and under
//! which confinement profile. Without a policy file nothing here runs and
//! guest-exec behaves as qemu-ga's.
//!
//! The file is a GKeyFile (the format of qemu-ga's own configuration):
//! `[exec]` holds the rules (`rules.rs`), each `[rule NAME]` one
//! exact-argv rule and each `[profile NAME]` one confinement profile
//! (`profile.rs`), read by `load.rs` and compiled by `compile.rs`. The
//! format and examples are in docs/security.md.
//!
//! A request is checked before anything is started: the first rule it
//! breaks is named in the error (qemu-ga's `GenericError` form), and the
//! refusal is audited by the caller.
//!
//! All of it is the `controls` cargo feature (with qga-sys's seccomp and
//! Landlock layers): the minimal initramfs build leaves it out to stay
//! within its size budget, and there `--exec-policy` is refused at start
//! (the daemon does not start; PID 1 mode disables guest-exec), never
//! ignored.

#[cfg(feature = "controls")]
mod compile;
#[cfg(feature = "controls")]
mod load;
#[cfg(feature = "controls")]
pub mod profile;
#[cfg(feature = "controls")]
mod rules;

use std::rc::Rc;

#[cfg(feature = "controls")]
pub use compile::ExecPolicy;

use crate::exec::Confined;
use crate::protocol::QgaError;
use crate::sys::confine::Confinement;

/// What a request asks for, as far as the policy is concerned.
#[derive(Debug)]
#[cfg_attr(not(feature = "controls"), allow(dead_code))]
pub struct ExecRequest<'a> {
    pub path: &'a str,
    pub args: &'a [String],
    pub user: Option<&'a str>,
    pub cwd: Option<&'a str>,
    /// The client's `env` entries (NAME=value), merged or not.
    pub env: Option<&'a [String]>,
    /// PATH the child will search (its own environment's, else the agent's).
    pub search_path: &'a [u8],
    pub input_data: bool,
    pub terminal: bool,
    pub stream: bool,
    pub profile: Option<&'a str>,
}

/// A request the policy admits, and how it runs.
#[derive(Debug)]
pub struct Admitted {
    /// The resolved program: what is executed (argv[0] stays as given).
    pub program: String,
    /// Who it runs as: the request's `user`, else `default-user`.
    pub user: Option<String>,
    /// Its profile's confinement, and its report and cgroup leaf.
    pub confine: Option<(Rc<Confinement>, Confined)>,
}

/// The policy file at `path`, read and compiled, or why it cannot be used.
#[cfg(feature = "controls")]
pub fn load(path: &str) -> Result<ExecPolicy, String> {
    let rules = load::load(path)?;
    ExecPolicy::new(rules).map_err(|e| format!("exec policy {path}: {e}"))
}

#[cfg(feature = "controls")]
impl ExecPolicy {
    /// Checks `req` (nothing is started): the resolved program, the user
    /// and the profile's confinement (a new cgroup leaf when it has one),
    /// or qemu-ga's `GenericError` naming the rule that refused it.
    pub fn admit(&self, req: &ExecRequest<'_>) -> Result<Admitted, QgaError> {
        let allowed = self.rules.check(req).map_err(|r| QgaError::generic(format!("guest-exec refused: {}", r.0)))?;
        let confine = allowed.profile.map(|spec| self.prepare(spec)).transpose()?;
        Ok(Admitted { program: allowed.program, user: allowed.user, confine })
    }

    /// Whether the guest-file-* commands stay enabled.
    pub fn files_allowed(&self) -> bool {
        self.rules.files
    }
}

/// Without the `controls` feature there is no policy (no value of this
/// type can exist).
#[cfg(not(feature = "controls"))]
#[derive(Debug)]
pub enum ExecPolicy {}

#[cfg(not(feature = "controls"))]
pub fn load(path: &str) -> Result<ExecPolicy, String> {
    Err(format!("exec policy {path}: this qga is built without exec policies (the controls feature)"))
}

#[cfg(not(feature = "controls"))]
impl ExecPolicy {
    pub fn admit(&self, _: &ExecRequest<'_>) -> Result<Admitted, QgaError> {
        match *self {}
    }

    pub fn files_allowed(&self) -> bool {
        match *self {}
    }
}
