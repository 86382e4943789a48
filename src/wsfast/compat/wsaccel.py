"""wsaccel's public API on wsfast's codec.

`wsaccel <https://pypi.org/project/wsaccel/>`_ gave Autobahn, ws4py and
websocket-client a compiled XOR masker and UTF-8 validator, both a byte at a
time. This module has the same names and gives the same results, computed by
:mod:`wsfast.codec` (compiled: SIMD masking, a UTF-8 DFA with an ASCII fast
path)::

    from wsfast.compat.wsaccel import XorMaskerSimple, Utf8Validator

* ``XorMaskerNull(mask=None)``, ``XorMaskerSimple(mask)``,
  ``createXorMasker(mask, len=None)``: ``process(data) -> bytes`` masks the
  next piece of a payload, the key's phase carried over from the previous
  piece; ``pointer()`` is the number of bytes processed, ``reset()`` starts
  over.
* ``Utf8Validator()``: ``validate(data)`` returns wsaccel's 4-tuple
  ``(valid, ends_on_codepoint, current_index, total_index)``: at the first bad
  byte, ``valid`` is ``False`` and the indexes point at it (in this piece, in
  the whole text); otherwise ``current_index`` is ``len(data)`` and
  ``total_index`` the bytes validated so far. ``reset()`` starts a new text;
  ``decode(b)``, ``state``, ``codepoint`` and ``i`` are there too.
* ``patch_autobahn()``, ``patch_ws4py()``: see :mod:`wsfast.integrations`.

Differences, all on inputs wsaccel rejects or mishandles: any bytes-like
object is accepted (wsaccel wants one-byte items), and ``state`` is read-only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from ..codec import Utf8Validator as _Validator
from ..codec import apply_mask

if TYPE_CHECKING:
    from .._fallback import Buffer
    from ..integrations.accelerate import Acceleration

__all__ = [
    "XorMaskerNull",
    "XorMaskerSimple",
    "createXorMasker",
    "Utf8Validator",
    "patch_autobahn",
    "patch_ws4py",
]

# Bjoern Hoehrmann's UTF-8 DFA, as in wsaccel: 256 byte classes, then the
# transitions (state * 16 + class). Used only by Utf8Validator.decode() and
# to report the state of a text that ends inside a code point.
_DFA = bytes(
    [0] * 128
    + [1] * 16
    + [9] * 16
    + [7] * 32
    + [8, 8]
    + [2] * 30
    + [10]
    + [3] * 12
    + [4, 3, 3]
    + [11, 6, 6, 6, 5]
    + [8] * 11
    + [0, 1, 2, 3, 5, 8, 7, 1, 1, 1, 4, 6, 1, 1, 1, 1]
    + [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 0, 1, 0, 1, 1, 1, 1, 1, 1]
    + [1, 2, 1, 1, 1, 1, 1, 2, 1, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1, 1, 1, 1, 1]
    + [1, 2, 1, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 3, 1, 3, 1, 1, 1, 1, 1, 1]
    + [1, 3, 1, 1, 1, 1, 1, 3, 1, 3, 1, 1, 1, 1, 1, 1, 1, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]
)

_UTF8_ACCEPT = 0
_UTF8_REJECT = 1


def _key(mask: Buffer) -> bytes:
    key = bytes(memoryview(mask))
    if len(key) != 4:
        raise ValueError("mask should be 4byte.")
    return key


def _nbytes(data: Buffer) -> int:
    with memoryview(data) as view:
        return view.nbytes


class XorMaskerNull:
    """A masker for unmasked frames: ``process`` returns its input as is."""

    __slots__ = ("_ptr",)

    def __init__(self, mask: Optional[Buffer] = None) -> None:
        self._ptr = 0

    def pointer(self) -> int:
        """Bytes processed since creation or :meth:`reset`."""
        return self._ptr

    def reset(self) -> None:
        """Count from zero again."""
        self._ptr = 0

    def process(self, data: Any) -> Any:
        """Return ``data`` itself, counting its length."""
        self._ptr += len(data)
        return data


class XorMaskerSimple:
    """XOR-mask a payload piece by piece with a 4-byte key (RFC 6455 section 5.3)."""

    __slots__ = ("_key", "_ptr")

    def __init__(self, mask: Buffer) -> None:
        self._key = _key(mask)
        self._ptr = 0

    def pointer(self) -> int:
        """Bytes processed since creation or :meth:`reset`."""
        return self._ptr

    def reset(self) -> None:
        """Restart at the first byte of the key."""
        self._ptr = 0

    def process(self, data: Buffer) -> bytes:
        """Mask the next piece of the payload; returns new bytes."""
        phase = self._ptr & 3
        key = self._key if not phase else self._key[phase:] + self._key[:phase]
        try:
            out = apply_mask(data, key)
        except BufferError:  # a strided view: wsaccel takes those too
            out = apply_mask(memoryview(data).tobytes(), key)
        self._ptr += len(out)
        return out


def createXorMasker(mask: Buffer, len: Optional[int] = None) -> XorMaskerSimple:  # noqa: N802 (wsaccel's name)
    """Return a :class:`XorMaskerSimple` for ``mask`` (``len`` is ignored, as in wsaccel)."""
    return XorMaskerSimple(mask)


def _pending_state(tail: bytes) -> int:
    """The DFA state after ``tail``, which ends inside a code point that started in it."""
    start = len(tail) - 1
    while start > 0 and tail[start] & 0xC0 == 0x80:
        start -= 1
    state = _UTF8_ACCEPT
    for byte in tail[start:]:
        state = _DFA[256 + state * 16 + _DFA[byte]]
    return state


class Utf8Validator:
    """Incremental UTF-8 validator with wsaccel's interface, on :class:`wsfast.codec.Utf8Validator`."""

    __slots__ = ("_validator", "_tail", "codepoint", "i")

    UTF8_ACCEPT = _UTF8_ACCEPT
    UTF8_REJECT = _UTF8_REJECT

    def __init__(self) -> None:
        self._validator = _Validator()
        self._tail = b""  # the last bytes fed, kept only when they end inside a code point
        self.codepoint = 0
        self.i = 0

    @property
    def state(self) -> int:
        """The DFA state: ``UTF8_ACCEPT`` (0) on a code point boundary, ``UTF8_REJECT`` (1) after a bad byte."""
        validator = self._validator
        if not validator.valid:
            return _UTF8_REJECT
        if validator.complete:
            return _UTF8_ACCEPT
        return _pending_state(self._tail)

    def reset(self) -> None:
        """Start a new text."""
        self._validator.reset()
        self._tail = b""
        self.codepoint = 0
        self.i = 0

    def validate(self, buf: Buffer) -> tuple[bool, bool, int, int]:
        """Validate the next piece: ``(valid, ends_on_codepoint, current_index, total_index)``."""
        validator = self._validator
        if not validator.valid:  # wsaccel: rejected for good, though an empty piece passes
            return _nbytes(buf) == 0, False, 0, self.i
        start = validator.position
        if validator.feed(buf):
            count = validator.position - start
            self.i += count
            if validator.complete:
                return True, True, count, self.i
            self._tail = (self._tail + bytes(memoryview(buf)[-3:]))[-3:]
            return True, False, count, self.i
        index = validator.position - start
        self.i += index
        return False, False, index, self.i

    def decode(self, b: int) -> int:
        """Eat one byte and return the new state; ``codepoint`` is complete when it is ``UTF8_ACCEPT``."""
        kind = _DFA[b]
        state = self.state
        if state != _UTF8_ACCEPT:
            codepoint = (b & 0x3F) | (self.codepoint << 6)
            self.codepoint = ((codepoint + 0x80000000) & 0xFFFFFFFF) - 0x80000000  # a C int, as in wsaccel
        else:
            self.codepoint = (0xFF >> kind) & b
        validator = self._validator
        if validator.feed(bytes((b,))) and not validator.complete:
            self._tail = (self._tail + bytes((b,)))[-3:]
        return self.state


def patch_autobahn() -> Acceleration:
    """Make Autobahn use this module's masker and validator (see :mod:`wsfast.integrations`)."""
    from ..integrations.accelerate import accelerate_autobahn

    return accelerate_autobahn()


def patch_ws4py() -> Acceleration:
    """Make ws4py use this module's masking and validator (see :mod:`wsfast.integrations`)."""
    from ..integrations.accelerate import accelerate_ws4py

    return accelerate_ws4py()
