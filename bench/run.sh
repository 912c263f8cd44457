#!/usr/bin/env bash
# Builds the Kiseki benchmarks in release, runs each with its default sizes, and prints a summary
# table of figures and ratios against the baselines measured in the same run, with the goals.
#
# Usage: bench/run.sh            (KISEKI_BENCH_DIR=/path picks the filesystem; default /var/tmp)
# Takes about a minute on a 2-core machine once built. Exits non-zero only if a benchmark fails,
# never because a ratio is below its goal.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
dir="${KISEKI_BENCH_DIR:-/var/tmp}"
bin="${CARGO_TARGET_DIR:-target}/release"
results="$(mktemp)"
trap 'rm -f "$results"' EXIT

echo "== building (release)"
cargo build --release --quiet -p kiseki-bench

run() {
    local name="$1"
    shift
    echo
    echo "== $name $*"
    # The benchmark's own status counts, not grep's (which fails when it prints nothing).
    set +e
    "$bin/$name" "$@" | tee -a "$results" | grep -v '^RESULT|'
    local status="${PIPESTATUS[0]}"
    set -e
    if [[ "$status" -ne 0 ]]; then
        echo "$name failed with status $status" >&2
        exit "$status"
    fi
}

run chunk-path --dir "$dir"
run log-append --dir "$dir"

echo
echo "== summary ($(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, dir $dir)"
grep '^RESULT|' "$results" | awk -F'|' '
    BEGIN {
        printf "%-11s %-36s %12s %-6s %-8s %s\n", "benchmark", "figure", "value", "unit", "goal", "verdict"
        printf "%-11s %-36s %12s %-6s %-8s %s\n", "---------", "------", "-----", "----", "----", "-------"
    }
    {
        value = ($5 == "x") ? sprintf("%.2f", $4) : sprintf("%.1f", $4)
        printf "%-11s %-36s %12s %-6s %-8s %s\n", $2, $3, value, $5, $6, $7
    }'
