//! Time, identity and machine state: guest-get-time, guest-set-time,
//! guest-get-timezone, guest-get-host-name, guest-get-osinfo,
//! guest-get-users, guest-get-load, guest-get-vcpus, guest-set-vcpus,
//! guest-get-memory-blocks, guest-set-memory-blocks,
//! guest-get-memory-block-info, guest-get-cpustats, guest-get-diskstats
//! (`qga/commands.c`, `qga/commands-posix.c`, `qga/commands-linux.c`).

use std::ffi::CStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::files::c_string;
use super::scan::sscanf;
use super::{helper, Outcome};
use crate::agent::Agent;
use crate::json::{Object, Value};
use crate::protocol::{Args, QgaError};

type R = Result<Outcome, QgaError>;

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

fn ok(v: Value) -> R {
    Ok(Outcome::Return(v))
}

fn obj(members: Vec<(&str, Value)>) -> Value {
    let mut o = Object::with_capacity(members.len());
    for (k, v) in members {
        o.push(k, v);
    }
    Value::Object(o)
}

/// A C string from a fixed-size char array (may lack the terminator).
fn c_chars(chars: &[libc::c_char]) -> String {
    let bytes: Vec<u8> = chars.iter().map(|&c| c as u8).take_while(|&b| b != 0).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

// ---------------------------------------------------------------- time

pub fn get_time(_: &mut Agent, a: Args) -> R {
    a.finish()?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    // g_get_real_time() * 1000: microsecond resolution.
    ok(Value::Int(now.as_micros() as i64 * 1000))
}

const HWCLOCK: &str = "/sbin/hwclock";

/// Local calendar year of `secs`, as `g_date_set_time_t()` sees it.
fn local_year(secs: i64) -> Option<i64> {
    // `as _`: naming libc::time_t warns on musl (deprecated alias there).
    let secs = secs as _;
    // SAFETY: localtime_r with valid pointers.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&secs, &mut tm).is_null() {
            return None;
        }
        Some(tm.tm_year as i64 + 1900)
    }
}

/// guest-set-time. With `time`: checks, settimeofday(), then `hwclock -w`
/// (skipped when /sbin/hwclock does not exist: the system time is set and
/// there is no RTC tool to sync, as on minimal guests). Without `time`:
/// `hwclock -s` (qemu-ga's error if it is missing: nothing can be done).
pub fn set_time(agent: &mut Agent, mut a: Args) -> R {
    let time = a.opt_int("time")?;
    a.finish()?;
    if let Some(ns) = time {
        let secs = ns / 1_000_000_000;
        let usecs = (ns % 1_000_000_000) / 1000;
        if !local_year(secs).is_some_and(|y| (1970..2070).contains(&y)) {
            return Err(QgaError::generic("Invalid time"));
        }
        let tv = libc::timeval { tv_sec: secs as _, tv_usec: usecs as _ };
        // SAFETY: settimeofday with a valid timeval and no timezone.
        if unsafe { libc::settimeofday(&tv, std::ptr::null()) } < 0 {
            return Err(QgaError::with_errno("Failed to set time to guest", errno()));
        }
        if !std::path::Path::new(HWCLOCK).exists() {
            return ok(Value::empty_object());
        }
    }
    let flag = if time.is_some() { "-w" } else { "-s" };
    helper::run(
        agent,
        &[HWCLOCK, flag],
        None,
        "set hardware clock to system time",
        Box::new(|_| ok(Value::empty_object())),
    )
}

extern "C" {
    fn tzset();
}

/// Whether GLib's `g_time_zone_new_identifier()` accepts `TZ`: a zoneinfo
/// file (absolute, or under $TZDIR or /usr/share/zoneinfo) or a POSIX rule
/// with an offset. GLib falls back to UTC otherwise, where glibc would
/// keep the bogus name as the abbreviation.
fn tz_usable(tz: &str) -> bool {
    let id = tz.strip_prefix(':').unwrap_or(tz);
    if id.is_empty() {
        return true;
    }
    let dir = std::env::var("TZDIR").unwrap_or_else(|_| "/usr/share/zoneinfo".to_string());
    let file = if id.starts_with('/') { id.to_string() } else { format!("{dir}/{id}") };
    if std::path::Path::new(&file).is_file() {
        return true;
    }
    let rest = if let Some(r) = id.strip_prefix('<') {
        match r.find('>') {
            Some(i) => &r[i + 1..],
            None => return false,
        }
    } else {
        let n = id.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
        if n < 3 {
            return false;
        }
        &id[n..]
    };
    rest.starts_with(|c: char| c.is_ascii_digit() || c == '+' || c == '-')
}

pub fn get_timezone(_: &mut Agent, a: Args) -> R {
    a.finish()?;
    if std::env::var("TZ").is_ok_and(|tz| !tz_usable(&tz)) {
        return ok(obj(vec![("zone", Value::str("UTC")), ("offset", Value::Int(0))]));
    }
    // SAFETY: tzset/time/localtime_r with valid pointers; tm_zone points
    // into libc's static zone data.
    let (offset, zone) = unsafe {
        tzset();
        let now = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&now, &mut tm).is_null() {
            return Err(QgaError::generic("Couldn't retrieve local timezone"));
        }
        let zone = if tm.tm_zone.is_null() {
            None
        } else {
            Some(CStr::from_ptr(tm.tm_zone).to_string_lossy().into_owned())
        };
        (tm.tm_gmtoff, zone)
    };
    let mut o = Object::with_capacity(2);
    if let Some(z) = zone.filter(|z| !z.is_empty()) {
        o.push("zone", Value::Str(z));
    }
    o.push("offset", Value::Int(offset));
    ok(Value::Object(o))
}

pub fn get_host_name(_: &mut Agent, a: Args) -> R {
    a.finish()?;
    // SAFETY: sysconf is a plain query.
    let max = unsafe { libc::sysconf(libc::_SC_HOST_NAME_MAX) };
    let len = if max < 0 { 64 } else { max as usize } + 1;
    let mut buf = vec![0u8; len];
    // SAFETY: gethostname writes at most len bytes.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), len) } < 0 {
        return Err(QgaError::with_errno("cannot get hostname", errno()));
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(len);
    ok(obj(vec![("host-name", Value::Str(String::from_utf8_lossy(&buf[..end]).into_owned()))]))
}

// ---------------------------------------------------------------- osinfo

/// The `[os-release]` group of an os-release file read as qemu-ga reads
/// it: a GKeyFile with a fake group line prepended. None if the file is
/// unreadable, not UTF-8, or not a valid key file (qemu-ga then tries the
/// next file).
fn parse_os_release(path: &str) -> Option<Vec<(String, String)>> {
    let data = std::fs::read(path).ok()?;
    // A C string: content ends at a NUL.
    let data = &data[..data.iter().position(|&b| b == 0).unwrap_or(data.len())];
    let text = std::str::from_utf8(data).ok()?;
    let mut group = Some("os-release".to_string());
    let mut pairs: Vec<(String, String)> = Vec::new();
    for raw in text.split('\n') {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let line = line.trim_start_matches(|c: char| c.is_ascii_whitespace());
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let close = rest.find(']')?;
            if !rest[close + 1..].chars().all(|c| c == ' ' || c == '\t') {
                return None;
            }
            let name = &rest[..close];
            if name.is_empty() || name.chars().any(|c| c.is_control() || c == '[') {
                return None;
            }
            group = Some(name.to_string());
            continue;
        }
        let eq = line.find('=')?;
        if eq == 0 {
            return None;
        }
        let key = line[..eq].trim_end_matches(|c: char| c.is_ascii_whitespace());
        if !valid_key_name(key) {
            return None;
        }
        let value = line[eq + 1..].trim_start_matches(|c: char| c.is_ascii_whitespace());
        if group.as_deref() == Some("os-release") {
            // A later duplicate replaces the earlier value.
            pairs.retain(|(k, _)| k != key);
            pairs.push((key.to_string(), value.to_string()));
        }
    }
    Some(pairs)
}

/// `g_key_file_is_key_name()`.
fn valid_key_name(key: &str) -> bool {
    let b = key.as_bytes();
    let end = b.iter().position(|&c| c == b'[' || c == b']' || c == b'=').unwrap_or(b.len());
    if end == 0 || b[0] == b' ' || b[end - 1] == b' ' {
        return false;
    }
    if end == b.len() {
        return true;
    }
    if b[end] != b'[' {
        return false;
    }
    let rest = &key[end + 1..];
    let close = rest.find(|c: char| !(c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '@')));
    matches!(close, Some(i) if rest.as_bytes()[i] == b']' && i + 1 == rest.len())
}

/// `ga_osrelease_replace_special()`, in place, bugs included: an unquoted
/// value (single quotes count as unquoted) is cut at the first space and
/// the first `;`; a double-quoted one loses the backslash before `$ ' " \ \``
/// and ends at the closing quote (without one, the shifted tail of the
/// original text stays in place).
pub(crate) fn replace_special(value: &str) -> String {
    let mut v = value.as_bytes().to_vec();
    if v.first() != Some(&b'"') {
        if let Some(i) = v.iter().position(|&b| b == b' ') {
            v.truncate(i);
        }
        if let Some(i) = v.iter().position(|&b| b == b';') {
            v.truncate(i);
        }
        return String::from_utf8_lossy(&v).into_owned();
    }
    let (mut p2, mut p) = (0usize, 1usize);
    while p < v.len() {
        if v[p] == b'\\' {
            p += 1;
            if !matches!(v.get(p), Some(b'$' | b'\'' | b'"' | b'\\' | b'`')) {
                p -= 1;
            }
        } else if v[p] == b'"' {
            v.truncate(p2);
            break;
        }
        v[p2] = v[p];
        p2 += 1;
        p += 1;
    }
    String::from_utf8_lossy(&v).into_owned()
}

pub fn get_osinfo(_: &mut Agent, a: Args) -> R {
    a.finish()?;
    let mut o = Object::with_capacity(10);
    // SAFETY: uname fills the struct.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut u) } == 0 {
        o.push("kernel-release", Value::Str(c_chars(&u.release)));
        o.push("kernel-version", Value::Str(c_chars(&u.version)));
        o.push("machine", Value::Str(c_chars(&u.machine)));
    }
    let release = match std::env::var_os("QGA_OS_RELEASE") {
        Some(p) => parse_os_release(&p.to_string_lossy()),
        None => parse_os_release("/etc/os-release").or_else(|| parse_os_release("/usr/lib/os-release")),
    };
    if let Some(pairs) = release {
        for (member, key) in [
            ("id", "ID"),
            ("name", "NAME"),
            ("pretty-name", "PRETTY_NAME"),
            ("version", "VERSION"),
            ("version-id", "VERSION_ID"),
            ("variant", "VARIANT"),
            ("variant-id", "VARIANT_ID"),
        ] {
            if let Some((_, v)) = pairs.iter().find(|(k, _)| k == key) {
                o.push(member, Value::Str(replace_special(v)));
            }
        }
    }
    ok(Value::Object(o))
}

// ---------------------------------------------------------------- users

pub fn get_users(_: &mut Agent, a: Args) -> R {
    a.finish()?;
    let mut users: Vec<(String, f64)> = Vec::new();
    // SAFETY: the utmpx iteration API; entries are copied before the next call.
    // musl's utmpx functions are deprecated stubs (musl writes no utmp):
    // a musl build reports no users.
    #[cfg_attr(target_env = "musl", allow(deprecated))]
    unsafe {
        libc::setutxent();
        loop {
            let e = libc::getutxent();
            if e.is_null() {
                break;
            }
            let e = &*e;
            if e.ut_type != libc::USER_PROCESS {
                continue;
            }
            // ut_user is not NUL-terminated when 32 bytes long; qemu-ga's
            // g_strdup() then reads on into ut_host (a buffer overread, not
            // copied: the name ends at the field's end).
            let name = c_chars(&e.ut_user);
            let t = e.ut_tv.tv_sec as f64 + e.ut_tv.tv_usec as f64 / 1_000_000.0;
            match users.iter_mut().find(|(n, _)| *n == name) {
                Some(u) => u.1 = u.1.min(t),
                None => users.push((name, t)),
            }
        }
        libc::endutxent();
    }
    ok(Value::List(
        users
            .into_iter()
            .map(|(u, t)| obj(vec![("user", Value::Str(u)), ("login-time", Value::Float(t))]))
            .collect(),
    ))
}

pub fn get_load(_: &mut Agent, a: Args) -> R {
    a.finish()?;
    let mut l = [0f64; 3];
    // SAFETY: getloadavg writes at most 3 doubles.
    if unsafe { libc::getloadavg(l.as_mut_ptr(), 3) } < 0 {
        return Err(QgaError::with_errno("cannot query load average", errno()));
    }
    ok(obj(vec![("load1m", Value::Float(l[0])), ("load5m", Value::Float(l[1])), ("load15m", Value::Float(l[2]))]))
}

// ---------------------------------------------------------------- sysfs helpers

fn open_raw(path: &str, flags: libc::c_int) -> Result<OwnedFd, i32> {
    let c = c_string(path);
    // SAFETY: open on a NUL-terminated path; the fd is owned by the result.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        Err(errno())
    } else {
        // SAFETY: fd was just opened and is not owned elsewhere.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

fn openat_raw(dir: &OwnedFd, name: &str, flags: libc::c_int) -> Result<OwnedFd, i32> {
    let c = c_string(name);
    // SAFETY: openat relative to a directory fd we own.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        Err(errno())
    } else {
        // SAFETY: as in open_raw.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

fn pread_raw(fd: &OwnedFd, buf: &mut [u8]) -> Result<usize, i32> {
    // SAFETY: pread into our buffer.
    let n = unsafe { libc::pread(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        Err(errno())
    } else {
        Ok(n as usize)
    }
}

fn pwrite_raw(fd: &OwnedFd, buf: &[u8]) -> Result<(), i32> {
    // SAFETY: pwrite from our buffer.
    if unsafe { libc::pwrite(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), 0) } < 0 {
        Err(errno())
    } else {
        Ok(())
    }
}

/// Directory entries (name, is_dir, is_symlink) in readdir() order.
pub(crate) fn read_dir_raw(path: &str) -> Result<Vec<(String, bool, bool)>, i32> {
    let rd = std::fs::read_dir(path).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    let mut out = Vec::new();
    for e in rd.flatten() {
        let ft = e.file_type().ok();
        out.push((
            e.file_name().to_string_lossy().into_owned(),
            ft.is_some_and(|t| t.is_dir()),
            ft.is_some_and(|t| t.is_symlink()),
        ));
    }
    Ok(out)
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
    let dfd = open_raw(&dir, libc::O_RDONLY | libc::O_DIRECTORY)
        .map_err(|e| QgaError::with_errno(format!("open(\"{dir}\")"), e))?;
    match openat_raw(&dfd, "online", libc::O_RDONLY) {
        Err(libc::ENOENT) => {
            v.online = true;
            v.can_offline = false;
        }
        Err(e) => return Err(QgaError::with_errno(format!("open(\"{dir}/online\")"), e)),
        Ok(fd) => {
            let mut b = [0u8; 1];
            match pread_raw(&fd, &mut b) {
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
    let dfd = open_raw(&dir, libc::O_RDONLY | libc::O_DIRECTORY)
        .map_err(|e| QgaError::with_errno(format!("open(\"{dir}\")"), e))?;
    match openat_raw(&dfd, "online", libc::O_RDWR) {
        Err(libc::ENOENT) if !online => Err(QgaError::generic(format!("logical processor #{id} can't be offlined"))),
        Err(libc::ENOENT) => Ok(()),
        Err(e) => Err(QgaError::with_errno(format!("open(\"{dir}/online\")"), e)),
        Ok(fd) => {
            let mut b = [0u8; 1];
            match pread_raw(&fd, &mut b) {
                Err(e) => Err(QgaError::with_errno(format!("pread(\"{dir}/online\")"), e)),
                Ok(0) => Err(QgaError::generic(format!("pread(\"{dir}/online\"): unexpected EOF"))),
                Ok(_) if online != (b[0] != b'0') => {
                    let s = [b'0' + online as u8];
                    pwrite_raw(&fd, &s).map_err(|e| QgaError::with_errno(format!("pwrite(\"{dir}/online\")"), e))
                }
                Ok(_) => Ok(()),
            }
        }
    }
}

pub fn get_vcpus(_: &mut Agent, a: Args) -> R {
    a.finish()?;
    let entries = read_dir_raw(CPU_DIR).map_err(|e| QgaError::with_errno(format!("failed to list entries: {CPU_DIR}"), e))?;
    let mut list = Vec::new();
    for (name, _, _) in entries {
        let s = sscanf(&name, "cpu%ld");
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

pub fn set_vcpus(_: &mut Agent, mut a: Args) -> R {
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
fn read_sysfs(dir: &OwnedFd, name: &str, size: usize) -> Result<Vec<u8>, (QgaError, i32)> {
    let fd = openat_raw(dir, name, libc::O_RDONLY)
        .map_err(|e| (QgaError::with_errno(format!("open sysfs file \"{name}\""), e), e))?;
    let mut buf = vec![0u8; size];
    match pread_raw(&fd, &mut buf) {
        Err(e) => Err((QgaError::with_errno(format!("pread sysfs file \"{name}\""), e), e)),
        Ok(0) => Err((QgaError::generic(format!("pread sysfs file \"{name}\": unexpected EOF")), 0)),
        Ok(n) => {
            buf.truncate(n);
            Ok(buf)
        }
    }
}

fn write_sysfs(dir: &OwnedFd, name: &str, data: &[u8]) -> Result<(), i32> {
    let fd = openat_raw(dir, name, libc::O_WRONLY)?;
    pwrite_raw(&fd, data)
}

fn mem_dir(phys: u64) -> String {
    format!("{MEM_DIR}memory{}/", phys as i64)
}

/// `transfer_memory_block()`, system to block: (online, can_offline).
fn read_memory_block(phys: u64) -> Result<(bool, bool), QgaError> {
    let dir = mem_dir(phys);
    let dfd = open_raw(&dir, libc::O_RDONLY | libc::O_DIRECTORY)
        .map_err(|e| QgaError::with_errno(format!("open(\"{dir}\")"), e))?;
    let status = match read_sysfs(&dfd, "state", 10) {
        Ok(s) => s,
        Err((_, libc::ENOENT)) => return Ok((true, false)),
        Err((e, _)) => return Err(e),
    };
    let online = status.starts_with(b"online");
    let can_offline = match read_sysfs(&dfd, "removable", 1) {
        Ok(r) => r[0] != b'0',
        Err((_, libc::ENOENT)) => false,
        Err((e, _)) => return Err(e),
    };
    Ok((online, can_offline))
}

pub fn get_memory_blocks(_: &mut Agent, a: Args) -> R {
    a.finish()?;
    let entries = match read_dir_raw(MEM_DIR) {
        Ok(e) => e,
        Err(libc::ENOENT) => return ok(Value::List(Vec::new())),
        Err(e) => return Err(QgaError::with_errno(format!("Can't open directory\"{MEM_DIR}\""), e)),
    };
    let mut list = Vec::new();
    for (name, is_dir, _) in entries {
        if !name.starts_with("memory") || !is_dir {
            continue;
        }
        let digits: String = name[6..].chars().take_while(|c| c.is_ascii_digit()).collect();
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
fn write_memory_block(phys: u64, online: bool) -> (&'static str, Option<i32>) {
    const OK: &str = "success";
    if let Err(e) = std::fs::read_dir(MEM_DIR) {
        let errno = e.raw_os_error().unwrap_or(libc::EIO);
        let resp = if errno == libc::ENOENT { "operation-not-supported" } else { OK };
        return (resp, Some(errno));
    }
    let dfd = match open_raw(&mem_dir(phys), libc::O_RDONLY | libc::O_DIRECTORY) {
        Ok(d) => d,
        Err(libc::ENOENT) => return ("not-found", Some(libc::ENOENT)),
        Err(e) => return ("operation-failed", Some(e)),
    };
    let status = match read_sysfs(&dfd, "state", 10) {
        Ok(s) => s,
        Err((_, libc::ENOENT)) => {
            return (if online { OK } else { "operation-not-supported" }, Some(libc::ENOENT));
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

pub fn set_memory_blocks(_: &mut Agent, mut a: Args) -> R {
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
                o.push("error-code", Value::Int(c as i64));
            }
            Value::Object(o)
        })
        .collect();
    ok(Value::List(list))
}

pub fn get_memory_block_info(_: &mut Agent, a: Args) -> R {
    a.finish()?;
    let dfd = open_raw(MEM_DIR, libc::O_RDONLY | libc::O_DIRECTORY)
        .map_err(|e| QgaError::with_errno(format!("open(\"{MEM_DIR}\")"), e))?;
    let buf = read_sysfs(&dfd, "block_size_bytes", 20).map_err(|(e, _)| e)?;
    let text = String::from_utf8_lossy(&buf);
    let s = sscanf(&text, "%lx");
    let size = s.ints().first().copied().unwrap_or(0);
    ok(obj(vec![("size", Value::UInt(size as u64))]))
}

// ---------------------------------------------------------------- /proc statistics

pub fn get_cpustats(_: &mut Agent, a: Args) -> R {
    a.finish()?;
    let path = "/proc/stat";
    let text = std::fs::read(path)
        .map_err(|e| QgaError::with_errno(format!("open(\"{path}\")"), e.raw_os_error().unwrap_or(libc::EIO)))?;
    let text = String::from_utf8_lossy(&text);
    // SAFETY: sysconf is a plain query.
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
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

pub fn get_diskstats(_: &mut Agent, a: Args) -> R {
    a.finish()?;
    let path = "/proc/diskstats";
    let text = std::fs::read(path)
        .map_err(|e| QgaError::with_errno(format!("open(\"{path}\")"), e.raw_os_error().unwrap_or(libc::EIO)))?;
    let text = String::from_utf8_lossy(&text);
    let mut list = Vec::new();
    for line in text.split_inclusive('\n') {
        let s = sscanf(
            line,
            "%u %u %s %lu %lu %lu%lu %lu %lu %lu %u %u %u %u%lu %lu %lu %u %lu %u",
        );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_unquoting() {
        assert_eq!(replace_special(r#""Unit test \"\'\$\`\\ and \\\\ etc.""#), r#"Unit test "'$`\ and \\ etc."#);
        assert_eq!(replace_special("Test 1"), "Test");
        assert_eq!(replace_special("a;b c"), "a");
        assert_eq!(replace_special("'x y'"), "'x");
        assert_eq!(replace_special(r#""a\nb""#), r#"a\nb"#);
        assert_eq!(replace_special(r#""abc"#), "abcc");
        assert_eq!(replace_special(""), "");
        assert!(valid_key_name("NAME"));
        assert!(valid_key_name("NAME[de_DE]"));
        assert!(!valid_key_name(" NAME"));
        assert!(!valid_key_name("NA]ME"));
    }
}
