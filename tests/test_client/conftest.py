"""Client fixtures: one real `cloud-ws local` for the session, token providers that count
their calls, and polling helpers (``eventually`` is tests/support/waiting.py's).

Time is scaled: every duration a test gives the client is a multiple of ``UNIT``
(0.1 s; ``CLOUD_WS_TEST_TIME_SCALE`` stretches it on a slow machine), and every
wait is a poll on a condition with a generous deadline, never a timed assertion.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from websockets.asyncio.server import serve

from cloud_ws_client import ClientOptions, CloudWebSocketClient, Event, Message
from contract import keys, spec
from tests.support.local_stack import LocalStackProcess, start_local_stack, stop_local_stack
from tests.support.waiting import PATIENCE, eventually
from tests.test_client.fakes import Gateway

UNIT = 0.1 * float(os.environ.get("CLOUD_WS_TEST_TIME_SCALE", "1"))

#: Client timing for tests: everything in UNITs, keep-alive and rotation out of the way
#: unless a test brings them in.
FAST = ClientOptions(
    open_timeout=50 * UNIT,
    close_timeout=10 * UNIT,
    ping_interval=600 * UNIT,
    pong_timeout=30 * UNIT,
    gap_timeout=3 * UNIT,
    backoff_initial=UNIT,
    backoff_max=5 * UNIT,
    min_uptime=3 * UNIT,
)

#: The stack the client tests run against: one post attempt and one fan-out round, so an
#: injected 429 really loses a message (a gap to repair, or a lost last event that only
#: pong.latest reveals); a small replay limit, so capped replays happen.
STACK_ENV = {"POST_MAX_ATTEMPTS": "1", "FANOUT_MAX_ATTEMPTS": "1", "REPLAY_LIMIT": "20"}


def options(**changes: Any) -> ClientOptions:
    """FAST with some fields changed."""
    return replace(FAST, **changes)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStackProcess]:
    """One local stack for every client test."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in STACK_ENV.items():
            patch.setenv(name, value)
        started = start_local_stack(tmp_path_factory.mktemp("client-stack"))
    yield started
    assert stop_local_stack(started) == 0


def deployment() -> str:
    """A fresh deployment id."""
    return f"C{uuid.uuid4().hex[:10].upper()}"


@dataclass
class Tokens:
    """A token provider over the stack's Cognito that records every call.

    ``garbage_from`` / ``offline_from``: from that call on, return a token the
    server refuses / raise the OSError a laptop without network gets.
    """

    stack: LocalStackProcess
    username: str = "client-tests"
    garbage_from: int | None = None
    offline_from: int | None = None
    issued: list[str] = field(default_factory=list)

    @property
    def calls(self) -> int:
        return len(self.issued)

    async def __call__(self) -> str:
        call = self.calls + 1
        if self.offline_from is not None and call >= self.offline_from:
            self.issued.append("<offline>")
            raise OSError("Network is unreachable")
        if self.garbage_from is not None and call >= self.garbage_from:
            token = "not.a.token"
        else:
            token = await asyncio.to_thread(self.stack.token, self.username)
        self.issued.append(token)
        return token


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    """A scripted cloud-ws server on a loopback port."""
    fake = Gateway()
    # websockets logs the handshakes a test refuses at ERROR on the server side: expected here.
    server_log = logging.getLogger("websockets.server")
    level = server_log.level
    server_log.setLevel(logging.CRITICAL)
    try:
        async with serve(fake.handler, "127.0.0.1", 0, process_request=fake.process_request) as server:
            fake.server = server
            yield fake
    finally:
        server_log.setLevel(level)


@pytest.fixture
def tokens(stack: LocalStackProcess) -> Tokens:
    return Tokens(stack)


async def fan_out_done(stack: LocalStackProcess, deployment_id: str, event_id: str) -> bool:
    """Whether the broadcaster finished posting an event (the lease's ``sentUpTo`` mark reached its seq)."""
    ddb = stack.aws("dynamodb")
    identities = f"cloud-ws-{stack.outputs['stage']}-{spec.EVENT_IDS.role}"
    events = f"cloud-ws-{stack.outputs['stage']}-{spec.EVENTS.role}"

    def read() -> bool:
        identity = ddb.get_item(
            TableName=identities, Key={"eventKey": {"S": f"{deployment_id}/{event_id}"}}, ConsistentRead=True
        ).get("Item")
        lease = ddb.get_item(TableName=events, Key=keys.lease(deployment_id), ConsistentRead=True).get("Item")
        if not identity or not lease or "sentUpTo" not in lease:
            return False
        return int(lease["sentUpTo"]["N"]) >= int(identity["seq"]["N"])

    return await asyncio.to_thread(read)


async def next_message(stream: AsyncIterator[Message]) -> Message:
    """The next message of a ``messages()`` iterator, or fail after PATIENCE."""
    return await asyncio.wait_for(anext(stream), PATIENCE)


class Inbox:
    """Everything a client delivered, through a catch-all handler."""

    def __init__(self, client: CloudWebSocketClient) -> None:
        self.messages: list[Message] = []
        client.on("*", self.messages.append)

    def seqs(self, deployment_id: str) -> list[int]:
        return [m.seq for m in self.messages if isinstance(m, Event) and m.deployment_id == deployment_id]

    def of_type(self, message_type: str) -> list[Message]:
        return [m for m in self.messages if m.type == message_type]

    async def until_seq(self, deployment_id: str, seq: int) -> list[int]:
        await eventually(lambda: seq in self.seqs(deployment_id), f"seq {seq} of {deployment_id}")
        return self.seqs(deployment_id)


async def put_events(
    stack: LocalStackProcess, deployment_id: str, count: int, pause: float = 0.0, first: int = 1
) -> None:
    """Put ``count`` log events on the bus, one by one (boto3 runs in a worker thread)."""
    for index in range(first, first + count):
        await asyncio.to_thread(stack.put_event, deployment_id, "log.created", {"message": f"line {index}"})
        if pause:
            await asyncio.sleep(pause)


async def connection_ids(stack: LocalStackProcess) -> set[str]:
    """Ids of the connections open on the stack right now."""
    return {c["connectionId"] for c in await asyncio.to_thread(stack.connections)}


async def new_connection(stack: LocalStackProcess, known: set[str]) -> str:
    """The one connection that appeared since ``known`` was taken (clients are never told their id)."""
    found: set[str] = set()

    async def one_new() -> bool:
        nonlocal found
        found = await connection_ids(stack) - known
        return len(found) == 1

    await eventually(one_new, f"one new connection beside {known}")
    return found.pop()


async def control(stack: LocalStackProcess, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """POST to the stack's fault-injection API."""
    return await asyncio.to_thread(stack.control, path, body)
