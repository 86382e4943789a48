"""Random WebSocket byte streams, and what :class:`wsfast.protocol.Connection`
makes of them with either codec, for the chunking-invariance tests.

The same bytes must give the same events, the same bytes to send and the
same close code however they are split into reads, and both codecs must give
the same results. :func:`random_case` draws a stream (valid messages,
fragmented ones with control frames among the fragments, compressed ones,
and faults: invalid UTF-8, RSV bits, frames out of sequence, masking
mistakes, messages over the size limit, garbage) and a configuration;
:func:`connection_trace` runs it through a connection built on a given
codec.
"""

from __future__ import annotations

import contextlib
import random
import zlib
from types import ModuleType
from typing import Any, Iterator, NamedTuple, Optional, Sequence

import wsfast.protocol as protocol
from wsfast import _fallback
from wsfast.events import BinaryMessage, Fragment, TextMessage
from wsfast.extensions.permessage_deflate import Deflate
from wsfast.protocol import Connection, Role

from .codec_helpers import UTF8_FAULTS, raw_frame, split

_PATCHED = ("FrameReader", "Utf8Validator", "validate_utf8", "build_frame", "build_header")


@contextlib.contextmanager
def codec_in_use(codec: ModuleType) -> Iterator[None]:
    """Make :mod:`wsfast.protocol` use ``codec`` (``wsfast._fallback`` or
    ``wsfast._speedups``) for as long as the block runs."""
    saved = {name: getattr(protocol, name) for name in _PATCHED}
    try:
        for name in _PATCHED:
            setattr(protocol, name, getattr(codec, name))
        yield
    finally:
        for name, value in saved.items():
            setattr(protocol, name, value)


class Case(NamedTuple):
    """A byte stream and the connection settings to read it with."""

    stream: bytes
    role: Role
    max_message_size: Optional[int]
    deflate: bool
    text_as_bytes: bool
    stream_messages: bool
    sink: bool


class _Sink:
    """Records the messages it gets as the events they would have been."""

    def __init__(self, timeline: list[Any]) -> None:
        self.timeline = timeline

    def on_text(self, data: Any) -> None:
        self.timeline.append(TextMessage(data))

    def on_binary(self, data: bytes) -> None:
        self.timeline.append(BinaryMessage(data))

    def on_fragment(self, data: Any, text: bool, fin: bool) -> None:
        self.timeline.append(Fragment(data, text, fin))


def connection_trace(codec: ModuleType, case: Case, chunks: Sequence[bytes]) -> tuple[Any, ...]:
    """Feed ``chunks`` to a connection on ``codec``; return what it did:
    every event (messages given to a sink included, in order), the frames it
    queued to send, why it failed, the close frames and its state."""
    timeline: list[Any] = []
    out: list[bytes] = []
    with codec_in_use(codec):
        conn = Connection(
            case.role,
            max_message_size=case.max_message_size,
            deflate=Deflate(compress_bits=15, decompress_bits=15) if case.deflate else None,
            text_as_bytes=case.text_as_bytes,
            stream_messages=case.stream_messages,
        )
        if case.sink:
            conn.sink = _Sink(timeline)
        for chunk in chunks:
            timeline += conn.receive_data(chunk)
            out.append(conn.data_to_send())
    failure = conn.failure
    return (
        timeline,
        # Unmasked: a client's keys are random.
        _fallback.FrameReader(None).feed(b"".join(out)),
        None if failure is None else (type(failure).__name__, getattr(failure, "code", None), str(failure)),
        conn.close_sent,
        conn.close_received,
        conn.state,
    )


# ---------------------------------------------------------------- random streams


def _text(rng: random.Random) -> bytes:
    pieces = []
    for _ in range(rng.randint(0, 4)):
        kind = rng.random()
        if kind < 0.7:
            low, high = rng.choice([(0x20, 0x7E), (0x80, 0x7FF), (0x4E00, 0x9FFF), (0x1F300, 0x1FAFF)])
            pieces.append("".join(chr(rng.randint(low, high)) for _ in range(rng.randint(0, 12))).encode())
        elif kind < 0.85:
            pieces.append(rng.choice(UTF8_FAULTS))
        else:
            pieces.append(rng.randbytes(rng.randint(1, 3)))
    return b"".join(pieces)


def _cut(rng: random.Random, data: bytes, count: int) -> list[bytes]:
    return split(data, [rng.randint(0, len(data)) for _ in range(count - 1)])


class _Writer:
    """Writes frames as one end of a connection would, with faults now and then."""

    def __init__(self, rng: random.Random, masked: bool, deflate: bool) -> None:
        self.rng = rng
        self.masked = masked
        self.compressor = zlib.compressobj(6, zlib.DEFLATED, -15) if deflate else None
        self.frames: list[bytes] = []

    def frame(self, opcode: int, payload: bytes, fin: bool = True, rsv: int = 0) -> None:
        rng = self.rng
        masked = self.masked if rng.random() < 0.97 else not self.masked
        if rng.random() < 0.02:
            rsv ^= 1 << rng.randrange(3)
        if rng.random() < 0.01:
            opcode = rng.choice([0x0, 0x1, 0x2, 0x3, 0xB])
        self.frames.append(raw_frame(opcode, payload, fin, rsv, rng.randbytes(4) if masked else None))

    def control(self) -> None:
        rng = self.rng
        self.frame(rng.choice([0x9, 0xA]), rng.randbytes(rng.randint(0, 8)))

    def message(self) -> None:
        rng = self.rng
        text = rng.random() < 0.6
        payload = _text(rng) if text else rng.randbytes(rng.choice([0, 1, 5, 40, 200]))
        if rng.random() < 0.15:  # a long one, to cross size limits
            payload *= rng.randint(2, 20)
        rsv = 0
        if self.compressor is not None and rng.random() < 0.5:
            compressed = self.compressor.compress(payload) + self.compressor.flush(zlib.Z_SYNC_FLUSH)
            payload, rsv = compressed[:-4], 4
        count = 1 if rng.random() < 0.5 else rng.randint(2, 6)
        pieces = _cut(rng, payload, count)
        for index, piece in enumerate(pieces):
            fin = index == len(pieces) - 1
            opcode = (0x1 if text else 0x2) if index == 0 else 0x0
            self.frame(opcode, piece, fin, rsv if index == 0 else 0)
            if not fin and rng.random() < 0.3:
                self.control()

    def close(self) -> None:
        rng = self.rng
        kind = rng.random()
        if kind < 0.3:
            payload = b""
        elif kind < 0.8:
            payload = rng.choice([1000, 1001, 1002, 1007, 1009, 3000, 4999]).to_bytes(2, "big") + _text(rng)[:20]
        else:
            payload = rng.randbytes(rng.randint(1, 6))
        self.frame(0x8, payload)


def random_case(rng: random.Random) -> Case:
    """A random stream and the settings to read it with."""
    role = rng.choice([Role.SERVER, Role.CLIENT])
    deflate = rng.random() < 0.4
    writer = _Writer(rng, masked=role is Role.SERVER, deflate=deflate)
    for _ in range(rng.randint(1, 8)):
        kind = rng.random()
        if kind < 0.65:
            writer.message()
        elif kind < 0.8:
            writer.control()
        elif kind < 0.85:
            writer.close()
        elif kind < 0.92:  # a fragment out of sequence
            writer.frame(rng.choice([0x0, 0x1, 0x2]), _text(rng), rng.random() < 0.5)
        else:
            writer.frames.append(rng.randbytes(rng.randint(1, 6)))
    stream = b"".join(writer.frames)
    if rng.random() < 0.2:  # cut short: a frame left incomplete
        stream = stream[: rng.randint(0, len(stream))]
    return Case(
        stream=stream,
        role=role,
        max_message_size=rng.choice([None, None, 0, 1, 8, 20, 64, 150, 400, 2000]),
        deflate=deflate,
        text_as_bytes=rng.random() < 0.3,
        stream_messages=rng.random() < 0.2,
        sink=rng.random() < 0.4,
    )


def random_chunks(rng: random.Random, data: bytes) -> list[bytes]:
    """``data`` in random reads: byte by byte now and then."""
    if rng.random() < 0.1:
        return [data[i : i + 1] for i in range(len(data))]
    return split(data, [rng.randint(0, len(data)) for _ in range(rng.randint(1, 10))])


def check_chunking_invariance(impls: Any, rng: random.Random) -> None:
    """The same bytes, whole and in random reads, give the same trace, in
    both codecs."""
    case = random_case(rng)
    chunks = random_chunks(rng, case.stream)
    whole = connection_trace(impls.fallback, case, [case.stream])
    assert connection_trace(impls.fallback, case, chunks) == whole, case
    assert connection_trace(impls.speedups, case, [case.stream]) == whole, case
    assert connection_trace(impls.speedups, case, chunks) == whole, case
