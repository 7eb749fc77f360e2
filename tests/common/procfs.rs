//! /proc helpers shared by every suite (tests/common, tests/commands_common
//! and tests/qgactl_support include this file): process state, CPU time,
//! fds, and the event-driven waits built on them.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, ExitStatus};
use std::thread;
use std::time::{Duration, Instant};

/// Number of open fds of a process.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", pid)).expect("read /proc/PID/fd").count()
}

/// The fd table of a process: (fd, link target).
pub fn fd_list(pid: u32) -> Vec<(u32, String)> {
    let mut v: Vec<(u32, String)> = std::fs::read_dir(format!("/proc/{}/fd", pid))
        .expect("read /proc/PID/fd")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let fd = e.file_name().to_string_lossy().parse().ok()?;
            let target = std::fs::read_link(e.path()).ok()?.to_string_lossy().into_owned();
            Some((fd, target))
        })
        .collect();
    v.sort();
    v
}

/// Fields of /proc/PID/stat after the command name: index 0 = state (field 3).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let s = std::fs::read_to_string(format!("/proc/{}/stat", pid)).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    Some(rest.split_whitespace().map(|x| x.to_string()).collect())
}

/// utime + stime of a process in clock ticks.
pub fn cpu_ticks(pid: u32) -> u64 {
    let f = stat_fields(pid).expect("read /proc/PID/stat");
    // field 14 = utime, 15 = stime; index = field - 3
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// Clock ticks per second.
pub fn ticks_per_sec() -> u64 {
    qga_sys::host::clock_ticks()
}

/// State letter of a process (`R`, `S`, `Z`, ...), None if it does not exist.
pub fn proc_state(pid: u32) -> Option<char> {
    stat_fields(pid).and_then(|f| f[0].chars().next())
}

/// Does /proc/PID exist (running or zombie)?
pub fn proc_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{}", pid)).exists()
}

/// Direct children of `ppid`: (pid, state).
pub fn children_of(ppid: u32) -> Vec<(u32, char)> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let pid: u32 = match e.file_name().to_string_lossy().parse() {
                Ok(p) => p,
                Err(_) => continue,
            };
            if let Some(f) = stat_fields(pid) {
                // field 4 = ppid → index 1
                if f.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(ppid) {
                    v.push((pid, f[0].chars().next().unwrap_or('?')));
                }
            }
        }
    }
    v
}

/// Zombie children of `ppid`.
pub fn zombies_of(ppid: u32) -> Vec<u32> {
    children_of(ppid).into_iter().filter(|&(_, s)| s == 'Z').map(|(p, _)| p).collect()
}

/// Poll `cond` every 10 ms until it holds or `t` elapses; returns whether it held.
pub fn wait_until<F: FnMut() -> bool>(t: Duration, mut cond: F) -> bool {
    let deadline = Instant::now() + t;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Waits (generously: up to 120 s) until process `pid` is asleep and has
/// used no CPU for ten samples 20 ms apart: whatever it does in answer to
/// input already sent is done (replies are in the socket). The
/// event-driven form of "wait a while, then check nothing happened": a
/// loaded machine makes it slower, never weaker.
pub fn wait_idle(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = cpu_ticks(pid);
    let mut still = 0;
    while still < 10 {
        thread::sleep(Duration::from_millis(20));
        let t = cpu_ticks(pid);
        still = if t == last && proc_state(pid) == Some('S') { still + 1 } else { 0 };
        last = t;
        assert!(Instant::now() < deadline, "pid {pid} did not go idle within 120 s");
    }
}

/// Asserts that `pid` is not spinning: once it has settled ([`wait_idle`],
/// which a busy loop never passes), it is asleep (state `S`) in every one
/// of 50 samples 20 ms apart. A busy loop is runnable (`R`) whether or not
/// a loaded machine lets it run, and an idle agent has nothing to wake it,
/// so this neither weakens nor flakes under load.
pub fn assert_sleeping(pid: u32, what: &str) {
    wait_idle(pid);
    for i in 0..50 {
        let st = proc_state(pid);
        assert_eq!(
            st,
            Some('S'),
            "{what}: pid {pid} not asleep in sample {i} (wchan {:?})",
            std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// A `VmRSS:`/`VmHWM:`-style value of /proc/PID/status, in KiB.
pub fn proc_status_kib(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

/// Wait for a child with a bound; None on timeout.
pub fn wait_timeout(child: &mut Child, t: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + t;
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        if Instant::now() > deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Feeds `stdin` (if given) to a child started with piped stdio, collects
/// its stdout and stderr, and waits up to `limit`: (status, stdout,
/// stderr), or None after killing a child that did not finish.
pub fn collect_output(mut c: Child, stdin: Option<Vec<u8>>, limit: Duration) -> Option<(ExitStatus, Vec<u8>, Vec<u8>)> {
    let writer = stdin.map(|data| {
        let mut si = c.stdin.take().unwrap();
        thread::spawn(move || {
            let _ = si.write_all(&data);
        })
    });
    let reader = |mut r: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut b = Vec::new();
            let _ = r.read_to_end(&mut b);
            b
        })
    };
    let ro = reader(Box::new(c.stdout.take().unwrap()));
    let re = reader(Box::new(c.stderr.take().unwrap()));
    let st = match wait_timeout(&mut c, limit) {
        Some(st) => st,
        None => {
            let _ = c.kill();
            let _ = c.wait();
            return None;
        }
    };
    if let Some(w) = writer {
        let _ = w.join();
    }
    Some((st, ro.join().unwrap(), re.join().unwrap()))
}

/// A child that is killed (SIGKILL) and reaped on drop unless it has ended:
/// no agent outlives a test that fails half-way.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
