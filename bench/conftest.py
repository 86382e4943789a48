"""Shared machinery of the wsfast codec benchmarks (see bench/README.md).

* Quick defaults: unless given on the command line (or in PYTEST_ADDOPTS),
  ``--benchmark-max-time`` is 0.5 s and ``--benchmark-min-rounds`` 5, which
  keeps a full run at about two minutes. Pass them explicitly for a longer,
  steadier run.
* ``--benchmark-json`` files leave out the per-round timings (over 100 MB
  for a full run); set ``WSFAST_BENCH_KEEP_DATA=1`` to keep them.
* Every benchmark records, in ``extra_info``, what ``bench/report.py`` needs:
  the group, the case (size), the implementation, its role (``reference`` for
  the entry the group's ratios are taken against), the bytes and frames per
  call.
* wsfast and the peers are imported lazily, in the test: a missing
  ``wsfast._speedups`` or peer skips that entry, with the reason, instead of
  breaking the collection.
* ``bench/`` is only collected when it is asked for (``pytest bench`` or a
  path inside it): ``pytest`` or ``pytest .`` at the root never runs it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Optional

import pytest

if str(Path(__file__).resolve().parent) not in sys.path:  # --import-mode=importlib
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from _benchlib import HERE, Bench, versions, wsfast_info

# ------------------------------------------------------------------ options

# Quick defaults, applied only when the option was not given explicitly.
_QUICK_DEFAULTS = {
    "--benchmark-max-time": ("benchmark_max_time", "0.5"),
    "--benchmark-min-rounds": ("benchmark_min_rounds", "5"),
}


def _bench_requested(config: pytest.Config) -> bool:
    """True when the command line names bench/ or a path inside it."""
    if os.environ.get("WSFAST_BENCH") == "1":
        return True
    base = Path(config.invocation_params.dir)
    for arg in config.args:
        path = (base / str(arg).split("::", 1)[0]).resolve()
        if path == HERE or HERE in path.parents:
            return True
    return False


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> Optional[bool]:
    if not collection_path.name.startswith("test_bench_"):
        return None
    if not _bench_requested(config):
        return True  # `pytest .` at the root: the benchmarks are not tests
    return None


def pytest_configure(config: pytest.Config) -> None:
    try:
        from pytest_benchmark.utils import parse_rounds, parse_seconds
    except ImportError:
        if _bench_requested(config):
            raise pytest.UsageError(
                "the benchmarks need pytest-benchmark: pip install '.[bench]'"
            ) from None
        return
    given = " ".join(
        [*map(str, config.invocation_params.args), os.environ.get("PYTEST_ADDOPTS", "")]
        + [str(a) for a in config.getini("addopts")]
    )
    parsers = {"benchmark_max_time": parse_seconds, "benchmark_min_rounds": parse_rounds}
    for flag, (dest, value) in _QUICK_DEFAULTS.items():
        if flag not in given:
            setattr(config.option, dest, parsers[dest](value))


def pytest_report_header(config: pytest.Config) -> list[str]:
    if not _bench_requested(config):
        return []
    info = wsfast_info()
    lines = [f"wsfast: {info}", f"peers: {versions()}"]
    if "warning" in info:
        lines.append(f"WARNING: {info['warning']}")
    return lines


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    machine_info["wsfast"] = wsfast_info()
    machine_info["peers"] = versions()
    if hasattr(os, "getloadavg"):
        # Taken as the JSON is written: the 5-minute figure spans the run.
        # The benchmark itself accounts for about 1.0.
        machine_info["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
        machine_info["cpu_count"] = os.cpu_count()


def pytest_benchmark_update_json(config: pytest.Config, benchmarks: list, output_json: dict) -> None:
    if os.environ.get("WSFAST_BENCH_KEEP_DATA") == "1":
        return
    for entry in output_json.get("benchmarks", []):
        entry.get("stats", {}).pop("data", None)


@pytest.fixture
def bench(benchmark: Any) -> Bench:
    return Bench(benchmark)

