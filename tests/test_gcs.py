"""GCS specifics: differential checks with google-cloud-storage against
fake-gcs-server (keys that need encoding, listings, hashes), resumable
uploads, ranges, bad input, download integrity and retries, resumable
recovery against a scripted server (tests/servers/scripted_gcs.py), and
the Authorization header of a service account.

fake-gcs-server cannot misbehave on request and finalizes a resumable
upload on a status query (see tests/servers/fake_gcs.py), so integrity,
retry and recovery tests run against the scripted loopback server.
Nothing here reaches beyond 127.0.0.1."""
from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import json
import os
import uuid

import pytest

import s3dlio
from s3dlio import gcs_auth, gcs_store
from s3dlio._steps import drive
from s3dlio.uri import parse_uri

crc32c = pytest.importorskip("crc32c")

KiB, MiB = 1 << 10, 1 << 20
CHUNK = 256 * KiB

def _crc_b64(data: bytes) -> str:
    return base64.b64encode(crc32c.crc32c(data).to_bytes(4, "big")).decode()


def _md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


@pytest.fixture
def bucket(fake_gcs) -> str:
    name = f"t-{uuid.uuid4().hex[:12]}"
    s3dlio.create_bucket(f"gs://{name}")
    return name


@pytest.fixture
def sdk(fake_gcs):
    return fake_gcs.storage_client()


@pytest.fixture
def resumable_env(monkeypatch):
    """Objects of 1 MiB and more go up as resumable uploads, in 256 KiB chunks."""
    monkeypatch.setenv("S3DLIO_MULTIPART_THRESHOLD", str(1 * MiB))
    monkeypatch.setenv("S3DLIO_GCS_CHUNK_SIZE", str(CHUNK))
    return monkeypatch


@pytest.fixture
def scripted(monkeypatch):
    """A scripted GCS server that s3dlio talks to instead of fake-gcs-server."""
    from servers.scripted_gcs import ScriptedGcs
    server = ScriptedGcs().start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", server.endpoint)
    monkeypatch.setenv("S3DLIO_GCS_CHUNK_SIZE", str(CHUNK))
    try:
        yield server
    finally:
        server.stop()


def _resumable(uri: str, data: bytes, create_only: bool = False):
    """The resumable upload on its own, without the public put's wrapping."""
    return drive(gcs_store.resumable_steps(parse_uri(uri), data, (), create_only), 16)


# ---- 1. differential with google-cloud-storage -------------------------------

KEYS = ["plain.bin", "dir/sub/deep.bin", "sp ace.bin", "ünïcödé/ключ.bin", "plus+and&eq=.bin",
        "q?hash#pct%20.bin", "pct%2F.bin", "tilde~star*paren(1).bin", "semi;colon,comma.bin",
        "emoji-\U0001F600", "a/b/c/d/e.txt"]


def test_keys_that_need_encoding_round_trip_with_the_sdk(bucket, sdk):
    gcs_bucket = sdk.bucket(bucket)
    for i, key in enumerate(KEYS):
        s3dlio.put(f"gs://{bucket}/{key}", f"ours-{i}".encode())
        assert gcs_bucket.blob(key).download_as_bytes() == f"ours-{i}".encode(), key
        gcs_bucket.blob("theirs/" + key).upload_from_string(f"theirs-{i}".encode())
        assert s3dlio.get(f"gs://{bucket}/theirs/{key}") == f"theirs-{i}".encode(), key
    names = [b.name for b in sdk.list_blobs(bucket)]
    assert len(names) == 2 * len(KEYS)
    assert s3dlio.list(f"gs://{bucket}/") == [f"gs://{bucket}/{n}" for n in names]
    # The gcs:// alias names the same objects.
    assert s3dlio.get(f"gcs://{bucket}/{KEYS[3]}") == b"ours-3"


def _sdk_level(sdk, bucket: str, prefix: str) -> list:
    """One level as s3dlio.list(recursive=False) gives it, from the SDK."""
    blobs = sdk.list_blobs(bucket, prefix=prefix, delimiter="/")
    names = [b.name for b in blobs]  # consuming the pages fills .prefixes
    return sorted(f"gs://{bucket}/{n}" for n in names + sorted(blobs.prefixes))


def test_listings_match_the_sdk(bucket, sdk):
    keys = ["a", "a/1", "a/2/x", "a/2/y", "a2", "b/c/d/e", "b/ü ber/f", "z+%"]
    s3dlio.put_many([(f"gs://{bucket}/{k}", k.encode()) for k in keys], max_in_flight=8)
    everything = [f"gs://{bucket}/{b.name}" for b in sdk.list_blobs(bucket)]
    assert s3dlio.list(f"gs://{bucket}/") == everything == sorted(f"gs://{bucket}/{k}"
                                                                   for k in keys)
    for prefix in ("", "a/", "b/", "b/c/", "b/ü ber/"):
        assert s3dlio.list(f"gs://{bucket}/{prefix}", recursive=False) == _sdk_level(
            sdk, bucket, prefix), prefix
    under_b = [f"gs://{bucket}/{b.name}" for b in sdk.list_blobs(bucket, prefix="b/")]
    assert s3dlio.list(f"gs://{bucket}/b/") == under_b
    # Exact selection: "a" is the object a and the directory a/, never a2.
    assert s3dlio.list(f"gs://{bucket}/a") == [f"gs://{bucket}/{k}"
                                               for k in ("a", "a/1", "a/2/x", "a/2/y")]
    assert s3dlio.list(f"gs://{bucket}/", pattern="a*", recursive=False) == [
        f"gs://{bucket}/a", f"gs://{bucket}/a/", f"gs://{bucket}/a2"]


def test_listing_pages(scripted):
    """Pages of three entries, and page tokens that need URL encoding."""
    scripted.page_size = 3
    keys = ["a", "b", "d/1", "d/2", "d/e/3", "f", "g", "h/4", "i"]
    for k in keys:
        scripted.objects[("b", k)] = k.encode()
    assert s3dlio.list("gs://b/") == [f"gs://b/{k}" for k in keys]
    assert s3dlio.list("gs://b/", recursive=False) == [
        f"gs://b/{k}" for k in ("a", "b", "d/", "f", "g", "h/", "i")]
    assert s3dlio.list("gs://b/d/") == ["gs://b/d/1", "gs://b/d/2", "gs://b/d/e/3"]
    assert scripted.violations == []
    lists = [s for s in scripted.seen if s.kind == "GET other"]
    assert len(lists) == 3 + 3 + 1
    assert all(s.query["maxResults"] == ["1000"] for s in lists)


def test_stat_matches_the_sdk(bucket, sdk):
    ours = os.urandom(1000) + b"tail"
    s3dlio.put(f"gs://{bucket}/ours.json", ours)
    sdk.bucket(bucket).blob("theirs.bin").upload_from_string(b"theirs" * 77)
    for name, data in (("ours.json", ours), ("theirs.bin", b"theirs" * 77)):
        meta = s3dlio.stat(f"gs://{bucket}/{name}")
        blob = sdk.bucket(bucket).get_blob(name)
        assert meta["size"] == blob.size == len(data)
        assert meta["md5"] == blob.md5_hash == _md5_b64(data)
        assert meta["crc32c"] == blob.crc32c == _crc_b64(data)
        assert int(meta["generation"]) == blob.generation
        assert meta["content_type"] == blob.content_type
        assert meta["etag"] == blob.etag
        assert meta["last_modified"].startswith(blob.updated.strftime("%Y-%m-%dT%H:%M:%S"))
    assert s3dlio.stat(f"gs://{bucket}/ours.json")["content_type"] == "application/json"
    stats = s3dlio.stat_many([f"gs://{bucket}/ours.json", f"gs://{bucket}/theirs.bin"])
    assert [m["size"] for m in stats] == [len(ours), 6 * 77]


def test_exists_and_delete(bucket, sdk):
    uri = f"gs://{bucket}/dir/obj"
    assert not s3dlio.exists(uri)
    s3dlio.put(uri, b"x")
    assert s3dlio.exists(uri)
    s3dlio.delete(uri)
    assert not s3dlio.exists(uri)
    assert list(sdk.list_blobs(bucket)) == []


# ---- 2. large uploads: the resumable path -------------------------------------

SIZES = {"odd_tail": 3 * MiB + 12345, "chunk_multiple": 8 * CHUNK}


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
def test_large_put_stores_exactly_the_bytes_given(bucket, sdk, resumable_env, size):
    data = os.urandom(size)
    uri = f"gs://{bucket}/big.bin"
    s3dlio.put(uri, data)
    assert s3dlio.get(uri) == data
    blob = sdk.bucket(bucket).get_blob("big.bin")
    assert blob.size == size
    assert blob.crc32c == _crc_b64(data)
    assert blob.download_as_bytes() == data


def test_put_many_mixes_resumable_and_simple_uploads(bucket, sdk, resumable_env):
    items = [(f"gs://{bucket}/large-{i}", os.urandom(MiB + 1000 * i + 1)) for i in range(3)]
    items += [(f"gs://{bucket}/small-{i}", os.urandom(1000 * i)) for i in range(4)]
    s3dlio.put_many(items, max_in_flight=4)
    for uri, data in items:
        assert s3dlio.get(uri) == data, uri
        name = uri.split("/", 3)[3]
        assert sdk.bucket(bucket).get_blob(name).crc32c == _crc_b64(data), uri


def test_put_async_large(bucket, resumable_env):
    data = os.urandom(2 * MiB + 3)
    uri = f"gs://{bucket}/async.bin"
    asyncio.run(s3dlio.put_async(uri, data))
    assert s3dlio.get(uri) == data


def test_large_put_goes_through_a_resumable_session(scripted, resumable_env):
    data = os.urandom(MiB + 7)
    s3dlio.put("gs://b/big.bin", data)
    kinds = scripted.kinds()
    assert kinds[0] == "start" and kinds[1:] == ["chunk"] * 5, kinds
    assert scripted.objects[("b", "big.bin")] == data
    assert scripted.violations == []


def test_simple_uploads_below_the_threshold(bucket, sdk, resumable_env):
    """Zero bytes, and one byte under the threshold: one multipart POST each."""
    for name, data in (("empty", b""), ("under", os.urandom(MiB - 1000))):
        s3dlio.put(f"gs://{bucket}/{name}", data)
        assert s3dlio.get(f"gs://{bucket}/{name}") == data
        blob = sdk.bucket(bucket).get_blob(name)
        assert (blob.size, blob.crc32c) == (len(data), _crc_b64(data))
    assert s3dlio.stat(f"gs://{bucket}/empty")["size"] == 0
    asyncio.run(s3dlio.put_async(f"gs://{bucket}/empty-async", b""))
    assert s3dlio.get(f"gs://{bucket}/empty-async") == b""


RESUMABLE_SIZES = {"empty": 0, "one_byte": 1, "one_chunk": CHUNK, "chunk_multiple": 4 * CHUNK,
                   "odd_tail": 3 * MiB + 12345}


@pytest.mark.parametrize("size", RESUMABLE_SIZES.values(), ids=RESUMABLE_SIZES.keys())
def test_resumable_protocol_against_fake_gcs(bucket, sdk, resumable_env, size):
    """The resumable steps on their own (the public put wraps the data
    first, see WRAPPED): the object fake-gcs-server assembles is exact."""
    data = os.urandom(size)
    _resumable(f"gs://{bucket}/r.bin", data)
    blob = sdk.bucket(bucket).get_blob("r.bin")
    assert blob.size == size and blob.crc32c == _crc_b64(data)
    assert blob.download_as_bytes() == data
    assert s3dlio.get(f"gs://{bucket}/r.bin") == data


@pytest.mark.parametrize("size", RESUMABLE_SIZES.values(), ids=RESUMABLE_SIZES.keys())
def test_resumable_requests_follow_the_protocol(scripted, size):
    data = os.urandom(size)
    _resumable("gs://b/dir/r b.bin", data)
    assert scripted.objects[("b", "dir/r b.bin")] == data
    assert scripted.violations == []
    seen = scripted.seen
    start = seen[0]
    assert start.kind == "start"
    assert start.headers["x-upload-content-length"] == str(size)
    chunks = seen[1:]
    expected = max(1, -(-size // CHUNK))
    assert len(chunks) == expected
    if size == 0:
        assert chunks[0].content_range == "bytes */0"
    else:
        assert [c.content_range for c in chunks] == [
            f"bytes {o}-{min(o + CHUNK, size) - 1}/{size}" for o in range(0, size, CHUNK)]
    # Only the last chunk carries the whole object's CRC32C.
    assert chunks[-1].headers.get("x-goog-hash") == f"crc32c={_crc_b64(data)}"
    assert all("x-goog-hash" not in c.headers for c in chunks[:-1])


# ---- 3. ranges ----------------------------------------------------------------

def test_get_range(bucket):
    data = bytes(range(256)) * 40 + b"end"
    uri = f"gs://{bucket}/r.bin"
    s3dlio.put(uri, data)
    size = len(data)
    for offset, length in ((0, 1), (0, 10), (5, 300), (1000, 1), (size - 3, 3), (size - 1, 1)):
        assert s3dlio.get_range(uri, offset, length) == data[offset:offset + length]
    for offset in (0, 1, 4095, size - 1):  # to the end
        assert s3dlio.get_range(uri, offset) == data[offset:]
    assert s3dlio.get_range(uri, size - 2, 100) == b"nd"  # shortened at the end
    assert s3dlio.get_range(uri, size) == b""
    assert s3dlio.get_range(uri, size, 5) == b""
    assert s3dlio.get_range(uri, 7, 0) == b""
    for offset in (size + 1, size + 1000):
        with pytest.raises(s3dlio.InvalidRangeError):
            s3dlio.get_range(uri, offset)
        with pytest.raises(s3dlio.InvalidRangeError):
            s3dlio.get_range(uri, offset, 1)
    with pytest.raises(s3dlio.InvalidRangeError):
        s3dlio.get_range(uri, -1, 1)
    with pytest.raises(s3dlio.NotFoundError):
        s3dlio.get_range(f"gs://{bucket}/missing", 0, 1)
    assert asyncio.run(s3dlio.get_range_async(uri, 10, 20)) == data[10:30]
    assert asyncio.run(s3dlio.get_range_async(uri, size)) == b""


def test_get_range_of_an_empty_object_at_offset_zero(bucket):
    uri = f"gs://{bucket}/empty"
    s3dlio.put(uri, b"")
    assert s3dlio.get_range(uri, 0, 0) == b""
    assert s3dlio.get_range(uri, 0) == b""


# ---- 4. bad input -------------------------------------------------------------

def test_missing_objects_and_buckets(bucket):
    for call in (s3dlio.get, s3dlio.stat):
        with pytest.raises(s3dlio.NotFoundError) as info:
            call(f"gs://{bucket}/missing")
        assert isinstance(info.value, FileNotFoundError)
        assert info.value.uri == f"gs://{bucket}/missing"
        assert info.value.http_status == 404
    assert not s3dlio.exists(f"gs://{bucket}/missing")
    with pytest.raises(FileNotFoundError):
        s3dlio.get_into(f"gs://{bucket}/missing", bytearray(10))
    other = f"no-such-bucket-{uuid.uuid4().hex[:8]}"
    for call in (s3dlio.get, s3dlio.stat):
        with pytest.raises(s3dlio.NotFoundError):
            call(f"gs://{other}/k")
    with pytest.raises(s3dlio.NotFoundError):
        s3dlio.list(f"gs://{other}/")
    with pytest.raises(s3dlio.NotFoundError):
        asyncio.run(s3dlio.get_async(f"gs://{bucket}/missing"))
    results = s3dlio.get_many([f"gs://{bucket}/missing"], return_exceptions=True)
    assert isinstance(results[0][1], s3dlio.NotFoundError)


@pytest.mark.parametrize("name", ["AB", "ab", "a", "-ab", "ab-", "a..b", "ab_", "a b",
                                  "192.168.1.1", "x" * 223, "ünï", "a/b"])
def test_invalid_bucket_names(fake_gcs, name):
    for scheme in ("gs", "gcs"):
        with pytest.raises(s3dlio.InvalidArgumentError) as info:
            s3dlio.create_bucket(f"{scheme}://{name}")
        assert isinstance(info.value, ValueError)


def test_delete(bucket, sdk):
    s3dlio.delete(f"gs://{bucket}/never-existed")  # a missing object is fine
    keys = ["run", "run/a", "run/sub/b", "run2", "run2/c", "runner", "other/run/x"]
    s3dlio.put_many([(f"gs://{bucket}/{k}", b"1") for k in keys])
    s3dlio.delete(f"gs://{bucket}/run", recursive=True)
    assert [b.name for b in sdk.list_blobs(bucket)] == ["other/run/x", "run2", "run2/c",
                                                        "runner"]
    s3dlio.delete(f"gs://{bucket}/run2/", recursive=True)  # the directory's contents only
    assert [b.name for b in sdk.list_blobs(bucket)] == ["other/run/x", "run2", "runner"]
    s3dlio.delete(f"gs://{bucket}/nothing/", recursive=True)  # selects nothing: fine
    s3dlio.delete(f"gs://{bucket}/", recursive=True)
    assert list(sdk.list_blobs(bucket)) == []


def test_delete_in_a_missing_bucket_raises(scripted):
    """GCS's replies, as the scripted server gives them (fake-gcs-server
    answers the same 404 for a missing object and a missing bucket)."""
    scripted.buckets.add("b")
    s3dlio.delete("gs://b/never-existed")  # a missing object: fine
    with pytest.raises(s3dlio.NotFoundError):
        s3dlio.delete("gs://no-such-bucket/k")


def test_delete_bucket_that_holds_objects_raises_and_keeps_them(bucket, sdk):
    s3dlio.put(f"gs://{bucket}/keep", b"precious")
    with pytest.raises(s3dlio.S3dlioError):
        s3dlio.delete_bucket(f"gs://{bucket}")
    assert s3dlio.get(f"gs://{bucket}/keep") == b"precious"
    s3dlio.delete(f"gs://{bucket}/keep")
    s3dlio.delete_bucket(f"gs://{bucket}")
    assert sdk.lookup_bucket(bucket) is None
    with pytest.raises(s3dlio.NotFoundError):
        s3dlio.list(f"gs://{bucket}/")


def test_delete_bucket_that_holds_objects_says_not_empty(bucket):
    s3dlio.put(f"gs://{bucket}/keep", b"1")
    with pytest.raises(s3dlio.S3dlioError) as info:
        s3dlio.delete_bucket(f"gs://{bucket}")
    assert info.value.code == "BucketNotEmpty"
    assert not isinstance(info.value, s3dlio.AlreadyExistsError)


def test_create_bucket_that_exists_succeeds(bucket):
    s3dlio.create_bucket(f"gs://{bucket}")
    s3dlio.create_bucket(f"gcs://{bucket}/")


def test_overwrite_false(bucket, sdk):
    uri = f"gs://{bucket}/once"
    s3dlio.put(uri, b"first", overwrite=False)  # a new object: fine
    with pytest.raises(s3dlio.AlreadyExistsError) as info:
        s3dlio.put(uri, b"second", overwrite=False)  # multipart upload: fake-gcs checks it
    assert isinstance(info.value, FileExistsError)
    assert info.value.uri == uri
    assert sdk.bucket(bucket).blob("once").download_as_bytes() == b"first"
    with pytest.raises(s3dlio.AlreadyExistsError):
        asyncio.run(s3dlio.put_async(uri, b"third", overwrite=False))
    s3dlio.put(uri, b"fourth")  # overwrite=True replaces it
    assert s3dlio.get(uri) == b"fourth"


def test_overwrite_false_on_the_resumable_path(scripted):
    """fake-gcs-server ignores ifGenerationMatch on resumable uploads; the
    scripted server enforces it when the session starts, as GCS does."""
    scripted.objects[("b", "k")] = b"first"
    with pytest.raises(s3dlio.AlreadyExistsError):
        _resumable("gs://b/k", os.urandom(MiB), create_only=True)
    assert scripted.objects[("b", "k")] == b"first"
    assert "ifGenerationMatch" in scripted.seen[0].query
    assert scripted.kinds() == ["start"]  # no chunk was sent
    _resumable("gs://b/new", b"x" * 10, create_only=True)
    assert scripted.objects[("b", "new")] == b"x" * 10


def test_overwrite_false_large_put(scripted, resumable_env):
    scripted.objects[("b", "k")] = b"first"
    with pytest.raises(s3dlio.AlreadyExistsError):
        s3dlio.put("gs://b/k", os.urandom(2 * MiB), overwrite=False)
    assert scripted.objects[("b", "k")] == b"first"


# ---- 5. integrity and retries of downloads ------------------------------------

def test_download_with_a_wrong_hash_is_rejected(scripted):
    data = os.urandom(5000)
    scripted.objects[("b", "k")] = data
    assert s3dlio.get("gs://b/k") == data  # a correct hash passes
    assert scripted.kinds() == ["media"]
    scripted.wrong_hash = True
    with pytest.raises(s3dlio.ChecksumMismatchError) as info:
        s3dlio.get("gs://b/k")
    assert info.value.uri == "gs://b/k"
    assert scripted.kinds().count("media") == 1 + 3  # retried, then given up
    with pytest.raises(s3dlio.ChecksumMismatchError):
        s3dlio.get_into("gs://b/k", bytearray(len(data)))
    with pytest.raises(s3dlio.ChecksumMismatchError):
        asyncio.run(s3dlio.get_async("gs://b/k"))
    scripted.wrong_hash = False
    assert s3dlio.get("gs://b/k") == data


def test_corrupted_body_from_fake_gcs_is_rejected(bucket):
    """A proxy in front of fake-gcs-server flips body bytes and keeps the
    server's x-goog-hash."""
    from servers.chaos_proxy import Fault, start
    data = os.urandom(10000)
    s3dlio.put(f"gs://{bucket}/k", data)
    proxy = start(os.environ["STORAGE_EMULATOR_HOST"])
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("STORAGE_EMULATOR_HOST", proxy.url)
            proxy.script([Fault.corrupt()] * 3)
            with pytest.raises(s3dlio.ChecksumMismatchError):
                s3dlio.get(f"gs://{bucket}/k")
            assert proxy.count == 3
            proxy.script([Fault.corrupt()])  # once: the retry gets good bytes
            assert s3dlio.get(f"gs://{bucket}/k") == data
    finally:
        proxy.stop()


@pytest.mark.parametrize("fault", [503, 500, "reset"])
def test_download_retried_after_a_transient_failure(scripted, fault):
    data = os.urandom(70000)
    scripted.objects[("b", "k")] = data
    scripted.media_faults.append(fault)
    assert s3dlio.get("gs://b/k") == data
    assert scripted.kinds() == ["media", "media"]


def test_download_gives_up_after_the_attempts(scripted):
    scripted.objects[("b", "k")] = b"data"
    scripted.media_faults.extend([500] * 10)
    with pytest.raises(s3dlio.S3dlioError) as info:
        s3dlio.get("gs://b/k")
    assert info.value.http_status == 500
    assert scripted.kinds().count("media") == 3


# ---- 6. resumable recovery ------------------------------------------------------

def _fail_at(offset: int, times: int, kind: str = "reset", status: int = 503):
    """A chunk script: the chunk starting at ``offset`` fails ``times`` times."""
    from servers.scripted_gcs import Chunk
    failures = []

    def script(index: int, start: int) -> Chunk:
        if start == offset and len(failures) < times:
            failures.append(index)
            return Chunk(kind, status=status)
        return Chunk()
    return script


def _chunk_starts(server) -> list:
    return [int(s.content_range.split()[1].split("-")[0]) for s in server.seen
            if s.kind == "chunk"]


@pytest.mark.parametrize("kind,status", [("reset", 0), ("status", 500), ("status", 503)])
@pytest.mark.parametrize("times", [1, 3])
def test_failing_chunk_recovers_from_the_session(scripted, kind, status, times):
    data = os.urandom(4 * CHUNK + 999)
    # A chunk gets one attempt; after each failure the session is asked
    # how much it holds, and the upload goes on from there.
    scripted.chunk_script = _fail_at(CHUNK, times, kind, status)
    _resumable("gs://b/k", data)
    assert scripted.objects[("b", "k")] == data
    assert scripted.violations == []
    assert scripted.kinds().count("status") == times
    assert _chunk_starts(scripted) == [0] + [CHUNK] * (times + 1) + [2 * CHUNK, 3 * CHUNK,
                                                                      4 * CHUNK]


def test_chunk_stored_but_its_reply_lost(scripted):
    from servers.scripted_gcs import Chunk
    data = os.urandom(3 * CHUNK + 5)
    scripted.chunk_script = lambda index, start: Chunk("stored_reset" if index == 1 else "ok")
    _resumable("gs://b/k", data)
    assert scripted.objects[("b", "k")] == data
    assert scripted.violations == []


def test_server_persisting_part_of_a_chunk(scripted, monkeypatch):
    from servers.scripted_gcs import Chunk
    monkeypatch.setenv("S3DLIO_GCS_CHUNK_SIZE", str(2 * CHUNK))
    data = os.urandom(5 * CHUNK + 77)
    scripted.chunk_script = lambda index, start: Chunk("partial", keep=CHUNK) if index in (
        0, 2) else Chunk()
    _resumable("gs://b/k", data)
    assert scripted.objects[("b", "k")] == data
    assert scripted.violations == []
    # 0-512K keeps 256K; resent from 256K; 768K-1280K keeps 256K; from 1024K.
    assert _chunk_starts(scripted) == [0, CHUNK, 3 * CHUNK, 4 * CHUNK]


def test_last_chunk_completed_but_every_reply_lost(scripted):
    from servers.scripted_gcs import Chunk
    data = os.urandom(2 * CHUNK + 3)
    scripted.chunk_script = lambda index, start: Chunk(
        "stored_reset" if start == 2 * CHUNK else "ok")
    _resumable("gs://b/k", data)
    assert scripted.objects[("b", "k")] == data
    assert scripted.kinds().count("status") == 1  # which said 200: done
    assert scripted.violations == []


def test_recovery_is_bounded(scripted):
    from servers.scripted_gcs import Chunk
    scripted.chunk_script = lambda index, start: Chunk("status", status=500) if start else Chunk()
    with pytest.raises(s3dlio.StorageIOError) as info:
        _resumable("gs://b/k", os.urandom(2 * CHUNK))
    assert info.value.http_status == 500
    kinds = scripted.kinds()
    assert kinds.count("status") == 5  # five recoveries, then the error
    assert kinds.count("chunk") == 1 + 6  # the first chunk, then six tries of the second
    assert ("b", "k") not in scripted.objects


def test_large_put_recovers_through_the_public_api(scripted, resumable_env):
    data = os.urandom(MiB + 4321)
    scripted.chunk_script = _fail_at(2 * CHUNK, 3)
    s3dlio.put("gs://b/k", data)
    assert scripted.objects[("b", "k")] == data
    assert scripted.kinds().count("status") == 3


# ---- 7. Authorization with a service account -----------------------------------

def test_service_account_token_is_sent(scripted, monkeypatch, tmp_path):
    """Outside emulator mode s3dlio always talks to storage.googleapis.com
    (gcs_auth.load has no endpoint override but STORAGE_EMULATOR_HOST, which
    turns authorization off).  So the config is loaded from a real key file
    without the emulator variable, then aimed at the scripted server; the
    emulator variable stays set too, so if the substitution failed requests
    would still go to loopback, unauthorized, and the test would fail."""
    pytest.importorskip("cryptography")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from servers import gcs_token
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token_server = gcs_token.start()
    try:
        email = "loader@test-project.iam.gserviceaccount.com"
        token_server.state.public_key = key.public_key()
        token_server.state.client_email = email
        key_file = tmp_path / "sa.json"
        key_file.write_text(json.dumps({
            "type": "service_account", "project_id": "test-project", "private_key_id": "k1",
            "private_key": key.private_bytes(serialization.Encoding.PEM,
                                             serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()).decode(),
            "client_email": email, "token_uri": token_server.state.token_url}))
        loaded = gcs_auth.load({"GOOGLE_APPLICATION_CREDENTIALS": str(key_file),
                                "HOME": str(tmp_path)})
        assert not loaded.emulator and loaded.credentials_kind == "service_account"
        config = dataclasses.replace(loaded, endpoint=scripted.endpoint)
        monkeypatch.setattr(gcs_auth, "current", lambda: config)
        assert gcs_store.current().config is config

        scripted.objects[("b", "k")] = b"secret data"
        assert s3dlio.get("gs://b/k") == b"secret data"
        s3dlio.put("gs://b/new", b"up")
        assert s3dlio.stat("gs://b/new")["size"] == 2
        assert scripted.objects[("b", "new")] == b"up"
        auth = [s.headers.get("authorization") for s in scripted.seen]
        assert auth == ["Bearer sa-1"] * 3
        assert token_server.state.rejections == []
        assert token_server.state.issued == 1  # cached
    finally:
        token_server.stop()


# ---- streaming writer: chunks of unknown total, recovered through the session --

@pytest.mark.parametrize("kind,status", [("reset", 0), ("status", 503)])
def test_streaming_writer_recovers_a_failed_chunk(scripted, kind, status):
    data = os.urandom(3 * CHUNK + 4321)
    scripted.chunk_script = _fail_at(CHUNK, 2, kind, status)
    options = s3dlio.PyWriterOptions(chunk_size=CHUNK, max_in_flight=2)
    with s3dlio.create_gcs_writer("gs://b/streamed", options) as writer:
        for start in range(0, len(data), 100_000):
            writer.write(data[start:start + 100_000])
    assert scripted.objects[("b", "streamed")] == data
    assert scripted.violations == []
    assert scripted.kinds().count("status") == 2


def test_streaming_writer_resends_what_the_session_lacks(scripted):
    from servers.scripted_gcs import Chunk
    data = os.urandom(4 * CHUNK + 17)
    scripted.chunk_script = lambda index, start: Chunk("partial", keep=CHUNK // 2) \
        if index == 1 else Chunk()
    with s3dlio.create_gcs_writer("gs://b/partial",
                                  s3dlio.PyWriterOptions(chunk_size=CHUNK)) as writer:
        writer.write(data)
    assert scripted.objects[("b", "partial")] == data
    assert scripted.violations == []
