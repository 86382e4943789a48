"""wsfast.sync.connect follows redirects, and wsfast.sync.reconnecting
reconnects with backoff, over real sockets on 127.0.0.1. Delays are checked
as computed (logged), never against the wall clock; the backoff settings are
small so that every test is quick."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from typing import Any, Callable, Iterator, Optional

import pytest

from wsfast.exceptions import ConnectionClosed, InvalidHandshake, InvalidRedirect
from wsfast.http11 import Headers, Request, Response
from wsfast.sync import WebSocket, connect, reconnecting

from ..retry_logs import ceiling, logged, retries
from .helpers import TIMEOUT, accept_upgrade, frame, read_frame, read_head, running, wait_until

FAST: dict[str, Any] = {"backoff_initial_delay": 0.01, "backoff_factor": 2.0, "backoff_max_delay": 0.04}

Seen = list[tuple[str, dict[str, str]]]


class Acceptor:
    """A socket bound to a free port: connections are refused until
    :meth:`listen`; then each one runs ``on_connection(sock, number)`` in a
    thread (``number`` counts from 0)."""

    def __init__(self, on_connection: Callable[[socket.socket, int], None]) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.uri = f"ws://127.0.0.1:{self.port}/"
        self.on_connection = on_connection
        self.accepted = 0
        self.thread: Optional[threading.Thread] = None

    def listen(self) -> None:
        self.sock.listen()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.sock.accept()
            except OSError:
                return
            sock.settimeout(TIMEOUT)
            number, self.accepted = self.accepted, self.accepted + 1
            threading.Thread(target=self._run, args=(sock, number), daemon=True).start()

    def _run(self, sock: socket.socket, number: int) -> None:
        with sock:
            try:
                self.on_connection(sock, number)
            except OSError:
                pass

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        if self.thread is not None:
            self.thread.join(TIMEOUT)


@pytest.fixture
def acceptor() -> Iterator[Callable[[Callable[[socket.socket, int], None]], Acceptor]]:
    made: list[Acceptor] = []

    def make(on_connection: Callable[[socket.socket, int], None]) -> Acceptor:
        made.append(Acceptor(on_connection))
        return made[-1]

    yield make
    for each in made:
        each.close()


def echo_frames(sock: socket.socket) -> None:
    """After the upgrade: echo each frame (unmasked) until a close frame."""
    while True:
        opcode, payload = read_frame(sock)
        sock.sendall(frame(opcode, payload))
        if opcode == 8:
            return


def accept_and_echo(sock: socket.socket, number: int = 0) -> None:
    accept_upgrade(sock)
    echo_frames(sock)


def echo_once(ws: WebSocket) -> Any:
    ws.send("ping")
    return ws.recv(TIMEOUT)


def answer(sock: socket.socket, status: str, headers: str = "") -> bytes:
    head = read_head(sock)
    sock.sendall(f"HTTP/1.1 {status}\r\n{headers}Content-Length: 4\r\n\r\nbusy".encode())
    return head


# ---------------------------------------------------------------- reconnecting


def test_server_down_then_up(caplog: pytest.LogCaptureFixture, acceptor: Any) -> None:
    server = acceptor(accept_and_echo)

    def come_up_after_failures() -> None:
        wait_until(lambda: len(retries(caplog)) >= 3)
        server.listen()

    threading.Thread(target=come_up_after_failures, daemon=True).start()
    with caplog.at_level(logging.INFO, logger="wsfast.client"):
        for ws in reconnecting(server.uri, **FAST):
            assert echo_once(ws) == "ping"
            break
    assert ws.close_code == 1000  # break closed it
    logged = retries(caplog)
    assert len(logged) >= 3
    for number, (attempt, reason, delay) in enumerate(logged, 1):
        assert attempt == number
        assert "ConnectionRefusedError" in reason
        assert 0 <= delay <= ceiling(attempt)


def test_503_then_101_with_retry_after_within_max_delay(caplog: pytest.LogCaptureFixture, acceptor: Any) -> None:
    def flaky(sock: socket.socket, number: int) -> None:
        if number < 2:
            answer(sock, "503 Service Unavailable", "Retry-After: 30\r\n" if number == 1 else "")
        else:
            accept_and_echo(sock)

    server = acceptor(flaky)
    server.listen()
    with caplog.at_level(logging.INFO, logger="wsfast.client"):
        for ws in reconnecting(server.uri, **FAST):
            assert echo_once(ws) == "ping"
            break
    assert server.accepted == 3
    (first, reason1, delay1), (second, reason2, delay2) = retries(caplog)
    assert (first, second) == (1, 2)
    assert "HTTP 503" in reason1 and "HTTP 503" in reason2
    assert 0 <= delay1 <= 0.01
    assert delay2 == 0.04  # Retry-After: 30, within backoff_max_delay


@pytest.mark.parametrize("status", ["400 Bad Request", "403 Forbidden", "404 Not Found", "501 Not Implemented"])
def test_refusals_are_not_retried(caplog: pytest.LogCaptureFixture, acceptor: Any, status: str) -> None:
    server = acceptor(lambda sock, number: answer(sock, status))
    server.listen()
    with caplog.at_level(logging.INFO, logger="wsfast.client"):
        with pytest.raises(InvalidHandshake) as info:
            for _ in reconnecting(server.uri, **FAST):
                pytest.fail("connected")
    assert isinstance(info.value.response, Response) and info.value.response.status == int(status[:3])
    assert server.accepted == 1 and retries(caplog) == []


def test_max_attempts(caplog: pytest.LogCaptureFixture, acceptor: Any) -> None:
    server = acceptor(accept_and_echo)  # never listens: refused
    with caplog.at_level(logging.INFO, logger="wsfast.client"):
        with pytest.raises(ConnectionRefusedError):
            for _ in reconnecting(server.uri, max_attempts=3, **FAST):
                pytest.fail("connected")
    assert [attempt for attempt, _, _ in retries(caplog)] == [1, 2]
    (error,) = logged(caplog, logging.ERROR)
    assert error[1] == 3 and error[3] == 3


def test_should_retry(acceptor: Any) -> None:
    server = acceptor(accept_and_echo)
    seen: list[Exception] = []

    def never(exc: Exception) -> bool:
        seen.append(exc)
        return False

    with pytest.raises(ConnectionRefusedError):
        for _ in reconnecting(server.uri, should_retry=never, **FAST):
            pytest.fail("connected")
    assert len(seen) == 1


def test_a_dropped_connection_is_reconnected(caplog: pytest.LogCaptureFixture, acceptor: Any) -> None:
    """The first connection drops without a close frame; the body's
    ``continue`` reconnects, the backoff started over."""

    def drop_first(sock: socket.socket, number: int) -> None:
        accept_upgrade(sock)
        if number > 0:
            echo_frames(sock)

    server = acceptor(drop_first)
    server.listen()
    codes: list[Optional[int]] = []
    with caplog.at_level(logging.INFO, logger="wsfast.client"):
        for ws in reconnecting(server.uri, **FAST):
            try:
                assert echo_once(ws) == "ping"
            except ConnectionClosed:
                codes.append(ws.close_code)
                continue
            break
    assert codes == [1006] and server.accepted == 2
    assert retries(caplog) == []
    ((uri, code, delay),) = logged(caplog, logging.INFO, "reconnecting in")
    assert code == 1006 and 0 <= delay <= 0.01


def test_continue_closes_and_reconnects(acceptor: Any) -> None:
    closes: list[int] = []

    def record_close(sock: socket.socket, number: int) -> None:
        accept_and_echo(sock)
        closes.append(number)

    server = acceptor(record_close)
    server.listen()
    for count, ws in enumerate(reconnecting(server.uri, **FAST)):
        assert echo_once(ws) == "ping"
        if count == 2:
            break
    wait_until(lambda: len(closes) == 3)
    assert sorted(closes) == [0, 1, 2]


def test_sock_refused() -> None:
    with pytest.raises(ValueError, match="sock="):
        reconnecting("ws://127.0.0.1:1/", sock=socket.socket())


# ---------------------------------------------------------------- redirects


def redirecting(hops: dict[str, tuple[int, str]], seen: Seen, **kwargs: Any) -> Any:
    """wsfast.sync's server: requests for a target in ``hops`` get ``(status,
    Location)``, the others are accepted and sent their target; ``seen``
    records every request."""

    def route(ws: WebSocket, request: Request) -> Optional[Response]:
        seen.append((request.target, {name.lower(): value for name, value in request.headers}))
        if request.target in hops:
            status, location = hops[request.target]
            return Response(status, Headers([("Location", location)]), b"moved")
        return None

    def handler(ws: WebSocket) -> None:
        assert ws.request is not None
        ws.send(ws.request.target)

    return running(handler, process_request=route, **kwargs)


def test_same_origin_chain_keeps_credentials(caplog: pytest.LogCaptureFixture) -> None:
    seen: Seen = []
    hops: dict[str, tuple[int, str]] = {}
    with redirecting(hops, seen) as server, caplog.at_level(logging.INFO, logger="wsfast.client"):
        port = server.port
        hops["/a/start?x=1"] = (302, "next")  # relative
        hops["/a/next"] = (301, "/b")  # absolute path
        hops["/b"] = (303, f"ws://127.0.0.1:{port}/c")  # absolute URI
        hops["/c"] = (308, f"http://127.0.0.1:{port}/final")  # http:// maps to ws://
        uri = f"ws://alice:s3cret@127.0.0.1:{port}/a/start?x=1"
        with connect(uri, extra_headers=[("Cookie", "session=1"), ("X-Trace", "42")]) as ws:
            assert ws.recv(TIMEOUT) == "/final"
    assert [target for target, _ in seen] == ["/a/start?x=1", "/a/next", "/b", "/c", "/final"]
    for _, headers in seen:
        assert headers["authorization"].startswith("Basic ")
        assert headers["cookie"] == "session=1" and headers["x-trace"] == "42"
    assert len(logged(caplog, logging.INFO, "redirected from")) == 4


def test_another_origin_drops_credentials() -> None:
    seen: Seen = []
    hops: dict[str, tuple[int, str]] = {}
    with redirecting(hops, seen) as server:
        hops["/"] = (307, f"ws://localhost:{server.port}/there")  # another host: another origin
        uri = f"ws://alice:s3cret@127.0.0.1:{server.port}/"
        with connect(uri, extra_headers=[("Cookie", "session=1"), ("X-Trace", "42")]) as ws:
            assert ws.recv(TIMEOUT) == "/there"
    (_, first), (_, second) = seen
    assert "authorization" in first and "cookie" in first
    assert "authorization" not in second and "cookie" not in second and second["x-trace"] == "42"


def test_max_redirects() -> None:
    seen: Seen = []
    with redirecting({"/": (302, "/")}, seen) as server:
        with pytest.raises(InvalidRedirect, match="more than 2 redirects"):
            connect(f"ws://127.0.0.1:{server.port}/", max_redirects=2)
    assert len(seen) == 3


def test_wss_to_ws_refused_and_not_retried(server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext) -> None:
    seen: Seen = []
    with redirecting({"/": (302, "ws://127.0.0.1:1/")}, seen, ssl=server_ssl) as server:
        uri = f"wss://127.0.0.1:{server.port}/"
        with pytest.raises(InvalidRedirect, match="from wss:// to ws://"):
            connect(uri, ssl=client_ssl)
        with pytest.raises(InvalidRedirect):
            for _ in reconnecting(uri, ssl=client_ssl, **FAST):
                pytest.fail("connected")
    assert len(seen) == 2


def test_redirect_with_sock_refused() -> None:
    seen: Seen = []
    with redirecting({"/": (302, "/there")}, seen) as server:
        sock = socket.create_connection(("127.0.0.1", server.port))
        with pytest.raises(InvalidRedirect, match="with sock="):
            connect("ws://127.0.0.1/", sock=sock)


def test_reconnecting_follows_redirects() -> None:
    seen: Seen = []
    with redirecting({"/": (302, "/there")}, seen) as server:
        for ws in reconnecting(f"ws://127.0.0.1:{server.port}/", **FAST):
            assert ws.recv(TIMEOUT) == "/there"
            break
