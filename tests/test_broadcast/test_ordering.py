"""Emission order, the drain lease, failure classes and a bounded counter, against moto's DynamoDB."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, cast

import boto3
import pytest
from botocore.exceptions import ClientError

from contract import keys, spec, state
from contract.events import DeploymentEvent, parse_event
from handlers import broadcaster
from server import ordering
from server.inbox import Inbox
from server.runtime import get_runtime, reset_runtime
from server.store import Store
from tests.support.events import eventbridge_event, sqs_records
from tests.support.moto_stack import REGION, AtomicRequests, Stack

PRODUCER = "p1"


def _numbered(deployment_id: str, n: int, producer: str = PRODUCER, **data: Any) -> dict[str, Any]:
    detail = {
        "deployment_id": deployment_id,
        "event_id": f"{producer}-{deployment_id}-{n}",
        "data": {"level": "info", "message": f"line {n}", **data},
        "producer_id": producer,
        "producer_seq": n,
    }
    return eventbridge_event("log.created", detail)


_records = sqs_records


def _messages(stack: Stack, conn: str) -> list[dict[str, Any]]:
    return [m for frame in stack.mgmt.frames(conn) for m in frame if "seq" in m]


def _lines(stack: Stack, conn: str) -> list[str]:
    return [m["data"]["message"] for m in _messages(stack, conn)]


@pytest.fixture
def queues(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, str, str]]:
    """A real (moto) delivery queue and dead-letter queue the broadcaster knows."""
    sqs = boto3.client("sqs", region_name=REGION)
    delivery = sqs.create_queue(QueueName="delivery")["QueueUrl"]
    dead = sqs.create_queue(QueueName="delivery-dlq")["QueueUrl"]
    monkeypatch.setenv("DELIVERY_QUEUE_URL", delivery)
    monkeypatch.setenv("DEAD_LETTER_QUEUE_URL", dead)
    reset_runtime()
    yield sqs, delivery, dead
    reset_runtime()


# -- the ordering rule, pure ------------------------------------------------------------------


def _event(n: int | None, producer: str | None = PRODUCER, received_ms: int = 1_000) -> DeploymentEvent:
    return DeploymentEvent(
        "log.created",
        "D1",
        f"{producer}-{n}-{received_ms}",
        {},
        "2026-12-01T00:00:00Z",
        received_ms=received_ms,
        producer_id=producer if n is not None else None,
        producer_seq=n,
    )


def test_plan_stores_a_producer_s_events_in_its_order_and_holds_those_behind_a_gap() -> None:
    """Numbers 3, 1, 2, 5 with nothing stored: 1, 2, 3 are ready in order; 5 waits for 4."""
    waiting = [_event(3), _event(1), _event(2), _event(5)]

    plan = ordering.plan(waiting, {}, now_ms=1_500)

    assert [e.producer_seq for e in plan.ready] == [1, 2, 3]
    assert [e.producer_seq for e in plan.held] == [5]
    assert plan.cursors == {PRODUCER: 3}
    assert plan.wake_in_seconds == pytest.approx(ordering.GAP_SECONDS - 0.5)


def test_plan_skips_a_gap_that_has_waited_long_enough() -> None:
    """The first event behind a gap waited GAP_SECONDS: the gap is skipped, not waited on for ever."""
    waiting = [_event(5, received_ms=1_000), _event(6, received_ms=1_000)]

    plan = ordering.plan(waiting, {PRODUCER: 3}, now_ms=1_000 + int(ordering.GAP_SECONDS * 1000))

    assert [e.producer_seq for e in plan.ready] == [5, 6]
    assert plan.held == []
    assert plan.cursors == {PRODUCER: 6}


def test_plan_keeps_producers_apart_and_lets_unnumbered_events_through() -> None:
    """Producer a's gap holds only a's events; b's and an unnumbered event go through."""
    waiting = [_event(2, "a"), _event(1, "b", received_ms=900), _event(None, received_ms=950)]

    plan = ordering.plan(waiting, {}, now_ms=1_000)

    assert [(e.producer_id, e.producer_seq) for e in plan.ready] == [("b", 1), (None, None)]
    assert [(e.producer_id, e.producer_seq) for e in plan.held] == [("a", 2)]


def test_plan_passes_events_at_or_below_the_cursor_on_to_the_identity_check() -> None:
    """A redelivered (or late) number below the cursor is not held: storing it decides."""
    plan = ordering.plan([_event(2), _event(4)], {PRODUCER: 3}, now_ms=1_000)

    assert [e.producer_seq for e in plan.ready] == [2, 4]
    assert plan.held == []


# -- emission order through the broadcaster ---------------------------------------------------


def test_shuffled_batches_reach_subscribers_in_emission_order(stack: Stack) -> None:
    """60 numbered events in batches of 5, each batch shuffled and the batches shuffled: seq order
    is the producer's order at every subscriber (storing in arrival order fails this)."""
    connections = stack.subscribed("D1", 2)
    events = [_numbered("D1", n) for n in range(1, 61)]
    batches = [events[i : i + 5] for i in range(0, 60, 5)]
    rng = random.Random(7)
    for batch in batches:
        rng.shuffle(batch)
    rng.shuffle(batches)
    # Received "now" however slow this machine is: the 5 s gap timeout (tested on its own above)
    # must not fire between two of these batches and skip a number that is on its way.
    received = int(time.time() * 1000) + 600_000

    for batch in batches:
        assert broadcaster.handler(_records(batch, received)) == {"batchItemFailures": []}

    for conn in connections:
        messages = _messages(stack, conn)
        assert [m["seq"] for m in messages] == list(range(1, 61))
        assert [m["data"]["message"] for m in messages] == [f"line {n}" for n in range(1, 61)]


def test_events_behind_a_gap_wait_in_the_inbox_and_a_wake_is_sent(
    stack: Stack, queues: tuple[Any, str, str]
) -> None:
    """Numbers 2 and 3 without 1: nothing is sent, both wait, and a delayed wake message is queued;
    when 1 arrives all three go out in order."""
    sqs, delivery, _ = queues
    (conn,) = stack.subscribed("D1", 1)

    broadcaster.handler(_records([_numbered("D1", 3), _numbered("D1", 2)]))

    assert _messages(stack, conn) == []
    lease = Inbox(stack.ddb, stack.tables["EVENTS_TABLE"]).read("D1")
    assert lease.owner is None
    assert lease.held == 2
    woken = sqs.receive_message(QueueUrl=delivery, WaitTimeSeconds=0, AttributeNames=["All"]).get(
        "Messages", []
    )
    assert woken == []  # delayed: the gap has not timed out yet
    queued = sqs.get_queue_attributes(
        QueueUrl=delivery, AttributeNames=["ApproximateNumberOfMessagesDelayed"]
    )
    assert queued["Attributes"]["ApproximateNumberOfMessagesDelayed"] == "1"

    broadcaster.handler(_records([_numbered("D1", 1)]))

    assert _lines(stack, conn) == ["line 1", "line 2", "line 3"]
    assert Inbox(stack.ddb, stack.tables["EVENTS_TABLE"]).waiting("D1") == []


def _age_the_inbox(stack: Stack, deployment_id: str) -> None:
    """Rewrite the deployment's inbox as if its events reached the broadcaster GAP_SECONDS + 1 ago."""
    long_ago = int((time.time() - ordering.GAP_SECONDS - 1) * 1000)
    inbox = Inbox(stack.ddb, stack.tables["EVENTS_TABLE"])
    rows = inbox.rows(deployment_id)
    held = [event for row in rows for event in row.events]
    assert held, "nothing waits in the inbox"
    assert inbox.settle(rows, keep=set()) == []  # taken out, and put back as arrived long ago
    inbox.put(deployment_id, [replace(event, arrived_ms=long_ago) for event in held])


def _wake(deployment_id: str) -> dict[str, Any]:
    body = json.dumps({spec.WAKE_KEY: {"deployment_id": deployment_id}})
    return {"Records": [{"messageId": "w1", "receiptHandle": "rh", "body": body}]}


def test_a_gap_that_timed_out_is_skipped_and_the_straggler_stored_after(stack: Stack) -> None:
    """Number 1 never comes in time: 2 and 3 go out once they waited GAP_SECONDS; 1, late, after them."""
    (conn,) = stack.subscribed("D1", 1)
    broadcaster.handler(_records([_numbered("D1", 2), _numbered("D1", 3)]))
    assert _messages(stack, conn) == []
    _age_the_inbox(stack, "D1")

    broadcaster.handler(_wake("D1"))
    broadcaster.handler(_records([_numbered("D1", 1)]))

    assert _lines(stack, conn) == ["line 2", "line 3", "line 1"]
    assert [m["seq"] for m in _messages(stack, conn)] == [1, 2, 3]


def test_a_gap_waits_from_the_broadcaster_not_from_the_queue(stack: Stack) -> None:
    """Under a backlog every record sat in the queue longer than a gap lasts: 2 and 3, queued long
    ago, still wait for 1 (timing the gap from SentTimestamp stored 2, 3, 1)."""
    (conn,) = stack.subscribed("D1", 1)
    queued_long_ago = int((time.time() - ordering.GAP_SECONDS - 5) * 1000)

    broadcaster.handler(_records([_numbered("D1", 2), _numbered("D1", 3)], sent_ms=queued_long_ago))
    assert _messages(stack, conn) == []
    broadcaster.handler(_records([_numbered("D1", 1)], sent_ms=queued_long_ago))

    assert _lines(stack, conn) == ["line 1", "line 2", "line 3"]
    assert Inbox(stack.ddb, stack.tables["EVENTS_TABLE"]).waiting("D1") == []


def test_a_wake_message_drains_what_waited(stack: Stack) -> None:
    """A wake record for a deployment whose held events' gap timed out stores and sends them."""
    (conn,) = stack.subscribed("D1", 1)
    broadcaster.handler(_records([_numbered("D1", 2)]))
    assert _messages(stack, conn) == []
    _age_the_inbox(stack, "D1")

    assert broadcaster.handler(_wake("D1")) == {"batchItemFailures": []}

    assert _lines(stack, conn) == ["line 2"]


def test_two_producers_each_keep_their_own_order(stack: Stack) -> None:
    """Two producers on one deployment, interleaved and shuffled: each one's events in its order."""
    (conn,) = stack.subscribed("D1", 1)
    events = [_numbered("D1", n, producer=p) for n in range(1, 11) for p in ("a", "b")]
    random.Random(3).shuffle(events)

    for start in range(0, len(events), 4):
        broadcaster.handler(_records(events[start : start + 4]))

    received = _messages(stack, conn)
    assert [m["seq"] for m in received] == list(range(1, 21))
    for producer in ("a", "b"):
        mine = [m["event_id"] for m in received if m["event_id"].startswith(f"{producer}-")]
        assert mine == [f"{producer}-D1-{n}" for n in range(1, 11)]


def test_an_event_is_not_held_behind_a_gap_another_container_has_filled(stack: Stack) -> None:
    """This container stored line 1 and remembers cursor 1; another container stored line 2 since:
    line 3 is stored at once (the counter is read again before holding), not after the 5 s gap."""
    (conn,) = stack.subscribed("D1", 1)
    broadcaster.handler(_records([_numbered("D1", 1)]))
    runtime = get_runtime()
    other = Store(stack.ddb, runtime.config.tables, runtime.config.history_ttl_seconds)  # another container
    other.append_events("D1", [parse_event(_numbered("D1", 2))])

    result = broadcaster.handler(_records([_numbered("D1", 3)]))

    assert result == {"batchItemFailures": []}
    assert [m["seq"] for m in _messages(stack, conn)] == [1, 3]  # line 2 was the other's to send
    assert _lines(stack, conn) == ["line 1", "line 3"]
    assert Inbox(stack.ddb, stack.tables["EVENTS_TABLE"]).waiting("D1") == []


# -- the drain lease --------------------------------------------------------------------------


def test_one_pending_wake_covers_the_writers_after_it_and_none_is_stranded(stack: Stack) -> None:
    """The claim and every later mark record how far the holder reads the inbox; after each, the
    first writer bumps ``wakes`` and the next ones find that wake pending and only read the lease.
    Every row still reaches the holder, whose release fails until it has read them all."""
    inbox = Inbox(stack.ddb, stack.tables["EVENTS_TABLE"])
    events = [parse_event(_numbered("D1", n)) for n in range(1, 5)]
    claimed = inbox.claim("D1", "holder")
    assert claimed is not None
    assert (inbox.read("D1").seen, inbox.read("D1").seen_by) == (0, "holder")  # the claim marks

    inbox.add("D1", events[:1])  # the first writer after the claim bumps
    inbox.add("D1", events[1:2])  # the next finds that wake pending: no write on the lease
    assert inbox.read("D1").wakes == 1
    assert not inbox.release("D1", "holder", claimed.wakes, 0, 0)
    marked = inbox.mark("D1", "holder")
    assert marked is not None
    assert (marked.wakes, marked.seen, marked.seen_by) == (1, 1, "holder")
    assert {e.identity for e in inbox.waiting("D1")} == {e.identity for e in events[:2]}

    inbox.add("D1", events[2:3])  # the first writer after the mark bumps
    inbox.add("D1", events[3:4])  # the next finds that wake pending: no write on the lease
    assert inbox.read("D1").wakes == 2
    assert not inbox.release("D1", "holder", marked.wakes, 0, 0)  # so the holder cannot leave them
    again = inbox.mark("D1", "holder")
    assert again is not None
    assert {e.identity for e in inbox.waiting("D1")} == {e.identity for e in events}
    assert inbox.release("D1", "holder", again.wakes, 0, 0)
    assert inbox.mark("D1", "holder") is None  # released: no longer the holder's to mark
    left = inbox.read("D1")
    assert left.free(int(time.time() * 1000))
    assert (left.seen, left.seen_by) == (0, None)  # a mark means nothing once the lease is let go


def test_racing_invocations_leave_their_events_to_the_one_holding_the_lease(stack: Stack) -> None:
    """Four invocations claim the lease at the same moment: one wins and stores all 20 events
    (its own and the inbox's), in emission order; the others only put theirs in the inbox."""
    (conn,) = stack.subscribed("RACE", 1)
    runtime = get_runtime()
    lock = threading.Lock()

    runtime.store = Store(
        cast(Any, AtomicRequests(stack.ddb, lock)), runtime.config.tables, runtime.config.history_ttl_seconds
    )
    real_claim = Inbox.claim
    start_line = threading.Barrier(4)
    finish_line = threading.Barrier(4)
    claims: list[bool] = []

    lined_up: set[str] = set()

    def claim_in_lockstep(self: Inbox, deployment_id: str, owner: str) -> Any:
        name = threading.current_thread().name
        # Only the first claim of each racer lines up: one that finds the lease released by the time
        # its events are in the inbox claims again at once (and must not wait for the others).
        first = name.startswith("racer") and name not in lined_up
        if first:
            lined_up.add(name)
            start_line.wait(timeout=10)
        lease = real_claim(self, deployment_id, owner)
        with lock:
            claims.append(lease is not None)
        if first:
            # Nobody goes on before every first claim is in: a winner quick enough to store and let
            # go before a slow racer's first claim would otherwise hand that racer the lease too.
            finish_line.wait(timeout=10)
        return lease

    Inbox.claim = claim_in_lockstep  # type: ignore[method-assign]
    results: list[Any] = []
    try:
        threads = [
            threading.Thread(
                target=lambda b=b: results.append(
                    broadcaster.handler(_records([_numbered("RACE", b * 5 + n) for n in range(1, 6)]))
                ),
                name=f"racer-{b}",
            )
            for b in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        Inbox.claim = real_claim  # type: ignore[method-assign]

    assert results == [{"batchItemFailures": []}] * 4
    assert claims[:4].count(True) == 1
    assert [m["seq"] for m in _messages(stack, conn)] == list(range(1, 21))
    assert _lines(stack, conn) == [f"line {n}" for n in range(1, 21)]
    rows = [r for r in stack.snapshot()["EVENTS_TABLE"] if r["deploymentId"]["S"].startswith("RACE#in#")]
    assert rows == []  # the inbox is empty again


# -- failures told apart ----------------------------------------------------------------------


class _Cancelling:
    """DynamoDB whose next transactions are cancelled with the given per-item reason: on the
    counter, or (``refused``) on whichever item holds that event's message, as DynamoDB names the
    item it cannot store."""

    def __init__(self, client: Any, reason: str, times: int, refused: str | None = None) -> None:
        self._client = client
        self.reason = reason
        self.times = times
        self.refused = refused
        self.transactions = 0
        self.rows: list[int] = []  # events per history row of each transaction sent

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def transact_write_items(self, **kwargs: Any) -> Any:
        self.transactions += 1
        if self.times > 0:
            self.times -= 1
            items = kwargs["TransactItems"]
            reasons: list[Any] = [{"Code": "None"} for _ in items]
            at = 0
            if self.refused is not None:
                holding = [
                    i
                    for i, item in enumerate(items)
                    if any(
                        json.loads(m["S"])["event_id"] == self.refused
                        for m in item["Put"]["Item"].get("messages", {}).get("L", [])
                    )
                ]
                if not holding:
                    return self._client.transact_write_items(**kwargs)
                at = holding[0]
                self.rows.append(len(items[at]["Put"]["Item"]["messages"]["L"]))
            reasons[at] = {"Code": self.reason, "Message": "no"}
            raise ClientError(
                {
                    "Error": {"Code": "TransactionCanceledException", "Message": "cancelled"},
                    "CancellationReasons": reasons,
                },
                "TransactWriteItems",
            )
        return self._client.transact_write_items(**kwargs)


def test_a_throttled_transaction_is_not_retried_as_a_conflict(stack: Stack) -> None:
    """ThrottlingError: three short backoffs (not 25 conflict retries), then the records come back
    for the queue to retry, and nothing is stored."""
    (conn,) = stack.subscribed("D1", 1)
    runtime = get_runtime()
    cancelling = _Cancelling(stack.ddb, "ThrottlingError", times=100)
    waits: list[float] = []
    runtime.store = Store(
        cast(Any, cancelling), runtime.config.tables, runtime.config.history_ttl_seconds, sleep=waits.append
    )
    batch = _records([_numbered("D1", 1), _numbered("D1", 2)])

    result = broadcaster.handler(batch)

    assert len(result["batchItemFailures"]) == 2
    assert cancelling.transactions == 4
    assert len(waits) == 3
    assert _messages(stack, conn) == []
    assert [r for r in stack.snapshot()["EVENTS_TABLE"] if r["deploymentId"]["S"] == "D1"] == []


def test_a_conflict_is_retried_and_then_stored(stack: Stack) -> None:
    """TransactionConflict: retried after a short wait, and stored once."""
    (conn,) = stack.subscribed("D1", 1)
    runtime = get_runtime()
    cancelling = _Cancelling(stack.ddb, "TransactionConflict", times=2)
    runtime.store = Store(
        cast(Any, cancelling), runtime.config.tables, runtime.config.history_ttl_seconds, sleep=lambda _: None
    )

    assert broadcaster.handler(_records([_numbered("D1", 1)])) == {"batchItemFailures": []}

    assert cancelling.transactions == 3
    assert _lines(stack, conn) == ["line 1"]


def test_an_invalid_event_is_dead_lettered_at_once_and_the_rest_stored(
    stack: Stack, queues: tuple[Any, str, str]
) -> None:
    """ValidationError on one event: it goes to the dead-letter queue at once (redrivable), the
    other events are stored and sent, and no record comes back to be retried. DynamoDB names the
    row it refused, which holds both events: they are tried a row each to learn which one."""
    sqs, _, dead = queues
    (conn,) = stack.subscribed("D1", 1)
    runtime = get_runtime()
    cancelling = _Cancelling(stack.ddb, "ValidationError", times=100, refused=f"{PRODUCER}-D1-1")
    runtime.store = Store(cast(Any, cancelling), runtime.config.tables, runtime.config.history_ttl_seconds)

    result = broadcaster.handler(_records([_numbered("D1", 1), _numbered("D1", 2)]))

    assert result == {"batchItemFailures": []}
    assert cancelling.rows == [2, 1]  # the row of both refused, then the event's own row
    assert _lines(stack, conn) == ["line 2"]
    (letter,) = sqs.receive_message(QueueUrl=dead, WaitTimeSeconds=0)["Messages"]
    redriven = parse_event(json.loads(letter["Body"]))
    assert (redriven.event_id, redriven.producer_seq) == (f"{PRODUCER}-D1-1", 1)


# -- a small counter that outlives redrives ---------------------------------------------------


def _item_bytes(item: dict[str, Any]) -> int:
    """DynamoDB's item size: attribute names plus values (numbers counted as their digits)."""
    total = 0
    for name, value in item.items():
        total += len(name.encode())
        ((kind, raw),) = value.items()
        total += len(str(raw).encode()) if kind in ("S", "N") else len(json.dumps(raw).encode())
    return total


def test_the_counter_stays_under_1_kb_however_many_events_and_producers(stack: Stack) -> None:
    """1,000 events from 40 producers with long names and environments: the counter item is < 1 KB,
    has no ttl (it never expires), and its size does not grow with the history (only lastSeq's
    digits and the cursors' do). (moto copies the table in every transaction, so 10,000 events are left to
    bench/bench_cloud_model.py's scenario (c), which reports the counter's size after them.)"""
    store = get_runtime().store
    table = stack.tables["EVENTS_TABLE"]
    sizes = []
    for start in range(0, 1_000, 49):
        events = [
            parse_event(
                _numbered("BIG", n, producer=f"producer-{n % 40:02d}-" + "x" * 40, environment="e" * 200)
            )
            for n in range(start + 1, min(start + 50, 1_001))
        ]
        store.append_events("BIG", events)
        sizes.append(_item_bytes(stack.ddb.get_item(TableName=table, Key=keys.counter("BIG"))["Item"]))

    item = stack.ddb.get_item(TableName=table, Key=keys.counter("BIG"))["Item"]
    assert int(item["lastSeq"]["N"]) == 1_000
    assert max(sizes) < 1024, item
    # Past the first batches only numbers' digits grow (lastSeq, the cursors kept), never the history.
    assert max(sizes) - min(sizes[2:]) < 64
    assert "ttl" not in item


def test_identities_outlive_the_dead_letter_queue(stack: Stack) -> None:
    """An identity row lives longer than a dead letter (14 days), so a redrive on its last day is a no-op."""
    store = get_runtime().store
    before = time.time()
    store.append_events("D1", [parse_event(_numbered("D1", 1))])

    (row,) = stack.snapshot()["EVENT_IDS_TABLE"]
    assert int(row["ttl"]["N"]) >= before + spec.DEAD_LETTER_RETENTION_SECONDS


def test_a_snapshot_is_the_checkpoint_plus_the_events_after_it(stack: Stack) -> None:
    """250 events: the checkpoint trails the counter, and the snapshot folds the rest on top."""
    store = get_runtime().store
    events = [parse_event(_numbered("D1", n)) for n in range(1, 251)]
    for start in range(0, 250, 10):
        broadcaster.handler(_records([_numbered("D1", n) for n in range(start + 1, start + 11)]))
    store.put_checkpoint(
        "D1",
        200,
        state.fold(
            state.initial(),
            [
                {"type": e.type, "seq": i + 1, "data": e.data, "timestamp": e.timestamp}
                for i, e in enumerate(events[:200])
            ],
        ),
    )

    last, folded = store.snapshot("D1")

    assert last == 250
    assert folded["log_counts"] == {"info": 250}
    assert [line["seq"] for line in folded["recent_logs"]][-1] == 250


def test_the_deployment_list_is_newest_first_across_its_shards(stack: Stack) -> None:
    """Deployments spread over every list shard still come back newest first."""
    names = [f"L{n:02d}" for n in range(24)]
    assert len({keys.list_shard(name) for name in names}) > 1
    for minute, name in enumerate(names):
        broadcaster.handler(
            eventbridge_event(
                "deployment.status",
                {
                    "deployment_id": name,
                    "event_id": name,
                    "data": {"status": "deploying"},
                    "timestamp": f"2026-12-01T10:{minute:02d}:00Z",
                },
            )
        )

    listed = [row.deployment_id for row in get_runtime().store.deployments(page_size=5)]

    assert listed == list(reversed(names))


def test_a_throttle_midway_sends_what_was_stored_and_keeps_the_rest_waiting(
    stack: Stack, queues: tuple[Any, str, str]
) -> None:
    """55 events to store, the second transaction throttled: the first 49 are sent at once (they
    are stored), the other 6 wait in the inbox, a wake comes after a pause and sends them."""
    sqs, delivery, _ = queues
    (conn,) = stack.subscribed("D1", 1)
    runtime = get_runtime()
    inbox = Inbox(stack.ddb, stack.tables["EVENTS_TABLE"])
    inbox.add("D1", [parse_event(_numbered("D1", n)) for n in range(11, 56)])
    cancelling = _Cancelling(stack.ddb, "ThrottlingError", times=0)
    runtime.store = Store(
        cast(Any, cancelling), runtime.config.tables, runtime.config.history_ttl_seconds, sleep=lambda _: None
    )
    real = cancelling.transact_write_items

    def second_throttled(**kwargs: Any) -> Any:
        if cancelling.transactions == 1:
            cancelling.times = 4  # more than the store's own retries
        return real(**kwargs)

    cancelling.transact_write_items = second_throttled  # type: ignore[method-assign]

    result = broadcaster.handler(_records([_numbered("D1", n) for n in range(1, 11)]))

    assert result == {"batchItemFailures": []}  # nothing is lost: the rest waits in the inbox
    assert [m["seq"] for m in _messages(stack, conn)] == list(range(1, 50))
    assert len(inbox.waiting("D1")) == 6
    delayed = sqs.get_queue_attributes(
        QueueUrl=delivery, AttributeNames=["ApproximateNumberOfMessagesDelayed"]
    )
    assert delayed["Attributes"]["ApproximateNumberOfMessagesDelayed"] == "1"

    wake = {
        "Records": [
            {
                "messageId": "w",
                "receiptHandle": "rh",
                "body": json.dumps({spec.WAKE_KEY: {"deployment_id": "D1"}}),
            }
        ]
    }
    assert broadcaster.handler(wake) == {"batchItemFailures": []}

    assert _lines(stack, conn) == [f"line {n}" for n in range(1, 56)]
