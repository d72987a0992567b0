"""Plugin fixtures: a moto event bus whose rule (the shared event pattern) feeds an SQS
queue we read, and a client wrapper that records requests and injects failures.

Time is scaled: backoff is milliseconds, and every wait is a poll with a generous
deadline, never a timed assertion.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from contract import spec
from plugin import DeliveryOptions, OrchestratorPlugin
from tests.support.waiting import PATIENCE

REGION = "us-east-1"
BUS = "cloud-ws-plugin-test"

#: Backoff in milliseconds so retry tests take no time. ``close()`` waits as long as every
#: other wait of the suite: on a loaded machine building the first boto3 client alone can
#: take seconds, and the default 5 s would turn that into a lost event and a failed test.
#: Tests of the deadline itself pass their own timeout.
FAST = DeliveryOptions(backoff_base=0.001, backoff_max=0.005, close_timeout=PATIENCE)


@pytest.fixture
def plugin_aws(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """moto's AWS with throwaway credentials (the suite-wide ``aws``), no outputs file pointed at."""
    monkeypatch.delenv("CLOUD_WS_OUTPUTS", raising=False)


@pytest.fixture
def plugin_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """caplog wired to the plugin's logger directly: ``cloud_ws`` may not propagate to the root
    (contract.log turns propagation off when another suite imported it)."""
    logger = logging.getLogger("cloud_ws.plugin")
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger="cloud_ws.plugin")
    try:
        yield caplog
    finally:
        logger.removeHandler(caplog.handler)


@dataclass
class Bus:
    """An EventBridge bus with the broadcaster's rule pointed at an SQS queue."""

    events: Any
    sqs: Any
    queue_url: str
    name: str = BUS
    source: str = spec.DEFAULT_EVENT_SOURCE
    _seen: list[dict[str, Any]] = field(default_factory=list)

    @property
    def outputs(self) -> dict[str, Any]:
        """Outputs as a cloud stack exports them (no ``aws_endpoint_url``)."""
        return {
            "websocket_url": "wss://abc123.execute-api.us-east-1.amazonaws.com/test",
            "management_endpoint": "https://abc123.execute-api.us-east-1.amazonaws.com/test",
            "event_bus_name": self.name,
            "event_source": self.source,
            "region": REGION,
            "user_pool_id": "us-east-1_test",
            "user_pool_client_id": "client",
            "connections_table_name": "connections",
        }

    def plugin(self, **kwargs: Any) -> OrchestratorPlugin:
        """A plugin on this bus with fast backoff."""
        kwargs.setdefault("options", FAST)
        kwargs.setdefault("region", REGION)
        return OrchestratorPlugin(self.name, source=self.source, **kwargs)

    def received(self, count: int) -> list[dict[str, Any]]:
        """The first ``count`` events delivered to the queue (EventBridge JSON), in arrival order;
        a packed entry's events one by one."""
        deadline = time.monotonic() + PATIENCE
        while True:
            singles = [single for event in self._seen for single in unpacked(event)]
            if len(singles) >= count or time.monotonic() >= deadline:
                break
            if not self._poll():
                time.sleep(0.01)
        assert len(singles) >= count, f"only {len(singles)} of {count} events arrived"
        return singles[:count]

    def everything(self) -> list[dict[str, Any]]:
        """Every event delivered so far (after draining the queue), a packed entry's one by one."""
        while self._poll():
            pass
        return [single for event in self._seen for single in unpacked(event)]

    def entries(self) -> list[dict[str, Any]]:
        """Every EventBridge event delivered so far, packed entries as they are."""
        while self._poll():
            pass
        return list(self._seen)

    def _poll(self) -> int:
        messages = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get(
            "Messages", []
        )
        for message in messages:
            self._seen.append(json.loads(message["Body"]))
            self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return len(messages)


@pytest.fixture
def bus(plugin_aws: None) -> Bus:
    """A bus, the shared event pattern's rule, and the SQS queue it targets."""
    events = boto3.client("events", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    events.create_event_bus(Name=BUS)
    queue_url = sqs.create_queue(QueueName="plugin-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(
        Name="to-broadcaster",
        EventBusName=BUS,
        EventPattern=json.dumps(spec.event_pattern(spec.DEFAULT_EVENT_SOURCE)),
    )
    events.put_targets(Rule="to-broadcaster", EventBusName=BUS, Targets=[{"Id": "queue", "Arn": arn}])
    return Bus(events, sqs, queue_url)


class FlakyClient:
    """Wraps the real client: records each PutEvents request and injects failures.

    ``down`` makes whole requests fail like an unreachable endpoint;
    ``fail_next(...)`` makes chosen entries of the next request fail (they are not
    forwarded, exactly as EventBridge would not deliver them).
    """

    def __init__(self, real: Any) -> None:
        self.real = real
        self.requests: list[list[dict[str, str]]] = []
        self.down = False
        self._plans: deque[dict[int, str]] = deque()
        self._lock = threading.Lock()
        self.request_made = threading.Event()

    def fail_next(self, failures: dict[int, str]) -> None:
        """The next request fails at these entry indexes with these error codes."""
        self._plans.append(failures)

    def put_events(self, *, Entries: list[dict[str, str]]) -> dict[str, Any]:
        with self._lock:
            self.requests.append([dict(entry) for entry in Entries])
            self.request_made.set()
            if self.down:
                raise EndpointConnectionError(endpoint_url="https://events.us-east-1.amazonaws.com/")
            plan = self._plans.popleft() if self._plans else {}
        forward = [entry for index, entry in enumerate(Entries) if index not in plan]
        accepted = iter(self.real.put_events(Entries=forward)["Entries"] if forward else [])
        results: list[dict[str, str]] = []
        for index in range(len(Entries)):
            if index in plan:
                results.append({"ErrorCode": plan[index], "ErrorMessage": "injected by the test"})
            else:
                results.append(next(accepted))
        return {"FailedEntryCount": len(plan), "Entries": results}

    def detail_types(self) -> list[list[str]]:
        """The DetailType of every entry, request by request."""
        return [[entry["DetailType"] for entry in request] for request in self.requests]


class PoisonClient(FlakyClient):
    """Refuses a whole request with ValidationException when it holds an entry marked poison."""

    def put_events(self, *, Entries: list[dict[str, str]]) -> dict[str, Any]:
        if any('"poison":true' in entry["Detail"] for entry in Entries):
            with self._lock:
                self.requests.append([dict(entry) for entry in Entries])
            raise ClientError(
                {"Error": {"Code": "ValidationException", "Message": "Detail is malformed."}}, "PutEvents"
            )
        return super().put_events(Entries=Entries)


@pytest.fixture
def flaky(bus: Bus) -> FlakyClient:
    """A failure-injecting wrapper around a real (moto) EventBridge client."""
    return FlakyClient(boto3.client("events", region_name=REGION))


def unpacked(event: dict[str, Any]) -> list[dict[str, Any]]:
    """An EventBridge event as the single events it carries (a packed entry's members, docs/protocol.md)."""
    if event.get("detail-type") != spec.PACKED_DETAIL_TYPE:
        return [event]
    singles = []
    for member in event["detail"]["events"]:
        detail = {key: value for key, value in member.items() if key != "type"}
        singles.append({**event, "detail-type": member["type"], "detail": detail})
    return singles


def details(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``detail`` of each EventBridge event."""
    return [event["detail"] for event in events]
