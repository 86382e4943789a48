#!/usr/bin/env python3
"""CPU time per echoed message of uvicorn's WebSocket protocol classes, with
the socket taken away: wsfast.uvicorn:WSFastProtocol next to uvicorn's own
``websockets-sansio`` and ``wsproto``.

    python bench/uvicorn_path.py [--sizes 64,65536] [--messages 20000] [--rounds 3]

Each protocol class is built as uvicorn builds it, given the upgrade request,
and then fed one masked binary frame at a time through ``data_received``; the
same ASGI echo application answers, and the loop runs until the reply is
written to a transport that only counts bytes. What is measured is the
protocol and ASGI path (parsing, unmasking, the application's ``receive`` and
``send``, framing), not the kernel: ``bench/uvicorn_echo.py`` measures the
whole thing over sockets. Implementations are interleaved per round, each in
a fresh process; the median of the rounds is reported, with the ratio to the
faster of uvicorn's own two.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from typing import Any, Optional

from uvicorn_echo import IMPLEMENTATIONS  # bench/ is on the path of a script run from it

REQUEST = (
    b"GET / HTTP/1.1\r\nhost: 127.0.0.1\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
    b"sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n"
)


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    while True:
        event = await receive()
        if event["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", "bytes": event.get("bytes"), "text": event.get("text")})


class CountingTransport(asyncio.Transport):
    """Counts what is written; everything else is a no-op."""

    def __init__(self) -> None:
        super().__init__()
        self.written = 0

    def write(self, data: Any) -> None:
        self.written += len(data)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def measure(ws: str, size: int, messages: int) -> float:
    """Microseconds of CPU per echoed message."""
    import uvicorn
    from uvicorn.server import ServerState

    from wsfast.codec import build_frame

    config = uvicorn.Config(echo_app, ws=ws, ws_ping_interval=None, ws_per_message_deflate=False, log_level="error")
    config.load()
    transport = CountingTransport()
    protocol = config.ws_protocol_class(config=config, server_state=ServerState(), app_state={})  # type: ignore[misc]
    protocol.connection_made(transport)
    protocol.data_received(REQUEST)
    for _ in range(20):
        await asyncio.sleep(0)
    assert transport.written > 0, "no handshake response"
    frame = build_frame(2, b"x" * size, True, 0, True)
    started = time.process_time()
    for _ in range(messages):
        before = transport.written
        protocol.data_received(frame)
        while transport.written == before:
            await asyncio.sleep(0)
    return (time.process_time() - started) / messages * 1e6


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="64,65536")
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--one", nargs=2, metavar=("WS", "SIZE"), help=argparse.SUPPRESS)  # a child process
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(asyncio.run(measure(args.one[0], int(args.one[1]), args.messages))))
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    times: dict[str, dict[int, list[float]]] = {name: {size: [] for size in sizes} for name in IMPLEMENTATIONS}
    for round_ in range(args.rounds):
        for size in sizes:
            for name, ws in IMPLEMENTATIONS.items():
                argv_ = [sys.executable, __file__, "--one", ws, str(size), "--messages", str(args.messages)]
                out = subprocess.run(argv_, capture_output=True, text=True, timeout=600, check=True)
                times[name][size].append(json.loads(out.stdout.strip().splitlines()[-1]))
                print(f"[round {round_ + 1}] {name} {size} B: {times[name][size][-1]:.2f} us", file=sys.stderr)
    print(f"CPU per echoed message, sockets taken away; median of {args.rounds} rounds of {args.messages} messages\n")
    print("| implementation | " + " | ".join(f"{s} B" for s in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    for name in IMPLEMENTATIONS:
        cells = []
        for size in sizes:
            mine = statistics.median(times[name][size])
            best_peer = min(statistics.median(times[p][size]) for p in ("websockets-sansio", "wsproto"))
            cells.append(f"{mine:.1f} us ({best_peer / mine:.2f}x)")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\n(x: how many times less CPU than the faster of uvicorn's own two)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
