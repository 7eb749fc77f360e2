//! qemu-ga's command line (`config_parse()`, GNU getopt_long rules and
//! messages) and `[general]` configuration file (`config_load()` /
//! `config_dump()`), QEMU 11.1's released option set.

mod getopt;
mod keyfile;

use getopt::{getopt, Opt};
use keyfile::load_file;
pub use keyfile::{dump, load_text, parse_groups, Group};

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
    /// qga extension `--exec-policy` / `exec-policy=`: the guest owner's
    /// exec policy file (src/policy; docs/security.md).
    pub exec_policy: Option<String>,
    /// qga extension `--audit-log` / `audit-log=`: the audit trail's file,
    /// or `kmsg` for the kernel log (docs/audit.md).
    pub audit_log: Option<String>,
    /// `--audit-log-size`: the size at which the audit file is rotated.
    pub audit_log_size: Option<u64>,
    /// `--audit-log-keep`: rotated audit files kept (DEST.1 ... DEST.N).
    pub audit_log_keep: Option<usize>,
    /// `--audit-argv`: records include argv (and, for exec, the env).
    pub audit_argv: bool,
    /// `--allow-vsock-cids`: the only vsock CIDs served (unset: all).
    pub allow_vsock_cids: Option<Vec<u32>>,
    /// `--allow-unix-uids`: the only unix-socket client uids (or user
    /// names) served (unset: all).
    pub allow_unix_uids: Option<Vec<String>>,
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

    /// The audit file's rotation threshold (default 10 MiB).
    pub fn audit_log_size(&self) -> u64 {
        self.audit_log_size.unwrap_or(10 << 20)
    }

    /// Rotated audit files kept (default 3).
    pub fn audit_log_keep(&self) -> usize {
        self.audit_log_keep.unwrap_or(3)
    }
}

/// What the command line asks for (built once per process, so the size
/// of the `Run` variant does not matter).
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Action {
    Run(Config),
    /// Print to stdout and exit 0 (`-V`, `-h`, `-b help`, `-D`).
    Print(String),
    /// Print to stderr / stdout and exit with the code.
    Fail {
        stdout: String,
        stderr: String,
        code: i32,
    },
}

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

pub(super) fn parse_max_output(v: &str) -> Result<usize, String> {
    parse_size(v, MAX_MAX_OUTPUT)
        .ok_or_else(|| format!("invalid max-output '{v}': expected a number of bytes from 1 to 256M (suffixes K, M)"))
}

pub(super) fn parse_max_clients(v: &str) -> Result<usize, String> {
    v.trim()
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_MAX_CLIENTS).contains(n))
        .ok_or_else(|| format!("invalid max-clients '{v}': expected a number from 1 to {MAX_MAX_CLIENTS}"))
}

/// Sets one of qga's own options from its text (command line and
/// configuration file alike); the error names the option.
pub(super) fn set_ext(cfg: &mut Config, key: &str, v: String) -> Result<(), String> {
    let bad = |what: &str| format!("invalid {key} '{v}': expected {what}");
    let list = v.split([',', ';']).map(str::trim).filter(|x| !x.is_empty());
    match key {
        "max-output" => cfg.max_output = Some(parse_max_output(&v)?),
        "max-clients" => cfg.max_clients = Some(parse_max_clients(&v)?),
        "audit-log-size" => {
            cfg.audit_log_size = Some(parse_size(&v, 1 << 40).ok_or_else(|| bad("a size (suffixes K, M, G)"))? as u64)
        }
        "audit-log-keep" => {
            cfg.audit_log_keep = Some(v.trim().parse().ok().filter(|n| *n <= 99).ok_or_else(|| bad("0 to 99"))?)
        }
        "allow-vsock-cids" => {
            let mut cids = Vec::new();
            for c in list {
                cids.push(c.parse().map_err(|_| bad("CIDs"))?);
            }
            cfg.allow_vsock_cids = Some(cids);
        }
        "allow-unix-uids" => cfg.allow_unix_uids = Some(list.map(str::to_string).collect()),
        "audit-log" => cfg.audit_log = Some(v),
        "exec-policy" => cfg.exec_policy = Some(v),
        _ => {}
    }
    Ok(())
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
--max-clients N (clients served at once on a socket, default 1), the audit
trail (--audit-log=FILE|kmsg, --audit-log-size, --audit-log-keep,
--audit-argv) and channel checks (--allow-vsock-cids=LIST,
--allow-unix-uids=LIST) and the exec policy (--exec-policy FILE: what
guest-exec may run, how confined); see README.md.
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
        stderr.push_str(&crate::log::glib_critical_text(&format!(
            "error loading configuration from path: {path}, {msg}"
        )));
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
                    'G' => cfg.audit_argv = true,
                    _ => {
                        let key = getopt::EXT_LONG_OPTS.iter().find(|o| o.2 == c).map_or("", |o| o.0);
                        if let Err(msg) = set_ext(&mut cfg, key, v) {
                            stderr.push_str(&format!("{argv0}: {msg}\n"));
                            return Action::Fail { stdout: String::new(), stderr, code: 1 };
                        }
                    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &[&str]) -> Vec<String> {
        std::iter::once("qemu-ga").chain(s.iter().copied()).map(String::from).collect()
    }

    #[test]
    fn options_and_errors() {
        match parse(
            &argv(&["-m", "unix-listen", "-pS", "--statedir=/t", "-vd", "-b", "a,b", "-b", "c"]),
            Some("/nonexistent"),
            &[],
        ) {
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
        match parse(
            &argv(&["--init", "--modules-dir", "/lib/modules/qga", "--m", "isa-serial"]),
            Some("/nonexistent"),
            &[],
        ) {
            Action::Run(c) => {
                assert!(c.init);
                assert_eq!(c.modules_dir.as_deref(), Some("/lib/modules/qga"));
                // qemu-ga's abbreviations keep their meaning.
                assert_eq!(c.method.as_deref(), Some("isa-serial"));
                assert_eq!(
                    dump(&c).lines().rev().take(2).collect::<Vec<_>>(),
                    ["modules-dir=/lib/modules/qga", "init=true"]
                );
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
    fn audit_and_channel_options() {
        match parse(
            &argv(&[
                "--audit-log=/var/log/qga-audit",
                "--audit-log-size",
                "64K",
                "--audit-log-keep=5",
                "--audit-argv",
                "--allow-vsock-cids=2,3",
                "--allow-unix-uids=root,1000",
                "--allow-rpcs=guest-ping",
            ]),
            Some("/nonexistent"),
            &[],
        ) {
            Action::Run(c) => {
                assert_eq!(c.audit_log.as_deref(), Some("/var/log/qga-audit"));
                assert_eq!((c.audit_log_size(), c.audit_log_keep(), c.audit_argv), (64 << 10, 5, true));
                assert_eq!(c.allow_vsock_cids, Some(vec![2, 3]));
                assert_eq!(c.allow_unix_uids, Some(vec!["root".to_string(), "1000".to_string()]));
                // qemu-ga's abbreviation --allow still means --allow-rpcs.
                assert_eq!(c.allow_rpcs, ["guest-ping"]);
                let d = dump(&c);
                assert!(d.ends_with(
                    "audit-log=/var/log/qga-audit\naudit-log-size=65536\naudit-log-keep=5\naudit-argv=true\nallow-vsock-cids=2,3\nallow-unix-uids=root,1000\n"
                ));
                let mut again = Config::default();
                load_text(&mut again, &d).unwrap();
                assert_eq!(
                    (again.audit_log, again.audit_log_size, again.audit_argv),
                    (c.audit_log, c.audit_log_size, true)
                );
                assert_eq!((again.allow_vsock_cids, again.allow_unix_uids), (c.allow_vsock_cids, c.allow_unix_uids));
            }
            other => panic!("{other:?}"),
        }
        let c = Config::default();
        assert_eq!((c.audit_log_size(), c.audit_log_keep()), (10 << 20, 3));
        for bad in ["--audit-log-size=0", "--audit-log-keep=100", "--allow-vsock-cids=2,host"] {
            match parse(&argv(&[bad]), Some("/nonexistent"), &[]) {
                Action::Fail { stderr, code: 1, .. } => assert!(stderr.starts_with("qemu-ga: invalid "), "{stderr}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        let mut c = Config::default();
        assert!(load_text(&mut c, "[general]\naudit-log-keep=x\n").is_err());
        load_text(&mut c, "[general]\nallow-unix-uids=\naudit-log=kmsg\n").unwrap();
        assert_eq!((c.allow_unix_uids, c.audit_log.as_deref()), (Some(vec![]), Some("kmsg")));
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
