"""The clients under test, one per implementation, each as its library's
documentation would write it. Against the fixed server (``GET /<size>``),
each connection sends a binary message and waits for the reply, in a loop.

``raw`` is the ceiling: the benchmark's own client (pre-built frames, a byte
count per reply, no WebSocket work per message).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable, Optional

from ._common import CpuMeter, Window, import_module, import_optional, payload, wsfast_description
from .driver import Driver
from .servers import MAX_SIZE

__all__ = ["CLIENTS", "Recorder"]


class Recorder(Window):
    """A :class:`Window` shared by the connections of a client under test."""

    def __init__(self, cmd: dict[str, Any]) -> None:
        super().__init__(cmd)
        self.active = 0
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def stopped(self) -> None:
        """One connection stopped sending."""
        self.active -= 1
        if self.active == 0 and not self.finished.done():
            self.finished.set_result(None)


Conn = Any
"""A connection of the library under test."""


class Client:
    """How one library opens a connection, runs the loop and closes."""

    name = ""

    async def open(self, uri: str, message: bytes) -> Conn:
        raise NotImplementedError

    async def loop(self, conn: Conn, rec: Recorder, message: bytes) -> None:
        """Send and receive until ``rec.done`` says stop (awaitable APIs)."""
        while True:
            sent_at = time.perf_counter_ns()
            await self.exchange(conn, message)
            if not rec.done(sent_at, time.perf_counter_ns()):
                return

    async def exchange(self, conn: Conn, message: bytes) -> None:
        """One round trip (the awaitable APIs' ``send`` and ``recv``)."""
        await conn.send(message)
        await conn.recv()

    def start(self, conn: Conn, rec: Recorder, message: bytes) -> Optional[Awaitable[None]]:
        """Start the loop of one connection: a coroutine, or ``None`` for a
        callback API that calls ``rec.stopped()`` itself."""
        return self.loop(conn, rec, message)

    async def close(self, conn: Conn) -> None:
        await conn.close()

    def description(self) -> str:
        raise NotImplementedError


class WsfastClient(Client):
    """The callback API: ``create_connection`` and a ``Listener``."""

    async def open(self, uri: str, message: bytes) -> Conn:
        from ..asyncio import Listener, WebSocketTransport, create_connection

        class Loop(Listener):
            __slots__ = ("ws", "sent_at", "rec", "message")
            ws: WebSocketTransport
            sent_at: int
            rec: Recorder
            message: bytes

            def on_open(self, ws: WebSocketTransport) -> None:
                self.ws = ws

            def on_binary(self, data: bytes) -> None:
                now = time.perf_counter_ns()
                if self.rec.done(self.sent_at, now):
                    self.sent_at = now
                    self.ws.send_binary(self.message)
                else:
                    self.rec.stopped()

        listener = Loop()
        listener.message = message
        await create_connection(listener, uri, deflate=None, max_message_size=MAX_SIZE)
        return listener

    def start(self, conn: Conn, rec: Recorder, message: bytes) -> Optional[Awaitable[None]]:
        conn.rec = rec
        conn.sent_at = time.perf_counter_ns()
        conn.ws.send_binary(message)
        return None

    async def close(self, conn: Conn) -> None:
        conn.ws.close()
        await conn.ws.wait_closed()

    def description(self) -> str:
        return wsfast_description("callback API (create_connection)")


class WsfastConnect(Client):
    """The awaitable API: ``connect``, ``send``, ``recv``."""

    async def open(self, uri: str, message: bytes) -> Conn:
        from ..asyncio import connect

        return await connect(uri, deflate=None, max_message_size=MAX_SIZE)

    def description(self) -> str:
        return wsfast_description("awaitable API (connect)")


class WebsocketsClient(Client):
    async def open(self, uri: str, message: bytes) -> Conn:
        client = import_module("websockets.asyncio.client")
        return await client.connect(uri, compression=None, max_size=MAX_SIZE)

    def description(self) -> str:
        return f"websockets {import_optional('websockets').__version__}, asyncio.client.connect"


class AiohttpClient(Client):
    async def open(self, uri: str, message: bytes) -> Conn:
        aiohttp = import_optional("aiohttp")
        session = aiohttp.ClientSession()
        try:
            ws = await session.ws_connect(uri, max_msg_size=MAX_SIZE, compress=0)
        except BaseException:
            await session.close()
            raise
        return session, ws

    async def exchange(self, conn: Conn, message: bytes) -> None:
        ws = conn[1]
        await ws.send_bytes(message)
        await ws.receive()

    async def close(self, conn: Conn) -> None:
        session, ws = conn
        await ws.close()
        await session.close()

    def description(self) -> str:
        return f"aiohttp {import_optional('aiohttp').__version__}, ClientSession.ws_connect"


class PicowsClient(Client):
    async def open(self, uri: str, message: bytes) -> Conn:
        picows = import_optional("picows")
        binary = picows.WSMsgType.BINARY
        base: Any = picows.WSListener

        class Loop(base):  # type: ignore[misc]
            sent_at: int
            rec: Recorder
            message: bytes

            def on_ws_connected(self, transport: Any) -> None:
                self.transport = transport

            def on_ws_frame(self, transport: Any, frame: Any) -> None:
                if frame.msg_type is not binary:
                    return
                now = time.perf_counter_ns()
                if self.rec.done(self.sent_at, now):
                    self.sent_at = now
                    transport.send(binary, self.message)
                else:
                    self.rec.stopped()

        transport, listener = await picows.ws_connect(Loop, uri, max_frame_size=MAX_SIZE)
        listener.message, listener.binary = message, binary
        return listener

    def start(self, conn: Conn, rec: Recorder, message: bytes) -> Optional[Awaitable[None]]:
        conn.rec = rec
        conn.sent_at = time.perf_counter_ns()
        conn.transport.send(conn.binary, message)
        return None

    async def close(self, conn: Conn) -> None:
        conn.transport.send_close()
        await asyncio.wait_for(conn.transport.wait_disconnected(), 5)

    def description(self) -> str:
        picows = import_optional("picows")
        api = import_module("picows.api")
        fast = " (aiofastnet transports)" if getattr(api, "_HAS_AIOFASTNET", False) else ""
        return f"picows {picows.__version__}, ws_connect{fast}"


CLIENTS: dict[str, Callable[[], Client]] = {
    "wsfast": WsfastClient,
    "wsfast-connect": WsfastConnect,
    "websockets": WebsocketsClient,
    "picows": PicowsClient,
    "aiohttp": AiohttpClient,
}
"""Each client under test, by name (``raw`` is the benchmark's own client)."""


async def run_client(impl: str, cmd: dict[str, Any]) -> dict[str, Any]:
    """One request-response run of client ``impl`` against the fixed server."""
    size = cmd["size"]
    if impl == "raw":
        raw = dict(cmd, raw=False, path=f"/{size}")
        return await Driver().request_response(raw)
    client = CLIENTS[impl]()
    uri = f"ws://127.0.0.1:{cmd['port']}/{size}"
    message = payload(size)
    conns: list[Conn] = []
    try:
        for first in range(0, cmd["connections"], 50):
            batch = range(first, min(cmd["connections"], first + 50))
            conns.extend(await asyncio.gather(*(client.open(uri, message) for _ in batch)))
        rec = Recorder(cmd)
        rec.active = len(conns)
        meter = CpuMeter(cmd.get("peer_pid"))
        tasks = []
        for conn in conns:
            started = client.start(conn, rec, message)
            if started is not None:
                tasks.append(asyncio.ensure_future(_then_stop(started, rec)))
        await asyncio.wait_for(asyncio.shield(rec.finished), cmd["warmup"] + cmd["max_seconds"] + cmd["grace"])
        own_cpu, peer_cpu = meter.shares()
        await asyncio.gather(*tasks)
    finally:
        await asyncio.gather(*(client.close(conn) for conn in conns), return_exceptions=True)
    result = rec.result()
    result.update(client_cpu=own_cpu, server_cpu=peer_cpu)
    return result


async def _then_stop(loop: Awaitable[None], rec: Recorder) -> None:
    try:
        await loop
    finally:
        rec.stopped()


def describe(impl: str) -> str:
    """What the client ``impl`` is: library version and API."""
    if impl == "raw":
        return "the benchmark's own client (pre-built frames, no WebSocket work per message)"
    return CLIENTS[impl]().description()
