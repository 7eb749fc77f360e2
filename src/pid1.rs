//! PID 1 mode: qga as the init of a minimal guest (an initramfs's `/init`,
//! a microVM's only process).
//!
//! On top of the agent, init has to: mount /proc, /sys, /dev (devtmpfs),
//! /dev/pts, /run and /tmp when they are not mounted yet; load the kernel
//! modules the channel needs (`--modules-dir`, finit_module(2)); find the
//! virtio port by its name in /sys/class/virtio-ports when no udev made the
//! /dev/virtio-ports link; wait for the channel to appear; reap every
//! orphan (the agent's SIGCHLD handler reaps with `waitpid(-1)`, which
//! covers processes re-parented to init); never exit (exiting panics the
//! kernel: fatal errors are logged and retried); and end the machine on
//! guest-shutdown or a signal: every process is ended, file systems are
//! synced, and reboot(2) powers off, halts or reboots.
//!
//! Signals to init (the usual init conventions, busybox's `poweroff`,
//! `halt` and `reboot` applets send these): SIGTERM and SIGUSR2 power off,
//! SIGUSR1 halts, SIGINT reboots.

use std::ffi::CString;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::agent::Agent;
use crate::channel::{self, Endpoint, Method};
use crate::config::Config;
use crate::{log, startup};

static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Marks PID 1 mode on (detected as pid 1, or forced by an option).
pub fn set_active(on: bool) {
    ACTIVE.store(on, Ordering::SeqCst);
}

pub fn active() -> bool {
    ACTIVE.load(Ordering::SeqCst)
}

/// Whether to run as init: we are pid 1, or `--init` / `init=true` asked.
pub fn wanted(forced: bool) -> bool {
    // SAFETY: getpid has no preconditions.
    forced || unsafe { libc::getpid() } == 1
}

/// How the machine should end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerAction {
    PowerOff,
    Halt,
    Reboot,
}

/// Time processes get between SIGTERM and SIGKILL at shutdown.
const TERM_GRACE: Duration = Duration::from_millis(500);

/// Ends all other processes (SIGTERM, then SIGKILL once they are gone or
/// the grace period passed), syncs file systems and calls reboot(2). Only
/// returns if reboot(2) failed.
pub fn end_all_and_reboot(action: PowerAction) -> std::io::Error {
    log::info(match action {
        PowerAction::PowerOff => "powering off",
        PowerAction::Halt => "halting",
        PowerAction::Reboot => "rebooting",
    });
    // SAFETY: signalling every process (we are init) and syncing are plain libc calls.
    unsafe {
        libc::kill(-1, libc::SIGTERM);
        libc::kill(-1, libc::SIGCONT);
    }
    // As pid 1 every process left is our child (re-parented): reap until
    // none is left (ECHILD) or the grace period is over.
    // SAFETY: getpid has no preconditions.
    let is_init = unsafe { libc::getpid() } == 1;
    let until = Instant::now() + TERM_GRACE;
    while Instant::now() < until {
        let mut status = 0;
        // SAFETY: non-blocking waitpid for any child.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid < 0 && is_init && std::io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD) {
            break;
        }
        if pid <= 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    // SAFETY: as above.
    unsafe {
        libc::kill(-1, libc::SIGKILL);
        libc::sync();
    }
    let cmd = match action {
        PowerAction::PowerOff => libc::RB_POWER_OFF,
        PowerAction::Halt => libc::RB_HALT_SYSTEM,
        PowerAction::Reboot => libc::RB_AUTOBOOT,
    };
    // SAFETY: reboot(2) with a valid command; needs CAP_SYS_BOOT.
    unsafe { libc::reboot(cmd) };
    std::io::Error::last_os_error()
}

// ---------------------------------------------------------------------------
// Signals

static TERMINATE: AtomicBool = AtomicBool::new(false);
/// 0: none yet; else the PowerAction a signal asked for (1 off, 2 halt, 3 reboot).
static REQUESTED: AtomicU8 = AtomicU8::new(0);

fn action_code(a: PowerAction) -> u8 {
    match a {
        PowerAction::PowerOff => 1,
        PowerAction::Halt => 2,
        PowerAction::Reboot => 3,
    }
}

/// Installs init's signal handlers. Init only receives signals it has a
/// handler for, so these are what make `kill -TERM 1` work at all. SIGUSR1
/// and SIGUSR2 are turned into SIGTERM (which stops the agent's loop)
/// after recording the action; SIGINT and SIGTERM stop the loop directly.
fn install_signals() {
    let flag = |sig| {
        // SAFETY: the closures only store to atomics and raise(3), both async-signal-safe.
        let r = unsafe {
            signal_hook::low_level::register(sig, move || {
                let code = match sig {
                    libc::SIGUSR1 => action_code(PowerAction::Halt),
                    libc::SIGINT => action_code(PowerAction::Reboot),
                    _ => action_code(PowerAction::PowerOff),
                };
                let _ = REQUESTED.compare_exchange(0, code, Ordering::SeqCst, Ordering::SeqCst);
                TERMINATE.store(true, Ordering::SeqCst);
                if sig == libc::SIGUSR1 || sig == libc::SIGUSR2 {
                    libc::raise(libc::SIGTERM);
                }
            })
        };
        if let Err(e) = r {
            log::warning(&format!("cannot handle signal {sig}: {e}"));
        }
    };
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGUSR1, libc::SIGUSR2] {
        flag(sig);
    }
    // SIGHUP is handled by the agent; make sure it never kills init before.
    let _ = signal_hook::flag::register(libc::SIGHUP, Arc::new(AtomicBool::new(false)));
}

/// The action the terminating signal asked for (power off by default).
pub fn requested_action() -> PowerAction {
    match REQUESTED.load(Ordering::SeqCst) {
        2 => PowerAction::Halt,
        3 => PowerAction::Reboot,
        _ => PowerAction::PowerOff,
    }
}

fn terminate_requested() -> bool {
    TERMINATE.load(Ordering::SeqCst)
}

/// Sleeps up to `d`; a handled signal (a terminating one) ends it early.
fn sleep_interruptible(d: Duration) {
    if terminate_requested() {
        return;
    }
    let ts = libc::timespec { tv_sec: d.as_secs() as _, tv_nsec: d.subsec_nanos() as libc::c_long };
    // SAFETY: one nanosleep; EINTR (a signal arrived) just ends the sleep.
    unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) };
}

/// Ends the machine as a signal asked; if reboot(2) fails (not allowed),
/// logs it and returns so the caller can go on serving.
fn shutdown_on_signal() {
    let err = end_all_and_reboot(requested_action());
    log::critical(&format!("reboot(2) failed: {err}"));
    TERMINATE.store(false, Ordering::SeqCst);
    REQUESTED.store(0, Ordering::SeqCst);
}

// ---------------------------------------------------------------------------
// File systems and the process environment

fn cstr(s: &str) -> CString {
    CString::new(s).unwrap_or_default()
}

fn errno_text() -> String {
    std::io::Error::last_os_error().to_string()
}

/// Mount points currently mounted (from /proc/self/mountinfo).
fn mount_points() -> Vec<String> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else { return Vec::new() };
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| p.replace("\\040", " "))
        .collect()
}

fn mount(source: &str, target: &str, fstype: &str, flags: libc::c_ulong, data: &str) -> bool {
    if let Err(e) = std::fs::create_dir_all(target) {
        log::warning(&format!("cannot create {target}: {e}"));
    }
    let (s, t, f, d) = (cstr(source), cstr(target), cstr(fstype), cstr(data));
    // SAFETY: mount(2) with NUL-terminated strings that outlive the call.
    let rc = unsafe { libc::mount(s.as_ptr(), t.as_ptr(), f.as_ptr(), flags, d.as_ptr().cast()) };
    if rc != 0 {
        log::warning(&format!("cannot mount {fstype} on {target}: {}", errno_text()));
        return false;
    }
    log::debug(&format!("mounted {fstype} on {target}"));
    true
}

const NOSUID_NODEV_NOEXEC: libc::c_ulong = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;

/// Mounts what a bare initramfs lacks, each only when not mounted yet.
pub fn mount_basics() {
    if !Path::new("/proc/self").exists() {
        mount("proc", "/proc", "proc", NOSUID_NODEV_NOEXEC, "");
    }
    let mounted = mount_points();
    let is_mounted = |p: &str| mounted.iter().any(|m| m == p);
    if !is_mounted("/sys") {
        mount("sysfs", "/sys", "sysfs", NOSUID_NODEV_NOEXEC, "");
    }
    if !is_mounted("/dev") && !mount("devtmpfs", "/dev", "devtmpfs", libc::MS_NOSUID, "mode=0755") {
        // No devtmpfs in this kernel: a tmpfs with the basic nodes.
        if mount("tmpfs", "/dev", "tmpfs", libc::MS_NOSUID, "mode=0755") {
            for (name, major, minor, mode) in [
                ("null", 1, 3, 0o666),
                ("zero", 1, 5, 0o666),
                ("full", 1, 7, 0o666),
                ("random", 1, 8, 0o666),
                ("urandom", 1, 9, 0o666),
                ("tty", 5, 0, 0o666),
                ("console", 5, 1, 0o600),
                ("ptmx", 5, 2, 0o666),
            ] {
                mknod_char(&format!("/dev/{name}"), major, minor, mode);
            }
        }
    }
    if !is_mounted("/dev/pts") {
        mount("devpts", "/dev/pts", "devpts", libc::MS_NOSUID | libc::MS_NOEXEC, "gid=5,mode=620,ptmxmode=666");
    }
    for (link, target) in [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
    ] {
        if std::fs::symlink_metadata(link).is_err() {
            let _ = std::os::unix::fs::symlink(target, link);
        }
    }
    if !is_mounted("/run") {
        mount("tmpfs", "/run", "tmpfs", libc::MS_NOSUID | libc::MS_NODEV, "mode=0755");
    }
    if !is_mounted("/tmp") {
        mount("tmpfs", "/tmp", "tmpfs", libc::MS_NOSUID | libc::MS_NODEV, "mode=1777");
    }
    // qemu-ga's default statedir and pidfile live in /var/run.
    if std::fs::symlink_metadata("/var/run").is_err() {
        let _ = std::fs::create_dir_all("/var");
        if let Err(e) = std::os::unix::fs::symlink("../run", "/var/run") {
            log::warning(&format!("cannot create /var/run: {e}"));
        }
    }
}

fn mknod_char(path: &str, major: u32, minor: u32, mode: u32) -> bool {
    let p = cstr(path);
    // SAFETY: mknod(2) with a NUL-terminated path.
    let rc = unsafe { libc::mknod(p.as_ptr(), libc::S_IFCHR | mode, libc::makedev(major, minor)) };
    if rc != 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST) {
        log::warning(&format!("cannot create {path}: {}", errno_text()));
        return false;
    }
    true
}

/// Process-wide settings of an init: a PATH for guest-exec (the kernel
/// passes none), umask 022, cwd /, its own session, and stdio on the
/// console when the kernel could not open it (no /dev/console node).
fn prepare_environment() {
    if std::env::var_os("PATH").is_none() {
        std::env::set_var("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    }
    // SAFETY: plain process-attribute calls.
    unsafe {
        libc::umask(0o022);
        libc::chdir(c"/".as_ptr());
        libc::setsid();
    }
}

fn open_console_stdio() {
    for fd in 0..3 {
        // SAFETY: F_GETFD only queries; open the console for a closed std fd
        // (open returns the lowest free fd, which is this one).
        unsafe {
            if libc::fcntl(fd, libc::F_GETFD) < 0 {
                libc::open(c"/dev/console".as_ptr(), libc::O_RDWR | libc::O_NOCTTY);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Kernel modules

/// `finit_module(2)` flag: the file is compressed (kernel decompresses).
const MODULE_INIT_COMPRESSED_FILE: libc::c_int = 4;

fn module_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            [".ko", ".ko.xz", ".ko.zst", ".ko.gz"].iter().any(|s| n.ends_with(s))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Loads one module; Ok(false) when it was already loaded.
fn finit_module(path: &Path) -> Result<bool, i32> {
    let file = std::fs::File::open(path).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    let compressed = !path.to_string_lossy().ends_with(".ko");
    let flags = if compressed { MODULE_INIT_COMPRESSED_FILE } else { 0 };
    use std::os::fd::AsRawFd;
    // SAFETY: finit_module(fd, params, flags) with an open fd and an empty NUL-terminated string.
    let rc = unsafe { libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), c"".as_ptr(), flags) };
    if rc == 0 {
        return Ok(true);
    }
    match std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO) {
        libc::EEXIST => Ok(false),
        e => Err(e),
    }
}

/// Loads every module file (`*.ko`, `*.ko.xz`, `*.ko.zst`, `*.ko.gz`) in
/// `dir`, in file-name order. A module that fails (typically with ENOENT,
/// "unknown symbol", because a dependency comes later in the order) is
/// retried after the others, as long as some module loads per pass.
/// Returns how many modules were loaded now.
pub fn load_modules(dir: &str) -> usize {
    let mut pending = match module_files(Path::new(dir)) {
        Ok(f) => f,
        Err(e) => {
            log::warning(&format!("cannot read modules directory {dir}: {e}"));
            return 0;
        }
    };
    let mut loaded = 0;
    let mut failures = Vec::new();
    loop {
        let mut progress = false;
        failures.clear();
        let mut next = Vec::new();
        for p in pending {
            match finit_module(&p) {
                Ok(new) => {
                    progress = true;
                    if new {
                        loaded += 1;
                        log::debug(&format!("loaded module {}", p.display()));
                    }
                }
                Err(e) => {
                    failures.push((p.clone(), e));
                    next.push(p);
                }
            }
        }
        pending = next;
        if pending.is_empty() || !progress {
            break;
        }
    }
    for (p, e) in &failures {
        log::warning(&format!("cannot load module {}: {}", p.display(), crate::protocol::strerror(*e)));
    }
    loaded
}

// ---------------------------------------------------------------------------
// The channel

const VIRTIO_PORTS_DEV: &str = "/dev/virtio-ports/";
const VIRTIO_PORTS_SYS: &str = "/sys/class/virtio-ports";

/// When `path` is `/dev/virtio-ports/NAME` and missing (no udev), finds
/// the port named NAME in /sys/class/virtio-ports, creates its /dev/vportNpM
/// node if devtmpfs did not, and the /dev/virtio-ports/NAME link to it.
/// Returns whether the link was made.
pub fn link_virtio_port(path: &str) -> bool {
    let Some(name) = path.strip_prefix(VIRTIO_PORTS_DEV) else { return false };
    if name.is_empty() || name.contains('/') || Path::new(path).exists() {
        return false;
    }
    let Ok(entries) = std::fs::read_dir(VIRTIO_PORTS_SYS) else { return false };
    for e in entries.flatten() {
        let port = e.file_name().to_string_lossy().into_owned();
        let Ok(n) = std::fs::read_to_string(e.path().join("name")) else { continue };
        if n.trim_end_matches('\n') != name {
            continue;
        }
        let node = format!("/dev/{port}");
        let is_char = std::fs::metadata(&node).map(|m| m.file_type().is_char_device()).unwrap_or(false);
        if !is_char {
            let Ok(dev) = std::fs::read_to_string(e.path().join("dev")) else { continue };
            let Some((ma, mi)) = dev.trim().split_once(':') else { continue };
            let (Ok(ma), Ok(mi)) = (ma.parse(), mi.parse()) else { continue };
            if !mknod_char(&node, ma, mi, 0o600) {
                continue;
            }
        }
        let _ = std::fs::create_dir_all(VIRTIO_PORTS_DEV);
        let _ = std::fs::set_permissions(VIRTIO_PORTS_DEV, std::fs::Permissions::from_mode(0o755));
        let _ = std::fs::remove_file(path);
        return match std::os::unix::fs::symlink(format!("../{port}"), path) {
            Ok(()) => {
                log::debug(&format!("linked {path} to {node}"));
                true
            }
            Err(e) => {
                log::warning(&format!("cannot create {path}: {e}"));
                false
            }
        };
    }
    false
}

/// Opens the channel, waiting for it to appear (modules still probing,
/// the port's name not yet announced by the host). Polls every 5 ms for
/// the first second (a port usually appears within it, right after its
/// module's probe: a doubling backoff overshot that by up to as long again),
/// then backs off to once a second; a terminating signal meanwhile ends
/// the machine.
fn open_channel_waiting(method: Method, path: &str) -> Endpoint {
    let mut delay = Duration::from_millis(5);
    let start = Instant::now();
    let mut logged = false;
    loop {
        if terminate_requested() {
            shutdown_on_signal();
        }
        if method == Method::VirtioSerial {
            link_virtio_port(path);
        }
        match channel::open(method, path) {
            Ok(ep) => {
                if logged {
                    log::info("channel is up");
                }
                return ep;
            }
            Err(e) => {
                if !logged {
                    log::warning(&e);
                    log::info("waiting for channel path...");
                    logged = true;
                }
            }
        }
        sleep_interruptible(delay);
        if start.elapsed() >= Duration::from_secs(1) {
            delay = (delay * 2).min(Duration::from_secs(1));
        }
    }
}

// ---------------------------------------------------------------------------
// Init's main

/// Runs qga as init. Never returns: fatal errors are logged and retried;
/// a terminating signal (or guest-shutdown) ends the machine.
pub fn run(mut cfg: Config) -> ! {
    set_active(true);
    log::init(cfg.verbose, None);
    install_signals();
    prepare_environment();
    mount_basics();
    open_console_stdio();
    // SAFETY: getpid has no preconditions; prctl only sets our own attribute.
    if unsafe { libc::getpid() } != 1 {
        // Forced init mode below another init: orphans come to us instead.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    }
    if let Some(dir) = cfg.modules_dir.clone() {
        let n = load_modules(&dir);
        log::info(&format!("loaded {n} kernel modules from {dir}"));
    }
    startup::prepare_process();
    if let Some(p) = cfg.logfile.as_deref() {
        match std::fs::OpenOptions::new().create(true).append(true).open(p) {
            Ok(f) => log::init(cfg.verbose, Some(f)),
            Err(e) => log::warning(&format!("unable to open specified log file: {e}")),
        }
    }
    if cfg.daemonize {
        // Init forking away would leave nobody as pid 1.
        log::warning("not daemonizing in PID 1 mode");
        cfg.daemonize = false;
    }
    let method_name = cfg.method.clone().unwrap_or_default();
    let mut failures = 0u32;
    loop {
        let Some(method) = Method::parse(&method_name) else {
            log::critical(&format!("unsupported channel method/type: {method_name}"));
            idle_forever();
        };
        let Some(path) = cfg.path.clone() else {
            log::critical("must specify a path for this channel");
            idle_forever();
        };
        let endpoint = open_channel_waiting(method, &path);
        if let Some(dir) = cfg.statedir.as_deref() {
            if let Err(e) = startup::ensure_state_file(dir) {
                log::warning(&e);
            }
        }
        let mut agent = match Agent::new(cfg.clone(), endpoint) {
            Ok(a) => a,
            Err(e) => {
                failures += 1;
                log::critical(&format!("failed to initialise the event loop: {e}"));
                sleep_interruptible(Duration::from_secs(u64::from(failures.min(5))));
                continue;
            }
        };
        agent.run();
        drop(agent);
        // The loop only ends on SIGTERM/SIGINT (or a signal turned into one).
        shutdown_on_signal();
    }
}

/// Nothing can ever work (bad configuration): stay alive as init, reap
/// orphans, and still obey terminating signals.
fn idle_forever() -> ! {
    loop {
        if terminate_requested() {
            shutdown_on_signal();
        }
        // SAFETY: non-blocking waitpid for any child.
        while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
        sleep_interruptible(Duration::from_secs(5));
    }
}
