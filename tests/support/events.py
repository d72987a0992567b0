"""Deployment events built from the samples in tests/fixtures/events.json: the plugin's
envelope, EventBridge's event around it, and whole deployments to replay."""

from __future__ import annotations

import copy
import json
import time
import uuid
from pathlib import Path
from typing import Any

# The builder lives in the emulator (with its own copy of the fixture's EventBridge sample) so
# the benchmarks build events without the tests' helpers; tests keep importing it from here.
from emulator.eventbridge import eventbridge_event

__all__ = ["FIXTURES", "TIMESTAMP", "deployment", "envelope", "eventbridge_event", "sqs_records"]

FIXTURES: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[1] / "fixtures" / "events.json").read_text()
)
#: The producer's time of every sample event.
TIMESTAMP: str = FIXTURES["envelope"]["timestamp"]


def envelope(
    deployment_id: str,
    data: dict[str, Any] | None = None,
    event_id: str | None = None,
    timestamp: str = TIMESTAMP,
) -> dict[str, Any]:
    """The plugin's detail for one event (a fresh ``event_id`` unless given; the sample's
    ``data`` unless given)."""
    detail: dict[str, Any] = copy.deepcopy(FIXTURES["envelope"])
    detail.update(deployment_id=deployment_id, event_id=event_id or str(uuid.uuid4()), timestamp=timestamp)
    if data is not None:
        detail["data"] = data
    return detail


def deployment(name: str) -> list[tuple[str, dict[str, Any]]]:
    """The (detail-type, data) pairs of a sample deployment, in the order they are reported."""
    return [(type_, copy.deepcopy(data)) for type_, data in FIXTURES["deployments"][name]]


def sqs_records(events: list[dict[str, Any]], sent_ms: int | None = None) -> dict[str, Any]:
    """An SQS batch as the event source mapping hands it to the broadcaster: one record per
    EventBridge event, all sent to the queue at ``sent_ms`` (now unless given)."""
    sent = int(time.time() * 1000) if sent_ms is None else sent_ms
    return {
        "Records": [
            {
                "messageId": str(uuid.uuid4()),
                "receiptHandle": f"rh-{i}",
                "body": json.dumps(event),
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": str(sent)},
            }
            for i, event in enumerate(events)
        ]
    }
