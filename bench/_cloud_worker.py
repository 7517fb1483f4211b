"""One GCS or Azure client of bench/cloud.py, in a process of its own.

The protocol, the timing (getrusage deltas around the data-moving call) and
the checks are bench/_s3_worker.py's: this file only adds the clients below
to its table and runs its main loop.  Clients (NAME):

  s3dlio-cloud    s3dlio.get_many / put_many over gs:// or az:// (ours, or the
                  PyPI one); init's `uri_prefix` names the bucket or container
  gcs-sdk         google-cloud-storage: blob.download_as_bytes() /
                  blob.upload_from_string() in a ThreadPoolExecutor
  azure-sdk       azure-storage-blob: download_blob().readall() /
                  upload_blob(overwrite=True) in a ThreadPoolExecutor
"""
from __future__ import annotations

import sys
from importlib.metadata import version

import _s3_worker  # beside this file, so on sys.path[0]


class S3dlioCloudClient(_s3_worker.S3dlioClient):
    def __init__(self, cfg: dict) -> None:
        super().__init__(cfg)
        self.prefix = cfg["uri_prefix"]  # gs://bucket/ or az://account/container/

    def uri(self, key: str) -> str:
        return self.prefix + key


class _PoolClient:
    """A batch is one call per object, in a thread pool made once (untimed)."""

    def __init__(self, max_in_flight: int) -> None:
        from concurrent.futures import ThreadPoolExecutor
        self.pool = ThreadPoolExecutor(max_in_flight)

    def get_many(self, keys: list) -> list:
        return list(self.pool.map(self.get_one, keys))

    def put_many(self, items: list) -> None:
        list(self.pool.map(self.put_one, items))

    def release(self, results: list) -> None:
        pass


class GcsSdkClient(_PoolClient):
    def __init__(self, cfg: dict) -> None:
        import requests.adapters
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage
        super().__init__(cfg["max_in_flight"])
        self.version = version("google-cloud-storage")
        client = storage.Client(project=cfg["project"], credentials=AnonymousCredentials(),
                                client_options={"api_endpoint": cfg["endpoint"]})
        # requests keeps 10 connections per host by default: with 64 threads the
        # rest would connect anew for every request.
        client._http.mount("http://", requests.adapters.HTTPAdapter(
            pool_connections=1, pool_maxsize=cfg["max_in_flight"]))
        self.bucket = client.bucket(cfg["bucket"])

    def get_one(self, key: str) -> bytes:
        return self.bucket.blob(key).download_as_bytes()

    def put_one(self, item: tuple) -> None:
        self.bucket.blob(item[0]).upload_from_string(item[1])


class AzureSdkClient(_PoolClient):
    def __init__(self, cfg: dict) -> None:
        from azure.core.pipeline.transport import RequestsTransport
        from azure.core.pipeline.transport._bigger_block_size_http_adapters import (
            BiggerBlockSizeHTTPAdapter)
        from azure.storage.blob import BlobServiceClient
        from urllib3.util.retry import Retry
        super().__init__(cfg["max_in_flight"])
        self.version = version("azure-storage-blob")
        # azure-core's own adapter and settings, with a pool as big as the thread
        # pool (its default keeps 10 connections).
        transport = RequestsTransport()
        transport.open()
        transport.session.mount("http://", BiggerBlockSizeHTTPAdapter(
            max_retries=Retry(total=False, redirect=False, raise_on_status=False),
            pool_connections=1, pool_maxsize=cfg["max_in_flight"]))
        service = BlobServiceClient(cfg["endpoint"], credential={
            "account_name": cfg["account"], "account_key": cfg["account_key"]},
            api_version=cfg["api_version"], transport=transport)
        self.container = service.get_container_client(cfg["bucket"])

    def get_one(self, key: str) -> bytes:
        return self.container.get_blob_client(key).download_blob().readall()

    def put_one(self, item: tuple) -> None:
        self.container.get_blob_client(item[0]).upload_blob(item[1], overwrite=True)


_s3_worker.CLIENTS.update({"s3dlio-cloud": S3dlioCloudClient, "gcs-sdk": GcsSdkClient,
                           "azure-sdk": AzureSdkClient})


if __name__ == "__main__":
    sys.exit(_s3_worker.main())
