"""GCS credential discovery and OAuth2 tokens against a loopback token
server and metadata server; presigning with the discovered service account."""
from __future__ import annotations

import datetime as dt
import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from s3dlio import PermissionDeniedError, gcs_auth
from s3dlio.gcs_sign import presign_gcs, signed_url

pytest.importorskip("cryptography")

_GCS_ENV = ("STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS", "CLOUDSDK_CONFIG",
            "GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT", "GCE_METADATA_HOST",
            "S3DLIO_GCE_METADATA")
CLIENT_EMAIL = "loader@test-project.iam.gserviceaccount.com"
USER = ("client-id.apps.googleusercontent.com", "client-secret-XYZ", "1//refresh-token-XYZ")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """No real credentials of the machine running the tests are seen, and
    nothing is discovered unless a test puts it there."""
    for name in _GCS_ENV:
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "home").mkdir()
    (tmp_path / "gcloud").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))


def _rsa_key():
    from cryptography.hazmat.primitives.asymmetric import rsa
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(key) -> str:
    from cryptography.hazmat.primitives import serialization
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


@pytest.fixture(scope="module")
def rsa_key():
    return _rsa_key()


@pytest.fixture
def token_server(rsa_key):
    from servers import gcs_token
    server = gcs_token.start()
    server.state.public_key = rsa_key.public_key()
    server.state.client_email = CLIENT_EMAIL
    server.state.refresh = USER
    yield server
    server.stop()


def _write(path, doc: dict) -> str:
    path.write_text(json.dumps(doc))
    return str(path)


@pytest.fixture
def service_account_file(tmp_path, token_server, rsa_key) -> str:
    return _write(tmp_path / "sa.json", {
        "type": "service_account", "project_id": "test-project", "private_key_id": "kid-1",
        "private_key": _pem(rsa_key), "client_email": CLIENT_EMAIL,
        "token_uri": token_server.state.token_url})


@pytest.fixture
def authorized_user_file(tmp_path, token_server) -> str:
    return _write(tmp_path / "user.json", {
        "type": "authorized_user", "client_id": USER[0], "client_secret": USER[1],
        "refresh_token": USER[2], "token_uri": token_server.state.token_url,
        "quota_project_id": "quota-project"})


def _secrets(rsa_key) -> list[str]:
    """Fragments that must never appear in a message or repr."""
    body = "".join(_pem(rsa_key).splitlines()[1:-1])
    return [body[i:i + 24] for i in range(0, len(body) - 24, 200)] + [USER[1], USER[2],
                                                                       "PRIVATE KEY"]


def test_service_account_token_is_cached(service_account_file, token_server, monkeypatch):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", service_account_file)
    config = gcs_auth.load()
    assert (config.endpoint, config.emulator, config.project) == (
        "https://storage.googleapis.com", False, "test-project")
    assert config.authorization() == "Bearer sa-1"
    assert config.authorization() == "Bearer sa-1"
    assert (token_server.state.requests, token_server.state.rejections) == (1, [])


def test_threads_share_one_token_request(service_account_file, token_server, monkeypatch):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", service_account_file)
    config = gcs_auth.load()
    seen: list = []
    threads = [threading.Thread(target=lambda: seen.append(config.authorization()))
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert seen == ["Bearer sa-1"] * 8 and token_server.state.requests == 1


def test_token_refreshed_within_five_minutes_of_expiry(service_account_file, token_server,
                                                       monkeypatch):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", service_account_file)
    token_server.state.expires_in = 299
    config = gcs_auth.load()
    assert [config.authorization(), config.authorization()] == ["Bearer sa-1", "Bearer sa-2"]


def test_authorized_user(authorized_user_file, token_server, monkeypatch):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", authorized_user_file)
    config = gcs_auth.load()
    assert config.project == "quota-project"
    assert config.authorization() == "Bearer user-1"
    assert config.service_account() is None
    assert token_server.state.rejections == []


def test_project_from_env_wins(authorized_user_file, monkeypatch):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", authorized_user_file)
    monkeypatch.setenv("GCLOUD_PROJECT", "from-env")
    assert gcs_auth.load().project == "from-env"


def test_gcloud_adc_file(authorized_user_file, token_server, monkeypatch, tmp_path):
    adc = tmp_path / "gcloud" / "application_default_credentials.json"
    adc.write_text(Path(authorized_user_file).read_text())
    config = gcs_auth.load()
    assert config.credentials_kind == "authorized_user"
    assert config.authorization() == "Bearer user-1"


def test_metadata_server(token_server, monkeypatch):
    monkeypatch.setenv("GCE_METADATA_HOST", token_server.url.split("://", 1)[1])
    config = gcs_auth.load()
    assert config.credentials_kind == "metadata"
    assert config.authorization() == "Bearer gce-1"
    assert token_server.state.rejections == []
    # The server does check the header: a request without it is refused.
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(token_server.url + "/computeMetadata/v1/instance/"
                               "service-accounts/default/token", timeout=5)
    refused.value.close()
    assert token_server.state.rejections == ["Metadata-Flavor None"]


def test_no_credentials_and_no_metadata_probe(monkeypatch):
    config = gcs_auth.load()
    assert config.credentials is None  # the metadata server is opt-in
    with pytest.raises(PermissionDeniedError) as info:
        config.authorization()
    assert info.value.code == "NoCredentials"
    monkeypatch.setenv("S3DLIO_GCE_METADATA", "1")
    assert gcs_auth.load().credentials_kind == "metadata"  # built, not contacted


@pytest.mark.parametrize("value, endpoint", [
    ("127.0.0.1:9023", "http://127.0.0.1:9023"),
    ("https://gcs.local:4443/", "https://gcs.local:4443")])
def test_emulator_needs_no_token(monkeypatch, value, endpoint, authorized_user_file):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", value)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", authorized_user_file)
    config = gcs_auth.load()
    assert (config.endpoint, config.emulator, config.authorization()) == (endpoint, True, None)


@pytest.mark.parametrize("reply", ["401", "garbage", "503"])
@pytest.mark.parametrize("kind", ["service_account", "authorized_user"])
def test_server_errors_never_show_secrets(request, token_server, rsa_key, monkeypatch,
                                          reply, kind):
    path = request.getfixturevalue(f"{kind}_file")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", path)
    token_server.state.reply = reply
    with pytest.raises(PermissionDeniedError) as info:
        gcs_auth.load().authorization()
    shown = f"{info.value} {info.value!r} {info.value.args}"
    assert not [s for s in _secrets(rsa_key) if s in shown]
    assert "assertion" not in shown and "eyJ" not in shown  # no JWT either
    assert token_server.state.requests == (2 if reply == "503" else 1)  # one retry, on 5xx only


def test_jwt_signed_with_the_wrong_key_is_refused(tmp_path, token_server, monkeypatch):
    path = _write(tmp_path / "other.json", {
        "type": "service_account", "private_key": _pem(_rsa_key()), "client_email": CLIENT_EMAIL,
        "token_uri": token_server.state.token_url})
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", path)
    with pytest.raises(PermissionDeniedError) as info:
        gcs_auth.load().authorization()
    assert (info.value.http_status, token_server.state.rejections) == (400, ["bad signature"])
    assert "invalid_grant" in str(info.value)


@pytest.mark.parametrize("content, expected", [
    (None, "cannot read"), ("{not json", "is not JSON"),
    ('{"type": "external_account"}', "'external_account'"),
    ('{"type": "service_account", "client_email": "a@b"}', "lacks private_key")])
def test_unusable_credentials_file(tmp_path, monkeypatch, content, expected):
    path = tmp_path / "creds.json"
    if content is not None:
        path.write_text(content)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    config = gcs_auth.load()  # building a config never fails; asking for a token does
    for ask in (config.authorization, config.service_account):
        with pytest.raises(PermissionDeniedError) as info:
            ask()
        assert info.value.code == "CredentialsFile"
        assert expected in str(info.value) and str(path) in str(info.value)


def test_repr_shows_no_secrets(service_account_file, authorized_user_file, rsa_key,
                               monkeypatch):
    for path in (service_account_file, authorized_user_file):
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", path)
        config = gcs_auth.load()
        token = config.authorization().split()[1]
        shown = repr(config) + repr(config.credentials) + str(config) + repr(config._tokens)
        assert not [s for s in _secrets(rsa_key) + [token] if s in shown]
        assert "credentials=" in shown  # the kind and the public identity remain visible


def test_current_is_reused_until_the_environment_changes(authorized_user_file, monkeypatch):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", authorized_user_file)
    first = gcs_auth.current()
    assert gcs_auth.current() is first
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "other")
    assert gcs_auth.current() is not first and gcs_auth.current().project == "other"


def _signed_now(url: str) -> dt.datetime:
    stamp = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["X-Goog-Date"][0]
    return dt.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)


@pytest.mark.parametrize("emulator, prefix", [
    (None, "https://storage.googleapis.com/bkt/a%20b.bin?"),
    ("127.0.0.1:9023", "http://127.0.0.1:9023/bkt/a%20b.bin?")])
def test_presign_with_the_configured_service_account(service_account_file, rsa_key, monkeypatch,
                                                     emulator, prefix):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", service_account_file)
    if emulator:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator)
    url = presign_gcs("bkt", "a b.bin", "GET", 600)
    assert url.startswith(prefix) and "X-Goog-Expires=600&" in url
    scheme, host = prefix.split("/")[0][:-1], prefix.split("/")[2]
    assert url == signed_url(bucket="bkt", key="a b.bin", method="GET", expires=600,
                             client_email=CLIENT_EMAIL, private_key_pem=_pem(rsa_key).encode(),
                             now=_signed_now(url), scheme=scheme, host=host)


@pytest.mark.parametrize("emulator", [None, "127.0.0.1:9023"])
def test_presign_needs_a_service_account(authorized_user_file, monkeypatch, emulator):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", authorized_user_file)
    if emulator:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator)
    with pytest.raises(PermissionDeniedError) as info:
        presign_gcs("bkt", "key", "GET", 600)
    assert info.value.code == "NoCredentials"
