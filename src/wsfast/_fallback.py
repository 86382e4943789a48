"""Pure-Python twin of :mod:`wsfast._speedups`.

Same names, same signatures, same results and the same exceptions on every
input; the differential tests in ``tests/test_codec_differential.py`` hold the
two to that. Import the codec from :mod:`wsfast.codec`, which picks one of the
two; import this module directly only to compare them.
"""

from __future__ import annotations

import codecs
import operator
import os
import struct
import sys
from typing import Any, Optional, Tuple, Union

from .exceptions import FrameError

__all__ = [
    "IMPLEMENTATION",
    "OP_CONT",
    "OP_TEXT",
    "OP_BINARY",
    "OP_CLOSE",
    "OP_PING",
    "OP_PONG",
    "apply_mask",
    "mask_inplace",
    "mask_key",
    "parse_header",
    "build_header",
    "build_frame",
    "FrameReader",
    "Utf8Validator",
    "validate_utf8",
    "get_buffer_path",
    "read_path",
    "send_binary_path",
    "send_text_path",
    "SocketTransport",
]

IMPLEMENTATION = "python"

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

_KNOWN_OPCODES = frozenset((OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG))
_MAX_CONTROL = 125
_MAX_HEADER = 14

Header = Tuple[int, bool, int, int, Optional[bytes], int]
Frame = Tuple[int, bool, int, bytes]
Buffer = Union[bytes, bytearray, memoryview]

# ---------------------------------------------------------------- masking

# Below this size XOR-ing two big ints is fastest; above it, translating each
# of the four byte lanes through a 256-byte table (the crossover lies between
# 256 and 512 bytes on x86-64 CPython 3.11: bench/, group mask-pure).
_INT_XOR_LIMIT = 384
_XOR_TABLES: list[bytes] = [bytes(i ^ k for i in range(256)) for k in range(256)]
_from_bytes = int.from_bytes


def _key(mask: object) -> bytes:
    try:
        view = memoryview(mask)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError("mask must be a bytes-like object") from None
    if not view.c_contiguous:
        raise BufferError("mask must be a C-contiguous buffer")
    if view.nbytes != 4:
        raise ValueError("mask must contain 4 bytes")
    return view.tobytes()


def _ssize(value: object) -> int:
    """``value`` as a C ``Py_ssize_t``, as the compiled twin takes it:
    ``TypeError`` for a non-integer, ``OverflowError`` if it does not fit."""
    index = operator.index(value)  # type: ignore[arg-type]
    if not -sys.maxsize - 1 <= index <= sys.maxsize:
        raise OverflowError("Python int too large to convert to C ssize_t")
    return index


def _bounded(value: object, lo: int, hi: int, message: str) -> int:
    """``value`` as a ``Py_ssize_t`` in ``[lo, hi]``, else ``ValueError(message)``."""
    index = _ssize(value)
    if not lo <= index <= hi:
        raise ValueError(message)
    return index


def _view(data: object) -> memoryview:
    try:
        view = memoryview(data)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError("data must be a bytes-like object") from None
    if not view.c_contiguous:
        raise BufferError("data must be a C-contiguous buffer")
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view


def _xor(view: Buffer, key: bytes) -> bytes:
    """XOR ``view`` with the 4-byte ``key`` repeated from phase 0."""
    n = len(view)
    if n <= _INT_XOR_LIMIT:
        if n == 0:
            return b""
        reps = (n + 3) >> 2
        x = _from_bytes(view, "little") ^ _from_bytes((key * reps)[:n], "little")
        return x.to_bytes(n, "little")
    out = bytearray(view)
    t = _XOR_TABLES
    out[0::4] = out[0::4].translate(t[key[0]])
    out[1::4] = out[1::4].translate(t[key[1]])
    out[2::4] = out[2::4].translate(t[key[2]])
    out[3::4] = out[3::4].translate(t[key[3]])
    return bytes(out)


def apply_mask(data: Buffer, mask: Buffer) -> bytes:
    """Return ``data`` XOR-ed with the 4-byte ``mask`` (RFC 6455 section 5.3).

    Accepts any C-contiguous bytes-like object; the signature matches
    ``websockets.speedups.apply_mask``.
    """
    key = mask if type(mask) is bytes and len(mask) == 4 else _key(mask)
    if type(data) is not bytes and type(data) is not bytearray:
        data = _view(data)
    return _xor(data, key)


def mask_inplace(buffer: Buffer, mask: Buffer, start: int = 0, phase: int = 0, /) -> int:
    """XOR ``buffer[start:]`` in place with ``mask`` rotated by ``phase``.

    ``phase`` is the position in the key of the first byte (0-3), so a payload
    that arrives in pieces can be unmasked piece by piece. Returns the phase
    for the byte that follows.
    """
    key = _key(mask)
    try:
        view = memoryview(buffer)
    except TypeError:
        raise TypeError("mask_inplace needs a writable buffer") from None
    if view.readonly:
        raise TypeError("mask_inplace needs a writable buffer")
    if not view.c_contiguous:
        raise BufferError("data must be a C-contiguous buffer")
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    n = len(view)
    start = _bounded(start, 0, n, "start must be between 0 and len(buffer)")
    phase = _bounded(phase, 0, 3, "phase must be between 0 and 3")
    if start < n:
        view[start:] = _xor(view[start:], key[phase:] + key[:phase])
    return (phase + n - start) & 3


_KEY_BLOCK_SIZE = 4096
_key_block = b""
_key_pos = 0


def _forget_keys() -> None:
    """A forked child must not hand out its parent's keys."""
    global _key_block, _key_pos
    _key_block = b""
    _key_pos = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_keys)


def mask_key() -> bytes:
    """Return a fresh 4-byte masking key (RFC 6455 section 10.3).

    Keys are sliced from a pooled ``os.urandom`` block, refilled when used up:
    cryptographically random, without a system call per frame.
    """
    global _key_block, _key_pos
    pos = _key_pos
    if pos >= len(_key_block):
        _key_block = os.urandom(_KEY_BLOCK_SIZE)
        pos = 0
    _key_pos = pos + 4
    return _key_block[pos : pos + 4]


# ---------------------------------------------------------------- headers


def _error_bad_opcode(opcode: int) -> FrameError:
    return FrameError(1002, f"reserved opcode {opcode:#x}")


def parse_header(data: Buffer, offset: int = 0) -> Optional[Header]:
    """Parse the frame header that starts at ``data[offset]``.

    Returns ``(opcode, fin, rsv, length, mask, header_length)`` where ``rsv``
    holds RSV1-3 as bits 2-0 (RSV1 = 4) and ``mask`` is the 4-byte key or
    ``None``; or ``None`` when more bytes are needed. Raises
    :class:`~wsfast.exceptions.FrameError` (code 1002) for a reserved opcode,
    a fragmented or over-long control frame, or a 64-bit length with its top
    bit set.
    """
    view = _view(data)
    offset = _ssize(offset)
    if offset < 0:
        raise ValueError("offset must not be negative")
    avail = len(view) - offset
    if avail < 2:
        return None
    b0 = view[offset]
    b1 = view[offset + 1]
    opcode = b0 & 0x0F
    fin = bool(b0 & 0x80)
    length = b1 & 0x7F
    if opcode not in _KNOWN_OPCODES:
        raise _error_bad_opcode(opcode)
    if opcode & 0x8:
        if not fin:
            raise FrameError(1002, "fragmented control frame")
        if length > _MAX_CONTROL:
            raise FrameError(1002, "control frame payload longer than 125 bytes")
    masked = b1 & 0x80
    hlen = 2
    if length == 126:
        hlen = 4
    elif length == 127:
        hlen = 10
    if masked:
        hlen += 4
    if avail < hlen:
        return None
    if length == 126:
        length = (view[offset + 2] << 8) | view[offset + 3]
    elif length == 127:
        length = _from_bytes(view[offset + 2 : offset + 10], "big")
        if length >> 63:
            raise FrameError(1002, "frame length with the most significant bit set")
    mask = bytes(view[offset + hlen - 4 : offset + hlen]) if masked else None
    return opcode, fin, (b0 >> 4) & 7, length, mask, hlen


def _check_build(opcode: int, length: int, fin: bool, rsv: int) -> tuple[int, int]:
    """Check a frame to build; return ``opcode`` and ``rsv`` as ints."""
    opcode = _ssize(opcode)
    if opcode not in _KNOWN_OPCODES:
        raise ValueError(f"reserved opcode {opcode:#x}")
    rsv = _bounded(rsv, 0, 7, "rsv must be between 0 and 7")
    length = operator.index(length)
    if length < 0 or length >> 63:
        raise ValueError("length must be between 0 and 2**63 - 1")
    if opcode & 0x8:
        if not fin:
            raise ValueError("control frames cannot be fragmented")
        if length > _MAX_CONTROL:
            raise ValueError("control frame payload longer than 125 bytes")
    return opcode, rsv


def _pack_header(opcode: int, length: int, fin: bool, rsv: int, masked: bool) -> bytes:
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    m = 0x80 if masked else 0
    if length < 126:
        return bytes((b0, m | length))
    if length < 65536:
        return struct.pack("!BBH", b0, m | 126, length)
    return struct.pack("!BBQ", b0, m | 127, length)


def build_header(opcode: int, length: int, fin: bool = True, rsv: int = 0, mask: Optional[Buffer] = None) -> bytes:
    """Return the header of a frame with a ``length``-byte payload.

    With a ``mask`` the header ends with the 4-byte key (the payload must then
    be masked with it). Raises ``ValueError`` for a frame RFC 6455 forbids.
    """
    opcode, rsv = _check_build(opcode, length, fin, rsv)
    length = operator.index(length)
    if mask is None:
        return _pack_header(opcode, length, fin, rsv, False)
    return _pack_header(opcode, length, fin, rsv, True) + _key(mask)


def build_frame(
    opcode: int,
    payload: Buffer,
    fin: bool = True,
    rsv: int = 0,
    mask: Union[None, bool, Buffer] = None,
) -> bytes:
    """Return a whole frame: header, masking key and (masked) payload.

    ``mask`` is ``None`` or ``False`` for an unmasked frame (server side),
    ``True`` for a fresh key from :func:`mask_key` (client side), or a 4-byte
    key.
    """
    view = _view(payload)
    opcode, rsv = _check_build(opcode, len(view), fin, rsv)
    if mask is None or mask is False:
        return _pack_header(opcode, len(view), fin, rsv, False) + view
    key = mask_key() if mask is True else _key(mask)
    return _pack_header(opcode, len(view), fin, rsv, True) + key + _xor(view, key)


# ---------------------------------------------------------------- stream reader


class FrameReader:
    """Split a byte stream into frames, whatever its chunking.

    ``feed(data)`` returns every frame that ``data`` completes, as
    ``(opcode, fin, rsv, payload)`` tuples with the payload unmasked. Between
    calls the reader keeps only an incomplete header (at most 14 bytes) or the
    payload received so far of the one incomplete frame: memory follows the
    bytes received, not the length a header announces.

    ``max_frame_size`` (bytes, ``None`` for no limit) is checked as soon as a
    header is read, before any payload is buffered: a larger frame raises
    :class:`~wsfast.exceptions.FrameError` with code 1009.
    ``max_compressed_frame_size`` replaces it for frames with RSV1 set
    (compressed by permessage-deflate, whose output may be a little larger
    than its input); ``None``: ``max_frame_size`` for those too.
    ``expect_masked`` is true on a server (clients must mask), false on a
    client (servers must not), ``None`` to accept both; a violation raises
    ``FrameError`` with code 1002.

    After a ``FrameError`` the reader stays failed: each later ``feed``
    raises a ``FrameError`` with the same code and reason. The error's
    ``frames`` holds the frames completed before the bad one in the failing
    call. A reader is not meant to be fed from two threads at once.
    """

    __slots__ = (
        "_max",
        "_cmax",
        "_expect",
        "_head",
        "_payload",
        "_got",
        "_key",
        "_hdr",
        "_error",
    )

    def __init__(
        self,
        max_frame_size: Optional[int] = 2**20,
        expect_masked: Optional[bool] = None,
        max_compressed_frame_size: Optional[int] = None,
    ) -> None:
        if max_frame_size is not None and max_frame_size < 0:
            raise ValueError("max_frame_size must not be negative")
        if max_compressed_frame_size is None:
            max_compressed_frame_size = max_frame_size
        elif max_compressed_frame_size < 0:
            raise ValueError("max_compressed_frame_size must not be negative")
        self._max = max_frame_size
        self._cmax = max_compressed_frame_size
        self._expect = None if expect_masked is None else bool(expect_masked)
        self._head = b""
        self._payload: Optional[bytearray] = None
        self._got = 0
        self._key: Optional[bytes] = None
        self._hdr: Tuple[int, bool, int, int] = (0, False, 0, 0)
        self._error: Optional[tuple[int, str]] = None

    @property
    def max_frame_size(self) -> Optional[int]:
        """The largest payload accepted, in bytes, or ``None``."""
        return self._max

    @property
    def max_compressed_frame_size(self) -> Optional[int]:
        """The largest payload accepted in a frame with RSV1 set, or ``None``."""
        return self._cmax

    @property
    def buffered(self) -> int:
        """Bytes of the stream held for an incomplete frame."""
        return len(self._head) + self._got

    def partial(self, start: int = 0) -> Optional[Tuple[int, bool, int, int, bytes]]:
        """Describe the incomplete frame whose header has been read.

        Returns ``(opcode, fin, rsv, length, payload[start:received])`` with
        the payload received so far, unmasked, or ``None`` when no frame is
        in progress. Lets the protocol layer validate a large text frame as
        its bytes arrive.
        """
        start = _ssize(start)
        if start < 0:
            raise ValueError("start must not be negative")
        if self._payload is None:
            return None
        opcode, fin, rsv, length = self._hdr
        return opcode, fin, rsv, length, bytes(self._payload[start : self._got])

    def _fail(self, error: FrameError, frames: list[Frame]) -> FrameError:
        error.frames = frames
        self._error = (error.code, error.reason)
        self._head = b""
        self._payload = None
        self._got = 0
        return error

    def _fill(self, view: memoryview, frames: list[Frame]) -> int:
        """Copy payload bytes of the incomplete frame; return bytes used."""
        payload = self._payload
        assert payload is not None
        got = self._got
        length = self._hdr[3]
        take = min(length - got, len(view))
        chunk = view[:take]
        key = self._key
        if key is not None:
            phase = got & 3
            chunk = _xor(chunk, key[phase:] + key[:phase])  # type: ignore[assignment]
        payload += chunk
        got += take
        if got == length:
            opcode, fin, rsv, _ = self._hdr
            frames.append((opcode, fin, rsv, bytes(payload)))
            self._payload = None
            got = 0
        self._got = got
        return take

    def feed(self, data: Buffer) -> list[Frame]:
        """Consume ``data``; return the frames it completes."""
        if self._error is not None:
            raise FrameError(*self._error)
        view = _view(data)
        frames: list[Frame] = []
        if self._payload is not None:
            used = self._fill(view, frames)
            if self._payload is not None:
                return frames
            view = view[used:]
        if self._head:
            view = memoryview(self._head + view)
            self._head = b""
        n = len(view)
        pos = 0
        limit = self._max
        climit = self._cmax
        expect = self._expect
        while pos < n:
            try:
                header = parse_header(view, pos)
            except FrameError as exc:
                raise self._fail(exc, frames) from None
            if header is None:
                self._head = bytes(view[pos:])
                break
            opcode, fin, rsv, length, key, hlen = header
            if expect is not None and (key is not None) is not expect:
                reason = "unmasked frame from client" if expect else "masked frame from server"
                raise self._fail(FrameError(1002, reason), frames)
            if rsv & 4:
                if climit is not None and length > climit:
                    reason = f"compressed frame of {length} bytes exceeds max_compressed_frame_size={climit}"
                    raise self._fail(FrameError(1009, reason), frames)
            elif limit is not None and length > limit:
                reason = f"frame of {length} bytes exceeds max_frame_size={limit}"
                raise self._fail(FrameError(1009, reason), frames)
            start = pos + hlen
            end = start + length
            if end <= n:
                body = view[start:end]
                payload = bytes(body) if key is None else _xor(body, key)
                frames.append((opcode, fin, rsv, payload))
                pos = end
                continue
            if length > sys.maxsize - 64:
                reason = f"frame of {length} bytes is too large to buffer"
                raise self._fail(FrameError(1009, reason), frames)
            self._payload = bytearray()
            self._hdr = (opcode, fin, rsv, length)
            self._key = key
            self._got = 0
            self._fill(view[start:], frames)
            break
        return frames

    def feed_dispatch(self, data: Buffer, sink: Any, text: bool = False) -> list[Frame]:
        """Consume ``data``; deliver plain messages by direct calls.

        Each complete frame that is a whole message (FIN set, no RSV bit) is
        passed to ``sink.on_binary(payload)``, and with ``text`` a text one to
        ``sink.on_text(str)`` once it decodes as UTF-8, as long as every frame
        before it in this call went that way. From the first other frame on,
        frames are returned as :meth:`feed` returns them. A ``FrameError``'s
        ``frames`` holds the frames completed before the bad one that were
        not delivered. If the sink raises, the rest of ``data`` is parsed,
        its frames are dropped, and the sink's exception is raised.
        """
        try:
            frames = self.feed(data)
        except FrameError as exc:
            exc.frames = _dispatch(exc.frames, sink, text)
            raise
        return _dispatch(frames, sink, text)


def _dispatch(frames: list[Frame], sink: Any, text: bool) -> list[Frame]:
    """Deliver the plain messages at the start of ``frames``; return the rest."""
    for index, (opcode, fin, rsv, payload) in enumerate(frames):
        if not fin or rsv:
            return frames[index:]
        if opcode == OP_BINARY:
            sink.on_binary(payload)
        elif opcode == OP_TEXT and text:
            try:
                message = payload.decode()
            except UnicodeDecodeError:
                return frames[index:]
            sink.on_text(message)
        else:
            return frames[index:]
    return []


# ---------------------------------------------------------------- the asyncio transport's hot path
# The extension compiles these methods of WebSocketTransport for their common
# case; here they are the transport's general methods themselves.


def get_buffer_path(ws: Any, sizehint: int) -> Any:
    """``WebSocketTransport.get_buffer``: the read buffer the transport shares
    with the other connections of its thread."""
    return ws._view


def read_path(ws: Any, nbytes: int) -> None:
    """``WebSocketTransport.buffer_updated``: ``ws._read`` (compiled in the
    extension for whole messages on an open connection with a listener)."""
    ws._read(nbytes)


def send_binary_path(ws: Any, data: Any, compress: Optional[bool] = None) -> None:
    """Send a binary message (``compress``: override the compression threshold).

    ``WebSocketTransport.send_binary``: ``ws._send_binary`` (compiled in the
    extension for a whole message sent as one plain frame).
    """
    ws._send_binary(data, compress)


def send_text_path(ws: Any, data: Any, compress: Optional[bool] = None) -> None:
    """Send a text message: ``str``, or ``bytes`` already in UTF-8 (not checked).

    ``WebSocketTransport.send_text``: ``ws._send_text`` (compiled in the
    extension for a whole message sent as one plain frame).
    """
    ws._send_text(data, compress)


SocketTransport: Optional[type] = None
"""The extension's socket transport; without it (here) wsfast uses the event
loop's own transports."""


# ---------------------------------------------------------------- UTF-8

_utf8_decode = codecs.utf_8_decode


def _seq_len(lead: int) -> int:
    """Length of the sequence a lead byte starts, or 0 if it cannot start one."""
    if 0xC2 <= lead <= 0xDF:
        return 2
    if 0xE0 <= lead <= 0xEF:
        return 3
    if 0xF0 <= lead <= 0xF4:
        return 4
    return 0


def _second_range(lead: int) -> Tuple[int, int]:
    """Allowed range of the byte after ``lead`` (RFC 3629 section 4)."""
    if lead == 0xE0:
        return 0xA0, 0xBF
    if lead == 0xED:
        return 0x80, 0x9F
    if lead == 0xF0:
        return 0x90, 0xBF
    if lead == 0xF4:
        return 0x80, 0x8F
    return 0x80, 0xBF


class Utf8Validator:
    """Incremental UTF-8 validator whose state carries across fragments.

    ``feed(data)`` returns ``False`` as soon as the bytes fed so far cannot
    start a valid UTF-8 text, that is at the first bad byte, even when it is
    in the middle of a multi-byte sequence that has not been completed yet.
    ``complete`` tells whether the text fed so far ends on a code point
    boundary; ``position`` counts the bytes accepted (after a failure, the
    offset of the first bad byte in the whole stream).
    """

    __slots__ = ("_pending", "_position", "_valid")

    def __init__(self) -> None:
        self._pending = b""
        self._position = 0
        self._valid = True

    @property
    def valid(self) -> bool:
        """``False`` once a bad byte has been seen."""
        return self._valid

    @property
    def complete(self) -> bool:
        """``True`` when the input so far is valid and ends on a code point."""
        return self._valid and not self._pending

    @property
    def position(self) -> int:
        """Bytes accepted so far; after a failure, the offset of the bad byte."""
        return self._position

    def reset(self) -> None:
        """Forget everything fed so far."""
        self._pending = b""
        self._position = 0
        self._valid = True

    def _bad(self, index: int) -> bool:
        self._position += index
        self._valid = False
        self._pending = b""
        return False

    def feed(self, data: Buffer) -> bool:
        """Validate the next bytes of the text; ``False`` at the first bad byte."""
        view = _view(data)
        if not self._valid:
            return False
        pending = self._pending
        if pending:
            need = _seq_len(pending[0]) - len(pending)
            i = 0
            n = len(view)
            while need and i < n:
                lo, hi = _second_range(pending[0]) if len(pending) == 1 else (0x80, 0xBF)
                byte = view[i]
                if not lo <= byte <= hi:
                    return self._bad(i)
                pending += bytes((byte,))
                i += 1
                need -= 1
            self._position += i
            if need:
                self._pending = pending
                return True
            self._pending = b""
            view = view[i:]
        try:
            _, consumed = _utf8_decode(view, "strict", False)
        except UnicodeDecodeError as exc:
            return self._bad(exc.start if exc.reason == "invalid start byte" else exc.end)
        tail = view[consumed:]
        if tail:
            # CPython keeps an incomplete sequence without checking all of it
            # (ED A0 passes); check the tail ourselves so a bad byte fails now.
            lead = tail[0]
            if not _seq_len(lead):
                return self._bad(consumed)
            if len(tail) > 1:
                lo, hi = _second_range(lead)
                if not lo <= tail[1] <= hi:
                    return self._bad(consumed + 1)
            if len(tail) > 2 and not 0x80 <= tail[2] <= 0xBF:
                return self._bad(consumed + 2)
            self._pending = bytes(tail)
        self._position += len(view)
        return True


def validate_utf8(data: Buffer) -> bool:
    """Return ``True`` if ``data`` is a complete, valid UTF-8 text."""
    try:
        _utf8_decode(_view(data), "strict", True)
    except UnicodeDecodeError:
        return False
    return True
