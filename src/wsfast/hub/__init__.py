"""Publish/subscribe for WebSocket connections, in one process or across
processes and hosts: :class:`Hub`.

::

    hub = wsfast.hub.Hub("redis+streams://127.0.0.1:6379/0", envelope="json")

    async def handler(ws):
        await hub.subscribe(ws, "chat", last_id=ws.request.query.get("last_id"))
        async for message in ws:
            await hub.publish("chat", message)

Backends, chosen by URL: ``memory://`` (this process), ``redis://``
(Redis Pub/Sub) and ``redis+streams://`` (Redis Streams, with replay);
the Redis ones need ``pip install 'wsfast[redis]'``.
"""

from .backend import Backend, Entry, History, HubClosed, HubError, HubUnavailable, MemoryBackend, parse_id
from .hub import (
    MAX_CHANNEL_LENGTH,
    POLICIES,
    SLOW_CLOSE_CODE,
    Envelope,
    Hub,
    HubStats,
    Policy,
    Subscription,
    json_envelope,
    raw_envelope,
)

__all__ = [
    "Hub",
    "Subscription",
    "HubStats",
    "Policy",
    "POLICIES",
    "Envelope",
    "json_envelope",
    "raw_envelope",
    "MAX_CHANNEL_LENGTH",
    "SLOW_CLOSE_CODE",
    "HubError",
    "HubClosed",
    "HubUnavailable",
    "Backend",
    "MemoryBackend",
    "Entry",
    "History",
    "parse_id",
]
