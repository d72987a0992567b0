"""A ``rate_limited`` refusal reaches the request it answers, and asks for nothing more (docs/protocol.md)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from cloud_ws_client import ClientProtocol, CloudWebSocketClient, ErrorMessage, RequestError
from cloud_ws_client.protocol import ERROR_CODES, RECONNECT_ERROR_CODES, REFUSED_SUBSCRIPTION_CODES
from tests.support.local_stack import LocalStackProcess, start_local_stack, stop_local_stack
from tests.test_client.conftest import options

#: List requests sent at once: several times the test stack's burst.
FLOOD = 40


def refusal(action: str, request_id: str, **fields: Any) -> str:
    return json.dumps(
        {
            "type": "error",
            "code": "rate_limited",
            "message": "this connection sent frames faster than allowed; retry in 0.1 s",
            "action": action,
            "id": request_id,
            **fields,
        }
    )


def test_rate_limited_is_a_known_code_that_neither_drops_nor_reconnects() -> None:
    """Transient: a new connection would not help, and asking again later may succeed."""
    assert "rate_limited" in ERROR_CODES
    assert "rate_limited" not in RECONNECT_ERROR_CODES
    assert "rate_limited" not in REFUSED_SUBSCRIPTION_CODES


def test_a_rate_limited_subscribe_is_delivered_and_the_subscription_kept() -> None:
    """The refusal reaches the caller as the answer to its subscribe; the next connection asks again."""
    protocol = ClientProtocol()
    request = protocol.subscribe("D1")

    (error,) = protocol.receive(refusal("subscribe", request.request_id, deployment_id="D1"), 0)

    assert isinstance(error, ErrorMessage)
    assert (error.code, error.deployment_id, error.request_id) == ("rate_limited", "D1", request.request_id)
    assert protocol.pending == 0
    assert protocol.subscriptions == ("D1",)
    assert [json.loads(frame.text)["deployment_id"] for frame in protocol.resubscribe_frames()] == ["D1"]


def test_a_rate_limited_list_request_is_delivered_as_its_answer() -> None:
    """The client turns it into RequestError("rate_limited: ...", "rate_limited") for list_deployments()."""
    protocol = ClientProtocol()
    request = protocol.list_deployments()

    (error,) = protocol.receive(refusal("list_deployments", request.request_id), 0)

    assert isinstance(error, ErrorMessage)
    assert (error.code, error.request_id) == ("rate_limited", request.request_id)
    assert protocol.pending == 0


@pytest.fixture(scope="module")
def tight_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStackProcess]:
    """A stack of its own with a small allowance (5 frames, then 1 a second): the flood below
    outruns it however fast this machine handles frames (the gateway reads a connection's next
    frame only when one of its 8 in flight is done, so a slow stack paces a flood by itself)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FRAME_BURST", "5")
        patch.setenv("FRAME_RATE_PER_SECOND", "1")
        started = start_local_stack(tmp_path_factory.mktemp("tight-stack"))
    yield started
    assert stop_local_stack(started) == 0


@pytest.mark.slow
async def test_list_deployments_past_the_limit_raises_request_error(tight_stack: LocalStackProcess) -> None:
    """Through a real stack: a burst of list requests well past the limit; the refused ones raise
    RequestError with the code, the others answer, and the client stays connected."""
    client = CloudWebSocketClient(tight_stack.outputs["websocket_url"], tight_stack.token, options=options())
    async with client:
        results = await asyncio.gather(
            *(client.list_deployments(limit=1, timeout=120) for _ in range(FLOOD)), return_exceptions=True
        )
        assert client.connected
    refused = [r for r in results if isinstance(r, BaseException)]
    assert refused, "a burst of list requests several times the limit was never refused"
    assert all(isinstance(r, RequestError) and r.code == "rate_limited" for r in refused), refused[:3]
    assert len(refused) < FLOOD
