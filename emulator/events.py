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

from handlers import spec
from handlers.log import get_logger

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


class EventSourceMapping:
    """Drains the delivery queue into the broadcaster, batch by batch, in the order received.

    One thread receives (long polls of up to ``batch_size`` messages); one
    thread invokes the broadcaster with them, one batch at a time, in the order
    they were received; deleting the delivered messages is left to a third, off
    the invoking path. So a single producer's events are sequenced in the order
    it emitted them, as on AWS whenever one invocation at a time serves the
    deployment (with several in flight, AWS orders nothing across batches: see
    docs/delivery.md).

    The receiver runs ahead of the invoker (by up to ``prefetch`` batches) only
    while the queue is backed up, that is while every receive comes back full.
    Once a receive comes back short, the queue is drained: the next receive
    waits until the invoker has finished what it holds, so it takes everything
    that arrived in the meantime as one batch. Receiving ahead then would only
    split the same events into smaller batches, each paying the invocation's
    fixed cost, and make each batch wait behind the ones received before it
    (at 100 events/s, four batches of six queued ahead held every event
    about 300 ms before its invocation started).
    """

    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        queue_arn: str,
        region: str,
        invoke: Invoke,
        batch_size: int = spec.DELIVERY.batch_size,
        prefetch: int = 4,
    ) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._queue_arn = queue_arn
        self._region = region
        self._invoke = invoke
        self._batch_size = batch_size
        self._prefetch = max(1, prefetch)
        self._stop = threading.Event()
        # Batches received and not yet invoked to completion, under ``_settled``.
        self._outstanding = 0
        self._settled = threading.Condition()
        self._received: queue.Queue[list[dict[str, Any]] | None] = queue.Queue()
        self._done: queue.Queue[list[dict[str, str]] | None] = queue.Queue()
        self._threads = [
            threading.Thread(target=self._receive, name="delivery-poller", daemon=True),
            threading.Thread(target=self._deliver_in_order, name="delivery-invoker", daemon=True),
            threading.Thread(target=self._delete, name="delivery-deleter", daemon=True),
        ]

    def start(self) -> None:
        """Start polling."""
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop after the current poll (at most one second) and the invocation in flight."""
        self._stop.set()
        deadline = time.monotonic() + 5
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def _receive(self) -> None:
        backed_up = False  # the last receive came back full: more is likely waiting
        try:
            while not self._stop.is_set():
                if not self._may_receive(backed_up):
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
                backed_up = len(messages) >= self._batch_size
                if messages:
                    with self._settled:
                        self._outstanding += 1
                    self._received.put(messages)
        finally:
            self._received.put(None)  # tells the invoker to finish

    def _may_receive(self, backed_up: bool) -> bool:
        """Wait (at most half a second) until a receive cannot split what one invocation would take."""
        limit = self._prefetch if backed_up else 1
        with self._settled:
            ready = self._settled.wait_for(
                lambda: self._outstanding < limit or self._stop.is_set(), timeout=0.5
            )
        return ready and not self._stop.is_set()

    def _deliver_in_order(self) -> None:
        try:
            while (messages := self._received.get()) is not None:
                try:
                    self._deliver(messages)
                finally:
                    with self._settled:
                        self._outstanding -= 1
                        self._settled.notify_all()
        finally:
            self._done.put(None)

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
