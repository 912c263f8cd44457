"""S3 semantics of the Kiseki gateway as boto3 sees them: buckets, listing v1/v2 with every
parameter, ranges, conditional requests, copy, metadata, DeleteObjects, multipart uploads,
error codes and authentication. Run by server/tests/s3_protocol.rs against a fresh server.

Usage: s3_protocol.py main | restart-prepare STATE_FILE | restart-resume STATE_FILE
Environment: S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION.
"""

import hashlib
import json
import sys
import time
import urllib.error
import urllib.request

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.exceptions import ClientError
import os

ENDPOINT = os.environ["S3_ENDPOINT"]
CONFIG = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}, connect_timeout=10, read_timeout=60)


def client(**credentials):
    return boto3.client("s3", endpoint_url=ENDPOINT, config=CONFIG, **credentials)


s3 = client()
MIB = 1024 * 1024


def error_of(call, *args, **kwargs):
    try:
        call(*args, **kwargs)
    except ClientError as error:
        return error.response["Error"]["Code"], error.response["ResponseMetadata"]["HTTPStatusCode"]
    raise AssertionError(f"{call.__name__} succeeded but should have failed")


def expect(actual, expected, what):
    if actual != expected:
        raise AssertionError(f"{what}: expected {expected!r}, got {actual!r}")


def md5(data):
    return hashlib.md5(data).hexdigest()


def keys_v2(bucket, **kwargs):
    response = s3.list_objects_v2(Bucket=bucket, **kwargs)
    return [o["Key"] for o in response.get("Contents", [])], [p["Prefix"] for p in response.get("CommonPrefixes", [])], response


def buckets():
    s3.create_bucket(Bucket="proto")
    expect(error_of(s3.create_bucket, Bucket="proto"), ("BucketAlreadyOwnedByYou", 409), "create twice")
    s3.head_bucket(Bucket="proto")
    expect(error_of(s3.head_bucket, Bucket="missing-bucket"), ("404", 404), "head missing bucket")
    expect(s3.get_bucket_location(Bucket="proto").get("LocationConstraint"), None, "location")
    expect("proto" in [b["Name"] for b in s3.list_buckets()["Buckets"]], True, "bucket listed")
    expect(error_of(s3.list_objects_v2, Bucket="missing-bucket"), ("NoSuchBucket", 404), "list missing bucket")
    expect(error_of(s3.put_object, Bucket="missing-bucket", Key="k", Body=b"x"), ("NoSuchBucket", 404), "put into missing bucket")


KEYS = [
    "photos/2024/jan/x.jpg",
    "photos/2024/feb/y.jpg",
    "photos/2025/z.jpg",
    "docs/readme.md",
    "docs/a b.txt",
    "docs/plus+sign.txt",
    "docs/percent%41.txt",
    "docs/ünï.txt",
    "top.txt",
    "top-level.txt",
    "top0.txt",
]


def listing():
    for key in KEYS:
        s3.put_object(Bucket="proto", Key=key, Body=key.encode())
    every = sorted(KEYS, key=lambda k: k.encode())
    keys, prefixes, _ = keys_v2("proto")
    expect(keys, every, "v2 without delimiter (S3 order)")
    keys, prefixes, _ = keys_v2("proto", Delimiter="/")
    expect((keys, prefixes), (["top-level.txt", "top.txt", "top0.txt"], ["docs/", "photos/"]), "v2 delimiter /")
    keys, prefixes, _ = keys_v2("proto", Prefix="photos/2024/", Delimiter="/")
    expect((keys, prefixes), ([], ["photos/2024/feb/", "photos/2024/jan/"]), "v2 prefix + delimiter")
    keys, prefixes, _ = keys_v2("proto", Prefix="photos/", Delimiter="24/")
    expect((keys, prefixes), (["photos/2025/z.jpg"], ["photos/2024/"]), "multi-character delimiter")
    keys, prefixes, _ = keys_v2("proto", Prefix="top", Delimiter="")
    expect((keys, prefixes), (["top-level.txt", "top.txt", "top0.txt"], []), "empty delimiter")
    keys, _, _ = keys_v2("proto", StartAfter="docs/z")
    expect(keys, [k for k in every if k.encode() > b"docs/z"], "start-after")
    keys, _, response = keys_v2("proto", MaxKeys=0)
    expect((keys, response["KeyCount"], response["IsTruncated"]), ([], 0, False), "max-keys 0")

    # v2 pagination, with and without a delimiter.
    for delimiter, wanted in [("", every), ("/", ["docs/", "photos/", "top-level.txt", "top.txt", "top0.txt"])]:
        seen, token = [], None
        while True:
            kwargs = {"MaxKeys": 2, "Delimiter": delimiter}
            if token:
                kwargs["ContinuationToken"] = token
            response = s3.list_objects_v2(Bucket="proto", **kwargs)
            page = [o["Key"] for o in response.get("Contents", [])] + [p["Prefix"] for p in response.get("CommonPrefixes", [])]
            expect(response["KeyCount"], len(page), "KeyCount")
            if len(page) > 2:
                raise AssertionError(f"page of {len(page)} entries with MaxKeys=2")
            seen += sorted(page, key=lambda k: k.encode())
            if not response["IsTruncated"]:
                break
            token = response["NextContinuationToken"]
        expect(seen, wanted, f"v2 pages (delimiter {delimiter!r})")
    expect(error_of(s3.list_objects_v2, Bucket="proto", ContinuationToken="not-a-token"), ("InvalidArgument", 400), "bad token")

    # v1 pagination with Marker / NextMarker.
    seen, marker = [], ""
    while True:
        response = s3.list_objects(Bucket="proto", MaxKeys=3, Marker=marker)
        seen += [o["Key"] for o in response.get("Contents", [])]
        if not response["IsTruncated"]:
            break
        marker = response["NextMarker"]
    expect(seen, every, "v1 pages")
    response = s3.list_objects(Bucket="proto", Delimiter="/", Prefix="photos/")
    expect([p["Prefix"] for p in response["CommonPrefixes"]], ["photos/2024/", "photos/2025/"], "v1 delimiter")

    # encoding-type=url, undecoded (boto3 decodes only when it chose the encoding itself).
    response = s3.list_objects_v2(Bucket="proto", Prefix="docs/", EncodingType="url")
    expect(
        [o["Key"] for o in response["Contents"]],
        ["docs/a%20b.txt", "docs/percent%2541.txt", "docs/plus%2Bsign.txt", "docs/readme.md", "docs/%C3%BCn%C3%AF.txt"],
        "url-encoded keys",
    )
    response = s3.list_objects(Bucket="proto", Prefix="docs/", EncodingType="url")
    expect(response["Contents"][0]["Key"], "docs/a%20b.txt", "v1 url-encoded keys")
    for key in KEYS:
        expect(s3.get_object(Bucket="proto", Key=key)["Body"].read(), key.encode(), f"GET {key!r}")


def objects():
    body = b"0123456789abcdef"
    put = s3.put_object(
        Bucket="proto",
        Key="obj/data.bin",
        Body=body,
        Metadata={"color": "blue", "owner": "ann"},
        ContentType="application/x-test",
        ContentEncoding="identity",
        ContentDisposition="attachment; filename=data.bin",
        CacheControl="no-cache",
    )
    etag = put["ETag"]
    expect(etag, f'"{md5(body)}"', "PUT ETag is the MD5")
    head = s3.head_object(Bucket="proto", Key="obj/data.bin")
    expect(
        (head["ContentLength"], head["ETag"], head["Metadata"], head["ContentType"], head["ContentDisposition"], head["CacheControl"]),
        (16, etag, {"color": "blue", "owner": "ann"}, "application/x-test", "attachment; filename=data.bin", "no-cache"),
        "HEAD",
    )
    get = lambda **kw: s3.get_object(Bucket="proto", Key="obj/data.bin", **kw)
    ranged = get(Range="bytes=2-5")
    expect((ranged["Body"].read(), ranged["ContentRange"], ranged["ResponseMetadata"]["HTTPStatusCode"]), (b"2345", "bytes 2-5/16", 206), "range")
    expect(get(Range="bytes=10-")["Body"].read(), body[10:], "open range")
    expect(get(Range="bytes=-3")["Body"].read(), body[-3:], "suffix range")
    expect(get(Range="bytes=14-100")["Body"].read(), body[14:], "range past the end is clipped")
    expect(error_of(get, Range="bytes=16-20"), ("InvalidRange", 416), "unsatisfiable range")

    expect(get(IfMatch=etag)["Body"].read(), body, "If-Match")
    expect(error_of(get, IfMatch='"0000"'), ("PreconditionFailed", 412), "If-Match mismatch")
    expect(error_of(get, IfNoneMatch=etag), ("304", 304), "If-None-Match")
    expect(get(IfNoneMatch='"0000"')["Body"].read(), body, "If-None-Match mismatch")
    future, past = time.time() + 3600, time.time() - 3600
    expect(error_of(get, IfModifiedSince=future), ("304", 304), "If-Modified-Since (future)")
    expect(get(IfModifiedSince=past)["Body"].read(), body, "If-Modified-Since (past)")
    expect(error_of(get, IfUnmodifiedSince=past), ("PreconditionFailed", 412), "If-Unmodified-Since (past)")
    expect(get(IfMatch=etag, IfUnmodifiedSince=past)["Body"].read(), body, "If-Match wins over If-Unmodified-Since")
    expect(error_of(s3.head_object, Bucket="proto", Key="obj/data.bin", IfNoneMatch=etag), ("304", 304), "HEAD If-None-Match")

    expect(error_of(s3.put_object, Bucket="proto", Key="obj/data.bin", Body=b"x", IfNoneMatch="*"), ("PreconditionFailed", 412), "conditional create of existing key")
    s3.put_object(Bucket="proto", Key="obj/new.bin", Body=b"new", IfNoneMatch="*")
    expect(error_of(s3.put_object, Bucket="proto", Key="obj/new.bin", Body=b"y", IfMatch='"0000"'), ("PreconditionFailed", 412), "If-Match write mismatch")
    s3.put_object(Bucket="proto", Key="obj/new.bin", Body=b"newer", IfMatch=f'"{md5(b"new")}"')
    expect(s3.get_object(Bucket="proto", Key="obj/new.bin")["Body"].read(), b"newer", "If-Match write")

    expect(error_of(s3.get_object, Bucket="proto", Key="obj/missing"), ("NoSuchKey", 404), "missing key")
    expect(error_of(s3.get_object, Bucket="proto", Key="obj"), ("NoSuchKey", 404), "a directory is not an object")
    s3.delete_object(Bucket="proto", Key="obj/missing")
    s3.put_object(Bucket="proto", Key="obj/empty", Body=b"")
    expect(s3.get_object(Bucket="proto", Key="obj/empty")["Body"].read(), b"", "empty object")
    expect(s3.head_object(Bucket="proto", Key="obj/empty")["ETag"], f'"{md5(b"")}"', "empty ETag")
    s3.put_object(Bucket="proto", Key="folder/", Body=b"")
    expect(s3.head_object(Bucket="proto", Key="folder/")["ContentLength"], 0, "directory marker")
    expect(error_of(s3.put_object, Bucket="proto", Key="obj/data.bin/under", Body=b"x"), ("InvalidArgument", 400), "key under a file")
    expect(error_of(s3.put_object, Bucket="proto", Key="a//b", Body=b"x"), ("InvalidArgument", 400), "empty key component")
    expect(error_of(s3.put_object, Bucket="proto", Key="k", Body=b"x", ContentMD5="AAAAAAAAAAAAAAAAAAAAAA=="), ("BadDigest", 400), "Content-MD5")

    # Copy: COPY keeps metadata, REPLACE replaces it; bytes are shared, ETag kept.
    copied = s3.copy_object(Bucket="proto", Key="obj/copy.bin", CopySource={"Bucket": "proto", "Key": "obj/data.bin"})
    expect(copied["CopyObjectResult"]["ETag"], etag, "copy ETag")
    head = s3.head_object(Bucket="proto", Key="obj/copy.bin")
    expect((head["Metadata"], head["ContentType"]), ({"color": "blue", "owner": "ann"}, "application/x-test"), "COPY metadata")
    s3.copy_object(
        Bucket="proto",
        Key="obj/copy.bin",
        CopySource={"Bucket": "proto", "Key": "obj/data.bin"},
        MetadataDirective="REPLACE",
        Metadata={"color": "red"},
        ContentType="text/plain",
    )
    head = s3.head_object(Bucket="proto", Key="obj/copy.bin")
    expect((head["Metadata"], head["ContentType"]), ({"color": "red"}, "text/plain"), "REPLACE metadata")
    expect(s3.get_object(Bucket="proto", Key="obj/copy.bin")["Body"].read(), body, "copied bytes")
    expect(
        error_of(s3.copy_object, Bucket="proto", Key="obj/data.bin", CopySource={"Bucket": "proto", "Key": "obj/data.bin"}),
        ("InvalidRequest", 400),
        "copy onto itself without REPLACE",
    )
    expect(
        error_of(s3.copy_object, Bucket="proto", Key="obj/c2", CopySource={"Bucket": "proto", "Key": "obj/data.bin"}, CopySourceIfMatch='"0"'),
        ("PreconditionFailed", 412),
        "copy-source-if-match",
    )
    expect(error_of(s3.copy_object, Bucket="proto", Key="obj/c3", CopySource={"Bucket": "proto", "Key": "obj/none"}), ("NoSuchKey", 404), "copy of missing key")

    # DeleteObjects, verbose and quiet.
    for key in ["del/1", "del/2", "del/3"]:
        s3.put_object(Bucket="proto", Key=key, Body=b"d")
    response = s3.delete_objects(Bucket="proto", Delete={"Objects": [{"Key": "del/1"}, {"Key": "del/2"}, {"Key": "del/none"}]})
    expect(sorted(d["Key"] for d in response["Deleted"]), ["del/1", "del/2", "del/none"], "DeleteObjects")
    expect(response.get("Errors", []), [], "DeleteObjects errors")
    response = s3.delete_objects(Bucket="proto", Delete={"Objects": [{"Key": "del/3"}], "Quiet": True})
    expect(response.get("Deleted", []), [], "quiet DeleteObjects")
    keys, prefixes, _ = keys_v2("proto", Prefix="del")
    expect((keys, prefixes), ([], []), "deleted keys and their empty prefix are gone")
    expect(error_of(s3.delete_bucket, Bucket="proto"), ("BucketNotEmpty", 409), "delete non-empty bucket")


def multipart():
    part1, part2, part3 = b"a" * (5 * MIB), b"b" * (5 * MIB), b"c" * 1024
    upload = s3.create_multipart_upload(Bucket="proto", Key="mp/object.bin", ContentType="application/x-mp", Metadata={"kind": "mp"})
    upload_id = upload["UploadId"]
    etags = [s3.upload_part(Bucket="proto", Key="mp/object.bin", UploadId=upload_id, PartNumber=n, Body=b)["ETag"] for n, b in [(1, part1), (2, part2), (3, part3)]]
    expect(etags, [f'"{md5(p)}"' for p in (part1, part2, part3)], "part ETags")
    parts = s3.list_parts(Bucket="proto", Key="mp/object.bin", UploadId=upload_id)["Parts"]
    expect([(p["PartNumber"], p["Size"], p["ETag"]) for p in parts], [(1, 5 * MIB, etags[0]), (2, 5 * MIB, etags[1]), (3, 1024, etags[2])], "ListParts")
    page = s3.list_parts(Bucket="proto", Key="mp/object.bin", UploadId=upload_id, MaxParts=2)
    expect((len(page["Parts"]), page["IsTruncated"], page["NextPartNumberMarker"]), (2, True, 2), "ListParts page")
    page = s3.list_parts(Bucket="proto", Key="mp/object.bin", UploadId=upload_id, PartNumberMarker=2)
    expect([p["PartNumber"] for p in page["Parts"]], [3], "ListParts after marker")
    uploads = s3.list_multipart_uploads(Bucket="proto")["Uploads"]
    expect([(u["Key"], u["UploadId"]) for u in uploads], [("mp/object.bin", upload_id)], "ListMultipartUploads")
    expect(s3.list_multipart_uploads(Bucket="proto", Prefix="zzz").get("Uploads", []), [], "ListMultipartUploads prefix")

    complete = lambda parts: s3.complete_multipart_upload(Bucket="proto", Key="mp/object.bin", UploadId=upload_id, MultipartUpload={"Parts": parts})
    listed = [{"PartNumber": n, "ETag": e} for n, e in zip([1, 2, 3], etags)]
    expect(error_of(complete, [listed[1], listed[0], listed[2]]), ("InvalidPartOrder", 400), "parts out of order")
    expect(error_of(complete, [listed[0], {"PartNumber": 2, "ETag": '"00000000000000000000000000000000"'}]), ("InvalidPart", 400), "wrong part ETag")
    expect(error_of(complete, [listed[0], {"PartNumber": 9, "ETag": etags[0]}]), ("InvalidPart", 400), "missing part")
    done = complete(listed)
    expected_etag = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in (part1, part2, part3))).hexdigest() + "-3"
    expect(done["ETag"], f'"{expected_etag}"', "multipart ETag")
    whole = s3.get_object(Bucket="proto", Key="mp/object.bin")
    expect((whole["Body"].read() == part1 + part2 + part3, whole["ContentType"], whole["Metadata"]), (True, "application/x-mp", {"kind": "mp"}), "completed object")
    expect(s3.head_object(Bucket="proto", Key="mp/object.bin", PartNumber=1)["ContentLength"] > 0, True, "HEAD of a multipart object")
    expect(s3.list_multipart_uploads(Bucket="proto").get("Uploads", []), [], "completed upload is gone")
    expect(error_of(s3.list_parts, Bucket="proto", Key="mp/object.bin", UploadId=upload_id), ("NoSuchUpload", 404), "ListParts after completion")

    # A small part that is not the last is refused.
    small = s3.create_multipart_upload(Bucket="proto", Key="mp/small.bin")["UploadId"]
    e1 = s3.upload_part(Bucket="proto", Key="mp/small.bin", UploadId=small, PartNumber=1, Body=b"tiny")["ETag"]
    e2 = s3.upload_part(Bucket="proto", Key="mp/small.bin", UploadId=small, PartNumber=2, Body=b"tail")["ETag"]
    expect(
        error_of(s3.complete_multipart_upload, Bucket="proto", Key="mp/small.bin", UploadId=small, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]}),
        ("EntityTooSmall", 400),
        "EntityTooSmall",
    )
    s3.abort_multipart_upload(Bucket="proto", Key="mp/small.bin", UploadId=small)
    expect(error_of(s3.abort_multipart_upload, Bucket="proto", Key="mp/small.bin", UploadId=small), ("NoSuchUpload", 404), "abort twice")
    expect(error_of(s3.upload_part, Bucket="proto", Key="mp/small.bin", UploadId="nope", PartNumber=1, Body=b"x"), ("NoSuchUpload", 404), "part of a missing upload")
    expect(error_of(s3.head_object, Bucket="proto", Key="mp/small.bin"), ("404", 404), "aborted upload left no object")

    # UploadPartCopy: a range of an existing object becomes a part without copying bytes.
    copy_id = s3.create_multipart_upload(Bucket="proto", Key="mp/copied.bin")["UploadId"]
    first = s3.upload_part_copy(Bucket="proto", Key="mp/copied.bin", UploadId=copy_id, PartNumber=1, CopySource={"Bucket": "proto", "Key": "mp/object.bin"}, CopySourceRange=f"bytes=0-{5 * MIB + 9}")
    expect(first["CopyPartResult"]["ETag"], f'"{md5((part1 + part2)[: 5 * MIB + 10])}"', "UploadPartCopy ETag")
    second = s3.upload_part(Bucket="proto", Key="mp/copied.bin", UploadId=copy_id, PartNumber=2, Body=b"end")
    s3.complete_multipart_upload(
        Bucket="proto",
        Key="mp/copied.bin",
        UploadId=copy_id,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": first["CopyPartResult"]["ETag"]}, {"PartNumber": 2, "ETag": second["ETag"]}]},
    )
    expect(s3.get_object(Bucket="proto", Key="mp/copied.bin")["Body"].read() == (part1 + part2)[: 5 * MIB + 10] + b"end", True, "UploadPartCopy content")


def signed_raw(method, path, body, query=""):
    session = boto3.session.Session()
    url = f"{ENDPOINT}{path}{'?' + query if query else ''}"
    request = AWSRequest(method=method, url=url, data=body, headers={"x-amz-content-sha256": hashlib.sha256(body).hexdigest()})
    SigV4Auth(session.get_credentials(), "s3", "us-east-1").add_auth(request)
    prepared = urllib.request.Request(url, data=body, method=method, headers=dict(request.headers))
    try:
        with urllib.request.urlopen(prepared, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def authentication():
    forged = client(aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"], aws_secret_access_key="x" * 40)
    expect(error_of(forged.list_buckets), ("SignatureDoesNotMatch", 403), "wrong secret")
    unknown = client(aws_access_key_id="KSKNOSUCHKEY00000000", aws_secret_access_key="x" * 40)
    expect(error_of(unknown.list_buckets)[1], 403, "unknown access key")
    try:
        urllib.request.urlopen(f"{ENDPOINT}/proto/obj/data.bin", timeout=30)
        raise AssertionError("unsigned GET succeeded")
    except urllib.error.HTTPError as error:
        expect((error.code, b"<Code>AccessDenied</Code>" in error.read()), (403, True), "unsigned GET")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": "proto", "Key": "obj/data.bin"}, ExpiresIn=300)
    with urllib.request.urlopen(url, timeout=30) as response:
        expect(response.read(), b"0123456789abcdef", "presigned GET")
    expired = s3.generate_presigned_url("get_object", Params={"Bucket": "proto", "Key": "obj/data.bin"}, ExpiresIn=1)
    time.sleep(2)
    try:
        urllib.request.urlopen(expired, timeout=30)
        raise AssertionError("expired presigned GET succeeded")
    except urllib.error.HTTPError as error:
        expect(error.code, 403, "expired presigned GET")
    status, body = signed_raw("POST", "/proto", b"<Delete><Object><Key>x</Key>", "delete=")
    expect((status, b"MalformedXML" in body), (400, True), f"malformed XML ({body[:200]!r})")
    status, body = signed_raw("POST", "/proto", b"\x00\xff" * 100, "delete=")
    expect(status, 400, "binary garbage as XML")
    s3.head_bucket(Bucket="proto")


def restart_prepare(state_file):
    s3.create_bucket(Bucket="restart")
    upload_id = s3.create_multipart_upload(Bucket="restart", Key="big/object")["UploadId"]
    parts = []
    for number, byte in [(1, b"x"), (2, b"y")]:
        etag = s3.upload_part(Bucket="restart", Key="big/object", UploadId=upload_id, PartNumber=number, Body=byte * (5 * MIB))["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
    with open(state_file, "w") as f:
        json.dump({"upload_id": upload_id, "parts": parts}, f)


def restart_resume(state_file):
    with open(state_file) as f:
        state = json.load(f)
    uploads = s3.list_multipart_uploads(Bucket="restart")["Uploads"]
    expect([(u["Key"], u["UploadId"]) for u in uploads], [("big/object", state["upload_id"])], "upload survives a restart")
    parts = s3.list_parts(Bucket="restart", Key="big/object", UploadId=state["upload_id"])["Parts"]
    expect([(p["PartNumber"], p["ETag"]) for p in parts], [(p["PartNumber"], p["ETag"]) for p in state["parts"]], "parts survive a restart")
    s3.complete_multipart_upload(Bucket="restart", Key="big/object", UploadId=state["upload_id"], MultipartUpload={"Parts": state["parts"]})
    data = s3.get_object(Bucket="restart", Key="big/object")["Body"].read()
    expect(data == b"x" * (5 * MIB) + b"y" * (5 * MIB), True, "completed after restart")


if __name__ == "__main__":
    phase = sys.argv[1]
    if phase == "main":
        for step in (buckets, listing, objects, multipart, authentication):
            step()
            print(f"ok {step.__name__}", flush=True)
    elif phase == "restart-prepare":
        restart_prepare(sys.argv[2])
    elif phase == "restart-resume":
        restart_resume(sys.argv[2])
    else:
        raise SystemExit(f"unknown phase {phase}")
