"""EventBridge → broadcaster: drains the rule's queue into the real broadcaster handler.

EventBridge invokes a Lambda target asynchronously: at least once, retried
when the function fails, dead-lettered after repeated failures. The local
rule targets an SQS queue with a redrive policy, and this pump gives each
message to the broadcaster: deleted on success, left to reappear (and
eventually dead-letter) on failure. Events of one deployment are broadcast in
the order they were received; different deployments run concurrently.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from handlers.log import get_logger

log = get_logger("emulator.events")

Invoke = Callable[[Mapping[str, Any]], Any]


class EventPump:
    """A background thread moving events from the rule's queue to the broadcaster."""

    def __init__(self, sqs: Any, queue_url: str, invoke: Invoke, concurrency: int = 8) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._invoke = invoke
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="broadcast")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="event-pump", daemon=True)
        self.delivered = 0
        self.failed = 0

    def start(self) -> None:
        """Start polling."""
        self._thread.start()

    def stop(self) -> None:
        """Stop after the current poll (at most one second) and the broadcasts in flight."""
        self._stop.set()
        self._thread.join(timeout=5)
        self._pool.shutdown(wait=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                reply = self._sqs.receive_message(
                    QueueUrl=self._queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
                )
            except Exception:
                if self._stop.is_set():
                    return
                log.exception("receiving from the broadcaster queue failed")
                self._stop.wait(1)
                continue
            messages = reply.get("Messages", [])
            if messages:
                self._dispatch(messages)

    def _dispatch(self, messages: list[dict[str, Any]]) -> None:
        by_deployment: dict[str, list[dict[str, Any]]] = {}
        for message in messages:
            by_deployment.setdefault(_deployment_of(message), []).append(message)
        futures = [self._pool.submit(self._deliver_in_order, batch) for batch in by_deployment.values()]
        for future in futures:
            future.result()

    def _deliver_in_order(self, messages: list[dict[str, Any]]) -> None:
        done: list[dict[str, str]] = []
        for message in messages:
            try:
                event = json.loads(message["Body"])
                self._invoke(event)
            except Exception:
                # Left on the queue: visible again after the visibility timeout, like an
                # async Lambda retry, and dead-lettered after the redrive policy's attempts.
                self.failed += 1
                log.exception("broadcaster failed; will retry", extra={"sqs_id": message["MessageId"]})
                continue
            self.delivered += 1
            done.append({"Id": str(len(done)), "ReceiptHandle": message["ReceiptHandle"]})
        if done:
            self._sqs.delete_message_batch(QueueUrl=self._queue_url, Entries=done)


def _deployment_of(message: Mapping[str, Any]) -> str:
    try:
        detail = json.loads(message["Body"]).get("detail", {})
        return str(detail.get("deployment_id", ""))
    except (ValueError, AttributeError):
        return ""
