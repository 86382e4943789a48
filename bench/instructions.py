"""Instructions per read of a server's echo path, counted by valgrind.

Time on a shared machine moves by 20 % from run to run; the number of
instructions does not. This counts, with ``valgrind --tool=callgrind``, the
instructions of one ``buffer_updated`` call of an open wsfast server
connection (the socket taken away, as in ``bench/server_path.py``: a fake
transport whose ``write`` only counts) that echoes ``--per-read`` masked
binary messages of ``--size`` bytes, and of the raw TCP echo's
``buffer_updated`` (no WebSocket work: a memoryview slice and a write) with
the same fake transport. Each figure is (instructions of N calls - those of
0 calls) / N, so start-up is left out.

With ``--picows`` it compares wsfast with picows instead, both writing to a
real TCP socket as they do in service (wsfast through its socket transport,
picows with its own ``send()`` on the socket, on aiofastnet's transport when
installed, as picows uses by default): the instructions of one
``buffer_updated`` call of an open server connection echoing one message,
the frame already in the connection's read buffer (the transports' reads are
left out on both sides; the peer socket never reads, so the run is kept to
what the socket's buffers hold: messages up to 1 KiB, where per-message work
decides; larger ones are ranked clearly by time in ``wsfast bench``).

With ``--serve`` it compares ``serve()``'s awaitable API (a handler task:
``async for message in ws: await ws.send(message)``) with the callback API,
both on wsfast's socket transport writing to a real socket: one message per
read, then one pass of the event loop (where the handler task runs), the
instructions of the loop's pass alone left out.

Run: ``PYTHONPATH=src python bench/instructions.py [--size 64] [--per-read 1] [--picows | --serve]``
(``WSFAST_PURE_PYTHON=1`` for the fallback codec). Needs valgrind.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import subprocess
import sys
from typing import Any

CALLS = 20_000
SOCKET_BYTES = 2_000_000  # what a loopback socket's buffers hold for sure (--picows)


def _raw_echo(calls: int, size: int) -> None:
    from server_path import _FakeTransport  # type: ignore[import-not-found]

    from wsfast.benchmark._common import frame, payload

    view = memoryview(bytearray(262144))
    wire = frame(payload(size), masked=True)
    view[: len(wire)] = wire
    transport = _FakeTransport()

    class Echo(asyncio.BufferedProtocol):
        def get_buffer(self, sizehint: int) -> memoryview:
            return view

        def buffer_updated(self, nbytes: int) -> None:
            transport.write(view[:nbytes])

    read = Echo().buffer_updated
    for _ in range(1000 + calls):
        read(len(wire))


def _wsfast_echo(calls: int, size: int, per_read: int) -> None:
    from server_path import _Echo, _FakeTransport  # type: ignore[import-not-found]

    from wsfast.asyncio import create_server
    from wsfast.benchmark._common import frame, payload, upgrade_request

    async def main() -> None:
        server = await create_server(lambda ws, request: _Echo(), "127.0.0.1", 0, deflate=None, ping_interval=None)
        ws = server._protocol()
        ws.connection_made(_FakeTransport())
        head = upgrade_request("127.0.0.1", 1)
        ws._view[: len(head)] = head
        ws.buffer_updated(len(head))
        wire = frame(payload(size), masked=True) * per_read
        ws._view[: len(wire)] = wire
        read = ws.buffer_updated
        for _ in range(1000 + calls):
            read(len(wire))
        ws._cancel_timer()
        server.close()

    asyncio.run(main())


def _socket_pair() -> socket.socket:
    """The server end of a TCP connection on 127.0.0.1 whose send buffer
    holds every echo of a run (the other end never reads)."""
    listening = socket.create_server(("127.0.0.1", 0))
    peer = socket.create_connection(listening.getsockname())
    ours, _ = listening.accept()
    listening.close()
    _keep.append(peer)
    option = getattr(socket, "SO_SNDBUFFORCE", socket.SO_SNDBUF)  # root may exceed wmem_max
    try:
        ours.setsockopt(socket.SOL_SOCKET, option, 256 * 1024 * 1024)
    except PermissionError:
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 256 * 1024 * 1024)
    return ours


_keep: list[Any] = []


async def _open_on_socket(server: Any) -> tuple[Any, Any]:
    """A connection of ``server`` on wsfast's socket transport over a real
    socket (reads paused: they come from the caller), its handshake done."""
    from wsfast.benchmark._common import upgrade_request
    from wsfast.codec import SocketTransport

    ws = server._protocol()
    transport = SocketTransport(asyncio.get_running_loop(), _socket_pair(), ws)
    await asyncio.sleep(0)  # connection_made
    transport.pause_reading()  # the reads come from here
    head = upgrade_request("127.0.0.1", 1)
    ws._view[: len(head)] = head
    ws.buffer_updated(len(head))
    return ws, transport


def _wsfast_socket_echo(calls: int, size: int) -> None:
    from server_path import _Echo  # type: ignore[import-not-found]

    from wsfast.asyncio import create_server
    from wsfast.benchmark._common import frame, payload

    async def main() -> None:
        server = await create_server(lambda ws, request: _Echo(), "127.0.0.1", 0, deflate=None, ping_interval=None)
        ws, transport = await _open_on_socket(server)
        wire = frame(payload(size), masked=True)
        ws._view[: len(wire)] = wire
        read = ws.buffer_updated
        for _ in range(1000 + calls):
            read(len(wire))
        assert transport.get_write_buffer_size() == 0, "the socket's send buffer filled up"
        ws._cancel_timer()
        transport.abort()
        server.close()

    asyncio.run(main())


def _api_echo(calls: int, size: int, api: str) -> None:
    """One round: a message read, then one pass of the event loop (where
    ``serve``'s handler task takes it and sends the echo); ``api`` ``idle``:
    the loop passes alone, ``callback``: create_server's listener echoes."""
    from server_path import _Echo  # type: ignore[import-not-found]

    from wsfast.asyncio import create_server, serve
    from wsfast.benchmark._common import frame, payload

    sent = [0]

    async def handler(ws: Any) -> None:
        async for message in ws:
            await ws.send(message)
            sent[0] += 1

    async def switch() -> None:  # the floor of any task per connection: a future, a wakeup
        loop = asyncio.get_running_loop()
        box: list[asyncio.Future[None]] = []

        async def task() -> None:
            while True:
                box.append(loop.create_future())
                await box[-1]
                box.pop()
                sent[0] += 1

        waiting = asyncio.ensure_future(task())
        await asyncio.sleep(0)
        for _ in range(1000 + calls):
            box[-1].set_result(None)
            await asyncio.sleep(0)
        assert sent[0] == 1000 + calls
        waiting.cancel()

    async def main() -> None:
        if api == "switch":
            await switch()
            return
        options: dict[str, Any] = {"deflate": None, "ping_interval": None}
        if api == "serve":
            server: Any = await serve(handler, "127.0.0.1", 0, **options)
        else:
            server = await create_server(lambda ws, request: _Echo(), "127.0.0.1", 0, **options)
        ws, transport = await _open_on_socket(server)
        await asyncio.sleep(0)  # the handler starts
        wire = frame(payload(size), masked=True)
        read = ws.buffer_updated
        for _ in range(1000 + calls):
            if api != "idle":
                ws._view[: len(wire)] = wire
                read(len(wire))
            await asyncio.sleep(0)
        assert transport.get_write_buffer_size() == 0, "the socket's send buffer filled up"
        assert api != "serve" or sent[0] == 1000 + calls, "an echo was not sent within its loop pass"
        ws._cancel_timer()
        transport.abort()
        server.close()

    asyncio.run(main())


def _picows_echo(calls: int, size: int) -> None:
    import picows  # type: ignore[import-not-found]

    from wsfast.benchmark._common import frame, payload, upgrade_request

    binary = picows.WSMsgType.BINARY

    class Echo(picows.WSListener):  # type: ignore[misc]
        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type is binary:
                transport.send(binary, frame.get_payload_as_memoryview())

    async def main() -> None:
        # picows' own server protocol over our socket.
        loop = asyncio.get_running_loop()
        factories: list[Any] = []

        async def capture(factory: Any, **kwargs: Any) -> None:
            factories.append(factory)

        loop.create_server = capture  # type: ignore[method-assign]
        await picows.ws_create_server(lambda request: Echo(), "127.0.0.1", 0, use_aiofastnet=False)
        protocol = factories[0]()
        try:  # picows' default transports when installed
            from aiofastnet import connect_accepted_socket  # type: ignore[import-not-found]

            transport, _ = await connect_accepted_socket(loop, lambda: protocol, _socket_pair())
        except ImportError:
            transport, _ = await loop.connect_accepted_socket(lambda: protocol, _socket_pair())
        transport.pause_reading()  # the reads come from here
        head = upgrade_request("127.0.0.1", 1)
        protocol.get_buffer(-1)[: len(head)] = head
        protocol.buffer_updated(len(head))
        wire = frame(payload(size), masked=True)
        protocol.get_buffer(-1)[: len(wire)] = wire
        read = protocol.buffer_updated
        for _ in range(1000 + calls):
            read(len(wire))
        assert transport.get_write_buffer_size() == 0, "the socket's send buffer filled up"
        transport.abort()

    asyncio.run(main())


def _count(args: list[str]) -> int:
    """Instructions of this script run with ``args`` under callgrind."""
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, __file__, *args]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    match = re.search(r"Collected : (\d+)", result.stderr)
    if match is None:
        raise RuntimeError(f"no instruction count in valgrind's output:\n{result.stderr[-2000:]}")
    return int(match.group(1))


def _per_call(kind: str, size: int, per_read: int, calls: int = CALLS) -> float:
    base = _count(["--run", kind, "--calls", "0", "--size", str(size), "--per-read", str(per_read)])
    full = _count(["--run", kind, "--calls", str(calls), "--size", str(size), "--per-read", str(per_read)])
    return (full - base) / calls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--per-read", type=int, default=1, help="messages in each read (default 1)")
    parser.add_argument("--picows", action="store_true", help="compare with picows (writes to a real socket)")
    parser.add_argument(
        "--serve", action="store_true", help="compare serve()'s awaitable API with the callback API (real socket)"
    )
    parser.add_argument(
        "--run",
        choices=["raw", "wsfast", "wsfast-socket", "picows", "idle", "switch", "callback", "serve"],
        help=argparse.SUPPRESS,
    )  # the counted child
    parser.add_argument("--calls", type=int, default=CALLS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    if args.run == "raw":
        _raw_echo(args.calls, args.size)
        return 0
    if args.run == "wsfast":
        _wsfast_echo(args.calls, args.size, args.per_read)
        return 0
    if args.run == "wsfast-socket":
        _wsfast_socket_echo(args.calls, args.size)
        return 0
    if args.run == "picows":
        _picows_echo(args.calls, args.size)
        return 0
    if args.run in ("idle", "switch", "callback", "serve"):
        _api_echo(args.calls, args.size, args.run)
        return 0
    import wsfast

    if args.serve:
        calls = max(100, min(CALLS, SOCKET_BYTES // (args.size + 14) - 1000))
        idle = _per_call("idle", args.size, 1, calls)
        callback = _per_call("callback", args.size, 1, calls) - idle
        awaitable = _per_call("serve", args.size, 1, calls) - idle
        switch = _per_call("switch", args.size, 1, calls) - idle
        print(f"wsfast {wsfast.__version__}, {wsfast.IMPLEMENTATION} codec, {args.size} B binary echo, one per read")
        print(f"{idle:10,.0f} instructions per pass of the event loop alone (left out below)")
        print(f"{callback:10,.0f} instructions per message: callback API (create_server)")
        print(f"{awaitable:10,.0f} instructions per message: serve() (async for message in ws: await ws.send(message))")
        print(f"{awaitable / callback:10.2f}x the callback API's")
        print(
            f"{switch:10,.0f} instructions per wakeup of a task by a future (asyncio's floor for a task per connection)"
        )
        print(
            f"{(awaitable - callback - switch):10,.0f} instructions of serve()'s own work per message above that floor"
        )
        return 0

    if args.picows:
        if args.size > 1024:
            parser.error("--picows counts messages up to 1024 B (larger echoes overflow the socket's buffers)")
        # Every echo must fit in the socket's buffers (a few MB): fewer calls for larger messages.
        calls = max(100, min(CALLS, SOCKET_BYTES // (args.size + 14) - 1000))
        mine = _per_call("wsfast-socket", args.size, 1, calls)
        theirs = _per_call("picows", args.size, 1, calls)
        print(f"wsfast {wsfast.__version__}, {wsfast.IMPLEMENTATION} codec, {args.size} B binary echo, one per read")
        print(f"{mine:10,.0f} instructions per read: wsfast (callback API, its socket transport writes)")
        print(f"{theirs:10,.0f} instructions per read: picows (WSListener, its own send())")
        print(f"{theirs / mine:10.2f}x picows' instructions over wsfast's")
        return 0

    raw = _per_call("raw", args.size, 1)
    mine = _per_call("wsfast", args.size, args.per_read)
    codec = f"{wsfast.IMPLEMENTATION} codec"
    print(f"wsfast {wsfast.__version__}, {codec}, {args.size} B binary echo, {args.per_read} per read")
    print(f"{raw:10,.0f} instructions per read: raw TCP echo (1 message per read)")
    print(f"{mine:10,.0f} instructions per read: wsfast ({mine / args.per_read:,.0f} per message)")
    extra = mine / args.per_read - raw
    print(f"{extra:10,.0f} instructions of WebSocket work per message over the raw echo")
    return 0


if __name__ == "__main__":
    sys.exit(main())
