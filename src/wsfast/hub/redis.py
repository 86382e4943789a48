"""The Redis backends of the hub: Pub/Sub (at-most-once) and Streams (ordered,
with ids and replay), through redis-py's asyncio client (``pip install
'wsfast[redis]'``; hiredis is used when installed).

``redis://[[user]:password@]host[:port][/db][?params]`` (``rediss://`` for
TLS) selects :class:`RedisPubSubBackend`; ``redis+streams://...`` (and
``rediss+streams://...``) selects :class:`RedisStreamsBackend`. Parameters,
for both:

* ``connect_timeout`` (seconds, default 5): :meth:`start` connects and PINGs
  within it, or raises :class:`~wsfast.hub.backend.HubUnavailable`;
* ``publish_timeout`` (seconds, default 5): how long :meth:`publish` (and the
  Streams' :meth:`subscribe`/:meth:`history`) retries while Redis is down
  before raising :class:`~wsfast.hub.backend.HubUnavailable`;
* ``prefix`` (default ``wsfast:``): prepended to every channel name to make
  the Redis channel or key;

and for Streams only:

* ``maxlen`` (default 10000; 0 = no length limit): each stream is trimmed to
  about that many entries by ``XADD ... MAXLEN ~ maxlen``;
* ``maxage`` (seconds, default none): entries older than that are trimmed by
  ``XTRIM key MINID ~ <now - maxage>``, sent in the same round trip as a
  publish at most once a second per channel and process. A stream that
  nobody publishes to keeps its old entries until the next publish, and the
  ``~`` (approximate) trimming of both kinds keeps up to a stream node (100
  entries by default) more than asked: retention is a lower bound, never a
  cut before it. ``maxage`` compares with this host's clock.

Any other parameter is a :class:`ValueError`.

Wire format (for publishers outside wsfast): a Pub/Sub message is one byte
``t`` (text, UTF-8) or ``b`` (binary) followed by the payload; a stream entry
has the fields ``t`` (``t`` or ``b``) and ``d`` (the payload). Messages in
another format are dropped (logged once).

Connections: each backend has a connection pool for commands (PUBLISH, XADD,
XRANGE...) and one dedicated reading connection (SUBSCRIBE, or a blocking
XREAD of every subscribed stream at once). When the reading connection
drops, it reconnects with exponential backoff and full jitter (0.1 s base,
5 s cap), logged at WARNING on ``wsfast.hub`` once per outage and at INFO
when Redis answers again; then

* Pub/Sub resubscribes every channel and calls ``sink.gap(channels, ...)``:
  what was published meanwhile is lost (at-most-once);
* Streams continue every channel from its last delivered id, so nothing is
  lost or delivered twice. If Redis lost entries (a restart without
  persistence, or with ``appendfsync everysec`` after a crash), or retention
  trimmed entries before they were read, the channels concerned get
  ``sink.gap``. Acknowledged publishes survive a ``kill -9`` of Redis only
  with ``appendonly yes`` and ``appendfsync always``. A publish whose reply
  was lost in a disconnect is retried, so it can be appended twice (under a
  new id): publishing is at-least-once, delivery of what is in the streams
  exactly once and in order.

Redis Cluster: not supported by these classes (they take one node's
address). Pub/Sub would work through a cluster client, since PUBLISH is
broadcast to every node, but that does not scale with the cluster; Redis 7's
sharded Pub/Sub (SSUBSCRIBE/SPUBLISH) is the way there and is not
implemented. Streams on a cluster would need each channel's key on one shard
and one XREAD per node: not implemented either. Supported: a single Redis
node, or a single primary behind a proxy/failover address (replicas, Sentinel
with a stable address); a ``READONLY`` error during a failover is retried
like a disconnect.

Pub/Sub channels are server-wide in Redis (the ``db`` number does not
separate them): use ``prefix`` to keep applications apart.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import math
import os
import random
import time
from typing import Any, Awaitable, Callable, Optional, TypeVar
from urllib.parse import SplitResult, parse_qs, unquote, urlunsplit

try:
    from redis.asyncio import ConnectionPool, Redis
    from redis.asyncio.connection import AbstractConnection
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import ReadOnlyError, RedisError, ResponseError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from redis.typing import EncodableT, FieldT
except ImportError as exc:  # pragma: no cover - exercised by a test that hides redis
    raise ImportError(
        f"wsfast's Redis hub backends need redis-py (redis>=5): pip install 'wsfast[redis]' ({exc})"
    ) from exc

from .backend import Backend, Entry, History, HubClosed, HubError, HubUnavailable, Sink, parse_id

__all__ = ["RedisPubSubBackend", "RedisStreamsBackend"]

log = logging.getLogger("wsfast.hub")

T = TypeVar("T")

#: Reconnection backoff: attempt n sleeps uniform(0, min(CAP, BASE * 2**n)).
BACKOFF_BASE = 0.1
BACKOFF_CAP = 5.0

#: An idle Pub/Sub connection is PINGed after this many seconds without a
#: message, and given up (reconnected) if the PING gets no answer within as long.
HEALTH_INTERVAL = 15.0

#: MINID trimming (``maxage``) runs at most this often per channel and process.
TRIM_INTERVAL = 1.0

#: History is read in batches of this many entries.
HISTORY_BATCH = 1000

#: The errors after which a connection is retried (Redis restarting, the
#: network, a replica promoted): everything else is a bug or a refusal.
_RETRYABLE: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError, ReadOnlyError, OSError)
_RETRYABLE_OR_TIMEOUT: tuple[type[BaseException], ...] = (asyncio.TimeoutError, *_RETRYABLE)

_TEXT = b"t"
_BINARY = b"b"


def backoff(attempt: int) -> float:
    """Seconds to wait before reconnection attempt ``attempt`` (0, 1, ...):
    exponential with full jitter."""
    return random.uniform(0.0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** min(attempt, 32)))


def _reason(exc: BaseException) -> str:
    """A short human reason for a connection failure: the OS's words when
    there is an OS error under it ("Connection refused"), else redis-py's."""
    seen: set[int] = set()
    cause: Optional[BaseException] = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, OSError) and not isinstance(cause, TimeoutError):
            if cause.errno is not None and cause.errno in errno.errorcode:
                return os.strerror(cause.errno)
            if cause.strerror:
                return cause.strerror
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError, RedisTimeoutError)):
        return "timed out"
    return str(exc) or type(exc).__name__


def _positive(name: str, text: str, url: str, *, zero: bool = False, integer: bool = False) -> float:
    try:
        value = float(int(text)) if integer else float(text)
    except ValueError:
        kind = "a whole number" if integer else "a number of seconds"
        raise ValueError(f"{name}= needs {kind}, not {text!r}: {url}") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        raise ValueError(f"{name}= must be {'zero or more' if zero else 'more than zero'}, not {text!r}: {url}")
    return value


async def _drop(conn: Optional[AbstractConnection]) -> None:
    """Close a connection, ignoring whatever state it is in."""
    if conn is None:
        return
    try:
        await conn.disconnect(nowait=True)
    except Exception:  # pragma: no cover - closing a broken socket
        pass


class _RedisBackend(Backend):
    """What both Redis backends share: the URL, the command pool, retries,
    reconnection and its logging."""

    _SCHEMES: dict[str, str] = {}
    _PARAMS: frozenset[str] = frozenset({"connect_timeout", "publish_timeout", "prefix"})

    def __init__(self, url: SplitResult, sink: Sink) -> None:
        super().__init__(url, sink)
        scheme = url.scheme.lower()
        if scheme not in self._SCHEMES:
            raise ValueError(
                f"{type(self).__name__} takes {' or '.join(s + '://' for s in self._SCHEMES)} URLs, not {scheme}://"
            )
        redis_scheme = self._SCHEMES[scheme]
        if url.fragment:
            raise ValueError(f"a Redis URL takes no #fragment: {self._safe(url, scheme)}")
        path = url.path.strip("/")
        if path and not path.isdigit():
            raise ValueError(f"the path of a Redis URL is a database number (/0): {self._safe(url, scheme)}")
        self.db = int(path or 0)
        try:
            port = url.port or 6379
        except ValueError:
            raise ValueError(f"bad port in {self._safe(url, scheme)}") from None
        host = url.hostname or "localhost"
        shown_host = f"[{host}]" if ":" in host else host
        #: The address without credentials, for messages and logs.
        self.address = f"{redis_scheme}://{shown_host}:{port}/{self.db}"
        self._redis_url = urlunsplit((redis_scheme, url.netloc, f"/{self.db}", "", ""))

        query = parse_qs(url.query, keep_blank_values=True)
        unknown = set(query) - self._PARAMS
        if unknown:
            raise ValueError(
                f"{scheme}:// does not know the parameter{'s' if len(unknown) > 1 else ''} "
                f"{', '.join(sorted(unknown))} (known: {', '.join(sorted(self._PARAMS))}): {self._safe(url, scheme)}"
            )
        self._query = {name: values[-1] for name, values in query.items()}
        shown = self._safe(url, scheme)
        self.connect_timeout = _positive("connect_timeout", self._query.get("connect_timeout", "5"), shown)
        self.publish_timeout = _positive("publish_timeout", self._query.get("publish_timeout", "5"), shown, zero=True)
        self.prefix = unquote(self._query.get("prefix", "wsfast:"))
        self._prefix = self.prefix.encode()

        self._pool: Optional[ConnectionPool] = None
        self._redis: Optional[Redis] = None
        self._started = False
        self._closed = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._down_since: Optional[float] = None
        self._warned_format = False

    @staticmethod
    def _safe(url: SplitResult, scheme: str) -> str:
        """The URL as given, without the password."""
        netloc = url.netloc.rpartition("@")[2]
        return urlunsplit((scheme, netloc, url.path, url.query, ""))

    # ------------------------------------------------------------ connections

    def _key(self, channel: str) -> bytes:
        return self._prefix + channel.encode()

    def _make_pool(self) -> ConnectionPool:
        # RESP2: replies in the shapes this module reads by hand. No retries
        # inside redis-py: this module retries with its own deadline.
        return ConnectionPool.from_url(
            self._redis_url,
            protocol=2,
            socket_connect_timeout=self.connect_timeout,
            socket_timeout=max(self.publish_timeout, self.connect_timeout, 1.0),
            retry=Retry(NoBackoff(), 0),
            client_name="wsfast-hub",
        )

    def _unavailable(self, exc: BaseException) -> HubUnavailable:
        return HubUnavailable(f"cannot reach Redis at {self.address}: {_reason(exc)}")

    async def start(self) -> None:
        if self._started:
            return
        if self._closed:
            raise HubClosed("this backend was stopped")
        self._pool = self._make_pool()
        self._redis = Redis(connection_pool=self._pool)
        try:
            await asyncio.wait_for(self._connect(), self.connect_timeout)
        except asyncio.TimeoutError:
            await self._close()
            raise HubUnavailable(
                f"cannot reach Redis at {self.address}: no answer within {self.connect_timeout:g} s"
            ) from None
        except _RETRYABLE as exc:
            await self._close()
            raise self._unavailable(exc) from exc
        except RedisError as exc:  # refused: a wrong password, an unknown database...
            await self._close()
            raise HubUnavailable(f"Redis at {self.address} refused the connection: {exc}") from exc
        except BaseException:
            await self._close()
            raise
        self._started = True
        self._spawn(self._run())

    async def _connect(self) -> None:
        """Connect the command pool and the reading connection (subclasses)."""
        assert self._redis is not None
        await self._redis.ping()

    async def _run(self) -> None:
        """The reading task (subclasses)."""

    def _spawn(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("Redis hub task for %s failed", self.address, exc_info=task.exception())

    async def stop(self) -> None:
        self._closed = True
        pending = set(self._tasks)
        for attempt in range(100):
            if not pending:
                break
            if attempt == 1:  # and still not done: get it out of its socket read
                await self._close()
            # Repeated: on Python < 3.12, asyncio.wait_for (which redis-py
            # sends commands through) can swallow a cancellation.
            for task in pending:
                task.cancel()
            pending = (await asyncio.wait(pending, timeout=0.05))[1]
        await self._close()

    async def _close(self) -> None:
        """Close every connection (subclasses close their reading one too)."""
        redis, self._redis, self._pool = self._redis, None, None
        if redis is not None:
            await redis.aclose(close_connection_pool=True)

    def _client(self) -> Redis:
        if self._closed or not self._started or self._redis is None:
            state = "stopped" if self._closed else "not started"
            raise HubClosed(f"the Redis hub backend for {self.address} is {state}")
        return self._redis

    def _outage(self, exc: BaseException) -> None:
        if self._down_since is None and not self._closed:
            self._down_since = time.monotonic()
            log.warning("lost Redis at %s (%s); reconnecting with backoff", self.address, _reason(exc))

    def _recovered(self) -> None:
        if self._down_since is not None:
            log.info("Redis at %s is back after %.1f s", self.address, time.monotonic() - self._down_since)
            self._down_since = None

    async def _reconnect(self, connect: Callable[[], Awaitable[T]]) -> T:
        """Call ``connect`` until it succeeds, sleeping with backoff between
        attempts (cancelled by :meth:`stop`)."""
        attempt = 0
        while True:
            await asyncio.sleep(backoff(attempt))
            attempt += 1
            try:
                return await asyncio.wait_for(connect(), self.connect_timeout)
            except _RETRYABLE_OR_TIMEOUT as exc:
                self._outage(exc)

    async def _retrying(self, what: str, op: Callable[[Redis], Awaitable[T]]) -> T:
        """Run ``op`` with the command client, retrying connection failures
        with backoff until ``publish_timeout``; then :class:`HubUnavailable`."""
        redis = self._client()
        try:  # the first attempt without a timer: its socket timeouts bound it
            result = await op(redis)
        except _RETRYABLE as exc:
            failure: BaseException = exc
        except ResponseError as exc:
            raise HubError(f"Redis at {self.address} refused to {what}: {exc}") from exc
        else:
            if self._down_since is not None:
                self._recovered()
            return result
        self._outage(failure)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.publish_timeout
        attempt = 0
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise HubUnavailable(
                    f"cannot {what}: Redis at {self.address} unreachable for {self.publish_timeout:g} s "
                    f"({_reason(failure)})"
                ) from failure
            await asyncio.sleep(min(backoff(attempt), remaining))
            attempt += 1
            redis = self._client()
            try:
                result = await asyncio.wait_for(op(redis), max(deadline - loop.time(), 0.05))
            except _RETRYABLE_OR_TIMEOUT as exc:
                failure = exc
            except ResponseError as exc:
                raise HubError(f"Redis at {self.address} refused to {what}: {exc}") from exc
            else:
                self._recovered()
                return result

    def _bad_format(self, channel: str) -> None:
        if not self._warned_format:
            self._warned_format = True
            log.warning(
                "dropped a message of channel %r from Redis at %s: not in wsfast's format "
                "(a first byte t/b, or stream fields t and d); logged once",
                channel,
                self.address,
            )

    def _deliver(self, channel: str, id: Optional[str], data: bytes, text: bool) -> None:
        try:
            self.sink.deliver(channel, id, data, text)
        except Exception:
            log.exception("the hub failed to take a message of channel %r", channel)

    def _gap(self, channels: list[str], reason: str) -> None:
        if not channels:
            return
        try:
            self.sink.gap(channels, reason)
        except Exception:
            log.exception("the hub failed to take a gap of channels %r", channels)


class RedisPubSubBackend(_RedisBackend):
    """``redis://host:port/db`` (``rediss://`` for TLS): Redis Pub/Sub.

    At-most-once and the lowest latency: a message reaches the processes
    subscribed to its channel at the moment Redis gets it; messages
    published while this process is disconnected from Redis are lost, and
    the hub is told (``sink.gap``) once the subscriptions are back. Messages
    carry no id (``None``); there is no history.
    """

    ordered = False
    guarantee = "at-most-once; messages published while a process is disconnected from Redis are lost (signalled)"
    _SCHEMES = {"redis": "redis", "rediss": "rediss"}

    def __init__(self, url: SplitResult, sink: Sink) -> None:
        super().__init__(url, sink)
        #: Subscribed Redis channels -> hub channel names.
        self._keys: dict[bytes, str] = {}
        self._conn: Optional[AbstractConnection] = None
        self._ready = False
        self._confirm: dict[bytes, asyncio.Future[None]] = {}
        #: After a reconnection: channels whose SUBSCRIBE is not yet
        #: confirmed, and all of them (for the gap).
        self._resync: Optional[set[bytes]] = None
        self._resync_all: list[bytes] = []

    async def _connect(self) -> None:
        await super()._connect()
        self._conn = await self._connect_subscriber()
        self._ready = True

    async def _connect_subscriber(self) -> AbstractConnection:
        assert self._pool is not None
        conn: AbstractConnection = self._pool.make_connection()  # type: ignore[no-untyped-call]
        conn.socket_timeout = None  # reads have their own timeouts (health checks)
        try:
            await conn.connect()  # type: ignore[no-untyped-call]
            await conn.send_command("PING")
            if await conn.read_response(timeout=self.connect_timeout) is None:
                raise RedisTimeoutError("no answer to PING")
        except BaseException:
            await _drop(conn)
            raise
        return conn

    async def _resubscribe(self) -> AbstractConnection:
        conn = await self._connect_subscriber()
        keys = list(self._keys)
        try:
            if keys:
                await conn.send_command("SUBSCRIBE", *keys)
        except BaseException:
            await _drop(conn)
            raise
        if keys:
            self._resync, self._resync_all = set(keys), keys
        else:
            self._recovered()
        return conn

    async def _run(self) -> None:
        conn = self._conn
        assert conn is not None
        try:
            while True:
                try:
                    await self._read(conn)
                except _RETRYABLE as exc:
                    self._outage(exc)
                self._ready = False
                self._resync = None
                for future in self._confirm.values():
                    if not future.done():
                        future.set_result(None)
                self._confirm.clear()
                await _drop(conn)
                conn = self._conn = await self._reconnect(self._resubscribe)
                self._ready = True
        finally:
            self._ready = False

    async def _read(self, conn: AbstractConnection) -> None:
        pinged = False
        keys = self._keys
        while True:
            message = await conn.read_response(timeout=HEALTH_INTERVAL)
            if message is None:
                if pinged:
                    raise RedisTimeoutError(f"no answer to PING within {HEALTH_INTERVAL:g} s")
                pinged = True
                await conn.send_command("PING")
                continue
            pinged = False
            kind = message[0]
            if kind == b"message":
                channel = keys.get(message[1])
                if channel is None:  # unsubscribed while the message was on its way
                    continue
                payload: bytes = message[2]
                marker = payload[:1]
                if marker == _TEXT:
                    self._deliver(channel, None, payload[1:], True)
                elif marker == _BINARY:
                    self._deliver(channel, None, payload[1:], False)
                else:
                    self._bad_format(channel)
            elif kind == b"subscribe":
                self._confirmed(message[1])

    def _confirmed(self, key: bytes) -> None:
        future = self._confirm.pop(key, None)
        if future is not None and not future.done():
            future.set_result(None)
        if self._resync is not None:
            self._resync.discard(key)
            if not self._resync:
                self._resync = None
                self._recovered()
                channels = [self._keys[k] for k in self._resync_all if k in self._keys]
                self._gap(channels, "redis pub/sub connection lost: messages published meanwhile were missed")

    async def publish(self, channel: str, data: bytes, text: bool) -> Optional[str]:
        message = (_TEXT if text else _BINARY) + data
        key = self._key(channel)
        await self._retrying(f"publish to {channel!r}", lambda redis: redis.publish(key, message))
        return None

    async def subscribe(self, channel: str) -> Optional[str]:
        """Subscribe and wait until Redis confirms (at most ``connect_timeout``),
        so that a message published after this returns is received. While
        Redis is down, return at once: the channel is subscribed on
        reconnection, and reported in the gap then."""
        self._client()
        key = self._key(channel)
        self._keys[key] = channel
        conn = self._conn
        if not self._ready or conn is None or not conn.is_connected:
            return None
        future = self._confirm.get(key)
        if future is None:
            future = self._confirm[key] = asyncio.get_running_loop().create_future()
            try:
                await conn.send_command("SUBSCRIBE", key)
            except _RETRYABLE:  # the reading task reconnects and resubscribes
                return None
        try:
            await asyncio.wait_for(asyncio.shield(future), self.connect_timeout)
        except asyncio.TimeoutError:
            pass
        return None

    async def unsubscribe(self, channel: str) -> None:
        self._client()
        key = self._key(channel)
        if self._keys.pop(key, None) is None:
            return
        conn = self._conn
        if self._ready and conn is not None and conn.is_connected:
            try:
                await conn.send_command("UNSUBSCRIBE", key)
            except _RETRYABLE:  # gone anyway; not resubscribed
                pass

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        self._ready = False
        await _drop(conn)
        await super()._close()


def _decode_fields(fields: list[bytes]) -> tuple[Optional[bytes], bool]:
    """An entry's ``[b"t", kind, b"d", data]`` -> ``(data, text)``; ``None``
    for an entry not in this format."""
    data: Optional[bytes]
    if len(fields) == 4 and fields[0] == b"t" and fields[2] == b"d":
        kind, data = fields[1], fields[3]
    else:
        found = dict(zip(fields[::2], fields[1::2]))
        kind, data = found.get(b"t", b""), found.get(b"d")
    if kind == _TEXT:
        return data, True
    if kind == _BINARY:
        return data, False
    return None, False


def _text_id(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def hole_after(info: Optional[dict[str, Any]], after: tuple[int, int]) -> bool:
    """Whether entries that came after id ``after`` are missing from a stream,
    given its ``XINFO STREAM`` (``None``: the key does not exist).

    Trimming drops the oldest entries. When the oldest kept entry is newer
    than ``after`` and ``after`` is a real id (the client saw it), ``after``
    was trimmed or the stream was recreated: that may have taken entries
    after it too, and cannot be told apart from the case where it took
    exactly up to ``after``, so it counts as a hole (conservative).
    """
    if info is None:
        return after != (0, 0)  # the stream existed (we saw an id) and is gone
    last = parse_id(_text_id(info["last-generated-id"]))
    if last < after:
        return True  # Redis lost entries that were read (a restart without persistence)
    deleted = info.get("max-deleted-entry-id")  # Redis 7: XDEL's, not trimming's
    if deleted is not None and parse_id(_text_id(deleted)) > after:
        return True
    first = info.get("first-entry")
    if not first:
        return after != last  # empty: a hole if something came after `after`, then went
    if parse_id(_text_id(first[0])) <= after:
        return False
    if after != (0, 0):
        return True
    added = info.get("entries-added")  # Redis 7; before it, assume trimmed
    return added is None or added != info.get("length")


class RedisStreamsBackend(_RedisBackend):
    """``redis+streams://host:port/db?maxlen=N&maxage=SECONDS``
    (``rediss+streams://`` for TLS): one Redis stream per channel.

    Every message gets its stream id; each process reads every subscribed
    stream with one blocking XREAD from its last delivered id, so delivery is
    in order, and continues from there after a reconnection: nothing is lost
    or delivered twice while Redis keeps the entries. :meth:`history` replays
    what a client missed, within retention.
    """

    ordered = True
    guarantee = (
        "ordered, with ids; exactly once in order per process across Redis reconnections; replay after an id "
        "within maxlen/maxage; survives a Redis restart with appendfsync always"
    )
    _SCHEMES = {"redis+streams": "redis", "rediss+streams": "rediss"}
    _PARAMS = _RedisBackend._PARAMS | {"maxlen", "maxage"}

    #: XREAD's BLOCK in milliseconds: the longest a new subscription waits if
    #: CLIENT UNBLOCK did not reach the reader, and how often an idle reader
    #: finds out that its connection is dead.
    block_ms = 1000
    #: XREAD's COUNT: entries per stream per read.
    count = 1000

    def __init__(self, url: SplitResult, sink: Sink) -> None:
        super().__init__(url, sink)
        shown = self._safe(url, url.scheme.lower())
        self.maxlen = int(_positive("maxlen", self._query.get("maxlen", "10000"), shown, zero=True, integer=True))
        maxage = self._query.get("maxage")
        self.maxage: Optional[float] = None if maxage is None else _positive("maxage", maxage, shown)
        #: Subscribed stream keys -> hub channel names, and the last id delivered.
        self._channels: dict[bytes, str] = {}
        self._positions: dict[bytes, str] = {}
        self._trimmed: dict[bytes, float] = {}
        self._reader: Optional[AbstractConnection] = None
        self._reader_id = 0
        #: Bumped on every subscription; ``_inflight`` is the value an XREAD
        #: was sent with (None: no XREAD under way).
        self._generation = 0
        self._inflight: Optional[int] = None
        self._wake: Optional[asyncio.Event] = None
        self._kicker: Optional[asyncio.Task[None]] = None

    # ------------------------------------------------------------ connections

    async def _connect(self) -> None:
        await super()._connect()
        self._wake = asyncio.Event()
        self._reader, self._reader_id = await self._connect_reader()

    async def _connect_reader(self) -> tuple[AbstractConnection, int]:
        assert self._pool is not None
        conn: AbstractConnection = self._pool.make_connection()  # type: ignore[no-untyped-call]
        conn.socket_timeout = None  # reads have their own timeouts (see _read)
        try:
            await conn.connect()  # type: ignore[no-untyped-call]
            await conn.send_command("CLIENT", "ID")
            client_id = int(await conn.read_response(timeout=self.connect_timeout) or 0)
            if not client_id:
                raise RedisTimeoutError("no answer to CLIENT ID")
        except BaseException:
            await _drop(conn)
            raise
        return conn, client_id

    async def _close(self) -> None:
        conn, self._reader = self._reader, None
        self._inflight = None
        await _drop(conn)
        await super()._close()

    # ------------------------------------------------------------ publishing

    async def publish(self, channel: str, data: bytes, text: bool) -> Optional[str]:
        key = self._key(channel)
        fields: dict[FieldT, EncodableT] = {b"t": _TEXT if text else _BINARY, b"d": data}
        maxlen = self.maxlen or None
        maxage = self.maxage
        if maxage is not None:
            now = time.monotonic()
            if now - self._trimmed.get(key, -math.inf) >= TRIM_INTERVAL:
                minid = f"{max(time.time_ns() // 1_000_000 - int(maxage * 1000), 0)}-0"

                async def add_and_trim(redis: Redis) -> Any:
                    pipe = redis.pipeline(transaction=False)
                    pipe.xadd(key, fields, maxlen=maxlen, approximate=True)
                    pipe.xtrim(key, minid=minid, approximate=True)
                    return (await pipe.execute())[0]

                id = await self._retrying(f"publish to {channel!r}", add_and_trim)
                self._trimmed[key] = now
                return _text_id(id)
        id = await self._retrying(
            f"publish to {channel!r}", lambda redis: redis.xadd(key, fields, maxlen=maxlen, approximate=True)
        )
        return _text_id(id)

    # ------------------------------------------------------------ subscriptions

    async def _last_id(self, redis: Redis, key: bytes) -> str:
        last = await redis.xrevrange(key, "+", "-", count=1)
        return _text_id(last[0][0]) if last else "0-0"

    async def subscribe(self, channel: str) -> Optional[str]:
        key = self._key(channel)
        last = await self._retrying(f"subscribe to {channel!r}", lambda redis: self._last_id(redis, key))
        if key not in self._positions:
            self._channels[key] = channel
            self._positions[key] = last
            self._changed()
        return last

    async def unsubscribe(self, channel: str) -> None:
        self._client()
        key = self._key(channel)
        self._channels.pop(key, None)
        self._positions.pop(key, None)  # an XREAD under way still reads it: its entries are dropped
        await asyncio.sleep(0)

    def _changed(self) -> None:
        """The set of streams changed: wake the reader, or get it out of its
        blocked XREAD so that the next one reads the new set."""
        self._generation += 1
        if self._wake is not None:
            self._wake.set()
        if self._inflight is not None and (self._kicker is None or self._kicker.done()):
            self._kicker = self._spawn(self._unblock())

    async def _unblock(self) -> None:
        # CLIENT UNBLOCK can arrive before the XREAD it is meant for (it was
        # sent but not yet read by Redis): then it answers 0 and is repeated
        # while that XREAD is under way, at most for one BLOCK.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.block_ms / 1000
        redis = self._redis
        while redis is not None and self._inflight is not None and self._inflight < self._generation:
            try:
                if await redis.client_unblock(self._reader_id):
                    return
            except (RedisError, OSError):
                return  # the reader finds out about the connection itself
            if loop.time() > deadline:
                return
            await asyncio.sleep(0.002)

    # ------------------------------------------------------------ reading

    async def _run(self) -> None:
        assert self._reader is not None
        conn: AbstractConnection = self._reader
        while True:
            try:
                await self._read(conn)
            except _RETRYABLE as exc:
                self._outage(exc)
            self._inflight = None
            await _drop(conn)
            conn, self._reader_id = await self._reconnect(self._reconnect_reader)
            self._reader = conn
            self._recovered()

    async def _reconnect_reader(self) -> tuple[AbstractConnection, int]:
        conn, client_id = await self._connect_reader()
        try:
            await self._check_streams()
        except BaseException:
            await _drop(conn)
            raise
        return conn, client_id

    async def _check_streams(self) -> None:
        """After a reconnection: did Redis lose or trim entries that were not
        delivered yet? Report those channels as a gap."""
        redis = self._redis
        keys = list(self._positions)
        if redis is None or not keys:
            return
        pipe = redis.pipeline(transaction=False)
        for key in keys:
            pipe.xinfo_stream(key)
        infos = await pipe.execute(raise_on_error=False)
        lost: list[str] = []
        trimmed: list[str] = []
        for key, info in zip(keys, infos):
            if isinstance(info, ResponseError) and "no such key" in str(info).lower():
                info = None
            elif isinstance(info, BaseException):
                raise info
            position = self._positions.get(key)
            channel = self._channels.get(key)
            if position is None or channel is None:
                continue  # unsubscribed meanwhile
            seen = parse_id(position)
            last = "0-0" if info is None else _text_id(info["last-generated-id"])
            if parse_id(last) < seen:
                lost.append(channel)
                self._positions[key] = last  # what Redis adds next comes after its own last id
            elif hole_after(info, seen):
                trimmed.append(channel)
        self._gap(lost, "Redis lost messages of these channels (restarted without persistence?)")
        self._gap(trimmed, "messages of these channels were trimmed by retention before they were read")

    async def _read(self, conn: AbstractConnection) -> None:
        positions = self._positions
        wake = self._wake
        assert wake is not None
        loop = asyncio.get_running_loop()
        limit = self.block_ms / 1000 + self.connect_timeout
        while True:
            if not positions:
                wake.clear()
                await wake.wait()
                continue
            keys = list(positions)
            ids = [positions[key] for key in keys]
            self._inflight = self._generation
            await conn.send_command("XREAD", "COUNT", self.count, "BLOCK", self.block_ms, "STREAMS", *keys, *ids)
            # A blocked XREAD answers (nil) after block_ms: no answer within
            # that plus connect_timeout means a dead connection. (An explicit
            # timeout also returns None, told apart by the time it took.)
            began = loop.time()
            reply = await conn.read_response(timeout=limit)
            self._inflight = None
            if reply:
                self._dispatch(reply, dict(zip(keys, ids)))
            elif loop.time() - began >= limit:
                raise RedisTimeoutError(f"no answer to XREAD within {limit:g} s")

    def _dispatch(self, reply: list[Any], sent: dict[bytes, str]) -> None:
        positions, channels = self._positions, self._channels
        for key, entries in reply:
            channel = channels.get(key)
            position = positions.get(key)
            if channel is None or position is None or not entries:
                continue
            # Resubscribed during the XREAD: from a new position, maybe later.
            floor = None if position is sent.get(key) else parse_id(position)
            for raw_id, fields in entries:
                id = raw_id.decode()
                if floor is not None and parse_id(id) <= floor:
                    continue
                data, text = _decode_fields(fields)
                position = id
                if data is None:
                    self._bad_format(channel)
                    continue
                self._deliver(channel, id, data, text)
            positions[key] = position

    # ------------------------------------------------------------ history

    async def history(self, channel: str, after: str, upto: str) -> History:
        low = parse_id(after)
        parse_id(upto)
        key = self._key(channel)

        async def first_batch(redis: Redis) -> list[Any]:
            # XINFO and XRANGE at one instant, so that what XINFO says about
            # trimming holds for what XRANGE returns.
            pipe = redis.pipeline(transaction=True)
            pipe.xinfo_stream(key)
            pipe.xrange(key, f"({after}", upto, count=HISTORY_BATCH + 1)
            result: list[Any] = await pipe.execute(raise_on_error=False)
            return result

        info, batch = await self._retrying(f"read the history of {channel!r}", first_batch)
        if isinstance(info, ResponseError) and "no such key" in str(info).lower():
            return History([], not hole_after(None, low))
        for value in (info, batch):
            if isinstance(value, BaseException):
                raise HubError(f"Redis at {self.address} refused to read the history of {channel!r}: {value}")
        complete = not hole_after(info, low)
        entries: list[Entry] = []
        while True:
            # One entry more than kept: the next batch must start with it, or
            # it was trimmed in between (a hole).
            nxt = batch[HISTORY_BATCH][0] if len(batch) > HISTORY_BATCH else None
            for raw_id, fields in batch[:HISTORY_BATCH]:
                data = fields.get(b"d")
                kind = fields.get(b"t")
                if data is None or kind not in (_TEXT, _BINARY):
                    self._bad_format(channel)
                    continue
                entries.append(Entry(_text_id(raw_id), data, kind == _TEXT))
            if nxt is None:
                return History(entries, complete)
            start = _text_id(nxt)

            async def next_batch(redis: Redis, start: str = start) -> Any:
                return await redis.xrange(key, start, upto, count=HISTORY_BATCH + 1)

            batch = await self._retrying(f"read the history of {channel!r}", next_batch)
            if not batch or _text_id(batch[0][0]) != start:
                complete = False
