"""The hub across processes and "hosts", end to end: ``wsfast.run`` workers
(tests/hub/scale_app.py) on one port sharing a real ``redis-server``, real
clients, and the failures the README promises to survive: Redis killed
(``kill -9``) and restarted mid-stream, a worker killed while its clients
are connected. Every process is started here and stopped by its PID; all
traffic stays on the loopback addresses (127.0.0.2 and 127.0.0.3 play two
hosts)."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
from typing import Any, Callable, Iterator, Optional

import pytest

from wsfast.asyncio import connect
from wsfast.exceptions import ConnectionClosed, WebSocketError
from wsfast.hub import Hub, parse_id

from ..asyncio.helpers import eventually, run

ROOT = pathlib.Path(__file__).resolve().parents[2]


def streams_url(redis: Any) -> str:
    return f"redis+streams://127.0.0.1:{redis.port}/0?maxlen=100000"


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class App:
    """One ``scale_app`` supervisor with its workers."""

    def __init__(self, hub_url: str, host: str = "127.0.0.1", workers: int = 2, port: Optional[int] = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.log = tempfile.NamedTemporaryFile(prefix="scale_app-", suffix=".log", delete=False)
        argv = [sys.executable, "-m", "tests.hub.scale_app", str(self.port), "--hub", hub_url]
        argv += ["--host", host, "--workers", str(workers)]
        self.process = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)

    def url(self, path: str = "/room") -> str:
        return f"ws://{self.host}:{self.port}{path}"

    def output(self) -> str:
        return pathlib.Path(self.log.name).read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        self.log.close()
        os.unlink(self.log.name)


@pytest.fixture
def apps() -> Iterator[Callable[..., App]]:
    started: list[App] = []

    def start(*args: Any, **kwargs: Any) -> App:
        app = App(*args, **kwargs)
        started.append(app)
        return app

    yield start
    for app in started:
        app.stop()


class Member:
    """A client of the room: keeps every message; with ``resume``, reconnects
    after a lost connection with the last id it saw."""

    def __init__(self, url: str, resume: bool = False) -> None:
        self.url = url
        self.resume = resume
        self.messages: list[dict[str, Any]] = []
        self.pids: list[int] = []
        self.ws: Any = None
        self.task: Optional[asyncio.Task[None]] = None
        self.reconnects = 0

    @property
    def data(self) -> list[str]:
        return [m["data"] for m in self.messages if "data" in m]

    @property
    def ids(self) -> list[str]:
        return [m["id"] for m in self.messages if "id" in m]

    async def open(self) -> Member:
        await self._connect()
        self.task = asyncio.ensure_future(self._read())
        return self

    async def _connect(self) -> None:
        ids = self.ids
        url = f"{self.url}?last_id={ids[-1]}" if ids and self.resume else self.url
        self.ws = await connect(url, ping_interval=None)
        hello = json.loads(await asyncio.wait_for(self.ws.recv(), 10))
        self.pids.append(hello["hello"])

    async def _read(self) -> None:
        while True:
            try:
                async for message in self.ws:
                    self.messages.append(json.loads(message))
                return
            except ConnectionClosed:
                if not self.resume:
                    return
            for _ in range(100):  # the supervisor restarts the worker; reuse_port spreads the reconnects
                try:
                    await self._connect()
                    self.reconnects += 1
                    break
                except (OSError, WebSocketError, asyncio.TimeoutError):
                    # refused, reset in the handshake (a connection queued on the killed
                    # worker's socket), or rejected: try again, as a real client would
                    await asyncio.sleep(0.05)
            else:
                return

    async def close(self) -> None:
        self.resume = False
        await self.ws.close()
        if self.task is not None:
            await asyncio.wait_for(self.task, 5)


async def members(app: App, count: int, path: str = "/room", **kwargs: Any) -> list[Member]:
    """``count`` members, once the app answers (its workers may still be starting)."""
    for _ in range(300):
        try:
            first = await Member(app.url(path), **kwargs).open()
            break
        except OSError:
            await asyncio.sleep(0.05)
    else:
        raise AssertionError(f"the app did not answer:\n{app.output()}")
    return [first] + [await Member(app.url(path), **kwargs).open() for _ in range(count - 1)]


async def everyone_subscribed(hub: Hub, channel: str, members: list[Member]) -> None:
    """Publish probes until every member got one: then every worker's
    subscription is live."""
    for probe in range(200):
        await hub.publish(channel, f"probe {probe}")
        await asyncio.sleep(0.05)
        if all(any(d.startswith("probe") for d in m.data) for m in members):
            return
    raise AssertionError("not every member got a probe")


# ---------------------------------------------------------------- reach


@pytest.mark.parametrize("mode", ["pubsub", "streams"])
def test_a_message_from_one_worker_reaches_the_clients_of_every_worker(redis_server: Any, apps: Any, mode: str) -> None:
    redis = redis_server()
    app = apps(redis.url if mode == "pubsub" else streams_url(redis), workers=2)

    async def main() -> None:
        room = await members(app, 40)
        assert len({m.pids[0] for m in room}) == 2, app.output()  # the kernel spread them over both workers
        await asyncio.sleep(0.3)  # every worker has subscribed the channel (Pub/Sub has no replay to wait for)
        await room[0].ws.send("hello, everyone")
        await eventually(lambda: all("hello, everyone" in m.data for m in room), timeout=10)
        assert all(m.data == ["hello, everyone"] for m in room)
        if mode == "streams":
            assert len({m.ids[0] for m in room}) == 1  # one message, one id, everywhere
        for m in room:
            await m.close()

    run(main(), timeout=40)


@pytest.mark.parametrize("mode", ["pubsub", "streams"])
def test_two_hosts_share_one_redis(redis_server: Any, apps: Any, mode: str) -> None:
    redis = redis_server()
    url = redis.url if mode == "pubsub" else streams_url(redis)
    port = free_port("127.0.0.2")
    host_a = apps(url, host="127.0.0.2", workers=1, port=port)
    host_b = apps(url, host="127.0.0.3", workers=1, port=port)

    async def main() -> None:
        a = await members(host_a, 10)
        b = await members(host_b, 10)
        assert {m.ws.transport.remote_address[0] for m in a} == {"127.0.0.2"}
        assert {m.ws.transport.remote_address[0] for m in b} == {"127.0.0.3"}
        await asyncio.sleep(0.3)
        await a[0].ws.send("from host a")
        await b[0].ws.send("from host b")
        await eventually(lambda: all(len(m.data) == 2 for m in a + b), timeout=10)
        assert all(sorted(m.data) == ["from host a", "from host b"] for m in a + b)
        for m in a + b:
            await m.close()

    run(main(), timeout=40)


# ---------------------------------------------------------------- failures


def test_redis_killed_mid_stream_streams_deliver_every_message_once_in_order(redis_server: Any, apps: Any) -> None:
    redis = redis_server(persistent=True)
    url = streams_url(redis)
    app = apps(url, workers=2)

    async def main() -> None:
        room = await members(app, 10)
        async with Hub(url) as publisher:
            await everyone_subscribed(publisher, "room", room)
            acknowledged: list[str] = []
            for i in range(300):
                if i == 100:
                    redis.kill()
                    asyncio.get_running_loop().call_later(0.5, redis.restart)
                acknowledged.append(await publisher.publish("room", f"m{i}"))  # type: ignore[arg-type]
                await asyncio.sleep(0.002)
        await eventually(lambda: all("m299" in m.data for m in room), timeout=15)
        for m in room:
            ids = [i for i, d in zip(m.ids, m.data) if d.startswith("m")]
            assert [parse_id(i) for i in ids] == sorted({parse_id(i) for i in ids})  # in order, never twice
            assert set(acknowledged) <= set(ids)  # nothing acknowledged is missing
            await m.close()

    run(main(), timeout=60)


def test_redis_killed_mid_stream_pubsub_tells_the_gap(redis_server: Any, apps: Any) -> None:
    redis = redis_server()
    app = apps(redis.url, workers=2)

    async def main() -> None:
        room = await members(app, 10)
        await asyncio.sleep(0.3)
        redis.kill()
        await asyncio.sleep(0.3)
        redis.restart()
        # Each worker resubscribed and told its clients to resync.
        await eventually(lambda: all(any(msg.get("gap") == ["room"] for msg in m.messages) for m in room), timeout=15)
        async with Hub(redis.url) as publisher:
            await everyone_subscribed(publisher, "room", room)  # and delivery goes on
        for m in room:
            await m.close()

    run(main(), timeout=60)


def test_a_killed_worker_s_clients_resume_on_another_with_nothing_missing(redis_server: Any, apps: Any) -> None:
    redis = redis_server()
    url = streams_url(redis)
    app = apps(url, workers=2)

    async def main() -> None:
        room = await members(app, 20, resume=True)
        pids = {m.pids[0] for m in room}
        assert len(pids) == 2
        async with Hub(url) as publisher:
            await everyone_subscribed(publisher, "room", room)
            victim = room[0].pids[0]
            for i in range(300):
                if i == 100:
                    os.kill(victim, signal.SIGKILL)
                await publisher.publish("room", f"m{i}")
                await asyncio.sleep(0.003)
        await eventually(lambda: all("m299" in m.data for m in room), timeout=20)
        moved = [m for m in room if m.pids[0] == victim]
        assert moved and all(m.reconnects >= 1 and m.pids[-1] != victim for m in moved)
        for m in room:
            got = [d for d in m.data if d.startswith("m")]
            assert got == [f"m{i}" for i in range(300)]  # nothing missing, nothing twice, in order
            await m.close()

    run(main(), timeout=60)
