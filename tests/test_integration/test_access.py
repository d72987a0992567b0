"""Projects and access on the local stack, through real sockets and real Cognito tokens.

The stack runs with an access policy (``cloud-ws local --access``): ``team-a``
may watch project ``alpha``, ``sre`` every project, ``team-b`` nothing of
these. Deployments get their project from the plugin (``project=``); the first
stored event fixes it.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import requests
from websockets.asyncio.client import ClientConnection, connect

from plugin import OrchestratorPlugin
from tests.support.cognito import ensure_user, sign_in
from tests.support.local_stack import LocalStackProcess, start_local_stack, stop_local_stack

POLICY = {"team-a": ["alpha"], "sre": ["*"], "team-b": ["gamma-*"]}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStackProcess]:
    """A local stack with an access policy."""
    running = start_local_stack(tmp_path_factory.mktemp("access"), "--access", json.dumps(POLICY))
    yield running
    assert stop_local_stack(running) == 0


def token_of(stack: LocalStackProcess, *groups: str) -> str:
    """A real ID token of a new user in ``groups``."""
    idp = stack.aws("cognito-idp")
    name = f"user-{uuid.uuid4().hex[:8]}"
    ensure_user(idp, stack.outputs["user_pool_id"], name, groups=groups)
    tokens = sign_in(idp, stack.outputs["user_pool_id"], stack.outputs["user_pool_client_id"], name, False)
    return tokens["IdToken"]


def report(stack: LocalStackProcess, project: str, deployment_id: str, status: str = "deploying") -> None:
    """One status event for ``deployment_id`` from a plugin of ``project``, sent before returning."""
    with OrchestratorPlugin.from_outputs(stack.outputs_path, project=project) as plugin:
        plugin.deployment_status(deployment_id, status)
        assert plugin.flush(timeout=30)


async def ask(ws: ClientConnection, frame: dict[str, Any]) -> list[dict[str, Any]]:
    """Send ``frame`` and read the messages of the post that answers it (matched by ``id``)."""
    request_id = uuid.uuid4().hex[:8]
    await ws.send(json.dumps({**frame, "id": request_id}))
    while True:
        raw = await asyncio.wait_for(ws.recv(), timeout=20)
        messages = [json.loads(line) for line in str(raw).split("\n")]
        if any(m.get("id") == request_id for m in messages):
            return messages


async def open_as(stack: LocalStackProcess, token: str) -> ClientConnection:
    return await connect(f"{stack.outputs['websocket_url']}?token={token}")


async def wait_until_stored(stack: LocalStackProcess, deployment_id: str, seq: int) -> None:
    """Poll the counter row until the deployment has ``seq`` events stored."""
    ddb = stack.aws("dynamodb")
    table = next(t for t in ddb.list_tables()["TableNames"] if t.endswith("-events"))
    for _ in range(400):
        item = ddb.get_item(
            TableName=table,
            Key={"deploymentId": {"S": deployment_id}, "seq": {"N": "0"}},
            ConsistentRead=True,
        ).get("Item")
        if item and int(item["lastSeq"]["N"]) >= seq:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{deployment_id} never reached seq {seq}")


def subscription_rows(stack: LocalStackProcess, deployment_id: str) -> list[dict[str, Any]]:
    ddb = stack.aws("dynamodb")
    table = next(t for t in ddb.list_tables()["TableNames"] if t.endswith("-subscriptions"))
    return list(
        ddb.query(
            TableName=table,
            KeyConditionExpression="deploymentId = :d",
            ExpressionAttributeValues={":d": {"S": deployment_id}},
            ConsistentRead=True,
        )["Items"]
    )


async def test_users_see_only_the_projects_their_groups_are_granted(stack: LocalStackProcess) -> None:
    """subscribe answers `forbidden` (with the deployment_id, storing nothing) for another team's
    deployment; list_deployments leaves it out; `*` sees both."""
    a, b = f"A{uuid.uuid4().hex[:6]}", f"B{uuid.uuid4().hex[:6]}"
    report(stack, "alpha", a)
    report(stack, "beta", b)
    await wait_until_stored(stack, a, 1)
    await wait_until_stored(stack, b, 1)

    alice = await open_as(stack, token_of(stack, "team-a"))
    replies = await ask(alice, {"action": "subscribe", "deployment_id": a})
    assert [m["type"] for m in replies] == ["subscribed", "deployment.snapshot"]
    assert replies[1]["data"]["status"] == "deploying"
    (refusal,) = await ask(alice, {"action": "subscribe", "deployment_id": b, "since": 0})
    assert refusal["type"] == "error"
    assert refusal["code"] == "forbidden"
    assert refusal["deployment_id"] == b
    assert "beta" in refusal["message"]
    assert subscription_rows(stack, b) == []  # nothing stored for the refused subscription
    (listed,) = await ask(alice, {"action": "list_deployments", "limit": 200})
    ids = {row["deployment_id"] for row in listed["deployments"]}
    assert a in ids
    assert b not in ids
    await alice.close()

    outsider = await open_as(stack, token_of(stack, "team-b"))
    (refusal,) = await ask(outsider, {"action": "subscribe", "deployment_id": a})
    assert refusal["code"] == "forbidden"
    (listed,) = await ask(outsider, {"action": "list_deployments", "limit": 200})
    assert not {a, b} & {row["deployment_id"] for row in listed["deployments"]}
    await outsider.close()

    sre = await open_as(stack, token_of(stack, "sre"))
    for deployment in (a, b):
        replies = await ask(sre, {"action": "subscribe", "deployment_id": deployment})
        assert replies[0]["type"] == "subscribed"
    (listed,) = await ask(sre, {"action": "list_deployments", "limit": 200})
    assert {a, b} <= {row["deployment_id"] for row in listed["deployments"]}
    await sre.close()


async def test_live_events_reach_only_subscribers_granted_their_project(stack: LocalStackProcess) -> None:
    """A subscription to a deployment nobody has reported on is accepted; its events then reach
    it only if the project they carry is granted."""
    new = f"N{uuid.uuid4().hex[:6]}"
    alice = await open_as(stack, token_of(stack, "team-a"))
    sre = await open_as(stack, token_of(stack, "sre"))
    for ws in (alice, sre):
        replies = await ask(ws, {"action": "subscribe", "deployment_id": new})
        assert replies[0]["type"] == "subscribed"
        assert replies[0]["seq"] == 0

    report(stack, "beta", new)
    live = json.loads(str(await asyncio.wait_for(sre.recv(), timeout=20)))
    assert live["deployment_id"] == new
    assert live["seq"] == 1
    # Alice's subscription was accepted but beta is not hers: nothing comes, even once sre has it.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(alice.recv(), timeout=1.5)
    # And asking again is now refused outright: the deployment's project is known.
    (refusal,) = await ask(alice, {"action": "subscribe", "deployment_id": new})
    assert refusal["code"] == "forbidden"
    await alice.close()
    await sre.close()


async def test_a_forged_project_claim_is_refused_and_never_stored(stack: LocalStackProcess) -> None:
    """An event claiming another project for a deployment is not stored: the next genuine event
    follows the last one with no gap, and the forged one reaches nobody."""
    d = f"F{uuid.uuid4().hex[:6]}"
    report(stack, "alpha", d)
    await wait_until_stored(stack, d, 1)
    sre = await open_as(stack, token_of(stack, "sre"))
    await ask(sre, {"action": "subscribe", "deployment_id": d})

    events = boto3.client(
        "events",
        endpoint_url=stack.outputs["aws_endpoint_url"],
        region_name=stack.outputs["region"],
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    forged = {
        "deployment_id": d,
        "event_id": str(uuid.uuid4()),
        "data": {"status": "succeeded"},
        "project": "beta",
    }
    reply = events.put_events(
        Entries=[
            {
                "Source": stack.outputs["event_source"],
                "DetailType": "deployment.status",
                "Detail": json.dumps(forged),
                "EventBusName": stack.outputs["event_bus_name"],
            }
        ]
    )
    assert reply["FailedEntryCount"] == 0
    await asyncio.sleep(1.0)  # time for the forged event to be delivered and refused
    report(stack, "alpha", d, "failed")
    live = json.loads(str(await asyncio.wait_for(sre.recv(), timeout=20)))
    assert live["seq"] == 2
    assert live["data"]["status"] == "failed"
    (pong,) = await ask(sre, {"action": "ping"})
    assert pong["latest"][d] == 2
    await sre.close()


def test_graphql_queries_refuse_another_teams_deployment(stack: LocalStackProcess) -> None:
    """The local GraphQL API applies the same policy: deploymentEvents and deployment are
    unauthorized for a project the caller's groups are not granted."""
    d = f"G{uuid.uuid4().hex[:6]}"
    report(stack, "alpha", d)
    asyncio.run(wait_until_stored(stack, d, 1))
    query = (
        "query Q($d: ID!) { deploymentEvents(deployment_id: $d) { seq type } deployment(deployment_id: $d) }"
    )

    def ask_graphql(token: str) -> dict[str, Any]:
        answer = requests.post(
            stack.outputs["graphql_url"],
            json={"query": query, "variables": {"d": d}},
            headers={"Authorization": token},
            timeout=20,
        )
        body: dict[str, Any] = answer.json()
        return body

    mine = ask_graphql(token_of(stack, "team-a"))
    assert "errors" not in mine
    assert [e["seq"] for e in mine["data"]["deploymentEvents"]] == [1]
    theirs = ask_graphql(token_of(stack, "team-b"))
    assert {e["errorType"] for e in theirs["errors"]} == {"Unauthorized"}
    assert theirs["data"] is None or not theirs["data"].get("deploymentEvents")
