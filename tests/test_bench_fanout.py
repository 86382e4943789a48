"""``wsfast bench --scenarios fanout``: a tiny real run.

One server worker, 50 subscribed clients, the memory hub and (with a
``redis-server`` on the PATH and redis-py installed) Redis Pub/Sub, a
second or two per phase, in real processes bounded by the runner's
timeouts. Checks that the report has every field and that the clients
counted every message on every connection; never a speed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from wsfast.benchmark import fanout, report
from wsfast.benchmark.runner import Config, installed, run_suite

CLIENTS = 50
FIELDS = {
    "messages",
    "deliveries",
    "counted",
    "seconds",
    "publish_rate",
    "deliveries_per_s",
    "last_p50_ms",
    "last_p99_ms",
    "last_max_ms",
    "first_p50_ms",
    "server_cpu_s",
    "redis_cpu_s",
    "loadgen_cpu_s",
    "server_us_per_delivery",
    "redis_us_per_delivery",
    "deliveries_per_server_cpu_s",
}
REDIS = fanout.missing("wsfast-redis") is None


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    lines: list[str] = []
    impls = ("wsfast-memory", "wsfast-redis") if REDIS else ("wsfast-memory",)
    config = Config(
        loops=("asyncio",),
        peers=("wsfast",),
        scenarios=("fanout",),
        fanout_workers=1,
        fanout_clients=CLIENTS,
        fanout_deliveries_per_s=20 * CLIENTS,  # 20 messages/s
        fanout_rate_seconds=0.5,
        fanout_saturation_seconds=0.3,
        fanout_impls=impls,
        fanout_runs=1,
        command="test",
        progress=lines.append,
    )
    out = tmp_path_factory.mktemp("fanout")
    data = run_suite(config)
    report.write(data, str(out))
    return {"data": data, "lines": lines, "out": out, "impls": impls}


def test_every_field_and_every_delivery(results: dict[str, Any]) -> None:
    points = results["data"]["points"]
    assert {p["impl"] for p in points} == set(results["impls"])
    for point in points:
        assert point["scenario"] == "fanout" and point["status"] == "ok", point
        (run,) = point["runs"]
        assert run["workers"] == 1 and run["clients"] == CLIENTS and run["client_processes"] == 1
        assert run["rss_before"] > 0 and run["rss_after"] > 0
        assert run["bytes_per_connection"] == (run["rss_after"] - run["rss_before"]) / CLIENTS
        for phase in ("rate", "saturation"):
            figures = run[phase]
            assert set(figures) == FIELDS
            # what the clients counted, connection by connection, is every message on every connection
            assert figures["counted"] == figures["deliveries"] == figures["messages"] * CLIENTS
            assert figures["deliveries_per_s"] > 0 and figures["seconds"] > 0
            assert 0 < figures["first_p50_ms"] and figures["last_p50_ms"] <= figures["last_p99_ms"]
            assert figures["server_cpu_s"] >= 0 and figures["redis_cpu_s"] >= 0
        assert run["rate"]["messages"] == 10  # 20 messages/s for 0.5 s
        assert run["saturation"]["messages"] >= 1
        if point["impl"] == "wsfast-memory":
            assert run["rate"]["redis_cpu_s"] == 0 and run["saturation"]["redis_cpu_s"] == 0
        hub = run["hub_stats"]
        assert hub["dropped"] == 0 and hub["closed"] == 0
        total = run["rate"]["messages"] + run["saturation"]["messages"]
        assert hub["delivered"] >= total * CLIENTS  # and the sync messages
        for key in ("saturation.deliveries_per_s", "rate.last_p99_ms", "bytes_per_connection"):
            assert point["summary"][key]["median"] > 0 or key == "bytes_per_connection"


@pytest.mark.skipif(not REDIS, reason="needs redis-server and redis-py")
def test_redis_has_its_own_cpu(results: dict[str, Any]) -> None:
    point = next(p for p in results["data"]["points"] if p["impl"] == "wsfast-redis")
    assert point["runs"][0]["saturation"]["redis_cpu_s"] >= 0
    assert "fanout redis" in results["data"]["environment"]["descriptions"]


def test_report(results: dict[str, Any]) -> None:
    out: Path = results["out"]
    text = (out / "results.md").read_text()
    assert "## Fan-out: publish/subscribe across worker processes (asyncio)" in text
    assert "Fixed rate:" in text and "Saturation:" in text
    assert "| wsfast + memory hub (1 worker) | 1 |" in text
    assert "The memory hub does not cross processes" in text
    assert "Against the targets of issue 14:" in text
    assert json.loads((out / "results.json").read_text())["points"] == json.loads(json.dumps(results["data"]["points"]))
    if installed("matplotlib"):
        assert (out / "fanout.png").read_bytes().startswith(b"\x89PNG")
    assert any(line.startswith("[1/") and "fanout wsfast-memory run 1" in line for line in results["lines"])


def test_a_run_beyond_the_open_file_limit_fails_clearly() -> None:
    config = Config(fanout_clients=10**7, fanout_workers=2)
    with pytest.raises(fanout.FanoutError, match="RLIMIT_NOFILE"):
        fanout.check_fd_limit(config, ["wsfast-memory"])


def test_peers_need_their_packages() -> None:
    if shutil.which("redis-server") is None:
        assert fanout.missing("websockets-redis") is not None
    assert fanout.missing("wsfast-memory") is None
