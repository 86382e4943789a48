"""Reference encoders and trace recorders shared by the codec tests.

Everything here is written independently of :mod:`wsfast`, so that the tests
do not check the codec against itself.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Callable, Iterable, NamedTuple, Optional, Sequence

from wsfast.exceptions import FrameError

KNOWN_OPCODES = (0x0, 0x1, 0x2, 0x8, 0x9, 0xA)
CONTROL_OPCODES = (0x8, 0x9, 0xA)
RESERVED_OPCODES = (0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF)

# Invalid or unfinished UTF-8, to mix into random texts.
UTF8_FAULTS = [b"\x80", b"\xbf", b"\xc0\xaf", b"\xc1", b"\xe0\x80", b"\xed\xa0\x80", b"\xf0\x8f"]
UTF8_FAULTS += [b"\xf4\x90\x80\x80", b"\xf5", b"\xff", b"\xe2\x82", b"\xf0\x90\x80"]
UTF8_FAULTS += [b"\xe2\x82(", b"\xf0\x90\x80("]

Frame = tuple[int, bool, int, bytes]


class Impls(NamedTuple):
    """Both implementations of the codec, for differential tests."""

    fallback: ModuleType
    speedups: ModuleType


def naive_mask(data: bytes, key: bytes, phase: int = 0) -> bytes:
    """XOR ``data`` with ``key`` one byte at a time, starting at ``key[phase]``."""
    return bytes(b ^ key[(i + phase) % 4] for i, b in enumerate(data))


def raw_header(
    opcode: int,
    length: int,
    fin: bool = True,
    rsv: int = 0,
    mask: Optional[bytes] = None,
    length_size: Optional[int] = None,
) -> bytes:
    """Encode a frame header bit by bit from RFC 6455 section 5.2.

    ``length_size`` is the size of the extended length (0, 2 or 8 bytes);
    ``None`` picks the shortest, any other value gives a non-minimal encoding.
    No check is made: any opcode, rsv or length can be encoded.
    """
    if length_size is None:
        length_size = 0 if length < 126 else 2 if length < 65536 else 8
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    m = 0x80 if mask is not None else 0
    if length_size == 0:
        head = bytes((b0, m | length))
    elif length_size == 2:
        head = bytes((b0, m | 126)) + length.to_bytes(2, "big")
    else:
        head = bytes((b0, m | 127)) + length.to_bytes(8, "big")
    return head + (mask or b"")


def raw_frame(
    opcode: int,
    payload: bytes,
    fin: bool = True,
    rsv: int = 0,
    mask: Optional[bytes] = None,
    length_size: Optional[int] = None,
) -> bytes:
    """Encode a whole frame; see :func:`raw_header`."""
    head = raw_header(opcode, len(payload), fin, rsv, mask, length_size)
    return head + (payload if mask is None else naive_mask(payload, mask))


def split(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    """Cut ``data`` at the given offsets (clamped and sorted)."""
    points = sorted(min(max(c, 0), len(data)) for c in cuts)
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


def outcome(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, ...]:
    """``("ok", result)``, or the exception: its type, and for a FrameError
    its code, reason and frames."""
    try:
        return ("ok", fn(*args, **kwargs))
    except FrameError as exc:
        return ("FrameError", exc.code, exc.reason, list(exc.frames))
    except Exception as exc:  # noqa: BLE001 - the type is what is compared
        return ("raised", type(exc))


def reader_trace(
    codec: ModuleType,
    chunks: Sequence[bytes],
    max_frame_size: Optional[int],
    expect_masked: Optional[bool],
    starts: Sequence[int] = (0,),
    max_compressed_frame_size: Optional[int] = None,
) -> list[tuple[Any, ...]]:
    """Feed ``chunks`` to a FrameReader; record everything observable after each."""
    reader = codec.FrameReader(
        max_frame_size=max_frame_size,
        expect_masked=expect_masked,
        max_compressed_frame_size=max_compressed_frame_size,
    )
    trace: list[tuple[Any, ...]] = [("limits", reader.max_frame_size, reader.max_compressed_frame_size)]
    for chunk in chunks:
        result = outcome(reader.feed, chunk)
        trace.append((result, reader.buffered, [reader.partial(s) for s in starts]))
    return trace


class RecordingSink:
    """A ``feed_dispatch`` sink that records what it gets; it raises
    ``RuntimeError`` on its ``raise_at``-th delivery (counting from 0)."""

    def __init__(self, raise_at: Optional[int] = None) -> None:
        self.got: list[tuple[str, Any]] = []
        self.raise_at = raise_at
        self.count = 0

    def _take(self, kind: str, data: Any) -> None:
        self.count += 1
        if self.count - 1 == self.raise_at:
            self.got.append(("raised", kind))
            raise RuntimeError("sink failed")
        self.got.append((kind, data))

    def on_binary(self, data: bytes) -> None:
        self._take("binary", data)

    def on_text(self, data: str) -> None:
        self._take("text", data)


def dispatch_trace(
    codec: ModuleType,
    chunks: Sequence[bytes],
    max_frame_size: Optional[int],
    expect_masked: Optional[bool],
    text: bool,
    raise_at: Optional[int] = None,
) -> list[tuple[Any, ...]]:
    """Feed ``chunks`` to ``FrameReader.feed_dispatch``; record what the sink
    got and everything observable after each chunk."""
    reader = codec.FrameReader(max_frame_size=max_frame_size, expect_masked=expect_masked)
    sink = RecordingSink(raise_at)
    trace: list[tuple[Any, ...]] = []
    for chunk in chunks:
        result = outcome(reader.feed_dispatch, chunk, sink, text)
        trace.append((result, list(sink.got), reader.buffered, reader.partial(0)))
        sink.got.clear()
    return trace


def validator_trace(codec: ModuleType, chunks: Sequence[bytes]) -> list[tuple[Any, ...]]:
    """Feed ``chunks`` to a Utf8Validator; record everything observable after each."""
    validator = codec.Utf8Validator()
    trace: list[tuple[Any, ...]] = []
    for chunk in chunks:
        result = validator.feed(chunk)
        trace.append((result, validator.valid, validator.complete, validator.position))
    return trace


def assert_same(fallback_result: Any, speedups_result: Any) -> None:
    """Equal, and equal in repr too, so that True == 1 or bytes == bytearray
    cannot hide a difference of type."""
    assert speedups_result == fallback_result
    assert repr(speedups_result) == repr(fallback_result)
