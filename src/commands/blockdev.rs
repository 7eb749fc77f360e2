//! Block devices seen through sysfs, as qemu-ga's libudev build sees them
//! (`qga/commands-linux.c`): the disk address of a device
//! (`build_guest_fsinfo_for_device()` and what it calls), shared by
//! guest-get-fsinfo and guest-get-disks, and the few libudev lookups
//! qemu-ga makes, done without libudev:
//!
//! * a device is what `udev_device_new_from_syspath()` accepts: a path
//!   under /sys that resolves to a directory below /sys (with a `uevent`
//!   file when under /sys/devices);
//! * its node (`udev_device_get_devnode()`) is `/dev/` + the DEVNAME of its
//!   `uevent` file;
//! * a property (`ID_SERIAL`, `DM_NAME`) is the `E:` line of udev's
//!   database, `/run/udev/data/b<major>:<minor>`, else a line of `uevent`.
//!
//! Every path goes through a [`Root`]: the machine's (`""`) when serving,
//! a directory holding a fake `sys/`, `run/` and `dev/` in the tests.

use super::scan::sscanf;
use crate::json::{Object, Value};
use crate::log;
use crate::protocol::QgaError;
use crate::sys::{fs, Errno};

/// The directory /sys, /run/udev and /dev are found under.
#[derive(Clone, Copy, Debug)]
pub struct Root<'a>(pub &'a str);

/// The machine's own /sys, /run and /dev.
pub const MACHINE: Root<'static> = Root("");

impl Root<'_> {
    /// `abs` (an absolute path such as `/sys/block`) under this root.
    pub fn path(&self, abs: &str) -> String {
        format!("{}{abs}", self.0)
    }
}

pub fn basename(p: &str) -> String {
    let t = p.trim_end_matches('/');
    if t.is_empty() {
        return "/".to_string();
    }
    t.rsplit('/').next().unwrap_or(t).to_string()
}

// ---------------------------------------------------------------- udev

/// `udev_device_new_from_syspath()`: the resolved sysfs path of the device
/// at `path`, or None where libudev refuses it.
pub fn udev_device(root: Root<'_>, path: &str) -> Option<String> {
    let sys = root.path("/sys/");
    if !path.starts_with(&sys) {
        return None;
    }
    let real = fs::realpath(path).ok()?;
    if !real.starts_with(&sys) {
        return None;
    }
    if real.starts_with(&root.path("/sys/devices/")) {
        std::fs::metadata(format!("{real}/uevent")).ok()?;
    } else if !std::fs::metadata(&real).is_ok_and(|m| m.is_dir()) {
        return None;
    }
    Some(real)
}

fn uevent_value(syspath: &str, key: &str) -> Option<String> {
    let uevent = std::fs::read_to_string(format!("{syspath}/uevent")).ok()?;
    uevent.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix('=')).map(str::to_string)
}

/// `udev_device_get_devnode()` of a device from [`udev_device`].
pub fn devnode(syspath: &str) -> Option<String> {
    let name = uevent_value(syspath, "DEVNAME")?;
    Some(if name.starts_with("/dev/") { name } else { format!("/dev/{name}") })
}

/// `udev_device_get_property_value()` of a block device from
/// [`udev_device`]: udev's database first, then `uevent`.
pub fn property(root: Root<'_>, syspath: &str, key: &str) -> Option<String> {
    let from_db = std::fs::read_to_string(format!("{syspath}/dev")).ok().and_then(|mm| {
        let db = std::fs::read_to_string(root.path(&format!("/run/udev/data/b{}", mm.trim()))).ok()?;
        db.lines().find_map(|l| l.strip_prefix("E:")?.strip_prefix(key)?.strip_prefix('=')).map(str::to_string)
    });
    from_db.or_else(|| uevent_value(syspath, key))
}

/// The devnode of the device at `path` (`get_device_for_syspath()`).
pub fn device_for_syspath(root: Root<'_>, path: &str) -> Option<String> {
    let dev = udev_device(root, path).and_then(|s| devnode(&s));
    if dev.is_none() {
        log::debug(&format!("failed to query udev for path: {path}"));
    }
    dev
}

// ---------------------------------------------------------------- addresses

/// Disk entries of one file system (or of one disk, for guest-get-disks).
#[derive(Default)]
pub struct FsInfo {
    pub name: Option<String>,
    /// `GuestDiskAddress` objects, newest first (QAPI_LIST_PREPEND).
    pub disks: Vec<Value>,
}

/// `build_guest_fsinfo_for_device()`: `devpath` is a /sys/dev/block link,
/// a /sys/block link or a slave link.
pub fn fsinfo_for_device(root: Root<'_>, devpath: &str, fs: &mut FsInfo, depth: usize) -> Result<(), QgaError> {
    // The path as qemu-ga would print it (without the test root).
    let shown = |p: &str| p.strip_prefix(root.0).unwrap_or(p).to_string();
    let syspath = match fs::realpath(devpath) {
        Ok(p) => p,
        Err(Errno::ENOENT) => {
            // May not exist in a container.
            fs.name.get_or_insert_with(|| basename(devpath));
            return Ok(());
        }
        Err(e) => return Err(QgaError::with_errno(format!("realpath(\"{}\")", shown(devpath)), e)),
    };
    fs.name.get_or_insert_with(|| basename(&syspath));
    log::debug(&format!("  parse sysfs path '{}'", shown(&syspath)));
    if syspath.contains("/devices/virtual/block/") {
        fsinfo_for_virtual_device(root, &syspath, fs, depth)
    } else {
        fsinfo_for_real_device(root, &syspath, fs);
        Ok(())
    }
}

/// The address of one disk (`get_disk_address()`): the first entry
/// [`fsinfo_for_device`] finds.
pub fn disk_address(root: Root<'_>, syspath: &str) -> Result<Option<Value>, QgaError> {
    let mut fs = FsInfo::default();
    fsinfo_for_device(root, syspath, &mut fs, 0)?;
    Ok(fs.disks.into_iter().next())
}

fn fsinfo_for_virtual_device(root: Root<'_>, syspath: &str, fs: &mut FsInfo, depth: usize) -> Result<(), QgaError> {
    let dirpath = format!("{syspath}/slaves");
    let entries = match fs::read_dir(&dirpath) {
        Ok(e) => e,
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => {
            let shown = dirpath.strip_prefix(root.0).unwrap_or(&dirpath);
            return Err(QgaError::with_errno(format!("opendir(\"{shown}\")"), e));
        }
    };
    if depth > 32 {
        return Ok(());
    }
    for e in entries {
        if e.is_symlink {
            log::debug(&format!(" slave device '{}'", e.name));
            fsinfo_for_device(root, &format!("{syspath}/slaves/{}", e.name), fs, depth + 1)?;
        }
    }
    Ok(())
}

/// `GuestDiskAddress` without `serial` and `dev`.
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
    let link = std::fs::read_link(format!("{}/driver", syspath.get(..len)?)).ok()?;
    Some(basename(&link.to_string_lossy()))
}

/// `build_hosts()`: the first 8 host/ata numbers of the directory, sorted.
fn build_hosts(dir: &str, ata: bool) -> Result<Vec<u32>, Errno> {
    let entries = fs::read_dir(dir)?;
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

/// `target*:<channel>:<id>:<lun>` numbers after "/target" (sscanf
/// `%*u:%*u:%*u/%*u:%u:%u:%u`).
fn scsi_target(syspath: &str) -> Option<[u32; 3]> {
    let i = syspath.find("/target")?;
    let s = sscanf(&syspath[i + 7..], "%*u:%*u:%*u/%*u:%u:%u:%u");
    let v = s.ints();
    (s.ret == 3).then(|| [v[0] as u32, v[1] as u32, v[2] as u32])
}

fn hex4(v: &[i64]) -> [i64; 4] {
    [v[0] as u32 as i64, v[1] as u32 as i64, v[2] as u32 as i64, v[3] as u32 as i64]
}

/// `build_guest_fsinfo_for_pci_dev()`.
fn pci_dev(syspath: &str, d: &mut DiskAddr) -> bool {
    let Some(start) = syspath.find("/devices/pci") else { return false };
    let s = sscanf(&syspath[start + 12..], "%*x:%*x/%x:%x:%x.%x%n");
    if s.ret < 4 {
        log::debug(&format!("only pci device is supported: sysfs path '{syspath}'"));
        return false;
    }
    let mut pci = hex4(&s.ints());
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
            pci = hex4(&s.ints());
            p += s.counts()[0];
            continue;
        }
        log::debug(&format!("unsupported driver or sysfs path '{syspath}'"));
        return false;
    };
    let tgt = scsi_target(syspath);
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
    d.pci = pci;
    let invalid = || log::debug(&format!("invalid sysfs path '{syspath}' (driver '{driver}')"));
    let host_index = |h: u32| {
        let i = hosts.iter().position(|&x| x == h);
        if i.is_none() {
            log::debug(&format!("no host for '{syspath}' (driver '{driver}')"));
        }
        i
    };
    match driver.as_str() {
        // A host per IDE bus, target*:0:<unit>:0.
        "ata_piix" => {
            let (Some(h), Some(t)) = (host, tgt) else {
                invalid();
                return false;
            };
            let Some(i) = host_index(h) else { return false };
            d.bus_type = "ide";
            d.bus = i as i64;
            d.unit = i64::from(t[1]);
        }
        // LSI Logic SCSI: target*:0:<unit>:0.
        "sym53c8xx" => {
            let Some(t) = tgt else {
                invalid();
                return false;
            };
            d.bus_type = "scsi";
            d.unit = i64::from(t[1]);
        }
        // virtio-scsi: target*:0:0:<unit>; virtio-blk: a disk per device.
        "virtio-pci" => match tgt {
            Some(t) => {
                d.bus_type = "scsi";
                d.unit = i64::from(t[2]);
            }
            None => d.bus_type = "virtio",
        },
        // AHCI: a host per unit.
        "ahci" => {
            let (Some(h), Some(_)) = (host, tgt) else {
                invalid();
                return false;
            };
            let Some(i) = host_index(h) else { return false };
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
    match scsi_target(syspath) {
        Some(t) => {
            d.bus_type = "scsi";
            d.bus = i64::from(t[0]);
            d.target = i64::from(t[1]);
            d.unit = i64::from(t[2]);
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
    d.ccw = Some(hex4(&s.ints()));
    if syspath[i..].contains("/virtio") {
        nonpci_virtio(syspath, d);
    }
    true
}

/// `build_guest_fsinfo_for_real_device()`.
fn fsinfo_for_real_device(root: Root<'_>, syspath: &str, fs: &mut FsInfo) {
    let mut d = DiskAddr { pci: [-1; 4], bus_type: "unknown", ..Default::default() };
    let (dev, serial) = match udev_device(root, syspath) {
        Some(s) => (devnode(&s), property(root, &s, "ID_SERIAL").filter(|v| !v.is_empty())),
        None => {
            log::debug("failed to query udev");
            (None, None)
        }
    };
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
    // QAPI_LIST_PREPEND.
    fs.disks.insert(0, address_value(&d, serial, dev));
}

/// A `GuestDiskAddress` in QAPI member order.
fn address_value(d: &DiskAddr, serial: Option<String>, dev: Option<String>) -> Value {
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
    Value::Object(o)
}

/// A fake /sys (with /run/udev/data) in a temporary directory, for the
/// tests of this module and of guest-get-disks.
#[cfg(test)]
pub(super) mod fake {
    use std::sync::atomic::{AtomicUsize, Ordering};

    pub struct FakeSys {
        pub root: String,
    }

    impl Drop for FakeSys {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }

    static N: AtomicUsize = AtomicUsize::new(0);

    /// A value as qga writes it on the wire.
    pub fn text(v: &crate::json::Value) -> String {
        let mut out = Vec::new();
        crate::json::write_value(&mut out, v);
        String::from_utf8(out).unwrap()
    }

    fn parent(p: &str) -> &str {
        &p[..p.rfind('/').unwrap_or(0)]
    }

    impl FakeSys {
        pub fn new() -> FakeSys {
            let root = format!("/tmp/qga-fakesys-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
            let _ = std::fs::remove_dir_all(&root);
            let f = FakeSys { root };
            f.dir("/sys/block");
            f.dir("/sys/dev/block");
            f
        }

        pub fn root(&self) -> super::Root<'_> {
            super::Root(&self.root)
        }

        pub fn dir(&self, rel: &str) {
            std::fs::create_dir_all(format!("{}{rel}", self.root)).unwrap();
        }

        pub fn file(&self, rel: &str, text: &str) {
            self.dir(parent(rel));
            std::fs::write(format!("{}{rel}", self.root), text).unwrap();
        }

        /// A symlink at `rel` to the absolute (fake) path `to`, written
        /// relative as sysfs does.
        pub fn link(&self, rel: &str, to: &str) {
            self.dir(parent(rel));
            let depth = rel.matches('/').count() - 1;
            let target = format!("{}{}", "../".repeat(depth), to.trim_start_matches('/'));
            std::os::unix::fs::symlink(target, format!("{}{rel}", self.root)).unwrap();
        }

        /// The PCI function at /sys/devices/`pci` bound to `driver`.
        pub fn driver(&self, pci: &str, driver: &str) {
            self.link(&format!("/sys/devices/{pci}/driver"), &format!("/sys/bus/pci/drivers/{driver}"));
            self.dir(&format!("/sys/bus/pci/drivers/{driver}"));
        }

        fn node(&self, path: &str, name: &str, mm: (u32, u32), devtype: &str, size: u64) {
            self.file(
                &format!("{path}/uevent"),
                &format!("MAJOR={}\nMINOR={}\nDEVNAME={name}\nDEVTYPE={devtype}\n", mm.0, mm.1),
            );
            self.file(&format!("{path}/dev"), &format!("{}:{}\n", mm.0, mm.1));
            self.file(&format!("{path}/size"), &format!("{size}\n"));
            self.link(&format!("/sys/dev/block/{}:{}", mm.0, mm.1), path);
        }

        /// A whole disk at /sys/devices/`devpath`/`name` and its
        /// /sys/block link; returns its sysfs path.
        pub fn disk(&self, devpath: &str, name: &str, mm: (u32, u32), size: u64) -> String {
            let path = format!("/sys/devices/{devpath}/{name}");
            self.node(&path, name, mm, "disk", size);
            self.dir(&format!("{path}/slaves"));
            self.dir(&format!("{path}/holders"));
            self.dir(&format!("{path}/queue"));
            self.link(&format!("/sys/block/{name}"), &path);
            path
        }

        pub fn partition(&self, disk: &str, name: &str, mm: (u32, u32)) -> String {
            let path = format!("{disk}/{name}");
            self.node(&path, name, mm, "partition", 2048);
            path
        }

        /// `slave` (a sysfs path) under `dev`'s slaves/.
        pub fn slave(&self, dev: &str, slave: &str) {
            let name = slave.rsplit('/').next().unwrap();
            self.link(&format!("{dev}/slaves/{name}"), slave);
        }

        pub fn udev_db(&self, mm: (u32, u32), lines: &str) {
            self.file(&format!("/run/udev/data/b{}:{}", mm.0, mm.1), lines);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::{text, FakeSys};
    use super::*;

    fn address(f: &FakeSys, dev: &str) -> String {
        text(&disk_address(f.root(), &format!("{}{dev}", f.root)).unwrap().expect("an address"))
    }

    #[test]
    fn helpers() {
        assert_eq!(basename("/sys/devices/virtual/block/dm-0"), "dm-0");
        assert_eq!(basename("/"), "/");
    }

    #[test]
    fn udev_lookups() {
        let f = FakeSys::new();
        let vda = f.disk("pci0000:00/0000:00:02.0/virtio1/block", "vda", (254, 0), 100);
        let r = f.root();
        let link = format!("{}/sys/block/vda", f.root);
        assert_eq!(udev_device(r, &link), Some(format!("{}{vda}", f.root)));
        assert_eq!(device_for_syspath(r, &link).as_deref(), Some("/dev/vda"));
        // Outside /sys, or a /sys/devices directory without uevent: refused.
        assert_eq!(udev_device(r, &format!("{}/run", f.root)), None);
        f.dir("/sys/devices/pci0000:00/0000:00:02.0/virtio1/block/novd");
        assert_eq!(
            device_for_syspath(r, &format!("{}{}", f.root, "/sys/devices/pci0000:00/0000:00:02.0/virtio1/block/novd")),
            None
        );
        // Properties: udev's database first, then uevent.
        let s = udev_device(r, &link).unwrap();
        assert_eq!(property(r, &s, "ID_SERIAL"), None);
        assert_eq!(property(r, &s, "DEVTYPE").as_deref(), Some("disk"));
        f.udev_db((254, 0), "S:disk/by-id/virtio-abc\nE:ID_SERIAL=abc\nE:ID_SERIAL_SHORT=ab\nE:DEVTYPE=other\n");
        assert_eq!(property(r, &s, "ID_SERIAL").as_deref(), Some("abc"));
        assert_eq!(property(r, &s, "DEVTYPE").as_deref(), Some("other"));
    }

    #[test]
    fn addresses_per_bus() {
        let f = FakeSys::new();
        // virtio-blk, with a serial in udev's database.
        f.driver("pci0000:00/0000:00:02.0", "virtio-pci");
        f.disk("pci0000:00/0000:00:02.0/virtio1/block", "vda", (254, 0), 100);
        f.udev_db((254, 0), "E:ID_SERIAL=qga-serial\n");
        assert_eq!(
            address(&f, "/sys/block/vda"),
            r#"{"serial": "qga-serial", "bus-type": "virtio", "bus": 0, "unit": 0, "pci-controller": {"bus": 0, "slot": 2, "domain": 0, "function": 0}, "dev": "/dev/vda", "target": 0}"#
        );
        // virtio-scsi: the unit is the LUN.
        f.driver("pci0000:00/0000:00:03.0", "virtio-pci");
        f.dir("/sys/devices/pci0000:00/0000:00:03.0/virtio2/host2");
        f.disk("pci0000:00/0000:00:03.0/virtio2/host2/target2:0:1/2:0:1:3/block", "sda", (8, 0), 100);
        let a = address(&f, "/sys/block/sda");
        assert!(a.contains(r#""bus-type": "scsi", "bus": 0, "unit": 3, "pci-controller": {"bus": 0, "slot": 3, "domain": 0, "function": 0}, "dev": "/dev/sda", "target": 0"#), "{a}");
        // AHCI: the unit is the index of the port among the ata links.
        f.driver("pci0000:00/0000:00:1f.2", "ahci");
        for i in [1, 2, 3, 4, 5, 6] {
            f.dir(&format!("/sys/devices/pci0000:00/0000:00:1f.2/ata{i}"));
        }
        f.disk("pci0000:00/0000:00:1f.2/ata3/host2/target2:0:0/2:0:0:0/block", "sdb", (8, 16), 100);
        let a = address(&f, "/sys/block/sdb");
        assert!(a.contains(r#""bus-type": "sata", "bus": 0, "unit": 2, "pci-controller": {"bus": 0, "slot": 31, "domain": 0, "function": 2}"#), "{a}");
        // IDE (ata_piix): the bus is the index of the ata link, the unit the SCSI id.
        f.driver("pci0000:00/0000:00:01.1", "ata_piix");
        f.dir("/sys/devices/pci0000:00/0000:00:01.1/ata7");
        f.disk("pci0000:00/0000:00:01.1/ata8/host7/target7:0:1/7:0:1:0/block", "sdc", (8, 32), 100);
        let a = address(&f, "/sys/block/sdc");
        assert!(a.contains(r#""bus-type": "ide", "bus": 1, "unit": 1, "pci-controller": {"bus": 0, "slot": 1, "domain": 0, "function": 1}"#), "{a}");
        // NVMe behind a PCIe root port: the address is the last function
        // before the driver that names the bus.
        f.driver("pci0000:00/0000:00:1c.0", "pcieport");
        f.driver("pci0000:00/0000:00:1c.0/0000:05:00.0", "nvme");
        f.disk("pci0000:00/0000:00:1c.0/0000:05:00.0/nvme/nvme0", "nvme0n1", (259, 0), 100);
        let a = address(&f, "/sys/block/nvme0n1");
        assert!(a.contains(r#""bus-type": "nvme", "bus": 0, "unit": 0, "pci-controller": {"bus": 5, "slot": 0, "domain": 0, "function": 0}, "dev": "/dev/nvme0n1""#), "{a}");
        // An unknown driver at every level: only the node.
        f.driver("pci0000:00/0000:00:05.0", "megaraid_sas");
        f.disk("pci0000:00/0000:00:05.0/host9/target9:0:0/9:0:0:0/block", "sdd", (8, 48), 100);
        assert_eq!(
            address(&f, "/sys/block/sdd"),
            r#"{"bus-type": "unknown", "bus": 0, "unit": 0, "pci-controller": {"bus": -1, "slot": -1, "domain": -1, "function": -1}, "dev": "/dev/sdd", "target": 0}"#
        );
        // s390 channel I/O with virtio-blk.
        f.disk("css0/0.0.0001/0.0.0002/virtio0/block", "vdb", (254, 16), 100);
        let a = address(&f, "/sys/block/vdb");
        assert!(a.contains(r#""bus-type": "virtio""#) && a.contains(r#""ccw-address": {"#), "{a}");
        assert!(a.contains(r#""cssid": 0"#) && a.contains(r#""subchno": 1"#) && a.contains(r#""devno": 2"#), "{a}");
    }

    #[test]
    fn fsinfo_follows_slaves() {
        let f = FakeSys::new();
        f.driver("pci0000:00/0000:00:02.0", "virtio-pci");
        let vda = f.disk("pci0000:00/0000:00:02.0/virtio1/block", "vda", (254, 0), 100);
        let vda2 = f.partition(&vda, "vda2", (254, 2));
        let dm = f.disk("virtual/block", "dm-0", (253, 0), 100);
        f.slave(&dm, &vda2);
        let mut fs = FsInfo::default();
        fsinfo_for_device(f.root(), &format!("{}/sys/dev/block/253:0", f.root), &mut fs, 0).unwrap();
        assert_eq!(fs.name.as_deref(), Some("dm-0"));
        assert_eq!(fs.disks.len(), 1);
        let a = text(&fs.disks[0]);
        assert!(a.contains(r#""bus-type": "virtio""#) && a.contains(r#""dev": "/dev/vda2""#), "{a}");
        // A device missing from /sys (containers): the name only.
        let mut fs = FsInfo::default();
        fsinfo_for_device(f.root(), &format!("{}/sys/dev/block/9:9", f.root), &mut fs, 0).unwrap();
        assert_eq!((fs.name.as_deref(), fs.disks.len()), (Some("9:9"), 0));
    }
}
