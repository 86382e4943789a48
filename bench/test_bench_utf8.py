"""UTF-8 validation benchmarks: group utf8.

Valid text only (the common case: a whole text message is checked once).
The reference is ``bytes.decode("utf-8")``, which both validates and builds a
``str``: what websockets and aiohttp do with a text message. See
bench/README.md.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable, NamedTuple

import pytest
from _benchlib import KiB, MiB, load, size_label

SAMPLES = {
    "ascii": (
        "The quick brown fox jumps over the lazy dog; "
        '{"id": 12345, "op": "update", "ok": true, "items": [1, 2, 3]}\n'
    ),
    "cyrillic": "Съешь же ещё этих мягких французских булок, да выпей чаю. ",
    "cjk": "敏捷的棕色狐狸跳过了懒狗。いろはにほへとちりぬるを。다람쥐 헌 쳇바퀴에 타고파。",
}
CASES = [("ascii", 100), *((kind, n) for n in (64 * KiB, 1 * MiB) for kind in SAMPLES)]


@lru_cache(maxsize=None)
def text(kind: str, size: int) -> bytes:
    """About ``size`` bytes of ``kind`` text, cut on a code point boundary."""
    sample = SAMPLES[kind].encode()
    raw = (sample * (size // len(sample) + 1))[:size]
    return raw.decode("utf-8", "ignore").encode()  # drop a cut sequence at the end


def case_label(kind: str, size: int) -> str:
    return f"{kind}-{size_label(size)}"


class Impl(NamedTuple):
    id: str
    label: str
    role: str
    note: str
    setup: Callable[[], Callable[[bytes], Any]]  # returns fn(data) -> truthy if valid


def _validate(module: str) -> Callable[[], Callable[[bytes], Any]]:
    return lambda: load(module).validate_utf8


def _incremental(module: str) -> Callable[[], Callable[[bytes], Any]]:
    def setup() -> Callable[[bytes], Any]:
        Utf8Validator = load(module).Utf8Validator

        def feed(data: bytes) -> bool:
            return Utf8Validator().feed(data)

        return feed

    return setup


def _decode() -> Callable[[bytes], Any]:
    return bytes.decode  # bytes.decode(data) == data.decode("utf-8")


def _wsaccel() -> Callable[[bytes], Any]:
    Utf8Validator = load("wsaccel.utf8validator", what="wsaccel").Utf8Validator

    def validate(data: bytes) -> bool:
        valid, complete, _, _ = Utf8Validator().validate(data)
        return valid and complete

    return validate


IMPLS = [
    Impl("decode", "bytes.decode('utf-8')", "reference", "validates and builds a str", _decode),
    Impl("wsfast-speedups", "wsfast._speedups.validate_utf8", "subject", "", _validate("wsfast._speedups")),
    Impl("wsfast-speedups-inc", "wsfast._speedups.Utf8Validator().feed", "subject",
         "new validator per call", _incremental("wsfast._speedups")),
    Impl("wsfast-fallback", "wsfast._fallback.validate_utf8", "subject", "pure Python",
         _validate("wsfast._fallback")),
    Impl("wsfast-fallback-inc", "wsfast._fallback.Utf8Validator().feed", "subject",
         "pure Python, new validator per call", _incremental("wsfast._fallback")),
    Impl("wsaccel", "wsaccel Utf8Validator().validate", "peer", "byte-at-a-time DFA", _wsaccel),
]


@pytest.mark.parametrize(
    ("kind", "size", "impl"),
    [
        pytest.param(kind, size, impl, id=f"{case_label(kind, size)}-{impl.id}")
        for kind, size in CASES
        for impl in IMPLS
    ],
)
def test_utf8(bench: Any, kind: str, size: int, impl: Impl) -> None:
    fn = impl.setup()
    data = text(kind, size)
    assert fn(data), f"{impl.label} rejects valid {kind} text"  # checked once, untimed
    bench(
        fn,
        data,
        group="utf8",
        case=case_label(kind, size),
        case_order=CASES.index((kind, size)),
        impl=impl.label,
        impl_order=IMPLS.index(impl),
        role=impl.role,
        nbytes=len(data),
        note=impl.note,
    )
