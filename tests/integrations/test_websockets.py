"""websockets, patched by wsfast.accelerate(), behaves as unpatched: its
asyncio server and client, over real sockets on 127.0.0.1, send the very same
bytes (same echoes, same close codes) for every script of :mod:`._peer`."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import zlib
from typing import Any, Callable, Optional

import pytest

pytest.importorskip("websockets")

import websockets.frames  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402
from websockets.asyncio.server import serve  # noqa: E402

from wsfast import codec  # noqa: E402

from ..wire import BINARY, CLOSE, CONT, PING, TEXT, encode, xor  # noqa: E402
from ._peer import (  # noqa: E402
    CLIENT_SCRIPTS,
    DEADLINE,
    GUID,
    SERVER_SCRIPTS,
    BackgroundLoop,
    FixedRandom,
    Recording,
    Script,
    ScriptedServer,
    assert_unchanged_by,
    play_against_server,
    scripts,
)


def test_patched_where_looked_up(accel: Callable[[str], Any]) -> None:
    original = websockets.frames.apply_mask
    result = accel("websockets")
    assert websockets.frames.apply_mask is codec.apply_mask
    assert "websockets.frames.apply_mask" in result.patched
    import wsfast

    wsfast.unaccelerate("websockets")
    assert websockets.frames.apply_mask is original


async def _echo(ws: Any) -> None:
    try:
        async for message in ws:
            await ws.send(message)
    except websockets.ConnectionClosed:
        pass


async def _serve() -> Any:
    return await serve(_echo, "127.0.0.1", 0, compression=None, ping_interval=None)


def _server_run(script: Script) -> Recording:
    with BackgroundLoop() as background:
        server = background.run(_serve())
        try:
            port = server.sockets[0].getsockname()[1]
            return play_against_server(port, script)
        finally:
            background.call(server.close)
            background.run(server.wait_closed())


async def _client(url: str) -> None:
    async with connect(url, compression=None, ping_interval=None, close_timeout=5) as ws:
        await _echo(ws)


def _client_run(script: Script, monkeypatch: pytest.MonkeyPatch) -> tuple[Recording, Optional[str]]:
    """What the client sent, and the exception it ended with, if any."""
    monkeypatch.setattr(websockets.frames, "secrets", FixedRandom())  # the mask keys
    server = ScriptedServer(script)
    error = None
    try:
        asyncio.run(asyncio.wait_for(_client(server.url), DEADLINE))
    except websockets.ConnectionClosed:
        pass
    except Exception as exc:  # websockets 13.0 lets a UnicodeDecodeError out of recv()
        error = type(exc).__name__
    return server.result(), error


@pytest.mark.parametrize("script", SERVER_SCRIPTS, ids=lambda s: s.name)
def test_server(script: Script, accel: Callable[[str], Any]) -> None:
    assert_unchanged_by(lambda: accel("websockets"), lambda: _server_run(script), script)


@pytest.mark.parametrize("script", CLIENT_SCRIPTS, ids=lambda s: s.name)
def test_client(script: Script, accel: Callable[[str], Any], monkeypatch: pytest.MonkeyPatch) -> None:
    plain, plain_error = _client_run(script, monkeypatch)
    plain.check(script)
    assert all(frame.masked for frame in plain.frames)
    accel("websockets")
    fast, fast_error = _client_run(script, monkeypatch)
    assert fast.raw == plain.raw
    assert (fast.outcome, fast_error) == (plain.outcome, plain_error)


# ---------------------------------------------------------------- sans-I/O: Frame.parse and Frame.serialize

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def _streams(masked: bool) -> dict[str, bytes]:
    """Byte streams a websockets connection may receive, most of them wrong on purpose."""
    key = bytes.fromhex("37fa213d") if masked else None

    def frame(opcode: int, payload: bytes = b"", fin: bool = True, rsv: int = 0, **kw: Any) -> bytes:
        return encode(opcode, payload, fin, rsv, key, **kw)

    close = frame(CLOSE, (1000).to_bytes(2, "big"))
    played = {s.name: b"".join(f for step in s.steps for f in step.frames) for s in scripts(masked)}
    short = xor(b"short", key) if key else b"short"
    return {
        **played,
        "bad-opcode": frame(TEXT, b"a") + frame(0x3, b"b"),
        "rsv-bits": frame(BINARY, b"x", rsv=4),
        "wrong-masking": encode(TEXT, b"hi", True, 0, None if masked else b"abcd"),
        "control-too-long": frame(PING, b"p" * 126),
        "fragmented-control": frame(PING, b"p", False),
        "too-big": frame(BINARY, b"z" * 2000),
        "non-minimal-length": bytes([0x81, (0x80 if key else 0) | 126, 0, 5]) + (key or b"") + short + close,
        "close-then-more": close + frame(TEXT, b"after"),
        "eof-mid-frame": frame(BINARY, b"q" * 300)[:150],
    }


def _deflate_streams(masked: bool) -> dict[str, bytes]:
    """Streams for a connection that negotiated permessage-deflate (RSV1)."""
    key = bytes.fromhex("a1b2c3d4") if masked else None

    def deflated(data: bytes) -> bytes:
        compressor = zlib.compressobj(wbits=-15)
        return (compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]

    text = "κόσμε deflated ".encode() * 20
    return {
        "deflate": encode(TEXT, deflated(text), True, 4, key)
        + encode(BINARY, deflated(text)[:10], False, 4, key)
        + encode(CONT, deflated(text)[10:], True, 0, key)
        + encode(TEXT, b"plain", True, 0, key)
        + encode(TEXT, deflated(b"\xff\xfe"), True, 4, key)
        + encode(CLOSE, (1000).to_bytes(2, "big"), True, 0, key),
        "deflate-rsv2": encode(TEXT, deflated(text), True, 4, key) + encode(TEXT, b"x", True, 2, key),
    }


def _sansio(role: str, stream: bytes, piece: int, deflate: bool) -> list[Any]:
    """What a websockets connection makes of ``stream`` fed ``piece`` bytes
    at a time: every event and every byte it writes, then its state."""
    from websockets.client import ClientProtocol
    from websockets.extensions.permessage_deflate import (
        ClientPerMessageDeflateFactory,
        ServerPerMessageDeflateFactory,
    )
    from websockets.server import ServerProtocol
    from websockets.uri import parse_uri

    extension = b"Sec-WebSocket-Extensions: permessage-deflate\r\n" if deflate else b""
    if role == "server":
        conn: Any = ServerProtocol(max_size=1000, extensions=[ServerPerMessageDeflateFactory()] if deflate else None)
        conn.receive_data(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n".encode()
            + extension
            + b"\r\n"
        )
        conn.send_response(conn.accept(conn.events_received()[0]))
    else:
        factories = [ClientPerMessageDeflateFactory()] if deflate else None
        conn = ClientProtocol(parse_uri("ws://x/"), max_size=1000, extensions=factories)
        request = conn.connect()
        conn.send_request(request)
        accept = base64.b64encode(hashlib.sha1(request.headers["Sec-WebSocket-Key"].encode() + GUID).digest())
        conn.receive_data(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + b"Sec-WebSocket-Accept: "
            + accept
            + b"\r\n"
            + extension
            + b"\r\n"
        )
        conn.events_received()
    assert bool(conn.extensions) == deflate
    conn.data_to_send()
    seen: list[Any] = []
    for start in range(0, len(stream), piece):
        conn.receive_data(stream[start : start + piece])
        for event in conn.events_received():
            seen.append(("event", event.opcode, bytes(event.data), type(event.data).__name__, event.fin, event.rsv1))
            if event.opcode in (BINARY, TEXT, CONT) and conn.state.name == "OPEN":
                conn.send_frame(websockets.frames.Frame(event.opcode, event.data, event.fin))
        seen.append(("out", b"".join(conn.data_to_send())))
    conn.receive_eof()
    seen.append(("end", b"".join(conn.data_to_send()), conn.state.name, conn.close_code, repr(conn.parser_exc)))
    return seen


@pytest.mark.parametrize("role", ["server", "client"])
@pytest.mark.parametrize("piece", [1, 7, 1 << 30])
def test_sansio_same_events(
    role: str, piece: int, accel: Callable[[str], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    streams = {(name, False): data for name, data in _streams(masked=role == "server").items()}
    streams.update({(name, True): data for name, data in _deflate_streams(masked=role == "server").items()})
    if piece == 1:
        streams = {name: data for name, data in streams.items() if len(data) < 100_000}
    results: dict[bool, dict[Any, Any]] = {}
    for patched in (False, True):
        if patched:
            accel("websockets")
        results[patched] = {}
        for (name, deflate), stream in streams.items():
            monkeypatch.setattr(websockets.frames, "secrets", FixedRandom())
            results[patched][name] = _sansio(role, stream, piece, deflate)
    for name, _ in streams:
        assert results[True][name] == results[False][name], name
