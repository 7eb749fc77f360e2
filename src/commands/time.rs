//! guest-get-time, guest-set-time and guest-get-timezone
//! (`qga/commands.c`, `qga/commands-posix.c`).

use super::helper;
use super::reply::{obj, ok, R};
use super::Ctx;
use crate::json::{Object, Value};
use crate::protocol::{Args, QgaError};
use crate::sys::time;

pub fn get_time(_: &mut Ctx<'_>, a: Args) -> R {
    a.finish()?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    // g_get_real_time() * 1000: microsecond resolution.
    ok(Value::Int(now.as_micros() as i64 * 1000))
}

const HWCLOCK: &str = "/sbin/hwclock";

/// Local calendar year of `secs`, as `g_date_set_time_t()` sees it.
fn local_year(secs: i64) -> Option<i64> {
    time::local_time(secs).map(|t| t.year)
}

/// guest-set-time. With `time`: checks, settimeofday(), then `hwclock -w`
/// (skipped when /sbin/hwclock does not exist: the system time is set and
/// there is no RTC tool to sync, as on minimal guests). Without `time`:
/// `hwclock -s` (qemu-ga's error if it is missing: nothing can be done).
pub fn set_time(ctx: &mut Ctx<'_>, mut a: Args) -> R {
    let time = a.opt_int("time")?;
    a.finish()?;
    if let Some(ns) = time {
        let secs = ns / 1_000_000_000;
        let usecs = (ns % 1_000_000_000) / 1000;
        if !local_year(secs).is_some_and(|y| (1970..2070).contains(&y)) {
            return Err(QgaError::generic("Invalid time"));
        }
        time::set_time_of_day(secs, usecs).map_err(|e| QgaError::with_errno("Failed to set time to guest", e))?;
        if !std::path::Path::new(HWCLOCK).exists() {
            return ok(Value::empty_object());
        }
    }
    let flag = if time.is_some() { "-w" } else { "-s" };
    helper::run(ctx, &[HWCLOCK, flag], None, "set hardware clock to system time", |_| ok(Value::empty_object()))
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

pub fn get_timezone(_: &mut Ctx<'_>, a: Args) -> R {
    a.finish()?;
    if std::env::var("TZ").is_ok_and(|tz| !tz_usable(&tz)) {
        return ok(obj(vec![("zone", Value::str("UTC")), ("offset", Value::Int(0))]));
    }
    let (offset, zone) = time::local_zone_now().ok_or_else(|| QgaError::generic("Couldn't retrieve local timezone"))?;
    let mut o = Object::with_capacity(2);
    if let Some(z) = zone.filter(|z| !z.is_empty()) {
        o.push("zone", Value::Str(z));
    }
    o.push("offset", Value::Int(offset));
    ok(Value::Object(o))
}
