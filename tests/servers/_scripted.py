"""What every scripted loopback server shares: a ThreadingHTTPServer on
127.0.0.1 run in a daemon thread, and a bounded record of the requests it
saw.  Each server (scripted_s3, scripted_gcs, scripted_azure) supplies its
request handler and what its requests mean."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional

STOP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class SeenRequest:
    """One request a scripted server saw; each server's ``Seen`` adds its
    body field and what the request means (``kind``)."""

    method: str
    path: str
    query: Dict[str, List[str]]
    headers: Dict[str, str]


class ScriptedServer:
    """Subclasses implement ``handler_class()``: the handler type, made for
    this instance (it reaches the server through ``server_owner``)."""

    max_requests = 2_000
    thread_name = "scripted"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: List[Any] = []
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    def handler_class(self) -> type:
        raise NotImplementedError

    @property
    def endpoint(self) -> str:
        assert self._server is not None, "start() first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def seen(self) -> List[Any]:
        with self._lock:
            return list(self._seen)

    def kinds(self) -> List[str]:
        return [s.kind for s in self.seen]

    def start(self):
        server = ThreadingHTTPServer(("127.0.0.1", 0), self.handler_class())
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=STOP_TIMEOUT_S)
        self._server = self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _record(self, seen: Any) -> bool:
        """Keeps ``seen``; False once the cap is reached (answer 503 then)."""
        with self._lock:
            if len(self._seen) >= self.max_requests:
                return False
            self._seen.append(seen)
            return True


def owned_handler(base: type, owner: ScriptedServer) -> type:
    """``base`` (a BaseHTTPRequestHandler) bound to ``owner``."""
    assert issubclass(base, BaseHTTPRequestHandler)
    return type(base.__name__, (base,), {"server_owner": owner})


def read_body(handler: BaseHTTPRequestHandler, cap: int) -> Optional[bytes]:
    """The request body by Content-Length, or None when the length is bad,
    over ``cap``, or the client sent less (the caller answers 400 or closes)."""
    text = handler.headers.get("Content-Length", "0") or "0"
    if not text.isdigit() or int(text) > cap:
        return None
    length = int(text)
    body = handler.rfile.read(length) if length else b""
    return body if len(body) == length else None
