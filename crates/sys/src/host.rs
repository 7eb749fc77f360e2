//! The machine: host name, uname, load average, sysconf values and the
//! utmp login records.

use super::{cvt, Errno};

/// A C string from a fixed-size char array (may lack the terminator).
fn c_chars(chars: &[libc::c_char]) -> String {
    let bytes: Vec<u8> = chars.iter().map(|&c| c as u8).take_while(|&b| b != 0).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// `gethostname(2)` into a buffer of HOST_NAME_MAX + 1 bytes.
pub fn hostname() -> Result<String, Errno> {
    // SAFETY: sysconf is a plain query.
    let max = unsafe { libc::sysconf(libc::_SC_HOST_NAME_MAX) };
    let len = if max < 0 { 64 } else { max as usize } + 1;
    let mut buf = vec![0u8; len];
    // SAFETY: gethostname writes at most len bytes into buf.
    cvt(unsafe { libc::gethostname(buf.as_mut_ptr().cast(), len) })?;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(len);
    Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
}

/// The `uname(2)` fields qemu-ga reports.
#[derive(Debug, Clone)]
pub struct Uname {
    pub sysname: String,
    pub release: String,
    pub version: String,
    pub machine: String,
}

pub fn uname() -> Result<Uname, Errno> {
    // SAFETY: an all-zero `struct utsname` is a valid value.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uname fills our struct.
    cvt(unsafe { libc::uname(&mut u) })?;
    Ok(Uname {
        sysname: c_chars(&u.sysname),
        release: c_chars(&u.release),
        version: c_chars(&u.version),
        machine: c_chars(&u.machine),
    })
}

/// `getloadavg(3)`: the 1, 5 and 15 minute averages.
pub fn loadavg() -> Result<[f64; 3], Errno> {
    let mut l = [0f64; 3];
    // SAFETY: getloadavg writes at most 3 doubles into our array.
    if unsafe { libc::getloadavg(l.as_mut_ptr(), 3) } < 0 {
        return Err(Errno::last());
    }
    Ok(l)
}

/// `sysconf(_SC_CLK_TCK)`, at least 1.
pub fn clock_ticks() -> u64 {
    // SAFETY: sysconf is a plain query.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1).unsigned_abs()
}

/// `sysconf(_SC_NPROCESSORS_ONLN)`: the CPUs online (not this thread's
/// affinity), at least 1.
pub fn cpus_online() -> usize {
    // SAFETY: sysconf is a plain query.
    unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1).unsigned_abs() as usize
}

/// One USER_PROCESS record of the utmp database.
#[derive(Debug, Clone)]
pub struct Login {
    /// ut_user, ending at the field's end when it has no terminator.
    pub user: String,
    pub sec: i64,
    pub usec: i64,
}

/// The USER_PROCESS records of utmp (setutxent/getutxent/endutxent).
/// musl's utmpx functions are deprecated stubs (musl writes no utmp): a
/// musl build reports no users.
#[cfg_attr(target_env = "musl", allow(deprecated))]
pub fn logins() -> Vec<Login> {
    let mut out = Vec::new();
    // SAFETY: rewinds libc's utmp iteration state (single-threaded use).
    unsafe { libc::setutxent() };
    loop {
        // SAFETY: getutxent returns NULL or a record valid until the next call.
        let e = unsafe { libc::getutxent() };
        if e.is_null() {
            break;
        }
        // SAFETY: e is non-null and is copied from before the next call.
        let e = unsafe { &*e };
        if e.ut_type != libc::USER_PROCESS {
            continue;
        }
        out.push(Login { user: c_chars(&e.ut_user), sec: e.ut_tv.tv_sec as i64, usec: e.ut_tv.tv_usec as i64 });
    }
    // SAFETY: closes the utmp database opened by the iteration.
    unsafe { libc::endutxent() };
    out
}
