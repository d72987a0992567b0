"""conformance/state.json through DeploymentSequence and DeploymentState: the folding rules as data.

Every implementation (the server's reducer, this client, the TypeScript one)
runs the same cases; here each case's events go, in the order listed (out of
order and duplicated on purpose), through the client's own reordering and
then its state, and must give the case's snapshot.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cloud_ws_client import DeploymentSnapshot, DeploymentState, Event, parse_message
from cloud_ws_client.sequence import DeploymentSequence
from contract import state as server_state

VECTORS = json.loads((Path(__file__).parents[2] / "conformance" / "state.json").read_text())
CASES = VECTORS["cases"]


def events_of(case: dict[str, Any]) -> list[Event]:
    parsed = [parse_message(json.dumps(raw)) for raw in case["events"]]
    assert all(isinstance(message, Event) for message in parsed)
    return [message for message in parsed if isinstance(message, Event)]


def fold(state: DeploymentState, events: list[Event], since: int) -> DeploymentState:
    """Reorder and deduplicate as a subscription does, then fold what comes out."""
    stream = DeploymentSequence(since=since, max_buffer=1000)
    for event in events:
        for released in stream.accept(event, now=0.0):
            state.apply(released)
    assert stream.buffered == 0, "the vector's events leave a gap"
    return state


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_state_vector(case: dict[str, Any]) -> None:
    """From nothing, the events give exactly the expected snapshot."""
    state = fold(DeploymentState(case["deployment_id"]), events_of(case), since=0)
    assert state.to_snapshot() == case["expect"]["data"]
    assert state.seq == case["expect"]["seq"]


def test_the_vectors_reorder_and_repeat() -> None:
    """The file does what it says: some case lists events out of seq order, some repeat a seq."""
    orders = [[event["seq"] for event in case["events"]] for case in CASES]
    assert any(order != sorted(order) for order in orders)
    assert any(len(order) != len(set(order)) for order in orders)


def snapshot_at(case: dict[str, Any], seq: int) -> DeploymentSnapshot:
    """What the server sends a subscriber when the case's events up to ``seq`` are stored."""
    ordered = {event["seq"]: event for event in case["events"]}
    data = server_state.public(
        server_state.fold(server_state.initial(), [ordered[s] for s in sorted(ordered) if s <= seq])
    )
    message = parse_message(
        json.dumps(
            {"type": "deployment.snapshot", "deployment_id": case["deployment_id"], "seq": seq, "data": data}
        )
    )
    assert isinstance(message, DeploymentSnapshot)
    return message


def split_points(case: dict[str, Any]) -> list[int]:
    return sorted({event["seq"] for event in case["events"]})


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_snapshot_then_the_rest(case: dict[str, Any]) -> None:
    """Starting from the server's snapshot at any seq and folding the later events gives the same end."""
    events = events_of(case)
    for seq in split_points(case):
        state = DeploymentState.from_snapshot(snapshot_at(case, seq))
        assert state.to_snapshot() == snapshot_at(case, seq).data, f"snapshot at {seq} read back"
        fold(state, events, since=seq)
        assert state.to_snapshot() == case["expect"]["data"], f"from the snapshot at seq {seq}"


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_apply_ignores_duplicates_itself(case: dict[str, Any]) -> None:
    """Without the sequencing in front, events in seq order with duplicates still fold to the snapshot."""
    state = DeploymentState(case["deployment_id"])
    for event in sorted(events_of(case), key=lambda event: event.seq):
        state.apply(event)
    assert state.to_snapshot() == case["expect"]["data"]


def test_the_clients_limits_are_the_shared_ones() -> None:
    """The client's caps are conformance/state.json's (and so the server's)."""
    from cloud_ws_client import state as client_state

    assert VECTORS["limits"] == {
        "recent_logs": client_state.RECENT_LOGS,
        "log_message_bytes": client_state.LOG_MESSAGE_CHARS,
        "error_message_bytes": client_state.ERROR_MESSAGE_BYTES,
        "stack_name_bytes": client_state.STACK_NAME_BYTES,
        "environment_bytes": client_state.ENVIRONMENT_BYTES,
        "level_bytes": client_state.LEVEL_BYTES,
        "timestamp_bytes": client_state.TIMESTAMP_BYTES,
        "max_stacks": client_state.MAX_STACKS,
        "max_log_levels": client_state.MAX_LOG_LEVELS,
        "other_level": client_state.OTHER_LEVEL,
        "max_integer": client_state.MAX_SAFE_INTEGER,
        "snapshot_bytes": 128 * 1024,
    }
