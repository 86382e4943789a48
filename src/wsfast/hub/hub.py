"""The hub: publish/subscribe for WebSocket connections, in one process or
across many.

A :class:`Hub` keeps this process's subscriptions: which connection
listens to which channel. :meth:`Hub.publish` hands a message to the
backend chosen by the hub's URL (see :mod:`wsfast.hub.backend`), which
brings it back to every process that has subscribers for the channel;
there it is framed once and written to each local subscriber. What is
done per connection is the least that can be: check that it is open and
keeping up, write the same frame.

Subscribers are wsfast connections (awaitable or callback API), connections
served by :class:`wsfast.uvicorn.WSFastProtocol` (framed once and written
directly, like wsfast's own), and any other ASGI connection (through its
``send``, one task per slow subscriber at most).

Slow consumers: a subscription writes while its connection has at most
``max_pending`` bytes not yet sent; beyond that its policy applies:

* ``"drop"``: the message is not sent to that connection (counted);
* ``"close"``: the connection is closed with 1013 (Try Again Later); a
  client that resumes from its last id loses nothing;
* ``"coalesce"``: only the latest message of the channel is kept for it,
  and sent once the connection has drained (dashboards, tickers).

Memory per subscription therefore stays within ``max_pending`` plus one
message, whatever the publishers do.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from dataclasses import dataclass
from typing import Any, Callable, Literal, Optional, Union, cast
from urllib.parse import urlsplit

from ..codec import OP_BINARY, OP_TEXT, build_frame, validate_utf8
from ..protocol import State
from .backend import Backend, HubClosed, MemoryBackend, parse_id

__all__ = ["Hub", "Subscription", "HubStats", "Envelope", "Policy", "json_envelope", "raw_envelope"]

logger = logging.getLogger("wsfast.hub")

_OPEN = State.OPEN
_CLOSED = State.CLOSED

Policy = Literal["drop", "close", "coalesce"]
POLICIES = ("drop", "close", "coalesce")

Envelope = Callable[[str, Optional[str], bytes, bool], tuple[Union[bytes, str], bool]]
"""``envelope(channel, id, data, text) -> (payload, text)``: what a client
receives for one published message (called once per message and process)."""

MAX_CHANNEL_LENGTH = 256
"""Longest channel name, in UTF-8 bytes."""

SLOW_CLOSE_CODE = 1013
"""Close code of the ``"close"`` policy: Try Again Later (RFC 6455 registry)."""

_Message = tuple[tuple[int, int], Optional[str], bytes, bool]  # (id as a pair of ints, id, data, text)
_NO_ID = (0, 0)


def raw_envelope(channel: str, id: Optional[str], data: bytes, text: bool) -> tuple[Union[bytes, str], bool]:
    """Clients receive the message exactly as published."""
    return data, text


def json_envelope(channel: str, id: Optional[str], data: bytes, text: bool) -> tuple[Union[bytes, str], bool]:
    """Clients receive a JSON text ``{"channel": ..., "id": ..., "data": ...}``
    (``"binary"``, base64, instead of ``"data"`` for a binary message): the
    id is what a client passes back to resume after a reconnect."""
    body: dict[str, Any] = {"channel": channel, "id": id}
    if text:
        body["data"] = data.decode()
    else:
        body["binary"] = base64.b64encode(data).decode()
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(), True


_ENVELOPES: dict[str, Envelope] = {"raw": raw_envelope, "json": json_envelope}

# The kinds of subscriber.
_WSFAST = 0  # a WebSocketTransport (wsfast's awaitable or callback API)
_UVICORN = 1  # a wsfast.uvicorn.WSFastProtocol
_ASGI = 2  # any other ASGI connection: through its send()


@dataclass
class HubStats:
    """Counters of one hub, since it started."""

    published: int = 0  #: messages published through this hub
    received: int = 0  #: messages the backend delivered to this process
    delivered: int = 0  #: messages written to a connection
    dropped: int = 0  #: not sent to a slow connection (policy "drop")
    coalesced: int = 0  #: replaced by a newer one before a slow connection took it ("coalesce")
    closed: int = 0  #: slow connections closed (policy "close")
    gaps: int = 0  #: times the backend said messages may have been missed
    invalid: int = 0  #: messages from the backend dropped as invalid (text that is not UTF-8)


class Subscription:
    """One connection's subscription to one channel.

    ``missed`` is true when the subscription resumed after an id that the
    backend no longer keeps (retention): the client should resync.
    ``dropped`` and ``coalesced`` count what its policy did.
    """

    __slots__ = (
        "channel",
        "policy",
        "max_pending",
        "missed",
        "dropped",
        "coalesced",
        "_key",
        "_kind",
        "_envelope",
        "_target",
        "_mask",
        "_replay",
        "_after",
        "_pending",
        "_queued",
        "_flusher",
    )

    def __init__(
        self, channel: str, key: Any, kind: int, target: Any, policy: Policy, max_pending: int, envelope: Envelope
    ) -> None:
        self.channel = channel
        self.policy = policy
        self.max_pending = max_pending
        self.missed = False
        self.dropped = 0
        self.coalesced = 0
        self._key = key
        self._kind = kind
        self._target = target  # WebSocketTransport, WSFastProtocol or an ASGI send
        self._mask = kind == _WSFAST and target.conn._mask  # a client connection masks each frame
        self._envelope = envelope
        # While it replays history: live messages held back, as (id, opcode, payload).
        self._replay: Optional[list[_Message]] = None
        # After it resumed: the id up to which its history was sent (live
        # messages up to there are skipped).
        self._after: Optional[tuple[int, int]] = None
        # Waiting for the connection to drain: (opcode, payload) in order
        # (a single one with "coalesce"), for the ASGI kind always.
        self._pending: list[tuple[int, bytes]] = []
        self._queued = 0  # bytes in _pending
        self._flusher: Optional[asyncio.Task[None]] = None

    def __repr__(self) -> str:
        return f"<Subscription {self.channel!r} {self.policy}>"


class Hub:
    """Publish/subscribe between WebSocket connections, chosen by URL:

    * ``memory://`` (the default): this process only, no dependency;
    * ``redis://host:port/db``: Redis Pub/Sub, at most once, lowest latency;
    * ``redis+streams://host:port/db?maxlen=10000``: Redis Streams, ordered,
      with ids and replay after an id (see :mod:`wsfast.hub.redis`).

    ``envelope``: ``"raw"`` (clients get the message as published),
    ``"json"`` (with its channel and id, see :func:`json_envelope`) or a
    function. ``max_message_size`` bounds what :meth:`publish` takes.
    ``policy`` and ``max_pending`` are the defaults of :meth:`subscribe`.
    ``on_gap(channels, reason)`` is called when messages of those channels
    may have been missed (Redis Pub/Sub reconnected): resync the clients.
    ``max_delay`` (seconds): under load, how long a message may wait to go
    out with the next ones, in one write per connection. A message that
    arrives when nothing was written for ``max_delay`` goes out at the end
    of the event loop's turn; otherwise the next round of writes waits
    until ``max_delay``, or as long as the last round took if that is
    longer, has passed since the last one: rounds of writes to thousands of
    connections take at most half the loop's time, and each carries what
    came meanwhile (0: a round at the end of every turn that received
    messages, unless the last round was slow).

    Create it anywhere (it does no I/O until :meth:`start`), start it in the
    process that uses it (after a fork), use it as ``async with hub:``.
    """

    def __init__(
        self,
        url: str = "memory://",
        *,
        envelope: Union[str, Envelope] = "raw",
        max_message_size: Optional[int] = 1 << 20,
        policy: Policy = "drop",
        max_pending: int = 256 * 1024,
        on_gap: Optional[Callable[[list[str], str], Any]] = None,
        max_delay: float = 0.001,
    ) -> None:
        self.url = url
        if not max_delay >= 0:
            raise ValueError(f"max_delay is a number of seconds >= 0, not {max_delay!r}")
        self.max_delay = max_delay
        self._envelope = _envelope(envelope)
        self.max_message_size = max_message_size
        _check_policy(policy, max_pending)
        self.policy: Policy = policy
        self.max_pending = max_pending
        self.on_gap = on_gap
        self.stats = HubStats()
        self._backend = _backend_for(url, self)
        self._trusted = isinstance(self._backend, MemoryBackend)  # text from str.encode(): valid UTF-8
        self._channels: dict[str, dict[Any, Subscription]] = {}
        self._subscribers: dict[Any, dict[str, Subscription]] = {}
        self._live: dict[str, Optional[str]] = {}  # the last id seen per channel (ordered backends)
        self._batches: dict[str, list[_Message]] = {}  # delivered in this turn of the loop, per channel
        self._flushing: Optional[asyncio.Handle] = None
        self._flushed_at = float("-inf")  # when the last flush ended (loop time)
        self._flush_cost = 0.0  # how long it took
        self._emptied: set[str] = set()  # channels whose last local subscriber left
        self._leaving: Optional[asyncio.Task[None]] = None  # the task that leaves them
        self._lock: Optional[asyncio.Lock] = None  # joins and leaves of the backend's channels, one at a time
        self._state = "new"  # -> "started" -> "closed"

    def __repr__(self) -> str:
        return f"<Hub {self.url} {self._state}>"

    @property
    def ordered(self) -> bool:
        """Whether messages have ids and can be replayed after one."""
        return self._backend.ordered

    @property
    def channels(self) -> list[str]:
        """Channels with subscribers in this process."""
        return list(self._channels)

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> Hub:
        """Connect the backend (:class:`HubUnavailable` if it cannot be reached)."""
        if self._state == "closed":
            raise HubClosed("this hub was closed; create a new one")
        if self._state == "new":
            self._lock = asyncio.Lock()  # here: on Python 3.9 a lock binds to the loop it is created in
            await self._backend.start()
            self._state = "started"
        return self

    async def close(self) -> None:
        """Forget every subscription and disconnect the backend."""
        if self._state == "closed":
            return
        was_started = self._state == "started"
        if self._flushing is not None:  # what was delivered already goes out first
            self._flushing.cancel()
            self._flush_batches()
        self._state = "closed"
        for subs in self._channels.values():
            for sub in subs.values():
                if sub._flusher is not None:
                    sub._flusher.cancel()
        self._channels.clear()
        self._subscribers.clear()
        self._emptied.clear()
        if self._leaving is not None:
            self._leaving.cancel()
        if was_started:
            await self._backend.stop()

    async def __aenter__(self) -> Hub:
        return await self.start()

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()

    def _check_open(self) -> None:
        if self._state != "started":
            raise HubClosed(
                "the hub is closed" if self._state == "closed" else "the hub is not started: await hub.start()"
            )

    # ------------------------------------------------------------ publishing

    async def publish(self, channel: str, message: Union[str, bytes, bytearray, memoryview]) -> Optional[str]:
        """Send ``message`` to every subscriber of ``channel`` in every
        process; return its id (``None`` for Redis Pub/Sub)."""
        self._check_open()
        _check_channel(channel)
        if isinstance(message, str):
            data, text = message.encode(), True
        elif isinstance(message, (bytes, bytearray, memoryview)):
            data, text = bytes(message), False
        else:
            raise TypeError(f"a message is str or bytes, not {type(message).__name__}")
        if self.max_message_size is not None and len(data) > self.max_message_size:
            raise ValueError(
                f"message of {len(data)} bytes is over the hub's max_message_size ({self.max_message_size} bytes)"
            )
        self.stats.published += 1
        return await self._backend.publish(channel, data, text)

    # ------------------------------------------------------------ subscribing

    async def subscribe(
        self,
        subscriber: Any,
        channel: str,
        *,
        last_id: Optional[str] = None,
        policy: Optional[Policy] = None,
        max_pending: Optional[int] = None,
        envelope: Union[None, str, Envelope] = None,
    ) -> Subscription:
        """Deliver ``channel``'s messages to ``subscriber`` until it closes
        or :meth:`unsubscribe`.

        ``subscriber``: a :class:`wsfast.WebSocket`, a
        :class:`~wsfast.asyncio.WebSocketTransport`, a Starlette/FastAPI
        ``WebSocket`` (any object with an ASGI ``scope`` and ``send``), or an
        ASGI ``send`` callable. ``last_id``: resume after this id (ordered
        backends): the messages the subscriber missed are sent first, in
        order, then the live ones, none twice. ``policy``, ``max_pending``
        and ``envelope``: this subscription's, instead of the hub's (each
        message is framed once per envelope in use).
        """
        self._check_open()
        _check_channel(channel)
        policy = self.policy if policy is None else policy
        max_pending = self.max_pending if max_pending is None else max_pending
        _check_policy(policy, max_pending)
        if last_id is not None:
            if not self.ordered:
                raise ValueError(
                    f"{self.url} keeps no history: use redis+streams:// or memory:// to resume after an id"
                )
            after = parse_id(last_id)
        key, kind, target = _subscriber(subscriber)
        subs = self._channels.get(channel)
        if subs is not None and key in subs:
            raise ValueError(f"already subscribed to {channel!r}")
        sub = Subscription(
            channel, key, kind, target, policy, max_pending, self._envelope if envelope is None else _envelope(envelope)
        )
        if last_id is not None:
            sub._replay = []
        self._add(sub)
        try:
            await self._join(channel)
            if last_id is not None:
                upto = self._live.get(channel) or "0-0"
                history = await self._backend.history(channel, last_id, upto)
                sub.missed = not history.complete
                held, sub._replay = sub._replay or [], None
                start = max(after, parse_id(upto))
                entries: list[_Message] = [(parse_id(e.id), e.id, e.data, e.text) for e in history.entries]
                entries += [message for message in held if message[0] > start]
                closed: list[Subscription] = []
                for opcode, payload in _encode(channel, entries, sub._envelope):
                    self.stats.delivered += self._send_slow(sub, opcode, payload, closed)
                    if closed:
                        self._forget(sub._key)
                        break
                sub._after = start
        except BaseException:
            self._remove(sub)
            raise
        return sub

    async def unsubscribe(self, subscriber: Any, channel: Optional[str] = None) -> None:
        """Stop delivering ``channel`` (every channel if ``None``) to ``subscriber``."""
        key = _subscriber(subscriber)[0]
        subs = self._subscribers.get(key, {})
        for sub in [subs[channel]] if channel is not None and channel in subs else list(subs.values()):
            self._remove(sub)
        await self._leave_empty()

    def subscribed(self, subscriber: Any, channel: str, **kwargs: Any) -> _Subscribed:
        """``async with hub.subscribed(ws, channel): ...``: subscribed inside."""
        return _Subscribed(self, subscriber, channel, kwargs)

    def _add(self, sub: Subscription) -> None:
        self._channels.setdefault(sub.channel, {})[sub._key] = sub
        mine = self._subscribers.get(sub._key)
        if mine is None:
            mine = self._subscribers[sub._key] = {}
            if sub._kind == _WSFAST:  # forget it when it closes
                sub._target._closed_future().add_done_callback(lambda _, key=sub._key: self._forget(key))
        mine[sub.channel] = sub

    def _remove(self, sub: Subscription) -> None:
        subs = self._channels.get(sub.channel)
        if subs is not None and subs.get(sub._key) is sub:
            del subs[sub._key]
            if not subs:
                self._emptied.add(sub.channel)
        mine = self._subscribers.get(sub._key)
        if mine is not None and mine.get(sub.channel) is sub:
            del mine[sub.channel]
            if not mine:
                del self._subscribers[sub._key]
        if sub._flusher is not None:
            sub._flusher.cancel()
            sub._flusher = None
        sub._pending.clear()

    def _forget(self, key: Any) -> None:
        """A subscriber closed: drop its subscriptions (and, soon, the
        backend's for channels nobody here listens to any more)."""
        for sub in list(self._subscribers.get(key, {}).values()):
            self._remove(sub)
        self._leave_later()

    def _leave_later(self) -> None:
        """One task at a time leaves the channels that emptied (a mass
        disconnect does not start a task, or scan the channels, per close)."""
        if self._emptied and self._leaving is None and self._state == "started":
            self._leaving = asyncio.get_running_loop().create_task(self._leave_empty())
            self._leaving.add_done_callback(self._left)

    def _left(self, task: asyncio.Task[None]) -> None:
        self._leaving = None
        self._leave_later()  # channels that emptied after it looked

    async def _join(self, channel: str) -> None:
        """Make sure the backend delivers ``channel`` here. Joins and leaves
        take turns (a subscriber that arrives while the backend subscribes
        or unsubscribes waits for it), so the backend's set of channels
        always ends as the hub's."""
        if channel in self._live:
            return
        assert self._lock is not None
        async with self._lock:
            if channel not in self._live:
                self._live[channel] = await self._backend.subscribe(channel)

    async def _leave_empty(self) -> None:
        if self._lock is None:
            return
        async with self._lock:
            while self._emptied:
                channel = self._emptied.pop()
                if self._channels.get(channel):  # somebody subscribed meanwhile
                    continue
                self._channels.pop(channel, None)
                if channel in self._live and self._state == "started":
                    del self._live[channel]
                    await self._backend.unsubscribe(channel)

    # ------------------------------------------------------------ delivery (the backend calls these)

    def deliver(self, channel: str, id: Optional[str], data: bytes, text: bool) -> None:
        """A message of ``channel`` from the backend. It is written at the
        end of this turn of the event loop, or later under load (see
        ``max_delay``), together with the channel's other messages of the
        meantime: then one write (one system call) per connection carries
        several messages."""
        stats = self.stats
        stats.received += 1
        if id is not None and channel in self._live:
            self._live[channel] = id
        if channel not in self._channels:
            return
        if text and not self._trusted and not validate_utf8(data):
            stats.invalid += 1
            logger.warning("hub: a text message on %r is not valid UTF-8: dropped", channel)
            return
        batch = self._batches.get(channel)
        if batch is None:
            batch = self._batches[channel] = []
            if self._flushing is None:
                loop = asyncio.get_running_loop()
                wait = self._flushed_at + max(self.max_delay, self._flush_cost) - loop.time()
                self._flushing = (
                    loop.call_later(wait, self._flush_batches) if wait > 0 else loop.call_soon(self._flush_batches)
                )
        batch.append((parse_id(id) if id is not None else _NO_ID, id, data, text))

    def _flush_batches(self) -> None:
        self._flushing = None
        loop = asyncio.get_running_loop()
        began = loop.time()
        batches, self._batches = self._batches, {}
        for channel, batch in batches.items():
            subs = self._channels.get(channel)
            if subs:
                self._dispatch(channel, subs, batch)
        self._flushed_at = loop.time()
        self._flush_cost = self._flushed_at - began

    def _dispatch(self, channel: str, subs: dict[Any, Subscription], batch: list[_Message]) -> None:
        """Write ``batch`` (one channel's messages, in order) to ``subs``:
        framed once per envelope, one write per connection that keeps up;
        the policy, message by message, for the others."""
        encoded: dict[Envelope, list[Any]] = {}  # envelope -> [(opcode, payload) list, their frames or None]
        delivered = 0
        count = len(batch)
        closed: list[Subscription] = []
        for sub in list(subs.values()):
            messages = batch
            if sub._replay is not None:  # resuming: held back until its history is out
                sub._replay.extend(batch)
                continue
            if sub._after is not None:  # just resumed: skip what its history had
                after = sub._after
                messages = [m for m in batch if m[0] > after]
                if len(messages) == count:
                    sub._after = None
                if not messages:
                    continue
            framed = encoded.get(sub._envelope)
            if framed is None:
                framed = encoded[sub._envelope] = [_encode(channel, batch, sub._envelope), None]
            kind = sub._kind
            if not sub._pending and messages is batch and kind != _ASGI and not sub._mask:
                if kind == _WSFAST:
                    ws = sub._target
                    conn = ws.conn
                    transport = ws._transport
                    ready = (
                        conn.state is _OPEN
                        and transport is not None
                        and not transport.is_closing()
                        and not conn._send_opcode
                    )
                else:
                    protocol = sub._target
                    transport = protocol.transport
                    ready = protocol._open
                frames = framed[1]
                if frames is None:
                    frames = framed[1] = _frames(framed[0])
                if ready and transport.get_write_buffer_size() + len(frames) <= sub.max_pending:
                    if kind == _WSFAST:
                        ws._write(frames)
                    else:
                        transport.write(frames)
                    delivered += count
                    continue
            for opcode, payload in framed[0] if messages is batch else _encode(channel, messages, sub._envelope):
                delivered += self._send_slow(sub, opcode, payload, closed)
                if closed and closed[-1] is sub:
                    break
        self.stats.delivered += delivered
        for sub in closed:
            self._forget(sub._key)

    def _send_slow(self, sub: Subscription, opcode: int, payload: bytes, closed: list[Subscription]) -> int:
        """The general path of one delivery; returns 1 if written now."""
        if sub._kind == _ASGI:
            # ASGI sends are coroutines: always through the flusher, with
            # the bytes queued for it as the measure of slowness.
            if sub._queued + len(payload) <= sub.max_pending:
                sub._pending.append((opcode, payload))
                sub._queued += len(payload)
                self._flush_later(sub)
                return 0
            status = _SLOW
        else:
            status = _status(sub)
            if status == _GONE:
                closed.append(sub)
                return 0
            if status == _READY and not sub._pending:
                _write(sub, opcode, payload)
                return 1
        # Not now: the policy decides.
        if sub.policy == "coalesce":
            if sub._pending:
                sub.coalesced += 1
                self.stats.coalesced += 1
            sub._pending[:] = [(opcode, payload)]
            sub._queued = len(payload)
            self._flush_later(sub)
        elif sub.policy == "close" and status == _SLOW:
            self.stats.closed += 1
            closed.append(sub)
            _close_slow(sub)
        else:  # "drop", or busy sending a fragmented message of its own
            sub.dropped += 1
            self.stats.dropped += 1
        return 0

    def _flush_later(self, sub: Subscription) -> None:
        if sub._flusher is None:
            sub._flusher = asyncio.get_running_loop().create_task(self._flush(sub))

    async def _flush(self, sub: Subscription) -> None:
        """Write what waits for a slow subscription once it drained."""
        try:
            while sub._pending:
                if sub._kind == _ASGI:
                    opcode, payload = sub._pending[0]
                    await sub._target(_asgi_message(opcode, payload))
                    if sub._pending and sub._pending[0][1] is payload:  # not coalesced away meanwhile
                        sub._pending.pop(0)
                        sub._queued -= len(payload)
                    self.stats.delivered += 1
                    continue
                status = _status(sub)
                if status == _GONE:
                    self._forget(sub._key)
                    return
                if status != _READY:
                    await _drained(sub)
                    continue
                opcode, payload = sub._pending.pop(0)
                sub._queued -= len(payload)
                _write(sub, opcode, payload)
                self.stats.delivered += 1
        except asyncio.CancelledError:
            raise
        except Exception:  # the ASGI connection is gone
            self._forget(sub._key)
        finally:
            if sub._flusher is asyncio.current_task():
                sub._flusher = None

    def gap(self, channels: list[str], reason: str) -> None:
        """The backend may have missed messages of ``channels``."""
        self.stats.gaps += 1
        logger.warning("hub: messages may have been missed on %d channel(s): %s", len(channels), reason)
        if self.on_gap is not None:
            try:
                result = self.on_gap(channels, reason)
                if asyncio.iscoroutine(result):
                    asyncio.get_running_loop().create_task(result)
            except Exception:
                logger.exception("hub: error in on_gap")


class _Subscribed:
    def __init__(self, hub: Hub, subscriber: Any, channel: str, kwargs: dict[str, Any]) -> None:
        self._args = (hub, subscriber, channel, kwargs)

    async def __aenter__(self) -> Subscription:
        hub, subscriber, channel, kwargs = self._args
        return await hub.subscribe(subscriber, channel, **kwargs)

    async def __aexit__(self, *exc_info: Any) -> None:
        hub, subscriber, channel, _ = self._args
        if hub._state == "started":
            await hub.unsubscribe(subscriber, channel)


# ---------------------------------------------------------------- helpers


def _backend_for(url: str, hub: Hub) -> Backend:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "memory":
        return MemoryBackend(parts, hub)
    if scheme in ("redis", "rediss", "redis+streams", "rediss+streams"):
        from . import redis as _redis

        cls: type[Backend] = _redis.RedisStreamsBackend if scheme.endswith("+streams") else _redis.RedisPubSubBackend
        return cls(parts, hub)
    raise ValueError(
        f"unknown hub URL {url!r}: memory://, redis://host:port/db (Pub/Sub) or redis+streams://host:port/db (Streams)"
    )


def _check_channel(channel: str) -> None:
    if not isinstance(channel, str):
        raise TypeError(f"a channel name is a str, not {type(channel).__name__}")
    if not channel or len(channel.encode()) > MAX_CHANNEL_LENGTH or not channel.isprintable():
        raise ValueError(
            f"invalid channel name {channel!r}:"
            f" 1 to {MAX_CHANNEL_LENGTH} bytes of printable text (no control characters)"
        )


def _envelope(envelope: Union[str, Envelope]) -> Envelope:
    if isinstance(envelope, str):
        if envelope not in _ENVELOPES:
            raise ValueError(f"unknown envelope {envelope!r}: 'raw', 'json' or a function")
        return _ENVELOPES[envelope]
    if not callable(envelope):
        raise TypeError(f"an envelope is 'raw', 'json' or a function, not {type(envelope).__name__}")
    return envelope


def _check_policy(policy: str, max_pending: int) -> None:
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}: 'drop', 'close' or 'coalesce'")
    if not isinstance(max_pending, int) or max_pending < 0:
        raise ValueError(f"max_pending is a number of bytes >= 0, not {max_pending!r}")


def _subscriber(subscriber: Any) -> tuple[Any, int, Any]:
    """``(key, kind, target)`` of what :meth:`Hub.subscribe` was given."""
    from ..asyncio.connection import WebSocket
    from ..asyncio.transport import WebSocketTransport

    if isinstance(subscriber, WebSocket):
        subscriber = subscriber.transport
    if isinstance(subscriber, WebSocketTransport):
        return subscriber, _WSFAST, subscriber
    scope = getattr(subscriber, "scope", None)
    if isinstance(scope, dict):  # a Starlette/FastAPI WebSocket
        protocol = (scope.get("extensions") or {}).get("wsfast.protocol", {}).get("protocol")
        if protocol is not None:
            return protocol, _UVICORN, protocol
        send = getattr(subscriber, "send", None)
        if callable(send):
            return subscriber, _ASGI, send
    if _is_wsfast_uvicorn(subscriber):
        return subscriber, _UVICORN, subscriber
    owner = getattr(subscriber, "__self__", None)
    if owner is not None and _is_wsfast_uvicorn(owner):  # WSFastProtocol.send itself
        return owner, _UVICORN, owner
    if callable(subscriber):
        return subscriber, _ASGI, subscriber
    raise TypeError(
        f"cannot subscribe {type(subscriber).__name__}: a wsfast WebSocket or WebSocketTransport,"
        " a Starlette/FastAPI WebSocket, or an ASGI send callable"
    )


def _is_wsfast_uvicorn(obj: Any) -> bool:
    cls = type(obj)
    return cls.__name__ == "WSFastProtocol" and cls.__module__ == "wsfast.uvicorn"


_READY, _SLOW, _BUSY, _GONE = 0, 1, 2, 3


def _encode(channel: str, batch: list[_Message], envelope: Envelope) -> list[tuple[int, bytes]]:
    """``(opcode, payload)`` of each message of a batch, as ``envelope`` makes it."""
    if envelope is raw_envelope:
        return [(OP_TEXT if text else OP_BINARY, data) for _, _, data, text in batch]
    encoded = []
    for _, id, data, text in batch:
        payload, text = envelope(channel, id, data, text)
        encoded.append((OP_TEXT if text else OP_BINARY, payload.encode() if isinstance(payload, str) else payload))
    return encoded


def _frames(encoded: list[tuple[int, bytes]]) -> bytes:
    """The server frames of encoded messages, in one buffer."""
    if len(encoded) == 1:
        return build_frame(encoded[0][0], encoded[0][1], True, 0, None)
    return b"".join([build_frame(opcode, payload, True, 0, None) for opcode, payload in encoded])


def _status(sub: Subscription) -> int:
    """Whether a wsfast or uvicorn subscription can take a message now:
    _READY; _SLOW (over max_pending); _BUSY (sending a fragmented message
    of its own); _GONE (closed or closing)."""
    target = sub._target
    if sub._kind == _WSFAST:
        conn = target.conn
        transport = target._transport
        if conn.state is not _OPEN or transport is None or transport.is_closing():
            return _GONE
        if transport.get_write_buffer_size() > sub.max_pending:
            return _SLOW
        return _BUSY if conn._send_opcode else _READY
    if target._lost or not target._open:
        return _GONE
    return _SLOW if target.transport.get_write_buffer_size() > sub.max_pending else _READY


def _write(sub: Subscription, opcode: int, payload: bytes) -> None:
    target = sub._target
    if sub._kind == _WSFAST:
        target._write(build_frame(opcode, payload, True, 0, True if sub._mask else None))
    elif sub._kind == _UVICORN:
        target.transport.write(build_frame(opcode, payload, True, 0, None))
    else:  # pragma: no cover - ASGI goes through the flusher
        raise AssertionError("ASGI subscriptions write from their flusher")


async def _drained(sub: Subscription) -> None:
    target = sub._target
    if sub._kind == _WSFAST and target._writing_paused:
        await target.drain()
    elif sub._kind == _UVICORN and target._write_paused:
        await target._drained()
    else:  # below the transport's own mark but above max_pending: look again soon
        await asyncio.sleep(0.005)


def _close_slow(sub: Subscription) -> None:
    target = sub._target
    reason = "slow consumer"
    if sub._kind == _WSFAST:
        if target.conn.state is _OPEN:
            target.close(SLOW_CLOSE_CODE, reason)
    elif sub._kind == _UVICORN:
        target._send_close(SLOW_CLOSE_CODE, reason)
    else:
        send = cast(Callable[[dict[str, Any]], Any], target)
        asyncio.get_running_loop().create_task(_asgi_close(send))


async def _asgi_close(send: Callable[[dict[str, Any]], Any]) -> None:
    try:
        await send({"type": "websocket.close", "code": SLOW_CLOSE_CODE, "reason": "slow consumer"})
    except Exception:  # already gone
        pass


def _asgi_message(opcode: int, payload: bytes) -> dict[str, Any]:
    if opcode == OP_TEXT:
        return {"type": "websocket.send", "text": payload.decode()}
    return {"type": "websocket.send", "bytes": payload}
