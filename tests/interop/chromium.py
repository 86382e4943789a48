"""Headless Chromium as a test peer, driven over the DevTools protocol by wsfast's own client.

* :func:`find_chromium` and :func:`require` find the tools (skip, or fail when ``CI`` is set).
* :func:`trust_ca` makes a CA a trusted root in an NSS database under a private ``HOME``,
  where Chromium on Linux looks for locally trusted roots.
* :class:`Browser` runs one headless Chromium process (killed by its PID, its process group
  cleaned up, its temporary directories removed).
* :class:`DevTools` speaks the Chrome DevTools Protocol over a ``wsfast.connect`` websocket;
  :class:`Page` is one tab of it, attached as a flat session.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import pytest

import wsfast

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
)

# JavaScript: ``waitFor(check, ms)`` resolves with ``check()``'s first truthy value, polling
# every 20 ms; after ``ms`` it rejects, saying what ``check`` was.
WAIT_FOR = """const waitFor = (check, ms) => new Promise((resolve, reject) => {
  const deadline = Date.now() + ms;
  (function poll() {
    let value;
    try { value = check(); } catch (e) { reject(e); return; }
    if (value) resolve(value);
    else if (Date.now() > deadline) reject(new Error("timed out after " + ms + " ms waiting for " + check));
    else setTimeout(poll, 20);
  })();
});
"""


def find_chromium() -> Optional[str]:
    """The path of a Chromium or Chrome binary, or ``None``."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path is not None:
            return path
    return None


def require(path: Optional[str], what: str, install: str) -> str:
    """Return ``path``; if it is ``None``, skip, or fail when the ``CI`` variable is set
    (CI installs the tools, so a missing one is a broken install, not a reason to skip)."""
    if path is not None:
        return path
    message = f"{what} not found (install: {install})"
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but {message}", pytrace=False)
    pytest.skip(message)


def trust_ca(certutil: str, home: Path, ca_pem: Path) -> None:
    """Create ``home/.pki/nssdb`` and add the CA in ``ca_pem`` as trusted for TLS servers."""
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    db = f"sql:{nssdb}"
    for args in (["-N", "--empty-password"], ["-A", "-t", "C,,", "-n", "wsfast test CA", "-i", str(ca_pem)]):
        subprocess.run([certutil, "-d", db, *args], check=True, capture_output=True, timeout=30)


class Browser:
    """A headless Chromium process with its own profile and ``HOME`` (temporary directories).

    ``devtools_url`` is the browser-level DevTools websocket, read from the
    ``DevToolsActivePort`` file Chromium writes when ``--remote-debugging-port=0``.
    """

    def __init__(self, binary: str, home: Path, root: Path, timeout: float = 30.0) -> None:
        self.root = root
        profile = root / "profile"
        self.log_path = root / "chromium.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
                env={**os.environ, "HOME": str(home)},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: renderers and zygotes go with it
            )
        try:
            self.devtools_url = self._wait_for_devtools(profile / "DevToolsActivePort", timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_for_devtools(self, path: Path, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.process.returncode}:\n{self.log()}")
            lines = path.read_text().split() if path.exists() else []
            if len(lines) == 2:
                return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
            time.sleep(0.05)
        raise RuntimeError(f"chromium wrote no {path.name} within {timeout} s:\n{self.log()}")

    def log(self) -> str:
        """The last lines Chromium wrote to stdout and stderr."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-40:])
        except OSError:
            return ""

    def stop(self) -> None:
        """Terminate Chromium (kill it after 5 s), then its process group; remove the temporary files."""
        process = self.process
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        try:
            os.killpg(process.pid, signal.SIGKILL)  # the group Popen created for this process
        except (ProcessLookupError, PermissionError):
            pass
        shutil.rmtree(self.root, ignore_errors=True)


def make_root() -> Path:
    """A fresh temporary directory for a :class:`Browser`."""
    return Path(tempfile.mkdtemp(prefix="wsfast-chromium-"))


class DevTools:
    """A Chrome DevTools Protocol client on a wsfast websocket (the browser-level endpoint)."""

    def __init__(self, ws: wsfast.WebSocket) -> None:
        self.ws = ws
        self._last_id = 0
        self._calls: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._expected: list[tuple[str, Optional[str], asyncio.Future[dict[str, Any]]]] = []
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def connect(cls, url: str, timeout: float = 10.0) -> DevTools:
        # DevTools results can be large: no message size limit on this trusted local peer.
        ws = await asyncio.wait_for(wsfast.connect(url, max_message_size=None), timeout)
        return cls(ws)

    async def _read(self) -> None:
        error: BaseException = ConnectionError("the DevTools websocket closed")
        try:
            async for message in self.ws:
                data = json.loads(message)
                if "id" in data:
                    call = self._calls.pop(data["id"], None)
                    if call is not None and not call.done():
                        call.set_result(data)
                    continue
                for expected in list(self._expected):
                    method, session, future = expected
                    if data.get("method") == method and data.get("sessionId") == session:
                        self._expected.remove(expected)
                        if not future.done():
                            future.set_result(data.get("params", {}))
        except Exception as exc:
            error = exc
        finally:
            for future in [*self._calls.values(), *(f for _, _, f in self._expected)]:
                if not future.done():
                    future.set_exception(error)

    async def call(
        self, method: str, params: Optional[dict[str, Any]] = None, session: Optional[str] = None, timeout: float = 10.0
    ) -> dict[str, Any]:
        """Send a command, return its ``result``; a protocol error raises ``AssertionError``."""
        self._last_id += 1
        message: dict[str, Any] = {"id": self._last_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        future = self._calls[self._last_id] = asyncio.get_running_loop().create_future()
        await self.ws.send(json.dumps(message))
        reply = await asyncio.wait_for(future, timeout)
        if "error" in reply:
            raise AssertionError(f"DevTools {method} failed: {reply['error']}")
        return reply["result"]  # type: ignore[no-any-return]

    def expect(self, method: str, session: Optional[str] = None) -> asyncio.Future[dict[str, Any]]:
        """A future of the params of the next ``method`` event (register before causing it)."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._expected.append((method, session, future))
        return future

    async def new_page(self) -> Page:
        """Open a blank tab and attach to it (a flat session on this websocket)."""
        target = (await self.call("Target.createTarget", {"url": "about:blank"}))["targetId"]
        session = (await self.call("Target.attachToTarget", {"targetId": target, "flatten": True}))["sessionId"]
        page = Page(self, target, session)
        await page.call("Page.enable")
        return page

    async def close(self, timeout: float = 5.0) -> None:
        await asyncio.wait_for(self.ws.close(), timeout)
        await asyncio.wait_for(self._reader, timeout)


class Page:
    """One tab: navigate and evaluate JavaScript in it."""

    def __init__(self, devtools: DevTools, target: str, session: str) -> None:
        self.devtools = devtools
        self.target = target
        self.session = session

    async def call(self, method: str, params: Optional[dict[str, Any]] = None, timeout: float = 10.0) -> dict[str, Any]:
        return await self.devtools.call(method, params, self.session, timeout)

    async def navigate(self, url: str, timeout: float = 10.0) -> Optional[str]:
        """Load ``url`` and wait for its load event; return Chromium's error text if it failed."""
        loaded = self.devtools.expect("Page.loadEventFired", self.session)
        result = await self.call("Page.navigate", {"url": url}, timeout)
        if "errorText" in result:
            loaded.cancel()
            return str(result["errorText"])
        await asyncio.wait_for(loaded, timeout)
        return None

    async def evaluate(self, expression: str, timeout: float = 10.0) -> Any:
        """The value of ``expression`` (a promise is awaited); a JavaScript exception raises ``AssertionError``."""
        params = {"expression": expression, "awaitPromise": True, "returnByValue": True}
        result = await self.call("Runtime.evaluate", params, timeout)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise AssertionError(f"JavaScript failed: {details.get('exception', {}).get('description', details)}")
        return result["result"].get("value")

    async def close(self) -> None:
        await self.devtools.call("Target.closeTarget", {"targetId": self.target})
