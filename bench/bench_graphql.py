"""GraphQL path vs WebSocket path: local fan-out latency, PutEvents → receipt, 1 and 100 subscribers.

Everything runs for real: `cloud-ws local` in its own process (moto, the emulator,
the real handlers: the broadcaster stores each batch, fans it out over the
WebSocket API, then publishes it through ``server.appsync`` to the local
GraphQL API, which fans it out to its real-time subscribers). The subscribers
are plain ``websockets`` clients in this process: the WebSocket API's protocol
for one path, AppSync's real-time protocol (``graphql-ws``) for the other, so
neither pays for a client library the other does not.

Each event is put on the bus alone, after the previous one reached every
subscriber; the first of each run warms pools and is not counted. The figures
are local ones: they show what the GraphQL path adds on top of the WebSocket
path (its publish runs beside the WebSocket fan-out: one HTTP request per
event and graphql-core execution per subscriber), not AppSync's own latency.
"""

from __future__ import annotations

import asyncio
import base64
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import websockets

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emulator.launcher import LocalStackProcess, start_local_stack, stop_local_stack  # noqa: E402

ROUNDS = 8
SUBSCRIBERS = (1, 100)
GRAPHQL_FIELDS = "seq data"


class Receipts:
    """Arrival times of the timed events, per round."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.arrived = asyncio.Event()

    def record(self, data: dict[str, Any]) -> None:
        if "sent_at" in data:
            self.latencies.append(time.time() - float(data["sent_at"]))
            self.arrived.set()


async def websocket_subscriber(
    stack: LocalStackProcess, token: str, deployment: str, receipts: Receipts
) -> Any:
    """A WebSocket API client subscribed to ``deployment``."""
    ws = await websockets.connect(
        stack.outputs["websocket_url"],
        additional_headers={"Authorization": f"Bearer {token}"},
        max_queue=None,
    )
    await ws.send(json.dumps({"action": "subscribe", "deployment_id": deployment}))

    async def read() -> None:
        async for frame in ws:
            for line in str(frame).split("\n"):
                message = json.loads(line)
                if isinstance(message.get("data"), dict):
                    receipts.record(message["data"])

    asyncio.get_running_loop().create_task(read())
    return ws


async def graphql_subscriber(
    stack: LocalStackProcess, token: str, deployment: str, receipts: Receipts
) -> Any:
    """An AppSync real-time client subscribed to ``onDeploymentEvent(deployment)``."""
    host = urlsplit(stack.outputs["graphql_url"]).netloc
    auth = {"host": host, "Authorization": token}
    header = base64.b64encode(json.dumps(auth).encode()).decode()
    ws = await websockets.connect(
        f"{stack.outputs['graphql_realtime_url']}?header={header}&payload=e30=",
        subprotocols=[websockets.Subprotocol("graphql-ws")],
        max_queue=None,
    )
    await ws.send(json.dumps({"type": "connection_init"}))
    query = f"subscription($d: ID!) {{ onDeploymentEvent(deployment_id: $d) {{ {GRAPHQL_FIELDS} }} }}"
    payload = {
        "data": json.dumps({"query": query, "variables": {"d": deployment}}),
        "extensions": {"authorization": auth},
    }
    await ws.send(json.dumps({"id": "1", "type": "start", "payload": payload}))
    while (message := json.loads(await ws.recv()))["type"] != "start_ack":
        assert message["type"] in ("connection_ack", "ka"), message

    async def read() -> None:
        async for frame in ws:
            message = json.loads(frame)
            if message.get("type") == "data":
                receipts.record(json.loads(message["payload"]["data"]["onDeploymentEvent"]["data"]))

    asyncio.get_running_loop().create_task(read())
    return ws


def put_event(stack: LocalStackProcess, deployment: str) -> None:
    """One timed event on the bus, as any producer puts it."""
    detail = {"deployment_id": deployment, "event_id": str(uuid.uuid4()), "data": {"sent_at": time.time()}}
    reply = stack.aws("events").put_events(
        Entries=[
            {
                "Source": stack.outputs["event_source"],
                "DetailType": "log.created",
                "Detail": json.dumps(detail),
                "EventBusName": stack.outputs["event_bus_name"],
            }
        ]
    )
    assert reply["FailedEntryCount"] == 0, reply


Subscriber = Callable[[LocalStackProcess, str, str, Receipts], Awaitable[Any]]


async def run(stack: LocalStackProcess, token: str, subscribe: Subscriber, count: int) -> tuple[float, float]:
    """p50 and p99 (seconds) over ``ROUNDS - 1`` events reaching ``count`` subscribers."""
    deployment = f"BENCH{uuid.uuid4().hex[:8].upper()}"
    receipts = Receipts()
    sockets = [await subscribe(stack, token, deployment, receipts) for _ in range(count)]
    await asyncio.sleep(0.5)  # every subscription registered
    samples: list[float] = []
    try:
        for round_ in range(ROUNDS):
            receipts.latencies.clear()
            await asyncio.to_thread(put_event, stack, deployment)
            deadline = time.monotonic() + 30
            while len(receipts.latencies) < count:
                assert time.monotonic() < deadline, f"{len(receipts.latencies)} of {count} received"
                receipts.arrived.clear()
                await asyncio.wait_for(receipts.arrived.wait(), 30)
            if round_:
                samples.extend(receipts.latencies)
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    samples.sort()
    return statistics.median(samples), samples[int(0.99 * (len(samples) - 1))]


async def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        stack = start_local_stack(Path(directory))
        try:
            token = stack.token()
            print(
                f"{'subscribers':>11}  {'WebSocket p50/p99':>18}  {'GraphQL p50/p99':>18}  GraphQL/WebSocket (p50)"
            )
            for count in SUBSCRIBERS:
                ws50, ws99 = await run(stack, token, websocket_subscriber, count)
                gql50, gql99 = await run(stack, token, graphql_subscriber, count)
                print(
                    f"{count:>11}  {ws50 * 1000:>8.1f} / {ws99 * 1000:>5.1f} ms  "
                    f"{gql50 * 1000:>8.1f} / {gql99 * 1000:>5.1f} ms  {gql50 / ws50:.2f}x"
                )
        finally:
            stop_local_stack(stack)


if __name__ == "__main__":
    asyncio.run(main())
