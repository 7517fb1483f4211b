"""Fault injection for the S3 backend: a scripted chaos proxy in front of
moto (servers/chaos_proxy.py) resets, truncates, delays, throttles and
corrupts chosen requests; a scripted server (servers/scripted_s3.py) answers
CompleteMultipartUpload with a 200 whose body is an <Error>.

What must hold: a fault on one attempt is retried and the result has exactly
the right bytes; a fault on every attempt ends, after exactly the configured
3 attempts and within a bounded time, in a typed error naming the URI; and
whatever happens, a read never returns wrong bytes as success."""
from __future__ import annotations

import os
import random
import time
import uuid

import pytest

import s3dlio
from servers import scripted_s3
from servers.chaos_proxy import FAILING_KINDS, ChaosProxy, Fault
from servers.scripted_s3 import Reply, complete_ok, error_in_200

pytestmark = pytest.mark.timeout(60)

MAX_ATTEMPTS = 3        # the client default (native/src/client.c)
FAIL_BOUND_S = 15.0     # 3 attempts + backoff (≤ 0.3 s transient, ≤ 1.5 s throttled)
DATA_BYTES = 256 << 10

@pytest.fixture
def boto(moto_s3):
    """boto3 straight to moto, bypassing the proxy: the independent check."""
    return moto_s3.boto3_client()


@pytest.fixture
def bucket(boto):
    name = f"f-{uuid.uuid4().hex[:12]}"
    boto.create_bucket(Bucket=name)
    return name


@pytest.fixture
def proxy(moto_s3, monkeypatch):
    """A chaos proxy in front of moto, and s3dlio pointed at it.  Its fresh
    endpoint also gives each test a fresh client (and retry budget)."""
    chaos = ChaosProxy(moto_s3.endpoint).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", chaos.url)
    try:
        yield chaos
    finally:
        chaos.stop()


def seed(proxy: ChaosProxy, uri: str, data: bytes) -> None:
    """Uploads through the proxy with no faults (so s3dlio's CRC32C is
    stored), then forgets those requests."""
    proxy.script([])
    s3dlio.put(uri, data)
    proxy.script([])


def body_of(boto, bucket: str, key: str) -> bytes:
    return boto.get_object(Bucket=bucket, Key=key)["Body"].read()


# ---- one fault, then pass-through ------------------------------------------

RESET = Fault.reset()
RESET_LATE = Fault.reset(after_response=True)
TRUNCATE = Fault.truncate()  # body cut; for an empty-bodied PUT reply, inside the headers
SLOW_DOWN = Fault.slow_down()
INTERNAL = Fault.internal_error()
CORRUPT = Fault.corrupt()
HEADERS_CUT = Fault.truncate(0.0, in_headers=True)  # only the status line arrives

ONCE_CASES = [
    pytest.param("get", RESET, id="get-reset"),
    pytest.param("get", RESET_LATE, id="get-reset-mid-response"),
    pytest.param("get", TRUNCATE, id="get-truncate"),
    pytest.param("get", SLOW_DOWN, id="get-503-slowdown"),
    pytest.param("get", INTERNAL, id="get-500-internal"),
    pytest.param("get", CORRUPT, id="get-corrupt"),
    pytest.param("get", HEADERS_CUT, id="get-truncate-in-headers"),
    pytest.param("put", RESET, id="put-reset"),
    pytest.param("put", RESET_LATE, id="put-reset-mid-response"),
    # A PUT reply has no body, so truncation cuts its header block.
    pytest.param("put", TRUNCATE, id="put-truncate"),
    pytest.param("put", SLOW_DOWN, id="put-503-slowdown"),
    pytest.param("put", INTERNAL, id="put-500-internal"),
]


@pytest.mark.parametrize("op,fault", ONCE_CASES)
def test_fault_once_is_retried(proxy, bucket, boto, op, fault):
    key = f"once/{op}.bin"
    uri = f"s3://{bucket}/{key}"
    data = os.urandom(DATA_BYTES)
    if op == "get":
        seed(proxy, uri, data)
        proxy.script([fault])
        got = s3dlio.get(uri)
        assert len(got) == len(data)
        assert bytes(got) == data
    else:
        proxy.script([fault])
        s3dlio.put(uri, data)
        assert body_of(boto, bucket, key) == data
    assert [s.fault for s in proxy.seen] == [fault, Fault.passthrough()]
    assert proxy.count == 2


def test_get_range_with_truncated_headers_is_retried(proxy, bucket):
    # The same on a ranged read, where no checksum can catch it.
    uri = f"s3://{bucket}/range.bin"
    data = os.urandom(DATA_BYTES)
    seed(proxy, uri, data)
    proxy.script([HEADERS_CUT])
    assert bytes(s3dlio.get_range(uri, 100, 1000)) == data[100:1100]
    assert proxy.count == 2


# ---- the same fault on every attempt ---------------------------------------

EVERY_CASES = [
    pytest.param("get", RESET, s3dlio.StorageIOError, None, id="get-reset"),
    pytest.param("get", RESET_LATE, s3dlio.StorageIOError, None, id="get-reset-mid-response"),
    pytest.param("get", TRUNCATE, s3dlio.StorageIOError, None, id="get-truncate"),
    pytest.param("get", SLOW_DOWN, s3dlio.ThrottledError, (503, "SlowDown"),
                 id="get-503-slowdown"),
    pytest.param("get", INTERNAL, s3dlio.StorageIOError, (500, "InternalError"),
                 id="get-500-internal"),
    pytest.param("get", CORRUPT, s3dlio.ChecksumMismatchError, None, id="get-corrupt"),
    pytest.param("get", HEADERS_CUT, s3dlio.StorageIOError, None,
                 id="get-truncate-in-headers"),
    pytest.param("put", RESET, s3dlio.StorageIOError, None, id="put-reset"),
    pytest.param("put", RESET_LATE, s3dlio.StorageIOError, None, id="put-reset-mid-response"),
    pytest.param("put", TRUNCATE, s3dlio.StorageIOError, None, id="put-truncate"),
    pytest.param("put", SLOW_DOWN, s3dlio.ThrottledError, (503, "SlowDown"),
                 id="put-503-slowdown"),
    pytest.param("put", INTERNAL, s3dlio.StorageIOError, (500, "InternalError"),
                 id="put-500-internal"),
]


@pytest.mark.parametrize("op,fault,error,http", EVERY_CASES)
def test_fault_every_attempt_is_a_typed_error(proxy, bucket, boto, op, fault, error, http):
    key = f"every/{op}.bin"
    uri = f"s3://{bucket}/{key}"
    data = os.urandom(DATA_BYTES)
    if op == "get":
        seed(proxy, uri, data)
    proxy.script([], then=fault)
    started = time.monotonic()
    with pytest.raises(s3dlio.S3dlioError) as info:
        if op == "get":
            s3dlio.get(uri)
        else:
            s3dlio.put(uri, data)
    elapsed = time.monotonic() - started
    err = info.value
    assert type(err) is error, repr(err)
    assert err.uri == uri
    assert uri in str(err)
    if http is not None:
        assert (err.http_status, err.code) == http
    if fault.kind == "corrupt":
        assert f"{MAX_ATTEMPTS} attempt" in str(err)
    assert proxy.count == MAX_ATTEMPTS
    assert elapsed < FAIL_BOUND_S
    if op == "put" and fault.kind in ("reset", "status") and not fault.after_response:
        # Nothing reached moto, so nothing may exist there.
        assert boto.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


# ---- throttling hints, latency, stalls -------------------------------------

def test_retry_after_is_honoured(proxy, bucket):
    uri = f"s3://{bucket}/retry-after.bin"
    data = os.urandom(DATA_BYTES)
    seed(proxy, uri, data)
    proxy.script([Fault.slow_down(retry_after=1)])
    assert bytes(s3dlio.get(uri)) == data
    first, second = proxy.seen
    gap = second.at - first.at
    assert 1.0 <= gap < 5.0, gap


@pytest.mark.parametrize("op", ["get", "put"])
def test_latency_below_the_timeouts_succeeds(proxy, bucket, boto, op):
    key = f"slow/{op}.bin"
    uri = f"s3://{bucket}/{key}"
    data = os.urandom(DATA_BYTES)
    if op == "get":
        seed(proxy, uri, data)
    proxy.script([], then=Fault.latency(400))
    started = time.monotonic()
    if op == "get":
        assert bytes(s3dlio.get(uri)) == data
    else:
        s3dlio.put(uri, data)
        assert body_of(boto, bucket, key) == data
    assert time.monotonic() - started >= 0.4
    assert proxy.count == 1


def test_stall_past_the_low_speed_timeout_is_a_timeout_error(proxy, bucket, monkeypatch):
    from s3dlio import s3_client
    from s3dlio._native import lib
    uri = f"s3://{bucket}/stall.bin"
    data = os.urandom(DATA_BYTES)
    seed(proxy, uri, data)
    # A changed environment snapshot gives a fresh client, not yet frozen by
    # use, whose low-speed timeout (30 s by default) can still be lowered.
    monkeypatch.setenv("S3DLIO_ADDRESSING_STYLE", "path")
    client = s3_client.current()
    assert lib.s3dl_client_setopt_int(client.handle, lib.S3DL_CLIENT_LOW_SPEED_TIMEOUT_MS,
                                      1000) == lib.S3DL_OK
    proxy.script([], then=Fault.latency(4000))
    started = time.monotonic()
    with pytest.raises(s3dlio.TimeoutError) as info:
        s3dlio.get(uri)
    elapsed = time.monotonic() - started
    assert info.value.uri == uri and uri in str(info.value)
    assert proxy.count == MAX_ATTEMPTS
    assert elapsed < FAIL_BOUND_S


def test_keep_alive_connections_are_reused_and_still_counted(moto_s3, bucket, boto, monkeypatch):
    # With keep-alive the proxy serves several requests per connection;
    # faults still hit the request they were scripted for.
    with ChaosProxy(moto_s3.endpoint, keep_alive=True) as chaos:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", chaos.url)
        payloads = {f"ka/{i}": os.urandom(1000 + i) for i in range(6)}
        for key, data in payloads.items():
            s3dlio.put(f"s3://{bucket}/{key}", data)
        for key, data in payloads.items():
            assert bytes(s3dlio.get(f"s3://{bucket}/{key}")) == data
        seen = chaos.seen
        assert len(seen) == 12
        assert len({s.connection for s in seen}) < len(seen)  # connections were reused
        chaos.script([SLOW_DOWN])
        assert bytes(s3dlio.get(f"s3://{bucket}/ka/0")) == payloads["ka/0"]
        assert [s.fault for s in chaos.seen] == [SLOW_DOWN, Fault.passthrough()]
    for key, data in payloads.items():
        assert body_of(boto, bucket, key) == data


# ---- many objects, random faults ---------------------------------------------

BODY_FAULT_POOL = [Fault.passthrough(), Fault.passthrough(), Fault.latency(30), RESET, RESET_LATE,
                   TRUNCATE, Fault.truncate(0.9), SLOW_DOWN, INTERNAL, CORRUPT]


def _expected_error(fault: Fault) -> type:
    if fault.kind == "corrupt":
        return s3dlio.ChecksumMismatchError
    if fault.kind == "status" and fault.status == 503:
        return s3dlio.ThrottledError
    return s3dlio.StorageIOError


@pytest.mark.parametrize("with_header_cuts", [
    pytest.param(False, id="body-faults"),
    pytest.param(True, id="with-header-truncation"),
])
def test_get_many_with_random_faults_never_returns_wrong_bytes(proxy, bucket, with_header_cuts):
    rng = random.Random(20240607)
    n = 50
    uris = [f"s3://{bucket}/many/{i:03d}" for i in range(n)]
    payloads = [rng.randbytes(rng.randint(1, 64 << 10)) for _ in range(n)]
    proxy.script([])
    s3dlio.put_many(list(zip(uris, payloads)), max_in_flight=16)
    plan = [rng.choice(BODY_FAULT_POOL) for _ in range(90)]
    if with_header_cuts:
        plan[0:50:10] = [HEADERS_CUT] * 5  # all within the first n requests
    proxy.script(plan)
    started = time.monotonic()
    results = s3dlio.get_many(uris, max_in_flight=16, return_exceptions=True)
    assert time.monotonic() - started < 30
    seen = proxy.seen
    assert n <= len(seen) <= MAX_ATTEMPTS * n
    for (uri, result), data, i in zip(results, payloads, range(n)):
        assert uri == uris[i]
        faults = [s.fault for s in seen if s.target == f"/{bucket}/many/{i:03d}"]
        assert 1 <= len(faults) <= MAX_ATTEMPTS
        if isinstance(result, s3dlio.S3dlioError):
            assert result.uri == uri and uri in str(result)
            assert len(faults) == MAX_ATTEMPTS, (uri, faults, result)
            assert all(f.kind in FAILING_KINDS for f in faults)
            assert type(result) is _expected_error(faults[-1]), (faults[-1], result)
        else:
            assert bytes(result) == data, (uri, [f.label for f in faults], len(result))
            # Every attempt before the good one met a fault; the good one none.
            assert all(f.kind in FAILING_KINDS for f in faults[:-1]), faults
            assert faults[-1].kind in ("pass", "latency"), faults


# ---- multipart through the proxy -----------------------------------------------

@pytest.fixture
def small_parts(monkeypatch):
    monkeypatch.setenv("S3DLIO_MULTIPART_THRESHOLD", str(6 << 20))
    monkeypatch.setenv("S3DLIO_MULTIPART_PART_SIZE", str(5 << 20))


def _is_part(number: int):
    return lambda method, target: method == "PUT" and f"partNumber={number}&" in target


@pytest.mark.parametrize("fault", [
    pytest.param(RESET, id="reset"),
    pytest.param(SLOW_DOWN, id="503-slowdown"),
    pytest.param(HEADERS_CUT, id="truncate-in-headers"),
])
def test_multipart_part_fault_is_retried(proxy, bucket, boto, small_parts, fault):
    key = "mp/big.bin"
    data = os.urandom(11 << 20)
    proxy.script([fault], match=_is_part(2))
    s3dlio.put(f"s3://{bucket}/{key}", data)
    assert body_of(boto, bucket, key) == data
    part2 = [s for s in proxy.seen if _is_part(2)(s.method, s.target)]
    assert [s.fault for s in part2] == [fault, Fault.passthrough()]
    assert boto.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


# ---- CompleteMultipartUpload answering 200 with an <Error> ---------------------

@pytest.fixture
def scripted(monkeypatch, small_parts):
    """Starts a scripted S3 with the given CompleteMultipartUpload replies
    and points s3dlio at it."""
    started = []

    def make(replies=(), then=None):
        server = scripted_s3.start(replies, then)
        started.append(server)
        for k, v in server.env().items():
            monkeypatch.setenv(k, v)
        return server

    try:
        yield make
    finally:
        for server in started:
            server.stop()


MP_DATA = 11 << 20  # three parts: 5 + 5 + 1 MiB


def test_complete_200_with_error_fails_typed_and_aborts(scripted):
    server = scripted()  # every CompleteMultipartUpload: 200 + <Error>InternalError
    uri = "s3://bucket/big.bin"
    started = time.monotonic()
    with pytest.raises(s3dlio.S3dlioError) as info:
        s3dlio.put(uri, os.urandom(MP_DATA))
    assert time.monotonic() - started < FAIL_BOUND_S
    err = info.value
    assert type(err) is s3dlio.StorageIOError, repr(err)
    assert err.code == "InternalError"
    assert err.uri == uri and uri in str(err)
    kinds = server.kinds()
    assert kinds == ["initiate", "part", "part", "part"] + ["complete"] * MAX_ATTEMPTS + ["abort"]
    abort = server.seen[-1]
    assert abort.method == "DELETE" and abort.path == "/bucket/big.bin"
    assert abort.query == {"uploadId": [scripted_s3.UPLOAD_ID]}


def test_complete_200_with_error_once_is_retried(scripted):
    server = scripted([error_in_200()], then=complete_ok())
    s3dlio.put("s3://bucket/big.bin", os.urandom(MP_DATA))
    assert server.kinds() == ["initiate", "part", "part", "part", "complete", "complete"]
    parts = sorted(int(s.query["partNumber"][0]) for s in server.seen if s.kind == "part")
    assert parts == [1, 2, 3]
    assert sum(s.body_len for s in server.seen if s.kind == "part") == MP_DATA


def _padded_error() -> Reply:
    # As S3 does while it assembles a large object: the declaration, then
    # keep-alive whitespace, then the real answer.
    return Reply(200, b'<?xml version="1.0" encoding="UTF-8"?>\n' + b" \n" * 4096
                 + b"<Error><Code>InternalError</Code><Message>We encountered an internal "
                   b"error. Please try again.</Message></Error>",
                 (("Content-Type", "application/xml"),))


def test_complete_200_with_late_error_fails_and_aborts(scripted):
    # The <Error> starts past the first 4 KiB of the body.
    server = scripted(then=_padded_error())
    uri = "s3://bucket/big.bin"
    with pytest.raises(s3dlio.S3dlioError) as info:
        s3dlio.put(uri, os.urandom(MP_DATA))
    assert type(info.value) is s3dlio.StorageIOError, repr(info.value)
    assert info.value.uri == uri
    kinds = server.kinds()
    assert kinds == ["initiate", "part", "part", "part"] + ["complete"] * MAX_ATTEMPTS + ["abort"]


def test_complete_200_with_late_error_keeps_its_code(scripted):
    scripted(then=_padded_error())
    with pytest.raises(s3dlio.StorageIOError) as info:
        s3dlio.put("s3://bucket/big.bin", os.urandom(MP_DATA))
    assert info.value.code == "InternalError"
    assert "We encountered an internal error" in str(info.value)


def test_complete_200_with_unexpected_document_fails_and_aborts(scripted):
    server = scripted(then=Reply(200, b"<html><body>hello from a proxy</body></html>",
                                 (("Content-Type", "text/html"),)))
    with pytest.raises(s3dlio.S3dlioError):
        s3dlio.put("s3://bucket/big.bin", os.urandom(MP_DATA))
    assert server.kinds()[-1] == "abort"
