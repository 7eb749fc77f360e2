//! Command line: global options, subcommands, help texts.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::time::Duration;

use crate::conn::{Options, Target};
use crate::fail::{Failure, Result};

pub const DEFAULT_CONNECT_TIMEOUT: f64 = 5.0;
pub const DEFAULT_REPLY_TIMEOUT: f64 = 30.0;

pub const MAIN_HELP: &str = "\
qgactl: drive a QEMU guest agent (qga or stock qemu-ga) from the host

Usage: qgactl [CONNECTION] [--connect-timeout S] [--reply-timeout S] COMMAND [ARGS]

Connection (one of; default: --socket $QGA_SOCKET):
  --socket PATH             unix socket: QEMU's chardev socket for the agent
                            port, or the agent's own unix-listen socket
  --vsock CID:PORT          AF_VSOCK (agent started with -m vsock-listen)
  --hybrid-vsock PATH:PORT  unix socket of a user-space vsock backend
                            (Firecracker, Cloud Hypervisor): CONNECT PORT
  --connect-timeout S       keep retrying connect + sync this long (default 5)
  --reply-timeout S         longest wait for any reply (default 30)

Commands:
  exec [OPTIONS] -- PROGRAM [ARG]...   run a program in the guest
  shell [--user USER]                  interactive login shell in the guest (qga)
  push LOCAL REMOTE                    copy a file into the guest
  pull REMOTE LOCAL                    copy a file out of the guest
  ping                                 check that the agent answers
  info [--json]                        agent version and commands
  sync                                 resynchronise and show the sync id
  osinfo [--json]                      guest operating system
  shutdown [--mode powerdown|halt|reboot]
  raw 'JSON'                           send one request, print the reply line
  help [COMMAND]                       this text, or a command's help

Exit codes: the program's own for exec (128+N when killed by signal N);
1 host-side failure, 2 usage, 124 exec timeout, 125 the agent returned an
error, 130 interrupted, 255 connection/agent not answering.
'qgactl COMMAND --help' describes each command.";

pub const EXEC_HELP: &str = "\
Usage: qgactl exec [OPTIONS] [--] PROGRAM [ARG]...

Runs PROGRAM in the guest (PATH lookup in the guest when it has no '/').
Its stdout goes to stdout and its stderr to stderr; qgactl exits with the
program's exit status, or 128+N when a signal N killed it.

With qga (guest-info lists guest-exec-terminate) output is streamed as it is
produced and never truncated. With stock qemu-ga the status is polled (with
backoff) and output is printed when the program ends; qemu-ga keeps only the
first 16 MiB of each stream (a warning says so).

Options:
  --stdin FILE|-     feed FILE (or qgactl's stdin) to the program's stdin
                     (any size; see below); without it the program's stdin
                     is /dev/null
  -e, --env K=V      environment variable; repeatable. NOTE: like qemu-ga's
                     guest-exec, giving any --env REPLACES the whole
                     environment (add PATH=... if the program needs it)
  --cwd DIR          working directory (qga only)
  --user USER        run as USER, a name or a uid (qga only)
  --timeout S        terminate the program after S seconds (exit code 124);
                     qga kills its process group (TERM, then KILL); with
                     stock qemu-ga qgactl runs `kill` in the guest instead
  --merge            stderr into stdout, in order (qemu-ga >= 8.1, qga)
  --poll             poll even when the agent can stream, and send stdin as
                     for stock qemu-ga (for comparisons)
  -t, --tty          run the program on a pseudo-terminal in the guest
                     (qga: guest-info lists guest-exec-resize); the local
                     terminal goes to raw mode for the session and is
                     restored after it; window size changes follow; `~.` at
                     the start of a line ends the session (exit 255)
  -i, --interactive  send qgactl's stdin to the program as it is typed
                     (as --stdin -); `-it` for an interactive program

Ctrl-C (or SIGTERM/SIGHUP to qgactl) forwards that signal to the program
(its process group on qga); after 5 s, or at the second Ctrl-C, it is
killed (SIGKILL); a third Ctrl-C makes qgactl give up waiting (exit 130).
With stock qemu-ga the signal is delivered by running `kill` in the guest.

stdin with qga (guest-info lists guest-exec-input): streamed while the
program runs, in chunks of 1 MiB, read from FILE or the pipe as it comes
(a live `producer | qgactl exec --stdin - ...` works); no size limit, and
the program sees EOF when the input ends. It decides how much it reads:
input it does not take is dropped without an error.
stdin with stock qemu-ga: read to its end first. Up to 50266112 bytes
(48 MiB - 64 KiB) travels in the guest-exec request (input-data; QEMU's
64 MiB message limit). Larger input is uploaded to a private file in the
guest first (guest-file-*; needs /bin/sh, mkdir, rm in the guest) and given
to the program as its stdin: a regular file instead of a pipe.

Exit codes: the program's; 128+N for signal N; 124 timeout; 125 the agent
refused (e.g. cannot execute PROGRAM, command disabled); 255 connection.

Examples:
  qgactl exec -- uname -a
  qgactl exec --timeout 60 -- sh -c 'make -j4 2>&1'
  tar c dir | qgactl exec --stdin - -- tar x -C /srv
  qgactl exec --env PATH=/usr/bin:/bin --env LANG=C.UTF-8 -- env";

pub const SHELL_HELP: &str = "\
Usage: qgactl shell [--user USER]

Runs the guest user's login shell (the shell field of /etc/passwd for the
uid the program runs as, else /bin/sh; started with -l in that user's home
directory) on a pseudo-terminal, as `qgactl exec -it` does: the local
terminal is in raw mode for the session and restored after it, keystrokes
go to the guest as they are typed, window size changes follow, `~.` at the
start of a line ends the session (exit 255, the shell gets SIGHUP), and
qgactl exits with the shell's exit status.

Needs qga's terminal support (guest-info lists guest-exec-resize); with
stock qemu-ga it fails with exit code 125.

Options:
  --user USER        run as USER, a name or a uid

Example:
  qgactl --socket /run/vm1/qga.sock shell";

pub const PUSH_HELP: &str = "\
Usage: qgactl push [--progress|--no-progress] LOCAL REMOTE

Copies LOCAL (or stdin for '-') to REMOTE in the guest through
guest-file-open/write/close, in chunks of 4 MiB; bytes are preserved
exactly. REMOTE ending in '/' means REMOTE/<basename of LOCAL>. An existing
REMOTE is truncated; a new one is created by the agent (qemu-ga: mode 0666).
A progress bar is drawn on stderr when it is a terminal.

Example:
  qgactl push ./build/app.tar.gz /root/";

pub const PULL_HELP: &str = "\
Usage: qgactl pull [--progress|--no-progress] REMOTE LOCAL

Copies REMOTE from the guest to LOCAL (stdout for '-'; LOCAL being a
directory means LOCAL/<basename of REMOTE>) through
guest-file-open/read/close, in chunks of 4 MiB; bytes are preserved exactly.
The data goes to a temporary file next to LOCAL that is renamed over LOCAL
only when the whole file arrived.

Example:
  qgactl pull /var/log/syslog ./guest-syslog";

pub const PING_HELP: &str = "\
Usage: qgactl ping

Sends guest-ping and prints the round-trip time. Exit 0 when the agent
answers, 255 when it does not (within --connect-timeout).

Example:
  until qgactl --connect-timeout 60 ping; do sleep 1; done";

pub const INFO_HELP: &str = "\
Usage: qgactl info [--json]

Shows guest-info: the agent version, whether qga's exec extensions are
present, and every command with its enabled / success-response flags.
--json prints the agent's reply line unchanged.

Example:
  qgactl info | grep guest-file";

pub const SYNC_HELP: &str = "\
Usage: qgactl sync

Sends 0xFF and guest-sync-delimited with a random id (as every session
does), discards stale output, then checks guest-sync too and prints the id.

Example:
  qgactl sync";

pub const OSINFO_HELP: &str = "\
Usage: qgactl osinfo [--json]

Shows guest-get-osinfo (os-release and uname data); --json prints the
reply line unchanged.

Example:
  qgactl osinfo";

pub const SHUTDOWN_HELP: &str = "\
Usage: qgactl shutdown [--mode powerdown|halt|reboot]

Sends guest-shutdown (default mode: powerdown). The agent sends no reply on
success; qgactl follows it with guest-sync: an error reply means the
shutdown was refused (exit 125), the sync reply or the connection closing
means it was accepted (exit 0).

Example:
  qgactl shutdown --mode reboot";

pub const RAW_HELP: &str = "\
Usage: qgactl raw 'JSON'      (or 'qgactl raw -' to read it from stdin)

Sends one request exactly as given (after the session's sync) and prints
the reply line exactly as received. Exit 0 for a return, 125 for an error
reply. Commands that do not reply on success (guest-shutdown,
guest-suspend-*) end with a reply timeout.

Example:
  qgactl raw '{\"execute\": \"guest-get-time\"}'";

/// Help text for a subcommand name.
pub fn help_for(name: &str) -> Option<&'static str> {
    Some(match name {
        "exec" => EXEC_HELP,
        "shell" => SHELL_HELP,
        "push" => PUSH_HELP,
        "pull" => PULL_HELP,
        "ping" => PING_HELP,
        "info" => INFO_HELP,
        "sync" => SYNC_HELP,
        "osinfo" => OSINFO_HELP,
        "shutdown" => SHUTDOWN_HELP,
        "raw" => RAW_HELP,
        _ => return None,
    })
}

#[derive(Debug)]
pub enum StdinSource {
    Stdin,
    File(PathBuf),
}

#[derive(Debug, Default)]
pub struct ExecArgs {
    pub stdin: Option<StdinSource>,
    pub env: Vec<String>,
    pub cwd: Option<String>,
    pub user: Option<String>,
    pub timeout: Option<f64>,
    pub merge: bool,
    pub poll: bool,
    /// `-t`: on a pseudo-terminal.
    pub tty: bool,
    /// `shell`: the program is the login-shell wrapper.
    pub shell: bool,
    pub program: String,
    pub args: Vec<String>,
}

#[derive(Debug)]
pub enum Command {
    Help(&'static str),
    Version,
    Ping,
    Info { json: bool },
    Sync,
    Osinfo { json: bool },
    Shutdown { mode: Option<String> },
    Raw { request: String },
    Exec(ExecArgs),
    Push { local: PathBuf, remote: String, progress: Option<bool> },
    Pull { remote: String, local: PathBuf, progress: Option<bool> },
}

#[derive(Debug, Default)]
struct Global {
    target: Option<Target>,
    target_opt: Option<&'static str>,
    connect_timeout: Option<f64>,
    reply_timeout: Option<f64>,
}

fn usage(msg: impl Into<String>) -> Failure {
    Failure::Usage(msg.into())
}

fn utf8(s: &OsStr, what: &str) -> Result<String> {
    s.to_str().map(str::to_string).ok_or_else(|| usage(format!("{what} is not valid UTF-8: {}", s.to_string_lossy())))
}

fn seconds(opt: &str, v: &str) -> Result<f64> {
    match v.parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s < 1e9 => Ok(s),
        _ => Err(usage(format!("{opt} wants a number of seconds > 0, not '{v}'"))),
    }
}

fn parse_port(spec: &str, v: &str, opt: &str) -> Result<u32> {
    v.parse::<u32>().map_err(|_| usage(format!("{opt}: bad port '{v}' in '{spec}'")))
}

/// Walks the arguments of one command.
struct Args {
    items: Vec<OsString>,
    i: usize,
    command: &'static str,
}

/// One argument: an option (with an inline `=value`, if any) or a word.
enum Arg {
    Opt(String, Option<String>),
    Word(OsString),
    DashDash,
}

impl Args {
    fn next(&mut self) -> Option<Arg> {
        let a = self.items.get(self.i)?.clone();
        self.i += 1;
        let s = a.to_string_lossy();
        if s == "--" {
            return Some(Arg::DashDash);
        }
        if s.starts_with("--") && s.len() > 2 {
            return Some(match s.split_once('=') {
                Some((k, v)) => Arg::Opt(k.to_string(), Some(v.to_string())),
                None => Arg::Opt(s.to_string(), None),
            });
        }
        if s.starts_with('-') && s.len() > 1 {
            return Some(Arg::Opt(s.to_string(), None));
        }
        Some(Arg::Word(a))
    }

    fn value(&mut self, opt: &str, inline: Option<String>) -> Result<String> {
        if let Some(v) = inline {
            return Ok(v);
        }
        let v = self.items.get(self.i).ok_or_else(|| {
            let sub = if self.command.is_empty() { String::new() } else { format!("{} ", self.command) };
            usage(format!("{opt} needs a value (see 'qgactl {sub}--help')"))
        })?;
        self.i += 1;
        utf8(v, opt)
    }

    fn rest(&mut self) -> Vec<OsString> {
        let r = self.items[self.i..].to_vec();
        self.i = self.items.len();
        r
    }

    fn unknown(&self, opt: &str) -> Failure {
        if self.command.is_empty() {
            usage(format!("unknown option '{opt}' (see 'qgactl --help')"))
        } else {
            usage(format!("unknown option '{opt}' for {} (see 'qgactl {} --help')", self.command, self.command))
        }
    }
}

impl Global {
    /// Handles a global option; Ok(false) if `opt` is not one.
    fn take(&mut self, opt: &str, inline: Option<String>, args: &mut Args) -> Result<bool> {
        let which: &'static str = match opt {
            "--socket" => "--socket",
            "--vsock" => "--vsock",
            "--hybrid-vsock" => "--hybrid-vsock",
            "--connect-timeout" => {
                let v = args.value(opt, inline)?;
                self.connect_timeout = Some(seconds(opt, &v)?);
                return Ok(true);
            }
            "--reply-timeout" => {
                let v = args.value(opt, inline)?;
                self.reply_timeout = Some(seconds(opt, &v)?);
                return Ok(true);
            }
            _ => return Ok(false),
        };
        let v = args.value(opt, inline)?;
        if let Some(prev) = self.target_opt {
            if prev != which {
                return Err(usage(format!(
                    "give only one of --socket, --vsock and --hybrid-vsock ({prev} and {which})"
                )));
            }
        }
        let target = match which {
            "--socket" => Target::Unix(PathBuf::from(&v)),
            "--vsock" => {
                let (c, p) = v.split_once(':').ok_or_else(|| usage(format!("--vsock wants CID:PORT, not '{v}'")))?;
                let cid = c.parse::<u32>().map_err(|_| usage(format!("--vsock: bad CID '{c}' in '{v}'")))?;
                Target::Vsock { cid, port: parse_port(&v, p, opt)? }
            }
            _ => {
                let (path, p) =
                    v.rsplit_once(':').ok_or_else(|| usage(format!("--hybrid-vsock wants PATH:PORT, not '{v}'")))?;
                if path.is_empty() {
                    return Err(usage(format!("--hybrid-vsock wants PATH:PORT, not '{v}'")));
                }
                Target::Hybrid { path: PathBuf::from(path), port: parse_port(&v, p, opt)? }
            }
        };
        self.target = Some(target);
        self.target_opt = Some(which);
        Ok(true)
    }

    fn options(self) -> Result<Options> {
        let target = match self.target {
            Some(t) => t,
            None => match std::env::var_os("QGA_SOCKET") {
                Some(p) if !p.is_empty() => Target::Unix(PathBuf::from(p)),
                _ => {
                    return Err(usage(
                        "no agent given: use --socket PATH (or set QGA_SOCKET), --vsock CID:PORT or --hybrid-vsock PATH:PORT",
                    ))
                }
            },
        };
        Ok(Options {
            target,
            connect_timeout: Duration::from_secs_f64(self.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT)),
            reply_timeout: Duration::from_secs_f64(self.reply_timeout.unwrap_or(DEFAULT_REPLY_TIMEOUT)),
        })
    }
}

const COMMANDS: [&str; 11] =
    ["exec", "shell", "push", "pull", "ping", "info", "sync", "osinfo", "shutdown", "raw", "help"];

/// Parses the whole command line. Returns the connection options (None
/// for help/version, which need no agent) and the command.
pub fn parse(items: Vec<OsString>) -> Result<(Option<Options>, Command)> {
    let mut g = Global::default();
    let mut args = Args { items, i: 0, command: "" };
    // Global options, then the command name.
    let name = loop {
        match args.next() {
            None => return Ok((None, Command::Help(MAIN_HELP))),
            Some(Arg::Opt(o, inline)) => {
                if o == "-h" || o == "--help" {
                    return Ok((None, Command::Help(MAIN_HELP)));
                }
                if o == "-V" || o == "--version" {
                    return Ok((None, Command::Version));
                }
                if !g.take(&o, inline, &mut args)? {
                    return Err(args.unknown(&o));
                }
            }
            Some(Arg::DashDash) => return Err(usage("missing command (see 'qgactl --help')")),
            Some(Arg::Word(w)) => break w.to_string_lossy().to_string(),
        }
    };
    let Some(&command) = COMMANDS.iter().find(|&&c| c == name) else {
        return Err(usage(format!("unknown command '{name}' (see 'qgactl --help')")));
    };
    args.command = command;
    if command == "help" {
        return Ok((
            None,
            match args.next() {
                None => Command::Help(MAIN_HELP),
                Some(Arg::Word(w)) => {
                    let w = w.to_string_lossy();
                    Command::Help(
                        help_for(&w).ok_or_else(|| usage(format!("unknown command '{w}' (see 'qgactl --help')")))?,
                    )
                }
                Some(_) => Command::Help(MAIN_HELP),
            },
        ));
    }
    let help = help_for(command).unwrap_or(MAIN_HELP);
    let mut words: Vec<OsString> = Vec::new();
    let mut json = false;
    let mut mode = None;
    let mut progress = None;
    let mut ex = ExecArgs::default();
    let mut interactive = false;
    let mut program: Option<Vec<OsString>> = None;
    while let Some(a) = args.next() {
        match a {
            Arg::DashDash => {
                if command == "exec" {
                    program = Some(args.rest());
                    break;
                }
                words.extend(args.rest());
                break;
            }
            Arg::Word(w) => {
                if command == "exec" {
                    let mut p = vec![w];
                    p.extend(args.rest());
                    program = Some(p);
                    break;
                }
                words.push(w);
            }
            Arg::Opt(o, inline) => {
                if o == "-h" || o == "--help" {
                    return Ok((None, Command::Help(help)));
                }
                if g.take(&o, inline.clone(), &mut args)? {
                    continue;
                }
                match (command, o.as_str()) {
                    ("info" | "osinfo", "--json") => json = true,
                    ("shutdown", "--mode") => mode = Some(args.value(&o, inline)?),
                    ("push" | "pull", "--progress") => progress = Some(true),
                    ("push" | "pull", "--no-progress") => progress = Some(false),
                    ("exec", "--stdin") => {
                        let v = args.value(&o, inline)?;
                        ex.stdin =
                            Some(if v == "-" { StdinSource::Stdin } else { StdinSource::File(PathBuf::from(v)) });
                    }
                    ("exec", "-e" | "--env") => {
                        let v = args.value(&o, inline)?;
                        if !v.contains('=') || v.starts_with('=') {
                            return Err(usage(format!("--env wants NAME=VALUE, not '{v}'")));
                        }
                        ex.env.push(v);
                    }
                    ("exec", "--cwd") => ex.cwd = Some(args.value(&o, inline)?),
                    ("exec" | "shell", "--user") => ex.user = Some(args.value(&o, inline)?),
                    ("exec", "-t" | "--tty") => ex.tty = true,
                    ("exec", "-i" | "--interactive") => interactive = true,
                    ("exec", "-it" | "-ti") => {
                        ex.tty = true;
                        interactive = true;
                    }
                    ("exec", "--timeout") => {
                        let v = args.value(&o, inline)?;
                        ex.timeout = Some(seconds(&o, &v)?);
                    }
                    ("exec", "--merge") => ex.merge = true,
                    ("exec", "--poll") => ex.poll = true,
                    _ => return Err(args.unknown(&o)),
                }
            }
        }
    }
    let nwords = |n: usize, what: &str| -> Result<()> {
        if words.len() != n {
            return Err(usage(format!("{command} wants {what} (see 'qgactl {command} --help')")));
        }
        Ok(())
    };
    let cmd = match command {
        "ping" => {
            nwords(0, "no arguments")?;
            Command::Ping
        }
        "sync" => {
            nwords(0, "no arguments")?;
            Command::Sync
        }
        "info" => {
            nwords(0, "no arguments besides --json")?;
            Command::Info { json }
        }
        "osinfo" => {
            nwords(0, "no arguments besides --json")?;
            Command::Osinfo { json }
        }
        "shutdown" => {
            nwords(0, "no arguments besides --mode")?;
            Command::Shutdown { mode }
        }
        "raw" => {
            nwords(1, "one JSON request")?;
            let mut request = utf8(&words[0], "the request")?;
            if request == "-" {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                    .map_err(|e| Failure::Local(format!("cannot read the request from stdin: {e}")))?;
                request = s;
            }
            if request.trim().is_empty() {
                return Err(usage("raw wants a JSON request"));
            }
            Command::Raw { request }
        }
        "push" => {
            nwords(2, "LOCAL and REMOTE")?;
            Command::Push { local: PathBuf::from(&words[0]), remote: utf8(&words[1], "REMOTE")?, progress }
        }
        "pull" => {
            nwords(2, "REMOTE and LOCAL")?;
            Command::Pull { remote: utf8(&words[0], "REMOTE")?, local: PathBuf::from(&words[1]), progress }
        }
        "shell" => {
            nwords(0, "no arguments besides --user")?;
            ex.tty = true;
            ex.shell = true;
            ex.stdin = Some(StdinSource::Stdin);
            ex.program = "/bin/sh".to_string();
            Command::Exec(ex)
        }
        _ => {
            if interactive {
                if ex.stdin.is_some() {
                    return Err(usage("exec: -i and --stdin cannot be used together"));
                }
                ex.stdin = Some(StdinSource::Stdin);
            }
            if ex.tty && ex.poll {
                return Err(usage("exec: -t and --poll cannot be used together"));
            }
            let Some(p) = program.filter(|p| !p.is_empty()) else {
                return Err(usage("exec wants a PROGRAM (see 'qgactl exec --help')"));
            };
            ex.program = utf8(&p[0], "PROGRAM")?;
            if ex.program.is_empty() {
                return Err(usage("exec: PROGRAM is empty"));
            }
            ex.args = p[1..].iter().map(|a| utf8(a, "an argument")).collect::<Result<_>>()?;
            Command::Exec(ex)
        }
    };
    Ok((Some(g.options()?), cmd))
}
