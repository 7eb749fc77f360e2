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

/// glibc's utmp records on this architecture (`struct utmp`, bits/utmp.h):
/// (record size, offset of `ut_tv`, width of its two fields). 64-bit
/// ports with `__WORDSIZE_TIME64_COMPAT32` (x86_64, riscv64) keep 32-bit
/// times and 384-byte records; aarch64 has a `long` session and a
/// `struct timeval`: 400 bytes.
#[cfg(target_arch = "aarch64")]
const UTMP_LAYOUT: (usize, usize, usize) = (400, 344, 8);
#[cfg(not(target_arch = "aarch64"))]
const UTMP_LAYOUT: (usize, usize, usize) = (384, 340, 4);
/// `ut_type` of a logged-in user.
const USER_PROCESS: i16 = 7;
/// Where glibc keeps the database (`_PATH_UTMP`, what qemu-ga reads).
const UTMP_PATH: &str = "/var/run/utmp";

/// The USER_PROCESS records of utmp, read from the file itself as
/// getutxent(3) would (qemu-ga's `qmp_guest_get_users()`): a static musl
/// build has no working utmpx functions (musl's are stubs), and the
/// guests it replaces qemu-ga in keep the file in glibc's format. No file
/// (trixie keeps none): no users, as qemu-ga.
pub fn logins() -> Vec<Login> {
    std::fs::read(UTMP_PATH).map(|d| parse_utmp(&d, UTMP_LAYOUT)).unwrap_or_default()
}

/// The USER_PROCESS records of a utmp file with records of `layout`
/// (see [`UTMP_LAYOUT`]); a partial last record is ignored.
pub fn parse_utmp(data: &[u8], layout: (usize, usize, usize)) -> Vec<Login> {
    let (size, tv, width) = layout;
    let int = |b: &[u8]| -> i64 {
        match b.len() {
            8 => i64::from_ne_bytes(b.try_into().unwrap_or_default()),
            _ => i64::from(i32::from_ne_bytes(b.try_into().unwrap_or_default())),
        }
    };
    data.chunks_exact(size)
        .filter(|r| i16::from_ne_bytes([r[0], r[1]]) == USER_PROCESS)
        .map(|r| {
            // ut_user: 32 bytes at 44, NUL-terminated unless full.
            let user = &r[44..76];
            let user = &user[..user.iter().position(|&b| b == 0).unwrap_or(user.len())];
            Login {
                user: String::from_utf8_lossy(user).into_owned(),
                sec: int(&r[tv..tv + width]),
                usec: int(&r[tv + width..tv + 2 * width]),
            }
        })
        .collect()
}

#[cfg(test)]
mod utmp_tests {
    use super::*;

    /// A record of `layout` with the given type, user and time.
    fn record(layout: (usize, usize, usize), kind: i16, user: &[u8], sec: i64, usec: i64) -> Vec<u8> {
        let (size, tv, width) = layout;
        let mut r = vec![0u8; size];
        r[..2].copy_from_slice(&kind.to_ne_bytes());
        r[44..44 + user.len()].copy_from_slice(user);
        let put = |r: &mut Vec<u8>, at: usize, v: i64| match width {
            8 => r[at..at + 8].copy_from_slice(&v.to_ne_bytes()),
            _ => r[at..at + 4].copy_from_slice(&(v as i32).to_ne_bytes()),
        };
        put(&mut r, tv, sec);
        put(&mut r, tv + width, usec);
        r
    }

    #[test]
    fn user_process_records_of_both_layouts() {
        for layout in [(384, 340, 4), (400, 344, 8)] {
            let mut data = record(layout, 2, b"reboot", 1, 0);
            data.extend(record(layout, USER_PROCESS, b"alice", 1_700_000_000, 123_456));
            data.extend(record(layout, 8, b"gone", 5, 0));
            data.extend(record(layout, USER_PROCESS, &[b'x'; 32], 7, 8));
            data.extend(&[1, 2, 3]);
            let got: Vec<_> = parse_utmp(&data, layout).into_iter().map(|l| (l.user, l.sec, l.usec)).collect();
            assert_eq!(got, vec![("alice".into(), 1_700_000_000, 123_456), ("x".repeat(32), 7, 8)], "{layout:?}");
        }
    }

    /// The layout against the libc crate's glibc `utmpx` of this target.
    #[cfg(target_env = "gnu")]
    #[test]
    fn the_layout_is_glibcs() {
        let (size, tv, _) = UTMP_LAYOUT;
        assert_eq!(std::mem::size_of::<libc::utmpx>(), size);
        assert_eq!(std::mem::offset_of!(libc::utmpx, ut_tv), tv);
        assert_eq!(std::mem::offset_of!(libc::utmpx, ut_user), 44);
    }
}
