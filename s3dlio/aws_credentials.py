"""Temporary-credential providers that need the network: web identity
through STS, container credentials (ECS/EKS) and the EC2 instance metadata
service (IMDSv2).  Each endpoint can be overridden, so tests point them at
loopback servers.  Requests are small, bounded (timeouts, size caps, one
retry at most) and made with urllib: they run once per client, before the
engine has anything to sign.

Credentials from here carry an expiry; ``s3_client.current`` builds a new
client (re-reading them) five minutes before it."""
from __future__ import annotations

import datetime as _dt
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Mapping, Optional

from .errors import PermissionDeniedError

_MAX_REPLY = 1 << 20
_TIMEOUT_S = 2.0
IMDS_DEFAULT = "http://169.254.169.254"
CONTAINER_HOST = "http://169.254.170.2"


def _fetch(request: urllib.request.Request, what: str) -> bytes:
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as reply:
            return reply.read(_MAX_REPLY + 1)[:_MAX_REPLY]
    except (urllib.error.URLError, OSError, ValueError) as exc:
        # Name the failure, never the URL's query (it may hold a token).
        raise PermissionDeniedError(f"{what} failed ({exc.__class__.__name__})",
                                    code="CredentialsUnavailable") from None


def parse_time(text: str) -> Optional[float]:
    try:
        return _dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def web_identity(env: Mapping[str, str], region: str):
    """AssumeRoleWithWebIdentity with the token in AWS_WEB_IDENTITY_TOKEN_FILE
    (STS endpoint: AWS_ENDPOINT_URL_STS, else the regional one)."""
    from .aws_config import Credentials
    token_file, role = env.get("AWS_WEB_IDENTITY_TOKEN_FILE"), env.get("AWS_ROLE_ARN")
    if not token_file or not role:
        return None
    try:
        with open(token_file, encoding="utf-8") as f:
            token = f.read(_MAX_REPLY).strip()
    except OSError as exc:
        raise PermissionDeniedError(f"cannot read AWS_WEB_IDENTITY_TOKEN_FILE "
                                    f"({exc.__class__.__name__})", code="WebIdentity") from None
    endpoint = (env.get("AWS_ENDPOINT_URL_STS") or f"https://sts.{region}.amazonaws.com").rstrip("/")
    params = urllib.parse.urlencode({
        "Action": "AssumeRoleWithWebIdentity", "Version": "2011-06-15", "RoleArn": role,
        "RoleSessionName": env.get("AWS_ROLE_SESSION_NAME") or "s3dlio",
        "WebIdentityToken": token})
    body = _fetch(urllib.request.Request(endpoint + "/", data=params.encode(), method="POST",
                                         headers={"Content-Type":
                                                  "application/x-www-form-urlencoded"}),
                  "AssumeRoleWithWebIdentity")
    from .s3_client import parse_xml
    root = parse_xml(body, "sts:AssumeRoleWithWebIdentity")
    found = {}
    for element in root.iter():
        tag = element.tag.rsplit("}", 1)[-1]
        if tag in ("AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"):
            found[tag] = (element.text or "").strip()
    if not found.get("AccessKeyId") or not found.get("SecretAccessKey"):
        raise PermissionDeniedError("AssumeRoleWithWebIdentity returned no credentials",
                                    code="WebIdentity")
    return Credentials(found["AccessKeyId"], found["SecretAccessKey"],
                       found.get("SessionToken") or None, source="web-identity",
                       expiration=parse_time(found.get("Expiration", "")))


def _from_json(doc: dict, source: str):
    from .aws_config import Credentials
    key = doc.get("AccessKeyId")
    secret = doc.get("SecretAccessKey")
    if not key or not secret:
        raise PermissionDeniedError(f"{source} returned no credentials", code=source)
    return Credentials(key, secret, doc.get("Token") or doc.get("SessionToken"), source=source,
                       expiration=parse_time(doc.get("Expiration", "")))


def _trusted_container_url(url: str) -> bool:
    """As botocore: the authorization token goes only over https or to a
    loopback / the ECS link-local host."""
    import ipaddress
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https":
        return True
    host = parts.hostname or ""
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or str(address) in ("169.254.170.2", "169.254.170.23")


def container(env: Mapping[str, str]):
    """ECS/EKS: AWS_CONTAINER_CREDENTIALS_FULL_URI, or _RELATIVE_URI on the
    link-local task endpoint, with AWS_CONTAINER_AUTHORIZATION_TOKEN(_FILE)."""
    full, relative = (env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI"),
                      env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"))
    if not full and not relative:
        return None
    url = full or CONTAINER_HOST + (relative or "")
    if full and not _trusted_container_url(full):
        raise PermissionDeniedError("AWS_CONTAINER_CREDENTIALS_FULL_URI must be https or a "
                                    "loopback/link-local address", code="container")
    headers = {}
    token = env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN")
    token_file = env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
    if token_file:
        try:
            with open(token_file, encoding="utf-8") as f:
                token = f.read(8192).strip()
        except OSError:
            token = None
    if token:
        headers["Authorization"] = token
    body = _fetch(urllib.request.Request(url, headers=headers), "container credentials")
    try:
        return _from_json(json.loads(body), "container")
    except ValueError:
        raise PermissionDeniedError("container credentials: malformed reply",
                                    code="container") from None


def imds(env: Mapping[str, str]):
    """EC2 instance role through IMDSv2 (a session token, then the role's
    credentials).  Endpoint: AWS_EC2_METADATA_SERVICE_ENDPOINT; switched off
    with AWS_EC2_METADATA_DISABLED=true."""
    if env.get("AWS_EC2_METADATA_DISABLED", "").lower() == "true":
        return None
    base = (env.get("AWS_EC2_METADATA_SERVICE_ENDPOINT") or IMDS_DEFAULT).rstrip("/")
    try:
        token = _fetch(urllib.request.Request(
            base + "/latest/api/token", method="PUT",
            headers={"X-aws-ec2-metadata-token-ttl-seconds": "21600"}), "IMDS token").decode()
    except PermissionDeniedError:
        return None  # not on EC2: no instance role, not an error
    headers = {"X-aws-ec2-metadata-token": token.strip()}
    prefix = base + "/latest/meta-data/iam/security-credentials/"
    roles = _fetch(urllib.request.Request(prefix, headers=headers), "IMDS role").decode()
    role = roles.strip().splitlines()[0] if roles.strip() else ""
    if not role:
        return None
    body = _fetch(urllib.request.Request(prefix + urllib.parse.quote(role), headers=headers),
                  "IMDS credentials")
    try:
        return _from_json(json.loads(body), "imds")
    except ValueError:
        raise PermissionDeniedError("IMDS: malformed credentials", code="imds") from None


def expiring_soon(expiration: Optional[float], now: Optional[float] = None,
                  margin_s: float = 300.0) -> bool:
    import time
    return expiration is not None and (now or time.time()) >= expiration - margin_s


__all__ = ["web_identity", "container", "imds", "expiring_soon"]
