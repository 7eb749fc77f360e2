//! Processes: ids, signals to processes and groups, reaping, wait
//! statuses, and the process-wide settings of start-up and daemonising.

use std::os::fd::AsRawFd;
use std::time::Duration;

use super::{cvt, Errno};

pub type Pid = libc::pid_t;

pub fn getpid() -> Pid {
    // SAFETY: getpid has no preconditions.
    unsafe { libc::getpid() }
}

/// The effective user id.
pub fn geteuid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// Pins the thread `tid` (0: the calling thread) to the CPUs `cpus`
/// (sched_setaffinity; numbers past the set's size are ignored).
pub fn set_affinity(tid: Pid, cpus: &[usize]) -> Result<(), Errno> {
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        if c < 8 * std::mem::size_of::<libc::cpu_set_t>() {
            // SAFETY: sets a bit inside the local set (c is in range).
            unsafe { libc::CPU_SET(c, &mut set) };
        }
    }
    // SAFETY: sched_setaffinity reads a valid local cpu_set_t of the stated size.
    cvt(unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) })?;
    Ok(())
}

/// Sends `sig` to process `pid` (`pid` < 0: to that process group,
/// -1: to every process we may signal).
pub fn kill(pid: Pid, sig: libc::c_int) -> Result<(), Errno> {
    // SAFETY: kill(2) takes plain integers.
    cvt(unsafe { libc::kill(pid, sig) })?;
    Ok(())
}

/// Sends `sig` to the process group `pgid`.
pub fn kill_group(pgid: Pid, sig: libc::c_int) -> Result<(), Errno> {
    if pgid <= 0 {
        return Err(Errno(libc::ESRCH));
    }
    kill(-pgid, sig)
}

/// Resources a reaped child used (wait4(2)): the process itself and the
/// descendants it waited for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub user_us: u64,
    pub system_us: u64,
    pub max_rss_kib: u64,
}

/// Reaps one exited child without blocking: `Ok(Some((pid, status,
/// usage)))`, `Ok(None)` when children exist but none has exited,
/// `Err(ECHILD)` when there are none.
pub fn reap_any() -> Result<Option<(Pid, WaitStatus, Usage)>, Errno> {
    let mut status = 0;
    // SAFETY: an all-zero struct rusage is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: non-blocking wait4 for any child, status and usage into locals.
    let pid = cvt(unsafe { libc::wait4(-1, &mut status, libc::WNOHANG, &mut ru) })?;
    let us = |t: libc::timeval| {
        u64::try_from(t.tv_sec)
            .unwrap_or(0)
            .saturating_mul(1_000_000)
            .saturating_add(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    let usage = Usage {
        user_us: us(ru.ru_utime),
        system_us: us(ru.ru_stime),
        max_rss_kib: u64::try_from(ru.ru_maxrss).unwrap_or(0),
    };
    Ok((pid > 0).then_some((pid, WaitStatus(status), usage)))
}

/// What /proc/<pid>/stat says of a process (proc(5)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// The state letter (R, S, D, Z, X...).
    pub state: u8,
    pub pgrp: Pid,
    /// The kernel's task flags (PF_*).
    pub flags: u64,
    /// Ignored and caught signals (bit `sig - 1`).
    pub sigignore: u64,
    pub sigcatch: u64,
    /// Start time, clock ticks since boot (as [`boot_ticks`]).
    pub start: u64,
}

impl ProcStat {
    /// Reads /proc/<pid>/stat; None when the process is gone.
    pub fn read(pid: Pid) -> Option<ProcStat> {
        Self::parse(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
    }

    /// Parses the text of /proc/<pid>/stat (the command name may hold
    /// spaces and parentheses: fields count from the last ')').
    pub fn parse(stat: &str) -> Option<ProcStat> {
        let rest = &stat[stat.rfind(')')? + 1..];
        // Fields after "(comm)", from 0: state ppid pgrp session tty_nr
        // tpgid flags ... signal(27) blocked sigignore sigcatch; starttime
        // is 19.
        let f: Vec<&str> = rest.split_whitespace().collect();
        let num = |i: usize| f.get(i)?.parse::<u64>().ok();
        Some(ProcStat {
            state: *f.first()?.as_bytes().first()?,
            pgrp: f.get(2)?.parse().ok()?,
            flags: num(6)?,
            start: num(19)?,
            sigignore: num(30).unwrap_or(0),
            sigcatch: num(31).unwrap_or(0),
        })
    }

    /// On its way out: a zombie, or PF_EXITING (a signal sent now is
    /// dropped by the kernel and cannot be what ends it).
    pub fn is_exiting(&self) -> bool {
        const PF_EXITING: u64 = 0x4;
        matches!(self.state, b'Z' | b'X' | b'x') || self.flags & PF_EXITING != 0
    }

    /// `sig` has its default action (neither ignored nor caught): a
    /// process that `sig` reaches dies of it (SIGTERM, SIGKILL).
    pub fn default_action(&self, sig: libc::c_int) -> bool {
        let bit = match sig {
            1..=64 => 1u64 << (sig - 1),
            _ => return false,
        };
        (self.sigignore | self.sigcatch) & bit == 0
    }
}

/// Clock ticks since boot, as /proc/<pid>/stat counts start times
/// (CLOCK_BOOTTIME in units of sysconf(_SC_CLK_TCK)).
pub fn boot_ticks() -> u64 {
    // SAFETY: an all-zero timespec is a valid value.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: clock_gettime writes the time into a local.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    // SAFETY: sysconf has no preconditions.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100).max(1);
    let ns =
        u64::try_from(ts.tv_sec).unwrap_or(0).saturating_mul(1_000_000_000) + u64::try_from(ts.tv_nsec).unwrap_or(0);
    ns / (1_000_000_000 / hz)
}

/// Waits for `pid` to exit (a child that failed before exec).
pub fn wait_for(pid: Pid) -> Result<WaitStatus, Errno> {
    let mut status = 0;
    loop {
        // SAFETY: blocking waitpid for our own child, status into a local.
        match cvt(unsafe { libc::waitpid(pid, &mut status, 0) }) {
            Err(Errno(libc::EINTR)) => continue,
            Err(e) => return Err(e),
            Ok(_) => return Ok(WaitStatus(status)),
        }
    }
}

/// A raw wait status, as waitpid(2) reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitStatus(pub i32);

impl WaitStatus {
    /// The exit code when the process exited normally.
    pub fn exit_code(self) -> Option<i32> {
        libc::WIFEXITED(self.0).then(|| libc::WEXITSTATUS(self.0))
    }

    /// The signal that killed the process.
    pub fn signal(self) -> Option<i32> {
        libc::WIFSIGNALED(self.0).then(|| libc::WTERMSIG(self.0))
    }
}

/// Forks; the parent exits at once with status 0 (qemu-ga's
/// `become_daemon()`), the child returns.
pub fn fork_and_leave_parent() -> Result<(), Errno> {
    // SAFETY: fork while still single-threaded; the parent only _exits.
    let pid = cvt(unsafe { libc::fork() })?;
    if pid > 0 {
        // SAFETY: leave at once, without running destructors of state shared with the child.
        unsafe { libc::_exit(0) };
    }
    Ok(())
}

/// Which side of a [`fork_single_threaded`] this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    Child,
    Parent(Pid),
}

/// fork(2) for a process that has only one thread (PID 1 mode before
/// its loop): the child may then use everything the parent had (the
/// allocator, the logger's lock: no other thread held them). The child
/// must leave by [`exit_now`].
pub fn fork_single_threaded() -> Result<Forked, Errno> {
    // SAFETY: the caller is single-threaded (the function's contract), so
    // no lock or allocator state is left half-taken in the child.
    let pid = cvt(unsafe { libc::fork() })?;
    Ok(if pid == 0 { Forked::Child } else { Forked::Parent(pid) })
}

/// Sets the calling process's nice value (setpriority(2)); 19 is the
/// lowest priority.
pub fn set_nice(nice: i32) -> Result<(), Errno> {
    // SAFETY: setpriority on the calling process (who 0), no pointers.
    cvt(unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) })?;
    Ok(())
}

/// Ends the process at once with `code` (`_exit(2)`): no destructors,
/// nothing of state shared with a parent is touched.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit takes no pointer and never returns.
    unsafe { libc::_exit(code) }
}

/// Starts a new session (the caller must not be a group leader).
pub fn setsid() -> Result<(), Errno> {
    // SAFETY: setsid takes no arguments.
    cvt(unsafe { libc::setsid() })?;
    Ok(())
}

/// Sets the file-mode creation mask.
pub fn umask(mask: libc::mode_t) {
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(mask) };
}

/// Changes the working directory.
pub fn chdir(dir: &std::ffi::CStr) -> Result<(), Errno> {
    // SAFETY: chdir with a NUL-terminated path.
    cvt(unsafe { libc::chdir(dir.as_ptr()) })?;
    Ok(())
}

/// Points fds 0-2 at /dev/null (daemons).
pub fn std_fds_to_null() -> Result<(), Errno> {
    let null = super::fd::dev_null()?;
    for fd in 0..3 {
        super::fd::dup_onto(std::os::fd::AsFd::as_fd(&null), fd)?;
    }
    Ok(())
}

/// Raises the soft limit of open files to the hard limit (at most 65,536).
pub fn raise_fd_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid struct of ours.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max.min(1 << 16);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Orphans below us are re-parented to us (forced init mode).
pub fn become_child_subreaper() -> Result<(), Errno> {
    // SAFETY: prctl only sets an attribute of this process.
    cvt(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) })?;
    Ok(())
}

/// Takes a write lock on the whole file (fcntl F_SETLK, not waiting):
/// QEMU's `qemu_write_pidfile()`. The lock lives as long as the fd.
pub fn lock_file(file: &std::fs::File) -> Result<(), Errno> {
    let mut lock = libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    // SAFETY: fcntl record lock on an open file with a valid flock struct.
    cvt(unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &mut lock) })?;
    Ok(())
}

/// Sleeps up to `d`; any signal delivered meanwhile ends the sleep early
/// (unlike `std::thread::sleep`, which resumes after EINTR).
pub fn sleep_interruptible(d: Duration) {
    let ts = libc::timespec {
        // `as _`: time_t is a deprecated alias on musl; a year-long sleep at most.
        tv_sec: d.as_secs().min(i64::MAX as u64) as _,
        tv_nsec: libc::c_long::from(d.subsec_nanos()),
    };
    // SAFETY: one nanosleep with a valid timespec; EINTR just ends it.
    unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) };
}

/// Big allocations get their own mapping (returned to the system at free,
/// grown by mremap). glibc's default threshold climbs after the first free
/// of a big block, after which they land in the brk heap, where realloc
/// copies and free keeps. musl's allocator maps big blocks by itself.
pub fn tune_allocator() {
    #[cfg(target_env = "gnu")]
    // SAFETY: plain libc call, before any allocation of note.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10);
    }
}

#[cfg(test)]
mod stat_tests {
    use super::*;

    #[test]
    fn proc_stat_fields_count_from_the_last_parenthesis() {
        // A command name with spaces and a ')' of its own; fields as
        // proc(5) numbers them (state 3, pgrp 5, flags 9, starttime 22,
        // sigignore 33, sigcatch 34).
        let mut f = vec!["0"; 42];
        (f[0], f[1], f[2], f[4], f[8]) = ("42", "(a) b)", "S", "7", "4194628");
        (f[21], f[32], f[33]) = ("1234", "16384", "4098");
        let text = f.join(" ");
        let st = ProcStat::parse(&text).unwrap();
        assert_eq!((st.state, st.pgrp, st.flags, st.start), (b'S', 7, 4194628, 1234));
        assert_eq!((st.sigignore, st.sigcatch), (16384, 4098));
        assert!(st.is_exiting(), "4194628 has PF_EXITING (0x4)");
        assert!(!st.default_action(libc::SIGTERM), "SIGTERM (bit 14) is ignored");
        assert!(!st.default_action(libc::SIGINT), "SIGINT (bit 1) is caught");
        assert!(st.default_action(libc::SIGHUP));
    }

    #[test]
    fn this_process_reads_as_running_with_default_term() {
        let st = ProcStat::read(getpid()).unwrap();
        assert!(!st.is_exiting());
        assert!(st.start <= boot_ticks());
    }
}
