//! Ending the machine: every process ended, sync, reboot(2).

use std::time::{Duration, Instant};

use super::{process, Errno};

/// Time processes get between SIGTERM and SIGKILL at shutdown.
const TERM_GRACE: Duration = Duration::from_millis(500);

/// What reboot(2) should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerAction {
    PowerOff,
    Halt,
    Reboot,
}

impl PowerAction {
    /// What the log says when it happens.
    pub fn progress_text(self) -> &'static str {
        match self {
            PowerAction::PowerOff => "powering off",
            PowerAction::Halt => "halting",
            PowerAction::Reboot => "rebooting",
        }
    }
}

/// Flushes every file system.
pub fn sync() {
    // SAFETY: sync takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

/// reboot(2); returns only when it failed (needs CAP_SYS_BOOT).
pub fn reboot(action: PowerAction) -> Errno {
    let cmd = match action {
        PowerAction::PowerOff => libc::RB_POWER_OFF,
        PowerAction::Halt => libc::RB_HALT_SYSTEM,
        PowerAction::Reboot => libc::RB_AUTOBOOT,
    };
    // SAFETY: reboot(2) with a valid command.
    unsafe { libc::reboot(cmd) };
    Errno::last()
}

/// Ends all other processes (SIGTERM, then SIGKILL once they are gone or
/// the grace period passed), syncs file systems and calls reboot(2). Only
/// returns if reboot(2) failed.
pub fn end_all_and_reboot(action: PowerAction) -> Errno {
    let _ = process::kill(-1, libc::SIGTERM);
    let _ = process::kill(-1, libc::SIGCONT);
    // As pid 1 every process left is our child (re-parented): reap until
    // none is left (ECHILD) or the grace period is over.
    let is_init = process::getpid() == 1;
    let until = Instant::now() + TERM_GRACE;
    while Instant::now() < until {
        match process::reap_any() {
            Err(Errno(libc::ECHILD)) if is_init => break,
            Ok(Some(_)) => {}
            _ => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    let _ = process::kill(-1, libc::SIGKILL);
    sync();
    reboot(action)
}
