//! Moving bytes: pipe events, stdin feeds (input-data and streamed
//! input), capture reads with their caps, windows and budgets.

use std::os::fd::{AsFd, AsRawFd};

use mio::unix::SourceFd;
use mio::{Registry, Token};

use super::*;
use crate::sys::libc;
use crate::sys::{fd, Errno};

impl ProcessTable {
    /// A pipe token fired.
    pub fn on_event(&mut self, token: Token) {
        let Some(idx) = token.0.checked_sub(PIPE_TOKEN_BASE) else { return };
        let (slot, kind) = (idx / 3, Kind::from_index(idx % 3));
        let Some(Some(p)) = self.slots.get_mut(slot) else { return };
        let flag = match kind {
            Kind::Stdin => p.stdin.as_mut().map(|s| &mut s.ready),
            Kind::Stdout => p.out.as_mut().map(|c| &mut c.ready),
            Kind::Stderr => p.err.as_mut().map(|c| &mut c.ready),
        };
        if let Some(flag) = flag {
            if !*flag {
                *flag = true;
                self.ready.push((slot, kind));
            }
        }
    }

    /// True when some pipe still has work the last pass did not finish.
    pub fn has_ready_work(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Moves data on every ready pipe, at most [`PIPE_BUDGET`] bytes each.
    pub fn service(&mut self, registry: &Registry) {
        let work = std::mem::take(&mut self.ready);
        for (slot, kind) in work {
            let again = match kind {
                Kind::Stdin => self.write_stdin(registry, slot),
                _ => self.read_capture(registry, slot, kind),
            };
            if again {
                self.ready.push((slot, kind));
            }
            self.check_finished(slot);
        }
    }

    /// Closes a stdin feed: its buffer is no longer held.
    pub(super) fn close_stdin(pending_input: &mut usize, registry: &Registry, feed: StdinFeed) {
        *pending_input = pending_input.saturating_sub(feed.charged);
        let _ = registry.deregister(&mut SourceFd(&feed.pipe.as_raw_fd()));
    }

    /// Writes pending input; returns true if more work remains now.
    pub(super) fn write_stdin(&mut self, registry: &Registry, slot: usize) -> bool {
        let Some(Some(p)) = self.slots.get_mut(slot) else { return false };
        // A terminal's buffers are not a pipe's: only EAGAIN means full.
        let is_pipe = p.terminal.is_none();
        let Some(feed) = p.stdin.as_mut() else { return false };
        let before = feed.written;
        let more = Self::feed_pipe(feed, &mut p.lent_in_pipe, is_pipe, p.pid);
        p.bytes_in += feed.written.saturating_sub(before) as u64;
        feed.recharge(&mut self.pending_input);
        if let Some(more) = more {
            return more;
        }
        if feed.keep_open && feed.written == feed.bytes().len() {
            // Streamed stdin: wait for more input or for eof.
            feed.data.clear();
            feed.written = 0;
            feed.ready = false;
            return false;
        }
        // Everything written (or the reader is gone): EOF for the child.
        if let Some(feed) = p.stdin.take() {
            Self::close_stdin(&mut self.pending_input, registry, feed);
        }
        false
    }

    /// Moves a feed's bytes into its pipe within [`PIPE_BUDGET`]: `Some`
    /// (whether to come back now) while bytes remain for later, `None` when
    /// everything is written or the reader is gone.
    fn feed_pipe(feed: &mut StdinFeed, lent_in_pipe: &mut usize, is_pipe: bool, pid: Pid) -> Option<bool> {
        let mut budget = PIPE_BUDGET;
        loop {
            let (all, from) = (feed.bytes(), feed.written);
            if from == all.len() {
                return None;
            }
            let n = (all.len() - from).min(budget);
            let r = match &feed.lent {
                Some(lent) => fd::vmsplice(feed.pipe.as_fd(), lent, from..from + n),
                None => fd::write(feed.pipe.as_fd(), &all[from..from + n]),
            };
            match r {
                Ok(w) => {
                    feed.written += w;
                    if feed.lent.is_some() {
                        // The pipe holds these pages now: still ours to count.
                        *lent_in_pipe += w;
                    }
                    budget = budget.saturating_sub(w);
                    if w < n && is_pipe {
                        // A short write filled the pipe: the reader's next
                        // read wakes us (a pipe wakes its writer when it
                        // stops being full), so no EAGAIN call is needed.
                        feed.ready = false;
                        return Some(false);
                    }
                    if budget == 0 && feed.written < feed.bytes().len() {
                        return Some(true);
                    }
                }
                Err(Errno(libc::EAGAIN)) => {
                    feed.ready = false;
                    return Some(false);
                }
                Err(Errno(libc::EINVAL | libc::ENOSYS | libc::EPERM)) if feed.lent.is_some() => {
                    // No vmsplice here (a filter, an odd kernel): copy.
                    feed.data = feed.bytes().to_vec();
                    feed.lent = None;
                }
                Err(e) => {
                    // EPIPE: the child will never read it. Close and free now.
                    log::debug(&format!(
                        "input-data for pid {pid}: {e}; dropping {} unwritten bytes",
                        feed.bytes().len() - feed.written
                    ));
                    return None;
                }
            }
        }
    }

    /// Reads a capture pipe; returns true if more work remains now.
    pub(super) fn read_capture(&mut self, registry: &Registry, slot: usize, kind: Kind) -> bool {
        // What the output budget can still give this pass.
        let mut global_room = MAX_OUTPUT_HELD.saturating_sub(self.captured + self.queued_replies);
        let Some(Some(p)) = self.slots.get_mut(slot) else { return false };
        let streamed = p.opts.stream;
        let cap = match kind {
            Kind::Stdout => p.out.as_mut(),
            _ => p.err.as_mut(),
        };
        let Some(cap) = cap else { return false };
        let Some(pipe) = cap.pipe.take() else { return false };
        if self.sink.is_empty() {
            self.sink = vec![0u8; READ_CHUNK];
        }
        let limit = if streamed { STREAM_WINDOW } else { self.max_capture };
        let mut budget = if cap.terminal { TERMINAL_BUDGET } else { PIPE_BUDGET };
        let mut eof = false;
        let mut starved = false;
        // Bytes the child wrote that were read this call (kept or not).
        let mut got = 0u64;
        loop {
            let room = limit.saturating_sub(cap.data.len());
            if streamed && room == 0 {
                // Backpressure: leave the data in the pipe until collected.
                break;
            }
            let chunk = if cap.terminal { TERMINAL_READ_CHUNK } else { READ_CHUNK };
            let mut want = room.min(chunk).min(budget);
            if let Some(left) = cap.drain_left {
                if left == 0 {
                    break;
                }
                want = want.min(left);
            }
            // Bytes that fit in the buffer as it is, or grown within the
            // budget.
            let fit = match cap.data.capacity() {
                0 => want.min(global_room),
                _ => grow_capture(&mut cap.data, want, limit, &mut global_room),
            };
            if streamed && fit == 0 {
                // Streamed output is never dropped: wait for room.
                starved = true;
                break;
            }
            let r = if fit > 0 && cap.data.capacity() > 0 {
                if cap.terminal {
                    cap.map_ahead.before_append(&mut cap.data, fit);
                }
                fd::read_append(pipe.as_fd(), &mut cap.data, fit)
            } else {
                // A first read goes through the scratch buffer and is kept
                // in a buffer of its own size (a child that prints a line
                // holds a line, not a read chunk); past a cap or the
                // budget, the bytes are read and dropped so the child
                // never blocks, and the result says so.
                let len = match (streamed, want) {
                    (true, _) => fit,
                    (false, 0) => chunk.min(budget).max(1),
                    (false, want) => want,
                };
                let r = fd::read(pipe.as_fd(), &mut self.sink[..len]);
                if let Ok(n) = r {
                    let keep = n.min(fit);
                    if keep > 0 {
                        cap.data.reserve_exact(keep);
                        cap.data.extend_from_slice(&self.sink[..keep]);
                        global_room = global_room.saturating_sub(cap.data.capacity());
                    }
                    cap.truncated |= keep < n;
                }
                r
            };
            match r {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    got += n as u64;
                    budget = budget.saturating_sub(n);
                    if let Some(left) = cap.drain_left.as_mut() {
                        *left = left.saturating_sub(n);
                    }
                    if budget == 0 {
                        break;
                    }
                }
                Err(Errno(libc::EAGAIN)) => {
                    cap.ready = false;
                    // A reaped terminal leader: what was readable is read.
                    eof = cap.drain_left.is_some();
                    break;
                }
                Err(_) => {
                    eof = true;
                    break;
                }
            }
        }
        if cap.drain_left == Some(0) {
            eof = true;
        }
        if eof {
            let _ = registry.deregister(&mut SourceFd(&pipe.as_raw_fd()));
            cap.ready = false;
            if cap.data.capacity() - cap.data.len() >= SHRINK_SLACK {
                cap.data.shrink_to_fit();
            }
        } else {
            cap.pipe = Some(pipe);
        }
        let now = cap.data.capacity();
        self.captured = self.captured.saturating_sub(cap.charged) + now;
        cap.charged = now;
        let paused = streamed && (cap.data.len() >= STREAM_WINDOW || starved);
        let more = cap.ready && cap.pipe.is_some() && !paused;
        if paused {
            // Stays flagged ready; `resume_stream` / `wake_starved` requeue it.
            cap.ready = true;
        }
        if starved {
            // Room comes only from a client collecting output or reading
            // its replies: no finished result is discarded for bytes.
            self.starved.push((slot, kind));
        }
        if eof {
            self.release_terminal(registry, slot);
        }
        if let Some(Some(p)) = self.slots.get_mut(slot) {
            p.bytes_out += got;
        }
        more
    }

    /// A terminal's output reached its end: the other duplicates of its
    /// master (input, resizing) are closed with it, so the session ends.
    fn release_terminal(&mut self, registry: &Registry, slot: usize) {
        let Some(Some(p)) = self.slots.get_mut(slot) else { return };
        if p.terminal.is_none() || p.status.is_none() {
            return;
        }
        p.terminal = None;
        if let Some(feed) = p.stdin.take() {
            Self::close_stdin(&mut self.pending_input, registry, feed);
        }
    }

    /// Output bytes were released (collected, sent or discarded): streams
    /// paused for lack of room go on.
    pub(super) fn release_captured(&mut self, n: usize) {
        self.captured = self.captured.saturating_sub(n);
        if n > 0 {
            self.wake_starved();
        }
    }

    fn wake_starved(&mut self) {
        if !self.starved.is_empty() {
            let woken = std::mem::take(&mut self.starved);
            self.ready.extend(woken);
        }
    }

    /// The channel's queued reply bytes changed from `old` to `new` (part
    /// of [`MAX_OUTPUT_HELD`]).
    pub fn replies_queued(&mut self, old: usize, new: usize) {
        self.queued_replies = self.queued_replies.saturating_sub(old) + new;
        if new < old {
            self.wake_starved();
        }
    }

    /// Room left in [`MAX_OUTPUT_HELD`] (for a reply that must fit whole,
    /// such as guest-file-read's).
    pub fn output_room(&self) -> usize {
        MAX_OUTPUT_HELD.saturating_sub(self.captured + self.queued_replies)
    }

    /// Requeues a streamed process's pipes after its window was drained.
    pub(super) fn resume_stream(&mut self, slot: usize) {
        if let Some(Some(p)) = self.slots.get(slot) {
            for (kind, cap) in [(Kind::Stdout, &p.out), (Kind::Stderr, &p.err)] {
                if cap.as_ref().is_some_and(|c| c.ready && c.pipe.is_some()) {
                    self.ready.push((slot, kind));
                }
            }
        }
    }

    pub(super) fn check_finished(&mut self, slot: usize) {
        if let Some(Some(p)) = self.slots.get_mut(slot) {
            if p.finished_seq.is_none() && p.exited() {
                self.pending_input = self.pending_input.saturating_sub(std::mem::take(&mut p.lent_in_pipe));
                p.deadline = None;
                p.kill_at = None;
                self.finished_counter += 1;
                p.finished_seq = Some(self.finished_counter);
                if let Some(cg) = p.cgroup() {
                    // A timeout ends the whole tree: what the leader's group
                    // did not take with it (daemons) goes now.
                    if p.timed_out && cg.populated() {
                        let _ = cg.kill();
                    }
                    p.cgroup_stats = Some(cg.stats());
                }
                if let Some(client) = p.audit.take().filter(|_| cfg!(feature = "controls")) {
                    self.audit_records.push(exec_end(p, &client));
                }
            }
        }
    }

    /// guest-exec-input: queues up to the free part of the
    /// [`STDIN_WINDOW`] (and of [`MAX_PENDING_INPUT`]) for a streamed
    /// stdin; `eof` closes it once everything queued is written. Returns
    /// the bytes accepted.
    pub fn feed_input(&mut self, pid: i64, data: &[u8], eof: bool) -> Result<usize, QgaError> {
        let slot = self.visible_slot(pid)?;
        let global_room = MAX_PENDING_INPUT.saturating_sub(self.pending_input);
        let Some(Some(p)) = self.slots.get_mut(slot) else {
            return Err(QgaError::generic(format!("PID {pid} does not exist")));
        };
        let feed = p
            .stdin
            .as_mut()
            .filter(|f| f.keep_open)
            .ok_or_else(|| QgaError::generic(format!("Input of PID {pid} is closed")))?;
        if feed.written > 0 {
            feed.data.drain(..feed.written);
            feed.written = 0;
        }
        let spare = feed.data.capacity() - feed.data.len();
        let room = STDIN_WINDOW.saturating_sub(feed.data.len()).min(global_room.saturating_add(spare));
        let n = data.len().min(room);
        feed.data.extend_from_slice(&data[..n]);
        feed.recharge(&mut self.pending_input);
        // Only close once everything offered was taken.
        if eof && n == data.len() {
            feed.keep_open = false;
        }
        if !feed.ready {
            feed.ready = true;
            self.ready.push((slot, Kind::Stdin));
        }
        Ok(n)
    }
}

/// The audit trail's record of a process whose result is complete.
fn exec_end(p: &Process, client: &ClientInfo) -> Record {
    let status = p.status.unwrap_or(WaitStatus(0));
    let mut rec = Record::new("exec-end", "guest-exec", client).int("pid", i64::from(p.pid));
    rec = match (status.exit_code(), status.signal()) {
        (Some(code), _) => rec.int("exit-code", i64::from(code)),
        (None, sig) => rec.int("signal", i64::from(sig.unwrap_or(0))),
    };
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    rec.bool("timed-out", p.timed_out)
        .bool("oom-kill", p.cgroup_stats.as_ref().is_some_and(|s| s.oom_kills > 0))
        .int("duration-ms", n(p.started.elapsed().as_millis() as u64))
        .int("bytes-in", n(p.bytes_in))
        .int("bytes-out", n(p.bytes_out))
}

/// Grows a capture buffer so that up to `want` more bytes fit: doubling,
/// but never past `limit` bytes nor by more than `room` (the output
/// budget's rest, reduced by the growth). Returns how many bytes fit now.
fn grow_capture(data: &mut Vec<u8>, want: usize, limit: usize, room: &mut usize) -> usize {
    let (len, cap) = (data.len(), data.capacity());
    if cap - len < want {
        let target = cap.saturating_mul(2).max(len + want).min(limit.max(cap)).min(cap + *room);
        if target > cap {
            data.reserve_exact(target - len);
            *room = room.saturating_sub(data.capacity() - cap);
        }
    }
    (data.capacity() - len).min(want)
}
