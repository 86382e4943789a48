"""Frames built and parsed by hand, from RFC 6455 section 5.2, without
wsfast: the independent wire format the protocol tests compare against."""

from __future__ import annotations

from typing import Any, Optional

from wsfast.protocol import Role

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
MASK = bytes.fromhex("37fa213d")

Frame = tuple[int, bool, int, bytes]


def xor(data: bytes, key: bytes) -> bytes:
    n = len(data)
    if not n:
        return b""
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


def encode(
    opcode: int,
    payload: bytes,
    fin: bool = True,
    rsv: int = 0,
    mask: Optional[bytes] = None,
    length: Optional[int] = None,
) -> bytes:
    """A frame, bit by bit from RFC 6455 section 5.2 (no checks: any field can be set)."""
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    m = 0x80 if mask is not None else 0
    if n < 126:
        head = bytes((b0, m | n))
    elif n < 65536:
        head = bytes((b0, m | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((b0, m | 127)) + n.to_bytes(8, "big")
    if mask is None:
        return head + payload
    return head + mask + xor(payload, mask)


def peer_frame(role: Role, opcode: int, payload: bytes = b"", fin: bool = True, rsv: int = 0, **kw: Any) -> bytes:
    """A frame as the peer of a ``role`` connection sends it: masked when it
    goes to a server."""
    return encode(opcode, payload, fin, rsv, MASK if role is Role.SERVER else None, **kw)


def decode(data: bytes, masked: bool) -> list[Frame]:
    """Split ``data`` into frames; every frame must be masked iff ``masked``."""
    frames = []
    pos = 0
    while pos < len(data):
        b0, b1 = data[pos], data[pos + 1]
        n = b1 & 0x7F
        pos += 2
        if n == 126:
            n = int.from_bytes(data[pos : pos + 2], "big")
            pos += 2
        elif n == 127:
            n = int.from_bytes(data[pos : pos + 8], "big")
            pos += 8
        assert bool(b1 & 0x80) is masked, "wrong masking"
        key = None
        if masked:
            key = data[pos : pos + 4]
            pos += 4
        payload = data[pos : pos + n]
        assert len(payload) == n, "truncated frame"
        pos += n
        frames.append((b0 & 0x0F, bool(b0 & 0x80), (b0 >> 4) & 7, xor(payload, key) if key else payload))
    return frames
