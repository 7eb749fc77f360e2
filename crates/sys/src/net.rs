//! Network interfaces: getifaddrs (owned by an RAII list), the hardware
//! address ioctl and inet_ntop.

use std::ffi::CStr;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::{cvt, Errno};

/// The list `getifaddrs(3)` returns; freed on Drop.
#[derive(Debug)]
pub struct IfAddrs {
    head: *mut libc::ifaddrs,
}

impl Drop for IfAddrs {
    fn drop(&mut self) {
        if !self.head.is_null() {
            // SAFETY: the list came from getifaddrs and is freed once.
            unsafe { libc::freeifaddrs(self.head) };
        }
    }
}

/// `getifaddrs(3)`.
pub fn getifaddrs() -> Result<IfAddrs, Errno> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs stores the list head in our pointer.
    if unsafe { libc::getifaddrs(&mut head) } < 0 {
        return Err(Errno::last());
    }
    Ok(IfAddrs { head })
}

/// The address of one entry, decoded by family; `prefix` counts the
/// netmask's one bits (0 without a netmask).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addr {
    None,
    V4 { addr: [u8; 4], prefix: u32 },
    V6 { addr: [u8; 16], prefix: u32 },
    Other,
}

/// One entry of the list.
#[derive(Debug)]
pub struct IfAddr<'a> {
    pub name: &'a CStr,
    pub addr: Addr,
}

#[derive(Debug)]
pub struct Iter<'a> {
    cur: *mut libc::ifaddrs,
    _list: PhantomData<&'a IfAddrs>,
}

impl IfAddrs {
    pub fn iter(&self) -> Iter<'_> {
        Iter { cur: self.head, _list: PhantomData }
    }
}

impl<'a> Iterator for Iter<'a> {
    type Item = IfAddr<'a>;

    fn next(&mut self) -> Option<IfAddr<'a>> {
        if self.cur.is_null() {
            return None;
        }
        // SAFETY: cur walks the list getifaddrs returned, alive as long as 'a.
        let cur = unsafe { &*self.cur };
        self.cur = cur.ifa_next;
        // SAFETY: ifa_name is a NUL-terminated string inside the list.
        let name = unsafe { CStr::from_ptr(cur.ifa_name) };
        Some(IfAddr { name, addr: decode(cur.ifa_addr, cur.ifa_netmask) })
    }
}

fn decode(addr: *const libc::sockaddr, mask: *const libc::sockaddr) -> Addr {
    if addr.is_null() {
        return Addr::None;
    }
    // SAFETY: a non-null ifa_addr points to a sockaddr.
    match libc::c_int::from(unsafe { (*addr).sa_family }) {
        libc::AF_INET => {
            // SAFETY: AF_INET addresses are sockaddr_in.
            let sin = unsafe { &*addr.cast::<libc::sockaddr_in>() };
            let prefix = if mask.is_null() {
                0
            } else {
                // SAFETY: the netmask has the address's family.
                unsafe { (*mask.cast::<libc::sockaddr_in>()).sin_addr.s_addr }.count_ones()
            };
            Addr::V4 { addr: sin.sin_addr.s_addr.to_ne_bytes(), prefix }
        }
        libc::AF_INET6 => {
            // SAFETY: AF_INET6 addresses are sockaddr_in6.
            let sin6 = unsafe { &*addr.cast::<libc::sockaddr_in6>() };
            let prefix = if mask.is_null() {
                0
            } else {
                // SAFETY: the netmask has the address's family.
                let m = unsafe { (*mask.cast::<libc::sockaddr_in6>()).sin6_addr.s6_addr };
                m.iter().map(|b| b.count_ones()).sum()
            };
            Addr::V6 { addr: sin6.sin6_addr.s6_addr, prefix }
        }
        _ => Addr::Other,
    }
}

/// An AF_INET stream socket to issue interface ioctls on.
pub fn ioctl_socket() -> Result<OwnedFd, Errno> {
    // SAFETY: plain socket creation.
    let fd = cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: fd was just created and belongs to nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `struct ifreq` with the `ifr_hwaddr` member.
#[repr(C)]
struct IfreqHw {
    name: [libc::c_char; libc::IFNAMSIZ],
    family: libc::sa_family_t,
    data: [u8; 14],
    _pad: [u8; 8],
}

/// SIOCGIFHWADDR: the interface's 6-byte hardware address.
pub fn hw_addr(sock: BorrowedFd<'_>, name: &CStr) -> Result<[u8; 6], Errno> {
    let mut req = IfreqHw { name: [0; libc::IFNAMSIZ], family: 0, data: [0; 14], _pad: [0; 8] };
    for (d, s) in req.name.iter_mut().zip(name.to_bytes().iter().take(libc::IFNAMSIZ - 1)) {
        *d = *s as libc::c_char;
    }
    // SAFETY: SIOCGIFHWADDR fills our ifreq-sized buffer.
    cvt(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFHWADDR as libc::Ioctl, &mut req as *mut IfreqHw) })?;
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&req.data[..6]);
    Ok(mac)
}

extern "C" {
    fn inet_ntop(
        af: libc::c_int,
        src: *const libc::c_void,
        dst: *mut libc::c_char,
        size: libc::socklen_t,
    ) -> *const libc::c_char;
}

fn ntop(family: libc::c_int, addr: *const libc::c_void) -> Result<String, Errno> {
    let mut buf = [0 as libc::c_char; 64];
    // SAFETY: inet_ntop reads an address of `family` and writes at most buf.len() bytes.
    let p = unsafe { inet_ntop(family, addr, buf.as_mut_ptr(), buf.len() as libc::socklen_t) };
    if p.is_null() {
        return Err(Errno::last());
    }
    // SAFETY: inet_ntop succeeded, so buf holds a NUL-terminated string.
    Ok(unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned())
}

/// `inet_ntop(AF_INET)` of an address in network byte order.
pub fn ntop_v4(addr: &[u8; 4]) -> Result<String, Errno> {
    ntop(libc::AF_INET, addr.as_ptr().cast())
}

/// `inet_ntop(AF_INET6)`.
pub fn ntop_v6(addr: &[u8; 16]) -> Result<String, Errno> {
    ntop(libc::AF_INET6, addr.as_ptr().cast())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntop_and_loopback() {
        assert_eq!(ntop_v4(&[10, 0, 2, 15]).unwrap(), "10.0.2.15");
        let mut v6 = [0u8; 16];
        v6[15] = 1;
        assert_eq!(ntop_v6(&v6).unwrap(), "::1");
        let list = getifaddrs().unwrap();
        assert!(list.iter().any(|i| i.name.to_bytes() == b"lo"));
    }
}
