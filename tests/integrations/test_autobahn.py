"""Autobahn, patched by wsfast.accelerate() (or patch_autobahn()), behaves
as unpatched: its asyncio server and client, over real sockets on 127.0.0.1,
send the very same bytes for every script of :mod:`._peer`, down to the
octet index of invalid UTF-8 in its close reasons."""

from __future__ import annotations

import asyncio
import random
from typing import Any, Callable

import pytest

pytest.importorskip("autobahn")

import autobahn.websocket.protocol  # noqa: E402
import autobahn.websocket.utf8validator  # noqa: E402
import autobahn.websocket.xormasker  # noqa: E402
from autobahn.asyncio.websocket import (  # noqa: E402
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)

import wsfast  # noqa: E402
from wsfast.compat import wsaccel  # noqa: E402

from ._peer import (  # noqa: E402
    CLIENT_SCRIPTS,
    DEADLINE,
    SERVER_SCRIPTS,
    BackgroundLoop,
    FixedRandom,
    Proxy,
    Recording,
    Script,
    ScriptedServer,
    assert_unchanged_by,
    play_against_server,
)

# failByDrop=False: fail with a closing handshake, whose reason gives the
# octet index of bad UTF-8 (the validator's total index), instead of a drop.
OPTIONS = {"failByDrop": False, "autoPingInterval": 0}


def test_patched_where_looked_up(accel: Callable[[str], Any]) -> None:
    protocol = autobahn.websocket.protocol
    originals = (protocol.Utf8Validator, protocol.create_xor_masker)
    accel("autobahn")
    assert protocol.Utf8Validator is wsaccel.Utf8Validator
    assert protocol.create_xor_masker is wsaccel.createXorMasker
    assert autobahn.websocket.utf8validator.Utf8Validator is wsaccel.Utf8Validator
    assert autobahn.websocket.xormasker.create_xor_masker is wsaccel.createXorMasker
    wsfast.unaccelerate()
    assert (protocol.Utf8Validator, protocol.create_xor_masker) == originals


def test_patch_autobahn(monkeypatch: pytest.MonkeyPatch) -> None:
    """wsaccel's entry point, on wsfast."""
    monkeypatch.setattr(wsfast.codec, "HAS_SPEEDUPS", True)  # whichever codec runs the tests
    result = wsaccel.patch_autobahn()
    assert result.ok and result.target == "autobahn"
    assert autobahn.websocket.protocol.Utf8Validator is wsaccel.Utf8Validator


class EchoServer(WebSocketServerProtocol):  # type: ignore[misc]
    def onMessage(self, payload: bytes, isBinary: bool) -> None:  # noqa: N802, N803
        self.sendMessage(payload, isBinary)


class EchoClient(WebSocketClientProtocol):  # type: ignore[misc]
    def onMessage(self, payload: bytes, isBinary: bool) -> None:  # noqa: N802, N803
        self.sendMessage(payload, isBinary)

    def onClose(self, wasClean: bool, code: Any, reason: Any) -> None:  # noqa: N802, N803
        if not self.factory.closed.done():
            self.factory.closed.set_result(code)


async def _serve() -> Any:
    factory = WebSocketServerFactory()
    factory.protocol = EchoServer
    factory.setProtocolOptions(**OPTIONS)
    return await asyncio.get_running_loop().create_server(factory, "127.0.0.1", 0)


def _server_run(script: Script) -> Recording:
    with BackgroundLoop() as background:
        server = background.run(_serve())
        try:
            return play_against_server(server.sockets[0].getsockname()[1], script)
        finally:
            background.call(server.close)


async def _client(port: int) -> None:
    factory = WebSocketClientFactory(f"ws://127.0.0.1:{port}/")
    factory.protocol = EchoClient
    factory.setProtocolOptions(**OPTIONS)
    factory.closed = asyncio.get_running_loop().create_future()
    transport, _ = await asyncio.get_running_loop().create_connection(factory, "127.0.0.1", port)
    try:
        await factory.closed
    finally:
        transport.close()


def _client_run(script: Script, monkeypatch: pytest.MonkeyPatch) -> Recording:
    rng = FixedRandom()  # the mask keys
    monkeypatch.setattr(autobahn.websocket.protocol, "random", Proxy(random, getrandbits=rng.getrandbits))
    server = ScriptedServer(script)
    asyncio.run(asyncio.wait_for(_client(server.port), DEADLINE))
    return server.result()


@pytest.mark.parametrize("script", SERVER_SCRIPTS, ids=lambda s: s.name)
def test_server(script: Script, accel: Callable[[str], Any]) -> None:
    assert_unchanged_by(lambda: accel("autobahn"), lambda: _server_run(script), script)


@pytest.mark.parametrize("script", CLIENT_SCRIPTS, ids=lambda s: s.name)
def test_client(script: Script, accel: Callable[[str], Any], monkeypatch: pytest.MonkeyPatch) -> None:
    assert_unchanged_by(lambda: accel("autobahn"), lambda: _client_run(script, monkeypatch), script, masked=True)
