"""wsfast's own TLS transport for asyncio's selector event loops.

wsfast uses it for ``wss://`` on asyncio's standard loops; it also runs on
uvloop (tested there), where wsfast leaves TLS to uvloop's compiled SSL
transport, as light and cheaper for large messages (see
:func:`wsfast.asyncio.sockets.usable`).

:class:`TLSTransport` runs an :class:`ssl.SSLObject` over two
:class:`ssl.MemoryBIO` objects and drives a connected non-blocking socket
through the loop's ``add_reader``/``add_writer``, for a
:class:`asyncio.BufferedProtocol` (wsfast's
:class:`~wsfast.asyncio.transport.WebSocketTransport`). It behaves as the
loops' SSL transports (``asyncio.sslproto``: handshake and shutdown
timeouts, ``close_notify`` both ways, ``get_extra_info`` with ``ssl_object``,
``peercert``, ``cipher``, ``compression``, ``sslcontext``, ``socket``,
``peername``, ``sockname``) and differs in what a connection costs:

* ciphertext is read into ONE buffer per thread (reads are synchronous: a
  read is handed to OpenSSL before the next one), where asyncio's
  ``SSLProtocol`` allocates a zeroed 256 KiB ``bytearray`` per connection;
* plaintext is decrypted straight into the protocol's buffer
  (``SSLObject.read(n, buffer)``);
* a write is encrypted and sent with one ``send`` (``sendmsg`` for the
  chunks of a large one); what the socket does not take is queued by
  reference and sent when the socket is writable;
* the memory BIOs are fed and drained in chunks of at most
  :data:`CHUNK` bytes, so that OpenSSL's BIO buffers (which keep their
  largest size) stay small after a large message.

Differences from asyncio's SSL transport, on purpose: the default write
buffer limits are those of the socket transports (16 KiB, 64 KiB), not
128 KiB/512 KiB; ``pause_reading`` stops reading the socket at once (rather
than after 256 KiB more in the incoming BIO); the shutdown timeout also
bounds the sending of what is still queued after the TLS shutdown; a
handshake that fails sends OpenSSL's alert to the peer (best effort) before
closing.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import threading
from asyncio.trsock import TransportSocket
from typing import Any, Optional

__all__ = ["TLSTransport", "CHUNK", "SSL_HANDSHAKE_TIMEOUT", "SSL_SHUTDOWN_TIMEOUT"]

logger = logging.getLogger("asyncio")  # as asyncio's transports log

SSL_HANDSHAKE_TIMEOUT = 60.0  # asyncio.constants.SSL_HANDSHAKE_TIMEOUT
SSL_SHUTDOWN_TIMEOUT = 30.0  # asyncio.constants.SSL_SHUTDOWN_TIMEOUT
READ_SIZE = 262144  # ciphertext read per recv, into the buffer shared by a thread's connections
CHUNK = 65536  # bytes fed to or encrypted into a memory BIO at a time
IOV_MAX = 512  # buffers per sendmsg
LOG_THRESHOLD_FOR_CONNLOST_WRITES = 5

# States.
HANDSHAKE, WRAPPED, SHUTDOWN, FINISHING, CLOSED = range(5)

_AGAIN = (ssl.SSLWantReadError, ssl.SSLSyscallError)  # as asyncio.sslproto.SSLAgainErrors
_local = threading.local()


def _cipher_buffer() -> tuple[bytearray, memoryview]:
    """The ciphertext read buffer of this thread."""
    pair: Optional[tuple[bytearray, memoryview]] = getattr(_local, "pair", None)
    if pair is None:
        buffer = bytearray(READ_SIZE)
        pair = _local.pair = (buffer, memoryview(buffer))
    return pair


class TLSTransport(asyncio.Transport):
    """A TLS connection over a connected stream socket, on an event loop with
    ``add_reader``/``add_writer``. POSIX only.

    The handshake starts at once; ``protocol.connection_made`` follows when
    it succeeds, and ``waiter`` (a future, optional) gets its result: ``None``
    or the handshake's error (``ssl.SSLCertVerificationError``,
    ``ConnectionResetError`` when the peer closes during the handshake,
    ``ConnectionAbortedError`` after ``ssl_handshake_timeout`` seconds).
    The protocol gets no callback at all when the handshake fails, as with
    asyncio; the socket is closed.
    """

    _extra: dict[str, Any]  # asyncio.BaseTransport's slot

    __slots__ = (
        "_loop",
        "_sock",
        "_fd",
        "_protocol",
        "_sslobj",
        "_raw",
        "_incoming",
        "_outgoing",
        "_state",
        "_waiter",
        "_timer",
        "_handshake_timeout",
        "_shutdown_timeout",
        "_pending",
        "_sent",
        "_size",
        "_high",
        "_low",
        "_writing_paused",
        "_paused",
        "_reading",
        "_closed",
        "_eof",
        "_made",
        "_eof_called",
        "_conn_lost",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        protocol: asyncio.BaseProtocol,
        sslcontext: ssl.SSLContext,
        *,
        server_side: bool = False,
        server_hostname: Optional[str] = None,
        ssl_handshake_timeout: Optional[float] = None,
        ssl_shutdown_timeout: Optional[float] = None,
        extra: Optional[dict[str, Any]] = None,
        waiter: Optional[asyncio.Future[None]] = None,
    ) -> None:
        if ssl_handshake_timeout is None:
            ssl_handshake_timeout = SSL_HANDSHAKE_TIMEOUT
        elif ssl_handshake_timeout <= 0:
            raise ValueError(f"ssl_handshake_timeout should be a positive number, got {ssl_handshake_timeout}")
        if ssl_shutdown_timeout is None:
            ssl_shutdown_timeout = SSL_SHUTDOWN_TIMEOUT
        elif ssl_shutdown_timeout <= 0:
            raise ValueError(f"ssl_shutdown_timeout should be a positive number, got {ssl_shutdown_timeout}")
        super().__init__(dict(extra) if extra else {})
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._sslobj = sslcontext.wrap_bio(
            self._incoming,
            self._outgoing,
            server_side=server_side,
            server_hostname=None if server_side else server_hostname or None,
        )
        # The SSLObject's own _ssl object, when it has one: its read, write and
        # pending without the SSLObject's Python wrapper methods (a frame each).
        self._raw: Any = getattr(self._sslobj, "_sslobj", self._sslobj)
        sock.setblocking(False)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._protocol: Any = protocol  # duck-typed: a BufferedProtocol
        extra = self._extra
        extra["sslcontext"] = sslcontext
        extra["socket"] = TransportSocket(sock)
        for name, get in (("sockname", sock.getsockname), ("peername", sock.getpeername)):
            if name not in extra:
                try:
                    extra[name] = get()
                except OSError:
                    extra[name] = None
        self._state = HANDSHAKE
        self._waiter = waiter
        self._handshake_timeout = ssl_handshake_timeout
        self._shutdown_timeout = ssl_shutdown_timeout
        self._pending: list[Any] = []  # ciphertext waiting to be sent, the first from _sent on
        self._sent = 0
        self._size = 0
        self._high = 65536
        self._low = 16384
        self._writing_paused = False
        self._paused = False
        self._reading = False
        self._closed = False
        self._eof = False  # the socket's EOF was read
        self._made = False  # protocol.connection_made was called
        self._eof_called = False
        self._conn_lost = 0
        self._timer: Optional[asyncio.TimerHandle] = loop.call_later(ssl_handshake_timeout, self._handshake_timed_out)
        self._start_reading()
        self._do_handshake()

    def __repr__(self) -> str:
        state = ("handshake", "open", "shutdown", "finishing", "closed")[self._state]
        return f"<wsfast.TLSTransport fd={self._fd} {state} pending={self._size}>"

    # ------------------------------------------------------------ the socket

    def _start_reading(self) -> None:
        if not self._reading:
            self._reading = True
            self._loop.add_reader(self._fd, self._on_readable)

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._fd)

    def _on_readable(self) -> None:
        try:
            buffer, view = _local.pair
        except AttributeError:
            buffer, view = _cipher_buffer()
        try:
            n = self._sock.recv_into(buffer)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fatal_error(exc, "Fatal read error on TLS transport")
            return
        if n == 0:
            self._read_eof()
            return
        if self._state == WRAPPED:
            self._do_read(view, n)  # feeds the incoming BIO itself
            return
        start = 0
        while start < n:  # the handshake, the shutdown: a chunk at a time
            self._incoming.write(view[start : min(start + CHUNK, n)])
            start += CHUNK
            self._process()
            if self._state >= FINISHING:
                return
            if self._state == WRAPPED:  # the handshake ended: data follows
                if start < n:
                    self._do_read(view[start:n], n - start)
                return

    def _process(self) -> None:
        """Move what the incoming BIO holds on, as the state says."""
        state = self._state
        if state == WRAPPED:
            self._do_read()
        elif state == HANDSHAKE:
            self._do_handshake()
        elif state == SHUTDOWN:
            self._do_shutdown()

    def _read_eof(self) -> None:
        self._eof = True
        self._stop_reading()
        state = self._state
        if state == HANDSHAKE:
            self._handshake_failed(ConnectionResetError("the peer closed the connection during the TLS handshake"))
        elif state == WRAPPED:
            # Without close_notify: deliver what is left, then eof_received
            # and close, as asyncio does (_do_read ends with it).
            self._closed = True
            self._do_read()
        elif state == SHUTDOWN:
            self._do_shutdown()

    def _send(self, chunks: list[bytes]) -> None:
        """Send ciphertext, or queue what the socket does not take."""
        pending = self._pending
        if pending:
            for chunk in chunks:
                if chunk:
                    pending.append(chunk)
                    self._size += len(chunk)
            return
        try:
            if len(chunks) == 1:
                n = self._sock.send(chunks[0])
            else:
                n = self._sock.sendmsg(chunks[:IOV_MAX])
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError as exc:
            self._fatal_error(exc, "Fatal write error on TLS transport")
            return
        for chunk in chunks:
            size = len(chunk)
            if n >= size:
                n -= size
                continue
            if not pending:
                self._sent = n
            pending.append(chunk)
            self._size += size - n
            n = 0
        if pending:
            self._loop.add_writer(self._fd, self._on_writable)

    def _flush(self) -> None:
        """Send what OpenSSL wrote to the outgoing BIO."""
        if self._outgoing.pending:
            data = self._outgoing.read()
            if self._state != CLOSED:
                self._send([data])

    def _on_writable(self) -> None:
        pending = self._pending
        if not pending or self._state == CLOSED:
            return
        buffers: list[Any] = pending[:IOV_MAX]
        if self._sent:
            buffers[0] = memoryview(buffers[0])[self._sent :]
        try:
            n = self._sock.sendmsg(buffers)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fatal_error(exc, "Fatal write error on TLS transport")
            return
        self._size -= n
        n += self._sent
        done = 0
        while done < len(pending) and n >= len(pending[done]):
            n -= len(pending[done])
            done += 1
        del pending[:done]
        self._sent = n
        if not pending:
            self._loop.remove_writer(self._fd)
        self._maybe_resume_protocol()
        if not self._pending and self._state == FINISHING:
            self._lose(None)

    # ------------------------------------------------------------ handshake

    def _do_handshake(self) -> None:
        try:
            self._raw.do_handshake()
        except _AGAIN:
            self._flush()
            return
        except ssl.SSLError as exc:
            self._handshake_failed(exc)
            return
        self._handshake_done()

    def _handshake_timed_out(self) -> None:
        self._timer = None
        if self._state == HANDSHAKE:
            message = f"SSL handshake is taking longer than {self._handshake_timeout} seconds: aborting the connection"
            self._fatal_error(ConnectionAbortedError(message), message)

    def _handshake_failed(self, exc: BaseException) -> None:
        if self._outgoing.pending and not self._eof:  # OpenSSL's alert, best effort
            try:
                self._sock.send(self._outgoing.read())
            except OSError:
                pass
        if isinstance(exc, ssl.CertificateError):
            message = "SSL handshake failed on verifying the certificate"
        else:
            message = "SSL handshake failed"
        self._fatal_error(exc, message)

    def _handshake_done(self) -> None:
        self._cancel_timer()
        sslobj = self._sslobj
        try:
            peercert = sslobj.getpeercert()
        except Exception as exc:  # pragma: no cover - as asyncio
            self._handshake_failed(exc)
            return
        self._extra.update(
            peercert=peercert, cipher=sslobj.cipher(), compression=sslobj.compression(), ssl_object=sslobj
        )
        self._state = WRAPPED
        self._flush()  # TLS 1.3 session tickets (server side)
        self._made = True
        try:
            self._protocol.connection_made(self)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.connection_made() call failed.")
            return
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
        if self._state == WRAPPED and self._incoming.pending:
            self._do_read()  # application data that came with the handshake

    # ------------------------------------------------------------ reading

    def _do_read(self, view: Optional[memoryview] = None, end: int = 0) -> None:
        """Decrypt into the protocol's buffer what the incoming BIO holds,
        and the ciphertext ``view[:end]`` (fed to the BIO :data:`CHUNK`
        bytes at a time, so that its buffer stays small, while the
        protocol's buffer fills across chunks: a large message arrives in
        as few ``buffer_updated`` calls as with a large BIO).

        A read is repeated only while OpenSSL has bytes to work on (in the
        incoming BIO, or decrypted and not read yet): most reads then end
        without the cost of an SSLWantReadError."""
        raw = self._raw
        incoming = self._incoming
        pos = 0
        if view is not None:
            pos = min(end, CHUNK)
            incoming.write(view[:pos])
        try:
            while self._state == WRAPPED and not self._paused:
                protocol = self._protocol
                try:
                    buffer = protocol.get_buffer(-1)
                    if type(buffer) is not memoryview:
                        buffer = memoryview(buffer)
                    size = len(buffer)
                    if not size:
                        raise RuntimeError("get_buffer() returned an empty buffer")
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:
                    self._fatal_error(exc, "Fatal error: protocol.get_buffer() call failed.")
                    return
                offset = 0
                closed = False
                try:
                    while offset < size:
                        try:
                            count = raw.read(size - offset, buffer[offset:] if offset else buffer)
                        except _AGAIN:  # the BIO is empty: feed it, or stop
                            if pos < end and view is not None and not incoming.pending:
                                nxt = min(pos + CHUNK, end)
                                incoming.write(view[pos:nxt])
                                pos = nxt
                                continue
                            break
                        if not count:
                            closed = True
                            break
                        offset += count
                        if not (incoming.pending or raw.pending()):
                            if pos >= end or view is None:
                                break
                            nxt = min(pos + CHUNK, end)
                            incoming.write(view[pos:nxt])
                            pos = nxt
                except ssl.SSLZeroReturnError:
                    closed = True
                except ssl.SSLError as exc:
                    if offset:
                        self._deliver(offset)
                    self._fatal_error(exc, "Fatal error on SSL transport")
                    return
                if offset:
                    try:
                        protocol.buffer_updated(offset)
                    except (SystemExit, KeyboardInterrupt):
                        raise
                    except BaseException as exc:
                        self._fatal_error(exc, "Fatal error: protocol.buffer_updated() call failed.")
                        return
                if closed:  # the peer's close_notify
                    self._call_eof_received()
                    if self._state == WRAPPED:
                        self._closed = True
                        self._start_shutdown()
                    return
                if offset < size or not (pos < end or incoming.pending or raw.pending()):
                    break  # nothing more to decrypt yet
        finally:
            if view is not None and pos < end and self._state < FINISHING:
                incoming.write(view[pos:end])  # the rest, for resume_reading or the shutdown
        if self._outgoing.pending:
            self._flush()  # a TLS 1.3 key update, an alert
        if self._eof and self._state == WRAPPED and not self._paused:
            # The socket's EOF without close_notify: end as asyncio does.
            self._state = SHUTDOWN
            self._do_shutdown()

    def _deliver(self, nbytes: int) -> bool:
        try:
            self._protocol.buffer_updated(nbytes)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.buffer_updated() call failed.")
            return False
        return True

    def _call_eof_received(self) -> None:
        if self._made and not self._eof_called and self._state != CLOSED:
            self._eof_called = True
            try:
                keep_open = self._protocol.eof_received()
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Error calling eof_received()")
                return
            if keep_open:
                logger.warning("returning true from eof_received() has no effect when using ssl")

    def is_reading(self) -> bool:
        return not self._paused and self._state <= WRAPPED

    def pause_reading(self) -> None:
        if self._paused:
            return
        self._paused = True
        if self._state == WRAPPED:
            self._stop_reading()

    def resume_reading(self) -> None:
        if not self._paused:
            return
        self._paused = False
        if self._state == WRAPPED:
            if not self._eof:
                self._start_reading()
            self._loop.call_soon(self._resume)

    def _resume(self) -> None:
        if self._state == WRAPPED and not self._paused:
            self._do_read()  # what the incoming BIO kept

    # ------------------------------------------------------------ writing

    def write(self, data: Any) -> None:
        kind = type(data)
        if kind is memoryview:
            size = data.nbytes
        elif kind is bytes or kind is bytearray or isinstance(data, (bytes, bytearray)):
            size = len(data)
        elif isinstance(data, memoryview):
            size = data.nbytes
        else:
            raise TypeError(f"data: expecting a bytes-like instance, got {type(data).__name__}")
        if not size:
            return
        if self._state != WRAPPED or self._closed:
            if self._conn_lost >= LOG_THRESHOLD_FOR_CONNLOST_WRITES:
                logger.warning("SSL connection is closed")
            self._conn_lost += 1
            return
        raw = self._raw
        outgoing = self._outgoing
        try:
            if size <= CHUNK:
                raw.write(data)
                out = outgoing.read()
                chunks = None
            else:
                view = memoryview(data).cast("B")
                chunks = []
                for start in range(0, size, CHUNK):
                    raw.write(view[start : start + CHUNK])
                    chunks.append(outgoing.read())
        except ssl.SSLError as exc:
            self._fatal_error(exc, "Fatal error on SSL transport")
            return
        if chunks is not None:
            self._send(chunks)
        elif self._pending:  # behind what is queued
            self._pending.append(out)
            self._size += len(out)
        else:  # the common case: one send
            try:
                n = self._sock.send(out)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError as exc:
                self._fatal_error(exc, "Fatal write error on TLS transport")
                return
            if n == len(out):
                return
            self._pending.append(out)
            self._sent = n
            self._size = len(out) - n
            self._loop.add_writer(self._fd, self._on_writable)
        if self._size > self._high and not self._writing_paused:
            self._writing_paused = True
            self._tell_protocol("pause_writing")

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def can_write_eof(self) -> bool:
        return False

    def write_eof(self) -> None:
        raise NotImplementedError

    def get_write_buffer_size(self) -> int:
        return self._size

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (self._low, self._high)

    def set_write_buffer_limits(self, high: Optional[int] = None, low: Optional[int] = None) -> None:
        if high is None:
            high = 65536 if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high = high
        self._low = low
        if self._size > self._high and not self._writing_paused:
            self._writing_paused = True
            self._tell_protocol("pause_writing")
        else:
            self._maybe_resume_protocol()

    def _maybe_resume_protocol(self) -> None:
        if self._writing_paused and self._size <= self._low:
            self._writing_paused = False
            self._tell_protocol("resume_writing")

    def _tell_protocol(self, method: str) -> None:
        try:
            getattr(self._protocol, method)()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._loop.call_exception_handler(
                {
                    "message": f"protocol.{method}() failed",
                    "exception": exc,
                    "transport": self,
                    "protocol": self._protocol,
                }
            )

    # ------------------------------------------------------------ closing

    def is_closing(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Send close_notify once what is queued is sent; wait for the peer's
        (or its EOF) for at most ``ssl_shutdown_timeout`` seconds; close."""
        if self._closed:
            return
        self._closed = True
        if self._state == HANDSHAKE:
            self._force_close(None)
        elif self._state == WRAPPED:
            self._start_shutdown()

    def abort(self) -> None:
        """Close the socket now; queued bytes are dropped."""
        self._force_close(None)

    def _start_shutdown(self) -> None:
        self._state = SHUTDOWN
        self._cancel_timer()
        self._timer = self._loop.call_later(self._shutdown_timeout, self._shutdown_timed_out)
        if not self._eof:
            self._start_reading()  # for the peer's close_notify, paused or not
        self._do_shutdown()

    def _do_shutdown(self) -> None:
        try:
            if not self._eof:
                self._sslobj.unwrap()
        except _AGAIN:
            self._flush()  # our close_notify; the peer's is awaited
            return
        except ssl.SSLError as exc:
            self._fatal_error(exc, "Fatal error on SSL transport")
            return
        self._flush()
        self._call_eof_received()
        if self._state == SHUTDOWN:
            self._state = FINISHING
            self._stop_reading()
            if not self._pending:
                self._lose(None)

    def _shutdown_timed_out(self) -> None:
        self._timer = None
        if self._state in (SHUTDOWN, FINISHING):
            self._force_close(TimeoutError("SSL shutdown timed out"))

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fatal_error(self, exc: BaseException, message: str) -> None:
        if isinstance(exc, OSError):  # the peer went away, a TLS error: no traceback
            if self._loop.get_debug():
                logger.debug("%r: %s", self, message, exc_info=True)
        elif not isinstance(exc, asyncio.CancelledError):
            self._loop.call_exception_handler(
                {"message": message, "exception": exc, "transport": self, "protocol": self._protocol}
            )
        self._force_close(exc)

    def _force_close(self, exc: Optional[BaseException]) -> None:
        if self._state == CLOSED:
            return
        self._closed = True
        if self._pending:
            self._pending.clear()
            self._size = 0
            self._sent = 0
            self._loop.remove_writer(self._fd)
        self._lose(exc)

    def _lose(self, exc: Optional[BaseException]) -> None:
        """The end: stop watching the socket; close it and tell the protocol."""
        self._state = CLOSED
        self._closed = True
        self._cancel_timer()
        self._stop_reading()
        if self._pending:
            self._loop.remove_writer(self._fd)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_exception(
                    exc
                    if exc is not None
                    else ConnectionAbortedError("the connection was closed during the TLS handshake")
                )
        if self._made:
            self._loop.call_soon(self._call_connection_lost, exc)
        else:  # no protocol callback: close now
            self._sock.close()
            self._protocol = None

    def _call_connection_lost(self, exc: Optional[BaseException]) -> None:
        try:
            self._protocol.connection_lost(exc)
        finally:
            self._sock.close()
            self._protocol = None

    # ------------------------------------------------------------ the rest of asyncio.Transport

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._extra.get(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol  # type: ignore[no-any-return]

    def get_read_buffer_size(self) -> int:
        return self._incoming.pending
