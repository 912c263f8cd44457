#!/usr/bin/env bash
# NFSv3 against S3 on the same server, same objects, same run: writes (libnfs nfs-cp, UNSTABLE
# WRITEs + COMMIT) against S3 PUT, and reads (nfs-cp) against S3 GET, both by C clients (libnfs
# and curl with SigV4), at 256 MiB and 1 GiB. Every write stores new content (no deduplication);
# reads fetch the object the last S3 PUT stored, by both protocols. Client-side files live in /dev/shm so the local
# disk is not measured; the server's data dir is on KISEKI_BENCH_DIR (default /var/tmp).
#
# Usage: bench/nfs.sh   (KISEKI_NFS_BENCH_SIZES_MIB="256 1024", KISEKI_NFS_BENCH_REPEAT=2)
# Prints RESULT| lines like bench/run.sh. Goal: NFS >= 0.7x the S3 rate. Takes ~1-2 minutes once
# built. Needs libnfs-utils and curl.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
dir="${KISEKI_BENCH_DIR:-/var/tmp}"
sizes="${KISEKI_NFS_BENCH_SIZES_MIB:-256 1024}"
repeat="${KISEKI_NFS_BENCH_REPEAT:-2}"
bin="${CARGO_TARGET_DIR:-target}/release/kiseki-server"

echo "== building kiseki-server (release)"
cargo build --release --quiet -p kiseki-server

work="$(mktemp -d "$dir/kiseki-nfs-bench.XXXXXX")"
local_dir="$(mktemp -d /dev/shm/kiseki-nfs-bench.XXXXXX)"
server_pid=""
cleanup() {
    if [[ -n "$server_pid" ]]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    rm -rf "$work" "$local_dir"
}
trap cleanup EXIT

nfs_port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
cat > "$work/config.yaml" <<YAML
data_dir: $work/data
metrics_listen: 127.0.0.1:0
native_listen: 127.0.0.1:0
s3_listen: 127.0.0.1:0
dev_tenant: { id: 1 }
nfs:
  listen: 127.0.0.1:$nfs_port
  exports:
    - { name: bench, tenant: 1, path: /bench, clients: [127.0.0.1], root_squash: false }
YAML

touch "$work/banner"
KISEKI_LOG=warn "$bin" --config "$work/config.yaml" > "$work/banner" &
server_pid=$!
for _ in $(seq 100); do grep -q '^ready$' "$work/banner" && break; sleep 0.1; done
grep -q '^ready$' "$work/banner" || { cat "$work/banner"; echo "server did not start" >&2; exit 1; }
value() { grep "$1" "$work/banner" | sed "s/.*$1 *//" | awk '{print $1}'; }
endpoint="$(value 'S3 endpoint:')"
access_key="$(value 'S3 access key:')"
secret_key="$(value 'S3 secret key:')"
nfs_url() { echo "nfs://127.0.0.1/bench/$1?nfsport=$nfs_port&mountport=$nfs_port&version=3"; }
s3() { curl -sSf --aws-sigv4 "aws:amz:us-east-1:s3" -u "$access_key:$secret_key" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$@"; }

# Seconds a command takes; the benchmark stops if it fails.
seconds() {
    local start end
    start="$(date +%s.%N)"
    "$@" > /dev/null || { echo "failed: $*" >&2; exit 1; }
    end="$(date +%s.%N)"
    echo "$end - $start" | bc -l
}

# Makes the file new content (16 random bytes in every MiB), so no write is deduplicated
# against an earlier one: every run stores every chunk.
mutate() {
    python3 -c '
import os, sys
with open(sys.argv[1], "r+b") as file:
    for offset in range(0, os.fstat(file.fileno()).st_size, 1 << 20):
        file.seek(offset)
        file.write(os.urandom(16))
' "$1"
}

# The smallest of the arguments.
smallest() { printf '%s\n' "$@" | sort -g | head -1; }

result() { # name, figure, value, unit, goal, verdict
    echo "RESULT|$1|$2|$3|$4|$5|$6"
}

for mib in $sizes; do
    source_file="$local_dir/source-$mib"
    head -c "$((mib * 1024 * 1024))" /dev/urandom > "$source_file"
    object="object-$mib.bin"
    echo
    echo "== $mib MiB (same object over both protocols; best of $repeat)"
    nfs_write=() s3_put=() nfs_read=() s3_get=()
    for _ in $(seq "$repeat"); do
        # nfs-cp creates GUARDED (it never overwrites): remove the object first.
        s3 -X DELETE "$endpoint/bench/$object" > /dev/null
        mutate "$source_file"
        nfs_write+=("$(seconds nfs-cp "$source_file" "$(nfs_url "$object")")")
        mutate "$source_file"
        s3_put+=("$(seconds s3 -T "$source_file" "$endpoint/bench/$object")")
    done
    for _ in $(seq "$repeat"); do
        rm -f "$local_dir/back-nfs"
        nfs_read+=("$(seconds nfs-cp "$(nfs_url "$object")" "$local_dir/back-nfs")")
        s3_get+=("$(seconds s3 -o "$local_dir/back-s3" "$endpoint/bench/$object")")
    done
    nfs_write="$(smallest "${nfs_write[@]}")" s3_put="$(smallest "${s3_put[@]}")"
    nfs_read="$(smallest "${nfs_read[@]}")" s3_get="$(smallest "${s3_get[@]}")"
    cmp -s "$source_file" "$local_dir/back-nfs" || { echo "NFS read differs from the source" >&2; exit 1; }
    cmp -s "$source_file" "$local_dir/back-s3" || { echo "S3 GET differs from the source" >&2; exit 1; }
    rm -f "$local_dir/back-nfs" "$local_dir/back-s3"
    for pair in "write:$nfs_write:$s3_put" "read:$nfs_read:$s3_get"; do
        IFS=: read -r what nfs_seconds s3_seconds <<< "$pair"
        nfs_rate="$(echo "$mib / $nfs_seconds" | bc -l)"
        s3_rate="$(echo "$mib / $s3_seconds" | bc -l)"
        ratio="$(echo "$nfs_rate / $s3_rate" | bc -l)"
        verdict="$( (( $(echo "$ratio >= 0.7" | bc -l) )) && echo met || echo below)"
        printf "%-5s NFS %8.1f MiB/s   S3 %8.1f MiB/s   NFS/S3 %.2fx\n" "$what" "$nfs_rate" "$s3_rate" "$ratio"
        result nfs "$what ${mib} MiB NFS" "$nfs_rate" "MiB/s" "" ""
        result nfs "$what ${mib} MiB S3" "$s3_rate" "MiB/s" "" ""
        result nfs "$what ${mib} MiB NFS/S3" "$ratio" "x" ">=0.7" "$verdict"
    done
    rm -f "$source_file"
done
