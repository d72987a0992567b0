"""AWS's concurrency on the local stack: several batches in flight, finishing in shuffled order.

With the shuffle fault on, each delivery invocation first waits a random time,
so batches finish in an order unrelated to the one they were received in: the
worst interleavings the event source mapping can produce. Storing events in
the order their transactions commit fails these tests; storing them in each
producer's emission order passes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from plugin import DeliveryOptions, OrchestratorPlugin
from tests.support.local_stack import LocalStackProcess, start_local_stack, stop_local_stack

BURST = 1_000


@pytest.fixture(scope="module")
def shuffled_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStackProcess]:
    """A local stack whose delivery invocations finish in a shuffled order (5 in flight, as on AWS)."""
    stack = start_local_stack(tmp_path_factory.mktemp("shuffled"), "--shuffle-ms", "40")
    yield stack
    assert stop_local_stack(stack) == 0


async def _subscriber(stack: LocalStackProcess, deployment_id: str) -> ClientConnection:
    ws = await connect(f"{stack.outputs['websocket_url']}?token={stack.token()}")
    await ws.send(json.dumps({"action": "subscribe", "deployment_id": deployment_id, "id": "s"}))
    return ws


async def _collect(ws: ClientConnection, deployment_id: str, count: int, into: list[dict[str, Any]]) -> None:
    """Read ``deployment_id``'s events until ``count`` arrived (clients drop duplicates by seq)."""
    seen: set[int] = set()
    while len(seen) < count:
        try:
            frame = await asyncio.wait_for(ws.recv(), timeout=60)
        except TimeoutError:
            missing = sorted(set(range(1, count + 1)) - seen)
            raise AssertionError(
                f"{deployment_id}: {len(seen)} of {count} events after 60 s of silence; "
                f"highest seq {max(seen, default=0)}, missing {missing[:20]}"
            ) from None
        for line in str(frame).split("\n"):
            message = json.loads(line)
            fresh = message.get("deployment_id") == deployment_id and "event_id" in message
            if fresh and message["seq"] not in seen:
                seen.add(message["seq"])
                into.append(message)


def _plugin(stack: LocalStackProcess, options: DeliveryOptions | None = None) -> OrchestratorPlugin:
    return OrchestratorPlugin.from_outputs(stack.outputs_path, options=options)


# Packed (the plugin's default when it falls behind, as in a burst) and one event per entry, the
# most messages and so the most interleavings: each must come out in emission order.
@pytest.mark.parametrize("pack_backlog", [DeliveryOptions().pack_backlog, None], ids=["packed", "unpacked"])
async def test_a_burst_reaches_every_subscriber_in_emission_order(
    shuffled_stack: LocalStackProcess, pack_backlog: int | None
) -> None:
    """1,000 log lines from one plugin, batches finishing shuffled: at each of 5 subscribers, seq
    order is the order the hooks were called in, with no gap."""
    deployment = f"ORDER-{pack_backlog}"  # the stack is the module's: each run its own deployment
    subscribers = [await _subscriber(shuffled_stack, deployment) for _ in range(5)]
    received: list[list[dict[str, Any]]] = [[] for _ in subscribers]
    readers = [
        asyncio.create_task(_collect(ws, deployment, BURST, into))
        for ws, into in zip(subscribers, received, strict=True)
    ]
    await asyncio.sleep(0.3)  # the subscriptions are stored

    with _plugin(shuffled_stack, DeliveryOptions(pack_backlog=pack_backlog)) as plugin:
        for n in range(BURST):
            plugin.log(deployment, f"line {n}", n=n)
        # Every line sent, however slow this machine: close() alone gives up after its
        # 5 s deadline, which is the plugin's promise to the deployment, not to this test.
        assert plugin.flush(timeout=120)

    await asyncio.gather(*readers)
    for ws in subscribers:
        await ws.close()
    for messages in received:
        ordered = sorted(messages, key=lambda m: m["seq"])
        assert [m["seq"] for m in ordered] == list(range(1, BURST + 1))
        assert [m["data"]["message"] for m in ordered] == [f"line {n}" for n in range(BURST)]


async def test_a_burst_does_not_hold_up_another_deployment(shuffled_stack: LocalStackProcess) -> None:
    """An event for B put right after a 1,000-event burst on A reaches B's subscriber before A's
    burst has fully reached A's: B does not wait in line behind A."""
    a, b = "BUSYA", "QUIETB"
    watch_a, watch_b = await _subscriber(shuffled_stack, a), await _subscriber(shuffled_stack, b)
    got_a: list[dict[str, Any]] = []
    got_b: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    done: dict[str, float] = {}

    async def timed(name: str, ws: ClientConnection, deployment: str, count: int, into: list[Any]) -> None:
        await _collect(ws, deployment, count, into)
        done[name] = loop.time()

    readers = [
        asyncio.create_task(timed("a", watch_a, a, BURST, got_a)),
        asyncio.create_task(timed("b", watch_b, b, 1, got_b)),
    ]
    await asyncio.sleep(0.3)

    with _plugin(shuffled_stack) as plugin:
        for n in range(BURST):
            plugin.log(a, f"line {n}", n=n)
        assert plugin.flush(timeout=120)
        shuffled_stack.put_event(b, "deployment.status", {"status": "deploying"})

    await asyncio.gather(*readers)
    await watch_a.close()
    await watch_b.close()
    assert [m["data"]["status"] for m in got_b] == ["deploying"]
    assert len(got_a) == BURST
    # Order of completion, not a time bound: B's one event got through while A was still draining.
    assert done["b"] < done["a"]


def test_the_shuffle_fault_is_on(shuffled_stack: LocalStackProcess, tmp_path: Path) -> None:
    """The fault these tests rely on is really on (a stack without it would make them vacuous)."""
    import requests

    reply = requests.get(f"{shuffled_stack.http}/_cloud-ws/faults/shuffle", timeout=5)
    assert reply.status_code == 200
    assert reply.json()["max_delay_ms"] == 40
