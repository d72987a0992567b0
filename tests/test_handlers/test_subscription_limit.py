"""The subscription limit holds when one connection's frames run concurrently (as API Gateway may)."""

from __future__ import annotations

import threading
from typing import Any, cast

from server.runtime import get_runtime
from server.store import Store
from tests.support.moto_stack import AtomicRequests, Stack


def test_concurrent_subscribes_never_pass_the_limit(stack: Stack) -> None:
    """21 subscribes of one connection at the same moment, a limit of 20: exactly 20 stored, one
    refused with too_many_subscriptions (counting first and writing after let all 21 through)."""
    conn = stack.open()
    runtime = get_runtime()
    lock = threading.Lock()

    runtime.store = Store(
        cast(Any, AtomicRequests(stack.ddb, lock)), runtime.config.tables, runtime.config.history_ttl_seconds
    )
    start_line = threading.Barrier(21)
    real_reserve = runtime.store.reserve_subscription

    def reserve_in_lockstep(*args: Any) -> bool:
        start_line.wait(timeout=10)
        return real_reserve(*args)

    runtime.store.reserve_subscription = reserve_in_lockstep  # type: ignore[method-assign]
    replies: list[dict[str, Any]] = []

    def subscribe(n: int) -> None:
        reply = stack.send(conn, {"action": "subscribe", "deployment_id": f"D{n:02d}"})
        with lock:
            replies.append(reply)

    threads = [threading.Thread(target=subscribe, args=(n,)) for n in range(21)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    rows = [r for r in stack.snapshot()["SUBSCRIPTIONS_TABLE"] if r["connectionId"]["S"] == conn]
    assert len(rows) == 20
    errors = [m for m in stack.replies(conn) if m.get("type") == "error"]
    assert [e["code"] for e in errors] == ["too_many_subscriptions"]


def test_unsubscribing_frees_a_place(stack: Stack) -> None:
    """At the limit, unsubscribing from one lets another subscribe; watching one again never counts twice."""
    conn = stack.open()
    limit = get_runtime().config.max_subscriptions_per_connection
    for n in range(limit):
        stack.send(conn, {"action": "subscribe", "deployment_id": f"D{n:02d}"})
    stack.send(conn, {"action": "subscribe", "deployment_id": "D00"})  # again: still counts once
    stack.send(conn, {"action": "subscribe", "deployment_id": "EXTRA"})
    assert [m["code"] for m in stack.replies(conn) if m.get("type") == "error"] == ["too_many_subscriptions"]

    stack.send(conn, {"action": "unsubscribe", "deployment_id": "D00"})
    stack.send(conn, {"action": "subscribe", "deployment_id": "EXTRA"})

    rows = {
        r["deploymentId"]["S"]
        for r in stack.snapshot()["SUBSCRIPTIONS_TABLE"]
        if r["connectionId"]["S"] == conn
    }
    assert "EXTRA" in rows
    assert "D00" not in rows
    assert len(rows) == limit
