"""websockets, patched by wsfast.accelerate(), behaves as unpatched: its
asyncio server and client, over real sockets on 127.0.0.1, send the very same
bytes (same echoes, same close codes) for every script of :mod:`._peer`."""

from __future__ import annotations

import asyncio
from typing import Any, Callable

import pytest

pytest.importorskip("websockets")

import websockets.frames  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402
from websockets.asyncio.server import serve  # noqa: E402

from wsfast import codec  # noqa: E402

from ._peer import (  # noqa: E402
    CLIENT_SCRIPTS,
    DEADLINE,
    SERVER_SCRIPTS,
    BackgroundLoop,
    FixedRandom,
    Recording,
    Script,
    ScriptedServer,
    play_against_server,
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
            server.close()
            background.run(server.wait_closed())


async def _client(url: str) -> None:
    async with connect(url, compression=None, ping_interval=None, close_timeout=5) as ws:
        await _echo(ws)


def _client_run(script: Script, monkeypatch: pytest.MonkeyPatch) -> Recording:
    monkeypatch.setattr(websockets.frames, "secrets", FixedRandom())  # the mask keys
    server = ScriptedServer(script)
    try:
        asyncio.run(asyncio.wait_for(_client(server.url), DEADLINE))
    except websockets.ConnectionClosed:
        pass
    return server.result()


@pytest.mark.parametrize("script", SERVER_SCRIPTS, ids=lambda s: s.name)
def test_server(script: Script, accel: Callable[[str], Any]) -> None:
    plain = _server_run(script)
    plain.check(script)
    accel("websockets")
    fast = _server_run(script)
    assert fast.raw == plain.raw
    assert fast.outcome == plain.outcome


@pytest.mark.parametrize("script", CLIENT_SCRIPTS, ids=lambda s: s.name)
def test_client(script: Script, accel: Callable[[str], Any], monkeypatch: pytest.MonkeyPatch) -> None:
    plain = _client_run(script, monkeypatch)
    plain.check(script)
    assert all(frame.masked for frame in plain.frames)
    accel("websockets")
    fast = _client_run(script, monkeypatch)
    assert fast.raw == plain.raw
    assert fast.outcome == plain.outcome
