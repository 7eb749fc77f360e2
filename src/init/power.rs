//! How an init ends the machine: on guest-shutdown or a signal (the usual
//! init conventions, which busybox's `poweroff`, `halt` and `reboot`
//! applets use: SIGTERM and SIGUSR2 power off, SIGUSR1 halts, SIGINT
//! reboots), every process is ended, file systems are synced, and
//! reboot(2) powers off, halts or reboots.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use crate::log;
use crate::sys::libc;
use crate::sys::power::PowerAction;
use crate::sys::process::{self, sleep_interruptible};
use crate::sys::{signal, Errno};

/// Ends all other processes, syncs and calls reboot(2) (see
/// [`crate::sys::power::end_all_and_reboot`]). Only returns if reboot(2)
/// failed.
fn end_all_and_reboot(action: PowerAction) -> Errno {
    log::info(action.progress_text());
    crate::sys::power::end_all_and_reboot(action)
}

/// A terminating signal arrived.
static TERMINATE: AtomicBool = AtomicBool::new(false);
/// 0: none yet; else the PowerAction a signal asked for (1 off, 2 halt, 3 reboot).
static REQUESTED: AtomicU8 = AtomicU8::new(0);

fn action_code(a: PowerAction) -> u8 {
    match a {
        PowerAction::PowerOff => 1,
        PowerAction::Halt => 2,
        PowerAction::Reboot => 3,
    }
}

/// Installs init's signal handlers. Init only receives signals it has a
/// handler for, so these are what make `kill -TERM 1` work at all. SIGUSR1
/// and SIGUSR2 are turned into SIGTERM (which stops the agent's loop)
/// after recording the action; SIGINT and SIGTERM stop the loop directly.
pub fn install_signals() {
    for (sig, action, raise) in [
        (libc::SIGTERM, PowerAction::PowerOff, None),
        (libc::SIGINT, PowerAction::Reboot, None),
        (libc::SIGUSR1, PowerAction::Halt, Some(libc::SIGTERM)),
        (libc::SIGUSR2, PowerAction::PowerOff, Some(libc::SIGTERM)),
    ] {
        if let Err(e) = signal::on_signal_record(sig, &REQUESTED, action_code(action), &TERMINATE, raise) {
            log::warning(&format!("cannot handle signal {sig}: {e}"));
        }
    }
    // SIGHUP is handled by the agent; make sure it never kills init before.
    let _ = signal_hook::flag::register(libc::SIGHUP, std::sync::Arc::new(AtomicBool::new(false)));
}

/// The action the terminating signal asked for (power off by default).
pub fn requested_action() -> PowerAction {
    match REQUESTED.load(Ordering::SeqCst) {
        2 => PowerAction::Halt,
        3 => PowerAction::Reboot,
        _ => PowerAction::PowerOff,
    }
}

pub fn terminate_requested() -> bool {
    TERMINATE.load(Ordering::SeqCst)
}

/// Ends the machine as a signal asked; if reboot(2) fails (not allowed),
/// logs it and returns so the caller can go on serving.
pub fn shutdown_on_signal() {
    let err = end_all_and_reboot(requested_action());
    log::critical(&format!("reboot(2) failed: {err}"));
    TERMINATE.store(false, Ordering::SeqCst);
    REQUESTED.store(0, Ordering::SeqCst);
}

/// Nothing can ever work (bad configuration): stay alive as init, reap
/// orphans, and still obey terminating signals.
pub fn idle_forever() -> ! {
    loop {
        if terminate_requested() {
            shutdown_on_signal();
        }
        while let Ok(Some(_)) = process::reap_any() {}
        if !terminate_requested() {
            sleep_interruptible(Duration::from_secs(5));
        }
    }
}
