"""Which implementation :mod:`wsfast.codec` picks, and that both have one interface."""

from __future__ import annotations

import importlib
import inspect
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Optional

import pytest

import wsfast
import wsfast.codec
from wsfast import _fallback

CODEC_NAMES = [name for name in wsfast.codec.__all__ if name != "HAS_SPEEDUPS"]


def importable_speedups() -> Optional[ModuleType]:
    try:
        return importlib.import_module("wsfast._speedups")
    except ImportError:
        return None


def expected_implementation() -> ModuleType:
    """The module wsfast.codec must have picked in this process."""
    if os.environ.get("WSFAST_PURE_PYTHON", "") == "1":
        return _fallback
    return importable_speedups() or _fallback


def test_implementation_in_use() -> None:
    impl = expected_implementation()
    assert wsfast.codec.IMPLEMENTATION == impl.IMPLEMENTATION
    assert wsfast.IMPLEMENTATION == impl.IMPLEMENTATION
    assert wsfast.HAS_SPEEDUPS is wsfast.codec.HAS_SPEEDUPS is (impl is not _fallback)
    for name in CODEC_NAMES:
        assert getattr(wsfast.codec, name) is getattr(impl, name), name


def test_implementation_names(speedups: ModuleType) -> None:
    assert _fallback.IMPLEMENTATION == "python"
    assert speedups.IMPLEMENTATION == "cython"


@pytest.mark.parametrize("value", ["1", "0", ""])
def test_pure_python_environment_variable(value: str) -> None:
    # WSFAST_PURE_PYTHON=1 forces the fallback; any other value changes nothing.
    code = (
        "import wsfast, wsfast.codec as c, wsfast._fallback as f\n"
        "print(c.IMPLEMENTATION, wsfast.HAS_SPEEDUPS,"
        " all(getattr(c, n) is getattr(f, n) for n in f.__all__))"
    )
    package_root = str(Path(wsfast.__file__).resolve().parent.parent)
    env = dict(os.environ, WSFAST_PURE_PYTHON=value)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    if value == "1" or importable_speedups() is None:
        assert result.stdout.split() == ["python", "False", "True"]
    else:
        assert result.stdout.split() == ["cython", "True", "False"]


def parameters(function: Any) -> list[tuple[str, Any, Any]]:
    """Names, kinds and defaults of the parameters, without the annotations
    and without ``self`` (positional-only on a compiled method)."""
    return [
        (p.name, p.kind, p.default)
        for p in inspect.signature(function).parameters.values()
        if p.name != "self"
    ]


def public(cls: type) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_")}


def test_same_interface(speedups: ModuleType) -> None:
    assert set(_fallback.__all__) == set(CODEC_NAMES)
    for name in CODEC_NAMES:
        ours, theirs = getattr(_fallback, name), getattr(speedups, name)
        if name == "SocketTransport":
            # Compiled only: without it the event loop's own transports are
            # used (tests/asyncio/test_sockets.py compares the two).
            assert ours is None and isinstance(theirs, type)
        elif isinstance(ours, type):
            assert isinstance(theirs, type), name
            assert public(theirs) == public(ours), name
            for member in public(ours):
                if callable(getattr(ours, member)):
                    assert parameters(getattr(theirs, member)) == parameters(
                        getattr(ours, member)
                    ), f"{name}.{member}"
        elif callable(ours):
            assert callable(theirs), name
            assert parameters(theirs) == parameters(ours), name
        elif name != "IMPLEMENTATION":
            assert theirs == ours, name
