#!/usr/bin/env bash
# Builds the static musl qga (and optionally qgactl) for one architecture in
# a Debian sid chroot cached under target/static-env/ (docs/vm.md):
#
#   scripts/static/build.sh ARCH OUT [BIN...]     (BIN defaults to qga)
#
# ARCH is a row of scripts/arches.tsv (x86_64, aarch64, riscv64). The host's
# rustup has no musl std and no rust-src, so the chroot brings Debian sid's
# rustc/cargo with the matching rust-src and std is built from source
# (-Z build-std). The unwinder that std's musl target links as libunwind.a
# is gcc's libgcc_eh.a plus a stub for the glibc-only _dl_find_object.
# QGA_STATIC_RUSTFLAGS replaces the size flags below (for measurements).
# First run: debootstrap ~2.5 min, std+qga ~4 min per arch; later runs reuse
# the chroot, the cargo registry and the target dir.
set -euo pipefail
cd "$(dirname "$0")/../.."
SRC=$(pwd)
ARCH=${1:?usage: build.sh ARCH OUT [BIN...]}
OUT=${2:?usage: build.sh ARCH OUT [BIN...]}
shift 2
BINS=("$@")
[ ${#BINS[@]} -gt 0 ] || BINS=(qga)

log() { echo "static: $*" >&2; }
die() { echo "static: ERROR: $*" >&2; exit 1; }

read -r _ RTARGET DARCH TRIPLET _ _ _ _ _ XFLAGS < <(awk -v a="$ARCH" '$1 == a' scripts/arches.tsv) || true
[ "${XFLAGS:-}" != - ] || XFLAGS=""
[ -n "${RTARGET:-}" ] || die "unknown ARCH '$ARCH' (see scripts/arches.tsv)"

ENV_DIR=${QGA_STATIC_ENV:-$SRC/target/static-env}
ROOT=$ENV_DIR/sid
MIRROR=${QGA_DEBIAN_MIRROR:-http://deb.debian.org/debian}
PKGS=rustc,cargo,rust-src,musl-tools,gcc,libc6-dev,ca-certificates
# apt-get through scripts/apt.sh (waits for apt's locks), in the chroot
# at /src where the tree is mounted.
APT="bash /src/scripts/apt.sh"
APT_OPTS="-q -o Acquire::Check-Valid-Until=false -o APT::Install-Recommends=false"
export DEBIAN_FRONTEND=noninteractive
[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot)"

# Run a command in the chroot, with the source tree at /src, in a private
# mount namespace (the mounts vanish with it, nothing to clean up).
in_chroot() {
    unshare -m --propagation private sh -c '
        set -e; R=$1; S=$2; shift 2
        mkdir -p "$R/src" "$R/proc" "$R/dev"
        mount --bind "$S" "$R/src"
        mount -t proc proc "$R/proc"
        mount --rbind /dev "$R/dev"
        exec chroot "$R" "$@"' sh "$ROOT" "$SRC" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
        DEBIAN_FRONTEND=noninteractive "$@"
}

if [ ! -e "$ROOT/.ready" ]; then
    command -v debootstrap >/dev/null 2>&1 || { log "apt-get install debootstrap"; bash scripts/apt.sh update -q >&2; bash scripts/apt.sh install -q --no-install-recommends debootstrap >&2; }
    rm -rf "$ROOT"
    mkdir -p "$ENV_DIR"
    log "debootstrap sid into $ROOT (about 2.5 minutes)"
    debootstrap --variant=minbase --include=$PKGS sid "$ROOT" "$MIRROR" >"$ENV_DIR/debootstrap.log" 2>&1 ||
        { tail -n 30 "$ENV_DIR/debootstrap.log" >&2; die "debootstrap failed (log: $ENV_DIR/debootstrap.log)"; }
    # The host's CA bundle, for cargo's registry access from inside.
    cp "${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}" "$ROOT/etc/qga-ca.crt"
    echo "deb $MIRROR sid main" >"$ROOT/etc/apt/sources.list"
    touch "$ROOT/.ready"
fi

# Per architecture: the cross C toolchain and musl, a linker wrapper, and
# the unwinder archive.
TOOLS=/opt/qga/$ARCH
if [ ! -e "$ROOT$TOOLS/.ready" ]; then
    if [ "$ARCH" = x86_64 ]; then
        CC=gcc
    else
        CC=$TRIPLET-gcc
        log "installing gcc-$TRIPLET and musl-dev:$DARCH in the chroot"
        in_chroot sh -c "dpkg --add-architecture $DARCH && $APT update $APT_OPTS >/dev/null && $APT install $APT_OPTS gcc-$TRIPLET musl-dev:$DARCH >/dev/null" ||
            die "could not install the $ARCH cross toolchain"
    fi
    MTRIPLET=${TRIPLET%-gnu}-musl
    in_chroot sh -c "set -e; mkdir -p $TOOLS
        printf '#!/bin/sh\nexec $CC -specs /usr/lib/$MTRIPLET/musl-gcc.specs \"\$@\"\n' >$TOOLS/cc
        chmod 755 $TOOLS/cc
        cp \$($CC -print-file-name=libgcc_eh.a) $TOOLS/libunwind.a
        echo 'int _dl_find_object(void *pc, void *r) { (void)pc; (void)r; return -1; }' >$TOOLS/dlfo.c
        $TOOLS/cc -O2 -c $TOOLS/dlfo.c -o $TOOLS/dlfo.o
        ar rs $TOOLS/libunwind.a $TOOLS/dlfo.o 2>/dev/null
        touch $TOOLS/.ready" || die "could not prepare the $ARCH linker"
fi

# Size knobs chosen by measurement (docs/vm.md): panics abort without
# formatting a message, no file:line:column strings are kept for them, and
# no unwind tables are emitted (nothing unwinds when panics abort at once:
# .eh_frame was 36 KiB of the x86_64 binary; a profiling build that wants
# DWARF call graphs sets QGA_STATIC_RUSTFLAGS without it).
RUSTFLAGS_SIZE=${QGA_STATIC_RUSTFLAGS--Zunstable-options -Cpanic=immediate-abort -Zlocation-detail=none -Cforce-unwind-tables=no}
TDIR=/src/target/static-build
UP=$(echo "$RTARGET" | tr 'a-z-' 'A-Z_')
args=()
for b in "${BINS[@]}"; do args+=(--bin "$b"); done
log "cargo build ${BINS[*]} for $RTARGET (std from source)"
in_chroot env SSL_CERT_FILE=/etc/qga-ca.crt CARGO_HTTP_CAINFO=/etc/qga-ca.crt \
    CARGO_HOME=/src/target/static-env/cargo-home CARGO_TARGET_DIR=$TDIR RUSTC_BOOTSTRAP=1 \
    CARGO_PROFILE_RELEASE_STRIP=${QGA_STATIC_STRIP:-true} \
    "CARGO_TARGET_${UP}_LINKER=$TOOLS/cc" \
    "CARGO_TARGET_${UP}_RUSTFLAGS=-C link-self-contained=no -L $TOOLS $XFLAGS $RUSTFLAGS_SIZE" \
    sh -c "cd /src && nice cargo build --release --locked ${QGA_STATIC_CARGOFLAGS:-} -Z build-std=std,panic_abort --target $RTARGET ${args[*]}" >&2 ||
    die "cargo build for $RTARGET failed"

mkdir -p "$OUT"
for b in "${BINS[@]}"; do
    f=target/static-build/$RTARGET/release/$b
    if readelf -lW "$f" | grep -q INTERP; then die "$f is not static"; fi
    cp "$f" "$OUT/$b"
    log "$OUT/$b: $(stat -c %s "$OUT/$b") bytes ($RTARGET, musl, static, stripped)"
done
