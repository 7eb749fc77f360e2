//! qemu-ga style logging: `<seconds>.<micro>: <level>: <message>` to
//! stderr or the `-l` log file; error|critical|warning by default, all
//! levels with `-v`.

use std::io::Write;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Critical,
    Warning,
    Info,
    Debug,
}

impl Level {
    fn word(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Critical => "critical",
            Level::Warning => "warning",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }
}

struct Logger {
    verbose: bool,
    file: Option<std::fs::File>,
    enabled: bool,
}

static LOGGER: Mutex<Logger> = Mutex::new(Logger { verbose: false, file: None, enabled: true });

/// Configures verbosity and the optional log file (opened for append).
pub fn init(verbose: bool, file: Option<std::fs::File>) {
    if let Ok(mut l) = LOGGER.lock() {
        l.verbose = verbose;
        l.file = file;
    }
}

/// Turns logging off or on (qemu-ga disables it while frozen).
pub fn set_enabled(on: bool) {
    if let Ok(mut l) = LOGGER.lock() {
        l.enabled = on;
    }
}

pub fn log(level: Level, msg: &str) {
    let Ok(mut l) = LOGGER.lock() else { return };
    if !l.enabled || (!l.verbose && level > Level::Warning) {
        return;
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let line = format!("{}.{:06}: {}: {}\n", now.as_secs(), now.subsec_micros(), level.word(), msg);
    match l.file.as_mut() {
        Some(f) => {
            let _ = f.write_all(line.as_bytes());
        }
        None => {
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }
}

pub fn error(msg: &str) {
    log(Level::Error, msg)
}
pub fn critical(msg: &str) {
    log(Level::Critical, msg)
}
pub fn warning(msg: &str) {
    log(Level::Warning, msg)
}
pub fn info(msg: &str) {
    log(Level::Info, msg)
}
pub fn debug(msg: &str) {
    log(Level::Debug, msg)
}

/// The text GLib's default log handler prints for `g_critical()` before
/// qemu-ga installs its own handler (command-line and config errors):
/// `\n** (process:PID): CRITICAL **: HH:MM:SS.mmm: msg\n`, with
/// non-ASCII characters shown as `?` unless the locale is UTF-8.
pub fn glib_critical_text(msg: &str) -> String {
    let utf8 = ["LC_ALL", "LC_CTYPE", "LANG"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .is_some_and(|v| {
            let v = v.to_ascii_lowercase();
            v.contains("utf-8") || v.contains("utf8")
        });
    let msg: String =
        if utf8 { msg.to_string() } else { msg.chars().map(|c| if c.is_ascii() { c } else { '?' }).collect() };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    // A failed conversion prints 00:00:00, as the zeroed struct tm did.
    let tm = crate::sys::time::local_time(now.as_secs() as i64).unwrap_or_default();
    format!(
        "\n** (process:{}): CRITICAL **: {:02}:{:02}:{:02}.{:03}: {msg}\n",
        std::process::id(),
        tm.hour,
        tm.min,
        tm.sec,
        now.subsec_millis()
    )
}
