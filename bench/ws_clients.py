"""Bench helper: many WebSocket clients in one process, driven over stdin/stdout (JSON lines).

Keeps the clients out of the server's process (and its GIL), as real users are.
Commands: open, wait, reset, close (see ``handle``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import sys
import time
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

connections: list[ClientConnection] = []
receipts: list[tuple[float, float]] = []  # (received_at, sent_at)
seqs: dict[int, list[int]] = {}  # connection → the seq of every timed message, in arrival order
emitted: dict[int, list[tuple[int, int]]] = {}  # connection → (seq, the producer's emission index ``i``)
received = asyncio.Event()


async def reader(ws: ClientConnection) -> None:
    arrived = seqs.setdefault(id(ws), [])
    numbered = emitted.setdefault(id(ws), [])
    try:
        async for raw in ws:
            now = time.time()
            # A frame carries one or more messages, one JSON object per line.
            for line in str(raw).split("\n"):
                message = json.loads(line)
                data = message.get("data") if isinstance(message, dict) else None
                if isinstance(data, dict) and "sent_at" in data:
                    receipts.append((now, float(data["sent_at"])))
                    arrived.append(int(message.get("seq", 0)))
                    if "i" in data:
                        numbered.append((int(message.get("seq", 0)), int(data["i"])))
                    received.set()
    except Exception:  # noqa: S110 - closed connections simply stop counting
        pass


async def open_one(url: str, subscribe: str | None) -> None:
    ws = await connect(url, open_timeout=60, ping_interval=None, max_queue=None, compression=None)
    if subscribe:
        await ws.send(json.dumps({"action": "subscribe", "deployment_id": subscribe}))
        # The ack and the deployment's snapshot arrive together, one message per line.
        ack = json.loads(str(await ws.recv()).split("\n")[0])
        assert ack["type"] == "subscribed", ack
    connections.append(ws)
    asyncio.get_running_loop().create_task(reader(ws))


async def handle(command: dict[str, Any]) -> dict[str, Any]:
    if command["cmd"] == "open":
        start = time.perf_counter()
        semaphore = asyncio.Semaphore(command.get("concurrency", 50))

        async def guarded() -> None:
            async with semaphore:
                await open_one(command["url"], command.get("subscribe"))

        await asyncio.gather(*(guarded() for _ in range(command["n"])))
        return {"opened": len(connections), "seconds": time.perf_counter() - start}
    if command["cmd"] == "wait":
        deadline = time.monotonic() + command.get("timeout", 60)
        while len(receipts) < command["count"] and time.monotonic() < deadline:
            received.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(received.wait(), 0.5)
        latencies = sorted(r - s for r, s in receipts)
        return {
            "received": len(receipts),
            "first_received": min((r for r, _ in receipts), default=None),
            "last_received": max((r for r, _ in receipts), default=None),
            "latencies": [latencies[int(q * (len(latencies) - 1))] for q in (0.5, 0.99, 1.0)]
            if latencies
            else [],
            # Each connection saw its timed messages in strictly increasing seq order.
            "in_order": all(all(a < b for a, b in itertools.pairwise(s)) for s in seqs.values()),
            # seq order is the order the producer emitted in (what AWS's concurrency must not break)
            "emission_order": all(
                all(a[1] < b[1] for a, b in itertools.pairwise(sorted(pairs))) for pairs in emitted.values()
            ),
        }
    if command["cmd"] == "reset":
        receipts.clear()
        for arrived in seqs.values():
            arrived.clear()
        for pairs in emitted.values():
            pairs.clear()
        return {"ok": True}
    if command["cmd"] == "close":
        await asyncio.gather(*(ws.close() for ws in connections), return_exceptions=True)
        connections.clear()
        seqs.clear()
        return {"ok": True}
    raise ValueError(command)


async def main() -> None:
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return
        print(json.dumps(await handle(json.loads(line))), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
