"""wsfast.trio.connect follows redirects (wsfast.redirects): wsfast.trio's
server answers them from ``process_request``, or a raw Trio server writes
them; wsfast.trio's server accepts the upgrade at the end."""

from __future__ import annotations

import logging
import ssl
from typing import Any, Optional

import pytest
import trio

import wsfast.trio
from wsfast.auth import basic_auth_header
from wsfast.exceptions import InvalidHandshake, InvalidRedirect
from wsfast.http11 import Headers, Request, Response

from .helpers import RawPeer, raw_server, run, server

Seen = list[tuple[str, dict[str, str]]]


def headers_of(head: bytes) -> tuple[str, dict[str, str]]:
    """The target and the headers (lower-case names) of a request head."""
    lines = head.decode("latin-1").split("\r\n")
    fields = [line.partition(":") for line in lines[1:] if line]
    return lines[0].split(" ")[1], {name.strip().lower(): value.strip() for name, _, value in fields}


async def redirecting_server(nursery: trio.Nursery, hops: dict[str, tuple[int, str]], seen: Seen, **kwargs: Any) -> int:
    """wsfast.trio's server: requests for a target in ``hops`` get ``(status,
    Location)``, the others are accepted and sent their target; ``seen``
    records every request. ``hops`` may be filled in once the port is known."""

    def route(ws: wsfast.trio.WebSocket, request: Request) -> Optional[Response]:
        seen.append((request.target, {name.lower(): value for name, value in request.headers}))
        if request.target in hops:
            status, location = hops[request.target]
            return Response(status, Headers([("Location", location)]), b"moved")
        return None

    async def handler(ws: wsfast.trio.WebSocket) -> None:
        assert ws.request is not None
        await ws.send(ws.request.target)

    return (await server(nursery, handler, process_request=route, **kwargs)).port


async def plain_redirector(nursery: trio.Nursery, status: int, location: str, seen: Seen) -> int:
    """A raw Trio server answering every request with ``status`` and ``location``."""

    async def answer(peer: RawPeer) -> None:
        seen.append(headers_of(await peer.read_until(b"\r\n\r\n")))
        await peer.stream.send_all(
            f"HTTP/1.1 {status} Moved\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n".encode()
        )

    return await raw_server(nursery, answer)


def test_same_origin_chain_keeps_credentials(caplog: pytest.LogCaptureFixture) -> None:
    seen: Seen = []
    hops: dict[str, tuple[int, str]] = {}

    async def test() -> None:
        async with trio.open_nursery() as nursery:
            port = await redirecting_server(nursery, hops, seen)
            hops["/a/start?x=1"] = (302, "next")  # relative
            hops["/a/next"] = (301, "/b")  # absolute path
            hops["/b"] = (303, f"ws://127.0.0.1:{port}/c")  # absolute URI
            hops["/c"] = (308, f"http://127.0.0.1:{port}/final")  # http:// maps to ws://
            uri = f"ws://alice:s3cret@127.0.0.1:{port}/a/start?x=1"
            async with wsfast.trio.connect(uri, extra_headers=[("Cookie", "session=1"), ("X-Trace", "42")]) as ws:
                assert await ws.recv() == "/final"
            nursery.cancel_scope.cancel()

    with caplog.at_level(logging.INFO, logger="wsfast.client"):
        run(test)
    assert [target for target, _ in seen] == ["/a/start?x=1", "/a/next", "/b", "/c", "/final"]
    basic = basic_auth_header("alice", "s3cret")
    for _, headers in seen:
        assert (headers.get("authorization"), headers.get("cookie"), headers.get("x-trace")) == (
            basic,
            "session=1",
            "42",
        )
    logged = [r.getMessage() for r in caplog.records if r.name == "wsfast.client"]
    assert len(logged) == 4
    assert logged[0].startswith("HTTP 302: redirected from ws://127.0.0.1:") and logged[0].endswith("/a/next")
    assert logged[3].startswith("HTTP 308: redirected from") and logged[3].endswith("/final")


@pytest.mark.parametrize("credentials", ["uri", "headers"])
def test_307_to_another_port_drops_credentials(credentials: str) -> None:
    front: Seen = []
    back: Seen = []

    async def test() -> None:
        async with trio.open_nursery() as nursery:
            port = await redirecting_server(nursery, {}, back)
            redirector = await plain_redirector(nursery, 307, f"ws://127.0.0.1:{port}/there", front)
            if credentials == "uri":
                uri, extra = f"ws://alice:s3cret@127.0.0.1:{redirector}/here", [("X-Trace", "42")]
            else:
                uri = f"ws://127.0.0.1:{redirector}/here"
                extra = [("Authorization", "Bearer t0ken"), ("Cookie", "c=1"), ("Proxy-Authorization", "x")]
                extra.append(("X-Trace", "42"))
            async with wsfast.trio.connect(uri, extra_headers=extra) as ws:
                assert await ws.recv() == "/there"
            nursery.cancel_scope.cancel()

    run(test)
    ((_, sent_front),) = front
    ((_, sent_back),) = back
    if credentials == "uri":
        assert sent_front["authorization"] == basic_auth_header("alice", "s3cret")
    else:
        assert sent_front["authorization"] == "Bearer t0ken" and sent_front["cookie"] == "c=1"
    assert sent_back["x-trace"] == "42"
    assert not {"authorization", "cookie", "proxy-authorization"} & set(sent_back)


def test_redirect_loop_hits_max_redirects() -> None:
    seen: Seen = []
    hops = {"/ping": (302, "/pong"), "/pong": (307, "/ping")}

    async def test() -> None:
        async with trio.open_nursery() as nursery:
            port = await redirecting_server(nursery, hops, seen)
            with pytest.raises(InvalidRedirect) as info:
                await wsfast.trio.connect(f"ws://127.0.0.1:{port}/ping", nursery=nursery, max_redirects=3)
            error = info.value
            assert [uri.rsplit("/", 1)[1] for uri in error.chain] == ["ping", "pong", "ping", "pong", "ping"]
            assert str(error).startswith("more than 3 redirects (redirects: ws://127.0.0.1:")
            assert isinstance(error.response, Response) and error.response.status == 307
            with pytest.raises(InvalidRedirect, match="more than 10 redirects"):  # the default
                async with wsfast.trio.connect(f"ws://127.0.0.1:{port}/ping"):
                    pass
            nursery.cancel_scope.cancel()

    run(test)
    assert len(seen) == 4 + 11  # the first request and 3 (then 10) redirects followed


def test_wss_to_ws_is_refused(server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext) -> None:
    seen: Seen = []

    async def test() -> None:
        async with trio.open_nursery() as nursery:
            port = await redirecting_server(nursery, {"/": (301, "ws://127.0.0.1:1/plain")}, seen, ssl=server_ssl)
            with pytest.raises(
                InvalidRedirect, match=r"refused a redirect from wss:// to ws:// \(ws://127.0.0.1:1/plain\)"
            ):
                async with wsfast.trio.connect(
                    f"wss://127.0.0.1:{port}/", ssl=client_ssl
                ).reconnecting() as connections:
                    async for _ in connections:
                        raise AssertionError("connected")  # and no retry either
            nursery.cancel_scope.cancel()

    run(test)
    assert len(seen) == 1


def test_ws_to_wss_is_followed(
    monkeypatch: pytest.MonkeyPatch, server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    seen: Seen = []
    # A wss:// target reached by a redirect gets the default context: make it trust the test CA.
    monkeypatch.setattr("wsfast.options._default_ssl_context", client_ssl)

    async def test() -> None:
        async with trio.open_nursery() as nursery:
            port = await redirecting_server(nursery, {}, [], ssl=server_ssl)
            redirector = await plain_redirector(nursery, 301, f"https://127.0.0.1:{port}/secure", seen)
            async with wsfast.trio.connect(f"ws://127.0.0.1:{redirector}/") as ws:
                assert await ws.recv() == "/secure"
                assert isinstance(ws.stream, trio.SSLStream)
            nursery.cancel_scope.cancel()

    run(test)
    assert len(seen) == 1


def test_refusals_of_the_location() -> None:
    seen: Seen = []

    async def test() -> None:
        async with trio.open_nursery() as nursery:
            ftp = await plain_redirector(nursery, 302, "ftp://127.0.0.1/file", seen)
            with pytest.raises(InvalidRedirect, match="refused a redirect to 'ftp://127.0.0.1/file'"):
                async with wsfast.trio.connect(f"ws://127.0.0.1:{ftp}/"):
                    pass
            elsewhere = await plain_redirector(nursery, 302, "ws://127.0.0.1:1/", seen)
            with pytest.raises(InvalidRedirect, match="another origin with path= or server_hostname="):
                async with wsfast.trio.connect(f"ws://127.0.0.1:{elsewhere}/", server_hostname="example.com"):
                    pass
            with pytest.raises(InvalidRedirect, match="more than 0 redirects"):
                async with wsfast.trio.connect(f"ws://127.0.0.1:{elsewhere}/", max_redirects=0):
                    pass
            nursery.cancel_scope.cancel()

    run(test)
    assert len(seen) == 3


def test_redirect_without_location_is_a_refusal() -> None:
    async def test() -> None:
        async with trio.open_nursery() as nursery:
            srv = await server(nursery, process_request=lambda ws, request: Response(302))
            with pytest.raises(InvalidHandshake, match="HTTP 302") as info:
                async with wsfast.trio.connect(f"ws://127.0.0.1:{srv.port}/"):
                    pass
            assert not isinstance(info.value, InvalidRedirect)
            nursery.cancel_scope.cancel()

    run(test)


def test_negative_max_redirects_fails_at_once() -> None:
    with pytest.raises(ValueError, match="max_redirects must be 0 or more"):
        wsfast.trio.connect("ws://127.0.0.1:1/", max_redirects=-1)
