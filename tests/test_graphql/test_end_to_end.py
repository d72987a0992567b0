"""Plugin → EventBridge → broadcaster → history → GraphQL subscribers and queries, through gql."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import websockets
from botocore.credentials import Credentials
from gql import Client
from gql.client import AsyncClientSession
from gql.transport.aiohttp import AIOHTTPTransport
from gql.transport.appsync_auth import AppSyncIAMAuthentication, AppSyncJWTAuthentication
from gql.transport.appsync_websockets import AppSyncWebsocketsTransport

from cloud_ws_client.messages import split_frame
from plugin import OrchestratorPlugin
from tests.test_graphql.conftest import (
    EVENT_FIELDS,
    ON_EVENT,
    ON_UPDATE,
    GraphQLStack,
    request,
    stored,
)

pytestmark = pytest.mark.slow


def realtime(stack: GraphQLStack, token: str) -> AppSyncWebsocketsTransport:
    """gql's AppSync real-time transport with a Cognito JWT, pointed at the local API."""
    return AppSyncWebsocketsTransport(stack.realtime_url, auth=AppSyncJWTAuthentication(stack.host, token))


def http(stack: GraphQLStack, token: str) -> AIOHTTPTransport:
    """gql's HTTP transport with a Cognito JWT."""
    return AIOHTTPTransport(stack.url, auth=AppSyncJWTAuthentication(stack.host, token))


async def collect(
    session: AsyncClientSession, query: str, deployment_id: str, count: int, field: str
) -> list[dict[str, Any]]:
    """The first ``count`` results of a subscription."""
    received: list[dict[str, Any]] = []
    async for result in session.subscribe(request(query, {"d": deployment_id})):
        received.append(result[field])
        if len(received) == count:
            break
    return received


def play(outputs: dict[str, Any], deployment_id: str) -> None:
    """20 events through the plugin: 4 statuses (start, layers 1 and 2, success) around 16 log lines."""
    with OrchestratorPlugin.from_outputs(outputs, environment="dev") as plugin:
        plugin.deployment_started(deployment_id, total_layers=2)
        for layer in (1, 2):
            plugin.deployment_status(deployment_id, "deploying", current_layer=layer, total_layers=2)
            for line in range(8):
                plugin.log(deployment_id, f"layer {layer} line {line}", stack_name=f"stack-{layer}")
        plugin.deployment_completed(deployment_id, "succeeded")
        assert plugin.flush(30)


async def test_plugin_events_reach_graphql_subscribers_with_their_seq(
    graphql_stack: GraphQLStack, watcher: str, deployment_id: str
) -> None:
    """Both subscriptions get the plugin's 20 events (seq 1..20) and their 4 status updates."""
    before = graphql_stack.subscriptions()
    async with Client(transport=realtime(graphql_stack, watcher)) as session:
        events = asyncio.create_task(collect(session, ON_EVENT, deployment_id, 20, "onDeploymentEvent"))
        updates = asyncio.create_task(collect(session, ON_UPDATE, deployment_id, 4, "onDeploymentUpdated"))
        await graphql_stack.wait_subscriptions(before + 2)

        # The broadcaster publishes each batch it stored (handlers.broadcaster → server.appsync).
        await asyncio.to_thread(play, graphql_stack.outputs, deployment_id)

        received = await asyncio.wait_for(events, 30)
        statuses = await asyncio.wait_for(updates, 30)

    # Batches of one deployment may be published concurrently (as on AppSync, delivery order across
    # publishers is not promised): every event arrives once, and clients order by seq.
    received.sort(key=lambda event: int(event["seq"]))
    assert [event["seq"] for event in received] == list(range(1, 21))
    assert {event["deployment_id"] for event in received} == {deployment_id}
    by_type = [event["type"] for event in received]
    assert by_type.count("deployment.status") == 4
    assert by_type.count("log.created") == 16
    # EventBridge does not keep order either: seq is arrival order. Each status event has its update.
    status_events = [json.loads(event["data"]) for event in received if event["type"] == "deployment.status"]
    assert sorted((u["status"], str(u["current_layer"])) for u in statuses) == sorted(
        (data["status"], str(data.get("current_layer"))) for data in status_events
    )
    assert sorted(update["status"] for update in statuses) == [
        "deploying",
        "deploying",
        "deploying",
        "succeeded",
    ]
    assert sorted(str(update["current_layer"]) for update in statuses) == ["0", "1", "2", "None"]
    assert all(update["deployment_id"] == deployment_id and update["updated_at"] for update in statuses)
    # The same events, with the same seq, as the history holds.
    assert [event["event_id"] for event in received] == [
        event["event_id"] for event in await stored(graphql_stack, deployment_id, watcher, 20)
    ]

    async with Client(transport=http(graphql_stack, watcher)) as query:
        variables = {"d": deployment_id}
        since_10 = f"query($d: ID!) {{ deploymentEvents(deployment_id: $d, since: 10) {{ {EVENT_FIELDS} }} }}"
        tail = await query.execute(request(since_10, variables))
        page_of_5 = "query($d: ID!) { deploymentEvents(deployment_id: $d, since: 3, limit: 5) { seq } }"
        page = await query.execute(request(page_of_5, variables))
        # The checkpoint the query reads catches up within a second or so of the last event
        # (CHECKPOINT_IDLE_SECONDS); on a loaded machine, give it a few.
        for _ in range(100):
            state = await query.execute(
                request("query($d: ID!) { deployment(deployment_id: $d) }", variables)
            )
            if json.loads(state["deployment"])["seq"] == 20:
                break
            await asyncio.sleep(0.1)
    assert [event["seq"] for event in tail["deploymentEvents"]] == list(range(11, 21))
    assert tail["deploymentEvents"] == received[10:]
    assert [event["seq"] for event in page["deploymentEvents"]] == [4, 5, 6, 7, 8]
    deployment = json.loads(state["deployment"])
    assert deployment["seq"] == 20
    assert deployment["status"] == status_events[-1]["status"]  # the latest status by seq
    layers = [data["current_layer"] for data in status_events if data.get("current_layer") is not None]
    assert deployment["current_layer"] == layers[-1]
    assert deployment["total_layers"] == 2
    assert deployment["updated_at"] == received[-1]["timestamp"]
    # One truth per deployment: the query answers exactly the WebSocket API's snapshot.
    snapshot = await websocket_snapshot(graphql_stack, deployment_id, watcher)
    assert snapshot["seq"] == deployment.pop("seq")
    assert deployment.pop("deployment_id") == deployment_id
    assert deployment == snapshot["data"]


async def websocket_snapshot(stack: GraphQLStack, deployment_id: str, token: str) -> dict[str, Any]:
    """The ``deployment.snapshot`` the WebSocket API sends right after ``subscribed``."""
    async with websockets.connect(f"{stack.outputs['websocket_url']}?token={token}") as socket:
        await socket.send(json.dumps({"action": "subscribe", "deployment_id": deployment_id}))
        async with asyncio.timeout(10):
            while True:
                for part in split_frame(await socket.recv()):
                    message = json.loads(part)
                    if message.get("type") == "deployment.snapshot":
                        return dict(message)


async def test_unreported_deployment_is_pending_with_an_empty_history(
    graphql_stack: GraphQLStack, watcher: str, deployment_id: str
) -> None:
    """A deployment nobody reported on: no events, status pending at seq 0."""
    async with Client(transport=http(graphql_stack, watcher)) as query:
        result = await query.execute(
            request(
                "query($d: ID!) { deploymentEvents(deployment_id: $d) { seq } "
                "deployment(deployment_id: $d) }",
                {"d": deployment_id},
            )
        )
    assert result["deploymentEvents"] == []
    assert json.loads(result["deployment"])["status"] == "pending"
    assert json.loads(result["deployment"])["seq"] == 0


async def test_iam_signed_publish_from_gql_reaches_subscribers(
    graphql_stack: GraphQLStack, watcher: str, deployment_id: str
) -> None:
    """gql's own SigV4 signing (AppSyncIAMAuthentication) is accepted by the local API, as by AppSync."""
    before = graphql_stack.subscriptions()
    async with Client(transport=realtime(graphql_stack, watcher)) as session:
        events = asyncio.create_task(collect(session, ON_EVENT, deployment_id, 1, "onDeploymentEvent"))
        await graphql_stack.wait_subscriptions(before + 1)
        iam = AppSyncIAMAuthentication(
            graphql_stack.host,
            region_name=graphql_stack.outputs["region"],
            credentials=Credentials("local", "local"),
        )
        async with Client(transport=AIOHTTPTransport(graphql_stack.url, auth=iam)) as publisher:
            result = await publisher.execute(
                request(
                    "mutation($d: ID!, $data: AWSJSON!) { publishDeploymentEvent(deployment_id: $d, seq: 7, "
                    'type: "log.created", data: $data) { deployment_id seq type data } }',
                    {"d": deployment_id, "data": json.dumps({"message": "hello"})},
                )
            )
        received = await asyncio.wait_for(events, 10)
    assert result["publishDeploymentEvent"]["seq"] == 7
    # Only the fields the mutation selected reach the subscriber; the rest are null.
    assert received == [
        {
            "deployment_id": deployment_id,
            "seq": 7,
            "type": "log.created",
            "event_id": None,
            "timestamp": None,
            "data": '{"message":"hello"}',
        }
    ]
