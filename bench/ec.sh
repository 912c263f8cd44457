#!/usr/bin/env bash
# The erasure-coding benchmark of issue 9: Kiseki's EC chunk path (codec and ErasureChunkStore)
# against raw Reed-Solomon measured in the same run, for 4+2 and 8+3, and the time to rebuild a
# lost device per GiB (4+2 over 7 device directories on KISEKI_BENCH_DIR, durable writes) against
# writing the same fragments durably. Prints each report, then a summary table.
#
# Usage: bench/ec.sh        (KISEKI_BENCH_DIR=/path picks the filesystem; default /var/tmp)
#   KISEKI_EC_BENCH_BYTES=1GiB  KISEKI_EC_BENCH_REBUILD_BYTES=512MiB
# About 30 s once built. Exits non-zero only if the benchmark fails (data read back differs, a
# rebuild leaves fragments missing), never because a ratio is below its goal.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
dir="${KISEKI_BENCH_DIR:-/var/tmp}"
bytes="${KISEKI_EC_BENCH_BYTES:-1GiB}"
rebuild_bytes="${KISEKI_EC_BENCH_REBUILD_BYTES:-512MiB}"
bin="${CARGO_TARGET_DIR:-target}/release"
results="$(mktemp)"
trap 'rm -f "$results"' EXIT

echo "== building ec-path (release)"
cargo build --release --quiet -p kiseki-bench --bin ec-path

echo
echo "== ec-path --bytes $bytes --rebuild-bytes $rebuild_bytes --dir $dir"
set +e
timeout 900 "$bin/ec-path" --bytes "$bytes" --rebuild-bytes "$rebuild_bytes" --dir "$dir" \
    | tee -a "$results" | grep -v '^RESULT|'
status="${PIPESTATUS[0]}"
set -e
if [[ "$status" -ne 0 ]]; then
    echo "ec-path failed with status $status" >&2
    exit "$status"
fi

echo
echo "== summary ($(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg), dir $dir)"
grep '^RESULT|' "$results" | awk -F'|' '
    BEGIN {
        printf "%-8s %-34s %10s %-6s %-8s %s\n", "bench", "figure", "value", "unit", "goal", "verdict"
        printf "%-8s %-34s %10s %-6s %-8s %s\n", "-----", "------", "-----", "----", "----", "-------"
    }
    {
        value = sprintf("%.2f", $4)
        printf "%-8s %-34s %10s %-6s %-8s %s\n", $2, $3, value, $5, $6, $7
    }'
