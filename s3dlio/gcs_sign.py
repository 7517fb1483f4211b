"""Google Cloud Storage V4 signed URLs (``GOOG4-RSA-SHA256``), computed
locally with a service account's RSA key: no request to Google is made.

:func:`signed_url` is pure (the clock is an argument) and reproduces the
googleapis conformance vectors byte for byte; :func:`presign_gcs` is the
convenience on top that takes the key and endpoint from ``gcs_auth.current()``.

The canonical request, as the conformance cases pin it down:

- the path keeps ``/`` and RFC 3986 unreserved characters, everything else is
  percent-encoded (``&`` becomes ``%26``; a leading ``/`` in a key is kept);
- query names and values are percent-encoded the same way but with ``/``
  encoded too, then sorted by encoded name;
- header names are lower-cased and sorted; values are trimmed and every run of
  spaces or tabs becomes one space;
- the ``host`` header is the host name *without* its port, even when the URL
  carries one (``localhost:8080`` signs as ``localhost``);
- the payload hash is ``x-goog-content-sha256`` when the caller signs one,
  else ``UNSIGNED-PAYLOAD``.
"""
from __future__ import annotations

import binascii
import datetime as _dt
import hashlib
import re
import urllib.parse
from typing import Mapping, Optional, Union

from .errors import InvalidArgumentError, PermissionDeniedError

ALGORITHM = "GOOG4-RSA-SHA256"
DEFAULT_HOST = "storage.googleapis.com"
MAX_EXPIRES_S = 7 * 24 * 3600  # GCS refuses V4 signatures valid for longer than a week
URL_STYLES = ("path", "virtual-hosted", "bucket-bound")
_WHITESPACE_RUN = re.compile(r"[ \t]+")


def _quote_path(key: str) -> str:
    return urllib.parse.quote(key, safe="/~")


def _quote_query(text: str) -> str:
    return urllib.parse.quote(text, safe="~")


def _canonical_headers(headers: Mapping[str, str], host: str) -> dict[str, str]:
    canonical = {"host": host}
    for name, value in headers.items():
        canonical[name.strip().lower()] = _WHITESPACE_RUN.sub(" ", str(value).strip(" \t"))
    return dict(sorted(canonical.items()))


def _expires_seconds(expires: Union[int, _dt.timedelta]) -> int:
    seconds = int(expires.total_seconds()) if isinstance(expires, _dt.timedelta) else int(expires)
    if not 1 <= seconds <= MAX_EXPIRES_S:
        raise InvalidArgumentError(f"expires must be 1..{MAX_EXPIRES_S} seconds, got {seconds}")
    return seconds


def rsa_sha256_sign(private_key_pem: bytes, message: bytes) -> bytes:
    """RSASSA-PKCS1-v1_5 with SHA-256, as both V4 URLs and OAuth JWTs use."""
    try:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding, rsa
    except ImportError:
        from .errors import UnsupportedError
        raise UnsupportedError("GCS service-account signing needs the 'cryptography' "
                               "package") from None
    try:
        key = serialization.load_pem_private_key(private_key_pem, password=None)
    except (ValueError, TypeError):
        # The loader's message could quote the key material: name the failure only.
        raise PermissionDeniedError("the service account's private key is not a readable "
                                    "PEM key", code="InvalidCredentials") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise PermissionDeniedError("the service account's private key is not an RSA key",
                                    code="InvalidCredentials")
    return key.sign(message, padding.PKCS1v15(), hashes.SHA256())


def signed_url(*, bucket: str, key: Optional[str], method: str,
               expires: Union[int, _dt.timedelta], client_email: str,
               private_key_pem: bytes, now: _dt.datetime,
               headers: Optional[Mapping[str, str]] = None,
               query: Optional[Mapping[str, str]] = None, scheme: str = "https",
               host: str = DEFAULT_HOST, url_style: str = "path",
               bucket_bound_hostname: Optional[str] = None) -> str:
    """A V4 signed URL for ``method`` on ``bucket``/``key``, valid for
    ``expires`` seconds (at most a week) from ``now`` (a naive datetime is
    taken as UTC).

    ``key`` None or empty signs the bucket itself (listing).  ``host`` may
    carry a port (``127.0.0.1:9023`` for an emulator).  ``url_style``:
    ``"path"`` (``host/bucket/key``), ``"virtual-hosted"``
    (``bucket.host/key``) or ``"bucket-bound"`` (``bucket_bound_hostname/key``,
    a CNAME for the bucket).  ``headers`` are signed, so the request must send
    them with exactly these values; ``query`` parameters are signed and
    appended.
    """
    if url_style not in URL_STYLES:
        raise InvalidArgumentError(f"url_style must be one of {URL_STYLES}, got {url_style!r}")
    if not bucket:
        raise InvalidArgumentError("a bucket name is required")
    if url_style == "bucket-bound":
        if not bucket_bound_hostname:
            raise InvalidArgumentError("url_style 'bucket-bound' needs bucket_bound_hostname")
        netloc, path = bucket_bound_hostname, "/" + _quote_path(key or "")
    elif url_style == "virtual-hosted":
        netloc, path = f"{bucket}.{host}", "/" + _quote_path(key or "")
    else:
        netloc = host
        path = f"/{_quote_path(bucket)}" + (f"/{_quote_path(key)}" if key else "")

    when = now.astimezone(_dt.timezone.utc) if now.tzinfo else now.replace(tzinfo=_dt.timezone.utc)
    stamp, day = when.strftime("%Y%m%dT%H%M%SZ"), when.strftime("%Y%m%d")
    scope = f"{day}/auto/storage/goog4_request"
    signed_headers = _canonical_headers(headers or {}, urllib.parse.urlsplit(
        f"//{netloc}").hostname or netloc)
    header_names = ";".join(signed_headers)

    params = {"X-Goog-Algorithm": ALGORITHM, "X-Goog-Credential": f"{client_email}/{scope}",
              "X-Goog-Date": stamp, "X-Goog-Expires": str(_expires_seconds(expires)),
              "X-Goog-SignedHeaders": header_names}
    params.update(query or {})
    canonical_query = "&".join(f"{n}={v}" for n, v in sorted(
        (_quote_query(name), _quote_query(str(value))) for name, value in params.items()))

    canonical_request = "\n".join([
        method.upper(), path, canonical_query,
        "".join(f"{n}:{v}\n" for n, v in signed_headers.items()), header_names,
        signed_headers.get("x-goog-content-sha256", "UNSIGNED-PAYLOAD")])
    string_to_sign = "\n".join([ALGORITHM, stamp, scope,
                                hashlib.sha256(canonical_request.encode()).hexdigest()])
    signature = binascii.hexlify(rsa_sha256_sign(private_key_pem,
                                                 string_to_sign.encode())).decode()
    return f"{scheme}://{netloc}{path}?{canonical_query}&X-Goog-Signature={signature}"


def presign_gcs(parsed_bucket: str, key: str, method: str,
                expires: Union[int, _dt.timedelta]) -> str:
    """A signed URL for ``gs://parsed_bucket/key`` with the service account
    and endpoint of ``gcs_auth.current()``, valid from now.  Raises
    ``PermissionDeniedError`` (code ``NoCredentials``) when no service account
    key is configured: user and metadata-server credentials cannot sign
    locally."""
    from . import gcs_auth
    config = gcs_auth.current()
    account = config.service_account()
    if account is None:
        raise PermissionDeniedError("signing a GCS URL needs a service account key "
                                    "(GOOGLE_APPLICATION_CREDENTIALS)", code="NoCredentials")
    scheme, _, host = config.endpoint.partition("://")
    return signed_url(bucket=parsed_bucket, key=key, method=method, expires=expires,
                      client_email=account[0], private_key_pem=account[1],
                      now=_dt.datetime.now(_dt.timezone.utc), scheme=scheme, host=host)


__all__ = ["signed_url", "presign_gcs", "rsa_sha256_sign", "ALGORITHM", "MAX_EXPIRES_S"]
