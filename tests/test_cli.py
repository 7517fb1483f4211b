"""The ``s3dlio`` command line, driven as a user drives it: ``python -m
s3dlio`` in a subprocess, against local trees and the moto S3 server.
Checks outputs, written files, exit codes and ``--json``."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import s3dlio
from s3dlio.cli import copy as cli_copy
from s3dlio.cli import main
from s3dlio.cli.exitcodes import exit_code_for
from s3dlio.cli.sizes import human_size, parse_size

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 60


def cli(*args: str, stdin: bytes | None = None, env: dict | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Runs the CLI; stdout stays bytes (``cat``), stderr is text."""
    result = subprocess.run([sys.executable, "-m", "s3dlio", *args], input=stdin,
                            capture_output=True, timeout=TIMEOUT_S, env=env, cwd=cwd)
    result.stderr = result.stderr.decode()
    return result


def ok(*args: str, **kwargs) -> str:
    result = cli(*args, **kwargs)
    assert result.returncode == 0, result.stderr
    return result.stdout.decode()


@pytest.fixture
def tree(tmp_path) -> Path:
    """src/{a.txt, b.bin, sub/c.txt, sub/d.bin}."""
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_bytes(b"alpha\n")
    (src / "b.bin").write_bytes(os.urandom(3000))
    (src / "sub" / "c.txt").write_bytes(b"charlie\n")
    (src / "sub" / "d.bin").write_bytes(os.urandom(5000))
    return src


def files_under(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


# --- packaging and plumbing ---------------------------------------------------

def test_pyproject_declares_console_script_and_tqdm():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["s3dlio"] == "s3dlio.cli:main"
    assert any(dep.startswith("tqdm") for dep in project["dependencies"])


def test_console_script_when_installed():
    script = Path(sys.executable).with_name("s3dlio")
    if not script.exists():
        pytest.skip("console script not installed (reinstall with pip install -e .)")
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True,
                            timeout=TIMEOUT_S)
    assert result.returncode == 0 and result.stdout.startswith("s3dlio ")


def test_version_and_usage_errors():
    assert ok("--version").strip() == f"s3dlio {s3dlio.__version__}"
    assert cli().returncode == 2
    assert cli("frobnicate").returncode == 2
    assert cli("bench", "file:///tmp/x", "--size", "lots").returncode == 2


def test_sizes():
    assert parse_size("1MiB") == parse_size("1M") == parse_size("1048576") == 1 << 20
    assert parse_size("1MB") == 10 ** 6 and parse_size("64k") == 65536
    assert parse_size("1,000") == 1000 and parse_size("1.5K") == 1536
    for bad in ("", "1X", "-1", "0.5"):
        with pytest.raises(ValueError):
            parse_size(bad)
    assert human_size(512) == "512 B" and human_size(1536) == "1.5 KiB"
    assert human_size(3 << 30) == "3.0 GiB"


def test_exit_code_table():
    assert exit_code_for(s3dlio.NotFoundError("x")) == 3
    assert exit_code_for(FileNotFoundError(2, "gone", "/x")) == 3
    assert exit_code_for(s3dlio.PermissionDeniedError("x")) == 4
    assert exit_code_for(s3dlio.InvalidURIError("x")) == 5
    assert exit_code_for(s3dlio.InvalidRangeError("x")) == 5
    assert exit_code_for(s3dlio.StorageIOError("x")) == 1


def test_ctrl_c_exits_130(monkeypatch, capsys):
    def interrupted(uri):
        raise KeyboardInterrupt

    monkeypatch.setattr(s3dlio, "stat", interrupted)
    assert main(["stat", "file:///x"]) == 130
    assert "interrupted" in capsys.readouterr().err


# --- local trees ----------------------------------------------------------------

def test_ls_forms(tree):
    uri = f"file://{tree}/"
    assert ok("ls", uri).splitlines() == [f"{uri}a.txt", f"{uri}b.bin", f"{uri}sub/"]
    assert ok("ls", "-r", uri).splitlines() == [
        f"{uri}a.txt", f"{uri}b.bin", f"{uri}sub/c.txt", f"{uri}sub/d.bin"]
    assert json.loads(ok("ls", "-r", "--json", "-p", "*.txt", uri)) == [
        f"{uri}a.txt", f"{uri}sub/c.txt"]
    assert ok("ls", "-r", "-c", uri).strip() == "4"
    long = ok("ls", "-l", uri).splitlines()
    assert long[0].split() == ["6", long[0].split()[1], f"{uri}a.txt"]
    assert long[2].split() == ["DIR", f"{uri}sub/"]
    assert "2.9 KiB" in ok("ls", "-lh", uri)
    entries = json.loads(ok("ls", "-l", "--json", "-r", uri))
    assert [e["size"] for e in entries] == [6, 3000, 8, 5000]
    assert all(e["last_modified"].endswith("Z") for e in entries)


def test_stat_text_json_and_errors(tree):
    text = ok("stat", f"file://{tree}/a.txt")
    assert "size:" in text and "6 (6 B)" in text
    info = json.loads(ok("stat", "--json", f"file://{tree}/b.bin"))
    assert info["size"] == 3000 and info["etag"] is None
    missing = cli("stat", f"file://{tree}/nope")
    assert missing.returncode == 3
    assert missing.stderr.startswith("s3dlio: error: not found")
    assert len(missing.stderr.splitlines()) == 1 and "Traceback" not in missing.stderr
    for bad in ("no-scheme/x", "xx://b/k", f"file://{tree}/../x", "s3://"):
        result = cli("stat", bad)
        assert result.returncode == 5, (bad, result.stderr)
        assert result.stderr.startswith("s3dlio: error: invalid URI")


def test_debug_prints_traceback(tree):
    result = cli("--debug", "stat", f"file://{tree}/nope")
    assert result.returncode == 3 and "Traceback" in result.stderr
    assert result.stderr.splitlines()[-1].startswith("s3dlio: error: not found")
    assert cli("stat", "--debug", f"file://{tree}/nope").stderr.startswith("Traceback")


def test_cat_is_byte_exact_across_chunks(tmp_path):
    data = os.urandom(cli_copy.RANGE_CHUNK // 4 + 12345)  # more than one 8 MiB cat range
    (tmp_path / "x.bin").write_bytes(data)
    (tmp_path / "y.bin").write_bytes(b"tail")
    uri = f"file://{tmp_path}/x.bin"
    assert cli("cat", uri).stdout == data
    assert cli("cat", uri, f"file://{tmp_path}/y.bin").stdout == data + b"tail"
    assert cli("cat", "--offset", "100", "--length", "1K", uri).stdout == data[100:1124]
    assert cli("cat", f"file://{tmp_path}/none").returncode == 3


def test_cat_into_closed_pipe_exits_quietly(tmp_path):
    # larger than any pipe buffer (some sandboxes' pipes hold several MiB)
    (tmp_path / "big.bin").write_bytes(bytes(48 << 20))
    proc = subprocess.Popen([sys.executable, "-m", "s3dlio", "cat", f"file://{tmp_path}/big.bin"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.read(10)
    proc.stdout.close()
    assert proc.wait(timeout=TIMEOUT_S) == 141
    assert b"Traceback" not in proc.stderr.read()
    proc.stderr.close()


def test_cp_single_file_with_plain_paths(tree, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    ok("cp", str(tree / "a.txt"), str(out))                      # into a directory
    ok("cp", "src/b.bin", "out/renamed.bin", cwd=tmp_path)        # relative paths
    ok("cp", f"file://{tree}/sub/c.txt", f"file://{tmp_path}/new/")  # trailing / = directory
    assert (out / "a.txt").read_bytes() == b"alpha\n"
    assert (out / "renamed.bin").read_bytes() == (tree / "b.bin").read_bytes()
    assert (tmp_path / "new" / "c.txt").read_bytes() == b"charlie\n"
    result = cli("cp", str(tree), str(out))
    assert result.returncode == 1 and "Is a directory" in result.stderr
    assert cli("cp", str(tree / "nope"), str(out)).returncode == 3
    assert cli("cp", "--pattern", "*.txt", str(tree), str(out)).returncode == 5


def test_cp_recursive_with_pattern(tree, tmp_path):
    summary = json.loads(ok("cp", "-r", "--json", "-p", "*.bin", str(tree), str(tmp_path / "o")))
    assert summary["objects"] == 2 and summary["bytes"] == 8000
    assert files_under(tmp_path / "o") == {k: v for k, v in files_under(tree).items()
                                          if k.endswith(".bin")}
    ok("cp", "-r", "-j", "1", str(tree) + "/", str(tmp_path / "all"))
    assert files_under(tmp_path / "all") == files_under(tree)
    assert cli("cp", "-r", "-p", "*.none", str(tree), str(tmp_path / "z")).returncode == 3


def test_get_put_upload_download(tree, tmp_path):
    ok("get", f"file://{tree}/a.txt", cwd=tmp_path)               # default: current directory
    assert (tmp_path / "a.txt").read_bytes() == b"alpha\n"
    ok("put", str(tree / "b.bin"), f"file://{tmp_path}/p/")
    assert (tmp_path / "p" / "b.bin").read_bytes() == (tree / "b.bin").read_bytes()
    ok("put", "-", f"file://{tmp_path}/p/stdin.txt", stdin=b"from stdin")
    assert (tmp_path / "p" / "stdin.txt").read_bytes() == b"from stdin"
    assert cli("put", f"file://{tree}/a.txt", "relative/key").returncode == 5
    ok("upload", str(tree / "a.txt"), str(tree / "sub"), f"file://{tmp_path}/up/")
    assert sorted(files_under(tmp_path / "up")) == ["a.txt", "c.txt", "d.bin"]
    ok("download", f"file://{tree}/", str(tmp_path / "down"), "-p", "sub/*")
    assert sorted(files_under(tmp_path / "down")) == ["sub/c.txt", "sub/d.bin"]


def test_rm(tree):
    ok("rm", f"file://{tree}/a.txt")
    assert not (tree / "a.txt").exists()
    assert cli("rm", f"file://{tree}/sub/").returncode == 5       # a prefix needs -r
    ok("rm", "-r", "-p", "*.bin", f"file://{tree}/")
    assert sorted(files_under(tree)) == ["sub/c.txt"]
    ok("delete", "-r", f"file://{tree}/sub")
    assert files_under(tree) == {}


def test_bench_json_on_local_disk(tmp_path):
    report = json.loads(ok("bench", f"file://{tmp_path}/b", "--size", "4KiB", "--count", "12",
                           "--concurrency", "3", "--json"))
    assert (report["size"], report["count"], report["concurrency"]) == (4096, 12, 3)
    for phase in ("put", "get"):
        r = report[phase]
        assert r["ops"] == 12 and r["bytes"] == 12 * 4096 and r["seconds"] > 0
        assert r["mb_per_s"] > 0 and r["ops_per_s"] > 0
        lat = r["latency_ms"]
        assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert report["kept"] is False
    assert list((tmp_path / "b").iterdir()) == []                 # cleaned up
    text = ok("bench", f"file://{tmp_path}/b", "-s", "1K", "-n", "3", "--keep")
    assert "put:" in text and "MB/s" in text and "p99" in text
    assert len(list((tmp_path / "b").rglob("obj-*"))) == 3


# --- S3 (moto) ------------------------------------------------------------------

@pytest.fixture
def bucket(moto_s3) -> str:
    name = f"cli-{uuid.uuid4().hex[:12]}"
    s3dlio.create_bucket(name)
    return name


def test_s3_round_trip(bucket, tree, tmp_path):
    prefix = f"s3://{bucket}/data/"
    ok("upload", str(tree), prefix)
    assert ok("ls", "-r", prefix).splitlines() == [
        f"{prefix}a.txt", f"{prefix}b.bin", f"{prefix}sub/c.txt", f"{prefix}sub/d.bin"]
    assert ok("ls", prefix).splitlines()[-1] == f"{prefix}sub/"
    assert [e["size"] for e in json.loads(ok("ls", "-lr", "--json", prefix))] == [6, 3000, 8, 5000]
    assert cli("cat", f"{prefix}b.bin").stdout == (tree / "b.bin").read_bytes()
    assert json.loads(ok("stat", "--json", f"{prefix}a.txt"))["etag"].startswith('"')
    ok("download", prefix, str(tmp_path / "back"))
    assert files_under(tmp_path / "back") == files_under(tree)
    ok("get", f"{prefix}sub/d.bin", str(tmp_path / "d.bin"))
    assert (tmp_path / "d.bin").read_bytes() == (tree / "sub" / "d.bin").read_bytes()


def test_s3_cp_recursive_pattern_copies_exactly_the_matches(bucket, tree):
    ok("cp", "-r", str(tree), f"s3://{bucket}/src")
    ok("cp", "-r", "-p", "*.txt", "--max-in-flight", "2", f"s3://{bucket}/src",
       f"s3://{bucket}/dst/")
    assert ok("ls", "-r", f"s3://{bucket}/dst/").splitlines() == [
        f"s3://{bucket}/dst/a.txt", f"s3://{bucket}/dst/sub/c.txt"]
    ok("cp", f"s3://{bucket}/src/b.bin", f"s3://{bucket}/one.bin")
    assert s3dlio.get(f"s3://{bucket}/one.bin") == (tree / "b.bin").read_bytes()


def test_s3_exit_codes(bucket, moto_s3):
    assert cli("stat", f"s3://{bucket}/missing").returncode == 3
    assert cli("cat", f"s3://{bucket}/missing").returncode == 3
    assert cli("ls", f"s3://no-such-{bucket}/").returncode == 3
    wrong = dict(os.environ, AWS_SECRET_ACCESS_KEY="not-the-secret")
    denied = cli("ls", f"s3://{bucket}/", env=wrong)
    assert denied.returncode == 4 and "permission denied" in denied.stderr
    assert cli("mb", "s3://Not_A_Bucket").returncode == 5


def test_s3_buckets(moto_s3):
    name = f"cli-mb-{uuid.uuid4().hex[:8]}"
    ok("mb", f"s3://{name}")
    s3dlio.put(f"s3://{name}/k", b"v")
    full = cli("rb", f"s3://{name}")
    assert full.returncode == 1 and "BucketNotEmpty" in full.stderr
    ok("rb", "--force", f"s3://{name}")
    assert cli("ls", f"s3://{name}/").returncode == 3


def test_s3_bench_json(bucket):
    report = json.loads(ok("bench", f"s3://{bucket}/bench", "-s", "2K", "-n", "8", "-j", "4",
                           "--json"))
    assert report["put"]["ops"] == report["get"]["ops"] == 8
    assert report["get"]["latency_ms"]["p50"] > 0
    assert s3dlio.list(f"s3://{bucket}/") == []


def test_large_object_to_file_streams_in_ranges(bucket, tmp_path, monkeypatch):
    """The ranged path of copy_one (objects of STREAM_THRESHOLD or more going
    to a local file), with small thresholds so the test stays small."""
    monkeypatch.setattr(cli_copy, "STREAM_THRESHOLD", 1000)
    monkeypatch.setattr(cli_copy, "RANGE_CHUNK", 4096)
    data = os.urandom(10 * 4096 + 7)
    s3dlio.put(f"s3://{bucket}/big", data)
    target = f"file://{tmp_path}/big"
    assert cli_copy.copy_one(f"s3://{bucket}/big", target, show_progress=False) == len(data)
    assert (tmp_path / "big").read_bytes() == data
    assert [p.name for p in tmp_path.iterdir()] == ["big"]     # no temporary left behind
    with pytest.raises(s3dlio.NotFoundError):
        cli_copy.copy_one(f"s3://{bucket}/none", target, show_progress=False)
