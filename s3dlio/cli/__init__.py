"""The ``s3dlio`` command line (console script and ``python -m s3dlio``).
Documented in docs/cli.md."""
from __future__ import annotations

import os
import sys
from typing import Optional, Sequence

from .exitcodes import BROKEN_PIPE, INTERRUPTED, report
from .parser import build_parser

__all__ = ["main"]


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs one command; returns its exit code (docs/cli.md#exit-codes)."""
    args = build_parser().parse_args(argv)
    try:
        if args.verbose:
            import s3dlio
            s3dlio.init_logging("debug" if args.verbose > 1 else "info")
        code: int = args.func(args)
        sys.stdout.flush()
        return code
    except KeyboardInterrupt:
        print("s3dlio: interrupted", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`s3dlio cat ... | head`): stop quietly, and keep
        # the interpreter from reporting the failed flush of stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return BROKEN_PIPE
    except Exception as exc:  # noqa: BLE001 -- the one place every error is reported
        return report(exc, args.debug)
