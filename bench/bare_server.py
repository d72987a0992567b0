"""Bench helper: a bare `websockets` server, the ceiling the local stack is compared to.

Accepts any connection (no auth, no storage); on a line ``broadcast K`` on stdin it
sends K messages to every connection with ``websockets.broadcast`` and prints
when it finished. Prints its port first, then its RSS on ``rss``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from websockets.asyncio.server import ServerConnection, broadcast, serve

clients: set[ServerConnection] = set()


async def handler(ws: ServerConnection) -> None:
    clients.add(ws)
    try:
        await ws.wait_closed()
    finally:
        clients.discard(ws)


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def main() -> None:
    async with serve(handler, "127.0.0.1", 0, ping_interval=None, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print(json.dumps({"port": port}), flush=True)
        loop = asyncio.get_running_loop()
        while True:
            line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
            if not line:
                return
            if line == "rss":
                print(json.dumps({"rss_kib": rss_kib(), "connections": len(clients)}), flush=True)
                continue
            _, count = line.split()
            start = time.time()
            for i in range(int(count)):
                message = json.dumps(
                    {"type": "log.created", "seq": i + 1, "data": {"sent_at": time.time(), "i": i}}
                )
                broadcast(clients, message)
                await asyncio.sleep(0)
            print(json.dumps({"broadcast_started": start, "connections": len(clients)}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
