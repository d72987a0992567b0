"""Packed entries at the broadcaster: several events of one deployment in one EventBridge event.

A plugin that falls behind packs (docs/protocol.md, "Packed entries"); the broadcaster
must store every member as the event it stands for, in the producer's order, and
refuse what can never be valid without touching the rest.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from typing import Any

import pytest

from contract import spec
from contract.events import InvalidEventError, parse_events
from handlers import broadcaster
from plugin.envelope import build_envelope, packed_entry
from tests.support.events import sqs_records
from tests.support.moto_stack import Stack

PRODUCER = "p1"


def _member(deployment_id: str, n: int, **overrides: Any) -> dict[str, Any]:
    member = {
        "type": "log.created",
        "deployment_id": deployment_id,
        "event_id": f"{PRODUCER}-{deployment_id}-{n}",
        "data": {"level": "info", "message": f"line {n}"},
        "timestamp": "2026-01-01T00:00:00Z",
        "producer_id": PRODUCER,
        "producer_seq": n,
    }
    member.update(overrides)
    return member


def _pack(deployment_id: str, members: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "source": spec.DEFAULT_EVENT_SOURCE,
        "detail-type": spec.PACKED_DETAIL_TYPE,
        "detail": {"deployment_id": deployment_id, "events": members},
    }


def _records(events: list[dict[str, Any]]) -> dict[str, Any]:
    # Received "now" however slow this machine is: the 5 s gap timeout must not skip a number
    # that is on its way in a later batch.
    return sqs_records(events, int(time.time() * 1000) + 600_000)


def _messages(stack: Stack, conn: str) -> list[dict[str, Any]]:
    return [m for frame in stack.mgmt.frames(conn) for m in frame if "seq" in m]


def test_shuffled_packs_reach_subscribers_in_emission_order(stack: Stack) -> None:
    """60 events in packs of 1 to 9, the packs shuffled and delivered in batches of 3 records:
    seq order is the producer's order at every subscriber, each event once."""
    connections = stack.subscribed("D1", 2)
    rng = random.Random(3)
    packs: list[dict[str, Any]] = []
    n = 1
    while n <= 60:
        size = min(rng.randint(1, 9), 61 - n)
        packs.append(_pack("D1", [_member("D1", k) for k in range(n, n + size)]))
        n += size
    rng.shuffle(packs)

    for start in range(0, len(packs), 3):
        assert broadcaster.handler(_records(packs[start : start + 3])) == {"batchItemFailures": []}

    for conn in connections:
        messages = _messages(stack, conn)
        assert [m["seq"] for m in messages] == list(range(1, 61))
        assert [m["data"]["message"] for m in messages] == [f"line {k}" for k in range(1, 61)]
        assert [m["type"] for m in messages] == ["log.created"] * 60


def test_a_redelivered_pack_stores_nothing_twice(stack: Stack) -> None:
    (conn,) = stack.subscribed("D1", 1)
    pack = _pack("D1", [_member("D1", k) for k in range(1, 6)])

    broadcaster.handler(_records([pack]))
    before = stack.snapshot()["EVENTS_TABLE"]
    broadcaster.handler(_records([pack]))

    assert stack.snapshot()["EVENTS_TABLE"] == before
    assert sorted({m["seq"] for m in _messages(stack, conn)}) == [1, 2, 3, 4, 5]


def test_the_plugins_packed_entry_is_what_the_broadcaster_reads(stack: Stack) -> None:
    """plugin.envelope.packed_entry → EventBridge's event → parse_events: the same events."""
    envelopes = [
        build_envelope("log.created", "D1", {"message": f"line {k}"}, producer=(PRODUCER, k)) for k in (1, 2)
    ]
    progress = {"stack_name": "s", "percent": 5}
    envelopes.append(build_envelope("stack.progress", "D1", progress, producer=(PRODUCER, 3)))
    entry = packed_entry(envelopes, "bus", spec.DEFAULT_EVENT_SOURCE)
    event = {"id": "e1", "detail-type": entry["DetailType"], "detail": json.loads(entry["Detail"])}

    events, rejected = parse_events(event, 0)

    assert rejected == []
    assert [(e.type, e.event_id, e.producer_seq) for e in events] == [
        (envelope.type, envelope.event_id, k) for k, envelope in enumerate(envelopes, start=1)
    ]
    other = build_envelope("log.created", "D2", {})
    with pytest.raises(ValueError, match="one deployment"):
        packed_entry([envelopes[0], other], "bus", spec.DEFAULT_EVENT_SOURCE)


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (_member("D2", 2), "the pack's deployment_id"),
        (_member("D1", 2, event_id=None), "needs an event_id"),
        (_member("D1", 2, type="not a type"), "detail-type"),
        (_member("D1", 2, type=spec.PACKED_DETAIL_TYPE), "server's own"),
        (_member("D1", 2, producer_seq=0), "producer_seq"),
        ("just a string", "JSON object"),
    ],
)
def test_a_bad_member_is_refused_and_the_rest_of_its_pack_stored(
    stack: Stack, bad: Any, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    """One member that can never be valid: left out with a reason in the log; the others are
    stored and sent in order, and the record is not sent back to be retried."""
    (conn,) = stack.subscribed("D1", 1)
    # The third member is numbered 2: the refused one never took a number, so no gap waits.
    pack = _pack("D1", [_member("D1", 1), bad, _member("D1", 3, producer_seq=2)])

    events, rejected = parse_events(pack, 0)
    assert [e.event_id for e in events] == ["p1-D1-1", "p1-D1-3"]
    assert len(rejected) == 1
    assert reason in rejected[0]
    assert rejected[0].startswith("detail.events[1]")

    with caplog.at_level("WARNING", logger="cloud_ws.broadcaster"):
        assert broadcaster.handler(_records([pack])) == {"batchItemFailures": []}

    assert [m["data"]["message"] for m in _messages(stack, conn)] == ["line 1", "line 3"]
    assert any(reason in str(getattr(r, "reason", "")) for r in caplog.records)


@pytest.mark.parametrize(
    ("detail", "reason"),
    [
        ({"deployment_id": "D1", "events": []}, "detail.events"),
        ({"deployment_id": "D1", "events": "x"}, "detail.events"),
        ({"deployment_id": "D1", "events": [_member("D1", 1)] * (spec.PACKED_MAX_EVENTS + 1)}, "1 to"),
        ({"deployment_id": "bad id!", "events": [_member("D1", 1)]}, "detail.deployment_id"),
        ({"events": [_member("D1", 1)]}, "detail.deployment_id"),
    ],
)
def test_a_malformed_pack_is_refused_whole_and_changes_nothing(
    stack: Stack, detail: dict[str, Any], reason: str
) -> None:
    stack.subscribed("D1", 1)
    pack = {**_pack("D1", []), "detail": detail}
    before = stack.snapshot()

    with pytest.raises(InvalidEventError, match=reason):
        parse_events(pack, 0)
    assert broadcaster.handler(_records([pack])) == {"batchItemFailures": []}
    assert broadcaster.handler(pack)["status"] == "rejected"

    assert stack.snapshot() == before
