"""A deterministic text corpus for permessage-deflate: the messages of one
connection, as a chat and a market-data feed send them.

:func:`payload` (``compressible=True``) gives one JSON-like message for
throughput runs, compressed on its own. Context takeover (the default of
RFC 7692, and of every library) compresses a *stream* of messages, where
later messages refer back to earlier ones; the window and ``memLevel``
settings are chosen on such a stream (``bench/deflate_settings.py``):
:func:`messages` interleaves market-data ticks (small JSON objects with
the same keys, prices drifting), batches of them, and chat messages (user
names, rooms, sentences from a small vocabulary, timestamps), 64 B to 2 KiB
each, about 3,000 messages and 1 MB by default.
"""

from __future__ import annotations

import json
import random

__all__ = ["messages"]

_SYMBOLS = ["AAPL", "MSFT", "GOOG", "AMZN", "TSLA", "NVDA", "META", "NFLX", "AMD", "INTC", "ORCL", "IBM"]
_USERS = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory", "niaj"]
_ROOMS = ["general", "random", "support", "dev", "ops"]
_WORDS = (
    "the a to of and in is it that for on you with this be are was at have not but we they "
    "deploy server release build test fix bug merge review latency memory connection message "
    "today tomorrow meeting please thanks ok sure great looks good works broken again later "
    "client socket deflate window queue timeout retry backoff proxy cache index query table"
).split()


def _chat(rng: random.Random, seq: int, now: float) -> bytes:
    words = rng.randrange(3, 60)
    text = " ".join(rng.choice(_WORDS) for _ in range(words)).capitalize() + rng.choice(".?!")
    obj = {
        "type": "message",
        "id": seq,
        "room": rng.choice(_ROOMS),
        "user": rng.choice(_USERS),
        "ts": round(now, 3),
        "text": text,
    }
    if rng.random() < 0.2:
        obj["reply_to"] = seq - rng.randrange(1, 50)
    return json.dumps(obj, separators=(",", ":")).encode()


def _tick(rng: random.Random, prices: dict[str, float], seq: int, now: float) -> dict[str, object]:
    symbol = rng.choice(_SYMBOLS)
    prices[symbol] = max(1.0, prices[symbol] * (1 + rng.gauss(0, 0.001)))
    price = round(prices[symbol], 2)
    return {
        "type": "tick",
        "seq": seq,
        "symbol": symbol,
        "bid": price,
        "ask": round(price + rng.choice((0.01, 0.02, 0.03)), 2),
        "size": rng.randrange(1, 100) * 100,
        "ts": round(now, 3),
    }


def messages(count: int = 3000, seed: int = 15) -> list[bytes]:
    """``count`` messages of one connection, always the same for a seed."""
    rng = random.Random(seed)
    prices = {s: rng.uniform(20, 900) for s in _SYMBOLS}
    out: list[bytes] = []
    now = 1_800_000_000.0
    for seq in range(count):
        now += rng.expovariate(20)
        kind = rng.random()
        if kind < 0.45:
            message = json.dumps(_tick(rng, prices, seq, now), separators=(",", ":")).encode()
        elif kind < 0.7:
            batch = [_tick(rng, prices, seq, now) for _ in range(rng.randrange(2, 20))]
            message = json.dumps({"type": "ticks", "seq": seq, "ticks": batch}, separators=(",", ":")).encode()
        else:
            message = _chat(rng, seq, now)
        out.append(message)
    return out
