"""Local-disk helpers that are not on the hot path: listing and directory
walking for ``file://`` and ``direct://``.  Reads and writes go through the
native engine (``_engine``)."""
from __future__ import annotations

import fnmatch
import os
from typing import Optional

from .errors import error_from_oserror
from .uri import ParsedURI

#: Marker in the names of in-progress atomic writes (see native/src/file_io.c).
TEMP_MARKER = ".s3dlio-tmp."


def is_temp_name(name: str) -> bool:
    return name.startswith(".") and TEMP_MARKER in name


def _directory_entries(directory: str, recursive: bool, uri: str) -> list[str]:
    """Regular files under ``directory`` (skipping in-progress writes and
    following no symlinked directories, so cycles cannot hang a listing);
    non-recursive listings give sub-directories as ``dir/`` entries."""
    out = []
    stack = [directory]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as entries:
                for entry in entries:
                    if is_temp_name(entry.name):
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        if recursive:
                            stack.append(entry.path)
                        else:
                            out.append(entry.path + "/")
                    elif entry.is_file():
                        out.append(entry.path)
        except (FileNotFoundError, NotADirectoryError):
            continue  # removed while we walked, or not a directory at all
        except OSError as exc:
            raise error_from_oserror(exc, uri) from exc
    return out


def list_paths(parsed: ParsedURI, recursive: bool = True) -> list[str]:
    """Paths selected by a local URI, sorted.

    A URI ending in ``/`` selects everything under that directory.  Any
    other URI selects exactly the file of that name and, if a directory of
    that name exists, everything under it -- never siblings that merely
    share the prefix (``.../train`` does not select ``.../train2``).
    Non-recursive listings return sub-directories as ``dir/`` entries."""
    path = parsed.path or "/"
    if path.endswith("/"):
        results = _directory_entries(path, recursive, parsed.raw)
    else:
        results = [path] if os.path.isfile(path) else []
        if os.path.isdir(path):
            results += _directory_entries(path, recursive, parsed.raw)
    results.sort()
    return results


def match_pattern(relative: str, pattern: Optional[str]) -> bool:
    """Glob match on the key relative to the listed prefix; a pattern with
    no ``/`` also matches the base name, as shell users expect."""
    if pattern is None:
        return True
    if fnmatch.fnmatchcase(relative, pattern):
        return True
    return "/" not in pattern and fnmatch.fnmatchcase(relative.rsplit("/", 1)[-1], pattern)
