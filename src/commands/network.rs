//! guest-network-get-interfaces and guest-network-get-route
//! (`qga/commands-posix.c`, `qga/commands-linux.c`).

use std::ffi::CStr;

use super::reply::R;
use super::scan::sscanf;
use super::Ctx;
use super::Outcome;
use crate::json::{Object, Value};
use crate::log;
use crate::protocol::{Args, QgaError};
use crate::sys::net::{self, Addr};
use crate::sys::Errno;

// ---------------------------------------------------------------- interfaces

/// `guest_get_hw_addr()`: None when the interface has no address.
fn hw_addr(name: &CStr) -> Result<Option<[u8; 6]>, QgaError> {
    let sock = net::ioctl_socket().map_err(|e| QgaError::with_errno("failed to create socket", e))?;
    match net::hw_addr(std::os::fd::AsFd::as_fd(&sock), name) {
        Ok(mac) => Ok(Some(mac)),
        Err(e) => {
            let msg = format!("failed to get MAC address of {}: {e}", name.to_string_lossy());
            if e == Errno::EADDRNOTAVAIL {
                log::debug(&msg);
            } else {
                log::warning(&msg);
            }
            Ok(None)
        }
    }
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

fn ntop_failed(e: Errno) -> QgaError {
    QgaError::with_errno("inet_ntop failed", e)
}

struct Iface {
    name: String,
    hw: Option<String>,
    addrs: Vec<Value>,
    stats: Option<Value>,
}

pub fn network_get_interfaces(_: &mut Ctx<'_>, a: Args) -> R {
    a.finish()?;
    let ifaddrs = net::getifaddrs().map_err(|e| QgaError::with_errno("getifaddrs failed", e))?;
    let list = collect_interfaces(&ifaddrs)?
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

fn collect_interfaces(ifaddrs: &net::IfAddrs) -> Result<Vec<Iface>, QgaError> {
    let mut out: Vec<Iface> = Vec::new();
    for cur in ifaddrs.iter() {
        let name = cur.name.to_string_lossy().into_owned();
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
            if let Some(m) = hw_addr(cur.name)? {
                info.hw =
                    Some(format!("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5]));
            }
        }
        let (kind, addr, prefix) = match cur.addr {
            Addr::V4 { addr, prefix } => ("ipv4", net::ntop_v4(&addr).map_err(ntop_failed)?, prefix),
            Addr::V6 { addr, prefix } => ("ipv6", net::ntop_v6(&addr).map_err(ntop_failed)?, prefix),
            Addr::None | Addr::Other => continue,
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
    net::ntop_v6(&b).ok()
}

pub fn network_get_route(_: &mut Ctx<'_>, a: Args) -> R {
    a.finish()?;
    let mut list = Vec::new();
    let mut error: Option<QgaError> = None;
    for (file, v6) in [("/proc/net/route", false), ("/proc/net/ipv6_route", true)] {
        let text = match std::fs::read(file) {
            Ok(t) => String::from_utf8_lossy(&t).into_owned(),
            Err(e) => {
                error.get_or_insert(QgaError::with_errno(format!("open(\"{file}\")"), Errno::of(&e)));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(ipv4_text(0x0102000A), "10.0.2.1");
        assert_eq!(ipv6_text("fe800000000000000000000000000001").as_deref(), Some("fe80::1"));
        assert_eq!(ipv6_text("zz"), None);
    }
}
