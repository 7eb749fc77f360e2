#!/usr/bin/env python3
"""`make bench-vm`: qga and Debian's qemu-ga side by side inside TCG guests.

    scripts/bench/vm.py [--rounds N] [--agents qga,qemu-ga-10,qemu-ga-7.2] \
        [--qga target/static/qga] [--qgactl target/static/qgactl-dist/qgactl] \
        [--kernel target/e2e/kernel/current] [--busybox /bin/busybox] \
        [--out target/bench/vm.md] [--stream-mib 32]

One guest per agent, all booted from the same kernel and the same initramfs:
/init is a static qga (the *control* agent, PID 1) on the virtio port
org.qemu.guest_agent.1; the agent under test runs as an ordinary daemon on
org.qemu.guest_agent.0, started by the control agent with the same command
line qemu-ga's packaging uses. Only the agent binary differs between guests.
Everything the harness reads inside a guest (the agent's CPU time from
/proc/PID/schedstat and /proc/PID/stat, VmRSS/VmHWM, context switches, the
kernel-log marks that time the start-up) is read through the control agent,
so the agent under test does no work for the measurement.

Workloads, alternated between the guests each round (the order rotates):
  start      agent start -> first reply, in the guest's clock: a shell marks
             /dev/kmsg, starts the agent on a unix socket and runs qgactl
             (retrying every ~1 ms) until a guest-ping is answered, marks
             again; minus the same marks around qgactl against an agent
             already running (qgactl's own exec and round trips)
  ping       guest-ping round trip from the host (median of 200) and 2,000
             pipelined guest-pings in one write
  exec       guest-exec /bin/true + guest-exec-status polled back to back
             until exited, x100 (rate and polls per exec); qga also with
             `wait`
  capture    `cat` of 1/4/8/12 MiB with capture-output, status polled every
             20 ms (qga also with `wait`): wall time and agent CPU
  input      input-data of 4/16 MiB into `wc -c`: wall time and agent CPU
  hwm        a fresh agent captures 8 MiB: VmRSS before, VmHWM after
  idle       a connected, idle agent for 5 s: CPU and context switches
  stream     qga only: `qgactl exec -- cat FILE > out` and `qgactl push`
             from the host through the virtio port (MiB/s)

Figures are medians over the rounds; "ratio" is qemu-ga's figure over qga's
(higher = qga better) from the medians, with the per-round ratios listed for
the rows that have targets. Informational: it never fails on a number, only
when a workload returns a wrong result.
"""

import argparse
import base64
import json
import os
import platform
import random
import re
import shutil
import statistics
import socket
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts", "e2e"))
import run as e2e  # noqa: E402  (Guest, Client, BOARDS, arch_row)
from disks import ldd_files  # noqa: E402

MiB = 1 << 20
AGENT_PORT = "/dev/virtio-ports/org.qemu.guest_agent.0"
CONTROL_PORT = "/dev/virtio-ports/org.qemu.guest_agent.1"
AGENT_BIN = {"qga": "/opt/agents/qga", "qemu-ga-10": "/opt/agents/qemu-ga-10", "qemu-ga-7.2": "/opt/agents/qemu-ga-7.2",
             "qga-b": "/opt/agents/qga-b"}
CAPTURE_MIB = (1, 4, 8, 12)
INPUT_MIB = (4, 16)
EXEC_N = 100
PING_N = 200
PIPELINE_N = 2000
CAPTURE_POLL = 0.02
IDLE_SECONDS = 5


def say(msg):
    print(msg, flush=True)


class Fail(Exception):
    pass


# ---------------------------------------------------------------------------
# Guests


class BenchGuest(e2e.Guest):
    """A guest with two virtio ports: .1 for the control qga (PID 1), .0 for
    the agent under test."""

    def __init__(self, agent, opts):
        super().__init__(f"bench-{agent}", opts, "virtio", f"-m virtio-serial -p {CONTROL_PORT}")
        self.agent = agent
        self.ctl_sock = os.path.join(self.run, "ctl.sock")
        self.memory = "768M"
        self.extra_ports = [("ctl0", self.ctl_sock, "org.qemu.guest_agent.1")]
        self.pid = None

    def control(self, timeout):
        try:
            return self.connect_and_sync(timeout, path=self.ctl_sock)
        except e2e.AgentError as e:
            raise Fail(f"{self.name}: no control agent: {e}")


class Bench:
    def __init__(self, agent, opts):
        self.agent = agent
        self.opts = opts
        self.g = BenchGuest(agent, opts)
        self.ctl = None
        self.c = None
        self.pid = None

    # -- the control agent ----------------------------------------------------

    def run(self, req, what, timeout=120):
        """Runs `req` (a guest-exec request, output captured) through the
        control agent to its end; its final status. A non-zero exit stops
        the benchmark."""
        pid = self.ctl.ok("guest-exec", dict(req, **{"capture-output": True}), timeout=timeout)["pid"]
        st = self.ctl.ok("guest-exec-status", {"pid": pid, "wait": timeout}, timeout=timeout + 10)
        if st.get("exitcode") != 0:
            out = e2e.unb64(st.get("out-data")).decode(errors="replace")
            err = e2e.unb64(st.get("err-data")).decode(errors="replace")
            raise Fail(f"{self.agent}: {what} failed ({st.get('exitcode')}): {out[-300:]} {err[-300:]}")
        return st

    def sh(self, script, timeout=120):
        """Runs `sh -c script` through the control agent; its stdout."""
        st = self.run({"path": "/bin/sh", "arg": ["-c", script]}, f"guest script {script[:80]!r}", timeout)
        return e2e.unb64(st.get("out-data")).decode(errors="replace")

    def proc(self):
        """The agent's CPU (ns from schedstat, ticks from stat), RSS, HWM,
        context switches."""
        out = self.sh(f"cat /proc/{self.pid}/schedstat /proc/{self.pid}/stat /proc/{self.pid}/status"
                      f" /proc/{self.pid}/io 2>/dev/null")
        lines = out.splitlines()
        sched = lines[0].split()
        stat = lines[1][lines[1].rindex(")") + 2:].split()
        status = {l.split(":")[0]: l.split(":", 1)[1].split() for l in lines[2:] if ":" in l}
        return {
            "ns": int(sched[0]), "slices": int(sched[2]),
            "ticks": int(stat[11]) + int(stat[12]), "utime": int(stat[11]), "stime": int(stat[12]),
            "minflt": int(stat[7]),
            "rss": int(status["VmRSS"][0]), "hwm": int(status["VmHWM"][0]),
            "csw": int(status["voluntary_ctxt_switches"][0]) + int(status["nonvoluntary_ctxt_switches"][0]),
            # /proc/PID/io (task I/O accounting): read and write calls.
            "syscr": int(status.get("syscr", [0])[0]), "syscw": int(status.get("syscw", [0])[0]),
        }

    def boot(self):
        self.g.start()
        self.ctl = self.g.control(120)
        # Test data in the guest's RAM (rootfs).
        sizes = sorted(set(CAPTURE_MIB) | {self.opts.stream_mib})
        top = max(sizes)
        script = f"head -c {top * MiB} /dev/urandom > /run/d{top}"
        for s in sizes:
            if s != top:
                script += f" && head -c {s * MiB} /run/d{top} > /run/d{s}"
        # No udev: the /dev/virtio-ports links qemu-ga expects (qga's PID 1
        # made only its own).
        links = ("for p in /sys/class/virtio-ports/*; do n=$(cat $p/name); "
                 "[ -e /dev/virtio-ports/$n ] || ln -s ../${p##*/} /dev/virtio-ports/$n; done")
        self.sh(f"{script} && mkdir -p /run/agent /run/st && {links}", timeout=300)

    def start_agent(self):
        """(Re)starts the agent under test on the virtio port; connects."""
        if self.c:
            self.c.close()
            self.c = None
        if self.pid:
            self.sh(f"kill {self.pid}; while [ -e /proc/{self.pid} ]; do sleep 0.05; done")
        binary = AGENT_BIN[self.agent]
        r = self.ctl.ok("guest-exec", {"path": binary, "arg": [
            "-m", "virtio-serial", "-p", AGENT_PORT, "-t", "/run/agent", "-f", "/run/agent/pid"]})
        self.pid = r["pid"]
        self.c = self.g.connect_and_sync(60)

    def stop(self):
        for x in (self.c, self.ctl):
            if x:
                x.close()
        self.g.stop()

    # -- workloads (each returns {metric: value}) ------------------------------

    def w_start(self):
        binary = AGENT_BIN[self.agent]
        agent = f"{binary} -m unix-listen -p /run/st/s -t /run/st -f /run/st/pid"
        q = "/usr/bin/qgactl --socket /run/st/s --connect-timeout 20"
        script = (
            "rm -rf /run/st; mkdir -p /run/st; "
            f"{agent} & a=$!; {q} ping >/dev/null || exit 9; "
            f"echo qgab-m0 >/dev/kmsg; {q} ping >/dev/null; echo qgab-m1 >/dev/kmsg; "
            "kill $a; wait $a; rm -rf /run/st; mkdir -p /run/st; "
            f"echo qgab-m2 >/dev/kmsg; {agent} & a=$!; {q} ping >/dev/null || exit 9; echo qgab-m3 >/dev/kmsg; "
            "grep -h VmRSS /proc/$a/status; kill $a; wait $a; dmesg | grep qgab-m | tail -4"
        )
        out = self.sh(script)
        marks = {}
        for l in out.splitlines():
            m = re.match(r"\[\s*([0-9.]+)\] qgab-(m\d)", l)
            if m:
                marks[m.group(2)] = float(m.group(1))
        rss = re.search(r"VmRSS:\s+(\d+)", out)
        base = marks["m1"] - marks["m0"]
        total = marks["m3"] - marks["m2"]
        return {"start_ms": (total - base) * 1e3, "start_raw_ms": total * 1e3, "start_rss_kib": int(rss.group(1))}

    def w_ping(self):
        c = self.c
        rtts = []
        for _ in range(PING_N):
            t = time.perf_counter()
            c.ok("guest-ping")
            rtts.append(time.perf_counter() - t)
        req = b'{"execute":"guest-ping"}\n' * PIPELINE_N
        t = time.perf_counter()
        c.send(req)
        deadline = time.monotonic() + 60
        for _ in range(PIPELINE_N):
            if "return" not in c.reply(deadline):
                raise Fail("pipelined ping")
        dt = time.perf_counter() - t
        return {"ping_rtt_ms": statistics.median(rtts) * 1e3, "ping_pipelined_per_s": PIPELINE_N / dt}

    def w_exec(self):
        c = self.c
        p0 = self.proc()
        polls = 0
        t = time.perf_counter()
        for _ in range(EXEC_N):
            pid = c.ok("guest-exec", {"path": "/bin/true"})["pid"]
            while True:
                polls += 1
                if c.ok("guest-exec-status", {"pid": pid})["exited"]:
                    break
        dt = time.perf_counter() - t
        p1 = self.proc()
        r = {"exec_poll_per_s": EXEC_N / dt, "exec_polls_per_exec": polls / EXEC_N,
             "exec_cpu_ms_per_exec": (p1["ns"] - p0["ns"]) / 1e6 / EXEC_N}
        if self.agent.startswith("qga"):
            t = time.perf_counter()
            for _ in range(EXEC_N):
                pid = c.ok("guest-exec", {"path": "/bin/true"})["pid"]
                if not c.ok("guest-exec-status", {"pid": pid, "wait": 10})["exited"]:
                    raise Fail("wait")
            r["exec_wait_per_s"] = EXEC_N / (time.perf_counter() - t)
        return r

    def capture_once(self, mib, wait):
        c = self.c
        p0 = self.proc()
        t = time.perf_counter()
        pid = c.ok("guest-exec", {"path": "/bin/cat", "arg": [f"/run/d{mib}"], "capture-output": True})["pid"]
        while True:
            st = c.ok("guest-exec-status", {"pid": pid, "wait": 60} if wait else {"pid": pid}, timeout=90)
            if st["exited"]:
                break
            time.sleep(CAPTURE_POLL)
        dt = time.perf_counter() - t
        p1 = self.proc()
        n = len(base64.b64decode(st.get("out-data", "")))
        if n != mib * MiB or st.get("exitcode") != 0:
            raise Fail(f"capture {mib} MiB: got {n} bytes, exit {st.get('exitcode')}")
        return dt * 1e3, (p1["ns"] - p0["ns"]) / 1e6

    def w_capture(self):
        r = {}
        for mib in CAPTURE_MIB:
            wall, cpu = self.capture_once(mib, False)
            r[f"cap{mib}_wall_ms"], r[f"cap{mib}_cpu_ms"] = wall, cpu
            if self.agent.startswith("qga"):
                wall, cpu = self.capture_once(mib, True)
                r[f"cap{mib}_wait_wall_ms"], r[f"cap{mib}_wait_cpu_ms"] = wall, cpu
        return r

    def w_input(self):
        r = {}
        c = self.c
        for mib in INPUT_MIB:
            data = self.opts.input_b64[mib]
            p0 = self.proc()
            t = time.perf_counter()
            pid = c.ok("guest-exec", {"path": "/usr/bin/wc", "arg": ["-c"], "input-data": data,
                                        "capture-output": True})["pid"]
            while True:
                st = c.ok("guest-exec-status", {"pid": pid})
                if st["exited"]:
                    break
                time.sleep(CAPTURE_POLL)
            dt = time.perf_counter() - t
            p1 = self.proc()
            got = base64.b64decode(st.get("out-data", "")).decode().strip()
            if got != str(mib * MiB):
                raise Fail(f"input {mib} MiB: wc -c said {got!r}")
            r[f"in{mib}_wall_ms"], r[f"in{mib}_cpu_ms"] = dt * 1e3, (p1["ns"] - p0["ns"]) / 1e6
        return r

    def w_hwm(self):
        self.start_agent()
        p0 = self.proc()
        self.capture_once(8, False)
        p1 = self.proc()
        return {"fresh_rss_kib": p0["rss"], "hwm_cap8_kib": p1["hwm"]}

    def w_idle(self):
        self.c.ok("guest-ping")
        p0 = self.proc()
        time.sleep(IDLE_SECONDS)
        p1 = self.proc()
        return {"idle_cpu_ms": (p1["ns"] - p0["ns"]) / 1e6,
                "idle_wakeups_per_s": (p1["slices"] - p0["slices"]) / IDLE_SECONDS}

    def w_stream(self):
        """qgactl from the host through the chardev (one client at a time)."""
        if not self.agent.startswith("qga") or not self.opts.qgactl_host:
            return {}
        self.c.close()
        self.c = None
        mib = self.opts.stream_mib
        q = [self.opts.qgactl_host, "--socket", self.g.sock, "--connect-timeout", "30"]
        out = os.path.join(self.g.run, "stream.out")
        p0 = self.proc()
        t = time.perf_counter()
        with open(out, "wb") as f:
            rc, cpu_out = run_timed(q + ["exec", "--", "/bin/cat", f"/run/d{mib}"], f)
        dt_out = time.perf_counter() - t
        p1 = self.proc()
        if rc != 0 or os.path.getsize(out) != mib * MiB:
            raise Fail(f"qgactl exec cat: rc {rc}, {os.path.getsize(out)} bytes")
        t = time.perf_counter()
        rc, cpu_in = run_timed(q + ["push", out, "/run/pushed"], subprocess.DEVNULL)
        dt_in = time.perf_counter() - t
        p2 = self.proc()
        size = self.sh("wc -c < /run/pushed; rm -f /run/pushed").strip()
        if rc != 0 or size != str(mib * MiB):
            raise Fail(f"qgactl push: rc {rc}, {size} bytes in the guest")
        os.unlink(out)
        self.c = self.g.connect_and_sync(30)
        return {"stream_out_mib_s": mib / dt_out, "stream_out_cpu_ms_per_mib": (p1["ns"] - p0["ns"]) / 1e6 / mib,
                "stream_out_host_cpu_ms_per_mib": cpu_out * 1e3 / mib,
                "push_mib_s": mib / dt_in, "push_cpu_ms_per_mib": (p2["ns"] - p1["ns"]) / 1e6 / mib,
                "push_host_cpu_ms_per_mib": cpu_in * 1e3 / mib}


    def stop_agent_take_port(self):
        """Stops the agent under test; the host end of its port, connected."""
        self.c.close()
        self.c = None
        self.sh(f"kill {self.pid}; while [ -e /proc/{self.pid} ]; do sleep 0.05; done")
        self.pid = None
        host = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        host.connect(self.g.sock)
        return host

    def dd_cpu_ms(self, args, input_b64=None):
        """CPU (user + system, ms) of one `dd` run by the control agent."""
        req = {"path": "/bin/dd", "arg": args, "rusage": True}
        if input_b64:
            req["input-data"] = input_b64
        ru = self.run(req, f"dd {args}")["rusage"]
        return (ru["user-us"] + ru["system-us"]) / 1e3

    def w_floor(self):
        """What the guest kernel alone charges for moving an 8 MiB capture,
        with no agent: `dd` reading 8 MiB from a pipe in 256 KiB reads (as
        qga reads the child's output), and `dd` writing the 10.7 MiB of its
        base64 to the agent's virtio port in 32 KiB writes (the most the
        driver takes per write), net of reading that file. Each figure is that dd's own CPU
        (rusage); the better of three. Agent-independent (same kernel), so
        measured in qga's guest only, with its agent stopped meanwhile."""
        if self.agent != "qga":
            return {}
        if not getattr(self, "b8", False):
            self.sh("base64 -w0 /run/d8 > /run/b8 && [ $(wc -c < /run/b8) -eq 11184812 ]")
            self.b8 = True
        pipe = min(self.dd_cpu_ms(["of=/dev/null", "bs=256k"], self.opts.floor_b64) for _ in range(3))
        host = self.stop_agent_take_port()
        got = []

        def drain():
            n = 0
            while (b := host.recv(1 << 20)):
                n += len(b)
            got.append(n)
        t = threading.Thread(target=drain, daemon=True)
        t.start()
        try:
            port = min(self.dd_cpu_ms(["if=/run/b8", f"of={AGENT_PORT}", "bs=32k"]) for _ in range(3))
            read = min(self.dd_cpu_ms(["if=/run/b8", "of=/dev/null", "bs=32k"]) for _ in range(3))
        finally:
            host.shutdown(socket.SHUT_RDWR)
            t.join(10)
            host.close()
        if not got or got[0] != 3 * 11184812:
            raise Fail(f"floor: the host read {got} bytes from the port, not {3 * 11184812}")
        self.start_agent()
        return {"floor_pipe_read_ms": pipe, "floor_port_write_ms": port - read, "floor_cap8_ms": pipe + port - read}

    def w_ready(self):
        """qga only: /init -> readiness, in fresh guests' own clock (dmesg).
        The floor: a busybox /init that loads the same modules in the same
        order, no agent, and stamps the kernel log once the port has its
        sysfs name (polled with shell builtins right after virtio_console:
        the vsock modules load after the stamp). Then qga as /init (the
        bench image): its "channel ... is open" stamp and its first reply
        (e2e.boot_times)."""
        if self.agent != "qga":
            return {}
        floor = e2e.Guest("ready-floor", self.opts, "virtio")
        floor.initramfs = floor_image(self.opts)
        try:
            floor.start()
            if not floor.wait_exit(120):
                raise Fail("ready: the floor guest did not power off")
        finally:
            floor.stop()
        with open(floor.console, errors="replace") as f:
            stamps = dict((m.group(2), float(m.group(1))) for m in re.finditer(
                r"\[\s*([0-9.]+)\] (Run /init as init process|ready-floor-port)", f.read()))
        if len(stamps) != 2:
            raise Fail(f"ready: the floor guest's console lacks its stamps ({stamps})")
        floor_ms = (stamps["ready-floor-port"] - stamps["Run /init as init process"]) * 1e3
        g = e2e.Guest("ready-qga", self.opts, "virtio")
        try:
            g.start()
            c = g.connect_and_sync(120)
            b = e2e.boot_times(c, c.matched_at)
            c.close()
        finally:
            g.stop()
        if not b or b["open_ms"] is None:
            raise Fail("ready: no /init or channel stamp in the qga guest's dmesg")
        return {"ready_floor_port_ms": floor_ms, "ready_qga_open_ms": b["open_ms"],
                "ready_qga_reply_ms": b["first_ms"], "ready_reply_after_open_ms": b["first_ms"] - b["open_ms"],
                "ready_reply_over_floor_ms": b["first_ms"] - floor_ms}


    def term_once(self, tty):
        """`head -c 8M /dev/zero` through the agent under test, on a pty
        (`tty`) or through `stream` pipes, long-polled with status `wait`:
        (wall ms, agent CPU ms)."""
        how = {"tty": True} if tty else {"capture-output": True, "stream": True}
        p0 = self.proc()
        t = time.perf_counter()
        pid = self.c.ok("guest-exec", dict({"path": "head", "arg": ["-c", str(8 * MiB), "/dev/zero"]}, **how))["pid"]
        n = 0
        while True:
            st = self.c.ok("guest-exec-status", {"pid": pid, "wait": 60}, timeout=90)
            n += len(e2e.unb64(st.get("out-data")))
            if st["exited"]:
                break
        dt = time.perf_counter() - t
        p1 = self.proc()
        if n != 8 * MiB or st.get("exitcode") != 0:
            raise Fail(f"term ({'tty' if tty else 'stream'}): got {n} bytes, exit {st.get('exitcode')}")
        return dt * 1e3, (p1["ns"] - p0["ns"]) / 1e6

    def w_term(self):
        """qga only (terminals are an extension): 8 MiB of terminal output,
        the same bytes through `stream` pipes, and the kernel floor:
        qga-pty-floor (no agent) reading the same 8 MiB from a pty master,
        its own CPU, the better of three."""
        if not self.agent.startswith("qga"):
            return {}
        r = {}
        r["term_wall_ms"], r["term_cpu_ms"] = self.term_once(True)
        r["term_pipe_wall_ms"], r["term_pipe_cpu_ms"] = self.term_once(False)
        r["term_pct_of_pipe"] = r["term_pipe_wall_ms"] / r["term_wall_ms"] * 100
        if not os.access(self.opts.pty_floor, os.X_OK):
            return r
        floor = []
        for _ in range(3):
            got, ms = self.sh(f"/usr/bin/qga-pty-floor {8 * MiB}").split()
            if int(got) != 8 * MiB:
                raise Fail(f"qga-pty-floor read {got} bytes")
            floor.append(float(ms))
        r["term_floor_ms"] = min(floor)
        r["term_x_floor"] = r["term_cpu_ms"] / r["term_floor_ms"]
        return r


    # -- push / pull (issue 25, part 3) ---------------------------------------

    def w_xfer_floor(self):
        """What the guest kernel alone charges to move a file through the
        port, with no agent (qga's guest only, its agent stopped meanwhile),
        each figure that `dd`'s own CPU (rusage), the best of three:
        push: reading the 10.7 MiB of 8 MiB as base64 from the agent's port
        (the host writes it) + writing 8 MiB to a new file in /run, net of
        reading the source; pull: reading 8 MiB from a file + writing
        10.7 MiB to the port (w_floor's figure)."""
        if self.agent != "qga":
            return {}
        r = self.w_floor()
        read_d8 = min(self.dd_cpu_ms(["if=/run/d8", "of=/dev/null", "bs=4M"]) for _ in range(3))
        write_d8 = min(self.dd_cpu_ms(["if=/run/d8", "of=/run/xfer-floor", "bs=4M"]) for _ in range(3))
        self.sh("rm -f /run/xfer-floor")
        host = self.stop_agent_take_port()
        port_in = []
        try:
            # Port -> dd: the host writes the base64 text while dd reads it.
            for _ in range(3):
                pid = self.ctl.ok("guest-exec", {"path": "/bin/dd", "rusage": True, "capture-output": True, "arg": [
                    f"if={AGENT_PORT}", "of=/dev/null", "bs=64k", "iflag=fullblock,count_bytes",
                    f"count={len(self.opts.floor_b64)}"]})["pid"]
                host.sendall(self.opts.floor_b64.encode())
                st = self.ctl.ok("guest-exec-status", {"pid": pid, "wait": 120}, timeout=130)
                if st.get("exitcode") != 0:
                    raise Fail(f"xfer floor: dd from the port: {st}")
                ru = st["rusage"]
                port_in.append((ru["user-us"] + ru["system-us"]) / 1e3)
        finally:
            host.close()
        self.start_agent()
        push = min(port_in) + write_d8 - read_d8
        pull = read_d8 + r["floor_port_write_ms"]
        XFER_FLOOR.update(push=push / 8, pull=pull / 8)
        return dict(r, floor_push_port_read_ms=min(port_in), floor_push_file_write_ms=write_d8 - read_d8,
                    floor_push_ms_per_mib=push / 8, floor_pull_file_read_ms=read_d8,
                    floor_pull_port_write_ms=r["floor_port_write_ms"], floor_pull_ms_per_mib=pull / 8)

    def w_xfer(self):
        """`qgactl push` of a host file to /run in the guest, then `qgactl
        pull` of it back, byte for byte (qga only): MiB/s, the agent's CPU
        per MiB, qgactl's CPU per MiB; as a multiple of the floor when
        xfer_floor ran before it in the same round."""
        if not self.agent.startswith("qga") or not self.opts.qgactl_host:
            return {}
        mib = self.opts.stream_mib
        src = os.path.join(self.g.run, "xfer.src")
        back = os.path.join(self.g.run, "xfer.back")
        if not os.path.exists(src):
            with open(src, "wb") as f:
                f.write(random.Random(25).randbytes(mib * MiB))
        self.c.close()
        self.c = None
        qgactl = self.opts.qgactl_host_b if self.agent == "qga-b" and self.opts.qgactl_host_b else self.opts.qgactl_host
        q = [qgactl, "--socket", self.g.sock, "--connect-timeout", "30"] + self.opts.xfer_args.split()
        p0 = self.proc()
        t = time.perf_counter()
        rc, cpu_push = run_timed(q + ["push", src, "/run/xfer"], subprocess.DEVNULL)
        dt_push = time.perf_counter() - t
        p1 = self.proc()
        if rc != 0:
            raise Fail(f"qgactl push: rc {rc}")
        t = time.perf_counter()
        rc, cpu_pull = run_timed(q + ["pull", "/run/xfer", back], subprocess.DEVNULL)
        dt_pull = time.perf_counter() - t
        p2 = self.proc()
        self.sh("rm -f /run/xfer")
        with open(src, "rb") as a, open(back, "rb") as b:
            same = a.read() == b.read()
        os.unlink(back)
        if rc != 0 or not same:
            raise Fail(f"qgactl pull: rc {rc}, same bytes: {same}")
        self.c = self.g.connect_and_sync(30)
        r = {"xfer_push_mib_s": mib / dt_push, "xfer_push_cpu_ms_per_mib": (p1["ns"] - p0["ns"]) / 1e6 / mib,
             "xfer_push_host_cpu_ms_per_mib": cpu_push * 1e3 / mib,
             "xfer_pull_mib_s": mib / dt_pull, "xfer_pull_cpu_ms_per_mib": (p2["ns"] - p1["ns"]) / 1e6 / mib,
             "xfer_pull_host_cpu_ms_per_mib": cpu_pull * 1e3 / mib}
        # Where the agent's CPU went: user vs system share (clock ticks),
        # page faults and context switches (sleeps in epoll) per MiB.
        for name, a, b in (("push", p0, p1), ("pull", p1, p2)):
            ticks = max(1, b["ticks"] - a["ticks"])
            r[f"xfer_{name}_sys_pct"] = (b["stime"] - a["stime"]) * 100 / ticks
            r[f"xfer_{name}_minflt_per_mib"] = (b["minflt"] - a["minflt"]) / mib
            r[f"xfer_{name}_csw_per_mib"] = (b["csw"] - a["csw"]) / mib
            r[f"xfer_{name}_syscr_per_mib"] = (b["syscr"] - a["syscr"]) / mib
            r[f"xfer_{name}_syscw_per_mib"] = (b["syscw"] - a["syscw"]) / mib
        if XFER_FLOOR:
            r["xfer_push_x_floor"] = r["xfer_push_cpu_ms_per_mib"] / XFER_FLOOR["push"]
            r["xfer_pull_x_floor"] = r["xfer_pull_cpu_ms_per_mib"] / XFER_FLOOR["pull"]
        return r


# The readiness floor's /init (w_ready): no agent, the same modules.
FLOOR_INIT = """#!/bin/sh
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in /lib/modules/qga/*; do
    insmod $m
    case $m in *virtio_console*)
        until for n in /sys/class/virtio-ports/*/name; do [ -e $n ] && break; done; do :; done
        echo ready-floor-port >/dev/kmsg;;
    esac
done
dmesg >/dev/console
poweroff -f
"""


def floor_image(opts):
    """The floor guest's initramfs (built once): FLOOR_INIT as /init,
    busybox, the modules qga's image has, no agent."""
    out = os.path.join(opts.work, "floor.cpio.gz")
    if not os.path.exists(out):
        script = os.path.join(opts.work, "floor-init.sh")
        with open(script, "w") as f:
            f.write(FLOOR_INIT)
        subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "initramfs.py"), "--init", script,
                        "--busybox", opts.busybox, "--kernel", opts.kernel, "--no-conf", "--out", out],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return out


# The latest transfer floors (ms per MiB), measured in qga's guest: the
# kernel is the same in every guest.
XFER_FLOOR = {}


def run_timed(argv, stdout):
    """Runs argv; (exit code, its CPU seconds: user + system)."""
    p = subprocess.Popen(argv, stdout=stdout)
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return p.returncode, ru.ru_utime + ru.ru_stime


WORKLOADS = ["start", "ping", "exec", "capture", "input", "idle", "stream", "hwm", "floor", "ready", "term", "xfer_floor", "xfer"]

# (metric, label, higher is better, target for qemu-ga/qga or qga/qemu-ga)
ROWS = [
    ("start_ms", "agent start -> first reply (guest clock, ms)", False),
    ("start_raw_ms", "  same, with qgactl's exec and round trips (ms)", False),
    ("start_rss_kib", "VmRSS right after the first reply (KiB)", False),
    ("ping_rtt_ms", "guest-ping round trip from the host (ms)", False),
    ("ping_pipelined_per_s", "pipelined guest-ping (/s)", True),
    ("exec_poll_per_s", "exec /bin/true + status polling (/s)", True),
    ("exec_polls_per_exec", "  status polls per exec", False),
    ("exec_cpu_ms_per_exec", "  agent CPU per exec (ms)", False),
    ("exec_wait_per_s", "exec /bin/true + status `wait` (/s)", True),
] + [row for mib in CAPTURE_MIB for row in (
    (f"cap{mib}_wall_ms", f"capture `cat` {mib} MiB, polled: wall (ms)", False),
    (f"cap{mib}_cpu_ms", f"capture `cat` {mib} MiB, polled: agent CPU (ms)", False),
    (f"cap{mib}_wait_wall_ms", f"capture `cat` {mib} MiB, `wait`: wall (ms)", False),
    (f"cap{mib}_wait_cpu_ms", f"capture `cat` {mib} MiB, `wait`: agent CPU (ms)", False),
)] + [row for mib in INPUT_MIB for row in (
    (f"in{mib}_wall_ms", f"input-data {mib} MiB into `wc -c`: wall (ms)", False),
    (f"in{mib}_cpu_ms", f"input-data {mib} MiB into `wc -c`: agent CPU (ms)", False),
)] + [
    ("fresh_rss_kib", "VmRSS of a fresh agent (KiB)", False),
    ("hwm_cap8_kib", "peak RSS (VmHWM) of a fresh agent over an 8 MiB capture (KiB)", False),
    ("idle_cpu_ms", f"idle, client connected: agent CPU over {IDLE_SECONDS} s (ms)", False),
    ("idle_wakeups_per_s", "idle: agent wakeups (schedstat timeslices /s)", False),
    ("stream_out_mib_s", "`qgactl exec -- cat FILE > out` (MiB/s)", True),
    ("stream_out_cpu_ms_per_mib", "  agent CPU per MiB (ms)", False),
    ("stream_out_host_cpu_ms_per_mib", "  qgactl's CPU on the host per MiB (ms)", False),
    ("push_mib_s", "`qgactl push FILE` (MiB/s)", True),
    ("push_cpu_ms_per_mib", "  agent CPU per MiB (ms)", False),
    ("push_host_cpu_ms_per_mib", "  qgactl's CPU on the host per MiB (ms)", False),
    ("floor_pipe_read_ms", "kernel floor: `dd` reading 8 MiB from a pipe, its CPU (ms)", False),
    ("floor_port_write_ms", "kernel floor: `dd` writing 10.7 MiB (8 MiB as base64) to the port, its CPU (ms)", False),
    ("floor_cap8_ms", "kernel floor of an 8 MiB capture: the two together (ms)", False),
    ("ready_floor_port_ms", "readiness floor: /init -> virtio port named, busybox /init, same modules (ms)", False),
    ("ready_qga_open_ms", "qga as /init: /init -> channel open (ms)", False),
    ("ready_qga_reply_ms", "qga as /init: /init -> first reply (ms)", False),
    ("ready_reply_after_open_ms", "  first reply - channel open (ms)", False),
    ("ready_reply_over_floor_ms", "  first reply - the floor's port (ms)", False),
]
ROWS += [
    ("term_wall_ms", "terminal: `head -c 8M /dev/zero` on a pty (`tty`), status `wait`: wall (ms)", False),
    ("term_cpu_ms", "  agent CPU (ms)", False),
    ("term_pipe_wall_ms", "  the same through `stream` pipes: wall (ms)", False),
    ("term_pipe_cpu_ms", "  the same through `stream` pipes: agent CPU (ms)", False),
    ("term_pct_of_pipe", "  terminal rate as % of the pipe rate", True),
    ("term_floor_ms", "kernel floor: qga-pty-floor reading 8 MiB from a pty master, its CPU (ms)", False),
    ("term_x_floor", "  qga's terminal CPU as a multiple of that floor", False),
]
# Push and pull report the same rows.
ROWS += [row for way, what in (("push", "host -> guest file"), ("pull", "guest file -> host")) for row in [
    (f"xfer_{way}_mib_s", f"`qgactl {way}` 32 MiB {what} (MiB/s)", True),
    (f"xfer_{way}_cpu_ms_per_mib", "  agent CPU per MiB (ms)", False),
    (f"xfer_{way}_x_floor", f"  agent CPU per MiB as a multiple of the {way} floor", False),
    (f"xfer_{way}_host_cpu_ms_per_mib", "  qgactl's CPU on the host per MiB (ms)", False),
    (f"xfer_{way}_sys_pct", "  agent CPU in the kernel (%)", False),
    (f"xfer_{way}_minflt_per_mib", "  agent page faults per MiB", False),
    (f"xfer_{way}_csw_per_mib", "  agent context switches per MiB", False),
    (f"xfer_{way}_syscr_per_mib", "  agent read calls per MiB", False),
    (f"xfer_{way}_syscw_per_mib", "  agent write calls per MiB", False),
]]
ROWS += [
    ("floor_push_port_read_ms", "kernel floor: `dd` reading 10.7 MiB (8 MiB as base64) from the port, its CPU (ms)", False),
    ("floor_push_file_write_ms", "kernel floor: `dd` writing 8 MiB to a new file in /run, its CPU (ms)", False),
    ("floor_push_ms_per_mib", "kernel floor of push: the two, per MiB of file (ms)", False),
    ("floor_pull_file_read_ms", "kernel floor: `dd` reading 8 MiB from a file in /run, its CPU (ms)", False),
    ("floor_pull_port_write_ms", "kernel floor: `dd` writing 10.7 MiB to the port, its CPU (ms)", False),
    ("floor_pull_ms_per_mib", "kernel floor of pull: the two, per MiB of file (ms)", False),
]

# Targets of issue 15: (metric, qga's figure must be at most `factor` x ref's).
TARGETS = [
    ("cap8_cpu_ms", 1 / 15, "agent CPU, 8 MiB capture <= 1/15 of qemu-ga's"),
    ("in4_cpu_ms", 1 / 10, "agent CPU, 4 MiB input <= 1/10 of qemu-ga's"),
]


def fmt(v):
    if v is None:
        return "–"
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def fit(pts):
    """Least-squares line through (x, y) points: (intercept, slope)."""
    n = len(pts)
    mx = sum(x for x, _ in pts) / n
    my = sum(y for _, y in pts) / n
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    slope = sum((x - mx) * (y - my) for x, y in pts) / sxx if sxx else 0.0
    return my - slope * mx, slope


def report(opts, agents, results, t_all):
    med = {a: {} for a in agents}
    for a in agents:
        keys = {k for rnd in results[a] for k in rnd}
        for k in keys:
            vals = [rnd[k] for rnd in results[a] if k in rnd]
            med[a][k] = statistics.median(vals)
    refs = [a for a in agents if a != "qga"]
    lines = []
    load = open("/proc/loadavg").read().split()[:3]
    lines.append(f"# In-VM benchmark ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})")
    lines.append("")
    lines.append(f"Host: {platform.node()}, {os.cpu_count()} CPUs, load {' '.join(load)} at the end; "
                 f"guests: {opts.arch} TCG, 1 vCPU, 768 MiB, kernel {os.path.basename(opts.vmlinuz)}; "
                 f"{opts.rounds} rounds, medians; {t_all:.0f} s in all. qga: {opts.qga} "
                 f"({os.path.getsize(opts.qga):,} B).")
    lines.append("")
    head = "| workload, in the guest | " + " | ".join(agents + [f"{r} / qga" for r in refs]) + " |"
    lines.append(head)
    lines.append("|" + "---|" * (1 + len(agents) + len(refs)))
    for key, label, higher in ROWS:
        if not any(key in med[a] for a in agents):
            continue
        cells = [fmt(med[a].get(key)) for a in agents]
        ratios = []
        for r in refs:
            q, x = med["qga"].get(key) if "qga" in med else None, med[r].get(key)
            if q and x:
                ratios.append(f"{(q / x if higher else x / q):.2f}×")
            else:
                ratios.append("–")
        lines.append(f"| {label} | " + " | ".join(cells + ratios) + " |")
    lines.append("")
    lines.append("Ratios: how many times better qga is (rates: qga/qemu-ga; times, CPU, memory: qemu-ga/qga).")
    lines.append("")
    lines.append("Capture cost as fixed + per MiB (least squares over the 1/4/8/12 MiB medians, agent CPU):")
    for a in agents:
        for mode in ("", "_wait"):
            pts = [(m, med[a].get(f"cap{m}{mode}_cpu_ms")) for m in CAPTURE_MIB]
            pts = [(x, y) for x, y in pts if y is not None]
            if len(pts) >= 2:
                fixed, per = fit(pts)
                how = "`wait`" if mode else "polled"
                lines.append(f"- {a}, {how}: {fixed:.1f} ms + {per:.1f} ms/MiB")
    if "qga" in med:
        lines.append("")
        lines.append("Per-round ratios and issue 15's targets:")
        for r in refs:
            for key, factor, text in TARGETS:
                per = [x[key] / q[key] for q, x in zip(results["qga"], results[r]) if q.get(key) and x.get(key)]
                q, x = med["qga"].get(key), med[r].get(key)
                if q and x:
                    verdict = "MET" if q <= factor * x else "MISSED"
                    lines.append(f"- {text} (vs {r}): {x / q:.1f}× [{', '.join(f'{p:.1f}' for p in per)}] {verdict}")
            q, x = med["qga"].get("exec_poll_per_s"), med[r].get("exec_poll_per_s")
            if q and x:
                per = [a["exec_poll_per_s"] / b["exec_poll_per_s"] for a, b in zip(results["qga"], results[r])]
                lines.append(f"- exec + polling >= 1.5× {r}: {q / x:.2f}× [{', '.join(f'{p:.2f}' for p in per)}] "
                             f"{'MET' if q >= 1.5 * x else 'MISSED'}")
        q = med["qga"]
        if "floor_cap8_ms" in q:
            lines.append(f"- the kernel floor of an 8 MiB capture (no agent, see the table): {q['floor_cap8_ms']:.0f} ms = "
                         + ", ".join(f"1/{med[r]['cap8_cpu_ms'] / q['floor_cap8_ms']:.1f} of {r}'s capture CPU"
                                     for r in refs if med[r].get("cap8_cpu_ms")))
        if "hwm_cap8_kib" in q:
            limit = 1.5 * 8 * 1024
            lines.append(f"- peak RSS over an 8 MiB capture <= 1.5 × 8 MiB ({limit:,.0f} KiB): {q['hwm_cap8_kib']:,.0f} KiB "
                         f"{'MET' if q['hwm_cap8_kib'] <= limit else 'MISSED'}")
        if "start_ms" in q:
            lines.append(f"- agent start -> first reply <= 10 ms: {q['start_ms']:.1f} ms "
                         f"{'MET' if q['start_ms'] <= 10 else 'MISSED'}")
    text = "\n".join(lines) + "\n"
    os.makedirs(os.path.dirname(opts.out), exist_ok=True)
    with open(opts.out, "w") as f:
        f.write(text)
    with open(opts.out + ".json", "w") as f:
        json.dump(results, f, indent=1)
    say("")
    say(text)
    say(f"bench-vm: written to {opts.out} (per-round figures in {opts.out}.json)")


def image(opts, agents):
    extra = ["--file", f"{opts.qga}:{AGENT_BIN['qga']}:0755", "--file", f"{opts.qgactl}:/usr/bin/qgactl:0755"]
    if os.access(opts.pty_floor, os.X_OK):
        extra += ["--file", f"{opts.pty_floor}:/usr/bin/qga-pty-floor:0755"]
    if "qga-b" in agents:
        extra += ["--file", f"{opts.qga_b}:{AGENT_BIN['qga-b']}:0755"]
    libs = {}
    for a, path in (("qemu-ga-10", opts.qemu_ga_10), ("qemu-ga-7.2", opts.qemu_ga_72)):
        if a in agents:
            extra += ["--file", f"{path}:{AGENT_BIN[a]}:0755"]
            libs.update({dest: src for src, dest in ldd_files(path)})
    for tool in opts.tools.split(",") if opts.tools else []:
        # For looking inside (strace -c, perf record): not used by the workloads.
        s = shutil.which(tool)
        if not s:
            sys.exit(f"bench-vm: --tools: no {tool} on this machine")
        extra += ["--file", f"{os.path.realpath(s)}:/usr/bin/{tool}:0755"]
        libs.update({dest: src for src, dest in ldd_files(s)})
    for dest, src in sorted(libs.items()):
        extra += ["--file", f"{src}:{dest}:0755"]
    opts.initramfs = os.path.join(opts.work, "initramfs.cpio.gz")
    subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "initramfs.py"), "--init", opts.qga,
                    "--busybox", opts.busybox, "--kernel", opts.kernel, *extra, "--out", opts.initramfs],
                   check=True, stdout=subprocess.DEVNULL)


def main():
    ap = argparse.ArgumentParser(description="qga vs qemu-ga inside TCG guests")
    ap.add_argument("--qga", default=os.path.join(ROOT, "target/static/qga"))
    ap.add_argument("--qgactl", default=os.path.join(ROOT, "target/static/qgactl-dist/qgactl"),
                    help="static qgactl for the guest (the start-up probe)")
    ap.add_argument("--pty-floor", default=os.path.join(ROOT, "target/static/qgactl-dist/qga-pty-floor"),
                    help="static qga-pty-floor for the guest (workload term's kernel floor)")
    ap.add_argument("--qgactl-host", default=os.path.join(ROOT, "target/release/qgactl"))
    ap.add_argument("--qemu-ga-10", default=os.path.join(ROOT, "target/ref/qemu-ga-10/usr/sbin/qemu-ga"))
    ap.add_argument("--qemu-ga-72", default=os.path.join(ROOT, "target/ref/qemu-ga-7.2/usr/sbin/qemu-ga"))
    ap.add_argument("--qga-b", help="a second qga build, agent name qga-b (an A/B run: --agents qga,qga-b)")
    ap.add_argument("--agents", default="qga,qemu-ga-10,qemu-ga-7.2")
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("QGA_BENCH_VM_ROUNDS", "5")))
    ap.add_argument("--stream-mib", type=int, default=32)
    ap.add_argument("--busybox", default="/bin/busybox")
    ap.add_argument("--kernel", default=os.path.join(ROOT, "target/e2e/kernel/current"))
    ap.add_argument("--work", default=os.path.join(ROOT, "target/bench/vm"))
    ap.add_argument("--out", default=os.path.join(ROOT, "target/bench/vm.md"))
    ap.add_argument("--qgactl-host-b", help="the host qgactl that the xfer workload uses with qga-b (an A/B run)")
    ap.add_argument("--xfer-args", default="", help="qgactl options for the xfer workload (e.g. --max-reply-bytes 10000000)")
    ap.add_argument("--tools", default="", help="host tools copied into the image with their libraries (strace,perf)")
    ap.add_argument("--keep", action="store_true", help="leave the guests running at the end (prints their sockets)")
    opts = ap.parse_args()
    opts.arch = "x86_64"
    opts.row = e2e.arch_row(opts.arch)
    opts.work = os.path.abspath(opts.work)
    os.makedirs(opts.work, exist_ok=True)
    opts.vmlinuz = e2e.kernel_image(opts.kernel, "bench-vm")
    opts.qgactl_host = opts.qgactl_host if os.access(opts.qgactl_host, os.X_OK) else None
    agents = []
    for a in opts.agents.split(","):
        path = {"qga": opts.qga, "qemu-ga-10": opts.qemu_ga_10, "qemu-ga-7.2": opts.qemu_ga_72, "qga-b": opts.qga_b or ""}[a]
        if os.access(path, os.X_OK):
            agents.append(a)
        else:
            say(f"bench-vm: {a} left out: no {path} (scripts/fetch-qemu-ga.sh fetches qemu-ga)")
    if not os.access(opts.qgactl, os.X_OK):
        sys.exit(f"bench-vm: no static qgactl at {opts.qgactl} (scripts/static/build.sh x86_64 "
                 "target/static/qgactl-dist qgactl)")
    workloads = opts.workloads.split(",")
    rng = random.Random(15)
    opts.input_b64 = {m: base64.b64encode(rng.randbytes(m * MiB)).decode() for m in INPUT_MIB}
    opts.floor_b64 = base64.b64encode(rng.randbytes(8 * MiB)).decode()
    image(opts, agents)
    t_all = time.monotonic()
    benches = {a: Bench(a, opts) for a in agents}
    results = {a: [] for a in agents}
    try:
        for a, b in benches.items():
            t = time.monotonic()
            b.boot()
            b.start_agent()
            say(f"bench-vm: {a}: guest up, agent pid {b.pid} ({time.monotonic() - t:.1f} s)")
        for rnd in range(opts.rounds):
            t = time.monotonic()
            order = agents[rnd % len(agents):] + agents[:rnd % len(agents)]
            row = {a: {} for a in agents}
            for w in workloads:
                for a in order:
                    row[a].update(getattr(benches[a], "w_" + w)())
            for a in agents:
                results[a].append(row[a])
            say(f"bench-vm: round {rnd + 1}/{opts.rounds} ({time.monotonic() - t:.0f} s): " + "; ".join(
                f"{a}: cap8 {row[a].get('cap8_cpu_ms', 0):.0f} ms CPU, in4 {row[a].get('in4_cpu_ms', 0):.0f} ms CPU"
                for a in agents))
    except (Fail, e2e.AgentError, OSError, KeyError, ValueError) as e:
        import traceback
        traceback.print_exc()
        say(f"bench-vm: ERROR: {type(e).__name__}: {e}")
        for b in benches.values():
            b.g.dump_console("bench-vm stopped")
        for b in benches.values():
            b.stop()
        sys.exit(1)
    if opts.keep:
        for a, b in benches.items():
            say(f"bench-vm: {a}: agent {b.g.sock}, control {b.g.ctl_sock}, agent pid {b.pid}")
        for b in benches.values():
            for x in (b.c, b.ctl):
                if x:
                    x.close()
    else:
        for b in benches.values():
            b.stop()
    report(opts, agents, results, time.monotonic() - t_all)


if __name__ == "__main__":
    main()
