"""Tests of permessage-deflate (RFC 7692): the extension header grammar, the
negotiation between two wsfast ends, and compressed messages on the wire.

The peer's compressed payloads are produced here with :mod:`zlib` directly
(raw deflate, sync flush, the ``00 00 ff ff`` tail removed, RFC 7692 section
7.2.1), independently of :class:`wsfast.extensions.Deflate`.
"""

from __future__ import annotations

import itertools
import json
import random
import zlib
from typing import Any, Optional

import pytest

from wsfast.events import BinaryMessage, Fragment, TextMessage
from wsfast.exceptions import FrameError, NegotiationError
from wsfast.extensions import Deflate, PerMessageDeflate, parse_extensions, serialize_extension
from wsfast.extensions.permessage_deflate import MessageTooBig
from wsfast.protocol import ClientConnection, Connection, Role, ServerConnection, State

CONT, TEXT, BINARY, CLOSE = 0x0, 0x1, 0x2, 0x8
TAIL = b"\x00\x00\xff\xff"

from .wire import decode, peer_frame  # noqa: E402

MiB = 1 << 20


class PeerCompressor:
    """The peer's compressor: raw deflate with sync flushes (RFC 7692 7.2.1)."""

    def __init__(self, bits: int = 15, takeover: bool = True) -> None:
        self.bits = bits
        self.takeover = takeover
        self._c = zlib.compressobj(6, zlib.DEFLATED, -bits)

    def message(self, data: bytes) -> bytes:
        if not self.takeover:
            self._c = zlib.compressobj(6, zlib.DEFLATED, -self.bits)
        out = self._c.compress(data) + self._c.flush(zlib.Z_SYNC_FLUSH)
        assert out.endswith(TAIL)
        return out[:-4]

    def fragments(self, pieces: list[bytes]) -> list[bytes]:
        """Compress one message given in pieces: each piece flushed, the tail
        removed from the last only."""
        if not self.takeover:
            self._c = zlib.compressobj(6, zlib.DEFLATED, -self.bits)
        out = [self._c.compress(p) + self._c.flush(zlib.Z_SYNC_FLUSH) for p in pieces]
        out[-1] = out[-1][:-4]
        return out


def peer_inflate(payloads: list[bytes], bits: int = 15) -> list[bytes]:
    """Inflate a sequence of compressed messages with context takeover."""
    d = zlib.decompressobj(-bits)
    return [d.decompress(p + TAIL) for p in payloads]


@pytest.fixture(params=[Role.SERVER, Role.CLIENT], ids=["server", "client"])
def role(request: pytest.FixtureRequest) -> Role:
    return request.param


def assert_failed(conn: Connection, code: int) -> None:
    frames = decode(conn.data_to_send(), conn.role is Role.CLIENT)
    assert len(frames) == 1 and frames[0][0] == CLOSE
    assert int.from_bytes(frames[0][3][:2], "big") == code
    assert isinstance(conn.failure, FrameError) and conn.failure.code == code
    assert conn.should_close_transport is (conn.role is Role.SERVER)  # a client waits for the server


# ---------------------------------------------------------------- header grammar


@pytest.mark.parametrize(
    "values, parsed",
    [
        ([], []),
        (["permessage-deflate"], [("permessage-deflate", [])]),
        (
            ["permessage-deflate; client_max_window_bits; server_max_window_bits=10"],
            [("permessage-deflate", [("client_max_window_bits", None), ("server_max_window_bits", "10")])],
        ),
        (
            ['permessage-deflate ;  server_max_window_bits = "10" , x-foo'],
            [("permessage-deflate", [("server_max_window_bits", "10")]), ("x-foo", [])],
        ),
        (["A; B=c", "d"], [("a", [("b", "c")]), ("d", [])]),
        (['e; p="to\\ken"'], [("e", [("p", "token")])]),
    ],
)
def test_parse_extensions(values: list[str], parsed: list[Any]) -> None:
    assert parse_extensions(values) == parsed


@pytest.mark.parametrize(
    "value",
    [
        "",
        ";",
        "a;",
        "a,",
        "a, ",
        ",a",
        "a b",
        "a; =1",
        "a; b=",
        "a; b=c d",
        'a; b="c d"',
        'a; b="unterminated',
        'a; b=""',
        "a;; b",
        "a=1",
    ],
)
def test_parse_extensions_malformed(value: str) -> None:
    if value == "":
        assert parse_extensions([value]) == []  # an empty field lists nothing
        return
    with pytest.raises(NegotiationError):
        parse_extensions([value])


def test_serialize_extension() -> None:
    assert serialize_extension("permessage-deflate", []) == "permessage-deflate"
    text = serialize_extension(
        "permessage-deflate", [("client_max_window_bits", None), ("server_max_window_bits", "9")]
    )
    assert text == "permessage-deflate; client_max_window_bits; server_max_window_bits=9"
    assert parse_extensions([text]) == [
        ("permessage-deflate", [("client_max_window_bits", None), ("server_max_window_bits", "9")])
    ]


# ---------------------------------------------------------------- configuration


@pytest.mark.parametrize("name", ["server_max_window_bits", "client_max_window_bits"])
@pytest.mark.parametrize("bits", [0, 7, 8, 16])
def test_window_bits_out_of_range_refused(name: str, bits: int) -> None:
    """8 is valid in RFC 7692 but zlib cannot compress with it: refused."""
    with pytest.raises(ValueError):
        PerMessageDeflate(**{name: bits})


def test_negative_threshold_refused() -> None:
    with pytest.raises(ValueError):
        PerMessageDeflate(compress_threshold=-1)


@pytest.mark.parametrize(
    "config, offer",
    [
        (PerMessageDeflate(), [("server_max_window_bits", "12"), ("client_max_window_bits", "12")]),
        (
            PerMessageDeflate(server_max_window_bits=None, client_max_window_bits=None),
            [("client_max_window_bits", None)],
        ),
        (
            PerMessageDeflate(server_max_window_bits=15, client_max_window_bits=15),
            [("client_max_window_bits", None)],
        ),
        (
            PerMessageDeflate(
                server_no_context_takeover=True, client_no_context_takeover=True, server_max_window_bits=9
            ),
            [
                ("server_no_context_takeover", None),
                ("client_no_context_takeover", None),
                ("server_max_window_bits", "9"),
                ("client_max_window_bits", "12"),
            ],
        ),
    ],
)
def test_offer(config: PerMessageDeflate, offer: list[Any]) -> None:
    assert config.offer() == offer


# ---------------------------------------------------------------- negotiation + round trip


def connected_pair(
    client_config: PerMessageDeflate, server_config: Optional[PerMessageDeflate]
) -> tuple[ClientConnection, ServerConnection]:
    client = ClientConnection("example.com", deflate=client_config)
    server = ServerConnection(deflate=server_config)
    server.receive_data(client.data_to_send())
    client.receive_data(server.accept())
    assert server.receive_data(b"") == []
    assert client.state is server.state is State.OPEN, client.failure
    return client, server


def sample_json(seed: int, size: int = 2000) -> str:
    rng = random.Random(seed)
    words = ["alpha", "beta", "gamma", "δέλτα", "€uro", "zeta", "eta", "θήτα", "iota", "kappa"]
    items = []
    while sum(map(len, items)) < size:
        items.append(json.dumps({"id": rng.randrange(10**6), "name": rng.choice(words), "v": rng.random()}))
    return "[" + ",".join(items) + "]"


CLIENT_CONFIGS = [
    PerMessageDeflate(
        server_no_context_takeover=snct,
        client_no_context_takeover=cnct,
        server_max_window_bits=smwb,
        client_max_window_bits=cmwb,
        compress_threshold=0,
    )
    for snct, cnct, smwb, cmwb in itertools.product([False, True], [False, True], [None, 9, 12, 15], [None, 9, 12, 15])
]


def config_id(config: PerMessageDeflate) -> str:
    return "snct{:d}-cnct{:d}-smwb{}-cmwb{}".format(
        config.server_no_context_takeover,
        config.client_no_context_takeover,
        config.server_max_window_bits,
        config.client_max_window_bits,
    )


def check_negotiated(
    client: ClientConnection, server: ServerConnection, cc: PerMessageDeflate, sc: PerMessageDeflate
) -> None:
    c, s = client.deflate, server.deflate
    assert c is not None and s is not None
    # Each inflater has a window at least as large as the other side's deflater.
    assert c.compress_bits <= s.decompress_bits
    assert s.compress_bits <= c.decompress_bits
    # An inflater that resets requires a deflater that resets.
    assert not s.decompress_reset or c.compress_reset
    assert not c.decompress_reset or s.compress_reset
    # What the client asked for and what the server imposes are honoured.
    if cc.server_no_context_takeover or sc.server_no_context_takeover:
        assert s.compress_reset
    if cc.client_no_context_takeover or sc.client_no_context_takeover:
        assert c.compress_reset
    assert s.compress_bits <= min(cc.server_max_window_bits or 15, sc.server_max_window_bits or 15)
    assert c.compress_bits <= min(cc.client_max_window_bits or 15, sc.client_max_window_bits or 15)
    assert 9 <= min(c.compress_bits, s.compress_bits)


def exchange(sender: Connection, receiver: Connection, messages: list[Any]) -> None:
    """Send ``messages`` (str, bytes, or a list of str pieces for a fragmented
    text message); they must arrive intact, compressed."""
    stream = b""
    expected = []
    for message in messages:
        if isinstance(message, list):
            out = sender.send_text(message[0], fin=False)
            for i, piece in enumerate(message[1:], 1):
                out += sender.send_continuation(piece, fin=i == len(message) - 1)
            expected.append(TextMessage("".join(message)))
        elif isinstance(message, str):
            out = sender.send_text(message)
            expected.append(TextMessage(message))
        else:
            out = sender.send_binary(message)
            expected.append(BinaryMessage(message))
        frames = decode(out, sender.role is Role.CLIENT)
        assert frames[0][2] == 4, "first frame of a compressed message has RSV1"
        assert all(rsv == 0 for _, _, rsv, _ in frames[1:]), "RSV1 on a continuation frame"
        stream += out
    assert receiver.receive_data(stream) == expected
    assert receiver.failure is None and receiver.data_to_send() == b""


MESSAGES = [
    sample_json(1),
    sample_json(1),  # the same again: references the previous message with takeover
    random.Random(3).randbytes(5000),
    "",
    ["κόσμε " * 50, "é" * 100, sample_json(2, 500)],
    sample_json(1),
    b"\x00" * 20_000,
]


@pytest.mark.parametrize("server_same", [False, True], ids=["server-default", "server-same"])
@pytest.mark.parametrize("client_config", CLIENT_CONFIGS, ids=config_id)
def test_round_trip_for_every_parameter_combination(client_config: PerMessageDeflate, server_same: bool) -> None:
    server_config = client_config if server_same else PerMessageDeflate(compress_threshold=0)
    client, server = connected_pair(client_config, server_config)
    check_negotiated(client, server, client_config, server_config)
    exchange(client, server, MESSAGES)
    exchange(server, client, MESSAGES)
    exchange(client, server, MESSAGES[:2])


@pytest.mark.parametrize(
    "server_config",
    [
        PerMessageDeflate(server_no_context_takeover=True, compress_threshold=0),
        PerMessageDeflate(client_no_context_takeover=True, compress_threshold=0),
        PerMessageDeflate(server_max_window_bits=9, client_max_window_bits=9, compress_threshold=0),
        PerMessageDeflate(server_max_window_bits=None, client_max_window_bits=None, compress_threshold=0),
    ],
)
def test_server_imposed_parameters(server_config: PerMessageDeflate) -> None:
    client_config = PerMessageDeflate(server_max_window_bits=None, client_max_window_bits=None, compress_threshold=0)
    client, server = connected_pair(client_config, server_config)
    check_negotiated(client, server, client_config, server_config)
    exchange(client, server, MESSAGES)
    exchange(server, client, MESSAGES)


# ---------------------------------------------------------------- threshold, override


def test_compress_threshold_and_per_message_override(role: Role) -> None:
    conn = Connection(role, deflate=Deflate(threshold=100))
    masked = role is Role.CLIENT
    rsv = lambda out: decode(out, masked)[0][2]  # noqa: E731
    assert rsv(conn.send_text("x" * 99)) == 0
    assert rsv(conn.send_text("x" * 100)) == 4
    assert rsv(conn.send_binary(b"x" * 99)) == 0
    assert rsv(conn.send_binary(b"x" * 100)) == 4
    assert rsv(conn.send_text("x" * 1000, compress=False)) == 0
    assert rsv(conn.send_binary(b"x", compress=True)) == 4
    assert rsv(conn.send_text("", compress=True)) == 4
    assert rsv(conn.send_text("x" * 1000, compress=None)) == 4
    # Control frames are never compressed.
    assert rsv(conn.send_ping(b"x" * 125)) == 0


def test_threshold_zero_compresses_everything(role: Role) -> None:
    conn = Connection(role, deflate=Deflate(threshold=0))
    assert decode(conn.send_text(""), role is Role.CLIENT)[0][2] == 4


def test_threshold_from_the_negotiated_configuration() -> None:
    client, server = connected_pair(PerMessageDeflate(compress_threshold=50), PerMessageDeflate(compress_threshold=10))
    assert decode(client.send_binary(b"a" * 49), True)[0][2] == 0
    assert decode(client.send_binary(b"a" * 50), True)[0][2] == 4
    assert decode(server.send_binary(b"a" * 9), False)[0][2] == 0
    assert decode(server.send_binary(b"a" * 10), False)[0][2] == 4


def test_uncompressed_messages_still_accepted_with_deflate(role: Role) -> None:
    conn = Connection(role, deflate=Deflate())
    assert conn.receive_data(peer_frame(role, TEXT, b"plain") + peer_frame(role, BINARY, b"\x01")) == [
        TextMessage("plain"),
        BinaryMessage(b"\x01"),
    ]


def test_uncompressed_fragmented_message_in_between_compressed_ones(role: Role) -> None:
    peer = PeerCompressor()
    conn = Connection(role, deflate=Deflate())
    data = (
        peer_frame(role, TEXT, peer.message(b"first"), rsv=4)
        + peer_frame(role, BINARY, b"pl", fin=False)
        + peer_frame(role, CONT, b"ain")
        + peer_frame(role, TEXT, peer.message(b"first again"), rsv=4)
    )
    assert conn.receive_data(data) == [
        TextMessage("first"),
        BinaryMessage(b"plain"),
        TextMessage("first again"),
    ]


def test_compressed_frames_decode_with_an_independent_inflater(role: Role) -> None:
    conn = Connection(role, deflate=Deflate(compress_bits=10, threshold=0))
    messages = [sample_json(7).encode(), sample_json(7).encode(), b"", b"\xff" * 3000]
    payloads = []
    for m in messages:
        frames = decode(conn.send_binary(m), role is Role.CLIENT)
        assert len(frames) == 1 and frames[0][2] == 4
        payloads.append(frames[0][3])
    assert peer_inflate(payloads, bits=10) == messages


def test_fragmented_compressed_send(role: Role) -> None:
    conn = Connection(role, deflate=Deflate(threshold=0))
    out = conn.send_binary(b"abc" * 100, fin=False) + conn.send_continuation(b"def" * 100, fin=False)
    out += conn.send_continuation(b"ghi" * 100, fin=True)
    frames = decode(out, role is Role.CLIENT)
    assert [(f[0], f[1], f[2]) for f in frames] == [(BINARY, False, 4), (CONT, False, 0), (CONT, True, 0)]
    assert peer_inflate([b"".join(f[3] for f in frames)]) == [b"abc" * 100 + b"def" * 100 + b"ghi" * 100]


# ---------------------------------------------------------------- receiving compressed messages


@pytest.mark.parametrize("bits", [9, 12, 15])
def test_receive_compressed_with_context_takeover(role: Role, bits: int) -> None:
    peer = PeerCompressor(bits)
    conn = Connection(role, deflate=Deflate(decompress_bits=bits))
    messages = [sample_json(5).encode(), sample_json(5).encode(), b"", "κόσμε".encode() * 50]
    data = b"".join(peer_frame(role, TEXT, peer.message(m), rsv=4) for m in messages)
    assert conn.receive_data(data) == [TextMessage(m.decode()) for m in messages]


def test_receive_compressed_without_context_takeover(role: Role) -> None:
    peer = PeerCompressor(15, takeover=False)
    conn = Connection(role, deflate=Deflate(decompress_reset=True))
    messages = [sample_json(5).encode()] * 3
    data = b"".join(peer_frame(role, BINARY, peer.message(m), rsv=4) for m in messages)
    assert conn.receive_data(data) == [BinaryMessage(m) for m in messages]


def test_receive_compressed_fragmented(role: Role) -> None:
    text = "κόσμε".encode() * 30
    pieces = [text[:7], text[7:8], b"", text[8:]]  # cut inside characters
    peer = PeerCompressor()
    payloads = peer.fragments(pieces)
    data = b"".join(
        peer_frame(role, TEXT if i == 0 else CONT, p, fin=i == len(payloads) - 1, rsv=4 if i == 0 else 0)
        for i, p in enumerate(payloads)
    )
    for cut in (0, 5, len(data) // 2, len(data) - 1):
        conn = Connection(role, deflate=Deflate())
        assert conn.receive_data(data[:cut]) + conn.receive_data(data[cut:]) == [TextMessage(text.decode())]
    conn = Connection(role, deflate=Deflate(), stream_messages=True)
    events = conn.receive_data(data)
    assert all(isinstance(e, Fragment) and e.text for e in events)
    assert "".join(e.data for e in events) == text.decode()  # type: ignore[union-attr, misc]
    assert [e.fin for e in events][-1] is True  # type: ignore[union-attr]


def test_empty_compressed_message(role: Role) -> None:
    conn = Connection(role, deflate=Deflate())
    # b"\x00" is what a sync-flushed empty message leaves; b"" is also seen.
    data = peer_frame(role, TEXT, b"\x00", rsv=4) + peer_frame(role, BINARY, b"", rsv=4)
    assert conn.receive_data(data) == [TextMessage(""), BinaryMessage(b"")]


def test_compressed_invalid_utf8_is_1007(role: Role) -> None:
    conn = Connection(role, deflate=Deflate())
    conn.receive_data(peer_frame(role, TEXT, PeerCompressor().message(b"ok \xed\xa0\x80"), rsv=4))
    assert_failed(conn, 1007)


@pytest.mark.parametrize(
    "payload",
    [
        b"\xff" * 10,  # reserved block type
        b"\x07\x00",
        bytes.fromhex("0500ff0000"),  # stored block whose LEN/NLEN do not match
    ],
)
def test_corrupt_compressed_data_is_1002(role: Role, payload: bytes) -> None:
    conn = Connection(role, deflate=Deflate())
    assert conn.receive_data(peer_frame(role, BINARY, payload, rsv=4)) == []
    assert_failed(conn, 1002)


def test_corrupt_compressed_continuation_is_1002(role: Role) -> None:
    conn = Connection(role, deflate=Deflate())
    good = PeerCompressor().fragments([b"hello", b""])[0]
    assert conn.receive_data(peer_frame(role, TEXT, good, fin=False, rsv=4)) == []
    conn.receive_data(peer_frame(role, CONT, b"\xff" * 8))
    assert_failed(conn, 1002)


# ---------------------------------------------------------------- size limits


@pytest.mark.parametrize("opcode", [TEXT, BINARY])
def test_compressed_message_size_boundary(role: Role, opcode: int) -> None:
    limit = 10_000
    exact = PeerCompressor().message(b"a" * limit)
    over = PeerCompressor().message(b"a" * (limit + 1))
    assert len(over) < 100  # the frame itself is small
    conn = Connection(role, deflate=Deflate(), max_message_size=limit)
    events = conn.receive_data(peer_frame(role, opcode, exact, rsv=4))
    assert len(events) == 1 and len(events[0].data) == limit  # type: ignore[union-attr]
    conn = Connection(role, deflate=Deflate(), max_message_size=limit)
    assert conn.receive_data(peer_frame(role, opcode, over, rsv=4)) == []
    assert_failed(conn, 1009)


@pytest.mark.parametrize("opcode", [TEXT, BINARY])
@pytest.mark.parametrize("pieces", [1, 7], ids=["whole", "in-pieces"])
def test_uncompressed_message_size_boundary_with_deflate(role: Role, opcode: int, pieces: int) -> None:
    # Compressed frames may exceed the limit by a little (deflate's overhead);
    # an uncompressed message in one frame may not, deflate negotiated or not.
    limit = 1000
    for size, ok in ((limit, True), (limit + 1, False), (limit + limit // 16 + 64, False)):
        conn = Connection(role, deflate=Deflate(), max_message_size=limit)
        wire = peer_frame(role, opcode, b"a" * size)
        events = []
        for i in range(pieces):
            events += conn.receive_data(wire[i * len(wire) // pieces : (i + 1) * len(wire) // pieces])
        if ok:
            assert len(events) == 1 and len(events[0].data) == size  # type: ignore[union-attr]
            assert conn.failure is None
        else:
            assert events == []
            assert_failed(conn, 1009)


def test_compressed_fragmented_message_size_boundary(role: Role) -> None:
    limit = 10_000
    for size, ok in ((limit, True), (limit + 1, False)):
        payloads = PeerCompressor().fragments([b"b" * 4000, b"b" * 4000, b"b" * (size - 8000)])
        conn = Connection(role, deflate=Deflate(), max_message_size=limit)
        events = []
        for i, p in enumerate(payloads):
            events += conn.receive_data(
                peer_frame(role, BINARY if i == 0 else CONT, p, fin=i == 2, rsv=4 if i == 0 else 0)
            )
        if ok:
            assert events == [BinaryMessage(b"b" * limit)]
            assert conn.failure is None
        else:
            assert events == []
            assert_failed(conn, 1009)


def test_compressed_message_over_the_limit_fails_before_its_last_fragment(role: Role) -> None:
    payloads = PeerCompressor().fragments([b"c" * 6000, b"c" * 6000, b"c"])
    conn = Connection(role, deflate=Deflate(), max_message_size=10_000)
    conn.receive_data(peer_frame(role, BINARY, payloads[0], fin=False, rsv=4))
    assert conn.data_to_send() == b""
    conn.receive_data(peer_frame(role, CONT, payloads[1], fin=False))
    assert_failed(conn, 1009)


# ---------------------------------------------------------------- context takeover, laziness


def compressed_sizes(conn: Connection, message: str, count: int = 3) -> list[int]:
    return [len(decode(conn.send_text(message), conn.role is Role.CLIENT)[0][3]) for _ in range(count)]


@pytest.mark.parametrize("direction", ["client-to-server", "server-to-client"])
def test_context_takeover_shrinks_repeated_messages(direction: str) -> None:
    message = sample_json(11, 1500)
    for no_takeover in (False, True):
        config = PerMessageDeflate(
            server_no_context_takeover=no_takeover,
            client_no_context_takeover=no_takeover,
            compress_threshold=0,
        )
        client, server = connected_pair(config, config)
        sender, receiver = (client, server) if direction == "client-to-server" else (server, client)
        assert sender.deflate is not None and sender.deflate.compress_reset is no_takeover
        first, second, third = compressed_sizes(sender, message)
        if no_takeover:
            assert first == second == third
        else:
            assert second < first // 4, (first, second)
            assert third < first // 4, (first, third)


@pytest.mark.parametrize("direction", ["client-to-server", "server-to-client"])
def test_no_context_takeover_messages_decode_independently(direction: str) -> None:
    """With no_context_takeover, each message is a complete deflate stream:
    an inflater that never saw the previous messages decodes it."""
    config = PerMessageDeflate(server_no_context_takeover=True, client_no_context_takeover=True, compress_threshold=0)
    client, server = connected_pair(config, config)
    sender = client if direction == "client-to-server" else server
    message = sample_json(12, 1500).encode()
    payloads = [decode(sender.send_binary(message), sender.role is Role.CLIENT)[0][3] for _ in range(3)]
    for payload in payloads:
        assert zlib.decompressobj(-15).decompress(payload + TAIL) == message


def test_zlib_objects_are_created_lazily() -> None:
    client, server = connected_pair(PerMessageDeflate(), PerMessageDeflate())
    for conn in (client, server):
        assert conn.deflate is not None
        assert conn.deflate._compressor is None and conn.deflate._decompressor is None
    # Small messages are under the threshold: still nothing allocated.
    server.receive_data(client.send_text("small"))
    assert client.deflate._compressor is None and server.deflate._decompressor is None  # type: ignore[union-attr]
    server.receive_data(client.send_text("large " * 100))
    assert client.deflate._compressor is not None  # type: ignore[union-attr]
    assert client.deflate._decompressor is None  # type: ignore[union-attr]
    assert server.deflate._decompressor is not None  # type: ignore[union-attr]
    assert server.deflate._compressor is None  # type: ignore[union-attr]


# ---------------------------------------------------------------- decompression bomb


@pytest.fixture(scope="module")
def gigabyte_of_zeros() -> bytes:
    """1 GiB of zeros, compressed without ever holding 1 GiB: after the first
    MiB, every further MiB compresses (sync-flushed) to the same block, which
    is repeated. Checked by inflating it in bounded steps."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    zero = bytes(MiB)
    first = c.compress(zero) + c.flush(zlib.Z_SYNC_FLUSH)
    block = c.compress(zero) + c.flush(zlib.Z_SYNC_FLUSH)
    assert c.compress(zero) + c.flush(zlib.Z_SYNC_FLUSH) == block  # the steady state
    payload = first + block * 1023
    assert payload.endswith(TAIL)
    payload = payload[:-4]
    d = zlib.decompressobj(-15)
    total = 0
    rest = payload + TAIL
    while rest:
        total += len(d.decompress(rest, 16 * MiB))
        rest = d.unconsumed_tail
    assert total == 1 << 30
    return payload


@pytest.mark.parametrize("fragments", [1, 48, 1024])
def test_decompression_bomb_is_refused_in_bounded_memory(role: Role, gigabyte_of_zeros: bytes, fragments: int) -> None:
    limit = 16 * MiB
    payload = gigabyte_of_zeros
    assert len(payload) < 2 * MiB  # 1 GiB in about 1 MiB on the wire
    # 1 fragment: one frame inflating to 1 GiB; 48: over the limit within the
    # first fragment (~21 MiB each); 1024: 1 MiB each, the limit is crossed by
    # accumulation.
    step = -(-len(payload) // fragments)
    parts = [payload[i : i + step] for i in range(0, len(payload), step)]
    data = b"".join(
        peer_frame(role, BINARY if i == 0 else CONT, p, fin=i == len(parts) - 1, rsv=4 if i == 0 else 0)
        for i, p in enumerate(parts)
    )
    tracemalloc = pytest.importorskip("tracemalloc", reason="no tracemalloc (PyPy): the memory peak is not measurable")
    conn = Connection(role, deflate=Deflate(), max_message_size=limit)
    tracemalloc.start()
    try:
        events = []
        for i in range(0, len(data), 65536):  # socket-sized reads
            events += conn.receive_data(data[i : i + 65536])
            if conn.failure is not None:
                break
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert events == []
    assert_failed(conn, 1009)
    assert peak < 2 * limit, f"peak {peak / MiB:.1f} MiB for a {limit / MiB:.0f} MiB limit"


def _traced_peak(conn: Connection, data: bytes) -> tuple[list[Any], int]:
    tracemalloc = pytest.importorskip("tracemalloc", reason="no tracemalloc (PyPy): the memory peak is not measurable")
    tracemalloc.start()
    try:
        events = conn.receive_data(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return events, peak


@pytest.mark.parametrize("inflated", ["bomb", "under-the-limit"])
def test_single_frame_near_the_frame_limit_inflates_in_bounded_memory(role: Role, inflated: str) -> None:
    """A compressed frame as large as the reader allows (about the message
    limit): its payload is not copied to append the 4-byte tail, so a bomb is
    refused holding the frame and about ``limit`` bytes of output (it held
    3.2 MiB for a 1 MiB limit), and a message that fits holds the frame, its
    output and the joined message (it held 4 MiB)."""
    limit = MiB
    rng = random.Random(17)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    # Incompressible bytes fill the frame; a bomb adds 100 MiB of zeros,
    # which cost about 100 KB more on the wire.
    plain = rng.randbytes(limit - 4096) if inflated == "under-the-limit" else rng.randbytes(limit - 110_000)
    compressed = c.compress(plain)
    if inflated == "bomb":
        for _ in range(100):
            compressed += c.compress(bytes(MiB))
    compressed += c.flush(zlib.Z_SYNC_FLUSH)
    assert compressed.endswith(TAIL)
    compressed = compressed[:-4]
    assert 0.99 * limit < len(compressed) < limit + limit // 16
    conn = Connection(role, deflate=Deflate(), max_message_size=limit)
    events, peak = _traced_peak(conn, peer_frame(role, BINARY, compressed, rsv=4))
    if inflated == "bomb":
        assert events == []
        assert_failed(conn, 1009)
        assert peak < 2.3 * limit, f"peak {peak / MiB:.2f} MiB for a {limit / MiB:.0f} MiB limit"
    else:
        assert events == [BinaryMessage(plain)]
        assert peak < 3.3 * limit, f"peak {peak / MiB:.2f} MiB for a {limit / MiB:.0f} MiB limit"


def test_decompress_feeds_the_tail_of_a_large_frame_on_its_own() -> None:
    """Deflate.decompress, with and without a limit, on a frame of several
    64 KiB steps: the same output as with the tail appended."""
    rng = random.Random(3)
    plain = rng.randbytes(200_000) + bytes(300_000)
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    compressed = (c.compress(plain) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]
    assert len(compressed) > 3 * 65536
    for limit in (None, len(plain)):
        assert Deflate().decompress(compressed, True, limit) == plain
    with pytest.raises(MessageTooBig):
        Deflate().decompress(compressed, True, len(plain) - 1)


@pytest.mark.parametrize("as_bytes", [False, True], ids=["str", "bytes"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_compressed_invalid_utf8_in_a_middle_fragment_fails_at_once(role: Role, as_bytes: bool, stream: bool) -> None:
    payloads = PeerCompressor().fragments([b"valid \xce", b"\xba ok \xf4", b"\x90 bad", b"never seen"])
    conn = Connection(role, deflate=Deflate(), text_as_bytes=as_bytes, stream_messages=stream)
    events = conn.receive_data(peer_frame(role, TEXT, payloads[0], fin=False, rsv=4))
    events += conn.receive_data(peer_frame(role, CONT, payloads[1], fin=False))
    assert conn.data_to_send() == b"" and conn.failure is None
    if stream:
        assert [e.data for e in events] == (  # type: ignore[union-attr]
            [b"valid \xce", b"\xba ok \xf4"] if as_bytes else ["valid ", "κ ok "]
        )
    conn.receive_data(peer_frame(role, CONT, payloads[2], fin=False))
    assert_failed(conn, 1007)


def test_compressed_without_a_size_limit(role: Role) -> None:
    message = bytes(5 * MiB)
    conn = Connection(role, deflate=Deflate(), max_message_size=None)
    assert conn.receive_data(peer_frame(role, BINARY, PeerCompressor().message(message), rsv=4)) == [
        BinaryMessage(message)
    ]


def test_compressed_text_as_bytes(role: Role) -> None:
    conn = Connection(role, deflate=Deflate(), text_as_bytes=True)
    raw = "κόσμε".encode() * 100
    assert conn.receive_data(peer_frame(role, TEXT, PeerCompressor().message(raw), rsv=4)) == [TextMessage(raw)]
