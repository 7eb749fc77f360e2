//! Skips that the `make test` summary shows, and that CI does not allow.
//!
//! A test that cannot run calls one of the two functions below and returns.
//! Each skip is printed (`SKIP <test>: <reason>`) and appended as one line
//! to the skip log, which `make test` clears before and summarises after
//! the run (count and reasons): a skipped test never reads as a plain "ok".
//!
//! * [`missing`]: a prerequisite that CI provides (root, `unshare -m`,
//!   bind/loop mounts, mkfs.ext4, the reference qemu-ga fetched by
//!   scripts/fetch-qemu-ga.sh, ...) is absent. Under CI (`CI=true`, as
//!   `.ci/run` runs) that is a test failure, not a skip.
//! * [`not_applicable`]: the test does not apply to the agent under test
//!   (a deliberate qga deviation while `QGA_TEST_REFERENCE=1` runs the suite
//!   against qemu-ga). Recorded, never a failure.
//!
//! Skip log: `$QGA_TEST_SKIP_LOG`, else `target/tmp/qga-test-skips.log`.
//! A failed agent start is never a skip: the helpers panic with its stderr.
#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;

/// Where skips are recorded (one line each: `TEST\tKIND\tREASON`).
pub fn skip_log() -> PathBuf {
    match std::env::var_os("QGA_TEST_SKIP_LOG") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("qga-test-skips.log"),
    }
}

/// True under CI (`CI=true` or `CI=1`): missing prerequisites fail.
pub fn under_ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok("true") | Ok("1"))
}

/// `suite::test` of the running test (libtest names each test's thread
/// after it; the suite is the test binary's name without cargo's hash).
fn test_name() -> String {
    let exe = std::env::current_exe().ok();
    let stem = exe.as_ref().and_then(|p| p.file_stem()).map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let suite = stem.rsplit_once('-').map_or(stem.as_str(), |(s, _)| s).to_string();
    format!("{suite}::{}", std::thread::current().name().unwrap_or("<unnamed>"))
}

fn record(kind: &str, why: &str) {
    let test = test_name();
    eprintln!("SKIP {test}: {why}");
    let line = format!("{test}\t{kind}\t{}\n", why.replace(['\n', '\t'], " "));
    let path = skip_log();
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    // One write of one short line with O_APPEND: concurrent tests and test
    // binaries do not interleave.
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("cannot record a skip in {}: {e}", path.display()));
    f.write_all(line.as_bytes()).unwrap_or_else(|e| panic!("cannot record a skip in {}: {e}", path.display()));
}

/// A prerequisite CI provides is missing: a failure under CI, else a
/// recorded skip. The caller returns right after.
#[track_caller]
pub fn missing(why: &str) {
    if under_ci() {
        panic!(
            "CI=true: prerequisite missing ({why}); CI runs as root with qemu-ga fetched \
             (scripts/fetch-qemu-ga.sh), so this test must run there"
        );
    }
    record("missing", why);
}

/// The test does not apply to the agent under test (reference-agent runs).
pub fn not_applicable(why: &str) {
    record("n/a", why);
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    qga_sys::process::geteuid() == 0
}

/// Whether `unshare -m` and bind mounts work here (root only).
pub fn can_unshare() -> bool {
    is_root()
        && std::process::Command::new("unshare")
            .args(["-m", "sh", "-c", "mount --bind /tmp /tmp"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// True if a private mount namespace with bind mounts can be had; else
/// records the missing prerequisite ([`missing`]) and returns false.
#[track_caller]
pub fn have_mount_ns() -> bool {
    if can_unshare() {
        return true;
    }
    missing("needs root and `unshare -m` with bind mounts");
    false
}

/// Runs `sh -c PRELUDE` in a private mount namespace (as the agent would be
/// started): Ok if it succeeds, else its stderr. Used to tell a missing
/// prerequisite (the prelude fails) from a failed agent start (a failure).
pub fn prelude_works(prelude: &str) -> Result<(), String> {
    let o = std::process::Command::new("unshare")
        .args(["-m", "sh", "-c", prelude])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run unshare: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!("`{prelude}` failed ({}): {}", o.status, String::from_utf8_lossy(&o.stderr).trim()))
    }
}

/// Debian's qemu-ga 10 as fetched by scripts/fetch-qemu-ga.sh into
/// target/ref (`QGACTL_TEST_QEMU_GA` overrides the path; empty: absent).
pub fn reference_qemu_ga() -> Option<PathBuf> {
    let p = match std::env::var_os("QGACTL_TEST_QEMU_GA") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/ref/qemu-ga-10/usr/sbin/qemu-ga"),
    };
    (!p.as_os_str().is_empty() && p.exists()).then_some(p)
}
