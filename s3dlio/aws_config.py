"""Where S3 settings come from: the environment and the shared AWS files,
in botocore's order.  Read once per client; a changed environment takes
effect for clients created afterwards (see ``s3_client.current``).

Credentials: ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` /
``AWS_SESSION_TOKEN``; else web identity (``AWS_WEB_IDENTITY_TOKEN_FILE`` +
``AWS_ROLE_ARN`` through STS); else the profile (``AWS_PROFILE``, default
``default``) in ``AWS_SHARED_CREDENTIALS_FILE`` (``~/.aws/credentials``) and
``AWS_CONFIG_FILE`` (``~/.aws/config``), including ``credential_process``;
else container credentials, else the EC2 instance metadata service
(see :mod:`s3dlio.aws_credentials`).
Region: ``AWS_REGION``, ``AWS_DEFAULT_REGION``, the profile's ``region``,
else ``us-east-1``.  Endpoint: ``AWS_ENDPOINT_URL_S3``,
``AWS_ENDPOINT_URL``, the profile's ``endpoint_url``.  TLS:
``AWS_CA_BUNDLE`` / profile ``ca_bundle``."""
from __future__ import annotations

import configparser
import json
import os
import shlex
import subprocess
from dataclasses import dataclass, field
from typing import Mapping, Optional

from .errors import PermissionDeniedError, S3dlioError


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str = field(repr=False)
    session_token: Optional[str] = field(default=None, repr=False)
    source: str = "environment"
    expiration: Optional[float] = None  # epoch seconds, for temporary credentials

    def __repr__(self) -> str:  # secrets never appear in reprs
        return f"Credentials(access_key={self.access_key!r}, source={self.source!r})"


@dataclass(frozen=True)
class S3Settings:
    region: str
    endpoint: Optional[str]          # e.g. "http://127.0.0.1:9000"; None = AWS
    addressing: str                  # "path" or "virtual"
    credentials: Optional[Credentials]
    ca_bundle: Optional[str]
    verify_tls: bool


def _read_ini(path: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser()
    try:
        parser.read(os.path.expanduser(path))
    except (configparser.Error, OSError) as exc:
        raise S3dlioError(f"cannot read AWS file {path}: {exc.__class__.__name__}") from None
    return parser


def _profile_sections(env: Mapping[str, str]) -> tuple[dict, dict]:
    named = env.get("AWS_PROFILE") or env.get("AWS_DEFAULT_PROFILE")
    profile = named or "default"
    creds = _read_ini(env.get("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"))
    config = _read_ini(env.get("AWS_CONFIG_FILE", "~/.aws/config"))
    cred_section = dict(creds.items(profile)) if creds.has_section(profile) else {}
    config_name = profile if profile == "default" else f"profile {profile}"
    conf_section = dict(config.items(config_name)) if config.has_section(config_name) else {}
    if named and not cred_section and not conf_section:
        # As botocore: a profile asked for by name must exist.
        raise S3dlioError(f"AWS profile {named!r} not found in the credentials or config file",
                          code="ProfileNotFound")
    return cred_section, conf_section


def _nested(section: dict, group: str, key: str) -> Optional[str]:
    """A value of a nested block such as ``s3 =\n  addressing_style = path``."""
    for line in section.get(group, "").splitlines():
        name, sep, value = line.partition("=")
        if sep and name.strip() == key:
            return value.strip()
    return None


def _credential_process(command: str) -> Credentials:
    try:
        out = subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=60,
                             check=True).stdout
        doc = json.loads(out)
        from .aws_credentials import parse_time
        return Credentials(doc["AccessKeyId"], doc["SecretAccessKey"], doc.get("SessionToken"),
                           source="credential_process",
                           expiration=parse_time(doc.get("Expiration") or ""))
    except (OSError, subprocess.SubprocessError, ValueError, KeyError) as exc:
        # The command's output may hold secrets: name only the failure kind.
        raise PermissionDeniedError(
            f"credential_process failed ({exc.__class__.__name__})", code="CredentialProcess"
        ) from None


def _credentials(env: Mapping[str, str], cred_section: dict, conf_section: dict,
                 region: str) -> Optional[Credentials]:
    """botocore's order: environment, web identity, the profile's keys,
    credential_process, container, then the instance metadata service."""
    from . import aws_credentials
    key, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    if key and secret:
        return Credentials(key, secret, env.get("AWS_SESSION_TOKEN") or None)
    found = aws_credentials.web_identity(env, region)
    if found:
        return found
    for section, source in ((cred_section, "shared-credentials-file"),
                            (conf_section, "config-file")):
        if section.get("aws_access_key_id") and section.get("aws_secret_access_key"):
            return Credentials(section["aws_access_key_id"], section["aws_secret_access_key"],
                               section.get("aws_session_token"), source=source)
    command = cred_section.get("credential_process") or conf_section.get("credential_process")
    if command:
        return _credential_process(command)
    return aws_credentials.container(env) or aws_credentials.imds(env)


def _is_ip_or_local(endpoint: str) -> bool:
    import ipaddress
    from urllib.parse import urlsplit
    host = urlsplit(endpoint).hostname or ""
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def load(env: Optional[Mapping[str, str]] = None) -> S3Settings:
    """Settings for a new client, from ``env`` (default: os.environ)."""
    env = os.environ if env is None else env
    cred_section, conf_section = _profile_sections(env)
    region = (env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
              or conf_section.get("region") or "us-east-1")
    endpoint = (env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
                or conf_section.get("endpoint_url") or None)
    if endpoint:
        endpoint = endpoint.rstrip("/")
        if not endpoint.startswith(("http://", "https://")):
            raise S3dlioError(f"endpoint URL must start with http:// or https://: {endpoint!r}",
                              code="InvalidEndpoint")
    style = (env.get("S3DLIO_ADDRESSING_STYLE") or _nested(conf_section, "s3", "addressing_style")
             or conf_section.get("addressing_style") or "auto").lower()
    if style == "auto":
        # Custom endpoints (MinIO, Ceph, moto, an IP) rarely have wildcard
        # DNS for bucket subdomains; AWS itself prefers virtual-hosted.
        style = "path" if endpoint else "virtual"
    if style not in ("path", "virtual"):
        raise S3dlioError(f"addressing style must be path, virtual or auto, not {style!r}",
                          code="InvalidConfig")
    if endpoint and _is_ip_or_local(endpoint):
        style = "path"  # an IP or localhost cannot carry a bucket subdomain
    ca_bundle = env.get("AWS_CA_BUNDLE") or conf_section.get("ca_bundle") or None
    verify = (env.get("S3DLIO_VERIFY_TLS", "1").lower() not in ("0", "false", "no"))
    return S3Settings(region=region, endpoint=endpoint, addressing=style,
                      credentials=_credentials(env, cred_section, conf_section, region),
                      ca_bundle=ca_bundle, verify_tls=verify)
