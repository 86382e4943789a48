"""Interop with Node's ``ws`` (npm), a peer nobody here wrote.

A ``ws`` client against the wsfast server and the wsfast client against a
``ws`` server, with permessage-deflate negotiated: text, binary and a 1 MiB
message echoed intact, subprotocol chosen, close codes both ways. Node comes
with the machine; ``ws`` is installed by ``npm install`` in this folder
(``.ci/run`` does it); without them the tests are skipped, saying which.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

import wsfast

HERE = Path(__file__).resolve().parent
NODE = shutil.which("node")

if NODE is None:
    pytest.skip("node is not installed", allow_module_level=True)
if not (HERE / "node_modules" / "ws").is_dir():
    pytest.skip(f"Node's ws is not installed: run npm install in {HERE}", allow_module_level=True)


def run(coro: object, timeout: float = 30.0) -> object:
    return asyncio.run(asyncio.wait_for(coro, timeout))  # type: ignore[arg-type]


async def node(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        NODE, str(HERE / "peer.js"), *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=HERE
    )


def test_node_ws_client_against_wsfast_server() -> None:
    closes: list[tuple[int, str]] = []

    async def echo(ws: wsfast.WebSocket) -> None:
        try:
            async for message in ws:
                await ws.send(message)
        finally:
            closes.append((ws.transport.close_code, ws.transport.close_reason))

    async def main() -> list[str]:
        async with wsfast.serve(echo, "127.0.0.1", 0, subprotocols=["chat"], max_message_size=2**21) as server:
            proc = await node("client", f"ws://127.0.0.1:{server.port}/")
            try:
                out, err = await asyncio.wait_for(proc.communicate(), 25)
            finally:
                if proc.returncode is None:
                    proc.kill()
            assert proc.returncode == 0, err.decode()
            return out.decode().split("\n")

    lines = run(main())
    assert any(line.startswith("PROTOCOL chat EXTENSIONS permessage-deflate") for line in lines)  # type: ignore[union-attr]
    assert "ECHO OK" in lines  # type: ignore[operator]
    assert "CLOSED 4001 " in lines  # type: ignore[operator]  # the close reply echoes the code
    assert closes == [(4001, "bye")]


def test_wsfast_client_against_node_ws_server() -> None:
    big = os.urandom(1 << 20)

    async def main() -> tuple[list[object], str, list[str]]:
        proc = await node("server")
        try:
            assert proc.stdout is not None
            line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode().split()
            assert line[0] == "PORT", line
            async with wsfast.connect(f"ws://127.0.0.1:{line[1]}/", max_message_size=2**21) as ws:
                extensions = ws.response.headers.get("Sec-WebSocket-Extensions") or ""  # type: ignore[union-attr]
                received: list[object] = []
                for message in ("héllo", b"\x00\x01\x02\xff", big):
                    await ws.send(message)
                    received.append(await asyncio.wait_for(ws.recv(), 10))
                await ws.close(4002, "done")
            out, _ = await asyncio.wait_for(proc.communicate(), 10)
            return received, extensions, out.decode().split("\n")
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    received, extensions, lines = run(main())  # type: ignore[misc]
    assert extensions.startswith("permessage-deflate")
    assert received[0] == "héllo" and received[1] == b"\x00\x01\x02\xff"
    assert hashlib.sha256(received[2]).digest() == hashlib.sha256(big).digest()
    assert "CLOSED 4002 done" in lines
