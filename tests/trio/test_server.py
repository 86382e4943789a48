"""wsfast.trio.serve: handlers, routing, process_request, limits, shutdown."""

from __future__ import annotations

import os
import tempfile
from typing import Optional

import pytest
import trio

import wsfast.trio
from wsfast.auth import basic_auth
from wsfast.exceptions import ConnectionClosedError, ConnectionClosedOK, InvalidHandshake
from wsfast.handshake import error_response
from wsfast.http11 import Request, Response

from ..asyncio.helpers import OP_CLOSE, parse_close
from .helpers import RawPeer, echo, run, server


def uri(srv: wsfast.trio.Server, path: str = "/") -> str:
    return f"ws://127.0.0.1:{srv.port}{path}"


def test_handler_exception_closes_1011() -> None:
    async def broken(ws: wsfast.trio.WebSocket) -> None:
        await ws.recv()
        raise RuntimeError("boom")

    async def test() -> None:
        async with trio.open_nursery() as nursery:
            srv = await server(nursery, broken)
            async with wsfast.trio.connect(uri(srv)) as ws:
                await ws.send("go")
                with pytest.raises(ConnectionClosedError) as info:
                    await ws.recv()
                assert (info.value.code, info.value.reason) == (1011, "internal error")
            nursery.cancel_scope.cancel()

    run(test)


def test_handler_return_closes_1000() -> None:
    async def test() -> None:
        async with trio.open_nursery() as nursery:
            srv = await server(nursery, lambda ws: trio.sleep(0))
            async with wsfast.trio.connect(uri(srv)) as ws:
                with pytest.raises(ConnectionClosedOK):
                    await ws.recv()
                assert ws.close_code == 1000
            nursery.cancel_scope.cancel()

    run(test)


def test_cancelling_serve_closes_connections_with_1001() -> None:
    handler_done: list[str] = []

    async def waiting(ws: wsfast.trio.WebSocket) -> None:
        try:
            await ws.recv()
        finally:
            handler_done.append("cancelled")

    async def test() -> None:
        async with trio.open_nursery() as outer:
            serve_scope = trio.CancelScope()
            srv: Optional[wsfast.trio.Server] = None

            async def serve_until_cancelled(task_status: trio.TaskStatus[wsfast.trio.Server]) -> None:
                with serve_scope:
                    await wsfast.trio.serve(waiting, "127.0.0.1", 0, task_status=task_status)

            srv = await outer.start(serve_until_cancelled)
            assert srv is not None
            peers = [await RawPeer.connect(srv.port) for _ in range(3)]
            assert all(peer.status == 101 for peer in peers)
            async with wsfast.trio.connect(uri(srv)) as ws:
                while len(srv.connections) < 4:
                    await trio.sleep(0.01)
                serve_scope.cancel()
                with pytest.raises(ConnectionClosedOK) as info:
                    await ws.recv()
                assert (info.value.code, info.value.reason) == (1001, "server shutting down")
            for peer in peers:  # raw peers that answer the close frame
                _, _, payload = await peer.recv_until(OP_CLOSE)
                assert parse_close(payload)[0] == 1001
                await peer.send(OP_CLOSE, payload[:2])
                assert await peer.at_eof()
        assert handler_done == ["cancelled"] * 4
        assert not srv.connections

    run(test)


def test_server_close_method_and_a_peer_that_never_answers_the_close() -> None:
    async def test() -> None:
        async with trio.open_nursery() as nursery:
            srv = await server(nursery, close_timeout=0.2)
            mute = await RawPeer.connect(srv.port)
            while not srv.connections:
                await trio.sleep(0.01)
            srv.close()
            _, _, payload = await mute.recv_until(OP_CLOSE)
            assert parse_close(payload)[0] == 1001
            assert await mute.at_eof()  # after close_timeout, without the peer's close frame
        # serve returned: the nursery is done

    run(test)


def test_process_request_403_sync_and_async() -> None:
    def forbid(ws: wsfast.trio.WebSocket, request: Request) -> Optional[Response]:
        if request.path == "/private":
            return error_response(403, "Forbidden")
        return None

    async def forbid_later(ws: wsfast.trio.WebSocket, request: Request) -> Optional[Response]:
        await trio.sleep(0)
        return forbid(ws, request)

    async def test() -> None:
        for hook in (forbid, forbid_later):
            async with trio.open_nursery() as nursery:
                srv = await server(nursery, process_request=hook)
                with pytest.raises(InvalidHandshake) as info:
                    async with wsfast.trio.connect(uri(srv, "/private")):
                        pass
                response = info.value.response
                assert isinstance(response, Response) and response.status == 403
                async with wsfast.trio.connect(uri(srv, "/public")) as ws:
                    await ws.send("in")
                    assert await ws.recv() == "in"
                nursery.cancel_scope.cancel()

    run(test)


def test_process_request_error_is_500() -> None:
    def broken(ws: wsfast.trio.WebSocket, request: Request) -> None:
        raise ValueError("bug")

    async def test() -> None:
        async with trio.open_nursery() as nursery:
            srv = await server(nursery, process_request=broken)
            with pytest.raises(InvalidHandshake) as info:
                async with wsfast.trio.connect(uri(srv)):
                    pass
            assert isinstance(info.value.response, Response) and info.value.response.status == 500
            nursery.cancel_scope.cancel()

    run(test)


def test_basic_auth_hook_and_uri_credentials() -> None:
    async def whoami(ws: wsfast.trio.WebSocket) -> None:
        assert ws.request is not None
        await ws.send(getattr(ws.request, "user", "?"))

    async def test() -> None:
        async with trio.open_nursery() as nursery:
            srv = await server(nursery, whoami, process_request=basic_auth("chat", credentials=("alice", "s3 cret")))
            async with wsfast.trio.connect(f"ws://alice:s3%20cret@127.0.0.1:{srv.port}/") as ws:
                assert await ws.recv() == "alice"
            with pytest.raises(InvalidHandshake) as info:
                async with wsfast.trio.connect(f"ws://alice:wrong@127.0.0.1:{srv.port}/"):
                    pass
            assert isinstance(info.value.response, Response) and info.value.response.status == 401
            nursery.cancel_scope.cancel()

        async def check(user: str, password: str) -> bool:  # an async check, awaited on Trio
            await trio.sleep(0)
            return (user, password) == ("bob", "pw")

        async with trio.open_nursery() as nursery:
            srv = await server(nursery, whoami, process_request=basic_auth(check_credentials=check))
            async with wsfast.trio.connect(f"ws://bob:pw@127.0.0.1:{srv.port}/") as ws:
                assert await ws.recv() == "bob"
            with pytest.raises(InvalidHandshake):
                async with wsfast.trio.connect(f"ws://127.0.0.1:{srv.port}/"):
                    pass
            nursery.cancel_scope.cancel()

    run(test)


def test_routing_by_path() -> None:
    async def hello(ws: wsfast.trio.WebSocket) -> None:
        await ws.send("hello")

    async def test() -> None:
        async with trio.open_nursery() as nursery:
            srv = await server(nursery, {"/echo": echo, "/hello": hello})
            async with wsfast.trio.connect(uri(srv, "/hello")) as ws:
                assert await ws.recv() == "hello"
            async with wsfast.trio.connect(uri(srv, "/echo?x=1")) as ws:
                await ws.send("e")
                assert await ws.recv() == "e"
            with pytest.raises(InvalidHandshake) as info:
                async with wsfast.trio.connect(uri(srv, "/nowhere")):
                    pass
            assert isinstance(info.value.response, Response) and info.value.response.status == 404
            nursery.cancel_scope.cancel()

    run(test)


def test_server_open_timeout_drops_silent_connections() -> None:
    async def test() -> None:
        async with trio.open_nursery() as nursery:
            srv = await server(nursery, open_timeout=0.1)
            stream = await trio.open_tcp_stream("127.0.0.1", srv.port)
            assert await stream.receive_some(100) == b""  # closed by the server
            await stream.aclose()
            nursery.cancel_scope.cancel()

    run(test)


def test_plain_http_request_gets_426_and_bad_origin_403() -> None:
    async def test() -> None:
        async with trio.open_nursery() as nursery:
            srv = await server(nursery, origins=["https://good.example"])
            stream = await trio.open_tcp_stream("127.0.0.1", srv.port)
            await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            peer = RawPeer(stream, mask=True)
            assert (await peer.read_until(b"\r\n")).startswith(b"HTTP/1.1 426")
            assert await peer.at_eof()
            with pytest.raises(InvalidHandshake) as info:
                async with wsfast.trio.connect(uri(srv), origin="https://bad.example"):
                    pass
            assert isinstance(info.value.response, Response) and info.value.response.status == 403
            async with wsfast.trio.connect(uri(srv), origin="https://good.example") as ws:
                await ws.send("ok")
                assert await ws.recv() == "ok"
            nursery.cancel_scope.cancel()

    run(test)


def test_max_connections_503() -> None:
    async def test() -> None:
        async with trio.open_nursery() as nursery:
            srv = await server(nursery, max_connections=1)
            async with wsfast.trio.connect(uri(srv)) as ws:
                with pytest.raises(InvalidHandshake) as info:
                    async with wsfast.trio.connect(uri(srv)):
                        pass
                assert isinstance(info.value.response, Response) and info.value.response.status == 503
                await ws.send("still")
                assert await ws.recv() == "still"
            # the slot is free again
            async with wsfast.trio.connect(uri(srv)) as ws:
                await ws.send("again")
                assert await ws.recv() == "again"
            nursery.cancel_scope.cancel()

    run(test)


def test_unix_socket() -> None:
    async def test() -> None:
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "ws.sock")
            async with trio.open_nursery() as nursery:
                await nursery.start(lambda task_status: wsfast.trio.serve(echo, path=path, task_status=task_status))
                async with wsfast.trio.connect("ws://localhost/unix", path=path) as ws:
                    await ws.send("over a unix socket")
                    assert await ws.recv() == "over a unix socket"
                nursery.cancel_scope.cancel()

    run(test)


def test_unknown_option_is_a_type_error() -> None:
    async def test() -> None:
        with pytest.raises(TypeError, match="max_mesage_size"):
            await wsfast.trio.serve(echo, "127.0.0.1", 0, max_mesage_size=1)
        with pytest.raises(ValueError, match="stream_messages"):
            await wsfast.trio.serve(echo, "127.0.0.1", 0, stream_messages=True)

    run(test)


def test_cancelling_serve_with_a_peer_that_reads_nothing_ends_within_close_timeout() -> None:
    """The 1001 close frame cannot be written (the peer reads nothing and the
    handler's send is blocked): the shielded shutdown gives up after
    close_timeout instead of hanging."""
    outcome: list[str] = []

    async def flood(ws: wsfast.trio.WebSocket) -> None:
        try:
            while True:
                await ws.send(b"f" * 65536)
        finally:
            outcome.append("handler ended")

    async def test() -> None:
        async with trio.open_nursery() as nursery:
            srv = await server(nursery, flood, ping_interval=None, close_timeout=0.2)
            peer = await RawPeer.connect(srv.port)  # never reads again
            while not srv.connections:
                await trio.sleep(0.01)
            await trio.sleep(0.1)  # the handler's send is blocked by now
            srv.close()
        await peer.stream.aclose()
        assert outcome == ["handler ended"]

    run(test)
