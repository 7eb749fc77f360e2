//! qgactl against qga and against Debian's qemu-ga (when fetched into
//! target/ref by scripts/fetch-qemu-ga.sh; otherwise a skip note is
//! printed and only qga is used): output, exit codes and signals match
//! between the agents; streaming, Ctrl-C, timeouts, big stdin (streamed
//! with guest-exec-input, or in the request / staged without it),
//! push/pull, the simple commands, connection handling.

mod qgactl_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use qgactl_support::*;

/// Same limit as src/bin/qgactl/exec/stdin.rs (INPUT_LIMIT).
const INPUT_LIMIT: usize = 48 * 1024 * 1024 - 64 * 1024;

fn sigint(child: &std::process::Child) {
    let _ = qga_sys::process::kill(child.id() as i32, qga_sys::signal::SIGINT);
}

// ---------------------------------------------------------------------------
// exec: output and exit codes, identical on both agents
// ---------------------------------------------------------------------------

#[test]
fn exec_output_exit_codes_and_signals_match_between_agents() {
    let agents = agents();
    let input = test_bytes(300_000, 7);
    let in_path = agents[0].dir.join("input.bin");
    std::fs::write(&in_path, &input).unwrap();
    let in_arg = in_path.display().to_string();
    // (args, exit code, stdout, stderr)
    let cases: Vec<(Vec<&str>, i32, Vec<u8>, &str)> = vec![
        (vec!["--", "sh", "-c", "echo out; echo err >&2; exit 3"], 3, b"out\n".to_vec(), "err\n"),
        (vec!["true"], 0, vec![], ""),
        (vec!["--", "sh", "-c", "exit 255"], 255, vec![], ""),
        (vec!["--", "sh", "-c", "kill -TERM $$"], 128 + 15, vec![], ""),
        (vec!["--", "sh", "-c", "echo partial; kill -KILL $$"], 128 + 9, b"partial\n".to_vec(), ""),
        (
            vec!["--", "printf", "%s|", "a b", "\u{fc}n\u{ef}", "\"q\"", ""],
            0,
            "a b|\u{fc}n\u{ef}|\"q\"||".as_bytes().to_vec(),
            "",
        ),
        (vec!["--env", "FOO=bar baz", "-e", "X=1", "--", "/usr/bin/env"], 0, b"FOO=bar baz\nX=1\n".to_vec(), ""),
        (vec!["--merge", "--", "sh", "-c", "echo 1; echo 2 >&2; echo 3"], 0, b"1\n2\n3\n".to_vec(), ""),
        (vec!["--stdin", &in_arg, "--", "cat"], 0, input.clone(), ""),
        (vec!["--stdin", "/dev/null", "--", "wc", "-c"], 0, b"0\n".to_vec(), ""),
    ];
    type Outcome = (Option<i32>, Vec<u8>, String);
    let mut results: Vec<(String, Vec<Outcome>)> = Vec::new();
    for agent in &agents {
        // qga twice: streaming (default) and --poll (the stock-agent path).
        let modes: &[bool] = if agent.kind == Kind::Qga { &[false, true] } else { &[false] };
        for &poll in modes {
            let label = format!("{}{}", agent.name(), if poll { " --poll" } else { "" });
            let mut got = Vec::new();
            for (args, code, out, err) in &cases {
                let mut a = vec!["exec"];
                if poll {
                    a.push("--poll");
                }
                a.extend(args.iter().copied());
                let r = agent.run(&a);
                assert_eq!(r.code, Some(*code), "{label} {args:?}: stderr {:?}", r.stderr);
                assert!(r.stdout == *out, "{label} {args:?}: stdout {:?}", String::from_utf8_lossy(&r.stdout));
                assert_eq!(r.stderr, *err, "{label} {args:?}");
                got.push((r.code, r.stdout, r.stderr));
            }
            // A program that cannot be started: an agent error (125), one line.
            let r = agent.run(&["exec", "--", "/nonexistent/program"]);
            assert_eq!(r.code, Some(125), "{label}: {}", r.stderr);
            assert_one_line_error(&r.stderr, &label);
            assert!(r.stderr.starts_with("qgactl: guest-exec: "), "{label}: {}", r.stderr);
            assert!(r.stderr.contains("/nonexistent/program"), "{label}: {}", r.stderr);
            results.push((label, got));
        }
    }
    for (label, got) in &results[1..] {
        assert!(got == &results[0].1, "{label} differs from {}", results[0].0);
    }
}

#[test]
fn exec_large_output_streams_complete_on_qga_and_warns_when_truncated() {
    let agents = agents();
    const N: usize = 18_000_000; // over qemu-ga's 16 MiB capture
    let prog = ["exec", "--", "sh", "-c", "yes 0123456789abcdef | head -c 18000000"];
    for agent in &agents {
        let r = agent.run(&prog);
        assert_eq!(r.code, Some(0), "{}: {}", agent.name(), r.stderr);
        if agent.kind == Kind::Qga {
            assert_eq!(r.stdout.len(), N, "qga streams everything");
            assert_eq!(r.stderr, "");
            assert!(r.stdout.chunks(17).all(|c| c == &b"0123456789abcdef\n"[..c.len()]), "qga: bytes in order");
            // The polling path gets qga's qemu-ga-compatible capture.
            let mut p = vec!["exec", "--poll"];
            p.extend(&prog[1..]);
            let r = agent.run(&p);
            assert_eq!(r.stdout.len(), 16 << 20);
            assert!(r.stderr.contains("warning") && r.stderr.contains("16 MiB"), "{}", r.stderr);
        } else {
            assert_eq!(r.stdout.len(), 16 << 20, "qemu-ga keeps 16 MiB");
            assert!(r.stderr.contains("warning") && r.stderr.contains("16 MiB"), "{}", r.stderr);
        }
    }
}

#[test]
fn exec_output_is_live_with_qga() {
    // Event-driven: the program prints `first`, then waits for a gate file
    // that the test creates only once it has read `first`. Output that is
    // not live (printed at the end) never arrives: the read times out.
    let agent = Agent::start(Kind::Qga);
    let gate = agent.dir.join("gate");
    let script =
        format!("echo first; while [ ! -e {} ]; do sleep 0.05; done; echo second; echo done >&2", gate.display());
    let mut c = agent.spawn(&["exec", "--", "sh", "-c", &script]);
    let out = BufReader::new(c.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = thread::spawn(move || {
        for l in out.lines() {
            if tx.send(l.unwrap()).is_err() {
                return;
            }
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(120));
    std::fs::write(&gate, b"").unwrap();
    assert_eq!(first.as_deref(), Ok("first"), "the first line arrives while the program still runs");
    assert_eq!(rx.recv_timeout(Duration::from_secs(120)).as_deref(), Ok("second"));
    let st = wait_timeout(&mut c, Duration::from_secs(120)).expect("qgactl exits");
    assert_eq!(st.code(), Some(0));
    reader.join().unwrap();
    let mut err = String::new();
    c.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(err, "done\n");
}

#[test]
fn exec_stdout_closed_kills_program_with_sigpipe_on_qga() {
    let agent = Agent::start(Kind::Qga);
    let mut c = agent.spawn(&["exec", "--", "yes"]);
    let mut out = c.stdout.take().unwrap();
    let mut buf = [0u8; 4096];
    out.read_exact(&mut buf).unwrap();
    drop(out);
    let st = wait_timeout(&mut c, Duration::from_secs(60)).expect("qgactl stops when its stdout is closed");
    assert_eq!(st.code(), Some(128 + qga_sys::signal::SIGPIPE));
}

// ---------------------------------------------------------------------------
// Ctrl-C and timeouts
// ---------------------------------------------------------------------------

#[test]
fn ctrl_c_terminates_the_guest_process() {
    for agent in agents() {
        let pidfile = agent.dir.join("prog.pid");
        let script = format!("echo $$ > {}; exec sleep 60", pidfile.display());
        let mut c = agent.spawn(&["exec", "--", "sh", "-c", &script]);
        let pid = wait_pidfile(&pidfile, Duration::from_secs(60));
        sigint(&c);
        // The exit status says the forwarded SIGINT (not a later escalation)
        // ended the program; the bounds only catch hangs.
        let st = wait_timeout(&mut c, Duration::from_secs(60)).expect("qgactl exits after Ctrl-C");
        assert_eq!(st.code(), Some(128 + qga_sys::signal::SIGINT), "{}: killed by the forwarded SIGINT", agent.name());
        assert!(process_gone(pid, Duration::from_secs(60)), "{}: guest process {pid} still running", agent.name());
    }
}

#[test]
fn ctrl_c_kills_the_whole_process_tree_on_qga() {
    // A background child that ignores SIGINT holds the output pipe: SIGKILL
    // to the process group follows after 5 s. (It writes its pid only once
    // it ignores SIGINT, so the test does not race with its setup.)
    let agent = Agent::start(Kind::Qga);
    let pidfile = agent.dir.join("bg.pid");
    let script = format!("sh -c 'trap \"\" INT; echo $$ > {}; exec sleep 60' & wait", pidfile.display());
    let mut c = agent.spawn(&["exec", "--", "sh", "-c", &script]);
    let bg = wait_pidfile(&pidfile, Duration::from_secs(60));
    let t = Instant::now();
    sigint(&c);
    let st = wait_timeout(&mut c, Duration::from_secs(120)).expect("qgactl exits");
    let took = t.elapsed();
    assert_eq!(st.code(), Some(128 + qga_sys::signal::SIGINT), "the shell itself died of SIGINT");
    // The grace period is honoured (a loaded machine only makes it longer).
    assert!(took >= Duration::from_secs(4), "escalation after {took:?}, before the 5 s grace period");
    assert!(process_gone(bg, Duration::from_secs(60)), "background process {bg} survived");
}

#[test]
fn timeout_terminates_and_exits_124() {
    for agent in agents() {
        let pidfile = agent.dir.join("t.pid");
        let script = format!("echo $$ > {}; echo before; exec sleep 600", pidfile.display());
        let r = agent.run_with(&["exec", "--timeout", "1", "--", "sh", "-c", &script], None, Duration::from_secs(300));
        assert_eq!(r.code, Some(124), "{}: {}", agent.name(), r.stderr);
        assert_eq!(r.out(), "before\n", "{}", agent.name());
        assert!(r.stderr.contains("timed out after 1 s"), "{}: {}", agent.name(), r.stderr);
        // Ended by the timeout, long before the program would end itself.
        assert!(r.elapsed < Duration::from_secs(300), "{}: {:?}", agent.name(), r.elapsed);
        let pid = wait_pidfile(&pidfile, Duration::from_secs(1));
        assert!(process_gone(pid, Duration::from_secs(60)), "{}: {pid} still running", agent.name());
        if agent.kind == Kind::Qga {
            // qga kills the process group: a forked child goes too.
            let bgfile = agent.dir.join("tbg.pid");
            let script = format!("sleep 600 & echo $! > {}; wait", bgfile.display());
            let r = agent.run(&["exec", "--timeout", "0.5", "--", "sh", "-c", &script]);
            assert_eq!(r.code, Some(124), "{}", r.stderr);
            let bg = wait_pidfile(&bgfile, Duration::from_secs(1));
            assert!(process_gone(bg, Duration::from_secs(60)), "background process {bg} survived the timeout");
        }
    }
}

#[test]
fn exec_cwd_and_user_need_the_extensions() {
    for agent in agents() {
        let r = agent.run(&["exec", "--cwd", "/tmp", "--", "pwd"]);
        match agent.kind {
            Kind::Qga => {
                assert_eq!((r.code, r.out().as_str()), (Some(0), "/tmp\n"), "{}", r.stderr);
                let r = agent.run(&["exec", "--cwd", "/nonexistent-dir", "--", "pwd"]);
                assert_eq!(r.code, Some(125));
                assert_one_line_error(&r.stderr, "bad cwd");
                if qga_sys::process::geteuid() == 0 {
                    let r = agent.run(&["exec", "--user", "65534", "--", "id", "-u"]);
                    assert_eq!((r.code, r.out().as_str()), (Some(0), "65534\n"), "{}", r.stderr);
                } else {
                    skip::missing("root: exec --user");
                }
            }
            Kind::QemuGa => {
                assert_eq!(r.code, Some(125));
                assert_one_line_error(&r.stderr, "cwd on qemu-ga");
                assert!(r.stderr.contains("extensions"), "{}", r.stderr);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Big stdin
// ---------------------------------------------------------------------------

/// qgactl's staging directories in the guest: /tmp/qgactl-<32 hex>.
fn staging_dirs() -> Vec<String> {
    let is_staging =
        |n: &str| n.strip_prefix("qgactl-").is_some_and(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    let mut v: Vec<String> = std::fs::read_dir("/tmp")
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| is_staging(n)).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn big_stdin_in_one_request() {
    let agents = agents_without_input_stream();
    let dir = TempDir::new("qgactl-stdin");
    // The largest stdin that fits one guest-exec request.
    let at_limit = dir.join("limit.bin");
    std::fs::write(&at_limit, test_bytes(INPUT_LIMIT, 11)).unwrap();
    let want = sha256_file(&at_limit);
    for agent in &agents {
        let r = agent.run(&["exec", "--stdin", &at_limit.display().to_string(), "--", "sha256sum"]);
        assert_eq!(r.code, Some(0), "{}: {}", agent.name(), r.stderr);
        assert_eq!(r.out(), format!("{want}  -\n"), "{}", agent.name());
    }
}

#[test]
fn big_stdin_staged_through_guest_files() {
    let agents = agents_without_input_stream();
    let dir = TempDir::new("qgactl-stdin");
    // Above the one-request limit: staged through guest-file-* when the
    // agent has them (200 MB work too; 100 MiB keeps the suite short with
    // debug builds), refused with a clear message otherwise.
    const HUGE: usize = 100 << 20;
    let huge = dir.join("huge.bin");
    std::fs::write(&huge, test_bytes(HUGE, 12)).unwrap();
    let want = sha256_file(&huge);
    for agent in &agents {
        let before = staging_dirs();
        if agent.has("guest-file-open") {
            // From a pipe: the size is unknown until it has been read.
            let data = std::fs::read(&huge).unwrap();
            let r = agent.run_with(&["exec", "--stdin", "-", "--", "sha256sum"], Some(data), Duration::from_secs(50));
            assert_eq!(r.code, Some(0), "{}: {}", agent.name(), r.stderr);
            assert_eq!(r.out(), format!("{want}  -\n"), "{}", agent.name());
            let after = staging_dirs();
            let left: Vec<String> = after
                .iter()
                .filter(|d| !before.contains(d))
                .map(|d| {
                    let p = Path::new("/tmp").join(d);
                    let content: Vec<String> = std::fs::read_dir(&p)
                        .map(|r| r.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
                        .unwrap_or_default();
                    format!("{} {:?}", p.display(), content)
                })
                .collect();
            assert!(
                left.is_empty(),
                "{}: staging directory left behind: {left:?}\nagent log: {}",
                agent.name(),
                agent.log()
            );
        } else {
            skip::missing(&format!("staged stdin on {}: guest-file-open is not in guest-info", agent.name()));
            let r = agent.run(&["exec", "--stdin", &huge.display().to_string(), "--", "wc", "-c"]);
            assert_eq!(r.code, Some(1), "{}", r.stderr);
            assert_one_line_error(&r.stderr, "stdin too big");
            assert!(r.stderr.contains("48 MiB"), "{}", r.stderr);
        }
    }
}

// ---------------------------------------------------------------------------
// Streamed stdin (qga's guest-exec-input)
// ---------------------------------------------------------------------------

#[test]
fn streamed_stdin_large_through_sha256sum() {
    let agent = Agent::start(Kind::Qga);
    assert!(agent.has("guest-exec-input"), "qga lists guest-exec-input");
    // Twice the one-request limit, from a pipe (size unknown). 200 MiB
    // and more work the same way; 100 MiB keeps the debug-build suite short.
    const BIG: usize = 100 << 20;
    let data = test_bytes(BIG, 21);
    let path = agent.dir.join("big.bin");
    std::fs::write(&path, &data).unwrap();
    let want = sha256_file(&path);
    std::fs::remove_file(&path).unwrap();
    let r = agent.run_with(
        &["exec", "--stdin", "-", "--", "sh", "-c", "test -p /dev/stdin && echo pipe; sha256sum"],
        Some(data),
        Duration::from_secs(120),
    );
    assert_eq!(r.code, Some(0), "{}\nagent log: {}", r.stderr, agent.log());
    // A pipe: more than one guest-exec request can carry, and not staged
    // (a staged stdin is a regular file).
    assert_eq!(r.out(), format!("pipe\n{want}  -\n"), "stdin is a live pipe, data intact");
    assert_eq!(r.stderr, "");
    eprintln!("streamed {} MiB through sha256sum in {:?} (debug builds)", BIG >> 20, r.elapsed);

    // A file, echoed back by cat while input still flows: both directions
    // at once, more than the agent's 4 MiB input and 1 MiB output windows.
    let data = test_bytes((9 << 20) + 5, 22);
    let path = agent.dir.join("echo.bin");
    std::fs::write(&path, &data).unwrap();
    let r =
        agent.run_with(&["exec", "--stdin", &path.display().to_string(), "--", "cat"], None, Duration::from_secs(60));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stdout == data, "cat echoed {} of {} bytes, or different ones", r.stdout.len(), data.len());

    // The program decides how much it reads: the rest is dropped quietly.
    for (args, out) in [
        (vec!["head", "-c", "5"], data[..5].to_vec()),
        (vec!["true"], vec![]),
        (vec!["sh", "-c", "exec 0<&-; sleep 0.2; echo closed"], b"closed\n".to_vec()),
    ] {
        let mut a = vec!["exec", "--stdin", "-", "--"];
        a.extend(args.iter().copied());
        let r = agent.run_with(&a, Some(test_bytes(20 << 20, 23)), Duration::from_secs(60));
        assert_eq!(r.code, Some(0), "{args:?}: {}", r.stderr);
        assert_eq!(r.stderr, "", "{args:?}");
        assert!(r.stdout == out, "{args:?}: {:?}", r.out());
    }
    // Empty stdin: the program sees EOF at once.
    let r = agent.run_with(&["exec", "--stdin", "-", "--", "wc", "-c"], Some(vec![]), Duration::from_secs(20));
    assert_eq!((r.code, r.out().as_str()), (Some(0), "0\n"), "{}", r.stderr);
}

/// A gated producer as a separate process, whose stdout becomes qgactl's
/// stdin (`exec EXTRA --stdin - -- PROGRAM`): it prints `line i` only once
/// the file `gate.i` exists in the agent's directory (see [`open_gate`]),
/// for i in 1..=n, then ends. Returns (qgactl, producer).
fn live_producer_into(
    agent: &Agent,
    lines: usize,
    extra: &[&str],
    program: &[&str],
) -> (std::process::Child, std::process::Child) {
    let d = agent.dir.path().display();
    let script = format!(
        "i=1; while [ $i -le {lines} ]; do while [ ! -e {d}/gate.$i ]; do sleep 0.02; done; echo line $i; i=$((i+1)); done"
    );
    let mut producer = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn producer");
    let pipe = producer.stdout.take().unwrap();
    let mut args = vec!["exec"];
    args.extend(extra.iter().copied());
    args.extend(["--stdin", "-", "--"]);
    args.extend(program.iter().copied());
    let q = agent.spawn_with_stdin(&args, Stdio::from(pipe));
    (q, producer)
}

/// Lets the producer of [`live_producer_into`] print line `i`.
fn open_gate(agent: &Agent, i: usize) {
    std::fs::write(agent.dir.join(format!("gate.{i}")), b"").unwrap();
}

/// qgactl's stdout lines, as they arrive, from a reader thread.
fn line_receiver(c: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    let out = BufReader::new(c.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        for l in out.lines() {
            if tx.send(l.unwrap()).is_err() {
                return;
            }
        }
    });
    rx
}

/// Generous bound for one line to come through (a hang, not a slow machine).
const LINE_WAIT: Duration = Duration::from_secs(120);

#[test]
fn streamed_stdin_from_a_slow_live_producer() {
    let agent = Agent::start(Kind::Qga);
    let (mut q, mut producer) = live_producer_into(&agent, 10, &[], &["cat"]);
    let rx = line_receiver(&mut q);
    // Streamed, in lockstep: line i must come out of the guest's `cat`
    // before the producer may write line i+1. Read-to-EOF-first would
    // never show line 1 (the producer waits for gate 2): a timeout.
    for i in 1..=10 {
        open_gate(&agent, i);
        assert_eq!(
            rx.recv_timeout(LINE_WAIT).as_deref(),
            Ok(format!("line {i}").as_str()),
            "line {i} while the producer still runs"
        );
    }
    let st = wait_timeout(&mut q, LINE_WAIT).expect("qgactl exits after the producer's EOF");
    let _ = producer.wait();
    let mut err = String::new();
    q.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(st.code(), Some(0), "{err}");
    assert_eq!(err, "");
    assert!(rx.recv_timeout(LINE_WAIT).is_err(), "nothing after the last line");

    // Ctrl-C still reaches the program while stdin stays open and idle.
    let pidfile = agent.dir.join("live.pid");
    let script = format!("echo $$ > {}; exec sleep 60", pidfile.display());
    let mut holder = Command::new("sleep").arg("30").stdout(Stdio::piped()).spawn().expect("spawn stdin holder");
    let pipe = holder.stdout.take().unwrap();
    let mut c = agent.spawn_with_stdin(&["exec", "--stdin", "-", "--", "sh", "-c", &script], Stdio::from(pipe));
    let pid = wait_pidfile(&pidfile, Duration::from_secs(60));
    sigint(&c);
    let st = wait_timeout(&mut c, Duration::from_secs(60)).expect("qgactl exits after Ctrl-C");
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(st.code(), Some(128 + qga_sys::signal::SIGINT));
    assert!(process_gone(pid, Duration::from_secs(60)), "guest process {pid} still running");
}

#[test]
fn stdin_without_the_extension_uses_the_old_paths() {
    let mut runs: Vec<(Agent, &[&str], String)> = Vec::new();
    for agent in agents_without_input_stream() {
        assert!(!agent.has("guest-exec-input"), "{}", agent.name());
        let label = match agent.kind {
            Kind::Qga => "qga -b guest-exec-input".to_string(),
            Kind::QemuGa => "qemu-ga".to_string(),
        };
        runs.push((agent, &[], label));
    }
    // --poll keeps qga on the old path too.
    runs.push((Agent::start(Kind::Qga), &["--poll"], "qga --poll".to_string()));
    for (agent, extra, label) in &runs {
        // A live pipe is read to its end, then sent with guest-exec: with
        // line 1 written and the producer held at gate 2, nothing comes out
        // (checked once qgactl, the agent and its children are all idle);
        // after the producer's EOF every line does.
        let (mut q, mut producer) = live_producer_into(agent, 5, extra, &["cat"]);
        let rx = line_receiver(&mut q);
        open_gate(agent, 1);
        for _ in 0..2 {
            procfs::wait_idle(q.id());
            procfs::wait_idle(agent.pid());
            for (child, _) in procfs::children_of(agent.pid()) {
                procfs::wait_idle(child);
            }
        }
        assert!(rx.try_recv().is_err(), "{label}: output before the producer's EOF");
        for i in 2..=5 {
            open_gate(agent, i);
        }
        let lines: Vec<String> = (0..5).map(|_| rx.recv_timeout(LINE_WAIT).expect("a line")).collect();
        assert_eq!(lines, ["line 1", "line 2", "line 3", "line 4", "line 5"], "{label}");
        let st = wait_timeout(&mut q, LINE_WAIT).expect("qgactl exits");
        let _ = producer.wait();
        let mut err = String::new();
        q.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        assert_eq!(st.code(), Some(0), "{label}: {err}");
        let data = test_bytes(3 << 20, 31);
        let mut a = vec!["exec"];
        a.extend(extra.iter().copied());
        a.extend(["--stdin", "-", "--", "cat"]);
        let r = agent.run_with(&a, Some(data.clone()), Duration::from_secs(30));
        assert_eq!(r.code, Some(0), "{label}: {}", r.stderr);
        assert!(r.stdout == data, "{label}: cat returned other bytes");
    }
}

// ---------------------------------------------------------------------------
// push / pull
// ---------------------------------------------------------------------------

#[test]
fn push_pull_binary_files() {
    for agent in agents() {
        if !agent.has("guest-file-open") {
            skip::missing(&format!("push/pull on {}: guest-file-open is not in guest-info", agent.name()));
            let r = agent.run(&["push", "/dev/null", "/tmp/x"]);
            assert_eq!(r.code, Some(125));
            assert_one_line_error(&r.stderr, "push without guest-file-open");
            continue;
        }
        let d = &agent.dir;
        let name = agent.name();
        for (i, len) in [0usize, 1, 4 << 20, (9 << 20) + 7].into_iter().enumerate() {
            let data = test_bytes(len, 100 + i as u64);
            let local = d.join(format!("local{i}.bin"));
            std::fs::write(&local, &data).unwrap();
            let remote = d.join(format!("remote{i}.bin"));
            let r = agent.run(&["push", &local.display().to_string(), &remote.display().to_string()]);
            assert_eq!(r.code, Some(0), "{name} push {len}: {}", r.stderr);
            assert_eq!(r.stderr, "", "no progress bar when stderr is not a terminal");
            assert!(std::fs::read(&remote).unwrap() == data, "{name}: pushed bytes differ ({len})");
            let back = d.join(format!("back{i}.bin"));
            let r = agent.run(&["pull", &remote.display().to_string(), &back.display().to_string()]);
            assert_eq!(r.code, Some(0), "{name} pull {len}: {}", r.stderr);
            assert!(std::fs::read(&back).unwrap() == data, "{name}: pulled bytes differ ({len})");
        }
        // REMOTE ending in '/', LOCAL a directory, '-' for stdout / stdin.
        let sub = d.join("sub");
        std::fs::create_dir(&sub).unwrap();
        let data = test_bytes(100_000, 5);
        std::fs::write(d.join("named.bin"), &data).unwrap();
        let r = agent.run(&["push", &d.join("named.bin").display().to_string(), &format!("{}/", sub.display())]);
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        assert!(std::fs::read(sub.join("named.bin")).unwrap() == data);
        let down = TempDir::new("qgactl-down");
        let r = agent.run(&["pull", &sub.join("named.bin").display().to_string(), &down.path().display().to_string()]);
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        assert!(std::fs::read(down.join("named.bin")).unwrap() == data);
        let r = agent.run(&["pull", &sub.join("named.bin").display().to_string(), "-"]);
        assert!(r.code == Some(0) && r.stdout == data, "{name}: pull to stdout");
        let r = agent.run_with(
            &["push", "-", &d.join("fromstdin").display().to_string()],
            Some(data.clone()),
            Duration::from_secs(20),
        );
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        assert!(std::fs::read(d.join("fromstdin")).unwrap() == data);
        // Errors: one line, 125, no partial download left behind.
        let r = agent.run(&["pull", "/nonexistent/file", &down.join("x").display().to_string()]);
        assert_eq!(r.code, Some(125));
        assert_one_line_error(&r.stderr, "pull missing file");
        assert_eq!(std::fs::read_dir(down.path()).unwrap().count(), 1, "{name}: leftovers in the download directory");
        let r = agent.run(&["push", "/nonexistent/local", "/tmp/x"]);
        assert_eq!(r.code, Some(1));
        assert_one_line_error(&r.stderr, "push missing local file");
    }
}

/// 256 MiB each way with several chunks in flight (qga; qemu-ga too when
/// fetched, with a smaller file: its JSON parser moves about 20 MiB/s),
/// compared by sha256; then the same with chunks sized for libvirt's reply
/// cap, with tiny replies (many requests in flight at once) and with one
/// request at a time.
#[test]
fn push_pull_256_mib_pipelined_are_byte_exact() {
    for agent in agents() {
        if !agent.has("guest-file-open") {
            skip::missing(&format!("big push/pull on {}: guest-file-open is not in guest-info", agent.name()));
            continue;
        }
        let name = agent.name();
        let len = if agent.kind == Kind::Qga { 256 << 20 } else { 24 << 20 };
        let d = &agent.dir;
        let local = d.join("big.bin");
        std::fs::write(&local, test_bytes(len, 25)).unwrap();
        let want = sha256_file(&local);
        let remote = d.join("big.remote");
        let back = d.join("big.back");
        let (l, r, b) = (local.display().to_string(), remote.display().to_string(), back.display().to_string());
        let t = Instant::now();
        let run = agent.run_with(&["push", &l, &r], None, Duration::from_secs(600));
        assert_eq!(run.code, Some(0), "{name} push {len}: {}", run.stderr);
        let push = t.elapsed();
        assert_eq!(std::fs::metadata(&remote).unwrap().len(), len as u64, "{name}: pushed size");
        assert_eq!(sha256_file(&remote), want, "{name}: pushed bytes differ");
        let t = Instant::now();
        let run = agent.run_with(&["pull", &r, &b], None, Duration::from_secs(600));
        assert_eq!(run.code, Some(0), "{name} pull {len}: {}", run.stderr);
        let pull = t.elapsed();
        assert_eq!(sha256_file(&back), want, "{name}: pulled bytes differ");
        eprintln!(
            "{name}: {} MiB pushed in {push:.2?} ({:.0} MiB/s), pulled in {pull:.2?} ({:.0} MiB/s)",
            len >> 20,
            (len >> 20) as f64 / push.as_secs_f64(),
            (len >> 20) as f64 / pull.as_secs_f64()
        );
        std::fs::remove_file(&remote).unwrap();
        std::fs::remove_file(&back).unwrap();
        // Other chunk sizes and depths, on a file that is not a whole number of chunks.
        let len = (9 << 20) + 12_345;
        std::fs::write(&local, test_bytes(len, 26)).unwrap();
        let want = sha256_file(&local);
        for opts in [&["--libvirt"][..], &["--max-reply-bytes", "70000", "--in-flight", "64"], &["--in-flight", "1"]] {
            for (command, from, to, landed) in [("push", &l, &r, &remote), ("pull", &r, &b, &back)] {
                let mut args = vec![command];
                args.extend_from_slice(opts);
                args.extend_from_slice(&[from, to]);
                let run = agent.run_with(&args, None, Duration::from_secs(120));
                assert_eq!(run.code, Some(0), "{name} {command} {opts:?}: {}", run.stderr);
                assert_eq!(sha256_file(landed), want, "{name} {command} {opts:?}: bytes differ");
            }
        }
        // The progress bar, forced: it ends at the whole size.
        let run = agent.run(&["push", "--progress", &l, &r]);
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        assert!(run.stderr.contains("100%") && run.stderr.ends_with('\n'), "{name}: progress {:?}", run.stderr);
        std::fs::remove_file(&local).unwrap();
    }
}

/// An agent error with requests in flight: the replies still owed are read,
/// the handle is closed, the error is one line (125), and the session's
/// replies stay in step (the handle count does not grow).
#[test]
fn push_pull_errors_with_chunks_in_flight() {
    for agent in agents() {
        if !agent.has("guest-file-open") {
            continue;
        }
        let name = agent.name();
        let d = &agent.dir;
        let local = d.join("e.bin");
        std::fs::write(&local, test_bytes(3 << 20, 27)).unwrap();
        let l = local.display().to_string();
        // Every write fails (ENOSPC) while more are in flight.
        let run = agent.run(&["push", "--max-reply-bytes", "100000", &l, "/dev/full"]);
        assert_eq!(run.code, Some(125), "{name}: {}", run.stderr);
        assert_one_line_error(&run.stderr, "push to /dev/full");
        assert!(run.stderr.contains("No space left on device"), "{name}: {}", run.stderr);
        // Every read fails (EISDIR) while more are in flight.
        let down = d.join("dir.down");
        let run =
            agent.run(&["pull", "--in-flight", "8", &d.path().display().to_string(), &down.display().to_string()]);
        assert_eq!(run.code, Some(125), "{name}: {}", run.stderr);
        assert_one_line_error(&run.stderr, "pull of a directory");
        assert!(run.stderr.contains("Is a directory"), "{name}: {}", run.stderr);
        assert!(!down.exists(), "{name}: a partial download was left");
        // Both handles were closed: the next one opened is the one after them.
        let run = agent.run(&["raw", &format!(r#"{{"execute":"guest-file-open","arguments":{{"path":"{l}"}}}}"#)]);
        let first: i64 = String::from_utf8_lossy(&run.stdout)
            .trim()
            .trim_start_matches("{\"return\": ")
            .trim_end_matches('}')
            .parse()
            .unwrap_or_else(|_| panic!("{name}: {:?}", String::from_utf8_lossy(&run.stdout)));
        let run =
            agent.run(&["raw", &format!(r#"{{"execute":"guest-file-close","arguments":{{"handle":{}}}}}"#, first - 1)]);
        assert_eq!(run.code, Some(125), "{name}: the pull's handle {} is still open", first - 1);
        let run =
            agent.run(&["raw", &format!(r#"{{"execute":"guest-file-close","arguments":{{"handle":{}}}}}"#, first - 2)]);
        assert_eq!(run.code, Some(125), "{name}: the push's handle {} is still open", first - 2);
        let run = agent.run(&["raw", &format!(r#"{{"execute":"guest-file-close","arguments":{{"handle":{first}}}}}"#)]);
        assert_eq!(run.code, Some(0), "{name}: {}", run.stderr);
    }
}

// ---------------------------------------------------------------------------
// ping, info, sync, osinfo, shutdown, raw
// ---------------------------------------------------------------------------

#[test]
fn simple_commands() {
    for agent in agents() {
        let name = agent.name();
        let r = agent.run(&["ping"]);
        assert_eq!(r.code, Some(0), "{name}: {}", r.stderr);
        assert!(r.out().starts_with("guest-ping: ok"), "{}", r.out());
        let r = agent.run(&["sync"]);
        assert_eq!(r.code, Some(0), "{name}: {}", r.stderr);
        assert!(r.out().starts_with("synchronised"), "{}", r.out());
        let r = agent.run(&["info"]);
        assert_eq!(r.code, Some(0));
        let out = r.out();
        assert!(out.contains("version:") && out.lines().any(|l| l.starts_with("guest-exec ")), "{out}");
        let ext = if agent.kind == Kind::Qga {
            "extensions: yes (streaming exec, wait, terminate, timeout, cwd, user, terminals)\n"
        } else {
            "extensions: no"
        };
        assert!(out.contains(ext), "{name}: {out}");
        let r = agent.run(&["info", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&r.stdout).expect("info --json");
        assert!(v["return"]["supported_commands"].is_array());
        let r = agent.run(&["raw", r#"{"execute": "guest-ping", "id": 5}"#]);
        assert_eq!((r.code, r.out().as_str()), (Some(0), "{\"return\": {}, \"id\": 5}\n"), "{name}");
        let r = agent.run(&["raw", r#"{"execute": "guest-nope"}"#]);
        assert_eq!(r.code, Some(125));
        assert!(r.out().contains("CommandNotFound"), "{}", r.out());
        let r = agent.run_with(
            &["raw", "-"],
            Some(br#"{"execute":"guest-sync","arguments":{"id":42}}"#.to_vec()),
            Duration::from_secs(60),
        );
        assert_eq!(r.out(), "{\"return\": 42}\n");
        // Only a refused shutdown is safe to test.
        let r = agent.run(&["shutdown", "--mode", "bogus"]);
        assert_eq!(r.code, Some(125), "{name}: {}", r.stderr);
        assert_one_line_error(&r.stderr, "shutdown --mode bogus");
        // osinfo: both agents implement guest-get-osinfo. --json is the
        // agent's reply line unchanged; the table shows its members, known
        // ones first, one `key: value` line each (values checked against
        // uname(2), which the guest side reads too).
        let j = agent.run(&["osinfo", "--json"]);
        assert_eq!(j.code, Some(0), "{name}: {}", j.stderr);
        let jv: serde_json::Value = serde_json::from_slice(&j.stdout).expect("osinfo --json is JSON");
        let os = jv["return"].as_object().unwrap_or_else(|| panic!("{name}: {}", j.out())).clone();
        let uts = uname();
        assert_eq!(os["kernel-release"], uts.0.as_str(), "{name}");
        assert_eq!(os["kernel-version"], uts.1.as_str(), "{name}");
        assert_eq!(os["machine"], uts.2.as_str(), "{name}");
        let r = agent.run(&["osinfo"]);
        assert_eq!(r.code, Some(0), "{name}: {}", r.stderr);
        let order = [
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
        let mut keys: Vec<&str> = order.iter().copied().filter(|k| os.contains_key(*k)).collect();
        let mut extra: Vec<&str> = os.keys().map(|k| k.as_str()).filter(|k| !order.contains(k)).collect();
        extra.sort();
        keys.extend(extra);
        let width = keys.iter().map(|k| k.len()).max().unwrap() + 1;
        let want: String = keys
            .iter()
            .map(|k| {
                let v = match &os[*k] {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                format!("{:<width$} {v}\n", format!("{k}:"))
            })
            .collect();
        assert_eq!(r.out(), want, "{name}: qgactl osinfo");
        assert!(r.out().lines().any(|l| l == format!("{:<width$} {}", "kernel-release:", uts.0)), "{}", r.out());
    }
}

#[test]
fn help_for_every_subcommand() {
    let r = run_qgactl(&["--help".into()], None, Duration::from_secs(60), &[]);
    assert_eq!(r.code, Some(0));
    assert!(r.out().contains("Exit codes"));
    for sub in ["exec", "shell", "push", "pull", "ping", "info", "sync", "osinfo", "shutdown", "raw"] {
        for args in [vec![sub.to_string(), "--help".into()], vec!["help".into(), sub.to_string()]] {
            let r = run_qgactl(&args, None, Duration::from_secs(60), &[]);
            assert_eq!(r.code, Some(0), "{args:?}");
            assert!(r.out().starts_with(&format!("Usage: qgactl {sub}")), "{args:?}: {}", r.out());
            assert!(r.out().contains("Example"), "{args:?} has examples");
        }
    }
    for (args, what) in [
        (vec!["ping"], "no agent"),
        (vec!["frob"], "unknown command"),
        (vec!["--socket", "/x", "exec", "--bogus", "ls"], "unknown option"),
        (vec!["--socket", "/x", "exec"], "no program"),
        (vec!["--socket", "/x", "exec", "--timeout", "-1", "ls"], "bad timeout"),
        (vec!["--socket", "/x", "--vsock", "3:5", "ping"], "two targets"),
        (vec!["--vsock", "3", "ping"], "bad vsock"),
        (vec!["--socket", "/x", "push", "onlyone"], "push arity"),
    ] {
        let args: Vec<String> = args.into_iter().map(String::from).collect();
        let r = run_qgactl(&args, None, Duration::from_secs(60), &[]);
        assert_eq!(r.code, Some(2), "{what}: {}", r.stderr);
        assert_one_line_error(&r.stderr, what);
    }
}

// ---------------------------------------------------------------------------
// Connection handling
// ---------------------------------------------------------------------------

#[test]
fn connection_errors_are_one_line_and_exit_255() {
    let d = TempDir::new("qgactl-conn");
    // Missing socket: retried until --connect-timeout.
    let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let r = run_qgactl(
        &args(&["--connect-timeout", "0.5", "--socket", &d.join("none").display().to_string(), "ping"]),
        None,
        Duration::from_secs(60),
        &[],
    );
    assert_eq!(r.code, Some(255));
    assert_one_line_error(&r.stderr, "missing socket");
    assert!(r.stderr.contains("cannot connect") && r.stderr.contains("no such socket"), "{}", r.stderr);
    // It kept trying for the connect timeout (a hang is caught by the run's
    // own bound).
    assert!(r.elapsed >= Duration::from_millis(400), "{:?}", r.elapsed);
    // Something that accepts but never answers: the connection is held
    // until qgactl has given up (event-driven, no fixed window).
    let silent = d.join("silent");
    let l = UnixListener::bind(&silent).unwrap();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let keep = thread::spawn(move || {
        let conns: Vec<UnixStream> = l.incoming().take(1).flatten().collect();
        let _ = done_rx.recv();
        drop(conns);
    });
    let r = run_qgactl(
        &args(&["--connect-timeout", "1", "--socket", &silent.display().to_string(), "ping"]),
        None,
        Duration::from_secs(60),
        &[],
    );
    let _ = done_tx.send(());
    assert_eq!(r.code, Some(255));
    assert_one_line_error(&r.stderr, "silent agent");
    assert!(r.stderr.contains("did not answer guest-sync-delimited"), "{}", r.stderr);
    keep.join().unwrap();
    // vsock: whatever this host supports, a clean one-line failure.
    let r = run_qgactl(
        &args(&["--connect-timeout", "0.5", "--vsock", "1:4242", "ping"]),
        None,
        Duration::from_secs(60),
        &[],
    );
    assert_eq!(r.code, Some(255), "{}", r.stderr);
    assert_one_line_error(&r.stderr, "vsock");
    assert!(r.stderr.contains("vsock 1:4242"), "{}", r.stderr);
}

#[test]
fn disabled_commands_are_reported_in_one_line() {
    let mut kinds = vec![Kind::Qga];
    if qemu_ga_bin().is_some() {
        kinds.push(Kind::QemuGa);
    } else {
        skip::missing("disabled commands on qemu-ga: target/ref/qemu-ga-10/usr/sbin/qemu-ga is absent (run scripts/fetch-qemu-ga.sh)");
    }
    for kind in kinds {
        let agent = Agent::start_with(kind, &["-b", "guest-exec,guest-exec-terminate"]);
        let r = agent.run(&["exec", "--", "true"]);
        assert_eq!(r.code, Some(125), "{}: {}", agent.name(), r.stderr);
        assert_one_line_error(&r.stderr, "disabled guest-exec");
        assert!(r.stderr.contains("guest-exec has been disabled"), "{}: {}", agent.name(), r.stderr);
        let r = agent.run(&["info"]);
        assert!(r.out().lines().any(|l| l.starts_with("guest-exec ") && l.contains(" no ")), "{}", r.out());
    }
    // Only the terminate extension blocked on qga: exec falls back to polling.
    let agent = Agent::start_with(Kind::Qga, &["-b", "guest-exec-terminate"]);
    let r = agent.run(&["exec", "--", "sh", "-c", "echo fallback; exit 7"]);
    assert_eq!((r.code, r.out().as_str()), (Some(7), "fallback\n"), "{}", r.stderr);
}

#[test]
fn qga_socket_environment_variable() {
    let agent = Agent::start(Kind::Qga);
    let sock = agent.sock.display().to_string();
    let r = run_qgactl(&["ping".to_string()], None, Duration::from_secs(60), &[("QGA_SOCKET", &sock)]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
}

#[test]
fn resync_discards_stale_input_and_replies() {
    // A previous client left half a request behind (qemu-ga keeps its
    // parser state across clients).
    for agent in agents() {
        let mut s = UnixStream::connect(&agent.sock).unwrap();
        s.write_all(b"{\"execute\": \"guest-pi").unwrap();
        drop(s);
        let r = agent.run(&["exec", "--", "echo", "ok"]);
        assert_eq!((r.code, r.out().as_str()), (Some(0), "ok\n"), "{}: {}", agent.name(), r.stderr);
    }
    // A fake agent that sends stale replies, a stale 0xFF reply with another
    // id, then the real one.
    let d = TempDir::new("qgactl-fake");
    let path = d.join("fake");
    let l = UnixListener::bind(&path).unwrap();
    let server = thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        let mut line = Vec::new();
        r.read_until(b'\n', &mut line).unwrap();
        assert_eq!(line[0], 0xFF, "session starts with 0xFF");
        let v: serde_json::Value = serde_json::from_slice(&line[1..]).unwrap();
        assert_eq!(v["execute"], "guest-sync-delimited");
        let id = v["arguments"]["id"].as_i64().unwrap();
        w.write_all(b"{\"return\": {\"pid\": 1}}\ngarbage\n\0").unwrap();
        w.write_all(b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, stray '\\uFFFD'\"}}\n")
            .unwrap();
        w.write_all(format!("\x01{{\"return\": {}}}\n", id + 1).as_bytes()).unwrap();
        w.write_all(b"\xff{\"return\": 12}\n").unwrap();
        w.write_all(b"\xff").unwrap();
        w.write_all(format!("{{\"return\": {id}}}\n").as_bytes()).unwrap();
        line.clear();
        r.read_until(b'\n', &mut line).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["execute"], "guest-ping");
        w.write_all(b"{\"return\": {}}\n").unwrap();
    });
    let r =
        run_qgactl(&["--socket".into(), path.display().to_string(), "ping".into()], None, Duration::from_secs(60), &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    server.join().unwrap();
}

/// A user-space vsock backend's unix socket (Firecracker style): reads
/// `CONNECT <port>\n`, answers `OK <n>\n` and relays to the agent.
fn hybrid_backend(listen: &Path, agent_sock: &Path, port: u32) {
    let l = UnixListener::bind(listen).unwrap();
    let agent_sock = agent_sock.to_path_buf();
    // Detached: serves until the test process ends.
    thread::spawn(move || {
        for conn in l.incoming() {
            let c = conn.unwrap();
            let mut r = BufReader::new(c.try_clone().unwrap());
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            if line != format!("CONNECT {port}\n") {
                continue; // refused: just close
            }
            let mut w = c.try_clone().unwrap();
            w.write_all(b"OK 1073741824\n").unwrap();
            let a = UnixStream::connect(&agent_sock).unwrap();
            let mut a2 = a.try_clone().unwrap();
            let up = thread::spawn(move || {
                let _ = std::io::copy(&mut r, &mut a2);
                let _ = a2.shutdown(std::net::Shutdown::Write);
            });
            let mut a = a;
            let _ = std::io::copy(&mut a, &mut w);
            let _ = w.shutdown(std::net::Shutdown::Write);
            let _ = up.join();
        }
    });
}

#[test]
fn hybrid_vsock_handshake() {
    let agent = Agent::start(Kind::Qga);
    let hv = agent.dir.join("hv.sock");
    hybrid_backend(&hv, &agent.sock, 1024);
    let spec = format!("{}:1024", hv.display());
    let r = run_qgactl(
        &["--hybrid-vsock".into(), spec, "exec".into(), "--".into(), "echo".into(), "via vsock".into()],
        None,
        Duration::from_secs(60),
        &[],
    );
    assert_eq!((r.code, r.out().as_str()), (Some(0), "via vsock\n"), "{}", r.stderr);
    // Wrong port: the backend closes; one-line error.
    let spec = format!("{}:9", hv.display());
    let r = run_qgactl(
        &["--connect-timeout".into(), "0.5".into(), "--hybrid-vsock".into(), spec, "ping".into()],
        None,
        Duration::from_secs(60),
        &[],
    );
    assert_eq!(r.code, Some(255));
    assert_one_line_error(&r.stderr, "hybrid refused");
    assert!(r.stderr.contains("handshake"), "{}", r.stderr);
}

/// (release, version, machine) of uname(2).
fn uname() -> (String, String, String) {
    let u = qga_sys::host::uname().expect("uname");
    (u.release, u.version, u.machine)
}

// ---------------------------------------------------------------------------
// Terminals: exec -t / -it and `qgactl shell`
// ---------------------------------------------------------------------------

#[test]
fn shell_and_exec_tty_need_the_agents_terminal_support() {
    // qga with guest-exec-resize blocked, and Debian's qemu-ga.
    let mut agents = vec![Agent::start_with(Kind::Qga, &["-b", "guest-exec-resize"])];
    match qemu_ga_bin() {
        Some(_) => agents.push(Agent::start(Kind::QemuGa)),
        None => skip::missing(
            "shell_and_exec_tty_need_the_agents_terminal_support: target/ref/qemu-ga-10/usr/sbin/qemu-ga is absent (run scripts/fetch-qemu-ga.sh); the qemu-ga half is not run",
        ),
    }
    let info = agents[0].run(&["info"]);
    assert!(
        info.out().contains("extensions: yes (streaming exec, wait, terminate, timeout, cwd, user)\n"),
        "{}",
        info.out()
    );
    for a in &agents {
        for (args, what) in [(vec!["shell"], "qgactl shell"), (vec!["exec", "-t", "--", "true"], "exec --tty")] {
            let r = a.run(&args);
            assert_eq!(r.code, Some(125), "{} {args:?}: {}", a.name(), r.stderr);
            assert_eq!(
                r.stderr,
                format!("qgactl: guest-exec: the agent has no terminal support ({what} needs qga; guest-info does not list guest-exec-resize)\n"),
                "{}",
                a.name()
            );
            assert!(r.stdout.is_empty());
        }
    }
}

#[test]
fn exec_tty_without_a_local_terminal() {
    let a = Agent::start(Kind::Qga);
    // Not a terminal here: 24x80, no raw mode, output as the terminal made it.
    let r = a.run(&["exec", "-t", "--", "sh", "-c", "tty; stty size; echo err >&2; exit 4"]);
    assert_eq!(r.code, Some(4), "{}", r.stderr);
    let out = r.out();
    let lines: Vec<&str> = out.split("\r\n").collect();
    assert!(lines[0].starts_with("/dev/pts/"), "{out:?}");
    assert_eq!(&lines[1..], ["24 80", "err", ""], "{out:?}");
    assert_eq!(r.stderr, "");
    // -it with a pipe: the bytes are typed into the terminal.
    let r = a.run_with(
        &["exec", "-it", "--", "sh"],
        Some(b"echo typed $((6 * 7))\nexit 5\n".to_vec()),
        Duration::from_secs(40),
    );
    assert_eq!(r.code, Some(5), "{}", r.stderr);
    assert!(r.out().contains("typed 42\r\n"), "{:?}", r.out());
    // Signals end the program as 128+N.
    let r = a.run(&["exec", "--tty", "--", "sh", "-c", "kill -TERM $$"]);
    assert_eq!(r.code, Some(128 + 15), "{}", r.stderr);
    // Usage errors.
    for (args, what) in [
        (vec!["exec", "-i", "--stdin", "-", "true"], "-i and --stdin"),
        (vec!["exec", "-t", "--poll", "true"], "-t and --poll"),
        (vec!["shell", "extra"], "shell arity"),
    ] {
        let r = a.run(&args);
        assert_eq!(r.code, Some(2), "{what}: {}", r.stderr);
        assert_one_line_error(&r.stderr, what);
    }
}

/// A private tmux server (its own socket in the test's directory), killed
/// when dropped.
struct Tmux {
    sock: std::path::PathBuf,
}

impl Tmux {
    /// Starts a detached 100x30 session running `sh` (or None: no tmux).
    fn start(dir: &Path) -> Option<Tmux> {
        let ok = Command::new("tmux").arg("-V").output().is_ok_and(|o| o.status.success());
        if !ok {
            return None;
        }
        let t = Tmux { sock: dir.join("tmux.sock") };
        let st = Command::new("tmux")
            .arg("-S")
            .arg(&t.sock)
            .args(["-f", "/dev/null", "new-session", "-d", "-s", "t", "-x", "100", "-y", "30"])
            .args(["env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/", "TERM=xterm", "PS1=pane$ ", "sh"])
            .status()
            .expect("tmux new-session");
        assert!(st.success(), "tmux new-session failed");
        Some(t)
    }

    fn cmd(&self, args: &[&str]) -> String {
        let o = Command::new("tmux").arg("-S").arg(&self.sock).args(args).output().expect("tmux");
        assert!(o.status.success(), "tmux {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn keys(&self, keys: &str) {
        self.cmd(&["send-keys", "-t", "t", "-l", keys]);
    }

    fn enter(&self) {
        self.cmd(&["send-keys", "-t", "t", "Enter"]);
    }

    fn screen(&self) -> String {
        self.cmd(&["capture-pane", "-p", "-t", "t", "-S", "-200"])
    }

    /// Waits (deadline 60 s) until the pane shows text for which `cond` holds.
    #[track_caller]
    fn wait_for(&self, what: &str, cond: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            let s = self.screen();
            if cond(&s) {
                return s;
            }
            assert!(Instant::now() < end, "pane never showed {what}; it shows:\n{s}");
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// `stty -a` of the pane's terminal, read from outside.
    fn pane_stty(&self) -> String {
        let tty = self.cmd(&["display-message", "-p", "-t", "t", "#{pane_tty}"]);
        let o = Command::new("stty").args(["-a", "-F", tty.trim()]).output().expect("stty");
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").arg("-S").arg(&self.sock).arg("kill-server").status();
    }
}

fn stty_flags(stty: &str) -> Vec<&str> {
    stty.split(|c: char| c.is_whitespace() || c == ';').filter(|w| !w.is_empty()).collect()
}

#[test]
fn shell_in_a_real_terminal_with_tmux() {
    let a = Agent::start(Kind::Qga);
    let Some(tmux) = Tmux::start(a.dir.path()) else {
        skip::missing(
            "shell_in_a_real_terminal_with_tmux: tmux is not installed (apt-get install tmux; .ci/run installs it)",
        );
        return;
    };
    let d = a.dir.path().display().to_string();
    tmux.wait_for("the pane's prompt", |s| s.contains("pane$"));
    let cooked = tmux.pane_stty();
    for f in ["icanon", "echo", "isig", "opost"] {
        assert!(stty_flags(&cooked).contains(&f), "the pane starts cooked ({f}): {cooked}");
    }
    // How each session ends, and qgactl's exit code: the shell's `exit 3`;
    // ssh's escape; SIGHUP to qgactl, forwarded (the shell dies of it);
    // SIGTERM, forwarded (an interactive shell ignores it: SIGKILL 5 s later);
    // the connection lost (the agent killed; last).
    for (session, end_keys, want_code) in
        [(1, "exit 3", 3), (2, "~.", 255), (3, "SIGHUP", 128 + 1), (4, "SIGTERM", 128 + 9), (5, "agent dies", 255)]
    {
        tmux.keys(&format!(
            "clear; stty -g > {d}/before{session}; {} --socket {} shell; echo qgactl-exit=$?; stty -g > {d}/after{session}; echo done{session}",
            qgactl(),
            a.sock.display()
        ));
        tmux.enter();
        // Type a command, see its output (computed, so not the echo of the keys).
        tmux.keys(&format!("echo marker-{session}-$((6 * 7))"));
        tmux.enter();
        let marker = format!("marker-{session}-42");
        tmux.wait_for("the command's output", |s| s.lines().any(|l| l.trim_end() == marker));
        // Raw mode while qgactl runs.
        let raw = tmux.pane_stty();
        for f in ["-icanon", "-echo", "-isig", "-opost"] {
            assert!(stty_flags(&raw).contains(&f), "the pane is raw during the session ({f}): {raw}");
        }
        if session == 1 {
            let size = |i: u32| {
                tmux.keys(&format!("echo size-{i} $(stty size)"));
                tmux.enter();
                let tag = format!("size-{i} ");
                let s = tmux.wait_for("stty size output", |s| s.lines().any(|l| l.starts_with(&tag)));
                s.lines().find_map(|l| l.strip_prefix(&tag)).unwrap_or_default().trim_end().to_string()
            };
            assert_eq!(size(0), "30 100");
            tmux.cmd(&["resize-window", "-t", "t", "-x", "120", "-y", "40"]);
            // SIGWINCH reaches qgactl, which resizes the guest terminal
            // (asked again until it shows: the resize may be on its way).
            let end = Instant::now() + Duration::from_secs(60);
            let mut i = 1;
            loop {
                let got = size(i);
                if got == "40 120" {
                    break;
                }
                assert!(got == "30 100" && Instant::now() < end, "stty size never followed the pane: {got}");
                i += 1;
            }
        }
        match end_keys {
            "~." => {
                // At the start of a line.
                tmux.enter();
                tmux.keys(end_keys);
            }
            "SIGHUP" | "SIGTERM" => {
                let pane_pid: u32 =
                    tmux.cmd(&["display-message", "-p", "-t", "t", "#{pane_pid}"]).trim().parse().unwrap();
                let kids = procfs::children_of(pane_pid);
                assert_eq!(kids.len(), 1, "qgactl is the pane shell's only child: {kids:?}");
                let sig = if end_keys == "SIGHUP" { qga_sys::signal::SIGHUP } else { qga_sys::signal::SIGTERM };
                let _ = qga_sys::process::kill(kids[0].0 as i32, sig);
            }
            "agent dies" => {
                let _ = qga_sys::process::kill(a.pid() as i32, qga_sys::signal::SIGKILL);
            }
            _ => {
                tmux.keys(end_keys);
                tmux.enter();
            }
        }
        let s = tmux.wait_for("qgactl's exit", |s| s.contains(&format!("done{session}")));
        assert!(s.contains(&format!("qgactl-exit={want_code}")), "{s}");
        let before = std::fs::read_to_string(a.dir.join(format!("before{session}"))).unwrap();
        let after = std::fs::read_to_string(a.dir.join(format!("after{session}"))).unwrap();
        assert_eq!(before, after, "the terminal's settings (stty -g) are restored");
        let cooked_again = tmux.pane_stty();
        for f in ["icanon", "echo", "isig", "opost"] {
            assert!(
                stty_flags(&cooked_again).contains(&f),
                "cooked again after session {session} ({f}): {cooked_again}"
            );
        }
        if session == 2 {
            assert!(s.contains("qgactl: session closed (~.); guest process"), "{s}");
        }
    }
}
