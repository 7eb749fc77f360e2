//! The argument walker: options (with an inline `=value`), words and
//! `--`, and the checks of option values shared by every command.

use std::ffi::{OsStr, OsString};

use crate::fail::{Failure, Result};

pub(super) fn usage(msg: impl Into<String>) -> Failure {
    Failure::Usage(msg.into())
}

pub(super) fn utf8(s: &OsStr, what: &str) -> Result<String> {
    s.to_str().map(str::to_string).ok_or_else(|| usage(format!("{what} is not valid UTF-8: {}", s.to_string_lossy())))
}

pub(super) fn seconds(opt: &str, v: &str) -> Result<f64> {
    match v.parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s < 1e9 => Ok(s),
        _ => Err(usage(format!("{opt} wants a number of seconds > 0, not '{v}'"))),
    }
}

pub(super) fn parse_port(spec: &str, v: &str, opt: &str) -> Result<u32> {
    v.parse::<u32>().map_err(|_| usage(format!("{opt}: bad port '{v}' in '{spec}'")))
}

/// Walks the arguments of one command.
pub(super) struct Args {
    pub(super) items: Vec<OsString>,
    pub(super) i: usize,
    pub(super) command: &'static str,
}

/// One argument: an option (with an inline `=value`, if any) or a word.
#[derive(Debug, PartialEq)]
pub(super) enum Arg {
    Opt(String, Option<String>),
    Word(OsString),
    DashDash,
}

impl Args {
    pub(super) fn next(&mut self) -> Option<Arg> {
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

    pub(super) fn value(&mut self, opt: &str, inline: Option<String>) -> Result<String> {
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

    pub(super) fn rest(&mut self) -> Vec<OsString> {
        let r = self.items[self.i..].to_vec();
        self.i = self.items.len();
        r
    }

    pub(super) fn unknown(&self, opt: &str) -> Failure {
        if self.command.is_empty() {
            usage(format!("unknown option '{opt}' (see 'qgactl --help')"))
        } else {
            usage(format!("unknown option '{opt}' for {} (see 'qgactl {} --help')", self.command, self.command))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walker(items: &[&str], command: &'static str) -> Args {
        Args { items: items.iter().map(OsString::from).collect(), i: 0, command }
    }

    fn opt(o: &str, v: Option<&str>) -> Arg {
        Arg::Opt(o.to_string(), v.map(str::to_string))
    }

    fn usage_text(r: Result<impl std::fmt::Debug>) -> String {
        match r {
            Err(Failure::Usage(m)) => m,
            other => panic!("expected a usage error, got {other:?}"),
        }
    }

    #[test]
    fn arguments_are_classified() {
        let mut a = walker(&["--", "--a=b=c", "--a=", "-", "-x", "-x=1", "word", "--", "---"], "");
        assert_eq!(a.next(), Some(Arg::DashDash));
        // Only the first '=' splits; an empty inline value is a value.
        assert_eq!(a.next(), Some(opt("--a", Some("b=c"))));
        assert_eq!(a.next(), Some(opt("--a", Some(""))));
        // A lone '-' is a word (stdin), a short option never has an inline value.
        assert_eq!(a.next(), Some(Arg::Word("-".into())));
        assert_eq!(a.next(), Some(opt("-x", None)));
        assert_eq!(a.next(), Some(opt("-x=1", None)));
        assert_eq!(a.next(), Some(Arg::Word("word".into())));
        assert_eq!(a.next(), Some(Arg::DashDash));
        assert_eq!(a.next(), Some(opt("---", None)));
        assert_eq!(a.next(), None);
        assert_eq!(a.next(), None);
    }

    #[test]
    fn values_inline_or_next_and_the_rest() {
        let mut a = walker(&["--cwd", "/srv", "--", "x"], "exec");
        assert_eq!(a.next(), Some(opt("--cwd", None)));
        assert_eq!(a.value("--cwd", None).unwrap(), "/srv");
        // An inline value does not consume the next item.
        assert_eq!(a.value("--cwd", Some("/in".into())).unwrap(), "/in");
        assert_eq!(a.next(), Some(Arg::DashDash));
        assert_eq!(a.rest(), vec![OsString::from("x")]);
        assert_eq!(a.next(), None);
        assert_eq!(a.rest(), Vec::<OsString>::new());
        // A value may look like an option.
        let mut a = walker(&["--user", "--merge"], "exec");
        a.next();
        assert_eq!(a.value("--user", None).unwrap(), "--merge");
    }

    #[test]
    fn missing_value_and_unknown_option_texts() {
        let mut a = walker(&["--timeout"], "exec");
        a.next();
        assert_eq!(usage_text(a.value("--timeout", None)), "--timeout needs a value (see 'qgactl exec --help')");
        let mut a = walker(&["--socket"], "");
        a.next();
        assert_eq!(usage_text(a.value("--socket", None)), "--socket needs a value (see 'qgactl --help')");
        assert_eq!(usage_text(Err::<(), _>(a.unknown("--frob"))), "unknown option '--frob' (see 'qgactl --help')");
        a.command = "pull";
        assert_eq!(
            usage_text(Err::<(), _>(a.unknown("-x"))),
            "unknown option '-x' for pull (see 'qgactl pull --help')"
        );
        assert_eq!(a.unknown("-x").exit_code(), crate::fail::EXIT_USAGE);
    }

    #[test]
    fn seconds_must_be_positive_finite_and_below_1e9() {
        assert_eq!(seconds("--timeout", "60").unwrap(), 60.0);
        assert_eq!(seconds("--timeout", "0.25").unwrap(), 0.25);
        assert_eq!(seconds("--timeout", "999999999").unwrap(), 999_999_999.0);
        for bad in ["0", "-1", "", "abc", "1e9", "inf", "NaN", " 5", "5s"] {
            assert_eq!(
                usage_text(seconds("--timeout", bad)),
                format!("--timeout wants a number of seconds > 0, not '{bad}'"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn ports_and_utf8() {
        assert_eq!(parse_port("3:1234", "1234", "--vsock").unwrap(), 1234);
        assert_eq!(parse_port("3:4294967295", "4294967295", "--vsock").unwrap(), u32::MAX);
        assert_eq!(usage_text(parse_port("3:-1", "-1", "--vsock")), "--vsock: bad port '-1' in '3:-1'");
        assert_eq!(usage_text(parse_port("3:", "", "--vsock")), "--vsock: bad port '' in '3:'");
        assert_eq!(utf8(OsStr::new("ok"), "REMOTE").unwrap(), "ok");
        use std::os::unix::ffi::OsStrExt;
        let bad = OsStr::from_bytes(b"a\xffb");
        assert_eq!(usage_text(utf8(bad, "REMOTE")), "REMOTE is not valid UTF-8: a\u{fffd}b");
    }
}
