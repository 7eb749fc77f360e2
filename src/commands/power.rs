//! guest-shutdown and guest-suspend-disk/-ram/-hybrid
//! (`qga/commands-posix.c`, `qga/commands-linux.c`). All four send no
//! reply on success.
//!
//! guest-shutdown follows QEMU 10.2: /sbin/poweroff, /sbin/halt or
//! /sbin/reboot (by mode) when it exists, else `/sbin/shutdown -h
//! -P|-H|-r +0 "hypervisor initiated shutdown"`. qga extension: when
//! neither exists (a bare initramfs), or when qga itself is PID 1, it ends
//! all processes, syncs and calls reboot(2) directly.

use std::ffi::{CStr, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;

use super::{helper, Ctx, Outcome, Pending};
use crate::log;
use crate::protocol::{Args, QgaError};
use crate::sys::libc;
use crate::sys::power::PowerAction;
use crate::sys::{find_program, Errno};

use super::reply::R;

/// `file_exists()` of QEMU 10.2: stat() succeeds on a regular file.
fn file_exists(path: &str) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() || m.file_type().is_symlink())
}

fn reboot_directly(action: PowerAction) -> R {
    log::info(action.progress_text());
    let e = crate::sys::power::end_all_and_reboot(action);
    Err(QgaError::with_errno("failed to shutdown", e))
}

pub fn shutdown(ctx: &mut Ctx<'_>, mut a: Args) -> R {
    let mode = a.opt_str("mode")?;
    a.finish()?;
    log::info(&format!("guest-shutdown called, mode: {}", mode.as_deref().unwrap_or("(null)")));
    let (flag, cmd, action) = match mode.as_deref() {
        None | Some("powerdown") => ("-P", "/sbin/poweroff", PowerAction::PowerOff),
        Some("halt") => ("-H", "/sbin/halt", PowerAction::Halt),
        Some("reboot") => ("-r", "/sbin/reboot", PowerAction::Reboot),
        Some(_) => return Err(QgaError::generic("mode is invalid (valid values are: halt|powerdown|reboot")),
    };
    if ctx.guest.init_mode {
        return reboot_directly(action);
    }
    let argv: Vec<&str> = if file_exists(cmd) {
        vec![cmd]
    } else if file_exists("/sbin/shutdown") {
        vec!["/sbin/shutdown", "-h", flag, "+0", "hypervisor initiated shutdown"]
    } else {
        return reboot_directly(action);
    };
    helper::run(ctx, &argv, None, "shutdown", |_| Ok(Outcome::Silent))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Disk,
    Ram,
    Hybrid,
}

impl Mode {
    fn systemd_unit(self) -> &'static str {
        match self {
            Mode::Disk => "systemd-hibernate",
            Mode::Ram => "systemd-suspend",
            Mode::Hybrid => "systemd-hybrid-sleep",
        }
    }
    fn systemctl_verb(self) -> &'static str {
        match self {
            Mode::Disk => "hibernate",
            Mode::Ram => "suspend",
            Mode::Hybrid => "hybrid-sleep",
        }
    }
    fn pm_flag(self) -> &'static str {
        match self {
            Mode::Disk => "--hibernate",
            Mode::Ram => "--suspend",
            Mode::Hybrid => "--suspend-hybrid",
        }
    }
    fn pm_binary(self) -> &'static str {
        match self {
            Mode::Disk => "pm-hibernate",
            Mode::Ram => "pm-suspend",
            Mode::Hybrid => "pm-suspend-hybrid",
        }
    }
    fn sys_state(self) -> Option<&'static str> {
        match self {
            Mode::Disk => Some("disk"),
            Mode::Ram => Some("mem"),
            Mode::Hybrid => None,
        }
    }
}

/// `g_find_program_in_path()` as qemu-ga's `run_process_child()` uses it:
/// whether PATH (default "/bin:/usr/bin:.") holds a file named `prog`.
fn in_path(prog: &str) -> bool {
    let path = std::env::var("PATH").unwrap_or_else(|_| "/bin:/usr/bin:.".to_string());
    let is_file = |p: &CStr| match std::fs::metadata(OsStr::from_bytes(p.to_bytes())) {
        Ok(m) if m.is_file() && !m.file_type().is_block_device() => Ok(()),
        _ => Err(Errno(libc::ENOENT)),
    };
    find_program(prog.as_bytes(), path.as_bytes(), is_file).is_ok()
}

/// `run_process_child()`: runs `argv` (PATH search, output discarded) and
/// hands `then` its exit status, or -1 when the program does not exist.
fn run_child(
    ctx: &mut Ctx<'_>,
    argv: &[&str],
    then: impl FnOnce(&mut Ctx<'_>, Result<i32, QgaError>) -> R + 'static,
) -> R {
    if !argv.first().is_some_and(|p| in_path(p)) {
        return then(ctx, Ok(-1));
    }
    let pid = match ctx.start_helper(argv, None) {
        Ok(p) => p,
        Err(e) => {
            let e = QgaError::generic(format!("failed to create child process, error '{}'", e.desc));
            return then(ctx, Err(e));
        }
    };
    // WEXITSTATUS of a signalled child reads as 0 in C; kept as is.
    Ok(Outcome::Await(Pending::new(pid, move |ctx, r| then(ctx, Ok(r.status.exit_code().unwrap_or(0))))))
}

/// `guest_suspend()`: systemd, then pm-utils, then /sys/power/state, each
/// step tried when the previous one is unsupported or failed.
fn suspend(ctx: &mut Ctx<'_>, a: Args, mode: Mode) -> R {
    a.finish()?;
    let unit = mode.systemd_unit();
    run_child(ctx, &["systemctl", "status", unit], move |ctx, st| {
        // LSB status codes 1..3: the unit exists.
        if !matches!(st, Ok(1..=3)) {
            return pm_utils(ctx, mode, false);
        }
        run_child(ctx, &["systemctl", mode.systemctl_verb()], move |ctx, st| match st {
            Ok(0) => Ok(Outcome::Silent),
            _ => pm_utils(ctx, mode, true),
        })
    })
}

fn pm_utils(ctx: &mut Ctx<'_>, mode: Mode, supported: bool) -> R {
    run_child(ctx, &["pm-is-supported", mode.pm_flag()], move |ctx, st| {
        if !matches!(st, Ok(0)) {
            return sys_state(mode, supported);
        }
        run_child(ctx, &[mode.pm_binary()], move |_, st| match st {
            Ok(0) => Ok(Outcome::Silent),
            _ => sys_state(mode, true),
        })
    })
}

const SYS_STATE: &str = "/sys/power/state";

fn sys_state(mode: Mode, supported: bool) -> R {
    let Some(word) = mode.sys_state() else {
        return Err(QgaError::generic(if supported {
            "unknown guest suspend mode"
        } else {
            "the requested suspend mode is not supported by the guest"
        }));
    };
    let mut buf = [0u8; 31];
    let avail = std::fs::File::open(SYS_STATE)
        .and_then(|mut f| std::io::Read::read(&mut f, &mut buf))
        .is_ok_and(|n| n > 0 && String::from_utf8_lossy(&buf[..n]).contains(word));
    if !avail {
        if supported {
            // A supported mode whose helper failed: qemu-ga reports no error.
            return Ok(Outcome::Silent);
        }
        return Err(QgaError::generic("the requested suspend mode is not supported by the guest"));
    }
    // Suspends right here; returns after resume.
    match std::fs::OpenOptions::new()
        .write(true)
        .open(SYS_STATE)
        .and_then(|mut f| std::io::Write::write(&mut f, word.as_bytes()))
    {
        Ok(_) => Ok(Outcome::Silent),
        Err(e) => Err(QgaError::generic(format!("suspend: cannot write to '{SYS_STATE}': {}", Errno::of(&e)))),
    }
}

pub fn suspend_disk(ctx: &mut Ctx<'_>, a: Args) -> R {
    suspend(ctx, a, Mode::Disk)
}

pub fn suspend_ram(ctx: &mut Ctx<'_>, a: Args) -> R {
    suspend(ctx, a, Mode::Ram)
}

pub fn suspend_hybrid(ctx: &mut Ctx<'_>, a: Args) -> R {
    suspend(ctx, a, Mode::Hybrid)
}
