"""Properties of URI parsing, and CRC-32C against the shared check values."""
from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3dlio import InvalidURIError
from s3dlio._native import ffi, lib
from s3dlio.uri import parse_uri

segment = st.text(st.characters(min_codepoint=0x20, blacklist_characters="/\x7f"),
                  min_size=1, max_size=12).filter(lambda s: s not in (".", ".."))
key = st.lists(segment, min_size=1, max_size=5).map("/".join)


@given(bucket=st.from_regex(r"[a-z0-9][a-z0-9.-]{1,20}", fullmatch=True), key=key)
def test_s3_round_trip(bucket, key):
    parsed = parse_uri(f"s3://{bucket}/{key}")
    assert (parsed.scheme, parsed.bucket, parsed.key) == ("s3", bucket, key)
    assert parsed.with_key(parsed.key) == f"s3://{bucket}/{key}"


@given(key=key)
def test_local_paths_are_absolute_and_literal(key):
    parsed = parse_uri(f"file:///{key}")
    assert parsed.path == "/" + key
    assert parse_uri(f"direct:///{key}").path == "/" + key


@given(prefix=key, bad=st.sampled_from(["..", "."]), suffix=key)
def test_dot_segments_rejected_anywhere(prefix, bad, suffix):
    for uri in (f"file:///{prefix}/{bad}/{suffix}", f"s3://b/{prefix}/{bad}/{suffix}",
                f"az://acct/cont/{bad}/{suffix}"):
        with pytest.raises(InvalidURIError):
            parse_uri(uri)


@given(text=st.text(max_size=60))
def test_parser_never_crashes(text):
    try:
        parse_uri(text, require_key=False)
    except InvalidURIError:
        pass


def test_gcs_alias_and_azure_shape():
    assert parse_uri("gcs://b/k").scheme == "gs"
    az = parse_uri("az://acct/cont/dir/blob")
    assert (az.bucket, az.key) == ("acct/cont", "dir/blob")


def _vector_input(entry: dict) -> bytes:
    """Inputs are literal strings, except a described repetition such as
    "66560 x 'a' (AWS chunked example body)"."""
    text = entry["input"]
    if entry.get("input_hex_if_short") is not None:
        return bytes.fromhex(entry["input_hex_if_short"])
    match = re.fullmatch(r"(\d+) x '(.)'.*", text)
    assert match, f"unrecognised vector input {text!r}"
    return match.group(2).encode() * int(match.group(1))


def test_crc32c_check_values(vectors):
    doc = json.loads((vectors / "checksums" / "check_values.json").read_text())
    for entry in doc["values"]:
        data = _vector_input(entry)
        got = lib.s3dl_crc32c(0, ffi.from_buffer(data), len(data))
        assert got == int(entry["crc32c"]["hex"], 16), entry["input"]
        # Incremental use gives the same answer.
        half = len(data) // 2
        first = lib.s3dl_crc32c(0, ffi.from_buffer(data[:half]), half)
        assert lib.s3dl_crc32c(first, ffi.from_buffer(data[half:]), len(data) - half) == got
    assert len(doc["values"]) >= 4


@given(st.text(alphabet="abc.~+_-/", min_size=1, max_size=30), st.sampled_from(["s3", "gs"]))
@settings(max_examples=400, deadline=None)
def test_fast_uri_path_agrees_with_the_full_checks(key, scheme):
    from s3dlio import uri as uri_module
    text = f"{scheme}://bkt/{key}"
    if uri_module._SIMPLE_OBJECT.fullmatch(text) is None:
        return  # the full checks decide alone
    assert uri_module.parse_uri(text) == uri_module._parse_full(text, True)
