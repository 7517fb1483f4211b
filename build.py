"""Builds the native core and its Python binding.

``pip install .`` and ``pip install -e .`` call into this file through
``setup.py``; ``python build.py`` builds in place for development.  Steps:

1. CMake configures and builds ``native/`` (the C core, ``libs3dlio.so``).
2. The cffi definitions are cut from ``native/include/s3dlio.h`` between the
   CDEF-BEGIN/CDEF-END markers -- the header is the one source of truth, and
   ``tests/test_native_build.py`` fails if anything drifts.
3. cffi compiles ``s3dlio._s3dl_cffi`` against the header, linked with an
   ``$ORIGIN`` rpath so the library is found beside it without
   ``LD_LIBRARY_PATH``; ``s3dlio._bytesview`` (the zero-copy buffer type) is
   compiled beside it.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
NATIVE = ROOT / "native"
HEADER = NATIVE / "include" / "s3dlio.h"
PACKAGE = ROOT / "s3dlio"


def cdef_from_header(header: Path = HEADER) -> str:
    """Returns the declarations between the CDEF markers, ready for cffi."""
    text = header.read_text()
    match = re.search(r"/\* CDEF-BEGIN.*?\*/(.*?)/\* CDEF-END \*/", text, re.S)
    if not match:
        raise RuntimeError(f"{header}: CDEF-BEGIN/CDEF-END markers not found")
    body = re.sub(r"/\*.*?\*/", "", match.group(1), flags=re.S)
    body = re.sub(r"\bS3DL_API\s+", "", body)
    return "\n".join(line.rstrip() for line in body.splitlines() if line.strip()) + "\n"


def library_version() -> tuple[int, int, int]:
    text = HEADER.read_text()
    parts = [int(re.search(rf"#define S3DL_VERSION_{p} (\d+)", text).group(1))
             for p in ("MAJOR", "MINOR", "PATCH")]
    return parts[0], parts[1], parts[2]


def soname() -> str:
    major, minor, _ = library_version()
    return f"libs3dlio.so.{major}.{minor}"


def build_native(build_dir: Path, sanitize: bool = False, build_type: str = "Release") -> Path:
    """Configures and builds the C core; returns the built shared library."""
    if shutil.which("cmake") is None:
        raise RuntimeError("cmake is required to build s3dlio (apt-get install cmake)")
    build_dir.mkdir(parents=True, exist_ok=True)
    configure = ["cmake", "-S", str(NATIVE), "-B", str(build_dir),
                 f"-DCMAKE_BUILD_TYPE={build_type}", "-DS3DL_BUILD_TESTS=OFF",
                 f"-DS3DL_SANITIZE={'ON' if sanitize else 'OFF'}"]
    subprocess.run(configure, check=True, stdout=subprocess.DEVNULL)
    jobs = str(os.cpu_count() or 2)
    subprocess.run(["cmake", "--build", str(build_dir), "--target", "s3dlio", "-j", jobs],
                   check=True)
    built = build_dir / soname()
    if not built.exists():
        raise RuntimeError(f"native build did not produce {built}")
    return built


def replace_file(source: Path, target: Path) -> None:
    """Copies `source` over `target` by rename, so a process that has the old
    shared object mapped keeps its (now unlinked) copy instead of crashing
    while the file under it is rewritten."""
    staging = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.copy2(source, staging)
    os.replace(staging, target)


def install_library(built: Path, package_dir: Path) -> None:
    """Places the library beside the binding under its soname (what the
    binding's NEEDED entry names) and as plain libs3dlio.so (for users who
    dlopen it or link against the installed package)."""
    package_dir.mkdir(parents=True, exist_ok=True)
    for name in (soname(), "libs3dlio.so"):
        replace_file(built.resolve(), package_dir / name)


def make_ffibuilder(library_dir: Path | None = None):
    """The cffi builder for ``s3dlio._s3dl_cffi`` (API mode)."""
    import cffi

    ffibuilder = cffi.FFI()
    ffibuilder.cdef(cdef_from_header())
    ffibuilder.set_source(
        "s3dlio._s3dl_cffi",
        '#include "s3dlio.h"',
        include_dirs=[str(NATIVE / "include")],
        library_dirs=[str(library_dir or PACKAGE)],
        libraries=["s3dlio"],
        extra_link_args=["-Wl,-rpath,$ORIGIN"],
    )
    return ffibuilder


def bytesview_extension():
    from setuptools import Extension

    return Extension("s3dlio._bytesview", sources=["s3dlio/_bytesview.c"],
                     extra_compile_args=["-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter",
                                         "-Wno-missing-field-initializers"])


def build_in_place(sanitize: bool = False) -> None:
    """Development build: everything lands inside ./s3dlio."""
    build_dir = ROOT / "build" / ("native-asan" if sanitize else "native")
    install_library(build_native(build_dir, sanitize=sanitize), PACKAGE)
    tmp = ROOT / "build" / "cffi"
    ffibuilder = make_ffibuilder(PACKAGE)
    ffibuilder.compile(tmpdir=str(tmp), verbose=False)
    # cffi writes the module under tmpdir/s3dlio/; move it into the package.
    for built in (tmp / "s3dlio").glob("_s3dl_cffi*.so"):
        replace_file(built, PACKAGE / built.name)
    from setuptools import Distribution

    dist = Distribution({"name": "s3dlio", "ext_modules": [bytesview_extension()]})
    cmd = dist.get_command_obj("build_ext")
    cmd.build_temp = str(ROOT / "build" / "ext")
    cmd.build_lib = str(ROOT / "build" / "ext-lib")
    cmd.ensure_finalized()
    cmd.run()
    for built in (ROOT / "build" / "ext-lib" / "s3dlio").glob("_bytesview*.so"):
        replace_file(built, PACKAGE / built.name)


if __name__ == "__main__":
    build_in_place(sanitize="--sanitize" in sys.argv)
    print("built s3dlio in place")
