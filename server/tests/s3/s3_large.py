"""One large object through boto3, streaming on the client side too (run by s3_memory.rs).

Usage: s3_large.py put BUCKET KEY FILE | get BUCKET KEY  (prints the MD5 of what it sent/got)
"""

import hashlib
import os
import sys

import boto3
from botocore.config import Config

s3 = boto3.client(
    "s3",
    endpoint_url=os.environ["S3_ENDPOINT"],
    config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}, read_timeout=300),
)
action, bucket, key = sys.argv[1:4]
digest = hashlib.md5()
if action == "put":
    with open(sys.argv[4], "rb") as body:
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    with open(sys.argv[4], "rb") as body:
        for block in iter(lambda: body.read(1 << 20), b""):
            digest.update(block)
elif action == "get":
    for block in s3.get_object(Bucket=bucket, Key=key)["Body"].iter_chunks(1 << 20):
        digest.update(block)
print(digest.hexdigest())
