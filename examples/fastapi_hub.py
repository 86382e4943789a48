"""A chat room per path under FastAPI, with the hub: run it in several
uvicorn workers, on several hosts, and a message reaches every room member.

    HUB_URL=redis+streams://127.0.0.1:6379/0 \
        uvicorn examples.fastapi_hub:app --ws wsfast.uvicorn:WSFastProtocol --workers 4
"""

import os
from contextlib import asynccontextmanager
from typing import AsyncIterator, Optional

from fastapi import FastAPI, WebSocket

from wsfast.hub import Hub

hub = Hub(os.environ.get("HUB_URL", "memory://"), envelope="json")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with hub:  # started in each worker (after the fork), closed at shutdown
        yield


app = FastAPI(lifespan=lifespan)


@app.websocket("/rooms/{room}")
async def chat(websocket: WebSocket, room: str, last_id: Optional[str] = None) -> None:
    await websocket.accept()
    # Each message arrives as {"channel": room, "id": ..., "data": ...}; a
    # client that reconnects with ?last_id=<the last id it saw> gets what it
    # missed first.
    async with hub.subscribed(websocket, room, last_id=last_id):
        async for text in websocket.iter_text():
            await hub.publish(room, text)
