"""A scripted fault-injecting HTTP/1.1 proxy on 127.0.0.1, in front of a
real upstream (moto server).

It runs an asyncio server on its own event loop in a background thread.
Every request it reads takes the next fault of a script (a list consumed
one per request, in arrival order); when the script is used up, every
further request gets ``then`` (pass-through unless told otherwise).  Faults:

``pass``      forward the request unchanged and the response as it came.
``reset``     read the request, forward nothing, reset the connection (RST);
              with ``after_response=True``: forward, send the response
              headers and part of the body (part of the headers when the
              body is empty), then reset.
``truncate``  forward, send the headers with the full Content-Length but only
              part of the body (part of the headers when the body is empty),
              then close cleanly (FIN).
``latency``   wait ``ms`` milliseconds, then forward as ``pass`` does.
``status``    answer a canned S3 error itself, without forwarding: 503
              ``SlowDown`` by default, or any status and code (500
              ``InternalError``), optionally with ``Retry-After``.
``corrupt``   forward, then flip bytes of a non-empty 2xx response body,
              keeping its length.

Requests go upstream byte for byte as received, Host header included: SigV4
signs the Host the client used (the proxy's), and moto rebuilds the
canonical request from the headers it receives, so signatures still check.

Every loop is bounded: reads and writes have timeouts, headers and bodies a
size cap, a connection a request cap, and the proxy a cap on concurrent and
total connections.  Responses are sent with ``Connection: close`` unless
``keep_alive=True``, so every attempt of a client is one fresh connection and
the request count is exactly the client's attempt count (libcurl silently
re-sends a request once when a *reused* connection dies before any reply,
which would otherwise add requests the client never counted)."""
from __future__ import annotations

import asyncio
import collections
import socket
import struct
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable, List, Optional, Tuple
from urllib.parse import urlsplit

IO_TIMEOUT_S = 10.0
MAX_HEADER_BYTES = 64 * 1024
MAX_HEADER_LINES = 200
MAX_BODY_BYTES = 256 << 20
MAX_CONCURRENT_CONNECTIONS = 256
MAX_TOTAL_CONNECTIONS = 20_000
MAX_REQUESTS_PER_CONNECTION = 100
MAX_CHUNKS = 100_000
MAX_INTERIM_RESPONSES = 5
MAX_LATENCY_MS = 60_000
MAX_RECORDS = 100_000
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0

KINDS = ("pass", "reset", "truncate", "latency", "status", "corrupt")


@dataclass(frozen=True)
class Fault:
    """One scripted behaviour for one request (see the module docstring)."""

    kind: str = "pass"
    ms: int = 0                        # latency
    status: int = 503                  # status
    code: str = "SlowDown"             # status
    message: str = "Please reduce your request rate."
    retry_after: Optional[int] = None  # status: Retry-After seconds
    after_response: bool = False       # reset: after part of the response
    keep: float = 0.5                  # truncate / late reset: share of the body sent
    in_headers: bool = False           # truncate / late reset: cut inside the header block

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; one of {KINDS}")
        if not 0 <= self.ms <= MAX_LATENCY_MS:
            raise ValueError(f"latency must be 0..{MAX_LATENCY_MS} ms")
        if not 0.0 <= self.keep < 1.0:
            raise ValueError("keep must be in [0, 1)")

    @property
    def label(self) -> str:
        if self.kind == "status":
            return f"status {self.status} {self.code}"
        if self.kind == "reset" and self.after_response:
            return "reset after response start"
        if self.kind == "truncate" and self.in_headers:
            return f"truncate in headers ({self.keep:.0%})"
        if self.kind == "latency":
            return f"latency {self.ms} ms"
        return self.kind

    # -- the usual ones ------------------------------------------------------
    @staticmethod
    def passthrough() -> "Fault":
        return Fault("pass")

    @staticmethod
    def reset(after_response: bool = False, keep: float = 0.5) -> "Fault":
        return Fault("reset", after_response=after_response, keep=keep)

    @staticmethod
    def truncate(keep: float = 0.5, in_headers: bool = False) -> "Fault":
        """``in_headers``: the connection closes inside the header block,
        after the status line and ``keep`` of the rest of the headers (the
        blank line that ends them is never sent)."""
        return Fault("truncate", keep=keep, in_headers=in_headers)

    @staticmethod
    def latency(ms: int) -> "Fault":
        return Fault("latency", ms=ms)

    @staticmethod
    def slow_down(retry_after: Optional[int] = None) -> "Fault":
        return Fault("status", status=503, code="SlowDown",
                     message="Please reduce your request rate.", retry_after=retry_after)

    @staticmethod
    def internal_error(retry_after: Optional[int] = None) -> "Fault":
        return Fault("status", status=500, code="InternalError",
                     message="We encountered an internal error. Please try again.",
                     retry_after=retry_after)

    @staticmethod
    def corrupt() -> "Fault":
        return Fault("corrupt")


PASS = Fault.passthrough()

# A fault the client must see as a failed attempt (for a whole-object GET of
# an object with a stored checksum, "corrupt" is one too).
FAILING_KINDS = ("reset", "truncate", "status", "corrupt")


@dataclass(frozen=True)
class Seen:
    """A request the proxy read, and what it did with it."""

    method: str
    target: str
    fault: Fault
    at: float         # time.monotonic() when the request had been read
    connection: int   # serial number of the client connection it came on


@dataclass
class _Request:
    method: str
    target: str
    head: bytes
    body: bytes
    close: bool


@dataclass
class _Response:
    status_line: bytes
    headers: List[Tuple[str, str]]
    body: bytes


class _Malformed(Exception):
    pass


def _parse_head(head: bytes) -> Tuple[str, List[Tuple[str, str]]]:
    text = head.decode("latin-1")
    lines = text.split("\r\n")
    if len(lines) > MAX_HEADER_LINES:
        raise _Malformed("too many header lines")
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise _Malformed(f"bad header line {line!r}")
        headers.append((name, value.strip()))
    return lines[0], headers


def _header(headers: List[Tuple[str, str]], name: str) -> Optional[str]:
    name = name.lower()
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


def _content_length(headers: List[Tuple[str, str]]) -> Optional[int]:
    value = _header(headers, "content-length")
    if value is None:
        return None
    if not value.isdigit() or int(value) > MAX_BODY_BYTES:
        raise _Malformed(f"bad or too large Content-Length {value!r}")
    return int(value)


def _corrupt(body: bytes) -> bytes:
    """Flips every bit of three bytes (start, middle, end): same length."""
    out = bytearray(body)
    for i in {0, len(out) // 2, len(out) - 1}:
        out[i] ^= 0xFF
    return bytes(out)


def error_body(code: str, message: str, request_id: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>{message}</Message><RequestId>{request_id}</RequestId>"
            f"<HostId>chaos-proxy</HostId></Error>").encode()


class ChaosProxy:
    """Start with :meth:`start` (returns self), stop with :meth:`stop`."""

    def __init__(self, upstream: str, *, keep_alive: bool = False) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"upstream must be http://host:port, got {upstream!r}")
        self.upstream = upstream
        self._up_host = parts.hostname
        self._up_port = parts.port
        self.keep_alive = keep_alive
        self._lock = threading.Lock()
        self._plan: collections.deque = collections.deque()
        self._then: Fault = PASS
        self._match: Optional[Callable[[str, str], bool]] = None
        self._seen: List[Seen] = []
        self._connections_total = 0
        self._connections_active = 0
        self._refused_connections = 0
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._server: Optional[asyncio.base_events.Server] = None
        self._tasks: set = set()
        self.port = 0

    # -- control (any thread) ------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, faults: Iterable[Fault] = (), *, then: Fault = PASS,
               match: Optional[Callable[[str, str], bool]] = None) -> None:
        """Replaces the plan: ``faults`` for the next matching requests, one
        each, then ``then`` for every later one.  ``match(method, target)``
        picks the requests the plan applies to (default: all); the others
        pass through.  Also forgets the requests seen so far."""
        faults = list(faults)
        for f in faults + [then]:
            if not isinstance(f, Fault):
                raise TypeError(f"not a Fault: {f!r}")
        with self._lock:
            self._plan = collections.deque(faults)
            self._then = then
            self._match = match
            self._seen = []

    def clear(self) -> None:
        """Forgets the requests seen so far (the plan is kept)."""
        with self._lock:
            self._seen = []

    @property
    def seen(self) -> List[Seen]:
        with self._lock:
            return list(self._seen)

    @property
    def count(self) -> int:
        with self._lock:
            return len(self._seen)

    def count_of(self, method: str) -> int:
        return sum(1 for s in self.seen if s.method == method)

    @property
    def refused_connections(self) -> int:
        return self._refused_connections

    def _take(self, method: str, target: str, connection: int) -> Fault:
        with self._lock:
            if self._match is None or self._match(method, target):
                fault = self._plan.popleft() if self._plan else self._then
            else:
                fault = PASS
            if len(self._seen) < MAX_RECORDS:
                self._seen.append(Seen(method, target, fault, time.monotonic(), connection))
            return fault

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> "ChaosProxy":
        if self._thread is not None:
            raise RuntimeError("already started")
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name="chaos-proxy", daemon=True)
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._open(), loop)
        try:
            future.result(timeout=START_TIMEOUT_S)
        except BaseException:
            self.stop()
            raise
        return self

    def _run(self) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            # A connection accepted while stopping may still have a task:
            # finish every task on this loop before closing it, or its
            # clean-up would run on a closed loop (an unraisable error).
            pending = [t for t in asyncio.all_tasks(self._loop) if not t.done()]
            for t in pending:
                t.cancel()
            if pending:
                self._loop.run_until_complete(asyncio.wait(pending, timeout=STOP_TIMEOUT_S / 2))
            self._loop.close()

    async def _open(self) -> None:
        self._server = await asyncio.start_server(self._on_connection, "127.0.0.1", 0,
                                                  limit=MAX_HEADER_BYTES, backlog=128)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = [t for t in self._tasks if not t.done()]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_TIMEOUT_S / 2)
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.wait_closed(), STOP_TIMEOUT_S / 4)
            except asyncio.TimeoutError:
                pass

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(self._close(), loop).result(STOP_TIMEOUT_S)
            except Exception:
                pass
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=STOP_TIMEOUT_S)
        self._thread = None

    def __enter__(self) -> "ChaosProxy":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- one client connection (event loop thread) ---------------------------
    async def _on_connection(self, reader: asyncio.StreamReader,
                             writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if (self._connections_active >= MAX_CONCURRENT_CONNECTIONS
                or self._connections_total >= MAX_TOTAL_CONNECTIONS):
            self._refused_connections += 1
            writer.close()
            return
        self._connections_active += 1
        self._connections_total += 1
        connection = self._connections_total
        if task is not None:
            self._tasks.add(task)
        # Zero high-water mark: drain() returns only once all is handed to
        # the kernel, so a reset never discards what was meant to be sent.
        writer.transport.set_write_buffer_limits(high=0)
        try:
            for _ in range(MAX_REQUESTS_PER_CONNECTION):
                request = await self._read_request(reader)
                if request is None:
                    break
                fault = self._take(request.method, request.target, connection)
                if not await self._serve(request, fault, writer):
                    break
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ConnectionError, OSError, _Malformed):
            pass
        finally:
            self._connections_active -= 1
            if task is not None:
                self._tasks.discard(task)
            if not writer.is_closing():
                try:
                    writer.close()
                except RuntimeError:  # the loop is closing under us
                    pass
            try:
                await asyncio.wait_for(writer.wait_closed(), 1.0)
            except (asyncio.TimeoutError, ConnectionError, OSError):
                pass

    async def _read_request(self, reader: asyncio.StreamReader) -> Optional[_Request]:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IO_TIMEOUT_S)
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                return None  # the client closed between requests
            raise
        request_line, headers = _parse_head(head)
        parts = request_line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _Malformed(f"bad request line {request_line!r}")
        if (_header(headers, "transfer-encoding") or "").lower() not in ("", "identity"):
            raise _Malformed("chunked request bodies are not supported")
        length = _content_length(headers) or 0
        body = await asyncio.wait_for(reader.readexactly(length), IO_TIMEOUT_S) if length else b""
        close = ((_header(headers, "connection") or "").lower() == "close"
                 or parts[2] == "HTTP/1.0")
        return _Request(parts[0], parts[1], head, body, close)

    async def _serve(self, request: _Request, fault: Fault, writer: asyncio.StreamWriter) -> bool:
        """Answers one request; returns whether the connection stays open."""
        keep = self.keep_alive and not request.close
        if fault.kind == "reset" and not fault.after_response:
            self._reset(writer)
            return False
        if fault.kind == "status":
            response = self._canned(fault)
        else:
            if fault.kind == "latency":
                await asyncio.sleep(fault.ms / 1000)
            try:
                response = await self._forward(request)
            except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                    ConnectionError, OSError, _Malformed) as exc:
                response = self._bad_gateway(exc)
                keep = False
        status = int(response.status_line.split(b" ")[1])
        body = response.body
        if fault.kind == "corrupt" and 200 <= status < 300 and body:
            body = _corrupt(body)
        headers = [(k, v) for k, v in response.headers
                   if k.lower() not in ("connection", "keep-alive")]
        headers.append(("Connection", "keep-alive" if keep else "close"))
        head = response.status_line + b"\r\n" + b"".join(
            f"{k}: {v}\r\n".encode("latin-1") for k, v in headers) + b"\r\n"
        if request.method == "HEAD":
            body = b""
        if fault.kind in ("truncate", "reset"):
            if body and not fault.in_headers:
                partial = head + body[:int(len(body) * fault.keep)]
            else:
                # Inside the header block: the status line, then a share of
                # the header lines, never the blank line that ends them.
                first = len(response.status_line) + 2
                rest = len(head) - 2 - first
                partial = head[:first + int(rest * fault.keep)]
            writer.write(partial)
            await asyncio.wait_for(writer.drain(), IO_TIMEOUT_S)
            if fault.kind == "reset":
                await asyncio.sleep(0.05)  # let the bytes leave before the RST
                self._reset(writer)
            else:
                writer.close()
            return False
        writer.write(head + body)
        await asyncio.wait_for(writer.drain(), IO_TIMEOUT_S)
        return keep

    @staticmethod
    def _reset(writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        writer.transport.abort()

    def _canned(self, fault: Fault) -> _Response:
        request_id = f"chaos-{self.count}"
        body = error_body(fault.code, fault.message, request_id)
        reason = {500: "Internal Server Error", 503: "Service Unavailable",
                  502: "Bad Gateway", 504: "Gateway Timeout", 429: "Too Many Requests"}
        headers = [("Content-Type", "application/xml"), ("Content-Length", str(len(body))),
                   ("x-amz-request-id", request_id), ("Server", "chaos-proxy")]
        if fault.retry_after is not None:
            headers.append(("Retry-After", str(fault.retry_after)))
        line = f"HTTP/1.1 {fault.status} {reason.get(fault.status, 'Error')}".encode()
        return _Response(line, headers, body)

    def _bad_gateway(self, exc: BaseException) -> _Response:
        body = error_body("BadGateway", f"chaos proxy upstream failure: {type(exc).__name__}",
                          "chaos-upstream")
        return _Response(b"HTTP/1.1 502 Bad Gateway",
                         [("Content-Type", "application/xml"),
                          ("Content-Length", str(len(body)))], body)

    # -- upstream ------------------------------------------------------------
    async def _forward(self, request: _Request) -> _Response:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self._up_host, self._up_port, limit=MAX_HEADER_BYTES),
            IO_TIMEOUT_S)
        try:
            writer.write(request.head + request.body)
            await asyncio.wait_for(writer.drain(), IO_TIMEOUT_S)
            for _ in range(MAX_INTERIM_RESPONSES + 1):
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IO_TIMEOUT_S)
                status_line, headers = _parse_head(head)
                fields = status_line.split(" ", 2)
                if len(fields) < 2 or not fields[0].startswith("HTTP/1.") or \
                        not fields[1].isdigit():
                    raise _Malformed(f"bad status line {status_line!r}")
                status = int(fields[1])
                if status >= 200:
                    break
            else:
                raise _Malformed("too many interim responses")
            if request.method == "HEAD" or status in (204, 304):
                body = b""
            elif (_header(headers, "transfer-encoding") or "").lower() == "chunked":
                body = await self._read_chunked(reader)
                headers = [(k, v) for k, v in headers if k.lower() != "transfer-encoding"]
                headers.append(("Content-Length", str(len(body))))
            else:
                length = _content_length(headers)
                if length is not None:
                    body = await asyncio.wait_for(reader.readexactly(length), IO_TIMEOUT_S)
                else:
                    body = await self._read_to_eof(reader)
                    headers.append(("Content-Length", str(len(body))))
            return _Response(status_line.encode("latin-1"), headers, body)
        finally:
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), 1.0)
            except (asyncio.TimeoutError, ConnectionError, OSError):
                pass

    @staticmethod
    async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
        body = bytearray()
        for _ in range(MAX_CHUNKS):
            line = await asyncio.wait_for(reader.readuntil(b"\r\n"), IO_TIMEOUT_S)
            size = int(line.split(b";")[0].strip() or b"x", 16)
            if size == 0:
                for _ in range(MAX_HEADER_LINES):  # trailers, then the empty line
                    if await asyncio.wait_for(reader.readuntil(b"\r\n"), IO_TIMEOUT_S) == b"\r\n":
                        return bytes(body)
                raise _Malformed("too many trailers")
            if len(body) + size > MAX_BODY_BYTES:
                raise _Malformed("chunked body too large")
            body += await asyncio.wait_for(reader.readexactly(size + 2), IO_TIMEOUT_S)
            del body[-2:]
        raise _Malformed("too many chunks")

    @staticmethod
    async def _read_to_eof(reader: asyncio.StreamReader) -> bytes:
        body = bytearray()
        for _ in range(MAX_BODY_BYTES // 65536 + 2):
            data = await asyncio.wait_for(reader.read(65536), IO_TIMEOUT_S)
            if not data:
                return bytes(body)
            body += data
            if len(body) > MAX_BODY_BYTES:
                raise _Malformed("body too large")
        raise _Malformed("body too large")


def start(upstream: str, *, keep_alive: bool = False) -> ChaosProxy:
    return ChaosProxy(upstream, keep_alive=keep_alive).start()
