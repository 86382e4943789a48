"""ws4py, patched by wsfast.accelerate() (or patch_ws4py()), behaves as
unpatched: its wsgiref server and threaded client, over real sockets on
127.0.0.1, send the very same bytes for every script of :mod:`._peer`."""

from __future__ import annotations

import os
import threading
from typing import Any, Callable

import pytest

pytest.importorskip("ws4py")

from wsgiref.simple_server import make_server  # noqa: E402

import ws4py.framing  # noqa: E402
import ws4py.messaging  # noqa: E402
import ws4py.streaming  # noqa: E402
from ws4py.client.threadedclient import WebSocketClient  # noqa: E402
from ws4py.server.wsgirefserver import WebSocketWSGIRequestHandler, WSGIServer  # noqa: E402
from ws4py.server.wsgiutils import WebSocketWSGIApplication  # noqa: E402
from ws4py.websocket import EchoWebSocket  # noqa: E402

import wsfast  # noqa: E402
from wsfast.compat import wsaccel  # noqa: E402
from wsfast.integrations._targets import ws4py_mask  # noqa: E402

from ._peer import (  # noqa: E402
    CLIENT_SCRIPTS,
    DEADLINE,
    SERVER_SCRIPTS,
    Recording,
    Script,
    ScriptedServer,
    assert_unchanged_by,
    fixed_os,
    play_against_server,
)


def test_patched_where_looked_up(accel: Callable[[str], Any]) -> None:
    frame = ws4py.framing.Frame
    originals = (vars(frame)["mask"], vars(frame)["unmask"], ws4py.streaming.Utf8Validator)
    accel("ws4py")
    assert frame.mask is ws4py_mask and frame.unmask is ws4py_mask
    assert ws4py.streaming.Utf8Validator is wsaccel.Utf8Validator
    wsfast.unaccelerate()
    assert (vars(frame)["mask"], vars(frame)["unmask"], ws4py.streaming.Utf8Validator) == originals


def test_patch_ws4py(monkeypatch: pytest.MonkeyPatch) -> None:
    """wsaccel's entry point, on wsfast."""
    monkeypatch.setattr(wsfast.codec, "HAS_SPEEDUPS", True)  # whichever codec runs the tests
    result = wsaccel.patch_ws4py()
    assert result.ok and result.target == "ws4py"
    assert ws4py.framing.Frame.mask is ws4py_mask


@pytest.mark.parametrize("size", [0, 1, 5, 1000])
def test_frame_mask_same_answers(size: int, accel: Callable[[str], Any]) -> None:
    frame = ws4py.framing.Frame(masking_key=b"\x12\x34\x56\x78")
    data = os.urandom(size)
    expected = frame.mask(data)
    accel("ws4py")
    assert type(frame.unmask(data)) is bytearray
    assert frame.unmask(data) == frame.mask(bytearray(data)) == expected


def _server_run(script: Script) -> Recording:
    server = make_server(
        "127.0.0.1",
        0,
        server_class=WSGIServer,
        handler_class=WebSocketWSGIRequestHandler,
        app=WebSocketWSGIApplication(handler_cls=EchoWebSocket),
    )
    server.initialize_websockets_manager()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        return play_against_server(server.server_address[1], script)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(DEADLINE)


class EchoClient(WebSocketClient):  # type: ignore[misc]
    def received_message(self, message: Any) -> None:
        self.send(message.data, message.is_binary)


def _client_run(script: Script, monkeypatch: pytest.MonkeyPatch) -> Recording:
    monkeypatch.setattr(ws4py.messaging, "os", fixed_os())  # the mask keys
    # ws4py's threaded client starts its reader thread, then processes the
    # bytes that came with the 101 response in the calling thread: two
    # threads on one parser, which may deliver a frame twice. The pause keeps
    # the first frame out of the response's packet.
    server = ScriptedServer(script, settle=0.5)
    client = EchoClient(server.url)
    client.connect()
    thread = threading.Thread(target=client.run_forever, daemon=True)
    thread.start()
    try:
        return server.result()
    finally:
        client.close_connection()
        thread.join(DEADLINE)


@pytest.mark.parametrize("script", SERVER_SCRIPTS, ids=lambda s: s.name)
def test_server(script: Script, accel: Callable[[str], Any]) -> None:
    assert_unchanged_by(lambda: accel("ws4py"), lambda: _server_run(script), script)


@pytest.mark.parametrize("script", CLIENT_SCRIPTS, ids=lambda s: s.name)
def test_client(script: Script, accel: Callable[[str], Any], monkeypatch: pytest.MonkeyPatch) -> None:
    assert_unchanged_by(lambda: accel("ws4py"), lambda: _client_run(script, monkeypatch), script, masked=True)
