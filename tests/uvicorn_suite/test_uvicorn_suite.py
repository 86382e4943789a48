"""uvicorn's own WebSocket tests, run against wsfast.uvicorn.WSFastProtocol.

uvicorn ships its tests in its sdist. This module fetches the sdist of the
pinned version (``UVICORN_VERSION``, the version the ``test`` extra pins, so
that the tests match the installed uvicorn they import from) with pip,
checked against its SHA-256, into a cache next to pytest's temporary
directories (or takes it from ``$WSFAST_UVICORN_SDIST``, a path to the
``.tar.gz``, to run offline); extracts its ``tests/`` and runs, in a pytest
subprocess (uvicorn's tests are a top-level package ``tests`` too), every
test of ``tests/protocols/test_websocket.py``, ``tests/protocols/test_http.py``,
``tests/middleware/test_logging.py`` and ``tests/middleware/test_proxy_headers.py``
that requests the ``ws_protocol_cls`` fixture, with wsfast's protocol as that
fixture (``wsfast_uvicorn_suite.py``, a pytest plugin, does the selection),
and uvicorn's own pytest settings (warnings are errors, strict xfail).

The subprocess inherits the environment: under ``WSFAST_PURE_PYTHON=1`` it
runs on the pure-Python codec, so the suite's two runs in CI cover both.
The few tests that cannot pass for any class but uvicorn's own are strict
xfails, listed with why in ``wsfast_uvicorn_suite.KNOWN_FAILURES`` and in the
README. Fetched rather than vendored: nothing of uvicorn's is copied into
this repository, and a newer pin is one line (version and hash) here and one
in pyproject.toml.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from .wsfast_uvicorn_suite import KNOWN_FAILURES, TEST_FILES

UVICORN_VERSION = "0.55.0"
SDIST_SHA256 = "b65ae5f0f30cdcbc26a104b93d7d19723aa5f46fec3915a6c247d5795449331c"
SDIST_NAME = f"uvicorn-{UVICORN_VERSION}.tar.gz"
PLUGIN_DIR = Path(__file__).resolve().parent
#: uvicorn's tests import these (beyond uvicorn, websockets and pytest).
TEST_DEPENDENCIES = ["httpx2", "trustme", "cryptography", "anyio", "wsproto"]
#: The whole run takes about 40 s; uvicorn's own faulthandler_timeout is 60 s a test.
TIMEOUT = 600


def _installed_uvicorn() -> str:
    try:
        import uvicorn
    except ImportError:
        return ""
    return str(uvicorn.__version__)


pytestmark = pytest.mark.skipif(
    _installed_uvicorn() != UVICORN_VERSION,
    reason=f"uvicorn's suite at {UVICORN_VERSION} runs against uvicorn {UVICORN_VERSION} "
    f"(installed: {_installed_uvicorn() or 'none'}; the test extra pins it on Python >= 3.11)",
)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _sdist(cache: Path) -> Path:
    """The pinned sdist: ``$WSFAST_UVICORN_SDIST``, the cached copy, or
    downloaded by pip (hash-checked) into the cache."""
    given = os.environ.get("WSFAST_UVICORN_SDIST")
    if given:
        path = Path(given)
        if not path.is_file() or _sha256(path) != SDIST_SHA256:
            pytest.fail(f"$WSFAST_UVICORN_SDIST={given}: not the {SDIST_NAME} of SHA-256 {SDIST_SHA256}")
        return path
    path = cache / SDIST_NAME
    if path.is_file() and _sha256(path) == SDIST_SHA256:
        return path
    download = cache / f"download-{os.getpid()}"
    download.mkdir(parents=True, exist_ok=True)
    requirements = download / "requirements.txt"
    requirements.write_text(f"uvicorn=={UVICORN_VERSION} --hash=sha256:{SDIST_SHA256}\n")
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
    command += ["--disable-pip-version-check", "-d", str(download), "-r", str(requirements)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        pytest.fail(f"pip download of {SDIST_NAME} took over 300 s")
    fetched = download / SDIST_NAME
    if result.returncode != 0 or not fetched.is_file() or _sha256(fetched) != SDIST_SHA256:
        pytest.fail(
            f"could not fetch {SDIST_NAME} from the package index (pip download exited {result.returncode}); "
            f"set $WSFAST_UVICORN_SDIST to a copy to run offline.\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        )
    os.replace(fetched, path)  # atomic: a concurrent run sees the whole file or none
    shutil.rmtree(download, ignore_errors=True)
    return path


def _extract_tests(sdist: Path, into: Path) -> Path:
    """uvicorn's ``tests/`` (and its pyproject.toml, for its pytest
    settings) from the sdist, not its ``uvicorn/``: the subprocess must
    import the installed uvicorn."""
    prefix = f"uvicorn-{UVICORN_VERSION}/"
    with tarfile.open(sdist, "r:gz") as tar:
        for member in tar.getmembers():
            name = member.name
            if not name.startswith(prefix) or ".." in name.split("/"):
                continue
            relative = name[len(prefix) :]
            if not (relative.startswith("tests/") or relative in ("pyproject.toml", "LICENSE.md")):
                continue
            if not member.isfile():
                continue
            target = into / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            assert source is not None
            target.write_bytes(source.read())
    for sub in ("protocols", "middleware"):
        conftest = into / "tests" / sub / "conftest.py"
        assert not conftest.exists(), f"uvicorn {UVICORN_VERSION} has {conftest}: the override needs another way"
        # A closer conftest's fixture overrides uvicorn's tests/conftest.py ws_protocol_cls.
        conftest.write_text("from wsfast_uvicorn_suite import ws_protocol_cls  # noqa: F401\n")
    return into


@pytest.fixture(scope="module")
def uvicorn_tests(tmp_path_factory: pytest.TempPathFactory) -> Path:
    missing = [name for name in TEST_DEPENDENCIES if importlib.util.find_spec(name) is None]
    if missing:
        pytest.fail(f"uvicorn's tests need {', '.join(missing)}: pip install '.[test]'")
    cache = tmp_path_factory.getbasetemp().parent / "wsfast-uvicorn-sdist"
    cache.mkdir(parents=True, exist_ok=True)
    return _extract_tests(_sdist(cache), tmp_path_factory.mktemp(f"uvicorn-{UVICORN_VERSION}"))


def test_uvicorn_websocket_suite(uvicorn_tests: Path) -> None:
    """Every uvicorn test that requests ``ws_protocol_cls`` passes with
    WSFastProtocol, but the known strict xfails."""
    report = uvicorn_tests / "report.xml"
    env = dict(os.environ)
    env.pop("PYTEST_ADDOPTS", None)  # this run's options are not the subprocess's
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PLUGIN_DIR), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "pytest", "-p", "wsfast_uvicorn_suite", "-p", "no:cacheprovider"]
    # uvicorn's addopts ask for pytest-xdist (-n 8): not needed, replaced.
    command += ["-o", "addopts=-rfEX --strict-config --strict-markers", "-q", "--tb=short"]
    command += [f"--junitxml={report}", *TEST_FILES]
    try:
        result = subprocess.run(command, cwd=uvicorn_tests, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"uvicorn's suite took over {TIMEOUT} s:\n{exc.stdout!r}"[-6000:])
    output = result.stdout[-12000:] + result.stderr[-4000:]
    assert report.is_file(), f"no report (exit status {result.returncode}):\n{output}"
    outcomes: dict[str, str] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        kinds = {child.tag for child in case}
        skipped = case.find("skipped")
        if "failure" in kinds or "error" in kinds:
            outcomes[name] = "failed"
        elif skipped is not None:
            outcomes[name] = "xfailed" if skipped.get("type") == "pytest.xfail" else "skipped"
        else:
            outcomes[name] = "passed"
    counts = {kind: list(outcomes.values()).count(kind) for kind in ("passed", "failed", "xfailed", "skipped")}
    print(f"uvicorn {UVICORN_VERSION} suite against WSFastProtocol: {counts}")
    assert result.returncode == 0 and counts["failed"] == 0, f"uvicorn's suite failed: {counts}\n{output}"
    # Nothing silently lost: at least one HTTP protocol (h11, always installed)
    # runs them all, and every known failure was seen to fail.
    assert counts["passed"] >= 75, f"too few uvicorn tests ran: {counts}\n{output}"
    xfailed = {name.rpartition("::")[2].partition("[")[0] for name, kind in outcomes.items() if kind == "xfailed"}
    assert xfailed == {test.rpartition("::")[2] for test in KNOWN_FAILURES}, (counts, xfailed)
