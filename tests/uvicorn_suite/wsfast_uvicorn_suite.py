"""pytest plugin loaded (``-p wsfast_uvicorn_suite``) into the subprocess
that runs uvicorn's own test suite from its sdist (see test_uvicorn_suite.py).

It keeps only the tests that request the ``ws_protocol_cls`` fixture, gives
that fixture wsfast's protocol (the conftests the runner writes into
``tests/protocols`` and ``tests/middleware`` import it from here: a closer
conftest overrides uvicorn's), and marks strict xfail the tests that cannot
pass for any WebSocket protocol but uvicorn's own (KNOWN_FAILURES).
"""

from __future__ import annotations

import os
from typing import Any

import pytest

#: The protocol classes to run uvicorn's tests against, comma-separated
#: (``module:attribute``); uvicorn's own can be added for comparison.
IMPLEMENTATIONS = os.environ.get("WSFAST_UVICORN_SUITE_WS", "wsfast.uvicorn:WSFastProtocol").split(",")

#: uvicorn's test files that have tests requesting ``ws_protocol_cls``.
TEST_FILES = [
    "tests/protocols/test_websocket.py",
    "tests/protocols/test_http.py",
    "tests/middleware/test_logging.py",
    "tests/middleware/test_proxy_headers.py",
]

_ISINSTANCE = (
    "asserts isinstance(protocol, (WSProtocol, WebSocketsSansIOProtocol)), uvicorn's own two classes, before reading {}"
)

#: uvicorn tests (node id without the parameters) that cannot pass with a
#: protocol class other than uvicorn's own, and why. Strict xfails: one that
#: starts passing fails the run, to be removed from here.
KNOWN_FAILURES: dict[str, str] = {
    "tests/protocols/test_websocket.py::test_server_keepalive_ping_pong": _ISINSTANCE.format(
        "ping_sent_at (WSFastProtocol has it, same meaning)"
    ),
    "tests/protocols/test_websocket.py::test_server_keepalive_disabled": _ISINSTANCE.format(
        "ping_timer (WSFastProtocol has it, same meaning)"
    ),
}


@pytest.fixture(params=IMPLEMENTATIONS, ids=[path.rsplit(":", 1)[-1] for path in IMPLEMENTATIONS])
def ws_protocol_cls(request: Any) -> Any:
    from uvicorn.importer import import_from_string

    return import_from_string(request.param)


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    selected, deselected = [], []
    for item in items:
        (selected if "ws_protocol_cls" in getattr(item, "fixturenames", ()) else deselected).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = selected
    for item in items:
        reason = KNOWN_FAILURES.get(item.nodeid.partition("[")[0])
        if reason is not None and "WSFastProtocol" in item.nodeid:
            item.add_marker(pytest.mark.xfail(reason=reason, strict=True))
