"""Masking benchmarks (RFC 6455 section 5.3): groups mask-new, mask-inplace, mask-pure.

Every entry is checked once, outside the timing, against an independent
XOR; then timed. See bench/README.md for what each group compares.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import pytest
from _benchlib import MASK, KiB, MiB, load, payload, reference_mask, size_label

SIZES = [16, 125, 1 * KiB, 64 * KiB, 1 * MiB, 16 * MiB]
# Fine grid for the pure-Python crossover (int.from_bytes XOR vs translate).
PURE_SIZES = [16, 64, 125, 256, 512, 1 * KiB, 2 * KiB, 4 * KiB, 8 * KiB, 16 * KiB,
              64 * KiB, 256 * KiB, 1 * MiB]
PEDANTIC_ROUNDS = {16 * MiB: 7}  # 16 MiB: fixed rounds, one iteration each


class Case(NamedTuple):
    fn: Callable[..., Any]
    args: tuple
    result: Callable[[Any], bytes]  # the masked bytes, from fn's return value
    fresh: Callable[[], tuple] | None = None  # args for the one checked call


class Impl(NamedTuple):
    id: str
    label: str
    role: str
    note: str
    setup: Callable[[bytes, bytes], Case]


def _same(out: Any) -> bytes:
    return bytes(out)


# ----------------------------------------------------------------- mask-new

def _wsfast_new(module: str) -> Callable[[bytes, bytes], Case]:
    def setup(data: bytes, mask: bytes) -> Case:
        return Case(load(module).apply_mask, (data, mask), _same)
    return setup


def _websockets_new(data: bytes, mask: bytes) -> Case:
    fn = load("websockets.speedups", what="websockets (C speedups)").apply_mask
    return Case(fn, (data, mask), _same)


def _wsaccel_new(data: bytes, mask: bytes) -> Case:
    masker = load("wsaccel.xormask", what="wsaccel").XorMaskerSimple

    def wsaccel_mask(data: bytes) -> bytes:
        # The masker is stateful (it keeps the key phase): one per payload.
        return masker(mask).process(data)

    return Case(wsaccel_mask, (data,), _same)


def _aiohttp_fn() -> Callable[[bytes, bytearray], None]:
    return load("aiohttp._websocket.mask", what="aiohttp (compiled mask)")._websocket_mask_cython


def _aiohttp_inplace(data: bytes, mask: bytes) -> Case:
    fn = _aiohttp_fn()
    buf = bytearray(data)
    # Masking the same buffer over and over flips it back and forth: the
    # timing does not care, the check gets a fresh copy.
    return Case(fn, (mask, buf), None, fresh=lambda: (mask, bytearray(data)))


def _aiohttp_copy(data: bytes, mask: bytes) -> Case:
    fn = _aiohttp_fn()

    def aiohttp_copy_then_mask(data: bytes) -> bytearray:
        buf = bytearray(data)  # what aiohttp's reader does for a masked frame
        fn(mask, buf)
        return buf

    return Case(aiohttp_copy_then_mask, (data,), _same)


def _ceiling(data: bytes, mask: bytes) -> Case:
    src = bytearray(data)
    return Case(bytes, (src,), lambda out: reference_mask(out, mask))


NEW_IMPLS = [
    Impl("ceiling-copy", "ceiling: bytes(bytearray) copy", "reference",
         "memory-bandwidth ceiling: allocate + copy, no XOR", _ceiling),
    Impl("wsfast-speedups", "wsfast._speedups.apply_mask", "subject", "", _wsfast_new("wsfast._speedups")),
    Impl("wsfast-fallback", "wsfast._fallback.apply_mask", "subject", "pure Python",
         _wsfast_new("wsfast._fallback")),
    Impl("websockets", "websockets.speedups.apply_mask", "peer", "", _websockets_new),
    Impl("wsaccel", "wsaccel XorMaskerSimple(mask).process", "peer", "new masker per call", _wsaccel_new),
    Impl("aiohttp-copy", "aiohttp bytearray(data) + _websocket_mask_cython", "peer",
         "copy then in-place mask, as aiohttp's reader does", _aiohttp_copy),
    Impl("aiohttp-inplace", "aiohttp _websocket_mask_cython (in place)", "peer",
         "in place: allocates nothing, not a like-for-like new-bytes entry", _aiohttp_inplace),
]

# ----------------------------------------------------------------- mask-inplace

def _wsfast_inplace(module: str) -> Callable[[bytes, bytes], Case]:
    def setup(data: bytes, mask: bytes) -> Case:
        fn = load(module).mask_inplace
        return Case(fn, (bytearray(data), mask), None, fresh=lambda: (bytearray(data), mask))
    return setup


INPLACE_IMPLS = [
    Impl("aiohttp", "aiohttp _websocket_mask_cython", "reference", "", _aiohttp_inplace),
    Impl("wsfast-speedups", "wsfast._speedups.mask_inplace", "subject", "",
         _wsfast_inplace("wsfast._speedups")),
    Impl("wsfast-fallback", "wsfast._fallback.mask_inplace", "subject", "pure Python",
         _wsfast_inplace("wsfast._fallback")),
]

# ----------------------------------------------------------------- mask-pure

_XOR_TABLES = [bytes(i ^ k for i in range(256)) for k in range(256)]


def int_xor(data: bytes, mask: bytes) -> bytes:
    """XOR two big ints: the fallback's small-size branch, on the caller's bytes."""
    n = len(data)
    x = int.from_bytes(data, "little") ^ int.from_bytes((mask * ((n + 3) >> 2))[:n], "little")
    return x.to_bytes(n, "little")


def translate4(data: bytes, mask: bytes) -> bytes:
    """Translate each byte lane through a table: the fallback's large-size branch."""
    out = bytearray(data)
    t = _XOR_TABLES
    out[0::4] = out[0::4].translate(t[mask[0]])
    out[1::4] = out[1::4].translate(t[mask[1]])
    out[2::4] = out[2::4].translate(t[mask[2]])
    out[3::4] = out[3::4].translate(t[mask[3]])
    return bytes(out)


def _local(fn: Callable[[bytes, bytes], bytes]) -> Callable[[bytes, bytes], Case]:
    def setup(data: bytes, mask: bytes) -> Case:
        return Case(fn, (data, mask), _same)
    return setup


def _wsproto(data: bytes, mask: bytes) -> Case:
    masker = load("wsproto.frame_protocol", what="wsproto").XorMaskerSimple

    def wsproto_mask(data: bytes) -> bytearray:
        return masker(mask).process(data)

    return Case(wsproto_mask, (data,), _same)


PURE_IMPLS = [
    Impl("wsproto", "wsproto XorMaskerSimple(mask).process", "reference",
         "4-lane translate, new masker per call", _wsproto),
    Impl("wsfast-fallback", "wsfast._fallback.apply_mask", "subject", "", _wsfast_new("wsfast._fallback")),
    Impl("int-xor", "int.from_bytes XOR", "method", "the fallback's branch, standalone", _local(int_xor)),
    Impl("translate", "bytes.translate, 4 lanes", "method", "the fallback's branch, standalone",
         _local(translate4)),
]

# ----------------------------------------------------------------- runner


def _run(bench: Any, group: str, impls: list, impl: Impl, sizes: list, size: int) -> None:
    data = payload(size)
    case = impl.setup(data, MASK)
    # Check once, outside the timing.
    if case.fresh is not None:
        args = case.fresh()
        case.fn(*args)
        got = bytes(next(a for a in args if isinstance(a, bytearray)))
    else:
        got = case.result(case.fn(*case.args))
    assert got == reference_mask(data, MASK), f"{impl.label} masks {size} bytes wrongly"
    bench(
        case.fn,
        *case.args,
        group=group,
        case=size_label(size),
        case_order=sizes.index(size),
        impl=impl.label,
        impl_order=impls.index(impl),
        role=impl.role,
        nbytes=size,
        note=impl.note,
        pedantic_rounds=PEDANTIC_ROUNDS.get(size),
    )


def _params(impls: list, sizes: list) -> list:
    return [
        pytest.param(impl, size, id=f"{size_label(size)}-{impl.id}")
        for size in sizes
        for impl in impls
    ]


@pytest.mark.parametrize(("impl", "size"), _params(NEW_IMPLS, SIZES))
def test_mask_new(bench: Any, impl: Impl, size: int) -> None:
    _run(bench, "mask-new", NEW_IMPLS, impl, SIZES, size)


@pytest.mark.parametrize(("impl", "size"), _params(INPLACE_IMPLS, SIZES))
def test_mask_inplace(bench: Any, impl: Impl, size: int) -> None:
    _run(bench, "mask-inplace", INPLACE_IMPLS, impl, SIZES, size)


@pytest.mark.parametrize(("impl", "size"), _params(PURE_IMPLS, PURE_SIZES))
def test_mask_pure(bench: Any, impl: Impl, size: int) -> None:
    _run(bench, "mask-pure", PURE_IMPLS, impl, PURE_SIZES, size)
