"""The GCS and Azure test servers work, driven by the official SDKs, and
enforce what the suite relies on (Azurite: SharedKey; fake-gcs-server:
ranges, hashes on downloads, the resumable-upload protocol)."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import urllib.error
import urllib.request
import uuid

import crc32c
import pytest

from servers import azurite, fake_gcs

BODY = b"hello world"


def _running(module, tmp_path_factory):
    try:
        server = module.start(tmp_path_factory.mktemp(module.__name__.rpartition(".")[2]))
    except fake_gcs.Unavailable as e:
        pytest.skip(str(e))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    yield from _running(fake_gcs, tmp_path_factory)


@pytest.fixture(scope="module")
def blob_server(tmp_path_factory):
    yield from _running(azurite, tmp_path_factory)


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def _request(url: str, method: str = "GET", data: bytes | None = None, **headers):
    """(status, headers, body) of one request; HTTP errors are answers too."""
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.headers, e.read()


def test_fake_gcs_round_trip_with_the_sdk(gcs):
    bucket_name = _name("b")
    gcs.create_bucket(bucket_name)
    bucket = gcs.storage_client().bucket(bucket_name)
    for key in ("p/a", "p/b", "q/c"):
        bucket.blob(key).upload_from_string(BODY)
    assert bucket.blob("p/a").download_as_bytes() == BODY
    assert bucket.blob("p/a").download_as_bytes(start=6, end=10) == b"world"
    assert [b.name for b in bucket.client.list_blobs(bucket_name, prefix="p/")] == ["p/a", "p/b"]


def test_fake_gcs_media_upload_and_hashes_on_download(gcs):
    bucket = _name("b")
    gcs.create_bucket(bucket)
    status, _, _ = _request(f"{gcs.endpoint}/upload/storage/v1/b/{bucket}/o"
                            f"?uploadType=media&name=obj", "POST", BODY,
                            **{"Content-Type": "application/octet-stream"})
    assert status == 200
    expected = (f"crc32c={_b64(crc32c.crc32c(BODY).to_bytes(4, 'big'))},"
                f"md5={_b64(hashlib.md5(BODY).digest())}")
    url = f"{gcs.endpoint}/download/storage/v1/b/{bucket}/o/obj?alt=media"
    status, headers, body = _request(url)
    assert (status, body, headers["X-Goog-Hash"]) == (200, BODY, expected)
    # A ranged read carries the whole object's hashes, as GCS does.
    status, headers, body = _request(url, Range="bytes=-5")
    assert (status, body, headers["Content-Range"]) == (206, b"world", "bytes 6-10/11")
    assert headers["X-Goog-Hash"] == expected
    assert _request(url, Range="bytes=50-60")[0] == 416


def test_fake_gcs_resumable_upload_protocol(gcs):
    bucket = _name("b")
    gcs.create_bucket(bucket)
    status, headers, _ = _request(f"{gcs.endpoint}/upload/storage/v1/b/{bucket}/o"
                                  f"?uploadType=resumable&name=big", "POST", b"{}",
                                  **{"Content-Type": "application/json"})
    assert status == 200
    session = headers["Location"]
    assert session.startswith(gcs.endpoint + "/")
    first, last = os.urandom(256 * 1024), os.urandom(1000)
    total = len(first) + len(last)
    status, headers, _ = _request(session, "PUT", first,
                                  **{"Content-Range": f"bytes 0-{len(first) - 1}/{total}"})
    assert (status, headers["Range"]) == (308, f"bytes=0-{len(first) - 1}")
    status, _, body = _request(session, "PUT", last,
                               **{"Content-Range": f"bytes {len(first)}-{total - 1}/{total}"})
    assert status == 200 and json.loads(body)["size"] == str(total)
    status, _, body = _request(f"{gcs.endpoint}/download/storage/v1/b/{bucket}/o/big?alt=media")
    assert status == 200 and body == first + last


def test_azurite_round_trip_with_the_sdk(blob_server):
    from azure.storage.blob import BlobServiceClient
    service = BlobServiceClient.from_connection_string(blob_server.connection_string,
                                                       api_version=azurite.API_VERSION)
    container = service.create_container(_name("c"))
    container.upload_blob("dir/obj", BODY)
    assert container.download_blob("dir/obj").readall() == BODY
    assert container.download_blob("dir/obj", offset=6, length=5).readall() == b"world"
    assert [b.name for b in container.list_blobs(name_starts_with="dir/")] == ["dir/obj"]


def test_azurite_rejects_a_wrong_key(blob_server):
    from azure.core.exceptions import HttpResponseError
    container = _name("c")
    blob_server.service_client().create_container(container)
    wrong = base64.b64encode(b"\x01" * 64).decode()
    bad = blob_server.service_client(key=wrong).get_container_client(container)
    with pytest.raises(HttpResponseError) as e:
        bad.upload_blob("obj", BODY)
    assert e.value.status_code == 403
    with pytest.raises(HttpResponseError) as e:
        list(bad.list_blobs())
    assert e.value.status_code == 403


@pytest.mark.parametrize("module", [fake_gcs, azurite], ids=["fake_gcs", "azurite"])
def test_serving_exports_env_then_stops(module, tmp_path):
    before = dict(os.environ)  # a session fixture may have exported a server already
    try:
        with module.serving(tmp_path) as server:
            assert server.env() and all(os.environ[k] == v for k, v in server.env().items())
            exported = server.env()
    except fake_gcs.Unavailable as e:
        pytest.skip(str(e))
    assert server.process.poll() is not None
    assert all(os.environ.get(k) == before.get(k) for k in exported)
