"""moto server as a real S3 endpoint with SigV4 checking switched on.

Started as a separate process on a free loopback port.  An IAM user with an
s3:* policy gets an access key; then POST /moto-api/reset-auth turns on
authentication (see shared/research/emulators.md), after which a request
signed with a wrong secret is rejected."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass

START_TIMEOUT_S = 30


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class MotoS3:
    endpoint: str
    access_key: str
    secret_key: str
    process: subprocess.Popen
    region: str = "us-east-1"

    def env(self) -> dict:
        return {
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
        }

    def boto3_client(self, secret: str | None = None):
        import boto3
        from botocore.config import Config
        return boto3.client("s3", endpoint_url=self.endpoint, region_name=self.region,
                            aws_access_key_id=self.access_key,
                            aws_secret_access_key=secret or self.secret_key,
                            config=Config(s3={"addressing_style": "path"},
                                          retries={"max_attempts": 1}))

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def _wait_ready(endpoint: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto_server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("moto_server did not start within 30 s")


def start() -> MotoS3:
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                                str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=env)
    try:
        _wait_ready(endpoint, process)
        import boto3
        iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1",
                           aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
        iam.create_user(UserName="s3dlio-test")
        iam.put_user_policy(UserName="s3dlio-test", PolicyName="all-s3", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName="s3dlio-test")["AccessKey"]
        request = urllib.request.Request(
            f"{endpoint}/moto-api/reset-auth", data=b"0", method="POST",
            headers={"Content-Type": "text/plain",
                     # moto picks the service from the credential scope.
                     "Authorization": "AWS4-HMAC-SHA256 Credential=bootstrap/20260101/"
                                      "us-east-1/s3/aws4_request, SignedHeaders=host, "
                                      "Signature=00"})
        with urllib.request.urlopen(request, timeout=10):
            pass
        return MotoS3(endpoint, key["AccessKeyId"], key["SecretAccessKey"], process)
    except BaseException:
        process.terminate()
        process.wait(timeout=10)
        raise
