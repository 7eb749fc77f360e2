#!/usr/bin/env python3
"""guest-get-disks and guest-get-fsinfo, qga against Debian's qemu-ga, byte
for byte, in one real guest with every disk kind attached.

    scripts/e2e/disks.py --qga target/static/qga --qemu-ga target/ref/qemu-ga-10/usr/sbin/qemu-ga \
        [--kernel DIR[,DIR...]] [--generic-kernel] [--busybox /bin/busybox] [--work target/e2e/disks] [--keep]

The guest (TCG, `-machine pc`) has: virtio-blk with two partitions, a
virtio-scsi disk at target 1 / LUN 2, a PIIX IDE disk on the secondary bus
(slave), an NVMe namespace with one partition and, when the kernel has the
`ahci` module (Debian's generic kernel; the cloud kernel lacks it), an AHCI
SATA disk on port 2. Four file systems are mounted from them. udev's
database gets ID_SERIAL and DM_NAME entries for two disks (both agents
read it: `serial`, `alias`).
One guest per kernel: with `--generic-kernel`, Debian's linux-image-amd64
is fetched (apt-get download + dpkg-deb -x into target/e2e/kernel-generic,
never installed) and booted too. Where NVMe is built into the kernel (the
cloud kernel) the guest boots with `nvme_core.multipath=N`, so that the
namespace sits under its PCI function and carries `smart`; as a module
(the generic kernel) native multipath puts it under
/devices/virtual/nvme-subsystem, where both agents report bus-type
"unknown".

qga is /init and answers on virtio-serial; qemu-ga 10.0.2 (Debian's, with
libudev) runs in the same guest from the same image (its glibc, libudev and
GLib copied in from this machine) on the second serial port, started with
guest-exec. The same requests go to both; the replies must be identical
bytes. Prints PASS/FAIL/SKIP per check and both replies when they differ.
"""

import argparse
import glob
import os
import shutil
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
from run import RESULTS, ROOT, AgentError, Client, Guest, check, failed, passed, say, skipped  # noqa: E402
from initramfs import find_module, find_modules_root  # noqa: E402

BASE_MODULES = ["virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci",
                "virtio_console", "virtio_blk", "virtio_scsi", "sd_mod", "ata_piix", "nvme",
                "crc32c_generic", "ext4"]
SATA_MODULES = ["ahci"]
MiB = 1 << 20
# No background writes after mount: NVMe's SMART counters stay put between
# the two agents' replies.
NO_LAZY = "lazy_itable_init=0,lazy_journal_init=0"


def fetch_generic_kernel(dest):
    """Debian's generic kernel (it has ahci), extracted under `dest`."""
    dep = subprocess.run(["apt-cache", "depends", "linux-image-amd64"], capture_output=True, text=True).stdout
    pkg = next((line.split(":", 1)[1].strip() for line in dep.splitlines() if line.strip().startswith("Depends:")), None)
    if not pkg:
        sys.exit("disks: cannot resolve linux-image-amd64 (apt-get update?)")
    tree = os.path.join(dest, pkg)
    if glob.glob(os.path.join(tree, "boot", "vmlinuz-*")):
        return tree
    os.makedirs(dest, exist_ok=True)
    subprocess.run(["apt-get", "download", pkg], cwd=dest, check=True)
    deb = glob.glob(os.path.join(dest, pkg + "_*.deb"))[0]
    subprocess.run(["dpkg-deb", "-x", deb, tree + ".tmp"], check=True)
    os.rename(tree + ".tmp", tree)
    os.unlink(deb)
    return tree


def module_depends(path):
    """The `depends=` string of a .ko file's .modinfo section."""
    data = open(path, "rb").read()
    i = data.find(b"\0depends=")
    if i < 0:
        return []
    end = data.index(b"\0", i + 1)
    return [d for d in data[i + 9:end].decode().split(",") if d]


def module_order(kernel, names):
    """`names` and what they depend on (modinfo's depends=), dependencies
    first; modules built into the kernel are left out. Returns (ordered
    names, names not found)."""
    root = find_modules_root(kernel)
    builtin = set()
    p = os.path.join(root, "modules.builtin")
    if os.path.exists(p):
        builtin = {os.path.basename(line.strip()).split(".ko")[0].replace("-", "_") for line in open(p)}
    out, missing, seen = [], [], set()

    def add(name):
        key = name.replace("-", "_")
        if key in seen or key in builtin:
            return
        seen.add(key)
        path = find_module(root, name)
        if path is None:
            missing.append(name)
            return
        for d in module_depends(path):
            add(d)
        out.append(name)

    for n in names:
        add(n)
    return out, missing


def ldd_files(binary):
    """The shared objects `binary` needs, as (file on this machine, path in
    the guest)."""
    files = []
    for line in subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout.splitlines():
        parts = line.split()
        if "=>" in parts and len(parts) >= 3 and parts[2].startswith("/"):
            files.append((os.path.realpath(parts[2]), parts[2]))
        elif parts and parts[0].startswith("/"):
            files.append((os.path.realpath(parts[0]), parts[0]))
    return files


def disk_image(path, size_mb, partitions=(), fs_whole=False):
    """A raw image: an MBR with `partitions` (sizes in MiB, 1 MiB aligned),
    the first one ext4; or ext4 on the whole disk."""
    with open(path, "wb") as f:
        f.truncate(size_mb * MiB)
    if fs_whole:
        subprocess.run(["mkfs.ext4", "-q", "-F", "-E", NO_LAZY, path], check=True)
        return
    if not partitions:
        return
    mbr = bytearray(512)
    start = 1
    for i, size in enumerate(partitions):
        lba, count = start * 2048, size * 2048
        mbr[446 + 16 * i:446 + 16 * (i + 1)] = struct.pack("<B3sB3sII", 0, b"\xff\xff\xff", 0x83, b"\xff\xff\xff", lba, count)
        start += size
    mbr[510:512] = b"\x55\xaa"
    with open(path, "r+b") as f:
        f.write(mbr)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-E", f"offset={MiB},{NO_LAZY}", path, f"{partitions[0] * 1024}"],
                   check=True)


class DiskGuest(Guest):
    def __init__(self, opts, name, sata, append):
        super().__init__(name, opts)
        self.sata = sata
        self.append = append
        self.ref_sock = os.path.join(self.run, "qemu-ga.sock")

    def cmdline(self):
        o, r = self.opts, self.run
        drive = lambda i, img: ["-drive", f"if=none,id=d{i},file={os.path.join(r, img)},format=raw"]  # noqa: E731
        cmd = [
            "qemu-system-x86_64", "-nodefaults", "-nographic", "-no-user-config",
            "-accel", "tcg,thread=single", "-cpu", "max", "-smp", "1", "-m", "384M", "-machine", "pc",
            "-kernel", o.vmlinuz, "-initrd", o.initramfs, "-append", "console=ttyS0 panic=-1 rdinit=/init quiet" + self.append,
            "-serial", f"file:{self.console}", "-monitor", "none", "-no-reboot",
            "-device", "virtio-serial-pci,id=vser0",
            "-chardev", f"socket,id=qga0,path={self.sock},server=on,wait=off",
            "-device", "virtserialport,bus=vser0.0,chardev=qga0,name=org.qemu.guest_agent.0",
            "-chardev", f"socket,id=ref0,path={self.ref_sock},server=on,wait=off",
            "-serial", "chardev:ref0",
            *drive(1, "vblk.img"), "-device", "virtio-blk-pci,drive=d1,serial=vblk-serial",
            "-device", "virtio-scsi-pci,id=scsi0",
            *drive(2, "scsi.img"), "-device", "scsi-hd,bus=scsi0.0,drive=d2,scsi-id=1,lun=2",
            *drive(3, "ide.img"), "-device", "ide-hd,drive=d3,bus=ide.1,unit=1",
            *drive(4, "nvme.img"), "-device", "nvme,drive=d4,serial=nvme-serial",
        ]
        if self.sata:
            cmd += ["-device", "ahci,id=ahci0", *drive(5, "sata.img"), "-device", "ide-hd,drive=d5,bus=ahci0.2"]
        return cmd

    def ref_client(self):
        def connect():
            import socket
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(self.ref_sock)
            return s
        return Client(connect, resend=0.5)


def raw_call(c, name, timeout=60):
    """The raw reply line (without the newline) to one request."""
    c.send({"execute": name})
    return c.line(time.monotonic() + timeout)


def sh_ok(c, script):
    st = c.exec_wait({"path": "/bin/sh", "arg": ["-c", script], "capture-output": True}, timeout=60)
    if st.get("exitcode") != 0:
        raise AgentError(f"`{script}` failed: {st}")


def one_guest(o, kernel):
    o.kernel = kernel
    o.vmlinuz = sorted(glob.glob(os.path.join(kernel, "boot", "vmlinuz-*")))[0]
    tag = os.path.basename(o.vmlinuz).replace("vmlinuz-", "")
    o.initramfs = os.path.join(o.work, f"initramfs-{tag}.cpio.gz")
    modules, missing = module_order(kernel, BASE_MODULES + SATA_MODULES)
    sata = "ahci" not in missing
    missing = [m for m in missing if m != "ahci"]
    if missing:
        failed(f"disks {tag}", f"kernel {kernel} lacks modules {missing}")
        return
    nvme_builtin = "nvme" not in modules
    files = [(o.qemu_ga, "/usr/sbin/qemu-ga")] + ldd_files(o.qemu_ga)
    args = [sys.executable, os.path.join(ROOT, "scripts", "initramfs.py"), "--init", o.qga, "--busybox", o.busybox,
            "--kernel", kernel, "--modules", ",".join(modules), "--out", o.initramfs]
    for src, dest in files:
        args += ["--file", f"{src}:{dest}:0755"]
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)

    g = DiskGuest(o, f"disks-{tag}", sata, " nvme_core.multipath=N" if nvme_builtin else "")
    disk_image(os.path.join(g.run, "vblk.img"), 64, partitions=(32, 16))
    disk_image(os.path.join(g.run, "scsi.img"), 48, fs_whole=True)
    disk_image(os.path.join(g.run, "ide.img"), 48, fs_whole=True)
    disk_image(os.path.join(g.run, "nvme.img"), 64, partitions=(40,))
    if sata:
        disk_image(os.path.join(g.run, "sata.img"), 32)
    say(f"{tag}: kernel {os.path.basename(o.vmlinuz)}, SATA (ahci) {'attached' if sata else 'not in this kernel: skipped'}")
    if not sata:
        skipped(f"{tag}: SATA (ahci)", f"{os.path.basename(o.vmlinuz)} has no ahci module (use Debian's generic kernel)")
    g.start()
    try:
        c = g.connect_and_sync(90)
        passed(f"{tag}: qga answers")
        # Mounts, udev database entries, then qemu-ga on ttyS1.
        sh_ok(c, "mkdir -p /mnt/vblk /mnt/scsi /mnt/ide /mnt/nvme /run/udev/data && "
                 "mount -t ext4 /dev/vda1 /mnt/vblk && mount -t ext4 /dev/sda /mnt/scsi && "
                 "mount -t ext4 /dev/sdb /mnt/ide && mount -t ext4 /dev/nvme0n1p1 /mnt/nvme")
        # (qemu-ga asks every disk for DM_NAME, not only device-mapper ones.)
        sh_ok(c, "for d in vda sda; do printf 'E:ID_SERIAL=serial-of-%s\\nE:DM_NAME=alias-of-%s\\n' $d $d"
                 " > /run/udev/data/b$(cat /sys/block/$d/dev); done")
        c.ok("guest-exec", {"path": "/usr/sbin/qemu-ga", "arg": ["-m", "isa-serial", "-p", "/dev/ttyS1", "-t", "/run",
                                                                 "-f", "/run/qemu-ga.pid"]})
        ref = g.ref_client()
        ref.open(time.monotonic() + 10)
        ref.sync(60)
        passed(f"{tag}: qemu-ga answers on ttyS1")
        for name in ("guest-get-disks", "guest-get-fsinfo"):
            mine, theirs = raw_call(c, name), raw_call(ref, name)
            if check(f"{tag}: {name} identical bytes", mine == theirs, "differs"):
                say(f"  {name}: {theirs.decode()[:3000]}")
            else:
                say(f"  qemu-ga: {theirs.decode()}")
                say(f"  qga:     {mine.decode()}")
        info = raw_call(c, "guest-get-disks").decode()
        for kind in ('"bus-type": "virtio"', '"bus-type": "scsi"', '"bus-type": "ide"', '"partition": true',
                     '"alias": "alias-of-vda"', '"serial": "serial-of-sda"'):
            check(f"{tag}: reply has {kind}", kind in info)
        if sata:
            check(f'{tag}: reply has "bus-type": "sata"', '"bus-type": "sata"' in info)
        if nvme_builtin:
            check(f"{tag}: NVMe under its PCI function, with smart", '"bus-type": "nvme"' in info and '"smart": {' in info)
    except (AgentError, OSError, TimeoutError) as e:
        failed(tag, str(e))
        g.dump_console("failure")
    finally:
        g.stop()
        if not o.keep:
            shutil.rmtree(g.run, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description="guest-get-disks: qga vs qemu-ga in a VM")
    ap.add_argument("--qga", default=os.path.join(ROOT, "target/static/qga"))
    ap.add_argument("--qemu-ga", default=os.path.join(ROOT, "target/ref/qemu-ga-10/usr/sbin/qemu-ga"))
    ap.add_argument("--busybox", default="/bin/busybox")
    ap.add_argument("--kernel", default=os.path.join(ROOT, "target/e2e/kernel/current"))
    ap.add_argument("--work", default=os.path.join(ROOT, "target/e2e/disks"))
    ap.add_argument("--generic-kernel", action="store_true", help="also boot Debian's generic kernel (with ahci)")
    ap.add_argument("--keep", action="store_true")
    o = ap.parse_args()
    o.work, o.qga, o.qemu_ga = (os.path.abspath(p) for p in (o.work, o.qga, o.qemu_ga))
    if not os.access(o.qemu_ga, os.X_OK):
        sys.exit(f"disks: no qemu-ga at {o.qemu_ga} (scripts/fetch-qemu-ga.sh fetches it)")
    kernels = [os.path.abspath(k) for k in o.kernel.split(",")]
    if o.generic_kernel:
        kernels.append(fetch_generic_kernel(os.path.join(ROOT, "target/e2e/kernel-generic")))
    os.makedirs(o.work, exist_ok=True)
    for kernel in kernels:
        one_guest(o, kernel)
    say(f"{RESULTS['passed']} passed, {RESULTS['failed']} failed, {RESULTS['skipped']} skipped")
    sys.exit(1 if RESULTS["failed"] else 0)


if __name__ == "__main__":
    main()
