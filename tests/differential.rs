//! Differential check: the same random and mutated requests go to qga
//! (target/debug/qga) and to Debian's qemu-ga (fetched by
//! scripts/fetch-qemu-ga.sh into target/ref; the test is skipped with a
//! note when it is missing), and the replies must be byte-identical apart
//! from the documented differences (README, tests/golden/README.md):
//!
//! | difference | how it is treated |
//! |---|---|
//! | `PID ld does not exist` (qemu-ga's missing `%`) | qga's `PID <n> does not exist` is rewritten before comparing |
//! | guest-info lists qga's commands and version | a successful guest-info reply is compared by shape only |
//! | guest-get-time / pids of started processes | the numbers are replaced by `$N` / `$PID` |
//! | at most 4 framing errors per input line | when qemu-ga sent more than 4 parse errors for a case, qga's replies must be qemu-ga's in order with only parse errors left out |
//! | extensions (`cwd`, `user`, `timeout`, `stream`, `input-stream` of guest-exec, `wait` of guest-exec-status, guest-exec-terminate/-input) | never generated; a mutant that uses one is not compared |
//!
//! Both agents run with `-b` for every command that changes the machine
//! (shutdown, suspend, set-time, freeze, passwords, ssh keys, vcpus,
//! memory blocks, fstrim, file-open), so those answer "has been disabled"
//! whatever arguments a mutation makes up. guest-exec only ever gets a
//! harmless `path` (`/bin/true`, `true`, a missing file), or an argument
//! neither agent knows, which fails before anything is spawned. Every
//! case is checked with qga's own parser before it is sent.
//!
//! `QGA_DIFF_CASES` (default 2000) cases, `QGA_DIFF_SEED` (default
//! 20261130) picks them, `QGA_DIFF_QGA_BIN` / `QGA_REF_BIN` replace the
//! two binaries; a failing case is shrunk (byte-wise ddmin against
//! both agents) and printed with its seed and index.
#[macro_use]
mod common;

use common::{Conn, Rng, TempDir};
use qga::json::{Frame, Framer, Value};
use qga::protocol::parse_request;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const AGENT_ENV: &[(&str, &str)] = &[
    ("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
    ("LC_ALL", "C"),
    ("QGA_CONF", "/nonexistent/qemu-ga.conf"),
];

/// Commands that change the machine: blocked (`-b`) on both agents.
const BLOCKED: &[&str] = &[
    "guest-shutdown",
    "guest-suspend-disk",
    "guest-suspend-ram",
    "guest-suspend-hybrid",
    "guest-set-time",
    "guest-fsfreeze-freeze",
    "guest-fsfreeze-freeze-list",
    "guest-fsfreeze-thaw",
    "guest-set-user-password",
    "guest-ssh-add-authorized-keys",
    "guest-ssh-remove-authorized-keys",
    "guest-set-vcpus",
    "guest-set-memory-blocks",
    "guest-fstrim",
    "guest-file-open",
];

/// Paths guest-exec may really run.
const HARMLESS_PATHS: &[&str] = &["/bin/true", "true", "/nonexistent/qga-diff", ""];

/// qga extensions: a request using one is not compared.
const EXTENSION_MEMBERS: &[(&str, &[&str])] = &[
    ("guest-exec", &["cwd", "user", "timeout", "stream", "input-stream", "tty", "rows", "cols", "rusage", "env-merge"]),
    ("guest-exec-status", &["wait"]),
];
const EXTENSION_COMMANDS: &[&str] = &["guest-exec-terminate", "guest-exec-input", "guest-exec-resize"];

/// Every member name of every command's schema (qemu-ga and qga).
const KNOWN_MEMBERS: &[&str] = &[
    "path",
    "arg",
    "env",
    "input-data",
    "capture-output",
    "cwd",
    "user",
    "timeout",
    "stream",
    "input-stream",
    "pid",
    "wait",
    "handle",
    "count",
    "buf-b64",
    "offset",
    "whence",
    "mode",
    "id",
    "time",
    "mountpoints",
    "minimum",
    "vcpus",
    "mem-blks",
    "username",
    "password",
    "crypted",
    "keys",
    "reset",
    "signal",
    "eof",
];

// ---------------------------------------------------------------------------
// Random generation (xorshift64*, seeded: the same cases every run)
// ---------------------------------------------------------------------------

/// The schema members a command is generated with: (name, kind).
fn schema(cmd: &str) -> &'static [(&'static str, &'static str)] {
    match cmd {
        "guest-sync" | "guest-sync-delimited" => &[("id", "int")],
        "guest-exec" => &[
            ("path", "path"),
            ("arg", "strlist"),
            ("env", "strlist"),
            ("input-data", "b64"),
            ("capture-output", "capture"),
        ],
        "guest-exec-status" => &[("pid", "int")],
        "guest-file-close" | "guest-file-flush" => &[("handle", "int")],
        "guest-file-read" => &[("handle", "int"), ("count", "int")],
        "guest-file-write" => &[("handle", "int"), ("buf-b64", "b64"), ("count", "int")],
        "guest-file-seek" => &[("handle", "int"), ("offset", "int"), ("whence", "whence")],
        "guest-file-open" => &[("path", "str"), ("mode", "str")],
        "guest-shutdown" => &[("mode", "str")],
        "guest-set-time" => &[("time", "int")],
        "guest-set-vcpus" => &[("vcpus", "list")],
        "guest-ssh-add-authorized-keys" => &[("username", "str"), ("keys", "strlist"), ("reset", "bool")],
        "guest-set-user-password" => &[("username", "str"), ("password", "b64"), ("crypted", "bool")],
        _ => &[],
    }
}

const COMMANDS: &[&str] = &[
    "guest-ping",
    "guest-ping",
    "guest-sync",
    "guest-sync-delimited",
    "guest-info",
    "guest-get-time",
    "guest-exec",
    "guest-exec",
    "guest-exec",
    "guest-exec-status",
    "guest-file-close",
    "guest-file-read",
    "guest-file-write",
    "guest-file-seek",
    "guest-file-flush",
    "guest-file-open",
    "guest-shutdown",
    "guest-set-time",
    "guest-set-vcpus",
    "guest-ssh-add-authorized-keys",
    "guest-set-user-password",
    "guest-nonexistent",
    "guest-pin",
    "",
];

fn json_str(r: &mut Rng, s: &str) -> String {
    let q = if r.chance(15) { '\'' } else { '"' };
    let mut out = String::new();
    out.push(q);
    for c in s.chars() {
        match c {
            '"' if q == '"' => out.push_str("\\\""),
            '\'' if q == '\'' => out.push_str("\\'"),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if r.chance(5) && (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push(q);
    out
}

fn random_text(r: &mut Rng) -> String {
    const PIECES: &[&str] =
        &["a", "b", "k", "x", "-", "_", "1", "é", "€", "😀", " ", "=", "/", "\\", "\"", "'", "\u{7f}", "\n", "Z", "\0"];
    (0..r.below(8)).map(|_| *r.pick(PIECES)).collect()
}

fn random_key(r: &mut Rng) -> String {
    match r.below(4) {
        0 => format!("k{}", r.below(1000)),
        1 => format!("{}{}", r.pick(&["foo", "bar", "x-", "data", "Z"]), r.below(50)),
        2 => (*r.pick(KNOWN_MEMBERS)).to_string(),
        _ => random_text(r),
    }
}

fn number(r: &mut Rng) -> String {
    match r.below(10) {
        0 => "0".into(),
        1 => "-1".into(),
        2 => "9223372036854775807".into(),
        3 => "9223372036854775808".into(),
        4 => "18446744073709551616".into(),
        5 => "1.5".into(),
        6 => "1e3".into(),
        7 => "-0".into(),
        8 => format!("{}", r.below(100_000)),
        _ => format!("{}.{}E-{}", r.below(100), r.below(100), r.below(10)),
    }
}

fn scalar(r: &mut Rng) -> String {
    if r.chance(8) {
        // A small object: echoed ids show the QDict member order.
        let mut keys: Vec<String> = Vec::new();
        for _ in 0..r.below(12) {
            let k = random_key(r);
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        let members: Vec<String> = keys.iter().map(|k| format!("{}:{}", json_str(r, k), number(r))).collect();
        return format!("{{{}}}", members.join(","));
    }
    match r.below(6) {
        0 => number(r),
        1 => (*r.pick(&["true", "false", "null"])).to_string(),
        2 => "[]".into(),
        3 => "{}".into(),
        4 => format!("[{}, {}]", number(r), json_str(r, "x")),
        _ => {
            let t = random_text(r);
            json_str(r, &t)
        }
    }
}

fn value_of(r: &mut Rng, kind: &str) -> String {
    if r.chance(20) {
        return scalar(r);
    }
    match kind {
        "int" => number(r),
        "bool" => (*r.pick(&["true", "false"])).to_string(),
        "path" => {
            let p = *r.pick(HARMLESS_PATHS);
            json_str(r, p)
        }
        "b64" => {
            let s = *r.pick(&["aGkK", "QQ==QUJD", "aGVs\\nbG8=", "!!", "", "aGVsbG8"]);
            format!("\"{s}\"")
        }
        "capture" => (*r.pick(&["true", "false", "\"merged\"", "\"stdout\"", "\"bogus\"", "1"])).to_string(),
        "whence" => (*r.pick(&["\"set\"", "\"end\"", "1", "\"bogus\"", "1.5"])).to_string(),
        "strlist" => {
            let items: Vec<String> = (0..r.below(4))
                .map(|_| {
                    if r.chance(10) {
                        number(r)
                    } else {
                        let t = random_text(r);
                        json_str(r, &t)
                    }
                })
                .collect();
            format!("[{}]", items.join(", "))
        }
        "list" => {
            let n = r.below(3);
            let items: Vec<String> =
                (0..n).map(|_| format!("{{\"logical-id\": {}, \"online\": {}}}", number(r), scalar(r))).collect();
            format!("[{}]", items.join(","))
        }
        _ => {
            let t = random_text(r);
            json_str(r, &t)
        }
    }
}

fn ws(r: &mut Rng) -> &'static str {
    const WS: &[&str] = &["", "", "", " ", "\n", "\t", "  \r\n"];
    WS[r.below(WS.len())]
}

/// One random request (sometimes several, sometimes broken).
fn generate(r: &mut Rng) -> Vec<u8> {
    let cmd = *r.pick(COMMANDS);
    let mut members: Vec<String> = Vec::new();
    // Sometimes every member, so that visited members leave holes (and
    // shrink GLib's table) before the unexpected one is looked up.
    let with_member = if r.chance(15) { 100 } else { 70 };
    for (name, kind) in schema(cmd) {
        if r.chance(with_member) {
            members.push(format!("{}{}:{}{}", json_str(r, name), ws(r), ws(r), value_of(r, kind)));
        }
    }
    let extra = match r.below(10) {
        0..=5 => 0,
        6 | 7 => 1 + r.below(3),
        8 => 3 + r.below(40),
        _ => 40 + r.below(300),
    };
    let mut used: Vec<String> = schema(cmd).iter().map(|(n, _)| n.to_string()).collect();
    for _ in 0..extra {
        let k = random_key(r);
        if used.contains(&k) {
            continue;
        }
        used.push(k.clone());
        members.push(format!("{}:{}", json_str(r, &k), scalar(r)));
    }
    // Shuffle a little: members in any order.
    for i in (1..members.len()).rev() {
        if r.chance(50) {
            let j = r.below(i + 1);
            members.swap(i, j);
        }
    }
    let args = format!("{{{}}}", members.join(&format!(",{}", ws(r))));
    let mut env: Vec<String> = Vec::new();
    if r.chance(95) {
        let c = json_str(r, cmd);
        env.push(format!("\"execute\":{}{}", ws(r), if r.chance(3) { scalar(r) } else { c }));
    }
    if !members.is_empty() || r.chance(30) {
        env.push(format!("\"arguments\":{}", if r.chance(4) { scalar(r) } else { args }));
    }
    if r.chance(30) {
        env.push(format!("\"id\":{}", scalar(r)));
    }
    if r.chance(4) {
        let name = *r.pick(&["exec-oob", "foo", "control"]);
        env.push(format!("{}:{}", json_str(r, name), scalar(r)));
    }
    if r.chance(30) {
        env.reverse();
    }
    let mut text = format!("{}{{{}}}{}", ws(r), env.join(","), ws(r)).into_bytes();
    if r.chance(30) {
        mutate(r, &mut text);
    }
    if r.chance(5) {
        let again = text.clone();
        text.extend_from_slice(&again);
    }
    text
}

fn mutate(r: &mut Rng, text: &mut Vec<u8>) {
    const BYTES: &[u8] = b"{}[]:,\"'\\ 09-e.xu\x01\xc3\xa9\xff\n";
    for _ in 0..1 + r.below(3) {
        if text.is_empty() {
            return;
        }
        let at = r.below(text.len());
        match r.below(3) {
            0 => text[at] = *r.pick(BYTES),
            1 => {
                text.remove(at);
            }
            _ => text.insert(at, *r.pick(BYTES)),
        }
    }
}

// ---------------------------------------------------------------------------
// Safety and comparability, decided with qga's own parser
// ---------------------------------------------------------------------------

enum Verdict {
    Compare,
    /// Not sent: it could run something, or uses a documented difference.
    Skip,
}

/// The requests in `case` that pass envelope validation (qga's parser).
fn requests(case: &[u8]) -> Vec<qga::protocol::Request> {
    let mut framer = Framer::new();
    let mut input = case.to_vec();
    input.push(b'\n');
    let mut rest = &input[..];
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (used, frame) = framer.feed(rest);
        rest = &rest[used..];
        if let Some(Frame::Message(msg)) = frame {
            out.extend(parse_request(msg).ok());
        }
    }
    out
}

fn verdict(case: &[u8]) -> Verdict {
    for req in requests(case) {
        let cmd = req.command.as_str();
        if EXTENSION_COMMANDS.contains(&cmd) {
            return Verdict::Skip;
        }
        if let Some((_, ext)) = EXTENSION_MEMBERS.iter().find(|(c, _)| *c == cmd) {
            if req.arguments.iter().any(|(k, _)| ext.contains(&k)) {
                return Verdict::Skip;
            }
        }
        if cmd == "guest-exec" {
            let fails_first = req.arguments.iter().any(|(k, _)| !KNOWN_MEMBERS.contains(&k));
            let harmless = match req.arguments.get("path") {
                Some(Value::Str(p)) => HARMLESS_PATHS.contains(&p.as_str()),
                Some(_) | None => true, // fails: wrong type or missing
            };
            if !(harmless || fails_first) {
                return Verdict::Skip;
            }
        }
    }
    Verdict::Compare
}

// ---------------------------------------------------------------------------
// The two agents
// ---------------------------------------------------------------------------

struct Peer {
    child: Child,
    conn: Conn,
    _dir: TempDir,
}

impl Peer {
    fn start(bin: &PathBuf) -> Peer {
        let dir = TempDir::new("qga-diff");
        let sock = dir.join("sock");
        let mut c = Command::new("env");
        c.arg("-i");
        for (k, v) in AGENT_ENV {
            c.arg(format!("{k}={v}"));
        }
        c.arg(bin)
            .args(["-m", "unix-listen", "-p"])
            .arg(&sock)
            .arg("-t")
            .arg(dir.path())
            .arg("-f")
            .arg(dir.join("pid"))
            .arg("-b")
            .arg(BLOCKED.join(","))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = c.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let deadline = Instant::now() + Duration::from_secs(10);
        let stream = loop {
            match UnixStream::connect(&sock) {
                Ok(s) => break s,
                Err(e) if Instant::now() > deadline => panic!("cannot connect to {}: {e}", bin.display()),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        Peer { child, conn: Conn::new(stream), _dir: dir }
    }

    /// Sends the case, then a newline, 0xFF and a guest-sync with a
    /// marker; returns every reply line before the marker's reply.
    fn exchange(&mut self, case: &[u8], marker: u64) -> Result<Vec<Vec<u8>>, String> {
        let mut bytes = case.to_vec();
        bytes.extend_from_slice(b"\n\xFF");
        bytes.extend_from_slice(
            format!("{{\"execute\":\"guest-sync\",\"arguments\":{{\"id\":{marker}}}}}\n").as_bytes(),
        );
        self.conn.send(&bytes);
        let done = format!("{{\"return\": {marker}}}\n").into_bytes();
        let mut lines = Vec::new();
        loop {
            match self.conn.try_read_line_raw(Duration::from_secs(20)) {
                Some(l) if l == done => return Ok(lines),
                Some(l) => lines.push(l),
                None => return Err(format!("no reply to the marker {marker} within 20 s")),
            }
            if lines.len() > 100_000 {
                return Err("more than 100,000 reply lines".into());
            }
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = qga_sys::process::kill(self.child.id() as i32, qga_sys::signal::SIGTERM);
        if common::wait_timeout(&mut self.child, Duration::from_secs(5)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------
// Comparison with the documented differences
// ---------------------------------------------------------------------------

fn replace_digits_after(line: &[u8], key: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len());
    let mut i = 0;
    while i < line.len() {
        if line[i..].starts_with(key) {
            out.extend_from_slice(key);
            i += key.len();
            let start = i;
            while i < line.len() && (line[i].is_ascii_digit() || (i == start && line[i] == b'-')) {
                i += 1;
            }
            if i > start {
                out.extend_from_slice(with);
            }
            continue;
        }
        out.push(line[i]);
        i += 1;
    }
    out
}

fn normalise(line: &[u8], qga_side: bool) -> Vec<u8> {
    let mut l = replace_digits_after(line, b"\"pid\": ", b"$PID");
    if qga_side {
        l = replace_digits_after(&l, b"PID ", b"ld");
    }
    if l.starts_with(b"{\"return\": {\"version\": ") && l.windows(20).any(|w| w == b"\"supported_commands\"") {
        return b"{\"return\": <guest-info>}\n".to_vec();
    }
    l
}

fn is_parse_error(line: &[u8]) -> bool {
    line.windows(17).any(|w| w == b"JSON parse error,")
}

/// None if the replies match (modulo the documented differences).
fn differs(case: &[u8], qga: &[Vec<u8>], reference: &[Vec<u8>]) -> Option<String> {
    let q: Vec<Vec<u8>> = qga.iter().map(|l| normalise(l, true)).collect();
    let mut r: Vec<Vec<u8>> = reference.iter().map(|l| normalise(l, false)).collect();
    if requests(case).iter().any(|r| r.command == "guest-get-time") {
        for l in r.iter_mut() {
            *l = replace_digits_after(l, b"{\"return\": ", b"$N");
        }
        let q2: Vec<Vec<u8>> = q.iter().map(|l| replace_digits_after(l, b"{\"return\": ", b"$N")).collect();
        return (q2 != r).then(|| show_diff(&q2, &r));
    }
    if q == r {
        return None;
    }
    // qga answers at most 4 framing errors per line: its replies must be
    // qemu-ga's, in order, with only parse errors left out.
    if r.iter().filter(|l| is_parse_error(l)).count() > 4 {
        let mut it = r.iter();
        let ordered = q.iter().all(|ql| it.any(|rl| rl == ql));
        let dropped_only_parse_errors = r.iter().filter(|l| !is_parse_error(l)).all(|l| q.contains(l));
        if ordered && dropped_only_parse_errors {
            return None;
        }
    }
    Some(show_diff(&q, &r))
}

fn show_diff(q: &[Vec<u8>], r: &[Vec<u8>]) -> String {
    let s = |v: &[Vec<u8>]| {
        v.iter().map(|l| format!("    {:?}", String::from_utf8_lossy(l))).collect::<Vec<_>>().join("\n")
    };
    format!("  qga ({} lines):\n{}\n  qemu-ga ({} lines):\n{}", q.len(), s(q), r.len(), s(r))
}

fn reference_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("QGA_REF_BIN") {
        return Some(PathBuf::from(p));
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/ref/qemu-ga-10/usr/sbin/qemu-ga");
    p.exists().then_some(p)
}

struct Pair {
    qga: Peer,
    reference: Peer,
    marker: u64,
}

impl Pair {
    fn check(&mut self, case: &[u8]) -> Result<Option<String>, String> {
        self.marker += 1;
        let q = self.qga.exchange(case, self.marker)?;
        let r = self.reference.exchange(case, self.marker)?;
        Ok(differs(case, &q, &r))
    }

    /// ddmin over bytes: the smallest case (within a bounded number of
    /// exchanges) that still differs and is still safe to send.
    fn shrink(&mut self, case: &[u8]) -> Vec<u8> {
        let mut best = case.to_vec();
        let mut chunk = best.len().div_ceil(2).max(1);
        let mut tries = 0;
        while chunk >= 1 && tries < 2000 {
            let mut i = 0;
            let mut progress = false;
            while i < best.len() && tries < 2000 {
                let mut cand = best.clone();
                cand.drain(i..(i + chunk).min(cand.len()));
                tries += 1;
                let keep = matches!(verdict(&cand), Verdict::Compare) && matches!(self.check(&cand), Ok(Some(_)));
                if keep {
                    best = cand;
                    progress = true;
                } else {
                    i += chunk;
                }
            }
            if !progress {
                if chunk == 1 {
                    break;
                }
                chunk = chunk.div_ceil(2);
            }
        }
        best
    }
}

#[test]
fn qga_and_qemu_ga_answer_alike() {
    let Some(reference) = reference_bin() else {
        eprintln!("SKIP: qemu-ga not found (run scripts/fetch-qemu-ga.sh target/ref)");
        return;
    };
    let cases: usize = std::env::var("QGA_DIFF_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let seed: u64 = std::env::var("QGA_DIFF_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(20261130);
    // QGA_DIFF_QGA_BIN: another qga build to compare (e.g. an older one).
    let qga_bin = std::env::var_os("QGA_DIFF_QGA_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_qga")));
    let mut pair = Pair { qga: Peer::start(&qga_bin), reference: Peer::start(&reference), marker: 900_000_000 };
    // Every seed its own non-zero state (xorshift must not start at 0).
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(0x632B_E59B_D9B4_E019).max(1));
    let (mut sent, mut skipped) = (0, 0);
    let mut failures = Vec::new();
    let started = Instant::now();
    for index in 0..cases {
        let case = generate(&mut rng);
        if let Verdict::Skip = verdict(&case) {
            skipped += 1;
            continue;
        }
        sent += 1;
        match pair.check(&case) {
            Ok(None) => {}
            Ok(Some(diff)) => {
                let small = pair.shrink(&case);
                let diff_small = pair.check(&small).ok().flatten().unwrap_or(diff);
                failures.push(format!(
                    "case {index} (seed {seed}): minimal request {:?}\n{diff_small}",
                    String::from_utf8_lossy(&small)
                ));
                if failures.len() >= 5 {
                    break;
                }
            }
            Err(e) => {
                failures.push(format!("case {index} (seed {seed}) {:?}: {e}", String::from_utf8_lossy(&case)));
                break;
            }
        }
    }
    eprintln!(
        "differential: {sent} cases compared, {skipped} not sent (documented differences or unsafe), {} mismatches, {:.1} s",
        failures.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(failures.is_empty(), "qga and qemu-ga differ:\n{}", failures.join("\n\n"));
}
