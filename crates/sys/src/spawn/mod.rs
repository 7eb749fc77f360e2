//! Starting a child with GLib's `g_spawn_async_with_pipes()` semantics:
//! PATH lookup (from the supplied environment first), argv[0] = the path
//! as given, only fds 0-2 inherited, every signal at its default
//! disposition and none blocked. Each child also leads its own process
//! group so that it and what it forks can be signalled together.
//! posix_spawn unless credentials must change, a terminal is wanted or
//! the child is confined (then fork + execve).
//! Failures come back as a [`SpawnError`]: which step failed, and errno;
//! the caller words it (GLib's texts).
//!
//! Files: `posix.rs` the posix_spawn path (owned attributes and file
//! actions), `fork.rs` the fork path, `path.rs` the agent's one PATH
//! search. Every unsafe operation has a block and a reason of its own,
//! unsafe fns included.
#![deny(unsafe_op_in_unsafe_fn)]

mod fork;
mod path;
mod posix;

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::rc::Rc;

use super::fd::{pipe, set_nonblocking, set_pipe_size, shared_dev_null};
use super::Errno;

pub use path::{find_program, DEFAULT_PATH};
pub use posix::spawn_plain;

/// Where a standard stream of the child goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redirect {
    Null,
    Pipe,
    /// stderr only: a duplicate of stdout (`merged`).
    ToStdout,
}

/// Credentials to switch to in the child.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
    pub groups: Vec<libc::gid_t>,
}

/// Everything needed to start one child. Strings are the bytes handed to
/// the kernel (the caller decides how protocol text becomes bytes).
#[derive(Debug, Clone)]
pub struct SpawnSpec {
    pub path: CString,
    /// argv[0] when it is not `path` (an exec policy runs the resolved
    /// program while the child still sees the name it was asked by).
    pub argv0: Option<CString>,
    pub args: Vec<CString>,
    /// `NAME=value` entries; replaces the whole environment when present.
    pub env: Option<Vec<CString>>,
    pub stdin: Redirect,
    pub stdout: Redirect,
    pub stderr: Redirect,
    pub cwd: Option<CString>,
    pub credentials: Option<Credentials>,
    /// Run on a new pseudo-terminal of this size: the child leads a new
    /// session with the terminal as its controlling terminal and as fds
    /// 0-2 (the redirects above are then ignored).
    pub tty: Option<super::pty::Winsize>,
    /// A profile's confinement, installed in the child before the
    /// credentials switch (`fork.rs` gives the order).
    pub confine: Option<Rc<super::confine::Confinement>>,
    /// A cgroup's `cgroup.procs` (`Cgroup::procs_fd`), which the child
    /// joins first; the caller keeps the `Cgroup` alive over the spawn.
    pub cgroup_procs: Option<RawFd>,
}

/// A started child and the parent's ends of its pipes (non-blocking,
/// close-on-exec).
#[derive(Debug)]
pub struct Spawned {
    pub pid: libc::pid_t,
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    /// The terminal's master side (non-blocking), with `tty`.
    pub terminal: Option<OwnedFd>,
}

/// Which step of starting the child failed; selects GLib's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum Stage {
    Exec = 1,
    Chdir = 2,
    Redirect = 3,
    Credentials = 4,
    /// Opening /dev/null in the parent.
    DevNull = 5,
    /// Creating a pipe in the parent.
    Pipe = 6,
    Fork = 7,
    /// Opening a pseudo-terminal in the parent.
    Terminal = 8,
    /// In the child: joining the cgroup, rlimits, no_new_privs, Landlock
    /// or seccomp.
    Confine = 9,
}

/// A child that could not be started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpawnError {
    pub stage: Stage,
    pub errno: Errno,
}

impl SpawnError {
    fn new(stage: Stage, errno: Errno) -> Self {
        SpawnError { stage, errno }
    }
}

/// Capture pipes get this much kernel buffer (fewer wakeups per MiB).
const CAPTURE_PIPE_SIZE: libc::c_int = 1 << 20;

/// Starts the child (gspawn.c's `fork_exec()`, or its posix_spawn fast
/// path `do_posix_spawn()` when nothing needs the fork).
pub fn spawn(spec: &SpawnSpec) -> Result<Spawned, SpawnError> {
    let argv: Vec<&CString> = std::iter::once(spec.argv0.as_ref().unwrap_or(&spec.path)).chain(&spec.args).collect();
    let envp: Vec<CString> = match &spec.env {
        Some(list) => list.clone(),
        None => std::env::vars_os()
            .filter_map(|(k, v)| {
                let mut kv = k.into_encoded_bytes();
                kv.push(b'=');
                kv.extend_from_slice(&v.into_encoded_bytes());
                CString::new(kv).ok()
            })
            .collect(),
    };
    // An empty name has no candidates: ENOENT, as GLib.
    let cands = match spec.path.to_bytes() {
        b"" => Vec::new(),
        name => path::candidates(name, &path::child_search_list(spec.env.as_deref())),
    };
    let cwd = spec.cwd.as_ref();
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    // For ENOEXEC: run the file with /bin/sh, as GLib's script_execute().
    let mut sh_argv: Vec<*const libc::c_char> = vec![c"/bin/sh".as_ptr(), std::ptr::null()];
    sh_argv.extend(argv.iter().skip(1).map(|a| a.as_ptr()));
    sh_argv.push(std::ptr::null());
    let mut envp_ptrs: Vec<*const libc::c_char> = envp.iter().map(|e| e.as_ptr()).collect();
    envp_ptrs.push(std::ptr::null());

    let fail_pipe = |e: Errno| SpawnError::new(Stage::Pipe, e);
    let dev_null = shared_dev_null().map_err(|e| SpawnError::new(Stage::DevNull, e))?;
    let pty = spec.tty.map(super::pty::open).transpose().map_err(|e| SpawnError::new(Stage::Terminal, e))?;
    let stdin_pipe = if spec.stdin == Redirect::Pipe { Some(pipe().map_err(fail_pipe)?) } else { None };
    let stdout_pipe = if spec.stdout == Redirect::Pipe { Some(pipe().map_err(fail_pipe)?) } else { None };
    let stderr_pipe = if spec.stderr == Redirect::Pipe { Some(pipe().map_err(fail_pipe)?) } else { None };

    let child_in = stdin_pipe.as_ref().map_or(dev_null.as_raw_fd(), |p| p.0.as_raw_fd());
    let child_out = stdout_pipe.as_ref().map_or(dev_null.as_raw_fd(), |p| p.1.as_raw_fd());
    let child_err = match spec.stderr {
        Redirect::Pipe => stderr_pipe.as_ref().map_or(dev_null.as_raw_fd(), |p| p.1.as_raw_fd()),
        Redirect::ToStdout => -1,
        Redirect::Null => dev_null.as_raw_fd(),
    };
    let creds = spec.credentials.as_ref();
    let (child_in, child_out, child_err) = match &pty {
        Some((_, slave)) => (slave.as_raw_fd(), slave.as_raw_fd(), slave.as_raw_fd()),
        None => (child_in, child_out, child_err),
    };
    let fds = [child_in, child_out, child_err];

    let confine = spec.confine.as_deref();
    if creds.is_none() && pty.is_none() && confine.is_none() && spec.cgroup_procs.is_none() {
        // Fast path: posix_spawn. Only credentials, terminals and
        // confinement need the fork path below.
        let pid = posix::posix_spawn_child(fds, cwd, &cands, &argv_ptrs, &mut sh_argv, &envp_ptrs)?;
        return Ok(finish_parent(pid, stdin_pipe, stdout_pipe, stderr_pipe));
    }
    let tty = pty.as_ref().map(|(_, slave)| slave.as_raw_fd());
    let pid = fork::fork_exec(fork::ChildPlan {
        fds,
        cwd,
        creds,
        tty,
        confine,
        cgroup_procs: spec.cgroup_procs,
        cands: &cands,
        argv: &argv_ptrs,
        sh_argv: &mut sh_argv,
        envp: &envp_ptrs,
    })?;
    let mut spawned = finish_parent(pid, stdin_pipe, stdout_pipe, stderr_pipe);
    if let Some((master, slave)) = pty {
        drop(slave);
        // A blocking master would only slow the loop, never break it.
        let _ = set_nonblocking(master.as_fd());
        spawned.terminal = Some(master);
    }
    Ok(spawned)
}

type PipePair = Option<(OwnedFd, OwnedFd)>;

/// Keeps the parent's ends of the pipes (non-blocking; capture pipes
/// enlarged), dropping the child's ends.
fn finish_parent(pid: libc::pid_t, stdin: PipePair, stdout: PipePair, stderr: PipePair) -> Spawned {
    let parent_end = |p: PipePair, keep_read: bool| {
        p.map(|(r, w)| {
            let fd = if keep_read { r } else { w };
            // A blocking pipe end would only slow the loop, never break it.
            let _ = set_nonblocking(fd.as_fd());
            fd
        })
    };
    let stdout = parent_end(stdout, true);
    let stderr = parent_end(stderr, true);
    for fd in stdout.iter().chain(stderr.iter()) {
        // Failure just keeps the default size.
        let _ = set_pipe_size(fd.as_fd(), CAPTURE_PIPE_SIZE);
    }
    Spawned { pid, stdin: parent_end(stdin, false), stdout, stderr, terminal: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_name_has_no_candidates() {
        let spec = SpawnSpec {
            path: CString::default(),
            argv0: None,
            args: Vec::new(),
            env: Some(vec![CString::new("PATH=/bin").unwrap()]),
            stdin: Redirect::Null,
            stdout: Redirect::Null,
            stderr: Redirect::Null,
            cwd: None,
            credentials: None,
            tty: None,
            confine: None,
            cgroup_procs: None,
        };
        let e = spawn(&spec).unwrap_err();
        assert_eq!((e.stage, e.errno), (Stage::Exec, Errno(libc::ENOENT)));
    }
}
