//! PID 1 mode: qga as the init of a minimal guest. This module holds the
//! final step every path to power-off shares (guest-shutdown, SIGTERM):
//! end every process, sync, and reboot(2).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Marks PID 1 mode on (detected as pid 1, or forced by an option).
pub fn set_active(on: bool) {
    ACTIVE.store(on, Ordering::SeqCst);
}

pub fn active() -> bool {
    ACTIVE.load(Ordering::SeqCst)
}

/// How the machine should end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerAction {
    PowerOff,
    Halt,
    Reboot,
}

/// Time processes get between SIGTERM and SIGKILL at shutdown.
const TERM_GRACE: Duration = Duration::from_millis(500);

/// Ends all other processes (SIGTERM, then SIGKILL), syncs file systems
/// and calls reboot(2). Only returns if reboot(2) failed.
pub fn end_all_and_reboot(action: PowerAction) -> std::io::Error {
    // SAFETY: signalling every process (we are init) and syncing are plain libc calls.
    unsafe {
        libc::kill(-1, libc::SIGTERM);
    }
    std::thread::sleep(TERM_GRACE);
    // SAFETY: as above.
    unsafe {
        libc::kill(-1, libc::SIGKILL);
        libc::sync();
    }
    let cmd = match action {
        PowerAction::PowerOff => libc::RB_POWER_OFF,
        PowerAction::Halt => libc::RB_HALT_SYSTEM,
        PowerAction::Reboot => libc::RB_AUTOBOOT,
    };
    // SAFETY: reboot(2) with a valid command; needs CAP_SYS_BOOT.
    unsafe { libc::reboot(cmd) };
    std::io::Error::last_os_error()
}
