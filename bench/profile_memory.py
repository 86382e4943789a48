"""Where a server's bytes per connection go: one server of ``wsfast bench``
under tracemalloc, held connections from a ``c100k`` loader process.

The server under test runs in this process (its library's defaults,
keepalive included). The loader opens ``--connections`` connections, each
sending one 64 B message and getting it back (permessage-deflate with
``--deflate``, TLS with ``--tls``). Prints the RSS growth per connection, the
Python allocations per connection (tracemalloc, by line, over as many
connections again), the objects that
appeared (by type, with their ``sys.getsizeof``), and what tracemalloc does
not see (RSS minus traced: C allocations outside Python's allocators, such as
OpenSSL's)::

    PYTHONPATH=src python bench/profile_memory.py --impl wsfast-serve --connections 2000
    PYTHONPATH=src python bench/profile_memory.py --impl wsfast --deflate
    PYTHONPATH=src python bench/profile_memory.py --impl wsfast --deflate --release

``--release`` then frees the permessage-deflate state of every server
connection (the keepalive's sweep, called twice) and reads the RSS again;
opens as many connections again (is the freed memory reused?), releases
them too, and reads the RSS once more after glibc's ``malloc_trim(0)``:
whether freed zlib memory leaves the process.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import ctypes
import gc
import os
import ssl
import sys
import tempfile
import time
import tracemalloc
from typing import Any, Awaitable, Callable, Optional

from wsfast.benchmark._common import import_optional, loop_factory, proc_rss_bytes
from wsfast.benchmark.runner import Worker
from wsfast.benchmark.servers import SERVERS


def _tls(directory: str) -> tuple[ssl.SSLContext, str]:
    ca = import_optional("trustme").CA()
    cafile, certfile = os.path.join(directory, "ca.pem"), os.path.join(directory, "server.pem")
    ca.cert_pem.write_to_path(cafile)
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(certfile)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certfile)
    return context, cafile


def _types() -> collections.Counter[str]:
    gc.collect()
    return collections.Counter(type(o).__qualname__ for o in gc.get_objects())


def _sizes() -> dict[str, int]:
    sizes: dict[str, int] = {}
    for o in gc.get_objects():
        sizes.setdefault(type(o).__qualname__, sys.getsizeof(o))
    return sizes


def _malloc_trim() -> Optional[int]:
    """glibc's ``malloc_trim(0)`` (returns 1 if memory went back to the
    system); ``None`` elsewhere."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    return int(trim(0))


def _sweep() -> tuple[int, int, int]:
    """The keepalive's sweep over every server connection, twice (the first
    call only clears the "used" flag): (connections, freed at the first,
    freed at the second)."""
    from wsfast.protocol import Connection

    gc.collect()
    connections = [o for o in gc.get_objects() if isinstance(o, Connection)]
    # trim=False: the trim is measured on its own below
    first = sum(conn.release_idle_memory(trim=False) for conn in connections)
    second = sum(conn.release_idle_memory(trim=False) for conn in connections)
    gc.collect()
    return len(connections), first, second


async def _release(rss: int, n: int, ask: Callable[[int], Awaitable[None]]) -> None:
    """Release the permessage-deflate state of every server connection and
    read the RSS; open ``n`` more connections (one message each way: do they
    reuse the freed memory?); release again, then malloc_trim."""
    pid = os.getpid()
    count, first, second = _sweep()
    released = (proc_rss_bytes(pid) or 0) - rss
    print(
        f"release: {count} connections, {first} freed at the first sweep, {second} at the second; "
        f"RSS growth {released / n:,.0f} B per connection after it"
    )
    await ask(n)
    await asyncio.sleep(0.3)
    more = (proc_rss_bytes(pid) or 0) - rss
    print(f"{n} more connections, just used, on the freed memory: RSS growth {(more - released) / n:,.0f} B each")
    _sweep()
    after = (proc_rss_bytes(pid) or 0) - rss
    print(f"all released again: RSS growth {after / (2 * n):,.0f} B per connection ({2 * n} connections)")
    start = time.perf_counter()
    trimmed = _malloc_trim()
    elapsed = time.perf_counter() - start
    if trimmed is None:
        print("malloc_trim: not available (not glibc)\n")
    else:
        after = (proc_rss_bytes(pid) or 0) - rss
        print(f"malloc_trim(0) returned {trimmed} in {elapsed * 1000:.1f} ms;", end=" ")
        print(f"RSS growth {after / (2 * n):,.0f} B per connection after it\n")


async def _profile(args: argparse.Namespace, directory: str) -> None:
    tls: Optional[ssl.SSLContext] = None
    cafile = ""
    if args.tls:
        tls, cafile = _tls(directory)
    port, description = await SERVERS[args.impl]("echo", tls, args.deflate, True)
    print(f"server: {description}", file=sys.stderr)
    spec: dict[str, Any] = {
        "role": "c100k-loader",
        "loop": "uvloop",
        "port": port,
        "raw": args.impl == "raw",
        "app": "echo",
        "deflate": args.deflate,
        "cafile": cafile,
        "source": "127.0.9.2",
    }
    loader = Worker(spec, None)
    loop = asyncio.get_running_loop()
    try:
        error = await loop.run_in_executor(None, loader.start)
        if error:
            raise SystemExit(f"the loader does not start: {error}")

        async def ask(count: int) -> None:
            answer = await loop.run_in_executor(None, loader.request, {"op": "open", "count": count}, 300.0)
            if "error" in answer:
                raise SystemExit(answer["error"])

        await ask(50)  # warm-up
        await asyncio.sleep(0.3)
        n = args.connections
        rss = proc_rss_bytes(os.getpid()) or 0
        await ask(n)  # untraced: tracemalloc's own bookkeeping would inflate the RSS
        await asyncio.sleep(0.3)
        grown = (proc_rss_bytes(os.getpid()) or 0) - rss
        if args.release:
            await _release(rss, n, ask)
        tracemalloc.start(args.frames)
        types = _types()
        before, traced = tracemalloc.take_snapshot(), tracemalloc.get_traced_memory()[0]
        await ask(n)
        await asyncio.sleep(0.3)
        after, traced = tracemalloc.take_snapshot(), tracemalloc.get_traced_memory()[0] - traced
        appeared = _types() - types
        print(f"RSS growth {grown / n:,.0f} B per connection; traced by tracemalloc {traced / n:,.0f} B;")
        print(f"not traced (C allocations outside Python's allocators, fragmentation) {(grown - traced) / n:,.0f} B\n")
        print("tracemalloc, bytes per connection by line:")
        for stat in after.compare_to(before, "traceback" if args.frames > 1 else "lineno")[: args.top]:
            if stat.size_diff / n < 8:
                break
            where = " <- ".join(f"{f.filename.split('site-packages/')[-1]}:{f.lineno}" for f in stat.traceback)
            print(f"  {stat.size_diff / n:8,.0f} B  {stat.count_diff / n:5.1f} blocks  {where}")
        sizes = _sizes()
        print("\nobjects per connection (gc-tracked), with sys.getsizeof of one:")
        for name, count in appeared.most_common(args.top):
            if count < n / 2:
                break
            print(f"  {count / n:5.2f} x {name:40} {sizes.get(name, 0):6,} B")
    finally:
        await loop.run_in_executor(None, loader.stop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--impl", default="wsfast", choices=sorted(SERVERS))
    parser.add_argument("--loop", default="uvloop", choices=("asyncio", "uvloop"))
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--deflate", action="store_true")
    parser.add_argument("--tls", action="store_true")
    parser.add_argument(
        "--release",
        action="store_true",
        help="then release every server connection's deflate state (Connection.release_idle_memory, twice) "
        "and read the RSS again, and after glibc's malloc_trim(0)",
    )
    parser.add_argument("--frames", type=int, default=1, help="traceback depth (1: by line)")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        runner = asyncio.Runner(loop_factory=loop_factory(args.loop))
        with runner:
            runner.run(_profile(args, directory))


if __name__ == "__main__":
    main()
