//! `cargo bench --bench agents` / `make bench`: qga and Debian's qemu-ga
//! side by side on the same workloads, alternating, with the machine's
//! floors measured in the same run.
//!
//! Environment:
//! * `QGA_BENCH_BIN`: qga binary (default: the one cargo built for this bench)
//! * `QGA_BENCH_REF`: qemu-ga binary (default: target/ref/qemu-ga-10/usr/sbin/qemu-ga,
//!   then /usr/sbin/qemu-ga); `none` skips it
//! * `QGA_BENCH_QUICK=1`: fewer repetitions (smoke run)
//! * `QGA_BENCH_OUT`: where the markdown report is also written
//!   (default target/bench/agents.md)
//!
//! Benchmarks never fail: misses are printed as MISS and the exit status is 0.

mod support;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use support::agent::Agent;
use support::client::{b64_member, Client, PING};
use support::floors::{self, Echo};
use support::stats::Samples;
use support::sys;

const MIB: usize = 1 << 20;
const CAPTURE_LEN: usize = 8 * MIB;
const INPUT_LEN: usize = 8 * MIB;
const PEAK_LEN: usize = 16 * MIB;
const INFLIGHT: usize = 50;
const PIPELINED_PINGS: usize = 10_000;

/// Repetition counts (full / quick).
#[derive(Clone, Copy)]
struct Reps {
    start: usize,
    ping_blocks: usize,
    ping_per_block: usize,
    pipelined: usize,
    exec_blocks: usize,
    exec_per_block: usize,
    inflight: usize,
    capture: usize,
    input: usize,
    peak: usize,
    idle_s: u64,
}

impl Reps {
    fn new(quick: bool) -> Reps {
        if quick {
            Reps {
                start: 5,
                ping_blocks: 4,
                ping_per_block: 100,
                pipelined: 2,
                exec_blocks: 4,
                exec_per_block: 10,
                inflight: 2,
                capture: 2,
                input: 2,
                peak: 1,
                idle_s: 5,
            }
        } else {
            Reps {
                start: 20,
                ping_blocks: 10,
                ping_per_block: 200,
                pipelined: 5,
                exec_blocks: 10,
                exec_per_block: 20,
                inflight: 6,
                capture: 7,
                input: 5,
                peak: 3,
                idle_s: 5,
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Unit {
    Time,
    KiB,
    Bytes,
    /// operations per second
    Rate,
    Count,
    Ms,
}

#[derive(Clone, Copy, PartialEq)]
enum Stat {
    Median,
    P99,
}

struct Row {
    name: String,
    unit: Unit,
    stat: Stat,
    lower_is_better: bool,
    qga: Option<Samples>,
    refa: Option<Samples>,
    floor: Option<Samples>,
    note: String,
}

impl Row {
    fn new(name: &str, unit: Unit) -> Row {
        Row {
            name: name.into(),
            unit,
            stat: Stat::Median,
            lower_is_better: unit != Unit::Rate,
            qga: None,
            refa: None,
            floor: None,
            note: String::new(),
        }
    }
    fn p99(mut self) -> Row {
        self.stat = Stat::P99;
        self
    }
    fn qga(mut self, s: Samples) -> Row {
        self.qga = Some(s);
        self
    }
    fn refa(mut self, s: Option<Samples>) -> Row {
        self.refa = s;
        self
    }
    fn floor(mut self, s: Samples) -> Row {
        self.floor = Some(s);
        self
    }
    fn note(mut self, n: impl Into<String>) -> Row {
        self.note = n.into();
        self
    }
    fn val(&self, s: &Option<Samples>) -> Option<f64> {
        s.as_ref().filter(|s| !s.is_empty()).map(|s| match self.stat {
            Stat::Median => s.median(),
            Stat::P99 => s.pct(99.0),
        })
    }
    /// How many times better qga is than qemu-ga (>1 = qga better).
    fn vs_ref(&self) -> Option<f64> {
        let (q, r) = (self.val(&self.qga)?, self.val(&self.refa)?);
        Some(if self.lower_is_better { r / q } else { q / r })
    }
    /// qga's speed as a fraction of the floor's (1 = as fast as the floor).
    fn vs_floor(&self) -> Option<f64> {
        let (q, f) = (self.val(&self.qga)?, self.val(&self.floor)?);
        Some(if self.lower_is_better { f / q } else { q / f })
    }
}

fn fmt(unit: Unit, v: Option<f64>) -> String {
    let Some(v) = v else { return "—".into() };
    if v.is_nan() {
        return "—".into();
    }
    match unit {
        Unit::Time => {
            if v < 1e-3 {
                format!("{:.1} µs", v * 1e6)
            } else if v < 1.0 {
                format!("{:.2} ms", v * 1e3)
            } else {
                format!("{:.2} s", v)
            }
        }
        Unit::Ms => format!("{v:.1} ms"),
        Unit::KiB => {
            if v >= 10240.0 {
                format!("{:.1} MiB", v / 1024.0)
            } else {
                format!("{v:.0} KiB")
            }
        }
        Unit::Bytes => format!("{:.0} B ({:.0} KiB)", v, v / 1024.0),
        Unit::Rate => {
            if v >= 1e3 {
                format!("{:.1} k/s", v / 1e3)
            } else {
                format!("{v:.0}/s")
            }
        }
        Unit::Count => format!("{v:.0}"),
    }
}

fn ratio_text(r: Option<f64>, unit: Unit) -> String {
    let Some(r) = r else { return "—".into() };
    if r.is_nan() {
        return "both 0".into();
    }
    if r.is_infinite() {
        return "qga 0".to_string();
    }
    let word = match unit {
        Unit::KiB | Unit::Bytes | Unit::Count => "smaller",
        Unit::Ms => "less",
        _ => "faster",
    };
    if r >= 1.0 {
        format!("{r:.1}× {word}")
    } else {
        format!("{:.2}× ({:.1}× worse)", r, 1.0 / r)
    }
}

fn noise_text(row: &Row) -> (String, bool) {
    let mut parts = Vec::new();
    let mut noisy = false;
    for (tag, s) in [("q", &row.qga), ("r", &row.refa), ("f", &row.floor)] {
        if let Some(s) = s.as_ref().filter(|s| s.len() > 1) {
            let (t, n) = if row.stat == Stat::P99 {
                let (tail, n) = s.tail();
                (format!("p99/med {tail:.1}"), n)
            } else {
                s.noise()
            };
            noisy |= n;
            parts.push(format!("{tag} {t}"));
        }
    }
    let mut t = parts.join(", ");
    if noisy {
        t.push_str(" **NOISY**");
    }
    (t, noisy)
}

/// Runs `rounds` rounds over `k` contenders, rotating who goes first.
fn alternate(rounds: usize, k: usize, mut f: impl FnMut(usize)) {
    for r in 0..rounds {
        for j in 0..k {
            f((r + j) % k);
        }
    }
}

fn progress(msg: &str) {
    eprintln!("[bench {}] {msg}", utc_clock());
}

fn utc_clock() -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let s = t % 86400;
    format!("{:02}:{:02}:{:02}Z", s / 3600, (s / 60) % 60, s % 60)
}

fn utc_date() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Deterministic incompressible-looking bytes.
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn find_ref() -> Option<PathBuf> {
    match std::env::var("QGA_BENCH_REF") {
        Ok(v) if v == "none" => return None,
        Ok(v) if !v.is_empty() => return Some(PathBuf::from(v)),
        _ => {}
    }
    [manifest_dir().join("target/ref/qemu-ga-10/usr/sbin/qemu-ga"), PathBuf::from("/usr/sbin/qemu-ga")]
        .into_iter()
        .find(|p| std::process::Command::new(p).arg("-V").output().is_ok_and(|o| o.status.success()))
}

fn version_of(bin: &Path) -> String {
    std::process::Command::new(bin)
        .arg("-V")
        .output()
        .map(|o| {
            let s = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
            s.lines().next().unwrap_or("").trim().to_string()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Workloads on one connected agent
// ---------------------------------------------------------------------------

fn exec_true(c: &mut Client, wait: Option<f64>) -> (f64, usize) {
    let t = Instant::now();
    let pid = c.exec(r#"{"path":"/bin/true"}"#);
    let (calls, _) = c.poll_until_exited_len(pid, wait);
    (t.elapsed().as_secs_f64(), calls)
}

/// exec_true under the confinement profile `bench` of the agent's policy.
fn exec_true_confined(c: &mut Client, wait: Option<f64>) -> f64 {
    let t = Instant::now();
    let pid = c.exec(r#"{"path":"/bin/true","profile":"bench"}"#);
    c.poll_until_exited_len(pid, wait);
    t.elapsed().as_secs_f64()
}

/// The policy of the confined-exec rows: every layer a profile has but
/// the cgroup (the build host may have no cgroup2 controllers).
const BENCH_POLICY: &str = "[exec]\nprofiles=bench\n\n[profile bench]\nno-new-privs=true\nrlimit-core=0\n\
                            rlimit-nofile=256\nseccomp=deny-dangerous\nlandlock=best-effort\nlandlock-read=/\n\
                            landlock-write=/tmp\n";

/// 50 guest-exec in one write, then status until all exited: classic
/// (rounds of pipelined status requests) or `wait` (one long poll each).
fn exec_inflight(c: &mut Client, k: usize, wait: Option<f64>) -> (f64, usize) {
    let t = Instant::now();
    let req = r#"{"execute":"guest-exec","arguments":{"path":"/bin/true"}}
"#
    .repeat(k);
    c.send(req.as_bytes());
    let mut pids = Vec::with_capacity(k);
    for _ in 0..k {
        let l = c.line();
        let v: serde_json::Value = serde_json::from_slice(l).expect("exec reply");
        pids.push(v["return"]["pid"].as_i64().unwrap_or_else(|| panic!("guest-exec failed: {v}")));
    }
    let mut calls = 0;
    if wait.is_some() {
        for pid in pids {
            calls += c.poll_until_exited_len(pid, wait).0;
        }
    } else {
        let mut pending = pids;
        while !pending.is_empty() {
            let mut req = String::new();
            for pid in &pending {
                let _ = writeln!(req, r#"{{"execute":"guest-exec-status","arguments":{{"pid":{pid}}}}}"#);
            }
            c.send(req.as_bytes());
            calls += pending.len();
            let mut still = Vec::new();
            for pid in pending {
                if memchr::memmem::find(c.line(), b"\"exited\": true").is_none() {
                    still.push(pid);
                }
            }
            pending = still;
        }
    }
    (t.elapsed().as_secs_f64(), calls)
}

/// cat FILE with capture-output; returns (seconds, status calls, reply).
fn capture(c: &mut Client, file: &Path, wait: Option<f64>) -> (f64, usize, Vec<u8>) {
    let t = Instant::now();
    let pid = c.exec(&format!(r#"{{"path":"/bin/cat","arg":["{}"],"capture-output":true}}"#, file.display()));
    let (calls, reply) = c.poll_until_exited(pid, wait);
    (t.elapsed().as_secs_f64(), calls, reply)
}

/// qga `stream` mode: chunks are collected as they come; returns
/// (seconds, status calls, decoded bytes).
fn capture_stream(c: &mut Client, file: &Path) -> (f64, usize, usize) {
    let t = Instant::now();
    let pid =
        c.exec(&format!(r#"{{"path":"/bin/cat","arg":["{}"],"capture-output":true,"stream":true}}"#, file.display()));
    let (calls, bytes) = collect_stream(c, pid);
    (t.elapsed().as_secs_f64(), calls, bytes)
}

/// qga: 8 MiB of NULs (unchanged by a terminal) from `head`, on a
/// pseudo-terminal (`tty`) or through `stream` pipes, collected with
/// status `wait`; returns (seconds, status calls, bytes).
fn head_stream(c: &mut Client, tty: bool) -> (f64, usize, usize) {
    let how = if tty { r#""tty":true"# } else { r#""capture-output":true,"stream":true"# };
    let t = Instant::now();
    let pid = c.exec(&format!(r#"{{"path":"head","arg":["-c","{CAPTURE_LEN}","/dev/zero"],{how}}}"#));
    let (calls, bytes) = collect_stream(c, pid);
    (t.elapsed().as_secs_f64(), calls, bytes)
}

/// Kernel floors of the terminal rows, no agent: the same `head` writing
/// into a pty slave (default, cooked settings, as qga opens it) or a pipe,
/// and this process reading the master (or the pipe) with blocking reads
/// until EIO (the slave's last close) or EOF; returns seconds.
fn head_floor(tty: bool) -> f64 {
    use std::io::Read;
    let t = Instant::now();
    let head = || {
        let mut cmd = std::process::Command::new("head");
        cmd.args(["-c", &CAPTURE_LEN.to_string(), "/dev/zero"]).stdin(std::process::Stdio::null());
        cmd
    };
    // The Command owns the slave and is dropped after the spawn: no copy
    // of ours keeps the slave open past the writer.
    let (mut child, reader): (_, std::fs::File) = if tty {
        let (master, slave, _) = qga_sys::pty::open_named().expect("pty");
        let child = head().stdout(std::process::Stdio::from(slave)).spawn().expect("head");
        (child, master.into())
    } else {
        let mut child = head().stdout(std::process::Stdio::piped()).spawn().expect("head");
        let out = child.stdout.take().expect("pipe");
        (child, std::os::fd::OwnedFd::from(out).into())
    };
    let mut buf = vec![0u8; 256 << 10];
    let mut got = 0;
    let mut r = &reader;
    while let Ok(n @ 1..) = r.read(&mut buf) {
        got += n;
    }
    let _ = child.wait();
    assert_eq!(got, CAPTURE_LEN, "floor read {got} bytes");
    t.elapsed().as_secs_f64()
}

/// qga `tty`: one key through guest-exec-input to `cat` on a raw terminal
/// and back through a status `wait`, `n` times; returns the round trips.
fn keystrokes(c: &mut Client, n: usize) -> Samples {
    let pid = c.exec(r#"{"path":"/bin/sh","arg":["-c","stty raw -echo && echo ready && exec cat"],"tty":true}"#);
    let status = format!("{{\"execute\":\"guest-exec-status\",\"arguments\":{{\"pid\":{pid},\"wait\":10}}}}\n");
    let mut seen = Vec::new();
    while memchr::memmem::find(&seen, b"ready").is_none() {
        c.send(status.as_bytes());
        seen.extend(b64_member(c.line(), "out-data").unwrap_or_default());
    }
    let mut out = Samples::new();
    for i in 0..n {
        let key = [b'a' + (i % 26) as u8];
        let input = format!(
            "{{\"execute\":\"guest-exec-input\",\"arguments\":{{\"pid\":{pid},\"input-data\":\"{}\"}}}}\n",
            base64::engine::general_purpose::STANDARD.encode(key)
        );
        let t = Instant::now();
        c.send(input.as_bytes());
        c.line();
        loop {
            c.send(status.as_bytes());
            if b64_member(c.line(), "out-data").is_some_and(|d| d.contains(&key[0])) {
                break;
            }
        }
        out.push(t.elapsed().as_secs_f64());
    }
    c.ret(&format!("{{\"execute\":\"guest-exec-terminate\",\"arguments\":{{\"pid\":{pid}}}}}\n"));
    c.poll_until_exited_len(pid, Some(10.0));
    out
}

/// Long-polls a streamed process to its end; returns (status calls, bytes).
fn collect_stream(c: &mut Client, pid: i64) -> (usize, usize) {
    let req = format!("{{\"execute\":\"guest-exec-status\",\"arguments\":{{\"pid\":{pid},\"wait\":10}}}}\n");
    let mut calls = 0;
    let mut bytes = 0;
    loop {
        calls += 1;
        c.send(req.as_bytes());
        let l = c.line();
        if let Some(i) = memchr::memmem::find(l, b"\"out-data\": \"") {
            let s = i + 13;
            let e = s + memchr::memchr(b'"', &l[s..]).unwrap();
            let pad = l[s..e].iter().rev().take_while(|&&b| b == b'=').count();
            bytes += (e - s) / 4 * 3 - pad;
        }
        if memchr::memmem::find(l, b"\"exited\": true").is_some() {
            break;
        }
    }
    (calls, bytes)
}

fn check_capture(reply: &[u8], want: usize, who: &str) {
    let got = b64_member(reply, "out-data").map(|d| d.len()).unwrap_or(0);
    if got != want {
        eprintln!("WARNING: {who} captured {got} bytes, expected {want}");
    }
}

/// input-data into `wc -c`; returns (seconds, status calls, wc's answer).
fn input(c: &mut Client, req: &[u8], wait: Option<f64>) -> (f64, usize, String) {
    let t = Instant::now();
    c.send(req);
    let v: serde_json::Value = serde_json::from_slice(c.line()).expect("exec reply");
    let pid = v["return"]["pid"].as_i64().unwrap_or_else(|| panic!("guest-exec failed: {v}"));
    let (calls, reply) = c.poll_until_exited(pid, wait);
    let el = t.elapsed().as_secs_f64();
    let out =
        b64_member(&reply, "out-data").map(|d| String::from_utf8_lossy(&d).trim().to_string()).unwrap_or_default();
    (el, calls, out)
}

/// PIPELINED_PINGS pings in one write (from a thread), replies counted as
/// they come: pings per second.
fn pipelined(c: &mut Client, n: usize) -> f64 {
    let mut w = c.sock.try_clone().expect("clone socket");
    let t = Instant::now();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let buf = PING.repeat(n);
        w.write_all(&buf).expect("write pings");
    });
    for _ in 0..n {
        c.line();
    }
    let el = t.elapsed().as_secs_f64();
    writer.join().unwrap();
    n as f64 / el
}

// ---------------------------------------------------------------------------

struct Ctx {
    reps: Reps,
    root: PathBuf,
    qga_bin: PathBuf,
    ref_bin: Option<PathBuf>,
    rows: Vec<Row>,
    extra: Vec<String>,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--echo-server") {
        floors::echo_server_main(&args[i + 1]);
    }
    if args.iter().any(|a| a == "--list") {
        // `cargo bench -- --list` convention: nothing to list individually.
        println!("agents: bench");
        return;
    }
    let quick = std::env::var("QGA_BENCH_QUICK").is_ok_and(|v| v == "1");
    let qga_bin = std::env::var_os("QGA_BENCH_BIN")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_qga")));
    let ref_bin = find_ref();
    let root = std::env::temp_dir().join(format!("qga-bench.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("scratch root");

    let mut out = String::new();
    let _ = writeln!(out, "# qga vs qemu-ga: benchmark run\n");
    if ref_bin.is_none() {
        let msg = "qemu-ga not found: running qga only. To compare, fetch Debian's qemu-ga (nothing is \
                   installed system-wide) with `scripts/fetch-qemu-ga.sh` (puts it in \
                   target/ref/qemu-ga-10/usr/sbin/qemu-ga), or point QGA_BENCH_REF at a qemu-ga binary.";
        eprintln!("{msg}");
        let _ = writeln!(out, "> {msg}\n");
    }
    progress("measuring background load (1 s)");
    let bg_before = sys::background_busy(Duration::from_secs(1));
    let load_before = sys::loadavg();

    let mut ctx =
        Ctx { reps: Reps::new(quick), root: root.clone(), qga_bin, ref_bin, rows: Vec::new(), extra: Vec::new() };
    let t_run = Instant::now();
    let (_, busy_during) = sys::machine_busy_during(|| run_all(&mut ctx));
    let run_s = t_run.elapsed().as_secs_f64();
    let bg_after = sys::background_busy(Duration::from_secs(1));
    let load_after = sys::loadavg();
    let _ = std::fs::remove_dir_all(&root);

    // ---- machine -------------------------------------------------------
    let _ = writeln!(out, "- date: {}", utc_date());
    let _ = writeln!(out, "- machine: {} CPUs, {}, kernel {}", sys::nproc(), sys::cpu_model(), sys::kernel());
    let _ = writeln!(out, "- qga: `{}` ({})", ctx.qga_bin.display(), version_of(&ctx.qga_bin));
    match &ctx.ref_bin {
        Some(r) => {
            let _ = writeln!(out, "- qemu-ga: `{}` ({})", r.display(), version_of(r));
        }
        None => {
            let _ = writeln!(out, "- qemu-ga: not found (qga-only run)");
        }
    }
    let loaded = bg_before > 0.15 || bg_after > 0.15;
    let _ = writeln!(
        out,
        "- load: background CPU busy {:.0}% before / {:.0}% after the run (of all CPUs, measured over 1 s while idle); \
         loadavg {} → {}; whole machine {:.0}% busy during the {:.0} s run{}{}",
        bg_before * 100.0,
        bg_after * 100.0,
        load_before,
        load_after,
        busy_during * 100.0,
        run_s,
        if loaded { " — **run made under load from other processes**" } else { "" },
        if quick { " — quick run (QGA_BENCH_QUICK=1, fewer repetitions)" } else { "" },
    );
    let _ = writeln!(
        out,
        "- figures are medians (p99 where marked) over repeated runs, contenders alternating; \
         noise: cv = robust coefficient of variation, 1.4826·MAD/median (q = qga, r = qemu-ga, f = floor), \
         NOISY when cv > 25% or p99/median > 10\n"
    );

    // ---- table ----------------------------------------------------------
    let _ = writeln!(out, "| workload | qga | qemu-ga | qga vs qemu-ga | floor | qga vs floor | noise | notes |");
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    let mut noisy_rows = Vec::new();
    for row in &ctx.rows {
        let (noise, noisy) = noise_text(row);
        if noisy {
            noisy_rows.push(row.name.clone());
        }
        let vs_floor = row.vs_floor().map(|r| format!("{:.0}% of floor", r * 100.0)).unwrap_or_else(|| "—".into());
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            row.name,
            fmt(row.unit, row.val(&row.qga)),
            fmt(row.unit, row.val(&row.refa)),
            ratio_text(row.vs_ref(), row.unit),
            fmt(row.unit, row.val(&row.floor)),
            vs_floor,
            noise,
            row.note
        );
    }
    if !noisy_rows.is_empty() {
        let _ = writeln!(out, "\nNoisy figures (spread above the thresholds): {}.", noisy_rows.join("; "));
    }
    for e in &ctx.extra {
        let _ = writeln!(out, "\n{e}");
    }

    // ---- targets --------------------------------------------------------
    let _ = writeln!(out, "\n## Targets (informational: a benchmark never fails)\n");
    let _ = writeln!(out, "| target | measured | verdict |");
    let _ = writeln!(out, "|---|---|---|");
    for (name, measured, pass) in targets(&ctx) {
        let verdict = match pass {
            Some(true) => "PASS",
            Some(false) => "MISS",
            None => "n/a",
        };
        let _ = writeln!(out, "| {name} | {measured} | {verdict} |");
    }

    println!("{out}");
    let path = std::env::var_os("QGA_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir().join("target/bench/agents.md"));
    if let Some(d) = path.parent() {
        let _ = std::fs::create_dir_all(d);
    }
    if std::fs::write(&path, &out).is_ok() {
        eprintln!("report written to {}", path.display());
    }
}

fn find_row<'a>(ctx: &'a Ctx, name: &str) -> Option<&'a Row> {
    ctx.rows.iter().find(|r| r.name == name)
}

type Target = (String, String, Option<bool>);

fn targets(ctx: &Ctx) -> Vec<Target> {
    let mut t: Vec<Target> = Vec::new();
    let ratio = |name: &str, min: f64, label: &str, t: &mut Vec<Target>| {
        let r = find_row(ctx, name).and_then(|r| r.vs_ref());
        t.push((
            format!("{label} ≥ {min}× qemu-ga"),
            r.map(|r| format!("{r:.1}×")).unwrap_or_else(|| "no qemu-ga".into()),
            r.map(|r| r >= min),
        ));
    };
    ratio(ROW_CAPTURE, 10.0, "capture 8 MiB (polling)", &mut t);
    let f = find_row(ctx, ROW_CAPTURE).and_then(|r| r.vs_floor());
    t.push((
        "capture 8 MiB ≥ 30% of the pipe floor (spawn cat → pipe)".into(),
        f.map(|f| format!("{:.0}%", f * 100.0)).unwrap_or_default(),
        f.map(|f| f >= 0.30),
    ));
    ratio(ROW_INPUT, 10.0, "input-data 8 MiB → wc -c (polling)", &mut t);
    ratio(ROW_PIPELINED, 3.0, "pipelined guest-ping", &mut t);
    let f = find_row(ctx, ROW_EXEC_WAIT).and_then(|r| r.vs_floor());
    t.push((
        "guest-exec /bin/true with `wait` ≥ 80% of posix_spawn+waitpid".into(),
        f.map(|f| format!("{:.0}%", f * 100.0)).unwrap_or_default(),
        f.map(|f| f >= 0.80),
    ));
    let q = |name: &str| find_row(ctx, name).and_then(|r| r.val(&r.qga));
    for (row, tag) in [(ROW_RSS, ""), (ROW_RSS_STATIC, " (static build)")] {
        if let Some(rss) = q(row) {
            t.push((format!("RSS after start ≤ 1 MiB{tag}"), fmt(Unit::KiB, Some(rss)), Some(rss <= 1024.0)));
        }
    }
    let peak = q(ROW_PEAK);
    t.push(("peak RSS for a 16 MiB capture ≤ 40 MiB".into(), fmt(Unit::KiB, peak), peak.map(|v| v <= 40.0 * 1024.0)));
    let st = find_row(ctx, ROW_STATIC).and_then(|r| r.val(&r.qga));
    t.push((
        "static binary ≤ 1 MiB".into(),
        st.map(|v| format!("{v:.0} B")).unwrap_or_else(|| "static build not found (make static)".into()),
        st.map(|v| v <= MIB as f64),
    ));
    for (row, tag) in [(ROW_START, ""), (ROW_START_STATIC, " (static build)")] {
        if let Some(s) = q(row) {
            t.push((format!("start → first reply ≤ 1 ms{tag}"), fmt(Unit::Time, Some(s)), Some(s <= 1e-3)));
        }
    }
    t
}

const ROW_START: &str = "start → first guest-ping reply";
const ROW_RSS: &str = "RSS after start (VmRSS)";
const ROW_START_STATIC: &str = "start → first guest-ping reply, static build";
const ROW_RSS_STATIC: &str = "RSS after start (VmRSS), static build";
const ROW_PEAK: &str = "peak RSS, 16 MiB capture (VmHWM)";
const ROW_PIPELINED: &str = "guest-ping pipelined (10,000 in one write)";
const ROW_EXEC_WAIT: &str = "guest-exec /bin/true → exited, `wait` (qga)";
const ROW_CAPTURE: &str = "capture 8 MiB from cat (polling)";
const ROW_INPUT: &str = "input-data 8 MiB → wc -c (polling)";
const ROW_STATIC: &str = "binary size, static build";

fn run_all(ctx: &mut Ctx) {
    let reps = ctx.reps;
    let root = ctx.root.clone();
    let qbin = ctx.qga_bin.clone();
    let rbin = ctx.ref_bin.clone();
    let has_ref = rbin.is_some();

    // ---- data ------------------------------------------------------------
    let cap_file = root.join("capture-8m.bin");
    std::fs::write(&cap_file, pseudo_random(CAPTURE_LEN, 1)).unwrap();
    let peak_file = root.join("capture-16m.bin");
    std::fs::write(&peak_file, pseudo_random(PEAK_LEN, 2)).unwrap();
    let input_data = pseudo_random(INPUT_LEN, 3);
    let input_req = format!(
        "{{\"execute\":\"guest-exec\",\"arguments\":{{\"path\":\"/usr/bin/wc\",\"arg\":[\"-c\"],\"input-data\":\"{}\",\"capture-output\":true}}}}\n",
        base64::engine::general_purpose::STANDARD.encode(&input_data)
    );

    // ---- binaries ----------------------------------------------------------
    let mut bin_row =
        Row::new("binary size (as run)", Unit::Bytes).qga(Samples(vec![sys::file_size(&qbin).unwrap_or(0) as f64]));
    let qlibs = sys::ldd(&qbin);
    let mut libs_note = format!("qga needs {}: {}", qlibs.len(), qlibs.join(", "));
    if let Some(r) = &rbin {
        bin_row.refa = Some(Samples(vec![sys::file_size(r).unwrap_or(0) as f64]));
        let rl = sys::ldd(r);
        let _ = write!(libs_note, "; qemu-ga needs {}: {}", rl.len(), rl.join(", "));
    }
    let mut lib_row = Row::new("shared libraries (ldd)", Unit::Count).qga(Samples(vec![qlibs.len() as f64]));
    if let Some(r) = &rbin {
        lib_row.refa = Some(Samples(vec![sys::ldd(r).len() as f64]));
    }
    ctx.rows.push(bin_row);
    ctx.rows.push(lib_row.note(libs_note));
    let md = manifest_dir();
    let statics = [
        md.join("target/static/qga"),
        md.join("target/x86_64-unknown-linux-gnu/release/qga"),
        md.join("target/x86_64-unknown-linux-musl/release/qga"),
    ];
    let static_bin = statics.iter().find(|p| p.exists()).cloned();
    match &static_bin {
        Some(p) => {
            let l = sys::ldd(p);
            ctx.rows.push(
                Row::new(ROW_STATIC, Unit::Bytes).qga(Samples(vec![sys::file_size(p).unwrap_or(0) as f64])).note(
                    format!(
                        "`{}`; {}",
                        p.strip_prefix(&md).unwrap_or(p).display(),
                        if l.is_empty() { "no shared libraries".to_string() } else { format!("ldd: {}", l.join(", ")) }
                    ),
                ),
            );
        }
        None => ctx.extra.push("Static build not found (run `make static` to measure it).".into()),
    }

    // ---- start → first reply, RSS after start ----------------------------
    progress("start → first reply");
    let (mut s_q, mut s_r, mut s_f, mut s_s) = (Samples::new(), Samples::new(), Samples::new(), Samples::new());
    let (mut rss_q, mut rss_r, mut rss_s) = (Samples::new(), Samples::new(), Samples::new());
    let mut threads = (0, 0);
    let (mut an_q, mut an_r, mut an_s, mut ps_q, mut ps_r, mut ps_s) =
        (Samples::new(), Samples::new(), Samples::new(), Samples::new(), Samples::new(), Samples::new());
    alternate(reps.start, 4, |who| match who {
        3 => {
            if let Some(sb) = &static_bin {
                let a = Agent::start("qga-static", sb, &root);
                s_s.push(a.start_s);
                rss_s.push(a.rss_kib as f64);
                an_s.push(a.anon_kib as f64);
                ps_s.push(a.pss_kib as f64);
                a.stop();
            }
        }
        0 => {
            let e = Echo::start(&root);
            s_f.push(e.start_s);
            e.stop();
        }
        1 => {
            let a = Agent::start("qga", &qbin, &root);
            s_q.push(a.start_s);
            rss_q.push(a.rss_kib as f64);
            an_q.push(a.anon_kib as f64);
            ps_q.push(a.pss_kib as f64);
            threads.0 = sys::threads(a.pid());
            a.stop();
        }
        2 => {
            if let Some(r) = &rbin {
                let a = Agent::start("qemu-ga", r, &root);
                s_r.push(a.start_s);
                rss_r.push(a.rss_kib as f64);
                an_r.push(a.anon_kib as f64);
                ps_r.push(a.pss_kib as f64);
                threads.1 = sys::threads(a.pid());
                a.stop();
            }
        }
        _ => {}
    });
    let opt = |s: Samples| if has_ref { Some(s) } else { None };
    ctx.rows.push(
        Row::new(ROW_START, Unit::Time)
            .qga(s_q)
            .refa(opt(s_r.clone()))
            .floor(s_f.clone())
            .note("floor: spawn a minimal Rust echo server → first echo"),
    );
    ctx.rows.push(
        Row::new(ROW_RSS, Unit::KiB)
            .qga(rss_q)
            .refa(opt(rss_r.clone()))
            .note(format!(
                "of which private (RssAnon): qga {:.0} KiB, qemu-ga {:.0} KiB; Pss qga {:.0} KiB, qemu-ga {:.0} KiB; threads: qga {}, qemu-ga {}",
                an_q.median(),
                an_r.median(),
                ps_q.median(),
                ps_r.median(),
                threads.0,
                threads.1
            )),
    );
    if static_bin.is_some() {
        ctx.rows.push(
            Row::new(ROW_START_STATIC, Unit::Time)
                .qga(s_s)
                .refa(opt(s_r.clone()))
                .floor(s_f.clone())
                .note("the static build"),
        );
        ctx.rows.push(Row::new(ROW_RSS_STATIC, Unit::KiB).qga(rss_s).refa(opt(rss_r.clone())).note(format!(
            "the static build; RssAnon {:.0} KiB, Pss {:.0} KiB",
            an_s.median(),
            ps_s.median()
        )));
    }

    // ---- idle CPU over 5 s (fresh agents, client connected) ---------------
    progress("idle CPU");
    {
        let qa = Agent::start("qga", &qbin, &root);
        let ra = rbin.as_ref().map(|r| Agent::start("qemu-ga", r, &root));
        std::thread::sleep(Duration::from_millis(200));
        let q0 = sys::cpu_use(qa.pid());
        let r0 = ra.as_ref().map(|a| sys::cpu_use(a.pid()));
        std::thread::sleep(Duration::from_secs(reps.idle_s));
        let q1 = sys::cpu_use(qa.pid());
        let r1 = ra.as_ref().map(|a| sys::cpu_use(a.pid()));
        let ms = |a: sys::CpuUse, b: sys::CpuUse| b.ticks_ms - a.ticks_ms;
        let mut row = Row::new(&format!("idle CPU over {} s (utime+stime)", reps.idle_s), Unit::Ms)
            .qga(Samples(vec![ms(q0, q1)]));
        row.refa = r0.zip(r1).map(|(a, b)| Samples(vec![ms(a, b)]));
        let mut note = format!(
            "run time (schedstat) qga {:.0} µs / {} wake-ups",
            (q1.sched_ns - q0.sched_ns) as f64 / 1e3,
            q1.switches - q0.switches
        );
        if let (Some(a), Some(b)) = (r0, r1) {
            let _ = write!(
                note,
                "; qemu-ga {:.0} µs / {} wake-ups",
                (b.sched_ns - a.sched_ns) as f64 / 1e3,
                b.switches - a.switches
            );
        }
        row.lower_is_better = true;
        ctx.rows.push(row.note(note));
        qa.stop();
        if let Some(a) = ra {
            a.stop();
        }
    }

    // ---- peak RSS during a 16 MiB capture (fresh agents) ------------------
    progress("peak RSS, 16 MiB capture");
    let (mut pk_q, mut pk_r) = (Samples::new(), Samples::new());
    let mut after = (0u64, 0u64);
    alternate(reps.peak, 2, |who| {
        let (label, bin) = match (who, &rbin) {
            (0, _) => ("qga", &qbin),
            (_, Some(r)) => ("qemu-ga", r),
            _ => return,
        };
        let mut a = Agent::start(label, bin, &root);
        let (_, _, reply) = capture(&mut a.client, &peak_file, None);
        let hwm = sys::vm_hwm_kib(a.pid()).unwrap_or(0) as f64;
        let rss_after = sys::vm_rss_kib(a.pid()).unwrap_or(0);
        check_capture(&reply, PEAK_LEN, label);
        drop(reply);
        if who == 0 {
            pk_q.push(hwm);
            after.0 = rss_after;
        } else {
            pk_r.push(hwm);
            after.1 = rss_after;
        }
        a.stop();
    });
    ctx.rows.push(
        Row::new(ROW_PEAK, Unit::KiB)
            .qga(pk_q)
            .refa(opt(pk_r))
            .note(format!("VmRSS after the reply: qga {} KiB, qemu-ga {} KiB", after.0, after.1)),
    );

    // ---- persistent agents for the rest -------------------------------------
    let mut qa = Agent::start("qga", &qbin, &root);
    let mut ra = rbin.as_ref().map(|r| Agent::start("qemu-ga", r, &root));
    let mut echo = Echo::start(&root);

    // ---- guest-ping round trip -------------------------------------------------
    for pinned in [false, true] {
        progress(if pinned { "guest-ping RTT, pinned to CPU 0" } else { "guest-ping RTT" });
        if pinned {
            sys::set_affinity(0, &[0]);
            sys::set_affinity(qa.pid(), &[0]);
            sys::set_affinity(echo.pid(), &[0]);
            if let Some(a) = &ra {
                sys::set_affinity(a.pid(), &[0]);
            }
        }
        let (mut p_q, mut p_r, mut p_f) = (Samples::new(), Samples::new(), Samples::new());
        for _ in 0..200 {
            qa.client.ping();
            echo.client.ping();
            if let Some(a) = ra.as_mut() {
                a.client.ping();
            }
        }
        alternate(reps.ping_blocks, 3, |who| {
            for _ in 0..reps.ping_per_block {
                match who {
                    0 => p_f.push(echo.rtt()),
                    1 => {
                        let t = Instant::now();
                        qa.client.ping();
                        p_q.push(t.elapsed().as_secs_f64());
                    }
                    _ => {
                        if let Some(a) = ra.as_mut() {
                            let t = Instant::now();
                            a.client.ping();
                            p_r.push(t.elapsed().as_secs_f64());
                        }
                    }
                }
            }
        });
        if pinned {
            let all = sys::all_cpus();
            sys::set_affinity(0, &all);
            sys::set_affinity(qa.pid(), &all);
            sys::set_affinity(echo.pid(), &all);
            if let Some(a) = &ra {
                sys::set_affinity(a.pid(), &all);
            }
        }
        let tag = if pinned { ", client+agent pinned to one CPU" } else { "" };
        let n = p_q.len();
        ctx.rows.push(
            Row::new(&format!("guest-ping round trip{tag}"), Unit::Time)
                .qga(p_q.clone())
                .refa(opt(p_r.clone()))
                .floor(p_f.clone())
                .note(format!("{n} pings each; floor: echo server over a unix socket")),
        );
        ctx.rows.push(
            Row::new(&format!("guest-ping round trip p99{tag}"), Unit::Time).p99().qga(p_q).refa(opt(p_r)).floor(p_f),
        );
    }

    // ---- pipelined ping ---------------------------------------------------------
    progress("pipelined guest-ping");
    let (mut pp_q, mut pp_r, mut pp_f) = (Samples::new(), Samples::new(), Samples::new());
    alternate(reps.pipelined, 3, |who| match who {
        0 => pp_f.push(pipelined(&mut echo.client, PIPELINED_PINGS)),
        1 => pp_q.push(pipelined(&mut qa.client, PIPELINED_PINGS)),
        _ => {
            if let Some(a) = ra.as_mut() {
                pp_r.push(pipelined(&mut a.client, PIPELINED_PINGS));
            }
        }
    });
    ctx.rows.push(
        Row::new(ROW_PIPELINED, Unit::Rate)
            .qga(pp_q)
            .refa(opt(pp_r))
            .floor(pp_f)
            .note("floor: the echo server echoing the same bytes"),
    );

    // ---- guest-exec /bin/true sequential ----------------------------------------
    progress("guest-exec /bin/true sequential");
    let (mut e_q, mut e_w, mut e_r, mut e_f) = (Samples::new(), Samples::new(), Samples::new(), Samples::new());
    let (mut c_q, mut c_r) = (Samples::new(), Samples::new());
    for _ in 0..5 {
        exec_true(&mut qa.client, None);
        if let Some(a) = ra.as_mut() {
            exec_true(&mut a.client, None);
        }
    }
    alternate(reps.exec_blocks, 4, |who| match who {
        0 => e_f.extend(floors::spawn_true_seq(reps.exec_per_block)),
        1 => (0..reps.exec_per_block).for_each(|_| {
            let (t, c) = exec_true(&mut qa.client, None);
            e_q.push(t);
            c_q.push(c as f64);
        }),
        2 => (0..reps.exec_per_block).for_each(|_| e_w.push(exec_true(&mut qa.client, Some(10.0)).0)),
        _ => {
            if let Some(a) = ra.as_mut() {
                (0..reps.exec_per_block).for_each(|_| {
                    let (t, c) = exec_true(&mut a.client, None);
                    e_r.push(t);
                    c_r.push(c as f64);
                })
            }
        }
    });
    let calls_note = format!(
        "status calls per exec (median/max): qga {:.0}/{:.0}, qemu-ga {:.0}/{:.0}; floor: posix_spawn+waitpid",
        c_q.median(),
        c_q.pct(100.0),
        c_r.median(),
        c_r.pct(100.0)
    );
    ctx.rows.push(
        Row::new("guest-exec /bin/true → exited, polling", Unit::Time)
            .qga(e_q.clone())
            .refa(opt(e_r.clone()))
            .floor(e_f.clone())
            .note(calls_note),
    );
    ctx.rows.push(
        Row::new("guest-exec /bin/true → exited, polling, p99", Unit::Time)
            .p99()
            .qga(e_q)
            .refa(opt(e_r.clone()))
            .floor(e_f.clone()),
    );
    ctx.rows.push(
        Row::new(ROW_EXEC_WAIT, Unit::Time)
            .qga(e_w.clone())
            .refa(opt(e_r))
            .floor(e_f.clone())
            .note("qemu-ga column: its polling figure (it has no `wait`)"),
    );

    // ---- the same under a confinement profile (exec policy) -----------------
    progress("guest-exec /bin/true under a confinement profile");
    let policy = root.join("bench-policy.conf");
    std::fs::write(&policy, BENCH_POLICY).unwrap();
    let mut pa = Agent::start_with("qga-policy", &qbin, &root, &["--exec-policy".as_ref(), policy.as_os_str()]);
    let (mut p_w, mut p_plain) = (Samples::new(), Samples::new());
    for _ in 0..5 {
        exec_true_confined(&mut pa.client, Some(10.0));
    }
    alternate(reps.exec_blocks, 2, |who| match who {
        0 => (0..reps.exec_per_block).for_each(|_| p_plain.push(exec_true(&mut pa.client, Some(10.0)).0)),
        _ => (0..reps.exec_per_block).for_each(|_| p_w.push(exec_true_confined(&mut pa.client, Some(10.0)))),
    });
    pa.stop();
    let per_s = |s: &Samples| if s.median() > 0.0 { 1.0 / s.median() } else { 0.0 };
    let note = format!(
        "exec/s: {:.0} without a profile, {:.0} with one (same agent, policy loaded); {:.0} with no policy at all. \
         Profile: no_new_privs, 2 rlimits, seccomp deny-dangerous, Landlock best-effort (read /, write /tmp); \
         it takes the fork path instead of posix_spawn",
        per_s(&p_plain),
        per_s(&p_w),
        per_s(&e_w)
    );
    ctx.rows.push(
        Row::new("guest-exec /bin/true → exited, `wait`, confinement profile", Unit::Time)
            .qga(p_w)
            .floor(e_f)
            .note(note),
    );

    // ---- 50 in flight -------------------------------------------------------------
    progress("guest-exec ×50 in flight");
    let (mut i_q, mut i_w, mut i_r, mut i_f) = (Samples::new(), Samples::new(), Samples::new(), Samples::new());
    alternate(reps.inflight, 4, |who| match who {
        0 => i_f.push(floors::spawn_true_inflight(INFLIGHT)),
        1 => i_q.push(exec_inflight(&mut qa.client, INFLIGHT, None).0),
        2 => i_w.push(exec_inflight(&mut qa.client, INFLIGHT, Some(10.0)).0),
        _ => {
            if let Some(a) = ra.as_mut() {
                i_r.push(exec_inflight(&mut a.client, INFLIGHT, None).0)
            }
        }
    });
    ctx.rows.push(
        Row::new("guest-exec /bin/true ×50 in flight → all exited, polling", Unit::Time)
            .qga(i_q)
            .refa(opt(i_r.clone()))
            .floor(i_f.clone())
            .note("50 guest-exec in one write, then rounds of pipelined status; floor: 50 posix_spawn then 50 waitpid"),
    );
    ctx.rows.push(
        Row::new("guest-exec /bin/true ×50 in flight, `wait` (qga)", Unit::Time)
            .qga(i_w)
            .refa(opt(i_r))
            .floor(i_f)
            .note("one status with `wait` per pid, in turn"),
    );

    // ---- capture 8 MiB ----------------------------------------------------------------
    progress("capture 8 MiB");
    let (mut k_q, mut k_w, mut k_s, mut k_r, mut k_f, mut k_p) =
        (Samples::new(), Samples::new(), Samples::new(), Samples::new(), Samples::new(), Samples::new());
    let (mut kc_q, mut kc_r, mut kc_s) = (Samples::new(), Samples::new(), Samples::new());
    let mut buf = vec![0u8; 64 << 10];
    alternate(reps.capture, 6, |who| match who {
        0 => k_f.push(floors::spawn_cat(&cap_file, CAPTURE_LEN, &mut buf)),
        1 => k_p.push(floors::pipe_raw(CAPTURE_LEN)),
        2 => {
            let (t, c, reply) = capture(&mut qa.client, &cap_file, None);
            k_q.push(t);
            kc_q.push(c as f64);
            check_capture(&reply, CAPTURE_LEN, "qga");
        }
        3 => {
            let (t, _, reply) = capture(&mut qa.client, &cap_file, Some(10.0));
            k_w.push(t);
            check_capture(&reply, CAPTURE_LEN, "qga (wait)");
        }
        4 => {
            let (t, c, n) = capture_stream(&mut qa.client, &cap_file);
            k_s.push(t);
            kc_s.push(c as f64);
            if n != CAPTURE_LEN {
                eprintln!("WARNING: qga stream captured {n} bytes");
            }
        }
        _ => {
            if let Some(a) = ra.as_mut() {
                let (t, c, reply) = capture(&mut a.client, &cap_file, None);
                k_r.push(t);
                kc_r.push(c as f64);
                check_capture(&reply, CAPTURE_LEN, "qemu-ga");
                a.client.shrink();
            }
        }
    });
    qa.client.shrink();
    let mibs = |s: &Samples| CAPTURE_LEN as f64 / MIB as f64 / s.median();
    let cap_note = format!(
        "qga {:.0} MiB/s, qemu-ga {:.0} MiB/s, floor {:.0} MiB/s; bare pipe (no process) {} = {:.0} MiB/s, qga at {:.0}% of it; status calls qga {:.0}, qemu-ga {:.0}",
        mibs(&k_q),
        if has_ref { mibs(&k_r) } else { f64::NAN },
        mibs(&k_f),
        fmt(Unit::Time, Some(k_p.median())),
        mibs(&k_p),
        k_p.median() / k_q.median() * 100.0,
        kc_q.median(),
        kc_r.median()
    );
    ctx.rows.push(Row::new(ROW_CAPTURE, Unit::Time).qga(k_q).refa(opt(k_r.clone())).floor(k_f.clone()).note(cap_note));
    ctx.rows.push(
        Row::new("capture 8 MiB from cat, `wait` (qga)", Unit::Time)
            .qga(k_w)
            .refa(opt(k_r.clone()))
            .floor(k_f.clone())
            .note("one status call with `wait`"),
    );
    ctx.rows.push(
        Row::new("capture 8 MiB from cat, `stream` + `wait` (qga)", Unit::Time)
            .qga(k_s)
            .refa(opt(k_r))
            .floor(k_f)
            .note(format!("{:.0} status calls (1 MiB window)", kc_s.median())),
    );

    // ---- input-data 8 MiB → wc -c ------------------------------------------------------
    progress("input-data 8 MiB");
    let (mut n_q, mut n_w, mut n_r, mut n_f) = (Samples::new(), Samples::new(), Samples::new(), Samples::new());
    let want = INPUT_LEN.to_string();
    alternate(reps.input, 4, |who| match who {
        0 => n_f.push(floors::spawn_wc(&input_data)),
        1 | 2 => {
            let wait = if who == 2 { Some(10.0) } else { None };
            let (t, _, out) = input(&mut qa.client, input_req.as_bytes(), wait);
            if out != want {
                eprintln!("WARNING: qga wc -c said {out:?}");
            }
            if who == 1 { &mut n_q } else { &mut n_w }.push(t);
        }
        _ => {
            if let Some(a) = ra.as_mut() {
                let (t, _, out) = input(&mut a.client, input_req.as_bytes(), None);
                if out != want {
                    eprintln!("WARNING: qemu-ga wc -c said {out:?}");
                }
                n_r.push(t);
            }
        }
    });
    let mibs = |s: &Samples| INPUT_LEN as f64 / MIB as f64 / s.median();
    let rss_now = |pid: i32| sys::vm_rss_kib(pid).map(|v| format!("{v} KiB")).unwrap_or_else(|| "—".into());
    let note = format!(
        "request is {:.1} MB of JSON; qga {:.0} MiB/s, floor (posix_spawn wc -c, pipe) {:.0} MiB/s; VmRSS afterwards qga {}, qemu-ga {}",
        input_req.len() as f64 / 1e6,
        mibs(&n_q),
        mibs(&n_f),
        rss_now(qa.pid()),
        ra.as_ref().map(|a| rss_now(a.pid())).unwrap_or_else(|| "—".into())
    );
    ctx.rows.push(Row::new(ROW_INPUT, Unit::Time).qga(n_q).refa(opt(n_r.clone())).floor(n_f.clone()).note(note));
    ctx.rows.push(Row::new("input-data 8 MiB → wc -c, `wait` (qga)", Unit::Time).qga(n_w).refa(opt(n_r)).floor(n_f));

    // ---- terminal (qga `tty`) ----------------------------------------------------------
    progress("terminal");
    let (mut y_t, mut y_s, mut y_ft, mut y_fp) = (Samples::new(), Samples::new(), Samples::new(), Samples::new());
    alternate(reps.capture, 4, |who| match who {
        0 | 1 => {
            let (t, _, n) = head_stream(&mut qa.client, who == 0);
            if n != CAPTURE_LEN {
                eprintln!("WARNING: qga {} delivered {n} bytes", if who == 0 { "tty" } else { "stream" });
            }
            if who == 0 { &mut y_t } else { &mut y_s }.push(t);
        }
        2 => y_ft.push(head_floor(true)),
        _ => y_fp.push(head_floor(false)),
    });
    qa.client.shrink();
    let mibs = |s: &Samples| CAPTURE_LEN as f64 / MIB as f64 / s.median();
    let tty_note = format!(
        "`head -c 8M /dev/zero` on a pty: {:.0} MiB/s, {:.0} % of the same bytes through `stream` pipes in this run; \
         floor: a bare reader of a pty master (no agent) {:.0} MiB/s",
        mibs(&y_t),
        y_s.median() / y_t.median() * 100.0,
        mibs(&y_ft)
    );
    let pipe_note = format!(
        "the same `head` through `stream` pipes: {:.0} MiB/s; floor: a bare pipe reader {:.0} MiB/s \
         (a bare pty reader gets {:.0} % of that: N_TTY hands out 4 KiB per read, a pty holds ~12 KiB)",
        mibs(&y_s),
        mibs(&y_fp),
        y_fp.median() / y_ft.median() * 100.0
    );
    ctx.rows.push(
        Row::new("terminal: 8 MiB of output through a pty (`tty`, qga)", Unit::Time)
            .qga(y_t)
            .floor(y_ft)
            .note(tty_note),
    );
    ctx.rows.push(
        Row::new("terminal: the same 8 MiB through `stream` pipes (qga)", Unit::Time)
            .qga(y_s)
            .floor(y_fp)
            .note(pipe_note),
    );
    let keys = keystrokes(&mut qa.client, 200);
    let key_note = format!(
        "one byte via guest-exec-input → `cat` on a raw pty → status `wait`; p99 {}",
        fmt(Unit::Time, Some(keys.pct(99.0)))
    );
    ctx.rows.push(Row::new("terminal: keystroke round trip (`tty`, qga)", Unit::Time).qga(keys).note(key_note));

    progress("done");
    qa.stop();
    if let Some(a) = ra {
        a.stop();
    }
    echo.stop();
}
