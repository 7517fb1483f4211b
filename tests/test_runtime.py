"""Process-level behaviour: fork and spawn children, O_DIRECT fallback
recorded in stats, and native log lines reaching Python logging."""
from __future__ import annotations

import logging
import multiprocessing as mp
import os

import pytest

import s3dlio


def _child_reads(uri: str, queue) -> None:
    try:
        queue.put((bytes(s3dlio.get(uri)), s3dlio.stats()["engine_starts"]))
    except Exception as exc:  # report, don't hang the parent
        queue.put((repr(exc), -1))


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_children_rebuild_the_engine(tmp_path, method):
    uri = f"file://{tmp_path}/shared.bin"
    s3dlio.put(uri, b"from parent")
    s3dlio.get(uri)  # the parent's engine is running
    ctx = mp.get_context(method)
    queue = ctx.Queue()
    procs = [ctx.Process(target=_child_reads, args=(uri, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    # A forked child rebuilds its copy of the parent's engine (a second
    # start); a spawned child starts its own first engine.
    expected_starts = 2 if method == "fork" else 1
    assert results == [(b"from parent", expected_starts)] * 2
    assert s3dlio.get(uri) == b"from parent"  # the parent is unaffected


def test_os_fork_then_async(tmp_path):
    import asyncio
    uri = f"file://{tmp_path}/a.bin"
    s3dlio.put(uri, b"abc")
    asyncio.run(s3dlio.get_async(uri))  # the parent's notifier exists
    pid = os.fork()
    if pid == 0:
        try:
            ok = asyncio.run(asyncio.wait_for(s3dlio.get_async(uri), 20)) == b"abc"
        except BaseException:
            ok = False
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def test_direct_falls_back_where_refused_and_counts_it(no_direct_dir):
    before = s3dlio.stats()["direct_io_fallbacks"]
    uri = f"direct://{no_direct_dir}/x.bin"
    data = os.urandom(10000)
    s3dlio.put(uri, data)
    assert s3dlio.get(uri) == data
    assert s3dlio.get_range(uri, 4097, 100) == data[4097:4197]
    assert s3dlio.stats()["direct_io_fallbacks"] >= before + 3


def test_direct_uses_o_direct_where_supported(tmp_path):
    before = s3dlio.stats()["direct_io_fallbacks"]
    uri = f"direct://{tmp_path}/x.bin"
    s3dlio.put(uri, b"y" * 5000)
    assert s3dlio.get(uri) == b"y" * 5000
    if s3dlio.stats()["direct_io_fallbacks"] != before:
        pytest.skip("the filesystem under tmp_path refuses O_DIRECT")


def test_native_log_lines_reach_python_logging(no_direct_dir, caplog):
    s3dlio.init_logging("debug")
    try:
        with caplog.at_level(logging.DEBUG, logger="s3dlio"):
            s3dlio.put(f"direct://{no_direct_dir}/log.bin", b"x")
        messages = [r.getMessage() for r in caplog.records if r.name == "s3dlio.native"]
        assert any("O_DIRECT refused" in m for m in messages), messages
    finally:
        s3dlio.init_logging("off")
    with pytest.raises(ValueError):
        s3dlio.init_logging("loud")


def test_stats_counts_bytes(tmp_path):
    before = s3dlio.stats()
    s3dlio.put(f"file://{tmp_path}/c.bin", b"z" * 1000)
    s3dlio.get(f"file://{tmp_path}/c.bin")
    after = s3dlio.stats()
    assert after["bytes_written"] - before["bytes_written"] == 1000
    assert after["bytes_read"] - before["bytes_read"] == 1000
    assert after["items_completed"] - before["items_completed"] == 2


def test_cancelled_get_into_async_stops_writing_before_returning(tmp_path):
    """The buffer is the caller's again once the coroutine has ended:
    nothing may be written into it afterwards."""
    import asyncio
    import time
    path = tmp_path / "big.bin"
    with open(path, "wb") as f:
        f.truncate(256 << 20)
    buf = bytearray(256 << 20)

    async def main():
        task = asyncio.ensure_future(s3dlio.get_into_async(f"file://{path}", buf))
        await asyncio.sleep(0.002)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        buf[:] = b"\xaa" * len(buf)
        time.sleep(0.3)  # a late write from the engine would land now
        return buf.count(b"\xaa") == len(buf)

    assert asyncio.run(asyncio.wait_for(main(), 60))


def test_import_leaves_numpy_unloaded():
    # numpy costs about 50 ms and a spin of its BLAS threads at import: a
    # process that never touches arrays (the CLI, a spawned worker) skips it.
    import subprocess
    import sys
    script = ("import sys, s3dlio\n"
              "assert 'numpy' not in sys.modules, 'import s3dlio loaded numpy'\n"
              "import numpy as np\n"
              "assert s3dlio.read_npy is not None and np.zeros(1).shape == (1,)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
