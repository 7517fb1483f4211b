"""A long-lived worker process that answers one JSON line per JSON command
(bench/_s3_worker.py, bench/_cloud_worker.py), for the bench scripts (not
part of the s3dlio package)."""
from __future__ import annotations

import json
import os
import select
import subprocess
import time
from typing import Any

RPC_TIMEOUT = 300.0  # seconds for one worker call before it is killed


class WorkerError(RuntimeError):
    def __init__(self, msg: str, unsupported: bool = False) -> None:
        super().__init__(msg)
        self.unsupported = unsupported


def log_tail(path: str) -> str:
    """"; its stderr: <the last 1,500 bytes of the log at path>", or ""."""
    try:
        with open(path, "rb") as f:
            text = f.read()[-1500:].decode(errors="replace").strip()
        return f"; its stderr: {text}" if text else ""
    except OSError:
        return ""


class Worker:
    """`spec.python script` for one client (spec: a ClientSpec of bench/s3.py),
    started in run_dir with `env` and sent `init` (raises WorkerError when
    the init is not answered ok); its stderr goes to a log in run_dir."""

    def __init__(self, spec: Any, script: str, env: dict, init: dict, run_dir: str) -> None:
        self.spec = spec
        safe = "".join(c if c.isalnum() else "_" for c in spec.name)
        self.stderr_path = os.path.join(run_dir, f"worker-{safe}-{os.urandom(3).hex()}.log")
        self.stderr = open(self.stderr_path, "wb")
        # cwd: not the repository, whose s3dlio/ would shadow a PyPI one
        self.proc = subprocess.Popen([spec.python, script], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.stderr, env=env,
                                     cwd=run_dir)
        assert self.proc.stdin and self.proc.stdout
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout
        self.buf = b""
        ans = self.call(init, timeout=120)
        if not ans.get("ok"):
            self.close()
            raise WorkerError(ans.get("error", "init failed"), ans.get("unsupported", False))
        self.version = ans.get("version")

    def call(self, cmd: dict, timeout: float = RPC_TIMEOUT) -> dict:
        self.stdin.write((json.dumps(cmd) + "\n").encode())
        self.stdin.flush()
        deadline = time.monotonic() + timeout
        fd = self.stdout.fileno()
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                self.close()
                raise WorkerError(f"no answer within {timeout:.0f}s{self.tail()}")
            ready, _, _ = select.select([fd], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    self.close()
                    raise WorkerError(f"worker exited{self.tail()}")
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def tail(self) -> str:
        return log_tail(self.stderr_path)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.stdin.write(b'{"op": "quit"}\n')
                self.stdin.flush()
                self.stdin.close()
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(10)
        self.stderr.close()
