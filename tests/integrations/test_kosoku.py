"""The Autobahn TestSuite (kosoku), sections 1-7 and 10, against websockets
and wsproto echo servers, unpatched and patched by wsfast.accelerate(): no
case may get worse. The whole suite: ``python tests/integrations/kosoku_compare.py``.
Skipped only when kosoku (Python >= 3.10) or the library is not installed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("kosoku")

from .kosoku_compare import LIBRARIES, compare  # noqa: E402

SECTIONS = ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "10.*"]

pytestmark = pytest.mark.conformance


@pytest.mark.parametrize("library", LIBRARIES)
def test_no_case_worse(library: str, tmp_path: Path) -> None:
    pytest.importorskip(library)
    result = compare(library, SECTIONS, tmp_path, timeout=1200.0)
    report = result.report()
    print(report, file=sys.stderr)
    assert not result.plain.problems and not result.fast.problems, report
    assert len(result.plain.verdicts) > 200, report  # the selection ran (sections 1-7 and 10: ~250 cases)
    assert set(result.fast.verdicts) == set(result.plain.verdicts), report
    assert not result.worse, report
