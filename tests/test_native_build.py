"""The native library as C users see it: installed with CMake, found with
pkg-config and with find_package, the example built and run, and the cffi
binding in lock-step with the header."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cffi
import pytest

import s3dlio
from s3dlio._native import ffi, lib

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import build as s3dl_build  # noqa: E402


@pytest.fixture(scope="module")
def installed_prefix(tmp_path_factory):
    if shutil.which("cmake") is None:
        pytest.skip("cmake missing")
    work = tmp_path_factory.mktemp("cmake")
    prefix = work / "prefix"
    subprocess.run(["cmake", "-S", str(ROOT / "native"), "-B", str(work / "build"),
                    "-DS3DL_BUILD_TESTS=OFF"], check=True, capture_output=True)
    subprocess.run(["cmake", "--build", str(work / "build"), "-j", "2"], check=True,
                   capture_output=True)
    # The prefix is chosen at install time: the package must relocate.
    subprocess.run(["cmake", "--install", str(work / "build"), "--prefix", str(prefix)],
                   check=True, capture_output=True)
    return prefix


def _libdir(prefix: Path) -> Path:
    return next(p.parent for p in prefix.rglob("libs3dlio.so"))


def test_install_layout(installed_prefix):
    assert (installed_prefix / "include" / "s3dlio.h").is_file()
    libdir = _libdir(installed_prefix)
    assert (libdir / "pkgconfig" / "s3dlio.pc").is_file()
    assert (libdir / "cmake" / "s3dlio" / "s3dlioConfig.cmake").is_file()


def _run_example(binary: Path, libdir: Path, tmp_path: Path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"123456789")
    dst = tmp_path / "out" / "dst.bin"
    env = dict(os.environ, LD_LIBRARY_PATH=str(libdir))
    out = subprocess.run([str(binary), str(src), str(dst)], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "copied 9 bytes, crc32c e3069283" in out.stdout
    assert dst.read_bytes() == b"123456789"
    missing = subprocess.run([str(binary), str(tmp_path / "nope"), str(dst)], env=env,
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and "not found" in missing.stderr


def test_example_with_pkg_config(installed_prefix, tmp_path):
    if shutil.which("pkg-config") is None:
        pytest.skip("pkg-config missing")
    libdir = _libdir(installed_prefix)
    env = dict(os.environ, PKG_CONFIG_PATH=str(libdir / "pkgconfig"))
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "s3dlio"], env=env, check=True,
                           capture_output=True, text=True).stdout.split()
    binary = tmp_path / "copy_file"
    subprocess.run(["cc", "-std=c11", "-Wall", "-Werror", str(ROOT / "examples/c/copy_file.c"),
                    "-o", str(binary), *flags], check=True)
    _run_example(binary, libdir, tmp_path)


def test_example_with_cmake_package(installed_prefix, tmp_path):
    build = tmp_path / "build"
    subprocess.run(["cmake", "-S", str(ROOT / "examples/c"), "-B", str(build),
                    f"-DCMAKE_PREFIX_PATH={installed_prefix}"], check=True, capture_output=True)
    subprocess.run(["cmake", "--build", str(build)], check=True, capture_output=True)
    _run_example(build / "copy_file", _libdir(installed_prefix), tmp_path)


def _norm(cname: str) -> str:
    """Typedef'd and tagged spellings of one type print differently."""
    return re.sub(r"\b(enum|struct) ", "", cname)


def test_cdef_matches_header():
    """Every declaration cffi compiled equals what the header declares now."""
    fresh = cffi.FFI()
    fresh.cdef(s3dl_build.cdef_from_header())
    raw = fresh.dlopen(str(Path(s3dlio.__file__).parent / "libs3dlio.so"))
    header_text = (ROOT / "native/include/s3dlio.h").read_text()
    functions = re.findall(r"S3DL_API\s+[^;(]*?\b(s3dl_\w+)\s*\(", header_text)
    assert len(functions) > 20
    for name in functions:
        assert hasattr(lib, name), f"{name} is in the header but not in the binding"
        assert _norm(fresh.typeof(getattr(raw, name)).cname) == \
            _norm(ffi.typeof(getattr(lib, name)).cname), name
    for enum in ("s3dl_status", "s3dl_op", "s3dl_engine_option", "s3dl_batch_option",
                 "s3dl_counter", "s3dl_log_level"):
        assert fresh.typeof(enum).relements == ffi.typeof(enum).relements, enum
    for struct in ("s3dl_detail", "s3dl_stat"):
        assert [(n, _norm(f.type.cname)) for n, f in fresh.typeof(struct).fields] == \
               [(n, _norm(f.type.cname)) for n, f in ffi.typeof(struct).fields], struct
        assert fresh.sizeof(struct) == ffi.sizeof(struct)


def test_exported_symbols_are_exactly_the_header():
    if shutil.which("nm") is None:
        pytest.skip("nm missing")
    libpath = Path(s3dlio.__file__).parent / "libs3dlio.so"
    out = subprocess.run(["nm", "-D", "--defined-only", str(libpath)], check=True,
                         capture_output=True, text=True).stdout
    exported = {line.split()[-1] for line in out.splitlines() if " T " in line}
    header = set(re.findall(r"S3DL_API\s+[^;(]*?\b(s3dl_\w+)\s*\(",
                            (ROOT / "native/include/s3dlio.h").read_text()))
    assert exported == header


def test_versions_agree():
    assert lib.s3dl_version_number() == lib.S3DL_VERSION_NUM
    major, minor, patch = s3dl_build.library_version()
    assert s3dlio.__version__ == f"{major}.{minor}.{patch}"
    assert ffi.string(lib.s3dl_version_string()).decode() == s3dlio.__version__


def test_library_found_without_ld_library_path():
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    out = subprocess.run([sys.executable, "-c", "import s3dlio; print(s3dlio.__version__)"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == s3dlio.__version__
