"""The broadcaster: batches of deployment events in, every subscriber served, nothing lost.

It is fed by the delivery queue's event source mapping (see docs/delivery.md):
``{"Records": [...]}``, each record an EventBridge event with the cloud-ws
envelope. For each batch it

1. parses every record (a record that can never be valid is logged and let go);
2. groups the events by deployment and, per deployment, assigns the ``seq``
   range and stores history and identities in one transaction
   (``Store.append_events``): a redelivered ``event_id`` is neither stored nor
   sent again, and one stored by a delivery whose fan-out did not complete is
   sent again with the same ``seq``;
3. fans the deployment's new events out once, as multi-message frames, over
   as many invocations as its subscriber count needs (``handlers.fanout``);
4. marks them sent (one BatchWriteItem) and publishes them to AppSync when
   that is configured;
5. reports the records of any deployment that failed as ``batchItemFailures``
   (only those come back) and shortens their visibility so they come back soon.

The same function serves the fan-out tasks it hands to itself
(``{"cloud_ws_fanout": {...}}``), and still accepts a bare EventBridge event
(a direct rule target).
"""

from __future__ import annotations

import contextvars
import json
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from handlers import spec
from handlers.appsync import publisher_for
from handlers.events import DeploymentEvent, InvalidEventError, parse_event
from handlers.fanout import FanOut, FanOutSummary, FanOutTask, InvalidTaskError
from handlers.log import get_logger, inject_lambda_context
from handlers.runtime import Runtime, get_runtime

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


def broadcast(runtime: Runtime, deployment_id: str, events: Sequence[DeploymentEvent]) -> BatchOutcome:
    """Sequence, store and fan out one deployment's events (in the order given)."""
    fanout = fanout_for(runtime)  # fails before anything is stored when it cannot post
    result = runtime.store.append_events(deployment_id, events)
    to_send = result.to_send
    summary = FanOutSummary()
    if to_send:
        # GraphQL subscribers get the same events with the same seq. Publishing runs beside
        # the WebSocket fan-out (both mostly wait on the network) and is done before this
        # returns; the publisher never raises: a lost mutation is filled by deploymentEvents.
        publisher = publisher_for(runtime.config)
        published = (  # in the invocation's context: its log lines name the invocation too
            _PUBLISHING.submit(contextvars.copy_context().run, publisher.publish, to_send)
            if publisher is not None
            else None
        )
        try:
            summary = fanout.broadcast(deployment_id, to_send)
            runtime.store.mark_sent(to_send)
        finally:
            if published is not None:
                published.result()
    outcome = BatchOutcome(
        deployment_id,
        sent=[e.seq for e in to_send],
        resent=[e.seq for e in result.unsent],
        duplicates=[seq for _, seq in result.duplicates],
        fanout=summary,
    )
    log.info(
        "batch broadcast",
        extra={
            "deployment_id": deployment_id,
            "events": len(outcome.sent),
            "first_seq": outcome.sent[0] if outcome.sent else None,
            "last_seq": outcome.sent[-1] if outcome.sent else None,
            "resent": len(outcome.resent),
            "duplicates": len(outcome.duplicates),
            "frames": summary.frames,
            "recipients": summary.recipients,
            "items_read": summary.items_read,
            "delivered": summary.delivered,
            "gone": summary.gone,
            "retrying": summary.retrying,
            "tasks": summary.tasks,
            "posts": summary.posts,
        },
    )
    return outcome


def handle_records(runtime: Runtime, records: Sequence[Any]) -> dict[str, Any]:
    """An SQS batch: broadcast each deployment's events; report the records that must come back."""
    groups: dict[str, list[tuple[str | None, DeploymentEvent]]] = {}
    for record in records:
        message_id = record.get("messageId") if isinstance(record, Mapping) else None
        try:
            body = json.loads(record["body"])
            event = parse_event(body)
        except (InvalidEventError, ValueError, KeyError, TypeError, AttributeError) as exc:
            # Retrying cannot fix a malformed event: let it go (the record counts as done).
            log.warning("event rejected", extra={"reason": str(exc), "sqs_message_id": message_id})
            continue
        groups.setdefault(event.deployment_id, []).append((message_id, event))

    failed: list[str] = []
    for deployment_id, items in groups.items():
        try:
            broadcast(runtime, deployment_id, [event for _, event in items])
        except Exception:
            log.exception("broadcast failed; its records come back", extra={"deployment_id": deployment_id})
            failed += [message_id for message_id, _ in items if message_id]
    if failed:
        _come_back_soon(runtime, records, failed)
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failed]}


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


def _come_back_soon(runtime: Runtime, records: Sequence[Any], failed: Sequence[str]) -> None:
    """Shorten the failed messages' visibility: the queue's own timeout is minutes, by AWS's advice."""
    queue_url = runtime.config.delivery_queue_url
    if queue_url is None:
        return
    wanted = set(failed)
    entries = [
        {
            "Id": str(i),
            "ReceiptHandle": record["receiptHandle"],
            "VisibilityTimeout": retry_visibility(record),
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
    """A bare EventBridge event (a direct rule target): broadcast it and say what happened."""
    try:
        parsed = parse_event(event)
    except InvalidEventError as exc:
        log.warning("event rejected", extra={"reason": str(exc), "event_id": event.get("id")})
        return {"status": "rejected", "reason": str(exc)}
    outcome = broadcast(runtime, parsed.deployment_id, [parsed])
    summary = outcome.fanout
    if outcome.duplicates:
        return {"status": "duplicate", "seq": outcome.duplicates[0]}
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
    records = event.get("Records")
    if isinstance(records, list):
        return handle_records(runtime, records)
    return _single(runtime, event)
