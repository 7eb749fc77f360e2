#!/usr/bin/env python3
"""Builds a bootable, reproducible initramfs (gzip'd cpio "newc") whose
/init is a static qga. No cpio binary is needed: the archive is written here.

    scripts/initramfs.py --init target/static/qga --out target/initramfs.cpio.gz \
        [--busybox /bin/busybox] [--kernel DIR] [--modules LIST] \
        [--file SRC:DEST[:MODE]]... [--conf FILE | --no-conf]

--init     the static qga; becomes /init (mode 0755).
--busybox  a static busybox: /bin/busybox plus a link per applet (from
           `busybox --list-full`), so guest-exec can run sh, cat, ps...
           A foreign busybox (aarch64, riscv64) is listed through the
           qemu-user runner of scripts/arches.tsv.
--kernel   a kernel package extracted with `dpkg-deb -x` (or a system root):
           the modules named by --modules are taken from its
           lib/modules/<version>/ and stored as
           /lib/modules/qga/NN-<name>.ko, loaded in that order by qga
           (`modules-dir=/lib/modules/qga` in the generated config).
           Modules the kernel has built in (its modules.builtin) are
           skipped; .ko.xz and .ko.gz are stored decompressed.
--modules  comma-separated module names in load order (default: what a
           virtio-serial + vsock guest needs on Debian's 6.1 cloud kernel).
--conf     /etc/qemu/qemu-ga.conf to ship (default: a generated one that
           only sets modules-dir when modules are shipped).
--file     extra file SRC stored as DEST (absolute path in the image).

Reproducible: entries sorted by path, every mtime 0, owner root:root,
inodes numbered in order, gzip header without name or time.
"""

import argparse
import gzip
import lzma
import os
import stat
import subprocess
import sys

DEFAULT_MODULES = (
    "virtio_ring,virtio,virtio_pci_legacy_dev,virtio_pci_modern_dev,virtio_pci,"
    "virtio_console,vsock,vmw_vsock_virtio_transport_common,vmw_vsock_virtio_transport"
)
MODULES_DIR = "/lib/modules/qga"


class Image:
    def __init__(self):
        self.entries = {}  # path -> (mode, data, rdev)

    def _parents(self, path):
        parts = path.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/" + "/".join(parts[:i])
            if d not in self.entries:
                self.entries[d] = (stat.S_IFDIR | 0o755, b"", (0, 0))

    def dir(self, path, mode=0o755):
        self._parents(path)
        self.entries[path] = (stat.S_IFDIR | mode, b"", (0, 0))

    def file(self, path, data, mode=0o644):
        self._parents(path)
        self.entries[path] = (stat.S_IFREG | mode, data, (0, 0))

    def symlink(self, path, target):
        self._parents(path)
        self.entries[path] = (stat.S_IFLNK | 0o777, target.encode(), (0, 0))

    def chardev(self, path, major, minor, mode=0o600):
        self._parents(path)
        self.entries[path] = (stat.S_IFCHR | mode, b"", (major, minor))

    def cpio(self):
        out = bytearray()

        def pad4():
            out.extend(b"\0" * (-len(out) % 4))

        def entry(ino, name, mode, data, rdev):
            nlink = 2 if stat.S_ISDIR(mode) else 1
            fields = (ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1], len(name) + 1, 0)
            out.extend(b"070701" + b"".join(b"%08X" % f for f in fields))
            out.extend(name.encode() + b"\0")
            pad4()
            out.extend(data)
            pad4()

        # Sorted by path components: a directory always precedes its content.
        for ino, path in enumerate(sorted(self.entries, key=lambda p: p.strip("/").split("/")), start=1):
            mode, data, rdev = self.entries[path]
            entry(ino, path.lstrip("/"), mode, data, rdev)
        entry(0, "TRAILER!!!", 0, b"", (0, 0))
        out.extend(b"\0" * (-len(out) % 512))
        return bytes(out)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def find_modules_root(kernel):
    base = os.path.join(kernel, "lib", "modules")
    if not os.path.isdir(base):
        base = os.path.join(kernel, "usr", "lib", "modules")
    versions = sorted(v for v in os.listdir(base) if os.path.isdir(os.path.join(base, v, "kernel")))
    if len(versions) != 1:
        sys.exit(f"initramfs: expected one kernel version under {base}, found {versions}")
    return os.path.join(base, versions[0])


UNPACK = {".ko.xz": lzma.decompress, ".ko.gz": gzip.decompress}
ELF_MACHINES = {62: "x86_64", 183: "aarch64", 243: "riscv64"}


def runner(path):
    """[] for a binary of this machine, else [qemu-<arch>-static] from
    scripts/arches.tsv (binfmt_misc may not be set up)."""
    with open(path, "rb") as f:
        head = f.read(20)
    arch = ELF_MACHINES.get(int.from_bytes(head[18:20], "little")) if head[:4] == b"\x7fELF" else None
    if arch is None or arch == os.uname().machine:
        return []
    table = os.path.join(os.path.dirname(os.path.abspath(__file__)), "arches.tsv")
    with open(table) as f:
        for line in f:
            cols = line.split()
            if cols and cols[0] == arch and cols[6] != "-":
                return [cols[6]]
    sys.exit(f"initramfs: no qemu-user runner for {arch} in {table}")


def builtin_modules(root):
    """Names (with '_') of the modules built into the kernel."""
    try:
        with open(os.path.join(root, "modules.builtin")) as f:
            return {os.path.basename(l.strip()).split(".ko")[0].replace("-", "_") for l in f if l.strip()}
    except OSError:
        return set()


def find_module(root, name):
    want = {name + ext for ext in (".ko", ".ko.xz", ".ko.zst", ".ko.gz")}
    alt = {w.replace("_", "-") for w in want}
    for dirpath, _dirs, files in sorted(os.walk(root)):
        for f in sorted(files):
            if f in want or f in alt:
                return os.path.join(dirpath, f)
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--init", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--busybox")
    ap.add_argument("--kernel")
    ap.add_argument("--modules", default=DEFAULT_MODULES)
    ap.add_argument("--conf")
    ap.add_argument("--no-conf", action="store_true")
    ap.add_argument("--file", action="append", default=[])
    a = ap.parse_args()

    img = Image()
    for d in ("/dev", "/proc", "/sys", "/run", "/root", "/etc", "/bin", "/sbin", "/usr/bin", "/usr/sbin"):
        img.dir(d)
    img.dir("/tmp", 0o1777)
    img.dir("/root", 0o700)
    img.symlink("/var/run", "../run")
    # The kernel opens /dev/console for init's stdio before /init runs.
    img.chardev("/dev/console", 5, 1, 0o600)
    img.file("/etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    img.file("/etc/group", b"root:x:0:\ntty:x:5:\nnogroup:x:65534:\n")
    img.file("/init", read(a.init), 0o755)

    if a.busybox:
        img.file("/bin/busybox", read(a.busybox), 0o755)
        listing = subprocess.run(runner(a.busybox) + [a.busybox, "--list-full"], check=True, capture_output=True, text=True).stdout
        for applet in listing.split():
            path = "/" + applet.lstrip("/")
            if path != "/bin/busybox" and path not in img.entries:
                img.symlink(path, os.path.relpath("/bin/busybox", os.path.dirname(path)))

    modules = [m for m in a.modules.split(",") if m] if a.kernel else []
    if modules:
        root = find_modules_root(a.kernel)
        builtin = builtin_modules(root)
        modules = [m for m in modules if m.replace("-", "_") not in builtin]
    if modules:
        for i, name in enumerate(modules, start=1):
            src = find_module(root, name)
            if not src:
                sys.exit(f"initramfs: module {name} not found under {root}")
            ext = src[src.index(".ko"):]
            data = read(src)
            if ext in UNPACK:
                # The image is gzip'd anyway; the kernel's own decompression
                # of a .ko.xz under TCG cost 80 ms per module (riscv64).
                data, ext = UNPACK[ext](data), ".ko"
            img.file(f"{MODULES_DIR}/{i:02d}-{name}{ext}", data)

    if a.conf:
        img.file("/etc/qemu/qemu-ga.conf", read(a.conf))
    elif not a.no_conf:
        conf = "# qga in PID 1 mode (it is /init); see docs/vm.md\n[general]\n"
        if modules:
            conf += f"modules-dir={MODULES_DIR}\n"
        img.file("/etc/qemu/qemu-ga.conf", conf.encode())

    for spec in a.file:
        parts = spec.split(":")
        src, dest = parts[0], parts[1]
        mode = int(parts[2], 8) if len(parts) > 2 else (os.stat(src).st_mode & 0o777)
        img.file(dest, read(src), mode)

    data = gzip.compress(img.cpio(), compresslevel=9, mtime=0)
    tmp = a.out + ".tmp"
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, a.out)
    print(f"initramfs: {a.out}: {len(data)} bytes, {len(img.entries)} entries"
          f"{', modules: ' + ' '.join(modules) if modules else ''}", file=sys.stderr)


if __name__ == "__main__":
    main()
