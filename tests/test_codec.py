"""Tests of the frame codec (:mod:`wsfast.codec`), run on each implementation.

The ``codec`` fixture (see ``conftest.py``) is ``wsfast._fallback`` and then
``wsfast._speedups``. Expected values come from RFC 6455 and RFC 3629 and from
the reference encoders in ``codec_helpers.py``, never from the codec itself.
"""

from __future__ import annotations

import array
import gc
import itertools
import random
import weakref
from types import ModuleType
from typing import Any, Callable, NamedTuple, Optional

import pytest

from wsfast.exceptions import FrameError, WebSocketError

from .codec_helpers import (
    CONTROL_OPCODES,
    KNOWN_OPCODES,
    RESERVED_OPCODES,
    Frame,
    RecordingSink,
    naive_mask,
    raw_frame,
    raw_header,
    split,
)

KEY = bytes.fromhex("37fa213d")  # the key of the examples in RFC 6455 section 5.7
KEY2 = bytes.fromhex("a1b2c3d4")
BLOCK_256 = bytes(range(256))
BLOCK_64K = BLOCK_256 * 256

BufferMaker = Callable[[bytes], Any]


def random_bytes(size: int, seed: int = 0) -> bytes:
    return random.Random(size * 1000 + seed).randbytes(size)


# ---------------------------------------------------------------- constants


def test_opcode_constants(codec: ModuleType) -> None:
    assert (codec.OP_CONT, codec.OP_TEXT, codec.OP_BINARY) == (0x0, 0x1, 0x2)
    assert (codec.OP_CLOSE, codec.OP_PING, codec.OP_PONG) == (0x8, 0x9, 0xA)


# ---------------------------------------------------------------- RFC 6455 section 5.7


class Example(NamedTuple):
    opcode: int
    fin: bool
    payload: bytes
    mask: Optional[bytes]
    wire: bytes


RFC_EXAMPLES = [
    pytest.param(Example(0x1, True, b"Hello", None, bytes.fromhex("810548656c6c6f")), id="text-unmasked"),
    pytest.param(
        Example(0x1, True, b"Hello", KEY, bytes.fromhex("818537fa213d7f9f4d5158")),
        id="text-masked",
    ),
    pytest.param(Example(0x1, False, b"Hel", None, bytes.fromhex("010348656c")), id="fragment-first"),
    pytest.param(Example(0x0, True, b"lo", None, bytes.fromhex("80026c6f")), id="fragment-last"),
    pytest.param(Example(0x9, True, b"Hello", None, bytes.fromhex("890548656c6c6f")), id="ping-unmasked"),
    pytest.param(
        Example(0xA, True, b"Hello", KEY, bytes.fromhex("8a8537fa213d7f9f4d5158")),
        id="pong-masked",
    ),
    pytest.param(
        Example(0x2, True, BLOCK_256, None, bytes.fromhex("827e0100") + BLOCK_256),
        id="binary-256",
    ),
    pytest.param(
        Example(0x2, True, BLOCK_64K, None, bytes.fromhex("827f0000000000010000") + BLOCK_64K),
        id="binary-64k",
    ),
]


@pytest.mark.parametrize("example", RFC_EXAMPLES)
def test_rfc_example_build_frame(codec: ModuleType, example: Example) -> None:
    frame = codec.build_frame(example.opcode, example.payload, fin=example.fin, mask=example.mask)
    assert type(frame) is bytes
    assert frame == example.wire


@pytest.mark.parametrize("example", RFC_EXAMPLES)
def test_rfc_example_build_header(codec: ModuleType, example: Example) -> None:
    header_length = len(example.wire) - len(example.payload)
    header = codec.build_header(example.opcode, len(example.payload), fin=example.fin, mask=example.mask)
    assert header == example.wire[:header_length]


@pytest.mark.parametrize("example", RFC_EXAMPLES)
def test_rfc_example_parse_header(codec: ModuleType, example: Example) -> None:
    header_length = len(example.wire) - len(example.payload)
    expected = (example.opcode, example.fin, 0, len(example.payload), example.mask, header_length)
    assert codec.parse_header(example.wire) == expected


@pytest.mark.parametrize("example", RFC_EXAMPLES)
def test_rfc_example_frame_reader(codec: ModuleType, example: Example) -> None:
    reader = codec.FrameReader(max_frame_size=None)
    assert reader.feed(example.wire) == [(example.opcode, example.fin, 0, example.payload)]
    assert reader.buffered == 0
    assert reader.partial() is None


def test_rfc_fragmented_message(codec: ModuleType) -> None:
    stream = bytes.fromhex("010348656c") + bytes.fromhex("80026c6f")
    frames = codec.FrameReader().feed(stream)
    assert frames == [(0x1, False, 0, b"Hel"), (0x0, True, 0, b"lo")]


# ---------------------------------------------------------------- apply_mask

MASK_SIZES = [0, 1, 3, 4, 5, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 125, 126]
MASK_SIZES += [1023, 1024, 1025, 65535, 65536]

BUFFER_TYPES: list = [
    pytest.param(bytes, id="bytes"),
    pytest.param(bytearray, id="bytearray"),
    pytest.param(lambda b: memoryview(b), id="memoryview"),
    pytest.param(lambda b: array.array("B", b), id="array-B"),
]


@pytest.mark.parametrize("size", MASK_SIZES)
def test_apply_mask_matches_reference(codec: ModuleType, size: int) -> None:
    data = random_bytes(size)
    masked = codec.apply_mask(data, KEY2)
    assert type(masked) is bytes
    assert masked == naive_mask(data, KEY2)
    assert codec.apply_mask(masked, KEY2) == data


@pytest.mark.parametrize("offset", [1, 2, 3])
@pytest.mark.parametrize("size", MASK_SIZES)
def test_apply_mask_unaligned(codec: ModuleType, size: int, offset: int) -> None:
    backing = bytearray(random_bytes(size + 8, seed=offset))
    original = bytes(backing)
    data = memoryview(backing)[offset : offset + size]
    mask = memoryview(b"\x00" * offset + KEY2)[offset:]
    assert codec.apply_mask(data, mask) == naive_mask(original[offset : offset + size], KEY2)
    assert backing == original  # the input is left alone


@pytest.mark.parametrize("make", BUFFER_TYPES)
def test_apply_mask_buffer_types(codec: ModuleType, make: BufferMaker) -> None:
    data = random_bytes(40)
    expected = naive_mask(data, KEY)
    assert codec.apply_mask(make(data), KEY) == expected
    assert codec.apply_mask(data, make(KEY)) == expected


def test_apply_mask_multibyte_items(codec: ModuleType) -> None:
    # Buffers of wider items are masked as their raw bytes.
    words = array.array("I", range(10))
    assert codec.apply_mask(words, KEY) == naive_mask(words.tobytes(), KEY)
    matrix = memoryview(random_bytes(16)).cast("B", (4, 4))
    assert codec.apply_mask(matrix, KEY) == naive_mask(matrix.tobytes(), KEY)


@pytest.mark.parametrize("length", [0, 1, 3, 5, 8])
def test_apply_mask_rejects_wrong_mask_length(codec: ModuleType, length: int) -> None:
    with pytest.raises(ValueError):
        codec.apply_mask(b"payload", bytes(length))


@pytest.mark.parametrize("bad", ["text", 1234, None, [1, 2, 3, 4]], ids=repr)
def test_apply_mask_rejects_non_buffers(codec: ModuleType, bad: object) -> None:
    with pytest.raises(TypeError):
        codec.apply_mask(bad, KEY)
    with pytest.raises(TypeError):
        codec.apply_mask(b"payload", bad)


def test_apply_mask_rejects_non_contiguous(codec: ModuleType) -> None:
    with pytest.raises(BufferError):
        codec.apply_mask(memoryview(bytearray(32))[::2], KEY)


# ---------------------------------------------------------------- mask_inplace


@pytest.mark.parametrize("phase", [0, 1, 2, 3])
@pytest.mark.parametrize("start", [0, 1, 2, 3, 5, 17, 36, 37])
def test_mask_inplace_start_and_phase(codec: ModuleType, start: int, phase: int) -> None:
    data = random_bytes(37)
    buffer = bytearray(data)
    next_phase = codec.mask_inplace(buffer, KEY2, start, phase)
    assert buffer[:start] == data[:start]
    assert buffer[start:] == naive_mask(data[start:], KEY2, phase)
    assert next_phase == (phase + len(data) - start) % 4


def test_mask_inplace_defaults(codec: ModuleType) -> None:
    buffer = bytearray(b"Hello")
    assert codec.mask_inplace(buffer, KEY) == 1
    assert buffer == bytes.fromhex("7f9f4d5158")


def test_mask_inplace_piecewise_equals_one_shot(codec: ModuleType) -> None:
    data = random_bytes(29)
    expected = naive_mask(data, KEY2)
    for i, j in itertools.combinations_with_replacement(range(len(data) + 1), 2):
        pieces = split(data, (i, j))
        # A buffer that grows as the payload arrives, unmasked from `start`...
        growing = bytearray()
        phase = 0
        for piece in pieces:
            start = len(growing)
            growing += piece
            phase = codec.mask_inplace(growing, KEY2, start, phase)
        assert growing == expected, (i, j)
        # ... and each piece in a buffer of its own.
        unmasked = []
        phase = 0
        for piece in pieces:
            buffer = bytearray(piece)
            phase = codec.mask_inplace(buffer, KEY2, 0, phase)
            unmasked.append(bytes(buffer))
        assert b"".join(unmasked) == expected, (i, j)
        assert phase == len(data) % 4


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(bytearray, id="bytearray"),
        pytest.param(lambda b: memoryview(bytearray(b)), id="memoryview"),
        pytest.param(lambda b: array.array("B", b), id="array-B"),
    ],
)
def test_mask_inplace_buffer_types(codec: ModuleType, make: BufferMaker) -> None:
    data = random_bytes(40)
    buffer = make(data)
    assert codec.mask_inplace(buffer, KEY2, 3, 1) == 2
    assert bytes(buffer) == data[:3] + naive_mask(data[3:], KEY2, 1)


@pytest.mark.parametrize("offset", [1, 2, 3])
@pytest.mark.parametrize("size", [0, 1, 7, 16, 33, 65, 1025])
def test_mask_inplace_unaligned_slice(codec: ModuleType, size: int, offset: int) -> None:
    backing = bytearray(random_bytes(size + 8))
    original = bytes(backing)
    window = memoryview(backing)[offset : offset + size]
    assert codec.mask_inplace(window, KEY2, 0, 2) == (2 + size) % 4
    inside = naive_mask(original[offset : offset + size], KEY2, 2)
    assert backing == original[:offset] + inside + original[offset + size :]


@pytest.mark.parametrize(
    "make",
    [pytest.param(bytes, id="bytes"), pytest.param(lambda b: memoryview(b), id="memoryview-bytes")],
)
def test_mask_inplace_rejects_read_only(codec: ModuleType, make: BufferMaker) -> None:
    with pytest.raises(TypeError):
        codec.mask_inplace(make(b"payload"), KEY)


@pytest.mark.parametrize("bad", ["text", 1234, None], ids=repr)
def test_mask_inplace_rejects_non_buffers(codec: ModuleType, bad: object) -> None:
    with pytest.raises(TypeError):
        codec.mask_inplace(bad, KEY)


def test_mask_inplace_rejects_non_contiguous(codec: ModuleType) -> None:
    with pytest.raises(BufferError):
        codec.mask_inplace(memoryview(bytearray(32))[::2], KEY)


@pytest.mark.parametrize(
    ("start", "phase"),
    [(-1, 0), (11, 0), (0, -1), (0, 4)],
)
def test_mask_inplace_rejects_bad_start_or_phase(codec: ModuleType, start: int, phase: int) -> None:
    buffer = bytearray(b"0123456789")
    with pytest.raises(ValueError):
        codec.mask_inplace(buffer, KEY, start, phase)
    assert buffer == b"0123456789"


@pytest.mark.parametrize("length", [0, 3, 5])
def test_mask_inplace_rejects_wrong_mask_length(codec: ModuleType, length: int) -> None:
    with pytest.raises(ValueError):
        codec.mask_inplace(bytearray(8), bytes(length))


# ---------------------------------------------------------------- mask_key


def test_mask_key_is_four_bytes(codec: ModuleType) -> None:
    key = codec.mask_key()
    assert type(key) is bytes
    assert len(key) == 4


def test_mask_keys_do_not_repeat(codec: ModuleType) -> None:
    # 12288 keys: several refills of a pool of 4096 or 8192 random bytes.
    keys = [codec.mask_key() for _ in range(3 * 4096)]
    assert all(len(key) == 4 for key in keys)
    # Random 32-bit keys almost never collide (about 0.02 expected here) ...
    assert len(set(keys)) >= len(keys) - 10
    # ... and a pair of consecutive keys never comes back: no run is repeated,
    # as it would be if the pool were refilled with the same bytes or reused.
    pairs = list(zip(keys, keys[1:]))
    assert len(set(pairs)) == len(pairs)
    # Keys do not overlap in the pool: the end of a key is not the start of
    # the next one more often than chance has it (expected 0.0007 and 0.19).
    for shift, most in ((1, 2), (2, 5)):
        overlaps = sum(a[shift:] == b[: 4 - shift] for a, b in pairs)
        assert overlaps <= most, shift
    assert len(set(b"".join(keys))) == 256  # every byte value appears


# ---------------------------------------------------------------- parse_header


class HeaderCase(NamedTuple):
    opcode: int
    fin: bool
    rsv: int
    length: int
    mask: Optional[bytes]

    def encode(self) -> bytes:
        return raw_header(self.opcode, self.length, self.fin, self.rsv, self.mask)

    def parsed(self) -> tuple[int, bool, int, int, Optional[bytes], int]:
        return (self.opcode, self.fin, self.rsv, self.length, self.mask, len(self.encode()))


HEADER_CASES = [
    pytest.param(HeaderCase(0x1, True, 0, 5, None), id="7bit"),
    pytest.param(HeaderCase(0x1, False, 4, 5, KEY), id="7bit-masked-rsv1"),
    pytest.param(HeaderCase(0x8, True, 0, 0, None), id="close-empty"),
    pytest.param(HeaderCase(0x9, True, 0, 125, KEY2), id="ping-125-masked"),
    pytest.param(HeaderCase(0x2, True, 7, 126, None), id="16bit-126"),
    pytest.param(HeaderCase(0x0, False, 0, 65535, KEY), id="16bit-65535-masked"),
    pytest.param(HeaderCase(0x2, True, 0, 65536, None), id="64bit-65536"),
    pytest.param(HeaderCase(0x2, True, 1, 2**63 - 1, KEY2), id="64bit-max-masked"),
]


@pytest.mark.parametrize("case", HEADER_CASES)
def test_parse_header_waits_for_the_whole_header(codec: ModuleType, case: HeaderCase) -> None:
    header = case.encode()
    for size in range(len(header)):
        assert codec.parse_header(header[:size]) is None, size
    assert codec.parse_header(header) == case.parsed()
    assert codec.parse_header(header + b"payload") == case.parsed()


@pytest.mark.parametrize("case", HEADER_CASES)
def test_parse_header_result_types(codec: ModuleType, case: HeaderCase) -> None:
    opcode, fin, rsv, length, mask, header_length = codec.parse_header(case.encode())
    assert type(fin) is bool
    assert type(mask) is (bytes if case.mask else type(None))
    assert all(type(x) is int for x in (opcode, rsv, length, header_length))


@pytest.mark.parametrize("make", BUFFER_TYPES)
@pytest.mark.parametrize("offset", [1, 2, 3])
@pytest.mark.parametrize("case", HEADER_CASES)
def test_parse_header_offset(codec: ModuleType, case: HeaderCase, offset: int, make: BufferMaker) -> None:
    header = case.encode()
    data = bytes(range(0x83, 0x83 + offset)) + header  # junk before: reserved opcodes
    assert codec.parse_header(make(data), offset) == case.parsed()
    assert codec.parse_header(make(data[:-1]), offset) is None


@pytest.mark.parametrize("extra", [0, 1, 100])
def test_parse_header_offset_past_the_end(codec: ModuleType, extra: int) -> None:
    data = bytes.fromhex("810548656c6c6f")
    assert codec.parse_header(data, len(data) + extra) is None


def test_parse_header_rejects_negative_offset(codec: ModuleType) -> None:
    with pytest.raises(ValueError):
        codec.parse_header(b"\x81\x00", -1)


def test_parse_header_rejects_non_buffers(codec: ModuleType) -> None:
    with pytest.raises(TypeError):
        codec.parse_header("\x81\x00")
    with pytest.raises(BufferError):
        codec.parse_header(memoryview(bytearray(8))[::2])


@pytest.mark.parametrize("rsv", range(8))
def test_parse_header_rsv_bits(codec: ModuleType, rsv: int) -> None:
    header = codec.parse_header(bytes((0x80 | rsv << 4 | 0x1, 0x00)))
    assert header is not None
    assert header[2] == rsv


def test_parse_header_rsv1_is_4(codec: ModuleType) -> None:
    assert codec.parse_header(b"\xc1\x00")[2] == 4  # RSV1 (0x40): permessage-deflate
    assert codec.parse_header(b"\xa1\x00")[2] == 2  # RSV2
    assert codec.parse_header(b"\x91\x00")[2] == 1  # RSV3


# Headers RFC 6455 forbids, cut where the fault becomes visible.
BAD_HEADERS = [
    *(
        pytest.param(bytes((fin | opcode, mask)), id=f"reserved-{opcode:#x}-{fin:x}-{mask:x}")
        for opcode in RESERVED_OPCODES
        for fin, mask in ((0x80, 0x00), (0x00, 0x80))
    ),
    *(
        pytest.param(bytes((opcode, mask | 5)), id=f"fragmented-control-{opcode:#x}-{mask:x}")
        for opcode in CONTROL_OPCODES
        for mask in (0x00, 0x80)
    ),
    *(
        pytest.param(bytes((0x80 | opcode, mask | n)), id=f"long-{opcode:#x}-{n}-{mask:x}")
        for opcode in CONTROL_OPCODES
        for n in (126, 127)
        for mask in (0x00, 0x80)
    ),
    pytest.param(b"\x82\x7f\x80\x00\x00\x00\x00\x00\x00\x00", id="64bit-top-bit"),
    pytest.param(b"\x82\x7f\xff\xff\xff\xff\xff\xff\xff\xff", id="64bit-all-ones"),
    pytest.param(b"\x02\xff\x80\x00\x00\x00\x00\x00\x00\x00" + KEY, id="64bit-top-bit-masked"),
]


@pytest.mark.parametrize("header", BAD_HEADERS)
def test_parse_header_rejects(codec: ModuleType, header: bytes) -> None:
    with pytest.raises(FrameError) as info:
        codec.parse_header(header)
    assert isinstance(info.value, WebSocketError)
    assert info.value.code == 1002
    assert isinstance(info.value.reason, str) and info.value.reason
    with pytest.raises(FrameError):
        codec.parse_header(b"\x81\x00" + header, 2)


# ---------------------------------------------------------------- build_header and build_frame

INVALID_OPCODES = [*RESERVED_OPCODES, 0x10, 0x81, -1]


@pytest.mark.parametrize("opcode", INVALID_OPCODES)
def test_build_rejects_invalid_opcodes(codec: ModuleType, opcode: int) -> None:
    with pytest.raises(ValueError):
        codec.build_header(opcode, 0)
    with pytest.raises(ValueError):
        codec.build_frame(opcode, b"")


@pytest.mark.parametrize("rsv", [-1, 8, 16])
def test_build_rejects_invalid_rsv(codec: ModuleType, rsv: int) -> None:
    with pytest.raises(ValueError):
        codec.build_header(0x1, 0, rsv=rsv)
    with pytest.raises(ValueError):
        codec.build_frame(0x1, b"", rsv=rsv)


@pytest.mark.parametrize("opcode", CONTROL_OPCODES)
def test_build_rejects_fragmented_control(codec: ModuleType, opcode: int) -> None:
    with pytest.raises(ValueError):
        codec.build_header(opcode, 0, fin=False)
    with pytest.raises(ValueError):
        codec.build_frame(opcode, b"", fin=False)


@pytest.mark.parametrize("opcode", CONTROL_OPCODES)
def test_build_control_frame_length_limit(codec: ModuleType, opcode: int) -> None:
    assert codec.build_header(opcode, 125) == bytes((0x80 | opcode, 125))
    assert codec.build_frame(opcode, bytes(125)) == bytes((0x80 | opcode, 125)) + bytes(125)
    for length in (126, 65536):
        with pytest.raises(ValueError):
            codec.build_header(opcode, length)
        with pytest.raises(ValueError):
            codec.build_frame(opcode, bytes(length))


@pytest.mark.parametrize("length", [-1, 2**63, 2**64])
def test_build_header_rejects_invalid_length(codec: ModuleType, length: int) -> None:
    with pytest.raises(ValueError):
        codec.build_header(0x2, length)


LENGTH_FORMS = [
    pytest.param(0, "8200", id="0"),
    pytest.param(1, "8201", id="1"),
    pytest.param(125, "827d", id="125"),
    pytest.param(126, "827e007e", id="126"),
    pytest.param(127, "827e007f", id="127"),
    pytest.param(65535, "827effff", id="65535"),
    pytest.param(65536, "827f0000000000010000", id="65536"),
    pytest.param(2**63 - 1, "827f7fffffffffffffff", id="2**63-1"),
]


@pytest.mark.parametrize(("length", "header_hex"), LENGTH_FORMS)
def test_length_forms(codec: ModuleType, length: int, header_hex: str) -> None:
    header = bytes.fromhex(header_hex)
    masked_header = bytes((header[0], header[1] | 0x80)) + header[2:] + KEY2
    assert codec.build_header(0x2, length) == header
    assert codec.build_header(0x2, length, mask=KEY2) == masked_header
    assert codec.parse_header(header) == (0x2, True, 0, length, None, len(header))
    assert codec.parse_header(masked_header) == (0x2, True, 0, length, KEY2, len(masked_header))
    if length <= 65536:
        payload = random_bytes(length)
        assert codec.build_frame(0x2, payload) == header + payload
        assert codec.build_frame(0x2, payload, mask=KEY2) == (masked_header + naive_mask(payload, KEY2))


@pytest.mark.parametrize("mask", [None, KEY2], ids=["unmasked", "masked"])
@pytest.mark.parametrize("opcode", KNOWN_OPCODES)
def test_build_matches_reference(codec: ModuleType, opcode: int, mask: Optional[bytes]) -> None:
    payload = b"frame payload"
    for fin, rsv in itertools.product((True, False), range(8)):
        if opcode in CONTROL_OPCODES and not fin:
            continue
        expected = raw_frame(opcode, payload, fin, rsv, mask)
        assert codec.build_frame(opcode, payload, fin, rsv, mask) == expected
        assert codec.build_header(opcode, len(payload), fin, rsv, mask) == (expected[: len(expected) - len(payload)])


def test_build_frame_mask_true(codec: ModuleType) -> None:
    payload = random_bytes(300)
    keys = set()
    for _ in range(3):
        frame = codec.build_frame(0x2, payload, mask=True)
        header = codec.parse_header(frame)
        assert header is not None
        key = header[4]
        assert type(key) is bytes and len(key) == 4
        assert frame == raw_frame(0x2, payload, mask=key)
        assert codec.FrameReader(expect_masked=True).feed(frame) == [(0x2, True, 0, payload)]
        keys.add(key)
    assert len(keys) == 3  # a fresh key each time


def test_build_frame_mask_false(codec: ModuleType) -> None:
    assert codec.build_frame(0x1, b"Hello", mask=False) == bytes.fromhex("810548656c6c6f")
    assert codec.build_frame(0x1, b"Hello", mask=None) == bytes.fromhex("810548656c6c6f")


@pytest.mark.parametrize("make", BUFFER_TYPES)
def test_build_buffer_types(codec: ModuleType, make: BufferMaker) -> None:
    payload = random_bytes(200)
    expected = raw_frame(0x2, payload, mask=KEY)
    assert codec.build_frame(0x2, make(payload), mask=KEY) == expected
    assert codec.build_frame(0x2, payload, mask=make(KEY)) == expected
    assert codec.build_header(0x2, 200, mask=make(KEY)) == expected[:8]


@pytest.mark.parametrize("mask", [b"", b"abc", b"abcde"])
def test_build_rejects_wrong_mask_length(codec: ModuleType, mask: bytes) -> None:
    with pytest.raises(ValueError):
        codec.build_header(0x1, 5, mask=mask)
    with pytest.raises(ValueError):
        codec.build_frame(0x1, b"Hello", mask=mask)


def test_build_rejects_non_buffers(codec: ModuleType) -> None:
    with pytest.raises(TypeError):
        codec.build_frame(0x1, "Hello")
    with pytest.raises(TypeError):
        codec.build_frame(0x1, b"Hello", mask="abcd")
    with pytest.raises(TypeError):
        codec.build_header(0x1, 5, mask="abcd")


# ---------------------------------------------------------------- FrameReader


class Spec(NamedTuple):
    opcode: int
    fin: bool
    rsv: int
    payload: bytes
    mask: Optional[bytes]

    def encode(self) -> bytes:
        return raw_frame(self.opcode, self.payload, self.fin, self.rsv, self.mask)

    @property
    def frame(self) -> Frame:
        return (self.opcode, self.fin, self.rsv, self.payload)


class Placed(NamedTuple):
    """A frame in a stream: where it starts, where its payload starts and ends."""

    start: int
    payload_start: int
    end: int
    spec: Spec


def place(specs: list[Spec]) -> tuple[bytes, list[Placed]]:
    stream = b""
    placed = []
    for spec in specs:
        wire = spec.encode()
        start = len(stream)
        stream += wire
        placed.append(Placed(start, len(stream) - len(spec.payload), len(stream), spec))
    return stream, placed


def expected_state(
    placed: list[Placed], consumed: int, start: int = 0
) -> tuple[int, Optional[tuple[int, bool, int, int, bytes]]]:
    """``(buffered, partial(start))`` once ``consumed`` bytes of the stream are fed.

    The reader holds the bytes of an incomplete header, or, once the header is
    read, the payload received so far, and nothing at a frame boundary.
    """
    for p in placed:
        if p.start < consumed < p.payload_start:
            return consumed - p.start, None
        if p.payload_start <= consumed < p.end:
            got = consumed - p.payload_start
            s = p.spec
            return got, (s.opcode, s.fin, s.rsv, len(s.payload), s.payload[start:got])
    return 0, None


def frames_before(placed: list[Placed], consumed: int) -> list[Frame]:
    return [p.spec.frame for p in placed if p.end <= consumed]


SMALL_SPECS = [
    Spec(0x1, True, 0, b"Hello", None),
    Spec(0x9, True, 0, b"", KEY),
    Spec(0x1, False, 4, "κόσμε".encode(), KEY2),
    Spec(0x0, True, 4, b"!", None),
    Spec(0x8, True, 0, b"\x03\xe8bye", KEY),
]
STREAM_SPECS = [
    *SMALL_SPECS,
    Spec(0x2, True, 0, random_bytes(300), KEY2),
    Spec(0x2, True, 7, b"", None),
    Spec(0xA, True, 0, random_bytes(125), KEY),
    Spec(0x2, False, 1, random_bytes(126), None),
    Spec(0x0, True, 0, b"end", KEY2),
]
PARTIAL_STARTS = [0, 1, 3, 200, 10**6]


def check_state(reader: Any, placed: list[Placed], consumed: int) -> None:
    for start in PARTIAL_STARTS:
        buffered, partial = expected_state(placed, consumed, start)
        assert reader.partial(start) == partial, (consumed, start)
    assert reader.buffered == buffered, consumed


def test_reader_every_split_point(codec: ModuleType) -> None:
    stream, placed = place(STREAM_SPECS)
    for cut in range(len(stream) + 1):
        reader = codec.FrameReader()
        first = reader.feed(stream[:cut])
        assert first == frames_before(placed, cut), cut
        check_state(reader, placed, cut)
        assert first + reader.feed(stream[cut:]) == [s.frame for s in STREAM_SPECS], cut
        check_state(reader, placed, len(stream))


def test_reader_every_pair_of_split_points(codec: ModuleType) -> None:
    stream, placed = place(SMALL_SPECS)
    for i, j in itertools.combinations_with_replacement(range(len(stream) + 1), 2):
        reader = codec.FrameReader()
        frames = []
        for piece in split(stream, (i, j)):
            frames += reader.feed(piece)
        assert frames == frames_before(placed, len(stream)), (i, j)
        assert reader.buffered == 0


def test_reader_byte_by_byte(codec: ModuleType) -> None:
    stream, placed = place(STREAM_SPECS)
    reader = codec.FrameReader()
    frames: list[Frame] = []
    for consumed in range(1, len(stream) + 1):
        new = reader.feed(stream[consumed - 1 : consumed])
        frames += new
        assert frames == frames_before(placed, consumed), consumed
        check_state(reader, placed, consumed)
    assert frames == [s.frame for s in STREAM_SPECS]


def test_reader_empty_feeds(codec: ModuleType) -> None:
    stream, placed = place(SMALL_SPECS)
    reader = codec.FrameReader()
    frames = []
    for consumed in range(len(stream) + 1):
        assert reader.feed(b"") == []
        check_state(reader, placed, consumed)
        frames += reader.feed(stream[consumed : consumed + 1])
    assert frames == [s.frame for s in SMALL_SPECS]


def test_reader_large_frame_in_pieces(codec: ModuleType) -> None:
    payload = random_bytes(70000)
    stream, placed = place([Spec(0x2, True, 0, payload, KEY), Spec(0x1, True, 0, b"after", None)])
    for cuts in [(1,), (10,), (14,), (15,), (1000, 1001, 40000), (70013, 70014)]:
        reader = codec.FrameReader(max_frame_size=None)
        frames = []
        consumed = 0
        for piece in split(stream, cuts):
            frames += reader.feed(piece)
            consumed += len(piece)
            check_state(reader, placed, consumed)
        assert frames == [(0x2, True, 0, payload), (0x1, True, 0, b"after")], cuts


def test_reader_result_types(codec: ModuleType) -> None:
    frames = codec.FrameReader().feed(bytearray(raw_frame(0x1, b"Hi", mask=KEY)))
    assert type(frames) is list
    (frame,) = frames
    assert type(frame) is tuple
    opcode, fin, rsv, payload = frame
    assert (type(opcode), type(fin), type(rsv), type(payload)) == (int, bool, int, bytes)


@pytest.mark.parametrize("make", BUFFER_TYPES)
def test_reader_buffer_types(codec: ModuleType, make: BufferMaker) -> None:
    stream, _ = place(SMALL_SPECS)
    reader = codec.FrameReader()
    assert reader.feed(make(stream[:10])) + reader.feed(make(stream[10:])) == [s.frame for s in SMALL_SPECS]


def test_reader_rejects_non_buffers(codec: ModuleType) -> None:
    with pytest.raises(TypeError):
        codec.FrameReader().feed("\x81\x00")


@pytest.mark.parametrize("cut", [1, 5, 9])
def test_reader_copies_what_it_keeps(codec: ModuleType, cut: int) -> None:
    # The caller may reuse its buffer after feed(): an incomplete header or
    # payload must have been copied out of it.
    payload = b"0123456789abcdef"
    stream = raw_frame(0x2, payload, mask=KEY)
    reader = codec.FrameReader()
    chunk = bytearray(stream[:cut])
    assert reader.feed(chunk) == []
    chunk[:] = b"\xff" * len(chunk)
    assert reader.feed(bytearray(stream[cut:])) == [(0x2, True, 0, payload)]


def test_reader_max_frame_size_property(codec: ModuleType) -> None:
    assert codec.FrameReader().max_frame_size == 2**20
    assert codec.FrameReader(max_frame_size=None).max_frame_size is None
    assert codec.FrameReader(max_frame_size=0).max_frame_size == 0


def test_reader_rejects_negative_max_frame_size(codec: ModuleType) -> None:
    with pytest.raises(ValueError):
        codec.FrameReader(max_frame_size=-1)
    with pytest.raises(ValueError):
        codec.FrameReader(max_compressed_frame_size=-1)


def test_reader_max_compressed_frame_size_property(codec: ModuleType) -> None:
    assert codec.FrameReader().max_compressed_frame_size == 2**20  # max_frame_size's
    assert codec.FrameReader(max_frame_size=None).max_compressed_frame_size is None
    assert codec.FrameReader(100, None, 120).max_compressed_frame_size == 120


@pytest.mark.parametrize("mask", [None, KEY], ids=["unmasked", "masked"])
def test_reader_compressed_frames_have_their_own_limit(codec: ModuleType, mask: Optional[bytes]) -> None:
    # permessage-deflate: a compressed frame (RSV1) may be a little larger
    # than max_frame_size; an uncompressed one may not.
    payload = random_bytes(110)
    reader = codec.FrameReader(max_frame_size=100, max_compressed_frame_size=120)
    assert reader.feed(raw_frame(0x2, payload, rsv=4, mask=mask)) == [(0x2, True, 4, payload)]
    assert reader.feed(raw_frame(0x0, payload[:100], mask=mask)) == [(0x0, True, 0, payload[:100])]
    with pytest.raises(FrameError) as info:
        reader.feed(raw_header(0x2, 110, mask=mask))  # uncompressed: max_frame_size
    assert info.value.code == 1009 and "max_frame_size=100" in info.value.reason
    reader = codec.FrameReader(max_frame_size=100, max_compressed_frame_size=120)
    with pytest.raises(FrameError) as info:
        reader.feed(raw_header(0x1, 121, rsv=4, mask=mask))
    assert info.value.code == 1009 and "max_compressed_frame_size=120" in info.value.reason
    # RSV2/RSV3 alone are not compression: max_frame_size
    with pytest.raises(FrameError) as info:
        codec.FrameReader(100, None, 120).feed(raw_header(0x2, 110, rsv=2, mask=mask))
    assert info.value.code == 1009


@pytest.mark.parametrize("mask", [None, KEY], ids=["unmasked", "masked"])
@pytest.mark.parametrize(
    ("opcode", "limit", "length"),
    [
        (0x2, 0, 1),
        (0x0, 0, 1),
        (0x1, 125, 126),
        (0x0, 65535, 65536),
        (0x2, 2**20, 2**20 + 1),
        (0x1, 2**20, 2**63 - 1),
        (0x9, 124, 125),
        (0x8, 0, 2),
    ],
)
def test_reader_max_frame_size_checked_at_header(
    codec: ModuleType, opcode: int, limit: int, length: int, mask: Optional[bytes]
) -> None:
    reader = codec.FrameReader(max_frame_size=limit)
    # Only the header is fed: the limit must be enforced before any payload.
    with pytest.raises(FrameError) as info:
        reader.feed(raw_frame(0x1, b"", mask=mask) + raw_header(opcode, length, mask=mask))
    assert info.value.code == 1009
    assert info.value.frames == [(0x1, True, 0, b"")]
    assert reader.buffered == 0
    assert reader.partial() is None


@pytest.mark.parametrize("limit", [0, 125, 65536])
def test_reader_max_frame_size_is_inclusive(codec: ModuleType, limit: int) -> None:
    reader = codec.FrameReader(max_frame_size=limit)
    payload = random_bytes(limit)
    assert reader.feed(raw_header(0x2, limit)) == ([(0x2, True, 0, b"")] if limit == 0 else [])
    assert reader.feed(payload) == ([] if limit == 0 else [(0x2, True, 0, payload)])


def test_reader_without_max_frame_size(codec: ModuleType) -> None:
    payload = random_bytes(2**20 + 1)
    reader = codec.FrameReader(max_frame_size=None)
    assert reader.feed(raw_frame(0x2, payload)) == [(0x2, True, 0, payload)]


def test_reader_huge_frame_without_max_frame_size(codec: ModuleType) -> None:
    # A 2**62-byte frame cannot be buffered. Either the reader accepts its
    # header and buffers what arrives, or it fails with 1009; it must never
    # raise anything else, nor read on as if the header had not been there.
    reader = codec.FrameReader(max_frame_size=None)
    try:
        frames = reader.feed(raw_header(0x2, 2**62))
    except FrameError as exc:
        assert exc.code == 1009
        with pytest.raises(FrameError):
            reader.feed(raw_frame(0x1, b"next"))
    else:
        assert frames == []
        assert reader.partial() == (0x2, True, 0, 2**62, b"")
        assert reader.feed(raw_frame(0x1, b"next")) == []
        assert reader.partial() == (0x2, True, 0, 2**62, raw_frame(0x1, b"next"))
        assert reader.buffered == 6


@pytest.mark.parametrize("masked", [True, False], ids=["masked", "unmasked"])
@pytest.mark.parametrize("expect", [True, False, None], ids=["expect-masked", "expect-unmasked", "expect-either"])
def test_reader_expect_masked(codec: ModuleType, expect: Optional[bool], masked: bool) -> None:
    mask = KEY if masked else None
    reader = codec.FrameReader(expect_masked=expect)
    stream = raw_frame(0x1, b"text", mask=mask)
    header = stream[: len(stream) - 4]
    if expect is None or expect == masked:
        assert reader.feed(header) == []
        assert reader.feed(stream[len(header) :]) == [(0x1, True, 0, b"text")]
    else:
        with pytest.raises(FrameError) as info:
            reader.feed(header)  # rejected on the header alone
        assert info.value.code == 1002


@pytest.mark.parametrize("header", BAD_HEADERS)
def test_reader_rejects_bad_headers(codec: ModuleType, header: bytes) -> None:
    good = raw_frame(0x1, b"ok")
    with pytest.raises(FrameError) as info:
        codec.FrameReader(max_frame_size=None).feed(good + header)
    assert info.value.code == 1002
    assert info.value.frames == [(0x1, True, 0, b"ok")]
    # Fed byte by byte, it fails on the byte that completes the bad header.
    reader = codec.FrameReader(max_frame_size=None)
    for size in range(1, len(header)):
        assert reader.feed(header[size - 1 : size]) == []
    with pytest.raises(FrameError) as info:
        reader.feed(header[-1:])
    assert info.value.code == 1002
    assert info.value.frames == []


GOOD = [raw_frame(0x1, b"one"), raw_frame(0x2, b"two", mask=KEY), raw_frame(0x9, b"", mask=KEY2)]
ONE, TWO, PING = (0x1, True, 0, b"one"), (0x2, True, 0, b"two"), (0x9, True, 0, b"")
BAD = b"\x83\x00"


@pytest.mark.parametrize(
    ("chunks", "frames"),
    [
        pytest.param([b"".join(GOOD) + BAD], [ONE, TWO, PING], id="one-feed"),
        pytest.param([GOOD[0], GOOD[1] + GOOD[2] + BAD], [TWO, PING], id="earlier-feed"),
        pytest.param([GOOD[0][:3], GOOD[0][3:] + BAD], [ONE], id="completes-partial"),
        pytest.param([GOOD[0], BAD], [], id="none"),
        pytest.param([GOOD[0] + BAD[:1], BAD[1:]], [], id="bad-header-split"),
    ],
)
def test_reader_error_frames(codec: ModuleType, chunks: list[bytes], frames: list[Frame]) -> None:
    reader = codec.FrameReader()
    for chunk in chunks[:-1]:
        reader.feed(chunk)
    with pytest.raises(FrameError) as info:
        reader.feed(chunks[-1])
    assert info.value.frames == frames
    assert reader.buffered == 0  # nothing is kept for a failed stream
    assert reader.partial() is None


@pytest.mark.parametrize(
    ("reader_args", "bad"),
    [
        pytest.param({}, BAD, id="1002"),
        pytest.param({"max_frame_size": 3}, raw_header(0x2, 4, mask=KEY), id="1009"),
        pytest.param({"expect_masked": True}, raw_header(0x2, 3), id="expect-masked"),
    ],
)
def test_reader_stays_failed(codec: ModuleType, reader_args: dict, bad: bytes) -> None:
    reader = codec.FrameReader(**reader_args)
    assert reader.feed(GOOD[1][:8]) == []
    with pytest.raises(FrameError) as first:
        reader.feed(GOOD[1][8:] + bad)
    assert first.value.frames == [(0x2, True, 0, b"two")]
    assert reader.buffered == 0
    assert reader.partial() is None
    for later in (raw_frame(0x1, b"fine", mask=KEY), b""):
        with pytest.raises(FrameError) as again:
            reader.feed(later)
        assert (again.value.code, again.value.reason) == (first.value.code, first.value.reason)
    assert reader.buffered == 0


def reading_hello(codec: ModuleType) -> Any:
    """A reader that has received the header and 2 bytes of a 5-byte frame."""
    reader = codec.FrameReader()
    reader.feed(raw_frame(0x1, b"Hello", mask=KEY)[:8])
    return reader


class Chunk(bytearray):
    """A bytearray that can be weakly referenced."""


def feed_to_failed_reader(reader: Any) -> weakref.ref[Chunk]:
    chunk = Chunk(raw_frame(0x1, b"fine"))
    try:
        reader.feed(chunk)
    except FrameError:
        pass
    else:
        raise AssertionError("a failed reader accepted more data")
    return weakref.ref(chunk)


def test_failed_reader_does_not_keep_what_it_is_fed(codec: ModuleType) -> None:
    # Raising the stored error again must not chain each call's traceback onto
    # it: the frames of every later feed(), and the chunks in them, would stay
    # alive as long as the reader.
    reader = codec.FrameReader()
    with pytest.raises(FrameError):
        reader.feed(BAD)
    refs = [feed_to_failed_reader(reader) for _ in range(3)]
    gc.collect()
    assert [ref() for ref in refs[:-1]] == [None, None]


def test_reader_partial_start(codec: ModuleType) -> None:
    reader = reading_hello(codec)
    assert reader.partial() == (0x1, True, 0, 5, b"He")
    assert reader.partial(1) == (0x1, True, 0, 5, b"e")
    assert reader.partial(3) == (0x1, True, 0, 5, b"")
    with pytest.raises(ValueError):
        reader.partial(-1)


# ---------------------------------------------------------------- FrameReader.feed_dispatch


def test_dispatch_delivers_whole_messages(codec: ModuleType) -> None:
    sink = RecordingSink()
    reader = codec.FrameReader(expect_masked=True)
    stream = raw_frame(0x2, b"\x00\xff", mask=KEY) + raw_frame(0x1, "héllo".encode(), mask=KEY)
    assert reader.feed_dispatch(stream, sink, True) == []
    assert sink.got == [("binary", b"\x00\xff"), ("text", "héllo")]
    assert type(sink.got[0][1]) is bytes


def test_dispatch_hands_back_from_the_first_other_frame(codec: ModuleType) -> None:
    """Order is kept: after a ping, the messages come back as frames too."""
    sink = RecordingSink()
    stream = raw_frame(0x2, b"a") + raw_frame(0x9, b"p") + raw_frame(0x2, b"b") + raw_frame(0x1, b"t")
    frames = codec.FrameReader().feed_dispatch(stream, sink, True)
    assert sink.got == [("binary", b"a")]
    assert frames == [(0x9, True, 0, b"p"), (0x2, True, 0, b"b"), (0x1, True, 0, b"t")]


@pytest.mark.parametrize(
    "first",
    [
        raw_frame(0x2, b"frag", fin=False),  # a fragment
        raw_frame(0x2, b"rsv", rsv=4),  # RSV1 (a compressed message)
        raw_frame(0x1, b"\xff bad UTF-8"),  # the caller fails it with 1007
        raw_frame(0x8, b"\x03\xe8"),  # close
    ],
)
def test_dispatch_leaves_other_frames_to_the_caller(codec: ModuleType, first: bytes) -> None:
    sink = RecordingSink()
    reader = codec.FrameReader()
    expected = reader.feed(first + raw_frame(0x2, b"after"))
    assert codec.FrameReader().feed_dispatch(first + raw_frame(0x2, b"after"), sink, True) == expected
    assert sink.got == []


def test_dispatch_text_off_returns_text_frames(codec: ModuleType) -> None:
    sink = RecordingSink()
    frames = codec.FrameReader().feed_dispatch(raw_frame(0x1, b"t") + raw_frame(0x2, b"b"), sink)
    assert frames == [(0x1, True, 0, b"t"), (0x2, True, 0, b"b")]
    assert sink.got == []


def test_dispatch_across_reads(codec: ModuleType) -> None:
    """A message split over reads is delivered by the read that completes it."""
    sink = RecordingSink()
    reader = codec.FrameReader()
    wire = raw_frame(0x2, bytes(range(200)), mask=KEY)
    assert reader.feed_dispatch(wire[:7], sink) == []
    assert sink.got == [] and reader.buffered == 7
    assert reader.feed_dispatch(wire[7:], sink) == []
    assert sink.got == [("binary", bytes(range(200)))]


def test_dispatch_sink_error_keeps_the_reader_in_step(codec: ModuleType) -> None:
    """The sink's exception comes out; the rest of that input is dropped, but
    the reader has parsed it, so the next input starts at a frame boundary."""
    sink = RecordingSink(raise_at=1)
    reader = codec.FrameReader()
    stream = raw_frame(0x2, b"1") + raw_frame(0x2, b"2") + raw_frame(0x9, b"p") + raw_frame(0x2, b"3")[:1]
    with pytest.raises(RuntimeError, match="sink failed"):
        reader.feed_dispatch(stream, sink)
    assert sink.got == [("binary", b"1"), ("raised", "binary")]
    assert reader.buffered == 1  # the start of the next header
    assert reader.feed_dispatch(raw_frame(0x2, b"3")[1:] + raw_frame(0x2, b"4"), sink) == []
    assert sink.got[2:] == [("binary", b"3"), ("binary", b"4")]


def test_dispatch_frame_error_holds_the_undelivered_frames(codec: ModuleType) -> None:
    sink = RecordingSink()
    stream = raw_frame(0x2, b"ok") + raw_frame(0x9, b"p") + raw_frame(0x2, b"x" * 10)
    with pytest.raises(FrameError) as info:
        codec.FrameReader(max_frame_size=5).feed_dispatch(stream, sink)
    assert info.value.code == 1009
    assert sink.got == [("binary", b"ok")]
    assert info.value.frames == [(0x9, True, 0, b"p")]


# ---------------------------------------------------------------- integers past 64 bits

# Integer arguments are C Py_ssize_t values in the compiled codec: one that
# does not fit raises OverflowError in both implementations; lengths and
# max_frame_size are Python ints and get the answer an out-of-range one gets.
HUGE = 2**64
HUGE_INTEGERS = [
    pytest.param(lambda c: c.build_header(HUGE, 0), OverflowError, id="build_header-opcode"),
    pytest.param(lambda c: c.build_frame(HUGE, b""), OverflowError, id="build_frame-opcode"),
    pytest.param(lambda c: c.build_header(0x1, 0, rsv=HUGE), OverflowError, id="build_header-rsv"),
    pytest.param(lambda c: c.build_frame(0x1, b"", rsv=-HUGE), OverflowError, id="build_frame-rsv"),
    pytest.param(lambda c: c.build_header(0x1, HUGE), ValueError, id="build_header-length"),
    pytest.param(lambda c: c.build_header(0x1, -HUGE), ValueError, id="build_header-length<0"),
    pytest.param(lambda c: c.mask_inplace(bytearray(8), KEY, HUGE), OverflowError, id="start"),
    pytest.param(lambda c: c.mask_inplace(bytearray(8), KEY, -HUGE), OverflowError, id="start<0"),
    pytest.param(lambda c: c.mask_inplace(bytearray(8), KEY, 0, HUGE), OverflowError, id="phase"),
    pytest.param(lambda c: c.parse_header(b"\x81\x00", HUGE), OverflowError, id="offset"),
    pytest.param(lambda c: c.parse_header(b"\x81\x00", -HUGE), OverflowError, id="offset<0"),
    pytest.param(lambda c: c.FrameReader().partial(HUGE), OverflowError, id="partial-no-frame"),
    pytest.param(lambda c: reading_hello(c).partial(2**40), (1, True, 0, 5, b""), id="partial"),
    pytest.param(lambda c: reading_hello(c).partial(-HUGE), OverflowError, id="partial-start<0"),
    pytest.param(lambda c: c.FrameReader(max_frame_size=HUGE).max_frame_size, HUGE, id="max_frame_size"),
    pytest.param(
        lambda c: c.FrameReader(max_frame_size=HUGE).feed(raw_frame(0x2, b"data")),
        [(0x2, True, 0, b"data")],
        id="max_frame_size-feed",
    ),
]


@pytest.mark.parametrize(("call", "expected"), HUGE_INTEGERS)
def test_integers_past_64_bits(codec: ModuleType, call: Callable[[ModuleType], object], expected: object) -> None:
    if isinstance(expected, type) and issubclass(expected, Exception):
        with pytest.raises(expected):
            call(codec)
    else:
        assert call(codec) == expected


# ---------------------------------------------------------------- UTF-8

_TAIL = (0x80, 0xBF)


def _continuations(lead: int) -> Optional[list[tuple[int, int]]]:
    """Ranges of the bytes after ``lead``, from the table of RFC 3629 section 4;
    ``None`` if ``lead`` cannot start a character."""
    if lead <= 0x7F:
        return []
    if 0xC2 <= lead <= 0xDF:
        return [_TAIL]
    if lead == 0xE0:
        return [(0xA0, 0xBF), _TAIL]
    if lead == 0xED:
        return [(0x80, 0x9F), _TAIL]
    if 0xE1 <= lead <= 0xEF:
        return [_TAIL, _TAIL]
    if lead == 0xF0:
        return [(0x90, 0xBF), _TAIL, _TAIL]
    if 0xF1 <= lead <= 0xF3:
        return [_TAIL, _TAIL, _TAIL]
    if lead == 0xF4:
        return [(0x80, 0x8F), _TAIL, _TAIL]
    return None  # 80-C1 and F5-FF


def utf8_reference(data: bytes) -> tuple[Optional[int], list[bool]]:
    """Run a byte-at-a-time DFA over ``data``.

    Returns the index of the first byte that no valid UTF-8 text can have at
    its place (``None`` if there is none), and for each prefix length up to
    that byte whether the prefix ends on a character boundary.
    """
    boundary = [True]
    expected: list[tuple[int, int]] = []
    for index, byte in enumerate(data):
        if expected:
            low, high = expected.pop(0)
            if not low <= byte <= high:
                return index, boundary
        else:
            following = _continuations(byte)
            if following is None:
                return index, boundary
            expected = list(following)
        boundary.append(not expected)
    return None, boundary


def decodes(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


KUHN_CASES = [
    # 1  Some correct UTF-8 text
    pytest.param(b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", id="1-kosme"),
    # 2.1  First possible sequence of a certain length
    pytest.param(b"\x00", id="2.1.1-U+0000"),
    pytest.param(b"\xc2\x80", id="2.1.2-U+0080"),
    pytest.param(b"\xe0\xa0\x80", id="2.1.3-U+0800"),
    pytest.param(b"\xf0\x90\x80\x80", id="2.1.4-U+10000"),
    pytest.param(b"\xf8\x88\x80\x80\x80", id="2.1.5-5-bytes"),
    pytest.param(b"\xfc\x84\x80\x80\x80\x80", id="2.1.6-6-bytes"),
    # 2.2  Last possible sequence of a certain length
    pytest.param(b"\x7f", id="2.2.1-U+007F"),
    pytest.param(b"\xdf\xbf", id="2.2.2-U+07FF"),
    pytest.param(b"\xef\xbf\xbf", id="2.2.3-U+FFFF"),
    pytest.param(b"\xf7\xbf\xbf\xbf", id="2.2.4-U+1FFFFF"),
    pytest.param(b"\xfb\xbf\xbf\xbf\xbf", id="2.2.5-5-bytes"),
    pytest.param(b"\xfd\xbf\xbf\xbf\xbf\xbf", id="2.2.6-6-bytes"),
    # 2.3  Other boundary conditions
    pytest.param(b"\xed\x9f\xbf", id="2.3.1-U+D7FF"),
    pytest.param(b"\xee\x80\x80", id="2.3.2-U+E000"),
    pytest.param(b"\xef\xbf\xbd", id="2.3.3-U+FFFD"),
    pytest.param(b"\xf4\x8f\xbf\xbf", id="2.3.4-U+10FFFF"),
    pytest.param(b"\xf4\x90\x80\x80", id="2.3.5-U+110000"),
    # 3.1  Unexpected continuation bytes
    pytest.param(b"\x80", id="3.1.1"),
    pytest.param(b"\xbf", id="3.1.2"),
    pytest.param(b"\x80\xbf", id="3.1.3"),
    pytest.param(b"\x80\xbf\x80", id="3.1.4"),
    pytest.param(b"\x80\xbf\x80\xbf", id="3.1.5"),
    pytest.param(b"\x80\xbf\x80\xbf\x80", id="3.1.6"),
    pytest.param(b"\x80\xbf\x80\xbf\x80\xbf", id="3.1.7"),
    pytest.param(b"\x80\xbf\x80\xbf\x80\xbf\x80", id="3.1.8"),
    pytest.param(bytes(range(0x80, 0xC0)), id="3.1.9-all-64"),
    # 3.2  Lonely start characters, each followed by a space
    pytest.param(b"".join(bytes((b, 0x20)) for b in range(0xC0, 0xE0)), id="3.2.1"),
    pytest.param(b"".join(bytes((b, 0x20)) for b in range(0xC2, 0xE0)), id="3.2.1-from-C2"),
    pytest.param(b"".join(bytes((b, 0x20)) for b in range(0xE0, 0xF0)), id="3.2.2"),
    pytest.param(b"".join(bytes((b, 0x20)) for b in range(0xF0, 0xF8)), id="3.2.3"),
    pytest.param(b"".join(bytes((b, 0x20)) for b in range(0xF8, 0xFC)), id="3.2.4"),
    pytest.param(b"\xfc\x20\xfd\x20", id="3.2.5"),
    # 3.3  Sequences with the last continuation byte missing
    pytest.param(b"\xc0", id="3.3.1"),
    pytest.param(b"\xe0\x80", id="3.3.2"),
    pytest.param(b"\xf0\x80\x80", id="3.3.3"),
    pytest.param(b"\xf8\x80\x80\x80", id="3.3.4"),
    pytest.param(b"\xfc\x80\x80\x80\x80", id="3.3.5"),
    pytest.param(b"\xdf", id="3.3.6"),
    pytest.param(b"\xef\xbf", id="3.3.7"),
    pytest.param(b"\xf7\xbf\xbf", id="3.3.8"),
    pytest.param(b"\xfb\xbf\xbf\xbf", id="3.3.9"),
    pytest.param(b"\xfd\xbf\xbf\xbf\xbf", id="3.3.10"),
    # 3.4  Concatenation of incomplete sequences
    pytest.param(
        b"\xc0\xe0\x80\xf0\x80\x80\xf8\x80\x80\x80\xfc\x80\x80\x80\x80"
        b"\xdf\xef\xbf\xf7\xbf\xbf\xfb\xbf\xbf\xbf\xfd\xbf\xbf\xbf\xbf",
        id="3.4",
    ),
    pytest.param(b"\xdf\xef\xbf", id="3.4-from-DF"),
    # Valid but unfinished: feed() accepts them, the text is not complete.
    pytest.param(b"\xc2", id="truncated-C2"),
    pytest.param(b"\xe0\xa0", id="truncated-E0-A0"),
    pytest.param(b"\xed\x9f", id="truncated-ED-9F"),
    pytest.param(b"\xf0\x90\x80", id="truncated-F0-90-80"),
    pytest.param(b"\xf4\x8f\xbf", id="truncated-F4-8F-BF"),
    pytest.param(b"text \xe2\x82", id="truncated-after-text"),
    # Interrupted: a valid start, then a byte that is not a continuation byte
    pytest.param(b"\xe2\x82(", id="interrupted-3rd-of-3"),
    pytest.param(b"\xf0\x90(\x80", id="interrupted-3rd-of-4"),
    pytest.param(b"\xf0\x90\x80(", id="interrupted-4th-of-4"),
    pytest.param(b"\xf4\x8f\xbf\xc0", id="interrupted-4th-by-C0"),
    # 3.5  Impossible bytes
    pytest.param(b"\xfe", id="3.5.1"),
    pytest.param(b"\xff", id="3.5.2"),
    pytest.param(b"\xfe\xfe\xff\xff", id="3.5.3"),
    # 4.1  Overlong ASCII character
    pytest.param(b"\xc0\xaf", id="4.1.1"),
    pytest.param(b"\xe0\x80\xaf", id="4.1.2"),
    pytest.param(b"\xf0\x80\x80\xaf", id="4.1.3"),
    pytest.param(b"\xf8\x80\x80\x80\xaf", id="4.1.4"),
    pytest.param(b"\xfc\x80\x80\x80\x80\xaf", id="4.1.5"),
    # 4.2  Maximum overlong sequences
    pytest.param(b"\xc1\xbf", id="4.2.1"),
    pytest.param(b"\xe0\x9f\xbf", id="4.2.2"),
    pytest.param(b"\xf0\x8f\xbf\xbf", id="4.2.3"),
    pytest.param(b"\xf8\x87\xbf\xbf\xbf", id="4.2.4"),
    pytest.param(b"\xfc\x83\xbf\xbf\xbf\xbf", id="4.2.5"),
    # 4.3  Overlong NUL
    pytest.param(b"\xc0\x80", id="4.3.1"),
    pytest.param(b"\xe0\x80\x80", id="4.3.2"),
    pytest.param(b"\xf0\x80\x80\x80", id="4.3.3"),
    pytest.param(b"\xf8\x80\x80\x80\x80", id="4.3.4"),
    pytest.param(b"\xfc\x80\x80\x80\x80\x80", id="4.3.5"),
    # 5.1  Single UTF-16 surrogates
    pytest.param(b"\xed\xa0\x80", id="5.1.1-U+D800"),
    pytest.param(b"\xed\xad\xbf", id="5.1.2-U+DB7F"),
    pytest.param(b"\xed\xae\x80", id="5.1.3-U+DB80"),
    pytest.param(b"\xed\xaf\xbf", id="5.1.4-U+DBFF"),
    pytest.param(b"\xed\xb0\x80", id="5.1.5-U+DC00"),
    pytest.param(b"\xed\xbe\x80", id="5.1.6-U+DF80"),
    pytest.param(b"\xed\xbf\xbf", id="5.1.7-U+DFFF"),
    # 5.2  Paired UTF-16 surrogates
    pytest.param(b"\xed\xa0\x80\xed\xb0\x80", id="5.2.1"),
    pytest.param(b"\xed\xa0\x80\xed\xbf\xbf", id="5.2.2"),
    pytest.param(b"\xed\xad\xbf\xed\xb0\x80", id="5.2.3"),
    pytest.param(b"\xed\xad\xbf\xed\xbf\xbf", id="5.2.4"),
    pytest.param(b"\xed\xae\x80\xed\xb0\x80", id="5.2.5"),
    pytest.param(b"\xed\xae\x80\xed\xbf\xbf", id="5.2.6"),
    pytest.param(b"\xed\xaf\xbf\xed\xb0\x80", id="5.2.7"),
    pytest.param(b"\xed\xaf\xbf\xed\xbf\xbf", id="5.2.8"),
    # 5.3  Noncharacters: valid UTF-8
    pytest.param(b"\xef\xbf\xbe", id="5.3.1-U+FFFE"),
    pytest.param(b"\xef\xb7\x90", id="5.3.2-U+FDD0"),
    pytest.param(b"\xf4\x8f\xbf\xbe", id="5.3.3-U+10FFFE"),
    # Mixed texts, with the fault after a run of ASCII or other scripts
    pytest.param("Hello-µ@ßöäüàá-UTF-8!!".encode(), id="text-latin"),
    pytest.param(b"a" * 40 + b"\xff" + b"b" * 8, id="ascii-then-FF"),
    pytest.param("Привет, мир".encode() + b"\xed\xa0\x80ok", id="cyrillic-then-surrogate"),
    pytest.param("你好世界".encode() + b"\xc0\xaf", id="cjk-then-overlong"),
    pytest.param("🎉🚀".encode() + b"\xf4\x90\x80\x80", id="emoji-then-U+110000"),
]


def check_pieces(codec: ModuleType, data: bytes, pieces: list[bytes]) -> None:
    """Feed ``pieces`` (which make up ``data``) and check each step against the DFA."""
    bad, boundary = utf8_reference(data)
    validator = codec.Utf8Validator()
    fed = 0
    for piece in pieces:
        result = validator.feed(piece)
        fed += len(piece)
        state = (result, validator.valid, validator.complete, validator.position)
        if bad is None or fed <= bad:
            assert state == (True, True, boundary[fed], fed), (pieces, state)
        else:
            assert state == (False, False, False, bad), (pieces, state)
        assert type(result) is bool


def completable(prefix: bytes) -> bool:
    # Each unfinished character of RFC 3629 ends with one of these.
    endings = (b"", b"\x80", b"\x80\x80", b"\xa0\x80", b"\x80\x80\x80", b"\x90\x80\x80")
    return any(decodes(prefix + ending) for ending in endings)


def test_reference_dfa_agrees_with_python() -> None:
    alphabet = bytes((0x41, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC1, 0xC2, 0xE0, 0xED, 0xF0))
    alphabet += bytes((0xF4, 0xF5))
    cases = [p.values[0] for p in KUHN_CASES]
    cases += [bytes(t) for n in range(5) for t in itertools.product(alphabet, repeat=n)]
    for data in cases:
        bad, boundary = utf8_reference(data)
        assert (bad is None and boundary[-1]) == decodes(data), data
        # The bytes before the first bad one can still be completed; with it, not.
        assert completable(data if bad is None else data[:bad]), data
        if bad is not None:
            assert not completable(data[: bad + 1]), data


@pytest.mark.parametrize("data", KUHN_CASES)
def test_kuhn_validate_utf8(codec: ModuleType, data: bytes) -> None:
    assert codec.validate_utf8(data) is decodes(data)


@pytest.mark.parametrize("data", KUHN_CASES)
def test_kuhn_validator_every_split(codec: ModuleType, data: bytes) -> None:
    for i, j in itertools.combinations_with_replacement(range(len(data) + 1), 2):
        check_pieces(codec, data, split(data, (i, j)))
    validator = codec.Utf8Validator()
    validator.feed(data)
    assert (validator.valid and validator.complete) == decodes(data)


def test_validator_every_short_sequence(codec: ModuleType) -> None:
    # Every sequence of up to 3 bytes over an alphabet of the edges of the
    # RFC 3629 table, fed whole and split in two everywhere.
    alphabet = bytes((0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2))
    alphabet += bytes((0xDF, 0xE0, 0xE1, 0xEC, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5))
    alphabet += b"\xff"
    for n in range(1, 4):
        for t in itertools.product(alphabet, repeat=n):
            data = bytes(t)
            assert codec.validate_utf8(data) is decodes(data), data
            for cut in range(n + 1):
                check_pieces(codec, data, [data[:cut], data[cut:]])
    # And every 4-byte one over a smaller alphabet, fed whole.
    alphabet = bytes((0x41, 0x80, 0x8F, 0x90, 0xBF, 0xC0, 0xC2, 0xE0, 0xED, 0xF0, 0xF4, 0xF5))
    for t in itertools.product(alphabet, repeat=4):
        data = bytes(t)
        assert codec.validate_utf8(data) is decodes(data), data
        check_pieces(codec, data, [data])


def test_validator_every_single_byte(codec: ModuleType) -> None:
    for byte in range(256):
        for data in (bytes((byte,)), bytes((byte, 0x20)), b"x" * 20 + bytes((byte,)) + b"x"):
            check_pieces(codec, data, [data])
            assert codec.validate_utf8(data) is decodes(data)


@pytest.mark.parametrize(
    "text",
    ["", "ascii only", "κόσμε", "Привет", "你好", "🎉"],
    ids=["none", "ascii", "greek", "cyrillic", "cjk", "emoji"],
)
@pytest.mark.parametrize("bad", [b"\xff", b"\x80", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xf0\x90\x80("])
def test_validator_fault_at_every_offset(codec: ModuleType, text: str, bad: bytes) -> None:
    # Long texts go through fast paths: the fault must be found at any offset.
    unit = text.encode() or b"-"
    for count in range(0, 72 // len(unit) + 1):
        data = unit * count + bad + unit * 3
        check_pieces(codec, data, [data])
        check_pieces(codec, data, split(data, (len(data) // 3,)))
        assert codec.validate_utf8(data) is False


@pytest.mark.parametrize(
    ("pieces", "results", "position"),
    [
        pytest.param([b"\xed", b"\xa0"], [True, False], 1, id="ED|A0"),
        pytest.param([b"\xf4\x90"], [False], 1, id="F4-90"),
        pytest.param([b"\xf4", b"\x90"], [True, False], 1, id="F4|90"),
        pytest.param([b"\xe0\x80"], [False], 1, id="E0-80"),
        pytest.param([b"\xf0\x8f"], [False], 1, id="F0-8F"),
        pytest.param([b"\xf0\x90\x80", b"A"], [True, False], 3, id="F0-90-80|A"),
        pytest.param([b"ab\xe2\x82", b"(c"], [True, False], 4, id="ab-E2-82|(c"),
        pytest.param([b"\xc2", b"", b"\x80"], [True, True, True], 2, id="C2||80"),
        pytest.param([b"\xf0", b"\x90", b"\x80", b"\x80"], [True] * 4, 4, id="F0|90|80|80"),
    ],
)
def test_validator_fails_fast(codec: ModuleType, pieces: list[bytes], results: list[bool], position: int) -> None:
    validator = codec.Utf8Validator()
    assert [validator.feed(piece) for piece in pieces] == results
    assert validator.position == position
    assert validator.valid is results[-1]
    if not results[-1]:
        assert validator.feed(b"valid text") is False  # stays failed
        assert validator.position == position
        assert validator.complete is False


def test_validator_complete_tracks_boundaries(codec: ModuleType) -> None:
    validator = codec.Utf8Validator()
    assert (validator.valid, validator.complete, validator.position) == (True, True, 0)
    assert validator.feed(b"") is True
    assert validator.complete is True
    steps = [(b"a\xe2", False), (b"\x82", False), (b"\xac", True), (b"\xf0\x9f", False)]
    steps += [(b"\x8e\x89", True)]
    fed = 0
    for piece, complete in steps:
        assert validator.feed(piece) is True
        fed += len(piece)
        assert (validator.valid, validator.complete, validator.position) == (True, complete, fed)


def test_validator_reset(codec: ModuleType) -> None:
    validator = codec.Utf8Validator()
    assert validator.feed(b"ok\xff") is False
    validator.reset()
    assert (validator.valid, validator.complete, validator.position) == (True, True, 0)
    assert validator.feed(b"\xe2\x82") is True
    validator.reset()  # forgets the unfinished sequence too
    assert validator.feed(b"\x82") is False
    assert validator.position == 0
    validator.reset()
    assert validator.feed(b"\xe2\x82") is True
    validator.reset()
    assert validator.feed(b"ok") is True
    assert (validator.complete, validator.position) == (True, 2)


@pytest.mark.parametrize("make", BUFFER_TYPES)
def test_utf8_buffer_types(codec: ModuleType, make: BufferMaker) -> None:
    data = "κόσμε".encode()
    assert codec.validate_utf8(make(data)) is True
    assert codec.validate_utf8(make(data[:-1])) is False
    validator = codec.Utf8Validator()
    assert validator.feed(make(data[:3])) is True
    assert validator.feed(make(data[3:])) is True
    assert validator.complete is True


def test_utf8_rejects_non_buffers(codec: ModuleType) -> None:
    with pytest.raises(TypeError):
        codec.validate_utf8("text")
    with pytest.raises(TypeError):
        codec.Utf8Validator().feed("text")
