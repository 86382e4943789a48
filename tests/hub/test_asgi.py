"""The hub under uvicorn with a FastAPI application (examples/fastapi_hub.py,
the README's example): through wsfast.uvicorn's protocol the hub writes
frames directly; through uvicorn's own websockets-sansio protocol it goes
through the ASGI send. Real uvicorn servers, real clients."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import pathlib
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from wsfast.asyncio import connect  # noqa: E402
from wsfast.hub import hub as hub_module  # noqa: E402

from ..asyncio.helpers import eventually, run  # noqa: E402
from ..test_uvicorn import WSFAST, uvicorn_server  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "fastapi_hub.py"


def load_example(name: str) -> Any:
    """A fresh copy of the example module (each has its own hub)."""
    spec = importlib.util.spec_from_file_location(f"fastapi_hub_{name}", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_shows_the_example_as_it_is() -> None:
    readme = (ROOT / "README.md").read_text()
    code = EXAMPLE.read_text().split('"""\n', 1)[1].strip()  # without its docstring
    assert code in readme


@pytest.mark.parametrize("ws_impl", [WSFAST, "websockets-sansio"])
def test_fastapi_room_through_the_hub(ws_impl: str) -> None:
    example = load_example(ws_impl.replace(".", "_").replace(":", "_").replace("-", "_"))

    async def main() -> None:
        async with uvicorn_server(example.app, ws_impl, lifespan="on") as (port, _):
            hub = example.hub
            url = f"ws://127.0.0.1:{port}/rooms/lobby"
            a = await connect(url)
            b = await connect(url)
            await eventually(lambda: len(hub._channels.get("lobby", ())) == 2)
            kinds = {sub._kind for sub in hub._channels["lobby"].values()}
            # wsfast's protocol: frames written directly; any other: the ASGI send.
            assert kinds == {hub_module._UVICORN if ws_impl == WSFAST else hub_module._ASGI}
            await a.send("hello")
            first = json.loads(await asyncio.wait_for(b.recv(), 5))
            assert first["channel"] == "lobby" and first["data"] == "hello"
            assert json.loads(await asyncio.wait_for(a.recv(), 5)) == first
            await b.close()
            for i in range(3):  # while b is away
                await a.send(f"missed {i}")
            for i in range(3):
                assert json.loads(await asyncio.wait_for(a.recv(), 5))["data"] == f"missed {i}"
            c = await connect(f"{url}?last_id={first['id']}")
            got = [json.loads(await asyncio.wait_for(c.recv(), 5))["data"] for _ in range(3)]
            assert got == [f"missed {i}" for i in range(3)]
            await a.close()
            await c.close()
            await eventually(lambda: "lobby" not in hub.channels)
        assert hub._state == "closed"  # the lifespan closed it

    run(main(), timeout=30)
