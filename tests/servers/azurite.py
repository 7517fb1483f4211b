"""Azurite (blob service only) as a real Azure Blob endpoint on 127.0.0.1.

Installed by scripts/setup-node-tools.sh into .cache/node.  Azurite always
checks SharedKey and SAS signatures, so a wrong key gets 403; it does not
check x-ms-date staleness (shared/research/emulators.md, A2).  Started with
--skipApiVersionCheck because current SDKs send an x-ms-version newer than
Azurite knows; clients here still pin API_VERSION, which Azurite supports."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .fake_gcs import Spawned, exported, spawn
from .moto_s3 import free_port

START_TIMEOUT_S = 30
ROOT = Path(__file__).resolve().parents[2]
BINARY = ROOT / ".cache/node/node_modules/.bin/azurite-blob"
# The well-known development account, published by Microsoft.
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"
               "K1SZFPTOtr/KBHBeksoGMGw==")
API_VERSION = "2021-08-06"


@dataclass
class Azurite(Spawned):
    port: int = 0

    @property
    def endpoint(self) -> str:
        """Path-style blob endpoint: containers go after the account."""
        return f"http://127.0.0.1:{self.port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};"
                f"AccountKey={ACCOUNT_KEY};BlobEndpoint={self.endpoint};")

    def env(self) -> dict:
        return {"AZURE_STORAGE_ACCOUNT": ACCOUNT, "AZURE_STORAGE_KEY": ACCOUNT_KEY,
                "AZURE_STORAGE_ENDPOINT": self.endpoint}

    def service_client(self, key: str = ACCOUNT_KEY):
        """An azure-storage-blob client for this server, signing with ``key``."""
        from azure.storage.blob import BlobServiceClient
        return BlobServiceClient(self.endpoint, credential={"account_name": ACCOUNT,
                                                            "account_key": key},
                                 api_version=API_VERSION)


def start(tmp_dir: Optional[Path] = None) -> Azurite:
    """An empty in-memory blob service on a free loopback port."""
    if not os.access(BINARY, os.X_OK):
        raise RuntimeError(f"Azurite is not installed at {BINARY}: run `make setup` "
                           "(or scripts/setup-node-tools.sh)")
    port = free_port()
    # An unsigned list gets 403 once the service is up.
    return spawn(Azurite, [BINARY, "--blobHost", "127.0.0.1", "--blobPort", port,
                           "--inMemoryPersistence", "--disableTelemetry", "--silent",
                           "--skipApiVersionCheck"],
                 f"http://127.0.0.1:{port}/{ACCOUNT}?comp=list", tmp_dir, START_TIMEOUT_S,
                 port=port)


def serving(tmp_dir: Optional[Path] = None):
    """A server whose env() is in os.environ while the block runs."""
    return exported(start(tmp_dir))
