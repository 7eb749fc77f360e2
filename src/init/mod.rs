//! PID 1 mode: qga as the init of a minimal guest (an initramfs's `/init`,
//! a microVM's only process).
//!
//! On top of the agent, init has to: mount /proc, /sys, /dev (devtmpfs),
//! /dev/pts, /run and /tmp when they are not mounted yet (`mounts`); load
//! the kernel modules the channel needs (`modules`, `--modules-dir`); find
//! the virtio port by its name in /sys/class/virtio-ports when no udev
//! made the /dev/virtio-ports link and wait for the channel to appear
//! (`virtio`); reap every orphan (the process table reaps with
//! `waitpid(-1)`, which covers processes re-parented to init); never exit
//! (exiting panics the kernel: fatal errors are logged and retried); and
//! end the machine on guest-shutdown or a signal (`power`).
//!
//! The start-up sequence itself is shared with the daemon (startup.rs).

mod modules;
mod mounts;
mod power;
mod virtio;

pub use power::{idle_forever, shutdown_on_signal};
pub use virtio::open_channel_waiting;

use crate::channel::Method;
use crate::config::Config;
use crate::log;
use crate::sys::process;

/// Whether to run as init: we are pid 1, or `--init` / `init=true` asked.
pub fn wanted(forced: bool) -> bool {
    forced || process::getpid() == 1
}

/// What an init does before the common start-up: signal handlers, the
/// process environment, mounts, console stdio, and modules.
pub fn prepare(cfg: &mut Config) {
    log::init(cfg.verbose, None);
    power::install_signals();
    mounts::prepare_environment();
    mounts::mount_basics();
    mounts::open_console_stdio();
    if process::getpid() != 1 {
        // Forced init mode below another init: orphans come to us instead.
        if let Err(e) = process::become_child_subreaper() {
            log::warning(&format!("cannot become a child subreaper: {e}"));
        }
    }
    // Before the modules: their devices' events must not be missed.
    virtio::watch_device_events();
    if let Some(dir) = cfg.modules_dir.as_deref() {
        // A virtio port is waited for through its events: the modules
        // load beside the wait. Other channels open once all are loaded.
        if Method::parse(cfg.method.as_deref().unwrap_or_default()) == Some(Method::VirtioSerial) {
            modules::load_in_child(dir);
        } else {
            modules::load_and_log(dir);
        }
    }
    if cfg.daemonize {
        // Init forking away would leave nobody as pid 1.
        log::warning("not daemonizing in PID 1 mode");
        cfg.daemonize = false;
    }
}
