"""Azure Blob specifics against Azurite (SharedKey and SAS always checked):
differential checks with azure-storage-blob, credentials, block uploads,
ranges, bad input, and a scripted server for faults Azurite cannot produce
(a wrong Content-MD5, 503 ServerBusy, 500 on every try)."""
from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import os
import uuid
from dataclasses import dataclass

import pytest

import s3dlio
from s3dlio import azure_auth

ACCOUNT = "devstoreaccount1"
AZURE_ENV = ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCOUNT", "AZURE_STORAGE_KEY",
             "AZURE_STORAGE_SAS_TOKEN", "S3DLIO_AZURE_SAS_TOKEN", "AZURE_STORAGE_ENDPOINT",
             "AZURE_BLOB_ENDPOINT_URL")


@dataclass
class Container:
    name: str
    client: object  # azure.storage.blob.ContainerClient

    @property
    def uri(self) -> str:
        return f"az://{ACCOUNT}/{self.name}"

    def blob(self, key: str) -> str:
        return f"{self.uri}/{key}"

    def sdk_read(self, key: str) -> bytes:
        return self.client.download_blob(key).readall()


@pytest.fixture
def env(monkeypatch):
    """Changes to os.environ made by a test, undone afterwards."""
    return monkeypatch


@pytest.fixture
def container(azurite):
    name = f"t-{uuid.uuid4().hex[:12]}"
    s3dlio.create_bucket(f"az://{ACCOUNT}/{name}")
    return Container(name, azurite.service_client().get_container_client(name))


@pytest.fixture
def blocks(env):
    """Blobs of 1 MiB and more go up as 256 KiB blocks."""
    env.setenv("S3DLIO_MULTIPART_THRESHOLD", str(1 << 20))
    env.setenv("S3DLIO_AZURE_BLOCK_SIZE", str(256 << 10))
    return 256 << 10


def _md5(data: bytes) -> bytes:
    return hashlib.md5(data).digest()


# ---- 1. differential with azure-storage-blob ---------------------------------

NAMES = ["plain.bin", "sp ace.bin", "ünïcödé/ключ.bin", "plus+and&eq=.bin", "pct%20and%2F.bin",
         "hash#frag.bin", "q?uery=1&x=2.bin", "semi;colon,comma.bin", "tilde~star*paren(1).bin",
         "nested/a/b/c/d.txt", "emoji-\U0001F600.json", "a=b&c=d/e f/g+h.csv", "'quote'$!@.bin"]


def test_names_round_trip_with_the_sdk(container):
    for i, key in enumerate(NAMES):
        s3dlio.put(container.blob("ours/" + key), f"ours-{i}".encode())
        assert container.sdk_read("ours/" + key) == f"ours-{i}".encode(), key
        container.client.upload_blob("theirs/" + key, f"theirs-{i}".encode())
        assert s3dlio.get(container.blob("theirs/" + key)) == f"theirs-{i}".encode(), key
    sdk_names = [b.name for b in container.client.list_blobs()]
    assert len(sdk_names) == 2 * len(NAMES)
    assert s3dlio.list(container.uri + "/") == sorted(container.blob(n) for n in sdk_names)
    # The prefix in s3dlio's List Blobs query must select what the SDK's does.
    for key in NAMES:
        uri = container.blob("ours/" + key)
        parent = "ours/" + key.rsplit("/", 1)[0] + "/" if "/" in key else "ours/"
        sdk = sorted(container.blob(b.name)
                     for b in container.client.list_blobs(name_starts_with=parent))
        assert s3dlio.list(container.blob(parent)) == sdk, parent
        assert s3dlio.list(uri) == [uri]  # the object itself, and nothing under uri + "/"


def test_delimiter_listing_matches_walk_blobs(container):
    keys = ["top.txt", "a/1", "a/2", "a/b/3", "a b/4", "ü/5", "a+/6", "zz"]
    s3dlio.put_many([(container.blob(k), k.encode()) for k in keys])
    for prefix in ("", "a/", "a/b/", "ü/"):
        sdk = sorted(container.blob(item.name) for item in
                     container.client.walk_blobs(name_starts_with=prefix, delimiter="/"))
        assert s3dlio.list(container.blob(prefix) if prefix else container.uri + "/",
                           recursive=False) == sdk, prefix
    assert s3dlio.list(container.uri + "/", recursive=False) == [
        container.blob(k) for k in ("a b/", "a+/", "a/", "top.txt", "zz", "ü/")]
    recursive = sorted(container.blob(b.name) for b in container.client.list_blobs())
    assert s3dlio.list(container.uri + "/") == recursive
    assert s3dlio.list(container.uri + "/", pattern="*.txt") == [container.blob("top.txt")]


@pytest.mark.parametrize("key, expected_type", [
    ("m.json", "application/json"), ("t.txt", "text/plain"), ("x.bin", "application/octet-stream"),
    ("noext", "application/octet-stream"), ("d/p.png", "image/png")])
def test_stat_matches_sdk_properties(container, key, expected_type):
    data = os.urandom(1000 + len(key))
    s3dlio.put(container.blob(key), data)
    props = container.client.get_blob_client(key).get_blob_properties()
    meta = s3dlio.stat(container.blob(key))
    assert meta["size"] == props.size == len(data)
    assert meta["etag"] == props.etag  # both quoted: "0x..."
    assert meta["content_type"] == props.content_settings.content_type == expected_type
    assert meta["last_modified"].startswith(props.last_modified.strftime("%Y-%m-%dT%H:%M:%S"))
    # Put Blob sends Content-MD5; the service keeps it and serves it back.
    assert bytes(props.content_settings.content_md5) == _md5(data)


def test_stat_of_sdk_blob_and_its_content_type(container):
    from azure.storage.blob import ContentSettings
    container.client.upload_blob("theirs.dat", b"12345",
                                 content_settings=ContentSettings(content_type="x-custom/type"))
    meta = s3dlio.stat(container.blob("theirs.dat"))
    props = container.client.get_blob_client("theirs.dat").get_blob_properties()
    assert (meta["size"], meta["etag"], meta["content_type"]) == (5, props.etag, "x-custom/type")
    assert s3dlio.stat_many([container.blob("theirs.dat")])[0] == meta


def test_put_many_get_many_and_zero_bytes(container):
    items = [(container.blob(f"many/{i:03d}"), bytes([i]) * i) for i in range(40)]
    s3dlio.put_many(items, max_in_flight=8)
    for uri, data in items[:5]:
        assert container.sdk_read(uri[len(container.uri) + 1:]) == data
    got = s3dlio.get_many([u for u, _ in items], max_in_flight=8)
    assert [(u, bytes(v)) for u, v in got] == items
    assert s3dlio.get(container.blob("many/000")) == b""
    assert s3dlio.stat(container.blob("many/000"))["size"] == 0
    buf = bytearray(64)
    assert s3dlio.get_into(container.blob("many/039"), buf) == 39
    assert bytes(buf[:39]) == bytes([39]) * 39
    with pytest.raises(s3dlio.InvalidArgumentError):
        s3dlio.get_into(container.blob("many/039"), bytearray(10))


def test_async_twins(container):
    async def run():
        await s3dlio.put_async(container.blob("as/1"), b"one")
        assert await s3dlio.get_async(container.blob("as/1")) == b"one"
        assert await s3dlio.get_range_async(container.blob("as/1"), 1) == b"ne"
        assert (await s3dlio.stat_async(container.blob("as/1")))["size"] == 3
        assert not await s3dlio.exists_async(container.blob("as/2"))
    asyncio.run(run())
    assert container.sdk_read("as/1") == b"one"


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

# Azure advises against names ending in '.' (and the service may drop
# such dots); s3dlio refuses '.' and '..' segments and control characters.
_segment = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x2FFF,
                                 blacklist_categories=("Cs",), blacklist_characters="/\\\x7f"),
                   min_size=1, max_size=10).filter(lambda s: not s.endswith(".")
                                                   and s.strip() == s)
_name = st.lists(_segment, min_size=1, max_size=3).map("/".join)


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=_name)
def test_signing_accepted_for_generated_names(container, name):
    """Azurite recomputes every SharedKey signature from the received path
    and query: a name that s3dlio encodes or canonicalizes differently from
    what it sends is refused with 403."""
    uri = container.blob(name)
    s3dlio.put(uri, name.encode())
    assert container.sdk_read(name) == name.encode()
    assert s3dlio.get(uri) == name.encode()
    prefix = name.rsplit("/", 1)[0] + "/" if "/" in name else ""
    assert uri in s3dlio.list(container.blob(prefix) if prefix else container.uri + "/")
    s3dlio.delete(uri)
    assert not s3dlio.exists(uri)


# ---- 2. credentials ----------------------------------------------------------

def test_wrong_key_is_rejected(azurite, container, env):
    s3dlio.put(container.blob("k"), b"v")
    wrong = base64.b64encode(b"\x01" * 64).decode()
    env.setenv("AZURE_STORAGE_KEY", wrong)
    calls = {"put": lambda: s3dlio.put(container.blob("new"), b"x"),
             "get": lambda: s3dlio.get(container.blob("k")),
             "range": lambda: s3dlio.get_range(container.blob("k"), 0, 1),
             "stat": lambda: s3dlio.stat(container.blob("k")),
             "list": lambda: s3dlio.list(container.uri + "/"),
             "delete": lambda: s3dlio.delete(container.blob("k")),
             "create_bucket": lambda: s3dlio.create_bucket(f"az://{ACCOUNT}/x{container.name}")}
    for what, call in calls.items():
        with pytest.raises(s3dlio.PermissionDeniedError) as info:
            call()
        assert isinstance(info.value, PermissionError), what
        assert info.value.http_status == 403, what
        assert info.value.code == "AuthorizationFailure", what
        assert wrong not in str(info.value) and azurite.env()["AZURE_STORAGE_KEY"] not in str(
            info.value)
    env.setenv("AZURE_STORAGE_KEY", azurite.env()["AZURE_STORAGE_KEY"])
    assert s3dlio.get(container.blob("k")) == b"v"
    assert not s3dlio.exists(container.blob("new"))


def test_malformed_key_is_an_argument_error(container, env):
    env.setenv("AZURE_STORAGE_KEY", "not base64!!")
    with pytest.raises(s3dlio.InvalidArgumentError) as info:
        s3dlio.get(container.blob("k"))
    assert "not base64" not in str(info.value)


def _sas_only(env, token: str, variable: str = "AZURE_STORAGE_SAS_TOKEN") -> None:
    env.delenv("AZURE_STORAGE_KEY")
    env.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    env.setenv(variable, token)


def test_container_sas_from_the_sdk_reads(azurite, container, env):
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas
    s3dlio.put(container.blob("d/a b+ü.txt"), b"sas data")
    s3dlio.put(container.blob("d/other"), b"2")
    token = generate_container_sas(
        ACCOUNT, container.name, account_key=azurite.env()["AZURE_STORAGE_KEY"],
        permission=ContainerSasPermissions(read=True, list=True),
        expiry=dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1))
    _sas_only(env, "?" + token)
    assert s3dlio.get(container.blob("d/a b+ü.txt")) == b"sas data"
    assert s3dlio.get_range(container.blob("d/a b+ü.txt"), 4, 4) == b"data"
    assert s3dlio.stat(container.blob("d/other"))["size"] == 1
    assert s3dlio.list(container.uri + "/d/") == [container.blob("d/a b+ü.txt"),
                                                  container.blob("d/other")]
    assert s3dlio.list(container.uri + "/", recursive=False) == [container.blob("d/")]
    with pytest.raises(s3dlio.PermissionDeniedError) as info:  # no write permission
        s3dlio.put(container.blob("d/new"), b"x")
    assert token.split("sig=")[1] not in str(info.value)
    with pytest.raises(s3dlio.PermissionDeniedError):
        s3dlio.delete(container.blob("d/other"))
    assert container.sdk_read("d/other") == b"2"


def test_blob_sas_from_sas_url(container, env):
    key = "dir/a b+ü&=.bin"
    s3dlio.put(container.blob(key), b"one blob")
    s3dlio.put(container.blob("dir/neighbour"), b"no")
    url = azure_auth.sas_url(azure_auth.current(ACCOUNT), container.name, key, "r",
                             dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=10))
    _sas_only(env, url.split("?", 1)[1], "S3DLIO_AZURE_SAS_TOKEN")  # the reference's name
    assert s3dlio.get(container.blob(key)) == b"one blob"
    with pytest.raises(s3dlio.PermissionDeniedError):  # signed for one blob only
        s3dlio.get(container.blob("dir/neighbour"))
    import urllib.request
    with urllib.request.urlopen(url, timeout=10) as answer:  # the URL works on its own
        assert answer.read() == b"one blob"


def test_sas_signed_with_another_key_is_rejected(container, env):
    s3dlio.put(container.blob("k"), b"v")
    stranger = azure_auth.AzureConfig(ACCOUNT, azure_auth.current(ACCOUNT).endpoint,
                                      key=b"\x02" * 64)
    url = azure_auth.sas_url(stranger, container.name, "k", "r",
                             dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=10))
    _sas_only(env, url.split("?", 1)[1])
    with pytest.raises(s3dlio.PermissionDeniedError):
        s3dlio.get(container.blob("k"))


def test_expired_sas_is_refused_without_leaking_it(container, env):
    s3dlio.put(container.blob("k"), b"v")
    now = dt.datetime.now(dt.timezone.utc)
    url = azure_auth.sas_url(azure_auth.current(ACCOUNT), container.name, "k", "r",
                             now - dt.timedelta(minutes=5), start=now - dt.timedelta(hours=1))
    token = url.split("?", 1)[1]
    _sas_only(env, token)
    with pytest.raises(s3dlio.PermissionDeniedError) as info:
        s3dlio.get(container.blob("k"))
    signature = dict(p.split("=", 1) for p in token.split("&"))["sig"]
    assert signature not in str(info.value) and signature not in repr(info.value)


def test_no_credentials_is_anonymous_and_refused(container, env):
    s3dlio.put(container.blob("k"), b"v")
    env.delenv("AZURE_STORAGE_KEY")
    with pytest.raises(s3dlio.PermissionDeniedError):
        s3dlio.get(container.blob("k"))


def test_connection_string_only(azurite, env, blocks):
    for name in AZURE_ENV:
        env.delenv(name, raising=False)
    env.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    name = f"cs-{uuid.uuid4().hex[:12]}"
    base = f"az://{ACCOUNT}/{name}"
    s3dlio.create_bucket(base)
    big = os.urandom((2 << 20) + 3)
    s3dlio.put_many([(f"{base}/small", b"s"), (f"{base}/dir/big", big)])
    assert s3dlio.get(f"{base}/small") == b"s"
    assert s3dlio.get(f"{base}/dir/big") == big
    assert s3dlio.get_range(f"{base}/dir/big", 5, 5) == big[5:10]
    assert s3dlio.stat(f"{base}/dir/big")["size"] == len(big)
    assert s3dlio.list(f"{base}/") == [f"{base}/dir/big", f"{base}/small"]
    client = azurite.service_client().get_container_client(name)
    assert client.download_blob("dir/big").readall() == big
    s3dlio.delete(f"{base}/", recursive=True)
    assert s3dlio.list(f"{base}/") == []
    s3dlio.delete_bucket(base)
    assert not client.exists()


def test_connection_string_for_another_account_is_not_used(azurite, env):
    for name in AZURE_ENV:
        env.delenv(name, raising=False)
    env.setenv("AZURE_STORAGE_CONNECTION_STRING",
               azurite.connection_string.replace(f"AccountName={ACCOUNT}", "AccountName=other"))
    env.setenv("AZURE_STORAGE_ENDPOINT", azurite.endpoint)
    # The key belongs to "other": devstoreaccount1 is asked anonymously.
    with pytest.raises(s3dlio.PermissionDeniedError):
        s3dlio.list(f"az://{ACCOUNT}/anything/")


# ---- 3. block uploads --------------------------------------------------------

def test_large_put_goes_up_in_blocks(container, blocks):
    data = os.urandom((3 << 20) + 12345)
    s3dlio.put(container.blob("big/blob.bin"), data)
    assert s3dlio.get(container.blob("big/blob.bin")) == data
    assert container.sdk_read("big/blob.bin") == data
    committed, uncommitted = container.client.get_blob_client("big/blob.bin").get_block_list("all")
    assert [b.size for b in committed] == [blocks] * 12 + [12345]
    assert uncommitted == []
    assert len({b.id for b in committed}) == len(committed)
    props = container.client.get_blob_client("big/blob.bin").get_blob_properties()
    meta = s3dlio.stat(container.blob("big/blob.bin"))
    assert (meta["size"], meta["etag"]) == (len(data), props.etag)
    assert meta["content_type"] == props.content_settings.content_type == "application/octet-stream"
    # Blocks cross their boundaries seamlessly in ranged reads.
    assert s3dlio.get_range(container.blob("big/blob.bin"), blocks - 3, 7) == data[blocks - 3:
                                                                                   blocks + 4]


def test_block_upload_content_type_from_name(container, blocks):
    s3dlio.put(container.blob("big.json"), b" " * (1 << 20))
    props = container.client.get_blob_client("big.json").get_blob_properties()
    assert props.content_settings.content_type == "application/json"
    assert s3dlio.stat(container.blob("big.json"))["content_type"] == "application/json"


def test_just_below_and_at_the_threshold(container, blocks):
    below, at = os.urandom((1 << 20) - 1), os.urandom(1 << 20)
    s3dlio.put(container.blob("below"), below)
    s3dlio.put(container.blob("at"), at)
    below_blocks = container.client.get_blob_client("below").get_block_list("committed")[0]
    at_blocks = container.client.get_blob_client("at").get_block_list("committed")[0]
    assert len(at_blocks) == 4  # exactly four whole blocks, no empty tail
    assert len(below_blocks) <= 1  # one Put Blob (Azurite may list it as one block)
    assert container.sdk_read("below") == below and container.sdk_read("at") == at


def test_put_many_mixes_blocks_and_single_puts(container, blocks):
    items = [(container.blob("mix/big1"), os.urandom((2 << 20) + 1)),
             (container.blob("mix/small1"), b"small one"),
             (container.blob("mix/big2"), os.urandom((1 << 20) + 77)),
             (container.blob("mix/empty"), b"")]
    s3dlio.put_many(items, max_in_flight=4)
    for uri, data in items:
        assert s3dlio.get(uri) == data
        assert container.sdk_read(uri[len(container.uri) + 1:]) == data
    big1 = container.client.get_blob_client("mix/big1").get_block_list("committed")[0]
    assert len(big1) == 9


def test_put_async_of_a_large_blob(container, blocks):
    data = os.urandom((2 << 20) + 999)
    asyncio.run(s3dlio.put_async(container.blob("async.bin"), data))
    assert container.sdk_read("async.bin") == data
    asyncio.run(s3dlio.put_many_async([(container.blob("async2.bin"), data),
                                       (container.blob("async3"), b"3")]))
    assert s3dlio.get(container.blob("async2.bin")) == data


def test_numpy_array_counts_bytes(container, blocks):
    np = pytest.importorskip("numpy")
    arr = np.arange(200_000, dtype=np.float64)  # 1.6 MB: blocks by bytes, not elements
    s3dlio.put(container.blob("arr.bin"), arr)
    assert container.sdk_read("arr.bin") == arr.tobytes()
    assert len(container.client.get_blob_client("arr.bin").get_block_list()[0]) == 7


def test_create_only_on_existing_large_blob_keeps_old_content(container, blocks):
    old = os.urandom((2 << 20) + 5)
    uri = container.blob("once.bin")
    s3dlio.put(uri, old, overwrite=False)  # creating is fine
    with pytest.raises(s3dlio.AlreadyExistsError) as info:
        s3dlio.put(uri, os.urandom((3 << 20) + 1), overwrite=False)
    assert isinstance(info.value, FileExistsError)
    assert info.value.uri == uri
    assert s3dlio.get(uri) == old
    assert container.sdk_read("once.bin") == old
    with pytest.raises(s3dlio.AlreadyExistsError):  # small ones too
        s3dlio.put(uri, b"tiny", overwrite=False)
    with pytest.raises(s3dlio.AlreadyExistsError):
        asyncio.run(s3dlio.put_async(uri, os.urandom(1 << 20), overwrite=False))
    assert s3dlio.get(uri) == old
    s3dlio.put(uri, b"replaced")  # overwrite=True still replaces it
    assert container.sdk_read("once.bin") == b"replaced"


def test_concurrent_writer_cannot_tear_a_block_upload(container, blocks, env):
    """Another writer of the same name stages its blocks between our Put
    Block and Put Block List.  Ours must commit only our blocks: readers see
    one writer's whole blob, never a mix (put's atomicity promise)."""
    from s3dlio import _engine
    real_run = _engine.run
    other = container.client.get_blob_client("race.bin")

    def run_with_a_concurrent_writer(requests, max_in_flight):
        if any("comp=blocklist" in r.target for r in requests):
            # The other writer (same library, same name, another upload)
            # stages its block 1; Azure needs ids of one length per blob.
            # (The SDK base64-encodes the id it is given, as we do.)
            other.stage_block(f"{'f' * 24}-{1:08d}", b"B" * blocks)
        return real_run(requests, max_in_flight)

    env.setattr(_engine, "run", run_with_a_concurrent_writer)
    ours = b"A" * (4 * blocks)
    s3dlio.put(container.blob("race.bin"), ours)
    env.setattr(_engine, "run", real_run)
    assert container.sdk_read("race.bin") == ours


# ---- 4. ranges ---------------------------------------------------------------

def test_get_range(container):
    data = bytes(range(256)) * 4
    uri = container.blob("r.bin")
    s3dlio.put(uri, data)
    assert s3dlio.get_range(uri, 0, 10) == data[:10]
    assert s3dlio.get_range(uri, 100, 1) == data[100:101]
    assert s3dlio.get_range(uri, 1000) == data[1000:]  # to the end
    assert s3dlio.get_range(uri, 0) == data
    assert s3dlio.get_range(uri, 1020, 100) == data[1020:]  # clamped
    assert s3dlio.get_range(uri, 1024) == b""  # offset == size
    assert s3dlio.get_range(uri, 1024, 5) == b""
    assert s3dlio.get_range(uri, 7, 0) == b""
    for offset, length in ((1025, None), (1025, 1), (5000, 0), (10 ** 12, 10)):
        with pytest.raises(s3dlio.InvalidRangeError) as info:
            s3dlio.get_range(uri, offset, length)
        assert isinstance(info.value, ValueError)
    for offset, length in ((-1, 1), (0, -1), (1.5, 1)):
        with pytest.raises(s3dlio.InvalidRangeError):
            s3dlio.get_range(uri, offset, length)


def test_get_range_of_an_empty_blob(container):
    uri = container.blob("empty")
    s3dlio.put(uri, b"")
    assert s3dlio.get_range(uri, 0) == b""
    assert s3dlio.get_range(uri, 0, 10) == b""
    with pytest.raises(s3dlio.InvalidRangeError):
        s3dlio.get_range(uri, 1)


def test_get_range_of_missing_blob(container):
    with pytest.raises(s3dlio.NotFoundError):
        s3dlio.get_range(container.blob("missing"), 0, 1)
    with pytest.raises(s3dlio.NotFoundError):
        s3dlio.get_range(container.blob("missing"), 0, 0)


# ---- 5. bad input, containers, deletes ---------------------------------------

def test_missing_blob_and_container(container):
    with pytest.raises(s3dlio.NotFoundError) as info:
        s3dlio.get(container.blob("missing"))
    assert isinstance(info.value, FileNotFoundError)
    assert (info.value.http_status, info.value.code) == (404, "BlobNotFound")
    assert info.value.uri == container.blob("missing")
    with pytest.raises(s3dlio.NotFoundError) as info:
        s3dlio.stat(container.blob("missing"))  # HEAD: the code is only in x-ms-error-code
    assert info.value.code == "BlobNotFound"
    assert not s3dlio.exists(container.blob("missing"))
    gone = f"az://{ACCOUNT}/no-such-{uuid.uuid4().hex[:8]}"
    for call in (lambda: s3dlio.get(gone + "/k"), lambda: s3dlio.stat(gone + "/k"),
                 lambda: s3dlio.list(gone + "/"), lambda: s3dlio.put(gone + "/k", b"x"),
                 lambda: s3dlio.delete(gone + "/k")):
        with pytest.raises(s3dlio.NotFoundError) as info:
            call()
        assert info.value.code == "ContainerNotFound"


@pytest.mark.parametrize("name", ["Bad_Name", "ab", "a--b", "-abc", "abc-", "x" * 64, "UPPER",
                                  "a.b", "ü-abc", ""])
def test_invalid_container_names(azurite, name):
    with pytest.raises(s3dlio.InvalidArgumentError) as info:
        s3dlio.create_bucket(f"az://{ACCOUNT}/{name}")
    assert isinstance(info.value, ValueError)
    with pytest.raises(s3dlio.InvalidArgumentError):
        s3dlio.delete_bucket(f"az://{ACCOUNT}/{name}")


@pytest.mark.parametrize("uri", [f"az://{ACCOUNT}", f"az://{ACCOUNT}/", "az://", "az:///ctr/k",
                                 f"az://{ACCOUNT}//k"])
def test_account_only_uris_rejected(azurite, uri):
    for call in (s3dlio.get, s3dlio.stat, s3dlio.list, s3dlio.delete,
                 lambda u: s3dlio.put(u, b"x")):
        with pytest.raises(s3dlio.InvalidURIError):
            call(uri)
    with pytest.raises(s3dlio.InvalidArgumentError):
        s3dlio.create_bucket(uri)


def test_invalid_account_name_rejected(azurite):
    for account in ("BadAcct", "has-dash", "a" * 64):
        with pytest.raises(s3dlio.InvalidArgumentError):
            s3dlio.get(f"az://{account}/ctr/k")


def test_blob_names_refused_before_any_request(container):
    for key in ("a/../b", "a/./b", "ctl\x01char", "a//b"):
        with pytest.raises(s3dlio.InvalidURIError):
            s3dlio.put(container.blob(key), b"x")
    assert s3dlio.list(container.uri + "/") == []


def test_delete_missing_blob_succeeds(container):
    s3dlio.delete(container.blob("never-existed"))
    s3dlio.delete(container.blob("dir/never/existed"), recursive=True)


def test_recursive_delete_removes_exactly_the_selection(container):
    keep = ["d2/x", "d.txt", "dd", "e/d/f", "d ü/x"]
    gone = ["d", "d/a", "d/sub/b", "d/sub/deep/c", "d/ü +&=/x"]
    s3dlio.put_many([(container.blob(k), k.encode()) for k in keep + gone])
    assert s3dlio.list(container.blob("d")) == sorted(container.blob(k) for k in gone)
    s3dlio.delete(container.blob("d"), recursive=True)
    assert sorted(b.name for b in container.client.list_blobs()) == sorted(keep)
    s3dlio.delete(container.blob("d ü/"), recursive=True)
    assert sorted(b.name for b in container.client.list_blobs()) == sorted(keep[:-1])
    s3dlio.delete(container.uri + "/", recursive=True)
    assert list(container.client.list_blobs()) == []


def test_recursive_delete_of_many_blobs(container):
    s3dlio.put_many([(container.blob(f"p/{i:04d}"), b"") for i in range(300)], max_in_flight=32)
    s3dlio.put(container.blob("p2"), b"sibling")
    s3dlio.delete(container.blob("p"), recursive=True)
    assert [b.name for b in container.client.list_blobs()] == ["p2"]


def test_recursive_delete_handles_directory_markers(container):
    container.client.upload_blob("p/sub/", b"")  # a "folder" marker, as tools make them
    s3dlio.put(container.blob("p/sub/x"), b"1")
    s3dlio.put(container.blob("p2"), b"sibling")
    s3dlio.delete(container.blob("p"), recursive=True)
    assert [b.name for b in container.client.list_blobs()] == ["p2"]


def test_recursive_delete_handles_names_s3dlio_would_refuse(container):
    container.client.upload_blob("q//double", b"")
    s3dlio.put(container.blob("q/x"), b"1")
    assert s3dlio.list(container.blob("q/")) == [container.blob("q//double"),
                                                 container.blob("q/x")]
    s3dlio.delete(container.blob("q"), recursive=True)
    assert list(container.client.list_blobs()) == []


def test_containers(azurite):
    name = f"c-{uuid.uuid4().hex[:12]}"
    uri = f"az://{ACCOUNT}/{name}"
    client = azurite.service_client().get_container_client(name)
    s3dlio.create_bucket(uri)
    assert client.exists()
    s3dlio.create_bucket(uri)  # it exists already: fine
    s3dlio.create_bucket(uri + "/")
    s3dlio.put(f"{uri}/keep", b"data")
    with pytest.raises(s3dlio.S3dlioError) as info:
        s3dlio.delete_bucket(uri)
    assert info.value.code == "BucketNotEmpty"
    assert not isinstance(info.value, s3dlio.AlreadyExistsError)
    assert s3dlio.get(f"{uri}/keep") == b"data"
    s3dlio.delete(f"{uri}/keep")
    s3dlio.delete_bucket(uri)
    assert not client.exists()
    with pytest.raises(s3dlio.NotFoundError):
        s3dlio.list(f"{uri}/")
    with pytest.raises(s3dlio.NotFoundError):
        s3dlio.delete_bucket(uri)


def test_delete_bucket_refuses_a_container_with_only_sdk_blobs(azurite):
    name = f"c-{uuid.uuid4().hex[:12]}"
    s3dlio.create_bucket(f"az://{ACCOUNT}/{name}")
    client = azurite.service_client().get_container_client(name)
    client.upload_blob("deep/nested/only", b"1")
    with pytest.raises(s3dlio.S3dlioError):
        s3dlio.delete_bucket(f"az://{ACCOUNT}/{name}")
    assert client.download_blob("deep/nested/only").readall() == b"1"


def test_presign_gives_working_sas_urls(azurite, container, env):
    import urllib.request
    key = "pre/a b+ü&=.bin"
    s3dlio.put(container.blob(key), b"presigned")
    url = s3dlio.presign(container.blob(key), "GET", 600)
    assert url.startswith(f"{azurite.endpoint}/{container.name}/pre/a%20b%2B")
    assert azurite.env()["AZURE_STORAGE_KEY"] not in url
    with urllib.request.urlopen(url, timeout=10) as answer:
        assert answer.read() == b"presigned"
    put_url = s3dlio.presign(container.blob("pre/up"), "PUT", 600)
    upload = urllib.request.Request(put_url, data=b"uploaded", method="PUT",
                                    headers={"x-ms-blob-type": "BlockBlob"})
    with urllib.request.urlopen(upload, timeout=10) as answer:
        assert answer.status == 201
    assert container.sdk_read("pre/up") == b"uploaded"
    delete = urllib.request.Request(s3dlio.presign(container.blob("pre/up"), "DELETE", 600),
                                    method="DELETE")
    with urllib.request.urlopen(delete, timeout=10) as answer:
        assert answer.status == 202
    assert not s3dlio.exists(container.blob("pre/up"))
    with pytest.raises(s3dlio.InvalidArgumentError):
        s3dlio.presign(container.blob(key), "GET", 0)
    with pytest.raises(s3dlio.InvalidArgumentError):
        s3dlio.presign(container.blob(key), "POST", 60)
    env.delenv("AZURE_STORAGE_KEY")
    with pytest.raises(s3dlio.PermissionDeniedError):
        s3dlio.presign(container.blob(key))


# ---- 6. integrity and faults (scripted server) -------------------------------

@pytest.fixture
def scripted(env):
    from servers.scripted_azure import ScriptedAzure
    with ScriptedAzure() as server:
        for name in AZURE_ENV:
            env.delenv(name, raising=False)
        for k, v in server.env().items():
            env.setenv(k, v)
        yield server


def _scripted_blob(server, key: str, data: bytes) -> str:
    server.blobs[f"/{ACCOUNT}/ctr/{key}"] = data
    return f"az://{ACCOUNT}/ctr/{key}"


def test_azurite_content_md5_is_verified_on_whole_gets(container, env):
    env.setenv("S3DLIO_AZURE_CONTENT_MD5", "both")
    data = os.urandom(5000)
    s3dlio.put(container.blob("md5"), data)
    props = container.client.get_blob_client("md5").get_blob_properties()
    assert bytes(props.content_settings.content_md5) == _md5(data)
    assert s3dlio.get(container.blob("md5")) == data


def test_wrong_content_md5_raises_checksum_mismatch(scripted, env):
    from servers.scripted_azure import Fault
    env.setenv("S3DLIO_AZURE_CONTENT_MD5", "both")
    uri = _scripted_blob(scripted, "bad", b"payload")
    scripted.add_fault(Fault(wrong_md5=True, uses=-1))
    with pytest.raises(s3dlio.ChecksumMismatchError) as info:
        s3dlio.get(uri)
    assert info.value.uri == uri
    assert "Content-MD5" in str(info.value) and "3 attempt" in str(info.value)
    assert scripted.count("GET") == 3  # retried, then given up
    # Ranges cannot be checked against a whole-blob MD5, and are not.
    assert s3dlio.get_range(uri, 0, 3) == b"pay"
    assert s3dlio.get_range(uri, 3) == b"load"


def test_one_wrong_content_md5_then_good_bytes(scripted, env):
    from servers.scripted_azure import Fault
    env.setenv("S3DLIO_AZURE_CONTENT_MD5", "1")
    data = os.urandom(100_000)
    uri = _scripted_blob(scripted, "flaky", data)
    scripted.add_fault(Fault(wrong_md5=True, uses=1))
    assert s3dlio.get(uri) == data
    assert scripted.count("GET") == 2


def test_downloads_skip_the_md5_check_by_default(scripted):
    # The default ("upload") sends Content-MD5 on writes only, as the Azure
    # SDKs do: MD5 on the engine thread would cap reads near 700 MB/s.
    from servers.scripted_azure import Fault
    uri = _scripted_blob(scripted, "unchecked", b"payload")
    scripted.add_fault(Fault(wrong_md5=True, uses=-1))
    assert s3dlio.get(uri) == b"payload"
    assert scripted.count("GET") == 1


@pytest.mark.parametrize("mode,sent", [("off", False), ("upload", True), ("both", True)])
def test_uploads_carry_content_md5_unless_off(scripted, env, mode, sent):
    env.setenv("S3DLIO_AZURE_CONTENT_MD5", mode)
    s3dlio.put(f"az://{ACCOUNT}/ctr/m", b"x" * 100)
    (put,) = [s for s in scripted.seen if s.method == "PUT"]
    assert ("content-md5" in {k.lower() for k in put.headers}) is sent
    if sent:
        assert {k.lower(): v for k, v in put.headers.items()}["content-md5"] == \
            base64.b64encode(_md5(b"x" * 100)).decode()


def test_get_into_checks_content_md5(scripted, env):
    from servers.scripted_azure import Fault
    env.setenv("S3DLIO_AZURE_CONTENT_MD5", "both")
    uri = _scripted_blob(scripted, "into", b"0123456789")
    scripted.add_fault(Fault(wrong_md5=True, uses=-1))
    with pytest.raises(s3dlio.ChecksumMismatchError):
        s3dlio.get_into(uri, bytearray(64))


def test_server_busy_then_success(scripted):
    from servers.scripted_azure import azure_error
    data = os.urandom(4096)
    uri = _scripted_blob(scripted, "busy", data)
    scripted.add_fault(azure_error(503, "ServerBusy", "Ingress is over the account limit."))
    assert s3dlio.get(uri) == data
    assert scripted.count("GET") == 2


def test_server_busy_on_a_put_resends_the_whole_body(scripted):
    from servers.scripted_azure import azure_error, md5_b64
    data = os.urandom(200_000)
    scripted.add_fault(azure_error(503, "ServerBusy", method="PUT"))
    s3dlio.put(f"az://{ACCOUNT}/ctr/up.bin", data)
    puts = [s for s in scripted.seen if s.method == "PUT"]
    assert len(puts) == 2
    assert all(p.body == data and p.headers["content-md5"] == md5_b64(data) for p in puts)
    assert puts[1].headers["x-ms-blob-type"] == "BlockBlob"
    assert scripted.blobs[f"/{ACCOUNT}/ctr/up.bin"] == data


def test_block_upload_retries_a_busy_block(scripted, blocks):
    from servers.scripted_azure import azure_error
    data = os.urandom((1 << 20) + 10)
    scripted.add_fault(azure_error(503, "ServerBusy", method="PUT"))  # the first block to arrive
    s3dlio.put(f"az://{ACCOUNT}/ctr/blocks.bin", data)
    assert scripted.blobs[f"/{ACCOUNT}/ctr/blocks.bin"] == data
    block_puts = [s for s in scripted.seen if s.query.get("comp") == ["block"]]
    assert len(block_puts) == 5 + 1  # five blocks, one of them twice
    commit = [s for s in scripted.seen if s.query.get("comp") == ["blocklist"]]
    assert len(commit) == 1
    assert commit[0].headers["x-ms-blob-content-type"] == "application/octet-stream"


def test_failed_block_upload_is_a_typed_error(scripted, blocks):
    from servers.scripted_azure import azure_error
    scripted.add_fault(azure_error(500, "InternalError", method="PUT", uses=-1, comp="block"))
    with pytest.raises(s3dlio.StorageIOError) as info:
        s3dlio.put(f"az://{ACCOUNT}/ctr/never.bin", os.urandom(2 << 20))
    assert info.value.http_status == 500
    assert f"/{ACCOUNT}/ctr/never.bin" not in scripted.blobs
    assert scripted.count("PUT") <= 8 * 3  # bounded: each block at most three attempts
    assert not any(s.query.get("comp") == ["blocklist"] for s in scripted.seen)


def test_failed_block_commit_is_a_typed_error(scripted, blocks):
    from servers.scripted_azure import azure_error
    scripted.add_fault(azure_error(500, "InternalError", method="PUT", uses=-1,
                                   comp="blocklist"))
    with pytest.raises(s3dlio.StorageIOError) as info:
        s3dlio.put(f"az://{ACCOUNT}/ctr/never.bin", os.urandom(2 << 20))
    assert (info.value.http_status, info.value.code) == (500, "InternalError")
    assert f"/{ACCOUNT}/ctr/never.bin" not in scripted.blobs
    commits = [s for s in scripted.seen if s.query.get("comp") == ["blocklist"]]
    assert len(commits) == 3
    assert len({s.body for s in commits}) == 1  # the same list each time


def test_server_busy_on_every_attempt_is_throttled(scripted):
    from servers.scripted_azure import azure_error
    uri = _scripted_blob(scripted, "always-busy", b"x")
    scripted.add_fault(azure_error(503, "ServerBusy", uses=-1))
    with pytest.raises(s3dlio.ThrottledError) as info:
        s3dlio.get(uri)
    assert (info.value.http_status, info.value.code) == (503, "ServerBusy")
    assert scripted.count("GET") == 3


def test_internal_error_on_every_attempt_is_a_typed_error(scripted):
    from servers.scripted_azure import azure_error
    uri = _scripted_blob(scripted, "broken", b"x")
    scripted.add_fault(azure_error(500, "InternalError", "The server had an internal error.",
                                   uses=-1))
    with pytest.raises(s3dlio.StorageIOError) as info:
        s3dlio.get(uri)
    assert (info.value.http_status, info.value.code) == (500, "InternalError")
    assert info.value.uri == uri
    assert info.value.request_id == "scripted"
    assert scripted.count("GET") == 3


def test_error_code_from_header_only(scripted):
    with pytest.raises(s3dlio.NotFoundError) as info:
        s3dlio.stat(f"az://{ACCOUNT}/ctr/nothing")  # HEAD: no body, only x-ms-error-code
    assert info.value.code == "BlobNotFound"


def _page(names, marker=""):
    blobs = "".join(f"<Blob><Name>{n}</Name><Properties><Content-Length>{len(n)}"
                    f"</Content-Length><Etag>0x1</Etag></Properties></Blob>" for n in names)
    return (f'<?xml version="1.0" encoding="utf-8"?><EnumerationResults><Blobs>{blobs}</Blobs>'
            f"<NextMarker>{marker}</NextMarker></EnumerationResults>").encode()


def test_listing_follows_next_marker(scripted):
    scripted.list_pages(_page(["a", "b"], "2!8!b+&amp;= /x"), _page(["c/d", "e &amp; f"]))
    assert s3dlio.list(f"az://{ACCOUNT}/ctr/") == [f"az://{ACCOUNT}/ctr/{k}"
                                                   for k in ("a", "b", "c/d", "e & f")]
    lists = [s for s in scripted.seen if s.query.get("comp") == ["list"]]
    assert len(lists) == 2
    assert "marker" not in lists[0].query
    assert lists[1].query["marker"] == ["2!8!b+&= /x"]  # sent back exactly


def test_malformed_listing_is_a_typed_error(scripted):
    for body in (b"<EnumerationResults><Blobs>", b"<NotAListing/>",
                 b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><EnumerationResults/>'):
        scripted.list_pages(body)
        with pytest.raises(s3dlio.StorageIOError) as info:
            s3dlio.list(f"az://{ACCOUNT}/ctr/")
        assert info.value.code == "MalformedReply"
