#!/usr/bin/env python3
"""Echo round trips per second on Trio: wsfast.trio against trio-websocket,
side by side in one run.

    .venv/bin/pip install trio trio-websocket anyio
    .venv/bin/python bench/trio_echo.py [--sizes 64,1048576] [--rounds 7] [--round-time 1.0] [--layers]

Each library serves an echo on 127.0.0.1 and its own client, in the same
Trio process, sends a binary message and waits for the echo before sending
the next (one connection). The two alternate in rounds of ``--round-time``
seconds, so that they share the machine's noise; a figure is the median of
``--rounds`` rounds, and the ratio is wsfast.trio's over trio-websocket's.
Both run without compression and without keepalive pings (trio-websocket
has neither), with a 2 MiB message limit, and otherwise their defaults.

``--layers`` first measures what an anyio-based wsfast would sit on: a raw
echo (no WebSocket) over ``trio.SocketStream`` and over anyio's socket
stream on the Trio backend, and one ``Lock`` acquire/release and one
``Event`` set/wait with each; this is the measurement behind
:mod:`wsfast.trio` being native Trio.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from functools import partial
from importlib.metadata import version
from typing import Any, Awaitable, Callable

import trio

LIMIT = 2 * 1048576

RoundTrip = Callable[[], Awaitable[None]]


async def _timed(round_trip: RoundTrip, seconds: float) -> float:
    """Round trips per second over about ``seconds``."""
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        await round_trip()
        count += 1
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


async def _compare(label: str, pair: dict[str, RoundTrip], rounds: int, seconds: float) -> dict[str, float]:
    rates: dict[str, list[float]] = {name: [] for name in pair}
    for round_trip in pair.values():  # warm-up
        await _timed(round_trip, seconds / 4)
    for _ in range(rounds):
        for name, round_trip in pair.items():
            rates[name].append(await _timed(round_trip, seconds))
    medians = {name: statistics.median(values) for name, values in rates.items()}
    first, second = list(pair)
    spread = {name: (min(v), max(v)) for name, v in rates.items()}
    print(
        f"| {label} | {medians[first]:,.0f} ({spread[first][0]:,.0f}-{spread[first][1]:,.0f}) "
        f"| {medians[second]:,.0f} ({spread[second][0]:,.0f}-{spread[second][1]:,.0f}) "
        f"| {medians[first] / medians[second]:.2f}x |",
        flush=True,
    )
    return medians


# ---------------------------------------------------------------- WebSocket libraries


async def _wsfast_echo(ws: Any) -> None:
    async for message in ws:
        await ws.send(message)


async def _trio_websocket_echo(request: Any) -> None:
    import trio_websocket

    ws = await request.accept()
    try:
        while True:
            await ws.send_message(await ws.get_message())
    except trio_websocket.ConnectionClosed:
        pass


async def websockets(args: argparse.Namespace) -> None:
    import trio_websocket

    import wsfast
    import wsfast.trio

    options: dict[str, Any] = dict(max_message_size=LIMIT, deflate=None, ping_interval=None)
    print(f"wsfast {wsfast.__version__} ({wsfast.IMPLEMENTATION} codec), trio {trio.__version__}, ", end="")
    print(f"trio-websocket {version('trio-websocket')}")
    print("\n| round trips/s, median (min-max) | wsfast.trio | trio-websocket | ratio |")
    print("| --- | ---: | ---: | ---: |")
    async with trio.open_nursery() as nursery:
        server = await nursery.start(partial(wsfast.trio.serve, _wsfast_echo, "127.0.0.1", 0, **options))
        tws_server = await nursery.start(
            partial(trio_websocket.serve_websocket, max_message_size=LIMIT),
            _trio_websocket_echo,
            "127.0.0.1",
            0,
            None,
        )
        async with (
            wsfast.trio.connect(f"ws://127.0.0.1:{server.port}/", **options) as ws,
            trio_websocket.open_websocket_url(f"ws://127.0.0.1:{tws_server.port}/", max_message_size=LIMIT) as tws,
        ):
            for size in args.sizes:
                message = b"x" * size

                async def wsfast_round_trip(message: bytes = message) -> None:
                    await ws.send(message)
                    await ws.recv()

                async def tws_round_trip(message: bytes = message) -> None:
                    await tws.send_message(message)
                    await tws.get_message()

                pair = {"wsfast.trio": wsfast_round_trip, "trio-websocket": tws_round_trip}
                await _compare(f"binary {_size(size)}", pair, args.rounds, args.round_time)
        nursery.cancel_scope.cancel()


# ---------------------------------------------------------------- the layer underneath


async def _raw_echo(stream: Any, receive: str, send: str) -> None:
    """Echo bytes: a reader and a writer task (so that large messages never
    block both ways)."""
    to_send, to_write = trio.open_memory_channel[bytes](math.inf)

    async def writer() -> None:
        async for data in to_write:
            await getattr(stream, send)(data)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer)
        try:
            while data := await getattr(stream, receive)(262144):
                to_send.send_nowait(data)
        except Exception:
            pass
        nursery.cancel_scope.cancel()


async def layers(args: argparse.Namespace) -> None:
    import anyio

    print(f"trio {trio.__version__}, anyio {version('anyio')} on the Trio backend")
    print("\n| raw echo round trips/s, median (min-max) | trio.SocketStream | anyio stream | trio/anyio |")
    print("| --- | ---: | ---: | ---: |")

    async def trio_server(stream: trio.SocketStream) -> None:
        await _raw_echo(stream, "receive_some", "send_all")

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, host="127.0.0.1"), trio_server, 0)
        port = listeners[0].socket.getsockname()[1]
        trio_stream = await trio.open_tcp_stream("127.0.0.1", port)
        anyio_stream = await anyio.connect_tcp("127.0.0.1", port)
        for size in args.sizes:
            message = b"x" * size

            async def trio_round_trip(message: bytes = message) -> None:
                await trio_stream.send_all(message)
                got = 0
                while got < len(message):
                    got += len(await trio_stream.receive_some(262144))

            async def anyio_round_trip(message: bytes = message) -> None:
                await anyio_stream.send(message)
                got = 0
                while got < len(message):
                    got += len(await anyio_stream.receive(262144))

            pair = {"trio": trio_round_trip, "anyio": anyio_round_trip}  # trio's stream first
            await _compare(f"raw {_size(size)}", pair, args.rounds, args.round_time)
        await trio_stream.aclose()
        await anyio_stream.aclose()
        nursery.cancel_scope.cancel()

    print("\n| primitive, ns per operation (median) | trio | anyio | anyio/trio |")
    print("| --- | ---: | ---: | ---: |")
    n = 50000
    for name, make in (("Lock acquire+release", "Lock"), ("Event set+wait", "Event")):
        costs: dict[str, list[float]] = {"trio": [], "anyio": []}
        for _ in range(args.rounds):
            for lib, module in (("trio", trio), ("anyio", anyio)):
                factory = getattr(module, make)
                start = time.perf_counter()
                if make == "Lock":
                    lock = factory()
                    for _ in range(n):
                        async with lock:
                            pass
                else:
                    for _ in range(n):
                        event = factory()
                        event.set()
                        await event.wait()
                costs[lib].append((time.perf_counter() - start) / n * 1e9)
        t, a = statistics.median(costs["trio"]), statistics.median(costs["anyio"])
        print(f"| {name} | {t:,.0f} | {a:,.0f} | {a / t:.2f}x |")
    print()


def asyncio_layers(args: argparse.Namespace) -> None:
    """On asyncio, what an anyio-based wsfast would be measured against:
    a raw echo through anyio's streams on asyncio, both ends (no WebSocket
    at all: the ceiling of an anyio-based wsfast there), next to
    wsfast.asyncio's WebSocket echo (``serve``/``connect``)."""
    import asyncio

    import anyio
    import anyio.abc

    import wsfast.asyncio

    async def run() -> None:
        async def raw_server(client: Any) -> None:
            async with client:
                try:
                    while True:
                        await client.send(await client.receive(262144))
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    pass

        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        raw_port = listener.extra(anyio.abc.SocketAttribute.local_port)
        serving = asyncio.get_running_loop().create_task(listener.serve(raw_server))
        ws_server = await wsfast.asyncio.serve(_wsfast_echo, "127.0.0.1", 0, max_message_size=LIMIT, deflate=None)
        stream = await anyio.connect_tcp("127.0.0.1", raw_port)
        ws = await wsfast.asyncio.connect(f"ws://127.0.0.1:{ws_server.port}/", max_message_size=LIMIT, deflate=None)
        print(
            "\n| on asyncio, round trips/s, median (min-max) | wsfast.asyncio WebSocket echo "
            "| raw echo (no WebSocket), anyio stream | ratio |"
        )
        print("| --- | ---: | ---: | ---: |")
        for size in args.sizes:
            message = b"x" * size

            async def ws_round_trip(message: bytes = message) -> None:
                await ws.send(message)
                await ws.recv()

            async def anyio_round_trip(message: bytes = message) -> None:
                await stream.send(message)
                got = 0
                while got < len(message):
                    got += len(await stream.receive(262144))

            pair = {"wsfast.asyncio": ws_round_trip, "anyio raw": anyio_round_trip}
            await _compare(f"{_size(size)}", pair, args.rounds, args.round_time)
        await ws.close()
        await stream.aclose()
        ws_server.close()
        await ws_server.wait_closed()
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)

    asyncio.run(run())


def _size(size: int) -> str:
    return f"{size // 1048576} MiB" if size >= 1048576 and size % 1048576 == 0 else f"{size} B"


async def main(args: argparse.Namespace) -> None:
    if args.layers:
        await layers(args)
    await websockets(args)
    if args.layers:
        await trio.to_thread.run_sync(asyncio_layers, args)  # an event loop of its own


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="64,1048576", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--round-time", type=float, default=1.0)
    parser.add_argument("--layers", action="store_true", help="first, the raw streams and primitives: trio vs anyio")
    trio.run(main, parser.parse_args())
