"""The envelope: docs/design.md's shape, validation, one serialization, and the one-frame cap."""

from __future__ import annotations

import json
import math
import random
import uuid
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any

import pytest

from contract import events, spec
from plugin.envelope import (
    FRAME_BYTES,
    FRAME_DATA_BUDGET,
    MAX_DETAIL_BYTES,
    EnvelopeError,
    build_envelope,
    fit_text,
)
from plugin.sender import PUT_EVENTS_MAX_BYTES

LONGEST_DEPLOYMENT_ID = "D" * 64


def _detail(event_type: str, data: Any, deployment_id: str = "D1BRV40") -> dict[str, Any]:
    detail: dict[str, Any] = json.loads(build_envelope(event_type, deployment_id, data).detail)
    return detail


def _as_broadcast(event_type: str, deployment_id: str, data: Any) -> bytes:
    """What the broadcaster would send for this event, with the largest seq it can reach."""
    envelope = build_envelope(event_type, deployment_id, data)
    event = {
        "id": str(uuid.uuid4()),
        "detail-type": envelope.type,
        "source": spec.DEFAULT_EVENT_SOURCE,
        "time": "2026-11-26T10:00:00Z",
        "detail": json.loads(envelope.detail),
    }
    return events.parse_event(event).render(2**53 - 1).encode("utf-8")


def test_detail_has_exactly_the_design_fields() -> None:
    """Detail = deployment_id, event_id (a UUID), data, timestamp (UTC, ISO 8601)."""
    envelope = build_envelope("deployment.status", "D1BRV40", {"status": "deploying", "current_layer": 2})
    detail = json.loads(envelope.detail)

    assert set(detail) == {"deployment_id", "event_id", "data", "timestamp"}
    assert detail["deployment_id"] == "D1BRV40"
    assert str(uuid.UUID(detail["event_id"])) == detail["event_id"] == envelope.event_id
    assert detail["data"] == {"status": "deploying", "current_layer": 2}
    assert datetime.fromisoformat(detail["timestamp"].replace("Z", "+00:00")).tzinfo is not None
    assert envelope.entry("bus", "cloud.orchestrator") == {
        "EventBusName": "bus",
        "Source": "cloud.orchestrator",
        "DetailType": "deployment.status",
        "Detail": envelope.detail,
    }


def test_every_event_gets_a_fresh_event_id() -> None:
    """Two identical hook calls are two events."""
    ids = {build_envelope("log.created", "D1", {"message": "same"}).event_id for _ in range(100)}
    assert len(ids) == 100


def test_data_is_captured_when_the_hook_is_called() -> None:
    """The caller mutating its dict afterwards changes nothing (and a retry resends the same bytes)."""
    data: dict[str, Any] = {"stack_name": "network", "tags": ["a"]}
    envelope = build_envelope("stack.started", "D1", data)
    data["stack_name"] = "changed"
    data["tags"].append("b")

    assert json.loads(envelope.detail)["data"] == {"stack_name": "network", "tags": ["a"]}


@pytest.mark.parametrize(
    ("event_type", "deployment_id", "data", "complaint"),
    [
        ("Deployment", "D1", {}, "domain.verb"),
        ("deployment.", "D1", {}, "domain.verb"),
        (None, "D1", {}, "domain.verb"),
        ("log.created", "D 1", {}, "deployment_id"),
        ("log.created", "D1\n", {}, "deployment_id"),
        ("log.created", "D" * 65, {}, "deployment_id"),
        ("log.created", None, {}, "deployment_id"),
        ("log.created", "D1", ["not", "a", "mapping"], "mapping"),
        ("log.created", "D1", {"x": math.nan}, "JSON"),
        ("log.created", "D1", {object(): 1}, "JSON"),
    ],
)
def test_invalid_events_are_refused_with_a_reason(
    event_type: Any, deployment_id: Any, data: Any, complaint: str
) -> None:
    """What the broadcaster would drop is refused here, saying why."""
    with pytest.raises(EnvelopeError, match=complaint):
        build_envelope(event_type, deployment_id, data)


def test_circular_data_is_refused() -> None:
    """A self-referencing dict cannot be serialized."""
    data: dict[str, Any] = {}
    data["self"] = data
    with pytest.raises(EnvelopeError):
        build_envelope("log.created", "D1", data)


def test_values_json_lacks_become_strings() -> None:
    """Datetimes, enums, sets, paths: sent as text rather than refused."""

    class Colour(Enum):
        RED = "red"

    when = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    data = _detail("stack.deployed", {"at": when, "colour": Colour.RED, "ids": (1, 2), "path": Path("/x")})[
        "data"
    ]

    assert data == {"at": "2026-11-26T10:00:00+00:00", "colour": "red", "ids": [1, 2], "path": "/x"}


def test_lone_surrogates_are_replaced_not_fatal() -> None:
    """Text decoded with surrogateescape still makes a valid UTF-8 event."""
    message = b"caf\xe9".decode("utf-8", "surrogateescape")
    envelope = build_envelope("log.created", "D1", {"message": message})

    envelope.detail.encode("utf-8")  # does not raise
    assert json.loads(envelope.detail)["data"]["message"] == "caf?"


def test_short_log_message_is_untouched() -> None:
    """No marker and no ``truncated`` flag when the message fits."""
    data = _detail("log.created", {"level": "info", "message": "Creating VPC", "stack_name": "network"})[
        "data"
    ]
    assert data == {"level": "info", "message": "Creating VPC", "stack_name": "network"}


@pytest.mark.parametrize(
    "unit",
    [
        "x",
        'quote " and backslash \\ ',
        "line\n",
        "\x00\x01\x1f control ",
        "é",
        "日本語",
        "🚀",
        'mixé🚀"\n\x07',
    ],
)
def test_long_log_message_fits_one_frame_with_a_marker(unit: str) -> None:
    """A 1 MB message of any mix of escapes and multi-byte text becomes one frame, cut with a marker."""
    message = unit * (1_000_000 // len(unit.encode("utf-8")) + 1)
    frame = _as_broadcast("log.created", LONGEST_DEPLOYMENT_ID, {"level": "error", "message": message})

    assert len(frame) <= FRAME_BYTES
    rendered = json.loads(frame.decode("utf-8"))
    data = rendered["data"]
    assert data["truncated"] is True
    assert "[truncated by cloud-ws:" in data["message"]
    kept = data["message"].split(" … [truncated by cloud-ws:")[0]
    assert message.startswith(kept)
    assert len(kept) > 1000  # truncated, not emptied


def test_failure_message_is_capped_too() -> None:
    """``stack.failed`` carries provider errors that can be huge: same cap as logs."""
    frame = _as_broadcast("stack.failed", "D1", {"stack_name": "db", "error_message": "E" * 200_000})
    assert len(frame) <= FRAME_BYTES
    assert json.loads(frame)["data"]["stack_name"] == "db"


def test_huge_other_fields_of_a_log_line_still_fit() -> None:
    """Garbage in the other fields cannot push a log line past one frame."""
    frame = _as_broadcast("log.created", "D1", {"message": "m" * 50_000, "stack_name": "s" * 50_000})
    assert len(frame) <= FRAME_BYTES
    assert json.loads(frame)["data"]["truncated"] is True


def test_other_event_types_are_not_cut_to_a_frame() -> None:
    """Only free text is capped; a 64 KB stack event stays whole (API Gateway sends it in frames)."""
    data = _detail("stack.deployed", {"stack_name": "network", "notes": "n" * 64_000})["data"]
    assert len(data["notes"]) == 64_000


def test_oversize_data_becomes_a_marker_like_the_broadcaster_makes() -> None:
    """Past ~124 KB the data is replaced by a marker; the entry stays far below PutEvents' limit."""
    envelope = build_envelope("stack.deployed", "D1", {"blob": "b" * 300_000})
    detail = json.loads(envelope.detail)

    assert detail["data"] == {"truncated": True, "original_bytes": len('{"blob":""}') + 300_000}
    assert envelope.size("bus", "cloud.orchestrator") < PUT_EVENTS_MAX_BYTES // 2
    largest = build_envelope(
        "stack.deployed", LONGEST_DEPLOYMENT_ID, {"blob": "b" * (MAX_DETAIL_BYTES - 600)}
    )
    assert len(largest.detail.encode("utf-8")) <= MAX_DETAIL_BYTES


def test_fit_text_is_exact() -> None:
    """The cut keeps as much as fits: one more character would not."""
    rng = random.Random(5)
    alphabet = 'ab"\\\n\x01é日🚀'
    for _ in range(200):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 400)))
        budget = rng.randint(80, 600)
        fitted = fit_text(text, budget)
        size = len(json.dumps(fitted, ensure_ascii=False).encode("utf-8"))
        assert size <= budget
        if fitted != text:
            kept = fitted.split(" … [truncated by cloud-ws:")[0]
            one_more = text[: len(kept) + 1] + fitted[len(kept) :]
            assert len(json.dumps(one_more, ensure_ascii=False).encode("utf-8")) > budget


def test_frame_budget_leaves_room_for_the_envelope() -> None:
    """The budget is one frame minus a reserve larger than the broadcaster's wrapping."""
    wrapping = _as_broadcast("log.created", LONGEST_DEPLOYMENT_ID, {})
    assert FRAME_DATA_BUDGET + len(wrapping) < FRAME_BYTES
