"""Byte-level interoperability with the sans-I/O cores of two other libraries.

wsfast talks to ``wsproto.WSConnection`` and to websockets'
``ClientProtocol`` / ``ServerProtocol`` with no sockets in between: the bytes
one side writes are the bytes the other reads. Each is used in both roles,
with and without permessage-deflate.
"""

from __future__ import annotations

import random
from typing import Any, Optional

import pytest

pytest.importorskip("wsproto")
pytest.importorskip("websockets")

import wsproto.events as wpe  # noqa: E402
from websockets.client import ClientProtocol  # noqa: E402
from websockets.extensions.permessage_deflate import (  # noqa: E402
    ClientPerMessageDeflateFactory,
    ServerPerMessageDeflateFactory,
)
from websockets.frames import Close, Frame, Opcode  # noqa: E402
from websockets.protocol import State as WSState  # noqa: E402
from websockets.server import ServerProtocol  # noqa: E402
from websockets.uri import parse_uri  # noqa: E402
from wsproto import ConnectionType, WSConnection  # noqa: E402
from wsproto.connection import ConnectionState  # noqa: E402
from wsproto.extensions import PerMessageDeflate as WPPerMessageDeflate  # noqa: E402

from wsfast.events import BinaryMessage, CloseReceived, Ping, Pong, TextMessage  # noqa: E402
from wsfast.extensions import PerMessageDeflate  # noqa: E402
from wsfast.http11 import Request, Response  # noqa: E402
from wsfast.protocol import ClientConnection, Connection, ServerConnection, State  # noqa: E402

LIBS = ["websockets", "wsproto"]


# ---------------------------------------------------------------- peer adapters


class Peer:
    """A peer library behind one interface; ``feed`` returns normalized events:
    ("text", str), ("binary", bytes), ("ping", b), ("pong", b), ("close", code, reason)."""

    def send_text(self, data: str, fin: bool = True) -> None: ...
    def send_binary(self, data: bytes, fin: bool = True) -> None: ...
    def send_continuation(self, data: Any, fin: bool) -> None: ...
    def send_ping(self, data: bytes) -> None: ...
    def send_close(self, code: int, reason: str) -> None: ...
    def out(self) -> bytes: ...
    def feed(self, data: bytes) -> list[tuple[Any, ...]]: ...
    def is_open(self) -> bool: ...
    def is_closed(self) -> bool: ...


class WebsocketsPeer(Peer):
    def __init__(self, protocol: Any) -> None:
        self.p = protocol
        self._opcode: Optional[Opcode] = None
        self._parts: list[bytes] = []
        self._text_fragment = False

    def send_text(self, data: str, fin: bool = True) -> None:
        self._text_fragment = not fin
        self.p.send_text(data.encode(), fin=fin)

    def send_binary(self, data: bytes, fin: bool = True) -> None:
        self.p.send_binary(data, fin=fin)

    def send_continuation(self, data: Any, fin: bool) -> None:
        self.p.send_continuation(data.encode() if isinstance(data, str) else data, fin=fin)

    def send_ping(self, data: bytes) -> None:
        self.p.send_ping(data)

    def send_close(self, code: int, reason: str) -> None:
        self.p.send_close(code, reason)

    def out(self) -> bytes:
        return b"".join(self.p.data_to_send())

    def feed(self, data: bytes) -> list[tuple[Any, ...]]:
        self.p.receive_data(data)
        return self.normalize(self.p.events_received())

    def normalize(self, events: list[Any]) -> list[tuple[Any, ...]]:
        result: list[tuple[Any, ...]] = []
        for event in events:
            assert isinstance(event, Frame), event
            if event.opcode in (Opcode.TEXT, Opcode.BINARY):
                self._opcode = event.opcode
                self._parts = [event.data]
            elif event.opcode is Opcode.CONT:
                self._parts.append(event.data)
            elif event.opcode is Opcode.PING:
                result.append(("ping", event.data))
                continue
            elif event.opcode is Opcode.PONG:
                result.append(("pong", event.data))
                continue
            elif event.opcode is Opcode.CLOSE:
                close = Close.parse(event.data)
                result.append(("close", int(close.code), close.reason))
                continue
            if event.fin:
                data = b"".join(self._parts)
                result.append(("text", data.decode()) if self._opcode is Opcode.TEXT else ("binary", data))
        return result

    def is_open(self) -> bool:
        return self.p.state is WSState.OPEN and self.p.handshake_exc is None

    def is_closed(self) -> bool:
        return self.p.state in (WSState.CLOSING, WSState.CLOSED) and self.p.close_rcvd is not None


class WsprotoPeer(Peer):
    def __init__(self, conn: WSConnection, ext: Any = None) -> None:
        self.w = conn
        self.ext = ext
        self._buffer: list[bytes] = []
        self._text: list[str] = []
        self._bytes: list[bytes] = []

    def send_text(self, data: str, fin: bool = True) -> None:
        self._kind = "text"
        self._buffer.append(self.w.send(wpe.TextMessage(data=data, message_finished=fin)))

    def send_binary(self, data: bytes, fin: bool = True) -> None:
        self._kind = "binary"
        self._buffer.append(self.w.send(wpe.BytesMessage(data=data, message_finished=fin)))

    def send_continuation(self, data: Any, fin: bool) -> None:
        if self._kind == "text":
            self.send_text(data, fin)
        else:
            self.send_binary(data, fin)

    def send_ping(self, data: bytes) -> None:
        self._buffer.append(self.w.send(wpe.Ping(payload=data)))

    def send_close(self, code: int, reason: str) -> None:
        self._buffer.append(self.w.send(wpe.CloseConnection(code=code, reason=reason)))

    def out(self) -> bytes:
        data, self._buffer = b"".join(self._buffer), []
        return data

    def feed(self, data: bytes) -> list[tuple[Any, ...]]:
        self.w.receive_data(data)
        result: list[tuple[Any, ...]] = []
        for event in self.w.events():
            if isinstance(event, wpe.TextMessage):
                self._text.append(event.data)
                if event.message_finished:
                    result.append(("text", "".join(self._text)))
                    self._text = []
            elif isinstance(event, wpe.BytesMessage):
                self._bytes.append(bytes(event.data))
                if event.message_finished:
                    result.append(("binary", b"".join(self._bytes)))
                    self._bytes = []
            elif isinstance(event, wpe.Ping):
                result.append(("ping", bytes(event.payload)))
                self._buffer.append(self.w.send(event.response()))  # wsproto does not answer by itself
            elif isinstance(event, wpe.Pong):
                result.append(("pong", bytes(event.payload)))
            elif isinstance(event, wpe.CloseConnection):
                result.append(("close", event.code, event.reason or ""))
                if self.w.state is ConnectionState.REMOTE_CLOSING:
                    self._buffer.append(self.w.send(event.response()))
            else:  # pragma: no cover
                raise AssertionError(f"unexpected wsproto event {event!r}")
        return result

    def is_open(self) -> bool:
        return self.w.state is ConnectionState.OPEN

    def is_closed(self) -> bool:
        return self.w.state is ConnectionState.CLOSED


def normalize(events: list[Any]) -> list[tuple[Any, ...]]:
    result: list[tuple[Any, ...]] = []
    for e in events:
        if isinstance(e, TextMessage):
            result.append(("text", e.data))
        elif isinstance(e, BinaryMessage):
            result.append(("binary", e.data))
        elif isinstance(e, Ping):
            result.append(("ping", e.data))
        elif isinstance(e, Pong):
            result.append(("pong", e.data))
        elif isinstance(e, CloseReceived):
            result.append(("close", e.code, e.reason))
        else:
            raise AssertionError(f"unexpected wsfast event {e!r}")
    return result


# ---------------------------------------------------------------- handshakes


def wsfast_client_with(
    lib: str,
    *,
    deflate: Optional[PerMessageDeflate] = None,
    peer_deflate: Any = None,
    subprotocols: tuple[str, ...] = ("chat",),
) -> tuple[ClientConnection, Peer]:
    """A wsfast client connected to a ``lib`` server."""
    client = ClientConnection("example.com", "/path?q=1", subprotocols=list(subprotocols), deflate=deflate)
    request = client.data_to_send()
    if lib == "websockets":
        extensions = [] if peer_deflate is None else [peer_deflate]
        # websockets refuses clients offering none of its subprotocols, if it has any.
        server = ServerProtocol(extensions=extensions, subprotocols=["chat"] if subprotocols else None)
        server.receive_data(request)
        (ws_request,) = server.events_received()
        assert ws_request.path == "/path?q=1"
        response = server.accept(ws_request)
        assert response.status_code == 101, response.body
        server.send_response(response)
        peer: Peer = WebsocketsPeer(server)
    else:
        conn = WSConnection(ConnectionType.SERVER)
        conn.receive_data(request)
        (wp_request,) = list(conn.events())
        assert isinstance(wp_request, wpe.Request) and wp_request.target == "/path?q=1"
        assert wp_request.subprotocols == list(subprotocols)
        extensions = [] if peer_deflate is None else [peer_deflate]
        data = conn.send(
            wpe.AcceptConnection(
                subprotocol="chat" if "chat" in subprotocols else None, extensions=extensions
            )
        )
        peer = WsprotoPeer(conn, peer_deflate)
        peer._buffer.append(data)
    events = client.receive_data(peer.out())
    assert len(events) == 1 and isinstance(events[0], Response), events
    assert client.state is State.OPEN and client.failure is None
    assert peer.is_open()
    return client, peer


def wsfast_server_with(
    lib: str,
    *,
    deflate: Optional[PerMessageDeflate] = None,
    peer_deflate: Any = None,
    subprotocols: tuple[str, ...] = ("chat",),
) -> tuple[ServerConnection, Peer]:
    """A wsfast server accepting a ``lib`` client."""
    server = ServerConnection(subprotocols=["chat"], deflate=deflate)
    if lib == "websockets":
        extensions = None if peer_deflate is None else [peer_deflate]
        client = ClientProtocol(
            parse_uri("ws://example.com/path?q=1"), extensions=extensions, subprotocols=list(subprotocols)
        )
        client.send_request(client.connect())
        peer: Peer = WebsocketsPeer(client)
    else:
        conn = WSConnection(ConnectionType.CLIENT)
        extensions = [] if peer_deflate is None else [peer_deflate]
        data = conn.send(
            wpe.Request(
                host="example.com", target="/path?q=1", subprotocols=list(subprotocols), extensions=extensions
            )
        )
        peer = WsprotoPeer(conn, peer_deflate)
        peer._buffer.append(data)
    events = server.receive_data(peer.out())
    assert len(events) == 1 and isinstance(events[0], Request)
    assert events[0].target == "/path?q=1"
    response = server.accept()
    assert server.receive_data(b"") == []
    if lib == "websockets":
        peer.p.receive_data(response)  # type: ignore[attr-defined]
        (ws_response,) = peer.p.events_received()  # type: ignore[attr-defined]
        assert ws_response.status_code == 101
    else:
        peer.w.receive_data(response)  # type: ignore[attr-defined]
        (accepted,) = list(peer.w.events())  # type: ignore[attr-defined]
        assert isinstance(accepted, wpe.AcceptConnection)
    assert peer.is_open()
    return server, peer


def connect(lib: str, wsfast_role: str, **kwargs: Any) -> tuple[Connection, Peer]:
    if wsfast_role == "client":
        return wsfast_client_with(lib, **kwargs)
    return wsfast_server_with(lib, **kwargs)


@pytest.fixture(params=LIBS)
def lib(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(params=["client", "server"])
def wsfast_role(request: pytest.FixtureRequest) -> str:
    return request.param


# ---------------------------------------------------------------- handshake


def test_handshake_and_subprotocol(lib: str, wsfast_role: str) -> None:
    conn, peer = connect(lib, wsfast_role)
    assert conn.subprotocol == "chat"
    if lib == "websockets":
        assert peer.p.subprotocol == "chat"  # type: ignore[attr-defined]
    assert conn.deflate is None


def test_handshake_without_subprotocol(lib: str, wsfast_role: str) -> None:
    conn, peer = connect(lib, wsfast_role, subprotocols=())
    assert conn.subprotocol is None


# ---------------------------------------------------------------- messages


TEXTS = ["héllo", "", "κόσμε" * 3000, "𝄞" * 10]
BINARIES = [b"\x00\x01\xff", b"", random.Random(1).randbytes(70_000)]


def send_from_wsfast(conn: Connection, peer: Peer, expect_rsv1: Optional[bool] = None) -> None:
    out = b""
    expected: list[tuple[Any, ...]] = []
    for text in TEXTS:
        out += conn.send_text(text)
        expected.append(("text", text))
    for data in BINARIES:
        out += conn.send_binary(data)
        expected.append(("binary", data))
    # Fragmented, a character split between frames.
    raw = "κόσμε".encode()
    out += (
        conn.send_text(raw[:3], fin=False)
        + conn.send_continuation(raw[3:7], fin=False)
        + conn.send_continuation(raw[7:], fin=True)
    )
    expected.append(("text", "κόσμε"))
    out += (
        conn.send_binary(b"ab", fin=False) + conn.send_ping(b"mid") + conn.send_continuation(b"cd", fin=True)
    )
    expected += [("ping", b"mid"), ("binary", b"abcd")]
    assert peer.feed(out) == expected
    # The peer answered the ping.
    assert normalize(conn.receive_data(peer.out())) == [("pong", b"mid")]


def send_from_peer(conn: Connection, peer: Peer) -> None:
    expected: list[tuple[Any, ...]] = []
    for text in TEXTS:
        peer.send_text(text)
        expected.append(("text", text))
    for data in BINARIES:
        peer.send_binary(data)
        expected.append(("binary", data))
    peer.send_text("κό", fin=False)
    peer.send_continuation("σμε", fin=False)
    peer.send_continuation("", fin=True)
    expected.append(("text", "κόσμε"))
    peer.send_binary(b"ab", fin=False)
    peer.send_ping(b"mid")
    peer.send_continuation(b"cd", fin=True)
    expected += [("ping", b"mid"), ("binary", b"abcd")]
    data = peer.out()
    # Any chunking of the peer's bytes gives the same events.
    events = []
    for i in range(0, len(data), 4093):
        events += conn.receive_data(data[i : i + 4093])
    assert normalize(events) == expected
    assert conn.failure is None
    assert peer.feed(conn.data_to_send()) == [("pong", b"mid")]


def test_messages_both_ways(lib: str, wsfast_role: str) -> None:
    conn, peer = connect(lib, wsfast_role)
    send_from_wsfast(conn, peer)
    send_from_peer(conn, peer)
    send_from_wsfast(conn, peer)


def test_ping_from_each_side(lib: str, wsfast_role: str) -> None:
    conn, peer = connect(lib, wsfast_role)
    peer.send_ping(b"from peer")
    assert normalize(conn.receive_data(peer.out())) == [("ping", b"from peer")]
    assert peer.feed(conn.data_to_send()) == [("pong", b"from peer")]
    assert peer.feed(conn.send_ping(b"from wsfast")) == [("ping", b"from wsfast")]
    assert normalize(conn.receive_data(peer.out())) == [("pong", b"from wsfast")]


def test_wsfast_closes(lib: str, wsfast_role: str) -> None:
    conn, peer = connect(lib, wsfast_role)
    assert peer.feed(conn.send_close(1000, "bye")) == [("close", 1000, "bye")]
    events = normalize(conn.receive_data(peer.out()))
    assert len(events) == 1 and events[0][:2] == ("close", 1000)
    assert conn.state is State.CLOSED and conn.close_code == 1000
    assert conn.failure is None
    assert peer.is_closed()


def test_peer_closes(lib: str, wsfast_role: str) -> None:
    conn, peer = connect(lib, wsfast_role)
    peer.send_close(1001, "going away")
    assert normalize(conn.receive_data(peer.out())) == [("close", 1001, "going away")]
    assert conn.state is State.CLOSED
    reply = peer.feed(conn.data_to_send())
    assert len(reply) == 1 and reply[0][:2] == ("close", 1001)
    assert peer.is_closed()
    assert conn.failure is None


def test_wsfast_fails_on_peer_invalid_utf8_and_peer_understands(lib: str, wsfast_role: str) -> None:
    """A protocol error detected by wsfast reaches the peer as a close 1007."""
    conn, peer = connect(lib, wsfast_role)
    peer.send_binary(b"ok")
    # Neither library sends bad UTF-8: re-label its binary frame as text and
    # replace the payload with C3 28 (a lead byte and a bad continuation).
    data = bytearray(peer.out())
    assert len(data) == (8 if wsfast_role == "server" else 4)
    data[0] = data[0] & 0xF0 | 0x1
    key = bytes(data[2:6]) if wsfast_role == "server" else b"\x00" * 4
    data[-2:] = bytes(b ^ key[i % 4] for i, b in enumerate(b"\xc3\x28"))
    assert conn.receive_data(bytes(data)) == []
    assert conn.failure is not None and conn.failure.code == 1007  # type: ignore[attr-defined]
    events = peer.feed(conn.data_to_send())
    assert len(events) == 1 and events[0][:2] == ("close", 1007)


# ---------------------------------------------------------------- permessage-deflate


def peer_deflate(lib: str, side: str, **params: Any) -> Any:
    if lib == "websockets":
        factory = ClientPerMessageDeflateFactory if side == "client" else ServerPerMessageDeflateFactory
        return factory(**params)
    return WPPerMessageDeflate(**params)


def negotiated_peer_params(lib: str, peer: Peer) -> tuple[int, int, bool, bool]:
    """(peer compress bits, peer decompress bits, peer compress reset, peer decompress reset)."""
    if lib == "websockets":
        (ext,) = peer.p.extensions  # type: ignore[attr-defined]
        return (
            ext.local_max_window_bits,
            ext.remote_max_window_bits,
            ext.local_no_context_takeover,
            ext.remote_no_context_takeover,
        )
    ext = peer.ext  # type: ignore[attr-defined]  # the instance wsproto negotiated with
    assert ext is not None and ext.enabled()
    client = peer.w.client  # type: ignore[attr-defined]
    mine = "client" if client else "server"
    theirs = "server" if client else "client"
    return (
        getattr(ext, f"{mine}_max_window_bits"),
        getattr(ext, f"{theirs}_max_window_bits"),
        getattr(ext, f"{mine}_no_context_takeover"),
        getattr(ext, f"{theirs}_no_context_takeover"),
    )


def check_compatible(conn: Connection, lib: str, peer: Peer) -> tuple[int, int, bool, bool]:
    deflate = conn.deflate
    assert deflate is not None
    p_cbits, p_dbits, p_creset, p_dreset = negotiated_peer_params(lib, peer)
    # What one side compresses with, the other inflates with (or more).
    assert deflate.compress_bits <= p_dbits
    assert p_cbits <= deflate.decompress_bits
    assert not deflate.decompress_reset or p_creset
    assert not p_dreset or deflate.compress_reset
    return p_cbits, p_dbits, p_creset, p_dreset


def compressed_exchange(conn: Connection, peer: Peer) -> None:
    messages = ["κόσμε " * 400, "κόσμε " * 400, "x", "", "{" + '"k": "value", ' * 300 + "}"]
    binaries = [bytes(5000), random.Random(2).randbytes(3000), bytes(5000)]
    for _ in range(2):
        out = b""
        for m in messages:
            frame = conn.send_text(m)
            assert frame[0] & 0x40, "wsfast did not compress"
            out += frame
        for b in binaries:
            out += conn.send_binary(b)
        raw = ("é" * 3000).encode()
        out += conn.send_text(raw[:1001], fin=False) + conn.send_continuation(raw[1001:], fin=True)
        expected = (
            [("text", m) for m in messages] + [("binary", b) for b in binaries] + [("text", "é" * 3000)]
        )
        assert peer.feed(out) == expected
        for m in messages:
            peer.send_text(m)
        for b in binaries:
            peer.send_binary(b)
        data = peer.out()
        assert data[0] & 0x40, "the peer did not compress"
        assert normalize(conn.receive_data(data)) == [("text", m) for m in messages] + [
            ("binary", b) for b in binaries
        ]
        assert conn.failure is None


ALWAYS = dict(compress_threshold=0)


def test_deflate_wsfast_client_default_offer(lib: str) -> None:
    conn, peer = wsfast_client_with(
        lib, deflate=PerMessageDeflate(**ALWAYS), peer_deflate=peer_deflate(lib, "server")
    )
    assert conn.deflate is not None
    assert (conn.deflate.compress_bits, conn.deflate.decompress_bits) == (12, 12)
    p_cbits, p_dbits, _, _ = check_compatible(conn, lib, peer)
    assert p_cbits <= 12  # the server honoured server_max_window_bits=12
    compressed_exchange(conn, peer)


def test_deflate_wsfast_server_default_config(lib: str) -> None:
    conn, peer = wsfast_server_with(
        lib, deflate=PerMessageDeflate(**ALWAYS), peer_deflate=peer_deflate(lib, "client")
    )
    assert conn.deflate is not None
    check_compatible(conn, lib, peer)
    assert conn.deflate.compress_bits == 12
    compressed_exchange(conn, peer)


@pytest.mark.parametrize(
    "params",
    [
        dict(server_no_context_takeover=True, client_no_context_takeover=True),
        dict(server_max_window_bits=10, client_max_window_bits=11),
        dict(server_max_window_bits=None, client_max_window_bits=None),
        dict(server_no_context_takeover=True, server_max_window_bits=9, client_max_window_bits=9),
    ],
)
def test_deflate_wsfast_client_parameters(lib: str, params: dict[str, Any]) -> None:
    config = PerMessageDeflate(**params, **ALWAYS)
    conn, peer = wsfast_client_with(lib, deflate=config, peer_deflate=peer_deflate(lib, "server"))
    deflate = conn.deflate
    assert deflate is not None
    p_cbits, p_dbits, p_creset, p_dreset = check_compatible(conn, lib, peer)
    if params.get("server_no_context_takeover"):
        assert p_creset and deflate.decompress_reset
    if params.get("client_no_context_takeover"):
        assert deflate.compress_reset
    if params.get("server_max_window_bits"):
        assert p_cbits <= params["server_max_window_bits"]
    if params.get("client_max_window_bits"):
        assert deflate.compress_bits <= params["client_max_window_bits"]
    compressed_exchange(conn, peer)


@pytest.mark.parametrize(
    "params",
    [
        dict(server_no_context_takeover=True, client_no_context_takeover=True),
        dict(server_max_window_bits=10, client_max_window_bits=11),
        dict(client_no_context_takeover=True, server_max_window_bits=9),
    ],
)
def test_deflate_peer_client_parameters(lib: str, params: dict[str, Any]) -> None:
    """The peer client asks for parameters; the wsfast server must honour them."""
    conn, peer = wsfast_server_with(
        lib, deflate=PerMessageDeflate(**ALWAYS), peer_deflate=peer_deflate(lib, "client", **params)
    )
    deflate = conn.deflate
    assert deflate is not None
    p_cbits, p_dbits, p_creset, p_dreset = check_compatible(conn, lib, peer)
    if params.get("server_no_context_takeover"):
        assert deflate.compress_reset
    if params.get("client_no_context_takeover"):
        assert p_creset
    if params.get("server_max_window_bits"):
        assert deflate.compress_bits <= params["server_max_window_bits"]
    if params.get("client_max_window_bits"):
        assert p_cbits <= params["client_max_window_bits"]
    compressed_exchange(conn, peer)


@pytest.mark.parametrize(
    "params",
    [
        dict(server_no_context_takeover=True, client_no_context_takeover=True),
        dict(server_max_window_bits=10, client_max_window_bits=11),
    ],
)
def test_deflate_peer_server_parameters(lib: str, params: dict[str, Any]) -> None:
    """The peer server imposes parameters; the wsfast client must follow them."""
    if lib == "wsproto":
        # wsproto's server only answers what the client offered, with its own values.
        params = {
            k: v
            for k, v in params.items()
            if k.endswith("no_context_takeover") or k == "server_max_window_bits"
        }
        if "server_max_window_bits" in params:
            params["server_max_window_bits"] = min(params["server_max_window_bits"], 12)
    config = PerMessageDeflate(server_max_window_bits=None, **ALWAYS)
    conn, peer = wsfast_client_with(lib, deflate=config, peer_deflate=peer_deflate(lib, "server", **params))
    deflate = conn.deflate
    assert deflate is not None
    check_compatible(conn, lib, peer)
    if params.get("client_no_context_takeover"):
        assert deflate.compress_reset
    if params.get("client_max_window_bits"):
        assert deflate.compress_bits <= params["client_max_window_bits"]
    if params.get("server_max_window_bits"):
        assert deflate.decompress_bits >= params["server_max_window_bits"]
    compressed_exchange(conn, peer)


def test_deflate_threshold_small_messages_uncompressed(lib: str, wsfast_role: str) -> None:
    kwargs: dict[str, Any] = dict(
        deflate=PerMessageDeflate(),
        peer_deflate=peer_deflate(lib, "client" if wsfast_role == "server" else "server"),
    )
    conn, peer = connect(lib, wsfast_role, **kwargs)
    small = conn.send_text("tiny")
    assert not small[0] & 0x40
    large = conn.send_text("large " * 100)
    assert large[0] & 0x40
    assert peer.feed(small + large) == [("text", "tiny"), ("text", "large " * 100)]


def test_deflate_declined_by_the_peer(lib: str, wsfast_role: str) -> None:
    conn, peer = connect(lib, wsfast_role, deflate=PerMessageDeflate(**ALWAYS), peer_deflate=None)
    assert conn.deflate is None
    frame = conn.send_text("x" * 1000)
    assert not frame[0] & 0x40
    assert peer.feed(frame) == [("text", "x" * 1000)]
