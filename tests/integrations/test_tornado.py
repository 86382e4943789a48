"""tornado, patched by wsfast.accelerate(), behaves as unpatched: its
WebSocketHandler and websocket_connect() client, over real sockets on
127.0.0.1, send the very same bytes for every script of :mod:`._peer`."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Callable, Union

import pytest

pytest.importorskip("tornado")

import tornado.httpserver  # noqa: E402
import tornado.netutil  # noqa: E402
import tornado.util  # noqa: E402
import tornado.web  # noqa: E402
import tornado.websocket  # noqa: E402

from wsfast.integrations._targets import tornado_websocket_mask  # noqa: E402

from ._peer import (  # noqa: E402
    CLIENT_SCRIPTS,
    QUIET,
    SERVER_SCRIPTS,
    BackgroundLoop,
    Recording,
    Script,
    ScriptedServer,
    assert_unchanged_by,
    fixed_os,
    play_against_server,
)

MODULES = (tornado.util, tornado.websocket, tornado.web)


def test_patched_where_looked_up(accel: Callable[[str], Any]) -> None:
    originals = [module._websocket_mask for module in MODULES]
    accel("tornado")
    assert all(module._websocket_mask is tornado_websocket_mask for module in MODULES)
    assert tornado_websocket_mask(b"\x01\x02\x03\x04", b"\x00" * 6) == originals[0](b"\x01\x02\x03\x04", b"\x00" * 6)
    import wsfast

    wsfast.unaccelerate("tornado")
    assert [module._websocket_mask for module in MODULES] == originals


def test_xsrf_token_round_trip(accel: Callable[[str], Any]) -> None:
    """tornado.web masks XSRF tokens with the same function."""
    accel("tornado")
    mask, token = b"\x9a\x01\xff\x42", b"0123456789abcdef"
    assert tornado.web._websocket_mask(mask, tornado.web._websocket_mask(mask, token)) == token


class Echo(tornado.websocket.WebSocketHandler):
    def on_message(self, message: Union[str, bytes]) -> None:
        self.write_message(message, binary=isinstance(message, bytes))


async def _serve() -> tuple[Any, int]:
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server = tornado.httpserver.HTTPServer(tornado.web.Application([(r"/", Echo)]))
    server.add_sockets(sockets)
    return server, sockets[0].getsockname()[1]


def _server_run(script: Script) -> Recording:
    with BackgroundLoop() as background:
        server, port = background.run(_serve())
        try:
            return play_against_server(port, script)
        finally:
            background.call(server.stop)


async def _client(url: str) -> None:
    conn = await tornado.websocket.websocket_connect(url)
    while True:
        message = await conn.read_message()
        if message is None:
            break
        await conn.write_message(message, binary=isinstance(message, bytes))


def _client_run(script: Script, monkeypatch: pytest.MonkeyPatch) -> Recording:
    monkeypatch.setattr(tornado.websocket, "os", fixed_os())  # the mask keys
    server = ScriptedServer(script)

    async def main() -> Recording:
        client = asyncio.ensure_future(_client(server.url))
        recording: Recording = await asyncio.get_running_loop().run_in_executor(None, server.result)
        # The script is over and its socket closed; a client whose reader
        # died (tornado, on a close reason that is not UTF-8) is let go.
        with contextlib.suppress(asyncio.TimeoutError, tornado.websocket.WebSocketClosedError):
            await asyncio.wait_for(client, QUIET)
        return recording

    return asyncio.run(main())


@pytest.mark.parametrize("script", SERVER_SCRIPTS, ids=lambda s: s.name)
def test_server(script: Script, accel: Callable[[str], Any]) -> None:
    assert_unchanged_by(lambda: accel("tornado"), lambda: _server_run(script), script)


@pytest.mark.parametrize("script", CLIENT_SCRIPTS, ids=lambda s: s.name)
def test_client(script: Script, accel: Callable[[str], Any], monkeypatch: pytest.MonkeyPatch) -> None:
    assert_unchanged_by(lambda: accel("tornado"), lambda: _client_run(script, monkeypatch), script, masked=True)
