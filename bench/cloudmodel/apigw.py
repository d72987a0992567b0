"""API Gateway's @connections API for the cloud model: the account's token bucket and what each subscriber got.

The fan-out (``server.fanout.FanOut``) posts through an object with
``fan_out(connection_ids, frames, on_gone)`` returning a ``FanOutResult``;
``ModelPoster`` is that object, modelled as ``server.management.ManagementApi``
behaves: up to ``concurrency`` connections served at once, one connection's
frames in order, each post ``POST_MS``; a 429 is retried with the same
``RetryPolicy`` (up to ``max_attempts`` attempts, then the connection counts as
failed and the fan-out hands it to a retry task). The account's bucket
(10,000 posts/s, 5,000 deep; AWS API Gateway quotas) is shared by every
invocation. Every delivered frame is recorded per connection with its time.
"""

from __future__ import annotations

import heapq
import itertools
import json
import random
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from bench.cloudmodel.clock import VirtualClock
from server.management import FanOutResult, RetryPolicy

#: One post's round trip from Lambda to API Gateway (published measurements quoted in docs/delivery.md).
POST_MS = 20.0
#: A throttled post is answered at once; its round trip is still a network hop (an estimate).
THROTTLED_MS = 2.0
#: The account's @connections budget (API Gateway quotas: 10,000 requests/s, 5,000 burst).
ACCOUNT_RATE = 10_000.0
ACCOUNT_BURST = 5_000.0


@dataclass(frozen=True)
class Receipt:
    """One message a subscriber received."""

    at: float
    seq: int
    event_id: str


class Account:
    """The account-wide token bucket and every delivery."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.tokens, self.updated = ACCOUNT_BURST, clock.time()
        self.received: dict[str, list[Receipt]] = defaultdict(list)
        self.posts = 0
        self.throttled = 0

    def take(self) -> bool:
        """One post's token, now."""
        now = self.clock.time()
        self.tokens = min(ACCOUNT_BURST, self.tokens + (now - self.updated) * ACCOUNT_RATE)
        self.updated = now
        self.posts += 1
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        self.throttled += 1
        return False


def _messages(frame: bytes) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for line in frame.split(b"\n"):
        if line.strip():
            message = json.loads(line)
            out.append((int(message.get("seq", 0)), str(message.get("event_id", ""))))
    return out


class ModelPoster:
    """The fan-out's poster, in virtual time (the interface ``FanOut`` uses of ``ManagementApi``)."""

    def __init__(
        self, clock: VirtualClock, account: Account, concurrency: int, retry: RetryPolicy, rng: random.Random
    ) -> None:
        self.clock, self.account = clock, account
        self.concurrency, self.retry, self.rng = concurrency, retry, rng

    def fan_out(
        self,
        connection_ids: Iterable[str],
        frames: Sequence[bytes],
        on_gone: Callable[[str], None] | None = None,
    ) -> FanOutResult:
        """Post every frame to every connection, ``concurrency`` connections at a time."""
        result = FanOutResult()
        if not frames:
            return result
        parsed = [_messages(bytes(f)) for f in frames]
        ids = iter(connection_ids)
        order = itertools.count()
        # (when the next post of this connection starts, tie, connection, frame index, attempt)
        due: list[tuple[float, int, str, int, int]] = []
        now = finish = self.clock.time()
        for connection_id in itertools.islice(ids, self.concurrency):
            heapq.heappush(due, (now, next(order), connection_id, 0, 1))
        while due:
            when, _, connection_id, frame, attempt = heapq.heappop(due)
            if when > self.clock.time():
                self.clock.sleep_until(when)
            result.posts += 1
            if attempt > 1:
                result.retries += 1
            if self.account.take():
                done = self.clock.time() + POST_MS / 1000
                finish = max(finish, done)
                log = self.account.received[connection_id]
                log.extend(Receipt(done, seq, event_id) for seq, event_id in parsed[frame])
                if frame + 1 < len(frames):
                    heapq.heappush(due, (done, next(order), connection_id, frame + 1, 1))
                    continue
                result.delivered += 1
            elif attempt < self.retry.max_attempts:
                back = self.clock.time() + THROTTLED_MS / 1000 + self.retry.delay(attempt, True, self.rng)
                heapq.heappush(due, (back, next(order), connection_id, frame, attempt + 1))
                continue
            else:
                result.failed.append(connection_id)
                done = self.clock.time() + THROTTLED_MS / 1000
            following = next(ids, None)  # the lane is free once this connection is done
            if following is not None:
                heapq.heappush(due, (done, next(order), following, 0, 1))
        if finish > self.clock.time():  # the last posts' answers arrive before fan_out returns
            self.clock.sleep_until(finish)
        return result
