"""``wsfast bench --scenarios sync``: a tiny run of wsfast.sync against
websockets.sync, both sides, and its report."""

from __future__ import annotations

import pytest

from wsfast.benchmark import report, sync
from wsfast.benchmark.runner import Config, run_suite


def test_sync_scenario() -> None:
    pytest.importorskip("websockets.sync.server")
    lines: list[str] = []
    config = Config(
        sizes=(64,),
        loops=("asyncio",),
        peers=("wsfast", "websockets"),
        scenarios=("sync",),
        runs=1,
        duration=0.05,
        command="test",
        progress=lines.append,
    )
    data = run_suite(config)
    assert {(p["loop"], p["impl"]) for p in data["points"]} == {
        (placement, impl) for placement in sync.PLACEMENTS for impl in sync.IMPLS
    }
    for point in data["points"]:
        assert point["status"] == "ok", point["note"]
        assert point["summary"]["msgs_per_s"]["median"] > 0
        assert point["summary"]["cpu_us_per_msg"]["median"] > 0
    text = report.markdown(data)
    assert "## Threads: wsfast.sync against websockets.sync, 1 connection" in text
    for placement in sync.PLACEMENTS:
        for side in ("server", "client", "client + server"):
            assert f"| {placement} | {side} | 64 B |" in text
    assert any("sync (1 core) 64 wsfast-sync-client run 1:" in line for line in lines)
    assert "Against the floor: a raw TCP echo" in text
    for placement in sync.PLACEMENTS:
        row = next(line for line in text.splitlines() if line.startswith(f"| {placement} | 64 B | ") and "%" in line)
        assert row.count("%") == 2
