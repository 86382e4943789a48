"""Long differential fuzzing of ``wsfast._speedups`` against ``wsfast._fallback``.

The properties of ``test_codec_differential.py`` on over 10**5 inputs, drawn
from seeded :class:`random.Random` loops rather than Hypothesis so that they
run in a bounded time. Excluded by default; run with ``pytest -m fuzz``.

Case ``i`` uses the seed ``WSFAST_FUZZ_SEED + i`` (the base seed is random
unless the variable is set). A failure names the seed of its case: rerun with
``WSFAST_FUZZ_SEED=<that seed>`` and the failing case comes first.
"""

from __future__ import annotations

import os
import random
from typing import Callable, Optional

import pytest

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

pytestmark = pytest.mark.fuzz

BASE_SEED = int(os.environ.get("WSFAST_FUZZ_SEED") or random.SystemRandom().randrange(2**48))

Check = Callable[[Impls, random.Random], None]


def fuzz(impls: Impls, check: Check, cases: int) -> None:
    """Run ``check`` on ``cases`` seeded random inputs."""
    for i in range(cases):
        seed = BASE_SEED + i
        try:
            check(impls, random.Random(seed))
        except Exception as exc:
            raise AssertionError(
                f"{check.__name__} failed on case {i}, seed {seed}: rerun with WSFAST_FUZZ_SEED={seed}"
            ) from exc


# ---------------------------------------------------------------- random inputs


def size(rng: random.Random, limit: int) -> int:
    """A size up to ``limit``, small ones and the edges of the length forms often."""
    kind = rng.random()
    if kind < 0.4:
        return rng.randint(0, 8)
    if kind < 0.6:
        return min(limit, rng.choice([15, 16, 17, 31, 32, 33, 63, 64, 65, 125, 126, 127]))
    return rng.randint(0, limit)


def some_bytes(rng: random.Random, limit: int) -> bytes:
    return rng.randbytes(size(rng, limit))


def buffer_of(rng: random.Random, data: bytes) -> object:
    kind = rng.randrange(3)
    if kind == 0:
        return data
    if kind == 1:
        return bytearray(data)
    offset = rng.randint(1, 3)
    return memoryview(b"\x00" * offset + data)[offset:]


def chunks_of(rng: random.Random, data: bytes) -> list[bytes]:
    if rng.random() < 0.1:
        return [data[i : i + 1] for i in range(len(data))]
    return split(data, [rng.randint(0, len(data)) for _ in range(rng.randint(0, 8))])


def random_frame(rng: random.Random) -> tuple[bytes, int]:
    """A valid frame and its payload length."""
    opcode = rng.choice(KNOWN_OPCODES)
    control = opcode in CONTROL_OPCODES
    fin = True if control else rng.random() < 0.7
    rsv = rng.randint(0, 7) if rng.random() < 0.3 else 0
    payload = rng.randbytes(size(rng, 125 if control else 400))
    mask = rng.randbytes(4) if rng.random() < 0.5 else None
    length_size = None if control or rng.random() < 0.9 else rng.choice([2, 8])
    return raw_frame(opcode, payload, fin, rsv, mask, length_size), len(payload)


def random_stream(rng: random.Random, limit: int = 8) -> tuple[bytes, list[int]]:
    """Valid frames one after the other, and their payload lengths."""
    frames = [random_frame(rng) for _ in range(rng.randint(0, limit))]
    return b"".join(wire for wire, _ in frames), [length for _, length in frames]


SCRIPTS = [(0x20, 0x7E), (0x80, 0x7FF), (0x400, 0x4FF), (0x4E00, 0x9FFF), (0xE000, 0xFFFF)]
SCRIPTS += [(0x1F300, 0x1FAFF), (0x10000, 0x10FFFF)]


def random_text(rng: random.Random) -> bytes:
    """Pieces of text in various scripts, with random bytes and faults among them."""
    pieces = []
    for _ in range(rng.randint(0, 6)):
        kind = rng.random()
        if kind < 0.6:
            low, high = rng.choice(SCRIPTS)
            count = size(rng, 40)
            pieces.append("".join(chr(rng.randint(low, high)) for _ in range(count)).encode())
        elif kind < 0.8:
            pieces.append(rng.randbytes(rng.randint(1, 4)))
        else:
            pieces.append(rng.choice(UTF8_FAULTS))
    return b"".join(pieces)


# ---------------------------------------------------------------- checks


def check_masking(impls: Impls, rng: random.Random) -> None:
    data = some_bytes(rng, 3000)
    mask = rng.randbytes(4) if rng.random() < 0.95 else rng.randbytes(rng.randint(0, 6))
    buffer = buffer_of(rng, data)
    assert_same(
        outcome(impls.fallback.apply_mask, buffer, mask),
        outcome(impls.speedups.apply_mask, buffer, mask),
    )
    start = rng.randint(0, len(data)) if rng.random() < 0.95 else rng.randint(-2, len(data) + 2)
    phase = rng.randint(0, 3) if rng.random() < 0.95 else rng.randint(-1, 4)
    results = []
    for codec in impls:
        target = bytearray(data)
        results.append((outcome(codec.mask_inplace, target, mask, start, phase), target))
    assert_same(*results)


def check_parse_header(impls: Impls, rng: random.Random) -> None:
    if rng.random() < 0.5:
        data = rng.randbytes(rng.randint(0, 20))
    else:
        data = random_frame(rng)[0][: rng.randint(0, 16)] + rng.randbytes(rng.randint(0, 3))
    offset = rng.randint(-1, len(data) + 2) if rng.random() < 0.3 else rng.randint(0, 3)
    assert_same(
        outcome(impls.fallback.parse_header, data, offset),
        outcome(impls.speedups.parse_header, data, offset),
    )


def check_build(impls: Impls, rng: random.Random) -> None:
    valid = rng.random() < 0.8
    opcode = rng.choice(KNOWN_OPCODES) if valid else rng.randint(-1, 16)
    fin = True if valid and opcode in CONTROL_OPCODES else rng.random() < 0.7
    rsv = rng.randint(0, 7) if valid else rng.randint(-1, 8)
    limit = 125 if valid and opcode in CONTROL_OPCODES else 400
    payload = buffer_of(rng, rng.randbytes(size(rng, limit)))
    # Not True: a fresh random key from mask_key() could not be compared.
    mask = rng.choice([None, False, rng.randbytes(4), rng.randbytes(rng.randint(0, 6))])
    assert_same(
        outcome(impls.fallback.build_frame, opcode, payload, fin, rsv, mask),
        outcome(impls.speedups.build_frame, opcode, payload, fin, rsv, mask),
    )
    length = size(rng, 70000) if valid else rng.choice([-1, 2**63 - 1, 2**63, rng.randint(0, 300)])
    header_mask = None if mask is False else mask
    assert_same(
        outcome(impls.fallback.build_header, opcode, length, fin, rsv, header_mask),
        outcome(impls.speedups.build_header, opcode, length, fin, rsv, header_mask),
    )


def reader_settings(rng: random.Random, lengths: list[int], unbounded: bool) -> tuple[Optional[int], Optional[bool]]:
    """``max_frame_size``: none, any, or right at the length of a frame of the stream."""
    kind = rng.random()
    if kind < 0.25 and unbounded:
        max_frame_size = None
    elif kind < 0.5 and lengths:
        max_frame_size = max(0, rng.choice(lengths) + rng.randint(-1, 1))
    elif kind < 0.75:
        max_frame_size = rng.randint(0, 400)
    else:
        max_frame_size = rng.choice([0, 125, 126, 2**16, 2**20])
    return max_frame_size, rng.choice([None, True, False])


def check_reader_valid_stream(impls: Impls, rng: random.Random) -> None:
    stream, lengths = random_stream(rng)
    if rng.random() < 0.3:
        stream += rng.choice([b"\x83\x00", b"\x09\x00", b"\x89\x7e", rng.randbytes(4)])
    chunks = chunks_of(rng, stream)
    max_frame_size, expect_masked = reader_settings(rng, lengths, unbounded=True)
    starts = [rng.randint(0, 420) for _ in range(2)]
    assert_same(
        reader_trace(impls.fallback, chunks, max_frame_size, expect_masked, starts),
        reader_trace(impls.speedups, chunks, max_frame_size, expect_masked, starts),
    )


def check_reader_garbage(impls: Impls, rng: random.Random) -> None:
    if rng.random() < 0.5:
        garbage, lengths = some_bytes(rng, 300), []
    else:
        stream, lengths = random_stream(rng, 4)
        corrupted = bytearray(stream or b"\x00")
        for _ in range(rng.randint(1, 3)):
            corrupted[rng.randrange(len(corrupted))] = rng.randrange(256)
        garbage = bytes(corrupted)
    chunks = chunks_of(rng, garbage)
    # Bounded: garbage can announce frames of up to 2**63 - 1 bytes.
    max_frame_size, expect_masked = reader_settings(rng, lengths, unbounded=False)
    starts = [rng.randint(0, 300)]
    assert_same(
        reader_trace(impls.fallback, chunks, max_frame_size, expect_masked, starts),
        reader_trace(impls.speedups, chunks, max_frame_size, expect_masked, starts),
    )


def check_reader_dispatch(impls: Impls, rng: random.Random) -> None:
    """feed_dispatch over valid streams (text valid or not) and garbage, with
    a sink that may fail."""
    if rng.random() < 0.2:
        stream, lengths = some_bytes(rng, 300), []
    else:
        wires, lengths = [], []
        for _ in range(rng.randint(0, 8)):
            kind = rng.random()
            if kind < 0.75:  # mostly whole messages, which the sink gets
                text = kind < 0.35
                payload = random_text(rng) if text else rng.randbytes(size(rng, 300))
                mask = rng.randbytes(4) if rng.random() < 0.7 else None
                wire, length = raw_frame(0x1 if text else 0x2, payload, True, 0, mask), len(payload)
            else:
                wire, length = random_frame(rng)
            wires.append(wire)
            lengths.append(length)
        stream = b"".join(wires)
    chunks = chunks_of(rng, stream)
    max_frame_size, expect_masked = reader_settings(rng, lengths, unbounded=False)
    text_too = rng.random() < 0.7
    raise_at = rng.choice([None, None, 0, 1, 2, 5])
    assert_same(
        dispatch_trace(impls.fallback, chunks, max_frame_size, expect_masked, text_too, raise_at),
        dispatch_trace(impls.speedups, chunks, max_frame_size, expect_masked, text_too, raise_at),
    )


def check_utf8(impls: Impls, rng: random.Random) -> None:
    text = random_text(rng)
    chunks = chunks_of(rng, text)
    assert_same(validator_trace(impls.fallback, chunks), validator_trace(impls.speedups, chunks))
    assert_same(impls.fallback.validate_utf8(text), impls.speedups.validate_utf8(text))


def check_connection_chunking(impls: Impls, rng: random.Random) -> None:
    """The protocol on both codecs: whole and chunked, the same outcome."""
    check_chunking_invariance(impls, rng)


# 530,000 cases in all.
@pytest.mark.parametrize(
    ("check", "cases"),
    [
        pytest.param(check_masking, 80_000, id="masking"),
        pytest.param(check_parse_header, 100_000, id="parse_header"),
        pytest.param(check_build, 50_000, id="build"),
        pytest.param(check_reader_valid_stream, 50_000, id="reader-valid-streams"),
        pytest.param(check_reader_garbage, 50_000, id="reader-garbage"),
        pytest.param(check_reader_dispatch, 40_000, id="reader-dispatch"),
        pytest.param(check_utf8, 100_000, id="utf8"),
        pytest.param(check_connection_chunking, 60_000, id="connection-chunking"),
    ],
)
def test_fuzz(impls: Impls, check: Check, cases: int) -> None:
    fuzz(impls, check, cases)
