"""wsfast.accelerate() and unaccelerate(), for every target: what is patched
is ours, unpatching puts back the very same objects, patching twice changes
nothing, and a target that is missing or of an untested version is reported
and left alone."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

import wsfast
from wsfast import codec
from wsfast.integrations import _targets
from wsfast.integrations import accelerate as acc

MODULES = {
    "websockets": "websockets",
    "wsproto": "wsproto",
    "tornado": "tornado",
    "websocket-client": "websocket",
    "autobahn": "autobahn",
    "ws4py": "ws4py",
}
PLANS = {
    "websockets": _targets.plan_websockets,
    "wsproto": _targets.plan_wsproto,
    "tornado": _targets.plan_tornado,
    "websocket-client": _targets.plan_websocket_client,
    "autobahn": _targets.plan_autobahn,
    "ws4py": _targets.plan_ws4py,
}


def _plan(target: str) -> list[_targets.Patch]:
    version = acc._installed_version(target)
    assert version is not None
    return PLANS[target](acc._release(version))


def _raw(owner: Any, attribute: str) -> Any:
    return vars(owner)[attribute] if isinstance(owner, type) else getattr(owner, attribute)


def _installed(target: str) -> None:
    pytest.importorskip(MODULES[target])


def test_targets_listed() -> None:
    assert acc.TARGETS == tuple(MODULES)
    assert wsfast.accelerate is acc.accelerate and wsfast.unaccelerate is acc.unaccelerate
    assert {"accelerate", "unaccelerate"} <= set(wsfast.__all__)


@pytest.mark.parametrize("target", list(MODULES))
def test_patch_and_restore(target: str) -> None:
    _installed(target)
    plan = _plan(target)
    assert plan
    originals = [_raw(owner, attribute) for owner, attribute, _ in plan]
    for original, (_, _, replacement) in zip(originals, plan):
        assert original is not replacement

    (result,) = wsfast.accelerate(target, allow_pure_python=True)
    assert result.ok and result.skipped is None
    assert result.target == target and result.version
    assert len(result.patched) == len(plan)
    for (owner, attribute, replacement), label in zip(plan, result.patched):
        assert _raw(owner, attribute) is replacement, label
        assert label.endswith("." + attribute)

    # Idempotent: the same result, nothing patched over our own patches.
    assert wsfast.accelerate(target, allow_pure_python=True) == (result,)
    assert wsfast.unaccelerate(target) == (target,)
    for original, (owner, attribute, _) in zip(originals, plan):
        assert _raw(owner, attribute) is original
    assert wsfast.unaccelerate(target) == ()  # nothing left to restore


@pytest.mark.parametrize("target", list(MODULES))
def test_per_target_function(target: str) -> None:
    _installed(target)
    function = getattr(acc, "accelerate_" + target.replace("-", "_"))
    result = function(allow_pure_python=True)
    assert result.ok and result.target == target
    assert wsfast.accelerate(target) == (result,)  # already done: reported as is


def test_accelerate_everything_installed() -> None:
    results = wsfast.accelerate(allow_pure_python=True)
    assert [r.target for r in results] == list(MODULES)
    for result in results:
        installed = importlib.util.find_spec(MODULES[result.target]) is not None
        assert result.ok == installed, result
        if not installed:
            assert result.skipped == "not installed" and not result.patched
    assert set(wsfast.unaccelerate()) == {r.target for r in results if r.ok}


def test_unknown_target() -> None:
    with pytest.raises(ValueError, match="unknown target 'websocket_client'"):
        wsfast.accelerate("websocket_client")
    with pytest.raises(ValueError, match="unknown target"):
        wsfast.unaccelerate("nope")


@pytest.mark.parametrize("version", ["12.0", "18.0", "99.1.dev0"])
def test_version_outside_range(monkeypatch: pytest.MonkeyPatch, version: str) -> None:
    _installed("websockets")
    import websockets.frames

    before = websockets.frames.apply_mask
    monkeypatch.setattr(acc, "_installed_version", lambda distribution: version)
    (result,) = wsfast.accelerate("websockets", allow_pure_python=True)
    assert not result.ok and result.patched == () and result.version == version
    assert result.skipped == f"version {version} is outside the tested range >=13,<18"
    assert websockets.frames.apply_mask is before
    assert wsfast.unaccelerate() == ()


@pytest.mark.parametrize("target", list(MODULES))
def test_version_inside_range_is_patched(monkeypatch: pytest.MonkeyPatch, target: str) -> None:
    _installed(target)
    low = ".".join(map(str, acc._BY_NAME[target].tested[0]))
    monkeypatch.setattr(acc, "_installed_version", lambda distribution: low + ".0rc1")
    (result,) = wsfast.accelerate(target, allow_pure_python=True)
    assert result.ok and result.version == low + ".0rc1"


def test_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(acc, "_installed_version", lambda distribution: None)
    results = wsfast.accelerate()
    assert all(r.skipped == "not installed" and r.version is None for r in results)
    assert wsfast.unaccelerate() == ()


def test_pure_python_codec_is_not_patched_in(monkeypatch: pytest.MonkeyPatch) -> None:
    _installed("wsproto")
    import wsproto.frame_protocol

    before = wsproto.frame_protocol.XorMaskerSimple
    monkeypatch.setattr(codec, "HAS_SPEEDUPS", False)
    (result,) = wsfast.accelerate("wsproto")
    assert not result.ok and "pure-Python codec" in (result.skipped or "")
    assert wsproto.frame_protocol.XorMaskerSimple is before
    (result,) = wsfast.accelerate("wsproto", allow_pure_python=True)
    assert result.ok and wsproto.frame_protocol.XorMaskerSimple is _plan("wsproto")[0][2]


def test_someone_else_patched_after_us() -> None:
    _installed("tornado")
    import tornado.websocket

    original = tornado.websocket._websocket_mask
    wsfast.accelerate("tornado", allow_pure_python=True)

    def theirs(mask: bytes, data: bytes) -> bytes:
        return data

    tornado.websocket._websocket_mask = theirs
    try:
        wsfast.unaccelerate("tornado")
        assert tornado.websocket._websocket_mask is theirs  # not ours to undo
    finally:
        tornado.websocket._websocket_mask = original


@pytest.mark.parametrize(
    ("version", "release"),
    [("17.4", (17, 4)), ("26.10.2", (26, 10, 2)), ("14.0rc1", (14, 0)), ("1.9.2.post1", (1, 9, 2)), ("dev", ())],
)
def test_release(version: str, release: tuple[int, ...]) -> None:
    assert acc._release(version) == release


def test_attribute_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Code that moved within a tested range: reported, and nothing left half-patched."""
    _installed("tornado")
    import tornado.util
    import tornado.web
    import tornado.websocket

    before = [module._websocket_mask for module in (tornado.util, tornado.websocket, tornado.web)]
    monkeypatch.delattr(tornado.web, "_websocket_mask")
    (result,) = wsfast.accelerate("tornado", allow_pure_python=True)
    assert not result.ok and result.skipped == "tornado.web._websocket_mask not found: not the code this was tested on"
    assert [tornado.util._websocket_mask, tornado.websocket._websocket_mask] == before[:2]
    assert wsfast.unaccelerate() == ()
