"""The output of a subprocess, line by line, for tests that wait for a line
with a timeout (tests/test_cli.py, tests/test_workers.py)."""

from __future__ import annotations

import queue
import subprocess
import threading
import time
from typing import Any, Callable, Optional


class OutputLines:
    """Collects the stdout and stderr lines of ``popen`` (opened with
    ``text=True`` and both streams piped) in two threads. ``seen`` keeps
    every line taken so far, per stream."""

    def __init__(self, popen: subprocess.Popen[str], label: str) -> None:
        self.label = label
        self.queues: dict[str, queue.Queue[Optional[str]]] = {"stdout": queue.Queue(), "stderr": queue.Queue()}
        self.seen: dict[str, list[str]] = {"stdout": [], "stderr": []}
        for name in ("stdout", "stderr"):
            stream = getattr(popen, name)
            threading.Thread(target=self._pump, args=(stream, self.queues[name]), daemon=True).start()

    @staticmethod
    def _pump(stream: Any, lines: queue.Queue[Optional[str]]) -> None:
        for line in stream:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    def next(self, predicate: Callable[[str], bool], stream: str, timeout: float, what: str = "such line") -> str:
        """The next line of ``stream`` that satisfies ``predicate``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.queues[stream].get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(
                    f"{self.label}: no {what} on {stream} within {timeout} s; saw {self.seen}"
                ) from None
            if line is None:
                raise AssertionError(f"{self.label}: {stream} ended before {what}; saw {self.seen}")
            self.seen[stream].append(line)
            if predicate(line):
                return line

    def rest(self, stream: str) -> list[str]:
        """Every line of ``stream``, once the process has ended."""
        while True:
            line = self.queues[stream].get(timeout=5)
            if line is None:
                return self.seen[stream]
            self.seen[stream].append(line)
