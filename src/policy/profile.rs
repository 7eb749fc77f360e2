//! `[profile NAME]`: what a confinement profile asks for, as written by
//! the guest owner (values checked, nothing applied). The agent compiles
//! a profile into `sys::confine` objects once, at start-up
//! (`exec::confine`), and applies it in each child it starts with it.

/// Landlock enforcement asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LandlockWant {
    /// The exec is refused where the kernel cannot enforce the ruleset.
    Required,
    /// Enforced as far as the kernel can; the status says how far.
    BestEffort,
}

/// cgroup v2 limits of the leaf each exec of the profile runs in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupSpec {
    pub memory_max: Option<u64>,
    pub pids_max: Option<u64>,
    /// (quota, period) in microseconds, as cpu.max.
    pub cpu_max: Option<(u64, u64)>,
}

/// One profile.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProfileSpec {
    pub name: String,
    pub no_new_privs: bool,
    /// (resource name as in `rlimit-NAME`, soft, hard); u64::MAX: unlimited.
    pub rlimits: Vec<(String, u64, u64)>,
    pub landlock: Option<LandlockWant>,
    pub landlock_read: Vec<String>,
    pub landlock_write: Vec<String>,
    /// Syscall names refused with EPERM (`seccomp=deny-dangerous` adds the
    /// dangerous families, `seccomp-deny` more); empty: no filter.
    pub seccomp_deny: Vec<String>,
    /// `seccomp=deny-dangerous` was given.
    pub seccomp_dangerous: bool,
    /// A cgroup leaf per exec (any cgroup key, or `cgroup=true`).
    pub cgroup: Option<CgroupSpec>,
}

/// The resources a profile may limit (`rlimit-NAME`).
pub const RLIMITS: &[&str] = &["cpu", "as", "nofile", "nproc", "fsize", "core"];

/// A count or byte size with an optional binary suffix (K, M, G, T), or
/// `unlimited`/`max`.
pub fn parse_amount(v: &str) -> Option<u64> {
    let v = v.trim();
    if v == "unlimited" || v == "max" || v == "infinity" {
        return Some(u64::MAX);
    }
    let (digits, shift) = match v.as_bytes().last()? {
        b'K' | b'k' => (&v[..v.len() - 1], 10),
        b'M' | b'm' => (&v[..v.len() - 1], 20),
        b'G' | b'g' => (&v[..v.len() - 1], 30),
        b'T' | b't' => (&v[..v.len() - 1], 40),
        _ => (v, 0),
    };
    digits.parse::<u64>().ok()?.checked_mul(1u64 << shift)
}

/// An rlimit value: `N` (soft = hard) or `SOFT:HARD`.
pub fn parse_rlimit(v: &str) -> Option<(u64, u64)> {
    match v.split_once(':') {
        Some((s, h)) => {
            let (s, h) = (parse_amount(s)?, parse_amount(h)?);
            (s <= h).then_some((s, h))
        }
        None => parse_amount(v).map(|n| (n, n)),
    }
}

/// cpu.max: `N%` of one CPU (period 100 ms), or `QUOTA PERIOD` in
/// microseconds, as the kernel file takes it.
pub fn parse_cpu_max(v: &str) -> Option<(u64, u64)> {
    const PERIOD: u64 = 100_000;
    let v = v.trim();
    if let Some(pct) = v.strip_suffix('%') {
        let pct: u64 = pct.trim().parse().ok().filter(|&p| p > 0)?;
        return Some((pct.checked_mul(PERIOD / 100)?, PERIOD));
    }
    let mut it = v.split_whitespace();
    let quota = it.next()?.parse::<u64>().ok().filter(|&q| q >= 1000)?;
    let period = match it.next() {
        Some(p) => p.parse::<u64>().ok().filter(|p| (1000..=1_000_000).contains(p))?,
        None => PERIOD,
    };
    it.next().is_none().then_some((quota, period))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts() {
        assert_eq!(parse_amount("64"), Some(64));
        assert_eq!(parse_amount("1G"), Some(1 << 30));
        assert_eq!(parse_amount("256M"), Some(256 << 20));
        assert_eq!(parse_amount("unlimited"), Some(u64::MAX));
        assert_eq!(parse_amount("x"), None);
        assert_eq!(parse_amount(""), None);
        assert_eq!(parse_amount("99999999999999T"), None);
        assert_eq!(parse_rlimit("10:20"), Some((10, 20)));
        assert_eq!(parse_rlimit("20:10"), None);
        assert_eq!(parse_rlimit("5"), Some((5, 5)));
        assert_eq!(parse_cpu_max("50%"), Some((50_000, 100_000)));
        assert_eq!(parse_cpu_max("20000 50000"), Some((20_000, 50_000)));
        assert_eq!(parse_cpu_max("0%"), None);
        assert_eq!(parse_cpu_max("10"), None);
    }
}
