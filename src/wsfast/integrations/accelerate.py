"""Accelerate other WebSocket libraries with wsfast's codec, in place.

    import wsfast

    wsfast.accelerate()                    # every supported library installed
    wsfast.accelerate("websockets")        # or some of them
    wsfast.unaccelerate()                  # put the originals back

Most libraries bind their helpers at import time (``from .speedups import
apply_mask``), so the patches go where each one *looks the name up*, not only
where it is defined. Each replacement takes the same arguments and returns the
same values as the original: the libraries behave the same, byte for byte,
only faster. Patching is idempotent, and :func:`unaccelerate` restores the
very objects that were there.

A target is patched only when its installed version (per
:mod:`importlib.metadata`) is in the tested range:

=================  ==========  ==========================================================
target             versions    patched (where the library looks it up)
=================  ==========  ==========================================================
websockets         13 - 17     ``frames.apply_mask`` (+ ``legacy.framing`` if imported),
                               ``frames.Frame.parse`` (a fast path for frames already
                               buffered whole), ``frames.Frame.serialize``
wsproto            1.2 - 1.3   ``frame_protocol.XorMaskerSimple``,
                               ``frame_protocol.FrameProtocol._serialize_frame``
tornado            6.2 - 6.6   ``_websocket_mask`` in ``util``, ``websocket``, ``web``
websocket-client   1.6 - 1.9   ``_abnf.ABNF.mask``, ``_abnf._mask``, ``validate_utf8``
                               in ``_abnf`` and ``_utils``
autobahn           24.4 - 26   ``Utf8Validator`` and ``create_xor_masker`` in
                               ``websocket.protocol``, ``utf8validator``, ``xormasker``
ws4py              0.5 - 0.6   ``framing.Frame.mask``/``unmask``, ``Utf8Validator`` in
                               ``streaming`` and ``utf8validator``
=================  ==========  ==========================================================

(Tested with the oldest and newest of each range: websockets 13.0, 15.0.1
and 17.4; wsproto 1.2.0, 1.3.0 and 1.3.2; tornado 6.2 and 6.6.1;
websocket-client 1.6.0, 1.8.0 and 1.9.2; autobahn 24.4.2 and 26.10.2;
ws4py 0.5.1 and 0.6.0.) Outside its range, or not installed, a target is
reported and left alone.
So it is when wsfast runs its pure-Python codec (``WSFAST_PURE_PYTHON=1``, or
no compiler at install time): that codec is slower than the compiled code of
websockets, tornado or Autobahn. ``allow_pure_python=True`` patches anyway
(for tests, or PyPy).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import re
import threading
from typing import Any, Callable, Optional

from .. import codec
from . import _targets

__all__ = [
    "TARGETS",
    "Acceleration",
    "accelerate",
    "unaccelerate",
    "accelerate_websockets",
    "accelerate_wsproto",
    "accelerate_tornado",
    "accelerate_websocket_client",
    "accelerate_autobahn",
    "accelerate_ws4py",
]


@dataclasses.dataclass(frozen=True)
class Acceleration:
    """What :func:`accelerate` did to one target."""

    target: str
    """The distribution name, e.g. ``"websocket-client"``."""
    version: Optional[str]
    """The installed version, ``None`` if not installed."""
    patched: tuple[str, ...] = ()
    """Dotted paths of the attributes replaced."""
    skipped: Optional[str] = None
    """Why nothing was patched, else ``None``."""

    @property
    def ok(self) -> bool:
        """``True`` when the target is patched."""
        return self.skipped is None


@dataclasses.dataclass(frozen=True)
class _Target:
    name: str  # distribution
    module: str  # import name
    tested: tuple[tuple[int, ...], tuple[int, ...]]  # [low, high)
    plan: Callable[[_targets.Release], list[_targets.Patch]]


def _release(version: str) -> tuple[int, ...]:
    """The numeric release of a version string: ``"14.0rc1"`` -> ``(14, 0)``."""
    parts = []
    for part in version.split("."):
        match = re.match(r"\d+", part)
        if match is None:
            break
        parts.append(int(match.group()))
        if match.end() != len(part):
            break
    return tuple(parts)


def _range(low: str, high: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    return _release(low), _release(high)


_TARGET_LIST = (
    _Target("websockets", "websockets", _range("13", "18"), _targets.plan_websockets),
    _Target("wsproto", "wsproto", _range("1.2", "1.4"), _targets.plan_wsproto),
    _Target("tornado", "tornado", _range("6.2", "6.7"), _targets.plan_tornado),
    _Target("websocket-client", "websocket", _range("1.6", "1.10"), _targets.plan_websocket_client),
    _Target("autobahn", "autobahn", _range("24.4", "27"), _targets.plan_autobahn),
    _Target("ws4py", "ws4py", _range("0.5", "0.7"), _targets.plan_ws4py),
)
_BY_NAME = {target.name: target for target in _TARGET_LIST}

TARGETS: tuple[str, ...] = tuple(_BY_NAME)
"""The names :func:`accelerate` accepts (distribution names)."""

_lock = threading.RLock()
# target name -> (its result, [(owner, attribute, original, replacement)])
_active: dict[str, tuple[Acceleration, list[tuple[Any, str, Any, Any]]]] = {}


def _installed_version(distribution: str) -> Optional[str]:
    """The installed version of ``distribution``, ``None`` if not installed."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _raw(owner: Any, attribute: str) -> Any:
    # A class attribute is saved undecorated from the class dict (a
    # staticmethod stays a staticmethod); a module global as is.
    return vars(owner)[attribute] if isinstance(owner, type) else getattr(owner, attribute)


def _label(owner: Any, attribute: str) -> str:
    if isinstance(owner, type):
        return f"{owner.__module__}.{owner.__qualname__}.{attribute}"
    return f"{owner.__name__}.{attribute}"


def _show(release: tuple[int, ...]) -> str:
    return ".".join(map(str, release))


def _accelerate(name: str, allow_pure_python: bool) -> Acceleration:
    target = _BY_NAME.get(name)
    if target is None:
        raise ValueError(f"unknown target {name!r}; choose among {', '.join(TARGETS)}")
    with _lock:
        if name in _active:
            return _active[name][0]
        version = _installed_version(target.name)
        if version is None or importlib.util.find_spec(target.module) is None:
            return Acceleration(name, version, skipped="not installed")
        low, high = target.tested
        if not low <= _release(version) < high:
            return Acceleration(
                name, version, skipped=f"version {version} is outside the tested range >={_show(low)},<{_show(high)}"
            )
        if not codec.HAS_SPEEDUPS and not allow_pure_python:
            return Acceleration(
                name, version, skipped="wsfast runs its pure-Python codec: it would not be faster (allow_pure_python)"
            )
        try:
            plan = target.plan(_release(version))
        except ImportError as exc:
            return Acceleration(name, version, skipped=f"cannot be imported: {exc}")
        saved: list[tuple[Any, str, Any, Any]] = []
        try:
            for owner, attribute, replacement in plan:
                original = _raw(owner, attribute)
                setattr(owner, attribute, replacement)
                saved.append((owner, attribute, original, replacement))
        except (AttributeError, KeyError):
            _restore(saved)
            missing = _label(owner, attribute)
            return Acceleration(name, version, skipped=f"{missing} not found: not the code this was tested on")
        except BaseException:
            _restore(saved)
            raise
        result = Acceleration(name, version, tuple(_label(owner, attr) for owner, attr, _, _ in saved))
        _active[name] = (result, saved)
        return result


def _restore(saved: list[tuple[Any, str, Any, Any]]) -> None:
    for owner, attribute, original, replacement in reversed(saved):
        # Leave alone what someone else patched after us.
        if _raw(owner, attribute) is replacement:
            setattr(owner, attribute, original)


def accelerate(*targets: str, allow_pure_python: bool = False) -> tuple[Acceleration, ...]:
    """Patch ``targets`` (distribution names, see :data:`TARGETS`; none: all of
    them) and return one :class:`Acceleration` per target, patched or skipped
    with the reason. Calling it again changes nothing and returns the same."""
    return tuple(_accelerate(name, allow_pure_python) for name in (targets or TARGETS))


def unaccelerate(*targets: str) -> tuple[str, ...]:
    """Put back the originals in ``targets`` (none: every patched target);
    returns the names of the targets restored."""
    for name in targets:
        if name not in _BY_NAME:
            raise ValueError(f"unknown target {name!r}; choose among {', '.join(TARGETS)}")
    restored = []
    with _lock:
        for name in targets or tuple(_active):
            entry = _active.pop(name, None)
            if entry is not None:
                _restore(entry[1])
                restored.append(name)
    return tuple(restored)


def accelerate_websockets(*, allow_pure_python: bool = False) -> Acceleration:
    """Patch websockets (see the module's table)."""
    return _accelerate("websockets", allow_pure_python)


def accelerate_wsproto(*, allow_pure_python: bool = False) -> Acceleration:
    """Patch wsproto (see the module's table)."""
    return _accelerate("wsproto", allow_pure_python)


def accelerate_tornado(*, allow_pure_python: bool = False) -> Acceleration:
    """Patch tornado (see the module's table)."""
    return _accelerate("tornado", allow_pure_python)


def accelerate_websocket_client(*, allow_pure_python: bool = False) -> Acceleration:
    """Patch websocket-client (see the module's table)."""
    return _accelerate("websocket-client", allow_pure_python)


def accelerate_autobahn(*, allow_pure_python: bool = False) -> Acceleration:
    """Patch Autobahn (see the module's table); :func:`wsfast.compat.wsaccel.patch_autobahn` too."""
    return _accelerate("autobahn", allow_pure_python)


def accelerate_ws4py(*, allow_pure_python: bool = False) -> Acceleration:
    """Patch ws4py (see the module's table); :func:`wsfast.compat.wsaccel.patch_ws4py` too."""
    return _accelerate("ws4py", allow_pure_python)
