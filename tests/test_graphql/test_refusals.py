"""Every refusal of the local GraphQL API: its AppSync error, and nothing delivered, registered or stored."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from gql import Client
from gql.transport.aiohttp import AIOHTTPTransport
from gql.transport.appsync_auth import AppSyncJWTAuthentication
from gql.transport.appsync_websockets import AppSyncWebsocketsTransport
from gql.transport.exceptions import TransportQueryError, TransportServerError
from jose import jwt
from moto.utilities.utils import load_resource

from tests.test_graphql.conftest import (
    ON_EVENT,
    ON_UPDATE,
    GraphQLStack,
    RawRealtime,
    header_param,
    request,
    sequenced,
)

pytestmark = pytest.mark.slow


def expired(token: str) -> str:
    """``token`` with its expiry an hour ago, signed with the pool's own key (only ``exp`` is wrong)."""
    claims = jwt.get_unverified_claims(token)
    claims["exp"] = int(time.time()) - 3600
    claims["iat"] = int(time.time()) - 7200
    return jwt.encode(
        claims,
        load_resource("cognitoidp/resources/jwks-private.json"),
        algorithm="RS256",
        headers={"kid": "dummy"},
    )


async def first_event(transport: AppSyncWebsocketsTransport, query: str, variables: dict[str, Any]) -> None:
    """Subscribe with gql; fails the test if any event arrives (every caller expects a refusal)."""
    async with Client(transport=transport) as session:
        async for _ in session.subscribe(request(query, variables)):
            pytest.fail("a refused subscription received an event")


async def listening(stack: GraphQLStack, token: str, deployment_id: str) -> RawRealtime:
    """A correctly subscribed raw client: the witness that a refused publish delivers nothing."""
    header = header_param({"host": stack.host, "Authorization": token})
    client = await RawRealtime.open(f"{stack.realtime_url}?header={header}&payload=e30=")
    assert (await client.init())["type"] == "connection_ack"
    auth = {"host": stack.host, "Authorization": token}
    await client.start("witness", ON_EVENT, {"d": deployment_id}, auth)
    assert await client.receive() == {"type": "start_ack", "id": "witness"}
    return client


@pytest.mark.parametrize("token_kind", ["garbage", "expired"])
async def test_refused_jwt_gets_connection_error_and_registers_nothing(
    graphql_stack: GraphQLStack, watcher: str, deployment_id: str, token_kind: str
) -> None:
    """A garbage or expired JWT: gql raises on connection_error, HTTP answers 401, nothing is registered."""
    token = "not.a.jwt" if token_kind == "garbage" else expired(watcher)
    before = graphql_stack.subscriptions()
    transport = AppSyncWebsocketsTransport(
        graphql_stack.realtime_url, auth=AppSyncJWTAuthentication(graphql_stack.host, token)
    )
    with pytest.raises(TransportServerError) as refused:
        await first_event(transport, ON_EVENT, {"d": deployment_id})
    assert "UnauthorizedException" in str(refused.value)
    if token_kind == "expired":
        assert "expired" in str(refused.value)

    reply = graphql_stack.post(
        {"query": "query($d: ID!) { deployment(deployment_id: $d) }", "variables": {"d": deployment_id}},
        token,
    )
    assert reply.status_code == 401
    assert reply.json()["errors"][0]["errorType"] == "UnauthorizedException"
    assert "data" not in reply.json()
    assert graphql_stack.subscriptions() == before


async def test_subscription_missing_its_argument_is_a_validation_error(
    graphql_stack: GraphQLStack, watcher: str, deployment_id: str
) -> None:
    """``onDeploymentEvent`` without ``deployment_id``: an ``error`` for that id, and no events after it."""
    before = graphql_stack.subscriptions()
    transport = AppSyncWebsocketsTransport(
        graphql_stack.realtime_url, auth=AppSyncJWTAuthentication(graphql_stack.host, watcher)
    )
    with pytest.raises(TransportQueryError) as refused:
        await first_event(transport, "subscription { onDeploymentEvent { seq } }", {})
    assert "ValidationError" in str(refused.value)
    assert "deployment_id" in str(refused.value)
    assert graphql_stack.subscriptions() == before

    # The same start by hand: nothing arrives for it once events flow.
    header = header_param({"host": graphql_stack.host, "Authorization": watcher})
    client = await RawRealtime.open(f"{graphql_stack.realtime_url}?header={header}&payload=e30=")
    assert (await client.init())["type"] == "connection_ack"
    await client.start("bad", "subscription { onDeploymentEvent { seq } }", {}, {"Authorization": watcher})
    error = await client.receive()
    assert error["type"] == "error"
    assert error["id"] == "bad"
    assert error["payload"]["errors"][0]["errorType"] == "ValidationError"
    await graphql_stack.publish([sequenced(deployment_id, 1)])
    assert await client.quiet() == []
    await client.close()


async def test_user_jwt_cannot_call_publish_mutations(
    graphql_stack: GraphQLStack, watcher: str, deployment_id: str
) -> None:
    """A user's JWT on ``publishDeploymentEvent``/``Update``: Unauthorized, null result, nothing delivered."""
    witness = await listening(graphql_stack, watcher, deployment_id)
    async with Client(
        transport=AIOHTTPTransport(
            graphql_stack.url, auth=AppSyncJWTAuthentication(graphql_stack.host, watcher)
        )
    ) as session:
        for mutation in (
            'publishDeploymentEvent(deployment_id: $d, seq: 1, type: "log.created", data: "{}") { seq }',
            'publishDeploymentUpdate(deployment_id: $d, status: "failed", updated_at: "now") { status }',
        ):
            with pytest.raises(TransportQueryError) as refused:
                await session.execute(request(f"mutation($d: ID!) {{ {mutation} }}", {"d": deployment_id}))
            error: dict[str, Any] = refused.value.errors[0]  # type: ignore[index]
            assert error["errorType"] == "Unauthorized"
            assert error["message"].startswith("Not Authorized to access publishDeployment")
            assert refused.value.data == {mutation.split("(")[0]: None}
    assert await witness.quiet() == []
    assert graphql_stack.history(deployment_id, watcher) == []
    await witness.close()


async def test_deployment_the_user_may_not_watch_is_refused_everywhere(
    graphql_stack: GraphQLStack, watcher: str, outsider: str, deployment_id: str
) -> None:
    """A user outside SUBSCRIBE_GROUPS: subscriptions and queries refused; no event reaches them."""
    before = graphql_stack.subscriptions()
    client = await RawRealtime.open(
        graphql_stack.realtime_url,
        additional_headers={"Authorization": outsider, "host": graphql_stack.host},
    )
    assert (await client.init())["type"] == "connection_ack"  # authenticated: the refusal is per deployment
    for op_id, query in (("e", ON_EVENT), ("u", ON_UPDATE)):
        await client.start(
            op_id, query, {"d": deployment_id}, {"host": graphql_stack.host, "Authorization": outsider}
        )
        error = await client.receive()
        assert error["type"] == "error"
        assert error["id"] == op_id
        assert error["payload"]["errors"][0]["errorType"] == "Unauthorized"
        assert "Not Authorized to access onDeployment" in error["payload"]["errors"][0]["message"]
    assert graphql_stack.subscriptions() == before
    await graphql_stack.publish(
        [sequenced(deployment_id, 1, "deployment.status", {"status": "deploying", "current_layer": 1})]
    )
    assert await client.quiet() == []
    await client.close()

    query = "query($d: ID!) { deploymentEvents(deployment_id: $d) { seq } deployment(deployment_id: $d) }"
    reply = graphql_stack.post({"query": query, "variables": {"d": deployment_id}}, outsider)
    body = reply.json()
    assert reply.status_code == 200
    assert body["data"] is None  # deploymentEvents is non-null: its refusal nulls the whole result
    assert {error["errorType"] for error in body["errors"]} == {"Unauthorized"}
    assert {tuple(error["path"]) for error in body["errors"]} == {("deploymentEvents",), ("deployment",)}


async def test_publish_with_the_wrong_secret_is_refused_and_never_raises(
    graphql_stack: GraphQLStack, watcher: str, deployment_id: str
) -> None:
    """A signature from other credentials: 403, the publisher logs and drops, nothing delivered."""
    witness = await listening(graphql_stack, watcher, deployment_id)
    publisher = graphql_stack.publisher(secret="not-the-local-secret")
    await graphql_stack.publish([sequenced(deployment_id, 1), sequenced(deployment_id, 2)], publisher)
    assert publisher.published == 0
    assert publisher.dropped == 2
    assert await witness.quiet() == []
    await witness.close()


async def test_tampered_signed_body_is_refused(
    graphql_stack: GraphQLStack, watcher: str, deployment_id: str
) -> None:
    """A body changed after signing: 403, nothing executed."""
    witness = await listening(graphql_stack, watcher, deployment_id)
    mutation = (
        f'mutation {{ publishDeploymentEvent(deployment_id: "{deployment_id}", seq: 1, type: "log.created", '
        'data: "{}") { deployment_id seq type data } }'
    )
    body = json.dumps({"query": mutation})
    request = AWSRequest("POST", graphql_stack.url, data=body, headers={"content-type": "application/json"})
    SigV4Auth(Credentials("local", "local"), "appsync", graphql_stack.outputs["region"]).add_auth(request)
    headers = dict(request.headers)
    tampered = requests.post(
        graphql_stack.url, data=body.replace("seq: 1", "seq: 9"), headers=headers, timeout=5
    )
    assert tampered.status_code == 403
    assert tampered.json()["errors"][0]["errorType"] == "InvalidSignatureException"
    assert await witness.quiet() == []
    accepted = requests.post(graphql_stack.url, data=body, headers=headers, timeout=5)
    assert accepted.status_code == 200
    assert accepted.json()["data"]["publishDeploymentEvent"]["seq"] == 1
    assert [m["payload"]["data"]["onDeploymentEvent"]["seq"] for m in await witness.quiet()] == [1]
    await witness.close()
