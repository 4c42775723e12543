"""``core.websocket.write_now`` against a real websockets server on loopback."""

from __future__ import annotations

import asyncio

import websockets
from websockets.asyncio.server import ServerConnection, serve

from core.websocket import write_now


async def test_write_now_sends_frames_in_order_and_refuses_a_closed_connection() -> None:
    received: list[str | bytes] = []
    got_all = asyncio.Event()

    async def handler(conn: ServerConnection) -> None:
        async for message in conn:
            received.append(message)
            if len(received) == 4:
                got_all.set()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        ws = await websockets.connect(f"ws://127.0.0.1:{port}", compression=None)
        frames = [bytes([i]) * 640 for i in range(3)]
        assert write_now(ws, frames)
        assert write_now(ws, [b'{"Action": "Stop"}'], text=True)
        await asyncio.wait_for(got_all.wait(), 10)
        assert received == [*frames, '{"Action": "Stop"}']  # binary, then a text frame
        await ws.close()
        # Closed: nothing is written; the caller's ws.send raises ConnectionClosed.
        assert not write_now(ws, [b"late"])
        assert len(received) == 4
