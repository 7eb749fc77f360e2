#!/usr/bin/env bash
# Installs / fetches everything the VM suite and `make initramfs` need, on a
# fresh Debian bookworm machine (root, or sudo):
#
#   scripts/e2e/setup.sh [--arch ARCH] [--qemu] [--busybox] [--kernel] [--vsock] [--all]
#
#   --arch     a row of scripts/arches.tsv (default x86_64; give it first).
#              For aarch64/riscv64: --qemu installs that arch's
#              qemu-system-* (backports, at qemu-utils' version) and
#              qemu-user-static (to list a foreign busybox's applets);
#              --busybox and --kernel fetch busybox-static:<debian-arch> and
#              the kernel of the table's suite through a private foreign-arch
#              apt configuration (dpkg is not touched) into
#              $E2E_DIR/<arch>/busybox and $E2E_DIR/<arch>/kernel/current;
#              --vsock is the host-side backend, as for x86_64.
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
    $SUDO bash "$APT_SH" update -q >&2 || die "apt-get update failed"
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
    if ! $SUDO bash "$APT_SH" install -q --no-remove --no-install-recommends qemu-system-x86 >&2; then
        [ -n "$utils_before" ] || die "cannot install qemu-system-x86"
        log "apt refused (it would remove qemu-utils $utils_before): installing the matching backports qemu-system-x86"
        private_update
        $SUDO bash "$APT_SH" install "${APT_OPTS[@]}" -q --no-remove --no-install-recommends \
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
    $SUDO bash "$APT_SH" install -q --no-remove --no-install-recommends busybox-static >&2 ||
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

# ---- foreign architectures (scripts/arches.tsv) ----
ARCH=x86_64
arch_row() {
    read -r _ _ DARCH _ QSYS QDEB _ KMETA SUITE _ < <(awk -v a="$ARCH" '$1 == a' scripts/arches.tsv) || true
    [ -n "${KMETA:-}" ] || die "unknown arch '$ARCH' (see scripts/arches.tsv)"
}

setup_qemu_foreign() {
    command -v qemu-aarch64-static >/dev/null 2>&1 || {
        system_update
        log "apt-get install qemu-user-static"
        $SUDO bash "$APT_SH" install -q --no-remove --no-install-recommends qemu-user-static >&2 || die "cannot install qemu-user-static"
    }
    if command -v "$QSYS" >/dev/null 2>&1; then
        log "$QSYS present: $($QSYS --version | head -n1)"
        return 0
    fi
    local v extra=()
    v=$(installed_version qemu-utils)
    [ "$ARCH" = riscv64 ] && extra=(opensbi/bookworm-backports)
    if [ -n "$v" ]; then
        # The image's backports qemu-utils: the same version of the rest.
        private_update
        log "apt-get install $QDEB=$v (bookworm-backports)"
        $SUDO bash "$APT_SH" install "${APT_OPTS[@]}" -q --no-remove --no-install-recommends \
            "$QDEB=$v" "qemu-system-common=$v" "qemu-system-data=$v" "${extra[@]}" >&2 ||
            die "could not install $QDEB $v from bookworm-backports"
    else
        private_update
        log "apt-get install $QDEB (bookworm-backports)"
        $SUDO bash "$APT_SH" install "${APT_OPTS[@]}" -q --no-remove --no-install-recommends \
            "$QDEB/bookworm-backports" "${extra[@]}" >&2 || die "could not install $QDEB"
    fi
    command -v "$QSYS" >/dev/null 2>&1 || die "$QSYS missing after install"
}

# apt for $DARCH packages only: own sources, lists, status and cache.
FOREIGN_READY=""
foreign_update() {
    local t=$E2E_DIR/apt-$DARCH
    if [ "$FOREIGN_READY" != "$DARCH" ]; then
        mkdir -p "$t/lists/partial" "$t/cache/archives/partial"
        touch "$t/status"
        cat >"$t/apt.conf" <<CONF
Dir::Etc::sourcelist "$t/sources.list"; Dir::Etc::sourceparts "-"; Dir::State::lists "$t/lists";
Dir::State::status "$t/status"; Dir::Cache "$t/cache"; Dir::Cache::archives "$t/cache/archives";
APT::Sandbox::User "root"; APT::Architecture "$DARCH"; APT::Architectures { "$DARCH"; };
Acquire::IndexTargets::deb::DEP-11::DefaultEnabled "false"; Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled "false";
CONF
        if [ "$SUITE" = bookworm ]; then
            printf 'deb [arch=%s signed-by=%s] %s %s main\n' "$DARCH" "$KEYRING" "$MIRROR" bookworm "$DARCH" "$KEYRING" "$MIRROR" bookworm-updates \
                "$DARCH" "$KEYRING" "$SECURITY_MIRROR" bookworm-security >"$t/sources.list"
        else
            # trixie-security's riscv64 index was seen failing mid-sync: main only.
            printf 'deb [arch=%s signed-by=%s] %s %s main\n' "$DARCH" "$KEYRING" "$MIRROR" "$SUITE" >"$t/sources.list"
        fi
        log "apt-get update ($SUITE, $DARCH, private configuration)"
        APT_CONFIG=$t/apt.conf bash "$APT_SH" update -q >&2 || log "warning: apt-get update reported errors (going on with what was fetched)"
        FOREIGN_READY=$DARCH
    fi
}
foreign_apt() { APT_CONFIG=$E2E_DIR/apt-$DARCH/apt.conf "$@"; }

# fetch_deb PKG DIR: apt-get download + dpkg-deb -x into DIR (once).
fetch_deb() {
    local pkg=$1 dir=$2 tmp
    [ -e "$dir/.complete" ] && return 0
    tmp=$(mktemp -d "$E2E_DIR/.dl.XXXXXX")
    chmod 0755 "$tmp"
    log "apt-get download $pkg ($DARCH)"
    (cd "$tmp" && foreign_apt apt-get -q download "$pkg" >&2) || { rm -rf "$tmp"; die "apt-get download $pkg failed"; }
    rm -rf "$dir"
    mkdir -p "$dir"
    dpkg-deb -x "$(ls "$tmp"/*.deb | head -n1)" "$dir" || die "dpkg-deb -x $pkg failed"
    rm -rf "$tmp"
    touch "$dir/.complete"
}

setup_kernel_foreign() {
    local kdir=$E2E_DIR/$ARCH/kernel pkg
    foreign_update
    pkg=$(foreign_apt apt-cache depends "$KMETA" 2>/dev/null |
        awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ {print $2; exit}')
    [ -n "$pkg" ] || die "cannot resolve the versioned kernel package through $KMETA"
    fetch_deb "$pkg" "$kdir/$pkg"
    ln -sfn "$pkg" "$kdir/current"
}

setup_busybox_foreign() {
    local d=$E2E_DIR/$ARCH/busybox-static
    [ -e "$d/.complete" ] || foreign_update
    fetch_deb busybox-static "$d"
    local b
    for b in bin/busybox usr/bin/busybox; do
        [ -x "$d/$b" ] && { ln -sfn "busybox-static/$b" "$E2E_DIR/$ARCH/busybox"; return 0; }
    done
    die "busybox-static:$DARCH has no busybox binary"
}

[ $# -gt 0 ] || set -- --all
if [ "${1:-}" = --arch ]; then
    ARCH=${2:?--arch needs a value}
    shift 2
    [ $# -gt 0 ] || set -- --all
fi
if [ "$ARCH" != x86_64 ]; then
    arch_row
    for a in "$@"; do
        case "$a" in
            --qemu) setup_qemu_foreign ;;
            --busybox) setup_busybox_foreign ;;
            --kernel) setup_kernel_foreign ;;
            --vsock) setup_vsock ;;
            --all) setup_qemu_foreign; setup_busybox_foreign; setup_kernel_foreign; setup_vsock ;;
            *) die "unknown argument $a" ;;
        esac
    done
    exit 0
fi
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
