"""Instructions per read of a server's echo path, counted by valgrind.

Time on a shared machine moves by 20 % from run to run; the number of
instructions does not. This counts, with ``valgrind --tool=callgrind``, the
instructions of one ``buffer_updated`` call of an open wsfast server
connection (the socket taken away, as in ``bench/server_path.py``: a fake
transport whose ``write`` only counts) that echoes ``--per-read`` masked
binary messages of ``--size`` bytes, and of the raw TCP echo's
``buffer_updated`` (no WebSocket work: a memoryview slice and a write) with
the same fake transport. Each figure is (instructions of N calls - those of
0 calls) / N, so start-up is left out.

Run: ``PYTHONPATH=src python bench/instructions.py [--size 64] [--per-read 1]``
(``WSFAST_PURE_PYTHON=1`` for the fallback codec). Needs valgrind.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys

CALLS = 20_000


def _raw_echo(calls: int, size: int) -> None:
    from server_path import _FakeTransport  # type: ignore[import-not-found]

    from wsfast.benchmark._common import frame, payload

    view = memoryview(bytearray(262144))
    wire = frame(payload(size), masked=True)
    view[: len(wire)] = wire
    transport = _FakeTransport()

    class Echo(asyncio.BufferedProtocol):
        def get_buffer(self, sizehint: int) -> memoryview:
            return view

        def buffer_updated(self, nbytes: int) -> None:
            transport.write(view[:nbytes])

    read = Echo().buffer_updated
    for _ in range(1000 + calls):
        read(len(wire))


def _wsfast_echo(calls: int, size: int, per_read: int) -> None:
    from server_path import _Echo, _FakeTransport  # type: ignore[import-not-found]

    from wsfast.asyncio import create_server
    from wsfast.benchmark._common import frame, payload, upgrade_request

    async def main() -> None:
        server = await create_server(lambda ws, request: _Echo(), "127.0.0.1", 0, deflate=None, ping_interval=None)
        ws = server._protocol()
        ws.connection_made(_FakeTransport())
        head = upgrade_request("127.0.0.1", 1)
        ws._view[: len(head)] = head
        ws.buffer_updated(len(head))
        wire = frame(payload(size), masked=True) * per_read
        ws._view[: len(wire)] = wire
        read = ws.buffer_updated
        for _ in range(1000 + calls):
            read(len(wire))
        ws._cancel_timer()
        server.close()

    asyncio.run(main())


def _count(args: list[str]) -> int:
    """Instructions of this script run with ``args`` under callgrind."""
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, __file__, *args]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    match = re.search(r"Collected : (\d+)", result.stderr)
    if match is None:
        raise RuntimeError(f"no instruction count in valgrind's output:\n{result.stderr[-2000:]}")
    return int(match.group(1))


def _per_call(kind: str, size: int, per_read: int) -> float:
    base = _count(["--run", kind, "--calls", "0", "--size", str(size), "--per-read", str(per_read)])
    full = _count(["--run", kind, "--calls", str(CALLS), "--size", str(size), "--per-read", str(per_read)])
    return (full - base) / CALLS


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--per-read", type=int, default=1, help="messages in each read (default 1)")
    parser.add_argument("--run", choices=["raw", "wsfast"], help=argparse.SUPPRESS)  # the counted child
    parser.add_argument("--calls", type=int, default=CALLS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    if args.run == "raw":
        _raw_echo(args.calls, args.size)
        return 0
    if args.run == "wsfast":
        _wsfast_echo(args.calls, args.size, args.per_read)
        return 0
    import wsfast

    raw = _per_call("raw", args.size, 1)
    mine = _per_call("wsfast", args.size, args.per_read)
    codec = f"{wsfast.IMPLEMENTATION} codec"
    print(f"wsfast {wsfast.__version__}, {codec}, {args.size} B binary echo, {args.per_read} per read")
    print(f"{raw:10,.0f} instructions per read: raw TCP echo (1 message per read)")
    print(f"{mine:10,.0f} instructions per read: wsfast ({mine / args.per_read:,.0f} per message)")
    extra = mine / args.per_read - raw
    print(f"{extra:10,.0f} instructions of WebSocket work per message over the raw echo")
    return 0


if __name__ == "__main__":
    sys.exit(main())
