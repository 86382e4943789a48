#!/usr/bin/env python3
"""An echo server for the Autobahn TestSuite (kosoku ``fuzzingclient`` mode).

    python echo_server.py --port N [--pure] [--host 127.0.0.1] [--timeout S] [--api awaitable|trio|sync]
    python echo_server.py --port N --peer websockets|aiohttp   # comparison peers

Every text message is echoed as text and every binary message as binary.
The wsfast server uses the callback API (``wsfast.asyncio.create_server`` and
a :class:`~wsfast.asyncio.Listener`), the fastest path, or with
``--api awaitable`` the awaitable API (``wsfast.serve`` and the handler
``async for message in ws: await ws.send(message)``), or with ``--api trio``
the same handler on ``wsfast.trio.serve``, or with ``--api sync`` a
``for message in ws: ws.send(message)`` handler on ``wsfast.sync.serve``
(a thread per connection), with the settings the suite needs:

* ``max_message_size=None``: section 9 sends messages of up to 16 MiB;
* ``ping_interval=None``: no keepalive pings of our own in the middle of a case;
* no limit on the number of fragments of a message (wsfast has none);
* permessage-deflate with ``compress_threshold=0``: every message is
  compressed, see the comment on ``DEFLATE``.

``--pure`` sets ``WSFAST_PURE_PYTHON=1`` before wsfast is imported, so the
pure-Python codec is used; without it the compiled codec is required (the
script exits with status 3 if it is missing, so that a "compiled" run can never
silently test the fallback).

Once listening, the server prints one line ``READY <port> <implementation>``
on stdout (``--port 0`` picks a free port). It stops by itself after
``--timeout`` seconds (default one hour), on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from functools import partial
from typing import Any, Optional


def _parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True, help="0: any free port (printed on the READY line)")
    parser.add_argument("--pure", action="store_true", help="use the pure-Python codec (WSFAST_PURE_PYTHON=1)")
    parser.add_argument(
        "--peer",
        choices=("wsfast", "websockets", "aiohttp"),
        default="wsfast",
        help="which library serves (the others are for comparison tables only)",
    )
    parser.add_argument(
        "--api",
        choices=("callback", "awaitable", "trio", "sync"),
        default="callback",
        help="wsfast's API under test: create_server and a Listener, or serve and a handler (asyncio or Trio)",
    )
    parser.add_argument("--timeout", type=float, default=3600.0, help="stop after this many seconds")
    return parser.parse_args(argv)


# ---------------------------------------------------------------- wsfast


async def _serve_wsfast(host: str, port: int, ready: Any, api: str = "callback") -> Any:
    import wsfast
    from wsfast.asyncio import Listener, WebSocket, WebSocketTransport, create_server, serve
    from wsfast.extensions import PerMessageDeflate
    from wsfast.http11 import Request

    # compress_threshold=0: compress *every* message once permessage-deflate is
    # negotiated. kosoku 0.1.0's compression cases (12.x, 13.x) hash each echoed
    # message with hashlib, and the runner hands a message that arrived
    # uncompressed to the case as a str: the case then crashes with "Strings
    # must be encoded before hashing" (an ERROR result) instead of judging the
    # echo. Sending uncompressed messages is legal (RFC 7692 section 6), so this
    # is a runner quirk, not a wsfast bug; the threshold only avoids it.
    deflate = PerMessageDeflate(compress_threshold=0)

    from echo import Echo  # after the codec is chosen

    def factory(ws: WebSocketTransport, request: Request) -> Listener:
        return Echo()

    async def handler(ws: WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    options: dict[str, Any] = dict(max_message_size=None, deflate=deflate, ping_interval=None, ping_timeout=None)
    if api == "awaitable":
        server = await serve(handler, host, port, **options)
    else:
        server = await create_server(factory, host, port, **options)
    ready(server.port, f"wsfast-{wsfast.IMPLEMENTATION}" + ("-awaitable" if api == "awaitable" else ""))
    return server


# ---------------------------------------------------------------- peers


async def _serve_websockets(host: str, port: int, ready: Any) -> Any:
    import websockets
    from websockets.asyncio.server import serve

    async def echo(ws: Any) -> None:
        try:
            async for message in ws:
                await ws.send(message)
        except websockets.ConnectionClosed:
            pass

    # websockets compresses every message once permessage-deflate is negotiated
    # (its default), which is what kosoku's compression cases need.
    server = await serve(echo, host, port, max_size=None, ping_interval=None, compression="deflate")
    from websockets.version import version

    ready(server.sockets[0].getsockname()[1], f"websockets-{version}")
    return server


async def _serve_aiohttp(host: str, port: int, ready: Any) -> Any:
    import aiohttp
    from aiohttp import web

    async def echo(request: web.Request) -> web.WebSocketResponse:
        # compress=True: compress every message when the client offers
        # permessage-deflate; max_msg_size=0: no size limit.
        ws = web.WebSocketResponse(compress=True, max_msg_size=0, autoping=True)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                await ws.send_str(msg.data)
            elif msg.type == aiohttp.WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
            else:
                break
        return ws

    app = web.Application(client_max_size=0)
    app.router.add_get("/", echo)
    app.router.add_get("/{tail:.*}", echo)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    sockets = site._server.sockets  # type: ignore[union-attr]
    ready(sockets[0].getsockname()[1], f"aiohttp-{aiohttp.__version__}")
    return runner


# ---------------------------------------------------------------- main


async def _main(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[None] = loop.create_future()

    def request_stop() -> None:
        if not stop.done():
            stop.set_result(None)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, request_stop)

    def ready(port: int, impl: str) -> None:
        print(f"READY {port} {impl}", flush=True)

    start = {"wsfast": _serve_wsfast, "websockets": _serve_websockets, "aiohttp": _serve_aiohttp}[args.peer]
    if args.peer == "wsfast":
        server = await _serve_wsfast(args.host, args.port, ready, args.api)
    else:
        server = await start(args.host, args.port, ready)
    try:
        await asyncio.wait_for(stop, args.timeout)
    except asyncio.TimeoutError:
        print(f"echo_server: stopping after --timeout {args.timeout} s", file=sys.stderr, flush=True)
    # Bounded shutdown: whatever is still open gets a few seconds at most.
    try:
        if args.peer == "aiohttp":
            await asyncio.wait_for(server.cleanup(), 5)
        else:
            server.close()
            await asyncio.wait_for(server.wait_closed(), 5)
    except (asyncio.TimeoutError, Exception):
        pass
    return 0


async def _main_trio(args: argparse.Namespace) -> int:
    """The wsfast.trio server: ``serve`` with the echo handler, until
    SIGTERM, SIGINT or ``--timeout``."""
    import trio

    import wsfast
    import wsfast.trio
    from wsfast.extensions import PerMessageDeflate

    async def handler(ws: wsfast.trio.WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    deflate = PerMessageDeflate(compress_threshold=0)  # see _serve_wsfast
    options: dict[str, Any] = dict(max_message_size=None, deflate=deflate, ping_interval=None, ping_timeout=None)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(partial(wsfast.trio.serve, handler, args.host, args.port, **options))
            print(f"READY {server.port} wsfast-{wsfast.IMPLEMENTATION}-trio", flush=True)
            with trio.move_on_after(args.timeout) as scope:
                async for _ in signals:
                    break
            if scope.cancelled_caught:
                print(f"echo_server: stopping after --timeout {args.timeout} s", file=sys.stderr, flush=True)
            server.close()  # connections close with 1001, within 5 s at most:
            nursery.cancel_scope.deadline = trio.current_time() + 5
    return 0


def _main_sync(args: argparse.Namespace) -> int:
    """The wsfast.sync server: ``serve`` with the echo handler (a thread per
    connection), until SIGTERM, SIGINT or ``--timeout``."""
    import threading

    import wsfast
    import wsfast.sync
    from wsfast.extensions import PerMessageDeflate

    def handler(ws: wsfast.sync.WebSocket) -> None:
        for message in ws:
            ws.send(message)

    deflate = PerMessageDeflate(compress_threshold=0)  # see _serve_wsfast
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server = wsfast.sync.serve(
        handler, args.host, args.port, max_message_size=None, deflate=deflate, ping_interval=None, close_timeout=5
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"READY {server.port} wsfast-{wsfast.IMPLEMENTATION}-sync", flush=True)
    if not stop.wait(args.timeout):
        print(f"echo_server: stopping after --timeout {args.timeout} s", file=sys.stderr, flush=True)
    server.shutdown()  # connections close with 1001, within close_timeout
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    args = _parse_args(argv)
    if args.pure:
        os.environ["WSFAST_PURE_PYTHON"] = "1"  # before anything imports wsfast
    if args.peer == "wsfast":
        import wsfast

        if not args.pure and not wsfast.HAS_SPEEDUPS:
            print("echo_server: the compiled codec (wsfast._speedups) is not available", file=sys.stderr)
            return 3
        if args.pure and wsfast.HAS_SPEEDUPS:
            print("echo_server: --pure but the compiled codec is in use", file=sys.stderr)
            return 3
    if args.api == "trio":
        import trio

        return trio.run(_main_trio, args)
    if args.api == "sync":
        return _main_sync(args)
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())
