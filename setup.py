"""Build wsfast, with its optional Cython extension.

``WSFAST_BUILD_EXTENSION`` decides what happens to ``wsfast._speedups``:

* unset: try to compile it; if Cython or a C compiler is missing, or the
  compile fails, install the pure-Python package (it falls back at import).
* ``yes``: compile it; any failure fails the build (wheel builds, CI).
* ``no``: never compile it (the pure ``py3-none-any`` wheel).

On PyPy the extension is never built: through cpyext, buffer flags come out
wrong (``mask_inplace`` sees a writable ``memoryview`` as read-only, a strided
view as contiguous), so PyPy runs the pure-Python codec, from the pure wheel.

Only portable compiler flags are used: never ``-march=native``. Wheels carry
the compiled module only, not its ``.pyx``/``.c``/``.h`` sources (the sdist has
them, see ``MANIFEST.in``).
"""

from __future__ import annotations

import os
import platform
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

MODE = os.environ.get("WSFAST_BUILD_EXTENSION", "").strip().lower()
if MODE not in ("", "yes", "no"):
    sys.exit(f"WSFAST_BUILD_EXTENSION must be unset, 'yes' or 'no', not {MODE!r}")
PYPY = platform.python_implementation() == "PyPy"


class OptionalBuildExt(build_ext):
    """Let a failed compile fall back to pure Python unless it is required."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - any failure means "no extension"
            self._give_up(exc)

    def build_extension(self, ext) -> None:  # type: ignore[no-untyped-def]
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            self._give_up(exc)

    def _give_up(self, exc: Exception) -> None:
        if MODE == "yes":
            raise exc
        print(f"wsfast: building the extension failed ({exc}); installing pure Python")


def extensions() -> list:
    if MODE == "no":
        return []
    if PYPY:
        if MODE == "yes":
            sys.exit("wsfast: the extension is not supported on PyPy (cpyext buffers); use WSFAST_BUILD_EXTENSION=no")
        print("wsfast: PyPy runs the pure-Python codec; not building the extension")
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        if MODE == "yes":
            raise
        print("wsfast: Cython is not available; installing pure Python")
        return []
    from setuptools import Extension

    if sys.platform == "win32":
        flags = ["/O2"]
    else:
        flags = ["-O2", "-fno-strict-aliasing"]
    ext = Extension(
        "wsfast._speedups",
        ["src/wsfast/_speedups.pyx"],
        include_dirs=["src/wsfast"],
        extra_compile_args=flags,
    )
    return cythonize(
        [ext],
        language_level=3,
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
            "embedsignature": True,
            "embedsignature.format": "clinic",
        },
    )


setup(
    ext_modules=extensions(),
    cmdclass={"build_ext": OptionalBuildExt},
    exclude_package_data={"wsfast": ["*.c", "*.pyx", "*.h"]},
)
