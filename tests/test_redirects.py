"""wsfast.redirects: resolving and vetting redirects, and which headers
follow them, without I/O."""

from __future__ import annotations

import pytest

from wsfast.auth import basic_auth_header
from wsfast.exceptions import InvalidRedirect
from wsfast.handshake import error_response
from wsfast.http11 import Response
from wsfast.redirects import Redirects, is_redirect
from wsfast.uri import parse_uri

HEADERS = [
    ("Authorization", "Bearer t0ken"),
    ("Cookie", "session=1"),
    ("Proxy-Authorization", "Basic eDp5"),
    ("X-Trace", "42"),
]


def redirect(location: str, status: int = 307) -> Response:
    return error_response(status, "moved", [("Location", location)])


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_is_redirect(status: int) -> None:
    assert is_redirect(redirect("/x", status))


@pytest.mark.parametrize("response", [redirect("/x", 300), redirect("/x", 304), error_response(302, "no location")])
def test_is_not_redirect(response: Response) -> None:
    assert not is_redirect(response)
    assert not is_redirect(None)


@pytest.mark.parametrize(
    "start, location, target",
    [
        ("ws://a.example:8000/chat/room?x=1", "/other", "ws://a.example:8000/other"),
        ("ws://a.example:8000/chat/room", "lobby?y=2", "ws://a.example:8000/chat/lobby?y=2"),
        ("ws://a.example:8000/chat/room", "../up", "ws://a.example:8000/up"),
        ("ws://a.example/", "//b.example:9000/p", "ws://b.example:9000/p"),
        ("ws://a.example/", "wss://b.example/secure", "wss://b.example/secure"),
        ("ws://a.example/", "http://b.example/plain", "ws://b.example/plain"),
        ("wss://a.example/", "https://b.example:8443/s", "wss://b.example:8443/s"),
        ("wss://a.example/", "/same#fragment", "wss://a.example/same"),
        ("ws://a.example/", "  /spaces  ", "ws://a.example/spaces"),
        ("ws://a.example/", "/a b/é?q=x y&r=%41", "ws://a.example/a%20b/%C3%A9?q=x%20y&r=%41"),
    ],
)
def test_location_resolved(start: str, location: str, target: str) -> None:
    redirects = Redirects(parse_uri(start))
    assert str(redirects.follow(redirect(location))) == target
    assert redirects.chain == [str(parse_uri(start)), target]


def test_same_origin_keeps_the_credentials() -> None:
    redirects = Redirects(parse_uri("ws://u:p@a.example:8000/one"), HEADERS)
    assert redirects.headers == HEADERS  # an explicit Authorization wins over the URI's
    redirects.follow(redirect("/two"))
    redirects.follow(redirect("ws://A.EXAMPLE:8000/three"))  # host names are case-insensitive
    assert redirects.headers == HEADERS


@pytest.mark.parametrize(
    "location",
    ["ws://a.example:8001/", "ws://b.example:8000/", "wss://a.example:8000/", "http://a.example/"],
)
def test_other_origin_drops_the_credentials(location: str) -> None:
    redirects = Redirects(parse_uri("ws://a.example:8000/"), HEADERS)
    redirects.follow(redirect(location))
    assert redirects.headers == [("X-Trace", "42")]


def test_credentials_dropped_do_not_come_back() -> None:
    redirects = Redirects(parse_uri("ws://a.example:8000/"), HEADERS)
    redirects.follow(redirect("ws://b.example:8000/"))
    redirects.follow(redirect("ws://a.example:8000/"))
    assert redirects.headers == [("X-Trace", "42")]


def test_uri_credentials_follow_only_the_same_origin() -> None:
    redirects = Redirects(parse_uri("ws://alice:s%C3%A9same@a.example/"))
    basic = ("Authorization", basic_auth_header("alice", "sésame"))
    assert redirects.headers == [basic]
    assert redirects.uri.user == "alice"  # str(uri), what a client connects to, has none
    assert "alice" not in str(redirects.uri)
    redirects.follow(redirect("/elsewhere"))
    assert redirects.headers == [basic]
    redirects.follow(redirect("ws://b.example/"))
    assert redirects.headers == []
    redirects.follow(redirect("ws://bob:pw@c.example/"))  # credentials in the Location are used
    assert redirects.headers == [("Authorization", basic_auth_header("bob", "pw"))]
    assert redirects.chain == ["ws://a.example/", "ws://a.example/elsewhere", "ws://b.example/", "ws://c.example/"]


def test_never_downgrades_wss() -> None:
    redirects = Redirects(parse_uri("wss://a.example/"), HEADERS)
    for location in ("ws://a.example/", "http://a.example/"):
        with pytest.raises(InvalidRedirect) as info:
            redirects.follow(redirect(location))
        assert "refused a redirect from wss:// to ws:// (ws://a.example/)" in str(info.value)
        assert info.value.chain == ["wss://a.example/", "ws://a.example/"]
        assert isinstance(info.value.response, Response) and info.value.response.status == 307
    assert str(redirects.uri) == "wss://a.example/"


@pytest.mark.parametrize(
    "location, shown",
    [
        ("ftp://a.example/file", "ftp://a.example/file"),
        ("ftp://user:secret@a.example/file", "ftp://a.example/file"),
        ("file:///etc/passwd", "file:///etc/passwd"),
        ("javascript:alert(1)", "javascript:alert(1)"),
    ],
)
def test_refuses_other_schemes(location: str, shown: str) -> None:
    with pytest.raises(InvalidRedirect) as info:
        Redirects(parse_uri("ws://a.example/")).follow(redirect(location))
    assert f"refused a redirect to {shown!r}: only ws, wss, http and https URIs are followed" in str(info.value)
    assert info.value.chain == ["ws://a.example/"]


@pytest.mark.parametrize("location", ["wss://", "http://a.example:99999/", "ws://[::1/"])
def test_refuses_invalid_uris(location: str) -> None:
    with pytest.raises(InvalidRedirect) as info:
        Redirects(parse_uri("ws://a.example/")).follow(redirect(location))
    assert "HTTP 307 to an invalid URI" in str(info.value)


def test_several_locations() -> None:
    response = error_response(302, "moved", [("Location", "/a"), ("Location", "/b")])
    with pytest.raises(InvalidRedirect, match="HTTP 302 with 2 Location headers"):
        Redirects(parse_uri("ws://a.example/")).follow(response)


@pytest.mark.parametrize("limit", [0, 1, 3])
def test_max_redirects(limit: int) -> None:
    redirects = Redirects(parse_uri("ws://a.example/0"), max_redirects=limit)
    for hop in range(1, limit + 1):
        redirects.follow(redirect(f"/{hop}"))
    with pytest.raises(InvalidRedirect) as info:
        redirects.follow(redirect(f"/{limit + 1}"))
    chain = [f"ws://a.example/{hop}" for hop in range(limit + 2)]
    assert info.value.chain == chain
    assert str(info.value) == f"more than {limit} redirects (redirects: {' -> '.join(chain)})"


def test_negative_max_redirects() -> None:
    with pytest.raises(ValueError, match="max_redirects must be 0 or more"):
        Redirects(parse_uri("ws://a.example/"), max_redirects=-1)
