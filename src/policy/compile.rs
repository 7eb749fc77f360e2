//! Profiles made ready to apply: each `[profile]` compiled once at
//! start-up into a `sys::confine::Confinement` (rlimits, no_new_privs, a
//! Landlock ruleset, a seccomp filter), and the cgroup v2 directory the
//! per-exec leaves go in. A profile the kernel cannot honour as asked
//! (Landlock `required` without Landlock, cgroup limits without cgroup2,
//! a layer not built in) stays defined but refuses every exec that would
//! use it, with the reason: a profile is never silently weaker than
//! written, except where the owner said `best-effort`.

use std::cell::Cell;
use std::path::PathBuf;
use std::rc::Rc;

use super::profile::{LandlockWant, ProfileSpec};
use super::rules::Policy;
use crate::exec::{ConfineReport, Confined};
use crate::log;
use crate::protocol::QgaError;
use crate::sys::confine::cgroup::{self, Cgroup, CgroupLimits};
use crate::sys::confine::{
    Confinement, LandlockBuild, LandlockMode, LandlockRuleset, Rlimit, RlimitResource, SeccompFilter,
    DANGEROUS_SYSCALLS,
};

/// Controllers a profile's limits need.
const CONTROLLERS: &[&str] = &["memory", "pids", "cpu"];

/// One compiled profile.
#[derive(Debug)]
struct Compiled {
    name: String,
    /// What every child of the profile gets, or why none can run.
    confinement: Result<Rc<Confinement>, String>,
    cgroup: Option<CgroupLimits>,
    landlock: Option<&'static str>,
    landlock_abi: Option<i32>,
}

/// The owner's policy with its profiles ready to apply.
#[derive(Debug)]
pub struct ExecPolicy {
    pub rules: Policy,
    profiles: Vec<Compiled>,
    /// Where per-exec cgroups are made, or why they cannot be.
    cgroup_base: Option<Result<PathBuf, String>>,
    /// Names the next cgroup leaf.
    leaves: Cell<u64>,
}

fn rlimit_resource(name: &str) -> Option<RlimitResource> {
    RlimitResource::from_name(name)
}

/// A profile built: its confinement, or why the kernel (or this build)
/// cannot give it, and what its status says of Landlock.
struct Built {
    confinement: Result<Confinement, String>,
    landlock: Option<&'static str>,
    landlock_abi: Option<i32>,
}

/// Builds one profile; Err: the profile itself is wrong.
fn compile_one(spec: &ProfileSpec) -> Result<Built, String> {
    let mut rlimits = Vec::new();
    for (name, soft, hard) in &spec.rlimits {
        let resource = rlimit_resource(name).ok_or_else(|| format!("unknown rlimit '{name}'"))?;
        rlimits.push(Rlimit { resource, soft: *soft, hard: *hard });
    }
    let mut unusable = None;
    let (landlock, state, abi) = match spec.landlock {
        None => (None, None, None),
        Some(want) => {
            let paths = |l: &[String]| l.iter().map(PathBuf::from).collect::<Vec<_>>();
            let mode = match want {
                LandlockWant::Required => LandlockMode::Required,
                LandlockWant::BestEffort => LandlockMode::BestEffort,
            };
            match LandlockRuleset::build(&paths(&spec.landlock_read), &paths(&spec.landlock_write), mode) {
                Ok(LandlockBuild::Enforced { ruleset, abi, partial }) => {
                    (Some(ruleset), Some(if partial { "partial" } else { "enforced" }), Some(abi))
                }
                Ok(LandlockBuild::Unsupported { reason }) => {
                    log::warning(&format!("profile '{}': Landlock not enforced: {reason}", spec.name));
                    (None, Some("unsupported"), None)
                }
                Err(e) => {
                    unusable = Some(format!("profile '{}' requires Landlock: {e}", spec.name));
                    (None, Some("unsupported"), None)
                }
            }
        }
    };
    let mut names: Vec<&str> = Vec::new();
    if spec.seccomp_dangerous {
        names.extend(DANGEROUS_SYSCALLS);
    }
    names.extend(spec.seccomp_deny.iter().map(String::as_str));
    let seccomp = match names.is_empty() {
        true => None,
        false => match SeccompFilter::deny(&names) {
            Ok(f) => Some(f),
            Err(e @ crate::sys::confine::ConfineError::UnknownSyscall(_)) => return Err(e.to_string()),
            Err(e) => {
                unusable.get_or_insert(format!("profile '{}' asks for a seccomp filter: {e}", spec.name));
                None
            }
        },
    };
    let c = Confinement { no_new_privs: spec.no_new_privs, rlimits, landlock, seccomp };
    Ok(Built { confinement: unusable.map_or(Ok(c), Err), landlock: state, landlock_abi: abi })
}

/// Delegates the controllers to `dir`'s children. One the kernel lacks is
/// only logged: a profile that sets its limit then fails to create its
/// leaf, and its execs are refused with the reason.
fn enable(dir: &std::path::Path) {
    for (name, e) in cgroup::enable_controllers(dir, CONTROLLERS).err().unwrap_or_default() {
        log::warning(&format!("cannot enable the {name} controller in {}: {e}", dir.display()));
    }
}

/// Prepares the directory per-exec cgroups are made in: the agent's own
/// cgroup when it runs in one (the agent itself moves to a leaf `agent`
/// below it, as cgroup v2 allows no processes where controllers are
/// delegated; under systemd the unit needs `Delegate=yes`), or `qga`
/// below the root in PID 1 mode.
fn cgroup_base() -> Result<PathBuf, String> {
    let mount = cgroup::v2_mount().ok_or("cgroup2 is not mounted")?;
    let own = cgroup::own_cgroup().ok_or("the agent's cgroup is unknown (/proc/self/cgroup)")?;
    let fail = |what: &str, e: crate::sys::Errno| format!("{what}: {e}");
    let own_dir = mount.join(own.trim_start_matches('/'));
    let base = if own == "/" {
        let base = mount.join("qga");
        enable(&mount);
        match std::fs::create_dir(&base) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(fail(&format!("creating {}", base.display()), crate::sys::Errno::of(&e))),
        }
        base
    } else {
        let leaf = own_dir.join("agent");
        match std::fs::create_dir(&leaf) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(fail(&format!("creating {}", leaf.display()), crate::sys::Errno::of(&e))),
        }
        cgroup::move_self(&leaf).map_err(|e| fail(&format!("moving the agent to {}", leaf.display()), e))?;
        own_dir
    };
    enable(&base);
    // Leaves left by an earlier instance: the empty ones go.
    if let Ok(dir) = std::fs::read_dir(&base) {
        for e in dir.flatten() {
            if e.file_name().to_string_lossy().starts_with("exec-") {
                let _ = std::fs::remove_dir(e.path());
            }
        }
    }
    Ok(base)
}

/// Leaves tried before giving up: a leaf still populated by a daemon of an
/// earlier agent keeps its name, and the next free one is taken.
const LEAF_TRIES: u32 = 64;

impl ExecPolicy {
    /// A new cgroup leaf `exec-N` below `base` with `limits`.
    fn new_leaf(&self, base: &std::path::Path, limits: &CgroupLimits) -> Result<Cgroup, String> {
        for _ in 0..LEAF_TRIES {
            let n = self.leaves.get() + 1;
            self.leaves.set(n);
            let name = format!("exec-{n}");
            match Cgroup::create(base, &name, limits) {
                Err(crate::sys::Errno(crate::sys::libc::EEXIST)) => continue,
                r => return r.map_err(|e| format!("cannot create cgroup {}/{name}: {e}", base.display())),
            }
        }
        Err(format!("no free cgroup leaf name below {}", base.display()))
    }

    /// Compiles every profile of `rules`; Err: the policy is wrong (an
    /// unknown syscall name...), and the agent does not start with it.
    pub fn new(rules: Policy) -> Result<ExecPolicy, String> {
        let mut profiles = Vec::new();
        for spec in &rules.profiles {
            let Built { confinement, landlock, landlock_abi } =
                compile_one(spec).map_err(|e| format!("[profile {}]: {e}", spec.name))?;
            if let Err(why) = &confinement {
                log::warning(&format!("{why}: its execs will be refused"));
            }
            let cgroup = spec.cgroup.as_ref().map(|c| CgroupLimits {
                memory_max: c.memory_max,
                pids_max: c.pids_max,
                cpu_max: c.cpu_max,
            });
            profiles.push(Compiled {
                name: spec.name.clone(),
                confinement: confinement.map(Rc::new),
                cgroup,
                landlock,
                landlock_abi,
            });
        }
        let cgroup_base = profiles
            .iter()
            .any(|p| p.cgroup.is_some())
            .then(|| cgroup_base().inspect_err(|e| log::warning(&format!("per-exec cgroups unavailable: {e}"))));
        Ok(ExecPolicy { rules, profiles, cgroup_base, leaves: Cell::new(0) })
    }

    /// What a child of profile `spec` runs under: the compiled
    /// confinement and, with limits, a new cgroup leaf of its own.
    pub fn prepare(&self, spec: &ProfileSpec) -> Result<(Rc<Confinement>, Confined), QgaError> {
        let refuse = |why: &str| QgaError::generic(format!("guest-exec refused: {why}"));
        let p = self.profiles.iter().find(|p| p.name == spec.name).ok_or_else(|| refuse("unknown profile"))?;
        let confinement = p.confinement.as_ref().map_err(|why| refuse(why))?.clone();
        let cgroup = match &p.cgroup {
            None => None,
            Some(limits) => {
                let base = match &self.cgroup_base {
                    Some(Ok(b)) => b,
                    Some(Err(why)) => return Err(refuse(&format!("profile '{}' needs a cgroup: {why}", p.name))),
                    None => return Err(refuse("no cgroup base")),
                };
                Some(self.new_leaf(base, limits).map_err(|e| refuse(&e))?)
            }
        };
        let report = ConfineReport {
            profile: p.name.clone(),
            no_new_privs: confinement.no_new_privs,
            landlock: p.landlock,
            landlock_abi: p.landlock_abi,
            seccomp: confinement.seccomp.is_some(),
        };
        Ok((confinement, Confined { report, cgroup }))
    }
}
