//! Command line: global options, subcommands, help texts.
//!
//! `help.rs` holds the help texts, `args.rs` the argument walker,
//! `global.rs` the connection options; this file the commands and their
//! options.

mod args;
mod global;
mod help;

use std::ffi::OsString;
use std::path::PathBuf;

use crate::conn::Options;
use crate::fail::{Failure, Result};
use crate::files::{Transfer, IN_FLIGHT_MAX, MAX_REPLY_MIN};
use args::{seconds, usage, utf8, Arg, Args};
use global::Global;
use help::{help_for, MAIN_HELP};

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
    /// `--profile`: a confinement profile the guest's exec policy offers.
    pub profile: Option<String>,
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

/// libvirt's reply cap (QEMU_AGENT_MAX_RESPONSE, 10 MiB): `--libvirt`.
pub const LIBVIRT_MAX_REPLY: usize = 10 << 20;

/// A whole number in `min..=max` given to `opt`.
fn count_in(opt: &str, v: &str, min: usize, max: usize) -> Result<usize> {
    match v.parse::<usize>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ if max == usize::MAX => Err(usage(format!("{opt} wants a number of at least {min}, not '{v}'"))),
        _ => Err(usage(format!("{opt} wants a number from {min} to {max}, not '{v}'"))),
    }
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
    Push { local: PathBuf, remote: String, transfer: Transfer },
    Pull { remote: String, local: PathBuf, transfer: Transfer },
}

const COMMANDS: [&str; 11] =
    ["exec", "shell", "push", "pull", "ping", "info", "sync", "osinfo", "shutdown", "raw", "help"];

/// Parses the whole command line. Returns the connection options (None
/// for help/version, which need no agent) and the command.
pub fn parse(items: Vec<OsString>) -> Result<(Option<Options>, Command)> {
    parse_with(items, std::env::var_os("QGA_SOCKET"))
}

/// [`parse`] with $QGA_SOCKET given (`env_socket`).
fn parse_with(items: Vec<OsString>, env_socket: Option<OsString>) -> Result<(Option<Options>, Command)> {
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
    let mut transfer = Transfer::default();
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
                    ("push" | "pull", "--progress") => transfer.progress = Some(true),
                    ("push" | "pull", "--no-progress") => transfer.progress = Some(false),
                    ("push" | "pull", "--max-reply-bytes") => {
                        let v = args.value(&o, inline)?;
                        transfer.max_reply_bytes = Some(count_in(&o, &v, MAX_REPLY_MIN, usize::MAX)?);
                    }
                    ("push" | "pull", "--libvirt") => transfer.max_reply_bytes = Some(LIBVIRT_MAX_REPLY),
                    ("push" | "pull", "--in-flight") => {
                        let v = args.value(&o, inline)?;
                        transfer.in_flight = count_in(&o, &v, 1, IN_FLIGHT_MAX)?;
                    }
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
                    ("exec" | "shell", "--profile") => ex.profile = Some(args.value(&o, inline)?),
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
            Command::Push { local: PathBuf::from(&words[0]), remote: utf8(&words[1], "REMOTE")?, transfer }
        }
        "pull" => {
            nwords(2, "REMOTE and LOCAL")?;
            Command::Pull { remote: utf8(&words[0], "REMOTE")?, local: PathBuf::from(&words[1]), transfer }
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
    Ok((Some(g.options(env_socket)?), cmd))
}

#[cfg(test)]
mod tests {
    use super::help::*;
    use super::*;
    use crate::conn::Target;
    use crate::fail::EXIT_USAGE;

    fn parse_env(items: &[&str], env: Option<&str>) -> Result<(Option<Options>, Command)> {
        parse_with(items.iter().map(OsString::from).collect(), env.map(OsString::from))
    }

    /// A command that needs an agent (found through QGA_SOCKET).
    fn cmd(items: &[&str]) -> Command {
        let (opts, c) = parse_env(items, Some("/env.sock")).unwrap_or_else(|f| panic!("{items:?}: {f}"));
        assert!(opts.is_some(), "{items:?} gives connection options");
        c
    }

    fn exec(items: &[&str]) -> ExecArgs {
        match cmd(items) {
            Command::Exec(a) => a,
            other => panic!("{items:?}: {other:?}"),
        }
    }

    /// A command that needs no agent (help, version).
    fn local(items: &[&str]) -> Command {
        let (opts, c) = parse_env(items, None).unwrap_or_else(|f| panic!("{items:?}: {f}"));
        assert!(opts.is_none(), "{items:?} needs no agent");
        c
    }

    fn help(items: &[&str]) -> &'static str {
        match local(items) {
            Command::Help(t) => t,
            other => panic!("{items:?}: {other:?}"),
        }
    }

    /// The usage error's text (what qgactl prints after "qgactl: ").
    fn error(items: &[&str]) -> String {
        match parse_env(items, Some("/env.sock")) {
            Err(f @ Failure::Usage(_)) => {
                assert_eq!(f.exit_code(), EXIT_USAGE);
                f.to_string()
            }
            Err(f) => panic!("{items:?}: not a usage error: {f:?}"),
            Ok(c) => panic!("{items:?}: parsed as {c:?}"),
        }
    }

    #[test]
    fn help_and_version_need_no_agent() {
        assert_eq!(help(&[]), MAIN_HELP);
        assert_eq!(help(&["-h"]), MAIN_HELP);
        assert_eq!(help(&["--socket", "/s", "--help", "exec"]), MAIN_HELP);
        assert!(matches!(local(&["-V"]), Command::Version));
        assert!(matches!(local(&["--version"]), Command::Version));
        assert_eq!(help(&["help"]), MAIN_HELP);
        assert_eq!(help(&["help", "--json"]), MAIN_HELP);
        for (name, text) in [
            ("exec", EXEC_HELP),
            ("shell", SHELL_HELP),
            ("push", PUSH_HELP),
            ("pull", PULL_HELP),
            ("ping", PING_HELP),
            ("info", INFO_HELP),
            ("sync", SYNC_HELP),
            ("osinfo", OSINFO_HELP),
            ("shutdown", SHUTDOWN_HELP),
            ("raw", RAW_HELP),
        ] {
            assert_eq!(help(&["help", name]), text, "help {name}");
            assert_eq!(help(&[name, "--help"]), text, "{name} --help");
            assert_eq!(help(&[name, "-h"]), text, "{name} -h");
        }
        // --help wins over what follows, not over an error before it.
        assert_eq!(help(&["exec", "--merge", "--help", "--bogus"]), EXEC_HELP);
        assert_eq!(
            error(&["exec", "--bogus", "--help"]),
            "unknown option '--bogus' for exec (see 'qgactl exec --help')"
        );
        // After `--`, --help is the program's.
        assert_eq!(exec(&["exec", "--", "ls", "--help"]).args, ["--help"]);
        assert_eq!(error(&["help", "help"]), "unknown command 'help' (see 'qgactl --help')");
    }

    #[test]
    fn command_names_and_global_options() {
        assert_eq!(error(&["frob"]), "unknown command 'frob' (see 'qgactl --help')");
        assert_eq!(error(&["help", "frob"]), "unknown command 'frob' (see 'qgactl --help')");
        assert_eq!(error(&["--", "ping"]), "missing command (see 'qgactl --help')");
        assert_eq!(error(&["--frob", "ping"]), "unknown option '--frob' (see 'qgactl --help')");
        assert_eq!(error(&["-x"]), "unknown option '-x' (see 'qgactl --help')");
        assert_eq!(error(&["--socket"]), "--socket needs a value (see 'qgactl --help')");
        assert_eq!(error(&["ping", "--socket"]), "--socket needs a value (see 'qgactl ping --help')");
        // Global options go before or after the command name.
        for items in [&["--socket", "/s", "ping"][..], &["ping", "--socket=/s"], &["ping", "--socket", "/s"]] {
            let (opts, c) = parse_env(items, None).unwrap();
            assert!(matches!(c, Command::Ping));
            assert!(matches!(opts.unwrap().target, Target::Unix(p) if p.as_os_str() == "/s"), "{items:?}");
        }
        // No agent: checked after the command line, so usage errors come first.
        let no_agent = |items: &[&str]| match parse_env(items, None) {
            Err(Failure::Usage(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(no_agent(&["sync"]).starts_with("no agent given: "));
        assert_eq!(no_agent(&["sync", "x"]), "sync wants no arguments (see 'qgactl sync --help')");
        let (opts, _) = parse_env(&["--reply-timeout", "2", "sync", "--connect-timeout", "7"], Some("/e")).unwrap();
        let opts = opts.unwrap();
        assert_eq!((opts.reply_timeout.as_secs(), opts.connect_timeout.as_secs()), (2, 7));
    }
    #[test]
    fn exec_options() {
        let a = exec(&[
            "exec",
            "--stdin",
            "in.bin",
            "-e",
            "A=1",
            "--env=B=x=y",
            "--env",
            "C=",
            "--cwd",
            "/srv",
            "--user=www",
            "--timeout",
            "1.5",
            "--merge",
            "--poll",
            "--",
            "prog",
            "a b",
            "-c",
        ]);
        assert!(matches!(&a.stdin, Some(StdinSource::File(p)) if p == &PathBuf::from("in.bin")));
        assert_eq!(a.env, ["A=1", "B=x=y", "C="]);
        assert_eq!((a.cwd.as_deref(), a.user.as_deref(), a.timeout), (Some("/srv"), Some("www"), Some(1.5)));
        assert!(a.merge && a.poll && !a.tty && !a.shell);
        assert_eq!((a.program.as_str(), a.args.as_slice()), ("prog", &["a b".to_string(), "-c".to_string()][..]));
        let a = exec(&["exec", "true"]);
        assert!(a.stdin.is_none() && a.env.is_empty() && a.cwd.is_none() && a.user.is_none() && a.timeout.is_none());
        assert!(!a.merge && !a.poll && !a.tty && !a.shell && a.args.is_empty());
        assert!(matches!(exec(&["exec", "--stdin=-", "cat"]).stdin, Some(StdinSource::Stdin)));
    }

    #[test]
    fn exec_program_starts_at_the_first_word_or_after_dashdash() {
        // Options after the program are its arguments.
        let a = exec(&["exec", "ls", "--merge", "-t", "--", "x"]);
        assert_eq!((a.program.as_str(), a.args.len()), ("ls", 4));
        assert!(!a.merge && !a.tty);
        // After `--` a program may look like an option.
        assert_eq!(exec(&["exec", "--", "--weird", "--"]).program, "--weird");
        assert_eq!(exec(&["exec", "--", "--weird", "--"]).args, ["--"]);
        // A lone '-' is a word.
        assert_eq!(exec(&["exec", "-"]).program, "-");
        assert_eq!(error(&["exec"]), "exec wants a PROGRAM (see 'qgactl exec --help')");
        assert_eq!(error(&["exec", "--merge", "--"]), "exec wants a PROGRAM (see 'qgactl exec --help')");
        assert_eq!(error(&["exec", "--", ""]), "exec: PROGRAM is empty");
    }

    #[test]
    fn exec_terminal_options() {
        for items in [&["exec", "-t", "top"][..], &["exec", "--tty", "top"]] {
            let a = exec(items);
            assert!(a.tty && a.stdin.is_none(), "{items:?}");
        }
        for items in [&["exec", "-i", "cat"][..], &["exec", "--interactive", "cat"]] {
            let a = exec(items);
            assert!(!a.tty && matches!(a.stdin, Some(StdinSource::Stdin)), "{items:?}");
        }
        // The one combination of short options: -it / -ti.
        for items in [&["exec", "-it", "sh"][..], &["exec", "-ti", "sh"], &["exec", "-t", "-i", "sh"]] {
            let a = exec(items);
            assert!(a.tty && matches!(a.stdin, Some(StdinSource::Stdin)), "{items:?}");
        }
        assert_eq!(error(&["exec", "-itm", "sh"]), "unknown option '-itm' for exec (see 'qgactl exec --help')");
        assert_eq!(error(&["exec", "-i", "--stdin", "f", "cat"]), "exec: -i and --stdin cannot be used together");
        assert_eq!(error(&["exec", "--stdin", "-", "-it", "cat"]), "exec: -i and --stdin cannot be used together");
        assert_eq!(error(&["exec", "-t", "--poll", "top"]), "exec: -t and --poll cannot be used together");
        // -i with --poll is fine (stdin then goes as for stock qemu-ga).
        assert!(exec(&["exec", "-i", "--poll", "cat"]).poll);
    }

    #[test]
    fn exec_bad_values() {
        assert_eq!(error(&["exec", "--env", "FOO", "env"]), "--env wants NAME=VALUE, not 'FOO'");
        assert_eq!(error(&["exec", "-e", "=x", "env"]), "--env wants NAME=VALUE, not '=x'");
        assert_eq!(error(&["exec", "--timeout", "0", "true"]), "--timeout wants a number of seconds > 0, not '0'");
        assert_eq!(error(&["exec", "--timeout=soon", "true"]), "--timeout wants a number of seconds > 0, not 'soon'");
        assert_eq!(error(&["exec", "--cwd"]), "--cwd needs a value (see 'qgactl exec --help')");
        assert_eq!(error(&["exec", "--json", "true"]), "unknown option '--json' for exec (see 'qgactl exec --help')");
        // Short options take no inline value.
        assert_eq!(error(&["exec", "-e=A=1", "env"]), "unknown option '-e=A=1' for exec (see 'qgactl exec --help')");
        use std::os::unix::ffi::OsStringExt;
        let bad = |items: Vec<OsString>| match parse_with(items, Some("/e".into())) {
            Err(Failure::Usage(m)) => m,
            other => panic!("{other:?}"),
        };
        let nonutf8 = OsString::from_vec(b"x\xff".to_vec());
        assert_eq!(bad(vec!["exec".into(), nonutf8.clone()]), "PROGRAM is not valid UTF-8: x\u{fffd}");
        assert_eq!(bad(vec!["exec".into(), "ls".into(), nonutf8.clone()]), "an argument is not valid UTF-8: x\u{fffd}");
        assert_eq!(bad(vec!["exec".into(), "--cwd".into(), nonutf8]), "--cwd is not valid UTF-8: x\u{fffd}");
    }

    #[test]
    fn shell() {
        let a = exec(&["shell"]);
        assert!(a.tty && a.shell && matches!(a.stdin, Some(StdinSource::Stdin)));
        assert_eq!((a.program.as_str(), a.user.as_deref()), ("/bin/sh", None));
        assert_eq!(exec(&["shell", "--user", "alice"]).user.as_deref(), Some("alice"));
        assert_eq!(exec(&["exec", "--profile", "diag", "--", "id"]).profile.as_deref(), Some("diag"));
        assert_eq!(error(&["shell", "bash"]), "shell wants no arguments besides --user (see 'qgactl shell --help')");
        assert_eq!(error(&["shell", "--cwd", "/"]), "unknown option '--cwd' for shell (see 'qgactl shell --help')");
        assert_eq!(error(&["shell", "-t"]), "unknown option '-t' for shell (see 'qgactl shell --help')");
    }

    #[test]
    fn simple_commands() {
        assert!(matches!(cmd(&["ping"]), Command::Ping));
        assert!(matches!(cmd(&["sync"]), Command::Sync));
        assert!(matches!(cmd(&["info"]), Command::Info { json: false }));
        assert!(matches!(cmd(&["info", "--json"]), Command::Info { json: true }));
        assert!(matches!(cmd(&["osinfo", "--json"]), Command::Osinfo { json: true }));
        assert!(matches!(cmd(&["shutdown"]), Command::Shutdown { mode: None }));
        assert!(matches!(cmd(&["shutdown", "--mode", "reboot"]), Command::Shutdown { mode: Some(m) } if m == "reboot"));
        // The agent judges the mode.
        assert!(matches!(cmd(&["shutdown", "--mode=nap"]), Command::Shutdown { mode: Some(m) } if m == "nap"));
        let raw = r#"{"execute": "guest-ping"}"#;
        assert!(matches!(cmd(&["raw", raw]), Command::Raw { request } if request == raw));
        assert!(matches!(cmd(&["raw", "--", "-x"]), Command::Raw { request } if request == "-x"));
        assert_eq!(error(&["ping", "now"]), "ping wants no arguments (see 'qgactl ping --help')");
        assert_eq!(error(&["sync", "--", "x"]), "sync wants no arguments (see 'qgactl sync --help')");
        assert_eq!(error(&["info", "x"]), "info wants no arguments besides --json (see 'qgactl info --help')");
        assert_eq!(error(&["osinfo", "x"]), "osinfo wants no arguments besides --json (see 'qgactl osinfo --help')");
        assert_eq!(
            error(&["shutdown", "halt"]),
            "shutdown wants no arguments besides --mode (see 'qgactl shutdown --help')"
        );
        assert_eq!(error(&["shutdown", "--mode"]), "--mode needs a value (see 'qgactl shutdown --help')");
        assert_eq!(error(&["ping", "--json"]), "unknown option '--json' for ping (see 'qgactl ping --help')");
        assert_eq!(error(&["sync", "--mode", "x"]), "unknown option '--mode' for sync (see 'qgactl sync --help')");
        assert_eq!(error(&["raw"]), "raw wants one JSON request (see 'qgactl raw --help')");
        assert_eq!(error(&["raw", "{}", "{}"]), "raw wants one JSON request (see 'qgactl raw --help')");
        assert_eq!(error(&["raw", " \n"]), "raw wants a JSON request");
    }

    #[test]
    fn push_and_pull() {
        let defaults = Transfer::default();
        match cmd(&["push", "./a.tar", "/root/"]) {
            Command::Push { local, remote, transfer } => {
                assert_eq!((local, remote.as_str(), transfer), (PathBuf::from("./a.tar"), "/root/", defaults))
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(cmd(&["push", "--progress", "-", "/r"]), Command::Push { local, transfer, .. } if local.as_os_str() == "-" && transfer.progress == Some(true))
        );
        match cmd(&["pull", "--no-progress", "/etc/hostname", "-"]) {
            Command::Pull { remote, local, transfer } => {
                assert_eq!(
                    (remote.as_str(), local, transfer.progress),
                    ("/etc/hostname", PathBuf::from("-"), Some(false))
                )
            }
            other => panic!("{other:?}"),
        }
        // The last of --progress / --no-progress counts; after `--` names may start with '-'.
        assert!(
            matches!(cmd(&["pull", "--no-progress", "--progress", "--", "-r", "-l"]), Command::Pull { remote, transfer, .. } if remote == "-r" && transfer.progress == Some(true))
        );
        // Chunk sizing and pipelining.
        match cmd(&["pull", "--max-reply-bytes", "1000000", "--in-flight=8", "/r", "l"]) {
            Command::Pull { transfer, .. } => {
                assert_eq!((transfer.max_reply_bytes, transfer.in_flight), (Some(1_000_000), 8));
                assert_eq!(transfer.chunk(), (1_000_000 - 256) / 4 * 3);
            }
            other => panic!("{other:?}"),
        }
        match cmd(&["push", "--libvirt", "a", "/r"]) {
            Command::Push { transfer, .. } => {
                assert_eq!(transfer.max_reply_bytes, Some(LIBVIRT_MAX_REPLY));
                // 7.5 MiB of data: its base64 and the reply's members stay under 10 MiB.
                assert!(transfer.chunk() / 3 * 4 + 256 <= 10 << 20 && transfer.chunk() > 7 << 20);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(defaults.chunk(), 4 << 20);
        assert_eq!(
            error(&["push", "--max-reply-bytes", "100", "a", "b"]),
            "--max-reply-bytes wants a number of at least 4352, not '100'"
        );
        assert_eq!(error(&["pull", "--in-flight", "0", "a", "b"]), "--in-flight wants a number from 1 to 64, not '0'");
        assert_eq!(error(&["push", "a"]), "push wants LOCAL and REMOTE (see 'qgactl push --help')");
        assert_eq!(error(&["push", "a", "b", "c"]), "push wants LOCAL and REMOTE (see 'qgactl push --help')");
        assert_eq!(error(&["pull"]), "pull wants REMOTE and LOCAL (see 'qgactl pull --help')");
        assert_eq!(error(&["push", "--json", "a", "b"]), "unknown option '--json' for push (see 'qgactl push --help')");
        assert_eq!(
            error(&["exec", "--progress", "x"]),
            "unknown option '--progress' for exec (see 'qgactl exec --help')"
        );
    }
}
