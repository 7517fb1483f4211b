"""setuptools glue: every build goes through build.py (see its docstring)."""
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build as s3dl_build  # noqa: E402


class BuildNativeThenExtensions(build_ext):
    """Builds libs3dlio with CMake and puts it where the extensions link."""

    def run(self):
        native_build = Path(self.build_temp).resolve() / "native"
        built = s3dl_build.build_native(native_build)
        package_dir = (s3dl_build.PACKAGE if self.inplace
                       else Path(self.build_lib).resolve() / "s3dlio")
        s3dl_build.install_library(built, package_dir)
        # The extensions link against the copy in package_dir.
        for ext in self.extensions:
            if ext.name == "s3dlio._s3dl_cffi":
                ext.library_dirs = [str(package_dir)]
        super().run()


ffi_ext = s3dl_build.make_ffibuilder().distutils_extension(tmpdir="build/cffi-src")

setup(
    ext_modules=[ffi_ext, s3dl_build.bytesview_extension()],
    cmdclass={"build_ext": BuildNativeThenExtensions},
)
