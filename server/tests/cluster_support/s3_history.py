"""S3 writers and a history checker for the cluster failure tests (boto3).

write:  concurrent writers PUT fresh keys (content derived from the key) round-robin through
        every endpoint for a while; every acknowledged PUT is recorded in the history file.
verify: every acknowledged key must read back byte-exact through every endpoint.
put/get: one object, for the smaller tests.

Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
"""

import argparse
import hashlib
import json
import sys
import threading
import time

import boto3
from botocore.config import Config

BUCKET = "history"


def client(endpoint, read_timeout=20):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        config=Config(
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=2,
            read_timeout=read_timeout,
            s3={"addressing_style": "path"},
        ),
    )


def content(key, size):
    return hashlib.shake_256(key.encode()).digest(size)


def size_of(key):
    # 1 byte .. ~300 KiB, spread so that single- and multi-chunk objects both occur.
    digest = hashlib.sha256(key.encode()).digest()
    return 1 + int.from_bytes(digest[:4], "little") % (300 * 1024)


def write(args):
    endpoints = args.endpoints.split(",")
    clients = [client(endpoint) for endpoint in endpoints]
    deadline = time.monotonic() + args.seconds
    acked, failures, lock = [], [], threading.Lock()

    def writer(thread):
        index = 0
        while time.monotonic() < deadline:
            key = f"{args.prefix}t{thread}-{index}"
            node = (thread + index) % len(clients)
            index += 1
            started = time.monotonic()
            try:
                clients[node].put_object(Bucket=BUCKET, Key=key, Body=content(key, size_of(key)))
            except Exception as error:  # noqa: BLE001 - any failure is an unacknowledged write
                with lock:
                    failures.append({"key": key, "node": node, "error": str(error)[:200]})
                time.sleep(0.05)
                continue
            with lock:
                acked.append({"key": key, "node": node, "ms": int((time.monotonic() - started) * 1000)})

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(args.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with open(args.history, "w") as out:
        json.dump({"acked": acked, "failures": failures}, out)
    reasons = {}
    for failure in failures:
        reason = failure["error"].split(":")[0][:80]
        reasons[reason] = reasons.get(reason, 0) + 1
    print(json.dumps({"acked": len(acked), "failed": len(failures), "reasons": reasons}))


def verify(args):
    endpoints = args.endpoints.split(",")
    clients = [client(endpoint) for endpoint in endpoints]
    with open(args.history) as source:
        history = json.load(source)
    bad = []
    for entry in history["acked"]:
        key = entry["key"]
        expected = content(key, size_of(key))
        for node, s3 in enumerate(clients):
            try:
                body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
            except Exception as error:  # noqa: BLE001
                bad.append(f"{key} via node {node}: {str(error)[:200]}")
                continue
            if body != expected:
                bad.append(f"{key} via node {node}: {len(body)} bytes, expected {len(expected)}, differ")
    print(json.dumps({"checked": len(history["acked"]), "endpoints": len(clients), "bad": bad[:20], "bad_count": len(bad)}))
    return 1 if bad else 0


def put(args):
    s3 = client(args.endpoint, read_timeout=args.timeout)
    if args.create_bucket:
        s3.create_bucket(Bucket=BUCKET)
    started = time.monotonic()
    try:
        s3.put_object(Bucket=BUCKET, Key=args.key, Body=content(args.key, args.size))
    except Exception as error:  # noqa: BLE001
        print(json.dumps({"ok": False, "seconds": time.monotonic() - started, "error": str(error)[:300]}))
        return 1
    print(json.dumps({"ok": True, "seconds": time.monotonic() - started}))
    return 0


def get(args):
    s3 = client(args.endpoint)
    body = s3.get_object(Bucket=BUCKET, Key=args.key)["Body"].read()
    same = body == content(args.key, args.size)
    print(json.dumps({"ok": same, "len": len(body)}))
    return 0 if same else 1


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("write")
    w.add_argument("--endpoints", required=True)
    w.add_argument("--seconds", type=float, required=True)
    w.add_argument("--threads", type=int, default=4)
    w.add_argument("--prefix", default="")
    w.add_argument("--history", required=True)
    v = sub.add_parser("verify")
    v.add_argument("--endpoints", required=True)
    v.add_argument("--history", required=True)
    p = sub.add_parser("put")
    p.add_argument("--endpoint", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--timeout", type=float, default=20)
    p.add_argument("--create-bucket", action="store_true")
    g = sub.add_parser("get")
    g.add_argument("--endpoint", required=True)
    g.add_argument("--key", required=True)
    g.add_argument("--size", type=int, required=True)
    args = parser.parse_args()
    handler = {"write": write, "verify": verify, "put": put, "get": get}[args.command]
    sys.exit(handler(args) or 0)


if __name__ == "__main__":
    main()
