//! Process groups: reaping, and signalling a group only while it is
//! known to be ours (timeouts and guest-exec-terminate).
//!
//! A reap costs one `kill(-pgid, 0)`, and only when the result is not
//! complete yet (a member still holds an output pipe): no /proc walk. The
//! walk happens when a signal is to be sent to a group whose leader is
//! already reaped, at most once per loop pass (every such signal of the
//! pass shares it): linear in the processes of the guest, on the
//! terminate/timeout path only.

use std::time::{Duration, Instant};

use super::*;
use crate::sys::libc;
use crate::sys::process::{self, Pid, Usage, WaitStatus};

/// The processes of the guest from one /proc walk: (pgid, pid, start
/// time in clock ticks since boot).
#[derive(Debug, Default)]
pub(super) struct MemberCache {
    /// The loop pass the walk belongs to.
    pass: Option<u64>,
    members: Vec<(Pid, Pid, u64)>,
}

impl MemberCache {
    /// Whether group `pgid`, whose leader (pid `pgid`) was reaped at
    /// `ticks`, is still the one it led: a member born by then lives, and
    /// no process has the leader's pid (only the process with pid `pgid`
    /// can make a new group of that number; start times are counted in
    /// ticks of 10 ms, so the pid tells a stranger born in the tick of the
    /// reap). Walks /proc unless this pass already did.
    fn is_still_ours(&mut self, pass: u64, pgid: Pid, ticks: u64) -> bool {
        if self.pass != Some(pass) {
            self.members = walk_proc();
            self.pass = Some(pass);
        }
        let group = || self.members.iter().filter(|&&(g, _, _)| g == pgid);
        !group().any(|&(_, pid, _)| pid == pgid) && group().any(|&(_, _, start)| start <= ticks)
    }
}

/// Every process of the guest now: (pgid, pid, start time), from /proc.
fn walk_proc() -> Vec<(Pid, Pid, u64)> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    let pids = dir.flatten().filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<Pid>().ok()));
    pids.filter_map(|pid| process::ProcStat::read(pid).map(|s| (s.pgrp, pid, s.start))).collect()
}

/// How long a deadline waits for a leader that is already exiting.
const EXITING_RECHECK: Duration = Duration::from_millis(20);

impl ProcessTable {
    /// Reaps every exited child (ours or, as init, orphans) without
    /// blocking.
    pub fn reap(&mut self) {
        while let Ok(Some((pid, status, usage))) = process::reap_any() {
            self.on_reaped(pid, status, usage);
        }
        // A daemon left in a collected result's cgroup may have ended.
        if cfg!(feature = "controls") {
            self.lingering.retain(|cg| cg.populated() || cg.remove().is_err());
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
                if std::mem::take(&mut p.timeout_must_kill) && status.exit_code().is_some() {
                    // The SIGTERM of its timeout (default action) would have
                    // killed it: it exited by itself as the deadline came
                    // (the kernel drops signals to a process already
                    // exiting).
                    p.timed_out = false;
                }
                // The group outlives its leader only while members are
                // left (grandchildren holding the output pipes,
                // typically). Note when: later signals go only to a group
                // where a member born by then still lives. An empty group
                // costs one kill(0) and nothing more.
                if !p.exited() && process::kill_group(pid, 0).is_ok() {
                    p.group_left_at = Some(process::boot_ticks());
                }
                if p.terminal.is_some() {
                    // The session leader is gone: read what the terminal
                    // holds, then close it, whoever else keeps it open.
                    if let Some(c) = p.out.as_mut().filter(|c| c.pipe.is_some()) {
                        c.drain_left = Some(TERMINAL_DRAIN);
                        c.ready = true;
                        self.ready.push((slot, Kind::Stdout));
                    }
                }
            }
        }
        self.check_finished(slot);
        true
    }

    /// Sends `sig` to the process group of `slot` if it is still known to
    /// be ours; returns whether it was sent.
    pub(super) fn signal_group(&mut self, slot: usize, sig: libc::c_int) -> bool {
        let pass = self.pass;
        let Some(Some(p)) = self.slots.get(slot) else { return false };
        let ours = match (p.status, p.group_left_at) {
            // The leader is unreaped: its pid, and so the group number,
            // cannot have been reused.
            (None, _) => true,
            // Reaped with an empty group: nothing of ours is left.
            (Some(_), None) => false,
            // A group number is free for reuse only once the group was
            // empty, and only a process born after that can make it again:
            // a member born by the reap proves the group is ours.
            (Some(_), Some(ticks)) => self.members.is_still_ours(pass, p.pid, ticks),
        };
        // With a cgroup of its own, SIGKILL reaches exactly everything the
        // process started, daemons that left its group included.
        if let Some(cg) = p.cgroup() {
            if sig == libc::SIGKILL && cg.populated() {
                let killed = cg.kill().is_ok();
                return (ours && process::kill_group(p.pid, sig).is_ok()) || killed;
            }
        }
        // ESRCH (the group is gone meanwhile) is not an error.
        ours && process::kill_group(p.pid, sig).is_ok()
    }

    /// guest-exec-terminate: `sig` to the process group of `pid`. A group
    /// that is gone is not an error (the status reports the exit).
    pub fn terminate(&mut self, pid: i64, sig: libc::c_int) -> Result<(), QgaError> {
        let slot = self.visible_slot(pid)?;
        self.signal_group(slot, sig);
        Ok(())
    }

    /// `timeout` extension: SIGTERM to the group at the deadline, SIGKILL
    /// after [`KILL_GRACE`]. The result says `timed-out` only when the
    /// SIGTERM reached something of the process's that was still running
    /// (a process that ended by itself at the deadline did not time out).
    pub fn enforce_deadlines(&mut self, now: Instant) {
        self.pass += 1;
        for slot in 0..self.slots.len() {
            let Some(Some(p)) = self.slots.get_mut(slot) else { continue };
            if p.deadline.is_some_and(|d| d <= now) {
                // The leader's /proc state while unreaped (a zombie reads as
                // exiting; gone would mean reaped by someone else: the same).
                let stat = p.status.is_none().then(|| process::ProcStat::read(p.pid));
                if stat.is_some_and(|st| st.is_none_or(|s| s.is_exiting())) {
                    // It is ending by itself right now: decide once it is
                    // reaped (then only members left behind are signalled).
                    p.deadline = now.checked_add(EXITING_RECHECK);
                    continue;
                }
                p.deadline = None;
                p.kill_at = now.checked_add(KILL_GRACE);
                // Only a running leader has a stat here.
                let must_kill = stat.flatten().is_some_and(|s| s.default_action(libc::SIGTERM));
                let sent = self.signal_group(slot, libc::SIGTERM);
                if let Some(Some(p)) = self.slots.get_mut(slot) {
                    p.timed_out = sent;
                    p.timeout_must_kill = sent && must_kill;
                }
            }
            let Some(Some(p)) = self.slots.get_mut(slot) else { continue };
            if p.kill_at.is_some_and(|k| k <= now) {
                p.kill_at = None;
                self.signal_group(slot, libc::SIGKILL);
            }
        }
    }

    /// The earliest timeout or kill deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.iter().flat_map(|p| [p.deadline, p.kill_at]).flatten().min()
    }
}
