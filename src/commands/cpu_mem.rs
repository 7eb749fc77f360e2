//! Processors, memory and I/O counters: guest-get-vcpus,
//! guest-set-vcpus, guest-get-memory-blocks, guest-set-memory-blocks,
//! guest-get-memory-block-info, guest-get-cpustats, guest-get-diskstats
//! (`qga/commands-linux.c`).

use std::os::fd::{AsFd, OwnedFd};

use super::files::c_string;
use super::reply::{obj, ok, R};
use super::scan::sscanf;
use super::Ctx;
use crate::json::{Object, Value};
use crate::protocol::{Args, QgaError};
use crate::sys::fs::{self, oflag};
use crate::sys::{fd, host, Errno};

// ---------------------------------------------------------------- sysfs helpers

fn open_dir(path: &str) -> Result<OwnedFd, Errno> {
    fd::open(&c_string(path), oflag::O_RDONLY | oflag::O_DIRECTORY, 0)
}

fn open_in(dir: &OwnedFd, name: &str, flags: i32) -> Result<OwnedFd, Errno> {
    fs::open_at(dir.as_fd(), &c_string(name), flags)
}

fn pread0(fd: &OwnedFd, buf: &mut [u8]) -> Result<usize, Errno> {
    fs::pread(fd.as_fd(), buf, 0)
}

fn pwrite0(fd: &OwnedFd, buf: &[u8]) -> Result<(), Errno> {
    fs::pwrite(fd.as_fd(), buf, 0).map(drop)
}

// ---------------------------------------------------------------- vcpus

struct Vcpu {
    id: i64,
    online: bool,
    can_offline: bool,
}

const CPU_DIR: &str = "/sys/devices/system/cpu";

/// `transfer_vcpu()` in the system-to-vcpu direction.
fn read_vcpu(v: &mut Vcpu) -> Result<(), QgaError> {
    let dir = format!("{CPU_DIR}/cpu{}/", v.id);
    let dfd = open_dir(&dir).map_err(|e| QgaError::with_errno(format!("open(\"{dir}\")"), e))?;
    match open_in(&dfd, "online", oflag::O_RDONLY) {
        Err(Errno::ENOENT) => {
            v.online = true;
            v.can_offline = false;
        }
        Err(e) => return Err(QgaError::with_errno(format!("open(\"{dir}/online\")"), e)),
        Ok(fd) => {
            let mut b = [0u8; 1];
            match pread0(&fd, &mut b) {
                Err(e) => return Err(QgaError::with_errno(format!("pread(\"{dir}/online\")"), e)),
                Ok(0) => return Err(QgaError::generic(format!("pread(\"{dir}/online\"): unexpected EOF"))),
                Ok(_) => {
                    v.online = b[0] != b'0';
                    v.can_offline = true;
                }
            }
        }
    }
    Ok(())
}

/// `transfer_vcpu()` in the vcpu-to-system direction.
fn write_vcpu(id: i64, online: bool) -> Result<(), QgaError> {
    let dir = format!("{CPU_DIR}/cpu{id}/");
    let dfd = open_dir(&dir).map_err(|e| QgaError::with_errno(format!("open(\"{dir}\")"), e))?;
    match open_in(&dfd, "online", oflag::O_RDWR) {
        Err(Errno::ENOENT) if !online => Err(QgaError::generic(format!("logical processor #{id} can't be offlined"))),
        Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(QgaError::with_errno(format!("open(\"{dir}/online\")"), e)),
        Ok(fd) => {
            let mut b = [0u8; 1];
            match pread0(&fd, &mut b) {
                Err(e) => Err(QgaError::with_errno(format!("pread(\"{dir}/online\")"), e)),
                Ok(0) => Err(QgaError::generic(format!("pread(\"{dir}/online\"): unexpected EOF"))),
                Ok(_) if online != (b[0] != b'0') => {
                    let s = [b'0' + online as u8];
                    pwrite0(&fd, &s).map_err(|e| QgaError::with_errno(format!("pwrite(\"{dir}/online\")"), e))
                }
                Ok(_) => Ok(()),
            }
        }
    }
}

pub fn get_vcpus(_: &mut Ctx<'_>, a: Args) -> R {
    a.finish()?;
    let entries =
        fs::read_dir(CPU_DIR).map_err(|e| QgaError::with_errno(format!("failed to list entries: {CPU_DIR}"), e))?;
    let mut list = Vec::new();
    for e in entries {
        let s = sscanf(&e.name, "cpu%ld");
        if s.ret == 0 {
            continue;
        }
        let Some(&id) = s.ints().first() else { continue };
        let mut v = Vcpu { id, online: false, can_offline: false };
        read_vcpu(&mut v)?;
        list.push(obj(vec![
            ("logical-id", Value::Int(v.id)),
            ("online", Value::Bool(v.online)),
            ("can-offline", Value::Bool(v.can_offline)),
        ]));
    }
    ok(Value::List(list))
}

pub fn set_vcpus(_: &mut Ctx<'_>, mut a: Args) -> R {
    let vcpus = a.req_struct_list("vcpus", |e| {
        let id = e.req_int("logical-id")?;
        let online = e.req_bool("online")?;
        e.opt_bool("can-offline")?;
        Ok((id, online))
    })?;
    a.finish()?;
    let mut processed = 0i64;
    for (id, online) in vcpus {
        if let Err(e) = write_vcpu(id, online) {
            if processed == 0 {
                return Err(e);
            }
            break;
        }
        processed += 1;
    }
    ok(Value::Int(processed))
}

// ---------------------------------------------------------------- memory blocks

const MEM_DIR: &str = "/sys/devices/system/memory/";

/// `ga_read_sysfs_file()`: (result, errno at the failure).
fn read_sysfs(dir: &OwnedFd, name: &str, size: usize) -> Result<Vec<u8>, (QgaError, Errno)> {
    let fd = open_in(dir, name, oflag::O_RDONLY)
        .map_err(|e| (QgaError::with_errno(format!("open sysfs file \"{name}\""), e), e))?;
    let mut buf = vec![0u8; size];
    match pread0(&fd, &mut buf) {
        Err(e) => Err((QgaError::with_errno(format!("pread sysfs file \"{name}\""), e), e)),
        Ok(0) => Err((QgaError::generic(format!("pread sysfs file \"{name}\": unexpected EOF")), Errno::NONE)),
        Ok(n) => {
            buf.truncate(n);
            Ok(buf)
        }
    }
}

fn write_sysfs(dir: &OwnedFd, name: &str, data: &[u8]) -> Result<(), Errno> {
    let fd = open_in(dir, name, oflag::O_WRONLY)?;
    pwrite0(&fd, data)
}

fn mem_dir(phys: u64) -> String {
    format!("{MEM_DIR}memory{}/", phys as i64)
}

/// `transfer_memory_block()`, system to block: (online, can_offline).
fn read_memory_block(phys: u64) -> Result<(bool, bool), QgaError> {
    let dir = mem_dir(phys);
    let dfd = open_dir(&dir).map_err(|e| QgaError::with_errno(format!("open(\"{dir}\")"), e))?;
    let status = match read_sysfs(&dfd, "state", 10) {
        Ok(s) => s,
        Err((_, Errno::ENOENT)) => return Ok((true, false)),
        Err((e, _)) => return Err(e),
    };
    let online = status.starts_with(b"online");
    let can_offline = match read_sysfs(&dfd, "removable", 1) {
        Ok(r) => r[0] != b'0',
        Err((_, Errno::ENOENT)) => false,
        Err((e, _)) => return Err(e),
    };
    Ok((online, can_offline))
}

pub fn get_memory_blocks(_: &mut Ctx<'_>, a: Args) -> R {
    a.finish()?;
    let entries = match fs::read_dir(MEM_DIR) {
        Ok(e) => e,
        Err(Errno::ENOENT) => return ok(Value::List(Vec::new())),
        Err(e) => return Err(QgaError::with_errno(format!("Can't open directory\"{MEM_DIR}\""), e)),
    };
    let mut list = Vec::new();
    for e in entries {
        if !e.name.starts_with("memory") || !e.is_dir {
            continue;
        }
        let digits: String = e.name[6..].chars().take_while(|c| c.is_ascii_digit()).collect();
        let phys: u64 = digits.parse().unwrap_or(0);
        let (online, can_offline) = read_memory_block(phys)?;
        list.push(obj(vec![
            ("phys-index", Value::UInt(phys)),
            ("online", Value::Bool(online)),
            ("can-offline", Value::Bool(can_offline)),
        ]));
    }
    if list.is_empty() {
        return Err(QgaError::generic("guest reported zero memory blocks!"));
    }
    ok(Value::List(list))
}

/// `transfer_memory_block()`, block to system: (response, error code).
fn write_memory_block(phys: u64, online: bool) -> (&'static str, Option<Errno>) {
    const OK: &str = "success";
    if let Err(e) = std::fs::read_dir(MEM_DIR) {
        let errno = Errno::of(&e);
        let resp = if errno == Errno::ENOENT { "operation-not-supported" } else { OK };
        return (resp, Some(errno));
    }
    let dfd = match open_dir(&mem_dir(phys)) {
        Ok(d) => d,
        Err(Errno::ENOENT) => return ("not-found", Some(Errno::ENOENT)),
        Err(e) => return ("operation-failed", Some(e)),
    };
    let status = match read_sysfs(&dfd, "state", 10) {
        Ok(s) => s,
        Err((_, Errno::ENOENT)) => {
            return (if online { OK } else { "operation-not-supported" }, Some(Errno::ENOENT));
        }
        Err((_, e)) => return ("operation-failed", Some(e)),
    };
    if online != status.starts_with(b"online") {
        let new_state: &[u8] = if online { b"online" } else { b"offline" };
        if let Err(e) = write_sysfs(&dfd, "state", new_state) {
            return ("operation-failed", Some(e));
        }
    }
    (OK, None)
}

pub fn set_memory_blocks(_: &mut Ctx<'_>, mut a: Args) -> R {
    let blocks = a.req_struct_list("mem-blks", |e| {
        let phys = e.req_uint64("phys-index")?;
        let online = e.req_bool("online")?;
        e.opt_bool("can-offline")?;
        Ok((phys, online))
    })?;
    a.finish()?;
    let list = blocks
        .into_iter()
        .map(|(phys, online)| {
            let (resp, code) = write_memory_block(phys, online);
            let mut o = Object::with_capacity(3);
            o.push("phys-index", Value::UInt(phys));
            o.push("response", Value::str(resp));
            if let Some(c) = code {
                o.push("error-code", Value::Int(i64::from(c.raw())));
            }
            Value::Object(o)
        })
        .collect();
    ok(Value::List(list))
}

pub fn get_memory_block_info(_: &mut Ctx<'_>, a: Args) -> R {
    a.finish()?;
    let dfd = open_dir(MEM_DIR).map_err(|e| QgaError::with_errno(format!("open(\"{MEM_DIR}\")"), e))?;
    let buf = read_sysfs(&dfd, "block_size_bytes", 20).map_err(|(e, _)| e)?;
    let text = String::from_utf8_lossy(&buf);
    let s = sscanf(&text, "%lx");
    let size = s.ints().first().copied().unwrap_or(0);
    ok(obj(vec![("size", Value::UInt(size as u64))]))
}

// ---------------------------------------------------------------- /proc statistics

pub fn get_cpustats(_: &mut Ctx<'_>, a: Args) -> R {
    a.finish()?;
    let path = "/proc/stat";
    let text = std::fs::read(path).map_err(|e| QgaError::with_errno(format!("open(\"{path}\")"), Errno::of(&e)))?;
    let text = String::from_utf8_lossy(&text);
    let tck = host::clock_ticks();
    let ms = |v: i64| Value::UInt((v as u64).wrapping_mul(1000) / tck);
    let mut list = Vec::new();
    for line in text.split_inclusive('\n') {
        let s = sscanf(line, "%s %lu %lu %lu %lu %lu %lu %lu %lu %lu %lu");
        let i = s.ret;
        let name = s.strs().first().map(|n| n.to_string()).unwrap_or_default();
        if i == -1 || !name.starts_with("cpu") || name.len() == 3 {
            continue;
        }
        if i < 5 {
            crate::log::info(&format!("Parsing cpu stat from {path} failed, see \"man proc\""));
            break;
        }
        let v = s.ints();
        let cpu = sscanf(&name[3..], "%d").ints().first().copied().unwrap_or(0) as i32;
        let mut o = Object::with_capacity(12);
        o.push("type", Value::str("linux"));
        o.push("cpu", Value::Int(cpu as i64));
        o.push("user", ms(v[0]));
        o.push("nice", ms(v[1]));
        o.push("system", ms(v[2]));
        o.push("idle", ms(v[3]));
        if i > 5 {
            o.push("iowait", ms(v[4]));
        }
        if i > 6 {
            o.push("irq", ms(v[5]));
            o.push("softirq", ms(v.get(6).copied().unwrap_or(0)));
        }
        if i > 8 {
            o.push("steal", ms(v[7]));
        }
        if i > 9 {
            o.push("guest", ms(v[8]));
        }
        if i > 10 {
            o.push("guestnice", ms(v[9]));
        }
        list.push(Value::Object(o));
    }
    ok(Value::List(list))
}

pub fn get_diskstats(_: &mut Ctx<'_>, a: Args) -> R {
    a.finish()?;
    let path = "/proc/diskstats";
    let text = std::fs::read(path).map_err(|e| QgaError::with_errno(format!("open(\"{path}\")"), Errno::of(&e)))?;
    let text = String::from_utf8_lossy(&text);
    let mut list = Vec::new();
    for line in text.split_inclusive('\n') {
        let s = sscanf(line, "%u %u %s %lu %lu %lu%lu %lu %lu %lu %u %u %u %u%lu %lu %lu %u %lu %u");
        let i = s.ret;
        if i < 7 {
            continue;
        }
        let v = s.ints();
        let name = s.strs().first().map(|n| n.to_string()).unwrap_or_default();
        // Conversions after the name, numbered as in qemu-ga's sscanf().
        let f = |n: usize| v.get(n - 1).copied().unwrap_or(0);
        let u64v = |n: usize| Value::UInt(f(n) as u64);
        let u32v = |n: usize| Value::UInt(f(n) as u32 as u64);
        let mut st = Object::new();
        if i == 7 {
            st.push("read-sectors", u64v(4));
            st.push("read-ios", u64v(3));
            st.push("write-sectors", u64v(6));
            st.push("write-ios", u64v(5));
        }
        if i >= 14 {
            st.push("read-sectors", u64v(5));
            st.push("read-ios", u64v(3));
            st.push("read-merges", u64v(4));
            st.push("write-sectors", u64v(9));
            st.push("write-ios", u64v(7));
            st.push("write-merges", u64v(8));
        }
        if i >= 18 {
            st.push("discard-sectors", u64v(16));
            st.push("discard-ios", u64v(14));
            st.push("discard-merges", u64v(15));
        }
        if i >= 20 {
            st.push("flush-ios", u64v(18));
        }
        if i >= 14 {
            st.push("read-ticks", u64v(6));
            st.push("write-ticks", u32v(10));
        }
        if i >= 18 {
            st.push("discard-ticks", u32v(17));
        }
        if i >= 20 {
            st.push("flush-ticks", u32v(19));
        }
        if i >= 14 {
            st.push("ios-pgr", u32v(11));
            st.push("total-ticks", u32v(12));
            st.push("weight-ticks", u32v(13));
        }
        let mut o = Object::with_capacity(4);
        o.push("name", Value::Str(name));
        o.push("major", Value::UInt(f(1) as u32 as u64));
        o.push("minor", Value::UInt(f(2) as u32 as u64));
        o.push("stats", Value::Object(st));
        list.push(Value::Object(o));
    }
    ok(Value::List(list))
}
