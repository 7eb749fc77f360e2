//! ping, info, sync, osinfo, shutdown, raw.

use std::io::Write;
use std::time::Instant;

use serde_json::{json, Value};

use crate::conn::{parse_reply, random_id, Reply, Session};
use crate::fail::{Failure, Result, EXIT_AGENT};

fn out(s: &str) -> Result<()> {
    let mut o = std::io::stdout().lock();
    o.write_all(s.as_bytes())
        .and_then(|()| o.flush())
        .map_err(|e| Failure::Local(format!("cannot write to stdout: {e}")))
}

pub fn ping(sess: &mut Session) -> Result<i32> {
    let t = Instant::now();
    sess.call("guest-ping", None)?;
    out(&format!("guest-ping: ok ({:.2} ms)\n", t.elapsed().as_secs_f64() * 1000.0))?;
    Ok(0)
}

pub fn sync(sess: &mut Session) -> Result<i32> {
    let delimited = sess.sync_id;
    let id = random_id();
    let t = Instant::now();
    let v = sess.call("guest-sync", Some(json!({"id": id})))?;
    if v.as_i64() != Some(id) {
        return Err(Failure::Connection(format!("guest-sync: the agent echoed {v} instead of {id}")));
    }
    out(&format!(
        "synchronised: guest-sync-delimited echoed {delimited}, guest-sync echoed {id} ({:.2} ms)\n",
        t.elapsed().as_secs_f64() * 1000.0
    ))?;
    Ok(0)
}

/// Sends `command` and returns the raw reply line (for --json).
fn raw_line(sess: &mut Session, command: &str) -> Result<Vec<u8>> {
    sess.send(command, None)?;
    let line = sess.read_line(sess.reply_timeout)?;
    if let Reply::Error { class, desc } = parse_reply(&line)? {
        return Err(Failure::agent(command, &class, &desc));
    }
    Ok(line)
}

fn yes(b: Option<bool>) -> &'static str {
    match b {
        Some(true) => "yes",
        Some(false) => "no",
        None => "-",
    }
}

/// `--json`: the agent's reply line as it came.
fn print_raw_line(mut line: Vec<u8>) -> Result<i32> {
    line.push(b'\n');
    std::io::stdout().lock().write_all(&line).map_err(|e| Failure::Local(format!("cannot write to stdout: {e}")))?;
    Ok(0)
}

pub fn info(sess: &mut Session, json: bool) -> Result<i32> {
    let line = raw_line(sess, "guest-info")?;
    if json {
        return print_raw_line(line);
    }
    let Ok(Reply::Return(v)) = parse_reply(&line) else { unreachable!("checked by raw_line") };
    let version = v.get("version").and_then(Value::as_str).unwrap_or("?");
    let mut cmds: Vec<&Value> =
        v.get("supported_commands").and_then(Value::as_array).map(|a| a.iter().collect()).unwrap_or_default();
    cmds.sort_by_key(|c| c.get("name").and_then(Value::as_str).unwrap_or(""));
    let has = |n: &str| cmds.iter().any(|c| c.get("name").and_then(Value::as_str) == Some(n));
    let enabled = |n: &str| {
        cmds.iter().any(|c| {
            c.get("name").and_then(Value::as_str) == Some(n) && c.get("enabled").and_then(Value::as_bool) != Some(false)
        })
    };
    let ext = match (has("guest-exec-terminate"), enabled("guest-exec-resize")) {
        (true, true) => "yes (streaming exec, wait, terminate, timeout, cwd, user, terminals)",
        (true, false) => "yes (streaming exec, wait, terminate, timeout, cwd, user)",
        _ => "no (stock qemu-ga behaviour)",
    };
    let width =
        cmds.iter().filter_map(|c| c.get("name").and_then(Value::as_str)).map(str::len).max().unwrap_or(7).max(7);
    let mut s = format!("version:    {version}\nextensions: {ext}\ncommands:   {}\n\n", cmds.len());
    s.push_str(&format!("{:<width$}  ENABLED  SUCCESS-RESPONSE\n", "COMMAND"));
    for c in cmds {
        let name = c.get("name").and_then(Value::as_str).unwrap_or("?");
        let en = yes(c.get("enabled").and_then(Value::as_bool));
        let sr = yes(c.get("success-response").and_then(Value::as_bool));
        s.push_str(&format!("{name:<width$}  {en:<7}  {sr}\n"));
    }
    out(&s)?;
    Ok(0)
}

pub fn osinfo(sess: &mut Session, json: bool) -> Result<i32> {
    let line = raw_line(sess, "guest-get-osinfo")?;
    if json {
        return print_raw_line(line);
    }
    let Ok(Reply::Return(v)) = parse_reply(&line) else { unreachable!("checked by raw_line") };
    const ORDER: [&str; 10] = [
        "pretty-name",
        "name",
        "id",
        "version",
        "version-id",
        "variant",
        "variant-id",
        "kernel-release",
        "kernel-version",
        "machine",
    ];
    let Some(obj) = v.as_object() else {
        return Err(Failure::Connection(format!("guest-get-osinfo: unexpected reply: {v}")));
    };
    let mut keys: Vec<&str> = ORDER.iter().copied().filter(|k| obj.contains_key(*k)).collect();
    let mut extra: Vec<&str> = obj.keys().map(String::as_str).filter(|k| !ORDER.contains(k)).collect();
    extra.sort();
    keys.extend(extra);
    let width = keys.iter().map(|k| k.len()).max().unwrap_or(0) + 1;
    let mut s = String::new();
    for k in keys {
        let val = match &obj[k] {
            Value::String(x) => x.clone(),
            other => other.to_string(),
        };
        s.push_str(&format!("{:<width$} {val}\n", format!("{k}:")));
    }
    out(&s)?;
    Ok(0)
}

pub fn shutdown(sess: &mut Session, mode: Option<String>) -> Result<i32> {
    let args = mode.map(|m| json!({"mode": m}));
    sess.send("guest-shutdown", args)?;
    // No reply on success: a guest-sync right behind tells the outcome.
    let id = random_id();
    sess.send("guest-sync", Some(json!({"id": id})))?;
    match sess.read_line(sess.reply_timeout) {
        Ok(line) => match parse_reply(&line)? {
            Reply::Error { class, desc } => {
                // The guest-sync's reply follows: read it before closing, so
                // the agent never writes to a closed connection (qemu-ga
                // 10.0.2 in unix-listen mode sometimes exits when it does).
                let _ = sess.read_line(sess.reply_timeout);
                Err(Failure::agent("guest-shutdown", &class, &desc))
            }
            Reply::Return(v) if v.as_i64() == Some(id) => {
                out("guest-shutdown: accepted by the agent\n")?;
                Ok(0)
            }
            Reply::Return(v) => Err(Failure::Connection(format!("guest-shutdown: unexpected reply {v}"))),
        },
        Err(Failure::Connection(m)) if m.contains("closed") => {
            out("guest-shutdown: accepted (the agent closed the connection)\n")?;
            Ok(0)
        }
        Err(f) => Err(f),
    }
}

pub fn raw(sess: &mut Session, request: &str) -> Result<i32> {
    let mut bytes = request.trim_end().as_bytes().to_vec();
    bytes.push(b'\n');
    let deadline = Instant::now() + sess.reply_timeout;
    sess.write_all(&bytes, deadline)?;
    let line = sess.read_line(sess.reply_timeout)?;
    let mut l = line.clone();
    l.push(b'\n');
    std::io::stdout().lock().write_all(&l).map_err(|e| Failure::Local(format!("cannot write to stdout: {e}")))?;
    Ok(match parse_reply(&line) {
        Ok(Reply::Return(_)) => 0,
        _ => EXIT_AGENT,
    })
}
