//! A small `sscanf()` for the formats qemu-ga uses on /proc and sysfs text,
//! so that partial matches, widths and counts behave as in C.
//!
//! Supported directives: `%d %u %x %X %ld %lu %s %c %n`, `%*…` (assignment
//! suppression), a field width (`%32s`, `%02hhx`), whitespace (matches any
//! amount, including none) and literal characters.

/// One converted value.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// An integer conversion, as the raw (wrapping) 64-bit value strtol/
    /// strtoul produced; the caller narrows it to the C type.
    Int(i64),
    Str(String),
    Char(u8),
    /// `%n`: bytes consumed so far.
    Count(usize),
}

/// Result of a scan: the assigned items (including `%n` counts) and the
/// value sscanf() returns (number of assignments excluding `%n`, or -1
/// when the input ended before the first conversion).
#[derive(Debug, Default)]
pub struct Scan {
    pub items: Vec<Item>,
    pub ret: i32,
}

impl Scan {
    /// The integer items in order (ignoring strings, chars and counts).
    pub fn ints(&self) -> Vec<i64> {
        self.items.iter().filter_map(|i| if let Item::Int(v) = i { Some(*v) } else { None }).collect()
    }

    pub fn strs(&self) -> Vec<&str> {
        self.items.iter().filter_map(|i| if let Item::Str(s) = i { Some(s.as_str()) } else { None }).collect()
    }

    pub fn counts(&self) -> Vec<usize> {
        self.items.iter().filter_map(|i| if let Item::Count(c) = i { Some(*c) } else { None }).collect()
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// strtol/strtoul-style integer at `s[pos..]` (after whitespace was
/// skipped), limited to `width` characters. Returns (value, end).
fn scan_int(s: &[u8], pos: usize, width: usize, radix: u32) -> Option<(i64, usize)> {
    let end_limit = pos.saturating_add(width).min(s.len());
    let mut i = pos;
    let mut neg = false;
    if i < end_limit && (s[i] == b'+' || s[i] == b'-') {
        neg = s[i] == b'-';
        i += 1;
    }
    if radix == 16 && i + 1 < end_limit && s[i] == b'0' && (s[i + 1] == b'x' || s[i + 1] == b'X') {
        // "0x" prefix only counts if a hex digit follows.
        if i + 2 < end_limit && (s[i + 2] as char).is_ascii_hexdigit() {
            i += 2;
        }
    }
    let start = i;
    let mut v: u64 = 0;
    while i < end_limit {
        let Some(d) = (s[i] as char).to_digit(radix) else { break };
        v = v.wrapping_mul(radix as u64).wrapping_add(d as u64);
        i += 1;
    }
    if i == start {
        return None;
    }
    let v = if neg { (v as i64).wrapping_neg() } else { v as i64 };
    Some((v, i))
}

/// Scans `input` with `fmt` as C's sscanf() would.
pub fn sscanf(input: &str, fmt: &str) -> Scan {
    let s = input.as_bytes();
    let f = fmt.as_bytes();
    let (mut si, mut fi) = (0usize, 0usize);
    let mut out = Scan::default();
    let mut assigned = 0;
    let mut any_conversion_attempted = false;
    let input_failure = |out: &mut Scan, assigned: i32, attempted: bool| {
        out.ret = if assigned == 0 && !attempted { -1 } else { assigned };
    };
    while fi < f.len() {
        let c = f[fi];
        if is_space(c) {
            while fi < f.len() && is_space(f[fi]) {
                fi += 1;
            }
            while si < s.len() && is_space(s[si]) {
                si += 1;
            }
            continue;
        }
        if c != b'%' {
            if si >= s.len() {
                input_failure(&mut out, assigned, any_conversion_attempted);
                return out;
            }
            if s[si] != c {
                out.ret = assigned;
                return out;
            }
            si += 1;
            fi += 1;
            continue;
        }
        fi += 1;
        let suppress = f.get(fi) == Some(&b'*');
        if suppress {
            fi += 1;
        }
        let mut width = 0usize;
        while fi < f.len() && f[fi].is_ascii_digit() {
            width = width * 10 + (f[fi] - b'0') as usize;
            fi += 1;
        }
        while fi < f.len() && matches!(f[fi], b'l' | b'h') {
            fi += 1;
        }
        let Some(&conv) = f.get(fi) else { break };
        fi += 1;
        let width = if width == 0 { usize::MAX } else { width };
        match conv {
            b'n' => {
                if !suppress {
                    out.items.push(Item::Count(si));
                }
                continue;
            }
            b'c' => {
                if si >= s.len() {
                    input_failure(&mut out, assigned, any_conversion_attempted);
                    return out;
                }
                any_conversion_attempted = true;
                if !suppress {
                    out.items.push(Item::Char(s[si]));
                    assigned += 1;
                }
                si += 1;
                continue;
            }
            _ => {}
        }
        while si < s.len() && is_space(s[si]) {
            si += 1;
        }
        if si >= s.len() {
            input_failure(&mut out, assigned, any_conversion_attempted);
            return out;
        }
        any_conversion_attempted = true;
        match conv {
            b's' => {
                let start = si;
                while si < s.len() && !is_space(s[si]) && si - start < width {
                    si += 1;
                }
                if !suppress {
                    out.items.push(Item::Str(String::from_utf8_lossy(&s[start..si]).into_owned()));
                    assigned += 1;
                }
            }
            b'd' | b'u' | b'x' | b'X' => {
                let radix = if conv == b'x' || conv == b'X' { 16 } else { 10 };
                let Some((v, end)) = scan_int(s, si, width, radix) else {
                    out.ret = assigned;
                    return out;
                };
                si = end;
                if !suppress {
                    out.items.push(Item::Int(v));
                    assigned += 1;
                }
            }
            _ => break,
        }
    }
    out.ret = assigned;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_c() {
        let r = sscanf("36 35 98:0 /mnt1 /mnt2 rw - ext3 /dev/root rw", "%*u %*u %u:%u %*s %n%*s%n%c");
        assert_eq!(r.ret, 3);
        assert_eq!(r.ints(), vec![98, 0]);
        assert_eq!(r.counts(), vec![17, 22]);
        let r = sscanf("cpu12 1 2", "cpu%ld");
        assert_eq!((r.ret, r.ints()), (1, vec![12]));
        assert_eq!(sscanf("cpufreq", "cpu%ld").ret, 0);
        assert_eq!(sscanf("", "%s %lu").ret, -1);
        let r =
            sscanf("eth0\t0002000A\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0", "%s %X %X %x %d %d %d %X %d %d %d");
        assert_eq!(r.ret, 11);
        assert_eq!(r.ints()[0], 0x0002000A);
        assert_eq!(sscanf("ab", "%02hhx").ints(), vec![0xab]);
        assert_eq!(sscanf("0000:00/0000:00:02.0/virtio", "%*x:%*x/%x:%x:%x.%x%n").ints(), vec![0, 0, 2, 0]);
    }
}
