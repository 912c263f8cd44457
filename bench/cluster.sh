#!/usr/bin/env bash
# The cluster benchmark of issue 9, in one run: the same Rust load generator (s3-load) through
# the S3 gateway of
#   single       kiseki-server --dev (one node, one chunk directory);
#   cluster-x3   3 nodes on loopback (mTLS, one key server), shard groups of 3 voters, chunks
#                copied to the shard's replicas (plain pool);
#   cluster-ec   the same 3 nodes with an erasure-coded pool, 2+1 over two devices per node
#                (fragments on distinct nodes, no whole copies);
# each with one 1 GiB PUT and GET (streamed) and 4 KiB PUTs from 16 concurrent connections,
# all through node 1 (it forwards shard writes to the leader). Then the EC cluster loses node 3
# (kill -9) and `kiseki-server rebuild --config node-1.yaml` regenerates its fragments on the
# live nodes: the time per GiB of regenerated fragments. Prints a table of figures with the
# cluster/single ratios (a 3-node cluster on one 2-core machine shares the cores and the disk:
# the ratios show the cost of replication, not a scale-out gain).
#
# Usage: bench/cluster.sh   (KISEKI_BENCH_DIR=/path picks the filesystem for data; default /var/tmp)
#   KISEKI_CLUSTER_BENCH_LARGE_MIB=1024  KISEKI_CLUSTER_BENCH_SECONDS=8  KISEKI_CLUSTER_BENCH_OPS=20000
# Takes about 3-5 minutes once built; every step has a time bound. Exits non-zero only when a
# step fails, never because of a figure.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
dir="${KISEKI_BENCH_DIR:-/var/tmp}"
large_mib="${KISEKI_CLUSTER_BENCH_LARGE_MIB:-1024}"
seconds="${KISEKI_CLUSTER_BENCH_SECONDS:-8}"
ops="${KISEKI_CLUSTER_BENCH_OPS:-20000}"
bin="${CARGO_TARGET_DIR:-target}/release"
access_key=KSKCLUSTERBENCH000001
secret_key=clusterbenchsecretclusterbenchsecret0000

echo "== building kiseki-server, kiseki-keyserver and s3-load (release)"
cargo build --release --quiet -p kiseki-server -p kiseki-keyserver -p kiseki-bench \
    --bin kiseki-server --bin kiseki-keyserver --bin s3-load
started_at="$(date +%s)"

work="$(mktemp -d "$dir/kiseki-cluster-bench.XXXXXX")"
results="$work/results"
touch "$results"
pids=()
failed=0

# Stops a process we started (a child of this shell, so its pid cannot have been reused before
# `wait` reaps it): SIGTERM (or the given signal), up to 20 s, then SIGKILL; then forgets it.
stop() {
    local pid="$1" signal="${2:-TERM}" kept=() other
    if kill "-$signal" "$pid" 2>/dev/null; then
        for _ in $(seq 200); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    for other in "${pids[@]}"; do [[ "$other" == "$pid" ]] || kept+=("$other"); done
    pids=("${kept[@]}")
}
cleanup() {
    for pid in "${pids[@]}"; do stop "$pid"; done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Prints N distinct free loopback ports.
free_ports() {
    python3 -c '
import socket, sys
sockets = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in sockets: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in sockets))
' "$1"
}

result() { echo "RESULT|cluster|$1|$2|$3|$4" >> "$results"; } # system, figure, value, unit

# Runs the generator against one system; a failure is recorded and the run goes on.
load() {
    local system="$1" endpoint="$2" key="$3" secret="$4"
    echo
    echo "== s3-load $system"
    set +e
    timeout -k 5 300 "$bin/s3-load" --system "$system" --endpoint "$endpoint" \
        --access-key "$key" --secret-key "$secret" --large-mib "$large_mib" \
        --seconds "$seconds" --ops-max "$ops" --phases large-put,large-get,small-put \
        | tee -a "$results" | grep -v '^RESULT|'
    local status="${PIPESTATUS[0]}"
    set -e
    if [[ "$status" -ne 0 ]]; then
        echo "s3-load $system failed with status $status" >&2
        failed=1
    fi
}

# Waits (up to 60 s) for a banner file to say `ready`.
wait_ready() {
    for _ in $(seq 600); do grep -q '^ready$' "$1" && return 0; sleep 0.1; done
    return 1
}

echo "== data on $dir ($(df -h --output=source,fstype "$dir" | tail -1 | xargs)), $(nproc) cores"

# ---- single node -----------------------------------------------------------------------------
KISEKI_LOG=warn,s3s=off "$bin/kiseki-server" --data-dir "$work/single" --dev \
    --s3-listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --native-listen 127.0.0.1:0 \
    > "$work/single.banner" 2> "$work/single.log" &
single_pid=$!
pids+=("$single_pid")
if wait_ready "$work/single.banner"; then
    value() { grep "$1" "$work/single.banner" | sed "s/.*$1 *//" | awk '{print $1}'; }
    load single "$(value 'S3 endpoint:')" "$(value 'S3 access key:')" "$(value 'S3 secret key:')"
else
    cat "$work/single.banner" "$work/single.log"
    echo "kiseki-server did not start" >&2
    failed=1
fi
stop "$single_pid"
rm -rf "$work/single"

# ---- the cluster's key server and CA ---------------------------------------------------------
"$bin/kiseki-server" cluster-ca init --dir "$work/ca" > /dev/null
read -r key_port <<< "$(free_ports 1)"
KISEKI_LOG=warn "$bin/kiseki-keyserver" --data-dir "$work/keyserver" \
    --listen "127.0.0.1:$key_port" --metrics-listen 127.0.0.1:0 > /dev/null 2>&1 &
pids+=("$!")
for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$key_port") 2> /dev/null && break; sleep 0.1; done

node_pids=()
# Starts 3 nodes named $1 with the extra config $2 (pools); node i's files are $work/$1/node-i.*.
start_cluster() {
    local name="$1" extra="$2" ports peers="" id
    mkdir -p "$work/$name"
    read -r -a ports <<< "$(free_ports 6)"
    for id in 1 2 3; do
        peers+="    - { id: $id, address: \"127.0.0.1:${ports[$((id + 2))]}\" }"$'\n'
    done
    node_pids=()
    for id in 1 2 3; do
        local data="$work/$name/node-$id"
        mkdir -p "$data"
        printf -- '- access_key_id: %s\n  secret_access_key: %s\n  tenant: 1\n  workload: dev\n' \
            "$access_key" "$secret_key" > "$data/access-keys.yaml"
        cat > "$work/$name/node-$id.yaml" << YAML
data_dir: $data
metrics_listen: 127.0.0.1:0
s3_listen: 127.0.0.1:${ports[$((id - 1))]}
native_listen: 127.0.0.1:0
keyserver: http://127.0.0.1:$key_port
dev_tenant: { id: 1 }
cluster:
  node_id: $id
  listen: 127.0.0.1:${ports[$((id + 2))]}
  replicas: 3
  peers:
$peers  tls:
    ca_cert: $work/ca/ca.pem
    ca_key: $work/ca/ca.key
$extra
YAML
        KISEKI_LOG=warn,s3s=off,openraft=error "$bin/kiseki-server" --config "$work/$name/node-$id.yaml" \
            > "$work/$name/node-$id.banner" 2> "$work/$name/node-$id.log" &
        node_pids+=("$!")
        pids+=("$!")
    done
    for id in 1 2 3; do
        if ! wait_ready "$work/$name/node-$id.banner"; then
            tail -20 "$work/$name/node-$id.log"
            echo "node $id of $name did not start" >&2
            return 1
        fi
    done
    cluster_endpoint="http://127.0.0.1:${ports[0]}"
}

stop_cluster() {
    local pid
    for pid in "${node_pids[@]}"; do stop "$pid"; done
    node_pids=()
}

# ---- 3 nodes, chunks copied to the shard's replicas ------------------------------------------
if start_cluster x3 ""; then
    load cluster-x3 "$cluster_endpoint" "$access_key" "$secret_key"
else
    failed=1
fi
stop_cluster
rm -rf "$work/x3"

# ---- 3 nodes, erasure-coded pool 2+1; then a lost node and its rebuild -----------------------
ec_pool='pools:
  - name: bulk
    device_class: bulk-nvme
    ec: "2+1"
    devices: [dev0, dev1]'
if start_cluster ec "$ec_pool"; then
    load cluster-ec "$cluster_endpoint" "$access_key" "$secret_key"
    echo
    echo "== rebuild of a lost node (kill -9 node 3, kiseki-server rebuild through node 1)"
    stop "${node_pids[2]}" KILL 2> /dev/null # (no "Killed" job notice)
    start="$(date +%s.%N)"
    if timeout -k 5 600 "$bin/kiseki-server" rebuild --config "$work/ec/node-1.yaml" \
        > "$work/rebuild.out" 2> "$work/rebuild.log"; then
        end="$(date +%s.%N)"
        cat "$work/rebuild.out"
        bytes="$(sed -nE 's/.* rebuilt \(([0-9]+) bytes\).*/\1/p' "$work/rebuild.out" | head -1)"
        python3 - "$start" "$end" "${bytes:-0}" << 'PY' | tee -a "$results" | grep -v '^RESULT|'
import sys
start, end, rebuilt = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
secs = end - start
gib = rebuilt / 2**30
print(f"  rebuilt {gib:.2f} GiB of fragments in {secs:.1f} s")
if gib > 0:
    print(f"RESULT|cluster|cluster-ec|rebuild_s_per_gib|{secs / gib:.1f}|s/GiB")
    print(f"RESULT|cluster|cluster-ec|rebuild_rate|{gib * 1024 / secs:.1f}|MiB/s")
PY
    else
        cat "$work/rebuild.out" "$work/rebuild.log"
        echo "rebuild failed" >&2
        failed=1
    fi
else
    failed=1
fi
stop_cluster

# ---- summary ---------------------------------------------------------------------------------
echo
echo "== summary ($(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, data on $dir, $(($(date +%s) - started_at)) s after the build)"
python3 - "$results" << 'PY'
import sys

values = {}
for line in open(sys.argv[1]):
    if line.startswith("RESULT|"):
        parts = line.strip().split("|")
        system, figure, value, unit = parts[2], parts[3], parts[4], parts[5]
        values[(system, figure)] = (float(value), unit)

def get(system, figure):
    return values.get((system, figure), (None, ""))[0]

def show(value):
    return "-" if value is None else (f"{value:.2f}" if value < 100 else f"{value:.0f}")

systems = ["single", "cluster-x3", "cluster-ec"]
print(f"{'figure':<15} {'unit':<6} " + " ".join(f"{s:>11}" for s in systems) + "   x3/single  ec/single")
for figure in ["large_put", "large_get", "small_put", "small_put_p50", "small_put_p99"]:
    unit = next((u for (s, f), (_, u) in values.items() if f == figure), "")
    row = [get(s, figure) for s in systems]
    ratios = []
    for value in row[1:]:
        single = row[0]
        if value is None or single is None or value == 0 or single == 0:
            ratios.append("-")
        else:
            ratios.append(f"{(single / value if unit == 'ms' else value / single):.2f}x")
    print(f"{figure:<15} {unit:<6} " + " ".join(f"{show(v):>11}" for v in row)
          + f"   {ratios[0]:>9}  {ratios[1]:>9}")
for figure in ["rebuild_s_per_gib", "rebuild_rate"]:
    value = get("cluster-ec", figure)
    if value is not None:
        unit = values[("cluster-ec", figure)][1]
        print(f"{'ec ' + figure:<22} {show(value):>8} {unit}")
PY
exit "$failed"
