#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time and fails on a
# crash, a timeout or memory over the limit (libFuzzer exits non-zero and
# leaves the input in fuzz/artifacts/<target>/).
#
#   scripts/fuzz.sh [TARGET...]        default: every target
#
# FUZZ_SECONDS (default 60) per target, FUZZ_RSS_MB (default 2048),
# FUZZ_TIMEOUT (seconds for one input, default 10), FUZZ_JOBS=1.
# Needs the nightly toolchain (`cargo +nightly`) and cargo-fuzz; with
# FUZZ_INSTALL=1, cargo-fuzz is installed from crates.io when missing.
# Prints execs/s and coverage per target and a summary table at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER=${FUZZ_SECONDS:-60}
RSS_MB=${FUZZ_RSS_MB:-2048}
TIMEOUT=${FUZZ_TIMEOUT:-10}
NICE=${FUZZ_NICE:-nice -n 10}

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz: the nightly toolchain is missing (cargo +nightly); cargo-fuzz needs it" >&2
    exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    if [ "${FUZZ_INSTALL:-0}" = 1 ]; then
        echo "fuzz: installing cargo-fuzz"
        $NICE cargo install cargo-fuzz --locked
    else
        echo "fuzz: cargo-fuzz is missing (cargo install cargo-fuzz --locked, or FUZZ_INSTALL=1)" >&2
        exit 1
    fi
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cd fuzz && cargo +nightly fuzz list)
fi

start=$(date +%s)

$NICE cargo +nightly fuzz build -O
echo "fuzz: build took $(( $(date +%s) - start )) s"

summary=()
status=0
for t in "${targets[@]}"; do
    log=$(mktemp)
    # Run from a scratch copy of the seeds so the checked-in corpus stays small.
    work=target/fuzz-corpus/$t
    mkdir -p "$work"
    t0=$(date +%s)
    set +e
    $NICE cargo +nightly fuzz run -O "$t" "$work" "fuzz/corpus/$t" -- \
        -max_total_time="$SECONDS_PER" -rss_limit_mb="$RSS_MB" -timeout="$TIMEOUT" \
        -print_final_stats=1 >"$log" 2>&1
    rc=$?
    set -e
    dt=$(( $(date +%s) - t0 ))
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*')
    ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*')
    corp=$(grep -o 'corp: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*')
    persec=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    line="$t: ${runs:-?} runs in ${dt}s (${persec:-?} execs/s), cov ${cov:-?}, ft ${ft:-?}, corpus ${corp:-?}"
    if [ $rc -ne 0 ]; then
        echo "fuzz: $t FAILED (exit $rc)"
        grep -E 'ERROR|panicked|SUMMARY|Test unit written|Base64' "$log" | head -20
        tail -40 "$log"
        line="$line  FAILED"
        status=1
    fi
    echo "fuzz: $line"
    summary+=("$line")
    rm -f "$log"
done
echo "fuzz: summary (${SECONDS_PER}s per target, rss limit ${RSS_MB} MB, timeout ${TIMEOUT}s)"
printf '  %s\n' "${summary[@]}"
echo "fuzz: step took $(( $(date +%s) - start )) s"
exit $status
