//! `qga`: command line, start-up and the event loop.

use qga::agent::Agent;
use qga::channel::{self, Endpoint, Method};
use qga::config::{self, Action};
use qga::{commands, log, startup};

fn main() {
    std::process::exit(run());
}

fn fatal(msg: &str) -> i32 {
    log::critical(msg);
    1
}

fn run() -> i32 {
    let argv: Vec<String> = std::env::args().collect();
    let env_conf = std::env::var("QGA_CONF").ok();
    let mut cfg = match config::parse(&argv, env_conf.as_deref(), &commands::names()) {
        Action::Run(cfg) => cfg,
        Action::Print(text) => {
            print!("{text}");
            return 0;
        }
        Action::Fail { stdout, stderr, code } => {
            eprint!("{stderr}");
            print!("{stdout}");
            return code;
        }
    };
    config::apply_defaults(&mut cfg);
    if cfg.dump_conf {
        print!("{}", config::dump(&cfg));
        return 0;
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

    let endpoint = match channel::socket::from_systemd() {
        Err(e) => return fatal(&e),
        Ok(Some((fd, method))) => {
            cfg.method = Some(if method == Method::UnixListen { "unix-listen" } else { "vsock-listen" }.into());
            Endpoint::Listener(fd)
        }
        Ok(None) => {
            let method_name = cfg.method.clone().unwrap_or_default();
            let Some(method) = Method::parse(&method_name) else {
                return fatal(&format!("unsupported channel method/type: {method_name}"));
            };
            let Some(path) = cfg.path.clone() else {
                return fatal("must specify a path for this channel");
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
                        return fatal("failed to create guest agent channel");
                    }
                }
            }
        }
    };
    if let Some(dir) = cfg.statedir.as_deref() {
        if let Err(e) = startup::ensure_state_file(dir) {
            return fatal(&e);
        }
    }
    if cfg.daemonize {
        if let Err(e) = startup::daemonize(cfg.pidfile.as_deref()) {
            return fatal(&e);
        }
    }
    let mut agent = match Agent::new(cfg, endpoint) {
        Ok(a) => a,
        Err(e) => return fatal(&format!("failed to initialise the event loop: {e}")),
    };
    agent.run()
}
