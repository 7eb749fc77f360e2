//! guest-fsfreeze-status/-freeze/-freeze-list/-thaw (`qga/commands-posix.c`,
//! `qga/commands-linux.c`, `qga/main.c`).
//!
//! Freezing runs the `-F` hook with `freeze` first (an error stops
//! everything), then enters the frozen state (only the commands of
//! `frozen_ok` in the command table run, logging is off, the marker
//! `<statedir>/qga.state.isfrozen` exists) and issues FIFREEZE on the
//! local file systems in reverse mount order. Thawing issues FITHAW on
//! every local file system until it fails, leaves the frozen state and
//! runs the hook with `thaw`.

use std::os::fd::{AsFd, OwnedFd};

use super::mounts::{fs_mount_list, FsMount};
use super::reply::R;
use super::{helper, Ctx, Outcome};
use crate::json::Value;
use crate::log;
use crate::protocol::{Args, QgaError};
use crate::sys::libc;
use crate::sys::{fd, fs, Errno};

/// `<statedir>/qga.state.isfrozen`: present while file systems are frozen
/// (the one place that names it; start-up checks it too).
pub fn marker_path(statedir: &str) -> String {
    format!("{statedir}/qga.state.isfrozen")
}

fn statedir(ctx: &Ctx<'_>) -> String {
    ctx.cfg.statedir.clone().unwrap_or_else(|| crate::config::DEFAULT_STATEDIR.to_string())
}

/// `ga_set_frozen()`.
fn set_frozen(ctx: &mut Ctx<'_>) {
    if ctx.guest.frozen {
        return;
    }
    log::warning("disabling logging due to filesystem freeze");
    log::set_enabled(false);
    ctx.guest.frozen = true;
    let path = marker_path(&statedir(ctx));
    if fd::open_path(&path, libc::O_CREAT | libc::O_WRONLY, 0o600).is_err() {
        log::warning(&format!("unable to create {path}, fsfreeze may not function properly"));
    }
}

/// `ga_unset_frozen()`.
fn unset_frozen(ctx: &mut Ctx<'_>) {
    if !ctx.guest.frozen {
        return;
    }
    log::set_enabled(true);
    log::warning("logging re-enabled due to filesystem unfreeze");
    ctx.guest.frozen = false;
    let path = marker_path(&statedir(ctx));
    if let Err(e) = std::fs::remove_file(&path) {
        log::warning(&format!("unable to delete file: {path}: {e}"));
        log::warning(&format!("unable to delete {path}, fsfreeze may not function properly"));
    }
}

fn open_dir(path: &str) -> Result<OwnedFd, Errno> {
    fd::open_path(path, libc::O_RDONLY, 0)
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
        match fs::freeze(fd.as_fd()) {
            Ok(()) => n += 1,
            // Not freezable, or already frozen through another mount.
            Err(Errno(libc::EOPNOTSUPP | libc::EBUSY)) => {}
            Err(e) => return Err(QgaError::with_errno(format!("failed to freeze {}", m.dirname), e)),
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
        while fs::thaw(fd.as_fd()).is_ok() {
            thawed = true;
        }
        n += i64::from(thawed);
    }
    Ok(n)
}

/// Runs the `-F` hook with `arg`, then `then` with its error (if any);
/// without a hook `then` runs at once.
fn with_hook(
    ctx: &mut Ctx<'_>,
    arg: &'static str,
    then: impl FnOnce(&mut Ctx<'_>, Option<QgaError>) -> R + 'static,
) -> R {
    let Some(hook) = ctx.cfg.fsfreeze_hook.clone() else {
        return then(ctx, None);
    };
    log::info(&format!("executing fsfreeze hook with arg '{arg}'"));
    helper::run_any(ctx, &[hook.as_str(), arg], None, "execute fsfreeze hook", then)
}

pub fn status(ctx: &mut Ctx<'_>, a: Args) -> R {
    a.finish()?;
    Ok(Outcome::Return(Value::str(if ctx.guest.frozen { "frozen" } else { "thawed" })))
}

pub fn freeze(ctx: &mut Ctx<'_>, a: Args) -> R {
    a.finish()?;
    freeze_list_impl(ctx, None)
}

pub fn freeze_list(ctx: &mut Ctx<'_>, mut a: Args) -> R {
    let mountpoints = a.opt_str_list("mountpoints")?;
    a.finish()?;
    freeze_list_impl(ctx, mountpoints)
}

fn freeze_list_impl(ctx: &mut Ctx<'_>, mountpoints: Option<Vec<String>>) -> R {
    log::info("guest-fsfreeze called");
    with_hook(ctx, "freeze", move |ctx, err| {
        if let Some(e) = err {
            return Err(e);
        }
        let mounts = fs_mount_list()?;
        // The agent must not block itself writing to a frozen fs.
        set_frozen(ctx);
        match do_freeze(&mounts, mountpoints.as_deref()) {
            Ok(0) => {
                // Nothing frozen: ready for the next call.
                unset_frozen(ctx);
                Ok(Outcome::Return(Value::Int(0)))
            }
            Ok(n) => Ok(Outcome::Return(Value::Int(n))),
            Err(e) => {
                // Back to thawed (hook errors are ignored here), then
                // report the freeze failure.
                thaw_impl(ctx, move |_, _| Err(e))
            }
        }
    })
}

/// `qmp_guest_fsfreeze_thaw()`; `then` receives the count or the error.
fn thaw_impl(ctx: &mut Ctx<'_>, then: impl FnOnce(&mut Ctx<'_>, Result<i64, QgaError>) -> R + 'static) -> R {
    let n = match do_thaw() {
        Ok(n) => n,
        Err(e) => return then(ctx, Err(e)),
    };
    unset_frozen(ctx);
    with_hook(ctx, "thaw", move |ctx, err| match err {
        Some(e) => then(ctx, Err(e)),
        None => then(ctx, Ok(n)),
    })
}

pub fn thaw(ctx: &mut Ctx<'_>, a: Args) -> R {
    a.finish()?;
    log::info("guest-fsthaw called");
    thaw_impl(ctx, |_, r| r.map(|n| Outcome::Return(Value::Int(n))))
}
