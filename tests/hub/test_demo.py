"""``wsfast serve --workers 2 --hub redis+streams://...``: the demo's chat
room spans the workers, and a page that reconnects resumes after its last
id. A real redis-server, the real command in its own process group of
workers, real clients speaking the chat page's protocol (``/?ids=1``)."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
from typing import Any

from wsfast.asyncio import connect

from ..asyncio.helpers import run
from .test_scale import free_port, streams_url

ROOT = pathlib.Path(__file__).resolve().parents[2]


async def join(url: str, resumed: bool = False) -> tuple[Any, str]:
    """A member of the room, once it is subscribed (it saw its own arrival)."""
    ws = await connect(url, ping_interval=None)
    you = json.loads(await asyncio.wait_for(ws.recv(), 10))["you"]
    if not resumed:
        while (await next_line(ws))["data"] != f"* {you} joined":
            pass
    return ws, you


async def next_line(ws: Any) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), 10))  # type: ignore[no-any-return]


def test_the_chat_room_spans_workers_and_pages_resume(redis_server: Any) -> None:
    redis = redis_server()
    port = free_port("127.0.0.1")
    log = tempfile.TemporaryFile()
    argv = [sys.executable, "-m", "wsfast", "serve", "--port", str(port), "--workers", "2", "--hub", streams_url(redis)]
    process = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

    def output() -> str:
        log.seek(0)
        return log.read().decode(errors="replace")

    async def main() -> None:
        url = f"ws://127.0.0.1:{port}/?ids=1"
        for _ in range(200):  # until the workers listen
            if "serving on" in output():
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(output())
        members: dict[str, tuple[Any, str]] = {}  # worker pid -> (connection, name)
        extra = []
        for _ in range(20):  # the kernel spreads connections over the workers
            ws, name = await join(url)
            pid = name.split("-")[1]
            if pid in members:
                extra.append(ws)
            else:
                members[pid] = (ws, name)
            if len(members) == 2:
                break
        assert len(members) == 2, output()
        (a, a_name), (b, b_name) = members.values()
        await a.send("hello from the other worker")
        line = f"{a_name}: hello from the other worker"
        while (message := await next_line(b))["data"] != line:
            pass
        last_id = message["id"]
        await b.close()
        # b's worker announces it left; a waits for that, so that what a says
        # next comes after it in the room (two workers publish in any order).
        while (await next_line(a))["data"] != f"* {b_name} left":
            pass
        await a.send("said while b was away")
        while (await next_line(a))["data"] != f"{a_name}: said while b was away":
            pass
        b, _ = await join(f"{url}&name={b_name}&last_id={last_id}", resumed=True)
        resumed = [(await next_line(b))["data"] for _ in range(3)]
        assert resumed == [f"* {b_name} left", f"{a_name}: said while b was away", f"* {b_name} is back"]
        for ws in [a, b, *extra]:
            await ws.close()

    try:
        run(main(), timeout=40)
    finally:
        os.kill(process.pid, signal.SIGINT)
        assert process.wait(20) == 0, output()
        assert "all workers stopped" in output()
        log.close()
