//! The kernel's device events (uevents): a NETLINK_KOBJECT_UEVENT socket
//! and a parser for what it carries. PID 1 mode has no udev; it learns
//! from these that the virtio port it waits for exists.
//!
//! What the kernel sends (lib/kobject_uevent.c, `kobject_uevent_env`):
//! one datagram per event, multicast to group 1 of the socket family,
//! sent by the kernel (netlink port id 0). The datagram is the header
//! `ACTION@DEVPATH`, then `KEY=value` fields (ACTION, DEVPATH, SUBSYSTEM,
//! SEQNUM, and the device's own: MAJOR, MINOR, DEVNAME...), each ended by
//! a NUL. udevd re-broadcasts its own `libudev`-headed messages on group
//! 2; they are not read here.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use super::{cvt, Errno};

/// The multicast group the kernel sends uevents to (group 1:
/// `kobject_uevent_net_broadcast` passes it to netlink_broadcast).
const KERNEL_GROUP: u32 = 1;

/// One kernel uevent, borrowed from the received datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uevent<'a> {
    /// `add`, `remove`, `change`, `bind`, `move`...
    pub action: &'a str,
    /// The device's path under /sys (`/devices/pci0000:00/.../vport1p1`).
    pub devpath: &'a str,
    /// `SUBSYSTEM=`: the class or bus (`virtio-ports`, `module`, `pci`).
    pub subsystem: Option<&'a str>,
    /// `DEVNAME=`: the node under /dev, for devices that have one (`vport1p1`).
    pub devname: Option<&'a str>,
}

/// Parses a kernel uevent datagram: `ACTION@DEVPATH\0KEY=value\0...`.
/// None for anything else (udev's `libudev` messages, a header without
/// `@`, text that is not UTF-8). Fields that are not UTF-8 or carry no
/// `=` are skipped; a trailing field without its NUL still counts.
pub fn parse(msg: &[u8]) -> Option<Uevent<'_>> {
    let mut fields = msg.split(|&b| b == 0);
    let header = std::str::from_utf8(fields.next()?).ok()?;
    let (action, devpath) = header.split_once('@')?;
    if action.is_empty() || !devpath.starts_with('/') {
        return None;
    }
    let mut event = Uevent { action, devpath, subsystem: None, devname: None };
    for field in fields {
        let Ok(field) = std::str::from_utf8(field) else { continue };
        match field.split_once('=') {
            Some(("SUBSYSTEM", v)) => event.subsystem = Some(v),
            Some(("DEVNAME", v)) => event.devname = Some(v),
            _ => {}
        }
    }
    Some(event)
}

/// A non-blocking, close-on-exec NETLINK_KOBJECT_UEVENT socket that
/// receives the kernel's uevents. Events sent before it was bound are not
/// delivered: open it before whatever makes the device appear.
#[derive(Debug)]
pub struct UeventSocket(OwnedFd);

/// What [`UeventSocket::recv`] got.
#[derive(Debug, PartialEq, Eq)]
pub enum Received<'a> {
    /// A datagram from the kernel.
    Event(&'a [u8]),
    /// The socket's buffer overflowed (ENOBUFS): events were dropped, so
    /// the caller must look at the state itself.
    Lost,
    /// Nothing is waiting.
    Empty,
}

impl UeventSocket {
    /// socket(AF_NETLINK, SOCK_DGRAM, NETLINK_KOBJECT_UEVENT) bound to the
    /// kernel's group. Receiving needs no privilege (the kernel creates the
    /// uevent socket with NL_CFG_F_NONROOT_RECV). Fails (EPROTONOSUPPORT,
    /// EAFNOSUPPORT) on kernels without networking.
    pub fn open() -> Result<UeventSocket, Errno> {
        let kind = libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;
        // SAFETY: plain socket creation.
        let fd = cvt(unsafe { libc::socket(libc::AF_NETLINK, kind, libc::NETLINK_KOBJECT_UEVENT) })?;
        // SAFETY: fd was just created and belongs to nobody else.
        let sock = UeventSocket(unsafe { OwnedFd::from_raw_fd(fd) });
        // SAFETY: sockaddr_nl is a plain C struct; all-zero bytes are valid.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // nl_pid 0: the kernel assigns this socket a unique port id.
        addr.nl_groups = KERNEL_GROUP;
        let len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        // SAFETY: bind with a fully initialised sockaddr_nl and its own size.
        cvt(unsafe { libc::bind(fd, (&addr as *const libc::sockaddr_nl).cast(), len) })?;
        Ok(sock)
    }

    /// Waits until an event can be read or `timeout` passed. Ok(false) on
    /// the timeout; Err(EINTR) when a signal arrived meanwhile.
    pub fn wait(&self, timeout: Duration) -> Result<bool, Errno> {
        let mut pfd = libc::pollfd { fd: self.0.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
        // SAFETY: one live pollfd, count 1.
        let n = cvt(unsafe { libc::poll(&mut pfd, 1, ms) })?;
        Ok(n > 0)
    }

    /// Receives one datagram into `buf`. Datagrams not sent by the kernel
    /// (netlink port id other than 0: another process broadcasting on the
    /// group) are dropped and the next one is read.
    pub fn recv<'a>(&self, buf: &'a mut [u8]) -> Result<Received<'a>, Errno> {
        loop {
            // SAFETY: sockaddr_nl is a plain C struct; all-zero bytes are valid.
            let mut from: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
            // SAFETY: recvfrom into a live buffer of its own length, the
            // source address into a sockaddr_nl with its size in `len`.
            let rc = unsafe {
                libc::recvfrom(
                    self.0.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    (&mut from as *mut libc::sockaddr_nl).cast(),
                    &mut len,
                )
            };
            match cvt(rc) {
                Ok(_) if from.nl_pid != 0 => continue,
                Ok(n) => return Ok(Received::Event(&buf[..n.unsigned_abs().min(buf.len())])),
                Err(Errno(libc::EAGAIN)) => return Ok(Received::Empty),
                Err(Errno(libc::ENOBUFS)) => return Ok(Received::Lost),
                Err(Errno(libc::EINTR)) => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PORT_ADD: &[u8] = b"add@/devices/pci0000:00/0000:00:02.0/virtio1/virtio-ports/vport1p1\0ACTION=add\0\
DEVPATH=/devices/pci0000:00/0000:00:02.0/virtio1/virtio-ports/vport1p1\0SUBSYSTEM=virtio-ports\0\
MAJOR=243\0MINOR=1\0DEVNAME=vport1p1\0SEQNUM=1042\0";

    #[test]
    fn a_port_add_event() {
        let e = parse(PORT_ADD).unwrap();
        assert_eq!(e.action, "add");
        assert_eq!(e.devpath, "/devices/pci0000:00/0000:00:02.0/virtio1/virtio-ports/vport1p1");
        assert_eq!(e.subsystem, Some("virtio-ports"));
        assert_eq!(e.devname, Some("vport1p1"));
    }

    #[test]
    fn the_name_change_event_and_a_module_event() {
        // virtio_console sends KOBJ_CHANGE once the host named the port.
        let e = parse(
            b"change@/devices/virtio1/virtio-ports/vport1p1\0ACTION=change\0SUBSYSTEM=virtio-ports\0DEVNAME=vport1p1",
        )
        .unwrap();
        assert_eq!((e.action, e.subsystem, e.devname), ("change", Some("virtio-ports"), Some("vport1p1")));
        let m = parse(
            b"add@/module/virtio_console\0ACTION=add\0DEVPATH=/module/virtio_console\0SUBSYSTEM=module\0SEQNUM=7\0",
        )
        .unwrap();
        assert_eq!(
            (m.action, m.devpath, m.subsystem, m.devname),
            ("add", "/module/virtio_console", Some("module"), None)
        );
    }

    #[test]
    fn not_kernel_uevents() {
        assert_eq!(parse(b""), None);
        assert_eq!(parse(b"libudev\0\xfe\xed\xca\xfe"), None);
        assert_eq!(parse(b"add\0SUBSYSTEM=x\0"), None);
        assert_eq!(parse(b"@/devices/x\0"), None);
        assert_eq!(parse(b"add@devices/x\0"), None);
        assert_eq!(parse(b"add@/devices/\xff\0"), None);
    }

    #[test]
    fn odd_fields_are_skipped() {
        let e = parse(b"remove@/devices/x\0SUBSYSTEM\0\xff=1\0\0DEVNAME=\0SUBSYSTEM=tty\0").unwrap();
        assert_eq!((e.action, e.subsystem, e.devname), ("remove", Some("tty"), Some("")));
    }

    #[test]
    fn the_socket_opens_and_is_empty() {
        // Any unprivileged process may receive uevents; a sandbox without
        // netlink makes open fail, which callers treat as "poll instead".
        let Ok(sock) = UeventSocket::open() else { return };
        let mut buf = [0u8; 64];
        assert!(matches!(sock.recv(&mut buf), Ok(Received::Empty | Received::Event(_))));
        assert!(sock.wait(Duration::ZERO).is_ok());
    }
}
