//! Issue 14: `guest-exec` on a pseudo-terminal (`tty`, `rows`, `cols`),
//! `guest-exec-resize`, and the `rusage` and `env-merge` results, over the
//! protocol. Every wait is for a condition (status `wait` long-polls) with
//! a generous deadline; nothing sleeps and then asserts.

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(120);

fn skip_on_reference() -> bool {
    if is_reference_agent() {
        skip::not_applicable("terminals, rusage and env-merge are qga-only");
        return true;
    }
    false
}

/// A running `tty` exec: its terminal output so far and its final status.
struct Term {
    pid: i64,
    out: Vec<u8>,
    fin: Option<Value>,
}

impl Term {
    fn start(c: &mut Conn, mut args: Value) -> Term {
        args["tty"] = json!(true);
        Term { pid: c.exec(args), out: Vec::new(), fin: None }
    }

    /// One long-poll: new terminal bytes (never err-data) or the end.
    fn poll(&mut self, c: &mut Conn) {
        let st = c.ok("guest-exec-status", json!({"pid": self.pid, "wait": 10}));
        assert!(st.get("err-data").is_none(), "a terminal has no separate stderr: {st}");
        let chunk = data_of(&st, "out-data");
        assert!(chunk.len() <= 1 << 20, "chunk larger than the 1 MiB window: {}", chunk.len());
        self.out.extend_from_slice(&chunk);
        if st["exited"] == json!(true) {
            self.fin = Some(st);
        }
    }

    /// Polls until the output so far satisfies `cond`.
    #[track_caller]
    fn until(&mut self, c: &mut Conn, what: &str, cond: impl Fn(&str) -> bool) {
        let end = Instant::now() + DEADLINE;
        while !cond(&String::from_utf8_lossy(&self.out)) {
            assert!(self.fin.is_none(), "exited before {what}: {:?}; output {:?}", self.fin, self.text());
            assert!(Instant::now() < end, "no {what} within {DEADLINE:?}; output {:?}", self.text());
            self.poll(c);
        }
    }

    /// Polls until the process has exited and the terminal is drained.
    fn finish(&mut self, c: &mut Conn) -> Value {
        let end = Instant::now() + DEADLINE;
        while self.fin.is_none() {
            assert!(Instant::now() < end, "pid {} did not exit; output {:?}", self.pid, self.text());
            self.poll(c);
        }
        self.fin.clone().unwrap_or_default()
    }

    fn input(&self, c: &mut Conn, data: &[u8]) {
        let r = c.ok("guest-exec-input", json!({"pid": self.pid, "input-data": b64encode(data)}));
        assert_eq!(r, json!({"count": data.len()}));
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.out).into_owned()
    }
}

/// A process's command name (/proc/PID/comm), empty once it is gone.
fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim_end().to_string()
}

/// The final status without the output keys.
fn result_of(st: &Value) -> Value {
    let mut r = st.clone();
    if let Some(o) = r.as_object_mut() {
        o.remove("out-data");
    }
    r
}

#[test]
fn a_tty_child_has_a_terminal_on_fds_0_to_2_and_term() {
    if skip_on_reference() {
        return;
    }
    let (_agent, mut c) = Agent::start();
    let script = "for fd in 0 1 2; do if [ -t $fd ]; then echo fd$fd=tty; fi; done; tty; echo TERM=$TERM; \
                  cut -d' ' -f6,5,8 /proc/$$/stat; echo SELF=$$";
    let mut t = Term::start(&mut c, json!({"path": "/bin/sh", "arg": ["-c", script]}));
    let st = t.finish(&mut c);
    assert_eq!(result_of(&st), json!({"exited": true, "exitcode": 0}), "output {:?}", t.text());
    let text = t.text();
    // The terminal turns each \n into \r\n.
    let lines: Vec<&str> = text.split("\r\n").collect();
    assert_eq!(&lines[..3], &["fd0=tty", "fd1=tty", "fd2=tty"], "{text:?}");
    let n = lines[3].strip_prefix("/dev/pts/").unwrap_or_else(|| panic!("`tty` printed {:?}", lines[3]));
    assert!(n.parse::<u32>().is_ok(), "`tty` printed {:?}", lines[3]);
    assert_eq!(lines[4], "TERM=xterm-256color");
    // A new session whose leader is the child, in the foreground of its terminal.
    let ids: Vec<&str> = lines[5].split_whitespace().collect();
    let me = lines[6].strip_prefix("SELF=").unwrap_or_default();
    assert_eq!(ids, [me, me, me], "pgrp, session and tpgid (/proc/PID/stat) are the child's pid: {text:?}");
    assert_eq!(me, t.pid.to_string());
    assert_eq!(lines[7], "", "{text:?}");

    // `capture-output` changes nothing (the terminal is the output), and
    // `input-data` is typed into the terminal (echoed, then cat's copy).
    for capture in [json!(true), json!("stdout"), json!("separated"), json!("merged"), json!(false)] {
        let mut t = Term::start(
            &mut c,
            json!({"path": "/bin/sh", "arg": ["-c", "echo out; echo err >&2"], "capture-output": capture}),
        );
        let st = t.finish(&mut c);
        assert_eq!(result_of(&st), json!({"exited": true, "exitcode": 0}));
        assert_eq!(t.text(), "out\r\nerr\r\n", "capture-output {capture}");
    }
    let mut t = Term::start(&mut c, json!({"path": "cat", "input-data": b64encode(b"typed\r\x04")}));
    let st = t.finish(&mut c);
    assert_eq!(result_of(&st), json!({"exited": true, "exitcode": 0}));
    assert_eq!(t.text(), "typed\r\ntyped\r\n");

    // `env` overrides TERM, and stderr goes to the terminal too.
    let mut t = Term::start(
        &mut c,
        json!({"path": "/bin/sh", "arg": ["-c", "echo TERM=$TERM; echo to-stderr >&2"], "env": ["TERM=vt100"]}),
    );
    t.finish(&mut c);
    assert_eq!(t.text(), "TERM=vt100\r\nto-stderr\r\n");
}

#[test]
fn default_size_stty_size_follows_resize_and_sigwinch_reaches_the_foreground_job() {
    if skip_on_reference() {
        return;
    }
    let (_agent, mut c) = Agent::start();
    let mut t = Term::start(&mut c, json!({"path": "stty", "arg": ["size"]}));
    t.finish(&mut c);
    assert_eq!(t.text(), "24 80\r\n", "default size");

    // The shell is the foreground job; `wait` returns for a trapped signal.
    let script = "trap 'echo WINCH $(stty size)' WINCH; echo READY $(stty size); \
                  while :; do sleep 1000 & wait $!; kill $! 2>/dev/null; done";
    let mut t = Term::start(&mut c, json!({"path": "/bin/sh", "arg": ["-c", script], "rows": 30, "cols": 100}));
    t.until(&mut c, "READY", |s| s.contains("READY 30 100\r\n"));
    for (i, (rows, cols)) in [(50, 132), (1, 1), (65535, 65535), (40, 90)].into_iter().enumerate() {
        assert_eq!(c.ok("guest-exec-resize", json!({"pid": t.pid, "rows": rows, "cols": cols})), json!({}));
        let want = format!("WINCH {rows} {cols}\r\n");
        t.until(&mut c, &want, |s| s.matches("WINCH").count() > i && s.contains(&want));
    }
    assert_eq!(t.text(), "READY 30 100\r\nWINCH 50 132\r\nWINCH 1 1\r\nWINCH 65535 65535\r\nWINCH 40 90\r\n");
    assert_eq!(c.ok("guest-exec-terminate", json!({"pid": t.pid})), json!({}));
    let st = t.finish(&mut c);
    assert_eq!(result_of(&st), json!({"exited": true, "signal": 9}));
}

#[test]
fn ctrl_c_and_ctrl_d_through_input() {
    if skip_on_reference() {
        return;
    }
    let (_agent, mut c) = Agent::start();
    // Ctrl-C: the terminal sends SIGINT to the foreground job and echoes ^C.
    let mut t = Term::start(&mut c, json!({"path": "/bin/sh", "arg": ["-c", "echo go; exec sleep 1000"]}));
    t.until(&mut c, "go", |s| s.contains("go\r\n"));
    // Ctrl-C once `sleep` runs (a shell still starting up handles it itself).
    assert!(wait_until(DEADLINE, || comm(t.pid as u32) == "sleep"), "sh never became sleep");
    t.input(&mut c, b"\x03");
    let st = t.finish(&mut c);
    assert_eq!(result_of(&st), json!({"exited": true, "signal": 2}), "output {:?}", t.text());
    assert_eq!(t.text(), "go\r\n^C");

    // A shell that traps SIGINT: the foreground `sleep` dies, the shell goes on.
    let script = "trap 'echo caught INT' INT; echo go; sleep 1000; echo after sleep $?; exit 5";
    let mut t = Term::start(&mut c, json!({"path": "/bin/sh", "arg": ["-c", script]}));
    t.until(&mut c, "go", |s| s.contains("go\r\n"));
    let sleep_runs = || children_of(t.pid as u32).iter().any(|&(k, _)| comm(k) == "sleep");
    assert!(wait_until(DEADLINE, sleep_runs), "the shell never started sleep");
    t.input(&mut c, b"\x03");
    let st = t.finish(&mut c);
    assert_eq!(result_of(&st), json!({"exited": true, "exitcode": 5}), "output {:?}", t.text());
    assert_eq!(t.text(), "go\r\n^Ccaught INT\r\nafter sleep 130\r\n");

    // Typed input is echoed, read line by line; Ctrl-D is the end of input.
    let mut t = Term::start(&mut c, json!({"path": "cat"}));
    t.input(&mut c, b"hello\r");
    t.until(&mut c, "the line back", |s| s == "hello\r\nhello\r\n");
    t.input(&mut c, b"\x04");
    let st = t.finish(&mut c);
    assert_eq!(result_of(&st), json!({"exited": true, "exitcode": 0}));
    assert_eq!(t.text(), "hello\r\nhello\r\n");
}

#[test]
fn eof_ends_the_input_but_not_the_terminal() {
    if skip_on_reference() {
        return;
    }
    let (_agent, mut c) = Agent::start();
    // `input-stream` and `stream` are implied; giving them is accepted.
    let mut t = Term::start(&mut c, json!({"path": "cat", "input-stream": true, "stream": true}));
    t.input(&mut c, b"one\r");
    t.until(&mut c, "the line back", |s| s == "one\r\none\r\n");
    assert_eq!(c.ok("guest-exec-input", json!({"pid": t.pid, "eof": true})), json!({"count": 0}));
    let r = c.execute("guest-exec-input", json!({"pid": t.pid, "input-data": b64encode(b"two\r")}));
    assert_generic_error(&r, &format!("Input of PID {} is closed", t.pid));
    // The terminal is still open: cat saw no end of file and still runs.
    assert_eq!(c.ok("guest-exec-resize", json!({"pid": t.pid, "rows": 10, "cols": 10})), json!({}));
    let st = c.ok("guest-exec-status", json!({"pid": t.pid}));
    assert_eq!(st, json!({"exited": false}));
    assert_eq!(c.ok("guest-exec-terminate", json!({"pid": t.pid, "signal": "HUP"})), json!({}));
    let st = t.finish(&mut c);
    assert_eq!(result_of(&st), json!({"exited": true, "signal": 1}));
    assert_eq!(t.text(), "one\r\none\r\n");
}

#[test]
fn full_screen_output_arrives_complete_and_in_order() {
    if skip_on_reference() {
        return;
    }
    let (_agent, mut c) = Agent::start();
    // Cursor moves, line clears and colours, as a full-screen program draws.
    let script = "printf '\\033[?1049h\\033[H\\033[2J'; i=0; while [ $i -lt 3000 ]; do \
                  printf '\\033[%d;1H\\033[2K\\033[1;3%dmrow %d\\033[0m\\n' $((i % 24 + 1)) $((i % 8)) $i; i=$((i + 1)); done; \
                  printf '\\033[?1049l'";
    let mut t = Term::start(&mut c, json!({"path": "/bin/sh", "arg": ["-c", script]}));
    let st = t.finish(&mut c);
    assert_eq!(result_of(&st), json!({"exited": true, "exitcode": 0}));
    let mut want = String::from("\x1b[?1049h\x1b[H\x1b[2J");
    for i in 0..3000 {
        want += &format!("\x1b[{};1H\x1b[2K\x1b[1;3{}mrow {i}\x1b[0m\r\n", i % 24 + 1, i % 8);
    }
    want += "\x1b[?1049l";
    assert!(t.text() == want, "terminal output differs (got {} bytes, want {})", t.out.len(), want.len());

    // A plain stream: every line once, in order, each ending in \r\n.
    let mut t = Term::start(&mut c, json!({"path": "seq", "arg": ["1", "300000"]}));
    t.finish(&mut c);
    let text = t.text();
    let body = text.strip_suffix("\r\n").unwrap_or_else(|| panic!("no final \\r\\n"));
    let mut next = 1u32;
    for line in body.split("\r\n") {
        assert_eq!(line, next.to_string(), "line out of order");
        next += 1;
    }
    assert_eq!(next, 300_001);
}

#[test]
fn bulk_terminal_output_is_byte_exact_while_another_terminal_echoes_keys() {
    if skip_on_reference() {
        return;
    }
    let (agent, mut c) = Agent::start();
    // 3 MiB of every byte value: a terminal's default output processing
    // (OPOST|ONLCR) turns each \n into \r\n and passes the rest unchanged.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let data: Vec<u8> = (0..3 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 56) as u8
        })
        .collect();
    let file = agent.dir().join("bulk.bin");
    std::fs::write(&file, &data).unwrap();
    let mut want = Vec::with_capacity(data.len() + data.len() / 128);
    for &b in &data {
        if b == b'\n' {
            want.push(b'\r');
        }
        want.push(b);
    }

    let mut keys =
        Term::start(&mut c, json!({"path": "/bin/sh", "arg": ["-c", "stty raw -echo && echo ready && exec cat"]}));
    keys.until(&mut c, "ready", |t| t.contains("ready"));
    let echoed_from = keys.out.len();
    let mut bulk = Term::start(&mut c, json!({"path": "cat", "arg": [file.to_str().unwrap()]}));
    // Between parts of the bulk output, one key to the other terminal and
    // its echo back: each terminal's bytes stay its own and in order.
    let mut sent = Vec::new();
    while bulk.fin.is_none() {
        bulk.poll(&mut c);
        let key = b'a' + (sent.len() % 26) as u8;
        keys.input(&mut c, &[key]);
        sent.push(key);
        let n = sent.len();
        keys.until(&mut c, "the echo", |t| t.len() >= echoed_from + n);
    }
    assert_eq!(result_of(bulk.fin.as_ref().unwrap()), json!({"exited": true, "exitcode": 0}));
    assert!(
        bulk.out == want,
        "terminal output differs: got {} bytes, want {}; first difference at {:?}",
        bulk.out.len(),
        want.len(),
        bulk.out.iter().zip(&want).position(|(a, b)| a != b)
    );
    assert_eq!(&keys.out[echoed_from..], &sent[..], "the keys came back in order, once each");
    c.ok("guest-exec-terminate", json!({"pid": keys.pid}));
    keys.finish(&mut c);
}

#[test]
fn fifty_mib_of_terminal_output_with_backpressure_and_bounded_rss() {
    if skip_on_reference() {
        return;
    }
    let (agent, mut c) = Agent::start();
    const TOTAL: usize = 50 << 20;
    let pid = c.exec(json!({"path": "head", "arg": ["-c", TOTAL.to_string(), "/dev/zero"], "tty": true}));
    // Nobody collects: the writer must block in the terminal (still running).
    let wchan = || std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
    let blocked = || proc_state(pid as u32) == Some('S') && matches!(wchan().as_str(), "wait_woken" | "n_tty_write");
    assert!(
        wait_until(DEADLINE, || blocked() || !proc_exists(pid as u32) || proc_state(pid as u32) == Some('Z')),
        "the writer neither blocked nor ended"
    );
    wait_idle(agent.pid());
    assert!(
        blocked(),
        "the writer must be blocked by backpressure (state {:?}, wchan {:?})",
        proc_state(pid as u32),
        wchan()
    );
    let idle_rss = proc_status_kib(agent.pid(), "VmRSS:");
    let start = Instant::now();
    let mut got = 0usize;
    let mut polls = 0u32;
    loop {
        assert!(start.elapsed() < Duration::from_secs(300), "50 MiB did not arrive");
        let st = c.ok("guest-exec-status", json!({"pid": pid, "wait": 10}));
        let chunk = data_of(&st, "out-data");
        assert!(chunk.len() <= 1 << 20, "chunk larger than the 1 MiB window: {}", chunk.len());
        assert!(chunk.iter().all(|&b| b == 0), "NUL bytes pass the terminal unchanged");
        got += chunk.len();
        polls += 1;
        if st["exited"] == json!(true) {
            assert_eq!(result_of(&st), json!({"exited": true, "exitcode": 0}));
            break;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(got, TOTAL);
    let hwm = proc_status_kib(agent.pid(), "VmHWM:");
    eprintln!(
        "50 MiB through the terminal in {secs:.2} s ({:.0} MiB/s, {polls} polls); agent VmRSS idle {idle_rss} KiB, VmHWM {hwm} KiB",
        50.0 / secs
    );
    assert!(hwm < 64 * 1024, "agent memory must stay bounded (VmHWM {hwm} KiB)");
}

#[test]
fn rusage_is_reported_only_when_asked_and_is_plausible() {
    if skip_on_reference() {
        return;
    }
    let (_agent, mut c) = Agent::start();
    // Burns CPU in the shell itself until its own user time (field 14 of
    // /proc/self/stat, in clock ticks) reaches 0.3 s.
    let hz = ticks_per_sec();
    let burn = format!(
        "while [ $(cut -d' ' -f14 /proc/$$/stat) -lt {} ]; do i=0; while [ $i -lt 5000 ]; do i=$((i + 1)); done; done",
        hz * 3 / 10
    );
    for tty in [false, true] {
        let st = c.exec_and_wait(json!({"path": "/bin/sh", "arg": ["-c", &burn], "rusage": true, "tty": tty}));
        assert_eq!(st["exitcode"], json!(0), "{st}");
        let ru = &st["rusage"];
        let mut keys: Vec<&str> =
            ru.as_object().unwrap_or_else(|| panic!("no rusage in {st}")).keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["max-rss-kib", "system-us", "user-us"], "{st}");
        let user = ru["user-us"].as_i64().unwrap_or(-1);
        let system = ru["system-us"].as_i64().unwrap_or(-1);
        let rss = ru["max-rss-kib"].as_i64().unwrap_or(-1);
        assert!((300_000..600_000_000).contains(&user), "user-us {user} (tty {tty})");
        assert!(system >= 0, "system-us {system}");
        assert!(rss > 0 && rss < 16 * 1024 * 1024, "max-rss-kib {rss}");
    }
    // Descendants that were waited for count: the RSS of a big child.
    let st = c.exec_and_wait(json!({
        "path": "/bin/sh",
        "arg": ["-c", "dd if=/dev/zero of=/dev/null bs=64M count=1 2>/dev/null; true"],
        "rusage": true
    }));
    let rss = st["rusage"]["max-rss-kib"].as_i64().unwrap_or(-1);
    assert!(rss > 60_000, "dd fills a 64 MiB buffer: the waited-for descendant's max RSS counts ({st})");
    // Not asked: no rusage (standard replies unchanged).
    let st = c.exec_and_wait(json!({"path": "true"}));
    assert_eq!(st, json!({"exited": true, "exitcode": 0}));
    let st = c.exec_and_wait(json!({"path": "true", "rusage": false}));
    assert_eq!(st, json!({"exited": true, "exitcode": 0}));
}

fn env_lines(st: &Value) -> Vec<String> {
    let mut v: Vec<String> =
        String::from_utf8_lossy(&data_of(st, "out-data")).replace("\r\n", "\n").lines().map(str::to_string).collect();
    v.sort();
    v
}

#[test]
fn env_merge_adds_and_overrides() {
    if skip_on_reference() {
        return;
    }
    let (_agent, mut c) = AgentBuilder::new()
        .exact_env(&[("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), ("KEEP", "agent"), ("OVER", "agent")])
        .start();
    let run = |c: &mut Conn, extra: Value| {
        let mut args = json!({"path": "/usr/bin/env", "capture-output": true});
        for (k, v) in extra.as_object().into_iter().flatten() {
            args[k] = v.clone();
        }
        let st = c.exec_and_wait(args);
        assert_eq!(st["exitcode"], json!(0), "{st}");
        env_lines(&st)
    };
    let inherited = run(&mut c, json!({}));
    assert!(
        inherited.contains(&"KEEP=agent".to_string()) && inherited.contains(&"OVER=agent".to_string()),
        "{inherited:?}"
    );
    // Without env-merge, env replaces everything.
    assert_eq!(run(&mut c, json!({"env": ["OVER=client", "NEW=1"]})), ["NEW=1", "OVER=client"]);
    assert_eq!(run(&mut c, json!({"env": ["OVER=client", "NEW=1"], "env-merge": false})), ["NEW=1", "OVER=client"]);
    // With it: the inherited environment, OVER replaced (once), NEW added.
    let mut want: Vec<String> = inherited.iter().filter(|kv| !kv.starts_with("OVER=")).cloned().collect();
    want.extend(["OVER=client".to_string(), "NEW=1".to_string()]);
    want.sort();
    assert_eq!(run(&mut c, json!({"env": ["OVER=client", "NEW=1"], "env-merge": true})), want);
    // env-merge without env: the inherited environment as it is.
    assert_eq!(run(&mut c, json!({"env-merge": true})), inherited);
    // An empty env with env-merge changes nothing either.
    assert_eq!(run(&mut c, json!({"env": [], "env-merge": true})), inherited);
    // A terminal adds TERM, unless env names one.
    let run_tty = |c: &mut Conn, env: Value| {
        let mut t = Term::start(c, json!({"path": "/usr/bin/env", "env": env, "env-merge": true}));
        t.finish(c);
        env_lines(&json!({"out-data": b64encode(&t.out)}))
    };
    let mut want_tty = inherited.clone();
    want_tty.push("TERM=xterm-256color".to_string());
    want_tty.push("NEW=1".to_string());
    want_tty.sort();
    assert_eq!(run_tty(&mut c, json!(["NEW=1"])), want_tty);
    let mut want_tty = inherited.clone();
    want_tty.push("TERM=dumb".to_string());
    want_tty.sort();
    assert_eq!(run_tty(&mut c, json!(["TERM=dumb"])), want_tty);
}

#[test]
fn every_error_text() {
    if skip_on_reference() {
        return;
    }
    let (_agent, mut c) = Agent::start();
    assert!(c.supported_commands().contains(&"guest-exec-resize".to_string()), "guest-info lists guest-exec-resize");
    let exec_err = |c: &mut Conn, args: Value, desc: &str| {
        let r = c.execute("guest-exec", args.clone());
        assert_generic_error(&r, desc);
    };
    let cells = |p: &str| format!("Parameter '{p}' expects a number of cells from 1 to 65535");
    for (args, desc) in [
        (json!({"path": "true", "tty": true, "rows": 0}), cells("rows")),
        (json!({"path": "true", "tty": true, "rows": 65536}), cells("rows")),
        (json!({"path": "true", "tty": true, "cols": 0}), cells("cols")),
        (json!({"path": "true", "tty": true, "cols": -1}), cells("cols")),
        (
            json!({"path": "true", "tty": true, "rows": 1.5}),
            "Invalid parameter type for 'rows', expected: integer".into(),
        ),
        (
            json!({"path": "true", "tty": true, "cols": "x"}),
            "Invalid parameter type for 'cols', expected: integer".into(),
        ),
        (json!({"path": "true", "tty": "yes"}), "Invalid parameter type for 'tty', expected: boolean".into()),
        (json!({"path": "true", "rows": 3}), "Parameters 'rows' and 'cols' require 'tty'".into()),
        (json!({"path": "true", "tty": false, "cols": 3}), "Parameters 'rows' and 'cols' require 'tty'".into()),
        (json!({"path": "true", "rusage": 1}), "Invalid parameter type for 'rusage', expected: boolean".into()),
        (json!({"path": "true", "env-merge": "x"}), "Invalid parameter type for 'env-merge', expected: boolean".into()),
    ] {
        exec_err(&mut c, args, &desc);
    }
    let resize = |c: &mut Conn, args: Value| c.execute("guest-exec-resize", args);
    assert_generic_error(
        &resize(&mut c, json!({"pid": 999_999_999, "rows": 3, "cols": 3})),
        "PID 999999999 does not exist",
    );
    let plain = c.exec(json!({"path": "sleep", "arg": ["1000"]}));
    assert_generic_error(
        &resize(&mut c, json!({"pid": plain, "rows": 3, "cols": 3})),
        &format!("PID {plain} has no terminal"),
    );
    let t = Term::start(&mut c, json!({"path": "sleep", "arg": ["1000"]}));
    for (args, desc) in [
        (json!({"pid": t.pid, "rows": 0, "cols": 3}), cells("rows")),
        (json!({"pid": t.pid, "rows": 3, "cols": 65536}), cells("cols")),
        (json!({"pid": t.pid, "cols": 3}), "Parameter 'rows' is missing".into()),
        (json!({"pid": t.pid, "rows": 3}), "Parameter 'cols' is missing".into()),
        (json!({"rows": 3, "cols": 3}), "Parameter 'pid' is missing".into()),
        (json!({"pid": t.pid, "rows": "3", "cols": 3}), "Invalid parameter type for 'rows', expected: integer".into()),
        (json!({"pid": t.pid, "rows": 3, "cols": 3, "x": 1}), "Parameter 'x' is unexpected".into()),
    ] {
        assert_generic_error(&resize(&mut c, args), &desc);
    }
    // Both still run; the result of a finished tty process is gone once collected.
    for pid in [plain, t.pid] {
        assert_eq!(c.ok("guest-exec-terminate", json!({"pid": pid})), json!({}));
        let st = c.wait_exec(pid);
        assert_eq!(st["signal"], json!(9), "{st}");
    }
    assert_generic_error(
        &resize(&mut c, json!({"pid": t.pid, "rows": 3, "cols": 3})),
        &format!("PID {} does not exist", t.pid),
    );
}

/// The agent blocks SIGCHLD and SIGIO (read from a signalfd); a terminal's
/// child is started on the fork path and must not inherit that mask (nor
/// ignored signals).
#[test]
fn a_tty_child_starts_with_an_empty_signal_mask() {
    if skip_on_reference() {
        return;
    }
    let (_agent, mut c) = Agent::start();
    let mut t = Term::start(&mut c, json!({"path": "grep", "arg": ["^Sig[IB]", "/proc/self/status"]}));
    t.finish(&mut c);
    assert_eq!(t.text(), "SigBlk:\t0000000000000000\r\nSigIgn:\t0000000000000000\r\n");
}
