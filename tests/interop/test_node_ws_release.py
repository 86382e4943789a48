"""Node's ``ws`` (its own permessage-deflate, on zlib, context kept for the
whole connection) echoes while the wsfast client frees its zlib state after
every message sent and every message received (issue 15): every echo comes
back intact. Each message repeats the previous one's noise, so each side's
compressor refers back into the previous message: a wrong window after a
release would fail to inflate (or inflate to other bytes).
Skipped without Node and ``ws`` (failed under ``CI``), as test_node_ws."""

from __future__ import annotations

import random
import subprocess

from wsfast.sync import WebSocket, connect

from .test_node_ws import HERE, NODE  # skips the module without the peer

NOISE = random.Random(15).randbytes(1500).hex()
TIMEOUT = 10.0


def _release(ws: WebSocket) -> None:
    with ws._lock:  # as the keepalive tick calls it: twice, the first only clears the flag
        ws.conn.release_idle_memory()
        assert ws.conn.release_idle_memory()


def test_release_between_every_message_against_node_ws() -> None:
    assert NODE is not None
    process = subprocess.Popen(
        [NODE, str(HERE / "peer.js"), "server"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=HERE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("PORT "), (line, process.stderr.read() if process.stderr else "")
        port = int(line.split()[1])
        with connect(f"ws://127.0.0.1:{port}/", ping_interval=None, open_timeout=TIMEOUT) as ws:
            deflate = ws.conn.deflate
            assert deflate is not None and not deflate.compress_reset and not deflate.decompress_reset
            for i in range(8):
                message = f'{{"i":{i},"noise":"{NOISE}"}}'
                ws.send(message)
                _release(ws)
                assert ws.recv(timeout=TIMEOUT) == message
                _release(ws)
        assert process.wait(TIMEOUT) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
