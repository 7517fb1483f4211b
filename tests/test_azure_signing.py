"""Azure Blob settings and SharedKey/SAS signing (s3dlio.azure_auth): the
SDK-generated vectors, connection strings, environment precedence, blob name
encoding, SAS placement, secrets kept out of text, and, when
azure-storage-blob is importable, differential checks against its signer."""
from __future__ import annotations

import base64
import json
import os
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3dlio import azure_auth
from s3dlio.azure_auth import API_VERSION, AzureConfig, load, string_to_sign
from s3dlio.errors import InvalidArgumentError

DEV = azure_auth.DEV_ACCOUNT
DEV_KEY_B64 = azure_auth.DEV_KEY
DEV_KEY = base64.b64decode(DEV_KEY_B64)
VECTOR_DATE = datetime(2024, 1, 1, tzinfo=timezone.utc)  # the vectors' x-ms-date
SECRET_KEY_B64 = base64.b64encode(b"not-the-dev-key-0123456789abcdef").decode()


def _vector_file(vectors):
    return json.loads((vectors / "azure-sharedkey" / "sharedkey_vectors.json").read_text())


# ---- the SDK-generated vectors ----

def test_vectors_string_to_sign_and_authorization(vectors):
    data = _vector_file(vectors)
    assert data["x_ms_version"] == API_VERSION
    key = base64.b64decode(data["account_key"])
    assert data["cases"]
    for case in data["cases"]:
        sts = string_to_sign(case["method"], case["url"], case["headers"], data["account_name"])
        assert sts == case["string_to_sign"], case["description"]
        auth = f"SharedKey {data['account_name']}:{azure_auth.sign(key, sts)}"
        assert auth == case["authorization"], case["description"]


def test_vectors_through_authorize(vectors):
    """authorize() adds x-ms-date and x-ms-version itself and produces the
    same Authorization line as the vectors."""
    data = _vector_file(vectors)
    config = AzureConfig(account=data["account_name"], endpoint="unused",
                         key=base64.b64decode(data["account_key"]))
    for case in data["cases"]:
        given_headers = {k: v for k, v in case["headers"].items()
                         if k not in ("x-ms-date", "x-ms-version")}
        url, lines = config.authorize(case["method"], case["url"], given_headers, now=VECTOR_DATE)
        assert url == case["url"]
        assert "x-ms-date: Mon, 01 Jan 2024 00:00:00 GMT" in lines
        assert f"x-ms-version: {API_VERSION}" in lines
        assert f"Authorization: {case['authorization']}" in lines, case["description"]
        for name, value in given_headers.items():
            assert f"{name}: {value}" in lines


def test_path_style_resource_repeats_the_account():
    url = AzureConfig(DEV, azure_auth.DEV_ENDPOINT).blob_url("ct1", "a b")
    sts = string_to_sign("GET", url, {}, DEV)
    assert sts.endswith("\n/devstoreaccount1/devstoreaccount1/ct1/a%20b")


def test_string_to_sign_rules():
    headers = {"Content-Length": "0", "Range": "bytes=0-1", "x-ms-meta-B": "2",
               "X-MS-Meta-a": " 1 ", "x-ms-date": "d", "Content-Type": "t/x"}
    url = "https://acct.blob.core.windows.net/c/b?Comp=list&b=2&a=x%2Fy&b=1&flag"
    lines = string_to_sign("PUT", url, headers, "acct").split("\n")
    assert lines[0] == "PUT"
    assert lines[3] == ""               # Content-Length: 0 is signed empty
    assert lines[5] == "t/x"
    assert lines[11] == "bytes=0-1"     # Range has its own slot
    assert lines[12:15] == ["x-ms-date:d", "x-ms-meta-a:1", "x-ms-meta-b:2"]
    assert lines[15:] == ["/acct/c/b", "a:x/y", "b:1,2", "comp:list", "flag:"]


def test_account_level_url_signs_root_path():
    assert string_to_sign("GET", "https://acct.blob.core.windows.net?comp=list", {}, "acct") \
        .endswith("\n/acct/\ncomp:list")


def test_metadata_names_sort_as_the_service_does():
    """The service (and the SDK) order '_' before digits and ignore '-'
    first: x-ms-meta-a_b precedes x-ms-meta-a1, unlike byte order."""
    sts = string_to_sign("GET", "https://a.blob.core.windows.net/c", {
        "x-ms-meta-a1": "1", "x-ms-meta-a_b": "2", "x-ms-meta-ab": "3", "x-ms-meta-a-b": "4"}, "a")
    names = [line.split(":")[0] for line in sts.split("\n") if line.startswith("x-ms-")]
    assert names == ["x-ms-meta-a_b", "x-ms-meta-a1", "x-ms-meta-ab", "x-ms-meta-a-b"]


@pytest.mark.parametrize("headers", [
    {"x-ms-meta-a": "x\r\nInjected: 1"},
    {"x-ms-meta-a": "x\n"},
    {"bad name": "1"},
    {"x-ms-meta-a": "1", "X-MS-META-A": "2"},
])
def test_header_injection_and_duplicates_refused(headers):
    with pytest.raises(InvalidArgumentError):
        string_to_sign("GET", "https://a.blob.core.windows.net/c", headers, "a")


def test_authorize_refuses_a_caller_authorization():
    with pytest.raises(InvalidArgumentError):
        AzureConfig("a", "https://a.blob.core.windows.net", key=b"k").authorize(
            "GET", "https://a.blob.core.windows.net/c", {"Authorization": "x"})


def test_authorize_keeps_caller_date_and_version():
    config = AzureConfig("a", "https://a.blob.core.windows.net", key=b"k")
    _, lines = config.authorize("GET", "https://a.blob.core.windows.net/c",
                                {"x-ms-date": "D", "x-ms-version": "2020-10-02"})
    assert "x-ms-date: D" in lines and "x-ms-version: 2020-10-02" in lines
    assert sum(line.lower().startswith("x-ms-") for line in lines) == 2


def test_http_date_naive_is_utc():
    aware = datetime(2024, 2, 29, 13, 5, 9, tzinfo=timezone(timedelta(hours=2)))
    assert azure_auth.http_date(aware) == "Thu, 29 Feb 2024 11:05:09 GMT"
    assert azure_auth.http_date(datetime(2024, 2, 29, 11, 5, 9)) == "Thu, 29 Feb 2024 11:05:09 GMT"


# ---- anonymous and SAS ----

def test_anonymous_has_no_authorization():
    config = load({}, "acct")
    url, lines = config.authorize("GET", config.blob_url("c", "b"), {}, now=VECTOR_DATE)
    assert url == "https://acct.blob.core.windows.net/c/b"
    assert not any(line.startswith("Authorization") for line in lines)
    assert f"x-ms-version: {API_VERSION}" in lines


@pytest.mark.parametrize("url,expected", [
    ("https://a.blob.core.windows.net/c/b", "https://a.blob.core.windows.net/c/b?sv=1&sig=x%2B"),
    ("https://a.blob.core.windows.net/c?restype=container&comp=list",
     "https://a.blob.core.windows.net/c?restype=container&comp=list&sv=1&sig=x%2B"),
    ("https://a.blob.core.windows.net/c?", "https://a.blob.core.windows.net/c?sv=1&sig=x%2B"),
])
def test_sas_appended_after_existing_query(url, expected):
    config = load({"AZURE_STORAGE_SAS_TOKEN": "?sv=1&sig=x%2B"}, "a")
    assert config.sas == "sv=1&sig=x%2B"
    sent, lines = config.authorize("GET", url, {})
    assert sent == expected
    assert not any(line.startswith("Authorization") for line in lines)


def test_key_wins_over_sas():
    config = load({"AZURE_STORAGE_KEY": SECRET_KEY_B64, "AZURE_STORAGE_SAS_TOKEN": "sig=abc"}, "a")
    url, lines = config.authorize("GET", "https://a.blob.core.windows.net/c/b", {})
    assert "sig=abc" not in url
    assert any(line.startswith("Authorization: SharedKey a:") for line in lines)


# ---- connection strings and environment ----

def test_connection_string_with_blob_endpoint():
    cs = (f"DefaultEndpointsProtocol=http;AccountName={DEV};AccountKey={DEV_KEY_B64};"
          f"BlobEndpoint=http://127.0.0.1:10000/{DEV}/;")
    config = load({"AZURE_STORAGE_CONNECTION_STRING": cs}, DEV)
    assert config == AzureConfig(DEV, f"http://127.0.0.1:10000/{DEV}", DEV_KEY, None)


def test_connection_string_with_endpoint_suffix():
    cs = (f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={SECRET_KEY_B64};"
          "EndpointSuffix=core.chinacloudapi.cn")
    config = load({"AZURE_STORAGE_CONNECTION_STRING": cs}, "acct")
    assert config.endpoint == "https://acct.blob.core.chinacloudapi.cn"
    assert config.key == base64.b64decode(SECRET_KEY_B64)


def test_connection_string_names_are_case_insensitive_and_sas_only():
    cs = "blobendpoint=https://acct.blob.core.windows.net;sharedaccesssignature=sv=2021&sig=a%3D"
    config = load({"AZURE_STORAGE_CONNECTION_STRING": cs}, "acct")
    assert (config.key, config.sas) == (None, "sv=2021&sig=a%3D")


def test_use_development_storage():
    config = load({"AZURE_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true"}, DEV)
    assert config == AzureConfig(DEV, "http://127.0.0.1:10000/devstoreaccount1", DEV_KEY)


def test_connection_string_for_another_account_does_not_apply():
    cs = f"AccountName=other;AccountKey={SECRET_KEY_B64};BlobEndpoint=http://127.0.0.1:1/other"
    config = load({"AZURE_STORAGE_CONNECTION_STRING": cs}, "acct")
    assert config == AzureConfig("acct", "https://acct.blob.core.windows.net")
    dev = load({"AZURE_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true"}, "acct")
    assert dev.key is None


def test_connection_string_beats_account_and_key_variables():
    env = {"AZURE_STORAGE_CONNECTION_STRING": f"AccountName={DEV};AccountKey={DEV_KEY_B64}",
           "AZURE_STORAGE_ACCOUNT": DEV, "AZURE_STORAGE_KEY": SECRET_KEY_B64}
    assert load(env, DEV).key == DEV_KEY
    # ... but when it names another account, the variables are used.
    env["AZURE_STORAGE_CONNECTION_STRING"] = f"AccountName=other;AccountKey={DEV_KEY_B64}"
    assert load(env, DEV).key == base64.b64decode(SECRET_KEY_B64)


def test_account_variable_for_another_account_withholds_key_and_sas():
    env = {"AZURE_STORAGE_ACCOUNT": "other", "AZURE_STORAGE_KEY": SECRET_KEY_B64,
           "AZURE_STORAGE_SAS_TOKEN": "sig=1"}
    assert load(env, "acct") == AzureConfig("acct", "https://acct.blob.core.windows.net")
    env["AZURE_STORAGE_ACCOUNT"] = "acct"
    config = load(env, "acct")
    assert (config.key, config.sas) == (base64.b64decode(SECRET_KEY_B64), "sig=1")
    del env["AZURE_STORAGE_ACCOUNT"]  # no account named: the key is for the URI's account
    assert load(env, "acct").key == base64.b64decode(SECRET_KEY_B64)


def test_reference_sas_variable():
    assert load({"S3DLIO_AZURE_SAS_TOKEN": "sig=2"}, "acct").sas == "sig=2"
    both = {"AZURE_STORAGE_SAS_TOKEN": "sig=1", "S3DLIO_AZURE_SAS_TOKEN": "sig=2"}
    assert load(both, "acct").sas == "sig=1"


@pytest.mark.parametrize("env,expected", [
    ({"AZURE_STORAGE_ENDPOINT": "http://127.0.0.1:10000"}, f"http://127.0.0.1:10000/{DEV}"),
    ({"AZURE_STORAGE_ENDPOINT": "http://127.0.0.1:10000/"}, f"http://127.0.0.1:10000/{DEV}"),
    ({"AZURE_STORAGE_ENDPOINT": f"http://127.0.0.1:10000/{DEV}"}, f"http://127.0.0.1:10000/{DEV}"),
    ({"AZURE_BLOB_ENDPOINT_URL": "http://localhost:9001"}, f"http://localhost:9001/{DEV}"),
    ({"AZURE_STORAGE_ENDPOINT": "http://a:1", "AZURE_BLOB_ENDPOINT_URL": "http://b:2"},
     f"http://a:1/{DEV}"),
    ({"AZURE_STORAGE_ENDPOINT": f"https://{DEV}.privatelink.blob.core.windows.net"},
     f"https://{DEV}.privatelink.blob.core.windows.net"),
    ({"AZURE_STORAGE_ENDPOINT": "http://127.0.0.1:10000",
      "AZURE_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true"},
     f"http://127.0.0.1:10000/{DEV}"),
    ({"AZURE_STORAGE_ENDPOINT": "http://proxy:8080",
      "AZURE_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true"}, f"http://proxy:8080/{DEV}"),
    ({}, f"https://{DEV}.blob.core.windows.net"),
])
def test_endpoint_precedence(env, expected):
    assert load(env, DEV).endpoint == expected


def test_ip_host_is_never_taken_for_the_account():
    assert load({"AZURE_STORAGE_ENDPOINT": "http://127.0.0.1:10000"}, "127").endpoint == \
        "http://127.0.0.1:10000/127"


@pytest.mark.parametrize("bad", ["ftp://x", "127.0.0.1:10000", "http://h/?sig=secret"])
def test_bad_endpoint_refused_without_echo(bad):
    with pytest.raises(InvalidArgumentError) as info:
        load({"AZURE_STORAGE_ENDPOINT": bad}, "acct")
    assert "secret" not in str(info.value)


@pytest.mark.parametrize("account", ["", "Acct", "a.evil.com", "a/b", "a_b", "x" * 64])
def test_bad_account_refused(account):
    with pytest.raises(InvalidArgumentError):
        load({}, account)


# ---- blob name encoding ----

@pytest.mark.parametrize("blob,encoded", [
    ("dir/a b.txt", "dir/a%20b.txt"),
    ("été+x.txt", "%C3%A9t%C3%A9%2Bx.txt"),
    ("100%/q?.bin#frag", "100%25/q%3F.bin%23frag"),
    ("a~b-c_d.e", "a~b-c_d.e"),
    ("semi;colon=eq&amp", "semi%3Bcolon%3Deq%26amp"),
])
def test_blob_url_encoding(blob, encoded):
    config = load({}, "acct")
    assert config.blob_url("ctr", blob) == f"https://acct.blob.core.windows.net/ctr/{encoded}"


@given(st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40))
def test_blob_names_round_trip(blob):
    url = AzureConfig("acct", azure_auth.DEV_ENDPOINT).blob_url("ctr", blob)
    parts = urlsplit(url)
    assert not parts.query and not parts.fragment
    assert unquote(parts.path) == f"/devstoreaccount1/ctr/{blob}"


# ---- secrets stay out of text ----

_KEYS = st.binary(min_size=16, max_size=64)
_SAS = st.text("abcdefghijklmnopqrstuvwxyz0123456789%=&", min_size=12, max_size=60)


@given(key=_KEYS, sas=_SAS)
def test_repr_and_str_hide_key_and_sas(key, sas):
    key_b64 = base64.b64encode(key).decode()
    config = load({"AZURE_STORAGE_KEY": key_b64, "AZURE_STORAGE_SAS_TOKEN": sas}, "acct")
    assert config.key == key and config.sas == sas
    for text in (repr(config), str(config), repr([config]), f"{config}"):
        assert key_b64 not in text and repr(key) not in text and sas not in text
        assert "acct" in text


@given(garbage=st.text("!@#$^*()_-[]{}<>~ abc", min_size=8, max_size=40)
       .filter(lambda s: any(c in "!@#$^*()[]{}<>~" for c in s)))
def test_malformed_key_message_hides_the_key(garbage):
    for env in ({"AZURE_STORAGE_KEY": garbage},
                {"AZURE_STORAGE_CONNECTION_STRING": f"AccountName=acct;AccountKey={garbage}"}):
        with pytest.raises(InvalidArgumentError) as info:
            load(env, "acct")
        assert garbage not in str(info.value) and garbage not in repr(info.value)
        assert "AccountKey" in str(info.value) or "AZURE_STORAGE_KEY" in str(info.value)


def test_malformed_connection_string_message_hides_it():
    cs = f"AccountName=acct;{SECRET_KEY_B64.rstrip('=')}"
    with pytest.raises(InvalidArgumentError) as info:
        load({"AZURE_STORAGE_CONNECTION_STRING": cs}, "acct")
    assert SECRET_KEY_B64 not in str(info.value)
    assert SECRET_KEY_B64[:12] not in repr(info.value)


# ---- current() ----

def test_current_is_cached_per_environment(monkeypatch):
    for name in azure_auth._ENV_KEYS:
        monkeypatch.delenv(name, raising=False)
    first = azure_auth.current("acct")
    assert azure_auth.current("acct") is first
    monkeypatch.setenv("AZURE_STORAGE_KEY", SECRET_KEY_B64)
    second = azure_auth.current("acct")
    assert second is not first and second.key == base64.b64decode(SECRET_KEY_B64)
    assert azure_auth.current("other").account == "other"
    monkeypatch.setattr(os, "getpid", lambda: -1)  # as after a fork
    assert azure_auth.current("acct") is not second


# ---- service SAS ----

def test_sas_url_structure():
    config = AzureConfig(DEV, azure_auth.DEV_ENDPOINT, DEV_KEY)
    url = azure_auth.sas_url(config, "ctr", "a b/c+d", "wr", datetime(2030, 1, 2, 3, 4, 5))
    parts = urlsplit(url)
    assert parts.path == "/devstoreaccount1/ctr/a%20b/c%2Bd"
    query = parse_qs(parts.query, strict_parsing=True)
    assert {k: v[0] for k, v in query.items() if k != "sig"} == {
        "se": "2030-01-02T03:04:05Z", "sp": "rw", "sv": API_VERSION, "sr": "b"}
    expected = "\n".join(["rw", "", "2030-01-02T03:04:05Z", "/blob/devstoreaccount1/ctr/a b/c+d",
                          "", "", "", API_VERSION, "b", "", "", "", "", "", "", ""])
    assert query["sig"][0] == azure_auth.sign(DEV_KEY, expected)


@pytest.mark.parametrize("config,perms", [
    (AzureConfig("a", "https://a.blob.core.windows.net", sas="sig=1"), "r"),
    (AzureConfig("a", "https://a.blob.core.windows.net", key=b"k"), "rq"),
    (AzureConfig("a", "https://a.blob.core.windows.net", key=b"k"), ""),
])
def test_sas_url_refusals(config, perms):
    with pytest.raises(InvalidArgumentError) as info:
        azure_auth.sas_url(config, "c", "b", perms, datetime(2030, 1, 1))
    assert "sig=1" not in str(info.value)


# ---- differential checks against azure-storage-blob ----

_META_NAMES = st.text("abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=8) \
    .filter(lambda s: s[0].isalpha())
_VALUES = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e), min_size=1, max_size=12)
_QUERY_NAMES = st.sampled_from(["comp", "restype", "prefix", "marker", "maxresults", "delimiter",
                                "blockid", "timeout", "include"])
_STANDARD = st.sampled_from(["Content-Type", "Content-MD5", "Content-Length", "Content-Encoding",
                             "Content-Language", "If-Match", "If-None-Match",
                             "If-Modified-Since", "If-Unmodified-Since"])


@settings(max_examples=200, deadline=None)
@given(blob=st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30),
       method=st.sampled_from(["GET", "PUT", "HEAD", "DELETE", "POST"]),
       meta=st.dictionaries(_META_NAMES, _VALUES, max_size=4),
       standard=st.dictionaries(_STANDARD, _VALUES, max_size=4),
       query=st.dictionaries(_QUERY_NAMES, st.text(max_size=10), max_size=3),
       path_style=st.booleans())
def test_matches_sdk_shared_key_policy(blob, method, meta, standard, query, path_style):
    auth_mod = pytest.importorskip("azure.storage.blob._shared.authentication")
    from azure.core.pipeline import PipelineContext, PipelineRequest
    from azure.core.pipeline.transport import HttpRequest

    endpoint = azure_auth.DEV_ENDPOINT if path_style else f"https://{DEV}.blob.core.windows.net"
    config = AzureConfig(DEV, endpoint, DEV_KEY)
    url = config.blob_url("ctr", blob)
    if query:
        url += "?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items())
    headers = {**standard, **{f"x-ms-meta-{k}": v for k, v in meta.items()},
               "x-ms-date": "Mon, 01 Jan 2024 00:00:00 GMT", "x-ms-version": API_VERSION}
    policy = auth_mod.SharedKeyCredentialPolicy(DEV, DEV_KEY_B64)
    captured = []
    original = policy._add_authorization_header
    policy._add_authorization_header = lambda req, sts: (captured.append(sts), original(req, sts))
    request = HttpRequest(method, url, headers=dict(headers))
    policy.on_request(PipelineRequest(request, PipelineContext(None)))

    assert string_to_sign(method, url, headers, DEV) == captured[0]
    _, lines = config.authorize(method, url, headers)
    assert f"Authorization: {request.headers['Authorization']}" in lines


@settings(max_examples=500, deadline=None)
@given(st.lists(st.text("abcxyz019_-'.!~+", min_size=0, max_size=6), min_size=2, max_size=6,
                unique=True))
def test_header_order_matches_sdk_collation(names):
    auth_mod = pytest.importorskip("azure.storage.blob._shared.authentication")
    prefixed = [f"x-ms-{n}" for n in names]
    sdk = [name for name, _ in auth_mod._storage_header_sort([(n, "v") for n in prefixed])]
    assert sorted(prefixed, key=azure_auth._header_order) == sdk


_MOMENTS = st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2099, 1, 1))


@settings(max_examples=100, deadline=None)
@given(blob=st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30),
       perms=st.text("racwdxyltmei", min_size=1, max_size=6),
       expiry=_MOMENTS, start=st.none() | _MOMENTS)
def test_sas_url_matches_sdk(blob, perms, expiry, start):
    sas_mod = pytest.importorskip("azure.storage.blob._shared_access_signature")
    expiry, start = expiry.replace(microsecond=0), start and start.replace(microsecond=0)
    signer = sas_mod.BlobSharedAccessSignature(DEV, DEV_KEY_B64)
    signer.x_ms_version = API_VERSION
    ordered = "".join(p for p in "racwdxyltmei" if p in perms)
    token = signer.generate_blob("ctr", blob, permission=ordered, expiry=expiry, start=start)
    config = AzureConfig(DEV, azure_auth.DEV_ENDPOINT, DEV_KEY)
    ours = urlsplit(azure_auth.sas_url(config, "ctr", blob, perms, expiry, start))
    assert parse_qs(ours.query, strict_parsing=True) == parse_qs(token, strict_parsing=True)
    assert ours.query == token
