"""Exit codes and the one-line error report.  Every s3dlio exception also
derives from a builtin (``NotFoundError`` is a ``FileNotFoundError``, ...),
so local ``OSError``s raised by the CLI itself map the same way."""
from __future__ import annotations

import sys
import traceback

OK = 0
ERROR = 1
USAGE = 2          # argparse's own code for a bad command line
NOT_FOUND = 3
PERMISSION = 4
INVALID = 5        # bad URI or argument value (InvalidURIError, InvalidArgumentError, ...)
BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for `... | head`
INTERRUPTED = 130  # 128 + SIGINT


def exit_code_for(exc: BaseException) -> int:
    if isinstance(exc, FileNotFoundError):
        return NOT_FOUND
    if isinstance(exc, PermissionError):
        return PERMISSION
    if isinstance(exc, ValueError):
        return INVALID
    return ERROR


def message_for(exc: BaseException) -> str:
    """One line: s3dlio errors carry their own message; a builtin ``OSError``
    gets ``<strerror>: <file>`` instead of ``[Errno N] ...``."""
    if isinstance(exc, OSError) and exc.strerror and not str(exc).startswith(exc.strerror):
        text = f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def report(exc: BaseException, debug: bool) -> int:
    """Prints ``s3dlio: error: <message>`` (after the traceback with
    ``debug``) and returns the exit code."""
    if debug:
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    print(f"s3dlio: error: {message_for(exc)}", file=sys.stderr)
    return exit_code_for(exc)
