"""Azure Blob settings and SharedKey / SAS request signing, in pure Python.
Nothing here sends a request: callers get the URL and header lines to send.

Where settings come from, for the account named by ``az://account/...``:

1. ``AZURE_STORAGE_CONNECTION_STRING`` (``AccountName``, ``AccountKey``,
   ``SharedAccessSignature``, ``BlobEndpoint``, ``DefaultEndpointsProtocol``,
   ``EndpointSuffix``; ``UseDevelopmentStorage=true`` means Azurite's
   well-known account), when it names this account or no account at all.
2. ``AZURE_STORAGE_KEY`` and ``AZURE_STORAGE_SAS_TOKEN`` (or the reference
   s3dlio's ``S3DLIO_AZURE_SAS_TOKEN``), when ``AZURE_STORAGE_ACCOUNT`` is
   unset or names this account.

A key or SAS that the environment ties to another account is not used:
signing with it could only earn a 403, and sending one account's SAS to
another account's host would leak it.  With a key, requests are signed with
SharedKey (the key wins over a SAS); with only a SAS it is appended to the
URL; with neither, requests are anonymous.

Endpoint: ``AZURE_STORAGE_ENDPOINT`` or ``AZURE_BLOB_ENDPOINT_URL`` (as the
reference s3dlio: the account is appended as a path segment unless the URL
already names it), else the connection string's, else
``https://{account}.blob.core.windows.net``.

No ``repr``, ``str`` or exception text ever contains a key or a SAS."""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Mapping, Optional
from urllib.parse import quote, unquote, urlsplit

from .errors import InvalidArgumentError

# Pinned rather than the SDK's newest: Azurite 3.35 refuses versions it does
# not know, and a fixed version keeps replies' shapes fixed.
API_VERSION = "2021-08-06"

DEV_ACCOUNT = "devstoreaccount1"
# Microsoft's published emulator key: public, not a secret.
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
DEV_ENDPOINT = "http://127.0.0.1:10000/devstoreaccount1"

_ENV_KEYS = ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCOUNT", "AZURE_STORAGE_KEY",
             "AZURE_STORAGE_SAS_TOKEN", "S3DLIO_AZURE_SAS_TOKEN", "AZURE_STORAGE_ENDPOINT",
             "AZURE_BLOB_ENDPOINT_URL")

# Account names go into host names and paths; Azure allows 3-24 lowercase
# letters and digits, emulators sometimes shorter ones.
_ACCOUNT_RE = re.compile(r"[a-z0-9]{1,63}")
_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

# The standard headers signed by position; "range" is the spec's slot (the
# SDK never sends Range, only x-ms-range, which is signed with the x-ms-*).
_SIGNED_SLOTS = ("content-encoding", "content-language", "content-length", "content-md5",
                 "content-type", "date", "if-modified-since", "if-match", "if-none-match",
                 "if-unmodified-since", "range")

# The service sorts x-ms-* names with a culture-aware comparison (the SDK
# copies it in `_storage_header_sort`): first by these characters in this
# order, ignoring '-' and "'", then by where '-' and "'" sit.  It differs
# from byte order for names such as x-ms-meta-a_b and x-ms-meta-a1.
_PRIMARY_ORDER = "!#$%&*.^_`|~+0123456789abcdefghijklmnopqrstuvwxyz"
_SECONDARY_RANK = {"'": 2, "-": 3}  # any other character 0, end of name 1

# Blob SAS permission letters in the order the service requires.
_SAS_PERMISSION_ORDER = "racwdxyltmei"


@dataclass(frozen=True)
class AzureConfig:
    """How to reach and sign for one storage account.  ``endpoint`` is the
    blob endpoint without a trailing slash; ``key`` the decoded account key;
    ``sas`` a SAS token without its leading '?'."""

    account: str
    endpoint: str
    key: Optional[bytes] = field(default=None, repr=False)
    sas: Optional[str] = field(default=None, repr=False)

    def container_url(self, container: str) -> str:
        return f"{self.endpoint}/{quote(container, safe='')}"

    def blob_url(self, container: str, blob: str) -> str:
        """Keeps '/' and RFC 3986 unreserved characters, encodes the rest
        as UTF-8 (as the Azure SDKs do), so any name round-trips."""
        return f"{self.container_url(container)}/{quote(blob, safe='/')}"

    def authorize(self, method: str, url: str, headers: Mapping[str, str],
                  now: Optional[datetime] = None) -> tuple[str, list[str]]:
        """The URL to send (with the SAS when signing by SAS) and every
        header line to send: the caller's, plus x-ms-date, x-ms-version and,
        with a key, Authorization.  Pass every header the request will carry
        that is signed (Content-Length, Content-MD5, Content-Type, If-*)."""
        sent = _checked_headers(headers)
        if "authorization" in sent:
            raise InvalidArgumentError("pass no Authorization header: authorize() adds it")
        if "x-ms-date" not in sent:
            sent["x-ms-date"] = ("x-ms-date", http_date(now or datetime.now(timezone.utc)))
        if "x-ms-version" not in sent:
            sent["x-ms-version"] = ("x-ms-version", API_VERSION)
        lines = [f"{name}: {value}" for name, value in sent.values()]
        if self.key is not None:
            to_sign = string_to_sign(method, url, dict(sent.values()), self.account)
            lines.append(f"Authorization: SharedKey {self.account}:{sign(self.key, to_sign)}")
        elif self.sas:
            url = append_query(url, self.sas)
        return url, lines


def load(env: Mapping[str, str], account: str) -> AzureConfig:
    """Settings for ``account`` from ``env`` (see the module text)."""
    if not _ACCOUNT_RE.fullmatch(account):
        raise InvalidArgumentError(f"invalid Azure storage account name {account!r}")
    key_text: Optional[str] = None
    sas: Optional[str] = None
    endpoint: Optional[str] = None
    key_source = "AZURE_STORAGE_KEY"
    conn = _connection_settings(env.get("AZURE_STORAGE_CONNECTION_STRING", ""))
    if conn and conn.get("USEDEVELOPMENTSTORAGE", "").lower() == "true":
        conn = {"ACCOUNTNAME": DEV_ACCOUNT, "ACCOUNTKEY": DEV_KEY, "BLOBENDPOINT": DEV_ENDPOINT}
    if conn and conn.get("ACCOUNTNAME", account).lower() == account:
        key_text = conn.get("ACCOUNTKEY")
        key_source = "the connection string's AccountKey"
        sas = conn.get("SHAREDACCESSSIGNATURE")
        endpoint = conn.get("BLOBENDPOINT") or _suffix_endpoint(conn, account)
    elif env.get("AZURE_STORAGE_ACCOUNT", account).strip().lower() == account:
        key_text = env.get("AZURE_STORAGE_KEY")
        sas = env.get("AZURE_STORAGE_SAS_TOKEN") or env.get("S3DLIO_AZURE_SAS_TOKEN")
    override = env.get("AZURE_STORAGE_ENDPOINT") or env.get("AZURE_BLOB_ENDPOINT_URL")
    if override:
        endpoint = _with_account(_checked_endpoint(override), account)
    elif endpoint:
        endpoint = _checked_endpoint(endpoint)
    return AzureConfig(account=account,
                       endpoint=endpoint or f"https://{account}.blob.core.windows.net",
                       key=_decode_key(key_text, key_source) if key_text else None,
                       sas=(sas or "").strip().lstrip("?") or None)


_cache: dict[str, tuple[tuple[Optional[str], ...], int, AzureConfig]] = {}


def current(account: str) -> AzureConfig:
    """The settings for ``account`` in the current environment: reused
    while the relevant variables and the process are unchanged.  No lock:
    loading is pure and cheap, so a race only builds the same value twice."""
    snapshot = tuple(os.environ.get(k) for k in _ENV_KEYS)
    hit = _cache.get(account)
    if hit is not None and hit[0] == snapshot and hit[1] == os.getpid():
        return hit[2]
    config = load(os.environ, account)
    if len(_cache) >= 64:  # URIs choose accounts; keep the cache bounded
        _cache.clear()
    _cache[account] = (snapshot, os.getpid(), config)
    return config


def string_to_sign(method: str, url: str, headers: Mapping[str, str], account: str) -> str:
    """The SharedKey string to sign (Blob service, version 2015-02-21 and
    later) for a request sent to ``url`` with exactly ``headers``."""
    lowered = {low: value for low, (_, value) in _checked_headers(headers).items()}
    if lowered.get("content-length") == "0":
        lowered["content-length"] = ""  # signed empty since 2015-02-21
    slots = [lowered.get(slot, "") for slot in _SIGNED_SLOTS]
    x_ms = sorted((n for n in lowered if n.startswith("x-ms-")), key=_header_order)
    parts = urlsplit(url)
    # The path exactly as sent, still percent-encoded; with a path-style
    # endpoint it starts with the account again (/acct/acct/container).
    resource = f"/{account}{parts.path or '/'}"
    canonical_headers = [f"{name}:{lowered[name]}" for name in x_ms]
    return "\n".join([method, *slots, *canonical_headers, resource + _canonical_query(parts.query)])


def sign(key: bytes, text: str) -> str:
    return base64.b64encode(hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()).decode()


def http_date(moment: datetime) -> str:
    """RFC 1123 in GMT, as x-ms-date wants; a naive datetime is taken as UTC."""
    return format_datetime(_utc(moment), usegmt=True)


def append_query(url: str, query: str) -> str:
    """``url`` with ``query`` added after its own query, if any."""
    if not query:
        return url
    if "?" not in url:
        return f"{url}?{query}"
    return url + query if url.endswith(("?", "&")) else f"{url}&{query}"


def sas_url(config: AzureConfig, container: str, blob: str, permissions: str,
            expiry: datetime, start: Optional[datetime] = None) -> str:
    """A blob URL carrying a service SAS (sr=b, sv=API_VERSION) signed with
    the account key, valid until ``expiry``; used by ``presign`` on az://.
    ``permissions`` holds letters of "racwdxyltmei", in any order."""
    if config.key is None:
        raise InvalidArgumentError(
            f"signing an az:// URL needs the account key of {config.account!r}")
    unknown = set(permissions) - set(_SAS_PERMISSION_ORDER)
    if unknown or not permissions:
        raise InvalidArgumentError(f"SAS permissions must be letters of {_SAS_PERMISSION_ORDER!r}")
    ordered = "".join(p for p in _SAS_PERMISSION_ORDER if p in permissions)
    fields = {"st": _sas_time(start) if start else "", "se": _sas_time(expiry), "sp": ordered,
              "sv": API_VERSION, "sr": "b"}
    # Service SAS layout for versions 2020-12-06 on: the fields we leave
    # empty are identifier, IP, protocol, snapshot time, encryption scope and
    # the five response-header overrides.
    to_sign = "\n".join([ordered, fields["st"], fields["se"],
                         f"/blob/{config.account}/{container}/{blob}", "", "", "", API_VERSION,
                         "b", "", "", "", "", "", "", ""])
    fields["sig"] = sign(config.key, to_sign)
    token = "&".join(f"{k}={quote(v, safe='/')}" for k, v in fields.items() if v)
    return append_query(config.blob_url(container, blob), token)


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def _sas_time(moment: datetime) -> str:
    return _utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def _header_order(name: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    primary = tuple(_PRIMARY_ORDER.index(c) for c in name if c in _PRIMARY_ORDER)
    secondary = tuple(_SECONDARY_RANK.get(c, 0) for c in name) + (1,)
    return primary, secondary


def _canonical_query(query: str) -> str:
    """Names lowercased and sorted, names and values URL-decoded, repeated
    names' values sorted and joined with ','.  '+' stays '+' (as the SDK's
    ``unquote``); URLs built here always encode it as %2B, so the service's
    form-style decoding, which would read a space, never disagrees."""
    values: dict[str, list[str]] = {}
    for pair in query.split("&"):
        if pair:
            name, _, value = pair.partition("=")
            values.setdefault(unquote(name).lower(), []).append(unquote(value))
    return "".join(f"\n{name}:{','.join(sorted(values[name]))}" for name in sorted(values))


def _checked_headers(headers: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """lowercased name -> (name, value stripped as HTTP parsing strips it);
    refuses what would split a header line or be signed ambiguously."""
    out: dict[str, tuple[str, str]] = {}
    for name, value in headers.items():
        if not _TOKEN_RE.fullmatch(name):
            raise InvalidArgumentError(f"invalid HTTP header name {name!r}")
        if any(c in value for c in "\r\n\0"):
            raise InvalidArgumentError(f"HTTP header {name!r} has a line break or NUL in its value")
        if name.lower() in out:
            raise InvalidArgumentError(f"HTTP header {name!r} given twice")
        out[name.lower()] = (name, value.strip(" \t"))
    return out


def _connection_settings(text: str) -> dict[str, str]:
    """``Name=value;...`` with names upper-cased (Azure SDKs match them
    without regard to case); values keep any '=' (keys end in '==').  Names
    are letters only, so a pasted key without its name is refused."""
    settings: dict[str, str] = {}
    for part in text.strip().strip(";").split(";"):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        if not sep or not re.fullmatch("[A-Za-z]+", name.strip()):
            # Never echo the string: it usually holds a key.
            raise InvalidArgumentError("AZURE_STORAGE_CONNECTION_STRING is malformed "
                                       "(expected Name=value pairs separated by ';')")
        settings[name.strip().upper()] = value.strip()
    return settings


def _suffix_endpoint(conn: Mapping[str, str], account: str) -> Optional[str]:
    if "DEFAULTENDPOINTSPROTOCOL" not in conn and "ENDPOINTSUFFIX" not in conn:
        return None
    protocol = conn.get("DEFAULTENDPOINTSPROTOCOL") or "https"
    suffix = conn.get("ENDPOINTSUFFIX") or "core.windows.net"
    return f"{protocol.lower()}://{account}.blob.{suffix}"


def _checked_endpoint(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        # Not echoed: a URL with a query may carry a SAS.
        raise InvalidArgumentError("Azure blob endpoint must be an http(s) URL without a query")
    return url.strip().rstrip("/")


def _with_account(endpoint: str, account: str) -> str:
    """An override names a host (or host and path); the account is added as
    the first path segment, path style, unless the URL already has it as
    its last segment or as its host's first label."""
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    if parts.path.rstrip("/").rsplit("/", 1)[-1] == account:
        return endpoint
    if host.split(".", 1)[0] == account and not _is_ip(host):
        return endpoint
    return f"{endpoint}/{account}"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _decode_key(text: str, source: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not key:
        # The message names where the key came from, never the key.
        raise InvalidArgumentError(f"{source} is not a valid base64 account key")
    return key
