//! cgroup v2 leaves for exec's children: one directory per exec under a
//! parent whose `cgroup.subtree_control` enables memory, pids and cpu; the
//! child joins it itself between fork and exec (writing "0" to the
//! leaf's `cgroup.procs`, through an fd opened here). The kernel's
//! Documentation/admin-guide/cgroup-v2.rst is the reference for every
//! file used; systemd's cg_* helpers do the same.
//!
//! The "no internal processes" rule: a cgroup that holds processes cannot
//! hand controllers to its children, so the agent first moves itself into
//! a leaf of its own ([`move_self`]), then enables the controllers in the
//! parent ([`enable_controllers`]), then creates one [`Cgroup`] per exec
//! beside its own leaf.

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::fs::open_at;
use crate::Errno;

/// Where the cgroup2 file system is mounted (the first cgroup2 line of
/// /proc/self/mountinfo), else None (cgroup v1 only, or none).
pub fn v2_mount() -> Option<PathBuf> {
    cgroup2_mount_in(&std::fs::read_to_string("/proc/self/mountinfo").ok()?)
}

/// This process's cgroup v2 path, relative to the cgroup2 mount: the
/// path of the `0::/path` line of /proc/self/cgroup (e.g.
/// "/system.slice/qga.service"); None without one.
pub fn own_cgroup() -> Option<String> {
    unified_path_in(&std::fs::read_to_string("/proc/self/cgroup").ok()?)
}

/// The controllers `dir`'s children may get (`cgroup.controllers`).
pub fn available_controllers(dir: &Path) -> Result<Vec<String>, Errno> {
    let text = std::fs::read_to_string(dir.join("cgroup.controllers")).map_err(|e| Errno::of(&e))?;
    Ok(text.split_whitespace().map(str::to_string).collect())
}

/// Enables each controller ("memory", "pids", "cpu") for `dir`'s
/// children, one write of "+name" to `cgroup.subtree_control` each, so
/// one that cannot be enabled does not stop the others. Err lists the
/// ones that failed, each with its errno (ENOENT: not available here;
/// EBUSY: `dir` holds processes itself).
pub fn enable_controllers(dir: &Path, which: &[&str]) -> Result<(), Vec<(String, Errno)>> {
    let file = dir.join("cgroup.subtree_control");
    let failed: Vec<(String, Errno)> = which
        .iter()
        .filter_map(|name| write_file(&file, format!("+{name}").as_bytes()).err().map(|e| (name.to_string(), e)))
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed)
    }
}

/// Moves the calling process into `dir` ("0" to its `cgroup.procs`).
pub fn move_self(dir: &Path) -> Result<(), Errno> {
    write_file(&dir.join("cgroup.procs"), b"0")
}

/// Limits written when a leaf is created; None leaves the kernel's
/// default ("max").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupLimits {
    /// Bytes (`memory.max`); above it the kernel reclaims, then OOM-kills.
    pub memory_max: Option<u64>,
    /// Processes and threads (`pids.max`); fork fails with EAGAIN above.
    pub pids_max: Option<u64>,
    /// (quota µs, period µs) (`cpu.max`): at most quota per period.
    pub cpu_max: Option<(u64, u64)>,
}

/// What a leaf saw; read while or after its processes ran.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupStats {
    /// Highest memory use in bytes (`memory.peak`, kernel >= 5.19).
    pub memory_peak: Option<u64>,
    /// OOM kills in the leaf (`memory.events` oom_kill).
    pub oom_kills: u64,
    /// CPU time used in µs (`cpu.stat` usage_usec).
    pub cpu_usec: Option<u64>,
}

/// One exec's leaf: its path, its directory and its `cgroup.procs`
/// (O_WRONLY, close-on-exec: what the child writes "0" to). Dropping it
/// removes the directory if it is empty by then (kill and reap first).
#[derive(Debug)]
pub struct Cgroup {
    path: PathBuf,
    dir: OwnedFd,
    procs: OwnedFd,
}

impl Cgroup {
    /// Creates `parent/name` (mode 0755) and writes `limits`; on any
    /// failure the directory is removed again.
    pub fn create(parent: &Path, name: &str, limits: &CgroupLimits) -> Result<Cgroup, Errno> {
        if name.is_empty() || name == "." || name == ".." || name.contains('/') {
            return Err(Errno::EINVAL);
        }
        let path = parent.join(name);
        std::fs::DirBuilder::new().mode(0o755).create(&path).map_err(|e| Errno::of(&e))?;
        Self::open_and_limit(path.clone(), limits).inspect_err(|_| {
            let _ = std::fs::remove_dir(&path);
        })
    }

    fn open_and_limit(path: PathBuf, limits: &CgroupLimits) -> Result<Cgroup, Errno> {
        let cpath = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| Errno::EINVAL)?;
        let dir = crate::fd::open(&cpath, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
        if let Some(bytes) = limits.memory_max {
            write_at(dir.as_fd(), c"memory.max", bytes.to_string().as_bytes())?;
        }
        if let Some(n) = limits.pids_max {
            write_at(dir.as_fd(), c"pids.max", n.to_string().as_bytes())?;
        }
        if let Some((quota, period)) = limits.cpu_max {
            write_at(dir.as_fd(), c"cpu.max", format!("{quota} {period}").as_bytes())?;
        }
        let procs = open_at(dir.as_fd(), c"cgroup.procs", libc::O_WRONLY)?;
        Ok(Cgroup { path, dir, procs })
    }

    /// For `SpawnSpec::cgroup_procs` (keep the `Cgroup` alive over the spawn).
    pub fn procs_fd(&self) -> RawFd {
        self.procs.as_raw_fd()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// SIGKILLs every process in the leaf and below: "1" to `cgroup.kill`
    /// (kernel >= 5.14: exact, races no fork). Before 5.14: the leaf is
    /// frozen (`cgroup.freeze`, >= 5.2) so nothing forks, each pid listed
    /// in `cgroup.procs` is killed (a few rounds, for what forked before
    /// the freeze took), then it is thawed (a frozen task still dies).
    pub fn kill(&self) -> Result<(), Errno> {
        match write_at(self.dir.as_fd(), c"cgroup.kill", b"1") {
            Err(Errno::ENOENT) => self.kill_frozen(),
            other => other,
        }
    }

    /// [`kill`](Self::kill) before cgroup.kill (kernels 5.2 to 5.13).
    fn kill_frozen(&self) -> Result<(), Errno> {
        let frozen = write_at(self.dir.as_fd(), c"cgroup.freeze", b"1").is_ok();
        let result = self.kill_listed();
        if frozen {
            let _ = write_at(self.dir.as_fd(), c"cgroup.freeze", b"0");
        }
        result
    }

    fn kill_listed(&self) -> Result<(), Errno> {
        let mut killed: Vec<libc::pid_t> = Vec::new();
        for _ in 0..16 {
            let text = read_at(self.dir.as_fd(), c"cgroup.procs")?;
            let mut new = false;
            for pid in text.lines().filter_map(|l| l.trim().parse::<libc::pid_t>().ok()) {
                if !killed.contains(&pid) {
                    // ESRCH: it ended meanwhile.
                    let _ = crate::process::kill(pid, libc::SIGKILL);
                    killed.push(pid);
                    new = true;
                }
            }
            if !new {
                break;
            }
        }
        Ok(())
    }

    /// Whether a live process is in the leaf or below
    /// (`cgroup.events` "populated 1"); false if it cannot be read.
    pub fn populated(&self) -> bool {
        read_at(self.dir.as_fd(), c"cgroup.events").is_ok_and(|t| keyed_value(&t, "populated") == Some(1))
    }

    /// What the leaf saw. Files the kernel lacks read as None (or 0 OOM
    /// kills).
    pub fn stats(&self) -> CgroupStats {
        let read = |name: &std::ffi::CStr| read_at(self.dir.as_fd(), name).ok();
        CgroupStats {
            memory_peak: read(c"memory.peak").and_then(|t| t.trim().parse().ok()),
            oom_kills: read(c"memory.events").and_then(|t| keyed_value(&t, "oom_kill")).unwrap_or(0),
            cpu_usec: read(c"cpu.stat").and_then(|t| keyed_value(&t, "usage_usec")),
        }
    }

    /// Removes the leaf (EBUSY while a process is in it).
    pub fn remove(&self) -> Result<(), Errno> {
        std::fs::remove_dir(&self.path).map_err(|e| Errno::of(&e))
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // Already removed (ENOENT) or still populated (EBUSY): nothing to do.
        let _ = std::fs::remove_dir(&self.path);
    }
}

/// One write of `text` to a cgroup file (the kernel takes a control
/// file's value in one write).
fn write_file(path: &Path, text: &[u8]) -> Result<(), Errno> {
    let mut f = std::fs::OpenOptions::new().write(true).open(path).map_err(|e| Errno::of(&e))?;
    f.write_all(text).map_err(|e| Errno::of(&e))
}

fn write_at(dir: BorrowedFd<'_>, name: &std::ffi::CStr, text: &[u8]) -> Result<(), Errno> {
    File::from(open_at(dir, name, libc::O_WRONLY)?).write_all(text).map_err(|e| Errno::of(&e))
}

fn read_at(dir: BorrowedFd<'_>, name: &std::ffi::CStr) -> Result<String, Errno> {
    let mut text = String::new();
    File::from(open_at(dir, name, libc::O_RDONLY)?).read_to_string(&mut text).map_err(|e| Errno::of(&e))?;
    Ok(text)
}

/// The mount point of the first cgroup2 line of a mountinfo text
/// (proc(5): `id parent dev root mountpoint opts [tags] - fstype src
/// superopts`; octal escapes undone).
fn cgroup2_mount_in(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        if right.split(' ').next()? != "cgroup2" {
            return None;
        }
        Some(PathBuf::from(unescape_octal(left.split(' ').nth(4)?)))
    })
}

/// mountinfo's `\ooo` escapes (space, tab, newline, backslash).
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b.get(i + 1..i + 4).filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match oct {
            Some(d) => {
                out.push(d.iter().fold(0u8, |v, c| v.wrapping_mul(8).wrapping_add(c - b'0')));
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The path of the `0::` line of a /proc/PID/cgroup text.
fn unified_path_in(text: &str) -> Option<String> {
    text.lines().find_map(|l| l.strip_prefix("0::")).map(str::to_string)
}

/// The value of `key` in a flat-keyed cgroup file (`key value` lines:
/// cgroup.events, memory.events, cpu.stat).
fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cgroup2_mount() {
        let hybrid = "\
22 28 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
30 22 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified\\040dir rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
32 30 0:28 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,memory
";
        assert_eq!(cgroup2_mount_in(hybrid), Some(PathBuf::from("/sys/fs/cgroup/unified dir")));
        let unified = "35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n";
        assert_eq!(cgroup2_mount_in(unified), Some(PathBuf::from("/sys/fs/cgroup")));
        // Optional fields before the separator, and a v1-only system.
        let v1 = "32 30 0:28 / /sys/fs/cgroup/pids rw shared:11 master:3 - cgroup cgroup rw,pids\n";
        assert_eq!(cgroup2_mount_in(v1), None);
        assert_eq!(cgroup2_mount_in(""), None);
    }

    #[test]
    fn unescapes_mountinfo_paths() {
        assert_eq!(unescape_octal("/a\\040b\\011c\\134d"), "/a b\tc\\d");
        assert_eq!(unescape_octal("/trailing\\04"), "/trailing\\04");
        assert_eq!(unescape_octal("/plain"), "/plain");
    }

    #[test]
    fn finds_the_unified_hierarchy_line() {
        let hybrid = "12:pids:/system.slice/qga.service\n1:name=systemd:/system.slice/qga.service\n0::/system.slice/qga.service\n";
        assert_eq!(unified_path_in(hybrid).as_deref(), Some("/system.slice/qga.service"));
        assert_eq!(unified_path_in("0::/\n").as_deref(), Some("/"));
        assert_eq!(unified_path_in("4:memory:/user.slice\n"), None);
    }

    #[test]
    fn reads_flat_keyed_files() {
        let events = "populated 1\nfrozen 0\n";
        assert_eq!(keyed_value(events, "populated"), Some(1));
        assert_eq!(keyed_value("populated 0\nfrozen 0\n", "populated"), Some(0));
        let memory_events = "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(keyed_value(memory_events, "oom_kill"), Some(1));
        assert_eq!(keyed_value(memory_events, "oom"), Some(1));
        assert_eq!(keyed_value(memory_events, "max"), Some(12));
        let cpu_stat = "usage_usec 1234567\nuser_usec 1000000\nsystem_usec 234567\nnr_periods 0\n";
        assert_eq!(keyed_value(cpu_stat, "usage_usec"), Some(1_234_567));
        assert_eq!(keyed_value(cpu_stat, "usage"), None);
        assert_eq!(keyed_value("", "populated"), None);
    }

    /// Waits (at most 2 s) until nothing is left in `cg`.
    fn wait_empty(cg: &Cgroup) -> bool {
        for _ in 0..200 {
            if !cg.populated() {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        false
    }

    /// A real leaf on the cgroup2 root (as root): the child joins it before
    /// exec, a backgrounded grandchild is killed with it (cgroup.kill, then
    /// the freeze-and-kill fallback), and the limits the root's controllers
    /// allow are written. A skip line where there is no cgroup2 or no root.
    #[test]
    fn a_leaf_holds_limits_and_kills_its_whole_tree() {
        let Some((parent, enabled)) = super::super::tests::cgroup_parent() else { return };
        let on = |c: &str| enabled.iter().any(|e| e == c);
        let limits = CgroupLimits {
            memory_max: on("memory").then_some(64 << 20),
            pids_max: on("pids").then_some(16),
            cpu_max: on("cpu").then_some((50_000, 100_000)),
        };
        let missing: Vec<&str> = ["memory", "pids", "cpu"].into_iter().filter(|c| !on(c)).collect();
        if !missing.is_empty() {
            super::super::tests::skip(&format!("limits of {missing:?} untested: not enabled in {}", parent.display()));
        }
        let name = format!("qga-sys-test-{}", std::process::id());
        let cg = Cgroup::create(&parent, &name, &limits).expect("create a leaf");
        let read = |f: &str| std::fs::read_to_string(cg.path().join(f)).unwrap().trim().to_string();
        if on("pids") {
            assert_eq!(read("pids.max"), "16");
        }
        if on("memory") {
            assert_eq!(read("memory.max"), (64u64 << 20).to_string());
        }
        if on("cpu") {
            assert_eq!(read("cpu.max"), "50000 100000");
        }
        assert!(!cg.populated());
        type Kill = fn(&Cgroup) -> Result<(), Errno>;
        let kills: [(&str, Kill); 2] = [("cgroup.kill", Cgroup::kill), ("freeze and kill", Cgroup::kill_frozen)];
        for (how, kill) in kills {
            if how == "cgroup.kill" && !cg.path().join("cgroup.kill").exists() {
                super::super::tests::skip("no cgroup.kill (kernel before 5.14)");
                continue;
            }
            let pid = super::super::tests::spawn_in_cgroup(&cg, "sleep 30 & sleep 30");
            let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
            assert!(unified_path_in(&own).is_some_and(|p| p.ends_with(&format!("/{name}"))), "{own}");
            assert!(cg.populated());
            kill(&cg).expect(how);
            let _ = crate::process::wait_for(pid);
            assert!(wait_empty(&cg), "{how}: the backgrounded grandchild survived");
        }
        assert_eq!(cg.remove(), Ok(()));
        assert_eq!(cg.stats().cpu_usec, None, "stats of a removed leaf");
        assert_eq!(Cgroup::create(&parent, "a/b", &limits).unwrap_err(), Errno::EINVAL);
    }

    #[test]
    fn a_leaf_reports_what_it_saw() {
        let Some((parent, _)) = super::super::tests::cgroup_parent() else { return };
        let cg = Cgroup::create(&parent, &format!("qga-sys-stats-{}", std::process::id()), &CgroupLimits::default())
            .unwrap();
        let pid = super::super::tests::spawn_in_cgroup(&cg, "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done");
        let _ = crate::process::wait_for(pid);
        assert!(wait_empty(&cg));
        let stats = cg.stats();
        assert!(stats.cpu_usec.is_some_and(|u| u > 0), "{stats:?}");
        assert_eq!(stats.oom_kills, 0);
    }
}
