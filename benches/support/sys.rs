//! Machine facts and /proc readings: memory, CPU time, affinity, load;
//! and the floors' spawns and pipes. /proc parsing is here; every call
//! into the C library goes through qga-sys.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use qga_sys::{fd, host, process, spawn};

/// A `Name:   N kB` field of /proc/PID/status, in KiB.
pub fn status_kib(pid: i32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))
        .and_then(|l| l[field.len() + 1..].split_whitespace().next()?.parse().ok())
}

pub fn vm_rss_kib(pid: i32) -> Option<u64> {
    status_kib(pid, "VmRSS")
}

pub fn vm_hwm_kib(pid: i32) -> Option<u64> {
    status_kib(pid, "VmHWM")
}

/// Pss from /proc/PID/smaps_rollup, KiB (shared pages divided by sharers).
pub fn pss_kib(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    text.lines().find(|l| l.starts_with("Pss:"))?.split_whitespace().nth(1)?.parse().ok()
}

pub fn threads(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map(|d| d.count()).unwrap_or(0)
}

/// CPU used by a process (all threads).
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuUse {
    /// utime + stime, clock ticks converted to ms.
    pub ticks_ms: f64,
    /// sum of /proc/PID/task/*/schedstat run time, ns.
    pub sched_ns: u64,
    /// voluntary + involuntary context switches of all threads (wake-ups).
    pub switches: u64,
}

pub fn cpu_use(pid: i32) -> CpuUse {
    let mut u = CpuUse::default();
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // Fields after the ")" of comm: state is field 3; utime 14, stime 15.
        if let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) {
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ut: u64 = f.get(11).and_then(|s| s.parse().ok()).unwrap_or(0);
            let st: u64 = f.get(12).and_then(|s| s.parse().ok()).unwrap_or(0);
            let hz = host::clock_ticks() as f64;
            u.ticks_ms = (ut + st) as f64 * 1000.0 / hz;
        }
    }
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in dir.flatten() {
            let p = t.path();
            if let Ok(s) = std::fs::read_to_string(p.join("schedstat")) {
                u.sched_ns += s.split_whitespace().next().and_then(|x| x.parse().ok()).unwrap_or(0);
            }
            if let Ok(s) = std::fs::read_to_string(p.join("status")) {
                for l in s.lines() {
                    if l.starts_with("voluntary_ctxt_switches") || l.starts_with("nonvoluntary_ctxt_switches") {
                        u.switches += l.split_whitespace().nth(1).and_then(|x| x.parse().ok()).unwrap_or(0);
                    }
                }
            }
        }
    }
    u
}

/// Pins every thread of `pid` (0 = this thread) to `cpus`.
pub fn set_affinity(pid: i32, cpus: &[usize]) {
    let tids: Vec<i32> = if pid == 0 {
        vec![0]
    } else {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|d| d.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect())
            .unwrap_or_default()
    };
    for tid in tids {
        // A thread that is gone meanwhile is not pinned: nothing to do.
        let _ = process::set_affinity(tid, cpus);
    }
}

pub fn all_cpus() -> Vec<usize> {
    (0..nproc()).collect()
}

/// Online CPUs (not this thread's affinity, which pinning changes).
pub fn nproc() -> usize {
    host::cpus_online()
}

pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

pub fn kernel() -> String {
    match host::uname() {
        Ok(u) => format!("{} {} {}", u.sysname, u.release, u.machine),
        Err(_) => "  ".to_string(),
    }
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// (busy, total) jiffies of all CPUs from /proc/stat.
fn cpu_jiffies() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let line = s.lines().next().unwrap_or("");
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// Busy fraction of the whole machine (0..1 of all CPUs) while `f` runs.
pub fn machine_busy_during<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let (b0, t0) = cpu_jiffies();
    let r = f();
    let (b1, t1) = cpu_jiffies();
    let frac = if t1 > t0 { (b1 - b0) as f64 / (t1 - t0) as f64 } else { 0.0 };
    (r, frac)
}

/// Background load: busy fraction of all CPUs over `d` while we sleep.
pub fn background_busy(d: Duration) -> f64 {
    machine_busy_during(|| std::thread::sleep(d)).1
}

/// Shared libraries `ldd` lists (None: static / not dynamic).
pub fn ldd(bin: &Path) -> Vec<String> {
    let out = std::process::Command::new("ldd").arg(bin).output();
    let Ok(out) = out else { return vec![] };
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter(|l| !l.contains("linux-vdso") && !l.contains("not a dynamic") && !l.contains("statically linked"))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|s| !s.is_empty())
        .collect()
}

pub fn file_size(p: &Path) -> Option<u64> {
    std::fs::metadata(p).ok().map(|m| m.len())
}

/// posix_spawn(path, argv) with optional fd redirections (our fd -> the
/// child's fd); every other fd of ours is close-on-exec.
pub fn posix_spawn(path: &str, args: &[&str], dup: &[(&OwnedFd, i32)]) -> i32 {
    let cpath = CString::new(path).unwrap();
    let cargs: Vec<CString> = args.iter().map(|&a| CString::new(a).unwrap()).collect();
    let argv: Vec<&std::ffi::CStr> = cargs.iter().map(CString::as_c_str).collect();
    let dups: Vec<(i32, i32)> = dup.iter().map(|&(ours, theirs)| (ours.as_raw_fd(), theirs)).collect();
    spawn::spawn_plain(&cpath, &argv, &dups).unwrap_or_else(|e| panic!("posix_spawn {path} failed: {}", e.raw()))
}

pub fn waitpid(pid: i32) -> i32 {
    match process::wait_for(pid) {
        Ok(st) => st.0,
        Err(e) => panic!("waitpid({pid}): {e}"),
    }
}

/// A close-on-exec pipe: (read, write).
pub fn pipe() -> (OwnedFd, OwnedFd) {
    fd::pipe().expect("pipe")
}

/// Reads fd to EOF, counting bytes (into a reused buffer).
pub fn drain(from: &OwnedFd, buf: &mut [u8]) -> usize {
    let mut total = 0;
    loop {
        match fd::read(from.as_fd(), buf) {
            Ok(0) => return total,
            Ok(n) => total += n,
            Err(e) => panic!("read: {e}"),
        }
    }
}

pub fn write_all(to: &OwnedFd, mut data: &[u8]) {
    while !data.is_empty() {
        match fd::write(to.as_fd(), data) {
            Ok(n) => data = &data[n..],
            Err(e) => panic!("write: {e}"),
        }
    }
}
