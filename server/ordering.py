"""Emission order: which of a deployment's waiting events may be stored now, and in what order.

SQS standard queues and EventBridge keep no order, and the event source
mapping runs several batches at once, so a producer's events reach the
broadcaster shuffled. A producer that numbers its events per deployment
(``detail.producer_id`` + ``detail.producer_seq``, 1, 2, 3 …; every
``OrchestratorPlugin`` does) has them stored, and so given their ``seq``, in
that order: the deployment's counter remembers, per producer, the last number
stored (its *cursor*), and an event may be stored only right after its
predecessor. One that arrives ahead of it waits in the deployment's inbox.

A gap must not stall a deployment for ever (the producer may have shed the
missing event, or it may be stuck in a retry): once the first event waiting
behind a gap has waited :data:`GAP_SECONDS` at the broadcaster (counted from
``arrived_ms``, not from when the queue got it: under a backlog every event
has sat in the queue longer than that), the gap is skipped and the
missing event, should it still come, is stored when it arrives, after the
ones that overtook it. Events of different producers, and events nobody
numbered (any plain ``PutEvents``), keep no order among each other beyond the
order they were received in.

Pure functions; no I/O.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from contract.events import DeploymentEvent

#: How long the events behind a missing one wait for it before the gap is skipped.
GAP_SECONDS = 5.0


@dataclass(frozen=True)
class Plan:
    """What to do with a deployment's waiting events now."""

    ready: list[DeploymentEvent]
    """To store now, in this order (each producer's in its emission order)."""
    held: list[DeploymentEvent]
    """Behind a gap that has not yet waited :data:`GAP_SECONDS`: to keep waiting."""
    cursors: dict[str, int]
    """Each producer's cursor once ``ready`` is stored (only the producers that moved)."""
    wake_in_seconds: float | None
    """When the oldest gap times out (None when nothing is held)."""


def plan(
    events: Iterable[DeploymentEvent],
    cursors: Mapping[str, int],
    now_ms: int,
    gap_seconds: float = GAP_SECONDS,
) -> Plan:
    """Split waiting events into those that may be stored now, in order, and those held behind a gap.

    Args:
        events: the deployment's waiting events, in any order (the same event twice counts once).
        cursors: the last number stored per producer (absent: nothing stored yet).
        now_ms: the time now, epoch milliseconds.
        gap_seconds: how long events wait behind a missing one.
    """
    gap_ms = int(gap_seconds * 1000)
    unique: dict[str, DeploymentEvent] = {}
    for event in events:
        unique.setdefault(event.identity, event)
    by_producer: dict[str, list[DeploymentEvent]] = {}
    lanes: list[list[DeploymentEvent]] = []
    unnumbered: list[DeploymentEvent] = []
    for event in unique.values():
        if event.producer_id is not None and event.producer_seq is not None:
            by_producer.setdefault(event.producer_id, []).append(event)
        else:
            unnumbered.append(event)
    held: list[DeploymentEvent] = []
    moved: dict[str, int] = {}
    wake_ms: int | None = None
    for producer, waiting in by_producer.items():
        waiting.sort(key=_number)
        cursor = cursors.get(producer, 0)
        lane: list[DeploymentEvent] = []
        for index, event in enumerate(waiting):
            number = _number(event)
            if number <= cursor + 1:
                # The next one, or one at or below the cursor: a redelivery (the identity check
                # makes it a no-op) or a straggler whose gap was skipped (stored now, late).
                lane.append(event)
                cursor = max(cursor, number)
                continue
            behind = waiting[index:]
            waited_since = min(_arrival(e) for e in behind)
            if now_ms - waited_since >= gap_ms:
                lane.append(event)  # the gap timed out: skip it
                cursor = number
                continue
            held += behind
            due = waited_since + gap_ms
            wake_ms = due if wake_ms is None else min(wake_ms, due)
            break
        if cursor != cursors.get(producer, 0):
            moved[producer] = cursor
        if lane:
            lanes.append(lane)
    unnumbered.sort(key=lambda e: (e.received_ms, e.event_id))
    lanes.append(unnumbered)
    ready = _merge(lanes)
    wake = None if wake_ms is None else max(0.0, (wake_ms - now_ms) / 1000)
    return Plan(ready, held, moved, wake)


def _arrival(event: DeploymentEvent) -> int:
    """When the event's wait behind a gap began: when a broadcaster first had it in hand."""
    return event.arrived_ms or event.received_ms


def _number(event: DeploymentEvent) -> int:
    return event.producer_seq or 0


def _merge(lanes: list[list[DeploymentEvent]]) -> list[DeploymentEvent]:
    """Interleave lanes by time of receipt, keeping each lane's own order."""
    heap: list[tuple[int, int, int]] = []
    for lane_index, lane in enumerate(lanes):
        if lane:
            heap.append((lane[0].received_ms, lane_index, 0))
    heapq.heapify(heap)
    merged: list[DeploymentEvent] = []
    while heap:
        _, lane_index, position = heapq.heappop(heap)
        lane = lanes[lane_index]
        merged.append(lane[position])
        if position + 1 < len(lane):
            heapq.heappush(heap, (lane[position + 1].received_ms, lane_index, position + 1))
    return merged
