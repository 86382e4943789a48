#!/usr/bin/env python3
"""The same ASGI echo application under uvicorn with three WebSocket
implementations: ``wsfast.uvicorn:WSFastProtocol``, uvicorn's own
``websockets-sansio`` and ``wsproto``.

    python bench/uvicorn_echo.py [--sizes 64,65536] [--connections 100] [--runs 5] [--duration 3]

For each implementation and size, a uvicorn server process (``--loop
asyncio``, ``--http h11`` or ``httptools``, no access log, no keepalive
pings, permessage-deflate off) is driven by one client process: wsfast's
callback client, ``--connections`` connections each sending a binary message
and sending the next as soon as the echo is back. A point is the median of
``--runs`` runs of ``--duration`` seconds (after a warm-up), with the
spread; the client's CPU share shows it is not the bottleneck. Server and
client are pinned to separate cores when there are two or more.

Output: a markdown table of messages per second with each implementation's
ratio to the fastest of uvicorn's own two, and ``--json FILE``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

HERE = Path(__file__).resolve().parent
IMPLEMENTATIONS = {
    "wsfast": "wsfast.uvicorn:WSFastProtocol",
    "websockets-sansio": "websockets-sansio",
    "wsproto": "wsproto",
}

APP = """
async def app(scope, receive, send):
    if scope["type"] != "websocket":
        return
    await receive()
    await send({"type": "websocket.accept"})
    while True:
        event = await receive()
        if event["type"] == "websocket.disconnect":
            return
        if event.get("bytes") is not None:
            await send({"type": "websocket.send", "bytes": event["bytes"]})
        else:
            await send({"type": "websocket.send", "text": event["text"]})
"""

CLIENT = '''
import asyncio, json, os, sys, time
from wsfast.asyncio import Listener, create_connection

SERVER_PID = int(sys.argv[6])
TICK = os.sysconf("SC_CLK_TCK")

def server_cpu():
    """The server process's user + system CPU seconds (Linux /proc)."""
    with open(f"/proc/{SERVER_PID}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK

async def main(port, size, conns, warmup, duration):
    payload = b"x" * size
    count = 0
    stop = False

    class Echo(Listener):
        def on_open(self, ws):
            self.ws = ws
            ws.send_binary(payload)

        def on_binary(self, data):
            nonlocal count
            count += 1
            if not stop:
                self.ws.send_binary(payload)

    url = f"ws://127.0.0.1:{port}/"
    wss = [await create_connection(Echo(), url, deflate=None, max_message_size=None) for _ in range(conns)]
    await asyncio.sleep(warmup)
    c0, t0, cpu0, s0 = count, time.perf_counter(), time.process_time(), server_cpu()
    await asyncio.sleep(duration)
    c1, t1, cpu1, s1 = count, time.perf_counter(), time.process_time(), server_cpu()
    stop = True
    n, wall = c1 - c0, t1 - t0
    print(json.dumps({
        "messages_per_s": n / wall,
        "client_cpu": (cpu1 - cpu0) / wall,
        "server_cpu": (s1 - s0) / wall,
        "server_cpu_us_per_message": (s1 - s0) / max(n, 1) * 1e6,
    }))
    for ws in wss:
        ws.close()
    await asyncio.sleep(0.2)

asyncio.run(main(*map(int, sys.argv[1:4]), *map(float, sys.argv[4:6])))
'''


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pin(core: int) -> list[str]:
    cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
    return ["taskset", "-c", str(sorted(cores)[core])] if len(cores) >= 2 and _has("taskset") else []


def _has(command: str) -> bool:
    return any((Path(p) / command).exists() for p in os.environ.get("PATH", "").split(os.pathsep))


def _wait_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"uvicorn did not listen on {port} within {timeout} s")


def run_point(impl: str, size: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    port = _free_port()
    server_argv = _pin(0) + [
        sys.executable, "-m", "uvicorn", "app:app", "--port", str(port), "--host", "127.0.0.1",
        "--ws", IMPLEMENTATIONS[impl], "--loop", "asyncio", "--http", args.http, "--no-access-log",
        "--log-level", "warning", "--ws-ping-interval", "0", "--ws-max-size", str(max(size, 1 << 20) * 2),
        "--ws-per-message-deflate", "false",
    ]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(workdir), *sys.path[1:]]))
    server = subprocess.Popen(server_argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL)
    try:
        _wait_port(port, 20)
        client_argv = _pin(1) + [
            sys.executable, str(workdir / "client.py"), str(port), str(size), str(args.connections),
            str(args.warmup), str(args.duration), str(server.pid),  # taskset execs: same PID
        ]  # fmt: skip
        limit = args.warmup + args.duration + 60
        out = subprocess.run(client_argv, env=env, capture_output=True, text=True, timeout=limit, check=True)
        result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        return result
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="64,65536", help="message sizes in bytes, comma-separated")
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5, help="runs per point (the median is reported)")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds measured per run")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring")
    parser.add_argument("--http", default="httptools", choices=("h11", "httptools"), help="uvicorn's HTTP parser")
    parser.add_argument("--impls", default=",".join(IMPLEMENTATIONS))
    parser.add_argument("--json", default=None, help="write the results to this file")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    impls = [i.strip() for i in args.impls.split(",")]
    workdir = Path(os.environ.get("TMPDIR", "/tmp")) / f"wsfast-uvicorn-bench-{os.getpid()}"
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "app.py").write_text(APP)
    (workdir / "client.py").write_text(CLIENT)

    results: dict[str, dict[int, dict[str, Any]]] = {impl: {} for impl in impls}
    for size in sizes:
        for run in range(args.runs):
            for impl in impls:  # interleaved, so a noisy moment hits every implementation
                point = run_point(impl, size, args, workdir)
                entry = results[impl].setdefault(size, {"runs": [], "client_cpu": [], "server_us": []})
                entry["runs"].append(point["messages_per_s"])
                entry["client_cpu"].append(point["client_cpu"])
                entry["server_us"].append(point["server_cpu_us_per_message"])
                print(
                    f"[{size} B run {run + 1}/{args.runs}] {impl}: {point['messages_per_s']:,.0f} msg/s"
                    f" (server CPU {point['server_cpu']:.0%}, {point['server_cpu_us_per_message']:.1f} us/msg;"
                    f" client CPU {point['client_cpu']:.0%})",
                    file=sys.stderr,
                    flush=True,
                )
    for impl in impls:
        for point in results[impl].values():
            point["median"] = statistics.median(point["runs"])
            point["server_us_median"] = statistics.median(point["server_us"])

    lines = [
        f"uvicorn ASGI echo, {args.connections} connections, request-response per connection, "
        f"--loop asyncio --http {args.http}; median of {args.runs} runs of {args.duration:g} s (min-max)",
        "",
        "| implementation | " + " | ".join(f"{s} B" for s in sizes) + " |",
        "|---|" + "---|" * len(sizes),
    ]
    for impl in impls:
        cells = []
        for size in sizes:
            point = results[impl][size]
            peers = [results[p][size]["median"] for p in ("websockets-sansio", "wsproto") if p in results]
            ratio = f" ({point['median'] / max(peers):.2f}x)" if peers else ""
            us = point["server_us_median"]
            cells.append(
                f"{point['median']:,.0f} msg/s{ratio} [{min(point['runs']):,.0f}-{max(point['runs']):,.0f}],"
                f" {us:.1f} us server CPU/msg"
            )
        lines.append(f"| {impl} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "(ratio: to the faster of uvicorn's websockets-sansio and wsproto at the same size; server CPU per"
        " message: the uvicorn process's user+system time over the messages echoed, less sensitive to a noisy"
        " machine than the rate)"
    )
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps({"settings": vars(args), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
