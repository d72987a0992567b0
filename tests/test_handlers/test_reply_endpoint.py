"""Where the route functions post their replies: the API's execute-api endpoint, never the event's domainName.

Behind a custom domain, ``requestContext.domainName`` is that domain and its
base-path mapping key need not be the stage, so ``https://{domainName}/{stage}``
can miss the API (or reach another one). The execute-api endpoint always
reaches this API's stage. ``MANAGEMENT_ENDPOINT`` overrides it where the API
is not on AWS (``cloud-ws local`` sets it; the component leaves it off the
route functions: tests/test_component/test_program.py,
``test_function_environment_is_what_the_handlers_validate``).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from contract.environment import MANAGEMENT_ENDPOINT
from handlers import ping, subscribe
from server.apigw import WebSocketEvent
from server.management import ManagementApi
from server.runtime import Runtime, reset_runtime
from tests.support.apigw import STAGE, websocket_event
from tests.support.moto_stack import REGION, Stack

CUSTOM_DOMAIN = "ws.example.com"
API_ID = "abc123"
EXECUTE_API = f"https://{API_ID}.execute-api.{REGION}.amazonaws.com/{STAGE}"


def _custom_domain_event(route_key: str, connection_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """An event as API Gateway sends it when the client connected through a custom domain."""
    event = websocket_event(route_key, connection_id, json.dumps(body))
    event["requestContext"]["domainName"] = CUSTOM_DOMAIN
    event["requestContext"]["apiId"] = API_ID
    return event


@pytest.fixture
def endpoints(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The endpoints the route functions ask to post to, as in the cloud (no MANAGEMENT_ENDPOINT);
    the posts themselves still land on the stand-in so the replies can be read."""
    asked: list[str] = []
    real = Runtime.management

    def recorded(self: Runtime, endpoint: str) -> ManagementApi:
        asked.append(endpoint)
        return real(self, stack.mgmt.endpoint)

    monkeypatch.setattr(Runtime, "management", recorded)
    monkeypatch.delenv(MANAGEMENT_ENDPOINT)
    reset_runtime()
    return asked


def test_execute_api_endpoint_ignores_the_custom_domain() -> None:
    """The endpoint is built from apiId, the function's region and the stage alone."""
    event = WebSocketEvent.from_lambda(_custom_domain_event("ping", "c1", {"action": "ping"}))

    assert event.domain_name == CUSTOM_DOMAIN
    assert event.execute_api_endpoint(REGION) == EXECUTE_API


def test_reply_through_a_custom_domain_goes_to_execute_api(stack: Stack, endpoints: list[str]) -> None:
    """A ping that came through ws.example.com is answered through the execute-api endpoint."""
    connection_id = stack.open("alice")

    reply = ping.handler(_custom_domain_event("ping", connection_id, {"action": "ping", "id": "p1"}), None)

    assert reply == {"statusCode": 200}
    assert endpoints == [EXECUTE_API]
    assert not any(CUSTOM_DOMAIN in endpoint for endpoint in endpoints)
    assert [m["type"] for m in stack.replies(connection_id)] == ["pong"]


def test_refused_frame_is_answered_through_execute_api_and_stores_nothing(
    stack: Stack, endpoints: list[str]
) -> None:
    """The error reply to a refused frame takes the same route, and the refusal changes nothing stored."""
    connection_id = stack.open("alice")
    before = stack.snapshot()

    reply = subscribe.handler(
        _custom_domain_event("subscribe", connection_id, {"action": "subscribe", "id": "s1"}), None
    )

    assert reply == {"statusCode": 200}
    assert endpoints == [EXECUTE_API]
    (error,) = stack.replies(connection_id)
    assert error["type"] == "error"
    assert error["id"] == "s1"
    assert stack.snapshot() == before


def test_management_endpoint_overrides_where_the_api_is_not_on_aws(stack: Stack) -> None:
    """The local stack sets MANAGEMENT_ENDPOINT on every function: replies go there, not to AWS."""
    connection_id = stack.open("alice")

    ping.handler(_custom_domain_event("ping", connection_id, {"action": "ping"}), None)

    assert [m["type"] for m in stack.replies(connection_id)] == ["pong"]  # posted to the stand-in


def test_local_stack_gives_the_route_functions_their_endpoint() -> None:
    """cloud-ws local has no execute-api: its handler environment names its own @connections URL."""
    from emulator.backend import BackendInfo
    from emulator.stack import LocalSettings, handler_environment

    backend = BackendInfo(
        endpoint="http://127.0.0.1:9",
        region=REGION,
        tables={},
        user_pool_id=f"{REGION}_pool",
        user_pool_client_id="client",
        event_bus_name="bus",
        event_source="src",
        rule_name="rule",
        queue_url="http://127.0.0.1:9/queue",
        queue_arn="arn:aws:sqs:us-east-1:000000000000:queue",
        dead_letter_queue_url="http://127.0.0.1:9/dlq",
    )

    env = handler_environment(LocalSettings(stage="local"), 8080, backend)

    assert env[MANAGEMENT_ENDPOINT] == "http://127.0.0.1:8080/local"
