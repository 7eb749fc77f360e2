//! The fast path: posix_spawn (clone with a shared address space, no
//! page-table copy) for every child that keeps the agent's credentials
//! and has no terminal. The attributes and file actions are owned values
//! whose every call is checked: a failure before the spawn is the spawn's
//! error, and nothing starts.

use std::ffi::{CStr, CString};
use std::mem::MaybeUninit;
use std::os::fd::RawFd;

use super::{SpawnError, Stage};
use crate::Errno;

/// posix_spawn* functions return the error number itself (0: success).
fn check(rc: libc::c_int) -> Result<(), Errno> {
    if rc == 0 {
        Ok(())
    } else {
        Err(Errno(rc))
    }
}

/// An object made by a posix_spawn `*_init` function.
fn init<T>(init: unsafe extern "C" fn(*mut T) -> libc::c_int) -> Result<T, Errno> {
    let mut raw = MaybeUninit::<T>::uninit();
    // SAFETY: the *_init functions write the whole object they are given.
    check(unsafe { init(raw.as_mut_ptr()) })?;
    // SAFETY: init succeeded, so the object is initialised.
    Ok(unsafe { raw.assume_init() })
}

/// A `posix_spawnattr_t`, destroyed on drop. Neither glibc nor musl keeps
/// a pointer into the object, so it may move after init.
pub(super) struct SpawnAttr(libc::posix_spawnattr_t);

impl SpawnAttr {
    pub(super) fn new() -> Result<Self, Errno> {
        init(libc::posix_spawnattr_init).map(SpawnAttr)
    }

    /// Signals set back to SIG_DFL in the child (POSIX_SPAWN_SETSIGDEF).
    pub(super) fn set_sigdefault(&mut self, set: &libc::sigset_t) -> Result<(), Errno> {
        // SAFETY: an initialised attribute object and a live sigset (copied).
        check(unsafe { libc::posix_spawnattr_setsigdefault(&mut self.0, set) })
    }

    /// The child's signal mask (POSIX_SPAWN_SETSIGMASK).
    pub(super) fn set_sigmask(&mut self, set: &libc::sigset_t) -> Result<(), Errno> {
        // SAFETY: an initialised attribute object and a live sigset (copied).
        check(unsafe { libc::posix_spawnattr_setsigmask(&mut self.0, set) })
    }

    /// The child's process group (POSIX_SPAWN_SETPGROUP; 0: its own).
    pub(super) fn set_pgroup(&mut self, pgroup: libc::pid_t) -> Result<(), Errno> {
        // SAFETY: an initialised attribute object.
        check(unsafe { libc::posix_spawnattr_setpgroup(&mut self.0, pgroup) })
    }

    pub(super) fn set_flags(&mut self, flags: libc::c_int) -> Result<(), Errno> {
        let flags = libc::c_short::try_from(flags).map_err(|_| Errno(libc::EINVAL))?;
        // SAFETY: an initialised attribute object.
        check(unsafe { libc::posix_spawnattr_setflags(&mut self.0, flags) })
    }
}

impl Drop for SpawnAttr {
    fn drop(&mut self) {
        // SAFETY: initialised in new() and destroyed only here.
        unsafe { libc::posix_spawnattr_destroy(&mut self.0) };
    }
}

/// A `posix_spawn_file_actions_t`, destroyed on drop (which frees the
/// action list glibc and musl allocate; neither points into the object).
pub(super) struct FileActions(libc::posix_spawn_file_actions_t);

impl FileActions {
    pub(super) fn new() -> Result<Self, Errno> {
        init(libc::posix_spawn_file_actions_init).map(FileActions)
    }

    /// chdir(dir) in the child (the library keeps its own copy of `dir`).
    pub(super) fn add_chdir(&mut self, dir: &CStr) -> Result<(), Errno> {
        // SAFETY: initialised actions and a NUL-terminated path (strdup'ed by the callee).
        check(unsafe { libc::posix_spawn_file_actions_addchdir_np(&mut self.0, dir.as_ptr()) })
    }

    /// dup2(fd, target) in the child; EBADF for a negative or too large fd.
    pub(super) fn add_dup2(&mut self, fd: RawFd, target: RawFd) -> Result<(), Errno> {
        // SAFETY: initialised actions; the fds are only numbers until the child runs.
        check(unsafe { libc::posix_spawn_file_actions_adddup2(&mut self.0, fd, target) })
    }

    /// Closes every fd from `low` up in the child (glibc 2.34+).
    #[cfg(target_env = "gnu")]
    pub(super) fn add_closefrom(&mut self, low: RawFd) -> Result<(), Errno> {
        // SAFETY: initialised actions.
        check(unsafe { libc::posix_spawn_file_actions_addclosefrom_np(&mut self.0, low) })
    }
}

impl Drop for FileActions {
    fn drop(&mut self) {
        // SAFETY: initialised in new() and destroyed only here.
        unsafe { libc::posix_spawn_file_actions_destroy(&mut self.0) };
    }
}

/// The attributes of every posix_spawn child, as gspawn.c's
/// `do_posix_spawn()` sets them plus a group of its own: every signal back
/// to SIG_DFL, none blocked, own process group.
fn child_attributes() -> Result<SpawnAttr, Errno> {
    let mut attr = SpawnAttr::new()?;
    // Every bit set, 32 and 33 included: libc's sigfillset leaves out the
    // signals it reserves, and glibc's posix_spawn then sets those to
    // SIG_IGN in the child.
    let mut all = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: fills the whole sigset with ones, which initialises it.
    unsafe { std::ptr::write_bytes(all.as_mut_ptr(), 0xff, 1) };
    // SAFETY: every byte was written just above.
    let all = unsafe { all.assume_init() };
    let mut none = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set it is given.
    crate::cvt(unsafe { libc::sigemptyset(none.as_mut_ptr()) })?;
    // SAFETY: sigemptyset succeeded, so the set is initialised.
    let none = unsafe { none.assume_init() };
    attr.set_sigdefault(&all)?;
    attr.set_sigmask(&none)?;
    attr.set_pgroup(0)?;
    attr.set_flags(libc::POSIX_SPAWN_SETPGROUP | libc::POSIX_SPAWN_SETSIGDEF | libc::POSIX_SPAWN_SETSIGMASK)?;
    Ok(attr)
}

/// The child's fds 0-2 (`fds[2] < 0`: stderr joins stdout) and directory;
/// with glibc everything else is closed, elsewhere every agent fd is
/// close-on-exec already (start-up marks inherited ones).
fn child_file_actions(fds: [RawFd; 3], cwd: Option<&CString>) -> Result<FileActions, SpawnError> {
    let fork = |e| SpawnError::new(Stage::Fork, e);
    let redirect = |e| SpawnError::new(Stage::Redirect, e);
    let mut acts = FileActions::new().map_err(fork)?;
    if let Some(dir) = cwd {
        acts.add_chdir(dir).map_err(|e| SpawnError::new(Stage::Chdir, e))?;
    }
    acts.add_dup2(fds[0], 0).map_err(redirect)?;
    acts.add_dup2(fds[1], 1).map_err(redirect)?;
    acts.add_dup2(if fds[2] < 0 { 1 } else { fds[2] }, 2).map_err(redirect)?;
    #[cfg(target_env = "gnu")]
    acts.add_closefrom(3).map_err(redirect)?;
    Ok(acts)
}

/// One posix_spawn; the pid, or the error number it returned.
fn spawn_one(
    acts: &FileActions,
    attr: &SpawnAttr,
    path: &CStr,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
) -> Result<libc::pid_t, i32> {
    let mut pid = 0;
    // SAFETY: initialised actions and attributes; path, argv and envp are
    // NUL-terminated strings in NULL-terminated arrays that outlive the call.
    let rc = unsafe { libc::posix_spawn(&mut pid, path.as_ptr(), &acts.0, &attr.0, argv.cast(), envp.cast()) };
    if rc == 0 {
        Ok(pid)
    } else {
        Err(rc)
    }
}

/// Starts the child with posix_spawn over `cands` in gspawn.c's order
/// (`g_execute()`): the first that starts wins; ENOENT-like errors try the
/// next directory; an EACCES on the way is reported in place of a later
/// ENOENT; ENOEXEC runs the file with /bin/sh (`script_execute()`).
/// `sh_argv` is `["/bin/sh", <file>, args.., NULL]` with slot 1 filled here.
/// A failed attribute or file action is reported with its stage
/// (Fork, Chdir or Redirect) before anything starts; a failed spawn as
/// Stage::Exec.
pub(super) fn posix_spawn_child(
    fds: [RawFd; 3],
    cwd: Option<&CString>,
    cands: &[CString],
    argv: &[*const libc::c_char],
    sh_argv: &mut [*const libc::c_char],
    envp: &[*const libc::c_char],
) -> Result<libc::pid_t, SpawnError> {
    let attr = child_attributes().map_err(|e| SpawnError::new(Stage::Fork, e))?;
    let acts = child_file_actions(fds, cwd)?;
    let mut result = Err(libc::ENOENT);
    let mut got_eacces = false;
    let searching = cands.len() > 1;
    for cand in cands {
        // In a PATH search, a candidate that cannot be executed is
        // skipped on a stat, not on a whole failed clone each.
        if searching {
            if let Err(e) = executable(cand) {
                result = Err(e);
                got_eacces |= e == libc::EACCES;
                continue;
            }
        }
        result = match spawn_one(&acts, &attr, cand, argv.as_ptr(), envp.as_ptr()) {
            Err(libc::ENOEXEC) => {
                sh_argv[1] = cand.as_ptr();
                spawn_one(&acts, &attr, c"/bin/sh", sh_argv.as_ptr(), envp.as_ptr())
            }
            other => other,
        };
        match result {
            // Missing or not executable here: try the next directory.
            Err(libc::EACCES) => got_eacces = true,
            Err(libc::ENOENT | libc::ESTALE | libc::ENOTDIR | libc::ENODEV | libc::ETIMEDOUT) => {}
            _ => break,
        }
    }
    if got_eacces && matches!(result, Err(libc::ENOENT | libc::ESTALE | libc::ENOTDIR | libc::ENODEV | libc::ETIMEDOUT))
    {
        result = Err(libc::EACCES);
    }
    result.map_err(|e| SpawnError::new(Stage::Exec, Errno(e)))
}

extern "C" {
    /// The process's environment (POSIX).
    static environ: *const *const libc::c_char;
}

/// A bare posix_spawn of `path` (no PATH search, argv[0] = `path`) with
/// this process's environment and default attributes; `dups` are dup2
/// file actions (our fd, the child's fd). Only what the kernel and libc
/// need: the benches' floor to compare [`super::spawn`] with.
pub fn spawn_plain(path: &CStr, args: &[&CStr], dups: &[(RawFd, RawFd)]) -> Result<libc::pid_t, Errno> {
    let mut acts = FileActions::new()?;
    for &(ours, theirs) in dups {
        acts.add_dup2(ours, theirs)?;
    }
    let mut argv: Vec<*const libc::c_char> =
        std::iter::once(path).chain(args.iter().copied()).map(CStr::as_ptr).collect();
    argv.push(std::ptr::null());
    let mut pid = 0;
    // SAFETY: initialised file actions, no attributes; path and argv are
    // NUL-terminated strings in a NULL-terminated array that outlive the
    // call; environ is libc's own NULL-terminated array, read at the call.
    let rc = unsafe {
        libc::posix_spawn(&mut pid, path.as_ptr(), &acts.0, std::ptr::null(), argv.as_ptr().cast(), environ.cast())
    };
    check(rc)?;
    Ok(pid)
}

/// Whether execve() could start `path`: Ok, or the errno it would fail
/// with (ENOENT and the like when missing, EACCES when not an executable
/// regular file).
fn executable(path: &CStr) -> Result<(), i32> {
    use std::os::unix::ffi::OsStrExt;
    let p = std::path::Path::new(std::ffi::OsStr::from_bytes(path.to_bytes()));
    match std::fs::metadata(p) {
        Err(e) => Err(e.raw_os_error().unwrap_or(libc::ENOENT)),
        Ok(m) if m.is_dir() => Err(libc::EACCES),
        Ok(_) if !crate::fd::can_execute_c(path) => Err(libc::EACCES),
        Ok(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_file_action_is_an_error_value() {
        let mut acts = FileActions::new().unwrap();
        assert_eq!(acts.add_dup2(-1, 0), Err(Errno(libc::EBADF)));
        assert_eq!(acts.add_dup2(0, -1), Err(Errno(libc::EBADF)));
        assert_eq!(acts.add_dup2(0, 0), Ok(()));
    }

    #[test]
    fn a_bad_redirect_starts_nothing() {
        let sh = CString::new("/bin/sh").unwrap();
        let argv = [sh.as_ptr(), std::ptr::null()];
        let mut sh_argv = [sh.as_ptr(), std::ptr::null(), std::ptr::null()];
        let envp = [std::ptr::null()];
        let r = posix_spawn_child([-1, 1, 2], None, std::slice::from_ref(&sh), &argv, &mut sh_argv, &envp);
        assert_eq!(r, Err(SpawnError::new(Stage::Redirect, Errno(libc::EBADF))));
    }

    #[test]
    fn spawn_plain_runs_with_redirects() {
        use std::os::fd::{AsFd, AsRawFd};
        let (r, w) = crate::fd::pipe().unwrap();
        let pid = spawn_plain(c"/bin/echo", &[c"hi"], &[(w.as_raw_fd(), 1)]).unwrap();
        drop(w);
        let mut buf = [0u8; 16];
        assert_eq!(crate::fd::read(r.as_fd(), &mut buf), Ok(3));
        assert_eq!(&buf[..3], b"hi\n");
        assert_eq!(crate::process::wait_for(pid).unwrap().exit_code(), Some(0));
        assert_eq!(spawn_plain(c"/nonexistent", &[], &[]), Err(Errno(libc::ENOENT)));
    }

    #[test]
    fn attributes_set_every_call() {
        assert!(child_attributes().is_ok());
        let mut attr = SpawnAttr::new().unwrap();
        assert_eq!(attr.set_flags(1 << 20), Err(Errno(libc::EINVAL)), "flags outside c_short are refused");
    }
}
