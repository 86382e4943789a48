"""The small part of HTTP/1.1 that an opening handshake needs.

A head (request or status line plus header fields, RFC 9112) is read
incrementally with hard limits, in time linear in its size whatever its
shape, and parsed into a :class:`Request` or a :class:`Response`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Optional, Union

from .exceptions import WebSocketError

__all__ = [
    "MAX_LINE_LENGTH",
    "MAX_HEADERS",
    "MAX_HEAD_SIZE",
    "MAX_BODY_SIZE",
    "Headers",
    "Request",
    "Response",
    "HTTPError",
    "HeadReader",
    "parse_request",
    "parse_response",
    "serialize_request",
    "serialize_response",
    "header_tokens",
]

MAX_LINE_LENGTH = 8192
"""Default limit of the request or status line, in bytes (longer: 414)."""

MAX_HEADERS = 128
"""Default limit of the number of header fields (more: 431)."""

MAX_HEAD_SIZE = 65536
"""Default limit of the whole head, request line and headers, in bytes (larger: 431)."""

MAX_BODY_SIZE = 1048576
"""Default limit of a rejection body a client reads, in bytes."""

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VALUE = re.compile(rb"[\x09\x20-\x7e\x80-\xff]*")
_REQUEST_LINE = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([\x21-\x7e]+) HTTP/(\d)\.(\d)")
_STATUS_LINE = re.compile(rb"HTTP/(\d)\.(\d) (\d{3})(?: ([\x09\x20-\x7e\x80-\xff]*))?")

_REASONS = {
    101: "Switching Protocols",
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    414: "URI Too Long",
    426: "Upgrade Required",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class HTTPError(WebSocketError):
    """A malformed or over-limit HTTP head.

    ``status`` is the response a server should answer with (400, 414 or 431).
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Headers:
    """HTTP header fields: ordered, repeatable, looked up case-insensitively.

    A plain list of pairs: a handshake has a dozen fields and looks a few of
    them up, so a list is fast enough. An open connection keeps its request
    and response for its whole life: the protocol core then calls
    :meth:`pack`, which keeps the fields as one ``bytes`` object (about a
    fifth of the list's memory) and unpacks them again on each read.
    """

    __slots__ = ("_items", "_packed")

    def __init__(self, items: Union[Iterable[tuple[str, str]], dict[str, str], None] = None) -> None:
        self._items: Optional[list[tuple[str, str]]] = []
        self._packed = b""
        if items is not None:
            pairs = items.items() if isinstance(items, dict) else items
            for name, value in pairs:
                self.add(name, value)

    def _pairs(self) -> list[tuple[str, str]]:
        items = self._items
        if items is not None:
            return items
        return [(name, value) for name, _, value in (line.partition(": ") for line in _unpack(self._packed))]

    def pack(self) -> None:
        """Keep the fields in one ``bytes`` object until they change.

        Reads unpack them each time (microseconds: for a handshake's dozen
        fields); :meth:`add` unpacks them for good. Fields that cannot be
        packed without loss (a name with ``": "``, a line break, a character
        outside Latin-1) are left as they are.
        """
        items = self._items
        if items is None:
            return
        lines = []
        for name, value in items:
            if ": " in name or "\n" in name or "\n" in value:
                return
            lines.append(f"{name}: {value}")
        try:
            packed = "\n".join(lines).encode("latin-1")
        except UnicodeEncodeError:
            return
        self._packed = packed
        self._items = None

    def add(self, name: str, value: str) -> None:
        """Append a field (a repeated name keeps every value)."""
        items = self._items
        if items is None:
            items = self._items = self._pairs()
            self._packed = b""
        items.append((name, value))

    def get(self, name: str, default: Optional[str] = None) -> Optional[str]:
        """The value of ``name``; repeated fields are joined with ``", "``."""
        values = self.get_all(name)
        return ", ".join(values) if values else default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, in order."""
        key = name.lower()
        return [value for field_name, value in self._pairs() if field_name.lower() == key]

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = name.lower()
        return any(field_name.lower() == key for field_name, _ in self._pairs())

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._pairs())

    def __len__(self) -> int:
        return len(self._pairs())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._pairs() == other._pairs()

    def __repr__(self) -> str:
        return f"Headers({self._pairs()!r})"

    def items(self) -> list[tuple[str, str]]:
        """The fields as ``(name, value)`` pairs, in order."""
        return list(self._pairs())


def _unpack(packed: bytes) -> list[str]:
    return packed.decode("latin-1").split("\n") if packed else []


@dataclass
class Request:
    """An HTTP request head (a WebSocket handshake request has no body).

    ``user`` is the authenticated user name, set by an authentication hook
    such as :func:`wsfast.auth.basic_auth` (``None`` until then); a
    connection's handler finds it as ``ws.request.user``.
    """

    method: str
    target: str
    headers: Headers = field(default_factory=Headers)
    version: str = "HTTP/1.1"
    user: Optional[str] = field(default=None, compare=False)

    @property
    def path(self) -> str:
        """The target without its query string."""
        return self.target.split("?", 1)[0]


@dataclass
class Response:
    """An HTTP response: status, headers and (for a rejection) a body."""

    status: int
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    reason: str = ""

    def __post_init__(self) -> None:
        if not self.reason:
            self.reason = _REASONS.get(self.status, "")


def header_tokens(headers: Headers, name: str) -> list[str]:
    """The comma-separated tokens of every ``name`` field, lower-cased."""
    tokens = []
    for value in headers.get_all(name):
        for token in value.split(","):
            token = token.strip()
            if token:
                tokens.append(token.lower())
    return tokens


class HeadReader:
    """Accumulate bytes until an HTTP head is complete, within limits.

    ``feed(data)`` returns ``None`` while the head is incomplete, then the
    head (without the final blank line) and the bytes that followed it.
    Raises :class:`HTTPError` as soon as a limit is exceeded: the first line
    longer than ``max_line_length`` (414), more than ``max_headers`` fields or
    a head larger than ``max_head_size`` (431). The search for the blank line
    resumes where it stopped, so the cost stays linear in the input.
    """

    __slots__ = ("_buf", "_scan", "_probe", "_max_line", "_max_headers", "_max_head", "_lines")

    def __init__(
        self,
        max_line_length: int = MAX_LINE_LENGTH,
        max_headers: int = MAX_HEADERS,
        max_head_size: int = MAX_HEAD_SIZE,
    ) -> None:
        self._buf = bytearray()
        self._scan = 0  # start of the current line
        self._probe = 0  # where the search for its end resumes
        self._lines = 0
        self._max_line = max_line_length
        self._max_headers = max_headers
        self._max_head = max_head_size

    def feed(self, data: bytes) -> Optional[tuple[bytes, bytes]]:
        buf = self._buf
        buf += data
        while True:
            end = buf.find(b"\n", max(self._scan, self._probe))
            if end < 0:
                self._probe = len(buf)
                # The unfinished line, without a CR that may end it: the
                # verdict must not depend on where the input was split.
                pending = len(buf) - self._scan
                if pending and buf[-1] == 0x0D:
                    pending -= 1
                if self._lines == 0:
                    if pending > self._max_line:
                        raise HTTPError(414, "request line too long")
                elif pending and self._scan + pending + 1 > self._max_head:
                    raise HTTPError(431, "request header fields too large")
                return None
            line_end = end - 1 if end and buf[end - 1] == 0x0D else end
            if line_end == self._scan and self._lines:  # the blank line
                head = bytes(buf[: self._scan])
                rest = bytes(buf[end + 1 :])
                return head, rest
            if self._lines == 0 and line_end - self._scan > self._max_line:
                raise HTTPError(414, "request line too long")
            self._lines += 1
            if self._lines - 1 > self._max_headers:
                raise HTTPError(431, f"more than {self._max_headers} header fields")
            self._scan = end + 1
            if self._scan > self._max_head:
                raise HTTPError(431, "request header fields too large")


def _lines(head: bytes) -> list[bytes]:
    lines = head.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [line[:-1] if line.endswith(b"\r") else line for line in lines]


def _parse_headers(lines: list[bytes]) -> Headers:
    headers = Headers()
    for line in lines:
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN.fullmatch(name):
            if line[:1] in (b" ", b"\t"):
                raise HTTPError(400, "obsolete line folding in header field")
            raise HTTPError(400, f"invalid header line: {line[:80]!r}")
        value = value.strip(b" \t")
        if not _VALUE.fullmatch(value):
            raise HTTPError(400, f"invalid value in header field {name.decode()!r}")
        headers.add(name.decode("ascii"), value.decode("latin-1"))
    return headers


def parse_request(head: bytes) -> Request:
    """Parse a request head as returned by :class:`HeadReader`."""
    lines = _lines(head)
    if not lines:
        raise HTTPError(400, "empty request")
    match = _REQUEST_LINE.fullmatch(lines[0])
    if match is None:
        raise HTTPError(400, f"invalid request line: {lines[0][:80]!r}")
    method, target, major, minor = match.groups()
    version = f"HTTP/{major.decode()}.{minor.decode()}"
    return Request(method.decode("ascii"), target.decode("ascii"), _parse_headers(lines[1:]), version)


def parse_response(head: bytes) -> Response:
    """Parse a response head as returned by :class:`HeadReader` (no body)."""
    lines = _lines(head)
    match = _STATUS_LINE.fullmatch(lines[0]) if lines else None
    if match is None:
        raise HTTPError(400, f"invalid status line: {lines[0][:80] if lines else b''!r}")
    _, _, status, reason = match.groups()
    return Response(int(status), _parse_headers(lines[1:]), b"", (reason or b"").decode("latin-1"))


def _serialize_headers(headers: Iterable[tuple[str, str]]) -> list[str]:
    out = []
    for name, value in headers:
        if not _TOKEN.fullmatch(name.encode("latin-1", "replace")):
            raise ValueError(f"invalid header name: {name!r}")
        if "\r" in value or "\n" in value:
            raise ValueError(f"invalid header value for {name!r}")
        out.append(f"{name}: {value}\r\n")
    return out


def serialize_request(request: Request) -> bytes:
    """The request head as bytes."""
    lines = [f"{request.method} {request.target} {request.version}\r\n"]
    lines += _serialize_headers(request.headers)
    lines.append("\r\n")
    return "".join(lines).encode("latin-1")


def serialize_response(response: Response) -> bytes:
    """The response head and body as bytes (adds Content-Length for a body)."""
    headers = list(response.headers)
    if response.status != 101 and "content-length" not in response.headers:
        headers.append(("Content-Length", str(len(response.body))))
    lines = [f"HTTP/1.1 {response.status} {response.reason}\r\n"]
    lines += _serialize_headers(headers)
    lines.append("\r\n")
    return "".join(lines).encode("latin-1") + response.body
