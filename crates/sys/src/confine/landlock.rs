//! The Landlock file-system ruleset of a profile: built in the agent with
//! the `landlock` crate (ABI negotiation, best effort or required), kept
//! as the ruleset's fd, and enforced in the forked child by one raw
//! `landlock_restrict_self(fd, 0)` (the kernel's sandboxer.c does the
//! same; the agent is root, so no no_new_privs is needed for it).

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

use super::ConfineError;

/// What a kernel without Landlock (or without all of a ruleset) means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LandlockMode {
    /// Landlock must be enforced and every path must exist; otherwise
    /// building fails (the exec is refused). Access rights newer than the
    /// kernel are still left out (`partial`).
    Required,
    /// Enforce what the kernel supports; paths that do not exist are left
    /// out; no Landlock at all is [`LandlockBuild::Unsupported`].
    BestEffort,
}

/// A created ruleset: its fd (close-on-exec) and the kernel's ABI version.
#[derive(Debug)]
pub struct LandlockRuleset {
    fd: OwnedFd,
    abi: i32,
}

/// The outcome of [`LandlockRuleset::build`].
#[derive(Debug)]
pub enum LandlockBuild {
    /// `partial`: the kernel's ABI lacks some access right this agent
    /// knows (those are not restricted).
    Enforced { ruleset: LandlockRuleset, abi: i32, partial: bool },
    /// Best effort on a kernel (or a build) without Landlock: the child
    /// runs unrestricted by it.
    Unsupported { reason: &'static str },
}

/// `LANDLOCK_CREATE_RULESET_VERSION` (linux/landlock.h).
const CREATE_RULESET_VERSION: libc::c_uint = 1;

/// The running kernel's Landlock ABI version; None without Landlock (not
/// built: ENOSYS; not enabled at boot: EOPNOTSUPP).
pub fn landlock_abi() -> Option<i32> {
    // SAFETY: landlock_create_ruleset(NULL, 0, VERSION) reads no memory and creates no fd.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            CREATE_RULESET_VERSION,
        )
    };
    (v > 0).then_some(v as i32)
}

impl LandlockRuleset {
    /// Builds the ruleset: `read_only` paths may be read, listed and
    /// executed beneath; `read_write` paths get every file-system right the
    /// ABI knows; everything else is denied. Only file-system rights are
    /// handled (not network, not scopes).
    pub fn build(
        read_only: &[PathBuf],
        read_write: &[PathBuf],
        mode: LandlockMode,
    ) -> Result<LandlockBuild, ConfineError> {
        build(read_only, read_write, mode)
    }

    pub fn abi(&self) -> i32 {
        self.abi
    }

    /// `landlock_restrict_self(fd, 0)` on the calling thread, in the forked
    /// child (async-signal-safe). -1 and errno on failure.
    pub(crate) fn restrict_self_raw(&self) -> libc::c_long {
        // SAFETY: takes an fd and flags only; it restricts only the calling thread.
        unsafe { libc::syscall(libc::SYS_landlock_restrict_self, self.fd.as_raw_fd(), 0 as libc::c_uint) }
    }
}

#[cfg(not(feature = "confine"))]
fn build(_ro: &[PathBuf], _rw: &[PathBuf], mode: LandlockMode) -> Result<LandlockBuild, ConfineError> {
    match mode {
        LandlockMode::Required => Err(ConfineError::NotBuilt("landlock")),
        LandlockMode::BestEffort => Ok(LandlockBuild::Unsupported { reason: "not built in" }),
    }
}

#[cfg(feature = "confine")]
fn build(read_only: &[PathBuf], read_write: &[PathBuf], mode: LandlockMode) -> Result<LandlockBuild, ConfineError> {
    use landlock::{
        Access, AccessFs, CompatLevel, Compatible, PathBeneath, PathFd, PathFdError, Ruleset, RulesetAttr,
        RulesetCreatedAttr, ABI,
    };

    // The newest ABI this agent's rights are written for (the crate's newest).
    const TARGET: ABI = ABI::V10;
    let Some(abi) = landlock_abi() else {
        return match mode {
            LandlockMode::Required => {
                Err(ConfineError::Landlock("the kernel has no Landlock (not built, or not enabled at boot)".into()))
            }
            LandlockMode::BestEffort => Ok(LandlockBuild::Unsupported { reason: "kernel without Landlock" }),
        };
    };
    let ll = describe;
    let level = match mode {
        LandlockMode::Required => CompatLevel::HardRequirement,
        LandlockMode::BestEffort => CompatLevel::BestEffort,
    };
    // ABI 1's rights are what "required" requires; newer ones are taken
    // where the kernel has them.
    let mut created = Ruleset::default()
        .set_compatibility(level)
        .handle_access(AccessFs::from_all(ABI::V1))
        .map_err(ll)?
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(TARGET))
        .map_err(ll)?
        .create()
        .map_err(ll)?;
    for (paths, access) in [(read_only, AccessFs::from_read(TARGET)), (read_write, AccessFs::from_all(TARGET))] {
        for p in paths {
            let fd = match PathFd::new(p) {
                Ok(fd) => fd,
                Err(PathFdError::OpenCall { source, .. }) if mode == LandlockMode::Required => {
                    return Err(ConfineError::Path(p.clone(), super::Errno::of(&source)));
                }
                Err(_) => continue,
            };
            // Directory-only rights on a file make the kernel refuse the rule.
            let access = match std::fs::metadata(p) {
                Ok(m) if !m.is_dir() => access & AccessFs::from_file(TARGET),
                _ => access,
            };
            created = created.add_rule(PathBeneath::new(fd, access)).map_err(ll)?;
        }
    }
    let partial = AccessFs::from_all(ABI::from(abi)) != AccessFs::from_all(TARGET);
    match Option::<OwnedFd>::from(created) {
        Some(fd) => Ok(LandlockBuild::Enforced { ruleset: LandlockRuleset { fd, abi }, abi, partial }),
        None if mode == LandlockMode::Required => Err(ConfineError::Landlock("the ruleset cannot be enforced".into())),
        None => Ok(LandlockBuild::Unsupported { reason: "the kernel cannot enforce the ruleset" }),
    }
}

/// The step that failed and the kernel's errno where there is one: the
/// crate's own Display texts cost ~9 KB of binary for errors that, after
/// the ABI check above, only a kernel refusal can cause.
#[cfg(feature = "confine")]
fn describe(e: landlock::RulesetError) -> ConfineError {
    use landlock::{AddRuleError, AddRulesError, CreateRulesetError, RulesetError};
    let (what, errno) = match &e {
        RulesetError::CreateRuleset(CreateRulesetError::CreateRulesetCall { source, .. }) => {
            ("creating the ruleset", Some(source))
        }
        RulesetError::CreateRuleset(_) => ("creating the ruleset", None),
        RulesetError::AddRules(AddRulesError::Fs(AddRuleError::AddRuleCall { source, .. })) => {
            ("adding a path", Some(source))
        }
        RulesetError::AddRules(_) => ("adding a path", None),
        RulesetError::HandleAccesses(_) => ("the kernel lacks a required access right", None),
        _ => ("building the ruleset", None),
    };
    ConfineError::Landlock(match errno {
        Some(io) => format!("{what}: {}", super::Errno::of(io)),
        None => what.to_string(),
    })
}
