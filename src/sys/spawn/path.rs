//! The PATH search of spawned children (GLib's
//! `g_spawn_async_with_pipes()` search in gspawn.c's `g_execute()`): the
//! search list and the candidates in order.

use std::ffi::CString;

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
}
