//! `qga-pty-floor [BYTES]`: the kernel floor of a terminal's output, for
//! `make bench-vm` (scripts/bench/vm.py, workload `term`). No agent: `head
//! -c BYTES /dev/zero` writes into a pty slave opened as qga opens it
//! (default, cooked settings) and this process reads the master until EIO
//! (the slave's last close, n_tty_read's answer once the other side is
//! gone). Prints the bytes read and this process's own CPU time for the
//! reading (ms, /proc/self/schedstat): what the kernel charges a reader to
//! move those bytes through a pty. `head` is not waited for (wait4 would
//! add its CPU to ours in the caller's rusage); PID 1 reaps it. Not part
//! of the agent binary.

use std::io::Read;
use std::process::{Command, Stdio};

fn main() {
    let bytes: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(8 << 20);
    let (master, slave, _) = match qga_sys::pty::open_named() {
        Ok(p) => p,
        Err(e) => fail(&format!("cannot open a pty: {e}")),
    };
    // The Command owns the slave: dropping it closes our copy, so that EIO
    // marks the writer's end.
    let child = Command::new("head")
        .args(["-c", &bytes.to_string(), "/dev/zero"])
        .stdin(Stdio::null())
        .stdout(Stdio::from(slave))
        .spawn();
    if let Err(e) = child {
        fail(&format!("cannot run head: {e}"));
    }
    let cpu0 = on_cpu_ns();
    let mut master = std::fs::File::from(master);
    let mut buf = vec![0u8; 16 << 10];
    let mut got = 0usize;
    loop {
        match master.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let cpu = on_cpu_ns().saturating_sub(cpu0);
    println!("{got} {:.3}", cpu as f64 / 1e6);
}

/// Nanoseconds this process has run (the first field of /proc/self/schedstat).
fn on_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn fail(msg: &str) -> ! {
    eprintln!("qga-pty-floor: {msg}");
    std::process::exit(1)
}
