"""Google Cloud Storage settings and OAuth2 access tokens, in pure Python.

Where credentials come from, first match wins (as google-auth's
``default()``, minus the kinds we do not support):

1. ``STORAGE_EMULATOR_HOST``: an emulator; requests carry no Authorization.
   A service account file named by ``GOOGLE_APPLICATION_CREDENTIALS`` is still
   read, so URLs can be signed for the emulator.
2. ``GOOGLE_APPLICATION_CREDENTIALS``: a JSON file of type ``service_account``
   (a self-signed RS256 JWT exchanged at the file's ``token_uri``) or
   ``authorized_user`` (a refresh token exchanged at ``token_uri``).
3. gcloud's application-default file,
   ``$CLOUDSDK_CONFIG/application_default_credentials.json``, else
   ``~/.config/gcloud/application_default_credentials.json``.
4. The GCE metadata server, but only when ``GCE_METADATA_HOST`` is set or
   ``S3DLIO_GCE_METADATA=1``.  google-auth probes metadata.google.internal
   unconditionally; we do not, so that a machine (or a test run) without
   credentials never sends a request off the host and never waits on a DNS
   name that does not resolve.

Nothing found is not an error until a token is asked for: then
``PermissionDeniedError`` with code ``NoCredentials``.  A credentials file
that is named but unusable is reported the same way, when a token is asked
for, with code ``CredentialsFile``.

Tokens are cached per config and per process, and fetched again when less
than five minutes of their ``expires_in`` remain.  Requests are bounded
(5 s timeout, 1 MiB reply cap, at most one retry).  No message, ``repr`` or
exception text ever contains a token, private key, refresh token or client
secret."""
from __future__ import annotations

import base64
import json
import os
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Mapping, Optional, Union

from .errors import PermissionDeniedError

DEFAULT_ENDPOINT = "https://storage.googleapis.com"
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"
DEFAULT_METADATA_HOST = "metadata.google.internal"
SCOPE = "https://www.googleapis.com/auth/devstorage.full_control"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
METADATA_TOKEN_PATH = "/computeMetadata/v1/instance/service-accounts/default/token"
REFRESH_MARGIN_S = 300.0
_ASSERTION_LIFETIME_S = 3600
_TIMEOUT_S = 5.0
_MAX_REPLY = 1 << 20
_RETRY_PAUSE_S = 0.2
# An OAuth error code ("invalid_grant") is safe to repeat; free text from
# the server is not (a hostile or buggy server could echo what we sent).
_OAUTH_ERROR_CODE = re.compile(r"[a-z_]{1,64}")

_ENV_KEYS = ("STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS", "CLOUDSDK_CONFIG",
             "HOME", "GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT", "GCE_METADATA_HOST",
             "S3DLIO_GCE_METADATA")


def _denied(message: str, code: str = "TokenRequest",
            http_status: Optional[int] = None) -> PermissionDeniedError:
    return PermissionDeniedError(message, code=code, http_status=http_status)


def _request(request: urllib.request.Request, what: str, *,
             opener: Optional[urllib.request.OpenerDirector] = None) -> dict:
    """Sends ``request`` and returns its JSON object reply.  One retry, on a
    connection failure or a 5xx/429 only: a 4xx says the credentials are
    wrong, and asking again will not change that."""
    open_url = opener.open if opener is not None else urllib.request.urlopen
    for attempt in (1, 2):
        try:
            with open_url(request, timeout=_TIMEOUT_S) as reply:
                body = reply.read(_MAX_REPLY + 1)
            break
        except urllib.error.HTTPError as exc:
            with exc:
                detail = _oauth_error(exc)
            if attempt == 1 and (exc.code >= 500 or exc.code == 429):
                time.sleep(_RETRY_PAUSE_S)
                continue
            raise _denied(f"{what} failed: HTTP {exc.code}{detail}",
                          http_status=exc.code) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            if attempt == 1:
                time.sleep(_RETRY_PAUSE_S)
                continue
            # The exception class only: its text may quote the URL or reply.
            raise _denied(f"{what} failed ({exc.__class__.__name__})") from None
    if len(body) > _MAX_REPLY:
        raise _denied(f"{what}: reply larger than {_MAX_REPLY} bytes")
    try:
        doc = json.loads(body)
    except ValueError:
        raise _denied(f"{what}: reply is not JSON") from None
    if not isinstance(doc, dict):
        raise _denied(f"{what}: reply is not a JSON object")
    return doc


def _oauth_error(exc: urllib.error.HTTPError) -> str:
    try:
        doc = json.loads(exc.read(8192))
    except (ValueError, OSError):
        return ""
    error = doc.get("error") if isinstance(doc, dict) else None
    return f" ({error})" if isinstance(error, str) and _OAUTH_ERROR_CODE.fullmatch(error) else ""


def _token_from(doc: dict, what: str) -> tuple[str, float]:
    token, expires_in = doc.get("access_token"), doc.get("expires_in", 3600)
    if not isinstance(token, str) or not token or not isinstance(expires_in, (int, float)):
        raise _denied(f"{what}: reply has no access_token/expires_in")
    return token, float(expires_in)


def _form_post(url: str, fields: Mapping[str, str]) -> urllib.request.Request:
    return urllib.request.Request(url, data=urllib.parse.urlencode(fields).encode(),
                                  method="POST",
                                  headers={"Content-Type": "application/x-www-form-urlencoded"})


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class _ServiceAccount:
    client_email: str
    private_key_pem: bytes = field(repr=False)
    private_key_id: Optional[str] = field(repr=False)
    token_uri: str

    def assertion(self, now: float) -> str:
        """The self-signed JWT that the token endpoint trades for a token."""
        from .gcs_sign import rsa_sha256_sign
        header: dict[str, str] = {"alg": "RS256", "typ": "JWT"}
        if self.private_key_id:
            header["kid"] = self.private_key_id
        claims = {"iss": self.client_email, "scope": SCOPE, "aud": self.token_uri,
                  "iat": int(now), "exp": int(now) + _ASSERTION_LIFETIME_S}
        signing_input = ".".join(_b64url(json.dumps(part, separators=(",", ":")).encode())
                                 for part in (header, claims))
        return signing_input + "." + _b64url(rsa_sha256_sign(self.private_key_pem,
                                                             signing_input.encode()))

    def fetch(self) -> tuple[str, float]:
        what = "service-account token request"
        request = _form_post(self.token_uri, {"grant_type": JWT_GRANT,
                                              "assertion": self.assertion(time.time())})
        return _token_from(_request(request, what), what)


@dataclass(frozen=True)
class _AuthorizedUser:
    client_id: str
    client_secret: str = field(repr=False)
    refresh_token: str = field(repr=False)
    token_uri: str

    def fetch(self) -> tuple[str, float]:
        what = "authorized-user token refresh"
        request = _form_post(self.token_uri, {
            "grant_type": "refresh_token", "refresh_token": self.refresh_token,
            "client_id": self.client_id, "client_secret": self.client_secret})
        return _token_from(_request(request, what), what)


@dataclass(frozen=True)
class _MetadataServer:
    base_url: str

    def fetch(self) -> tuple[str, float]:
        what = "GCE metadata token request"
        request = urllib.request.Request(self.base_url + METADATA_TOKEN_PATH,
                                         headers={"Metadata-Flavor": "Google"})
        # Never through an HTTP proxy: the metadata server is on the host's own network.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        return _token_from(_request(request, what, opener=opener), what)


@dataclass(frozen=True)
class _Unusable:
    """A credentials file that was named but cannot be used; the reason is
    kept for the first token request, so building a config never fails."""
    reason: str
    code: str = "CredentialsFile"

    def fetch(self) -> tuple[str, float]:
        raise _denied(self.reason, self.code)


_Source = Union[_ServiceAccount, _AuthorizedUser, _MetadataServer, _Unusable]


class _TokenCache:
    """One token, shared by threads, re-fetched near expiry and in a forked
    child (whose parent's token request may have been cut mid-flight)."""

    def __init__(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._token: Optional[str] = None
        self._expires_at = 0.0

    def __repr__(self) -> str:
        return f"<_TokenCache {'holding a token' if self._token else 'empty'}>"

    def get(self, source: _Source) -> str:
        if self._pid != os.getpid():
            # A lock copied by fork may be held forever: start afresh in the child.
            self._pid, self._lock, self._token = os.getpid(), threading.Lock(), None
        with self._lock:
            now = time.monotonic()
            if self._token is None or now >= self._expires_at - REFRESH_MARGIN_S:
                self._token, expires_in = source.fetch()
                self._expires_at = now + expires_in
            return self._token


@dataclass(frozen=True)
class GcsConfig:
    """Where GCS requests go and how they are authorized.  ``endpoint`` is
    ``scheme://host[:port]`` without a trailing slash."""

    endpoint: str = DEFAULT_ENDPOINT
    emulator: bool = False
    project: Optional[str] = None
    credentials: Optional[_Source] = None
    _tokens: _TokenCache = field(default_factory=_TokenCache, repr=False, compare=False)

    @property
    def credentials_kind(self) -> str:
        """``service_account``, ``authorized_user``, ``metadata``, ``unusable`` or ``none``."""
        return {_ServiceAccount: "service_account", _AuthorizedUser: "authorized_user",
                _MetadataServer: "metadata", _Unusable: "unusable"}.get(
                    type(self.credentials), "none")

    def authorization(self) -> Optional[str]:
        """The ``Authorization`` header value (``Bearer <token>``), or None
        for an emulator.  Fetches or refreshes the token when needed."""
        if self.emulator:
            return None
        if self.credentials is None:
            raise _denied("no GCS credentials: set GOOGLE_APPLICATION_CREDENTIALS, run "
                          "'gcloud auth application-default login', or set "
                          "S3DLIO_GCE_METADATA=1 on Google Compute Engine", "NoCredentials")
        return "Bearer " + self._tokens.get(self.credentials)

    def service_account(self) -> Optional[tuple[str, bytes]]:
        """(client_email, private key PEM) for signing URLs; None when the
        credentials are not a service account key."""
        if isinstance(self.credentials, _Unusable):
            self.credentials.fetch()  # raises its reason
        if isinstance(self.credentials, _ServiceAccount):
            return self.credentials.client_email, self.credentials.private_key_pem
        return None


def _with_scheme(address: str) -> str:
    return (address if "://" in address else "http://" + address).rstrip("/")


def _read_credentials_file(path: str, origin: str) -> tuple[_Source, Optional[str]]:
    """The credentials in a JSON key file and the project it names."""
    try:
        with open(path, "rb") as f:
            raw = f.read(_MAX_REPLY + 1)
    except OSError as exc:
        return _Unusable(f"cannot read the credentials file {path} named by {origin} "
                         f"({exc.strerror or exc.__class__.__name__})"), None
    try:
        doc = json.loads(raw)
    except ValueError:
        return _Unusable(f"the credentials file {path} ({origin}) is not JSON"), None
    if not isinstance(doc, dict):
        return _Unusable(f"the credentials file {path} ({origin}) is not a JSON object"), None
    kind = doc.get("type")
    needed = {"service_account": ("client_email", "private_key"),
              "authorized_user": ("client_id", "client_secret", "refresh_token")}.get(str(kind))
    if needed is None:
        return _Unusable(f"the credentials file {path} ({origin}) has type {kind!r}; "
                         "supported: service_account, authorized_user"), None
    missing = [name for name in needed if not isinstance(doc.get(name), str) or not doc[name]]
    if missing:
        return _Unusable(f"the credentials file {path} ({origin}) lacks "
                         f"{', '.join(missing)}"), None
    token_uri = doc.get("token_uri") or DEFAULT_TOKEN_URI
    if kind == "service_account":
        return _ServiceAccount(doc["client_email"], doc["private_key"].encode(),
                               doc.get("private_key_id"), token_uri), doc.get("project_id")
    return (_AuthorizedUser(doc["client_id"], doc["client_secret"], doc["refresh_token"],
                            token_uri), doc.get("quota_project_id"))


def _adc_path(env: Mapping[str, str]) -> str:
    config_dir = env.get("CLOUDSDK_CONFIG") or os.path.join(
        env.get("HOME") or os.path.expanduser("~"), ".config", "gcloud")
    return os.path.join(config_dir, "application_default_credentials.json")


def _discover(env: Mapping[str, str], emulator: bool) -> tuple[Optional[_Source], Optional[str]]:
    named = env.get("GOOGLE_APPLICATION_CREDENTIALS")
    if named:
        return _read_credentials_file(named, "GOOGLE_APPLICATION_CREDENTIALS")
    if emulator:
        return None, None
    adc = _adc_path(env)
    if os.path.isfile(adc):
        return _read_credentials_file(adc, "gcloud application-default credentials")
    metadata_host = env.get("GCE_METADATA_HOST")
    if metadata_host or env.get("S3DLIO_GCE_METADATA") == "1":
        return _MetadataServer(_with_scheme(metadata_host or DEFAULT_METADATA_HOST)), None
    return None, None


def load(env: Optional[Mapping[str, str]] = None) -> GcsConfig:
    """Reads the GCS settings from ``env`` (default ``os.environ``).  Reads
    credential files but sends no request; tokens are fetched on first use."""
    env = os.environ if env is None else env
    emulator_host = env.get("STORAGE_EMULATOR_HOST")
    emulator = bool(emulator_host)
    credentials, file_project = _discover(env, emulator)
    project = env.get("GOOGLE_CLOUD_PROJECT") or env.get("GCLOUD_PROJECT") or file_project
    endpoint = _with_scheme(emulator_host) if emulator_host else DEFAULT_ENDPOINT
    return GcsConfig(endpoint, emulator, project, credentials)


_lock = threading.Lock()
_cached: Optional[tuple[tuple[Optional[str], ...], int, GcsConfig]] = None


def current() -> GcsConfig:
    """The config for the current environment, reused (with its cached
    token) while the relevant variables and the process are unchanged.  A
    credentials file rewritten in place is not noticed until they change."""
    global _cached
    snapshot = tuple(os.environ.get(k) for k in _ENV_KEYS)
    with _lock:
        if _cached is None or _cached[0] != snapshot or _cached[1] != os.getpid():
            _cached = (snapshot, os.getpid(), load())
        return _cached[2]


__all__ = ["GcsConfig", "load", "current", "DEFAULT_ENDPOINT", "SCOPE"]
