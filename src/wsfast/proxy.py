"""Proxies for every wsfast client: HTTP CONNECT (``http://`` and ``https://``
proxies) and SOCKS (``socks4://``, ``socks4a://``, ``socks5://``,
``socks5h://``, through the optional python-socks: ``pip install
wsfast[socks]``).

The I/O-free part is shared by the asyncio, threading and Trio clients:
:func:`parse_proxy` turns a proxy URL into a :class:`Proxy`,
:func:`get_proxy` finds the proxy the environment gives a WebSocket URI, and
:class:`ConnectHandshake` is the CONNECT exchange as bytes in, verdict out.
:func:`connect_via_proxy` is the blocking connection for threads, and
:class:`TLSTunnel` the TLS-in-TLS socket that ``wss://`` through an
``https://`` proxy needs there.
"""

from __future__ import annotations

import socket
import ssl as ssl_module
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Optional, Sequence, TypeVar, Union
from urllib.parse import unquote, urlsplit

from .auth import basic_auth_header
from .exceptions import InvalidProxy, ProxyError
from .http11 import Headers, HeadReader, HTTPError, Request, Response, parse_response, serialize_request
from .options import default_ssl_context
from .uri import WebSocketURI

__all__ = [
    "Proxy",
    "parse_proxy",
    "get_proxy",
    "select_proxy",
    "ConnectHandshake",
    "socks_arguments",
    "TLSTunnel",
    "connect_via_proxy",
]

SCHEMES = ("http", "https", "socks4", "socks4a", "socks5", "socks5h")
_DEFAULT_PORTS = {"http": 80, "https": 443}
SOCKS_PORT = 1080

MAX_RESPONSE_HEAD = 16384
"""Limit of a proxy's response head to CONNECT, in bytes."""

ProxySetting = Union[str, Literal[True], None]
"""The clients' ``proxy`` argument: ``True`` (from the environment, the
default), ``None`` (connect directly) or a proxy URL."""


@dataclass(frozen=True)
class Proxy:
    """A parsed proxy URL.

    ``scheme`` is one of ``http``, ``https``, ``socks4``, ``socks4a``,
    ``socks5``, ``socks5h``; ``host`` is lower case, ``port`` always set
    (80, 443, or 1080 for SOCKS, when the URL has none). ``user`` and
    ``password`` come from the URL's user information, percent-decoded:
    Basic credentials for an HTTP proxy, user/password authentication for
    SOCKS5 (SOCKS4 sends only the user). ``str()`` gives the URL without
    the password.
    """

    scheme: str
    host: str
    port: int
    user: Optional[str] = None
    password: Optional[str] = field(default=None, repr=False)

    @property
    def is_socks(self) -> bool:
        """Whether this is a SOCKS proxy (else HTTP CONNECT)."""
        return self.scheme.startswith("socks")

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = f"{self.user}@" if self.user is not None else ""
        return f"{self.scheme}://{user}{host}:{self.port}"


def parse_proxy(url: str) -> Proxy:
    """Parse a proxy URL (``scheme://[user:password@]host[:port]``); a URL
    without ``://`` is an HTTP proxy, as curl reads it. Raises
    :class:`~wsfast.exceptions.InvalidProxy`."""
    try:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        port = parts.port
    except ValueError as exc:
        raise InvalidProxy(url, str(exc)) from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise InvalidProxy(url, f"the scheme must be one of {', '.join(SCHEMES)}")
    if not parts.hostname:
        raise InvalidProxy(url, "there is no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InvalidProxy(url, "a proxy URL has no path, query or fragment")
    user = password = None
    if parts.username is not None:
        user, password = unquote(parts.username), unquote(parts.password or "")
        if ":" in user:
            raise InvalidProxy(url, "the user name cannot contain ':'")
    host = parts.hostname
    if not host.isascii():
        host = host.encode("idna").decode("ascii")
    if port is None:
        port = SOCKS_PORT if scheme.startswith("socks") else _DEFAULT_PORTS[scheme]
    return Proxy(scheme, host, port, user, password)


def get_proxy(uri: WebSocketURI) -> Optional[str]:
    """The proxy URL that the environment gives ``uri``, or ``None``.

    The order is websockets': ``no_proxy`` first (``proxy_bypass``: host
    names, domain suffixes, ``*``), then ``wss_proxy`` (``ws_proxy`` for
    ``ws://``), the operating system's SOCKS proxy (or ``socks_proxy``),
    ``https_proxy``, and for ``ws://`` only ``http_proxy``. Variables are read
    as :func:`urllib.request.getproxies` reads them: lower case first, then
    upper case (``HTTP_PROXY`` is ignored in a CGI script); on macOS and
    Windows the system's settings too.
    """
    if urllib.request.proxy_bypass(f"{uri.host}:{uri.port}"):
        return None
    proxies = urllib.request.getproxies()
    schemes = ("wss", "socks", "https") if uri.secure else ("ws", "socks", "https", "http")
    for scheme in schemes:
        url = proxies.get(scheme)
        if url:
            # The OS gives its SOCKS proxy as http://host:port, or bare.
            if scheme == "socks" and (url.startswith("http://") or "://" not in url):
                url = "socks5h://" + url.split("://", 1)[-1]
            return url
    return None


def select_proxy(uri: WebSocketURI, proxy: ProxySetting) -> Optional[Proxy]:
    """The proxy for ``uri`` given a client's ``proxy`` argument: ``True``
    for the environment's (:func:`get_proxy`), ``None`` for none, or a URL."""
    if proxy is True:
        proxy = get_proxy(uri)
    return None if proxy is None else parse_proxy(proxy)


def _authority(uri: WebSocketURI) -> str:
    host = f"[{uri.host}]" if ":" in uri.host else uri.host
    return f"{host}:{uri.port}"


class ConnectHandshake:
    """The CONNECT exchange with an HTTP proxy, without I/O.

    Send :attr:`request`, then feed what the proxy answers to
    :meth:`receive_data` until it returns ``True``: the tunnel is open and
    the next byte on the connection is the server's.
    """

    def __init__(
        self,
        proxy: Proxy,
        uri: WebSocketURI,
        user_agent: Optional[str] = None,
        max_head_size: int = MAX_RESPONSE_HEAD,
    ) -> None:
        self.proxy = proxy
        headers = Headers([("Host", _authority(uri))])
        if user_agent is not None:
            headers.add("User-Agent", user_agent)
        if proxy.user is not None:
            headers.add("Proxy-Authorization", basic_auth_header(proxy.user, proxy.password or ""))
        self.request = serialize_request(Request("CONNECT", _authority(uri), headers))
        self.response: Optional[Response] = None
        self._reader = HeadReader(max_line_length=min(8192, max_head_size), max_head_size=max_head_size)
        self._start = b""

    def _error(self, message: str, response: Optional[Response] = None) -> ProxyError:
        if response is None:
            return ProxyError(str(self.proxy), message)
        status_line = f"{response.status} {response.reason}".rstrip()
        return ProxyError(str(self.proxy), message, response.status, status_line, response)

    def receive_data(self, data: bytes) -> bool:
        """Feed bytes from the proxy (``b""`` at end of file); ``True`` once
        the tunnel is open, ``False`` while the answer is incomplete.

        Raises :class:`~wsfast.exceptions.ProxyError` when the proxy refuses
        (any status but 2xx), answers something else than HTTP or more than
        ``max_head_size`` bytes of head, closes the connection first, or
        sends bytes after a 2xx answer (the server speaks second).
        """
        if not data:
            raise self._error("closed the connection before answering CONNECT")
        if len(self._start) < 5:
            self._start += data[: 5 - len(self._start)]
            if not b"HTTP/".startswith(self._start[:5]):
                raise self._error(f"did not answer CONNECT with HTTP: {bytes(data[:32])!r}")
        try:
            done = self._reader.feed(data)
        except HTTPError as exc:
            what = "status line" if exc.status == 414 else "response head"
            raise self._error(f"answered CONNECT with a {what} over the limit") from None
        if done is None:
            return False
        head, rest = done
        try:
            response = parse_response(head)
        except HTTPError as exc:
            raise self._error(f"answered CONNECT with an invalid response: {exc.message}") from None
        self.response = response
        status = f"{response.status} {response.reason}".rstrip()
        if response.status in (401, 407):  # 407; tinyproxy answers CONNECT with 401
            detail = "with credentials" if self.proxy.user is not None else "without credentials"
            raise self._error(f"refused the credentials ({status}; sent {detail})", response)
        if not 200 <= response.status < 300:
            raise self._error(f"refused CONNECT: {status}", response)
        if rest:
            raise self._error("sent data after its answer to CONNECT", response)
        return True


def socks_arguments(proxy: Proxy) -> dict[str, Any]:
    """The arguments of a python-socks ``Proxy`` for ``proxy``; ImportError
    naming the extra to install when python-socks is missing."""
    try:
        from python_socks import ProxyType
    except ImportError:
        raise ImportError(
            f"the SOCKS proxy {proxy} needs python-socks: pip install wsfast[socks] (or python-socks)"
        ) from None
    return {
        "proxy_type": ProxyType.SOCKS4 if proxy.scheme.startswith("socks4") else ProxyType.SOCKS5,
        "host": proxy.host,
        "port": proxy.port,
        "username": proxy.user,
        "password": proxy.password,
        "rdns": proxy.scheme in ("socks4a", "socks5h"),
    }


def proxy_unreachable(proxy: Proxy, exc: OSError) -> OSError:
    """``exc`` (same class and errno) with a message naming the proxy;
    python-socks' own error is replaced by the one it wraps, and Trio's
    "all attempts to connect failed" by its attempt's when it made one."""
    cause = exc.__cause__
    attempts: Sequence[BaseException] = getattr(cause, "exceptions", ())  # trio.open_tcp_stream's group
    if isinstance(cause, OSError) and type(exc).__module__.startswith("python_socks"):
        exc = cause
    elif len(attempts) == 1 and isinstance(attempts[0], OSError):
        exc = attempts[0]
    error = type(exc)(exc.errno, f"could not connect to the proxy {proxy}: {exc.strerror or exc}")
    error.__cause__ = exc
    return error


def socks_refused(proxy: Proxy, uri: WebSocketURI, exc: Exception) -> ProxyError:
    """The :class:`ProxyError` for python-socks' ``ProxyError``."""
    return ProxyError(str(proxy), f"SOCKS request for {_authority(uri)} failed: {exc}")


# ---------------------------------------------------------------- blocking I/O

T = TypeVar("T")
Stream = Union[socket.socket, "TLSTunnel"]


class TLSTunnel:
    """TLS to the server inside a blocking :class:`ssl.SSLSocket` to a proxy.

    ``SSLSocket`` cannot wrap another ``SSLSocket``: this runs an
    :class:`ssl.SSLObject` over memory BIOs and carries its records through
    the outer socket. It offers what a blocking client uses of a socket:
    ``recv``, ``recv_into``, ``send``, ``sendall``, ``settimeout``,
    ``shutdown``, ``close``, ``fileno`` and the TLS accessors
    (``getpeercert``, ``version``, ``cipher``, ``selected_alpn_protocol``,
    ``pending``); other attributes are the outer socket's. One thread may
    receive while another sends. Before waiting on :meth:`fileno` for
    readability, check :meth:`pending`: decrypted bytes may be buffered.
    """

    bufsize = 65536

    def __init__(
        self,
        sock: ssl_module.SSLSocket,
        context: ssl_module.SSLContext,
        server_hostname: Optional[str] = None,
    ) -> None:
        self.sock = sock
        self._incoming = ssl_module.MemoryBIO()
        self._outgoing = ssl_module.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_hostname=server_hostname)
        self._send_lock = threading.Lock()
        self._run(self._tls.do_handshake)

    def _flush(self) -> None:
        # Read and send under one lock, so that records leave in order.
        with self._send_lock:
            data = self._outgoing.read()
            if data:
                self.sock.sendall(data)

    def _run(self, operation: Callable[..., T], *args: Any) -> T:
        while True:
            try:
                result = operation(*args)
            except ssl_module.SSLWantReadError:
                self._flush()
                data = self.sock.recv(self.bufsize)
                if data:
                    self._incoming.write(data)
                else:
                    self._incoming.write_eof()
                continue
            self._flush()
            return result

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        """Up to ``bufsize`` decrypted bytes; ``b""`` at the end of the stream."""
        if flags:
            raise ValueError("flags are not supported over TLS")
        try:
            return self._run(self._tls.read, bufsize)
        except (ssl_module.SSLZeroReturnError, ssl_module.SSLEOFError):
            return b""

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        """Receive into ``buffer``; the number of bytes, 0 at the end of the stream."""
        if flags:
            raise ValueError("flags are not supported over TLS")
        view = memoryview(buffer).cast("B")
        try:
            count: Any = self._run(self._tls.read, nbytes or len(view), view)  # an int, given a buffer
            return int(count)
        except (ssl_module.SSLZeroReturnError, ssl_module.SSLEOFError):
            return 0

    def send(self, data: Any, flags: int = 0) -> int:
        """Encrypt and send ``data`` (all of it); its length."""
        if flags:
            raise ValueError("flags are not supported over TLS")
        return self._run(self._tls.write, data)

    def sendall(self, data: Any, flags: int = 0) -> None:
        """Send all of ``data``."""
        self.send(data, flags)

    def pending(self) -> int:
        """Decrypted bytes ready to be read without waiting."""
        return self._tls.pending()

    def getpeercert(self, binary_form: bool = False) -> Any:
        """The server's certificate (not the proxy's)."""
        return self._tls.getpeercert(binary_form)

    def version(self) -> Optional[str]:
        return self._tls.version()

    def cipher(self) -> Optional[tuple[str, str, int]]:
        return self._tls.cipher()

    def selected_alpn_protocol(self) -> Optional[str]:
        return self._tls.selected_alpn_protocol()

    @property
    def server_hostname(self) -> Optional[str]:
        return self._tls.server_hostname

    def fileno(self) -> int:
        return self.sock.fileno()

    def settimeout(self, timeout: Optional[float]) -> None:
        self.sock.settimeout(timeout)

    def gettimeout(self) -> Optional[float]:
        return self.sock.gettimeout()

    def shutdown(self, how: int) -> None:
        self.sock.shutdown(how)

    def close(self) -> None:
        self.sock.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)

    def __enter__(self) -> TLSTunnel:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def connect_via_proxy(
    proxy: Proxy,
    uri: WebSocketURI,
    *,
    timeout: Optional[float] = None,
    ssl: Optional[ssl_module.SSLContext] = None,
    server_hostname: Optional[str] = None,
    proxy_ssl: Optional[ssl_module.SSLContext] = None,
    user_agent: Optional[str] = None,
) -> Stream:
    """Connect to ``uri``'s server through ``proxy``, blocking; return the
    connected socket in blocking mode (``settimeout(None)``).

    For ``wss://`` pass the server's TLS context as ``ssl`` (and
    ``server_hostname``, by default ``uri.host``): the returned object
    already speaks TLS with the server: an :class:`ssl.SSLSocket`, or a
    :class:`TLSTunnel` through an ``https://`` proxy. ``proxy_ssl`` is the
    TLS context for an ``https://`` proxy (default: a verifying one).
    ``timeout`` bounds the whole proxy phase and the TLS handshakes.
    ``user_agent`` goes in the CONNECT request.

    Raises :class:`~wsfast.exceptions.ProxyError` when the proxy refuses,
    ``OSError`` naming the proxy when it cannot be reached, ``TimeoutError``,
    and ImportError for a SOCKS proxy without python-socks.
    """
    deadline = None if timeout is None else time.monotonic() + timeout

    def remaining() -> Optional[float]:
        if deadline is None:
            return None
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"timed out connecting through the proxy {proxy}")
        return left

    sock: Stream
    if proxy.is_socks:
        arguments = socks_arguments(proxy)
        from python_socks import ProxyConnectionError
        from python_socks import ProxyError as SocksError
        from python_socks.sync import Proxy as SocksProxy

        try:
            sock = SocksProxy(**arguments).connect(uri.host, uri.port, timeout=remaining())
        except ProxyConnectionError as exc:
            raise proxy_unreachable(proxy, exc) from exc
        except SocksError as exc:
            raise socks_refused(proxy, uri, exc) from exc
    else:
        try:
            sock = socket.create_connection((proxy.host, proxy.port), remaining())
        except OSError as exc:
            if isinstance(exc, socket.timeout):
                raise
            raise proxy_unreachable(proxy, exc) from exc
    try:
        if not proxy.is_socks:
            if proxy.scheme == "https":
                sock = (proxy_ssl or default_ssl_context()).wrap_socket(sock, server_hostname=proxy.host)
            handshake = ConnectHandshake(proxy, uri, user_agent)
            sock.sendall(handshake.request)
            while True:
                sock.settimeout(remaining())
                if handshake.receive_data(sock.recv(4096)):
                    break
        if ssl is not None:
            sock.settimeout(remaining())
            hostname = server_hostname or uri.host
            if isinstance(sock, ssl_module.SSLSocket):
                sock = TLSTunnel(sock, ssl, hostname)
            else:
                sock = ssl.wrap_socket(sock, server_hostname=hostname)
        sock.settimeout(None)
    except BaseException as exc:
        sock.close()
        if isinstance(exc, socket.timeout):  # TimeoutError, with its own name before Python 3.10
            raise TimeoutError(f"timed out connecting through the proxy {proxy}") from exc
        raise
    return sock
