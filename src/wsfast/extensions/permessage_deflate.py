"""permessage-deflate (RFC 7692): negotiation and per-message compression.

:class:`PerMessageDeflate` is the configuration that both roles negotiate
with; a successful negotiation gives a :class:`Deflate`, which compresses
and decompresses the messages of one connection. Its zlib objects are
created on the first compressed message, since they dominate the memory of
an idle connection, freed again while the connection is idle (context
takeover survives it: :meth:`Deflate.release`), and decompression is
bounded inside the inflater.
"""

from __future__ import annotations

import platform
import sys
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

from ..exceptions import NegotiationError

if TYPE_CHECKING:
    from . import ExtensionParams

__all__ = ["PerMessageDeflate", "DEFAULT_DEFLATE", "Deflate", "MessageTooBig", "EXTENSION_NAME", "trim_freed_memory"]

EXTENSION_NAME = "permessage-deflate"
_TAIL = b"\x00\x00\xff\xff"
_STEP = 65536  # bytes of input, and of output, per zlib call on large messages
_SYNC_FLUSH = zlib.Z_SYNC_FLUSH
_FULL_FLUSH = zlib.Z_FULL_FLUSH
_PARAMS = (
    "server_no_context_takeover",
    "client_no_context_takeover",
    "server_max_window_bits",
    "client_max_window_bits",
)


class MessageTooBig(Exception):
    """A compressed message inflates past the size limit (close code 1009)."""


def _window_bits(name: str, value: Optional[str]) -> int:
    if value is None or not value.isdigit() or value.startswith("0") or not 8 <= int(value) <= 15:
        raise NegotiationError(f"invalid value for {name}: {value!r}")
    return int(value)


def _check_params(params: ExtensionParams) -> dict[str, Optional[str]]:
    """Reject unknown and repeated parameters, and values where none belong."""
    seen: dict[str, Optional[str]] = {}
    for name, value in params:
        if name not in _PARAMS:
            raise NegotiationError(f"unknown permessage-deflate parameter: {name}")
        if name in seen:
            raise NegotiationError(f"repeated permessage-deflate parameter: {name}")
        if name.endswith("no_context_takeover") and value is not None:
            raise NegotiationError(f"{name} takes no value")
        seen[name] = value
    return seen


@dataclass(frozen=True)
class PerMessageDeflate:
    """Configuration of permessage-deflate, for either role.

    ``server_max_window_bits`` and ``client_max_window_bits`` (9-15) bound the
    LZ77 window of each side's compressor: 2**bits bytes of history, so
    smaller is lighter on memory. The defaults (12 for both, 4 KiB) keep most
    of the ratio on typical JSON at a fraction of zlib's default memory.
    ``server_no_context_takeover`` / ``client_no_context_takeover`` ask for
    each message to be compressed independently. ``compress_threshold``: a
    message shorter than this many bytes is sent uncompressed (0: compress
    every message). ``level`` and ``mem_level`` go to zlib.

    Memory per connection at the defaults: nothing until the first
    compressed message of each direction; then about 39 KB for the
    compressor (``mem_level`` 5: 8 KiB each of window, chain, hash table and
    pending buffer, and zlib's state) and 12 KB for the inflater (its state
    and a 4 KiB window). Both are freed again when the connection is idle:
    the keepalive tick of every wsfast API calls
    :meth:`~wsfast.protocol.Connection.release_idle_memory`, which frees
    the zlib objects of a connection that neither compressed nor inflated a
    message since the previous tick (so after one to two ``ping_interval``;
    none without keepalive). Context takeover survives it: each direction
    keeps the last window of its data (at most 4 KiB at 12 bits; nothing
    under ``*_no_context_takeover``) and its next message re-creates the
    zlib object with it as the preset dictionary, at the same ratio (on the
    chat and market-data corpus of ``wsfast.benchmark.corpus``, with a
    release after every message: 4.778 either way) for about 6 µs more for
    that message. glibc keeps freed memory for later allocations instead of
    returning it: see :func:`trim_freed_memory`.

    Measured on that corpus (``bench/deflate_settings.py``): ``mem_level`` 4
    or 3 save 8 or 12 KB of compressor at the same ratio for 3% or 11% more
    CPU per message; 11-bit windows save 10 KB of both and lose 10% of the ratio;
    zlib's defaults (15 bits, ``mem_level`` 8) gain 15% of ratio for 270 KB
    of compressor and 41 KB of inflater.
    """

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: Optional[int] = 12
    client_max_window_bits: Optional[int] = 12
    compress_threshold: int = 128
    level: int = 6
    mem_level: int = 5

    def __post_init__(self) -> None:
        for name in ("server_max_window_bits", "client_max_window_bits"):
            bits = getattr(self, name)
            if bits is not None and not 9 <= bits <= 15:
                # zlib cannot compress with an 8-bit window (it silently uses 9).
                raise ValueError(f"{name} must be between 9 and 15, or None")
        if self.compress_threshold < 0:
            raise ValueError("compress_threshold must not be negative")

    # ------------------------------------------------------------ client

    def offer(self) -> ExtensionParams:
        """The client's offer (parameters of one permessage-deflate offer)."""
        params: ExtensionParams = []
        if self.server_no_context_takeover:
            params.append(("server_no_context_takeover", None))
        if self.client_no_context_takeover:
            params.append(("client_no_context_takeover", None))
        if self.server_max_window_bits is not None and self.server_max_window_bits < 15:
            params.append(("server_max_window_bits", str(self.server_max_window_bits)))
        bits = self.client_max_window_bits
        params.append(("client_max_window_bits", None if bits is None or bits == 15 else str(bits)))
        return params

    def confirm(self, params: ExtensionParams) -> Deflate:
        """Check the server's acceptance of :meth:`offer`; return the session."""
        seen = _check_params(params)
        offered = dict(self.offer())
        if self.server_no_context_takeover and "server_no_context_takeover" not in seen:
            raise NegotiationError("server did not accept server_no_context_takeover")
        server_bits = 15
        if "server_max_window_bits" in seen:
            server_bits = _window_bits("server_max_window_bits", seen["server_max_window_bits"])
            if "server_max_window_bits" in offered and server_bits > int(offered["server_max_window_bits"] or 15):
                raise NegotiationError("server_max_window_bits larger than offered")
        elif "server_max_window_bits" in offered:
            raise NegotiationError("server did not accept server_max_window_bits")
        client_bits = 15
        if "client_max_window_bits" in seen:
            client_bits = _window_bits("client_max_window_bits", seen["client_max_window_bits"])
            if client_bits == 8:
                raise NegotiationError("client_max_window_bits=8 is not supported by zlib")
        client_bits = min(client_bits, self.client_max_window_bits or 15)
        return Deflate(
            compress_bits=client_bits,
            decompress_bits=server_bits,
            compress_reset="client_no_context_takeover" in seen or self.client_no_context_takeover,
            decompress_reset="server_no_context_takeover" in seen,
            threshold=self.compress_threshold,
            level=self.level,
            mem_level=self.mem_level,
        )

    # ------------------------------------------------------------ server

    def accept(self, offers: list[ExtensionParams]) -> Optional[tuple[ExtensionParams, Deflate]]:
        """Pick the first acceptable client offer.

        Returns the response parameters and the session, or ``None`` when no
        offer can be accepted (the connection then goes on uncompressed).
        """
        for params in offers:
            try:
                return self._accept_one(params)
            except NegotiationError:
                continue
        return None

    def _accept_one(self, params: ExtensionParams) -> tuple[ExtensionParams, Deflate]:
        seen = _check_params(params)
        response: ExtensionParams = []
        server_reset = self.server_no_context_takeover or "server_no_context_takeover" in seen
        if server_reset:
            response.append(("server_no_context_takeover", None))
        client_reset = self.client_no_context_takeover or "client_no_context_takeover" in seen
        if client_reset:
            response.append(("client_no_context_takeover", None))
        server_bits = self.server_max_window_bits or 15
        if "server_max_window_bits" in seen:
            requested = _window_bits("server_max_window_bits", seen["server_max_window_bits"])
            if requested == 8:
                raise NegotiationError("server_max_window_bits=8 is not supported by zlib")
            server_bits = min(server_bits, requested)
        if server_bits < 15 or "server_max_window_bits" in seen:
            response.append(("server_max_window_bits", str(server_bits)))
        client_bits = 15
        if "client_max_window_bits" in seen:
            value = seen["client_max_window_bits"]
            client_bits = 15 if value is None else _window_bits("client_max_window_bits", value)
            client_bits = min(client_bits, self.client_max_window_bits or 15)
            if client_bits < 15 or value is not None:
                response.append(("client_max_window_bits", str(client_bits)))
        deflate = Deflate(
            compress_bits=server_bits,
            decompress_bits=client_bits,
            compress_reset=server_reset,
            decompress_reset=client_reset,
            threshold=self.compress_threshold,
            level=self.level,
            mem_level=self.mem_level,
        )
        return response, deflate


DEFAULT_DEFLATE = PerMessageDeflate()
"""The default configuration (immutable, so one instance serves everyone)."""


class Deflate:
    """The negotiated permessage-deflate state of one connection.

    ``compress(data, final)`` compresses the next fragment of an outgoing
    message; ``decompress(data, final, limit)`` inflates the next fragment of
    an incoming one, producing at most ``limit`` bytes (else it raises
    :class:`MessageTooBig`), so a small frame cannot balloon in memory.

    Memory: the zlib objects are created on the first compressed message of
    each direction and can be freed between messages with :meth:`release`
    (or :meth:`release_if_idle`, for a periodic sweep), even with context
    takeover: each direction that keeps its context remembers the last
    ``2**bits`` bytes of its uncompressed data (at most that many, as many as
    went through it), and the next message re-creates its zlib object with
    them as the preset dictionary. The new compressor then finds the same
    matches as the old one would have (its output continues the same stream:
    every message ends with a sync flush, never a final block), and the new
    inflater holds the same window as the peer's compressor, so references
    into the earlier messages stay valid. A released connection holds those
    bytes (about 1 KB after a 512 B message each way, at most 4 KiB per
    direction at the default 12-bit windows) instead of about 50 KB of zlib
    state. Without context takeover nothing is kept. Messages received and
    sent uncompressed never touch either.
    """

    __slots__ = (
        "compress_bits",
        "decompress_bits",
        "compress_reset",
        "decompress_reset",
        "threshold",
        "level",
        "mem_level",
        "_compressor",
        "_decompressor",
        "_chistory",
        "_dhistory",
        "_csize",
        "_dsize",
        "_cmid",
        "_dmid",
        "_used",
    )

    def __init__(
        self,
        compress_bits: int = 15,
        decompress_bits: int = 15,
        compress_reset: bool = False,
        decompress_reset: bool = False,
        threshold: int = 0,
        level: int = 6,
        mem_level: int = 8,
    ) -> None:
        self.compress_bits = compress_bits
        self.decompress_bits = max(decompress_bits, 9)
        self.compress_reset = compress_reset
        self.decompress_reset = decompress_reset
        self.threshold = threshold
        self.level = level
        self.mem_level = mem_level
        self._compressor: Optional[zlib._Compress] = None
        self._decompressor: Optional[zlib._Decompress] = None
        # The last bytes that went into the compressor and came out of the
        # inflater (with context takeover only; None without): their windows,
        # to re-create a released zlib object. Kept up to twice the window
        # between trims, so that a small message costs an append.
        self._chistory: Optional[bytearray] = None if compress_reset else bytearray()
        self._dhistory: Optional[bytearray] = None if decompress_reset else bytearray()
        self._csize = 1 << compress_bits
        self._dsize = 1 << self.decompress_bits
        # Inside a fragmented message (its zlib object must not be released).
        self._cmid = False
        self._dmid = False
        # Set by every compress/decompress; cleared by release_if_idle().
        self._used = False

    def __repr__(self) -> str:
        return (
            f"Deflate(compress_bits={self.compress_bits}, decompress_bits={self.decompress_bits}, "
            f"compress_reset={self.compress_reset}, decompress_reset={self.decompress_reset})"
        )

    def compress(self, data: bytes, final: bool = True) -> bytes:
        """Compress the next fragment; ``final`` ends the message."""
        self._used = True
        compressor = self._compressor
        if compressor is None:
            compressor = self._compressor = self._new_compressor()
        history = self._chistory
        if history is not None:  # _remember(), inlined: the busy path
            window = self._csize
            if len(data) < window:
                history += data
                if len(history) >= window << 1:
                    del history[:-window]
            else:
                history[:] = memoryview(data)[-window:]
        out = compressor.compress(data)
        if not final:
            self._cmid = True
            return out + compressor.flush(_SYNC_FLUSH)
        self._cmid = False
        if self.compress_reset:
            # A full flush ends the message and forgets the history, which is
            # what no_context_takeover asks, without a new 50 KB zlib object.
            out += compressor.flush(_FULL_FLUSH)
        else:
            out += compressor.flush(_SYNC_FLUSH)
        if out.endswith(_TAIL):
            out = out[:-4]
        return out

    def decompress(self, data: bytes, final: bool, limit: Optional[int]) -> bytes:
        """Inflate the next fragment of a message; ``final`` ends it.

        Produces at most ``limit`` bytes (``None``: no limit); more raises
        :class:`MessageTooBig`. Input and output go through zlib in 64 KiB
        steps, so a bomb is refused while it holds little more than
        ``limit`` bytes.
        """
        self._used = True
        decompressor = self._decompressor
        if decompressor is None:
            decompressor = self._decompressor = self._new_decompressor()
        self._dmid = True  # until the fragment is through (a failure leaves it set)
        if limit is None:
            if len(data) <= _STEP:
                out = decompressor.decompress(data + _TAIL if final else data)
            else:  # the tail on its own, as below
                out = decompressor.decompress(data)
                if final:
                    out += decompressor.decompress(_TAIL)
        elif len(data) <= _STEP:
            # One step, the common case, without the loop of the general path.
            out = decompressor.decompress(data + _TAIL if final else data, _STEP)
            if len(out) > limit:
                raise MessageTooBig(f"message inflates past {limit} bytes")
            if len(out) == _STEP or decompressor.unconsumed_tail:
                out = self._inflate_in_steps(decompressor, [decompressor.unconsumed_tail], limit, [out])
        else:
            # In steps, and the 4-byte tail on its own: appending it to the
            # payload would copy the whole compressed frame (one more buffer
            # of the frame's size at the peak).
            view = memoryview(data)
            pieces: list[object] = [view[start : start + _STEP] for start in range(0, len(data), _STEP)]
            if final:
                pieces.append(_TAIL)
            out = self._inflate_in_steps(decompressor, pieces, limit, [])
        history = self._dhistory
        if history is not None:  # _remember(), inlined
            window = self._dsize
            if len(out) < window:
                history += out
                if len(history) >= window << 1:
                    del history[:-window]
            else:
                history[:] = memoryview(out)[-window:]
        if final:
            self._dmid = False
            if self.decompress_reset:
                self._decompressor = None
        return out

    def _new_compressor(self) -> zlib._Compress:
        history = self._chistory
        if history:
            return zlib.compressobj(self.level, zlib.DEFLATED, -self.compress_bits, self.mem_level, zdict=history)
        return zlib.compressobj(self.level, zlib.DEFLATED, -self.compress_bits, self.mem_level)

    def _new_decompressor(self) -> zlib._Decompress:
        history = self._dhistory
        if history:
            # A raw inflater takes its dictionary at once (zlib keeps a
            # reference to the object, ours, which only grows or is trimmed).
            return zlib.decompressobj(-self.decompress_bits, zdict=history)
        return zlib.decompressobj(-self.decompress_bits)

    @property
    def allocated(self) -> bool:
        """Whether a zlib object exists (compressor or inflater)."""
        return self._compressor is not None or self._decompressor is not None

    def release(self) -> bool:
        """Free the zlib objects between messages; the next compressed
        message in each direction re-creates its object, with the kept
        history as its preset dictionary under context takeover (see the
        class docstring). A direction inside a fragmented message keeps its
        object. Returns whether anything was freed."""
        global _freed_bytes
        freed = 0
        if self._compressor is not None and not self._cmid:
            self._compressor = None
            # zlib's deflate: window, prev, head, pending buffer, state
            freed = 4 * self._csize + (1 << (self.mem_level + 9)) + 5_900
            if self._chistory is not None:
                self._chistory = _trimmed(self._chistory, self._csize)
        if self._decompressor is not None and not self._dmid:
            self._decompressor = None  # and zlib's reference to the history
            freed += self._dsize + 7_200  # inflate's window and state
            if self._dhistory is not None:
                self._dhistory = _trimmed(self._dhistory, self._dsize)
        if freed:
            _freed_bytes += freed  # (threads may race: a lost count is harmless)
            return True
        return False

    def release_if_idle(self) -> bool:
        """Second-chance release for a periodic sweep: :meth:`release` if no
        message was compressed or inflated since the previous call, else
        only forget that one was. Called every N seconds, it frees the zlib
        objects of a connection silent for N to 2N seconds, and costs the
        busy path one attribute store per message (no clock). Returns
        whether anything was freed."""
        if self._used:
            self._used = False
            return False
        return self.release()

    @staticmethod
    def _inflate_in_steps(
        decompressor: zlib._Decompress, pieces: list[object], limit: int, chunks: list[bytes]
    ) -> bytes:
        """Inflate ``pieces`` in steps of at most 64 KiB of output, after
        ``chunks`` (the output so far), to at most ``limit`` bytes in all."""
        total = sum(map(len, chunks))
        for piece in pieces:
            while True:
                chunk = decompressor.decompress(piece, _STEP)  # type: ignore[arg-type]
                total += len(chunk)
                if total > limit:
                    raise MessageTooBig(f"message inflates past {limit} bytes")
                chunks.append(chunk)
                piece = decompressor.unconsumed_tail
                if not piece and len(chunk) < _STEP:
                    break
        return b"".join(chunks)  # a single chunk is returned as it is, without a copy

    def reset_decompressor(self) -> None:
        """Drop the inflater state (after a failed message)."""
        self._decompressor = None
        self._dmid = False


_freed_bytes = 0
"""About how many bytes of zlib state :meth:`Deflate.release` freed since
the last :func:`trim_freed_memory` that trimmed."""


def trim_freed_memory(min_bytes: int = 32 << 20) -> bool:
    """Give the memory of released zlib objects back to the system, once at
    least ``min_bytes`` of it were released since the last trim: glibc's
    ``malloc_trim(0)``; nothing elsewhere. Returns whether it trimmed.

    Why: zlib allocates through ``malloc``, in blocks of a few KiB that
    glibc serves from the heap, among the small objects that stay alive; when
    they are freed, glibc keeps the memory for the next allocations (the
    next connections' zlib objects reuse it, so RSS stays at its high-water
    mark rather than growing) but does not return it, so the RSS does not
    drop. ``malloc_trim(0)`` releases the free pages inside the heap.
    Measured (``bench/profile_memory.py --release``, 2,000 deflate
    connections, one 512 B message each way): 47.8 KB per connection just
    used, the same after the release, 7.6 KB after the trim. It costs a
    pause that grows with the free memory it walks (about 7 ms for 2,000
    released connections, 300 ms for 20,000 on the 2-core machine of the
    figures), and the pages come back as page faults when zlib objects are
    created again; hence the threshold: :meth:`Connection.release_idle_memory`
    calls it after each release, so it trims about once per 700 connections
    released (20,000 released one after the other, measured: 29 trims, the
    longest 11 ms, 30-50 ms on a loaded machine; 8.5 KB per connection
    left, against 47 KB before; what was freed after the last trim, under
    the threshold, stays for reuse).
    A caller that sweeps many connections can instead release them with
    ``trim=False`` and call ``trim_freed_memory(0)`` once after the sweep.
    """
    global _freed_bytes
    if _freed_bytes < min_bytes:
        return False
    _freed_bytes = 0
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


_trim_function: object = False  # not looked up yet


def _malloc_trim() -> Optional[Callable[[int], int]]:
    global _trim_function
    if _trim_function is False:
        _trim_function = None
        if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
            try:
                import ctypes

                _trim_function = ctypes.CDLL(None).malloc_trim
            except (OSError, AttributeError):
                pass
    return _trim_function  # type: ignore[return-value]


def _remember(history: bytearray, data: bytes, window: int) -> None:
    """Append ``data`` to ``history``, trimmed to its last ``window`` bytes
    once it holds twice that (a small message costs an append)."""
    if len(data) >= window:
        history[:] = memoryview(data)[-window:]
    else:
        history += data
        if len(history) >= window << 1:
            del history[:-window]


def _trimmed(history: bytearray, window: int) -> bytearray:
    """The last ``window`` bytes of ``history``, in a buffer of their size
    (a trimmed bytearray may keep its larger allocation)."""
    return bytearray(memoryview(history)[-window:])
