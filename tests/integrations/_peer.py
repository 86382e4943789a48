"""Raw-socket peers and echo scripts for the integration tests.

A library under test runs an echo endpoint (server or client) on 127.0.0.1;
the other end is a hand-written peer that plays a fixed script in lockstep
(send one message, wait for its echo, send the next) and records every byte
the library sent after the opening handshake. Run once unpatched and once
patched, the two recordings must be identical, byte for byte: masks are fixed
(the libraries' random sources are replaced by :class:`FixedRandom`), and
lockstep leaves no room for timing to change the order of frames.

Frames are built with :mod:`tests.wire` (RFC 6455 by hand, not wsfast).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
import random
import socket
import threading
import time
from typing import Any, Callable, Optional

from ..wire import BINARY, CLOSE, CONT, PING, PONG, TEXT, encode

DEADLINE = 60.0  # seconds: a bound on every exchange
QUIET = 5.0  # seconds of silence after which a peer that should close is taken as hung
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

# ---------------------------------------------------------------- fixed randomness


class FixedRandom:
    """A deterministic stand-in for the sources libraries draw mask keys from."""

    def __init__(self, seed: int = 6455) -> None:
        self._rng = random.Random(seed)

    def urandom(self, n: int) -> bytes:
        return self._rng.randbytes(n)

    def getrandbits(self, k: int) -> int:
        return self._rng.getrandbits(k)

    def token_bytes(self, n: Optional[int] = None) -> bytes:
        return self._rng.randbytes(32 if n is None else n)


class Proxy:
    """A module with some attributes replaced (monkeypatched in where a
    library imported the module: ``os`` for ``os.urandom`` and so on)."""

    def __init__(self, module: Any, **replaced: Any) -> None:
        self._module = module
        self.__dict__.update(replaced)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)


def fixed_os() -> Proxy:
    """:mod:`os`, with ``urandom`` from a fresh :class:`FixedRandom`."""
    return Proxy(os, urandom=FixedRandom().urandom)


# ---------------------------------------------------------------- frames


@dataclasses.dataclass(frozen=True)
class Frame:
    opcode: int
    fin: bool
    rsv: int
    payload: bytes  # unmasked
    masked: bool


def split_frames(data: bytes) -> tuple[list[Frame], int]:
    """The complete frames at the start of ``data``, and the bytes they span."""
    frames = []
    pos = 0
    while len(data) - pos >= 2:
        b0, b1 = data[pos], data[pos + 1]
        n = b1 & 0x7F
        head = 2
        if n == 126:
            head = 4
        elif n == 127:
            head = 10
        if len(data) - pos < head:
            break
        if n >= 126:
            n = int.from_bytes(data[pos + 2 : pos + head], "big")
        masked = bool(b1 & 0x80)
        key = data[pos + head : pos + head + 4] if masked else b""
        start = pos + head + len(key)
        if len(data) < start + n:
            break
        payload = data[start : start + n]
        if masked:
            payload = bytes(b ^ key[i & 3] for i, b in enumerate(payload)) if n < 4096 else _xor(payload, key)
        frames.append(Frame(b0 & 0x0F, bool(b0 & 0x80), (b0 >> 4) & 7, payload, masked))
        pos = start + n
    return frames, pos


def _xor(data: bytes, key: bytes) -> bytes:
    stream = (key * (len(data) // 4 + 1))[: len(data)]
    return (int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")).to_bytes(len(data), "big")


def close_code(frames: list[Frame]) -> Optional[int]:
    """The code of the first close frame, ``None`` if there is none (or it has no code)."""
    for frame in frames:
        if frame.opcode == CLOSE:
            return int.from_bytes(frame.payload[:2], "big") if len(frame.payload) >= 2 else None
    return None


def messages(frames: list[Frame]) -> list[tuple[int, bytes]]:
    """The data messages in ``frames``, reassembled: ``(opcode, payload)``."""
    out = []
    current: Optional[tuple[int, bytearray]] = None
    for frame in frames:
        if frame.opcode in (TEXT, BINARY):
            current = (frame.opcode, bytearray(frame.payload))
        elif frame.opcode == CONT and current is not None:
            current[1].extend(frame.payload)
        else:
            continue
        if frame.fin and current is not None:
            out.append((current[0], bytes(current[1])))
            current = None
    return out


# ---------------------------------------------------------------- scripts

#: What a step waits for after sending its frames.
MESSAGE, PONG_, CLOSE_ = "message", "pong", "close"


@dataclasses.dataclass(frozen=True)
class Step:
    frames: tuple[bytes, ...]
    expect: str  # MESSAGE, PONG_ or CLOSE_ (a close always ends the exchange)


@dataclasses.dataclass(frozen=True)
class Script:
    name: str
    steps: tuple[Step, ...]
    sent: tuple[tuple[int, bytes], ...]  # the data messages sent, for the sanity check of echoes
    bad_utf8: bool  # the peer must fail the connection (1007, or drop it)


class _Keys:
    """Mask keys for the frames a script sends to a server: fixed, all different."""

    def __init__(self, masked: bool) -> None:
        self._rng = random.Random(7692) if masked else None

    def __call__(self) -> Optional[bytes]:
        return self._rng.randbytes(4) if self._rng is not None else None


def _script(name: str, masked: bool, bad_utf8: bool, build: Callable[[Callable[..., bytes]], list[Step]]) -> Script:
    keys = _Keys(masked)
    sent: list[tuple[int, bytes]] = []

    def frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
        return encode(opcode, payload, fin, 0, keys())

    steps = build(frame)
    for step in steps:
        sent.extend(messages(split_frames(b"".join(step.frames))[0]))
    return Script(name, tuple(steps), tuple(sent), bad_utf8)


TEXT_1M = ("wsfast κόσμε 日本語 🎉 " * 40000).encode()[: 1 << 20]
while True:  # cut on a code point boundary
    try:
        TEXT_1M.decode()
        break
    except UnicodeDecodeError:
        TEXT_1M = TEXT_1M[:-1]
BINARY_1M = random.Random(1).randbytes(1 << 20)


def _messages_steps(frame: Callable[..., bytes]) -> list[Step]:
    multi = "κόσμε 日本語 🎉".encode()
    cut = multi.index("本".encode()) + 1  # inside a code point
    return [
        Step((frame(TEXT, b"hello"),), MESSAGE),
        Step((frame(TEXT, b""),), MESSAGE),
        Step((frame(TEXT, multi),), MESSAGE),
        Step((frame(BINARY, bytes(range(125))),), MESSAGE),
        Step((frame(BINARY, bytes(range(256)) * 256),), MESSAGE),  # 64 KiB: a 64-bit length
        Step((frame(PING, b"ping?"),), PONG_),
        Step((frame(TEXT, multi[:3], False), frame(CONT, multi[3:cut], False), frame(CONT, multi[cut:])), MESSAGE),
        Step((frame(BINARY, b"ab", False), frame(PING, b"mid"), frame(CONT, b"cdefg")), MESSAGE),
        Step((frame(BINARY, BINARY_1M),), MESSAGE),
        Step((frame(TEXT, TEXT_1M),), MESSAGE),
        Step((frame(CLOSE, (1000).to_bytes(2, "big") + "bye ✓".encode()),), CLOSE_),
    ]


def _bad_steps(payload: bytes, fragmented: bool) -> Callable[[Callable[..., bytes]], list[Step]]:
    def build(frame: Callable[..., bytes]) -> list[Step]:
        steps = [Step((frame(TEXT, "κόσμε".encode()),), MESSAGE)]
        if fragmented:
            steps.append(Step((frame(TEXT, "κόσμε".encode(), False), frame(CONT, payload)), CLOSE_))
        else:
            steps.append(Step((frame(TEXT, payload),), CLOSE_))
        return steps

    return build


def _bad_reason(frame: Callable[..., bytes]) -> list[Step]:
    return [
        Step((frame(TEXT, b"ok"),), MESSAGE),
        Step((frame(CLOSE, (1000).to_bytes(2, "big") + b"\xce\xba\xff"),), CLOSE_),
    ]


def scripts(masked: bool) -> list[Script]:
    """The scripts, with frames masked (for a server under test) or not (for a client)."""
    surrogate = "κόσμε".encode() + b"\xed\xa0\x80" + b"edited"
    return [
        _script("messages", masked, False, _messages_steps),
        _script("bad-utf8", masked, True, _bad_steps(surrogate, False)),
        _script("bad-utf8-fragment", masked, True, _bad_steps(b"ok\xf8\x88\x80\x80\x80", True)),
        _script("bad-utf8-truncated", masked, True, _bad_steps("abc€".encode()[:-1], False)),
        _script("bad-utf8-1mib", masked, True, _bad_steps(TEXT_1M[:-8] + b"\xc0\xaf" + TEXT_1M[-6:], False)),
        _script("bad-close-reason", masked, True, _bad_reason),
    ]


SERVER_SCRIPTS = scripts(masked=True)
CLIENT_SCRIPTS = scripts(masked=False)


# ---------------------------------------------------------------- recordings


@dataclasses.dataclass
class Recording:
    """What a library sent, after the handshake, until its close frame or EOF."""

    raw: bytes
    frames: list[Frame]
    eof: bool  # the connection ended before the script did
    hung: bool = False  # the peer went quiet instead of closing (QUIET seconds)

    @property
    def close_code(self) -> Optional[int]:
        return close_code(self.frames)

    @property
    def outcome(self) -> tuple[Optional[int], bool, bool]:
        """How the exchange ended: the close code, EOF, a hung peer."""
        return self.close_code, self.eof, self.hung

    def check(self, script: Script) -> None:
        """Sanity: the exchange really happened as the script meant."""
        echoed = messages(self.frames)
        if not script.bad_utf8:
            assert echoed == list(script.sent), f"{script.name}: echoes differ from what was sent"
            assert self.close_code == 1000, f"{script.name}: close code {self.close_code}"
        else:  # the close code, if any, is the library's business (1007; 1002, 1011, even 1000 in old versions)
            assert echoed[:1] == list(script.sent[:1]), f"{script.name}: the valid first message was not echoed"
            assert len(echoed) == 1, f"{script.name}: invalid UTF-8 echoed back"


def assert_unchanged_by(
    accelerate: Callable[[], Any], run: Callable[[], Recording], script: Script, masked: bool = False
) -> None:
    """``run()`` puts the same bytes on the wire and ends the same way after
    ``accelerate()`` as before it (and its first run passes ``script``)."""
    plain = run()
    plain.check(script)
    if masked:
        assert all(frame.masked for frame in plain.frames)
    accelerate()
    fast = run()
    assert fast.raw == plain.raw
    assert fast.outcome == plain.outcome


class _Wire:
    """One side of a TCP connection, reading frames with a deadline."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.buffer = b""  # bytes not yet split into frames
        self.raw = bytearray()
        self.frames: list[Frame] = []
        self.eof = False
        self.hung = False

    def read_head(self) -> bytes:
        """The HTTP head (request or response); what follows stays buffered."""
        while b"\r\n\r\n" not in self.buffer:
            self._recv()
            if self.eof:
                raise AssertionError(f"connection closed during the handshake: {self.buffer!r}")
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        return head

    def _recv(self, quiet: Optional[float] = None) -> None:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError("the exchange took longer than the deadline")
        self.sock.settimeout(remaining if quiet is None else min(quiet, remaining))
        try:
            data = self.sock.recv(1 << 18)
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        except socket.timeout:
            if quiet is None or remaining <= quiet:
                raise AssertionError("the exchange took longer than the deadline") from None
            self.hung = True
            return
        if not data:
            self.eof = True
        self.buffer += data

    def wait_for(self, expect: str) -> bool:
        """Read until ``expect`` arrives; ``False`` when the peer closed (a close frame, or EOF)."""
        while True:
            frames, used = split_frames(self.buffer)
            if used:
                self.raw += self.buffer[:used]
                self.buffer = self.buffer[used:]
            for frame in frames:
                self.frames.append(frame)
                if frame.opcode == CLOSE:
                    return False
                if expect == PONG_ and frame.opcode == PONG:
                    return True
                if expect == MESSAGE and frame.fin and frame.opcode in (TEXT, BINARY, CONT):
                    return True
            if self.eof or self.hung:
                return False
            self._recv(QUIET if expect == CLOSE_ else None)

    def send(self, frames: tuple[bytes, ...]) -> None:
        try:
            for frame in frames:
                self.sock.settimeout(max(0.1, self.deadline - time.monotonic()))
                self.sock.sendall(frame)
        except OSError:  # the peer gave up on us: what it sent is recorded
            pass

    def play(self, script: Script) -> Recording:
        for step in script.steps:
            # Send from a thread while reading: a 1 MiB message and its echo
            # may fill both directions' buffers at once.
            sender = threading.Thread(target=self.send, args=(step.frames,), daemon=True)
            sender.start()
            try:
                going = self.wait_for(step.expect)
            finally:
                sender.join(max(0.1, self.deadline - time.monotonic()))
            if not going:
                break
        return Recording(bytes(self.raw), self.frames, self.eof, self.hung)


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def play_against_server(port: int, script: Script, path: str = "/", host: str = "127.0.0.1") -> Recording:
    """Connect to a WebSocket server, play ``script``, return what the server sent."""
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: http://{host}:{port}\r\n\r\n"
    )
    with socket.create_connection((host, port), timeout=DEADLINE) as sock:
        wire = _Wire(sock, time.monotonic() + DEADLINE)
        sock.sendall(request.encode())
        head = wire.read_head()
        assert head.split(b"\r\n", 1)[0].split(b" ")[1] == b"101", head
        assert accept_key(key).encode() in head, head
        return wire.play(script)


class ScriptedServer:
    """A one-connection WebSocket server on 127.0.0.1 that plays ``script``
    against the client under test and records what the client sent.

    ``settle``: seconds to wait between the 101 response and the script, for
    a client that mishandles frames arriving with the response.
    """

    def __init__(self, script: Script, settle: float = 0.0) -> None:
        self.script = script
        self.settle = settle
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}/"
        self.recording: Optional[Recording] = None
        self.error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + DEADLINE
        try:
            self.listener.settimeout(DEADLINE)
            sock, _ = self.listener.accept()
            with sock:
                wire = _Wire(sock, deadline)
                head = wire.read_head().decode("latin-1")
                headers = {}
                for line in head.split("\r\n")[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                response = (
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Accept: {accept_key(headers['sec-websocket-key'])}\r\n\r\n"
                )
                sock.sendall(response.encode())
                time.sleep(self.settle)
                self.recording = wire.play(self.script)
        except BaseException as exc:  # reported by result()
            self.error = exc
        finally:
            self.listener.close()

    def result(self) -> Recording:
        """What the client sent (waits for the script to end)."""
        self._thread.join(DEADLINE + 5)
        if self.error is not None:
            raise self.error
        assert self.recording is not None, "the scripted server did not finish"
        return self.recording


# ---------------------------------------------------------------- an event loop in a thread


class BackgroundLoop:
    """An asyncio event loop running in a daemon thread, for servers under test."""

    def __init__(self) -> None:
        import asyncio

        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> BackgroundLoop:
        self._thread.start()
        return self

    def run(self, coro: Any, timeout: float = DEADLINE) -> Any:
        """Run ``coro`` on the loop and wait for its result."""
        import asyncio

        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, function: Callable[[], Any], timeout: float = DEADLINE) -> Any:
        """Call ``function`` in the loop's thread (asyncio objects are not thread-safe)."""

        async def call() -> Any:
            return function()

        return self.run(call(), timeout)

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self.loop.close()
