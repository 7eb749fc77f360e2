//! qemu-ga's command line as glibc's getopt_long parses it: abbreviations,
//! `--opt=value`, optional arguments, and its exact error messages.

use std::fmt::Write as _;

#[derive(Clone, Copy, PartialEq)]
pub(super) enum HasArg {
    No,
    Required,
    Optional,
}

pub(super) const LONG_OPTS: &[(&str, HasArg, char)] = &[
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
pub(super) const EXT_LONG_OPTS: &[(&str, HasArg, char)] = &[
    ("init", HasArg::No, '1'),
    ("modules-dir", HasArg::Required, '2'),
    ("max-output", HasArg::Required, '3'),
    ("max-clients", HasArg::Required, '4'),
    ("exec-policy", HasArg::Required, 'P'),
    ("audit-log", HasArg::Required, 'L'),
    ("audit-log-size", HasArg::Required, 'S'),
    ("audit-log-keep", HasArg::Required, 'K'),
    ("audit-argv", HasArg::No, 'G'),
    ("allow-vsock-cids", HasArg::Required, 'C'),
    ("allow-unix-uids", HasArg::Required, 'U'),
];

/// qemu-ga's GUEST_EXEC_MAX_OUTPUT: the default `max-output`.
pub(super) fn short_opt(c: char) -> Option<HasArg> {
    match c {
        'h' | 'V' | 'v' | 'd' | 'D' | 'r' => Some(HasArg::No),
        'c' | 'm' | 'p' | 'l' | 'f' | 'b' | 'a' | 's' | 't' => Some(HasArg::Required),
        'F' => Some(HasArg::Optional),
        _ => None,
    }
}

/// One result of getopt: an option with its argument, or '?' (the error
/// message getopt printed is in the string).
pub(super) enum Opt {
    Ok(char, Option<String>),
    Bad(String),
}

/// GNU getopt_long over `args` (without argv[0]); non-options are skipped.
pub(super) fn getopt(argv0: &str, args: &[String]) -> Vec<Opt> {
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
