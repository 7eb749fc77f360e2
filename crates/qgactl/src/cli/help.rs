//! Help texts: the main one and one per subcommand.

pub const MAIN_HELP: &str = "\
qgactl: drive a QEMU guest agent (qga or stock qemu-ga) from the host

Usage: qgactl [CONNECTION] [--connect-timeout S] [--reply-timeout S] COMMAND [ARGS]

Connection (one of; default: --socket $QGA_SOCKET):
  --socket PATH             unix socket: QEMU's chardev socket for the agent
                            port, or the agent's own unix-listen socket
  --vsock CID:PORT          AF_VSOCK (agent started with -m vsock-listen)
  --hybrid-vsock PATH:PORT  unix socket of a user-space vsock backend
                            (Firecracker, Cloud Hypervisor): CONNECT PORT
  --connect-timeout S       keep retrying connect + sync this long (default 5)
  --reply-timeout S         longest wait for any reply (default 30)

Commands:
  exec [OPTIONS] -- PROGRAM [ARG]...   run a program in the guest
  shell [--user USER]                  interactive login shell in the guest (qga)
  push LOCAL REMOTE                    copy a file into the guest
  pull REMOTE LOCAL                    copy a file out of the guest
  ping                                 check that the agent answers
  info [--json]                        agent version and commands
  sync                                 resynchronise and show the sync id
  osinfo [--json]                      guest operating system
  shutdown [--mode powerdown|halt|reboot]
  raw 'JSON'                           send one request, print the reply line
  help [COMMAND]                       this text, or a command's help

Exit codes: the program's own for exec (128+N when killed by signal N);
1 host-side failure, 2 usage, 124 exec timeout, 125 the agent returned an
error, 130 interrupted, 255 connection/agent not answering.
'qgactl COMMAND --help' describes each command.";

pub const EXEC_HELP: &str = "\
Usage: qgactl exec [OPTIONS] [--] PROGRAM [ARG]...

Runs PROGRAM in the guest (PATH lookup in the guest when it has no '/').
Its stdout goes to stdout and its stderr to stderr; qgactl exits with the
program's exit status, or 128+N when a signal N killed it.

With qga (guest-info lists guest-exec-terminate) output is streamed as it is
produced and never truncated. With stock qemu-ga the status is polled (with
backoff) and output is printed when the program ends; qemu-ga keeps only the
first 16 MiB of each stream (a warning says so).

Options:
  --stdin FILE|-     feed FILE (or qgactl's stdin) to the program's stdin
                     (any size; see below); without it the program's stdin
                     is /dev/null
  -e, --env K=V      environment variable; repeatable. NOTE: like qemu-ga's
                     guest-exec, giving any --env REPLACES the whole
                     environment (add PATH=... if the program needs it)
  --cwd DIR          working directory (qga only)
  --user USER        run as USER, a name or a uid (qga only)
  --profile NAME     under the guest exec policy's confinement profile NAME
                     (qga with an exec policy only)
  --timeout S        terminate the program after S seconds (exit code 124);
                     qga kills its process group (TERM, then KILL); with
                     stock qemu-ga qgactl runs `kill` in the guest instead
  --merge            stderr into stdout, in order (qemu-ga >= 8.1, qga)
  --poll             poll even when the agent can stream, and send stdin as
                     for stock qemu-ga (for comparisons)
  -t, --tty          run the program on a pseudo-terminal in the guest
                     (qga: guest-info lists guest-exec-resize); the local
                     terminal goes to raw mode for the session and is
                     restored after it; window size changes follow; `~.` at
                     the start of a line ends the session (exit 255)
  -i, --interactive  send qgactl's stdin to the program as it is typed
                     (as --stdin -); `-it` for an interactive program

Ctrl-C (or SIGTERM/SIGHUP to qgactl) forwards that signal to the program
(its process group on qga); after 5 s, or at the second Ctrl-C, it is
killed (SIGKILL); a third Ctrl-C makes qgactl give up waiting (exit 130).
With stock qemu-ga the signal is delivered by running `kill` in the guest.

stdin with qga (guest-info lists guest-exec-input): streamed while the
program runs, in chunks of 1 MiB, read from FILE or the pipe as it comes
(a live `producer | qgactl exec --stdin - ...` works); no size limit, and
the program sees EOF when the input ends. It decides how much it reads:
input it does not take is dropped without an error.
stdin with stock qemu-ga: read to its end first. Up to 50266112 bytes
(48 MiB - 64 KiB) travels in the guest-exec request (input-data; QEMU's
64 MiB message limit). Larger input is uploaded to a private file in the
guest first (guest-file-*; needs /bin/sh, mkdir, rm in the guest) and given
to the program as its stdin: a regular file instead of a pipe.

Exit codes: the program's; 128+N for signal N; 124 timeout; 125 the agent
refused (e.g. cannot execute PROGRAM, command disabled); 255 connection.

Examples:
  qgactl exec -- uname -a
  qgactl exec --timeout 60 -- sh -c 'make -j4 2>&1'
  tar c dir | qgactl exec --stdin - -- tar x -C /srv
  qgactl exec --env PATH=/usr/bin:/bin --env LANG=C.UTF-8 -- env";

pub const SHELL_HELP: &str = "\
Usage: qgactl shell [--user USER]

Runs the guest user's login shell (the shell field of /etc/passwd for the
uid the program runs as, else /bin/sh; started with -l in that user's home
directory) on a pseudo-terminal, as `qgactl exec -it` does: the local
terminal is in raw mode for the session and restored after it, keystrokes
go to the guest as they are typed, window size changes follow, `~.` at the
start of a line ends the session (exit 255, the shell gets SIGHUP), and
qgactl exits with the shell's exit status.

Needs qga's terminal support (guest-info lists guest-exec-resize); with
stock qemu-ga it fails with exit code 125.

Options:
  --user USER        run as USER, a name or a uid

Example:
  qgactl --socket /run/vm1/qga.sock shell";

/// The options push and pull share.
macro_rules! transfer_options {
    () => {
        "Options:
  --progress, --no-progress   draw a progress bar on stderr (default: when
                              it is a terminal)
  --in-flight N               requests sent ahead of their replies (1-64,
                              default 3)
  --max-reply-bytes N         chunks small enough that no reply or request
                              is over N bytes (default: 4 MiB chunks, about
                              5.6 MB messages)
  --libvirt                   --max-reply-bytes 10485760, libvirt's cap
"
    };
}

pub const PUSH_HELP: &str = concat!(
    r#"Usage: qgactl push [OPTIONS] LOCAL REMOTE

Copies LOCAL (or stdin for '-') to REMOTE in the guest through
guest-file-open/write/close, in chunks of 4 MiB, several in flight; bytes
are preserved exactly. REMOTE ending in '/' means REMOTE/<basename of
LOCAL>. An existing REMOTE is truncated; a new one is created by the agent
(qemu-ga: mode 0666).

"#,
    transfer_options!(),
    r#"
Example:
  qgactl push ./build/app.tar.gz /root/"#
);

pub const PULL_HELP: &str = concat!(
    r#"Usage: qgactl pull [OPTIONS] REMOTE LOCAL

Copies REMOTE from the guest to LOCAL (stdout for '-'; LOCAL being a
directory means LOCAL/<basename of REMOTE>) through
guest-file-open/read/close, in chunks of 4 MiB, several in flight; bytes
are preserved exactly. The data goes to a temporary file next to LOCAL that
is renamed over LOCAL only when the whole file arrived.

"#,
    transfer_options!(),
    r#"
Example:
  qgactl pull /var/log/syslog ./guest-syslog"#
);

pub const PING_HELP: &str = "\
Usage: qgactl ping

Sends guest-ping and prints the round-trip time. Exit 0 when the agent
answers, 255 when it does not (within --connect-timeout).

Example:
  until qgactl --connect-timeout 60 ping; do sleep 1; done";

pub const INFO_HELP: &str = "\
Usage: qgactl info [--json]

Shows guest-info: the agent version, whether qga's exec extensions are
present, and every command with its enabled / success-response flags.
--json prints the agent's reply line unchanged.

Example:
  qgactl info | grep guest-file";

pub const SYNC_HELP: &str = "\
Usage: qgactl sync

Sends 0xFF and guest-sync-delimited with a random id (as every session
does), discards stale output, then checks guest-sync too and prints the id.

Example:
  qgactl sync";

pub const OSINFO_HELP: &str = "\
Usage: qgactl osinfo [--json]

Shows guest-get-osinfo (os-release and uname data); --json prints the
reply line unchanged.

Example:
  qgactl osinfo";

pub const SHUTDOWN_HELP: &str = "\
Usage: qgactl shutdown [--mode powerdown|halt|reboot]

Sends guest-shutdown (default mode: powerdown). The agent sends no reply on
success; qgactl follows it with guest-sync: an error reply means the
shutdown was refused (exit 125), the sync reply or the connection closing
means it was accepted (exit 0).

Example:
  qgactl shutdown --mode reboot";

pub const RAW_HELP: &str = "\
Usage: qgactl raw 'JSON'      (or 'qgactl raw -' to read it from stdin)

Sends one request exactly as given (after the session's sync) and prints
the reply line exactly as received. Exit 0 for a return, 125 for an error
reply. Commands that do not reply on success (guest-shutdown,
guest-suspend-*) end with a reply timeout.

Example:
  qgactl raw '{\"execute\": \"guest-get-time\"}'";

/// Help text for a subcommand name.
pub fn help_for(name: &str) -> Option<&'static str> {
    Some(match name {
        "exec" => EXEC_HELP,
        "shell" => SHELL_HELP,
        "push" => PUSH_HELP,
        "pull" => PULL_HELP,
        "ping" => PING_HELP,
        "info" => INFO_HELP,
        "sync" => SYNC_HELP,
        "osinfo" => OSINFO_HELP,
        "shutdown" => SHUTDOWN_HELP,
        "raw" => RAW_HELP,
        _ => return None,
    })
}
