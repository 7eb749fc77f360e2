//! The `[general]` key file (GLib's GKeyFile rules for values and
//! escapes) and the `-D` dump of the effective configuration.

use std::fmt::Write as _;

use super::*;

pub(super) fn escape_value(v: &str) -> String {
    let mut out = String::new();
    for (i, c) in v.chars().enumerate() {
        match c {
            ' ' if i == 0 => out.push_str("\\s"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\\' => out.push_str("\\\\"),
            _ => out.push(c),
        }
    }
    out
}

/// `-D`: the effective configuration as a key file.
pub fn dump(cfg: &Config) -> String {
    let mut s = String::from("[general]\n");
    let mut kv = |k: &str, v: &str| {
        let _ = writeln!(s, "{k}={}", escape_value(v));
    };
    kv("daemon", if cfg.daemonize { "true" } else { "false" });
    kv("method", cfg.method.as_deref().unwrap_or("virtio-serial"));
    if let Some(p) = &cfg.path {
        kv("path", p);
    }
    if let Some(l) = &cfg.logfile {
        kv("logfile", l);
    }
    kv("pidfile", cfg.pidfile.as_deref().unwrap_or(DEFAULT_PIDFILE));
    if let Some(h) = &cfg.fsfreeze_hook {
        kv("fsfreeze-hook", h);
    }
    kv("statedir", cfg.statedir.as_deref().unwrap_or(DEFAULT_STATEDIR));
    kv("verbose", if cfg.verbose { "true" } else { "false" });
    kv("retry-path", if cfg.retry_path { "true" } else { "false" });
    kv("block-rpcs", &cfg.block_rpcs.join(","));
    kv("allow-rpcs", &cfg.allow_rpcs.join(","));
    // qga's own keys, only when set (qemu-ga's dump stays as it is).
    if cfg.init {
        kv("init", "true");
    }
    if let Some(d) = &cfg.modules_dir {
        kv("modules-dir", d);
    }
    if let Some(p) = &cfg.exec_policy {
        kv("exec-policy", p);
    }
    if let Some(n) = cfg.max_output {
        kv("max-output", &n.to_string());
    }
    if let Some(n) = cfg.max_clients {
        kv("max-clients", &n.to_string());
    }
    if let Some(d) = &cfg.audit_log {
        kv("audit-log", d);
    }
    if let Some(n) = cfg.audit_log_size {
        kv("audit-log-size", &n.to_string());
    }
    if let Some(n) = cfg.audit_log_keep {
        kv("audit-log-keep", &n.to_string());
    }
    if cfg.audit_argv {
        kv("audit-argv", "true");
    }
    if let Some(l) = &cfg.allow_vsock_cids {
        kv("allow-vsock-cids", &l.iter().map(u32::to_string).collect::<Vec<_>>().join(","));
    }
    if let Some(l) = &cfg.allow_unix_uids {
        kv("allow-unix-uids", &l.join(","));
    }
    s
}

pub(super) fn unescape_value(v: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut it = v.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('s') => out.push(' '),
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            Some(other) => return Err(format!("Key file contains invalid escape sequence \u{201C}\\{other}\u{201D}")),
            None => return Err("Key file contains escape character at end of line".into()),
        }
    }
    Ok(out)
}

pub(super) fn parse_bool(key: &str, v: &str) -> Result<bool, String> {
    match v.trim_end() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(format!("Key file contains key \u{201C}{key}\u{201D} which has a value that cannot be interpreted.")),
    }
}

/// Reads `[general]` keys from a GKeyFile-format file into `cfg`.
pub(super) fn load_file(
    cfg: &mut Config,
    path: &str,
    required: bool,
    read: &mut dyn FnMut(&str) -> std::io::Result<Vec<u8>>,
) -> Result<(), String> {
    let text = match read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(()),
        Err(e) => {
            return Err(crate::sys::Errno::of(&e).to_string());
        }
    };
    let text = String::from_utf8(text).map_err(|_| "Key file contains line which is not UTF-8".to_string())?;
    load_text(cfg, &text)
}

pub fn load_text(cfg: &mut Config, text: &str) -> Result<(), String> {
    let mut group: Option<String> = None;
    for raw in text.lines() {
        let line = raw.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('[') {
            match line.trim_end().strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                Some(g) => group = Some(g.to_string()),
                None => {
                    return Err(format!(
                        "Key file contains line \u{201C}{raw}\u{201D} which is not a key-value pair, group, or comment"
                    ))
                }
            }
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(format!(
                "Key file contains line \u{201C}{raw}\u{201D} which is not a key-value pair, group, or comment"
            ));
        };
        let Some(g) = &group else {
            return Err("Key file does not start with a group".into());
        };
        if g != "general" {
            continue;
        }
        let key = k.trim_end();
        let value = unescape_value(v.trim_start())?;
        match key {
            "daemon" => cfg.daemonize = parse_bool(key, &value)?,
            "method" => cfg.method = Some(value),
            "path" => cfg.path = Some(value),
            "logfile" => cfg.logfile = Some(value),
            "pidfile" => cfg.pidfile = Some(value),
            "fsfreeze-hook" => cfg.fsfreeze_hook = Some(value),
            "statedir" => cfg.statedir = Some(value),
            "verbose" => cfg.verbose = parse_bool(key, &value)?,
            "retry-path" => cfg.retry_path = parse_bool(key, &value)?,
            "block-rpcs" => cfg.block_rpcs.extend(split_list(&value)),
            "allow-rpcs" => {
                cfg.allow_rpcs.extend(split_list(&value));
                cfg.has_allow_list = true;
            }
            "init" => cfg.init = parse_bool(key, &value)?,
            "modules-dir" => cfg.modules_dir = Some(value),
            "audit-argv" => cfg.audit_argv = parse_bool(key, &value)?,
            _ => set_ext(cfg, key, value)?,
        }
    }
    Ok(())
}

/// One group of a key file: its name and its `key=value` entries (values
/// unescaped), in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub name: String,
    pub entries: Vec<(String, String)>,
}

/// Every group of a GKeyFile-format text, with GKeyFile's errors (the
/// same rules as [`load_text`], for files with groups of their own: the
/// exec policy).
pub fn parse_groups(text: &str) -> Result<Vec<Group>, String> {
    let mut groups: Vec<Group> = Vec::new();
    for raw in text.lines() {
        let line = raw.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad =
            || format!("Key file contains line \u{201C}{raw}\u{201D} which is not a key-value pair, group, or comment");
        if line.starts_with('[') {
            let name = line.trim_end().strip_prefix('[').and_then(|l| l.strip_suffix(']')).ok_or_else(bad)?;
            groups.push(Group { name: name.to_string(), entries: Vec::new() });
            continue;
        }
        let (k, v) = line.split_once('=').ok_or_else(bad)?;
        let group = groups.last_mut().ok_or("Key file does not start with a group")?;
        group.entries.push((k.trim_end().to_string(), unescape_value(v.trim_start())?));
    }
    Ok(groups)
}
