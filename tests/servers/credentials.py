"""Loopback stand-ins for the credential endpoints: STS (web identity),
the container credentials endpoint and IMDSv2, with request counting."""
from __future__ import annotations

import http.server
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from . import _http

IMDS_TOKEN = "imds-session-token"
CONTAINER_TOKEN = "container-auth-token"


@dataclass
class State:
    lifetime_s: int = 3600
    issued: int = 0
    requests: list = field(default_factory=list)

    def credentials(self, prefix: str) -> dict:
        self.issued += 1
        expires = datetime.now(timezone.utc) + timedelta(seconds=self.lifetime_s)
        return {"AccessKeyId": f"{prefix}{self.issued}", "SecretAccessKey": "secret",
                "Token": "session", "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}


def _handler(state: State):
    class Handler(http.server.BaseHTTPRequestHandler):
        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_PUT(self) -> None:  # noqa: N802
            state.requests.append(("PUT", self.path))
            if self.path == "/latest/api/token" and \
                    self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                self._send(200, IMDS_TOKEN.encode())
            else:
                self._send(400, b"")

        def do_GET(self) -> None:  # noqa: N802
            state.requests.append(("GET", self.path))
            if self.path.startswith("/latest/meta-data/iam/security-credentials/"):
                if self.headers.get("X-aws-ec2-metadata-token") != IMDS_TOKEN:
                    return self._send(401, b"")
                role = self.path.rsplit("/", 1)[-1]
                if not role:
                    return self._send(200, b"test-role")
                return self._send(200, json.dumps(state.credentials("AKIDIMDS")).encode())
            if self.path == "/container-creds":
                if self.headers.get("Authorization") != CONTAINER_TOKEN:
                    return self._send(401, b"")
                return self._send(200, json.dumps(state.credentials("AKIDCONT")).encode())
            self._send(404, b"")

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(min(length, 1 << 20)).decode()
            state.requests.append(("POST", body))
            if "Action=AssumeRoleWithWebIdentity" not in body or "WebIdentityToken=jwt" not in body:
                return self._send(400, b"<Error><Code>InvalidIdentityToken</Code></Error>")
            creds = state.credentials("AKIDWEB")
            xml = ("<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/"
                   "2011-06-15/\"><AssumeRoleWithWebIdentityResult><Credentials>"
                   f"<AccessKeyId>{creds['AccessKeyId']}</AccessKeyId>"
                   f"<SecretAccessKey>{creds['SecretAccessKey']}</SecretAccessKey>"
                   f"<SessionToken>{creds['Token']}</SessionToken>"
                   f"<Expiration>{creds['Expiration']}</Expiration>"
                   "</Credentials></AssumeRoleWithWebIdentityResult>"
                   "</AssumeRoleWithWebIdentityResponse>")
            self._send(200, xml.encode())

        def log_message(self, *args) -> None:
            pass

    return Handler


@dataclass
class CredentialServer:
    url: str
    state: State
    running: _http.Running

    def stop(self) -> None:
        self.running.stop()


def start() -> CredentialServer:
    state = State()
    running = _http.serve(_handler(state))
    return CredentialServer(f"http://127.0.0.1:{running.port}", state, running)
