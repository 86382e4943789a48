"""wsproto, patched by wsfast.accelerate(), behaves as unpatched: a sans-I/O
echo in both roles, fed the scripts of :mod:`._peer` in uneven pieces (so
that payloads are unmasked piece by piece), yields the same events and
writes the same bytes."""

from __future__ import annotations

import os
from typing import Any, Callable, Union

import pytest

pytest.importorskip("wsproto")

import wsproto.frame_protocol  # noqa: E402
from wsproto import ConnectionType, WSConnection  # noqa: E402
from wsproto.events import (  # noqa: E402
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    Request,
    TextMessage,
)

import wsfast  # noqa: E402
from wsfast.integrations import _targets  # noqa: E402
from wsfast.integrations import accelerate as acc  # noqa: E402

from ._peer import (  # noqa: E402
    BINARY_1M,
    CLIENT_SCRIPTS,
    SERVER_SCRIPTS,
    Recording,
    Script,
    accept_key,
    fixed_os,
    split_frames,
)

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
PIECE = 7001  # bytes fed at a time: cuts frames anywhere, headers included


def _ours() -> type:
    """Our masker for the installed wsproto (its masker's return type changed in 1.3)."""
    version = acc._installed_version("wsproto")
    assert version is not None
    return _targets.WsprotoXorMasker if acc._release(version) >= (1, 3) else _targets.WsprotoXorMaskerBytes


def test_patched_where_looked_up(accel: Callable[[str], Any]) -> None:
    module = wsproto.frame_protocol
    originals = (module.XorMaskerSimple, vars(module.FrameProtocol)["_serialize_frame"])
    accel("wsproto")
    assert module.XorMaskerSimple is _ours()
    assert module.FrameProtocol._serialize_frame is _targets.wsproto_serialize_frame
    wsfast.unaccelerate()
    assert (module.XorMaskerSimple, vars(module.FrameProtocol)["_serialize_frame"]) == originals


def test_masker_same_answers() -> None:
    """The key's phase carried across calls, the same type back, empty input included."""
    original, ours = wsproto.frame_protocol.XorMaskerSimple, _ours()
    data = os.urandom(1000)
    for key in (b"\x01\x02\x03\x04", bytearray(b"\xff\x00\xaa\x55")):
        theirs, mine = original(key), ours(key)
        for piece in (data[:3], data[3:3], bytearray(data[3:10]), data[10:], b""):
            expected, got = theirs.process(piece), mine.process(piece)
            assert got == expected and type(got) is type(expected)


def _open(role: ConnectionType) -> WSConnection:
    conn = WSConnection(role)
    if role is ConnectionType.SERVER:
        conn.receive_data(
            b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        (request,) = conn.events()
        assert isinstance(request, Request)
        conn.send(AcceptConnection())
    else:
        head = conn.send(Request(host="localhost", target="/"))
        lines = head.split(b"\r\n")
        key = [line.split(b":", 1)[1].strip() for line in lines if line.lower().startswith(b"sec-websocket-key")]
        conn.receive_data(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + f"Sec-WebSocket-Accept: {accept_key(key[0].decode())}\r\n\r\n".encode()
        )
        assert isinstance(next(conn.events()), AcceptConnection)
    return conn


def _echo(script: Script, role: ConnectionType) -> tuple[Recording, list[Any]]:
    conn = _open(role)
    out = bytearray()
    events: list[Any] = []
    parts: list[Union[str, bytes]] = []
    closed = False
    for step in script.steps:
        data = b"".join(step.frames)
        for start in range(0, len(data), PIECE):
            conn.receive_data(data[start : start + PIECE])
            for event in conn.events():
                events.append(event)
                if isinstance(event, (TextMessage, BytesMessage)):
                    parts.append(event.data)
                    if event.message_finished:
                        whole = "".join(parts) if isinstance(event, TextMessage) else b"".join(parts)  # type: ignore[arg-type]
                        out += conn.send(Message(data=whole))
                        parts = []
                elif isinstance(event, Ping):
                    out += conn.send(event.response())
                elif isinstance(event, CloseConnection):
                    out += conn.send(event.response())
                    closed = True
            if closed:
                break
        if closed:
            break
    return Recording(bytes(out), split_frames(bytes(out))[0], eof=False), events


@pytest.mark.parametrize("script", SERVER_SCRIPTS, ids=lambda s: s.name)
def test_server(script: Script, accel: Callable[[str], Any]) -> None:
    plain, plain_events = _echo(script, ConnectionType.SERVER)
    plain.check(script)
    accel("wsproto")
    fast, fast_events = _echo(script, ConnectionType.SERVER)
    assert fast_events == plain_events
    assert fast.raw == plain.raw
    assert fast.outcome == plain.outcome


@pytest.mark.parametrize("script", CLIENT_SCRIPTS, ids=lambda s: s.name)
def test_client(script: Script, accel: Callable[[str], Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wsproto.frame_protocol, "os", fixed_os())
    plain, plain_events = _echo(script, ConnectionType.CLIENT)
    plain.check(script)
    assert all(frame.masked for frame in plain.frames)
    accel("wsproto")
    monkeypatch.setattr(wsproto.frame_protocol, "os", fixed_os())
    fast, fast_events = _echo(script, ConnectionType.CLIENT)
    assert fast_events == plain_events
    assert fast.raw == plain.raw
    assert fast.outcome == plain.outcome


def _deflate_pair_exchange(messages: list[Union[str, bytes]]) -> list[bytes]:
    """A wsproto client and server, both offering permessage-deflate, echo
    ``messages`` (in two fragments each), then close: every byte either
    writes after the handshake (whose key is random), and every event."""
    from wsproto.extensions import PerMessageDeflate

    client, server = WSConnection(ConnectionType.CLIENT), WSConnection(ConnectionType.SERVER)
    server.receive_data(client.send(Request(host="localhost", target="/", extensions=[PerMessageDeflate()])))
    for _ in server.events():
        client.receive_data(server.send(AcceptConnection(extensions=[PerMessageDeflate()])))
    assert isinstance(next(client.events()), AcceptConnection)
    wire: list[bytes] = []
    for message in messages:
        half = len(message) // 2
        wire.append(client.send(Message(data=message[:half], message_finished=False)))
        wire.append(client.send(Message(data=message[half:])))
        server.receive_data(b"".join(wire[-2:]))
        for event in server.events():
            wire.append(server.send(Message(data=event.data, message_finished=event.message_finished)))
            client.receive_data(wire[-1])
        wire.extend(repr(event).encode() for event in client.events())
    wire.append(client.send(CloseConnection(code=1000, reason="done")))
    server.receive_data(wire[-1])
    for event in server.events():
        wire.append(server.send(event.response()))
    return wire


def test_deflate_pair(accel: Callable[[str], Any], monkeypatch: pytest.MonkeyPatch) -> None:
    messages: list[Union[str, bytes]] = ["κόσμε " * 50, b"\x00\xff" * 40000, BINARY_1M, "a", b""]
    monkeypatch.setattr(wsproto.frame_protocol, "os", fixed_os())
    plain = _deflate_pair_exchange(messages)
    accel("wsproto")
    monkeypatch.setattr(wsproto.frame_protocol, "os", fixed_os())
    assert _deflate_pair_exchange(messages) == plain


def test_control_frame_too_long(accel: Callable[[str], Any]) -> None:
    for patched in (False, True):
        if patched:
            accel("wsproto")
        conn = _open(ConnectionType.SERVER)
        with pytest.raises(ValueError, match="^payload too long for control frame$"):
            conn.send(Ping(payload=b"p" * 126))
        assert conn.send(Ping(payload=b"p" * 125))[:2] == b"\x89\x7d"
