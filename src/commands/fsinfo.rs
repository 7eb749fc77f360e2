//! guest-get-fsinfo and guest-fstrim (`qga/commands-posix.c`,
//! `qga/commands-linux.c`).
//!
//! guest-get-fsinfo fills what qemu-ga's udev lookups would from sysfs
//! alone: `dev` is `/dev/` + the DEVNAME of the device's uevent file and
//! `serial` the ID_SERIAL udev stored in /run/udev/data, when present.

use std::os::fd::AsFd;

use super::files::c_string;
use super::mounts::fs_mount_list;
use super::scan::sscanf;
use super::Outcome;
use super::Ctx;
use crate::json::{Object, Value};
use crate::log;
use crate::protocol::{Args, QgaError};
use crate::sys::fs::{self, oflag};
use crate::sys::{fd, Errno};

type R = Result<Outcome, QgaError>;

// ---------------------------------------------------------------- fsinfo

struct FsInfo {
    name: Option<String>,
    disks: Vec<Value>,
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
    let syspath = match fs::realpath(devpath) {
        Ok(p) => p,
        Err(Errno::ENOENT) => {
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
    let entries = match fs::read_dir(&dirpath) {
        Ok(e) => e,
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(QgaError::with_errno(format!("opendir(\"{dirpath}\")"), e)),
    };
    if depth > 32 {
        return Ok(());
    }
    for e in entries {
        if e.is_symlink {
            log::debug(&format!(" slave device '{}'", e.name));
            fsinfo_for_device(&format!("{syspath}/slaves/{}", e.name), fs, depth + 1)?;
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
    let entries = fs::read_dir(dir).map_err(|e| QgaError::with_errno(format!("opendir(\"{dir}\")"), e))?;
    let fmt = if ata { "ata%d" } else { "host%d" };
    let mut hosts: Vec<u32> = entries
        .iter()
        .filter_map(|e| {
            let s = sscanf(&e.name, fmt);
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

pub fn get_fsinfo(_: &mut Ctx<'_>, a: Args) -> R {
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
        if let Ok(st) = fs::statvfs(&c_string(&m.dirname)) {
            let fr = st.frsize;
            let used = st.blocks.wrapping_sub(st.bfree);
            let nonroot_total = used.wrapping_add(st.bavail);
            o.push("used-bytes", Value::UInt(used.wrapping_mul(fr)));
            o.push("total-bytes", Value::UInt(nonroot_total.wrapping_mul(fr)));
            o.push("total-bytes-privileged", Value::UInt(st.blocks.wrapping_mul(fr)));
        }
        o.push("disk", Value::List(fs.disks));
        // QAPI_LIST_PREPEND: the reply lists the last mount first.
        list.insert(0, Value::Object(o));
    }
    Ok(Outcome::Return(Value::List(list)))
}

// ---------------------------------------------------------------- fstrim

pub fn fstrim(_: &mut Ctx<'_>, mut a: Args) -> R {
    let minimum = a.opt_int("minimum")?;
    a.finish()?;
    log::info("guest-fstrim called");
    let mounts = fs_mount_list()?;
    let mut paths = Vec::with_capacity(mounts.len());
    for m in &mounts {
        let mut o = Object::with_capacity(4);
        o.push("path", Value::str(m.dirname.as_str()));
        match fd::open(&c_string(&m.dirname), oflag::O_RDONLY, 0) {
            Err(e) => o.push("error", Value::Str(format!("failed to open: {e}"))),
            Ok(dir) => match fs::fitrim(dir.as_fd(), minimum.unwrap_or(0) as u64) {
                Err(e) if e == Errno::ENOTTY || e == Errno::EOPNOTSUPP => {
                    o.push("error", Value::str("trim not supported"));
                }
                Err(e) => o.push("error", Value::Str(format!("failed to trim: {e}"))),
                Ok(r) => {
                    o.push("trimmed", Value::Int(r.len as i64));
                    o.push("minimum", Value::Int(r.minlen as i64));
                }
            },
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
        assert_eq!(basename("/sys/devices/virtual/block/dm-0"), "dm-0");
    }
}
