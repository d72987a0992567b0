"""Deployment events built from the samples in tests/fixtures/events.json: the plugin's
envelope, EventBridge's event around it, and whole deployments to replay."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any

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


def eventbridge_event(type_: str, detail: dict[str, Any], eb_id: str | None = None) -> dict[str, Any]:
    """An event as EventBridge hands it to a Lambda target (a fresh ``id`` unless given)."""
    event: dict[str, Any] = copy.deepcopy(FIXTURES["eventbridge"])
    event.update({"id": eb_id or str(uuid.uuid4()), "detail-type": type_, "detail": detail})
    return event


def deployment(name: str) -> list[tuple[str, dict[str, Any]]]:
    """The (detail-type, data) pairs of a sample deployment, in the order they are reported."""
    return [(type_, copy.deepcopy(data)) for type_, data in FIXTURES["deployments"][name]]
