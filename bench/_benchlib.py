"""Helpers shared by the benchmark modules: data, lazy imports, tagging.

Kept out of conftest.py so that test modules can import them without the
``from conftest import ...`` pitfall (two rootless conftest.py files clash).
"""

from __future__ import annotations

import hashlib
import importlib
import random
import struct
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

# ------------------------------------------------------------------ imports


def _wsfast_origin() -> str:
    try:
        import wsfast
    except ImportError as exc:
        return f"not importable ({exc}); `pip install .` or PYTHONPATH=src"
    return str(Path(wsfast.__file__).resolve().parent)


def _stale_build_warning() -> Optional[str]:
    """Warn when the imported wsfast was built from other sources than src/."""
    try:
        import wsfast
    except ImportError:
        return None
    installed = Path(wsfast.__file__).resolve().parent
    source = REPO / "src" / "wsfast"
    if installed == source.resolve():
        # An in-place build: is the extension older than its sources?
        built = [p.stat().st_mtime for p in source.glob("_speedups.*") if p.suffix in (".so", ".pyd")]
        sources = [p.stat().st_mtime for p in (source / "_speedups.pyx", source / "_kernels.h", source / "_socket.h")
                   if p.exists()]
        if built and sources and max(built) < max(sources):
            return (
                "the in-place wsfast._speedups in src/ is older than _speedups.pyx or"
                " _kernels.h: rebuild it to measure the current code"
            )
        return None
    stale = []
    for name in ("_fallback.py", "_speedups.pyx", "_kernels.h", "codec.py"):
        a, b = installed / name, source / name
        if not b.exists():
            continue
        if not a.exists() or hashlib.sha256(a.read_bytes()).digest() != hashlib.sha256(
            b.read_bytes()
        ).digest():
            stale.append(name)
    if stale:
        return (
            f"the imported wsfast ({installed}) differs from src/ in {', '.join(stale)}:"
            " reinstall (WSFAST_BUILD_EXTENSION=yes pip install .) to measure the current code"
        )
    return None


def load(module: str, *, what: Optional[str] = None) -> Any:
    """Import ``module`` or skip the calling benchmark, saying why."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if module.startswith("wsfast"):
            if module == "wsfast._speedups":
                reason = (
                    f"wsfast._speedups is not importable ({exc}): build it with"
                    " `WSFAST_BUILD_EXTENSION=yes pip install .`"
                )
            else:
                reason = f"{module} is not importable ({exc}): `pip install .` or PYTHONPATH=src"
        else:
            dist = module.split(".", 1)[0]
            reason = f"peer {what or module} is not available ({exc}): pip install {dist}"
        pytest.skip(reason)


def versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for dist in ("websockets", "aiohttp", "wsaccel", "wsproto", "pytest-benchmark", "Cython"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def wsfast_info() -> dict[str, Any]:
    info: dict[str, Any] = {"origin": _wsfast_origin()}
    try:
        import wsfast
        from wsfast import _fallback

        info["version"] = wsfast.__version__
        info["codec.IMPLEMENTATION"] = wsfast.IMPLEMENTATION
        info["_fallback._INT_XOR_LIMIT"] = getattr(_fallback, "_INT_XOR_LIMIT", None)
    except ImportError:
        pass
    try:
        importlib.import_module("wsfast._speedups")
        info["_speedups"] = "available"
    except ImportError as exc:
        info["_speedups"] = f"not importable: {exc}"
    warning = _stale_build_warning()
    if warning:
        info["warning"] = warning
    return info


# ------------------------------------------------------------------ data

KiB = 1024
MiB = 1024 * 1024


def size_label(n: int) -> str:
    if n >= MiB and n % MiB == 0:
        return f"{n // MiB}MiB"
    if n >= KiB and n % KiB == 0:
        return f"{n // KiB}KiB"
    return f"{n}B"


def payload(n: int, seed: int = 0) -> bytes:
    return random.Random(seed * 1_000_003 + n).randbytes(n)


MASK = b"\x37\xfa\x21\x3d"


def reference_mask(data: bytes, mask: bytes) -> bytes:
    """Independent XOR masking, to check every implementation's output."""
    n = len(data)
    if n == 0:
        return b""
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


def client_frame(payload_bytes: bytes, mask: bytes, opcode: int = 0x2) -> bytes:
    """One masked, final frame, built without wsfast."""
    n = len(payload_bytes)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + mask + reference_mask(payload_bytes, mask)


# ------------------------------------------------------------------ recording


class Bench:
    """Run one benchmark and tag it for report.py."""

    def __init__(self, benchmark: Any) -> None:
        self._benchmark = benchmark

    def __call__(
        self,
        fn: Callable[..., Any],
        *args: Any,
        group: str,
        case: str,
        case_order: int,
        impl: str,
        impl_order: int,
        role: str = "peer",
        nbytes: int,
        frames: Optional[int] = None,
        note: str = "",
        pedantic_rounds: Optional[int] = None,
    ) -> Any:
        b = self._benchmark
        b.group = f"{group} {case}"
        b.extra_info.update(
            group=group,
            case=case,
            case_order=case_order,
            impl=impl,
            impl_order=impl_order,
            role=role,
            bytes=nbytes,
            note=note,
        )
        if frames is not None:
            b.extra_info["frames"] = frames
        if pedantic_rounds is not None:
            return b.pedantic(fn, args=args, rounds=pedantic_rounds, iterations=1, warmup_rounds=1)
        return b(fn, *args)
