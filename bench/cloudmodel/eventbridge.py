"""EventBridge for the cloud model: PutEvents in, each entry on the queue after its own latency.

Each accepted entry reaches the rule's SQS target after a latency drawn for it
alone, so entries overtake each other (EventBridge does not keep PutEvents
order). No published figure exists for EventBridge -> SQS; the default draws
from a lognormal fitted to the published EventBridge -> Lambda latency
(P50 148 ms, P99 387 ms, eu-west-1, 2022-23), which includes a Lambda invoke
and so errs on the slow side. ``EB_P50_MS`` / ``EB_P99_MS`` change it.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime

from bench.cloudmodel.clock import Signal, VirtualClock
from bench.cloudmodel.sqs import Queue, eventbridge_event

#: PutEvents' own round trip before the entry is accepted (an estimate; no published figure).
PUT_EVENTS_MS = 15.0
#: EventBridge -> target latency, P50 and P99 (published EventBridge -> Lambda figures).
EB_P50_MS = 148.0
EB_P99_MS = 387.0
_Z99 = 2.3263


class EventBridge:
    """The bus and its one rule: every entry goes to ``target`` after a lognormal latency."""

    def __init__(
        self, clock: VirtualClock, rng: random.Random, target: Queue, p50_ms: float, p99_ms: float
    ) -> None:
        self.clock, self.rng, self.target = clock, rng, target
        self._mu = math.log(p50_ms / 1000)
        self._sigma = math.log(p99_ms / p50_ms) / _Z99 if p99_ms > p50_ms else 0.0
        self._due: list[tuple[float, int, str]] = []
        self._order = itertools.count()
        self._wake = Signal(clock)
        self.accepted = 0
        self.delivered = 0
        self.closed = False

    def start(self) -> None:
        """Start the router task."""
        self.clock.spawn(self._route, name="eventbridge")

    def put(self, entry: Mapping[str, str]) -> None:
        """One PutEvents entry, accepted ``PUT_EVENTS_MS`` after the call began (the caller's time now)."""
        accepted = self.clock.time() + PUT_EVENTS_MS / 1000
        latency = math.exp(self.rng.gauss(self._mu, self._sigma))
        when = datetime.fromtimestamp(accepted, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = eventbridge_event(entry, str(uuid.UUID(int=self.rng.getrandbits(128))), when)
        heapq.heappush(self._due, (accepted + latency, next(self._order), body))
        self.accepted += 1
        self._wake.notify_all()

    def close(self) -> None:
        """No more entries: the router leaves once everything is delivered."""
        self.closed = True
        self._wake.notify_all()

    def _route(self) -> None:
        while True:
            now = self.clock.time()
            while self._due and self._due[0][0] <= now:
                _, _, body = heapq.heappop(self._due)
                self.target.send(body)
                self.delivered += 1
            if self._due:
                self._wake.wait(self._due[0][0] - now)
            elif self.closed:
                return
            else:
                self._wake.wait(None)
