#!/usr/bin/env bash
# apt-get update / install for every script here (.ci/run, scripts/**):
# waits for another apt or dpkg to finish instead of failing at once on
# "Could not get lock /var/lib/dpkg/lock-frontend" (a fresh-clone CI run
# failed that way in 6 s while another apt was running).
#
#   scripts/apt.sh update  [APT-GET OPTION...]
#   scripts/apt.sh install [APT-GET OPTION...] PKG...
#
# Both run non-interactively (DEBIAN_FRONTEND=noninteractive; install
# answers yes) with -o DPkg::Lock::Timeout (apt >= 1.9.11): apt then waits
# up to that long for the dpkg frontend lock and the dpkg lock. `apt-get
# update` takes neither; its lock is the lists directory's, which apt does
# not wait for (apt 2.6: "Unable to lock directory /var/lib/apt/lists/"),
# so update is retried every 2 s while that is the error, for as long.
# Run it as root (or through sudo); options such as -o Dir::... (a private
# configuration) or APT_CONFIG in the environment are passed on.
#
# QGA_APT_LOCK_TIMEOUT: seconds to wait for a lock (default 600).
# `apt-get download` and apt-cache take no lock and are not wrapped.
set -euo pipefail

TIMEOUT=${QGA_APT_LOCK_TIMEOUT:-600}
export DEBIAN_FRONTEND=noninteractive
APT=(apt-get -o "DPkg::Lock::Timeout=$TIMEOUT")

log() { echo "apt.sh: $*" >&2; }

update() {
    local err rc deadline=$((SECONDS + TIMEOUT)) waited=0
    err=$(mktemp)
    while :; do
        rc=0
        "${APT[@]}" "$@" update 2>"$err" || rc=$?
        if [ "$rc" = 0 ] || ! grep -q "Unable to lock directory" "$err" || [ "$SECONDS" -ge "$deadline" ]; then
            cat "$err" >&2
            rm -f "$err"
            return "$rc"
        fi
        [ "$waited" = 1 ] || log "another apt holds the package lists' lock: waiting (up to $TIMEOUT s)"
        waited=1
        sleep 2
    done
}

case "${1:-}" in
    update)
        shift
        update "$@"
        ;;
    install)
        shift
        exec "${APT[@]}" -y install "$@"
        ;;
    *)
        echo "usage: scripts/apt.sh update|install [APT-GET OPTION...] [PKG...]" >&2
        exit 2
        ;;
esac
