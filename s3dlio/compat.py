"""v0.8 names that the API guide keeps working.  Each warns with a
DeprecationWarning naming its replacement."""
from __future__ import annotations

import warnings
from typing import Any

from . import api
from ._bytesview import BytesView
from .uri import parse_uri


def _warn(old: str, new: str) -> None:
    warnings.warn(f"s3dlio.{old}() is deprecated; use s3dlio.{new}() instead",
                  DeprecationWarning, stacklevel=3)


def get_object(uri: str) -> BytesView:
    """Deprecated: use :func:`s3dlio.get`."""
    _warn("get_object", "get")
    return api.get(uri)


def stat_object(uri: str) -> dict[str, Any]:
    """Deprecated: use :func:`s3dlio.stat`."""
    _warn("stat_object", "stat")
    return api.stat(uri)


def list_objects(uri: str, recursive: bool = True) -> list[str]:
    """Deprecated: use :func:`s3dlio.list`.  Returns keys relative to the
    listed directory rather than full URIs (the v0.8 behaviour)."""
    _warn("list_objects", "list")
    parsed = parse_uri(uri, require_key=False)
    full = api.list(parsed.raw, recursive=recursive)
    cut = api.relative_base(parsed)
    return [u[len(cut):] if u.startswith(cut) else u for u in full]
