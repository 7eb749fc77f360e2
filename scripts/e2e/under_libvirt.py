#!/usr/bin/env python3
"""qga under Debian's libvirt: `make e2e-libvirt`.

    scripts/e2e/under_libvirt.py --qga target/static/qga --kernel target/e2e/kernel/current \
        [--busybox /bin/busybox] [--work target/e2e/libvirt] [--agent qga|qemu-ga] [--keep]

1. Installs Debian's libvirt when missing (libvirt-daemon,
   libvirt-daemon-driver-qemu, libvirt-clients, python3-libvirt; no
   recommends, never libvirt-daemon-system, which pulls systemd-sysv), with
   `apt-get install --no-remove`.
2. Starts its own libvirtd, without systemd, in a private mount namespace
   (`unshare -m`): /etc/libvirt, /var/lib/libvirt, /var/cache/libvirt,
   /var/log/libvirt and /run/libvirt are bind mounts of directories under
   --work, and /etc/passwd and /etc/group are copies that add the
   `libvirt-qemu` user and group Debian's QEMU driver insists on, when the
   machine has none. Nothing of the machine's configuration changes;
   mount points missing on the machine are created empty and removed at the
   end. The host side talks to it through
   `qemu:///system?socket=WORK/run/libvirt-sock`.
3. Defines a `type='qemu'` (TCG) domain that boots the kernel directly with
   an initramfs whose /init is qga, with the standard
   `org.qemu.guest_agent.0` virtio channel, a virtio-blk disk (ext4, mounted
   at /mnt in the guest), a virtio NIC (user networking) and two vCPUs;
   busybox has no chpasswd, so the image carries scripts/e2e/chpasswd.sh.
4. Runs the agent-backed virsh commands and checks their output: guestinfo
   (all groups, then --disk), domfsinfo, domifaddr --source agent, domtime
   (and --sync), guestvcpus, domfsfreeze/domfsthaw, domfstrim, domhostname
   --source agent, qemu-agent-command (guest-ping, guest-info, guest-exec
   and guest-exec-status), set-user-password, reboot --mode agent and
   shutdown --mode agent.
5. Stops everything it started: the domain, libvirtd (by pid), the mount
   points it made.

`--agent qemu-ga` runs the same checks against Debian's qemu-ga 10.0.2
(target/ref, scripts/fetch-qemu-ga.sh) in the same kind of guest: qga is
still /init, but serves a second port (org.qemu.guest_agent.1, a socket
of our own) and starts qemu-ga with guest-exec on the standard port that
libvirt uses. The power checks are skipped there: qemu-ga 10.0 runs
`/sbin/shutdown`, which busybox lacks (qga follows QEMU 10.2, README).

Prints PASS/FAIL per check, the durations of the phases and a closing
"N passed, N failed, N skipped" line; exits 1 when a check failed.
"""

import argparse
import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import RESULTS, ROOT, Client, check, failed, kernel_image, measured, passed, say, skipped  # noqa: E402

PACKAGES = ["libvirt-daemon", "libvirt-daemon-driver-qemu", "libvirt-clients", "python3-libvirt"]
DOMAIN = "qga-e2e-libvirt"
MAC = "52:54:00:12:34:56"
GUEST_IP = "10.0.2.15"
# virtio base, the agent's port, virtio-blk, virtio-net (ext4 is built into
# Debian's cloud kernel).
MODULES = ("virtio_ring,virtio,virtio_pci_legacy_dev,virtio_pci_modern_dev,virtio_pci,virtio_console,"
           "virtio_blk,failover,net_failover,virtio_net")
# Directories libvirtd keeps its state in, each replaced by one under --work.
PRIVATE_DIRS = {
    "/etc/libvirt": "etc",
    "/var/lib/libvirt": "lib",
    "/var/cache/libvirt": "cache",
    "/var/log/libvirt": "log",
    "/run/libvirt": "run",
}


def sh(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def install_libvirt():
    have = shutil.which("libvirtd") and shutil.which("virsh")
    if have and sh(["/usr/bin/python3", "-c", "import libvirt"]).returncode == 0:
        return
    say("libvirt: apt-get install --no-remove --no-install-recommends " + " ".join(PACKAGES))
    # scripts/apt.sh waits for another apt or dpkg instead of failing.
    apt = ["bash", os.path.join(ROOT, "scripts", "apt.sh")]
    install = [*apt, "install", "-q", "--no-remove", "--no-install-recommends", *PACKAGES]
    if subprocess.run(install).returncode != 0:
        subprocess.run([*apt, "update", "-q"], check=True)
        subprocess.run(install, check=True)


class Libvirtd:
    """libvirtd in its own mount namespace, state under WORK."""

    def __init__(self, work):
        self.work = work
        self.proc = None
        self.made = []  # mount points created on the machine
        self.uri = f"qemu:///system?socket={work}/run/libvirt-sock"

    def _write_config(self):
        w = self.work
        for sub in PRIVATE_DIRS.values():
            os.makedirs(os.path.join(w, sub), exist_ok=True)
        with open(os.path.join(w, "etc", "libvirtd.conf"), "w") as f:
            f.write('unix_sock_group = "root"\nunix_sock_rw_perms = "0700"\nauth_unix_rw = "none"\n'
                    'auth_unix_ro = "none"\nlog_outputs = "3:file:/var/log/libvirt/libvirtd.log"\n')
        with open(os.path.join(w, "etc", "qemu.conf"), "w") as f:
            # QEMU as root without a security driver, cgroups or a private
            # /dev: nothing on the machine is relabelled or re-owned.
            f.write('user = "root"\ngroup = "root"\ndynamic_ownership = 0\nremember_owner = 0\n'
                    'security_driver = "none"\ncgroup_controllers = [ ]\nnamespaces = [ ]\n'
                    'stdio_handler = "file"\n')
        # /etc/passwd and /etc/group with libvirt-qemu, when missing.
        for name, line in (("passwd", "libvirt-qemu:x:64055:64055:libvirt qemu:/var/lib/libvirt:/usr/sbin/nologin\n"),
                           ("group", "libvirt-qemu:x:64055:\n")):
            text = open(f"/etc/{name}").read()
            if not re.search(r"^libvirt-qemu:", text, re.M):
                text += ("" if text.endswith("\n") else "\n") + line
            with open(os.path.join(w, name), "w") as f:
                f.write(text)

    def start(self, timeout=60):
        self._write_config()
        for target in PRIVATE_DIRS:
            if not os.path.isdir(target):
                os.makedirs(target)
                self.made.append(target)
        binds = [f"mount --bind {self.work}/{sub} {target}" for target, sub in PRIVATE_DIRS.items()]
        binds += [f"mount --bind {self.work}/passwd /etc/passwd", f"mount --bind {self.work}/group /etc/group"]
        script = " && ".join(binds) + f" && exec libvirtd -f /etc/libvirt/libvirtd.conf -p {self.work}/libvirtd.pid"
        self.proc = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                                     stdin=subprocess.DEVNULL, stdout=open(os.path.join(self.work, "libvirtd.out"), "wb"),
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"libvirtd exited ({self.proc.returncode}): " + self.log_tail())
            if os.path.exists(os.path.join(self.work, "run", "libvirt-sock")) and self.virsh("version").returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError("libvirtd did not come up: " + self.log_tail())

    def log_tail(self, n=30):
        out = []
        for p in (os.path.join(self.work, "libvirtd.out"), os.path.join(self.work, "log", "libvirtd.log")):
            if os.path.exists(p):
                out += open(p, errors="replace").read().splitlines()[-n:]
        return "\n".join(out)

    def virsh(self, *args, timeout=120):
        return sh(["virsh", "-c", self.uri, *args], timeout=timeout)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for target in reversed(self.made):
            try:
                os.rmdir(target)
            except OSError as e:
                say(f"libvirt: could not remove the mount point {target} made for the test: {e}")


def domain_xml(o):
    return f"""<domain type='qemu'>
  <name>{DOMAIN}</name>
  <memory unit='MiB'>256</memory>
  <vcpu>2</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>{o.vmlinuz}</kernel>
    <initrd>{o.initramfs}</initrd>
    <cmdline>console=ttyS0 panic=-1 rdinit=/init quiet{o.init_args}</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>{shutil.which('qemu-system-x86_64')}</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw' discard='unmap'/>
      <source file='{o.disk}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='user'>
      <mac address='{MAC}'/>
      <model type='virtio'/>
    </interface>
    <channel type='unix'>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
    </channel>{o.side_channel}
    <serial type='file'>
      <source path='{o.console}'/>
      <target port='0'/>
    </serial>
    <memballoon model='none'/>
  </devices>
</domain>
"""


# virsh commands whose output must not depend on the agent (qga or qemu-ga).
COMPARED = [("guestinfo",), ("guestinfo", "--disk"), ("domfsinfo",), ("domifaddr", "--source", "agent"),
            ("guestvcpus",), ("domhostname", "--source", "agent")]


class Checks:
    def __init__(self, lv, tag):
        self.lv = lv
        self.tag = tag
        self.outputs = {}  # COMPARED command -> (exit status, stdout, stderr)

    def check(self, name, cond, detail=""):
        return check(f"{self.tag}: {name}", cond, detail)

    def virsh(self, *args, timeout=120):
        r = self.lv.virsh(*args, timeout=timeout)
        out = (r.returncode, r.stdout, r.stderr.strip())
        key = tuple(a for a in args if a != DOMAIN)
        if key in COMPARED:
            self.outputs[" ".join(key)] = out
        return out

    def agent(self, cmd, args=None, timeout=30):
        """qemu-agent-command; the reply's `return` or raises."""
        req = {"execute": cmd}
        if args is not None:
            req["arguments"] = args
        rc, out, err = self.virsh("qemu-agent-command", DOMAIN, json.dumps(req), "--timeout", str(timeout))
        if rc != 0:
            raise RuntimeError(f"{cmd}: {err}")
        return json.loads(out)["return"]

    def run(self, argv, timeout=30):
        """guest-exec through libvirt; (exitcode, stdout, stderr)."""
        pid = self.agent("guest-exec", {"path": argv[0], "arg": argv[1:], "capture-output": True})["pid"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.agent("guest-exec-status", {"pid": pid})
            if st["exited"]:
                dec = lambda k: base64.b64decode(st.get(k, "")).decode(errors="replace")  # noqa: E731
                return st.get("exitcode"), dec("out-data"), dec("err-data")
            time.sleep(0.1)
        raise RuntimeError(f"{argv} did not finish")

    def wait_agent(self, timeout):
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                self.agent("guest-ping", timeout=5)
                return True
            except (RuntimeError, ValueError) as e:
                last = str(e)
                time.sleep(0.5)
        say(f"agent did not answer within {timeout} s: {last}")
        return False

    def boot_id(self):
        code, out, _ = self.run(["cat", "/proc/sys/kernel/random/boot_id"])
        return out.strip() if code == 0 else None


def kv(text):
    """virsh's `key : value` lines as a dict."""
    d = {}
    for line in text.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            d[k.strip()] = v.strip()
    return d


def prepare_guest(c):
    """What the checks need inside the guest: the disk mounted at /mnt, an
    address on eth0, a host name."""
    steps = [
        ["mkdir", "-p", "/mnt"],
        ["mount", "-t", "ext4", "/dev/vda", "/mnt"],
        ["ip", "link", "set", "lo", "up"],
        # No SLAAC address from the user network's router advertisements:
        # whether one has arrived yet would depend on timing.
        ["sh", "-c", "echo 0 > /proc/sys/net/ipv6/conf/eth0/accept_ra && echo 0 > /proc/sys/net/ipv6/conf/eth0/autoconf"],
        ["ip", "link", "set", "eth0", "up"],
        ["ip", "addr", "add", f"{GUEST_IP}/24", "dev", "eth0"],
        # The link-local IPv6 address is tentative for about a second
        # (duplicate address detection): wait until it is final, so the
        # interface lists compared between the agents do not depend on
        # how fast the agent got here.
        ["sh", "-c", "i=0; while [ $i -lt 150 ]; do a=$(ip -6 addr show dev eth0); "
         "case $a in *fe80*) case $a in *tentative*) ;; *) exit 0;; esac;; esac; i=$((i+1)); sleep 0.1; done; "
         "echo \"$a\"; exit 1"],
        ["hostname", "qga-libvirt-guest"],
    ]
    for argv in steps:
        code, out, err = c.run(argv)
        if code != 0:
            raise RuntimeError(f"guest setup {argv}: exit {code}: {out}{err}")


def start_qemu_ga(o):
    """qemu-ga on the standard port, started by qga from its own port."""
    def connect():
        import socket
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(o.side_sock)
        return s
    side = Client(connect)
    side.open(time.monotonic() + 30)
    side.sync(120)
    script = ("n=$(grep -l '^org.qemu.guest_agent.0$' /sys/class/virtio-ports/*/name) && "
              "p=$(basename $(dirname $n)) && mkdir -p /dev/virtio-ports && "
              "ln -sf ../$p /dev/virtio-ports/org.qemu.guest_agent.0 && "
              "exec /usr/sbin/qemu-ga -m virtio-serial -p /dev/virtio-ports/org.qemu.guest_agent.0 -t /run")
    side.ok("guest-exec", {"path": "/bin/sh", "arg": ["-c", script]})
    side.close()


def check_all(c, timings, power=True):
    t = time.monotonic()
    # guestinfo: every group, then the disk group alone.
    rc, out, err = c.virsh("guestinfo", DOMAIN)
    info = kv(out)
    c.check("guestinfo exit status", rc == 0, err)
    for key in ("user.count", "os.kernel-release", "os.machine", "timezone.offset", "hostname",
                "fs.count", "fs.0.mountpoint", "disk.count", "if.count"):
        c.check(f"guestinfo has {key}", key in info, out)
    c.check("guestinfo hostname", info.get("hostname") == "qga-libvirt-guest", info.get("hostname", ""))
    c.check("guestinfo os.machine", info.get("os.machine") == "x86_64", info.get("os.machine", ""))
    fs_mounts = [v for k, v in info.items() if re.fullmatch(r"fs\.\d+\.mountpoint", k)]
    c.check("guestinfo fs /mnt", "/mnt" in fs_mounts, out)
    n = next((k.split(".")[1] for k, v in info.items() if re.fullmatch(r"fs\.\d+\.mountpoint", k) and v == "/mnt"), None)
    if n is not None:
        c.check("guestinfo fs ext4 on vda", info.get(f"fs.{n}.fstype") == "ext4" and info.get(f"fs.{n}.disk.0.alias") == "vda",
              out)
    ifs = {v: k.split(".")[1] for k, v in info.items() if re.fullmatch(r"if\.\d+\.name", k)}
    c.check("guestinfo if eth0", "eth0" in ifs and info.get(f"if.{ifs['eth0']}.hwaddr") == MAC, out)

    rc, out, err = c.virsh("guestinfo", DOMAIN, "--disk")
    d = kv(out)
    c.check("guestinfo --disk exit status", rc == 0, err)
    names = {v: k.split(".")[1] for k, v in d.items() if re.fullmatch(r"disk\.\d+\.name", k)}
    c.check("guestinfo --disk lists /dev/vda", "/dev/vda" in names, out)
    if "/dev/vda" in names:
        i = names["/dev/vda"]
        c.check("guestinfo --disk vda: whole disk, alias vda",
              d.get(f"disk.{i}.partition") == "no" and d.get(f"disk.{i}.alias") == "vda", out)
    c.check("guestinfo --disk has only the disk group", all(k.startswith("disk.") for k in d), out)

    rc, out, err = c.virsh("domfsinfo", DOMAIN)
    rows = [line.split() for line in out.splitlines()[2:] if line.strip()]
    c.check("domfsinfo /mnt vda ext4 vda", ["/mnt", "vda", "ext4", "vda"] in rows, f"{rc} {out} {err}")

    rc, out, err = c.virsh("domifaddr", DOMAIN, "--source", "agent")
    rows = [line.split() for line in out.splitlines()[2:] if line.strip()]
    c.check("domifaddr lo", ["lo", "00:00:00:00:00:00", "ipv4", "127.0.0.1/8"] in rows, f"{rc} {out} {err}")
    c.check("domifaddr eth0", ["eth0", MAC, "ipv4", f"{GUEST_IP}/24"] in rows, f"{rc} {out} {err}")

    rc, out, err = c.virsh("domtime", DOMAIN)
    m = re.fullmatch(r"Time: (\d+)\s*", out)
    c.check("domtime", rc == 0 and m is not None and abs(int(m.group(1)) - time.time()) < 120, f"{rc} {out} {err}")
    rc, out, err = c.virsh("domtime", DOMAIN, "--sync")
    c.check("domtime --sync", rc == 0, err)

    rc, out, err = c.virsh("guestvcpus", DOMAIN)
    g = kv(out)
    c.check("guestvcpus", rc == 0 and g.get("vcpus") == "0-1" and g.get("online") == "0-1", f"{rc} {out} {err}")

    rc, out, err = c.virsh("domfsfreeze", DOMAIN, "--mountpoint", "/mnt")
    c.check("domfsfreeze", rc == 0 and "Froze 1 filesystem(s)" in out, f"{rc} {out} {err}")
    status = c.agent("guest-fsfreeze-status")
    c.check("frozen while frozen", status == "frozen", str(status))
    rc, out, err = c.virsh("domfsthaw", DOMAIN)
    c.check("domfsthaw", rc == 0 and "Thawed 1 filesystem(s)" in out, f"{rc} {out} {err}")
    c.check("thawed after thaw", c.agent("guest-fsfreeze-status") == "thawed")

    rc, out, err = c.virsh("domfstrim", DOMAIN)
    c.check("domfstrim", rc == 0, f"{rc} {out} {err}")

    rc, out, err = c.virsh("domhostname", DOMAIN, "--source", "agent")
    c.check("domhostname --source agent", rc == 0 and out.strip() == "qga-libvirt-guest", f"{rc} {out} {err}")

    c.check("qemu-agent-command guest-ping", c.agent("guest-ping") == {})
    gi = c.agent("guest-info")
    names = {x["name"] for x in gi["supported_commands"]}
    say(f"  the agent: version {gi['version']}, {len(names)} commands")
    c.check("qemu-agent-command guest-info", gi["version"] and "guest-get-disks" in names and "guest-exec" in names, str(gi)[:200])
    code, out, _ = c.run(["echo", "hello from qga"])
    c.check("qemu-agent-command guest-exec + guest-exec-status", code == 0 and out == "hello from qga\n", repr(out))

    rc, out, err = c.virsh("set-user-password", DOMAIN, "root", "qga-secret")
    c.check("set-user-password", rc == 0, f"{rc} {out} {err}")
    code, shadow, _ = c.run(["cat", "/etc/shadow"])
    h = next((line.split(":")[1] for line in shadow.splitlines() if line.startswith("root:")), "")
    salt = h.split("$")[2] if h.count("$") >= 3 else ""
    code, again, _ = c.run(["mkpasswd", "-m", "sha512", "-S", salt, "qga-secret"])
    c.check("set-user-password: root's hash is the password's", h.startswith("$6$") and again.strip() == h, f"{h} {again}")
    rc, out, err = c.virsh("set-user-password", DOMAIN, "nosuchuser", "x")
    c.check("set-user-password unknown user fails", rc != 0 and "unknown user" in err, err)
    timings.append((f"{c.tag}: virsh checks", time.monotonic() - t))
    if not power:
        skipped(f"{c.tag}: reboot/shutdown --mode agent", "qemu-ga 10.0 runs /sbin/shutdown, which busybox lacks")
        return

    t = time.monotonic()
    before = c.boot_id()
    rc, out, err = c.virsh("reboot", DOMAIN, "--mode", "agent")
    c.check("reboot --mode agent", rc == 0, err)
    deadline = time.monotonic() + 90
    after = before
    while time.monotonic() < deadline and after == before:
        time.sleep(1)
        try:
            after = c.boot_id()
        except (RuntimeError, ValueError, KeyError):
            after = before
    c.check("guest rebooted (new boot id, agent back)", after not in (None, before), f"{before} -> {after}")
    timings.append((f"{c.tag}: reboot --mode agent to agent back", time.monotonic() - t))

    t = time.monotonic()
    rc, out, err = c.virsh("shutdown", DOMAIN, "--mode", "agent")
    c.check("shutdown --mode agent", rc == 0, err)
    deadline = time.monotonic() + 60
    state = ""
    while time.monotonic() < deadline:
        state = c.virsh("domstate", DOMAIN)[1].strip()
        if state == "shut off":
            break
        time.sleep(0.5)
    c.check("domain shut off after shutdown --mode agent", state == "shut off", state)
    timings.append((f"{c.tag}: shutdown --mode agent to shut off", time.monotonic() - t))


def guest_image(o, agent):
    """The initramfs (and domain settings) for `agent` under WORK/agent."""
    d = os.path.join(o.work, agent)
    os.makedirs(d, exist_ok=True)
    o.initramfs = os.path.join(d, "initramfs.cpio.gz")
    o.disk = os.path.join(d, "disk.img")
    o.console = os.path.join(d, "console.log")
    extra = []
    o.init_args = o.side_channel = ""
    if agent == "qemu-ga":
        from disks import ldd_files
        for src, dest in [(o.qemu_ga, "/usr/sbin/qemu-ga")] + ldd_files(o.qemu_ga):
            extra += ["--file", f"{src}:{dest}:0755"]
        o.side_sock = os.path.join(d, "side.sock")
        o.init_args = " -- -p /dev/virtio-ports/org.qemu.guest_agent.1"
        o.side_channel = f"""
    <channel type='unix'>
      <source mode='bind' path='{o.side_sock}'/>
      <target type='virtio' name='org.qemu.guest_agent.1'/>
    </channel>"""
    subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "initramfs.py"), "--init", o.qga,
                    "--busybox", o.busybox, "--kernel", o.kernel, "--modules", MODULES,
                    "--file", os.path.join(ROOT, "scripts", "e2e", "chpasswd.sh") + ":/usr/sbin/chpasswd:0755",
                    *extra, "--out", o.initramfs], check=True, stdout=subprocess.DEVNULL)
    with open(o.disk, "wb") as f:
        f.truncate(64 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "qgadisk", "-U", "7a3e1d52-0c4b-4c1e-9f43-5a0b4a1d2e60", o.disk],
                   check=True)


def run_domain(o, conn, c, timings):
    """Boots the domain with agent `c.tag` and runs the checks; the domain
    is destroyed and undefined whatever happens."""
    guest_image(o, c.tag)
    dom = None
    try:
        t = time.monotonic()
        dom = conn.defineXML(domain_xml(o))
        dom.create()
        if c.tag == "qemu-ga":
            start_qemu_ga(o)
        up = c.wait_agent(120)
        timings.append((f"{c.tag}: domain start to agent answer", time.monotonic() - t))
        if not c.check("agent answers through libvirt", up):
            raise RuntimeError("no agent")
        prepare_guest(c)
        check_all(c, timings, power=c.tag == "qga")
    except Exception as e:  # noqa: BLE001 - reported, then the domain goes
        failed(f"{c.tag}: e2e-libvirt", f"{type(e).__name__}: {e}")
        if os.path.exists(o.console):
            say("---- guest console (tail) ----\n" + "\n".join(open(o.console, errors="replace").read().splitlines()[-30:]))
    finally:
        if dom is not None:
            try:
                if dom.isActive():
                    dom.destroy()
                dom.undefine()
            except Exception as e:  # noqa: BLE001
                say(f"e2e-libvirt: could not remove the domain: {e}")


def main():
    ap = argparse.ArgumentParser(description="qga under libvirt")
    ap.add_argument("--qga", default=os.path.join(ROOT, "target/static/qga"))
    ap.add_argument("--busybox", default="/bin/busybox")
    ap.add_argument("--kernel", default=os.path.join(ROOT, "target/e2e/kernel/current"))
    ap.add_argument("--work", default=os.path.join(ROOT, "target/e2e/libvirt"))
    ap.add_argument("--agent", choices=("qga", "qemu-ga", "both"), default="qga",
                    help="both: qga, then qemu-ga, and the outputs of the agent-only commands compared")
    ap.add_argument("--qemu-ga", default=os.path.join(ROOT, "target/ref/qemu-ga-10/usr/sbin/qemu-ga"))
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    o = ap.parse_args()
    # libvirt's QEMU does not run in our cwd.
    o.work, o.qga, o.kernel, o.busybox, o.qemu_ga = (
        os.path.abspath(p) for p in (o.work, o.qga, o.kernel, o.busybox, o.qemu_ga))
    t_all = time.monotonic()
    timings = []

    t = time.monotonic()
    install_libvirt()
    # (carried over when this script re-runs itself under Debian's python3)
    carried = float(os.environ.pop("E2E_LIBVIRT_PKG_SECONDS", "0"))
    t_all -= carried
    pkg_secs = time.monotonic() - t + carried
    timings.append(("libvirt packages", pkg_secs))
    try:
        import libvirt  # noqa: F401
    except ImportError:
        # python3-libvirt is Debian's: run under Debian's python3.
        if sys.executable != "/usr/bin/python3":
            os.environ["E2E_LIBVIRT_PKG_SECONDS"] = str(pkg_secs)
            os.execv("/usr/bin/python3", ["/usr/bin/python3", os.path.abspath(__file__), *sys.argv[1:]])
        raise

    o.vmlinuz = kernel_image(o.kernel, "e2e-libvirt")
    shutil.rmtree(o.work, ignore_errors=True)
    os.makedirs(o.work)
    agents = ["qga", "qemu-ga"] if o.agent == "both" else [o.agent]
    if "qemu-ga" in agents and not os.access(o.qemu_ga, os.X_OK):
        why = f"no qemu-ga at {o.qemu_ga} (scripts/fetch-qemu-ga.sh fetches it)"
        if o.agent == "both" and os.environ.get("CI") != "true":
            skipped("qemu-ga under libvirt", why)
            agents = ["qga"]
        else:
            failed("qemu-ga under libvirt", why)
            agents.remove("qemu-ga")

    lv = Libvirtd(o.work)
    outputs = {}
    try:
        t = time.monotonic()
        lv.start()
        timings.append(("libvirtd start", time.monotonic() - t))
        import libvirt
        conn = libvirt.open(lv.uri)
        say(f"e2e-libvirt: libvirt {conn.getLibVersion()}, hypervisor {conn.getVersion()}, "
            f"kernel {os.path.basename(o.vmlinuz)}, qga {o.qga}, qemu-ga {o.qemu_ga}")
        for agent in agents:
            c = Checks(lv, agent)
            run_domain(o, conn, c, timings)
            outputs[agent] = c.outputs
        conn.close()
    except Exception as e:  # noqa: BLE001 - any failure is reported, then cleanup
        failed("e2e-libvirt", f"{type(e).__name__}: {e}")
        say("---- libvirtd log (tail) ----\n" + lv.log_tail())
    finally:
        lv.stop()
        if not o.keep:
            shutil.rmtree(o.work, ignore_errors=True)
    if len(outputs) == 2:
        for key in (" ".join(k) for k in COMPARED):
            a, b = outputs["qga"].get(key), outputs["qemu-ga"].get(key)
            check(f"virsh {key}: the same output with qga and qemu-ga", a is not None and a == b, f"qga: {a}\nqemu-ga: {b}")

    say("")
    say(f"e2e-libvirt: durations ({time.monotonic() - t_all:.0f} s in all):")
    for name, secs in timings:
        measured(name, f"{secs:.1f} s")
    say(f"{RESULTS['passed']} passed, {RESULTS['failed']} failed, {RESULTS['skipped']} skipped")
    sys.exit(1 if RESULTS["failed"] else 0)


if __name__ == "__main__":
    main()
