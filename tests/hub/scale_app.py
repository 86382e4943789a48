"""The program that tests/hub/test_scale.py runs: a chat room per path, on
``wsfast.run()`` workers sharing a hub. From the repository's root:

    python -m tests.hub.scale_app PORT --hub URL [--host HOST] [--workers N]

Each connection first gets ``{"hello": <worker pid>}``, then the hub's
messages in the JSON envelope; ``/room?last_id=ID`` resumes after ``ID``.
When the hub says messages may have been missed, every connection of the
worker gets ``{"gap": [channels]}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

import wsfast
from wsfast.asyncio import WebSocket, broadcast
from wsfast.hub import Hub

clients: set[WebSocket] = set()


def on_gap(channels: list[str], reason: str) -> None:
    broadcast(clients, json.dumps({"gap": channels}))


hub = Hub("memory://", envelope="json", on_gap=on_gap)


async def room(ws: WebSocket) -> None:
    assert ws.request is not None
    path, _, query = ws.request.target.partition("?")
    channel = path.strip("/") or "lobby"
    last_id = query.partition("last_id=")[2] or None
    await ws.send(json.dumps({"hello": os.getpid()}))
    clients.add(ws)
    try:
        await hub.subscribe(ws, channel, last_id=last_id)
        async for message in ws:
            await hub.publish(channel, message)
    finally:
        clients.discard(ws)


def main() -> int:
    global hub
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--hub", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(process)d %(name)s %(levelname)s %(message)s")
    hub = Hub(args.hub, envelope="json", on_gap=on_gap)  # started in each worker, after the fork
    return wsfast.run(
        room,
        args.host,
        args.port,
        workers=args.workers,
        lifespan=lambda: hub,
        restart_delay=0.1,
        close_timeout=2.0,
        ping_interval=None,
    )


if __name__ == "__main__":
    sys.exit(main())
