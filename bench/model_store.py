"""Bench helper: the subscriptions table of the cloud model, with DynamoDB's Query latency.

The fan-out only needs a deployment's subscribers, page by page; on AWS each
page is one strongly consistent Query (a few milliseconds in the region). This
stand-in yields ``subscribers`` connection ids in pages, sleeping
``query_seconds`` per page, and forgets nothing (the model has no gone
connections).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

from server.store import Subscriber, SubscriberPage


class ModelStore:
    """What ``server.fanout.FanOut`` reads from the store, modelled."""

    def __init__(self, subscribers: int, query_seconds: float) -> None:
        self.subscribers = subscribers
        self.query_seconds = query_seconds
        self.queries = 0

    def subscriber_pages(
        self, deployment_id: str, page_size: int, project: str | None = None, audience: str | None = None
    ) -> Iterator[SubscriberPage]:
        """The subscribers, ``page_size`` per modelled Query (every one granted ``project``)."""
        ttl = int(time.time()) + 3600
        for start in range(0, self.subscribers, page_size):
            time.sleep(self.query_seconds)
            self.queries += 1
            page = [
                Subscriber(f"conn-{i:06d}", ttl)
                for i in range(start, min(start + page_size, self.subscribers))
            ]
            yield SubscriberPage(page, len(page))

    def delete_connection(self, connection_id: str) -> int:
        """Nothing is gone in the model."""
        return 0

    def messages(self, deployment_id: str, seqs: Sequence[int]) -> list[str]:
        """Frames always travel inline in the model's tasks."""
        return []
