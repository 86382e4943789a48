"""Tests of the opening handshake (RFC 6455 section 4; RFC 7692 negotiation),
through :class:`ServerConnection` and :class:`ClientConnection`, both fed raw
bytes, and through the functions of :mod:`wsfast.handshake`.

Expected values come from the RFCs (the section 1.3 example, the accept-key
algorithm re-implemented here), never from wsfast itself.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any, Optional

import pytest

from wsfast.events import BinaryMessage, HandshakeFailed, Ping, TextMessage
from wsfast.exceptions import ConnectionClosed, InvalidHandshake, InvalidState, NegotiationError
from wsfast.extensions import DEFAULT_DEFLATE, PerMessageDeflate
from wsfast.handshake import accept_key, generate_key
from wsfast.http11 import Headers, Request, Response, parse_request
from wsfast.protocol import ClientConnection, ServerConnection, State

RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
MASK = bytes.fromhex("37fa213d")


def reference_accept(key: str) -> str:
    digest = hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
    return base64.b64encode(digest).decode()


def client_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """A masked frame, encoded independently of wsfast (payload < 126 bytes)."""
    assert len(payload) < 126
    masked = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
    return bytes(((0x80 if fin else 0) | opcode, 0x80 | len(payload))) + MASK + masked


def server_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    assert len(payload) < 126
    return bytes(((0x80 if fin else 0) | opcode, len(payload))) + payload


def request_bytes(
    *,
    method: str = "GET",
    target: str = "/chat",
    version: str = "HTTP/1.1",
    headers: Optional[list[tuple[str, str]]] = None,
    drop: tuple[str, ...] = (),
    extra: tuple[tuple[str, str], ...] = (),
) -> bytes:
    if headers is None:
        headers = [
            ("Host", "server.example.com"),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", RFC_KEY),
            ("Sec-WebSocket-Version", "13"),
        ]
    lines = [f"{method} {target} {version}"]
    lines += [f"{n}: {v}" for n, v in headers if n.lower() not in {d.lower() for d in drop}]
    lines += [f"{n}: {v}" for n, v in extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def split_response(data: bytes) -> tuple[str, dict[str, list[str]], bytes]:
    """Status line, header map (lower-cased names) and body of raw response bytes."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return lines[0], headers, body


def server_receive(data: bytes, **kwargs: Any) -> tuple[ServerConnection, list[Any]]:
    kwargs.setdefault("deflate", None)
    server = ServerConnection(**kwargs)
    events = server.receive_data(data)
    return server, events


def accept_or_reject(server: ServerConnection) -> bytes:
    """What a server application does: accept, or reject with the error's response."""
    try:
        return server.accept()
    except InvalidHandshake as exc:
        assert isinstance(exc.response, Response), "InvalidHandshake without a response to send"
        return server.reject(exc.response)


def response_bytes(
    key: str,
    *,
    status: str = "101 Switching Protocols",
    headers: Optional[list[tuple[str, str]]] = None,
    drop: tuple[str, ...] = (),
    extra: tuple[tuple[str, str], ...] = (),
) -> bytes:
    if headers is None:
        headers = [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", reference_accept(key)),
        ]
    lines = [f"HTTP/1.1 {status}"]
    lines += [f"{n}: {v}" for n, v in headers if n.lower() not in {d.lower() for d in drop}]
    lines += [f"{n}: {v}" for n, v in extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def new_client(**kwargs: Any) -> tuple[ClientConnection, Request]:
    kwargs.setdefault("deflate", None)
    client = ClientConnection("server.example.com", "/chat", **kwargs)
    request = parse_request(client.data_to_send()[:-2])
    return client, request


# ---------------------------------------------------------------- RFC 6455 section 1.3


def test_accept_key_of_the_rfc_example() -> None:
    assert accept_key(RFC_KEY) == RFC_ACCEPT == reference_accept(RFC_KEY)


def test_rfc_example_server_response_byte_for_byte() -> None:
    request = (
        b"GET /chat HTTP/1.1\r\n"
        b"Host: server.example.com\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Origin: http://example.com\r\n"
        b"Sec-WebSocket-Protocol: chat, superchat\r\n"
        b"Sec-WebSocket-Version: 13\r\n"
        b"\r\n"
    )
    server = ServerConnection(subprotocols=["chat"], deflate=None)
    events = server.receive_data(request)
    assert len(events) == 1 and isinstance(events[0], Request)
    assert events[0].target == "/chat"
    assert events[0].headers["Origin"] == "http://example.com"
    assert server.accept() == (
        b"HTTP/1.1 101 Switching Protocols\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
        b"Sec-WebSocket-Protocol: chat\r\n"
        b"\r\n"
    )
    assert server.state is State.OPEN
    assert server.subprotocol == "chat"
    assert server.data_to_send() == b""


def test_rfc_example_client_side() -> None:
    client = ClientConnection(
        "server.example.com",
        "/chat",
        origin="http://example.com",
        subprotocols=["chat", "superchat"],
        key=RFC_KEY,
        deflate=None,
    )
    data = client.data_to_send()
    assert data.startswith(b"GET /chat HTTP/1.1\r\n") and data.endswith(b"\r\n\r\n")
    request = parse_request(data[:-2])
    assert sorted(request.headers.items()) == sorted(
        [
            ("Host", "server.example.com"),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", RFC_KEY),
            ("Origin", "http://example.com"),
            ("Sec-WebSocket-Protocol", "chat, superchat"),
            ("Sec-WebSocket-Version", "13"),
        ]
    )
    events = client.receive_data(
        b"HTTP/1.1 101 Switching Protocols\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
        b"Sec-WebSocket-Protocol: chat\r\n"
        b"\r\n"
    )
    assert len(events) == 1 and isinstance(events[0], Response) and events[0].status == 101
    assert client.state is State.OPEN
    assert client.subprotocol == "chat"
    assert client.deflate is None
    assert client.failure is None


# ---------------------------------------------------------------- server: request checks


BAD_REQUESTS = {
    "post": (dict(method="POST"), 405),
    "head": (dict(method="HEAD"), 405),
    "http10": (dict(version="HTTP/1.0"), 400),
    "no-host": (dict(drop=("Host",)), 400),
    "two-hosts": (dict(extra=(("Host", "other.example"),)), 400),
    "no-upgrade": (dict(drop=("Upgrade",)), 426),
    "upgrade-h2c": (dict(drop=("Upgrade",), extra=(("Upgrade", "h2c"),)), 426),
    "no-connection": (dict(drop=("Connection",)), 426),
    "connection-keep-alive": (dict(drop=("Connection",), extra=(("Connection", "keep-alive"),)), 426),
    "no-version": (dict(drop=("Sec-WebSocket-Version",)), 426),
    "version-8": (dict(drop=("Sec-WebSocket-Version",), extra=(("Sec-WebSocket-Version", "8"),)), 426),
    "version-13-twice": (dict(extra=(("Sec-WebSocket-Version", "13"),)), 426),
    "no-key": (dict(drop=("Sec-WebSocket-Key",)), 400),
    "two-keys": (dict(extra=(("Sec-WebSocket-Key", RFC_KEY),)), 400),
    "key-not-base64": (
        dict(drop=("Sec-WebSocket-Key",), extra=(("Sec-WebSocket-Key", "not base64!!!!!!!!!!!!=="),)),
        400,
    ),
    "key-15-bytes": (
        dict(
            drop=("Sec-WebSocket-Key",), extra=(("Sec-WebSocket-Key", base64.b64encode(b"x" * 15).decode()),)
        ),
        400,
    ),
    "key-17-bytes": (
        dict(
            drop=("Sec-WebSocket-Key",), extra=(("Sec-WebSocket-Key", base64.b64encode(b"x" * 17).decode()),)
        ),
        400,
    ),
    "key-empty": (dict(drop=("Sec-WebSocket-Key",), extra=(("Sec-WebSocket-Key", ""),)), 400),
    "key-unpadded": (
        dict(drop=("Sec-WebSocket-Key",), extra=(("Sec-WebSocket-Key", RFC_KEY.rstrip("=")),)),
        400,
    ),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_invalid_request_field_gets_its_status(case: str) -> None:
    kwargs, status = BAD_REQUESTS[case]
    server, events = server_receive(request_bytes(**kwargs))
    assert len(events) == 1 and isinstance(events[0], Request)
    with pytest.raises(InvalidHandshake) as info:
        server.accept()
    response = info.value.response
    assert isinstance(response, Response) and response.status == status
    assert server.state is State.CONNECTING  # the application decides what to send
    data = server.reject(response)
    status_line, headers, body = split_response(data)
    assert status_line.split(" ")[:2] == ["HTTP/1.1", str(status)]
    assert headers["content-length"] == [str(len(body))]
    assert server.state is State.CLOSED
    assert server.should_close_transport
    assert server.data_to_send() == b""
    if status == 405:
        assert headers["allow"] == ["GET"]


@pytest.mark.parametrize("case", ["version-8", "no-version", "version-13-twice"])
def test_bad_version_response_announces_version_13(case: str) -> None:
    kwargs, _ = BAD_REQUESTS[case]
    server, _ = server_receive(request_bytes(**kwargs))
    data = accept_or_reject(server)
    status_line, headers, _ = split_response(data)
    assert status_line.startswith("HTTP/1.1 426 ")
    assert headers["sec-websocket-version"] == ["13"]


@pytest.mark.parametrize("case", ["no-upgrade", "no-connection"])
def test_426_for_missing_upgrade_says_what_to_upgrade_to(case: str) -> None:
    kwargs, _ = BAD_REQUESTS[case]
    server, _ = server_receive(request_bytes(**kwargs))
    _, headers, _ = split_response(accept_or_reject(server))
    assert headers["upgrade"] == ["websocket"]


@pytest.mark.parametrize(
    "upgrade, connection",
    [
        ("WebSocket", "Upgrade"),
        ("websocket", "keep-alive, Upgrade"),
        ("h2c, WEBSOCKET", "UPGRADE , keep-alive"),
        ("websocket", "keep-alive,upgrade"),
    ],
)
def test_upgrade_and_connection_tokens_are_case_insensitive_lists(upgrade: str, connection: str) -> None:
    data = request_bytes(
        drop=("Upgrade", "Connection"), extra=(("Upgrade", upgrade), ("Connection", connection))
    )
    server, _ = server_receive(data)
    assert server.accept().startswith(b"HTTP/1.1 101 ")
    assert server.state is State.OPEN


def test_connection_tokens_across_repeated_fields() -> None:
    data = request_bytes(
        drop=("Connection",), extra=(("Connection", "keep-alive"), ("Connection", "Upgrade"))
    )
    server, _ = server_receive(data)
    assert server.accept().startswith(b"HTTP/1.1 101 ")


def test_http11_later_versions_are_fine() -> None:
    server, _ = server_receive(request_bytes(version="HTTP/1.1"))
    assert server.accept().startswith(b"HTTP/1.1 101 ")


def test_accept_response_carries_the_accept_key_of_the_request() -> None:
    key = generate_key()
    assert len(base64.b64decode(key, validate=True)) == 16
    data = request_bytes(drop=("Sec-WebSocket-Key",), extra=(("Sec-WebSocket-Key", key),))
    server, _ = server_receive(data)
    _, headers, body = split_response(server.accept())
    assert headers["sec-websocket-accept"] == [reference_accept(key)]
    assert headers["upgrade"] == ["websocket"]
    assert headers["connection"] == ["Upgrade"]
    assert "content-length" not in headers and body == b""


# ---------------------------------------------------------------- server: Origin


@pytest.mark.parametrize(
    "origins, origin, allowed",
    [
        (None, "https://evil.example", True),
        (None, None, True),
        (["https://app.example"], "https://app.example", True),
        (["https://app.example"], "https://evil.example", False),
        (["https://app.example"], "https://APP.example", False),
        (["https://app.example"], None, False),
        (["https://app.example", None], None, True),
        (["https://app.example", None], "https://app.example", True),
        (["https://app.example", None], "null", False),
        ([], "https://app.example", False),
        ([], None, False),
    ],
)
def test_origin_allow_list(origins: Any, origin: Optional[str], allowed: bool) -> None:
    extra = () if origin is None else (("Origin", origin),)
    server, _ = server_receive(request_bytes(extra=extra), origins=origins)
    data = accept_or_reject(server)
    if allowed:
        assert data.startswith(b"HTTP/1.1 101 ")
        assert server.state is State.OPEN
    else:
        assert data.startswith(b"HTTP/1.1 403 ")
        assert server.state is State.CLOSED


def test_repeated_origin_is_refused() -> None:
    extra = (("Origin", "https://app.example"), ("Origin", "https://app.example"))
    server, _ = server_receive(request_bytes(extra=extra), origins=["https://app.example"])
    assert accept_or_reject(server).startswith(b"HTTP/1.1 403 ")


# ---------------------------------------------------------------- server: subprotocols


def accepted_headers(server: ServerConnection, **kwargs: Any) -> dict[str, list[str]]:
    data = server.accept(**kwargs)
    status_line, headers, _ = split_response(data)
    assert status_line == "HTTP/1.1 101 Switching Protocols"
    return headers


@pytest.mark.parametrize(
    "offered, available, chosen",
    [
        ("chat, superchat", ["superchat", "chat"], "superchat"),
        ("chat, superchat", ["chat", "superchat"], "chat"),
        ("a, b, c", ["x", "c", "b"], "c"),
        ("a", ["b"], None),
        (None, ["chat"], None),
        ("chat", [], None),
    ],
)
def test_subprotocol_by_server_preference(
    offered: Optional[str], available: list[str], chosen: Optional[str]
) -> None:
    extra = () if offered is None else (("Sec-WebSocket-Protocol", offered),)
    server, _ = server_receive(request_bytes(extra=extra), subprotocols=available)
    headers = accepted_headers(server)
    assert headers.get("sec-websocket-protocol") == (None if chosen is None else [chosen])
    assert server.subprotocol == chosen


def test_subprotocols_offered_in_several_fields() -> None:
    extra = (("Sec-WebSocket-Protocol", "a"), ("Sec-WebSocket-Protocol", "b, c"))
    server, _ = server_receive(request_bytes(extra=extra), subprotocols=["c"])
    assert accepted_headers(server)["sec-websocket-protocol"] == ["c"]


def test_subprotocol_by_callback() -> None:
    seen: list[Any] = []

    def select(request: Request, offered: Any) -> Optional[str]:
        seen.append((request.target, list(offered)))
        return offered[-1]

    extra = (("Sec-WebSocket-Protocol", "a, b, c"),)
    server, _ = server_receive(request_bytes(extra=extra), subprotocols=["a"], select_subprotocol=select)
    assert accepted_headers(server)["sec-websocket-protocol"] == ["c"]
    assert server.subprotocol == "c"
    assert seen == [("/chat", ["a", "b", "c"])]


def test_subprotocol_callback_may_choose_none() -> None:
    extra = (("Sec-WebSocket-Protocol", "a, b"),)
    server, _ = server_receive(
        request_bytes(extra=extra), subprotocols=["a"], select_subprotocol=lambda r, o: None
    )
    assert "sec-websocket-protocol" not in accepted_headers(server)
    assert server.subprotocol is None


def test_subprotocol_callback_choosing_something_not_offered_is_an_error() -> None:
    extra = (("Sec-WebSocket-Protocol", "a, b"),)
    server, _ = server_receive(request_bytes(extra=extra), select_subprotocol=lambda r, o: "zzz")
    with pytest.raises(NegotiationError):
        server.accept()
    assert server.state is State.CONNECTING


def test_subprotocol_callback_error_has_a_response_to_send() -> None:
    """accept() documents that its InvalidHandshake carries the response to
    send with reject(); a bad callback choice must not leave it None."""
    extra = (("Sec-WebSocket-Protocol", "a, b"),)
    server, _ = server_receive(request_bytes(extra=extra), select_subprotocol=lambda r, o: "zzz")
    data = accept_or_reject(server)
    status_line, _, _ = split_response(data)
    assert int(status_line.split(" ")[1]) >= 400
    assert server.state is State.CLOSED


def test_forced_subprotocol_must_have_been_offered() -> None:
    extra = (("Sec-WebSocket-Protocol", "a, b"),)
    server, _ = server_receive(request_bytes(extra=extra), subprotocols=["a"])
    assert accepted_headers(server, subprotocol="b")["sec-websocket-protocol"] == ["b"]
    server, _ = server_receive(request_bytes(extra=extra))
    with pytest.raises(NegotiationError):
        server.accept(subprotocol="x")


def test_accept_extra_headers_and_server_header() -> None:
    server, _ = server_receive(request_bytes(), server_header="wsfast/test")
    headers = accepted_headers(server, extra_headers=[("Set-Cookie", "a=b"), ("X-Id", "1")])
    assert headers["server"] == ["wsfast/test"]
    assert headers["set-cookie"] == ["a=b"]
    assert headers["x-id"] == ["1"]


# ---------------------------------------------------------------- server: permessage-deflate


def negotiate(
    offer: Optional[str], config: Optional[PerMessageDeflate] = DEFAULT_DEFLATE
) -> tuple[Optional[list[str]], ServerConnection]:
    extra = () if offer is None else (("Sec-WebSocket-Extensions", offer),)
    server, _ = server_receive(request_bytes(extra=extra), deflate=config)
    headers = accepted_headers(server)
    return headers.get("sec-websocket-extensions"), server


def session(server: ServerConnection) -> tuple[int, int, bool, bool]:
    deflate = server.deflate
    assert deflate is not None
    return deflate.compress_bits, deflate.decompress_bits, deflate.compress_reset, deflate.decompress_reset


DEFAULT = PerMessageDeflate(server_max_window_bits=None, client_max_window_bits=None)


@pytest.mark.parametrize(
    "offer, response, params",
    [
        # (compress_bits, decompress_bits, compress_reset, decompress_reset) of the server
        ("permessage-deflate", "permessage-deflate", (15, 15, False, False)),
        (
            "permessage-deflate; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover",
            (15, 15, True, False),
        ),
        (
            "permessage-deflate; client_no_context_takeover",
            "permessage-deflate; client_no_context_takeover",
            (15, 15, False, True),
        ),
        (
            "permessage-deflate; server_max_window_bits=10",
            "permessage-deflate; server_max_window_bits=10",
            (10, 15, False, False),
        ),
        (
            "permessage-deflate; server_max_window_bits=15",
            "permessage-deflate; server_max_window_bits=15",
            (15, 15, False, False),
        ),
        ("permessage-deflate; client_max_window_bits", "permessage-deflate", (15, 15, False, False)),
        (
            "permessage-deflate; client_max_window_bits=11",
            "permessage-deflate; client_max_window_bits=11",
            (15, 11, False, False),
        ),
        (
            'permessage-deflate; server_max_window_bits="9"',
            "permessage-deflate; server_max_window_bits=9",
            (9, 15, False, False),
        ),
        (
            "PERMESSAGE-DEFLATE ; Server_No_Context_Takeover ; client_no_context_takeover",
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
            (15, 15, True, True),
        ),
    ],
)
def test_deflate_parameters_accepted(offer: str, response: str, params: tuple[int, int, bool, bool]) -> None:
    header, server = negotiate(offer, DEFAULT)
    assert header == [response]
    assert session(server) == params


def test_deflate_server_configuration_applies() -> None:
    config = PerMessageDeflate(
        server_no_context_takeover=True,
        client_no_context_takeover=True,
        server_max_window_bits=11,
        client_max_window_bits=10,
    )
    header, server = negotiate("permessage-deflate; client_max_window_bits", config)
    assert header == [
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
        "server_max_window_bits=11; client_max_window_bits=10"
    ]
    assert session(server) == (11, 10, True, True)
    # The smaller of what the client asks and what the server wants.
    header, server = negotiate(
        "permessage-deflate; server_max_window_bits=9; client_max_window_bits=12", config
    )
    assert session(server)[:2] == (9, 10)
    header, server = negotiate(
        "permessage-deflate; server_max_window_bits=14; client_max_window_bits=9", config
    )
    assert session(server)[:2] == (11, 9)


def test_deflate_client_window_not_limited_unless_offered() -> None:
    """Without client_max_window_bits in the offer the server may not limit the
    client's window, so it must inflate with 15 bits and not answer the parameter."""
    header, server = negotiate("permessage-deflate", PerMessageDeflate(client_max_window_bits=9))
    assert header is not None and "client_max_window_bits" not in header[0]
    assert session(server)[1] == 15


@pytest.mark.parametrize(
    "offer",
    [
        "permessage-deflate; server_max_window_bits=8",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=010",
        "permessage-deflate; server_max_window_bits=+9",
        "permessage-deflate; server_max_window_bits=abc",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; client_max_window_bits=7",
        "permessage-deflate; client_max_window_bits=16",
        "permessage-deflate; client_max_window_bits=0",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; client_no_context_takeover=true",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
        "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
        "permessage-deflate; unknown_param",
        "permessage-deflate; mux=1",
        "x-webkit-deflate-frame",
        "deflate-frame; server_max_window_bits=10",
    ],
)
def test_unacceptable_deflate_offer_is_declined(offer: str) -> None:
    header, server = negotiate(offer)
    assert header is None
    assert server.deflate is None
    assert server.state is State.OPEN


def test_client_window_bits_8_accepted_but_inflated_with_9() -> None:
    """client_max_window_bits=8 in the offer: the server may answer 8 (the
    client's compressor is then at most 8 bits, which a 9-bit inflater reads)."""
    header, server = negotiate("permessage-deflate; client_max_window_bits=8", DEFAULT)
    if header is None:  # declining is allowed too, but then entirely
        assert server.deflate is None
    else:
        assert header == ["permessage-deflate; client_max_window_bits=8"]
        assert server.deflate is not None and server.deflate.decompress_bits >= 9


@pytest.mark.parametrize(
    "offer, response",
    [
        (
            "permessage-deflate; unknown, permessage-deflate; server_max_window_bits=10",
            "permessage-deflate; server_max_window_bits=10",
        ),
        (
            "permessage-deflate; server_max_window_bits=10, permessage-deflate",
            "permessage-deflate; server_max_window_bits=10",
        ),
        (
            "permessage-deflate; server_max_window_bits=8, permessage-deflate; server_max_window_bits=9",
            "permessage-deflate; server_max_window_bits=9",
        ),
        (
            "x-webkit-deflate-frame, permessage-deflate; client_no_context_takeover",
            "permessage-deflate; client_no_context_takeover",
        ),
    ],
)
def test_first_acceptable_offer_wins(offer: str, response: str) -> None:
    header, server = negotiate(offer, DEFAULT)
    assert header == [response]


def test_offers_across_repeated_fields() -> None:
    extra = (
        ("Sec-WebSocket-Extensions", "permessage-deflate; server_max_window_bits=8"),
        ("Sec-WebSocket-Extensions", "permessage-deflate; server_max_window_bits=11"),
    )
    server, _ = server_receive(request_bytes(extra=extra), deflate=DEFAULT)
    assert accepted_headers(server)["sec-websocket-extensions"] == [
        "permessage-deflate; server_max_window_bits=11"
    ]


def test_no_deflate_when_disabled_on_the_server() -> None:
    header, server = negotiate("permessage-deflate", None)
    assert header is None and server.deflate is None


@pytest.mark.parametrize(
    "value",
    [
        "permessage-deflate;",
        "permessage-deflate,",
        "permessage-deflate; server_max_window_bits=",
        "=permessage-deflate",
        "permessage-deflate=1",
        "permessage-deflate; a b",
        'permessage-deflate; server_max_window_bits="1 0"',
        'permessage-deflate; server_max_window_bits=""',
        ", permessage-deflate",
        "permessage deflate",
    ],
)
def test_malformed_extensions_header_is_400(value: str) -> None:
    server, _ = server_receive(
        request_bytes(extra=(("Sec-WebSocket-Extensions", value),)), deflate=PerMessageDeflate()
    )
    with pytest.raises(NegotiationError) as info:
        server.accept()
    assert isinstance(info.value.response, Response) and info.value.response.status == 400
    assert server.reject(info.value.response).startswith(b"HTTP/1.1 400 ")


# ---------------------------------------------------------------- server: reject, limits, chunking


@pytest.mark.parametrize(
    "response, expected",
    [
        (Response(404), b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
        (
            Response(401, Headers([("WWW-Authenticate", "Basic")]), b"who are you?"),
            b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic\r\nContent-Length: 12\r\n\r\nwho are you?",
        ),
        (
            Response(200, Headers([("Content-Type", "text/plain")]), b"ok\n", "Fine"),
            b"HTTP/1.1 200 Fine\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n",
        ),
        (Response(599, body=b"x"), b"HTTP/1.1 599 \r\nContent-Length: 1\r\n\r\nx"),
    ],
)
def test_reject_with_any_response(response: Response, expected: bytes) -> None:
    server, _ = server_receive(request_bytes())
    assert server.reject(response) == expected
    assert server.state is State.CLOSED
    assert server.should_close_transport
    assert server.response is response
    assert isinstance(server.failure, InvalidHandshake)
    assert server.data_to_send() == b""
    assert server.receive_data(client_frame(1, b"ignored")) == []
    with pytest.raises(InvalidState):
        server.accept()
    with pytest.raises(InvalidState):
        server.reject(Response(500))


def test_reject_without_reading_a_valid_request() -> None:
    server, _ = server_receive(request_bytes(method="POST"))
    assert server.reject(Response(403)).startswith(b"HTTP/1.1 403 Forbidden\r\n")


def test_accept_twice_is_invalid() -> None:
    server, _ = server_receive(request_bytes())
    server.accept()
    with pytest.raises(InvalidState):
        server.accept()
    with pytest.raises(InvalidState):
        server.reject(Response(400))


def test_accept_before_any_request_is_invalid() -> None:
    with pytest.raises(InvalidState):
        ServerConnection().accept()


def test_sending_before_accept_is_invalid() -> None:
    server, _ = server_receive(request_bytes())
    with pytest.raises(InvalidState):
        server.send_text("early")
    with pytest.raises(InvalidState):
        server.send_close()


def expect_http_error(server: ServerConnection, events: list[Any], status: int) -> None:
    assert len(events) == 1 and isinstance(events[0], HandshakeFailed)
    data = server.data_to_send()
    status_line, headers, body = split_response(data)
    assert status_line.split(" ")[:2] == ["HTTP/1.1", str(status)]
    assert headers["content-length"] == [str(len(body))]
    assert server.state is State.CLOSED
    assert server.should_close_transport
    assert isinstance(events[0].error, InvalidHandshake)
    assert events[0].error.response is not None and events[0].error.response.status == status


def test_request_line_too_long_is_414() -> None:
    server = ServerConnection(max_line_length=100)
    events = server.receive_data(b"GET /" + b"a" * 200 + b" HTTP/1.1\r\n")
    expect_http_error(server, events, 414)
    assert server.receive_data(b"Host: x\r\n\r\n") == []
    assert server.data_to_send() == b""


def test_request_line_too_long_detected_before_its_end() -> None:
    server = ServerConnection()
    events = server.receive_data(b"GET /" + b"a" * 10_000)
    expect_http_error(server, events, 414)


def test_too_many_headers_is_431() -> None:
    extra = tuple((f"X-H{i}", "v") for i in range(20))
    server = ServerConnection(max_headers=20)
    expect_http_error(server, server.receive_data(request_bytes(extra=extra)), 431)


def test_head_too_large_is_431() -> None:
    server = ServerConnection(max_head_size=1024)
    expect_http_error(server, server.receive_data(request_bytes(extra=(("X-Big", "b" * 1024),))), 431)


@pytest.mark.parametrize(
    "data",
    [
        b"hello\r\n\r\n",
        b"GET / HTTP/1.1\r\nno colon\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
    ],
)
def test_malformed_request_is_400(data: bytes) -> None:
    server = ServerConnection()
    expect_http_error(server, server.receive_data(data), 400)


def test_request_byte_by_byte() -> None:
    data = request_bytes(extra=(("Sec-WebSocket-Protocol", "chat"),))
    server = ServerConnection(subprotocols=["chat"], deflate=None)
    for i in range(len(data) - 1):
        assert server.receive_data(data[i : i + 1]) == []
    events = server.receive_data(data[-1:])
    assert len(events) == 1 and isinstance(events[0], Request)
    assert events[0].headers["Sec-WebSocket-Key"] == RFC_KEY
    assert b"Sec-WebSocket-Accept: " + RFC_ACCEPT.encode() in server.accept()


def test_60kb_request_head_byte_by_byte_completes() -> None:
    """Linear time: 60 KB in 1-byte reads completes, one event on the last byte,
    and the head reader's searches scan each byte about once."""
    extra = tuple((f"X-Pad-{i:03d}", "v" * 580) for i in range(100))
    data = request_bytes(extra=extra)
    assert 59_000 < len(data) < 65_536

    class CountingBuffer(bytearray):
        scanned = 0

        def find(self, sub, start=0, *args):  # type: ignore[no-untyped-def, override]
            self.scanned += len(self) - start
            return super().find(sub, start, *args)

    server = ServerConnection(deflate=None)
    buffer = CountingBuffer()
    server._head._buf = buffer  # type: ignore[union-attr]
    results = [server.receive_data(data[i : i + 1]) for i in range(len(data))]
    assert all(r == [] for r in results[:-1])
    assert len(results[-1]) == 1 and isinstance(results[-1][0], Request)
    assert len(results[-1][0].headers) == 105
    assert buffer.scanned <= 2 * len(data)
    assert server.accept().startswith(b"HTTP/1.1 101 ")


def test_frames_in_the_same_read_as_the_request_come_after_accept() -> None:
    frames = client_frame(1, b"hello") + client_frame(9, b"p") + client_frame(2, b"\x00\x01")
    server = ServerConnection(deflate=None)
    events = server.receive_data(request_bytes() + frames)
    assert len(events) == 1 and isinstance(events[0], Request)
    assert server.data_to_send() == b""  # no pong before the 101
    server.accept()
    assert server.receive_data(b"") == [TextMessage("hello"), Ping(b"p"), BinaryMessage(b"\x00\x01")]
    assert server.data_to_send() == server_frame(10, b"p")
    assert server.receive_data(b"") == []


def test_early_frames_split_across_reads_before_and_after_accept() -> None:
    frames = client_frame(1, b"first") + client_frame(1, b"second")
    data = request_bytes() + frames
    cut = len(request_bytes()) + 3
    server = ServerConnection(deflate=None)
    assert isinstance(server.receive_data(data[:cut])[0], Request)
    assert server.receive_data(data[cut : cut + 4]) == []  # waiting for accept()
    server.accept()
    assert server.receive_data(data[cut + 4 :]) == [TextMessage("first"), TextMessage("second")]


def test_accept_an_externally_parsed_request() -> None:
    request = parse_request(request_bytes()[:-2])
    server = ServerConnection(deflate=None)
    assert server.accept(request).startswith(b"HTTP/1.1 101 ")
    assert server.request is request
    assert server.receive_data(client_frame(1, b"hi")) == [TextMessage("hi")]


# ---------------------------------------------------------------- client: request


def test_client_request_has_every_required_header() -> None:
    client = ClientConnection(
        "example.com:8080",
        "/path?q=1",
        origin="https://app.example",
        subprotocols=["v2", "v1"],
        user_agent="wsfast-test/1",
        extra_headers=[("Authorization", "Bearer t")],
        deflate=PerMessageDeflate(),
    )
    assert client.state is State.CONNECTING
    data = client.data_to_send()
    assert client.data_to_send() == b""
    assert data.startswith(b"GET /path?q=1 HTTP/1.1\r\n") and data.endswith(b"\r\n\r\n")
    request = parse_request(data[:-2])
    headers = request.headers
    assert headers.get_all("Host") == ["example.com:8080"]
    assert "websocket" in headers["Upgrade"].lower()
    assert "upgrade" in [t.strip().lower() for t in headers["Connection"].split(",")]
    assert headers.get_all("Sec-WebSocket-Version") == ["13"]
    assert headers["Origin"] == "https://app.example"
    assert [p.strip() for p in headers["Sec-WebSocket-Protocol"].split(",")] == ["v2", "v1"]
    assert headers["User-Agent"] == "wsfast-test/1"
    assert headers["Authorization"] == "Bearer t"
    assert headers["Sec-WebSocket-Extensions"].startswith("permessage-deflate")
    (key,) = headers.get_all("Sec-WebSocket-Key")
    assert len(base64.b64decode(key, validate=True)) == 16


def test_client_request_minimal() -> None:
    _, request = new_client()
    names = {name.lower() for name, _ in request.headers}
    assert names == {"host", "upgrade", "connection", "sec-websocket-key", "sec-websocket-version"}


def test_client_key_is_fresh() -> None:
    keys = {new_client()[1].headers["Sec-WebSocket-Key"] for _ in range(20)}
    assert len(keys) == 20
    for key in keys:
        assert len(base64.b64decode(key, validate=True)) == 16


def test_client_cannot_send_before_the_response() -> None:
    client, _ = new_client()
    with pytest.raises(InvalidState):
        client.send_text("early")
    with pytest.raises(InvalidState):
        client.send_close()


# ---------------------------------------------------------------- client: response checks


def client_fails(client: ClientConnection, data: bytes) -> InvalidHandshake:
    events = client.receive_data(data)
    assert len(events) == 1 and isinstance(events[0], HandshakeFailed), events
    error = events[0].error
    assert isinstance(error, InvalidHandshake)
    assert client.state is State.CLOSED
    assert client.failure is error
    assert client.should_close_transport
    with pytest.raises(ConnectionClosed):
        client.send_text("x")
    assert client.receive_data(server_frame(1, b"late")) == []
    return error


def test_non_101_response_with_content_length_body() -> None:
    client, request = new_client()
    data = b"HTTP/1.1 403 Forbidden\r\nX-Why: origin\r\nContent-Length: 11\r\n\r\nnot allowed"
    error = client_fails(client, data)
    response = error.response
    assert isinstance(response, Response)
    assert (response.status, response.reason, response.body) == (403, "Forbidden", b"not allowed")
    assert response.headers["X-Why"] == "origin"


def test_non_101_response_body_in_pieces() -> None:
    client, _ = new_client()
    data = b"HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\n\r\n0123456789"
    for i in range(len(data) - 1):
        assert client.receive_data(data[i : i + 1]) == []
    error = client_fails(client, data[-1:])
    assert error.response.status == 404 and error.response.body == b"0123456789"  # type: ignore[union-attr]


def test_non_101_response_body_ignores_what_follows_content_length() -> None:
    client, _ = new_client()
    error = client_fails(client, b"HTTP/1.1 500 Oops\r\nContent-Length: 2\r\n\r\nabcdef")
    assert error.response.body == b"ab"  # type: ignore[union-attr]
    assert error.response.reason == "Oops"  # type: ignore[union-attr]


def test_non_101_response_empty_body() -> None:
    client, _ = new_client()
    error = client_fails(client, b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")
    assert error.response.status == 401 and error.response.body == b""  # type: ignore[union-attr]


def test_non_101_response_body_until_eof() -> None:
    client, _ = new_client()
    assert client.receive_data(b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n\r\nfirst ") == []
    assert client.receive_data(b"second") == []
    assert client.state is State.CONNECTING
    events = client.receive_eof()
    assert len(events) == 1 and isinstance(events[0], HandshakeFailed)
    response = events[0].error.response
    assert (response.status, response.body) == (400, b"first second")
    assert response.headers["Content-Type"] == "text/plain"
    assert client.state is State.CLOSED
    assert client.receive_eof() == []


def test_non_101_body_is_capped_at_max_body_size() -> None:
    client, _ = new_client(max_body_size=5)
    error = client_fails(client, b"HTTP/1.1 400 Bad Request\r\n\r\n0123456789")
    assert error.response.body == b"01234"  # type: ignore[union-attr]


def test_eof_during_handshake_fails() -> None:
    client, _ = new_client()
    client.receive_data(b"HTTP/1.1 101 Switching")
    events = client.receive_eof()
    assert len(events) == 1 and isinstance(events[0], HandshakeFailed)
    assert client.state is State.CLOSED


def test_invalid_http_response_fails() -> None:
    client, _ = new_client()
    client_fails(client, b"SSH-2.0-OpenSSH\r\n\r\n")


def test_valid_101_byte_by_byte() -> None:
    client, request = new_client()
    data = response_bytes(request.headers["Sec-WebSocket-Key"])
    for i in range(len(data) - 1):
        assert client.receive_data(data[i : i + 1]) == []
    events = client.receive_data(data[-1:])
    assert len(events) == 1 and isinstance(events[0], Response)
    assert client.state is State.OPEN and client.failure is None
    assert client.response is events[0]


@pytest.mark.parametrize(
    "upgrade, connection",
    [("WebSocket", "upgrade"), ("h2c, websocket", "keep-alive, UPGRADE"), ("WEBSOCKET", "Upgrade,close")],
)
def test_response_tokens_case_insensitive_lists(upgrade: str, connection: str) -> None:
    client, request = new_client()
    key = request.headers["Sec-WebSocket-Key"]
    data = response_bytes(
        key, drop=("Upgrade", "Connection"), extra=(("Upgrade", upgrade), ("Connection", connection))
    )
    events = client.receive_data(data)
    assert isinstance(events[0], Response) and client.state is State.OPEN


BAD_RESPONSES: dict[str, dict[str, Any]] = {
    "no-upgrade": dict(drop=("Upgrade",)),
    "upgrade-h2c": dict(drop=("Upgrade",), extra=(("Upgrade", "h2c"),)),
    "no-connection": dict(drop=("Connection",)),
    "connection-close": dict(drop=("Connection",), extra=(("Connection", "close"),)),
    "no-accept": dict(drop=("Sec-WebSocket-Accept",)),
    "wrong-accept": dict(drop=("Sec-WebSocket-Accept",), extra=(("Sec-WebSocket-Accept", RFC_ACCEPT),)),
    "two-accepts": "two-accepts",  # built in the test
}


@pytest.mark.parametrize("case", list(BAD_RESPONSES))
def test_invalid_101_response_fails(case: str) -> None:
    client, request = new_client()
    key = request.headers["Sec-WebSocket-Key"]
    if case == "two-accepts":
        data = response_bytes(key, extra=(("Sec-WebSocket-Accept", reference_accept(key)),))
    else:
        data = response_bytes(key, **BAD_RESPONSES[case])
    error = client_fails(client, data)
    assert isinstance(error.response, Response) and error.response.status == 101


@pytest.mark.parametrize(
    "selected",
    [
        [("Sec-WebSocket-Protocol", "other")],
        [("Sec-WebSocket-Protocol", "chat, superchat")],
        [("Sec-WebSocket-Protocol", "chat"), ("Sec-WebSocket-Protocol", "superchat")],
        [("Sec-WebSocket-Protocol", "chat"), ("Sec-WebSocket-Protocol", "chat")],
    ],
)
def test_subprotocol_not_offered_or_several_fails(selected: list[tuple[str, str]]) -> None:
    client, request = new_client(subprotocols=["chat", "superchat"])
    error = client_fails(client, response_bytes(request.headers["Sec-WebSocket-Key"], extra=tuple(selected)))
    assert isinstance(error, NegotiationError)


def test_subprotocol_when_none_offered_fails() -> None:
    client, request = new_client()
    client_fails(
        client,
        response_bytes(request.headers["Sec-WebSocket-Key"], extra=(("Sec-WebSocket-Protocol", "chat"),)),
    )


def test_no_subprotocol_selected_is_fine() -> None:
    client, request = new_client(subprotocols=["chat"])
    events = client.receive_data(response_bytes(request.headers["Sec-WebSocket-Key"]))
    assert isinstance(events[0], Response)
    assert client.subprotocol is None


def deflate_client(config: PerMessageDeflate = DEFAULT_DEFLATE) -> tuple[ClientConnection, str]:
    client, request = new_client(deflate=config)
    return client, request.headers["Sec-WebSocket-Key"]


@pytest.mark.parametrize(
    "accepted",
    [
        "permessage-deflate; server_max_window_bits=13",  # offered 12
        "permessage-deflate; server_max_window_bits=15",
        "permessage-deflate",  # server_max_window_bits was offered: it must be answered
        "permessage-deflate; server_max_window_bits=12; client_max_window_bits=8",
        "permessage-deflate; server_max_window_bits=12; client_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=12; server_max_window_bits=12",
        "permessage-deflate; server_max_window_bits=12; client_no_context_takeover=1",
        "permessage-deflate; server_max_window_bits=12; unknown",
        "permessage-deflate; server_max_window_bits=x",
        "permessage-deflate; server_max_window_bits=12, permessage-deflate; server_max_window_bits=12",
        "x-webkit-deflate-frame",
        "permessage-deflate; server_max_window_bits=12;",
    ],
)
def test_invalid_deflate_acceptance_fails(accepted: str) -> None:
    client, key = deflate_client()
    error = client_fails(client, response_bytes(key, extra=(("Sec-WebSocket-Extensions", accepted),)))
    assert isinstance(error.response, Response) and error.response.status == 101


def test_extension_not_offered_fails() -> None:
    client, request = new_client(deflate=None)
    key = request.headers["Sec-WebSocket-Key"]
    assert "Sec-WebSocket-Extensions" not in request.headers
    error = client_fails(
        client, response_bytes(key, extra=(("Sec-WebSocket-Extensions", "permessage-deflate"),))
    )
    assert isinstance(error, NegotiationError)


def test_server_no_context_takeover_requested_but_not_confirmed_fails() -> None:
    client, key = deflate_client(
        PerMessageDeflate(server_no_context_takeover=True, server_max_window_bits=None)
    )
    client_fails(client, response_bytes(key, extra=(("Sec-WebSocket-Extensions", "permessage-deflate"),)))


@pytest.mark.parametrize(
    "config, accepted, params",
    [
        # (compress_bits, decompress_bits, compress_reset, decompress_reset) of the client
        (PerMessageDeflate(), "permessage-deflate; server_max_window_bits=12", (12, 12, False, False)),
        (
            PerMessageDeflate(),
            "permessage-deflate; server_max_window_bits=9; client_max_window_bits=10",
            (10, 9, False, False),
        ),
        (
            PerMessageDeflate(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12",
            (12, 12, True, True),
        ),
        (
            PerMessageDeflate(server_max_window_bits=None, client_max_window_bits=None),
            "permessage-deflate",
            (15, 15, False, False),
        ),
        (
            PerMessageDeflate(server_max_window_bits=None, client_max_window_bits=None),
            "permessage-deflate; server_max_window_bits=10; client_max_window_bits=11",
            (11, 10, False, False),
        ),
        (
            PerMessageDeflate(client_no_context_takeover=True, server_max_window_bits=None),
            "permessage-deflate",
            (12, 15, True, False),
        ),
    ],
)
def test_valid_deflate_acceptance(
    config: PerMessageDeflate, accepted: str, params: tuple[int, int, bool, bool]
) -> None:
    client, key = deflate_client(config)
    events = client.receive_data(response_bytes(key, extra=(("Sec-WebSocket-Extensions", accepted),)))
    assert isinstance(events[0], Response) and client.state is State.OPEN
    deflate = client.deflate
    assert deflate is not None
    assert (
        deflate.compress_bits,
        deflate.decompress_bits,
        deflate.compress_reset,
        deflate.decompress_reset,
    ) == params


def test_deflate_declined_by_the_server() -> None:
    client, key = deflate_client()
    assert isinstance(client.receive_data(response_bytes(key))[0], Response)
    assert client.deflate is None


def test_frames_in_the_same_read_as_the_101_are_delivered_in_the_same_call() -> None:
    client, request = new_client()
    data = response_bytes(request.headers["Sec-WebSocket-Key"])
    data += server_frame(1, b"welcome") + server_frame(9, b"hb") + server_frame(2, b"\x01", fin=False)
    events = client.receive_data(data)
    assert [type(e) for e in events] == [Response, TextMessage, Ping]
    assert events[1:] == [TextMessage("welcome"), Ping(b"hb")]
    pong = client.data_to_send()
    assert pong[0] == 0x8A and pong[1] == 0x82  # masked pong with 2 bytes
    assert bytes(b ^ pong[2 + i % 4] for i, b in enumerate(pong[6:])) == b"hb"
    assert client.receive_data(server_frame(0, b"\x02")) == [BinaryMessage(b"\x01\x02")]


def test_bad_frame_in_the_same_read_as_the_101() -> None:
    client, request = new_client()
    data = response_bytes(request.headers["Sec-WebSocket-Key"]) + client_frame(1, b"masked!")
    events = client.receive_data(data)
    assert isinstance(events[0], Response)
    assert client.failure is not None and client.failure.code == 1002  # type: ignore[attr-defined]
    assert client.data_to_send()[:1] == b"\x88"


# ---------------------------------------------------------------- both ends


def test_wsfast_client_and_server_together() -> None:
    client = ClientConnection("h", "/x", subprotocols=["b", "a"], origin="https://o.example")
    server = ServerConnection(subprotocols=["a", "b"], origins=["https://o.example"])
    (request,) = server.receive_data(client.data_to_send())
    assert isinstance(request, Request) and request.target == "/x"
    response = server.accept()
    events = client.receive_data(response + server.send_text("hello"))
    assert isinstance(events[0], Response) and events[1:] == [TextMessage("hello")]
    assert client.subprotocol == server.subprotocol == "a"
    assert client.deflate is not None and server.deflate is not None
    assert server.receive_data(client.send_text("hi" * 200)) == [TextMessage("hi" * 200)]
    server_reply = server.receive_data(client.send_close(1000, "done"))
    assert server_reply[0].code == 1000  # type: ignore[union-attr]
    client.receive_data(server.data_to_send())
    assert client.state is server.state is State.CLOSED


def test_server_closing_right_after_accept_still_reads_the_peer() -> None:
    """accept() then send_close() before the first receive_data(): the frames
    that came with the request and the client's close reply must still be
    read (RFC 6455 section 7.1.2: after sending a close frame, an endpoint
    keeps reading until it receives one)."""
    server = ServerConnection(deflate=None)
    early = client_frame(1, b"early")
    assert isinstance(server.receive_data(request_bytes() + early)[0], Request)
    server.accept()
    assert server.send_close(1001, "shutting down")[:1] == b"\x88"
    assert server.state is State.CLOSING
    assert server.receive_data(b"") == [TextMessage("early")]
    events = server.receive_data(client_frame(8, (1001).to_bytes(2, "big")))
    assert len(events) == 1 and events[0].code == 1001  # type: ignore[union-attr]
    assert server.state is State.CLOSED
    assert server.should_close_transport


def test_server_closing_right_after_accept_reads_the_close_reply() -> None:
    """Same, without early frames and without the documented receive_data(b"")."""
    server = ServerConnection(deflate=None)
    server.receive_data(request_bytes())
    server.accept()
    server.send_close(1000)
    events = server.receive_data(client_frame(8, (1000).to_bytes(2, "big")))
    assert len(events) == 1 and events[0].code == 1000  # type: ignore[union-attr]
    assert server.state is State.CLOSED


def test_failed_accept_leaves_the_handshake_pending() -> None:
    """accept() that raises (here: a header value that would inject a line)
    must not leave the connection OPEN without a 101 ever produced: the
    application must still be able to reject()."""
    server, _ = server_receive(request_bytes())
    with pytest.raises(ValueError):
        server.accept(extra_headers=[("X-Bad", "a\r\nInjected: 1")])
    assert server.state is State.CONNECTING
    with pytest.raises(InvalidState):
        server.send_text("no handshake happened")
    assert server.reject(Response(500)).startswith(b"HTTP/1.1 500 ")


def test_server_reads_from_a_reused_buffer() -> None:
    """The caller may overwrite its read buffer after each receive_data()."""
    data = (
        request_bytes()
        + client_frame(1, b"hello")
        + client_frame(2, b"bin", fin=False)
        + client_frame(0, b"ary")
    )
    server = ServerConnection(deflate=None)
    buffer = bytearray(7)
    events = []
    for i in range(0, len(data), 7):
        chunk = data[i : i + 7]
        buffer[: len(chunk)] = chunk
        events += server.receive_data(memoryview(buffer)[: len(chunk)])
        buffer[:] = b"\xee" * 7
        if server.state is State.CONNECTING and events:
            assert isinstance(events[0], Request)
            server.accept()
            events += server.receive_data(b"")
    assert isinstance(events[0], Request)
    assert events[1:] == [TextMessage("hello"), BinaryMessage(b"binary")]
