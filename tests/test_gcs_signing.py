"""GCS V4 signed URLs against googleapis' conformance cases, byte for byte."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from s3dlio import InvalidArgumentError
from s3dlio.gcs_sign import signed_url

pytest.importorskip("cryptography")

_RELATIVE = Path("gcs-v4-signing") / "v4_signatures.json"
# Only the case names are read at collection, to name the tests; the cases
# themselves come through the ``vectors`` fixture, which skips when absent.
_LISTED = Path(__file__).resolve().parents[1].parent / "shared" / "vectors" / _RELATIVE
_NAMES = ([case["description"] for case in json.loads(_LISTED.read_text())["signingV4Tests"]]
          if _LISTED.is_file() else [])
_URL_STYLES = {"VIRTUAL_HOSTED_STYLE": "virtual-hosted", "BUCKET_BOUND_HOSTNAME": "bucket-bound"}


def _scheme_and_host(case: dict) -> tuple[str, str]:
    """The conformance precedence: hostname, then the client's endpoint, then
    the emulator host, then the universe domain; a scheme written in the
    winning value wins over the case's ``scheme``."""
    scheme, host = case.get("scheme", "https"), "storage.googleapis.com"
    if case.get("universeDomain"):
        host = "storage." + case["universeDomain"]
    for field in ("emulatorHostname", "clientEndpoint", "hostname"):
        if case.get(field):
            written = case[field]
            scheme, host = (written.split("://", 1) if "://" in written
                            else (case.get("scheme", "https"), written))
    return scheme, host


@pytest.fixture
def service_account(vectors) -> dict:
    return json.loads((vectors / "gcs-v4-signing" / "test_service_account.not-a-test.json")
                      .read_text())


@pytest.mark.parametrize("name", _NAMES)
def test_conformance_signed_url(vectors, service_account, name):
    cases = json.loads((vectors / _RELATIVE).read_text())["signingV4Tests"]
    case = next(c for c in cases if c["description"] == name)
    scheme, host = _scheme_and_host(case)
    url = signed_url(bucket=case["bucket"], key=case.get("object"), method=case["method"],
                     expires=case["expiration"], client_email=service_account["client_email"],
                     private_key_pem=service_account["private_key"].encode(),
                     now=dt.datetime.fromisoformat(case["timestamp"].replace("Z", "+00:00")),
                     headers=case.get("headers"), query=case.get("queryParameters"),
                     scheme=scheme, host=host,
                     url_style=_URL_STYLES.get(case.get("urlStyle", ""), "path"),
                     bucket_bound_hostname=case.get("bucketBoundHostname"))
    assert url == case["expectedUrl"]


def test_naive_now_is_utc_and_timedelta_expiry(service_account):
    common = dict(bucket="b", key="k", method="GET", client_email=service_account["client_email"],
                  private_key_pem=service_account["private_key"].encode())
    aware = signed_url(expires=60, now=dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc),
                       **common)
    naive = signed_url(expires=dt.timedelta(minutes=1), now=dt.datetime(2024, 1, 2, 3, 4, 5),
                       **common)
    assert aware == naive and "X-Goog-Date=20240102T030405Z&X-Goog-Expires=60&" in aware


@pytest.mark.parametrize("change", [{"expires": 0}, {"expires": 7 * 24 * 3600 + 1},
                                    {"url_style": "sideways"}, {"url_style": "bucket-bound"},
                                    {"bucket": ""}])
def test_bad_arguments_refused(service_account, change):
    args = dict(bucket="b", key="k", method="GET", expires=60,
                client_email=service_account["client_email"],
                private_key_pem=service_account["private_key"].encode(),
                now=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc))
    args.update(change)
    with pytest.raises(InvalidArgumentError):
        signed_url(**args)
