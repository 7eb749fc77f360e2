#!/usr/bin/env python3
"""qga's VM suite: boots TCG guests whose /init is the static qga and talks
to it over the real channels (virtio-serial, isa-serial, vsock through the
user-space vhost-device-vsock backend).

    scripts/e2e/run.py [--arch x86_64|aarch64|riscv64] --qga target/static/qga \
        --kernel target/e2e/kernel/current [--busybox /bin/busybox] [--work target/e2e] \
        [--only virtio,isa,vsock]

--arch picks the guest (scripts/arches.tsv; the boot settings per arch are
in BOARDS below): x86_64 runs q35 guests over virtio-serial, isa-serial and
vsock; aarch64 and riscv64 run `-M virt` guests over virtio-serial and vsock.

Prerequisites are installed by scripts/e2e/setup.sh (`make e2e` runs both).
Prints PASS/FAIL/SKIP per check, the measurements (time from QEMU start to
the first reply, qga's wakeups while the host is away), and a closing
"N passed, N failed, N skipped" line; exits 1 when a check failed. A guest
that does not answer gets its console log printed.
"""

import argparse
import base64
import glob
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RESULTS = {"passed": 0, "failed": 0, "skipped": 0}
MEASURED = []
VSOCK_PORT = 1024
GUEST_CID = 3

# How each architecture boots under TCG (measured in
# /work/shared/reference/vm-arm.md: pauth=off makes aarch64 40 % faster).
BOARDS = {
    "x86_64": {"machine": "q35", "cpu": "max", "console": "ttyS0", "accel": "tcg,thread=single",
               "extra": [], "transports": "virtio,confined,isa,vsock,vsock-refused"},
    "aarch64": {"machine": "virt", "cpu": "max,pauth=off", "console": "ttyAMA0",
                "accel": "tcg,thread=single,tb-size=64", "extra": [], "transports": "virtio,confined,vsock"},
    # Debian's arm64-16k kernel (16 KiB pages): the virtio port only, for
    # the page-size checks.
    "aarch64-16k": {"machine": "virt", "cpu": "max,pauth=off", "console": "ttyAMA0",
                    "accel": "tcg,thread=single,tb-size=64", "extra": [], "transports": "virtio"},
    "riscv64": {"machine": "virt", "cpu": "rv64", "console": "ttyS0", "accel": "tcg,thread=single,tb-size=64",
                "extra": ["-bios", "default"], "transports": "virtio,confined,vsock"},
}


def arch_row(arch):
    """The arch's row of scripts/arches.tsv as a dict."""
    with open(os.path.join(ROOT, "scripts", "arches.tsv")) as f:
        lines = [l.split() for l in f if l.strip()]
    names = lines[[i for i, l in enumerate(lines) if l[0] == "#"][-1]][1:]
    for l in lines:
        if l[0] == arch:
            row = dict(zip(names, l))
            # The page size in KiB, from the row's name (aarch64-16k).
            m = re.search(r"-(\d+)k$", arch)
            row["page-kib"] = m.group(1) if m else "4"
            return row
    sys.exit(f"e2e: unknown arch {arch} (see scripts/arches.tsv)")


def kernel_image(kernel_dir, who):
    """The kernel image of an extracted kernel package (exits with a hint
    when there is none)."""
    images = sorted(glob.glob(os.path.join(kernel_dir, "boot", "vmlinu[xz]-*")))
    if not images:
        sys.exit(f"{who}: no kernel under {kernel_dir}/boot (run scripts/e2e/setup.sh --kernel)")
    return images[0]


def say(msg):
    print(msg, flush=True)


def passed(name, detail=""):
    RESULTS["passed"] += 1
    say(f"PASS {name}{': ' + detail if detail else ''}")


def failed(name, detail):
    RESULTS["failed"] += 1
    say(f"FAIL {name}: {detail}")


def skipped(name, why):
    RESULTS["skipped"] += 1
    say(f"SKIP {name}: {why}")


def measured(name, value):
    MEASURED.append((name, value))
    say(f"MEASURED {name}: {value}")


def check(name, cond, detail=""):
    if cond:
        passed(name)
    else:
        failed(name, detail or "condition false")
    return cond


class AgentError(Exception):
    pass


# ---------------------------------------------------------------------------
# The client side of the protocol


class Client:
    """One connection to the agent: 0xFF + guest-sync-delimited resync,
    newline-separated replies, stale replies ignored."""

    def __init__(self, connect, resend=1.0):
        self._connect = connect
        self.sock = None
        self.buf = bytearray()
        self.scan = 0  # bytes of buf already searched for a newline
        self.resend = resend
        self.execs = 0  # guest-exec requests sent (the audit check counts them)

    def open(self, deadline):
        last = None
        while time.monotonic() < deadline:
            try:
                self.sock = self._connect()
                self.buf = bytearray()
                self.scan = 0
                return
            except OSError as e:
                last = e
                time.sleep(0.02)
        raise AgentError(f"cannot connect: {last}")

    def close(self):
        if self.sock:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None

    def send(self, obj):
        data = obj if isinstance(obj, bytes) else json.dumps(obj).encode() + b"\n"
        # Reads leave a short timeout on the socket; a big request (many
        # MiB of input-data) takes longer than that to go out.
        self.sock.settimeout(120)
        self.sock.sendall(data)

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no reply in time")
        self.sock.settimeout(min(left, 0.5))
        try:
            chunk = self.sock.recv(4 << 20)
        except socket.timeout:
            return
        if not chunk:
            raise AgentError("connection closed by the other side")
        self.buf += chunk

    def line(self, deadline):
        """The next non-empty reply line, without 0xFF bytes. Replies of
        many MiB: the buffer is searched only past what was searched
        before, and cut once per line."""
        while True:
            nl = self.buf.find(b"\n", self.scan)
            while nl >= 0:
                line = bytes(self.buf[:nl]).replace(b"\xff", b"").strip()
                del self.buf[: nl + 1]
                self.scan = 0
                if line:
                    return line
                nl = self.buf.find(b"\n")
            self.scan = len(self.buf)
            self._fill(deadline)

    def reply(self, deadline):
        """The next JSON reply (unparsable lines skipped)."""
        while True:
            try:
                return json.loads(self.line(deadline))
            except ValueError:
                continue

    def sync(self, timeout):
        """Resyncs; returns seconds until the first matching reply."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        ids = set()
        next_send = 0
        while True:
            now = time.monotonic()
            if now >= next_send:
                i = random.randrange(1, 1 << 31)
                ids.add(i)
                self.send(b"\xff" + json.dumps({"execute": "guest-sync-delimited", "arguments": {"id": i}}).encode() + b"\n")
                next_send = now + self.resend
            try:
                r = self.reply(min(deadline, next_send))
            except TimeoutError:
                if time.monotonic() >= deadline:
                    raise AgentError(f"agent not answering guest-sync-delimited within {timeout} s")
                continue
            if r.get("return") in ids:
                break
        self.matched_at = time.monotonic()
        took = self.matched_at - t0
        if len(ids) > 1:
            # Earlier syncs may still be answered: flush with one more.
            i = random.randrange(1, 1 << 31)
            self.send(b"\xff" + json.dumps({"execute": "guest-sync-delimited", "arguments": {"id": i}}).encode() + b"\n")
            while self.reply(deadline + 10).get("return") != i:
                pass
        return took

    def call(self, name, args=None, timeout=30):
        req = {"execute": name}
        self.execs += name == "guest-exec"
        if args is not None:
            req["arguments"] = args
        self.send(req)
        return self.reply(time.monotonic() + timeout)

    def ok(self, name, args=None, timeout=30):
        r = self.call(name, args, timeout)
        if "return" not in r:
            raise AgentError(f"{name}: {r}")
        return r["return"]

    def exec_wait(self, args, timeout=30):
        """guest-exec, then status until exited. Returns the status."""
        pid = self.ok("guest-exec", args)["pid"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.ok("guest-exec-status", {"pid": pid})
            if st.get("exited"):
                return st
            time.sleep(0.05)
        raise AgentError(f"process {pid} did not exit within {timeout} s")


def b64(s):
    return base64.b64encode(s if isinstance(s, bytes) else s.encode()).decode()


def unb64(s):
    return base64.b64decode(s) if s else b""


# ---------------------------------------------------------------------------
# Guests


class Guest:
    def __init__(self, name, opts, transport="virtio", init_args=""):
        self.name = name
        self.opts = opts
        self.transport = transport
        self.run = os.path.join(opts.work, "run", name)
        shutil.rmtree(self.run, ignore_errors=True)
        os.makedirs(self.run)
        self.console = os.path.join(self.run, "console.log")
        self.sock = os.path.join(self.run, "qga.sock")
        self.init_args = init_args
        self.initramfs = opts.initramfs
        self.memory = "256M"
        # More virtio-serial ports: (chardev id, socket path, port name).
        self.extra_ports = []
        self.qemu = None
        self.backend = None
        self.t0 = None

    def cmdline(self):
        o = self.opts
        b = BOARDS[o.arch]
        append = f"console={b['console']} panic=-1 rdinit=/init quiet"
        if self.init_args:
            append += " -- " + self.init_args
        cmd = [
            o.row["qemu-system"], "-nodefaults", "-nographic", "-no-user-config",
            "-accel", b["accel"], "-cpu", b["cpu"], "-smp", "1", "-m", self.memory, *b["extra"],
            "-kernel", o.vmlinuz, "-initrd", self.initramfs, "-append", append,
            "-serial", f"file:{self.console}", "-monitor", "none", "-no-reboot",
        ]
        if self.transport == "virtio":
            cmd += [
                "-machine", b["machine"],
                "-device", "virtio-serial-pci,id=vser0",
                "-chardev", f"socket,id=qga0,path={self.sock},server=on,wait=off",
                "-device", "virtserialport,bus=vser0.0,chardev=qga0,name=org.qemu.guest_agent.0",
            ]
            for cid, path, name in self.extra_ports:
                cmd += ["-chardev", f"socket,id={cid},path={path},server=on,wait=off",
                        "-device", f"virtserialport,bus=vser0.0,chardev={cid},name={name}"]
        elif self.transport == "isa":
            cmd += [
                "-machine", b["machine"],
                "-chardev", f"socket,id=qga0,path={self.sock},server=on,wait=off",
                "-serial", "chardev:qga0",
            ]
        elif self.transport == "vsock":
            cmd += [
                "-object", "memory-backend-memfd,id=mem,size=256M,share=on",
                "-machine", b["machine"] + ",memory-backend=mem",
                "-chardev", f"socket,id=vh,path={os.path.join(self.run, 'vhost.sock')}",
                "-device", "vhost-user-vsock-pci,chardev=vh",
            ]
        return cmd

    def start(self):
        if self.transport == "vsock":
            vhost = os.path.join(self.run, "vhost.sock")
            self.backend = subprocess.Popen(
                [self.opts.vsock_backend, "--guest-cid", str(GUEST_CID), "--socket", vhost, "--uds-path", self.sock],
                stdout=open(os.path.join(self.run, "vhost-device-vsock.log"), "wb"), stderr=subprocess.STDOUT,
            )
            deadline = time.monotonic() + 10
            while not os.path.exists(vhost) and time.monotonic() < deadline:
                time.sleep(0.01)
        log = open(os.path.join(self.run, "qemu.log"), "wb")
        self.t0 = time.monotonic()
        self.qemu = subprocess.Popen(self.cmdline(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def connector(self, path=None):
        """Connects to the agent's socket (or `path`, another unix chardev)."""
        if self.transport == "vsock" and path is None:
            def connect():
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    s.settimeout(2)
                    s.connect(self.sock)
                    s.sendall(f"CONNECT {VSOCK_PORT}\n".encode())
                    line = b""
                    while not line.endswith(b"\n"):
                        c = s.recv(1)
                        if not c:
                            raise ConnectionError("vsock backend closed the connection (agent not listening yet)")
                        line += c
                    if not line.startswith(b"OK"):
                        raise ConnectionError(f"vsock handshake: {line!r}")
                    return s
                except Exception:
                    s.close()
                    raise
        else:
            def connect():
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    s.connect(path or self.sock)
                except Exception:
                    s.close()
                    raise
                return s
        return connect

    def client(self, resend=1.0, path=None):
        return Client(self.connector(path), resend)

    def connect_and_sync(self, timeout, resend=1.0, path=None):
        """A synced client. For vsock a refused connect is retried until
        the agent listens."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            c = self.client(resend, path)
            try:
                c.open(deadline)
                c.sync(max(0.5, deadline - time.monotonic()))
                return c
            except (AgentError, OSError) as e:
                last = e
                c.close()
                if self.exited():
                    break
                time.sleep(0.05)
        raise AgentError(f"{self.name}: no agent: {last}")

    def exited(self):
        return self.qemu is not None and self.qemu.poll() is not None

    def wait_exit(self, timeout):
        try:
            self.qemu.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def dump_console(self, why):
        say(f"---- {self.name}: {why}; guest console log ({self.console}) ----")
        try:
            with open(self.console, "rb") as f:
                sys.stdout.write(f.read()[-20000:].decode(errors="replace"))
        except OSError as e:
            say(f"(no console log: {e})")
        for extra in ("qemu.log", "vhost-device-vsock.log"):
            p = os.path.join(self.run, extra)
            if os.path.exists(p) and os.path.getsize(p):
                say(f"---- {extra} ----")
                with open(p, "rb") as f:
                    sys.stdout.write(f.read()[-4000:].decode(errors="replace"))
        say(f"---- end of {self.name} logs ----")

    def stop(self):
        for p in (self.qemu, self.backend):
            if p is None or p.poll() is not None:
                continue
            p.terminate()
            try:
                p.wait(3)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


# ---------------------------------------------------------------------------
# The checks


def boot(g, timeout=60):
    g.start()
    try:
        c = g.connect_and_sync(timeout, resend=0.5 if g.transport == "isa" else 1.0)
    except AgentError as e:
        failed(f"{g.name}: boot", str(e))
        g.dump_console("no reply from the agent")
        return None
    t_first = c.matched_at  # before the flush of stale syncs
    first = t_first - g.t0
    passed(f"{g.name}: boot and guest-sync-delimited", f"{first:.2f} s from QEMU start")
    measured(f"{g.name}: QEMU start to first reply", f"{first:.2f} s")
    guard(g, boot_split, c, t_first)
    return c


def kernel_log_mark(c, tag):
    """Writes `tag` to the guest's kernel log; returns (the host's
    monotonic time the record's dmesg stamp maps to, +- seconds). Through
    guest-file-write on /dev/kmsg the agent's write(2) stamps it within
    one round trip; where the file commands are blocked, a guest-exec'd
    `echo` does, somewhere between the request and the status that says
    it exited (a looser tie)."""
    data = {"buf-b64": b64(tag + "\n")}
    try:
        h = c.ok("guest-file-open", {"path": "/dev/kmsg", "mode": "w"})
        t_send = time.monotonic()
        c.ok("guest-file-write", dict(data, handle=h))
        t_back = time.monotonic()
        c.ok("guest-file-close", {"handle": h})
    except AgentError:
        t_send = time.monotonic()
        c.exec_wait({"path": "sh", "arg": ["-c", f"echo {tag} >/dev/kmsg"]})
        t_back = time.monotonic()
    return (t_send + t_back) / 2, (t_back - t_send) / 2


def boot_times(c, t_first):
    """The boot in the guest's clock (dmesg's), from the agent's first
    reply at host time t_first: {"init": kernel start -> /init (s),
    "first_ms": /init -> first reply, "open_ms": /init -> qga's "channel
    ... is open" stamp (None without it), "err_ms": +- of first_ms,
    "rss": pid 1's VmRSS, "lines": dmesg, "mark": the mark's stamp}; None
    without the stamps. /init is dmesg's "Run /init as init process"; the
    first reply is placed from a kernel-log mark written at a known host
    time (`kernel_log_mark`), minus the host time in between."""
    tag = f"qga-e2e-mark-{random.randrange(1 << 30)}"
    t_tag, err = kernel_log_mark(c, tag)
    st = c.exec_wait({"path": "sh", "arg": ["-c", "dmesg; grep -h VmRSS /proc/1/status"], "capture-output": True})
    lines = unb64(st.get("out-data")).decode(errors="replace").splitlines()

    def stamp(text):
        hit = [l for l in lines if text in l and l.startswith("[")]
        return float(hit[0][1:].split("]")[0]) if hit else None

    t_init, t_mark = stamp("Run /init as init process"), stamp(tag)
    if t_init is None or t_mark is None:
        return None
    at_first = t_mark - (t_tag - t_first)
    t_open = stamp("qga: channel ")
    rss = [l.split()[1] for l in lines if l.startswith("VmRSS:")]
    return {"init": t_init, "first_ms": (at_first - t_init) * 1000, "err_ms": err * 1000,
            "open_ms": (t_open - t_init) * 1000 if t_open is not None else None,
            "rss": rss[0] if rss else None, "lines": lines, "mark": t_mark}


def boot_split(g, c, t_first):
    """Prints `boot_times`: kernel start -> /init, /init -> first reply,
    and where qga stamped it, /init -> channel open and the gap from there
    to the first reply."""
    b = boot_times(c, t_first)
    if b is None:
        skipped(f"{g.name}: boot split", "no 'Run /init as init process' or mark in dmesg")
        return
    if b["rss"]:
        measured(f"{g.name}: qga (pid 1) VmRSS after start, in the guest", f"{b['rss']} KiB")
    # What the kernel logged after /init started (module loads, devices).
    t_init = b["init"]
    for l in [l for l in b["lines"] if l.startswith("[") and t_init < float(l[1:].split("]")[0]) < b["mark"]][:12]:
        say(f"  dmesg after /init: {l}")
    measured(f"{g.name}: kernel start to /init (guest clock)", f"{t_init:.3f} s")
    err = f"(+- {b['err_ms']:.0f} ms)"
    measured(f"{g.name}: /init to first reply (guest clock)", f"{b['first_ms']:.0f} ms {err}")
    # qga (PID 1) stamps the kernel log when its channel opens: the port's
    # appearance as qga saw it, in dmesg's clock.
    if b["open_ms"] is not None:
        measured(f"{g.name}: /init to channel open (guest clock)", f"{b['open_ms']:.0f} ms")
        measured(f"{g.name}: first reply - channel open", f"{b['first_ms'] - b['open_ms']:.0f} ms {err}")


def checks_basic(g, c):
    i = random.randrange(1, 1 << 30)
    c.send(b"\xff" + json.dumps({"execute": "guest-sync-delimited", "arguments": {"id": i}}).encode())
    # qemu-ga answers the 0xFF itself with a parse error, then 0xFF + reply.
    deadline = time.monotonic() + 10
    while not (b"\xff" in c.buf and b"\n" in c.buf.split(b"\xff", 1)[1]):
        c._fill(deadline)
    before, after = c.buf.split(b"\xff", 1)
    line, c.buf = after.split(b"\n", 1)
    check(f"{g.name}: guest-sync-delimited sends 0xFF then the id",
          json.loads(line) == {"return": i} and b"JSON parse error" in before, repr(before + b"\xff" + line))
    check(f"{g.name}: guest-ping", c.call("guest-ping") == {"return": {}})
    info = c.ok("guest-info")
    names = {x["name"] for x in info.get("supported_commands", [])}
    check(f"{g.name}: guest-info", "version" in info and "guest-exec" in names, str(info)[:200])
    return names


def checks_exec(g, c, names):
    script = ["-c", "echo out; echo err >&2"]
    modes = [
        (None, None, None),
        (False, None, None),
        (True, b"out\n", b"err\n"),
        ("none", None, None),
        ("stdout", b"out\n", None),
        ("stderr", None, b"err\n"),
        ("separated", b"out\n", b"err\n"),
        ("merged", b"out\nerr\n", None),
    ]
    for mode, out, err in modes:
        args = {"path": "sh", "arg": script}
        if mode is not None:
            args["capture-output"] = mode
        st = c.exec_wait(args)
        got_out = unb64(st["out-data"]) if "out-data" in st else None
        got_err = unb64(st["err-data"]) if "err-data" in st else None
        check(f"{g.name}: guest-exec capture-output={json.dumps(mode)}",
              st.get("exitcode") == 0 and got_out == out and got_err == err, f"status {st}")

    data = os.urandom(200_000)
    st = c.exec_wait({"path": "cat", "input-data": b64(data), "capture-output": True})
    check(f"{g.name}: guest-exec input-data (200 kB binary through cat)", unb64(st.get("out-data")) == data,
          f"got {len(unb64(st.get('out-data')))} bytes, exitcode {st.get('exitcode')}")

    # The big-block paths: input-data of 1 MiB or more is decoded in place
    # and lent to the pipe (vmsplice), a big capture is prefaulted a MiB at
    # a time; all of it rounds to the kernel's page size (16 KiB on the
    # aarch64-16k guest).
    page = c.exec_wait({"path": "sh", "arg": ["-c", "grep -m1 KernelPageSize /proc/self/smaps"],
                        "capture-output": True})
    page_kib = (unb64(page.get("out-data")) or b"").split()[1:2]
    want_kib = g.opts.row.get("page-kib", "4")
    check(f"{g.name}: the guest's page size is {want_kib} KiB", page_kib == [want_kib.encode()], str(page))
    data = os.urandom(3 << 20)
    st = c.exec_wait({"path": "sh", "arg": ["-c", "cat; head -c 8388608 /dev/zero"], "input-data": b64(data),
                      "capture-output": True}, timeout=120)
    out = unb64(st.get("out-data"))
    check(f"{g.name}: guest-exec 3 MiB input-data (lent) and an 8 MiB capture (prefaulted)",
          st.get("exitcode") == 0 and out[:len(data)] == data and len(out) == len(data) + (8 << 20)
          and not out[len(data):].strip(b"\0"), f"got {len(out)} bytes, exitcode {st.get('exitcode')}")

    st = c.exec_wait({"path": "sh", "arg": ["-c", "exit 42"]})
    check(f"{g.name}: exit code", st.get("exitcode") == 42 and "signal" not in st, str(st))
    st = c.exec_wait({"path": "sh", "arg": ["-c", "kill -USR1 $$"]})
    check(f"{g.name}: killed by a signal", st.get("signal") == signal.SIGUSR1 and "exitcode" not in st, str(st))
    # Children inherit no agent fd (every agent fd is close-on-exec).
    st = c.exec_wait({"path": "sh", "arg": ["-c", "ls /proc/$$/fd; exit 0"], "capture-output": True})
    check(f"{g.name}: a child holds only fds 0-2", unb64(st.get("out-data")) == b"0\n1\n2\n", str(st))
    r = c.call("guest-exec", {"path": "/no/such/program"})
    check(f"{g.name}: exec of a missing program fails", "error" in r, str(r))

    # Orphans re-parented to init are reaped.
    c.exec_wait({"path": "sh", "arg": ["-c", "(sleep 0.2 &) ; exit 0"]})
    time.sleep(1.0)
    st = c.exec_wait({"path": "sh", "arg": ["-c", "cat /proc/[0-9]*/stat 2>/dev/null"], "capture-output": True})
    zombies = [l for l in unb64(st.get("out-data")).decode(errors="replace").splitlines() if ") Z " in l]
    check(f"{g.name}: orphans are reaped (no zombies)", not zombies, "; ".join(zombies))

    if "guest-exec-terminate" not in names:
        skipped(f"{g.name}: extensions", "the agent has no guest-exec-terminate")
        return
    # stream: output arrives while the program runs.
    pid = c.ok("guest-exec", {"path": "sh", "arg": ["-c", "for i in 1 2 3; do echo $i; sleep 0.4; done"],
                              "capture-output": True, "stream": True})["pid"]
    chunks, deadline = [], time.monotonic() + 20
    st = {}
    while time.monotonic() < deadline:
        st = c.ok("guest-exec-status", {"pid": pid, "wait": 5}, timeout=10)
        if st.get("out-data"):
            chunks.append((bool(st.get("exited")), unb64(st["out-data"])))
        if st.get("exited"):
            break
    live = len(chunks) >= 2 and not chunks[0][0]  # output came while it ran
    check(f"{g.name}: stream (live output)", b"".join(x for _, x in chunks) == b"1\n2\n3\n" and live and st.get("exitcode") == 0,
          f"chunks {chunks}, last {st}")
    # wait: the status is held until the exit.
    pid = c.ok("guest-exec", {"path": "sleep", "arg": ["1"]})["pid"]
    t = time.monotonic()
    st = c.ok("guest-exec-status", {"pid": pid, "wait": 10}, timeout=15)
    took = time.monotonic() - t
    check(f"{g.name}: guest-exec-status wait", st.get("exited") and took > 0.5, f"{st} after {took:.2f} s")
    # terminate: SIGKILL by default, or a named signal.
    for sig, want in ((None, signal.SIGKILL), ("TERM", signal.SIGTERM)):
        pid = c.ok("guest-exec", {"path": "sleep", "arg": ["100"]})["pid"]
        args = {"pid": pid} if sig is None else {"pid": pid, "signal": sig}
        r = c.call("guest-exec-terminate", args)
        st = c.ok("guest-exec-status", {"pid": pid, "wait": 10}, timeout=15)
        check(f"{g.name}: guest-exec-terminate signal={sig or 'default'}", r == {"return": {}} and st.get("signal") == want, f"{r} {st}")
    # user / cwd: the static binary resolves names from /etc/passwd.
    st = c.exec_wait({"path": "sh", "arg": ["-c", "id -un; pwd"], "capture-output": True, "user": "nobody", "cwd": "/tmp"})
    check(f"{g.name}: guest-exec user and cwd", unb64(st.get("out-data")) == b"nobody\n/tmp\n", str(st))
    # timeout: SIGTERM at expiry, timed-out in the status.
    pid = c.ok("guest-exec", {"path": "sleep", "arg": ["100"], "timeout": 1})["pid"]
    st = c.ok("guest-exec-status", {"pid": pid, "wait": 10}, timeout=15)
    check(f"{g.name}: timeout", st.get("timed-out") is True and st.get("signal") == signal.SIGTERM, str(st))


def checks_disconnect(g, c):
    """Host goes away in the middle of an exec, comes back, and the result
    is still there. The exec measures qga's own voluntary context switches
    over 10 s while the host side is disconnected."""
    script = ("sleep 1; a=$(awk '/^voluntary_ctxt_switches/ {print $2}' /proc/$PPID/status); sleep 10; "
              "b=$(awk '/^voluntary_ctxt_switches/ {print $2}' /proc/$PPID/status); echo $a $b; echo done")
    pid = c.ok("guest-exec", {"path": "sh", "arg": ["-c", script], "capture-output": True})["pid"]
    c.close()
    time.sleep(12)
    try:
        c.open(time.monotonic() + 10)
        c.sync(20)
    except AgentError as e:
        failed(f"{g.name}: reconnect after a host disconnect", str(e))
        g.dump_console("no reply after reconnecting")
        return False
    passed(f"{g.name}: reconnect after a host disconnect")
    st = c.ok("guest-exec-status", {"pid": pid, "wait": 10}, timeout=15)
    out = unb64(st.get("out-data")).decode(errors="replace").split()
    ok = check(f"{g.name}: exec result kept across the disconnect", st.get("exited") and out[-1:] == ["done"], str(st))
    if ok and len(out) == 3:
        a, b = int(out[0]), int(out[1])
        measured(f"{g.name}: qga voluntary context switches in 10 s with the host disconnected", f"{b - a} ({(b - a) / 10:.1f} wakeups/s)")
    return True


def checks_files(g, c, names):
    need = {"guest-file-open", "guest-file-write", "guest-file-read", "guest-file-close"}
    if not need <= names:
        skipped(f"{g.name}: guest-file-*", "the agent lacks " + ", ".join(sorted(need - names)))
        return
    data = os.urandom(100_000) + b"\0\xff\n"
    h = c.ok("guest-file-open", {"path": "/tmp/e2e.bin", "mode": "w"})
    w = c.ok("guest-file-write", {"handle": h, "buf-b64": b64(data)})
    c.ok("guest-file-close", {"handle": h})
    h = c.ok("guest-file-open", {"path": "/tmp/e2e.bin", "mode": "r"})
    got = b""
    while True:
        r = c.ok("guest-file-read", {"handle": h, "count": 65536})
        got += unb64(r.get("buf-b64"))
        if r.get("eof") or not r.get("count"):
            break
    c.ok("guest-file-close", {"handle": h})
    st = c.exec_wait({"path": "md5sum", "arg": ["/tmp/e2e.bin"], "capture-output": True})
    guest_md5 = unb64(st.get("out-data")).split()[:1]
    check(f"{g.name}: guest-file-* write/read round trip", w.get("count") == len(data) and got == data
          and guest_md5 == [hashlib.md5(data).hexdigest().encode()], f"wrote {w}, read {len(got)} bytes, md5 {guest_md5}")


def checks_osinfo(g, c, names):
    if "guest-get-osinfo" in names:
        r = c.ok("guest-get-osinfo")
        check(f"{g.name}: guest-get-osinfo", str(r.get("kernel-release", "")).startswith(os.path.basename(
            g.opts.vmlinuz)[8:13]) and r.get("machine") == g.opts.arch.split("-")[0], str(r))
    else:
        skipped(f"{g.name}: guest-get-osinfo", "not implemented by the agent")
    if "guest-network-get-interfaces" in names:
        r = c.ok("guest-network-get-interfaces")
        check(f"{g.name}: guest-network-get-interfaces", any(i.get("name") == "lo" for i in r), str(r)[:300])
    else:
        skipped(f"{g.name}: guest-network-get-interfaces", "not implemented by the agent")


def qgactl_path():
    p = os.path.join(ROOT, "target", "release", "qgactl")
    return p if os.access(p, os.X_OK) else None


def checks_qgactl(g, c):
    """Runs with our own client disconnected (the chardev takes one client)."""
    tool = qgactl_path()
    if not tool:
        skipped(f"{g.name}: qgactl", "target/release/qgactl not built")
        return
    env = dict(os.environ, QGA_SOCKET=g.sock)
    c.close()
    try:
        # Live output: the first line arrives long before the program ends.
        t = time.monotonic()
        p = subprocess.Popen([tool, "exec", "--", "sh", "-c", "echo first; sleep 2; echo second; exit 3"],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        first = p.stdout.readline()
        t_first = time.monotonic() - t
        rest, err = p.communicate(timeout=60)
        t_all = time.monotonic() - t
        check(f"{g.name}: qgactl exec live output and exit code",
              first == b"first\n" and rest == b"second\n" and p.returncode == 3 and t_all - t_first > 1.5,
              f"first {first!r} at {t_first:.2f} s, rest {rest!r} at {t_all:.2f} s, rc {p.returncode}, stderr {err[-300:]!r}")
        # push / pull of a binary file.
        local = os.path.join(g.run, "push.bin")
        back = os.path.join(g.run, "pull.bin")
        data = os.urandom(1 << 20) + bytes(range(256))
        with open(local, "wb") as f:
            f.write(data)
        r1 = subprocess.run([tool, "push", local, "/tmp/pushed.bin"], env=env, capture_output=True, timeout=120)
        r2 = subprocess.run([tool, "pull", "/tmp/pushed.bin", back], env=env, capture_output=True, timeout=120)
        got = open(back, "rb").read() if os.path.exists(back) else b""
        if r1.returncode != 0 and b"guest-file" in r1.stderr + r1.stdout:
            skipped(f"{g.name}: qgactl push/pull", r1.stderr.decode(errors="replace").strip()[-200:])
        else:
            check(f"{g.name}: qgactl push/pull of a binary file (1 MiB)", r1.returncode == 0 and r2.returncode == 0 and got == data,
                  f"push rc {r1.returncode} {r1.stderr[-200:]!r}, pull rc {r2.returncode} {r2.stderr[-200:]!r}, {len(got)} bytes back")
    finally:
        c.open(time.monotonic() + 10)
        c.sync(20)


def checks_qgactl_shell(g, c):
    """`qgactl shell` over virtio-serial in a pseudo-terminal of our own:
    type a command and see its output, resize, `exit 3` -> exit code 3 and
    the local terminal's settings restored."""
    import fcntl
    import pty
    import select
    import struct
    import termios
    tool = qgactl_path()
    if not tool:
        skipped(f"{g.name}: qgactl shell", "target/release/qgactl not built")
        return
    c.close()
    pid, fd = None, None
    try:
        pid, fd = pty.fork()
        if pid == 0:
            os.environ["QGA_SOCKET"] = g.sock
            os.execv(tool, [tool, "shell"])
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
        out = bytearray()

        def until(pat, t=60):
            end = time.monotonic() + t
            while pat not in out:
                left = end - time.monotonic()
                if left <= 0 or not select.select([fd], [], [], left)[0]:
                    raise TimeoutError(f"no {pat!r} from qgactl shell; got {bytes(out[-300:])!r}")
                try:
                    out.extend(os.read(fd, 65536))
                except OSError:
                    raise TimeoutError(f"qgactl shell ended before {pat!r}; got {bytes(out[-300:])!r}")

        os.write(fd, b"echo marker-$((6*7)); stty size 2>&1\r")
        until(b"marker-42")
        has_stty = b"not found" not in out
        if has_stty:
            until(b"30 100")
            fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
            # SIGWINCH -> guest-exec-resize; ask until the guest sees it
            # (each answer tagged: size-I ROWS COLS).
            end = time.monotonic() + 30
            i = 0
            while b"size-%d 40 120" % i not in out and time.monotonic() < end:
                i += 1
                os.write(fd, b"echo size-%d $(stty size)\r" % i)
                end_i = time.monotonic() + 30
                while not re.search(rb"size-%d \d" % i, bytes(out)) and time.monotonic() < end_i:
                    if select.select([fd], [], [], 1)[0]:
                        out.extend(os.read(fd, 65536))
            check(f"{g.name}: qgactl shell: stty size follows a resize", b"size-%d 40 120" % i in out, repr(bytes(out[-300:])))
        else:
            skipped(f"{g.name}: qgactl shell resize", "the guest has no stty")
        os.write(fd, b"exit 3\r")
        try:
            while os.read(fd, 65536):
                pass
        except OSError:
            pass
        _, status = os.waitpid(pid, 0)
        pid = None
        rc = os.waitstatus_to_exitcode(status)
        check(f"{g.name}: qgactl shell: command output and exit 3", rc == 3, f"rc {rc}, output {bytes(out[-300:])!r}")
        lflag = termios.tcgetattr(fd)[3]
        cooked = termios.ICANON | termios.ECHO | termios.ISIG
        check(f"{g.name}: qgactl shell: the terminal is cooked again", lflag & cooked == cooked, f"lflag {lflag:#x}")
    finally:
        if pid:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        if fd is not None:
            os.close(fd)
        c.open(time.monotonic() + 10)
        c.sync(20)


def checks_poweroff(g, c, names, how):
    """Ends the guest from inside; QEMU must exit (ACPI power off)."""
    t = time.monotonic()
    if how == "guest-shutdown":
        if "guest-shutdown" not in names:
            skipped(f"{g.name}: guest-shutdown", "not implemented by the agent; using SIGTERM to pid 1 instead")
            how = "kill -TERM 1"
        else:
            c.send({"execute": "guest-shutdown"})
    if how != "guest-shutdown":
        c.send({"execute": "guest-exec", "arguments": {"path": "sh", "arg": ["-c", how]}})
    ok = g.wait_exit(20)
    check(f"{g.name}: {how} powers QEMU off", ok, "QEMU still running after 20 s")
    if ok:
        measured(f"{g.name}: {how} to QEMU exit", f"{time.monotonic() - t:.2f} s")
    else:
        g.dump_console(f"{how} did not power off")


def guard(g, fn, *args):
    """Runs a group of checks; an exception fails the group, with the console."""
    try:
        return fn(g, *args)
    except (AgentError, OSError, TimeoutError, KeyError, ValueError) as e:
        failed(f"{g.name}: {fn.__name__}", f"{type(e).__name__}: {e}")
        g.dump_console("error while talking to the agent")
        return None


def guest_virtio(opts):
    g = Guest("virtio", opts)
    try:
        c = boot(g)
        if not c:
            return
        names = guard(g, checks_basic, c) or set()
        guard(g, checks_exec, c, names)
        guard(g, checks_files, c, names)
        guard(g, checks_osinfo, c, names)
        guard(g, checks_qgactl, c)
        guard(g, checks_qgactl_shell, c)
        if guard(g, checks_disconnect, c):
            guard(g, checks_poweroff, c, names, "guest-shutdown")
    finally:
        g.stop()


# The confined guest's exec policy (issue 23; docs/security.md). /bin/X are
# busybox links: each is allowed by its own name, busybox itself is not.
POLICY = """\
[exec]
allow=/bin/sh;/bin/cat;/bin/dd;/bin/mount;/bin/ps;/bin/sleep;/bin/stat;/bin/mkdir
users=root;nobody
cwd=/tmp
env-deny=LD_*;BASH_ENV
profiles=ll;limits;sc;nnp;cg
[rule greet]
path=/bin/echo
args=hello;*
[profile ll]
landlock=required
landlock-read=/bin;/lib;/usr;/etc;/proc;/dev;/sys
landlock-write=/tmp
[profile limits]
rlimit-nofile=64
pids-max=16
memory-max=32M
[profile sc]
seccomp=deny-dangerous
[profile nnp]
no-new-privs=true
[profile cg]
cgroup=true
"""
CONFINED_CONF = """\
[general]
modules-dir=/lib/modules/qga
exec-policy=/etc/qga/exec-policy.conf
audit-log=/run/qga-audit.log
"""


def confined_initramfs(opts):
    """The e2e initramfs plus the policy, the config naming it, and a
    setuid-root copy of qga (the no_new_privs check runs it as nobody)."""
    d = os.path.join(opts.work, "confined")
    os.makedirs(d, exist_ok=True)
    policy, conf = os.path.join(d, "exec-policy.conf"), os.path.join(d, "qemu-ga.conf")
    with open(policy, "w") as f:
        f.write(POLICY)
    with open(conf, "w") as f:
        f.write(CONFINED_CONF)
    out = os.path.join(d, "initramfs.cpio.gz")
    subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "initramfs.py"), "--init", opts.qga,
                    "--busybox", opts.busybox, "--kernel", opts.kernel, "--out", out, "--conf", conf,
                    "--file", f"{policy}:/etc/qga/exec-policy.conf:644", "--file", f"{opts.qga}:/bin/qga-suid:4755"],
                   check=True)
    return out


def checks_policy(g, c):
    """Refused requests never start; allowed ones run; the error names the rule."""
    def refused(name, args, want):
        r = c.call("guest-exec", args)
        desc = r.get("error", {}).get("desc", "")
        check(f"{g.name}: refused: {name}", r.get("error", {}).get("class") == "GenericError" and want in desc, str(r))
    marker = "/tmp/started-anyway"
    refused("a program not allowed", {"path": "touch", "arg": [marker]}, "program '/bin/touch' is not allowed")
    refused("busybox by its own name", {"path": "busybox", "arg": ["touch", marker]}, "is not allowed")
    refused("arguments matching no rule", {"path": "echo", "arg": ["bye", "x"]}, "match no rule")
    refused("a user not allowed", {"path": "sh", "arg": ["-c", f"touch {marker}"], "user": "daemon"}, "user 'daemon' is not allowed")
    refused("a cwd not allowed", {"path": "sh", "arg": ["-c", f"touch {marker}"], "cwd": "/root"}, "working directory '/root'")
    refused("a denied environment variable", {"path": "sh", "arg": ["-c", f"touch {marker}"], "env": ["LD_PRELOAD=/x.so"]},
            "'LD_PRELOAD' matches 'LD_*'")
    refused("a profile not offered", {"path": "sh", "arg": ["-c", f"touch {marker}"], "profile": "none"}, "profile 'none'")
    st = c.exec_wait({"path": "echo", "arg": ["hello", "secret-marker-4711"], "capture-output": True})
    check(f"{g.name}: an exact-argv rule lets its argv run", unb64(st.get("out-data")) == b"hello secret-marker-4711\n", str(st))
    st = c.exec_wait({"path": "sh", "arg": ["-c", f"test -e {marker} && echo started || echo never; id -un; pwd"],
                      "capture-output": True, "user": "nobody", "cwd": "/tmp"})
    check(f"{g.name}: nothing refused ever started; an allowed user and cwd run",
          unb64(st.get("out-data")) == b"never\nnobody\n/tmp\n", str(st))


def checks_confinement(g, c):
    """Each layer observed from inside the child."""
    sh = lambda script, **kw: c.exec_wait({"path": "sh", "arg": ["-c", script], "capture-output": True, **kw}, timeout=60)
    out = lambda st: unb64(st.get("out-data")).decode(errors="replace") + unb64(st.get("err-data")).decode(errors="replace")
    st = sh("echo a > /tmp/ll-a && echo inside-ok; echo b > /run/outside && echo outside-written", profile="ll")
    conf = st.get("confinement", {})
    check(f"{g.name}: landlock: a write outside the allowed paths fails",
          "inside-ok" in out(st) and "outside-written" not in out(st) and "Permission denied" in out(st)
          and conf.get("landlock") in ("enforced", "partial") and conf.get("profile") == "ll", f"{st} {out(st)!r}")
    st = sh("ulimit -n", profile="limits")
    check(f"{g.name}: rlimit nofile", out(st).strip() == "64", out(st))
    st = sh("i=0; while [ $i -lt 40 ]; do sleep 5 & i=$((i+1)); done; wait", profile="limits")
    check(f"{g.name}: a fork bomb stops at pids.max",
          "fork" in out(st).lower() or "resource temporarily unavailable" in out(st).lower(), f"{st} {out(st)[:300]!r}")
    st = c.exec_wait({"path": "dd", "arg": ["if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"], "profile": "limits"}, timeout=60)
    cg = st.get("cgroup", {})
    check(f"{g.name}: an allocation over memory.max is an OOM kill the status reports",
          st.get("signal") == signal.SIGKILL and cg.get("oom-killed") is True and cg.get("memory-peak", 0) > 0, str(st))
    st = sh("mkdir -p /tmp/mnt; mount -t tmpfs none /tmp/mnt 2>&1; echo rc=$?", profile="sc")
    check(f"{g.name}: seccomp: a denied syscall (mount) fails with EPERM",
          # busybox words EPERM from mount(2) as "permission denied (are you root?)".
          ("Operation not permitted" in out(st) or "permission denied" in out(st).lower()) and "rc=0" not in out(st)
          and st.get("confinement", {}).get("seccomp") is True, out(st))
    st = sh("mount -t tmpfs none /tmp/mnt 2>&1 && echo mounted && umount /tmp/mnt")
    check(f"{g.name}: without the profile the same mount works (root)", "mounted" in out(st), out(st))
    # A setuid-root program run by nobody: its state file is root's unless
    # no_new_privs kept the gain from happening.
    probe = ("mkdir -p /tmp/nnp$1 && cd /tmp/nnp$1 && QGA_CONF=/nonexistent /bin/qga-suid -m unix-listen -p s -t . & "
             "sleep 2; kill $!; stat -c %u /tmp/nnp$1/qga.state")
    c.exec_wait({"path": "mkdir", "arg": ["-p", "-m", "1777", "/tmp/nnp-a", "/tmp/nnp-b"]})
    plain = sh(probe.replace("$1", "-a"), user="nobody", cwd="/tmp")
    nnp = sh(probe.replace("$1", "-b"), user="nobody", cwd="/tmp", profile="nnp")
    check(f"{g.name}: no_new_privs blocks a setuid gain (without it the gain happens)",
          out(plain).strip().endswith("0") and out(nnp).strip().endswith("65534"), f"{out(plain)!r} vs {out(nnp)!r}")
    # terminate kills a daemonised grandchild through the cgroup.
    pid = c.ok("guest-exec", {"path": "sh", "arg": ["-c", "setsid sleep 777 </dev/null >/dev/null 2>&1 & sleep 600"],
                              "profile": "cg"})["pid"]
    time.sleep(1.0)
    c.ok("guest-exec-terminate", {"pid": pid})
    st = c.ok("guest-exec-status", {"pid": pid, "wait": 10}, timeout=15)
    time.sleep(0.5)
    left = sh("ps -o pid,args | grep 'sleep 777' | grep -v grep || true")
    check(f"{g.name}: terminate kills a daemonised grandchild through the cgroup",
          st.get("signal") == signal.SIGKILL and "sleep 777" not in out(left), f"{st} {out(left)!r}")


def checks_audit(g, c):
    """One record per exec request (started or refused), never the argv."""
    requests = c.execs
    st = c.exec_wait({"path": "cat", "arg": ["/run/qga-audit.log"], "capture-output": True})
    text = unb64(st.get("out-data")).decode(errors="replace")
    recs = [json.loads(l) for l in text.splitlines() if l.strip()]
    execs = [r for r in recs if r.get("event") in ("exec-start", "exec-refused")]
    # requests: exec requests made so far, plus this cat.
    # The cat's own record may be written before or after it reads.
    check(f"{g.name}: audit: one record per guest-exec request", requests <= len(execs) <= requests + 1,
          f"{len(execs)} records for {requests} requests before this one")
    check(f"{g.name}: audit: no argv in the records", "sleep 777" not in text and "secret-marker" not in text and "nnp-a" not in text,
          text[-400:])
    ends = [r for r in recs if r.get("event") == "exec-end"]
    check(f"{g.name}: audit: an end record with the outcome (OOM seen)", any(r.get("oom-kill") for r in ends), str(ends[-3:]))


def guest_confined(opts):
    g = Guest("confined", opts)
    g.initramfs = confined_initramfs(opts)
    try:
        c = boot(g)
        if not c:
            return
        guard(g, checks_policy, c)
        guard(g, checks_confinement, c)
        guard(g, checks_audit, c)
    finally:
        g.stop()


def guest_isa(opts):
    g = Guest("isa-serial", opts, "isa", "-m isa-serial -p /dev/ttyS1")
    try:
        c = boot(g)
        if not c:
            return
        names = guard(g, checks_basic, c) or set()
        st = guard(g, lambda g, c: c.exec_wait({"path": "sh", "arg": ["-c", "echo hello; exit 7"], "capture-output": True}), c)
        check(f"{g.name}: guest-exec", st is not None and unb64(st.get("out-data")) == b"hello\n" and st.get("exitcode") == 7, str(st))
        # busybox `poweroff` signals init (SIGUSR2).
        guard(g, checks_poweroff, c, names, "poweroff")
    finally:
        g.stop()


def guest_vsock(opts):
    if not opts.vsock_backend:
        skipped("vsock", "vhost-device-vsock is not installed and could not be built "
                         f"(see {os.path.join(opts.work, 'vsock-install.log')})")
        return
    # The host's CID (2) is the one allowed: the suite's connections are served.
    g = Guest("vsock", opts, "vsock", f"-m vsock-listen -p {0xFFFFFFFF}:{VSOCK_PORT} --allow-vsock-cids 2")
    try:
        c = boot(g)
        if not c:
            return
        names = guard(g, checks_basic, c) or set()
        st = guard(g, lambda g, c: c.exec_wait({"path": "sh", "arg": ["-c", "echo hello"], "capture-output": True}), c)
        check(f"{g.name}: guest-exec", st is not None and unb64(st.get("out-data")) == b"hello\n", str(st))
        c.close()
        try:
            c2 = g.connect_and_sync(20)
            passed(f"{g.name}: a second connection after the first closed")
        except AgentError as e:
            failed(f"{g.name}: a second connection after the first closed", str(e))
            g.dump_console("no second connection")
            return
        # SIGTERM to pid 1 ends the machine (qemu-ga would exit and panic the kernel).
        guard(g, checks_poweroff, c2, names, "kill -TERM 1")
    finally:
        g.stop()


def guest_vsock_refused(opts):
    """--allow-vsock-cids without the host's CID: every connection of the
    host is closed unanswered, and the agent says so on the console."""
    if not opts.vsock_backend:
        skipped("vsock-refused", "vhost-device-vsock is not installed and could not be built")
        return
    # -v: the agent says when its modules are loaded (it listens right
    # after); connecting only then keeps the backend from queueing
    # connections to a guest that has no vsock driver yet.
    g = Guest("vsock-refused", opts, "vsock", f"-v -m vsock-listen -p {0xFFFFFFFF}:{VSOCK_PORT} --allow-vsock-cids 5")
    try:
        g.start()
        connect = g.connector()
        answered, tries, log = [], 0, ""
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not g.exited() and "kernel modules" not in log:
            time.sleep(0.2)
            with open(g.console, errors="replace") as f:
                log = f.read()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not g.exited() and "refused client" not in log:
            tries += 1
            try:
                s = connect()
            except (OSError, ConnectionError):
                # Not listening yet, or accepted and closed before the
                # backend's OK: the console tells which.
                s = None
            if s is not None:
                try:
                    s.settimeout(3)
                    s.sendall(b'{"execute":"guest-ping"}\n')
                    data = s.recv(100)
                    if data:
                        answered.append(data)
                except OSError:
                    pass
                finally:
                    s.close()
            time.sleep(0.2)
            with open(g.console, errors="replace") as f:
                log = f.read()
        check(f"{g.name}: the host (CID 2) outside --allow-vsock-cids is refused, never answered",
              "refused client" in log and "Vsock { cid: 2" in log and not answered,
              f"{tries} connects, answered {answered[:2]}, console tail {log[-300:]!r}")
    finally:
        g.stop()


def main():
    ap = argparse.ArgumentParser(description="qga VM suite")
    ap.add_argument("--qga", default=os.path.join(ROOT, "target/static/qga"))
    ap.add_argument("--busybox", default="/bin/busybox")
    ap.add_argument("--kernel", default=os.path.join(ROOT, "target/e2e/kernel/current"))
    ap.add_argument("--work", default=os.path.join(ROOT, "target/e2e"))
    ap.add_argument("--arch", default="x86_64", choices=sorted(BOARDS))
    ap.add_argument("--only")
    opts = ap.parse_args()
    opts.work = os.path.abspath(opts.work)
    opts.row = arch_row(opts.arch)
    opts.only = opts.only or BOARDS[opts.arch]["transports"]
    t_start = time.monotonic()

    opts.vmlinuz = kernel_image(opts.kernel, "e2e")
    opts.initramfs = os.path.join(opts.work, "initramfs.cpio.gz")
    subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "initramfs.py"), "--init", opts.qga,
                    "--busybox", opts.busybox, "--kernel", opts.kernel, "--out", opts.initramfs], check=True)
    tools = [os.path.join(d, "tools", "bin", "vhost-device-vsock") for d in (opts.work, os.path.join(ROOT, "target", "e2e"))]
    opts.vsock_backend = shutil.which("vhost-device-vsock") or next((p for p in tools if os.access(p, os.X_OK)), None)
    say(f"e2e: {opts.arch}, kernel {os.path.basename(opts.vmlinuz)}, qga {opts.qga} ({os.path.getsize(opts.qga)} bytes), "
        f"qgactl {'present' if qgactl_path() else 'absent'}")

    only = set(opts.only.split(","))
    for name, fn in (("virtio", guest_virtio), ("confined", guest_confined), ("isa", guest_isa), ("vsock", guest_vsock),
                     ("vsock-refused", guest_vsock_refused)):
        if name in only:
            fn(opts)

    say("")
    say(f"e2e: measurements ({time.monotonic() - t_start:.0f} s in all):")
    for name, value in MEASURED:
        say(f"  {name}: {value}")
    say(f"{RESULTS['passed']} passed, {RESULTS['failed']} failed, {RESULTS['skipped']} skipped")
    sys.exit(1 if RESULTS["failed"] else 0)


if __name__ == "__main__":
    main()
