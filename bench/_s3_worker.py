"""One S3 client under test, driven by bench/s3.py (not part of the s3dlio
package).

Runs in its own process, under the Python that has the client installed
(our s3dlio and the PyPI s3dlio share a module name, so each gets its own
process and venv).  Standard library only, apart from the client itself.

Protocol: one JSON object per line on stdin, one answer per line on the
file descriptor that was stdout at start (stdout itself is pointed at stderr,
so nothing a library prints can corrupt the answers).

  {"op": "init", "client": NAME, "endpoint": URL, "bucket": B,
   "max_in_flight": N, "access_key": ..., "secret_key": ..., "region": ...,
   "pool_path": PATH}
      -> {"ok": true, "version": "...", "features": [...]}
  {"op": "run", "case": "get_one" | "get_many" | "put_many", "keys": [...],
   "size": BYTES, "verify": {key: crc32}, "prestat": bool}
      -> {"ok": true, "wall": s, "cpu": s, "bytes": n, "files": n, "extra": {}}
  {"op": "quit"}

`wall` and `cpu` cover only the data-moving call: CPU is this process's
user + system time (every thread, native ones included) from getrusage
deltas.  Results are checked after the clock stops: every object's length,
and CRC-32 of the objects named in `verify`.  Clients (NAME):

  s3dlio          s3dlio.get / get_many / put_many (ours, or the PyPI one)
  s3dlio-into     s3dlio.get_into(uri, buffer) into one reused buffer
  boto3           get_object().read() / put_object in a ThreadPoolExecutor
  obstore         obstore.get(...).bytes(); get_async / put_async under a semaphore
  awscrt          awscrt.s3.S3Client meta requests, bodies copied into bytearrays
"""
from __future__ import annotations

import io
import json
import os
import resource
import sys
import time
import zlib
from typing import Any, Callable, Optional


def cpu_now() -> float:
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


class Payloads:
    """PUT bodies: object i = 8-byte big-endian index + a slice of a random
    pool that bench/s3.py wrote to `pool_path` (so it knows every CRC)."""

    def __init__(self, pool_path: str) -> None:
        with open(pool_path, "rb") as f:
            self.pool = f.read()

    def make(self, index: int, size: int) -> bytes:
        off = (index * 4096 * 7) % (len(self.pool) - size + 8)
        return index.to_bytes(8, "big") + self.pool[off:off + size - 8]


# ---- clients -----------------------------------------------------------------
# Each exposes get_one(key) -> buffer, get_many(keys) -> [buffer], put_many([(key, bytes)]),
# and release(results) (called after the clock stops).

class S3dlioClient:
    def __init__(self, cfg: dict) -> None:
        import s3dlio
        self.s3 = s3dlio
        self.bucket = cfg["bucket"]
        self.mif = cfg["max_in_flight"]
        self.version = getattr(s3dlio, "__version__", None) or _call(getattr(s3dlio, "version", None))

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def prestat(self, keys: list) -> None:
        # Fills the size cache (ours) so get() can split big objects into ranges.
        self.s3.get_many_stats([self.uri(k) for k in keys], self.mif)

    def get_one(self, key: str) -> Any:
        return self.s3.get(self.uri(key))

    def get_many(self, keys: list) -> list:
        return [v for _, v in self.s3.get_many([self.uri(k) for k in keys],
                                               max_in_flight=self.mif)]

    def put_many(self, items: list) -> None:
        self.s3.put_many([(self.uri(k), d) for k, d in items], max_in_flight=self.mif)

    def release(self, views: list) -> None:
        for v in views:
            rel = getattr(v, "release", None)
            if rel is not None:
                rel()


class S3dlioIntoClient(S3dlioClient):
    """s3dlio.get_into(uri, buffer): the caller's buffer, reused every time."""

    def __init__(self, cfg: dict) -> None:
        super().__init__(cfg)
        if not hasattr(self.s3, "get_into"):
            raise NotImplementedError("this s3dlio has no get_into(uri, buffer)")
        self.buf = bytearray()

    def get_one(self, key: str) -> Any:
        n = self.s3.get_into(self.uri(key), self.buf)
        return memoryview(self.buf)[:n if isinstance(n, int) else len(self.buf)]

    def prepare(self, size: int) -> None:
        if len(self.buf) < size:
            self.buf = bytearray(size)
            self.buf[::4096] = b"\0" * len(self.buf[::4096])  # fault the pages in, untimed


class Boto3Client:
    def __init__(self, cfg: dict) -> None:
        import boto3
        from botocore.config import Config
        from concurrent.futures import ThreadPoolExecutor
        self.version = boto3.__version__
        self.bucket = cfg["bucket"]
        self.client = boto3.client(
            "s3", endpoint_url=cfg["endpoint"], region_name=cfg["region"],
            aws_access_key_id=cfg["access_key"], aws_secret_access_key=cfg["secret_key"],
            config=Config(s3={"addressing_style": "path"},
                          max_pool_connections=cfg["max_in_flight"],
                          request_checksum_calculation="when_required",
                          response_checksum_validation="when_required"))
        self.pool = ThreadPoolExecutor(cfg["max_in_flight"])

    def get_one(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def get_many(self, keys: list) -> list:
        return list(self.pool.map(self.get_one, keys))

    def _put(self, item: tuple) -> None:
        self.client.put_object(Bucket=self.bucket, Key=item[0], Body=item[1])

    def put_many(self, items: list) -> None:
        list(self.pool.map(self._put, items))

    def release(self, results: list) -> None:
        pass


class ObstoreClient:
    def __init__(self, cfg: dict) -> None:
        import asyncio
        import obstore
        from obstore.store import S3Store
        self.obs = obstore
        self.version = obstore.__version__
        self.mif = cfg["max_in_flight"]
        self.store = S3Store(cfg["bucket"], endpoint=cfg["endpoint"], region=cfg["region"],
                             access_key_id=cfg["access_key"],
                             secret_access_key=cfg["secret_key"],
                             virtual_hosted_style_request=False,
                             client_options={"allow_http": True})
        self.loop = asyncio.new_event_loop()

    def get_one(self, key: str) -> Any:
        return self.obs.get(self.store, key).bytes()

    async def _get_all(self, keys: list) -> list:
        import asyncio
        sem = asyncio.Semaphore(self.mif)

        async def one(k: str) -> Any:
            async with sem:
                r = await self.obs.get_async(self.store, k)
                return await r.bytes_async()
        return await asyncio.gather(*(one(k) for k in keys))

    async def _put_all(self, items: list) -> None:
        import asyncio
        sem = asyncio.Semaphore(self.mif)

        async def one(k: str, d: bytes) -> None:
            async with sem:
                await self.obs.put_async(self.store, k, d)
        await asyncio.gather(*(one(k, d) for k, d in items))

    def get_many(self, keys: list) -> list:
        return self.loop.run_until_complete(self._get_all(keys))

    def put_many(self, items: list) -> None:
        self.loop.run_until_complete(self._put_all(items))

    def release(self, results: list) -> None:
        pass


class AwsCrtClient:
    def __init__(self, cfg: dict) -> None:
        import threading
        import awscrt
        from awscrt.auth import AwsCredentialsProvider
        from awscrt.http import HttpHeaders, HttpRequest
        from awscrt.io import ClientBootstrap, DefaultHostResolver, EventLoopGroup
        from awscrt.s3 import (S3Client, S3RequestTlsMode, S3RequestType,
                               create_default_s3_signing_config)
        self.HttpHeaders, self.HttpRequest, self.S3RequestType = HttpHeaders, HttpRequest, S3RequestType
        self.version = getattr(awscrt, "__version__", None)
        if self.version is None:
            from importlib.metadata import version
            self.version = version("awscrt")
        self.bucket = cfg["bucket"]
        self.host = cfg["endpoint"].split("://", 1)[1].rstrip("/")
        self.mif = cfg["max_in_flight"]
        elg = EventLoopGroup()
        bootstrap = ClientBootstrap(elg, DefaultHostResolver(elg))
        creds = AwsCredentialsProvider.new_static(cfg["access_key"], cfg["secret_key"])
        self.client = S3Client(
            bootstrap=bootstrap, region=cfg["region"], tls_mode=S3RequestTlsMode.DISABLED,
            signing_config=create_default_s3_signing_config(region=cfg["region"],
                                                            credential_provider=creds),
            part_size=8 << 20, multipart_upload_threshold=1 << 40, throughput_target_gbps=10.0,
            max_active_connections_override=self.mif)
        self.sem = threading.BoundedSemaphore(self.mif)

    def _get(self, key: str) -> tuple:
        """Starts one GET; returns (request, holder) where holder[0] becomes the body."""
        holder: list = [bytearray()]

        def on_headers(status_code: int, headers: list, **kw: Any) -> None:
            total = None
            for name, value in headers:
                lname = name.lower()
                if lname == "content-range" and "/" in value:
                    tail = value.rsplit("/", 1)[1]
                    if tail.isdigit():
                        total = int(tail)
                elif lname == "content-length" and total is None and value.isdigit():
                    total = int(value)
            if total is not None and status_code < 300:
                holder[0] = bytearray(total)

        def on_body(chunk: bytes, offset: int, **kw: Any) -> None:
            buf = holder[0]
            end = offset + len(chunk)
            if end > len(buf):
                buf.extend(b"\0" * (end - len(buf)))
            buf[offset:end] = chunk

        def on_done(**kw: Any) -> None:
            self.sem.release()

        req = self.HttpRequest("GET", f"/{self.bucket}/{key}",
                               self.HttpHeaders([("Host", self.host)]))
        self.sem.acquire()
        r = self.client.make_request(type=self.S3RequestType.GET_OBJECT, request=req,
                                     on_headers=on_headers, on_body=on_body, on_done=on_done)
        return r, holder

    def get_one(self, key: str) -> bytearray:
        r, holder = self._get(key)
        r.finished_future.result(300)
        return holder[0]

    def get_many(self, keys: list) -> list:
        started = [self._get(k) for k in keys]
        out = []
        for r, holder in started:
            r.finished_future.result(300)
            out.append(holder[0])
        return out

    def put_many(self, items: list) -> None:
        started = []
        for key, data in items:
            req = self.HttpRequest("PUT", f"/{self.bucket}/{key}",
                                   self.HttpHeaders([("Host", self.host),
                                                     ("Content-Length", str(len(data)))]),
                                   body_stream=io.BytesIO(data))
            status: list = []

            def on_done(status_code: int = 0, _box: list = status, **kw: Any) -> None:
                _box.append(status_code)
                self.sem.release()
            self.sem.acquire()
            started.append((self.client.make_request(
                type=self.S3RequestType.PUT_OBJECT, request=req, on_done=on_done), status))
        for r, status in started:
            try:
                r.finished_future.result(300)
            except Exception as e:
                # nginx's dav module answers 201 Created / 204 No Content where S3
                # answers 200; the CRT calls anything but 200 an error, without
                # retrying.  The object is stored (s3.py reads some back).
                if not (status and status[0] in (201, 204)
                        and "INVALID_RESPONSE_STATUS" in str(e)):
                    raise

    def release(self, results: list) -> None:
        pass


CLIENTS: dict[str, Callable[[dict], Any]] = {
    "s3dlio": S3dlioClient, "s3dlio-into": S3dlioIntoClient, "boto3": Boto3Client,
    "obstore": ObstoreClient, "awscrt": AwsCrtClient,
}


def _call(fn: Any) -> Any:
    try:
        return fn() if callable(fn) else fn
    except Exception:
        return None


# ---- one repetition ------------------------------------------------------------

_PUT_CACHE: dict = {}


def run_case(client: Any, cmd: dict, payloads: Optional[Payloads]) -> dict:
    case, keys, size = cmd["case"], cmd["keys"], cmd["size"]
    items: list = []
    if cmd.get("prestat"):
        client.prestat(keys)
    if hasattr(client, "prepare"):
        client.prepare(size)
    if case == "put_many":  # bodies built once per key set, outside the timing
        tag = (keys[0], keys[-1], len(keys), size)
        if _PUT_CACHE.get("tag") != tag:
            assert payloads is not None, "init had no pool_path"
            _PUT_CACHE.clear()
            _PUT_CACHE["items"] = [(k, payloads.make(int(k.rsplit("-", 1)[1]), size))
                                   for k in keys]
            _PUT_CACHE["tag"] = tag
        items = _PUT_CACHE["items"]
    c0, t0 = cpu_now(), time.perf_counter()
    if case == "get_one":
        results = [client.get_one(keys[0])]
    elif case == "get_many":
        results = client.get_many(keys)
    elif case == "put_many":
        client.put_many(items)
        results = []
    else:
        raise ValueError(f"unknown case {case!r}")
    wall, cpu = time.perf_counter() - t0, cpu_now() - c0
    if case == "put_many":
        nbytes, files = sum(len(d) for _, d in items), len(items)
    else:
        lengths = [len(r) for r in results]
        bad = [(k, n) for k, n in zip(keys, lengths) if n != size]
        if len(results) != len(keys) or bad:
            raise RuntimeError(f"{len(results)} results for {len(keys)} keys; "
                               f"wrong lengths (key, got): {bad[:3]} expected {size}")
        for key, want in (cmd.get("verify") or {}).items():
            got = zlib.crc32(results[keys.index(key)]) & 0xFFFFFFFF
            if got != want:
                raise RuntimeError(f"CRC-32 mismatch on {key}: {got:08x} != {want:08x}")
        nbytes, files = sum(lengths), len(results)
    client.release(results)
    del results
    return {"ok": True, "wall": wall, "cpu": cpu, "bytes": nbytes, "files": files, "extra": {}}


def main() -> int:
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # stray prints from libraries go to stderr
    sys.stdout = sys.stderr
    client, payloads = None, None
    for line in sys.stdin:
        if not line.strip():
            continue
        cmd = json.loads(line)
        try:
            if cmd["op"] == "quit":
                break
            if cmd["op"] == "init":
                client = CLIENTS[cmd["client"]](cmd)
                payloads = Payloads(cmd["pool_path"]) if cmd.get("pool_path") else None
                answer = {"ok": True, "version": str(client.version),
                          "python": sys.version.split()[0], "pid": os.getpid()}
            elif cmd["op"] == "run":
                answer = run_case(client, cmd, payloads)
            else:
                raise ValueError(f"unknown op {cmd['op']!r}")
        except NotImplementedError as e:
            answer = {"ok": False, "unsupported": True, "error": str(e)}
        except Exception as e:  # reported to the parent, which decides
            import traceback
            answer = {"ok": False, "error": f"{type(e).__name__}: {e}",
                      "traceback": traceback.format_exc()[-3000:]}
        out.write(json.dumps(answer) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
