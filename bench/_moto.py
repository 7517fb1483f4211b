"""A loopback moto S3 server with one bucket, for the bench scripts (not part
of the s3dlio package): tests/servers/moto_s3.py started as the tests start
it, SigV4 checked."""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any, Iterator

import _util

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # servers.moto_s3


@contextlib.contextmanager
def moto_bucket(bucket: str, run_dir: str) -> Iterator[tuple[Any, Any, dict]]:
    """Starts moto and makes `bucket`; yields (server, boto3 client, the
    environment for a worker using it); stops moto on leaving."""
    from servers import moto_s3
    server = moto_s3.start()
    try:
        client = server.boto3_client()
        client.create_bucket(Bucket=bucket)
        yield server, client, _util.isolated_aws_env(run_dir, server.env())
    finally:
        server.stop()
