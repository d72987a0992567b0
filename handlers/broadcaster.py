"""The broadcaster: batches of deployment events in, every subscriber served, nothing lost.

It is fed by the delivery queue's event source mapping (see docs/delivery.md):
``{"Records": [...]}``, each record an EventBridge event with the cloud-ws
envelope, or a wake message the broadcaster sent itself. For each batch it

1. parses every record (a record that can never be valid is logged and let
   go); the producer's ``timestamp`` is clamped to the time the queue
   received the event (``contract.events``);
2. groups the events by deployment and hands each group, in a thread of its
   own, to ``server.delivery``: the invocation that holds the deployment's
   drain lease stores the events in their producer's emission order (the
   ``seq`` range, history and identities in one transaction: a redelivered
   ``event_id`` is neither stored nor sent again, one stored by a delivery
   whose fan-out did not complete is sent again with the same ``seq``), fans
   them out as multi-message frames over as many invocations as the
   subscriber count needs (``server.fanout``), marks them sent and
   publishes them to AppSync when that is configured, and notifies each
   attempt's outcome once (``server.notify``); any other invocation
   leaves them in the deployment's inbox for the holder and moves on;
3. sorts failures: DynamoDB throttling sends the deployment's records back
   (their visibility doubles with each receive), an event DynamoDB refuses
   as invalid goes to the dead-letter queue at once, anything else comes back
   soon (``batchItemFailures``: only those records).

The same function serves the fan-out tasks it hands to itself
(``{"cloud_ws_fanout": {...}}``), and still accepts a bare EventBridge event
(a direct rule target).
"""

from __future__ import annotations

import contextvars
import json
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from contract import protocol, spec
from contract.events import DeploymentEvent, InvalidEventError, SequencedEvent, parse_events
from contract.log import get_logger, inject_lambda_context
from server import notify
from server.appsync import publisher_for
from server.delivery import Delivery, DeliveryOutcome, wake_message
from server.fanout import FanOut, FanOutSummary, FanOutTask, InvalidTaskError
from server.inbox import Inbox
from server.runtime import Runtime, get_runtime
from server.store import ThrottledError

log = get_logger("broadcaster")

#: One publishing thread per container: AppSync receives a deployment's batches in order.
_PUBLISHING = ThreadPoolExecutor(1, thread_name_prefix="appsync-publish")


@dataclass(frozen=True)
class BatchOutcome:
    """What broadcasting one deployment's events did."""

    deployment_id: str
    sent: list[int]
    """``seq`` of every event posted (fresh and resent)."""
    resent: list[int]
    duplicates: list[int]
    fanout: FanOutSummary
    queued: bool = False
    """Another invocation held the deployment's lease: the events wait in its inbox for it."""
    rejected: list[DeploymentEvent] = field(default_factory=list)
    """Refused by DynamoDB as invalid and dead-lettered."""


def fanout_for(runtime: Runtime) -> FanOut:
    """The fan-out of this container: its poster, its store, and tasks to itself when it has a name."""
    config = runtime.config
    if config.management_endpoint is None:
        raise RuntimeError("MANAGEMENT_ENDPOINT is not set: the broadcaster cannot reach connections")
    function = config.fanout_function

    def dispatch(task: FanOutTask) -> None:
        assert function is not None
        runtime.invoke_async(function, task.payload())

    return FanOut(
        runtime.store,
        runtime.management(config.management_endpoint),
        page_size=config.fanout_page_size,
        max_attempts=config.fanout_max_attempts,
        dispatch=dispatch if function else None,
        query_page_size=config.subscriber_page_size,
    )


#: The AppSync publishes an invocation started; it waits for them before it returns.
_publishes: contextvars.ContextVar[list[Future[Any]] | None] = contextvars.ContextVar(
    "cloud_ws_publishes", default=None
)


def send(
    runtime: Runtime, deployment_id: str, events: Sequence[SequencedEvent], audience: str | None = None
) -> FanOutSummary:
    """Post stored events to every subscriber and start publishing them to AppSync.

    ``audience``: the deployment's audience token as the lease holder read it
    (the container's subscriber list kept under it spares a read).

    What was sent is recorded by the delivery's lease holder (the lease's ``sentUpTo``).

    GraphQL subscribers get the same events with the same seq. Publishing runs
    beside the WebSocket fan-out and the drain's next rounds, on one thread per
    container (so AppSync gets a deployment's batches in order); the invocation
    waits for it before it returns (:func:`handler`). The publisher never
    raises: a lost mutation is filled by ``deploymentEvents``.
    """
    fanout = fanout_for(runtime)
    publisher = publisher_for(runtime.config)
    if publisher is not None:  # in the invocation's context: its log lines name the invocation too
        future = _PUBLISHING.submit(contextvars.copy_context().run, publisher.publish, events)
        pending = _publishes.get()
        if pending is None:
            future.result()  # called outside an invocation (tests): nothing would wait for it
        else:
            pending.append(future)
    summary = fanout.broadcast(deployment_id, events, audience=audience)
    # An attempt's outcome among them: notified once, whatever is resent (never raises).
    notify.after_send(runtime, deployment_id, events)
    return summary


def _finish_publishing() -> None:
    pending = _publishes.get()
    while pending:
        pending.pop(0).result()


_deliveries: dict[tuple[int, int], Delivery] = {}
_deliveries_lock = threading.Lock()


def delivery_for(runtime: Runtime) -> Delivery:
    """The container's delivery (one per runtime and store: it caches what it checkpointed)."""
    key = (id(runtime), id(runtime.store))
    with _deliveries_lock:
        made = _deliveries.get(key)
        if made is None:
            store = runtime.store
            made = Delivery(
                store,
                Inbox(store.client, runtime.config.tables.events),
                send=lambda deployment_id, events, audience: send(runtime, deployment_id, events, audience),
                catch_up=lambda deployment_id, events, before, after: fanout_for(runtime).catch_up(
                    deployment_id, events, before, after
                ),
                wake=lambda deployment_id, delay: _send_wake(runtime, deployment_id, delay),
                dead_letter=lambda events: _dead_letter(runtime, events),
            )
            if len(_deliveries) >= 64:  # bounded: tests and models build many runtimes
                _deliveries.pop(next(iter(_deliveries)))
            _deliveries[key] = made
        return made


def broadcast(runtime: Runtime, deployment_id: str, events: Sequence[DeploymentEvent]) -> BatchOutcome:
    """Store (in emission order) and send one deployment's events, or leave them to the lease holder."""
    fanout_for(runtime)  # fails before anything is stored when it cannot post
    outcome = delivery_for(runtime).deliver(deployment_id, events)
    result = _batch_outcome(outcome)
    log.info(
        "batch broadcast" if outcome.claimed else "batch queued for the drain lease holder",
        extra={
            "deployment_id": deployment_id,
            "events": len(result.sent),
            "received": len(events),
            "first_seq": result.sent[0] if result.sent else None,
            "last_seq": result.sent[-1] if result.sent else None,
            "resent": len(result.resent),
            "duplicates": len(result.duplicates),
            "held": outcome.held,
            "rounds": outcome.sessions,
            "handed_over": outcome.handed_over,
            "frames": outcome.fanout.frames,
            "recipients": outcome.fanout.recipients,
            "items_read": outcome.fanout.items_read,
            "delivered": outcome.fanout.delivered,
            "gone": outcome.fanout.gone,
            "retrying": outcome.fanout.retrying,
            "tasks": outcome.fanout.tasks,
            "posts": outcome.fanout.posts,
        },
    )
    return result


def _batch_outcome(outcome: DeliveryOutcome) -> BatchOutcome:
    return BatchOutcome(
        outcome.deployment_id,
        sent=outcome.sent,
        resent=outcome.resent,
        duplicates=outcome.duplicates,
        fanout=outcome.fanout,
        queued=not outcome.claimed,
        rejected=outcome.rejected,
    )


def _received_ms(record: Mapping[str, Any]) -> int | None:
    """When the queue first received the record (``SentTimestamp``, the same on every redelivery)."""
    try:
        return int(record.get("attributes", {}).get("SentTimestamp"))
    except (TypeError, ValueError, AttributeError):
        return None


def handle_records(runtime: Runtime, records: Sequence[Any]) -> dict[str, Any]:
    """An SQS batch: deliver each deployment's events; report the records that must come back."""
    groups: dict[str, list[tuple[str | None, DeploymentEvent | None]]] = {}
    for record in records:
        message_id = record.get("messageId") if isinstance(record, Mapping) else None
        try:
            body = json.loads(record["body"])
            wake = body.get(spec.WAKE_KEY) if isinstance(body, dict) else None
            if isinstance(wake, dict) and protocol.is_valid_deployment_id(wake.get("deployment_id")):
                groups.setdefault(wake["deployment_id"], []).append((message_id, None))
                continue
            events, rejected = parse_events(body, _received_ms(record))
        except (InvalidEventError, ValueError, KeyError, TypeError, AttributeError) as exc:
            # Retrying cannot fix a malformed event: let it go (the record counts as done).
            log.warning("event rejected", extra={"reason": str(exc), "sqs_message_id": message_id})
            continue
        for reason in rejected:  # members of a packed entry that can never be valid
            log.warning("event rejected", extra={"reason": reason, "sqs_message_id": message_id})
        for event in events:
            groups.setdefault(event.deployment_id, []).append((message_id, event))

    def one(deployment_id: str) -> BatchOutcome:
        events = [event for _, event in groups[deployment_id] if event is not None]
        return broadcast(runtime, deployment_id, events)

    failed: list[str] = []
    throttled = False
    # One thread per deployment: a deployment whose drain takes seconds does not hold up
    # the others of this batch.
    results = _run_each(list(groups), one)
    for deployment_id, outcome in results.items():
        if not isinstance(outcome, BaseException):
            continue
        items = groups[deployment_id]
        if isinstance(outcome, ThrottledError):
            throttled = True
            log.warning(
                "DynamoDB throttled; the deployment's records come back later",
                extra={"deployment_id": deployment_id, "reason": str(outcome)},
            )
        else:
            log.error(
                "broadcast failed; its records come back",
                exc_info=outcome,
                extra={"deployment_id": deployment_id},
            )
        failed += dict.fromkeys(message_id for message_id, _ in items if message_id)  # a pack: one record
    if failed:
        _come_back_soon(runtime, records, failed, throttled)
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failed]}


def _run_each(deployments: list[str], work: Any) -> dict[str, BatchOutcome | BaseException]:
    """``work(deployment_id)`` for each, in parallel threads (in this invocation's context)."""
    results: dict[str, BatchOutcome | BaseException] = {}
    if len(deployments) <= 1:
        for deployment_id in deployments:
            try:
                results[deployment_id] = work(deployment_id)
            except Exception as exc:  # noqa: BLE001 - sorted and logged by the caller
                results[deployment_id] = exc
        return results
    with ThreadPoolExecutor(len(deployments), thread_name_prefix="deliver") as pool:
        futures = {
            deployment_id: pool.submit(contextvars.copy_context().run, work, deployment_id)
            for deployment_id in deployments
        }
        for deployment_id, future in futures.items():
            try:
                results[deployment_id] = future.result()
            except Exception as exc:  # noqa: BLE001 - sorted and logged by the caller
                results[deployment_id] = exc
    return results


def _send_wake(runtime: Runtime, deployment_id: str, delay_seconds: int) -> None:
    """Ask for a deployment's inbox to be drained again after ``delay_seconds`` (a wake message)."""
    queue_url = runtime.config.delivery_queue_url
    if queue_url is None:
        log.warning(
            "no delivery queue to wake: held events wait for the next one",
            extra={"deployment_id": deployment_id},
        )
        return
    try:
        runtime.client("sqs").send_message(
            QueueUrl=queue_url, MessageBody=wake_message(deployment_id), DelaySeconds=max(0, delay_seconds)
        )
    except Exception:  # the inbox is safe: the deployment's next event or redelivery drains it
        log.exception("could not send a wake message", extra={"deployment_id": deployment_id})


def _dead_letter(runtime: Runtime, events: Sequence[DeploymentEvent]) -> None:
    """Send events DynamoDB refused as invalid to the dead-letter queue at once (never retried)."""
    queue_url = runtime.config.dead_letter_queue_url
    for event in events:
        log.error(
            "event refused as invalid; dead-lettered",
            extra={"deployment_id": event.deployment_id, "event_id": event.event_id, "type": event.type},
        )
        if queue_url is None:
            continue
        try:
            runtime.client("sqs").send_message(
                QueueUrl=queue_url, MessageBody=json.dumps(event.eventbridge())
            )
        except Exception:
            log.exception("could not dead-letter an event", extra={"event_id": event.event_id})


def retry_visibility(record: Mapping[str, Any]) -> int:
    """Seconds until a failed record comes back: doubled at each receive, so an outage is ridden out."""
    delivery = spec.DELIVERY
    try:
        received = max(1, int(record.get("attributes", {}).get("ApproximateReceiveCount", 1)))
    except (TypeError, ValueError, AttributeError):
        received = 1
    return int(
        min(
            delivery.visibility_timeout_seconds,
            delivery.retry_visibility_seconds * 2 ** min(received - 1, 16),
        )
    )


def _come_back_soon(
    runtime: Runtime, records: Sequence[Any], failed: Sequence[str], throttled: bool = False
) -> None:
    """Shorten the failed messages' visibility: the queue's own timeout is minutes, by AWS's advice.

    After throttling the first wait is doubled too: coming straight back to a
    partition that is over its limit only makes it worse.
    """
    queue_url = runtime.config.delivery_queue_url
    if queue_url is None:
        return
    wanted = set(failed)
    entries = [
        {
            "Id": str(i),
            "ReceiptHandle": record["receiptHandle"],
            "VisibilityTimeout": min(
                spec.DELIVERY.visibility_timeout_seconds, retry_visibility(record) * (2 if throttled else 1)
            ),
        }
        for i, record in enumerate(records)
        if isinstance(record, Mapping) and record.get("messageId") in wanted and record.get("receiptHandle")
    ]
    sqs = runtime.client("sqs")
    for start in range(0, len(entries), 10):  # ChangeMessageVisibilityBatch takes at most 10
        try:
            sqs.change_message_visibility_batch(QueueUrl=queue_url, Entries=entries[start : start + 10])
        except Exception:  # best effort: the queue's own visibility timeout still brings them back
            log.exception("could not shorten the visibility of failed records")


def run_task(runtime: Runtime, body: Any, context: Any) -> dict[str, Any]:
    """A fan-out task this broadcaster handed to itself."""
    try:
        task = FanOutTask.from_payload(body)
    except InvalidTaskError as exc:
        log.warning("fan-out task rejected", extra={"reason": str(exc)})
        return {"status": "rejected", "reason": str(exc)}
    remaining = context.get_remaining_time_in_millis() / 1000 if context is not None else 60.0
    summary = fanout_for(runtime).run(task, remaining)
    log.info(
        "fan-out task served",
        extra={
            "deployment_id": task.deployment_id,
            "attempt": task.attempt,
            "recipients": summary.recipients,
            "delivered": summary.delivered,
            "gone": summary.gone,
            "retrying": summary.retrying,
        },
    )
    return {
        "status": "served",
        "delivered": summary.delivered,
        "gone": summary.gone,
        "retrying": summary.retrying,
    }


def _single(runtime: Runtime, event: Mapping[str, Any]) -> dict[str, Any]:
    """A bare EventBridge event (a direct rule target): broadcast it and say what happened.

    A packed entry is broadcast whole; the answer's ``seq`` is its first event's.
    """
    try:
        parsed, rejected = parse_events(event)
    except InvalidEventError as exc:
        log.warning("event rejected", extra={"reason": str(exc), "event_id": event.get("id")})
        return {"status": "rejected", "reason": str(exc)}
    for reason in rejected:
        log.warning("event rejected", extra={"reason": reason, "event_id": event.get("id")})
    if not parsed:
        return {"status": "rejected", "reason": "; ".join(rejected)}
    outcome = broadcast(runtime, parsed[0].deployment_id, parsed)
    summary = outcome.fanout
    if outcome.duplicates:
        return {"status": "duplicate", "seq": outcome.duplicates[0]}
    if outcome.queued or not outcome.sent:
        return {"status": "held" if not outcome.queued else "queued"}
    return {
        "status": "resent" if outcome.resent else "sent",
        "seq": outcome.sent[0],
        "recipients": summary.recipients,
        "items_read": summary.items_read,
        "delivered": summary.delivered,
        "gone": summary.gone,
        "retrying": summary.retrying,
        "retries": summary.retries,
        "posts": summary.posts,
    }


@inject_lambda_context
def handler(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    """Lambda entry: an SQS batch, a fan-out task, or a single EventBridge event."""
    runtime = get_runtime()
    if spec.FANOUT_TASK_KEY in event:
        return run_task(runtime, event[spec.FANOUT_TASK_KEY], context)
    token = _publishes.set([])
    try:
        records = event.get("Records")
        if isinstance(records, list):
            return handle_records(runtime, records)
        return _single(runtime, event)
    finally:
        _finish_publishing()
        _publishes.reset(token)
