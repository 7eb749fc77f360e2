//! guest-ssh-get/add/remove-authorized-keys (`qga/commands-posix-ssh.c`,
//! `qga/commands-common-ssh.c`) and guest-set-user-password
//! (`qga/commands-posix.c`, via `chpasswd`).
//!
//! `~/.ssh` is created mode 0700 and `~/.ssh/authorized_keys` written
//! mode 0600, both owned by the user; the file is replaced atomically and
//! holds the keys joined by newlines (no final newline), as qemu-ga writes it.

use std::os::unix::fs::PermissionsExt;

use super::files::{c_string, write_file_atomic};
use super::reply::R;
use super::Ctx;
use super::{helper, Outcome};
use crate::json::{Object, Value};
use crate::protocol::{qbase64_decode, Args, QgaError};
use crate::sys::user::{self, Passwd};
use crate::sys::{fs, Errno};

/// `g_unix_get_passwd_entry()` with qemu-ga's error text (a missing
/// user is "Success": getpwnam_r sets no error).
fn passwd(user: &str) -> Result<Passwd, QgaError> {
    match user::lookup_name(&c_string(user)) {
        Ok(Some(p)) => Ok(p),
        Ok(None) => Err(QgaError::generic(format!("failed to lookup user '{user}': {}", Errno::NONE))),
        Err(e) => Err(QgaError::generic(format!("failed to lookup user '{user}': {e}"))),
    }
}

/// `g_build_filename()` for two or three parts.
fn build_path(parts: &[&str]) -> String {
    let mut out = String::new();
    for (i, p) in parts.iter().enumerate() {
        let p = if i == 0 { p.trim_end_matches('/') } else { p.trim_matches('/') };
        if i > 0 {
            out.push('/');
        }
        out.push_str(p);
    }
    out
}

/// `check_openssh_pub_key()`.
fn check_keys(keys: &[String]) -> Result<(), QgaError> {
    for k in keys {
        if k.starts_with('#') || k.contains('\n') {
            return Err(QgaError::generic(format!("invalid OpenSSH public key: '{k}'")));
        }
    }
    Ok(())
}

/// GLib's `g_file_get_contents()` error texts.
fn read_authkeys(path: &str) -> Result<Vec<String>, QgaError> {
    let fail = |e: &std::io::Error, what: &str| {
        QgaError::generic(format!("failed to read '{path}': {what} \u{201C}{path}\u{201D}: {}", Errno::of(e)))
    };
    let mut f = std::fs::File::open(path).map_err(|e| fail(&e, "Failed to open file"))?;
    let mut data = Vec::new();
    std::io::Read::read_to_end(&mut f, &mut data).map_err(|e| fail(&e, "Failed to read from file"))?;
    let data = &data[..data.iter().position(|&b| b == 0).unwrap_or(data.len())];
    Ok(String::from_utf8_lossy(data).split('\n').map(str::to_string).collect())
}

fn chown(path: &str, p: &Passwd) -> Result<(), Errno> {
    fs::chown(&c_string(path), p.uid, p.gid)
}

fn err_text(e: &std::io::Error) -> Errno {
    Errno::of(e)
}

/// `mkdir_for_user()`.
fn mkdir_for_user(path: &str, p: &Passwd, mode: u32) -> Result<(), QgaError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(mode)
        .create(path)
        .map_err(|e| QgaError::generic(format!("failed to create directory '{path}': {}", err_text(&e))))?;
    chown(path, p).map_err(|e| QgaError::generic(format!("failed to set ownership of directory '{path}': {e}")))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| QgaError::generic(format!("failed to set permissions of directory '{path}': {}", err_text(&e))))
}

/// `write_authkeys()`.
fn write_authkeys(path: &str, keys: &[String], p: &Passwd) -> Result<(), QgaError> {
    let contents = keys.join("\n");
    write_file_atomic(path, contents.as_bytes()).map_err(|e| {
        QgaError::generic(format!(
            "failed to write to '{path}': Failed to write file \u{201C}{path}\u{201D}: {}",
            err_text(&e)
        ))
    })?;
    chown(path, p).map_err(|e| QgaError::generic(format!("failed to set ownership of directory '{path}': {e}")))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| QgaError::generic(format!("failed to set permissions of '{path}': {}", err_text(&e))))
}

pub fn ssh_get(_: &mut Ctx<'_>, mut a: Args) -> R {
    let username = a.req_str("username")?;
    a.finish()?;
    let p = passwd(&username)?;
    let path = build_path(&[&p.home, ".ssh", "authorized_keys"]);
    let lines = read_authkeys(&path)?;
    let mut keys: Vec<Value> = Vec::new();
    for l in lines {
        let k = l.trim_matches(|c: char| c.is_ascii_whitespace());
        if k.is_empty() || k.starts_with('#') {
            continue;
        }
        // QAPI_LIST_PREPEND: last key first.
        keys.insert(0, Value::str(k));
    }
    Ok(Outcome::Return(Value::Object(Object::new().with("keys", Value::List(keys)))))
}

pub fn ssh_add(_: &mut Ctx<'_>, mut a: Args) -> R {
    let username = a.req_str("username")?;
    let keys = a.req_str_list("keys")?;
    let reset = a.opt_bool("reset")?.unwrap_or(false);
    a.finish()?;
    check_keys(&keys)?;
    let p = passwd(&username)?;
    let ssh_path = build_path(&[&p.home, ".ssh"]);
    let authkeys_path = build_path(&[&ssh_path, "authorized_keys"]);
    let mut authkeys = if reset { None } else { read_authkeys(&authkeys_path).ok() };
    if authkeys.is_none() && !std::path::Path::new(&ssh_path).is_dir() {
        mkdir_for_user(&ssh_path, &p, 0o700)?;
    }
    let list = authkeys.get_or_insert_with(Vec::new);
    for k in keys {
        if !list.contains(&k) {
            list.push(k);
        }
    }
    write_authkeys(&authkeys_path, list, &p)?;
    Ok(Outcome::Return(Value::empty_object()))
}

pub fn ssh_remove(_: &mut Ctx<'_>, mut a: Args) -> R {
    let username = a.req_str("username")?;
    let keys = a.req_str_list("keys")?;
    a.finish()?;
    check_keys(&keys)?;
    let p = passwd(&username)?;
    let path = build_path(&[&p.home, ".ssh", "authorized_keys"]);
    if std::fs::symlink_metadata(&path).is_err() {
        return Ok(Outcome::Return(Value::empty_object()));
    }
    let authkeys = read_authkeys(&path)?;
    let kept: Vec<String> = authkeys.into_iter().filter(|k| !keys.contains(k)).collect();
    write_authkeys(&path, &kept, &p)?;
    Ok(Outcome::Return(Value::empty_object()))
}

pub fn set_user_password(ctx: &mut Ctx<'_>, mut a: Args) -> R {
    let username = a.req_str("username")?;
    let password = a.req_str("password")?;
    let crypted = a.req_bool("crypted")?;
    a.finish()?;
    let raw = qbase64_decode(password)?;
    // The decoded password is used as a C string.
    let raw = &raw[..raw.iter().position(|&b| b == 0).unwrap_or(raw.len())];
    if raw.contains(&b'\n') {
        return Err(QgaError::generic("forbidden characters in raw password"));
    }
    if username.contains('\n') || username.contains(':') {
        return Err(QgaError::generic("forbidden characters in username"));
    }
    let mut input = c_string(&username).into_bytes();
    input.push(b':');
    input.extend_from_slice(raw);
    input.push(b'\n');
    let argv: &[&str] = if crypted { &["chpasswd", "-e"] } else { &["chpasswd"] };
    helper::run(ctx, argv, Some(input), "set user password", |_| Ok(Outcome::Return(Value::empty_object())))
}
