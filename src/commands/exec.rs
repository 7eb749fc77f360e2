//! guest-exec, guest-exec-status and the extensions: `cwd`, `user`,
//! `timeout`, `stream`, status `wait`, and guest-exec-terminate.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::{Ctx, Outcome};
use crate::audit::Record;
use crate::exec::{ExecOptions, NewProcess};
use crate::json::utf8::to_c_string;
use crate::json::{Object, Value};
use crate::policy::ExecRequest;
use crate::protocol::{Args, Base64Arg, QgaError};
use crate::sys::libc;
use crate::sys::process::Pid;
use crate::sys::pty::Winsize;
use crate::sys::signal::max_signal;
use crate::sys::spawn::{Credentials, Redirect, SpawnSpec};
use crate::sys::user::Passwd;
use crate::sys::{self, Errno};

/// Longest `wait` a status call may ask for, in seconds.
pub const MAX_WAIT_SECONDS: f64 = 600.0;
/// How long a status call without `wait` is held while the process runs
/// (answered at once on its exit, or when the client sends its next
/// request; `wait: 0` answers at once). A client polling back to back
/// otherwise takes the CPU the child needs on a small guest: with one TCG
/// vCPU, `/bin/true` was polled 26 times and its run took twice as long.
/// The reply is the same as qemu-ga's; it is only sent up to 2 ms later.
const POLL_HOLD: Duration = Duration::from_millis(2);
/// Longest `timeout` a guest-exec may ask for, in seconds (a year).
pub const MAX_TIMEOUT_SECONDS: f64 = 31_536_000.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Capture {
    None,
    Stdout,
    Stderr,
    Separated,
    Merged,
}

/// The `GuestExecCaptureOutput` alternate: a bool or a mode name.
fn capture_mode(v: Option<Value>) -> Result<Capture, QgaError> {
    const NAME: &str = "capture-output";
    match v {
        None | Some(Value::Bool(false)) => Ok(Capture::None),
        Some(Value::Bool(true)) => Ok(Capture::Separated),
        Some(Value::Str(s)) => match s.as_str() {
            "none" => Ok(Capture::None),
            "stdout" => Ok(Capture::Stdout),
            "stderr" => Ok(Capture::Stderr),
            "separated" => Ok(Capture::Separated),
            "merged" => Ok(Capture::Merged),
            _ => Err(QgaError::bad_enum_value(NAME, &s)),
        },
        Some(_) => Err(QgaError::invalid_type(NAME, "GuestExecCaptureOutput")),
    }
}

/// Seconds in (0, max] as a duration, or the error for `name`. Every
/// number the protocol can carry is handled: no overflow, no panic.
fn seconds(name: &str, v: f64, max: f64) -> Result<Duration, QgaError> {
    let ok = v.is_finite() && v > 0.0 && v <= max;
    match Duration::try_from_secs_f64(v) {
        Ok(d) if ok => Ok(d),
        _ => Err(QgaError::invalid_value(name, &format!("a number of seconds greater than 0 and at most {max}"))),
    }
}

/// Checks `cwd` before anything is spawned.
fn check_cwd(dir: &str) -> Result<(), QgaError> {
    let fail = |e: Errno| QgaError::generic(format!("Cannot use '{dir}' as working directory: {e}"));
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(fail(Errno(libc::ENOTDIR))),
        Err(e) => Err(fail(Errno::of(&e))),
    }
}

/// The account `user` (a name or a uid) runs as. A bare uid without a
/// passwd entry still runs, in its own group.
fn lookup_user(user: &str) -> Result<Passwd, QgaError> {
    match (sys::user::lookup(user), user.parse::<u32>()) {
        (Ok(Some(pw)), _) => Ok(pw),
        (_, Ok(uid)) => Ok(Passwd { uid, gid: uid, name: user.to_string(), home: "/".to_string() }),
        _ => Err(QgaError::generic(format!("User '{user}' does not exist"))),
    }
}

/// The name of a `NAME=value` entry (all of it without a `=`).
fn env_name(kv: &str) -> &str {
    kv.split_once('=').map_or(kv, |(k, _)| k)
}

/// `entries` merged into `inherited`: the inherited entries whose name no
/// entry uses, in their order, then each entry that is the last of its
/// name, in the client's order (an entry replaces the inherited ones and
/// any earlier entry of the same name). Linear: one map from name to the
/// index of its last entry (a retain per entry took 13 s of agent CPU for
/// 30,000 entries).
fn merge_env(mut inherited: Vec<String>, entries: Vec<String>) -> Vec<String> {
    let mut last: HashMap<&str, usize> = HashMap::with_capacity(entries.len());
    for (i, kv) in entries.iter().enumerate() {
        last.insert(env_name(kv), i);
    }
    inherited.retain(|kv| !last.contains_key(env_name(kv)));
    let keep: Vec<bool> = entries.iter().enumerate().map(|(i, kv)| last.get(env_name(kv)) == Some(&i)).collect();
    inherited.extend(entries.into_iter().zip(keep).filter_map(|(kv, keep)| keep.then_some(kv)));
    inherited
}

/// The PATH a child searches (GLib's): its own environment's (the first
/// PATH entry GLib finds; merged, the last one given wins), else the
/// agent's, else GLib's default.
fn search_path(env: Option<&[String]>, merge: bool) -> Vec<u8> {
    let path = |kv: &String| kv.strip_prefix("PATH=").map(str::to_string);
    let own = env.and_then(|e| if merge { e.iter().rev().find_map(path) } else { e.iter().find_map(path) });
    match own {
        Some(p) => p.as_bytes().to_vec(),
        None => std::env::var_os("PATH").map_or_else(|| sys::spawn::DEFAULT_PATH.to_vec(), |p| p.into_encoded_bytes()),
    }
}

/// The environment a child gets, or None to inherit the agent's as it is.
/// Without `env`, a `user` gets the agent's with its HOME, USER and
/// LOGNAME; `env` replaces that, or with `merge` adds to it (same names
/// override). A terminal's child gets TERM=xterm-256color unless `env`
/// names a TERM.
fn child_env(user: Option<&Passwd>, env: Option<Vec<String>>, merge: bool, tty: bool) -> Option<Vec<String>> {
    let inherited = || -> Vec<String> {
        let own = std::env::vars().map(|(k, v)| format!("{k}={v}"));
        match user {
            None => own.collect(),
            Some(pw) => own
                .filter(|kv| !matches!(env_name(kv), "HOME" | "USER" | "LOGNAME"))
                .chain([format!("HOME={}", pw.home), format!("USER={}", pw.name), format!("LOGNAME={}", pw.name)])
                .collect(),
        }
    };
    let client_term = env.as_ref().is_some_and(|e| e.iter().any(|kv| env_name(kv) == "TERM"));
    let mut vars = match env {
        Some(entries) if merge => merge_env(inherited(), entries),
        Some(entries) => entries,
        None if user.is_none() && !tty => return None,
        None => inherited(),
    };
    if tty && !client_term {
        vars.retain(|kv| env_name(kv) != "TERM");
        vars.push("TERM=xterm-256color".to_string());
    }
    Some(vars)
}

/// A terminal dimension: 1 to 65535 cells.
fn cells(name: &str, v: Option<i64>, default: u16) -> Result<u16, QgaError> {
    match v {
        None => Ok(default),
        Some(n) => u16::try_from(n)
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| QgaError::invalid_value(name, "a number of cells from 1 to 65535")),
    }
}

/// What the audit trail says of a guest-exec, noted as the request is
/// read (only when the trail is on).
#[derive(Debug, Default)]
struct ExecNote {
    on: bool,
    program: String,
    args: Vec<String>,
    env: Option<Vec<String>>,
    user: Option<String>,
    cwd: Option<String>,
    profile: Option<String>,
}

/// guest-exec: one audit record per request, `exec-start` with the pid or
/// `exec-refused` with the reason (argv and env only with
/// `--audit-argv`); the process's `exec-end` is written when it ends.
pub fn exec(ctx: &mut Ctx<'_>, a: Args) -> Result<Outcome, QgaError> {
    let mut note = ExecNote { on: ctx.audit.enabled(), ..ExecNote::default() };
    let r = start(ctx, a, &mut note);
    if note.on {
        let n = note;
        let opt = |v: Option<String>| v.map_or(Value::Null, Value::Str);
        let event = if r.is_ok() { "exec-start" } else { "exec-refused" };
        let mut rec = Record::new(event, "guest-exec", &ctx.client)
            .str("program", &n.program)
            .int("argc", n.args.len() as i64 + 1)
            .value("user", opt(n.user))
            .value("cwd", opt(n.cwd))
            .value("profile", opt(n.profile));
        rec = match &r {
            Ok(pid) => rec.int("pid", i64::from(*pid)),
            Err(e) => rec.str("reason", &e.desc),
        };
        if ctx.audit.with_argv() {
            let list = |l: Vec<String>| Value::List(l.into_iter().map(Value::Str).collect());
            rec = rec.value("argv", list(n.args)).value("env", n.env.map_or(Value::Null, list));
        }
        ctx.audit.record(rec);
    }
    let pid = r?;
    Ok(Outcome::Return(Value::Object(Object::new().with("pid", Value::Int(i64::from(pid))))))
}

fn start(ctx: &mut Ctx<'_>, mut a: Args, note: &mut ExecNote) -> Result<Pid, QgaError> {
    let path = a.req_str("path")?;
    let arg = a.opt_str_list("arg")?;
    let env = a.opt_str_list("env")?;
    if note.on {
        note.program = path.clone();
        note.args = arg.clone().unwrap_or_default();
        note.env = env.clone();
    }
    let input = a.opt_base64("input-data")?;
    let capture = capture_mode(a.opt_value("capture-output"))?;
    // Extensions (absent from qemu-ga's schema).
    let cwd = a.opt_str("cwd")?;
    let user = a.opt_str("user")?;
    let timeout = a.opt_number("timeout")?;
    let stream = a.opt_bool("stream")?.unwrap_or(false);
    let input_stream = a.opt_bool("input-stream")?.unwrap_or(false);
    let tty = a.opt_bool("tty")?.unwrap_or(false);
    let rows = a.opt_int("rows")?;
    let cols = a.opt_int("cols")?;
    let rusage = a.opt_bool("rusage")?.unwrap_or(false);
    let env_merge = a.opt_bool("env-merge")?.unwrap_or(false);
    let profile = a.opt_str("profile")?;
    if note.on {
        (note.user, note.cwd, note.profile) = (user.clone(), cwd.clone(), profile.clone());
    }
    a.finish()?;

    let input = input.map(Base64Arg::decode).transpose()?;
    let timeout = timeout.map(|t| seconds("timeout", t, MAX_TIMEOUT_SECONDS)).transpose()?;
    if stream && capture == Capture::None && !tty {
        return Err(QgaError::generic("Parameter 'stream' requires 'capture-output'"));
    }
    if !tty && (rows.is_some() || cols.is_some()) {
        return Err(QgaError::generic("Parameters 'rows' and 'cols' require 'tty'"));
    }
    let size = tty.then(|| -> Result<Winsize, QgaError> {
        Ok(Winsize { rows: cells("rows", rows, 24)?, cols: cells("cols", cols, 80)? })
    });
    let size = size.transpose()?;
    if let Some(dir) = &cwd {
        check_cwd(dir)?;
    }
    let arg = arg.unwrap_or_default();
    // The owner's policy decides before anything is looked up or started.
    let policy = ctx.guest.exec_policy.clone().filter(|_| cfg!(feature = "controls"));
    let (program, user, confine) = match &policy {
        None if profile.is_some() => {
            return Err(QgaError::generic("Parameter 'profile' requires an exec policy (--exec-policy)"));
        }
        None => (None, user, None),
        Some(p) => {
            let req = ExecRequest {
                path: &path,
                args: &arg,
                user: user.as_deref(),
                cwd: cwd.as_deref(),
                env: env.as_deref(),
                search_path: &search_path(env.as_deref(), env_merge),
                input_data: input.is_some(),
                terminal: tty,
                stream: stream || input_stream,
                profile: profile.as_deref(),
            };
            let admitted = p.admit(&req)?;
            if note.on {
                note.program = admitted.program.clone();
                note.user = admitted.user.clone();
                note.profile = admitted.confine.as_ref().map(|(_, k)| k.report.profile.clone());
            }
            (Some(admitted.program), admitted.user, admitted.confine)
        }
    };
    let pw = user.as_deref().map(lookup_user).transpose()?;
    let env = child_env(pw.as_ref(), env, env_merge, tty);
    let credentials = pw.map(|pw| Credentials {
        uid: pw.uid,
        gid: pw.gid,
        groups: sys::user::supplementary_groups(&pw.name, pw.gid),
    });
    // A terminal is the child's stdin, stdout and stderr: no pipes (their
    // data would never reach the terminal or the client).
    let (stdout, stderr) = match capture {
        _ if tty => (Redirect::Null, Redirect::Null),
        Capture::None => (Redirect::Null, Redirect::Null),
        Capture::Stdout => (Redirect::Pipe, Redirect::Null),
        Capture::Stderr => (Redirect::Null, Redirect::Pipe),
        Capture::Separated => (Redirect::Pipe, Redirect::Pipe),
        Capture::Merged => (Redirect::Pipe, Redirect::ToStdout),
    };
    // Protocol text reaches the kernel as qemu-ga passes it: a U+0000 in
    // a string is the modified-UTF-8 pair C0 80, never a terminator.
    let c_list = |l: Vec<String>| l.iter().map(|s| to_c_string(s)).collect::<Vec<_>>();
    let (confinement, confined) = match confine {
        Some((c, k)) => (Some(c), Some(k)),
        None => (None, None),
    };
    let spec = SpawnSpec {
        argv0: program.as_ref().map(|_| to_c_string(&path)),
        path: to_c_string(program.as_deref().unwrap_or(&path)),
        args: c_list(arg),
        env: env.map(c_list),
        stdin: if !tty && (input.is_some() || input_stream) { Redirect::Pipe } else { Redirect::Null },
        stdout,
        stderr,
        cwd: cwd.as_deref().map(to_c_string),
        credentials,
        tty: size,
        confine: confinement,
        cgroup_procs: confined.as_ref().and_then(|k| k.cgroup.as_ref().map(|c| c.procs_fd())),
    };
    // A terminal is streamed both ways.
    let opts =
        ExecOptions { internal: false, input_stream: input_stream || tty, stream: stream || tty, timeout, rusage };
    let audit = note.on.then_some(ctx.client);
    ctx.procs.start(ctx.registry, &spec, NewProcess { input, opts, confined, audit })
}

/// guest-exec-resize {pid, rows, cols}: the window size of a `tty`
/// process's terminal (its foreground job gets SIGWINCH).
pub fn resize(ctx: &mut Ctx<'_>, mut a: Args) -> Result<Outcome, QgaError> {
    let pid = a.req_int("pid")?;
    let rows = a.req_int("rows")?;
    let cols = a.req_int("cols")?;
    a.finish()?;
    let size = Winsize { rows: cells("rows", Some(rows), 24)?, cols: cells("cols", Some(cols), 80)? };
    ctx.procs.resize(pid, size)?;
    Ok(Outcome::Return(Value::empty_object()))
}

pub fn status(ctx: &mut Ctx<'_>, mut a: Args) -> Result<Outcome, QgaError> {
    let pid = a.req_int("pid")?;
    let wait = a.opt_number("wait")?;
    a.finish()?;
    // Fresh answers: collect any exit and pending output right now.
    ctx.refresh_processes();
    let hold_for = match wait {
        Some(0.0) => None,
        Some(w) => Some(seconds("wait", w, MAX_WAIT_SECONDS)?),
        None => Some(POLL_HOLD),
    };
    if let Some(d) = hold_for {
        let running = ctx.procs.find(pid).is_some_and(|p| !p.exited() && !p.has_stream_data());
        // A deadline past the end of time cannot happen (wait is bounded).
        if let Some(deadline) = Instant::now().checked_add(d).filter(|_| running) {
            return Ok(Outcome::Hold { pid, deadline });
        }
    }
    collect_status(ctx, pid).map(Outcome::Return)
}

/// guest-exec-status's reply for `pid` now (consuming a finished result),
/// in qemu-ga's `GuestExecStatus` form plus qga's extensions.
pub fn collect_status(ctx: &mut Ctx<'_>, pid: i64) -> Result<Value, QgaError> {
    let st = ctx.procs.status(ctx.registry, pid)?;
    let mut obj = Object::new();
    obj.push("exited", Value::Bool(st.exited));
    if let Some(code) = st.exit_code {
        obj.push("exitcode", Value::Int(i64::from(code)));
    } else if let Some(sig) = st.signal {
        obj.push("signal", Value::Int(i64::from(sig)));
    }
    let mut flags = Vec::new();
    for (data, trunc, stream) in [("out-data", "out-truncated", st.out), ("err-data", "err-truncated", st.err)] {
        let Some(s) = stream else { continue };
        if !s.data.is_empty() {
            obj.push(data, Value::base64(s.data));
        }
        if let Some(t) = s.truncated {
            flags.push((trunc, t));
        }
    }
    for (name, t) in flags {
        obj.push(name, Value::Bool(t));
    }
    if let Some(t) = st.timed_out {
        obj.push("timed-out", Value::Bool(t));
    }
    if let Some(u) = st.usage {
        let n = |v: u64| Value::Int(i64::try_from(v).unwrap_or(i64::MAX));
        let mut ru = Object::with_capacity(3);
        ru.push("user-us", n(u.user_us));
        ru.push("system-us", n(u.system_us));
        ru.push("max-rss-kib", n(u.max_rss_kib));
        obj.push("rusage", Value::Object(ru));
    }
    // Only for a process that an exec policy's profile confined.
    let n = |v: u64| Value::Int(i64::try_from(v).unwrap_or(i64::MAX));
    if let Some(c) = st.confinement.filter(|_| cfg!(feature = "controls")) {
        let mut o = Object::new();
        o.push("profile", Value::Str(c.profile));
        o.push("no-new-privs", Value::Bool(c.no_new_privs));
        if let Some(l) = c.landlock {
            o.push("landlock", Value::Str(l.to_string()));
        }
        if let Some(abi) = c.landlock_abi {
            o.push("landlock-abi", Value::Int(i64::from(abi)));
        }
        o.push("seccomp", Value::Bool(c.seccomp));
        obj.push("confinement", Value::Object(o));
    }
    if let Some(cg) = st.cgroup.filter(|_| cfg!(feature = "controls")) {
        let mut o = Object::new();
        if let Some(peak) = cg.memory_peak {
            o.push("memory-peak", n(peak));
        }
        o.push("oom-killed", Value::Bool(cg.oom_kills > 0));
        if let Some(us) = cg.cpu_usec {
            o.push("cpu-us", n(us));
        }
        obj.push("cgroup", Value::Object(o));
    }
    Ok(Value::Object(obj))
}

/// guest-exec-input {pid, input-data?, eof?}: more stdin for a process
/// started with `input-stream: true`. Takes what fits in the stdin window
/// and answers `{"count": n}`; the client offers the rest again later.
pub fn input(ctx: &mut Ctx<'_>, mut a: Args) -> Result<Outcome, QgaError> {
    let pid = a.req_int("pid")?;
    let data = a.opt_base64("input-data")?;
    let eof = a.opt_bool("eof")?.unwrap_or(false);
    a.finish()?;
    let bytes = data.map(Base64Arg::decode).transpose()?.unwrap_or_default();
    let n = ctx.procs.feed_input(pid, &bytes, eof)?;
    let n = i64::try_from(n).unwrap_or(i64::MAX);
    Ok(Outcome::Return(Value::Object(Object::new().with("count", Value::Int(n)))))
}

/// Signal numbers by name, with or without the SIG prefix.
fn signal_by_name(name: &str) -> Option<libc::c_int> {
    let n = name.strip_prefix("SIG").unwrap_or(name);
    Some(match n {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "ILL" => libc::SIGILL,
        "TRAP" => libc::SIGTRAP,
        "ABRT" => libc::SIGABRT,
        "BUS" => libc::SIGBUS,
        "FPE" => libc::SIGFPE,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "SEGV" => libc::SIGSEGV,
        "USR2" => libc::SIGUSR2,
        "PIPE" => libc::SIGPIPE,
        "ALRM" => libc::SIGALRM,
        "TERM" => libc::SIGTERM,
        "CHLD" => libc::SIGCHLD,
        "CONT" => libc::SIGCONT,
        "STOP" => libc::SIGSTOP,
        "TSTP" => libc::SIGTSTP,
        "TTIN" => libc::SIGTTIN,
        "TTOU" => libc::SIGTTOU,
        "URG" => libc::SIGURG,
        "XCPU" => libc::SIGXCPU,
        "XFSZ" => libc::SIGXFSZ,
        "VTALRM" => libc::SIGVTALRM,
        "PROF" => libc::SIGPROF,
        "WINCH" => libc::SIGWINCH,
        "IO" => libc::SIGIO,
        "PWR" => libc::SIGPWR,
        "SYS" => libc::SIGSYS,
        _ => return None,
    })
}

pub fn terminate(ctx: &mut Ctx<'_>, mut a: Args) -> Result<Outcome, QgaError> {
    let pid = a.req_int("pid")?;
    let signal = match a.opt_value("signal") {
        None => libc::SIGKILL,
        Some(Value::Str(s)) => signal_by_name(&s).ok_or_else(|| QgaError::bad_enum_value("signal", &s))?,
        Some(v) => match v.as_i64() {
            Some(n) if (1..=i64::from(max_signal())).contains(&n) => libc::c_int::try_from(n).unwrap_or(libc::SIGKILL),
            Some(n) => return Err(QgaError::bad_enum_value("signal", &n.to_string())),
            None => return Err(QgaError::invalid_type("signal", "integer or signal name")),
        },
    };
    a.finish()?;
    // The child leads its own group: this reaches everything it forked.
    ctx.procs.terminate(pid, signal)?;
    Ok(Outcome::Return(Value::empty_object()))
}

#[cfg(test)]
mod tests {
    use super::{env_name, merge_env};

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn merge_env_keeps_the_order_and_the_last_entry_of_a_name() {
        let inherited = strings(&["A=1", "B=2", "C=3", "B=dup", "NOEQ"]);
        let entries = strings(&["X=1", "B=client", "NOEQ", "X=2", "Y=", "B=last"]);
        // B (both inherited ones) and NOEQ are replaced; the first X and
        // the first B of the client's are replaced by their later ones.
        assert_eq!(merge_env(inherited, entries), strings(&["A=1", "C=3", "NOEQ", "X=2", "Y=", "B=last"]));
        assert_eq!(merge_env(strings(&["A=1"]), Vec::new()), strings(&["A=1"]));
        assert_eq!(merge_env(Vec::new(), strings(&["A=1", "A=2"])), strings(&["A=2"]));
    }

    /// The quadratic merge it replaced (a retain per entry) gives the
    /// same lists.
    #[test]
    fn merge_env_matches_a_retain_per_entry() {
        let quadratic = |mut vars: Vec<String>, entries: Vec<String>| {
            for kv in entries {
                let n = env_name(&kv).to_string();
                vars.retain(|old| env_name(old) != n);
                vars.push(kv);
            }
            vars
        };
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..500 {
            let mut list = |len: u64| -> Vec<String> {
                (0..next(len))
                    .map(|i| match next(4) {
                        0 => format!("N{}", next(5)),
                        _ => format!("N{}=v{i}", next(5)),
                    })
                    .collect()
            };
            let (inherited, entries) = (list(8), list(8));
            assert_eq!(
                merge_env(inherited.clone(), entries.clone()),
                quadratic(inherited.clone(), entries.clone()),
                "{inherited:?} + {entries:?}"
            );
        }
    }
}
