//! Reading the policy file: `[exec]`, `[rule NAME]` and `[profile NAME]`
//! groups of a GKeyFile (lists separated by `;`, as GLib's). Every key is
//! checked: an unknown key or group, or a value that cannot be read, is
//! an error naming it, and the agent does not start (a policy that is
//! not what the owner meant must not be half applied).

use std::path::{Path, PathBuf};

use super::profile::ProfileSpec;
use super::profile::{parse_amount, parse_cpu_max, parse_rlimit, CgroupSpec, LandlockWant, RLIMITS};
use super::rules::{resolve_in, Policy, Rule};
use crate::config::{parse_groups, Group};

/// A GKeyFile list: `;`-separated, empty items dropped.
fn list(v: &str) -> Vec<String> {
    v.split(';').map(str::trim).filter(|x| !x.is_empty()).map(str::to_string).collect()
}

fn boolean(group: &str, key: &str, v: &str) -> Result<bool, String> {
    match v.trim() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(format!("[{group}] {key}: '{v}' is not true or false")),
    }
}

/// A program path as written in the policy: absolute, resolved as a
/// request's program is (directory canonical, name kept).
fn program_path(group: &str, key: &str, v: &str) -> Result<String, String> {
    let p = Path::new(v.trim());
    if !p.is_absolute() {
        return Err(format!("[{group}] {key}: '{v}' is not an absolute path"));
    }
    // A program in a directory that does not exist (yet) is kept as written.
    Ok(resolve_in(p, Path::new("/")).unwrap_or_else(|| p.to_path_buf()).to_string_lossy().into_owned())
}

fn exec_group(p: &mut Policy, g: &Group) -> Result<(), String> {
    for (k, v) in &g.entries {
        match k.as_str() {
            "allow" => {
                for item in list(v) {
                    p.allow.push(program_path("exec", k, &item)?);
                }
            }
            "users" => p.users = Some(list(v)),
            "default-user" => p.default_user = Some(v.trim().to_string()),
            "cwd" => {
                let mut dirs = Vec::new();
                for d in list(v) {
                    let canon = Path::new(&d).canonicalize().unwrap_or_else(|_| PathBuf::from(&d));
                    dirs.push(canon);
                }
                p.cwd = Some(dirs);
            }
            "env-deny" => p.env_deny = list(v),
            "input-data" => p.input_data = boolean("exec", k, v)?,
            "terminal" => p.terminal = boolean("exec", k, v)?,
            "stream" => p.stream = boolean("exec", k, v)?,
            "files" => p.files = boolean("exec", k, v)?,
            "profiles" => p.selectable = list(v),
            "default-profile" => p.default_profile = Some(v.trim().to_string()),
            _ => return Err(format!("[exec]: unknown key '{k}'")),
        }
    }
    Ok(())
}

fn rule_group(name: &str, g: &Group) -> Result<Rule, String> {
    let group = format!("rule {name}");
    let mut path = None;
    let mut args = None;
    for (k, v) in &g.entries {
        match k.as_str() {
            "path" => path = Some(program_path(&group, k, v)?),
            // An empty value: exactly no arguments.
            "args" => args = Some(list(v)),
            _ => return Err(format!("[{group}]: unknown key '{k}'")),
        }
    }
    let path = path.ok_or_else(|| format!("[{group}]: 'path' is missing"))?;
    Ok(Rule { name: name.to_string(), path, args })
}

fn profile_group(name: &str, g: &Group) -> Result<ProfileSpec, String> {
    let group = format!("profile {name}");
    let bad = |k: &str, v: &str, what: &str| format!("[{group}] {k}: '{v}' is not {what}");
    let mut p = ProfileSpec { name: name.to_string(), ..ProfileSpec::default() };
    let mut cgroup: Option<CgroupSpec> = None;
    for (k, v) in &g.entries {
        let k = k.as_str();
        if let Some(res) = k.strip_prefix("rlimit-") {
            if !RLIMITS.contains(&res) {
                return Err(format!("[{group}]: unknown key '{k}' (rlimits: {})", RLIMITS.join(", ")));
            }
            let (soft, hard) = parse_rlimit(v).ok_or_else(|| bad(k, v, "a limit (N, SOFT:HARD, unlimited)"))?;
            p.rlimits.retain(|(r, _, _)| r != res);
            p.rlimits.push((res.to_string(), soft, hard));
            continue;
        }
        match k {
            "no-new-privs" => p.no_new_privs = boolean(&group, k, v)?,
            "landlock" => {
                p.landlock = match v.trim() {
                    "required" => Some(LandlockWant::Required),
                    "best-effort" => Some(LandlockWant::BestEffort),
                    "off" => None,
                    _ => return Err(bad(k, v, "required, best-effort or off")),
                }
            }
            "landlock-read" => p.landlock_read = list(v),
            "landlock-write" => p.landlock_write = list(v),
            "seccomp" => match v.trim() {
                "deny-dangerous" => p.seccomp_dangerous = true,
                "off" => p.seccomp_dangerous = false,
                _ => return Err(bad(k, v, "deny-dangerous or off")),
            },
            "seccomp-deny" => p.seccomp_deny = list(v),
            "cgroup" => {
                if boolean(&group, k, v)? {
                    cgroup.get_or_insert_with(CgroupSpec::default);
                }
            }
            "memory-max" => {
                cgroup.get_or_insert_with(CgroupSpec::default).memory_max =
                    Some(parse_amount(v).ok_or_else(|| bad(k, v, "a size"))?)
            }
            "pids-max" => {
                cgroup.get_or_insert_with(CgroupSpec::default).pids_max =
                    Some(parse_amount(v).ok_or_else(|| bad(k, v, "a number"))?)
            }
            "cpu-max" => {
                cgroup.get_or_insert_with(CgroupSpec::default).cpu_max =
                    Some(parse_cpu_max(v).ok_or_else(|| bad(k, v, "N% or QUOTA PERIOD (microseconds)"))?)
            }
            _ => return Err(format!("[{group}]: unknown key '{k}'")),
        }
    }
    if p.landlock.is_some() && p.landlock_read.is_empty() && p.landlock_write.is_empty() {
        return Err(format!("[{group}]: landlock needs landlock-read or landlock-write paths"));
    }
    p.cgroup = cgroup;
    Ok(p)
}

/// The policy in `text` (read from `source`).
pub fn parse(text: &str, source: &str) -> Result<Policy, String> {
    let mut p = Policy {
        source: source.to_string(),
        input_data: true,
        terminal: true,
        stream: true,
        files: true,
        ..Policy::default()
    };
    let mut seen_exec = false;
    for g in parse_groups(text)? {
        if g.name == "exec" {
            if std::mem::replace(&mut seen_exec, true) {
                return Err("[exec] appears twice".into());
            }
            exec_group(&mut p, &g)?;
        } else if let Some(name) = g.name.strip_prefix("rule ") {
            p.rules.push(rule_group(name.trim(), &g)?);
        } else if let Some(name) = g.name.strip_prefix("profile ") {
            let name = name.trim();
            if p.profiles.iter().any(|x| x.name == name) {
                return Err(format!("[profile {name}] appears twice"));
            }
            p.profiles.push(profile_group(name, &g)?);
        } else {
            return Err(format!("unknown group [{}]", g.name));
        }
    }
    for name in p.selectable.iter().chain(&p.default_profile) {
        if p.profile(name).is_none() {
            return Err(format!("[exec]: profile '{name}' is not defined"));
        }
    }
    Ok(p)
}

/// The policy file at `path`, or why it cannot be used.
pub fn load(path: &str) -> Result<Policy, String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read exec policy {path}: {e}"))?;
    let text = String::from_utf8(text).map_err(|_| format!("exec policy {path} is not UTF-8"))?;
    parse(&text, path).map_err(|e| format!("exec policy {path}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "\
# a fleet guest
[exec]
allow=/bin/sh;/usr/bin/../bin/uptime
users=root;nobody
default-user=nobody
cwd=/tmp
env-deny=LD_*;BASH_ENV
terminal=false
files=false
profiles=diag
default-profile=diag

[rule journal]
path=/bin/journalctl
args=-u;*;**

[profile diag]
no-new-privs=true
rlimit-nofile=256
rlimit-cpu=10:20
landlock=best-effort
landlock-read=/usr;/bin
landlock-write=/tmp
seccomp=deny-dangerous
seccomp-deny=unshare
memory-max=256M
pids-max=64
cpu-max=50%
";

    #[test]
    fn an_example_policy() {
        let p = parse(EXAMPLE, "x.conf").unwrap();
        assert_eq!(p.allow[0], Path::new("/bin").canonicalize().unwrap().join("sh").to_string_lossy());
        assert!(p.allow[1].ends_with("/bin/uptime"), "{:?}", p.allow);
        assert_eq!(p.users.as_deref(), Some(&["root".to_string(), "nobody".to_string()][..]));
        assert_eq!(p.default_user.as_deref(), Some("nobody"));
        assert!(!p.terminal && !p.files && p.stream && p.input_data);
        assert_eq!(p.rules.len(), 1);
        assert_eq!(p.rules[0].args.as_ref().unwrap().len(), 3);
        let d = p.profile("diag").unwrap();
        assert!(d.no_new_privs && d.seccomp_dangerous);
        assert_eq!(d.rlimits, vec![("nofile".into(), 256, 256), ("cpu".into(), 10, 20)]);
        assert_eq!(d.landlock, Some(LandlockWant::BestEffort));
        assert_eq!(
            d.cgroup,
            Some(CgroupSpec { memory_max: Some(256 << 20), pids_max: Some(64), cpu_max: Some((50_000, 100_000)) })
        );
    }

    #[test]
    fn mistakes_are_named() {
        for (text, want) in [
            ("[exec]\nallw=/bin/sh\n", "unknown key 'allw'"),
            ("[exec]\nallow=sh\n", "not an absolute path"),
            ("[exec]\nterminal=maybe\n", "not true or false"),
            ("[exec]\nprofiles=x\n", "profile 'x' is not defined"),
            ("[execs]\n", "unknown group [execs]"),
            ("[rule r]\nargs=a\n", "'path' is missing"),
            ("[profile p]\nrlimit-stack=1\n", "unknown key 'rlimit-stack'"),
            ("[profile p]\nmemory-max=lots\n", "is not a size"),
            ("[profile p]\nlandlock=yes\n", "required, best-effort or off"),
            ("[profile p]\nlandlock=required\n", "needs landlock-read"),
            ("[profile p]\n[profile p]\n", "appears twice"),
            ("allow=/bin/sh\n", "does not start with a group"),
        ] {
            let e = parse(text, "t").unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }
}
