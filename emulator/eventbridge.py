"""The event EventBridge hands a Lambda target, around a deployment event's detail.

Used by the benchmarks and re-exported by ``tests.support.events``, so benchmarks build
events without importing the tests' helpers (or reading their fixtures).
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

#: A sample EventBridge event as a Lambda target receives it. A copy of the ``eventbridge``
#: sample in tests/fixtures/events.json (kept here because production packages and benchmarks
#: do not read the tests' files); tests/test_protocol/test_event_fixtures.py checks that what
#: :func:`eventbridge_event` builds from it equals that sample, so the two cannot drift apart.
SAMPLE_EVENT: dict[str, Any] = {
    "version": "0",
    "id": "0d4a3c2b-7e61-4f0a-8d2c-6b5e9f1a3c47",
    "detail-type": "deployment.status",
    "source": "cloud.orchestrator",
    "account": "123456789012",
    "time": "2026-11-26T10:00:00Z",
    "region": "us-east-1",
    "resources": [],
    "detail": {
        "deployment_id": "D1BRV40",
        "event_id": "5b0f6a52-1c4e-4a8e-9a51-3f1f0c6d2e7a",
        "data": {"status": "deploying"},
        "timestamp": "2026-11-26T10:00:00Z",
    },
}


def eventbridge_event(type_: str, detail: dict[str, Any], eb_id: str | None = None) -> dict[str, Any]:
    """An event as EventBridge hands it to a Lambda target (a fresh ``id`` unless given)."""
    event: dict[str, Any] = copy.deepcopy(SAMPLE_EVENT)
    event.update({"id": eb_id or str(uuid.uuid4()), "detail-type": type_, "detail": detail})
    return event
