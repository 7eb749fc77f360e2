//! The channel of an init: the virtio port found through sysfs when no
//! udev made the /dev/virtio-ports link, and opened as soon as it appears.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use super::mounts::mknod_char;
use super::power::{shutdown_on_signal, terminate_requested};
use crate::channel::{self, Endpoint, Method};
use crate::log;
use crate::sys::process::sleep_interruptible;

const VIRTIO_PORTS_DEV: &str = "/dev/virtio-ports/";
const VIRTIO_PORTS_SYS: &str = "/sys/class/virtio-ports";

/// When `path` is `/dev/virtio-ports/NAME` and missing (no udev), finds
/// the port named NAME in /sys/class/virtio-ports, creates its /dev/vportNpM
/// node if devtmpfs did not, and the /dev/virtio-ports/NAME link to it.
/// Returns whether the link was made.
pub fn link_virtio_port(path: &str) -> bool {
    let Some(name) = path.strip_prefix(VIRTIO_PORTS_DEV) else { return false };
    if name.is_empty() || name.contains('/') || Path::new(path).exists() {
        return false;
    }
    let Ok(entries) = std::fs::read_dir(VIRTIO_PORTS_SYS) else { return false };
    for e in entries.flatten() {
        let port = e.file_name().to_string_lossy().into_owned();
        let Ok(n) = std::fs::read_to_string(e.path().join("name")) else { continue };
        if n.trim_end_matches('\n') != name {
            continue;
        }
        let node = format!("/dev/{port}");
        let is_char = std::fs::metadata(&node).map(|m| m.file_type().is_char_device()).unwrap_or(false);
        if !is_char {
            let Ok(dev) = std::fs::read_to_string(e.path().join("dev")) else { continue };
            let Some((ma, mi)) = dev.trim().split_once(':') else { continue };
            let (Ok(ma), Ok(mi)) = (ma.parse(), mi.parse()) else { continue };
            if !mknod_char(&node, ma, mi, 0o600) {
                continue;
            }
        }
        let _ = std::fs::create_dir_all(VIRTIO_PORTS_DEV);
        let _ = std::fs::set_permissions(VIRTIO_PORTS_DEV, std::fs::Permissions::from_mode(0o755));
        let _ = std::fs::remove_file(path);
        return match std::os::unix::fs::symlink(format!("../{port}"), path) {
            Ok(()) => {
                log::debug(&format!("linked {path} to {node}"));
                true
            }
            Err(e) => {
                log::warning(&format!("cannot create {path}: {e}"));
                false
            }
        };
    }
    false
}

/// Opens the channel, waiting for it to appear (modules still probing,
/// the port's name not yet announced by the host). Polls with a backoff
/// from 5 ms to 1 s; a terminating signal meanwhile ends the machine.
pub fn open_channel_waiting(method: Method, path: &str, max_clients: usize) -> Endpoint {
    let mut delay = Duration::from_millis(5);
    let start = std::time::Instant::now();
    let mut logged = false;
    loop {
        if terminate_requested() {
            shutdown_on_signal();
        }
        if method == Method::VirtioSerial {
            link_virtio_port(path);
        }
        match channel::open(method, path, max_clients) {
            Ok(ep) => {
                if logged {
                    log::info("channel is up");
                }
                return ep;
            }
            Err(e) => {
                if !logged {
                    log::warning(&e);
                    log::info("waiting for channel path...");
                    logged = true;
                }
            }
        }
        if !terminate_requested() {
            sleep_interruptible(delay);
        }
        // Every 5 ms for the first second (a port usually appears within
        // it, right after its module's probe: a doubling backoff overshot
        // that by up to as long again), then backing off to once a second.
        if start.elapsed() >= Duration::from_secs(1) {
            delay = (delay * 2).min(Duration::from_secs(1));
        }
    }
}
