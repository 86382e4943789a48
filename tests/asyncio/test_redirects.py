"""connect() follows redirects: plain asyncio servers write the 3xx
responses, or wsfast's own server answers them from ``process_request``
(same origin); wsfast's server accepts the upgrade at the end."""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any, Optional

import pytest

from wsfast.asyncio import WebSocket, WebSocketTransport, connect, serve
from wsfast.auth import basic_auth_header
from wsfast.exceptions import InvalidHandshake, InvalidRedirect, ProxyError
from wsfast.http11 import Headers, Request, Response

from .helpers import port_of, run

Seen = list[tuple[str, dict[str, str]]]


def headers_of(request: Request) -> dict[str, str]:
    return {name.lower(): value for name, value in request.headers}


def redirecting_server(hops: dict[str, tuple[int, str]], seen: Seen) -> Any:
    """wsfast's server: requests for a target in ``hops`` get ``(status,
    Location)``, the others are accepted and sent their target; ``seen``
    records every request. ``hops`` may be filled in once the port is known."""

    def route(ws: WebSocketTransport, request: Request) -> Optional[Response]:
        seen.append((request.target, headers_of(request)))
        if request.target in hops:
            status, location = hops[request.target]
            return Response(status, Headers([("Location", location)]), b"moved")
        return None

    async def handler(ws: WebSocket) -> None:
        assert ws.request is not None
        await ws.send(ws.request.target)

    return serve(handler, "127.0.0.1", 0, process_request=route)


async def plain_redirector(status: int, location: str, seen: Seen, **kwargs: Any) -> asyncio.AbstractServer:
    """A plain asyncio HTTP server answering every request with ``status`` and ``location``."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        fields = [line.partition(":") for line in lines[1:] if line]
        seen.append((lines[0].split(" ")[1], {name.strip().lower(): value.strip() for name, _, value in fields}))
        writer.write(f"HTTP/1.1 {status} Moved\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n".encode())
        await writer.drain()
        writer.close()

    return await asyncio.start_server(answer, "127.0.0.1", 0, **kwargs)


def test_same_origin_chain_keeps_credentials(caplog: pytest.LogCaptureFixture) -> None:
    seen: Seen = []
    hops: dict[str, tuple[int, str]] = {}

    async def main() -> Any:
        async with redirecting_server(hops, seen) as server:
            port = server.port
            hops["/a/start?x=1"] = (302, "next")  # relative
            hops["/a/next"] = (301, "/b")  # absolute path
            hops["/b"] = (303, f"ws://127.0.0.1:{port}/c")  # absolute URI
            hops["/c"] = (308, f"http://127.0.0.1:{port}/final")  # http:// maps to ws://
            uri = f"ws://alice:s3cret@127.0.0.1:{port}/a/start?x=1"
            async with connect(uri, extra_headers=[("Cookie", "session=1"), ("X-Trace", "42")]) as ws:
                return await ws.recv()

    with caplog.at_level(logging.INFO, logger="wsfast.client"):
        assert run(main()) == "/final"
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

    async def main() -> Any:
        async with redirecting_server({}, back) as server:
            redirector = await plain_redirector(307, f"ws://127.0.0.1:{server.port}/there", front)
            port = port_of(redirector)
            if credentials == "uri":
                uri, extra = f"ws://alice:s3cret@127.0.0.1:{port}/here", [("X-Trace", "42")]
            else:
                uri = f"ws://127.0.0.1:{port}/here"
                extra = [
                    ("Authorization", "Bearer t0ken"),
                    ("Cookie", "c=1"),
                    ("Proxy-Authorization", "x"),
                    ("X-Trace", "42"),
                ]
            async with connect(uri, extra_headers=extra) as ws:
                reply = await ws.recv()
            redirector.close()
            return reply

    assert run(main()) == "/there"
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
    hops: dict[str, tuple[int, str]] = {"/ping": (302, "/pong"), "/pong": (307, "/ping")}

    async def main() -> InvalidRedirect:
        async with redirecting_server(hops, seen) as server:
            with pytest.raises(InvalidRedirect) as info:
                await connect(f"ws://127.0.0.1:{server.port}/ping", max_redirects=3)
            return info.value

    error = run(main())
    assert len(seen) == 4  # the first request and 3 redirects followed
    assert len(error.chain) == 5
    assert [uri.rsplit("/", 1)[1] for uri in error.chain] == ["ping", "pong", "ping", "pong", "ping"]
    assert str(error).startswith("more than 3 redirects (redirects: ws://127.0.0.1:")
    assert isinstance(error.response, Response) and error.response.status == 307


def test_default_max_redirects_is_10() -> None:
    seen: Seen = []

    async def main() -> InvalidRedirect:
        async with redirecting_server({"/loop": (302, "/loop")}, seen) as server:
            with pytest.raises(InvalidRedirect, match="more than 10 redirects") as info:
                await connect(f"ws://127.0.0.1:{server.port}/loop")
            return info.value

    assert len(run(main()).chain) == 12
    assert len(seen) == 11


def test_wss_to_ws_is_refused(server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext) -> None:
    seen: Seen = []

    async def main() -> InvalidRedirect:
        redirector = await plain_redirector(301, "ws://127.0.0.1:1/plain", seen, ssl=server_ssl)
        try:
            with pytest.raises(InvalidRedirect) as info:
                async for _ in connect(f"wss://127.0.0.1:{port_of(redirector)}/", ssl=client_ssl):
                    raise AssertionError("connected")  # and no retry either
            return info.value
        finally:
            redirector.close()

    error = run(main())
    assert "refused a redirect from wss:// to ws:// (ws://127.0.0.1:1/plain)" in str(error)
    assert len(seen) == 1


def test_ws_to_wss_is_followed(
    monkeypatch: pytest.MonkeyPatch, server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    seen: Seen = []
    # A wss:// target reached by a redirect gets the default context: make it trust the test CA.
    monkeypatch.setattr("wsfast.options._default_ssl_context", client_ssl)

    async def main() -> Any:
        async with serve(lambda ws: ws.send("secure"), "127.0.0.1", 0, ssl=server_ssl) as server:
            redirector = await plain_redirector(301, f"https://127.0.0.1:{server.port}/", seen)
            async with connect(f"ws://127.0.0.1:{port_of(redirector)}/") as ws:
                reply = await ws.recv(), ws.transport.transport.get_extra_info("ssl_object") is not None
            redirector.close()
            return reply

    assert run(main()) == ("secure", True)
    assert len(seen) == 1


def test_ftp_location_is_refused() -> None:
    seen: Seen = []

    async def main() -> InvalidRedirect:
        redirector = await plain_redirector(302, "ftp://127.0.0.1/file", seen)
        try:
            with pytest.raises(InvalidRedirect) as info:
                await connect(f"ws://127.0.0.1:{port_of(redirector)}/")
            return info.value
        finally:
            redirector.close()

    error = run(main())
    assert "refused a redirect to 'ftp://127.0.0.1/file': only ws, wss, http and https URIs are followed" in str(error)


def test_redirect_without_location_is_a_refusal() -> None:
    async def main() -> None:
        async with serve(
            lambda ws: ws.send("x"), "127.0.0.1", 0, process_request=lambda ws, r: Response(302)
        ) as server:
            with pytest.raises(InvalidHandshake, match="HTTP 302") as info:
                await connect(f"ws://127.0.0.1:{server.port}/")
            assert not isinstance(info.value, InvalidRedirect)

    run(main())


def test_max_redirects_0_follows_none() -> None:
    seen: Seen = []

    async def main() -> None:
        async with redirecting_server({"/": (307, "/other")}, seen) as server:
            with pytest.raises(InvalidRedirect, match="more than 0 redirects"):
                await connect(f"ws://127.0.0.1:{server.port}/", max_redirects=0)

    run(main())
    assert len(seen) == 1


def test_redirect_to_another_origin_with_server_hostname_is_refused(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    seen: Seen = []

    async def main() -> None:
        redirector = await plain_redirector(307, "wss://127.0.0.2:1/", seen, ssl=server_ssl)
        with pytest.raises(InvalidRedirect, match="another origin with path= or server_hostname="):
            await connect(f"wss://127.0.0.1:{port_of(redirector)}/", ssl=client_ssl, server_hostname="localhost")
        redirector.close()

    run(main())


def test_negative_max_redirects_fails_at_once() -> None:
    with pytest.raises(ValueError, match="max_redirects must be 0 or more"):
        connect("ws://127.0.0.1:1/", max_redirects=-1)


def test_a_proxy_redirect_is_not_followed() -> None:
    # A proxy answering CONNECT with a 3xx (a captive portal) refuses the
    # tunnel: the client reports the proxy's answer, it does not go there.
    seen: Seen = []

    async def main() -> ProxyError:
        proxy = await plain_redirector(302, "http://portal.invalid/login", seen)
        async with proxy:
            with pytest.raises(ProxyError) as info:
                await connect("ws://127.0.0.1:9/", proxy=f"http://127.0.0.1:{port_of(proxy)}", open_timeout=5)
            return info.value

    error = run(main())
    assert error.status == 302 and not isinstance(error, InvalidRedirect)
    assert [target for target, _ in seen] == ["127.0.0.1:9"]
