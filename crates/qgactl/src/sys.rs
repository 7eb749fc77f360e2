//! qgactl's operating-system layer: every libc call and every `unsafe`
//! block of the client is here, behind safe functions that return the raw
//! errno on failure. Each block carries its reason.
#![allow(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};

pub use libc::{EAGAIN, ECONNRESET, EINTR, EIO, EPIPE, SIGHUP, SIGINT, SIGKILL, SIGPIPE, SIGTERM, SIGWINCH};

/// poll(2) event bits.
pub type Events = libc::c_short;
pub const POLLIN: Events = libc::POLLIN;
pub const POLLOUT: Events = libc::POLLOUT;

/// The calling thread's errno.
pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

fn cvt<T: Default + PartialOrd>(rc: T) -> Result<T, i32> {
    if rc < T::default() {
        Err(errno())
    } else {
        Ok(rc)
    }
}

/// One entry of a poll(2) set; a negative fd is ignored by the kernel.
#[derive(Clone, Copy)]
#[repr(transparent)]
pub struct PollFd(libc::pollfd);

impl PollFd {
    pub fn new(fd: RawFd, events: Events) -> PollFd {
        PollFd(libc::pollfd { fd, events, revents: 0 })
    }

    pub fn revents(&self) -> Events {
        self.0.revents
    }
}

/// poll(2): the number of ready entries, or the errno (EINTR included).
pub fn poll(fds: &mut [PollFd], timeout_ms: i32) -> Result<usize, i32> {
    // SAFETY: PollFd is a transparent pollfd; the slice is live with its own length.
    let r = cvt(unsafe { libc::poll(fds.as_mut_ptr().cast(), fds.len() as libc::nfds_t, timeout_ms) })?;
    Ok(r.unsigned_abs() as usize)
}

/// Sets O_NONBLOCK (best effort).
pub fn set_nonblocking(fd: BorrowedFd<'_>) {
    // SAFETY: F_GETFL only queries a live descriptor.
    let fl = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    // SAFETY: F_SETFL on a live descriptor.
    unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK) };
}

/// A non-blocking, close-on-exec pipe: (read end, write end).
pub fn pipe_nonblocking() -> Result<(OwnedFd, OwnedFd), i32> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 fills the two-element array on success.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) })?;
    // SAFETY: both descriptors were just created and belong to nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// One read(2) into `buf`: the byte count (0 at end of file) or the errno.
pub fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<usize, i32> {
    // SAFETY: read into a live mutable buffer of its own length.
    let n = cvt(unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) })?;
    Ok(n.unsigned_abs())
}

/// One read(2) into the spare capacity of `buf` (reserve first), which
/// grows by the bytes read.
pub fn read_spare(fd: BorrowedFd<'_>, buf: &mut Vec<u8>) -> Result<usize, i32> {
    let len = buf.len();
    let room = buf.capacity() - len;
    // SAFETY: reads into the reserved, not yet initialised tail of the Vec.
    let n = cvt(unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().add(len).cast(), room) })?;
    let n = n.unsigned_abs();
    // SAFETY: the kernel initialised n <= room bytes past len.
    unsafe { buf.set_len(len + n) };
    Ok(n)
}

/// One write(2) of a single byte (a wake-up poke; errors ignored: a full
/// pipe means a wake-up is pending anyway).
pub fn poke(fd: BorrowedFd<'_>) {
    let b = 1u8;
    // SAFETY: write of one byte from a local.
    unsafe { libc::write(fd.as_raw_fd(), (&b as *const u8).cast(), 1) };
}

/// send(2) with MSG_NOSIGNAL: the byte count or the errno.
pub fn send(fd: BorrowedFd<'_>, data: &[u8]) -> Result<usize, i32> {
    // SAFETY: send from a live slice of its own length.
    let n = cvt(unsafe { libc::send(fd.as_raw_fd(), data.as_ptr().cast(), data.len(), libc::MSG_NOSIGNAL) })?;
    Ok(n.unsigned_abs())
}

/// A non-blocking, close-on-exec AF_VSOCK stream socket.
pub fn vsock_socket() -> Result<OwnedFd, i32> {
    // SAFETY: plain socket creation.
    let raw =
        cvt(unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0) })?;
    // SAFETY: raw is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Whether the errno says vsock is not available at all.
pub fn is_no_vsock(e: i32) -> bool {
    e == libc::EAFNOSUPPORT
}

/// Whether a non-blocking connect is still under way.
pub fn is_in_progress(e: i32) -> bool {
    e == libc::EINPROGRESS || e == libc::EINTR
}

/// connect(2) to CID:PORT.
pub fn connect_vsock(fd: BorrowedFd<'_>, cid: u32, port: u32) -> Result<(), i32> {
    // SAFETY: an all-zero sockaddr_vm is a valid value; the fields are set below.
    let mut addr: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
    addr.svm_family = libc::AF_VSOCK as libc::sa_family_t;
    addr.svm_cid = cid;
    addr.svm_port = port;
    // SAFETY: connect with a valid address of the stated size.
    cvt(unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_vm).cast(),
            std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// SO_ERROR: the outcome of a finished non-blocking connect (0: connected).
pub fn socket_error(fd: BorrowedFd<'_>) -> i32 {
    let mut err: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: SO_ERROR into a c_int of the stated size.
    unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut err as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    err
}

/// Whether stderr is a terminal.
pub fn stderr_is_tty() -> bool {
    // SAFETY: isatty on a standard descriptor only queries.
    unsafe { libc::isatty(2) == 1 }
}

/// Write end of the signal self-pipe, read by the handler.
static SIGNAL_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
    let fd = SIGNAL_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: write(2) and errno access are async-signal-safe; errno is restored.
        unsafe {
            let errno = libc::__errno_location();
            let saved = *errno;
            let b = sig as u8;
            libc::write(fd, (&b as *const u8).cast(), 1);
            *errno = saved;
        }
    }
}

/// Routes each of `sigs` not ignored at start-up (`qgactl ... &` in a
/// script, nohup: shells expect those to stay ignored) to a handler that
/// writes the signal number as one byte to `pipe_w`, which is kept open
/// for the life of the process.
pub fn route_signals(pipe_w: OwnedFd, sigs: &[i32]) {
    use std::os::fd::IntoRawFd;
    SIGNAL_FD.store(pipe_w.into_raw_fd(), Ordering::Relaxed);
    route_more_signals(sigs);
}

/// Routes more signals to the pipe given to [`route_signals`] (same rule:
/// those ignored at start-up stay ignored).
pub fn route_more_signals(sigs: &[i32]) {
    for &sig in sigs {
        // SAFETY: an all-zero sigaction is a valid value.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: sigaction only reads the current disposition into `old`.
        if unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) } == 0 && old.sa_sigaction == libc::SIG_IGN {
            continue;
        }
        // SAFETY: as above.
        let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
        sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
        sa.sa_flags = libc::SA_RESTART;
        // SAFETY: sigemptyset on our struct; sigaction installs the async-signal-safe handler.
        unsafe {
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Whether `fd` is a terminal.
pub fn isatty(fd: RawFd) -> bool {
    // SAFETY: isatty only queries the descriptor.
    unsafe { libc::isatty(fd) == 1 }
}

/// A terminal's saved settings.
#[derive(Clone, Copy)]
pub struct Termios(libc::termios);

/// The settings of the terminal `fd` (tcgetattr).
pub fn term_get(fd: RawFd) -> Result<Termios, i32> {
    // SAFETY: an all-zero termios is a valid value; tcgetattr fills it.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: tcgetattr writes into our struct.
    cvt(unsafe { libc::tcgetattr(fd, &mut t) })?;
    Ok(Termios(t))
}

/// Applies `t` to the terminal `fd` once queued output is written
/// (TCSADRAIN), retrying on EINTR.
pub fn term_set(fd: RawFd, t: &Termios) -> Result<(), i32> {
    loop {
        // SAFETY: tcsetattr reads our struct.
        match cvt(unsafe { libc::tcsetattr(fd, libc::TCSADRAIN, &t.0) }) {
            Err(libc::EINTR) => continue,
            r => return r.map(drop),
        }
    }
}

/// `t` in raw mode (cfmakeraw: no echo, no line editing, no signal keys,
/// no output processing), as ssh sets the local terminal.
pub fn term_raw(t: &Termios) -> Termios {
    let mut r = t.0;
    // SAFETY: cfmakeraw edits our copy.
    unsafe { libc::cfmakeraw(&mut r) };
    Termios(r)
}

/// The window size of the terminal `fd` (TIOCGWINSZ): (rows, cols), or
/// None when it is not a terminal or reports 0x0.
pub fn win_size(fd: RawFd) -> Option<(u16, u16)> {
    // SAFETY: an all-zero winsize is a valid value.
    let mut w: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes a winsize into our struct.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut w) };
    (rc == 0 && w.ws_row > 0 && w.ws_col > 0).then_some((w.ws_row, w.ws_col))
}
