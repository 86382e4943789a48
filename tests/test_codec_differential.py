"""Differential tests: ``wsfast._speedups`` must behave exactly like ``wsfast._fallback``.

Hypothesis draws the inputs; both implementations get the same ones and must
give the same results, raise the same exceptions (FrameError with the same
code, reason and frames) and leave the same observable state. Every test
takes the ``impls`` fixture, so the module is skipped when the extension is
not compiled (and fails when ``WSFAST_REQUIRE_SPEEDUPS=1``).
"""

from __future__ import annotations

import random
import string
from typing import Optional

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .codec_helpers import (
    CONTROL_OPCODES,
    KNOWN_OPCODES,
    UTF8_FAULTS,
    Impls,
    assert_same,
    dispatch_trace,
    outcome,
    raw_frame,
    reader_trace,
    split,
    validator_trace,
)
from .protocol_trace import check_chunking_invariance

DIFFERENTIAL = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

masks = st.binary(min_size=4, max_size=4)
payloads = st.binary(max_size=300)


@st.composite
def buffers(draw: st.DrawFn, data: bytes) -> object:
    """``data`` as bytes, a bytearray, or a memoryview at an odd offset."""
    kind = draw(st.sampled_from(["bytes", "bytearray", "slice"]))
    if kind == "bytes":
        return data
    if kind == "bytearray":
        return bytearray(data)
    offset = draw(st.integers(1, 3))
    return memoryview(b"\x00" * offset + data)[offset:]


@st.composite
def chunkings(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """``data`` cut at random points (possibly none, possibly empty pieces)."""
    cuts = draw(st.lists(st.integers(0, len(data)), max_size=8))
    return split(data, cuts)


@st.composite
def frames(draw: st.DrawFn) -> tuple[bytes, int]:
    """One valid frame and its payload length: any opcode, flags, payload and
    mask, sometimes with a longer length encoding than needed."""
    opcode = draw(st.sampled_from(KNOWN_OPCODES))
    control = opcode in CONTROL_OPCODES
    fin = True if control else draw(st.booleans())
    rsv = draw(st.integers(0, 7))
    payload = draw(st.binary(max_size=125) if control else payloads)
    mask = draw(st.none() | masks)
    length_size = draw(st.sampled_from([None, None, None, 2, 8]))
    if control and length_size is not None:
        length_size = None
    return raw_frame(opcode, payload, fin, rsv, mask, length_size), len(payload)


def max_frame_sizes(lengths: list[int]) -> st.SearchStrategy[Optional[int]]:
    """No limit, any limit, or one right at the size of a frame of the stream."""
    near = [n + d for n in lengths for d in (-1, 0, 1) if n + d >= 0]
    return st.none() | st.integers(0, 400) | st.sampled_from(near or [0])


expect_maskeds = st.sampled_from([None, True, False])
partial_starts = st.lists(st.integers(0, 320), min_size=1, max_size=3)


# ---------------------------------------------------------------- masking


@DIFFERENTIAL
@given(data=st.data(), payload=st.binary(max_size=2000), mask=masks)
def test_apply_mask(impls: Impls, data: st.DataObject, payload: bytes, mask: bytes) -> None:
    buffer = data.draw(buffers(payload))
    assert_same(impls.fallback.apply_mask(buffer, mask), impls.speedups.apply_mask(buffer, mask))


@DIFFERENTIAL
@given(payload=st.binary(max_size=40), mask=st.binary(max_size=6))
def test_apply_mask_any_mask(impls: Impls, payload: bytes, mask: bytes) -> None:
    assert_same(
        outcome(impls.fallback.apply_mask, payload, mask),
        outcome(impls.speedups.apply_mask, payload, mask),
    )


@DIFFERENTIAL
@given(
    payload=st.binary(max_size=2000),
    mask=st.binary(min_size=3, max_size=5),
    start=st.integers(-2, 2002),
    phase=st.integers(-1, 4),
)
def test_mask_inplace(impls: Impls, payload: bytes, mask: bytes, start: int, phase: int) -> None:
    results = []
    for codec in impls:
        buffer = bytearray(payload)
        results.append((outcome(codec.mask_inplace, buffer, mask, start, phase), buffer))
    assert_same(*results)


# ---------------------------------------------------------------- headers

header_bytes = st.binary(max_size=20) | st.builds(
    lambda frame, tail: frame[0][:14] + tail, frames(), st.binary(max_size=4)
)


@DIFFERENTIAL
@given(data=st.data(), header=header_bytes)
def test_parse_header(impls: Impls, data: st.DataObject, header: bytes) -> None:
    offset = data.draw(st.integers(-1, len(header) + 2))
    assert_same(
        outcome(impls.fallback.parse_header, header, offset),
        outcome(impls.speedups.parse_header, header, offset),
    )


@DIFFERENTIAL
@given(
    opcode=st.sampled_from(KNOWN_OPCODES),
    fin=st.booleans(),
    rsv=st.integers(0, 7),
    payload=payloads,
    mask=st.sampled_from([None, False, b"\x00\x00\x00\x00", b"\x37\xfa\x21\x3d", b"\xff" * 4]),
)
def test_build_frame_valid(
    impls: Impls, opcode: int, fin: bool, rsv: int, payload: bytes, mask: Optional[bytes]
) -> None:
    if opcode in CONTROL_OPCODES:
        fin, payload = True, payload[:125]
    results = [codec.build_frame(opcode, payload, fin, rsv, mask) for codec in impls]
    assert_same(*results)
    header_mask = None if mask is False else mask
    headers = [codec.build_header(opcode, len(payload), fin, rsv, header_mask) for codec in impls]
    assert_same(*headers)


@DIFFERENTIAL
@given(
    opcode=st.integers(-2, 17),
    length=st.integers(-2, 300) | st.integers(2**63 - 2, 2**63 + 1),
    fin=st.booleans(),
    rsv=st.integers(-2, 9),
    mask=st.none() | st.binary(max_size=5),
)
def test_build_any_arguments(
    impls: Impls, opcode: int, length: int, fin: bool, rsv: int, mask: Optional[bytes]
) -> None:
    assert_same(
        outcome(impls.fallback.build_header, opcode, length, fin, rsv, mask),
        outcome(impls.speedups.build_header, opcode, length, fin, rsv, mask),
    )
    payload = b"x" * max(0, min(length, 300))
    assert_same(
        outcome(impls.fallback.build_frame, opcode, payload, fin, rsv, mask),
        outcome(impls.speedups.build_frame, opcode, payload, fin, rsv, mask),
    )


# ---------------------------------------------------------------- FrameReader


@DIFFERENTIAL
@given(
    data=st.data(),
    stream=st.lists(frames(), max_size=8),
    tail=st.sampled_from([b"", b"", b"\x83\x00", b"\x09\x00", b"\x89\x7e"]) | st.binary(max_size=6),
    expect_masked=expect_maskeds,
    starts=partial_starts,
)
def test_reader_valid_streams(
    impls: Impls,
    data: st.DataObject,
    stream: list[tuple[bytes, int]],
    tail: bytes,
    expect_masked: Optional[bool],
    starts: list[int],
) -> None:
    max_frame_size = data.draw(max_frame_sizes([length for _, length in stream]))
    chunks = data.draw(chunkings(b"".join(wire for wire, _ in stream) + tail))
    assert_same(
        reader_trace(impls.fallback, chunks, max_frame_size, expect_masked, starts),
        reader_trace(impls.speedups, chunks, max_frame_size, expect_masked, starts),
    )


@st.composite
def corrupted_streams(draw: st.DrawFn) -> bytes:
    wires = [wire for wire, _ in draw(st.lists(frames(), min_size=1, max_size=4))]
    stream = bytearray(b"".join(wires))
    for _ in range(draw(st.integers(1, 3))):
        stream[draw(st.integers(0, len(stream) - 1))] = draw(st.integers(0, 255))
    return bytes(stream)


@DIFFERENTIAL
@given(
    data=st.data(),
    garbage=st.binary(max_size=300) | corrupted_streams(),
    # Bounded: garbage can announce frames of up to 2**63 - 1 bytes.
    max_frame_size=st.integers(0, 2**16),
    # The limit of RSV1 (compressed) frames, which garbage sets at random.
    max_compressed_frame_size=st.none() | st.integers(0, 2**16),
    expect_masked=expect_maskeds,
    starts=partial_starts,
)
def test_reader_garbage(
    impls: Impls,
    data: st.DataObject,
    garbage: bytes,
    max_frame_size: int,
    max_compressed_frame_size: Optional[int],
    expect_masked: Optional[bool],
    starts: list[int],
) -> None:
    chunks = data.draw(chunkings(garbage))
    assert_same(
        reader_trace(impls.fallback, chunks, max_frame_size, expect_masked, starts, max_compressed_frame_size),
        reader_trace(impls.speedups, chunks, max_frame_size, expect_masked, starts, max_compressed_frame_size),
    )


# ---------------------------------------------------------------- UTF-8


texts = st.one_of(
    st.text(max_size=20).map(str.encode),
    st.text(string.ascii_letters, min_size=14, max_size=40).map(str.encode),
    st.text(st.characters(min_codepoint=0x400, max_codepoint=0x4FF), max_size=20).map(str.encode),
    st.text(st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF), max_size=20).map(str.encode),
    st.text(st.characters(min_codepoint=0x1F300, max_codepoint=0x1FAFF), max_size=10).map(str.encode),
    st.binary(max_size=8),
    st.sampled_from(UTF8_FAULTS),
)
utf8_inputs = st.lists(texts, max_size=8).map(b"".join)


@DIFFERENTIAL
@given(data=st.data(), text=utf8_inputs)
def test_utf8_validator(impls: Impls, data: st.DataObject, text: bytes) -> None:
    chunks = data.draw(chunkings(text))
    assert_same(validator_trace(impls.fallback, chunks), validator_trace(impls.speedups, chunks))


@DIFFERENTIAL
@given(text=utf8_inputs)
def test_validate_utf8(impls: Impls, text: bytes) -> None:
    assert_same(impls.fallback.validate_utf8(text), impls.speedups.validate_utf8(text))


# ---------------------------------------------------------------- dispatch


@st.composite
def message_frames(draw: st.DrawFn) -> tuple[bytes, int]:
    """Mostly whole unmasked-or-masked data frames (what feed_dispatch
    delivers), text valid or not, now and then any other frame."""
    if draw(st.integers(0, 4)) == 0:
        return draw(frames())
    opcode = draw(st.sampled_from([0x1, 0x2]))
    payload = draw(utf8_inputs if opcode == 0x1 else payloads)
    mask = draw(st.none() | masks)
    return raw_frame(opcode, payload, True, 0, mask, None), len(payload)


@DIFFERENTIAL
@given(
    data=st.data(),
    stream=st.lists(message_frames(), max_size=8),
    tail=st.binary(max_size=4),
    expect_masked=expect_maskeds,
    text=st.booleans(),
    raise_at=st.none() | st.integers(0, 6),
)
def test_reader_dispatch(
    impls: Impls,
    data: st.DataObject,
    stream: list[tuple[bytes, int]],
    tail: bytes,
    expect_masked: Optional[bool],
    text: bool,
    raise_at: Optional[int],
) -> None:
    """feed_dispatch: the same deliveries, the same frames handed back, the
    same errors (the sink's included), in every chunking."""
    max_frame_size = data.draw(max_frame_sizes([length for _, length in stream]))
    chunks = data.draw(chunkings(b"".join(wire for wire, _ in stream) + tail))
    assert_same(
        dispatch_trace(impls.fallback, chunks, max_frame_size, expect_masked, text, raise_at),
        dispatch_trace(impls.speedups, chunks, max_frame_size, expect_masked, text, raise_at),
    )


# ---------------------------------------------------------------- the protocol on each codec


@settings(DIFFERENTIAL, max_examples=300)
@given(seed=st.integers(0, 2**64 - 1))
def test_connection_is_chunking_invariant_on_both_codecs(impls: Impls, seed: int) -> None:
    """A :class:`~wsfast.protocol.Connection` on either codec, fed a random
    stream (messages, fragments with control frames among them, compressed
    messages, and faults) whole and in random reads: the same events, the
    same frames to send, the same close code and reason. The long run is
    ``connection-chunking`` in ``test_codec_fuzz.py``."""
    check_chunking_invariance(impls, random.Random(seed))
