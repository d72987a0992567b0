"""The shuffle fault's control route (``/_cloud-ws/faults/shuffle``) and ``cloud-ws local``'s options for it.

The route sets what the delivery mapping reads: a good body changes the bound
(0 turns it off), a bad one is answered 400 with the reason and changes
nothing. A real ``cloud-ws local`` started with ``--shuffle-ms`` and
``--delivery-concurrency`` serves the route on its HTTP port and still
delivers events through the shuffled, concurrent mapping.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from starlette.requests import Request
from starlette.responses import Response
from websockets.sync.client import connect

from emulator.faults import FaultRoutes, Faults, ShuffleFault
from tests.support.local_stack import (
    CLI,
    LocalStackProcess,
    cloud_ws,
    finish,
    start_local_stack,
    stop_local_stack,
)
from tests.support.waiting import eventually_sync


def _call(routes: FaultRoutes, method: str, raw: bytes) -> tuple[int, dict[str, Any]]:
    scope = {
        "type": "http",
        "method": method,
        "path": "/_cloud-ws/faults/shuffle",
        "headers": [(b"content-type", b"application/json")],
        "query_string": b"",
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": raw, "more_body": False}

    response: Response = asyncio.run(routes.shuffle(Request(scope, receive)))
    return response.status_code, json.loads(bytes(response.body))


def _post(routes: FaultRoutes, body: Any) -> tuple[int, dict[str, Any]]:
    return _call(routes, "POST", json.dumps(body).encode())


def test_a_bound_turns_the_shuffle_on_and_zero_turns_it_off() -> None:
    faults = Faults()
    routes = FaultRoutes(faults)
    assert _call(routes, "GET", b"") == (200, {"max_delay_ms": 0})
    assert _post(routes, {"max_delay_ms": 200}) == (200, {"max_delay_ms": 200})
    assert faults.shuffle.max_delay_ms == 200
    assert 0 <= faults.shuffle.delay_seconds() <= 0.2
    assert _call(routes, "GET", b"") == (200, {"max_delay_ms": 200})
    assert _post(routes, {"max_delay_ms": 12.5}) == (200, {"max_delay_ms": 12.5})
    assert _post(routes, {"max_delay_ms": 0}) == (200, {"max_delay_ms": 0})
    assert faults.shuffle.delay_seconds() == 0


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "max_delay_ms is required"),
        (b"{}", "max_delay_ms is required"),
        (b"not json", "must be a JSON object"),
        (b"[200]", "must be a JSON object"),
        (b'{"max_delay_ms": -1}', "from 0 (off) to 60000"),
        (b'{"max_delay_ms": 60001}', "from 0 (off) to 60000"),
        (b'{"max_delay_ms": "200"}', "from 0 (off) to 60000"),
        (b'{"max_delay_ms": true}', "from 0 (off) to 60000"),
        (b'{"max_delay_ms": null}', "from 0 (off) to 60000"),
        (b'{"max_delay_ms": 1e999}', "from 0 (off) to 60000"),
        (b'{"max_delay_ms": 200, "min_delay_ms": 10}', "unknown field(s) min_delay_ms"),
    ],
)
def test_a_bad_body_is_refused_with_its_reason_and_changes_nothing(raw: bytes, reason: str) -> None:
    faults = Faults(shuffle=ShuffleFault(150))
    status, body = _call(FaultRoutes(faults), "POST", raw)
    assert status == 400
    assert reason in body["error"]
    assert faults.shuffle.max_delay_ms == 150


# -- a real `cloud-ws local` ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shuffled_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStackProcess]:
    stack = start_local_stack(
        tmp_path_factory.mktemp("shuffled-stack"), "--shuffle-ms", "50", "--delivery-concurrency", "3"
    )
    try:
        yield stack
    finally:
        stop_local_stack(stack)


def test_the_local_stack_starts_with_the_shuffle_it_was_given_and_serves_the_route(
    shuffled_stack: LocalStackProcess,
) -> None:
    url = f"{shuffled_stack.http}/_cloud-ws/faults/shuffle"
    assert requests.get(url, timeout=5).json() == {"max_delay_ms": 50}
    refused = requests.post(url, json={"max_delay_ms": -5}, timeout=5)
    assert refused.status_code == 400
    assert "max_delay_ms" in refused.json()["error"]
    assert requests.get(url, timeout=5).json() == {"max_delay_ms": 50}
    assert shuffled_stack.control("faults/shuffle", {"max_delay_ms": 80}) == {"max_delay_ms": 80}
    assert shuffled_stack.control("faults/shuffle", {"max_delay_ms": 50}) == {"max_delay_ms": 50}


def test_events_reach_a_subscriber_through_the_shuffled_concurrent_mapping(
    shuffled_stack: LocalStackProcess,
) -> None:
    deployment = "SHUFFLED1"
    token = shuffled_stack.token()
    with connect(f"{shuffled_stack.outputs['websocket_url']}?token={token}") as ws:
        ws.send(json.dumps({"action": "subscribe", "deployment_id": deployment}))
        received: list[dict[str, Any]] = []

        def take(message: Any) -> None:
            # A frame may carry several messages, one JSON object a line (docs/protocol.md).
            received.extend(json.loads(line) for line in str(message).splitlines() if line.strip())

        take(ws.recv(timeout=15))
        event_ids = {shuffled_stack.put_event(deployment) for _ in range(6)}

        def delivered() -> bool:
            while True:
                try:
                    take(ws.recv(timeout=0.05))
                except TimeoutError:
                    break
            return event_ids <= {m.get("event_id") for m in received}

        eventually_sync(delivered, "every event delivered once its shuffled batch ran")


@pytest.mark.parametrize(
    ("option", "value", "reason"),
    [
        ("--delivery-concurrency", "0", "--delivery-concurrency must be at least 1"),
        ("--shuffle-ms", "-1", "--shuffle-ms: max_delay_ms must be a number"),
    ],
)
def test_local_refuses_a_bad_option(tmp_path: Path, option: str, value: str, reason: str) -> None:
    assert CLI  # the same command the stack tests start
    code, out, err = finish(
        cloud_ws("local", "--port", "0", "--outputs", str(tmp_path / "o.json"), option, value)
    )
    assert code == 2
    assert reason in out + err
