"""The ``sync`` scenario: the threading APIs, :mod:`wsfast.sync` against
``websockets.sync``, one connection, request-response.

Server side: the server under test (an echo handler, a thread per
connection) in its own process, the same client (:mod:`wsfast.sync`) against
both. Client side: the client under test in its own process, the same server
(:mod:`wsfast.sync`) for both. Both sides: each library's client against its
own server (CPU: both processes'). Each run: connect, 0.2 s of warm-up, a text
``mark`` (the server notes its CPU time), round trips of one binary message
for ``duration`` seconds, a text ``report`` (the server answers its CPU
time since the mark). The implementations alternate run by run.

The floor: a raw TCP echo over blocking sockets (:data:`RAW`: a thread per
connection in the server process echoes what it reads, the client sends a
message and reads as many bytes back; no WebSocket work), run as the pairs
are, so that their rates show against what the machine allows one
connection of request-response between two Python processes.

Every run goes twice (:data:`PLACEMENTS`): the side under test on one core
and its counterpart on another, as in the other scenarios, and both on one
core. By hand: ``main(["serve", "wsfast"])``
prints a port; ``main(["client", "wsfast", "ws://127.0.0.1:PORT", "64", "1"])``
prints a run's figures as JSON.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Optional

from ._common import payload, summarize

__all__ = ["IMPLS", "LABELS", "run_scenario", "summarize_point", "markdown", "main"]

SIDES = ("server", "client", "pair")
RAW = "raw-tcp-pair"
"""The floor: a raw TCP echo, client and server, over blocking sockets."""
IMPLS = (*(f"{lib}-sync-{side}" for side in SIDES for lib in ("wsfast", "websockets")), RAW)
LABELS = {
    **{
        f"{lib}-sync-{side}": f"{lib}.sync {'client and server' if side == 'pair' else side}"
        for lib in ("wsfast", "websockets")
        for side in SIDES
    },
    RAW: "raw TCP echo (blocking sockets, no WebSocket)",
}
# The floor runs with wsfast's runs.
LIBRARY = {impl: "wsfast" if impl == RAW else impl.split("-", 1)[0] for impl in IMPLS}
# The server process of each implementation's pair runs: "raw" for the floor.
SERVER = {impl: "raw" if impl == RAW else LIBRARY[impl] for impl in IMPLS}
WARMUP = 0.2
MAX_SIZE = 4 * 1024 * 1024


def missing(impl: str) -> Optional[str]:
    """Why an implementation cannot run, or ``None``."""
    if impl.startswith("websockets") and importlib.util.find_spec("websockets") is None:
        return "websockets not installed"
    return None


# ---------------------------------------------------------------- the processes


def _echo(ws: Any) -> None:
    """The echo handler (both libraries): binary messages come back; the text
    ``mark`` and ``report`` measure the server's CPU time in between."""
    mark = time.process_time()
    for message in ws:
        if isinstance(message, str):
            if message == "mark":
                mark = time.process_time()
                ws.send("ok")
            else:
                ws.send(json.dumps({"cpu_s": time.process_time() - mark}))
        else:
            ws.send(message)


def _raw_connection(sock: socket.socket) -> None:
    """The raw server's side of a connection: its first byte says what it
    is: ``D`` echoes what it reads; ``C`` (control) answers ``m`` (mark the
    CPU time) with ``k`` and ``r`` with the CPU time since, a JSON line."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with sock:
        kind = sock.recv(1)
        if kind == b"D":
            view = memoryview(bytearray(MAX_SIZE))
            while True:
                n = sock.recv_into(view)
                if not n:
                    return
                sock.sendall(view[:n])
        mark = time.process_time()
        while True:
            command = sock.recv(1)
            if command == b"m":
                mark = time.process_time()
                sock.sendall(b"k")
            elif command == b"r":
                sock.sendall(json.dumps({"cpu_s": time.process_time() - mark}).encode() + b"\n")
            else:
                return


def _raw_serve() -> tuple[socket.socket, int]:
    """The raw TCP echo server: a listening socket, accepting in a thread."""
    listener = socket.create_server(("127.0.0.1", 0))

    def accept() -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=_raw_connection, args=(sock,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return listener, listener.getsockname()[1]


def _serve(lib: str) -> None:
    """Serve the echo on a free port; print it; until stdin closes."""
    if lib == "raw":
        listener, port = _raw_serve()
        print(port, flush=True)
        sys.stdin.read()
        listener.close()
        return
    if lib == "wsfast":
        from ..sync import serve

        server: Any = serve(_echo, "127.0.0.1", 0, max_message_size=MAX_SIZE, ping_interval=None)
        port = server.port
    else:
        from websockets.sync.server import serve as ws_serve

        server = ws_serve(_echo, "127.0.0.1", 0, max_size=MAX_SIZE, ping_interval=None, compression=None)
        port = server.socket.getsockname()[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(port, flush=True)
    sys.stdin.read()
    server.shutdown()


def _round_trips(round_trip: Callable[[], Any], duration: float) -> tuple[int, float, float]:
    """Round trips for ``duration`` seconds: their count, the seconds and
    this process's CPU seconds."""
    count = 0
    cpu = time.process_time()
    start = time.perf_counter()
    end = start + duration
    while True:
        round_trip()
        count += 1
        if not count & 7 and time.perf_counter() >= end:
            break
    return count, time.perf_counter() - start, time.process_time() - cpu


def _figures(count: int, seconds: float, cpu: float, server_cpu: float) -> dict[str, Any]:
    return {
        "messages": count,
        "seconds": seconds,
        "msgs_per_s": count / seconds,
        "client_cpu_us": cpu / count * 1e6,
        "server_cpu_us": server_cpu / count * 1e6,
    }


def _raw_client(uri: str, size: int, duration: float) -> dict[str, Any]:
    """One run of the raw TCP echo (``uri`` gives the port)."""
    port = int(uri.rstrip("/").rsplit(":", 1)[1])
    data = socket.create_connection(("127.0.0.1", port))
    control = socket.create_connection(("127.0.0.1", port))
    data.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    control.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    message = payload(size)
    view = memoryview(bytearray(size))

    def round_trip() -> None:
        data.sendall(message)
        got = 0
        while got < size:
            n = data.recv_into(view[got:])
            if not n:
                raise ConnectionError("the raw echo server closed the connection")
            got += n

    with data, control:
        data.sendall(b"D")
        control.sendall(b"C")
        end = time.perf_counter() + WARMUP
        while time.perf_counter() < end:
            round_trip()
        control.sendall(b"m")
        control.recv(1)
        count, seconds, cpu = _round_trips(round_trip, duration)
        control.sendall(b"r")
        line = b""
        while not line.endswith(b"\n"):
            line += control.recv(4096)
    return _figures(count, seconds, cpu, json.loads(line)["cpu_s"])


def _client(lib: str, uri: str, size: int, duration: float) -> dict[str, Any]:
    """One run: the round trips, their rate, this process's and the server's CPU."""
    if lib == "raw":
        return _raw_client(uri, size, duration)
    if lib == "wsfast":
        from ..sync import connect

        ws: Any = connect(uri, max_message_size=MAX_SIZE, ping_interval=None, deflate=None)
    else:
        from websockets.sync.client import connect as ws_connect

        ws = ws_connect(uri, max_size=MAX_SIZE, ping_interval=None, compression=None)
    message = payload(size)
    with ws:
        end = time.perf_counter() + WARMUP
        while time.perf_counter() < end:
            ws.send(message)
            ws.recv()
        ws.send("mark")
        ws.recv()

        def round_trip() -> None:
            ws.send(message)
            ws.recv()

        count, seconds, cpu = _round_trips(round_trip, duration)
        ws.send("report")
        server_cpu = json.loads(ws.recv())["cpu_s"]
    return _figures(count, seconds, cpu, server_cpu)


def main(argv: list[str]) -> None:
    """``serve LIB`` or ``client LIB URI SIZE DURATION`` (see the module docstring)."""
    if argv[0] == "serve":
        _serve(argv[1])
    else:
        print(json.dumps(_client(argv[1], argv[2], int(argv[3]), float(argv[4]))), flush=True)


# ---------------------------------------------------------------- the scenario


_ENTRY = "import sys; from wsfast.benchmark.sync import main; main(sys.argv[1:])"


def _pin(proc: subprocess.Popen[str], core: Optional[int]) -> None:
    if core is not None and hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(proc.pid, {core})
        except OSError:
            pass


class _Server:
    """A server process of the scenario, on ``core``."""

    def __init__(self, lib: str, env: dict[str, str], core: Optional[int]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _ENTRY, "serve", lib],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        _pin(self.proc, core)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.strip().isdigit():
            self.stop()
            raise RuntimeError(f"the {lib} sync server did not start")
        self.uri = f"ws://127.0.0.1:{int(line)}/"

    def stop(self) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.close()
            self.proc.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


def _client_run(
    lib: str, uri: str, size: int, duration: float, env: dict[str, str], core: Optional[int]
) -> dict[str, Any]:
    args = [sys.executable, "-c", _ENTRY, "client", lib, uri, str(size), str(duration)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    _pin(proc, core)
    try:
        out, err = proc.communicate(timeout=duration * 10 + 60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return {"error": "the client did not finish"}
    if proc.returncode != 0:
        return {"error": (err.strip().splitlines() or ["the client failed"])[-1]}
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


PLACEMENTS = ("2 cores", "1 core")
"""Where the two processes of a run go: each on its own core (the side under
test on the first, as in the other scenarios), or both on the first core.
One connection's round trips are sequential, so on one core the rate is the
inverse of both sides' CPU time per round trip; on two, the machine's
cross-core wake-ups are added to every round trip (on a small VM they
dominate at 64 B, for any library). Points are recorded with the placement
in place of the event loop."""


def run_scenario(suite: Any, impls: list[str]) -> None:
    """Every run of every implementation, alternating, sizes as configured,
    in both placements."""
    for placement in PLACEMENTS:
        tested, fixed = suite.cores
        if placement == "1 core":
            fixed = tested
        _run_placement(suite, placement, impls, tested, fixed)


def _run_placement(suite: Any, placement: str, impls: list[str], tested: Optional[int], fixed: Optional[int]) -> None:
    config = suite.config
    env = dict(os.environ)
    libs = {SERVER[impl] for impl in impls if not impl.endswith("-client")}
    servers = {lib: _Server(lib, env, tested) for lib in libs}  # under test
    servers["fixed"] = _Server("wsfast", env, fixed)  # the counterpart of the clients
    try:
        for size in config.sizes:
            for rep in range(config.runs):
                for impl in impls:
                    lib = LIBRARY[impl]
                    side = impl.rsplit("-", 1)[1]
                    if side == "server":  # the server under test, the wsfast.sync client
                        result = _client_run("wsfast", servers[lib].uri, size, config.duration, env, fixed)
                    elif side == "client":  # the client under test, the wsfast.sync server
                        result = _client_run(lib, servers["fixed"].uri, size, config.duration, env, tested)
                    else:  # the library's client against its server (the floor: raw TCP)
                        lib = SERVER[impl]
                        result = _client_run(lib, servers[lib].uri, size, config.duration, env, fixed)
                        if "error" not in result:
                            result["pair_cpu_us"] = result["client_cpu_us"] + result["server_cpu_us"]
                    point = suite.point("sync", placement, size, impl)
                    if "error" in result:
                        suite.fail("sync", placement, size, impl, result["error"])
                        continue
                    point["runs"].append(result)
                    suite.step += 1
                    suite.say(
                        f"[{suite.step}/{suite.total}] sync ({placement}) {size} {impl} run {rep + 1}:"
                        f" {result['msgs_per_s']:,.0f} msg/s, {result[side + '_cpu_us']:.1f} µs CPU per round trip"
                    )
    finally:
        for server in servers.values():
            server.stop()


def summarize_point(point: dict[str, Any]) -> dict[str, Any]:
    good = [r for r in point["runs"] if "error" not in r]
    errors = [r["error"] for r in point["runs"] if "error" in r]
    if not good:
        point["status"] = "failed"
        point["note"] = errors[0] if errors else "no run"
        return point
    point["status"] = "ok"
    point["note"] = f"{len(errors)} run(s) failed: {errors[0]}" if errors else ""
    side = point["impl"].rsplit("-", 1)[1]
    point["summary"] = {
        "msgs_per_s": summarize([r["msgs_per_s"] for r in good]),
        "cpu_us_per_msg": summarize([r[f"{side}_cpu_us"] for r in good]),
    }
    return point


def _median(point: Optional[dict[str, Any]], key: str) -> Optional[float]:
    if point is None or point.get("status") != "ok":
        return None
    value: float = point["summary"][key]["median"]
    return value


def _floor(by_key: dict[tuple[str, str, int], dict[str, Any]], placements: list[str], sizes: list[int]) -> list[str]:
    """The table of the pairs against the raw TCP echo, their ceiling."""
    from .runner import size_label

    if not any(key[1] == RAW for key in by_key):
        return []
    lines = [
        "",
        "Against the floor: a raw TCP echo between the same two processes' placement (blocking sockets, a"
        " thread per connection on the server side, no WebSocket work), the most one connection of"
        " request-response between two Python processes gets. Share: a pair's msgs/s over the raw echo's.",
        "",
        "| processes on | size | raw TCP msgs/s | raw TCP CPU µs | wsfast.sync pair msgs/s | share"
        " | websockets.sync pair msgs/s | share |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for placement, size in ((pl, sz) for pl in placements for sz in sizes):
        floor = by_key.get((placement, RAW, size))
        raw, cpu = _median(floor, "msgs_per_s"), _median(floor, "cpu_us_per_msg")
        cells = [placement, size_label(size), f"{raw:,.0f}" if raw else "-", f"{cpu:.1f}" if cpu else "-"]
        for lib in ("wsfast", "websockets"):
            rate = _median(by_key.get((placement, f"{lib}-sync-pair", size)), "msgs_per_s")
            cells += [f"{rate:,.0f}" if rate else "-", f"{rate / raw:.0%}" if rate and raw else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def markdown(points: list[dict[str, Any]], config: dict[str, Any], title: str) -> list[str]:
    """The scenario's section of results.md: both sides, with ratios."""
    from .runner import size_label

    by_key = {(p["loop"], p["impl"], p["size"]): p for p in points}
    sizes = sorted({p["size"] for p in points})
    placements = [placement for placement in PLACEMENTS if any(p["loop"] == placement for p in points)]
    lines = [
        f"## {title}",
        "",
        f"One connection, request-response, median of {config['runs']} runs of {config['duration']} s per cell"
        " (implementations alternating). Server side: the same wsfast.sync client against each server; client"
        " side: each client against the same wsfast.sync server; pair: each library's client against its own"
        " server. CPU: user + system time of the side under test per round trip (pair: of both processes)."
        " Ratio: wsfast.sync over websockets.sync (msgs/s), websockets.sync over wsfast.sync (CPU). Processes"
        " on 2 cores: the side under test on one, its counterpart on the other (every round trip then waits"
        " for two cross-core wake-ups); on 1 core: both on the same one (the rate is then the inverse of the"
        " CPU time of both sides).",
        "",
        "| processes on | side | size | wsfast.sync msgs/s | websockets.sync msgs/s | ratio | wsfast.sync CPU µs"
        " | websockets.sync CPU µs | ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for placement, side, size in ((pl, sd, sz) for pl in placements for sd in SIDES for sz in sizes):
        mine = by_key.get((placement, f"wsfast-sync-{side}", size))
        theirs = by_key.get((placement, f"websockets-sync-{side}", size))
        rate, their_rate = _median(mine, "msgs_per_s"), _median(theirs, "msgs_per_s")
        cpu, their_cpu = _median(mine, "cpu_us_per_msg"), _median(theirs, "cpu_us_per_msg")
        cells = [
            placement,
            "client + server" if side == "pair" else side,
            size_label(size),
            f"{rate:,.0f}" if rate else "-",
            f"{their_rate:,.0f}" if their_rate else "-",
            f"{rate / their_rate:.2f}x" if rate and their_rate else "-",
            f"{cpu:.1f}" if cpu else "-",
            f"{their_cpu:.1f}" if their_cpu else "-",
            f"{their_cpu / cpu:.2f}x" if cpu and their_cpu else "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += _floor(by_key, placements, sizes)
    for p in points:
        if p["status"] != "ok" or p["note"]:
            lines.append(f"\n- {LABELS[p['impl']]} {size_label(p['size'])} ({p['loop']}): {p['note']}")
    return lines
