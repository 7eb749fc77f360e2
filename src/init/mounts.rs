//! What a bare initramfs lacks: /proc, /sys, /dev (devtmpfs, or a tmpfs
//! with the basic nodes), cgroup2 on /sys/fs/cgroup, /dev/pts, /run,
//! /tmp, the /dev/fd links, and the process-wide settings of an init.

use std::path::Path;

use crate::log;
use crate::sys::libc;
use crate::sys::{fd, mount as sysmount, process};

/// Mount points currently mounted (from /proc/self/mountinfo).
fn mount_points() -> Vec<String> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else { return Vec::new() };
    text.lines().filter_map(|l| l.split(' ').nth(4)).map(|p| p.replace("\\040", " ")).collect()
}

fn mount(source: &str, target: &str, fstype: &str, flags: libc::c_ulong, data: &str) -> bool {
    if let Err(e) = std::fs::create_dir_all(target) {
        log::warning(&format!("cannot create {target}: {e}"));
    }
    if let Err(e) = sysmount::mount(source, target, fstype, flags, data) {
        log::warning(&format!("cannot mount {fstype} on {target}: {e}"));
        return false;
    }
    log::debug(&format!("mounted {fstype} on {target}"));
    true
}

const NOSUID_NODEV_NOEXEC: libc::c_ulong = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;

/// Mounts what a bare initramfs lacks, each only when not mounted yet.
pub fn mount_basics() {
    if !Path::new("/proc/self").exists() {
        mount("proc", "/proc", "proc", NOSUID_NODEV_NOEXEC, "");
    }
    let mounted = mount_points();
    let is_mounted = |p: &str| mounted.iter().any(|m| m == p);
    if !is_mounted("/sys") {
        mount("sysfs", "/sys", "sysfs", NOSUID_NODEV_NOEXEC, "");
    }
    if !is_mounted("/dev") && !mount("devtmpfs", "/dev", "devtmpfs", libc::MS_NOSUID, "mode=0755") {
        // No devtmpfs in this kernel: a tmpfs with the basic nodes.
        if mount("tmpfs", "/dev", "tmpfs", libc::MS_NOSUID, "mode=0755") {
            for (name, major, minor, mode) in [
                ("null", 1, 3, 0o666),
                ("zero", 1, 5, 0o666),
                ("full", 1, 7, 0o666),
                ("random", 1, 8, 0o666),
                ("urandom", 1, 9, 0o666),
                ("tty", 5, 0, 0o666),
                ("console", 5, 1, 0o600),
                ("ptmx", 5, 2, 0o666),
            ] {
                mknod_char(&format!("/dev/{name}"), major, minor, mode);
            }
        }
    }
    // cgroup v2, as systemd mounts it: exec policy profiles with limits
    // make a leaf per exec below it (a kernel without cgroups has no
    // /sys/fs/cgroup: nothing to mount).
    if Path::new("/sys/fs/cgroup").is_dir() && !is_mounted("/sys/fs/cgroup") {
        mount("cgroup2", "/sys/fs/cgroup", "cgroup2", NOSUID_NODEV_NOEXEC, "");
    }
    if !is_mounted("/dev/pts") {
        mount("devpts", "/dev/pts", "devpts", libc::MS_NOSUID | libc::MS_NOEXEC, "gid=5,mode=620,ptmxmode=666");
    }
    for (link, target) in [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
    ] {
        if std::fs::symlink_metadata(link).is_err() {
            let _ = std::os::unix::fs::symlink(target, link);
        }
    }
    if !is_mounted("/run") {
        mount("tmpfs", "/run", "tmpfs", libc::MS_NOSUID | libc::MS_NODEV, "mode=0755");
    }
    if !is_mounted("/tmp") {
        mount("tmpfs", "/tmp", "tmpfs", libc::MS_NOSUID | libc::MS_NODEV, "mode=1777");
    }
    // qemu-ga's default statedir and pidfile live in /var/run.
    if std::fs::symlink_metadata("/var/run").is_err() {
        let _ = std::fs::create_dir_all("/var");
        if let Err(e) = std::os::unix::fs::symlink("../run", "/var/run") {
            log::warning(&format!("cannot create /var/run: {e}"));
        }
    }
}

/// Creates a character device node (an existing one is fine).
pub fn mknod_char(path: &str, major: u32, minor: u32, mode: libc::mode_t) -> bool {
    match sysmount::mknod_char(path, major, minor, mode) {
        Ok(()) | Err(crate::sys::Errno(libc::EEXIST)) => true,
        Err(e) => {
            log::warning(&format!("cannot create {path}: {e}"));
            false
        }
    }
}

/// Process-wide settings of an init: a PATH for guest-exec (the kernel
/// passes none), umask 022, cwd /, its own session, and stdio on the
/// console when the kernel could not open it (no /dev/console node).
/// Process-wide settings of an init: a PATH for guest-exec (the kernel
/// passes none), umask 022, cwd /, its own session, and stdio on the
/// console when the kernel could not open it (no /dev/console node).
pub fn prepare_environment() {
    if std::env::var_os("PATH").is_none() {
        std::env::set_var("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    }
    process::umask(0o022);
    let _ = process::chdir(c"/");
    // Fails only when already a group leader (forced init mode).
    let _ = process::setsid();
}

/// Opens the console on any of fds 0-2 the kernel left closed.
pub fn open_console_stdio() {
    for n in 0..3 {
        fd::fill_std_fd(n, c"/dev/console", libc::O_RDWR | libc::O_NOCTTY);
    }
}
