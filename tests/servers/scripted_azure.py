"""A scripted Azure Blob stand-in on 127.0.0.1, for faults Azurite cannot
be made to produce: a wrong Content-MD5, 503 ServerBusy, 500 on every try,
listings split into pages.

It accepts any signature, records every request and keeps blobs in memory:

* ``PUT /account/container/blob``: stores the body (400 Md5Mismatch when
  the request's Content-MD5 is wrong), answers 201 with ETag and Content-MD5;
  ``?comp=block&blockid=`` stages a block, ``?comp=blocklist`` commits the
  ``<Latest>`` ids (400 InvalidBlockList for an unknown one);
* ``GET`` / ``HEAD`` of a blob: 200 with Content-MD5 (or 206 for an
  ``x-ms-range``), 404 BlobNotFound (``x-ms-error-code`` only, as Azure
  answers HEAD) when there is none;
* ``GET /account/container?restype=container&comp=list``: the next scripted
  listing page (see :meth:`ScriptedAzure.list_pages`).

Before answering, a request is matched against the fault script: the first
:class:`Fault` whose method matches and that has uses left answers instead.

Bounded: a socket timeout on every connection, a body size cap, and a cap
on requests served (later ones get 503 and the connection is closed)."""
from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Dict, List, Optional, Tuple
from urllib.parse import parse_qs, unquote, urlsplit

from ._scripted import ScriptedServer, SeenRequest, owned_handler, read_body

SOCKET_TIMEOUT_S = 10.0
MAX_BODY_BYTES = 64 << 20
ACCOUNT = "devstoreaccount1"
# Microsoft's published emulator key: any signature is accepted here anyway.
ACCOUNT_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"
               "K1SZFPTOtr/KBHBeksoGMGw==")
WRONG_MD5 = base64.b64encode(hashlib.md5(b"not the body").digest()).decode()


def azure_error(status: int, code: str, message: str = "scripted fault", *,
                method: str = "GET", uses: int = 1, comp: Optional[str] = None) -> "Fault":
    """An answer with Azure's XML error body and x-ms-error-code, for
    ``uses`` requests of ``method`` (and ``comp``, if given)."""
    body = (f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code>'
            f"<Message>{message}\nRequestId:scripted-1</Message></Error>").encode()
    return Fault(status=status, body=body, method=method, uses=uses, comp=comp,
                 headers=(("Content-Type", "application/xml"), ("x-ms-error-code", code)))


@dataclass
class Fault:
    """Answers ``uses`` matching requests (-1: every one) in place of the
    normal reply; ``wrong_md5`` instead serves the blob with a wrong Content-MD5."""

    status: int = 500
    body: bytes = b""
    headers: Tuple[Tuple[str, str], ...] = ()
    method: str = "GET"
    uses: int = 1
    wrong_md5: bool = False
    comp: Optional[str] = None  # only requests with this ?comp= (block, blocklist, list)


@dataclass(frozen=True)
class Seen(SeenRequest):
    body: bytes


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


class ScriptedAzure(ScriptedServer):
    thread_name = "scripted-azure"

    def __init__(self) -> None:
        super().__init__()
        self._faults: List[Fault] = []
        self._pages: List[bytes] = []
        self.blobs: Dict[str, bytes] = {}
        self.staged: Dict[str, Dict[str, bytes]] = {}

    def handler_class(self) -> type:
        return owned_handler(_Handler, self)

    # -- control -------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        """Path-style, as Azurite's: containers go after the account."""
        return f"{super().endpoint}/{ACCOUNT}"

    def env(self) -> Dict[str, str]:
        return {"AZURE_STORAGE_ACCOUNT": ACCOUNT, "AZURE_STORAGE_KEY": ACCOUNT_KEY,
                "AZURE_STORAGE_ENDPOINT": self.endpoint}

    def add_fault(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def list_pages(self, *pages: bytes) -> None:
        """Listing replies, served in order (the last one repeats)."""
        with self._lock:
            self._pages = list(pages)

    def count(self, method: str) -> int:
        return sum(1 for s in self.seen if s.method == method)

    # -- called by the handler -----------------------------------------------
    def _take_fault(self, method: str, comp: Optional[str]) -> Optional[Fault]:
        with self._lock:
            for fault in self._faults:
                if (fault.method == method and fault.uses != 0
                        and fault.comp in (None, comp)):
                    if fault.uses > 0:
                        fault.uses -= 1
                    return fault
            return None

    def _next_page(self) -> bytes:
        with self._lock:
            if not self._pages:
                return (b'<?xml version="1.0" encoding="utf-8"?><EnumerationResults>'
                        b"<Blobs /><NextMarker /></EnumerationResults>")
            return self._pages.pop(0) if len(self._pages) > 1 else self._pages[0]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = SOCKET_TIMEOUT_S
    server_owner: ScriptedAzure

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def _answer(self, status: int, body: bytes = b"", headers: Tuple[Tuple[str, str], ...] = (),
                close: bool = False) -> None:
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-ms-request-id", "scripted")
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self) -> None:
        body = read_body(self, MAX_BODY_BYTES)
        if body is None:
            self._answer(400, b"bad Content-Length", close=True)
            return
        parts = urlsplit(self.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        path = unquote(parts.path)
        owner = self.server_owner
        if not owner._record(Seen(self.command, path, query,
                                  {k.lower(): v for k, v in self.headers.items()}, body)):
            self._answer(503, b"request cap reached", close=True)
            return
        fault = owner._take_fault(self.command, query.get("comp", [None])[0])
        if fault is not None and not fault.wrong_md5:
            self._answer(fault.status, fault.body, fault.headers)
            return
        if query.get("comp") == ["list"]:
            self._answer(200, owner._next_page(), (("Content-Type", "application/xml"),))
        elif self.command == "PUT":
            sent_md5 = self.headers.get("Content-MD5")
            if sent_md5 is not None and sent_md5 != md5_b64(body):
                error = azure_error(400, "Md5Mismatch")
                self._answer(error.status, error.body, error.headers)
                return
            if query.get("comp") == ["block"]:
                with owner._lock:
                    owner.staged.setdefault(path, {})[query["blockid"][0]] = body
                self._answer(201, b"", (("Content-MD5", md5_b64(body)),))
                return
            if query.get("comp") == ["blocklist"]:
                ids = re.findall(r"<Latest>([^<]*)</Latest>", body.decode())
                with owner._lock:
                    staged = owner.staged.get(path, {})
                    if any(i not in staged for i in ids):
                        error = azure_error(400, "InvalidBlockList")
                        self._answer(error.status, error.body, error.headers)
                        return
                    body = b"".join(staged[i] for i in ids)
                    owner.staged.pop(path, None)
            with owner._lock:
                owner.blobs[path] = body
            self._answer(201, b"", (("ETag", '"0xSCRIPTED"'), ("Content-MD5", md5_b64(body))))
        elif self.command in ("GET", "HEAD"):
            with owner._lock:
                data = owner.blobs.get(path)
            if data is None:
                error = azure_error(404, "BlobNotFound")
                self._answer(error.status, error.body if self.command == "GET" else b"",
                             error.headers)
                return
            self._serve_blob(data, fault is not None)
        else:
            self._answer(405)

    def _serve_blob(self, data: bytes, wrong_md5: bool) -> None:
        headers = [("ETag", '"0xSCRIPTED"'), ("Content-Type", "application/octet-stream"),
                   ("Last-Modified", "Mon, 01 Jan 2024 00:00:00 GMT"),
                   ("x-ms-blob-type", "BlockBlob"),
                   ("Content-MD5", WRONG_MD5 if wrong_md5 else md5_b64(data))]
        wanted = self.headers.get("x-ms-range")
        if wanted and self.command == "GET":
            first, _, last = wanted.removeprefix("bytes=").partition("-")
            start = int(first)
            end = min(int(last), len(data) - 1) if last else len(data) - 1
            if start >= len(data):
                error = azure_error(416, "InvalidRange")
                self._answer(416, error.body,
                             error.headers + (("Content-Range", f"bytes */{len(data)}"),))
                return
            # Azure sends no Content-MD5 for a range unless asked; a stale
            # whole-blob one here checks that ranges are not compared to it.
            headers.append(("Content-Range", f"bytes {start}-{end}/{len(data)}"))
            self._answer(206, data[start:end + 1], tuple(headers))
            return
        body = data if self.command == "GET" else b""
        self.send_response(200)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-ms-request-id", "scripted")
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_DELETE = do_HEAD = _handle
