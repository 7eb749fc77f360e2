#!/usr/bin/env bash
# Installs / fetches everything the VM suite and `make initramfs` need, on a
# fresh Debian bookworm machine (root, or sudo):
#
#   scripts/e2e/setup.sh [--qemu] [--busybox] [--kernel] [--vsock] [--all]
#
#   --qemu     qemu-system-x86 WITHOUT letting apt remove qemu-utils: plain
#              `apt-get install --no-remove` first; when apt refuses (the image
#              carries a backports qemu-utils), the backports qemu-system-*
#              at qemu-utils' exact version plus seabios from backports,
#              through a private apt sources list (the system's is untouched).
#   --busybox  busybox-static (/bin/busybox).
#   --kernel   the Debian cloud kernel: the versioned package is resolved
#              through linux-image-cloud-amd64 every time, `apt-get
#              download`ed and `dpkg-deb -x`ed into $E2E_DIR/kernel/<pkg>;
#              never installed. Prints nothing; writes $E2E_DIR/kernel/current
#              (a symlink to the extracted tree).
#   --vsock    vhost-device-vsock (crates.io, `cargo install` into
#              $E2E_DIR/tools) unless one is already on PATH. Failure is not
#              fatal: the vsock guest is then skipped.
#
# E2E_DIR defaults to target/e2e. Idempotent: what is present is not fetched.
set -euo pipefail
cd "$(dirname "$0")/../.."

E2E_DIR=${E2E_DIR:-target/e2e}
mkdir -p "$E2E_DIR"
E2E_DIR=$(cd "$E2E_DIR" && pwd)
MIRROR=${QGA_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${QGA_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
VSOCK_VERSION=0.3.0

log() { echo "setup: $*" >&2; }
die() { echo "setup: ERROR: $*" >&2; exit 1; }

SUDO=""
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 && SUDO="sudo" || die "need root or sudo for apt-get"
fi
export DEBIAN_FRONTEND=noninteractive

SYSTEM_UPDATED=0
system_update() {
    [ "$SYSTEM_UPDATED" = 1 ] && return 0
    log "apt-get update"
    $SUDO apt-get -q update >&2 || die "apt-get update failed"
    SYSTEM_UPDATED=1
}

# A private apt configuration adding bookworm-backports; lists and cache
# live under $E2E_DIR/apt, the system's sources are never modified.
# shellcheck source=../lib/private-apt.sh
. scripts/lib/private-apt.sh
private_apt_init "$E2E_DIR/apt"

installed_version() { dpkg-query -W -f='${Status} ${Version}' "$1" 2>/dev/null | awk '/install ok installed/ {print $4}'; }

setup_qemu() {
    if command -v qemu-system-x86_64 >/dev/null 2>&1; then
        log "qemu-system-x86_64 present: $(qemu-system-x86_64 --version | head -n1)"
        return 0
    fi
    local utils_before
    utils_before=$(installed_version qemu-utils)
    system_update
    log "apt-get install --no-remove qemu-system-x86"
    if ! $SUDO apt-get -q -y install --no-remove --no-install-recommends qemu-system-x86 >&2; then
        [ -n "$utils_before" ] || die "cannot install qemu-system-x86"
        log "apt refused (it would remove qemu-utils $utils_before): installing the matching backports qemu-system-x86"
        private_update
        $SUDO apt-get "${APT_OPTS[@]}" -q -y install --no-remove --no-install-recommends \
            "qemu-system-x86=$utils_before" "qemu-system-common=$utils_before" "qemu-system-data=$utils_before" \
            seabios/bookworm-backports >&2 ||
            die "could not install qemu-system-x86 $utils_before from bookworm-backports"
    fi
    if [ -n "$utils_before" ] && [ "$(installed_version qemu-utils)" != "$utils_before" ]; then
        die "qemu-utils changed from $utils_before to '$(installed_version qemu-utils)'"
    fi
    command -v qemu-system-x86_64 >/dev/null 2>&1 || die "qemu-system-x86_64 missing after install"
    log "installed $(qemu-system-x86_64 --version | head -n1)"
}

setup_busybox() {
    if [ -x /bin/busybox ] && file_is_static /bin/busybox; then
        return 0
    fi
    system_update
    log "apt-get install --no-remove busybox-static"
    $SUDO apt-get -q -y install --no-remove --no-install-recommends busybox-static >&2 ||
        die "cannot install busybox-static"
    file_is_static /bin/busybox || die "/bin/busybox is not static"
}

# Static ELF: no PT_INTERP program header (no `file` needed).
file_is_static() {
    python3 - "$1" <<'EOF'
import struct, sys
d = open(sys.argv[1], 'rb').read(1 << 16)
if d[:4] != b'\x7fELF' or d[4] != 2: sys.exit(1)
phoff, = struct.unpack_from('<Q', d, 0x20)
phentsize, phnum = struct.unpack_from('<HH', d, 0x36)
for i in range(phnum):
    if struct.unpack_from('<I', d, phoff + i * phentsize)[0] == 3: sys.exit(1)
EOF
}

setup_kernel() {
    local kdir="$E2E_DIR/kernel" pkg tmp deb
    mkdir -p "$kdir"
    system_update
    pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
        awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9].*-cloud-amd64$/ {print $2; exit}')
    [ -n "$pkg" ] || die "cannot resolve the versioned kernel package through linux-image-cloud-amd64"
    if [ -e "$kdir/$pkg/.complete" ]; then
        log "kernel $pkg present"
    else
        tmp=$(mktemp -d "$kdir/.dl.XXXXXX")
        chmod 0755 "$tmp"   # apt's _apt sandbox user writes the download
        log "apt-get download $pkg"
        (cd "$tmp" && apt-get -q -o APT::Sandbox::User=root download "$pkg" >&2) || { rm -rf "$tmp"; die "apt-get download $pkg failed"; }
        deb=$(ls "$tmp"/*.deb | head -n1)
        rm -rf "${kdir:?}/$pkg"
        mkdir -p "$kdir/$pkg"
        dpkg-deb -x "$deb" "$kdir/$pkg" || die "dpkg-deb -x $deb failed"
        rm -rf "$tmp"
        ls "$kdir/$pkg"/boot/vmlinuz-* >/dev/null 2>&1 || die "$pkg has no /boot/vmlinuz-*"
        touch "$kdir/$pkg/.complete"
    fi
    ln -sfn "$pkg" "$kdir/current"
}

setup_vsock() {
    if command -v vhost-device-vsock >/dev/null 2>&1 || [ -x "$E2E_DIR/tools/bin/vhost-device-vsock" ]; then
        return 0
    fi
    command -v cargo >/dev/null 2>&1 || { log "no cargo: vhost-device-vsock not built"; return 0; }
    log "cargo install vhost-device-vsock $VSOCK_VERSION (about a minute)"
    if ! cargo install -q --locked --root "$E2E_DIR/tools" vhost-device-vsock --version "$VSOCK_VERSION" >"$E2E_DIR/vsock-install.log" 2>&1; then
        log "vhost-device-vsock could not be built (see $E2E_DIR/vsock-install.log); the vsock guest will be skipped"
        tail -n 20 "$E2E_DIR/vsock-install.log" >&2 || true
    fi
}

[ $# -gt 0 ] || set -- --all
for a in "$@"; do
    case "$a" in
        --qemu) setup_qemu ;;
        --busybox) setup_busybox ;;
        --kernel) setup_kernel ;;
        --vsock) setup_vsock ;;
        --all) setup_qemu; setup_busybox; setup_kernel; setup_vsock ;;
        *) die "unknown argument $a" ;;
    esac
done
