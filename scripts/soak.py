#!/usr/bin/env python3
"""Soak: a bounded mixed load against one qga on a unix socket.

    scripts/soak.py --qga target/release/qga [--seconds 600] [--interval 10]

One client at a time (qemu-ga's unix-listen model), in one loop:
guest-exec with captured output, streamed guest-exec (`stream: true`,
status long-polls until exit), guest-file open/write/seek/read/close,
bursts of pipelined guest-ping, and a reconnect every few rounds. Every
`interval` seconds it prints the agent's RSS, open fds, live children and
the operations and bytes per second of that interval. Informational: the
exit status is 0 unless the agent dies or stops answering. Only the local
unix socket is used; everything stops after `--seconds` (SOAK_SECONDS).
"""
import argparse
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time


class Client:
    def __init__(self, path):
        self.path = path
        self.sock = None
        self.buf = b""
        self.connect()

    def connect(self):
        if self.sock:
            self.sock.close()
        deadline = time.time() + 10
        while True:
            try:
                s = socket.socket(socket.AF_UNIX)
                s.connect(self.path)
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.02)
        s.settimeout(60)
        self.sock, self.buf = s, b""

    def line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise RuntimeError("agent closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line.lstrip(b"\xff"))

    def cmd(self, name, **args):
        req = {"execute": name}
        if args:
            req["arguments"] = args
        self.sock.sendall(json.dumps(req).encode())
        rep = self.line()
        if "error" in rep:
            raise RuntimeError(f"{name}: {rep['error']}")
        return rep["return"]

    def pings(self, n):
        self.sock.sendall(b'{"execute":"guest-ping"}' * n)
        for _ in range(n):
            self.line()


def proc_stats(pid):
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for l in f:
            if l.startswith("VmRSS:"):
                rss = int(l.split()[1])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    children = 0
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = len(f.read().split())
    except OSError:
        pass
    return rss, fds, children


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--qga", default="target/release/qga")
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", 600)))
    ap.add_argument("--interval", type=float, default=10)
    a = ap.parse_args()
    a.qga = os.path.abspath(a.qga)

    tmp = tempfile.mkdtemp(prefix="qga-soak.")
    sock = os.path.join(tmp, "sock")
    agent = subprocess.Popen(
        [a.qga, "-m", "unix-listen", "-p", sock, "-t", tmp, "-f", os.path.join(tmp, "pid")],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "agent.log"), "w"),
        cwd=tmp,
    )
    c = Client(sock)
    counts = {"exec": 0, "stream": 0, "file": 0, "ping": 0, "reconnect": 0}
    nbytes = 0
    payload = base64.b64encode(os.urandom(65536)).decode()
    fpath = os.path.join(tmp, "soak.dat")
    start = last = time.time()
    rss0 = None
    print(f"soak: qga {a.qga}, {a.seconds:.0f} s, stats every {a.interval:.0f} s, dir {tmp}")
    print(f"{'t[s]':>6} {'rss[KiB]':>9} {'fds':>4} {'kids':>4} {'exec/s':>7} {'stream/s':>8} {'file/s':>7} {'ping/s':>8} {'reconn/s':>8} {'MB/s':>6}")
    rounds = 0
    status = 0
    try:
        while time.time() - start < a.seconds:
            rounds += 1
            # exec with captured output (about 135 KB of base64 text)
            pid = c.cmd("guest-exec", path="/bin/sh",
                        arg=["-c", "head -c 100000 /dev/urandom | base64"], **{"capture-output": True})["pid"]
            while True:
                st = c.cmd("guest-exec-status", pid=pid, wait=10)
                if st["exited"]:
                    nbytes += len(base64.b64decode(st.get("out-data", "")))
                    break
            counts["exec"] += 1
            # streamed output, long-polled
            pid = c.cmd("guest-exec", path="seq", arg=["1", "100000"],
                        **{"capture-output": True, "stream": True})["pid"]
            while True:
                st = c.cmd("guest-exec-status", pid=pid, wait=10)
                nbytes += len(base64.b64decode(st.get("out-data", "")))
                if st["exited"]:
                    break
            counts["stream"] += 1
            # file ops
            h = c.cmd("guest-file-open", path=fpath, mode="w+")
            c.cmd("guest-file-write", handle=h, **{"buf-b64": payload})
            c.cmd("guest-file-seek", handle=h, offset=0, whence="set")
            r = c.cmd("guest-file-read", handle=h, count=65536)
            nbytes += 2 * r["count"]
            c.cmd("guest-file-close", handle=h)
            counts["file"] += 1
            # pings
            c.pings(200)
            counts["ping"] += 200
            if rounds % 5 == 0:
                c.connect()
                counts["reconnect"] += 1
            now = time.time()
            if now - last >= a.interval:
                dt = now - last
                rss, fds, kids = proc_stats(agent.pid)
                rss0 = rss0 or rss
                print(f"{now - start:6.0f} {rss:9d} {fds:4d} {kids:4d} "
                      f"{counts['exec'] / dt:7.1f} {counts['stream'] / dt:8.1f} {counts['file'] / dt:7.1f} "
                      f"{counts['ping'] / dt:8.0f} {counts['reconnect'] / dt:8.2f} {nbytes / dt / 1e6:6.2f}",
                      flush=True)
                counts = {k: 0 for k in counts}
                nbytes = 0
                last = now
            if agent.poll() is not None:
                raise RuntimeError(f"agent exited with {agent.returncode}")
    except Exception as e:  # report, stop the agent, fail
        print(f"soak: FAILED: {e}", file=sys.stderr)
        status = 1
    rss, fds, kids = proc_stats(agent.pid) if agent.poll() is None else (0, 0, 0)
    print(f"soak: {rounds} rounds in {time.time() - start:.0f} s; RSS {rss0} -> {rss} KiB, fds {fds}")
    c.sock.close()
    agent.send_signal(signal.SIGTERM)
    try:
        agent.wait(10)
    except subprocess.TimeoutExpired:
        agent.kill()
        agent.wait()
    shutil.rmtree(tmp, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
