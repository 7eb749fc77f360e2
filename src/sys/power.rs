//! Ending the machine: sync and reboot(2).

use super::Errno;

/// What reboot(2) should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerAction {
    PowerOff,
    Halt,
    Reboot,
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
