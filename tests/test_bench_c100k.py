"""``wsfast bench --scenarios c100k``: a tiny real run.

200 connections on one server process (two loader processes), then 400
across two worker processes through Redis (with ``redis-server`` and
redis-py), wsfast's two APIs and the raw TCP echo, in real processes bounded
by the runner's timeouts. Checks that the report has every figure and that
every delivery was counted; never a speed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from wsfast.benchmark import c100k, fanout, report
from wsfast.benchmark.runner import Config, run_suite

COUNT = 200
REDIS = fanout.missing("wsfast-redis") is None
IMPLS = {"raw", "wsfast", "wsfast-serve"}


def tiny(**overrides: Any) -> Config:
    values: dict[str, Any] = {
        "loops": ("asyncio",),
        "peers": ("wsfast",),
        "scenarios": ("c100k",),
        "c100k_counts": (COUNT,),
        "c100k_idle": 150,
        "c100k_handshakes": 50,
        "c100k_concurrency": 10,
        "c100k_active": 20,
        "c100k_echo_rounds": 3,
        "c100k_echo_interval": 0.02,
        "c100k_broadcast_rounds": 2,
        "c100k_per_process": 100,
        "c100k_total": 400 if REDIS else 0,
        "c100k_workers": 2,
        "c100k_rate_seconds": 1.0,
        "c100k_idle_wait": 0.5,  # the figure's path, not wsfast's release (20 s keepalive ticks)
        "command": "test",
    }
    values.update(overrides)
    return Config(**values)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    lines: list[str] = []
    out = tmp_path_factory.mktemp("c100k")
    data = run_suite(tiny(progress=lines.append))
    report.write(data, str(out))
    return {"data": data, "lines": lines, "out": out}


def test_every_figure_of_one_process(results: dict[str, Any]) -> None:
    single = {p["impl"]: p for p in results["data"]["points"] if p["size"] == 0}
    assert set(single) == IMPLS
    for impl, point in single.items():
        assert point["status"] == "ok" and not point["note"], point
        (run,) = point["runs"]
        assert run["fd_limit"] > COUNT and not run["errors"]
        figures = run["figures"]
        variants = ("plain", "tls") if impl == "raw" else ("plain", "deflate", "deflate-idle", "tls")
        for variant in variants:
            assert f"memory.{variant}.{COUNT}" in figures
        # On asyncio's loop "tls" is already the server on asyncio's SSL transport.
        assert f"memory.tls-asyncio.{COUNT}" not in figures
        assert figures["handshake.per_s"] > 0 and 0 < figures["handshake.p50_us"] <= figures["handshake.p99_us"]
        assert figures["echo.round_trips"] == 20 * 3  # every round trip came back
        assert 0 < figures["echo.p50_us"] <= figures["echo.p99_us"]
        assert 0 < figures[f"broadcast.{COUNT}"] <= figures[f"broadcast.{COUNT}.max"]
        assert figures[f"broadcast.{COUNT}.server_cpu_ms"] >= 0


@pytest.mark.skipif(not REDIS, reason="needs redis-server and redis-py")
def test_across_workers(results: dict[str, Any]) -> None:
    across = {p["impl"]: p for p in results["data"]["points"] if p["size"]}
    assert set(across) == {"raw-redis", "wsfast-redis"}
    for point in across.values():
        assert point["status"] == "ok", point
        (run,) = point["runs"]
        assert run["workers"] == 2 and run["clients"] == 400 and run["client_processes"] == 4
        for phase in ("rate", "saturation"):  # every message on every connection
            assert run[phase]["counted"] == run[phase]["deliveries"] == run[phase]["messages"] * 400


def test_report(results: dict[str, Any]) -> None:
    text = (Path(results["out"]) / "results.md").read_text()
    assert "## Many connections: memory, handshakes, echo, broadcast (asyncio)" in text
    assert "Open files are capped at" in text and "RLIMIT_NOFILE" in text
    for title in ("Server RSS growth per connection", "Handshakes:", "Broadcast of one 64 B message"):
        assert title in text
    assert f"| plain @ {COUNT} | deflate @ {COUNT} | deflate, idle 0.5 s @ {COUNT} | tls @ {COUNT} |" in text
    assert "| wsfast (serve, awaitable API) |" in text
    assert "Against the targets of issue 15:" in text and "handshakes/s" in text
    if REDIS:
        assert "400 connections across 2 server worker processes" in text
        assert "| wsfast + Redis Pub/Sub |" in text
    assert "Time per implementation" in text


def test_more_connections_than_the_open_file_limit_fail_clearly() -> None:
    with pytest.raises(c100k.C100kError, match="RLIMIT_NOFILE"):
        c100k.check_fd_limit(tiny(c100k_counts=(10**7,)))
    lines: list[str] = []
    data = run_suite(tiny(c100k_counts=(10**7,), peers=(), progress=lines.append))
    (point,) = data["points"]
    assert point["status"] == "failed" and "RLIMIT_NOFILE" in point["note"]
