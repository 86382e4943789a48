"""A WebSocket connection for threads: :class:`WebSocket`.

Design: the thread that calls :meth:`WebSocket.recv` reads the socket
itself. ``recv`` takes the *reader role* (one thread at a time), reads into a
per-thread buffer, parses every frame of the read in one codec call (the
compiled codec delivers whole messages straight into a queue) and returns
the first message; the other messages of that read wait in the queue for the
next calls. There is no reader thread and no hand-off per message, unlike
``websockets.sync``, whose background reader hands every message to the
application thread through a queue (a thread switch and a GIL hand-off each
time). Measured on 2 vCPUs (``wsfast bench --scenarios sync``, and by hand
with both processes on one core), a 64 B round trip costs the side under
test about 10 µs of CPU against 26-28 µs for ``websockets.sync`` (48,000
round trips/s between two wsfast.sync peers on one core; across cores the
machine's wake-ups bound both libraries near the raw TCP ping-pong rate),
and a 1 MiB one about 650 µs against 1,250-1,400 µs.

Someone must still read when nobody is in ``recv``: to answer pings at once,
to see the pong of a keepalive ping, to answer the peer's close frame. A
small *housekeeping thread* per connection waits for the socket to become
readable (``poll``, without reading) and, when no other thread holds the
reader role, reads what is there and queues it (up to ``max_queue``, then it
stops until ``recv`` drains the queue). When a ``recv`` is active, the
housekeeping thread sleeps for a tick instead, so it costs no wake-up per
message. It also sends the keepalive pings (``ping_interval``; no pong
within ``ping_timeout``: close 1011; at each ping, a connection that has not
compressed or inflated a message since the previous one frees its
permessage-deflate zlib state, :meth:`Connection.release_idle_memory`), and
it enforces ``close_timeout``
(it shuts the socket down, which wakes any thread blocked in a read or a
write).

Writing: every frame is produced by the sans-I/O core under one lock (so
frames never interleave and the deflate state stays consistent across
threads) and appended to a queue of outgoing buffers in that order;
whichever thread holds the write lock writes the queue with ``sendall``.
A reader never blocks on the write lock (a sender blocked on a full socket
buffer must not stop us reading): it leaves its automatic replies to the
thread writing (only a close frame is waited for). With TLS, as in
``websockets.sync``, one thread may read the ``SSLSocket`` while another
writes it.

``send`` blocks in ``sendall`` until the kernel took the data. While a
thread is writing (maybe stuck on a peer that pings and does not read), the
automatic pongs wait in the sans-I/O core, bounded: beyond ``write_limit``
bytes of them only the latest is kept (:meth:`Connection.bound_pongs`, as
asyncio does; RFC 6455 allows answering only the most recent ping); the
writer sends them when it is done. Options that do not apply here:
``own_transport`` (asyncio only) and ``stream_messages`` (rejected with
:exc:`ValueError`).
``fail_timeout`` applies as in the awaitable API: when the peer breaks the
protocol, the close frame waits until the reader has taken the messages that
came before the error and come back to ``recv`` (or closed), so that its
replies go out first.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import threading
import time
from collections import deque
from typing import Any, Callable, Iterable, Iterator, Optional, Union

from ..events import BinaryMessage, Pong, TextMessage
from ..exceptions import ConnectionClosed, ConnectionClosedOK, FrameError, InvalidState, connection_closed
from ..http11 import Request, Response
from ..options import Options
from ..protocol import BY_REFERENCE, Connection, State

__all__ = ["WebSocket", "PongWaiter", "READ_SIZE", "MESSAGE_OVERHEAD"]

logger = logging.getLogger("wsfast")

READ_SIZE = 262144
"""Bytes asked of the socket per read, into a buffer per reading thread."""

MESSAGE_OVERHEAD = 64
"""Bytes each queued message counts toward ``max_queue`` beyond its length."""

TICK = 1.0
"""Seconds the housekeeping thread sleeps when another thread is reading."""

_OPEN = State.OPEN
_CLOSE_HEAD = b"\x88"
_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)
_local = threading.local()

Message = Union[str, bytes]


def _buffer() -> memoryview:
    view: Optional[memoryview] = getattr(_local, "view", None)
    if view is None:
        view = _local.view = memoryview(bytearray(READ_SIZE))
    return view


def _readable(sock: socket.socket, timeout: Optional[float]) -> bool:
    """Whether ``sock`` has something to read within ``timeout`` seconds."""
    pending = getattr(sock, "pending", None)
    if pending is not None and pending():
        return True  # TLS: decrypted bytes already buffered
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(None if timeout is None else max(timeout, 0.0) * 1000))
    return bool(select.select([sock], [], [], timeout)[0])


class PongWaiter:
    """What :meth:`WebSocket.ping` returns: :meth:`wait` for the pong."""

    __slots__ = ("_ws", "_done", "latency")

    def __init__(self, ws: WebSocket) -> None:
        self._ws = ws
        self._done = False
        #: The round-trip time in seconds, once the pong arrived.
        self.latency: Optional[float] = None

    def done(self) -> bool:
        """Whether the pong arrived."""
        return self._done

    def wait(self, timeout: Optional[float] = None) -> float:
        """Wait for the pong (reading the socket if no other thread does);
        return the round-trip time. Raises :exc:`TimeoutError`, or
        :class:`~wsfast.exceptions.ConnectionClosed` if the connection
        closed first."""
        if not self._ws._wait(self.done, timeout):
            raise TimeoutError("no pong within the timeout")
        if self.latency is None:
            raise self._ws._closed_error()
        return self.latency


class WebSocket:
    """One WebSocket connection, used from any number of threads.

    ``send`` may be called from several threads at once; ``recv`` from one
    at a time (a second waits for the first). ``for message in ws`` iterates
    until the connection closes normally; ``recv`` raises
    :class:`~wsfast.exceptions.ConnectionClosed` once the queue is empty and
    the connection closed.
    """

    def __init__(self, sock: socket.socket, conn: Connection, options: Options) -> None:
        self.socket = sock
        self.conn = conn
        self.options = options
        self.remote_address: Any = _peer(sock)
        #: Round-trip time of the last ping answered, in seconds.
        self.latency = 0.0
        self._lock = threading.Lock()  # the protocol core, the queues, the flags
        self._cond = threading.Condition(self._lock)
        self._write_lock = threading.Lock()
        # Wakes the housekeeping thread (never per message): closing, the
        # end, a full queue drained.
        self._wakeup = threading.Event()
        self._message_lock = threading.Lock()  # one outgoing message at a time (fragments)
        self._out: deque[Any] = deque()
        self._messages: deque[Message] = deque()
        self._queued = 0
        self._reading = False
        self._waiting = 0  # threads waiting on _cond: notified only when there are some
        self._taken = False  # recv returned a message and was not called again
        self._held: Optional[tuple[int, str]] = None  # a failure's close frame, held
        self._held_until = 0.0
        self._pings: dict[bytes, tuple[float, Optional[PongWaiter]]] = {}
        self._ping_count = 0
        self._keepalive_due: Optional[float] = None
        self._pong_due: Optional[float] = None
        self._close_due: Optional[float] = None
        self._done = False  # the TCP connection is over
        self._shut = False
        self._thread: Optional[threading.Thread] = None
        self._sink = _Sink(self)
        conn.sink = self._sink

    def __repr__(self) -> str:
        return f"<WebSocket {self.conn.role.value} {self.state.name} peer={self.remote_address}>"

    # ------------------------------------------------------------ properties

    @property
    def state(self) -> State:
        return self.conn.state

    @property
    def subprotocol(self) -> Optional[str]:
        return self.conn.subprotocol

    @property
    def request(self) -> Optional[Request]:
        return getattr(self.conn, "request", None)

    @property
    def response(self) -> Optional[Response]:
        return getattr(self.conn, "response", None)

    @property
    def close_code(self) -> Optional[int]:
        """The close code received (1006 if none), once the connection closed."""
        return self.conn.close_code if self._done else None

    @property
    def close_reason(self) -> Optional[str]:
        return self.conn.close_reason if self._done else None

    # ------------------------------------------------------------ lifecycle

    def _start(self) -> None:
        """The opening handshake succeeded: deliver messages to the queue,
        process what came with the handshake, start housekeeping."""
        if self.options.ping_interval is not None:
            self._keepalive_due = time.monotonic() + self.options.ping_interval
        with self._lock:
            self._process(self.conn.receive_data(b""))
        self._flush(False)
        thread = threading.Thread(target=self._housekeep, name=f"wsfast-{self.remote_address}", daemon=True)
        self._thread = thread
        thread.start()

    def __enter__(self) -> WebSocket:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # ------------------------------------------------------------ receiving

    def recv(self, timeout: Optional[float] = None) -> Message:
        """The next message: ``str`` for text, ``bytes`` for binary.

        Raises :exc:`TimeoutError` after ``timeout`` seconds without one
        (the connection stays usable), and
        :class:`~wsfast.exceptions.ConnectionClosed` once the connection
        closed and every message received was returned.
        """
        messages = self._messages
        deadline = None if timeout is None else time.monotonic() + timeout
        if not messages and self._held is not None:
            with self._lock:
                self._release_failure()  # every message before the error answered: fail now
            self._after_close()
        with self._lock:
            if not messages:
                self._taken = False
            while not messages:
                if self._done:
                    raise self._closed_error()
                if not self._reading:
                    self._reading = True
                    break
                if not self._wait_cond(None if deadline is None else deadline - time.monotonic()):
                    raise TimeoutError("no message within the timeout")
            else:
                return self._take()
        try:
            while self._read(deadline):
                if messages or self._done:
                    break
            else:
                raise TimeoutError("no message within the timeout")
        except BaseException:
            with self._lock:
                self._reading = False
                self._notify()
            raise
        with self._lock:
            self._reading = False
            if self._waiting:
                self._cond.notify_all()
            if messages:
                return self._take()
        raise self._closed_error()

    def _wait_cond(self, timeout: Optional[float]) -> bool:
        """Wait on the condition (under the lock), counted."""
        self._waiting += 1
        try:
            return self._cond.wait(timeout)
        finally:
            self._waiting -= 1

    def _notify(self) -> None:
        """Wake the threads waiting on the condition, if any (under the lock)."""
        if self._waiting:
            self._cond.notify_all()

    def _take(self) -> Message:
        data = self._messages.popleft()
        queued = self._queued
        self._queued = queued - len(data) - MESSAGE_OVERHEAD
        if queued > self.options.max_queue >= self._queued:
            self._wakeup.set()  # the housekeeping thread may read again
        self._taken = True
        return data

    def __iter__(self) -> Iterator[Message]:
        while True:
            try:
                yield self.recv()
            except ConnectionClosedOK:
                return

    def _read(self, deadline: Optional[float]) -> bool:
        """One read by the thread that holds the reader role; ``False`` if
        ``deadline`` passed first."""
        sock = self.socket
        if deadline is not None and not _readable(sock, deadline - time.monotonic()):
            return False
        view = _buffer()
        try:
            n = sock.recv_into(view)
        except (OSError, ValueError):  # reset, or shut down / closed by another thread
            n = 0
        self._received(view, n)
        return True

    def _received(self, view: memoryview, n: int) -> None:
        """Process ``n`` bytes read (0: the end of the stream), then write
        the automatic replies."""
        conn = self.conn
        with self._lock:
            if self._done:
                return
            if not n:
                conn.receive_eof()
                self._finish()
                return
            events = conn.receive_data(view[:n])
            if events:
                self._process(events)
            elif conn._out:
                self._after_input()
            is_open = conn.state is _OPEN
        if not is_open:
            self._after_close()
        elif self._out:
            self._flush(False)

    def _after_close(self, wait: bool = True) -> None:
        """A close frame went out or came in: write what is queued; a server
        (or a client whose handshake failed) then ends the TCP connection.
        ``wait=False``: only if no other thread is writing."""
        if not self._write_lock.acquire(wait):
            return
        try:
            out = self._out
            try:
                while out:
                    self.socket.sendall(out.popleft())
            except (OSError, ValueError):
                out.clear()
                self._abort()
                return
            if self.conn.should_close_transport and self._held is None:
                self._abort()
        finally:
            self._write_lock.release()

    def _process(self, events: list[Any]) -> None:
        """Handle the events of one read (under the lock)."""
        sink = self._sink
        for event in events:
            kind = type(event)
            if kind is TextMessage or kind is BinaryMessage:  # messages after a control frame
                sink.on_text(event.data)
            elif kind is Pong:
                self._got_pong(event.data)
        self._after_input()

    def _after_input(self) -> None:
        conn = self.conn
        if conn.failure is not None and self._held is None and conn.state is not _OPEN:
            self._hold_failure()
        if conn.state is _OPEN and self._write_lock.locked():
            # A thread is writing, maybe stuck on a peer that does not read:
            # the automatic pongs wait in the core, only the latest beyond
            # write_limit bytes; that thread takes them when it is done.
            conn.bound_pongs(False, self.options.write_limit)
        else:
            out = conn.data_to_send()
            if out:
                self._out.append(out)
        if conn.state is not _OPEN and self._close_due is None:
            self._arm_close()
        self._notify()

    def _closed_error(self) -> ConnectionClosed:
        conn = self.conn
        return connection_closed(conn.close_code, conn.close_reason, conn.close_sent)

    # ------------------------------------------------------------ waiting

    def _wait(self, ready: Callable[[], bool], timeout: Optional[float]) -> bool:
        """Wait until ``ready()`` or the connection is over, reading the
        socket when no other thread does; ``False`` on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                while True:
                    if ready() or self._done:
                        return True
                    if not self._reading:
                        self._reading = True
                        break
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._wait_cond(remaining)
            try:
                if not self._read(deadline):
                    return False
            finally:
                with self._lock:
                    self._reading = False
                    self._notify()

    # ------------------------------------------------------------ sending

    def send(self, message: Union[Message, bytearray, memoryview, Iterable[Message]]) -> None:
        """Send a message: ``str`` as text, bytes-like as binary, an iterable
        of ``str`` or of bytes as a fragmented message (other senders wait
        until its last fragment). Returns once the kernel took the data."""
        conn = self.conn
        if isinstance(message, str):
            with self._message_lock:
                with self._lock:
                    if len(message) >= BY_REFERENCE:  # as asyncio: the encoded text written by reference
                        self._out.extend(conn.send_parts(message, text=True))
                    else:
                        self._out.append(conn.send_text(message))
                self._flush(True)
        elif isinstance(message, (bytes, bytearray, memoryview)):
            with self._message_lock:
                with self._lock:
                    if len(message) >= BY_REFERENCE and type(message) is bytes:
                        self._out.extend(conn.send_parts(message))
                    else:
                        self._out.append(conn.send_binary(message))
                self._flush(True)
        elif isinstance(message, dict):
            raise TypeError("cannot send a dict: encode it first (json.dumps)")
        elif hasattr(message, "__iter__"):
            with self._message_lock:
                self._send_fragments(iter(message))
        else:
            raise TypeError(f"cannot send {type(message).__name__}")

    def _send_fragments(self, fragments: Iterator[Message]) -> None:
        try:
            previous = next(fragments)
        except StopIteration:
            return
        text = isinstance(previous, str)
        first = True
        for fragment in fragments:
            if isinstance(fragment, str) is not text:
                raise TypeError("all fragments of a message must be str, or all bytes")
            self._send_fragment(previous, False, text if first else None)
            first = False
            previous = fragment
        self._send_fragment(previous, True, text if first else None)

    def _send_fragment(self, data: Message, fin: bool, text: Optional[bool]) -> None:
        conn = self.conn
        with self._lock:
            if text is None:
                frame = conn.send_continuation(data, fin=fin)
            elif text:
                frame = conn.send_text(data, fin=fin)
            else:
                frame = conn.send_binary(data, fin=fin)  # type: ignore[arg-type]
            self._out.append(frame)
        self._flush(True)

    def _flush(self, wait: bool) -> None:
        """Write the outgoing queue in order. ``wait``: until it is written
        (by this thread or the one writing); otherwise leave it to the
        thread writing, if any."""
        out = self._out
        lock = self._write_lock
        sock = self.socket
        conn = self.conn
        while out:
            if not lock.acquire(wait):
                return
            try:
                while out:
                    data = out.popleft()
                    try:
                        sock.sendall(data)
                    except (OSError, ValueError):
                        out.clear()
                        self._abort()
                        if wait:
                            raise self._closed_error() from None
                        return
            finally:
                lock.release()
            if conn._out:  # pongs left by a reader while this thread wrote (see _after_input)
                with self._lock:
                    pongs = conn.data_to_send()
                    if pongs:
                        out.append(pongs)

    def ping(self, data: Optional[bytes] = None) -> PongWaiter:
        """Send a ping; ``ping().wait(timeout)`` returns the round-trip time
        once its pong (or a later one) arrives. The payload is random unless
        given (at most 125 bytes)."""
        if data is None:
            self._ping_count += 1
            data = self._ping_count.to_bytes(4, "big") + os.urandom(4)
        waiter = PongWaiter(self)
        self._send_ping(bytes(data), waiter)
        return waiter

    def _send_ping(self, data: bytes, waiter: Optional[PongWaiter]) -> None:
        with self._lock:
            if data in self._pings:
                raise ValueError("a ping with this payload is already waiting")
            self._out.append(self.conn.send_ping(data))
            self._pings[data] = (time.perf_counter(), waiter)
        self._flush(True)

    def pong(self, data: bytes = b"") -> None:
        """Send an unsolicited pong."""
        with self._lock:
            self._out.append(self.conn.send_pong(data))
        self._flush(True)

    def _got_pong(self, data: bytes) -> None:
        pings = self._pings
        if data not in pings:
            return
        now = time.perf_counter()
        keepalive = False
        # A pong answers its ping and every earlier one (RFC 6455 section 5.5.3).
        for payload in list(pings):
            sent_at, waiter = pings.pop(payload)
            keepalive = keepalive or waiter is None
            if waiter is not None:
                waiter.latency = now - sent_at
                waiter._done = True
            if payload == data:
                self.latency = now - sent_at
                break
        if keepalive:
            self._pong_due = None

    # ------------------------------------------------------------ closing

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection and wait until it is closed (at most
        ``close_timeout``, then the TCP connection is aborted). Idempotent;
        any thread may call it, a ``recv`` blocked in another thread then
        raises :class:`~wsfast.exceptions.ConnectionClosed`."""
        self._start_close(code, reason)
        if not self._wait(lambda: self._done, self.options.close_timeout):
            self._abort()
        self._join()

    def _start_close(self, code: int, reason: str) -> None:
        """Send the close frame (or the held failure's) without waiting."""
        with self._lock:
            if self._held is not None:
                self._release_failure()
            elif self.conn.state is _OPEN:
                self._out.append(self.conn.send_close(code, reason))
                self._arm_close()
        self._after_close(False)

    def _arm_close(self) -> None:
        timeout = self.options.close_timeout
        self._close_due = time.monotonic() + (timeout if timeout is not None else 1e9)
        self._keepalive_due = self._pong_due = None
        self._notify()
        self._wakeup.set()

    def _shutdown(self) -> None:
        """End the TCP connection (the closing handshake is over, or failed)."""
        with self._lock:
            if self._shut:
                return
            self._shut = True
        try:
            self.socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _abort(self) -> None:
        """End the connection at once; threads blocked on the socket wake."""
        self._shutdown()
        with self._lock:
            if not self._done:
                self.conn.receive_eof()
                self._finish()

    def _finish(self) -> None:
        """The TCP connection is over (under the lock)."""
        self._done = True
        for _, waiter in self._pings.values():
            if waiter is not None:
                waiter._done = True
        self._pings.clear()
        self._held = None
        self._notify()
        self._wakeup.set()
        logger.info("connection: closed (code %d, peer %s)", self.conn.close_code, self.remote_address)

    def _join(self) -> None:
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(TICK + 1.0)

    # ------------------------------------------------------------ failures held for replies

    def _hold_failure(self) -> None:
        """The peer broke the protocol: hold the close frame while messages
        before the error are not taken, at most ``fail_timeout`` (see the
        module docstring)."""
        conn = self.conn
        failure = conn.failure
        out = conn._out
        timeout = self.options.fail_timeout
        if (
            not isinstance(failure, FrameError)
            or not timeout
            or conn.close_received is not None
            or conn.close_sent != (failure.code, failure.reason)
            or not out
            or out[-1][:1] != _CLOSE_HEAD
            or not (self._taken or self._messages)
        ):
            return
        out.pop()
        conn.close_sent = None
        conn.state = _OPEN  # for sending; input stays discarded
        self._held = (failure.code, failure.reason)
        self._held_until = time.monotonic() + timeout
        self._keepalive_due = self._pong_due = None

    def _release_failure(self) -> None:
        """Queue the held failure's close frame (under the lock)."""
        held = self._held
        if held is None:
            return
        self._held = None
        conn = self.conn
        if conn.state is not _OPEN:
            return
        code, reason = held
        try:
            frame = conn.send_close(code, reason)
        except ValueError:
            frame = conn.send_close(code, "")
        self._out.append(frame)
        self._arm_close()

    # ------------------------------------------------------------ housekeeping

    def _housekeep(self) -> None:
        """The housekeeping thread: reads when nobody does, keepalive,
        timeouts; closes the socket at the end."""
        try:
            while not self._done:
                self._housekeep_once()
        except Exception:
            logger.exception("connection: error in housekeeping, aborting")
            self._abort()
        with self._write_lock, self._lock:
            while self._reading:
                self._wait_cond(TICK)
            try:
                self.socket.close()
            except OSError:
                pass

    def _housekeep_once(self) -> None:
        conn = self.conn
        now = time.monotonic()
        with self._lock:
            timed_out = self._close_due is not None and now >= self._close_due
            if not timed_out:
                if self._held is not None and now >= self._held_until:
                    self._release_failure()
                self._keepalive(now)
            dues = [d for d in (self._close_due, self._pong_due, self._keepalive_due) if d is not None]
            if self._held is not None:
                dues.append(self._held_until)
        if timed_out:
            logger.info("connection: closing handshake timed out (peer %s)", self.remote_address)
            self._abort()
            return
        if conn.state is not _OPEN:
            self._after_close(False)  # never block here: the timers must keep running
        elif self._out:
            self._flush(False)
        wait = TICK if not dues else min(TICK, max(min(dues) - now, 0.0))
        self._wakeup.clear()
        if self._reading or self._queued > self.options.max_queue:
            self._wakeup.wait(wait)  # a reader is active, or the queue is full
            return
        if not _readable(self.socket, wait):
            return
        with self._lock:
            busy = self._reading or self._done
            if not busy:
                self._reading = True
        if busy:
            self._wakeup.wait(wait)
            return
        try:
            view = _buffer()
            try:
                if _DONTWAIT and not hasattr(self.socket, "pending"):
                    n = self.socket.recv_into(view, 0, _DONTWAIT)
                else:
                    n = self.socket.recv_into(view)  # TLS: poll said readable
            except BlockingIOError:
                return
            except (OSError, ValueError):
                n = 0
            self._received(view, n)
        finally:
            with self._lock:
                self._reading = False
                self._notify()

    def _keepalive(self, now: float) -> None:
        """Send the keepalive ping when due; close 1011 when its pong is
        late (under the lock)."""
        if self.conn.state is not _OPEN or self._held is not None:
            return
        if self._pong_due is not None and now >= self._pong_due:
            logger.info("connection: keepalive ping timed out, closing with 1011 (peer %s)", self.remote_address)
            self._pong_due = None
            self._out.append(self.conn.send_close(1011, "keepalive ping timeout"))
            self._arm_close()
            return
        if self._keepalive_due is not None and now >= self._keepalive_due:
            # A tick of the keepalive: frees the zlib state of a connection
            # that has not used it since the previous tick.
            self.conn.release_idle_memory()
            data = b"keepalive" + os.urandom(4)
            self._out.append(self.conn.send_ping(data))
            self._pings[data] = (time.perf_counter(), None)
            interval = self.options.ping_interval
            timeout = self.options.ping_timeout
            self._keepalive_due = now + interval if interval is not None else None
            if timeout is not None and self._pong_due is None:
                self._pong_due = now + timeout


class _Sink:
    """Receives whole messages from the codec, into the connection's queue."""

    __slots__ = ("_ws",)

    def __init__(self, ws: WebSocket) -> None:
        self._ws = ws

    def on_text(self, data: Union[str, bytes]) -> None:
        ws = self._ws
        ws._messages.append(data)
        ws._queued += len(data) + MESSAGE_OVERHEAD

    on_binary = on_text

    def on_fragment(self, data: Union[str, bytes], text: bool, fin: bool) -> None:
        raise InvalidState("stream_messages is not supported by wsfast.sync")


def _peer(sock: socket.socket) -> Any:
    try:
        return sock.getpeername()
    except OSError:
        return None
