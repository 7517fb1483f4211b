"""A loopback stand-in for Google's OAuth2 token endpoint and the GCE
metadata server.  It checks what a real one checks (the JWT's RS256
signature against the test's public key and its claims; the refresh-token
fields; the Metadata-Flavor header) and counts the tokens it issues."""
from __future__ import annotations

import base64
import http.server
import json
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Optional

from . import _http

SCOPE = "https://www.googleapis.com/auth/devstorage.full_control"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
METADATA_TOKEN_PATH = "/computeMetadata/v1/instance/service-accounts/default/token"


@dataclass
class State:
    """``reply`` is ``"ok"``, ``"401"``, ``"503"`` or ``"garbage"``.  ``public_key`` and
    ``client_email`` check service-account JWTs; ``refresh`` holds the
    (client_id, client_secret, refresh_token) an authorized user must send."""

    token_url: str = ""
    public_key: Any = None
    client_email: str = ""
    refresh: tuple = ()
    expires_in: int = 3600
    reply: str = "ok"
    requests: int = 0
    issued: int = 0
    rejections: list = field(default_factory=list)

    def token(self, prefix: str) -> bytes:
        self.issued += 1
        return json.dumps({"access_token": f"{prefix}-{self.issued}",
                           "expires_in": self.expires_in, "token_type": "Bearer"}).encode()


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jwt_problem(state: State, assertion: str) -> Optional[str]:
    """Why ``assertion`` would be refused, or None when it is valid."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    try:
        header_b64, claims_b64, signature_b64 = assertion.split(".")
        header = json.loads(_b64url_decode(header_b64))
        claims = json.loads(_b64url_decode(claims_b64))
        signature = _b64url_decode(signature_b64)
    except ValueError:
        return "malformed JWT"
    if header.get("alg") != "RS256" or header.get("typ") != "JWT":
        return f"header {header}"
    try:
        state.public_key.verify(signature, f"{header_b64}.{claims_b64}".encode(),
                                padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return "bad signature"
    now = time.time()
    if (claims.get("iss"), claims.get("scope"), claims.get("aud")) != (
            state.client_email, SCOPE, state.token_url):
        return f"claims {claims}"
    if not abs(claims.get("iat", 0) - now) < 60 or claims.get("exp") != claims["iat"] + 3600:
        return f"times {claims}"
    return None


def _handler(state: State):
    class Handler(http.server.BaseHTTPRequestHandler):
        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _answer(self, problem: Optional[str], prefix: str) -> None:
            state.requests += 1
            if problem is not None:
                state.rejections.append(problem)
                return self._send(400, b'{"error": "invalid_grant"}')
            if state.reply == "401":
                # Echo the request back, as a careless server might: the
                # client must not repeat any of it in its error.
                return self._send(401, json.dumps({"error": "unauthorized_client",
                                                   "error_description": self.body}).encode())
            if state.reply == "503":
                return self._send(503, b"{}")
            if state.reply == "garbage":
                return self._send(200, b"<html>not json " + self.body.encode() + b"</html>")
            self._send(200, state.token(prefix))

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length", "0"))
            self.body = self.rfile.read(min(length, 1 << 20)).decode()
            form = dict(urllib.parse.parse_qsl(self.body))
            if form.get("grant_type") == JWT_GRANT:
                return self._answer(jwt_problem(state, form.get("assertion", "")), "sa")
            if form.get("grant_type") == "refresh_token":
                sent = (form.get("client_id"), form.get("client_secret"),
                        form.get("refresh_token"))
                return self._answer(None if sent == state.refresh else "refresh fields", "user")
            self._answer(f"grant_type {form.get('grant_type')}", "")

        def do_GET(self) -> None:  # noqa: N802
            self.body = ""
            if self.path != METADATA_TOKEN_PATH:
                return self._send(404, b"{}")
            flavor = self.headers.get("Metadata-Flavor")
            self._answer(None if flavor == "Google" else f"Metadata-Flavor {flavor}", "gce")

        def log_message(self, *args) -> None:
            pass

    return Handler


@dataclass
class TokenServer:
    url: str
    state: State
    running: _http.Running

    def stop(self) -> None:
        self.running.stop()


def start() -> TokenServer:
    state = State()
    running = _http.serve(_handler(state))
    url = f"http://127.0.0.1:{running.port}"
    state.token_url = url + "/token"
    return TokenServer(url, state, running)
