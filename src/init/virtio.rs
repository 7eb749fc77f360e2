//! The channel of an init: the virtio port found through sysfs when no
//! udev made the /dev/virtio-ports link, and opened as soon as it appears.

use std::io::Write;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::mounts::mknod_char;
use super::power::{shutdown_on_signal, terminate_requested};
use crate::channel::{self, Endpoint, Method};
use crate::log;
use crate::sys::process::sleep_interruptible;
use crate::sys::uevent::{self, Received, UeventSocket};

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

/// The kernel's device events, opened by [`watch_device_events`] before
/// the modules load and used by the first [`open_channel_waiting`].
static DEVICE_EVENTS: Mutex<Option<UeventSocket>> = Mutex::new(None);

/// Starts receiving the kernel's uevents, so that no event of the port
/// (its device added, then named) can be missed. Call before loading the
/// modules. Without netlink uevents the wait falls back to polling.
pub fn watch_device_events() {
    match UeventSocket::open() {
        Ok(sock) => {
            if let Ok(mut slot) = DEVICE_EVENTS.lock() {
                *slot = Some(sock);
            }
        }
        Err(e) => log::info(&format!("no kernel device events ({e}): polling for the channel")),
    }
}

/// Whether a uevent may mean that the channel can be opened now. A
/// virtio port exists, with its name, once virtio_console sent the
/// `change` event that follows the host's VIRTIO_CONSOLE_PORT_NAME
/// (drivers/char/virtio_console.c: `handle_control_message` creates the
/// `name` attribute, then `kobject_uevent(KOBJ_CHANGE)`); its `add` came
/// earlier, before the name. For the other methods, any event (a module
/// registering its socket family, a serial device) is worth a retry.
fn may_open_now(method: Method, event: &[u8]) -> bool {
    let Some(ev) = uevent::parse(event) else { return false };
    method != Method::VirtioSerial || ev.subsystem == Some("virtio-ports")
}

/// Waits up to `timeout` for an event after which opening the channel
/// may succeed; returns early on a signal (EINTR) or an error.
fn wait_for_device_event(events: &UeventSocket, method: Method, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    // A uevent is at most 2 KiB of fields (UEVENT_BUFFER_SIZE) plus
    // its header; SUBSYSTEM comes third, so even a cut one is read.
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || !matches!(events.wait(left), Ok(true)) {
            return;
        }
        let mut worth_a_retry = false;
        loop {
            match events.recv(&mut buf) {
                Ok(Received::Event(msg)) => worth_a_retry |= may_open_now(method, msg),
                // Events were dropped: one of them may have been the port's.
                Ok(Received::Lost) => worth_a_retry = true,
                Ok(Received::Empty) => break,
                Err(_) => return,
            }
        }
        if worth_a_retry {
            return;
        }
    }
}

/// Stamps the kernel log when the channel opens (PID 1 mode's readiness,
/// in the same clock as the kernel's "Run /init as init process"; KERN_INFO
/// so that `quiet` keeps it off the console). Best effort.
fn stamp_kernel_log(path: &str) {
    if let Ok(mut kmsg) = std::fs::OpenOptions::new().write(true).open("/dev/kmsg") {
        let _ = kmsg.write_all(format!("<6>qga: channel {path} is open\n").as_bytes());
    }
}

/// Opens the channel, waiting for it to appear (modules still probing,
/// the port's name not yet announced by the host). The first call waits
/// on the kernel's device events (see [`watch_device_events`]), with a
/// timeout from 50 ms to 1 s in case one is missed; without them it polls
/// every 5 ms for the first second, then backing off to once a second. A
/// terminating signal meanwhile ends the machine.
pub fn open_channel_waiting(method: Method, path: &str, max_clients: usize) -> Endpoint {
    // Only the first wait (at boot) has events to wait for; the socket is
    // closed once the channel is open.
    let events = DEVICE_EVENTS.lock().ok().and_then(|mut slot| slot.take());
    let mut delay = Duration::from_millis(if events.is_some() { 50 } else { 5 });
    let start = Instant::now();
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
                stamp_kernel_log(path);
                if logged {
                    log::info("channel is up");
                }
                return ep;
            }
            Err(e) => {
                // Waiting on events at boot is the normal case: said only
                // when it takes more than a second.
                if !logged && (events.is_none() || start.elapsed() >= Duration::from_secs(1)) {
                    log::warning(&e);
                    log::info("waiting for channel path...");
                    logged = true;
                }
            }
        }
        if !terminate_requested() {
            match &events {
                Some(events) => wait_for_device_event(events, method, delay),
                None => sleep_interruptible(delay),
            }
        }
        // Polling: every 5 ms for the first second (a port usually appears
        // within it, right after its module's probe: a doubling backoff
        // overshot that by up to as long again), then backing off to once
        // a second. With events the timeout only covers a missed one.
        if events.is_some() || start.elapsed() >= Duration::from_secs(1) {
            delay = (delay * 2).min(Duration::from_secs(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_virtio_port_waits_for_its_own_events() {
        let named = b"change@/devices/pci0000:00/0000:00:02.0/virtio1/virtio-ports/vport1p1\0ACTION=change\0SUBSYSTEM=virtio-ports\0DEVNAME=vport1p1\0";
        let module = b"add@/module/vsock\0ACTION=add\0DEVPATH=/module/vsock\0SUBSYSTEM=module\0";
        assert!(may_open_now(Method::VirtioSerial, named));
        assert!(!may_open_now(Method::VirtioSerial, module));
        assert!(!may_open_now(Method::VirtioSerial, b"libudev\0"));
        // vsock-listen opens once the vsock module registered its family.
        assert!(may_open_now(Method::VsockListen, module));
    }
}
