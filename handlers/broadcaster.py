"""The broadcaster: EventBridge delivers a deployment event; every subscriber receives it.

1. Validate the envelope (``detail-type`` is the message type, ``detail`` carries
   ``deployment_id``, ``event_id``, ``data``, ``timestamp``).
2. Store it with the deployment's next ``seq``, exactly once per event identity
   (``event_id``, else EventBridge's ``id``): a redelivery of an event whose
   fan-out completed changes nothing and sends nothing.
3. Query the deployment's subscribers (paginated, consistent) and post to them
   concurrently over a bounded pool; a 410 Gone deletes that connection and the
   fan-out carries on.

Errors that a retry can fix (DynamoDB unavailable) are raised, so Lambda's
asynchronous retries and the rule's dead-letter queue apply; an event that can
never be valid is logged and dropped.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from typing import Any

from handlers.events import DeploymentEvent, InvalidEventError, parse_event
from handlers.log import get_logger
from handlers.runtime import Runtime, get_runtime
from handlers.store import Store, StoredEvent, SubscriberPage

log = get_logger("broadcaster")


def _subscriber_ids(pages: Iterator[SubscriberPage], counter: dict[str, int]) -> Iterator[str]:
    for page in pages:
        counter["items_read"] += page.items_read
        for subscriber in page.subscribers:
            counter["recipients"] += 1
            yield subscriber.connection_id


def _remove_gone(store: Store, connection_id: str) -> None:
    """A 410 means API Gateway has no such connection: forget it and its subscriptions."""
    removed = store.delete_connection(connection_id)
    log.info("gone connection removed", extra={"connection_id": connection_id, "subscriptions": removed})


def broadcast(runtime: Runtime, event: DeploymentEvent) -> dict[str, Any]:
    """Store ``event`` and fan it out; returns what happened (also logged)."""
    store, config = runtime.store, runtime.config
    fields: dict[str, Any] = {"deployment_id": event.deployment_id, "event_id": event.event_id}

    if config.management_endpoint is None:
        raise RuntimeError("MANAGEMENT_ENDPOINT is not set: the broadcaster cannot reach connections")
    # Most deliveries are first deliveries: try to store straight away and look
    # the identity up only when the transaction says it already exists.
    status = "sent"
    stored: StoredEvent | None = store.append_event(
        event.deployment_id, event.identity, event.event_id, event.render
    )
    if stored is None:
        stored = store.find_event(event.identity)
        if stored is None or stored.sent:
            seq = stored.seq if stored else None
            log.info("duplicate event ignored", extra={**fields, "seq": seq})
            return {"status": "duplicate", "seq": seq}
        status = "resent"  # stored by an earlier delivery whose fan-out did not complete

    api = runtime.management(config.management_endpoint)
    counter = {"items_read": 0, "recipients": 0}
    result = api.fan_out(
        _subscriber_ids(store.subscriber_pages(event.deployment_id, config.subscriber_page_size), counter),
        stored.message.encode("utf-8"),
        on_gone=functools.partial(_remove_gone, store),
    )
    store.mark_sent(event.identity)
    summary = {
        "status": status,
        "seq": stored.seq,
        "recipients": counter["recipients"],
        "items_read": counter["items_read"],
        "delivered": result.delivered,
        "gone": len(result.gone),
        "failed": len(result.failed),
        "retries": result.retries,
    }
    log.info("event broadcast", extra={**fields, **summary, "type": event.type})
    return summary


def handler(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    """EventBridge target: broadcast one deployment event."""
    try:
        parsed = parse_event(event)
    except InvalidEventError as exc:
        # Retrying cannot fix a malformed event: log it and let it go.
        log.warning("event rejected", extra={"reason": str(exc), "event_id": event.get("id")})
        return {"status": "rejected", "reason": str(exc)}
    return broadcast(get_runtime(), parsed)
