//! The process table: every child started by guest-exec, its pipes and
//! its result until a client collects it.
//!
//! Design points (qemu-ga's `qga/commands.c` semantics, plus bounds; the
//! memory model as a whole is in docs/design.md):
//! * Children are reaped as soon as SIGCHLD arrives (no zombies); a result
//!   is `exited` once the child is reaped *and* its capture pipes reached
//!   EOF; the first status call that reports `exited: true` consumes it. A
//!   terminal's result is complete once its session leader is reaped: what
//!   is readable is drained, then the master is closed (as sshd does), so
//!   a daemon left holding the terminal cannot hide the exit.
//! * Captured output is the head of each stream, at most `max_output`
//!   bytes (`--max-output`, qemu-ga's 16 MiB by default), with a
//!   truncation flag; data beyond it is read and dropped so the child
//!   never blocks.
//! * Output held for clients is one budget, [`MAX_OUTPUT_HELD`]: capture
//!   buffers at their allocated size plus reply bytes queued in the
//!   channel (a collected result stays counted until it is sent). Bytes
//!   that do not fit are dropped from the stream producing them and that
//!   result says `*-truncated: true`, also when nothing was kept. An exit
//!   status is never discarded to make room for bytes: only the entry
//!   limit ([`MAX_PROCESSES`]) discards the oldest finished, uncollected
//!   result.
//! * Streamed processes (extension) keep a window of [`STREAM_WINDOW`]
//!   bytes per stream and stop reading the pipe while it is full, or while
//!   the output budget is used up: streamed output is never dropped, only
//!   delayed.
//! * Input held for children's stdin is bounded by [`MAX_PENDING_INPUT`]
//!   in all, counted at the size really held (allocated buffers, and lent
//!   pages until the process has finished).
//! * A process group is only signalled while qga knows it to be its own:
//!   its leader not yet reaped, or, after the reap, while a member born by
//!   the reap is alive and no process has the leader's pid (a group number
//!   is only reused after the group was empty, by the process that has
//!   that pid, born after the reap).

mod group;
mod pipes;

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use crate::audit::{ClientInfo, Record};
use crate::log;
use crate::protocol::QgaError;
use crate::sys::confine::cgroup::{Cgroup, CgroupStats};
use crate::sys::libc;
use crate::sys::process::{Pid, Usage, WaitStatus};
use crate::sys::pty::{self, Winsize};
use crate::sys::spawn::{self, SpawnError, SpawnSpec, Stage};
use crate::sys::{fd, LentBytes, MapAhead};

/// Entries (running or finished and unclaimed) tracked at once.
pub const MAX_PROCESSES: usize = 1024;
/// Output held for clients in all: capture buffers (allocated size) plus
/// reply bytes queued for sending.
pub const MAX_OUTPUT_HELD: usize = 256 << 20;
/// Per-stream buffer of a streamed process; the pipe is not read while full.
pub const STREAM_WINDOW: usize = 1 << 20;
/// Unwritten streamed-stdin bytes held per process (guest-exec-input).
pub const STDIN_WINDOW: usize = 4 << 20;
/// Stdin bytes (input-data and streamed input) held across all processes:
/// buffers at their allocated size, lent pages until the process finished.
pub const MAX_PENDING_INPUT: usize = 256 << 20;
/// Grace period between SIGTERM and SIGKILL for `timeout`.
pub const KILL_GRACE: Duration = Duration::from_secs(2);
/// Largest single read from a child's pipe.
const READ_CHUNK: usize = 256 << 10;
/// Largest single read from a terminal's master. N_TTY hands a reader at
/// most its 4 KiB read buffer per copy (N_TTY_BUF_SIZE, drivers/tty/n_tty.c)
/// and a pty holds little more (measured on Linux 6.18: a slave takes
/// 12–13.5 KiB before EAGAIN), so a bigger request only made every 4 KiB
/// read prefault 256 KiB of buffer (one madvise per read, ~10 % of the
/// agent's samples on an 8 MiB terminal output); under `PREFAULT_MIN`
/// (64 KiB) it makes none, and `MapAhead` maps the buffer ahead instead.
const TERMINAL_READ_CHUNK: usize = 16 << 10;
/// After a terminal's session leader is reaped, at most this much more is
/// read from the terminal before its master is closed (a daemon that keeps
/// writing to it cannot keep the result open).
const TERMINAL_DRAIN: usize = 4 << 20;
/// Bytes moved per pipe per loop iteration, so that one chatty child
/// cannot starve the channel or the other children.
pub const PIPE_BUDGET: usize = 1 << 20;

/// Bytes read from a terminal per loop iteration. A pty's non-blocking
/// read rarely says EAGAIN while its writer is busy: when N_TTY's buffer
/// is empty, n_tty_read first waits for queued flip-buffer work
/// (flush_to_ldisc on a kworker, `tty_buffer_flush_work`,
/// drivers/tty/n_tty.c), and reading made room for the writer, which
/// queues more. So a pass of 4 KiB reads sleeps in read about once per
/// read (measured: ~2,000 reads and 33–60 epoll_waits per 8 MiB). With the
/// pipes' 1 MiB a pass could last the whole stream window (5–30 ms) before a
/// held status, another client or another terminal's keystroke was served;
/// 64 KiB is 16 such reads.
const TERMINAL_BUDGET: usize = 64 << 10;

/// First token used for child pipes; three per slot (stdin, stdout, stderr).
pub const PIPE_TOKEN_BASE: usize = 128;

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
    /// Bytes of [`MAX_OUTPUT_HELD`] charged for `data` (its capacity).
    charged: usize,
    truncated: bool,
    /// Readable data may be pending (edge-triggered: not yet drained).
    ready: bool,
    /// A terminal whose session leader was reaped: read until EAGAIN (or
    /// [`TERMINAL_DRAIN`] bytes), then close.
    drain_left: Option<usize>,
    /// A terminal's master: reads of [`TERMINAL_READ_CHUNK`], into pages
    /// mapped ahead by `map_ahead` (a pty gives 4 KiB per read).
    terminal: bool,
    map_ahead: MapAhead,
}

/// input-data still to be written to the child's stdin.
#[derive(Debug)]
struct StdinFeed {
    pipe: OwnedFd,
    data: Vec<u8>,
    /// input-data of [`crate::sys::LentBytes`]'s size (then `data` is
    /// empty): handed to the pipe by reference, not copied into it.
    lent: Option<LentBytes>,
    written: usize,
    ready: bool,
    /// Streamed stdin (extension): the pipe stays open after the data is
    /// written, until guest-exec-input sends `eof`.
    keep_open: bool,
    /// Bytes of [`MAX_PENDING_INPUT`] charged for it ([`StdinFeed::held`]).
    charged: usize,
}

impl StdinFeed {
    fn new(pipe: OwnedFd, data: Vec<u8>, keep_open: bool) -> StdinFeed {
        // Streamed stdin grows and drains its buffer: never lent.
        let (data, lent) = match keep_open {
            true => (data, None),
            false => match LentBytes::new(data) {
                Ok(lent) => {
                    // A pipe that holds all of it takes it in one call and
                    // the child reads without waking us per page. Above
                    // /proc/sys/fs/pipe-max-size that needs root
                    // (CAP_SYS_RESOURCE); else 1 MiB, else the default.
                    let want = lent.as_slice().len().next_power_of_two().clamp(LENT_PIPE_MIN, LENT_PIPE_MAX);
                    for size in [want, LENT_PIPE_MIN] {
                        if fd::set_pipe_size(pipe.as_fd(), size as libc::c_int).is_ok() {
                            break;
                        }
                    }
                    (Vec::new(), Some(lent))
                }
                Err(data) => (data, None),
            },
        };
        StdinFeed { pipe, data, lent, written: 0, ready: true, keep_open, charged: 0 }
    }

    /// Bytes of ours it holds: a copied input's buffer (allocated size)
    /// until the feed closes; lent input not yet handed to the pipe.
    fn held(&self) -> usize {
        match &self.lent {
            Some(l) => l.as_slice().len() - self.written,
            None => self.data.capacity(),
        }
    }

    /// Brings the charge against `total` up to date.
    fn recharge(&mut self, total: &mut usize) {
        let now = self.held();
        *total = total.saturating_sub(self.charged) + now;
        self.charged = now;
    }

    /// All the bytes of the feed, written or not.
    fn bytes(&self) -> &[u8] {
        self.lent.as_ref().map_or(&self.data[..], LentBytes::as_slice)
    }
}

/// The stdin pipe's size while input-data is lent to it: the input's size
/// within these bounds (the lower one is the unprivileged maximum,
/// /proc/sys/fs/pipe-max-size; the kernel memory is 40 bytes per page).
const LENT_PIPE_MIN: usize = 1 << 20;
const LENT_PIPE_MAX: usize = 64 << 20;

/// Options that change how a process is run or reported (extensions).
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// A helper run by the agent itself: invisible to guest-exec-status.
    pub internal: bool,
    /// stdin stays open for guest-exec-input (extension).
    pub input_stream: bool,
    pub stream: bool,
    pub timeout: Option<std::time::Duration>,
    /// The final status carries the resources the process used.
    pub rusage: bool,
}

#[derive(Debug)]
pub struct Process {
    pub pid: Pid,
    /// Wait status once reaped.
    status: Option<WaitStatus>,
    /// Resources used, once reaped.
    usage: Usage,
    /// The terminal's master side (tty processes), for resizing.
    terminal: Option<OwnedFd>,
    /// The leader was reaped while members of its group were left: the
    /// time of the reap (clock ticks since boot, as /proc's start times).
    /// The group may only be signalled while a member born by then lives.
    group_left_at: Option<u64>,
    stdin: Option<StdinFeed>,
    /// Lent input-data already in the stdin pipe: it stays counted in
    /// [`MAX_PENDING_INPUT`] until the process has finished (the pipe
    /// holds the pages until the child reads them or is gone).
    lent_in_pipe: usize,
    out: Option<Capture>,
    err: Option<Capture>,
    opts: ExecOptions,
    /// Order in which results became complete (eviction order).
    finished_seq: Option<u64>,
    /// Timeout bookkeeping (extension).
    deadline: Option<Instant>,
    kill_at: Option<Instant>,
    timed_out: bool,
    /// The timeout's SIGTERM went to a running leader that neither catches
    /// nor ignores it: unless the leader dies of a signal, it ended by
    /// itself.
    timeout_must_kill: bool,
    /// Its confinement profile and cgroup leaf (exec policy).
    confined: Option<Confined>,
    /// What its cgroup saw, read when the result became complete.
    cgroup_stats: Option<CgroupStats>,
    /// Bytes written to its stdin and read from its output (the audit's
    /// exec-end record).
    bytes_in: u64,
    bytes_out: u64,
    /// When it was started.
    started: Instant,
    /// The client that started it (audit trail on).
    audit: Option<ClientInfo>,
}

/// How a confined process runs: what its profile applied, and the cgroup
/// leaf of its own that it and everything it starts stay in.
#[derive(Debug)]
pub struct Confined {
    pub report: ConfineReport,
    pub cgroup: Option<Cgroup>,
}

/// What a profile applied to a child, as its status reports it.
#[derive(Debug, Clone)]
pub struct ConfineReport {
    pub profile: String,
    pub no_new_privs: bool,
    /// `enforced`, `partial` (the kernel knows fewer rights than asked) or
    /// `unsupported` (best-effort on a kernel without Landlock).
    pub landlock: Option<&'static str>,
    pub landlock_abi: Option<i32>,
    pub seccomp: bool,
}

impl Process {
    /// Its cgroup leaf (exec policy profiles; never without the
    /// `controls` feature, which the compiler then leaves out).
    fn cgroup(&self) -> Option<&Cgroup> {
        self.confined.as_ref().filter(|_| cfg!(feature = "controls")).and_then(|c| c.cgroup.as_ref())
    }

    fn capture_done(c: &Option<Capture>) -> bool {
        c.as_ref().is_none_or(|c| c.pipe.is_none())
    }

    /// qemu-ga's `exited`: reaped, and every capture pipe at EOF.
    pub fn exited(&self) -> bool {
        self.status.is_some() && Self::capture_done(&self.out) && Self::capture_done(&self.err)
    }

    fn captured_charge(&self) -> usize {
        self.out.as_ref().map_or(0, |c| c.charged) + self.err.as_ref().map_or(0, |c| c.charged)
    }

    /// New streamed output is waiting to be collected.
    pub fn has_stream_data(&self) -> bool {
        self.opts.stream
            && (self.out.as_ref().is_some_and(|c| !c.data.is_empty())
                || self.err.as_ref().is_some_and(|c| !c.data.is_empty()))
    }
}

/// Spare capacity worth giving back when a buffer stops growing.
pub const SHRINK_SLACK: usize = 4 << 10;

/// What guest-exec-status reports of a process.
#[derive(Debug, Default)]
pub struct ExecStatus {
    /// qemu-ga's `exited`: reaped, and every capture pipe at EOF.
    pub exited: bool,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    /// Captured (or, streamed, new) output of each stream, if any.
    pub out: Option<Stream>,
    pub err: Option<Stream>,
    /// Present when the process had a `timeout`.
    pub timed_out: Option<bool>,
    /// Present when the process was started with `rusage`.
    pub usage: Option<Usage>,
    /// Present when a confinement profile applied (final status only).
    pub confinement: Option<ConfineReport>,
    /// What the process's cgroup saw (final status of a profile with one).
    pub cgroup: Option<CgroupStats>,
}

/// Output of one stream in a status.
#[derive(Debug, Default)]
pub struct Stream {
    /// Bytes (empty when all were dropped).
    pub data: Vec<u8>,
    /// The truncation flag to report (not for streamed output).
    pub truncated: Option<bool>,
}

/// What to do with a new child besides starting it.
pub struct NewProcess {
    /// input-data for its stdin.
    pub input: Option<Vec<u8>>,
    pub opts: ExecOptions,
    /// Its confinement (exec policy), if any.
    pub confined: Option<Confined>,
    /// The client that started it, when the audit trail is on: its
    /// `exec-end` record is made when the result is complete.
    pub audit: Option<ClientInfo>,
}

#[derive(Debug, Default)]
pub struct ProcessTable {
    /// Head capture per stream (`--max-output`).
    max_capture: usize,
    slots: Vec<Option<Process>>,
    free: Vec<usize>,
    by_pid: HashMap<Pid, usize>,
    /// Capture buffers held by all entries (allocated size).
    captured: usize,
    /// Reply bytes queued in the channel (reported by it): the rest of
    /// [`MAX_OUTPUT_HELD`].
    queued_replies: usize,
    finished_counter: u64,
    /// Pipes with work pending: (slot, kind).
    ready: Vec<(usize, Kind)>,
    /// Scratch buffer for output read past a cap and dropped.
    sink: Vec<u8>,
    /// Streamed pipes paused because the global capture budget was used up.
    starved: Vec<(usize, Kind)>,
    /// Stdin bytes held by all entries ([`MAX_PENDING_INPUT`]).
    pending_input: usize,
    /// Group members seen by the last /proc walk, and the loop pass it
    /// was made in: all signals of one pass share one walk.
    members: group::MemberCache,
    /// Loop passes so far (counted by `enforce_deadlines`).
    pass: u64,
    /// cgroup leaves of collected results that something still runs in
    /// (a daemon): removed once empty.
    lingering: Vec<Cgroup>,
    /// `exec-end` records of results completed since the loop last took
    /// them ([`ProcessTable::take_audit`]).
    audit_records: Vec<Record>,
}

fn token_for(slot: usize, kind: Kind) -> Token {
    Token(PIPE_TOKEN_BASE + slot * 3 + kind as usize)
}

/// GLib's text for a child that could not be started
/// (`g_spawn_async_with_pipes()`, as qemu-ga reports it).
pub fn spawn_error_text(e: &SpawnError, spec: &SpawnSpec) -> String {
    let reason = e.errno;
    let text = |c: &std::ffi::CStr| String::from_utf8_lossy(c.to_bytes()).into_owned();
    match e.stage {
        Stage::Exec => format!("Failed to execute child process \u{201C}{}\u{201D} ({reason})", text(&spec.path)),
        Stage::Chdir => format!(
            "Failed to change to directory \u{201C}{}\u{201D} ({reason})",
            spec.cwd.as_deref().map(text).unwrap_or_default()
        ),
        Stage::Redirect => format!("Failed to redirect output or input of child process ({reason})"),
        Stage::Credentials => format!("Failed to switch to the requested user ({reason})"),
        Stage::DevNull => format!("Failed to open file \u{201C}/dev/null\u{201D} ({reason})"),
        Stage::Pipe => format!("Failed to create pipe for communicating with child process ({reason})"),
        Stage::Fork => format!("Failed to fork ({reason})"),
        Stage::Terminal => format!("Failed to open a pseudo-terminal ({reason})"),
        Stage::Confine => format!("Failed to confine child process ({reason})"),
    }
}

impl ProcessTable {
    /// A table keeping at most `max_capture` bytes per captured stream.
    pub fn new(max_capture: usize) -> Self {
        // The children's /dev/null, opened now rather than at the first
        // spawn (a failure shows there, as the spawn's error).
        let _ = fd::shared_dev_null();
        ProcessTable { max_capture, ..Self::default() }
    }

    /// Whether one more entry fits (a finished result can be discarded).
    fn has_room(&self) -> bool {
        self.by_pid.len() < MAX_PROCESSES || self.iter().any(|p| p.finished_seq.is_some())
    }

    /// Starts a child and tracks it. Nothing is discarded unless the child
    /// really started: then, at the entry limit, the oldest finished and
    /// uncollected result makes room.
    pub fn start(&mut self, registry: &Registry, spec: &SpawnSpec, mut new: NewProcess) -> Result<Pid, QgaError> {
        if !self.has_room() {
            return Err(QgaError::generic(format!(
                "Too many guest-exec processes are running (limit {MAX_PROCESSES})"
            )));
        }
        // Decoded in place, the input's buffer is still the size of its
        // base64 text: give the rest back (a big block shrinks in place,
        // mremap), then count what is really held.
        if let Some(input) = new.input.as_mut() {
            if input.capacity() - input.len() >= SHRINK_SLACK {
                input.shrink_to_fit();
            }
        }
        let input_len = new.input.as_ref().map_or(0, Vec::capacity);
        if self.pending_input.saturating_add(input_len) > MAX_PENDING_INPUT {
            return Err(QgaError::generic(format!(
                "Too much input-data is waiting to be read by other processes (limit {} MiB)",
                MAX_PENDING_INPUT >> 20
            )));
        }
        let spawned = spawn::spawn(spec).map_err(|e| QgaError::generic(spawn_error_text(&e, spec)))?;
        if self.by_pid.len() >= MAX_PROCESSES {
            self.evict_oldest_finished(registry);
        }
        Ok(self.insert(registry, spawned, new))
    }

    /// Adds a freshly spawned child and registers its pipes.
    fn insert(&mut self, registry: &Registry, spawned: spawn::Spawned, new: NewProcess) -> Pid {
        let NewProcess { input, opts, confined, audit } = new;
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
        // A terminal is read and written through duplicates of its master
        // (one registration per direction); the master itself is kept
        // for resizing.
        let (term_in, term_out) = match &spawned.terminal {
            Some(m) => (fd::dup(m.as_fd()).ok(), fd::dup(m.as_fd()).ok()),
            None => (None, None),
        };
        let stdin = spawned.stdin.or(term_in).map(|pipe| {
            reg(&pipe, Kind::Stdin, Interest::WRITABLE);
            let mut feed = StdinFeed::new(pipe, input.unwrap_or_default(), opts.input_stream);
            feed.recharge(&mut self.pending_input);
            feed
        });
        let terminal = term_out.is_some();
        let capture = |pipe: Option<OwnedFd>, kind: Kind| {
            pipe.map(|p| {
                reg(&p, kind, Interest::READABLE);
                Capture { pipe: Some(p), ready: true, terminal: terminal && kind == Kind::Stdout, ..Default::default() }
            })
        };
        let out = capture(spawned.stdout.or(term_out), Kind::Stdout);
        let err = capture(spawned.stderr, Kind::Stderr);
        let deadline = opts.timeout.and_then(|t| Instant::now().checked_add(t));
        let proc_ = Process {
            pid,
            status: None,
            usage: Usage::default(),
            terminal: spawned.terminal,
            group_left_at: None,
            stdin,
            lent_in_pipe: 0,
            out,
            err,
            opts,
            finished_seq: None,
            deadline,
            kill_at: None,
            timed_out: false,
            timeout_must_kill: false,
            confined,
            cgroup_stats: None,
            bytes_in: 0,
            bytes_out: 0,
            started: Instant::now(),
            audit,
        };
        for kind in [Kind::Stdin, Kind::Stdout, Kind::Stderr] {
            self.ready.push((slot, kind));
        }
        self.slots[slot] = Some(proc_);
        self.by_pid.insert(pid, slot);
        pid
    }

    pub fn get(&self, pid: Pid) -> Option<&Process> {
        self.by_pid.get(&pid).and_then(|&s| self.slots.get(s)?.as_ref())
    }

    /// A process a client may address by this protocol number (helpers
    /// are invisible).
    fn visible_slot(&self, pid: i64) -> Result<usize, QgaError> {
        let not_found = || QgaError::generic(format!("PID {pid} does not exist"));
        let pid32 = Pid::try_from(pid).map_err(|_| not_found())?;
        let slot = *self.by_pid.get(&pid32).ok_or_else(not_found)?;
        match self.slots.get(slot) {
            Some(Some(p)) if !p.opts.internal => Ok(slot),
            _ => Err(not_found()),
        }
    }

    /// The visible process `pid`, if any.
    pub fn find(&self, pid: i64) -> Option<&Process> {
        self.visible_slot(pid).ok().and_then(|s| self.slots.get(s)?.as_ref())
    }

    /// Iterates over all tracked processes.
    pub fn iter(&self) -> impl Iterator<Item = &Process> {
        self.slots.iter().flatten()
    }

    fn remove_slot(&mut self, registry: &Registry, slot: usize) -> Option<Process> {
        let mut p = self.slots.get_mut(slot)?.take()?;
        self.by_pid.remove(&p.pid);
        self.release_captured(p.captured_charge());
        self.pending_input = self.pending_input.saturating_sub(std::mem::take(&mut p.lent_in_pipe));
        if let Some(feed) = p.stdin.take() {
            Self::close_stdin(&mut self.pending_input, registry, feed);
        }
        for cap in [p.out.as_mut(), p.err.as_mut()].into_iter().flatten() {
            if let Some(pipe) = cap.pipe.take() {
                let _ = registry.deregister(&mut SourceFd(&pipe.as_raw_fd()));
            }
        }
        self.ready.retain(|&(s, _)| s != slot);
        self.starved.retain(|&(s, _)| s != slot);
        self.free.push(slot);
        if let Some(cg) = p.confined.as_mut().filter(|_| cfg!(feature = "controls")).and_then(|c| c.cgroup.take()) {
            if cg.populated() || cg.remove().is_err() {
                self.lingering.push(cg);
            }
        }
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

    /// guest-exec-status: the state of `pid`, consuming a finished result
    /// (commands/ renders it as the reply).
    pub fn status(&mut self, registry: &Registry, pid: i64) -> Result<ExecStatus, QgaError> {
        let not_found = || QgaError::generic(format!("PID {pid} does not exist"));
        let slot = self.visible_slot(pid)?;
        let p = self.slots.get_mut(slot).and_then(Option::as_mut).ok_or_else(not_found)?;
        let mut st = ExecStatus { exited: p.exited(), ..ExecStatus::default() };
        if !st.exited {
            if p.opts.stream {
                let mut freed = 0;
                for (out, cap) in [(&mut st.out, p.out.as_mut()), (&mut st.err, p.err.as_mut())] {
                    if let Some(c) = cap.filter(|c| !c.data.is_empty()) {
                        // The bytes go on to the reply, where the channel
                        // counts them until they are sent.
                        freed += std::mem::take(&mut c.charged);
                        *out = Some(Stream { data: std::mem::take(&mut c.data), truncated: None });
                    }
                }
                self.release_captured(freed);
                if freed > 0 {
                    self.resume_stream(slot);
                }
            }
            return Ok(st);
        }
        let mut p = self.remove_slot(registry, slot).ok_or_else(not_found)?;
        let status = p.status.unwrap_or(WaitStatus(0));
        st.exit_code = status.exit_code();
        st.signal = st.exit_code.is_none().then(|| status.signal()).flatten();
        let stream = p.opts.stream;
        for (out, cap) in [(&mut st.out, p.out.take()), (&mut st.err, p.err.take())] {
            let Some(c) = cap else { continue };
            if !c.data.is_empty() {
                *out = Some(Stream { data: c.data, truncated: (!stream).then_some(c.truncated) });
            } else if c.truncated {
                // Everything was dropped (the output budget was used up):
                // say so rather than report an empty stream. qemu-ga never
                // drops a stream's head, so never sends this alone.
                *out = Some(Stream { data: Vec::new(), truncated: Some(true) });
            }
        }
        st.timed_out = p.opts.timeout.is_some().then_some(p.timed_out);
        st.usage = p.opts.rusage.then_some(p.usage);
        st.confinement = p.confined.as_ref().filter(|_| cfg!(feature = "controls")).map(|c| c.report.clone());
        st.cgroup = p.cgroup_stats.take();
        Ok(st)
    }

    /// The `exec-end` records made since the last call (the loop hands
    /// them to the audit trail).
    pub fn take_audit(&mut self) -> Vec<Record> {
        std::mem::take(&mut self.audit_records)
    }

    /// guest-exec-resize: the window size of `pid`'s terminal.
    pub fn resize(&mut self, pid: i64, size: Winsize) -> Result<(), QgaError> {
        let slot = self.visible_slot(pid)?;
        let p = self
            .slots
            .get(slot)
            .and_then(Option::as_ref)
            .ok_or_else(|| QgaError::generic(format!("PID {pid} does not exist")))?;
        let Some(master) = p.terminal.as_ref() else {
            return Err(QgaError::generic(format!("PID {pid} has no terminal")));
        };
        pty::set_size(master.as_fd(), size)
            .map_err(|e| QgaError::with_errno(format!("cannot resize the terminal of PID {pid}"), e))
    }

    /// Takes the result of a finished internal helper: (wait status,
    /// merged output). `None` while it runs.
    pub fn take_helper_result(&mut self, registry: &Registry, pid: Pid) -> Option<(WaitStatus, Vec<u8>)> {
        let slot = *self.by_pid.get(&pid)?;
        if !self.slots.get(slot)?.as_ref()?.exited() {
            return None;
        }
        let mut p = self.remove_slot(registry, slot)?;
        let out = p.out.take().map(|c| c.data).unwrap_or_default();
        Some((p.status.unwrap_or(WaitStatus(0)), out))
    }
}
