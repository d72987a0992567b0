"""AppSync's real-time protocol details the stock clients rely on, checked message by message."""

from __future__ import annotations

import base64
import json

import pytest
import websockets
from botocore.credentials import Credentials
from gql.transport.appsync_auth import AppSyncIAMAuthentication

from tests.test_graphql.conftest import ON_EVENT, GraphQLStack, RawRealtime, header_param, sequenced

pytestmark = pytest.mark.slow


def padded_headers(stack: GraphQLStack, token: str) -> dict[str, str]:
    """Connection headers whose standard base64 holds both ``+`` and ``/`` (form decoding would break it)."""
    for size in range(200):
        headers = {"host": stack.host, "Authorization": token, "x-pad": "?" * size + ">" * (size % 7)}
        encoded = header_param(headers)
        if "+" in encoded and "/" in encoded:
            return headers
    raise AssertionError("no padding gives both + and /")


async def test_header_query_parameter_keeps_plus_signs(graphql_stack: GraphQLStack, watcher: str) -> None:
    """``?header=<base64>&payload=e30=`` with a raw ``+`` in it (as gql sends it) is acknowledged."""
    headers = padded_headers(graphql_stack, watcher)
    client = await RawRealtime.open(
        f"{graphql_stack.realtime_url}?header={header_param(headers)}&payload=e30="
    )
    assert client.websocket.subprotocol == "graphql-ws"
    ack = await client.init()
    assert ack == {"type": "connection_ack", "payload": {"connectionTimeoutMs": 300000}}
    await client.close()


async def test_header_subprotocol_is_accepted_as_amplify_sends_it(
    graphql_stack: GraphQLStack, watcher: str, deployment_id: str
) -> None:
    """A ``header-<base64url>`` subprotocol authenticates; the server answers ``graphql-ws``."""
    headers = json.dumps({"host": graphql_stack.host, "Authorization": watcher}).encode()
    entry = "header-" + base64.urlsafe_b64encode(headers).decode().rstrip("=")
    client = await RawRealtime.open(graphql_stack.realtime_url, subprotocols=["graphql-ws", entry])
    assert client.websocket.subprotocol == "graphql-ws"
    assert (await client.init())["type"] == "connection_ack"
    await client.start(
        "1", ON_EVENT, {"d": deployment_id}, {"host": graphql_stack.host, "Authorization": watcher}
    )
    assert await client.receive() == {"type": "start_ack", "id": "1"}
    await client.close()


async def test_ka_follows_the_ack(graphql_stack: GraphQLStack, watcher: str) -> None:
    """Clients time out without ``ka``: the server sends one right after ``connection_ack``."""
    client = await RawRealtime.open(
        graphql_stack.realtime_url, additional_headers={"Authorization": watcher, "host": graphql_stack.host}
    )
    await client.send({"type": "connection_init"})
    assert json.loads(await client.websocket.recv())["type"] == "connection_ack"
    assert json.loads(await client.websocket.recv()) == {"type": "ka"}
    await client.close()


async def test_ids_are_echoed_exactly_and_stop_completes(
    graphql_stack: GraphQLStack, watcher: str, deployment_id: str
) -> None:
    """An id with spaces, ``+``, ``/`` and non-ASCII comes back verbatim on every reply; stop → complete."""
    op_id = "op 1/+ä-Ω"
    before = graphql_stack.subscriptions()
    client = await RawRealtime.open(
        graphql_stack.realtime_url, additional_headers={"Authorization": watcher, "host": graphql_stack.host}
    )
    assert (await client.init())["type"] == "connection_ack"
    await client.start(
        op_id, ON_EVENT, {"d": deployment_id}, {"host": graphql_stack.host, "Authorization": watcher}
    )
    assert await client.receive() == {"type": "start_ack", "id": op_id}
    assert graphql_stack.subscriptions() == before + 1

    await graphql_stack.publish([sequenced(deployment_id, 1)])
    data = await client.receive()
    assert data["type"] == "data"
    assert data["id"] == op_id
    assert data["payload"]["data"]["onDeploymentEvent"]["seq"] == 1

    await client.send({"type": "stop", "id": op_id})
    assert await client.receive() == {"type": "complete", "id": op_id}
    assert graphql_stack.subscriptions() == before
    await graphql_stack.publish([sequenced(deployment_id, 2)])
    assert await client.quiet() == []
    await client.close()


async def test_subscribers_get_only_their_selection_and_their_deployment(
    graphql_stack: GraphQLStack, watcher: str, deployment_id: str
) -> None:
    """A subscription selecting ``seq`` gets only ``seq``; events of another deployment are filtered out."""
    client = await RawRealtime.open(
        graphql_stack.realtime_url, additional_headers={"Authorization": watcher, "host": graphql_stack.host}
    )
    assert (await client.init())["type"] == "connection_ack"
    query = "subscription($d: ID!) { onDeploymentEvent(deployment_id: $d) { seq } }"
    await client.start(
        "s", query, {"d": deployment_id}, {"host": graphql_stack.host, "Authorization": watcher}
    )
    assert (await client.receive())["type"] == "start_ack"

    await graphql_stack.publish([sequenced(f"{deployment_id}-other", 1), sequenced(deployment_id, 5)])
    assert await client.quiet() == [
        {"type": "data", "id": "s", "payload": {"data": {"onDeploymentEvent": {"seq": 5}}}}
    ]
    await client.close()


async def test_start_without_authorization_or_init_is_refused(
    graphql_stack: GraphQLStack, watcher: str, deployment_id: str
) -> None:
    """``start`` before ``connection_init`` or without its own authorization: an error, nothing registered."""
    before = graphql_stack.subscriptions()
    client = await RawRealtime.open(
        graphql_stack.realtime_url, additional_headers={"Authorization": watcher, "host": graphql_stack.host}
    )
    await client.start("early", ON_EVENT, {"d": deployment_id}, {"Authorization": watcher})
    early = await client.receive()
    assert early["type"] == "error"
    assert early["id"] == "early"
    assert (await client.init())["type"] == "connection_ack"
    await client.send(
        {
            "id": "bare",
            "type": "start",
            "payload": {"data": json.dumps({"query": ON_EVENT, "variables": {"d": deployment_id}})},
        }
    )
    bare = await client.receive()
    assert bare["type"] == "error"
    assert bare["id"] == "bare"
    assert bare["payload"]["errors"][0]["errorType"] == "UnauthorizedException"
    assert graphql_stack.subscriptions() == before
    await graphql_stack.publish([sequenced(deployment_id, 1)])
    assert await client.quiet() == []
    await client.close()


async def test_queries_are_not_served_on_the_realtime_endpoint(
    graphql_stack: GraphQLStack, watcher: str, deployment_id: str
) -> None:
    """Only subscriptions start on ``/graphql/realtime``, as on AppSync."""
    client = await RawRealtime.open(
        graphql_stack.realtime_url, additional_headers={"Authorization": watcher, "host": graphql_stack.host}
    )
    assert (await client.init())["type"] == "connection_ack"
    query = "query($d: ID!) { deployment(deployment_id: $d) }"
    await client.start("q", query, {"d": deployment_id}, {"Authorization": watcher})
    error = await client.receive()
    assert error["type"] == "error"
    assert error["payload"]["errors"][0]["errorType"] == "UnsupportedOperation"
    await client.close()


async def test_handshake_without_graphql_ws_is_refused(graphql_stack: GraphQLStack) -> None:
    """The realtime endpoint speaks only ``graphql-ws``."""
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(graphql_stack.realtime_url)
    assert refused.value.response.status_code == 400


async def test_iam_connections_are_verified_but_may_not_subscribe(
    graphql_stack: GraphQLStack, deployment_id: str
) -> None:
    """gql's SigV4 connection headers (``/graphql/connect``) are accepted; subscriptions stay Cognito-only."""
    iam = AppSyncIAMAuthentication(
        graphql_stack.host,
        region_name=graphql_stack.outputs["region"],
        credentials=Credentials("local", "local"),
    )
    client = await RawRealtime.open(
        f"{graphql_stack.realtime_url}?header={header_param(iam.get_headers())}&payload=e30="
    )
    assert (await client.init())["type"] == "connection_ack"
    data = json.dumps({"query": ON_EVENT, "variables": {"d": deployment_id}})
    await client.send(
        {
            "id": "i",
            "type": "start",
            "payload": {"data": data, "extensions": {"authorization": iam.get_headers(data)}},
        }
    )
    error = await client.receive()
    assert error["type"] == "error"
    assert error["payload"]["errors"][0]["errorType"] == "Unauthorized"
    await client.close()

    forged = {**iam.get_headers(), "x-amz-date": "20200101T000000Z"}
    refused = await RawRealtime.open(
        f"{graphql_stack.realtime_url}?header={header_param(forged)}&payload=e30="
    )
    answer = await refused.init()
    assert answer["type"] == "connection_error"
    assert answer["payload"]["errors"][0]["errorType"] == "InvalidSignatureException"


async def test_malformed_messages_get_errors_and_the_connection_stays_usable(
    graphql_stack: GraphQLStack, watcher: str, deployment_id: str
) -> None:
    """Not JSON, an unknown type, no id, bad data, a duplicate id: each an ``error``; the socket lives on."""
    client = await RawRealtime.open(
        graphql_stack.realtime_url, additional_headers={"Authorization": watcher, "host": graphql_stack.host}
    )
    assert (await client.init())["type"] == "connection_ack"
    auth = {"host": graphql_stack.host, "Authorization": watcher}

    async def error_type() -> str:
        message = await client.receive()
        assert message["type"] == "error", message
        return str(message["payload"]["errors"][0]["errorType"])

    await client.websocket.send("not json")
    assert await error_type() == "MessageFormatException"
    await client.send({"type": "subscribe"})
    assert await error_type() == "UnsupportedOperation"
    await client.send({"type": "start", "payload": {}})
    assert await error_type() == "MessageFormatException"
    await client.send({"type": "stop"})
    assert await error_type() == "MessageFormatException"
    await client.send({"id": "d", "type": "start", "payload": {"data": "{not json"}})
    assert await error_type() == "MessageFormatException"
    await client.send(
        {
            "id": "v",
            "type": "start",
            "payload": {
                "data": json.dumps({"query": ON_EVENT, "variables": [1]}),
                "extensions": {"authorization": auth},
            },
        }
    )
    assert await error_type() == "MessageFormatException"
    await client.start("same", ON_EVENT, {"d": deployment_id}, auth)
    assert await client.receive() == {"type": "start_ack", "id": "same"}
    await client.start("same", ON_EVENT, {"d": deployment_id}, auth)
    assert await error_type() == "DuplicatedOperationError"
    await client.send({"type": "stop", "id": "never-started"})
    assert await client.receive() == {"type": "complete", "id": "never-started"}
    await graphql_stack.publish([sequenced(deployment_id, 1)])
    data = await client.receive()
    assert data["id"] == "same"
    await client.close()


async def test_garbage_connection_header_is_a_connection_error(graphql_stack: GraphQLStack) -> None:
    """A ``header`` parameter that is not base64 JSON: refused at ``connection_init``, then closed."""
    client = await RawRealtime.open(f"{graphql_stack.realtime_url}?header=%25%25%25&payload=e30=")
    answer = await client.init()
    assert answer["type"] == "connection_error"
    assert answer["payload"]["errors"][0]["errorType"] == "UnauthorizedException"
    assert "base64" in answer["payload"]["errors"][0]["message"]
    with pytest.raises(websockets.ConnectionClosed):
        await client.receive(timeout=5)
