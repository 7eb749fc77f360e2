//! The agent's one PATH search: guest-exec's children (GLib's
//! `g_spawn_async_with_pipes()` search in gspawn.c's `g_execute()`), the
//! helper programs (`execvp()` in qemu-ga's `ga_run_command()`) and the
//! power commands (`g_find_program_in_path()` in qemu-ga's
//! `run_process_child()`). The search list (which PATH, which default) is
//! the caller's; the order of the candidates and the errno chosen when
//! none is usable are the same for all.

use std::ffi::{CStr, CString};

use crate::Errno;

/// GLib's search list when PATH is unset (gspawn.c's `g_execute()` and
/// `g_find_program_in_path()`): the current directory last.
pub const DEFAULT_PATH: &[u8] = b"/bin:/usr/bin:.";

/// The search list for a child: PATH from the child's own environment
/// when it has one (gspawn.c: `g_environ_getenv (envp, "PATH")`), else
/// the agent's PATH, else [`DEFAULT_PATH`].
pub(super) fn child_search_list(env: Option<&[CString]>) -> Vec<u8> {
    let from_env = env.and_then(|e| e.iter().find_map(|kv| kv.to_bytes().strip_prefix(b"PATH=").map(<[u8]>::to_vec)));
    from_env
        .or_else(|| std::env::var_os("PATH").map(|p| p.into_encoded_bytes()))
        .unwrap_or_else(|| DEFAULT_PATH.to_vec())
}

/// The candidates for `prog`, in `execvp()`'s order: `prog` itself when it
/// has a slash, else `dir/prog` for each directory of `search` (an empty
/// entry is the current directory, trailing slashes are dropped). Entries
/// that would hold a NUL are skipped.
pub(super) fn candidates(prog: &[u8], search: &[u8]) -> Vec<CString> {
    if prog.contains(&b'/') {
        return CString::new(prog).into_iter().collect();
    }
    search
        .split(|&b| b == b':')
        .filter_map(|dir| {
            let dir: &[u8] = if dir.is_empty() { b"." } else { dir };
            let mut full = Vec::with_capacity(dir.len() + 1 + prog.len());
            full.extend_from_slice(dir);
            while full.ends_with(b"/") {
                full.pop();
            }
            full.push(b'/');
            full.extend_from_slice(prog);
            CString::new(full).ok()
        })
        .collect()
}

/// The first candidate of `prog` in `search` that `usable` accepts, or the
/// errno `execvp()` would fail with: for a name with a slash, that of the
/// name itself; otherwise EACCES when some candidate was refused with
/// EACCES, else ENOENT (glibc's `__execvpe_common()`).
pub fn find_program(
    prog: &[u8],
    search: &[u8],
    mut usable: impl FnMut(&CStr) -> Result<(), Errno>,
) -> Result<CString, Errno> {
    let slash = prog.contains(&b'/');
    let mut err = Errno(libc::ENOENT);
    for cand in candidates(prog, search) {
        match usable(&cand) {
            Ok(()) => return Ok(cand),
            Err(e) if slash => return Err(e),
            Err(Errno(libc::EACCES)) => err = Errno(libc::EACCES),
            Err(_) => {}
        }
    }
    Err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: Vec<CString>) -> Vec<String> {
        v.into_iter().map(|c| c.into_string().unwrap()).collect()
    }

    #[test]
    fn candidates_follow_glib() {
        assert_eq!(strings(candidates(b"/bin/true", b"/x")), ["/bin/true"]);
        assert_eq!(strings(candidates(b"./x", b"/x")), ["./x"]);
        assert_eq!(strings(candidates(b"ls", b"/a::/b/:/")), ["/a/ls", "./ls", "/b/ls", "/ls"]);
    }

    #[test]
    fn child_search_list_prefers_the_childs_path() {
        let env = vec![CString::new("HOME=/").unwrap(), CString::new("PATH=/a:/b").unwrap()];
        assert_eq!(child_search_list(Some(&env)), b"/a:/b");
    }

    #[test]
    fn find_program_picks_execvps_errno() {
        let refuse = |e: i32| move |_: &CStr| Err(Errno(e));
        assert_eq!(find_program(b"x", b"/a:/b", refuse(libc::ENOTDIR)), Err(Errno(libc::ENOENT)));
        let mut n = 0;
        let first_eacces = |_: &CStr| {
            n += 1;
            Err(Errno(if n == 1 { libc::EACCES } else { libc::ENOENT }))
        };
        assert_eq!(find_program(b"x", b"/a:/b", first_eacces), Err(Errno(libc::EACCES)));
        assert_eq!(find_program(b"/a/x", b"/b", refuse(libc::ENOTDIR)), Err(Errno(libc::ENOTDIR)));
        let only_b = |c: &CStr| if c.to_bytes() == b"/b/x" { Ok(()) } else { Err(Errno(libc::ENOENT)) };
        assert_eq!(find_program(b"x", b"/a:/b/", only_b).unwrap().as_bytes(), b"/b/x");
    }
}
