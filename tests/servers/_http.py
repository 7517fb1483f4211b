"""Running a stdlib HTTP server on a free loopback port in a thread."""
from __future__ import annotations

import http.server
import threading
from dataclasses import dataclass
from typing import Callable, Optional


@dataclass
class Running:
    server: http.server.ThreadingHTTPServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def serve(handler: type, wrap: Optional[Callable] = None) -> Running:
    """Starts ``handler`` on 127.0.0.1; ``wrap`` may replace the listening
    socket (for TLS)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if wrap is not None:
        server.socket = wrap(server.socket)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              daemon=True)
    thread.start()
    return Running(server, thread)
