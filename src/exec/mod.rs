//! The process table: every child started by guest-exec, its pipes and
//! its result until a client collects it.
//!
//! Design points (qemu-ga's `qga/commands.c` semantics, plus bounds):
//! * Children are reaped as soon as SIGCHLD arrives (no zombies); a result
//!   is `exited` once the child is reaped *and* its capture pipes reached
//!   EOF; the first status call that reports `exited: true` consumes it.
//! * Captured output is the head of each stream, at most
//!   [`MAX_CAPTURE_PER_STREAM`] bytes, with a truncation flag; data beyond
//!   it is read and dropped so the child never blocks.
//! * Unclaimed results are bounded: at most [`MAX_PROCESSES`] entries and
//!   [`MAX_CAPTURED_BYTES`] of captured data in all. At a bound the oldest
//!   finished, unclaimed result is discarded (logged); if every entry is
//!   still running, guest-exec is refused / new output is dropped and
//!   flagged truncated.
//! * Streamed processes (extension) keep a window of [`STREAM_WINDOW`]
//!   bytes per stream and stop reading the pipe while it is full.

pub mod spawn;

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Instant;

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use crate::json::{Object, Value};
use crate::log;
use crate::protocol::QgaError;

/// GUEST_EXEC_MAX_OUTPUT of qemu-ga: head capture per stream.
pub const MAX_CAPTURE_PER_STREAM: usize = 16 << 20;
/// Entries (running or finished and unclaimed) tracked at once.
pub const MAX_PROCESSES: usize = 1024;
/// Captured bytes held across all entries.
pub const MAX_CAPTURED_BYTES: usize = 256 << 20;
/// Per-stream buffer of a streamed process; the pipe is not read while full.
pub const STREAM_WINDOW: usize = 1 << 20;
/// Unwritten streamed-stdin bytes held per process (guest-exec-input).
pub const STDIN_WINDOW: usize = 4 << 20;
/// Largest single read from a child's pipe.
const READ_CHUNK: usize = 256 << 10;
/// Bytes moved per pipe per loop iteration, so that one chatty child
/// cannot starve the channel or the other children.
pub const PIPE_BUDGET: usize = 1 << 20;

/// First token used for child pipes; three per slot (stdin, stdout, stderr).
pub const PIPE_TOKEN_BASE: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Stdin = 0,
    Stdout = 1,
    Stderr = 2,
}

impl Kind {
    fn from_index(i: usize) -> Kind {
        match i {
            0 => Kind::Stdin,
            1 => Kind::Stdout,
            _ => Kind::Stderr,
        }
    }
}

/// One captured output stream.
#[derive(Debug, Default)]
struct Capture {
    pipe: Option<OwnedFd>,
    data: Vec<u8>,
    truncated: bool,
    /// Readable data may be pending (edge-triggered: not yet drained).
    ready: bool,
}

/// input-data still to be written to the child's stdin.
#[derive(Debug)]
struct StdinFeed {
    pipe: OwnedFd,
    data: Vec<u8>,
    written: usize,
    ready: bool,
    /// Streamed stdin (extension): the pipe stays open after the data is
    /// written, until guest-exec-input sends `eof`.
    keep_open: bool,
}

/// Options that change how a process is run or reported (extensions).
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// A helper run by the agent itself: invisible to guest-exec-status.
    pub internal: bool,
    /// stdin stays open for guest-exec-input (extension).
    pub input_stream: bool,
    pub stream: bool,
    pub timeout: Option<std::time::Duration>,
}

#[derive(Debug)]
pub struct Process {
    pub pid: libc::pid_t,
    /// Raw wait status once reaped.
    status: Option<i32>,
    stdin: Option<StdinFeed>,
    out: Option<Capture>,
    err: Option<Capture>,
    opts: ExecOptions,
    /// Order in which results became complete (eviction order).
    finished_seq: Option<u64>,
    /// Timeout bookkeeping (extension).
    pub deadline: Option<Instant>,
    pub kill_at: Option<Instant>,
    pub timed_out: bool,
}

impl Process {
    fn capture_done(c: &Option<Capture>) -> bool {
        c.as_ref().is_none_or(|c| c.pipe.is_none())
    }

    /// qemu-ga's `exited`: reaped, and every capture pipe at EOF.
    pub fn exited(&self) -> bool {
        self.status.is_some() && Self::capture_done(&self.out) && Self::capture_done(&self.err)
    }

    fn captured_len(&self) -> usize {
        self.out.as_ref().map_or(0, |c| c.data.len()) + self.err.as_ref().map_or(0, |c| c.data.len())
    }

    /// New streamed output is waiting to be collected.
    pub fn has_stream_data(&self) -> bool {
        self.opts.stream
            && (self.out.as_ref().is_some_and(|c| !c.data.is_empty())
                || self.err.as_ref().is_some_and(|c| !c.data.is_empty()))
    }
}

/// What a new child's pipes should look like.
pub struct NewProcess {
    pub spawned: spawn::Spawned,
    pub input: Option<Vec<u8>>,
    pub opts: ExecOptions,
}

#[derive(Default)]
pub struct ProcessTable {
    slots: Vec<Option<Process>>,
    free: Vec<usize>,
    by_pid: HashMap<libc::pid_t, usize>,
    /// Sum of captured bytes held by all entries.
    captured: usize,
    finished_counter: u64,
    /// Pipes with work pending: (slot, kind).
    ready: Vec<(usize, Kind)>,
    /// Scratch buffer for output read past a cap and dropped.
    sink: Vec<u8>,
    /// Bumped whenever a process finishes or produces streamed output;
    /// held status replies re-check when it changes.
    pub progress: u64,
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

fn token_for(slot: usize, kind: Kind) -> Token {
    Token(PIPE_TOKEN_BASE + slot * 3 + kind as usize)
}

impl ProcessTable {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.by_pid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_pid.is_empty()
    }

    /// Makes room for one more entry, discarding the oldest finished
    /// unclaimed result if the table is full.
    pub fn reserve_slot(&mut self, registry: &Registry) -> Result<(), QgaError> {
        if self.by_pid.len() < MAX_PROCESSES {
            return Ok(());
        }
        if self.evict_oldest_finished(registry) {
            return Ok(());
        }
        Err(QgaError::generic(format!(
            "Too many guest-exec processes are running (limit {MAX_PROCESSES})"
        )))
    }

    /// Adds a freshly spawned child and registers its pipes.
    pub fn insert(&mut self, registry: &Registry, new: NewProcess) -> libc::pid_t {
        let NewProcess { spawned, input, opts } = new;
        let pid = spawned.pid;
        // The kernel reused the pid of a result nobody collected: that
        // result can no longer be addressed, so it goes.
        if let Some(&old) = self.by_pid.get(&pid) {
            log::warning(&format!("pid {pid} reused; discarding the uncollected result of its previous owner"));
            self.remove_slot(registry, old);
        }
        let slot = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        let reg = |fd: &OwnedFd, kind: Kind, interest: Interest| {
            if let Err(e) = registry.register(&mut SourceFd(&fd.as_raw_fd()), token_for(slot, kind), interest) {
                log::warning(&format!("cannot watch pipe of pid {pid}: {e}"));
            }
        };
        let stdin = spawned.stdin.map(|pipe| {
            reg(&pipe, Kind::Stdin, Interest::WRITABLE);
            StdinFeed { pipe, data: input.unwrap_or_default(), written: 0, ready: true, keep_open: opts.input_stream }
        });
        let capture = |pipe: Option<OwnedFd>, kind: Kind| {
            pipe.map(|p| {
                reg(&p, kind, Interest::READABLE);
                Capture { pipe: Some(p), ready: true, ..Default::default() }
            })
        };
        let out = capture(spawned.stdout, Kind::Stdout);
        let err = capture(spawned.stderr, Kind::Stderr);
        let deadline = opts.timeout.map(|t| Instant::now() + t);
        let proc_ = Process {
            pid,
            status: None,
            stdin,
            out,
            err,
            opts,
            finished_seq: None,
            deadline,
            kill_at: None,
            timed_out: false,
        };
        for kind in [Kind::Stdin, Kind::Stdout, Kind::Stderr] {
            self.ready.push((slot, kind));
        }
        self.slots[slot] = Some(proc_);
        self.by_pid.insert(pid, slot);
        pid
    }

    pub fn get(&self, pid: libc::pid_t) -> Option<&Process> {
        self.by_pid.get(&pid).and_then(|&s| self.slots[s].as_ref())
    }

    pub fn get_mut(&mut self, pid: libc::pid_t) -> Option<&mut Process> {
        let s = *self.by_pid.get(&pid)?;
        self.slots[s].as_mut()
    }

    /// Iterates over all tracked processes.
    pub fn iter(&self) -> impl Iterator<Item = &Process> {
        self.slots.iter().flatten()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Process> {
        self.slots.iter_mut().flatten()
    }

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

    /// Writes pending input; returns true if more work remains now.
    fn write_stdin(&mut self, registry: &Registry, slot: usize) -> bool {
        let Some(Some(p)) = self.slots.get_mut(slot) else { return false };
        let Some(feed) = p.stdin.as_mut() else { return false };
        let mut budget = PIPE_BUDGET;
        loop {
            let rest = &feed.data[feed.written..];
            if rest.is_empty() {
                break;
            }
            let n = rest.len().min(budget);
            // SAFETY: write from a live slice to our own pipe end.
            let w = unsafe { libc::write(feed.pipe.as_raw_fd(), rest.as_ptr().cast(), n) };
            if w < 0 {
                match errno() {
                    libc::EINTR => continue,
                    libc::EAGAIN => {
                        feed.ready = false;
                        return false;
                    }
                    e => {
                        // EPIPE: the child will never read it. Close and free now.
                        log::debug(&format!(
                            "input-data for pid {}: {}; dropping {} unwritten bytes",
                            p.pid,
                            crate::sys::strerror(e),
                            rest.len()
                        ));
                        break;
                    }
                }
            }
            feed.written += w as usize;
            budget = budget.saturating_sub(w as usize);
            if budget == 0 && feed.written < feed.data.len() {
                return true;
            }
        }
        if feed.keep_open && feed.written == feed.data.len() {
            // Streamed stdin: wait for more input or for eof.
            feed.data.clear();
            feed.written = 0;
            feed.ready = false;
            return false;
        }
        // Everything written (or the reader is gone): EOF for the child.
        if let Some(feed) = p.stdin.take() {
            let _ = registry.deregister(&mut SourceFd(&feed.pipe.as_raw_fd()));
        }
        false
    }

    /// Reads a capture pipe; returns true if more work remains now.
    fn read_capture(&mut self, registry: &Registry, slot: usize, kind: Kind) -> bool {
        let Some(Some(p)) = self.slots.get_mut(slot) else { return false };
        let streamed = p.opts.stream;
        let cap = match kind {
            Kind::Stdout => p.out.as_mut(),
            _ => p.err.as_mut(),
        };
        let Some(cap) = cap else { return false };
        let Some(fd) = cap.pipe.as_ref().map(|f| f.as_raw_fd()) else { return false };
        let mut budget = PIPE_BUDGET;
        let mut eof = false;
        let mut grew = 0usize;
        loop {
            let limit = if streamed { STREAM_WINDOW } else { MAX_CAPTURE_PER_STREAM };
            let room = limit.saturating_sub(cap.data.len());
            if streamed && room == 0 {
                // Backpressure: leave the data in the pipe until collected.
                break;
            }
            let global_room = MAX_CAPTURED_BYTES.saturating_sub(self.captured + grew);
            let want = room.min(READ_CHUNK).min(budget).min(global_room);
            let n = if want > 0 {
                cap.data.reserve(want);
                let len = cap.data.len();
                // SAFETY: read into the reserved spare capacity of the Vec.
                let n = unsafe { libc::read(fd, cap.data.as_mut_ptr().add(len).cast(), want) };
                if n > 0 {
                    // SAFETY: the kernel initialised n bytes past len.
                    unsafe { cap.data.set_len(len + n as usize) };
                    grew += n as usize;
                }
                n
            } else {
                // Over the cap: read and drop, so the child never blocks.
                if self.sink.is_empty() {
                    self.sink = vec![0u8; READ_CHUNK];
                }
                let len = READ_CHUNK.min(budget).max(1);
                // SAFETY: read into our scratch buffer, at most its length.
                let n = unsafe { libc::read(fd, self.sink.as_mut_ptr().cast(), len) };
                if n > 0 {
                    cap.truncated = true;
                }
                n
            };
            if n < 0 {
                match errno() {
                    libc::EINTR => continue,
                    libc::EAGAIN => {
                        cap.ready = false;
                        break;
                    }
                    _ => {
                        eof = true;
                        break;
                    }
                }
            }
            if n == 0 {
                eof = true;
                break;
            }
            budget = budget.saturating_sub(n as usize);
            if budget == 0 {
                break;
            }
        }
        if eof {
            if let Some(pipe) = cap.pipe.take() {
                let _ = registry.deregister(&mut SourceFd(&pipe.as_raw_fd()));
            }
            cap.ready = false;
        }
        let more = cap.ready && cap.pipe.is_some() && !(streamed && cap.data.len() >= STREAM_WINDOW);
        let paused = streamed && cap.data.len() >= STREAM_WINDOW;
        if paused {
            // Stays flagged ready; `resume_stream` requeues it.
            cap.ready = true;
        }
        self.captured += grew;
        if grew > 0 && streamed {
            self.progress += 1;
        }
        if self.captured >= MAX_CAPTURED_BYTES {
            self.evict_oldest_finished(registry);
        }
        more
    }

    /// Requeues a streamed process's pipes after its window was drained.
    fn resume_stream(&mut self, slot: usize) {
        if let Some(Some(p)) = self.slots.get(slot) {
            for (kind, cap) in [(Kind::Stdout, &p.out), (Kind::Stderr, &p.err)] {
                if cap.as_ref().is_some_and(|c| c.ready && c.pipe.is_some()) {
                    self.ready.push((slot, kind));
                }
            }
        }
    }

    fn check_finished(&mut self, slot: usize) {
        if let Some(Some(p)) = self.slots.get_mut(slot) {
            if p.finished_seq.is_none() && p.exited() {
                p.deadline = None;
                p.kill_at = None;
                self.finished_counter += 1;
                p.finished_seq = Some(self.finished_counter);
                self.progress += 1;
            }
        }
    }

    /// Records a reaped child. Returns false if the pid is not ours.
    pub fn on_reaped(&mut self, pid: libc::pid_t, status: i32) -> bool {
        let Some(&slot) = self.by_pid.get(&pid) else { return false };
        if let Some(Some(p)) = self.slots.get_mut(slot) {
            if p.status.is_none() {
                // Deadlines stay armed until the result is complete: a
                // grandchild may still hold the pipe after the leader died.
                p.status = Some(status);
                self.progress += 1;
            }
        }
        self.check_finished(slot);
        true
    }

    fn remove_slot(&mut self, registry: &Registry, slot: usize) -> Option<Process> {
        let mut p = self.slots.get_mut(slot)?.take()?;
        self.by_pid.remove(&p.pid);
        self.captured = self.captured.saturating_sub(p.captured_len());
        if let Some(feed) = p.stdin.take() {
            let _ = registry.deregister(&mut SourceFd(&feed.pipe.as_raw_fd()));
        }
        for cap in [p.out.as_mut(), p.err.as_mut()].into_iter().flatten() {
            if let Some(pipe) = cap.pipe.take() {
                let _ = registry.deregister(&mut SourceFd(&pipe.as_raw_fd()));
            }
        }
        self.ready.retain(|&(s, _)| s != slot);
        self.free.push(slot);
        Some(p)
    }

    /// Discards the oldest finished unclaimed result. Returns false if none.
    fn evict_oldest_finished(&mut self, registry: &Registry) -> bool {
        let victim = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.as_ref().and_then(|p| p.finished_seq.map(|seq| (seq, i))))
            .min();
        match victim {
            Some((_, slot)) => {
                if let Some(p) = self.remove_slot(registry, slot) {
                    log::warning(&format!(
                        "discarding the uncollected result of pid {} (result limits reached)",
                        p.pid
                    ));
                }
                true
            }
            None => false,
        }
    }

    /// guest-exec-status: the reply for `pid`, consuming a finished result.
    /// `extended` adds extension members (streamed data, timed-out).
    pub fn status(&mut self, registry: &Registry, pid: i64) -> Result<Value, QgaError> {
        let not_found = || QgaError::generic(format!("PID {pid} does not exist"));
        let pid32 = libc::pid_t::try_from(pid).map_err(|_| not_found())?;
        let slot = *self.by_pid.get(&pid32).ok_or_else(not_found)?;
        let p = self.slots[slot].as_mut().filter(|p| !p.opts.internal).ok_or_else(not_found)?;
        let exited = p.exited();
        let mut obj = Object::new();
        obj.push("exited", Value::Bool(exited));
        if !exited {
            if p.opts.stream {
                let mut freed = 0;
                for (name, cap) in [("out-data", p.out.as_mut()), ("err-data", p.err.as_mut())] {
                    if let Some(c) = cap.filter(|c| !c.data.is_empty()) {
                        freed += c.data.len();
                        obj.push(name, Value::Base64(std::mem::take(&mut c.data)));
                    }
                }
                self.captured = self.captured.saturating_sub(freed);
                if freed > 0 {
                    self.resume_stream(slot);
                }
            }
            return Ok(Value::Object(obj));
        }
        let mut p = self.remove_slot(registry, slot).ok_or_else(not_found)?;
        let status = p.status.unwrap_or(0);
        if libc::WIFEXITED(status) {
            obj.push("exitcode", Value::Int(libc::WEXITSTATUS(status) as i64));
        } else if libc::WIFSIGNALED(status) {
            obj.push("signal", Value::Int(libc::WTERMSIG(status) as i64));
        }
        let mut flags = Vec::new();
        for (data, trunc, cap) in [("out-data", "out-truncated", p.out.take()), ("err-data", "err-truncated", p.err.take())] {
            if let Some(c) = cap.filter(|c| !c.data.is_empty()) {
                obj.push(data, Value::Base64(c.data));
                if !p.opts.stream {
                    flags.push((trunc, c.truncated));
                }
            }
        }
        for (name, t) in flags {
            obj.push(name, Value::Bool(t));
        }
        if p.opts.timeout.is_some() {
            obj.push("timed-out", Value::Bool(p.timed_out));
        }
        Ok(Value::Object(obj))
    }

    /// Takes the result of a finished internal helper: (wait status, merged output).
    pub fn take_helper_result(&mut self, registry: &Registry, pid: libc::pid_t) -> Option<(i32, Vec<u8>)> {
        let slot = *self.by_pid.get(&pid)?;
        if !self.slots[slot].as_ref()?.exited() {
            return None;
        }
        let mut p = self.remove_slot(registry, slot)?;
        let out = p.out.take().map(|c| c.data).unwrap_or_default();
        Some((p.status.unwrap_or(0), out))
    }

    /// guest-exec-input: queues up to the free part of the
    /// [`STDIN_WINDOW`] for a streamed stdin; `eof` closes it once
    /// everything queued is written. Returns the bytes accepted.
    pub fn feed_input(&mut self, pid: i64, data: &[u8], eof: bool) -> Result<usize, QgaError> {
        let not_found = || QgaError::generic(format!("PID {pid} does not exist"));
        let pid32 = libc::pid_t::try_from(pid).map_err(|_| not_found())?;
        let slot = *self.by_pid.get(&pid32).ok_or_else(not_found)?;
        let p = self.slots[slot].as_mut().filter(|p| !p.opts.internal).ok_or_else(not_found)?;
        let feed = p
            .stdin
            .as_mut()
            .filter(|f| f.keep_open)
            .ok_or_else(|| QgaError::generic(format!("Input of PID {pid} is closed")))?;
        if feed.written > 0 {
            feed.data.drain(..feed.written);
            feed.written = 0;
        }
        let room = STDIN_WINDOW.saturating_sub(feed.data.len());
        let n = data.len().min(room);
        feed.data.extend_from_slice(&data[..n]);
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
