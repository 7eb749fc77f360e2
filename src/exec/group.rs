//! Process groups: reaping, and signalling a group only while it is
//! known to be ours (timeouts and guest-exec-terminate).

use std::time::Instant;

use super::*;
use crate::sys::process::{self, Pid, Usage, WaitStatus};

/// The processes in group `pgid` now: (pid, start time in clock ticks
/// since boot), from /proc. Start times tell a reused pid from the
/// process that had it before.
pub(super) fn group_members(pgid: Pid) -> Vec<(Pid, u64)> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut members = Vec::new();
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<Pid>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // Fields after "(comm)": state ppid pgrp ... starttime is field 22.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let pgrp = fields.get(2).and_then(|f| f.parse::<Pid>().ok());
        let start = fields.get(19).and_then(|f| f.parse::<u64>().ok());
        if let (Some(g), Some(t)) = (pgrp, start) {
            if g == pgid {
                members.push((pid, t));
            }
        }
    }
    members
}

impl ProcessTable {
    /// Reaps every exited child (ours or, as init, orphans) without
    /// blocking.
    pub fn reap(&mut self) {
        while let Ok(Some((pid, status, usage))) = process::reap_any() {
            self.on_reaped(pid, status, usage);
        }
    }

    /// Records a reaped child. Returns false if the pid is not ours.
    pub(super) fn on_reaped(&mut self, pid: Pid, status: WaitStatus, usage: Usage) -> bool {
        let Some(&slot) = self.by_pid.get(&pid) else { return false };
        if let Some(Some(p)) = self.slots.get_mut(slot) {
            if p.status.is_none() {
                // Deadlines stay armed until the result is complete: a
                // grandchild may still hold the pipe after the leader died.
                p.status = Some(status);
                p.usage = usage;
                // The group outlives its leader only while members are left
                // (grandchildren holding the output pipes, typically). Note
                // who they are: later signals go only to a group where one
                // of them still lives. An empty group costs one kill(0).
                if !p.exited() && process::kill_group(pid, 0).is_ok() {
                    p.group_at_reap = group_members(pid);
                }
                self.progress += 1;
            }
        }
        self.check_finished(slot);
        true
    }

    /// Sends `sig` to the process group of `p` if it is still known to be
    /// ours; returns whether it was sent.
    pub(super) fn signal_group(p: &Process, sig: libc::c_int) -> bool {
        // Once the leader is reaped, the group number can be given to
        // somebody else as soon as every member of ours ended: only a
        // member seen at the reap (same pid, same start time) proves the
        // group is still ours.
        let ours = p.status.is_none()
            || (!p.group_at_reap.is_empty() && group_members(p.pid).iter().any(|m| p.group_at_reap.contains(m)));
        // ESRCH (the group is gone meanwhile) is not an error.
        ours && process::kill_group(p.pid, sig).is_ok()
    }

    /// guest-exec-terminate: `sig` to the process group of `pid`. A group
    /// that is gone is not an error (the status reports the exit).
    pub fn terminate(&mut self, pid: i64, sig: libc::c_int) -> Result<(), QgaError> {
        let slot = self.visible_slot(pid)?;
        if let Some(Some(p)) = self.slots.get(slot) {
            Self::signal_group(p, sig);
        }
        Ok(())
    }

    /// `timeout` extension: SIGTERM to the group at the deadline, SIGKILL
    /// after [`KILL_GRACE`].
    pub fn enforce_deadlines(&mut self, now: Instant) {
        for p in self.slots.iter_mut().flatten() {
            if p.deadline.is_some_and(|d| d <= now) {
                p.deadline = None;
                p.timed_out = true;
                p.kill_at = now.checked_add(KILL_GRACE);
                Self::signal_group(p, libc::SIGTERM);
            }
            if p.kill_at.is_some_and(|k| k <= now) {
                p.kill_at = None;
                Self::signal_group(p, libc::SIGKILL);
            }
        }
    }

    /// The earliest timeout or kill deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.iter().flat_map(|p| [p.deadline, p.kill_at]).flatten().min()
    }
}
