#!/usr/bin/env bash
# What one small chunk's durability costs on this disk, in the same run: a 4 KiB chunk written
# as its own file (temporary file, fdatasync, rename, directory fsync: what the chunk store does
# today) against a 4 KiB pwrite + fdatasync into a zero-filled pack file (the log's way, and
# the candidate for small chunks; see ARCHITECTURE.md, "Small-chunk syncs").
#
# Usage: bench/sync.sh   (KISEKI_BENCH_DIR=/var/tmp, KISEKI_SYNC_BENCH_OPS=1000)
set -euo pipefail
base="${KISEKI_BENCH_DIR:-/var/tmp}"
ops="${KISEKI_SYNC_BENCH_OPS:-1000}"
work="$(mktemp -d "$base/kiseki-sync-bench.XXXXXX")"
trap 'rm -rf "$work"' EXIT
python3 - "$work" "$ops" <<'PY'
import os, sys, time
work, n = sys.argv[1], int(sys.argv[2])
block = os.urandom(4096)

pack = os.path.join(work, "pack")
with open(pack, "wb") as f:
    f.write(b"\0" * (n * 4096))
    f.flush()
    os.fsync(f.fileno())
fd = os.open(pack, os.O_WRONLY)
start = time.perf_counter()
for i in range(n):
    os.pwrite(fd, block, i * 4096)
    os.fdatasync(fd)
packed = (time.perf_counter() - start) / n * 1000
os.close(fd)

chunks = os.path.join(work, "chunks")
os.mkdir(chunks)
dir_fd = os.open(chunks, os.O_RDONLY)
start = time.perf_counter()
for i in range(n):
    temp = os.path.join(chunks, f".tmp{i}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, block)
    os.fdatasync(fd)
    os.close(fd)
    os.rename(temp, os.path.join(chunks, f"c{i}"))
    os.fsync(dir_fd)
files = (time.perf_counter() - start) / n * 1000
os.close(dir_fd)

print(f"chunk file (temp + fdatasync + rename + dir fsync): {files:.3f} ms per 4 KiB chunk")
print(f"pack file (pwrite + fdatasync, zero-filled):         {packed:.3f} ms per 4 KiB chunk")
print(f"pack / file: {packed / files:.2f}x of the time")
print(f"RESULT|sync|chunk file|{files:.3f}|ms|info")
print(f"RESULT|sync|pack file|{packed:.3f}|ms|info")
PY
