//! qgactl: the host-side client for qga and stock qemu-ga.
//!
//! One session per invocation: connect (unix socket, vsock or hybrid
//! vsock), 0xFF + guest-sync-delimited, then the subcommand's requests in
//! order. See docs/qgactl.md for the user documentation and exit codes.

#![forbid(unsafe_code)]

mod cli;
mod conn;
mod exec;
mod fail;
mod files;
mod input;
mod progress;
mod signals;
mod simple;
mod terminal;

use cli::Command;

fn run() -> fail::Result<i32> {
    let (opts, cmd) = cli::parse(std::env::args_os().skip(1).collect())?;
    match cmd {
        Command::Help(text) => {
            println!("{text}");
            return Ok(0);
        }
        Command::Version => {
            println!("qgactl {}", env!("CARGO_PKG_VERSION"));
            return Ok(0);
        }
        _ => {}
    }
    let Some(opts) = opts else { return Ok(0) };
    let mut sess = conn::Session::open(&opts)?;
    match cmd {
        Command::Ping => simple::ping(&mut sess),
        Command::Info { json } => simple::info(&mut sess, json),
        Command::Sync => simple::sync(&mut sess),
        Command::Osinfo { json } => simple::osinfo(&mut sess, json),
        Command::Shutdown { mode } => simple::shutdown(&mut sess, mode),
        Command::Raw { request } => simple::raw(&mut sess, &request),
        Command::Exec(a) => exec::run(&mut sess, a),
        Command::Push { local, remote, transfer } => files::push(&mut sess, &local, &remote, &transfer),
        Command::Pull { remote, local, transfer } => files::pull(&mut sess, &remote, &local, &transfer),
        Command::Help(_) | Command::Version => Ok(0),
    }
}

fn main() {
    let code = match run() {
        Ok(code) => code,
        Err(f) => {
            f.report();
            f.exit_code()
        }
    };
    std::process::exit(code);
}
