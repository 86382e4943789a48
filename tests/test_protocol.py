"""Tests of the framing state machine (:class:`wsfast.protocol.Connection`).

Every rule is checked in both roles: ``role`` is the side under test, and the
frames it receives are encoded here, independently of wsfast, the way its
peer must send them (a client masks, a server does not). What it sends back
is decoded here too. The codec is whichever :mod:`wsfast.codec` picked at
import; CI runs this file once per codec (``WSFAST_PURE_PYTHON=1`` for the
pure-Python one).
"""

from __future__ import annotations

import os
import random
from typing import Any, Optional, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsfast import codec
from wsfast.events import BinaryMessage, CloseReceived, Fragment, Ping, Pong, TextMessage
from wsfast.exceptions import ConnectionClosed, FrameError, InvalidState
from wsfast.extensions import PerMessageDeflate
from wsfast.extensions.permessage_deflate import Deflate
from wsfast.protocol import (
    BY_REFERENCE,
    MAX_MESSAGE_SIZE,
    ClientConnection,
    Connection,
    Role,
    ServerConnection,
    State,
    close_code_allowed,
)

from .wire import BINARY, CLOSE, CONT, MASK, PING, PONG, TEXT, Frame, decode, encode, peer_frame


def sent(conn: Connection, data: Optional[bytes] = None) -> list[Frame]:
    """Decode what ``conn`` sent (``data``, or its ``data_to_send()``)."""
    return decode(conn.data_to_send() if data is None else data, conn.role is Role.CLIENT)


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return code.to_bytes(2, "big") + reason


def assert_failed(conn: Connection, code: int) -> None:
    """``conn`` failed the connection with ``code``: one close frame queued."""
    frames = sent(conn)
    assert len(frames) == 1, frames
    opcode, fin, rsv, payload = frames[0]
    assert (opcode, fin, rsv) == (CLOSE, True, 0)
    assert int.from_bytes(payload[:2], "big") == code
    payload[2:].decode()  # the reason is valid UTF-8
    assert len(payload) <= 125
    assert isinstance(conn.failure, FrameError) and conn.failure.code == code
    assert conn.state in (State.CLOSING, State.CLOSED)
    # A server closes the TCP connection; a client waits for the server to.
    assert conn.should_close_transport is (conn.role is Role.SERVER)
    assert conn.close_sent is not None and conn.close_sent[0] == code


@pytest.fixture(params=[Role.SERVER, Role.CLIENT], ids=["server", "client"])
def role(request: pytest.FixtureRequest) -> Role:
    return request.param


def test_codec_matches_the_environment() -> None:
    """The suite runs once per codec: make sure each run uses the intended one."""
    if os.environ.get("WSFAST_PURE_PYTHON") == "1":
        assert codec.IMPLEMENTATION == "python"
    elif os.environ.get("WSFAST_REQUIRE_SPEEDUPS") == "1":
        assert codec.IMPLEMENTATION == "cython"
    assert codec.IMPLEMENTATION in ("python", "cython")


# ---------------------------------------------------------------- messages


def test_text_and_binary_messages(role: Role) -> None:
    conn = Connection(role)
    data = (
        peer_frame(role, TEXT, "héllo €𝄞".encode())
        + peer_frame(role, BINARY, b"\x00\xff")
        + peer_frame(role, TEXT, b"")
    )
    assert conn.receive_data(data) == [TextMessage("héllo €𝄞"), BinaryMessage(b"\x00\xff"), TextMessage("")]
    assert conn.data_to_send() == b""
    assert conn.failure is None and conn.state is State.OPEN


class Sink:
    def __init__(self) -> None:
        self.got: list[Any] = []

    def on_text(self, data: Any) -> None:
        self.got.append(TextMessage(data))

    def on_binary(self, data: bytes) -> None:
        self.got.append(BinaryMessage(data))

    def on_fragment(self, data: Any, text: bool, fin: bool) -> None:
        self.got.append(Fragment(data, text, fin))


@pytest.mark.parametrize("chunked", [False, True])
def test_sink_gets_messages_and_the_events_keep_order(role: Role, chunked: bool) -> None:
    """With a sink, messages are calls; after a ping or pong in the same
    input, the messages come back as events behind it, in order."""
    conn = Connection(role)
    conn.sink = sink = Sink()
    data = (
        peer_frame(role, BINARY, b"a")
        + peer_frame(role, TEXT, b"t")
        + peer_frame(role, PING, b"p")
        + peer_frame(role, BINARY, b"b")
        + peer_frame(role, TEXT, b"x", fin=False)
        + peer_frame(role, CONT, b"y")
        + peer_frame(role, PONG, b"q")
        + peer_frame(role, BINARY, b"c")
    )
    if chunked:
        events = [event for byte in range(len(data)) for event in conn.receive_data(data[byte : byte + 1])]
        assert events == [Ping(b"p"), Pong(b"q")]
        assert sink.got == [
            BinaryMessage(b"a"),
            TextMessage("t"),
            BinaryMessage(b"b"),
            TextMessage("xy"),
            BinaryMessage(b"c"),
        ]
    else:
        events = conn.receive_data(data)
        assert sink.got == [BinaryMessage(b"a"), TextMessage("t")]
        assert events == [Ping(b"p"), BinaryMessage(b"b"), TextMessage("xy"), Pong(b"q"), BinaryMessage(b"c")]
    assert conn.sink is sink
    assert conn.receive_data(peer_frame(role, BINARY, b"d")) == []
    assert sink.got[-1] == BinaryMessage(b"d")


@pytest.mark.parametrize("size", [125, 126, 65535, 65536, 70_000])
def test_extended_lengths(role: Role, size: int) -> None:
    payload = random.Random(size).randbytes(size)
    conn = Connection(role)
    assert conn.receive_data(peer_frame(role, BINARY, payload)) == [BinaryMessage(payload)]


def test_message_split_at_every_byte(role: Role) -> None:
    data = (
        peer_frame(role, TEXT, "κόσμε".encode(), fin=False)
        + peer_frame(role, PING, b"x")
        + peer_frame(role, CONT, b"!")
    )
    for cut in range(len(data) + 1):
        conn = Connection(role)
        events = conn.receive_data(data[:cut]) + conn.receive_data(data[cut:])
        assert events == [Ping(b"x"), TextMessage("κόσμε!")]


def test_fragmented_message(role: Role) -> None:
    conn = Connection(role)
    assert conn.receive_data(peer_frame(role, BINARY, b"ab", fin=False)) == []
    assert conn.receive_data(peer_frame(role, CONT, b"", fin=False)) == []
    assert conn.receive_data(peer_frame(role, CONT, b"cd", fin=False)) == []
    assert conn.receive_data(peer_frame(role, CONT, b"e")) == [BinaryMessage(b"abcde")]
    assert conn.receive_data(peer_frame(role, TEXT, b"x", fin=False) + peer_frame(role, CONT, b"y")) == [
        TextMessage("xy")
    ]


def test_frames_before_a_bad_frame_in_the_same_read_are_delivered(role: Role) -> None:
    conn = Connection(role)
    data = peer_frame(role, TEXT, b"ok") + peer_frame(role, PING, b"p") + peer_frame(role, 0x3, b"")
    assert conn.receive_data(data) == [TextMessage("ok"), Ping(b"p")]
    frames = sent(conn)
    assert frames[0] == (PONG, True, 0, b"p")
    assert frames[1][0] == CLOSE and frames[1][3][:2] == close_payload(1002)


# ---------------------------------------------------------------- masking


def test_server_rejects_unmasked_frames() -> None:
    conn = Connection(Role.SERVER)
    assert conn.receive_data(encode(TEXT, b"hello")) == []
    assert_failed(conn, 1002)


def test_client_rejects_masked_frames() -> None:
    conn = Connection(Role.CLIENT)
    assert conn.receive_data(encode(TEXT, b"hello", mask=MASK)) == []
    assert_failed(conn, 1002)


@pytest.mark.parametrize("opcode", [PING, CLOSE, PONG])
def test_masking_rule_applies_to_control_frames(role: Role, opcode: int) -> None:
    conn = Connection(role)
    wrong = None if role is Role.SERVER else MASK
    conn.receive_data(encode(opcode, close_payload(1000) if opcode == CLOSE else b"", mask=wrong))
    assert_failed(conn, 1002)


def test_what_each_role_sends_is_masked_correctly(role: Role) -> None:
    conn = Connection(role)
    outputs = [
        conn.send_text("hi"),
        conn.send_binary(b"\x01" * 300),
        conn.send_ping(b"p"),
        conn.send_pong(b"q"),
    ]
    frames = [sent(conn, out)[0] for out in outputs]  # decode() checks the mask bit
    assert frames == [
        (TEXT, True, 0, b"hi"),
        (BINARY, True, 0, b"\x01" * 300),
        (PING, True, 0, b"p"),
        (PONG, True, 0, b"q"),
    ]
    if role is Role.CLIENT:
        keys = {conn.send_binary(b"same")[2:6] for _ in range(8)}
        assert len(keys) > 1, "masking keys are not fresh"


# ---------------------------------------------------------------- ping, pong


@pytest.mark.parametrize("payload", [b"", b"x", b"\x00\xffpayload", bytes(range(125))])
def test_ping_is_answered_with_its_payload(role: Role, payload: bytes) -> None:
    conn = Connection(role)
    assert conn.receive_data(peer_frame(role, PING, payload)) == [Ping(payload)]
    assert sent(conn) == [(PONG, True, 0, payload)]
    assert conn.data_to_send() == b""


def test_several_pings_answered_in_order(role: Role) -> None:
    conn = Connection(role)
    conn.receive_data(peer_frame(role, PING, b"1") + peer_frame(role, PING, b"2"))
    assert sent(conn) == [(PONG, True, 0, b"1"), (PONG, True, 0, b"2")]


def test_pong_is_reported_not_answered(role: Role) -> None:
    conn = Connection(role)
    assert conn.receive_data(peer_frame(role, PONG, b"ack")) == [Pong(b"ack")]
    assert conn.data_to_send() == b""


def test_send_ping_payload_limit(role: Role) -> None:
    conn = Connection(role)
    assert sent(conn, conn.send_ping(b"x" * 125)) == [(PING, True, 0, b"x" * 125)]
    with pytest.raises(ValueError):
        conn.send_ping(b"x" * 126)


def test_ping_inside_a_fragmented_message_is_answered_at_once(role: Role) -> None:
    conn = Connection(role)
    assert conn.receive_data(peer_frame(role, TEXT, b"frag", fin=False)) == []
    assert conn.receive_data(peer_frame(role, PING, b"now")) == [Ping(b"now")]
    assert sent(conn) == [(PONG, True, 0, b"now")]
    assert conn.receive_data(peer_frame(role, PONG, b"x")) == [Pong(b"x")]
    assert conn.receive_data(peer_frame(role, CONT, b"ment")) == [TextMessage("fragment")]
    assert conn.failure is None


def test_automatic_replies_go_out_before_what_is_sent_after_them(role: Role) -> None:
    """Autobahn 5.6/5.19: the ping and the last fragment arrive in one read and
    the application echoes the message at once: the pong must come first."""
    conn = Connection(role)
    conn.receive_data(peer_frame(role, TEXT, b"frag", fin=False))
    events = conn.receive_data(peer_frame(role, PING, b"now") + peer_frame(role, CONT, b"ment"))
    assert events == [Ping(b"now"), TextMessage("fragment")]
    out = conn.send_text("fragment")  # the echo, before data_to_send() was called
    assert sent(conn, out) == [(PONG, True, 0, b"now"), (TEXT, True, 0, b"fragment")]
    assert conn.data_to_send() == b""


@pytest.mark.parametrize("method", ["send_binary", "send_ping", "send_pong", "send_close"])
def test_every_send_method_carries_the_queued_replies(role: Role, method: str) -> None:
    conn = Connection(role)
    conn.receive_data(peer_frame(role, PING, b"p"))
    frames = sent(conn, getattr(conn, method)(b"x") if method != "send_close" else conn.send_close())
    assert frames[0] == (PONG, True, 0, b"p") and len(frames) == 2
    assert conn.data_to_send() == b""


# ---------------------------------------------------------------- writing by reference


@pytest.mark.parametrize("text", [False, True])
def test_send_parts_frames_a_large_message_by_reference_on_a_server(text: bool) -> None:
    data: Any = "é" * BY_REFERENCE if text else os.urandom(BY_REFERENCE)
    conn, twin = Connection(Role.SERVER), Connection(Role.SERVER)
    conn.receive_data(peer_frame(Role.SERVER, PING, b"p"))  # a queued pong goes first
    twin.receive_data(peer_frame(Role.SERVER, PING, b"p"))
    parts = conn.send_parts(data, text=text)
    assert len(parts) == 2
    if not text:
        assert parts[1] is data  # not copied
    whole = twin.send_text(data) if text else twin.send_binary(data)
    assert b"".join(parts) == whole
    expected = data.encode() if text else data
    assert sent(conn, b"".join(parts)) == [(PONG, True, 0, b"p"), (TEXT if text else BINARY, True, 0, expected)]
    assert conn.data_to_send() == b""


@pytest.mark.parametrize(
    "case",
    ["small", "client", "bytearray", "compressed"],
)
def test_send_parts_is_one_frame_otherwise(case: str) -> None:
    """Small messages, masked (client) frames, mutable buffers and compressed
    messages are framed whole, as send_binary frames them."""
    size = 100 if case == "small" else BY_REFERENCE
    data: Any = bytearray(size) if case == "bytearray" else bytes(size)
    role = Role.CLIENT if case == "client" else Role.SERVER
    conn = Connection(role, deflate=Deflate() if case == "compressed" else None)
    parts = conn.send_parts(data)
    assert len(parts) == 1
    frames = sent(conn, parts[0]) if case != "compressed" else decode(parts[0], False)
    assert len(frames) == 1 and frames[0][0] == BINARY
    assert (frames[0][2] == 4) is (case == "compressed")


def test_send_parts_checks_the_state_as_send_binary_does() -> None:
    conn = Connection(Role.SERVER)
    conn.send_binary(b"first", fin=False)
    with pytest.raises(InvalidState):
        conn.send_parts(bytes(BY_REFERENCE))
    conn.send_continuation(b"last", fin=True)
    conn.send_close()
    with pytest.raises(ConnectionClosed):
        conn.send_parts(bytes(BY_REFERENCE))


# ---------------------------------------------------------------- closing handshake


VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999]
INVALID_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]


def test_close_code_allowed() -> None:
    for code in VALID_CODES:
        assert close_code_allowed(code)
    for code in INVALID_CODES:
        assert not close_code_allowed(code)


@pytest.mark.parametrize("code", VALID_CODES)
def test_close_reply_echoes_a_valid_code(role: Role, code: int) -> None:
    conn = Connection(role)
    events = conn.receive_data(peer_frame(role, CLOSE, close_payload(code, "bye ✓".encode())))
    assert events == [CloseReceived(code, "bye ✓")]
    frames = sent(conn)
    assert len(frames) == 1 and frames[0][0] == CLOSE
    assert frames[0][3][:2] == close_payload(code)
    assert conn.state is State.CLOSED
    assert (conn.close_code, conn.close_reason) == (code, "bye ✓")
    assert conn.close_received == (code, "bye ✓")
    assert conn.failure is None


@pytest.mark.parametrize("code", INVALID_CODES)
def test_invalid_close_code_on_the_wire_is_1002(role: Role, code: int) -> None:
    conn = Connection(role)
    events = conn.receive_data(peer_frame(role, CLOSE, close_payload(code)))
    assert CloseReceived(code, "") not in events
    assert_failed(conn, 1002)


def test_close_without_payload_is_1005_and_reply_is_empty(role: Role) -> None:
    conn = Connection(role)
    assert conn.receive_data(peer_frame(role, CLOSE, b"")) == [CloseReceived(1005, "")]
    assert sent(conn) == [(CLOSE, True, 0, b"")]
    assert conn.close_code == 1005 and conn.close_reason == ""
    assert conn.state is State.CLOSED and conn.failure is None


def test_close_with_one_byte_payload_is_1002(role: Role) -> None:
    conn = Connection(role)
    conn.receive_data(peer_frame(role, CLOSE, b"\x03"))
    assert_failed(conn, 1002)


@pytest.mark.parametrize("reason", [b"\xff", b"ok\xce", b"\xed\xa0\x80", b"\xc0\xaf"])
def test_invalid_utf8_close_reason_is_1007(role: Role, reason: bytes) -> None:
    conn = Connection(role)
    conn.receive_data(peer_frame(role, CLOSE, close_payload(1000, reason)))
    assert_failed(conn, 1007)


def test_close_reason_of_123_bytes(role: Role) -> None:
    conn = Connection(role)
    reason = "é" * 61 + "x"  # 123 bytes
    assert conn.receive_data(peer_frame(role, CLOSE, close_payload(4000, reason.encode()))) == [
        CloseReceived(4000, reason)
    ]


def test_we_close_first(role: Role) -> None:
    conn = Connection(role)
    assert sent(conn, conn.send_close(1001, "going away")) == [(CLOSE, True, 0, close_payload(1001, b"going away"))]
    assert conn.state is State.CLOSING
    assert conn.close_sent == (1001, "going away")
    assert conn.close_code == 1006  # nothing received yet
    assert not conn.should_close_transport
    # Messages still arrive while closing.
    assert conn.receive_data(peer_frame(role, TEXT, b"late")) == [TextMessage("late")]
    events = conn.receive_data(peer_frame(role, CLOSE, close_payload(1001)))
    assert events == [CloseReceived(1001, "")]
    assert conn.data_to_send() == b""  # no second close frame
    assert conn.state is State.CLOSED
    assert conn.close_code == 1001
    assert conn.should_close_transport is (role is Role.SERVER)
    assert conn.failure is None


def test_peer_closes_first(role: Role) -> None:
    conn = Connection(role)
    assert conn.state is State.OPEN and not conn.should_close_transport
    conn.receive_data(peer_frame(role, CLOSE, close_payload(1000, b"done")))
    assert sent(conn) == [(CLOSE, True, 0, close_payload(1000))]
    assert conn.state is State.CLOSED
    assert conn.close_sent is not None and conn.close_sent[0] == 1000
    # A server closes the TCP connection first; a client waits for it (RFC 6455 7.1.1).
    assert conn.should_close_transport is (role is Role.SERVER)
    assert conn.send_close() == b""


def test_close_without_code_sent_and_echoed(role: Role) -> None:
    conn = Connection(role)
    assert sent(conn, conn.send_close(None)) == [(CLOSE, True, 0, b"")]
    assert conn.close_sent == (1005, "")
    assert conn.receive_data(peer_frame(role, CLOSE, b"")) == [CloseReceived(1005, "")]
    assert conn.state is State.CLOSED


def test_send_close_twice_returns_nothing_the_second_time(role: Role) -> None:
    conn = Connection(role)
    assert conn.send_close(1000) != b""
    assert conn.send_close(1000) == b""
    assert conn.send_close(4000, "other") == b""
    assert conn.close_sent == (1000, "")
    assert conn.state is State.CLOSING


@pytest.mark.parametrize("code", INVALID_CODES)
def test_send_close_refuses_invalid_codes(role: Role, code: int) -> None:
    conn = Connection(role)
    with pytest.raises(ValueError):
        conn.send_close(code)
    assert conn.state is State.OPEN and conn.close_sent is None


def test_send_close_reason_length(role: Role) -> None:
    conn = Connection(role)
    with pytest.raises(ValueError):
        conn.send_close(1000, "x" * 124)
    with pytest.raises(ValueError):
        conn.send_close(1000, "é" * 62)  # 124 bytes of UTF-8
    with pytest.raises(ValueError):
        conn.send_close(None, "a reason needs a code")
    assert conn.state is State.OPEN
    frames = sent(conn, conn.send_close(1000, "é" * 61 + "x"))
    assert frames == [(CLOSE, True, 0, close_payload(1000, ("é" * 61 + "x").encode()))]


def test_close_inside_a_fragmented_message_case_7_1_5(role: Role) -> None:
    """Autobahn 7.1.5: text fragment, Close(1000), last fragment: the reply
    is 1000, the incomplete message and what follows the close are dropped."""
    data = (
        peer_frame(role, TEXT, b"fragment1", fin=False)
        + peer_frame(role, CLOSE, close_payload(1000))
        + peer_frame(role, CONT, b"fragment2")
    )
    for chunks in ([data], [data[:11], data[11:21], data[21:]]):
        conn = Connection(role)
        events = [e for chunk in chunks for e in conn.receive_data(chunk)]
        assert events == [CloseReceived(1000, "")]
        assert sent(conn) == [(CLOSE, True, 0, close_payload(1000))]
        assert conn.failure is None and conn.state is State.CLOSED


@pytest.mark.parametrize(
    "after",
    [
        "text",
        "ping",
        "close",
        "bad-opcode",
        "wrong-mask",
        "garbage",
    ],
)
@pytest.mark.parametrize("same_read", [False, True], ids=["later-read", "same-read"])
def test_data_after_close_is_ignored(role: Role, after: str, same_read: bool) -> None:
    wrong = None if role is Role.SERVER else MASK
    extra = {
        "text": peer_frame(role, TEXT, b"after"),
        "ping": peer_frame(role, PING, b"after"),
        "close": peer_frame(role, CLOSE, close_payload(1001)),
        "bad-opcode": peer_frame(role, 0xB, b""),
        "wrong-mask": encode(TEXT, b"after", mask=wrong),
        "garbage": b"\xff" * 20,
    }[after]
    conn = Connection(role)
    close = peer_frame(role, CLOSE, close_payload(1000))
    if same_read:
        events = conn.receive_data(close + extra)
    else:
        events = conn.receive_data(close) + conn.receive_data(extra)
    assert events == [CloseReceived(1000, "")]
    assert sent(conn) == [(CLOSE, True, 0, close_payload(1000))]
    assert conn.failure is None
    assert conn.state is State.CLOSED
    assert conn.close_code == 1000


def test_input_after_a_failure_is_ignored(role: Role) -> None:
    conn = Connection(role)
    conn.receive_data(peer_frame(role, 0x3, b""))
    assert_failed(conn, 1002)
    failure = conn.failure
    assert conn.receive_data(peer_frame(role, TEXT, b"x") + peer_frame(role, PING, b"")) == []
    assert conn.receive_data(peer_frame(role, CLOSE, close_payload(1000))) == []
    assert conn.data_to_send() == b""
    assert conn.failure is failure


def test_receive_eof_while_open(role: Role) -> None:
    conn = Connection(role)
    conn.receive_data(peer_frame(role, TEXT, b"incomplete", fin=False))
    assert conn.receive_eof() == []
    assert conn.state is State.CLOSED
    assert conn.close_code == 1006 and conn.close_reason == ""
    assert conn.receive_data(peer_frame(role, CONT, b"!")) == []
    with pytest.raises(ConnectionClosed) as info:
        conn.send_text("x")
    assert info.value.code == 1006


def test_receive_eof_while_closing(role: Role) -> None:
    conn = Connection(role)
    conn.send_close(1000)
    conn.receive_eof()
    assert conn.state is State.CLOSED and conn.close_code == 1006


def test_should_close_transport_after_failure(role: Role) -> None:
    """A server closes the TCP connection once it failed it; a client waits
    for the server to close first (RFC 6455 7.1.1): closing with the server's
    next frames unread would reset the connection and could lose the close."""
    conn = Connection(role)
    assert not conn.should_close_transport
    conn.receive_data(peer_frame(role, TEXT, b"\xff"))
    assert conn.should_close_transport is (role is Role.SERVER)
    assert conn.state is State.CLOSING  # no close frame from the peer yet
    # The peer's close reply completes the handshake, but the input is ignored.
    assert conn.receive_data(peer_frame(role, CLOSE, close_payload(1007))) == []
    assert conn.should_close_transport is (role is Role.SERVER)


# ---------------------------------------------------------------- sending after close


def send_attempts(conn: Connection) -> list[Any]:
    return [
        lambda: conn.send_text("x"),
        lambda: conn.send_binary(b"x"),
        lambda: conn.send_text("x", fin=False),
        lambda: conn.send_ping(b""),
        lambda: conn.send_pong(b""),
        lambda: conn.send_continuation(b"x", fin=True),
    ]


def close_by(role: Role, how: str) -> Connection:
    conn = Connection(role)
    if how == "we-closed":
        conn.send_close(1000, "bye")
    elif how == "handshake-done":
        conn.send_close(1000, "bye")
        conn.receive_data(peer_frame(role, CLOSE, close_payload(1000, b"ok")))
    elif how == "peer-closed":
        conn.receive_data(peer_frame(role, CLOSE, close_payload(4001, b"app")))
    elif how == "failed":
        conn.receive_data(peer_frame(role, TEXT, b"\xff"))
    elif how == "eof":
        conn.receive_eof()
    conn.data_to_send()
    return conn


@pytest.mark.parametrize("how", ["we-closed", "handshake-done", "peer-closed", "failed", "eof"])
def test_sending_after_close_raises_connection_closed_every_time(role: Role, how: str) -> None:
    conn = close_by(role, how)
    state = conn.state
    snapshot = (conn.close_sent, conn.close_received, conn.failure)
    for attempt in send_attempts(conn):
        errors = []
        for _ in range(3):
            with pytest.raises(ConnectionClosed) as info:
                attempt()
            errors.append((type(info.value), info.value.code, info.value.reason, info.value.sent))
        assert errors[0] == errors[1] == errors[2]
        assert conn.state is state
        assert (conn.close_sent, conn.close_received, conn.failure) == snapshot
        assert conn.data_to_send() == b""
    code, reason, sent_ = errors[0][1:]
    assert (code, reason) == (conn.close_code, conn.close_reason)
    assert sent_ == conn.close_sent
    assert conn.send_close(1000) == b""


def test_connection_closed_tells_both_close_frames(role: Role) -> None:
    conn = close_by(role, "peer-closed")
    with pytest.raises(ConnectionClosed) as info:
        conn.send_text("x")
    assert (info.value.code, info.value.reason) == (4001, "app")
    assert info.value.sent == (4001, "")
    conn = close_by(role, "failed")
    with pytest.raises(ConnectionClosed) as info:
        conn.send_text("x")
    assert info.value.code == 1006
    assert info.value.sent is not None and info.value.sent[0] == 1007


# ---------------------------------------------------------------- fragmented sending


def test_fragmented_sending(role: Role) -> None:
    conn = Connection(role)
    out = conn.send_text("κό", fin=False)
    with pytest.raises(InvalidState):
        conn.send_text("other")
    with pytest.raises(InvalidState):
        conn.send_binary(b"other")
    out += conn.send_ping(b"between")  # control frames may be interleaved
    out += conn.send_continuation("σ".encode()[:1], fin=False)  # split inside a character
    out += conn.send_continuation("σ".encode()[1:] + "με".encode(), fin=True)
    frames = sent(conn, out)
    assert [(f[0], f[1], f[2]) for f in frames] == [
        (TEXT, False, 0),
        (PING, True, 0),
        (CONT, False, 0),
        (CONT, True, 0),
    ]
    assert b"".join(f[3] for f in frames if f[0] != PING).decode() == "κόσμε"
    # The message is over: a new one may start, a continuation may not.
    assert sent(conn, conn.send_binary(b"next")) == [(BINARY, True, 0, b"next")]
    with pytest.raises(InvalidState):
        conn.send_continuation(b"x", fin=True)


def test_fragmented_message_received_by_a_wsfast_peer(role: Role) -> None:
    sender = Connection(role)
    receiver = Connection(Role.CLIENT if role is Role.SERVER else Role.SERVER)
    out = (
        sender.send_binary(b"a", fin=False)
        + sender.send_continuation(b"b", fin=False)
        + sender.send_continuation(b"c", fin=True)
    )
    assert receiver.receive_data(out) == [BinaryMessage(b"abc")]


def test_continuation_without_a_message_is_invalid(role: Role) -> None:
    with pytest.raises(InvalidState):
        Connection(role).send_continuation(b"x", fin=True)


def test_close_while_sending_a_fragmented_message(role: Role) -> None:
    conn = Connection(role)
    conn.send_text("part", fin=False)
    assert sent(conn, conn.send_close(1000)) == [(CLOSE, True, 0, close_payload(1000))]
    with pytest.raises(ConnectionClosed):
        conn.send_continuation(b"rest", fin=True)


# ---------------------------------------------------------------- protocol errors


@pytest.mark.parametrize("rsv", [1, 2, 3, 4, 5, 6, 7])
@pytest.mark.parametrize("opcode", [TEXT, BINARY])
def test_reserved_bits_without_extension_are_1002(role: Role, opcode: int, rsv: int) -> None:
    conn = Connection(role)
    assert conn.receive_data(peer_frame(role, opcode, b"x", rsv=rsv)) == []
    assert_failed(conn, 1002)


@pytest.mark.parametrize("rsv", [1, 2, 3, 5, 6, 7])
def test_reserved_bits_other_than_rsv1_with_deflate_are_1002(role: Role, rsv: int) -> None:
    from wsfast.extensions import Deflate

    conn = Connection(role, deflate=Deflate())
    conn.receive_data(peer_frame(role, TEXT, b"x", rsv=rsv))
    assert_failed(conn, 1002)


@pytest.mark.parametrize("rsv", [1, 2, 4])
@pytest.mark.parametrize("opcode", [PING, PONG, CLOSE])
@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "deflate"])
def test_reserved_bits_on_control_frames_are_1002(role: Role, opcode: int, rsv: int, deflate: bool) -> None:
    from wsfast.extensions import Deflate

    conn = Connection(role, deflate=Deflate() if deflate else None)
    payload = close_payload(1000) if opcode == CLOSE else b"p"
    conn.receive_data(peer_frame(role, opcode, payload, rsv=rsv))
    assert_failed(conn, 1002)


@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "deflate"])
def test_rsv1_on_a_continuation_frame_is_1002(role: Role, deflate: bool) -> None:
    from wsfast.extensions import Deflate

    conn = Connection(role, deflate=Deflate() if deflate else None)
    first = peer_frame(role, TEXT, b"a", fin=False)
    assert conn.receive_data(first) == []
    conn.receive_data(peer_frame(role, CONT, b"b", rsv=4))
    assert_failed(conn, 1002)


@pytest.mark.parametrize("opcode", [0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_unknown_opcode_is_1002(role: Role, opcode: int) -> None:
    conn = Connection(role)
    conn.receive_data(peer_frame(role, opcode, b"x"))
    assert_failed(conn, 1002)


@pytest.mark.parametrize("opcode", [PING, PONG, CLOSE])
def test_fragmented_control_frame_is_1002(role: Role, opcode: int) -> None:
    conn = Connection(role)
    conn.receive_data(peer_frame(role, opcode, close_payload(1000), fin=False))
    assert_failed(conn, 1002)


@pytest.mark.parametrize("opcode", [PING, PONG, CLOSE])
def test_control_frame_over_125_bytes_is_1002(role: Role, opcode: int) -> None:
    conn = Connection(role)
    payload = close_payload(1000, b"r" * 124) if opcode == CLOSE else b"p" * 126
    assert len(payload) == 126
    conn.receive_data(peer_frame(role, opcode, payload))
    assert_failed(conn, 1002)


def test_control_frame_over_125_detected_from_its_header(role: Role) -> None:
    conn = Connection(role)
    conn.receive_data(peer_frame(role, PING, b"p" * 126)[:4])
    assert_failed(conn, 1002)


@pytest.mark.parametrize("fin", [True, False])
def test_continuation_without_a_message_is_1002(role: Role, fin: bool) -> None:
    conn = Connection(role)
    conn.receive_data(peer_frame(role, CONT, b"orphan", fin=fin))
    assert_failed(conn, 1002)


def test_continuation_after_a_complete_message_is_1002(role: Role) -> None:
    conn = Connection(role)
    assert conn.receive_data(peer_frame(role, TEXT, b"done")) == [TextMessage("done")]
    conn.receive_data(peer_frame(role, CONT, b"more"))
    assert_failed(conn, 1002)


@pytest.mark.parametrize("first, second", [(TEXT, TEXT), (TEXT, BINARY), (BINARY, TEXT), (BINARY, BINARY)])
@pytest.mark.parametrize("second_fin", [True, False])
def test_new_data_frame_inside_a_fragmented_message_is_1002(
    role: Role, first: int, second: int, second_fin: bool
) -> None:
    conn = Connection(role)
    assert conn.receive_data(peer_frame(role, first, b"a", fin=False)) == []
    assert conn.receive_data(peer_frame(role, second, b"b", fin=second_fin)) == []
    assert_failed(conn, 1002)


# ---------------------------------------------------------------- UTF-8


# (text, offset of the first byte that makes it invalid: RFC 3629 section 4)
INVALID_UTF8_AT = [
    (b"\xff", 0),
    (b"\x80", 0),
    (b"\xc0\xaf", 0),  # C0 never starts a sequence (overlong)
    (b"\xc1\xbf", 0),
    (b"\xe0\x80\xaf", 1),  # overlong: E0 needs A0-BF next
    (b"\xed\xa0\x80", 1),  # surrogate: ED needs 80-9F next
    (b"\xf0\x8f\xbf\xbf", 1),  # overlong: F0 needs 90-BF next
    (b"\xf4\x90\x80\x80", 1),  # above U+10FFFF
    (b"\xf5\x80\x80\x80", 0),
    (b"a\xc3\x28", 2),
    (b"\xe2\x82\x41", 2),
    (b"\xf0\x9d\x84\x41", 3),
    (b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited", 12),  # Autobahn 6.x
]
INVALID_UTF8 = [text for text, _ in INVALID_UTF8_AT]


@pytest.mark.parametrize("payload", INVALID_UTF8)
@pytest.mark.parametrize("as_bytes", [False, True], ids=["str", "bytes"])
def test_invalid_utf8_in_a_single_frame_is_1007(role: Role, payload: bytes, as_bytes: bool) -> None:
    conn = Connection(role, text_as_bytes=as_bytes)
    assert conn.receive_data(peer_frame(role, TEXT, payload)) == []
    assert_failed(conn, 1007)


@pytest.mark.parametrize("payload", [b"\xce", b"abc\xe2\x82", b"\xf0\x9d\x84"])
@pytest.mark.parametrize("as_bytes", [False, True], ids=["str", "bytes"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_text_ending_inside_a_sequence_is_1007(role: Role, payload: bytes, as_bytes: bool, stream: bool) -> None:
    conn = Connection(role, text_as_bytes=as_bytes, stream_messages=stream)
    events = conn.receive_data(peer_frame(role, TEXT, payload))
    assert not [e for e in events if getattr(e, "fin", True)]
    assert_failed(conn, 1007)
    conn = Connection(role, text_as_bytes=as_bytes, stream_messages=stream)
    conn.receive_data(peer_frame(role, TEXT, b"ok", fin=False))
    conn.receive_data(peer_frame(role, CONT, payload))
    assert_failed(conn, 1007)


@pytest.mark.parametrize(
    "fragments, bad_at",
    [
        # Autobahn 6.4.1: the middle fragment is invalid, the last never matters.
        ([b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", b"\xf4\x90\x80\x80", b"edited"], 1),
        # Autobahn 6.4.2: valid lead byte at the end of one fragment, bad byte next.
        ([b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4", b"\x90\x80\x80", b"edited"], 1),
        ([b"ok", b"\xed", b"\xa0\x80", b"tail"], 2),  # surrogate, decided at its 2nd byte
        ([b"ok", b"\xe0", b"\x80", b"\x80"], 2),  # overlong, decided at its 2nd byte
        ([b"\xff", b"rest"], 0),
    ],
)
@pytest.mark.parametrize("as_bytes", [False, True], ids=["str", "bytes"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_invalid_utf8_in_a_fragment_fails_at_once(
    role: Role, fragments: list[bytes], bad_at: int, as_bytes: bool, stream: bool
) -> None:
    conn = Connection(role, text_as_bytes=as_bytes, stream_messages=stream)
    for i, fragment in enumerate(fragments):
        opcode = TEXT if i == 0 else CONT
        conn.receive_data(peer_frame(role, opcode, fragment, fin=i == len(fragments) - 1))
        if i < bad_at:
            assert conn.data_to_send() == b"" and conn.failure is None, f"failed early at {i}"
        if i == bad_at:
            assert_failed(conn, 1007)  # before the final fragment arrives
            break


@pytest.mark.parametrize("text, bad", INVALID_UTF8_AT)
def test_invalid_utf8_in_one_byte_fragments_fails_at_the_first_bad_byte(role: Role, text: bytes, bad: int) -> None:
    """Autobahn 6.3.2 style: one-byte frames; the failure comes with the frame
    holding the first invalid byte, not before, not after."""
    conn = Connection(role)
    for i in range(len(text)):
        conn.receive_data(peer_frame(role, TEXT if i == 0 else CONT, text[i : i + 1], fin=i == len(text) - 1))
        if i < bad:
            assert conn.data_to_send() == b"" and conn.failure is None, f"failed at byte {i}, first bad byte is {bad}"
        else:
            assert_failed(conn, 1007)
            break


@pytest.mark.parametrize("text, bad", INVALID_UTF8_AT)
def test_invalid_utf8_in_one_frame_byte_by_byte_fails_at_the_first_bad_byte(role: Role, text: bytes, bad: int) -> None:
    payload = text + b"-padding-" * 4  # the frame is still incomplete at the bad byte
    data = peer_frame(role, TEXT, payload)
    header = len(data) - len(payload)
    conn = Connection(role)
    for i in range(len(data)):
        conn.receive_data(data[i : i + 1])
        if i < header + bad:
            assert conn.data_to_send() == b"" and conn.failure is None, (
                f"failed at byte {i - header}, first bad byte is {bad}"
            )
        else:
            assert_failed(conn, 1007)
            break


def test_valid_text_in_one_byte_fragments(role: Role) -> None:
    """Autobahn 6.2.3/6.2.4: valid UTF-8 cut into 1-byte frames."""
    text = "Hello-µ@ßöäüàá-UTF-8!! κόσμε 𝄞 \U0010ffff"
    raw = text.encode()
    conn = Connection(role)
    data = b"".join(
        peer_frame(role, TEXT if i == 0 else CONT, raw[i : i + 1], fin=i == len(raw) - 1) for i in range(len(raw))
    )
    assert conn.receive_data(data) == [TextMessage(text)]
    conn = Connection(role, stream_messages=True)
    events = conn.receive_data(data)
    assert "".join(e.data for e in events) == text  # type: ignore[union-attr, misc]
    assert all(isinstance(e, Fragment) for e in events) and len(events) == len(raw)


def feed_chunks(conn: Connection, data: bytes, size: int) -> list[tuple[int, list[Any], bytes, Any]]:
    """Feed ``data`` in chunks of ``size``; return (end offset, events, output,
    failure) after each chunk."""
    log = []
    for pos in range(0, len(data), size):
        events = conn.receive_data(data[pos : pos + size])
        log.append((min(pos + size, len(data)), events, conn.data_to_send(), conn.failure))
    return log


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64])
@pytest.mark.parametrize("prefix", [0, 5, 300], ids=["start", "short", "long"])
@pytest.mark.parametrize("as_bytes", [False, True], ids=["str", "bytes"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_invalid_utf8_inside_one_frame_arriving_in_chunks_fails_at_the_bad_byte(
    role: Role, size: int, prefix: int, as_bytes: bool, stream: bool
) -> None:
    """Autobahn 6.4.3 / 6.4.4: one text frame whose bytes trickle in. The close
    1007 must be queued as soon as the first invalid byte arrives, long before
    the frame is complete."""
    valid = ("κόσμε" * 100).encode()[:prefix]
    valid = valid.decode("utf-8", "ignore").encode()
    payload = valid + b"\xf4\x90\x80\x80" + b"-edited" * 100
    data = peer_frame(role, TEXT, payload)
    bad = len(data) - len(payload) + len(valid) + 1  # offset of \x90 in the stream
    conn = Connection(role, text_as_bytes=as_bytes, stream_messages=stream)
    for end, events, output, failure in feed_chunks(conn, data, size):
        assert not [e for e in events if isinstance(e, TextMessage)]
        if end <= bad:
            assert output == b"", f"failed at {end}, before the bad byte at {bad}"
            assert failure is None
        else:
            assert output != b"", f"no close after the bad byte at {bad} (fed up to {end})"
            frames = decode(output, role is Role.CLIENT)
            assert frames[0][0] == CLOSE and frames[0][3][:2] == close_payload(1007)
            assert end < len(data)
            assert failure is not None and failure.code == 1007
            break
    else:
        pytest.fail("the bad byte was never reported")


@pytest.mark.parametrize("size", [1, 5])
def test_invalid_utf8_inside_a_continuation_frame_arriving_in_chunks(role: Role, size: int) -> None:
    conn = Connection(role)
    assert conn.receive_data(peer_frame(role, TEXT, "κό".encode(), fin=False)) == []
    payload = "σμε".encode() + b"\xc0" + b"x" * 200
    data = peer_frame(role, CONT, payload)
    bad = len(data) - len(payload) + len("σμε".encode())
    for end, events, output, _ in feed_chunks(conn, data, size):
        assert events == []
        if end <= bad:
            assert output == b""
        else:
            assert decode(output, role is Role.CLIENT)[0][3][:2] == close_payload(1007)
            assert end < len(data)
            break
    else:
        pytest.fail("the bad byte was never reported")


def test_invalid_utf8_across_fragment_and_chunk_boundaries(role: Role) -> None:
    """A lead byte at the end of one fragment, its bad continuation in a
    trickling second frame."""
    conn = Connection(role)
    conn.receive_data(peer_frame(role, TEXT, b"abc\xf0", fin=False))
    assert conn.data_to_send() == b""
    data = peer_frame(role, CONT, b"\x9d\x84" + b"\x41" + b"z" * 100)  # F0 9D 84 41: bad at 41
    header = len(data) - 103
    for i in range(header + 2):
        conn.receive_data(data[i : i + 1])
        assert conn.data_to_send() == b""
    conn.receive_data(data[header + 2 : header + 3])
    assert_failed(conn, 1007)


@pytest.mark.parametrize("size", [1, 3, 7, 1000])
@pytest.mark.parametrize("as_bytes", [False, True], ids=["str", "bytes"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_valid_multibyte_text_in_chunks_is_not_refused(role: Role, size: int, as_bytes: bool, stream: bool) -> None:
    text = "aé€𝄞κόσμε\u07ff\uffff\U0010ffff" * 40
    payload = text.encode()
    data = (
        peer_frame(role, TEXT, payload[:301], fin=False)
        + peer_frame(role, PING, b"")
        + peer_frame(role, CONT, payload[301:])
    )
    conn = Connection(role, text_as_bytes=as_bytes, stream_messages=stream)
    events = [e for _, evs, _, _ in feed_chunks(conn, data, size) for e in evs]
    assert conn.failure is None
    data_events = [e for e in events if not isinstance(e, Ping)]
    if stream:
        assert all(isinstance(e, Fragment) and e.text for e in data_events)
        assert [e.fin for e in data_events] == [False, True]  # type: ignore[union-attr]
        joined = (b"" if as_bytes else "").join(e.data for e in data_events)  # type: ignore[union-attr, arg-type]
    else:
        assert len(data_events) == 1 and isinstance(data_events[0], TextMessage)
        joined = data_events[0].data
    assert joined == (payload if as_bytes else text)


# ---------------------------------------------------------------- text_as_bytes, stream_messages


def test_text_as_bytes_delivers_validated_bytes(role: Role) -> None:
    conn = Connection(role, text_as_bytes=True)
    events = conn.receive_data(
        peer_frame(role, TEXT, "κόσμε".encode())
        + peer_frame(role, TEXT, "κό".encode(), fin=False)
        + peer_frame(role, CONT, "σμε".encode())
        + peer_frame(role, BINARY, b"\xff")
    )
    assert events == [TextMessage("κόσμε".encode()), TextMessage("κόσμε".encode()), BinaryMessage(b"\xff")]
    assert all(type(e.data) is bytes for e in events)  # type: ignore[union-attr]


def test_stream_messages_delivers_fragments(role: Role) -> None:
    conn = Connection(role, stream_messages=True)
    euro = "€".encode()
    events = conn.receive_data(peer_frame(role, TEXT, b"a" + euro[:1], fin=False))
    assert events == [Fragment("a", True, False)]
    events = conn.receive_data(peer_frame(role, CONT, euro[1:2], fin=False))
    assert events == [Fragment("", True, False)]
    events = conn.receive_data(peer_frame(role, CONT, euro[2:] + b"b"))
    assert events == [Fragment("€b", True, True)]
    events = conn.receive_data(peer_frame(role, BINARY, b"\x01", fin=False) + peer_frame(role, CONT, b"\x02"))
    assert events == [Fragment(b"\x01", False, False), Fragment(b"\x02", False, True)]
    assert conn.receive_data(peer_frame(role, TEXT, b"whole")) == [Fragment("whole", True, True)]
    assert conn.receive_data(peer_frame(role, BINARY, b"")) == [Fragment(b"", False, True)]


def test_stream_messages_text_as_bytes(role: Role) -> None:
    conn = Connection(role, stream_messages=True, text_as_bytes=True)
    euro = "€".encode()
    events = conn.receive_data(peer_frame(role, TEXT, euro[:2], fin=False) + peer_frame(role, CONT, euro[2:]))
    assert events == [Fragment(euro[:2], True, False), Fragment(euro[2:], True, True)]


def test_stream_messages_still_enforce_message_size(role: Role) -> None:
    conn = Connection(role, stream_messages=True, max_message_size=10)
    assert conn.receive_data(peer_frame(role, BINARY, b"x" * 6, fin=False)) == [Fragment(b"x" * 6, False, False)]
    conn.receive_data(peer_frame(role, CONT, b"x" * 5))
    assert_failed(conn, 1009)


# ---------------------------------------------------------------- size limits


@pytest.mark.parametrize("opcode", [TEXT, BINARY])
def test_single_frame_message_size_boundary(role: Role, opcode: int) -> None:
    conn = Connection(role, max_message_size=100)
    events = conn.receive_data(peer_frame(role, opcode, b"x" * 100))
    assert len(events) == 1 and len(events[0].data) == 100  # type: ignore[union-attr]
    conn.receive_data(peer_frame(role, opcode, b"x" * 101))
    assert_failed(conn, 1009)


@pytest.mark.parametrize("opcode", [TEXT, BINARY])
def test_fragmented_message_size_boundary(role: Role, opcode: int) -> None:
    conn = Connection(role, max_message_size=100)
    events = conn.receive_data(
        peer_frame(role, opcode, b"x" * 40, fin=False)
        + peer_frame(role, CONT, b"x" * 40, fin=False)
        + peer_frame(role, CONT, b"x" * 20)
    )
    assert len(events) == 1 and len(events[0].data) == 100  # type: ignore[union-attr]
    conn.receive_data(peer_frame(role, opcode, b"x" * 40, fin=False))
    conn.receive_data(peer_frame(role, CONT, b"x" * 40, fin=False))
    assert conn.data_to_send() == b""
    conn.receive_data(peer_frame(role, CONT, b"x" * 21, fin=False))  # over before the end
    assert_failed(conn, 1009)


def test_frame_over_the_limit_fails_before_its_payload(role: Role) -> None:
    conn = Connection(role, max_message_size=1000, max_frame_size=100)
    assert conn.max_frame_size == 100
    header_only = peer_frame(role, BINARY, b"", length=101)
    assert conn.receive_data(header_only) == []
    assert_failed(conn, 1009)


def test_frame_exactly_at_the_limit(role: Role) -> None:
    conn = Connection(role, max_message_size=1000, max_frame_size=100)
    data = peer_frame(role, BINARY, b"y" * 100)
    assert conn.receive_data(data[:-1]) == []
    assert conn.data_to_send() == b""
    assert conn.receive_data(data[-1:]) == [BinaryMessage(b"y" * 100)]
    # Frames at the frame limit still build a larger message.
    events = conn.receive_data(
        peer_frame(role, BINARY, b"z" * 100, fin=False)
        + peer_frame(role, CONT, b"z" * 100, fin=False)
        + peer_frame(role, CONT, b"z" * 100)
    )
    assert events == [BinaryMessage(b"z" * 300)]


def test_huge_announced_frame_fails_from_its_header(role: Role) -> None:
    conn = Connection(role)
    assert conn.max_message_size == MAX_MESSAGE_SIZE
    header = peer_frame(role, BINARY, b"", length=2**62)
    assert len(header) == (14 if role is Role.SERVER else 10)
    conn.receive_data(header)
    assert_failed(conn, 1009)


def test_frame_limit_defaults_to_and_is_capped_by_the_message_limit(role: Role) -> None:
    assert Connection(role, max_message_size=500).max_frame_size == 500
    assert Connection(role, max_message_size=500, max_frame_size=10_000).max_frame_size == 500
    assert Connection(role, max_message_size=None).max_frame_size is None


def test_no_limit(role: Role) -> None:
    conn = Connection(role, max_message_size=None)
    payload = b"q" * (MAX_MESSAGE_SIZE + 1)
    assert conn.receive_data(peer_frame(role, BINARY, payload)) == [BinaryMessage(payload)]


# ---------------------------------------------------------------- states


def test_state_transitions_of_a_handshake(role: Role) -> None:
    client = ClientConnection("h", deflate=None)
    server = ServerConnection(deflate=None)
    assert client.state is server.state is State.CONNECTING
    server.receive_data(client.data_to_send())
    assert server.state is State.CONNECTING
    client.receive_data(server.accept())
    assert server.receive_data(b"") == []  # as documented: early frames, if any
    assert client.state is server.state is State.OPEN
    closer, other = (server, client) if role is Role.SERVER else (client, server)
    other.receive_data(closer.send_close(1000))
    assert closer.state is State.CLOSING
    assert other.state is State.CLOSED
    closer.receive_data(other.data_to_send())
    assert closer.state is State.CLOSED
    assert closer.close_code == other.close_code == 1000
    assert server.should_close_transport and not client.should_close_transport


def test_states_are_ordered() -> None:
    assert State.CONNECTING < State.OPEN < State.CLOSING < State.CLOSED


def test_connection_starts_open_by_default(role: Role) -> None:
    conn = Connection(role)
    assert conn.state is State.OPEN
    assert conn.close_code == 1006 and conn.close_reason == ""
    assert conn.close_sent is None and conn.close_received is None and conn.failure is None


def test_bound_pongs_keeps_the_answer_to_the_latest_ping() -> None:
    conn = Connection(Role.SERVER)
    pings = b"".join(peer_frame(Role.SERVER, PING, i.to_bytes(2, "big")) for i in range(100))
    conn.receive_data(pings + peer_frame(Role.SERVER, TEXT, b"after"))
    assert conn.bound_pongs(paused=False, limit=10_000) is None  # 400 bytes of pongs: under the limit, all kept
    assert len(decode(conn.data_to_send(), masked=False)) == 100
    conn.receive_data(pings)
    assert conn.bound_pongs(paused=False, limit=100) is None  # over it: only the latest
    assert [f[3] for f in decode(conn.data_to_send(), masked=False)] == [(99).to_bytes(2, "big")]
    conn.receive_data(pings)
    held = conn.bound_pongs(paused=True, limit=10_000)  # the peer does not read: nothing now, the latest held
    assert conn.data_to_send() == b""
    assert held is not None and [f[3] for f in decode(held, masked=False)] == [(99).to_bytes(2, "big")]
    conn.receive_data(pings + peer_frame(Role.SERVER, 3, b""))  # then a reserved opcode: 1002
    assert conn.bound_pongs(paused=True, limit=0) is not None  # the pongs go, the close frame stays
    assert [(f[0], f[3][:2]) for f in decode(conn.data_to_send(), masked=False)] == [(CLOSE, b"\x03\xea")]


# ---------------------------------------------------------------- property tests


ALPHABET = ["a", "Z", " ", "\x00", "é", "ß", "€", "κ", "\u07ff", "\u0800", "\uffff", "𝄞", "\U0010ffff"]


def make_text(size: int, seed: int) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(ALPHABET) for _ in range(size))


@st.composite
def message_specs(draw: Any) -> tuple[bool, bytes, list[int], Optional[bool]]:
    text = draw(st.booleans())
    # Small, medium, and around the 16-bit length boundary (65535/65536).
    size = draw(st.one_of(st.integers(0, 300), st.integers(0, 70_000), st.integers(65_000, 70_000)))
    seed = draw(st.integers(0, 2**32 - 1))
    if text:
        payload = make_text(size // 2, seed).encode()
    else:
        payload = random.Random(seed).randbytes(size)
    cuts = draw(st.lists(st.integers(0, len(payload)), max_size=4))
    compress = draw(st.sampled_from([None, None, True, False]))
    return text, payload, sorted(cuts), compress


DEFLATE_CONFIGS = [
    None,
    PerMessageDeflate(),
    PerMessageDeflate(compress_threshold=0),
    PerMessageDeflate(server_no_context_takeover=True, client_no_context_takeover=True, compress_threshold=0),
    PerMessageDeflate(server_max_window_bits=9, client_max_window_bits=9),
    PerMessageDeflate(server_max_window_bits=None, client_max_window_bits=None, compress_threshold=10),
]


def connected_pair(config: Optional[PerMessageDeflate]) -> tuple[ClientConnection, ServerConnection]:
    client = ClientConnection("example.com", deflate=config)
    server = ServerConnection(deflate=config)
    server.receive_data(client.data_to_send())
    client.receive_data(server.accept())
    assert server.receive_data(b"") == []
    assert client.state is server.state is State.OPEN
    assert (client.deflate is None) is (config is None)
    assert (server.deflate is None) is (config is None)
    return client, server


def send_message(conn: Connection, text: bool, payload: bytes, cuts: Sequence[int], compress: Optional[bool]) -> bytes:
    pieces = [payload[a:b] for a, b in zip([0, *cuts], [*cuts, len(payload)])]
    if len(pieces) == 1:
        if text:
            return conn.send_text(payload.decode(), compress=compress)
        return conn.send_binary(payload, compress=compress)
    send = conn.send_text if text else conn.send_binary
    out = send(pieces[0], fin=False, compress=compress)
    for i, piece in enumerate(pieces[1:], 1):
        out += conn.send_continuation(piece, fin=i == len(pieces) - 1)
    return out


@pytest.mark.parametrize("direction", ["client-to-server", "server-to-client"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    messages=st.lists(message_specs(), min_size=1, max_size=4),
    config=st.sampled_from(DEFLATE_CONFIGS),
    read_cuts=st.lists(st.integers(0, 400_000), max_size=25),
    pings=st.lists(st.binary(max_size=125), max_size=2),
)
def test_messages_arrive_intact_and_in_order(
    direction: str,
    messages: list[Any],
    config: Optional[PerMessageDeflate],
    read_cuts: list[int],
    pings: list[bytes],
) -> None:
    client, server = connected_pair(config)
    sender, receiver = (client, server) if direction == "client-to-server" else (server, client)
    stream = b"".join(send_message(sender, *spec) for spec in messages)
    stream += b"".join(sender.send_ping(p) for p in pings)
    points = sorted(set(min(c, len(stream)) for c in read_cuts))
    events = []
    for a, b in zip([0, *points], [*points, len(stream)]):
        events += receiver.receive_data(stream[a:b])
    expected: list[Any] = [TextMessage(p.decode()) if text else BinaryMessage(p) for text, p, _, _ in messages]
    expected += [Ping(p) for p in pings]
    assert events == expected
    assert receiver.failure is None
    assert sent(receiver) == [(PONG, True, 0, p) for p in pings]


@pytest.mark.parametrize("direction", ["client-to-server", "server-to-client"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    payload=st.binary(max_size=3000),
    text=st.text(max_size=500),
    cuts=st.lists(st.integers(0, 4000), max_size=40),
    as_bytes=st.booleans(),
    stream_mode=st.booleans(),
)
def test_any_chunking_gives_the_same_events(
    direction: str, payload: bytes, text: str, cuts: list[int], as_bytes: bool, stream_mode: bool
) -> None:
    role = Role.SERVER if direction == "client-to-server" else Role.CLIENT
    data = (
        peer_frame(role, BINARY, payload)
        + peer_frame(role, TEXT, text.encode()[:7], fin=False)
        + peer_frame(role, PING, b"hb")
        + peer_frame(role, CONT, text.encode()[7:])
    )
    whole = Connection(role, text_as_bytes=as_bytes, stream_messages=stream_mode)
    expected = whole.receive_data(data)
    expected_out = sent(whole)
    chunked = Connection(role, text_as_bytes=as_bytes, stream_messages=stream_mode)
    points = sorted(set(min(c, len(data)) for c in cuts))
    events = []
    for a, b in zip([0, *points], [*points, len(data)]):
        events += chunked.receive_data(data[a:b])
    # Events come per complete frame: the chunking of the reads never shows.
    assert events == expected
    assert sent(chunked) == expected_out == [(PONG, True, 0, b"hb")]
    assert chunked.failure is None


# The two cases fuzzing found where the close code depended on where TCP split
# the bytes: checks run in a fixed order (sequence and RSV bits, then the
# message size, then UTF-8), whether a frame is complete or still arriving.
CHUNKING_CASES = {
    # A text message taken over the size limit by a continuation that starts
    # with invalid UTF-8: 1009 (was 1007 when the continuation came in two).
    "over-the-limit-then-invalid-utf8": (
        [(TEXT, b"hello", False, 0), (CONT, b"\xff" + b"x" * 9, True, 0)],
        1009,
    ),
    # A text continuation with RSV1 and invalid UTF-8: 1002 (was 1007 when
    # the continuation came in two).
    "rsv1-continuation-with-invalid-utf8": (
        [(TEXT, b"a", False, 0), (CONT, b"\xff" + b"x" * 3, True, 4)],
        1002,
    ),
    # The same with a fragmented message that starts over the limit in its
    # second frame's header, and with invalid UTF-8 later in that frame.
    "over-the-limit-valid-start": (
        [(TEXT, b"hello", False, 0), (CONT, b"abc\xff" + b"x" * 6, True, 0)],
        1009,
    ),
}


@pytest.mark.parametrize("case", list(CHUNKING_CASES))
@pytest.mark.parametrize("deflate", [False, True])
def test_close_code_does_not_depend_on_how_the_bytes_are_split(role: Role, case: str, deflate: bool) -> None:
    frames, code = CHUNKING_CASES[case]
    data = b"".join(peer_frame(role, opcode, payload, fin, rsv) for opcode, payload, fin, rsv in frames)
    for cut in range(len(data) + 1):
        conn = Connection(role, max_message_size=10, deflate=Deflate() if deflate else None)
        conn.receive_data(data[:cut])
        conn.receive_data(data[cut:])
        assert isinstance(conn.failure, FrameError), cut
        assert conn.failure.code == code, (cut, conn.failure)


def test_message_over_the_limit_fails_before_the_bytes_of_the_frame_that_crosses_it(role: Role) -> None:
    """A text continuation that takes the message over the limit fails with
    1009 as soon as its first bytes arrive, before they are validated."""
    conn = Connection(role, max_message_size=10)
    assert conn.receive_data(peer_frame(role, TEXT, b"hello", fin=False)) == []
    frame = peer_frame(role, CONT, b"\xff" * 6)
    conn.receive_data(frame[: len(frame) - 5])  # the header and one invalid byte
    assert_failed(conn, 1009)


def test_many_fragments_are_joined_as_they_arrive(role: Role) -> None:
    """A message in progress holds a few objects per 256 fragments, not one
    per fragment."""
    conn = Connection(role, max_message_size=100_000)
    conn.receive_data(peer_frame(role, BINARY, b"a", fin=False))
    conn.receive_data(b"".join(peer_frame(role, CONT, b"b", fin=False) for _ in range(10_000)))
    conn.receive_data(peer_frame(role, CONT, b"", fin=False) * 1000)  # empty ones cost nothing
    assert len(conn._msg_joined) + len(conn._msg_parts) < 10_001 // 256 + 256
    events = conn.receive_data(peer_frame(role, CONT, b"c"))
    assert events == [BinaryMessage(b"a" + b"b" * 10_000 + b"c")]
    assert type(events[0].data) is bytes  # type: ignore[attr-defined]
    assert conn._msg_parts == conn._msg_joined == []


# ---------------------------------------------------------------- buffers


def test_receive_from_a_reused_buffer(role: Role) -> None:
    """What receive_data keeps between calls is copied: the caller may
    overwrite its buffer (asyncio BufferedProtocol style) at once."""
    text = ("κόσμε" * 200).encode()
    data = (
        peer_frame(role, TEXT, text[:501], fin=False)
        + peer_frame(role, PING, b"ping")
        + peer_frame(role, CONT, text[501:])
        + peer_frame(role, BINARY, bytes(range(256)) * 300)
    )
    for size in (1, 5, 333):
        conn = Connection(role)
        buffer = bytearray(size)
        events = []
        for i in range(0, len(data), size):
            chunk = data[i : i + size]
            buffer[: len(chunk)] = chunk
            events += conn.receive_data(memoryview(buffer)[: len(chunk)])
            buffer[:] = b"\xee" * size
        assert events == [Ping(b"ping"), TextMessage(text.decode()), BinaryMessage(bytes(range(256)) * 300)]
        assert conn.failure is None


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_send_accepts_bytes_like_objects(role: Role, kind: Any) -> None:
    conn = Connection(role)
    out = conn.send_binary(kind(b"payload")) + conn.send_text(kind("κόσμε".encode()))
    out += conn.send_binary(kind(b"ab"), fin=False) + conn.send_continuation(kind(b"cd"), fin=True)
    out += conn.send_ping(kind(b"p"))
    assert sent(conn, out) == [
        (BINARY, True, 0, b"payload"),
        (TEXT, True, 0, "κόσμε".encode()),
        (BINARY, False, 0, b"ab"),
        (CONT, True, 0, b"cd"),
        (PING, True, 0, b"p"),
    ]
