#!/usr/bin/env bash
# Fetch the real QEMU guest agent (reference implementation) WITHOUT installing it.
#
#   scripts/fetch-qemu-ga.sh [DEST_DIR]      (default DEST_DIR: target/ref)
#
# Result:
#   DEST_DIR/qemu-ga-10/usr/sbin/qemu-ga    qemu-guest-agent from bookworm-backports (10.0.x)
#   DEST_DIR/qemu-ga-7.2/usr/sbin/qemu-ga   qemu-guest-agent from bookworm (7.2)
# The last line printed on stdout is the absolute path of the 10.x binary.
#
# How: a private apt configuration (own sources list adding bookworm-backports,
# own lists/cache dirs under DEST_DIR/.apt) is used for `apt-get download`; the
# packages are unpacked with `dpkg-deb -x`. The system's apt sources are never
# modified. Shared libraries the binaries need but the machine lacks (checked
# with ldd) are installed from the system's own sources with
# `apt-get install --no-remove` (never lets apt remove anything, e.g. the
# backports qemu-utils that the machine image carries).
#
# Idempotent: when both binaries are present and run (`-V`), nothing is fetched.
set -euo pipefail

die() { echo "fetch-qemu-ga: ERROR: $*" >&2; exit 1; }
log() { echo "fetch-qemu-ga: $*" >&2; }

DEST=${1:-target/ref}
mkdir -p "$DEST" || die "cannot create $DEST"
DEST=$(cd "$DEST" && pwd)

MIRROR=${QGA_DEBIAN_MIRROR:-http://deb.debian.org/debian}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

for tool in apt-get dpkg-deb ldd; do
    command -v "$tool" >/dev/null 2>&1 || die "required tool '$tool' not found (Debian system expected)"
done
[ -r "$KEYRING" ] || die "Debian archive keyring $KEYRING missing (install debian-archive-keyring)"

SUDO=""
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 && SUDO="sudo" || true
fi

# ---- private apt configuration (shared with scripts/e2e/setup.sh) ---------
# shellcheck source=lib/private-apt.sh
. "$(dirname "$0")/lib/private-apt.sh"
private_apt_init "$DEST/.apt" "Debug::NoLocking=1" "APT::Sandbox::User=root"

# binary_ok DIR -> 0 if DIR/usr/sbin/qemu-ga exists and `-V` works
binary_ok() {
    local bin="$1/usr/sbin/qemu-ga"
    [ -x "$bin" ] && "$bin" -V >/dev/null 2>&1
}

# fetch_pkg SPEC OUTDIR : apt-get download SPEC and dpkg-deb -x it into OUTDIR
fetch_pkg() {
    local spec="$1" out="$2" tmp deb
    private_update
    tmp=$(mktemp -d "$DEST/.dl.XXXXXX")
    chmod 0755 "$tmp"   # lets apt's _apt sandbox user write the download
    log "apt-get download $spec"
    if ! (cd "$tmp" && apt-get "${APT_OPTS[@]}" -q download "$spec" >&2); then
        rm -rf "$tmp"
        die "apt-get download $spec failed"
    fi
    deb=$(ls "$tmp"/qemu-guest-agent_*.deb 2>/dev/null | head -n1)
    [ -n "$deb" ] || { rm -rf "$tmp"; die "no .deb downloaded for $spec"; }
    rm -rf "$out"
    mkdir -p "$out"
    dpkg-deb -x "$deb" "$out" || { rm -rf "$tmp"; die "dpkg-deb -x $deb failed"; }
    # keep the package metadata next to the tree (Version/Depends for the record)
    dpkg-deb -f "$deb" Package Version Depends >"$out/DEBIAN-control.txt"
    cp "$deb" "$out/" 2>/dev/null || true
    rm -rf "$tmp"
    [ -x "$out/usr/sbin/qemu-ga" ] || die "extracted $spec has no usr/sbin/qemu-ga"
}

# ensure_libs DIR : install missing shared libraries for DIR/usr/sbin/qemu-ga
SYSTEM_UPDATED=0
ensure_libs() {
    local dir="$1" bin="$1/usr/sbin/qemu-ga" missing pkgs
    missing=$(ldd "$bin" 2>/dev/null | awk '/not found/ {print $1}' || true)
    [ -z "$missing" ] && return 0
    log "$bin: missing libraries: $(echo $missing)"
    # Package names from the .deb's Depends (versions stripped, alternatives -> first).
    pkgs=$(sed -n 's/^Depends: //p' "$dir/DEBIAN-control.txt" |
        tr ',' '\n' | sed 's/|.*//; s/(.*)//; s/:any//; s/[[:space:]]//g' | grep -v '^$' |
        while read -r p; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"; done)
    [ -n "$pkgs" ] || die "libraries missing ($missing) but every Depends of the package is installed"
    if [ "$SYSTEM_UPDATED" = 0 ]; then
        log "apt-get update (system sources)"
        $SUDO bash "$APT_SH" update -q >&2 || die "apt-get update failed"
        SYSTEM_UPDATED=1
    fi
    log "apt-get install --no-remove $(echo $pkgs)"
    $SUDO bash "$APT_SH" install -q --no-remove --no-install-recommends $pkgs >&2 ||
        die "could not install runtime libraries: $(echo $pkgs)"
    missing=$(ldd "$bin" 2>/dev/null | awk '/not found/ {print $1}' || true)
    [ -z "$missing" ] || die "$bin still lacks libraries after install: $(echo $missing)"
}

# get VERSION_DIR APT_SPEC EXPECTED_VERSION_PREFIX
get() {
    local dir="$DEST/$1" spec="$2" want="$3" ver
    if [ -x "$dir/usr/sbin/qemu-ga" ]; then
        ensure_libs "$dir"
        if binary_ok "$dir"; then
            log "$dir/usr/sbin/qemu-ga already present, skipping download"
        fi
    fi
    if ! binary_ok "$dir"; then
        fetch_pkg "$spec" "$dir"
        ensure_libs "$dir"
    fi
    ver=$("$dir/usr/sbin/qemu-ga" -V 2>&1) || die "$dir/usr/sbin/qemu-ga -V failed: $ver"
    case "$ver" in
        *"QEMU Guest Agent $want"*) log "$dir/usr/sbin/qemu-ga: $ver" ;;
        *) die "$dir/usr/sbin/qemu-ga reports '$ver', expected version $want.x" ;;
    esac
}

get qemu-ga-7.2 qemu-guest-agent/bookworm 7.2
get qemu-ga-10 qemu-guest-agent/bookworm-backports 10.
echo "$DEST/qemu-ga-10/usr/sbin/qemu-ga"
