"""The broadcaster: seq assignment, idempotency, subscriber Query, concurrent fan-out, 410/429/5xx."""

from __future__ import annotations

import threading
import time
from typing import Any, cast

import pytest

from contract import keys, state
from handlers import broadcaster
from server.runtime import get_runtime, reset_runtime
from server.store import Counter, Store
from tests.support.events import eventbridge_event
from tests.support.moto_stack import AtomicRequests, Stack, counters_in_lockstep


def _events(stack: Stack, conn: str) -> list[dict[str, Any]]:
    return [
        m
        for m in stack.replies(conn)
        if "seq" in m and m["type"] not in ("subscribed", "deployment.snapshot")
    ]


def test_event_reaches_every_subscriber_and_no_one_else(stack: Stack) -> None:
    """Subscribers of D1 get the envelope as a message; D2's subscriber gets nothing."""
    d1 = stack.subscribed("D1", 3)
    (d2,) = stack.subscribed("D2", 1, prefix="other")

    summary = stack.publish(
        "D1", "stack.deployed", {"stack_name": "network", "duration_seconds": 300}, event_id="ev-1"
    )

    assert summary["status"] == "sent"
    assert summary["delivered"] == 3
    for conn in d1:
        assert stack.replies(conn) == [
            {
                "type": "stack.deployed",
                "deployment_id": "D1",
                "seq": 1,
                "event_id": "ev-1",
                "data": {"stack_name": "network", "duration_seconds": 300},
                "timestamp": "2026-11-26T10:00:00Z",
            }
        ]
    assert stack.replies(d2) == []


def test_seq_is_per_deployment_and_gapless(stack: Stack) -> None:
    """Each deployment counts 1, 2, 3, ... on its own."""
    (conn,) = stack.subscribed("D1", 1)

    seqs = [stack.publish("D1")["seq"] for _ in range(4)]
    other = stack.publish("D2")["seq"]

    assert seqs == [1, 2, 3, 4]
    assert other == 1
    assert [m["seq"] for m in _events(stack, conn)] == [1, 2, 3, 4]


def test_duplicate_delivery_changes_nothing_and_is_not_resent(stack: Stack) -> None:
    """A second delivery of the same event_id (even with another EventBridge id) is a no-op."""
    (conn,) = stack.subscribed("D1", 1)
    stack.publish("D1", event_id="same")
    before = stack.snapshot()

    again = stack.publish("D1", event_id="same")

    assert again == {"status": "duplicate", "seq": 1}
    assert stack.snapshot() == before
    assert len(_events(stack, conn)) == 1


def test_without_event_id_the_eventbridge_id_identifies_the_event(stack: Stack) -> None:
    """Producers that call PutEvents directly still get at-most-once storage per EventBridge id."""
    (conn,) = stack.subscribed("D1", 1)

    first = stack.publish("D1", event_id=None, eb_id="eb-123")
    second = stack.publish("D1", event_id=None, eb_id="eb-123")
    third = stack.publish("D1", event_id=None, eb_id="eb-456")

    assert (first["seq"], second["status"], third["seq"]) == (1, "duplicate", 2)
    assert [m["event_id"] for m in _events(stack, conn)] == ["eb:eb-123", "eb:eb-456"]


def test_redelivery_after_an_interrupted_fan_out_resends_the_stored_event(stack: Stack) -> None:
    """If the first invocation died before finishing, the retry sends the same seq again."""
    (conn,) = stack.subscribed("D1", 1)
    stack.publish("D1", event_id="ev")
    stack.ddb.update_item(  # as if the container died between storing and sending
        TableName=stack.tables["EVENTS_TABLE"],
        Key=keys.lease("D1"),
        UpdateExpression="SET sentUpTo = :z",
        ExpressionAttributeValues={":z": {"N": "0"}},
    )

    retry = stack.publish("D1", event_id="ev")

    assert retry["status"] == "resent"
    assert retry["seq"] == 1
    assert [m["seq"] for m in _events(stack, conn)] == [1, 1]  # clients drop the copy by seq
    assert stack.publish("D1", event_id="ev")["status"] == "duplicate"


def test_a_holder_that_ran_out_of_time_has_what_it_stored_past_its_mark_resent(stack: Stack) -> None:
    """The lease's holder stored 2 and 3, then died before sending (their inbox rows and records
    were gone with it): the next invocation takes the expired lease over and sends them first."""
    (conn,) = stack.subscribed("D1", 1)
    for n in range(3):
        stack.publish("D1", event_id=f"ev-{n}")
    stack.ddb.update_item(  # the dead holder's lease: still named, run out, sent only up to 1
        TableName=stack.tables["EVENTS_TABLE"],
        Key=keys.lease("D1"),
        UpdateExpression="SET #o = :dead, #u = :past, sentUpTo = :one",
        ExpressionAttributeNames={"#o": "owner", "#u": "until"},
        ExpressionAttributeValues={":dead": {"S": "dead"}, ":past": {"N": "1"}, ":one": {"N": "1"}},
    )
    before = len(_events(stack, conn))

    stack.publish("D1", event_id="ev-3")

    assert [m["seq"] for m in _events(stack, conn)][before:] == [2, 3, 4]
    lease = stack.ddb.get_item(TableName=stack.tables["EVENTS_TABLE"], Key=keys.lease("D1"))["Item"]
    assert lease["sentUpTo"] == {"N": "4"}
    assert "owner" not in lease


def test_the_lease_records_what_was_sent_and_a_redelivery_after_it_is_a_duplicate(stack: Stack) -> None:
    """Sending marks the lease (one attribute) instead of rewriting every identity row."""
    stack.subscribed("D1", 1)
    for n in range(3):
        stack.publish("D1", event_id=f"ev-{n}")

    lease = stack.ddb.get_item(TableName=stack.tables["EVENTS_TABLE"], Key=keys.lease("D1"))["Item"]
    identity = stack.ddb.get_item(
        TableName=stack.tables["EVENT_IDS_TABLE"], Key={"eventKey": {"S": "D1/ev-1"}}
    )["Item"]
    assert lease["sentUpTo"] == {"N": "3"}
    assert "sent" not in identity
    assert identity["seq"] == {"N": "2"}
    assert stack.publish("D1", event_id="ev-1")["status"] == "duplicate"


def test_concurrent_invocations_never_share_a_seq(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """Eight producers racing on one deployment get 1..8, each exactly once, even when every drain
    lease has expired at once (each of them believes it holds the deployment)."""
    monkeypatch.setattr("server.inbox.LEASE_SECONDS", -1.0)  # every claim succeeds: the worst case
    results: list[dict[str, Any]] = []
    lock = threading.Lock()
    runtime = get_runtime()
    config = runtime.config
    # Every producer must read the counter: none may start from one it wrote itself.
    runtime.store = Store(
        cast(Any, AtomicRequests(stack.ddb)), config.tables, config.history_ttl_seconds, reuse_counter=False
    )
    races = {"lost": 0}
    real_transact = stack.ddb.transact_write_items

    def counting_transact(**kwargs: Any) -> Any:
        try:
            return real_transact(**kwargs)
        except stack.ddb.exceptions.TransactionCanceledException:
            races["lost"] += 1
            raise

    stack.ddb.transact_write_items = counting_transact
    # Every producer reads the counter before any of them writes: a guaranteed race.
    real_counter = counters_in_lockstep(runtime.store, 8)

    def publish(i: int) -> None:
        summary = broadcaster.handler(
            eventbridge_event("log.created", {"deployment_id": "RACE", "event_id": f"e{i}", "data": {"i": i}})
        )
        with lock:
            results.append(summary)

    threads = [threading.Thread(target=publish, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(r["seq"] for r in results) == list(range(1, 9))
    assert real_counter("RACE").last_seq == 8
    rows = [r for r in stack.snapshot()["EVENTS_TABLE"] if r["deploymentId"]["S"] == "RACE"]
    assert len(rows) == 9  # eight events and the counter
    # The race happened: transactions lost and were retried. Not always all seven: a producer
    # that reads the counter again before its first transaction (the holder re-reads once per
    # hold) starts from the winner's seq and does not lose.
    assert races["lost"] >= 1


def test_losing_the_counter_race_retries_with_the_next_seq(stack: Stack) -> None:
    """A writer whose read of the counter is stale retries instead of reusing or skipping a seq."""
    stack.publish("D1")
    reset_runtime()  # a fresh container: it has no counter value of its own to start from
    store = get_runtime().store
    real_counter = store.counter
    calls = {"n": 0}

    def stale_once(deployment_id: str) -> Counter:
        calls["n"] += 1
        return Counter(0) if calls["n"] == 1 else real_counter(deployment_id)

    store.counter = stale_once  # type: ignore[method-assign]

    assert stack.publish("D1")["seq"] == 2
    assert calls["n"] >= 2


def test_gone_connection_mid_fan_out_is_removed_and_the_rest_delivered(stack: Stack) -> None:
    """A 410 deletes that connection and all its subscriptions; the others still get the event."""
    connections = stack.subscribed("D1", 5)
    gone = connections[2]
    stack.send(gone, {"action": "subscribe", "deployment_id": "D2"})
    stack.mgmt.gone.add(gone)

    summary = stack.publish("D1")

    assert summary["delivered"] == 4
    assert summary["gone"] == 1
    for conn in connections:
        assert len(_events(stack, conn)) == (0 if conn == gone else 1)
    snapshot = stack.snapshot()
    assert gone not in {i["connectionId"]["S"] for i in snapshot["CONNECTIONS_TABLE"]}
    assert gone not in {i["connectionId"]["S"] for i in snapshot["SUBSCRIPTIONS_TABLE"]}
    assert stack.publish("D1")["recipients"] == 4  # and it is not posted to again


def test_subscribers_are_read_page_by_page(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a page size of 2, five subscribers take three Query pages and all receive the event."""
    monkeypatch.setenv("SUBSCRIBER_PAGE_SIZE", "2")
    reset_runtime()
    connections = stack.subscribed("D1", 5)
    pages: list[int] = []
    store = get_runtime().store
    real_pages = store.subscriber_pages

    def counting(
        deployment_id: str, page_size: int, project: str | None = None, audience: str | None = None
    ) -> Any:
        for page in real_pages(deployment_id, page_size, project, audience):
            pages.append(len(page.subscribers))
            yield page

    store.subscriber_pages = counting  # type: ignore[method-assign]

    summary = stack.publish("D1")

    assert summary["delivered"] == 5
    assert pages[:3] == [2, 2, 1]
    assert all(len(_events(stack, c)) == 1 for c in connections)


def test_items_read_grow_with_subscribers_not_with_all_connections(stack: Stack) -> None:
    """Two subscribers among many connections: the broadcast reads two items."""
    stack.subscribed("BUSY", 6, prefix="busy")
    stack.subscribed("QUIET", 2, prefix="quiet")

    summary = stack.publish("QUIET")

    assert summary["items_read"] == 2
    assert summary["recipients"] == 2


def test_expired_subscriptions_are_never_posted_to(stack: Stack) -> None:
    """A row past its ttl (the sweeper lags) is read but skipped."""
    live, expired = stack.subscribed("D1", 2)
    stack.ddb.update_item(
        TableName=stack.tables["SUBSCRIPTIONS_TABLE"],
        Key={"deploymentId": {"S": "D1"}, "connectionId": {"S": expired}},
        UpdateExpression="SET #t = :t",
        ExpressionAttributeNames={"#t": "ttl"},
        ExpressionAttributeValues={":t": {"N": str(int(time.time()) - 5)}},
    )

    summary = stack.publish("D1")

    assert (summary["items_read"], summary["recipients"], summary["delivered"]) == (2, 1, 1)
    assert _events(stack, expired) == []
    assert len(_events(stack, live)) == 1


@pytest.mark.parametrize("status", [429, 500, 503])
def test_throttled_or_failing_posts_are_retried(stack: Stack, status: int) -> None:
    """429 and 5xx answers are retried with backoff and the event is delivered."""
    (conn,) = stack.subscribed("D1", 1)
    stack.mgmt.failures = [status]

    summary = stack.publish("D1")

    assert summary["delivered"] == 1
    assert summary["retries"] == 1
    assert len(_events(stack, conn)) == 1


def test_a_connection_whose_posts_keep_failing_is_retried_in_a_later_round(stack: Stack) -> None:
    """After POST_MAX_ATTEMPTS 5xx answers a connection waits for a retry round; others are not held up."""
    connections = stack.subscribed("D1", 3)
    stack.mgmt.failures_for[connections[1]] = [500, 500, 500]  # POST_MAX_ATTEMPTS=3 in the fixture

    summary = stack.publish("D1")

    assert summary["retrying"] == 1
    assert summary["delivered"] == 3  # two in the first round, the third in the retry round
    assert all(len(_events(stack, c)) == 1 for c in connections)
    assert stack.publish("D1")["delivered"] == 3  # the connection was not dropped for it


def test_fan_out_is_concurrent_and_bounded(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a slow endpoint, posts overlap, never more than BROADCAST_CONCURRENCY at once."""
    monkeypatch.setenv("BROADCAST_CONCURRENCY", "4")
    reset_runtime()
    stack.subscribed("D1", 12)
    stack.mgmt.delay_seconds = 0.05
    stack.mgmt.max_in_flight = 0

    assert stack.publish("D1")["delivered"] == 12

    assert 2 <= stack.mgmt.max_in_flight <= 4


BAD_EVENTS: dict[str, dict[str, Any]] = {
    "bad detail-type": {"detail-type": "Deployment Status!", "detail": {"deployment_id": "D1"}},
    "missing detail": {"detail-type": "deployment.status"},
    "detail not an object": {"detail-type": "deployment.status", "detail": "D1"},
    "bad deployment id": {"detail-type": "deployment.status", "detail": {"deployment_id": "D 1"}},
    "data not an object": {"detail-type": "log.created", "detail": {"deployment_id": "D1", "data": [1]}},
    "no identity at all": {"detail-type": "log.created", "detail": {"deployment_id": "D1"}, "id": ""},
    "the server's snapshot type": {"detail-type": "deployment.snapshot", "detail": {"deployment_id": "D1"}},
}


@pytest.mark.parametrize("case", sorted(BAD_EVENTS))
def test_invalid_events_are_rejected_without_storing_anything(stack: Stack, case: str) -> None:
    """A malformed envelope is logged and dropped (a retry could not fix it)."""
    (conn,) = stack.subscribed("D1", 1)
    before = stack.snapshot()

    summary = broadcaster.handler({"id": "eb-1", **BAD_EVENTS[case]})

    assert summary["status"] == "rejected"
    assert summary["reason"]
    assert stack.snapshot() == before
    assert stack.replies(conn) == []


def test_oversize_data_is_replaced_by_a_marker_not_split(stack: Stack) -> None:
    """A message over API Gateway's 128 KB limit becomes a small, valid one with the same seq."""
    (conn,) = stack.subscribed("D1", 1)

    stack.publish("D1", "log.created", {"message": "x" * 200_000})

    (message,) = _events(stack, conn)
    assert message["data"] == {"truncated": True, "original_bytes": message["data"]["original_bytes"]}
    assert message["data"]["original_bytes"] > 200_000
    assert message["seq"] == 1


def test_missing_management_endpoint_fails_loudly_before_storing(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A misconfigured broadcaster raises (so Lambda retries / dead-letters) and stores nothing."""
    monkeypatch.delenv("MANAGEMENT_ENDPOINT")
    reset_runtime()
    before = stack.snapshot()

    with pytest.raises(RuntimeError, match="MANAGEMENT_ENDPOINT"):
        stack.publish("D1")
    assert stack.snapshot() == before


def test_timestamp_defaults_to_the_time_the_event_was_received(stack: Stack) -> None:
    """Events emitted without a timestamp carry the time the system received them, not a producer's claim."""
    (conn,) = stack.subscribed("D1", 1)
    before = time.time()

    broadcaster.handler(eventbridge_event("log.created", {"deployment_id": "D1", "event_id": "x"}))

    after = time.time()
    stamped = state.epoch_ms(_events(stack, conn)[0]["timestamp"])
    assert stamped is not None
    assert int(before * 1000) - 1 <= stamped <= int(after * 1000) + 1
    assert _events(stack, conn)[0]["data"] == {}
