"""Temporary credentials from loopback stand-ins for STS (web identity),
the container endpoint and IMDSv2, and their refresh before expiry."""
from __future__ import annotations

import pytest

import s3dlio
from s3dlio import aws_config, s3_client


@pytest.fixture
def cred_server(monkeypatch, tmp_path):
    from servers import credentials
    server = credentials.start()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    yield server
    server.stop()


def test_web_identity(cred_server, monkeypatch, tmp_path):
    token = tmp_path / "token"
    token.write_text("jwt\n")
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token))
    monkeypatch.setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/test")
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", cred_server.url)
    creds = aws_config.load().credentials
    assert (creds.access_key, creds.session_token, creds.source) == (
        "AKIDWEB1", "session", "web-identity")
    assert creds.expiration is not None
    token.write_text("wrong")
    with pytest.raises(s3dlio.PermissionDeniedError):
        aws_config.load()


def test_container_credentials(cred_server, monkeypatch):
    from servers.credentials import CONTAINER_TOKEN
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", cred_server.url + "/container-creds")
    monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", CONTAINER_TOKEN)
    creds = aws_config.load().credentials
    assert (creds.access_key, creds.source) == ("AKIDCONT1", "container")
    monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "wrong")
    with pytest.raises(s3dlio.PermissionDeniedError):
        aws_config.load()


def test_imds_v2(cred_server, monkeypatch):
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "false")
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", cred_server.url)
    creds = aws_config.load().credentials
    assert (creds.access_key, creds.source) == ("AKIDIMDS1", "imds")
    assert ("PUT", "/latest/api/token") in cred_server.state.requests  # v2: a session token
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    assert aws_config.load().credentials is None


def test_temporary_credentials_refresh_before_expiry(cred_server, monkeypatch):
    from servers.credentials import CONTAINER_TOKEN
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", cred_server.url + "/container-creds")
    monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", CONTAINER_TOKEN)
    cred_server.state.lifetime_s = 3600
    first = s3_client.current()
    assert s3_client.current() is first  # far from expiry: reused
    cred_server.state.lifetime_s = 120  # the next ones expire within the 5-minute margin
    monkeypatch.setenv("AWS_REGION", "eu-central-1")  # force one rebuild to pick them up
    second = s3_client.current()
    assert second.settings.credentials.access_key == "AKIDCONT2"
    third = s3_client.current()  # expiring soon: fetched again, not reused
    assert third is not second
    assert third.settings.credentials.access_key == "AKIDCONT3"
