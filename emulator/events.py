"""The delivery queue's event source mapping: SQS batches into the real broadcaster, as Lambda does it.

On AWS, the EventBridge rule targets the delivery queue and an event source
mapping polls it: up to ``batch_size`` messages per invocation with no batching
window, several pollers (so several invocations) at once, and partial batch
responses (``batchItemFailures``): the records the function names stay on the
queue and come back, the others are deleted. An invocation that raises (or
answers something that is not a partial batch response) leaves the whole batch
on the queue. The local stack runs the same semantics against the embedded
SQS queue; see docs/delivery.md.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from contract import spec
from contract.log import get_logger
from emulator.faults import ShuffleFault

log = get_logger("emulator.events")

Invoke = Callable[[Mapping[str, Any]], Any]


def sqs_event(messages: list[dict[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    """The event Lambda's SQS event source mapping hands a function for ``messages``."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": m.get("MessageAttributes", {}),
                "md5OfBody": m.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
            for m in messages
        ]
    }


def failed_ids(result: Any, records: list[dict[str, Any]]) -> set[str]:
    """The records a partial batch response names; every record when the response is not one.

    As on AWS: None or an empty list means the whole batch succeeded; a
    malformed response, or an identifier that is not in the batch, fails it whole.
    """
    everything = {r["messageId"] for r in records}
    if result is None:
        return set()
    failures = result.get("batchItemFailures") if isinstance(result, Mapping) else None
    if failures is None and isinstance(result, Mapping):
        return set()
    if not isinstance(failures, list):
        return everything
    named: set[str] = set()
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, Mapping) else None
        if not isinstance(identifier, str) or identifier not in everything:
            return everything
        named.add(identifier)
    return named


#: Batches in flight at once: AWS's starting concurrency for an SQS event source mapping.
DEFAULT_CONCURRENCY = 5


class EventSourceMapping:
    """Drains the delivery queue into the broadcaster, up to ``concurrency`` batches at once.

    As AWS runs an SQS standard-queue mapping: each invocation gets up to
    ``batch_size`` messages with no batching window, and up to ``concurrency``
    invocations run at once (AWS starts at 5), within a deployment and across
    deployments, finishing in whatever order they finish. Nothing here orders
    one batch after another; the broadcaster keeps a producer's order (see
    docs/delivery.md). ``concurrency=1`` gives one invocation at a time, in the
    order received.

    One thread receives; ``concurrency`` threads invoke; deleting what was
    delivered is left to another thread, off the invoking path. The receiver
    asks for messages only while an invocation slot is free, and hands what it
    gets to a free invoker at once: an event reaching an idle queue is invoked
    as soon as its long poll returns. Being one receiver, it never splits what
    is waiting on an idle queue between several concurrent polls, and while
    every slot is busy, whatever arrives waits on the queue to be taken as one
    batch when a slot frees (receiving it early would only split it into
    smaller batches, each paying the invocation's fixed cost and waiting
    behind the others).

    ``shuffle`` (the local stack's fault) delays each invocation by a random
    0..``max_delay_ms``, drawn when the batch is received, so batches in flight
    together finish in a shuffled order. Messages sent with ``DelaySeconds``
    are not received before their delay is over (the queue keeps them).
    """

    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        queue_arn: str,
        region: str,
        invoke: Invoke,
        batch_size: int = spec.DELIVERY.batch_size,
        concurrency: int = DEFAULT_CONCURRENCY,
        shuffle: ShuffleFault | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._sqs = sqs
        self._queue_url = queue_url
        self._queue_arn = queue_arn
        self._region = region
        self._invoke = invoke
        self._batch_size = batch_size
        self._concurrency = concurrency
        self._shuffle = shuffle
        self._stop = threading.Event()
        # Batches received and not yet invoked to completion, under ``_settled``.
        self._outstanding = 0
        self._settled = threading.Condition()
        self._received: queue.Queue[tuple[list[dict[str, Any]], float] | None] = queue.Queue()
        self._done: queue.Queue[list[dict[str, str]] | None] = queue.Queue()
        self._receiver = threading.Thread(target=self._receive, name="delivery-poller", daemon=True)
        self._invokers = [
            threading.Thread(target=self._invoke_batches, name=f"delivery-invoker-{n}", daemon=True)
            for n in range(concurrency)
        ]
        self._deleter = threading.Thread(target=self._delete, name="delivery-deleter", daemon=True)
        self._threads = [self._receiver, *self._invokers, self._deleter]

    @property
    def concurrency(self) -> int:
        """Invocations that may run at once."""
        return self._concurrency

    def start(self) -> None:
        """Start polling."""
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop after the current poll (at most one second) and the invocations in flight.

        Batches received but not invoked yet stay on the queue (and come back after
        its visibility timeout, or go with the backend when the stack stops).
        """
        self._stop.set()
        with self._settled:
            self._settled.notify_all()
        deadline = time.monotonic() + 5
        for thread in (self._receiver, *self._invokers):
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self._done.put(None)  # the invokers are done: the deleter finishes what they handed it
        self._deleter.join(timeout=max(0.0, deadline - time.monotonic()))

    def _receive(self) -> None:
        try:
            while not self._stop.is_set():
                if not self._slot_free():
                    continue
                try:
                    reply = self._sqs.receive_message(
                        QueueUrl=self._queue_url,
                        MaxNumberOfMessages=self._batch_size,
                        WaitTimeSeconds=1,
                        AttributeNames=["All"],
                    )
                except Exception:
                    if self._stop.is_set():
                        return
                    log.exception("receiving from the delivery queue failed")
                    self._stop.wait(1)
                    continue
                messages = reply.get("Messages", [])
                if messages:
                    delay = self._shuffle.delay_seconds() if self._shuffle is not None else 0.0
                    with self._settled:
                        self._outstanding += 1
                    self._received.put((messages, delay))
        finally:
            for _ in self._invokers:
                self._received.put(None)  # tells each invoker to finish

    def _slot_free(self) -> bool:
        """Wait (at most half a second) for an invocation slot; False when stopping or still busy."""
        with self._settled:
            ready = self._settled.wait_for(
                lambda: self._outstanding < self._concurrency or self._stop.is_set(), timeout=0.5
            )
        return ready and not self._stop.is_set()

    def _invoke_batches(self) -> None:
        while (item := self._received.get()) is not None:
            messages, delay = item
            try:
                # The shuffle fault's wait; a stop ends it and leaves the batch on the queue.
                if not (delay and self._stop.wait(delay)):
                    self._deliver(messages)
            finally:
                with self._settled:
                    self._outstanding -= 1
                    self._settled.notify_all()

    def _deliver(self, messages: list[dict[str, Any]]) -> None:
        event = sqs_event(messages, self._queue_arn, self._region)
        records = event["Records"]
        try:
            result = self._invoke(event)
        except Exception:
            # Left on the queue: visible again after the visibility timeout, and
            # dead-lettered after the redrive policy's receives, as on AWS.
            log.exception("broadcaster failed; the batch stays on the queue")
            return
        failed = failed_ids(result, records)
        done = [
            {"Id": str(i), "ReceiptHandle": r["receiptHandle"]}
            for i, r in enumerate(records)
            if r["messageId"] not in failed
        ]
        if done:
            self._done.put(done)

    def _delete(self) -> None:
        while (done := self._done.get()) is not None:
            for start in range(0, len(done), 10):  # DeleteMessageBatch takes at most 10
                try:
                    self._sqs.delete_message_batch(QueueUrl=self._queue_url, Entries=done[start : start + 10])
                except Exception:  # they come back and are recognised as duplicates by event_id
                    log.exception("deleting delivered messages failed")
