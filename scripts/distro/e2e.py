#!/usr/bin/env python3
"""qga as a drop-in in a real Debian guest: `make e2e-distro` (docs/distro.md).

    scripts/distro/e2e.py --image DIR --deb QGA.deb --deb-upgrade QGA2.deb
        [--work target/distro/run] [--agent both|qga|qemu-ga]

DIR is an image of scripts/distro/image.sh (Debian trixie with systemd,
udev, logind, getty on ttyS1/ttyS2, root and `alice`, an ext4 root on
virtio-blk, qemu-guest-agent's .deb in a local apt repository). Each scenario boots
a fresh qcow2 overlay of it under TCG (the kernel of the other suites) with
the agent's virtio-serial port (a QMP socket to unplug and plug it) and a
read-only second disk holding the two qga packages as a tar archive.

Everything in the guest is done the way an administrator or libvirt would:
a root login on the serial line ttyS1 (apt, systemctl, stat; never starting
the agent by hand), a user login on ttyS2, and the agent driven over the
chardev socket with the JSON libvirt sends (`guest-sync` with a
millisecond id, no 0xFF; the commands behind virsh guestinfo --user,
domfsinfo, domfsfreeze/domfsthaw, set-user-password, reboot/shutdown
--mode agent and the ssh authorized-keys API). libvirt itself is not run
(make e2e-libvirt does that with the busybox guest).

Per agent (qga: `apt install ./qga_*.deb`; qemu-ga: `apt install
qemu-guest-agent`, offline from the image's local repository):
  boot 1: install; (qga) answering at once; enable the freeze hook in
          /etc/qemu/qemu-ga.conf, add a hook script; (qemu-ga) `udevadm
          trigger` (Debian's postinst does not start it); guest-shutdown
          reboot
  boot 2: the agent answers by itself; that reboot's journal clean; users
          after a real login; fsinfo of the ext4 root; freeze/thaw of /
          with the hook logging both; set-user-password then a login with
          it; ssh keys add/get/remove with owner and modes; killed ->
          restarted; port hot-unplugged (QMP device_del) -> stopped;
          plugged back -> started; (qga) upgrade to a version-bumped
          package -> restarted on the new binary; guest-shutdown powerdown
          -> QEMU exits
  boot 3: the agent starts at boot; the powerdown's journal clean;
          (qga) apt purge: nothing left;
          (qemu-ga) `apt install ./qga_*.deb` replaces qemu-guest-agent on
          the running system (qga answers at once, the administrator's
          qemu-ga.conf and hook kept), `apt install qemu-guest-agent` the
          other way round, then qga's config files and qemu-guest-agent
          purged: nothing of either left.
The results that libvirt would show (users, fsinfo, freeze/thaw counts and
status, the hook's calls, the password login, the keys and the files'
owner and modes, restart/unplug/plug/boot behaviour, journals) must be the
same for both agents. Prints PASS/FAIL/MEASURED lines and exits 1 when a
check failed. The two scenarios run at the same time (one vCPU each).
"""

import argparse
import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROOT_PW = "root-e2e"  # scripts/distro/customize.sh
ALICE_PW = "alice-e2e"
ALICE_NEW_PW = "N3w-e2e-pass"
PORT = "org.qemu.guest_agent.0"
KEYS = [
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKqgaEXAMPLEkeyONEforQGAe2eXXXXXXXXXXXXXXXX e2e-one",
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKqgaEXAMPLEkeyTWOforQGAe2eXXXXXXXXXXXXXXXX e2e-two",
]
# Journal lines that mean a unit was killed the hard way at shutdown.
HARD_KILL = re.compile(r"State '\S+' timed out|Killing process \d+ .* with signal SIGKILL|"
                       r"Processes still around after SIGKILL|Failed with result 'timeout'|status=9/KILL")
LOCK = threading.Lock()
GUESTS = []  # every Guest, stopped by the signal handler
RESULTS = {"passed": 0, "failed": 0}
ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[=>]|\r")


def say(msg):
    with LOCK:
        print(msg, flush=True)


class Fail(Exception):
    pass


# ---------------------------------------------------------------------------
# A serial line with a login on it.


class Console:
    def __init__(self, path, tag):
        self.path, self.tag, self.sock, self.buf, self.n = path, tag, None, b"", 0

    def connect(self, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.connect(self.path)
                self.sock.settimeout(0.3)
                self.buf = b""
                return
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def expect(self, pattern, timeout):
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.buf)
            if m:
                out, self.buf = self.buf[: m.start()], self.buf[m.end():]
                return m, out
            if time.monotonic() > deadline:
                raise Fail(f"{self.path}: no {pattern!r} within {timeout} s; last output: {self.buf[-400:]!r}")
            try:
                data = self.sock.recv(65536)
                if not data:
                    raise Fail(f"{self.path}: closed")
                self.buf += data
            except socket.timeout:
                pass

    def send(self, text):
        self.sock.sendall(text.encode())

    def login(self, user, password, timeout=120):
        """Logs in at getty's prompt; True when a shell came up, False
        on 'Login incorrect'."""
        deadline = time.monotonic() + timeout
        while True:
            self.send("\r")
            try:
                self.expect(rb"login: $|login: ", 3)
                break
            except Fail:
                if time.monotonic() > deadline:
                    raise
        self.send(user + "\r")
        self.expect(rb"Password: ", 20)
        self.buf = b""
        self.send(password + "\r")
        m, _ = self.expect(rb"Login incorrect|[#$] ", 60)
        if m.group(0) == b"Login incorrect":
            return False
        self.send("stty -echo; PS1=; PROMPT_COMMAND=; bind 'set enable-bracketed-paste off' 2>/dev/null;"
                  " export TERM=dumb PAGER=cat SYSTEMD_PAGER= SYSTEMD_COLORS=0 LC_ALL=C.UTF-8; echo __REA\"\"DY__\r")
        self.expect(rb"__READY__\r?\n", 20)
        return True

    def logout(self):
        self.send("exit\r")
        self.expect(rb"login: ", 30)

    def run(self, cmd, timeout=60):
        """Runs a shell command line; returns (exit code, output)."""
        self.n += 1
        self.send(f"{cmd} ; printf '\\n__RC_%s_{self.n}__\\n' \"$?\"\r")
        m, out = self.expect(rb"__RC_(\d+)_%d__" % self.n, timeout)
        text = ANSI.sub(b"", out).decode(errors="replace").strip("\n")
        return int(m.group(1)), text

    def out(self, cmd, timeout=60):
        rc, text = self.run(cmd, timeout)
        if rc != 0:
            raise Fail(f"`{cmd}` exited {rc}: {text[-600:]}")
        return text


# ---------------------------------------------------------------------------
# The agent over the chardev socket, as libvirt talks to it.


class Agent:
    def __init__(self, path):
        self.path, self.sock, self.buf = path, None, b""

    def close(self):
        if self.sock:
            self.sock.close()
        self.sock = None

    def _connect(self):
        self.close()
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(self.path)
        self.buf = b""

    def _line(self, deadline):
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            self.sock.settimeout(min(left, 0.5))
            try:
                data = self.sock.recv(1 << 20)
            except socket.timeout:
                continue
            if not data:
                raise ConnectionError("closed")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def _reply(self, deadline):
        while True:
            line = self._line(deadline).replace(b"\xff", b"").strip()
            try:
                r = json.loads(line)
            except ValueError:
                continue  # libvirt tolerates garbage before the first sync
            if isinstance(r, dict) and "event" not in r:
                return r

    def sync(self, timeout):
        """libvirt's guest-sync (millisecond id, no 0xFF), retried each
        second until the agent answers it; returns the seconds taken."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            try:
                if self.sock is None:
                    self._connect()
                sid = int(time.time() * 1000)
                self.sock.sendall(json.dumps({"execute": "guest-sync", "arguments": {"id": sid}}).encode() + b"\n")
                end = min(deadline, time.monotonic() + 2)
                while True:
                    r = self._reply(end)
                    if r.get("return") == sid:
                        return time.monotonic() - t0
            except TimeoutError:
                continue
            except OSError:
                self.close()
                time.sleep(0.3)
        raise Fail(f"the agent did not answer guest-sync within {timeout} s")

    def call(self, name, args=None, timeout=30):
        req = {"execute": name}
        if args is not None:
            req["arguments"] = args
        self.sock.sendall(json.dumps(req).encode() + b"\n")
        return self._reply(time.monotonic() + timeout)

    def ok(self, name, args=None, timeout=30):
        r = self.call(name, args, timeout)
        if "return" not in r:
            raise Fail(f"{name}: {r}")
        return r["return"]

    def send_only(self, name, args):
        req = {"execute": name, "arguments": args}
        self.sock.sendall(json.dumps(req).encode() + b"\n")


class Qmp:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(path)
        self.f = self.sock.makefile("rwb")
        json.loads(self.f.readline())
        self.events = []
        self.cmd("qmp_capabilities")

    def cmd(self, execute, **args):
        self.f.write(json.dumps({"execute": execute, "arguments": args}).encode() + b"\n")
        self.f.flush()
        while True:
            r = json.loads(self.f.readline())
            if "event" in r:
                self.events.append(r)
                continue
            if "error" in r:
                raise Fail(f"QMP {execute}: {r['error']}")
            return r["return"]

    def wait_event(self, name, timeout):
        deadline = time.monotonic() + timeout
        self.sock.settimeout(timeout)
        while time.monotonic() < deadline:
            for e in self.events:
                if e["event"] == name:
                    self.events.remove(e)
                    return e
            self.events.append(json.loads(self.f.readline()))
        raise Fail(f"no QMP event {name}")

    def close(self):
        self.sock.close()


# ---------------------------------------------------------------------------
# One guest: QEMU with a fresh overlay of the image.


class Guest:
    def __init__(self, image, work, payload):
        self.image, self.work, self.payload, self.qemu = image, work, payload, None
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(work)
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b",
                        os.path.join(image, "root.raw"), os.path.join(work, "root.qcow2")], check=True)
        self.boots = 0
        GUESTS.append(self)

    def p(self, name):
        return os.path.join(self.work, name)

    def start(self):
        for s in ("qga.sock", "ttyS1.sock", "ttyS2.sock", "qmp.sock"):
            if os.path.exists(self.p(s)):
                os.unlink(self.p(s))
        self.boots += 1
        cmd = [
            "qemu-system-x86_64", "-nodefaults", "-nographic", "-no-user-config",
            "-accel", "tcg,thread=single", "-cpu", "max", "-machine", "q35", "-smp", "1", "-m", "512M",
            "-kernel", os.path.join(self.image, "vmlinuz"), "-initrd", os.path.join(self.image, "initrd.cpio.gz"),
            "-append", "console=ttyS0 rdinit=/init panic=-1 quiet modprobe.blacklist=kvm,kvm_amd,kvm_intel",
            # cache=unsafe: the guest's flushes (dpkg, journald) stop at QEMU;
            # the overlay is thrown away after the run anyway.
            "-drive", f"file={self.p('root.qcow2')},if=none,id=d0,format=qcow2,cache=unsafe",
            "-device", "virtio-blk-pci,drive=d0,serial=qga-root",
            "-drive", f"file={self.payload},if=none,id=d1,format=raw,readonly=on",
            "-device", "virtio-blk-pci,drive=d1,serial=payload",
            "-serial", f"file:{self.p('console-%d.log' % self.boots)}",
            "-chardev", f"socket,id=s1,path={self.p('ttyS1.sock')},server=on,wait=off", "-serial", "chardev:s1",
            "-chardev", f"socket,id=s2,path={self.p('ttyS2.sock')},server=on,wait=off", "-serial", "chardev:s2",
            "-device", "virtio-serial-pci,id=vser0",
            "-chardev", f"socket,id=qga0,path={self.p('qga.sock')},server=on,wait=off",
            "-device", f"virtserialport,bus=vser0.0,chardev=qga0,name={PORT},id=qgaport",
            "-qmp", f"unix:{self.p('qmp.sock')},server=on,wait=off",
        ]
        self.qemu = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=open(self.p("qemu.log"), "ab"),
                                     stderr=subprocess.STDOUT)
        self.t_start = time.monotonic()
        deadline = time.monotonic() + 20
        while not all(os.path.exists(self.p(s)) for s in ("qga.sock", "ttyS1.sock", "ttyS2.sock", "qmp.sock")):
            if self.qemu.poll() is not None or time.monotonic() > deadline:
                raise Fail(f"QEMU did not start: {open(self.p('qemu.log')).read()[-500:]}")
            time.sleep(0.05)
        self.root = Console(self.p("ttyS1.sock"), "ttyS1")
        self.user = Console(self.p("ttyS2.sock"), "ttyS2")
        self.root.connect()
        self.user.connect()
        self.agent = Agent(self.p("qga.sock"))

    def wait_exit(self, timeout):
        try:
            self.qemu.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def stop(self):
        if self.qemu and self.qemu.poll() is None:
            self.qemu.terminate()
            if not self.wait_exit(10):
                self.qemu.kill()
                self.qemu.wait()
        for c in ("agent", "root", "user"):
            o = getattr(self, c, None)
            if o is not None and getattr(o, "sock", None):
                try:
                    o.sock.close()
                except OSError:
                    pass


# ---------------------------------------------------------------------------
# A scenario: one agent package in one guest.


class Scenario:
    def __init__(self, name, args, payload):
        self.name, self.args = name, args
        self.unit = "qga.service" if name == "qga" else "qemu-guest-agent.service"
        self.proc = "qga" if name == "qga" else "qemu-ga"
        self.g = Guest(args.image, os.path.join(args.work, name), payload)
        self.res = {}  # what libvirt would see, compared between agents
        self.times = []
        self.failed = 0

    def check(self, what, cond, detail=""):
        with LOCK:
            if cond:
                RESULTS["passed"] += 1
                print(f"PASS [{self.name}] {what}", flush=True)
            else:
                RESULTS["failed"] += 1
                self.failed += 1
                print(f"FAIL [{self.name}] {what}: {detail or 'condition false'}", flush=True)
        return cond

    def measure(self, what, secs):
        self.times.append((what, secs))
        say(f"MEASURED [{self.name}] {what}: {secs:.1f} s")

    def step(self, what, fn, *a):
        try:
            return fn(*a)
        except (Fail, OSError, ValueError, KeyError) as e:
            self.check(what, False, f"{type(e).__name__}: {e}")
            return None

    # -- helpers ------------------------------------------------------------
    def boot_login(self):
        g = self.g
        g.start()
        t = time.monotonic()
        if not g.root.login("root", ROOT_PW, timeout=240):
            raise Fail("root login refused")
        self.measure(f"QEMU start {g.boots}: to a root shell on ttyS1", time.monotonic() - t + (t - g.t_start))

    def main_pid(self):
        return int(self.g.root.out(f"systemctl show -p MainPID --value {self.unit}") or 0)

    def wait_state(self, want, timeout=30):
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            _, state = self.g.root.run(f"systemctl is-active {self.unit}")
            if state == want:
                return True
            time.sleep(0.5)
        return False

    def boot_id(self):
        return self.g.root.out("cat /proc/sys/kernel/random/boot_id")

    def after_reboot(self, old_boot_id, what, t):
        """Waits for the new boot's getty on ttyS1 (the old shell is gone),
        then for the agent; returns True when it answered."""
        g = self.g
        g.agent.close()
        g.root.expect(rb"login: ", 300)
        took = self.agent_answers(what, 300)
        if took is not None:
            self.measure(f"{what}: to the agent's answer", time.monotonic() - t)
        g.root.buf = b""
        if not g.root.login("root", ROOT_PW, 120):
            raise Fail("root login refused")
        if self.boot_id() == old_boot_id:
            raise Fail("the guest did not reboot")
        return took is not None

    def agent_answers(self, what, timeout=120):
        try:
            took = self.g.agent.sync(timeout)
            self.check(what, True)
            return took
        except Fail as e:
            self.check(what, False, str(e))
            return None

    def journal_clean(self, what):
        r = self.g.root
        boots = 2 if r.run("journalctl -b -1 -n 1 -q >/dev/null")[0] == 0 else 1
        log = r.out("journalctl -b -1 -o cat --no-pager | tail -n 4000", timeout=120)
        bad = [line for line in log.splitlines() if HARD_KILL.search(line)]
        ulog = r.out(f"journalctl -b -1 -u {self.unit} -o cat --no-pager | tail -n 20")
        ran = "Started " in ulog
        stopped = not ran or "Deactivated successfully" in ulog or "Stopped " in ulog
        ok = boots == 2 and not bad and stopped
        self.check(f"{what}: previous boot's journal clean (no unit killed the hard way) and {self.unit} stopped",
                   ok, f"boots={boots} hard kills={bad[:5]} unit log tail={ulog[-400:]!r}")
        self.res[f"journal clean: {what}"] = ok

    def install(self, spec, what):
        t = time.monotonic()
        rc, out = self.g.root.run(f"apt install -y {spec} </dev/null 2>&1 | tail -n 40; exit_code=${{PIPESTATUS[0]}};"
                                  " (exit $exit_code)", timeout=600)
        self.measure(f"apt install {os.path.basename(spec)}", time.monotonic() - t)
        removed = re.findall(r"^Removing (\S+)", out, re.M)
        self.check(f"{what}: apt install {os.path.basename(spec)} succeeded", rc == 0, out[-1500:])
        return rc, out, removed

    # -- the flow ---------------------------------------------------------------
    def run(self):
        try:
            self.flow()
        except Exception as e:  # noqa: BLE001 - report and end the scenario
            self.check("scenario", False, f"{type(e).__name__}: {e}")
            for i in range(1, self.g.boots + 1):
                p = self.g.p(f"console-{i}.log")
                if os.path.exists(p):
                    say(f"---- [{self.name}] console of boot {i} (tail) ----\n" + open(p, errors="replace").read()[-3000:])
        finally:
            self.g.stop()

    def flow(self):
        g, name = self.g, self.name
        # ---- boot 1: install, configure, reboot -----------------------------
        self.boot_login()
        r = g.root
        r.out("mkdir -p /root/pkgs && tar -xf /dev/vdb -C /root/pkgs && ls /root/pkgs")
        if name == "qga":
            rc, out, removed = self.install(f"/root/pkgs/{os.path.basename(self.args.deb)}", "install")
            self.check("install removed nothing", not removed, str(removed))
            took = self.agent_answers("answers right after apt install (postinst: udev trigger + start)", 60)
            if took is not None:
                self.measure("apt install done to the agent's answer", took)
        else:
            rc, out, removed = self.install("qemu-guest-agent", "install")
            _, state = r.run(f"systemctl is-active {self.unit}")
            say(f"NOTE [{name}] after apt install: {self.unit} is {state} (Debian's postinst does not start"
                " a static unit: it starts at the next boot or port event)")
        # The administrator enables the freeze hook and drops a script in its directory.
        r.out("if grep -q '^#fsfreeze-hook=' /etc/qemu/qemu-ga.conf 2>/dev/null; then"
              " sed -i 's|^#fsfreeze-hook=.*|fsfreeze-hook=/etc/qemu/fsfreeze-hook|' /etc/qemu/qemu-ga.conf;"
              " else printf '[general]\\nfsfreeze-hook=/etc/qemu/fsfreeze-hook\\n' >> /etc/qemu/qemu-ga.conf; fi")
        r.out("printf '#!/bin/sh\\necho \"e2e-hook $1\" >> /var/log/e2e-hook.log\\n' > /etc/qemu/fsfreeze-hook.d/e2e-log"
              " && chmod 755 /etc/qemu/fsfreeze-hook.d/e2e-log")
        self.check("fsfreeze hook and hook directory present",
                   r.run("test -x /etc/qemu/fsfreeze-hook && test -d /etc/qemu/fsfreeze-hook.d")[0] == 0)
        if name == "qemu-ga":
            # Debian's postinst does not start its static unit: the port's
            # event (what a reboot or a plug gives) does.
            r.out("udevadm trigger --subsystem-match=virtio-ports --action=add && udevadm settle")
            self.agent_answers("qemu-ga answers after udevadm trigger", 60)
        # reboot through the agent (virsh reboot --mode agent): the agent
        # then starts at boot with the configuration.
        bid = self.boot_id()
        g.agent.sync(30)
        g.agent.send_only("guest-shutdown", {"mode": "reboot"})
        t = time.monotonic()

        # ---- boot 2 (a reboot inside the same QEMU) -------------------------
        up = self.after_reboot(bid, "started by udev/systemd at boot (after guest-shutdown reboot)", t)
        self.res["starts at boot, after guest-shutdown reboot"] = up
        if not up:
            raise Fail("no agent after the reboot")
        self.step("journal after guest-shutdown reboot", self.journal_clean, "guest-shutdown reboot")
        self.check(f"{self.unit} active", self.wait_state("active", 5))
        self.step("libvirt commands", self.libvirt_checks)
        self.step("restart on kill", self.kill_check)
        self.step("hot-unplug and plug", self.unplug_check)
        if name == "qga":
            self.step("upgrade", self.upgrade_check)
        g.agent.sync(30)
        g.agent.send_only("guest-shutdown", {"mode": "powerdown"})
        t = time.monotonic()
        off = g.wait_exit(180)
        self.check("guest-shutdown powerdown: QEMU exited", off)
        self.res["agent powerdown"] = off
        if off:
            self.measure("guest-shutdown powerdown to QEMU exit", time.monotonic() - t)
        g.stop()

        # ---- boot 3: the powerdown's journal; purge or switch ---------------
        self.boot_login()
        self.res["starts at boot, after a powerdown"] = self.agent_answers("starts at boot after a powerdown", 300) is not None
        self.step("journal after guest-shutdown powerdown", self.journal_clean, "guest-shutdown powerdown")
        if name == "qga":
            self.step("purge", self.purge_check)
        else:
            self.step("switch to qga and back", self.switch_check)
        g.root.send("systemctl poweroff\r")
        g.wait_exit(120)

    def libvirt_checks(self):
        g, a, r, u = self.g, self.g.agent, self.g.root, self.g.user
        # virsh guestinfo --user: guest-get-users, after a real login on ttyS2
        self.check("alice logs in on ttyS2", u.login("alice", ALICE_PW))
        self.check("logind has alice's session", "alice" in r.out("loginctl list-sessions --no-legend"))
        users = a.ok("guest-get-users")
        self.res["guest-get-users (names)"] = sorted(x.get("user", "") for x in users)
        say(f"INFO [{self.name}] guest-get-users: {users}; who: {r.out('who')!r}")
        # virsh domfsinfo: guest-get-fsinfo, the ext4 root on virtio-blk
        fs = a.ok("guest-get-fsinfo")
        root = [f for f in fs if f.get("mountpoint") == "/"]
        self.check("guest-get-fsinfo: / is ext4 on the virtio-blk disk (serial qga-root)",
                   len(root) == 1 and root[0]["type"] == "ext4"
                   and any(d.get("serial") == "qga-root" and d.get("bus-type") == "virtio" for d in root[0]["disk"]),
                   json.dumps(fs))
        norm = [{k: v for k, v in f.items() if k != "used-bytes"} for f in fs]
        self.res["guest-get-fsinfo (used-bytes left out)"] = json.dumps(norm, sort_keys=True)
        # virsh domfsfreeze / domfsthaw: the real root, the hook logging both
        n = a.ok("guest-fsfreeze-freeze", timeout=60)
        status = a.ok("guest-fsfreeze-status")
        marker = r.run("test -e /run/qga.state.isfrozen")[0] == 0
        m = a.ok("guest-fsfreeze-thaw", timeout=60)
        status2 = a.ok("guest-fsfreeze-status")
        hook = r.out("cat /var/log/e2e-hook.log")
        pkg_hook = r.out("grep -c 'finished successfully' /var/log/qga-fsfreeze-hook.log || true")
        self.check("freeze/thaw of /: counts, status, frozen marker, hook called with freeze then thaw",
                   n >= 1 and m == n and status == "frozen" and status2 == "thawed" and marker
                   and hook.split() == ["e2e-hook", "freeze", "e2e-hook", "thaw"],
                   f"freeze={n} thaw={m} status={status}/{status2} marker={marker} hook={hook!r}")
        self.res["fsfreeze"] = (n, status, marker, m, status2, hook, pkg_hook)
        # virsh set-user-password: the real user's password, then a login with it
        before = r.out("getent shadow alice | cut -d: -f2")
        a.ok("guest-set-user-password", {"username": "alice", "password": base64.b64encode(ALICE_NEW_PW.encode()).decode(),
                                          "crypted": False})
        after = r.out("getent shadow alice | cut -d: -f2")
        u.logout()
        ok_new = u.login("alice", ALICE_NEW_PW)
        self.check("set-user-password: shadow changed and alice logs in with the new password",
                   before != after and ok_new, f"changed={before != after} login={ok_new}")
        self.res["set-user-password + login"] = (before != after, ok_new)
        err = a.call("guest-set-user-password", {"username": "nosuchuser", "password": "eA==", "crypted": False})
        self.res["set-user-password unknown user: error class"] = err.get("error", {}).get("class")
        # the ssh authorized-keys API (virsh set-user-sshkeys / get-user-sshkeys)
        r.out("rm -rf /home/alice/.ssh")
        a.ok("guest-ssh-add-authorized-keys", {"username": "alice", "keys": KEYS, "reset": False})
        got = a.ok("guest-ssh-get-authorized-keys", {"username": "alice"})
        modes = r.out("stat -c '%U:%G %a %n' /home/alice/.ssh /home/alice/.ssh/authorized_keys")
        a.ok("guest-ssh-remove-authorized-keys", {"username": "alice", "keys": KEYS[:1]})
        got2 = a.ok("guest-ssh-get-authorized-keys", {"username": "alice"})
        content = r.out("cat /home/alice/.ssh/authorized_keys")
        modes2 = r.out("stat -c '%U:%G %a %n' /home/alice/.ssh /home/alice/.ssh/authorized_keys")
        self.check("ssh keys: add, get, remove on alice's ~/.ssh, owned by alice",
                   sorted(got.get("keys", [])) == sorted(KEYS) and got2.get("keys") == KEYS[1:] and content.strip() == KEYS[1]
                   and modes.splitlines()[0].startswith("alice:alice "),
                   f"get={got} after remove={got2} file={content!r} modes={modes!r}")
        self.res["ssh keys"] = (got, got2, content, modes, modes2)
        u.logout()

    def kill_check(self):
        r = self.g.root
        pid = self.main_pid()
        r.out(f"kill -9 {pid}")
        deadline = time.monotonic() + 30
        new = 0
        while time.monotonic() < deadline:
            new = self.main_pid()
            if new and new != pid:
                break
            time.sleep(0.5)
        self.g.agent.close()
        ok = new not in (0, pid) and self.agent_answers("answers after kill -9 of its main process", 60) is not None
        self.check(f"killed (pid {pid}) -> restarted by systemd (pid {new})", ok)
        self.res["restarted after kill -9"] = ok

    def unplug_check(self):
        g, r = self.g, self.g.root
        q = Qmp(g.p("qmp.sock"))
        try:
            t = time.monotonic()
            q.cmd("device_del", id="qgaport")
            q.wait_event("DEVICE_DELETED", 30)
            stopped = self.wait_state("inactive", 30)
            _, procs = r.run(f"pgrep -x {self.proc} || true")
            gone = r.run(f"test -e /dev/virtio-ports/{PORT}")[0] != 0
            self.check("port hot-unplugged (device_del) -> service stopped, no agent process",
                       stopped and gone and not procs.strip(), f"stopped={stopped} node gone={gone} procs={procs!r}")
            self.measure("device_del to the service inactive", time.monotonic() - t)
            self.res["stopped on unplug"] = stopped and not procs.strip()
            g.agent.close()
            t = time.monotonic()
            q.cmd("device_add", driver="virtserialport", bus="vser0.0", chardev="qga0", name=PORT, id="qgaport")
            took = self.agent_answers("port plugged back (device_add) -> started, answering", 60)
            started = self.wait_state("active", 10)
            self.check("service active again after device_add", started)
            if took is not None:
                self.measure("device_add to the agent's answer", time.monotonic() - t)
            self.res["started on plug"] = started and took is not None
        finally:
            q.close()

    def upgrade_check(self):
        r = self.g.root
        pid = self.main_pid()
        new_deb = os.path.basename(self.args.deb_upgrade)
        want = new_deb.split("_")[1]
        rc, out, removed = self.install(f"/root/pkgs/{new_deb}", "upgrade")
        ver = r.out("dpkg-query -W -f='${Version}' qga")
        new = self.main_pid()
        exe = r.out(f"readlink /proc/{new}/exe") if new else ""
        same = r.run(f"test \"$(md5sum < /proc/{new}/exe | cut -d' ' -f1)\" = "
                     "\"$(grep ' usr/sbin/qga$' /var/lib/dpkg/info/qga.md5sums | cut -d' ' -f1)\"")[0] == 0
        self.g.agent.close()
        ok = self.agent_answers("answers after the upgrade", 60) is not None
        self.check(f"upgrade to {want}: service restarted on the new binary",
                   ver == want and new not in (0, pid) and exe == "/usr/sbin/qga" and same and ok,
                   f"version={ver} pid {pid}->{new} exe={exe!r} md5 matches={same}")

    def switch_check(self):
        """On the running qemu-ga guest: qga's package replaces Debian's
        (the administrator's qemu-ga.conf kept, qga answering at once),
        then qemu-guest-agent replaces qga, then both are purged."""
        r, a = self.g.root, self.g.agent
        status = "for p in qga qemu-guest-agent; do dpkg-query -W -f='${db:Status-Abbrev} ' $p 2>/dev/null || printf 'none '; done"
        new_deb = os.path.basename(self.args.deb_upgrade)
        rc, out, removed = self.install(f"/root/pkgs/{new_deb}", "replace qemu-guest-agent on a running system")
        st = r.out(status)
        a.close()
        ok = self.agent_answers("qga answers right after replacing qemu-guest-agent", 60) is not None
        info = a.ok("guest-info") if ok else {}
        conf = r.out("grep -c '^fsfreeze-hook=/etc/qemu/fsfreeze-hook' /etc/qemu/qemu-ga.conf || true")
        self.check("qga installed, qemu-guest-agent removed (nothing else), the administrator's qemu-ga.conf kept",
                   st.split() == ["ii", "rc"] and removed == ["qemu-guest-agent"] and info.get("version") == "10.2.0"
                   and conf == "1", f"status={st!r} removed={removed} version={info.get('version')} conf={conf}")
        if ok:
            n = a.ok("guest-fsfreeze-freeze", timeout=60)
            m = a.ok("guest-fsfreeze-thaw", timeout=60)
            hook = r.out("tail -n 2 /var/log/e2e-hook.log")
            self.check("qga runs the freeze hook the administrator configured for qemu-ga",
                       n == m and hook.split() == ["e2e-hook", "freeze", "e2e-hook", "thaw"], f"{n} {m} {hook!r}")
        rc, out, removed = self.install("qemu-guest-agent", "switch back to Debian's qemu-guest-agent")
        st = r.out(status)
        self.check("qemu-guest-agent installed, qga removed (conffiles kept), nothing else removed",
                   st.split() == ["rc", "ii"] and removed == ["qga"], f"status={st!r} removed={removed}")
        # Debian's postinst does not start its static unit: a port event (or a reboot) does.
        r.out("udevadm trigger --subsystem-match=virtio-ports --action=add && udevadm settle")
        a.close()
        a.sync(60)
        info = a.ok("guest-info")
        self.check("qemu-ga answers after the switch back (udevadm trigger)",
                   info.get("version", "").startswith("10.0"), info.get("version"))
        r.out("rm -f /etc/qemu/fsfreeze-hook.d/e2e-log /var/log/e2e-hook.log")  # the administrator's own files
        # qga's config files (kept since its removal) purged while
        # qemu-guest-agent is installed: the shared hook log stays in use.
        rc, out = r.run("apt purge -y qga </dev/null 2>&1 | tail -n 20", timeout=300)
        _, st = r.run("dpkg-query -W -f='${db:Status-Abbrev}' qga 2>&1")
        ok = rc == 0 and r.run("test ! -e /etc/qemu/qemu-ga.conf && test -e /etc/qemu/fsfreeze-hook")[0] == 0
        self.check("apt purge qga after the switch: its record and qemu-ga.conf gone, qemu-guest-agent's hook kept",
                   ok and ("no packages found" in st or st.strip() in ("", "un")), f"rc={rc} status={st!r} {out[-600:]}")
        rc, out = r.run("apt purge -y qemu-guest-agent </dev/null 2>&1 | tail -n 20", timeout=300)
        left = r.out("ls -d /etc/qemu /usr/sbin/qga /usr/sbin/qemu-ga 2>/dev/null || true")
        self.check("apt purge qemu-guest-agent: nothing of either package left", rc == 0 and not left.strip(),
                   f"rc={rc} left={left!r} {out[-600:]}")
        _, log = r.run("ls /var/log/qga-fsfreeze-hook.log 2>/dev/null || true")
        if log.strip():
            say(f"NOTE [{self.name}] Debian's qemu-guest-agent leaves its hook log on purge: {log.strip()}")

    def purge_check(self):
        r = self.g.root
        r.out("rm -f /etc/qemu/fsfreeze-hook.d/e2e-log /var/log/e2e-hook.log")  # the administrator's own files
        rc, out = r.run("apt purge -y qga </dev/null 2>&1 | tail -n 20", timeout=300)
        self.check("apt purge qga", rc == 0, out)
        _, st = r.run("dpkg-query -W -f='${db:Status-Abbrev}' qga 2>&1")
        left = r.out("ls -d /etc/qemu /usr/sbin/qga /usr/sbin/qemu-ga /usr/lib/systemd/system/qga.service"
                     " /usr/lib/udev/rules.d/60-qga.rules /usr/share/doc/qga /usr/share/man/man8/qga.8.gz"
                     " /var/log/qga-fsfreeze-hook.log* /var/lib/systemd/deb-systemd-helper-enabled/*qga*"
                     " /var/lib/systemd/deb-systemd-helper-masked/*qga* /var/lib/dpkg/info/qga.* 2>/dev/null || true")
        _, unit = r.run("systemctl cat qga.service >/dev/null 2>&1 && echo still-known || echo gone")
        _, procs = r.run("pgrep -x qga || true")
        self.check("purge: nothing left (package, files, /etc/qemu, logs, unit, process)",
                   st.strip() in ("", "un") or "no packages found" in st, f"dpkg status={st!r}")
        inside = r.out("find /etc/qemu 2>/dev/null || true")
        self.check("purge: no file of the package left behind", not left.strip() and unit == "gone" and not procs.strip(),
                   f"left={left!r} /etc/qemu holds {inside!r} unit={unit} procs={procs!r}")


def make_payload(work, debs):
    path = os.path.join(work, "payload.tar")
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as t:
        for d in debs:
            t.add(d, arcname=os.path.basename(d))
    size = os.path.getsize(path)
    with open(path, "ab") as f:  # a whole number of 512-byte sectors, 1 MiB at least
        f.write(b"\0" * (max(1 << 20, -(-size // 512) * 512) - size))
    return path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--image", required=True)
    ap.add_argument("--deb", required=True)
    ap.add_argument("--deb-upgrade", required=True)
    ap.add_argument("--work", default=os.path.join(ROOT, "target", "distro", "run"))
    ap.add_argument("--agent", default="both", choices=["both", "qga", "qemu-ga"])
    args = ap.parse_args()

    def on_signal(signum, _frame):
        for g in GUESTS:
            if g.qemu and g.qemu.poll() is None:
                g.qemu.kill()
        say(f"e2e-distro: stopped by signal {signum}")
        os._exit(2)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    os.makedirs(args.work, exist_ok=True)
    payload = make_payload(args.work, [args.deb, args.deb_upgrade])
    t0 = time.monotonic()
    names = ["qga", "qemu-ga"] if args.agent == "both" else [args.agent]
    scenarios = [Scenario(n, args, payload) for n in names]
    threads = [threading.Thread(target=s.run) for s in scenarios]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if len(scenarios) == 2:
        a, b = scenarios
        for key in sorted(set(a.res) | set(b.res)):
            va, vb = a.res.get(key), b.res.get(key)
            with LOCK:
                if va is not None and va == vb:
                    RESULTS["passed"] += 1
                    print(f"PASS same with qga and qemu-ga: {key}", flush=True)
                else:
                    RESULTS["failed"] += 1
                    print(f"FAIL differs between qga and qemu-ga: {key}\n  qga:     {va}\n  qemu-ga: {vb}", flush=True)
    say(f"MEASURED e2e-distro: both scenarios in {time.monotonic() - t0:.0f} s")
    say(f"e2e-distro: {RESULTS['passed']} passed, {RESULTS['failed']} failed")
    sys.exit(1 if RESULTS["failed"] else 0)


if __name__ == "__main__":
    main()
