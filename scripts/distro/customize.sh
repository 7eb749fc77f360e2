#!/bin/sh
# mmdebstrap --customize-hook of scripts/distro/image.sh: runs on the host
# with the guest's tree as $1 after Debian's packages are installed.
# QGA_KERNEL_DIR / QGA_KVER: the extracted kernel package and its version.
set -eu
T=$1
echo qga-distro > "$T/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 qga-distro\n' > "$T/etc/hosts"
# The root is mounted rw by the initramfs; no fsck pass.
printf '/dev/vda / ext4 defaults 0 0\n' > "$T/etc/fstab"
# A fixed machine id: every boot of the image is the same machine, and
# systemd's first-boot logic stays out of the way.
echo 5f1b6a0c2e7d4c3b9a8e1d2c3b4a5f60 > "$T/etc/machine-id"

# The kernel the other suites boot: its modules, indexed for udev/modprobe.
mkdir -p "$T/usr/lib/modules"
cp -a "$QGA_KERNEL_DIR/lib/modules/$QGA_KVER" "$T/usr/lib/modules/"
chroot "$T" depmod -a "$QGA_KVER"

# root and a login-capable user (a throw-away test guest without network;
# the passwords are in scripts/distro/e2e.py too).
chroot "$T" useradd -m -s /bin/bash alice
printf 'root:root-e2e\nalice:alice-e2e\n' | chroot "$T" chpasswd
# Logins on the second and third serial port (the suite's consoles).
chroot "$T" systemctl enable serial-getty@ttyS1.service serial-getty@ttyS2.service
# A persistent journal: the suite reads the previous boot's (journalctl -b -1).
mkdir -p "$T/var/log/journal"
# Nothing that would start by the clock during a test; none of the
# kernel file systems and modules that neither the agents nor the suite
# use (one emulated CPU: every unit started costs boot time); no getty on
# the (absent) VGA console.
chroot "$T" systemctl mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \
    e2scrub_reap.service fstrim.timer systemd-timesyncd.service \
    dev-hugepages.mount dev-mqueue.mount sys-kernel-debug.mount sys-kernel-tracing.mount \
    sys-kernel-config.mount sys-fs-fuse-connections.mount modprobe@drm.service \
    modprobe@efi_pstore.service modprobe@fuse.service modprobe@configfs.service \
    systemd-pstore.service getty@tty1.service >/dev/null 2>&1 || true

# Debian's qemu-guest-agent and the dependencies it lacks, downloaded
# (not installed) into a local repository that is the guest's only apt
# source: `apt install qemu-guest-agent` works in the guest without
# network, and apt's solver works on a few packages instead of trixie's
# 57 MB list (seconds under TCG).
R=/var/local/debs
mkdir -p "$T$R/partial"
chroot "$T" apt-get -q -y -o Dir::Cache::archives=$R --download-only install qemu-guest-agent
rm -rf "$T$R/partial" "$T$R/lock"
ls "$T$R"/qemu-guest-agent_*.deb
(
    cd "$T$R"
    for d in *.deb; do
        dpkg-deb -f "$d"
        printf 'Filename: ./%s\nSize: %s\nSHA256: %s\n\n' "$d" "$(stat -c %s "$d")" "$(sha256sum "$d" | cut -d' ' -f1)"
    done
) > "$T$R/Packages"
rm -f "$T"/etc/apt/sources.list.d/*
echo "deb [trusted=yes] file:$R ./" > "$T/etc/apt/sources.list"
rm -rf "$T"/var/lib/apt/lists/* "$T"/var/cache/apt/*.bin
chroot "$T" apt-get -q update
# /etc and /var are up to date with /usr: no ldconfig.service and
# systemd-update-done.service at every boot of a fresh overlay.
touch "$T/etc/.updated" "$T/var/.updated"
