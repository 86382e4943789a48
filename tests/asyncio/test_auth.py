"""HTTP Basic authentication end to end: wsfast.auth.basic_auth on
wsfast.serve, credentials from the URI or an explicit header on connect."""

from __future__ import annotations

import asyncio
import base64
import logging
from typing import Any, Optional

import pytest

from wsfast.asyncio import WebSocket, connect, serve
from wsfast.auth import basic_auth, basic_auth_header
from wsfast.exceptions import InvalidHandshake
from wsfast.http11 import Response

from .helpers import run

CHALLENGE = 'Basic realm="wsfast tests", charset="UTF-8"'
USERS = {"alice": "s3cret", "bob": "pa:ss wörd"}


async def whoami(ws: WebSocket) -> None:
    assert ws.request is not None
    await ws.send(f"hello {ws.request.user}")


def attempt(uri_credentials: str = "", extra_headers: Any = (), **auth: Any) -> Any:
    """Connect to a server behind basic_auth; return the greeting, or the
    InvalidHandshake raised."""
    auth = auth or {"credentials": USERS}

    async def main() -> Any:
        async with serve(whoami, "127.0.0.1", 0, process_request=basic_auth("wsfast tests", **auth)) as server:
            try:
                async with connect(
                    f"ws://{uri_credentials}127.0.0.1:{server.port}/", extra_headers=extra_headers
                ) as ws:
                    return await ws.recv()
            except InvalidHandshake as exc:
                return exc

    return run(main())


def assert_401(result: Any, message: str) -> None:
    assert isinstance(result, InvalidHandshake), result
    response = result.response
    assert isinstance(response, Response) and response.status == 401
    assert response.headers.get_all("WWW-Authenticate") == [CHALLENGE]
    assert response.body == f"{message}\n".encode()


def test_uri_credentials_reach_the_handler() -> None:
    assert attempt("alice:s3cret@") == "hello alice"
    assert attempt("bob:pa%3Ass%20w%C3%B6rd@") == "hello bob"


def test_explicit_header() -> None:
    assert attempt(extra_headers=[("Authorization", basic_auth_header("bob", "pa:ss wörd"))]) == "hello bob"


def test_explicit_header_wins_over_uri_credentials() -> None:
    header = [("authorization", basic_auth_header("alice", "s3cret"))]
    assert attempt("bob:wrong@", extra_headers=header) == "hello alice"
    assert_401(
        attempt("alice:s3cret@", extra_headers=[("Authorization", basic_auth_header("alice", "no"))]),
        "Invalid credentials",
    )


@pytest.mark.parametrize("credentials", ["alice:wrong@", "alice:@", "mallory:s3cret@", "Alice:s3cret@"])
def test_wrong_credentials(credentials: str) -> None:
    assert_401(attempt(credentials), "Invalid credentials")


def test_missing_credentials() -> None:
    assert_401(attempt(), "Missing credentials")


@pytest.mark.parametrize(
    "value",
    [
        "Basic !!!",
        "Basic " + base64.b64encode(b"no colon").decode(),
        "Basic " + base64.b64encode(b"alice:\xff").decode(),
        "Bearer s3cret",
    ],
)
def test_malformed_credentials(value: str) -> None:
    assert_401(attempt(extra_headers=[("Authorization", value)]), "Malformed credentials")


def test_check_credentials_callable() -> None:
    calls = []

    def check(user: str, password: str) -> bool:
        calls.append(user)
        return password == f"{user}-pw"

    assert attempt("carol:carol-pw@", check_credentials=check) == "hello carol"
    assert_401(attempt("carol:nope@", check_credentials=check), "Invalid credentials")
    assert calls == ["carol", "carol"]


def test_async_check_credentials() -> None:
    async def check(user: str, password: str) -> bool:
        await asyncio.sleep(0.001)  # a database, say
        return (user, password) == ("dave", "d4ve")

    assert attempt("dave:d4ve@", check_credentials=check) == "hello dave"
    assert_401(attempt("dave:nope@", check_credentials=check), "Invalid credentials")


def test_401_is_not_retried(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async with serve(whoami, "127.0.0.1", 0, process_request=basic_auth("r", credentials=USERS)) as server:
            with pytest.raises(InvalidHandshake, match="HTTP 401"):
                async for _ in connect(f"ws://alice:wrong@127.0.0.1:{server.port}/", backoff_initial_delay=0.01):
                    raise AssertionError("connected")

    with caplog.at_level(logging.INFO, logger="wsfast.client"):
        run(main())
    assert [r for r in caplog.records if r.name == "wsfast.client"] == []


def test_composed_with_another_hook_and_routes() -> None:
    auth = basic_auth("wsfast tests", credentials=USERS)

    def process_request(ws: Any, request: Any) -> Optional[Response]:
        if request.path == "/health":
            return Response(200, body=b"ok")
        return auth(ws, request)  # type: ignore[return-value]

    async def main() -> tuple[Any, Any]:
        async with serve({"/chat": whoami}, "127.0.0.1", 0, process_request=process_request) as server:
            async with connect(f"ws://bob:pa%3Ass%20w%C3%B6rd@127.0.0.1:{server.port}/chat") as ws:
                greeting = await ws.recv()
            with pytest.raises(InvalidHandshake) as info:
                await connect(f"ws://127.0.0.1:{server.port}/health")
            return greeting, info.value.response

    greeting, health = run(main())
    assert greeting == "hello bob"
    assert health.status == 200 and health.body == b"ok"
