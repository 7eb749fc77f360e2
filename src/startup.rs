//! The one start-up path, shared by the daemon and PID 1 mode (qemu-ga's
//! `main()`, `initialize_agent()` and `become_daemon()`): command line
//! and configuration, process setup, logging, the state file and the
//! frozen marker, the channel, daemonising, then the loop.
//!
//! The two modes differ only in what a failure does: the daemon reports it
//! and exits; init (which must never exit) logs it and goes on with
//! defaults, waits for the channel, and ends the machine when its loop
//! ends.

use std::io::Write;
use std::rc::Rc;
use std::time::Duration;

use crate::agent::Agent;
use crate::channel::{self, socket, Endpoint, Method};
use crate::commands::{self, GuestState};
use crate::config::{self, Action, Config};
use crate::policy::{self, ExecPolicy};
use crate::signals::SignalPipe;
use crate::sys::libc;
use crate::sys::{fd, process, signal, Errno};
use crate::{init, log};

/// Runs qga; returns the exit status (never returns in PID 1 mode).
pub fn main() -> i32 {
    process::tune_allocator();
    let argv: Vec<String> = std::env::args().collect();
    let env_conf = std::env::var("QGA_CONF").ok();
    // As pid 1, exiting would panic the kernel: whatever the command line
    // did, init goes on (with the defaults when it could not be used).
    let is_pid1 = process::getpid() == 1;
    let mut cfg = match config::parse(&argv, env_conf.as_deref(), &commands::names()) {
        Action::Run(cfg) => cfg,
        Action::Print(text) => {
            print!("{text}");
            if !is_pid1 {
                return 0;
            }
            Config::default()
        }
        Action::Fail { stdout, stderr, code } => {
            eprint!("{stderr}");
            print!("{stdout}");
            if !is_pid1 {
                return code;
            }
            Config::default()
        }
    };
    config::apply_defaults(&mut cfg);
    if cfg.dump_conf {
        print!("{}", config::dump(&cfg));
        if !is_pid1 {
            return 0;
        }
    }
    let init_mode = init::wanted(cfg.init);
    if init_mode {
        init::prepare(&mut cfg);
    }
    match start(cfg, init_mode) {
        Ok(status) => status,
        Err(msg) if init_mode => {
            log::critical(&msg);
            init::idle_forever()
        }
        Err(msg) => {
            log::critical(&msg);
            1
        }
    }
}

/// Fails in the daemon; only logs in PID 1 mode.
fn check(init_mode: bool, r: Result<(), String>) -> Result<(), String> {
    match r {
        Err(msg) if init_mode => {
            log::warning(&msg);
            Ok(())
        }
        other => other,
    }
}

fn start(mut cfg: Config, init_mode: bool) -> Result<i32, String> {
    prepare_process();
    let logfile = match cfg.logfile.as_deref() {
        Some(p) => match std::fs::OpenOptions::new().create(true).append(true).open(p) {
            Ok(f) => Some(f),
            Err(e) => {
                check(init_mode, Err(format!("unable to open specified log file: {e}")))?;
                None
            }
        },
        None => None,
    };
    log::init(cfg.verbose, logfile);
    let exec_policy = load_exec_policy(&mut cfg, init_mode)?;
    if cfg.audit_log.is_some() && !cfg!(feature = "controls") {
        // An owner who asked for records must not get none silently.
        check(init_mode, Err("this qga is built without the audit trail (the controls feature)".into()))?;
    }

    let new_pipe = || SignalPipe::new().map_err(|e| format!("cannot handle signals: {e}"));
    let mut signals = Some(new_pipe()?);
    let activated = socket::from_systemd()?;
    if activated.is_none() && cfg.path.is_none() && !init_mode {
        eprint!("{}", log::glib_critical_text("must specify a path for this channel"));
        return Ok(1);
    }
    // qemu-ga creates the state file before it opens the channel.
    let mut frozen = false;
    if let Some(dir) = cfg.statedir.clone() {
        check(init_mode, ensure_state_file(&dir).map(|f| frozen = f))?;
    }
    let mut endpoint = match activated {
        Some((fd, method)) => {
            cfg.method = Some(if method == Method::UnixListen { "unix-listen" } else { "vsock-listen" }.into());
            Endpoint::Listener(fd)
        }
        None => open_channel(&cfg, init_mode)?,
    };
    let mut pidfile_written = None;
    if cfg.daemonize {
        daemonize(cfg.pidfile.as_deref())?;
        pidfile_written = cfg.pidfile.clone();
    }
    let mut failures = 0u32;
    loop {
        let guest = GuestState { frozen, init_mode, exec_policy: exec_policy.clone(), ..Default::default() };
        let pipe = match signals.take() {
            Some(p) => p,
            None => new_pipe()?,
        };
        let status = match Agent::new(cfg.clone(), endpoint, guest, pipe) {
            Ok(mut agent) => {
                let status = agent.run();
                signals = Some(agent.into_signals());
                status
            }
            Err(e) if init_mode => {
                failures += 1;
                log::critical(&format!("failed to initialise the event loop: {e}"));
                process::sleep_interruptible(Duration::from_secs(u64::from(failures.min(5))));
                endpoint = open_channel(&cfg, init_mode)?;
                continue;
            }
            Err(e) => return Err(format!("failed to initialise the event loop: {e}")),
        };
        if !init_mode {
            if let Some(p) = pidfile_written {
                let _ = std::fs::remove_file(p);
            }
            return Ok(status);
        }
        // The loop only ends on SIGTERM/SIGINT (or a signal turned into
        // one): end the machine; if that is not allowed, serve again.
        init::shutdown_on_signal();
        frozen = false;
        endpoint = open_channel(&cfg, init_mode)?;
    }
}

/// The guest-file commands, which `[exec] files=false` disables.
const FILE_COMMANDS: &[&str] = &[
    "guest-file-open",
    "guest-file-close",
    "guest-file-read",
    "guest-file-write",
    "guest-file-seek",
    "guest-file-flush",
];

/// The exec policy named by `--exec-policy`, compiled. It fails closed:
/// the daemon does not start with a policy it cannot read or apply, and
/// in PID 1 mode (which must go on) guest-exec and the file commands are
/// disabled instead. `[exec] files=false` disables the file commands as
/// `--block-rpcs` would, so guest-info tells the truth.
fn load_exec_policy(cfg: &mut Config, init_mode: bool) -> Result<Option<Rc<ExecPolicy>>, String> {
    let Some(path) = cfg.exec_policy.clone() else { return Ok(None) };
    let compiled = policy::load(&path);
    match compiled {
        Ok(p) => {
            if !p.files_allowed() {
                cfg.block_rpcs.extend(FILE_COMMANDS.iter().map(|c| c.to_string()));
            }
            log::info(&format!("exec policy {path} loaded"));
            Ok(Some(Rc::new(p)))
        }
        Err(e) if init_mode => {
            log::critical(&format!("{e}; guest-exec and the file commands are disabled"));
            cfg.block_rpcs.extend(FILE_COMMANDS.iter().chain(&["guest-exec"]).map(|c| c.to_string()));
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Opens the configured channel: the daemon retries with `-r` or fails;
/// init waits for it as long as it takes.
fn open_channel(cfg: &Config, init_mode: bool) -> Result<Endpoint, String> {
    let method_name = cfg.method.clone().unwrap_or_default();
    let Some(method) = Method::parse(&method_name) else {
        log::critical(&format!("unsupported channel method/type: {method_name}"));
        log::critical("failed to initialize guest agent channel");
        return Err("error initializing guest agent".into());
    };
    let Some(path) = cfg.path.clone() else {
        return Err("must specify a path for this channel".into());
    };
    if init_mode {
        return Ok(init::open_channel_waiting(method, &path, cfg.max_clients()));
    }
    loop {
        match channel::open(method, &path, cfg.max_clients()) {
            Ok(ep) => return Ok(ep),
            Err(e) if cfg.retry_path => {
                log::warning(&e);
                log::info("waiting for channel path...");
                std::thread::sleep(Duration::from_secs(5));
            }
            Err(e) => {
                log::critical(&e);
                log::critical("failed to initialize guest agent channel");
                return Err("error initializing guest agent".into());
            }
        }
    }
}

/// Makes sure fds 0-2 are open (so no pipe ever lands on them), marks every
/// other inherited fd close-on-exec, resets inherited signal dispositions
/// libc cannot, ignores SIGPIPE (writes to a gone peer return EPIPE), and
/// raises the fd soft limit to the hard limit.
pub fn prepare_process() {
    for n in 0..3 {
        fd::fill_std_fd(n, c"/dev/null", libc::O_RDWR);
    }
    for n in fd::open_fds().into_iter().filter(|&n| n > 2) {
        // Harmless if it was the directory handle of the listing itself.
        let _ = fd::set_cloexec_raw(n);
    }
    signal::reset_reserved_signals();
    signal::ignore_sigpipe();
    process::raise_fd_limit();
}

/// `<statedir>/qga.state`, created with qemu-ga's default fd counter if
/// missing (guest-file handles count up from it). Returns whether a
/// previous instance left file systems frozen (the marker
/// `<statedir>/qga.state.isfrozen` exists): the agent then starts in the
/// frozen state, with logging off, until guest-fsfreeze-thaw.
pub fn ensure_state_file(statedir: &str) -> Result<bool, String> {
    let marker = crate::commands::frozen_marker_path(statedir);
    let frozen = std::path::Path::new(&marker).exists();
    if frozen {
        log::warning(&format!(
            "previous instance appears to have exited with frozen filesystems. deferring logging/pidfile \
             creation and disabling non-fsfreeze-safe commands until guest-fsfreeze-thaw is issued, or \
             filesystems are manually unfrozen and the file {marker} is removed"
        ));
        log::set_enabled(false);
    }
    let path = format!("{statedir}/qga.state");
    // Nothing is written while file systems may be frozen: the defaults
    // are used and the file is written by the first guest-file-open.
    if frozen || std::path::Path::new(&path).exists() {
        return Ok(frozen);
    }
    std::fs::write(&path, "[global]\nfd_counter=1000\n")
        .map_err(|_| format!("unable to create state file at path {path}"))?;
    Ok(false)
}

/// qemu-ga's `become_daemon()`: fork (the parent exits 0), pidfile,
/// umask 077, setsid, chdir /, stdio to /dev/null.
pub fn daemonize(pidfile: Option<&str>) -> Result<(), String> {
    process::fork_and_leave_parent().map_err(|e| format!("failed to daemonize: {e}"))?;
    if let Some(p) = pidfile {
        write_pidfile(p)?;
    }
    process::umask(libc::S_IRWXG | libc::S_IRWXO);
    if process::setsid().is_err() || process::chdir(c"/").is_err() {
        return Err("failed to daemonize".into());
    }
    // Best effort, as qemu-ga: the daemon runs with whatever stdio it has.
    let _ = process::std_fds_to_null();
    Ok(())
}

/// Locked pidfile as QEMU's `qemu_write_pidfile()`; the file stays open
/// (and locked) for the life of the process.
pub fn write_pidfile(path: &str) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("Cannot open pid file: {}", Errno::of(&e)))?;
    process::lock_file(&f).map_err(|e| format!("Cannot lock pid file: {e}"))?;
    f.set_len(0).map_err(|e| format!("Failed to truncate pid file: {e}"))?;
    writeln!(f, "{}", std::process::id()).map_err(|e| format!("Failed to write pid file: {e}"))?;
    // The lock lives as long as the descriptor: keep it for good.
    std::mem::forget(f);
    Ok(())
}
