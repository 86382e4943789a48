#!/usr/bin/env python3
"""Run the Autobahn TestSuite against wsfast with kosoku, and judge the reports.

    python tests/conformance/run.py                  # the 8 wsfast runs
    python tests/conformance/run.py --runs server-cython,client-cython   # the callback API only
    python tests/conformance/run.py --runs server-cython -i '1.*' -i '5.*'
    python tests/conformance/run.py --peer websockets  # comparison: websockets as server
    python tests/conformance/run.py --peer aiohttp     # comparison: aiohttp as server
    python tests/conformance/run.py --peer ws          # comparison: Node's ws, server and client

kosoku (``pip install kosoku``, Python >= 3.10) runs the 517 Autobahn cases
in one of two modes; a run is one mode against one implementation:

* ``server-*``: wsfast is the **server** (``echo_server.py``); kosoku is the
  fuzzing client: ``kosoku ws://127.0.0.1:PORT -p N -o DIR``;
* ``client-*``: wsfast is the **client** (``echo_client.py``); kosoku is the
  fuzzing server: ``kosoku -m fuzzingserver 127.0.0.1:0 -o DIR``, which the
  client drives through ``/getCaseCount``, ``/runCase?case=N&agent=A`` and
  ``/updateReports``.

``*-cython`` uses the compiled codec (required: the echo peers exit if it is
missing), ``*-python`` the pure-Python one (``WSFAST_PURE_PYTHON=1``).
``*-awaitable`` runs go through the awaitable API (``wsfast.serve`` with an
echo handler, ``wsfast.connect`` with an echo loop) instead of the callback
API, and leave out sections 12 and 13 (permessage-deflate: most of a run's
time, and they test the codec, which the callback-API runs of the same codec
already cover; the awaitable API adds nothing there but a queue).
``*-trio`` runs go through :mod:`wsfast.trio` the same way (``serve`` with
the echo handler, ``connect`` with the echo loop), without the same
sections; so do ``*-sync`` runs through :mod:`wsfast.sync` (threads). The
runs go in parallel processes (``--jobs``), each bounded by ``--timeout``;
every process started here is stopped here, by its PID.

Each run's report (``DIR/index.json`` and one JSON file per case, plus
kosoku's HTML) is read back and every case is put in one category:

* OK, NON-STRICT, INFORMATIONAL, UNIMPLEMENTED: the case's ``behavior``;
* FAILED: ``behavior`` FAILED, or ERROR (the runner could not reach a
  verdict), or a closing handshake that kosoku does not pass (``behaviorClose``
  other than OK / INFORMATIONAL: FAILED, WRONG CODE, UNCLEAN, FAILED BY CLIENT);
* MISSING: a selected case with no result at all (it never ran).

The exit status is 1 if any run has a FAILED or MISSING case, else 0.
``--json FILE`` writes everything (counts, wall times, and the runner's
details of each case that is not OK or INFORMATIONAL) for later reading.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

HERE = Path(__file__).resolve().parent
ECHO_SERVER = HERE / "echo_server.py"
ECHO_CLIENT = HERE / "echo_client.py"
WS_PEER = HERE / "ws_peer.js"
NODE_MODULES = HERE.parent / "interop" / "node_modules"  # npm install in tests/interop

CATEGORIES = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED", "MISSING")
PASSING_CLOSE = ("OK", "INFORMATIONAL")

#: The wsfast runs: name -> (role of the implementation under test, codec, API).
WSFAST_RUNS = {
    "server-cython": ("server", "cython", "callback"),
    "server-python": ("server", "python", "callback"),
    "client-cython": ("client", "cython", "callback"),
    "client-python": ("client", "python", "callback"),
    "server-cython-awaitable": ("server", "cython", "awaitable"),
    "server-python-awaitable": ("server", "python", "awaitable"),
    "client-cython-awaitable": ("client", "cython", "awaitable"),
    "client-python-awaitable": ("client", "python", "awaitable"),
    "server-cython-trio": ("server", "cython", "trio"),
    "server-python-trio": ("server", "python", "trio"),
    "client-cython-trio": ("client", "cython", "trio"),
    "client-python-trio": ("client", "python", "trio"),
    "server-cython-sync": ("server", "cython", "sync"),
    "server-python-sync": ("server", "python", "sync"),
    "client-cython-sync": ("client", "cython", "sync"),
    "client-python-sync": ("client", "python", "sync"),
}
#: Cases the runs through a non-callback API (awaitable, trio, sync) leave
#: out: the permessage-deflate sections, which test the codec (run in full by
#: the callback-API runs of each codec).
AWAITABLE_EXCLUDE = ["12.*", "13.*"]
#: Comparison peers: the roles each is run in.
PEERS = {"websockets": ("server",), "aiohttp": ("server",), "ws": ("server", "client")}


@dataclasses.dataclass
class RunSpec:
    name: str
    role: str  # "server": kosoku is the fuzzing client; "client": kosoku is the fuzzing server
    impl: str  # "cython", "python", or a peer library name
    api: str = "callback"  # wsfast's API under test: "callback", "awaitable", "trio" or "sync"

    @property
    def exclude(self) -> list[str]:
        """Cases this run leaves out whatever the selection."""
        return AWAITABLE_EXCLUDE if self.api != "callback" else []

    @property
    def title(self) -> str:
        what = {
            "cython": "wsfast (compiled codec)",
            "python": "wsfast (pure-Python codec)",
        }.get(self.impl, self.impl)
        if self.api != "callback":
            what += f", {self.api} API (without {', '.join(AWAITABLE_EXCLUDE)})"
        mode = "kosoku fuzzingclient" if self.role == "server" else "kosoku fuzzingserver"
        return f"{what} as {self.role}, {mode}"


@dataclasses.dataclass
class CaseOutcome:
    id: str
    category: str
    behavior: Optional[str] = None
    behavior_close: Optional[str] = None
    details: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class RunResult:
    spec: RunSpec
    wall_time: float = 0.0
    commands: list[str] = dataclasses.field(default_factory=list)
    outdir: str = ""
    agents: list[str] = dataclasses.field(default_factory=list)
    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    cases: list[CaseOutcome] = dataclasses.field(default_factory=list)
    problems: list[str] = dataclasses.field(default_factory=list)  # harness-level trouble

    def ids(self, category: str) -> list[str]:
        return [c.id for c in self.cases if c.category == category]

    @property
    def ok(self) -> bool:
        return not self.counts.get("FAILED") and not self.counts.get("MISSING")


# ---------------------------------------------------------------- case selection


def _sort_key(case_id: str) -> list[int]:
    return [int(p) for p in case_id.split(".")]


def _glob(pattern: str) -> re.Pattern[str]:
    # kosoku's own translation (as Autobahn's): '.' literal, '*' any, anchored at the start.
    return re.compile("^" + pattern.replace(".", r"\.").replace("*", ".*"))


def _matches(case_id: str, pattern: str) -> bool:
    return bool(_glob(pattern).match(case_id)) if "*" in pattern else case_id == pattern


def all_case_ids(python: str = sys.executable) -> list[str]:
    """Every case id kosoku knows, in order (read in a child interpreter:
    importing kosoku.cases patches ``binascii`` and ``sys.path``)."""
    code = "import json, kosoku.cases as c; print(json.dumps(list(c.CASES)))"
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    ids: list[str] = json.loads(out.stdout)
    return ids


def select_cases(ids: list[str], include: list[str], exclude: list[str]) -> list[str]:
    chosen = [i for i in ids if any(_matches(i, p) for p in include)] if include else list(ids)
    chosen = [i for i in chosen if not any(_matches(i, p) for p in exclude)]
    return sorted(set(chosen), key=_sort_key)


# ---------------------------------------------------------------- processes


def kosoku_available() -> bool:
    return importlib.util.find_spec("kosoku") is not None


def _kosoku_command() -> list[str]:
    script = Path(sys.executable).parent / "kosoku"
    if script.exists():
        return [str(script)]
    found = shutil.which("kosoku")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from kosoku._cli import main; sys.argv[0] = 'kosoku'; main()"]


def child_env(pure: bool) -> dict[str, str]:
    """The environment of the echo peers: the wsfast this interpreter would
    import (source tree or installed package) first on the path, and the
    codec chosen by the run, never inherited."""
    env = dict(os.environ)
    env.pop("WSFAST_PURE_PYTHON", None)
    if pure:
        env["WSFAST_PURE_PYTHON"] = "1"
    spec = importlib.util.find_spec("wsfast")
    if spec is not None and spec.origin:
        root = str(Path(spec.origin).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Proc:
    """A child process whose output goes to a log file (read back for a
    line that announces readiness), stopped by its PID."""

    def __init__(self, argv: list[str], log: Path, env: dict[str, str], cwd: Optional[str] = None) -> None:
        self.argv = argv
        self.log = log
        self._file = open(log, "wb")
        self.popen = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=self._file, stderr=subprocess.STDOUT, env=env, cwd=cwd
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait_for_line(self, pattern: str, timeout: float) -> Optional[re.Match[str]]:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log.read_text(errors="replace")
            for line in text.splitlines():
                match = regex.search(line)
                if match:
                    return match
            if self.popen.poll() is not None:
                return None
            time.sleep(0.05)
        return None

    def wait(self, timeout: float) -> Optional[int]:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, grace: float = 10.0) -> Optional[int]:
        """SIGTERM, then SIGKILL after ``grace`` seconds; by PID only."""
        if self.popen.poll() is None:
            try:
                os.kill(self.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            if self.wait(grace) is None:
                try:
                    os.kill(self.popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.wait(grace)
        self._file.close()
        return self.popen.returncode

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _update_reports(host: str, port: int) -> None:
    """Ask kosoku's fuzzing server to stop and write its report, as a client
    that has finished would (used only when the client under test did not)."""
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    request = (
        f"GET /updateReports?agent=harness HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    try:
        with socket.create_connection((host, port), timeout=10) as sock:
            sock.sendall(request.encode())
            sock.recv(4096)
    except OSError:
        pass


# ---------------------------------------------------------------- one run


def run_one(
    spec: RunSpec,
    outroot: Path,
    include: list[str],
    exclude: list[str],
    expected_ids: list[str],
    concurrency: int,
    timeout: float,
) -> RunResult:
    result = RunResult(spec)
    exclude = exclude + spec.exclude
    expected_ids = [i for i in expected_ids if not any(_matches(i, p) for p in spec.exclude)]
    outdir = outroot / spec.name
    if outdir.exists():
        shutil.rmtree(outdir)
    outdir.mkdir(parents=True)
    result.outdir = str(outdir)
    report_dir = outdir / "report"
    selection: list[str] = []
    for pattern in include:
        selection += ["-i", pattern]
    for pattern in exclude:
        selection += ["-x", pattern]
    pure = spec.impl == "python"
    env = child_env(pure)
    env["NODE_PATH"] = str(NODE_MODULES)
    kosoku = _kosoku_command()
    started = time.monotonic()
    procs: list[Proc] = []
    try:
        if spec.role == "server":
            if spec.impl == "ws":
                argv = ["node", str(WS_PEER), "server", str(timeout + 60)]
            else:
                peer = [] if spec.impl in ("cython", "python") else ["--peer", spec.impl]
                argv = [sys.executable, str(ECHO_SERVER), "--port", "0", "--timeout", str(timeout + 60)]
                argv += (["--pure"] if pure else []) + peer + ["--api", spec.api]
            server = Proc(argv, outdir / "echo_server.log", env)
            procs.append(server)
            result.commands.append(" ".join(argv))
            ready = server.wait_for_line(r"^READY (\d+) (\S+)", 60)
            if ready is None:
                result.problems.append(f"echo server did not start:\n{server.tail()}")
                return result
            port = int(ready.group(1))
            argv = kosoku + [f"ws://127.0.0.1:{port}", "-p", str(concurrency), "-o", str(report_dir)] + selection
            runner = Proc(argv, outdir / "kosoku.log", env)
            procs.append(runner)
            result.commands.append(" ".join(argv))
            if runner.wait(timeout) is None:
                result.problems.append(f"kosoku did not finish within {timeout} s")
            code = runner.stop()
            if code not in (0, 1):
                result.problems.append(f"kosoku exited with {code}:\n{runner.tail()}")
            server.stop()
        else:
            argv = kosoku + ["-m", "fuzzingserver", "127.0.0.1:0", "-o", str(report_dir)] + selection
            runner = Proc(argv, outdir / "kosoku.log", env)
            procs.append(runner)
            result.commands.append(" ".join(argv))
            listening = runner.wait_for_line(r"listening on ws://([\d.]+):(\d+)", 60)
            if listening is None:
                result.problems.append(f"kosoku fuzzingserver did not start:\n{runner.tail()}")
                return result
            host, port = listening.group(1), int(listening.group(2))
            if spec.impl == "ws":
                argv = ["node", str(WS_PEER), "client", f"ws://{host}:{port}", str(timeout)]
            else:
                argv = [sys.executable, str(ECHO_CLIENT), "--url", f"ws://{host}:{port}"]
                argv += ["--parallel", str(concurrency), "--timeout", str(timeout)] + (["--pure"] if pure else [])
                argv += ["--api", spec.api]
            client = Proc(argv, outdir / "echo_client.log", env)
            procs.append(client)
            result.commands.append(" ".join(argv))
            if client.wait(timeout + 30) is None:
                result.problems.append(f"echo client did not finish within {timeout} s")
            code = client.stop()
            if code != 0:
                result.problems.append(f"echo client exited with {code}:\n{client.tail()}")
            if runner.wait(60) is None:  # the client never reached /updateReports
                result.problems.append("kosoku still serving after the client ended: sent /updateReports")
                _update_reports(host, port)
                runner.wait(60)
            code = runner.stop()
            if code not in (0, 1):
                result.problems.append(f"kosoku exited with {code}:\n{runner.tail()}")
    finally:
        for proc in procs:
            proc.stop()
        result.wall_time = time.monotonic() - started
        _judge(result, report_dir, expected_ids)
    return result


def _short(value: Any, limit: int = 300) -> Any:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 4] + " ..."


def _judge(result: RunResult, report_dir: Path, expected_ids: list[str]) -> None:
    index_file = report_dir / "index.json"
    index: dict[str, dict[str, Any]] = {}
    if index_file.exists():
        index = json.loads(index_file.read_text())
    elif not result.problems:
        result.problems.append(f"no report at {index_file}")
    result.agents = sorted(index)
    entries: dict[str, dict[str, Any]] = {}
    for agent_cases in index.values():
        entries.update(agent_cases)
    outcomes: list[CaseOutcome] = []
    for case_id in sorted(set(expected_ids) | set(entries), key=_sort_key):
        entry = entries.get(case_id)
        if entry is None:
            outcomes.append(CaseOutcome(case_id, "MISSING"))
            continue
        behavior, close = entry["behavior"], entry["behaviorClose"]
        if behavior in ("FAILED", "ERROR") or close not in PASSING_CLOSE:
            category = "FAILED"
        elif behavior in CATEGORIES:
            category = behavior
        else:
            category = "FAILED"
        outcome = CaseOutcome(case_id, category, behavior, close)
        if category not in ("OK", "INFORMATIONAL"):
            detail_file = report_dir / entry["reportfile"]
            try:
                case = json.loads(detail_file.read_text())
            except (OSError, ValueError):
                case = {}
            outcome.details = {
                "description": _short(case.get("description", "")),
                "expectation": _short(case.get("expectation", "")),
                "result": case.get("result"),
                "resultClose": case.get("resultClose"),
                "expected": _short(case.get("expected")),
                "received": _short(case.get("received")),
                "expectedClose": case.get("expectedClose"),
                "remoteCloseCode": case.get("remoteCloseCode"),
                "remoteCloseReason": case.get("remoteCloseReason"),
                "localCloseCode": case.get("localCloseCode"),
                "wasClean": case.get("wasClean"),
                "wasNotCleanReason": case.get("wasNotCleanReason"),
                "droppedByMe": case.get("droppedByMe"),
                "failedByMe": case.get("failedByMe"),
                "duration_ms": case.get("duration"),
            }
        outcomes.append(outcome)
    result.cases = outcomes
    result.counts = {c: sum(1 for o in outcomes if o.category == c) for c in CATEGORIES}


# ---------------------------------------------------------------- all runs


def run_all(
    specs: list[RunSpec],
    outroot: Path,
    include: Optional[list[str]] = None,
    exclude: Optional[list[str]] = None,
    jobs: int = 4,
    concurrency: int = 1,
    timeout: float = 2400.0,
    progress: bool = True,
) -> list[RunResult]:
    include, exclude = include or [], exclude or []
    expected = select_cases(all_case_ids(), include, exclude)
    outroot.mkdir(parents=True, exist_ok=True)

    def one(spec: RunSpec) -> RunResult:
        if progress:
            print(f"[{spec.name}] started: {spec.title}", file=sys.stderr, flush=True)
        res = run_one(spec, outroot, include, exclude, expected, concurrency, timeout)
        if progress:
            print(f"[{spec.name}] done in {res.wall_time:.1f} s", file=sys.stderr, flush=True)
        return res

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(one, specs))


def format_run(res: RunResult, details: bool = True) -> str:
    lines = [f"== {res.spec.name}: {res.spec.title} -- {res.wall_time:.1f} s wall"]
    if res.agents:
        lines.append(f"   agent(s) in report: {', '.join(res.agents)}")
    header = "   " + " | ".join(f"{c:>13}" for c in CATEGORIES)
    values = "   " + " | ".join(f"{res.counts.get(c, 0):>13}" for c in CATEGORIES)
    lines += [header, values]
    for category in ("NON-STRICT", "UNIMPLEMENTED", "FAILED", "MISSING"):
        ids = res.ids(category)
        if ids:
            lines.append(f"   {category}: {' '.join(ids)}")
    if details:
        for case in res.cases:
            if case.category in ("OK", "INFORMATIONAL", "MISSING"):
                continue
            d = case.details
            lines.append(
                f"   - {case.id} [{case.category}; behavior={case.behavior}, close={case.behavior_close}]"
                f" {d.get('result')} / {d.get('resultClose')}"
            )
            lines.append(f"       case: {d.get('description')}")
            lines.append(f"       expected: {d.get('expected')}")
            lines.append(f"       received: {d.get('received')}")
            lines.append(
                f"       close: peer sent {d.get('remoteCloseCode')} {d.get('remoteCloseReason')!r},"
                f" expected {d.get('expectedClose')}, clean={d.get('wasClean')} ({d.get('wasNotCleanReason')})"
            )
    for problem in res.problems:
        lines.append(f"   harness: {problem}")
    return "\n".join(lines)


def to_json(results: list[RunResult]) -> list[dict[str, Any]]:
    return [
        {
            "name": r.spec.name,
            "title": r.spec.title,
            "wall_time_s": round(r.wall_time, 1),
            "commands": r.commands,
            "outdir": r.outdir,
            "agents": r.agents,
            "counts": r.counts,
            "problems": r.problems,
            "not_ok": [dataclasses.asdict(c) for c in r.cases if c.category not in ("OK", "INFORMATIONAL")],
        }
        for r in results
    ]


def build_specs(runs: Optional[list[str]], peers: Optional[list[str]]) -> list[RunSpec]:
    if peers:
        return [RunSpec(f"{role}-{peer}", role, peer) for peer in dict.fromkeys(peers) for role in PEERS[peer]]
    names = runs or list(WSFAST_RUNS)
    return [RunSpec(name, *WSFAST_RUNS[name]) for name in names]


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--runs", default=None, help=f"comma-separated subset of {','.join(WSFAST_RUNS)} (default: all)"
    )
    parser.add_argument(
        "--peer",
        choices=list(PEERS),
        action="append",
        default=[],
        help="run the cases against this library instead of wsfast (repeatable; for comparison): its echo server,"
        " and for ws its client too",
    )
    parser.add_argument("-i", "--include", action="append", default=[], help="case id or glob (kosoku's -i)")
    parser.add_argument("-x", "--exclude", action="append", default=[], help="case id or glob to leave out")
    parser.add_argument("--jobs", type=int, default=4, help="runs at the same time (processes)")
    parser.add_argument("--concurrency", type=int, default=1, help="cases at the same time within a run")
    parser.add_argument("--timeout", type=float, default=2400.0, help="seconds one run may take")
    parser.add_argument("--outdir", default=None, help="where reports go (default: a temporary directory)")
    parser.add_argument("--json", default=None, help="write the results as JSON to this file")
    parser.add_argument("--brief", action="store_true", help="no per-case details")
    args = parser.parse_args(argv)

    if not kosoku_available():
        print("kosoku is not installed: pip install kosoku (Python >= 3.10)", file=sys.stderr)
        return 2
    if args.runs and args.peer:
        parser.error("--runs and --peer do not go together")
    runs = [r.strip() for r in args.runs.split(",")] if args.runs else None
    for name in runs or ():
        if name not in WSFAST_RUNS:
            parser.error(f"unknown run {name!r}; choose among {', '.join(WSFAST_RUNS)}")
    outroot = Path(args.outdir) if args.outdir else Path(tempfile.mkdtemp(prefix="wsfast-autobahn-"))
    specs = build_specs(runs, args.peer)
    started = time.monotonic()
    results = run_all(specs, outroot, args.include, args.exclude, args.jobs, args.concurrency, args.timeout)
    total = time.monotonic() - started
    for res in results:
        print(format_run(res, details=not args.brief))
        print()
    print(f"reports in {outroot}; {len(results)} run(s) in {total:.1f} s wall")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"total_wall_time_s": round(total, 1), "runs": to_json(results)}, indent=2)
        )
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
