//! Process setup before the loop starts: standard fds, inherited fds,
//! SIGPIPE, fd limits, state file, pidfile and daemonising (qemu-ga's
//! `initialize_agent()` / `become_daemon()`).

use std::io::Write;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::sys::strerror;

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

/// Makes sure fds 0-2 are open (so no pipe ever lands on them), marks every
/// other inherited fd close-on-exec, ignores SIGPIPE (writes to a gone
/// peer return EPIPE), and raises the fd soft limit to the hard limit.
pub fn prepare_process() {
    for fd in 0..3 {
        // SAFETY: F_GETFD only queries; open /dev/null for a closed std fd.
        unsafe {
            if libc::fcntl(fd, libc::F_GETFD) < 0 {
                libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
            }
        }
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        let fds: Vec<i32> = dir.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect();
        for fd in fds.into_iter().filter(|&fd| fd > 2) {
            // SAFETY: setting FD_CLOEXEC on an inherited fd; harmless if it is already closed.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
    }
    // SAFETY: ignoring SIGPIPE and raising our own rlimit are plain libc calls.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max.min(1 << 16);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Set when `<statedir>/qga.state.isfrozen` existed at start-up.
static FROZEN_AT_START: AtomicBool = AtomicBool::new(false);

/// Whether a previous instance left file systems frozen (the marker
/// `<statedir>/qga.state.isfrozen` existed when [`ensure_state_file`]
/// ran): the agent starts in the frozen state, with logging off, until
/// guest-fsfreeze-thaw.
pub fn frozen_at_start() -> bool {
    FROZEN_AT_START.load(Ordering::SeqCst)
}

/// `<statedir>/qga.state`, created with qemu-ga's default fd counter if
/// missing (guest-file handles count up from it). Also notices the frozen
/// marker of a previous instance (see [`frozen_at_start`]).
pub fn ensure_state_file(statedir: &str) -> Result<(), String> {
    let marker = format!("{statedir}/qga.state.isfrozen");
    if std::path::Path::new(&marker).exists() {
        crate::log::warning(&format!(
            "previous instance appears to have exited with frozen filesystems. deferring logging/pidfile \
             creation and disabling non-fsfreeze-safe commands until guest-fsfreeze-thaw is issued, or \
             filesystems are manually unfrozen and the file {marker} is removed"
        ));
        crate::log::set_enabled(false);
        FROZEN_AT_START.store(true, Ordering::SeqCst);
    }
    let path = format!("{statedir}/qga.state");
    // Nothing is written while file systems may be frozen: the defaults
    // are used and the file is written by the first guest-file-open.
    if frozen_at_start() || std::path::Path::new(&path).exists() {
        return Ok(());
    }
    std::fs::write(&path, "[global]\nfd_counter=1000\n")
        .map_err(|_| format!("unable to create state file at path {path}"))
}

/// qemu-ga's `become_daemon()`: fork (the parent exits 0), pidfile,
/// umask 077, setsid, chdir /, stdio to /dev/null.
pub fn daemonize(pidfile: Option<&str>) -> Result<(), String> {
    // SAFETY: fork while still single-threaded; the parent only exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("failed to daemonize: {}", strerror(errno())));
    }
    if pid > 0 {
        // SAFETY: leave immediately without running destructors of shared state.
        unsafe { libc::_exit(0) };
    }
    if let Some(p) = pidfile {
        write_pidfile(p)?;
    }
    // SAFETY: plain process-attribute calls in the daemon child.
    unsafe {
        libc::umask(libc::S_IRWXG | libc::S_IRWXO);
        if libc::setsid() < 0 || libc::chdir(c"/".as_ptr()) < 0 {
            return Err("failed to daemonize".into());
        }
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            for fd in 0..3 {
                libc::dup2(null, fd);
            }
            if null > 2 {
                libc::close(null);
            }
        }
    }
    Ok(())
}

/// Locked pidfile as QEMU's `qemu_write_pidfile()`; the fd stays open
/// (and locked) for the life of the process.
pub fn write_pidfile(path: &str) -> Result<(), String> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .mode_0600()
        .open(path)
        .map_err(|e| format!("Cannot open pid file: {}", strerror(e.raw_os_error().unwrap_or(libc::EIO))))?;
    let mut lock: libc::flock = unsafe_zeroed();
    lock.l_type = libc::F_WRLCK as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: fcntl record lock on the file we just opened.
    if unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETLK, &lock) } < 0 {
        return Err(format!("Cannot lock pid file: {}", strerror(errno())));
    }
    let mut f = f;
    f.set_len(0).map_err(|e| format!("Failed to truncate pid file: {e}"))?;
    writeln!(f, "{}", std::process::id()).map_err(|e| format!("Failed to write pid file: {e}"))?;
    std::mem::forget(f);
    Ok(())
}

fn unsafe_zeroed<T>() -> T {
    // SAFETY: only used for the plain C struct flock, valid when zeroed.
    unsafe { std::mem::zeroed() }
}

trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}

impl Mode0600 for std::fs::OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
    }
}
