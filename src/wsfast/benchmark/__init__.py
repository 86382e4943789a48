"""End-to-end benchmarks of wsfast and its peers: ``wsfast bench``.

Servers and clients run in separate processes over loopback, each measured
against a fixed, fast counterpart; see :mod:`wsfast.benchmark.runner` for
the scenarios and ``bench/README.md`` for how to read the results. The peers
(websockets, picows, aiohttp), uvloop, trustme and matplotlib are optional:
a missing one is skipped with a note.
"""

from .runner import SCENARIOS, Config, run_suite

__all__ = ["Config", "run_suite", "SCENARIOS"]
