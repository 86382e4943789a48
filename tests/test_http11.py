"""Tests of the HTTP/1.1 head reader and parser (:mod:`wsfast.http11`).

The reader must give the same answer whatever the chunking of its input, stop
at its limits (414 for the request line, 431 for the header count and the
head size) and scan its input once, so that a head delivered one byte at a
time costs time linear in its size.
"""

from __future__ import annotations

from typing import Optional, Union

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from wsfast.http11 import (
    MAX_HEAD_SIZE,
    MAX_HEADERS,
    MAX_LINE_LENGTH,
    Headers,
    HeadReader,
    HTTPError,
    Request,
    Response,
    header_tokens,
    parse_request,
    parse_response,
    serialize_request,
    serialize_response,
)

Outcome = Union[int, tuple[bytes, bytes], None]


def feed_all(reader: HeadReader, chunks: list[bytes]) -> Outcome:
    """Feed ``chunks`` in turn: the (head, rest) result, the HTTPError status,
    or None when the head is still incomplete after the last chunk."""
    try:
        for i, chunk in enumerate(chunks):
            done = reader.feed(chunk)
            if done is not None:
                head, rest = done
                return head, rest + b"".join(chunks[i + 1 :])
    except HTTPError as exc:
        return exc.status
    return None


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def outcome(data: bytes, chunks: Optional[list[bytes]] = None, **limits: int) -> Outcome:
    return feed_all(HeadReader(**limits), [data] if chunks is None else chunks)


REQUEST_HEAD = b"GET /chat?x=1 HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nX-Empty:\r\n"


# ---------------------------------------------------------------- Headers


def test_headers_are_case_insensitive_ordered_and_repeatable() -> None:
    headers = Headers([("Host", "a"), ("X-Multi", "1"), ("x-multi", "2")])
    assert headers["HOST"] == "a"
    assert headers.get("x-MULTI") == "1, 2"
    assert headers.get_all("X-Multi") == ["1", "2"]
    assert headers.get("missing") is None
    assert headers.get("missing", "d") == "d"
    assert headers.get_all("missing") == []
    assert "host" in headers and "nope" not in headers and 3 not in headers
    assert len(headers) == 3
    assert list(headers) == [("Host", "a"), ("X-Multi", "1"), ("x-multi", "2")]
    assert headers.items() == list(headers)
    with pytest.raises(KeyError):
        headers["missing"]
    assert Headers({"A": "1"}) == Headers([("A", "1")])
    assert Headers([("A", "1")]) != Headers([("A", "2")])


header_pairs = st.lists(
    st.tuples(
        st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=8),
        st.text(st.characters(min_codepoint=0, max_codepoint=0x3FF), max_size=12),
    ),
    max_size=6,
)


@given(header_pairs)
@example([("Name", "a: b"), ("X:", ": x"), ("Empty", ""), ("Lead", " space ")])
@example([("Bad: name", "v")])
@example([("A", "line\nbreak")])
@example([("A", "\u0100 outside Latin-1")])
def test_packed_headers_read_exactly_as_before(pairs: list[tuple[str, str]]) -> None:
    headers = Headers(pairs)
    headers.pack()
    assert list(headers) == pairs
    assert len(headers) == len(pairs)
    for name, _ in pairs:
        assert headers.get_all(name.upper()) == [v for n, v in pairs if n.lower() == name.lower()]
        assert name in headers
    assert headers == Headers(pairs)
    headers.add("After", "pack")  # unpacks for good
    assert list(headers) == [*pairs, ("After", "pack")]


def test_pack_keeps_fields_in_one_bytes_object_and_saves_memory() -> None:
    import sys

    request = parse_request(
        b"GET /chat HTTP/1.1\r\nHost: example.com:8080\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\nUser-Agent: test/1.0\r\n"
    )
    headers = request.headers
    items = headers._items
    assert items is not None
    unpacked = sys.getsizeof(items) + sum(sys.getsizeof(p) + sys.getsizeof(p[0]) + sys.getsizeof(p[1]) for p in items)
    headers.pack()
    assert headers._items is None and isinstance(headers._packed, bytes)
    assert sys.getsizeof(headers._packed) * 3 < unpacked
    assert headers["sec-websocket-key"] == "dGhlIHNhbXBsZSBub25jZQ=="
    assert headers._items is None  # reading does not unpack for good


def test_header_tokens_splits_comma_lists_lowercased() -> None:
    headers = Headers([("Connection", "keep-alive, Upgrade"), ("connection", " ,TE ,, ")])
    assert header_tokens(headers, "CONNECTION") == ["keep-alive", "upgrade", "te"]
    assert header_tokens(headers, "Upgrade") == []


# ---------------------------------------------------------------- HeadReader


def test_head_in_one_feed_returns_head_and_following_bytes() -> None:
    data = REQUEST_HEAD + b"\r\n" + b"\x81\x05hello"
    assert outcome(data) == (REQUEST_HEAD, b"\x81\x05hello")


def test_head_byte_by_byte_completes_on_the_last_byte() -> None:
    reader = HeadReader()
    data = REQUEST_HEAD + b"\r\n"
    for byte in bytewise(data)[:-1]:
        assert reader.feed(byte) is None
    assert reader.feed(data[-1:]) == (REQUEST_HEAD, b"")


@pytest.mark.parametrize("cut", range(1, len(REQUEST_HEAD) + 2))
def test_head_split_anywhere_gives_the_same_result(cut: int) -> None:
    data = REQUEST_HEAD + b"\r\nrest"
    assert outcome(data, [data[:cut], data[cut:]]) == (REQUEST_HEAD, b"rest")


def test_bare_lf_line_endings_are_accepted() -> None:
    head = b"GET / HTTP/1.1\nHost: x\n"
    assert outcome(head + b"\nabc") == (head, b"abc")
    request = parse_request(head)
    assert request.headers["Host"] == "x"


def test_incomplete_head_returns_none() -> None:
    assert outcome(REQUEST_HEAD) is None
    assert outcome(REQUEST_HEAD + b"\r") is None


def test_request_line_over_the_limit_is_414_before_its_end_arrives() -> None:
    reader = HeadReader(max_line_length=100)
    with pytest.raises(HTTPError) as info:
        for byte in bytewise(b"GET /" + b"a" * 200):
            reader.feed(byte)
    assert info.value.status == 414
    # As soon as the line is too long for the limit, not at the end.
    reader = HeadReader(max_line_length=100)
    reader.feed(b"GET /" + b"a" * 90)
    with pytest.raises(HTTPError) as info:
        reader.feed(b"a" * 20)
    assert info.value.status == 414


def request_line(length: int) -> bytes:
    line = b"GET /" + b"a" * (length - len(b"GET / HTTP/1.1")) + b" HTTP/1.1"
    assert len(line) == length
    return line


@pytest.mark.parametrize("chunking", ["whole", "bytewise"])
def test_request_line_exactly_at_the_limit_is_accepted(chunking: str) -> None:
    """A request line of max_line_length bytes (without CRLF) is allowed, whatever
    the chunking: the CR that ends it is not part of the line."""
    data = request_line(100) + b"\r\nHost: x\r\n\r\n"
    chunks = [data] if chunking == "whole" else bytewise(data)
    result = outcome(data, chunks, max_line_length=100)
    assert result == (data[:-2], b"")


@pytest.mark.parametrize("chunking", ["whole", "bytewise"])
def test_request_line_one_over_the_limit_is_414(chunking: str) -> None:
    data = request_line(101) + b"\r\nHost: x\r\n\r\n"
    chunks = [data] if chunking == "whole" else bytewise(data)
    assert outcome(data, chunks, max_line_length=100) == 414


def test_line_limit_applies_to_the_request_line_only() -> None:
    data = b"GET / HTTP/1.1\r\nX-Long: " + b"v" * 500 + b"\r\n\r\n"
    assert outcome(data, max_line_length=100) == (data[:-2], b"")
    assert outcome(data, bytewise(data), max_line_length=100) == (data[:-2], b"")


def head_with_fields(count: int) -> bytes:
    return b"GET / HTTP/1.1\r\n" + b"".join(b"X-F%d: v\r\n" % i for i in range(count))


@pytest.mark.parametrize("chunking", ["whole", "bytewise"])
def test_header_count_limit(chunking: str) -> None:
    ok = head_with_fields(10) + b"\r\n"
    too_many = head_with_fields(11) + b"\r\n"
    split_ok = [ok] if chunking == "whole" else bytewise(ok)
    split_bad = [too_many] if chunking == "whole" else bytewise(too_many)
    assert outcome(ok, split_ok, max_headers=10) == (ok[:-2], b"")
    assert outcome(too_many, split_bad, max_headers=10) == 431


def test_default_header_count_limit() -> None:
    assert MAX_HEADERS == 128
    ok = head_with_fields(MAX_HEADERS) + b"\r\n"
    assert outcome(ok) == (ok[:-2], b"")
    assert outcome(head_with_fields(MAX_HEADERS + 1) + b"\r\n") == 431


def test_too_many_headers_detected_before_the_head_ends() -> None:
    reader = HeadReader(max_headers=5)
    with pytest.raises(HTTPError) as info:
        reader.feed(head_with_fields(50))  # no blank line yet
    assert info.value.status == 431


@pytest.mark.parametrize("chunking", ["whole", "bytewise"])
def test_head_exactly_at_the_size_limit_is_accepted(chunking: str) -> None:
    """The head (request line and fields, without the final blank line) may be
    max_head_size bytes, whatever the chunking."""
    head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * 60 + b"\r\n"
    data = head + b"\r\n"
    chunks = [data] if chunking == "whole" else bytewise(data)
    assert outcome(data, chunks, max_head_size=len(head)) == (head, b"")


@pytest.mark.parametrize("chunking", ["whole", "bytewise"])
def test_head_one_over_the_size_limit_is_431(chunking: str) -> None:
    head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * 60 + b"\r\n"
    data = head + b"\r\n"
    chunks = [data] if chunking == "whole" else bytewise(data)
    assert outcome(data, chunks, max_head_size=len(head) - 1) == 431


def test_head_too_large_detected_without_a_line_end() -> None:
    reader = HeadReader(max_head_size=1000)
    reader.feed(b"GET / HTTP/1.1\r\nX-Big: ")
    with pytest.raises(HTTPError) as info:
        reader.feed(b"x" * 2000)  # one unfinished header line
    assert info.value.status == 431


def test_default_limits() -> None:
    assert (MAX_LINE_LENGTH, MAX_HEAD_SIZE) == (8192, 65536)
    assert outcome(b"GET /" + b"a" * 9000) == 414
    assert outcome(b"GET / HTTP/1.1\r\nX: " + b"a" * 70000) == 431


class CountingBuffer(bytearray):
    """A bytearray that adds up how many bytes its ``find`` calls scan."""

    scanned = 0
    calls = 0

    def find(self, sub, start=0, *args):  # type: ignore[no-untyped-def, override]
        self.scanned += len(self) - start
        self.calls += 1
        return super().find(sub, start, *args)


def big_head(size: int) -> bytes:
    """A valid upgrade request head of about ``size`` bytes, blank line included."""
    base = (
        b"GET / HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    )
    fields = []
    pad = (size - len(base)) // 100
    for i in range(100):
        fields.append(b"X-Pad-%02d: " % i + b"v" * (pad - 13) + b"\r\n")
    return base + b"".join(fields) + b"\r\n"


def test_head_scan_is_linear_byte_by_byte() -> None:
    """60 KB delivered one byte at a time: every byte is searched about once."""
    data = big_head(60_000)
    assert 59_000 < len(data) < MAX_HEAD_SIZE
    reader = HeadReader()
    buffer = CountingBuffer()
    reader._buf = buffer  # type: ignore[assignment]  # observe the scan
    result = None
    for i in range(len(data)):
        result = reader.feed(data[i : i + 1])
        if result is not None:
            assert i == len(data) - 1
    assert result == (data[:-2], b"")
    assert reader._buf is buffer  # the counter saw every search
    assert buffer.scanned <= 2 * len(data), buffer.scanned  # quadratic would be ~1.8e9


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    line=st.integers(min_value=14, max_value=40),
    fields=st.lists(st.integers(min_value=0, max_value=30), max_size=8),
    max_line=st.integers(min_value=14, max_value=40),
    max_headers=st.integers(min_value=0, max_value=8),
    max_head=st.integers(min_value=14, max_value=200),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12),
    crlf=st.booleans(),
)
# The CR ending a line is counted against the limits only while the LF is missing.
@example(line=14, fields=[], max_line=14, max_headers=0, max_head=14, cuts=[15], crlf=True)
@example(line=20, fields=[5], max_line=40, max_headers=8, max_head=30, cuts=[], crlf=True)
def test_outcome_does_not_depend_on_chunking(
    line: int,
    fields: list[int],
    max_line: int,
    max_headers: int,
    max_head: int,
    cuts: list[int],
    crlf: bool,
) -> None:
    """Whatever the limits and the head, splitting the input differently never
    changes the outcome: the same head, or the same error status."""
    eol = b"\r\n" if crlf else b"\n"
    data = request_line(line) + eol
    data += b"".join(b"X: " + b"v" * n + eol for n in fields)
    data += eol + b"tail"
    limits = dict(max_line_length=max_line, max_headers=max_headers, max_head_size=max_head)
    whole = outcome(data, **limits)
    points = sorted(set(min(c, len(data)) for c in cuts))
    bounds = [0, *points, len(data)]
    chunks = [data[a:b] for a, b in zip(bounds, bounds[1:])]
    assert outcome(data, chunks, **limits) == whole
    assert outcome(data, bytewise(data), **limits) == whole


# ---------------------------------------------------------------- parsing


def test_parse_request() -> None:
    request = parse_request(REQUEST_HEAD)
    assert request.method == "GET"
    assert request.target == "/chat?x=1"
    assert request.path == "/chat"
    assert request.version == "HTTP/1.1"
    assert request.headers.items() == [("Host", "example.com"), ("Upgrade", "websocket"), ("X-Empty", "")]


def test_parse_request_http10_keeps_the_version() -> None:
    assert parse_request(b"GET / HTTP/1.0\r\nHost: x\r\n").version == "HTTP/1.0"


def test_header_value_whitespace_is_trimmed() -> None:
    request = parse_request(b"GET / HTTP/1.1\r\nHost: \t example.com \t\r\n")
    assert request.headers["Host"] == "example.com"


def test_header_value_latin1_bytes_kept() -> None:
    request = parse_request(b"GET / HTTP/1.1\r\nX-Name: caf\xe9\r\n")
    assert request.headers["X-Name"] == "caf\u00e9"


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"GET\r\nHost: x\r\n",
        b"GET /  HTTP/1.1\r\n",
        b"GET / HTTP/1.1 extra\r\n",
        b"GET / HTTP/11\r\n",
        b"G(T / HTTP/1.1\r\n",
        b"GET / HTTP/1.1\r\nHost x\r\n",
        b"GET / HTTP/1.1\r\nHost : x\r\n",
        b"GET / HTTP/1.1\r\n: x\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n\tfolded\r\n",
        b"GET / HTTP/1.1\r\nX: a\x00b\r\n",
        b"GET / HTTP/1.1\r\nX: a\x7fb\r\n",
        b"GET / HTTP/1.1\r\nX: a\rb\r\n",
        b"GET / HTTP/1.1\r\nX\xff: a\r\n",
    ],
)
def test_malformed_request_is_400(head: bytes) -> None:
    with pytest.raises(HTTPError) as info:
        parse_request(head)
    assert info.value.status == 400


def test_parse_response() -> None:
    response = parse_response(b"HTTP/1.1 403 Go Away\r\nX-A: 1\r\nContent-Length: 0\r\n")
    assert response.status == 403
    assert response.reason == "Go Away"
    assert response.headers.get_all("x-a") == ["1"]
    assert response.body == b""


def test_parse_response_without_reason() -> None:
    response = parse_response(b"HTTP/1.1 101\r\n")
    assert response.status == 101
    assert parse_response(b"HTTP/1.1 599 \r\n").status == 599


@pytest.mark.parametrize(
    "head",
    [b"", b"HTTP/1.1\r\n", b"HTTP/1.1 1011 X\r\n", b"HTP/1.1 101 X\r\n", b"HTTP/1.1 101 X\r\nbad line\r\n"],
)
def test_malformed_response_is_an_error(head: bytes) -> None:
    with pytest.raises(HTTPError):
        parse_response(head)


# ---------------------------------------------------------------- serializing


def test_serialize_request() -> None:
    request = Request("GET", "/a?b", Headers([("Host", "h"), ("X", "1")]))
    assert serialize_request(request) == b"GET /a?b HTTP/1.1\r\nHost: h\r\nX: 1\r\n\r\n"
    assert parse_request(serialize_request(request)[:-2]) == request


def test_serialize_101_has_no_content_length() -> None:
    response = Response(101, Headers([("Upgrade", "websocket")]))
    assert serialize_response(response) == b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"


def test_serialize_error_response_adds_content_length_and_body() -> None:
    response = Response(404, Headers([("X", "y")]), b"not here")
    assert serialize_response(response) == (
        b"HTTP/1.1 404 Not Found\r\nX: y\r\nContent-Length: 8\r\n\r\nnot here"
    )
    explicit = Response(200, Headers([("Content-Length", "3")]), b"abc")
    assert serialize_response(explicit).count(b"Content-Length") == 1


def test_serialize_custom_reason() -> None:
    assert serialize_response(Response(599, reason="Custom")).startswith(b"HTTP/1.1 599 Custom\r\n")


@pytest.mark.parametrize(
    "name, value", [("X", "a\r\nInjected: 1"), ("X", "a\nb"), ("X", "a\rb"), ("Bad Name", "v"), ("", "v")]
)
def test_serialize_refuses_header_injection(name: str, value: str) -> None:
    with pytest.raises(ValueError):
        serialize_request(Request("GET", "/", Headers([(name, value)])))
    with pytest.raises(ValueError):
        serialize_response(Response(400, Headers([(name, value)])))
