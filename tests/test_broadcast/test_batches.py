"""The broadcaster's batches: one transaction per deployment, one frame per subscriber, partial failures."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any, cast

import boto3
import pytest

from contract import keys, spec
from handlers import broadcaster
from server.fanout import FanOutTask
from server.runtime import Runtime, get_runtime, reset_runtime
from server.store import Store
from tests.support.events import envelope, eventbridge_event
from tests.support.moto_stack import REGION, AtomicRequests, Stack, counters_in_lockstep
from tests.support.waiting import eventually_sync


def _event(
    deployment_id: str, n: int, event_id: str | None = None, type_: str = "log.created"
) -> dict[str, Any]:
    data = {"level": "info", "message": f"line {n}"}
    return eventbridge_event(type_, envelope(deployment_id, data, event_id or f"{deployment_id}-{n}"))


def _records(events: list[dict[str, Any]]) -> dict[str, Any]:
    """An SQS event source mapping's batch carrying these EventBridge events."""
    return {
        "Records": [
            {
                "messageId": str(uuid.uuid4()),
                "receiptHandle": f"rh-{i}",
                "body": json.dumps(event),
                "attributes": {"ApproximateReceiveCount": "1"},
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:{REGION}:123456789012:delivery",
            }
            for i, event in enumerate(events)
        ]
    }


def _frames(stack: Stack, conn: str) -> list[list[dict[str, Any]]]:
    """What a connection received, frame by frame, each split into its messages."""
    return stack.mgmt.frames(conn)


def _seqs(stack: Stack, conn: str) -> list[int]:
    return [m["seq"] for frame in _frames(stack, conn) for m in frame if "seq" in m]


class _CountingDynamoDB:
    """Counts the DynamoDB requests the broadcaster makes, by operation."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.calls: dict[str, int] = {}
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr) or name.startswith("_") or name in ("exceptions", "meta"):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.calls[name] = self.calls.get(name, 0) + 1
                return attr(*args, **kwargs)

        return call


def _counting_store(stack: Stack) -> _CountingDynamoDB:
    runtime = get_runtime()
    counting = _CountingDynamoDB(stack.ddb)
    config = runtime.config
    runtime.store = Store(counting, config.tables, config.history_ttl_seconds)  # type: ignore[arg-type]
    return counting


def test_a_batch_is_one_transaction_and_one_frame_per_subscriber(stack: Stack) -> None:
    """Ten events of one deployment: seq 1..10 in one transaction, each subscriber gets one frame of ten."""
    connections = stack.subscribed("D1", 3)
    counting = _counting_store(stack)

    result = broadcaster.handler(_records([_event("D1", n) for n in range(10)]))

    assert result == {"batchItemFailures": []}
    assert counting.calls["transact_write_items"] == 1
    for conn in connections:
        (frame,) = _frames(stack, conn)
        assert [m["seq"] for m in frame] == list(range(1, 11))
        assert [m["data"]["message"] for m in frame] == [f"line {n}" for n in range(10)]
    assert len(stack.mgmt.requests) == 3  # one post per subscriber for the whole batch


def test_dynamodb_requests_per_event_stay_under_half_at_batches_of_ten(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A busy deployment's batch of ten: counter (once), transaction, Query, mark sent."""
    # Back to back whatever this machine's speed: a quiet second between two batches (a loaded
    # machine) would rightly add a checkpoint, and this test counts requests, not time.
    monkeypatch.setattr("server.delivery.CHECKPOINT_IDLE_SECONDS", 3600.0)
    stack.subscribed("D1", 2)
    counting = _counting_store(stack)

    for batch in range(5):
        broadcaster.handler(_records([_event("D1", batch * 10 + n) for n in range(10)]))

    total = sum(counting.calls.values())
    # The first batch reads the counter; later ones reuse the value this container wrote.
    assert counting.calls.get("get_item", 0) == 1
    # Per batch: claim and release the drain lease (2 UpdateItems), the transaction, the
    # subscribers' Query, marking sent; and one checkpoint for these back-to-back batches.
    assert counting.calls["update_item"] == 10
    assert counting.calls.get("put_item", 0) == 1
    assert total / 50 <= 0.6, counting.calls


def test_batches_of_several_deployments_get_their_own_seq_ranges(stack: Stack) -> None:
    """Events of two deployments in one batch: each counts from 1, each subscriber sees only its own."""
    (one,) = stack.subscribed("D1", 1)
    (two,) = stack.subscribed("D2", 1, prefix="other")

    broadcaster.handler(_records([_event("D1", 0), _event("D2", 0), _event("D1", 1), _event("D2", 1)]))

    assert _seqs(stack, one) == [1, 2]
    assert _seqs(stack, two) == [1, 2]
    assert {m["deployment_id"] for frame in _frames(stack, two) for m in frame} == {"D2"}


def test_duplicates_in_and_across_batches_are_stored_and_sent_once(stack: Stack) -> None:
    """The same event_id twice in a batch, then again in a later batch: one seq, one delivery."""
    (conn,) = stack.subscribed("D1", 1)

    broadcaster.handler(_records([_event("D1", 0, "same"), _event("D1", 1, "same"), _event("D1", 2)]))
    before = stack.snapshot()
    again = broadcaster.handler(_records([_event("D1", 3, "same")]))

    assert again == {"batchItemFailures": []}
    assert stack.snapshot() == before
    assert _seqs(stack, conn) == [1, 2]


def test_a_batch_mixing_sent_unsent_and_new_events_resends_only_the_unsent(stack: Stack) -> None:
    """A batch redelivered after a crash: the sent event skipped, the unsent resent, the new sequenced."""
    (conn,) = stack.subscribed("D1", 1)
    broadcaster.handler(_records([_event("D1", 0, "a"), _event("D1", 1, "b")]))
    stack.ddb.update_item(  # as if the container died after storing "b" and before sending it
        TableName=stack.tables["EVENTS_TABLE"],
        Key=keys.lease("D1"),
        UpdateExpression="SET sentUpTo = :one",
        ExpressionAttributeValues={":one": {"N": "1"}},
    )
    stack.mgmt.clear()

    broadcaster.handler(_records([_event("D1", 0, "a"), _event("D1", 1, "b"), _event("D1", 2, "c")]))

    assert _seqs(stack, conn) == [2, 3]  # "b" again with its seq, then "c"; never "a"
    assert get_runtime().store.last_seq("D1") == 3


def test_concurrent_batches_of_one_deployment_never_share_a_seq(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four invocations race with batches of five on one deployment: 1..20, each seq exactly once,
    even when every drain lease has expired at once (each believes it holds the deployment)."""
    monkeypatch.setattr("server.inbox.LEASE_SECONDS", -1.0)  # every claim succeeds: the worst case
    (conn,) = stack.subscribed("RACE", 1)
    runtime = get_runtime()
    config = runtime.config
    lock = threading.Lock()

    runtime.store = Store(  # every invocation must read the counter, none reuse its own
        cast(Any, AtomicRequests(stack.ddb, lock)),
        config.tables,
        config.history_ttl_seconds,
        reuse_counter=False,
    )
    counters_in_lockstep(runtime.store, 4)  # every invocation reads the counter before any writes
    results: list[Any] = []

    def invoke(batch: int) -> None:
        results.append(broadcaster.handler(_records([_event("RACE", batch * 5 + n) for n in range(5)])))

    threads = [threading.Thread(target=invoke, args=(b,)) for b in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert results == [{"batchItemFailures": []}] * 4
    rows = [r for r in stack.snapshot()["EVENTS_TABLE"] if r["deploymentId"]["S"] == "RACE"]
    held = [  # every history row's seqs, from its first to its key: each of 1..20 in exactly one
        seq for r in rows if "messages" in r for seq in range(int(r["firstSeq"]["N"]), int(r["seq"]["N"]) + 1)
    ]
    assert sorted(held) == list(range(1, 21))
    assert [json.loads(m)["seq"] for m in runtime.store.events_between("RACE", 1, 20)] == list(range(1, 21))
    # Every seq reaches the subscriber; a holder that claims a lease run out of time also resends
    # what its predecessor stored past the lease's sent mark, so copies are allowed (dropped by seq).
    assert sorted(set(_seqs(stack, conn))) == list(range(1, 21))


def test_a_partial_batch_failure_reports_only_the_failed_records(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """D2's storage fails: only D2's records come back; D1 is delivered; the redelivery delivers D2."""
    (one,) = stack.subscribed("D1", 1)
    (two,) = stack.subscribed("D2", 1, prefix="other")
    store = get_runtime().store
    real_append = store.append_events
    broken = {"D2"}

    def failing_for_d2(deployment_id: str, events: Any, **kwargs: Any) -> Any:
        if deployment_id in broken:
            raise stack.ddb.exceptions.ProvisionedThroughputExceededException(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}},
                "TransactWriteItems",
            )
        return real_append(deployment_id, events, **kwargs)

    monkeypatch.setattr(store, "append_events", failing_for_d2)
    batch = _records([_event("D1", 0), _event("D2", 0), _event("D1", 1), _event("D2", 1)])

    result = broadcaster.handler(batch)

    d2_ids = [
        r["messageId"] for r in batch["Records"] if json.loads(r["body"])["detail"]["deployment_id"] == "D2"
    ]
    assert sorted(f["itemIdentifier"] for f in result["batchItemFailures"]) == sorted(d2_ids)
    assert _seqs(stack, one) == [1, 2]
    assert _seqs(stack, two) == []
    # Nothing of D2's history or counter is stored (its drain lease was claimed, then given up).
    assert [r for r in stack.snapshot()["EVENTS_TABLE"] if r["deploymentId"]["S"] == "D2"] == []
    lease = next(r for r in stack.snapshot()["EVENTS_TABLE"] if r["deploymentId"]["S"] == "D2#lease")
    assert "owner" not in lease

    broken.clear()  # the queue brings back only D2's records
    retry = broadcaster.handler({"Records": [r for r in batch["Records"] if r["messageId"] in d2_ids]})

    assert retry == {"batchItemFailures": []}
    assert _seqs(stack, two) == [1, 2]
    assert _seqs(stack, one) == [1, 2]


@pytest.fixture
def delivery_queue(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, str]]:
    """A real (moto) delivery queue whose URL the broadcaster knows."""
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.create_queue(QueueName="delivery", Attributes={"VisibilityTimeout": "360"})["QueueUrl"]
    monkeypatch.setenv("DELIVERY_QUEUE_URL", url)
    reset_runtime()
    yield sqs, url
    reset_runtime()


def test_failed_records_come_back_in_seconds_not_after_the_visibility_timeout(
    stack: Stack, delivery_queue: tuple[Any, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The broadcaster shortens a failed record's visibility; a delivered one is not touched."""
    sqs, url = delivery_queue
    stack.subscribed("D1", 1)
    for deployment_id in ("D1", "BROKEN"):
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(_event(deployment_id, 0)))
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"])["Messages"]
    records = [
        {"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"]}
        for m in messages
    ]
    store = get_runtime().store
    real_append = store.append_events

    def broken(deployment_id: str, events: Any, **kwargs: Any) -> Any:
        if deployment_id == "BROKEN":
            raise RuntimeError("DynamoDB is having a bad day")
        return real_append(deployment_id, events, **kwargs)

    monkeypatch.setattr(store, "append_events", broken)

    result = broadcaster.handler({"Records": records})

    (failure,) = result["batchItemFailures"]
    # Back within seconds (not the queue's 360 s visibility timeout); polled, as a loaded machine
    # may take longer than the 2 s to answer.
    deadline = time.monotonic() + 30
    back: list[Any] = []
    while not back and time.monotonic() < deadline:
        reply = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        back = reply.get("Messages", [])
    assert [m["MessageId"] for m in back] == [failure["itemIdentifier"]]


def test_malformed_records_are_let_go_and_the_rest_delivered(stack: Stack) -> None:
    """A record whose body is not an event is logged and dropped; it is not reported as failed."""
    (conn,) = stack.subscribed("D1", 1)
    batch = _records([_event("D1", 0)])
    batch["Records"].insert(0, {"messageId": "junk", "receiptHandle": "rh", "body": "{not json"})
    batch["Records"].insert(1, {"messageId": "bad", "receiptHandle": "rh", "body": json.dumps({"detail": 1})})

    assert broadcaster.handler(batch) == {"batchItemFailures": []}
    assert _seqs(stack, conn) == [1]


def test_a_batch_larger_than_one_frame_is_split_in_order(stack: Stack) -> None:
    """Events that do not fit one 128 KB message go out in as few frames as fit, in seq order."""
    (conn,) = stack.subscribed("D1", 1)
    big = "x" * 40_000
    events = []
    for n in range(8):
        event = _event("D1", n)
        event["detail"]["data"]["message"] = big
        events.append(event)

    broadcaster.handler(_records(events))

    frames = _frames(stack, conn)
    assert [m["seq"] for frame in frames for m in frame] == list(range(1, 9))
    assert len(frames) == 3  # three, three and two 40 KB messages
    assert all(len(raw) <= spec.API_GATEWAY_LIMITS.message_bytes for raw in stack.mgmt.received[conn])


# -- fan-out over several invocations ---------------------------------------------------------------


@pytest.fixture
def workers(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """Asynchronous invocations of the broadcaster, run on threads as Lambda would run them."""
    monkeypatch.setenv("FANOUT_FUNCTION_NAME", "broadcaster")
    monkeypatch.setenv("FANOUT_PAGE_SIZE", "2")
    reset_runtime()
    payloads: list[dict[str, Any]] = []
    threads: list[threading.Thread] = []

    def invoke_async(self: Runtime, function: str, payload: Any) -> None:
        assert function == "broadcaster"
        payloads.append(json.loads(json.dumps(payload)))  # what crosses the wire is JSON
        thread = threading.Thread(target=broadcaster.handler, args=(json.loads(json.dumps(payload)),))
        threads.append(thread)
        thread.start()

    monkeypatch.setattr(Runtime, "invoke_async", invoke_async)
    yield payloads
    for thread in threads:
        thread.join(timeout=30)


def test_further_pages_of_subscribers_go_to_other_invocations(
    stack: Stack, workers: list[dict[str, Any]]
) -> None:
    """Five subscribers, pages of two: this invocation posts two, two tasks post the other three."""
    connections = stack.subscribed("D1", 5)

    summary = stack.publish("D1")

    assert summary["delivered"] == 2
    assert len(workers) == 2
    assert [len(p[spec.FANOUT_TASK_KEY]["connection_ids"]) for p in workers] == [2, 1]
    eventually_sync(lambda: all(_seqs(stack, c) == [1] for c in connections), "seq 1 at every subscriber")


def test_a_throttled_tail_is_retried_by_a_task_until_delivered(
    stack: Stack, workers: list[dict[str, Any]]
) -> None:
    """The terminal status's posts answer 429 past the poster's retries: a retry task delivers it."""
    (conn,) = stack.subscribed("D1", 1)
    # POST_MAX_ATTEMPTS=3: the first two rounds fail, the third gets through.
    stack.mgmt.failures_for[conn] = [429] * 7

    summary = stack.publish("D1", "deployment.status", {"status": "succeeded"})

    assert summary["retrying"] == 1
    eventually_sync(lambda: _seqs(stack, conn) == [1], "the retried seq 1")
    attempts = [p[spec.FANOUT_TASK_KEY]["attempt"] for p in workers]
    assert attempts[:2] == [1, 2]
    assert get_runtime().store.last_seq("D1") == 1  # retried with the same seq, never re-sequenced


def test_fan_out_tasks_that_are_not_ours_are_refused(stack: Stack) -> None:
    """A task with a bad field is rejected and posts nothing."""
    (conn,) = stack.subscribed("D1", 1)
    bad = FanOutTask("D1", (1,), (conn,), None).payload()
    bad[spec.FANOUT_TASK_KEY]["seqs"] = ["one"]
    before = stack.snapshot()

    result = broadcaster.handler(bad)

    assert result["status"] == "rejected"
    assert "seqs" in result["reason"]
    assert stack.mgmt.requests == []
    assert stack.snapshot() == before


@pytest.mark.parametrize(("receives", "seconds"), [(1, 2), (2, 4), (5, 32), (9, 360), ("junk", 2)])
def test_a_record_that_keeps_failing_comes_back_later_each_time(receives: Any, seconds: int) -> None:
    """The retry visibility doubles with each receive and never exceeds the queue's timeout."""
    record = {"messageId": "m", "attributes": {"ApproximateReceiveCount": str(receives)}}

    assert broadcaster.retry_visibility(record) == seconds
