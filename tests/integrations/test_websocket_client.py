"""websocket-client, patched by wsfast.accelerate(), behaves as unpatched:
its blocking client, over a real socket on 127.0.0.1, sends the very same
bytes and raises the same exceptions for every script of :mod:`._peer`."""

from __future__ import annotations

from typing import Any, Callable, Optional

import pytest

pytest.importorskip("websocket")

import websocket._abnf  # noqa: E402
import websocket._utils  # noqa: E402
from websocket import (  # noqa: E402
    ABNF,
    WebSocketConnectionClosedException,
    WebSocketPayloadException,
    WebSocketProtocolException,
)

from wsfast.integrations import _targets  # noqa: E402

from ._peer import CLIENT_SCRIPTS, DEADLINE, FixedRandom, Recording, Script, ScriptedServer, messages  # noqa: E402


def test_patched_where_looked_up(accel: Callable[[str], Any]) -> None:
    original_mask = vars(ABNF)["mask"]
    original_validate = websocket._abnf.validate_utf8
    accel("websocket-client")
    assert ABNF.mask is _targets.websocket_client_mask
    assert isinstance(vars(ABNF)["mask"], staticmethod)
    assert websocket._abnf.validate_utf8 is _targets.websocket_client_validate_utf8
    assert websocket._utils.validate_utf8 is _targets.websocket_client_validate_utf8
    import wsfast

    wsfast.unaccelerate()
    assert vars(ABNF)["mask"] is original_mask
    assert websocket._abnf.validate_utf8 is original_validate


def _answer(function: Callable[[Any], Any], data: Any) -> Any:
    try:
        return function(data)
    except Exception as exc:  # a str, in versions that take bytes only
        return type(exc)


@pytest.mark.parametrize(
    "data",
    [b"", b"ascii", "κόσμε".encode(), b"\xed\xa0\x80", b"\xff", b"ab\xe2\x82", "text", "\ud800", "🎉"],
)
def test_validate_utf8_same_answers(data: Any, accel: Callable[[str], Any]) -> None:
    """Including the original's leniency: a text may end inside a code point."""
    expected = _answer(websocket._utils.validate_utf8, data)
    accel("websocket-client")
    assert _answer(websocket._utils.validate_utf8, data) is expected


@pytest.mark.parametrize(
    ("key", "data"),
    [(b"\x01\x02\x03\x04", b"payload"), ("abcd", "latin-1 é"), (b"\xff\x00\xff\x00", None), (b"wxyz", b"")],
)
def test_mask_same_answers(key: Any, data: Any, accel: Callable[[str], Any]) -> None:
    expected = ABNF.mask(key, data)
    accel("websocket-client")
    assert ABNF.mask(key, data) == expected
    assert type(ABNF.mask(key, data)) is type(expected)


def _client(url: str) -> Optional[str]:
    """Echo until the server closes; the application closes 1007/1002 on the
    library's exceptions. Returns the exception's type name, if any."""
    ws = websocket.create_connection(url, timeout=DEADLINE)
    ws.set_mask_key(FixedRandom().urandom)
    try:
        while True:
            opcode, data = ws.recv_data()
            if opcode == ABNF.OPCODE_CLOSE:
                return None
            ws.send(data, opcode)
    except WebSocketPayloadException as exc:
        ws.close(websocket.STATUS_INVALID_PAYLOAD)
        return type(exc).__name__
    except WebSocketProtocolException as exc:
        ws.close(websocket.STATUS_PROTOCOL_ERROR)
        return type(exc).__name__
    except WebSocketConnectionClosedException as exc:
        return type(exc).__name__
    finally:
        ws.shutdown()


def _client_run(script: Script) -> tuple[Recording, Optional[str]]:
    server = ScriptedServer(script)
    error = _client(server.url)
    return server.result(), error


@pytest.mark.parametrize("script", CLIENT_SCRIPTS, ids=lambda s: s.name)
def test_client(script: Script, accel: Callable[[str], Any]) -> None:
    plain, plain_error = _client_run(script)
    assert all(frame.masked for frame in plain.frames)
    if script.name == "bad-utf8-truncated":
        # websocket-client's own leniency (kept): a text ending inside a code
        # point passes its validation and is echoed; the server hangs up.
        assert messages(plain.frames) == list(script.sent)
        assert plain_error == "WebSocketConnectionClosedException"
    elif script.name == "bad-close-reason":
        assert plain_error == "WebSocketProtocolException" and plain.close_code == 1002
    else:
        plain.check(script)
    accel("websocket-client")
    fast, fast_error = _client_run(script)
    assert fast.raw == plain.raw
    assert fast.outcome == plain.outcome
    assert fast_error == plain_error
