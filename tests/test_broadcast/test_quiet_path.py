"""A quiet deployment's events are stored without the drain lease, in one checked transaction.

The sequencing transaction checks the lease row (nobody holds it, nothing waits) as it stores,
so an idle deployment's event costs one DynamoDB round trip before its posts instead of three
(claim, store, and a release after them). Whenever the check fails, nothing is stored and the
events take the lease's path: these tests hold both sides of that line.
"""

from __future__ import annotations

import time
from typing import Any, cast

from contract import keys
from contract.events import parse_event
from handlers import broadcaster
from server.inbox import Inbox
from server.runtime import get_runtime
from server.store import Store
from tests.support.events import eventbridge_event
from tests.support.moto_stack import Stack


def _numbered(deployment_id: str, n: int) -> dict[str, Any]:
    detail = {
        "deployment_id": deployment_id,
        "event_id": f"p1-{deployment_id}-{n}",
        "data": {"level": "info", "message": f"line {n}"},
        "producer_id": "p1",
        "producer_seq": n,
    }
    return eventbridge_event("log.created", detail)


def _lines(stack: Stack, conn: str) -> list[tuple[int, str]]:
    return [
        (m["seq"], m["data"]["message"])
        for frame in stack.mgmt.frames(conn)
        for m in frame
        if m.get("type") == "log.created"
    ]


def _lease(stack: Stack, deployment_id: str) -> dict[str, Any]:
    item = stack.ddb.get_item(TableName=stack.tables["EVENTS_TABLE"], Key=keys.lease(deployment_id))
    return dict(item.get("Item", {}))


def test_a_quiet_deployment_s_event_is_stored_and_sent_without_claiming_the_lease(stack: Stack) -> None:
    """One event: stored and sent; the lease was never held, and it records what was sent."""
    (conn,) = stack.subscribed("Q1", 1)
    calls: list[str] = []

    class Watching:
        """The store's client, noting every UpdateItem (claims, releases and marks are those)."""

        def __getattr__(self, name: str) -> Any:
            return getattr(stack.ddb, name)

        def update_item(self, **kwargs: Any) -> Any:
            calls.append(kwargs["UpdateExpression"])
            return stack.ddb.update_item(**kwargs)

    runtime = get_runtime()
    runtime.store = Store(cast(Any, Watching()), runtime.config.tables, runtime.config.history_ttl_seconds)

    assert broadcaster.handler(_numbered("Q1", 1))["seq"] == 1
    assert broadcaster.handler(_numbered("Q1", 2))["seq"] == 2

    assert _lines(stack, conn) == [(1, "line 1"), (2, "line 2")]
    lease = _lease(stack, "Q1")
    assert "owner" not in lease
    assert lease["sentUpTo"] == {"N": "2"}
    assert calls == ["SET sentUpTo = :s"] * 2  # no claim, no release: only the sent mark


def test_an_event_for_a_held_lease_waits_in_the_inbox_and_nothing_is_stored(stack: Stack) -> None:
    """Another invocation holds the lease: the event goes to its inbox, unstored, unsent."""
    (conn,) = stack.subscribed("Q2", 1)
    inbox = Inbox(stack.ddb, stack.tables["EVENTS_TABLE"])
    assert inbox.claim("Q2", "someone else") is not None

    result = broadcaster.handler(_numbered("Q2", 1))

    assert result == {"status": "queued"}
    assert _lines(stack, conn) == []
    assert [e.event_id for e in inbox.waiting("Q2")] == ["p1-Q2-1"]
    assert [r for r in stack.snapshot()["EVENTS_TABLE"] if r["deploymentId"]["S"] == "Q2"] == []


def test_events_waiting_in_the_inbox_send_the_next_one_the_lease_s_way_in_order(stack: Stack) -> None:
    """2 and 3 wait in the inbox (the lease free, a wake not yet drained): 1 arrives and cannot skip
    them; the lease's path stores all three, in the producer's order."""
    (conn,) = stack.subscribed("Q3", 1)
    inbox = Inbox(stack.ddb, stack.tables["EVENTS_TABLE"])
    inbox.add("Q3", [parse_event(_numbered("Q3", 2)), parse_event(_numbered("Q3", 3))])
    assert inbox.read("Q3").free(int(time.time() * 1000))

    broadcaster.handler(_numbered("Q3", 1))

    assert _lines(stack, conn) == [(1, "line 1"), (2, "line 2"), (3, "line 3")]
    assert inbox.waiting("Q3") == []
    assert "owner" not in _lease(stack, "Q3")


def test_an_event_behind_a_gap_is_held_not_stored_by_the_quiet_path(stack: Stack) -> None:
    """Number 2 without 1: not stored, held in the inbox (the lease's path), sent after 1."""
    (conn,) = stack.subscribed("Q4", 1)

    broadcaster.handler(_numbered("Q4", 2))

    assert _lines(stack, conn) == []
    assert _lease(stack, "Q4")["held"] == {"N": "1"}

    broadcaster.handler(_numbered("Q4", 1))

    assert _lines(stack, conn) == [(1, "line 1"), (2, "line 2")]
