#!/usr/bin/env python3
"""Echo throughput of the libraries wsfast.accelerate() patches, patched vs
unpatched, side by side in one run.

    python bench/accelerate.py                        # every installed target, 64 B, 64 KiB, 1 MiB
    python bench/accelerate.py -t wsproto -t tornado --rounds 7 --json out.json

What one round measures, per target (a round opens fresh connections, so
that everything a connection binds is bound in the round's mode; only the
echo loop is timed):

* websockets, tornado, autobahn: a client and a server of the library, in
  one asyncio loop, over loopback TCP; the client sends a message, waits for
  its echo, and again (lockstep);
* ws4py: its wsgiref server and threaded client, over loopback TCP, lockstep;
* websocket-client: its blocking client against a wsfast echo server in a
  child process (websocket-client has no server);
* wsproto: sans-I/O, no sockets: a client and a server ``WSConnection``
  passing bytes to each other (send, parse, echo, parse).

Both roles of a library are patched at once (client masking, server
unmasking, UTF-8 validation on both sides). Messages are binary (random
bytes) or text (UTF-8 mixing ASCII, Greek, CJK and emoji), 64 B, 64 KiB and
1 MiB. Each round runs n round trips, n chosen so that an unpatched round
takes about ``--round-time`` seconds; rounds alternate unpatched/patched
(the order flips every round) and the ratio is the median patched
throughput over the median unpatched one: ``2.00`` is twice as many
messages per second. It is given twice: by the wall clock, and per CPU
second used (this process, plus the wsfast server's child process for
websocket-client), which is much steadier when other programs share the
CPUs (everything timed here is CPU-bound, loopback included).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Union

HERE = Path(__file__).resolve().parent
if str(HERE.parent / "src") not in sys.path and os.environ.get("WSFAST_BENCH_INSTALLED") != "1":
    sys.path.insert(0, str(HERE.parent / "src"))

import wsfast  # noqa: E402
from wsfast.integrations import accelerate as acc  # noqa: E402

SIZES = {"64B": 64, "64KiB": 65536, "1MiB": 1 << 20}
KINDS = ("binary", "text")
Payload = Union[bytes, str]


def payload(kind: str, size: int) -> Payload:
    if kind == "binary":
        return random.Random(size).randbytes(size)
    text = ("wsfast κόσμε 日本語 🎉 " * (size // 20 + 1)).encode()[:size]
    return text.decode("utf-8", "ignore")  # cut on a code point: a few bytes short of size at most


# ---------------------------------------------------------------- workloads
#
# Each workload is a context manager yielding ``echo(n)``, which runs n round
# trips on the connections it set up, and the CPU seconds used so far by its
# helper processes (``None``: none).


@contextlib.contextmanager
def _loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    try:
        yield loop
    finally:
        loop.close()


@contextlib.contextmanager
def websockets_echo(message: Payload) -> Iterator[Callable[[int], float]]:
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import serve

    async def handler(ws: Any) -> None:
        async for data in ws:
            await ws.send(data)

    options: dict[str, Any] = {"compression": None, "max_size": None, "ping_interval": None}

    async def start() -> tuple[Any, Any]:
        server = await serve(handler, "127.0.0.1", 0, **options)
        port = server.sockets[0].getsockname()[1]
        return server, await connect(f"ws://127.0.0.1:{port}", **options)

    with _loop() as loop:
        server, client = loop.run_until_complete(start())

        async def rounds(n: int) -> None:
            for _ in range(n):
                await client.send(message)
                await client.recv()

        try:
            yield lambda n: loop.run_until_complete(rounds(n)), None
        finally:
            loop.run_until_complete(client.close())
            server.close()
            loop.run_until_complete(server.wait_closed())


@contextlib.contextmanager
def tornado_echo(message: Payload) -> Iterator[Callable[[int], float]]:
    import tornado.httpserver
    import tornado.netutil
    import tornado.web
    import tornado.websocket

    class Echo(tornado.websocket.WebSocketHandler):
        def on_message(self, data: Union[str, bytes]) -> None:
            self.write_message(data, binary=isinstance(data, bytes))

    async def start() -> tuple[Any, Any]:
        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
        app = tornado.web.Application([(r"/", Echo)], websocket_max_message_size=1 << 22)
        server = tornado.httpserver.HTTPServer(app)
        server.add_sockets(sockets)
        port = sockets[0].getsockname()[1]
        conn = await tornado.websocket.websocket_connect(f"ws://127.0.0.1:{port}/", max_message_size=1 << 22)
        return server, conn

    with _loop() as loop:
        server, conn = loop.run_until_complete(start())
        binary = isinstance(message, bytes)

        async def rounds(n: int) -> None:
            for _ in range(n):
                await conn.write_message(message, binary=binary)
                await conn.read_message()

        try:
            yield lambda n: loop.run_until_complete(rounds(n)), None
        finally:
            conn.close()
            server.stop()
            loop.run_until_complete(asyncio.sleep(0.05))


@contextlib.contextmanager
def autobahn_echo(message: Payload) -> Iterator[Callable[[int], float]]:
    from autobahn.asyncio.websocket import (
        WebSocketClientFactory,
        WebSocketClientProtocol,
        WebSocketServerFactory,
        WebSocketServerProtocol,
    )

    data = message.encode() if isinstance(message, str) else message
    binary = isinstance(message, bytes)

    class Server(WebSocketServerProtocol):  # type: ignore[misc]
        def onMessage(self, payload: bytes, isBinary: bool) -> None:  # noqa: N802, N803
            self.sendMessage(payload, isBinary)

    class Client(WebSocketClientProtocol):  # type: ignore[misc]
        def onOpen(self) -> None:  # noqa: N802
            self.factory.opened.set_result(self)

        def onMessage(self, payload: bytes, isBinary: bool) -> None:  # noqa: N802, N803
            self.left -= 1
            if self.left:
                self.sendMessage(data, binary)
            else:
                self.done.set_result(None)

    async def start() -> tuple[Any, Any, Any]:
        loop = asyncio.get_running_loop()
        sfactory = WebSocketServerFactory()
        sfactory.protocol = Server
        sfactory.setProtocolOptions(autoPingInterval=0)
        server = await loop.create_server(sfactory, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        cfactory = WebSocketClientFactory(f"ws://127.0.0.1:{port}/")
        cfactory.protocol = Client
        cfactory.opened = loop.create_future()
        transport, _ = await loop.create_connection(cfactory, "127.0.0.1", port)
        return server, transport, await cfactory.opened

    with _loop() as loop:
        server, transport, client = loop.run_until_complete(start())

        async def rounds(n: int) -> None:
            client.left = n
            client.done = loop.create_future()
            client.sendMessage(data, binary)
            await client.done

        try:
            yield lambda n: loop.run_until_complete(rounds(n)), None
        finally:
            transport.close()
            server.close()
            loop.run_until_complete(asyncio.sleep(0.05))


@contextlib.contextmanager
def ws4py_echo(message: Payload) -> Iterator[Callable[[int], float]]:
    from wsgiref.simple_server import make_server

    from ws4py.client.threadedclient import WebSocketClient
    from ws4py.server.wsgirefserver import WebSocketWSGIRequestHandler, WSGIServer
    from ws4py.server.wsgiutils import WebSocketWSGIApplication
    from ws4py.websocket import EchoWebSocket

    server = make_server(
        "127.0.0.1",
        0,
        server_class=WSGIServer,
        handler_class=WebSocketWSGIRequestHandler,
        app=WebSocketWSGIApplication(handler_cls=EchoWebSocket),
    )
    server.initialize_websockets_manager()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    echoed = threading.Event()

    class Client(WebSocketClient):  # type: ignore[misc]
        def received_message(self, m: Any) -> None:
            echoed.set()

    client = Client(f"ws://127.0.0.1:{server.server_address[1]}/")
    client.connect()
    binary = isinstance(message, bytes)

    def rounds(n: int) -> None:
        for _ in range(n):
            echoed.clear()
            client.send(message, binary)
            if not echoed.wait(60):
                raise RuntimeError("ws4py: no echo within 60 s")

    try:
        yield rounds, None
    finally:
        client.close()
        server.shutdown()
        server.server_close()
        thread.join(10)


@contextlib.contextmanager
def websocket_client_echo(message: Payload) -> Iterator[Callable[[int], float]]:
    import websocket

    with wsfast_echo_server() as (port, server_cpu):
        ws = websocket.create_connection(f"ws://127.0.0.1:{port}/", timeout=60)
        opcode = websocket.ABNF.OPCODE_BINARY if isinstance(message, bytes) else websocket.ABNF.OPCODE_TEXT

        def rounds(n: int) -> None:
            for _ in range(n):
                ws.send(message, opcode)
                ws.recv()

        try:
            yield rounds, server_cpu
        finally:
            ws.close()


@contextlib.contextmanager
def wsproto_echo(message: Payload) -> Iterator[Callable[[int], float]]:
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, BytesMessage, Message, Request, TextMessage

    client, server = WSConnection(ConnectionType.CLIENT), WSConnection(ConnectionType.SERVER)
    server.receive_data(client.send(Request(host="localhost", target="/")))
    for _ in server.events():
        client.receive_data(server.send(AcceptConnection()))
    assert isinstance(next(client.events()), AcceptConnection)

    def rounds(n: int) -> None:
        for _ in range(n):
            server.receive_data(client.send(Message(data=message)))
            for event in server.events():
                if isinstance(event, (TextMessage, BytesMessage)):
                    client.receive_data(server.send(Message(data=event.data, message_finished=event.message_finished)))
            for _event in client.events():
                pass

    yield rounds, None


WORKLOADS: dict[str, Callable[[Payload], Any]] = {
    "websockets": websockets_echo,
    "wsproto": wsproto_echo,
    "tornado": tornado_echo,
    "websocket-client": websocket_client_echo,
    "autobahn": autobahn_echo,
    "ws4py": ws4py_echo,
}
HOW = {
    "websockets": "asyncio client + server, loopback",
    "wsproto": "sans-I/O client + server, bytes",
    "tornado": "asyncio client + server, loopback",
    "websocket-client": "client vs wsfast server (child process), loopback",
    "autobahn": "asyncio client + server, loopback",
    "ws4py": "threaded client + wsgiref server, loopback",
}


# ---------------------------------------------------------------- a wsfast echo server in a child process


def _echo_server_main() -> None:
    from wsfast.asyncio import Listener, WebSocketTransport, create_server

    class Echo(Listener):
        def on_open(self, ws: WebSocketTransport) -> None:
            self.ws = ws

        def on_text(self, data: Union[str, bytes]) -> None:
            self.ws.send_text(data)

        def on_binary(self, data: bytes) -> None:
            self.ws.send_binary(data)

    async def main() -> None:
        server = await create_server(lambda ws, request: Echo(), "127.0.0.1", 0, max_message_size=None)
        print(f"READY {server.port}", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent goes

    asyncio.run(main())


def _cpu_of(pid: int) -> Optional[float]:
    """CPU seconds (user + system) used so far by process ``pid``, from /proc (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def wsfast_echo_server() -> Iterator[tuple[int, Callable[[], Optional[float]]]]:
    child = subprocess.Popen(
        [sys.executable, __file__, "--echo-server"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        if not line.startswith("READY "):
            raise RuntimeError(f"the wsfast echo server did not start: {line!r}")
        yield int(line.split()[1]), lambda: _cpu_of(child.pid)
    finally:
        assert child.stdin is not None
        child.stdin.close()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(10)


# ---------------------------------------------------------------- measuring


def _set_mode(target: str, patched: bool) -> None:
    if patched:
        (result,) = acc.accelerate(target)
        if not result.ok:
            raise RuntimeError(f"{target} not patched: {result.skipped}")
    else:
        acc.unaccelerate(target)


def _round(target: str, message: Payload, patched: bool, n: int) -> tuple[float, float]:
    """Wall-clock and CPU seconds (this process and the helpers) of n round trips."""
    _set_mode(target, patched)
    with WORKLOADS[target](message) as (echo, helpers_cpu):
        echo(1)  # warm up this connection
        cpu0 = time.process_time() + ((helpers_cpu() or 0.0) if helpers_cpu else 0.0)
        wall0 = time.perf_counter()
        echo(n)
        wall = time.perf_counter() - wall0
        cpu = time.process_time() + ((helpers_cpu() or 0.0) if helpers_cpu else 0.0) - cpu0
    return wall, cpu


def measure(target: str, message: Payload, rounds: int, round_time: float) -> dict[str, Any]:
    """Round trips per second, by the wall clock and per CPU second, over
    ``rounds`` interleaved rounds of each mode."""
    probe = min(_round(target, message, False, 1)[0] for _ in range(2))
    n = max(3, min(5000, int(round_time / max(probe, 1e-6))))
    wall: dict[bool, list[float]] = {False: [], True: []}
    cpu: dict[bool, list[float]] = {False: [], True: []}
    for i in range(rounds):
        for patched in (False, True) if i % 2 == 0 else (True, False):
            seconds, cpu_seconds = _round(target, message, patched, n)
            wall[patched].append(n / seconds)
            cpu[patched].append(n / max(cpu_seconds, 1e-9))
    acc.unaccelerate(target)
    return {
        "n": n,
        "unpatched_msgs_per_s": statistics.median(wall[False]),
        "patched_msgs_per_s": statistics.median(wall[True]),
        "ratio": statistics.median(wall[True]) / statistics.median(wall[False]),
        "cpu_ratio": statistics.median(cpu[True]) / statistics.median(cpu[False]),
        "rates": {"unpatched": wall[False], "patched": wall[True]},
        "cpu_rates": {"unpatched": cpu[False], "patched": cpu[True]},
    }


def _versions() -> dict[str, Optional[str]]:
    return {name: acc._installed_version(name) for name in acc.TARGETS}


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-t", "--target", action="append", choices=list(WORKLOADS), help="repeatable; default: all")
    parser.add_argument("-s", "--size", action="append", choices=list(SIZES), help="repeatable; default: all")
    parser.add_argument("-k", "--kind", action="append", choices=KINDS, help="repeatable; default: both")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per mode (default 5)")
    parser.add_argument("--round-time", type=float, default=0.3, help="seconds per unpatched round (default 0.3)")
    parser.add_argument("--json", help="write every measurement to this file")
    parser.add_argument("--echo-server", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.echo_server:
        _echo_server_main()
        return 0
    if not wsfast.HAS_SPEEDUPS:
        print("wsfast's compiled codec is not in use: nothing to measure", file=sys.stderr)
        return 2

    versions = _versions()
    targets = [t for t in (args.target or WORKLOADS) if versions[t] is not None]
    print(f"wsfast {wsfast.__version__} ({wsfast.IMPLEMENTATION}), Python {sys.version.split()[0]}")
    print("versions: " + ", ".join(f"{t} {versions[t]}" for t in targets))
    if hasattr(os, "getloadavg"):
        print(f"load average at start: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
    results: list[dict[str, Any]] = []
    for target in targets:
        for kind in args.kind or KINDS:
            for size_name in args.size or SIZES:
                message = payload(kind, SIZES[size_name])
                entry = {"target": target, "kind": kind, "size": size_name, "how": HOW[target]}
                entry.update(measure(target, message, args.rounds, args.round_time))
                results.append(entry)
                print(
                    f"  {target:16} {kind:6} {size_name:>5}: {entry['unpatched_msgs_per_s']:10.0f} ->"
                    f" {entry['patched_msgs_per_s']:10.0f} msg/s  x{entry['ratio']:.2f}"
                    f"  (per CPU second: x{entry['cpu_ratio']:.2f})",
                    file=sys.stderr,
                    flush=True,
                )
    print("\nPatched / unpatched round trips per second (wall clock, median of the rounds):\n")
    print(table(results, args.size or list(SIZES), args.kind or list(KINDS), "ratio"))
    print("\nThe same per CPU second (this process and its helpers; steadier on a shared machine):\n")
    print(table(results, args.size or list(SIZES), args.kind or list(KINDS), "cpu_ratio"))
    if hasattr(os, "getloadavg"):
        print(f"\nload average at end: {os.getloadavg()[0]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"versions": versions, "results": results}, indent=2))
    return 0


def table(results: list[dict[str, Any]], sizes: list[str], kinds: list[str], key: str) -> str:
    """Markdown: one row per target, the ratios ``key`` of each case."""
    columns = [(kind, size) for kind in kinds for size in sizes]
    lines = [
        "| target | how | " + " | ".join(f"{kind} {size}" for kind, size in columns) + " |",
        "|---|---|" + "---:|" * len(columns),
    ]
    for target in dict.fromkeys(r["target"] for r in results):
        cells = []
        for kind, size in columns:
            found = [r for r in results if (r["target"], r["kind"], r["size"]) == (target, kind, size)]
            cells.append(f"{found[0][key]:.2f}x" if found else "")
        lines.append(f"| {target} | {HOW[target]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
