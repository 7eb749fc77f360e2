//! qemu-ga's command line (`config_parse()`, GNU getopt_long rules and
//! messages) and `[general]` configuration file (`config_load()` /
//! `config_dump()`), QEMU 11.1's released option set.

use std::fmt::Write as _;

pub const VERSION: &str = "10.2.0";
pub const DEFAULT_CONFIG: &str = "/etc/qemu/qemu-ga.conf";
pub const DEFAULT_PIDFILE: &str = "/var/run/qemu-ga.pid";
pub const DEFAULT_STATEDIR: &str = "/var/run";
pub const DEFAULT_VIRTIO_PATH: &str = "/dev/virtio-ports/org.qemu.guest_agent.0";
pub const DEFAULT_SERIAL_PATH: &str = "/dev/ttyS0";
pub const DEFAULT_FSFREEZE_HOOK: &str = "/etc/qemu/fsfreeze-hook";

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    pub daemonize: bool,
    pub method: Option<String>,
    pub path: Option<String>,
    pub logfile: Option<String>,
    pub pidfile: Option<String>,
    pub fsfreeze_hook: Option<String>,
    pub statedir: Option<String>,
    pub verbose: bool,
    pub retry_path: bool,
    pub block_rpcs: Vec<String>,
    pub allow_rpcs: Vec<String>,
    /// An allow list was given (even an empty one).
    pub has_allow_list: bool,
    pub dump_conf: bool,
    /// qga extension `--init` / `init=true`: PID 1 mode even when not pid 1.
    pub init: bool,
    /// qga extension `--max-output` / `max-output=`: captured bytes kept
    /// per stream of a guest-exec (qemu-ga: 16 MiB, fixed).
    pub max_output: Option<usize>,
    /// qga extension `--max-clients` / `max-clients=`: clients served at
    /// once on a listening socket (qemu-ga: 1).
    pub max_clients: Option<usize>,
    /// qga extension `--modules-dir` / `modules-dir=`: kernel modules to
    /// load (file-name order) before opening the channel, in PID 1 mode.
    pub modules_dir: Option<String>,
}

impl Config {
    /// Captured bytes kept per stream of a guest-exec.
    pub fn max_output(&self) -> usize {
        self.max_output.unwrap_or(DEFAULT_MAX_OUTPUT)
    }

    /// Clients served at once on a listening socket.
    pub fn max_clients(&self) -> usize {
        self.max_clients.unwrap_or(1)
    }
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Action {
    Run(Config),
    /// Print to stdout and exit 0 (`-V`, `-h`, `-b help`, `-D`).
    Print(String),
    /// Print to stderr / stdout and exit with the code.
    Fail { stdout: String, stderr: String, code: i32 },
}

#[derive(Clone, Copy, PartialEq)]
enum HasArg {
    No,
    Required,
    Optional,
}

const LONG_OPTS: &[(&str, HasArg, char)] = &[
    ("help", HasArg::No, 'h'),
    ("version", HasArg::No, 'V'),
    ("config", HasArg::Required, 'c'),
    ("dump-conf", HasArg::No, 'D'),
    ("logfile", HasArg::Required, 'l'),
    ("pidfile", HasArg::Required, 'f'),
    ("fsfreeze-hook", HasArg::Optional, 'F'),
    ("verbose", HasArg::No, 'v'),
    ("method", HasArg::Required, 'm'),
    ("path", HasArg::Required, 'p'),
    ("daemonize", HasArg::No, 'd'),
    ("block-rpcs", HasArg::Required, 'b'),
    ("allow-rpcs", HasArg::Required, 'a'),
    ("statedir", HasArg::Required, 't'),
    ("retry-path", HasArg::No, 'r'),
];

/// qga's own long options (no short form). They are matched after
/// qemu-ga's options, so every abbreviation qemu-ga accepts (`--m` for
/// `--method`) keeps its meaning.
const EXT_LONG_OPTS: &[(&str, HasArg, char)] = &[
    ("init", HasArg::No, '1'),
    ("modules-dir", HasArg::Required, '2'),
    ("max-output", HasArg::Required, '3'),
    ("max-clients", HasArg::Required, '4'),
];

/// qemu-ga's GUEST_EXEC_MAX_OUTPUT: the default `max-output`.
pub const DEFAULT_MAX_OUTPUT: usize = 16 << 20;
/// Largest `max-output`: the captured bytes held in all.
pub const MAX_MAX_OUTPUT: usize = 256 << 20;
/// Largest `max-clients`.
pub const MAX_MAX_CLIENTS: usize = 64;

/// A byte count with an optional binary suffix (`K`, `M`, `G`), in
/// 1..=`max`.
fn parse_size(v: &str, max: usize) -> Option<usize> {
    let v = v.trim();
    let (digits, unit) = match v.char_indices().last()? {
        (i, 'K' | 'k') => (&v[..i], 1usize << 10),
        (i, 'M' | 'm') => (&v[..i], 1 << 20),
        (i, 'G' | 'g') => (&v[..i], 1 << 30),
        _ => (v, 1),
    };
    let n = digits.parse::<usize>().ok()?.checked_mul(unit)?;
    (1..=max).contains(&n).then_some(n)
}

fn parse_max_output(v: &str) -> Result<usize, String> {
    parse_size(v, MAX_MAX_OUTPUT)
        .ok_or_else(|| format!("invalid max-output '{v}': expected a number of bytes from 1 to 256M (suffixes K, M)"))
}

fn parse_max_clients(v: &str) -> Result<usize, String> {
    v.trim()
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_MAX_CLIENTS).contains(n))
        .ok_or_else(|| format!("invalid max-clients '{v}': expected a number from 1 to {MAX_MAX_CLIENTS}"))
}

fn short_opt(c: char) -> Option<HasArg> {
    match c {
        'h' | 'V' | 'v' | 'd' | 'D' | 'r' => Some(HasArg::No),
        'c' | 'm' | 'p' | 'l' | 'f' | 'b' | 'a' | 's' | 't' => Some(HasArg::Required),
        'F' => Some(HasArg::Optional),
        _ => None,
    }
}

/// One result of getopt: an option with its argument, or '?' (the error
/// message getopt printed is in the string).
enum Opt {
    Ok(char, Option<String>),
    Bad(String),
}

/// GNU getopt_long over `args` (without argv[0]); non-options are skipped.
fn getopt(argv0: &str, args: &[String]) -> Vec<Opt> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if a == "--" {
            break;
        }
        if let Some(body) = a.strip_prefix("--") {
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            let exact = LONG_OPTS.iter().chain(EXT_LONG_OPTS).find(|(n, _, _)| *n == name);
            let mut matches: Vec<_> = LONG_OPTS.iter().filter(|(n, _, _)| n.starts_with(name)).collect();
            if exact.is_none() && matches.is_empty() {
                matches = EXT_LONG_OPTS.iter().filter(|(n, _, _)| n.starts_with(name)).collect();
            }
            let found = match (exact, matches.len()) {
                (Some(o), _) => o,
                (None, 1) => matches[0],
                (None, 0) => {
                    out.push(Opt::Bad(format!("{argv0}: unrecognized option '--{name}'\n")));
                    continue;
                }
                (None, _) => {
                    let mut msg = format!("{argv0}: option '--{name}' is ambiguous; possibilities:");
                    for (n, _, _) in &matches {
                        let _ = write!(msg, " '--{n}'");
                    }
                    msg.push('\n');
                    out.push(Opt::Bad(msg));
                    continue;
                }
            };
            let (lname, has, c) = *found;
            match (has, inline) {
                (HasArg::No, Some(_)) => {
                    out.push(Opt::Bad(format!("{argv0}: option '--{lname}' doesn't allow an argument\n")))
                }
                (HasArg::No, None) => out.push(Opt::Ok(c, None)),
                (HasArg::Optional, v) => out.push(Opt::Ok(c, v)),
                (HasArg::Required, Some(v)) => out.push(Opt::Ok(c, Some(v))),
                (HasArg::Required, None) => {
                    if i < args.len() {
                        out.push(Opt::Ok(c, Some(args[i].clone())));
                        i += 1;
                    } else {
                        out.push(Opt::Bad(format!("{argv0}: option '--{lname}' requires an argument\n")));
                    }
                }
            }
            continue;
        }
        let Some(cluster) = a.strip_prefix('-').filter(|c| !c.is_empty()) else {
            continue; // not an option (GNU getopt permutes it to the end)
        };
        let chars: Vec<char> = cluster.chars().collect();
        let mut j = 0;
        while j < chars.len() {
            let c = chars[j];
            j += 1;
            match short_opt(c) {
                None => out.push(Opt::Bad(format!("{argv0}: invalid option -- '{c}'\n"))),
                Some(HasArg::No) => out.push(Opt::Ok(c, None)),
                Some(kind) => {
                    let rest: String = chars[j..].iter().collect();
                    j = chars.len();
                    if !rest.is_empty() {
                        out.push(Opt::Ok(c, Some(rest)));
                    } else if kind == HasArg::Optional {
                        out.push(Opt::Ok(c, None));
                    } else if i < args.len() {
                        out.push(Opt::Ok(c, Some(args[i].clone())));
                        i += 1;
                    } else {
                        out.push(Opt::Bad(format!("{argv0}: option requires an argument -- '{c}'\n")));
                    }
                }
            }
        }
    }
    out
}

/// qemu-ga's `split_list()` builds each list with g_list_prepend, so a
/// list comes out reversed (visible only in `-D` output).
fn split_list(s: &str) -> Vec<String> {
    s.split(',').filter(|x| !x.is_empty()).rev().map(str::to_string).collect()
}

fn is_help_option(s: &str) -> bool {
    s == "help" || s == "?"
}

pub fn usage(argv0: &str) -> String {
    format!(
        "Usage: {argv0} [-m <method> -p <path>] [<options>]
QEMU Guest Agent {VERSION}

  -c, --config=PATH configuration file path (default is
                    {DEFAULT_CONFIG}
                    unless overridden by the QGA_CONF environment variable)
  -m, --method      transport method: one of unix-listen, virtio-serial,
                    isa-serial, or vsock-listen (virtio-serial is the default)
  -p, --path        device/socket path (the default for virtio-serial is:
                    {DEFAULT_VIRTIO_PATH},
                    the default for isa-serial is:
                    {DEFAULT_SERIAL_PATH}).
                    Socket addresses for vsock-listen are written as
                    <cid>:<port>.
  -l, --logfile     set logfile path, logs to stderr by default
  -f, --pidfile     specify pidfile (default is {DEFAULT_PIDFILE})
  -F, --fsfreeze-hook
                    enable fsfreeze hook. Accepts an optional argument that
                    specifies script to run on freeze/thaw. Script will be
                    called with 'freeze'/'thaw' arguments accordingly.
                    (default is {DEFAULT_FSFREEZE_HOOK})
                    If using -F with an argument, do not follow -F with a
                    space.
                    (for example: -F/var/run/fsfreezehook.sh)
  -t, --statedir    specify dir to store state information (absolute paths
                    only, default is {DEFAULT_STATEDIR})
  -v, --verbose     log extra debugging information
  -V, --version     print version information and exit
  -d, --daemonize   become a daemon
  -b, --block-rpcs  comma-separated list of RPCs to disable (no spaces,
                    use \"--block-rpcs=help\" to list available RPCs)
  -a, --allow-rpcs  comma-separated list of RPCs to enable (no spaces,
                    use \"--allow-rpcs=help\" to list available RPCs)
  -D, --dump-conf   dump a qemu-ga config file based on current config
                    options / command-line parameters to stdout
  -r, --retry-path  attempt re-opening path if it's unavailable or closed
                    due to an error which may be recoverable in the future
                    (virtio-serial driver re-install, serial device hot
                    plug/unplug, etc.)
  -h, --help        display this help and exit

qga extends qemu-ga with --init and --modules-dir (PID 1 mode),
--max-output BYTES (captured output kept per stream, default 16M) and
--max-clients N (clients served at once on a socket, default 1); see README.md.
"
    )
}

/// Parses the command line (two passes, as qemu-ga: `-c` first, then the
/// config file, then every other option). `env_conf` is `$QGA_CONF`;
/// `command_names` answers `-b help`.
pub fn parse(argv: &[String], env_conf: Option<&str>, command_names: &[&str]) -> Action {
    parse_with(argv, env_conf, command_names, &mut |path| std::fs::read(path))
}

/// [`parse`] with the configuration file read through `read` (the fuzz
/// target passes an in-memory file, so no path given on the command line
/// is ever opened).
pub fn parse_with(
    argv: &[String],
    env_conf: Option<&str>,
    command_names: &[&str],
    read: &mut dyn FnMut(&str) -> std::io::Result<Vec<u8>>,
) -> Action {
    let argv0 = argv.first().map(String::as_str).unwrap_or("qga");
    let args = &argv[argv.len().min(1)..];
    let mut stderr = String::new();
    // Pass 1: only -c; getopt reports bad options in both passes.
    let mut confpath = None;
    for o in getopt(argv0, args) {
        match o {
            Opt::Ok('c', v) => confpath = v,
            Opt::Bad(msg) => stderr.push_str(&msg),
            _ => {}
        }
    }
    let mut cfg = Config::default();
    let (path, required) = match &confpath {
        Some(p) => (p.clone(), true),
        None => (env_conf.unwrap_or(DEFAULT_CONFIG).to_string(), false),
    };
    if let Err(msg) = load_file(&mut cfg, &path, required, read) {
        stderr.push_str(&crate::log::glib_critical_text(&format!("error loading configuration from path: {path}, {msg}")));
        return Action::Fail { stdout: String::new(), stderr, code: 1 };
    }
    for o in getopt(argv0, args) {
        match o {
            Opt::Bad(msg) => {
                stderr.push_str(&msg);
                return Action::Fail {
                    stdout: format!("Unknown option, try '{argv0} --help' for more information.\n"),
                    stderr,
                    code: 1,
                };
            }
            Opt::Ok(c, v) => {
                let v = v.unwrap_or_default();
                match c {
                    'm' => cfg.method = Some(v),
                    'p' => cfg.path = Some(v),
                    'l' => cfg.logfile = Some(v),
                    'f' => cfg.pidfile = Some(v),
                    'F' => cfg.fsfreeze_hook = Some(if v.is_empty() { DEFAULT_FSFREEZE_HOOK.into() } else { v }),
                    't' => cfg.statedir = Some(v),
                    'v' => cfg.verbose = true,
                    'V' => return Action::Print(format!("QEMU Guest Agent {VERSION}\n")),
                    'd' => cfg.daemonize = true,
                    'D' => cfg.dump_conf = true,
                    'r' => cfg.retry_path = true,
                    'b' | 'a' => {
                        if is_help_option(&v) {
                            let mut s = String::new();
                            for n in command_names {
                                s.push_str(n);
                                s.push('\n');
                            }
                            return Action::Print(s);
                        }
                        if c == 'b' {
                            cfg.block_rpcs.extend(split_list(&v));
                        } else {
                            cfg.allow_rpcs.extend(split_list(&v));
                            cfg.has_allow_list = true;
                        }
                    }
                    'h' => return Action::Print(usage(argv0)),
                    '1' => cfg.init = true,
                    '2' => cfg.modules_dir = Some(v),
                    '3' | '4' => {
                        let r = if c == '3' {
                            parse_max_output(&v).map(|n| cfg.max_output = Some(n))
                        } else {
                            parse_max_clients(&v).map(|n| cfg.max_clients = Some(n))
                        };
                        if let Err(msg) = r {
                            stderr.push_str(&format!("{argv0}: {msg}\n"));
                            return Action::Fail { stdout: String::new(), stderr, code: 1 };
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    if !stderr.is_empty() {
        // Pass 1 saw a bad option that pass 2 did not (cannot happen), keep quiet.
    }
    Action::Run(cfg)
}

/// Fills in qemu-ga's defaults for options still unset.
pub fn apply_defaults(cfg: &mut Config) {
    cfg.pidfile.get_or_insert_with(|| DEFAULT_PIDFILE.into());
    cfg.statedir.get_or_insert_with(|| DEFAULT_STATEDIR.into());
    let method = cfg.method.get_or_insert_with(|| "virtio-serial".into()).clone();
    if cfg.path.is_none() {
        match method.as_str() {
            "virtio-serial" => cfg.path = Some(DEFAULT_VIRTIO_PATH.into()),
            "isa-serial" => cfg.path = Some(DEFAULT_SERIAL_PATH.into()),
            _ => {}
        }
    }
}

/// GKeyFile escaping of a string value.
fn escape_value(v: &str) -> String {
    let mut out = String::new();
    for (i, c) in v.chars().enumerate() {
        match c {
            ' ' if i == 0 => out.push_str("\\s"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\\' => out.push_str("\\\\"),
            _ => out.push(c),
        }
    }
    out
}

/// `-D`: the effective configuration as a key file.
pub fn dump(cfg: &Config) -> String {
    let mut s = String::from("[general]\n");
    let mut kv = |k: &str, v: &str| {
        let _ = writeln!(s, "{k}={}", escape_value(v));
    };
    kv("daemon", if cfg.daemonize { "true" } else { "false" });
    kv("method", cfg.method.as_deref().unwrap_or("virtio-serial"));
    if let Some(p) = &cfg.path {
        kv("path", p);
    }
    if let Some(l) = &cfg.logfile {
        kv("logfile", l);
    }
    kv("pidfile", cfg.pidfile.as_deref().unwrap_or(DEFAULT_PIDFILE));
    if let Some(h) = &cfg.fsfreeze_hook {
        kv("fsfreeze-hook", h);
    }
    kv("statedir", cfg.statedir.as_deref().unwrap_or(DEFAULT_STATEDIR));
    kv("verbose", if cfg.verbose { "true" } else { "false" });
    kv("retry-path", if cfg.retry_path { "true" } else { "false" });
    kv("block-rpcs", &cfg.block_rpcs.join(","));
    kv("allow-rpcs", &cfg.allow_rpcs.join(","));
    // qga's own keys, only when set (qemu-ga's dump stays as it is).
    if cfg.init {
        kv("init", "true");
    }
    if let Some(d) = &cfg.modules_dir {
        kv("modules-dir", d);
    }
    if let Some(n) = cfg.max_output {
        kv("max-output", &n.to_string());
    }
    if let Some(n) = cfg.max_clients {
        kv("max-clients", &n.to_string());
    }
    s
}

fn unescape_value(v: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut it = v.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('s') => out.push(' '),
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                return Err(format!("Key file contains invalid escape sequence \u{201C}\\{other}\u{201D}"))
            }
            None => return Err("Key file contains escape character at end of line".into()),
        }
    }
    Ok(out)
}

fn parse_bool(key: &str, v: &str) -> Result<bool, String> {
    match v.trim_end() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(format!("Key file contains key \u{201C}{key}\u{201D} which has a value that cannot be interpreted.")),
    }
}

/// Reads `[general]` keys from a GKeyFile-format file into `cfg`.
fn load_file(
    cfg: &mut Config,
    path: &str,
    required: bool,
    read: &mut dyn FnMut(&str) -> std::io::Result<Vec<u8>>,
) -> Result<(), String> {
    let text = match read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(()),
        Err(e) => {
            return Err(crate::sys::Errno::of(&e).to_string());
        }
    };
    let text = String::from_utf8(text)
        .map_err(|_| "Key file contains line which is not UTF-8".to_string())?;
    load_text(cfg, &text)
}

pub fn load_text(cfg: &mut Config, text: &str) -> Result<(), String> {
    let mut group: Option<String> = None;
    for raw in text.lines() {
        let line = raw.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('[') {
            match line.trim_end().strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                Some(g) => group = Some(g.to_string()),
                None => {
                    return Err(format!(
                        "Key file contains line \u{201C}{raw}\u{201D} which is not a key-value pair, group, or comment"
                    ))
                }
            }
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(format!(
                "Key file contains line \u{201C}{raw}\u{201D} which is not a key-value pair, group, or comment"
            ));
        };
        let Some(g) = &group else {
            return Err("Key file does not start with a group".into());
        };
        if g != "general" {
            continue;
        }
        let key = k.trim_end();
        let value = unescape_value(v.trim_start())?;
        match key {
            "daemon" => cfg.daemonize = parse_bool(key, &value)?,
            "method" => cfg.method = Some(value),
            "path" => cfg.path = Some(value),
            "logfile" => cfg.logfile = Some(value),
            "pidfile" => cfg.pidfile = Some(value),
            "fsfreeze-hook" => cfg.fsfreeze_hook = Some(value),
            "statedir" => cfg.statedir = Some(value),
            "verbose" => cfg.verbose = parse_bool(key, &value)?,
            "retry-path" => cfg.retry_path = parse_bool(key, &value)?,
            "block-rpcs" => cfg.block_rpcs.extend(split_list(&value)),
            "allow-rpcs" => {
                cfg.allow_rpcs.extend(split_list(&value));
                cfg.has_allow_list = true;
            }
            "init" => cfg.init = parse_bool(key, &value)?,
            "modules-dir" => cfg.modules_dir = Some(value),
            "max-output" => cfg.max_output = Some(parse_max_output(&value)?),
            "max-clients" => cfg.max_clients = Some(parse_max_clients(&value)?),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &[&str]) -> Vec<String> {
        std::iter::once("qemu-ga").chain(s.iter().copied()).map(String::from).collect()
    }

    #[test]
    fn options_and_errors() {
        match parse(&argv(&["-m", "unix-listen", "-pS", "--statedir=/t", "-vd", "-b", "a,b", "-b", "c"]), Some("/nonexistent"), &[]) {
            Action::Run(c) => {
                assert_eq!(c.method.as_deref(), Some("unix-listen"));
                assert_eq!(c.path.as_deref(), Some("S"));
                assert_eq!(c.statedir.as_deref(), Some("/t"));
                assert!(c.verbose && c.daemonize);
                // Each list comes out reversed, as qemu-ga's g_list_prepend.
                assert_eq!(c.block_rpcs, ["b", "a", "c"]);
            }
            other => panic!("{other:?}"),
        }
        match parse(&argv(&["-x"]), Some("/nonexistent"), &[]) {
            Action::Fail { stdout, stderr, code } => {
                assert_eq!(code, 1);
                assert_eq!(stdout, "Unknown option, try 'qemu-ga --help' for more information.\n");
                assert!(stderr.contains("qemu-ga: invalid option -- 'x'\n"));
            }
            other => panic!("{other:?}"),
        }
        match parse(&argv(&["-V"]), Some("/nonexistent"), &[]) {
            Action::Print(s) => assert_eq!(s, "QEMU Guest Agent 10.2.0\n"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pid1_options() {
        match parse(&argv(&["--init", "--modules-dir", "/lib/modules/qga", "--m", "isa-serial"]), Some("/nonexistent"), &[]) {
            Action::Run(c) => {
                assert!(c.init);
                assert_eq!(c.modules_dir.as_deref(), Some("/lib/modules/qga"));
                // qemu-ga's abbreviations keep their meaning.
                assert_eq!(c.method.as_deref(), Some("isa-serial"));
                assert_eq!(dump(&c).lines().rev().take(2).collect::<Vec<_>>(), ["modules-dir=/lib/modules/qga", "init=true"]);
            }
            other => panic!("{other:?}"),
        }
        match parse(&argv(&["--ini", "--mod=/m"]), Some("/nonexistent"), &[]) {
            Action::Run(c) => assert!(c.init && c.modules_dir.as_deref() == Some("/m")),
            other => panic!("{other:?}"),
        }
        let mut c = Config::default();
        load_text(&mut c, "[general]\ninit=true\nmodules-dir=/lib/modules/qga\n").unwrap();
        assert!(c.init && c.modules_dir.as_deref() == Some("/lib/modules/qga"));
        // Unset, the dump is qemu-ga's.
        assert!(!dump(&Config::default()).contains("init"));
    }

    #[test]
    fn config_file_and_dump() {
        let mut c = Config::default();
        load_text(
            &mut c,
            "[general]\ndaemon=false\nmethod=virtio-serial\npath=/path/to/org.qemu.guest_agent.0\npidfile=/var/foo/qemu-ga.pid\nstatedir=/var/state\nverbose=true\nblock-rpcs=guest-ping;guest-get-time\n",
        )
        .unwrap();
        assert_eq!(
            dump(&c),
            "[general]\ndaemon=false\nmethod=virtio-serial\npath=/path/to/org.qemu.guest_agent.0\npidfile=/var/foo/qemu-ga.pid\nstatedir=/var/state\nverbose=true\nretry-path=false\nblock-rpcs=guest-ping;guest-get-time\nallow-rpcs=\n"
        );
        assert!(load_text(&mut c, "[general]\nverbose=maybe\n").is_err());
        assert!(load_text(&mut c, "daemon=true\n").is_err());
    }
}
