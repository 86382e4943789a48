#!/usr/bin/env python3
"""The Autobahn TestSuite cases (kosoku) against websockets and wsproto echo
servers, unpatched and patched by wsfast.accelerate(): no case may get worse.

    python tests/integrations/kosoku_compare.py                   # all 517 cases, both libraries
    python tests/integrations/kosoku_compare.py --lib wsproto -i '1.*' -i '5.*'
    python tests/integrations/kosoku_compare.py --serve wsproto --accelerate   # just the echo server

A run is one library, one mode (unpatched or patched): an echo server in a
child process (``--serve``; it prints ``READY <port>``) and kosoku's fuzzing
client against it; the two modes of a library run at the same time. Each
case gets a severity from kosoku's report (``index.json``): 0 for OK or
INFORMATIONAL, 1 NON-STRICT, 2 UNIMPLEMENTED, 3 FAILED (or ERROR, or a
closing handshake kosoku does not pass), 4 no result. A case is *worse* when
its patched severity is higher than its unpatched one, and again so when
that case alone is run once more in both modes (a timing-sensitive case can
flip once on a loaded machine). The exit status is 1 if any case is worse.

The echo servers: websockets' asyncio ``serve`` (no size limit, no
keepalive, permessage-deflate), and an asyncio protocol driving
``wsproto.WSConnection`` (permessage-deflate offered back when asked). Every
process started here is stopped by its PID, every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional, Union

LIBRARIES = ("websockets", "wsproto")
SEVERITY = {"OK": 0, "INFORMATIONAL": 0, "NON-STRICT": 1, "UNIMPLEMENTED": 2}
FAILED, MISSING = 3, 4
PASSING_CLOSE = ("OK", "INFORMATIONAL")
SRC = Path(__file__).resolve().parents[2] / "src"

# ---------------------------------------------------------------- echo servers


async def _serve_websockets(host: str) -> tuple[Any, int]:
    import websockets
    from websockets.asyncio.server import serve

    async def echo(ws: Any) -> None:
        try:
            async for message in ws:
                await ws.send(message)
        except websockets.ConnectionClosed:
            pass

    server = await serve(echo, host, 0, max_size=None, ping_interval=None, compression="deflate")
    return server, server.sockets[0].getsockname()[1]


class _WsprotoEcho(asyncio.Protocol):
    """An echo server connection on wsproto's sans-I/O core."""

    def __init__(self) -> None:
        from wsproto import ConnectionType, WSConnection

        self.conn = WSConnection(ConnectionType.SERVER)
        self.parts: list[Union[str, bytes]] = []
        self.transport: Optional[asyncio.Transport] = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        from wsproto.connection import ConnectionState
        from wsproto.events import AcceptConnection, CloseConnection, Message, Ping, Request
        from wsproto.extensions import PerMessageDeflate
        from wsproto.utilities import LocalProtocolError, RemoteProtocolError

        assert self.transport is not None
        try:
            self.conn.receive_data(data)
            for event in self.conn.events():
                if isinstance(event, Request):
                    self.transport.write(self.conn.send(AcceptConnection(extensions=[PerMessageDeflate()])))
                elif isinstance(event, Message):
                    self.parts.append(event.data)
                    if event.message_finished:
                        whole = "".join(self.parts) if isinstance(event.data, str) else b"".join(self.parts)  # type: ignore[arg-type]
                        self.parts = []
                        self.transport.write(self.conn.send(Message(data=whole)))
                elif isinstance(event, Ping):
                    self.transport.write(self.conn.send(event.response()))
                elif isinstance(event, CloseConnection):
                    if self.conn.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
                        self.transport.write(self.conn.send(event.response()))
                    self.transport.close()
                    return
        except (LocalProtocolError, RemoteProtocolError):
            self.transport.close()


async def _serve_wsproto(host: str) -> tuple[Any, int]:
    server = await asyncio.get_running_loop().create_server(_WsprotoEcho, host, 0)
    return server, server.sockets[0].getsockname()[1]


def serve_main(library: str, accelerate: bool, host: str, timeout: float) -> int:
    """Run one echo server until SIGTERM or ``timeout``; prints ``READY <port> <what>``."""
    what = "unpatched"
    if accelerate:
        import wsfast

        (result,) = wsfast.accelerate(library, allow_pure_python=True)
        if not result.ok:
            print(f"kosoku_compare: {library} not patched: {result.skipped}", file=sys.stderr)
            return 3
        what = "patched:" + ",".join(result.patched)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = loop.create_future()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
        start = _serve_websockets if library == "websockets" else _serve_wsproto
        server, port = await start(host)
        print(f"READY {port} {library} {what}", flush=True)
        try:
            await asyncio.wait_for(stop, timeout)
        except asyncio.TimeoutError:
            pass
        server.close()

    asyncio.run(main())
    return 0


# ---------------------------------------------------------------- runs


def _kosoku() -> list[str]:
    script = Path(sys.executable).parent / "kosoku"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from kosoku._cli import main; sys.argv[0] = 'kosoku'; main()"]


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))])
    return env


def _stop(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM, then SIGKILL: by PID, bounded."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@dataclasses.dataclass
class Run:
    library: str
    patched: bool
    outdir: Path
    verdicts: dict[str, tuple[int, str]] = dataclasses.field(default_factory=dict)  # case -> (severity, text)
    problems: list[str] = dataclasses.field(default_factory=list)


def run_cases(library: str, patched: bool, include: list[str], outdir: Path, timeout: float) -> Run:
    """One echo server, one kosoku run; the verdict of every case reported."""
    run = Run(library, patched, outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, __file__, "--serve", library, "--timeout", str(timeout + 60)]
    argv += ["--accelerate"] if patched else []
    with open(outdir / "server.log", "w+") as log:
        server = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=_env())
        try:
            port = _wait_ready(server, log, 60)
            if port is None:
                log.seek(0)
                run.problems.append(f"echo server did not start: {log.read()[-2000:]}")
                return run
            selection = [arg for pattern in include for arg in ("-i", pattern)]
            command = _kosoku() + [f"ws://127.0.0.1:{port}", "-p", "1", "-o", str(outdir / "report"), *selection]
            with open(outdir / "kosoku.log", "w") as klog:
                runner = subprocess.Popen(command, stdout=klog, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
                try:
                    runner.wait(timeout)
                except subprocess.TimeoutExpired:
                    run.problems.append(f"kosoku did not finish within {timeout} s")
                finally:
                    _stop(runner)
        finally:
            _stop(server)
    index = outdir / "report" / "index.json"
    if not index.exists():
        run.problems.append(f"no report at {index}")
        return run
    for cases in json.loads(index.read_text()).values():
        for case_id, entry in cases.items():
            run.verdicts[case_id] = _verdict(entry["behavior"], entry["behaviorClose"])
    return run


def _wait_ready(proc: subprocess.Popen[Any], log: Any, timeout: float) -> Optional[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        log.seek(0)
        for line in log.read().splitlines():
            if line.startswith("READY "):
                return int(line.split()[1])
        time.sleep(0.05)
    return None


def _verdict(behavior: str, close: str) -> tuple[int, str]:
    text = f"{behavior}/{close}"
    if behavior in ("FAILED", "ERROR") or close not in PASSING_CLOSE or behavior not in SEVERITY:
        return FAILED, text
    return SEVERITY[behavior], text


def _sort_key(case_id: str) -> list[int]:
    return [int(part) for part in case_id.split(".")]


@dataclasses.dataclass
class Comparison:
    library: str
    plain: Run
    fast: Run
    worse: list[tuple[str, str, str]]  # case, unpatched verdict, patched verdict (confirmed on a re-run)
    flipped: list[str]  # worse once, not on the re-run

    def report(self) -> str:
        lines = [f"== {self.library}: {len(self.plain.verdicts)} cases unpatched, {len(self.fast.verdicts)} patched"]
        for run in (self.plain, self.fast):
            counts: dict[str, int] = {}
            for _, text in run.verdicts.values():
                counts[text] = counts.get(text, 0) + 1
            mode = "patched  " if run.patched else "unpatched"
            lines.append(f"   {mode}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
            lines += [f"   {mode}: harness: {problem}" for problem in run.problems]
        for case, plain, fast in self.worse:
            lines.append(f"   WORSE {case}: unpatched {plain}, patched {fast}")
        if self.flipped:
            lines.append(f"   worse once, not on the re-run: {' '.join(self.flipped)}")
        lines.append(f"   reports: {self.plain.outdir.parent}")
        return "\n".join(lines)


def _both(library: str, include: list[str], outdir: Path, timeout: float) -> tuple[Run, Run]:
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        plain = pool.submit(run_cases, library, False, include, outdir / "unpatched", timeout)
        fast = pool.submit(run_cases, library, True, include, outdir / "patched", timeout)
        return plain.result(), fast.result()


def _worse(plain: Run, fast: Run, cases: list[str]) -> list[str]:
    missing = (MISSING, "no result")
    return [c for c in cases if fast.verdicts.get(c, missing)[0] > plain.verdicts.get(c, missing)[0]]


def compare(library: str, include: list[str], outdir: Path, timeout: float = 1800.0) -> Comparison:
    """Run the cases against ``library`` unpatched and patched; confirm what got worse."""
    plain, fast = _both(library, include, outdir / "first", timeout)
    cases = sorted(set(plain.verdicts) | set(fast.verdicts), key=_sort_key)
    suspects = _worse(plain, fast, cases)
    confirmed = suspects
    if suspects and not plain.problems and not fast.problems:
        plain2, fast2 = _both(library, suspects, outdir / "recheck", timeout)
        confirmed = _worse(plain2, fast2, suspects)
    missing = (MISSING, "no result")
    worse = [(c, plain.verdicts.get(c, missing)[1], fast.verdicts.get(c, missing)[1]) for c in confirmed]
    return Comparison(library, plain, fast, worse, [c for c in suspects if c not in confirmed])


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lib", action="append", choices=LIBRARIES, help="repeatable; default: both")
    parser.add_argument("-i", "--include", action="append", default=[], help="case id or glob (kosoku's -i)")
    parser.add_argument("--outdir", help="where reports go (default: a temporary directory)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds one kosoku run may take")
    parser.add_argument("--serve", choices=LIBRARIES, help="only run an echo server of this library")
    parser.add_argument("--accelerate", action="store_true", help="with --serve: patched by wsfast.accelerate()")
    parser.add_argument("--host", default="127.0.0.1", help="with --serve")
    args = parser.parse_args(argv)
    if args.serve:
        return serve_main(args.serve, args.accelerate, args.host, args.timeout)
    outroot = Path(args.outdir) if args.outdir else Path(tempfile.mkdtemp(prefix="wsfast-kosoku-compare-"))
    status = 0
    for library in args.lib or LIBRARIES:
        result = compare(library, args.include, outroot / library, args.timeout)
        print(result.report(), flush=True)
        if result.worse or result.plain.problems or result.fast.problems:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
