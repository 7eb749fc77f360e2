//! Where records go: a bounded queue in memory, written from the loop in
//! bounded steps to a size-bounded, rotated file (O_APPEND, mode 0600)
//! or to the kernel log (/dev/kmsg, one write per record). Nothing is
//! written to a file while file systems are frozen: records wait in the
//! queue until the thaw. A write error is logged once and retried later;
//! the queue's bound drops records (counted in the next one written),
//! never stalls the agent.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use super::Record;
use crate::config::Config;
use crate::log;

/// Records held in memory, in bytes; beyond it records are dropped.
pub const MAX_QUEUED: usize = 1 << 20;
/// Bytes written per loop pass.
const FLUSH_BUDGET: usize = 256 << 10;
/// Wait after a failed write before the next try.
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// The longest write /dev/kmsg takes (the kernel's record limit is 1024
/// bytes less its prefix; 976 fits every kernel since 3.5).
const KMSG_MAX: usize = 976;
const KMSG_PREFIX: &[u8] = b"qga-audit: ";
const KMSG_CUT: &[u8] = b"...[truncated]\n";

#[derive(Debug)]
enum Dest {
    File { path: String, limit: u64, keep: usize },
    Kmsg,
}

/// The audit sink. Without `--audit-log` it holds nothing and every
/// call returns at once.
#[derive(Debug, Default)]
pub struct AuditLog {
    dest: Option<Dest>,
    argv: bool,
    seq: u64,
    queue: VecDeque<Vec<u8>>,
    queued: usize,
    /// Bytes of the queue's first record already written (a file only).
    offset: usize,
    dropped: u64,
    out: Option<File>,
    /// The open file's size.
    size: u64,
    retry_at: Option<Instant>,
    /// A write error was logged and no write succeeded since.
    failing: bool,
    /// guest-file handles opened for writing: handle, path and bytes
    /// written (at most `files::MAX_OPEN_HANDLES`).
    handles: Vec<(i64, String, u64)>,
}

impl AuditLog {
    pub fn new(cfg: &Config) -> AuditLog {
        let dest = cfg.audit_log.as_ref().map(|d| match d.as_str() {
            "kmsg" => Dest::Kmsg,
            path => Dest::File { path: path.to_string(), limit: cfg.audit_log_size(), keep: cfg.audit_log_keep() },
        });
        AuditLog { dest, argv: cfg.audit_argv, ..Default::default() }
    }

    /// Whether records are kept at all (`--audit-log`).
    pub fn enabled(&self) -> bool {
        // Without the `controls` feature this is false at compile time, and
        // the writing code is left out of the binary.
        cfg!(feature = "controls") && self.dest.is_some()
    }

    /// Whether records may include argv and env (`--audit-argv`).
    #[allow(dead_code)] // the exec records' argv and env
    pub fn with_argv(&self) -> bool {
        self.argv
    }

    /// Queues a record (dropped, and counted, when the queue is full).
    pub fn record(&mut self, rec: Record) {
        if !self.enabled() {
            return;
        }
        self.seq += 1;
        let line = rec.line(self.seq, self.dropped);
        if self.queued + line.len() > MAX_QUEUED {
            self.dropped += 1;
            return;
        }
        self.dropped = 0;
        self.queued += line.len();
        self.queue.push_back(line);
    }

    fn is_file(&self) -> bool {
        matches!(self.dest, Some(Dest::File { .. }))
    }

    /// Records are waiting and may be written now.
    pub fn ready(&self, frozen: bool) -> bool {
        let held = frozen && self.is_file();
        self.enabled() && !self.queue.is_empty() && !held && self.retry_at.is_none()
    }

    /// When a failed write is tried again.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.retry_at.filter(|_| !self.queue.is_empty())
    }

    /// One bounded step of writing (the loop calls it every pass).
    pub fn flush(&mut self, frozen: bool) {
        self.flush_up_to(frozen, FLUSH_BUDGET);
    }

    /// Writes everything that can be written now (before the agent exits
    /// or the machine ends).
    pub fn flush_all(&mut self, frozen: bool) {
        self.retry_at = None;
        self.flush_up_to(frozen, MAX_QUEUED);
    }

    fn flush_up_to(&mut self, frozen: bool, budget: usize) {
        if !self.enabled() || self.queue.is_empty() || (frozen && self.is_file()) {
            return;
        }
        if let Some(t) = self.retry_at {
            if Instant::now() < t {
                return;
            }
            self.retry_at = None;
        }
        let mut written = 0;
        while written < budget && !self.queue.is_empty() {
            match self.write_one() {
                Ok(n) => {
                    written += n;
                    self.failing = false;
                }
                Err(e) => {
                    if !self.failing {
                        log::warning(&format!(
                            "cannot write the audit log: {}; records are kept for a retry",
                            crate::sys::Errno::of(&e)
                        ));
                        self.failing = true;
                    }
                    self.out = None;
                    self.retry_at = Some(Instant::now() + RETRY_AFTER);
                    return;
                }
            }
        }
    }

    /// Writes (part of) the first queued record; returns the bytes taken.
    fn write_one(&mut self) -> std::io::Result<usize> {
        let Some(len) = self.queue.front().map(Vec::len) else { return Ok(0) };
        let file = match &self.dest {
            None => return Ok(0),
            Some(Dest::Kmsg) => None,
            Some(Dest::File { path, limit, keep }) => Some((path.clone(), *limit, *keep)),
        };
        match file {
            None => {
                if self.out.is_none() {
                    self.out = Some(OpenOptions::new().write(true).open("/dev/kmsg")?);
                }
                let (Some(f), Some(rec)) = (self.out.as_mut(), self.queue.front()) else { return Ok(0) };
                let mut line = KMSG_PREFIX.to_vec();
                if KMSG_PREFIX.len() + len > KMSG_MAX {
                    line.extend_from_slice(&rec[..KMSG_MAX - KMSG_PREFIX.len() - KMSG_CUT.len()]);
                    line.extend_from_slice(KMSG_CUT);
                } else {
                    line.extend_from_slice(rec);
                }
                // One write, one kernel record (taken whole or refused).
                f.write_all(&line)?;
                self.offset = len;
            }
            Some((path, limit, keep)) => {
                if self.out.is_none() {
                    self.open(&path)?;
                }
                // Rotate before a record would take the file past its
                // limit (a record larger than the limit gets a file of
                // its own).
                if self.offset == 0 && self.size > 0 && self.size + len as u64 > limit {
                    rotate(&path, keep);
                    self.open(&path)?;
                }
                let (Some(f), Some(rec)) = (self.out.as_mut(), self.queue.front()) else { return Ok(0) };
                let n = f.write(&rec[self.offset..])?;
                if n == 0 {
                    return Err(std::io::ErrorKind::WriteZero.into());
                }
                self.size += n as u64;
                self.offset += n;
                if self.offset < len {
                    return Ok(n);
                }
            }
        }
        self.queue.pop_front();
        self.queued -= len;
        self.offset = 0;
        Ok(len)
    }

    fn open(&mut self, path: &str) -> std::io::Result<()> {
        self.out = None;
        let f = OpenOptions::new().append(true).create(true).mode(0o600).open(path)?;
        self.size = f.metadata()?.len();
        self.out = Some(f);
        Ok(())
    }

    /// A guest-file handle opened for writing (audited when closed).
    pub fn file_opened(&mut self, handle: i64, path: &str) {
        if self.enabled() {
            self.handles.push((handle, path.to_string(), 0));
        }
    }

    /// Bytes written through a handle.
    pub fn file_written(&mut self, handle: i64, bytes: u64) {
        if let Some(h) = self.handles.iter_mut().find(|h| h.0 == handle) {
            h.2 += bytes;
        }
    }

    /// A handle's path and bytes written, when it was opened for writing.
    pub fn file_info(&self, handle: i64) -> Option<(&str, u64)> {
        self.handles.iter().find(|h| h.0 == handle).map(|h| (h.1.as_str(), h.2))
    }

    /// The handle is closed: forgotten.
    pub fn file_closed(&mut self, handle: i64) {
        self.handles.retain(|h| h.0 != handle);
    }
}

/// DEST.(N-1) → DEST.N … DEST → DEST.1 (with N = 0: DEST is removed).
/// Failures (a missing file) change nothing: writing goes on.
fn rotate(path: &str, keep: usize) {
    if keep == 0 {
        let _ = std::fs::remove_file(path);
        return;
    }
    for i in (1..keep).rev() {
        let _ = std::fs::rename(format!("{path}.{i}"), format!("{path}.{}", i + 1));
    }
    let _ = std::fs::rename(path, format!("{path}.1"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::ClientInfo;

    fn log_in(dir: &std::path::Path, size: u64, keep: usize) -> (AuditLog, String) {
        let path = dir.join("audit.log").to_string_lossy().into_owned();
        let cfg = Config {
            audit_log: Some(path.clone()),
            audit_log_size: Some(size),
            audit_log_keep: Some(keep),
            ..Default::default()
        };
        (AuditLog::new(&cfg), path)
    }

    fn tmp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("qga-audit-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn rec(i: i64) -> Record {
        Record::new("command", "guest-ping", &ClientInfo::default()).int("i", i)
    }

    #[test]
    fn disabled_keeps_nothing() {
        let mut a = AuditLog::new(&Config::default());
        a.record(rec(1));
        a.file_opened(1000, "/x");
        assert!(!a.enabled() && a.queue.is_empty() && a.handles.is_empty() && !a.ready(false));
    }

    #[test]
    fn held_while_frozen_then_written() {
        let d = tmp("frozen");
        let (mut a, path) = log_in(&d, 1 << 20, 3);
        a.record(rec(1));
        a.flush(true);
        // Not even created while frozen.
        assert!(!std::path::Path::new(&path).exists());
        assert!(!a.ready(true) && a.ready(false));
        a.record(rec(2));
        a.flush(false);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.contains("\"seq\":1,") && text.contains("\"seq\":2,"));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn bounded_queue_counts_drops() {
        let d = tmp("drops");
        let (mut a, path) = log_in(&d, 1 << 30, 3);
        let mut n = 0;
        while a.queued + 200 < MAX_QUEUED {
            a.record(rec(n));
            n += 1;
        }
        for _ in 0..50 {
            a.record(Record::new("command", "x", &ClientInfo::default()).str("pad", &"p".repeat(300)));
        }
        assert!(a.dropped > 0 && a.queued <= MAX_QUEUED);
        a.flush_all(false);
        a.record(rec(-1));
        a.flush_all(false);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.lines().last().unwrap().contains("\"dropped\":"));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn rotation_keeps_n_files() {
        let d = tmp("rotate");
        let (mut a, path) = log_in(&d, 1000, 2);
        for i in 0..100 {
            a.record(rec(i));
            a.flush(false);
        }
        let sizes: Vec<u64> = ["", ".1", ".2"]
            .iter()
            .map(|s| std::fs::metadata(format!("{path}{s}")).map(|m| m.len()).unwrap_or(0))
            .collect();
        assert!(sizes.iter().all(|&s| s > 0 && s <= 1000), "{sizes:?}");
        assert!(!std::path::Path::new(&format!("{path}.3")).exists());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn write_error_keeps_records() {
        let d = tmp("error");
        let path = d.join("no-such-dir/audit.log").to_string_lossy().into_owned();
        let cfg = Config { audit_log: Some(path.clone()), ..Default::default() };
        let mut a = AuditLog::new(&cfg);
        a.record(rec(1));
        a.flush(false);
        assert!(a.failing && a.queue.len() == 1 && a.next_deadline().is_some() && !a.ready(false));
        std::fs::create_dir(d.join("no-such-dir")).unwrap();
        a.flush_all(false);
        assert!(std::fs::read_to_string(&path).unwrap().contains("\"seq\":1,"));
        let _ = std::fs::remove_dir_all(&d);
    }
}
