//! The one place where failures become qemu-ga's `{class, desc}` errors.

use std::fmt;

/// qemu-ga only ever sends these two classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    GenericError,
    CommandNotFound,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::GenericError => "GenericError",
            ErrorClass::CommandNotFound => "CommandNotFound",
        }
    }
}

/// An error reply: class and the exact `desc` text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QgaError {
    pub class: ErrorClass,
    pub desc: String,
}

impl QgaError {
    pub fn generic(desc: impl Into<String>) -> Self {
        QgaError { class: ErrorClass::GenericError, desc: desc.into() }
    }

    pub fn command_not_found(name: &str) -> Self {
        QgaError { class: ErrorClass::CommandNotFound, desc: format!("The command {name} has not been found") }
    }

    pub fn command_disabled(name: &str, reason: Option<&str>) -> Self {
        let desc = match reason {
            Some(r) => format!("Command {name} has been disabled: {r}"),
            None => format!("Command {name} has been disabled"),
        };
        QgaError { class: ErrorClass::CommandNotFound, desc }
    }

    /// QERR_MISSING_PARAMETER.
    pub fn missing(name: &str) -> Self {
        Self::generic(format!("Parameter '{name}' is missing"))
    }

    /// qobject_input_check_struct().
    pub fn unexpected(name: &str) -> Self {
        Self::generic(format!("Parameter '{name}' is unexpected"))
    }

    /// QERR_INVALID_PARAMETER_TYPE.
    pub fn invalid_type(name: &str, expected: &str) -> Self {
        Self::generic(format!("Invalid parameter type for '{name}', expected: {expected}"))
    }

    /// input_type_enum().
    pub fn bad_enum_value(name: &str, value: &str) -> Self {
        Self::generic(format!("Parameter '{name}' does not accept value '{value}'"))
    }

    /// QERR_INVALID_PARAMETER_VALUE.
    pub fn invalid_value(name: &str, expected: &str) -> Self {
        Self::generic(format!("Parameter '{name}' expects {expected}"))
    }

    /// `error_setg_errno()`: the message followed by `: <strerror>`.
    pub fn with_errno(msg: impl fmt::Display, err: impl OsError) -> Self {
        Self::generic(format!("{msg}: {}", err.text()))
    }
}

impl fmt::Display for QgaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.class.as_str(), self.desc)
    }
}

/// An operating-system error shown as its `strerror()` text: the OS
/// layer's `Errno` (whose Display is glibc's text), which the protocol
/// layer knows only as a `Copy + Display` value, so it needs no libc and
/// the OS crate needs no protocol. `std::io::Error` is not `Copy`: its
/// text (" (os error N)") cannot reach a reply by mistake.
pub trait OsError {
    fn text(&self) -> String;
}

impl<T: fmt::Display + Copy> OsError for T {
    fn text(&self) -> String {
        self.to_string()
    }
}
