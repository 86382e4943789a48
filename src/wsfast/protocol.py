"""The WebSocket protocol as a state machine, without I/O (sans-I/O).

Bytes in, events out: :meth:`Connection.receive_data` takes what the socket
read and returns :mod:`~wsfast.events`. Calls in, bytes out: the ``send_*``
methods return the bytes to write, in call order. Automatic replies (the
pong to a ping, the close reply, an error response or close frame) are
queued: the bytes a ``send_*`` method returns start with those queued before
it, so that everything goes out in the order it was produced (a pong to a
ping inside a fragmented message precedes the echo of that message), and
:meth:`Connection.data_to_send` returns the rest; write it after each
``receive_data``.

The whole state is in one place, :class:`Connection`:

* ``CONNECTING``: the opening handshake (:class:`ServerConnection`,
  :class:`ClientConnection`);
* ``OPEN``: messages both ways;
* ``CLOSING``: we sent a close frame and wait for the peer's;
* ``CLOSED``: both close frames were exchanged, the connection failed, or
  the transport ended.

Errors by the peer never raise: they become a close frame with the code RFC
6455 asks for (1002 protocol error, 1007 invalid UTF-8, 1009 too big, 1011
internal error) in ``data_to_send()``, and ``failure`` tells what happened.
"""

from __future__ import annotations

import codecs
import enum
import logging
import sys
import zlib
from typing import Any, Optional, Protocol, Sequence, Union

from .codec import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameReader,
    Utf8Validator,
    build_frame,
    build_header,
    validate_utf8,
)
from .events import (
    BinaryMessage,
    CloseReceived,
    Event,
    Fragment,
    HandshakeFailed,
    Ping,
    Pong,
    TextMessage,
)
from .exceptions import FrameError, InvalidHandshake, InvalidState, NegotiationError, connection_closed
from .extensions import DEFAULT_DEFLATE, PerMessageDeflate
from .extensions.permessage_deflate import Deflate, MessageTooBig, trim_freed_memory
from .handshake import (
    SubprotocolSelector,
    build_request,
    build_response,
    check_request,
    check_response,
    error_response,
    negotiate_deflate,
    offered_subprotocols,
    select_subprotocol,
)
from .http11 import (
    MAX_BODY_SIZE,
    MAX_HEAD_SIZE,
    MAX_HEADERS,
    MAX_LINE_LENGTH,
    HeadReader,
    HTTPError,
    Request,
    Response,
    parse_request,
    parse_response,
    serialize_request,
    serialize_response,
)

__all__ = [
    "State",
    "Role",
    "MAX_MESSAGE_SIZE",
    "Connection",
    "ServerConnection",
    "ClientConnection",
    "close_code_allowed",
    "MessageSink",
]

logger = logging.getLogger("wsfast")

MAX_MESSAGE_SIZE = 1048576
"""Default ``max_message_size``: 1 MiB (after decompression)."""

_PONG_HEAD = b"\x8a"  # FIN + pong: the first byte of an automatic pong

BY_REFERENCE = 65536
"""Messages from this size on are written by reference (:meth:`Connection.send_parts`)."""

Data = Union[bytes, bytearray, memoryview]


class State(enum.IntEnum):
    """Where a connection stands."""

    CONNECTING = 0
    OPEN = 1
    CLOSING = 2
    CLOSED = 3


class Role(enum.Enum):
    """Which end of the connection we are."""

    SERVER = "server"
    CLIENT = "client"


def close_code_allowed(code: int) -> bool:
    """Whether ``code`` may appear in a close frame (RFC 6455 section 7.4).

    1000-1003 and 1007-1014 are defined, 3000-4999 are for libraries and
    applications; 1004-1006 and 1015 are reserved and never sent.
    """
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


class MessageSink(Protocol):
    """What :attr:`Connection.sink` must provide."""

    def on_text(self, data: Union[str, bytes]) -> None: ...

    def on_binary(self, data: bytes) -> None: ...

    def on_fragment(self, data: Union[str, bytes], text: bool, fin: bool) -> None: ...


_OPEN = State.OPEN
_PARTIAL_HEADER_ONLY = sys.maxsize  # FrameReader.partial(start) past the end: header, no copy
# A fragmented message keeps its fragments as they come, and joins them into
# one bytes object every _JOIN_EVERY non-empty fragments: a million one-byte
# fragments cost about a megabyte, not a million objects, and a message of a
# few fragments is joined once, at its end, as it always was.
_JOIN_EVERY = 256


class Connection:
    """The framing layer of an open connection, in either role.

    Parameters:
        role: :attr:`Role.SERVER` or :attr:`Role.CLIENT` (clients mask what
            they send; servers require masked frames).
        max_message_size: the largest message accepted, in bytes after
            decompression; ``None`` for no limit. Larger: close 1009.
        max_frame_size: the largest frame accepted (default: the message
            limit). Checked on the frame header, before buffering.
        deflate: the negotiated permessage-deflate session, if any.
        text_as_bytes: deliver text messages as validated UTF-8 ``bytes``
            instead of ``str`` (saves a decode for JSON parsers).
        stream_messages: deliver each data frame as a :class:`Fragment` as
            it arrives instead of assembling whole messages.
        state: the initial state (``OPEN`` for a connection that an outside
            server has already upgraded).

    Set :attr:`sink` to an object with ``on_text(data)``, ``on_binary(data)``
    and ``on_fragment(data, text, fin)`` methods to have messages delivered by
    direct calls instead of as events (no event object per message); other
    events are still returned, and the messages that follow one of them in
    the same input are returned as events too (handle the list in order).
    """

    __slots__ = (
        "role",
        "state",
        "max_message_size",
        "max_frame_size",
        "deflate",
        "text_as_bytes",
        "stream_messages",
        "subprotocol",
        "sink",
        "close_sent",
        "close_received",
        "failure",
        "_reader",
        "_mask",
        "_out",
        "_discard",
        "_msg_opcode",
        "_msg_compressed",
        "_msg_parts",
        "_msg_joined",
        "_msg_size",
        "_validator",
        "_decoder",
        "_checked",
        "_send_opcode",
        "_send_compressed",
        "_early",
        "_accepted",
    )

    def __init__(
        self,
        role: Role,
        *,
        max_message_size: Optional[int] = MAX_MESSAGE_SIZE,
        max_frame_size: Optional[int] = None,
        deflate: Optional[Deflate] = None,
        text_as_bytes: bool = False,
        stream_messages: bool = False,
        state: State = State.OPEN,
    ) -> None:
        self.role = role
        self.state = state
        self.max_message_size = max_message_size
        if max_frame_size is None or (max_message_size is not None and max_frame_size > max_message_size):
            max_frame_size = max_message_size
        self.max_frame_size = max_frame_size
        self.deflate: Optional[Deflate] = None
        self.text_as_bytes = text_as_bytes
        self.stream_messages = stream_messages
        self.subprotocol: Optional[str] = None
        #: Receives messages by direct calls when set (see the class docstring).
        self.sink: Optional[MessageSink] = None
        #: ``(code, reason)`` of the close frame sent, once sent.
        self.close_sent: Optional[tuple[int, str]] = None
        #: ``(code, reason)`` of the close frame received, once received.
        self.close_received: Optional[tuple[int, str]] = None
        #: Why we failed the connection: a :class:`FrameError` with the code.
        self.failure: Optional[Exception] = None
        self._reader = FrameReader(max_frame_size, role is Role.SERVER)
        self._use_deflate(deflate)
        self._mask = role is Role.CLIENT
        self._out: list[bytes] = []
        # True while input is not frames: during the opening handshake, and
        # after a close frame or a failure (input is then ignored).
        self._discard = state is State.CONNECTING
        # The incoming fragmented message, if any.
        self._msg_opcode = 0
        self._msg_compressed = False
        # Its data so far: the latest fragments, and the earlier ones joined
        # _JOIN_EVERY at a time (memory follows the message's size, not its
        # number of fragments).
        self._msg_parts: list[bytes] = []
        self._msg_joined: list[bytes] = []
        self._msg_size = 0
        self._validator = Utf8Validator()
        self._decoder: Optional[codecs.IncrementalDecoder] = None
        self._checked = 0  # bytes of the incomplete frame already validated
        # The outgoing fragmented message, if any.
        self._send_opcode = 0
        self._send_compressed = False
        # Bytes that came with the handshake, kept for the first
        # receive_data() once it is over (`_accepted`).
        self._early = b""
        self._accepted = False

    def _use_deflate(self, deflate: Optional[Deflate]) -> None:
        """Adopt the negotiated permessage-deflate session.

        Deflate makes an incompressible message slightly larger (5 bytes per
        stored block, and a peer with a small zlib ``memLevel`` writes blocks
        of 128 bytes), so a compressed frame (RSV1) may exceed
        ``max_frame_size`` by 1/16; the inflated message is still held to
        ``max_message_size``. Uncompressed frames keep ``max_frame_size``.
        """
        self.deflate = deflate
        limit = self.max_frame_size
        if deflate is not None and limit is not None:
            self._reader = FrameReader(limit, self.role is Role.SERVER, limit + limit // 16 + 64)

    # ------------------------------------------------------------ status

    @property
    def close_code(self) -> int:
        """The close code received: 1005 if the close frame had none, 1006
        if no close frame arrived (yet)."""
        return self.close_received[0] if self.close_received else 1006

    @property
    def close_reason(self) -> str:
        """The close reason received, or ``""``."""
        return self.close_received[1] if self.close_received else ""

    @property
    def should_close_transport(self) -> bool:
        """Whether to close the transport once ``data_to_send()`` is written.

        On a server: when the closing handshake is complete or the connection
        failed. A client waits for the server to close the TCP connection
        first (RFC 6455 section 7.1.1), with a timeout of its own, even after
        failing the connection: closing at once, with the server's next
        frames unread, would reset the connection and could destroy the
        close frame (and the messages before it) on their way; only a failed
        opening handshake closes at once.
        """
        if self.role is Role.SERVER:
            return self.failure is not None or self.state is State.CLOSED
        return isinstance(self.failure, InvalidHandshake)

    def bound_pongs(self, paused: bool, limit: int) -> Optional[bytes]:
        """Bound the automatic pongs waiting in :meth:`data_to_send` (RFC 6455
        section 5.5.3 allows answering only the most recent ping) against a
        peer that pings and does not read. ``paused`` (the transport's write
        buffer is full): remove them all and return the pong to the latest
        ping, for the caller to write when writing resumes (unless a close
        frame went out meanwhile). Otherwise, when they come to more than
        ``limit`` bytes, keep only the latest; return ``None``."""
        out = self._out
        pongs = [frame for frame in out if frame[:1] == _PONG_HEAD]
        if not pongs:
            return None
        if paused:
            out[:] = [frame for frame in out if frame[:1] != _PONG_HEAD]
            return pongs[-1]
        if sum(map(len, pongs)) > limit:
            latest = pongs[-1]
            out[:] = [frame for frame in out if frame[:1] != _PONG_HEAD or frame is latest]
        return None

    def release_idle_memory(self, trim: bool = True) -> bool:
        """Free the permessage-deflate zlib state (about 50 KB at the default
        settings) of a connection that neither compressed nor inflated a
        message since the previous call; otherwise only note that it did not
        yet. Meant to be called from a periodic timer shared by many
        connections (every wsfast API calls it at each keepalive tick):
        every N seconds, it frees a connection silent for N to 2N seconds,
        and costs sending and receiving nothing but a flag. Context takeover
        keeps working: the next compressed message re-creates the zlib
        object with the last window of that direction's history as its
        preset dictionary (:class:`~wsfast.extensions.Deflate`). A direction
        inside a fragmented message keeps its state. Call it where
        ``send_*`` and ``receive_data`` are called (not concurrently with
        them). Returns whether anything was freed (always ``False`` without
        deflate).

        ``trim``: when this freed something, also call
        :func:`~wsfast.extensions.trim_freed_memory` (glibc: once 32 MiB of
        zlib state were freed since the last trim, ``malloc_trim(0)`` gives
        it back to the system; a pause of a few ms, up to about 50 ms with
        20,000 connections' worth of freed memory). ``False`` leaves the
        memory to glibc, which reuses it for later zlib objects: for a
        caller that sweeps many connections and trims once after.
        """
        deflate = self.deflate
        if deflate is None or not deflate.release_if_idle():
            return False
        if trim:
            trim_freed_memory()
        return True

    def data_to_send(self) -> bytes:
        """The automatic replies queued since the last call (often ``b""``)."""
        out = self._out
        if not out:
            return b""
        self._out = []
        return out[0] if len(out) == 1 else b"".join(out)

    # ------------------------------------------------------------ receiving

    def receive_data(self, data: Data) -> list[Event]:
        """Process bytes read from the transport; return the events."""
        if self._discard:
            return self._receive_unframed(data)
        sink = self.sink
        try:
            if sink is not None and not self._msg_opcode and not self._checked and not self.stream_messages:
                # Whole messages go straight to the sink; the rest comes back.
                frames = self._reader.feed_dispatch(data, sink, not self.text_as_bytes)
            else:
                frames = self._reader.feed(data)
        except FrameError as exc:
            return self._frame_error(exc)
        return self._frames_received(frames)

    def _frames_received(self, frames: list[tuple[int, bool, int, bytes]]) -> list[Event]:
        """The events of the frames a read completed (and a check of the
        received part of an incomplete text frame)."""
        events: list[Event] = []
        if frames:
            self._handle_frames(frames, events)
        if self._msg_opcode != OP_BINARY and self._reader.buffered and not self._discard:
            self._check_partial()
        return events

    def _frame_error(self, exc: FrameError) -> list[Event]:
        """The reader failed: the frames before the bad one, then the failure."""
        events: list[Event] = []
        self._handle_frames(exc.frames, events)
        if not self._discard:  # bytes after a close frame are ignored, not errors
            self._fail(exc.code, exc.reason)
        return events

    def _receive_unframed(self, data: Data) -> list[Event]:
        """Input outside the framing phase: the handshake subclasses read the
        HTTP head with it; once the handshake is over, the first call
        processes the frames that came with it; after a close or a failure,
        input is ignored."""
        if self._accepted:
            early, self._early = self._early + bytes(data), b""
            self._accepted = False
            self._discard = False
            return self.receive_data(early)
        return []

    def receive_eof(self) -> list[Event]:
        """The transport ended: the connection is closed (1006 if abruptly)."""
        self.state = State.CLOSED
        self._discard = True
        return []

    def _handle_frames(self, frames: list[tuple[int, bool, int, bytes]], events: list[Event]) -> None:
        """Handle frames; once an event is returned (a ping, a pong, a
        close), the messages after it are returned as events too, not given
        to the sink, so that whoever handles the events sees them in order."""
        sink = self.sink
        for opcode, fin, rsv, payload in frames:
            if self._discard:
                return
            if events:
                sink = None
            if opcode == OP_TEXT or opcode == OP_BINARY:
                if self._msg_opcode:
                    self._fail(1002, "new data frame inside a fragmented message")
                elif rsv and (rsv != 4 or self.deflate is None):
                    self._fail(1002, "reserved bits set without a negotiated extension")
                elif fin and not rsv and not self.stream_messages:
                    if opcode == OP_BINARY:
                        if sink is None:
                            events.append(BinaryMessage(payload))
                        else:
                            sink.on_binary(payload)
                    else:
                        self._checked = 0
                        self._deliver_text(payload, events, sink)
                elif fin and not self.stream_messages:
                    self._inflate_whole(opcode, payload, events, sink)
                else:
                    self._msg_opcode = opcode
                    self._msg_compressed = rsv == 4
                    self._msg_size = 0
                    if opcode == OP_TEXT:
                        skip = self._checked
                        if not skip:
                            self._validator.reset()
                        self._fragment(payload, fin, events, skip, sink)
                    else:
                        self._fragment(payload, fin, events, 0, sink)
            elif opcode == OP_CONT:
                if not self._msg_opcode:
                    self._fail(1002, "continuation frame without a message to continue")
                elif rsv:
                    self._fail(1002, "reserved bits set on a continuation frame")
                else:
                    self._fragment(payload, fin, events, self._checked, sink)
            elif rsv:
                self._fail(1002, "reserved bits set on a control frame")
            elif opcode == OP_PING:
                events.append(Ping(payload))
                if self.close_sent is None:
                    self._out.append(build_frame(OP_PONG, payload, True, 0, self._mask))
            elif opcode == OP_PONG:
                events.append(Pong(payload))
            else:
                self._receive_close(payload, events)

    def _inflate_whole(self, opcode: int, payload: bytes, events: list[Event], sink: Optional[MessageSink]) -> None:
        """A whole compressed message in one frame (the common case): inflated
        to at most ``max_message_size`` bytes (else 1009), then delivered as
        an uncompressed one is (text: the decoding is the UTF-8 check, 1007),
        without the fragments' bookkeeping and incremental validation."""
        self._checked = 0
        data = self._inflate(payload, True, self.max_message_size)
        if data is None:
            return
        if opcode == OP_BINARY:
            if sink is None:
                events.append(BinaryMessage(data))
            else:
                sink.on_binary(data)
        else:
            self._deliver_text(data, events, sink)

    def _inflate(self, payload: bytes, fin: bool, limit: Optional[int]) -> Optional[bytes]:
        """Inflate a compressed frame's payload to at most ``limit`` bytes;
        ``None`` once the connection failed (1009 over the limit, 1002 for
        invalid data)."""
        assert self.deflate is not None
        try:
            return self.deflate.decompress(payload, fin, limit)
        except MessageTooBig:
            self._fail(1009, f"message larger than max_message_size={self.max_message_size}")
        except zlib.error as exc:
            self._fail(1002, f"invalid compressed data: {exc}")
        return None

    def _deliver_text(self, payload: bytes, events: list[Event], sink: Optional[MessageSink]) -> None:
        text: Union[str, bytes] = payload
        if self.text_as_bytes:
            if not validate_utf8(payload):
                self._fail(1007, "invalid UTF-8 in text message")
                return
        else:
            try:
                text = payload.decode()
            except UnicodeDecodeError:
                self._fail(1007, "invalid UTF-8 in text message")
                return
        if sink is None:
            events.append(TextMessage(text))
        else:
            sink.on_text(text)

    def _fragment(self, payload: bytes, fin: bool, events: list[Event], skip: int, sink: Optional[MessageSink]) -> None:
        """Add a frame to the incoming message; ``skip`` bytes were validated."""
        self._checked = 0
        text = self._msg_opcode == OP_TEXT
        data = payload
        if self._msg_compressed:
            limit = None if self.max_message_size is None else self.max_message_size - self._msg_size
            inflated = self._inflate(payload, fin, limit)
            if inflated is None:
                return
            data = inflated
        self._msg_size += len(data)
        if self.max_message_size is not None and self._msg_size > self.max_message_size:
            self._fail(1009, f"message larger than max_message_size={self.max_message_size}")
            return
        if text:
            if not self._validator.feed(data[skip:] if skip else data):
                self._fail(1007, "invalid UTF-8 in text message")
                return
            if fin and not self._validator.complete:
                self._fail(1007, "text message ends inside a UTF-8 sequence")
                return
        if self.stream_messages:
            chunk: Union[str, bytes] = data
            if text and not self.text_as_bytes:
                if self._decoder is None:
                    self._decoder = codecs.getincrementaldecoder("utf-8")()
                chunk = self._decoder.decode(data, fin)
            if sink is None:
                events.append(Fragment(chunk, text, fin))
            else:
                sink.on_fragment(chunk, text, fin)
        elif data:
            parts = self._msg_parts
            parts.append(data)
            if len(parts) >= _JOIN_EVERY:
                self._msg_joined.append(b"".join(parts))
                parts.clear()
        if fin:
            if not self.stream_messages:
                parts = self._msg_parts
                self._msg_parts = []
                if self._msg_joined:
                    parts = self._msg_joined + parts
                    self._msg_joined = []
                message = parts[0] if len(parts) == 1 else b"".join(parts)
                del parts  # before decoding: the parts, the message and its text never all at once
                if not text:
                    if sink is None:
                        events.append(BinaryMessage(message))
                    else:
                        sink.on_binary(message)
                else:
                    decoded = message if self.text_as_bytes else message.decode()
                    if sink is None:
                        events.append(TextMessage(decoded))
                    else:
                        sink.on_text(decoded)
            self._msg_opcode = 0
            self._decoder = None

    def _check_partial(self) -> None:
        """Check the received part of an incomplete text frame (fail fast).

        The checks are those of the complete frame, in the same order, so
        that the outcome does not depend on how the bytes were split: a frame
        that will fail with 1002 once complete (a data frame inside a
        fragmented message, RSV bits on a continuation) is left to fail then;
        a message that the frame takes past ``max_message_size`` fails with
        1009 at the header, before its bytes are validated; only then does
        invalid UTF-8 fail with 1007, at the first bad byte. Compressed frames
        are checked once complete and inflated.
        """
        head = self._reader.partial(_PARTIAL_HEADER_ONLY)
        if head is None:
            return
        opcode, fin, rsv, length, _ = head
        if rsv:
            return  # compressed, or an error that the complete frame reports
        if opcode == OP_TEXT:
            if self._msg_opcode:
                return  # an error that the complete frame reports
            size = length
        elif opcode != OP_CONT or self._msg_opcode != OP_TEXT or self._msg_compressed:
            return
        else:
            size = self._msg_size + length
        limit = self.max_message_size
        if limit is not None and size > limit:
            self._fail(1009, f"message larger than max_message_size={limit}")
            return
        if opcode == OP_TEXT and not self._checked:
            self._validator.reset()
        partial = self._reader.partial(self._checked)
        assert partial is not None
        chunk = partial[4]
        if chunk:
            if not self._validator.feed(chunk):
                self._fail(1007, "invalid UTF-8 in text message")
                return
            self._checked += len(chunk)

    def _receive_close(self, payload: bytes, events: list[Event]) -> None:
        if len(payload) == 1:
            self._fail(1002, "close frame with a 1-byte payload")
            return
        code, reason = 1005, ""
        if payload:
            code = int.from_bytes(payload[:2], "big")
            if not close_code_allowed(code):
                self._fail(1002, f"invalid close code {code}")
                return
            try:
                reason = payload[2:].decode()
            except UnicodeDecodeError:
                self._fail(1007, "invalid UTF-8 in close reason")
                return
        self.close_received = (code, reason)
        events.append(CloseReceived(code, reason))
        if self.close_sent is None:
            # Echo the code (RFC 6455 section 5.5.1); an incomplete message is dropped.
            self.close_sent = (code, "")
            reply = b"" if code == 1005 else payload[:2]
            self._out.append(build_frame(OP_CLOSE, reply, True, 0, self._mask))
        self.state = State.CLOSED
        self._discard = True

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection (RFC 6455 section 7.1.7): close frame, no more input."""
        logger.debug("failing connection: %d %s", code, reason)
        self.failure = FrameError(code, reason)
        if self.close_sent is None:
            self.close_sent = (code, reason)
            self._out.append(build_frame(OP_CLOSE, _close_payload(code, reason), True, 0, self._mask))
        self.state = State.CLOSED if self.close_received else State.CLOSING
        self._discard = True
        self._msg_parts = []
        self._msg_joined = []

    # ------------------------------------------------------------ sending

    def _check_send(self) -> None:
        if self.state is not State.OPEN:
            if self.state is State.CONNECTING:
                raise InvalidState("the opening handshake is not complete")
            raise connection_closed(self.close_code, self.close_reason, self.close_sent)

    def _compress(self, compress: Optional[bool], size: int) -> bool:
        deflate = self.deflate
        if deflate is None or compress is False:
            return False
        return compress is True or size >= deflate.threshold

    def send_text(self, data: Union[str, Data], *, fin: bool = True, compress: Optional[bool] = None) -> bytes:
        """Frame a text message (or its first fragment, with ``fin=False``).

        ``data`` is ``str``, or ``bytes`` already encoded in UTF-8 (not
        checked). ``compress`` overrides the compression threshold.
        """
        payload = data.encode() if isinstance(data, str) else data
        if fin and compress is None and self._plain(len(payload)):
            frame = build_frame(OP_TEXT, payload, True, 0, self._mask)
            return self._after_replies(frame) if self._out else frame
        return self._send_data(OP_TEXT, payload, fin, compress)

    def send_binary(self, data: Data, *, fin: bool = True, compress: Optional[bool] = None) -> bytes:
        """Frame a binary message (or its first fragment, with ``fin=False``)."""
        if fin and compress is None and self._plain(len(data)):
            frame = build_frame(OP_BINARY, data, True, 0, self._mask)
            return self._after_replies(frame) if self._out else frame
        return self._send_data(OP_BINARY, data, fin, compress)

    def send_parts(self, data: Union[str, Data], *, text: bool = False) -> list[Data]:
        """Frame a whole message as the buffers to write, in order, without
        copying a large payload into the frame.

        On a server (frames are not masked), a ``str`` or ``bytes`` message
        (immutable: a transport may keep a reference to what it could not
        send yet) of at least :data:`BY_REFERENCE` bytes that is not
        compressed becomes
        ``[head, data]``: the frame header (behind any queued automatic
        replies) and ``data`` itself, to be written one after the other (or
        with ``writelines``); this saves allocating and filling a second
        buffer of the payload's size. Anything else becomes ``[frame]``, as
        :meth:`send_text` or :meth:`send_binary` would return it.
        """
        payload = data.encode() if text and isinstance(data, str) else data
        size = len(payload)
        if self._mask or size < BY_REFERENCE or type(payload) is not bytes or not self._plain(size):
            return [self.send_text(payload) if text else self.send_binary(payload)]  # type: ignore[arg-type]
        head = build_header(OP_TEXT if text else OP_BINARY, size, True, 0, None)
        return [self._after_replies(head) if self._out else head, payload]

    def _after_replies(self, frame: bytes) -> bytes:
        """``frame`` behind the automatic replies queued before it, so that
        a pong to a ping received earlier goes out before it."""
        out = self._out
        if not out:
            return frame
        self._out = []
        out.append(frame)
        return b"".join(out)

    def _plain(self, size: int) -> bool:
        """Whether a whole message of ``size`` bytes goes out as one plain
        frame: the fast path of ``send_text`` and ``send_binary``."""
        deflate = self.deflate
        return self.state is _OPEN and not self._send_opcode and (deflate is None or size < deflate.threshold)

    def send_continuation(self, data: Union[str, Data], *, fin: bool) -> bytes:
        """Frame the next fragment of the message started with ``fin=False``."""
        self._check_send()
        if not self._send_opcode:
            raise InvalidState("no fragmented message to continue")
        payload = data.encode() if isinstance(data, str) else data
        rsv = 0
        if self._send_compressed:
            assert self.deflate is not None
            payload = self.deflate.compress(bytes(payload), fin)
        if fin:
            self._send_opcode = 0
        return self._after_replies(build_frame(OP_CONT, payload, fin, rsv, self._mask))

    def _send_data(self, opcode: int, payload: Data, fin: bool, compress: Optional[bool]) -> bytes:
        self._check_send()
        if self._send_opcode:
            raise InvalidState("a fragmented message is being sent: finish it with send_continuation()")
        rsv = 0
        if self.deflate is not None and self._compress(compress, len(payload)):
            payload = self.deflate.compress(bytes(payload), fin)
            rsv = 4
        if not fin:
            self._send_opcode = opcode
            self._send_compressed = rsv == 4
        return self._after_replies(build_frame(opcode, payload, fin, rsv, self._mask))

    def send_ping(self, data: Data = b"") -> bytes:
        """Frame a ping (at most 125 bytes of payload)."""
        self._check_send()
        return self._after_replies(build_frame(OP_PING, data, True, 0, self._mask))

    def send_pong(self, data: Data = b"") -> bytes:
        """Frame an unsolicited pong (pings are answered automatically)."""
        self._check_send()
        return self._after_replies(build_frame(OP_PONG, data, True, 0, self._mask))

    def send_close(self, code: Optional[int] = 1000, reason: str = "") -> bytes:
        """Start the closing handshake (RFC 6455 section 7.1.2).

        ``code`` ``None`` sends a close frame without a code (the peer sees
        1005). The reason must fit in 123 bytes of UTF-8. Once a close frame
        was sent, returns ``b""``: closing is idempotent.
        """
        if code is None:
            if reason:
                raise ValueError("a close reason needs a close code")
            payload = b""
        else:
            if not close_code_allowed(code):
                raise ValueError(f"close code {code} may not be sent")
            payload = _close_payload(code, reason)
            if len(payload) > 125:
                raise ValueError("close reason longer than 123 bytes of UTF-8")
        if self.state is State.CONNECTING:
            raise InvalidState("the opening handshake is not complete")
        if self.close_sent is not None or self.state is State.CLOSED:
            return b""
        self.close_sent = (1005 if code is None else code, reason)
        self.state = State.CLOSING
        return self._after_replies(build_frame(OP_CLOSE, payload, True, 0, self._mask))


def _close_payload(code: int, reason: str) -> bytes:
    return code.to_bytes(2, "big") + reason.encode()


# ---------------------------------------------------------------- handshake


class ServerConnection(Connection):
    """A server connection, from the upgrade request on.

    ``receive_data`` first reads the HTTP request and reports it as a
    :class:`~wsfast.http11.Request` event; answer it with :meth:`accept`
    (the handshake checks run there) or :meth:`reject`. A server that has
    parsed the request itself (uvicorn, hypercorn) builds a ``Request`` and
    calls :meth:`accept` directly, without ``receive_data``.

    Parameters, beyond :class:`Connection`'s: ``subprotocols`` in order of
    preference, ``select_subprotocol`` to choose otherwise, ``origins`` (the
    allowed ``Origin`` values; ``None`` allows any), ``deflate`` (the
    permessage-deflate configuration; ``None`` disables it), ``server_header``
    and the HTTP limits ``max_line_length``, ``max_headers``,
    ``max_head_size``.
    """

    __slots__ = (
        "subprotocols",
        "select_subprotocol",
        "origins",
        "deflate_config",
        "server_header",
        "request",
        "response",
        "_head",
    )

    def __init__(
        self,
        *,
        subprotocols: Sequence[str] = (),
        select_subprotocol: Optional[SubprotocolSelector] = None,
        origins: Optional[Sequence[Optional[str]]] = None,
        deflate: Optional[PerMessageDeflate] = DEFAULT_DEFLATE,
        server_header: Optional[str] = None,
        max_line_length: int = MAX_LINE_LENGTH,
        max_headers: int = MAX_HEADERS,
        max_head_size: int = MAX_HEAD_SIZE,
        **options: Any,
    ) -> None:
        super().__init__(Role.SERVER, state=State.CONNECTING, **options)
        self.subprotocols = subprotocols
        self.select_subprotocol = select_subprotocol
        self.origins = origins
        self.deflate_config = deflate
        self.server_header = server_header
        self.request: Optional[Request] = None
        self.response: Optional[Response] = None
        self._head: Optional[HeadReader] = HeadReader(max_line_length, max_headers, max_head_size)

    def _receive_unframed(self, data: Data) -> list[Event]:
        if self._accepted or self.state is not State.CONNECTING:
            return super()._receive_unframed(data)
        if self._head is None:  # request read, waiting for accept() or reject()
            self._early += bytes(data)
            return []
        try:
            done = self._head.feed(bytes(data))
            if done is None:
                return []
            head, self._early = done
            self._head = None
            self.request = parse_request(head)
        except HTTPError as exc:
            self._reject(error_response(exc.status, exc.message))
            return [HandshakeFailed(InvalidHandshake(exc.message, self.response))]
        return [self.request]

    def accept(
        self,
        request: Optional[Request] = None,
        *,
        subprotocol: Optional[str] = None,
        extra_headers: Sequence[tuple[str, str]] = (),
    ) -> bytes:
        """Check the upgrade request and return the 101 response to write.

        ``subprotocol`` forces a choice (it must have been offered); by
        default the configured rule chooses. Raises
        :class:`~wsfast.exceptions.InvalidHandshake`; its ``response`` is the
        error to send with :meth:`reject`. After writing the response, call
        ``receive_data(b"")``: it returns the events of any frames that came
        with the request.
        """
        if self.state is not State.CONNECTING:
            raise InvalidState("the handshake is over")
        request = request or self.request
        if request is None:
            raise InvalidState("no request to accept")
        self.request = request
        key = check_request(request, self.origins)
        try:
            if subprotocol is None:
                subprotocol = select_subprotocol(request, self.subprotocols, self.select_subprotocol)
            elif subprotocol not in offered_subprotocols(request):
                raise NegotiationError(f"subprotocol {subprotocol!r} was not offered")
        except NegotiationError as exc:  # the server's own mistake
            exc.response = error_response(500, "Internal Server Error")
            raise
        extensions, session = negotiate_deflate(request, self.deflate_config)
        response = build_response(key, subprotocol, extensions, extra_headers, self.server_header)
        data = serialize_response(response)  # may raise ValueError: nothing changed yet
        self.response = response
        self.subprotocol = subprotocol
        self._use_deflate(session)
        self.state = State.OPEN
        # Kept for the connection's life (ws.request, ws.response): compactly.
        request.headers.pack()
        response.headers.pack()
        self._head = None
        self._accepted = True  # input stays "unframed" until the early bytes are processed
        return data

    def reject(self, response: Response) -> bytes:
        """Answer the request with an HTTP response instead of upgrading."""
        if self.state is not State.CONNECTING:
            raise InvalidState("the handshake is over")
        self._reject(response)
        return self.data_to_send()

    def _reject(self, response: Response) -> None:
        self.response = response
        self._out.append(serialize_response(response))
        self.state = State.CLOSED
        self._discard = True
        self.failure = InvalidHandshake(f"rejected with HTTP {response.status}", response)


class ClientConnection(Connection):
    """A client connection, from the upgrade request on.

    ``data_to_send()`` first returns the upgrade request; ``receive_data``
    reads the response and reports it as a
    :class:`~wsfast.http11.Response` event (then any frames that followed;
    with a :attr:`sink` set, those wait for the next ``receive_data``, so
    that the front end can get ready for them first),
    or a :class:`~wsfast.events.HandshakeFailed` event whose error carries
    the server's response (status, headers and body).

    Parameters, beyond :class:`Connection`'s: ``host`` (the ``Host``
    header), ``target`` (path and query), ``origin``, ``subprotocols`` to
    offer, ``deflate`` (the permessage-deflate offer; ``None`` disables it),
    ``extra_headers``, ``user_agent``, ``max_body_size`` (how much of an
    error response's body to keep) and the HTTP limits.
    """

    __slots__ = ("subprotocols", "deflate_config", "request", "response", "_key", "_head", "_body_left", "_max_body")

    def __init__(
        self,
        host: str,
        target: str = "/",
        *,
        origin: Optional[str] = None,
        subprotocols: Sequence[str] = (),
        deflate: Optional[PerMessageDeflate] = DEFAULT_DEFLATE,
        extra_headers: Sequence[tuple[str, str]] = (),
        user_agent: Optional[str] = None,
        key: Optional[str] = None,
        max_line_length: int = MAX_LINE_LENGTH,
        max_headers: int = MAX_HEADERS,
        max_head_size: int = MAX_HEAD_SIZE,
        max_body_size: int = MAX_BODY_SIZE,
        **options: Any,
    ) -> None:
        super().__init__(Role.CLIENT, state=State.CONNECTING, **options)
        self.subprotocols = subprotocols
        self.deflate_config = deflate
        self.request, self._key = build_request(
            host,
            target,
            key=key,
            origin=origin,
            subprotocols=subprotocols,
            deflate=deflate,
            extra_headers=extra_headers,
            user_agent=user_agent,
        )
        self.response: Optional[Response] = None
        self._head: Optional[HeadReader] = HeadReader(max_line_length, max_headers, max_head_size)
        self._body_left = 0  # bytes of an error response's body still to read
        self._max_body = max_body_size
        self._out.append(serialize_request(self.request))

    def _receive_unframed(self, data: Data) -> list[Event]:
        if self._accepted or self.state is not State.CONNECTING:
            return super()._receive_unframed(data)
        if self.response is not None:  # reading an error response's body
            return self._read_body(bytes(data))
        assert self._head is not None
        try:
            done = self._head.feed(bytes(data))
            if done is None:
                return []
            head, rest = done
            response = parse_response(head)
        except HTTPError as exc:
            return self._handshake_failed(InvalidHandshake(f"invalid HTTP response: {exc.message}"))
        self.response = response
        if response.status != 101:
            length = response.headers.get("Content-Length")
            self._body_left = int(length) if length and length.isdigit() else self._max_body
            return self._read_body(rest)
        try:
            self.subprotocol, session = check_response(response, self._key, self.subprotocols, self.deflate_config)
            self._use_deflate(session)
        except InvalidHandshake as exc:
            return self._handshake_failed(exc)
        self.state = State.OPEN
        self._head = None
        self.request.headers.pack()  # kept for the connection's life: compactly
        response.headers.pack()
        if self.sink is not None:
            # Messages go to the sink: let the front end open first (on_open),
            # then its receive_data(b"") processes the frames that came along.
            self._early = rest
            self._accepted = True
            return [response]
        self._discard = False
        events: list[Event] = [response]
        if rest:
            events += self.receive_data(rest)
        return events

    def receive_eof(self) -> list[Event]:
        if self.state is State.CONNECTING and self.response is not None:
            self._body_left = 0
            return self._read_body(b"")
        if self.state is State.CONNECTING:
            super().receive_eof()
            error = InvalidHandshake("connection closed during the opening handshake")
            error.__cause__ = EOFError()  # tells it apart from a refusal (wsfast.retry retries it)
            return [HandshakeFailed(error)]
        return super().receive_eof()

    def _read_body(self, data: bytes) -> list[Event]:
        assert self.response is not None
        keep = min(len(data), self._body_left, self._max_body - len(self.response.body))
        self.response.body += data[:keep]
        self._body_left -= min(len(data), self._body_left)
        if self._body_left > 0 and len(self.response.body) < self._max_body:
            return []
        status = self.response.status
        return self._handshake_failed(
            InvalidHandshake(f"server rejected the WebSocket upgrade: HTTP {status}", self.response)
        )

    def _handshake_failed(self, error: InvalidHandshake) -> list[Event]:
        self.state = State.CLOSED
        self._discard = True
        self.failure = error
        return [HandshakeFailed(error)]
