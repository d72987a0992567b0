"""The per-connection rate limit through `cloud-ws local`: real sockets, the real handlers, one flood."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from contract import spec
from tests.support import asyncapi
from tests.support.local_stack import LocalStackProcess

pytestmark = pytest.mark.slow

#: Frames the flooding connection sends at once: several times the default burst.
FLOOD = 150


async def _answers(ws: ClientConnection, wanted: set[str], timeout: float) -> dict[str, list[dict[str, Any]]]:
    """Every message that carries one of ``wanted`` ids, by id, until each has its answer (a
    ``pong``, a ``subscribed`` and its snapshot, or an ``error``); each checked against docs/asyncapi.yaml."""
    got: dict[str, list[dict[str, Any]]] = {request_id: [] for request_id in wanted}

    def answered(messages: list[dict[str, Any]]) -> bool:
        kinds = [m["type"] for m in messages]
        return "pong" in kinds or "error" in kinds or "deployment.snapshot" in kinds

    deadline = time.monotonic() + timeout
    while not all(answered(messages) for messages in got.values()):
        frame = await asyncio.wait_for(ws.recv(), deadline - time.monotonic())
        for line in str(frame).split("\n"):
            message = json.loads(line)
            asyncapi.validate_server_message(message)
            if message.get("id") in got:
                got[message["id"]].append(message)
    return got


async def _ping_steadily(ws: ClientConnection, count: int, every: float) -> list[dict[str, Any]]:
    """``count`` pings, one every ``every`` seconds, each awaited: the answers, in order."""
    answers = []
    for n in range(count):
        request_id = f"calm-{n}"
        await ws.send(json.dumps({"action": "ping", "id": request_id}))
        answers.append((await _answers(ws, {request_id}, timeout=30))[request_id][0])
        await asyncio.sleep(every)
    return answers


async def test_one_connections_flood_is_limited_while_another_is_served(
    local_stack: LocalStackProcess,
) -> None:
    """A connection that floods pings and subscribes gets some frames answered rate_limited (each
    with its id, and its deployment_id for a subscribe), no more allowed than the burst and the rate
    permit; another connection pinging at the same time gets every pong."""
    url = f"{local_stack.outputs['websocket_url']}?token={local_stack.token()}"
    deployment_id = f"D{uuid.uuid4().hex[:10].upper()}"
    frames: list[dict[str, Any]] = [
        {"action": "ping", "id": f"flood-{n}"}
        if n % 2
        else {"action": "subscribe", "deployment_id": deployment_id, "id": f"flood-{n}"}
        for n in range(FLOOD)
    ]
    async with connect(url) as flooder, connect(url) as calm:
        # When: the flood goes out at once, while the other connection pings every 50 ms.
        started = time.monotonic()
        calm_pings = asyncio.create_task(_ping_steadily(calm, count=10, every=0.05))
        for frame in frames:
            await flooder.send(json.dumps(frame))
        flood = await _answers(flooder, {frame["id"] for frame in frames}, timeout=60)
        elapsed = time.monotonic() - started
        calm_answers = await calm_pings

    refused = {
        request_id: messages[0] for request_id, messages in flood.items() if messages[0]["type"] == "error"
    }
    allowed = FLOOD - len(refused)
    limit = spec.FRAME_RATE_LIMIT
    assert refused, "a flood of 150 frames was never limited"
    assert {error["code"] for error in refused.values()} == {"rate_limited"}
    assert allowed >= limit.burst
    assert allowed <= limit.burst + limit.per_second * elapsed + 1, (allowed, elapsed)
    by_id = {frame["id"]: frame for frame in frames}
    for request_id, error in refused.items():
        frame = by_id[request_id]
        assert error["action"] == frame["action"]
        assert error.get("deployment_id") == frame.get("deployment_id")
        assert "retry in" in error["message"]
    assert [answer["type"] for answer in calm_answers] == ["pong"] * 10
