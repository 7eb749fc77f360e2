//! Failures and qgactl's exit codes (documented in docs/qgactl.md).

use std::fmt;

/// A problem on the host side: a local file, stdin, a refused size.
pub const EXIT_FAILURE: i32 = 1;
/// Bad command line.
pub const EXIT_USAGE: i32 = 2;
/// `exec --timeout` expired (the program was terminated, or could not be).
pub const EXIT_TIMEOUT: i32 = 124;
/// The agent answered a request with an error (command disabled or not
/// found, bad argument, spawn failure, file error, ...).
pub const EXIT_AGENT: i32 = 125;
/// Interrupted (Ctrl-C) before the guest program's status was known.
pub const EXIT_INTERRUPTED: i32 = 130;
/// No usable session: socket missing, agent not answering, connection
/// lost, reply timeout, unparsable reply.
pub const EXIT_CONNECTION: i32 = 255;

#[derive(Debug)]
pub enum Failure {
    Usage(String),
    Local(String),
    Connection(String),
    Agent { command: String, class: String, desc: String },
    Interrupted(String),
}

impl Failure {
    pub fn exit_code(&self) -> i32 {
        match self {
            Failure::Usage(_) => EXIT_USAGE,
            Failure::Local(_) => EXIT_FAILURE,
            Failure::Connection(_) => EXIT_CONNECTION,
            Failure::Agent { .. } => EXIT_AGENT,
            Failure::Interrupted(_) => EXIT_INTERRUPTED,
        }
    }

    /// Prints the one-line message on stderr.
    pub fn report(&self) {
        eprintln!("qgactl: {self}");
    }

    pub fn agent(command: &str, class: &str, desc: &str) -> Failure {
        Failure::Agent { command: command.to_string(), class: class.to_string(), desc: desc.to_string() }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Usage(m) | Failure::Local(m) | Failure::Connection(m) | Failure::Interrupted(m) => {
                f.write_str(&one_line(m))
            }
            Failure::Agent { command, class, desc } if class != "GenericError" => {
                write!(f, "{command}: {} ({class})", one_line(desc))
            }
            Failure::Agent { command, desc, .. } => write!(f, "{command}: {}", one_line(desc)),
        }
    }
}

/// Messages stay on one line whatever the agent put in them.
pub fn one_line(s: &str) -> String {
    s.trim_end().replace(['\n', '\r'], " ")
}

pub type Result<T> = std::result::Result<T, Failure>;
