"""The interface between a :class:`~wsfast.hub.Hub` and the engine that
carries its messages between processes, and the in-process engine.

A backend moves published messages; the hub does everything local to its
process (subscriptions, framing once, writing to connections, slow
consumers). A backend calls back into the hub with :class:`Sink`:

* ``deliver(channel, id, data, text)`` for each message of a subscribed
  channel, in publication order per channel, from the event loop's thread;
* ``gap(channels, reason)`` when messages of those channels may have been
  missed (a Pub/Sub connection lost and re-established).

Message ids (:func:`parse_id`) are Redis stream ids: ``"<ms>-<seq>"``,
ordered as the pair of integers. Backends without ids (Redis Pub/Sub)
deliver ``None``.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Optional, Protocol
from urllib.parse import SplitResult, parse_qs

__all__ = [
    "Backend",
    "Sink",
    "Entry",
    "History",
    "MemoryBackend",
    "parse_id",
    "HubError",
    "HubClosed",
    "HubUnavailable",
]


class HubError(Exception):
    """Base class of the hub's errors."""


class HubClosed(HubError):
    """The hub was closed (or not started): it cannot publish or subscribe."""


class HubUnavailable(HubError):
    """The engine behind the hub cannot be reached (in time)."""


@dataclass(frozen=True)
class Entry:
    """One stored message: its id, payload and kind."""

    id: str
    data: bytes
    text: bool


@dataclass(frozen=True)
class History:
    """What :meth:`Backend.history` found after an id.

    ``complete`` is false when retention already dropped messages that came
    after that id (the replay has a hole at its start).
    """

    entries: list[Entry]
    complete: bool


class Sink(Protocol):
    """What a backend calls back into (the hub)."""

    def deliver(self, channel: str, id: Optional[str], data: bytes, text: bool) -> None: ...

    def gap(self, channels: list[str], reason: str) -> None: ...


def parse_id(id: str) -> tuple[int, int]:
    """``"1700000000000-3"`` -> ``(1700000000000, 3)``; ``ValueError`` else."""
    ms, sep, seq = id.partition("-")
    if not ms.isdigit() or (sep and not seq.isdigit()):
        raise ValueError(f"not a message id: {id!r} (expected '<milliseconds>-<sequence>')")
    return int(ms), int(seq or 0)


class Backend:
    """Base class of the engines behind a hub; one instance per hub.

    ``ordered`` is true when the backend gives ids and keeps a history
    (replay after an id); then :meth:`subscribe` returns the id of the last
    message already in the channel (``"0-0"`` when there is none), so that
    the hub knows where the live stream of that channel starts.
    """

    ordered = False
    #: The guarantee, in the words of the README's table.
    guarantee = ""

    def __init__(self, url: SplitResult, sink: Sink) -> None:
        self.url = url
        self.sink = sink

    async def start(self) -> None:
        """Connect; raise :class:`HubUnavailable` with a clear message if the
        engine cannot be reached within the connect timeout."""

    async def stop(self) -> None:
        """Disconnect and stop every task of the backend."""

    async def publish(self, channel: str, data: bytes, text: bool) -> Optional[str]:
        """Publish one message to every process; return its id (or ``None``)."""
        raise NotImplementedError

    async def subscribe(self, channel: str) -> Optional[str]:
        """Start receiving ``channel`` in this process (the hub calls it once
        per channel, when its first local subscriber arrives)."""
        raise NotImplementedError

    async def unsubscribe(self, channel: str) -> None:
        """Stop receiving ``channel`` (its last local subscriber left)."""
        raise NotImplementedError

    async def history(self, channel: str, after: str, upto: str) -> History:
        """The stored messages of ``channel`` with ``after < id <= upto``, in
        order. Only for ``ordered`` backends."""
        raise NotImplementedError(f"{type(self).__name__} keeps no history")


class MemoryBackend(Backend):
    """``memory://``: one process, no dependency; the default.

    Messages are delivered synchronously by :meth:`publish`. Each channel
    keeps its last ``maxlen`` messages (``memory://?maxlen=1000``, the
    default; ``0`` keeps none) so that a client that reconnects to the same
    process can resume after its last id.
    """

    ordered = True
    guarantee = "in-process only; replay after an id within the last maxlen messages"

    def __init__(self, url: SplitResult, sink: Sink) -> None:
        super().__init__(url, sink)
        if url.netloc or url.path not in ("", "/"):
            raise ValueError(f"memory:// takes no host or path: {url.geturl()!r}")
        query = parse_qs(url.query, strict_parsing=False)
        unknown = set(query) - {"maxlen"}
        if unknown:
            raise ValueError(f"memory:// does not know {', '.join(sorted(unknown))}: {url.geturl()!r}")
        try:
            self.maxlen = int(query.get("maxlen", ["1000"])[-1])
        except ValueError:
            raise ValueError(f"memory://?maxlen= needs a whole number: {url.geturl()!r}") from None
        if self.maxlen < 0:
            raise ValueError("memory://?maxlen= cannot be negative")
        self._logs: dict[str, deque[Entry]] = {}
        self._last = (0, 0)

    def _next_id(self) -> str:
        ms = time.time_ns() // 1_000_000
        last_ms, last_seq = self._last
        self._last = (ms, 0) if ms > last_ms else (last_ms, last_seq + 1)
        return f"{self._last[0]}-{self._last[1]}"

    async def publish(self, channel: str, data: bytes, text: bool) -> Optional[str]:
        id = self._next_id()
        if self.maxlen:
            log = self._logs.get(channel)
            if log is None:
                log = self._logs[channel] = deque(maxlen=self.maxlen)
            log.append(Entry(id, data, text))
        self.sink.deliver(channel, id, data, text)
        return id

    async def subscribe(self, channel: str) -> Optional[str]:
        log = self._logs.get(channel)
        return log[-1].id if log else f"{self._last[0]}-{self._last[1]}"

    async def unsubscribe(self, channel: str) -> None:
        """Nothing to undo: :meth:`publish` delivers to the hub, which keeps the subscriptions."""

    async def history(self, channel: str, after: str, upto: str) -> History:
        low, high = parse_id(after), parse_id(upto)
        log = self._logs.get(channel, ())
        entries = [e for e in log if low < parse_id(e.id) <= high]
        # Complete if the oldest kept message is at or before `after`, or
        # nothing was ever dropped from this log.
        complete = not log or parse_id(log[0].id) <= low or len(log) < (self.maxlen or 1)
        return History(entries, complete)
