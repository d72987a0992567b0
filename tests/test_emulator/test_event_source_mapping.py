"""The local event source mapping: SQS batches into a function, as Lambda's mapping hands them over.

Against an in-memory queue (the calls the mapping makes, with SQS's visibility
semantics): up to ``concurrency`` invocations at once and never more, order
kept when one at a time, no batch above 10, what trickles in while every slot
is busy taken as one batch, partial batch responses and raising functions
leaving exactly the failed records on the queue, and the shuffle fault
reordering how batches finish. Against the embedded (moto) queue: the same
concurrency, and messages sent with ``DelaySeconds`` held back until due.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from contract import spec
from emulator.backend import MotoBackend, client
from emulator.events import DEFAULT_CONCURRENCY, EventSourceMapping
from emulator.faults import ShuffleFault
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
        self.started: list[list[str]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.fail: set[str] = set()
        self.raise_for: set[str] = set()
        self.running = 0
        self.most_running = 0
        self._lock = threading.Lock()

    def __call__(self, event: Mapping[str, Any]) -> Any:
        records = event["Records"]
        assert all(r["eventSource"] == "aws:sqs" and r["eventSourceARN"] == QUEUE_ARN for r in records)
        bodies = [r["body"] for r in records]
        with self._lock:
            self.started.append(bodies)
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        try:
            self.gate.wait()
        finally:
            with self._lock:
                self.running -= 1
                self.batches.append(bodies)  # in the order they finish
        if self.raise_for & set(bodies):
            raise RuntimeError("the function failed")
        return {
            "batchItemFailures": [
                {"itemIdentifier": r["messageId"]} for r in records if r["body"] in self.fail
            ]
        }

    def received(self) -> list[str]:
        """Every body, in the order the invocations finished."""
        with self._lock:
            return [body for batch in self.batches for body in batch]

    def now_running(self) -> int:
        with self._lock:
            return self.running


@pytest.fixture
def sqs() -> MemoryQueue:
    return MemoryQueue()


@pytest.fixture
def function() -> Function:
    return Function()


@pytest.fixture(params=[1, DEFAULT_CONCURRENCY], ids=["one-at-a-time", "concurrent"])
def concurrency(request: pytest.FixtureRequest) -> int:
    return int(request.param)


@pytest.fixture
def mapping(sqs: MemoryQueue, function: Function, concurrency: int) -> Iterator[EventSourceMapping]:
    esm = EventSourceMapping(sqs, QUEUE_URL, QUEUE_ARN, "us-east-1", function, concurrency=concurrency)
    esm.start()
    yield esm
    function.gate.set()
    esm.stop()


@pytest.fixture
def serial(sqs: MemoryQueue, function: Function) -> Iterator[EventSourceMapping]:
    """A mapping with one invocation at a time."""
    esm = EventSourceMapping(sqs, QUEUE_URL, QUEUE_ARN, "us-east-1", function, concurrency=1)
    esm.start()
    yield esm
    function.gate.set()
    esm.stop()


def _bodies(first: int, last: int) -> list[str]:
    return [f"m{n:04d}" for n in range(first, last + 1)]


def _fill_every_slot(sqs: MemoryQueue, function: Function, concurrency: int) -> None:
    """Hold the function and start ``concurrency`` one-message invocations (m0001, m0002...)."""
    function.gate.clear()
    sqs.per_receive = 1
    sqs.send(concurrency)
    eventually_sync(lambda: function.now_running() == concurrency, "every slot busy")
    sqs.per_receive = 10


def test_a_backlog_is_delivered_whole_in_batches_of_at_most_ten(
    sqs: MemoryQueue, function: Function, mapping: EventSourceMapping
) -> None:
    function.gate.clear()  # busy: the queue backs up
    sqs.send(57)
    eventually_sync(lambda: function.started, "the first invocation")
    function.gate.set()
    eventually_sync(lambda: len(sqs.deleted) == 57, "every message delivered and deleted")
    assert sorted(function.received()) == _bodies(1, 57)
    assert all(1 <= len(batch) <= 10 for batch in function.batches)
    assert sorted(sqs.deleted) == _bodies(1, 57)


def test_one_at_a_time_a_backlog_arrives_in_order(
    sqs: MemoryQueue, function: Function, serial: EventSourceMapping
) -> None:
    function.gate.clear()
    sqs.send(57)
    eventually_sync(lambda: function.started, "the first invocation")
    function.gate.set()
    eventually_sync(lambda: len(sqs.deleted) == 57, "every message delivered and deleted")
    assert function.received() == _bodies(1, 57)
    assert function.most_running == 1


def test_up_to_concurrency_batches_run_at_once_and_never_more(
    sqs: MemoryQueue, function: Function, mapping: EventSourceMapping, concurrency: int
) -> None:
    """Each batch gets its own invocation while a slot is free; a full mapping receives nothing more."""
    _fill_every_slot(sqs, function, concurrency)
    sqs.send(12)
    threading.Event().wait(0.2)  # time enough for a receiver running ahead to take more
    assert sqs.in_flight() == _bodies(1, concurrency)  # the rest waits on the queue
    function.gate.set()
    eventually_sync(lambda: len(sqs.deleted) == concurrency + 12, "every message delivered")
    assert function.most_running == concurrency
    assert sorted(function.received()) == _bodies(1, concurrency + 12)


def test_the_default_is_awss_starting_concurrency() -> None:
    assert DEFAULT_CONCURRENCY == 5
    esm = EventSourceMapping(MemoryQueue(), QUEUE_URL, QUEUE_ARN, "us-east-1", Function())
    assert esm.concurrency == 5
    with pytest.raises(ValueError, match="at least 1"):
        EventSourceMapping(MemoryQueue(), QUEUE_URL, QUEUE_ARN, "us-east-1", Function(), concurrency=0)


def test_a_burst_on_an_idle_queue_is_one_invocation(
    function: Function, mapping: EventSourceMapping, sqs: MemoryQueue
) -> None:
    """One receiver: free slots do not split what is waiting between several polls."""
    sqs.send(7)
    eventually_sync(lambda: len(sqs.deleted) == 7, "the burst delivered")
    assert function.started == [_bodies(1, 7)]


def test_what_trickles_in_while_every_slot_is_busy_waits_on_the_queue_for_one_invocation(
    function: Function, mapping: EventSourceMapping, sqs: MemoryQueue, concurrency: int
) -> None:
    """The receiver does not run ahead of the invokers: small batches would each wait their turn."""
    _fill_every_slot(sqs, function, concurrency)
    for _ in range(3):  # two at a time while every invocation is busy
        sqs.send(2)
        threading.Event().wait(0.2)  # time enough for a receiver running ahead to take them
        assert sqs.in_flight() == _bodies(1, concurrency)
    function.gate.set()
    eventually_sync(lambda: len(sqs.deleted) == concurrency + 6, "every message delivered")
    assert function.started == [
        *([body] for body in _bodies(1, concurrency)),
        _bodies(concurrency + 1, concurrency + 6),
    ]


def test_one_at_a_time_short_receives_keep_the_order(
    function: Function, serial: EventSourceMapping, sqs: MemoryQueue
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


def test_concurrent_partial_batch_responses_delete_only_their_successes(
    sqs: MemoryQueue, function: Function
) -> None:
    """Five batches in flight together, each answering for its own records."""
    esm = EventSourceMapping(sqs, QUEUE_URL, QUEUE_ARN, "us-east-1", function, concurrency=5)
    esm.start()
    try:
        function.gate.clear()
        function.fail = {"m0002", "m0005", "m0006", "m0010"}
        sqs.per_receive = 2
        sqs.send(10)
        eventually_sync(lambda: function.now_running() == 5, "five batches in flight")
        function.gate.set()
        eventually_sync(lambda: len(sqs.deleted) == 6, "the records that succeeded deleted")
        assert sorted(sqs.deleted) == ["m0001", "m0003", "m0004", "m0007", "m0008", "m0009"]
        assert sqs.in_flight() == ["m0002", "m0005", "m0006", "m0010"]
    finally:
        function.gate.set()
        esm.stop()


def test_a_function_that_raises_leaves_its_whole_batch_and_later_ones_still_flow(
    sqs: MemoryQueue, function: Function, mapping: EventSourceMapping
) -> None:
    function.raise_for = {"m0001"}
    sqs.send(1)
    eventually_sync(lambda: function.received() == ["m0001"], "the failing invocation")
    sqs.send(2)
    eventually_sync(lambda: sorted(sqs.deleted) == ["m0002", "m0003"], "the next batch delivered")
    assert "m0001" in sqs.in_flight()


def test_stop_ends_every_thread(sqs: MemoryQueue, function: Function, concurrency: int) -> None:
    esm = EventSourceMapping(sqs, QUEUE_URL, QUEUE_ARN, "us-east-1", function, concurrency=concurrency)
    esm.start()
    sqs.send(3)
    eventually_sync(lambda: len(sqs.deleted) == 3, "delivered before the stop")
    esm.stop()
    assert not any(thread.is_alive() for thread in esm._threads)


# -- the shuffle fault ----------------------------------------------------------------------------


class Draws:
    """A replacement for ``random.random``: the given fractions, in turn."""

    def __init__(self, *fractions: float) -> None:
        self._fractions = list(fractions)
        self.calls = 0

    def __call__(self) -> float:
        self.calls += 1
        return self._fractions.pop(0)


def test_the_shuffle_fault_makes_batches_finish_out_of_order(sqs: MemoryQueue, function: Function) -> None:
    """Drawn at receipt: the first batch received waits longest, the last not at all."""
    draws = Draws(1.0, 0.75, 0.5, 0.25, 0.0)
    shuffle = ShuffleFault(800, random=draws)
    esm = EventSourceMapping(sqs, QUEUE_URL, QUEUE_ARN, "us-east-1", function, concurrency=5, shuffle=shuffle)
    sqs.per_receive = 1
    sqs.send(5)
    esm.start()
    try:
        eventually_sync(lambda: len(sqs.deleted) == 5, "every batch delivered")
    finally:
        esm.stop()
    assert draws.calls == 5
    assert function.received() == list(reversed(_bodies(1, 5)))


def test_a_shuffle_of_zero_is_off(sqs: MemoryQueue, function: Function) -> None:
    draws = Draws()  # any draw would fail: there is nothing to draw from
    shuffle = ShuffleFault(200, random=draws)
    shuffle.set(0)
    assert shuffle.max_delay_ms == 0
    assert shuffle.delay_seconds() == 0
    esm = EventSourceMapping(sqs, QUEUE_URL, QUEUE_ARN, "us-east-1", function, concurrency=1, shuffle=shuffle)
    sqs.per_receive = 1
    sqs.send(5)
    esm.start()
    try:
        eventually_sync(lambda: len(sqs.deleted) == 5, "every batch delivered")
    finally:
        esm.stop()
    assert draws.calls == 0
    assert function.received() == _bodies(1, 5)


@pytest.mark.parametrize("bad", [-1, 60_001, float("nan"), float("inf"), True, "200", None])
def test_a_bad_shuffle_is_refused_and_changes_nothing(bad: Any) -> None:
    shuffle = ShuffleFault(150)
    with pytest.raises(ValueError, match="max_delay_ms must be a number of milliseconds"):
        shuffle.set(bad)
    assert shuffle.max_delay_ms == 150


def test_a_shuffle_waits_between_zero_and_its_bound() -> None:
    shuffle = ShuffleFault(200, random=Draws(0.0, 0.5, 0.999))
    assert [shuffle.delay_seconds() for _ in range(3)] == [0.0, 0.1, pytest.approx(0.1998)]


# -- against the embedded queue ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto_sqs() -> Iterator[Any]:
    """The embedded backend (moto, patched as the local stack runs it) and an SQS client of it."""
    backend = MotoBackend()
    endpoint = backend.start()
    try:
        yield client("sqs", endpoint, "us-east-1")
    finally:
        backend.stop()


class Recorder:
    """A function on the real queue: records each invocation's bodies, held while ``gate`` is clear."""

    def __init__(self) -> None:
        self.started: list[tuple[float, list[str]]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.fail: set[str] = set()
        self.running = 0
        self.most_running = 0
        self._lock = threading.Lock()

    def __call__(self, event: Mapping[str, Any]) -> Any:
        bodies = [r["body"] for r in event["Records"]]
        with self._lock:
            self.started.append((time.monotonic(), bodies))
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        try:
            self.gate.wait()
        finally:
            with self._lock:
                self.running -= 1
        return {
            "batchItemFailures": [
                {"itemIdentifier": r["messageId"]} for r in event["Records"] if r["body"] in self.fail
            ]
        }

    def bodies(self) -> list[str]:
        with self._lock:
            return [body for _, batch in self.started for body in batch]

    def now_running(self) -> int:
        with self._lock:
            return self.running


@contextlib.contextmanager
def _real_mapping(
    sqs: Any, function: Recorder, concurrency: int = DEFAULT_CONCURRENCY
) -> Iterator[tuple[str, Callable[[], dict[str, int]]]]:
    """A fresh queue (the local stack's visibility timeout) drained by a mapping into ``function``."""
    url = sqs.create_queue(
        QueueName=f"delivery-{uuid.uuid4().hex[:8]}",
        Attributes={"VisibilityTimeout": str(spec.DELIVERY.visibility_timeout_seconds)},
    )["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    def depth() -> dict[str, int]:
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
        return {"visible": int(attributes[names[0]]), "in_flight": int(attributes[names[1]])}

    def record(event: Mapping[str, Any]) -> Any:
        assert all(r["eventSourceARN"] == arn for r in event["Records"])
        return function(event)

    esm = EventSourceMapping(sqs, url, arn, "us-east-1", record, concurrency=concurrency)
    esm.start()
    try:
        yield url, depth
    finally:
        function.gate.set()
        esm.stop()


def _running(function: Recorder, count: int) -> bool:
    return function.now_running() == count


def test_the_embedded_queue_runs_concurrency_batches_at_once(moto_sqs: Any) -> None:
    function = Recorder()
    function.gate.clear()
    function.fail = {"e2"}
    with _real_mapping(moto_sqs, function, concurrency=3) as (url, depth):
        for n in range(1, 4):  # one at a time: each takes a free slot as its own batch
            moto_sqs.send_message(QueueUrl=url, MessageBody=f"e{n}")
            eventually_sync(functools.partial(_running, function, n), f"invocation {n} running")
        moto_sqs.send_message(QueueUrl=url, MessageBody="e4")
        threading.Event().wait(0.3)  # time enough for a receiver running ahead to take it
        assert depth() == {"visible": 1, "in_flight": 3}  # no slot: e4 waits on the queue
        function.gate.set()
        eventually_sync(
            lambda: depth() == {"visible": 0, "in_flight": 1}, "all but the failed record deleted"
        )
    assert function.most_running == 3
    assert sorted(function.bodies()) == ["e1", "e2", "e3", "e4"]


def test_delay_seconds_holds_a_message_back_until_it_is_due(moto_sqs: Any) -> None:
    function = Recorder()
    with _real_mapping(moto_sqs, function) as (url, depth):
        sent = time.monotonic()
        moto_sqs.send_message(QueueUrl=url, MessageBody="wake", DelaySeconds=2)
        moto_sqs.send_message(QueueUrl=url, MessageBody="now")
        eventually_sync(lambda: function.bodies() == ["now", "wake"], "both delivered, the delayed one last")
        eventually_sync(lambda: depth() == {"visible": 0, "in_flight": 0}, "both deleted")
    ((delivered, _),) = [(at, batch) for at, batch in function.started if batch == ["wake"]]
    assert delivered - sent >= 2  # not before its delay
