//! Global options: where the agent is (--socket, --vsock,
//! --hybrid-vsock, else QGA_SOCKET) and the time limits.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use super::args::{parse_port, seconds, usage, Args};
use crate::conn::{Options, Target};
use crate::fail::Result;

pub(super) const DEFAULT_CONNECT_TIMEOUT: f64 = 5.0;
pub(super) const DEFAULT_REPLY_TIMEOUT: f64 = 30.0;

#[derive(Debug, Default)]
pub(super) struct Global {
    target: Option<Target>,
    target_opt: Option<&'static str>,
    connect_timeout: Option<f64>,
    reply_timeout: Option<f64>,
}

impl Global {
    /// Handles a global option; Ok(false) if `opt` is not one.
    pub(super) fn take(&mut self, opt: &str, inline: Option<String>, args: &mut Args) -> Result<bool> {
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

    /// The connection options; `env_socket` is $QGA_SOCKET, the default
    /// for --socket.
    pub(super) fn options(self, env_socket: Option<OsString>) -> Result<Options> {
        let target = match self.target {
            Some(t) => t,
            None => match env_socket {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fail::Failure;

    /// Runs every item through [`Global::take`] (all must be global
    /// options), then [`Global::options`] with `env`.
    fn global(items: &[&str], env: Option<&str>) -> Result<Options> {
        let mut g = Global::default();
        let mut args = Args { items: items.iter().map(OsString::from).collect(), i: 0, command: "" };
        while let Some(a) = args.next() {
            let super::super::args::Arg::Opt(o, inline) = a else { panic!("not an option") };
            assert!(g.take(&o, inline, &mut args)?, "{o} is not a global option");
        }
        g.options(env.map(OsString::from))
    }

    fn usage_text(r: Result<Options>) -> String {
        match r {
            Err(Failure::Usage(m)) => m,
            other => panic!("expected a usage error, got {other:?}"),
        }
    }

    fn target(items: &[&str]) -> String {
        format!("{:?}", global(items, None).unwrap().target)
    }

    #[test]
    fn targets() {
        assert_eq!(target(&["--socket", "/run/q.sock"]), r#"Unix("/run/q.sock")"#);
        assert_eq!(target(&["--socket=/run/q.sock"]), r#"Unix("/run/q.sock")"#);
        assert_eq!(target(&["--vsock", "3:1234"]), "Vsock { cid: 3, port: 1234 }");
        // The port follows the last ':' of a hybrid vsock path.
        assert_eq!(target(&["--hybrid-vsock", "/run/a:b.sock:52"]), r#"Hybrid { path: "/run/a:b.sock", port: 52 }"#);
        // The same option again: the last one counts.
        assert_eq!(target(&["--socket", "/a", "--socket", "/b"]), r#"Unix("/b")"#);
        assert_eq!(target(&["--vsock", "3:1", "--vsock=4:2"]), "Vsock { cid: 4, port: 2 }");
    }

    #[test]
    fn bad_targets() {
        let cases: [(&[&str], &str); 8] = [
            (&["--vsock", "3"], "--vsock wants CID:PORT, not '3'"),
            (&["--vsock", "x:1"], "--vsock: bad CID 'x' in 'x:1'"),
            (&["--vsock", "3:p"], "--vsock: bad port 'p' in '3:p'"),
            (&["--vsock", "3:1:2"], "--vsock: bad port '1:2' in '3:1:2'"),
            (&["--hybrid-vsock", "/run/v.sock"], "--hybrid-vsock wants PATH:PORT, not '/run/v.sock'"),
            (&["--hybrid-vsock", ":5"], "--hybrid-vsock wants PATH:PORT, not ':5'"),
            (&["--hybrid-vsock", "/v:"], "--hybrid-vsock: bad port '' in '/v:'"),
            (
                &["--socket", "/a", "--vsock", "3:1"],
                "give only one of --socket, --vsock and --hybrid-vsock (--socket and --vsock)",
            ),
        ];
        for (items, text) in cases {
            assert_eq!(usage_text(global(items, None)), text, "{items:?}");
        }
        assert_eq!(
            usage_text(global(&["--hybrid-vsock", "/h:1", "--socket", "/a"], None)),
            "give only one of --socket, --vsock and --hybrid-vsock (--hybrid-vsock and --socket)"
        );
    }

    #[test]
    fn timeouts_and_defaults() {
        let o = global(&["--socket", "/s"], None).unwrap();
        assert_eq!((o.connect_timeout, o.reply_timeout), (Duration::from_secs(5), Duration::from_secs(30)));
        let o = global(&["--socket", "/s", "--connect-timeout", "60", "--reply-timeout=0.5"], None).unwrap();
        assert_eq!((o.connect_timeout, o.reply_timeout), (Duration::from_secs(60), Duration::from_millis(500)));
        assert_eq!(
            usage_text(global(&["--reply-timeout", "0"], None)),
            "--reply-timeout wants a number of seconds > 0, not '0'"
        );
        assert_eq!(
            usage_text(global(&["--connect-timeout=-3"], None)),
            "--connect-timeout wants a number of seconds > 0, not '-3'"
        );
    }

    #[test]
    fn qga_socket_is_the_default_target() {
        assert_eq!(format!("{:?}", global(&[], Some("/env.sock")).unwrap().target), r#"Unix("/env.sock")"#);
        // An option wins over the environment.
        assert_eq!(
            format!("{:?}", global(&["--vsock", "2:9"], Some("/e")).unwrap().target),
            "Vsock { cid: 2, port: 9 }"
        );
        let none =
            "no agent given: use --socket PATH (or set QGA_SOCKET), --vsock CID:PORT or --hybrid-vsock PATH:PORT";
        assert_eq!(usage_text(global(&[], None)), none);
        assert_eq!(usage_text(global(&["--reply-timeout", "1"], Some(""))), none);
    }
}
