//! The local mount list shared by guest-get-fsinfo, guest-fstrim and the
//! freeze commands (`build_fs_mount_list()` in `qga/commands-linux.c`).

use super::files::c_string;
use super::scan::sscanf;
use crate::log;
use crate::protocol::QgaError;
use crate::sys::fs::{self, Kind};

/// One local file system (`FsMount`).
#[derive(Debug, Clone)]
pub struct FsMount {
    pub dirname: String,
    pub devtype: String,
    pub major: u32,
    pub minor: u32,
}

/// `dev_major_minor()`: Ok(Some) for a block device, Ok(None) for a
/// directory (bind mount source), Err for anything else.
fn dev_major_minor(path: &str) -> Result<Option<(u32, u32)>, ()> {
    match fs::kind(&c_string(path)) {
        Err(e) => {
            log::info(&format!("failed to stat device file '{path}': {e}"));
            Err(())
        }
        Ok(Kind::Dir) => Ok(None),
        Ok(Kind::Block { major, minor }) => Ok(Some((major, minor))),
        Ok(Kind::Other) => Err(()),
    }
}

/// `decode_mntname()`: `\\` and three-digit octal escapes.
fn decode_mntname(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
        } else if b.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 1;
        } else if i + 3 < b.len()
            && (b'0'..=b'3').contains(&b[i + 1])
            && (b'0'..=b'7').contains(&b[i + 2])
            && (b'0'..=b'7').contains(&b[i + 3])
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 3;
        } else {
            out.push(b[i]);
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn push_unique(mounts: &mut Vec<FsMount>, m: FsMount) {
    // Bind mounts of a device already listed are skipped.
    if !mounts.iter().any(|x| x.major == m.major && x.minor == m.minor) {
        mounts.push(m);
    }
}

/// `build_fs_mount_list()`: local file systems from /proc/self/mountinfo
/// (or /proc/self/mounts), in mount order.
pub fn fs_mount_list() -> Result<Vec<FsMount>, QgaError> {
    let mut mounts = Vec::new();
    let Ok(text) = std::fs::read("/proc/self/mountinfo") else {
        return mounts_from_mtab();
    };
    let text = String::from_utf8_lossy(&text);
    for line in text.split_inclusive('\n') {
        let s = sscanf(line, "%*u %*u %u:%u %*s %n%*s%n%c");
        if s.ret < 3 {
            continue;
        }
        let (mut major, mut minor) = (s.ints()[0] as u32, s.ints()[1] as u32);
        let c = s.counts();
        let (dir_s, dir_e) = (c[0], c[1]);
        let Some(dash_rel) = line[dir_e..].find(" - ") else { continue };
        let dash = &line[dir_e + dash_rel..];
        let t = sscanf(dash, " - %n%*s%n %n%*s%n%c");
        if t.ret < 1 {
            continue;
        }
        let tc = t.counts();
        let devtype = dash[tc[0]..tc[1]].to_string();
        let dirname = decode_mntname(&line[dir_s..dir_e]);
        let dev = decode_mntname(&dash[tc[2]..tc[3]]);
        if major == 0 {
            // btrfs reports major number 0.
            match (devtype == "btrfs").then(|| dev_major_minor(&dev)) {
                Some(Ok(Some((ma, mi)))) => (major, minor) = (ma, mi),
                _ => continue,
            }
        }
        push_unique(&mut mounts, FsMount { dirname, devtype, major, minor });
    }
    Ok(mounts)
}

fn mounts_from_mtab() -> Result<Vec<FsMount>, QgaError> {
    let mtab = "/proc/self/mounts";
    let text = std::fs::read(mtab).map_err(|_| QgaError::generic(format!("failed to open mtab file: '{mtab}'")))?;
    let text = String::from_utf8_lossy(&text);
    let mut mounts = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 3 {
            continue;
        }
        let (fsname, dir, ty) = (decode_mntname(f[0]), decode_mntname(f[1]), f[2]);
        if !fsname.starts_with('/') || ty == "smbfs" || ty == "cifs" {
            continue;
        }
        let (major, minor) = match dev_major_minor(&fsname) {
            Ok(None) => continue,
            Ok(Some(mm)) => mm,
            Err(()) => (0, 0),
        };
        push_unique(&mut mounts, FsMount { dirname: dir, devtype: ty.to_string(), major, minor });
    }
    Ok(mounts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mntname_escapes() {
        assert_eq!(decode_mntname(r"/mnt/a\040b\\c"), r"/mnt/a b\c");
    }
}
