"""The ``wsfast`` command: ``serve``, ``connect`` and ``bench``.

``wsfast serve`` runs an echo endpoint at ``/echo`` and a chat room at ``/``
(a page with its own JavaScript client, so people can chat between browser
tabs). ``wsfast connect URI`` is an interactive client. ``wsfast bench``
runs the end-to-end benchmark suite (:mod:`wsfast.benchmark`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import ssl
import sys
import threading
from typing import Any, AsyncIterator, Optional, Sequence
from urllib.parse import parse_qs, urlsplit

from . import IMPLEMENTATION, __version__
from .asyncio import WebSocket, broadcast, connect, serve
from .asyncio.transport import WebSocketTransport
from .exceptions import ConnectionClosed, InvalidHandshake, InvalidProxy, InvalidURI
from .http11 import Headers, Request, Response, header_tokens
from .hub import Hub, HubError
from .proxy import ProxySetting
from .retry import BACKOFF_FACTOR, BACKOFF_INITIAL_DELAY, BACKOFF_MAX_DELAY, Backoff

__all__ = ["main", "CHAT_PAGE", "DemoApp"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765

CHAT_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>wsfast chat</title>
<style>
  body { font-family: system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; }
  #log { border: 1px solid #ccc; height: 20rem; overflow-y: auto; padding: .5rem; }
  #log p { margin: .2rem 0; }
  .system { color: #777; font-style: italic; }
  form { display: flex; gap: .5rem; margin-top: .5rem; }
  #text { flex: 1; }
</style>
</head>
<body>
<h1>wsfast chat</h1>
<p id="status" class="system">connecting...</p>
<div id="log"></div>
<form id="form"><input id="text" autocomplete="off" placeholder="Say something">
<button>Send</button></form>
<script>
const log = document.getElementById("log");
const status = document.getElementById("status");
function show(text, cls) {
  const p = document.createElement("p");
  p.textContent = text;
  if (cls) p.className = cls;
  log.appendChild(p);
  log.scrollTop = log.scrollHeight;
}
const scheme = location.protocol === "https:" ? "wss://" : "ws://";
// Messages come as {"id": ..., "data": ...}; after a lost connection the
// page reconnects (to any worker, on any host) and resumes after the last
// id it saw, so nothing said meanwhile is missed.
let ws = null, name = null, lastId = null, delay = 250;
function connect() {
  let url = scheme + location.host + "/?ids=1";
  if (name) url += "&name=" + encodeURIComponent(name);
  if (lastId) url += "&last_id=" + encodeURIComponent(lastId);
  ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  ws.onopen = () => { status.textContent = "connected"; delay = 250; };
  ws.onclose = (e) => {
    status.textContent = "disconnected (" + e.code + "), reconnecting...";
    setTimeout(connect, delay);
    delay = Math.min(2 * delay, 8000);
  };
  ws.onmessage = (e) => {
    if (typeof e.data !== "string") { show("[binary message, " + e.data.byteLength + " bytes]", "system"); return; }
    let m;
    try { m = JSON.parse(e.data); } catch (err) { show(e.data, "system"); return; }
    if (m.you) { name = m.you; return; }
    if (m.id) lastId = m.id;
    show(m.data);
  };
}
connect();
document.getElementById("form").onsubmit = (e) => {
  e.preventDefault();
  const input = document.getElementById("text");
  if (input.value && ws.readyState === WebSocket.OPEN) ws.send(input.value);
  input.value = "";
};
</script>
</body>
</html>
"""


_GUEST = re.compile(r"guest-[0-9]{1,10}(-[0-9]{1,10})?")


def _fail(message: str, status: int = 1) -> int:
    print(f"wsfast: {message}", file=sys.stderr)
    return status


# ---------------------------------------------------------------- serve


class DemoApp:
    """The application of ``wsfast serve``: :attr:`routes` for
    :func:`~wsfast.asyncio.serve`, with :meth:`process_request` (which serves
    the chat page) and :meth:`lifespan` (which starts the hub).

    The chat room is the hub's channel ``chat`` (``hub``: its URL). With
    ``--workers``, the supervisor creates the app before forking, each
    worker starts its copy of the hub: with a Redis hub the room spans every
    worker and host. The page asks for the JSON envelope (``/?ids=1``) and
    resumes after its last id when it reconnects; other clients get the
    lines as they are."""

    def __init__(self, hub: str = "memory://") -> None:
        self.hub = Hub(hub, on_gap=self._gap)
        self.room: set[WebSocket] = set()  # this process's members

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """Entered around serving, in the serving process (after the fork,
        with ``--workers``): starts and closes the hub."""
        async with self.hub:
            yield

    def _gap(self, channels: list[str], reason: str) -> None:
        broadcast(self.room, "* some messages may have been missed (the hub reconnected)")

    @property
    def routes(self) -> dict[str, Any]:
        """``/``: the chat room; ``/echo``: echoes every message."""
        return {"/": self.chat, "/echo": self.echo}

    def process_request(self, ws: WebSocketTransport, request: Request) -> Optional[Response]:
        if request.path == "/" and "websocket" not in header_tokens(request.headers, "Upgrade"):
            headers = Headers([("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-cache")])
            return Response(200, headers, CHAT_PAGE.encode())
        return None

    async def echo(self, ws: WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    async def chat(self, ws: WebSocket) -> None:
        assert ws.request is not None
        query = parse_qs(urlsplit(ws.request.target).query)
        page = "ids" in query  # the chat page: JSON with ids, and resuming
        last_id = query.get("last_id", [None])[-1] if page else None
        name = query.get("name", [""])[-1]
        if not (page and _GUEST.fullmatch(name)):
            name = f"guest-{ws.id}" if self.hub.url.startswith("memory:") else f"guest-{os.getpid()}-{ws.id}"
        if page:
            await ws.send(json.dumps({"you": name}))
        self.room.add(ws)
        try:
            try:
                await self.hub.subscribe(ws, "chat", last_id=last_id, envelope="json" if page else "raw")
            except ValueError:  # not an id of this hub's: start afresh
                last_id = None
                await self.hub.subscribe(ws, "chat", envelope="json" if page else "raw")
            await self.hub.publish("chat", f"* {name} is back" if last_id else f"* {name} joined")
            async for message in ws:
                if isinstance(message, str):
                    await self.hub.publish("chat", f"{name}: {message}")
        finally:
            self.room.discard(ws)
            with contextlib.suppress(HubError):  # the hub is closed when the server shuts down
                await self.hub.publish("chat", f"* {name} left")


def _banner(scheme: str, host: str, port: int, workers: str = "") -> str:
    shown = f"[{host}]" if ":" in host else host
    return (
        f"wsfast {__version__} ({IMPLEMENTATION} codec) serving on {scheme}://{shown}:{port}/{workers}"
        f" (chat page; echo at /echo). Ctrl-C stops."
    )


async def _serve(host: str, port: int, context: Optional[ssl.SSLContext], app: DemoApp) -> None:
    loop = asyncio.get_running_loop()
    stop = loop.create_future()

    def request_stop() -> None:
        if not stop.done():
            stop.set_result(None)

    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, request_stop)
        except (NotImplementedError, RuntimeError):  # Windows
            pass
    async with app.lifespan(), serve(app.routes, host, port, ssl=context, process_request=app.process_request) as srv:
        scheme = "https" if context else "http"
        for sock in srv.sockets:
            address = sock.getsockname()
            print(_banner(scheme, address[0], address[1]), flush=True)
        await stop
        print("wsfast: shutting down", flush=True)


def _serve_workers(args: argparse.Namespace, context: Optional[ssl.SSLContext], app: DemoApp) -> int:
    """``--workers N``: N worker processes under a supervisor (wsfast.workers)."""
    from .workers import Supervisor

    def started(supervisor: Supervisor) -> None:
        for pid in supervisor.pids:
            print(f"wsfast: worker {pid} started", flush=True)
        scheme = "https" if context else "http"
        workers = f" with {len(supervisor.pids)} workers"
        print(_banner(scheme, supervisor.addresses[0], supervisor.port, workers), flush=True)
        if app.hub.url.startswith("memory:"):
            print(
                "wsfast: the memory:// hub is per process: each worker has a chat room of its own"
                " (--hub redis://HOST:PORT/0 or redis+streams://... makes one room of them)",
                file=sys.stderr,
                flush=True,
            )

    try:
        supervisor = Supervisor(
            app.routes,
            args.host,
            args.port,
            workers=args.workers,
            process_request=app.process_request,
            lifespan=app.lifespan,
            ssl=context,
            on_ready=started,
        )
        supervisor.bind()
    except OSError as exc:
        return _fail(exc.strerror or str(exc))
    except (RuntimeError, ValueError) as exc:
        return _fail(str(exc))
    try:
        supervisor.run()
    except RuntimeError as exc:
        return _fail(str(exc))
    print("wsfast: all workers stopped", flush=True)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    context = None
    if args.certfile:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(args.certfile, args.keyfile)
        except (OSError, ssl.SSLError) as exc:
            return _fail(f"cannot load the certificate: {exc}")
    elif args.keyfile:
        return _fail("--keyfile needs --certfile", 2)
    if args.workers < 0:
        return _fail("--workers must be 0 (one per core) or more", 2)
    try:
        app = DemoApp(args.hub)
    except (ValueError, ImportError) as exc:
        return _fail(f"--hub: {exc}", 2)
    if args.workers != 1:
        return _serve_workers(args, context, app)
    try:
        asyncio.run(_serve(args.host, args.port, context, app))
    except HubError as exc:
        return _fail(str(exc))
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        return _fail(f"cannot listen on {args.host}:{args.port}: {reason}")
    except KeyboardInterrupt:
        pass
    return 0


# ---------------------------------------------------------------- connect

_BACKOFF_DEFAULTS: dict[str, Any] = {
    "backoff_initial": BACKOFF_INITIAL_DELAY,
    "backoff_factor": BACKOFF_FACTOR,
    "backoff_max": BACKOFF_MAX_DELAY,
    "max_attempts": None,
}


async def _connect(
    uri: str,
    context: Optional[ssl.SSLContext],
    linger: float,
    proxy: ProxySetting = True,
    reconnect: Optional[dict[str, Any]] = None,
) -> int:
    """The interactive client. With ``reconnect`` (``connect``'s backoff
    settings), a lost connection is replaced (lines typed meanwhile wait) until
    the input ends."""
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[Optional[str]] = asyncio.Queue()

    def read_stdin() -> None:  # a daemon thread: stdin may be a tty, a pipe or a file
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line.rstrip("\n"))
        loop.call_soon_threadsafe(lines.put_nowait, None)

    reading: list[threading.Thread] = []

    def connected(ws: WebSocket) -> None:
        print(
            f"Connected to {uri}"
            + (f" (subprotocol {ws.subprotocol})" if ws.subprotocol else "")
            + ". Type a line to send it; Ctrl-D closes.",
            file=sys.stderr,
            flush=True,
        )
        if not reading:
            reading.append(threading.Thread(target=read_stdin, daemon=True))
            reading[0].start()

    if reconnect is None:
        ws = await connect(uri, ssl=context, proxy=proxy)
        connected(ws)
        await _session(ws, lines, linger)
        return 0
    async for ws in connect(uri, ssl=context, proxy=proxy, **reconnect):
        connected(ws)
        if await _session(ws, lines, linger):
            break
        print("Reconnecting...", file=sys.stderr, flush=True)
    return 0


async def _session(ws: WebSocket, lines: asyncio.Queue[Optional[str]], linger: float) -> bool:
    """Send the lines typed, print the messages received; return ``True``
    when the input ended, ``False`` when the connection did."""
    loop = asyncio.get_running_loop()
    last_message = [loop.time()]
    input_ended = False

    async def printer() -> None:
        async for message in ws:
            last_message[0] = loop.time()
            if isinstance(message, str):
                print(f"< {message}", flush=True)
            else:
                print(f"< (binary) {message.hex()}", flush=True)

    receiving = asyncio.ensure_future(printer())
    try:
        while not receiving.done():
            getter = asyncio.ensure_future(lines.get())
            await asyncio.wait({getter, receiving}, return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                getter.cancel()
                break
            line = getter.result()
            if line is None:
                input_ended = True
                break
            await ws.send(line)
        # End of input: replies to the last lines may still be on their way.
        # Wait until the server has been quiet for `linger` seconds (at most
        # 10 linger periods), then close.
        deadline = loop.time() + 10 * linger
        while input_ended and not receiving.done() and loop.time() < deadline:
            quiet_until = last_message[0] + linger
            if loop.time() >= quiet_until:
                break
            await asyncio.wait({receiving}, timeout=quiet_until - loop.time())
    except ConnectionClosed:
        pass
    await ws.close()
    if not receiving.done():
        receiving.cancel()
    elif receiving.exception() is not None and not isinstance(receiving.exception(), ConnectionClosed):
        raise receiving.exception()  # type: ignore[misc]
    print(f"Connection closed: {ws.close_code} {ws.close_reason or ''}".rstrip(), file=sys.stderr, flush=True)
    return input_ended


def cmd_connect(args: argparse.Namespace) -> int:
    context = None
    if args.cafile or args.insecure:
        context = ssl.create_default_context(cafile=args.cafile)
        if args.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    proxy: ProxySetting = None if args.no_proxy else (args.proxy or True)
    reconnect = None
    if args.reconnect:
        reconnect = {
            "backoff_initial_delay": args.backoff_initial,
            "backoff_factor": args.backoff_factor,
            "backoff_max_delay": args.backoff_max,
            "max_attempts": args.max_attempts,
        }
        try:
            Backoff(args.backoff_initial, args.backoff_factor, args.backoff_max, args.max_attempts)
        except ValueError as exc:
            return _fail(f"--reconnect: {exc}", 2)
    elif any(getattr(args, name) != default for name, default in _BACKOFF_DEFAULTS.items()):
        return _fail("--backoff-initial, --backoff-factor, --backoff-max and --max-attempts need --reconnect", 2)
    try:
        return asyncio.run(_connect(args.uri, context, args.linger, proxy, reconnect))
    except (InvalidURI, InvalidProxy) as exc:
        return _fail(str(exc), 2)
    except ImportError as exc:  # a SOCKS proxy without python-socks
        return _fail(str(exc))
    except ssl.SSLError as exc:
        return _fail(f"TLS handshake with {args.uri} failed: {exc.reason or exc}")
    except InvalidHandshake as exc:
        return _fail(f"{args.uri}: {exc}")
    except ConnectionRefusedError as exc:
        if "proxy" in str(exc.strerror):  # the proxy refused: its message names it
            return _fail(f"cannot connect to {args.uri}: {exc.strerror}")
        return _fail(f"connection to {args.uri} refused")
    except asyncio.TimeoutError:
        return _fail(f"connection to {args.uri} timed out")
    except OSError as exc:
        return _fail(f"cannot connect to {args.uri}: {exc.strerror or exc}")
    except KeyboardInterrupt:
        return 130


# ---------------------------------------------------------------- bench


_SIZE_UNITS = {"b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024 * 1024, "mb": 1024 * 1024, "mib": 1024 * 1024}


def _size_arg(text: str) -> int:
    """``64``, ``1KiB``, ``64k``, ``1MiB``: a message size in bytes."""
    value = text.strip().lower()
    digits = value.rstrip("abikm")
    unit = value[len(digits) :] or "b"
    if not digits.isdigit() or unit not in _SIZE_UNITS:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (examples: 64, 1KiB, 1MiB)")
    return int(digits) * _SIZE_UNITS[unit]


def cmd_bench(args: argparse.Namespace) -> int:
    from .benchmark import report
    from .benchmark.runner import LIBRARIES, SCENARIOS, Config, run_suite, summarize_points

    unknown = [p for p in args.peers if p not in LIBRARIES] + [s for s in args.scenarios or () if s not in SCENARIOS]
    if unknown:
        return _fail(
            f"unknown peer or scenario: {', '.join(unknown)} (peers: {', '.join(LIBRARIES)};"
            f" scenarios: {', '.join(SCENARIOS)})",
            2,
        )

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    overrides: dict[str, Any] = {
        "peers": tuple(args.peers),
        "command": "wsfast bench " + " ".join(args.argv),
        "progress": progress,
    }
    if args.sizes:
        overrides["sizes"] = tuple(args.sizes)
    if args.loop != "default":
        overrides["loops"] = ("asyncio", "uvloop") if args.loop == "both" else (args.loop,)
    if args.scenarios:
        overrides["scenarios"] = tuple(args.scenarios)
    for name in ("runs", "duration"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    if args.from_json:
        with open(args.from_json, encoding="utf-8") as f:
            results = json.load(f)
        results["points"] = summarize_points(results["points"])
    else:
        config = Config.quick_config(**overrides) if args.quick else Config(**overrides)
        results = run_suite(config)
    if args.out:
        for path in report.write(results, args.out):
            progress(f"wrote {path}")
    print(report.markdown(results), end="")
    return 0


# ---------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wsfast", description="A fast, strict WebSocket library.")
    parser.add_argument("--version", action="version", version=f"wsfast {__version__} ({IMPLEMENTATION})")
    verbose = argparse.ArgumentParser(add_help=False)
    verbose.add_argument("-v", "--verbose", action="store_true", help="log connections")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("serve", parents=[verbose], help="run the echo and chat demo server")
    p.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--certfile", help="PEM certificate chain: serve wss:// and https://")
    p.add_argument("--keyfile", help="PEM private key, if not in --certfile")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="worker processes on the port, under a supervisor (0: one per core; default 1: this process serves)",
    )
    p.add_argument(
        "--hub",
        default="memory://",
        metavar="URL",
        help="the chat room's hub (wsfast.hub): memory:// (default: one process), redis://HOST:PORT/DB (Redis"
        " Pub/Sub) or redis+streams://HOST:PORT/DB (Redis Streams: pages resume after a reconnect)",
    )
    p.set_defaults(func=cmd_serve)

    p = commands.add_parser("connect", parents=[verbose], help="interactive client: lines typed are sent")
    p.add_argument("uri", help="ws:// or wss:// URI")
    p.add_argument("--cafile", help="trust this CA bundle (PEM) for wss://")
    p.add_argument("--insecure", action="store_true", help="do not verify the server certificate")
    proxy = p.add_mutually_exclusive_group()
    proxy.add_argument(
        "--proxy",
        metavar="URL",
        help="connect through this proxy: http://, https://, socks5h://... with user:password@ if needed"
        " (default: from the environment, https_proxy and the like)",
    )
    proxy.add_argument("--no-proxy", action="store_true", help="connect directly, whatever the environment says")
    p.add_argument(
        "--linger",
        type=float,
        default=0.5,
        help="after the end of input, wait until the server is quiet this long before closing (default 0.5 s)",
    )
    p.add_argument(
        "--reconnect",
        action="store_true",
        help="reconnect when the connection is lost, and retry failed attempts worth retrying (refused, reset,"
        " timeouts, 5xx), after random delays growing exponentially (logged); until the input ends",
    )
    p.add_argument(
        "--backoff-initial",
        type=float,
        default=BACKOFF_INITIAL_DELAY,
        metavar="SECONDS",
        help=f"with --reconnect: the first delay is at most this long (default {BACKOFF_INITIAL_DELAY:g})",
    )
    p.add_argument(
        "--backoff-factor",
        type=float,
        default=BACKOFF_FACTOR,
        help=f"with --reconnect: the bound grows by this factor after each failure (default {BACKOFF_FACTOR:g})",
    )
    p.add_argument(
        "--backoff-max",
        type=float,
        default=BACKOFF_MAX_DELAY,
        metavar="SECONDS",
        help=f"with --reconnect: the largest bound on a delay (default {BACKOFF_MAX_DELAY:g})",
    )
    p.add_argument(
        "--max-attempts",
        type=int,
        metavar="N",
        help="with --reconnect: give up after N consecutive failed attempts (default: never)",
    )
    p.set_defaults(func=cmd_connect)

    p = commands.add_parser(
        "bench",
        parents=[verbose],
        help="benchmark servers and clients against websockets, picows, aiohttp and a raw TCP ceiling",
        description="End-to-end benchmarks over 127.0.0.1, server and client in separate processes"
        " (see bench/README.md). Progress goes to stderr, the markdown report to stdout.",
    )
    p.add_argument("--quick", action="store_true", help="about a minute: 3 short runs per point, one event loop")
    p.add_argument("--peers", nargs="+", default=["wsfast", "websockets", "picows", "aiohttp"], help="libraries to run")
    p.add_argument("--sizes", type=_size_arg, nargs="+", help="message sizes (default 64 1KiB 64KiB 1MiB)")
    p.add_argument(
        "--loop",
        choices=["asyncio", "uvloop", "both", "default"],
        default="default",
        help="event loop of the code under test (default: both; uvloop with --quick)",
    )
    p.add_argument("--scenarios", nargs="+", help="scenarios to run (default: all; --quick: all but client-1)")
    p.add_argument("--runs", type=int, help="runs per point (default 5, 3 with --quick)")
    p.add_argument("--duration", type=float, help="seconds counted per run (default 0.5, 0.2 with --quick)")
    p.add_argument("--out", metavar="DIR", help="write results.json, results.md and PNG charts there")
    p.add_argument("--from-json", metavar="FILE", help="run nothing: report the results.json of an earlier run")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[2:] if argv is None else argv[1:])
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
