//! Which agent the suites test: qga (the default) or, to validate the
//! tests themselves, another binary (`QGA_TEST_BIN`, e.g. Debian's qemu-ga
//! at target/ref/qemu-ga-10/usr/sbin/qemu-ga) with `QGA_TEST_REFERENCE=1`
//! switching qga-only expectations off. Shared by every suite's support.
#![allow(dead_code)]

use std::path::PathBuf;

/// The agent binary under test.
pub fn agent_bin() -> PathBuf {
    match std::env::var_os("QGA_TEST_BIN") {
        Some(p) if !p.is_empty() => {
            // relative paths are taken from the test's cwd (the package
            // root), not from the agent's temp dir
            let p = PathBuf::from(p);
            if p.is_relative() && p.components().count() > 1 {
                std::env::current_dir().expect("cwd").join(p)
            } else {
                p
            }
        }
        _ => PathBuf::from(env!("CARGO_BIN_EXE_qga")),
    }
}

/// True when the suite runs against the reference qemu-ga
/// (`QGA_TEST_REFERENCE=1`), to validate the tests themselves.
pub fn is_reference_agent() -> bool {
    matches!(std::env::var("QGA_TEST_REFERENCE").as_deref(), Ok("1"))
}
