"""One process of the benchmark: ``python -m wsfast.benchmark.worker SPEC``.

``SPEC`` is a JSON object whose ``role`` is:

* ``server``: a server under test (``impl``, ``loop``, ``app`` echo or
  broadcast, ``deflate``, ``certfile``/``keyfile`` for TLS); serves until its
  standard input closes.
* ``fixed-server``: the fixed server that clients are measured against.
* ``driver``: the fixed client that servers are measured with; runs the
  commands read from standard input.
* ``client``: a client under test (``impl``, ``loop``); runs the commands
  read from standard input.
* ``fanout-server``, ``fanout-clients``, ``fanout-publisher``: the processes
  of the fanout scenario (:mod:`.fanout`); their event loop keeps running
  between commands.
* ``c100k-loader``: connections of the c100k scenario (:mod:`.c100k`).

Each worker first writes one JSON line (``{"ready": ...}`` or
``{"error": ...}``) on its standard output, then one per command. Anything
else a library prints goes to standard error.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import sys
import threading
import traceback
from typing import Any, Optional

from ._common import commands, loop_factory, raise_fd_limit, reply

__all__ = ["main"]


def _describe_self() -> dict[str, Any]:
    return {"pid": os.getpid(), "fd_limit": raise_fd_limit()}


async def _until_stdin_closes() -> None:
    loop = asyncio.get_running_loop()
    closed = loop.create_future()

    def wake() -> None:
        if not closed.done():
            closed.set_result(None)

    def wait() -> None:
        sys.stdin.read()
        loop.call_soon_threadsafe(wake)

    threading.Thread(target=wait, daemon=True).start()
    await closed


async def _serve(spec: dict[str, Any]) -> None:
    from .servers import SERVERS

    tls: Optional[ssl.SSLContext] = None
    if spec.get("certfile"):
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(spec["certfile"], spec.get("keyfile"))
    try:
        port, description = await SERVERS[spec["impl"]](
            spec.get("app", "echo"), tls, spec.get("deflate", False), spec.get("keepalive", False)
        )
    except Exception as exc:
        reply({"error": f"cannot start the {spec['impl']} server: {exc!r}"})
        return
    reply({"ready": True, "port": port, "description": description, **_describe_self()})
    await _until_stdin_closes()


async def _fixed_server(spec: dict[str, Any]) -> None:
    from .driver import FixedServer

    port = await FixedServer().start()
    reply({"ready": True, "port": port, "description": "fixed server: pre-built replies", **_describe_self()})
    await _until_stdin_closes()


def _command_loop(spec: dict[str, Any]) -> None:
    loop = loop_factory(spec["loop"])()
    asyncio.set_event_loop(loop)
    if spec["role"] == "driver":
        from .driver import Driver

        driver = Driver()
        handlers: dict[str, Any] = {
            "rr": driver.request_response,
            "broadcast": driver.broadcast,
            "hold": driver.hold,
            "release": driver.release,
        }
        description = "the benchmark's own client"
    else:
        from .clients import describe, run_client

        impl = spec["impl"]
        handlers = {"rr": lambda cmd: run_client(impl, cmd)}
        try:
            description = describe(impl)
        except Exception as exc:
            reply({"error": f"cannot load the {impl} client: {exc!r}"})
            return
    reply({"ready": True, "description": description, **_describe_self()})
    for cmd in commands():
        try:
            result = loop.run_until_complete(handlers[cmd["op"]](cmd))
        except Exception as exc:
            print(traceback.format_exc(), file=sys.stderr, flush=True)
            reply({"error": f"{type(exc).__name__}: {exc}".strip()})
        else:
            reply({"ok": True, **result})
    loop.close()


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    sys.stdout = sys.stderr  # the standard output carries the JSON replies only
    role = spec["role"]
    if role.startswith("fanout-"):
        from .fanout import main_role

        return main_role(spec)
    if role == "c100k-loader":
        from .c100k import main_role as loader

        return loader(spec)
    if role in ("driver", "client"):
        _command_loop(spec)
        return 0
    loop = loop_factory(spec["loop"])()
    asyncio.set_event_loop(loop)
    main = _serve(spec) if role == "server" else _fixed_server(spec)
    try:
        loop.run_until_complete(main)
    finally:
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
