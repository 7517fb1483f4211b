"""HTTP lanes and their sockets: the engine deals a batch's items over
several threads, each with its own libcurl multi handle
(S3DL_ENGINE_HTTP_THREADS, env S3DLIO_HTTP_THREADS), whose connections get a
fixed receive buffer (S3DL_ENGINE_SOCKET_RCVBUF, env S3DLIO_SOCKET_RCVBUF).
Both are fixed when a process creates its engine, so each case runs in a
child process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.timeout(180)

# The child writes objects of awkward sizes, reads them back in batches that
# span every lane (and in batches that must stay on one), checks every byte,
# and reports what it saw.
_CHILD = textwrap.dedent(r"""
    import json, os, sys, zlib
    import s3dlio
    prefix = sys.argv[1]
    sizes = [0, 1, 17, 4095, 65536, 70001, 300000] * 5 + [1 << 20, (3 << 20) + 5]
    data = {f"{prefix}o{i:03d}": os.urandom(n) for i, n in enumerate(sizes)}
    s3dlio.put_many(list(data.items()), max_in_flight=7)
    uris = list(data)
    out = {}
    for limit in (1, 2, 5, 64):
        got = s3dlio.get_many(uris, max_in_flight=limit)
        out[f"order_{limit}"] = [u for u, _ in got] == uris
        out[f"bytes_{limit}"] = all(bytes(v) == data[u] for u, v in got)
    # One failing item among many: its error in its place, the rest intact.
    missing = prefix + "missing"
    mixed = uris[:9] + [missing] + uris[9:20]
    got = s3dlio.get_many(mixed, max_in_flight=8, return_exceptions=True)
    out["missing_is_not_found"] = isinstance(got[9][1], s3dlio.NotFoundError)
    out["others_intact"] = all(bytes(v) == data[u] for u, v in got if u != missing)
    # A large object split into ranges (its size cached by the stat) lands
    # whole, whichever lanes carried its parts.
    big = os.urandom((40 << 20) + 12345)
    s3dlio.put(prefix + "big", big)
    s3dlio.get_many_stats([prefix + "big"], 4)
    out["big"] = zlib.crc32(bytes(s3dlio.get(prefix + "big"))) == zlib.crc32(big)
    out["stats"] = sorted(m["size"] for m in s3dlio.stat_many(uris)) == sorted(sizes)
    names = [open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task")]
    out["lane_threads"] = names.count("s3dl-engine") + sum(n.startswith("s3dl-http-") for n in names)
    print(json.dumps(out))
""")


def _run_child(lanes: str, prefix: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, S3DLIO_HTTP_THREADS=lanes)
    return subprocess.run([sys.executable, "-c", _CHILD, prefix], env=env,
                          capture_output=True, text=True, timeout=150)


@pytest.mark.parametrize("lanes", ["1", "3", "8"])
def test_batches_over_any_number_of_lanes_round_trip(moto_s3, lanes):
    bucket = f"lanes-{lanes}"
    moto_s3.boto3_client().create_bucket(Bucket=bucket)
    done = _run_child(lanes, f"s3://{bucket}/")
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen.pop("lane_threads") == int(lanes)  # the engine thread is lane 0
    assert seen == {k: True for k in seen} and len(seen) == 12, seen


@pytest.mark.parametrize("name,value", [("S3DLIO_HTTP_THREADS", "0"), ("S3DLIO_HTTP_THREADS", "9"),
                                        ("S3DLIO_HTTP_THREADS", "two"),
                                        ("S3DLIO_SOCKET_RCVBUF", "-2"),
                                        ("S3DLIO_BUFFER_CACHE_MAX", "1GiB")])
def test_bad_engine_setting_is_a_clear_error(moto_s3, name, value):
    script = ("import s3dlio\n"
              "try:\n    s3dlio.get('s3://nowhere/x')\n"
              "except ValueError as e:\n    print('ValueError', e)\n"
              "except s3dlio.S3dlioError as e:\n    print('S3dlioError', e)\n")
    env = dict(os.environ, **{name: value})
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert name in done.stdout, done.stdout


# Children that talk to a keep-alive HTTP/1.1 server of their own, started
# by this prelude: every GET gets 100 bytes of "y" after HOLD seconds, and
# `most` records how many requests it held at once.  The environment points
# s3dlio at it.
_SERVER_PRELUDE = textwrap.dedent(r"""
    import json, os, socket, sys, threading, time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    HOLD = float(os.environ.get("TEST_HOLD_SECONDS", "0"))
    lock = threading.Lock()
    now = [0]
    most = [0]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def do_GET(self):
            with lock:
                now[0] += 1
                most[0] = max(most[0], now[0])
            time.sleep(HOLD)
            with lock:
                now[0] -= 1
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b"y" * 100)
        def log_message(self, *args):
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = 128  # 16 connects at once must not overflow the backlog
        daemon_threads = True

    server = Server(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    os.environ.update(AWS_ENDPOINT_URL_S3=f"http://127.0.0.1:{port}", AWS_ACCESS_KEY_ID="AKIDTEST",
                      AWS_SECRET_ACCESS_KEY="not-a-secret", AWS_REGION="us-east-1")
    import s3dlio
""")


def _run_with_server(child: str, env_extra: dict, *args: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3DLIO_"))}
    env.update(AWS_EC2_METADATA_DISABLED="true", **env_extra)
    done = subprocess.run([sys.executable, "-c", _SERVER_PRELUDE + child, *args], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# Reads one object and reports SO_RCVBUF of the client connections (kept
# open in libcurl's connection cache).
_RCVBUF_CHILD = textwrap.dedent(r"""
    assert bytes(s3dlio.get("s3://bucket/object")) == b"y" * 100
    sizes = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if not os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                continue
            s = socket.socket(fileno=os.dup(int(fd)))
        except OSError:
            continue
        try:
            if (s.family == socket.AF_INET and s.type == socket.SOCK_STREAM
                    and s.getpeername()[1] == port):
                sizes.append(s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
        except OSError:
            pass
        finally:
            s.close()
    server.shutdown()
    print(json.dumps({"sizes": sizes}))
""")


def _rcvbufs(setting):
    env = {} if setting is None else {"S3DLIO_SOCKET_RCVBUF": setting}
    sizes = _run_with_server(_RCVBUF_CHILD, env)["sizes"]
    assert sizes, "no connection to the server found"
    return set(sizes)


def test_socket_receive_buffer_is_applied():
    # Linux reports twice the value given (it adds its bookkeeping).
    assert _rcvbufs("98304") == {2 * 98304}


def test_socket_receive_buffer_default_respects_rmem_max():
    with open("/proc/sys/net/core/rmem_max") as f:
        rmem_max = int(f.read())
    sizes = _rcvbufs(None)
    if rmem_max >= 1 << 20:
        assert sizes == {2 * min(rmem_max, 4 << 20)}
    else:  # left to autotuning, which starts from net.ipv4.tcp_rmem's default
        with open("/proc/sys/net/ipv4/tcp_rmem") as f:
            assert sizes == {int(f.read().split()[1])}


def test_socket_receive_buffer_zero_leaves_autotuning():
    with open("/proc/sys/net/ipv4/tcp_rmem") as f:
        assert _rcvbufs("0") == {int(f.read().split()[1])}


# Runs one scenario of concurrent calls against the server holding each
# request 0.3 s, and reports the most requests it held at once.
_CONCURRENCY_CHILD = textwrap.dedent(r"""
    scenario, threads, per_call = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    def call(t):
        uris = [f"s3://bucket/t{t}-{i}" for i in range(per_call)]
        if scenario == "single":
            assert bytes(s3dlio.get(uris[0])) == b"y" * 100
        else:
            got = s3dlio.get_many(uris, max_in_flight=per_call)
            assert all(bytes(v) == b"y" * 100 for _, v in got)
    s3dlio.get("s3://bucket/warm-up")  # the engine and its lanes are running
    workers = [threading.Thread(target=call, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    server.shutdown()
    print(json.dumps({"most": most[0]}))
""")


def _most_at_once(env_extra: dict, scenario: str, threads: int, per_call: int) -> int:
    env = dict(env_extra, TEST_HOLD_SECONDS="0.3")
    return _run_with_server(_CONCURRENCY_CHILD, env, scenario, str(threads),
                            str(per_call))["most"]


def test_engine_wide_cap_holds_with_more_lanes_than_it():
    # 4 lanes asked for, but the engine may have only 2 requests in flight.
    most = _most_at_once({"S3DLIO_HTTP_THREADS": "4", "S3DLIO_MAX_IN_FLIGHT": "2"},
                         "many", threads=2, per_call=8)
    assert most == 2


def test_concurrent_single_gets_spread_past_lane_0():
    # 8 lanes' worth of cap (2 each on 4 lanes): 8 concurrent get() calls
    # must all run at once, not queue behind lane 0's share of the cap.
    most = _most_at_once({"S3DLIO_HTTP_THREADS": "4", "S3DLIO_MAX_IN_FLIGHT": "8"},
                         "single", threads=8, per_call=1)
    assert most == 8


def test_small_batches_spread_over_every_lane():
    # Batches of 2 on 4 lanes (cap 4 each): always starting at lane 0 would
    # leave lanes 2 and 3 idle and hold 8 at once; spread, all 16 run.
    most = _most_at_once({"S3DLIO_HTTP_THREADS": "4", "S3DLIO_MAX_IN_FLIGHT": "16"},
                         "many", threads=8, per_call=2)
    assert most == 16


_CACHE_CHILD = textwrap.dedent(r"""
    import json, os, sys
    import s3dlio
    root = sys.argv[1]
    uris = [f"file://{root}/o{i}" for i in range(20)]
    s3dlio.put_many([(u, os.urandom(1 << 20)) for u in uris])
    before = s3dlio.stats()["buffer_cache_bytes"]
    views = s3dlio.get_many(uris)
    assert all(len(v) == 1 << 20 for _, v in views)
    del views
    print(json.dumps({"before": before, "after": s3dlio.stats()["buffer_cache_bytes"]}))
""")


@pytest.mark.parametrize("setting,low,high", [(None, 20 << 20, 2 << 30), ("0", 0, 0),
                                              ("4194304", 1, 4 << 20)])
def test_buffer_cache_keeps_freed_results_within_its_bound(tmp_path, setting, low, high):
    env = {k: v for k, v in os.environ.items() if not k.startswith("S3DLIO_")}
    if setting is not None:
        env["S3DLIO_BUFFER_CACHE_MAX"] = setting
    done = subprocess.run([sys.executable, "-c", _CACHE_CHILD, str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert low <= seen["after"] <= high, seen
