"""Bench helper: a bare `websockets` relay, the ceiling the delivery path is compared to.

Connections on ``/produce`` are producers: every message one sends is relayed
with ``websockets.broadcast`` to every other connection. No auth, no storage,
no sequencing: what a relay costs on this machine and nothing more. Prints its
port on start.
"""

from __future__ import annotations

import asyncio
import json

from websockets.asyncio.server import ServerConnection, broadcast, serve

subscribers: set[ServerConnection] = set()


async def handler(ws: ServerConnection) -> None:
    if ws.request is not None and ws.request.path.startswith("/produce"):
        async for message in ws:
            broadcast(subscribers, message)
        return
    subscribers.add(ws)
    try:
        await ws.wait_closed()
    finally:
        subscribers.discard(ws)


async def main() -> None:
    async with serve(handler, "127.0.0.1", 0, ping_interval=None, compression=None, max_queue=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print(json.dumps({"port": port}), flush=True)
        await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    try:
        import uvloop  # the local stack runs on uvloop too: compare like with like

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
