//! The user database: passwd lookups and supplementary groups.

use std::ffi::{CStr, CString};

use super::Errno;

/// The passwd fields qga uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passwd {
    pub uid: u32,
    pub gid: u32,
    pub name: String,
    pub home: String,
}

enum Key<'a> {
    Name(&'a CStr),
    Uid(u32),
}

/// `getpwnam_r`/`getpwuid_r` with a 16 KiB buffer: Ok(None) when there is
/// no such entry, Err with the function's error number otherwise.
fn getpw(key: Key<'_>) -> Result<Option<Passwd>, Errno> {
    // SAFETY: an all-zero `struct passwd` is a valid value.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16384];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    let rc = match key {
        // SAFETY: getpwuid_r with valid out-pointers and a buffer of its stated size.
        Key::Uid(uid) => unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut result) },
        // SAFETY: as above, with a NUL-terminated name.
        Key::Name(n) => unsafe { libc::getpwnam_r(n.as_ptr(), &mut pw, buf.as_mut_ptr(), buf.len(), &mut result) },
    };
    if rc != 0 {
        return Err(Errno(rc));
    }
    if result.is_null() {
        return Ok(None);
    }
    let text = |p: *const libc::c_char| {
        if p.is_null() {
            String::new()
        } else {
            // SAFETY: getpw*_r stored NUL-terminated strings in buf, still alive here.
            unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
        }
    };
    Ok(Some(Passwd { uid: pw.pw_uid, gid: pw.pw_gid, name: text(pw.pw_name), home: text(pw.pw_dir) }))
}

/// The entry for a user name, or for a uid given in decimal. A name with
/// an embedded NUL has no entry.
pub fn lookup(name_or_uid: &str) -> Result<Option<Passwd>, Errno> {
    match name_or_uid.parse::<u32>() {
        Ok(uid) => getpw(Key::Uid(uid)),
        Err(_) => match CString::new(name_or_uid) {
            Ok(c) => getpw(Key::Name(&c)),
            Err(_) => Ok(None),
        },
    }
}

/// The entry for a user name only (`getpwnam_r`; digits are a name too).
pub fn lookup_name(name: &CStr) -> Result<Option<Passwd>, Errno> {
    getpw(Key::Name(name))
}

/// `getgrouplist(3)`: the groups of `name` including `gid`; just `gid`
/// when the list cannot be read.
pub fn supplementary_groups(name: &str, gid: u32) -> Vec<u32> {
    let Ok(cname) = CString::new(name) else { return vec![gid] };
    let mut n: libc::c_int = 64;
    loop {
        let mut groups = vec![0 as libc::gid_t; n.unsigned_abs() as usize];
        let mut count = n;
        // SAFETY: getgrouplist writes at most `count` entries into `groups`.
        let rc = unsafe { libc::getgrouplist(cname.as_ptr(), gid, groups.as_mut_ptr(), &mut count) };
        if rc >= 0 {
            groups.truncate(count.max(0).unsigned_abs() as usize);
            return groups;
        }
        if count <= n || n > 65536 {
            return vec![gid];
        }
        n = count;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_by_name_and_uid() {
        let by_name = lookup("root").unwrap().unwrap();
        assert_eq!((by_name.uid, by_name.gid), (0, 0));
        assert_eq!(lookup("0").unwrap().unwrap().name, "root");
        assert_eq!(lookup_name(c"0").unwrap(), None);
        assert_eq!(lookup("no\0such").unwrap(), None);
        assert!(supplementary_groups("root", 0).contains(&0));
    }
}
