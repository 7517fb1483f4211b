"""A scripted GCS JSON-API stand-in on 127.0.0.1, for what fake-gcs-server
cannot be made to do: wrong ``x-goog-hash`` headers, failing chunks of a
resumable upload, and resumable status queries answered as GCS answers
them (fake-gcs-server finalizes the object on a status query instead).

It keeps objects in memory and records every request.  It answers:

* ``GET /storage/v1/b/B/o/K?alt=media``: the object, with
  ``x-goog-hash: crc32c=...`` of the whole object (``wrong_hash`` replaces
  it), after the next scripted media fault;
* ``GET /storage/v1/b/B/o/K``: the object's JSON metadata;
* ``GET /storage/v1/b/B/o?prefix=&delimiter=&pageToken=``: a listing in
  pages of ``page_size`` entries, with page tokens that need URL encoding;
* ``POST /upload/storage/v1/b/B/o?uploadType=resumable&name=K``: 200 and a
  session ``Location`` (412 when ``ifGenerationMatch=0`` and K exists);
* ``PUT <session>`` with ``Content-Range: bytes A-B/N``: stores the bytes
  past what the session holds (a resent overlap is skipped, a gap is a
  protocol violation), then 308 with ``Range: bytes=0-M`` or, once all N
  bytes are there, 200 and the object's JSON; a chunk may be scripted to
  fail (see :class:`Chunk`);
* ``PUT <session>`` with ``Content-Range: bytes */N``: the status query,
  308 (with ``Range`` when something is held) or 200 when complete;
* ``POST /upload/storage/v1/b/B/o?uploadType=multipart``: the object from a
  multipart/related body;
* ``DELETE /storage/v1/b/B/o/K``: 204, or 404 with GCS's own messages for
  a missing object ("No such object: B/K") and a missing bucket ("The
  specified bucket does not exist."), both with reason ``notFound``; a
  bucket exists when it holds an object or is in ``buckets``;
* anything else: 404 in GCS's JSON error form.

Every response closes its connection, so the request count is the client's
attempt count.  Bounded: a socket timeout per connection, a body size cap,
and a cap on requests served."""
from __future__ import annotations

import base64
import collections
import hashlib
import json
import socket
import struct
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Callable, Deque, Dict, List, Optional, Tuple
from urllib.parse import parse_qs, unquote, urlsplit

from ._scripted import ScriptedServer, SeenRequest

_TOKEN = "tok+/= &?"  # characters a page token must be URL-encoded for
SOCKET_TIMEOUT_S = 10.0
MAX_BODY_BYTES = 64 << 20
MAX_REQUESTS = 5_000


def crc32c_b64(data: bytes) -> str:
    import crc32c
    return base64.b64encode(crc32c.crc32c(data).to_bytes(4, "big")).decode()


@dataclass(frozen=True)
class Chunk:
    """What happens to one resumable chunk PUT (not a status query).

    ``ok``           store it, answer 308 or 200;
    ``reset``        read it, store nothing, reset the connection (RST);
    ``stored_reset`` store it, then reset the connection (the client never
                     learns that it arrived);
    ``status``       store nothing, answer ``status`` (503 by default);
    ``partial``      store only the first ``keep`` bytes of it, answer 308."""

    kind: str = "ok"
    status: int = 503
    keep: int = 0


@dataclass(frozen=True)
class Seen(SeenRequest):
    body_len: int

    @property
    def content_range(self) -> str:
        return self.headers.get("content-range", "")

    @property
    def kind(self) -> str:
        q = self.query
        if self.method == "POST" and q.get("uploadType") == ["resumable"]:
            return "start"
        if self.method == "PUT" and "upload_id" in q:
            return "status" if self.content_range.startswith("bytes */") else "chunk"
        if self.method == "GET" and q.get("alt") == ["media"]:
            return "media"
        return f"{self.method} other"


@dataclass
class Session:
    bucket: str
    name: str
    declared: Optional[int]
    data: bytearray = field(default_factory=bytearray)
    final_hash: Optional[str] = None
    done: bool = False


class ScriptedGcs(ScriptedServer):
    """``chunk_script`` decides each chunk PUT, by its 0-based arrival index
    among chunk PUTs and its Content-Range start; ``media_faults`` are taken
    one per media GET (``"ok"``, ``"reset"`` or an HTTP status), then
    ``"ok"``."""

    max_requests = MAX_REQUESTS
    thread_name = "scripted-gcs"

    def __init__(self) -> None:
        super().__init__()
        self.objects: Dict[Tuple[str, str], bytes] = {}
        self.buckets: set = set()
        self.sessions: Dict[str, Session] = {}
        self.wrong_hash = False
        self.page_size = 1000
        self.chunk_script: Callable[[int, int], Chunk] = lambda index, start: Chunk()
        self.media_faults: Deque = collections.deque()
        self.violations: List[str] = []
        self._chunks = 0

    def handler_class(self) -> type:
        return _handler(self)

    # -- called by the handler, under no lock unless said ------------------
    def _next_chunk(self, start: int) -> Chunk:
        with self._lock:
            index = self._chunks
            self._chunks += 1
        return self.chunk_script(index, start)

    def _next_media(self):
        with self._lock:
            return self.media_faults.popleft() if self.media_faults else "ok"

    def _meta(self, bucket: str, name: str) -> dict:
        data = self.objects[(bucket, name)]
        return {"kind": "storage#object", "bucket": bucket, "name": name,
                "size": str(len(data)), "crc32c": crc32c_b64(data),
                "md5Hash": base64.b64encode(hashlib.md5(data).digest()).decode(),
                "generation": "1", "contentType": "application/octet-stream",
                "updated": "2026-01-01T00:00:00.000Z"}


def _reset(conn: socket.socket) -> None:
    """Closes with RST rather than FIN: SO_LINGER on, timeout 0."""
    try:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass


def _handler(owner: ScriptedGcs):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            self.connection.settimeout(SOCKET_TIMEOUT_S)

        def log_message(self, *args: object) -> None:
            pass

        # -- helpers ---------------------------------------------------------
        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                raise ValueError("body too large")
            return self.rfile.read(length) if length else b""

        def _send(self, status: int, body: bytes = b"",
                  headers: Tuple[Tuple[str, str], ...] = ()) -> None:
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if body and self.command != "HEAD":
                self.wfile.write(body)
            self.close_connection = True

        def _json(self, status: int, doc: dict,
                  headers: Tuple[Tuple[str, str], ...] = ()) -> None:
            self._send(status, json.dumps(doc).encode(),
                       (("Content-Type", "application/json"),) + headers)

        def _error(self, status: int, reason: str, message: str = "") -> None:
            message = message or reason
            self._json(status, {"error": {"code": status, "message": message,
                                          "errors": [{"message": message, "domain": "global",
                                                      "reason": reason}]}})

        def _drop(self) -> None:
            _reset(self.connection)
            self.close_connection = True

        def _handle(self) -> None:
            split = urlsplit(self.path)
            query = parse_qs(split.query, keep_blank_values=True)
            body = self._body() if self.command in ("POST", "PUT") else b""
            if not owner._record(Seen(self.command, unquote(split.path), query,
                                      {k.lower(): v for k, v in self.headers.items()},
                                      len(body))):
                return self._error(503, "request cap reached")
            parts = split.path.split("/")
            if split.path.startswith("/upload/storage/v1/b/") and self.command == "POST":
                return self._upload(unquote(parts[5]), query, body)
            if self.command == "PUT" and "upload_id" in query:
                return self._chunk(query["upload_id"][0], body)
            if (split.path.startswith("/storage/v1/b/") and len(parts) == 6
                    and parts[5] == "o" and self.command == "GET"):
                return self._list(unquote(parts[4]), query)
            if (split.path.startswith("/storage/v1/b/") and len(parts) == 7
                    and parts[5] == "o" and self.command == "GET"):
                return self._get(unquote(parts[4]), unquote(parts[6]), query)
            if (split.path.startswith("/storage/v1/b/") and len(parts) == 7
                    and parts[5] == "o" and self.command == "DELETE"):
                return self._delete(unquote(parts[4]), unquote(parts[6]))
            self._error(404, "notFound")

        def _delete(self, bucket: str, name: str) -> None:
            if owner.objects.pop((bucket, name), None) is not None:
                return self._send(204)
            if bucket in owner.buckets or any(b == bucket for b, _ in owner.objects):
                return self._error(404, "notFound", f"No such object: {bucket}/{name}")
            self._error(404, "notFound", "The specified bucket does not exist.")

        def _upload(self, bucket: str, query: Dict[str, List[str]], body: bytes) -> None:
            kind = query.get("uploadType", [""])[0]
            if kind == "multipart":
                name, data = _split_multipart(self.headers.get("Content-Type", ""), body)
                if query.get("ifGenerationMatch") == ["0"] and (bucket, name) in owner.objects:
                    return self._error(412, "conditionNotMet")
                owner.objects[(bucket, name)] = data
                return self._json(200, owner._meta(bucket, name))
            if kind != "resumable":
                return self._error(400, "invalid")
            name = query.get("name", [""])[0]
            if query.get("ifGenerationMatch") == ["0"] and (bucket, name) in owner.objects:
                return self._error(412, "conditionNotMet")
            declared = self.headers.get("X-Upload-Content-Length")
            session_id = f"s{len(owner.sessions) + 1}"
            owner.sessions[session_id] = Session(bucket, name,
                                                 int(declared) if declared else None)
            location = (f"{owner.endpoint}/upload/storage/v1/b/{bucket}/o?uploadType=resumable"
                        f"&upload_id={session_id}")
            self._send(200, b"", (("Location", location),))

        def _progress(self, session: Session) -> None:
            if session.done:
                return self._json(200, owner._meta(session.bucket, session.name))
            held = len(session.data)
            headers = (("Range", f"bytes=0-{held - 1}"),) if held else ()
            self._send(308, b"", headers)

        def _chunk(self, session_id: str, body: bytes) -> None:
            session = owner.sessions.get(session_id)
            if session is None:
                return self._error(404, "noSuchUpload")
            content_range = self.headers.get("Content-Range", "")
            if not content_range.startswith("bytes "):
                owner.violations.append(f"Content-Range {content_range!r}")
                return self._error(400, "badContentRange")
            span, _, total_text = content_range[len("bytes "):].partition("/")
            total = None if total_text == "*" else int(total_text)
            if span == "*":  # a status query, or the empty final chunk of a 0-byte object
                if body:
                    owner.violations.append("status query with a body")
                if total is not None and total == len(session.data) and not session.done:
                    self._finish(session, total)
                return self._progress(session)
            first_text, _, last_text = span.partition("-")
            first, last = int(first_text), int(last_text)
            if last - first + 1 != len(body):
                owner.violations.append(f"{content_range} with {len(body)} bytes")
                return self._error(400, "badContentRange")
            if total is not None and session.declared is not None and total != session.declared:
                owner.violations.append(f"total {total} != declared {session.declared}")
            if first > len(session.data):
                owner.violations.append(f"gap: chunk at {first}, {len(session.data)} held")
                return self._error(400, "gap")
            action = owner._next_chunk(first)
            if action.kind == "reset":
                return self._drop()
            if action.kind == "status":
                return self._error(action.status, "backendError")
            if session.done:
                return self._drop() if action.kind == "stored_reset" else self._progress(session)
            fresh = body[len(session.data) - first:]
            if action.kind == "partial":
                fresh = fresh[:max(0, action.keep - (len(session.data) - first))]
            session.data += fresh
            if "x-goog-hash" in self.headers:
                session.final_hash = self.headers["x-goog-hash"]
            if action.kind != "partial" and total is not None and len(session.data) == total:
                self._finish(session, total)
            if action.kind == "stored_reset":
                return self._drop()
            self._progress(session)

        def _finish(self, session: Session, total: int) -> None:
            data = bytes(session.data)
            if session.final_hash is not None and session.final_hash != (
                    f"crc32c={crc32c_b64(data)}"):
                owner.violations.append(f"final x-goog-hash {session.final_hash} does not "
                                        f"match the data")
            owner.objects[(session.bucket, session.name)] = data
            session.done = True

        def _list(self, bucket: str, query: Dict[str, List[str]]) -> None:
            prefix = query.get("prefix", [""])[0]
            delimiter = query.get("delimiter", [""])[0]
            entries: List[Tuple[str, str]] = []
            for name in sorted(n for b, n in owner.objects if b == bucket
                               and n.startswith(prefix)):
                cut = name.find(delimiter, len(prefix)) if delimiter else -1
                entry = ("prefix", name[:cut + len(delimiter)]) if cut >= 0 else ("item", name)
                if entry not in entries:
                    entries.append(entry)
            token = query.get("pageToken", [""])[0]
            start = 0
            if token:
                if not token.startswith(_TOKEN):
                    owner.violations.append(f"page token {token!r}")
                    return self._error(400, "invalidPageToken")
                start = int(token[len(_TOKEN):])
            page = entries[start:start + owner.page_size]
            doc: dict = {"kind": "storage#objects",
                         "items": [owner._meta(bucket, n) for kind, n in page if kind == "item"],
                         "prefixes": [n for kind, n in page if kind == "prefix"]}
            if start + owner.page_size < len(entries):
                doc["nextPageToken"] = f"{_TOKEN}{start + owner.page_size}"
            self._json(200, doc)

        def _get(self, bucket: str, name: str, query: Dict[str, List[str]]) -> None:
            if (bucket, name) not in owner.objects:
                return self._error(404, "notFound")
            if query.get("alt") != ["media"]:
                return self._json(200, owner._meta(bucket, name))
            fault = owner._next_media()
            if fault == "reset":
                return self._drop()
            if isinstance(fault, int):
                return self._error(fault, "backendError")
            data = owner.objects[(bucket, name)]
            crc = crc32c_b64(b"\xff" + data) if owner.wrong_hash else crc32c_b64(data)
            md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
            self._send(200, data, (("Content-Type", "application/octet-stream"),
                                   ("x-goog-hash", f"crc32c={crc},md5={md5}")))

        def _run(self) -> None:
            try:
                self._handle()
            except (ValueError, KeyError) as exc:
                owner.violations.append(f"{self.command} {self.path}: {exc!r}")
                self._error(400, "invalid")

        do_GET = do_POST = do_PUT = do_DELETE = _run  # noqa: N815

    return Handler


def _split_multipart(content_type: str, body: bytes) -> Tuple[str, bytes]:
    """(object name, data) from a multipart/related upload body."""
    boundary = content_type.partition("boundary=")[2].strip('"')
    if not boundary:
        raise ValueError("no boundary")
    marker = b"--" + boundary.encode()
    pieces = body.split(marker)
    if len(pieces) < 4:
        raise ValueError("not a two-part body")
    meta_part, data_part = pieces[1], pieces[2]
    meta = json.loads(meta_part.split(b"\r\n\r\n", 1)[1].rstrip(b"\r\n"))
    data = data_part.split(b"\r\n\r\n", 1)[1]
    if not data.endswith(b"\r\n"):
        raise ValueError("data part without CRLF")
    return meta["name"], data[:-2]
