//! Starting a child with GLib's `g_spawn_async_with_pipes()` semantics:
//! PATH lookup (from the supplied environment first), argv[0] = the path
//! as given, only fds 0-2 inherited, every signal at its default
//! disposition and none blocked. Each child also leads its own process
//! group so that it and what it forks can be signalled together.
//! posix_spawn unless credentials must change (then fork + execve).
//! Failures come back as a [`SpawnError`]: which step failed, and errno;
//! the caller words it (GLib's texts).

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use super::fd::{pipe, set_nonblocking, set_pipe_size, shared_dev_null};
use super::{cvt, Errno};

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

/// The executable candidates for `path`, in GLib's search order: the
/// path itself when it has a slash, else each directory of PATH (from the
/// child's environment first). An empty name has none (ENOENT, as GLib).
fn candidates(path: &[u8], env: Option<&[CString]>) -> Vec<CString> {
    if path.is_empty() {
        return Vec::new();
    }
    if path.contains(&b'/') {
        return CString::new(path).into_iter().collect();
    }
    let from_env = env.and_then(|e| e.iter().find_map(|kv| kv.to_bytes().strip_prefix(b"PATH=").map(<[u8]>::to_vec)));
    let search = from_env
        .or_else(|| std::env::var_os("PATH").map(|p| p.into_encoded_bytes()))
        .unwrap_or_else(|| b"/bin:/usr/bin:.".to_vec());
    search
        .split(|&b| b == b':')
        .filter_map(|dir| {
            let dir: &[u8] = if dir.is_empty() { b"." } else { dir };
            let mut full = dir.to_vec();
            while full.ends_with(b"/") {
                full.pop();
            }
            full.push(b'/');
            full.extend_from_slice(path);
            CString::new(full).ok()
        })
        .collect()
}

/// Starts the child.
pub fn spawn(spec: &SpawnSpec) -> Result<Spawned, SpawnError> {
    let argv: Vec<&CString> = std::iter::once(&spec.path).chain(&spec.args).collect();
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
    let cands = candidates(spec.path.to_bytes(), spec.env.as_deref());
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

    if creds.is_none() && pty.is_none() {
        // Fast path: posix_spawn (clone with a shared address space, no
        // page-table copy). Only credentials need the fork path below.
        let fds = [child_in, child_out, child_err];
        let pid = posix_spawn_child(fds, cwd, &cands, &argv_ptrs, &mut sh_argv, &envp_ptrs)
            .map_err(|e| SpawnError::new(Stage::Exec, Errno(e)))?;
        return Ok(finish_parent(pid, stdin_pipe, stdout_pipe, stderr_pipe));
    }
    let tty = pty.as_ref().map(|(_, slave)| slave.as_raw_fd());
    // The child reports a failure before exec here (closed at exec).
    let (report_r, report_w) = pipe().map_err(fail_pipe)?;

    // SAFETY: fork in a single-threaded process; the child only makes
    // async-signal-safe libc calls on memory prepared above, then execs or _exits.
    let pid = cvt(unsafe { libc::fork() }).map_err(|e| SpawnError::new(Stage::Fork, e))?;
    if pid == 0 {
        // SAFETY: child side, see child_setup_and_exec.
        unsafe {
            child_setup_and_exec(ChildPlan {
                fds: [child_in, child_out, child_err],
                report: report_w.as_raw_fd(),
                cwd: cwd.map(|c| c.as_ptr()),
                creds,
                tty,
                cands: &cands,
                argv: argv_ptrs.as_ptr(),
                sh_argv: &mut sh_argv,
                envp: envp_ptrs.as_ptr(),
            })
        }
    }
    // Parent. Also set the group here so a terminate right after the
    // reply cannot race the child's own setpgid (a terminal's child makes
    // its own session: it must not be a group leader before setsid).
    if tty.is_none() {
        // SAFETY: setpgid on our own child.
        unsafe { libc::setpgid(pid, pid) };
    }
    drop(report_w);
    // Returns once the child exec'd (the report pipe closes) or failed.
    let child_failure = read_report(&report_r);
    if let Some((stage, err)) = child_failure {
        // The child failed before exec: reap it here.
        let _ = super::process::wait_for(pid);
        return Err(SpawnError::new(stage, Errno(err)));
    }
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

/// posix_spawn with GLib's search rules over `cands`: own process group,
/// every signal back to its default and none blocked, fds 0-2 redirected
/// (`fds[2] < 0`: stderr joins stdout), everything else close-on-exec.
/// Returns the pid or the errno GLib would report.
fn posix_spawn_child(
    fds: [RawFd; 3],
    cwd: Option<&CString>,
    cands: &[CString],
    argv: &[*const libc::c_char],
    sh_argv: &mut [*const libc::c_char],
    envp: &[*const libc::c_char],
) -> Result<libc::pid_t, i32> {
    // SAFETY: the attribute and file-action objects are initialised before
    // use and destroyed on every path; all pointers outlive the calls.
    unsafe {
        let mut attr: libc::posix_spawnattr_t = std::mem::zeroed();
        let mut acts: libc::posix_spawn_file_actions_t = std::mem::zeroed();
        libc::posix_spawnattr_init(&mut attr);
        libc::posix_spawn_file_actions_init(&mut acts);
        // Every bit set, 32 and 33 included: libc's sigfillset leaves out
        // the signals it reserves, and glibc's posix_spawn then sets those
        // to SIG_IGN in the child.
        let mut all: libc::sigset_t = std::mem::zeroed();
        std::ptr::write_bytes(&mut all as *mut libc::sigset_t, 0xff, 1);
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::posix_spawnattr_setsigdefault(&mut attr, &all);
        libc::posix_spawnattr_setsigmask(&mut attr, &none);
        libc::posix_spawnattr_setpgroup(&mut attr, 0);
        libc::posix_spawnattr_setflags(
            &mut attr,
            (libc::POSIX_SPAWN_SETPGROUP | libc::POSIX_SPAWN_SETSIGDEF | libc::POSIX_SPAWN_SETSIGMASK) as libc::c_short,
        );
        if let Some(dir) = cwd {
            libc::posix_spawn_file_actions_addchdir_np(&mut acts, dir.as_ptr());
        }
        libc::posix_spawn_file_actions_adddup2(&mut acts, fds[0], 0);
        libc::posix_spawn_file_actions_adddup2(&mut acts, fds[1], 1);
        libc::posix_spawn_file_actions_adddup2(&mut acts, if fds[2] < 0 { 1 } else { fds[2] }, 2);
        // glibc can also close the rest in the child; elsewhere every agent
        // fd is close-on-exec already (start-up marks inherited ones).
        #[cfg(target_env = "gnu")]
        libc::posix_spawn_file_actions_addclosefrom_np(&mut acts, 3);
        let spawn = |path: *const libc::c_char, args: *const *const libc::c_char| -> Result<libc::pid_t, i32> {
            let mut pid = 0;
            let rc = libc::posix_spawn(
                &mut pid,
                path,
                &acts,
                &attr,
                args as *const *mut libc::c_char,
                envp.as_ptr() as *const *mut libc::c_char,
            );
            if rc == 0 {
                Ok(pid)
            } else {
                Err(rc)
            }
        };
        let mut result = Err(libc::ENOENT);
        let mut got_eacces = false;
        let searching = cands.len() > 1;
        for cand in cands {
            // In a PATH search, a candidate that cannot be executed is
            // skipped on a stat, not on a whole failed clone each.
            if searching {
                if let Err(e) = executable(cand) {
                    result = Err(e);
                    got_eacces |= e == libc::EACCES;
                    continue;
                }
            }
            result = match spawn(cand.as_ptr(), argv.as_ptr()) {
                Err(libc::ENOEXEC) => {
                    // GLib's script_execute(): run it with /bin/sh.
                    sh_argv[1] = cand.as_ptr();
                    spawn(c"/bin/sh".as_ptr(), sh_argv.as_ptr())
                }
                other => other,
            };
            match result {
                // Missing or not executable here: try the next directory.
                Err(libc::EACCES) => got_eacces = true,
                Err(libc::ENOENT | libc::ESTALE | libc::ENOTDIR | libc::ENODEV | libc::ETIMEDOUT) => {}
                _ => break,
            }
        }
        if got_eacces
            && matches!(result, Err(libc::ENOENT | libc::ESTALE | libc::ENOTDIR | libc::ENODEV | libc::ETIMEDOUT))
        {
            result = Err(libc::EACCES);
        }
        libc::posix_spawn_file_actions_destroy(&mut acts);
        libc::posix_spawnattr_destroy(&mut attr);
        result
    }
}

/// Whether execve() could start `path`: Ok, or the errno it would fail
/// with (ENOENT and the like when missing, EACCES when not an executable
/// regular file).
fn executable(path: &CStr) -> Result<(), i32> {
    use std::os::unix::ffi::OsStrExt;
    let p = std::path::Path::new(std::ffi::OsStr::from_bytes(path.to_bytes()));
    match std::fs::metadata(p) {
        Err(e) => Err(e.raw_os_error().unwrap_or(libc::ENOENT)),
        Ok(m) if m.is_dir() => Err(libc::EACCES),
        Ok(_) if !super::fd::can_execute_c(path) => Err(libc::EACCES),
        Ok(_) => Ok(()),
    }
}

/// Reads the child's (stage, errno) report; EOF means exec succeeded.
fn read_report(fd: &OwnedFd) -> Option<(Stage, i32)> {
    let mut buf = [0u8; 8];
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: read into the remaining part of a local buffer.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf[got..].as_mut_ptr().cast(), buf.len() - got) };
        if n < 0 && Errno::last() == Errno(libc::EINTR) {
            continue;
        }
        if n <= 0 {
            break;
        }
        got += n as usize;
    }
    if got < buf.len() {
        return None;
    }
    let stage = match i32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) {
        2 => Stage::Chdir,
        3 => Stage::Redirect,
        4 => Stage::Credentials,
        _ => Stage::Exec,
    };
    Some((stage, i32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]])))
}

struct ChildPlan<'a> {
    fds: [RawFd; 3],
    report: RawFd,
    cwd: Option<*const libc::c_char>,
    creds: Option<&'a Credentials>,
    /// The terminal's slave side: becomes the controlling terminal.
    tty: Option<RawFd>,
    cands: &'a [CString],
    argv: *const *const libc::c_char,
    sh_argv: &'a mut [*const libc::c_char],
    envp: *const *const libc::c_char,
}

/// Child side: tells the parent which step failed with which errno.
unsafe fn report_and_exit(report: RawFd, stage: Stage) -> ! {
    let e = *libc::__errno_location();
    let mut msg = [0u8; 8];
    msg[..4].copy_from_slice(&(stage as i32).to_ne_bytes());
    msg[4..].copy_from_slice(&e.to_ne_bytes());
    libc::write(report, msg.as_ptr().cast(), msg.len());
    libc::_exit(127)
}

/// Runs in the forked child: never returns.
unsafe fn child_setup_and_exec(plan: ChildPlan<'_>) -> ! {
    let report = plan.report;
    let fail = |stage: Stage| -> ! { report_and_exit(report, stage) };
    // Clean signal state: default dispositions (ignored ones survive
    // exec, SIGPIPE above all) and an empty mask.
    super::signal::reset_all_dispositions();
    let mut set: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut set);
    libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    match plan.tty {
        // A new session, with the terminal as its controlling terminal.
        Some(t) => {
            if libc::setsid() < 0 || libc::ioctl(t, libc::TIOCSCTTY as _, 0) < 0 {
                fail(Stage::Redirect);
            }
        }
        None => {
            libc::setpgid(0, 0);
        }
    }
    if let Some(c) = plan.creds {
        if libc::setgroups(c.groups.len(), c.groups.as_ptr()) != 0
            || libc::setgid(c.gid) != 0
            || libc::setuid(c.uid) != 0
        {
            fail(Stage::Credentials);
        }
    }
    if let Some(dir) = plan.cwd {
        if libc::chdir(dir) != 0 {
            fail(Stage::Chdir);
        }
    }
    let [fin, fout, ferr] = plan.fds;
    if libc::dup2(fin, 0) < 0 || libc::dup2(fout, 1) < 0 {
        fail(Stage::Redirect);
    }
    if ferr < 0 {
        if libc::dup2(1, 2) < 0 {
            fail(Stage::Redirect);
        }
    } else if libc::dup2(ferr, 2) < 0 {
        fail(Stage::Redirect);
    }
    // Only 0-2 survive exec: mark everything else close-on-exec (the
    // report pipe must stay open until exec succeeds).
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    if libc::syscall(libc::SYS_close_range, 3 as libc::c_uint, libc::c_uint::MAX, CLOSE_RANGE_CLOEXEC) != 0 {
        let mut lim: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        let max = lim.rlim_cur.min(1 << 16) as RawFd;
        for fd in 3..max {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
    let mut got_eacces = false;
    let mut last = libc::ENOENT;
    for cand in plan.cands {
        libc::execve(cand.as_ptr(), plan.argv, plan.envp);
        let e = *libc::__errno_location();
        if e == libc::ENOEXEC {
            plan.sh_argv[1] = cand.as_ptr();
            libc::execve(c"/bin/sh".as_ptr(), plan.sh_argv.as_ptr(), plan.envp);
            fail(Stage::Exec);
        }
        match e {
            libc::EACCES => got_eacces = true,
            libc::ENOENT | libc::ESTALE | libc::ENOTDIR | libc::ENODEV | libc::ETIMEDOUT => {}
            _ => fail(Stage::Exec),
        }
        last = e;
    }
    *libc::__errno_location() = if got_eacces { libc::EACCES } else { last };
    fail(Stage::Exec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_candidates_follow_glib() {
        let c = |p: &[u8], env: Option<&[CString]>| -> Vec<String> {
            candidates(p, env).into_iter().map(|c| c.into_string().unwrap()).collect()
        };
        assert_eq!(c(b"/bin/true", None), ["/bin/true"]);
        assert_eq!(c(b"./x", None), ["./x"]);
        let env = vec![CString::new("PATH=/a::/b/:/").unwrap()];
        assert_eq!(c(b"ls", Some(&env)), ["/a/ls", "./ls", "/b/ls", "/ls"]);
        assert!(c(b"", Some(&env)).is_empty(), "an empty name is ENOENT, not a directory");
    }
}
