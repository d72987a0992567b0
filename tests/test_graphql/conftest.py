"""A real `cloud-ws local` for the GraphQL suite, driven through its contracts: the outputs,
the stock AppSync clients (gql), a raw real-time client for what gql hides, and the publisher."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import pytest
import requests
import websockets
from botocore.credentials import Credentials
from gql import GraphQLRequest, gql

from contract.events import DeploymentEvent, SequencedEvent
from server.appsync import AppSyncPublisher
from tests.support.cognito import ensure_user
from tests.support.local_stack import LocalStackProcess, start_local_stack, stop_local_stack
from tests.support.waiting import PATIENCE, eventually

#: The stack restricts watching to this Cognito group, so per-deployment refusals can be tested.
WATCHERS = "watchers"

EVENT_FIELDS = "deployment_id seq type event_id timestamp data"
UPDATE_FIELDS = "deployment_id status current_layer total_layers updated_at"
ON_EVENT = f"subscription OnEvent($d: ID!) {{ onDeploymentEvent(deployment_id: $d) {{ {EVENT_FIELDS} }} }}"
ON_UPDATE = (
    f"subscription OnUpdate($d: ID!) {{ onDeploymentUpdated(deployment_id: $d) {{ {UPDATE_FIELDS} }} }}"
)


@dataclass
class GraphQLStack:
    """The running stack and the GraphQL endpoints its outputs name."""

    stack: LocalStackProcess

    @property
    def outputs(self) -> dict[str, Any]:
        """The outputs file's contents."""
        return self.stack.outputs

    @property
    def url(self) -> str:
        """``graphql_url``."""
        return str(self.outputs["graphql_url"])

    @property
    def realtime_url(self) -> str:
        """``graphql_realtime_url``."""
        return str(self.outputs["graphql_realtime_url"])

    @property
    def host(self) -> str:
        """The API host, as AppSync clients put it in their auth headers."""
        return urlsplit(self.url).netloc

    def user(self, groups: tuple[str, ...] = (WATCHERS,)) -> str:
        """A new user of the pool in ``groups`` (password ``tests.support.cognito.PASSWORD``)."""
        username = f"gql-{uuid.uuid4().hex[:8]}"
        ensure_user(self.stack.aws("cognito-idp"), self.outputs["user_pool_id"], username, groups=groups)
        return username

    def token(self, groups: tuple[str, ...] = (WATCHERS,), kind: str = "IdToken") -> str:
        """A real token for a new user in ``groups``."""
        return self.stack.token(self.user(groups), kind)

    def subscriptions(self) -> int:
        """Subscriptions the local API has registered."""
        reply = requests.get(f"{self.stack.http}/_cloud-ws/graphql/subscriptions", timeout=5)
        reply.raise_for_status()
        return int(reply.json()["subscriptions"])

    async def wait_subscriptions(self, count: int, timeout: float = PATIENCE) -> None:
        """Until at least ``count`` subscriptions are registered."""
        await eventually(
            lambda: self.subscriptions() >= count, f"{count} subscriptions registered", timeout, poll=0.05
        )

    def post(self, body: dict[str, Any], authorization: str | None) -> requests.Response:
        """A plain HTTP POST to ``graphql_url``."""
        headers = {"Authorization": authorization} if authorization is not None else {}
        return requests.post(self.url, json=body, headers=headers, timeout=10)

    def history(
        self, deployment_id: str, token: str, since: int = 0, limit: int = 1000
    ) -> list[dict[str, Any]]:
        """``deploymentEvents`` over HTTP."""
        reply = self.post(
            {
                "query": "query($d: ID!, $s: Int, $l: Int) { deploymentEvents(deployment_id: $d, "
                f"since: $s, limit: $l) {{ {EVENT_FIELDS} }} }}",
                "variables": {"d": deployment_id, "s": since, "l": limit},
            },
            token,
        )
        reply.raise_for_status()
        body = reply.json()
        assert "errors" not in body, body
        events: list[dict[str, Any]] = body["data"]["deploymentEvents"]
        return events

    def publisher(self, secret: str = "local") -> AppSyncPublisher:  # noqa: S107 - the local stack's key
        """The broadcaster's publisher, pointed at the local API with the stack's IAM credentials."""
        return AppSyncPublisher(
            self.url,
            self.outputs["region"],
            credentials=Credentials("local", secret),
            max_attempts=2,
            backoff_seconds=0.01,
        )

    async def publish(self, events: list[SequencedEvent], publisher: AppSyncPublisher | None = None) -> None:
        """Publish as the broadcaster does (its call is synchronous: off the event loop here)."""
        await asyncio.get_running_loop().run_in_executor(
            None, (publisher or self.publisher()).publish, events
        )


def request(query: str, variables: dict[str, Any]) -> GraphQLRequest:
    """A gql request with its variables (gql 4 carries them on the request)."""
    graphql_request = gql(query)
    graphql_request.variable_values = variables
    return graphql_request


async def stored(stack: GraphQLStack, deployment_id: str, token: str, count: int) -> list[dict[str, Any]]:
    """The history once it holds ``count`` events."""
    events: list[dict[str, Any]] = []

    async def enough() -> bool:
        nonlocal events
        events = await asyncio.to_thread(stack.history, deployment_id, token)
        return len(events) >= count

    await eventually(enough, f"{count} events of {deployment_id} stored", timeout=30, poll=0.1)
    return events


def sequenced(
    deployment_id: str, seq: int, type_: str = "log.created", data: dict[str, Any] | None = None
) -> SequencedEvent:
    """An event with its ``seq``, as the broadcaster hands it to the publisher."""
    event = DeploymentEvent(
        type_,
        deployment_id,
        f"ev-{uuid.uuid4().hex[:12]}",
        data if data is not None else {"level": "info", "message": f"line {seq}"},
        "2026-12-02T06:00:00Z",
    )
    return SequencedEvent(event, seq, event.render(seq))


class RawRealtime:
    """AppSync's real-time protocol by hand, for what the stock clients hide (ids, ``complete``)."""

    def __init__(self, websocket: websockets.ClientConnection) -> None:
        self.websocket = websocket

    @classmethod
    async def open(cls, url: str, subprotocols: list[str] | None = None, **kwargs: Any) -> RawRealtime:
        """Open a socket offering ``graphql-ws`` (and any extra subprotocols)."""
        websocket = await websockets.connect(
            url,
            subprotocols=[websockets.Subprotocol(p) for p in (subprotocols or ["graphql-ws"])],
            **kwargs,
        )
        return cls(websocket)

    async def send(self, message: dict[str, Any]) -> None:
        """Send one protocol message."""
        await self.websocket.send(json.dumps(message))

    async def receive(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next message other than ``ka``."""
        while True:
            message: dict[str, Any] = json.loads(await asyncio.wait_for(self.websocket.recv(), timeout))
            if message.get("type") != "ka":
                return message

    async def quiet(self, seconds: float = 0.5) -> list[dict[str, Any]]:
        """Every non-``ka`` message received within ``seconds`` (expected: none)."""
        received: list[dict[str, Any]] = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                received.append(await self.receive(left))
            except TimeoutError:
                break
        return received

    async def init(self) -> dict[str, Any]:
        """``connection_init`` and its answer."""
        await self.send({"type": "connection_init"})
        return await self.receive()

    async def start(
        self, op_id: str, query: str, variables: dict[str, Any], authorization: dict[str, str]
    ) -> None:
        """A ``start`` as the AppSync clients send it."""
        await self.send(
            {
                "id": op_id,
                "type": "start",
                "payload": {
                    "data": json.dumps({"query": query, "variables": variables}),
                    "extensions": {"authorization": authorization},
                },
            }
        )

    async def close(self) -> None:
        """Close the socket."""
        await self.websocket.close()


def header_param(headers: dict[str, str]) -> str:
    """The ``header`` query parameter value: standard base64 of the JSON headers, not URL-encoded."""
    return base64.b64encode(json.dumps(headers).encode()).decode()


@pytest.fixture(scope="session")
def graphql_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GraphQLStack]:
    """One local stack for the suite, restricting watching to the ``watchers`` group."""
    with mock.patch.dict(os.environ, {"SUBSCRIBE_GROUPS": WATCHERS}):
        stack = start_local_stack(tmp_path_factory.mktemp("graphql-stack"))
    yield GraphQLStack(stack)
    assert stop_local_stack(stack) == 0


@pytest.fixture(scope="session")
def watcher(graphql_stack: GraphQLStack) -> str:
    """An ID token of a user who may watch every deployment."""
    return graphql_stack.token()


@pytest.fixture(scope="session")
def outsider(graphql_stack: GraphQLStack) -> str:
    """An ID token of an authenticated user outside the watchers group."""
    return graphql_stack.token(groups=())


@pytest.fixture
def deployment_id() -> str:
    """A fresh deployment id."""
    return f"GQL-{uuid.uuid4().hex[:10]}"
