"""Command-line arguments to URIs: plain local paths become ``file://``
URIs where a local side is expected, and listed URIs are matched back to
the URI the user typed (``list`` returns lower-case schemes and ``gs://``
for ``gcs://``)."""
from __future__ import annotations

import os
from typing import Optional

from ..errors import InvalidURIError

_ALIASES = {"gcs": "gs"}
_LOCAL = ("file", "direct")


def from_arg(text: str, *, local_ok: bool) -> str:
    """The URI for a command-line argument.  Text with ``://`` is kept as
    typed (the library validates it).  Otherwise, where ``local_ok``, it is
    a local path, made absolute, keeping a trailing ``/``."""
    if "://" in text:
        return text
    if not local_ok or not text:
        raise InvalidURIError(
            f"invalid URI {text!r}: missing scheme (expected s3://, gs://, az://, file:// or "
            "direct://; plain paths are accepted only for the local side of cp, get, put, "
            "upload and download)", uri=text, code="InvalidURI")
    path = os.path.abspath(os.path.expanduser(text))
    if text.endswith("/") and path != "/":
        path += "/"
    return "file://" + path


def canonical(uri: str) -> str:
    """The spelling ``s3dlio.list`` uses for ``uri``: lower-case scheme,
    ``gs`` for ``gcs``, and ``file:///abs`` for local URIs."""
    scheme, _, rest = uri.partition("://")
    scheme = _ALIASES.get(scheme.lower(), scheme.lower())
    if scheme in _LOCAL:
        if rest.startswith("localhost/"):
            rest = rest[len("localhost"):]
        rest = "/" + rest.lstrip("/")
    return f"{scheme}://{rest}"


def local_path(uri: str) -> Optional[str]:
    """The path of a ``file://`` URI (not ``direct://``, whose reads must go
    through O_DIRECT), else ``None``."""
    scheme, _, rest = canonical(uri).partition("://")
    return rest if scheme == "file" else None


def is_local(uri: str) -> bool:
    return canonical(uri).partition("://")[0] in _LOCAL


def basename(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[-1]


def child(prefix: str, relative: str) -> str:
    """``prefix`` + ``relative`` with exactly one ``/`` between them."""
    return (prefix if prefix.endswith("/") else prefix + "/") + relative


def as_directory(uri: str) -> str:
    return uri if uri.endswith("/") else uri + "/"


def names_directory(uri: str) -> bool:
    """``uri`` ends in ``/`` or is an existing local directory."""
    path = local_path(uri)
    return uri.endswith("/") or (path is not None and os.path.isdir(path))
