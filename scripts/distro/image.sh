#!/usr/bin/env bash
# Builds (or finds in the cache) the Debian guest of `make e2e-distro`
# (docs/distro.md):
#
#   scripts/distro/image.sh KERNEL_DIR OUT_DIR      prints the image folder
#
# A Debian trixie root file system made by mmdebstrap from Debian's
# packages: systemd as init, udev, dbus, logind (libpam-systemd), login and
# getty on the serial ports ttyS1 and ttyS2, root and a login-capable user
# `alice`, a persistent journal, and qemu-guest-agent's .deb with its
# dependencies in a local repository that is the guest's apt source
# (downloaded, not installed: the suite installs it with `apt install
# qemu-guest-agent` as a user would, offline). The
# modules of the kernel the other suites boot (KERNEL_DIR: Debian's 6.1
# cloud kernel, extracted by scripts/e2e/setup.sh --kernel) are copied to
# /usr/lib/modules and depmod'ed, so udev loads virtio_console & co.
#
# Written into OUT_DIR/image-HASH/:
#   root.raw        ext4 (label root), 3 GiB sparse, made by mkfs.ext4 -d;
#                   booted as a read-only base under a qcow2 overlay
#   initrd.cpio.gz  busybox + virtio_pci/virtio_blk: mounts /dev/vda and
#                   switch_roots to systemd (the cloud kernel has ext4
#                   built in, virtio_blk as a module)
#   vmlinuz         a link to the kernel
#   recipe          what was hashed
# HASH covers this script, scripts/distro/customize.sh (what is done in
# the tree after the packages are installed), the kernel's version and the suite: the image
# is rebuilt only when one of them changes; older images are removed.
# Needs root and mmdebstrap (installed through scripts/apt.sh when missing).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)

KERNEL_DIR=${1:?usage: image.sh KERNEL_DIR OUT_DIR}
OUT=${2:?usage: image.sh KERNEL_DIR OUT_DIR}
SUITE=${QGA_DISTRO_SUITE:-trixie}
MIRROR=${QGA_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${QGA_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
PACKAGES=systemd,systemd-sysv,udev,dbus,libpam-systemd,kmod,login,passwd,util-linux,procps,e2fsprogs

log() { echo "distro-image: $*" >&2; }
die() { echo "distro-image: ERROR: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (mmdebstrap --mode=root, mkfs.ext4 -d with owners)"
KERNEL_DIR=$(cd "$KERNEL_DIR" && pwd -P)
KVER=$(ls "$KERNEL_DIR/lib/modules" | head -n1)
[ -n "$KVER" ] || die "no lib/modules/<version> in $KERNEL_DIR (run scripts/e2e/setup.sh --kernel)"
VMLINUZ=$(ls "$KERNEL_DIR"/boot/vmlinuz-* | head -n1)
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

HASH=$( { sha256sum "$0" scripts/distro/customize.sh | cut -d' ' -f1; echo "$SUITE $KVER $PACKAGES"; } | sha256sum | cut -c1-16)
IMG=$OUT/image-$HASH
if [ -s "$IMG/root.raw" ] && [ -s "$IMG/initrd.cpio.gz" ] && [ -e "$IMG/done" ]; then
    log "cached: $IMG"
    echo "$IMG"
    exit 0
fi

for tool in mmdebstrap mkfs.ext4; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        log "installing $tool"
        bash scripts/apt.sh install -q --no-remove --no-install-recommends mmdebstrap e2fsprogs >&2 ||
            { bash scripts/apt.sh update -q >&2 && bash scripts/apt.sh install -q --no-remove --no-install-recommends mmdebstrap e2fsprogs >&2; } ||
            die "cannot install mmdebstrap"
    fi
done
[ -x /bin/busybox ] || bash scripts/e2e/setup.sh --busybox >&2

export QGA_KVER=$KVER QGA_KERNEL_DIR=$KERNEL_DIR
t0=$SECONDS
rm -rf "$OUT"/image-* "$OUT/.build"
mkdir -p "$OUT/.build"
TREE=$OUT/.build/tree
log "mmdebstrap $SUITE ($PACKAGES) into $TREE"
# customize hooks run on the host with the tree as $1.
nice mmdebstrap --mode=root --variant=minbase --include="$PACKAGES" \
    --aptopt='Acquire::Check-Valid-Until "false"' \
    --aptopt='APT::Install-Recommends "false"' \
    --skip=cleanup/apt/lists \
    --customize-hook="$ROOT/scripts/distro/customize.sh" \
    "$SUITE" "$TREE" \
    "deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" "deb $SECURITY_MIRROR $SUITE-security main" >&2 ||
    die "mmdebstrap failed"
log "mmdebstrap: $((SECONDS - t0)) s"

mkdir -p "$OUT/.build/img"
log "mkfs.ext4 -d (3 GiB sparse)"
truncate -s 3G "$OUT/.build/img/root.raw"
nice mkfs.ext4 -q -F -L root -d "$TREE" "$OUT/.build/img/root.raw" || die "mkfs.ext4 failed"

# The initramfs: load virtio_pci + virtio_blk, mount the root, switch_root.
cat > "$OUT/.build/init" <<'EOF'
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in /lib/modules/qga/*.ko; do insmod "$m" 2>/dev/null; done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
mkdir -p /newroot
mount -t ext4 -o rw /dev/vda /newroot || { echo "initrd: cannot mount /dev/vda"; sleep 5; poweroff -f; }
umount /proc /sys
mount --move /dev /newroot/dev
exec switch_root /newroot /sbin/init
EOF
python3 scripts/initramfs.py --init "$OUT/.build/init" --busybox /bin/busybox --kernel "$KERNEL_DIR" \
    --modules virtio_ring,virtio,virtio_pci_legacy_dev,virtio_pci_modern_dev,virtio_pci,virtio_blk \
    --no-conf --out "$OUT/.build/img/initrd.cpio.gz" >&2 || die "initramfs.py failed"
ln -sf "$VMLINUZ" "$OUT/.build/img/vmlinuz"
{
    echo "suite=$SUITE kernel=$KVER"
    echo "packages=$PACKAGES"
    echo "script=$(sha256sum "$0" | cut -d' ' -f1)"
    echo "built=$(date -u +%FT%TZ) in $((SECONDS - t0)) s"
    chroot "$TREE" dpkg-query -W -f='${Package} ${Version}\n' systemd udev qemu-guest-agent 2>/dev/null || true
    ls "$TREE"/var/local/debs/*.deb | xargs -n1 basename
} > "$OUT/.build/img/recipe"
touch "$OUT/.build/img/done"
mv "$OUT/.build/img" "$IMG"
rm -rf "$OUT/.build"
log "built $IMG in $((SECONDS - t0)) s"
echo "$IMG"
