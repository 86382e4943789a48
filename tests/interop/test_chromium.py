"""Interop with headless Chromium, a browser nobody here wrote, over ``ws://`` and ``wss://``.

The server is the demo app of ``wsfast serve`` (the chat page at ``/``, the echo at ``/echo``),
with the echo handler wrapped to record what the server received. Chromium is driven over the
DevTools protocol with wsfast's own client. In the page: the chat page's websocket connects and
chats through the page's form; then JavaScript opens a WebSocket to ``/echo`` and exchanges
non-ASCII text, binary, 1 MiB of random binary and 1 MiB of compressible text, and closes with
a code and a reason. Both sides check every byte and that permessage-deflate was negotiated.

For ``wss://`` a trustme CA made at test time is a trusted root in an NSS database under
Chromium's private ``HOME`` (no certificate error is ignored), and a certificate from another CA
must be refused. Chromium is Debian's ``chromium`` (``libnss3-tools`` gives ``certutil``);
without them the tests skip, or fail when ``CI`` is set.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import ssl
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Coroutine, Iterator, Optional, TypeVar

import pytest

import wsfast
from wsfast.cli import DemoApp

from ..asyncio.helpers import eventually, run
from .chromium import WAIT_FOR, Browser, DevTools, Page, find_chromium, make_root, require, trust_ca

trustme = pytest.importorskip("trustme", reason="trustme is needed for the wss:// test")

APT = "apt-get install chromium libnss3-tools"

T = TypeVar("T")

TEXT = "héllo wörld ✓ 日本語 🎉 \u0000 end"
BINARY = bytes(range(256))
BIG = 1 << 20  # 1 MiB: the demo server's max_message_size (wsfast's default), not above it
BIG_TEXT_UNIT = "wsfast ✓ déjà vu 🎉 "
BIG_TEXT = BIG_TEXT_UNIT * (BIG // len(BIG_TEXT_UNIT.encode()))
CLOSE_CODE, CLOSE_REASON = 4321, "fin ✓"
CHAT_LINE = "bonjour ✓ 🎉"

# Runs in the page: an exchange with /echo on the page's own origin. Returns what it saw.
ECHO_JS = """(async (p) => {
let step = "open";
let timeout;
const timer = new Promise((_, reject) => {
  timeout = setTimeout(() => reject(new Error("timed out at step " + step)), 15000);
});
const work = (async () => {
  const hex = (buffer) => Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, "0")).join("");
  const sha256 = async (buffer) => hex(await crypto.subtle.digest("SHA-256", buffer));
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const ws = new WebSocket(scheme + location.host + "/echo");
  ws.binaryType = "arraybuffer";
  const inbox = [], waiting = [];
  ws.onmessage = (e) => (waiting.length ? waiting.shift()(e.data) : inbox.push(e.data));
  const next = () => (inbox.length ? Promise.resolve(inbox.shift()) : new Promise((r) => waiting.push(r)));
  const closed = new Promise((r) => { ws.onclose = (e) => r({ code: e.code, reason: e.reason, clean: e.wasClean }); });
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = () => reject(new Error("no connection"));
  });
  const out = { url: ws.url, extensions: ws.extensions };

  step = "text";
  ws.send(p.text);
  const text = await next();
  out.text = text;
  out.textSame = text === p.text;

  step = "binary";
  ws.send(new Uint8Array(p.binary));
  const binary = await next();
  out.binaryType = binary instanceof ArrayBuffer ? "ArrayBuffer" : typeof binary;
  out.binaryHex = hex(binary);

  step = "1 MiB binary";
  const big = new Uint8Array(p.big);
  for (let i = 0; i < big.length; i += 65536) crypto.getRandomValues(big.subarray(i, i + 65536));
  ws.send(big);
  const bigEcho = new Uint8Array(await next());
  out.bigLength = bigEcho.length;
  out.bigSame = bigEcho.length === big.length && bigEcho.every((b, i) => b === big[i]);
  out.bigSha256 = await sha256(big);
  out.bigEchoSha256 = await sha256(bigEcho);

  step = "1 MiB text";
  const bigText = p.unit.repeat(p.repeat);
  ws.send(bigText);
  const bigTextEcho = await next();
  out.bigTextSame = bigTextEcho === bigText;

  step = "close";
  ws.close(p.code, p.reason);
  out.close = await closed;
  out.left = inbox.length;
  return out;
})();
try {
  return await Promise.race([work, timer]);
} finally {
  clearTimeout(timeout);
}
})"""

# Runs in the chat page: wait until its websocket is open and the room announced us.
CHAT_OPEN_JS = (
    "(async (name) => {\n"
    + WAIT_FOR
    + """await waitFor(() => document.getElementById("status").textContent === "connected", 10000);
await waitFor(() => document.getElementById("log").textContent.includes("* " + name + " joined"), 10000);
return { status: document.getElementById("status").textContent, scheme: location.protocol };
})"""
)

# Runs in the chat page: say something through the page's own form; wait for the room's echo of it.
CHAT_SAY_JS = (
    "(async (name, line) => {\n"
    + WAIT_FOR
    + """document.getElementById("text").value = line;
document.getElementById("form").requestSubmit();
const lines = () => Array.from(document.querySelectorAll("#log p"), (p) => p.textContent);
await waitFor(() => lines().includes(name + ": " + line), 10000);
return lines();
})"""
)


# Runs in the chat page: wait until it has reconnected and shows ``last``.
CHAT_RESUMED_JS = (
    "(async (last) => {\n"
    + WAIT_FOR
    + """const lines = () => Array.from(document.querySelectorAll("#log p"), (p) => p.textContent);
await waitFor(() => lines().includes(last) && document.getElementById("status").textContent === "connected", 10000);
return lines();
})"""
)


@dataclass
class Seen:
    """What the server's ``/echo`` handler received, and how its connections were set up."""

    messages: list[Any] = field(default_factory=list)
    closes: list[tuple[Optional[int], Optional[str]]] = field(default_factory=list)
    requests: list[wsfast.http11.Request] = field(default_factory=list)
    extensions: list[str] = field(default_factory=list)


class RecordingWebSocket:
    """The server's websocket as the demo's echo handler sees it, recording every message received."""

    def __init__(self, ws: wsfast.WebSocket, seen: Seen) -> None:
        self._ws = ws
        self._seen = seen

    async def __aiter__(self) -> AsyncIterator[Any]:
        async for message in self._ws:
            self._seen.messages.append(message)
            yield message

    async def send(self, message: Any) -> None:
        await self._ws.send(message)


@contextlib.asynccontextmanager
async def demo_server(context: Optional[ssl.SSLContext] = None) -> AsyncIterator[tuple[wsfast.Server, DemoApp, Seen]]:
    """The ``wsfast serve`` app on 127.0.0.1 (its routes and chat page), recording ``/echo``."""
    app = DemoApp()
    seen = Seen()

    async def echo(ws: wsfast.WebSocket) -> None:
        assert ws.request is not None and ws.response is not None
        seen.requests.append(ws.request)
        seen.extensions.append(ws.response.headers.get("Sec-WebSocket-Extensions") or "")
        try:
            await app.echo(RecordingWebSocket(ws, seen))  # type: ignore[arg-type]
        finally:
            await ws.wait_closed()
            seen.closes.append((ws.close_code, ws.close_reason))

    routes = {**app.routes, "/echo": echo}
    async with app.lifespan():
        async with wsfast.serve(routes, "127.0.0.1", 0, ssl=context, process_request=app.process_request) as server:
            yield server, app, seen


@pytest.fixture(scope="module")
def browser(ca: Any) -> Iterator[Browser]:
    """One headless Chromium for the module; it trusts ``ca`` through an NSS database in its ``HOME``
    when ``certutil`` is there (the ``wss://`` tests require it)."""
    binary = require(find_chromium(), "chromium", APT)
    certutil = shutil.which("certutil")
    root = make_root()
    home = root / "home"
    try:
        if certutil is not None:
            ca_pem = root / "ca.pem"
            ca.cert_pem.write_to_path(str(ca_pem))
            trust_ca(certutil, home, ca_pem)
        chromium = Browser(binary, home, root)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    try:
        yield chromium
    finally:
        chromium.stop()


def server_context(ca: Any) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


def call_js(function: str, *args: Any) -> str:
    """``function`` called with ``args`` (JSON literals, ASCII with escapes)."""
    return f"({function})({', '.join(json.dumps(arg) for arg in args)})"


async def check_chat_page(page: Page, app: DemoApp, origin: str) -> None:
    """The chat page loads, its websocket joins the room (deflate negotiated) and chats."""
    assert await page.navigate(origin + "/") is None
    await eventually(lambda: len(app.room) == 1, timeout=10)
    (member,) = app.room
    name = f"guest-{member.id}"
    opened = await page.evaluate(call_js(CHAT_OPEN_JS, name), timeout=15)
    assert opened == {"status": "connected", "scheme": origin.split("//")[0]}
    assert member.request is not None and member.response is not None
    assert member.request.headers.get("Origin") == origin
    assert "Chrome/" in (member.request.headers.get("User-Agent") or "")
    assert (member.response.headers.get("Sec-WebSocket-Extensions") or "").startswith("permessage-deflate")
    lines = await page.evaluate(call_js(CHAT_SAY_JS, name, CHAT_LINE), timeout=15)
    assert lines == [f"* {name} joined", f"{name}: {CHAT_LINE}"]
    # The connection is lost; what is said meanwhile reaches the page once it
    # has reconnected and resumed after the last id it saw, once and in order.
    member.transport.abort()
    await eventually(lambda: not app.room, timeout=10)
    away = [f"said while {name} was away {i}" for i in range(3)]
    for line in away:
        await app.hub.publish("chat", line)
    lines = await page.evaluate(call_js(CHAT_RESUMED_JS, f"* {name} is back"), timeout=15)
    assert lines == [f"* {name} joined", f"{name}: {CHAT_LINE}", f"* {name} left", *away, f"* {name} is back"]


async def check_echo(page: Page, seen: Seen, origin: str) -> None:
    """Text, binary, 1 MiB of each and a close, between the page and the app's echo."""
    params = {
        "text": TEXT,
        "binary": list(BINARY),
        "big": BIG,
        "unit": BIG_TEXT_UNIT,
        "repeat": len(BIG_TEXT) // len(BIG_TEXT_UNIT),
        "code": CLOSE_CODE,
        "reason": CLOSE_REASON,
    }
    out = await page.evaluate(call_js(ECHO_JS, params), timeout=25)
    ws_origin = origin.replace("http", "ws", 1)
    assert out["url"] == ws_origin + "/echo"
    # Chromium always offers permessage-deflate; wsfast accepted it, and both sides agree.
    assert out["extensions"].startswith("permessage-deflate"), out["extensions"]
    assert seen.extensions == [out["extensions"]]
    (request,) = seen.requests
    assert "permessage-deflate" in (request.headers.get("Sec-WebSocket-Extensions") or "")
    assert request.headers.get("Origin") == origin
    # What the browser got back...
    assert out["text"] == TEXT and out["textSame"] is True
    assert out["binaryType"] == "ArrayBuffer" and bytes.fromhex(out["binaryHex"]) == BINARY
    assert out["bigLength"] == BIG and out["bigSame"] is True
    assert out["bigEchoSha256"] == out["bigSha256"]
    assert out["bigTextSame"] is True
    # ...and what the server received, byte for byte.
    assert len(seen.messages) == 4, [type(m) for m in seen.messages]
    text, binary, big, big_text = seen.messages
    assert text == TEXT
    assert binary == BINARY
    assert isinstance(big, bytes) and len(big) == BIG
    assert hashlib.sha256(big).hexdigest() == out["bigSha256"]
    assert big_text == BIG_TEXT and len(big_text.encode()) <= BIG
    # The close: the server saw the browser's code and reason; the browser got the code back, cleanly.
    assert seen.closes == [(CLOSE_CODE, CLOSE_REASON)]
    assert out["close"]["code"] == CLOSE_CODE and out["close"]["clean"] is True
    assert out["left"] == 0


async def exchange(browser: Browser, context: Optional[ssl.SSLContext]) -> None:
    scheme = "https" if context else "http"
    async with demo_server(context) as (server, app, seen):
        origin = f"{scheme}://127.0.0.1:{server.port}"
        devtools = await DevTools.connect(browser.devtools_url)
        try:
            # wsfast's client and Chromium's DevTools server negotiated permessage-deflate too.
            assert devtools.ws.response is not None
            assert (devtools.ws.response.headers.get("Sec-WebSocket-Extensions") or "").startswith("permessage-deflate")
            page = await devtools.new_page()
            await check_chat_page(page, app, origin)
            await check_echo(page, seen, origin)
            await page.close()
            await eventually(lambda: not app.room, timeout=10)  # closing the tab closed the chat socket
        finally:
            await devtools.close()


def run_with_log(browser: Browser, coro: Coroutine[Any, Any, T], timeout: float) -> T:
    """``run(coro)``; on failure, print Chromium's last log lines (pytest shows them)."""
    try:
        return run(coro, timeout)
    except Exception:
        print(browser.log())
        raise


def test_chromium_ws(browser: Browser) -> None:
    run_with_log(browser, exchange(browser, None), timeout=60)


def test_chromium_wss(browser: Browser, ca: Any) -> None:
    require(shutil.which("certutil"), "certutil", APT)
    run_with_log(browser, exchange(browser, server_context(ca)), timeout=60)


def test_chromium_refuses_an_untrusted_certificate(browser: Browser) -> None:
    """The CA trust is genuine: a certificate from another CA is refused (no errors are ignored)."""

    async def main() -> Optional[str]:
        async with demo_server(server_context(trustme.CA())) as (server, app, seen):
            devtools = await DevTools.connect(browser.devtools_url)
            try:
                page = await devtools.new_page()
                error = await page.navigate(f"https://127.0.0.1:{server.port}/")
                await page.close()
                assert not app.room and not seen.requests
                return error
            finally:
                await devtools.close()

    assert run_with_log(browser, main(), timeout=30) == "net::ERR_CERT_AUTHORITY_INVALID"
