#!/usr/bin/env bash
# Summary of the skips the integration tests recorded (tests/common/skip.rs):
# `make test` clears the log before the run and calls this after it, so a
# skipped test never reads as a plain "ok".
#
#   scripts/test-skips.sh LOG
#
# Each log line: TEST<TAB>KIND<TAB>REASON, KIND `missing` (a prerequisite
# CI provides is absent: CI=true turns it into a test failure) or `n/a`
# (the test does not apply to the agent under test, QGA_TEST_REFERENCE=1).
set -euo pipefail
log=${1:?usage: scripts/test-skips.sh LOG}
if [ ! -s "$log" ]; then
    echo "test skips: 0"
    exit 0
fi
n=$(wc -l <"$log")
missing=$(grep -c $'\tmissing\t' "$log" || true)
echo "test skips: $n ($missing for a missing prerequisite, $((n - missing)) not applicable to this agent)"
sort "$log" | awk -F '\t' '{ printf "  SKIP %-60s [%s] %s\n", $1, $2, $3 }'
if [ "$missing" -gt 0 ]; then
    echo "  (as root with scripts/fetch-qemu-ga.sh run, nothing is skipped; under CI=true these fail)"
fi
