"""wsfast.compat.wsaccel against the real wsaccel, and against Autobahn's
pure-Python validator and maskers, on generated inputs cut into generated
pieces: the same outputs, indexes, states and pointers, call after call."""

from __future__ import annotations

import array
import importlib.util
import sys
from types import ModuleType
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsfast.compat import wsaccel as compat

real_xormask = pytest.importorskip("wsaccel.xormask")
real_utf8 = pytest.importorskip("wsaccel.utf8validator")

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------- inputs

_TRICKY = [
    b"\xed\xa0\x80",  # a surrogate
    b"\xed\x9f\xbf",  # U+D7FF, valid
    b"\xf4\x90\x80\x80",  # above U+10FFFF
    b"\xf4\x8f\xbf\xbf",  # U+10FFFF, valid
    b"\xc0\xaf",  # overlong
    b"\xe0\x80\xaf",  # overlong
    b"\xf0\x8f\xbf\xbf",  # overlong
    b"\xff",
    b"\x80",
    b"\xe2\x82",  # truncated
    "κόσμε".encode(),
    "🎉".encode(),
]


@st.composite
def texts(draw: st.DrawFn) -> bytes:
    """Mostly UTF-8 text, with bad or truncated sequences and long ASCII runs in places."""
    parts = draw(
        st.lists(
            st.one_of(
                st.text(max_size=40).map(lambda s: s.encode("utf-8", "surrogatepass")),
                st.sampled_from(_TRICKY),
                st.binary(max_size=8),
                st.integers(1, 300).map(lambda n: b"a" * n),
            ),
            max_size=12,
        )
    )
    return b"".join(parts)


@st.composite
def chunked(draw: st.DrawFn, data: bytes) -> list[bytes]:
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=8)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


@st.composite
def text_and_pieces(draw: st.DrawFn) -> list[bytes]:
    return draw(chunked(draw(texts())))


@st.composite
def payload_and_pieces(draw: st.DrawFn) -> list[bytes]:
    data = draw(st.one_of(st.binary(max_size=300), st.integers(0, 5000).map(lambda n: bytes(range(256)) * (n // 256))))
    return draw(chunked(data))


KINDS: dict[str, Callable[[bytes], Any]] = {
    "bytes": bytes,
    "bytearray": bytearray,
    "memoryview": memoryview,
    "array": lambda b: array.array("B", b),
}

# ---------------------------------------------------------------- maskers


@SETTINGS
@given(mask=st.binary(min_size=4, max_size=4), pieces=payload_and_pieces(), kind=st.sampled_from(list(KINDS)))
def test_xor_masker_simple(mask: bytes, pieces: list[bytes], kind: str) -> None:
    ours, theirs = compat.XorMaskerSimple(mask), real_xormask.XorMaskerSimple(mask)
    for i, piece in enumerate(pieces):
        data = KINDS[kind](piece)
        out = ours.process(data)
        assert out == theirs.process(data) and type(out) is bytes
        assert ours.pointer() == theirs.pointer()
        if i == 1:
            ours.reset()
            theirs.reset()
            assert ours.pointer() == theirs.pointer() == 0


@SETTINGS
@given(
    mask=st.binary(min_size=4, max_size=4).map(bytearray),
    pieces=payload_and_pieces(),
    length=st.one_of(st.none(), st.integers(0, 1000)),
)
def test_create_xor_masker(mask: bytearray, pieces: list[bytes], length: Any) -> None:
    ours, theirs = compat.createXorMasker(mask, length), real_xormask.createXorMasker(mask, length)
    assert type(ours) is compat.XorMaskerSimple
    for piece in pieces:
        assert ours.process(piece) == theirs.process(piece)
        assert ours.pointer() == theirs.pointer()


def test_xor_masker_null() -> None:
    ours, theirs = compat.XorMaskerNull(), real_xormask.XorMaskerNull(b"abcd")
    data = bytearray(b"unchanged")
    assert ours.process(data) is data and theirs.process(data) is data
    assert ours.pointer() == theirs.pointer() == 9
    ours.reset()
    assert ours.pointer() == 0
    assert compat.XorMaskerNull(b"abcd").pointer() == 0


def test_strided_view() -> None:
    view = memoryview(b"abcdefghijkl")[::3]
    assert compat.XorMaskerSimple(b"wxyz").process(view) == real_xormask.XorMaskerSimple(b"wxyz").process(view)


@pytest.mark.parametrize("mask", [b"abc", b"abcde", b""])
def test_mask_length(mask: bytes) -> None:
    with pytest.raises(ValueError, match="mask should be 4byte."):
        real_xormask.XorMaskerSimple(mask)
    with pytest.raises(ValueError, match="mask should be 4byte."):
        compat.XorMaskerSimple(mask)


def test_mask_type() -> None:
    with pytest.raises(TypeError):
        real_xormask.XorMaskerSimple("abcd")
    with pytest.raises(TypeError):
        compat.XorMaskerSimple("abcd")  # type: ignore[arg-type]


# ---------------------------------------------------------------- validator


def _same_validators(pieces: list[bytes], ours: Any, theirs: Any, kind: str = "bytes", state: bool = True) -> None:
    for piece in pieces:
        data = KINDS[kind](piece)
        assert ours.validate(data) == theirs.validate(data), (pieces, piece)
        if state:
            assert ours.state == theirs.state, (pieces, piece)
            assert ours.i == theirs.i


@SETTINGS
@given(pieces=text_and_pieces(), kind=st.sampled_from(list(KINDS)))
def test_utf8_validator(pieces: list[bytes], kind: str) -> None:
    _same_validators(pieces, compat.Utf8Validator(), real_utf8.Utf8Validator(), kind)


@SETTINGS
@given(first=text_and_pieces(), second=text_and_pieces())
def test_utf8_validator_reset(first: list[bytes], second: list[bytes]) -> None:
    ours, theirs = compat.Utf8Validator(), real_utf8.Utf8Validator()
    _same_validators(first, ours, theirs)
    ours.reset()
    theirs.reset()
    assert (ours.state, ours.i, ours.codepoint) == (theirs.state, theirs.i, theirs.codepoint) == (0, 0, 0)
    _same_validators(second, ours, theirs)


@SETTINGS
@given(text=texts(), split=st.integers(0, 50))
def test_utf8_decode(text: bytes, split: int) -> None:
    """Byte by byte through decode(), then the rest through validate()."""
    ours, theirs = compat.Utf8Validator(), real_utf8.Utf8Validator()
    for byte in text[:split]:
        assert ours.decode(byte) == theirs.decode(byte)
        assert (ours.state, ours.codepoint, ours.i) == (theirs.state, theirs.codepoint, theirs.i)
    _same_validators([text[split:], b"", text[split:]], ours, theirs)


def test_utf8_after_rejection() -> None:
    """wsaccel stays rejected, but an empty piece still reads as valid."""
    ours, theirs = compat.Utf8Validator(), real_utf8.Utf8Validator()
    _same_validators([b"ab\xffcd", b"", b"xyz", b""], ours, theirs)
    assert ours.validate(b"") == (True, False, 0, 2)


def test_utf8_constants() -> None:
    for name in ("UTF8_ACCEPT", "UTF8_REJECT"):
        assert getattr(compat.Utf8Validator, name) == getattr(real_utf8.Utf8Validator, name)


def test_utf8_large() -> None:
    text = ("ASCII, then Cyrillic: Привет, and CJK: 日本語. " * 30000).encode()
    for data in (text, text[:-1], text[:100000] + b"\xed\xa0\x80" + text[100000:]):
        _same_validators([data[:70001], data[70001:]], compat.Utf8Validator(), real_utf8.Utf8Validator())


# ---------------------------------------------------------------- Autobahn's pure-Python twins


def _autobahn_pure(monkeypatch: pytest.MonkeyPatch, name: str) -> ModuleType:
    """A fresh copy of ``autobahn.websocket.<name>`` with its compiled code
    turned off: NVX (Autobahn 25+) and wsaccel (which Autobahn 24 imports)."""
    pytest.importorskip("autobahn")
    import autobahn.websocket

    monkeypatch.setattr(autobahn.websocket, "USES_NVX", False, raising=False)
    for blocked in ("wsaccel", "wsaccel.utf8validator", "wsaccel.xormask"):
        monkeypatch.setitem(sys.modules, blocked, None)  # import fails
    spec = importlib.util.find_spec(f"autobahn.websocket.{name}")
    assert spec is not None and spec.origin
    copy = importlib.util.spec_from_file_location(f"_pure_autobahn_{name}", spec.origin)
    assert copy is not None and copy.loader is not None
    module = importlib.util.module_from_spec(copy)
    copy.loader.exec_module(module)
    sys.modules.pop(copy.name, None)
    return module


@pytest.fixture(scope="module")
def autobahn_pure() -> dict[str, ModuleType]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        return {name: _autobahn_pure(monkeypatch, name) for name in ("utf8validator", "xormasker")}


@SETTINGS
@given(pieces=text_and_pieces())
def test_autobahn_pure_validator(autobahn_pure: dict[str, ModuleType], pieces: list[bytes]) -> None:
    theirs = autobahn_pure["utf8validator"].Utf8Validator()
    assert type(theirs).__module__.startswith("_pure_autobahn")
    ours = compat.Utf8Validator()
    for piece in pieces:
        assert ours.validate(piece) == theirs.validate(piece)
        assert ours.state == theirs._state


@SETTINGS
@given(mask=st.binary(min_size=4, max_size=4), pieces=payload_and_pieces(), length=st.sampled_from([None, 10, 1000]))
def test_autobahn_pure_masker(
    autobahn_pure: dict[str, ModuleType], mask: bytes, pieces: list[bytes], length: Any
) -> None:
    theirs = autobahn_pure["xormasker"].create_xor_masker(mask, length)
    ours = compat.createXorMasker(mask, length)
    for piece in pieces:
        assert ours.process(piece) == theirs.process(piece)
        assert ours.pointer() == theirs.pointer()
