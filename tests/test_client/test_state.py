"""The deployment picture: folded in seq order, the later event wins, each seq once, within the limits."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from cloud_ws_client import DeploymentSnapshot, DeploymentState, Event, parse_message
from cloud_ws_client.state import (
    ERROR_MESSAGE_BYTES,
    LOG_MESSAGE_CHARS,
    MAX_LOG_LEVELS,
    MAX_STACKS,
    OTHER_LEVEL,
    RECENT_LOGS,
    cut,
    parse_timestamp,
)


def event(seq: int, type_: str, second: int | None, **data: Any) -> Event:
    raw: dict[str, Any] = {"type": type_, "deployment_id": "D1", "seq": seq, "data": data}
    if second is not None:
        raw["timestamp"] = f"2026-11-26T10:00:{second:02d}Z"
    message = parse_message(json.dumps(raw))
    assert isinstance(message, Event)
    return message


def history() -> list[Event]:
    """A two-layer deployment whose producer clocks disagree with seq order (seq order wins)."""
    return [
        event(1, "deployment.status", 0, status="deploying", current_layer=0, total_layers=2),
        event(2, "deployment.status", 1, status="deploying", current_layer=1, total_layers=2),
        # a second producer's clock: deployed (t=8) is seq 3, then a started (t=2) and a progress (t=5)
        event(3, "stack.deployed", 8, stack_name="vpc", layer=1, duration_seconds=6, resource_count=15),
        event(4, "stack.started", 2, stack_name="vpc", layer=1, environment="dev"),
        event(5, "stack.progress", 5, stack_name="vpc", layer=1, resources_done=9),
        event(6, "log.created", 3, level="warning", message="slow", stack_name="vpc"),
        event(7, "deployment.status", 9, status="deploying", current_layer=2, total_layers=2),
        event(8, "stack.started", 10, stack_name="db", layer=2),
        event(
            9,
            "stack.failed",
            12,
            stack_name="db",
            layer=2,
            error_message="Subnet not found",
            duration_seconds=2,
        ),
        event(10, "log.created", 11, level="error", message="boom", stack_name="db"),
        event(11, "deployment.status", 13, status="failed", error_message="db failed", duration_seconds=13),
        event(12, "widget.spun", 14),
    ]


def snapshot(state: DeploymentState) -> Any:
    return (
        state.status,
        state.current_layer,
        state.total_layers,
        state.error_message,
        state.duration_seconds,
        [
            (
                s.name,
                s.status,
                s.layer,
                s.resources_done,
                s.resource_count,
                s.duration_seconds,
                s.error_message,
                s.started_at,
                s.environment,
            )
            for s in state.stacks_in_order()
        ],
        [(line.seq, line.level, line.message) for line in state.logs],
        state.events,
        state.last_seq,
    )


def test_picture_of_a_failed_deployment() -> None:
    """Status, layers, stacks and logs as the events describe them, in seq order; ranks only move forward."""
    state = DeploymentState("D1")
    for e in history():
        state.apply(e)
    assert state.status == "failed"
    assert state.is_complete
    assert not state.succeeded
    assert (state.current_layer, state.total_layers, state.layers_done) == (2, 2, 1)
    assert state.error_message == "db failed"
    assert state.duration_seconds == 13.0
    vpc, db = state.stacks_in_order()
    # The later stack.started and stack.progress did not turn "deployed" back into "deploying",
    # but their other fields are the latest: the progress said 9 resources done.
    assert (vpc.status, vpc.resources_done, vpc.resource_count, vpc.environment) == (
        "deployed",
        9,
        15,
        "dev",
    )
    assert vpc.started_at == datetime(2026, 11, 26, 10, 0, 2, tzinfo=UTC)
    assert vpc.elapsed(datetime.now(UTC)) == 6.0
    assert (db.status, db.error_message) == ("failed", "Subnet not found")
    assert [line.message for line in state.logs] == ["slow", "boom"]
    assert state.events == 12
    assert state.last_seq == 12


def test_repeats_change_nothing() -> None:
    """Every event applied twice over (in seq order) gives the same picture as once."""
    reference = DeploymentState("D1")
    for e in history():
        reference.apply(e)
    state = DeploymentState("D1")
    for e in history():
        assert state.apply(e) is True
        assert state.apply(e) is False
    assert snapshot(state) == snapshot(reference)
    assert state.to_snapshot() == reference.to_snapshot()


def test_apply_ignores_duplicates_and_other_deployments() -> None:
    """A duplicate or another deployment's event is not folded in."""
    state = DeploymentState("D1")
    first = event(1, "deployment.status", 0, status="deploying", total_layers=3)
    assert state.apply(first) is True
    assert state.apply(first) is False
    other = parse_message('{"type": "deployment.status", "deployment_id": "D2", "seq": 2, "data": {}}')
    assert isinstance(other, Event)
    assert state.apply(other) is False
    assert state.apply(event(3, "stack.started", 1)) is True  # counted, but no stack_name: no stack
    assert state.stacks == {}
    assert (state.status, state.attempt, state.seq, state.events) == ("deploying", 1, 3, 2)
    assert state.layers_done == 0


def test_success_fills_the_layers_and_stacks_without_layer_go_last() -> None:
    """succeeded means every layer is done; stacks with an unknown layer sort after the others."""
    state = DeploymentState("D1")
    state.apply(event(1, "stack.started", None, stack_name="floating"))
    state.apply(event(2, "stack.started", None, stack_name="base", layer=1))
    state.apply(event(3, "deployment.status", None, status="succeeded", total_layers=4))
    assert state.succeeded
    assert state.layers_done == 4
    assert [s.name for s in state.stacks_in_order()] == ["base", "floating"]
    floating = state.stacks["floating"]
    assert floating.started_at is None
    assert floating.elapsed(datetime.now(UTC)) is None


def test_only_the_latest_log_lines_are_kept_in_seq_order() -> None:
    """RECENT_LOGS latest by seq, oldest first; a line stamped earlier than all is still the newest."""
    state = DeploymentState("D1")
    for seq in range(1, RECENT_LOGS + 3):
        state.apply(event(seq, "log.created", None, message=f"line {seq}"))
    assert [line.message for line in state.logs][:2] == ["line 3", "line 4"]
    assert len(state.logs) == RECENT_LOGS
    timed = DeploymentState("D1")
    for seq in range(1, RECENT_LOGS + 1):
        timed.apply(event(seq, "log.created", 10, message=f"line {seq}"))
    timed.apply(event(RECENT_LOGS + 1, "log.created", 1, message="stamped early"))
    assert timed.logs[-1].message == "stamped early"
    assert timed.logs[0].message == "line 2"
    assert timed.log_counts == {"info": RECENT_LOGS + 1}
    assert timed.logs[-1].time == datetime(2026, 11, 26, 10, 0, 1, tzinfo=UTC)
    assert timed.updated_at == "2026-11-26T10:00:01Z"  # the latest event's time, as given


def test_a_producer_clock_in_2099_freezes_nothing() -> None:
    """A terminal status stamped 2099 is followed by a re-run and its success, and they show."""
    state = DeploymentState("D1")
    future = parse_message(
        json.dumps(
            {
                "type": "deployment.status",
                "deployment_id": "D1",
                "seq": 2,
                "data": {"status": "failed"},
                "timestamp": "2099-01-01T00:00:00Z",
            }
        )
    )
    assert isinstance(future, Event)
    state.apply(event(1, "deployment.status", 0, status="deploying"))
    state.apply(future)
    state.apply(event(3, "deployment.status", 5, status="deploying", current_layer=1))
    state.apply(event(4, "deployment.status", 6, status="succeeded"))
    assert (state.status, state.attempt, state.started_at, state.updated_at) == (
        "succeeded",
        2,
        "2026-11-26T10:00:05Z",
        "2026-11-26T10:00:06Z",
    )


def test_limits_bound_stacks_levels_and_texts() -> None:
    """At most MAX_STACKS stacks (the rest counted), MAX_LOG_LEVELS levels (the rest: other), cut texts."""
    state = DeploymentState("D1")
    seq = 0
    for index in range(MAX_STACKS + 3):
        seq += 1
        state.apply(event(seq, "stack.failed", 0, stack_name=f"s{index}", error_message="e" * 500_000))
    for index in range(MAX_LOG_LEVELS + 2):
        seq += 1
        state.apply(event(seq, "log.created", 0, level=f"level{index}", message="\x01" * 1000))
    assert len(state.stacks) == MAX_STACKS
    assert state.dropped_stack_events == 3
    assert len(state.stacks["s0"].error_message or "") == ERROR_MESSAGE_BYTES
    assert state.log_counts[OTHER_LEVEL] == 2
    assert len(state.log_counts) == MAX_LOG_LEVELS + 1
    assert state.logs[-1].message == "\x01" * (LOG_MESSAGE_CHARS // 6)  # 6 bytes each once escaped
    assert state.logs[-1].level == f"level{MAX_LOG_LEVELS + 1}"
    # A re-run starts the count afresh.
    state.apply(event(seq + 1, "deployment.status", 0, status="failed"))
    state.apply(event(seq + 2, "deployment.status", 0, status="deploying"))
    assert (state.attempt, state.stacks, state.dropped_stack_events, state.log_counts) == (2, {}, 0, {})


def test_cut_measures_bytes_of_json() -> None:
    """The client cuts texts exactly as the server does (bytes of compact JSON in UTF-8)."""
    assert cut('a"b', 3) == 'a"'
    assert cut("é€😀", 8) == "é€"
    assert cut("\ud800x", 4) == "\ufffdx"
    assert cut("\x01\x01", 11) == "\x01"


def snapshot_message(seq: int, **data: Any) -> DeploymentSnapshot:
    message = parse_message(
        json.dumps({"type": "deployment.snapshot", "deployment_id": "D1", "seq": seq, "data": data})
    )
    assert isinstance(message, DeploymentSnapshot)
    return message


def test_a_snapshot_is_the_starting_point() -> None:
    """Events in the snapshot are not folded again; later ones fold on top; a re-run starts afresh."""
    state = DeploymentState.from_snapshot(
        snapshot_message(
            4,
            status="failed",
            attempt=1,
            current_layer=2,
            total_layers=2,
            started_at="2026-11-26T10:00:00Z",
            updated_at="2026-11-26T10:00:09Z",
            stacks={"db": {"status": "failed", "layer": 2, "error_message": "Subnet not found"}},
            dropped_stack_events=2,
            log_counts={"error": 1},
            recent_logs=[
                {"level": "error", "message": "boom", "seq": 3, "timestamp": "2026-11-26T10:00:08Z"}
            ],
        )
    )
    assert (state.status, state.attempt, state.seq, state.is_complete) == ("failed", 1, 4, True)
    assert state.stacks["db"].error_message == "Subnet not found"
    assert state.dropped_stack_events == 2
    assert state.apply(event(4, "deployment.status", 9, status="deploying")) is False  # in the snapshot
    # A deploying status after the terminal one is a re-run, even stamped before the snapshot's latest event.
    state.apply(event(5, "deployment.status", 5, status="deploying", current_layer=1))
    assert (state.status, state.attempt, state.current_layer, state.total_layers) == ("deploying", 2, 1, 2)
    assert (state.stacks, state.logs, state.log_counts, state.dropped_stack_events) == ({}, [], {}, 0)
    assert (state.started_at, state.updated_at) == ("2026-11-26T10:00:05Z", "2026-11-26T10:00:05Z")
    assert state.apply_snapshot(snapshot_message(5, status="pending")) is False  # behind the state
    assert state.status == "deploying"


def test_timestamps() -> None:
    """ISO 8601 with Z or an offset; naive means UTC; junk means unknown."""
    assert parse_timestamp("2026-11-26T10:05:00.123Z") == datetime(2026, 11, 26, 10, 5, 0, 123000, tzinfo=UTC)
    assert parse_timestamp("2026-11-26T10:05:00") == datetime(2026, 11, 26, 10, 5, tzinfo=UTC)
    assert parse_timestamp("yesterday") is None
    assert parse_timestamp(None) is None
