"""wsfast.auth: Basic credentials on both sides, without I/O."""

from __future__ import annotations

import asyncio
import base64
import hmac
from typing import Any, Optional

import pytest

from wsfast.auth import (
    BasicAuth,
    basic_auth,
    basic_auth_header,
    parse_basic_auth,
    unauthorized,
    with_uri_credentials,
)
from wsfast.http11 import Headers, Request, Response
from wsfast.uri import parse_uri

CHALLENGE = 'Basic realm="chat", charset="UTF-8"'


def request(*authorization: str) -> Request:
    return Request("GET", "/", Headers([("Authorization", value) for value in authorization]))


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def check(hook: BasicAuth, req: Request) -> Optional[Response]:
    answer = hook(None, req)
    assert not asyncio.iscoroutine(answer)  # synchronous: usable by a threading server
    return answer  # type: ignore[return-value]


def assert_401(answer: Optional[Response], message: str) -> None:
    assert answer is not None and answer.status == 401
    assert answer.headers.get_all("WWW-Authenticate") == [CHALLENGE]
    assert answer.body == f"{message}\n".encode()


@pytest.mark.parametrize(
    "credentials",
    [
        ("alice", "s3cret"),
        [("alice", "s3cret"), ("bob", "hunter2")],
        iter([("bob", "hunter2"), ("alice", "s3cret")]),
        {"alice": "s3cret", "bob": "hunter2"},
    ],
    ids=["pair", "pairs", "iterator", "mapping"],
)
def test_right_credentials_set_the_user(credentials: Any) -> None:
    hook = basic_auth("chat", credentials=credentials)
    req = request(basic_auth_header("alice", "s3cret"))
    assert check(hook, req) is None
    assert req.user == "alice"


@pytest.mark.parametrize(
    "user, password",
    [("alice", "wrong"), ("alice", ""), ("alice", "s3cret "), ("mallory", "s3cret"), ("", ""), ("Alice", "s3cret")],
)
def test_wrong_credentials(user: str, password: str) -> None:
    hook = basic_auth("chat", credentials={"alice": "s3cret", "": "x"})
    req = request(basic_auth_header(user, password))
    assert_401(check(hook, req), "Invalid credentials")
    assert req.user is None


def test_missing_credentials() -> None:
    assert_401(check(basic_auth("chat", credentials=("a", "b")), request()), "Missing credentials")


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer abc",
        "Basic",
        "Basic !!!not-base64!!!",
        "Basic " + b64(b"no colon"),
        "Basic " + b64(b"alice:\xff\xfe"),  # not UTF-8
        "Basic " + b64(b"alice:s3cret")[:-2],  # bad padding
        "Digest username=alice",
    ],
)
def test_malformed_credentials(authorization: str) -> None:
    assert_401(
        check(basic_auth("chat", credentials=("alice", "s3cret")), request(authorization)), "Malformed credentials"
    )


def test_two_authorization_headers_are_refused() -> None:
    header = basic_auth_header("alice", "s3cret")
    assert_401(
        check(basic_auth("chat", credentials=("alice", "s3cret")), request(header, header)), "Malformed credentials"
    )


def test_scheme_is_case_insensitive_and_unicode_works() -> None:
    hook = basic_auth("chat", credentials={"zoë": "pässwörd:with:colons"})
    token = b64("zoë:pässwörd:with:colons".encode())
    req = request(f"bAsIc   {token}")
    assert check(hook, req) is None
    assert req.user == "zoë"


def test_check_credentials_callable() -> None:
    seen = []

    def check_credentials(user: str, password: str) -> bool:
        seen.append((user, password))
        return password == user[::-1]

    hook = basic_auth("chat", check_credentials=check_credentials)
    req = request(basic_auth_header("abc", "cba"))
    assert check(hook, req) is None and req.user == "abc"
    assert_401(check(hook, request(basic_auth_header("abc", "abc"))), "Invalid credentials")
    assert_401(check(hook, request("Basic ???")), "Malformed credentials")  # not called
    assert seen == [("abc", "cba"), ("abc", "abc")]


def test_async_check_credentials_returns_an_awaitable() -> None:
    async def check_credentials(user: str, password: str) -> bool:
        await asyncio.sleep(0)
        return (user, password) == ("alice", "s3cret")

    hook = basic_auth("chat", check_credentials=check_credentials)

    async def main() -> None:
        req = request(basic_auth_header("alice", "s3cret"))
        answer = hook(None, req)
        assert asyncio.iscoroutine(answer)
        assert await answer is None and req.user == "alice"
        refused = hook(None, request(basic_auth_header("alice", "nope")))
        assert asyncio.iscoroutine(refused)
        assert_401(await refused, "Invalid credentials")
        assert_401(hook(None, request()), "Missing credentials")  # type: ignore[arg-type]

    asyncio.run(main())


def test_unknown_user_costs_the_same_comparison(monkeypatch: pytest.MonkeyPatch) -> None:
    compared = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    hook = basic_auth("chat", credentials={"alice": "a much longer password than the one tried"})
    for user in ("alice", "nobody"):
        assert_401(check(hook, request(basic_auth_header(user, "short"))), "Invalid credentials")
    assert compared == [(32, 32), (32, 32)]  # digests: one comparison each, lengths hidden


def test_realm_is_quoted() -> None:
    answer = unauthorized('say "hi" \\ there')
    assert answer.headers.get("WWW-Authenticate") == 'Basic realm="say \\"hi\\" \\\\ there", charset="UTF-8"'
    assert answer.headers.get("Connection") == "close"


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({}, ValueError, "needs credentials or check_credentials"),
        ({"credentials": ("a", "b"), "check_credentials": lambda u, p: True}, ValueError, "one of them"),
        ({"credentials": [("a:b", "c")]}, ValueError, "cannot contain ':'"),
        ({"credentials": [("a", "b", "c")]}, TypeError, "(user, password) pairs of str"),
        ({"credentials": ["ab"]}, TypeError, "(user, password) pairs of str"),
        ({"realm": "x\r\ny", "credentials": ("a", "b")}, ValueError, "CR or LF"),
    ],
)
def test_invalid_configuration(kwargs: dict[str, Any], error: type, message: str) -> None:
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        basic_auth(**kwargs)


def test_parse_basic_auth() -> None:
    assert parse_basic_auth(basic_auth_header("u", "p:q")) == ("u", "p:q")
    assert parse_basic_auth("Basic " + b64(b":")) == ("", "")
    with pytest.raises(ValueError, match="not Basic credentials"):
        parse_basic_auth("Bearer x")
    with pytest.raises(ValueError, match="no colon"):
        parse_basic_auth("Basic " + b64(b"user"))


def test_uri_credentials_become_basic_auth_unless_a_header_is_given() -> None:
    uri = parse_uri("ws://alice:p%40ss@example.com/")
    assert with_uri_credentials(uri, [("X", "1")]) == [
        ("X", "1"),
        ("Authorization", basic_auth_header("alice", "p@ss")),
    ]
    explicit = [("authorization", "Bearer t")]
    assert with_uri_credentials(uri, explicit) == explicit
    assert with_uri_credentials(parse_uri("ws://example.com/"), [("X", "1")]) == [("X", "1")]
