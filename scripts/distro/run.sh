#!/usr/bin/env bash
# `make e2e-distro` (docs/distro.md): the qga package and a version-bumped
# build of it, the cached Debian image, then scripts/distro/e2e.py.
#
#   scripts/distro/run.sh STATIC_BIN KERNEL_DIR WORK [e2e.py options...]
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:?usage: run.sh STATIC_BIN KERNEL_DIR WORK}
KERNEL=${2:?usage: run.sh STATIC_BIN KERNEL_DIR WORK}
WORK=${3:?usage: run.sh STATIC_BIN KERNEL_DIR WORK}
shift 3
t0=$SECONDS
rm -rf "$WORK/debs"
deb=$(bash scripts/distro/deb.sh x86_64 "$BIN" "$WORK/debs")
version=$(dpkg-deb -f "$deb" Version)
# The upgrade: the same build with a higher version (dpkg replaces the
# binary, postinst restarts the service on it).
up=$(QGA_DEB_VERSION="$version+e2e1" bash scripts/distro/deb.sh x86_64 "$BIN" "$WORK/debs")
t1=$SECONDS
img=$(bash scripts/distro/image.sh "$KERNEL" "$WORK")
echo "e2e-distro: packages in $((t1 - t0)) s, image (built or cached) in $((SECONDS - t1)) s: $img"
python3 scripts/distro/e2e.py --image "$img" --deb "$deb" --deb-upgrade "$up" --work "$WORK/run" "$@"
