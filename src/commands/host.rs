//! Network and file systems: guest-network-get-interfaces,
//! guest-network-get-route, guest-get-fsinfo, guest-fstrim, and the mount
//! list shared with the freeze commands (`qga/commands-posix.c`,
//! `qga/commands-linux.c`).
//!
//! guest-get-fsinfo fills what qemu-ga's udev lookups would from sysfs
//! alone: `dev` is `/dev/` + the DEVNAME of the device's uevent file and
//! `serial` the ID_SERIAL udev stored in /run/udev/data, when present.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::files::c_string;
use super::scan::sscanf;
use super::system::read_dir_raw;
use super::Outcome;
use crate::agent::Agent;
use crate::json::{Object, Value};
use crate::log;
use crate::protocol::{strerror, Args, QgaError};

type R = Result<Outcome, QgaError>;

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

// ---------------------------------------------------------------- interfaces

/// `struct ifreq` with the `ifr_hwaddr` member.
#[repr(C)]
struct IfreqHw {
    name: [libc::c_char; libc::IFNAMSIZ],
    family: libc::sa_family_t,
    data: [u8; 14],
    _pad: [u8; 8],
}

/// SIOCGIFHWADDR, typed `libc::Ioctl` (libc's constant is c_ulong, which
/// musl's ioctl does not take).
const SIOCGIFHWADDR: libc::Ioctl = 0x8927;

/// `guest_get_hw_addr()`: None when the interface has no address.
fn hw_addr(name: &CStr) -> Result<Option<[u8; 6]>, QgaError> {
    // SAFETY: a plain socket for the ioctl, owned right away.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if sock == -1 {
        return Err(QgaError::with_errno("failed to create socket", errno()));
    }
    // SAFETY: sock was just created.
    let sock = unsafe { OwnedFd::from_raw_fd(sock) };
    let mut req = IfreqHw { name: [0; libc::IFNAMSIZ], family: 0, data: [0; 14], _pad: [0; 8] };
    for (d, s) in req.name.iter_mut().zip(name.to_bytes().iter().take(libc::IFNAMSIZ - 1)) {
        *d = *s as libc::c_char;
    }
    // SAFETY: SIOCGIFHWADDR fills our ifreq-sized buffer.
    if unsafe { libc::ioctl(sock.as_raw_fd(), SIOCGIFHWADDR, &mut req) } == -1 {
        let e = errno();
        let msg = format!("failed to get MAC address of {}: {}", name.to_string_lossy(), strerror(e));
        if e == libc::EADDRNOTAVAIL {
            log::debug(&msg);
        } else {
            log::warning(&msg);
        }
        return Ok(None);
    }
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&req.data[..6]);
    Ok(Some(mac))
}

/// rx/tx counters of `name` from /proc/net/dev (`guest_get_network_stats()`).
fn net_stats(name: &str) -> Option<Value> {
    let text = match std::fs::read_to_string("/proc/net/dev") {
        Ok(t) => t,
        Err(e) => {
            log::debug(&format!("failed to open network stats /proc/net/dev: {e}"));
            return None;
        }
    };
    for line in text.lines() {
        let trimmed = line.trim_start();
        let Some((iface, rest)) = trimmed.split_once(':') else { continue };
        if iface != name {
            continue;
        }
        let s = sscanf(rest, "%ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld");
        if s.ret != 16 {
            continue;
        }
        let v = s.ints();
        let keys = [
            ("rx-bytes", 0),
            ("rx-packets", 1),
            ("rx-errs", 2),
            ("rx-dropped", 3),
            ("tx-bytes", 8),
            ("tx-packets", 9),
            ("tx-errs", 10),
            ("tx-dropped", 11),
        ];
        let mut o = Object::with_capacity(8);
        for (k, i) in keys {
            o.push(k, Value::UInt(v[i] as u64));
        }
        return Some(Value::Object(o));
    }
    log::debug(&format!("/proc/net/dev: Interface '{name}' not found"));
    None
}

extern "C" {
    fn inet_ntop(af: libc::c_int, src: *const libc::c_void, dst: *mut libc::c_char, size: libc::socklen_t) -> *const libc::c_char;
}

fn ntop(family: libc::c_int, addr: *const libc::c_void) -> Result<String, QgaError> {
    let mut buf = [0 as libc::c_char; 64];
    // SAFETY: inet_ntop writes a NUL-terminated string into buf.
    let p = unsafe { inet_ntop(family, addr, buf.as_mut_ptr(), buf.len() as libc::socklen_t) };
    if p.is_null() {
        return Err(QgaError::with_errno("inet_ntop failed", errno()));
    }
    // SAFETY: inet_ntop succeeded.
    Ok(unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned())
}

struct Iface {
    name: String,
    hw: Option<String>,
    addrs: Vec<Value>,
    stats: Option<Value>,
}

pub fn network_get_interfaces(_: &mut Agent, a: Args) -> R {
    a.finish()?;
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates the list we free below.
    if unsafe { libc::getifaddrs(&mut ifap) } < 0 {
        return Err(QgaError::with_errno("getifaddrs failed", errno()));
    }
    let result = collect_interfaces(ifap);
    // SAFETY: the list came from getifaddrs.
    unsafe { libc::freeifaddrs(ifap) };
    let list = result?
        .into_iter()
        .map(|i| {
            let mut o = Object::with_capacity(4);
            o.push("name", Value::Str(i.name));
            if let Some(hw) = i.hw {
                o.push("hardware-address", Value::Str(hw));
            }
            if !i.addrs.is_empty() {
                o.push("ip-addresses", Value::List(i.addrs));
            }
            if let Some(s) = i.stats {
                o.push("statistics", s);
            }
            Value::Object(o)
        })
        .collect();
    Ok(Outcome::Return(Value::List(list)))
}

fn collect_interfaces(ifap: *mut libc::ifaddrs) -> Result<Vec<Iface>, QgaError> {
    let mut out: Vec<Iface> = Vec::new();
    let mut ifa = ifap;
    while !ifa.is_null() {
        // SAFETY: ifa walks the list getifaddrs returned.
        let cur = unsafe { &*ifa };
        ifa = cur.ifa_next;
        // SAFETY: ifa_name is a NUL-terminated string.
        let cname = unsafe { CStr::from_ptr(cur.ifa_name) };
        let name = cname.to_string_lossy().into_owned();
        log::debug(&format!("Processing {name} interface"));
        let idx = match out.iter().position(|i| i.name == name) {
            Some(i) => i,
            None => {
                out.push(Iface { name: name.clone(), hw: None, addrs: Vec::new(), stats: None });
                out.len() - 1
            }
        };
        let info = &mut out[idx];
        if info.hw.is_none() {
            if let Some(m) = hw_addr(cname)? {
                info.hw = Some(format!("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5]));
            }
        }
        if cur.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: ifa_addr points to a sockaddr of the family it names.
        let family = unsafe { (*cur.ifa_addr).sa_family } as libc::c_int;
        let (kind, addr, prefix) = match family {
            libc::AF_INET => {
                // SAFETY: AF_INET addresses are sockaddr_in.
                let sin = unsafe { &*(cur.ifa_addr as *const libc::sockaddr_in) };
                let addr = ntop(libc::AF_INET, (&sin.sin_addr as *const libc::in_addr).cast())?;
                let prefix = if cur.ifa_netmask.is_null() {
                    0
                } else {
                    // SAFETY: the netmask has the address's family.
                    unsafe { (*(cur.ifa_netmask as *const libc::sockaddr_in)).sin_addr.s_addr }.count_ones()
                };
                ("ipv4", addr, prefix)
            }
            libc::AF_INET6 => {
                // SAFETY: AF_INET6 addresses are sockaddr_in6.
                let sin6 = unsafe { &*(cur.ifa_addr as *const libc::sockaddr_in6) };
                let addr = ntop(libc::AF_INET6, (&sin6.sin6_addr as *const libc::in6_addr).cast())?;
                let prefix = if cur.ifa_netmask.is_null() {
                    0
                } else {
                    // SAFETY: as above.
                    let m = unsafe { (*(cur.ifa_netmask as *const libc::sockaddr_in6)).sin6_addr.s6_addr };
                    m.iter().map(|b| b.count_ones()).sum()
                };
                ("ipv6", addr, prefix)
            }
            _ => continue,
        };
        let mut a = Object::with_capacity(3);
        a.push("ip-address", Value::Str(addr));
        a.push("ip-address-type", Value::str(kind));
        a.push("prefix", Value::Int(prefix as i64));
        info.addrs.push(Value::Object(a));
        if info.stats.is_none() {
            info.stats = net_stats(&info.name);
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------- routes

fn ipv4_text(v: u32) -> String {
    format!("{}.{}.{}.{}", v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, v >> 24)
}

/// `hex_to_ip_address()` for the 32-digit form of /proc/net/ipv6_route.
fn ipv6_text(hex: &str) -> Option<String> {
    let mut b = [0u8; 16];
    for (i, byte) in b.iter_mut().enumerate() {
        let part = hex.get(i * 2..)?;
        *byte = *sscanf(part, "%02hhx").ints().first()? as u8;
    }
    ntop(libc::AF_INET6, b.as_ptr().cast()).ok()
}

pub fn network_get_route(_: &mut Agent, a: Args) -> R {
    a.finish()?;
    let mut list = Vec::new();
    let mut error: Option<QgaError> = None;
    for (file, v6) in [("/proc/net/route", false), ("/proc/net/ipv6_route", true)] {
        let text = match std::fs::read(file) {
            Ok(t) => String::from_utf8_lossy(&t).into_owned(),
            Err(e) => {
                error.get_or_insert(QgaError::with_errno(format!("open(\"{file}\")"), e.raw_os_error().unwrap_or(libc::EIO)));
                continue;
            }
        };
        for (n, line) in text.split_inclusive('\n').enumerate() {
            if n == 0 && !v6 {
                continue;
            }
            let route = if v6 { ipv6_route(line) } else { ipv4_route(line) };
            if let Some(r) = route {
                list.push(r);
            }
        }
    }
    match error {
        Some(e) => Err(e),
        None => Ok(Outcome::Return(Value::List(list))),
    }
}

fn ipv4_route(line: &str) -> Option<Value> {
    let s = sscanf(line, "%s %X %X %x %d %d %d %X %d %d %d");
    if s.ret != 11 {
        return None;
    }
    let v = s.ints();
    let int = |i: usize| Value::Int(v[i] as i32 as i64);
    let mut o = Object::with_capacity(12);
    o.push("iface", Value::str(s.strs()[0]));
    o.push("destination", Value::Str(ipv4_text(v[0] as u32)));
    o.push("metric", int(5));
    o.push("gateway", Value::Str(ipv4_text(v[1] as u32)));
    o.push("mask", Value::Str(ipv4_text(v[6] as u32)));
    o.push("irtt", int(9));
    o.push("flags", Value::UInt(v[2] as u32 as u64));
    o.push("refcnt", int(3));
    o.push("use", int(4));
    o.push("window", int(8));
    o.push("mtu", int(7));
    o.push("version", Value::Int(4));
    Some(Value::Object(o))
}

fn ipv6_route(line: &str) -> Option<Value> {
    let s = sscanf(line, "%32s %x %32s %x %32s %x %x %x %x %s");
    if s.ret != 10 {
        return None;
    }
    let v = s.ints();
    let strs = s.strs();
    let int = |i: usize| v[i] as i32 as i64;
    let destination = ipv6_text(strs[0])?;
    let mut o = Object::with_capacity(12);
    o.push("iface", Value::str(strs[3]));
    o.push("destination", Value::Str(destination));
    o.push("metric", Value::Int(int(2)));
    o.push("flags", Value::UInt(int(5) as u64));
    o.push("refcnt", Value::Int(int(3)));
    o.push("use", Value::Int(int(4)));
    o.push("desprefixlen", Value::Str(int(0).to_string()));
    if let Some(src) = ipv6_text(strs[1]) {
        o.push("source", Value::Str(src));
    }
    o.push("srcprefixlen", Value::Str(int(1).to_string()));
    if let Some(nh) = ipv6_text(strs[2]) {
        o.push("nexthop", Value::Str(nh));
    }
    o.push("version", Value::Int(6));
    Some(Value::Object(o))
}

// ---------------------------------------------------------------- mount list

/// One local file system (`FsMount`).
#[derive(Debug, Clone)]
pub struct FsMount {
    pub dirname: String,
    pub devtype: String,
    pub major: u32,
    pub minor: u32,
}

/// `dev_major_minor()`: Ok(Some) for a block device, Ok(None) for a
/// directory (bind mount source), Err for anything else.
fn dev_major_minor(path: &str) -> Result<Option<(u32, u32)>, ()> {
    let c = c_string(path);
    // SAFETY: stat into a zeroed struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::stat(c.as_ptr(), &mut st) } < 0 {
        log::info(&format!("failed to stat device file '{path}': {}", strerror(errno())));
        return Err(());
    }
    match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => Ok(None),
        libc::S_IFBLK => Ok(Some((libc::major(st.st_rdev), libc::minor(st.st_rdev)))),
        _ => Err(()),
    }
}

/// `decode_mntname()`: `\\` and three-digit octal escapes.
fn decode_mntname(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
        } else if b.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 1;
        } else if i + 3 < b.len()
            && (b'0'..=b'3').contains(&b[i + 1])
            && (b'0'..=b'7').contains(&b[i + 2])
            && (b'0'..=b'7').contains(&b[i + 3])
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 3;
        } else {
            out.push(b[i]);
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn push_unique(mounts: &mut Vec<FsMount>, m: FsMount) {
    // Bind mounts of a device already listed are skipped.
    if !mounts.iter().any(|x| x.major == m.major && x.minor == m.minor) {
        mounts.push(m);
    }
}

/// `build_fs_mount_list()`: local file systems from /proc/self/mountinfo
/// (or /proc/self/mounts), in mount order.
pub fn fs_mount_list() -> Result<Vec<FsMount>, QgaError> {
    let mut mounts = Vec::new();
    let Ok(text) = std::fs::read("/proc/self/mountinfo") else {
        return mounts_from_mtab();
    };
    let text = String::from_utf8_lossy(&text);
    for line in text.split_inclusive('\n') {
        let s = sscanf(line, "%*u %*u %u:%u %*s %n%*s%n%c");
        if s.ret < 3 {
            continue;
        }
        let (mut major, mut minor) = (s.ints()[0] as u32, s.ints()[1] as u32);
        let c = s.counts();
        let (dir_s, dir_e) = (c[0], c[1]);
        let Some(dash_rel) = line[dir_e..].find(" - ") else { continue };
        let dash = &line[dir_e + dash_rel..];
        let t = sscanf(dash, " - %n%*s%n %n%*s%n%c");
        if t.ret < 1 {
            continue;
        }
        let tc = t.counts();
        let devtype = dash[tc[0]..tc[1]].to_string();
        let dirname = decode_mntname(&line[dir_s..dir_e]);
        let dev = decode_mntname(&dash[tc[2]..tc[3]]);
        if major == 0 {
            // btrfs reports major number 0.
            match (devtype == "btrfs").then(|| dev_major_minor(&dev)) {
                Some(Ok(Some((ma, mi)))) => (major, minor) = (ma, mi),
                _ => continue,
            }
        }
        push_unique(&mut mounts, FsMount { dirname, devtype, major, minor });
    }
    Ok(mounts)
}

fn mounts_from_mtab() -> Result<Vec<FsMount>, QgaError> {
    let mtab = "/proc/self/mounts";
    let text = std::fs::read(mtab).map_err(|_| QgaError::generic(format!("failed to open mtab file: '{mtab}'")))?;
    let text = String::from_utf8_lossy(&text);
    let mut mounts = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 3 {
            continue;
        }
        let (fsname, dir, ty) = (decode_mntname(f[0]), decode_mntname(f[1]), f[2]);
        if !fsname.starts_with('/') || ty == "smbfs" || ty == "cifs" {
            continue;
        }
        let (major, minor) = match dev_major_minor(&fsname) {
            Ok(None) => continue,
            Ok(Some(mm)) => mm,
            Err(()) => (0, 0),
        };
        push_unique(&mut mounts, FsMount { dirname: dir, devtype: ty.to_string(), major, minor });
    }
    Ok(mounts)
}

// ---------------------------------------------------------------- fsinfo

struct FsInfo {
    name: Option<String>,
    disks: Vec<Value>,
}

fn realpath(p: &str) -> Result<String, i32> {
    std::fs::canonicalize(p)
        .map(|p| p.to_string_lossy().into_owned())
        .map_err(|e| e.raw_os_error().unwrap_or(libc::ENOENT))
}

fn basename(p: &str) -> String {
    let t = p.trim_end_matches('/');
    if t.is_empty() {
        return "/".to_string();
    }
    t.rsplit('/').next().unwrap_or(t).to_string()
}

/// `build_guest_fsinfo_for_device()`.
fn fsinfo_for_device(devpath: &str, fs: &mut FsInfo, depth: usize) -> Result<(), QgaError> {
    let syspath = match realpath(devpath) {
        Ok(p) => p,
        Err(libc::ENOENT) => {
            // May not exist in a container.
            fs.name.get_or_insert_with(|| basename(devpath));
            return Ok(());
        }
        Err(e) => return Err(QgaError::with_errno(format!("realpath(\"{devpath}\")"), e)),
    };
    fs.name.get_or_insert_with(|| basename(&syspath));
    log::debug(&format!("  parse sysfs path '{syspath}'"));
    if syspath.contains("/devices/virtual/block/") {
        fsinfo_for_virtual_device(&syspath, fs, depth)
    } else {
        fsinfo_for_real_device(&syspath, fs);
        Ok(())
    }
}

fn fsinfo_for_virtual_device(syspath: &str, fs: &mut FsInfo, depth: usize) -> Result<(), QgaError> {
    let dirpath = format!("{syspath}/slaves");
    let entries = match read_dir_raw(&dirpath) {
        Ok(e) => e,
        Err(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(QgaError::with_errno(format!("opendir(\"{dirpath}\")"), e)),
    };
    if depth > 32 {
        return Ok(());
    }
    for (name, _, is_link) in entries {
        if is_link {
            log::debug(&format!(" slave device '{name}'"));
            fsinfo_for_device(&format!("{syspath}/slaves/{name}"), fs, depth + 1)?;
        }
    }
    Ok(())
}

#[derive(Default)]
struct DiskAddr {
    pci: [i64; 4],
    bus_type: &'static str,
    bus: i64,
    target: i64,
    unit: i64,
    ccw: Option<[i64; 4]>,
}

fn pci_driver(syspath: &str, len: usize) -> Option<String> {
    let link = std::fs::read_link(format!("{}/driver", &syspath[..len])).ok()?;
    Some(basename(&link.to_string_lossy()))
}

/// `build_hosts()`: sorted host/ata numbers in the directory holding `p`.
fn build_hosts(dir: &str, ata: bool) -> Result<Vec<u32>, QgaError> {
    let entries = read_dir_raw(dir).map_err(|e| QgaError::with_errno(format!("opendir(\"{dir}\")"), e))?;
    let fmt = if ata { "ata%d" } else { "host%d" };
    let mut hosts: Vec<u32> = entries
        .iter()
        .filter_map(|(n, _, _)| {
            let s = sscanf(n, fmt);
            (s.ret == 1).then(|| s.ints()[0] as u32)
        })
        .take(8)
        .collect();
    hosts.sort_unstable();
    Ok(hosts)
}

/// `build_guest_fsinfo_for_pci_dev()`.
fn pci_dev(syspath: &str, d: &mut DiskAddr) -> bool {
    let Some(start) = syspath.find("/devices/pci") else { return false };
    let s = sscanf(&syspath[start + 12..], "%*x:%*x/%x:%x:%x.%x%n");
    if s.ret < 4 {
        log::debug(&format!("only pci device is supported: sysfs path '{syspath}'"));
        return false;
    }
    let mut pci: Vec<i64> = s.ints().iter().map(|&v| v as u32 as i64).collect();
    let mut p = start + 12 + s.counts()[0];
    let driver = loop {
        let drv = pci_driver(syspath, p);
        if let Some(d) = drv.filter(|d| {
            matches!(d.as_str(), "ata_piix" | "sym53c8xx" | "virtio-pci" | "ahci" | "nvme" | "xhci_hcd" | "ehci-pci")
        }) {
            break d;
        }
        let s = sscanf(&syspath[p..], "/%x:%x:%x.%x%n");
        if s.ret == 4 {
            pci = s.ints().iter().map(|&v| v as u32 as i64).collect();
            p += s.counts()[0];
            continue;
        }
        log::debug(&format!("unsupported driver or sysfs path '{syspath}'"));
        return false;
    };
    let tgt = syspath.find("/target").and_then(|i| {
        let s = sscanf(&syspath[i + 7..], "%*u:%*u:%*u/%*u:%u:%u:%u");
        (s.ret == 3).then(|| s.ints())
    });
    let (host_pos, ata) = match syspath.find("/ata") {
        Some(i) => (Some(i), true),
        None => (syspath.find("/host"), false),
    };
    let mut host: Option<u32> = None;
    let mut hosts = Vec::new();
    if let Some(i) = host_pos {
        let s = sscanf(&syspath[i + if ata { 4 } else { 5 }..], "%u");
        if s.ret == 1 {
            host = Some(s.ints()[0] as u32);
            match build_hosts(&syspath[..i], ata) {
                Ok(h) => hosts = h,
                Err(_) => return false,
            }
        }
    }
    d.pci = [pci[0], pci[1], pci[2], pci[3]];
    let invalid = || log::debug(&format!("invalid sysfs path '{syspath}' (driver '{driver}')"));
    match driver.as_str() {
        "ata_piix" => {
            let (Some(h), Some(t)) = (host, tgt.as_ref()) else {
                invalid();
                return false;
            };
            let Some(i) = hosts.iter().position(|&x| x == h) else { return false };
            d.bus_type = "ide";
            d.bus = i as i64;
            d.unit = t[1] as u32 as i64;
        }
        "sym53c8xx" => {
            let Some(t) = tgt.as_ref() else {
                invalid();
                return false;
            };
            d.bus_type = "scsi";
            d.unit = t[1] as u32 as i64;
        }
        "virtio-pci" => match tgt.as_ref() {
            Some(t) => {
                d.bus_type = "scsi";
                d.unit = t[2] as u32 as i64;
            }
            None => d.bus_type = "virtio",
        },
        "ahci" => {
            let (Some(h), Some(_)) = (host, tgt.as_ref()) else {
                invalid();
                return false;
            };
            let Some(i) = hosts.iter().position(|&x| x == h) else { return false };
            d.unit = i as i64;
            d.bus_type = "sata";
        }
        "nvme" => d.bus_type = "nvme",
        _ => d.bus_type = "usb",
    }
    true
}

/// `build_guest_fsinfo_for_nonpci_virtio()`.
fn nonpci_virtio(syspath: &str, d: &mut DiskAddr) -> bool {
    if !syspath.contains("/virtio") || !syspath.contains("/block") {
        log::debug(&format!("Unsupported virtio device '{syspath}'"));
        return false;
    }
    let tgt = syspath.find("/target").and_then(|i| {
        let s = sscanf(&syspath[i + 7..], "%*u:%*u:%*u/%*u:%u:%u:%u");
        (s.ret == 3).then(|| s.ints())
    });
    match tgt {
        Some(t) => {
            d.bus_type = "scsi";
            d.bus = t[0] as u32 as i64;
            d.target = t[1] as u32 as i64;
            d.unit = t[2] as u32 as i64;
        }
        None => d.bus_type = "virtio",
    }
    true
}

/// `build_guest_fsinfo_for_ccw_dev()`.
fn ccw_dev(syspath: &str, d: &mut DiskAddr) -> bool {
    let Some(i) = syspath.find("/devices/css") else { return false };
    let s = sscanf(&syspath[i + 12..], "%*x/%x.%x.%x/%*x.%*x.%x/");
    if s.ret < 4 {
        log::debug(&format!("could not parse ccw device sysfs path: {syspath}"));
        return false;
    }
    let v = s.ints();
    d.ccw = Some([v[0] as u32 as i64, v[1] as u32 as i64, v[2] as u32 as i64, v[3] as u32 as i64]);
    if syspath[i..].contains("/virtio") {
        nonpci_virtio(syspath, d);
    }
    true
}

/// The udev device node and ID_SERIAL, read from sysfs and udev's database.
fn udev_like(syspath: &str) -> (Option<String>, Option<String>) {
    let uevent = std::fs::read_to_string(format!("{syspath}/uevent")).unwrap_or_default();
    let dev = uevent.lines().find_map(|l| l.strip_prefix("DEVNAME=")).map(|n| format!("/dev/{n}"));
    let serial = std::fs::read_to_string(format!("{syspath}/dev")).ok().and_then(|mm| {
        let db = std::fs::read_to_string(format!("/run/udev/data/b{}", mm.trim())).ok()?;
        db.lines().find_map(|l| l.strip_prefix("E:ID_SERIAL=")).filter(|s| !s.is_empty()).map(str::to_string)
    });
    (dev, serial)
}

/// `build_guest_fsinfo_for_real_device()`.
fn fsinfo_for_real_device(syspath: &str, fs: &mut FsInfo) {
    let mut d = DiskAddr { pci: [-1; 4], bus_type: "unknown", ..Default::default() };
    let (dev, serial) = udev_like(syspath);
    let has_hwinf = if syspath.contains("/devices/pci") {
        pci_dev(syspath, &mut d)
    } else if syspath.contains("/devices/css") {
        ccw_dev(syspath, &mut d)
    } else if syspath.contains("/virtio") {
        nonpci_virtio(syspath, &mut d)
    } else {
        log::debug(&format!("Unsupported device type for '{syspath}'"));
        false
    };
    if !(has_hwinf || dev.is_some() || serial.is_some()) {
        return;
    }
    let mut pci = Object::with_capacity(4);
    for (k, v) in ["domain", "bus", "slot", "function"].iter().zip(d.pci) {
        pci.push(*k, Value::Int(v));
    }
    let mut o = Object::with_capacity(8);
    o.push("pci-controller", Value::Object(pci));
    o.push("bus-type", Value::str(d.bus_type));
    o.push("bus", Value::Int(d.bus));
    o.push("target", Value::Int(d.target));
    o.push("unit", Value::Int(d.unit));
    if let Some(s) = serial {
        o.push("serial", Value::Str(s));
    }
    if let Some(s) = dev {
        o.push("dev", Value::Str(s));
    }
    if let Some(c) = d.ccw {
        let mut cc = Object::with_capacity(4);
        for (k, v) in ["cssid", "ssid", "subchno", "devno"].iter().zip(c) {
            cc.push(*k, Value::Int(v));
        }
        o.push("ccw-address", Value::Object(cc));
    }
    // QAPI_LIST_PREPEND.
    fs.disks.insert(0, Value::Object(o));
}

pub fn get_fsinfo(_: &mut Agent, a: Args) -> R {
    a.finish()?;
    let mounts = fs_mount_list()?;
    let mut list = Vec::with_capacity(mounts.len());
    for m in &mounts {
        log::debug(&format!("Building guest fsinfo for '{}'", m.dirname));
        let mut fs = FsInfo { name: None, disks: Vec::new() };
        fsinfo_for_device(&format!("/sys/dev/block/{}:{}", m.major, m.minor), &mut fs, 0)?;
        let mut o = Object::with_capacity(7);
        o.push("name", Value::Str(fs.name.unwrap_or_default()));
        o.push("mountpoint", Value::str(m.dirname.as_str()));
        o.push("type", Value::str(m.devtype.as_str()));
        let c = c_string(&m.dirname);
        // SAFETY: statvfs into a zeroed struct.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(c.as_ptr(), &mut st) } == 0 {
            let fr = st.f_frsize;
            let used = st.f_blocks.wrapping_sub(st.f_bfree);
            let nonroot_total = used.wrapping_add(st.f_bavail);
            o.push("used-bytes", Value::UInt(used.wrapping_mul(fr)));
            o.push("total-bytes", Value::UInt(nonroot_total.wrapping_mul(fr)));
            o.push("total-bytes-privileged", Value::UInt(st.f_blocks.wrapping_mul(fr)));
        }
        o.push("disk", Value::List(fs.disks));
        // QAPI_LIST_PREPEND: the reply lists the last mount first.
        list.insert(0, Value::Object(o));
    }
    Ok(Outcome::Return(Value::List(list)))
}

// ---------------------------------------------------------------- fstrim

/// `struct fstrim_range`.
#[repr(C)]
struct FstrimRange {
    start: u64,
    len: u64,
    minlen: u64,
}

/// FITRIM = _IOWR('X', 121, struct fstrim_range); `libc::Ioctl` as FIFREEZE.
const FITRIM: libc::Ioctl = 0xC018_5879_u32 as libc::Ioctl;

pub fn fstrim(_: &mut Agent, mut a: Args) -> R {
    let minimum = a.opt_int("minimum")?;
    a.finish()?;
    log::info("guest-fstrim called");
    let mounts = fs_mount_list()?;
    let mut paths = Vec::with_capacity(mounts.len());
    for m in &mounts {
        let mut o = Object::with_capacity(4);
        o.push("path", Value::str(m.dirname.as_str()));
        let c = c_string(&m.dirname);
        // SAFETY: open a directory read-only; owned right away.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd == -1 {
            o.push("error", Value::Str(format!("failed to open: {}", strerror(errno()))));
        } else {
            // SAFETY: fd was just opened.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            let mut r = FstrimRange { start: 0, len: u64::MAX, minlen: minimum.unwrap_or(0) as u64 };
            // SAFETY: FITRIM reads and updates our fstrim_range.
            if unsafe { libc::ioctl(fd.as_raw_fd(), FITRIM, &mut r) } == -1 {
                let e = errno();
                let msg = if e == libc::ENOTTY || e == libc::EOPNOTSUPP {
                    "trim not supported".to_string()
                } else {
                    format!("failed to trim: {}", strerror(e))
                };
                o.push("error", Value::Str(msg));
            } else {
                o.push("trimmed", Value::Int(r.len as i64));
                o.push("minimum", Value::Int(r.minlen as i64));
            }
        }
        paths.insert(0, Value::Object(o));
    }
    Ok(Outcome::Return(Value::Object(Object::new().with("paths", Value::List(paths)))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(decode_mntname(r"/mnt/a\040b\\c"), r"/mnt/a b\c");
        assert_eq!(ipv4_text(0x0102000A), "10.0.2.1");
        assert_eq!(ipv6_text("fe800000000000000000000000000001").as_deref(), Some("fe80::1"));
        assert_eq!(ipv6_text("zz"), None);
        assert_eq!(basename("/sys/devices/virtual/block/dm-0"), "dm-0");
    }
}
