#!/usr/bin/env bash
# Counts of a cargo-mutants run (`make mutants`), from its output directory:
#   scripts/mutants-summary.sh target/mutants/mutants.out
# Works on a run cut short by MUTANTS_MINUTES (the lists are written as the
# run goes).
set -euo pipefail
d=${1:?usage: scripts/mutants-summary.sh MUTANTS_OUT_DIR}
count() { if [ -s "$d/$1" ]; then grep -c . "$d/$1" || true; else echo 0; fi; }
caught=$(count caught.txt); missed=$(count missed.txt); timeout=$(count timeout.txt); unviable=$(count unviable.txt)
echo "mutants ($(date -u +%F)): tested $((caught + missed + timeout + unviable)): caught $caught, missed $missed, timeouts $timeout, unviable $unviable"
if [ "$missed" -gt 0 ]; then
    echo "missed (a test should fail for each, or docs/testing.md says why it is equivalent):"
    sed 's/^/  /' "$d/missed.txt"
fi
