"""Where a server's time goes: one server of ``wsfast bench`` under cProfile.

The server under test runs in this process, on the chosen event loop, with
cProfile enabled during one request-response run of the benchmark's fixed
client (a subprocess, as in ``wsfast bench``). Prints the run's figures, the
functions by own time with their cost per message, and saves the profile
for ``python -m pstats`` or snakeviz::

    PYTHONPATH=src python bench/profile_server.py --impl wsfast --size 64 --connections 100
    PYTHONPATH=src python bench/profile_server.py --impl picows --loop asyncio --save picows.prof

cProfile slows down Python code (not C code) several times over: read the
shares and the per-message costs side by side with ``wsfast bench`` figures,
not as throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import sys
from typing import Any

from wsfast.benchmark._common import loop_factory
from wsfast.benchmark.runner import Worker
from wsfast.benchmark.servers import SERVERS


async def _profile(args: argparse.Namespace, profiler: cProfile.Profile) -> dict[str, Any]:
    port, description = await SERVERS[args.impl]("echo", None, False, False)
    print(f"server: {description}, port {port}, pid {os.getpid()}", file=sys.stderr)
    driver = Worker({"role": "driver", "loop": "uvloop"}, None)
    error = driver.start()
    if error:
        raise SystemExit(f"the benchmark client does not start: {error}")
    cmd = {
        "op": "rr",
        "port": port,
        "raw": args.impl == "raw",
        "peer_pid": os.getpid(),
        "connections": args.connections,
        "size": args.size,
        "warmup": 0.2,
        "duration": args.seconds,
        "min_messages": args.connections,
        "max_messages": 10_000_000,
        "max_seconds": 10 * args.seconds,
        "grace": 30.0,
    }
    loop = asyncio.get_running_loop()
    try:
        profiler.enable()
        result: dict[str, Any] = await loop.run_in_executor(None, driver.request, cmd, 120 + 10 * args.seconds)
        profiler.disable()
    finally:
        driver.stop()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--impl", default="wsfast", choices=sorted(SERVERS))
    parser.add_argument("--loop", default="uvloop", choices=["asyncio", "uvloop"])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=3.0, help="counted part of the run")
    parser.add_argument("--top", type=int, default=25, help="functions to print")
    parser.add_argument("--save", help="write the profile here")
    args = parser.parse_args()
    profiler = cProfile.Profile()
    loop = loop_factory(args.loop)()
    try:
        result = loop.run_until_complete(_profile(args, profiler))
    finally:
        loop.close()
    if "error" in result:
        print(f"run failed: {result['error']}", file=sys.stderr)
        return 1
    messages = result["messages"] * (1 + 0.2 / result["seconds"])  # the warm-up was profiled too
    print(
        f"{args.impl} on {args.loop}, {args.connections} connections x {args.size} B under cProfile:"
        f" {result['msgs_per_s']:,.0f} msg/s, p50 {result['p50_us']:.0f} µs,"
        f" server CPU {result['server_cpu']:.0%}, client CPU {result['client_cpu']:.0%}"
    )
    stats = pstats.Stats(profiler)
    total = sum(entry[2] for entry in stats.stats.values())  # type: ignore[attr-defined]
    rows = sorted(stats.stats.items(), key=lambda item: -item[1][2])  # type: ignore[attr-defined]
    print(f"\n{'own %':>6} {'ns/msg':>8} {'calls/msg':>9}  function (own time; cumulative ns/msg)")
    for (filename, line, name), (_, calls, own, cumulative, _) in rows[: args.top]:
        where = f"{os.path.basename(filename)}:{line}({name})" if line else name
        print(
            f"{own / total:6.1%} {own / messages * 1e9:8.0f} {calls / messages:9.2f}  {where}"
            f"  [{cumulative / messages * 1e9:.0f}]"
        )
    print(f"\nprofiled time per message: {total / messages * 1e9:.0f} ns (messages: {messages:,.0f})")
    if args.save:
        stats.dump_stats(args.save)
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(15)
    print(out.getvalue(), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
