"""The Autobahn TestSuite, run by kosoku, against wsfast in both roles and
through every API with the codec this test session uses: server-cython,
client-cython and their ``-awaitable``, ``-trio`` and ``-sync`` runs, or the
``-python`` ones under ``WSFAST_PURE_PYTHON=1`` (the README's test command
runs the suite once per codec, so every run of ``run.py`` happens, each
once).

The callback-API runs take all 517 cases. The awaitable-API runs
(``wsfast.serve`` with an echo handler, ``wsfast.connect`` with an echo
loop), and the other runs through a non-callback API (``-trio``, ``-sync``:
the same echo on :mod:`wsfast.trio` and on :mod:`wsfast.sync`'s threads),
leave out sections 12 and 13: permessage-deflate, most of a run's time (about
7 minutes of a callback run; the other 301 cases take about 15 seconds); they
test the codec, which the callback run of the same codec covers in full, and
the awaitable API adds only its queue in front of it.

Each run must end with no FAILED case (which includes ERROR results and
closing handshakes kosoku does not pass), no MISSING one (a case that never
ran is not a pass) and no NON-STRICT one (wsfast is strict through every
API). UNIMPLEMENTED cases do not fail the test: they are listed in the
assertion message and reported as warnings.

The session's runs go in parallel processes, once per session, each bounded in
time; every echo peer and runner process is stopped by its PID. Skipped only
when kosoku (the runner, ``pip install kosoku``, Python >= 3.10) is not
installed.

For development only, ``WSFAST_AUTOBAHN_CASES`` (comma-separated case ids or
globs, as kosoku's ``-i``, e.g. ``1.*,5.*``) narrows the selection; unset, all
517 cases run.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from typing import Any

import pytest

if importlib.util.find_spec("kosoku") is None:
    pytest.skip(
        "kosoku is not installed: it runs the Autobahn TestSuite cases (pip install kosoku; Python >= 3.10)",
        allow_module_level=True,
    )

import wsfast  # noqa: E402

from .run import WSFAST_RUNS, RunResult, build_specs, format_run, run_all  # noqa: E402

#: The runs of this session: those of the codec wsfast picked here.
CODEC = "cython" if wsfast.HAS_SPEEDUPS else "python"
RUNS = [name for name, (_, codec, _) in WSFAST_RUNS.items() if codec == CODEC]

pytestmark = pytest.mark.conformance

RUN_TIMEOUT = 2400.0  # seconds, per run (the four run at once)


@pytest.fixture(scope="module")
def autobahn(tmp_path_factory: pytest.TempPathFactory) -> dict[str, RunResult]:
    outroot = tmp_path_factory.mktemp("autobahn")
    include = [p.strip() for p in os.environ.get("WSFAST_AUTOBAHN_CASES", "").split(",") if p.strip()]
    specs = build_specs(RUNS, None)
    results = run_all(specs, outroot, include=include, jobs=len(specs), timeout=RUN_TIMEOUT, progress=False)
    return {res.spec.name: res for res in results}


def _message(res: RunResult) -> str:
    parts = [format_run(res)]
    if res.ids("NON-STRICT"):
        parts.append(f"NON-STRICT (conformant, but not the strict behaviour): {' '.join(res.ids('NON-STRICT'))}")
    parts.append(f"reports: {res.outdir}")
    return "\n".join(parts)


@pytest.mark.parametrize("name", RUNS)
def test_autobahn(autobahn: dict[str, Any], name: str) -> None:
    res: RunResult = autobahn[name]
    lenient = res.ids("NON-STRICT") + res.ids("UNIMPLEMENTED")
    if lenient:
        warnings.warn(
            f"Autobahn {name}: NON-STRICT {res.ids('NON-STRICT')}, UNIMPLEMENTED {res.ids('UNIMPLEMENTED')}",
            stacklevel=1,
        )
    assert sum(res.counts.values()) > 0, _message(res)  # the selection is never empty
    assert res.counts.get("FAILED", 0) == 0 and res.counts.get("MISSING", 0) == 0, _message(res)
    assert res.counts.get("NON-STRICT", 0) == 0, _message(res)
