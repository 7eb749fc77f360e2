//! Signals for the guest program: forwarding, escalation to SIGKILL,
//! giving up.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::stdin::pid_of;
use crate::conn::Session;
use crate::fail::{Failure, Result};
use crate::signals;

/// After a forwarded signal, SIGKILL follows this much later.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// Forwarding of Ctrl-C & co., escalation to SIGKILL, giving up.
pub(super) struct Terminator {
    pub(super) pid: i64,
    pub(super) forwarded: u32,
    pub(super) kill_at: Option<Instant>,
    pub(super) give_up_at: Option<Instant>,
    /// Stock qemu-ga: pids of the `kill` helpers (collected at the end).
    pub(super) helpers: Vec<i64>,
    pub(super) gave_up: bool,
}

#[derive(Debug, PartialEq)]
pub(super) enum Act {
    Send(i32),
    GiveUp,
}

impl Terminator {
    pub(super) fn new(pid: i64) -> Self {
        Terminator { pid, forwarded: 0, kill_at: None, give_up_at: None, helpers: Vec::new(), gave_up: false }
    }

    /// A signal for the program: the first is forwarded as is, the second
    /// becomes SIGKILL, the third gives up.
    pub(super) fn on_signal(&mut self, sig: i32) -> Act {
        self.forwarded += 1;
        match self.forwarded {
            1 => {
                self.kill_at = Some(Instant::now() + KILL_GRACE);
                Act::Send(sig)
            }
            2 => self.kill(),
            _ => Act::GiveUp,
        }
    }

    pub(super) fn kill(&mut self) -> Act {
        self.kill_at = None;
        self.forwarded = self.forwarded.max(2);
        self.give_up_at = Some(Instant::now() + KILL_GRACE);
        Act::Send(qga_sys::signal::SIGKILL)
    }

    /// Escalation timers.
    pub(super) fn due(&mut self) -> Option<Act> {
        let now = Instant::now();
        if self.kill_at.is_some_and(|t| now >= t) {
            return Some(self.kill());
        }
        if self.give_up_at.is_some_and(|t| now >= t) {
            self.give_up_at = None;
            return Some(Act::GiveUp);
        }
        None
    }

    pub(super) fn wake(&self) -> Option<Instant> {
        match (self.kill_at, self.give_up_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub(super) fn terminate_args(&self, sig: i32) -> Value {
        if sig == qga_sys::signal::SIGKILL {
            json!({"pid": self.pid})
        } else {
            json!({"pid": self.pid, "signal": sig})
        }
    }

    /// Stock qemu-ga: deliver `sig` with `kill` run through guest-exec
    /// (reaches the program only, not what it forked).
    pub(super) fn kill_via_exec(&mut self, sess: &mut Session, sig: i32) -> Result<()> {
        let script = format!("kill -s {} {}", signals::name(sig), self.pid);
        match sess.call("guest-exec", Some(json!({"path": "/bin/sh", "arg": ["-c", script]}))) {
            Ok(v) => {
                if let Ok(p) = pid_of(&v) {
                    self.helpers.push(p);
                }
                Ok(())
            }
            Err(f @ Failure::Agent { .. }) => {
                eprintln!("qgactl: cannot signal the guest process: {f}");
                Ok(())
            }
            Err(f) => Err(f),
        }
    }

    /// Collects the helpers' results so the agent does not keep them.
    pub(super) fn reap_helpers(&mut self, sess: &mut Session) {
        let deadline = Instant::now() + Duration::from_secs(1);
        for pid in std::mem::take(&mut self.helpers) {
            while Instant::now() < deadline {
                match sess.call("guest-exec-status", Some(json!({"pid": pid}))) {
                    Ok(v) if v.get("exited").and_then(Value::as_bool) == Some(false) => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    _ => break,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use qga_sys::signal::{SIGINT, SIGKILL, SIGTERM};

    #[test]
    fn forward_then_kill_then_give_up() {
        let mut t = Terminator::new(42);
        assert_eq!((t.wake(), t.due()), (None, None));
        assert_eq!(t.on_signal(SIGINT), Act::Send(SIGINT));
        let kill_at = t.wake().expect("SIGKILL is scheduled");
        assert!(kill_at > Instant::now() + KILL_GRACE - Duration::from_secs(1));
        assert_eq!(t.due(), None);
        assert_eq!(t.on_signal(SIGINT), Act::Send(SIGKILL));
        assert!(t.wake().is_some(), "giving up is scheduled");
        assert_eq!(t.on_signal(SIGINT), Act::GiveUp);
        assert_eq!(t.on_signal(SIGTERM), Act::GiveUp);
    }

    #[test]
    fn timers_escalate() {
        let mut t = Terminator::new(42);
        assert_eq!(t.on_signal(SIGTERM), Act::Send(SIGTERM));
        t.kill_at = Some(Instant::now());
        assert_eq!(t.due(), Some(Act::Send(SIGKILL)));
        // The next signal after the timer's SIGKILL gives up.
        assert_eq!(t.due(), None);
        t.give_up_at = Some(Instant::now());
        assert_eq!(t.due(), Some(Act::GiveUp));
        assert_eq!(t.wake(), None);
        let mut t = Terminator::new(7);
        t.on_signal(SIGINT);
        t.kill_at = Some(Instant::now());
        t.due();
        assert_eq!(t.on_signal(SIGINT), Act::GiveUp);
    }

    #[test]
    fn terminate_arguments() {
        let t = Terminator::new(42);
        assert_eq!(t.terminate_args(SIGTERM), json!({"pid": 42, "signal": SIGTERM}));
        // SIGKILL is guest-exec-terminate's default.
        assert_eq!(t.terminate_args(SIGKILL), json!({"pid": 42}));
    }
}
