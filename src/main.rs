//! `qga`: command line, start-up and the event loop.

use qga::agent::Agent;
use qga::channel::{self, Endpoint, Method};
use qga::config::{self, Action};
use qga::{commands, log, pid1, startup};

/// musl's malloc is slow for small blocks: free lists in front of it.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOC: qga::alloc_cache::Cached = qga::alloc_cache::Cached::new();

fn main() {
    std::process::exit(run());
}

fn fatal(msg: &str) -> i32 {
    log::critical(msg);
    1
}

fn run() -> i32 {
    // Big buffers (captures, replies, input-data) always get their own
    // mapping: returned at free, grown by mremap without copying. glibc's
    // default threshold climbs after the first free of a big block; then
    // they land in the brk heap, where realloc copies and free keeps.
    // musl has no mallopt and needs none: its malloc always maps blocks
    // above ~128 KiB on their own, unmaps them at free and grows them with
    // mremap (measured in docs/vm.md).
    // SAFETY: plain libc call, before any allocation of note.
    #[cfg(target_env = "gnu")]
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10) };
    let argv: Vec<String> = std::env::args().collect();
    let env_conf = std::env::var("QGA_CONF").ok();
    // As pid 1, exiting would panic the kernel: whatever the command line
    // did, init goes on (with the defaults when it could not be used).
    // SAFETY: getpid has no preconditions.
    let is_pid1 = unsafe { libc::getpid() } == 1;
    let mut cfg = match config::parse(&argv, env_conf.as_deref(), &commands::names()) {
        Action::Run(cfg) => cfg,
        Action::Print(text) => {
            print!("{text}");
            if !is_pid1 {
                return 0;
            }
            config::Config::default()
        }
        Action::Fail { stdout, stderr, code } => {
            eprint!("{stderr}");
            print!("{stdout}");
            if !is_pid1 {
                return code;
            }
            config::Config::default()
        }
    };
    config::apply_defaults(&mut cfg);
    if cfg.dump_conf {
        print!("{}", config::dump(&cfg));
        if !is_pid1 {
            return 0;
        }
    }
    if pid1::wanted(cfg.init) {
        pid1::run(cfg);
    }
    startup::prepare_process();

    let logfile = match cfg.logfile.as_deref() {
        Some(p) => match std::fs::OpenOptions::new().create(true).append(true).open(p) {
            Ok(f) => Some(f),
            Err(e) => return fatal(&format!("unable to open specified log file: {e}")),
        },
        None => None,
    };
    log::init(cfg.verbose, logfile);

    let activated = match channel::socket::from_systemd() {
        Err(e) => return fatal(&e),
        Ok(a) => a,
    };
    if activated.is_none() && cfg.path.is_none() {
        eprint!("{}", log::glib_critical_text("must specify a path for this channel"));
        return 1;
    }
    // qemu-ga creates the state file before it opens the channel.
    if let Some(dir) = cfg.statedir.as_deref() {
        if let Err(e) = startup::ensure_state_file(dir) {
            return fatal(&e);
        }
    }
    let endpoint = match activated {
        Some((fd, method)) => {
            cfg.method = Some(if method == Method::UnixListen { "unix-listen" } else { "vsock-listen" }.into());
            Endpoint::Listener(fd)
        }
        None => {
            let method_name = cfg.method.clone().unwrap_or_default();
            let path = cfg.path.clone().unwrap_or_default();
            let Some(method) = Method::parse(&method_name) else {
                log::critical(&format!("unsupported channel method/type: {method_name}"));
                log::critical("failed to initialize guest agent channel");
                return fatal("error initializing guest agent");
            };
            loop {
                match channel::open(method, &path) {
                    Ok(ep) => break ep,
                    Err(e) if cfg.retry_path => {
                        log::warning(&e);
                        log::info("waiting for channel path...");
                        std::thread::sleep(std::time::Duration::from_secs(5));
                    }
                    Err(e) => {
                        log::critical(&e);
                        log::critical("failed to initialize guest agent channel");
                        return fatal("error initializing guest agent");
                    }
                }
            }
        }
    };
    let mut pidfile_written = None;
    if cfg.daemonize {
        if let Err(e) = startup::daemonize(cfg.pidfile.as_deref()) {
            return fatal(&e);
        }
        pidfile_written = cfg.pidfile.clone();
    }
    let mut agent = match Agent::new(cfg, endpoint) {
        Ok(a) => a,
        Err(e) => return fatal(&format!("failed to initialise the event loop: {e}")),
    };
    agent.frozen = startup::frozen_at_start();
    let status = agent.run();
    if let Some(p) = pidfile_written {
        let _ = std::fs::remove_file(p);
    }
    status
}
