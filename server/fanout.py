"""Fan-out: one deployment's batch of sequenced events to every subscriber, spread over workers.

A batch is packed into as few frames as API Gateway's 128 KB message limit
allows (one ``\\n``-separated message per event), so a subscriber gets the
batch in one post, not one post per event. The invocation that sequenced the
batch posts to the first page of subscribers itself; every further page is
handed to an asynchronous invocation of the broadcaster (a *task*), so a
deployment with 10,000 watchers is served by ten invocations in parallel and
the time to the last delivery approaches API Gateway's own throttle floor.

Nothing is lost at the tail: a connection whose posts still fail after the
poster's retries (429, 5xx, not 410) is handed to a retry task that waits,
posts again, and hands itself on, until the post goes through, the connection
is gone, or ``fanout_max_attempts`` rounds have passed (then the client's next
``ping`` learns the deployment's latest ``seq`` from ``pong.latest`` and
catches up with ``since``).
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from contract import protocol, spec
from contract.backoff import Backoff
from contract.events import SequencedEvent
from contract.log import get_logger
from server.management import FanOutResult, ManagementApi
from server.store import Store, SubscriberPage

log = get_logger("fanout")

#: A task's frames travel inside its payload up to this size; larger batches are read
#: back from the history by the worker (an asynchronous invocation's payload is at most 1 MB).
MAX_INLINE_BYTES = 160 * 1024

#: Shares handed to other invocations at the same time (each hand-over is one Invoke call).
DISPATCH_CONCURRENCY = 8

#: Retry rounds wait at least half their ceiling: a connection that just failed all of the
#: poster's own retries gets some time before the next round.
_RETRY_BACKOFF = Backoff(base=0.25, cap=8.0, floor=0.5)


class InvalidTaskError(ValueError):
    """A fan-out task payload that this broadcaster did not write."""


@dataclass(frozen=True)
class FanOutTask:
    """Posts one invocation owes: these frames (events ``seqs``) to these connections."""

    deployment_id: str
    seqs: tuple[int, ...]
    connection_ids: tuple[str, ...]
    frames: tuple[str, ...] | None
    """The frames themselves, or None when the worker reads them back from the history."""
    attempt: int = 0
    """0 for a page of a fresh fan-out; n for the n-th retry of connections that kept failing."""

    def payload(self) -> dict[str, Any]:
        """The invocation payload, under :data:`spec.FANOUT_TASK_KEY`."""
        body: dict[str, Any] = {
            "deployment_id": self.deployment_id,
            "seqs": list(self.seqs),
            "connection_ids": list(self.connection_ids),
            "attempt": self.attempt,
        }
        if self.frames is not None:
            body["frames"] = list(self.frames)
        return {spec.FANOUT_TASK_KEY: body}

    @classmethod
    def from_payload(cls, body: Any) -> FanOutTask:
        """Parse the body under :data:`spec.FANOUT_TASK_KEY`.

        Raises:
            InvalidTaskError: any field is missing or of the wrong type.
        """
        if not isinstance(body, Mapping):
            raise InvalidTaskError("a fan-out task is a JSON object")
        deployment_id, seqs, ids = body.get("deployment_id"), body.get("seqs"), body.get("connection_ids")
        attempt, frames = body.get("attempt", 0), body.get("frames")
        if not protocol.is_valid_deployment_id(deployment_id):
            raise InvalidTaskError("deployment_id is not a deployment id")
        if not (isinstance(seqs, list) and seqs and all(_is_int(s) and s > 0 for s in seqs)):
            raise InvalidTaskError("seqs must be a non-empty list of positive integers")
        if not (isinstance(ids, list) and all(isinstance(c, str) and c for c in ids)):
            raise InvalidTaskError("connection_ids must be a list of connection ids")
        if not (_is_int(attempt) and attempt >= 0):
            raise InvalidTaskError("attempt must be a non-negative integer")
        if frames is not None and not (isinstance(frames, list) and all(isinstance(f, str) for f in frames)):
            raise InvalidTaskError("frames must be a list of strings")
        return cls(
            str(deployment_id),
            tuple(seqs),
            tuple(ids),
            tuple(frames) if frames is not None else None,
            int(attempt),
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class FanOutSummary:
    """What one invocation did for a batch (logged, and returned to tests and benchmarks)."""

    frames: int = 0
    recipients: int = 0
    items_read: int = 0
    delivered: int = 0
    gone: int = 0
    retrying: int = 0
    """Connections handed to a retry because their posts kept failing."""
    retries: int = 0
    posts: int = 0
    tasks: int = 0
    """Pages handed to other invocations."""
    gone_ids: list[str] = field(default_factory=list)

    def merge(self, other: FanOutSummary) -> None:
        """Add another batch's figures (one drain session sends several batches)."""
        for name in (
            "frames",
            "recipients",
            "items_read",
            "delivered",
            "gone",
            "retrying",
            "retries",
            "posts",
            "tasks",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.gone_ids += other.gone_ids

    def add(self, result: FanOutResult) -> None:
        """Count one ``ManagementApi.fan_out`` result."""
        self.delivered += result.delivered
        self.gone += len(result.gone)
        self.gone_ids += result.gone
        self.retries += result.retries
        self.posts += result.posts


#: Hands a task to another invocation (asynchronously; raises when it cannot be handed over).
Dispatch = Callable[[FanOutTask], None]


def retry_delay(attempt: int) -> float:
    """How long retry round ``attempt`` waits: exponential, capped, with jitter (never all at once)."""
    return _RETRY_BACKOFF.delay(attempt)


def pack(events: Sequence[SequencedEvent]) -> list[bytes]:
    """A batch's messages in ``seq`` order, packed into frames within API Gateway's message limit."""
    return protocol.pack_frames(
        (e.message.encode("utf-8") for e in events), spec.API_GATEWAY_LIMITS.message_bytes
    )


def _inline(frames: Sequence[bytes], connection_ids: Sequence[str]) -> tuple[str, ...] | None:
    size = sum(len(f) for f in frames) + sum(len(c) + 4 for c in connection_ids)
    return tuple(f.decode("utf-8") for f in frames) if size <= MAX_INLINE_BYTES else None


class FanOut:
    """Posts a deployment's batches to its subscribers: the first page here, the others via tasks."""

    def __init__(
        self,
        store: Store,
        api: ManagementApi,
        page_size: int,
        max_attempts: int,
        dispatch: Dispatch | None,
        query_page_size: int = 1000,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Set up a fan-out.

        Args:
            page_size: subscribers one invocation posts to; the rest go to tasks.
            max_attempts: rounds of posting before a failing connection is left to its client.
            dispatch: hands a task to another invocation; None: every share and retry runs here.
            query_page_size: subscriptions read per DynamoDB Query.
        """
        self._store = store
        self._api = api
        self._page_size = page_size
        self._query_page_size = query_page_size
        self._max_attempts = max_attempts
        self._dispatch = dispatch
        self._sleep = sleep

    def _remove_gone(self, connection_id: str) -> None:
        """A 410 means API Gateway has no such connection: forget it and its subscriptions."""
        removed = self._store.delete_connection(connection_id)
        log.info("gone connection removed", extra={"connection_id": connection_id, "subscriptions": removed})

    def broadcast(
        self, deployment_id: str, events: Sequence[SequencedEvent], audience: str | None = None
    ) -> FanOutSummary:
        """Post ``events`` (one deployment's, in ``seq`` order) to every live subscriber.

        ``audience``: the deployment's audience token as the lease holder last
        read it; the subscriber list this container keeps under it is used
        instead of a Query (``server.store.subscriptions``). Returns once every
        page is posted or handed to a task, and every connection that kept
        failing is handed to a retry.
        """
        return self._post(deployment_id, events, self._pages(deployment_id, events, audience))

    def catch_up(
        self, deployment_id: str, events: Sequence[SequencedEvent], before: str, after: str
    ) -> FanOutSummary:
        """Post ``events``, sent to the list kept under audience ``before``, to whoever joined since.

        The lease holder calls this when the token moved from ``before`` to
        ``after`` while it held the lease: a subscriber that joined then may
        have read its history before these events were stored. The list is
        read again (and kept under ``after``); the connections it holds that
        the old list did not get ``events``. A connection that was also in the
        old list got them already; one whose history read came later drops
        them by ``seq``.
        """
        old = self._store.kept_audience(deployment_id, before)
        pages = self._pages(deployment_id, events, after)
        if old is None:  # nothing kept to compare with: everyone gets them again (clients drop by seq)
            return self._post(deployment_id, events, pages)
        return self._post(deployment_id, events, _newcomers(pages, old))

    def _pages(
        self, deployment_id: str, events: Sequence[SequencedEvent], audience: str | None
    ) -> Iterator[SubscriberPage]:
        """The subscribers ``events`` may be posted to (kept under ``audience``, or read)."""
        # Every stored event of a deployment carries its project (a claim of another is refused):
        # subscribers whose groups do not grant it get nothing, nor does an expired token.
        project = events[0].event.project if events else None
        return self._store.subscriber_pages(deployment_id, self._query_page_size, project, audience=audience)

    def _post(
        self, deployment_id: str, events: Sequence[SequencedEvent], pages: Iterator[SubscriberPage]
    ) -> FanOutSummary:
        frames = pack(events)
        seqs = tuple(e.seq for e in events)
        summary = FanOutSummary(frames=len(frames))
        if self._dispatch is None:
            result = self._api.fan_out(self._ids(pages, summary), frames, on_gone=self._remove_gone)
            summary.add(result)
            self._retry_here(FanOutTask(deployment_id, seqs, tuple(result.failed), None, 1), frames, summary)
            return summary

        shares = self._shares(pages, summary)
        first = next(shares, None)
        if first is None:
            return summary
        # Later shares go to other invocations while this one posts the first.
        handoff = _Handoff(self._dispatch, deployment_id, seqs, frames, shares, summary)
        handoff.start()
        result = self._api.fan_out(first, frames, self._remove_gone)
        summary.add(result)
        handoff.join()
        self._hand_on_failures(
            FanOutTask(deployment_id, seqs, tuple(result.failed), None, 0), frames, summary
        )
        return summary

    def run(self, task: FanOutTask, remaining_seconds: float) -> FanOutSummary:
        """Serve a task another invocation handed over: wait if it is a retry, post, hand on failures."""
        if task.attempt:
            self._sleep(max(0.0, min(retry_delay(task.attempt), remaining_seconds - 5)))
        if task.frames is not None:
            frames = [f.encode("utf-8") for f in task.frames]
        else:
            messages = self._store.messages(task.deployment_id, task.seqs)
            frames = protocol.pack_frames(
                (m.encode("utf-8") for m in messages), spec.API_GATEWAY_LIMITS.message_bytes
            )
        summary = FanOutSummary(frames=len(frames), recipients=len(task.connection_ids))
        if not frames:  # the history expired: nothing left to send
            return summary
        result = self._api.fan_out(task.connection_ids, frames, on_gone=self._remove_gone)
        summary.add(result)
        if self._dispatch is None:
            self._retry_here(
                replace(task, connection_ids=tuple(result.failed), attempt=task.attempt + 1), frames, summary
            )
        else:
            self._hand_on_failures(replace(task, connection_ids=tuple(result.failed)), frames, summary)
        return summary

    # -- pages and retries ------------------------------------------------------------------------

    def _ids(self, pages: Iterator[SubscriberPage], summary: FanOutSummary) -> Iterator[str]:
        for page in pages:
            summary.items_read += page.items_read
            summary.recipients += len(page.subscribers)
            for subscriber in page.subscribers:
                yield subscriber.connection_id

    def _shares(self, pages: Iterator[SubscriberPage], summary: FanOutSummary) -> Iterator[tuple[str, ...]]:
        """The subscribers in shares of ``page_size``: what one invocation posts to."""
        share: list[str] = []
        for connection_id in self._ids(pages, summary):
            share.append(connection_id)
            if len(share) == self._page_size:
                yield tuple(share)
                share = []
        if share:
            yield tuple(share)

    def _hand_on_failures(self, task: FanOutTask, frames: Sequence[bytes], summary: FanOutSummary) -> None:
        """Connections whose posts kept failing go to a retry task (``task.attempt`` is the round done)."""
        if not task.connection_ids:
            return
        summary.retrying += len(task.connection_ids)
        fields = {"deployment_id": task.deployment_id, "connections": len(task.connection_ids)}
        if task.attempt + 1 >= self._max_attempts:
            log.error(
                "posts kept failing; clients catch up at their next ping",
                extra={**fields, "attempts": task.attempt + 1},
            )
            return
        assert self._dispatch is not None
        retry = replace(task, attempt=task.attempt + 1, frames=_inline(frames, task.connection_ids))
        self._dispatch(retry)
        summary.tasks += 1
        log.warning("posts failed; retry handed on", extra={**fields, "attempt": retry.attempt})

    def _retry_here(self, task: FanOutTask, frames: Sequence[bytes], summary: FanOutSummary) -> None:
        """Without other invocations: wait and post again, round after round, in this one."""
        ids = list(task.connection_ids)
        summary.retrying += len(ids)
        attempt = task.attempt
        while ids and attempt < self._max_attempts:
            self._sleep(retry_delay(attempt))
            result = self._api.fan_out(ids, frames, on_gone=self._remove_gone)
            summary.add(result)
            ids = result.failed
            attempt += 1
        if ids:
            log.error(
                "posts kept failing; clients catch up at their next ping",
                extra={"deployment_id": task.deployment_id, "connections": len(ids), "attempts": attempt},
            )


def _newcomers(pages: Iterator[SubscriberPage], known: frozenset[str]) -> Iterator[SubscriberPage]:
    """The pages without the connections in ``known``."""
    for page in pages:
        yield SubscriberPage([s for s in page.subscribers if s.connection_id not in known], page.items_read)


class _Handoff(threading.Thread):
    """Reads the remaining shares of subscribers and hands each to another invocation.

    Handing a share over is one Lambda ``Invoke`` call (tens of milliseconds on
    AWS): up to :data:`DISPATCH_CONCURRENCY` are in flight at once, so forty
    shares start within a few round trips instead of one after the other.
    """

    def __init__(
        self,
        dispatch: Dispatch,
        deployment_id: str,
        seqs: tuple[int, ...],
        frames: Sequence[bytes],
        shares: Iterator[tuple[str, ...]],
        summary: FanOutSummary,
    ) -> None:
        super().__init__(name="fanout-handoff", daemon=True)
        self._dispatch, self._deployment_id, self._seqs = dispatch, deployment_id, seqs
        self._frames, self._shares, self._summary = frames, shares, summary
        self.error: Exception | None = None
        # The invocation's log fields (request ids) live in contextvars, which a new thread
        # does not inherit: its lines and its dispatches' lines carry the same ids this way.
        self._context = contextvars.copy_context()

    def run(self) -> None:
        self._context.run(self._run)

    def _run(self) -> None:
        try:
            with ThreadPoolExecutor(DISPATCH_CONCURRENCY, thread_name_prefix="fanout-dispatch") as pool:
                handed = [
                    pool.submit(
                        contextvars.copy_context().run,
                        self._dispatch,
                        FanOutTask(self._deployment_id, self._seqs, ids, _inline(self._frames, ids)),
                    )
                    for ids in self._shares
                ]
                for future in handed:
                    future.result()
                    self._summary.tasks += 1
        except Exception as exc:  # noqa: BLE001 - re-raised by join(): the batch is retried whole
            self.error = exc

    def join(self, timeout: float | None = None) -> None:
        """Wait for the handoff; raises what made it fail (the batch then comes back whole)."""
        super().join(timeout)
        if self.error is not None:
            raise self.error
