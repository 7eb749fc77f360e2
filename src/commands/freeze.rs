//! guest-fsfreeze-status/-freeze/-freeze-list/-thaw (`qga/commands-posix.c`,
//! `qga/commands-linux.c`, `qga/main.c`).
//!
//! Freezing runs the `-F` hook with `freeze` first (an error stops
//! everything), then enters the frozen state (only the commands of
//! [`crate::agent::FROZEN_ALLOWED`] run, logging is off, the marker
//! `<statedir>/qga.state.isfrozen` exists) and issues FIFREEZE on the
//! local file systems in reverse mount order. Thawing issues FITHAW on
//! every local file system until it fails, leaves the frozen state and
//! runs the hook with `thaw`.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::files::c_string;
use super::host::{fs_mount_list, FsMount};
use super::{helper, Outcome};
use crate::agent::Agent;
use crate::json::Value;
use crate::log;
use crate::protocol::{Args, QgaError};

type R = Result<Outcome, QgaError>;

/// FIFREEZE = _IOWR('X', 119, int), FITHAW = _IOWR('X', 120, int).
/// `libc::Ioctl`: ioctl's request is c_ulong on glibc, c_int on musl.
const FIFREEZE: libc::Ioctl = 0xC004_5877_u32 as libc::Ioctl;
const FITHAW: libc::Ioctl = 0xC004_5878_u32 as libc::Ioctl;

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

/// `<statedir>/qga.state.isfrozen`.
pub fn marker_path(statedir: &str) -> String {
    format!("{statedir}/qga.state.isfrozen")
}

fn statedir(agent: &Agent) -> String {
    agent.cfg.statedir.clone().unwrap_or_else(|| crate::config::DEFAULT_STATEDIR.to_string())
}

/// `ga_set_frozen()`.
fn set_frozen(agent: &mut Agent) {
    if agent.frozen {
        return;
    }
    log::warning("disabling logging due to filesystem freeze");
    log::set_enabled(false);
    agent.frozen = true;
    let path = marker_path(&statedir(agent));
    let c = c_string(&path);
    // SAFETY: create (or open) the marker file and close it again.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC, 0o600) };
    if fd < 0 {
        log::warning(&format!("unable to create {path}, fsfreeze may not function properly"));
    } else {
        // SAFETY: fd was just opened.
        unsafe { libc::close(fd) };
    }
}

/// `ga_unset_frozen()`.
fn unset_frozen(agent: &mut Agent) {
    if !agent.frozen {
        return;
    }
    log::set_enabled(true);
    log::warning("logging re-enabled due to filesystem unfreeze");
    agent.frozen = false;
    let path = marker_path(&statedir(agent));
    if let Err(e) = std::fs::remove_file(&path) {
        log::warning(&format!("unable to delete file: {path}: {e}"));
        log::warning(&format!("unable to delete {path}, fsfreeze may not function properly"));
    }
}

fn open_dir(path: &str) -> Result<OwnedFd, i32> {
    let c = c_string(path);
    // SAFETY: open read-only; owned right away.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        Err(errno())
    } else {
        // SAFETY: fd was just opened.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

/// `qmp_guest_fsfreeze_do_freeze_list()`: the number of file systems
/// frozen, in reverse mount order, optionally only the listed ones.
fn do_freeze(mounts: &[FsMount], only: Option<&[String]>) -> Result<i64, QgaError> {
    let mut n = 0;
    for m in mounts.iter().rev() {
        if only.is_some_and(|list| !list.contains(&m.dirname)) {
            continue;
        }
        let fd = open_dir(&m.dirname).map_err(|e| QgaError::with_errno(format!("failed to open {}", m.dirname), e))?;
        // SAFETY: FIFREEZE on a directory of the file system.
        if unsafe { libc::ioctl(fd.as_raw_fd(), FIFREEZE, 0) } == -1 {
            let e = errno();
            // Not freezable, or already frozen through another mount.
            if e != libc::EOPNOTSUPP && e != libc::EBUSY {
                return Err(QgaError::with_errno(format!("failed to freeze {}", m.dirname), e));
            }
        } else {
            n += 1;
        }
    }
    Ok(n)
}

/// `qmp_guest_fsfreeze_do_thaw()`: FITHAW until it fails, counting the
/// file systems where it succeeded at least once.
fn do_thaw() -> Result<i64, QgaError> {
    let mounts = fs_mount_list()?;
    let mut n = 0;
    for m in &mounts {
        let Ok(fd) = open_dir(&m.dirname) else { continue };
        let mut thawed = false;
        // SAFETY: FITHAW on a directory of the file system.
        while unsafe { libc::ioctl(fd.as_raw_fd(), FITHAW, 0) } == 0 {
            thawed = true;
        }
        n += thawed as i64;
    }
    Ok(n)
}

/// Runs the `-F` hook with `arg`, then `then` with its error (if any);
/// without a hook `then` runs at once.
fn with_hook(agent: &mut Agent, arg: &'static str, then: helper::ThenAny) -> R {
    let Some(hook) = agent.cfg.fsfreeze_hook.clone() else {
        return then(agent, None);
    };
    log::info(&format!("executing fsfreeze hook with arg '{arg}'"));
    helper::run_any(agent, &[hook.as_str(), arg], None, "execute fsfreeze hook", then)
}

pub fn status(agent: &mut Agent, a: Args) -> R {
    a.finish()?;
    Ok(Outcome::Return(Value::str(if agent.frozen { "frozen" } else { "thawed" })))
}

pub fn freeze(agent: &mut Agent, a: Args) -> R {
    a.finish()?;
    freeze_list_impl(agent, None)
}

pub fn freeze_list(agent: &mut Agent, mut a: Args) -> R {
    let mountpoints = a.opt_str_list("mountpoints")?;
    a.finish()?;
    freeze_list_impl(agent, mountpoints)
}

fn freeze_list_impl(agent: &mut Agent, mountpoints: Option<Vec<String>>) -> R {
    log::info("guest-fsfreeze called");
    with_hook(
        agent,
        "freeze",
        Box::new(move |agent: &mut Agent, err: Option<QgaError>| {
            if let Some(e) = err {
                return Err(e);
            }
            let mounts = fs_mount_list()?;
            // The agent must not block itself writing to a frozen fs.
            set_frozen(agent);
            match do_freeze(&mounts, mountpoints.as_deref()) {
                Ok(0) => {
                    // Nothing frozen: ready for the next call.
                    unset_frozen(agent);
                    Ok(Outcome::Return(Value::Int(0)))
                }
                Ok(n) => Ok(Outcome::Return(Value::Int(n))),
                Err(e) => {
                    // Back to thawed (hook errors are ignored here), then
                    // report the freeze failure.
                    thaw_impl(agent, Box::new(move |_, _| Err(e)))
                }
            }
        }),
    )
}

/// Continuation of a thaw: receives the count or the error.
type ThawThen = Box<dyn FnOnce(&mut Agent, Result<i64, QgaError>) -> R>;

/// `qmp_guest_fsfreeze_thaw()`; `then` receives the count or the error.
fn thaw_impl(agent: &mut Agent, then: ThawThen) -> R {
    let n = match do_thaw() {
        Ok(n) => n,
        Err(e) => return then(agent, Err(e)),
    };
    unset_frozen(agent);
    with_hook(
        agent,
        "thaw",
        Box::new(move |agent: &mut Agent, err: Option<QgaError>| match err {
            Some(e) => then(agent, Err(e)),
            None => then(agent, Ok(n)),
        }),
    )
}

pub fn thaw(agent: &mut Agent, a: Args) -> R {
    a.finish()?;
    log::info("guest-fsthaw called");
    thaw_impl(agent, Box::new(|_, r| r.map(|n| Outcome::Return(Value::Int(n)))))
}
