"""Releasing permessage-deflate's zlib state between messages (issue 15):
:meth:`Deflate.release`, :meth:`Deflate.release_if_idle` and
:meth:`Connection.release_idle_memory`.

With context takeover, a released direction keeps the last window of its
data and re-creates its zlib object with it as the preset dictionary. The
peers here are independent: :mod:`zlib` used directly, and the sans-I/O
cores of websockets and wsproto (their own permessage-deflate code), each
keeping its context across messages while wsfast releases between every
message, in both directions and both roles. Messages repeat a long random
string, so that a message can only compress well by referring to the
previous one, across the release.
"""

from __future__ import annotations

import random
import zlib
from typing import Any

import pytest

from wsfast.benchmark.corpus import messages as corpus_messages
from wsfast.events import BinaryMessage, TextMessage
from wsfast.extensions import Deflate, PerMessageDeflate
from wsfast.extensions.permessage_deflate import MessageTooBig
from wsfast.protocol import ClientConnection, Connection, Role, ServerConnection, State

from ..wire import decode

TAIL = b"\x00\x00\xff\xff"

# A long string that does not compress on its own: a message that repeats it
# compresses only by referring back to an earlier message.
NOISE = random.Random(15).randbytes(1500).hex()  # 3,000 characters of hex


def released(deflate: Deflate) -> bool:
    return deflate._compressor is None and deflate._decompressor is None


def stream(count: int = 12) -> list[bytes]:
    rng = random.Random(7)
    out = []
    for i in range(count):
        # The same noise each time (after the first, about 30 B of back
        # references), a small varying part, and now and then a message of
        # fresh noise that pushes the earlier ones out of a small window.
        fresh = rng.randbytes(rng.choice((10, 300, 3000))).hex() if i % 4 == 3 else ""
        out.append(f'{{"n":{i},"noise":"{NOISE}","fresh":"{fresh}"}}'.encode())
    return out


# ---------------------------------------------------------------- Deflate and zlib


@pytest.mark.parametrize("bits", [9, 10, 12, 13, 15])
def test_release_between_every_message_against_zlib(bits: int) -> None:
    """wsfast compresses and inflates, releasing after every message; zlib
    keeps one compressor and one inflater for the whole stream."""
    ours = Deflate(compress_bits=bits, decompress_bits=bits, mem_level=5)
    peer_c = zlib.compressobj(6, zlib.DEFLATED, -bits)
    peer_d = zlib.decompressobj(-bits)
    for message in stream():
        out = ours.compress(message)
        assert peer_d.decompress(out + TAIL) == message
        incoming = peer_c.compress(message) + peer_c.flush(zlib.Z_SYNC_FLUSH)
        assert ours.decompress(incoming[:-4], True, 1 << 20) == message
        assert ours.release()
        assert released(ours)


def test_back_references_span_the_release() -> None:
    """The second message repeats the first: after a release, it still
    compresses to a few bytes, and the peer's second message (all back
    references into the first) still inflates."""
    ours = Deflate(compress_bits=15, decompress_bits=15)
    message = f'{{"noise":"{NOISE}"}}'.encode()
    first = ours.compress(message)
    assert ours.release()
    second = ours.compress(message)
    kept = Deflate(compress_bits=15, decompress_bits=15)
    assert kept.compress(message) == first
    assert len(first) > 1000 and len(second) < 60
    assert abs(len(second) - len(kept.compress(message))) <= 4  # as if never released
    d = zlib.decompressobj(-15)
    assert d.decompress(first + TAIL) == message and d.decompress(second + TAIL) == message

    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    payloads = [(c.compress(message) + c.flush(zlib.Z_SYNC_FLUSH))[:-4] for _ in range(2)]
    assert len(payloads[1]) < 60  # the peer refers to its first message
    assert ours.decompress(payloads[0], True, None) == message
    assert ours.release()
    assert ours.decompress(payloads[1], True, None) == message


@pytest.mark.parametrize("bits", [9, 12, 15])
def test_kept_history_is_one_window(bits: int) -> None:
    ours = Deflate(compress_bits=bits, decompress_bits=bits)
    window = 1 << bits
    assert ours.compress(b"x" * 100)
    assert ours.release()
    assert len(ours._chistory or b"") == 100
    for message in stream(30):
        ours.compress(message)
        ours.release()
        assert len(ours._chistory or b"") <= window
    assert bytes(ours._chistory or b"") == b"".join(stream(30))[-window:]


def test_no_context_takeover_keeps_nothing() -> None:
    ours = Deflate(compress_bits=12, decompress_bits=12, compress_reset=True, decompress_reset=True)
    assert ours._chistory is None and ours._dhistory is None
    message = f'{{"noise":"{NOISE}"}}'.encode()
    for _ in range(3):
        out = ours.compress(message)
        assert zlib.decompressobj(-12).decompress(out + TAIL) == message  # on its own
        c = zlib.compressobj(6, zlib.DEFLATED, -12)
        assert ours.decompress((c.compress(message) + c.flush(zlib.Z_SYNC_FLUSH))[:-4], True, None) == message
        assert ours.release()  # the compressor (the inflater is dropped after every message)
        assert released(ours) and ours._chistory is None and ours._dhistory is None


def test_a_fragmented_message_keeps_its_zlib_objects() -> None:
    ours = Deflate(compress_bits=12, decompress_bits=12)
    message = f'{{"noise":"{NOISE}"}}'.encode()
    d = zlib.decompressobj(-12)
    assert d.decompress(ours.compress(message) + TAIL) == message
    part = ours.compress(message[:1000], final=False)
    assert not ours.release()  # the compressor is inside a message; no inflater yet
    assert ours._compressor is not None
    part += ours.compress(message[1000:], final=True)
    assert d.decompress(part + TAIL) == message

    c = zlib.compressobj(6, zlib.DEFLATED, -12)
    whole = c.compress(message) + c.flush(zlib.Z_SYNC_FLUSH)
    head = ours.decompress(whole[:700], False, None)
    assert ours.release()  # the compressor goes; the inflater is inside a message and stays
    assert ours._compressor is None and ours._decompressor is not None
    assert head + ours.decompress(whole[700:-4], True, None) == message
    assert ours.release() and released(ours)
    again = (c.compress(message) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]
    assert len(again) < 60 and ours.decompress(again, True, None) == message


def test_release_if_idle_is_a_second_chance() -> None:
    ours = Deflate(compress_bits=12, decompress_bits=12)
    assert not ours.release_if_idle()  # nothing allocated
    ours.compress(b"hello" * 100)
    assert not ours.release_if_idle()  # used since the last call: only cleared
    assert ours._compressor is not None
    assert ours.release_if_idle()  # idle for a whole period: released
    assert released(ours)
    assert not ours.release_if_idle()
    ours.compress(b"hello" * 100)
    assert not ours.release_if_idle()
    ours.compress(b"hello" * 100)  # used again within the period
    assert not ours.release_if_idle()
    assert ours.release_if_idle()


def test_a_bomb_after_a_release_is_still_refused() -> None:
    ours = Deflate(compress_bits=15, decompress_bits=15)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    assert ours.decompress((c.compress(b"a" * 5000) + c.flush(zlib.Z_SYNC_FLUSH))[:-4], True, 1 << 20)
    assert ours.release()
    bomb = (c.compress(bytes(8 << 20)) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]
    with pytest.raises(MessageTooBig):
        ours.decompress(bomb, True, 1 << 20)


def test_compressed_sizes_with_and_without_release_on_the_corpus() -> None:
    """The differential: the bench's corpus (chat and market data) compressed
    with a release after every message is within 1% of the same stream
    without release, at every window."""
    corpus = [m for m in corpus_messages(600) if len(m) >= 128]
    for bits in (11, 12, 15):
        kept, freed = Deflate(bits, bits, mem_level=5), Deflate(bits, bits, mem_level=5)
        d = zlib.decompressobj(-bits)
        size_kept = size_freed = 0
        for message in corpus:
            size_kept += len(kept.compress(message))
            out = freed.compress(message)
            size_freed += len(out)
            assert d.decompress(out + TAIL) == message
            freed.release()
        assert abs(size_freed - size_kept) <= size_kept / 100, (bits, size_kept, size_freed)
        assert size_kept * 3 < sum(map(len, corpus))  # context takeover at work


# ---------------------------------------------------------------- Connection


def pair(config: PerMessageDeflate) -> tuple[ClientConnection, ServerConnection]:
    client = ClientConnection("example.com", deflate=config)
    server = ServerConnection(deflate=config)
    server.receive_data(client.data_to_send())
    client.receive_data(server.accept())
    assert server.receive_data(b"") == []
    assert client.state is server.state is State.OPEN
    return client, server


def test_release_idle_memory_without_deflate() -> None:
    client, server = pair(PerMessageDeflate())
    plain = ServerConnection(deflate=None)
    assert not plain.release_idle_memory()
    conn = Connection(Role.SERVER)
    assert conn.deflate is None and not conn.release_idle_memory()
    assert not client.release_idle_memory() and not server.release_idle_memory()


@pytest.mark.parametrize("takeover", [True, False])
def test_release_idle_memory_between_messages(takeover: bool) -> None:
    config = PerMessageDeflate(
        server_no_context_takeover=not takeover, client_no_context_takeover=not takeover, compress_threshold=0
    )
    client, server = pair(config)
    for i, message in enumerate(stream(8)):
        text = message.decode()
        assert server.receive_data(client.send_text(text)) == [TextMessage(text)]
        assert client.receive_data(server.send_binary(message)) == [BinaryMessage(message)]
        if i % 2:
            # Used since the previous sweep: the first call only notes it.
            for conn in (client, server):
                assert not conn.release_idle_memory()
                assert conn.release_idle_memory()
                assert conn.deflate is not None and released(conn.deflate)
        assert client.failure is None and server.failure is None


def test_the_sweep_spares_a_connection_in_use() -> None:
    client, server = pair(PerMessageDeflate(compress_threshold=0))
    for message in stream(6):
        assert not server.release_idle_memory()  # each message in between clears it again
        server.receive_data(client.send_binary(message))
        client.receive_data(server.send_binary(message))
    assert server.deflate is not None and server.deflate._compressor is not None


# ---------------------------------------------------------------- real peers (sans-I/O)

interop = pytest.importorskip("tests.test_interop_sansio")


@pytest.mark.parametrize("peer_takeover", [True, False], ids=["peer-takeover", "peer-no-takeover"])
@pytest.mark.parametrize("wsfast_role", ["client", "server"])
@pytest.mark.parametrize("lib", interop.LIBS)
def test_release_between_every_message_against_a_real_peer(lib: str, wsfast_role: str, peer_takeover: bool) -> None:
    """websockets' and wsproto's permessage-deflate keep their context for
    the whole connection; wsfast frees its zlib state after every message,
    both ways, and every message arrives intact. With context takeover the
    repeated noise must come back as a few bytes on the wire each way: the
    back references cross the release."""
    params: dict[str, Any] = {}
    if not peer_takeover:  # the same names in both libraries
        params = {"client_no_context_takeover": True, "server_no_context_takeover": True}
    side = "server" if wsfast_role == "client" else "client"
    conn, peer = interop.connect(
        lib,
        wsfast_role,
        deflate=PerMessageDeflate(compress_threshold=0),
        peer_deflate=interop.peer_deflate(lib, side, **params),
    )
    deflate = conn.deflate
    assert deflate is not None
    assert deflate.compress_reset is deflate.decompress_reset is (not peer_takeover)
    sizes_out, sizes_in = [], []
    for message in stream():
        text = message.decode()
        frame = conn.send_text(text)
        sizes_out.append(len(decode(frame, conn.role is Role.CLIENT)[0][3]))
        assert peer.feed(frame) == [("text", text)]
        assert conn.release_idle_memory() is False and conn.release_idle_memory() is True
        peer.send_binary(message)
        data = peer.out()
        assert data[0] & 0x40, "the peer did not compress"
        sizes_in.append(len(decode(data, conn.role is Role.SERVER)[0][3]))
        assert interop.normalize(conn.receive_data(data)) == [("binary", message)]
        assert conn.release_idle_memory() is False
        # (without takeover, the inflater goes after every message anyway)
        assert conn.release_idle_memory() is peer_takeover
        assert released(deflate) and conn.failure is None
    noise = len(NOISE)
    for sizes in (sizes_out, sizes_in):
        # the messages with only the noise again (every one but 0, 3, 7, 11)
        repeated = [size for i, size in enumerate(sizes) if i and i % 4 != 3]
        if peer_takeover:
            assert max(repeated) < noise / 20, sizes
        else:
            assert min(repeated) > noise / 3, sizes  # each on its own: the noise costs again


# ---------------------------------------------------------------- giving memory back


def test_trim_freed_memory_counts_what_was_released() -> None:
    from wsfast.extensions.permessage_deflate import _malloc_trim, trim_freed_memory

    trim_freed_memory(0)  # start from zero
    assert not trim_freed_memory(1)  # nothing released since
    ours = Deflate(compress_bits=12, decompress_bits=12, mem_level=5)
    ours.compress(b"hello" * 100)
    ours.decompress(zlib.compressobj(6, zlib.DEFLATED, -12).flush(zlib.Z_SYNC_FLUSH)[:-4], True, None)
    assert ours.release()
    assert not trim_freed_memory(1 << 20)  # about 50 KB: under the threshold, kept for later
    assert trim_freed_memory(40_000) is (_malloc_trim() is not None)  # glibc only
    assert not trim_freed_memory(1)  # counted from the trim on


def test_release_idle_memory_trims_after_a_release(monkeypatch: pytest.MonkeyPatch) -> None:
    import wsfast.protocol

    calls: list[int] = []

    def trim() -> bool:
        calls.append(1)
        return False

    monkeypatch.setattr(wsfast.protocol, "trim_freed_memory", trim)
    client, server = pair(PerMessageDeflate(compress_threshold=0))
    server.receive_data(client.send_text(NOISE))
    assert not server.release_idle_memory()
    assert server.release_idle_memory()
    assert calls == [1]  # trimmed (or not, by its threshold) after freeing
    assert not server.release_idle_memory()
    assert calls == [1]  # nothing freed: no trim
    server.receive_data(client.send_text(NOISE))
    server.release_idle_memory()
    assert server.release_idle_memory(trim=False)
    assert calls == [1]
