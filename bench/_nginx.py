"""A loopback nginx serving S3-style path-style objects for bench/s3.py and
bench/dataloader.py (not part of the s3dlio package).

`root/<bucket>/<key>` is served at `http://127.0.0.1:<port>/<bucket>/<key>`:
GET and HEAD with Range from the static module (sendfile), PUT and DELETE
through the dav module (create_full_put_path on, so keys with slashes work).
No multipart, no signature checks: nginx ignores Authorization.  LIST only
when asked for (`list_root`): ListObjectsV2 pages written beforehand by
write_list_pages() are served for `GET /<bucket>?list-type=2`, the page
chosen by `continuation-token=N` (N = page number, 1 when absent).  The
pages ignore prefix, delimiter and max-keys: they list the whole bucket,
1,000 keys a page, so give each listed data set a bucket of its own.

Two listeners share one root and one worker process:
  * `port`     -- access log off: the timed runs;
  * `log_port` -- every request logged as "METHOD URI STATUS BYTES RANGE",
                  unbuffered, so a run against it can count the requests a
                  client sends per object (the request-count check).

The config, pid file, logs and body temp files live in a fresh temp dir
beside the root (same filesystem, so a PUT is a rename, not a copy),
removed by stop().  One worker (`worker_processes 1`), so the client gets
the other core of a 2-core machine."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from typing import Optional

CONFIG = """\
worker_processes {workers};
{user_line}
pid {run}/nginx.pid;
error_log {run}/error.log warn;
daemon off;
master_process on;
events {{ worker_connections 8192; multi_accept on; }}
http {{
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    types {{ }}
    default_type application/octet-stream;
    log_format counting '$request_method $uri $status $body_bytes_sent "$http_range"';
    access_log off;
    client_max_body_size 0;
    client_body_buffer_size 1m;
    {temp_paths}
{http_extra}    server {{
        listen 127.0.0.1:{port} backlog=4096;
        include {run}/location.conf;
    }}
    server {{
        listen 127.0.0.1:{log_port} backlog=4096;
        access_log {run}/access.log counting;
        include {run}/location.conf;
    }}
}}
"""

LOCATION = """\
root {root};
location / {{
    dav_methods PUT DELETE;
    create_full_put_path on;
    dav_access user:rw group:r all:r;
    # The dav module sends no ETag on PUT; S3 clients want one.  (An empty
    # add_header ETag would remove the static module's ETag on GET.)
    if ($request_method = PUT) {{ add_header ETag "\\"$request_id\\""; }}
}}
"""

# The optional static ListObjectsV2 responder.  nginx variables cannot name the
# `continuation-token` argument ($arg_ takes no '-'), so maps match on $args.
LIST_MAPS = """\
    map $args $s3list_page {
        "~(?:^|&)continuation-token=(?<s3list_token>[0-9]+)(?:&|$)" $s3list_token;
        default 1;
    }
    map $args $s3list_v2 {
        "~(?:^|&)list-type=2(?:&|$)" 1;
        default 0;
    }
"""

LIST_LOCATION = """\
location ~ "^/(?<s3list_bucket>[^/]+)/?$" {{
    root {list_root};
    default_type application/xml;
    if ($s3list_v2 = 0) {{ return 404; }}  # only ListObjectsV2; `return` is safe in `if`
    try_files /$s3list_bucket/page-$s3list_page.xml =404;
}}
"""

LIST_PAGE_SIZE = 1000


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def write_list_pages(list_root: str, bucket: str, entries: list,
                     page_size: int = LIST_PAGE_SIZE) -> int:
    """Writes `list_root/<bucket>/page-N.xml`, the ListObjectsV2 answers for
    `entries` = [(key, size, mtime, etag)] in that order (S3 lists keys in
    UTF-8 byte order: pass them sorted).  Returns the number of pages."""
    d = os.path.join(list_root, bucket)
    os.makedirs(d, exist_ok=True)
    pages = max(1, -(-len(entries) // page_size))
    for n in range(1, pages + 1):
        chunk = entries[(n - 1) * page_size:n * page_size]
        more = n < pages
        parts = ['<?xml version="1.0" encoding="UTF-8"?>\n'
                 '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">',
                 f"<Name>{_xml_escape(bucket)}</Name><Prefix></Prefix>",
                 f"<KeyCount>{len(chunk)}</KeyCount><MaxKeys>{page_size}</MaxKeys>",
                 f"<IsTruncated>{'true' if more else 'false'}</IsTruncated>"]
        if n > 1:
            parts.append(f"<ContinuationToken>{n}</ContinuationToken>")
        if more:
            parts.append(f"<NextContinuationToken>{n + 1}</NextContinuationToken>")
        for key, size, mtime, etag in chunk:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(mtime))
            parts.append(f"<Contents><Key>{_xml_escape(key)}</Key>"
                         f"<LastModified>{stamp}</LastModified>"
                         f"<ETag>&quot;{etag}&quot;</ETag><Size>{size}</Size>"
                         "<StorageClass>STANDARD</StorageClass></Contents>")
        parts.append("</ListBucketResult>\n")
        tmp = os.path.join(d, f".page-{n}.xml.tmp")
        with open(tmp, "w") as f:
            f.write("".join(parts))
        os.replace(tmp, os.path.join(d, f"page-{n}.xml"))
    return pages


def nginx_etag(st: os.stat_result) -> str:
    """The ETag nginx's static module sends for a file (without quotes)."""
    return f"{int(st.st_mtime):x}-{st.st_size:x}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nginx_info(binary: str = "nginx") -> dict:
    """Version and whether the dav module is compiled in (`nginx -V`)."""
    path = shutil.which(binary) or (binary if os.path.exists(binary) else None)
    if not path:
        return {"path": None, "version": None, "dav": False, "configure": ""}
    out = subprocess.run([path, "-V"], capture_output=True, text=True, timeout=10).stderr
    version = next((ln.split("/", 1)[1].strip() for ln in out.splitlines()
                    if ln.startswith("nginx version:")), None)
    return {"path": path, "version": version, "dav": "--with-http_dav_module" in out,
            "configure": out}


class Nginx:
    def __init__(self, root: str, workers: int = 1, binary: str = "nginx",
                 list_root: Optional[str] = None) -> None:
        self.root = os.path.abspath(root)
        self.list_root = os.path.abspath(list_root) if list_root else None
        self.workers = workers
        self.info = nginx_info(binary)
        if not self.info["path"]:
            raise RuntimeError("nginx not found; install it (Debian: apt-get install nginx-light)")
        if not self.info["dav"]:
            raise RuntimeError("this nginx lacks the dav module (--with-http_dav_module); "
                               "install Debian's nginx-light or nginx-full")
        # Beside the root, on its filesystem: the dav module writes each PUT body
        # to client_body_temp_path and renames it into place, which turns into a
        # copy when the two are on different filesystems.
        self.run_dir = tempfile.mkdtemp(prefix="s3dlio-nginx-", dir=os.path.dirname(self.root))
        self.port = free_port()
        self.log_port = free_port()
        while self.log_port == self.port:
            self.log_port = free_port()
        self.proc: Optional[subprocess.Popen] = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.log_port}"

    @property
    def access_log(self) -> str:
        return os.path.join(self.run_dir, "access.log")

    def _temp_paths(self) -> str:
        conf = self.info["configure"]
        lines = [f"client_body_temp_path {self.run_dir}/body;"]
        for mod in ("proxy", "fastcgi", "uwsgi", "scgi"):
            if f"--without-http_{mod}_module" not in conf:
                lines.append(f"{mod}_temp_path {self.run_dir}/{mod};")
        return "\n    ".join(lines)

    def start(self, timeout: float = 10.0) -> "Nginx":
        os.makedirs(self.root, exist_ok=True)
        user_line = ""
        if os.geteuid() == 0:
            # Workers drop to nobody; without write access to the root,
            # create_full_put_path fails with 500 (mkdir EACCES).
            user_line = "user nobody nogroup;"
            for d in (self.root, self.run_dir):
                os.chown(d, 65534, 65534)
            for dirpath, dirnames, filenames in os.walk(self.root):
                for name in dirnames + filenames:
                    os.chown(os.path.join(dirpath, name), 65534, 65534)
        with open(os.path.join(self.run_dir, "location.conf"), "w") as f:
            f.write(LOCATION.format(root=self.root))
            if self.list_root:
                f.write(LIST_LOCATION.format(list_root=self.list_root))
        conf = os.path.join(self.run_dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(CONFIG.format(workers=self.workers, user_line=user_line, run=self.run_dir,
                                  port=self.port, log_port=self.log_port,
                                  temp_paths=self._temp_paths(),
                                  http_extra=LIST_MAPS if self.list_root else ""))
        check = subprocess.run([self.info["path"], "-t", "-q", "-p", self.run_dir, "-c", conf,
                                "-e", os.path.join(self.run_dir, "error.log")],
                               capture_output=True, text=True, timeout=10)
        if check.returncode != 0:
            raise RuntimeError(f"nginx -t failed:\n{check.stderr}")
        self.proc = subprocess.Popen([self.info["path"], "-p", self.run_dir, "-c", conf,
                                      "-e", os.path.join(self.run_dir, "error.log")],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"nginx exited with {self.proc.returncode}: {err}{self.error_log()}")
            try:
                for p in (self.port, self.log_port):
                    urllib.request.urlopen(f"http://127.0.0.1:{p}/", timeout=1).close()
                break
            except urllib.error.HTTPError:
                if self.worker_pids():
                    break  # any HTTP answer (403/404 on /) means it is serving
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"nginx did not answer within {timeout}s{self.error_log()}")
            time.sleep(0.05)
        return self

    def error_log(self) -> str:
        try:
            with open(os.path.join(self.run_dir, "error.log")) as f:
                text = f.read()[-2000:]
            return "\nerror.log:\n" + text if text.strip() else ""
        except OSError:
            return ""

    def worker_pids(self) -> list:
        if not self.proc:
            return []
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                return [int(x) for x in f.read().split()]
        except OSError:
            return []

    def server_cpu(self) -> float:
        """CPU seconds the master and worker processes have run so far, from
        /proc/<pid>/task/*/schedstat (nanoseconds; /proc/<pid>/stat counts
        10 ms ticks, too coarse for a 50 ms repetition)."""
        total = 0
        for pid in ([self.proc.pid] if self.proc else []) + self.worker_pids():
            try:
                tasks = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for tid in tasks:
                try:
                    with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                        total += int(f.read().split()[0])
                except (OSError, IndexError, ValueError):
                    pass
        return total / 1e9

    def log_size(self) -> int:
        try:
            return os.path.getsize(self.access_log)
        except OSError:
            return 0

    def log_lines_since(self, offset: int) -> list:
        """Access-log lines written after byte `offset` (the log is unbuffered)."""
        try:
            with open(self.access_log, "rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace").splitlines()
        except OSError:
            return []

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc and self.proc.poll() is None:
            for sig, wait in ((signal.SIGQUIT, timeout / 2), (signal.SIGTERM, timeout / 4),
                              (signal.SIGKILL, timeout / 4)):
                try:
                    self.proc.send_signal(sig)
                    self.proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
                except ProcessLookupError:
                    break
        if self.proc and self.proc.stderr:
            self.proc.stderr.close()
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self) -> "Nginx":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
