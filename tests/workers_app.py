"""The program that tests/test_workers.py runs: ``wsfast.run()`` serving a
handler that answers every message with its worker's pid, logging at INFO
on stderr. From the repository's root (as a module: run as a file, tests/
would come first on sys.path and tests/asyncio would hide asyncio):

    python -m tests.workers_app PORT [--workers N] [--shared] [--api serve|callback]
        [--import] [--loop asyncio|uvloop] [--host HOST] [--close-timeout S]
        [--restart-delay S] [--lifespan logged|hanging] [--handler NAME]

``--import`` passes the handler as the string ``"tests.workers_app:..."``,
imported by each worker after the fork.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
from typing import Any, AsyncIterator, Optional

import wsfast
from wsfast.asyncio import Listener, WebSocket, WebSocketTransport
from wsfast.http11 import Request

logger = logging.getLogger("workers_app")


async def answer_pid(ws: WebSocket) -> None:
    async for _ in ws:
        await ws.send(str(os.getpid()))


class PidListener(Listener):
    __slots__ = ("ws",)

    def on_open(self, ws: WebSocketTransport) -> None:
        self.ws = ws

    def on_text(self, data: Any) -> None:
        self.ws.send_text(str(os.getpid()))


def pid_listener(transport: WebSocketTransport, request: Request) -> Optional[Listener]:
    return PidListener()


def __getattr__(name: str) -> Any:
    """``answer_pid_until_broken``: ``answer_pid``, gone once the file named
    by $WORKERS_APP_BROKEN exists (new code that fails to import)."""
    if name == "answer_pid_until_broken" and not os.path.exists(os.environ.get("WORKERS_APP_BROKEN", "")):
        return answer_pid
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@contextlib.asynccontextmanager
async def lifespan() -> AsyncIterator[None]:
    logger.info("lifespan entered in %d", os.getpid())
    yield
    logger.info("lifespan exited in %d", os.getpid())


@contextlib.asynccontextmanager
async def hanging_lifespan() -> AsyncIterator[None]:
    yield
    logger.info("lifespan hanging in %d", os.getpid())
    time.sleep(3600)  # blocks the worker: the supervisor must kill it


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--shared", action="store_true", help="reuse_port=False")
    parser.add_argument("--api", choices=["serve", "callback"], default="serve")
    parser.add_argument("--import", dest="by_name", action="store_true")
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    parser.add_argument("--close-timeout", type=float, default=2.0)
    parser.add_argument("--restart-delay", type=float, default=0.1)
    parser.add_argument("--lifespan", choices=["logged", "hanging"])
    parser.add_argument("--handler", help="the name of the handler in this module (with --import)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
    for name in ("wsfast.workers", "workers_app"):
        logging.getLogger(name).setLevel(logging.INFO)
    name = args.handler or ("answer_pid" if args.api == "serve" else "pid_listener")
    handler: Any = f"tests.workers_app:{name}" if args.by_name else globals()[name]
    return wsfast.run(
        handler,
        args.host,
        args.port,
        workers=args.workers,
        reuse_port=not args.shared,
        api=args.api,
        loop=args.loop,
        lifespan={None: None, "logged": lifespan, "hanging": hanging_lifespan}[args.lifespan],
        restart_delay=args.restart_delay,
        close_timeout=args.close_timeout,
        ping_interval=None,
    )


if __name__ == "__main__":
    sys.exit(main())
