#!/usr/bin/env bash
# Builds the Debian package of the static musl qga (`make deb`,
# docs/distro.md):
#
#   scripts/distro/deb.sh ARCH BINARY OUT_DIR     prints the .deb's path
#
# ARCH: a row of scripts/arches.tsv (x86_64, aarch64, riscv64; its Debian
# architecture names the package). BINARY: the static qga of that ARCH
# (make static). With dpkg-deb only (no debhelper, no source package):
# the tree is assembled from packaging/ (unit, udev rule, man page, config,
# fsfreeze hook) and packaging/deb/ (control, maintainer scripts, copyright,
# changelog), md5sums and conffiles are generated, every file is root-owned
# and dated SOURCE_DATE_EPOCH (the last commit's time), so the same inputs
# give the same bytes.
#
# Version: QGA_DEB_VERSION, else Cargo.toml's version, plus
# "+git<YYYYMMDDhhmmss>.<commit>" unless HEAD is tagged v<version> (each
# commit's package upgrades the previous one). A version other than the
# changelog's newest gets a changelog entry of its own.
set -euo pipefail
cd "$(dirname "$0")/../.."
SRC=$(pwd)

ARCH=${1:?usage: deb.sh ARCH BINARY OUT_DIR}
BIN=${2:?usage: deb.sh ARCH BINARY OUT_DIR}
OUT=${3:?usage: deb.sh ARCH BINARY OUT_DIR}

die() { echo "deb: ERROR: $*" >&2; exit 1; }
log() { echo "deb: $*" >&2; }

DARCH=$(awk -v a="$ARCH" '$1 == a {print $3}' scripts/arches.tsv)
[ -n "$DARCH" ] || die "unknown ARCH '$ARCH' (scripts/arches.tsv)"
[ -x "$BIN" ] || die "$BIN missing (make static ARCH=$ARCH)"
if readelf -lW "$BIN" 2>/dev/null | grep -q INTERP; then die "$BIN is not static"; fi
command -v dpkg-deb >/dev/null || die "dpkg-deb missing"

CARGO_VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
MAINTAINER=${QGA_DEB_MAINTAINER:-qga maintainers <maintainers@users.noreply.r-seed-d3bedc9c.example>}
if git rev-parse --git-dir >/dev/null 2>&1; then
    SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
    if [ -z "${QGA_DEB_VERSION:-}" ] && ! git describe --exact-match --tags --match "v$CARGO_VERSION" >/dev/null 2>&1; then
        QGA_DEB_VERSION="$CARGO_VERSION+git$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y%m%d%H%M%S).$(git rev-parse --short=7 HEAD)"
    fi
fi
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(date +%s)}
export SOURCE_DATE_EPOCH
VERSION=${QGA_DEB_VERSION:-$CARGO_VERSION}
DATE_R=$(LC_ALL=C date -u -R -d "@$SOURCE_DATE_EPOCH")

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d "$OUT/.deb.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
R=$WORK/root
DOC=$R/usr/share/doc/qga

install -d -m 0755 "$R/DEBIAN" "$R/usr/sbin" "$R/usr/lib/systemd/system" "$R/usr/lib/udev/rules.d" \
    "$R/etc/qemu/fsfreeze-hook.d" "$R/usr/share/man/man8" "$DOC"
install -m 0755 "$BIN" "$R/usr/sbin/qga"
ln -s qga "$R/usr/sbin/qemu-ga"
sed 's|@BINDIR@|/usr/sbin|g' packaging/qga.service.in > "$R/usr/lib/systemd/system/qga.service"
install -m 0644 packaging/60-qga.rules "$R/usr/lib/udev/rules.d/60-qga.rules"
install -m 0644 packaging/qemu-ga.conf "$R/etc/qemu/qemu-ga.conf"
install -m 0755 packaging/fsfreeze-hook "$R/etc/qemu/fsfreeze-hook"
gzip -9n < packaging/qga.8 > "$R/usr/share/man/man8/qga.8.gz"
ln -s qga.8.gz "$R/usr/share/man/man8/qemu-ga.8.gz"
install -m 0644 packaging/deb/copyright "$DOC/copyright"
install -d -m 0755 "$R/usr/share/lintian/overrides"
# The override that applies to this binary (see the file's comment).
if readelf -hW "$BIN" | grep -q 'Type:.*DYN'; then drop=statically-linked-binary; else drop=shared-library-lacks-prerequisites; fi
grep -v "^qga: $drop " packaging/deb/lintian-overrides > "$R/usr/share/lintian/overrides/qga"
chmod 0644 "$R/usr/share/lintian/overrides/qga"
{
    newest=$(sed -n '1s/^qga (\([^)]*\)).*/\1/p' packaging/deb/changelog)
    if [ "$newest" != "$VERSION" ]; then
        printf 'qga (%s) unstable; urgency=medium\n\n  * Build of %s (scripts/distro/deb.sh).\n\n -- %s  %s\n\n' \
            "$VERSION" "$(git describe --always --dirty 2>/dev/null || echo "$VERSION")" "$MAINTAINER" "$DATE_R"
    fi
    sed "s|@MAINTAINER@|$MAINTAINER|" packaging/deb/changelog
} | gzip -9n > "$DOC/changelog.gz"

for s in preinst postinst prerm postrm; do
    install -m 0755 "packaging/deb/$s" "$R/DEBIAN/$s"
done
printf '/etc/qemu/fsfreeze-hook\n/etc/qemu/qemu-ga.conf\n' > "$R/DEBIAN/conffiles"
(cd "$R" && find . -path ./DEBIAN -prune -o -path ./etc -prune -o -type f -print | sed 's|^\./||' | LC_ALL=C sort |
    xargs md5sum) > "$R/DEBIAN/md5sums"
SIZE=$(du -k -s --apparent-size --exclude=DEBIAN "$R" | cut -f1)
sed -e "s|@VERSION@|$VERSION|" -e "s|@ARCH@|$DARCH|" -e "s|@MAINTAINER@|$MAINTAINER|" -e "s|@SIZE@|$SIZE|" \
    packaging/deb/control.in > "$R/DEBIAN/control"
chmod 0644 "$R/DEBIAN/control" "$R/DEBIAN/md5sums" "$R/DEBIAN/conffiles"
find "$R" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

DEB=$OUT/qga_${VERSION}_${DARCH}.deb
dpkg-deb --root-owner-group -Zxz --build "$R" "$DEB" >&2
log "$DEB: $(stat -c %s "$DEB") bytes (qga $VERSION, $DARCH)"
echo "$DEB"
