//! guest-get-disks as qemu-ga's libudev build answers it
//! (`qmp_guest_get_disks()` in `qga/commands-linux.c`), from sysfs and
//! udev's database (see `blockdev.rs`):
//!
//! * every /sys/block link of non-zero size whose device has a node, with
//!   `alias` (udev's DM_NAME), `address` (not for /devices/virtual/block
//!   devices), `dependencies` (the nodes of its `slaves/`) and, on NVMe,
//!   `smart` (the SMART / Health Information log);
//! * after each disk its partitions (subdirectories named `<disk>N` or
//!   `<disk>pN`), each depending on the disk;
//! * the list in reverse order of discovery (QAPI_LIST_PREPEND), which
//!   follows the kernel's readdir order.

use std::os::fd::AsFd;

use super::blockdev::{self, device_for_syspath, Root, MACHINE};
use super::files::c_string;
use super::{Ctx, Outcome};
use crate::json::{Object, Value};
use crate::log;
use crate::protocol::{Args, QgaError};
use crate::sys::{fd, fs, nvme};

pub fn get_disks(_: &mut Ctx<'_>, a: Args) -> Result<Outcome, QgaError> {
    a.finish()?;
    Ok(Outcome::Return(Value::List(disks(MACHINE)?)))
}

/// One `GuestDiskInfo`.
struct Disk {
    name: String,
    partition: bool,
    dependencies: Option<Vec<String>>,
    address: Option<Value>,
    alias: Option<String>,
    smart: Option<Value>,
}

impl Disk {
    fn into_value(self) -> Value {
        let mut o = Object::with_capacity(6);
        o.push("name", Value::Str(self.name));
        o.push("partition", Value::Bool(self.partition));
        if let Some(d) = self.dependencies {
            o.push("dependencies", Value::List(d.into_iter().map(Value::Str).collect()));
        }
        if let Some(a) = self.address {
            o.push("address", a);
        }
        if let Some(a) = self.alias {
            o.push("alias", Value::Str(a));
        }
        if let Some(s) = self.smart {
            o.push("smart", s);
        }
        Value::Object(o)
    }
}

/// The reply's list for the /sys under `root`.
pub(super) fn disks(root: Root<'_>) -> Result<Vec<Value>, QgaError> {
    let block = root.path("/sys/block");
    log::debug("listing /sys/block directory");
    let entries = fs::read_dir(&block).map_err(|e| QgaError::with_errno("Can't open directory \"/sys/block\"", e))?;
    let mut found: Vec<Disk> = Vec::new();
    for de in entries {
        if !de.is_symlink {
            log::debug(&format!("  skipping entry: {}", de.name));
            continue;
        }
        let disk_dir = format!("{block}/{}", de.name);
        match std::fs::read(format!("{disk_dir}/size")) {
            Err(_) => {
                log::debug("  failed to read disk size");
                continue;
            }
            Ok(s) if s == b"0\n" => {
                log::debug("  skipping zero-sized disk");
                continue;
            }
            Ok(_) => {}
        }
        log::debug(&format!("  adding {}", de.name));
        let Some(dev_name) = device_for_syspath(root, &disk_dir) else {
            log::debug(&format!("Failed to get device name for syspath: /sys/block/{}", de.name));
            continue;
        };
        let alias = blockdev::udev_device(root, &disk_dir)
            .and_then(|s| blockdev::property(root, &s, "DM_NAME"))
            .filter(|a| !a.is_empty());
        // Addresses only for real devices; an error is logged and ignored.
        let is_virtual = match fs::realpath(&disk_dir) {
            Ok(p) => p.contains("/devices/virtual/block/"),
            Err(e) => {
                log::debug(&format!(
                    "  failed to check disk path, ignoring error: realpath(\"/sys/block/{}\"): {e}",
                    de.name
                ));
                true
            }
        };
        let address = if is_virtual {
            None
        } else {
            blockdev::disk_address(root, &disk_dir).unwrap_or_else(|e| {
                log::debug(&format!("  failed to get device info, ignoring error: {}", e.desc));
                None
            })
        };
        let smart = match &address {
            Some(Value::Object(a)) if a.get("bus-type").and_then(Value::as_str) == Some("nvme") => {
                nvme_smart(root, &dev_name)
            }
            _ => None,
        };
        let dependencies = disk_deps(root, &disk_dir);
        let partitions = partitions(root, &de.name, &disk_dir, &dev_name);
        found.push(Disk { name: dev_name, partition: false, dependencies, address, alias, smart });
        found.extend(partitions);
    }
    // QAPI_LIST_PREPEND throughout: the last found comes first.
    Ok(found.into_iter().rev().map(Disk::into_value).collect())
}

/// `get_disk_deps()`: the nodes of `slaves/`, last entry first; None when
/// the directory cannot be listed.
fn disk_deps(root: Root<'_>, disk_dir: &str) -> Option<Vec<String>> {
    let deps_dir = format!("{disk_dir}/slaves");
    let entries = fs::read_dir(&deps_dir).ok()?;
    let mut deps: Vec<String> =
        entries.iter().filter_map(|e| device_for_syspath(root, &format!("{deps_dir}/{}", e.name))).collect();
    deps.reverse();
    Some(deps)
}

/// `get_disk_partitions()`: subdirectories `<disk>N` / `<disk>pN` with a
/// node, in readdir order; each depends on the disk.
fn partitions(root: Root<'_>, disk_name: &str, disk_dir: &str, disk_dev: &str) -> Vec<Disk> {
    let Ok(entries) = fs::read_dir(disk_dir) else { return Vec::new() };
    entries
        .iter()
        .filter(|e| e.is_dir && is_partition_name(disk_name, &e.name))
        .filter_map(|e| {
            let Some(dev) = device_for_syspath(root, &format!("{disk_dir}/{}", e.name)) else {
                log::debug(&format!("Failed to get device name for syspath: {disk_dir}"));
                return None;
            };
            Some(Disk {
                name: dev,
                partition: true,
                dependencies: Some(vec![disk_dev.to_string()]),
                address: None,
                alias: None,
                smart: None,
            })
        })
        .collect()
}

fn is_partition_name(disk: &str, name: &str) -> bool {
    let Some(rest) = name.strip_prefix(disk) else { return false };
    let b = rest.as_bytes();
    match b.first() {
        Some(c) if c.is_ascii_digit() => true,
        Some(b'p') => b.get(1).is_some_and(u8::is_ascii_digit),
        _ => false,
    }
}

/// `get_nvme_smart()`: None (logged) when the node cannot be opened or the
/// controller refuses the log page.
fn nvme_smart(root: Root<'_>, dev: &str) -> Option<Value> {
    let f = match fd::open(&c_string(&root.path(dev)), fs::oflag::O_RDONLY, 0) {
        Ok(f) => f,
        Err(e) => {
            log::debug(&format!("Failed to open device: {dev}: {e}"));
            return None;
        }
    };
    match nvme::smart_log(f.as_fd()) {
        Ok(page) => Some(smart_value(&page)),
        Err(e) => {
            log::debug(&format!("Failed to get smart: {dev}: {e}"));
            None
        }
    }
}

/// `GuestDiskSmart` of type nvme from the raw log page (`NvmeSmartLog`).
fn smart_value(page: &[u8; nvme::SMART_LOG_LEN]) -> Value {
    let u64_at = |off: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&page[off..off + 8]);
        u64::from_le_bytes(b)
    };
    let mut o = Object::with_capacity(26);
    o.push("type", Value::str("nvme"));
    o.push("critical-warning", Value::Int(i64::from(page[0])));
    o.push("temperature", Value::Int(i64::from(u16::from_le_bytes([page[1], page[2]]))));
    o.push("available-spare", Value::Int(i64::from(page[3])));
    o.push("available-spare-threshold", Value::Int(i64::from(page[4])));
    o.push("percentage-used", Value::Int(i64::from(page[5])));
    // 128-bit counters from byte 32 on, as lo/hi 64-bit halves.
    let counters = [
        "data-units-read",
        "data-units-written",
        "host-read-commands",
        "host-write-commands",
        "controller-busy-time",
        "power-cycles",
        "power-on-hours",
        "unsafe-shutdowns",
        "media-errors",
        "number-of-error-log-entries",
    ];
    for (i, name) in counters.iter().enumerate() {
        let off = 32 + 16 * i;
        o.push(format!("{name}-lo"), Value::UInt(u64_at(off)));
        o.push(format!("{name}-hi"), Value::UInt(u64_at(off + 8)));
    }
    Value::Object(o)
}

#[cfg(test)]
mod tests {
    use super::super::blockdev::fake::{text, FakeSys};
    use super::*;

    fn name(d: &Value) -> &str {
        match d {
            Value::Object(o) => o.get("name").and_then(Value::as_str).unwrap_or(""),
            _ => "",
        }
    }

    fn names(f: &FakeSys, dir: &str) -> Vec<String> {
        fs::read_dir(&format!("{}{dir}", f.root)).unwrap().into_iter().map(|e| e.name).collect()
    }

    #[test]
    fn partition_names() {
        assert!(is_partition_name("vda", "vda1"));
        assert!(is_partition_name("nvme0n1", "nvme0n1p12"));
        assert!(!is_partition_name("nvme0n1", "nvme0n1p"));
        assert!(!is_partition_name("vda", "vda"));
        assert!(!is_partition_name("vda", "vdb1"));
        assert!(!is_partition_name("vda", "queue"));
    }

    /// A machine with virtio-blk (two partitions, one under LVM),
    /// NVMe (one partition), a SATA disk with a serial, md over two
    /// partitions, an empty loop device and a non-link entry.
    fn machine() -> FakeSys {
        let f = FakeSys::new();
        f.driver("pci0000:00/0000:00:02.0", "virtio-pci");
        let vda = f.disk("pci0000:00/0000:00:02.0/virtio1/block", "vda", (254, 0), 1000);
        let vda1 = f.partition(&vda, "vda1", (254, 1));
        let vda2 = f.partition(&vda, "vda2", (254, 2));
        f.driver("pci0000:00/0000:00:04.0", "nvme");
        let nvme = f.disk("pci0000:00/0000:00:04.0/nvme/nvme0", "nvme0n1", (259, 0), 1000);
        let nvme_p1 = f.partition(&nvme, "nvme0n1p1", (259, 1));
        f.driver("pci0000:00/0000:00:1f.2", "ahci");
        f.dir("/sys/devices/pci0000:00/0000:00:1f.2/ata1");
        f.dir("/sys/devices/pci0000:00/0000:00:1f.2/ata2");
        f.disk("pci0000:00/0000:00:1f.2/ata2/host1/target1:0:0/1:0:0:0/block", "sda", (8, 0), 1000);
        f.udev_db((8, 0), "E:ID_SERIAL=QEMU_HARDDISK_QM00003\n");
        let dm = f.disk("virtual/block", "dm-0", (253, 0), 500);
        f.slave(&dm, &vda2);
        f.udev_db((253, 0), "E:DM_NAME=vg0-root\nE:DM_UUID=LVM-x\n");
        let md = f.disk("virtual/block", "md0", (9, 0), 500);
        f.slave(&md, &vda1);
        f.slave(&md, &nvme_p1);
        f.disk("virtual/block", "loop0", (7, 0), 0);
        f.file("/sys/block/not-a-link", "");
        f
    }

    #[test]
    fn disks_of_a_machine() {
        let f = machine();
        let list = disks(f.root()).unwrap();
        let by_name = |n: &str| text(list.iter().find(|d| name(d) == n).unwrap_or_else(|| panic!("{n} missing")));
        assert_eq!(
            by_name("/dev/vda"),
            r#"{"name": "/dev/vda", "dependencies": [], "partition": false, "address": {"bus-type": "virtio", "bus": 0, "unit": 0, "pci-controller": {"bus": 0, "slot": 2, "domain": 0, "function": 0}, "dev": "/dev/vda", "target": 0}}"#
        );
        assert_eq!(by_name("/dev/vda1"), r#"{"name": "/dev/vda1", "dependencies": ["/dev/vda"], "partition": true}"#);
        assert_eq!(
            by_name("/dev/nvme0n1p1"),
            r#"{"name": "/dev/nvme0n1p1", "dependencies": ["/dev/nvme0n1"], "partition": true}"#
        );
        // No NVMe node under the fake root: no smart member.
        let nvme = by_name("/dev/nvme0n1");
        assert!(nvme.contains(r#""bus-type": "nvme""#) && !nvme.contains("smart"), "{nvme}");
        assert!(by_name("/dev/sda")
            .contains(r#""serial": "QEMU_HARDDISK_QM00003", "bus-type": "sata", "bus": 0, "unit": 1"#));
        // Virtual devices: no address; the alias from udev; slaves' nodes,
        // last listed first.
        assert_eq!(
            by_name("/dev/dm-0"),
            r#"{"name": "/dev/dm-0", "dependencies": ["/dev/vda2"], "partition": false, "alias": "vg0-root"}"#
        );
        let md = by_name("/dev/md0");
        let slaves = names(&f, "/sys/devices/virtual/block/md0/slaves");
        let expect: Vec<String> = slaves.iter().rev().map(|s| format!("\"/dev/{s}\"")).collect();
        assert!(md.contains(&format!(r#""dependencies": [{}]"#, expect.join(", "))), "{md}");
        // Zero-sized and non-link entries are skipped.
        assert_eq!(list.len(), 8, "{}", text(&Value::List(list.clone())));

        // Order: discovery order reversed, a disk's partitions after it.
        let mut found = Vec::new();
        for d in names(&f, "/sys/block") {
            if d == "not-a-link" || d == "loop0" {
                continue;
            }
            found.push(format!("/dev/{d}"));
            for p in names(&f, &format!("/sys/block/{d}")) {
                if p.starts_with(&d) {
                    found.push(format!("/dev/{p}"));
                }
            }
        }
        found.reverse();
        let got: Vec<&str> = list.iter().map(name).collect();
        assert_eq!(got, found);
    }

    #[test]
    fn without_sys_block() {
        let f = FakeSys::new();
        std::fs::remove_dir_all(format!("{}/sys/block", f.root)).unwrap();
        let e = disks(f.root()).unwrap_err();
        assert_eq!(e.desc, "Can't open directory \"/sys/block\": No such file or directory");
    }

    #[test]
    fn nvme_smart_members() {
        let mut page = [0u8; nvme::SMART_LOG_LEN];
        page[0] = 0x04;
        page[1..3].copy_from_slice(&323u16.to_le_bytes());
        page[3] = 100;
        page[4] = 10;
        page[5] = 3;
        page[32..40].copy_from_slice(&7u64.to_le_bytes());
        page[40..48].copy_from_slice(&u64::MAX.to_le_bytes());
        page[176..184].copy_from_slice(&9u64.to_le_bytes());
        let v = smart_value(&page);
        let t = text(&v);
        let o = match &v {
            Value::Object(o) => o,
            _ => unreachable!(),
        };
        assert_eq!(o.get("type").and_then(Value::as_str), Some("nvme"));
        assert_eq!(o.get("temperature").and_then(Value::as_i64), Some(323));
        assert_eq!(o.get("critical-warning").and_then(Value::as_i64), Some(4));
        assert_eq!(o.get("available-spare-threshold").and_then(Value::as_i64), Some(10));
        assert_eq!(o.get("percentage-used").and_then(Value::as_i64), Some(3));
        assert_eq!(o.get("data-units-read-lo").and_then(Value::as_i64), Some(7));
        assert!(t.contains(r#""data-units-read-hi": 18446744073709551615"#), "{t}");
        assert_eq!(o.get("number-of-error-log-entries-lo").and_then(Value::as_i64), Some(9));
        assert_eq!(o.get("media-errors-hi").and_then(Value::as_i64), Some(0));
        assert_eq!(t.matches(": ").count(), 26);
    }
}
