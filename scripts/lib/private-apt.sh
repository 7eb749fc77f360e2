# A private apt configuration that adds bookworm-backports (and, with
# SECURITY_MIRROR set, bookworm-security) without touching the system's
# sources: own sources list, lists and cache under one directory.
# Sourced by scripts/fetch-qemu-ga.sh and scripts/e2e/setup.sh.
#
#   private_apt_init DIR [EXTRA_APT_OPTION...]   sets APTDIR and APT_OPTS
#   private_update                               apt-get update, once
#   "$APT_SH" update|install ...                 scripts/apt.sh (waits for
#                                                apt's and dpkg's locks)
#
# Expects MIRROR, KEYRING and the functions log and die; uses SUDO if set.

APT_SH=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/apt.sh

private_apt_init() {
    APTDIR=$1
    shift
    APT_OPTS=(
        -o "Dir::Etc::sourcelist=$APTDIR/sources.list"
        -o "Dir::Etc::sourceparts=-"
        -o "Dir::State::Lists=$APTDIR/lists"
        -o "Dir::Cache=$APTDIR/cache"
        -o "Dir::Cache::pkgcache=$APTDIR/cache/pkgcache.bin"
        -o "Dir::Cache::srcpkgcache=$APTDIR/cache/srcpkgcache.bin"
        -o "APT::Get::List-Cleanup=0"
        -o "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false"
        -o "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false"
    )
    local extra
    for extra in "$@"; do
        APT_OPTS+=(-o "$extra")
    done
    PRIVATE_UPDATED=0
}

private_update() {
    [ "${PRIVATE_UPDATED:-0}" = 1 ] && return 0
    mkdir -p "$APTDIR/lists/partial" "$APTDIR/cache/archives/partial"
    {
        echo "deb [signed-by=$KEYRING] $MIRROR bookworm main"
        echo "deb [signed-by=$KEYRING] $MIRROR bookworm-updates main"
        if [ -n "${SECURITY_MIRROR:-}" ]; then
            echo "deb [signed-by=$KEYRING] $SECURITY_MIRROR bookworm-security main"
        fi
        echo "deb [signed-by=$KEYRING] $MIRROR bookworm-backports main"
    } >"$APTDIR/sources.list"
    log "apt-get update (private sources incl. bookworm-backports)"
    ${SUDO:-} bash "$APT_SH" update "${APT_OPTS[@]}" -q >&2 || die "apt-get update with the private sources list failed"
    PRIVATE_UPDATED=1
}
