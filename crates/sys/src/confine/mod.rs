//! Confinement of exec's children (issue 23's profiles): rlimits,
//! no_new_privs, a Landlock ruleset, a seccomp filter and a cgroup v2 leaf.
//!
//! Everything here is built in the agent, once per profile (a
//! [`Confinement`] kept in an `Rc`), and only *installed* in the forked
//! child by `spawn/fork.rs`, with raw syscalls that neither allocate nor
//! take locks (the crates' own `restrict_self()` / `apply_filter()` set
//! no_new_privs on their own and allocate their errors). The child's order:
//! cgroup, rlimits, no_new_privs, Landlock, seccomp, then credentials,
//! directory, fds, exec (see `fork.rs`).
//!
//! Files: `landlock.rs` (the ruleset, built with the `landlock` crate),
//! `seccomp.rs` (the deny list, compiled with `seccompiler`), `cgroup.rs`
//! (cgroup v2 leaves; no crate). Without the `confine` feature the types
//! stay, so the agent compiles either way: building a ruleset or a filter
//! then says it is not built in.

pub mod cgroup;
mod landlock;
mod seccomp;

use std::fmt;
use std::path::PathBuf;

use super::Errno;

pub use self::landlock::{landlock_abi, LandlockBuild, LandlockMode, LandlockRuleset};
pub use self::seccomp::{known_syscalls, SeccompFilter, DANGEROUS_SYSCALLS};

/// What a profile does to a child before it execs; compiled once.
#[derive(Debug, Default)]
pub struct Confinement {
    /// `prctl(PR_SET_NO_NEW_PRIVS)`: setuid bits and file capabilities
    /// no longer raise privileges in the child and what it execs.
    pub no_new_privs: bool,
    pub rlimits: Vec<Rlimit>,
    pub landlock: Option<LandlockRuleset>,
    pub seccomp: Option<SeccompFilter>,
}

/// The resource limits a profile may set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RlimitResource {
    Cpu,
    As,
    Nofile,
    Nproc,
    Fsize,
    Core,
}

impl RlimitResource {
    /// The profile's name of a limit (`ulimit`'s / prlimit's lower-case
    /// names): cpu, as, nofile, nproc, fsize, core.
    pub fn from_name(name: &str) -> Option<RlimitResource> {
        Some(match name {
            "cpu" => RlimitResource::Cpu,
            "as" => RlimitResource::As,
            "nofile" => RlimitResource::Nofile,
            "nproc" => RlimitResource::Nproc,
            "fsize" => RlimitResource::Fsize,
            "core" => RlimitResource::Core,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            RlimitResource::Cpu => "cpu",
            RlimitResource::As => "as",
            RlimitResource::Nofile => "nofile",
            RlimitResource::Nproc => "nproc",
            RlimitResource::Fsize => "fsize",
            RlimitResource::Core => "core",
        }
    }
}

/// One limit: soft and hard, in the kernel's units (seconds for cpu,
/// bytes for as/fsize/core, counts otherwise); `u64::MAX` is unlimited
/// (RLIM_INFINITY).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    pub resource: RlimitResource,
    pub soft: u64,
    pub hard: u64,
}

impl Rlimit {
    /// `setrlimit(2)` on the calling process. Async-signal-safe (the forked
    /// child calls it); -1 and errno on failure.
    pub(crate) fn apply_raw(&self) -> libc::c_int {
        let lim = libc::rlimit { rlim_cur: self.soft as libc::rlim_t, rlim_max: self.hard as libc::rlim_t };
        let res = match self.resource {
            RlimitResource::Cpu => libc::RLIMIT_CPU,
            RlimitResource::As => libc::RLIMIT_AS,
            RlimitResource::Nofile => libc::RLIMIT_NOFILE,
            RlimitResource::Nproc => libc::RLIMIT_NPROC,
            RlimitResource::Fsize => libc::RLIMIT_FSIZE,
            RlimitResource::Core => libc::RLIMIT_CORE,
        };
        // SAFETY: setrlimit reads a local struct; it only changes this process's limits.
        unsafe { libc::setrlimit(res, &lim) }
    }
}

/// `prctl(PR_SET_NO_NEW_PRIVS, 1)` on the calling thread; in the forked
/// child. -1 and errno on failure.
pub(crate) fn set_no_new_privs_raw() -> libc::c_int {
    // SAFETY: prctl with integer arguments only; it changes only this process.
    unsafe {
        libc::prctl(
            libc::PR_SET_NO_NEW_PRIVS,
            1 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    }
}

/// Why a profile's confinement could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfineError {
    /// A seccomp deny list names a system call this agent does not know.
    UnknownSyscall(String),
    /// The agent was built without the `confine` feature ("seccomp",
    /// "landlock").
    NotBuilt(&'static str),
    /// Landlock is required but missing, or the ruleset could not be built
    /// (the crate's or the kernel's words).
    Landlock(String),
    /// A path of a required Landlock ruleset cannot be opened.
    Path(PathBuf, Errno),
    /// seccompiler refused the filter (its words).
    Seccomp(String),
}

impl fmt::Display for ConfineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfineError::UnknownSyscall(name) => write!(f, "unknown system call \u{201C}{name}\u{201D}"),
            ConfineError::NotBuilt(what) => write!(f, "{what} confinement is not built into this agent"),
            ConfineError::Landlock(why) => write!(f, "Landlock: {why}"),
            ConfineError::Path(p, e) => write!(f, "Landlock path \u{201C}{}\u{201D}: {e}", p.display()),
            ConfineError::Seccomp(why) => write!(f, "seccomp: {why}"),
        }
    }
}

impl std::error::Error for ConfineError {}

#[cfg(test)]
mod tests;
