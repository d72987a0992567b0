"""The snapshot after every ``subscribed``, re-runs as attempts, and ``list_deployments``."""

from __future__ import annotations

from typing import Any

import pytest

from contract import state
from handlers import broadcaster
from server.runtime import reset_runtime
from tests.support.events import eventbridge_event
from tests.support.moto_stack import Stack
from tests.test_handlers.wire import posts, replies


def _publish(stack: Stack, deployment_id: str, type_: str, data: dict[str, Any], at: int) -> None:
    """An event stamped ``at`` seconds past a fixed minute (the producer's clock)."""
    detail = {
        "deployment_id": deployment_id,
        "event_id": f"{deployment_id}-{type_}-{at}",
        "data": data,
        "timestamp": f"2026-12-02T10:{at // 60:02d}:{at % 60:02d}.000Z",
    }
    broadcaster.handler(eventbridge_event(type_, detail))


def _failed_then_succeeded(stack: Stack, deployment_id: str) -> None:
    """Attempt 1 fails in layer 2; attempt 2 (the same id, later) succeeds."""
    _publish(
        stack,
        deployment_id,
        "deployment.status",
        {"status": "deploying", "current_layer": 1, "total_layers": 2},
        0,
    )
    _publish(
        stack,
        deployment_id,
        "stack.failed",
        {"stack_name": "database-rds", "layer": 2, "error_message": "Subnet not found"},
        1,
    )
    _publish(stack, deployment_id, "deployment.status", {"status": "failed", "current_layer": 2}, 2)
    _publish(stack, deployment_id, "deployment.status", {"status": "deploying", "current_layer": 1}, 10)
    _publish(
        stack,
        deployment_id,
        "stack.deployed",
        {"stack_name": "network", "layer": 1, "resource_count": 15},
        11,
    )
    _publish(stack, deployment_id, "deployment.status", {"status": "succeeded", "current_layer": 2}, 12)


def test_the_snapshot_follows_the_ack_with_the_state_through_its_seq(stack: Stack) -> None:
    """Subscribing to a re-run deployment: the ack, then attempt 2's state at the same seq, one post."""
    _failed_then_succeeded(stack, "D1BRV40")
    conn = stack.open()

    stack.send(conn, {"action": "subscribe", "deployment_id": "D1BRV40", "id": "s1"})

    (post,) = posts(stack, conn)
    ack, snapshot = replies(stack, conn, snapshots=True)
    assert post.count(b"\n") == 1
    assert (ack["type"], ack["seq"], ack["id"]) == ("subscribed", 6, "s1")
    assert (snapshot["type"], snapshot["deployment_id"], snapshot["seq"], snapshot["id"]) == (
        "deployment.snapshot",
        "D1BRV40",
        6,
        "s1",
    )
    data = snapshot["data"]
    assert (data["status"], data["attempt"], data["current_layer"], data["total_layers"]) == (
        "succeeded",
        2,
        2,
        2,
    )
    assert data["stacks"] == {
        "network": {
            "status": "deployed",
            "layer": 1,
            "environment": None,
            "resource_count": 15,
            "duration_seconds": None,
            "error_message": None,
        }
    }
    assert data["started_at"] == "2026-12-02T10:00:10.000Z"
    assert data["updated_at"] == "2026-12-02T10:00:12.000Z"


def test_the_stored_state_is_what_the_reducer_folds_from_the_history(stack: Stack) -> None:
    """Folded batch by batch in the sequencing transactions = folded at once from the stored history."""
    _failed_then_succeeded(stack, "D1")
    conn = stack.open()
    stack.send(conn, {"action": "subscribe", "deployment_id": "D1", "since": 0})

    got = replies(stack, conn, snapshots=True)
    history = [m for m in got if m["type"] not in ("subscribed", "deployment.snapshot")]
    snapshot = next(m for m in got if m["type"] == "deployment.snapshot")

    assert [m["seq"] for m in history] == [1, 2, 3, 4, 5, 6]
    assert snapshot["data"] == state.public(state.fold(state.initial(), history))


def test_a_deployment_nobody_reported_on_is_pending_attempt_zero(stack: Stack) -> None:
    """The snapshot of an unknown deployment: pending, attempt 0, seq 0."""
    conn = stack.open()

    stack.send(conn, {"action": "subscribe", "deployment_id": "NEW"})

    snapshot = replies(stack, conn, snapshots=True)[1]
    assert (snapshot["seq"], snapshot["data"]["status"], snapshot["data"]["attempt"]) == (0, "pending", 0)
    assert snapshot["data"] == state.public(state.initial())


def test_a_refused_subscribe_sends_no_snapshot(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside SUBSCRIBE_GROUPS: one error, no snapshot, nothing stored."""
    monkeypatch.setenv("SUBSCRIBE_GROUPS", "ops")
    reset_runtime()
    _publish(stack, "D1", "deployment.status", {"status": "deploying"}, 0)
    outsider = stack.open("mallory", groups=("interns",))
    before = stack.snapshot()

    stack.send(outsider, {"action": "subscribe", "deployment_id": "D1"})

    (error,) = replies(stack, outsider, snapshots=True)
    assert (error["type"], error["code"]) == ("error", "forbidden")
    assert stack.snapshot() == before


# -- list_deployments -------------------------------------------------------------------------------


def test_deployments_are_listed_newest_first_with_their_summary(stack: Stack) -> None:
    """Two deployments: the one whose latest event is newer comes first; the id is echoed."""
    _failed_then_succeeded(stack, "OLDER")
    _publish(
        stack,
        "NEWER",
        "deployment.status",
        {"status": "deploying", "current_layer": 1, "total_layers": 4, "environment": "prod"},
        30,
    )
    conn = stack.open()

    stack.send(conn, {"action": "list_deployments", "id": "l1"})

    (reply,) = replies(stack, conn)
    assert (reply["type"], reply["id"]) == ("deployments", "l1")
    assert reply["deployments"] == [
        {
            "deployment_id": "NEWER",
            "status": "deploying",
            "attempt": 1,
            "current_layer": 1,
            "total_layers": 4,
            "updated_at": "2026-12-02T10:00:30.000Z",
            "environment": "prod",
            "project": "default",
        },
        {
            "deployment_id": "OLDER",
            "status": "succeeded",
            "attempt": 2,
            "current_layer": 2,
            "total_layers": 2,
            "updated_at": "2026-12-02T10:00:12.000Z",
            "environment": None,
            "project": "default",
        },
    ]


def test_the_list_follows_new_events_and_honours_the_limit(stack: Stack) -> None:
    """A later event moves a deployment to the top; ``limit`` cuts the list."""
    for index, deployment_id in enumerate(("A", "B", "C")):
        _publish(stack, deployment_id, "deployment.status", {"status": "deploying"}, index)
    _publish(stack, "A", "deployment.status", {"status": "succeeded"}, 40)
    conn = stack.open()

    stack.send(conn, {"action": "list_deployments", "limit": 2})

    (reply,) = replies(stack, conn)
    assert [(d["deployment_id"], d["status"]) for d in reply["deployments"]] == [
        ("A", "succeeded"),
        ("C", "deploying"),
    ]


def test_only_deployments_the_caller_may_watch_are_listed(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With SUBSCRIBE_GROUPS, a member sees the deployments and an outsider an empty list."""
    monkeypatch.setenv("SUBSCRIBE_GROUPS", "ops")
    reset_runtime()
    _publish(stack, "D1", "deployment.status", {"status": "deploying"}, 0)
    member, outsider = stack.open("olivia", groups=("ops",)), stack.open("mallory", groups=("interns",))

    stack.send(member, {"action": "list_deployments"})
    stack.send(outsider, {"action": "list_deployments"})

    assert [d["deployment_id"] for d in replies(stack, member)[0]["deployments"]] == ["D1"]
    assert replies(stack, outsider)[0]["deployments"] == []


@pytest.mark.parametrize("limit", [0, 201, -1, 1.5, "10", True])
def test_a_bad_limit_is_refused_and_changes_nothing(stack: Stack, limit: Any) -> None:
    """``limit`` must be an integer from 1 to 200."""
    _publish(stack, "D1", "deployment.status", {"status": "deploying"}, 0)
    conn = stack.open()
    before = stack.snapshot()

    stack.send(conn, {"action": "list_deployments", "limit": limit, "id": "bad"})

    (error,) = replies(stack, conn)
    assert (error["type"], error["code"], error["id"], error["action"]) == (
        "error",
        "invalid_limit",
        "bad",
        "list_deployments",
    )
    assert "1 to 200" in error["message"]
    assert stack.snapshot() == before


def test_a_connection_with_an_expired_token_cannot_list(stack: Stack) -> None:
    """As for subscribe: the connection outlived its token; nothing is read or changed."""
    conn = stack.open()
    stack.expire_token(conn)
    before = stack.snapshot()

    stack.send(conn, {"action": "list_deployments"})

    assert replies(stack, conn)[0]["code"] == "token_expired"
    assert stack.snapshot() == before
