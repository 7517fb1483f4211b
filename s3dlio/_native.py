"""Loads the native core through cffi and checks that the binding and the
library agree on the version.  ``ffi`` and ``lib`` are used only by the
modules in this package that talk to the engine (``_engine``, ``_logbridge``)."""
from __future__ import annotations

from .errors import error_for_status

try:
    from ._s3dl_cffi import ffi, lib  # type: ignore[import-not-found]
except ImportError as exc:  # pragma: no cover - only on a broken install
    raise ImportError(
        "s3dlio's native core is not built: run `pip install .` (or `python build.py` "
        f"in a source checkout). Cause: {exc}") from exc

#: Version of the header the binding was compiled against.
HEADER_VERSION: int = lib.S3DL_VERSION_NUM
#: Version of the shared library actually loaded.
LIBRARY_VERSION: int = lib.s3dl_version_number()

if HEADER_VERSION != LIBRARY_VERSION:
    raise ImportError(
        f"s3dlio binding was built for native core {HEADER_VERSION} but loaded "
        f"{LIBRARY_VERSION}; reinstall s3dlio so both come from one build")

#: Native status value -> enum name (``S3DL_E_NOT_FOUND``), from the header.
STATUS_NAMES: dict[int, str] = {
    value: name for name, value in ffi.typeof("s3dl_status").relements.items()
}


def version_string() -> str:
    return ffi.string(lib.s3dl_version_string()).decode()


def check(status: int, what: str) -> None:
    """Raises for a failed call that is not about one URI (engine set-up,
    batch options), through the same status table as per-item errors."""
    if status != lib.S3DL_OK:
        name = STATUS_NAMES.get(status, str(status))
        reason = ffi.string(lib.s3dl_strerror(status)).decode()
        raise error_for_status(name, f"{what}: {reason}")
