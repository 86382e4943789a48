"""Interop with Node's ``ws`` (npm), a peer nobody here wrote.

A ``ws`` client against the wsfast server and the wsfast client against a
``ws`` server, over ``ws://`` and ``wss://`` (a certificate authority made at
test time, trusted by Node through ``NODE_EXTRA_CA_CERTS`` and by wsfast
through its SSL context), with permessage-deflate negotiated: text, binary
and a 1 MiB message echoed intact, subprotocol chosen, close codes both ways.
Node comes
with the machine; ``ws`` is installed by ``npm install`` in this folder
(``.ci/run`` does it); without them the tests are skipped, saying which, or
fail when ``CI`` is set.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import ssl
import subprocess
from pathlib import Path
from typing import Any, Optional

import pytest

import wsfast

HERE = Path(__file__).resolve().parent
NODE = shutil.which("node")


def _missing(reason: str) -> None:
    """Skip without the peer; under CI (``CI`` set, as ``.ci/run`` does) fail instead."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: the peer must be installed)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


if NODE is None:
    _missing("node is not installed")
if not (HERE / "node_modules" / "ws").is_dir():
    _missing(f"Node's ws is not installed: run npm install in {HERE}")


def run(coro: object, timeout: float = 30.0) -> object:
    return asyncio.run(asyncio.wait_for(coro, timeout))  # type: ignore[arg-type]


async def node(*args: str, ca_file: Optional[Path] = None) -> asyncio.subprocess.Process:
    env = dict(os.environ)
    env.pop("NODE_EXTRA_CA_CERTS", None)
    if ca_file is not None:
        env["NODE_EXTRA_CA_CERTS"] = str(ca_file)
    return await asyncio.create_subprocess_exec(
        NODE, str(HERE / "peer.js"), *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=HERE, env=env
    )


schemes = pytest.mark.parametrize("scheme", ["ws", "wss"])


@schemes
def test_node_ws_client_against_wsfast_server(scheme: str, ca: Any, server_ssl: ssl.SSLContext, tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    tls = scheme == "wss"

    closes: list[tuple[int, str]] = []

    async def echo(ws: wsfast.WebSocket) -> None:
        try:
            async for message in ws:
                await ws.send(message)
        finally:
            closes.append((ws.transport.close_code, ws.transport.close_reason))

    async def main() -> list[str]:
        context = server_ssl if tls else None
        async with wsfast.serve(
            echo, "127.0.0.1", 0, subprotocols=["chat"], max_message_size=2**21, ssl=context
        ) as server:
            proc = await node("client", f"{scheme}://127.0.0.1:{server.port}/", ca_file=ca_file if tls else None)
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


@schemes
def test_wsfast_client_against_node_ws_server(scheme: str, ca: Any, client_ssl: ssl.SSLContext, tmp_path: Path) -> None:
    big = os.urandom(1 << 20)
    tls = scheme == "wss"
    leaf = ca.issue_cert("127.0.0.1")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert_file))
    leaf.private_key_pem.write_to_path(str(key_file))

    async def main() -> tuple[list[object], str, list[str]]:
        proc = await node("server", *([str(cert_file), str(key_file)] if tls else []))
        try:
            assert proc.stdout is not None
            line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode().split()
            assert line[0] == "PORT", line
            uri = f"{scheme}://127.0.0.1:{line[1]}/"
            async with wsfast.connect(uri, max_message_size=2**21, ssl=client_ssl if tls else None) as ws:
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


def test_node_ws_client_refuses_an_untrusted_certificate(server_ssl: ssl.SSLContext) -> None:
    """The wss:// test trusts the test CA on purpose: without it, Node refuses."""

    async def echo(ws: wsfast.WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    async def main() -> tuple[int, str]:
        async with wsfast.serve(echo, "127.0.0.1", 0, ssl=server_ssl) as server:
            proc = await node("client", f"wss://127.0.0.1:{server.port}/")
            try:
                _, err = await asyncio.wait_for(proc.communicate(), 25)
            finally:
                if proc.returncode is None:
                    proc.kill()
            return proc.returncode or 0, err.decode()

    code, err = run(main())  # type: ignore[misc]
    assert code == 1 and "certificate" in err, err
