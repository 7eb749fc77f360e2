//! Kernel modules for the channel (`--modules-dir`): finit_module(2) of
//! every `*.ko`, `*.ko.xz`, `*.ko.zst`, `*.ko.gz` file, compressed ones
//! decompressed by the kernel.

use std::path::{Path, PathBuf};

use crate::log;
use crate::sys::libc;
use crate::sys::process::{self, Forked};
use crate::sys::{mount as sysmount, signal, Errno};

fn module_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let names: Vec<String> = std::fs::read_dir(dir)?
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| [".ko", ".ko.xz", ".ko.zst", ".ko.gz"].iter().any(|s| n.ends_with(s)))
        .collect();
    // Sorted as `&str`s: the quicksort the parser's duplicate-key check
    // already links in, not a second (stable, PathBuf) one.
    let mut sorted: Vec<&str> = names.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    Ok(sorted.into_iter().map(|n| dir.join(n)).collect())
}

/// Loads one module; Ok(false) when it was already loaded.
fn finit_module(path: &Path) -> Result<bool, Errno> {
    let file = std::fs::File::open(path).map_err(Errno::from)?;
    let compressed = !path.to_string_lossy().ends_with(".ko");
    match sysmount::finit_module(&file, compressed) {
        Ok(()) => Ok(true),
        Err(Errno(libc::EEXIST)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Loads every module file (`*.ko`, `*.ko.xz`, `*.ko.zst`, `*.ko.gz`) in
/// `dir`, in file-name order. A module that fails (typically with ENOENT,
/// "unknown symbol", because a dependency comes later in the order) is
/// retried after the others, as long as some module loads per pass.
/// Returns how many modules were loaded now.
pub fn load_modules(dir: &str) -> usize {
    let mut pending = match module_files(Path::new(dir)) {
        Ok(f) => f,
        Err(e) => {
            log::warning(&format!("cannot read modules directory {dir}: {e}"));
            return 0;
        }
    };
    let mut loaded = 0;
    let mut failures = Vec::new();
    loop {
        let mut progress = false;
        failures.clear();
        let mut next = Vec::new();
        for p in pending {
            let started = std::time::Instant::now();
            match finit_module(&p) {
                Ok(new) => {
                    progress = true;
                    if new {
                        loaded += 1;
                        let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                        log::debug(&format!("loaded module {} in {us} us", p.display()));
                    }
                }
                Err(e) => {
                    failures.push((p.clone(), e));
                    next.push(p);
                }
            }
        }
        pending = next;
        if pending.is_empty() || !progress {
            break;
        }
    }
    for (p, e) in &failures {
        log::warning(&format!("cannot load module {}: {e}", p.display()));
    }
    loaded
}

/// Loads the modules of `dir` ([`load_modules`]) and logs how many.
pub fn load_and_log(dir: &str) {
    let n = load_modules(dir);
    log::info(&format!("loaded {n} kernel modules from {dir}"));
}

/// Loads the modules of `dir` in a child process and returns at once, so
/// that init opens a virtio port as soon as the kernel announces it while
/// modules the port does not need (vsock's, 60-120 ms of finit_module
/// under TCG) still load. The port's own modules load no later than in
/// order (finit_module is synchronous; the child loads them first when
/// their files sort first, as the initramfs names them). The child is
/// reaped with the orphans. When fork fails, they load here.
pub fn load_in_child(dir: &str) {
    match process::fork_single_threaded() {
        Ok(Forked::Child) => {
            // Init's handlers only record signals: the child must die by
            // them when the machine ends. It yields to the agent: a
            // loop woken by the host runs first.
            signal::reset_all_dispositions();
            let _ = process::set_nice(19);
            load_and_log(dir);
            process::exit_now(0)
        }
        Ok(Forked::Parent(pid)) => log::debug(&format!("loading kernel modules in process {pid}")),
        Err(e) => {
            log::warning(&format!("cannot fork to load modules: {e}"));
            load_and_log(dir);
        }
    }
}
