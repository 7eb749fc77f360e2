//! The machine's floors, measured in the same run: what the kernel and
//! libc need for the same work with no agent in between.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixListener;

use super::client::Client;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::sys::{drain, pipe, posix_spawn, waitpid, write_all};

/// posix_spawn + waitpid of /bin/true, one at a time: seconds per spawn.
pub fn spawn_true_seq(n: usize) -> Vec<f64> {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            let pid = posix_spawn("/bin/true", &[], &[]);
            waitpid(pid);
            t.elapsed().as_secs_f64()
        })
        .collect()
}

/// posix_spawn 50 /bin/true, then waitpid them all: seconds for the batch.
pub fn spawn_true_inflight(k: usize) -> f64 {
    let t = Instant::now();
    let pids: Vec<i32> = (0..k).map(|_| posix_spawn("/bin/true", &[], &[])).collect();
    for p in pids {
        waitpid(p);
    }
    t.elapsed().as_secs_f64()
}

/// A bare pipe carrying `len` bytes from a thread to us (64 KiB writes).
pub fn pipe_raw(len: usize) -> f64 {
    let (r, w) = pipe();
    let t = Instant::now();
    let writer = std::thread::spawn(move || {
        let chunk = vec![0x5au8; 64 << 10];
        let mut left = len;
        while left > 0 {
            let n = left.min(chunk.len());
            write_all(&w, &chunk[..n]);
            left -= n;
        }
        drop(w);
    });
    let mut buf = vec![0u8; 64 << 10];
    let got = drain(&r, &mut buf);
    writer.join().unwrap();
    drop(r);
    assert_eq!(got, len);
    t.elapsed().as_secs_f64()
}

/// posix_spawn `cat FILE` into a pipe, read it all, waitpid: the floor for
/// capturing a child's output.
pub fn spawn_cat(file: &Path, len: usize, buf: &mut [u8]) -> f64 {
    let t = Instant::now();
    let (r, w) = pipe();
    let pid = posix_spawn("/bin/cat", &[file.to_str().unwrap()], &[(&w, 1)]);
    drop(w);
    let got = drain(&r, buf);
    drop(r);
    waitpid(pid);
    assert_eq!(got, len);
    t.elapsed().as_secs_f64()
}

/// posix_spawn `wc -c` with a pipe on stdin carrying `data`, read its
/// answer, waitpid: the floor for feeding a child input.
pub fn spawn_wc(data: &[u8]) -> f64 {
    let t = Instant::now();
    let (ir, iw) = pipe();
    let (or, ow) = pipe();
    let pid = posix_spawn("/usr/bin/wc", &["-c"], &[(&ir, 0), (&ow, 1)]);
    drop(ir);
    drop(ow);
    write_all(&iw, data);
    drop(iw);
    let mut out = [0u8; 64];
    let mut n = 0;
    while let Ok(k @ 1..) = qga_sys::fd::read(or.as_fd(), &mut out[n..]) {
        n += k;
    }
    drop(or);
    waitpid(pid);
    let count: usize = String::from_utf8_lossy(&out[..n]).trim().parse().unwrap_or(0);
    assert_eq!(count, data.len());
    t.elapsed().as_secs_f64()
}

/// The echo server child process (this same binary, `--echo-server SOCK`).
pub fn echo_server_main(sock: &str) -> ! {
    let l = UnixListener::bind(sock).expect("bind echo socket");
    loop {
        let Ok((mut s, _)) = l.accept() else { continue };
        let mut buf = vec![0u8; 64 << 10];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
    }
}

pub struct Echo {
    pub child: Child,
    /// Speaks lines like an agent client (the server echoes each ping).
    pub client: Client,
    /// Spawn → first echoed reply, seconds.
    pub start_s: f64,
}

impl Echo {
    pub fn start(dir: &Path) -> Echo {
        let path = dir.join("echo.sock");
        let _ = std::fs::remove_file(&path);
        let exe = std::env::current_exe().expect("current exe");
        let t0 = Instant::now();
        let child = Command::new(exe)
            .arg("--echo-server")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start echo server");
        let mut client = Client::connect_spin(&path, t0 + Duration::from_secs(10)).expect("echo server");
        client.ping();
        let start_s = t0.elapsed().as_secs_f64();
        Echo { child, client, start_s }
    }

    /// One round trip of a guest-ping-sized message, seconds.
    pub fn rtt(&mut self) -> f64 {
        let t = Instant::now();
        self.client.ping();
        t.elapsed().as_secs_f64()
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
