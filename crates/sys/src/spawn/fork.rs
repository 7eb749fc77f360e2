//! The fork path, for children that switch credentials (`user`), run on
//! a terminal or are confined (a cgroup, a profile): fork, set the child
//! up, execve over the candidates, as gspawn.c's `fork_exec()` /
//! `do_exec()`. A failure in the child before exec comes back over a
//! close-on-exec report pipe as (stage, errno), gspawn.c's
//! `write_err_and_exit()` / `read_ints()`.
//!
//! After fork the child is a copy of a single-threaded process and makes
//! only async-signal-safe calls: it never allocates (everything it reads,
//! argv/envp pointer arrays, candidates, credentials, was built before the
//! fork), takes no lock and leaves by execve or `_exit`.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use super::{Credentials, SpawnError, Stage};
use crate::confine::{set_no_new_privs_raw, Confinement};
use crate::fd::pipe;
use crate::{cvt, Errno};

/// What the child does between fork and exec; all of it prepared in the
/// parent, so the child only reads.
pub(super) struct ChildPlan<'a> {
    pub fds: [RawFd; 3],
    pub cwd: Option<&'a CString>,
    pub creds: Option<&'a Credentials>,
    /// The terminal's slave side: becomes the controlling terminal.
    pub tty: Option<RawFd>,
    /// Installed after the group/session, before the credentials.
    pub confine: Option<&'a Confinement>,
    /// The cgroup's `cgroup.procs` (O_WRONLY), joined first.
    pub cgroup_procs: Option<RawFd>,
    pub cands: &'a [CString],
    /// NULL-terminated.
    pub argv: &'a [*const libc::c_char],
    /// `["/bin/sh", <file>, args.., NULL]`; slot 1 is set in the child.
    pub sh_argv: &'a mut [*const libc::c_char],
    /// NULL-terminated.
    pub envp: &'a [*const libc::c_char],
}

/// Forks and execs per `plan`; returns the child's pid once it exec'd, or
/// the step that failed (the failed child is reaped here). Blocks only
/// until the child execs or fails (microseconds).
pub(super) fn fork_exec(plan: ChildPlan<'_>) -> Result<libc::pid_t, SpawnError> {
    let (report_r, report_w) = pipe().map_err(|e| SpawnError::new(Stage::Pipe, e))?;
    let is_tty = plan.tty.is_some();
    // SAFETY: fork in a single-threaded process; the child only makes
    // async-signal-safe calls on memory prepared above, then execs or _exits.
    let pid = cvt(unsafe { libc::fork() }).map_err(|e| SpawnError::new(Stage::Fork, e))?;
    if pid == 0 {
        // SAFETY: this is the child of the fork just above.
        unsafe { child_setup_and_exec(plan, report_w.as_raw_fd()) }
    }
    // Parent. Also set the group here so a terminate right after the
    // reply cannot race the child's own setpgid (a terminal's child makes
    // its own session: it must not be a group leader before setsid).
    // Either call may lose the race harmlessly (gspawn.c ignores it too).
    if !is_tty {
        // SAFETY: setpgid on our own child; no memory is involved.
        unsafe { libc::setpgid(pid, pid) };
    }
    drop(report_w);
    // Returns once the child exec'd (the report pipe closes) or failed.
    if let Some((stage, err)) = read_report(&report_r) {
        // The child failed before exec: reap it here.
        let _ = crate::process::wait_for(pid);
        return Err(SpawnError::new(stage, Errno(err)));
    }
    Ok(pid)
}

/// Reads the child's (stage, errno) report; EOF means exec succeeded.
fn read_report(fd: &OwnedFd) -> Option<(Stage, i32)> {
    let mut buf = [0u8; 8];
    let mut got = 0;
    while got < buf.len() {
        let rest = &mut buf[got..];
        // SAFETY: read into the remaining part of a local buffer, with its length.
        let n = unsafe { libc::read(fd.as_raw_fd(), rest.as_mut_ptr().cast(), rest.len()) };
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
        9 => Stage::Confine,
        _ => Stage::Exec,
    };
    Some((stage, i32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]])))
}

/// The calling thread's errno, read without `std::io::Error`.
fn errno() -> i32 {
    // SAFETY: __errno_location returns the calling thread's errno slot.
    unsafe { *libc::__errno_location() }
}

/// Child side: tells the parent which step failed with which errno
/// (gspawn.c's `write_err_and_exit()`), then `_exit(127)`.
///
/// # Safety
/// Only in the forked child: it ends the calling process.
unsafe fn report_and_exit(report: RawFd, stage: Stage) -> ! {
    let e = errno();
    let mut msg = [0u8; 8];
    msg[..4].copy_from_slice(&(stage as i32).to_ne_bytes());
    msg[4..].copy_from_slice(&e.to_ne_bytes());
    // SAFETY: write from a local buffer; a failed report only shows as success-then-exit-127.
    unsafe { libc::write(report, msg.as_ptr().cast(), msg.len()) };
    // SAFETY: _exit ends the child without running the parent's atexit handlers or flushing its buffers.
    unsafe { libc::_exit(127) }
}

/// Runs in the forked child (gspawn.c's `do_exec()`): signals reset, group
/// or session, fds from 3 on marked close-on-exec, confinement (cgroup,
/// rlimits, no_new_privs, Landlock, seccomp: while still root),
/// credentials, directory, fds 0-2, exec. Never returns. No allocation:
/// only stack values and what `plan` points at.
///
/// # Safety
/// Only in the child of a fork of a single-threaded process; `plan`'s
/// arrays are NULL-terminated and `report` is the report pipe's write end.
unsafe fn child_setup_and_exec(plan: ChildPlan<'_>, report: RawFd) -> ! {
    // SAFETY: we are the forked child (the caller's contract).
    let fail = |stage: Stage| -> ! { unsafe { report_and_exit(report, stage) } };
    // Clean signal state: default dispositions (ignored ones survive
    // exec, SIGPIPE above all) and an empty mask.
    crate::signal::reset_all_dispositions();
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set on the stack.
    unsafe { libc::sigemptyset(set.as_mut_ptr()) };
    // SAFETY: a set that sigemptyset initialised; the old mask is not asked for.
    unsafe { libc::sigprocmask(libc::SIG_SETMASK, set.as_ptr(), std::ptr::null_mut()) };
    match plan.tty {
        // A new session, with the terminal as its controlling terminal.
        Some(t) => {
            // SAFETY: setsid has no memory arguments.
            if unsafe { libc::setsid() } < 0 {
                fail(Stage::Redirect);
            }
            // SAFETY: TIOCSCTTY takes an int argument, no pointer.
            if unsafe { libc::ioctl(t, libc::TIOCSCTTY as _, 0) } < 0 {
                fail(Stage::Redirect);
            }
        }
        None => {
            // SAFETY: setpgid has no memory arguments; the parent's own call covers a failure.
            unsafe { libc::setpgid(0, 0) };
        }
    }
    // Before the rlimits: a lowered RLIMIT_NOFILE must not shorten the
    // fallback's walk (the dup2s below make fds 0-2 without the flag).
    mark_cloexec_from_3();
    if let Some(fd) = plan.cgroup_procs {
        // SAFETY: write of a static byte to an fd number; a bad fd fails with EBADF.
        if unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) } != 1 {
            fail(Stage::Confine);
        }
    }
    if let Some(c) = plan.confine {
        if confine_self(c).is_err() {
            fail(Stage::Confine);
        }
    }
    if let Some(c) = plan.creds {
        // SAFETY: the group list is a live slice, passed with its length.
        if unsafe { libc::setgroups(c.groups.len(), c.groups.as_ptr()) } != 0 {
            fail(Stage::Credentials);
        }
        // SAFETY: setgid has no memory arguments.
        if unsafe { libc::setgid(c.gid) } != 0 {
            fail(Stage::Credentials);
        }
        // SAFETY: setuid has no memory arguments.
        if unsafe { libc::setuid(c.uid) } != 0 {
            fail(Stage::Credentials);
        }
    }
    if let Some(dir) = plan.cwd {
        // SAFETY: a NUL-terminated path built before the fork.
        if unsafe { libc::chdir(dir.as_ptr()) } != 0 {
            fail(Stage::Chdir);
        }
    }
    let [fin, fout, ferr] = plan.fds;
    // ferr < 0: stderr joins stdout.
    for (from, to) in [(fin, 0), (fout, 1), (if ferr < 0 { 1 } else { ferr }, 2)] {
        // SAFETY: dup2 on fd numbers; an invalid one fails with EBADF.
        if unsafe { libc::dup2(from, to) } < 0 {
            fail(Stage::Redirect);
        }
    }
    let mut got_eacces = false;
    let mut last = libc::ENOENT;
    for cand in plan.cands {
        // SAFETY: NUL-terminated path and NULL-terminated argv/envp arrays
        // of strings built before the fork; returns only on failure.
        unsafe { libc::execve(cand.as_ptr(), plan.argv.as_ptr(), plan.envp.as_ptr()) };
        let e = errno();
        if e == libc::ENOEXEC {
            // gspawn.c's script_execute(): run it with /bin/sh. Writing a
            // pointer into the prepared array allocates nothing.
            plan.sh_argv[1] = cand.as_ptr();
            // SAFETY: as above, with the prepared /bin/sh argv.
            unsafe { libc::execve(c"/bin/sh".as_ptr(), plan.sh_argv.as_ptr(), plan.envp.as_ptr()) };
            fail(Stage::Exec);
        }
        match e {
            libc::EACCES => got_eacces = true,
            libc::ENOENT | libc::ESTALE | libc::ENOTDIR | libc::ENODEV | libc::ETIMEDOUT => {}
            _ => fail(Stage::Exec),
        }
        last = e;
    }
    // SAFETY: writing the calling thread's errno slot, which report_and_exit reads.
    unsafe { *libc::__errno_location() = if got_eacces { libc::EACCES } else { last } };
    fail(Stage::Exec)
}

/// In the child: the profile's rlimits, no_new_privs, Landlock ruleset and
/// seccomp filter, in that order (the filter last: it may deny what the
/// steps before it use). Err(()) leaves errno set for the report.
fn confine_self(c: &Confinement) -> Result<(), ()> {
    for lim in &c.rlimits {
        if lim.apply_raw() != 0 {
            return Err(());
        }
    }
    if c.no_new_privs && set_no_new_privs_raw() != 0 {
        return Err(());
    }
    if let Some(ruleset) = &c.landlock {
        if ruleset.restrict_self_raw() != 0 {
            return Err(());
        }
    }
    if let Some(filter) = &c.seccomp {
        // Without no_new_privs this needs CAP_SYS_ADMIN: EACCES is reported,
        // never papered over by setting no_new_privs.
        if filter.install_raw() != 0 {
            return Err(());
        }
    }
    Ok(())
}

/// In the child: only 0-2 survive exec, so everything else becomes
/// close-on-exec (the report pipe must stay open until exec succeeds).
/// close_range(CLOEXEC), or an fcntl per fd up to the limit on kernels
/// before 5.11 (gspawn.c's `safe_fdwalk_set_cloexec()`).
fn mark_cloexec_from_3() {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range takes no pointers; CLOEXEC only sets a flag on open fds.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, 3 as libc::c_uint, libc::c_uint::MAX, CLOSE_RANGE_CLOEXEC) };
    if rc == 0 {
        return;
    }
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit fills a local struct (left zero on failure: no fds marked, as before).
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    let max = lim.rlim_cur.min(1 << 16) as RawFd;
    for fd in 3..max {
        // SAFETY: F_SETFD on an fd number; a closed one fails with EBADF.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
}
