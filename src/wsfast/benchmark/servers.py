"""The servers under test, one per implementation, each as its library's
documentation would write it: an echo server (every binary message sent
back) or a broadcast server (every message received sent to every
connection). Peers are imported only when their server is started.

``raw`` is the ceiling: a :class:`asyncio.BufferedProtocol` that writes back
what it reads into a buffer shared by the process, with no WebSocket work at
all (no handshake, no framing, no masking, no UTF-8, no message objects). It
keeps what every server pays: the event loop, the system calls, loopback TCP.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any, Awaitable, Callable, Optional

from ._common import import_module, import_optional, wsfast_description
from .driver import GREETING

__all__ = ["SERVERS", "MAX_SIZE"]

MAX_SIZE = 4 * 1024 * 1024
"""Message size limit given to every server (the largest message is 1 MiB)."""

Start = Callable[[str, Optional[ssl.SSLContext], bool, bool], Awaitable[tuple[int, str]]]
"""``start(app, tls, deflate, keepalive)`` starts a server on 127.0.0.1 and
returns its port and a description (library version, options that matter).
Without ``keepalive`` a server sends no ping of its own (websockets and wsfast
ping every 20 s by default; aiohttp and picows do not): a ping would break the
fixed client's byte count. ``deflate`` accepts permessage-deflate."""

_keep: list[Any] = []  # the running servers, kept alive until the process exits


async def _raw(app: str, tls: Optional[ssl.SSLContext], deflate: bool, keepalive: bool) -> tuple[int, str]:
    view = memoryview(bytearray(262144))
    peers: set[asyncio.Transport] = set()

    class Echo(asyncio.BufferedProtocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            if app != "echo":
                peers.add(transport)
                transport.write(GREETING)

        def get_buffer(self, sizehint: int) -> memoryview:
            return view

        def buffer_updated(self, nbytes: int) -> None:
            if app == "echo":
                self.transport.write(view[:nbytes])
            else:  # one small frame per read: write it to every connection
                data = bytes(view[:nbytes])
                for transport in peers:
                    transport.write(data)

        def connection_lost(self, exc: Optional[BaseException]) -> None:
            peers.discard(self.transport)

    loop = asyncio.get_running_loop()
    server = await loop.create_server(Echo, "127.0.0.1", 0, ssl=tls, backlog=1024)
    _keep.append(server)
    return int(server.sockets[0].getsockname()[1]), "asyncio.BufferedProtocol echo, no WebSocket"


def _wsfast_options(deflate: bool, keepalive: bool) -> dict[str, Any]:
    from ..extensions import DEFAULT_DEFLATE

    options: dict[str, Any] = {"deflate": DEFAULT_DEFLATE if deflate else None, "max_message_size": MAX_SIZE}
    if not keepalive:
        options["ping_interval"] = None
    return options


async def _wsfast(app: str, tls: Optional[ssl.SSLContext], deflate: bool, keepalive: bool) -> tuple[int, str]:
    from ..asyncio import Listener, WebSocketTransport, broadcast, create_server

    holder: list[Any] = []

    class Echo(Listener):
        __slots__ = ("ws",)

        def on_open(self, ws: WebSocketTransport) -> None:
            self.ws = ws

        def on_binary(self, data: bytes) -> None:
            if app == "echo":
                self.ws.send_binary(data)
            else:
                broadcast(holder[0].connections, data)

    server = await create_server(
        lambda ws, request: Echo(), "127.0.0.1", 0, ssl=tls, backlog=1024, **_wsfast_options(deflate, keepalive)
    )
    holder.append(server)
    _keep.append(server)
    return server.port, wsfast_description("callback API (create_server)", tls)


async def _wsfast_serve(app: str, tls: Optional[ssl.SSLContext], deflate: bool, keepalive: bool) -> tuple[int, str]:
    from ..asyncio import WebSocket, broadcast, serve

    clients: set[WebSocket] = set()

    async def echo(ws: WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    async def fan_out(ws: WebSocket) -> None:
        clients.add(ws)
        try:
            async for message in ws:
                broadcast(clients, message)
        finally:
            clients.discard(ws)

    server = await serve(
        echo if app == "echo" else fan_out, "127.0.0.1", 0, ssl=tls, backlog=1024, **_wsfast_options(deflate, keepalive)
    )
    _keep.append(server)
    return server.port, wsfast_description("awaitable API (serve)", tls)


async def _websockets(app: str, tls: Optional[ssl.SSLContext], deflate: bool, keepalive: bool) -> tuple[int, str]:
    websockets = import_optional("websockets")
    server_module = import_module("websockets.asyncio.server")
    clients: set[Any] = set()

    async def echo(ws: Any) -> None:
        async for message in ws:
            await ws.send(message)

    async def fan_out(ws: Any) -> None:
        clients.add(ws)
        try:
            async for message in ws:
                server_module.broadcast(clients, message)
        finally:
            clients.discard(ws)

    server = await server_module.serve(
        echo if app == "echo" else fan_out,
        "127.0.0.1",
        0,
        ssl=tls,
        backlog=1024,
        compression="deflate" if deflate else None,
        max_size=MAX_SIZE,
        **({} if keepalive else {"ping_interval": None}),
    )
    _keep.append(server)
    return int(server.sockets[0].getsockname()[1]), f"websockets {websockets.__version__}, asyncio.server.serve"


async def _picows(app: str, tls: Optional[ssl.SSLContext], deflate: bool, keepalive: bool) -> tuple[int, str]:
    picows = import_optional("picows")
    binary, close = picows.WSMsgType.BINARY, picows.WSMsgType.CLOSE
    peers: set[Any] = set()
    base: Any = picows.WSListener

    class Echo(base):  # type: ignore[misc]
        def on_ws_connected(self, transport: Any) -> None:
            peers.add(transport)

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            kind = frame.msg_type
            if kind is binary:
                if app == "echo":
                    transport.send(binary, frame.get_payload_as_memoryview())
                else:
                    data = frame.get_payload_as_bytes()
                    for peer in peers:
                        peer.send(binary, data)
            elif kind is close:
                transport.send_close(frame.get_close_code(), frame.get_close_message())
                transport.disconnect()

        def on_ws_disconnected(self, transport: Any) -> None:
            peers.discard(transport)

    server = await picows.ws_create_server(lambda request: Echo(), "127.0.0.1", 0, ssl=tls, backlog=1024)
    _keep.append(server)
    api = import_module("picows.api")
    fast = " (aiofastnet transports)" if getattr(api, "_HAS_AIOFASTNET", False) else ""
    return int(server.sockets[0].getsockname()[1]), f"picows {picows.__version__}, ws_create_server{fast}"


async def _aiohttp(app: str, tls: Optional[ssl.SSLContext], deflate: bool, keepalive: bool) -> tuple[int, str]:
    aiohttp = import_optional("aiohttp")
    web = import_module("aiohttp.web")
    binary = aiohttp.WSMsgType.BINARY
    clients: set[Any] = set()

    async def handler(request: Any) -> Any:
        ws = web.WebSocketResponse(max_msg_size=MAX_SIZE, compress=deflate)
        await ws.prepare(request)
        clients.add(ws)
        try:
            async for message in ws:
                if message.type == binary:
                    if app == "echo":
                        await ws.send_bytes(message.data)
                    else:
                        for client in list(clients):
                            await client.send_bytes(message.data)
        finally:
            clients.discard(ws)
        return ws

    application = web.Application()
    application.router.add_get("/", handler)
    runner = web.AppRunner(application, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls, backlog=1024)
    await site.start()
    _keep.append(runner)
    return int(runner.addresses[0][1]), f"aiohttp {aiohttp.__version__}, web.WebSocketResponse"


SERVERS: dict[str, Start] = {
    "raw": _raw,
    "wsfast": _wsfast,
    "wsfast-serve": _wsfast_serve,
    "websockets": _websockets,
    "picows": _picows,
    "aiohttp": _aiohttp,
}
"""Start function of each server under test."""
