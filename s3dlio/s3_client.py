"""S3 requests: URLs, the native client that signs them, and the XML
replies (listing, batch delete) parsed with bounded, entity-free parsing."""
from __future__ import annotations

import base64
import hashlib
import os
import re
import threading
import xml.etree.ElementTree as ET
from typing import Iterator, Optional
from urllib.parse import quote

from . import aws_config
from ._native import check, ffi, lib
from .errors import StorageIOError

_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
_MAX_XML_BYTES = 64 << 20


_PLAIN_KEY = re.compile(r"[A-Za-z0-9/_.~-]*")


def encode_key(key: str) -> str:
    """Percent-encodes a key exactly as the core's SigV4 encoder does
    (RFC 3986 unreserved characters and '/' kept)."""
    if _PLAIN_KEY.fullmatch(key):
        return key  # the common case, without quote()'s byte round trip
    return quote(key, safe="/")


def encode_query(value: str) -> str:
    return quote(value, safe="")


class S3Client:
    """A native s3dl_client configured from :mod:`aws_config`, plus URL
    building.  Immutable: new settings mean a new client."""

    def __init__(self, settings: aws_config.S3Settings) -> None:
        self.settings = settings
        self._bucket_urls: dict[str, str] = {}
        out = ffi.new("s3dl_client **")
        check(lib.s3dl_client_new(out), "cannot create an S3 client")
        self.handle = ffi.gc(out[0], lib.s3dl_client_free)
        creds = settings.credentials
        if creds:
            self._set_str(lib.S3DL_CLIENT_ACCESS_KEY_ID, creds.access_key)
            self._set_str(lib.S3DL_CLIENT_SECRET_ACCESS_KEY, creds.secret_key)
            if creds.session_token:
                self._set_str(lib.S3DL_CLIENT_SESSION_TOKEN, creds.session_token)
        self._set_str(lib.S3DL_CLIENT_REGION, settings.region)
        if settings.ca_bundle:
            self._set_str(lib.S3DL_CLIENT_CA_BUNDLE, settings.ca_bundle)
        check(lib.s3dl_client_setopt_int(self.handle, lib.S3DL_CLIENT_VERIFY_TLS,
                                         1 if settings.verify_tls else 0), "verify TLS")

    def _set_str(self, option: int, value: str) -> None:
        check(lib.s3dl_client_setopt_str(self.handle, option, value.encode()), "client option")

    def __repr__(self) -> str:
        s = self.settings
        return f"S3Client(endpoint={s.endpoint!r}, region={s.region!r}, addressing={s.addressing!r})"

    def bucket_url(self, bucket: str) -> str:
        url = self._bucket_urls.get(bucket)
        if url is None:
            if len(self._bucket_urls) > 4096:  # bounded: a process may touch many buckets
                self._bucket_urls.clear()
            url = self._bucket_urls[bucket] = self._make_bucket_url(bucket)
        return url

    def _make_bucket_url(self, bucket: str) -> str:
        s = self.settings
        if s.addressing == "path":
            base = s.endpoint or f"https://s3.{s.region}.amazonaws.com"
            return f"{base}/{encode_key(bucket)}"
        if s.endpoint:
            scheme, host = s.endpoint.split("://", 1)
            return f"{scheme}://{bucket}.{host}"
        return f"https://{bucket}.s3.{s.region}.amazonaws.com"

    def object_url(self, bucket: str, key: str) -> str:
        return f"{self.bucket_url(bucket)}/{encode_key(key)}"

    def presign(self, method: str, bucket: str, key: str, expires: int) -> str:
        out = ffi.new("char **")
        check(lib.s3dl_presign(self.handle, method.encode(), self.object_url(bucket, key).encode(),
                               expires, out), "presign")
        try:
            return ffi.string(out[0]).decode()
        finally:
            lib.s3dl_free(out[0])


_lock = threading.Lock()
_cached: Optional[tuple[tuple, int, S3Client]] = None


def _reset_after_fork() -> None:
    # A thread of the parent may have held the lock (a credential fetch) at
    # fork time; the child starts with a fresh one.
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_after_fork)

_ENV_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
             "AWS_DEFAULT_PROFILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE",
             "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
             "AWS_CA_BUNDLE", "S3DLIO_ADDRESSING_STYLE", "S3DLIO_VERIFY_TLS",
             "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_ENDPOINT_URL_STS",
             "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
             "AWS_EC2_METADATA_SERVICE_ENDPOINT", "AWS_EC2_METADATA_DISABLED")


# os.environ keeps the process environment in a dict of encoded names and
# values, which every os.environ change updates; reading it directly skips
# the per-lookup encode/decode that made the snapshot most of a small get().
_RAW_ENVIRON = getattr(os.environ, "_data", None)
_ENCODE_KEY = getattr(os.environ, "encodekey", None)
_RAW_ENV_KEYS = (tuple(_ENCODE_KEY(k) for k in _ENV_KEYS)
                 if isinstance(_RAW_ENVIRON, dict) and _ENCODE_KEY is not None else None)


def _env_snapshot() -> tuple:
    if _RAW_ENV_KEYS is not None:
        return tuple(map(_RAW_ENVIRON.get, _RAW_ENV_KEYS))  # type: ignore[union-attr]
    return tuple(os.environ.get(k) for k in _ENV_KEYS)


def current() -> S3Client:
    """The client for the current environment: reused while the relevant
    variables are unchanged, rebuilt (and re-read) when they change or its
    temporary credentials are within five minutes of expiring."""
    global _cached
    from .aws_credentials import expiring_soon
    snapshot = _env_snapshot()
    with _lock:
        stale = _cached is not None and _cached[2].settings.credentials is not None and \
            expiring_soon(_cached[2].settings.credentials.expiration)
        if _cached is None or stale or _cached[0] != snapshot or _cached[1] != os.getpid():
            _cached = (snapshot, os.getpid(), S3Client(aws_config.load()))
        return _cached[2]


def parse_xml(body: bytes, uri: str) -> ET.Element:
    """Parses a bounded S3 XML reply.  expat rejects external entities and
    limits entity expansion, so a hostile server cannot make it fetch or
    blow up; anything malformed is a typed error naming the URI."""
    if len(body) > _MAX_XML_BYTES:
        raise StorageIOError(f"reply too large ({len(body)} bytes): {uri}", uri=uri,
                             code="ReplyTooLarge")
    if b"<!DOCTYPE" in body[:1024] or b"<!ENTITY" in body:
        raise StorageIOError(f"reply with a DTD refused: {uri}", uri=uri, code="MalformedXML")
    try:
        return ET.fromstring(body)
    except ET.ParseError as exc:
        raise StorageIOError(f"malformed XML reply ({exc}): {uri}", uri=uri,
                             code="MalformedXML") from None


def text(element: ET.Element, tag: str, default: str = "") -> str:
    found = element.find(_NS + tag)
    if found is None:
        found = element.find(tag)  # some S3-compatible stores omit the namespace
    if found is None or found.text is None:
        return default
    return found.text


def iter_all(element: ET.Element, tag: str) -> Iterator[ET.Element]:
    yield from element.iter(_NS + tag)
    yield from element.iter(tag)


def list_page_url(client: S3Client, bucket: str, prefix: str, token: Optional[str],
                  delimiter: Optional[str]) -> str:
    params = [("list-type", "2"), ("prefix", prefix)]
    if delimiter:
        params.append(("delimiter", delimiter))
    if token:
        params.append(("continuation-token", token))
    query = "&".join(f"{k}={encode_query(v)}" for k, v in params)
    return f"{client.bucket_url(bucket)}?{query}"


def parse_list_page(body: bytes, uri: str) -> tuple[list[tuple[str, int, str]], list[str],
                                                    Optional[str]]:
    """Returns ((key, size, etag) triples, common prefixes, next token)."""
    root = parse_xml(body, uri)
    try:
        objects = [(text(c, "Key"), int(text(c, "Size", "0") or 0), text(c, "ETag"))
                   for c in iter_all(root, "Contents")]
    except ValueError:
        raise StorageIOError(f"listing with a non-numeric size: {uri}", uri=uri,
                             code="MalformedListing") from None
    prefixes = [text(p, "Prefix") for p in iter_all(root, "CommonPrefixes")]
    truncated = text(root, "IsTruncated", "false").lower() == "true"
    token = text(root, "NextContinuationToken") or None
    if truncated and not token:
        raise StorageIOError(f"truncated listing without a continuation token: {uri}", uri=uri,
                             code="MalformedListing")
    return objects, prefixes, token if truncated else None


def delete_objects_body(keys: list[str]) -> tuple[bytes, str]:
    """The DeleteObjects XML for up to 1,000 keys, and its Content-MD5."""
    from xml.sax.saxutils import escape
    items = "".join(f"<Object><Key>{escape(k)}</Key></Object>" for k in keys)
    body = (f'<?xml version="1.0" encoding="UTF-8"?><Delete><Quiet>true</Quiet>{items}'
            f"</Delete>").encode()
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    return body, md5


def delete_errors(body: bytes, uri: str) -> list[tuple[str, str, str]]:
    """(key, code, message) of every <Error> in a DeleteObjects reply."""
    root = parse_xml(body, uri)
    return [(text(e, "Key"), text(e, "Code"), text(e, "Message"))
            for e in iter_all(root, "Error")]


def create_bucket_body(region: str) -> bytes:
    if region == "us-east-1":
        return b""
    return (f'<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            f"<LocationConstraint>{region}</LocationConstraint></CreateBucketConfiguration>"
            ).encode()

