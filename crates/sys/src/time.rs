//! Clocks and calendar time: setting the system time, local broken-down
//! time (log timestamps, guest-set-time's year check) and the local zone.

use std::ffi::CStr;

use super::{cvt, Errno};

/// The broken-down local time fields qga uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LocalTime {
    /// Calendar year (tm_year + 1900).
    pub year: i64,
    pub hour: i32,
    pub min: i32,
    pub sec: i32,
    /// Seconds east of UTC (tm_gmtoff).
    pub gmtoff: i64,
}

fn localtime(secs: i64) -> Option<libc::tm> {
    // `as _`: naming libc::time_t warns on musl (a deprecated alias there).
    let secs = secs as _;
    // SAFETY: an all-zero `struct tm` is a valid value.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: localtime_r reads our time_t and fills our struct.
    if unsafe { libc::localtime_r(&secs, &mut tm) }.is_null() {
        return None;
    }
    Some(tm)
}

// tm_gmtoff is a C long: i32 on 32-bit targets.
#[allow(clippy::useless_conversion)]
/// `localtime_r(3)` of `secs` since the epoch; None when it fails (for
/// instance a year that does not fit).
pub fn local_time(secs: i64) -> Option<LocalTime> {
    let tm = localtime(secs)?;
    Some(LocalTime {
        year: i64::from(tm.tm_year) + 1900,
        hour: tm.tm_hour,
        min: tm.tm_min,
        sec: tm.tm_sec,
        gmtoff: i64::from(tm.tm_gmtoff),
    })
}

extern "C" {
    fn tzset();
}

#[allow(clippy::useless_conversion)]
/// `tzset()`, then the current local offset from UTC and zone
/// abbreviation (None if the C library gives none). None if localtime_r
/// fails.
pub fn local_zone_now() -> Option<(i64, Option<String>)> {
    // SAFETY: tzset only re-reads TZ into libc's zone state.
    unsafe { tzset() };
    // SAFETY: time(NULL) only returns the time.
    let now = unsafe { libc::time(std::ptr::null_mut()) };
    let tm = localtime(now)?;
    let zone = if tm.tm_zone.is_null() {
        None
    } else {
        // SAFETY: tm_zone points to a NUL-terminated name in libc's static zone data.
        Some(unsafe { CStr::from_ptr(tm.tm_zone) }.to_string_lossy().into_owned())
    };
    Some((i64::from(tm.tm_gmtoff), zone))
}

/// `settimeofday(2)` with no time zone.
pub fn set_time_of_day(secs: i64, usecs: i64) -> Result<(), Errno> {
    // `as _`: time_t and suseconds_t are deprecated aliases on musl.
    let tv = libc::timeval { tv_sec: secs as _, tv_usec: usecs as _ };
    // SAFETY: settimeofday reads our timeval; the zone pointer is NULL.
    cvt(unsafe { libc::settimeofday(&tv, std::ptr::null()) })?;
    Ok(())
}
