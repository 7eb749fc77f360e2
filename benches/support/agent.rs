//! Starting and stopping an agent (qga or qemu-ga) the way QEMU's test
//! fixture does: `BIN -m unix-listen -p DIR/sock -t DIR -f DIR/pid`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::client::Client;

pub struct Agent {
    pub dir: PathBuf,
    pub child: Child,
    pub client: Client,
    /// Spawn → first guest-ping reply, seconds.
    pub start_s: f64,
    /// VmRSS right after the first reply, KiB.
    pub rss_kib: u64,
    /// RssAnon (private memory) and Pss at the same moment, KiB.
    pub anon_kib: u64,
    pub pss_kib: u64,
}

static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

pub fn scratch_dir(root: &Path, tag: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = root.join(format!("{tag}-{n}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

impl Agent {
    /// Starts the agent, connects as soon as the socket accepts, and times
    /// spawn → first guest-ping reply.
    pub fn start(label: &'static str, bin: &Path, root: &Path) -> Agent {
        Agent::start_with(label, bin, root, &[])
    }

    /// [`Agent::start`] with more command-line arguments.
    pub fn start_with(label: &'static str, bin: &Path, root: &Path, extra: &[&std::ffi::OsStr]) -> Agent {
        let dir = scratch_dir(root, label);
        let sock = dir.join("sock");
        let t0 = Instant::now();
        let child = Command::new(bin)
            .args(["-m", "unix-listen", "-p"])
            .arg(&sock)
            .arg("-t")
            .arg(&dir)
            .arg("-f")
            .arg(dir.join("pid"))
            .args(extra)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut client = match Client::connect_spin(&sock, t0 + Duration::from_secs(20)) {
            Ok(c) => c,
            Err(e) => panic!("{label} ({}) never accepted on {}: {e}", bin.display(), sock.display()),
        };
        client.ping();
        let start_s = t0.elapsed().as_secs_f64();
        let pid = child.id() as i32;
        let rss_kib = super::sys::vm_rss_kib(pid).unwrap_or(0);
        let anon_kib = super::sys::status_kib(pid, "RssAnon").unwrap_or(0);
        let pss_kib = super::sys::pss_kib(pid).unwrap_or(0);
        Agent { anon_kib, pss_kib, dir, child, client, start_s, rss_kib }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// SIGTERM, wait (SIGKILL after 5 s), remove the scratch dir.
    pub fn stop(mut self) {
        // Gone already: the wait below sees it.
        let _ = qga_sys::process::kill(self.pid(), qga_sys::signal::SIGTERM);
        let t = Instant::now();
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => break,
                _ if t.elapsed() > Duration::from_secs(5) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
                _ => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
