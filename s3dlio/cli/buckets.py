"""mb and rb."""
from __future__ import annotations

import argparse

import s3dlio

from . import uris


def cmd_mb(args: argparse.Namespace) -> int:
    s3dlio.create_bucket(uris.from_arg(args.bucket, local_ok=False))
    return 0


def cmd_rb(args: argparse.Namespace) -> int:
    bucket = uris.from_arg(args.bucket, local_ok=False)
    if args.force:
        s3dlio.delete(uris.as_directory(bucket), recursive=True)
    s3dlio.delete_bucket(bucket)
    return 0
