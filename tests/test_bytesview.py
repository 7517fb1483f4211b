"""BytesView: zero-copy exports, copies on bytes(), deterministic release."""
from __future__ import annotations

import gc

import numpy as np
import pytest

import s3dlio


@pytest.fixture
def view(tmp_path):
    uri = f"file://{tmp_path}/v.bin"
    s3dlio.put(uri, bytes(range(256)) * 16)
    return s3dlio.get(uri)


def test_memoryview_is_zero_copy(view):
    mv = view.memoryview()
    arr = np.frombuffer(view, dtype=np.uint8)
    assert arr[5] == 5
    arr2 = np.frombuffer(mv, dtype=np.uint8)
    assert np.shares_memory(arr, arr2)
    copy = bytes(view)
    mv[5] = 99  # writes through to the same memory ...
    assert arr[5] == 99
    assert copy[5] == 5  # ... but not into the copy
    mv.release()


def test_behaves_like_bytes(view):
    assert len(view) == 4096
    assert view == bytes(range(256)) * 16
    assert view != b"other"
    assert view[1:4] == b"\x01\x02\x03"
    assert view[3] == 3
    assert view.to_bytes() == bytes(view)
    assert repr(view) == "BytesView(4096 bytes)"
    assert view.nbytes == 4096
    with pytest.raises(TypeError):
        s3dlio.BytesView()


def test_release_refuses_while_exported(view):
    arr = np.frombuffer(view, dtype=np.uint8)
    with pytest.raises(BufferError):
        view.release()
    del arr
    gc.collect()
    view.release()
    assert view.released
    assert repr(view) == "BytesView(released)"
    with pytest.raises(ValueError):
        bytes(view)
    with pytest.raises(ValueError):
        memoryview(view)
    view.release()  # idempotent


def test_context_manager_releases(view):
    with view as v:
        assert v[0] == 0
    assert view.released


def test_empty_object(tmp_path):
    uri = f"file://{tmp_path}/empty"
    s3dlio.put(uri, b"")
    v = s3dlio.get(uri)
    assert len(v) == 0 and bytes(v) == b"" and v == b""
    assert np.frombuffer(v, dtype=np.uint8).size == 0


def test_many_views_freed_without_leaking(tmp_path):
    import resource
    uri = f"file://{tmp_path}/big"
    s3dlio.put(uri, b"\0" * (8 << 20))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(64):  # 512 MiB in total if nothing were freed
        s3dlio.get(uri)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 64 * 1024
