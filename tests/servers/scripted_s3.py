"""A scripted S3 stand-in on 127.0.0.1 for multipart uploads, answering
what a test tells it to where moto cannot be made to misbehave.

It accepts any signature and records every request.  It answers:

* ``POST /bucket/key?uploads=``: an InitiateMultipartUploadResult with an
  UploadId;
* ``PUT /bucket/key?partNumber=N&uploadId=...``: 200 with the part's ETag
  (an ordinary ``PUT`` too);
* ``POST /bucket/key?uploadId=...`` (CompleteMultipartUpload): the next
  scripted :class:`Reply` (by default ``200 OK`` whose body is an
  ``<Error><Code>InternalError</Code>...``, as S3 may send), then ``then``;
* ``DELETE /bucket/key?uploadId=...`` (AbortMultipartUpload): 204;
* anything else: 404 NoSuchKey.

Bounded: a socket timeout on every connection, a body size cap, and a cap
on requests served (later ones get 503 and the connection is closed)."""
from __future__ import annotations

import collections
import hashlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Dict, Iterable, Optional, Tuple
from urllib.parse import parse_qs, unquote, urlsplit

from ._scripted import ScriptedServer, SeenRequest, owned_handler, read_body

SOCKET_TIMEOUT_S = 10.0
MAX_BODY_BYTES = 64 << 20
UPLOAD_ID = "scripted-upload-0001"
_NS = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes = b""
    headers: Tuple[Tuple[str, str], ...] = ()


def error_in_200(code: str = "InternalError",
                 message: str = "We encountered an internal error. Please try again.",
                 padding: int = 0) -> Reply:
    """``200 OK`` with an S3 ``<Error>`` body; ``padding`` whitespace bytes
    before it, as S3 sends while it works on a long CompleteMultipartUpload."""
    body = (b" " * padding + b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>'
            + code.encode() + b"</Code><Message>" + message.encode()
            + b"</Message><RequestId>scripted-1</RequestId><HostId>scripted</HostId></Error>")
    return Reply(200, body, (("Content-Type", "application/xml"),))


def complete_ok(bucket: str = "bucket", key: str = "key") -> Reply:
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<CompleteMultipartUploadResult {_NS}>'
            f"<Location>http://scripted/{bucket}/{key}</Location><Bucket>{bucket}</Bucket>"
            f'<Key>{key}</Key><ETag>"3858f62230ac3c915f300c664312c11f-3"</ETag>'
            f"</CompleteMultipartUploadResult>").encode()
    return Reply(200, body, (("Content-Type", "application/xml"),))


@dataclass(frozen=True)
class Seen(SeenRequest):
    body_len: int

    @property
    def kind(self) -> str:
        q = self.query
        if self.method == "POST" and "uploads" in q:
            return "initiate"
        if self.method == "PUT" and "partNumber" in q and "uploadId" in q:
            return "part"
        if self.method == "POST" and "uploadId" in q:
            return "complete"
        if self.method == "DELETE" and "uploadId" in q:
            return "abort"
        return f"{self.method} other"


@dataclass
class _Script:
    complete: collections.deque = field(default_factory=collections.deque)
    then: Reply = field(default_factory=error_in_200)


class ScriptedS3(ScriptedServer):
    thread_name = "scripted-s3"

    def __init__(self, complete_replies: Iterable[Reply] = (),
                 then: Optional[Reply] = None) -> None:
        super().__init__()
        self._script = _Script(collections.deque(complete_replies), then or error_in_200())

    def handler_class(self) -> type:
        return owned_handler(_Handler, self)

    def env(self) -> Dict[str, str]:
        """Variables pointing s3dlio here; any credentials are accepted."""
        return {"AWS_ENDPOINT_URL_S3": self.endpoint, "AWS_ACCESS_KEY_ID": "AKIDSCRIPTED",
                "AWS_SECRET_ACCESS_KEY": "scripted-secret", "AWS_REGION": "us-east-1"}

    def _complete_reply(self) -> Reply:
        with self._lock:
            s = self._script
            return s.complete.popleft() if s.complete else s.then


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = SOCKET_TIMEOUT_S
    server_owner: ScriptedS3

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def _answer(self, reply: Reply, close: bool = False) -> None:
        self.send_response(reply.status)
        for k, v in reply.headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(reply.body)))
        self.send_header("x-amz-request-id", "scripted")
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)

    def _handle(self) -> None:
        body = read_body(self, MAX_BODY_BYTES)
        if body is None:
            self._answer(Reply(400, b"bad Content-Length"), close=True)
            return
        parts = urlsplit(self.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        seen = Seen(self.command, unquote(parts.path), query,
                    {k.lower(): v for k, v in self.headers.items()}, len(body))
        owner = self.server_owner
        if not owner._record(seen):
            self._answer(Reply(503, b"request cap reached"), close=True)
            return
        segments = parts.path.lstrip("/").split("/", 1)
        bucket, key = segments[0], (segments[1] if len(segments) > 1 else "")
        kind = seen.kind
        if kind == "initiate":
            xml = (f'<?xml version="1.0" encoding="UTF-8"?>\n<InitiateMultipartUploadResult {_NS}>'
                   f"<Bucket>{bucket}</Bucket><Key>{key}</Key><UploadId>{UPLOAD_ID}</UploadId>"
                   f"</InitiateMultipartUploadResult>").encode()
            self._answer(Reply(200, xml, (("Content-Type", "application/xml"),)))
        elif kind == "part" or (self.command == "PUT" and key):
            etag = '"' + hashlib.md5(body).hexdigest() + '"'
            self._answer(Reply(200, b"", (("ETag", etag),)))
        elif kind == "complete":
            self._answer(owner._complete_reply())
        elif kind == "abort":
            self._answer(Reply(204))
        else:
            body = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchKey</Code>'
                    b"<Message>The specified key does not exist.</Message></Error>")
            self._answer(Reply(404, body, (("Content-Type", "application/xml"),)))

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle


def start(complete_replies: Iterable[Reply] = (), then: Optional[Reply] = None) -> ScriptedS3:
    return ScriptedS3(complete_replies, then).start()
