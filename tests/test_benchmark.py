"""``wsfast bench`` (``wsfast.benchmark``): a tiny real run of the suite.

One size, wsfast and the raw TCP ceiling, a few round trips per run, in real
subprocesses (each bounded by the runner's timeouts). The test checks the
shape of the results, that the figures are positive, the markdown, and that
a peer that is not installed is reported as skipped. It never checks a
speed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

import wsfast
from wsfast import cli
from wsfast.benchmark import _common, report
from wsfast.benchmark.runner import SCHEMA, Config, installed, run_suite


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One tiny run: server-1 (the fixed client counting in its own epoll
    loop on Linux), tls-100 (counting on the event loop) and memory, wsfast
    and the ceiling, picows made to look absent (its import name points at
    no module)."""
    lines: list[str] = []
    config = Config(
        sizes=(64,),
        loops=("asyncio",),
        peers=("wsfast", "picows"),
        scenarios=("server-1", "tls-100", "memory-2000"),
        runs=2,
        duration=0.05,
        warmup=0.01,
        max_messages=200,
        memory_connections=20,
        memory_runs=1,
        command="test",
        progress=lines.append,
    )
    out = tmp_path_factory.mktemp("bench")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(_common.PEER_MODULES, "picows", "wsfast_bench_no_such_module")
        data = run_suite(config)
        report.write(data, str(out))
    return {"data": data, "lines": lines, "out": out}


def test_json_schema(results: dict[str, Any]) -> None:
    data = results["data"]
    on_disk = json.loads((results["out"] / "results.json").read_text())
    assert on_disk == json.loads(json.dumps(data))
    assert data["schema"] == SCHEMA
    assert list(data["config"]["sizes"]) == [64] and list(data["config"]["loops"]) == ["asyncio"]
    assert data["environment"]["wsfast"]["codec"] == wsfast.IMPLEMENTATION
    assert data["environment"]["load_average_start"]
    keys = {(p["scenario"], p["impl"]) for p in data["points"]}
    assert keys == {
        ("server-1", "raw"),
        ("server-1", "wsfast"),
        ("server-1", "wsfast-serve"),
        ("tls-100", "raw"),
        ("tls-100", "wsfast"),
        ("tls-100", "wsfast-serve"),
        ("memory-2000", "raw"),
        ("memory-2000", "wsfast"),
        ("memory-2000", "wsfast-serve"),
    }
    for point in data["points"]:
        assert point["status"] == "ok", point
        assert point["loop"] == "asyncio"


def test_figures_are_positive(results: dict[str, Any]) -> None:
    for point in results["data"]["points"]:
        if point["scenario"] in ("server-1", "tls-100"):
            connections = 1 if point["scenario"] == "server-1" else 100
            assert len(point["runs"]) == 2 and point["size"] == 64 and point["connections"] == connections
            for run in point["runs"]:
                assert 0 < run["messages"] <= 200
                assert run["seconds"] > 0 and run["msgs_per_s"] > 0
                assert 0 < run["p50_us"] <= run["p99_us"]
                assert run["client_cpu"] > 0
            rate = point["summary"]["msgs_per_s"]
            assert 0 < rate["min"] <= rate["median"] <= rate["max"]
            ratio = point["ratio_to_ceiling"]
            assert ratio is not None and ratio > 0 and math.isfinite(ratio)
            if point["impl"] == "raw":
                assert ratio == 1.0
        else:
            assert point["connections"] == 20 and point["ratio_to_ceiling"] is None
            (run,) = point["runs"]
            assert run["rss_before"] > 0 and run["rss_after"] > 0  # 20 connections may fit in pages already there
            assert run["bytes_per_connection"] == (run["rss_after"] - run["rss_before"]) / 20


def test_missing_peer_is_skipped_with_a_note(results: dict[str, Any]) -> None:
    data = results["data"]
    assert {"what": "picows", "reason": "picows not installed"} in data["skipped"]
    assert not any(p["impl"] == "picows" for p in data["points"])
    assert "skipped: picows: picows not installed" in results["lines"]
    assert "picows (picows not installed)" in (results["out"] / "results.md").read_text()


def test_markdown(results: dict[str, Any]) -> None:
    text = (results["out"] / "results.md").read_text()
    assert text.startswith(report.markdown(results["data"]))
    assert "## Servers, 1 connection, request-response (asyncio)" in text
    assert "## Servers over TLS (wss://), 100 connections (asyncio)" in text
    assert "| implementation | 64 B |" in text
    rates = text.split("Messages per second:")[1].split("Round trip")[0].splitlines()
    ceiling = next(line for line in rates if line.startswith("| raw TCP echo (ceiling) |"))
    assert "/s" in ceiling and "x |" not in ceiling  # the ceiling has no ratio to itself
    mine = next(line for line in rates if line.startswith("| wsfast (callback API) |"))
    assert "/s" in mine and "x |" in mine
    assert "RSS growth / 20 connections" in text
    progress = results["lines"]
    assert any(line.startswith("wsfast bench: 15 runs;") for line in progress)  # 2 x 3 x 2 + 3 x 1
    assert any("server-1 asyncio 64 B wsfast run 2:" in line for line in progress)


def test_charts_or_a_note(results: dict[str, Any]) -> None:
    out: Path = results["out"]
    text = (out / "results.md").read_text()
    if installed("matplotlib"):
        for name in ("server-1.png", "memory-2000.png"):
            assert (out / name).read_bytes().startswith(b"\x89PNG")
            assert f"![{name}]({name})" in text
    else:
        assert not list(out.glob("*.png"))
        assert "No charts: matplotlib not installed" in text


def test_cli_refuses_an_unknown_peer(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", "--peers", "wsfast", "nosuchpeer"]) == 2
    assert "unknown peer or scenario: nosuchpeer" in capsys.readouterr().err


@pytest.mark.parametrize(("text", "size"), [("64", 64), ("1KiB", 1024), ("64k", 65536), ("1MiB", 1048576)])
def test_cli_sizes(text: str, size: int) -> None:
    args = cli.build_parser().parse_args(["bench", "--sizes", text])
    assert args.sizes == [size]


def test_cli_rejects_a_bad_size(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["bench", "--sizes", "12XB"])
    assert "not a size" in capsys.readouterr().err


def test_cli_reports_an_earlier_run(
    results: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["bench", "--from-json", str(results["out"] / "results.json"), "--out", str(tmp_path)]) == 0
    again = json.loads((tmp_path / "results.json").read_text())
    assert again["points"] == json.loads((results["out"] / "results.json").read_text())["points"]
    assert "## Servers, 1 connection, request-response (asyncio)" in capsys.readouterr().out
