"""The local event source mapping: SQS batches into a function, as Lambda's mapping hands them over.

Against an in-memory queue (the calls the mapping makes, with SQS's visibility
semantics): order kept across batches, no batch above 10, short receives merged
into one invocation while the function is busy, partial batch responses and
raising functions leaving exactly the failed records on the queue.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from emulator.events import EventSourceMapping
from tests.support.waiting import eventually_sync

QUEUE_URL = "http://127.0.0.1:1/000000000000/delivery"
QUEUE_ARN = "arn:aws:sqs:us-east-1:000000000000:delivery"


class MemoryQueue:
    """A standard queue's receive/delete, with messages in flight until deleted (no redelivery here)."""

    def __init__(self, per_receive: int = 10) -> None:
        self.per_receive = per_receive
        self._visible: list[dict[str, Any]] = []
        self._in_flight: dict[str, dict[str, Any]] = {}
        self.deleted: list[str] = []
        self._lock = threading.Condition()
        self._sent = 0

    def send(self, count: int) -> None:
        with self._lock:
            for _ in range(count):
                self._sent += 1
                body = f"m{self._sent:04d}"
                self._visible.append({"MessageId": body, "ReceiptHandle": f"rh-{body}", "Body": body})
            self._lock.notify_all()

    def receive_message(self, **kwargs: Any) -> dict[str, Any]:
        assert kwargs["QueueUrl"] == QUEUE_URL
        assert kwargs["MaxNumberOfMessages"] <= 10
        with self._lock:
            self._lock.wait_for(lambda: bool(self._visible), timeout=min(kwargs["WaitTimeSeconds"], 0.2))
            take = min(kwargs["MaxNumberOfMessages"], self.per_receive)
            messages, self._visible = self._visible[:take], self._visible[take:]
            for message in messages:
                self._in_flight[message["ReceiptHandle"]] = message
        return {"Messages": messages} if messages else {}

    def delete_message_batch(self, **kwargs: Any) -> dict[str, Any]:
        assert kwargs["QueueUrl"] == QUEUE_URL
        assert len(kwargs["Entries"]) <= 10
        with self._lock:
            for entry in kwargs["Entries"]:
                message = self._in_flight.pop(entry["ReceiptHandle"])
                self.deleted.append(message["Body"])
        return {"Successful": [{"Id": e["Id"]} for e in kwargs["Entries"]]}

    def in_flight(self) -> list[str]:
        with self._lock:
            return sorted(m["Body"] for m in self._in_flight.values())


class Function:
    """Records each invocation's bodies; can be held (busy) and told which records to fail."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.fail: set[str] = set()
        self.raise_for: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, event: Mapping[str, Any]) -> Any:
        self.gate.wait()
        records = event["Records"]
        assert all(r["eventSource"] == "aws:sqs" and r["eventSourceARN"] == QUEUE_ARN for r in records)
        bodies = [r["body"] for r in records]
        with self._lock:
            self.batches.append(bodies)
        if self.raise_for & set(bodies):
            raise RuntimeError("the function failed")
        return {
            "batchItemFailures": [
                {"itemIdentifier": r["messageId"]} for r in records if r["body"] in self.fail
            ]
        }

    def received(self) -> list[str]:
        with self._lock:
            return [body for batch in self.batches for body in batch]


@pytest.fixture
def sqs() -> MemoryQueue:
    return MemoryQueue()


@pytest.fixture
def function() -> Function:
    return Function()


@pytest.fixture
def mapping(sqs: MemoryQueue, function: Function) -> Iterator[EventSourceMapping]:
    esm = EventSourceMapping(sqs, QUEUE_URL, QUEUE_ARN, "us-east-1", function)
    esm.start()
    yield esm
    function.gate.set()
    esm.stop()


def _bodies(first: int, last: int) -> list[str]:
    return [f"m{n:04d}" for n in range(first, last + 1)]


def test_a_backlog_arrives_in_order_in_batches_of_at_most_ten(
    sqs: MemoryQueue, function: Function, mapping: EventSourceMapping
) -> None:
    function.gate.clear()  # busy: the queue backs up
    sqs.send(57)
    eventually_sync(lambda: function.batches or sqs.in_flight(), "the first receive")
    function.gate.set()
    eventually_sync(lambda: len(sqs.deleted) == 57, "every message delivered and deleted")
    assert function.received() == _bodies(1, 57)
    assert all(1 <= len(batch) <= 10 for batch in function.batches)
    assert sorted(sqs.deleted) == _bodies(1, 57)


def test_what_trickles_in_behind_a_busy_function_waits_on_the_queue_for_one_invocation(
    function: Function, mapping: EventSourceMapping, sqs: MemoryQueue
) -> None:
    """The receiver does not run ahead of a drained queue: small batches would each wait their turn."""
    function.gate.clear()
    sqs.send(1)
    eventually_sync(lambda: function.batches == [] and sqs.in_flight() == ["m0001"], "the first receive")
    for _ in range(3):  # two at a time while the function is busy
        sqs.send(2)
        threading.Event().wait(0.2)  # time enough for a receiver running ahead to take them
        assert sqs.in_flight() == ["m0001"]
    function.gate.set()
    eventually_sync(lambda: len(sqs.deleted) == 7, "every message delivered")
    assert function.batches == [["m0001"], _bodies(2, 7)]


def test_short_receives_keep_the_order(
    function: Function, mapping: EventSourceMapping, sqs: MemoryQueue
) -> None:
    """SQS may answer fewer messages than asked even when more wait: each such batch in turn."""
    sqs.per_receive = 3
    function.gate.clear()
    sqs.send(20)
    eventually_sync(lambda: sqs.in_flight(), "the first receive")
    function.gate.set()
    eventually_sync(lambda: len(sqs.deleted) == 20, "every message delivered")
    assert function.received() == _bodies(1, 20)
    assert all(1 <= len(batch) <= 10 for batch in function.batches)


def test_records_a_partial_batch_response_names_stay_on_the_queue(
    sqs: MemoryQueue, function: Function, mapping: EventSourceMapping
) -> None:
    function.fail = {"m0002", "m0005"}
    sqs.send(6)
    eventually_sync(lambda: len(sqs.deleted) == 4, "the records that succeeded deleted")
    assert sorted(sqs.deleted) == ["m0001", "m0003", "m0004", "m0006"]
    assert sqs.in_flight() == ["m0002", "m0005"]  # visible again after the visibility timeout


def test_a_function_that_raises_leaves_its_whole_batch_and_later_ones_still_flow(
    sqs: MemoryQueue, function: Function, mapping: EventSourceMapping
) -> None:
    function.raise_for = {"m0001"}
    sqs.send(1)
    eventually_sync(lambda: function.received() == ["m0001"], "the failing invocation")
    sqs.send(2)
    eventually_sync(lambda: sorted(sqs.deleted) == ["m0002", "m0003"], "the next batch delivered")
    assert "m0001" in sqs.in_flight()


def test_stop_ends_every_thread(sqs: MemoryQueue, function: Function) -> None:
    esm = EventSourceMapping(sqs, QUEUE_URL, QUEUE_ARN, "us-east-1", function)
    esm.start()
    sqs.send(3)
    eventually_sync(lambda: len(sqs.deleted) == 3, "delivered before the stop")
    esm.stop()
    assert not any(thread.is_alive() for thread in esm._threads)
