//! guest-get-fsinfo and guest-fstrim (`qga/commands-posix.c`,
//! `qga/commands-linux.c`).
//!
//! The disk addresses come from `blockdev.rs` (shared with
//! guest-get-disks): sysfs and udev's database, as qemu-ga's libudev build
//! reports them.

use std::os::fd::AsFd;

use super::blockdev::{self, FsInfo, MACHINE};
use super::files::c_string;
use super::mounts::fs_mount_list;
use super::reply::R;
use super::Ctx;
use super::Outcome;
use crate::json::{Object, Value};
use crate::log;
use crate::protocol::Args;
use crate::sys::fs::{self, oflag};
use crate::sys::{fd, Errno};

// ---------------------------------------------------------------- fsinfo

pub fn get_fsinfo(_: &mut Ctx<'_>, a: Args) -> R {
    a.finish()?;
    let mounts = fs_mount_list()?;
    let mut list = Vec::with_capacity(mounts.len());
    for m in &mounts {
        log::debug(&format!("Building guest fsinfo for '{}'", m.dirname));
        let mut fs = FsInfo::default();
        let devpath = MACHINE.path(&format!("/sys/dev/block/{}:{}", m.major, m.minor));
        blockdev::fsinfo_for_device(MACHINE, &devpath, &mut fs, 0)?;
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
