"""SQS standard queue and its Lambda event source mapping, in virtual time.

The queue: at-least-once (a small share of receives leave a copy visible),
best-effort order (each message is ranked by its arrival time plus a random
``REORDER_MS``, so messages arriving within that window may swap), visibility
timeouts, ``DelaySeconds``, ``ChangeMessageVisibility(Batch)``, and a
dead-letter queue after ``maxReceiveCount`` receives.

The mapping (Lambda "Configuring scaling behavior for SQS event source
mappings"): 5 pollers at first, each long-polling for up to 10 messages with no
batching window and invoking the function synchronously with what it got;
while messages wait, up to 300 more pollers a minute (5 a second here), up to
``MaximumConcurrency`` (in provisioned mode: ``10 x MinimumPollers`` at first,
1,000 more a minute). Records the function reports in ``batchItemFailures``
stay in flight until their visibility ends; the others are deleted. A batch
whose invocation raised comes back whole. The model never scales down (runs
are short).
"""

from __future__ import annotations

import heapq
import itertools
import json
import random
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bench.cloudmodel.clock import Signal, VirtualClock

#: SendMessage / ReceiveMessage / DeleteMessageBatch round trip (the brief's figure).
SQS_MS = 10.0
#: Messages arriving within this window may be received in either order (an estimate of "best effort").
REORDER_MS = 5.0
#: Share of receives that leave a copy of the message visible (at-least-once; an estimate).
DUPLICATE_RATE = 0.0005
#: Long polling's longest wait.
LONG_POLL_SECONDS = 20.0
#: The mapping's scaling (AWS documentation): start, growth per minute, batch size.
INITIAL_POLLERS = 5
POLLERS_PER_MINUTE = 300
#: Provisioned mode (``MinimumPollers``): AWS announced scaling of up to 1,000 concurrent
#: invocations a minute; a poller runs up to 10 invocations at once (third-party guides; AWS
#: leaves it unsaid), so the model starts ``10 x MinimumPollers`` batches at a time.
PROVISIONED_PER_MINUTE = 1000
INVOKES_PER_POLLER = 10
BATCH_SIZE = 10


@dataclass(eq=False)
class Message:
    """One message and where it stands."""

    message_id: str
    body: str
    sent_ms: int
    visible_at: float
    receives: int = 0
    version: int = 0
    receipt: str = ""
    deleted: bool = False
    attributes: dict[str, Any] = field(default_factory=dict)


class Queue:
    """A standard queue in virtual time."""

    def __init__(
        self,
        clock: VirtualClock,
        rng: random.Random,
        url: str,
        visibility_timeout: float,
        max_receive_count: int | None,
        dead_letters: Queue | None = None,
    ) -> None:
        self.clock, self.rng, self.url = clock, rng, url
        self.visibility_timeout = visibility_timeout
        self.max_receive_count = max_receive_count
        self.dead_letters = dead_letters
        self.arrived = Signal(clock)
        self._order = itertools.count()
        self._visible: list[tuple[float, int, Message, int]] = []
        self._hidden: list[tuple[float, int, Message, int]] = []
        self._by_receipt: dict[str, Message] = {}
        self.sent = 0
        self.received = 0
        self.duplicates = 0
        self.dead = 0

    # -- the API -----------------------------------------------------------------------------------

    def send(self, body: str, delay_seconds: float = 0.0) -> str:
        """SendMessage (the caller waits ``SQS_MS`` for it, or EventBridge does)."""
        now = self.clock.time()
        message = Message(
            str(uuid.UUID(int=self.rng.getrandbits(128))), body, int(now * 1000), now + delay_seconds
        )
        self.sent += 1
        if delay_seconds > 0:
            self._hide(message, delay_seconds)
        else:
            self._make_visible(message)
        return message.message_id

    def _make_visible(self, message: Message) -> None:
        rank = message.visible_at + self.rng.uniform(0, REORDER_MS / 1000)
        heapq.heappush(self._visible, (rank, next(self._order), message, message.version))
        self.arrived.notify(1)

    def _surface(self) -> None:
        now = self.clock.time()
        while self._hidden and self._hidden[0][0] <= now:
            _, _, message, version = heapq.heappop(self._hidden)
            if version == message.version and not message.deleted:
                self._make_visible(message)

    def next_visible_in(self) -> float | None:
        """Seconds until a hidden message becomes visible (None when none will)."""
        while self._hidden and (
            self._hidden[0][2].deleted or self._hidden[0][3] != self._hidden[0][2].version
        ):
            heapq.heappop(self._hidden)
        return max(0.0, self._hidden[0][0] - self.clock.time()) if self._hidden else None

    def backlog(self) -> int:
        """Messages visible now (an upper bound: stale entries are dropped lazily)."""
        self._surface()
        return len(self._visible)

    def receive(self, most: int) -> list[Message]:
        """ReceiveMessage: up to ``most`` visible messages, roughly oldest first; each becomes in flight."""
        self._surface()
        now = self.clock.time()
        taken: list[Message] = []
        while self._visible and len(taken) < most:
            _, _, message, version = heapq.heappop(self._visible)
            if message.deleted or version != message.version:
                continue
            message.receives += 1
            if self.max_receive_count is not None and message.receives > self.max_receive_count:
                message.deleted = True
                self.dead += 1
                if self.dead_letters is not None:
                    self.dead_letters.send(message.body)
                continue
            if self.rng.random() < DUPLICATE_RATE:
                self.duplicates += 1  # a copy stays visible: at-least-once
                heapq.heappush(
                    self._visible, (now + REORDER_MS / 1000, next(self._order), message, message.version + 1)
                )
            message.version += 1
            message.receipt = f"{message.message_id}#{message.receives}#{message.version}"
            self._by_receipt[message.receipt] = message
            self._hide(message, self.visibility_timeout)
            taken.append(message)
        self.received += len(taken)
        return taken

    def _hide(self, message: Message, seconds: float) -> None:
        message.visible_at = self.clock.time() + seconds
        heapq.heappush(self._hidden, (message.visible_at, next(self._order), message, message.version))
        if seconds < LONG_POLL_SECONDS:
            # A waiting poller set its timeout before this message was due: let one look again.
            self.arrived.notify(1)

    def delete(self, receipt: str) -> None:
        """DeleteMessage: forget a received message (a stale receipt of a redelivered copy is ignored)."""
        message = self._by_receipt.pop(receipt, None)
        if message is not None:
            message.deleted = True

    def change_visibility(self, receipt: str, seconds: float) -> None:
        """ChangeMessageVisibility of a message in flight."""
        message = self._by_receipt.get(receipt)
        if message is None or message.deleted:
            return
        message.version += 1
        self._by_receipt.pop(receipt)
        message.receipt = f"{message.message_id}#{message.receives}#{message.version}"
        self._by_receipt[message.receipt] = message
        self._hide(message, seconds)

    def record(self, message: Message) -> dict[str, Any]:
        """The message as the event source mapping hands it to the function."""
        return {
            "messageId": message.message_id,
            "receiptHandle": message.receipt,
            "body": message.body,
            "attributes": {
                "ApproximateReceiveCount": str(message.receives),
                "SentTimestamp": str(message.sent_ms),
                "ApproximateFirstReceiveTimestamp": str(message.sent_ms),
            },
            "messageAttributes": {},
            "eventSource": "aws:sqs",
            "eventSourceARN": f"arn:aws:sqs:us-east-1:123456789012:{self.url.rsplit('/', 1)[-1]}",
            "awsRegion": "us-east-1",
        }


class ModelSqsClient:
    """What the broadcaster calls on ``runtime.client("sqs")``: boto3-shaped, against the model's queues."""

    def __init__(self, clock: VirtualClock, queues: Mapping[str, Queue]) -> None:
        self._clock = clock
        self._queues = queues
        self.calls: dict[str, int] = {}

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def send_message(
        self, QueueUrl: str, MessageBody: str, DelaySeconds: int = 0, **_: Any
    ) -> dict[str, Any]:
        """SendMessage."""
        self._count("SendMessage")
        message_id = self._queues[QueueUrl].send(MessageBody, DelaySeconds)
        self._clock.sleep(SQS_MS / 1000)
        return {"MessageId": message_id}

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]], **_: Any) -> dict[str, Any]:
        """SendMessageBatch."""
        self._count("SendMessageBatch")
        queue = self._queues[QueueUrl]
        ok = [
            {"Id": e["Id"], "MessageId": queue.send(e["MessageBody"], e.get("DelaySeconds", 0))}
            for e in Entries
        ]
        self._clock.sleep(SQS_MS / 1000)
        return {"Successful": ok, "Failed": []}

    def change_message_visibility_batch(
        self, QueueUrl: str, Entries: list[dict[str, Any]], **_: Any
    ) -> dict[str, Any]:
        """ChangeMessageVisibilityBatch."""
        self._count("ChangeMessageVisibilityBatch")
        queue = self._queues[QueueUrl]
        for entry in Entries:
            queue.change_visibility(entry["ReceiptHandle"], float(entry["VisibilityTimeout"]))
        self._clock.sleep(SQS_MS / 1000)
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}

    def change_message_visibility(
        self, QueueUrl: str, ReceiptHandle: str, VisibilityTimeout: int, **_: Any
    ) -> dict[str, Any]:
        """ChangeMessageVisibility."""
        self._count("ChangeMessageVisibility")
        self._queues[QueueUrl].change_visibility(ReceiptHandle, float(VisibilityTimeout))
        self._clock.sleep(SQS_MS / 1000)
        return {}

    def __getattr__(self, name: str) -> Any:
        raise NotImplementedError(f"the cloud model's SQS has no {name} yet")


#: Runs the function on one batch: records in, the function's answer (or an exception) out.
Invoke = Callable[[list[dict[str, Any]]], Any]


class EventSourceMapping:
    """Pollers that feed the function batches from a queue, scaling as AWS's mapping does."""

    def __init__(
        self,
        clock: VirtualClock,
        queue: Queue,
        invoke: Invoke,
        max_concurrency: int,
        initial: int = INITIAL_POLLERS,
        per_minute: int = POLLERS_PER_MINUTE,
    ) -> None:
        self.clock, self.queue, self.invoke = clock, queue, invoke
        self.max_concurrency = max_concurrency
        self.initial = min(initial, max_concurrency)
        self.per_minute = per_minute
        self.pollers = 0
        self.busy = 0
        self.peak_busy = 0
        self.stopping = False
        self.batches = 0
        self.records = 0
        self.failed_records = 0
        self.failed_batches = 0

    def start(self) -> None:
        """Start the first pollers and the scaler."""
        for _ in range(self.initial):
            self._add_poller()
        self.clock.spawn(self._scale, name="esm-scaler")

    def stop(self) -> None:
        """Let every poller finish its batch and leave."""
        self.stopping = True
        self.queue.arrived.notify_all()

    def _add_poller(self) -> None:
        self.pollers += 1
        self.clock.spawn(self._poll, name=f"poller-{self.pollers}")

    def _scale(self) -> None:
        per_second = self.per_minute // 60
        while not self.stopping:
            self.clock.sleep(1.0)
            if self.queue.backlog() > 0 and self.pollers < self.max_concurrency:
                for _ in range(min(per_second, self.max_concurrency - self.pollers)):
                    self._add_poller()

    def _poll(self) -> None:
        queue = self.queue
        while not self.stopping:
            messages = queue.receive(BATCH_SIZE)
            if not messages:
                wait = queue.next_visible_in()
                queue.arrived.wait(LONG_POLL_SECONDS if wait is None else min(LONG_POLL_SECONDS, wait + 1e-6))
                continue
            self.clock.sleep(SQS_MS / 1000)  # the receive's answer travels back
            records = [queue.record(m) for m in messages]
            self.busy += 1
            self.peak_busy = max(self.peak_busy, self.busy)
            self.batches += 1
            self.records += len(records)
            try:
                answer = self.invoke(records)
            except Exception:
                self.failed_batches += 1
                self.busy -= 1
                continue
            self.busy -= 1
            failed = {f.get("itemIdentifier") for f in (answer or {}).get("batchItemFailures", [])}
            self.failed_records += len(failed)
            for message in messages:
                if message.message_id not in failed:
                    queue.delete(message.receipt)  # DeleteMessageBatch, off the poller's path


def eventbridge_event(entry: Mapping[str, str], event_id: str, when: str) -> str:
    """The JSON EventBridge puts on an SQS target for one PutEvents entry (the default input)."""
    return json.dumps(
        {
            "version": "0",
            "id": event_id,
            "detail-type": entry["DetailType"],
            "source": entry["Source"],
            "account": "123456789012",
            "time": when,
            "region": "us-east-1",
            "resources": [],
            "detail": json.loads(entry["Detail"]),
        },
        separators=(",", ":"),
    )
