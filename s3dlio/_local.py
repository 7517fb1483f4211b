"""Local-disk helpers that are not on the hot path: listing and directory
walking for ``file://`` and ``direct://``.  Reads and writes go through the
native engine (``_engine``)."""
from __future__ import annotations

import fnmatch
import os
from typing import Iterator, Optional

from .errors import IsADirectoryError, NotFoundError, PermissionDeniedError
from .uri import ParsedURI

#: Marker in the names of in-progress atomic writes (see native/src/file_io.c).
TEMP_MARKER = ".s3dlio-tmp."


def is_temp_name(name: str) -> bool:
    return name.startswith(".") and TEMP_MARKER in name


def _walk_files(root: str) -> Iterator[str]:
    """Yields every regular file under ``root`` (following no symlinked
    directories, so cycles cannot hang a listing)."""
    stack = [root]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as entries:
                for entry in entries:
                    if is_temp_name(entry.name):
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    elif entry.is_file():
                        yield entry.path
        except FileNotFoundError:
            continue  # removed while we walked
        except PermissionError as exc:
            raise PermissionDeniedError(f"permission denied listing {current}",
                                        uri=current) from exc


def list_paths(parsed: ParsedURI, recursive: bool = True) -> list[str]:
    """Paths under a local prefix, sorted.

    A prefix that names a directory lists its contents; otherwise the last
    component is a name prefix within its parent (as object-store prefixes
    behave).  Non-recursive listings return files plus sub-directories as
    ``dir/`` entries, like a delimiter listing."""
    path = parsed.path or "/"
    if os.path.isdir(path):
        parent, name_prefix = path, ""
    else:
        parent, name_prefix = os.path.split(path)
        if not os.path.isdir(parent):
            return []
    results: list[str] = []
    try:
        entries = list(os.scandir(parent))
    except FileNotFoundError:
        return []
    except NotADirectoryError:
        return []
    except PermissionError as exc:
        raise PermissionDeniedError(f"permission denied listing {parent}",
                                    uri=parsed.raw) from exc
    for entry in entries:
        if not entry.name.startswith(name_prefix) or is_temp_name(entry.name):
            continue
        if entry.is_dir(follow_symlinks=False):
            if recursive:
                results.extend(_walk_files(entry.path))
            else:
                results.append(entry.path + "/")
        elif entry.is_file():
            results.append(entry.path)
    results.sort()
    return results


def path_to_uri(scheme: str, path: str) -> str:
    return f"{scheme}://{path}"


def match_pattern(relative: str, pattern: Optional[str]) -> bool:
    """Glob match on the key relative to the listed prefix; a pattern with
    no ``/`` also matches the base name, as shell users expect."""
    if pattern is None:
        return True
    if fnmatch.fnmatchcase(relative, pattern):
        return True
    return "/" not in pattern and fnmatch.fnmatchcase(relative.rsplit("/", 1)[-1], pattern)


def ensure_not_directory(parsed: ParsedURI) -> None:
    if parsed.path and os.path.isdir(parsed.path):
        raise IsADirectoryError(f"is a directory: {parsed.raw}", uri=parsed.raw)


def missing(parsed: ParsedURI) -> NotFoundError:
    return NotFoundError(f"not found: {parsed.raw}", uri=parsed.raw)
