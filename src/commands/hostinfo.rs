//! Identity of the guest: guest-get-host-name, guest-get-osinfo,
//! guest-get-users and guest-get-load (`qga/commands-posix.c`,
//! `qga/commands-linux.c`).

use super::reply::{obj, ok, R};
use super::Ctx;
use crate::json::{Object, Value};
use crate::protocol::{Args, QgaError};
use crate::sys::host;

pub fn get_host_name(_: &mut Ctx<'_>, a: Args) -> R {
    a.finish()?;
    let name = host::hostname().map_err(|e| QgaError::with_errno("cannot get hostname", e))?;
    ok(obj(vec![("host-name", Value::Str(name))]))
}

// ---------------------------------------------------------------- osinfo

/// The `[os-release]` group of an os-release file read as qemu-ga reads
/// it: a GKeyFile with a fake group line prepended. None if the file is
/// unreadable, not UTF-8, or not a valid key file (qemu-ga then tries the
/// next file).
fn parse_os_release(path: &str) -> Option<Vec<(String, String)>> {
    let data = std::fs::read(path).ok()?;
    // A C string: content ends at a NUL.
    let data = &data[..data.iter().position(|&b| b == 0).unwrap_or(data.len())];
    let text = std::str::from_utf8(data).ok()?;
    let mut group = Some("os-release".to_string());
    let mut pairs: Vec<(String, String)> = Vec::new();
    for raw in text.split('\n') {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let line = line.trim_start_matches(|c: char| c.is_ascii_whitespace());
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let close = rest.find(']')?;
            if !rest[close + 1..].chars().all(|c| c == ' ' || c == '\t') {
                return None;
            }
            let name = &rest[..close];
            if name.is_empty() || name.chars().any(|c| c.is_control() || c == '[') {
                return None;
            }
            group = Some(name.to_string());
            continue;
        }
        let eq = line.find('=')?;
        if eq == 0 {
            return None;
        }
        let key = line[..eq].trim_end_matches(|c: char| c.is_ascii_whitespace());
        if !valid_key_name(key) {
            return None;
        }
        let value = line[eq + 1..].trim_start_matches(|c: char| c.is_ascii_whitespace());
        if group.as_deref() == Some("os-release") {
            // A later duplicate replaces the earlier value.
            pairs.retain(|(k, _)| k != key);
            pairs.push((key.to_string(), value.to_string()));
        }
    }
    Some(pairs)
}

/// `g_key_file_is_key_name()`.
fn valid_key_name(key: &str) -> bool {
    let b = key.as_bytes();
    let end = b.iter().position(|&c| c == b'[' || c == b']' || c == b'=').unwrap_or(b.len());
    if end == 0 || b[0] == b' ' || b[end - 1] == b' ' {
        return false;
    }
    if end == b.len() {
        return true;
    }
    if b[end] != b'[' {
        return false;
    }
    let rest = &key[end + 1..];
    let close = rest.find(|c: char| !(c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '@')));
    matches!(close, Some(i) if rest.as_bytes()[i] == b']' && i + 1 == rest.len())
}

/// `ga_osrelease_replace_special()`, in place, bugs included: an unquoted
/// value (single quotes count as unquoted) is cut at the first space and
/// the first `;`; a double-quoted one loses the backslash before `$ ' " \ \``
/// and ends at the closing quote (without one, the shifted tail of the
/// original text stays in place).
pub(crate) fn replace_special(value: &str) -> String {
    let mut v = value.as_bytes().to_vec();
    if v.first() != Some(&b'"') {
        if let Some(i) = v.iter().position(|&b| b == b' ') {
            v.truncate(i);
        }
        if let Some(i) = v.iter().position(|&b| b == b';') {
            v.truncate(i);
        }
        return String::from_utf8_lossy(&v).into_owned();
    }
    let (mut p2, mut p) = (0usize, 1usize);
    while p < v.len() {
        if v[p] == b'\\' {
            p += 1;
            if !matches!(v.get(p), Some(b'$' | b'\'' | b'"' | b'\\' | b'`')) {
                p -= 1;
            }
        } else if v[p] == b'"' {
            v.truncate(p2);
            break;
        }
        v[p2] = v[p];
        p2 += 1;
        p += 1;
    }
    String::from_utf8_lossy(&v).into_owned()
}

pub fn get_osinfo(_: &mut Ctx<'_>, a: Args) -> R {
    a.finish()?;
    let mut o = Object::with_capacity(10);
    if let Ok(u) = host::uname() {
        o.push("kernel-release", Value::Str(u.release));
        o.push("kernel-version", Value::Str(u.version));
        o.push("machine", Value::Str(u.machine));
    }
    let release = match std::env::var_os("QGA_OS_RELEASE") {
        Some(p) => parse_os_release(&p.to_string_lossy()),
        None => parse_os_release("/etc/os-release").or_else(|| parse_os_release("/usr/lib/os-release")),
    };
    if let Some(pairs) = release {
        for (member, key) in [
            ("id", "ID"),
            ("name", "NAME"),
            ("pretty-name", "PRETTY_NAME"),
            ("version", "VERSION"),
            ("version-id", "VERSION_ID"),
            ("variant", "VARIANT"),
            ("variant-id", "VARIANT_ID"),
        ] {
            if let Some((_, v)) = pairs.iter().find(|(k, _)| k == key) {
                o.push(member, Value::Str(replace_special(v)));
            }
        }
    }
    ok(Value::Object(o))
}

// ---------------------------------------------------------------- users

pub fn get_users(_: &mut Ctx<'_>, a: Args) -> R {
    a.finish()?;
    let mut users: Vec<(String, f64)> = Vec::new();
    // ut_user is not NUL-terminated when 32 bytes long; qemu-ga's
    // g_strdup() then reads on into ut_host (a buffer overread, not
    // copied: the name ends at the field's end).
    for e in host::logins() {
        let t = e.sec as f64 + e.usec as f64 / 1_000_000.0;
        match users.iter_mut().find(|(n, _)| *n == e.user) {
            Some(u) => u.1 = u.1.min(t),
            None => users.push((e.user, t)),
        }
    }
    ok(Value::List(
        users.into_iter().map(|(u, t)| obj(vec![("user", Value::Str(u)), ("login-time", Value::Float(t))])).collect(),
    ))
}

pub fn get_load(_: &mut Ctx<'_>, a: Args) -> R {
    a.finish()?;
    let l = host::loadavg().map_err(|e| QgaError::with_errno("cannot query load average", e))?;
    ok(obj(vec![("load1m", Value::Float(l[0])), ("load5m", Value::Float(l[1])), ("load15m", Value::Float(l[2]))]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_unquoting() {
        assert_eq!(replace_special(r#""Unit test \"\'\$\`\\ and \\\\ etc.""#), r#"Unit test "'$`\ and \\ etc."#);
        assert_eq!(replace_special("Test 1"), "Test");
        assert_eq!(replace_special("a;b c"), "a");
        assert_eq!(replace_special("'x y'"), "'x");
        assert_eq!(replace_special(r#""a\nb""#), r#"a\nb"#);
        assert_eq!(replace_special(r#""abc"#), "abcc");
        assert_eq!(replace_special(""), "");
        assert!(valid_key_name("NAME"));
        assert!(valid_key_name("NAME[de_DE]"));
        assert!(!valid_key_name(" NAME"));
        assert!(!valid_key_name("NA]ME"));
    }
}
