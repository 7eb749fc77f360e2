//! The rules of a policy file and the check of one request against them.

use std::ffi::CStr;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::profile::ProfileSpec;
use super::ExecRequest;
use crate::sys::fd::can_execute;
use crate::sys::{find_program, Errno};

/// One `[rule NAME]`: a program with an exact argument list.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    /// Resolved like a request's program (see [`resolve_program`]).
    pub path: String,
    /// One glob pattern per argument (`*`, `?`); a last `**` allows any
    /// further arguments. None: any arguments.
    pub args: Option<Vec<String>>,
}

/// The parsed policy file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Policy {
    /// The file it came from, named in refusals.
    pub source: String,
    /// `[exec] allow`: programs that may run with any arguments.
    pub allow: Vec<String>,
    pub rules: Vec<Rule>,
    /// `[exec] users`: who an exec may run as (names or uids); None: anyone.
    pub users: Option<Vec<String>>,
    /// `[exec] default-user`: who a request without `user` runs as.
    pub default_user: Option<String>,
    /// `[exec] cwd`: directories (and what is below them) a request may
    /// name as its `cwd`, canonical; None: any.
    pub cwd: Option<Vec<PathBuf>>,
    /// `[exec] env-deny`: glob patterns of variable names a request may
    /// not set (in `env`, merged or not).
    pub env_deny: Vec<String>,
    /// `[exec] input-data`, `terminal`, `stream`: the extensions allowed.
    pub input_data: bool,
    pub terminal: bool,
    pub stream: bool,
    /// `[exec] files`: the guest-file-* commands (off: disabled, as with
    /// `--block-rpcs`, and guest-info says so).
    pub files: bool,
    /// `[exec] profiles`: profiles a request may choose with `profile`.
    pub selectable: Vec<String>,
    /// `[exec] default-profile`: the profile of a request without one.
    pub default_profile: Option<String>,
    pub profiles: Vec<ProfileSpec>,
}

/// A request the policy lets through, and how it is to run.
#[derive(Debug)]
pub struct Allowed<'a> {
    /// The resolved program: what is executed (argv[0] stays as given).
    pub program: String,
    /// Who it runs as: the request's `user`, else `default-user`.
    pub user: Option<String>,
    pub profile: Option<&'a ProfileSpec>,
}

/// Why a request was refused (worded for the client and the audit).
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal(pub String);

/// `*` and `?` glob match of a whole string (no character classes).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was and what it had matched up to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == b'?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Arguments against a rule's patterns: one pattern per argument, a last
/// `**` takes any further ones.
fn args_match(patterns: &[String], args: &[String]) -> bool {
    match patterns.split_last() {
        Some((last, head)) if last == "**" => {
            args.len() >= head.len() && head.iter().zip(args).all(|(p, a)| glob_match(p, a))
        }
        _ => patterns.len() == args.len() && patterns.iter().zip(args).all(|(p, a)| glob_match(p, a)),
    }
}

/// `path` made absolute against `base`, its directory canonical (symlinks
/// and `..` resolved) and its own name kept: a busybox applet stays
/// `/bin/uptime`, not `/bin/busybox`, while a link elsewhere is itself.
/// None when the directory does not exist.
pub fn resolve_in(path: &Path, base: &Path) -> Option<PathBuf> {
    let abs = if path.is_absolute() { path.to_path_buf() } else { base.join(path) };
    let name = abs.file_name()?.to_owned();
    let dir = abs.parent()?.canonicalize().ok()?;
    Some(dir.join(name))
}

/// Where the child's program is: the candidate the spawn would execute
/// (PATH search as GLib's, an executable regular file), resolved by
/// [`resolve_in`] against the child's directory. The errno is the one the
/// spawn would report.
pub fn resolve_program(name: &str, search: &[u8], cwd: Option<&str>) -> Result<PathBuf, Errno> {
    let usable = |p: &CStr| -> Result<(), Errno> {
        let meta = std::fs::metadata(OsStr::from_bytes(p.to_bytes())).map_err(|e| Errno::of(&e))?;
        if meta.is_dir() || !p.to_str().is_ok_and(can_execute) {
            return Err(Errno(crate::sys::libc::EACCES));
        }
        Ok(())
    };
    let found = find_program(name.as_bytes(), search, usable)?;
    let base = match cwd {
        Some(d) => PathBuf::from(d),
        None => std::env::current_dir().map_err(|e| Errno::of(&e))?,
    };
    resolve_in(Path::new(OsStr::from_bytes(found.to_bytes())), &base).ok_or(Errno(crate::sys::libc::ENOENT))
}

/// A user as a uid, for comparing names with numbers.
fn uid_of(user: &str) -> Option<u32> {
    match crate::sys::user::lookup(user) {
        Ok(Some(pw)) => Some(pw.uid),
        _ => user.parse().ok(),
    }
}

impl Policy {
    /// The profile called `name`.
    pub fn profile(&self, name: &str) -> Option<&ProfileSpec> {
        self.profiles.iter().find(|p| p.name == name)
    }

    fn refuse(&self, what: String, key: &str) -> Refusal {
        Refusal(format!("{what} (exec policy {}: {key})", self.source))
    }

    /// Checks `req` against every rule, in the order a request is built:
    /// extensions, profile, user, directory, environment, program and
    /// arguments. The program is resolved (it must exist to be allowed).
    pub fn check(&self, req: &ExecRequest<'_>) -> Result<Allowed<'_>, Refusal> {
        if req.input_data && !self.input_data {
            return Err(self.refuse("input-data is not allowed".into(), "[exec] input-data"));
        }
        if req.terminal && !self.terminal {
            return Err(self.refuse("terminals are not allowed".into(), "[exec] terminal"));
        }
        if req.stream && !self.stream {
            return Err(self.refuse("streaming is not allowed".into(), "[exec] stream"));
        }
        let profile = match req.profile {
            Some(name) if !self.selectable.iter().any(|p| p == name) => {
                return Err(self.refuse(format!("profile '{name}' may not be chosen"), "[exec] profiles"));
            }
            Some(name) => self.profile(name),
            None => self.default_profile.as_deref().and_then(|n| self.profile(n)),
        };
        let user = req.user.map(str::to_string).or_else(|| self.default_user.clone());
        if let Some(allowed) = &self.users {
            // A request without a user runs as the agent's own.
            let who = user.clone().unwrap_or_else(|| crate::sys::process::geteuid().to_string());
            let uid = uid_of(&who);
            if !allowed.iter().any(|a| a == &who || (uid.is_some() && uid_of(a) == uid)) {
                return Err(self.refuse(format!("user '{who}' is not allowed"), "[exec] users"));
            }
        }
        if let (Some(dirs), Some(cwd)) = (&self.cwd, req.cwd) {
            let canon = Path::new(cwd).canonicalize().ok();
            if !canon.is_some_and(|c| dirs.iter().any(|d| c.starts_with(d))) {
                return Err(self.refuse(format!("working directory '{cwd}' is not allowed"), "[exec] cwd"));
            }
        }
        for kv in req.env.unwrap_or_default() {
            let name = kv.split_once('=').map_or(kv.as_str(), |(k, _)| k);
            if let Some(p) = self.env_deny.iter().find(|p| glob_match(p, name)) {
                return Err(self.refuse(format!("environment variable '{name}' matches '{p}'"), "[exec] env-deny"));
            }
        }
        let program = resolve_program(req.path, req.search_path, req.cwd)
            .map_err(|e| self.refuse(format!("program '{}' cannot be run ({e})", req.path), "[exec] allow"))?;
        let program = program.to_string_lossy().into_owned();
        let any_program = self.allow.is_empty() && self.rules.is_empty();
        let listed = self.allow.contains(&program);
        let by_rule =
            || self.rules.iter().any(|r| r.path == program && r.args.as_ref().is_none_or(|a| args_match(a, req.args)));
        if !(any_program || listed || by_rule()) {
            let named = self.rules.iter().any(|r| r.path == program);
            return Err(match named {
                true => self.refuse(format!("arguments of '{program}' match no rule"), "[rule]"),
                false => self.refuse(format!("program '{program}' is not allowed"), "[exec] allow"),
            });
        }
        Ok(Allowed { program, user, profile })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn globs() {
        for (p, t, want) in [
            ("LD_*", "LD_PRELOAD", true),
            ("LD_*", "XLD_PRELOAD", false),
            ("*", "", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("*.log", "x.log.1", false),
            ("*x*y", "axbxcy", true),
            ("BASH_ENV", "BASH_ENV", true),
            ("BASH_ENV", "BASH_ENVX", false),
        ] {
            assert_eq!(glob_match(p, t), want, "{p} vs {t}");
        }
    }

    #[test]
    fn argument_patterns() {
        assert!(args_match(&s(&["status", "*"]), &s(&["status", "sshd"])));
        assert!(!args_match(&s(&["status", "*"]), &s(&["status"])));
        assert!(!args_match(&s(&["status", "*"]), &s(&["status", "a", "b"])));
        assert!(args_match(&s(&["-u", "**"]), &s(&["-u", "a", "b"])));
        assert!(args_match(&s(&["-u", "**"]), &s(&["-u"])));
        assert!(!args_match(&s(&["-u", "**"]), &s(&["-x"])));
        assert!(args_match(&s(&[]), &s(&[])));
        assert!(!args_match(&s(&[]), &s(&["a"])));
    }

    #[test]
    fn resolution_keeps_the_name_and_canonicalizes_the_directory() {
        let dir = std::env::temp_dir().join(format!("qga-policy-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("real")).unwrap();
        std::os::unix::fs::symlink(dir.join("real"), dir.join("link")).unwrap();
        let canon = dir.canonicalize().unwrap();
        assert_eq!(resolve_in(Path::new("link/prog"), &dir), Some(canon.join("real/prog")));
        assert_eq!(resolve_in(Path::new("/x/../nonexistent-dir/y"), &dir), None);
        assert_eq!(resolve_in(&dir.join("real/../real/p"), Path::new("/")), Some(canon.join("real/p")));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn policy() -> Policy {
        Policy {
            source: "test.conf".into(),
            allow: vec![resolve_program("sh", b"/bin:/usr/bin", None).unwrap().to_string_lossy().into()],
            input_data: true,
            terminal: false,
            stream: true,
            files: true,
            env_deny: s(&["LD_*", "BASH_ENV"]),
            ..Policy::default()
        }
    }

    fn req<'a>(path: &'a str, args: &'a [String]) -> ExecRequest<'a> {
        ExecRequest {
            path,
            args,
            user: None,
            cwd: None,
            env: None,
            search_path: b"/bin:/usr/bin",
            input_data: false,
            terminal: false,
            stream: false,
            profile: None,
        }
    }

    #[test]
    fn requests_against_the_policy() {
        let p = policy();
        let none = Vec::new();
        assert!(p.check(&req("sh", &none)).is_ok());
        let e = p.check(&req("cat", &none)).unwrap_err();
        assert!(e.0.contains("is not allowed") && e.0.contains("[exec] allow"), "{e:?}");
        let e = p.check(&ExecRequest { terminal: true, ..req("sh", &none) }).unwrap_err();
        assert!(e.0.contains("terminals"), "{e:?}");
        let env = s(&["A=1", "LD_PRELOAD=/x.so"]);
        let e = p.check(&ExecRequest { env: Some(&env), ..req("sh", &none) }).unwrap_err();
        assert!(e.0.contains("'LD_PRELOAD' matches 'LD_*'"), "{e:?}");
        let e = p.check(&req("no-such-program-here", &none)).unwrap_err();
        assert!(e.0.contains("cannot be run"), "{e:?}");
        let e = p.check(&ExecRequest { profile: Some("x"), ..req("sh", &none) }).unwrap_err();
        assert!(e.0.contains("profile 'x' may not be chosen"), "{e:?}");
    }

    #[test]
    fn rules_match_exact_argv() {
        let echo = resolve_program("echo", b"/bin:/usr/bin", None).unwrap().to_string_lossy().into_owned();
        let p = Policy {
            allow: Vec::new(),
            rules: vec![Rule { name: "hello".into(), path: echo, args: Some(s(&["hello", "*"])) }],
            ..policy()
        };
        assert!(p.check(&req("echo", &s(&["hello", "world"]))).is_ok());
        let e = p.check(&req("echo", &s(&["bye", "world"]))).unwrap_err();
        assert!(e.0.contains("match no rule"), "{e:?}");
        assert!(p.check(&req("sh", &s(&[]))).is_err());
    }

    #[test]
    fn users_and_directories() {
        let p = Policy {
            users: Some(s(&["nobody"])),
            cwd: Some(vec![PathBuf::from("/tmp").canonicalize().unwrap()]),
            ..policy()
        };
        let none = Vec::new();
        // Without `user` the agent's own (root here, or the test's uid).
        assert!(p.check(&req("sh", &none)).is_err());
        assert!(p.check(&ExecRequest { user: Some("nobody"), ..req("sh", &none) }).is_ok());
        let with_default = Policy { default_user: Some("nobody".into()), ..p.clone() };
        assert_eq!(with_default.check(&req("sh", &none)).unwrap().user.as_deref(), Some("nobody"));
        assert!(p.check(&ExecRequest { user: Some("nobody"), cwd: Some("/tmp"), ..req("sh", &none) }).is_ok());
        let e = p.check(&ExecRequest { user: Some("nobody"), cwd: Some("/"), ..req("sh", &none) }).unwrap_err();
        assert!(e.0.contains("working directory '/'"), "{e:?}");
    }
}
